//! Signed statements: what replicas sign so that a client need not trust the replica it talks to.
//!
//! After executing a block each replica attests a [`ReceiptStatement`] per transaction, with one
//! signature for the whole block: it signs the Merkle root of the block's receipts
//! ([`sign_receipts`]) and each receipt carries its [`InclusionProof`]. A verifier that has
//! checked one root signature checks the block's other receipts by hashing alone
//! ([`ReplicaSet::verify`] remembers verified roots). For reads
//! (balance, UTXOs, history, supply) it signs a [`ReadStatement`] binding the query and the
//! result to a height and the state commitment at that height. A client accepts a result once
//! [`verify_quorum`] finds at least `f+1` distinct genesis replicas that signed byte-identical
//! statements: at most `f` replicas are faulty, so at least one honest replica vouches for it.
//!
//! Every statement has one canonical encoding that starts with its own domain tag
//! ([`RECEIPT_DOMAIN`], [`READ_DOMAIN`]) followed by the chain id, so a signature on a receipt
//! can never pass for a read statement, nor a statement of one network for another's. The
//! encodings are pinned by golden vectors in the tests below.
//!
//! Pure: no I/O, no clock. Byte fields are plain arrays so that callers holding the ledger's
//! newtypes (`Txid`, `Hash32`, `ReplicaKey`) convert with `.to_bytes()` / `.0`.

use bitcoin_hashes::{HashEngine as _, sha256};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Domain tag of receipt statements. Part of the protocol: changing it changes every vector.
pub const RECEIPT_DOMAIN: &str = "coffer/receipt/v1";
/// Domain tag of a replica's signature over the Merkle root of one block's receipts.
pub const RECEIPTS_ROOT_DOMAIN: &str = "coffer/receipts-root/v1";
/// Tag of a receipt's leaf hash in that tree: `tagged_hash(RECEIPT_LEAF_TAG, encoding)`.
pub const RECEIPT_LEAF_TAG: &str = "coffer/receipt-leaf/v1";
/// Domain tag of read statements.
pub const READ_DOMAIN: &str = "coffer/read/v1";
/// Tag of the hash of a read query ([`ReadQuery::digest`]).
pub const READ_QUERY_TAG: &str = "coffer/read-query/v1";
/// Tag of the hash of a read result ([`ReadResult::digest`]).
pub const READ_RESULT_TAG: &str = "coffer/read-result/v1";

/// Longest chain id, as in the ledger's `ChainId`.
pub const MAX_CHAIN_ID_LEN: usize = 32;
/// Longest result code (`ok` or a ledger reject code).
pub const MAX_CODE_LEN: usize = 64;
/// Longest pagination cursor or address carried in a query.
pub const MAX_QUERY_FIELD_LEN: usize = 128;
/// Most attestations [`verify_quorum`] looks at: a gateway never has more than one per replica,
/// and the genesis allows at most 256 replicas. More is an attack on the verifier.
pub const MAX_ATTESTATIONS: usize = 1024;
/// Most entries a read result page may carry (the genesis caps pages far below this).
pub const MAX_PAGE_ENTRIES: usize = 100_000;
/// Result code of a transaction that was applied.
pub const CODE_OK: &str = "ok";

/// Why a statement or an attestation is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// Chain id empty, too long or outside `[a-z0-9-]`.
    #[error("bad chain id {0:?}: want 1..=32 characters of [a-z0-9-]")]
    BadChainId(String),
    /// Result code empty, too long or outside `[a-z0-9_]`.
    #[error("bad result code {0:?}: want 1..=64 characters of [a-z0-9_]")]
    BadCode(String),
    /// A query field (address, cursor) above [`MAX_QUERY_FIELD_LEN`].
    #[error("query field {what} is {len} bytes, above {MAX_QUERY_FIELD_LEN}")]
    FieldTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Bytes that do not decode as a statement.
    #[error("malformed statement: {0}")]
    Malformed(String),
    /// A public key that is not a valid ed25519 point.
    #[error("invalid replica public key {}", hex::encode(.0))]
    BadPublicKey([u8; 32]),
    /// The signature does not verify under the attesting key.
    #[error("signature by {} does not verify", hex::encode(.0))]
    BadSignature([u8; 32]),
    /// A replica set that is empty, too large or lists a key twice.
    #[error("bad replica set: {0}")]
    BadReplicaSet(String),
}

/// A statement that replicas sign. Its [`Statement::encode`] is the exact signed message.
pub trait Statement: Clone {
    /// The canonical encoding, domain tag first. Fails on fields that violate the limits, which
    /// only happens for statements decoded from untrusted JSON.
    fn encode(&self) -> Result<Vec<u8>, AttestError>;
    /// The chain the statement is about.
    fn chain_id(&self) -> &str;
    /// The message a replica signed when it attested this statement as one leaf of a Merkle
    /// tree (see [`InclusionProof`]). Only receipts have that form.
    fn proven_message(&self, proof: &InclusionProof) -> Result<Vec<u8>, AttestError> {
        let _ = proof;
        Err(AttestError::Malformed(
            "this kind of statement carries no inclusion proof".into(),
        ))
    }
}

/// "Transaction `txid` was executed in block `height` with result `code`; the state commitment
/// after that block is `commitment`."
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptStatement {
    /// Network identifier.
    pub chain_id: String,
    /// Transaction id. JSON: hex.
    #[serde(with = "hex_array")]
    pub txid: [u8; 32],
    /// Height of the block that holds the transaction.
    pub height: u64,
    /// [`CODE_OK`] or the ledger's snake_case reject code.
    pub code: String,
    /// State commitment after the block. JSON: hex.
    #[serde(with = "hex_array")]
    pub commitment: [u8; 32],
}

impl Statement for ReceiptStatement {
    fn encode(&self) -> Result<Vec<u8>, AttestError> {
        check_chain_id(&self.chain_id)?;
        check_code(&self.code)?;
        let mut w = Vec::with_capacity(128);
        put_str(&mut w, RECEIPT_DOMAIN);
        put_str(&mut w, &self.chain_id);
        w.extend_from_slice(&self.txid);
        w.extend_from_slice(&self.height.to_be_bytes());
        put_str(&mut w, &self.code);
        w.extend_from_slice(&self.commitment);
        Ok(w)
    }

    fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn proven_message(&self, proof: &InclusionProof) -> Result<Vec<u8>, AttestError> {
        let leaf = tagged_hash(RECEIPT_LEAF_TAG, &self.encode()?);
        let root = crate::merkle::root_from_path(leaf, proof.index, proof.count, &proof.path)
            .map_err(|e| AttestError::Malformed(format!("inclusion proof: {e}")))?;
        Ok(receipts_root_message(
            &self.chain_id,
            self.height,
            &self.commitment,
            proof.count,
            &root,
        ))
    }
}

/// `RECEIPTS_ROOT_DOMAIN || chain_id || height u64 || commitment[32] || count u32 || root[32]`:
/// what a replica signs for all receipts of block `height`. The count is part of it, so a proof
/// is only valid for the tree size the replica signed.
fn receipts_root_message(
    chain_id: &str,
    height: u64,
    commitment: &[u8; 32],
    count: u32,
    root: &[u8; 32],
) -> Vec<u8> {
    let mut w = Vec::with_capacity(128);
    put_str(&mut w, RECEIPTS_ROOT_DOMAIN);
    put_str(&mut w, chain_id);
    w.extend_from_slice(&height.to_be_bytes());
    w.extend_from_slice(commitment);
    w.extend_from_slice(&count.to_be_bytes());
    w.extend_from_slice(root);
    w
}

/// Where a receipt sits in its block's receipts tree: leaf `index` of `count`, and the sibling
/// hashes from the leaf up (see [`crate::merkle`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The receipt's position: its transaction's position in the block.
    pub index: u32,
    /// Receipts in the block.
    pub count: u32,
    /// Sibling hashes, bottom up. JSON: hex strings.
    #[serde(with = "hex_list")]
    pub path: Vec<[u8; 32]>,
}

/// Attests every receipt of one block with a single signature over their Merkle root, in block
/// order; each returned receipt carries its [`InclusionProof`]. All statements must name the
/// same chain, height and commitment. No statements, no signature.
pub fn sign_receipts(
    statements: Vec<ReceiptStatement>,
    key: &SigningKey,
) -> Result<Vec<Signed<ReceiptStatement>>, AttestError> {
    let Some(first) = statements.first() else {
        return Ok(Vec::new());
    };
    let (chain_id, height, commitment) = (first.chain_id.clone(), first.height, first.commitment);
    let mut leaves = Vec::with_capacity(statements.len());
    for s in &statements {
        if s.chain_id != chain_id || s.height != height || s.commitment != commitment {
            return Err(AttestError::Malformed(format!(
                "receipts of one block disagree on chain, height or commitment (height {} vs {height})",
                s.height
            )));
        }
        leaves.push(tagged_hash(RECEIPT_LEAF_TAG, &s.encode()?));
    }
    let count = u32::try_from(leaves.len()).unwrap_or(u32::MAX);
    let tree = crate::merkle::Tree::new(leaves).ok_or_else(|| {
        AttestError::Malformed(format!(
            "{} receipts in one block, above {}",
            statements.len(),
            crate::merkle::MAX_LEAVES
        ))
    })?;
    let message = receipts_root_message(&chain_id, height, &commitment, count, &tree.root());
    let signature = key.sign(&message).to_bytes();
    let replica = key.verifying_key().to_bytes();
    Ok(statements
        .into_iter()
        .enumerate()
        .map(|(i, statement)| Signed {
            statement,
            attestation: Attestation {
                replica,
                signature,
                proof: Some(InclusionProof {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    count,
                    path: tree.path(i).unwrap_or_default(),
                }),
            },
        })
        .collect())
}

