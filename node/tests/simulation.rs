//! Replicas in commonware's deterministic runtime over the simulated network: seeded, with
//! simulated links, real signatures (ed25519 votes, BIP340 transactions), the real simplex +
//! marshal stack and the real ledger.

// The executor future (now awaiting persistence) nests deeper than the default limit allows.
#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod simnet;

use bytes::Bytes;
use coffer_ledger::{
    Amount, Keypair, Mint, OutPoint, SignedTransaction, Transaction, Transfer, TxOut,
};
use coffer_node::{
    config::genesis_key,
    consensus::SubmitError,
    consensus::{self, ConsensusConfig, ConsensusHandle, Timeouts, channels},
    ledger::{LedgerMachine, LedgerVerifier},
    mempool::MempoolLimits,
    sigcache::VerifiedSignatures,
    tx::Txid,
};
use commonware_cryptography::{
    Signer as _,
    ed25519::{PrivateKey, PublicKey},
};
use commonware_p2p::simulated::Link;
use commonware_runtime::{Clock as _, Handle, Quota, Runner as _, Supervisor as _, deterministic};
use commonware_utils::{NZU32, probability};
use simnet::{CHAIN, Log, SimOracle, chain, genesis, issuer};
use std::{sync::Arc, time::Duration};

/// Deterministic runs must finish well within this simulated time.
const SIM_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on every wait for the cluster to get somewhere.
const WAIT_BOUND: Duration = Duration::from_secs(120);

fn link() -> Link {
    Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        success_rate: probability!(1.0),
    }
}

fn replica_key(i: usize) -> PrivateKey {
    PrivateKey::from_seed(1_000 + i as u64)
}

