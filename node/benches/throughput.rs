//! Ordering + execution throughput and commit latency of 4 `coffer-node` processes on loopback
//! (authenticated p2p, real ed25519 signatures, in-memory state).
//!
//! Phase 1 (saturation): submit `BURST` transfers as fast as possible, spread over the four
//! replicas; report executed transactions per second (first submit to last execution).
//! Phase 2 (latency): submit `PACED` transfers at `PACED_RATE` per second; report the time from
//! submission to execution on the replica that received it (p50/p90/p99).
//!
//! Run with `cargo bench -p coffer-node --bench throughput`. Bounded: it gives up after 120 s.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

#[path = "../tests/support/mod.rs"]
mod support;

use coffer_node::{
    devledger::{Transfer, txid},
    ingress::ServerFrame,
    tx::Txid,
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use std::{
    collections::HashMap,
    sync::mpsc,
    time::{Duration, Instant},
};

const REPLICAS: usize = 4;
const ACCOUNTS: usize = 400;
const BURST: usize = 20_000;
const PACED: usize = 1_000;
const PACED_RATE: u64 = 200;
const GIVE_UP: Duration = Duration::from_secs(120);

fn main() {
    // `cargo test --benches` runs bench targets with `--test`-like args; keep that cheap.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let accounts: Vec<PrivateKey> = (0..ACCOUNTS as u64).map(PrivateKey::from_seed).collect();
    let cluster = support::start_cluster("bench", REPLICAS, &accounts, u64::MAX / 2);
    let recipient = PrivateKey::from_seed(77_777).public_key();

    let (events_tx, events_rx) = mpsc::channel::<(usize, Instant, ServerFrame)>();
    let mut writers = Vec::new();
    for (i, addr) in cluster.ingress.iter().enumerate() {
        let client = support::connect(*addr, Duration::from_secs(30));
        writers.push(client.try_clone().expect("clone"));
        let tx = events_tx.clone();
        let mut reader = client;
        std::thread::spawn(move || {
            while let Ok(frame) = reader.recv() {
                if tx.send((i, Instant::now(), frame)).is_err() {
                    return;
                }
            }
        });
    }
    // Let the replicas connect to each other before measuring.
    std::thread::sleep(Duration::from_secs(2));

    // Pre-sign everything so signing does not count against the replicas.
    let mut nonces = vec![0u64; ACCOUNTS];
    let mut sign = |n: usize| -> Vec<(usize, Vec<u8>)> {
        (0..n)
            .map(|k| {
                let a = k % ACCOUNTS;
                let tx = Transfer::sign(&accounts[a], &recipient, 1, nonces[a]);
                nonces[a] += 1;
                // An account's transfers always go to the same replica, in nonce order.
                (a % REPLICAS, tx.to_vec())
            })
            .collect()
    };
    let burst = sign(BURST);
    let paced = sign(PACED);

    // Phase 1: saturation.
    let mut submitted: HashMap<Txid, (usize, Instant)> = HashMap::new();
    let start = Instant::now();
    for (replica, tx) in &burst {
        submitted.insert(txid(tx), (*replica, Instant::now()));
        writers[*replica].send(tx).expect("send");
    }
    let (done, last, rejected, busy) = collect(&events_rx, &submitted, start);
    let elapsed = last.duration_since(start);
    println!(
        "saturation: {done}/{BURST} transfers executed in {:.2}s = {:.0} tx/s ({rejected} rejected receipts, {busy} busy answers)",
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64()
    );

    // Phase 2: paced submissions for commit latency.
    let mut submitted: HashMap<Txid, (usize, Instant)> = HashMap::new();
    let start = Instant::now();
    let interval = Duration::from_micros(1_000_000 / PACED_RATE);
    for (k, (replica, tx)) in paced.iter().enumerate() {
        let due = start + interval * u32::try_from(k).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        submitted.insert(txid(tx), (*replica, Instant::now()));
        writers[*replica].send(tx).expect("send");
    }
    let latencies = latencies(&events_rx, &submitted, start);
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1_000.0
    };
    println!(
        "commit latency at {PACED_RATE} tx/s over {} transfers: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}

/// Waits until every submitted transaction was executed by the replica it was sent to.
fn collect(
    rx: &mpsc::Receiver<(usize, Instant, ServerFrame)>,
    submitted: &HashMap<Txid, (usize, Instant)>,
    start: Instant,
) -> (usize, Instant, usize, usize) {
    let mut done = 0;
    let mut rejected = 0;
    let mut busy = 0;
    let mut last = start;
    while done < submitted.len() {
        let left = (start + GIVE_UP).saturating_duration_since(Instant::now());
        let Ok((replica, at, frame)) = rx.recv_timeout(left) else {
            break;
        };
        match frame {
            ServerFrame::Submitted { status, .. } => busy += usize::from(status != 0),
            ServerFrame::Executed { receipts, .. } => {
                for (id, applied) in receipts {
                    if submitted.get(&id).is_some_and(|(r, _)| *r == replica) {
                        done += 1;
                        rejected += usize::from(!applied);
                        last = at;
                    }
                }
            }
        }
    }
    (done, last, rejected, busy)
}

/// Per-transaction latency from submission to execution on the receiving replica, sorted.
fn latencies(
    rx: &mpsc::Receiver<(usize, Instant, ServerFrame)>,
    submitted: &HashMap<Txid, (usize, Instant)>,
    start: Instant,
) -> Vec<Duration> {
    let mut out = Vec::with_capacity(submitted.len());
    while out.len() < submitted.len() {
        let left = (start + GIVE_UP).saturating_duration_since(Instant::now());
        let Ok((replica, at, frame)) = rx.recv_timeout(left) else {
            break;
        };
        if let ServerFrame::Executed { receipts, .. } = frame {
            for (id, _) in receipts {
                if let Some((r, sent)) = submitted.get(&id)
                    && *r == replica
                {
                    out.push(at.duration_since(*sent));
                }
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no transfer executed in the latency phase");
    out
}
