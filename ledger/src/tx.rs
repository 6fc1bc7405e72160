//! Transactions: outpoints, outputs and locks, transfers and mints, their canonical encoding,
//! txids and the domain-separated messages their signatures cover.
//!
//! A [`Transaction`] carries its chain id, so its txid differs on every chain; the signed message
//! additionally carries a per-kind tag and the chain id ([`Transaction::sighash`]), so a
//! signature can never be replayed on another chain or as another kind of message.

use crate::amount::Amount;
use crate::encoding::{
    DecodeError, HARD_MAX_BLOCK_TXS, HARD_MAX_INPUTS, HARD_MAX_OUTPUTS, HARD_MAX_TX_BYTES, Reader,
    Writer, decode_exact, encode_to_vec,
};
use crate::hash::{Hash32, Txid, tagged_hash, tags};
use crate::keys::{Address, KeyParser, Keypair, ParseEveryKey, PublicKey, Signature};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID_LEN: usize = 32;

/// Identifies one Coffer network (e.g. `coffer-devnet`). 1 to 32 characters from `[a-z0-9-]`.
/// JSON: the string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChainId(String);

impl ChainId {
    /// Validates and wraps a chain id.
    pub fn new(s: impl Into<String>) -> Result<Self, DecodeError> {
        let s = s.into();
        let ok_len = (1..=MAX_CHAIN_ID_LEN).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok_len && ok_chars {
            Ok(ChainId(s))
        } else {
            Err(DecodeError::Invalid {
                what: "chain id",
                reason: format!("{s:?} is not 1..={MAX_CHAIN_ID_LEN} characters of [a-z0-9-]"),
            })
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn len_u8(&self) -> u8 {
        u8::try_from(self.0.len()).expect("chain id length checked in ChainId::new, at most 32")
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.len_u8());
        w.bytes(self.0.as_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8("chain id length")?);
        let bytes = r.take(len, "chain id")?;
        let s = std::str::from_utf8(bytes).map_err(|_| DecodeError::Invalid {
            what: "chain id",
            reason: "not utf-8".into(),
        })?;
        ChainId::new(s)
    }
}

impl TryFrom<String> for ChainId {
    type Error = DecodeError;
    fn try_from(s: String) -> Result<Self, DecodeError> {
        ChainId::new(s)
    }
}

impl From<ChainId> for String {
    fn from(c: ChainId) -> String {
        c.0
    }
}

impl FromStr for ChainId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, DecodeError> {
        ChainId::new(s)
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainId({})", self.0)
    }
}

/// A reference to one output of an earlier transaction. Encoding: `txid[32] || vout u32le`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutPoint {
    /// The transaction that created the output.
    pub txid: Txid,
    /// Index into that transaction's outputs.
    pub vout: u32,
}

impl OutPoint {
    /// The canonical encoding as a standalone value (e.g. a storage key or value).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_to_vec(|w| self.encode(w))
    }

    /// Decodes a value that occupies all of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(bytes, Self::decode)
    }

    /// Encoded size.
    pub const ENCODED_LEN: usize = 36;

    /// Appends the canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.txid.0);
        w.u32(self.vout);
    }

    /// Reads the canonical encoding.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OutPoint {
            txid: Txid(r.array("outpoint txid")?),
            vout: r.u32("outpoint vout")?,
        })
    }
}

impl fmt::Display for OutPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.txid, self.vout)
    }
}

/// The condition for spending an output. An enum so that new spending conditions (multisig,
/// timelocks) can be added with new tags without changing existing encodings.
///
/// JSON: `{"address": "coffer1..."}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Lock {
    /// Spendable by a transfer signed by the key whose address this is. Tag `0x00`.
    Address(Address),
}

impl Lock {
    /// Smallest encoded size of any lock.
    pub const MIN_ENCODED_LEN: usize = 33;

    /// The owning address, used by the per-address indexes.
    pub fn address(&self) -> Address {
        match self {
            Lock::Address(a) => *a,
        }
    }

