//! Persisted blocks/s and transactions/s per storage mode, with real ledger blocks.
//!
//! `cargo bench -p coffer-node --bench storage [-- BLOCKS TXS_PER_BLOCK] [MODE...]`, where MODE
//! (`memory`, `standalone`, `sentinel`, `cluster`) picks the stores to measure (default: all).
//!
//! Blocks are built and applied by the real ledger first (signatures and all), so only
//! `persist_applied` is timed. Each Redis mode runs on its own servers started by the test
//! harness on loopback (AOF on, `appendfsync everysec` unless the mode says otherwise; sentinel
//! and cluster with `WAIT 1`). Blocks are persisted one after another, as the executor does.
//! Then the time a restart takes is measured: `restore_ledger` (load and rebuild) on the same
//! store.

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

#[path = "../tests/redis_harness/mod.rs"]
mod redis_harness;

use std::time::Instant;

use coffer_ledger::*;
use coffer_node::storage::ledger::{persist_applied, restore_ledger};
use coffer_node::storage::{MemoryStore, RedisStore, Store};

const CHAIN: &str = "coffer-bench";
const WALLETS: usize = 1_000;

fn key(i: usize) -> Keypair {
    let mut s = [0u8; 32];
    s[0] = 0x42;
    s[24..].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    Keypair::from_secret_bytes(s).unwrap()
}

fn chain() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: chain(),
        issuers: vec![key(usize::MAX - 1).public_key()],
        replicas: vec![ReplicaInfo {
            name: "r0".into(),
            public_key: ReplicaKey([7; 32]),
        }],
        limits: Limits::default(),
    }
}

/// Builds and applies `blocks` blocks of `txs` transfers each (after one funding block).
fn workload(blocks: usize, txs: usize) -> Vec<(Block, Applied)> {
    let issuer = key(usize::MAX - 1);
    let keys: Vec<Keypair> = (0..WALLETS).map(key).collect();
    let mut ledger = LedgerState::new(genesis()).unwrap();
    let mut owned: Vec<Vec<(OutPoint, u64)>> = vec![Vec::new(); WALLETS];
    let mut out = Vec::new();
    // Funding: one mint per 200 wallets, one output each.
    let mut mints = Vec::new();
    for (n, chunk) in keys.chunks(200).enumerate() {
        let m = Transaction::Mint(Mint {
            chain_id: chain(),
            issuer: issuer.public_key(),
            nonce: n as u64,
            outputs: chunk
                .iter()
                .map(|k| TxOut::to_address(Amount(1_000_000), k.address()))
                .collect(),
        })
        .sign_with_aux(&issuer, &[0; 32]);
        for (i, _) in chunk.iter().enumerate() {
            owned[n * 200 + i].push((
                OutPoint {
                    txid: m.txid(),
                    vout: i as u32,
                },
                1_000_000,
            ));
        }
        mints.push(m);
    }
    let b = Block {
        height: 1,
        txs: mints,
    };
    let a = ledger.apply(&b).unwrap();
    out.push((b, a));
    let mut next = 0usize;
    for h in 0..blocks {
        let mut block_txs = Vec::with_capacity(txs);
        let mut received = Vec::new();
        for _ in 0..txs {
            let w = next % WALLETS;
            next += 1;
            let to = (w + 1 + h) % WALLETS;
            let inputs: Vec<(OutPoint, u64)> = std::mem::take(&mut owned[w]);
            let total: u64 = inputs.iter().map(|(_, v)| v).sum();
            let tx = Transaction::Transfer(Transfer {
                chain_id: chain(),
                signer: keys[w].public_key(),
                inputs: inputs.iter().map(|(o, _)| *o).collect(),
                outputs: vec![
                    TxOut::to_address(Amount(1), keys[to].address()),
                    TxOut::to_address(Amount(total - 1), keys[w].address()),
                ],
            })
            .sign_with_aux(&keys[w], &[0; 32]);
            let txid = tx.txid();
            received.push((to, OutPoint { txid, vout: 0 }, 1));
            received.push((w, OutPoint { txid, vout: 1 }, total - 1));
            block_txs.push(tx);
        }
        for (who, op, v) in received {
            owned[who].push((op, v));
        }
        let b = Block {
            height: h as u64 + 2,
            txs: block_txs,
        };
        let a = ledger.apply(&b).unwrap();
        assert!(
            a.receipts
                .iter()
                .all(|r| r.outcome == coffer_ledger::Outcome::Accepted),
            "workload transactions are valid"
        );
        out.push((b, a));
    }
    out
}

async fn run(name: &str, store: &impl Store, work: &[(Block, Applied)]) {
    let started = Instant::now();
    let mut txs = 0usize;
    for (b, a) in work {
        persist_applied(store, b, a).await.unwrap();
        txs += b.txs.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name:<22} {:>6} blocks {:>7} txs in {secs:>7.3} s: {:>8.1} blocks/s {:>9.0} txs/s",
        work.len(),
        txs,
        work.len() as f64 / secs,
        txs as f64 / secs
    );
    // What a restarting replica does: load the store and rebuild the ledger from it.
    let started = Instant::now();
    let restored = restore_ledger(store, genesis()).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    let tip = &work.last().unwrap().1.commitment;
    assert_eq!(&restored.commitment(), tip, "restored the persisted state");
    println!(
        "{name:<22} restart: load and rebuild at height {} ({} unspent outputs) in {secs:.3} s",
        tip.height,
        restored.utxo_count()
    );
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let modes: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
        .collect();
    let wanted = |mode: &str| modes.is_empty() || modes.iter().any(|m| m == mode);
    let blocks = args.first().copied().unwrap_or(200);
    let txs = args.get(1).copied().unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let t = Instant::now();
    let work = workload(blocks, txs);
    println!(
        "workload: 1 funding block + {blocks} blocks x {txs} transfers, built and applied in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    rt.block_on(async {
        if wanted("memory") {
            run("memory", &MemoryStore::new(), &work).await;
        }
        if wanted("standalone") {
            let s = redis_harness::Standalone::start();
            let store = RedisStore::connect(&s.config("bench")).await.unwrap();
            run("standalone everysec", &store, &work).await;
        }
        if wanted("standalone") {
            let mut s = redis_harness::Standalone::start();
            s.server
                .restart_with(&["--appendfsync".into(), "always".into()]);
            let store = RedisStore::connect(&s.config("bench")).await.unwrap();
            run("standalone always", &store, &work).await;
        }
        if wanted("sentinel") {
            let g = redis_harness::SentinelGroup::start();
            let store = RedisStore::connect(&g.config("bench")).await.unwrap();
            run("sentinel WAIT 1", &store, &work).await;
        }
        if wanted("cluster") {
            let c = redis_harness::Cluster::start();
            let store = RedisStore::connect(&c.config("bench")).await.unwrap();
            run("cluster WAIT 1", &store, &work).await;
        }
    });
}
