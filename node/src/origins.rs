//! Where this replica heard of each transaction: from its own REST API (it is the gateway),
//! from peers' gossip, or both.
//!
//! The witness sends a block's receipts only to the replicas that gossiped its transactions:
//! the gateway a client waits at is the replica that submitted the transaction to the others.
//! Pushing every receipt to every peer cost each replica three times the messages and cache
//! work for receipts nobody waits for there. A replica that reaches a transaction some other way
//! (a client retry, a status query, a restart) asks its peers for receipts at once instead.
//!
//! Every peer that gossiped a transaction is remembered, not only the first: a Byzantine replica
//! that races the gateway's gossip with its own copy still cannot divert the honest replicas'
//! receipts away from the gateway. The memory is bounded; a forgotten transaction's receipts go
//! to every peer, as before.

use foldhash::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Transactions remembered; the oldest are forgotten first. Above the default mempool bound
/// (50 000), so every pending transaction is remembered.
pub const ORIGIN_MEMORY: usize = 100_000;

/// Where a transaction came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// Submitted through this replica's API.
    pub local: bool,
    /// Peers (their ed25519 keys) that gossiped it, in the order heard.
    pub peers: Vec<[u8; 32]>,
}

#[derive(Debug, Default)]
struct Inner {
    by_txid: HashMap<[u8; 32], Origin>,
    order: VecDeque<[u8; 32]>,
}

/// A bounded txid → [`Origin`] memory, shared by the mempool seam (which records) and the
/// witness (which routes receipts and decides when to ask for them).
#[derive(Debug)]
pub struct Origins {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for Origins {
    fn default() -> Self {
        Self::new(ORIGIN_MEMORY)
    }
}

impl Origins {
    /// An empty memory of at most `capacity` transactions.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with<R>(&self, txid: [u8; 32], f: impl FnOnce(&mut Origin) -> R) -> R {
        let mut inner = self.lock();
        let Inner { by_txid, order } = &mut *inner;
        let origin = by_txid.entry(txid).or_insert_with(|| {
            order.push_back(txid);
            Origin::default()
        });
        let out = f(origin);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.by_txid.remove(&old);
            }
        }
        out
    }

    /// `txid` was submitted through this replica's API.
    pub fn local(&self, txid: [u8; 32]) {
        self.with(txid, |o| o.local = true);
    }

    /// `peer` gossiped `txid`. A peer is listed once per transaction.
    pub fn gossiped(&self, txid: [u8; 32], peer: [u8; 32]) {
        self.with(txid, |o| {
            if !o.peers.contains(&peer) {
                o.peers.push(peer);
            }
        });
    }

    /// What is known of `txid` (`None`: never heard of, or forgotten).
    pub fn get(&self, txid: &[u8; 32]) -> Option<Origin> {
        self.lock().by_txid.get(txid).cloned()
    }

    /// Whether each of `txids` is remembered (submitted here or gossiped), under one lock.
    pub fn known(&self, txids: impl Iterator<Item = [u8; 32]>) -> Vec<bool> {
        let inner = self.lock();
        txids.map(|t| inner.by_txid.contains_key(&t)).collect()
    }

    /// Whether `txid` was submitted here (and is still remembered).
    pub fn is_local(&self, txid: &[u8; 32]) -> bool {
        self.lock().by_txid.get(txid).is_some_and(|o| o.local)
    }

    /// Transactions remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn local_and_every_gossiping_peer_are_remembered_once() {
        let o = Origins::default();
        assert_eq!(o.get(&id(1)), None);
        assert!(!o.is_local(&id(1)));
        o.gossiped(id(1), id(0xb));
        o.gossiped(id(1), id(0xa));
        o.gossiped(id(1), id(0xb));
        assert_eq!(
            o.get(&id(1)),
            Some(Origin {
                local: false,
                peers: vec![id(0xb), id(0xa)]
            })
        );
        assert!(!o.is_local(&id(1)));
        o.local(id(1));
        assert!(o.is_local(&id(1)));
        assert_eq!(o.get(&id(1)).map(|o| o.peers.len()), Some(2));
        o.local(id(2));
        assert_eq!(
            o.get(&id(2)),
            Some(Origin {
                local: true,
                peers: vec![]
            })
        );
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn the_oldest_transactions_are_forgotten_first() {
        let o = Origins::new(3);
        for n in 1..=5 {
            o.local(id(n));
        }
        assert_eq!(o.len(), 3);
        assert!(!o.is_local(&id(1)));
        assert!(!o.is_local(&id(2)));
        assert!((3..=5).all(|n| o.is_local(&id(n))));
        // Touching a remembered transaction does not renew it or grow the memory.
        o.gossiped(id(3), id(9));
        o.local(id(6));
        assert_eq!(o.len(), 3);
        assert_eq!(o.get(&id(3)), None);
        assert!(!o.is_empty());
    }
}
