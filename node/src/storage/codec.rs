//! The byte format of a stored block entry: the block, its change (the journal a crashed cluster
//! write is finished from) and sizes checked on both sides.
//!
//! Layout, all integers big-endian: `version u8 | height u64 | block bytes | change`, where
//! `bytes` is `u32 length | data` and the change is `record bytes | commitment bytes | supply
//! u64 | created list | spent list | spent-in-block list | history list | txs list | mints list |
//! rejected list`, each list `u32 count` then items: created `outpoint bytes | amount u64 |
//! output bytes`, spent and spent-in-block `outpoint bytes`, history `address bytes | seq u64 |
//! entry bytes`, txs `txid [32] | record bytes`, mints and rejected `txid [32]`, then
//! `spent_from u64`. Version 1 also carried an address with each created and spent output (the
//! per-address UTXO index it fed is gone); version 2 had no `spent_from` (spent outputs were
//! remembered forever); version 3 had no rejected list (rejections were not remembered).
//!
//! A height's remembered spends (a field of the spent hash) are `u32 count | outpoint bytes*`.
//!
//! Decoding never trusts a length: every one is checked against the bytes left and the limits
//! below.

use super::{BlockChange, CreatedOutput, HistoryItem, SpentOutput, StorageError, TxItem, Txid};

/// The entry format version; bumped on any layout change.
pub(crate) const ENTRY_VERSION: u8 = 4;
/// Largest block accepted (matches the consensus block size limit with headroom).
pub const MAX_BLOCK_BYTES: usize = 16 << 20;
/// Largest single value (output, history entry, tx record, block record).
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Largest outpoint encoding.
pub const MAX_OUTPOINT_BYTES: usize = 64;
/// Most items in one block change, all lists together.
pub const MAX_ITEMS: usize = 1 << 20;

pub(crate) fn check_len(what: &'static str, got: usize, max: usize) -> Result<(), StorageError> {
    if got > max {
        return Err(StorageError::Limit {
            what,
            got: got as u64,
            max: max as u64,
        });
    }
    Ok(())
}

/// A decoded block entry.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub height: u64,
    pub block: Vec<u8>,
    pub change: BlockChange,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths were checked against limits far below u32::MAX before encoding.
    let len = u32::try_from(b.len()).expect("length checked against limits before encoding");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
}

fn put_count(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("count checked against MAX_ITEMS before encoding");
    out.extend_from_slice(&n.to_be_bytes());
}

/// Encodes an entry; the change must have passed `validate_change`.
pub(crate) fn encode_entry(height: u64, block: &[u8], c: &BlockChange) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + 256);
    out.push(ENTRY_VERSION);
    out.extend_from_slice(&height.to_be_bytes());
    put_bytes(&mut out, block);
    put_bytes(&mut out, &c.block_record);
    put_bytes(&mut out, &c.commitment);
    out.extend_from_slice(&c.supply.to_be_bytes());
    put_count(&mut out, c.created.len());
    for o in &c.created {
        put_bytes(&mut out, &o.outpoint);
        out.extend_from_slice(&o.amount.to_be_bytes());
        put_bytes(&mut out, &o.output);
    }
    put_count(&mut out, c.spent.len());
    for s in &c.spent {
        put_bytes(&mut out, &s.outpoint);
    }
    put_count(&mut out, c.spent_in_block.len());
    for op in &c.spent_in_block {
        put_bytes(&mut out, op);
    }
    put_count(&mut out, c.history.len());
    for h in &c.history {
        put_bytes(&mut out, h.address.as_bytes());
        out.extend_from_slice(&h.seq.to_be_bytes());
        put_bytes(&mut out, &h.entry);
    }
    put_count(&mut out, c.txs.len());
    for t in &c.txs {
        out.extend_from_slice(&t.txid);
        put_bytes(&mut out, &t.record);
    }
    put_count(&mut out, c.mints.len());
    for m in &c.mints {
        out.extend_from_slice(m);
    }
    put_count(&mut out, c.rejected.len());
    for t in &c.rejected {
        out.extend_from_slice(t);
    }
    out.extend_from_slice(&c.spent_from.to_be_bytes());
    out
}

/// One height's spent outpoints, as the spent hash stores them; they must have passed
/// `validate_change`.
pub(crate) fn encode_outpoints(ops: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 40 * ops.len());
    put_count(&mut out, ops.len());
    for op in ops {
        put_bytes(&mut out, op);
    }
    out
}