    /// Appends the canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Lock::Address(a) => {
                w.u8(0x00);
                w.bytes(&a.0);
            }
        }
    }

    /// Reads the canonical encoding.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("lock tag")? {
            0x00 => Ok(Lock::Address(Address(r.array("lock address")?))),
            tag => Err(DecodeError::UnknownTag { what: "lock", tag }),
        }
    }
}

/// An output: an amount and the lock that guards it. Encoding: `amount u64le || lock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxOut {
    /// Value in base units.
    pub amount: Amount,
    /// Who may spend it.
    pub lock: Lock,
}

impl TxOut {
    /// The canonical encoding as a standalone value (e.g. a storage key or value).
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_to_vec(|w| self.encode(w))
    }

    /// Decodes a value that occupies all of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(bytes, Self::decode)
    }

    /// Smallest encoded size.
    pub const MIN_ENCODED_LEN: usize = 8 + Lock::MIN_ENCODED_LEN;

    /// An output paying `amount` to `address`.
    pub fn to_address(amount: Amount, address: Address) -> Self {
        TxOut {
            amount,
            lock: Lock::Address(address),
        }
    }

    /// Appends the canonical encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.amount.0);
        self.lock.encode(w);
    }

    /// Reads the canonical encoding.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxOut {
            amount: Amount(r.u64("output amount")?),
            lock: Lock::decode(r)?,
        })
    }
}

/// Moves money: spends outputs locked to `signer`'s address, creates new outputs.
///
/// Value is conserved exactly: the outputs must sum to the inputs (there are no fees).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "TransferFields")]
pub struct Transfer {
    /// The network this transfer is for.
    pub chain_id: ChainId,
    /// The key that signs; every input must be locked to its address.
    pub signer: PublicKey,
    /// Outputs spent (at least one, no duplicates).
    pub inputs: Vec<OutPoint>,
    /// Outputs created (at least one, each amount > 0).
    pub outputs: Vec<TxOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferFields {
    chain_id: ChainId,
    signer: PublicKey,
    inputs: Vec<OutPoint>,
    outputs: Vec<TxOut>,
}

impl TryFrom<TransferFields> for Transfer {
    type Error = DecodeError;
    fn try_from(f: TransferFields) -> Result<Self, DecodeError> {
        // JSON input must respect the same hard ceilings as binary input, so that every
        // `Transfer` that exists can be encoded.
        check_len("inputs", f.inputs.len(), HARD_MAX_INPUTS)?;
        check_len("outputs", f.outputs.len(), HARD_MAX_OUTPUTS)?;
        Ok(Transfer {
            chain_id: f.chain_id,
            signer: f.signer,
            inputs: f.inputs,
            outputs: f.outputs,
        })
    }
}

/// Creates money (`createMoney`): valid only when signed by an issuer key listed in the genesis.
///
/// Conditions (checked in this order, see [`crate::validate`]): the issuer is in the genesis;
/// at least one output, each with amount > 0; the outputs' sum fits in [`crate::MAX_SUPPLY`]; the
/// total supply after the mint stays within the genesis `supply_cap`; the mint's txid was never
/// accepted before (replay protection: the issuer picks a fresh `nonce` for every mint, and the
/// ledger remembers every accepted mint txid, rejecting a repeat with `mint_replayed`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "MintFields")]
pub struct Mint {
    /// The network this mint is for.
    pub chain_id: ChainId,
    /// The issuer key that signs.
    pub issuer: PublicKey,
    /// Chosen by the issuer to make each mint's txid unique.
    pub nonce: u64,
    /// Outputs created.
    pub outputs: Vec<TxOut>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintFields {
    chain_id: ChainId,
    issuer: PublicKey,
    nonce: u64,
    outputs: Vec<TxOut>,
}

impl TryFrom<MintFields> for Mint {
    type Error = DecodeError;
    fn try_from(f: MintFields) -> Result<Self, DecodeError> {
        check_len("outputs", f.outputs.len(), HARD_MAX_OUTPUTS)?;
        Ok(Mint {
            chain_id: f.chain_id,
            issuer: f.issuer,
            nonce: f.nonce,
            outputs: f.outputs,
        })
    }
}

fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        Err(DecodeError::TooLong { what, len, max })
    } else {
        Ok(())
    }
}