fn wallet(i: u32) -> Keypair {
    let mut secret = [9u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(secret).unwrap()
}

/// The issuer mints 100 units to wallet `i` (mint nonce `i`).
fn mint(i: u32) -> Bytes {
    let issuer = issuer();
    Bytes::from(
        issuer
            .sign_tx(Transaction::Mint(Mint {
                chain_id: chain(),
                issuer: issuer.public_key(),
                nonce: u64::from(i),
                outputs: vec![TxOut::to_address(Amount(100), wallet(i).address())],
            }))
            .encode(),
    )
}

/// Wallet `i` pays its minted output to wallet `to`.
fn pay(i: u32, to: u32) -> Bytes {
    let from = wallet(i);
    let minted = SignedTransaction::decode(&mint(i)).unwrap().txid();
    Bytes::from(
        from.sign_tx(Transaction::Transfer(Transfer {
            chain_id: chain(),
            signer: from.public_key(),
            inputs: vec![OutPoint {
                txid: minted,
                vout: 0,
            }],
            outputs: vec![TxOut::to_address(Amount(100), wallet(to).address())],
        }))
        .encode(),
    )
}

struct Replica {
    handle: ConsensusHandle<LedgerVerifier>,
    root: Handle<()>,
    log: Log,
    signatures: Arc<VerifiedSignatures>,
}

struct Cluster {
    context: deterministic::Context,
    oracle: SimOracle,
    keys: Vec<PrivateKey>,
    timeouts: Timeouts,
}

impl Cluster {
    async fn new(context: deterministic::Context, n: usize) -> Self {
        let keys: Vec<_> = (0..n).map(replica_key).collect();
        let participants: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
        let oracle = simnet::start_network(&context, participants).await;
        Self {
            context,
            oracle,
            keys,
            timeouts: simnet::timeouts(),
        }
    }

    fn participants(&self) -> Vec<PublicKey> {
        self.keys.iter().map(|k| k.public_key()).collect()
    }

    async fn link(&self, a: usize, b: usize) {
        let (pa, pb) = (self.keys[a].public_key(), self.keys[b].public_key());
        self.oracle
            .add_link(pa.clone(), pb.clone(), link())
            .await
            .unwrap();
        self.oracle.add_link(pb, pa, link()).await.unwrap();
    }

    async fn unlink(&self, a: usize, b: usize) {
        let (pa, pb) = (self.keys[a].public_key(), self.keys[b].public_key());
        let _ = self.oracle.remove_link(pa.clone(), pb.clone()).await;
        let _ = self.oracle.remove_link(pb, pa).await;
    }

    async fn link_all(&self, members: &[usize]) {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                self.link(a, b).await;
            }
        }
    }

    /// Links every pair of `members`, then starts each of them, honest.
    async fn start_linked(&self, members: &[usize]) -> Vec<Replica> {
        self.link_all(members).await;
        let mut replicas = Vec::new();
        for &i in members {
            replicas.push(self.start(i, false).await);
        }
        replicas
    }

    /// Starts replica `i` (again, after a crash: same storage partitions, fresh memory store).
    async fn start(&self, i: usize, byzantine: bool) -> Replica {
        self.start_with(i, byzantine, MempoolLimits::default())
            .await
    }

    async fn start_with(&self, i: usize, byzantine: bool, mempool: MempoolLimits) -> Replica {
        let key = self.keys[i].clone();
        let control = self.oracle.control(key.public_key());
        let quota = Quota::per_second(NZU32!(1_000));
        let networks =
            simnet::networks(simnet::register(&self.oracle, key.public_key(), quota).await);
        let genesis = genesis(&self.keys);
        let mut cfg = ConsensusConfig::new(CHAIN, key, self.participants());
        cfg.partition_prefix = format!("replica{i}");
        cfg.timeouts = self.timeouts;
        cfg.byzantine_proposer = byzantine;
        cfg.mempool = mempool;
        let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
        let signatures = verifier.signatures();
        let (handle, root) = consensus::start(
            self.context.child("replica").with_attribute("index", i),
            cfg,
            verifier,
            LedgerMachine::new(genesis)
                .unwrap()
                .with_signatures(signatures.clone()),
            self.oracle.manager(),
            control,
            networks,
        )
        .expect("valid config");
        let log = simnet::observe(&self.context, &handle);
        Replica {
            handle,
            root,
            log,
            signatures,
        }
    }

    /// Waits (in simulated time, at most [`WAIT_BOUND`]) until `done` holds, checking every
    /// 100ms.
    async fn wait_until(&self, what: &str, done: impl FnMut() -> bool) {
        let poll = Duration::from_millis(100);
        simnet::wait(&self.context, what, WAIT_BOUND, poll, done).await;
    }

    /// Waits until every one of `replicas` executed every one of `txids`.
    async fn wait_executed(&self, what: &str, replicas: &[&Replica], txids: &[Txid]) {
        self.wait_until(what, || {
            replicas.iter().all(|r| all_executed(&r.log, txids))
        })
        .await;
    }
}

fn submit_spread(replicas: &[&Replica], txs: &[Bytes]) -> Vec<Txid> {
    txs.iter()
        .enumerate()
        .map(|(i, tx)| {
            replicas[i % replicas.len()]
                .handle
                .submit(tx.clone())
                .expect("accepted")
        })
        .collect()
}

fn all_executed(log: &Log, txids: &[Txid]) -> bool {
    let receipts = log.receipts();
    txids.iter().all(|id| receipts.contains_key(id))
}

/// Every one of `replicas` executed the same blocks up to the lowest common height, which is
/// above zero; returns that height.
fn assert_agreement(replicas: &[&Replica]) -> u64 {
    let logs: Vec<&Log> = replicas.iter().map(|r| &r.log).collect();
    let common = simnet::assert_agreement(&logs);
    assert!(common > 0, "nothing executed");
    common
}

fn runner(seed: u64) -> deterministic::Runner {
    deterministic::Runner::new(
        deterministic::Config::new()
            .with_seed(seed)
            .with_timeout(Some(SIM_TIMEOUT)),
    )
}

/// Mints to wallets `range` and waits until `replicas` executed them; returns their ids.
async fn fund(cluster: &Cluster, replicas: &[&Replica], range: std::ops::Range<u32>) -> Vec<Txid> {
    let mints: Vec<Bytes> = range.map(mint).collect();
    let ids = submit_spread(replicas, &mints);
    cluster
        .wait_executed("mints executed", replicas, &ids)
        .await;
    for id in &ids {
        assert_eq!(replicas[0].log.receipts()[id], None, "mint {id} rejected");
    }
    ids
}

