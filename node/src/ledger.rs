//! `coffer-ledger` behind the node's transaction seams ([`TxVerifier`], [`StateMachine`]).
//!
//! The verifier is the ledger's own stateless check ([`coffer_ledger::verify_bytes`]: decode,
//! limits, chain id, signature). The state machine is an in-memory [`LedgerState`]; a
//! Redis-backed machine persists [`coffer_ledger::Applied::change`] inside `apply_block`.

use crate::tx::{Receipt, StateMachine, TxRejection, TxVerifier, Txid};
use bytes::Bytes;
use coffer_ledger::{
    ApplyError, Block, Genesis, LedgerState, Outcome, RejectCode, SignedTransaction, Transaction,
    hash::tagged_hash, verify_bytes,
};
use std::sync::Arc;
use tracing::error;

/// Receipt code for a transaction whose bytes do not decode in a finalized block. It cannot
/// happen while at most f replicas are faulty (a quorum checked the block before voting).
const UNDECODABLE: &str = "malformed";
/// Receipt code for every transaction of a finalized block above the genesis block limit.
const BLOCK_TOO_LARGE: &str = "block_too_large";

/// Maps a ledger rejection to the seam's stateless rejection.
fn rejection(code: RejectCode, bytes: &[u8], genesis: &Genesis) -> TxRejection {
    match code {
        RejectCode::Malformed => TxRejection::Malformed("transaction does not decode".into()),
        RejectCode::TxTooLarge => TxRejection::TooLarge {
            size: bytes.len(),
            max: genesis.limits.max_tx_bytes as usize,
        },
        RejectCode::BadSignature => TxRejection::BadSignature(fallback_txid(bytes)),
        other => TxRejection::Limit(other.as_str().to_string()),
    }
}

/// An id for bytes that do not decode (ledger txids need a decoded transaction).
fn fallback_txid(bytes: &[u8]) -> Txid {
    SignedTransaction::decode(bytes)
        .map(|stx| Txid(stx.txid().0))
        .unwrap_or_else(|_| Txid(tagged_hash("coffer/node/undecodable", &[bytes])))
}

/// The ledger's stateless check.
#[derive(Clone, Debug)]
pub struct LedgerVerifier {
    genesis: Arc<Genesis>,
}

impl LedgerVerifier {
    /// A verifier for transactions of `genesis`'s chain.
    pub fn new(genesis: Arc<Genesis>) -> Self {
        Self { genesis }
    }
}

impl TxVerifier for LedgerVerifier {
    fn check(&self, bytes: &[u8]) -> Result<Txid, TxRejection> {
        verify_bytes(&self.genesis, bytes)
            .map(|(txid, _)| Txid(txid.0))
            .map_err(|code| rejection(code, bytes, &self.genesis))
    }

    fn txid(&self, bytes: &[u8]) -> Txid {
        fallback_txid(bytes)
    }
}

/// An in-memory ledger fed with finalized blocks.
#[derive(Debug)]
pub struct LedgerMachine {
    state: LedgerState,
}

impl LedgerMachine {
    /// A ledger at genesis.
    pub fn new(genesis: Genesis) -> Result<Self, coffer_ledger::GenesisError> {
        Ok(Self {
            state: LedgerState::new(genesis)?,
        })
    }

    /// The ledger state (read-only).
    pub fn state(&self) -> &LedgerState {
        &self.state
    }
}

