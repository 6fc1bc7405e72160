//! The real ledger persisted to real Redis: apply signed blocks, persist each `Applied`, restore
//! a `LedgerState` from Redis and check it is the same state with the same commitment.

#![allow(clippy::unwrap_used, missing_docs)]

mod redis_harness;

use coffer_ledger::*;
use coffer_node::storage::ledger::{decode_history, persist_applied, receipt, restore_ledger};
use coffer_node::storage::{HistoryItem, MemoryStore, RedisStore, StorageError, Store};
use redis_harness::{Cluster, Standalone, cli};

const CHAIN: &str = "coffer-storage-test";

fn key(seed: u8) -> Keypair {
    let mut s = [0u8; 32];
    s[0] = 0x42;
    s[31] = seed;
    Keypair::from_secret_bytes(s).unwrap()
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: ChainId::new(CHAIN).unwrap(),
        issuers: vec![key(1).public_key()],
        replicas: vec![ReplicaInfo {
            name: "r0".into(),
            public_key: ReplicaKey([7; 32]),
        }],
        // Spends remembered for one block only: by the last block the store has forgotten the
        // spends of the one before, and the restored state must have forgotten the same.
        limits: Limits {
            spent_horizon: 1,
            ..Limits::default()
        },
    }
}

fn mint(nonce: u64, to: Address, amount: u64) -> SignedTransaction {
    Transaction::Mint(Mint {
        chain_id: ChainId::new(CHAIN).unwrap(),
        issuer: key(1).public_key(),
        nonce,
        outputs: vec![TxOut::to_address(Amount(amount), to)],
    })
    .sign_with_aux(&key(1), &[0; 32])
}

fn transfer(from: &Keypair, inputs: &[OutPoint], outs: &[(Address, u64)]) -> SignedTransaction {
    Transaction::Transfer(Transfer {
        chain_id: ChainId::new(CHAIN).unwrap(),
        signer: from.public_key(),
        inputs: inputs.to_vec(),
        outputs: outs
            .iter()
            .map(|(a, v)| TxOut::to_address(Amount(*v), *a))
            .collect(),
    })
    .sign_with_aux(from, &[0; 32])
}

fn op(tx: &SignedTransaction, vout: u32) -> OutPoint {
    OutPoint {
        txid: tx.txid(),
        vout,
    }
}

/// Blocks with mints, transfers (one chained inside a block, so `spent_within_block` is
/// exercised), a rejected double spend and a transfer rejected as `unknown_input` (proposed
/// before the mint of its input) that is proposed again once its input exists: still rejected,
/// its first rejection its record.
fn blocks() -> Vec<Block> {
    let (alice, bob, carol) = (key(10), key(11), key(12));
    let m1 = mint(1, alice.address(), 1_000);
    let m2 = mint(2, bob.address(), 500);
    let b1 = Block {
        height: 1,
        txs: vec![m1.clone(), m2.clone()],
    };
    let t1 = transfer(
        &alice,
        &[op(&m1, 0)],
        &[(bob.address(), 300), (alice.address(), 700)],
    );
    let t2 = transfer(&bob, &[op(&t1, 0)], &[(carol.address(), 300)]);
    let double = transfer(&alice, &[op(&m1, 0)], &[(carol.address(), 1_000)]);
    let m3 = mint(3, carol.address(), 42);
    let early = transfer(&carol, &[op(&m3, 0)], &[(alice.address(), 42)]);
    let b2 = Block {
        height: 2,
        txs: vec![t1.clone(), t2.clone(), double, early.clone()],
    };
    let t3 = transfer(
        &bob,
        &[op(&m2, 0)],
        &[(alice.address(), 250), (carol.address(), 250)],
    );
    let b3 = Block {
        height: 3,
        txs: vec![t3, m3],
    };
    let b4 = Block {
        height: 4,
        txs: vec![early],
    };
    vec![b1, b2, b3, b4]
}

/// Applies every block to a fresh ledger, persisting each, then restores from `store`.
async fn round_trip(store: &impl Store, reopen: impl AsyncFn() -> Box<dyn StoreBox>) {
    let mut ledger = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
    // The same blocks, every history entry kept: what the store must serve.
    let mut kept = LedgerState::new(genesis()).unwrap();
    // Each txid's first receipt: its record.
    let mut first = std::collections::HashMap::new();
    for block in blocks() {
        kept.apply(&block).unwrap();
        let applied = ledger.apply(&block).unwrap();
        persist_applied(store, &block, &applied).await.unwrap();
        for r in &applied.receipts {
            let record = *first.entry(r.txid).or_insert(*r);
            assert_eq!(receipt(store, &r.txid).await.unwrap(), Some(record));
        }
    }
    // The last block proposed the early transfer again, its input created meanwhile.
    let early = blocks().pop().unwrap().txs[0].txid();
    assert!(ledger.is_rejected(&early));
    let record = receipt(store, &early).await.unwrap().unwrap();
    assert_eq!(
        (record.height, record.outcome),
        (2, Outcome::Rejected(RejectCode::UnknownInput))
    );
    // Carol keeps what t2 and t3 paid her and her mint: the early transfer never spent it.
    assert_eq!(ledger.balance(&key(12).address()), Amount(300 + 250 + 42));
    let reopened = reopen().await;
    let restored = reopened.restore().await.unwrap();
    assert!(
        restored.is_rejected(&early),
        "the rejection survives a restart"
    );
    assert_eq!(restored.commitment(), ledger.commitment());
    assert_eq!(
        restored, ledger,
        "restored ledger equals the one that wrote it"
    );
    restored.check_integrity().unwrap();
    // Balances restored from the store agree with the ledger's; history served by the store
    // agrees with a ledger that kept every entry.
    for k in [key(10), key(11), key(12)] {
        let a = k.address();
        assert_eq!(restored.balance(&a), ledger.balance(&a), "balance of {a}");
        let served: Vec<HistoryEntry> = reopened
            .history(&a.to_string())
            .await
            .iter()
            .map(|item| decode_history(item.seq, &item.entry).unwrap())
            .collect();
        let expected = kept.history(&a, None, 1_000).unwrap().entries;
        assert!(!expected.is_empty(), "{a} has history");
        assert_eq!(served, expected, "history of {a}");
        assert_eq!(restored.history_len(&a), expected.len() as u64);
    }
}

