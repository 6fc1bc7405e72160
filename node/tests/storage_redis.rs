//! The storage contract against real Redis in all three modes (and the memory store), including
//! restarts, failovers and crashes in the middle of a block write.

#![allow(clippy::unwrap_used, missing_docs)]

mod redis_harness;

use std::sync::Arc;
use std::time::Duration;

use coffer_node::storage::{
    BlockChange, FailPoint, MemoryStore, RedisConfig, RedisStore, Snapshot, Storage, StorageError,
    Store,
};
use redis_harness::{Cluster, Model, SentinelGroup, Standalone, assert_snapshot_consistent, cli};
use tokio::{sync::mpsc, task::JoinHandle};

/// Persists `blocks` more blocks of `txs` transactions each from `model` to `store`.
async fn persist_blocks(store: &impl Store, model: &mut Model, blocks: usize, txs: usize) {
    for _ in 0..blocks {
        let (h, block, change) = model.next_block(txs);
        store.persist(h, &block, &change).await.unwrap();
    }
}

/// Persists block `h` through a fresh connection that fails after `n` commands (the write
/// must report the failpoint), then reconnects as a restarted replica would. Returns the new
/// connection and the state it loaded.
async fn crash_persist(
    config: &RedisConfig,
    n: usize,
    h: u64,
    block: &[u8],
    change: &BlockChange,
) -> (RedisStore, Snapshot) {
    let store = RedisStore::connect(config).await.unwrap();
    store.set_failpoint(Some(FailPoint::AfterCommands(n)));
    assert!(matches!(
        store.persist(h, block, change).await,
        Err(StorageError::Failpoint(_))
    ));
    drop(store);
    let store = RedisStore::connect(config).await.unwrap();
    let snap = store.load().await.unwrap().unwrap();
    (store, snap)
}

/// Blocks written in a background task, one every 10ms, while the test breaks Redis.
struct Writer {
    task: JoinHandle<Model>,
    acked: mpsc::UnboundedReceiver<u64>,
}

impl Writer {
    /// Writes blocks of `txs` transactions from `model` to `store` for `duration`.
    fn start(store: Arc<RedisStore>, mut model: Model, txs: usize, duration: Duration) -> Writer {
        let (tx, acked) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            while started.elapsed() < duration {
                let (h, block, change) = model.next_block(txs);
                store.persist(h, &block, &change).await.unwrap();
                tx.send(h).unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            model
        });
        Writer { task, acked }
    }

    /// Waits until the block at `height` was acknowledged.
    async fn reached(&mut self, height: u64) {
        while self.acked.recv().await.unwrap() < height {}
    }

    /// Waits for the writer to stop; checks it saw every block it wrote acknowledged, and
    /// returns its model.
    async fn finish(mut self) -> Model {
        let model = self.task.await.unwrap();
        let mut acked = 0;
        while let Ok(h) = self.acked.try_recv() {
            acked = h;
        }
        assert_eq!(acked, model.height);
        model
    }
}