/// Smallest binary receipt: a statement length, the shortest statement, key, signature, flag.
const MIN_BINARY_RECEIPT_BYTES: usize = 2 + 1 + 32 + 64 + 1;

/// Appends the binary form of a list of signed receipts to `out`: a count (u16), then per
/// receipt its statement's canonical encoding (u16 length first), the replica key, the
/// signature, and a flag byte: 0, or 1 followed by the inclusion proof (index u32, count u32,
/// path length u8, the path's hashes). Integers are big-endian. Replicas send each other
/// receipts in it, and a gateway answers a submission in it when asked: JSON with hex fields
/// costs several times more to write and to parse.
pub fn encode_receipt_list(
    receipts: &[Signed<ReceiptStatement>],
    out: &mut Vec<u8>,
) -> Result<(), AttestError> {
    let too_many = || AttestError::Malformed(format!("{} receipts in one list", receipts.len()));
    out.reserve(2 + receipts.len() * 200);
    out.extend_from_slice(
        &u16::try_from(receipts.len())
            .map_err(|_| too_many())?
            .to_be_bytes(),
    );
    for signed in receipts {
        let statement = signed.statement.encode()?;
        // A statement's fields are bounded far below 64 KiB (chain id, code: 255 bytes each).
        let len = u16::try_from(statement.len())
            .map_err(|_| AttestError::Malformed("statement above 64 KiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&statement);
        out.extend_from_slice(&signed.attestation.replica);
        out.extend_from_slice(&signed.attestation.signature);
        match &signed.attestation.proof {
            None => out.push(0),
            Some(proof) => {
                let depth = u8::try_from(proof.path.len())
                    .ok()
                    .filter(|d| usize::from(*d) <= crate::merkle::MAX_DEPTH)
                    .ok_or_else(|| {
                        AttestError::Malformed(format!("path of {} hashes", proof.path.len()))
                    })?;
                out.push(1);
                out.extend_from_slice(&proof.index.to_be_bytes());
                out.extend_from_slice(&proof.count.to_be_bytes());
                out.push(depth);
                for hash in &proof.path {
                    out.extend_from_slice(hash);
                }
            }
        }
    }
    Ok(())
}

/// Reads what [`encode_receipt_list`] wrote from the front of `bytes` and advances it past
/// the list. More than `max` receipts, truncation, a statement that is not canonical, a bad
/// flag or a path deeper than [`crate::merkle::MAX_DEPTH`] is an error; no input panics, and a
/// forged count never drives an allocation beyond what the input can hold.
pub fn decode_receipt_list(
    bytes: &mut &[u8],
    max: usize,
) -> Result<Vec<Signed<ReceiptStatement>>, AttestError> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], AttestError> {
        if rest.len() < n {
            return Err(AttestError::Malformed(format!(
                "receipt list truncated ({} < {n} bytes)",
                rest.len()
            )));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], AttestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(take(rest, N)?);
        Ok(out)
    }
    let count = usize::from(u16::from_be_bytes(array(bytes)?));
    if count > max {
        return Err(AttestError::Malformed(format!(
            "{count} receipts in one list, above {max}"
        )));
    }
    let mut receipts = Vec::with_capacity(count.min(bytes.len() / MIN_BINARY_RECEIPT_BYTES));
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(array(bytes)?));
        let statement = ReceiptStatement::decode(take(bytes, len)?)?;
        let replica = array(bytes)?;
        let signature = array(bytes)?;
        let proof = match array::<1>(bytes)? {
            [0] => None,
            [1] => {
                let index = u32::from_be_bytes(array(bytes)?);
                let count = u32::from_be_bytes(array(bytes)?);
                let [depth] = array::<1>(bytes)?;
                let depth = usize::from(depth);
                if depth > crate::merkle::MAX_DEPTH {
                    return Err(AttestError::Malformed(format!(
                        "inclusion path of {depth} hashes"
                    )));
                }
                let mut path = Vec::with_capacity(depth);
                for _ in 0..depth {
                    path.push(array(bytes)?);
                }
                Some(InclusionProof { index, count, path })
            }
            [other] => return Err(AttestError::Malformed(format!("proof flag {other}"))),
        };
        receipts.push(Signed {
            statement,
            attestation: Attestation {
                replica,
                signature,
                proof,
            },
        });
    }
    Ok(receipts)
}

impl ReceiptStatement {
    /// Decodes the canonical encoding; rejects trailing bytes and any other domain.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        decode_statement(bytes, RECEIPT_DOMAIN, |r| {
            Ok(ReceiptStatement {
                chain_id: r.string("chain id")?,
                txid: r.array("txid")?,
                height: u64::from_be_bytes(r.array("height")?),
                code: r.string("code")?,
                commitment: r.array("commitment")?,
            })
        })
    }
}

/// What a read statement is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadKind {
    /// Balance of an address.
    Balance = 1,
    /// A page of an address's unspent outputs.
    Utxos = 2,
    /// A page of an address's history, newest first.
    History = 3,
    /// Total supply.
    Supply = 4,
}

impl ReadKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(ReadKind::Balance),
            2 => Some(ReadKind::Utxos),
            3 => Some(ReadKind::History),
            4 => Some(ReadKind::Supply),
            _ => None,
        }
    }
}

/// "At height `height`, whose state commitment is `commitment`, the query hashing to
/// `query_digest` has the result hashing to `result_digest`."
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadStatement {
    /// Network identifier.
    pub chain_id: String,
    /// Height of the state that was read.
    pub height: u64,
    /// State commitment at that height. JSON: hex.
    #[serde(with = "hex_array")]
    pub commitment: [u8; 32],
    /// Kind of query, repeated outside the digest so that a client can see it.
    pub kind: ReadKind,
    /// [`ReadQuery::digest`]. JSON: hex.
    #[serde(with = "hex_array")]
    pub query_digest: [u8; 32],
    /// [`ReadResult::digest`]. JSON: hex.
    #[serde(with = "hex_array")]
    pub result_digest: [u8; 32],
}

impl Statement for ReadStatement {
    fn encode(&self) -> Result<Vec<u8>, AttestError> {
        check_chain_id(&self.chain_id)?;
        let mut w = Vec::with_capacity(160);
        put_str(&mut w, READ_DOMAIN);
        put_str(&mut w, &self.chain_id);
        w.extend_from_slice(&self.height.to_be_bytes());
        w.extend_from_slice(&self.commitment);
        w.push(self.kind as u8);
        w.extend_from_slice(&self.query_digest);
        w.extend_from_slice(&self.result_digest);
        Ok(w)
    }

    fn chain_id(&self) -> &str {
        &self.chain_id
    }
}

impl ReadStatement {
    /// Decodes the canonical encoding; rejects trailing bytes and any other domain.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        decode_statement(bytes, READ_DOMAIN, |r| {
            let chain_id = r.string("chain id")?;
            let height = u64::from_be_bytes(r.array("height")?);
            let commitment = r.array("commitment")?;
            let [kind] = r.array::<1>("kind")?;
            let kind = ReadKind::from_u8(kind)
                .ok_or_else(|| AttestError::Malformed(format!("unknown read kind {kind}")))?;
            Ok(ReadStatement {
                chain_id,
                height,
                commitment,
                kind,
                query_digest: r.array("query digest")?,
                result_digest: r.array("result digest")?,
            })
        })
    }

    /// Whether this statement answers `query` with `result`.
    pub fn answers(&self, query: &ReadQuery, result: &ReadResult) -> bool {
        self.kind == query.kind()
            && self.kind == result.kind()
            && Ok(self.query_digest) == query.digest()
            && Ok(self.result_digest) == result.digest()
    }
}

/// A read query, as the client asked it. Only its digest is signed.
///
/// JSON (how replicas forward a query to each other): `{"kind": "utxos", "address": ...,
/// "cursor": ..., "limit": ...}`. Unlike results, unknown fields are ignored, as they always
/// were on that channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReadQuery {
    /// Balance of `address` (bech32m string).
    Balance {
        /// The address as the client wrote it.
        address: String,
    },
    /// One page of `address`'s unspent outputs.
    Utxos {
        /// The address.
        address: String,
        /// Opaque cursor from the previous page, if any.
        cursor: Option<String>,
        /// Page size asked for.
        limit: u32,
    },
    /// One page of `address`'s history, newest first.
    History {
        /// The address.
        address: String,
        /// Opaque cursor from the previous page, if any.
        cursor: Option<String>,
        /// Page size asked for.
        limit: u32,
    },
    /// Total supply.
    Supply,
}

impl ReadQuery {
    /// The kind of query.
    pub fn kind(&self) -> ReadKind {
        match self {
            ReadQuery::Balance { .. } => ReadKind::Balance,
            ReadQuery::Utxos { .. } => ReadKind::Utxos,
            ReadQuery::History { .. } => ReadKind::History,
            ReadQuery::Supply => ReadKind::Supply,
        }
    }

