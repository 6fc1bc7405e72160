//! The genesis document: chain id, issuer keys, replica set and limits.

use crate::amount::{Amount, MAX_SUPPLY};
use crate::encoding::{
    HARD_MAX_BLOCK_TXS, HARD_MAX_INPUTS, HARD_MAX_OUTPUTS, HARD_MAX_TX_BYTES, Writer,
};
use crate::hash::{Hash32, parse_hex, tagged_hash, tags};
use crate::keys::PublicKey;
use crate::tx::ChainId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;

/// Most issuer keys a genesis may list (issuer lookup is linear).
pub const MAX_ISSUERS: usize = 64;
/// Most replicas a genesis may list.
pub const MAX_REPLICAS: usize = 256;
/// Longest replica name, in bytes.
pub const MAX_REPLICA_NAME_LEN: usize = 64;

/// Errors validating a genesis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// No issuer keys.
    #[error("genesis lists no issuers")]
    NoIssuers,
    /// Too many issuer keys.
    #[error("genesis lists {0} issuers, more than {MAX_ISSUERS}")]
    TooManyIssuers(usize),
    /// The same issuer key twice.
    #[error("duplicate issuer key {0}")]
    DuplicateIssuer(PublicKey),
    /// Replica count not of the form 3f+1, or above the maximum.
    #[error("genesis lists {0} replicas; need 3f+1 for some f >= 0, at most {MAX_REPLICAS}")]
    BadReplicaCount(usize),
    /// The same replica key twice.
    #[error("duplicate replica key {0}")]
    DuplicateReplicaKey(String),
    /// An all-zero replica key (an unset placeholder, never a real ed25519 key).
    #[error("replica {0:?} has an all-zero public key")]
    ZeroReplicaKey(String),
    /// The same replica name twice.
    #[error("duplicate replica name {0:?}")]
    DuplicateReplicaName(String),
    /// Replica name empty or too long.
    #[error("replica name {0:?} must be 1..={MAX_REPLICA_NAME_LEN} bytes")]
    BadReplicaName(String),
    /// A limit out of range.
    #[error("limit {name} = {value} is outside 1..={max}")]
    BadLimit {
        /// Which limit.
        name: &'static str,
        /// Its value.
        value: u64,
        /// Its ceiling.
        max: u64,
    },
    /// Not valid genesis JSON.
    #[error("invalid genesis json: {0}")]
    Json(String),
}

/// A replica's ed25519 public key: 32 raw bytes. JSON: lower-case hex. The ledger does not
/// interpret it; the node verifies votes and receipts with it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaKey(pub [u8; 32]);

impl fmt::Display for ReplicaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::hash::Hex::new(&self.0).as_str())
    }
}

impl fmt::Debug for ReplicaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicaKey({self})")
    }
}

impl Serialize for ReplicaKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ReplicaKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_hex::<32>(&s)
            .map(ReplicaKey)
            .map_err(serde::de::Error::custom)
    }
}

/// One replica of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaInfo {
    /// Human-readable name (logs, metrics).
    pub name: String,
    /// ed25519 public key (consensus votes, p2p identity, receipt signatures).
    pub public_key: ReplicaKey,
}

/// Limits enforced by validation. Every one has a hard ceiling in [`crate::encoding`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest encoded signed transaction, in bytes.
    pub max_tx_bytes: u32,
    /// Most inputs per transfer.
    pub max_inputs: u16,
    /// Most outputs per transaction.
    pub max_outputs: u16,
    /// Most transactions per block.
    pub max_block_txs: u32,
    /// Largest page of history entries, or of an address's unspent outputs, that a replica
    /// answers; a larger request gets this many, with a cursor to the rest.
    pub max_history_page: u32,
    /// Most money that may ever be minted, at most [`MAX_SUPPLY`].
    pub supply_cap: Amount,
    /// How many blocks a spent output is remembered: a transfer spending it within that many
    /// blocks of its spend is rejected as `input_already_spent`, later as `unknown_input` (the
    /// outpoint is then as unknown as one that never existed). It bounds the memory and storage
    /// the spent outputs take: without it they would grow with every transfer.
    pub spent_horizon: u32,
}

impl Default for Limits {
    /// 256 inputs and outputs fit well within 32 KiB (36 and 41 bytes each); 10 000 transactions
    /// per block bounds one block's execution to tens of milliseconds. 10 000 blocks of spends
    /// are about 50 minutes of an idle network (an empty block every 300 ms) and one to two
    /// minutes under load (n=1 made 215 blocks/s at 3,000 transfers/s, n=4 about 80 at 2,000): at most a few hundred thousand to two million outpoints, about 100 bytes
    /// of memory each.
    fn default() -> Self {
        Limits {
            max_tx_bytes: 32 * 1024,
            max_inputs: 256,
            max_outputs: 256,
            max_block_txs: 10_000,
            max_history_page: 1000,
            supply_cap: MAX_SUPPLY,
            spent_horizon: 10_000,
        }
    }
}

