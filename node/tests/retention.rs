//! Block retention (`[consensus] retain_blocks`) on a real `coffer-node` process with a Redis
//! store: the block archive is pruned behind the executed height while the ledger keeps every
//! balance, a replica killed and restarted on its pruned archive carries on, and a data
//! directory is refused when its archive layout does not match the configuration. With four
//! replicas, one stopped for less than the retention catches up from its peers' pruned
//! archives.

#![allow(clippy::unwrap_used)]

mod redis_harness;
mod support;

use coffer_ledger::{Amount, Keypair};
use coffer_wallet::TxInfo;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::ProcessCluster;

/// The smallest retention the node accepts (`coffer_node::consensus::MIN_RETAIN_BLOCKS`):
/// sections of 256 blocks, the first pruned once 1,280 blocks are executed.
const RETAIN: u64 = coffer_node::consensus::MIN_RETAIN_BLOCKS;

/// Empty blocks back to back (no idle wait), so the test reaches a few thousand blocks in
/// seconds, and a retention of [`RETAIN`] blocks.
fn fast_and_pruned(text: String) -> String {
    let text = text
        .replace("idle_block_ms = 300 ", "idle_block_ms = 0   ")
        .replace(
            "# retain_blocks = 1000000",
            &format!("retain_blocks = {RETAIN}   "),
        );
    assert!(
        text.contains("idle_block_ms = 0 ") && text.contains("\nretain_blocks = "),
        "config rewritten:\n{text}"
    );
    text
}

/// The directory of the partition of replica `i` whose name ends with `suffix`.
fn partition(home: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(home.join("data"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
}

/// The first height of each section file of a prunable archive partition (blobs are named
/// by their section's first index, big-endian).
fn sections(dir: &Path) -> Vec<u64> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| u64::from_str_radix(&e.file_name().to_string_lossy(), 16).ok())
        .collect();
    found.sort_unstable();
    found
}

