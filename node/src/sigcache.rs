//! Transaction signatures this replica has already verified, so each BIP340 check runs at most
//! once per replica (mempool admission, then proposal verification, then execution).
//!
//! Keys are wtxids: the tagged hash of a signed transaction's full canonical encoding,
//! signature included. The signature check is a function of exactly those bytes (signer key,
//! chain id and every field hashed into the sighash, plus the 64 signature bytes), and the
//! encoding is injective, so a hit means this replica verified these very bytes. A txid would
//! not do: it excludes the signature, so a tampered copy would share it.
//!
//! Only this replica's own successful verifications are recorded (never anything a peer claims),
//! against its one genesis. The cache is bounded: the oldest entries are forgotten first, and
//! an executed transaction's entry is dropped at once (it is not needed again). A forgotten
//! entry only costs a second verification, never a wrong answer.

use coffer_ledger::{Hash32, state::SignatureCache};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Default capacity: above the default mempool bound (50 000), so everything pending fits.
pub const DEFAULT_CAPACITY: usize = 65_536;

#[derive(Debug, Default)]
struct Inner {
    seq_of: HashMap<Hash32, u64>,
    by_seq: BTreeMap<u64, Hash32>,
    next_seq: u64,
}

/// A bounded set of verified wtxids, shared by the mempool check, block verification and
/// execution of one replica.
#[derive(Debug)]
pub struct VerifiedSignatures {
    capacity: usize,
    inner: Mutex<Inner>,
    /// Signatures actually verified (cache misses), for metrics and tests.
    verified: AtomicU64,
}

impl Default for VerifiedSignatures {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedSignatures {
    /// An empty cache holding at most `capacity` wtxids (zero disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            verified: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that this replica verified the signature of the transaction with `wtxid`.
    pub fn insert(&self, wtxid: Hash32) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.seq_of.contains_key(&wtxid) {
            return;
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.seq_of.insert(wtxid, seq);
        inner.by_seq.insert(seq, wtxid);
        while inner.seq_of.len() > self.capacity {
            let Some((_, oldest)) = inner.by_seq.pop_first() else {
                break;
            };
            inner.seq_of.remove(&oldest);
        }
        debug_assert_eq!(inner.seq_of.len(), inner.by_seq.len());
    }

    /// Whether the transaction with `wtxid` was verified by this replica (and not forgotten).
    pub fn contains(&self, wtxid: &Hash32) -> bool {
        self.lock().seq_of.contains_key(wtxid)
    }

    /// Forgets `wtxid` (its transaction was executed).
    pub fn forget(&self, wtxid: &Hash32) {
        let mut inner = self.lock();
        if let Some(seq) = inner.seq_of.remove(wtxid) {
            inner.by_seq.remove(&seq);
        }
    }

    /// Number of remembered wtxids.
    pub fn len(&self) -> usize {
        self.lock().seq_of.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many signatures this replica actually verified (each a cache miss).
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    /// Counts one actual verification.
    pub(crate) fn count_verification(&self) {
        self.verified.fetch_add(1, Ordering::Relaxed);
    }
}

impl SignatureCache for VerifiedSignatures {
    fn is_verified(&self, wtxid: &Hash32) -> bool {
        let hit = self.contains(wtxid);
        if !hit {
            // The ledger verifies it next.
            self.count_verification();
        }
        hit
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn key(n: u32) -> Hash32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_le_bytes());
        Hash32(k)
    }

    #[test]
    fn bounded_oldest_first() {
        let cache = VerifiedSignatures::new(3);
        for n in 0..5 {
            cache.insert(key(n));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&key(0)));
        assert!(!cache.contains(&key(1)));
        assert!(cache.contains(&key(2)) && cache.contains(&key(4)));
        // Re-inserting does not refresh or duplicate.
        cache.insert(key(2));
        assert_eq!(cache.len(), 3);
        cache.forget(&key(3));
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&key(3)));
        cache.insert(key(5));
        cache.insert(key(6));
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&key(2)), "oldest evicted after a forget");
        assert!(cache.contains(&key(4)) && cache.contains(&key(5)) && cache.contains(&key(6)));

        let off = VerifiedSignatures::new(0);
        off.insert(key(1));
        assert!(off.is_empty());
    }
}