/// Every wallet in `range` pays wallet `i + 1000`.
fn payments(range: std::ops::Range<u32>) -> Vec<Bytes> {
    range.map(|i| pay(i, i + 1_000)).collect()
}

#[test]
fn four_replicas_order_and_execute_the_same_transfers() {
    for seed in [1, 2, 3] {
        runner(seed).start(|context| async move {
            let cluster = Cluster::new(context, 4).await;
            let replicas = cluster.start_linked(&[0, 1, 2, 3]).await;
            let refs: Vec<&Replica> = replicas.iter().collect();
            fund(&cluster, &refs, 0..41).await;
            let mut txs = payments(0..40);
            // A conflicting pair: two spends of wallet 40's only output. Exactly one applies.
            txs.push(pay(40, 2_000));
            txs.push(pay(40, 3_000));
            let txids = submit_spread(&refs, &txs);
            cluster
                .wait_executed("all transfers executed everywhere", &refs, &txids)
                .await;
            assert_agreement(&refs);
            let receipts = replicas[0].log.receipts();
            // Each replica verified each transaction's signature at most once, though every
            // one passed admission (or gossip), txid lookups, proposal verification, execution
            // and stale eviction.
            for (i, r) in replicas.iter().enumerate() {
                let verified = r.signatures.verifications();
                assert!(
                    verified <= receipts.len() as u64,
                    "replica {i} verified {verified} signatures for {} transactions",
                    receipts.len()
                );
                assert!(verified > 0, "replica {i} verified nothing");
                // And decoded its bytes at most once (key parsing is the other per-copy cost).
                let decoded = r.signatures.decodings();
                assert!(
                    decoded <= receipts.len() as u64,
                    "replica {i} decoded {decoded} byte strings for {} transactions",
                    receipts.len()
                );
            }
            for id in &txids[..40] {
                assert_eq!(receipts[id], None, "honest transfer {id} rejected");
            }
            let conflict: Vec<_> = txids[40..].iter().map(|id| receipts[id]).collect();
            assert_eq!(
                conflict.iter().filter(|r| r.is_none()).count(),
                1,
                "exactly one of two conflicting transfers applies: {conflict:?}"
            );
            assert!(conflict.contains(&Some("input_already_spent")));
            // Finalized (and stale) transactions left every mempool.
            cluster
                .wait_until("mempools drained", || {
                    replicas.iter().all(|r| r.handle.pending() == 0)
                })
                .await;
        });
    }
}

#[test]
fn single_replica_finalizes_alone() {
    runner(7).start(|context| async move {
        let cluster = Cluster::new(context, 1).await;
        let replica = cluster.start(0, false).await;
        let mints = fund(&cluster, &[&replica], 0..20).await;
        let txs = payments(0..20);
        let txids = submit_spread(&[&replica], &txs);
        cluster
            .wait_until("executed", || all_executed(&replica.log, &txids))
            .await;
        assert!(replica.log.receipts().values().all(Option::is_none));
        // Resubmitting a committed transaction is a no-op, not a second execution.
        let again = replica
            .handle
            .submit(txs[0].clone())
            .expect("duplicate is fine");
        assert_eq!(again, txids[0]);
        cluster.context.sleep(Duration::from_secs(3)).await;
        assert_eq!(replica.log.receipts().len(), mints.len() + txids.len());
    });
}

#[test]
fn commits_with_one_replica_offline() {
    runner(11).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        let replicas = cluster.start_linked(&[0, 1, 2]).await;
        let refs: Vec<&Replica> = replicas.iter().collect();
        fund(&cluster, &refs, 0..30).await;
        let txids = submit_spread(&refs, &payments(0..30));
        cluster
            .wait_executed("executed by the three online replicas", &refs, &txids)
            .await;
        assert_agreement(&refs);
        assert!(replicas[0].log.receipts().values().all(Option::is_none));
    });
}