/// The unsigned transaction. JSON: internally tagged, `{"type": "transfer", ...}` or
/// `{"type": "mint", ...}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Transaction {
    /// Tag `0x01`.
    Transfer(Transfer),
    /// Tag `0x02`.
    Mint(Mint),
}

const TAG_TRANSFER: u8 = 0x01;
const TAG_MINT: u8 = 0x02;

impl Transaction {
    /// The chain this transaction is for.
    pub fn chain_id(&self) -> &ChainId {
        match self {
            Transaction::Transfer(t) => &t.chain_id,
            Transaction::Mint(m) => &m.chain_id,
        }
    }

    /// The key whose signature authorises it (signer or issuer).
    pub fn signer(&self) -> &PublicKey {
        match self {
            Transaction::Transfer(t) => &t.signer,
            Transaction::Mint(m) => &m.issuer,
        }
    }

    /// Outputs created.
    pub fn outputs(&self) -> &[TxOut] {
        match self {
            Transaction::Transfer(t) => &t.outputs,
            Transaction::Mint(m) => &m.outputs,
        }
    }

    /// Outputs spent (empty for a mint).
    pub fn inputs(&self) -> &[OutPoint] {
        match self {
            Transaction::Transfer(t) => &t.inputs,
            Transaction::Mint(_) => &[],
        }
    }

    /// Appends the canonical encoding (see `ENCODING.md`).
    ///
    /// # Panics
    /// If a list exceeds the decoder's hard ceilings; transactions obtained by decoding or from
    /// JSON never do, so only hand-built transactions can trip this.
    pub fn encode_into(&self, w: &mut Writer) {
        match self {
            Transaction::Transfer(t) => {
                w.u8(TAG_TRANSFER);
                t.chain_id.encode(w);
                w.bytes(&t.signer.to_bytes());
                assert!(
                    t.inputs.len() <= HARD_MAX_INPUTS,
                    "too many inputs to encode"
                );
                w.count_u16(t.inputs.len());
                for i in &t.inputs {
                    i.encode(w);
                }
                encode_outputs(w, &t.outputs);
            }
            Transaction::Mint(m) => {
                w.u8(TAG_MINT);
                m.chain_id.encode(w);
                w.bytes(&m.issuer.to_bytes());
                w.u64(m.nonce);
                encode_outputs(w, &m.outputs);
            }
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_to_vec(|w| self.encode_into(w))
    }

    /// Reads one transaction from `r` (not requiring end of input).
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::decode_from_with(r, &ParseEveryKey)
    }

    /// [`decode_from`](Self::decode_from), with the signer's or issuer's key parsed by `keys`.
    pub fn decode_from_with(
        r: &mut Reader<'_>,
        keys: &impl KeyParser,
    ) -> Result<Self, DecodeError> {
        match r.u8("transaction tag")? {
            TAG_TRANSFER => {
                let chain_id = ChainId::decode(r)?;
                let signer = decode_key(r, "transfer signer", keys)?;
                let n = r.count_u16("inputs", HARD_MAX_INPUTS, OutPoint::ENCODED_LEN)?;
                let mut inputs = Vec::with_capacity(n);
                for _ in 0..n {
                    inputs.push(OutPoint::decode(r)?);
                }
                let outputs = decode_outputs(r)?;
                Ok(Transaction::Transfer(Transfer {
                    chain_id,
                    signer,
                    inputs,
                    outputs,
                }))
            }
            TAG_MINT => {
                let chain_id = ChainId::decode(r)?;
                let issuer = decode_key(r, "mint issuer", keys)?;
                let nonce = r.u64("mint nonce")?;
                let outputs = decode_outputs(r)?;
                Ok(Transaction::Mint(Mint {
                    chain_id,
                    issuer,
                    nonce,
                    outputs,
                }))
            }
            tag => Err(DecodeError::UnknownTag {
                what: "transaction",
                tag,
            }),
        }
    }

