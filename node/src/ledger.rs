//! `coffer-ledger` behind the node's transaction seams ([`TxVerifier`], [`StateMachine`]).
//!
//! The verifier is the ledger's own stateless check ([`coffer_ledger::verify_bytes`]: decode,
//! limits, chain id, signature). Verifier and state machine of one replica share a
//! [`VerifiedSignatures`] cache, so that the bytes of a pending transaction are decoded and its
//! signature verified once, however many times it is checked, looked up and executed. The
//! state machine is a [`LedgerState`] in memory, shared with
//! the read path ([`LedgerView`]), whose every applied block is persisted through a
//! [`Storage`] (memory or Redis) before the executor publishes it. A machine opened on a store
//! that already holds blocks restores its state from it (commitment checked).

use crate::sigcache::VerifiedSignatures;
use crate::storage::{self, Storage, StorageError};
use crate::tx::{MAX_TX_BYTES, PersistError, Receipt, StateMachine, TxRejection, TxVerifier, Txid};
use bytes::Bytes;
use coffer_ledger::{
    Applied, ApplyError, Block, Genesis, HistoryMode, IdentifiedTx, LedgerState, Outcome,
    RejectCode, hash::tagged_hash, validate::check_rules,
};
use std::sync::{
    Arc, RwLock, RwLockReadGuard,
    atomic::{AtomicU64, Ordering},
};
use tracing::error;

/// Receipt code for a transaction whose bytes do not decode in a finalized block. It cannot
/// happen while at most f replicas are faulty (a quorum checked the block before voting).
const UNDECODABLE: &str = "malformed";
/// Receipt code for every transaction of a finalized block above the genesis block limit.
const BLOCK_TOO_LARGE: &str = "block_too_large";
/// Numeric code of [`BLOCK_TOO_LARGE`]; outside the ledger's reject code numbers.
pub const BLOCK_TOO_LARGE_CODE: u16 = u16::MAX;

/// A failed stateless check: the ledger's code, and the txid if the bytes decoded.
struct Refusal {
    code: RejectCode,
    txid: Option<coffer_ledger::Txid>,
}

impl From<RejectCode> for Refusal {
    fn from(code: RejectCode) -> Self {
        Refusal { code, txid: None }
    }
}

/// Maps a ledger rejection to the seam's stateless rejection.
fn rejection(refusal: Refusal, bytes: &[u8], genesis: &Genesis) -> TxRejection {
    match refusal.code {
        RejectCode::Malformed => TxRejection::Malformed("transaction does not decode".into()),
        RejectCode::TxTooLarge => TxRejection::TooLarge {
            size: bytes.len(),
            max: genesis.limits.max_tx_bytes as usize,
        },
        RejectCode::BadSignature => TxRejection::BadSignature(
            refusal
                .txid
                .map_or_else(|| undecodable_txid(bytes), |txid| Txid(txid.0)),
        ),
        other => TxRejection::Limit(other.as_str().to_string()),
    }
}

/// An id for bytes that do not decode (ledger txids need a decoded transaction).
fn undecodable_txid(bytes: &[u8]) -> Txid {
    Txid(tagged_hash("coffer/node/undecodable", &[bytes]))
}

/// The ledger's stateless check ([`coffer_ledger::verify_bytes`]), remembering verified
/// signatures in a [`VerifiedSignatures`].
#[derive(Clone, Debug)]
pub struct LedgerVerifier {
    genesis: Arc<Genesis>,
    signatures: Arc<VerifiedSignatures>,
}

impl LedgerVerifier {
    /// A verifier for transactions of `genesis`'s chain, with its own signature cache.
    pub fn new(genesis: Arc<Genesis>) -> Self {
        Self::with_signatures(genesis, Arc::new(VerifiedSignatures::default()))
    }

    /// A verifier recording verified signatures in `signatures`.
    pub fn with_signatures(genesis: Arc<Genesis>, signatures: Arc<VerifiedSignatures>) -> Self {
        Self {
            genesis,
            signatures,
        }
    }

    /// The signature cache (give it to the [`LedgerMachine`] of the same replica).
    pub fn signatures(&self) -> Arc<VerifiedSignatures> {
        self.signatures.clone()
    }

    /// The stateless check with the ledger's rejection code (what the REST gateway reports);
    /// bytes decoded before are not decoded again, and a signature verified before (these
    /// exact bytes) is not verified again.
    pub fn check_code(&self, bytes: &[u8]) -> Result<coffer_ledger::Txid, RejectCode> {
        self.check_refusal(bytes).map_err(|r| r.code)
    }