#[test]
fn byzantine_leader_blocks_are_refused() {
    runner(13).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        cluster.link_all(&[0, 1, 2, 3]).await;
        let mut replicas = Vec::new();
        for i in 0..4 {
            // Replica 0 proposes blocks carrying an invalid transaction whenever it leads.
            replicas.push(cluster.start(i, i == 0).await);
        }
        let honest: Vec<&Replica> = replicas[1..].iter().collect();
        let mints = fund(&cluster, &honest, 0..30).await;
        let txids = submit_spread(&honest, &payments(0..30));
        cluster
            .wait_executed("honest replicas executed every transfer", &honest, &txids)
            .await;
        // Keep going for several leader rotations, so the Byzantine replica leads (and
        // proposes its invalid blocks) a few times.
        cluster
            .wait_until("several rotations", || {
                honest.iter().all(|r| r.log.height() >= 16)
            })
            .await;
        assert_agreement(&honest);
        let receipts = honest[0].log.receipts();
        // Only the submitted transactions were executed, all successfully: no block carrying
        // the Byzantine leader's invalid transaction was finalized.
        assert_eq!(receipts.len(), mints.len() + txids.len());
        assert!(receipts.values().all(Option::is_none));
    });
}

#[test]
fn leader_crash_and_restart_catches_up() {
    runner(17).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        let mut replicas = cluster.start_linked(&[0, 1, 2, 3]).await;
        let refs: Vec<&Replica> = replicas.iter().collect();
        let mints = fund(&cluster, &refs, 0..40).await;
        let first_ids = submit_spread(&refs, &payments(0..20));
        cluster
            .wait_executed("first batch executed", &refs, &first_ids)
            .await;

        // Crash replica 0 (a round-robin leader every fourth view).
        let crashed = replicas.remove(0);
        crashed.root.abort();
        let _ = crashed.root.await;
        let refs: Vec<&Replica> = replicas.iter().collect();
        let second_ids = submit_spread(&refs, &payments(20..40));
        cluster
            .wait_executed(
                "commits resume without the crashed leader",
                &refs,
                &second_ids,
            )
            .await;

        // Restart it from its journal and archives with an empty (ephemeral) state store: it
        // must replay and catch up to the same state commitment.
        let restarted = cluster.start(0, false).await;
        let target = replicas.iter().map(|r| r.log.height()).max().unwrap();
        cluster
            .wait_until("restarted replica caught up", || {
                restarted.log.height() >= target
            })
            .await;
        let mut all = refs;
        all.push(&restarted);
        assert_agreement(&all);
        assert!(all_executed(&restarted.log, &mints));
        assert!(all_executed(&restarted.log, &first_ids));
        assert!(all_executed(&restarted.log, &second_ids));
    });
}

#[test]
fn lagging_replica_catches_up_from_peers() {
    runner(19).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        let replicas = cluster.start_linked(&[0, 1, 2, 3]).await;
        // Cut replica 3 off while the others make progress.
        for peer in 0..3 {
            cluster.unlink(3, peer).await;
        }
        let online: Vec<&Replica> = replicas[..3].iter().collect();
        let mints = fund(&cluster, &online, 0..40).await;
        let txids = submit_spread(&online, &payments(0..40));
        cluster
            .wait_executed("progress without replica 3", &online, &txids)
            .await;
        assert!(!all_executed(&replicas[3].log, &mints));
        let target = online.iter().map(|r| r.log.height()).max().unwrap();

        // Reconnect: replica 3 backfills the missing finalized blocks and executes them.
        for peer in 0..3 {
            cluster.link(3, peer).await;
        }
        cluster
            .wait_until("replica 3 caught up", || replicas[3].log.height() >= target)
            .await;
        assert_agreement(&replicas.iter().collect::<Vec<_>>());
        assert!(all_executed(&replicas[3].log, &txids));
    });
}

