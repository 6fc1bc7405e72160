//! TLS to Redis (feature `redis-tls`): a real redis-server with a TLS port and a test CA.
//!
//! `cargo test -p coffer-node --features redis-tls --test storage_tls`

#![allow(clippy::unwrap_used, missing_docs)]

mod redis_harness;

use std::path::Path;
use std::process::Command;

use coffer_node::storage::{RedisConfig, RedisStore, StorageError, Store};
use redis_harness::{Model, RedisProc, TempDir, free_port};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=coffer-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_over_tls_round_trips_and_rejects_untrusted_server() {
    let certs = TempDir::new("tls");
    make_certs(&certs.0);
    let tls_port = free_port();
    let p = |f: &str| certs.0.join(f).display().to_string();
    let server = RedisProc::start(
        &certs.0,
        &[
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            p("server.crt"),
            "--tls-key-file".into(),
            p("server.key"),
            "--tls-ca-cert-file".into(),
            p("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    let mut config = RedisConfig::standalone(format!("rediss://127.0.0.1:{tls_port}"), "tls:r0");
    config.tls = true;
    config.tls_ca_file = Some(p("ca.crt"));
    let mut model = Model::new(3);
    {
        let store = RedisStore::connect(&config).await.unwrap();
        for _ in 0..5 {
            let (h, block, change) = model.next_block(3);
            store.persist(h, &block, &change).await.unwrap();
        }
    }
    let store = RedisStore::connect(&config).await.unwrap();
    let snap = store.load().await.unwrap().unwrap();
    assert_eq!(snap.height, 5);
    assert_eq!(snap.commitment, model.commitment());
    // The data really went over the TLS port to this server.
    assert_eq!(
        redis_harness::cli(server.port, &["hget", "{tls:r0}:meta", "height"]),
        "5"
    );

    // Without the test CA the server's certificate is not trusted: no connection.
    let mut untrusted = config.clone();
    untrusted.tls_ca_file = None;
    untrusted.retry.max_elapsed_ms = 300;
    assert!(matches!(
        RedisStore::connect(&untrusted).await,
        Err(StorageError::Unavailable { .. } | StorageError::Redis(_))
    ));
    // And a tls config with a redis:// URL is refused up front.
    let mut mismatched = config.clone();
    mismatched.mode = coffer_node::storage::RedisMode::Standalone {
        url: format!("redis://127.0.0.1:{tls_port}"),
    };
    assert!(matches!(
        RedisStore::connect(&mismatched).await,
        Err(StorageError::Config(_))
    ));
}
