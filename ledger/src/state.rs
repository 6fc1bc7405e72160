//! The UTXO state machine: apply blocks, answer queries, commit to the state, restore.
//!
//! Like raft-rs's `ready()`, [`LedgerState::apply`] performs no I/O: it mutates the in-memory
//! state and returns, with the receipts, the [`Change`] the caller must persist. A replica that
//! restarts rebuilds an identical state from persisted data with [`LedgerState::restore`].

use crate::amount::Amount;
use crate::encoding::{DecodeError, Reader, Writer};
use crate::genesis::{Genesis, GenesisError};
use crate::hash::{Hash32, Txid, UtxoSetHash, tagged_hash, tags};
use crate::keys::Address;
use crate::reject::RejectCode;
use crate::tx::{Block, IdentifiedTx, OutPoint, SignedTransaction, Transaction, TxOut};
use crate::validate;
use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

/// Fewest unverified signatures in a block worth spreading over the thread pool.
const PARALLEL_VERIFY_MIN: usize = 16;

/// The state commitment after a block: what replicas compare and sign.
///
/// `state_hash` alone commits to everything: it chains the previous state hash, the height, the
/// block's signed transactions, its receipts, the UTXO-set hash and the supply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Commitment {
    /// Height of the last applied block (0 = genesis).
    pub height: u64,
    /// `tagged_hash("coffer/state", prev_state_hash || height u64le || txs_hash ||
    /// receipts_hash || utxo_hash || total_supply u64le)`; the genesis hash at height 0.
    pub state_hash: Hash32,
    /// Multiset hash of the UTXO set (see [`UtxoSetHash`]).
    pub utxo_hash: Hash32,
    /// Money in existence: the sum of all accepted mints, equal to the sum of all UTXOs.
    pub total_supply: Amount,
}

/// Result of one transaction in a block. JSON: `{"status": "accepted"}` or
/// `{"status": "rejected", "code": "bad_signature"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", content = "code", rename_all = "snake_case")]
pub enum Outcome {
    /// Applied.
    Accepted,
    /// Not applied; changed nothing.
    Rejected(RejectCode),
}

impl Outcome {
    /// `0` for accepted, else the code's number: the receipt encoding.
    pub fn as_u16(self) -> u16 {
        match self {
            Outcome::Accepted => 0,
            Outcome::Rejected(c) => c.as_u16(),
        }
    }

    /// As a `Result`.
    pub fn into_result(self) -> Result<(), RejectCode> {
        match self {
            Outcome::Accepted => Ok(()),
            Outcome::Rejected(c) => Err(c),
        }
    }
}

/// One transaction's receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The transaction.
    pub txid: Txid,
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// What happened.
    pub outcome: Outcome,
}

impl Receipt {
    /// Canonical encoding: `txid[32] || height u64le || index u32le || outcome u16le`
    /// (0 = accepted, else the reject code's number).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(46);
        out.extend_from_slice(&self.txid.0);
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.outcome.as_u16().to_le_bytes());
        out
    }

    /// Inverse of [`Receipt::encode`]; refuses unknown outcome numbers and trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let txid = Txid(r.array("receipt txid")?);
        let height = r.u64("receipt height")?;
        let index = r.u32("receipt index")?;
        let outcome = match r.u16("receipt outcome")? {
            0 => Outcome::Accepted,
            n => Outcome::Rejected(RejectCode::from_u16(n).ok_or(DecodeError::Invalid {
                what: "receipt outcome",
                reason: format!("unknown reject code number {n}"),
            })?),
        };
        r.finish()?;
        Ok(Receipt {
            txid,
            height,
            index,
            outcome,
        })
    }
}

impl Commitment {
    /// Encoded size.
    pub const ENCODED_LEN: usize = 80;

    /// Canonical encoding: `height u64le || state_hash[32] || utxo_hash[32] || supply u64le`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.height);
        w.bytes(&self.state_hash.0);
        w.bytes(&self.utxo_hash.0);
        w.u64(self.total_supply.0);
        w.into_bytes()
    }

    /// Inverse of [`Commitment::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let c = Commitment {
            height: r.u64("height")?,
            state_hash: Hash32(r.array("state hash")?),
            utxo_hash: Hash32(r.array("utxo hash")?),
            total_supply: Amount(r.u64("total supply")?),
        };
        r.finish()?;
        Ok(c)
    }
}

/// Kind of history entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// Money created for this address.
    Mint,
    /// A transfer this address signed or received from.
    Transfer,
}

/// One accepted transaction touching an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// Per-address sequence number, 0 for the address's first entry; the pagination cursor.
    pub seq: u64,
    /// Block height.
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    /// The transaction.
    pub txid: Txid,
    /// Mint or transfer.
    pub kind: HistoryKind,
    /// Value of outputs paid to this address (change included).
    pub received: Amount,
    /// Value of this address's outputs spent.
    pub sent: Amount,
}

impl HistoryEntry {
    /// Encoded size.
    pub const ENCODED_LEN: usize = 8 + 8 + 4 + 32 + 1 + 8 + 8;

    /// Canonical encoding (storage): `seq u64le || height u64le || index u32le || txid[32] ||
    /// kind u8 (0 mint, 1 transfer) || received u64le || sent u64le`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.seq);
        w.u64(self.height);
        w.u32(self.index);
        w.bytes(&self.txid.0);
        w.u8(match self.kind {
            HistoryKind::Mint => 0,
            HistoryKind::Transfer => 1,
        });
        w.u64(self.received.0);
        w.u64(self.sent.0);
        w.into_bytes()
    }

    /// Inverse of [`HistoryEntry::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let e = HistoryEntry {
            seq: r.u64("seq")?,
            height: r.u64("height")?,
            index: r.u32("index")?,
            txid: Txid(r.array("txid")?),
            kind: match r.u8("history kind")? {
                0 => HistoryKind::Mint,
                1 => HistoryKind::Transfer,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "history kind",
                        tag,
                    });
                }
            },
            received: Amount(r.u64("received")?),
            sent: Amount(r.u64("sent")?),
        };
        r.finish()?;
        Ok(e)
    }
}

