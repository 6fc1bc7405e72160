//! Transactions this replica has already decoded and verified, so that each distinct signed
//! byte string is decoded (its key parsed: a field square root) and its BIP340 signature
//! checked at most once per replica while it is pending, although the gateway, gossip, the
//! txid lookups, block verification, the proposer and execution all see the same bytes.
//!
//! Keys are wtxids: the tagged hash of a signed transaction's full canonical encoding,
//! signature included. A decoded entry is stored under the hash of the very bytes it was
//! decoded from, so a hit means these exact bytes (up to a SHA-256 collision), and decoding is
//! a function of the bytes. The signature check is a function of exactly those bytes (signer
//! key, chain id and every field hashed into the sighash, plus the 64 signature bytes). The
//! encoding is canonical (decoding then encoding gives the input back, which the `decode_tx`
//! fuzz target asserts), so the hash of the received bytes is also
//! [`SignedTransaction::wtxid`], the key the ledger asks about at execution. A txid would not
//! do: it excludes the signature, so a tampered copy would share it.
//!
//! Only this replica's own decodings and successful verifications are recorded (never anything
//! a peer claims), against its one genesis. Decoding failures are not cached. The cache is
//! bounded in entries and in bytes: the oldest entries are forgotten first, and an executed
//! transaction's entry is dropped at once (it is not needed again), as is one that failed the
//! check. A forgotten entry only costs a second decoding or verification, never a wrong
//! answer.

use crate::keycache::KeyCache;
use coffer_ledger::{
    DecodeError, Hash32, IdentifiedTx, SignedTransaction, Txid,
    hash::{tagged_hash, tags},
    state::SignatureCache,
};
use foldhash::HashMap;
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Default capacity: above the default mempool bound (50 000), so everything pending fits.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Default budget for the encoded bytes of cached decoded transactions: above the default
/// mempool byte bound (64 MiB), so everything pending fits. The decoded form takes about as
/// much memory as the encoding (outpoints and outputs are stored flat), plus a small constant.
pub const DEFAULT_MAX_BYTES: usize = 80 * 1024 * 1024;

/// The wtxid of encoded bytes: [`SignedTransaction::wtxid`] of what they decode to, computed
/// without decoding (the encoding is canonical).
pub fn wtxid_of(bytes: &[u8]) -> Hash32 {
    Hash32(tagged_hash(tags::WTXID, &[bytes]))
}

/// A signed transaction decoded once, with its ids.
#[derive(Debug)]
pub struct DecodedTx {
    tx: IdentifiedTx,
    encoded_len: usize,
}

impl DecodedTx {
    /// The transaction.
    pub fn stx(&self) -> &SignedTransaction {
        self.tx.stx()
    }

    /// The transaction with its ids, as the ledger applies it.
    pub fn identified(&self) -> &IdentifiedTx {
        &self.tx
    }

    /// Its txid.
    pub fn txid(&self) -> Txid {
        self.tx.txid()
    }

    /// Its wtxid (the hash of the bytes it was decoded from).
    pub fn wtxid(&self) -> Hash32 {
        self.tx.wtxid()
    }
}

#[derive(Debug)]
struct Slot {
    seq: u64,
    /// Absent for an entry only known as verified (its decoding was forgotten or never cached).
    tx: Option<Arc<DecodedTx>>,
    verified: bool,
}

#[derive(Debug, Default)]
struct Inner {
    slots: HashMap<Hash32, Slot>,
    by_seq: BTreeMap<u64, Hash32>,
    next_seq: u64,
    /// Sum of the encoded lengths of the cached decoded transactions.
    bytes: usize,
}

impl Inner {
    fn remove(&mut self, wtxid: &Hash32) {
        if let Some(slot) = self.slots.remove(wtxid) {
            self.by_seq.remove(&slot.seq);
            if let Some(tx) = slot.tx {
                self.bytes -= tx.encoded_len;
            }
        }
    }

    /// A new slot for `wtxid` (absent).
    fn push(&mut self, wtxid: Hash32, tx: Option<Arc<DecodedTx>>, verified: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(tx) = &tx {
            self.bytes += tx.encoded_len;
        }
        self.slots.insert(wtxid, Slot { seq, tx, verified });
        self.by_seq.insert(seq, wtxid);
    }

    /// Forgets the oldest entries until at most `capacity` remain, holding at most `max_bytes`.
    fn shrink(&mut self, capacity: usize, max_bytes: usize) {
        while self.slots.len() > capacity || self.bytes > max_bytes {
            let Some(oldest) = self.by_seq.first_key_value().map(|(_, w)| *w) else {
                break;
            };
            self.remove(&oldest);
        }
        debug_assert_eq!(self.slots.len(), self.by_seq.len());
    }
}

/// A bounded cache of decoded transactions and verified wtxids, shared by the gateway, gossip,
/// the mempool check, block verification and execution of one replica.
#[derive(Debug)]
pub struct VerifiedSignatures {
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
    /// Signatures actually verified (cache misses), for metrics and tests.
    verified: AtomicU64,
    /// Transactions actually decoded (cache misses), for metrics and tests.
    decoded: AtomicU64,
    /// The signers' keys parsed so far: a repeat signer's new transaction skips the parse.
    keys: KeyCache,
}