    /// Decodes exactly one transaction occupying all of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_exact(bytes, Transaction::decode_from)
    }

    /// The transaction id: `tagged_hash("coffer/txid", encode(tx))`.
    pub fn txid(&self) -> Txid {
        Txid(tagged_hash(tags::TXID, &[&self.encode()]))
    }

    /// The 32-byte message the signer signs:
    /// `tagged_hash(kind_tag, chain_id_len u8 || chain_id || txid)` where `kind_tag` is
    /// `coffer/sig/transfer` or `coffer/sig/mint`.
    pub fn sighash(&self) -> [u8; 32] {
        sighash_for(self, &self.txid())
    }

    /// Signs with fresh auxiliary randomness.
    pub fn sign(self, key: &Keypair) -> SignedTransaction {
        let signature = key.sign_msg(&self.sighash());
        SignedTransaction {
            tx: self,
            signature,
        }
    }

    /// Signs deterministically with the given BIP340 auxiliary randomness (tests, vectors).
    pub fn sign_with_aux(self, key: &Keypair, aux_rand: &[u8; 32]) -> SignedTransaction {
        let signature = key.sign_msg_with_aux(&self.sighash(), aux_rand);
        SignedTransaction {
            tx: self,
            signature,
        }
    }
}

fn sighash_for(tx: &Transaction, txid: &Txid) -> [u8; 32] {
    let tag = match tx {
        Transaction::Transfer(_) => tags::SIG_TRANSFER,
        Transaction::Mint(_) => tags::SIG_MINT,
    };
    let chain = tx.chain_id().as_str().as_bytes();
    let len = [tx.chain_id().len_u8()];
    tagged_hash(tag, &[&len, chain, &txid.0])
}

fn encode_outputs(w: &mut Writer, outputs: &[TxOut]) {
    assert!(
        outputs.len() <= HARD_MAX_OUTPUTS,
        "too many outputs to encode"
    );
    w.count_u16(outputs.len());
    for o in outputs {
        o.encode(w);
    }
}

fn decode_outputs(r: &mut Reader<'_>) -> Result<Vec<TxOut>, DecodeError> {
    let n = r.count_u16("outputs", HARD_MAX_OUTPUTS, TxOut::MIN_ENCODED_LEN)?;
    let mut outputs = Vec::with_capacity(n);
    for _ in 0..n {
        outputs.push(TxOut::decode(r)?);
    }
    Ok(outputs)
}

fn decode_key(
    r: &mut Reader<'_>,
    what: &'static str,
    keys: &impl KeyParser,
) -> Result<PublicKey, DecodeError> {
    keys.parse_key(r.array(what)?)
        .map_err(|e| DecodeError::Invalid {
            what,
            reason: e.to_string(),
        })
}

/// A transaction with its BIP340 signature over [`Transaction::sighash`].
///
/// Encoding: `encode(tx) || signature[64]`. JSON: `{"tx": {...}, "signature": "hex"}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTransaction {
    /// The transaction.
    pub tx: Transaction,
    /// Signature by `tx.signer()`.
    pub signature: Signature,
}

impl SignedTransaction {
    /// The HTTP media type under which the REST API accepts a transaction in its canonical
    /// encoding ([`SignedTransaction::encode`]).
    pub const MEDIA_TYPE: &'static str = "application/octet-stream";

    /// The txid (signature excluded, so it cannot be malleated by re-signing).
    pub fn txid(&self) -> Txid {
        self.tx.txid()
    }