/// A page of history, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryPage {
    /// Entries, highest `seq` first.
    pub entries: Vec<HistoryEntry>,
    /// Pass as `cursor` to get the next (older) page; `None` when there is none.
    pub next_cursor: Option<u64>,
}

/// What a block changed, for the caller to persist atomically.
///
/// Persistence contract (what [`LedgerState::restore`] expects back as a [`Snapshot`]): in one
/// atomic write, delete `spent` from the UTXO set and record their outpoints plus
/// `spent_within_block` as spent at this block's height; forget the outpoints recorded as
/// spent below `spent_from`; insert `created`; append `history` entries per address (their
/// `seq` continues each address's sequence); add `mint_txids` and `rejected_txids`; store
/// `commitment` as the tip.
/// The per-address balance and UTXO indexes follow from `created` and `spent`, whose entries
/// carry the owning lock.
///
/// Netted over the block: an output created and spent within the same block appears in
/// neither `created` nor `spent`; it does appear in `spent_within_block` so that the
/// spent-outpoint set (used to tell `input_already_spent` from `unknown_input`) stays exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Outputs now unspent that were not before the block (in creation order).
    pub created: Vec<(OutPoint, TxOut)>,
    /// Outputs unspent before the block and spent by it (with their contents, so per-address
    /// indexes can be updated without a lookup).
    pub spent: Vec<(OutPoint, TxOut)>,
    /// Outputs created and spent inside this block.
    pub spent_within_block: Vec<OutPoint>,
    /// New history entries, in order.
    pub history: Vec<(Address, HistoryEntry)>,
    /// Txids of mints accepted in this block.
    pub mint_txids: Vec<Txid>,
    /// Txids of transactions this block rejected with `unknown_input`, in block order (see
    /// [`LedgerState::is_rejected`]).
    #[serde(default)]
    pub rejected_txids: Vec<Txid>,
    /// The lowest height whose spends are still remembered after this block (1 until the
    /// genesis `spent_horizon` has passed, then one more each block): the spends recorded at
    /// `spent_from - 1` are forgotten with this block.
    pub spent_from: u64,
    /// The commitment after the block.
    pub commitment: Commitment,
}

/// What [`LedgerState::apply`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// One per transaction, in block order.
    pub receipts: Vec<Receipt>,
    /// Everything to persist.
    pub change: Change,
    /// The commitment after the block (same as `change.commitment`).
    pub commitment: Commitment,
}

/// Caller bugs: a block that must never be handed to `apply`. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// Height is not tip + 1.
    #[error("block height {got} is not the next height {expected}")]
    WrongHeight {
        /// Tip + 1.
        expected: u64,
        /// The block's height.
        got: u64,
    },
    /// More transactions than the genesis `max_block_txs`.
    #[error("block has {got} transactions, more than the limit {max}")]
    TooManyTxs {
        /// Count found.
        got: usize,
        /// Limit.
        max: u32,
    },
}

/// Persisted data could not be turned back into a consistent state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The genesis is invalid.
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    /// The data contradicts itself or the commitment.
    #[error("inconsistent ledger data: {0}")]
    Inconsistent(String),
}

/// Everything needed to rebuild a [`LedgerState`]: what a store holds after persisting every
/// [`Change`] (see [`LedgerState::snapshot`] and [`LedgerState::restore`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// The commitment at the tip.
    pub commitment: Option<Commitment>,
    /// Every unspent output.
    pub utxos: Vec<(OutPoint, TxOut)>,
    /// Every remembered spent outpoint with the height that spent it: those spent within the
    /// genesis `spent_horizon` of the tip.
    pub spent: Vec<(u64, OutPoint)>,
    /// Every history entry (any order).
    pub history: Vec<(Address, HistoryEntry)>,
    /// The number of history entries of each address whose entries `history` does not list:
    /// what a store that loads counts rather than entries gives, and what a state in
    /// [`HistoryMode::Counted`] snapshots.
    #[serde(default)]
    pub history_lengths: Vec<(Address, u64)>,
    /// Every accepted mint txid.
    pub mint_txids: Vec<Txid>,
    /// Every txid rejected with `unknown_input` (see [`LedgerState::is_rejected`]). A store
    /// written before these were kept has none.
    #[serde(default)]
    pub rejected_txids: Vec<Txid>,
}

/// Whether a [`LedgerState`] keeps each address's history entries in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HistoryMode {
    /// Every entry is kept and [`LedgerState::history`] serves pages of them.
    #[default]
    Kept,
    /// Only each address's number of entries is kept (it numbers the next entry). The entries
    /// still go out in each block's [`Change`]; whoever persists them serves them, with
    /// [`LedgerState::history_window`] saying which entries a page holds. Memory then does
    /// not grow with history.
    Counted,
}

/// Which entries of an address's history a page holds: sequence numbers `start..end`, served
/// newest first, and the cursor of the next (older) page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryWindow {
    /// Lowest sequence number in the page.
    pub start: u64,
    /// One past the highest sequence number in the page (`start == end`: an empty page).
    pub end: u64,
    /// The next page's cursor, `None` when there is no older entry or the page is empty.
    pub next_cursor: Option<u64>,
}

impl HistoryWindow {
    /// The page of a history of `len` entries with `seq <= cursor` (all if `None`), at most
    /// `limit` entries.
    pub fn new(len: u64, cursor: Option<u64>, limit: u64) -> Self {
        let end = match cursor {
            Some(c) => c.saturating_add(1).min(len),
            None => len,
        };
        let start = end.saturating_sub(limit);
        let next_cursor = (start > 0 && limit > 0).then(|| start - 1);
        Self {
            start,
            end,
            next_cursor,
        }
    }

