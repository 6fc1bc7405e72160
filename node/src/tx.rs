//! The node's view of transactions and of the state machine that executes them.
//!
//! Consensus orders opaque byte strings. Two small traits connect it to the ledger:
//! [`TxVerifier`] is the stateless admission check (decode, size, signature) run by the
//! mempool and by every replica before it votes for a block, and [`StateMachine`] applies
//! finalized blocks deterministically and reports receipts and a state commitment. Keeping
//! these seams narrow lets the ledger crate (and its Redis-backed state) plug in without the
//! consensus code naming any ledger type.

use bytes::Bytes;
use std::fmt;

/// Upper bound on the encoded size of one transaction, in bytes.
///
/// A protocol constant rather than configuration: every replica must decode the same blocks.
/// Large enough for the ledger's biggest structurally valid transfers (hundreds of inputs).
pub const MAX_TX_BYTES: usize = 16 * 1024;

/// A transaction identifier: a 32-byte hash over the transaction's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Txid(pub [u8; 32]);

impl fmt::Debug for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Txid({})", hex::encode(self.0))
    }
}

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a transaction failed the stateless check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxRejection {
    /// The transaction exceeds [`MAX_TX_BYTES`].
    #[error("transaction too large: {size} bytes (max {max})")]
    TooLarge {
        /// Encoded size of the offending transaction.
        size: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// The bytes are not a canonical transaction encoding.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// A signature does not verify.
    #[error("bad signature on transaction {0}")]
    BadSignature(Txid),
    /// The transaction breaks a structural limit (inputs, outputs, amounts).
    #[error("transaction violates a limit: {0}")]
    Limit(String),
}

impl TxRejection {
    /// Stable snake_case code reported to clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::BadSignature(_) => "bad_signature",
            Self::Limit(_) => "limit",
        }
    }
}

/// The stateless admission check: decode, size and signature.
///
/// Must be deterministic and independent of ledger state, because every replica runs it on a
/// proposal before voting and they must agree.
pub trait TxVerifier: Clone + Send + Sync + 'static {
    /// Checks `bytes` and returns the transaction's id.
    fn check(&self, bytes: &[u8]) -> Result<Txid, TxRejection>;

    /// The id of a transaction, without verifying its signatures. It may exclude the signature
    /// (ledger txids do), so equal ids do not imply equal bytes.
    fn txid(&self, bytes: &[u8]) -> Txid;
}

/// Outcome of one transaction in an executed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction this receipt is about.
    pub txid: Txid,
    /// `None` when applied; otherwise a stable snake_case rejection code
    /// (for example `insufficient_funds`, `spent_input`, `duplicate`).
    pub rejection: Option<&'static str>,
}

/// A deterministic state machine fed with finalized blocks in height order.
///
/// Implementations must produce the same receipts and commitment on every honest replica for
/// the same sequence of blocks, whatever their storage backend.
pub trait StateMachine: Send + 'static {
    /// Applies the transactions of one finalized block, in order.
    ///
    /// Every transaction passed the stateless [`TxVerifier`] check (blocks are only finalized
    /// after a quorum checked them), so only state-dependent failures remain; they are reported
    /// as rejection receipts and leave the state untouched.
    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt>;

    /// A commitment to the whole state after the last applied block.
    fn commitment(&self) -> [u8; 32];

    /// Whether a pending transaction can no longer apply (for example, its input was spent).
    ///
    /// Used to evict stale entries from the mempool after each block.
    fn is_stale(&self, tx: &[u8]) -> bool;
}
