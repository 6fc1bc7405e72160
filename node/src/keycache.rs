//! Public keys this replica has parsed, so that a wallet spending again does not cost another
//! field square root.
//!
//! A transfer names its signer as the 32 bytes of an x-only key. Parsing them finds the curve
//! point (a square root modulo p, about 5 µs here, a tenth of the signature check). Coffer's
//! wallets spend from one key again and again (change goes back to the sender's address), so
//! a replica that remembers the keys it parsed skips that work for every repeat signer.
//!
//! Parsing is a function of the bytes, so a remembered key is exactly what parsing again
//! would give; bytes that are not a key are never remembered (every such attempt parses and
//! fails again). Keys are remembered in two generations of at most `capacity` each: new keys
//! go into the current one, and when it is full it becomes the previous one and the old
//! previous one is dropped. A key found in the previous generation moves to the current one,
//! so a key in use survives and one unused for two generations is forgotten. The cache holds
//! at most twice `capacity` keys, and an attacker sending fresh keys only churns it (each
//! costs it one parse, as without a cache). The maps use foldhash, seeded at random per process:
//! keys are chosen by clients.

use coffer_ledger::{KeyError, KeyParser, PublicKey};
use foldhash::HashMap;
use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

/// Default capacity of one generation. Two full generations take about 13 MiB; the benchmark's
/// 51,200 wallets fit in them.
pub const DEFAULT_CAPACITY: usize = 32_768;

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<[u8; 32], PublicKey>,
    previous: HashMap<[u8; 32], PublicKey>,
}

impl Generations {
    fn insert(&mut self, bytes: [u8; 32], key: PublicKey, capacity: usize) {
        if self.current.len() >= capacity {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(bytes, key);
    }
}

/// A bounded cache of parsed public keys, shared by every decoder of one replica.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    keys: Mutex<Generations>,
    /// Keys actually parsed (misses, including bytes that are not a key).
    parsed: AtomicU64,
    /// Keys answered from memory.
    hits: AtomicU64,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl KeyCache {
    /// An empty cache of two generations of at most `capacity` keys each (zero disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            keys: Mutex::new(Generations::default()),
            parsed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        let keys = self.lock();
        keys.current.len() + keys.previous.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys parsed so far (misses).
    pub fn parsed(&self) -> u64 {
        self.parsed.load(Ordering::Relaxed)
    }

    /// Keys answered from memory so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl KeyParser for KeyCache {
    fn parse_key(&self, bytes: [u8; 32]) -> Result<PublicKey, KeyError> {
        if self.capacity > 0 {
            let mut keys = self.lock();
            if let Some(key) = keys.current.get(&bytes) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(*key);
            }
            if let Some(key) = keys.previous.remove(&bytes) {
                keys.insert(bytes, key, self.capacity);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(key);
            }
        }
        // Parsed outside the lock: the other decoders of this replica go on meanwhile.
        self.parsed.fetch_add(1, Ordering::Relaxed);
        let key = PublicKey::from_bytes(bytes)?;
        if self.capacity > 0 {
            self.lock().insert(bytes, key, self.capacity);
        }
        Ok(key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coffer_ledger::Keypair;

    fn key(n: u8) -> [u8; 32] {
        Keypair::from_secret_bytes([n.max(1); 32])
            .expect("valid secret")
            .public_key()
            .to_bytes()
    }

    #[test]
    fn answers_as_parsing_does_and_parses_each_key_once() {
        let cache = KeyCache::new(8);
        for _ in 0..3 {
            for n in 1..=4 {
                let bytes = key(n);
                assert_eq!(
                    cache.parse_key(bytes).unwrap(),
                    PublicKey::from_bytes(bytes).unwrap()
                );
            }
        }
        assert_eq!((cache.parsed(), cache.hits(), cache.len()), (4, 8, 4));
    }

    #[test]
    fn bytes_that_are_no_key_fail_every_time_and_are_not_kept() {
        // x = 5 is not the x coordinate of a secp256k1 point (5³ + 7 = 132 is not a square).
        let mut bytes = [0u8; 32];
        bytes[31] = 5;
        let cache = KeyCache::new(8);
        for _ in 0..2 {
            let err = cache.parse_key(bytes).unwrap_err();
            assert_eq!(
                err.to_string(),
                PublicKey::from_bytes(bytes).unwrap_err().to_string()
            );
        }
        assert_eq!((cache.parsed(), cache.hits(), cache.len()), (2, 0, 0));
    }

    #[test]
    fn bounded_to_two_generations_and_keys_in_use_survive() {
        let cache = KeyCache::new(3);
        let hot = key(1);
        cache.parse_key(hot).unwrap();
        for n in 2..=30 {
            cache.parse_key(key(n)).unwrap();
            assert!(
                cache.len() <= 6,
                "{} keys above two generations",
                cache.len()
            );
            // The hot key is used between every two new ones: it is never parsed again.
            cache.parse_key(hot).unwrap();
        }
        assert_eq!(
            cache.parsed(),
            30,
            "the hot key parsed once, each other key once"
        );
        // A key unused for two generations is forgotten: parsing it again is a miss.
        cache.parse_key(key(2)).unwrap();
        assert_eq!(cache.parsed(), 31);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let cache = KeyCache::new(0);
        for _ in 0..3 {
            cache.parse_key(key(1)).unwrap();
        }
        assert_eq!((cache.parsed(), cache.hits(), cache.len()), (3, 0, 0));
    }
}
