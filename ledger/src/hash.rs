//! Hashes: BIP340-style tagged SHA-256, 32-byte digests with hex forms, and the incremental
//! multiset hash of the UTXO set.
//!
//! Every hash in Coffer is tagged (`SHA256(SHA256(tag) || SHA256(tag) || data)`), one tag per
//! purpose (see [`tags`]), so a digest computed for one purpose can never be passed off as
//! another.

use bitcoin_hashes::{HashEngine as _, sha256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Domain tags. Changing any of these changes every golden vector; they are part of the protocol.
pub mod tags {
    /// Transaction id: hash of the unsigned transaction encoding.
    pub const TXID: &str = "coffer/txid";
    /// Hash of a signed transaction's full encoding (transaction and signature).
    pub const WTXID: &str = "coffer/wtxid";
    /// Message signed for a transfer.
    pub const SIG_TRANSFER: &str = "coffer/sig/transfer";
    /// Message signed for a mint.
    pub const SIG_MINT: &str = "coffer/sig/mint";
    /// Address: hash of an x-only public key.
    pub const ADDRESS: &str = "coffer/address";
    /// One element of the UTXO multiset: an outpoint and its output.
    pub const UTXO: &str = "coffer/utxo";
    /// Genesis document.
    pub const GENESIS: &str = "coffer/genesis";
    /// Ordered list of a block's transactions.
    pub const BLOCK_TXS: &str = "coffer/block-txs";
    /// Ordered list of a block's receipts.
    pub const BLOCK_RECEIPTS: &str = "coffer/block-receipts";
    /// Link of the ledger's hash chain (state hash after a block).
    pub const STATE: &str = "coffer/state";
}

/// Every protocol tag, for the prefix cache.
const ALL_TAGS: [&str; 10] = [
    tags::TXID,
    tags::WTXID,
    tags::SIG_TRANSFER,
    tags::SIG_MINT,
    tags::ADDRESS,
    tags::UTXO,
    tags::GENESIS,
    tags::BLOCK_TXS,
    tags::BLOCK_RECEIPTS,
    tags::STATE,
];

/// A SHA-256 engine that has absorbed `SHA256(tag) || SHA256(tag)` (one 64-byte block).
fn prefixed_engine(tag: &str) -> sha256::HashEngine {
    let tag_hash = sha256::Hash::hash(tag.as_bytes()).to_byte_array();
    let mut engine = sha256::HashEngine::default();
    engine.input(&tag_hash);
    engine.input(&tag_hash);
    engine
}

/// `SHA256(SHA256(tag) || SHA256(tag) || parts[0] || parts[1] || ...)`.
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    // The prefix is one full block, so protocol tags reuse a pre-absorbed engine and skip two
    // compressions per hash (a third of the cost of hashing a UTXO element).
    static PREFIXES: std::sync::OnceLock<Vec<(&'static str, sha256::HashEngine)>> =
        std::sync::OnceLock::new();
    let prefixes =
        PREFIXES.get_or_init(|| ALL_TAGS.iter().map(|t| (*t, prefixed_engine(t))).collect());
    let mut engine = match prefixes.iter().find(|(t, _)| *t == tag) {
        Some((_, e)) => e.clone(),
        None => prefixed_engine(tag),
    };
    for part in parts {
        engine.input(part);
    }
    sha256::Hash::from_engine(engine).to_byte_array()
}

macro_rules! hex32_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw bytes.
            pub const fn to_bytes(self) -> [u8; 32] {
                self.0
            }
            /// The raw bytes, borrowed.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(Hex::new(&self.0).as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), Hex::new(&self.0).as_str())
            }
        }

        impl FromStr for $name {
            type Err = HexError;
            fn from_str(s: &str) -> Result<Self, HexError> {
                parse_hex32(s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(Hex::new(&self.0).as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Error parsing a fixed-length hex string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// Not valid lower- or upper-case hex.
    #[error("invalid hex: {0}")]
    Invalid(String),
    /// Valid hex but the wrong number of bytes.
    #[error("expected {expected} bytes of hex, got {got}")]
    Length {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
}

/// Lower-case hex of at most 64 bytes, on the stack. The JSON answers carry dozens of hashes,
/// keys and signatures each; `hex::encode` builds a `String` one `char` at a time, several
/// times slower than filling a buffer from a table.
#[derive(Clone, Copy)]
pub struct Hex {
    buf: [u8; 128],
    len: usize,
}

impl Hex {
    /// The hex of `bytes`; more than 64 bytes do not compile.
    pub fn new<const N: usize>(bytes: &[u8; N]) -> Self {
        const { assert!(N <= 64, "Hex holds at most 64 bytes") };
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 128];
        for (i, b) in bytes.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        Self { buf, len: 2 * N }
    }

    /// The hex digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("hex digits are ASCII")
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({})", self.as_str())
    }
}

/// Parses exactly `N` bytes of hex. Only the canonical lower-case form is accepted so that a
/// value has one JSON spelling.
pub(crate) fn parse_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(HexError::Invalid(format!("{s:?} is not lower-case")));
    }
    if s.len() == 2 * N {
        // The common case, without an allocation; other lengths take the path below, whose
        // errors (odd length before bad characters before wrong length) stay as they were.
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).map_err(|e| HexError::Invalid(e.to_string()))?;
        return Ok(out);
    }
    let bytes = hex::decode(s).map_err(|e| HexError::Invalid(e.to_string()))?;
    let got = bytes.len();
    bytes
        .try_into()
        .map_err(|_| HexError::Length { expected: N, got })
}

