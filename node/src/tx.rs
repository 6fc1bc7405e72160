//! The node's view of transactions and of the state machine that executes them.
//!
//! Consensus orders opaque byte strings. Two small traits connect it to the ledger:
//! [`TxVerifier`] is the stateless admission check (decode, size, signature) run by the
//! mempool and by every replica before it votes for a block, and [`StateMachine`] applies
//! finalized blocks deterministically and reports receipts and a state commitment. Keeping
//! these seams narrow lets the ledger crate (and its Redis-backed state) plug in without the
//! consensus code naming any ledger type.

use bytes::Bytes;
use coffer_ledger::hash::Hex;
use std::fmt;

/// Upper bound on the encoded size of one transaction, in bytes.
///
/// A protocol constant rather than configuration: every replica must decode the same blocks.
/// Large enough for the ledger's biggest transfers under the default genesis limits (256
/// inputs and 256 outputs take about 20 KB) and equal to the default genesis `max_tx_bytes`;
/// a genesis may set a lower limit, and a higher one is capped here.
pub const MAX_TX_BYTES: usize = 32 * 1024;

/// A transaction identifier: a 32-byte hash over the transaction's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Txid(pub [u8; 32]);

impl fmt::Debug for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Txid({})", Hex::new(&self.0))
    }
}

impl fmt::Display for Txid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Hex::new(&self.0).as_str())
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

    /// Most transactions the state machine executes in one block (its genesis limit): a
    /// larger block is neither proposed nor voted for, since executing it would reject it
    /// whole.
    fn max_block_txs(&self) -> usize {
        usize::MAX
    }
}

/// Outcome of one transaction in an executed block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The transaction this receipt is about.
    pub txid: Txid,
    /// `None` when applied; otherwise a stable snake_case rejection code
    /// (for example `insufficient_funds`, `input_already_spent`).
    pub rejection: Option<&'static str>,
    /// Numeric outcome: 0 when applied, else the state machine's rejection number (for
    /// coffer-ledger, `RejectCode::as_u16`, so a ledger `Receipt` can be rebuilt from
    /// `(txid, height, position, code)`).
    pub code: u16,
}

/// Why a state machine could not make an applied block durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PersistError {
    /// The storage backend failed (after its own retries).
    #[error("persisting block {height} failed: {reason}")]
    Backend {
        /// The block's height.
        height: u64,
        /// The backend's message.
        reason: String,
    },
}

/// A deterministic state machine fed with finalized blocks in height order.
///
/// Implementations must produce the same receipts and commitment on every honest replica for
/// the same sequence of blocks, whatever their storage backend.
pub trait StateMachine: Send + 'static {
    /// Height of the last applied and persisted block (zero at genesis). A machine restored
    /// from storage starts here.
    fn applied_height(&self) -> u64;

    /// Applies the transactions of one finalized block, in order.
    ///
    /// Every transaction passed the stateless [`TxVerifier`] check (blocks are only finalized
    /// after a quorum checked them), so only state-dependent failures remain; they are reported
    /// as rejection receipts and leave the state untouched.
    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt>;

    /// Waits until the machine may apply another block. A replica shutting down stops here,
    /// between blocks (see `shutdown::BlockGate`); by default it never waits.
    fn ready(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Makes the block last applied durable; returns once it is. The executor publishes a block
    /// (and receipts are signed) only after this returned `Ok`.
    fn persist(&mut self) -> impl std::future::Future<Output = Result<(), PersistError>> + Send;

    /// A commitment to the whole state after the last applied block.
    fn commitment(&self) -> [u8; 32];

    /// The canonical encoding of the full commitment record (what replicas sign); by default
    /// the 32-byte commitment itself.
    fn commitment_encoding(&self) -> Vec<u8> {
        self.commitment().to_vec()
    }
}
