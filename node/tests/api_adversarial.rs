//! Adversarial REST traffic against a REAL replica process (`coffer-node testnet` with one
//! replica, HTTPS with the generated dev PKI): malformed and truncated JSON, deep nesting, huge
//! bodies, wrong content types, unknown fields, overflowing and negative amounts, forged
//! signatures, replays, wrong chains, random bytes in bodies, paths and on the raw TLS stream,
//! and a slowloris-style half-sent request. No answer may be a 5xx, and afterwards the replica
//! still serves reads and commits a valid transaction.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use coffer_ledger::{Amount, ChainId, Keypair, Mint, SignedTransaction, Transaction, TxOut};
use common::client::{Client, raw_tls, read_until_close};
use hyper::Method;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_coffer-node");

struct Replica {
    dir: PathBuf,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("COFFER_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_replica() -> (Replica, SocketAddr, Vec<u8>, ChainId, Keypair) {
    let dir = std::env::temp_dir().join(format!("coffer-adversarial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = coffer_node::testnet::free_base_port(1).expect("no free port range");
    let out = Command::new(BIN)
        .args(["testnet", "--replicas", "1", "--out"])
        .arg(&dir)
        .args(["--base-port", &port.to_string()])
        .output()
        .expect("testnet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = dir.join("replica0");
    let log = std::fs::File::create(home.join("replica.log")).unwrap();
    let child = Command::new(BIN)
        .args(["start", "--home"])
        .arg(&home)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let cluster: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    let url = cluster["replicas"][0]["url"].as_str().unwrap();
    let addr: SocketAddr = url.trim_start_matches("https://").parse().unwrap();
    let ca = match cluster["ca_cert"].as_str() {
        Some(path) => std::fs::read(dir.join(path)).unwrap(),
        None => cluster["ca_cert_pem"].as_str().unwrap().as_bytes().to_vec(),
    };
    let chain = ChainId::new(cluster["chain_id"].as_str().unwrap()).unwrap();
    let issuer = Keypair::from_secret_hex(
        std::fs::read_to_string(dir.join("issuer.key"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    (Replica { dir, child }, addr, ca, chain, issuer)
}

fn mint(chain: &ChainId, issuer: &Keypair, nonce: u64, amount: u64) -> SignedTransaction {
    issuer.sign_tx(Transaction::Mint(Mint {
        chain_id: chain.clone(),
        issuer: issuer.public_key(),
        nonce,
        outputs: vec![TxOut::to_address(
            Amount(amount),
            Keypair::generate().address(),
        )],
    }))
}

/// Replaces every number found under key `field` (at any depth) with `raw` JSON text.
fn with_field(tx: &SignedTransaction, field: &str, raw: &str) -> Vec<u8> {
    fn walk(v: &mut serde_json::Value, field: &str, marker: &str) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == field {
                        *child = serde_json::Value::String(marker.into());
                    } else {
                        walk(child, field, marker);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|c| walk(c, field, marker))
            }
            _ => {}
        }
    }
    let mut value = serde_json::to_value(tx).unwrap();
    walk(&mut value, field, "@@MARK@@");
    serde_json::to_string(&value)
        .unwrap()
        .replace("\"@@MARK@@\"", raw)
        .into_bytes()
}

/// The replica's request body limit (`[api] max_body_bytes`, default).
const MAX_BODY_BYTES: usize = 128 * 1024;

struct Probe {
    client: Client,
    answered: usize,
    /// Requests with a body above the replica's limit that the server cut off (it may refuse
    /// and close while the body is still being written).
    closed: usize,
    /// Requests within the limit that got no answer: must stay zero.
    unanswered: Vec<String>,
    statuses: std::collections::BTreeMap<u16, usize>,
}

impl Probe {
    /// One request on a fresh TLS connection; `None` when the server closed the connection
    /// instead of answering.
    async fn try_send(
        &self,
        method: Method,
        path: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) -> Option<(hyper::StatusCode, Vec<u8>)> {
        use http_body_util::{BodyExt as _, Full};
        let tcp = tokio::net::TcpStream::connect(self.client.addr)
            .await
            .ok()?;
        let name = coffer_node::api::tls::server_name("localhost").ok()?;
        let tls = tokio_rustls::TlsConnector::from(self.client.tls.clone())
            .connect(name, tcp)
            .await
            .ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if let Some(ct) = ct {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(hyper::body::Bytes::from(body))).ok()?;
        let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
            .await
            .expect("answered or closed within 20 s")
            .ok()?;
        let status = resp.status();
        let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
        Some((status, body))
    }

    async fn send(
        &mut self,
        what: &str,
        method: Method,
        path: &str,
        ct: Option<&str>,
        body: Vec<u8>,
    ) {
        let oversized = body.len() > MAX_BODY_BYTES;
        match self.try_send(method, path, ct, body).await {
            Some((status, body)) => {
                assert!(
                    !status.is_server_error(),
                    "{what}: {status} {}",
                    String::from_utf8_lossy(&body)
                );
                self.answered += 1;
                *self.statuses.entry(status.as_u16()).or_default() += 1;
            }
            None if oversized => self.closed += 1,
            None => self.unanswered.push(what.to_string()),
        }
    }

    async fn post(&mut self, what: &str, body: impl Into<Vec<u8>>) {
        self.send(
            what,
            Method::POST,
            "/v1/transactions",
            Some("application/json"),
            body.into(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_replica_survives_adversarial_requests_without_5xx() {
    let (replica, addr, ca, chain, issuer) = start_replica();
    let client = Client::new(addr, &ca);
    // Wait until the replica serves.
    let started = Instant::now();
    loop {
        if let Ok(Ok(reply)) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn({
                let c = client.clone();
                async move { c.get("/v1/status").await }
            }),
        )
        .await
            && reply.status.is_success()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "replica never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut p = Probe {
        client: client.clone(),
        answered: 0,
        closed: 0,
        unanswered: Vec::new(),
        statuses: Default::default(),
    };
    let good = mint(&chain, &issuer, 1, 1_000);
    let good_json = serde_json::to_vec(&good).unwrap();

    // Malformed and truncated JSON, deep nesting, invalid UTF-8, random bytes.
    p.post("empty body", Vec::new()).await;
    p.post("not json", "hello").await;
    p.post("truncated", good_json[..good_json.len() / 2].to_vec())
        .await;
    p.post("deep nesting", "[".repeat(100_000)).await;
    p.post("deep objects", "{\"a\":".repeat(50_000)).await;
    p.post("invalid utf-8", vec![0xff, 0xfe, 0x7b, 0x22]).await;
    p.post("json null", "null").await;
    p.post("json array", "[1,2,3]").await;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..40 {
        let len = (i * 37) % 2_000;
        let body: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        p.post("random bytes", body).await;
    }
    // Oversized bodies (above any sane limit) and a body much larger than declared types.
    p.post("8 MiB body", vec![b' '; 8 << 20]).await;
    p.post(
        "huge string",
        format!("{{\"tx\":\"{}\"}}", "a".repeat(3 << 20)),
    )
    .await;

    // Wrong content types and methods.
    p.send(
        "text/plain",
        Method::POST,
        "/v1/transactions",
        Some("text/plain"),
        good_json.clone(),
    )
    .await;
    p.send(
        "no content type",
        Method::POST,
        "/v1/transactions",
        None,
        good_json.clone(),
    )
    .await;
    p.send(
        "form",
        Method::POST,
        "/v1/transactions",
        Some("application/x-www-form-urlencoded"),
        b"a=b".to_vec(),
    )
    .await;
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        p.send(
            "odd method",
            method,
            "/v1/transactions",
            Some("application/json"),
            good_json.clone(),
        )
        .await;
    }
    p.send(
        "GET with body",
        Method::GET,
        "/v1/status",
        Some("application/json"),
        good_json.clone(),
    )
    .await;

    // Unknown fields, wrong types, overflowing and negative amounts.
    let mut unknown: serde_json::Value = serde_json::to_value(&good).unwrap();
    unknown["extra"] = serde_json::json!({"nested": [1, 2, 3]});
    p.post("unknown field", serde_json::to_vec(&unknown).unwrap())
        .await;
    for raw in [
        "18446744073709551616",
        "99999999999999999999999999999999",
        "-1",
        "1.5",
        "1e30",
        "\"100\"",
        "null",
        "18446744073709551615",
        "0",
    ] {
        p.post("odd amount", with_field(&good, "amount", raw)).await;
        p.post("odd nonce", with_field(&good, "nonce", raw)).await;
        p.post("odd vout", with_field(&good, "vout", raw)).await;
    }
    // Forged signature, another chain, a signature by the wrong key.
    let mut forged = good.clone();
    let mut sig = serde_json::to_value(forged.signature).unwrap();
    if let serde_json::Value::String(s) = &mut sig {
        let flipped = if s.starts_with('0') { "1" } else { "0" };
        s.replace_range(0..1, flipped);
    }
    forged.signature = serde_json::from_value(sig).unwrap_or(forged.signature);
    p.post("forged signature", serde_json::to_vec(&forged).unwrap())
        .await;
    let other_chain = mint(&ChainId::new("other-chain").unwrap(), &issuer, 2, 5);
    p.post("other chain", serde_json::to_vec(&other_chain).unwrap())
        .await;
    let stranger = Keypair::generate();
    let unauthorised = mint(&chain, &stranger, 3, 5);
    p.post("not an issuer", serde_json::to_vec(&unauthorised).unwrap())
        .await;
    let too_much = mint(&chain, &issuer, 4, u64::MAX);
    p.post("above supply cap", serde_json::to_vec(&too_much).unwrap())
        .await;

    // Read paths with garbage parameters.
    let long = "a".repeat(16 * 1024);
    for path in [
        "/v1/transactions/zz".to_string(),
        format!("/v1/transactions/{}", "0".repeat(64)),
        format!("/v1/transactions/{long}"),
        "/v1/addresses/not-an-address/balance".to_string(),
        format!("/v1/addresses/{long}/utxos"),
        "/v1/addresses/%ff%fe/history?cursor=%00&limit=-1".to_string(),
        "/v1/blocks?from=18446744073709551615&to=0".to_string(),
        "/v1/blocks?from=0&to=18446744073709551615".to_string(),
        "/v1/blocks?from=abc".to_string(),
        "/v1/blocks/99999999999999999999".to_string(),
        "/v1/blocks/-1".to_string(),
        "/v1/supply?x=1&x=2".to_string(),
        "/v1/../../etc/passwd".to_string(),
        "/%2e%2e/%2e%2e".to_string(),
        "/metrics?format=%ZZ".to_string(),
        "/nope".to_string(),
    ] {
        p.send("garbage path", Method::GET, &path, None, Vec::new())
            .await;
    }

    // A valid transaction commits, and submitting it again is a replay, not a second mint.
    p.post("valid mint", good_json.clone()).await;
    p.post("replayed mint", good_json.clone()).await;

    // Slowloris: half a request, held open, while the replica keeps serving others.
    let tls = coffer_node::api::tls::client_config(&ca).unwrap();
    let mut slow = raw_tls(addr, tls.clone()).await.expect("tls");
    slow.write_all(b"POST /v1/transactions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let during = client.get("/v1/status").await;
    assert!(
        during.status.is_success(),
        "status during slowloris: {}",
        during.status
    );
    // Garbage straight on the TLS stream.
    let mut raw = raw_tls(addr, tls.clone()).await.expect("tls");
    raw.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x00, 0x13, 0x37])
        .await
        .unwrap();
    raw.write_all(b"\r\n\r\nGET / HTTP/9.9\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_close(&mut raw, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.starts_with("HTTP/1.1 5"), "garbage got a 5xx: {text}");
    drop(slow);

    // Still alive and correct: status answers, the mint is committed, a new one commits.
    let status = client.get("/v1/status").await;
    assert!(status.status.is_success());
    let again = mint(&chain, &issuer, 10, 7);
    let reply = client
        .post_json("/v1/transactions", serde_json::to_vec(&again).unwrap())
        .await;
    assert!(
        reply.status.is_success(),
        "{} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    // A block range from 0 is served from height 1 (it used to stop at the missing block 0
    // and answer an empty list).
    let blocks = client.get("/v1/blocks?from=0&to=3").await;
    assert!(blocks.status.is_success(), "{}", blocks.status);
    let listed: serde_json::Value = serde_json::from_slice(&blocks.body).unwrap();
    let heights: Vec<u64> = listed["blocks"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|b| b["height"].as_u64())
        .collect();
    assert_eq!(heights.first(), Some(&1), "{listed}");
    // A 405 names the allowed methods in an `Allow` header.
    let put = client
        .send(hyper::Method::PUT, "/v1/status", None, Vec::new())
        .await;
    assert_eq!(put.status, hyper::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        put.headers.get(hyper::header::ALLOW).map(|v| v.as_bytes()),
        Some(&b"GET"[..])
    );
    println!(
        "api_adversarial: {} requests answered (statuses {:?}), {} cut off by the server",
        p.answered, p.statuses, p.closed
    );
    // Only oversized bodies may be cut off; everything else gets an answer.
    assert!(p.unanswered.is_empty(), "no answer to {:?}", p.unanswered);
    drop(replica);
}
