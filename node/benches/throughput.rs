//! End-to-end throughput and commit latency of 4 `coffer-node` processes on loopback, over the
//! REST API: HTTPS (TLS 1.3) keep-alive connections, JSON, authenticated p2p with ed25519, the
//! real ledger with BIP340 transfers, in-memory state. A transfer counts once its submission
//! answered `200 committed` with code `ok` and at least f+1 signed receipts (the gateway
//! verified them; the latency phase also verifies them here).
//!
//! Setup: the issuer mints `OUTPUTS_PER_WALLET` outputs to each of `WALLETS` wallets; every
//! measured transaction then spends one distinct output (1 input, 1 output), so none conflict.
//!
//! Phase 1 (saturation): `BURST` transfers through `CONNECTIONS_PER_REPLICA` connections per
//! replica, each submitting and waiting for the commit in a loop; reports committed transfers
//! per second (first submission to last commit) and their commit latencies.
//! Phase 2 (latency): `PACED` transfers at `PACED_RATE` per second; reports the time from
//! submission to the committed answer (p50/p90/p99/max).
//!
//! The generated configs are tuned for a loopback benchmark: one client address sends every
//! request, so the per-address rate limit is raised. Run with
//! `cargo bench -p coffer-node --bench throughput`. Bounded: each phase gives up after 120 s.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

#[path = "../tests/support/mod.rs"]
mod support;

use coffer_ledger::{
    SignedTransaction,
    attest::{ReceiptStatement, Signed},
};
use hyper::StatusCode;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use support::{Https, ProcessCluster};

const REPLICAS: usize = 4;
const WALLETS: usize = 300;
const OUTPUTS_PER_WALLET: usize = 80;
const BURST: usize = 20_000;
const CONNECTIONS_PER_REPLICA: usize = 128;
const PACED: usize = 1_000;
const PACED_RATE: u64 = 200;
const GIVE_UP: Duration = Duration::from_secs(120);

/// Loopback benchmark settings applied to each generated replica config.
fn tune(config: String) -> String {
    config.replace(
        "requests_per_second = 200 ",
        "requests_per_second = 1000000 ",
    )
}

fn main() {
    // `cargo test --benches` runs bench targets with `--test`-like args; keep that cheap.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let cluster = support::start_cluster("bench", REPLICAS, tune);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&cluster));
}

async fn run(cluster: &ProcessCluster) {
    let chain = cluster.chain.clone();
    let wallets: Vec<_> = (0..WALLETS as u32).map(support::wallet).collect();
    let recipient = support::wallet(1_000_000);

    // Fund the wallets (not measured).
    let mints: Vec<SignedTransaction> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| support::mint(&chain, &cluster.issuer, i as u64, w, OUTPUTS_PER_WALLET, 10))
        .collect();
    let funded = saturate(cluster, mints.clone(), 16).await;
    assert_eq!(
        funded.committed, WALLETS,
        "funding did not complete: {funded:?}"
    );

    // Pre-sign everything so signing does not count against the replicas.
    let mut next_output = vec![0u32; WALLETS];
    let mut sign = |n: usize| -> Vec<SignedTransaction> {
        (0..n)
            .map(|k| {
                let w = k % WALLETS;
                let tx = support::spend(
                    &chain,
                    &wallets[w],
                    mints[w].txid(),
                    next_output[w],
                    10,
                    &recipient,
                );
                next_output[w] += 1;
                tx
            })
            .collect()
    };
    const { assert!(BURST + PACED <= WALLETS * OUTPUTS_PER_WALLET) };
    let burst = sign(BURST);
    let paced = sign(PACED);

    // Phase 1: saturation.
    let run = saturate(cluster, burst, CONNECTIONS_PER_REPLICA).await;
    let elapsed = run.elapsed.as_secs_f64();
    println!(
        "saturation: {}/{BURST} transfers committed in {elapsed:.2}s = {:.0} tx/s \
         ({} connections; {} failed: {:?}); commit latency {}",
        run.committed,
        run.committed as f64 / elapsed,
        CONNECTIONS_PER_REPLICA * REPLICAS,
        run.failed,
        run.first_failure,
        percentiles(&run.latencies)
    );

    // Phase 2: paced submissions for commit latency.
    let latencies = paced_run(cluster, paced, REPLICAS).await;
    println!(
        "commit latency at {PACED_RATE} tx/s over {} transfers (receipts verified here): {}",
        latencies.len(),
        percentiles(&latencies)
    );
}