    /// Appends the canonical encoding.
    pub fn encode_into(&self, w: &mut Writer) {
        self.tx.encode_into(w);
        w.bytes(&self.signature.to_bytes());
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode_to_vec(|w| self.encode_into(w))
    }

    /// Decodes exactly one signed transaction occupying all of `bytes`. Refuses inputs longer
    /// than [`HARD_MAX_TX_BYTES`] before reading them.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(bytes, &ParseEveryKey)
    }

    /// [`decode`](Self::decode), with the signer's or issuer's key parsed by `keys` (a replica
    /// passes its cache of parsed keys).
    pub fn decode_with(bytes: &[u8], keys: &impl KeyParser) -> Result<Self, DecodeError> {
        if bytes.len() > HARD_MAX_TX_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: HARD_MAX_TX_BYTES,
            });
        }
        decode_exact(bytes, |r| {
            let tx = Transaction::decode_from_with(r, keys)?;
            let signature = Signature::from_bytes(r.array("signature")?);
            Ok(SignedTransaction { tx, signature })
        })
    }

    /// Hash of the full encoding including the signature (what a block commits to).
    pub fn wtxid(&self) -> Hash32 {
        Hash32(tagged_hash(tags::WTXID, &[&self.encode()]))
    }

    /// Checks the signature against `tx.signer()` over the chain- and kind-separated sighash.
    /// Pure cryptography: issuer membership and chain id are checked by [`crate::validate`].
    pub fn verify_signature(&self) -> bool {
        self.verify_signature_with_txid(&self.txid())
    }

    /// [`verify_signature`](Self::verify_signature) with the txid already known (it must be
    /// this transaction's: [`IdentifiedTx::txid`], say).
    pub fn verify_signature_with_txid(&self, txid: &Txid) -> bool {
        self.tx
            .signer()
            .verify(&sighash_for(&self.tx, txid), &self.signature)
    }
}

/// A signed transaction with its txid and wtxid, computed once when it is made, so that
/// whoever checks, applies or looks it up does not encode and hash it again.
///
/// Both ids come from the canonical encoding, `encode(tx) || signature[64]`: the wtxid hashes
/// all of it, the txid all but the signature. Decoding from bytes hashes those very bytes,
/// which decoding proves canonical (a successful decode encodes back to its input), so no
/// encoding happens at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifiedTx {
    stx: SignedTransaction,
    txid: Txid,
    wtxid: Hash32,
}

impl IdentifiedTx {
    /// `stx` with its ids (encodes it once).
    pub fn new(stx: SignedTransaction) -> Self {
        Self::encoded(stx).0
    }

    /// `stx` with its ids, and its canonical encoding.
    pub fn encoded(stx: SignedTransaction) -> (Self, Vec<u8>) {
        let bytes = stx.encode();
        (Self::with_encoding(stx, &bytes), bytes)
    }

    /// Decodes like [`SignedTransaction::decode_with`] and takes the ids from `bytes`.
    pub fn decode_with(bytes: &[u8], keys: &impl KeyParser) -> Result<Self, DecodeError> {
        let stx = SignedTransaction::decode_with(bytes, keys)?;
        Ok(Self::with_encoding(stx, bytes))
    }

    /// `encoding` must be `stx`'s canonical encoding.
    fn with_encoding(stx: SignedTransaction, encoding: &[u8]) -> Self {
        debug_assert_eq!(stx.encode(), encoding, "the encoding is canonical");
        let (txid, wtxid) = ids_of_encoding(encoding);
        Self { stx, txid, wtxid }
    }

    /// The transaction.
    pub fn stx(&self) -> &SignedTransaction {
        &self.stx
    }

    /// Its txid ([`SignedTransaction::txid`]).
    pub fn txid(&self) -> Txid {
        self.txid
    }

    /// Its wtxid ([`SignedTransaction::wtxid`]).
    pub fn wtxid(&self) -> Hash32 {
        self.wtxid
    }

