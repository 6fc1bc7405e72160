//! What the replica's decode cache saves per lookup: decoding a signed transfer (parsing its
//! x-only key costs a field square root) against hashing its bytes into a wtxid, and a cache
//! hit (hash, lock, map lookup); and decoding a new transfer of a signer whose key the
//! replica's key cache already holds.
//!
//! `CARGO_TARGET_DIR=/work/target cargo bench -p coffer-node --bench decode_cache -- --quick`
#![allow(missing_docs, clippy::unwrap_used)]

use coffer_ledger::*;
use coffer_node::sigcache::{VerifiedSignatures, wtxid_of};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// A 1-input, 2-output transfer: the shape the throughput benchmark submits.
fn transfer() -> Vec<u8> {
    let alice = Keypair::from_secret_bytes([8; 32]).unwrap();
    alice
        .sign_tx(Transaction::Transfer(Transfer {
            chain_id: ChainId::new("coffer-bench").unwrap(),
            signer: alice.public_key(),
            inputs: vec![OutPoint {
                txid: Txid([3; 32]),
                vout: 0,
            }],
            outputs: vec![TxOut::to_address(Amount(5), alice.address()); 2],
        }))
        .encode()
}

fn decode_vs_hash(c: &mut Criterion) {
    let bytes = transfer();
    let cache = VerifiedSignatures::default();
    cache.decode(&bytes).unwrap();
    let mut g = c.benchmark_group(format!("transfer of {} bytes", bytes.len()));
    g.bench_function("SignedTransaction::decode", |b| {
        b.iter(|| SignedTransaction::decode(black_box(&bytes)).unwrap())
    });
    g.bench_function("wtxid_of", |b| b.iter(|| wtxid_of(black_box(&bytes))));
    g.bench_function("decode, signer's key cached", |b| {
        b.iter(|| SignedTransaction::decode_with(black_box(&bytes), cache.keys()).unwrap())
    });
    g.bench_function("cache hit", |b| {
        b.iter(|| cache.decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, decode_vs_hash);
criterion_main!(benches);
