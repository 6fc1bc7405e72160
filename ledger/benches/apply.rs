//! Cost of validating and applying transfers, and of signature verification alone.
//!
//! `CARGO_TARGET_DIR=/work/target cargo bench -p coffer-ledger --bench apply -- --quick`
//! Per-transaction figure = reported time / 1000 (throughput is reported in elements/s).
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)] // counts below 2^16

use coffer_ledger::*;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rayon::prelude::*;

const TXS: usize = 1000;

fn key(i: u32) -> Keypair {
    let mut s = [0x11u8; 32];
    s[..4].copy_from_slice(&i.to_le_bytes());
    Keypair::from_secret_bytes(s).unwrap()
}

/// A ledger where wallets 0..TXS each own one coin, and a block in which each pays the next.
fn setup() -> (LedgerState, Block) {
    let issuer = key(u32::MAX);
    let chain = ChainId::new("coffer-bench").unwrap();
    let genesis = Genesis {
        chain_id: chain.clone(),
        issuers: vec![issuer.public_key()],
        replicas: vec![ReplicaInfo {
            name: "r0".into(),
            public_key: ReplicaKey([1; 32]),
        }],
        limits: Limits::default(),
    };
    let max_out = usize::from(genesis.limits.max_outputs);
    let mut state = LedgerState::new(genesis).unwrap();
    let wallets: Vec<Keypair> = (0..TXS as u32).map(key).collect();
    let mut mints = Vec::new();
    let mut coins = Vec::new();
    for (n, chunk) in wallets.chunks(max_out).enumerate() {
        let tx = Transaction::Mint(Mint {
            chain_id: chain.clone(),
            issuer: issuer.public_key(),
            nonce: n as u64,
            outputs: chunk
                .iter()
                .map(|w| TxOut::to_address(Amount(1000), w.address()))
                .collect(),
        });
        let txid = tx.txid();
        coins.extend((0..chunk.len() as u32).map(|vout| OutPoint { txid, vout }));
        mints.push(tx.sign(&issuer));
    }
    let applied = state
        .apply(&Block {
            height: 1,
            txs: mints,
        })
        .unwrap();
    assert!(
        applied
            .receipts
            .iter()
            .all(|r| r.outcome == Outcome::Accepted)
    );
    let txs: Vec<SignedTransaction> = wallets
        .iter()
        .zip(&coins)
        .enumerate()
        .map(|(i, (w, coin))| {
            let to = wallets[(i + 1) % TXS].address();
            Transaction::Transfer(Transfer {
                chain_id: chain.clone(),
                signer: w.public_key(),
                inputs: vec![*coin],
                outputs: vec![
                    TxOut::to_address(Amount(600), to),
                    TxOut::to_address(Amount(400), w.address()),
                ],
            })
            .sign(w)
        })
        .collect();
    (state, Block { height: 2, txs })
}

fn bench(c: &mut Criterion) {
    let (state, block) = setup();
    {
        let mut check = state.clone();
        let applied = check.apply(&block).unwrap();
        assert!(
            applied
                .receipts
                .iter()
                .all(|r| r.outcome == Outcome::Accepted)
        );
    }
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(TXS as u64));
    g.sample_size(20);
    g.bench_function("apply_block_1000_transfers", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| s.apply(&block).unwrap(),
            BatchSize::LargeInput,
        )
    });
    // Same block with every signature already verified (mempool cache): the non-signature
    // share of apply.
    let cache: std::collections::HashSet<Hash32> = block.txs.iter().map(|t| t.wtxid()).collect();
    g.bench_function("apply_block_1000_transfers_cached_signatures", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| s.apply_with_cache(&block, &cache).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("verify_signatures_parallel_1000", |b| {
        b.iter(|| {
            block
                .txs
                .par_iter()
                .all(SignedTransaction::verify_signature)
        })
    });
    g.bench_function("verify_signatures_sequential_1000", |b| {
        b.iter(|| block.txs.iter().all(SignedTransaction::verify_signature))
    });
    g.bench_function("verify_stateless_sequential_1000", |b| {
        b.iter(|| block.txs.iter().all(|t| state.verify_stateless(t).is_ok()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
