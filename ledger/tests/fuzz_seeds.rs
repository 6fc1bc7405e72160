//! Seed corpus for the libFuzzer targets `decode_block`, `decode_tx` and `decode_submit_outcome`
//! (`fuzz/seeds/`): real blocks, signed transactions and submit answers built with this crate's
//! API, so the fuzzers start from transfers with inputs and outputs, and from answers with
//! signed receipts and Merkle proofs, instead of having to discover the layout from nothing.
//!
//! The test checks that every file in the seed directories decodes and re-encodes to the same
//! bytes (what the fuzz targets assert), and that the generated seeds match the stored files.
//! Regenerate them only after a deliberate encoding change:
//! `COFFER_BLESS_FUZZ_SEEDS=1 cargo test -p coffer-ledger --test fuzz_seeds`.
#![allow(clippy::unwrap_used)]

mod fuzz_txs;

use coffer_ledger::*;
use fuzz_txs::{FUZZ_CHAIN, SampleTxs, key, read_dir_sorted, sample};
use std::path::PathBuf;

/// The genesis of `fuzz/fuzz_targets/decode_tx.rs`: the transaction seeds are valid for it, so
/// `verify_bytes` there runs to the end instead of stopping at the chain or issuer check.
const FUZZ_ISSUER_HEX: &str = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

fn fuzz_genesis() -> Genesis {
    Genesis {
        chain_id: ChainId::new(FUZZ_CHAIN).unwrap(),
        issuers: vec![key(1).public_key()],
        replicas: vec![ReplicaInfo {
            name: "r0".into(),
            public_key: ReplicaKey([1; 32]),
        }],
        limits: Limits::default(),
    }
}

/// `(target, file name, bytes)` for every generated seed.
fn generate() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let SampleTxs { m1, m2, t1, t2, t3 } = sample();
    let block = |height, txs: &[&SignedTransaction]| {
        Block {
            height,
            txs: txs.iter().map(|t| (*t).clone()).collect(),
        }
        .encode()
    };
    vec![
        ("decode_block", "empty.bin", block(1, &[])),
        ("decode_block", "mints.bin", block(1, &[&m1, &m2])),
        ("decode_block", "transfers.bin", block(2, &[&t1, &t2, &t3])),
        ("decode_block", "mixed.bin", block(1, &[&m1, &t1, &m2, &t2])),
        ("decode_tx", "mint.bin", m1.encode()),
        ("decode_tx", "transfer.bin", t1.encode()),
        ("decode_tx", "transfer_two_inputs.bin", t2.encode()),
        ("decode_submit_outcome", "pending.bin", pending_outcome()),
        (
            "decode_submit_outcome",
            "committed.bin",
            committed_outcome(),
        ),
    ]
}

/// A submission still pending: no height, no code, no receipts.
fn pending_outcome() -> Vec<u8> {
    rest::SubmitOutcome {
        replayed: false,
        bundle: rest::ReceiptBundle::pending(Txid([7; 32])),
    }
    .encode()
    .unwrap()
}

/// A committed transfer with three replicas' receipts for the second of four transactions in
/// its block (each receipt a signature over the block's receipt root and a Merkle proof).
fn committed_outcome() -> Vec<u8> {
    let statements: Vec<attest::ReceiptStatement> = (0..4u8)
        .map(|i| attest::ReceiptStatement {
            chain_id: FUZZ_CHAIN.into(),
            txid: [i; 32],
            height: 12,
            code: if i == 2 { "input_already_spent" } else { "ok" }.into(),
            commitment: [0xc0; 32],
        })
        .collect();
    let receipts = (1..=3u8)
        .map(|k| {
            let replica = ed25519_dalek::SigningKey::from_bytes(&[k; 32]);
            attest::sign_receipts(statements.clone(), &replica)
                .unwrap()
                .swap_remove(1)
        })
        .collect();
    rest::SubmitOutcome {
        replayed: false,
        bundle: rest::ReceiptBundle {
            txid: Txid([1; 32]),
            status: rest::TxStatus::Committed,
            height: Some(12),
            code: Some("ok".into()),
            receipts,
        },
    }
    .encode()
    .unwrap()
}

