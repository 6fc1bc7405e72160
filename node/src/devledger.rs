//! A minimal signed-transfer ledger that stands in for `coffer-ledger` until its state
//! machine lands on main.
//!
//! Accounts are ed25519 public keys with a balance and a nonce. A transaction moves `amount`
//! from `from` to `to` and is signed by `from` over a domain-separated message. It has one
//! fixed-size canonical encoding:
//!
//! ```text
//! from (32) | to (32) | amount (u64 BE) | nonce (u64 BE) | signature (64)
//! ```
//!
//! Stateless failures (size, encoding, signature, zero amount) are [`TxRejection`]s; stateful
//! ones (wrong nonce, insufficient funds) become deterministic rejection receipts. The signatures
//! are real; only the account model is simpler than the UTXO ledger it replaces.

use crate::tx::{Receipt, StateMachine, TxRejection, TxVerifier, Txid};
use bytes::Bytes;
use commonware_codec::{DecodeExt, Encode};
use commonware_cryptography::{
    Hasher, Signer, Verifier as _,
    ed25519::{PrivateKey, PublicKey, Signature},
    sha256::Sha256,
};
use std::collections::BTreeMap;

/// Signature namespace: a transfer signature can never be replayed as another message kind.
const TRANSFER_NAMESPACE: &[u8] = b"coffer/dev-transfer/v1";
/// Domain tag for transaction ids.
const TXID_TAG: &[u8] = b"coffer/dev-transfer/txid/v1";
/// Domain tag for the state commitment.
const STATE_TAG: &[u8] = b"coffer/dev-transfer/state/v1";

/// Encoded size of a transfer.
pub const TRANSFER_LEN: usize = 32 + 32 + 8 + 8 + 64;
const SIGNED_LEN: usize = TRANSFER_LEN - 64;

/// A decoded, signature-checked transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Paying account.
    pub from: PublicKey,
    /// Receiving account.
    pub to: PublicKey,
    /// Amount moved, in the ledger's smallest unit.
    pub amount: u64,
    /// Must equal the paying account's nonce when applied.
    pub nonce: u64,
}

impl Transfer {
    /// Builds and signs a transfer with `key`, returning its canonical encoding.
    pub fn sign(key: &PrivateKey, to: &PublicKey, amount: u64, nonce: u64) -> Bytes {
        let mut out = Vec::with_capacity(TRANSFER_LEN);
        out.extend_from_slice(&key.public_key().encode());
        out.extend_from_slice(&to.encode());
        out.extend_from_slice(&amount.to_be_bytes());
        out.extend_from_slice(&nonce.to_be_bytes());
        let signature = key.sign(TRANSFER_NAMESPACE, &out);
        out.extend_from_slice(&signature.encode());
        debug_assert_eq!(out.len(), TRANSFER_LEN);
        Bytes::from(out)
    }

    /// Decodes `bytes` without checking the signature.
    fn decode(bytes: &[u8]) -> Result<(Self, Signature), TxRejection> {
        if bytes.len() > TRANSFER_LEN {
            return Err(TxRejection::TooLarge {
                size: bytes.len(),
                max: TRANSFER_LEN,
            });
        }
        if bytes.len() != TRANSFER_LEN {
            return Err(TxRejection::Malformed(format!(
                "transfer is {} bytes, expected {TRANSFER_LEN}",
                bytes.len()
            )));
        }
        let from = PublicKey::decode(Bytes::copy_from_slice(&bytes[0..32]))
            .map_err(|e| TxRejection::Malformed(format!("bad sender key: {e}")))?;
        let to = PublicKey::decode(Bytes::copy_from_slice(&bytes[32..64]))
            .map_err(|e| TxRejection::Malformed(format!("bad recipient key: {e}")))?;
        let amount = u64::from_be_bytes(array8(&bytes[64..72]));
        let nonce = u64::from_be_bytes(array8(&bytes[72..80]));
        let signature = Signature::decode(Bytes::copy_from_slice(&bytes[SIGNED_LEN..]))
            .map_err(|e| TxRejection::Malformed(format!("bad signature encoding: {e}")))?;
        Ok((
            Self {
                from,
                to,
                amount,
                nonce,
            },
            signature,
        ))
    }
}

fn array8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(bytes);
    out
}

/// The transaction id of an encoded transfer (hash over every byte, signature included).
pub fn txid(bytes: &[u8]) -> Txid {
    let digest = Sha256::hash(&[TXID_TAG, bytes]);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Txid(out)
}

/// Stateless checks for [`Transfer`]s.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransferVerifier;

impl TransferVerifier {
    /// Decodes and verifies `bytes`, returning the transfer and its id.
    pub fn decode_verified(bytes: &[u8]) -> Result<(Transfer, Txid), TxRejection> {
        let (transfer, signature) = Transfer::decode(bytes)?;
        let id = txid(bytes);
        if transfer.amount == 0 {
            return Err(TxRejection::Limit("amount must be positive".into()));
        }
        if !transfer
            .from
            .verify(TRANSFER_NAMESPACE, &bytes[..SIGNED_LEN], &signature)
        {
            return Err(TxRejection::BadSignature(id));
        }
        Ok((transfer, id))
    }
}