/// Object-safe wrapper so the test can reopen any backend.
trait StoreBox {
    fn restore(&self) -> futures_boxed::Boxed<'_, Result<LedgerState, StorageError>>;
    fn history<'a>(&'a self, a: &'a str) -> futures_boxed::Boxed<'a, Vec<HistoryItem>>;
}

mod futures_boxed {
    pub type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

impl<S: Store + 'static> StoreBox for S {
    fn restore(&self) -> futures_boxed::Boxed<'_, Result<LedgerState, StorageError>> {
        Box::pin(restore_ledger(self, genesis()))
    }
    fn history<'a>(&'a self, a: &'a str) -> futures_boxed::Boxed<'a, Vec<HistoryItem>> {
        Box::pin(async move { Store::history(self, a, None, 1_000).await.unwrap() })
    }
}

#[tokio::test]
async fn ledger_round_trip_memory() {
    let store = MemoryStore::new();
    let mut ledger = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
    for block in blocks() {
        let applied = ledger.apply(&block).unwrap();
        persist_applied(&store, &block, &applied).await.unwrap();
    }
    let restored = restore_ledger(&store, genesis()).await.unwrap();
    assert_eq!(restored, ledger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_round_trip_standalone() {
    let redis = Standalone::start();
    let config = redis.config("coffer:r0");
    let store = RedisStore::connect(&config).await.unwrap();
    round_trip(&store, async || {
        Box::new(RedisStore::connect(&config).await.unwrap()) as Box<dyn StoreBox>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_round_trip_cluster() {
    let cluster = Cluster::start();
    let config = cluster.config("coffer:r0");
    let store = RedisStore::connect(&config).await.unwrap();
    round_trip(&store, async || {
        Box::new(RedisStore::connect(&config).await.unwrap()) as Box<dyn StoreBox>
    })
    .await;
}

/// A tampered output in Redis is caught by the commitment check on restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_output_fails_restore() {
    let redis = Standalone::start();
    let config = redis.config("coffer:r0");
    let store = RedisStore::connect(&config).await.unwrap();
    let mut ledger = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
    for block in blocks() {
        let applied = ledger.apply(&block).unwrap();
        persist_applied(&store, &block, &applied).await.unwrap();
    }
    // Lose part of the global UTXO index, as a lost write would.
    let port = redis.server.port;
    let shard_with_data = (0..16)
        .map(|s| format!("{{coffer:r0:s:{s:02}}}:out"))
        .find(|k| cli(port, &["hlen", k]) != "0")
        .unwrap();
    // Drop that shard: at least one unspent output disappears.
    assert_eq!(cli(port, &["del", &shard_with_data]), "1");
    let err = restore_ledger(&store, genesis()).await.unwrap_err();
    assert!(matches!(err, StorageError::Restore(_)), "{err}");
}

/// A transaction finalized twice (a client retry that reached a replica before it executed the
/// first copy) keeps its first receipt: the repeat is rejected and must not overwrite it.
async fn repeat_keeps_first_receipt(store: &impl Store) {
    let alice = key(2);
    let bob = key(3);
    let m = mint(1, alice.address(), 100);
    let t = transfer(&alice, &[op(&m, 0)], &[(bob.address(), 100)]);
    // Spends remembered long enough for the stray below to be reported as a spend of a spent
    // output.
    let genesis = || Genesis {
        limits: Limits::default(),
        ..genesis()
    };
    let mut ledger = LedgerState::new_with(genesis(), HistoryMode::Counted).unwrap();
    for (height, txs) in [
        (1, vec![m.clone()]),
        (2, vec![t.clone()]),
        (3, vec![t.clone()]),
    ] {
        let block = Block { height, txs };
        let applied = ledger.apply(&block).unwrap();
        persist_applied(store, &block, &applied).await.unwrap();
    }
    // The repeat was executed, and rejected, at height 3 ...
    let restored = restore_ledger(store, genesis()).await.unwrap();
    assert_eq!(restored, ledger);
    assert_eq!(restored.height(), 3);
    // ... but the record still says what happened first.
    let first = receipt(store, &t.txid()).await.unwrap().unwrap();
    assert_eq!((first.height, first.outcome), (2, Outcome::Accepted));
    // A rejected transaction seen for the first time is recorded as usual.
    let stray = transfer(&alice, &[op(&m, 0)], &[(alice.address(), 100)]);
    let block = Block {
        height: 4,
        txs: vec![stray.clone()],
    };
    let applied = ledger.apply(&block).unwrap();
    persist_applied(store, &block, &applied).await.unwrap();
    let r = receipt(store, &stray.txid()).await.unwrap().unwrap();
    assert_eq!(
        (r.height, r.outcome),
        (4, Outcome::Rejected(RejectCode::InputAlreadySpent))
    );
}

#[tokio::test]
async fn repeated_transaction_keeps_first_receipt_memory() {
    repeat_keeps_first_receipt(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_transaction_keeps_first_receipt_standalone() {
    let redis = Standalone::start();
    let store = RedisStore::connect(&redis.config("coffer:repeat"))
        .await
        .unwrap();
    repeat_keeps_first_receipt(&store).await;
}