/// Applies `blocks` blocks to `store` and to a memory store, checking every read path agrees.
async fn exercise(store: &impl Store, model: &mut Model, blocks: usize, txs: usize) {
    let reference = MemoryStore::new();
    for _ in 0..blocks {
        let (h, block, change) = model.next_block(txs);
        store.persist(h, &block, &change).await.unwrap();
        reference.persist(h, &block, &change).await.unwrap();
        // A retry of the same block is a no-op, a different block at that height a conflict.
        store.persist(h, &block, &change).await.unwrap();
        assert!(matches!(
            store.persist(h, b"other block", &change).await,
            Err(StorageError::Conflict { height }) if height == h
        ));
        assert_eq!(
            store.tx(&change.txs[0].txid).await.unwrap(),
            Some(change.txs[0].record.clone())
        );
    }
    let h = model.height;
    assert!(matches!(
        store
            .persist(
                h + 2,
                b"gap",
                &BlockChange {
                    spent_from: 1,
                    ..Default::default()
                }
            )
            .await,
        Err(StorageError::OutOfOrder { expected, got }) if expected == h + 1 && got == h + 2
    ));
    assert_eq!(store.applied_height().await.unwrap(), Some(h));
    for a in 0..3 {
        let addr = format!("cof1addr{a}");
        let page1 = store.history(&addr, None, 5).await.unwrap();
        assert_eq!(page1.len(), 5);
        let cursor = page1.last().unwrap().seq.checked_sub(1);
        let page2 = store.history(&addr, cursor, 5).await.unwrap();
        assert!(!page2.is_empty());
        assert_eq!(page1, reference.history(&addr, None, 5).await.unwrap());
        assert_eq!(page2, reference.history(&addr, cursor, 5).await.unwrap());
        // Newest first, contiguous across pages.
        let seqs: Vec<u64> = page1.iter().chain(&page2).map(|h| h.seq).collect();
        assert!(seqs.windows(2).all(|w| w[0] == w[1] + 1), "{seqs:?}");
    }
    assert!(matches!(
        store.history("cof1addr0", None, 1_001).await,
        Err(StorageError::Limit { .. })
    ));
    assert!(matches!(
        store.history("bad{addr}", None, 5).await,
        Err(StorageError::InvalidAddress(_))
    ));
    assert_eq!(
        store.block(h).await.unwrap(),
        reference.block(h).await.unwrap()
    );
    assert_eq!(store.block(h + 1).await.unwrap(), None);
    let snap = store.load().await.unwrap().unwrap();
    assert_eq!(Some(snap.clone()), reference.load().await.unwrap());
    assert_snapshot_consistent(&snap);
}

/// Loads from a fresh connection, as a restarted replica does, and checks it against the model.
async fn reload_matches(config: &RedisConfig, model: &Model) -> RedisStore {
    let store = RedisStore::connect(config).await.unwrap();
    let snap = store.load().await.unwrap().expect("state persisted");
    assert_eq!(snap.height, model.height);
    assert_eq!(snap.commitment, model.commitment());
    assert_eq!(snap.supply, model.supply());
    assert_eq!(snap.utxos, model.utxo_list());
    assert_eq!(snap.spent, model.spent_list());
    assert_eq!(snap.history_lengths, model.history_lengths());
    assert_eq!(snap.mints, model.mint_list());
    assert_eq!(snap.rejected, model.rejected_list());
    assert_snapshot_consistent(&snap);
    store
}

/// A load counts each address's history instead of reading it, but still notices an entry
/// gone missing before the newest (a lost newest entry leaves a consistent shorter history;
/// the full read the load did before could not tell either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_with_a_missing_entry_is_refused_at_load() {
    let redis = Standalone::start();
    let port = redis.server.port;
    // One replica's data per case, so each load meets exactly one damaged history.
    for (prefix, address, lost) in [
        ("coffer:r0", "cof1addr1", "3"),
        ("coffer:r1", "cof1addr2", "0"),
    ] {
        let config = redis.config(prefix);
        let mut model = Model::new(3);
        let store = RedisStore::connect(&config).await.unwrap();
        persist_blocks(&store, &mut model, 6, 3).await;
        drop(store);
        reload_matches(&config, &model).await;
        let key = format!("{{{prefix}:a:{address}}}:hist");
        assert!(cli(port, &["zcard", &key]).parse::<u64>().unwrap() > 3);
        assert_eq!(cli(port, &["zremrangebyscore", &key, lost, lost]), "1");
        let err = RedisStore::connect(&config)
            .await
            .unwrap()
            .load()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StorageError::Corrupt { key: k, .. } if *k == key),
            "{err}"
        );
    }
}