#[test]
fn submit_answers_busy_when_full_and_rejects_invalid_transactions() {
    runner(23).start(|context| async move {
        let cluster = Cluster::new(context, 1).await;
        let limits = MempoolLimits {
            max_txs: 3,
            ..MempoolLimits::default()
        };
        let replica = cluster.start_with(0, false, limits).await;
        // Garbage and a forged signature fail the stateless check with stable codes.
        let garbage = replica
            .handle
            .submit(Bytes::from_static(b"not a transaction"));
        assert_eq!(garbage.map_err(|e| e.code()), Err("malformed"));
        let mut forged = mint(99).to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let forged = replica.handle.submit(Bytes::from(forged));
        assert!(
            matches!(forged, Err(SubmitError::Rejected(_))),
            "forged signature admitted: {forged:?}"
        );
        // Submissions are synchronous: the fourth arrives before any block drains the pool.
        let mints: Vec<Bytes> = (0..4).map(mint).collect();
        let answers: Vec<_> = mints
            .iter()
            .map(|m| replica.handle.submit(m.clone()))
            .collect();
        assert!(answers[..3].iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(answers[3], Err(SubmitError::Busy));
        assert_eq!(answers[3].clone().map_err(|e| e.code()), Err("busy"));
        // Once a block executes, the pool drains and the refused transaction is accepted.
        let ids: Vec<Txid> = answers[..3].iter().map(|a| *a.as_ref().unwrap()).collect();
        cluster
            .wait_until("first three executed", || all_executed(&replica.log, &ids))
            .await;
        let late = replica.handle.submit(mints[3].clone()).expect("room again");
        cluster
            .wait_until("fourth executed", || all_executed(&replica.log, &[late]))
            .await;
    });
}

#[test]
fn stats_follow_views_leaders_and_skipped_views() {
    runner(29).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        let keys: Vec<[u8; 32]> = (0..4)
            .map(|i| genesis_key(&replica_key(i).public_key()).0)
            .collect();

        // All four online: views advance with the heights, leaders rotate over the replicas.
        let mut replicas = cluster.start_linked(&[0, 1, 2, 3]).await;
        let start = replicas[0].handle.stats();
        assert!(start.view >= 1, "{start:?}");
        let mut leaders = std::collections::HashSet::new();
        cluster
            .wait_until("ten blocks", || {
                let stats = replicas[0].handle.stats();
                leaders.insert(stats.leader);
                replicas.iter().all(|r| r.handle.executed_height() >= 10)
            })
            .await;
        for (i, r) in replicas.iter().enumerate() {
            let stats = r.handle.stats();
            assert!(stats.view > 10, "replica {i}: {stats:?}");
            assert!(stats.finalized_height >= stats.executed_height, "{stats:?}");
            assert!(stats.executed_height >= 10, "{stats:?}");
            assert!(stats.finalizations >= 10, "{stats:?}");
            let leader = stats.leader.expect("a leader");
            assert!(keys.contains(&leader), "leader {leader:?} is not a replica");
        }
        assert!(leaders.len() > 1, "the leader rotates: {leaders:?}");
        let healthy_skips = replicas[0].handle.stats().nullifications;

        // Replica 3 goes offline: its views time out and are skipped by nullification.
        let crashed = replicas.pop().unwrap();
        crashed.root.abort();
        let _ = crashed.root.await;
        let before = replicas[0].handle.stats();
        cluster
            .wait_until("several rotations without replica 3", || {
                replicas
                    .iter()
                    .all(|r| r.handle.executed_height() >= before.executed_height + 8)
            })
            .await;
        for (i, r) in replicas.iter().enumerate() {
            let stats = r.handle.stats();
            assert!(
                stats.nullifications > healthy_skips,
                "replica {i} saw no skipped view with a replica offline: {stats:?}"
            );
            assert!(stats.view > before.view, "{stats:?}");
        }
    });
}

