//! Persistence of a replica's state: every committed block and the state change it caused.
//!
//! The executor calls [`Store::persist`] after the ledger applied a block; the call returns only
//! once the block is durable per the configured policy, and only then may the replica sign
//! receipts for it. A replica that restarts calls [`Store::load`], which first finishes any block
//! write a crash interrupted and then returns a [`Snapshot`] to rebuild the ledger state from.
//! The REST API reads history pages, blocks and transaction records through the same trait, each
//! with a bounded number of keyed lookups (no scans). Balances and UTXOs are answered from the
//! replica's ledger, which holds the UTXO set in memory, so the store keeps one UTXO index, the
//! one a restart loads.
//!
//! Two backends: [`MemoryStore`] (unit tests, ephemeral devnets) and [`RedisStore`]
//! (standalone, sentinel or cluster; see `docs/STORAGE.md` for the key layout and guarantees).
//! [`Storage`] picks one from a [`StorageConfig`].
//!
//! The store speaks in opaque bytes (encoded outputs, history entries, block records) plus the
//! few typed fields it must index by (address, amount, height); it never interprets ledger
//! encodings, so the ledger can evolve its formats without a storage migration.

mod codec;
mod config;
mod error;
mod keys;
pub mod ledger;
mod memory;
mod redis_store;

use std::future::Future;

pub use codec::{MAX_BLOCK_BYTES, MAX_ITEMS, MAX_OUTPOINT_BYTES, MAX_VALUE_BYTES};
pub use config::{DurabilityConfig, RedisConfig, RedisMode, RetryConfig, StorageConfig};
pub use error::StorageError;
pub use keys::{MAX_ADDRESS_BYTES, MAX_PREFIX_BYTES, UTXO_SHARDS};
pub use memory::MemoryStore;
pub use redis_store::{FailPoint, RedisStore};

/// A transaction id (the ledger's 32-byte hash).
pub type Txid = [u8; 32];

/// Heights and history sequence numbers stay below 2^53 so they are exact as Redis scores.
pub const MAX_SEQ: u64 = 1 << 53;

/// The largest history page a read may ask for: bounds the reply a client can make us build.
pub const MAX_HISTORY_PAGE: u32 = 1_000;

/// An output created by a block, as the store indexes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedOutput {
    /// The ledger's canonical encoding of the outpoint (txid then index).
    pub outpoint: Vec<u8>,
    /// The amount, stored beside the output (readable without decoding it).
    pub amount: u64,
    /// The ledger's canonical encoding of the output, returned as-is on reads and on load.
    pub output: Vec<u8>,
}

/// An output a block spent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpentOutput {
    /// The ledger's canonical encoding of the outpoint.
    pub outpoint: Vec<u8>,
}

/// One entry of an address's history.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HistoryItem {
    /// The address whose history this entry belongs to.
    pub address: String,
    /// The entry's per-address sequence number (0, 1, 2...): its order and page cursor.
    pub seq: u64,
    /// The ledger's encoding of the entry.
    pub entry: Vec<u8>,
}

/// A transaction's record (its location and outcome, as the ledger encodes it), by txid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxItem {
    /// The transaction id.
    pub txid: Txid,
    /// The ledger's encoding of the record served for "receipt by txid".
    pub record: Vec<u8>,
}

/// Everything one block changed, in the store's terms (built from the ledger's `Change`).
///
/// Applying it is idempotent: outputs and records are keyed, spends delete by key, history
/// entries are set members. Re-applying a block that is already applied changes nothing, which is
/// what makes retries after a failover and cluster-mode recovery safe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockChange {
    /// Outputs created (including ones the same block spends again).
    pub created: Vec<CreatedOutput>,
    /// Outputs spent. Applied after `created`, so an output created and spent in one block ends
    /// up absent.
    pub spent: Vec<SpentOutput>,
    /// Outpoints created and spent inside this block (netted out of `created` and `spent`):
    /// only recorded as spent.
    pub spent_in_block: Vec<Vec<u8>>,
    /// The lowest height whose spends are remembered after this block (the ledger's
    /// `Change::spent_from`): the spends recorded at `spent_from - 1` are dropped.
    pub spent_from: u64,
    /// History entries to append.
    pub history: Vec<HistoryItem>,
    /// Transaction records to index by txid.
    pub txs: Vec<TxItem>,
    /// Txids of mint transactions (kept forever so a mint can never be replayed).
    pub mints: Vec<Txid>,
    /// Txids of transactions rejected as `unknown_input` (kept forever so the same transaction
    /// can never be accepted later: the ledger's `Change::rejected_txids`).
    pub rejected: Vec<Txid>,
    /// The ledger's record of the block, served by `block(h)`.
    pub block_record: Vec<u8>,
    /// The ledger's encoding of the state commitment after this block.
    pub commitment: Vec<u8>,
    /// The total supply after this block.
    pub supply: u64,
}