    fn check_refusal(&self, bytes: &[u8]) -> Result<coffer_ledger::Txid, Refusal> {
        // Same checks, in the same order, as `coffer_ledger::verify_bytes`, but with the size
        // limit that blocks can carry if the genesis allows more.
        // u32 -> usize cannot truncate on supported targets.
        if bytes.len() > (self.genesis.limits.max_tx_bytes as usize).min(MAX_TX_BYTES) {
            return Err(RejectCode::TxTooLarge.into());
        }
        let tx = self
            .signatures
            .decode(bytes)
            .map_err(|e| RejectCode::from(&e))?;
        let txid = tx.txid();
        let refuse = |code| {
            // These bytes fail every check: keep the room for transactions that may apply.
            self.signatures.forget(&tx.wtxid());
            Refusal {
                code,
                txid: Some(txid),
            }
        };
        // Cheap next to the signature, and run on every call so that a hit in the signature
        // cache never skips a check it does not cover.
        check_rules(&self.genesis, tx.stx()).map_err(refuse)?;
        if self.signatures.contains(&tx.wtxid()) {
            return Ok(txid);
        }
        self.signatures.count_verification();
        if !tx.stx().verify_signature_with_txid(&txid) {
            return Err(refuse(RejectCode::BadSignature));
        }
        self.signatures.insert(tx.wtxid());
        Ok(txid)
    }
}

impl TxVerifier for LedgerVerifier {
    fn check(&self, bytes: &[u8]) -> Result<Txid, TxRejection> {
        self.check_refusal(bytes)
            .map(|txid| Txid(txid.0))
            .map_err(|refusal| rejection(refusal, bytes, &self.genesis))
    }

    fn txid(&self, bytes: &[u8]) -> Txid {
        self.signatures
            .decode(bytes)
            .map_or_else(|_| undecodable_txid(bytes), |tx| Txid(tx.txid().0))
    }

    fn max_block_txs(&self) -> usize {
        usize::try_from(self.genesis.limits.max_block_txs).unwrap_or(usize::MAX)
    }
}

/// The ledger state as the read path sees it: shared with the executor, readable at the last
/// persisted height.
#[derive(Clone, Debug)]
pub struct LedgerView {
    state: Arc<RwLock<LedgerState>>,
    persisted: Arc<AtomicU64>,
}

impl LedgerView {
    /// The state, if it is at a persisted height (it is briefly ahead while a block is being
    /// persisted: nothing may be signed about it then). `None` means "retry after the next
    /// executed block".
    pub fn persisted(&self) -> Option<RwLockReadGuard<'_, LedgerState>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.height() == self.persisted.load(Ordering::Acquire)).then_some(state)
    }

    /// Height of the last persisted block.
    pub fn persisted_height(&self) -> u64 {
        self.persisted.load(Ordering::Acquire)
    }

    /// `measure` of the current state, persisted or not (for size gauges).
    pub fn measure(&self, measure: impl Fn(&LedgerState) -> usize) -> u64 {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        u64::try_from(measure(&state)).unwrap_or(u64::MAX)
    }
}

/// A block the ledger applied, waiting to be persisted.
#[derive(Debug)]
struct Unpersisted {
    height: u64,
    /// Its encoding ([`Block::encode`]).
    block: Vec<u8>,
    applied: Applied,
}

/// The ledger fed with finalized blocks, persisting each through a [`Storage`].
#[derive(Debug)]
pub struct LedgerMachine {
    view: LedgerView,
    store: Arc<Storage>,
    /// The block applied but not yet persisted.
    unpersisted: Option<Unpersisted>,
    /// Signatures this replica already verified (shared with its [`LedgerVerifier`]).
    signatures: Arc<VerifiedSignatures>,
}

impl LedgerMachine {
    /// A ledger at genesis over a fresh in-memory store (tests, ephemeral runs).
    pub fn new(genesis: Genesis) -> Result<Self, coffer_ledger::GenesisError> {
        let state = LedgerState::new_with(genesis, HistoryMode::Counted)?;
        Ok(Self::with_state(
            state,
            Arc::new(Storage::from(storage::MemoryStore::new())),
        ))
    }

    /// The ledger persisted in `store` (genesis if it holds nothing), its rebuilt commitment
    /// checked against the persisted one.
    pub async fn open(genesis: Genesis, store: Arc<Storage>) -> Result<Self, StorageError> {
        let state = storage::ledger::restore_ledger(&*store, genesis).await?;
        Ok(Self::with_state(state, store))
    }

