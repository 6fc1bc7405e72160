//! A bounded pool of pending transactions, deduplicated by txid.
//!
//! The pool is a plain data structure (no I/O): the consensus seam fills it from local
//! submissions and peer gossip, the proposer drains candidates from it in arrival order, and the
//! executor removes what was finalized. A transaction that a finalized block made inapplicable
//! (a conflicting spend) stays until it is proposed and rejected with a receipt, so every
//! admitted transaction gets an outcome its client can prove. It is shared behind a mutex that is only
//! held for short, non-blocking operations.

use crate::tx::Txid;
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt as _, HashSet, HashSetExt as _};
use std::collections::{BTreeMap, VecDeque};

/// Limits of a [`Mempool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MempoolLimits {
    /// Maximum number of pending transactions.
    pub max_txs: usize,
    /// Maximum total encoded size of pending transactions, in bytes.
    pub max_bytes: usize,
    /// How many recently finalized txids are remembered, so a late gossip copy of a committed
    /// transaction is not admitted again.
    pub finalized_memory: usize,
}

impl Default for MempoolLimits {
    fn default() -> Self {
        Self {
            max_txs: 50_000,
            max_bytes: 64 * 1024 * 1024,
            finalized_memory: 100_000,
        }
    }
}

/// Result of offering a transaction to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newly admitted: it should be gossiped.
    Added,
    /// Already pending (or recently finalized): nothing to do.
    Duplicate,
    /// The pool is full.
    Busy,
}

/// A peer replica's ed25519 key: who gossiped a pending transaction.
pub type Peer = [u8; 32];

/// Pending transactions in arrival order.
#[derive(Debug)]
pub struct Mempool {
    limits: MempoolLimits,
    /// Each pending transaction's arrival number, bytes, and the peer whose gossip brought it
    /// (`None`: submitted here).
    txs: HashMap<Txid, (u64, Bytes, Option<Peer>)>,
    /// Pending transactions and their bytes by the peer that gossiped them.
    by_peer: HashMap<Peer, (usize, usize)>,
    /// Most pending transactions and bytes one peer's gossip may hold (`None`: no bound).
    peer_share: Option<(usize, usize)>,
    order: BTreeMap<u64, Txid>,
    next_seq: u64,
    bytes: usize,
    finalized: HashSet<Txid>,
    finalized_order: VecDeque<Txid>,
}

impl Mempool {
    /// An empty pool with `limits`.
    pub fn new(limits: MempoolLimits) -> Self {
        Self {
            limits,
            txs: HashMap::new(),
            by_peer: HashMap::new(),
            peer_share: None,
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            finalized: HashSet::new(),
            finalized_order: VecDeque::new(),
        }
    }