fn parse_hex32(s: &str) -> Result<[u8; 32], HexError> {
    parse_hex::<32>(s)
}

hex32_newtype!(
    /// A 32-byte digest (block hashes, state hashes, genesis hash). JSON: lower-case hex.
    Hash32
);

hex32_newtype!(
    /// Transaction id: the tagged hash ([`tags::TXID`]) of the transaction's canonical encoding
    /// without its signature. JSON: lower-case hex.
    Txid
);

/// Incremental multiset hash of the UTXO set: the sum, modulo 2^256, of
/// `tagged_hash("coffer/utxo", outpoint || output)` read as a little-endian integer, over every
/// unspent output.
///
/// Why a modular sum: it is order-independent (replicas need not agree on iteration order),
/// updatable in O(1) per created or spent output (add or subtract one element), and, unlike XOR,
/// it counts multiplicity: adding the same element twice moves the sum instead of cancelling to
/// the empty set, and removing an element that was never added cannot silently restore an
/// earlier value. Its known weakness is a generalised-birthday (Wagner) attack that finds *some*
/// colliding multisets with far less than 2^128 work; that matters when an adversary may choose
/// arbitrary set contents to force a collision. Here the set is only reachable by executing
/// signed transactions and the state hash also chains every block's transactions and receipts,
/// so the multiset hash is a cheap divergence detector, not the sole integrity root. MuHash3072
/// (Bitcoin Core) would remove that caveat at ~100x the cost per update.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UtxoSetHash([u64; 4]);

impl UtxoSetHash {
    /// The hash of the empty set.
    pub const EMPTY: UtxoSetHash = UtxoSetHash([0; 4]);

    fn limbs(element: &[u8; 32]) -> [u64; 4] {
        let mut limbs = [0u64; 4];
        for (i, chunk) in element.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            limbs[i] = u64::from_le_bytes(word);
        }
        limbs
    }

    /// Adds one element (an output becoming unspent).
    pub fn insert(&mut self, element: &[u8; 32]) {
        let rhs = Self::limbs(element);
        let mut carry = false;
        for (l, r) in self.0.iter_mut().zip(rhs) {
            let (s1, c1) = l.overflowing_add(r);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *l = s2;
            carry = c1 || c2;
        }
    }

    /// Removes one element (an output being spent).
    pub fn remove(&mut self, element: &[u8; 32]) {
        let rhs = Self::limbs(element);
        let mut borrow = false;
        for (l, r) in self.0.iter_mut().zip(rhs) {
            let (d1, b1) = l.overflowing_sub(r);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *l = d2;
            borrow = b1 || b2;
        }
    }

    /// The 32-byte little-endian digest.
    pub fn to_hash(self) -> Hash32 {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_le_bytes());
        }
        Hash32(out)
    }

    /// Rebuilds the accumulator from its digest (for restoring persisted state).
    pub fn from_hash(hash: Hash32) -> Self {
        UtxoSetHash(Self::limbs(&hash.0))
    }
}

