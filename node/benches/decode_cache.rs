//! What the replica's decode cache saves per lookup: decoding a signed transfer (parsing its
//! x-only key costs a field square root) against hashing its bytes into a wtxid, and a cache
//! hit (hash, lock, map lookup); and decoding a new transfer of a signer whose key the
//! replica's key cache already holds.
//!
//! Then a block of transfers through one replica's ledger, as consensus hands it over: each
//! transfer checked on arrival (its signature already verified, so this is everything else:
//! decoding, ids, structure), then the block applied and persisted to the memory store. What
//! it measures is the replica's own work per transaction besides the signature check and
//! consensus.
//!
//! `CARGO_TARGET_DIR=/work/target cargo bench -p coffer-node --bench decode_cache -- --quick`
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

use bytes::Bytes;
use coffer_ledger::*;
use coffer_node::ledger::{LedgerMachine, LedgerVerifier};
use coffer_node::sigcache::{VerifiedSignatures, wtxid_of};
use coffer_node::tx::{StateMachine, TxVerifier};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;

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

/// Transfers in the measured block: about what a block carries at the benchmark's peak.
const BLOCK_TXS: usize = 100;

fn block_through_a_replica(c: &mut Criterion) {
    let issuer = Keypair::from_secret_bytes([7; 32]).unwrap();
    let replica = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let genesis = Arc::new(coffer_testkit::genesis("coffer-bench", &issuer, &[replica]));
    let chain = genesis.chain_id.clone();
    // One wallet per transfer, as in the benchmark (every signer's key is new to the block).
    let wallets: Vec<Keypair> = (0..BLOCK_TXS)
        .map(|i| Keypair::from_secret_bytes([i as u8 + 10; 32]).unwrap())
        .collect();
    let mint = issuer.sign_tx(Transaction::Mint(Mint {
        chain_id: chain.clone(),
        issuer: issuer.public_key(),
        nonce: 1,
        outputs: wallets
            .iter()
            .map(|w| TxOut::to_address(Amount(100), w.address()))
            .collect(),
    }));
    let transfers: Vec<Bytes> = wallets
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let to = wallets[(i + 1) % wallets.len()].address();
            Bytes::from(
                w.sign_tx(Transaction::Transfer(Transfer {
                    chain_id: chain.clone(),
                    signer: w.public_key(),
                    inputs: vec![OutPoint {
                        txid: mint.txid(),
                        vout: i as u32,
                    }],
                    outputs: vec![
                        TxOut::to_address(Amount(60), to),
                        TxOut::to_address(Amount(40), w.address()),
                    ],
                }))
                .encode(),
            )
        })
        .collect();
    let mint = Bytes::from(mint.encode());
    let mut g = c.benchmark_group(format!("block of {BLOCK_TXS} transfers"));
    g.bench_function(
        "checked (signatures verified before), applied, persisted",
        |b| {
            b.iter_batched(
                || {
                    // A replica at height 1 whose cache holds every transfer as verified, not
                    // decoded: what is left once gossip's copy was checked and forgotten.
                    let mut machine = LedgerMachine::new(Genesis::clone(&genesis)).unwrap();
                    machine.apply_block(1, std::slice::from_ref(&mint));
                    futures::executor::block_on(machine.persist()).unwrap();
                    let fresh = VerifiedSignatures::default();
                    for tx in &transfers {
                        fresh.insert(wtxid_of(tx));
                    }
                    let verifier =
                        LedgerVerifier::with_signatures(genesis.clone(), Arc::new(fresh));
                    let machine = machine.with_signatures(verifier.signatures());
                    (verifier, machine)
                },
                |(verifier, mut machine)| {
                    for tx in &transfers {
                        verifier.check(black_box(tx)).unwrap();
                    }
                    let receipts = machine.apply_block(2, &transfers);
                    assert!(receipts.iter().all(|r| r.rejection.is_none()));
                    futures::executor::block_on(machine.persist()).unwrap();
                    (verifier, machine)
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, decode_vs_hash, block_through_a_replica);
criterion_main!(benches);