impl StateMachine for LedgerMachine {
    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt> {
        let mut receipts: Vec<Option<Receipt>> = vec![None; txs.len()];
        let mut decoded = Vec::with_capacity(txs.len());
        let mut positions = Vec::with_capacity(txs.len());
        for (i, bytes) in txs.iter().enumerate() {
            match SignedTransaction::decode(bytes) {
                Ok(stx) => {
                    decoded.push(stx);
                    positions.push(i);
                }
                Err(e) => {
                    error!(height, index = i, error = %e, "finalized block carries undecodable bytes");
                    receipts[i] = Some(Receipt {
                        txid: fallback_txid(bytes),
                        rejection: Some(UNDECODABLE),
                    });
                }
            }
        }
        let block = Block {
            height,
            txs: decoded,
        };
        match self.state.apply(&block) {
            Ok(applied) => {
                assert_eq!(
                    applied.receipts.len(),
                    positions.len(),
                    "one receipt per tx"
                );
                for (receipt, i) in applied.receipts.iter().zip(positions) {
                    receipts[i] = Some(Receipt {
                        txid: Txid(receipt.txid.0),
                        rejection: match receipt.outcome {
                            Outcome::Accepted => None,
                            Outcome::Rejected(code) => Some(code.as_str()),
                        },
                    });
                }
            }
            Err(ApplyError::TooManyTxs { got, max }) => {
                // Deterministic on every replica: the block's height is consumed, nothing in
                // it applies.
                error!(
                    height,
                    got, max, "finalized block above the genesis block limit"
                );
                let empty = Block {
                    height,
                    txs: Vec::new(),
                };
                if let Err(e) = self.state.apply(&empty) {
                    panic!("ledger refused an empty block at height {height}: {e}");
                }
                for (stx, i) in block.txs.iter().zip(positions) {
                    receipts[i] = Some(Receipt {
                        txid: Txid(stx.txid().0),
                        rejection: Some(BLOCK_TOO_LARGE),
                    });
                }
            }
            Err(e) => panic!("executor broke the ledger's height order: {e}"),
        }
        receipts
            .into_iter()
            .map(|r| r.expect("every position has a receipt"))
            .collect()
    }

    fn commitment(&self) -> [u8; 32] {
        // The state hash alone commits to the whole state and history (see `Commitment`).
        self.state.commitment().state_hash.0
    }

    fn is_stale(&self, tx: &[u8]) -> bool {
        let Ok(stx) = SignedTransaction::decode(tx) else {
            return true;
        };
        match &stx.tx {
            Transaction::Transfer(t) => t.inputs.iter().any(|op| self.state.is_spent(op)),
            Transaction::Mint(_) => self.state.is_mint_committed(&stx.txid()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use coffer_ledger::{
        Amount, ChainId, Keypair, Limits, Mint, OutPoint, ReplicaInfo, ReplicaKey, Transfer, TxOut,
    };

    #[test]
    fn ledger_through_the_seams() {
        let issuer = Keypair::from_secret_bytes([7; 32]).unwrap();
        let alice = Keypair::from_secret_bytes([8; 32]).unwrap();
        let genesis = Genesis {
            chain_id: ChainId::new("seam").unwrap(),
            issuers: vec![issuer.public_key()],
            replicas: vec![ReplicaInfo {
                name: "r0".into(),
                public_key: ReplicaKey([1; 32]),
            }],
            limits: Limits::default(),
        };
        let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
        let mint = issuer.sign_tx(Transaction::Mint(Mint {
            chain_id: genesis.chain_id.clone(),
            issuer: issuer.public_key(),
            nonce: 1,
            outputs: vec![TxOut::to_address(Amount(10), alice.address())],
        }));
        let spend = |amount| {
            alice.sign_tx(Transaction::Transfer(Transfer {
                chain_id: genesis.chain_id.clone(),
                signer: alice.public_key(),
                inputs: vec![OutPoint {
                    txid: mint.txid(),
                    vout: 0,
                }],
                outputs: vec![TxOut::to_address(Amount(amount), issuer.address())],
            }))
        };
        let (a, b) = (
            Bytes::from(spend(10).encode()),
            Bytes::from(spend(9).encode()),
        );
        let m = Bytes::from(mint.encode());
        assert_eq!(verifier.check(&m).unwrap(), Txid(mint.txid().0));
        assert!(matches!(
            verifier.check(&m[..5]),
            Err(TxRejection::Malformed(_))
        ));
        let mut machine = LedgerMachine::new(genesis).unwrap();
        let receipts = machine.apply_block(1, &[m.clone(), a.clone(), b.clone()]);
        assert_eq!(receipts[0].rejection, None);
        assert_eq!(receipts[1].rejection, None);
        assert_eq!(receipts[2].rejection, Some("input_already_spent"));
        assert!(machine.is_stale(&b));
        assert!(machine.is_stale(&m));
        assert_ne!(machine.commitment(), [0; 32]);
    }
}