    /// Canonical encoding: kind byte, then the fields in order (strings length-prefixed, an
    /// absent cursor as byte 0, a present one as byte 1 and the string, limit big-endian).
    pub fn encode(&self) -> Result<Vec<u8>, AttestError> {
        let mut w = vec![self.kind() as u8];
        match self {
            ReadQuery::Balance { address } => put_field(&mut w, "address", address)?,
            ReadQuery::Utxos {
                address,
                cursor,
                limit,
            }
            | ReadQuery::History {
                address,
                cursor,
                limit,
            } => {
                put_field(&mut w, "address", address)?;
                put_cursor(&mut w, cursor.as_deref())?;
                w.extend_from_slice(&limit.to_be_bytes());
            }
            ReadQuery::Supply => {}
        }
        Ok(w)
    }

    /// `tagged_hash(READ_QUERY_TAG, encode())`.
    pub fn digest(&self) -> Result<[u8; 32], AttestError> {
        Ok(tagged_hash(READ_QUERY_TAG, &self.encode()?))
    }
}

/// One unspent output in a [`ReadResult::Utxos`] page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtxoEntry {
    /// Transaction that created the output. JSON: hex.
    #[serde(with = "hex_array")]
    pub txid: [u8; 32],
    /// Index of the output in that transaction.
    pub vout: u32,
    /// Amount in base units.
    pub amount: u64,
}

/// One transaction in a [`ReadResult::History`] page.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// Per-address sequence number (0 for the address's first entry).
    pub seq: u64,
    /// The transaction. JSON: hex.
    #[serde(with = "hex_array")]
    pub txid: [u8; 32],
    /// Height of the block that holds it.
    pub height: u64,
    /// Position in that block.
    pub index: u32,
    /// Sum of its outputs paying the address.
    pub received: u64,
    /// Sum of the address's outputs it spent.
    pub sent: u64,
}

/// A read result, as served. Its digest is what replicas sign.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
#[non_exhaustive]
pub enum ReadResult {
    /// Balance of an address.
    Balance {
        /// Sum of its unspent outputs.
        amount: u64,
        /// How many unspent outputs it has.
        utxo_count: u64,
    },
    /// A page of unspent outputs.
    Utxos {
        /// The outputs, in the backend's stable order.
        entries: Vec<UtxoEntry>,
        /// Cursor of the next page, absent on the last page.
        next_cursor: Option<String>,
    },
    /// A page of history, newest first.
    History {
        /// The transactions.
        entries: Vec<HistoryEntry>,
        /// Cursor of the next page, absent on the last page.
        next_cursor: Option<String>,
    },
    /// Total supply.
    Supply {
        /// Every amount ever minted (nothing is burnt).
        total: u64,
    },
}

impl ReadResult {
    /// The kind of result.
    pub fn kind(&self) -> ReadKind {
        match self {
            ReadResult::Balance { .. } => ReadKind::Balance,
            ReadResult::Utxos { .. } => ReadKind::Utxos,
            ReadResult::History { .. } => ReadKind::History,
            ReadResult::Supply { .. } => ReadKind::Supply,
        }
    }

    /// Canonical encoding: kind byte, then fields in order, integers big-endian, lists
    /// prefixed by a u32 count, an optional cursor as for [`ReadQuery::encode`].
    pub fn encode(&self) -> Result<Vec<u8>, AttestError> {
        let mut w = vec![self.kind() as u8];
        match self {
            ReadResult::Balance { amount, utxo_count } => {
                w.extend_from_slice(&amount.to_be_bytes());
                w.extend_from_slice(&utxo_count.to_be_bytes());
            }
            ReadResult::Utxos {
                entries,
                next_cursor,
            } => put_page(&mut w, entries, next_cursor.as_deref(), |w, e| {
                w.extend_from_slice(&e.txid);
                w.extend_from_slice(&e.vout.to_be_bytes());
                w.extend_from_slice(&e.amount.to_be_bytes());
            })?,
            ReadResult::History {
                entries,
                next_cursor,
            } => put_page(&mut w, entries, next_cursor.as_deref(), |w, e| {
                w.extend_from_slice(&e.seq.to_be_bytes());
                w.extend_from_slice(&e.txid);
                w.extend_from_slice(&e.height.to_be_bytes());
                w.extend_from_slice(&e.index.to_be_bytes());
                w.extend_from_slice(&e.received.to_be_bytes());
                w.extend_from_slice(&e.sent.to_be_bytes());
            })?,
            ReadResult::Supply { total } => w.extend_from_slice(&total.to_be_bytes()),
        }
        Ok(w)
    }

    /// `tagged_hash(READ_RESULT_TAG, encode())`.
    pub fn digest(&self) -> Result<[u8; 32], AttestError> {
        Ok(tagged_hash(READ_RESULT_TAG, &self.encode()?))
    }
}

/// One replica's signature on a statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// The replica's ed25519 public key, as listed in the genesis. JSON: hex.
    #[serde(with = "hex_array")]
    pub replica: [u8; 32],
    /// ed25519 signature over the statement's canonical encoding or, with a proof, over the
    /// root of the tree the statement is a leaf of ([`sign_receipts`]). JSON: hex.
    #[serde(with = "hex_array")]
    pub signature: [u8; 64],
    /// The statement's place in the tree whose root was signed; absent when the statement
    /// itself was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<InclusionProof>,
}

/// A statement together with one replica's attestation of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<S> {
    /// What the replica says.
    pub statement: S,
    /// Who says it, and the proof.
    pub attestation: Attestation,
}

/// Signs `statement` with a replica's secret key.
pub fn sign<S: Statement>(statement: S, key: &SigningKey) -> Result<Signed<S>, AttestError> {
    let message = statement.encode()?;
    let signature = key.sign(&message).to_bytes();
    let replica = key.verifying_key().to_bytes();
    Ok(Signed {
        statement,
        attestation: Attestation {
            replica,
            signature,
            proof: None,
        },
    })
}

impl<S: Statement> Signed<S> {
    /// Checks the signature alone (not whether the replica belongs to the cluster). Strict
    /// verification: rejects small-order keys and non-canonical signatures, which an honest
    /// signer never produces.
    pub fn verify_signature(&self) -> Result<(), AttestError> {
        let key = VerifyingKey::from_bytes(&self.attestation.replica)
            .map_err(|_| AttestError::BadPublicKey(self.attestation.replica))?;
        self.verify_with(&key)
    }

    /// [`verify_signature`](Self::verify_signature) with the replica's key already parsed
    /// (parsing decompresses a curve point, a fifth of a verification). `key` must be the
    /// attestation's replica key; callers get it from a [`ReplicaSet`].
    fn verify_with(&self, key: &VerifyingKey) -> Result<(), AttestError> {
        let message = self.signed_message()?;
        self.verify_message(key, &message)
    }

    /// The bytes the signature is over: the statement, or the root its proof leads to.
    fn signed_message(&self) -> Result<Vec<u8>, AttestError> {
        match &self.attestation.proof {
            None => self.statement.encode(),
            Some(proof) => self.statement.proven_message(proof),
        }
    }

    fn verify_message(&self, key: &VerifyingKey, message: &[u8]) -> Result<(), AttestError> {
        let signature = Signature::from_bytes(&self.attestation.signature);
        key.verify_strict(message, &signature)
            .map_err(|_| AttestError::BadSignature(self.attestation.replica))
    }
}

/// The replicas whose signatures count: the genesis replica set.
///
/// Clones share a memory of root signatures already verified, so the receipts of one block
/// cost one signature check per replica, not one per transaction.
#[derive(Clone, Debug)]
pub struct ReplicaSet {
    /// Each key with its parsed form, parsed once here rather than at every verification.
    keys: BTreeMap<[u8; 32], VerifyingKey>,
    roots: std::sync::Arc<std::sync::Mutex<VerifiedRoots>>,
}

impl PartialEq for ReplicaSet {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
    }
}

impl Eq for ReplicaSet {}

/// Root signatures verified recently, by digest of (replica, signature, signed message).
#[derive(Debug, Default)]
struct VerifiedRoots {
    known: std::collections::HashSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

/// Root signatures a [`ReplicaSet`] remembers: a few seconds of blocks at any load.
const VERIFIED_ROOTS: usize = 4_096;

impl VerifiedRoots {
    fn digest(replica: &[u8; 32], signature: &[u8; 64], message: &[u8]) -> [u8; 32] {
        let mut engine = sha256::HashEngine::default();
        engine.input(replica);
        engine.input(signature);
        engine.input(message);
        sha256::Hash::from_engine(engine).to_byte_array()
    }

    fn insert(&mut self, digest: [u8; 32]) {
        if self.known.insert(digest) {
            self.order.push_back(digest);
            if self.order.len() > VERIFIED_ROOTS
                && let Some(old) = self.order.pop_front()
            {
                self.known.remove(&old);
            }
        }
    }
}

/// Most replicas in a set, as in the genesis.
pub const MAX_REPLICAS: usize = 256;

impl ReplicaSet {
    /// Builds the set from the genesis keys; rejects an empty or oversized list, a key listed
    /// twice, and bytes that are not an ed25519 point.
    pub fn new(keys: impl IntoIterator<Item = [u8; 32]>) -> Result<Self, AttestError> {
        let mut set = BTreeMap::new();
        for key in keys {
            let parsed =
                VerifyingKey::from_bytes(&key).map_err(|_| AttestError::BadPublicKey(key))?;
            if set.insert(key, parsed).is_some() {
                return Err(AttestError::BadReplicaSet(format!(
                    "key {} listed twice",
                    hex::encode(key)
                )));
            }
            if set.len() > MAX_REPLICAS {
                return Err(AttestError::BadReplicaSet(format!(
                    "more than {MAX_REPLICAS} replicas"
                )));
            }
        }
        if set.is_empty() {
            return Err(AttestError::BadReplicaSet("no replicas".into()));
        }
        Ok(ReplicaSet {
            keys: set,
            roots: std::sync::Arc::default(),
        })
    }