    /// Number of entries in the page.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True if the page holds no entry.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct AddressIndex {
    balance: Amount,
    utxos: BTreeSet<OutPoint>,
    /// Number of history entries: the next entry's `seq`.
    history_len: u64,
    /// The entries themselves, in `seq` order ([`HistoryMode::Kept`] only; empty otherwise).
    history: Vec<HistoryEntry>,
}

impl AddressIndex {
    /// Appends the next entry (its `seq` is `history_len`), keeping it if the mode says so.
    fn push_history(&mut self, entry: HistoryEntry, mode: HistoryMode) {
        self.history_len += 1;
        if mode == HistoryMode::Kept {
            self.history.push(entry);
        }
    }
}

/// The in-memory ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerState {
    genesis: Arc<Genesis>,
    genesis_hash: Hash32,
    height: u64,
    state_hash: Hash32,
    utxo_hash: UtxoSetHash,
    supply: Amount,
    utxos: HashMap<OutPoint, TxOut>,
    /// Outputs spent in the last `spent_horizon` blocks (and in the block being applied), so
    /// that a spend of one is reported as `input_already_spent` rather than `unknown_input`.
    spent: HashSet<OutPoint>,
    /// The same outpoints by the height that spent them, oldest first, each height's sorted;
    /// only heights with spends appear.
    spent_log: VecDeque<(u64, Vec<OutPoint>)>,
    by_address: HashMap<Address, AddressIndex>,
    mint_txids: HashSet<Txid>,
    /// Txids that an applied block rejected with `unknown_input`: the one rejection that
    /// applying the same transaction later could turn into an acceptance (its inputs may be
    /// created afterwards). Every other code is permanent: the stateless ones depend on the
    /// bytes alone, a spent input stays spent (or becomes unknown), an input's amount and owner
    /// never change, the supply never falls and accepted mints are in `mint_txids`. A
    /// transaction whose txid is here is rejected with `already_rejected`, so the signed
    /// rejection a client holds stays the transaction's only outcome. Kept forever, like
    /// `mint_txids`: one txid per such rejection, at most `max_block_txs` a block, the same
    /// order of growth as the receipts a store keeps for every transaction.
    rejected_txids: HashSet<Txid>,
    history_mode: HistoryMode,
}

/// The lowest height whose spends a state at `height` remembers, with the genesis
/// `spent_horizon`: the last `horizon` blocks' (1 while fewer have passed).
fn spent_from(height: u64, horizon: u32) -> u64 {
    height.saturating_sub(u64::from(horizon)) + 1
}

/// Every outpoint a block spent: those unspent before it and those it created and spent.
fn block_spends(spent: &[(OutPoint, TxOut)], within: &[OutPoint]) -> Vec<OutPoint> {
    spent
        .iter()
        .map(|(op, _)| *op)
        .chain(within.iter().copied())
        .collect()
}

/// Element of the UTXO multiset: `tagged_hash("coffer/utxo", outpoint || output)`.
pub fn utxo_element(outpoint: &OutPoint, out: &TxOut) -> [u8; 32] {
    let mut w = Writer::new();
    outpoint.encode(&mut w);
    out.encode(&mut w);
    tagged_hash(tags::UTXO, &[&w.into_bytes()])
}

/// Receipts commitment: `tagged_hash("coffer/block-receipts", count u32le || receipt*)`.
pub fn receipts_hash(receipts: &[Receipt]) -> Hash32 {
    let mut data = Vec::with_capacity(4 + 46 * receipts.len());
    let count = u32::try_from(receipts.len()).unwrap_or(u32::MAX);
    data.extend_from_slice(&count.to_le_bytes());
    for r in receipts {
        data.extend_from_slice(&r.encode());
    }
    Hash32(tagged_hash(tags::BLOCK_RECEIPTS, &[&data]))
}

/// A transaction to apply, with its ids.
struct Known<'a> {
    stx: &'a SignedTransaction,
    txid: Txid,
    wtxid: Hash32,
}

/// Signatures this replica has already verified, by wtxid (see
/// [`LedgerState::apply_with_cache`]).
pub trait SignatureCache: Sync {
    /// True if the signed transaction with this wtxid was verified by this replica.
    fn is_verified(&self, wtxid: &Hash32) -> bool;
}

/// The empty cache: every signature is verified.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

impl SignatureCache for NoCache {
    fn is_verified(&self, _: &Hash32) -> bool {
        false
    }
}

impl<S: std::hash::BuildHasher + Sync> SignatureCache for std::collections::HashSet<Hash32, S> {
    fn is_verified(&self, wtxid: &Hash32) -> bool {
        self.contains(wtxid)
    }
}

/// Tracks one block's net effect while it is applied.
#[derive(Default)]
struct ChangeBuilder {
    created: Vec<Option<(OutPoint, TxOut)>>,
    created_at: HashMap<OutPoint, usize>,
    spent: Vec<(OutPoint, TxOut)>,
    spent_within_block: Vec<OutPoint>,
    history: Vec<(Address, HistoryEntry)>,
    mint_txids: Vec<Txid>,
    rejected_txids: Vec<Txid>,
}

impl LedgerState {
    /// An empty ledger at height 0 whose state hash is the genesis hash, keeping history
    /// entries in memory.
    pub fn new(genesis: Genesis) -> Result<Self, GenesisError> {
        Self::new_with(genesis, HistoryMode::Kept)
    }