#[test]
fn honest_replicas_agree_despite_a_conflicting_voter() {
    use commonware_consensus::simplex::mocks::conflicter::{Config, Conflicter};
    use commonware_cryptography::sha256::Sha256;
    runner(31).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        cluster.link_all(&[0, 1, 2, 3]).await;
        // Replica 3 is Byzantine: for every vote it sees it signs a notarize (and finalize)
        // for a random block as well as for the real one, and never proposes.
        let byzantine = cluster.keys[3].clone();
        let control = cluster.oracle.control(byzantine.public_key());
        let votes = control
            .register(channels::VOTES, Quota::per_second(NZU32!(1_000)))
            .await
            .unwrap();
        let participants =
            commonware_utils::ordered::Set::try_from(cluster.participants()).unwrap();
        let namespace =
            ConsensusConfig::new(CHAIN, byzantine.clone(), cluster.participants()).namespace();
        let scheme = consensus::Scheme::signer(&namespace, participants, byzantine).unwrap();
        Conflicter::<_, _, Sha256>::new(cluster.context.child("conflicter"), Config { scheme })
            .start(votes);

        let mut replicas = Vec::new();
        for i in 0..3 {
            replicas.push(cluster.start(i, false).await);
        }
        let refs: Vec<&Replica> = replicas.iter().collect();
        fund(&cluster, &refs, 0..20).await;
        let txids = submit_spread(&refs, &payments(0..20));
        cluster
            .wait_executed("honest replicas executed every transfer", &refs, &txids)
            .await;
        cluster
            .wait_until("more blocks", || {
                replicas.iter().all(|r| r.log.height() >= 12)
            })
            .await;
        let common = assert_agreement(&refs);
        assert!(common >= 12);
        let receipts = replicas[0].log.receipts();
        assert!(txids.iter().all(|id| receipts[id].is_none()));
    });
}

/// A transfer from a wallet the Byzantine replica controls, spending an output that does not
/// exist: it passes the stateless check (signature, chain id, limits) and is only rejected at
/// execution.
fn junk(j: u32) -> Bytes {
    let from = wallet(9_999);
    let mut fake = [0xEEu8; 32];
    fake[..4].copy_from_slice(&j.to_be_bytes());
    Bytes::from(
        from.sign_tx(Transaction::Transfer(Transfer {
            chain_id: chain(),
            signer: from.public_key(),
            inputs: vec![OutPoint {
                txid: coffer_ledger::Txid(fake),
                vout: 0,
            }],
            outputs: vec![TxOut::to_address(Amount(1), wallet(9_998).address())],
        }))
        .encode(),
    )
}