    /// Number of replicas, n.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: a set has at least one replica. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Most faulty replicas tolerated: f = (n-1)/3.
    pub fn max_faulty(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// f+1: enough matching signatures that one of them is honest.
    pub fn weak_quorum(&self) -> usize {
        self.max_faulty() + 1
    }

    /// n-f (2f+1 when n = 3f+1): enough that every two such sets share an honest replica.
    pub fn strong_quorum(&self) -> usize {
        self.len() - self.max_faulty()
    }

    /// Whether `key` is one of the replicas.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.contains_key(key)
    }

    /// The keys in ascending byte order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.keys.keys()
    }

    /// Checks `signed`'s signature (and inclusion proof) against its replica's key, which must
    /// be in the set. A root signature verified before is not verified again.
    pub fn verify<S: Statement>(&self, signed: &Signed<S>) -> Result<(), AttestError> {
        let replica = &signed.attestation.replica;
        let key = self
            .keys
            .get(replica)
            .ok_or(AttestError::BadPublicKey(*replica))?;
        if signed.attestation.proof.is_none() {
            return signed.verify_with(key);
        }
        let message = signed.signed_message()?;
        let digest = VerifiedRoots::digest(replica, &signed.attestation.signature, &message);
        let roots = || self.roots.lock().unwrap_or_else(|e| e.into_inner());
        if roots().known.contains(&digest) {
            return Ok(());
        }
        signed.verify_message(key, &message)?;
        roots().insert(digest);
        Ok(())
    }
}

/// Why one attestation did not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DiscardReason {
    /// The statement is about another network.
    WrongChain,
    /// The key is not in the replica set.
    UnknownReplica,
    /// The signature does not verify (or the key is not a point, or the statement violates its
    /// field rules and so has no encoding to verify).
    BadSignature,
    /// The replica already signed the same statement earlier in the list.
    DuplicateReplica,
    /// The replica signed two different statements: it counts for neither.
    Equivocation,
    /// Valid, but not about what the caller asked (see [`verify_read`]).
    Mismatch,
    /// Validly signed by a known replica, but a different statement from the one the quorum
    /// signed: that replica lied (or is out of date). Only reported on success.
    Dissent,
}

/// One attestation that did not count, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Discarded {
    /// Position in the input list.
    pub index: usize,
    /// The key it claimed.
    pub replica: [u8; 32],
    /// Why it did not count.
    pub reason: DiscardReason,
}

/// A statement that enough distinct replicas signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedResult<S> {
    /// The statement.
    pub statement: S,
    /// Distinct replicas that signed it, ascending.
    pub signers: Vec<[u8; 32]>,
    /// Attestations that did not count, for reporting a misbehaving replica.
    pub discarded: Vec<Discarded>,
}

/// Why a set of attestations proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumError {
    /// A threshold below f+1 would let f liars decide; above n can never be met.
    #[error("threshold {threshold} is outside {min}..={n}")]
    BadThreshold {
        /// Threshold asked for.
        threshold: usize,
        /// f+1.
        min: usize,
        /// n.
        n: usize,
    },
    /// More attestations than any honest gateway sends.
    #[error("{count} attestations, above {MAX_ATTESTATIONS}")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// No statement has enough distinct valid signers.
    #[error("no statement has {threshold} valid signatures (best has {best})")]
    NotEnough {
        /// Threshold asked for.
        threshold: usize,
        /// Signers of the best-supported statement.
        best: usize,
        /// Attestations that did not count.
        discarded: Vec<Discarded>,
    },
    /// Two different statements both reached the threshold: more than f replicas are faulty,
    /// or the gateway mixed answers from different heights.
    #[error("two different statements both have {threshold} valid signatures")]
    Conflict {
        /// Threshold asked for.
        threshold: usize,
    },
}

/// Finds the statement that at least `threshold` distinct replicas of `replicas` signed, for
/// chain `chain_id`. Attestations by unknown keys, with bad signatures, about another chain,
/// repeated by the same replica, or from a replica that signed two different statements do not
/// count; they are listed in the result.
pub fn verify_quorum<S: Statement>(
    signed: &[Signed<S>],
    replicas: &ReplicaSet,
    chain_id: &str,
    threshold: usize,
) -> Result<VerifiedResult<S>, QuorumError> {
    verify_quorum_where(signed, replicas, chain_id, threshold, |_| true)
}

/// [`verify_quorum`] that checks no more signatures than it needs in the common case: when
/// every attestation is by a distinct replica of `replicas`, about `chain_id` and for the same
/// statement, signatures are checked one by one until `threshold` are valid, and the rest are
/// left unchecked (and are not listed as signers). Anything else (a dissenting statement, an
/// unknown or repeated replica, too few valid signatures) gets the full check of
/// [`verify_quorum`], so misbehaving replicas are still reported.
///
/// Accepting on `threshold` valid signatures of one statement, with no other statement in the
/// set, is exactly [`verify_quorum`]'s acceptance rule; only the audit of the surplus is skipped.
/// A client answered with 2f+1 matching receipts verifies f+1 of them instead of 2f+1.
pub fn accept_quorum<S: Statement>(
    signed: &[Signed<S>],
    replicas: &ReplicaSet,
    chain_id: &str,
    threshold: usize,
) -> Result<VerifiedResult<S>, QuorumError> {
    if let Some(accepted) = accept_unanimous(signed, replicas, chain_id, threshold) {
        return Ok(accepted);
    }
    verify_quorum(signed, replicas, chain_id, threshold)
}

/// The fast path of [`accept_quorum`]; `None` sends the caller to the full check.
fn accept_unanimous<S: Statement>(
    signed: &[Signed<S>],
    replicas: &ReplicaSet,
    chain_id: &str,
    threshold: usize,
) -> Option<VerifiedResult<S>> {
    if threshold < replicas.weak_quorum()
        || threshold > replicas.len()
        || signed.len() > MAX_ATTESTATIONS
    {
        return None;
    }
    let first = signed.first()?;
    let bytes = first.statement.encode().ok()?;
    let mut seen = std::collections::BTreeSet::new();
    for item in signed {
        let replica = item.attestation.replica;
        if !replicas.contains(&replica)
            || !seen.insert(replica)
            || item.statement.chain_id() != chain_id
            || item.statement.encode().ok()? != bytes
        {
            return None;
        }
    }
    let mut signers = Vec::with_capacity(threshold);
    for item in signed {
        // A bad signature is rare and worth reporting: the full check lists it.
        replicas.verify(item).ok()?;
        signers.push(item.attestation.replica);
        if signers.len() == threshold {
            signers.sort_unstable();
            return Some(VerifiedResult {
                statement: first.statement.clone(),
                signers,
                discarded: Vec::new(),
            });
        }
    }
    None
}

/// [`verify_quorum`] for reads: only statements that answer `query` with `result` count.
pub fn verify_read(
    signed: &[Signed<ReadStatement>],
    replicas: &ReplicaSet,
    chain_id: &str,
    threshold: usize,
    query: &ReadQuery,
    result: &ReadResult,
) -> Result<VerifiedResult<ReadStatement>, QuorumError> {
    verify_quorum_where(signed, replicas, chain_id, threshold, |s| {
        s.answers(query, result)
    })
}

