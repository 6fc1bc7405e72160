//! The block that consensus orders: a parent link, a height, the proposing view and an ordered
//! list of opaque transactions.
//!
//! Canonical encoding (commonware codec):
//!
//! ```text
//! parent (32) | height (u64 BE) | view (u64 BE) | tx count (varint) | { tx len (varint) | tx }*
//! ```
//!
//! The digest is `sha256("coffer/block/v1" || encoding)`. Decoding rejects anything above the
//! protocol limits, so a peer can never make a replica allocate an unbounded block.

use crate::tx::MAX_TX_BYTES;
use bytes::{BufMut, Bytes};
use commonware_codec::{Buf, EncodeSize, Error as CodecError, RangeCfg, Read, ReadExt, Write};
use commonware_consensus::{Heightable, types::Height};
use commonware_cryptography::{
    Digestible, Hasher,
    sha256::{Digest, Sha256},
};

/// Maximum number of transactions in one block (protocol constant, shared by all replicas).
pub const MAX_BLOCK_TXS: usize = 1_000;

/// Maximum total transaction bytes in one block (protocol constant, checked before voting).
pub const MAX_BLOCK_BYTES: usize = 4 * 1024 * 1024;

/// Domain tag of block digests.
const BLOCK_TAG: &[u8] = b"coffer/block/v1";

/// A block of ordered transactions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Digest of the parent block.
    pub parent: Digest,
    /// Height: the parent's height plus one (genesis is zero).
    pub height: u64,
    /// The consensus view in which the block was proposed (makes every proposal distinct).
    pub view: u64,
    /// Transactions, in execution order.
    pub txs: Vec<Bytes>,
}

impl Block {
    /// The genesis block: height zero, no transactions, its parent a hash of the chain id.
    pub fn genesis(chain_id: &str) -> Self {
        Self {
            parent: Sha256::hash(&[b"coffer/genesis/v1", chain_id.as_bytes()]),
            height: 0,
            view: 0,
            txs: Vec::new(),
        }
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.view.write(buf);
        self.txs.write(buf);
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.parent.encode_size()
            + self.height.encode_size()
            + self.view.encode_size()
            + self.txs.encode_size()
    }
}

impl Read for Block {
    type Cfg = ();

    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let parent = Digest::read(buf)?;
        let height = u64::read(buf)?;
        let view = u64::read(buf)?;
        let txs = Vec::<Bytes>::read_cfg(
            buf,
            &(
                RangeCfg::new(0..=MAX_BLOCK_TXS),
                RangeCfg::new(1..=MAX_TX_BYTES),
            ),
        )?;
        Ok(Self {
            parent,
            height,
            view,
            txs,
        })
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        let mut encoded = Vec::with_capacity(self.encode_size());
        self.write(&mut encoded);
        Sha256::hash(&[BLOCK_TAG, &encoded])
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        Height::new(self.height)
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl commonware_consensus::BoundedBlock for Block {
    fn max_encode_size(_: &()) -> usize {
        // parent + height + view + count varint + each tx's 5-byte length varint + the
        // transactions, whose bytes a block (one replicas vote for) holds at most
        // `MAX_BLOCK_BYTES` of: a peer's larger message is dropped before it is decoded.
        32 + 8 + 8 + 5 + MAX_BLOCK_TXS * 5 + MAX_BLOCK_BYTES
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn roundtrip_and_limits() {
        let block = Block {
            parent: Block::genesis("t").digest(),
            height: 1,
            view: 3,
            txs: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"d")],
        };
        let bytes = block.encode();
        let back = Block::decode(bytes.clone()).expect("decodes");
        assert_eq!(back, block);
        assert_eq!(back.digest(), block.digest());
        // Truncated input is an error, not a panic.
        assert!(Block::decode(bytes.slice(..bytes.len() - 1)).is_err());
        // An empty transaction is not admitted.
        let bad = Block {
            txs: vec![Bytes::new()],
            ..block.clone()
        };
        assert!(Block::decode(bad.encode()).is_err());
        // Too many transactions are refused before allocation.
        let big = Block {
            txs: vec![Bytes::from_static(b"x"); MAX_BLOCK_TXS + 1],
            ..block
        };
        assert!(Block::decode(big.encode()).is_err());
    }
}