#[derive(Debug, Default)]
struct Run {
    committed: usize,
    failed: usize,
    first_failure: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

/// Checks a submission answer: `200`, committed, code `ok`, at least f+1 receipts.
fn committed(status: StatusCode, body: &[u8], verify: bool) -> Result<(), String> {
    if status != StatusCode::OK {
        return Err(format!("{status}: {}", String::from_utf8_lossy(body)));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not json: {e}"))?;
    let bundle = &answer["bundle"];
    if bundle["status"] != "committed" || bundle["code"] != "ok" {
        return Err(format!("not committed ok: {bundle}"));
    }
    let receipts: Vec<Signed<ReceiptStatement>> =
        serde_json::from_value(bundle["receipts"].clone()).map_err(|e| e.to_string())?;
    // n = 4, f = 1.
    if receipts.len() < 2 {
        return Err(format!("{} receipts", receipts.len()));
    }
    if verify {
        for r in &receipts {
            r.verify_signature()
                .map_err(|e| format!("receipt signature: {e}"))?;
        }
        let first = &receipts[0].statement;
        if receipts.iter().filter(|r| r.statement == *first).count() < 2 {
            return Err("fewer than f+1 matching receipts".into());
        }
    }
    Ok(())
}

/// Submits every transaction through `per_replica` connections to each replica, as fast as the
/// answers come back.
async fn saturate(
    cluster: &ProcessCluster,
    txs: Vec<SignedTransaction>,
    per_replica: usize,
) -> Run {
    let total = txs.len();
    let queue = Arc::new(Mutex::new(VecDeque::from(txs)));
    let mut conns = Vec::new();
    for i in 0..REPLICAS {
        for _ in 0..per_replica {
            conns.push(cluster.connect(i, Duration::from_secs(60)).await);
        }
    }
    let start = Instant::now();
    let mut workers = Vec::new();
    for mut conn in conns {
        let queue = queue.clone();
        workers.push(tokio::spawn(async move {
            let mut run = Run::default();
            loop {
                let Some(tx) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let sent = Instant::now();
                let result = match conn.submit(&tx, true).await {
                    Ok(reply) => committed(reply.status, &reply.body, false),
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        run.committed += 1;
                        run.latencies.push(sent.elapsed());
                        run.elapsed = start.elapsed();
                    }
                    Err(e) => {
                        run.failed += 1;
                        run.first_failure.get_or_insert(e);
                    }
                }
            }
            run
        }));
    }
    let mut total_run = Run::default();
    let joined = tokio::time::timeout(GIVE_UP, async {
        for w in workers {
            let run = w.await.unwrap();
            total_run.committed += run.committed;
            total_run.failed += run.failed;
            if total_run.first_failure.is_none() {
                total_run.first_failure = run.first_failure;
            }
            total_run.elapsed = total_run.elapsed.max(run.elapsed);
            total_run.latencies.extend(run.latencies);
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "gave up after {GIVE_UP:?} of {total} submissions"
    );
    total_run.latencies.sort();
    total_run
}

/// Submits at `PACED_RATE` per second, rotating over the replicas, from a pool of connections.
async fn paced_run(
    cluster: &ProcessCluster,
    txs: Vec<SignedTransaction>,
    replicas: usize,
) -> Vec<Duration> {
    let mut pools = Vec::new();
    for i in 0..replicas {
        let (tx, rx) = tokio::sync::mpsc::channel::<Https>(64);
        for _ in 0..32 {
            tx.send(cluster.connect(i, Duration::from_secs(10)).await)
                .await
                .unwrap();
        }
        pools.push((tx, Arc::new(tokio::sync::Mutex::new(rx))));
    }
    let start = tokio::time::Instant::now();
    let interval = Duration::from_micros(1_000_000 / PACED_RATE);
    let mut tasks = Vec::new();
    for (k, tx) in txs.into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let (back, pool) = pools[k % replicas].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.lock().await.recv().await.unwrap();
            let sent = Instant::now();
            let reply = conn.submit(&tx, true).await.expect("submit");
            let latency = sent.elapsed();
            committed(reply.status, &reply.body, true).expect("committed");
            let _ = back.send(conn).await;
            latency
        }));
    }
    let mut out = Vec::new();
    let joined = tokio::time::timeout(GIVE_UP, async {
        for t in tasks {
            out.push(t.await.unwrap());
        }
    })
    .await;
    assert!(joined.is_ok(), "paced phase gave up after {GIVE_UP:?}");
    out.sort();
    out
}

fn percentiles(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "n/a".into();
    }
    let pct = |p: f64| {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i].as_secs_f64() * 1_000.0
    };
    format!(
        "p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    )
}