fn verify_quorum_where<S: Statement>(
    signed: &[Signed<S>],
    replicas: &ReplicaSet,
    chain_id: &str,
    threshold: usize,
    relevant: impl Fn(&S) -> bool,
) -> Result<VerifiedResult<S>, QuorumError> {
    let (min, n) = (replicas.weak_quorum(), replicas.len());
    if threshold < min || threshold > n {
        return Err(QuorumError::BadThreshold { threshold, min, n });
    }
    if signed.len() > MAX_ATTESTATIONS {
        return Err(QuorumError::TooMany {
            count: signed.len(),
        });
    }
    let mut discarded = Vec::new();
    let mut discard = |index: usize, reason| {
        discarded.push(Discarded {
            index,
            replica: signed[index].attestation.replica,
            reason,
        });
    };
    // First, each attestation on its own: replica, chain, signature. Encoding succeeds for
    // every item kept, so the grouping below can key on the exact signed bytes.
    let mut valid: Vec<(usize, Vec<u8>)> = Vec::new();
    for (index, item) in signed.iter().enumerate() {
        let replica = &item.attestation.replica;
        if !replicas.contains(replica) {
            discard(index, DiscardReason::UnknownReplica);
        } else if item.statement.chain_id() != chain_id {
            discard(index, DiscardReason::WrongChain);
        } else if replicas.verify(item).is_err() {
            discard(index, DiscardReason::BadSignature);
        } else if !relevant(&item.statement) {
            discard(index, DiscardReason::Mismatch);
        } else if let Ok(bytes) = item.statement.encode() {
            valid.push((index, bytes));
        } else {
            discard(index, DiscardReason::BadSignature);
        }
    }
    // Then per replica: a replica that signed two different statements is faulty and counts
    // for neither; one that repeats itself counts once.
    let mut by_replica: BTreeMap<[u8; 32], Vec<(usize, &[u8])>> = BTreeMap::new();
    for (index, bytes) in &valid {
        by_replica
            .entry(signed[*index].attestation.replica)
            .or_default()
            .push((*index, bytes));
    }
    let mut groups: BTreeMap<&[u8], (usize, Vec<[u8; 32]>)> = BTreeMap::new();
    for (replica, items) in &by_replica {
        let (first_index, first_bytes) = items[0];
        if items.iter().any(|(_, b)| *b != first_bytes) {
            for (index, _) in items {
                discard(*index, DiscardReason::Equivocation);
            }
            continue;
        }
        for (index, _) in &items[1..] {
            discard(*index, DiscardReason::DuplicateReplica);
        }
        let group = groups
            .entry(first_bytes)
            .or_insert((first_index, Vec::new()));
        group.0 = group.0.min(first_index);
        group.1.push(*replica);
    }
    let mut reached = groups
        .iter()
        .filter(|(_, (_, signers))| signers.len() >= threshold);
    match (reached.next(), reached.next()) {
        (Some((winner, (index, signers))), None) => {
            for (index, bytes) in &valid {
                let replica = signed[*index].attestation.replica;
                let counted = groups
                    .get(bytes.as_slice())
                    .is_some_and(|(_, s)| s.contains(&replica));
                if bytes.as_slice() != *winner && counted {
                    discarded.push(Discarded {
                        index: *index,
                        replica,
                        reason: DiscardReason::Dissent,
                    });
                }
            }
            discarded.sort_by_key(|d| d.index);
            Ok(VerifiedResult {
                statement: signed[*index].statement.clone(),
                signers: signers.clone(),
                discarded,
            })
        }
        (Some(_), Some(_)) => Err(QuorumError::Conflict { threshold }),
        (None, _) => {
            discarded.sort_by_key(|d| d.index);
            let best = groups.values().map(|(_, s)| s.len()).max().unwrap_or(0);
            Err(QuorumError::NotEnough {
                threshold,
                best,
                discarded,
            })
        }
    }
}

/// `SHA256(SHA256(tag) || SHA256(tag) || data)`, as everywhere in the ledger.
pub fn tagged_hash(tag: &str, data: &[u8]) -> [u8; 32] {
    let tag_hash = sha256::Hash::hash(tag.as_bytes()).to_byte_array();
    let mut engine = sha256::HashEngine::default();
    engine.input(&tag_hash);
    engine.input(&tag_hash);
    engine.input(data);
    sha256::Hash::from_engine(engine).to_byte_array()
}

fn check_chain_id(s: &str) -> Result<(), AttestError> {
    if is_name(s, MAX_CHAIN_ID_LEN, b'-') {
        Ok(())
    } else {
        Err(AttestError::BadChainId(s.to_owned()))
    }
}

fn check_code(s: &str) -> Result<(), AttestError> {
    if is_name(s, MAX_CODE_LEN, b'_') {
        Ok(())
    } else {
        Err(AttestError::BadCode(s.to_owned()))
    }
}

/// Whether `s` has 1 to `max_len` characters, each of `[a-z0-9]` or `separator`.
fn is_name(s: &str, max_len: usize, separator: u8) -> bool {
    (1..=max_len).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == separator)
}

/// Writes a u8 length and the bytes. Callers have checked the length fits (domain tags are
/// constants, chain ids and codes are checked first).
fn put_str(w: &mut Vec<u8>, s: &str) {
    debug_assert!(
        s.len() <= usize::from(u8::MAX),
        "string field of {} bytes",
        s.len()
    );
    w.push(u8::try_from(s.len()).unwrap_or(u8::MAX));
    w.extend_from_slice(s.as_bytes());
}

fn put_field(w: &mut Vec<u8>, what: &'static str, s: &str) -> Result<(), AttestError> {
    if s.len() > MAX_QUERY_FIELD_LEN {
        return Err(AttestError::FieldTooLong { what, len: s.len() });
    }
    put_str(w, s);
    Ok(())
}

fn put_cursor(w: &mut Vec<u8>, cursor: Option<&str>) -> Result<(), AttestError> {
    match cursor {
        None => w.push(0),
        Some(c) => {
            w.push(1);
            put_field(w, "cursor", c)?;
        }
    }
    Ok(())
}

/// Writes a result page: the entry count, each entry with `put_entry`, then the next cursor.
fn put_page<T>(
    w: &mut Vec<u8>,
    entries: &[T],
    next_cursor: Option<&str>,
    put_entry: fn(&mut Vec<u8>, &T),
) -> Result<(), AttestError> {
    put_count(w, entries.len())?;
    for e in entries {
        put_entry(w, e);
    }
    put_cursor(w, next_cursor)
}

fn put_count(w: &mut Vec<u8>, n: usize) -> Result<(), AttestError> {
    if n > MAX_PAGE_ENTRIES {
        return Err(AttestError::FieldTooLong {
            what: "page entries",
            len: n,
        });
    }
    // MAX_PAGE_ENTRIES fits in u32.
    w.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    Ok(())
}

/// Decodes a statement whose encoding starts with `domain`: `fields` reads what follows the
/// tag, trailing bytes are refused, and the field rules are checked again by encoding, so that
/// decode accepts exactly what encode produces.
fn decode_statement<S: Statement>(
    bytes: &[u8],
    domain: &str,
    fields: impl FnOnce(&mut Reader<'_>) -> Result<S, AttestError>,
) -> Result<S, AttestError> {
    let mut r = Reader(bytes);
    r.domain(domain)?;
    let s = fields(&mut r)?;
    r.finish()?;
    s.encode()?;
    Ok(s)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], AttestError> {
        if self.0.len() < n {
            return Err(AttestError::Malformed(format!(
                "{what}: need {n} bytes, {} left",
                self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], AttestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn string(&mut self, what: &str) -> Result<String, AttestError> {
        let [len] = self.array::<1>(what)?;
        let bytes = self.take(usize::from(len), what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| AttestError::Malformed(format!("{what}: not utf-8")))
    }

    fn domain(&mut self, want: &str) -> Result<(), AttestError> {
        let got = self.string("domain")?;
        if got == want {
            Ok(())
        } else {
            Err(AttestError::Malformed(format!(
                "domain {got:?}, want {want:?}"
            )))
        }
    }

    fn finish(&self) -> Result<(), AttestError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AttestError::Malformed(format!(
                "{} trailing bytes",
                self.0.len()
            )))
        }
    }
}

/// Serde for fixed-size byte arrays as lower-case hex strings.
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(crate::hash::Hex::new(bytes).as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|e| D::Error::custom(format!("want {} hex characters: {e}", N * 2)))?;
        Ok(out)
    }
}

