//! The canonical binary encoding: primitives shared by every signed or hashed structure.
//!
//! The full layout is specified in `ledger/ENCODING.md`. Properties the decoder enforces:
//! integers are fixed-width little-endian (so there is exactly one encoding of each value),
//! list lengths are bounded before anything is allocated, enum tags outside the defined set are
//! refused, public keys must be valid curve points, and input must be consumed exactly (no
//! trailing bytes). Hence `encode(decode(b)) == b` for every `b` that decodes.

/// Hard ceiling on an encoded signed transaction, whatever the genesis says (decoder bound).
pub const HARD_MAX_TX_BYTES: usize = 1 << 20;
/// Hard ceiling on inputs in one transaction, whatever the genesis says (decoder bound).
pub const HARD_MAX_INPUTS: usize = 4096;
/// Hard ceiling on outputs in one transaction, whatever the genesis says (decoder bound).
pub const HARD_MAX_OUTPUTS: usize = 4096;
/// Hard ceiling on transactions in one block, whatever the genesis says (decoder bound).
pub const HARD_MAX_BLOCK_TXS: usize = 100_000;

/// Why bytes were refused by a decoder. Every variant maps to a [`crate::RejectCode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ended inside a field.
    #[error("unexpected end of input at offset {offset} reading {what}")]
    UnexpectedEnd {
        /// Byte offset where the field started.
        offset: usize,
        /// Which field.
        what: &'static str,
    },
    /// Bytes left over after a complete value.
    #[error("{count} trailing bytes after a complete value")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// A tag byte outside the defined set.
    #[error("unknown {what} tag {tag:#04x}")]
    UnknownTag {
        /// Which enum.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A list longer than the hard ceiling for its kind.
    #[error("{what} list has {len} entries, more than the limit {max}")]
    TooLong {
        /// Which list.
        what: &'static str,
        /// Length found.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// The whole input exceeds the hard size ceiling.
    #[error("input is {len} bytes, more than the limit {max}")]
    TooLarge {
        /// Size found.
        len: usize,
        /// Maximum allowed.
        max: usize,
    },
    /// A field whose bytes are well-formed but whose value is not allowed (bad key, bad chain id).
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// Appends canonical encodings to a byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// Raw bytes with no length prefix (fixed-size fields).
    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// A list count as `u16`. Callers only encode lists that passed the hard ceilings, all of
    /// which are below `u16::MAX`; a longer list is a programming error.
    pub fn count_u16(&mut self, len: usize) {
        let v = u16::try_from(len).expect("list length checked against a hard ceiling below 2^16");
        self.u16(v);
    }

    /// A list count as `u32` (block transaction lists).
    pub fn count_u32(&mut self, len: usize) {
        let v = u32::try_from(len).expect("list length checked against a hard ceiling below 2^32");
        self.u32(v);
    }
}

/// Reads canonical encodings from a byte slice, never panicking on any input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEnd {
                offset: self.pos,
                what,
            });
        }
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// Little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// Little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// Little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u16` list count, refused if above `max` or if the remaining input cannot hold that
    /// many entries of at least `min_entry_bytes` each (so a forged count never drives an
    /// allocation).
    pub fn count_u16(
        &mut self,
        what: &'static str,
        max: usize,
        min_entry_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let len = usize::from(self.u16(what)?);
        self.check_count(what, len, max, min_entry_bytes)
    }

    /// A `u32` list count with the same checks as [`Reader::count_u16`].
    pub fn count_u32(
        &mut self,
        what: &'static str,
        max: usize,
        min_entry_bytes: usize,
    ) -> Result<usize, DecodeError> {
        let len = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        self.check_count(what, len, max, min_entry_bytes)
    }

    fn check_count(
        &self,
        what: &'static str,
        len: usize,
        max: usize,
        min_entry_bytes: usize,
    ) -> Result<usize, DecodeError> {
        if len > max {
            return Err(DecodeError::TooLong { what, len, max });
        }
        if len.saturating_mul(min_entry_bytes) > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                offset: self.pos,
                what,
            });
        }
        Ok(len)
    }
}

/// The bytes `encode` appends to an empty [`Writer`]: a value's encoding on its own.
pub(crate) fn encode_to_vec(encode: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    encode(&mut w);
    w.into_bytes()
}

/// Reads one value with `decode` and refuses any bytes left after it: the value must occupy
/// all of `bytes`.
pub(crate) fn decode_exact<'a, T>(
    bytes: &'a [u8],
    decode: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let v = decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_little_endian_fixed_width() {
        let mut w = Writer::new();
        w.u8(1);
        w.u16(0x0203);
        w.u32(0x0405_0607);
        w.u64(0x0809_0a0b_0c0d_0e0f);
        let bytes = w.into_bytes();
        assert_eq!(
            bytes,
            [
                1, 3, 2, 7, 6, 5, 4, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 9, 8
            ]
        );
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a"), Ok(1));
        assert_eq!(r.u16("b"), Ok(0x0203));
        assert_eq!(r.u32("c"), Ok(0x0405_0607));
        assert_eq!(r.u64("d"), Ok(0x0809_0a0b_0c0d_0e0f));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn reader_refuses_short_input_trailing_bytes_and_forged_counts() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert!(matches!(r.u32("x"), Err(DecodeError::UnexpectedEnd { .. })));
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x"), Ok(0x0201));
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { count: 1 }));
        // Count 5 over the limit 4.
        let mut r = Reader::new(&[5, 0]);
        assert!(matches!(
            r.count_u16("l", 4, 1),
            Err(DecodeError::TooLong { len: 5, .. })
        ));
        // Count 3 within the limit but only 2 bytes follow for 1-byte entries.
        let mut r = Reader::new(&[3, 0, 9, 9]);
        assert!(matches!(
            r.count_u16("l", 4, 1),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.count_u32("l", 10, 1),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
