//! The REST API's JSON shapes (`docs/api.md`, `docs/openapi.json`), shared by the gateway,
//! which writes them, and the wallet, which reads them; and the binary form of a submission's
//! answer ([`SubmitOutcome::encode`]). Plain data: nothing read here is trusted
//! before the signatures in it are checked ([`crate::attest`]). Unknown fields are tolerated
//! when reading, so that a newer gateway does not break an older wallet.

use crate::Txid;
use crate::attest::{
    AttestError, MAX_ATTESTATIONS, ReadResult, ReadStatement, ReceiptStatement, Signed,
    decode_receipt_list, encode_receipt_list,
};
use serde::{Deserialize, Serialize};

/// Whether a transaction is committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Accepted into the mempool, not yet in a finalized block.
    Pending,
    /// In a finalized block; `code` and receipts say how it went.
    Committed,
}

/// A transaction's status and every receipt this replica gathered for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBundle {
    /// The transaction id.
    pub txid: Txid,
    /// Pending or committed.
    pub status: TxStatus,
    /// Height of the block holding it, when committed.
    pub height: Option<u64>,
    /// `ok` or the ledger's reject code, when committed.
    pub code: Option<String>,
    /// Signed receipts from distinct replicas (this one included). For a committed transaction
    /// at least f+1 of them match; 2f+1 when the peers answered in time.
    pub receipts: Vec<Signed<ReceiptStatement>>,
}

impl ReceiptBundle {
    /// The answer for `txid` before its block is finalized: pending, no receipts yet.
    pub fn pending(txid: Txid) -> Self {
        Self {
            txid,
            status: TxStatus::Pending,
            height: None,
            code: None,
            receipts: Vec::new(),
        }
    }
}

/// What a submission did (`POST /v1/transactions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOutcome {
    /// True when the transaction had already been committed before this submission: nothing was
    /// applied again and the receipts are the original ones.
    pub replayed: bool,
    /// Status and receipts.
    pub bundle: ReceiptBundle,
}

impl SubmitOutcome {
    /// The media type of the binary form ([`SubmitOutcome::encode`]). A client that lists it
    /// in `Accept` gets a successful submission's answer in it; errors stay JSON.
    pub const MEDIA_TYPE: &'static str = "application/octet-stream";

    /// First byte of the binary form: its version.
    const BINARY_V1: u8 = 1;

    /// The binary form: version (1), replayed (0 or 1), txid (32 bytes), status (0 pending,
    /// 1 committed), height (0, or 1 and a u64), code (0, or 1 and a u8 length and UTF-8),
    /// then the receipts ([`crate::attest::encode_receipt_list`]). Integers are big-endian.
    /// The same content as the JSON answer in less than half the bytes, written and read
    /// without hex.
    pub fn encode(&self) -> Result<Vec<u8>, AttestError> {
        let b = &self.bundle;
        let mut out = Vec::with_capacity(48 + b.receipts.len() * 400);
        out.push(Self::BINARY_V1);
        out.push(u8::from(self.replayed));
        out.extend_from_slice(b.txid.as_bytes());
        out.push(match b.status {
            TxStatus::Pending => 0,
            TxStatus::Committed => 1,
        });
        match b.height {
            None => out.push(0),
            Some(h) => {
                out.push(1);
                out.extend_from_slice(&h.to_be_bytes());
            }
        }
        match &b.code {
            None => out.push(0),
            Some(code) => {
                let len =
                    u8::try_from(code.len()).map_err(|_| AttestError::BadCode(code.clone()))?;
                out.push(1);
                out.push(len);
                out.extend_from_slice(code.as_bytes());
            }
        }
        encode_receipt_list(&b.receipts, &mut out)?;
        Ok(out)
    }