impl Limits {
    /// Checks every limit is at least 1 and at most its hard ceiling.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let checks: [(&'static str, u64, u64); 7] = [
            (
                "max_tx_bytes",
                u64::from(self.max_tx_bytes),
                HARD_MAX_TX_BYTES as u64,
            ),
            (
                "max_inputs",
                u64::from(self.max_inputs),
                HARD_MAX_INPUTS as u64,
            ),
            (
                "max_outputs",
                u64::from(self.max_outputs),
                HARD_MAX_OUTPUTS as u64,
            ),
            (
                "max_block_txs",
                u64::from(self.max_block_txs),
                HARD_MAX_BLOCK_TXS as u64,
            ),
            (
                "max_history_page",
                u64::from(self.max_history_page),
                100_000,
            ),
            ("supply_cap", self.supply_cap.0, MAX_SUPPLY.0),
            (
                "spent_horizon",
                u64::from(self.spent_horizon),
                u64::from(u32::MAX),
            ),
        ];
        for (name, value, max) in checks {
            if value == 0 || value > max {
                return Err(GenesisError::BadLimit { name, value, max });
            }
        }
        Ok(())
    }

    fn encode(&self, w: &mut Writer) {
        w.u32(self.max_tx_bytes);
        w.u16(self.max_inputs);
        w.u16(self.max_outputs);
        w.u32(self.max_block_txs);
        w.u32(self.max_history_page);
        w.u64(self.supply_cap.0);
        w.u32(self.spent_horizon);
    }
}

/// The genesis: everything every replica must agree on before the first block.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Network identifier, bound into every txid and signature.
    pub chain_id: ChainId,
    /// Keys allowed to mint.
    pub issuers: Vec<PublicKey>,
    /// The replica set, n = 3f+1.
    pub replicas: Vec<ReplicaInfo>,
    /// Validation limits.
    #[serde(default)]
    pub limits: Limits,
}

impl Genesis {
    /// Checks issuers (1..=64, distinct), replicas (n = 3f+1, distinct names and keys) and limits.
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.issuers.is_empty() {
            return Err(GenesisError::NoIssuers);
        }
        if self.issuers.len() > MAX_ISSUERS {
            return Err(GenesisError::TooManyIssuers(self.issuers.len()));
        }
        let mut seen = BTreeSet::new();
        for k in &self.issuers {
            if !seen.insert(*k) {
                return Err(GenesisError::DuplicateIssuer(*k));
            }
        }
        let n = self.replicas.len();
        if n == 0 || n % 3 != 1 || n > MAX_REPLICAS {
            return Err(GenesisError::BadReplicaCount(n));
        }
        let mut keys = BTreeSet::new();
        let mut names = BTreeSet::new();
        for r in &self.replicas {
            if r.name.is_empty() || r.name.len() > MAX_REPLICA_NAME_LEN {
                return Err(GenesisError::BadReplicaName(r.name.clone()));
            }
            if r.public_key.0 == [0u8; 32] {
                return Err(GenesisError::ZeroReplicaKey(r.name.clone()));
            }
            if !keys.insert(r.public_key) {
                return Err(GenesisError::DuplicateReplicaKey(r.public_key.to_string()));
            }
            if !names.insert(r.name.as_str()) {
                return Err(GenesisError::DuplicateReplicaName(r.name.clone()));
            }
        }
        self.limits.validate()
    }

    /// Parses and validates genesis JSON.
    pub fn from_json(json: &str) -> Result<Self, GenesisError> {
        let g: Genesis =
            serde_json::from_str(json).map_err(|e| GenesisError::Json(e.to_string()))?;
        g.validate()?;
        Ok(g)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("genesis serialises: plain data, string keys")
    }

    /// Number of replicas.
    pub fn n(&self) -> usize {
        self.replicas.len()
    }

    /// Faults tolerated: n = 3f+1.
    pub fn f(&self) -> usize {
        self.replicas.len().saturating_sub(1) / 3
    }

    /// Votes for a BFT quorum: 2f+1.
    pub fn quorum(&self) -> usize {
        2 * self.f() + 1
    }

    /// Matching signed receipts a client needs: f+1.
    pub fn receipt_quorum(&self) -> usize {
        self.f() + 1
    }

    /// True if `key` may mint.
    pub fn is_issuer(&self, key: &PublicKey) -> bool {
        self.issuers.contains(key)
    }

    /// `tagged_hash("coffer/genesis", canonical encoding)`; see `ENCODING.md`. Also the state
    /// hash at height 0.
    ///
    /// # Panics
    /// On a genesis that fails [`Genesis::validate`] with more issuers or replicas than fit
    /// the encoding; validated genesis documents never do.
    pub fn genesis_hash(&self) -> Hash32 {
        let mut w = Writer::new();
        self.chain_id.encode(&mut w);
        w.count_u16(self.issuers.len());
        for k in &self.issuers {
            w.bytes(&k.to_bytes());
        }
        w.count_u16(self.replicas.len());
        for r in &self.replicas {
            w.count_u16(r.name.len());
            w.bytes(r.name.as_bytes());
            w.bytes(&r.public_key.0);
        }
        self.limits.encode(&mut w);
        Hash32(tagged_hash(tags::GENESIS, &[&w.into_bytes()]))
    }
}