    /// [`new`](LedgerState::new) with the given [`HistoryMode`].
    pub fn new_with(genesis: Genesis, history_mode: HistoryMode) -> Result<Self, GenesisError> {
        genesis.validate()?;
        let genesis_hash = genesis.genesis_hash();
        Ok(LedgerState {
            genesis: Arc::new(genesis),
            genesis_hash,
            height: 0,
            state_hash: genesis_hash,
            utxo_hash: UtxoSetHash::EMPTY,
            supply: Amount::ZERO,
            utxos: HashMap::new(),
            spent: HashSet::new(),
            spent_log: VecDeque::new(),
            by_address: HashMap::new(),
            mint_txids: HashSet::new(),
            rejected_txids: HashSet::new(),
            history_mode,
        })
    }

    /// Whether history entries are kept in memory.
    pub fn history_mode(&self) -> HistoryMode {
        self.history_mode
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Height of the last applied block (0 before the first).
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The current commitment.
    pub fn commitment(&self) -> Commitment {
        Commitment {
            height: self.height,
            state_hash: self.state_hash,
            utxo_hash: self.utxo_hash.to_hash(),
            total_supply: self.supply,
        }
    }

    /// Money in existence.
    pub fn total_supply(&self) -> Amount {
        self.supply
    }

    /// Sum of the address's unspent outputs. O(1).
    pub fn balance(&self, address: &Address) -> Amount {
        self.by_address
            .get(address)
            .map_or(Amount::ZERO, |a| a.balance)
    }

    /// Number of the address's unspent outputs. O(1).
    pub fn utxo_count_of(&self, address: &Address) -> usize {
        self.by_address.get(address).map_or(0, |a| a.utxos.len())
    }

    /// The address's unspent outputs, ordered by outpoint.
    pub fn utxos(&self, address: &Address) -> Vec<(OutPoint, TxOut)> {
        self.utxos_page(address, None, usize::MAX)
    }

    /// Up to `limit` of the address's unspent outputs with outpoints strictly after `after`.
    pub fn utxos_page(
        &self,
        address: &Address,
        after: Option<OutPoint>,
        limit: usize,
    ) -> Vec<(OutPoint, TxOut)> {
        let Some(index) = self.by_address.get(address) else {
            return Vec::new();
        };
        let range: Box<dyn Iterator<Item = &OutPoint>> = match after {
            Some(a) => Box::new(
                index
                    .utxos
                    .range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(index.utxos.iter()),
        };
        range
            .take(limit)
            .map(|op| {
                let out = self
                    .utxos
                    .get(op)
                    .expect("address index only lists unspent outputs");
                (*op, *out)
            })
            .collect()
    }

    /// One unspent output.
    pub fn utxo(&self, outpoint: &OutPoint) -> Option<TxOut> {
        self.utxos.get(outpoint).copied()
    }

    /// True if the outpoint existed and was spent.
    pub fn is_spent(&self, outpoint: &OutPoint) -> bool {
        self.spent.contains(outpoint)
    }

    /// True if a mint with this txid was accepted.
    pub fn is_mint_committed(&self, txid: &Txid) -> bool {
        self.mint_txids.contains(txid)
    }

    /// True if an applied block rejected a transaction with this txid as `unknown_input`: it
    /// can never be accepted (`already_rejected`), whatever outputs exist now.
    pub fn is_rejected(&self, txid: &Txid) -> bool {
        self.rejected_txids.contains(txid)
    }

    /// Number of txids remembered as rejected (see [`is_rejected`](LedgerState::is_rejected)).
    pub fn rejected_count(&self) -> usize {
        self.rejected_txids.len()
    }

    /// Number of unspent outputs.
    pub fn utxo_count(&self) -> usize {
        self.utxos.len()
    }

    /// Number of spent outpoints remembered: those of the last `spent_horizon` blocks.
    pub fn spent_count(&self) -> usize {
        self.spent.len()
    }

    /// Number of addresses indexed: every address that has held an output.
    pub fn address_count(&self) -> usize {
        self.by_address.len()
    }

    /// The number of history entries of `address` (0 for an unknown address).
    pub fn history_len(&self, address: &Address) -> u64 {
        self.by_address.get(address).map_or(0, |a| a.history_len)
    }

    /// Which of the address's history entries the page with `seq <= cursor` (all if `None`)
    /// holds: at most `min(limit, max_history_page)` of them (`limit == 0` gives an empty page).
    pub fn history_window(
        &self,
        address: &Address,
        cursor: Option<u64>,
        limit: usize,
    ) -> HistoryWindow {
        let limit = limit.min(self.genesis.limits.max_history_page as usize);
        // usize -> u64 cannot truncate on supported targets.
        HistoryWindow::new(self.history_len(address), cursor, limit as u64)
    }

    /// The address's history page described by [`history_window`](LedgerState::history_window),
    /// newest first. `None` when this state does not keep entries ([`HistoryMode::Counted`]):
    /// read them from where its changes were persisted.
    pub fn history(
        &self,
        address: &Address,
        cursor: Option<u64>,
        limit: usize,
    ) -> Option<HistoryPage> {
        if self.history_mode == HistoryMode::Counted {
            return None;
        }
        let window = self.history_window(address, cursor, limit);
        let Some(index) = self.by_address.get(address) else {
            return Some(HistoryPage::default());
        };
        // Entries are stored in seq order and seq == position; both ends are at most the
        // number of entries, so they fit in usize.
        let len = index.history.len();
        let at = |seq: u64| usize::try_from(seq).map_or(len, |i| i.min(len));
        let (start, end) = (at(window.start), at(window.end));
        Some(HistoryPage {
            entries: index.history[start..end].iter().rev().copied().collect(),
            next_cursor: window.next_cursor,
        })
    }

    /// Stateless checks against this ledger's genesis (see [`validate::verify_stateless`]).
    pub fn verify_stateless(&self, stx: &SignedTransaction) -> Result<Txid, RejectCode> {
        validate::verify_stateless(&self.genesis, stx)
    }

    /// Applies a block: verifies every signature in parallel, then applies transactions in
    /// order. Deterministic: the same state and block give the same receipts, change and
    /// commitment on every replica.
    pub fn apply(&mut self, block: &Block) -> Result<Applied, ApplyError> {
        self.apply_with_cache(block, &NoCache)
    }

    /// [`apply`](LedgerState::apply), skipping the signature check of transactions whose
    /// wtxid (hash of the exact signed bytes) `cache` reports as already verified by this
    /// replica, e.g. on mempool admission with [`crate::verify_stateless`] against the same
    /// genesis. All other checks always run. The cache must be local: fed only by this
    /// replica's own successful verifications, never by peers.
    pub fn apply_with_cache(
        &mut self,
        block: &Block,
        cache: &dyn SignatureCache,
    ) -> Result<Applied, ApplyError> {
        let txs: Vec<Known<'_>> = block
            .txs
            .iter()
            .map(|stx| {
                // One encoding for both ids.
                let (txid, wtxid) = crate::tx::ids_of_encoding(&stx.encode());
                Known { stx, txid, wtxid }
            })
            .collect();
        self.apply_known(block.height, &txs, cache)
    }

    /// [`apply_with_cache`](LedgerState::apply_with_cache) of the block at `height` holding
    /// `txs`, in order, whose ids were computed when they were decoded: nothing is encoded or
    /// hashed again.
    pub fn apply_identified(
        &mut self,
        height: u64,
        txs: &[&IdentifiedTx],
        cache: &dyn SignatureCache,
    ) -> Result<Applied, ApplyError> {
        let txs: Vec<Known<'_>> = txs
            .iter()
            .map(|t| Known {
                stx: t.stx(),
                txid: t.txid(),
                wtxid: t.wtxid(),
            })
            .collect();
        self.apply_known(height, &txs, cache)
    }

    fn apply_known(
        &mut self,
        height: u64,
        txs: &[Known<'_>],
        cache: &dyn SignatureCache,
    ) -> Result<Applied, ApplyError> {
        let expected = self.height + 1;
        if height != expected {
            return Err(ApplyError::WrongHeight {
                expected,
                got: height,
            });
        }
        let max = self.genesis.limits.max_block_txs;
        // u32 -> usize cannot truncate on supported targets.
        if txs.len() > max as usize {
            return Err(ApplyError::TooManyTxs {
                got: txs.len(),
                max,
            });
        }
        // Structure and signature-cache lookup per transaction, in order: cheap. Only the
        // signatures the cache does not vouch for are verified, and in parallel only when there
        // are enough of them to pay for waking the pool (a replica has usually verified every
        // transaction on admission, and on a 2-core machine an idle pool's spinning workers
        // cost more than a few verifications).
        let mut stateless: Vec<Result<Txid, RejectCode>> = Vec::with_capacity(txs.len());
        let mut unverified = Vec::new();
        for (i, t) in txs.iter().enumerate() {
            let check = validate::check_rules(&self.genesis, t.stx).map(|()| t.txid);
            if check.is_ok() && !cache.is_verified(&t.wtxid) {
                unverified.push(i);
            }
            stateless.push(check);
        }
        let verify = |&i: &usize| (i, txs[i].stx.verify_signature_with_txid(&txs[i].txid));
        let verified: Vec<(usize, bool)> = if unverified.len() >= PARALLEL_VERIFY_MIN {
            unverified.par_iter().map(verify).collect()
        } else {
            unverified.iter().map(verify).collect()
        };
        for (i, valid) in verified {
            if !valid {
                stateless[i] = Err(RejectCode::BadSignature);
            }
        }

        let supply_before = self.supply;
        let mut minted = Amount::ZERO;
        let mut cb = ChangeBuilder::default();
        let mut receipts = Vec::with_capacity(txs.len());
        for (i, (t, pre)) in txs.iter().zip(stateless).enumerate() {
            let index = u32::try_from(i).expect("block size bounded by max_block_txs (u32)");
            let outcome = match pre {
                Ok(txid) => match self.apply_tx(&t.stx.tx, txid, height, index, &mut cb) {
                    Ok(m) => {
                        minted = minted.checked_add(m).expect("mints bounded by supply cap");
                        Outcome::Accepted
                    }
                    Err(code) => {
                        // Remembered at once, like an accepted mint: a later copy in this very
                        // block is `already_rejected` too, whatever the transactions between
                        // them created.
                        if code == RejectCode::UnknownInput {
                            let fresh = self.rejected_txids.insert(txid);
                            assert!(
                                fresh,
                                "{txid} rejected as unknown_input twice: the set is checked first"
                            );
                            cb.rejected_txids.push(txid);
                        }
                        Outcome::Rejected(code)
                    }
                },
                Err(code) => Outcome::Rejected(code),
            };
            receipts.push(Receipt {
                txid: t.txid,
                height,
                index,
                outcome,
            });
        }
        // Value is conserved: only mints change the supply.
        assert_eq!(
            supply_before.checked_add(minted),
            Some(self.supply),
            "supply drifted"
        );

        self.height = height;
        let wtxids: Vec<Hash32> = txs.iter().map(|t| t.wtxid).collect();
        let utxo_hash = self.utxo_hash.to_hash();
        let rh = receipts_hash(&receipts);
        self.state_hash = Hash32(tagged_hash(
            tags::STATE,
            &[
                &self.state_hash.0,
                &self.height.to_le_bytes(),
                &crate::tx::txs_hash_from_wtxids(&wtxids).0,
                &rh.0,
                &utxo_hash.0,
                &self.supply.0.to_le_bytes(),
            ],
        ));
        let spent_from = self.age_spent(height, block_spends(&cb.spent, &cb.spent_within_block));
        let commitment = self.commitment();
        let change = Change {
            created: cb.created.into_iter().flatten().collect(),
            spent: cb.spent,
            spent_within_block: cb.spent_within_block,
            history: cb.history,
            mint_txids: cb.mint_txids,
            rejected_txids: cb.rejected_txids,
            spent_from,
            commitment,
        };
        Ok(Applied {
            receipts,
            change,
            commitment,
        })
    }

    /// Stateful checks then mutation for one transaction that passed the stateless checks.
    /// Returns the amount minted. On `Err` nothing was changed.
    fn apply_tx(
        &mut self,
        tx: &Transaction,
        txid: Txid,
        height: u64,
        index: u32,
        cb: &mut ChangeBuilder,
    ) -> Result<Amount, RejectCode> {
        // First: a committed rejection is final, whatever exists now.
        if self.rejected_txids.contains(&txid) {
            return Err(RejectCode::AlreadyRejected);
        }
        // Stateless checks bounded this sum by MAX_SUPPLY.
        let out_sum = Amount::checked_sum(tx.outputs().iter().map(|o| o.amount))
            .ok_or(RejectCode::AmountOverflow)?;
        // Per-address effect of this transaction, in first-touch order (deterministic).
        let mut touched: Vec<(Address, Amount, Amount)> = Vec::new();
        let kind;
        let minted;
        match tx {
            Transaction::Transfer(t) => {
                let owner = t.signer.address();
                let mut in_sum = Amount::ZERO;
                for input in &t.inputs {
                    let Some(out) = self.utxos.get(input) else {
                        return Err(if self.spent.contains(input) {
                            RejectCode::InputAlreadySpent
                        } else {
                            RejectCode::UnknownInput
                        });
                    };
                    if out.lock.address() != owner {
                        return Err(RejectCode::NotOwner);
                    }
                    // Inputs are distinct UTXOs, whose sum is at most the supply.
                    in_sum = in_sum
                        .checked_add(out.amount)
                        .ok_or(RejectCode::AmountOverflow)?;
                }
                if out_sum > in_sum {
                    return Err(RejectCode::InsufficientFunds);
                }
                if out_sum < in_sum {
                    return Err(RejectCode::ValueNotConserved);
                }
                // Validated: mutate.
                for input in &t.inputs {
                    let out = self.remove_utxo(input);
                    match cb.created_at.remove(input) {
                        Some(pos) => {
                            cb.created[pos] = None;
                            cb.spent_within_block.push(*input);
                        }
                        None => cb.spent.push((*input, out)),
                    }
                }
                touched.push((owner, Amount::ZERO, in_sum));
                kind = HistoryKind::Transfer;
                minted = Amount::ZERO;
            }
            Transaction::Mint(_) => {
                if self.mint_txids.contains(&txid) {
                    return Err(RejectCode::MintReplayed);
                }
                let after = self
                    .supply
                    .checked_add(out_sum)
                    .ok_or(RejectCode::SupplyCapExceeded)?;
                if after > self.genesis.limits.supply_cap {
                    return Err(RejectCode::SupplyCapExceeded);
                }
                self.supply = after;
                self.mint_txids.insert(txid);
                cb.mint_txids.push(txid);
                kind = HistoryKind::Mint;
                minted = out_sum;
            }
        }
        for (vout, out) in tx.outputs().iter().enumerate() {
            let vout = u32::try_from(vout).expect("outputs bounded by max_outputs (u16)");
            let op = OutPoint { txid, vout };
            self.insert_utxo(op, *out);
            cb.created_at.insert(op, cb.created.len());
            cb.created.push(Some((op, *out)));
            let addr = out.lock.address();
            match touched.iter_mut().find(|(a, _, _)| *a == addr) {
                Some(t) => t.1 = t.1.checked_add(out.amount).expect("bounded by out_sum"),
                None => touched.push((addr, out.amount, Amount::ZERO)),
            }
        }
        for (addr, received, sent) in touched {
            let idx = self.by_address.entry(addr).or_default();
            let entry = HistoryEntry {
                seq: idx.history_len,
                height,
                index,
                txid,
                kind,
                received,
                sent,
            };
            idx.push_history(entry, self.history_mode);
            cb.history.push((addr, entry));
        }
        Ok(minted)
    }

    fn insert_utxo(&mut self, op: OutPoint, out: TxOut) {
        let prev = self.utxos.insert(op, out);
        assert!(prev.is_none(), "outpoint {op} created twice");
        self.utxo_hash.insert(&utxo_element(&op, &out));
        let idx = self.by_address.entry(out.lock.address()).or_default();
        idx.balance = idx
            .balance
            .checked_add(out.amount)
            .expect("balance bounded by supply");
        idx.utxos.insert(op);
    }

    fn remove_utxo(&mut self, op: &OutPoint) -> TxOut {
        let out = self
            .utxos
            .remove(op)
            .expect("spend of a validated unspent output");
        self.utxo_hash.remove(&utxo_element(op, &out));
        self.spent.insert(*op);
        let idx = self.by_address.entry(out.lock.address()).or_default();
        idx.balance = idx
            .balance
            .checked_sub(out.amount)
            .expect("balance covers its outputs");
        idx.utxos.remove(op);
        out
    }

    /// Logs the spends of the block at `height` (already in the spent set) and forgets those
    /// older than the genesis `spent_horizon`; returns the lowest height still remembered.
    fn age_spent(&mut self, height: u64, mut spends: Vec<OutPoint>) -> u64 {
        if !spends.is_empty() {
            // Sorted, as a restored state has them: equal states compare equal.
            spends.sort_unstable();
            self.spent_log.push_back((height, spends));
        }
        let from = spent_from(height, self.genesis.limits.spent_horizon);
        while self.spent_log.front().is_some_and(|(h, _)| *h < from) {
            for op in self
                .spent_log
                .pop_front()
                .into_iter()
                .flat_map(|(_, ops)| ops)
            {
                self.spent.remove(&op);
            }
        }
        from
    }

    /// The UTXO-set hash recomputed from scratch (tests, recovery); must equal the incremental
    /// `commitment().utxo_hash`.
    pub fn recompute_utxo_hash(&self) -> Hash32 {
        let mut h = UtxoSetHash::EMPTY;
        for (op, out) in &self.utxos {
            h.insert(&utxo_element(op, out));
        }
        h.to_hash()
    }

    /// Checks every internal invariant from scratch: incremental UTXO hash, supply = sum of
    /// UTXOs, each balance = sum of its UTXOs, indexes consistent with the UTXO set.
    pub fn check_integrity(&self) -> Result<(), RestoreError> {
        let bad = |m: String| Err(RestoreError::Inconsistent(m));
        if self.recompute_utxo_hash() != self.utxo_hash.to_hash() {
            return bad("incremental utxo hash differs from recomputation".into());
        }
        let total = Amount::checked_sum(self.utxos.values().map(|o| o.amount));
        if total != Some(self.supply) {
            return bad(format!("utxos sum to {total:?}, supply is {}", self.supply));
        }
        let mut indexed = 0usize;
        for (addr, idx) in &self.by_address {
            let mut sum = Amount::ZERO;
            for op in &idx.utxos {
                match self.utxos.get(op) {
                    Some(o) if o.lock.address() == *addr => {
                        sum = sum.checked_add(o.amount).unwrap_or(Amount(u64::MAX));
                    }
                    _ => return bad(format!("address {addr} indexes {op} which it does not own")),
                }
            }
            if sum != idx.balance {
                return bad(format!(
                    "address {addr} balance {} but utxos sum {sum}",
                    idx.balance
                ));
            }
            let kept_len = idx.history.len() as u64;
            let expected_kept = match self.history_mode {
                HistoryMode::Kept => idx.history_len,
                HistoryMode::Counted => 0,
            };
            if kept_len != expected_kept
                || idx
                    .history
                    .iter()
                    .enumerate()
                    .any(|(i, e)| e.seq != i as u64)
            {
                return bad(format!("address {addr} history sequence has gaps"));
            }
            indexed += idx.utxos.len();
        }
        if indexed != self.utxos.len() {
            return bad(format!(
                "{indexed} indexed utxos, {} in the set",
                self.utxos.len()
            ));
        }
        if self.utxos.keys().any(|op| self.spent.contains(op)) {
            return bad("an outpoint is both unspent and spent".into());
        }
        let from = spent_from(self.height, self.genesis.limits.spent_horizon);
        let mut logged = 0usize;
        let mut last = None;
        for (h, ops) in &self.spent_log {
            if *h < from || *h > self.height || last.is_some_and(|l| l >= *h) || ops.is_empty() {
                return bad(format!(
                    "spends logged at height {h}: not one of {from}..={}, once each, in order",
                    self.height
                ));
            }
            last = Some(*h);
            if let Some(op) = ops.iter().find(|op| !self.spent.contains(op)) {
                return bad(format!("{op} logged as spent but not in the spent set"));
            }
            logged += ops.len();
        }
        if logged != self.spent.len() {
            return bad(format!(
                "{logged} spends logged, {} in the spent set",
                self.spent.len()
            ));
        }
        Ok(())
    }

    /// Everything a store must hold to [`restore`](LedgerState::restore) this state (sorted,
    /// so equal states give equal snapshots).
    pub fn snapshot(&self) -> Snapshot {
        let mut utxos: Vec<_> = self.utxos.iter().map(|(o, t)| (*o, *t)).collect();
        utxos.sort();
        let mut spent: Vec<(u64, OutPoint)> = self
            .spent_log
            .iter()
            .flat_map(|(h, ops)| ops.iter().map(move |op| (*h, *op)))
            .collect();
        spent.sort();
        let mut history: Vec<(Address, HistoryEntry)> = self
            .by_address
            .iter()
            .flat_map(|(a, idx)| idx.history.iter().map(move |e| (*a, *e)))
            .collect();
        history.sort_by_key(|(a, e)| (*a, e.seq));
        let mut history_lengths: Vec<(Address, u64)> = match self.history_mode {
            HistoryMode::Kept => Vec::new(),
            HistoryMode::Counted => self
                .by_address
                .iter()
                .filter(|(_, idx)| idx.history_len > 0)
                .map(|(a, idx)| (*a, idx.history_len))
                .collect(),
        };
        history_lengths.sort();
        let mut mint_txids: Vec<_> = self.mint_txids.iter().copied().collect();
        mint_txids.sort();
        let mut rejected_txids: Vec<_> = self.rejected_txids.iter().copied().collect();
        rejected_txids.sort();
        Snapshot {
            commitment: Some(self.commitment()),
            utxos,
            spent,
            history,
            history_lengths,
            mint_txids,
            rejected_txids,
        }
    }

    /// Rebuilds a state from persisted data and checks it against the commitment: the UTXO
    /// hash and the supply are recomputed from the outputs and must match, and every index
    /// invariant must hold. `snapshot.commitment == None` means height 0 (nothing persisted).
    pub fn restore(genesis: Genesis, snapshot: Snapshot) -> Result<Self, RestoreError> {
        Self::restore_with(genesis, snapshot, HistoryMode::Kept)
    }

    /// [`restore`](LedgerState::restore) into a state with the given [`HistoryMode`]. A state
    /// that keeps history needs every entry; one that counts takes entries (counting them) or
    /// `history_lengths`.
    pub fn restore_with(
        genesis: Genesis,
        snapshot: Snapshot,
        history_mode: HistoryMode,
    ) -> Result<Self, RestoreError> {
        let mut state = LedgerState::new_with(genesis, history_mode)?;
        let bad = |m: String| Err(RestoreError::Inconsistent(m));
        let Some(c) = snapshot.commitment else {
            if snapshot.utxos.is_empty()
                && snapshot.spent.is_empty()
                && snapshot.history.is_empty()
                && snapshot.history_lengths.is_empty()
            {
                return Ok(state);
            }
            return bad("data present but no commitment".into());
        };
        if c.height == 0 && c.state_hash != state.genesis_hash {
            return bad("height 0 state hash is not the genesis hash".into());
        }
        let mut spent = snapshot.spent;
        spent.sort();
        for (h, op) in spent {
            if !state.spent.insert(op) {
                return bad(format!("spent outpoint {op} listed twice"));
            }
            match state.spent_log.back_mut() {
                Some((last, ops)) if *last == h => ops.push(op),
                _ => state.spent_log.push_back((h, vec![op])),
            }
        }
        for (op, out) in snapshot.utxos {
            if state.utxos.contains_key(&op) {
                return bad(format!("outpoint {op} listed twice"));
            }
            // Bound the running total first: it also bounds every per-address balance, so the
            // index update below cannot overflow on corrupt data.
            state.supply = match state.supply.checked_add(out.amount) {
                Some(s) if s.is_valid() => s,
                _ => return bad("utxo amounts overflow".into()),
            };
            state.insert_utxo(op, out);
        }
        let mut history = snapshot.history;
        history.sort_by_key(|(a, e)| (*a, e.seq));
        for (addr, entry) in history {
            let idx = state.by_address.entry(addr).or_default();
            if entry.seq != idx.history_len {
                return bad(format!(
                    "history of {addr} is missing seq {}",
                    idx.history_len
                ));
            }
            idx.push_history(entry, history_mode);
        }
        for (addr, len) in snapshot.history_lengths {
            if history_mode == HistoryMode::Kept && len > 0 {
                return bad(format!(
                    "history of {addr} given as a count: this state keeps the entries"
                ));
            }
            let idx = state.by_address.entry(addr).or_default();
            if idx.history_len > 0 {
                return bad(format!("history of {addr} given twice"));
            }
            idx.history_len = len;
        }
        state.mint_txids.extend(snapshot.mint_txids);
        state.rejected_txids.extend(snapshot.rejected_txids);
        if state.utxo_hash.to_hash() != c.utxo_hash {
            return bad(format!(
                "recomputed utxo hash {} differs from committed {}",
                state.utxo_hash.to_hash(),
                c.utxo_hash
            ));
        }
        if state.supply != c.total_supply {
            return bad(format!(
                "utxos sum to {}, commitment says {}",
                state.supply, c.total_supply
            ));
        }
        state.height = c.height;
        state.state_hash = c.state_hash;
        state.check_integrity()?;
        Ok(state)
    }

    /// Applies a persisted [`Change`] without re-executing the block (e.g. a follower reading
    /// the store written by a replica). Checks that it starts from this state's tip and that
    /// the resulting UTXO hash and supply match its commitment; on error the state may be
    /// partially updated and must be discarded.
    pub fn apply_change(&mut self, change: &Change) -> Result<(), RestoreError> {
        let bad = |m: String| Err(RestoreError::Inconsistent(m));
        let c = change.commitment;
        if c.height != self.height + 1 {
            return bad(format!(
                "change is for height {}, tip is {}",
                c.height, self.height
            ));
        }
        for (op, out) in &change.spent {
            if self.utxos.get(op) != Some(out) {
                return bad(format!("change spends {op}, not an unspent output here"));
            }
            self.remove_utxo(op);
        }
        for op in &change.spent_within_block {
            self.spent.insert(*op);
        }
        for t in &change.mint_txids {
            if !self.mint_txids.insert(*t) {
                return bad(format!("mint {t} recorded twice"));
            }
        }
        for t in &change.rejected_txids {
            if !self.rejected_txids.insert(*t) {
                return bad(format!("rejection of {t} recorded twice"));
            }
        }
        let spent_sum = Amount::checked_sum(change.spent.iter().map(|(_, o)| o.amount));
        let created_sum = Amount::checked_sum(change.created.iter().map(|(_, o)| o.amount));
        let (Some(spent_sum), Some(created_sum)) = (spent_sum, created_sum) else {
            return bad("change amounts overflow".into());
        };
        for (op, out) in &change.created {
            if self.utxos.contains_key(op) || self.spent.contains(op) {
                return bad(format!("change creates existing outpoint {op}"));
            }
            self.insert_utxo(*op, *out);
        }
        // Transfers conserve value, so the net creation is what was minted.
        let minted = created_sum
            .checked_sub(spent_sum)
            .unwrap_or(Amount(u64::MAX));
        self.supply = self.supply.checked_add(minted).unwrap_or(Amount(u64::MAX));
        for (addr, entry) in &change.history {
            let idx = self.by_address.entry(*addr).or_default();
            if entry.seq != idx.history_len {
                return bad(format!(
                    "history of {addr} is missing seq {}",
                    idx.history_len
                ));
            }
            idx.push_history(*entry, self.history_mode);
        }
        let from = self.age_spent(
            c.height,
            block_spends(&change.spent, &change.spent_within_block),
        );
        if from != change.spent_from {
            return bad(format!(
                "change remembers spends from height {}, this state from {from}",
                change.spent_from
            ));
        }
        if self.utxo_hash.to_hash() != c.utxo_hash || self.supply != c.total_supply {
            return bad(format!(
                "state after change does not match commitment at {}",
                c.height
            ));
        }
        self.height = c.height;
        self.state_hash = c.state_hash;
        Ok(())
    }
}