    /// Reads the binary form. Anything else (another version, a flag other than 0 or 1,
    /// truncation, trailing bytes, more than [`MAX_ATTESTATIONS`] receipts) is an error; no
    /// input panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestError> {
        let bad = |what: String| AttestError::Malformed(format!("submit outcome: {what}"));
        let mut rest = bytes;
        let mut take = |n: usize, what: &str| -> Result<&[u8], AttestError> {
            if rest.len() < n {
                return Err(bad(format!("truncated in {what}")));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let flag = |byte: u8, what: &str| match byte {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(bad(format!("{what} flag {other}"))),
        };
        let version = take(1, "version")?[0];
        if version != Self::BINARY_V1 {
            return Err(bad(format!("version {version}")));
        }
        let replayed = flag(take(1, "replayed")?[0], "replayed")?;
        let mut txid = [0u8; 32];
        txid.copy_from_slice(take(32, "txid")?);
        let status = match take(1, "status")?[0] {
            0 => TxStatus::Pending,
            1 => TxStatus::Committed,
            other => return Err(bad(format!("status {other}"))),
        };
        let height = if flag(take(1, "height")?[0], "height")? {
            let mut h = [0u8; 8];
            h.copy_from_slice(take(8, "height")?);
            Some(u64::from_be_bytes(h))
        } else {
            None
        };
        let code = if flag(take(1, "code")?[0], "code")? {
            let len = usize::from(take(1, "code length")?[0]);
            let code = std::str::from_utf8(take(len, "code")?)
                .map_err(|_| bad("code is not UTF-8".into()))?;
            Some(code.to_owned())
        } else {
            None
        };
        let receipts = decode_receipt_list(&mut rest, MAX_ATTESTATIONS)?;
        if !rest.is_empty() {
            return Err(bad(format!("{} trailing bytes", rest.len())));
        }
        Ok(SubmitOutcome {
            replayed,
            bundle: ReceiptBundle {
                txid: Txid(txid),
                status,
                height,
                code,
                receipts,
            },
        })
    }
}

/// A read answered at one height, with the replicas' signed statements about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestedRead {
    /// Height of the state that was read.
    pub height: u64,
    /// State commitment at that height. JSON: hex.
    pub commitment: String,
    /// The result.
    pub result: ReadResult,
    /// Signed statements from distinct replicas, at least f+1 of them matching `result` at
    /// `height`.
    pub attestations: Vec<Signed<ReadStatement>>,
}

/// One transaction in a block, as listed by the block endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTx {
    /// Its id.
    pub txid: Txid,
    /// `ok` or the ledger's reject code.
    pub code: String,
}

/// A finalized block of the global ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Height (1 is the first block after genesis).
    pub height: u64,
    /// State commitment after the block. JSON: hex.
    pub commitment: String,
    /// Transactions in block order with their result codes.
    pub transactions: Vec<BlockTx>,
}

/// Answer of `GET /v1/blocks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockList {
    /// The blocks, ascending.
    pub blocks: Vec<BlockView>,
}

/// One replica as seen by the replica answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Name from the genesis.
    pub name: String,
    /// ed25519 public key. JSON: hex.
    pub public_key: String,
    /// Last finalized height it reported, if known.
    pub height: Option<u64>,
    /// Whether it answered recently.
    pub reachable: bool,
}

/// Cluster status as seen by the replica answering.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Network identifier.
    pub chain_id: String,
    /// Name of the replica answering.
    pub replica: String,
    /// Its last finalized height.
    pub height: u64,
    /// Current consensus view.
    pub view: u64,
    /// Public key of the current view's leader (hex), if known.
    pub leader: Option<String>,
    /// Every genesis replica.
    pub replicas: Vec<ReplicaStatus>,
    /// Whether this replica is in sync and a quorum is reachable.
    pub healthy: bool,
    /// f: the number of faulty replicas tolerated.
    pub max_faulty: u64,
}

/// One check of a replica's health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `api`, `executing`, `store`, `peers` or `stopping`.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What was seen, for an operator.
    pub detail: String,
}