impl TxVerifier for TransferVerifier {
    fn check(&self, bytes: &[u8]) -> Result<Txid, TxRejection> {
        Self::decode_verified(bytes).map(|(_, id)| id)
    }

    fn txid(&self, bytes: &[u8]) -> Txid {
        txid(bytes)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Account {
    balance: u64,
    nonce: u64,
}

/// In-memory account state for [`Transfer`]s.
#[derive(Debug, Clone, Default)]
pub struct TransferLedger {
    accounts: BTreeMap<PublicKey, Account>,
}

impl TransferLedger {
    /// A ledger holding the given genesis balances.
    pub fn with_genesis(balances: impl IntoIterator<Item = (PublicKey, u64)>) -> Self {
        let mut accounts = BTreeMap::new();
        for (key, balance) in balances {
            accounts.insert(key, Account { balance, nonce: 0 });
        }
        Self { accounts }
    }

    /// The balance of `key` (zero when unknown).
    pub fn balance(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }

    /// The next nonce `key` must use.
    pub fn nonce(&self, key: &PublicKey) -> u64 {
        self.accounts.get(key).map_or(0, |a| a.nonce)
    }

    fn total(&self) -> u128 {
        self.accounts.values().map(|a| u128::from(a.balance)).sum()
    }

    fn apply_one(&mut self, bytes: &[u8]) -> (Txid, Option<&'static str>) {
        let id = txid(bytes);
        // A finalized block was checked (signatures included) by at least f + 1 honest
        // replicas before they voted, so execution only decodes; decoding again keeps it
        // total: garbage yields a rejection, never a panic.
        let Ok((t, _)) = Transfer::decode(bytes) else {
            return (id, Some("malformed"));
        };
        if t.amount == 0 {
            return (id, Some("malformed"));
        }
        let from = self.accounts.get(&t.from).copied().unwrap_or_default();
        if t.nonce != from.nonce {
            return (id, Some("bad_nonce"));
        }
        if from.balance < t.amount {
            return (id, Some("insufficient_funds"));
        }
        let to_balance = if t.from == t.to {
            from.balance
        } else {
            self.balance(&t.to)
        };
        if t.from != t.to && to_balance.checked_add(t.amount).is_none() {
            return (id, Some("overflow"));
        }
        let before = self.total();
        let sender = self.accounts.entry(t.from.clone()).or_default();
        sender.balance -= t.amount;
        sender.nonce += 1;
        let receiver = self.accounts.entry(t.to.clone()).or_default();
        receiver.balance += t.amount;
        assert_eq!(before, self.total(), "transfer must conserve value");
        (id, None)
    }
}

impl StateMachine for TransferLedger {
    fn apply_block(&mut self, _height: u64, txs: &[Bytes]) -> Vec<Receipt> {
        txs.iter()
            .map(|tx| {
                let (txid, rejection) = self.apply_one(tx);
                Receipt { txid, rejection }
            })
            .collect()
    }

    fn commitment(&self) -> [u8; 32] {
        let mut buf = Vec::with_capacity(self.accounts.len() * 48);
        for (key, account) in &self.accounts {
            buf.extend_from_slice(&key.encode());
            buf.extend_from_slice(&account.balance.to_be_bytes());
            buf.extend_from_slice(&account.nonce.to_be_bytes());
        }
        let digest = Sha256::hash(&[STATE_TAG, &buf]);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        out
    }

    fn is_stale(&self, tx: &[u8]) -> bool {
        match Transfer::decode(tx) {
            Ok((t, _)) => t.nonce < self.nonce(&t.from),
            Err(_) => true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn transfer_roundtrip_and_apply() {
        let alice = PrivateKey::from_seed(1);
        let bob = PrivateKey::from_seed(2).public_key();
        let tx = Transfer::sign(&alice, &bob, 10, 0);
        let (t, _) = TransferVerifier::decode_verified(&tx).expect("valid");
        assert_eq!(t.amount, 10);
        let mut ledger = TransferLedger::with_genesis([(alice.public_key(), 15)]);
        let r = ledger.apply_block(1, &[tx.clone(), tx.clone()]);
        assert_eq!(r[0].rejection, None);
        assert_eq!(r[1].rejection, Some("bad_nonce"));
        let r = ledger.apply_block(2, &[Transfer::sign(&alice, &bob, 10, 1)]);
        assert_eq!(r[0].rejection, Some("insufficient_funds"));
        assert_eq!(ledger.balance(&bob), 10);
        assert!(ledger.is_stale(&tx));
    }

    #[test]
    fn tampered_transfer_is_rejected() {
        let alice = PrivateKey::from_seed(1);
        let bob = PrivateKey::from_seed(2).public_key();
        let mut tx = Transfer::sign(&alice, &bob, 10, 0).to_vec();
        tx[70] ^= 1;
        assert!(matches!(
            TransferVerifier.check(&tx),
            Err(TxRejection::BadSignature(_))
        ));
        assert!(matches!(
            TransferVerifier.check(&tx[..10]),
            Err(TxRejection::Malformed(_))
        ));
    }
}
