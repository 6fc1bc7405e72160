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
//!   `history`, `history_window`, `total_supply`, `verify_stateless`, `snapshot`, `restore`,
//!   `apply_change`, `apply_with_cache` + [`SignatureCache`] to skip signatures the mempool
//!   already verified), [`Commitment`], [`Change`], [`Snapshot`], [`HistoryEntry`],
//!   [`HistoryPage`], [`HistoryMode`] (keep history entries in memory, or only count them),
//!   [`HistoryWindow`].
//! - Mempool: [`verify_stateless`] and [`verify_bytes`] (decode + limits + chain + signature).
//! - REST shapes: [`rest`] (the JSON the gateway writes and the wallet reads).
//!
//! # Rules
//!
//! - **Transfer**: spends ≥ 1 distinct unspent outputs, all locked to the signer's address,
//!   and creates ≥ 1 outputs of amount > 0 whose sum equals the inputs' sum exactly (no fees,
//!   no burning). Signed by the signer's key.
//! - **Mint** (`createMoney`): signed by a key in `genesis.issuers`; ≥ 1 outputs of amount > 0;
//!   the supply after it stays ≤ `limits.supply_cap` (≤ [`MAX_SUPPLY`]). Not replayable: the
//!   issuer picks a fresh `nonce` per mint and the ledger records every accepted mint txid,
//!   rejecting a repeat with `mint_replayed`. A replayed transfer fails with
//!   `input_already_spent` (its inputs are gone), or `unknown_input` once they were spent more
//!   than `limits.spent_horizon` blocks before: the ledger remembers spent outputs that long.
//! - **Rejections are final**: a transaction rejected with `unknown_input` (its input does not
//!   exist yet, e.g. proposed before the block that creates it) is remembered by txid, and the
//!   same transaction applied again later is rejected with `already_rejected`, even once its
//!   inputs exist. Every other rejection is permanent by itself. So a client holding a signed
//!   rejection can safely re-issue the payment: the first one can never be applied.
//! - **Replay across chains or message types**: the chain id is part of every transaction (so of
//!   its txid), and the signed message is `tagged_hash("coffer/sig/<kind>", chain_id || txid)`.
//! - **Blocks**: transactions apply in order; a later one may spend an output created earlier
//!   in the same block; of two conflicting spends the first wins and the second gets
//!   `input_already_spent`. Every rejection is a [`RejectCode`] and changes nothing. The
//!   validation order (so which code is reported first) is in [`validate`] and [`state`].
//! - **Commitment**: after each block, `state_hash = tagged_hash("coffer/state", previous ||
//!   height || txs || receipts || utxo_hash || supply)`, with `utxo_hash` an incremental
//!   multiset hash ([`UtxoSetHash`]); [`LedgerState::recompute_utxo_hash`] recomputes it from
//!   scratch.
//!
//! # Example
//!
//! ```
//! use coffer_ledger::*;
//!
//! let issuer = Keypair::generate();
//! let (alice, bob) = (Keypair::generate(), Keypair::generate());
//! let genesis = Genesis {
//!     chain_id: ChainId::new("coffer-doc").unwrap(),
//!     issuers: vec![issuer.public_key()],
//!     replicas: vec![ReplicaInfo { name: "r0".into(), public_key: ReplicaKey([1; 32]) }],
//!     limits: Limits::default(),
//! };
//! let mut ledger = LedgerState::new(genesis.clone()).unwrap();
//!
//! // The issuer mints 100 units to Alice; the nonce makes the mint unique.
//! let mint = issuer.sign_tx(Transaction::Mint(Mint {
//!     chain_id: genesis.chain_id.clone(),
//!     issuer: issuer.public_key(),
//!     nonce: 1,
//!     outputs: vec![TxOut::to_address(Amount(100), alice.address())],
//! }));
//! // Alice pays Bob 30 and herself 70 in change.
//! let pay = alice.sign_tx(Transaction::Transfer(Transfer {
//!     chain_id: genesis.chain_id.clone(),
//!     signer: alice.public_key(),
//!     inputs: vec![OutPoint { txid: mint.txid(), vout: 0 }],
//!     outputs: vec![
//!         TxOut::to_address(Amount(30), bob.address()),
//!         TxOut::to_address(Amount(70), alice.address()),
//!     ],
//! }));
//! // The mempool's check on raw bytes from the network:
//! assert_eq!(verify_bytes(&genesis, &pay.encode()).map(|(txid, _)| txid), Ok(pay.txid()));
//!
//! let applied = ledger.apply(&Block { height: 1, txs: vec![mint, pay] }).unwrap();
//! assert!(applied.receipts.iter().all(|r| r.outcome == Outcome::Accepted));
//! assert_eq!(ledger.balance(&bob.address()), Amount(30));
//! assert_eq!(ledger.total_supply(), Amount(100));
//! // `applied.change` is what the node persists; `applied.commitment` what replicas compare.
//! assert_eq!(applied.commitment, ledger.commitment());
//! ```
//!
//! The byte layouts are specified in `ledger/ENCODING.md` and pinned by golden vectors in
//! `fixtures/vectors/`.

pub mod amount;
pub mod attest;
pub mod encoding;
pub mod genesis;
pub mod hash;
pub mod keys;
pub mod merkle;
pub mod reject;
pub mod rest;
pub mod state;
pub mod tx;
pub mod validate;

pub use amount::{Amount, MAX_SUPPLY, UNITS_PER_COIN};
pub use encoding::DecodeError;
pub use genesis::{Genesis, GenesisError, Limits, ReplicaInfo, ReplicaKey};
pub use hash::{Hash32, Txid, UtxoSetHash};
pub use keys::{
    ADDRESS_HRP, Address, KeyError, KeyParser, Keypair, ParseEveryKey, PublicKey, Signature,
};
pub use reject::RejectCode;
pub use state::{
    Applied, ApplyError, Change, Commitment, HistoryEntry, HistoryKind, HistoryMode, HistoryPage,
    HistoryWindow, LedgerState, NoCache, Outcome, Receipt, RestoreError, SignatureCache, Snapshot,
};
pub use tx::{
    Block, ChainId, IdentifiedTx, Lock, Mint, OutPoint, SignedTransaction, Transaction, Transfer,
    TxOut,
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
