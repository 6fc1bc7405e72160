//! Operations of real `coffer-node` processes: Prometheus metrics that move with committed
//! transactions, the health endpoint and `coffer-node health`, peers named by DNS, a Redis
//! outage waited out without acknowledging anything unpersisted, and a graceful SIGTERM under
//! load that loses no acknowledged transfer. Every process is killed when its test ends.

#![allow(clippy::cast_possible_truncation, clippy::unwrap_used)]

mod redis_harness;
mod support;

use coffer_ledger::{Amount, Keypair, OutPoint, Transaction, Transfer, TxOut, Txid};
use coffer_wallet::{Client, ClientError, TxInfo};
use std::process::Command;
use std::time::{Duration, Instant};
use support::ProcessCluster;

/// Helpers only these tests use, on the shared harness.
impl ProcessCluster {
    fn ca(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("tls/ca.pem")).unwrap()
    }

    async fn get(&self, i: usize, path: &str) -> Result<(u16, String), String> {
        let url = format!("https://{}", self.api[i]);
        coffer_node::health::probe(&url, path, &self.ca(), Duration::from_secs(5)).await
    }

    /// Polls `/v1/health` of replica `i` until it answers `want` (200 or 503).
    async fn wait_health(&self, i: usize, want: u16, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let got = self.get(i, "/v1/health").await;
            if let Ok((code, body)) = &got
                && *code == want
            {
                return body.clone();
            }
            assert!(
                started.elapsed() < within,
                "replica{i} health is not {want} after {within:?}: {got:?}\n{}",
                self.tail(i)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn metrics(&self, i: usize) -> String {
        let (code, body) = self.get(i, "/metrics").await.expect("metrics answered");
        assert_eq!(code, 200);
        body
    }

    fn health_cli(&self, i: usize) -> (bool, String) {
        let out = Command::new(support::bin())
            .args(["health", "--home"])
            .arg(self.home(i))
            .output()
            .expect("run coffer-node health");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

/// The value of an unlabelled or fully labelled sample (`name` includes the labels).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A transfer spending an outpoint that never existed: valid on its own, rejected in the
/// block with `unknown_input`.
fn phantom_transfer(client: &Client, from: &Keypair) -> coffer_ledger::SignedTransaction {
    Transaction::Transfer(Transfer {
        chain_id: client.chain_id().clone(),
        signer: from.public_key(),
        inputs: vec![OutPoint {
            txid: Txid([0x5a; 32]),
            vout: 0,
        }],
        outputs: vec![TxOut::to_address(Amount(5), from.address())],
    })
    .sign(from)
}

/// Four replicas whose configs name their peers `localhost:port` (resolved at start) reach
/// each other and report healthy; a mint, a transfer and an in-block rejection move the
/// executed height, the committed and rejected counters and the commit-latency histogram on
/// `/metrics`, which also carries the consensus engine's view metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_and_named_peers_reach_each_other() {
    let net = ProcessCluster::start("ops-metrics", 4, None, |text| {
        text.replace("address = \"127.0.0.1:", "address = \"localhost:")
    });
    let peers = std::fs::read_to_string(net.home(0).join("config.toml")).unwrap();
    assert!(
        peers.contains("address = \"localhost:"),
        "peers named by DNS"
    );
    for i in 0..4 {
        let body = net.wait_health(i, 200, Duration::from_secs(90)).await;
        assert!(body.contains("\"healthy\":true"), "{body}");
    }
    let (ok, out) = net.health_cli(0);
    assert!(ok, "coffer-node health: {out}");
    assert!(out.starts_with("HEALTHY replica0"), "{out}");
    assert!(out.contains("peers"), "{out}");

    let before: Vec<String> = futures::future::join_all((0..4).map(|i| net.metrics(i))).await;
    let mut client = net.client();
    let alice = Keypair::generate();
    client.add_key("alice", alice.clone());
    let minted = client
        .mint("issuer", &alice.address(), Amount(1_000), 1)
        .await
        .expect("mint");
    let sent = client
        .send("alice", &Keypair::generate().address(), Amount(100))
        .await
        .expect("send");
    match client.submit(&phantom_transfer(&client, &alice)).await {
        Err(ClientError::Rejected { code, .. }) => assert_eq!(code, "unknown_input"),
        other => panic!("phantom input must be rejected in its block: {other:?}"),
    }

    let committed = "coffer_transactions_committed_total";
    let rejected = "coffer_transactions_rejected_total{code=\"unknown_input\"}";
    let latency = "coffer_commit_latency_seconds_count";
    let height = "coffer_executed_height";
    // Every replica executes the same blocks; poll until each has seen them.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after: Vec<String> = futures::future::join_all((0..4).map(|i| net.metrics(i))).await;
        let done = (0..4).all(|i| {
            sample(&after[i], committed) >= sample(&before[i], committed) + 2.0
                && sample(&after[i], rejected) >= sample(&before[i], rejected) + 1.0
        });
        if done || Instant::now() > deadline {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for i in 0..4 {
        let (b, a) = (&before[i], &after[i]);
        assert!(
            sample(a, committed) >= sample(b, committed) + 2.0,
            "replica{i} counted the mint and the transfer:\n{a}"
        );
        assert!(
            sample(a, rejected) >= sample(b, rejected) + 1.0,
            "replica{i} counted the rejection"
        );
        assert!(sample(a, height) >= sent.height as f64, "replica{i} height");
        assert!(sample(a, height) > sample(b, height));
        // The ledger's sizes: the mint made one output, the send spent it and made two (to a
        // new address and back to alice); the rejected transfer changed no output, and its txid
        // is remembered (its rejection is final).
        for (gauge, grew) in [
            ("coffer_ledger_utxos", 2.0),
            ("coffer_ledger_spent_outputs", 1.0),
            ("coffer_ledger_addresses", 2.0),
            ("coffer_ledger_rejected_txids", 1.0),
        ] {
            assert_eq!(
                sample(a, gauge) - sample(b, gauge),
                grew,
                "replica{i} {gauge}:\n{a}"
            );
        }
        assert!(sample(a, "coffer_store_persist_seconds_count") > 0.0);
        assert_eq!(sample(a, "coffer_healthy"), 1.0, "replica{i}");
        // The consensus engine's own registry is exported too: its current view.
        assert!(
            a.lines()
                .any(|l| l.contains("current_view") && !l.starts_with('#')),
            "replica{i} exports the consensus view:\n{a}"
        );
        // And ours, from the consensus seam: views only move forward.
        assert!(
            sample(a, "coffer_consensus_view") >= 1.0,
            "replica{i} view:\n{a}"
        );
        assert!(sample(a, "coffer_consensus_view") >= sample(b, "coffer_consensus_view"));
        assert!(
            sample(a, "coffer_consensus_finalized_height") >= 1.0,
            "replica{i}"
        );
        assert!(
            a.contains("coffer_consensus_view_changes_total "),
            "replica{i}"
        );
        // Alice's key was new to every replica, and parsed once: her second transfer found it.
        let (parsed, cached) = (
            "coffer_signer_keys_parsed_total",
            "coffer_signer_keys_cached_total",
        );
        assert!(
            sample(a, parsed) > sample(b, parsed),
            "replica{i} parsed alice's key:\n{a}"
        );
        assert!(
            sample(a, cached) > sample(b, cached),
            "replica{i} found alice's key parsed:\n{a}"
        );
        // Blocks it had verified (or proposed) were executed on their finalization
        // certificate, without waiting for marshal's delivery.
        let early = "coffer_consensus_blocks_executed_early_total";
        assert!(
            sample(a, early) > sample(b, early),
            "replica{i} executed blocks early:\n{a}"
        );
    }
    // The three submissions were accepted by some replica (the client asks replica0 first),
    // which timed each from acceptance to execution.
    let timed: f64 = (0..4)
        .map(|i| sample(&after[i], latency) - sample(&before[i], latency))
        .sum();
    assert!(timed >= 3.0, "commit latencies observed: {timed}");
    assert!(sent.height > minted.height);
    drop(net);
}

/// Raises the store's own retry budget to a fraction of a second, so the old fail-stop point
/// (the executor gave up once the store's budget was spent) is passed quickly.
fn short_store_budget(text: String) -> String {
    let text = text.replace(
        "retry = { base_delay_ms = 20, max_delay_ms = 1000, max_elapsed_ms = 30000 }",
        "retry = { base_delay_ms = 20, max_delay_ms = 100, max_elapsed_ms = 300 }",
    );
    assert!(
        text.contains("max_elapsed_ms = 300 "),
        "retry line rewritten"
    );
    text.replace("slow_persist_ms = 5000", "slow_persist_ms = 1000")
}

/// Redis goes away for several times the store's retry budget (which used to stop the
/// replica): the replica keeps running, reports its store unhealthy (`/v1/health` 503,
/// `coffer-node health` exit 1, metrics, a stall warning in its log), acknowledges nothing
/// meanwhile, and once Redis is back it persists, commits the waiting transfer and is healthy
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_waited_out_and_reported() {
    let mut redis = redis_harness::Standalone::start();
    let url = redis.server.url();
    let mut net = ProcessCluster::start("ops-outage", 1, Some(&url), short_store_budget);
    net.wait_health(0, 200, Duration::from_secs(60)).await;
    let mut client = net.client();
    let alice = Keypair::generate();
    let bob = Keypair::generate();
    client.add_key("alice", alice.clone());
    client
        .mint("issuer", &alice.address(), Amount(500), 7)
        .await
        .expect("mint before the outage");
    let transfer = client
        .prepare_send("alice", &bob.address(), Amount(200))
        .await
        .expect("transfer prepared before the outage");

    // A clean Redis shutdown (the AOF is flushed); the same server restarts later.
    redis_harness::cli(redis.server.port, &["shutdown"]);
    let down = Instant::now();
    let body = net.wait_health(0, 503, Duration::from_secs(20)).await;
    assert!(body.contains("\"name\":\"store\",\"ok\":false"), "{body}");
    let submit = {
        let client = net.client();
        let tx = transfer.clone();
        tokio::spawn(async move { client.submit(&tx).await })
    };
    // Several times the store's retry budget (300 ms): the old executor stopped here.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        net.children[0]
            .as_mut()
            .unwrap()
            .try_wait()
            .unwrap()
            .is_none(),
        "the replica survives the outage:\n{}",
        net.tail(0)
    );
    assert!(
        !submit.is_finished() || submit.await.map(|r| r.is_err()).unwrap_or(true),
        "nothing is acknowledged while the block cannot be persisted"
    );
    let submit = {
        let client = net.client();
        let tx = transfer.clone();
        tokio::spawn(async move { client.submit(&tx).await })
    };
    let (healthy, out) = net.health_cli(0);
    assert!(
        !healthy,
        "coffer-node health exits 1 during the outage: {out}"
    );
    assert!(out.contains("store      FAIL"), "{out}");
    let metrics = net.metrics(0).await;
    assert!(sample(&metrics, "coffer_store_persist_failures_total") >= 1.0);
    assert_eq!(
        sample(&metrics, "coffer_health_check{check=\"store\"}"),
        0.0
    );
    assert_eq!(sample(&metrics, "coffer_healthy"), 0.0);
    assert!(down.elapsed() > Duration::from_secs(4));
    // Long enough for the stall warning (no block executed for 5 s).
    let warn_after = coffer_node::watchdog::STALL_AFTER + Duration::from_secs(2);
    tokio::time::sleep(warn_after.saturating_sub(down.elapsed())).await;

    redis.server.restart();
    let committed = tokio::time::timeout(Duration::from_secs(45), submit)
        .await
        .expect("submit answered after Redis returned")
        .unwrap();
    let committed = match committed {
        Ok(c) => c,
        // The first attempt may have given up during the outage: resubmitting is safe.
        Err(_) => client
            .submit(&transfer)
            .await
            .expect("committed after the outage"),
    };
    assert_eq!(committed.code, "ok");
    net.wait_health(0, 200, Duration::from_secs(30)).await;
    assert!(net.health_cli(0).0, "healthy again");
    let balance = client.balance(&bob.address()).await.expect("read");
    assert_eq!(balance.value.amount, Amount(200));
    let log = net.log(0);
    assert!(log.contains("store answers again"), "{}", net.tail(0));
    // The watchdog said so at the default log level, with where consensus was, and said when
    // blocks executed again.
    let warning = log
        .lines()
        .find(|l| l.contains("no block executed"))
        .unwrap_or_else(|| panic!("no stall warning:\n{}", net.tail(0)));
    assert!(
        warning.contains("WARN") && warning.contains("view=") && warning.contains("pending="),
        "{warning}"
    );
    // Said at the watchdog's next tick (every second).
    let said = Instant::now();
    while !net.log(0).contains("blocks executing again") {
        assert!(
            said.elapsed() < Duration::from_secs(5),
            "no recovery line:\n{}",
            net.tail(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM while clients keep submitting: the replica drains, finishes its block and exits 0;
/// restarted on the same Redis, it holds every transfer a client was told was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_transfer() {
    let redis = redis_harness::Standalone::start();
    let url = redis.server.url();
    let mut net = ProcessCluster::start("ops-sigterm", 1, Some(&url), |t| t);
    net.wait_health(0, 200, Duration::from_secs(60)).await;
    const WALLETS: usize = 6;
    let wallets: Vec<Keypair> = (0..WALLETS).map(|_| Keypair::generate()).collect();
    {
        let client = net.client();
        let mints = wallets.iter().enumerate().map(|(i, w)| {
            let client = &client;
            async move {
                client
                    .mint("issuer", &w.address(), Amount(1_000), 100 + i as u64)
                    .await
                    .expect("funding mint")
            }
        });
        futures::future::join_all(mints).await;
    }
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Txid>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for wallet in wallets {
        let mut client = net.client();
        client.add_key("w", wallet);
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let to = Keypair::generate().address();
                match client.send("w", &to, Amount(1)).await {
                    Ok(c) => acknowledged.lock().unwrap().push(c.txid),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "load is not committing:\n{}",
            net.tail(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    net.signal(0, rustix::process::Signal::TERM);
    let code = tokio::task::block_in_place(|| net.wait_exit(0, Duration::from_secs(40)));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let _ = tokio::time::timeout(Duration::from_secs(40), task).await;
    }
    let log = net.log(0);
    assert_eq!(code, Some(0), "clean exit:\n{}", net.tail(0));
    assert!(log.contains("shutting down"), "{}", net.tail(0));
    assert!(
        log.contains("stopped cleanly between blocks"),
        "{}",
        net.tail(0)
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 10);

    net.restart(0);
    net.wait_health(0, 200, Duration::from_secs(60)).await;
    let client = net.client();
    for txid in &acknowledged {
        match client.transaction(txid).await {
            Ok(TxInfo::Committed(c)) => assert_eq!(c.code, "ok", "{txid}"),
            other => panic!("acknowledged {txid} missing after restart: {other:?}"),
        }
    }
    eprintln!(
        "{} acknowledged transfers all present after a SIGTERM under load",
        acknowledged.len()
    );
}