/// A replica's own health: served at `/v1/health` (200 when healthy, 503 when not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Every check passes.
    pub healthy: bool,
    /// Name of the replica answering.
    pub replica: String,
    /// Its last executed (persisted) height.
    pub height: u64,
    /// The checks.
    pub checks: Vec<HealthCheck>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed outcome with `n` receipts of one block of 100 (proofs of seven hashes).
    fn committed(n: u8) -> SubmitOutcome {
        let statements: Vec<ReceiptStatement> = (0..100u8)
            .map(|i| ReceiptStatement {
                chain_id: "coffer-test".into(),
                txid: [i; 32],
                height: 42,
                code: "input_already_spent".into(),
                commitment: [0xc0; 32],
            })
            .collect();
        let receipts = (1..=n)
            .map(|k| {
                let key = ed25519_dalek::SigningKey::from_bytes(&[k; 32]);
                crate::attest::sign_receipts(statements.clone(), &key)
                    .expect("signs")
                    .swap_remove(9)
            })
            .collect();
        SubmitOutcome {
            replayed: true,
            bundle: ReceiptBundle {
                txid: Txid([9; 32]),
                status: TxStatus::Committed,
                height: Some(42),
                code: Some("input_already_spent".into()),
                receipts,
            },
        }
    }

    fn pending() -> SubmitOutcome {
        SubmitOutcome {
            replayed: false,
            bundle: ReceiptBundle::pending(Txid([1; 32])),
        }
    }

    #[test]
    fn the_binary_submit_outcome_round_trips_and_is_smaller_than_json() {
        for outcome in [pending(), committed(1), committed(4)] {
            let bytes = outcome.encode().expect("encodes");
            assert_eq!(SubmitOutcome::decode(&bytes).expect("decodes"), outcome);
            let json = serde_json::to_vec(&outcome).expect("serializes");
            assert!(
                bytes.len() < json.len() / 2,
                "{} vs {}",
                bytes.len(),
                json.len()
            );
        }
        // The proofs still prove: the decoded receipts carry what was signed.
        let back =
            SubmitOutcome::decode(&committed(4).encode().expect("encodes")).expect("decodes");
        assert!(
            back.bundle
                .receipts
                .iter()
                .all(|r| r.verify_signature().is_ok())
        );
    }

    #[test]
    fn a_malformed_binary_submit_outcome_is_refused() {
        let bytes = committed(4).encode().expect("encodes");
        for cut in 0..bytes.len() {
            assert!(
                SubmitOutcome::decode(&bytes[..cut]).is_err(),
                "prefix {cut}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SubmitOutcome::decode(&trailing).is_err());
        // Version, replayed flag, status, height flag: each byte only takes its defined values.
        for (at, bad) in [(0, 2u8), (1, 2), (34, 2), (35, 2)] {
            let mut x = bytes.clone();
            x[at] = bad;
            assert!(SubmitOutcome::decode(&x).is_err(), "byte {at} = {bad}");
        }
        // A receipt count far above what the input holds.
        let mut forged = pending().encode().expect("encodes");
        let n = forged.len();
        forged[n - 2..].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(SubmitOutcome::decode(&forged).is_err());
        // Arbitrary bytes never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600 {
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect();
            let _ = SubmitOutcome::decode(&junk);
            let mut flipped = bytes.clone();
            let at = usize::try_from(x % bytes.len() as u64).expect("fits");
            flipped[at] ^= 0x5a;
            if let Ok(o) = SubmitOutcome::decode(&flipped) {
                // A flip that still decodes must decode to something else, canonically.
                assert_eq!(o.encode().expect("re-encodes"), flipped);
            }
        }
    }

    #[test]
    fn a_newer_gateways_extra_fields_are_tolerated_and_known_ones_round_trip() {
        let status = ClusterStatus {
            chain_id: "coffer-test".into(),
            replica: "replica0".into(),
            height: 7,
            view: 9,
            leader: None,
            replicas: vec![ReplicaStatus {
                name: "replica0".into(),
                public_key: "00".repeat(32),
                height: Some(7),
                reachable: true,
            }],
            healthy: true,
            max_faulty: 0,
        };
        let mut json = serde_json::to_value(&status).expect("serializes");
        assert_eq!(
            serde_json::from_value::<ClusterStatus>(json.clone()).expect("round trips"),
            status
        );
        json["added_in_a_later_release"] = serde_json::json!({"x": 1});
        json["replicas"][0]["also_new"] = serde_json::json!(true);
        assert_eq!(
            serde_json::from_value::<ClusterStatus>(json).expect("extra fields tolerated"),
            status
        );
        // A missing field is still an error: tolerance covers additions only.
        let mut partial = serde_json::to_value(&status).expect("serializes");
        partial.as_object_mut().expect("an object").remove("height");
        assert!(serde_json::from_value::<ClusterStatus>(partial).is_err());
    }
}