/// Waits until replica `i` reports a height of at least `target`; the height reached.
async fn wait_height(net: &ProcessCluster, i: usize, target: u64, within: Duration) -> u64 {
    let solo = net.solo(i);
    let started = Instant::now();
    loop {
        let height = solo.status().await[0].status.as_ref().map(|s| s.height);
        if let Some(h) = height
            && h >= target
        {
            return h;
        }
        assert!(
            started.elapsed() < within,
            "replica{i} at {height:?}, not {target}, after {within:?}\n{}",
            net.tail(i)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_block_archive_keeps_the_ledger_and_survives_a_restart() {
    let redis = redis_harness::Standalone::start();
    let url = redis.server.url();
    let mut net = ProcessCluster::start("retention", 1, Some(&url), fast_and_pruned);
    wait_height(&net, 0, 1, Duration::from_secs(60)).await;
    let mut client = net.client();
    let alice = Keypair::generate();
    let bob = Keypair::generate();
    client.add_key("alice", alice.clone());
    let minted = client
        .mint("issuer", &alice.address(), Amount(900), 1)
        .await
        .expect("mint");
    let sent = client
        .send("alice", &bob.address(), Amount(300))
        .await
        .expect("send");
    assert!(
        sent.height < 256,
        "the transfer's block ({}) is in the first section, which will be pruned",
        sent.height
    );

    // Two sections past the first prune point: sections 0 and 256 go. Pruning follows
    // marshal's deliveries, which may trail the executed height the status reports.
    let reached = wait_height(&net, 0, RETAIN + 2 * 256 + 64, Duration::from_secs(240)).await;
    let home = net.home(0);
    let blocks = partition(&home, "-blocks-pruned-value").expect("pruned block archive");
    let started = Instant::now();
    let kept = loop {
        let kept = sections(&blocks);
        if kept.first().is_some_and(|&first| first >= 512) {
            break kept;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sections below {} not pruned since height {reached}: {kept:?}\n{}",
            reached - RETAIN,
            net.tail(0)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let now = wait_height(&net, 0, reached, Duration::from_secs(10)).await;
    assert!(
        kept[0] + RETAIN <= now,
        "at least the retention is kept (first kept section {}, height {now})",
        kept[0]
    );
    assert!(
        partition(&home, "-blocks-ordinal").is_none(),
        "the keep-everything layout is not written"
    );
    let finalizations = partition(&home, "-finalizations-pruned-value").expect("certificates");
    assert!(
        sections(&finalizations)[0] > 0,
        "old certificates pruned too"
    );
    assert!(
        net.log(0).contains("pruning finalized blocks"),
        "{}",
        net.tail(0)
    );

    // The ledger still answers for the pruned blocks' transactions.
    match client.transaction(&sent.txid).await.expect("old transfer") {
        TxInfo::Committed(c) => assert_eq!((c.height, c.code.as_str()), (sent.height, "ok")),
        other => panic!("the pruned block's transfer is committed: {other:?}"),
    }
    assert_eq!(
        client.balance(&bob.address()).await.unwrap().value.amount,
        Amount(300)
    );

    // Killed and restarted on the pruned archive: the state is there and blocks go on.
    net.kill9(0);
    net.restart(0);
    let after = wait_height(&net, 0, reached + 300, Duration::from_secs(120)).await;
    assert!(after > reached);
    assert_eq!(
        client.balance(&alice.address()).await.unwrap().value.amount,
        Amount(600)
    );
    let again = client
        .send("alice", &bob.address(), Amount(100))
        .await
        .expect("a transfer after the restart");
    assert!(again.height > reached);
    assert!(minted.height < sent.height);

    // Without retain_blocks, the pruned archive is refused, with the reason.
    net.kill9(0);
    let config = home.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nretain_blocks = "));
    std::fs::write(
        &config,
        text.replace("\nretain_blocks = ", "\n# retain_blocks = "),
    )
    .unwrap();
    net.restart(0);
    let code = net.wait_exit(0, Duration::from_secs(60));
    assert_ne!(code, Some(0), "refused:\n{}", net.tail(0));
    assert!(
        net.log(0).contains(
            "retain_blocks is not set, but this data directory holds a pruned block archive"
        ),
        "{}",
        net.tail(0)
    );
}

/// f = 1, every replica pruning: replica 3 is killed once pruning has begun and restarted
/// several hundred blocks later (within the retention). It catches up from its peers' pruned
/// archives and from its own, then executes a new transfer like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_by_less_than_the_retention_catches_up() {
    let redis = redis_harness::Standalone::start();
    let url = redis.server.url();
    let mut net = ProcessCluster::start("retention4", 4, Some(&url), fast_and_pruned);
    // Past the first prune point (RETAIN + one section of 256).
    let stopped_at = wait_height(&net, 3, RETAIN + 300, Duration::from_secs(300)).await;
    net.kill9(3);
    let ahead = wait_height(&net, 0, stopped_at + 400, Duration::from_secs(180)).await;
    assert!(
        net.log(0).contains("pruning finalized blocks"),
        "{}",
        net.tail(0)
    );
    net.restart(3);
    let caught_up = wait_height(&net, 3, ahead, Duration::from_secs(180)).await;
    assert!(caught_up >= ahead);

    let mut client = net.client();
    let alice = Keypair::generate();
    client.add_key("alice", alice.clone());
    client
        .mint("issuer", &alice.address(), Amount(50), 3)
        .await
        .expect("mint");
    let sent = client
        .send("alice", &Keypair::generate().address(), Amount(20))
        .await
        .expect("send");
    assert!(sent.height > ahead);
    wait_height(&net, 3, sent.height, Duration::from_secs(60)).await;
    let on_three = net.solo(3).balance(&alice.address()).await;
    assert_eq!(
        on_three.expect("replica3 answers").value.amount,
        Amount(30),
        "replica3 executed every block up to the transfer"
    );
}
