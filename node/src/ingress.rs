//! A minimal binary ingress for development, tests and benchmarks, until the REST gateway lands.
//!
//! Over one TCP connection a client submits transactions and receives every executed block.
//! All frames are `len (u32 BE) | payload`, the length bounded on both sides.
//!
//! ```text
//! client -> server: payload = transaction bytes
//! server -> client: payload = 0x01 | status (u8) | txid (32)               submit answer
//!                   payload = 0x02 | height (u64 BE) | commitment (32)
//!                             | count (u32 BE) | { txid (32) | applied (u8) }*   executed block
//! status: 0 accepted, 1 busy, 2 rejected, 3 stopped
//! ```
//!
//! Submit answers come back in request order. It is unauthenticated and meant for loopback.

use crate::{
    consensus::{ConsensusHandle, SubmitError},
    executor::ExecutedBlock,
    tx::{MAX_TX_BYTES, TxVerifier, Txid},
};
use bytes::Bytes;
use std::{
    io::{self, Read as _, Write as _},
    net::SocketAddr,
    sync::Arc,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::{Semaphore, broadcast, mpsc},
};
use tracing::{debug, warn};

/// Most concurrent ingress connections.
const MAX_CONNECTIONS: usize = 64;
/// Answers queued per connection before the reader waits for the writer.
const ANSWER_QUEUE: usize = 4_096;
/// Largest server frame: an executed block with the maximum number of receipts.
const MAX_SERVER_FRAME: usize = 1 + 8 + 32 + 4 + 33 * crate::consensus::block::MAX_BLOCK_TXS;

const TAG_SUBMIT: u8 = 1;
const TAG_EXECUTED: u8 = 2;

/// Serves the ingress on `listen` until the task is dropped.
pub async fn serve<V: TxVerifier>(
    listen: SocketAddr,
    handle: ConsensusHandle<V>,
) -> io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = listener.accept().await?;
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, "ingress connection refused: too many connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, handle).await {
                debug!(%peer, error = %e, "ingress connection closed");
            }
            drop(permit);
        });
    }
}

async fn connection<V: TxVerifier>(
    stream: tokio::net::TcpStream,
    handle: ConsensusHandle<V>,
) -> io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let mut events = handle.subscribe();
    let (answers_tx, mut answers_rx) = mpsc::channel::<Vec<u8>>(ANSWER_QUEUE);
    let writer_task = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                answer = answers_rx.recv() => match answer {
                    Some(a) => a,
                    None => return Ok::<(), io::Error>(()),
                },
                event = events.recv() => match event {
                    Ok(block) => encode_executed(&block),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(skipped = n, "ingress client lagging; executed blocks skipped");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
            };
            writer.write_all(&frame).await?;
        }
    });
    let result = async {
        loop {
            let len = match reader.read_u32().await {
                Ok(len) => len as usize,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            if len == 0 || len > MAX_TX_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("frame of {len} bytes"),
                ));
            }
            let mut tx = vec![0u8; len];
            reader.read_exact(&mut tx).await?;
            let tx = Bytes::from(tx);
            let (status, txid) = match handle.submit(tx.clone()) {
                Ok(txid) => (0u8, txid),
                Err(SubmitError::Busy) => (1, Txid([0; 32])),
                Err(SubmitError::Rejected(_)) => (2, Txid([0; 32])),
                Err(_) => (3, Txid([0; 32])),
            };
            let mut frame = Vec::with_capacity(4 + 34);
            frame.extend_from_slice(&34u32.to_be_bytes());
            frame.push(TAG_SUBMIT);
            frame.push(status);
            frame.extend_from_slice(&txid.0);
            if answers_tx.send(frame).await.is_err() {
                return Ok(());
            }
        }
    }
    .await;
    drop(answers_tx);
    writer_task.abort();
    result
}

fn encode_executed(block: &ExecutedBlock) -> Vec<u8> {
    let body = 1 + 8 + 32 + 4 + 33 * block.receipts.len();
    let mut frame = Vec::with_capacity(4 + body);
    // A block holds at most MAX_BLOCK_TXS receipts, so the frame length fits in u32.
    frame.extend_from_slice(&u32::try_from(body).unwrap_or(u32::MAX).to_be_bytes());
    frame.push(TAG_EXECUTED);
    frame.extend_from_slice(&block.height.to_be_bytes());
    frame.extend_from_slice(&block.commitment);
    frame.extend_from_slice(
        &u32::try_from(block.receipts.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for r in &block.receipts {
        frame.extend_from_slice(&r.txid.0);
        frame.push(u8::from(r.rejection.is_none()));
    }
    frame
}

/// A frame received by an ingress [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Answer to a submission: status (0 accepted, 1 busy, 2 rejected, 3 stopped) and txid.
    Submitted {
        /// Status code.
        status: u8,
        /// Transaction id (zero unless accepted).
        txid: Txid,
    },
    /// A block was executed.
    Executed {
        /// Height.
        height: u64,
        /// State commitment after the block.
        commitment: [u8; 32],
        /// Transaction ids and whether each applied.
        receipts: Vec<(Txid, bool)>,
    },
}

/// A blocking ingress client (tests, benchmarks).
pub struct Client {
    stream: std::net::TcpStream,
}

impl Client {
    /// Connects to an ingress.
    pub fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// A second handle on the same connection (one thread writes, another reads).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            stream: self.stream.try_clone()?,
        })
    }

    /// Sends a transaction (the answer arrives as a [`ServerFrame::Submitted`]).
    pub fn send(&mut self, tx: &[u8]) -> io::Result<()> {
        let len = u32::try_from(tx.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "transaction too large"))?;
        let mut frame = Vec::with_capacity(4 + tx.len());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(tx);
        self.stream.write_all(&frame)
    }

    /// Reads the next frame.
    pub fn recv(&mut self) -> io::Result<ServerFrame> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_SERVER_FRAME {
            return Err(invalid(format!("frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        decode_server_frame(&payload)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn take<const N: usize>(buf: &mut &[u8]) -> io::Result<[u8; N]> {
    if buf.len() < N {
        return Err(invalid("truncated frame".into()));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[..N]);
    *buf = &buf[N..];
    Ok(out)
}

fn decode_server_frame(mut buf: &[u8]) -> io::Result<ServerFrame> {
    let [tag] = take::<1>(&mut buf)?;
    let frame = match tag {
        TAG_SUBMIT => {
            let [status] = take::<1>(&mut buf)?;
            ServerFrame::Submitted {
                status,
                txid: Txid(take::<32>(&mut buf)?),
            }
        }
        TAG_EXECUTED => {
            let height = u64::from_be_bytes(take::<8>(&mut buf)?);
            let commitment = take::<32>(&mut buf)?;
            let count = u32::from_be_bytes(take::<4>(&mut buf)?) as usize;
            if count > crate::consensus::block::MAX_BLOCK_TXS {
                return Err(invalid(format!("{count} receipts")));
            }
            let mut receipts = Vec::with_capacity(count);
            for _ in 0..count {
                let txid = Txid(take::<32>(&mut buf)?);
                let [applied] = take::<1>(&mut buf)?;
                receipts.push((txid, applied == 1));
            }
            ServerFrame::Executed {
                height,
                commitment,
                receipts,
            }
        }
        other => return Err(invalid(format!("unknown frame tag {other}"))),
    };
    if !buf.is_empty() {
        return Err(invalid("trailing bytes in frame".into()));
    }
    Ok(frame)
}
