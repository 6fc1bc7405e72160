//! The Redis key layout (documented in `docs/STORAGE.md`).
//!
//! `P` is the replica's prefix. Braces are Redis Cluster hash tags: only the text between them
//! picks the slot, so keys that share a tag share a slot.
//!
//! | key | type | slot |
//! |---|---|---|
//! | `{P}:meta` | hash: `height`, `commitment`, `supply`, `version` | the replica's tag `{P}` |
//! | `{P}:mints` | set of mint txids | `{P}` (read with meta on load) |
//! | `{P}:rejected` | set of txids rejected as `unknown_input` | `{P}` (read with meta on load) |
//! | `{P}:spent` | hash height → outpoints that height spent (the last `spent_horizon` heights) | `{P}` |
//! | `P:block:H` | string: block entry (block, record, change journal) | spread by height |
//! | `{P:s:NN}:out` | hash outpoint → `amount|output` (shard NN of all UTXOs) | one slot per shard |
//! | `{P:s:NN}:tx` | hash txid → tx record | same slot as shard NN's outputs |
//! | `{P:s:NN}:addrs` | set of addresses with history (for load) | same slot as shard NN |
//! | `{P:a:ADDR}:hist` | sorted set, score seq, member `varint seq|entry` | one slot per address |

use super::StorageError;

/// Number of shards of the global UTXO and tx indexes. Fixed: changing it is a layout change.
pub const UTXO_SHARDS: u8 = 16;
/// Longest prefix accepted.
pub const MAX_PREFIX_BYTES: usize = 64;
/// Longest address accepted in a key.
pub const MAX_ADDRESS_BYTES: usize = 128;

/// Key names for one replica's namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

/// Printable ASCII without braces: braces would change the hash tag and so the slot.
fn key_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

pub(crate) fn check_address(a: &str) -> Result<(), StorageError> {
    if a.is_empty() || a.len() > MAX_ADDRESS_BYTES || !key_safe(a) {
        return Err(StorageError::InvalidAddress(a.to_owned()));
    }
    Ok(())
}

/// The shard of an outpoint or txid: its first byte (a hash byte, so uniform).
pub(crate) fn shard_of(id: &[u8]) -> u8 {
    id.first().copied().unwrap_or(0) % UTXO_SHARDS
}

/// The shard of an address (FNV-1a: addresses share a prefix, so no single byte will do).
pub(crate) fn shard_of_address(a: &str) -> u8 {
    let mut h: u32 = 0x811c_9dc5;
    for b in a.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    // The modulus is below 256, so the value fits in a u8.
    u8::try_from(h % u32::from(UTXO_SHARDS)).unwrap_or(0)
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Result<Self, StorageError> {
        if prefix.is_empty() || prefix.len() > MAX_PREFIX_BYTES || !key_safe(prefix) {
            return Err(StorageError::Config(format!(
                "prefix {prefix:?} must be 1..={MAX_PREFIX_BYTES} printable ascii bytes without braces"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    pub(crate) fn meta(&self) -> String {
        format!("{{{}}}:meta", self.prefix)
    }

    pub(crate) fn mints(&self) -> String {
        format!("{{{}}}:mints", self.prefix)
    }

    pub(crate) fn rejected(&self) -> String {
        format!("{{{}}}:rejected", self.prefix)
    }

    pub(crate) fn block(&self, height: u64) -> String {
        format!("{}:block:{height}", self.prefix)
    }

    pub(crate) fn shard_outputs(&self, shard: u8) -> String {
        format!("{{{}:s:{shard:02}}}:out", self.prefix)
    }

    pub(crate) fn shard_txs(&self, shard: u8) -> String {
        format!("{{{}:s:{shard:02}}}:tx", self.prefix)
    }

    pub(crate) fn spent(&self) -> String {
        format!("{{{}}}:spent", self.prefix)
    }

    pub(crate) fn shard_addrs(&self, shard: u8) -> String {
        format!("{{{}:s:{shard:02}}}:addrs", self.prefix)
    }

    pub(crate) fn addr_history(&self, address: &str) -> String {
        format!("{{{}:a:{address}}}:hist", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn tags_group_what_is_read_together() {
        let k = Keys::new("coffer:r0").expect("valid prefix");
        assert_eq!(Slot::for_key(k.meta()), Slot::for_key(k.mints()));
        assert_eq!(Slot::for_key(k.meta()), Slot::for_key(k.rejected()));
        assert_eq!(Slot::for_key(k.meta()), Slot::for_key(k.spent()));
        assert_eq!(
            Slot::for_key(k.shard_outputs(3)),
            Slot::for_key(k.shard_txs(3))
        );
        // Two replicas sharing a deployment never share a metadata slot by construction of the
        // tag (they may by hash collision, which is harmless: keys still differ).
        assert_ne!(k.meta(), Keys::new("coffer:r1").expect("valid").meta());
    }

    #[test]
    fn rejects_prefixes_and_addresses_that_would_move_slots() {
        assert!(Keys::new("a{b}").is_err());
        assert!(Keys::new("").is_err());
        assert!(Keys::new("with space").is_err());
        assert!(check_address("x}y").is_err());
        assert!(check_address(&"a".repeat(MAX_ADDRESS_BYTES + 1)).is_err());
        assert!(check_address("cof1qqqq").is_ok());
    }
}
