//! What a gateway's answer to a submission costs in JSON: the committed bundle with four
//! replicas' receipts, each carrying its inclusion proof in a block of 128 transactions (seven
//! path hashes), serialized by the replica and parsed by the client. Hashes, keys and
//! signatures travel as hex, so this is mostly hex. The binary form the wallet asks for
//! (`SubmitOutcome::encode`) is measured beside it.
//!
//! `cargo bench -p coffer-ledger --bench json -- --quick`
#![allow(missing_docs, clippy::unwrap_used)]

use coffer_ledger::Txid;
use coffer_ledger::attest::{ReceiptStatement, sign_receipts};
use coffer_ledger::rest::{ReceiptBundle, SubmitOutcome, TxStatus};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use std::hint::black_box;

fn outcome() -> SubmitOutcome {
    let statements: Vec<ReceiptStatement> = (0..128u8)
        .map(|i| ReceiptStatement {
            chain_id: "coffer-bench".into(),
            txid: [i; 32],
            height: 7_000,
            code: "ok".into(),
            commitment: [0xc0; 32],
        })
        .collect();
    let receipts = (1..=4u8)
        .map(|k| {
            let key = SigningKey::from_bytes(&[k; 32]);
            sign_receipts(statements.clone(), &key)
                .unwrap()
                .swap_remove(5)
        })
        .collect();
    SubmitOutcome {
        replayed: false,
        bundle: ReceiptBundle {
            txid: Txid([5; 32]),
            status: TxStatus::Committed,
            height: Some(7_000),
            code: Some("ok".into()),
            receipts,
        },
    }
}

fn receipts_json(c: &mut Criterion) {
    let outcome = outcome();
    let json = serde_json::to_vec(&outcome).unwrap();
    let mut g = c.benchmark_group(format!("submit outcome, {} bytes of JSON", json.len()));
    g.bench_function("serialize", |b| {
        b.iter(|| serde_json::to_vec(black_box(&outcome)).unwrap())
    });
    g.bench_function("parse", |b| {
        b.iter(|| serde_json::from_slice::<SubmitOutcome>(black_box(&json)).unwrap())
    });
    g.finish();
    let binary = outcome.encode().unwrap();
    let mut g = c.benchmark_group(format!("submit outcome, {} bytes binary", binary.len()));
    g.bench_function("encode", |b| {
        b.iter(|| black_box(&outcome).encode().unwrap())
    });
    g.bench_function("decode", |b| {
        b.iter(|| SubmitOutcome::decode(black_box(&binary)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, receipts_json);
criterion_main!(benches);