impl BlockChange {
    /// The block's record, commitment and supply without the lists: what a block entry keeps
    /// where no write needs to be finished from a journal.
    pub(crate) fn without_journal(&self) -> Self {
        Self {
            block_record: self.block_record.clone(),
            commitment: self.commitment.clone(),
            supply: self.supply,
            spent_from: self.spent_from,
            ..Self::default()
        }
    }
}

/// A stored block: the block's bytes and the ledger's record of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlock {
    /// Its height.
    pub height: u64,
    /// The block as consensus finalized it.
    pub block: Vec<u8>,
    /// The ledger's block record.
    pub record: Vec<u8>,
}

/// What a restarting replica rebuilds its ledger state from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The last applied height.
    pub height: u64,
    /// The persisted commitment after `height`; the ledger must recompute the same value from
    /// the restored state before the replica serves anything.
    pub commitment: Vec<u8>,
    /// The persisted total supply.
    pub supply: u64,
    /// Every unspent output, sorted by outpoint so the order is the same on every backend.
    pub utxos: Vec<(Vec<u8>, Vec<u8>)>,
    /// Every remembered spent outpoint with the height that spent it (within the genesis
    /// `spent_horizon` of `height`), sorted.
    pub spent: Vec<(u64, Vec<u8>)>,
    /// Every address with history and its number of entries, sorted by address. The entries
    /// are not loaded: a replica's ledger only counts them, and reads pages with
    /// [`Store::history`] (which is where a damaged entry shows).
    pub history_lengths: Vec<(String, u64)>,
    /// Every mint txid, sorted.
    pub mints: Vec<Txid>,
    /// Every txid rejected as `unknown_input`, sorted.
    pub rejected: Vec<Txid>,
    /// The record of the block at `height`.
    pub tip: StoredBlock,
}

/// A replica's persistent store. See the module docs for the contract.
///
/// Heights are consecutive: after a first block at any height `h0`, `persist` accepts `h + 1`
/// after `h`, and a height at or below the applied one is an idempotent no-op when the block is
/// the same (a retry) and [`StorageError::Conflict`] when it differs.
pub trait Store: Send + Sync {
    /// Finishes any interrupted block write, then returns the persisted state, or `None` if no
    /// block was ever persisted.
    fn load(&self) -> impl Future<Output = Result<Option<Snapshot>, StorageError>> + Send;

