//! Coffer ledger core: pure types, canonical encoding, validation and the UTXO state machine.
//!
//! Nothing here performs I/O. [`LedgerState::apply`] takes a [`Block`], verifies its signatures
//! in parallel, applies its transactions in order and returns an [`Applied`]: one [`Receipt`]
//! per transaction, the [`Change`] to persist, and the new [`Commitment`].
//!
//! # Public API at a glance
//!
//! - Money: [`Amount`] (`u64` base units, checked arithmetic), [`MAX_SUPPLY`].
//! - Keys: [`Keypair`] (`generate`, `from_secret_bytes`, `public_key`, `address`), x-only
//!   [`PublicKey`], BIP340 [`Signature`], bech32m [`Address`] (`coffer1...`).
//! - Transactions: [`OutPoint`], [`Lock`], [`TxOut`], [`Transfer`], [`Mint`],
//!   [`Transaction`] (`txid`, `sighash`, `sign`, `encode`/`decode`), [`SignedTransaction`]
//!   (`encode`/`decode`, `txid`), [`Block`] (`height` + `txs`), [`ChainId`].
//! - Genesis: [`Genesis`] (`chain_id`, `issuers`, `replicas`, `limits`; `validate`, `f`,
//!   `quorum`, `genesis_hash`), [`ReplicaInfo`], [`ReplicaKey`], [`Limits`].
//! - Outcomes: [`RejectCode`] (stable snake_case), [`Outcome`], [`Receipt`].
//! - State: [`LedgerState`] (`new`, `apply`, `commitment`, `height`, `balance`, `utxos`,
//!   `history`, `total_supply`, `verify_stateless`, `snapshot`, `restore`, `apply_change`),
//!   [`Commitment`], [`Change`], [`Snapshot`], [`HistoryEntry`], [`HistoryPage`].
//! - Mempool: [`verify_stateless`] and [`verify_bytes`] (decode + limits + chain + signature).
//!
//! The byte layouts are specified in `ledger/ENCODING.md` and pinned by golden vectors in
//! `fixtures/vectors/`.

pub mod amount;
pub mod encoding;
pub mod genesis;
pub mod hash;
pub mod keys;
pub mod reject;
pub mod state;
pub mod tx;
pub mod validate;

pub use amount::{Amount, MAX_SUPPLY, UNITS_PER_COIN};
pub use encoding::DecodeError;
pub use genesis::{Genesis, GenesisError, Limits, ReplicaInfo, ReplicaKey};
pub use hash::{Hash32, Txid, UtxoSetHash};
pub use keys::{ADDRESS_HRP, Address, KeyError, Keypair, PublicKey, Signature};
pub use reject::RejectCode;
pub use state::{
    Applied, ApplyError, Change, Commitment, HistoryEntry, HistoryKind, HistoryPage, LedgerState,
    Outcome, Receipt, RestoreError, Snapshot,
};
pub use tx::{
    Block, ChainId, Lock, Mint, OutPoint, SignedTransaction, Transaction, Transfer, TxOut,
};
pub use validate::{verify_bytes, verify_stateless};

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<crate::LedgerState>();
        assert_send_sync::<crate::Keypair>();
        assert_send_sync::<crate::SignedTransaction>();
        assert_send_sync::<crate::Applied>();
        assert_send_sync::<crate::Genesis>();
    }
}
