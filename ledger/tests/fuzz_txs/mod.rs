//! The transactions of the fuzz seed corpora, and a directory helper, shared by `ledger/tests/fuzz_seeds.rs`
//! (`decode_block`, `decode_tx`) and `node/tests/fuzz_seeds.rs` (`decode_consensus`, which
//! includes this file by path). They are valid on the `decode_tx` target's genesis: chain
//! `coffer-fuzz`, issuer secret key 1. Signatures take fixed auxiliary randomness, so the
//! bytes are stable.
#![allow(dead_code)]

use coffer_ledger::{
    Address, Amount, ChainId, Keypair, Mint, OutPoint, SignedTransaction, Transaction, Transfer,
    TxOut,
};
use std::path::{Path, PathBuf};

/// The files of a seed directory, sorted by name.
pub fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files
}

/// The chain of the `decode_tx` target's genesis.
pub const FUZZ_CHAIN: &str = "coffer-fuzz";

/// Deterministic key; secret 1 is the fuzz genesis issuer (its x-only key is the generator).
pub fn key(secret: u8) -> Keypair {
    let mut s = [0u8; 32];
    s[31] = secret;
    Keypair::from_secret_bytes(s).expect("secrets 1..=255 are valid keys")
}

fn chain() -> ChainId {
    ChainId::new(FUZZ_CHAIN).expect("valid chain id")
}

fn outs(to: &[(Address, u64)]) -> Vec<TxOut> {
    to.iter()
        .map(|(a, v)| TxOut::to_address(Amount(*v), *a))
        .collect()
}

/// A mint by the fuzz issuer.
pub fn mint(nonce: u64, to: &[(Address, u64)]) -> SignedTransaction {
    Transaction::Mint(Mint {
        chain_id: chain(),
        issuer: key(1).public_key(),
        nonce,
        outputs: outs(to),
    })
    .sign_with_aux(&key(1), &[0; 32])
}

/// A transfer signed by `from`.
pub fn transfer(from: &Keypair, inputs: &[OutPoint], to: &[(Address, u64)]) -> SignedTransaction {
    Transaction::Transfer(Transfer {
        chain_id: chain(),
        signer: from.public_key(),
        inputs: inputs.to_vec(),
        outputs: outs(to),
    })
    .sign_with_aux(from, &[0; 32])
}

/// Output `vout` of `tx`.
pub fn op(tx: &SignedTransaction, vout: u32) -> OutPoint {
    OutPoint {
        txid: tx.txid(),
        vout,
    }
}

/// Two mints and three transfers, each valid once the ones before it are applied.
pub struct SampleTxs {
    /// Mints 100 to alice (key 2) and 50 to bob (key 3).
    pub m1: SignedTransaction,
    /// Mints 30 to alice.
    pub m2: SignedTransaction,
    /// Alice pays bob 60 from m1, 40 change: one input, two outputs.
    pub t1: SignedTransaction,
    /// Bob pays carol (key 4) 100 from m1 and t1, 10 change: two inputs, one created by t1.
    pub t2: SignedTransaction,
    /// Alice pays carol 50 from t1's change and m2, 20 change.
    pub t3: SignedTransaction,
}

/// The sample transactions.
pub fn sample() -> SampleTxs {
    let (alice, bob, carol) = (key(2), key(3), key(4));
    let m1 = mint(1, &[(alice.address(), 100), (bob.address(), 50)]);
    let m2 = mint(2, &[(alice.address(), 30)]);
    let t1 = transfer(
        &alice,
        &[op(&m1, 0)],
        &[(bob.address(), 60), (alice.address(), 40)],
    );
    let t2 = transfer(
        &bob,
        &[op(&m1, 1), op(&t1, 0)],
        &[(carol.address(), 100), (bob.address(), 10)],
    );
    let t3 = transfer(
        &alice,
        &[op(&t1, 1), op(&m2, 0)],
        &[(carol.address(), 50), (alice.address(), 20)],
    );
    SampleTxs { m1, m2, t1, t2, t3 }
}
