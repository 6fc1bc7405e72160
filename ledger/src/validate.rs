//! Stateless validation: everything that can be decided from the transaction and the genesis
//! alone. The mempool runs it on arrival; `apply` runs it (in parallel) on every block.
//!
//! Checks, in order (the first failure is the code reported):
//! 1. encoded size ≤ `max_tx_bytes` (`tx_too_large`); decoding errors are `malformed`, except
//!    over-long lists and oversized input which map to their specific codes;
//! 2. inputs ≤ `max_inputs` (`too_many_inputs`), outputs ≤ `max_outputs` (`too_many_outputs`);
//! 3. chain id equals the genesis chain id (`wrong_chain`);
//! 4. a mint's key is a genesis issuer (`not_an_issuer`);
//! 5. a transfer has inputs (`no_inputs`), every transaction has outputs (`no_outputs`), no
//!    outpoint repeats (`duplicate_input`), every output amount > 0 (`zero_amount`), the outputs'
//!    sum is at most `MAX_SUPPLY` (`amount_overflow`);
//! 6. the BIP340 signature by the signer/issuer over the sighash verifies (`bad_signature`),
//!    last because it is by far the most expensive check.
//!
//! Stateful checks (unknown or spent inputs, ownership, balance, supply cap, mint replay) are in
//! [`crate::state`].

use crate::amount::Amount;
use crate::encoding::DecodeError;
use crate::genesis::Genesis;
use crate::hash::Txid;
use crate::reject::RejectCode;
use crate::tx::{Lock, SignedTransaction, Transaction, TxOut};
use foldhash::{HashSet, HashSetExt as _};

/// Size of the canonical encoding of `stx`, computed without encoding it.
pub fn encoded_len(stx: &SignedTransaction) -> usize {
    let outputs: usize = stx.tx.outputs().iter().map(output_len).sum();
    let chain = 1 + stx.tx.chain_id().as_str().len();
    let body = match &stx.tx {
        Transaction::Transfer(t) => 32 + 2 + 36 * t.inputs.len(),
        Transaction::Mint(_) => 32 + 8,
    };
    1 + chain + body + 2 + outputs + 64
}

fn output_len(o: &TxOut) -> usize {
    8 + match o.lock {
        Lock::Address(_) => 33,
    }
}

/// Every stateless check except the signature; returns the txid.
pub fn check_structure(genesis: &Genesis, stx: &SignedTransaction) -> Result<Txid, RejectCode> {
    check_rules(genesis, stx)?;
    Ok(stx.txid())
}

/// [`check_structure`] for a transaction whose txid is already known.
pub fn check_rules(genesis: &Genesis, stx: &SignedTransaction) -> Result<(), RejectCode> {
    let limits = &genesis.limits;
    // u32 -> usize cannot truncate on the 32- and 64-bit targets we support.
    if encoded_len(stx) > limits.max_tx_bytes as usize {
        return Err(RejectCode::TxTooLarge);
    }
    let tx = &stx.tx;
    if tx.inputs().len() > usize::from(limits.max_inputs) {
        return Err(RejectCode::TooManyInputs);
    }
    if tx.outputs().len() > usize::from(limits.max_outputs) {
        return Err(RejectCode::TooManyOutputs);
    }
    if tx.chain_id() != &genesis.chain_id {
        return Err(RejectCode::WrongChain);
    }
    match tx {
        Transaction::Mint(m) => {
            if !genesis.is_issuer(&m.issuer) {
                return Err(RejectCode::NotAnIssuer);
            }
        }
        Transaction::Transfer(t) => {
            if t.inputs.is_empty() {
                return Err(RejectCode::NoInputs);
            }
        }
    }
    if tx.outputs().is_empty() {
        return Err(RejectCode::NoOutputs);
    }
    let mut seen = HashSet::with_capacity(tx.inputs().len());
    if !tx.inputs().iter().all(|i| seen.insert(*i)) {
        return Err(RejectCode::DuplicateInput);
    }
    if tx.outputs().iter().any(|o| o.amount == Amount::ZERO) {
        return Err(RejectCode::ZeroAmount);
    }
    if Amount::checked_sum(tx.outputs().iter().map(|o| o.amount)).is_none() {
        return Err(RejectCode::AmountOverflow);
    }
    Ok(())
}

/// All stateless checks including the signature (what the mempool runs): `Ok(txid)` or the code.
pub fn verify_stateless(genesis: &Genesis, stx: &SignedTransaction) -> Result<Txid, RejectCode> {
    let txid = check_structure(genesis, stx)?;
    if stx.verify_signature_with_txid(&txid) {
        Ok(txid)
    } else {
        Err(RejectCode::BadSignature)
    }
}

/// Decodes untrusted bytes, then [`verify_stateless`]. Never panics.
pub fn verify_bytes(
    genesis: &Genesis,
    bytes: &[u8],
) -> Result<(Txid, SignedTransaction), RejectCode> {
    // u32 -> usize cannot truncate on supported targets.
    if bytes.len() > genesis.limits.max_tx_bytes as usize {
        return Err(RejectCode::TxTooLarge);
    }
    let stx = SignedTransaction::decode(bytes).map_err(|e: DecodeError| RejectCode::from(&e))?;
    let txid = verify_stateless(genesis, &stx)?;
    Ok((txid, stx))
}
