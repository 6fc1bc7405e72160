//! End to end through the `coffer` binary. The cluster is either the in-process one (four TLS
//! gateways over one ledger, see `common`) or, when `COFFER_E2E_CLUSTER` names a cluster client
//! config, a real cluster: then `COFFER_E2E_ISSUER_SECRET` must hold the hex secret of a
//! genesis issuer key. The main test only uses what a real cluster offers (fresh random keys,
//! relative balance checks), so the integrator can run it unchanged against the live cluster:
//!
//! ```text
//! COFFER_E2E_CLUSTER=/path/to/cluster.json COFFER_E2E_ISSUER_SECRET=<hex> \
//!   cargo test -p coffer-wallet --test cli_e2e cli_end_to_end
//! ```

mod common;

use coffer_ledger::Keypair;
use common::{Behaviour, TestCluster, issuer};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;

const PASSWORD: &str = "e2e correct horse battery";
/// Most time one CLI invocation may take (submissions wait for commits on a real cluster).
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

struct Env {
    cluster_path: PathBuf,
    dir: tempfile::TempDir,
    issuer_secret: String,
    local: Option<TestCluster>,
}

impl Env {
    /// A real cluster described by `cluster_path`, with a genesis issuer's hex secret.
    fn real(cluster_path: PathBuf, issuer_secret: String) -> Env {
        Env {
            cluster_path,
            dir: tempfile::tempdir().expect("temp dir"),
            issuer_secret,
            local: None,
        }
    }

    async fn new(behaviours: [Behaviour; 4]) -> Env {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Ok(path) = std::env::var("COFFER_E2E_CLUSTER") {
            let secret = std::env::var("COFFER_E2E_ISSUER_SECRET")
                .expect("COFFER_E2E_ISSUER_SECRET must hold the issuer's hex secret");
            return Env::real(PathBuf::from(path), secret);
        }
        let cluster = TestCluster::start(behaviours).await;
        Env {
            cluster_path: cluster.config_path.clone(),
            dir,
            issuer_secret: hex::encode(issuer().secret_bytes()),
            local: Some(cluster),
        }
    }