impl Default for VerifiedSignatures {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl VerifiedSignatures {
    /// An empty cache holding at most `capacity` entries (zero disables it) and
    /// [`DEFAULT_MAX_BYTES`] of decoded transactions.
    pub fn new(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_MAX_BYTES)
    }

    /// An empty cache holding at most `capacity` entries whose decoded transactions total at
    /// most `max_bytes` encoded bytes.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            inner: Mutex::new(Inner::default()),
            verified: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            // Off with the rest: a replica that verifies everything again parses again too.
            keys: KeyCache::new(if capacity == 0 {
                0
            } else {
                crate::keycache::DEFAULT_CAPACITY
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `bytes` decoded, from the cache if this replica decoded these exact bytes before (and
    /// did not forget them); otherwise decoded now and remembered. Failures are not cached.
    pub fn decode(&self, bytes: &[u8]) -> Result<Arc<DecodedTx>, DecodeError> {
        // Hashed outside the lock: several threads look up at once.
        let wtxid = wtxid_of(bytes);
        if let Some(tx) = self.lock().slots.get(&wtxid).and_then(|s| s.tx.clone()) {
            return Ok(tx);
        }
        self.decoded.fetch_add(1, Ordering::Relaxed);
        let tx = IdentifiedTx::decode_with(bytes, &self.keys)?;
        debug_assert_eq!(tx.wtxid(), wtxid, "the transaction encoding is canonical");
        Ok(self.keep(tx, bytes.len()))
    }

    /// Encodes `stx` and remembers it decoded under its encoding, so that checking the returned
    /// bytes does not decode them again (the REST gateway receives transactions as JSON,
    /// already parsed). Decoding the encoding gives `stx` back (the encoding is canonical), so
    /// the entry is what [`decode`](Self::decode) would have stored.
    pub fn encode_and_keep(&self, stx: SignedTransaction) -> Vec<u8> {
        let (tx, bytes) = IdentifiedTx::encoded(stx);
        self.keep(tx, bytes.len());
        bytes
    }

    fn keep(&self, tx: IdentifiedTx, encoded_len: usize) -> Arc<DecodedTx> {
        let wtxid = tx.wtxid();
        let tx = Arc::new(DecodedTx { tx, encoded_len });
        if self.capacity == 0 || encoded_len > self.max_bytes {
            return tx;
        }
        let mut inner = self.lock();
        match inner.slots.get_mut(&wtxid) {
            // Another thread decoded it meanwhile: keep the first copy.
            Some(Slot {
                tx: Some(first), ..
            }) => return first.clone(),
            // Known as verified, decoding forgotten: refilled in place (same age).
            Some(slot) => {
                slot.tx = Some(tx.clone());
                inner.bytes += tx.encoded_len;
            }
            None => inner.push(wtxid, Some(tx.clone()), false),
        }
        inner.shrink(self.capacity, self.max_bytes);
        tx
    }

    /// The replica's cache of parsed public keys, for every decoder of transactions.
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// Records that this replica verified the signature of the transaction with `wtxid`.
    pub fn insert(&self, wtxid: Hash32) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        match inner.slots.get_mut(&wtxid) {
            // Marking does not refresh the entry's age.
            Some(slot) => slot.verified = true,
            None => {
                inner.push(wtxid, None, true);
                inner.shrink(self.capacity, self.max_bytes);
            }
        }
    }

    /// Whether the transaction with `wtxid` was verified by this replica (and not forgotten).
    pub fn contains(&self, wtxid: &Hash32) -> bool {
        self.lock().slots.get(wtxid).is_some_and(|s| s.verified)
    }

    /// Forgets `wtxid`, decoding and verification (its transaction was executed or failed the
    /// check).
    pub fn forget(&self, wtxid: &Hash32) {
        self.lock().remove(wtxid);
    }

    /// Number of entries (decoded or verified).
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Encoded bytes of the cached decoded transactions.
    pub fn decoded_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// How many signatures this replica actually verified (each a cache miss).
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    /// How many byte strings this replica actually decoded through the cache (each a miss,
    /// failures included).
    pub fn decodings(&self) -> u64 {
        self.decoded.load(Ordering::Relaxed)
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
    use coffer_ledger::{Amount, ChainId, Keypair, Mint, Transaction, TxOut};

    fn key(n: u32) -> Hash32 {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&n.to_le_bytes());
        Hash32(k)
    }

    /// Distinct signed mints, `outputs` outputs each.
    fn mint(nonce: u64, outputs: usize) -> Vec<u8> {
        let issuer = Keypair::from_secret_bytes([7; 32]).unwrap();
        issuer
            .sign_tx(Transaction::Mint(Mint {
                chain_id: ChainId::new("cache").unwrap(),
                issuer: issuer.public_key(),
                nonce,
                outputs: vec![TxOut::to_address(Amount(1), issuer.address()); outputs],
            }))
            .encode()
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

    #[test]
    fn a_transaction_parsed_elsewhere_is_kept_under_its_encoding() {
        let cache = VerifiedSignatures::new(8);
        let stx = SignedTransaction::decode(&mint(1, 2)).unwrap();
        let bytes = cache.encode_and_keep(stx.clone());
        assert_eq!(bytes, stx.encode());
        let kept = cache.decode(&bytes).unwrap();
        assert_eq!(cache.decodings(), 0, "found, not decoded");
        assert_eq!(kept.stx(), &stx);
        assert_eq!(kept.wtxid(), wtxid_of(&bytes));
        assert!(!cache.contains(&kept.wtxid()), "kept is not verified");
        assert_eq!(cache.decoded_bytes(), bytes.len());
    }

    #[test]
    fn decodes_each_byte_string_once_and_keys_it_by_its_wtxid() {
        let cache = VerifiedSignatures::new(8);
        let bytes = mint(1, 1);
        let first = cache.decode(&bytes).unwrap();
        assert_eq!(first.wtxid(), wtxid_of(&bytes));
        assert_eq!(first.wtxid(), first.stx().wtxid());
        assert_eq!(first.txid(), first.stx().txid());
        assert_eq!(first.stx().encode(), bytes);
        let again = cache.decode(&bytes).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(cache.decodings(), 1);
        // Decoded is not verified.
        assert!(!cache.contains(&first.wtxid()));
        cache.insert(first.wtxid());
        assert!(cache.contains(&first.wtxid()));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.decoded_bytes(), bytes.len());

        // Other bytes with the same txid (another signature) are another entry.
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        let other = cache.decode(&tampered).unwrap();
        assert_eq!(other.txid(), first.txid());
        assert_ne!(other.wtxid(), first.wtxid());
        assert!(!cache.contains(&other.wtxid()));
        assert_eq!((cache.decodings(), cache.len()), (2, 2));

        // Failures are counted, never cached.
        for _ in 0..2 {
            assert!(cache.decode(&bytes[..bytes.len() - 1]).is_err());
        }
        assert_eq!((cache.decodings(), cache.len()), (4, 2));

        cache.forget(&first.wtxid());
        assert!(!cache.contains(&first.wtxid()));
        assert_eq!(cache.decoded_bytes(), tampered.len());
        cache.decode(&bytes).unwrap();
        assert_eq!(cache.decodings(), 5);

        let off = VerifiedSignatures::new(0);
        off.decode(&bytes).unwrap();
        off.decode(&bytes).unwrap();
        assert_eq!((off.decodings(), off.len()), (2, 0));
    }

    #[test]
    fn a_repeat_signer_key_is_parsed_once() {
        let cache = VerifiedSignatures::new(8);
        for nonce in 1..=3 {
            let bytes = mint(nonce, 1);
            let decoded = cache.decode(&bytes).unwrap();
            assert_eq!(decoded.stx(), &SignedTransaction::decode(&bytes).unwrap());
        }
        assert_eq!(cache.decodings(), 3, "three transactions");
        assert_eq!(
            (cache.keys().parsed(), cache.keys().hits()),
            (1, 2),
            "one signer"
        );

        let off = VerifiedSignatures::new(0);
        off.decode(&mint(1, 1)).unwrap();
        off.decode(&mint(2, 1)).unwrap();
        assert_eq!((off.keys().parsed(), off.keys().len()), (2, 0));
    }

    #[test]
    fn bounded_in_bytes_oldest_first() {
        let (small, big) = (mint(1, 1), mint(2, 20));
        let cache = VerifiedSignatures::with_limits(8, small.len() + big.len());
        let small_id = cache.decode(&small).unwrap().wtxid();
        let big_id = cache.decode(&big).unwrap().wtxid();
        cache.insert(small_id);
        cache.insert(big_id);
        assert_eq!(cache.decoded_bytes(), small.len() + big.len());
        // One more small one breaks the byte bound: the oldest goes, verified or not.
        let third = mint(3, 1);
        cache.decode(&third).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&small_id));
        assert_eq!(cache.decoded_bytes(), big.len() + third.len());
        cache.decode(&big).unwrap();
        assert_eq!(cache.decodings(), 3, "the big one stayed");
        assert!(cache.contains(&big_id));
        // A transaction above the whole budget is decoded but not kept.
        let tiny = VerifiedSignatures::with_limits(8, small.len() - 1);
        tiny.decode(&small).unwrap();
        assert!(tiny.is_empty());
        // A verified-only entry whose decoding is refilled counts its bytes.
        let refill = VerifiedSignatures::with_limits(8, 1 << 20);
        refill.insert(wtxid_of(&big));
        assert_eq!(refill.decoded_bytes(), 0);
        refill.decode(&big).unwrap();
        assert!(refill.contains(&wtxid_of(&big)));
        assert_eq!((refill.len(), refill.decoded_bytes()), (1, big.len()));
        refill.forget(&wtxid_of(&big));
        assert_eq!((refill.len(), refill.decoded_bytes()), (0, 0));
    }
}