    /// The transaction, ids dropped.
    pub fn into_stx(self) -> SignedTransaction {
        self.stx
    }
}

/// Bytes of a BIP340 signature at the end of a signed transaction's encoding.
const SIGNATURE_LEN: usize = 64;

/// The txid and wtxid of a signed transaction, from its canonical encoding.
pub(crate) fn ids_of_encoding(encoding: &[u8]) -> (Txid, Hash32) {
    let unsigned = &encoding[..encoding.len().saturating_sub(SIGNATURE_LEN)];
    (
        Txid(tagged_hash(tags::TXID, &[unsigned])),
        Hash32(tagged_hash(tags::WTXID, &[encoding])),
    )
}

/// An ordered batch of transactions at a height: what [`crate::LedgerState::apply`] consumes.
/// The consensus layer wraps it with its own parent and view fields.
///
/// Encoding: `height u64le || count u32le || (len u32le || signed_tx)*`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Block {
    /// Must be the ledger's height + 1.
    pub height: u64,
    /// Applied in order.
    pub txs: Vec<SignedTransaction>,
}

impl Block {
    /// The canonical encoding.
    ///
    /// # Panics
    /// If the block holds more than [`HARD_MAX_BLOCK_TXS`] transactions.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.txs.len() <= HARD_MAX_BLOCK_TXS,
            "too many transactions to encode"
        );
        let encoded: Vec<Vec<u8>> = self.txs.iter().map(SignedTransaction::encode).collect();
        let txs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        Self::encode_encoded(self.height, &txs)
    }

    /// [`encode`](Self::encode) of the block at `height` whose transactions have these
    /// canonical encodings, in order (a replica holds them as received).
    ///
    /// # Panics
    /// If there are more than [`HARD_MAX_BLOCK_TXS`] transactions.
    pub fn encode_encoded(height: u64, txs: &[&[u8]]) -> Vec<u8> {
        assert!(
            txs.len() <= HARD_MAX_BLOCK_TXS,
            "too many transactions to encode"
        );
        let mut w = Writer::new();
        w.u64(height);
        w.count_u32(txs.len());
        for bytes in txs {
            w.count_u32(bytes.len());
            w.bytes(bytes);
        }
        w.into_bytes()
    }

    /// Decodes a block occupying all of `bytes`; each transaction must fill its length prefix
    /// exactly.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let height = r.u64("block height")?;
        // Smallest signed transaction: an empty transfer, 1 + 2 + 32 + 2 + 2 + 64 = 103 bytes,
        // plus its length prefix.
        let n = r.count_u32("block transactions", HARD_MAX_BLOCK_TXS, 4 + 103)?;
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::try_from(r.u32("transaction length")?).unwrap_or(usize::MAX);
            if len > HARD_MAX_TX_BYTES {
                return Err(DecodeError::TooLarge {
                    len,
                    max: HARD_MAX_TX_BYTES,
                });
            }
            txs.push(SignedTransaction::decode(r.take(len, "transaction")?)?);
        }
        r.finish()?;
        Ok(Block { height, txs })
    }

    /// Commitment to the ordered, signed transactions:
    /// `tagged_hash("coffer/block-txs", count u32le || wtxid*)`.
    pub fn txs_hash(&self) -> Hash32 {
        let wtxids: Vec<Hash32> = self.txs.iter().map(SignedTransaction::wtxid).collect();
        txs_hash_from_wtxids(&wtxids)
    }
}

/// [`Block::txs_hash`] from precomputed wtxids.
pub(crate) fn txs_hash_from_wtxids(wtxids: &[Hash32]) -> Hash32 {
    let mut data = Vec::with_capacity(4 + 32 * wtxids.len());
    let count = u32::try_from(wtxids.len()).unwrap_or(u32::MAX);
    data.extend_from_slice(&count.to_le_bytes());
    for w in wtxids {
        data.extend_from_slice(&w.0);
    }
    Hash32(tagged_hash(tags::BLOCK_TXS, &[&data]))
}