#[tokio::test]
async fn memory_store_contract() {
    let mut model = Model::new(3);
    let store = Storage::from(MemoryStore::new());
    assert_eq!(store.load().await.unwrap(), None);
    exercise(&store, &mut model, 12, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_apply_restart_same_commitment() {
    let redis = Standalone::start();
    let config = redis.config("coffer:r0");
    let mut model = Model::new(3);
    {
        let store = RedisStore::connect(&config).await.unwrap();
        assert_eq!(store.load().await.unwrap(), None);
        exercise(&store, &mut model, 12, 4).await;
    }
    let store = reload_matches(&config, &model).await;
    // The restarted store carries on from where it was.
    let (h, block, change) = model.next_block(3);
    store.persist(h, &block, &change).await.unwrap();
    drop(store);
    reload_matches(&config, &model).await;
    // Spends are remembered for the last three heights only (the model's horizon): every block
    // spent something, so the spent hash holds exactly three heights.
    assert_eq!(
        cli(redis.server.port, &["hlen", "{coffer:r0}:spent"]),
        Model::SPENT_HORIZON.to_string()
    );
    // Rejections (every other block in the model) are one set beside the mints.
    assert_eq!(
        cli(redis.server.port, &["scard", "{coffer:r0}:rejected"]),
        model.rejected_list().len().to_string()
    );
    // A block written in one MULTI/EXEC needs no journal: its entry is the version, the height,
    // the block, its record and commitment, the supply, seven empty lists and the lowest
    // remembered height, nothing more.
    let entry_len = 1
        + 8
        + 4
        + block.len()
        + 4
        + change.block_record.len()
        + 4
        + change.commitment.len()
        + 8
        + 7 * 4
        + 8;
    assert!(!change.created.is_empty() && !change.history.is_empty());
    assert_eq!(
        cli(
            redis.server.port,
            &["strlen", &format!("coffer:r0:block:{h}")]
        ),
        entry_len.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_appendfsync_always_survives_redis_sigkill() {
    let mut redis = Standalone::start();
    redis
        .server
        .restart_with(&["--appendfsync".into(), "always".into()]);
    let config = redis.config("coffer:r0");
    let mut model = Model::new(5);
    let store = RedisStore::connect(&config).await.unwrap();
    persist_blocks(&store, &mut model, 20, 3).await;
    drop(store);
    // Killed without a chance to flush: only what was fsynced per write survives.
    redis.server.restart();
    reload_matches(&config, &model).await;
}

/// A store in layout 3 never recorded its `unknown_input` rejections: restored from it, a
/// replica would remember fewer than one that executed the same blocks, and the two would
/// disagree on the next proposal of such a transaction. It is refused at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_layout_3_is_refused_at_load() {
    let redis = Standalone::start();
    let config = redis.config("coffer:r0");
    let mut model = Model::new(3);
    let store = RedisStore::connect(&config).await.unwrap();
    persist_blocks(&store, &mut model, 2, 1).await;
    drop(store);
    assert_eq!(
        cli(
            redis.server.port,
            &["hset", "{coffer:r0}:meta", "version", "3"]
        ),
        "0"
    );
    // Connecting reads the meta hash, so the refusal comes before any load.
    let refused = match RedisStore::connect(&config).await {
        Ok(store) => store.load().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match refused {
        Err(StorageError::Corrupt { reason, .. }) => {
            assert!(reason.contains("layout version \"3\""), "{reason}");
        }
        other => panic!("a layout-3 store must be refused: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_deployment_are_isolated() {
    let redis = Standalone::start();
    let mut a = Model::new(3);
    let mut b = Model::new(3);
    let sa = RedisStore::connect(&redis.config("coffer:ra"))
        .await
        .unwrap();
    let sb = RedisStore::connect(&redis.config("coffer:rb"))
        .await
        .unwrap();
    persist_blocks(&sa, &mut a, 5, 2).await;
    persist_blocks(&sb, &mut b, 1, 1).await;
    reload_matches(&redis.config("coffer:ra"), &a).await;
    reload_matches(&redis.config("coffer:rb"), &b).await;
}

/// Crashes a transactional (standalone or sentinel) write after `n` commands, restarts and
/// checks nothing of the block is visible, then persists it for real.
async fn crash_mid_block_atomic(config: &RedisConfig) {
    let config = config.clone();
    let mut model = Model::new(3);
    let store = RedisStore::connect(&config).await.unwrap();
    persist_blocks(&store, &mut model, 3, 3).await;
    let before = model.commitment();
    let (h, block, change) = model.next_block(3);
    for n in [1, 4, 1_000] {
        let (store, snap) = crash_persist(&config, n, h, &block, &change).await;
        assert_eq!(snap.height, h - 1, "failpoint after {n} commands");
        assert_eq!(snap.commitment, before);
        assert_snapshot_consistent(&snap);
        assert_eq!(store.block(h).await.unwrap(), None);
        assert_eq!(store.tx(&change.txs[0].txid).await.unwrap(), None);
    }
    let store = RedisStore::connect(&config).await.unwrap();
    store.load().await.unwrap();
    store.persist(h, &block, &change).await.unwrap();
    drop(store);
    reload_matches(&config, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_crash_mid_block_recovers() {
    let redis = Standalone::start();
    crash_mid_block_atomic(&redis.config("coffer:r0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_crash_mid_block_recovers() {
    let group = SentinelGroup::start();
    crash_mid_block_atomic(&group.config("coffer:r0")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_apply_restart_same_commitment() {
    let group = SentinelGroup::start();
    let config = group.config("coffer:r0");
    let mut model = Model::new(3);
    {
        let store = RedisStore::connect(&config).await.unwrap();
        exercise(&store, &mut model, 10, 4).await;
    }
    reload_matches(&config, &model).await;
    // WAIT 1 really waited: both replicas hold the last block's meta.
    for r in &group.replicas {
        let height = cli(r.port, &["hget", "{coffer:r0}:meta", "height"]);
        assert_eq!(height, model.height.to_string());
    }
}

/// Writes blocks in a task, SIGKILLs the master part way, and checks every block acknowledged
/// before, during and after the failover is on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_during_writes_loses_nothing_acknowledged() {
    let mut group = SentinelGroup::start();
    let config = group.config("coffer:r0");
    let old_master = group.master.port;
    let store = Arc::new(RedisStore::connect(&config).await.unwrap());
    // Keep writing until well after the failover.
    let mut writer = Writer::start(store, Model::new(7), 3, Duration::from_secs(8));
    // Let some blocks land, then crash the master.
    writer.reached(20).await;
    group.master.kill();
    let model = writer.finish().await;
    let new_master = group.current_master_port().unwrap();
    assert_ne!(new_master, old_master, "sentinels failed over");
    reload_matches(&config, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_apply_restart_same_commitment() {
    let cluster = Cluster::start();
    let config = cluster.config("coffer:r0");
    let mut model = Model::new(6);
    {
        let store = RedisStore::connect(&config).await.unwrap();
        exercise(&store, &mut model, 10, 6).await;
    }
    reload_matches(&config, &model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_during_writes_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start();
    let config = cluster.config("coffer:r0");
    let store = Arc::new(RedisStore::connect(&config).await.unwrap());
    let mut writer = Writer::start(store, Model::new(16), 4, Duration::from_secs(10));
    writer.reached(20).await;
    let victim = cluster.masters()[0];
    let idx = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    cluster.nodes[idx].kill();
    // WAIT 1 needs a replica for the promoted master: bring the old master back, as an operator
    // would; it rejoins as a replica.
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster.nodes[idx].restart());
    let model = writer.finish().await;
    assert!(!cluster.masters().contains(&victim), "a replica took over");
    reload_matches(&config, &model).await;
}

/// Crashes a cluster write at several points (journal only, some effects, all but the commit)
/// and checks recovery re-applies the block from its journal exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_crash_mid_block_recovers() {
    let cluster = Cluster::start();
    let config = cluster.config("coffer:r0");
    let mut model = Model::new(6);
    let store = RedisStore::connect(&config).await.unwrap();
    persist_blocks(&store, &mut model, 3, 4).await;
    drop(store);
    for n in [0usize, 1, 3, 6, 1_000] {
        let before = model.commitment();
        let (h, block, change) = model.next_block(4);
        let (store, snap) = crash_persist(&config, n, h, &block, &change).await;
        if n == 0 {
            // Nothing reached Redis: the block is simply not there and is persisted again.
            assert_eq!(snap.height, h - 1);
            assert_eq!(snap.commitment, before);
            assert_snapshot_consistent(&snap);
            store.persist(h, &block, &change).await.unwrap();
        } else {
            // The journal landed: recovery finished the block.
            assert_eq!(snap.height, h, "failpoint after {n} commands");
            assert_eq!(snap.commitment, model.commitment());
            assert_snapshot_consistent(&snap);
            // The executor re-delivering the block is a no-op.
            store.persist(h, &block, &change).await.unwrap();
        }
        drop(store);
        reload_matches(&config, &model).await;
    }
}