/// Decodes [`encode_outpoints`] read from `key`.
pub(crate) fn decode_outpoints(key: &str, buf: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut r = Reader { key, buf };
    let mut budget = MAX_ITEMS;
    let n = r.count("outpoints", &mut budget)?;
    // Each takes at least its 4-byte length: a count beyond that is corrupt, not allocated.
    if n > r.buf.len() / 4 {
        return Err(r.corrupt(format!("{n} outpoints in {} bytes", r.buf.len())));
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        ops.push(r.bytes("outpoint", MAX_OUTPOINT_BYTES)?);
    }
    if !r.buf.is_empty() {
        return Err(r.corrupt(format!("{} trailing bytes", r.buf.len())));
    }
    Ok(ops)
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    key: &'a str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            key: self.key.to_owned(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], StorageError> {
        if self.buf.len() < n {
            return Err(self.corrupt(format!(
                "truncated: want {n} bytes, {} left",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StorageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, StorageError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, StorageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bytes(&mut self, what: &'static str, max: usize) -> Result<Vec<u8>, StorageError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.corrupt(format!("{what} length {len} above {max}")));
        }
        Ok(self.take(len)?.to_vec())
    }

    fn string(&mut self, what: &'static str) -> Result<String, StorageError> {
        let b = self.bytes(what, super::keys::MAX_ADDRESS_BYTES)?;
        String::from_utf8(b).map_err(|_| self.corrupt(format!("{what} not utf-8")))
    }

    fn count(&mut self, what: &'static str, budget: &mut usize) -> Result<usize, StorageError> {
        let n = self.u32()? as usize;
        if n > *budget {
            return Err(self.corrupt(format!("{what} count {n} above remaining {budget}")));
        }
        *budget -= n;
        Ok(n)
    }
}

/// Decodes an entry read from `key`.
pub(crate) fn decode_entry(key: &str, buf: &[u8]) -> Result<Entry, StorageError> {
    let mut r = Reader { key, buf };
    let version = r.array::<1>()?[0];
    if version != ENTRY_VERSION {
        return Err(r.corrupt(format!("entry version {version}, expected {ENTRY_VERSION}")));
    }
    let height = r.u64()?;
    let block = r.bytes("block", MAX_BLOCK_BYTES)?;
    let block_record = r.bytes("block record", MAX_VALUE_BYTES)?;
    let commitment = r.bytes("commitment", MAX_VALUE_BYTES)?;
    let supply = r.u64()?;
    let mut budget = MAX_ITEMS;
    let mut c = BlockChange {
        block_record,
        commitment,
        supply,
        ..BlockChange::default()
    };
    for _ in 0..r.count("created", &mut budget)? {
        c.created.push(CreatedOutput {
            outpoint: r.bytes("outpoint", MAX_OUTPOINT_BYTES)?,
            amount: r.u64()?,
            output: r.bytes("output", MAX_VALUE_BYTES)?,
        });
    }
    for _ in 0..r.count("spent", &mut budget)? {
        c.spent.push(SpentOutput {
            outpoint: r.bytes("outpoint", MAX_OUTPOINT_BYTES)?,
        });
    }
    for _ in 0..r.count("spent in block", &mut budget)? {
        c.spent_in_block
            .push(r.bytes("outpoint", MAX_OUTPOINT_BYTES)?);
    }
    for _ in 0..r.count("history", &mut budget)? {
        c.history.push(HistoryItem {
            address: r.string("address")?,
            seq: r.u64()?,
            entry: r.bytes("history entry", MAX_VALUE_BYTES)?,
        });
    }
    for _ in 0..r.count("txs", &mut budget)? {
        c.txs.push(TxItem {
            txid: r.array::<32>()?,
            record: r.bytes("tx record", MAX_VALUE_BYTES)?,
        });
    }
    for _ in 0..r.count("mints", &mut budget)? {
        let m: Txid = r.array()?;
        c.mints.push(m);
    }
    for _ in 0..r.count("rejected", &mut budget)? {
        let t: Txid = r.array()?;
        c.rejected.push(t);
    }
    c.spent_from = r.u64()?;
    if !r.buf.is_empty() {
        return Err(r.corrupt(format!("{} trailing bytes", r.buf.len())));
    }
    Ok(Entry {
        height,
        block,
        change: c,
    })
}

/// A UTXO index value: `amount u64 | output`.
pub(crate) fn encode_utxo_value(amount: u64, output: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + output.len());
    v.extend_from_slice(&amount.to_be_bytes());
    v.extend_from_slice(output);
    v
}

pub(crate) fn decode_utxo_value(key: &str, v: &[u8]) -> Result<(u64, Vec<u8>), StorageError> {
    let mut r = Reader { key, buf: v };
    let amount = r.u64()?;
    Ok((amount, r.buf.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> BlockChange {
        BlockChange {
            created: vec![CreatedOutput {
                outpoint: vec![1; 36],
                amount: 50,
                output: vec![9, 9],
            }],
            spent: vec![SpentOutput {
                outpoint: vec![2; 36],
            }],
            spent_in_block: vec![vec![4; 36]],
            history: vec![HistoryItem {
                address: "cof1abc".into(),
                seq: 3,
                entry: vec![5],
            }],
            txs: vec![TxItem {
                txid: [3; 32],
                record: vec![4, 4],
            }],
            mints: vec![[6; 32]],
            rejected: vec![[5; 32], [2; 32]],
            block_record: vec![8; 10],
            commitment: vec![7; 80],
            supply: 1_000,
            spent_from: 5,
        }
    }

    #[test]
    fn entry_round_trips() {
        let c = sample();
        let bytes = encode_entry(7, b"block", &c);
        let e = decode_entry("k", &bytes).expect("decodes");
        assert_eq!(e.height, 7);
        assert_eq!(e.block, b"block");
        assert_eq!(e.change, c);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = encode_entry(7, b"block", &sample());
        for cut in 0..bytes.len() {
            assert!(
                decode_entry("k", &bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode_entry("k", &longer),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn outpoint_lists_round_trip_and_reject_damage() {
        let ops = [vec![1u8; 36], vec![2u8; 36], vec![]];
        let refs: Vec<&[u8]> = ops.iter().map(Vec::as_slice).collect();
        let bytes = encode_outpoints(&refs);
        assert_eq!(decode_outpoints("k", &bytes).expect("decodes"), ops);
        for cut in 0..bytes.len() {
            assert!(decode_outpoints("k", &bytes[..cut]).is_err(), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_outpoints("k", &longer).is_err());
        let mut huge = bytes;
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_outpoints("k", &huge),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        let mut bytes = encode_entry(7, b"", &BlockChange::default());
        // The created count follows the header: version, height, empty block, empty record,
        // empty commitment, supply.
        let at = 1 + 8 + 4 + 4 + 4 + 8;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_entry("k", &bytes),
            Err(StorageError::Corrupt { .. })
        ));
    }
}