    /// The same pool with `peers` peer replicas, each of whose gossip may fill at most an equal
    /// share of it (a `1 / (peers + 1)` part; what peers leave is free for local submissions):
    /// one Byzantine replica flooding valid-looking transactions cannot crowd out the others'
    /// or this replica's clients.
    pub fn with_peers(mut self, peers: usize) -> Self {
        if peers > 0 {
            let parts = peers + 1;
            self.peer_share = Some((
                (self.limits.max_txs / parts).max(1),
                (self.limits.max_bytes / parts).max(1),
            ));
        }
        self
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    /// Whether no transaction is pending.
    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    /// Whether `txid` is pending.
    pub fn contains(&self, txid: &Txid) -> bool {
        self.txs.contains_key(txid)
    }

    /// Whether exactly these bytes are pending under `txid`.
    pub fn contains_exact(&self, txid: &Txid, tx: &[u8]) -> bool {
        self.txs
            .get(txid)
            .is_some_and(|(_, pending, _)| pending.as_ref() == tx)
    }

    /// How many transactions were ever admitted (a counter for arrival-rate estimates).
    pub fn admitted(&self) -> u64 {
        self.next_seq
    }

    /// Offers a transaction submitted here that already passed the stateless check.
    pub fn insert(&mut self, txid: Txid, tx: Bytes) -> Admission {
        self.admit(txid, tx, None)
    }

    /// Offers a transaction `peer` gossiped, which already passed the stateless check: `Busy`
    /// also when that peer's share of the pool is full.
    pub fn insert_gossiped(&mut self, txid: Txid, tx: Bytes, peer: Peer) -> Admission {
        self.admit(txid, tx, Some(peer))
    }

    fn admit(&mut self, txid: Txid, tx: Bytes, peer: Option<Peer>) -> Admission {
        if self.txs.contains_key(&txid) || self.finalized.contains(&txid) {
            return Admission::Duplicate;
        }
        if self.txs.len() >= self.limits.max_txs || self.bytes + tx.len() > self.limits.max_bytes {
            return Admission::Busy;
        }
        if let (Some(peer), Some((max_txs, max_bytes))) = (peer, self.peer_share) {
            let (txs, bytes) = self.by_peer.get(&peer).copied().unwrap_or_default();
            if txs >= max_txs || bytes + tx.len() > max_bytes {
                return Admission::Busy;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += tx.len();
        if let Some(peer) = peer {
            let held = self.by_peer.entry(peer).or_default();
            held.0 += 1;
            held.1 += tx.len();
        }
        self.order.insert(seq, txid);
        self.txs.insert(txid, (seq, tx, peer));
        Admission::Added
    }

    /// Up to `max_txs` pending transactions totalling at most `max_bytes`, oldest first,
    /// skipping those in `exclude` (already in an unfinalized ancestor of the proposal).
    pub fn select(
        &self,
        max_txs: usize,
        max_bytes: usize,
        exclude: &HashSet<Txid>,
    ) -> Vec<(Txid, Bytes)> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for txid in self.order.values() {
            if out.len() >= max_txs {
                break;
            }
            if exclude.contains(txid) {
                continue;
            }
            let Some((_, tx, _)) = self.txs.get(txid) else {
                continue;
            };
            if bytes + tx.len() > max_bytes {
                break;
            }
            bytes += tx.len();
            out.push((*txid, tx.clone()));
        }
        out
    }

    /// Whether some pending transaction is not in `exclude` (a proposal would not be empty).
    pub fn has_candidate(&self, exclude: &HashSet<Txid>) -> bool {
        self.order.values().any(|txid| !exclude.contains(txid))
    }

    /// Removes `txid` because it was finalized; remembers it to refuse late copies.
    pub fn finalize(&mut self, txid: &Txid) {
        self.remove(txid);
        if self.limits.finalized_memory == 0 || !self.finalized.insert(*txid) {
            return;
        }
        self.finalized_order.push_back(*txid);
        while self.finalized_order.len() > self.limits.finalized_memory {
            if let Some(old) = self.finalized_order.pop_front() {
                self.finalized.remove(&old);
            }
        }
    }

    /// Drops `txid` if pending.
    pub fn remove(&mut self, txid: &Txid) {
        if let Some((seq, tx, peer)) = self.txs.remove(txid) {
            self.order.remove(&seq);
            self.bytes -= tx.len();
            if let Some(peer) = peer
                && let Some(held) = self.by_peer.get_mut(&peer)
            {
                held.0 = held.0.saturating_sub(1);
                held.1 = held.1.saturating_sub(tx.len());
                if held.0 == 0 {
                    self.by_peer.remove(&peer);
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn id(n: u8) -> Txid {
        Txid([n; 32])
    }

    #[test]
    fn dedup_bound_and_order() {
        let mut pool = Mempool::new(MempoolLimits {
            max_txs: 2,
            max_bytes: 100,
            finalized_memory: 1,
        });
        assert_eq!(
            pool.insert(id(1), Bytes::from_static(b"a")),
            Admission::Added
        );
        assert_eq!(
            pool.insert(id(1), Bytes::from_static(b"a")),
            Admission::Duplicate
        );
        assert_eq!(
            pool.insert(id(2), Bytes::from_static(b"b")),
            Admission::Added
        );
        assert_eq!(
            pool.insert(id(3), Bytes::from_static(b"c")),
            Admission::Busy
        );
        assert!(pool.has_candidate(&HashSet::from_iter([id(1)])));
        assert!(!pool.has_candidate(&HashSet::from_iter([id(1), id(2)])));
        let picked = pool.select(10, 100, &HashSet::from_iter([id(1)]));
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].0, id(2));
        pool.finalize(&id(1));
        assert_eq!(
            pool.insert(id(1), Bytes::from_static(b"a")),
            Admission::Duplicate
        );
        assert_eq!(
            pool.insert(id(3), Bytes::from_static(b"c")),
            Admission::Added
        );
        // Only one finalized id is remembered: finalizing 3 forgets 1.
        pool.finalize(&id(3));
        assert_eq!(
            pool.insert(id(1), Bytes::from_static(b"a")),
            Admission::Added
        );
        pool.remove(&id(1));
        assert_eq!(pool.len(), 1);
    }

    #[test]
    fn each_peers_gossip_fills_at_most_its_share() {
        // Three peers: a quarter of 8 transactions (or 40 bytes) each.
        let mut pool = Mempool::new(MempoolLimits {
            max_txs: 8,
            max_bytes: 40,
            finalized_memory: 0,
        })
        .with_peers(3);
        let (flooder, honest) = ([1; 32], [2; 32]);
        for n in 0..2 {
            assert_eq!(
                pool.insert_gossiped(id(n), Bytes::from_static(b"x"), flooder),
                Admission::Added
            );
        }
        assert_eq!(
            pool.insert_gossiped(id(2), Bytes::from_static(b"x"), flooder),
            Admission::Busy
        );
        // The others' gossip and local submissions still get in.
        assert_eq!(
            pool.insert_gossiped(id(3), Bytes::from_static(b"y"), honest),
            Admission::Added
        );
        for n in 4..8 {
            assert_eq!(
                pool.insert(id(n), Bytes::from_static(b"z")),
                Admission::Added
            );
        }
        // Finalizing one of the flooder's frees its place; bytes count too.
        pool.finalize(&id(0));
        assert_eq!(
            pool.insert_gossiped(id(2), Bytes::from_static(b"x"), flooder),
            Admission::Added
        );
        pool.remove(&id(1));
        pool.remove(&id(2));
        assert_eq!(
            pool.insert_gossiped(id(9), Bytes::from(vec![0; 11]), flooder),
            Admission::Busy
        );
        assert_eq!(
            pool.insert_gossiped(id(9), Bytes::from(vec![0; 10]), flooder),
            Admission::Added
        );
        // Without peers there is no share: gossip may fill the pool.
        let mut alone = Mempool::new(MempoolLimits {
            max_txs: 2,
            max_bytes: 40,
            finalized_memory: 0,
        });
        for n in 0..2 {
            assert_eq!(
                alone.insert_gossiped(id(n), Bytes::from_static(b"x"), flooder),
                Admission::Added
            );
        }
    }

    #[test]
    fn byte_limit() {
        let mut pool = Mempool::new(MempoolLimits {
            max_txs: 10,
            max_bytes: 3,
            finalized_memory: 0,
        });
        assert_eq!(
            pool.insert(id(1), Bytes::from_static(b"ab")),
            Admission::Added
        );
        assert_eq!(
            pool.insert(id(2), Bytes::from_static(b"cd")),
            Admission::Busy
        );
        assert_eq!(pool.select(10, 1, &HashSet::new()).len(), 0);
    }
}
