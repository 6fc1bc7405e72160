//! Shared by the tests and benchmarks that run real `coffer-node` processes on loopback: the
//! process-cluster harness ([`cluster`]), a client of their REST API over HTTPS (hyper + rustls,
//! keep-alive connections pinned to the generated CA), and builders of ledger transactions.

#![allow(dead_code)]

mod cluster;

// Each test crate (and the benchmark) uses a part of this module, like the rest of it.
#[allow(unused_imports)]
pub use cluster::{IO_URING, ProcessCluster, bin, io_uring_or_refusal, start_cluster, tail};

use coffer_ledger::{
    Amount, ChainId, Keypair, Mint, OutPoint, SignedTransaction, Transaction, Transfer, TxOut, Txid,
};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One keep-alive HTTP/1.1 connection over TLS to a replica's REST API.
pub struct Https {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

/// A reply: status and body.
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Https {
    /// Opens a connection (TLS handshake against the pinned CA).
    pub async fn connect(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Https, String> {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let name = coffer_node::api::tls::server_name("localhost").map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Https { sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, String> {
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply { status, body })
    }

    /// Submits `tx` and, with `wait`, waits for its commit (f+1 signed receipts).
    pub async fn submit(&mut self, tx: &SignedTransaction, wait: bool) -> Result<Reply, String> {
        let body = serde_json::to_vec(tx).map_err(|e| e.to_string())?;
        let path = if wait {
            "/v1/transactions"
        } else {
            "/v1/transactions?wait=false"
        };
        self.request(Method::POST, path, Some(body)).await
    }

    /// GET `path` as JSON; an error unless 200.
    pub async fn get_json(&mut self, path: &str) -> Result<serde_json::Value, String> {
        let reply = self.request(Method::GET, path, None).await?;
        if reply.status != StatusCode::OK {
            return Err(format!(
                "GET {path}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
        }
        Ok(reply.json())
    }
}

/// A test wallet.
pub fn wallet(i: u32) -> Keypair {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(secret).expect("valid secret")
}

/// Mint of `outputs` outputs of `amount` each to `to`.
pub fn mint(
    chain: &ChainId,
    issuer: &Keypair,
    nonce: u64,
    to: &Keypair,
    outputs: usize,
    amount: u64,
) -> SignedTransaction {
    issuer.sign_tx(Transaction::Mint(Mint {
        chain_id: chain.clone(),
        issuer: issuer.public_key(),
        nonce,
        outputs: vec![TxOut::to_address(Amount(amount), to.address()); outputs],
    }))
}

/// Transfer of output `vout` of `txid` (owned by `from`, worth `amount`) to `to`.
pub fn spend(
    chain: &ChainId,
    from: &Keypair,
    txid: Txid,
    vout: u32,
    amount: u64,
    to: &Keypair,
) -> SignedTransaction {
    from.sign_tx(Transaction::Transfer(Transfer {
        chain_id: chain.clone(),
        signer: from.public_key(),
        inputs: vec![OutPoint { txid, vout }],
        outputs: vec![TxOut::to_address(Amount(amount), to.address())],
    }))
}