impl fmt::Debug for UtxoSetHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UtxoSetHash({})", self.to_hash())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stack_hex_matches_the_hex_crate_and_parsing_reverses_it() {
        let mut bytes = [0u8; 64];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from(i * 37 % 256).expect("below 256");
        }
        bytes[0] = 0xff;
        assert_eq!(Hex::new(&bytes).as_str(), hex::encode(bytes));
        let half: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
        assert_eq!(Hex::new(&half).as_str(), hex::encode(half));
        assert_eq!(Hex::new(&[0u8; 0]).as_str(), "");
        assert_eq!(parse_hex::<32>(Hex::new(&half).as_str()), Ok(half));
        assert_eq!(parse_hex::<64>(Hex::new(&bytes).as_str()), Ok(bytes));
    }

    #[test]
    fn parse_hex_errors_are_unchanged_by_the_fast_path() {
        let good = "ab".repeat(32);
        // Right length, a bad character: the same error `hex::decode` gives.
        let bad = format!("zz{}", &good[2..]);
        assert_eq!(
            parse_hex::<32>(&bad),
            Err(HexError::Invalid(
                hex::decode(&bad).unwrap_err().to_string()
            ))
        );
        assert!(
            matches!(parse_hex::<32>(&good.to_uppercase()), Err(HexError::Invalid(m)) if m.contains("lower-case"))
        );
        assert_eq!(
            parse_hex::<32>(&good[..62]),
            Err(HexError::Length {
                expected: 32,
                got: 31
            })
        );
        assert!(matches!(
            parse_hex::<32>(&good[..63]),
            Err(HexError::Invalid(_))
        ));
        // A bad character in a string of the wrong length: reported as before, not as a length.
        assert!(matches!(parse_hex::<32>("zz"), Err(HexError::Invalid(_))));
    }

    #[test]
    fn tagged_hash_matches_bip340_construction() {
        // BIP340's "BIP0340/challenge" tag hash prefix, computed independently.
        let tag = sha256::Hash::hash(b"BIP0340/challenge").to_byte_array();
        let mut data = tag.to_vec();
        data.extend_from_slice(&tag);
        data.extend_from_slice(b"abc");
        let expected = sha256::Hash::hash(&data).to_byte_array();
        assert_eq!(tagged_hash("BIP0340/challenge", &[b"a", b"bc"]), expected);
    }

    #[test]
    fn cached_and_uncached_prefixes_agree() {
        for tag in ALL_TAGS {
            let mut engine = prefixed_engine(tag);
            engine.input(b"data");
            assert_eq!(
                tagged_hash(tag, &[b"da", b"ta"]),
                sha256::Hash::from_engine(engine).to_byte_array()
            );
        }
    }

    #[test]
    fn multiset_is_order_independent_and_counts_duplicates() {
        let a = tagged_hash("t", &[b"a"]);
        let b = tagged_hash("t", &[b"b"]);
        let mut x = UtxoSetHash::EMPTY;
        x.insert(&a);
        x.insert(&b);
        let mut y = UtxoSetHash::EMPTY;
        y.insert(&b);
        y.insert(&a);
        assert_eq!(x, y);
        // Unlike XOR, inserting twice does not cancel.
        let mut z = UtxoSetHash::EMPTY;
        z.insert(&a);
        z.insert(&a);
        assert_ne!(z, UtxoSetHash::EMPTY);
        z.remove(&a);
        z.remove(&a);
        assert_eq!(z, UtxoSetHash::EMPTY);
        x.remove(&a);
        let mut only_b = UtxoSetHash::EMPTY;
        only_b.insert(&b);
        assert_eq!(x, only_b);
    }

    #[test]
    fn multiset_carries_across_limbs() {
        let max = [0xffu8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        let mut x = UtxoSetHash::EMPTY;
        x.insert(&max);
        x.insert(&one);
        // 2^256 - 1 + 1 wraps to zero.
        assert_eq!(x, UtxoSetHash::EMPTY);
        x.remove(&one);
        assert_eq!(x.to_hash().0, max);
        assert_eq!(UtxoSetHash::from_hash(x.to_hash()), x);
    }

    #[test]
    fn hex_is_lower_case_and_exact_length() {
        let h = Hash32([0xab; 32]);
        assert_eq!(h.to_string().parse::<Hash32>(), Ok(h));
        assert!("AB".repeat(32).parse::<Hash32>().is_err());
        assert!("ab".repeat(31).parse::<Hash32>().is_err());
        assert!("zz".repeat(32).parse::<Hash32>().is_err());
    }
}
