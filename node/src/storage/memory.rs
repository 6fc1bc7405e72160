//! An in-memory store with the same contract as the Redis one: unit tests and ephemeral devnets.

use foldhash::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{
    BlockChange, HistoryItem, Snapshot, Storage, StorageError, Store, StoredBlock, Txid,
    check_page, validate_change,
};

/// Hash maps where only `load` needs an order (it sorts), ordered maps where reads page
/// through one address's history.
#[derive(Debug, Default)]
struct State {
    height: Option<u64>,
    commitment: Vec<u8>,
    supply: u64,
    blocks: BTreeMap<u64, (Vec<u8>, Vec<u8>)>,
    /// Every unspent output: outpoint → output encoding (`load` sorts them).
    utxos: HashMap<Vec<u8>, Vec<u8>>,
    /// Remembered spent outpoints by the height that spent them.
    spent: BTreeMap<u64, Vec<Vec<u8>>>,
    history: HashMap<String, BTreeMap<u64, Vec<u8>>>,
    txs: HashMap<Txid, Vec<u8>>,
    mints: BTreeSet<Txid>,
    rejected: BTreeSet<Txid>,
}

/// A store that keeps everything in process memory; `persist` is "durable" immediately.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this module; the data is still consistent
        // because every mutation below completes before any fallible step can return.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl From<MemoryStore> for Storage {
    fn from(s: MemoryStore) -> Self {
        Storage::Memory(Box::new(s))
    }
}

impl Store for MemoryStore {
    async fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        let s = self.lock();
        let Some(height) = s.height else {
            return Ok(None);
        };
        let Some((block, record)) = s.blocks.get(&height).cloned() else {
            return Err(StorageError::Corrupt {
                key: format!("block {height}"),
                reason: "applied block missing".into(),
            });
        };
        // Sorted, as the ordered maps this store used to keep returned them.
        let mut utxos: Vec<(Vec<u8>, Vec<u8>)> = s
            .utxos
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        utxos.sort_unstable();
        let mut spent: Vec<(u64, Vec<u8>)> = s
            .spent
            .iter()
            .flat_map(|(h, ops)| ops.iter().map(move |op| (*h, op.clone())))
            .collect();
        spent.sort_unstable();
        let mut history_lengths: Vec<(String, u64)> = s
            .history
            .iter()
            .map(|(a, entries)| (a.clone(), entries.len() as u64))
            .collect();
        history_lengths.sort_unstable();
        Ok(Some(Snapshot {
            height,
            commitment: s.commitment.clone(),
            supply: s.supply,
            utxos,
            spent,
            history_lengths,
            mints: s.mints.iter().copied().collect(),
            rejected: s.rejected.iter().copied().collect(),
            tip: StoredBlock {
                height,
                block,
                record,
            },
        }))
    }

    async fn persist(
        &self,
        height: u64,
        block: &[u8],
        change: &BlockChange,
    ) -> Result<(), StorageError> {
        validate_change(height, block, change)?;
        let mut s = self.lock();
        if let Some(applied) = s.height {
            if height <= applied {
                return match s.blocks.get(&height) {
                    Some((b, _)) if b == block => Ok(()),
                    _ => Err(StorageError::Conflict { height }),
                };
            }
            if height != applied + 1 {
                return Err(StorageError::OutOfOrder {
                    expected: applied + 1,
                    got: height,
                });
            }
        }
        let s = &mut *s;
        for c in &change.created {
            s.utxos.insert(c.outpoint.clone(), c.output.clone());
        }
        let mut spends = Vec::with_capacity(change.spent.len() + change.spent_in_block.len());
        for sp in &change.spent {
            spends.push(sp.outpoint.clone());
            s.utxos.remove(&sp.outpoint);
        }
        spends.extend(change.spent_in_block.iter().cloned());
        if !spends.is_empty() {
            s.spent.insert(height, spends);
        }
        s.spent = s.spent.split_off(&change.spent_from);
        for h in &change.history {
            match s.history.get_mut(&h.address) {
                Some(m) => m.insert(h.seq, h.entry.clone()),
                None => s
                    .history
                    .entry(h.address.clone())
                    .or_default()
                    .insert(h.seq, h.entry.clone()),
            };
        }
        for t in &change.txs {
            s.txs.insert(t.txid, t.record.clone());
        }
        s.mints.extend(change.mints.iter().copied());
        s.rejected.extend(change.rejected.iter().copied());
        s.blocks
            .insert(height, (block.to_vec(), change.block_record.clone()));
        s.commitment = change.commitment.clone();
        s.supply = change.supply;
        s.height = Some(height);
        Ok(())
    }

    async fn applied_height(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.lock().height)
    }

    async fn history(
        &self,
        address: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StorageError> {
        check_page(address, limit)?;
        let s = self.lock();
        let Some(m) = s.history.get(address) else {
            return Ok(Vec::new());
        };
        Ok(m.range(..=cursor.unwrap_or(u64::MAX))
            .rev()
            .take(limit as usize)
            .map(|(seq, entry)| HistoryItem {
                address: address.to_owned(),
                seq: *seq,
                entry: entry.clone(),
            })
            .collect())
    }

    async fn block(&self, height: u64) -> Result<Option<StoredBlock>, StorageError> {
        Ok(self
            .lock()
            .blocks
            .get(&height)
            .map(|(block, record)| StoredBlock {
                height,
                block: block.clone(),
                record: record.clone(),
            }))
    }

    async fn tx(&self, txid: &Txid) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().txs.get(txid).cloned())
    }
}
