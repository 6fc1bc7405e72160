//! Spawns clusters of real `coffer-node` processes on loopback for tests and benchmarks (the
//! `testnet` generator's keys, dev PKI and configs, in-memory stores), talks to their REST API
//! over HTTPS (hyper + rustls, keep-alive connections pinned to the generated CA), and builds
//! ledger transactions for them.

#![allow(dead_code)]

use coffer_ledger::{
    Amount, ChainId, Keypair, Mint, OutPoint, SignedTransaction, Transaction, Transfer, TxOut, Txid,
};
use coffer_node::testnet::{self, TestnetOptions};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A running cluster; its processes are killed and its directory removed on drop.
pub struct ProcessCluster {
    pub children: Vec<Option<Child>>,
    /// REST address of each replica.
    pub api: Vec<SocketAddr>,
    pub configs: Vec<PathBuf>,
    pub dir: PathBuf,
    pub chain: ChainId,
    /// The genesis issuer.
    pub issuer: Keypair,
    /// The client TLS configuration (trusts the generated CA only).
    pub tls: Arc<rustls::ClientConfig>,
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Set COFFER_KEEP_LOGS to inspect the replicas' logs and data after a run.
        if std::env::var_os("COFFER_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl ProcessCluster {
    /// A keep-alive HTTPS connection to replica `i`, retrying while the process starts.
    pub async fn connect(&self, i: usize, timeout: Duration) -> Https {
        let deadline = Instant::now() + timeout;
        loop {
            match Https::connect(self.api[i], self.tls.clone()).await {
                Ok(conn) => return conn,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot connect to replica {i} at {}: {e}",
                        self.api[i]
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A base port whose API and p2p ranges are free right now.
fn free_base(n: usize) -> u16 {
    for _ in 0..50 {
        let base = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let n16 = u16::try_from(n).expect("few replicas");
        if base < 1024
            || u32::from(base) + u32::from(testnet::P2P_PORT_OFFSET) + u32::from(n16) > 65_000
        {
            continue;
        }
        let all_free = (0..n16).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && TcpListener::bind(("127.0.0.1", base + testnet::P2P_PORT_OFFSET + i)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free port range");
}

/// Generates a testnet of `n` replicas (memory stores) with `tune` applied to each replica's
/// generated config text, and starts them.
pub fn start_cluster(name: &str, n: usize, tune: impl Fn(String) -> String) -> ProcessCluster {
    let dir = std::env::temp_dir().join(format!("coffer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let net = testnet::generate(&TestnetOptions {
        replicas: n,
        out: dir.clone(),
        base_port: free_base(n),
        redis: None,
        host: "127.0.0.1".into(),
    })
    .expect("generate testnet");
    let issuer = Keypair::from_secret_bytes(
        hex::decode(&net.issuer_secret_hex)
            .expect("hex")
            .try_into()
            .expect("32 bytes"),
    )
    .expect("issuer key");
    let api = net
        .urls
        .iter()
        .map(|url| {
            url.trim_start_matches("https://")
                .parse::<SocketAddr>()
                .expect("loopback url")
        })
        .collect();
    let ca = std::fs::read(dir.join("tls/ca.pem")).expect("ca");
    let tls = coffer_node::api::tls::client_config(&ca).expect("client tls");
    let mut children = Vec::new();
    for (i, path) in net.configs.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("config");
        std::fs::write(path, tune(text)).expect("write config");
        children.push(Some(spawn(path, &dir.join(format!("replica{i}.log")))));
    }
    ProcessCluster {
        children,
        api,
        configs: net.configs,
        dir,
        chain: net.genesis.chain_id,
        issuer,
        tls,
    }
}

pub fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_coffer-node"))
        .arg("start")
        .arg("--config")
        .arg(config)
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn coffer-node")
}

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