mod hex_list {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _, ser::SerializeSeq as _};

    pub fn serialize<S: Serializer>(list: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(list.len()))?;
        for item in list {
            seq.serialize_element(crate::hash::Hex::new(item).as_str())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        let strings = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        if strings.len() > crate::merkle::MAX_DEPTH {
            return Err(D::Error::custom(format!(
                "path of {} hashes, above {}",
                strings.len(),
                crate::merkle::MAX_DEPTH
            )));
        }
        strings
            .iter()
            .map(|s| {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s.as_bytes(), &mut out)
                    .map_err(|e| D::Error::custom(format!("want 64 hex characters: {e}")))?;
                Ok(out)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "coffer-test";

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn replicas(n: u8) -> (Vec<SigningKey>, ReplicaSet) {
        let keys: Vec<SigningKey> = (1..=n).map(key).collect();
        let set = ReplicaSet::new(keys.iter().map(|k| k.verifying_key().to_bytes()));
        (keys, set.expect("valid keys"))
    }

    fn receipt() -> ReceiptStatement {
        ReceiptStatement {
            chain_id: CHAIN.into(),
            txid: [0x11; 32],
            height: 7,
            code: CODE_OK.into(),
            commitment: [0x22; 32],
        }
    }

    fn sign_all(keys: &[SigningKey], s: &ReceiptStatement) -> Vec<Signed<ReceiptStatement>> {
        keys.iter()
            .map(|k| sign(s.clone(), k).expect("valid statement"))
            .collect()
    }

    /// Pins the receipt encoding byte by byte and the signature of a fixed key over it.
    #[test]
    fn receipt_golden_vector() {
        let bytes = receipt().encode().expect("valid");
        let mut want = vec![17u8];
        want.extend_from_slice(b"coffer/receipt/v1");
        want.push(11);
        want.extend_from_slice(b"coffer-test");
        want.extend_from_slice(&[0x11; 32]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 7]);
        want.push(2);
        want.extend_from_slice(b"ok");
        want.extend_from_slice(&[0x22; 32]);
        assert_eq!(bytes, want);
        assert_eq!(hex::encode(&bytes), RECEIPT_VECTOR_HEX);
        let signed = sign(receipt(), &key(1)).expect("valid");
        assert_eq!(hex::encode(signed.attestation.replica), GOLDEN_KEY_1_PUB);
        assert_eq!(hex::encode(signed.attestation.signature), RECEIPT_SIG_KEY_1);
        assert_eq!(ReceiptStatement::decode(&bytes), Ok(receipt()));
    }

    const RECEIPT_VECTOR_HEX: &str = "11636f666665722f726563656970742f76310b636f666665722d7465737411111111111111111111111111111111111111111111111111111111111111110000000000000007026f6b2222222222222222222222222222222222222222222222222222222222222222";
    const GOLDEN_KEY_1_PUB: &str =
        "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c";
    const RECEIPT_SIG_KEY_1: &str = "a739b044cebe90477bc4c8fd297771ce2ee41c39e505f3a833faa1ae67269142f6c094fc7b361b3802bf389c593fbe6929a2d5cbccfa00848e09f00f000e8e07";
    const READ_VECTOR_HEX: &str = "0e636f666665722f726561642f76310b636f666665722d746573740000000000000009444444444444444444444444444444444444444444444444444444444444444403d79527b5aec3856310ef154b670f8a0027b93ef6ca6f78ffda3eeb498f1590e22907622a62c5650b314ee2be89f57ed38603aed2beff543f3eeb5c963b039df3";

    /// The checked-in vector file (for other implementations) says the same as these tests.
    #[test]
    fn fixture_file_matches() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/vectors/attest_v1.json"))
                .expect("vector file");
        assert_eq!(v["receipt"]["encoding"], RECEIPT_VECTOR_HEX);
        assert_eq!(v["receipt"]["signature"], RECEIPT_SIG_KEY_1);
        assert_eq!(v["replica_public_key"], GOLDEN_KEY_1_PUB);
        assert_eq!(v["read"]["statement_encoding"], READ_VECTOR_HEX);
        let statement: ReceiptStatement =
            serde_json::from_value(v["receipt"]["statement"].clone()).expect("statement");
        assert_eq!(statement, receipt());
        let result: ReadResult =
            serde_json::from_value(v["read"]["result"].clone()).expect("result");
        assert_eq!(result, read_result());
    }

    fn read_query() -> ReadQuery {
        ReadQuery::History {
            address: "coffer1qqq".into(),
            cursor: Some("5".into()),
            limit: 10,
        }
    }

    fn read_result() -> ReadResult {
        ReadResult::History {
            entries: vec![HistoryEntry {
                seq: 4,
                txid: [3; 32],
                height: 9,
                index: 2,
                received: 50,
                sent: 20,
            }],
            next_cursor: None,
        }
    }

    fn read_statement() -> ReadStatement {
        ReadStatement {
            chain_id: CHAIN.into(),
            height: 9,
            commitment: [0x44; 32],
            kind: ReadKind::History,
            query_digest: read_query().digest().expect("valid"),
            result_digest: read_result().digest().expect("valid"),
        }
    }

    #[test]
    fn read_golden_vector() {
        let mut q = vec![3u8, 10];
        q.extend_from_slice(b"coffer1qqq");
        q.extend_from_slice(&[1, 1, b'5', 0, 0, 0, 10]);
        assert_eq!(read_query().encode(), Ok(q));
        let mut r = vec![3u8, 0, 0, 0, 1];
        r.extend_from_slice(&4u64.to_be_bytes());
        r.extend_from_slice(&[3; 32]);
        r.extend_from_slice(&9u64.to_be_bytes());
        r.extend_from_slice(&2u32.to_be_bytes());
        for v in [50u64, 20] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        r.push(0);
        assert_eq!(read_result().encode(), Ok(r));
        let bytes = read_statement().encode().expect("valid");
        assert_eq!(hex::encode(&bytes), READ_VECTOR_HEX);
        assert_eq!(ReadStatement::decode(&bytes), Ok(read_statement()));
        assert!(read_statement().answers(&read_query(), &read_result()));
    }

    #[test]
    fn decoders_reject_other_domains_and_trailing_bytes() {
        let receipt_bytes = receipt().encode().expect("valid");
        assert!(ReadStatement::decode(&receipt_bytes).is_err());
        let mut long = receipt_bytes.clone();
        long.push(0);
        assert!(ReceiptStatement::decode(&long).is_err());
        for cut in 0..receipt_bytes.len() {
            assert!(
                ReceiptStatement::decode(&receipt_bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn json_roundtrip_and_unknown_fields() {
        let signed = sign(receipt(), &key(1)).expect("valid");
        let json = serde_json::to_string(&signed).expect("serialise");
        let back: Signed<ReceiptStatement> = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, signed);
        let extra = json.replacen("\"height\":7", "\"height\":7,\"x\":1", 1);
        assert!(serde_json::from_str::<Signed<ReceiptStatement>>(&extra).is_err());
        let short = json.replacen(&hex::encode([0x11; 32]), "11", 1);
        assert!(serde_json::from_str::<Signed<ReceiptStatement>>(&short).is_err());
    }

    #[test]
    fn honest_quorum_verifies() {
        let (keys, set) = replicas(4);
        assert_eq!(
            (set.max_faulty(), set.weak_quorum(), set.strong_quorum()),
            (1, 2, 3)
        );
        let signed = sign_all(&keys, &receipt());
        let v = verify_quorum(&signed, &set, CHAIN, set.strong_quorum()).expect("quorum");
        assert_eq!(v.statement, receipt());
        assert_eq!(v.signers.len(), 4);
        assert!(v.discarded.is_empty());
    }

    #[test]
    fn accept_quorum_checks_only_what_it_needs_and_falls_back_on_trouble() {
        let (keys, set) = replicas(4);
        let signed = sign_all(&keys, &receipt());
        // Unanimous: f+1 signatures checked and listed; the result is verify_quorum's.
        let v = accept_quorum(&signed, &set, CHAIN, set.weak_quorum()).expect("quorum");
        assert_eq!(v.statement, receipt());
        assert_eq!(v.signers.len(), 2);
        assert!(v.signers.iter().all(|s| set.contains(s)));
        assert!(v.discarded.is_empty());

        // A forged signature among matching statements: full check, reported, still accepted.
        let mut forged = signed.clone();
        forged[0].attestation.signature[0] ^= 1;
        let v = accept_quorum(&forged, &set, CHAIN, set.strong_quorum()).expect("3 valid");
        assert_eq!(v.signers.len(), 3);
        assert_eq!(v.discarded.len(), 1);
        assert_eq!(v.discarded[0].reason, DiscardReason::BadSignature);
        // ... and refused when the forgery leaves too few.
        let err = accept_quorum(&forged[..2], &set, CHAIN, 2).expect_err("1 valid");
        assert!(matches!(err, QuorumError::NotEnough { best: 1, .. }));

        // A dissenting statement: full check, the dissent is reported.
        let mut other = receipt();
        other.code = "input_already_spent".into();
        let mut mixed = sign_all(&keys[..3], &receipt());
        mixed.push(sign(other, &keys[3]).expect("valid"));
        let v = accept_quorum(&mixed, &set, CHAIN, 2).expect("quorum");
        assert_eq!(v.statement, receipt());
        assert_eq!(v.signers.len(), 3);
        assert!(
            v.discarded
                .iter()
                .any(|d| d.reason == DiscardReason::Dissent)
        );

        // A replica repeated to pad the count is not counted twice.
        let padded = vec![signed[0].clone(), signed[0].clone()];
        assert!(accept_quorum(&padded, &set, CHAIN, 2).is_err());
        // Another chain never counts.
        let mut foreign = receipt();
        foreign.chain_id = "other".into();
        let foreign = sign_all(&keys, &foreign);
        assert!(accept_quorum(&foreign, &set, CHAIN, 2).is_err());
    }

    #[test]
    fn replica_set_verifies_with_parsed_keys() {
        let (keys, set) = replicas(4);
        let good = sign(receipt(), &keys[0]).expect("valid");
        assert!(set.verify(&good).is_ok());
        let mut bad = good.clone();
        bad.attestation.signature[5] ^= 1;
        assert!(set.verify(&bad).is_err());
        let outsider = SigningKey::from_bytes(&[42; 32]);
        let stranger = sign(receipt(), &outsider).expect("valid");
        assert!(stranger.verify_signature().is_ok());
        assert_eq!(
            set.verify(&stranger),
            Err(AttestError::BadPublicKey(stranger.attestation.replica))
        );
    }

    #[test]
    fn forged_signature_does_not_count() {
        let (keys, set) = replicas(4);
        let mut signed = sign_all(&keys[..2], &receipt());
        signed[1].attestation.signature[0] ^= 1;
        let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("one valid signer only");
        assert!(
            matches!(err, QuorumError::NotEnough { best: 1, .. }),
            "{err:?}"
        );
        if let QuorumError::NotEnough { discarded, .. } = err {
            assert_eq!(discarded[0].reason, DiscardReason::BadSignature);
            assert_eq!(discarded[0].index, 1);
        }
    }

    #[test]
    fn altered_field_does_not_count() {
        let (keys, set) = replicas(4);
        let mut signed = sign_all(&keys[..2], &receipt());
        // A gateway (or replica) rewrites the result code after the fact.
        signed[1].statement.code = "bad_signature".into();
        assert!(verify_quorum(&signed, &set, CHAIN, 2).is_err());
        // Each field in turn.
        let alterations: [fn(&mut ReceiptStatement); 4] = [
            |s| s.txid[0] ^= 1,
            |s| s.height += 1,
            |s| s.commitment[31] ^= 1,
            |s| s.chain_id = "coffer-tesu".into(),
        ];
        for alter in alterations {
            let mut signed = sign_all(&keys[..2], &receipt());
            alter(&mut signed[0].statement);
            let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("altered");
            assert!(
                matches!(err, QuorumError::NotEnough { best: 1, .. }),
                "{err:?}"
            );
            // Altered identically in every copy, it still has no valid signer at all.
            alter(&mut signed[1].statement);
            let chain = signed[0].statement.chain_id.clone();
            let err = verify_quorum(&signed, &set, &chain, 2).expect_err("altered");
            assert!(
                matches!(err, QuorumError::NotEnough { best: 0, .. }),
                "{err:?}"
            );
        }
    }

    #[test]
    fn wrong_chain_does_not_count() {
        let (keys, set) = replicas(4);
        let mut other = receipt();
        other.chain_id = "coffer-main".into();
        // Validly signed, but for another network.
        let signed = sign_all(&keys, &other);
        let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("wrong chain");
        let QuorumError::NotEnough { discarded, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            discarded
                .iter()
                .all(|d| d.reason == DiscardReason::WrongChain)
        );
        assert!(verify_quorum(&signed, &set, "coffer-main", 2).is_ok());
    }

    #[test]
    fn unknown_replica_does_not_count() {
        let (keys, set) = replicas(4);
        let mut signers = vec![keys[0].clone()];
        signers.extend((100..103).map(key));
        let signed = sign_all(&signers, &receipt());
        let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("one known signer");
        let QuorumError::NotEnough {
            best, discarded, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(best, 1);
        assert_eq!(discarded.len(), 3);
        assert!(
            discarded
                .iter()
                .all(|d| d.reason == DiscardReason::UnknownReplica)
        );
    }

    #[test]
    fn duplicated_replica_counts_once() {
        let (keys, set) = replicas(4);
        let one = sign(receipt(), &keys[0]).expect("valid");
        let signed = vec![one.clone(), one.clone(), one];
        let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("one replica thrice");
        let QuorumError::NotEnough {
            best, discarded, ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!(best, 1);
        assert!(
            discarded
                .iter()
                .all(|d| d.reason == DiscardReason::DuplicateReplica)
        );
    }

    #[test]
    fn equivocating_replica_counts_for_neither() {
        let (keys, set) = replicas(4);
        let mut other = receipt();
        other.code = "insufficient_funds".into();
        let signed = vec![
            sign(receipt(), &keys[0]).expect("valid"),
            sign(other, &keys[0]).expect("valid"),
            sign(receipt(), &keys[1]).expect("valid"),
        ];
        let err = verify_quorum(&signed, &set, CHAIN, 2).expect_err("equivocator removed");
        assert!(
            matches!(err, QuorumError::NotEnough { best: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn forging_minority_is_outvoted_and_reported() {
        let (keys, set) = replicas(4);
        let mut signed = sign_all(&keys[..3], &receipt());
        let mut forged = receipt();
        forged.code = "insufficient_funds".into();
        signed.push(sign(forged, &keys[3]).expect("valid"));
        let v = verify_quorum(&signed, &set, CHAIN, 2).expect("honest majority");
        assert_eq!(v.statement, receipt());
        assert_eq!(v.signers.len(), 3);
        // A lone forger cannot reach f+1 = 2 on its own statement.
        let err = verify_quorum(&signed[3..], &set, CHAIN, 2).expect_err("lone forger");
        assert!(matches!(err, QuorumError::NotEnough { best: 1, .. }));
    }

    #[test]
    fn threshold_below_f_plus_one_is_refused() {
        let (keys, set) = replicas(4);
        let signed = sign_all(&keys, &receipt());
        for t in [0, 1, 5] {
            assert!(matches!(
                verify_quorum(&signed, &set, CHAIN, t),
                Err(QuorumError::BadThreshold { .. })
            ));
        }
    }

    #[test]
    fn conflicting_quorums_are_an_error() {
        let (keys, set) = replicas(4);
        let mut other = receipt();
        other.height = 8;
        let mut signed = sign_all(&keys[..2], &receipt());
        signed.extend(sign_all(&keys[2..], &other));
        assert_eq!(
            verify_quorum(&signed, &set, CHAIN, 2),
            Err(QuorumError::Conflict { threshold: 2 })
        );
    }

    #[test]
    fn receipt_signature_is_not_a_read_signature() {
        // Same key, but the domains differ, so bytes signed for one never verify as the other.
        let signed = sign(read_statement(), &key(1)).expect("valid");
        let receipt_bytes = receipt().encode().expect("valid");
        let vk = key(1).verifying_key();
        let sig = Signature::from_bytes(&signed.attestation.signature);
        assert!(vk.verify_strict(&receipt_bytes, &sig).is_err());
        assert!(signed.verify_signature().is_ok());
    }

    #[test]
    fn read_verification_checks_query_and_result() {
        let (keys, set) = replicas(4);
        let signed: Vec<_> = keys
            .iter()
            .map(|k| sign(read_statement(), k).expect("valid"))
            .collect();
        let ok = verify_read(&signed, &set, CHAIN, 3, &read_query(), &read_result());
        assert_eq!(ok.map(|v| v.signers.len()), Ok(4));
        // A gateway that swaps in another result is caught: no statement answers it.
        let lie = ReadResult::History {
            entries: vec![HistoryEntry {
                seq: 4,
                txid: [3; 32],
                height: 9,
                index: 2,
                received: 5000,
                sent: 20,
            }],
            next_cursor: None,
        };
        assert!(verify_read(&signed, &set, CHAIN, 2, &read_query(), &lie).is_err());
        let other_query = ReadQuery::History {
            address: "coffer1qqq".into(),
            cursor: None,
            limit: 10,
        };
        assert!(verify_read(&signed, &set, CHAIN, 2, &other_query, &read_result()).is_err());
    }

    proptest::proptest! {
        /// Decoders return errors, never panic, on arbitrary bytes, and accept exactly what the
        /// encoders produce.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(s) = ReceiptStatement::decode(&bytes) {
                proptest::prop_assert_eq!(s.encode().expect("decoded is valid"), bytes.clone());
            }
            if let Ok(s) = ReadStatement::decode(&bytes) {
                proptest::prop_assert_eq!(s.encode().expect("decoded is valid"), bytes);
            }
        }

        #[test]
        fn receipt_roundtrip(
            txid in proptest::array::uniform32(proptest::num::u8::ANY),
            commitment in proptest::array::uniform32(proptest::num::u8::ANY),
            height in proptest::num::u64::ANY,
            code in "[a-z_]{1,64}",
            chain in "[a-z0-9-]{1,32}",
        ) {
            let s = ReceiptStatement { chain_id: chain, txid, height, code, commitment };
            let bytes = s.encode().expect("valid");
            proptest::prop_assert_eq!(ReceiptStatement::decode(&bytes).expect("decodes"), s.clone());
            // Any single flipped bit breaks the signature.
            let signed = sign(s, &key(9)).expect("valid");
            let mut tampered = bytes.clone();
            let at = usize::try_from(height % bytes.len() as u64).unwrap_or(0);
            tampered[at] ^= 1;
            let vk = key(9).verifying_key();
            let sig = Signature::from_bytes(&signed.attestation.signature);
            proptest::prop_assert!(vk.verify_strict(&tampered, &sig).is_err());
        }
    }

    /// RFC 8032 test vectors 1 and 2, which commonware-cryptography's ed25519 pins too (its
    /// private key encoding is the same 32-byte seed): a replica's commonware key, exported as
    /// its 32 bytes, is the same key here, and signatures interoperate byte for byte. Note that
    /// commonware's `Signer::sign(namespace, msg)` signs `varint(len) || namespace || msg`;
    /// statements here carry their domain inside the message and are signed raw.
    #[test]
    fn rfc8032_vectors_match_commonware_keys() {
        let vectors: [(&str, &str, &[u8], &str); 2] = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                b"",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                &[0x72],
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
        ];
        for (secret, public, message, signature) in vectors {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(secret, &mut seed).expect("hex");
            let key = SigningKey::from_bytes(&seed);
            assert_eq!(hex::encode(key.verifying_key().to_bytes()), public);
            let sig = key.sign(message);
            assert_eq!(hex::encode(sig.to_bytes()), signature);
            assert!(key.verifying_key().verify_strict(message, &sig).is_ok());
        }
    }

    #[test]
    fn bad_statement_fields_are_rejected() {
        let mut s = receipt();
        s.code = "Not OK".into();
        assert!(matches!(s.encode(), Err(AttestError::BadCode(_))));
        s = receipt();
        s.chain_id = "x".repeat(33);
        assert!(sign(s, &key(1)).is_err());
        assert!(ReplicaSet::new([]).is_err());
        let k = key(1).verifying_key().to_bytes();
        assert!(ReplicaSet::new([k, k]).is_err());
    }

    /// The receipts of one block: `n` transactions, the third one rejected.
    fn block_receipts(n: u8) -> Vec<ReceiptStatement> {
        (0..n)
            .map(|i| ReceiptStatement {
                txid: [i; 32],
                code: if i == 2 {
                    "input_already_spent"
                } else {
                    CODE_OK
                }
                .into(),
                ..receipt()
            })
            .collect()
    }

    #[test]
    fn one_signature_per_block_attests_every_receipt() {
        let (keys, set) = replicas(4);
        let by_replica: Vec<Vec<Signed<ReceiptStatement>>> = keys
            .iter()
            .map(|k| sign_receipts(block_receipts(5), k).expect("signable"))
            .collect();
        for signed in &by_replica {
            assert_eq!(signed.len(), 5);
            // One signature for the block, a distinct proof per receipt.
            assert!(
                signed
                    .iter()
                    .all(|s| s.attestation.signature == signed[0].attestation.signature)
            );
            for (i, s) in signed.iter().enumerate() {
                let proof = s.attestation.proof.as_ref().expect("proof");
                assert_eq!((proof.index as usize, proof.count), (i, 5));
                assert!(s.verify_signature().is_ok());
                assert!(set.verify(s).is_ok());
            }
        }
        for i in 0..5 {
            let of_tx: Vec<_> = by_replica.iter().map(|r| r[i].clone()).collect();
            let v = verify_quorum(&of_tx, &set, CHAIN, set.strong_quorum()).expect("quorum");
            assert_eq!(v.statement, block_receipts(5)[i]);
            assert_eq!(v.signers.len(), 4);
            let fast = accept_quorum(&of_tx, &set, CHAIN, set.weak_quorum()).expect("quorum");
            assert_eq!(fast.statement, block_receipts(5)[i]);
        }
        assert_eq!(sign_receipts(Vec::new(), &keys[0]), Ok(Vec::new()));
    }

    /// The signed bytes, rebuilt here from the documented layout: a two-receipt block's root is
    /// the node over the two leaf hashes.
    #[test]
    fn the_root_signature_covers_the_documented_bytes() {
        let k = key(1);
        let receipts = block_receipts(2);
        let signed = sign_receipts(receipts.clone(), &k).expect("signable");
        let leaf = |s: &ReceiptStatement| {
            tagged_hash("coffer/receipt-leaf/v1", &s.encode().expect("valid"))
        };
        let root = crate::merkle::node(&leaf(&receipts[0]), &leaf(&receipts[1]));
        let mut message = Vec::new();
        message.push(23);
        message.extend_from_slice(b"coffer/receipts-root/v1");
        message.push(11);
        message.extend_from_slice(CHAIN.as_bytes());
        message.extend_from_slice(&7u64.to_be_bytes());
        message.extend_from_slice(&[0x22; 32]);
        message.extend_from_slice(&2u32.to_be_bytes());
        message.extend_from_slice(&root);
        let signature = Signature::from_bytes(&signed[0].attestation.signature);
        assert!(
            k.verifying_key()
                .verify_strict(&message, &signature)
                .is_ok()
        );
        assert_eq!(
            signed[1].attestation.proof.as_ref().map(|p| p.path.clone()),
            Some(vec![leaf(&receipts[0])])
        );
    }

    #[test]
    fn a_receipt_moved_altered_or_resized_in_its_tree_does_not_verify() {
        let (keys, set) = replicas(4);
        let signed = sign_receipts(block_receipts(6), &keys[0]).expect("signable");
        // The honest ones first, so their root is remembered: tampering must still fail.
        assert!(signed.iter().all(|s| set.verify(s).is_ok()));
        let mut altered = signed[2].clone();
        CODE_OK.clone_into(&mut altered.statement.code);
        let mut moved = signed[2].clone();
        if let Some(p) = moved.attestation.proof.as_mut() {
            p.index = 3;
        }
        let mut swapped = signed[2].clone();
        swapped.attestation.proof = signed[3].attestation.proof.clone();
        let mut resized = signed[5].clone();
        if let Some(p) = resized.attestation.proof.as_mut() {
            p.count = 7;
        }
        let mut bent = signed[0].clone();
        if let Some(p) = bent.attestation.proof.as_mut() {
            p.path[0][5] ^= 0x40;
        }
        let mut unproven = signed[0].clone();
        unproven.attestation.proof = None;
        let mut other_height = signed[0].clone();
        other_height.statement.height += 1;
        for (what, bad) in [
            ("altered code", &altered),
            ("moved", &moved),
            ("another's proof", &swapped),
            ("resized", &resized),
            ("bent path", &bent),
            ("proof dropped", &unproven),
            ("other height", &other_height),
        ] {
            assert!(set.verify(bad).is_err(), "{what}");
            assert!(bad.verify_signature().is_err(), "{what}");
        }
        // A forged receipt from one replica does not join the honest quorum of the others.
        let mut of_tx: Vec<_> = keys[1..]
            .iter()
            .map(|k| sign_receipts(block_receipts(6), k).expect("signable")[2].clone())
            .collect();
        of_tx.push(altered);
        let v = verify_quorum(&of_tx, &set, CHAIN, set.weak_quorum()).expect("quorum");
        assert_eq!(v.statement, block_receipts(6)[2]);
        assert_eq!(v.discarded.len(), 1);
    }

    #[test]
    fn receipts_of_different_blocks_cannot_share_a_signature() {
        let mut mixed = block_receipts(3);
        mixed[1].height = 8;
        assert!(sign_receipts(mixed, &key(1)).is_err());
        let mut other_commitment = block_receipts(3);
        other_commitment[2].commitment = [0x33; 32];
        assert!(sign_receipts(other_commitment, &key(1)).is_err());
    }

    #[test]
    fn only_receipts_carry_proofs() {
        let (keys, set) = replicas(4);
        let proof = sign_receipts(block_receipts(2), &keys[0]).expect("signable")[0]
            .attestation
            .proof
            .clone();
        let mut read = sign(read_statement(), &keys[0]).expect("valid");
        read.attestation.proof = proof;
        assert!(set.verify(&read).is_err());
        assert!(read.verify_signature().is_err());
    }

    #[test]
    fn proven_receipts_roundtrip_through_json() {
        let signed = sign_receipts(block_receipts(3), &key(1)).expect("signable");
        let json = serde_json::to_string(&signed[1]).expect("serializable");
        assert!(json.contains("\"proof\":{\"index\":1,\"count\":3,\"path\":[\""));
        let back: Signed<ReceiptStatement> = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, signed[1]);
        assert!(back.verify_signature().is_ok());
        // A statement signed alone has no proof field at all.
        let alone =
            serde_json::to_string(&sign(receipt(), &key(1)).expect("valid")).expect("serializable");
        assert!(!alone.contains("proof"));
        // Unknown fields and overlong paths are refused.
        let extra = json.replace("\"count\":3", "\"count\":3,\"depth\":2");
        assert!(serde_json::from_str::<Signed<ReceiptStatement>>(&extra).is_err());
        let hash = format!("\"{}\"", "ab".repeat(32));
        let long = vec![hash; crate::merkle::MAX_DEPTH + 1].join(",");
        let overlong = format!("{{\"index\":0,\"count\":2,\"path\":[{long}]}}");
        assert!(serde_json::from_str::<InclusionProof>(&overlong).is_err());
    }

    #[test]
    fn clones_of_a_replica_set_remember_verified_roots_together_within_a_bound() {
        let (keys, set) = replicas(4);
        let other = set.clone();
        let signed = sign_receipts(block_receipts(4), &keys[0]).expect("signable");
        assert!(other.verify(&signed[0]).is_ok());
        assert_eq!(set.roots.lock().expect("lock").known.len(), 1);
        // The block's other receipts hit the remembered root.
        assert!(signed.iter().all(|s| set.verify(s).is_ok()));
        assert_eq!(set.roots.lock().expect("lock").known.len(), 1);
        // Statements signed alone are not remembered.
        assert!(
            set.verify(&sign(receipt(), &keys[1]).expect("valid"))
                .is_ok()
        );
        assert_eq!(set.roots.lock().expect("lock").known.len(), 1);
        let mut roots = VerifiedRoots::default();
        for i in 0..=VERIFIED_ROOTS {
            roots.insert(VerifiedRoots::digest(&[0; 32], &[0; 64], &i.to_be_bytes()));
        }
        assert_eq!(roots.known.len(), VERIFIED_ROOTS);
        assert!(!roots.known.contains(&VerifiedRoots::digest(
            &[0; 32],
            &[0; 64],
            &0usize.to_be_bytes()
        )));
    }

    /// The receipts-root vector in the fixture file, computed outside this code base.
    #[test]
    fn receipts_root_vector_matches_an_independent_computation() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../fixtures/vectors/attest_v1.json"))
                .expect("vector file");
        let v = &v["receipts_root"];
        let receipts = block_receipts(2);
        let signed = sign_receipts(receipts.clone(), &key(1)).expect("signable");
        let leaf = |s: &ReceiptStatement| {
            hex::encode(tagged_hash(RECEIPT_LEAF_TAG, &s.encode().expect("valid")))
        };
        assert_eq!(v["leaf_hashes"][0], leaf(&receipts[0]));
        assert_eq!(v["leaf_hashes"][1], leaf(&receipts[1]));
        let proof: InclusionProof =
            serde_json::from_value(v["proof_of_leaf_1"].clone()).expect("proof");
        assert_eq!(signed[1].attestation.proof, Some(proof.clone()));
        let message = receipts[1].proven_message(&proof).expect("valid proof");
        assert_eq!(v["signed_message"], hex::encode(&message));
        assert_eq!(
            v["signed_message"]
                .as_str()
                .map(|m| m.ends_with(v["root"].as_str().unwrap_or("-"))),
            Some(true)
        );
        assert_eq!(v["signature"], hex::encode(signed[1].attestation.signature));
    }
}