    fn keystore(&self) -> PathBuf {
        self.dir.path().join("keystore.json")
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, None, PASSWORD, &self.cluster_path)
            .await
    }

    async fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        password: &str,
        cluster: &Path,
    ) -> Out {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.args(args)
            .env("COFFER_CLUSTER", cluster)
            .env("COFFER_KEYSTORE", self.keystore())
            .env("COFFER_PASSWORD", password)
            // Light key derivation keeps the test fast; real keystores use 64 MiB.
            .env("COFFER_KDF_M_KIB", "256")
            .env("COFFER_KDF_T", "1")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn coffer");
        let mut pipe = child.stdin.take().expect("stdin");
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
        }
        drop(pipe);
        let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
            .await
            .expect("coffer finished in time")
            .expect("coffer ran");
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Imports the issuer's key (its secret on stdin) into the keystore.
    async fn import_issuer(&self) {
        self.run_with(
            &["keys", "import", "issuer"],
            Some(&self.issuer_secret),
            PASSWORD,
            &self.cluster_path,
        )
        .await
        .ok();
    }

    /// Imports the issuer, creates the keys `alice` and `bob`, and mints `amount` to alice.
    async fn fund_alice(&self, amount: &str) {
        self.import_issuer().await;
        self.run(&["keys", "new", "alice"]).await.ok();
        self.run(&["keys", "new", "bob"]).await.ok();
        self.run(&["mint", "--issuer", "issuer", "--to", "alice", amount])
            .await
            .ok();
    }

    /// Writes `config` to a file in this environment's directory; returns its path.
    fn write_config(&self, name: &str, config: &coffer_wallet::ClusterConfig) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, serde_json::to_string(config).expect("json")).expect("write");
        path
    }

    async fn balance(&self, who: &str) -> u64 {
        let out = self.run(&["balance", who, "--json"]).await.ok();
        out.json()["balance"]["value"]["amount"]
            .as_u64()
            .expect("amount")
    }

    async fn stop(self) {
        if let Some(c) = self.local {
            c.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_end_to_end() {
    end_to_end(Env::new([Behaviour::Honest; 4]).await).await;
}

/// Four `coffer-node` processes from `coffer-node testnet` (real consensus, storage, TLS and
/// p2p on loopback); killed on drop.
struct RealCluster {
    dir: tempfile::TempDir,
    children: Vec<std::process::Child>,
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl RealCluster {
    async fn start() -> RealCluster {
        // `cargo test --workspace` builds the node's binary next to ours (the node's own
        // integration tests need it).
        let bin = Path::new(env!("CARGO_BIN_EXE_coffer")).with_file_name("coffer-node");
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build -p coffer-node), or run the workspace tests",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let out_dir = dir.path().join("testnet");
        let base = coffer_node::testnet::free_base_port(4).expect("no free port range");
        let out = std::process::Command::new(&bin)
            .args([
                "testnet",
                "--replicas",
                "4",
                "--base-port",
                &base.to_string(),
                "--out",
            ])
            .arg(&out_dir)
            .output()
            .expect("coffer-node testnet");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = RealCluster {
            dir,
            children: Vec::new(),
        };
        for i in 0..4 {
            let home = out_dir.join(format!("replica{i}"));
            let log = std::fs::File::create(home.join("replica.log")).expect("log");
            cluster.children.push(
                std::process::Command::new(&bin)
                    .args(["start", "--home"])
                    .arg(&home)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .expect("start replica"),
            );
        }
        // Ready when every replica reports a finalized block over HTTPS.
        let config = coffer_wallet::ClusterConfig::load(&cluster.cluster_path()).expect("config");
        let client = coffer_wallet::Client::new(config).expect("client");
        let started = std::time::Instant::now();
        loop {
            let reports = client.status().await;
            if reports
                .iter()
                .all(|r| r.status.as_ref().is_some_and(|s| s.height >= 1))
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "cluster not ready: {reports:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        cluster
    }

    fn cluster_path(&self) -> PathBuf {
        self.dir.path().join("testnet/cluster.json")
    }

    fn issuer_secret(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("testnet/issuer.key"))
            .expect("issuer.key")
            .trim()
            .to_owned()
    }
}

/// The same walk-through as [`cli_end_to_end`], against real replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_end_to_end_on_real_replicas() {
    if std::env::var("COFFER_E2E_CLUSTER").is_ok() {
        return;
    }
    let cluster = RealCluster::start().await;
    end_to_end(Env::real(cluster.cluster_path(), cluster.issuer_secret())).await;
    drop(cluster);
}

async fn end_to_end(env: Env) {
    // Keys: an empty list, two new keys, the issuer imported from stdin.
    let listed = env.run(&["keys", "list", "--json"]).await.ok().json();
    assert_eq!(listed["keys"], Value::Array(vec![]));
    let alice = env
        .run(&["keys", "new", "alice", "--json"])
        .await
        .ok()
        .json();
    let alice_addr = alice["address"].as_str().expect("address").to_owned();
    env.run(&["keys", "new", "bob"]).await.ok();
    let import = env
        .run_with(
            &["keys", "import", "issuer", "--json"],
            Some(&format!("{}\n", env.issuer_secret)),
            PASSWORD,
            &env.cluster_path,
        )
        .await
        .ok();
    let issuer_addr = Keypair::from_secret_hex(&env.issuer_secret)
        .expect("issuer secret")
        .address()
        .to_string();
    assert_eq!(import.json()["address"], issuer_addr);
    assert!(
        !import.stdout.contains(&env.issuer_secret) && !import.stderr.contains(&env.issuer_secret)
    );
    let text = std::fs::read_to_string(env.keystore()).expect("keystore");
    assert!(
        !text.contains(&env.issuer_secret),
        "secrets are encrypted at rest"
    );
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(env.keystore())
            .expect("keystore")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode, 0o600);
    // A refused secret is never quoted back (upper-case hex is not accepted), and an empty
    // COFFER_PASSWORD (an unset shell variable, most likely) is refused, not used.
    let upper = "AB".repeat(32);
    let refused = env
        .run_with(
            &["keys", "import", "upper", "--json"],
            Some(&format!("{upper}\n")),
            PASSWORD,
            &env.cluster_path,
        )
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        !refused.stdout.contains(&upper) && !refused.stderr.contains(&upper),
        "{refused:?}"
    );
    let empty = env
        .run_with(&["keys", "new", "carol"], None, "", &env.cluster_path)
        .await;
    assert_ne!(empty.code, 0);
    assert!(
        empty.stderr.contains("COFFER_PASSWORD is empty"),
        "{}",
        empty.stderr
    );
    let listed = env.run(&["keys", "list", "--json"]).await.ok().json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(3), "{listed}");
    let exported = env
        .run(&["keys", "export", "issuer", "--yes", "--json"])
        .await
        .ok();
    assert_eq!(exported.json()["secret_key"], env.issuer_secret);
    let shown = env.run(&["keys", "show", "alice"]).await.ok();
    assert!(shown.stdout.contains(&alice_addr));
    assert!(
        !shown.stdout.contains("secret"),
        "show never prints secrets"
    );
    let listed = env.run(&["keys", "list", "--json"]).await.ok().json();
    assert_eq!(listed["keys"].as_array().map(Vec::len), Some(3));

    let supply_before = env.run(&["supply", "--json"]).await.ok().json()["supply"]["value"]
        .as_u64()
        .expect("supply");

    // Mint to alice, pay bob, read everything back.
    let minted = env
        .run(&[
            "mint", "--issuer", "issuer", "--to", "alice", "1000", "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(minted["committed"]["code"], "ok");
    let mint_txid = minted["committed"]["txid"]
        .as_str()
        .expect("txid")
        .to_owned();
    assert_eq!(env.balance("alice").await, 1000);
    let sent = env
        .run(&["send", "--from", "alice", "--to", "bob", "250", "--json"])
        .await
        .ok()
        .json();
    assert_eq!(sent["code"], "ok");
    assert!(sent["signers"].as_array().expect("signers").len() >= 2);
    let send_txid = sent["txid"].as_str().expect("txid").to_owned();
    assert_eq!(env.balance("bob").await, 250);
    assert_eq!(env.balance(&alice_addr).await, 750);
    let human = env.run(&["balance", "alice"]).await.ok();
    assert!(human.stdout.contains("750") && human.stdout.contains("verified at height"));

    let page = env
        .run(&["history", "alice", "--limit", "1", "--json"])
        .await
        .ok()
        .json();
    let page = &page["history"]["value"];
    assert_eq!(page["entries"][0]["txid"], send_txid.as_str());
    let cursor = page["next_cursor"].as_str().expect("older page").to_owned();
    let older = env
        .run(&[
            "history", "alice", "--limit", "1", "--cursor", &cursor, "--json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        older["history"]["value"]["entries"][0]["txid"],
        mint_txid.as_str()
    );
    let utxos = env.run(&["utxos", "alice", "--json"]).await.ok().json();
    let entries = utxos["utxos"]["value"]["entries"]
        .as_array()
        .expect("entries")
        .clone();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["amount"], 750);
    let shown = env
        .run(&["tx", "show", &send_txid, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        (shown["status"].as_str(), shown["code"].as_str()),
        (Some("committed"), Some("ok"))
    );

    // Offline flow: build (cluster, no password), sign (no cluster), submit twice (replay).
    // A second payment built from the same coins before the first is submitted conflicts
    // with it, as one made on another device would.
    let unsigned = env.dir.path().join("unsigned.json");
    let signed = env.dir.path().join("signed.json");
    let unsigned_rival = env.dir.path().join("unsigned-rival.json");
    let signed_rival = env.dir.path().join("signed-rival.json");
    for (amount, unsigned, signed) in [
        ("100", &unsigned, &signed),
        ("101", &unsigned_rival, &signed_rival),
    ] {
        env.run(&[
            "tx",
            "build",
            "--from",
            "alice",
            "--to",
            "bob",
            amount,
            "--out",
            unsigned.to_str().expect("utf8"),
        ])
        .await
        .ok();
        env.run_with(
            &[
                "tx",
                "sign",
                unsigned.to_str().expect("utf8"),
                "--key",
                "alice",
                "--out",
                signed.to_str().expect("utf8"),
            ],
            None,
            PASSWORD,
            Path::new("/nonexistent/cluster.json"),
        )
        .await
        .ok();
    }
    let first = env
        .run(&["tx", "submit", signed.to_str().expect("utf8"), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(first["replayed"], false);
    let again = env
        .run(&["tx", "submit", signed.to_str().expect("utf8"), "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        again["replayed"], true,
        "resubmitting is safe: same txid, applied once"
    );
    assert_eq!(again["txid"], first["txid"]);
    let rival = env
        .run(&["tx", "submit", signed_rival.to_str().expect("utf8")])
        .await;
    assert_eq!(rival.code, 2, "rejected: {}", rival.stderr);
    assert!(
        rival.stderr.contains("input_already_spent")
            && rival
                .stderr
                .contains("hint: an input was spent by another transaction"),
        "{}",
        rival.stderr
    );
    assert_eq!(env.balance("bob").await, 350);
    assert_eq!(env.balance("alice").await, 650);

    let supply = env.run(&["supply", "--json"]).await.ok().json()["supply"]["value"]
        .as_u64()
        .expect("supply");
    if env.local.is_some() {
        assert_eq!(supply, supply_before + 1000);
    } else {
        // A shared real cluster may see other mints meanwhile.
        assert!(
            supply >= supply_before + 1000,
            "{supply} < {supply_before} + 1000"
        );
    }
    let blocks = env.run(&["blocks", "--count", "100", "--json"]).await.ok();
    assert!(blocks.stdout.contains(&send_txid), "{}", blocks.stdout);
    let status = env.run(&["status", "--json"]).await.ok().json();
    assert!(status["answered"].as_u64().expect("answered") >= 2);

    // Errors a person understands, with their exit codes.
    let poor = env
        .run(&[
            "send", "--from", "alice", "--to", "bob", "1000000", "--json",
        ])
        .await;
    assert_eq!(poor.code, 2, "{}", poor.stderr);
    assert_eq!(poor.json()["error"]["code"], "insufficient_funds");
    let wrong = env
        .run_with(
            &["send", "--from", "alice", "--to", "bob", "1"],
            None,
            "not the password",
            &env.cluster_path,
        )
        .await;
    assert_eq!(wrong.code, 5);
    assert!(wrong.stderr.contains("wrong password"), "{}", wrong.stderr);
    let backwards = env.run(&["blocks", "--from", "5", "--to", "2"]).await;
    assert_eq!(backwards.code, 1, "{}", backwards.stderr);
    let usage = env.run(&["balance"]).await;
    assert_eq!(usage.code, 1, "{}", usage.stderr);
    let unknown = env.run(&["balance", "carol"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("neither an address nor a key name"),
        "{}",
        unknown.stderr
    );
    let refused = env
        .run_with(
            &["keys", "export", "alice"],
            Some("no\n"),
            PASSWORD,
            &env.cluster_path,
        )
        .await;
    assert_eq!(refused.code, 1);
    assert!(
        refused.stdout.is_empty(),
        "nothing printed without confirmation"
    );
    let completions = env.run(&["completions", "bash"]).await.ok();
    assert!(completions.stdout.contains("coffer"));
    assert_eq!(
        env.balance("alice").await,
        650,
        "failed commands changed nothing"
    );
    env.stop().await;
}

/// A lying replica first in line: the CLI shows the true balance, sends once, and names the
/// liar in its JSON output and in verbose mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_not_fooled_by_a_lying_replica() {
    if std::env::var("COFFER_E2E_CLUSTER").is_ok() {
        return; // Needs the in-process lying gateway.
    }
    let env = Env::new([
        Behaviour::Liar,
        Behaviour::Honest,
        Behaviour::Honest,
        Behaviour::Honest,
    ])
    .await;
    env.fund_alice("1000").await;
    let out = env.run(&["balance", "alice", "--json"]).await.ok().json();
    assert_eq!(
        out["balance"]["value"]["amount"], 1000,
        "not the liar's 1001000"
    );
    let problems = out["balance"]["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["replica"] == "replica-0"),
        "{problems:?}"
    );
    let verbose = env.run(&["balance", "alice", "-v"]).await.ok();
    assert!(verbose.stderr.contains("replica-0"), "{}", verbose.stderr);
    let sent = env
        .run(&["send", "--from", "alice", "--to", "bob", "400", "--json"])
        .await
        .ok()
        .json();
    assert_ne!(
        sent["height"], 999,
        "the liar's fake commit was not believed"
    );
    assert_eq!(env.balance("bob").await, 400);
    assert_eq!(env.balance("alice").await, 600);
    let height = env.local.as_ref().map(|c| c.shared.height());
    assert_eq!(height, Some(2), "mint and send applied once each");
    env.stop().await;
}

/// Wrong replica keys: exit 3 and nothing shown as done. Nothing listening: exit 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exit_codes_for_unverifiable_and_unavailable() {
    if std::env::var("COFFER_E2E_CLUSTER").is_ok() {
        return;
    }
    let env = Env::new([Behaviour::Honest; 4]).await;
    let cluster = env.local.as_ref().expect("local cluster");
    env.import_issuer().await;
    let address = issuer().address().to_string();

    let path = env.write_config("wrong-keys.json", &cluster.config_with_wrong_keys());
    let out = env
        .run_with(&["balance", &address, "--json"], None, PASSWORD, &path)
        .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    let err = out.json();
    assert_eq!(err["error"]["code"], "unverifiable");
    assert_eq!(err["error"]["problems"].as_array().map(Vec::len), Some(4));
    let out = env
        .run_with(
            &["mint", "--issuer", "issuer", "--to", &address, "5"],
            None,
            PASSWORD,
            &path,
        )
        .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!out.stdout.contains("committed"), "{}", out.stdout);
    assert!(out.stderr.contains("may still commit"), "{}", out.stderr);
    // The honest gateways did commit it: the saved file retries it safely with the right
    // config, and the answer says it was already applied.
    let out = env
        .run_with(
            &[
                "mint", "--issuer", "issuer", "--to", &address, "7", "--json",
            ],
            None,
            PASSWORD,
            &path,
        )
        .await;
    assert_eq!(out.code, 3);
    let err = out.json();
    let saved = err["error"]["unconfirmed_file"]
        .as_str()
        .expect("saved file")
        .to_owned();
    assert!(saved.ends_with(&format!(
        "{}.json",
        err["error"]["txid"].as_str().expect("txid")
    )));
    let retried = env
        .run(&["tx", "submit", &saved, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(
        retried["replayed"], true,
        "applied once, by the first attempt"
    );
    assert_eq!(retried["txid"], err["error"]["txid"]);
    assert_eq!(env.balance(&address).await, 12);

    let path = env.write_config("down.json", &cluster.config_all_down());
    let out = env.run_with(&["supply"], None, PASSWORD, &path).await;
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("unavailable"), "{}", out.stderr);
    let bad = env
        .run_with(
            &["supply"],
            None,
            PASSWORD,
            Path::new("/nonexistent/cluster.json"),
        )
        .await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("cannot read cluster config"),
        "{}",
        bad.stderr
    );
    env.stop().await;
}

/// Reads never go back in time across invocations: `send` remembers the height it saw
/// committed, and the next `balance` skips a replica still behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_are_monotonic_across_runs() {
    if std::env::var("COFFER_E2E_CLUSTER").is_ok() {
        return;
    }
    let env = Env::new([
        Behaviour::Lagging,
        Behaviour::Honest,
        Behaviour::Honest,
        Behaviour::Honest,
    ])
    .await;
    env.fund_alice("100").await;
    env.local.as_ref().expect("local").shared.freeze();
    env.run(&["send", "--from", "alice", "--to", "bob", "30"])
        .await
        .ok();
    assert_eq!(env.balance("bob").await, 30, "not replica-0's older 0");
    // Without the remembered height the lagging replica's (genuine, older) answer is shown.
    std::fs::remove_file(env.dir.path().join("heights.json")).expect("heights file exists");
    assert_eq!(env.balance("bob").await, 0);
    env.stop().await;
}
