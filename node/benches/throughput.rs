//! Ordering + execution throughput and commit latency of 4 `coffer-node` processes on loopback
//! (authenticated p2p with ed25519, the real ledger with BIP340 transfers, in-memory state).
//!
//! Setup: the issuer mints `OUTPUTS_PER_WALLET` outputs to each of `WALLETS` wallets; every
//! measured transaction then spends one distinct output (1 input, 1 output), so none conflict.
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

use coffer_node::{ingress::ServerFrame, tx::Txid};
use std::{
    collections::HashMap,
    sync::mpsc,
    time::{Duration, Instant},
};
use support::txid_of as txid;

const REPLICAS: usize = 4;
const WALLETS: usize = 300;
const OUTPUTS_PER_WALLET: usize = 80;
const BURST: usize = 20_000;
const PACED: usize = 1_000;
const PACED_RATE: u64 = 200;
const GIVE_UP: Duration = Duration::from_secs(120);

fn main() {
    // `cargo test --benches` runs bench targets with `--test`-like args; keep that cheap.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let (cluster, chain) = support::start_cluster("bench", REPLICAS);
    let wallets: Vec<_> = (0..WALLETS as u32).map(support::wallet).collect();
    let recipient = support::wallet(1_000_000);

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
    // Fund the wallets (not measured).
    let mints: Vec<Vec<u8>> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| support::mint(&chain, i as u64, w, OUTPUTS_PER_WALLET, 10))
        .collect();
    let mut funding = HashMap::new();
    for (i, m) in mints.iter().enumerate() {
        funding.insert(txid(m), (i % REPLICAS, Instant::now()));
        writers[i % REPLICAS].send(m).expect("send");
    }
    let (funded, _, _, _) = collect(&events_rx, &funding, Instant::now());
    assert_eq!(funded, WALLETS, "funding did not complete");

    // Pre-sign everything so signing does not count against the replicas.
    let mut next_output = vec![0u32; WALLETS];
    let mut sign = |n: usize| -> Vec<(usize, Vec<u8>)> {
        (0..n)
            .map(|k| {
                let w = k % WALLETS;
                let mint = coffer_ledger::SignedTransaction::decode(&mints[w])
                    .expect("mint")
                    .txid();
                let tx = support::spend(&chain, &wallets[w], mint, next_output[w], 10, &recipient);
                next_output[w] += 1;
                (k % REPLICAS, tx)
            })
            .collect()
    };
    const { assert!(BURST + PACED <= WALLETS * OUTPUTS_PER_WALLET) };
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