    fn with_state(state: LedgerState, store: Arc<Storage>) -> Self {
        let persisted = Arc::new(AtomicU64::new(state.height()));
        Self {
            view: LedgerView {
                state: Arc::new(RwLock::new(state)),
                persisted,
            },
            store,
            unpersisted: None,
            signatures: Arc::new(VerifiedSignatures::new(0)),
        }
    }

    /// Skips the signature check of transactions `signatures` holds (pass the replica's
    /// [`LedgerVerifier::signatures`]); without it, execution verifies every signature.
    pub fn with_signatures(mut self, signatures: Arc<VerifiedSignatures>) -> Self {
        self.signatures = signatures;
        self
    }

    /// The read path's handle on the state.
    pub fn view(&self) -> LedgerView {
        self.view.clone()
    }

    /// The store blocks are persisted to.
    pub fn store(&self) -> Arc<Storage> {
        self.store.clone()
    }

    /// The ledger state (read-only).
    pub fn state(&self) -> RwLockReadGuard<'_, LedgerState> {
        self.view.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateMachine for LedgerMachine {
    fn applied_height(&self) -> u64 {
        self.view.persisted_height()
    }

    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt> {
        let mut receipts: Vec<Option<Receipt>> = vec![None; txs.len()];
        let mut decoded = Vec::with_capacity(txs.len());
        let mut encodings: Vec<&[u8]> = Vec::with_capacity(txs.len());
        let mut positions = Vec::with_capacity(txs.len());
        for (i, bytes) in txs.iter().enumerate() {
            match self.signatures.decode(bytes) {
                Ok(tx) => {
                    decoded.push(tx);
                    encodings.push(bytes);
                    positions.push(i);
                }
                Err(e) => {
                    error!(height, index = i, error = %e, "finalized block carries undecodable bytes");
                    receipts[i] = Some(Receipt {
                        txid: undecodable_txid(bytes),
                        rejection: Some(UNDECODABLE),
                        code: RejectCode::Malformed.as_u16(),
                    });
                }
            }
        }
        assert!(
            self.unpersisted.is_none(),
            "apply_block at height {height} before the previous block was persisted"
        );
        let identified: Vec<&IdentifiedTx> = decoded.iter().map(|t| t.identified()).collect();
        let mut state = self.view.state.write().unwrap_or_else(|e| e.into_inner());
        let outcome = state.apply_identified(height, &identified, &*self.signatures);
        // Executed (or refused as a whole): their entries are not needed again (a repeat in a
        // later block is decoded and verified afresh, and rejected as spent, replayed or already
        // rejected anyway).
        for tx in &decoded {
            self.signatures.forget(&tx.wtxid());
        }
        match outcome {
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
                        code: receipt.outcome.as_u16(),
                    });
                }
                // The decodable transactions as received: their encodings are canonical, so
                // this is the encoding of the block the ledger applied.
                self.unpersisted = Some(Unpersisted {
                    height,
                    block: Block::encode_encoded(height, &encodings),
                    applied,
                });
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
                match state.apply(&empty) {
                    Ok(applied) => {
                        self.unpersisted = Some(Unpersisted {
                            height,
                            block: empty.encode(),
                            applied,
                        });
                    }
                    Err(e) => panic!("ledger refused an empty block at height {height}: {e}"),
                }
                for (tx, i) in decoded.iter().zip(positions) {
                    receipts[i] = Some(Receipt {
                        txid: Txid(tx.txid().0),
                        rejection: Some(BLOCK_TOO_LARGE),
                        code: BLOCK_TOO_LARGE_CODE,
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

    async fn persist(&mut self) -> Result<(), PersistError> {
        let Some(u) = self.unpersisted.take() else {
            return Ok(());
        };
        let height = u.height;
        if let Err(e) =
            storage::ledger::persist_encoded(&*self.store, height, &u.block, &u.applied).await
        {
            // Keep it: the executor treats this as fatal, but nothing is published meanwhile.
            self.unpersisted = Some(u);
            return Err(PersistError::Backend {
                height,
                reason: e.to_string(),
            });
        }
        self.view.persisted.store(height, Ordering::Release);
        Ok(())
    }

    fn commitment(&self) -> [u8; 32] {
        // The state hash alone commits to the whole state and history (see `Commitment`).
        self.state().commitment().state_hash.0
    }

    fn commitment_encoding(&self) -> Vec<u8> {
        self.state().commitment().to_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use coffer_ledger::{
        Amount, ChainId, Keypair, Limits, Mint, OutPoint, ReplicaInfo, ReplicaKey, Transaction,
        Transfer, TxOut,
    };

    /// A one-replica genesis with one issuer (shared by the node's unit tests).
    pub(crate) fn single_replica_genesis(chain: &ChainId, issuer: &Keypair) -> Genesis {
        Genesis {
            chain_id: chain.clone(),
            issuers: vec![issuer.public_key()],
            replicas: vec![ReplicaInfo {
                name: "r0".into(),
                public_key: ReplicaKey([1; 32]),
            }],
            limits: Limits::default(),
        }
    }

    /// Test chain `chain`: an issuer, a wallet (alice) and a mint of `coins` 10-unit coins to
    /// alice.
    struct Chain {
        issuer: Keypair,
        alice: Keypair,
        genesis: Genesis,
        mint: coffer_ledger::SignedTransaction,
    }

    impl Chain {
        fn new(chain: &str, coins: usize) -> Self {
            let issuer = Keypair::from_secret_bytes([7; 32]).unwrap();
            let alice = Keypair::from_secret_bytes([8; 32]).unwrap();
            let genesis = single_replica_genesis(&ChainId::new(chain).unwrap(), &issuer);
            let mint = issuer.sign_tx(Transaction::Mint(Mint {
                chain_id: genesis.chain_id.clone(),
                issuer: issuer.public_key(),
                nonce: 1,
                outputs: vec![TxOut::to_address(Amount(10), alice.address()); coins],
            }));
            Chain {
                issuer,
                alice,
                genesis,
                mint,
            }
        }

        /// Alice spends mint output `vout`: `to_issuer` to the issuer and `change` back to
        /// herself (no change output for 0).
        fn spend(&self, vout: u32, to_issuer: u64, change: u64) -> Bytes {
            let mut outputs = vec![TxOut::to_address(Amount(to_issuer), self.issuer.address())];
            if change > 0 {
                outputs.push(TxOut::to_address(Amount(change), self.alice.address()));
            }
            Bytes::from(
                self.alice
                    .sign_tx(Transaction::Transfer(Transfer {
                        chain_id: self.genesis.chain_id.clone(),
                        signer: self.alice.public_key(),
                        inputs: vec![OutPoint {
                            txid: self.mint.txid(),
                            vout,
                        }],
                        outputs,
                    }))
                    .encode(),
            )
        }
    }

    /// A replica's ledger counts history and answers pages from its store, exactly as a
    /// ledger that keeps every entry would; a store missing entries is an error, not a page.
    #[test]
    fn history_is_served_from_the_store() {
        use crate::api::BackendError;
        use crate::api::answer::{Answer, answer_read, history_from_store, plan_read};
        use coffer_ledger::attest::{ReadQuery, ReadResult};

        let chain = Chain::new("history", 3);
        let mut machine = LedgerMachine::new(chain.genesis.clone()).unwrap();
        let blocks = [
            vec![Bytes::from(chain.mint.encode())],
            vec![chain.spend(0, 4, 6)],
            vec![chain.spend(1, 10, 0), chain.spend(2, 3, 7)],
        ];
        for (height, txs) in (1..).zip(&blocks) {
            machine.apply_block(height, txs);
            futures::executor::block_on(machine.persist()).unwrap();
        }
        let alice = chain.alice.address();
        let store = machine.store();
        // The reference: a ledger that keeps every entry, fed the same blocks.
        let mut kept = LedgerState::new(chain.genesis.clone()).unwrap();
        for (height, txs) in (1..).zip(&blocks) {
            let txs = txs
                .iter()
                .map(|b| coffer_ledger::SignedTransaction::decode(b).unwrap())
                .collect();
            kept.apply(&Block { height, txs }).unwrap();
        }
        let state = machine.state();
        assert_eq!(state.history_mode(), HistoryMode::Counted);
        assert!(state.history(&alice, None, 10).is_none());
        assert_eq!(state.history_len(&alice), 4);
        let mut served = 0;
        for (who, cursor, limit) in [
            (alice, None, 10),
            (alice, None, 2),
            (alice, Some("1"), 2),
            (alice, Some("0"), 1),
            (alice, Some("99"), 1),
            (chain.issuer.address(), None, 10),
            (Keypair::generate().address(), None, 10),
            (alice, None, 0),
        ] {
            let query = ReadQuery::History {
                address: who.to_string(),
                cursor: cursor.map(str::to_owned),
                limit,
            };
            let expected = answer_read(&kept, &query).unwrap();
            let got = match plan_read(&state, &query).unwrap() {
                Answer::Ready(result) => result,
                Answer::History { address, window } => {
                    served += 1;
                    futures::executor::block_on(history_from_store(&*store, &address, window))
                        .unwrap()
                }
            };
            assert_eq!(got, expected, "{query:?}");
            if let ReadResult::History { entries, .. } = &got
                && limit > 0
                && who == alice
            {
                assert!(!entries.is_empty(), "{query:?}");
            }
        }
        assert_eq!(served, 6, "every non-empty page came from the store");
        // A store that lacks the entries (or lags behind the state) is never served from.
        let empty = Storage::from(storage::MemoryStore::new());
        let Answer::History { address, window } = plan_read(
            &state,
            &ReadQuery::History {
                address: alice.to_string(),
                cursor: None,
                limit: 2,
            },
        )
        .unwrap() else {
            panic!("a counted ledger reads history from its store")
        };
        let err = futures::executor::block_on(history_from_store(&empty, &address, window));
        assert!(matches!(err, Err(BackendError::Internal(_))), "{err:?}");
    }

    /// Pages of unspent outputs are capped by the genesis page size whatever the request asks
    /// (a peer's read request is not bounded by a gateway), and balance reads count an
    /// address's outputs without collecting them.
    #[test]
    fn unspent_output_pages_are_capped_by_the_genesis_page_size() {
        use crate::api::answer::{Answer, plan_read};
        use coffer_ledger::attest::{ReadQuery, ReadResult};

        let mut chain = Chain::new("pages", 5);
        chain.genesis.limits.max_history_page = 2;
        let mut machine = LedgerMachine::new(chain.genesis.clone()).unwrap();
        machine.apply_block(1, &[Bytes::from(chain.mint.encode())]);
        futures::executor::block_on(machine.persist()).unwrap();
        let state = machine.state();
        let alice = chain.alice.address().to_string();
        let balance = plan_read(
            &state,
            &ReadQuery::Balance {
                address: alice.clone(),
            },
        )
        .unwrap();
        assert!(
            matches!(
                balance,
                Answer::Ready(ReadResult::Balance {
                    amount: 50,
                    utxo_count: 5
                })
            ),
            "{balance:?}"
        );
        let (mut cursor, mut pages, mut vouts) = (None, 0, Vec::new());
        loop {
            let query = ReadQuery::Utxos {
                address: alice.clone(),
                cursor: cursor.clone(),
                limit: u32::MAX,
            };
            let Answer::Ready(ReadResult::Utxos {
                entries,
                next_cursor,
            }) = plan_read(&state, &query).unwrap()
            else {
                panic!("unspent outputs are answered from memory");
            };
            assert!(entries.len() <= 2, "{} entries in one page", entries.len());
            pages += 1;
            vouts.extend(entries.iter().map(|e| e.vout));
            match next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!((pages, vouts), (3, vec![0, 1, 2, 3, 4]));
    }

    /// The largest transfers the default genesis allows fit in a block; above what a block can
    /// carry, a transaction gets the ledger's `tx_too_large` even if its genesis allows more.
    #[test]
    fn transactions_up_to_what_a_block_carries_pass_the_stateless_check() {
        let transfer = |chain: &Chain, inputs: u32, outputs: u64| {
            Bytes::from(
                chain
                    .alice
                    .sign_tx(Transaction::Transfer(Transfer {
                        chain_id: chain.genesis.chain_id.clone(),
                        signer: chain.alice.public_key(),
                        inputs: (0..inputs)
                            .map(|vout| OutPoint {
                                txid: chain.mint.txid(),
                                vout,
                            })
                            .collect(),
                        outputs: (1..=outputs)
                            .map(|i| TxOut::to_address(Amount(i), chain.issuer.address()))
                            .collect(),
                    }))
                    .encode(),
            )
        };
        let chain = Chain::new("sizes", 1);
        let verifier = LedgerVerifier::new(Arc::new(chain.genesis.clone()));
        let limits = &chain.genesis.limits;
        let widest = transfer(
            &chain,
            u32::from(limits.max_inputs),
            u64::from(limits.max_outputs),
        );
        assert!(widest.len() > 16 * 1024, "{} bytes", widest.len());
        assert!(verifier.check(&widest).is_ok());
        let mut chain = Chain::new("sizes", 1);
        chain.genesis.limits.max_tx_bytes = 1 << 20;
        chain.genesis.limits.max_inputs = 2_000;
        let verifier = LedgerVerifier::new(Arc::new(chain.genesis.clone()));
        let huge = transfer(&chain, 1_000, 1);
        assert!(huge.len() > MAX_TX_BYTES, "{} bytes", huge.len());
        assert_eq!(verifier.check_code(&huge), Err(RejectCode::TxTooLarge));
    }

    /// A transfer rejected as `unknown_input` (proposed before the block that creates its
    /// input) stays rejected: once its input exists the same bytes are `already_rejected`, the
    /// stored record stays the first rejection and nothing is spent, also after a restart from
    /// the store.
    #[test]
    fn a_rejection_is_final_across_blocks_and_restarts() {
        use crate::storage::ledger::receipt;
        let chain = Chain::new("final", 1);
        let mut machine = LedgerMachine::new(chain.genesis.clone()).unwrap();
        let early = chain.spend(0, 10, 0);
        let txid = coffer_ledger::SignedTransaction::decode(&early)
            .unwrap()
            .txid();
        let r1 = machine.apply_block(1, std::slice::from_ref(&early));
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(r1[0].rejection, Some("unknown_input"));
        let store = machine.store();
        let first = futures::executor::block_on(receipt(&*store, &txid))
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.height, first.outcome),
            (1, Outcome::Rejected(RejectCode::UnknownInput))
        );
        machine.apply_block(2, &[Bytes::from(chain.mint.encode())]);
        futures::executor::block_on(machine.persist()).unwrap();
        let utxos = machine.state().utxos(&chain.alice.address());
        assert_eq!(utxos.len(), 1);
        let r3 = machine.apply_block(3, std::slice::from_ref(&early));
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(r3[0].rejection, Some("already_rejected"));
        assert_eq!(r3[0].code, RejectCode::AlreadyRejected.as_u16());
        assert_eq!(
            futures::executor::block_on(receipt(&*store, &txid)).unwrap(),
            Some(first)
        );
        assert_eq!(machine.state().utxos(&chain.alice.address()), utxos);
        assert!(machine.state().utxos(&chain.issuer.address()).is_empty());
        // Restarted from its store, the replica still remembers the rejection.
        let before = machine.state().clone();
        drop(machine);
        let mut machine =
            futures::executor::block_on(LedgerMachine::open(chain.genesis.clone(), store.clone()))
                .unwrap();
        assert_eq!(*machine.state(), before);
        assert!(machine.state().is_rejected(&txid));
        let r4 = machine.apply_block(4, std::slice::from_ref(&early));
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(r4[0].rejection, Some("already_rejected"));
        assert_eq!(
            futures::executor::block_on(receipt(&*store, &txid)).unwrap(),
            Some(first)
        );
        assert_eq!(machine.state().utxos(&chain.alice.address()), utxos);
    }

    #[test]
    fn ledger_through_the_seams() {
        let chain = Chain::new("seam", 1);
        let (genesis, mint) = (chain.genesis.clone(), &chain.mint);
        let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
        let (a, b) = (chain.spend(0, 10, 0), chain.spend(0, 9, 0));
        let m = Bytes::from(mint.encode());
        assert_eq!(verifier.check(&m).unwrap(), Txid(mint.txid().0));
        assert!(matches!(
            verifier.check(&m[..5]),
            Err(TxRejection::Malformed(_))
        ));
        let mut machine = LedgerMachine::new(genesis).unwrap();
        let receipts = machine.apply_block(1, &[m.clone(), a.clone(), b.clone()]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(machine.applied_height(), 1);
        assert_eq!(receipts[0].rejection, None);
        assert_eq!(receipts[1].rejection, None);
        assert_eq!(receipts[2].rejection, Some("input_already_spent"));
        assert_eq!(receipts[2].code, RejectCode::InputAlreadySpent.as_u16());
        assert_eq!(receipts[0].code, 0);
        let record = coffer_ledger::Commitment::from_bytes(&machine.commitment_encoding()).unwrap();
        assert_eq!(record.state_hash.0, machine.commitment());
        assert_eq!(record.height, 1);
        assert_ne!(machine.commitment(), [0; 32]);
        // The stored block is the decodable transactions as received; undecodable bytes get a
        // receipt but are not part of it.
        let junk = Bytes::from_static(b"not a transaction");
        let receipts = machine.apply_block(2, &[junk, a.clone()]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, Some(UNDECODABLE));
        assert_eq!(receipts[1].rejection, Some("input_already_spent"));
        use crate::storage::Store as _;
        let store = machine.store();
        let stored = |height| {
            let entry = futures::executor::block_on(store.block(height))
                .unwrap()
                .unwrap();
            Block::decode(&entry.block).unwrap()
        };
        let decode = |b: &Bytes| coffer_ledger::SignedTransaction::decode(b).unwrap();
        assert_eq!(
            stored(1),
            Block {
                height: 1,
                txs: vec![decode(&m), decode(&a), decode(&b)],
            }
        );
        assert_eq!(
            stored(2),
            Block {
                height: 2,
                txs: vec![decode(&a)],
            }
        );
    }

    #[test]
    fn each_transaction_is_decoded_once_from_admission_to_execution() {
        use crate::consensus::{application::App, block::Block as ConsensusBlock};
        use crate::mempool::{Admission, Mempool, MempoolLimits};
        use commonware_cryptography::Digestible as _;
        use std::sync::Mutex;

        let chain = Chain::new("decode-once", 3);
        let (genesis, mint) = (chain.genesis.clone(), &chain.mint);
        let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
        let sigs = verifier.signatures();
        let mut machine = LedgerMachine::new(genesis.clone())
            .unwrap()
            .with_signatures(sigs.clone());
        let spend = |vout, amount| chain.spend(vout, amount, 10 - amount);
        let m = Bytes::from(mint.encode());
        // `c` conflicts with `a` (same input); `b` stays pending throughout; `d` is never
        // admitted here (it first shows up in a proposal).
        let (a, b, c, d) = (spend(0, 1), spend(1, 2), spend(0, 3), spend(2, 4));

        // Admission (gateway or gossip): decoded and verified once each.
        let mempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
        for tx in [&m, &a, &b, &c] {
            let txid = verifier.check(tx).unwrap();
            let mut pool = mempool.lock().unwrap();
            assert_eq!(pool.insert(txid, tx.clone()), Admission::Added);
        }
        assert_eq!((sigs.decodings(), sigs.verifications()), (4, 4));
        // Repeated checks and txid lookups (gossip copies, the proposer's ancestry walk).
        for tx in [&m, &a, &b, &c] {
            verifier.check(tx).unwrap();
            verifier.txid(tx);
        }
        assert_eq!((sigs.decodings(), sigs.verifications()), (4, 4));

        // Block verification before the vote: the admitted ones cost nothing, `d` is decoded
        // (for its txid) and verified once.
        let app = App {
            mempool: mempool.clone(),
            arrivals: Arc::default(),
            window: Arc::default(),
            verifier: verifier.clone(),
            executed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            held: Arc::default(),
            limits: crate::consensus::ProposalLimits::default(),
            byzantine: false,
        };
        let block = ConsensusBlock {
            parent: ConsensusBlock::genesis("decode-once").digest(),
            height: 1,
            view: 1,
            txs: vec![m.clone(), a.clone(), d.clone()],
        };
        app.check_block(&block, 1).unwrap();
        assert_eq!((sigs.decodings(), sigs.verifications()), (5, 5));

        // Execution, then the executor's mempool upkeep.
        let receipts = machine.apply_block(1, &block.txs);
        futures::executor::block_on(machine.persist()).unwrap();
        assert!(
            receipts.iter().all(|r| r.rejection.is_none()),
            "{receipts:?}"
        );
        assert_eq!((sigs.decodings(), sigs.verifications()), (5, 5));
        let mut pool = mempool.lock().unwrap();
        for r in &receipts {
            pool.finalize(&r.txid);
        }
        // `c` now conflicts with the executed `a`; it stays pending, to be rejected with a
        // receipt.
        assert!(pool.contains(&verifier.txid(&b)));
        assert!(pool.contains(&verifier.txid(&c)));
        drop(pool);
        assert_eq!((sigs.decodings(), sigs.verifications()), (5, 5));
        // Only the pending `b` and `c` are still cached: executed entries were dropped.
        assert_eq!(sigs.len(), 2);
        assert!(sigs.contains(&crate::sigcache::wtxid_of(&b)));
        // `c` executes next: rejected, without being decoded again, and forgotten.
        let receipts = machine.apply_block(2, std::slice::from_ref(&c));
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, Some("input_already_spent"));
        assert_eq!((sigs.decodings(), sigs.verifications()), (5, 5));
        assert_eq!(sigs.len(), 1);

        // A tampered copy of `b` (same txid, other bytes) is decoded on its own and refused,
        // in block verification and in execution alike, while `b` keeps its entry.
        let mut forged = b.to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged = Bytes::from(forged);
        assert_eq!(verifier.txid(&forged), verifier.txid(&b));
        assert_eq!(sigs.decodings(), 6);
        let bad = ConsensusBlock {
            txs: vec![forged.clone()],
            ..block.clone()
        };
        assert!(app.check_block(&bad, 1).is_err());
        assert_eq!(sigs.verifications(), 6);
        let receipts = machine.apply_block(3, &[forged]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, Some("bad_signature"));
        // Refused copies are not kept, so the block's copy is decoded again.
        assert_eq!((sigs.decodings(), sigs.verifications()), (7, 7));
        assert_eq!(sigs.len(), 1);
        let receipts = machine.apply_block(4, &[b]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, None);
        assert_eq!(
            (sigs.decodings(), sigs.verifications()),
            (7, 7),
            "`b` was decoded and verified once, on admission"
        );
        assert!(sigs.is_empty());
    }

    #[test]
    fn blocks_hold_at_most_the_genesis_max_block_txs() {
        use crate::consensus::{application::App, block::Block as ConsensusBlock};
        use crate::mempool::{Admission, Mempool, MempoolLimits};
        use commonware_cryptography::{Digested, Digestible as _};
        use std::sync::Mutex;

        // A genesis below the proposer's default of 500 transactions per block: a larger
        // block would be voted for, then rejected whole by execution (`block_too_large`).
        let mut chain = Chain::new("cap", 3);
        chain.genesis.limits.max_block_txs = 2;
        let verifier = LedgerVerifier::new(Arc::new(chain.genesis.clone()));
        let mempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
        let txs = [
            Bytes::from(chain.mint.encode()),
            chain.spend(0, 10, 0),
            chain.spend(1, 10, 0),
        ];
        for tx in &txs {
            let txid = verifier.check(tx).unwrap();
            assert_eq!(
                mempool.lock().unwrap().insert(txid, tx.clone()),
                Admission::Added
            );
        }
        let app = App {
            mempool,
            arrivals: Arc::default(),
            window: Arc::default(),
            verifier,
            executed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            held: Arc::default(),
            limits: crate::consensus::ProposalLimits::default(),
            byzantine: false,
        };
        let genesis = ConsensusBlock::genesis("cap");
        let parent = Digested::precomputed(genesis.clone(), genesis.digest());
        let built = app.build(&parent, 1, &Default::default());
        assert_eq!(built.txs, txs[..2].to_vec(), "the leader proposes two");
        app.check_block(&built, 1).unwrap();
        let whole = ConsensusBlock {
            parent: genesis.digest(),
            height: 1,
            view: 1,
            txs: txs.to_vec(),
        };
        let refused = app.check_block(&whole, 1).unwrap_err();
        assert!(
            refused.contains("3 transactions in block, at most 2"),
            "{refused}"
        );
        // What the proposal carries, execution accepts.
        let mut machine = LedgerMachine::new(chain.genesis.clone()).unwrap();
        let receipts = machine.apply_block(1, &built.txs);
        assert!(
            receipts.iter().all(|r| r.rejection.is_none()),
            "{receipts:?}"
        );
    }

    #[test]
    fn each_signature_is_verified_once_and_tampering_is_still_caught() {
        let chain = Chain::new("once", 2);
        let (genesis, mint) = (chain.genesis.clone(), &chain.mint);
        let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
        let sigs = verifier.signatures();
        let mut machine = LedgerMachine::new(genesis.clone())
            .unwrap()
            .with_signatures(sigs.clone());
        let spend = |vout| chain.spend(vout, 10, 0);
        let m = Bytes::from(mint.encode());
        let (a, b) = (spend(0), spend(1));
        // Admission verifies; a second check of the same bytes does not.
        assert_eq!(verifier.check(&m).unwrap(), Txid(mint.txid().0));
        assert_eq!(sigs.verifications(), 1);
        assert_eq!(verifier.check(&m).unwrap(), Txid(mint.txid().0));
        assert_eq!(sigs.verifications(), 1);
        // A copy with a tampered signature has the same txid but is verified, and refused.
        let mut forged = b.to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        verifier.check(&b).unwrap();
        assert_eq!(sigs.verifications(), 2);
        assert!(matches!(
            verifier.check(&forged),
            Err(TxRejection::BadSignature(id)) if id == verifier.txid(&b)
        ));
        assert_eq!(sigs.verifications(), 3);
        // Execution: the admitted mint is not verified again, `a` (never seen) is, and the
        // forged copy of the admitted `b` is caught.
        let receipts = machine.apply_block(1, &[m.clone(), a, Bytes::from(forged)]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, None);
        assert_eq!(receipts[1].rejection, None);
        assert_eq!(receipts[2].rejection, Some("bad_signature"));
        assert_eq!(sigs.verifications(), 5);
        // Executed entries are dropped; the unexecuted `b` stays until it is.
        assert_eq!(sigs.len(), 1);
        let receipts = machine.apply_block(2, &[b]);
        futures::executor::block_on(machine.persist()).unwrap();
        assert_eq!(receipts[0].rejection, None);
        assert_eq!(sigs.verifications(), 5);
        assert!(sigs.is_empty());
    }
}