/// One replica floods its peers' mempools with validly signed junk: its gossip fills at most its
/// share of each pool, so honest clients are never turned away (each pool had room for all).
#[test]
fn a_byzantine_replicas_gossip_flood_leaves_room_for_honest_clients() {
    use commonware_codec::Encode as _;
    use commonware_p2p::{Recipients, Sender as _};
    use commonware_runtime::Spawner as _;
    runner(37).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        cluster.link_all(&[0, 1, 2, 3]).await;
        let limits = MempoolLimits {
            max_txs: 256,
            ..MempoolLimits::default()
        };
        let mut replicas = Vec::new();
        for i in 0..3 {
            replicas.push(cluster.start_with(i, false, limits).await);
        }
        let refs: Vec<&Replica> = replicas.iter().collect();
        fund(&cluster, &refs, 0..30).await;

        // Replica 3 (Byzantine) only gossips: batches of 256 fresh, validly signed junk
        // transfers every 20 ms (5% of its 1,000 messages/s channel quota).
        let control = cluster.oracle.control(cluster.keys[3].public_key());
        let (mut sender, _receiver) = control
            .register(channels::MEMPOOL, Quota::per_second(NZU32!(1_000)))
            .await
            .unwrap();
        let junk: Vec<Bytes> = (0..40_000).map(junk).collect();
        cluster
            .context
            .child("flood")
            .spawn(move |context| async move {
                for batch in junk.chunks(256) {
                    let _ = sender.send(Recipients::All, batch.to_vec().encode(), false);
                    context.sleep(Duration::from_millis(20)).await;
                }
            });
        cluster.context.sleep(Duration::from_millis(500)).await;

        // Honest clients retry every 100 ms for 10 s (simulated).
        let mut pending: Vec<(usize, Bytes)> = payments(0..30).into_iter().enumerate().collect();
        let (mut attempts, mut busy) = (0, 0);
        let mut txids = Vec::new();
        for _ in 0..100 {
            let mut left = Vec::new();
            for (i, tx) in pending {
                attempts += 1;
                match replicas[i % 3].handle.submit(tx.clone()) {
                    Ok(id) => txids.push(id),
                    Err(SubmitError::Busy) => {
                        busy += 1;
                        left.push((i, tx));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            pending = left;
            if pending.is_empty() {
                break;
            }
            cluster.context.sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(txids.len(), 30, "every payment admitted");
        let junk_executed = replicas[0]
            .log
            .receipts()
            .values()
            .filter(|r| r.is_some())
            .count();
        // Without replica 3's gossip no submission is refused (30 payments, room for 256).
        assert_eq!(
            busy,
            0,
            "{busy} of {attempts} honest submissions answered busy ({} payments never \
             admitted); honest pools {:?}; {junk_executed} junk transfers executed",
            pending.len(),
            replicas
                .iter()
                .map(|r| r.handle.pending())
                .collect::<Vec<_>>()
        );
    });
}

/// Txids exclude the signature: copies of a known transaction with broken signatures share its
/// txid. They are checked like any new transaction, and their sender is blocked.
#[test]
fn tampered_gossip_copies_of_known_transactions_are_checked_and_their_sender_blocked() {
    use coffer_node::tx::TxVerifier as _;
    use commonware_codec::Encode as _;
    use commonware_p2p::{Recipients, Sender as _};
    use commonware_runtime::Spawner as _;
    runner(41).start(|context| async move {
        let cluster = Cluster::new(context, 4).await;
        cluster.link_all(&[0, 1, 2, 3]).await;
        let mut replicas = Vec::new();
        for i in 0..3 {
            replicas.push(cluster.start(i, false).await);
        }
        let refs: Vec<&Replica> = replicas.iter().collect();
        let mints = fund(&cluster, &refs, 0..30).await;

        // Copies of a finalized mint whose 64 signature bytes are garbage: same txid (txids
        // exclude the signature), each a distinct, invalid byte string.
        let original = mint(0);
        let verifier = LedgerVerifier::new(Arc::new(genesis(&cluster.keys)));
        let tampered = |j: u32| {
            let mut bytes = original.to_vec();
            let n = bytes.len();
            bytes[n - 64..n - 60].copy_from_slice(&j.to_be_bytes());
            Bytes::from(bytes)
        };
        assert_eq!(verifier.txid(&tampered(1)), mints[0]);
        assert!(
            verifier.check(&tampered(1)).is_err(),
            "an invalid transaction"
        );

        let control = cluster.oracle.control(cluster.keys[3].public_key());
        let (mut sender, _receiver) = control
            .register(channels::MEMPOOL, Quota::per_second(NZU32!(1_000)))
            .await
            .unwrap();
        let copies: Vec<Bytes> = (0..70_000).map(tampered).collect();
        let before = replicas[0].signatures.len();
        cluster
            .context
            .child("tamper")
            .spawn(move |context| async move {
                for batch in copies.chunks(256) {
                    let _ = sender.send(Recipients::All, batch.to_vec().encode(), false);
                    context.sleep(Duration::from_millis(5)).await;
                }
            });
        cluster.context.sleep(Duration::from_secs(3)).await;
        let blocked = cluster.oracle.blocked().await.unwrap();
        let after = replicas[0].signatures.len();
        // All three honest replicas block it, and its copies do not stay in their caches.
        let byzantine = cluster.keys[3].public_key();
        assert_eq!(
            blocked.iter().filter(|(_, b)| *b == byzantine).count(),
            3,
            "{blocked:?}"
        );
        assert!(after < 1_000, "{before} -> {after} cached signatures");
        assert!(
            !blocked.is_empty(),
            "replica 3 sent 70,000 invalid transactions and is not blocked; replica 0's \
             signature cache went from {before} to {after} entries ({} bytes decoded)",
            replicas[0].signatures.decoded_bytes()
        );
    });
}