    /// Persists block `height` and its change; returns once durable per the configured policy.
    fn persist(
        &self,
        height: u64,
        block: &[u8],
        change: &BlockChange,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;

    /// The last persisted height, if any.
    fn applied_height(&self) -> impl Future<Output = Result<Option<u64>, StorageError>> + Send;

    /// A page of an address's history, newest first: entries with `seq <= cursor` (all when
    /// `None`), at most `limit` (itself at most [`MAX_HISTORY_PAGE`]). The next page's cursor is
    /// the last entry's `seq - 1`.
    fn history(
        &self,
        address: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<HistoryItem>, StorageError>> + Send;

    /// The block at `height`, if persisted.
    fn block(
        &self,
        height: u64,
    ) -> impl Future<Output = Result<Option<StoredBlock>, StorageError>> + Send;

    /// The record of transaction `txid`, if persisted.
    fn tx(&self, txid: &Txid)
    -> impl Future<Output = Result<Option<Vec<u8>>, StorageError>> + Send;
}

/// A store chosen at run time from configuration (boxed: both are large and built once).
#[derive(Debug)]
#[non_exhaustive]
pub enum Storage {
    /// In memory: lost on exit.
    Memory(Box<MemoryStore>),
    /// Redis (standalone, sentinel or cluster).
    Redis(Box<RedisStore>),
}

impl Storage {
    /// Opens the configured backend (connecting to Redis if asked).
    pub async fn open(config: &StorageConfig) -> Result<Self, StorageError> {
        match config {
            StorageConfig::Memory => Ok(Self::Memory(Box::default())),
            StorageConfig::Redis(redis) => {
                Ok(Self::Redis(Box::new(RedisStore::connect(redis).await?)))
            }
        }
    }
}

impl Store for Storage {
    async fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        match self {
            Self::Memory(s) => s.load().await,
            Self::Redis(s) => s.load().await,
        }
    }

    async fn persist(
        &self,
        height: u64,
        block: &[u8],
        change: &BlockChange,
    ) -> Result<(), StorageError> {
        match self {
            Self::Memory(s) => s.persist(height, block, change).await,
            Self::Redis(s) => s.persist(height, block, change).await,
        }
    }

    async fn applied_height(&self) -> Result<Option<u64>, StorageError> {
        match self {
            Self::Memory(s) => s.applied_height().await,
            Self::Redis(s) => s.applied_height().await,
        }
    }

    async fn history(
        &self,
        address: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StorageError> {
        match self {
            Self::Memory(s) => s.history(address, cursor, limit).await,
            Self::Redis(s) => s.history(address, cursor, limit).await,
        }
    }

    async fn block(&self, height: u64) -> Result<Option<StoredBlock>, StorageError> {
        match self {
            Self::Memory(s) => s.block(height).await,
            Self::Redis(s) => s.block(height).await,
        }
    }

    async fn tx(&self, txid: &Txid) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Self::Memory(s) => s.tx(txid).await,
            Self::Redis(s) => s.tx(txid).await,
        }
    }
}

/// Checks what both backends require of a change before writing it: bounded sizes, valid
/// addresses, sequence numbers and heights exact as Redis scores. A violation is the caller's
/// bug, reported as a value so a replica logs it rather than writing a state it could not read
/// back.
pub(crate) fn validate_change(
    height: u64,
    block: &[u8],
    change: &BlockChange,
) -> Result<(), StorageError> {
    codec::check_len("block", block.len(), MAX_BLOCK_BYTES)?;
    codec::check_len("block_record", change.block_record.len(), MAX_VALUE_BYTES)?;
    codec::check_len("commitment", change.commitment.len(), MAX_VALUE_BYTES)?;
    let items = change.created.len()
        + change.spent.len()
        + change.spent_in_block.len()
        + change.history.len()
        + change.txs.len()
        + change.mints.len()
        + change.rejected.len();
    codec::check_len("change items", items, MAX_ITEMS)?;
    for c in &change.created {
        codec::check_len("outpoint", c.outpoint.len(), MAX_OUTPOINT_BYTES)?;
        codec::check_len("output", c.output.len(), MAX_VALUE_BYTES)?;
    }
    for s in &change.spent {
        codec::check_len("outpoint", s.outpoint.len(), MAX_OUTPOINT_BYTES)?;
    }
    for op in &change.spent_in_block {
        codec::check_len("outpoint", op.len(), MAX_OUTPOINT_BYTES)?;
    }
    for h in &change.history {
        keys::check_address(&h.address)?;
        codec::check_len("history entry", h.entry.len(), MAX_VALUE_BYTES)?;
        // Sequence numbers are sorted-set scores, exact in an f64 only below 2^53.
        if h.seq >= MAX_SEQ {
            return Err(StorageError::Limit {
                what: "history seq",
                got: h.seq,
                max: MAX_SEQ - 1,
            });
        }
    }
    if height >= MAX_SEQ {
        return Err(StorageError::Limit {
            what: "height",
            got: height,
            max: MAX_SEQ - 1,
        });
    }
    if change.spent_from == 0 || change.spent_from > height {
        return Err(StorageError::InvalidChange(format!(
            "spends remembered from height {} at height {height}",
            change.spent_from
        )));
    }
    for t in &change.txs {
        codec::check_len("tx record", t.record.len(), MAX_VALUE_BYTES)?;
    }
    Ok(())
}

/// Checks the arguments of a history read.
pub(crate) fn check_page(address: &str, limit: u32) -> Result<(), StorageError> {
    keys::check_address(address)?;
    if limit > MAX_HISTORY_PAGE {
        return Err(StorageError::Limit {
            what: "history page",
            got: u64::from(limit),
            max: u64::from(MAX_HISTORY_PAGE),
        });
    }
    Ok(())
}
