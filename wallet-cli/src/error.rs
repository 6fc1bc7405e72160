//! The client's errors and the CLI's exit codes. A result that could not be verified is an
//! error ([`ClientError::Unverifiable`]), never a success.

use crate::coins::SelectError;
use crate::config::ConfigError;
use crate::keystore::KeystoreError;
use serde::Serialize;

/// Exit codes of the `coffer` command (stable; documented in the README).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Bad usage: arguments, cluster config, unknown key name, malformed input file.
    pub const USAGE: u8 = 1;
    /// The ledger rejected the transaction (proven by f+1 replicas), funds are insufficient,
    /// or the thing asked for does not exist.
    pub const REJECTED: u8 = 2;
    /// No answer could be verified: replicas disagreed or their signatures do not check out.
    pub const UNVERIFIABLE: u8 = 3;
    /// Not enough replicas reachable: network errors, timeouts, busy gateways.
    pub const UNAVAILABLE: u8 = 4;
    /// Keystore problem: wrong password, unreadable or insecure file, unknown key.
    pub const KEYSTORE: u8 = 5;
}

/// What went wrong with one replica during a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplicaProblem {
    /// The replica's name from the cluster config.
    pub replica: String,
    /// Category.
    pub kind: ProblemKind,
    /// Detail for a person.
    pub detail: String,
}

/// Category of a [`ReplicaProblem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// No answer: connection, TLS, timeout.
    Unreachable,
    /// Answered 429/503/504/5xx: overloaded or not ready.
    Busy,
    /// Answered something whose signatures do not prove it (a lie, or out of date).
    Unverified,
    /// Answered an error status for the request.
    Refused,
    /// Answered with a verified state older than one this client already saw.
    Stale,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The cluster configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad input from the user (address, amount, file).
    #[error("{0}")]
    Usage(String),
    /// Keystore failure.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The ledger rejected the transaction.
    #[error("rejected by the ledger: {code}: {message}")]
    Rejected {
        /// The ledger's reject code.
        code: String,
        /// How it was established.
        message: String,
    },
    /// Coin selection failed (not enough money, too many inputs).
    #[error(transparent)]
    Funds(#[from] SelectError),
    /// The thing asked for does not exist on f+1 replicas.
    #[error("not found: {0}")]
    NotFound(String),
    /// No replica gave an answer that f+1 replicas signed.
    #[error("could not verify {what}: no answer carried {threshold} matching replica signatures ({})", summary(.problems))]
    Unverifiable {
        /// The operation.
        what: String,
        /// f+1.
        threshold: usize,
        /// Per-replica problems.
        problems: Vec<ReplicaProblem>,
    },
    /// Not enough replicas answered.
    #[error("cluster unavailable for {what} ({})", summary(.problems))]
    Unavailable {
        /// The operation.
        what: String,
        /// Per-replica problems.
        problems: Vec<ReplicaProblem>,
    },
}

fn summary(problems: &[ReplicaProblem]) -> String {
    if problems.is_empty() {
        return "no replica tried".into();
    }
    problems
        .iter()
        .map(|p| format!("{}: {}", p.replica, p.detail))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ClientError {
    /// The CLI exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Config(_) | ClientError::Usage(_) => exit::USAGE,
            ClientError::Keystore(_) => exit::KEYSTORE,
            ClientError::Rejected { .. } | ClientError::Funds(_) | ClientError::NotFound(_) => {
                exit::REJECTED
            }
            ClientError::Unverifiable { .. } => exit::UNVERIFIABLE,
            ClientError::Unavailable { .. } => exit::UNAVAILABLE,
        }
    }

    /// A stable snake_case code for scripts (`--json`).
    pub fn code(&self) -> String {
        match self {
            ClientError::Config(_) => "bad_cluster_config".into(),
            ClientError::Usage(_) => "usage".into(),
            ClientError::Keystore(e) => e.code().into(),
            ClientError::Rejected { code, .. } => code.clone(),
            ClientError::Funds(e) => e.code().into(),
            ClientError::NotFound(_) => "not_found".into(),
            ClientError::Unverifiable { .. } => "unverifiable".into(),
            ClientError::Unavailable { .. } => "unavailable".into(),
        }
    }

    /// Per-replica problems, when the error came from talking to the cluster.
    pub fn problems(&self) -> &[ReplicaProblem] {
        match self {
            ClientError::Unverifiable { problems, .. }
            | ClientError::Unavailable { problems, .. } => problems,
            _ => &[],
        }
    }
}
