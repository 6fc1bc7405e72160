//! Shared helpers for the integration tests: fixed keys, a test genesis, transaction builders.
#![allow(dead_code, clippy::unwrap_used)]

use coffer_ledger::*;

pub const CHAIN: &str = "coffer-test";

/// Deterministic key from a one-byte seed (seed 0 is invalid, so it is shifted).
pub fn key(seed: u8) -> Keypair {
    let mut s = [0u8; 32];
    s[31] = seed;
    s[0] = 0x42;
    Keypair::from_secret_bytes(s).unwrap()
}

pub fn issuer() -> Keypair {
    key(1)
}

pub fn genesis_with(limits: Limits) -> Genesis {
    Genesis {
        chain_id: ChainId::new(CHAIN).unwrap(),
        issuers: vec![issuer().public_key()],
        replicas: vec![ReplicaInfo {
            name: "r0".into(),
            public_key: ReplicaKey([7; 32]),
        }],
        limits,
    }
}

pub fn genesis() -> Genesis {
    genesis_with(Limits::default())
}

pub fn state() -> LedgerState {
    LedgerState::new(genesis()).unwrap()
}

pub fn chain() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

pub fn mint_tx(nonce: u64, outs: &[(Address, u64)]) -> Transaction {
    Transaction::Mint(Mint {
        chain_id: chain(),
        issuer: issuer().public_key(),
        nonce,
        outputs: outs
            .iter()
            .map(|(a, v)| TxOut::to_address(Amount(*v), *a))
            .collect(),
    })
}

pub fn mint(nonce: u64, outs: &[(Address, u64)]) -> SignedTransaction {
    mint_tx(nonce, outs).sign_with_aux(&issuer(), &[0; 32])
}

pub fn transfer_tx(from: &Keypair, inputs: &[OutPoint], outs: &[(Address, u64)]) -> Transaction {
    Transaction::Transfer(Transfer {
        chain_id: chain(),
        signer: from.public_key(),
        inputs: inputs.to_vec(),
        outputs: outs
            .iter()
            .map(|(a, v)| TxOut::to_address(Amount(*v), *a))
            .collect(),
    })
}

pub fn transfer(from: &Keypair, inputs: &[OutPoint], outs: &[(Address, u64)]) -> SignedTransaction {
    transfer_tx(from, inputs, outs).sign_with_aux(from, &[0; 32])
}

pub fn op(tx: &SignedTransaction, vout: u32) -> OutPoint {
    OutPoint {
        txid: tx.txid(),
        vout,
    }
}

/// Applies one block at the next height and returns the outcomes.
pub fn apply(state: &mut LedgerState, txs: Vec<SignedTransaction>) -> Applied {
    let height = state.height() + 1;
    state.apply(&Block { height, txs }).unwrap()
}

pub fn outcomes(applied: &Applied) -> Vec<Outcome> {
    applied.receipts.iter().map(|r| r.outcome).collect()
}

pub fn rejected(code: RejectCode) -> Outcome {
    Outcome::Rejected(code)
}
