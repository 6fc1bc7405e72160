//! Transport-level limits of the REST API over real TLS: protocol versions, connection limit,
//! slow and oversized bodies, idle connections, garbage on the wire.

mod common;

use coffer_node::api::{ApiConfig, ApiServer};
use common::client::{Client, raw_tls, read_until_close};
use common::{Byzantine, MemoryCluster, dev_ca, dev_server_tls};
use hyper::StatusCode;
use rustls_pki_types::pem::PemObject as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

async fn start(config: ApiConfig) -> (ApiServer, Client) {
    start_with_tls(config, dev_server_tls(1)).await
}

async fn start_with_tls(config: ApiConfig, tls: Arc<rustls::ServerConfig>) -> (ApiServer, Client) {
    let server = ApiServer::start(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        config,
        Arc::new(MemoryCluster::new(Byzantine::None)),
    )
    .await
    .expect("server starts");
    let client = Client::new(server.local_addr(), &dev_ca());
    (server, client)
}

fn tls12_only_client() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&dev_ca()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// TLS 1.3 only by default; TLS 1.2 when the configuration allows it.
#[tokio::test]
async fn tls12_is_refused_unless_allowed() {
    let (server, _) = start(ApiConfig::default()).await;
    assert!(
        raw_tls(server.local_addr(), tls12_only_client())
            .await
            .is_err()
    );
    server.shutdown().await;

    let dir = common::tls_dir();
    let tls12 = coffer_node::api::tls::server_config_from_files(
        &dir.join("replica-1.pem"),
        &dir.join("replica-1.key"),
        true,
    )
    .expect("tls config");
    let (server, _) = start_with_tls(ApiConfig::default(), tls12).await;
    let mut stream = raw_tls(server.local_addr(), tls12_only_client())
        .await
        .expect("TLS 1.2");
    stream
        .write_all(b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    server.shutdown().await;
}

/// Plaintext HTTP on the TLS port and garbage inside TLS end those connections, and nothing
/// else: the server keeps serving.
#[tokio::test]
async fn garbage_does_not_hurt_the_server() {
    let (server, client) = start(ApiConfig::default()).await;
    let mut plain = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .expect("tcp");
    plain
        .write_all(b"GET /v1/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let reply = read_until_close(&mut plain, Duration::from_secs(5)).await;
    assert!(!reply.starts_with(b"HTTP"), "no HTTP answer without TLS");

    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let mut stream = raw_tls(server.local_addr(), tls.clone())
        .await
        .expect("tls");
    stream
        .write_all(&[0u8, 0xff, 0x13, 0x37].repeat(2000))
        .await
        .expect("write");
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    // A header section far beyond the buffer limit.
    let mut stream = raw_tls(server.local_addr(), tls).await.expect("tls");
    let mut request = b"GET /v1/status HTTP/1.1\r\nhost: localhost\r\n".to_vec();
    for i in 0..5000 {
        request.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(20)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let _ = stream.write_all(&request).await;
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        !reply.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        !reply.starts_with(b"HTTP/1.1 5"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    assert_eq!(client.get("/v1/status").await.status, StatusCode::OK);
    server.shutdown().await;
}

/// A body that does not arrive in time gets 408 `request_timeout`.
#[tokio::test]
async fn slow_body_gets_408() {
    let config = ApiConfig {
        body_read_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let (server, _) = start(config).await;
    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let mut stream = raw_tls(server.local_addr(), tls).await.expect("tls");
    stream
        .write_all(
            b"POST /v1/transactions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"tx\":",
        )
        .await
        .expect("write");
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    server.shutdown().await;
}

/// A chunked body (no length announced) that outgrows the limit gets 413 `body_too_large`.
#[tokio::test]
async fn chunked_oversized_body_gets_413() {
    let config = ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    };
    let (server, _) = start(config).await;
    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let mut stream = raw_tls(server.local_addr(), tls).await.expect("tls");
    let mut request = b"POST /v1/transactions HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        request.extend_from_slice(format!("400\r\n{}\r\n", " ".repeat(0x400)).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let _ = stream.write_all(&request).await;
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("\"body_too_large\""), "{text}");
    server.shutdown().await;
}

/// Beyond `max_connections`, new connections are dropped; once one closes, others get in.
#[tokio::test]
async fn connection_limit_is_enforced() {
    let (server, client) = start(ApiConfig {
        max_connections: 1,
        ..ApiConfig::default()
    })
    .await;
    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let held = raw_tls(server.local_addr(), tls.clone())
        .await
        .expect("first connection");
    assert!(
        raw_tls(server.local_addr(), tls.clone()).await.is_err(),
        "second is dropped"
    );
    assert!(
        server
            .metrics()
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(held);
    // The server notices the close and releases the slot.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if raw_tls(server.local_addr(), tls.clone()).await.is_ok() {
            ok = true;
            break;
        }
    }
    assert!(ok, "slot released after the first connection closed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.get("/v1/status").await.status, StatusCode::OK);
    server.shutdown().await;
}

/// A connection that sends nothing is closed after the header timeout, freeing its slot.
#[tokio::test]
async fn idle_connections_are_closed() {
    let config = ApiConfig {
        header_read_timeout: Duration::from_millis(300),
        ..ApiConfig::default()
    };
    let (server, _) = start(config).await;
    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let mut stream = raw_tls(server.local_addr(), tls).await.expect("tls");
    let started = std::time::Instant::now();
    let reply = read_until_close(&mut stream, Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed by the server, not by our limit"
    );
    assert!(!reply.starts_with(b"HTTP/1.1 2"));
    server.shutdown().await;
}

/// A connection kept busy forever is closed once it reaches its maximum age.
#[tokio::test]
async fn busy_connections_are_closed_at_max_age() {
    let config = ApiConfig {
        max_connection_age: Duration::from_millis(400),
        shutdown_grace: Duration::from_millis(200),
        ..ApiConfig::default()
    };
    let (server, _) = start(config).await;
    let tls = coffer_node::api::tls::client_config(&dev_ca()).expect("tls");
    let stream = raw_tls(server.local_addr(), tls).await.expect("tls");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http");
    let driver = tokio::spawn(conn);
    let started = std::time::Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let req = hyper::Request::get("/v1/status")
            .header("host", "localhost")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .expect("request");
        match sender.send_request(req).await {
            Ok(resp) if resp.status() == StatusCode::OK => served += 1,
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    assert!(
        served >= 3,
        "the connection served requests first ({served})"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "closed after about 400 ms, not {elapsed:?}"
    );
    let _ = driver.await;
    server.shutdown().await;
}
