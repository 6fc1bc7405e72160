//! The storage error type.

/// Why a storage operation failed.
///
/// [`StorageError::is_retryable`] separates transient conditions (Redis unreachable, failover in
/// progress, replicas not yet acknowledging) from errors that retrying cannot fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Redis returned an error or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Retries were exhausted on a transient failure.
    #[error("redis unavailable after {attempts} attempts in {elapsed_ms} ms: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// Time spent retrying.
        elapsed_ms: u64,
        /// The last transient error.
        last: Box<StorageError>,
    },
    /// `WAIT` returned before enough replicas acknowledged the write.
    #[error("write not durable: {acked} of {wanted} replicas acknowledged within {timeout_ms} ms")]
    NotDurable {
        /// Replicas that acknowledged.
        acked: u64,
        /// Replicas required.
        wanted: u32,
        /// The `WAIT` timeout.
        timeout_ms: u64,
    },
    /// A block arrived out of order.
    #[error("out of order block: expected height {expected}, got {got}")]
    OutOfOrder {
        /// The next height the store accepts.
        expected: u64,
        /// The height offered.
        got: u64,
    },
    /// A block already persisted at this height differs from the one offered.
    #[error("conflicting block at height {height}: a different block is already persisted")]
    Conflict {
        /// The height.
        height: u64,
    },
    /// A persisted value could not be decoded or breaks an invariant.
    #[error("corrupt value at {key}: {reason}")]
    Corrupt {
        /// The key (or field) read.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A change or read argument broke a documented limit.
    #[error("{what} is {got}, above the limit of {max}")]
    Limit {
        /// What was too large.
        what: &'static str,
        /// Its size.
        got: u64,
        /// The limit.
        max: u64,
    },
    /// An address cannot be used in a key.
    #[error("invalid address {0:?}")]
    InvalidAddress(String),
    /// The change is inconsistent with the block it comes with.
    #[error("invalid change: {0}")]
    InvalidChange(String),
    /// The configuration is unusable.
    #[error("invalid storage config: {0}")]
    Config(String),
    /// The ledger refused to rebuild its state from the persisted data.
    #[error("ledger restore failed: {0}")]
    Restore(#[from] coffer_ledger::RestoreError),
    /// The rebuilt ledger's commitment differs from the persisted one.
    #[error("restored state's commitment differs from the persisted one at height {height}")]
    CommitmentMismatch {
        /// The applied height.
        height: u64,
    },
    /// A test failpoint stopped a write half way (simulated crash).
    #[error("failpoint hit after {0} commands")]
    Failpoint(usize),
}

impl StorageError {
    /// Whether retrying the same operation may succeed (the server or a replica is transiently
    /// unavailable), as opposed to a bug, corrupt data or a rejected argument.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Redis(e) => redis_error_is_transient(e),
            Self::NotDurable { .. } => true,
            _ => false,
        }
    }
}

/// Server error codes that a failover or a restarting server produces.
/// MOVED and ASK reach us only when the client's own redirect budget ran out while the cluster
/// was still reshaping; its slot map is refreshed by then, so a retry follows the new owner.
const TRANSIENT_CODES: [&str; 10] = [
    "MOVED",
    "ASK",
    "READONLY",
    "LOADING",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "NOREPLICAS",
    "EXECABORT",
    "UNBLOCKED",
];

/// Connection failures, timeouts and failover-time server errors are transient; a syntax or
/// type error is a bug and must not be retried forever.
pub(crate) fn redis_error_is_transient(e: &redis::RedisError) -> bool {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() {
        return true;
    }
    if matches!(
        e.kind(),
        redis::ErrorKind::ClusterConnectionNotFound
            | redis::ErrorKind::MasterNameNotFoundBySentinel
            | redis::ErrorKind::EmptySentinelList
            | redis::ErrorKind::Io
    ) {
        return true;
    }
    if e.code().is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return true;
    }
    // A transaction or pipeline reports per-command server errors; any transient one (say a
    // READONLY from a demoted master) makes the whole attempt transient.
    if let Some(errors) = e.clone().into_server_errors() {
        return errors
            .iter()
            .any(|(_, se)| TRANSIENT_CODES.contains(&se.code()));
    }
    // Messages the client builds itself for a connection that went away.
    let text = e.to_string();
    text.contains("Connection refused")
        || text.contains("broken pipe")
        || text.contains("Broken pipe")
        || text.contains("reset by peer")
        || text.contains("Couldn't")
}