#[test]
fn fuzz_seeds_decode_and_are_current() {
    let seeds = generate();
    if std::env::var_os("COFFER_BLESS_FUZZ_SEEDS").is_some() {
        for (target, name, bytes) in &seeds {
            let dir = seeds_dir().join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (target, name, bytes) in &seeds {
        let stored = std::fs::read(seeds_dir().join(target).join(name)).unwrap();
        assert!(
            stored == *bytes,
            "fuzz/seeds/{target}/{name} is stale: see the module docs"
        );
    }
    // Every stored file, generated or added by hand, is a useful seed: it decodes, and
    // re-encodes to the same bytes, as the fuzz targets assert.
    for path in read_dir_sorted(&seeds_dir().join("decode_block")) {
        let bytes = std::fs::read(&path).unwrap();
        let block = Block::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(block.encode(), bytes, "{}", path.display());
    }
    let genesis = fuzz_genesis();
    for path in read_dir_sorted(&seeds_dir().join("decode_tx")) {
        let bytes = std::fs::read(&path).unwrap();
        let stx =
            SignedTransaction::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(stx.encode(), bytes, "{}", path.display());
        assert_eq!(
            verify_bytes(&genesis, &bytes).map(|(txid, _)| txid),
            Ok(stx.txid()),
            "{}",
            path.display()
        );
    }
    for path in read_dir_sorted(&seeds_dir().join("decode_submit_outcome")) {
        let bytes = std::fs::read(&path).unwrap();
        let outcome = rest::SubmitOutcome::decode(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(outcome.encode().unwrap(), bytes, "{}", path.display());
    }
}

/// The seeds are blocks a ledger accepts, not just bytes that parse: every transaction in them
/// is accepted, the transfers on top of the mints and the mixed block on its own.
#[test]
fn fuzz_seed_blocks_apply_cleanly() {
    let blocks: Vec<(&str, Block)> = generate()
        .into_iter()
        .filter(|(target, _, _)| *target == "decode_block")
        .map(|(_, name, bytes)| (name, Block::decode(&bytes).unwrap()))
        .collect();
    let get = |name: &str| blocks.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    let accepted = |ledger: &mut LedgerState, block: &Block| {
        let applied = ledger.apply(block).unwrap();
        assert!(
            applied
                .receipts
                .iter()
                .all(|r| r.outcome == Outcome::Accepted),
            "{:?}",
            applied.receipts
        );
    };
    let mut ledger = LedgerState::new(fuzz_genesis()).unwrap();
    accepted(&mut ledger, &get("mints.bin"));
    accepted(&mut ledger, &get("transfers.bin"));
    assert_eq!(ledger.balance(&key(4).address()), Amount(150));

    let mut ledger = LedgerState::new(fuzz_genesis()).unwrap();
    accepted(&mut ledger, &get("empty.bin"));
    let mut ledger = LedgerState::new(fuzz_genesis()).unwrap();
    accepted(&mut ledger, &get("mixed.bin"));
}

/// The transaction seeds are only valid for the genesis in the `decode_tx` target.
#[test]
fn fuzz_genesis_matches_decode_tx_target() {
    assert_eq!(key(1).public_key().to_string(), FUZZ_ISSUER_HEX);
    let target = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/fuzz_targets/decode_tx.rs"),
    )
    .unwrap();
    assert!(
        target.contains(&format!("\"chain_id\":\"{FUZZ_CHAIN}\""))
            && target.contains(FUZZ_ISSUER_HEX),
        "decode_tx.rs's genesis changed; update FUZZ_CHAIN / FUZZ_ISSUER_HEX and re-bless"
    );
}
