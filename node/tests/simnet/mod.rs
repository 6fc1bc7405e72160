//! Shared by the deterministic-simulation tests (`simulation`, `byzantine_sim`): the chain, issuer
//! and genesis of a simulated cluster, commonware's simulated network and its channel
//! registrations, the consensus timeouts, and each replica's log of executed blocks with the
//! agreement check over such logs. Keys, links and transactions stay in each test: they differ
//! on purpose (each test has its own seeds).

// Each test crate uses a part of this module.
#![allow(dead_code)]

use coffer_ledger::{ChainId, Genesis, Keypair, Limits, ReplicaInfo};
use coffer_node::{
    config::genesis_key,
    consensus::{self, ConsensusHandle, Networks, Timeouts, channels},
    executor::ExecutedBlock,
    ledger::LedgerVerifier,
    tx::Txid,
};
use commonware_cryptography::{
    Signer as _,
    ed25519::{PrivateKey, PublicKey},
};
use commonware_p2p::simulated::{self, Network, Oracle};
use commonware_runtime::{Clock as _, Quota, Spawner as _, Supervisor as _, deterministic};
use commonware_utils::NZUsize;
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The simulated cluster's chain id.
pub const CHAIN: &str = "sim";

/// The simulated network's control handle.
pub type SimOracle = Oracle<PublicKey, deterministic::Context>;

/// One registered channel of one replica: its sender and receiver.
pub type Registered = (
    simulated::Sender<PublicKey, deterministic::Context>,
    simulated::Receiver<PublicKey>,
);

/// The consensus channels, in the order [`networks`] assigns them.
pub const CHANNELS: [u64; 6] = [
    channels::VOTES,
    channels::CERTIFICATES,
    channels::RESOLVER,
    channels::BLOCKS,
    channels::BACKFILL,
    channels::MEMPOOL,
];

/// The chain id of [`CHAIN`].
pub fn chain() -> ChainId {
    ChainId::new(CHAIN).unwrap()
}

/// The one issuer of the simulated chain.
pub fn issuer() -> Keypair {
    Keypair::from_secret_bytes([42; 32]).unwrap()
}

/// Genesis with [`issuer`] and one replica (`r{i}`) per key, default limits.
pub fn genesis(keys: &[PrivateKey]) -> Genesis {
    Genesis {
        chain_id: chain(),
        issuers: vec![issuer().public_key()],
        replicas: keys
            .iter()
            .enumerate()
            .map(|(i, k)| ReplicaInfo {
                name: format!("r{i}"),
                public_key: genesis_key(&k.public_key()),
            })
            .collect(),
        limits: Limits::default(),
    }
}

/// Short timeouts, so that simulated runs rotate leaders and skip views quickly.
pub fn timeouts() -> Timeouts {
    Timeouts {
        leader: Duration::from_millis(500),
        certification: Duration::from_secs(1),
        retry: Duration::from_secs(2),
        skip: Duration::from_secs(5),
        fetch: Duration::from_millis(500),
    }
}

/// Starts a simulated network among `participants` (no links yet) and returns its oracle.
pub async fn start_network(
    context: &deterministic::Context,
    participants: Vec<PublicKey>,
) -> SimOracle {
    let n = participants.len();
    let (network, oracle) = Network::new_with_peers(
        context.child("network"),
        simulated::Config {
            max_size: consensus::max_message_size(n),
            max_peers_per_set: NZUsize!(n),
            disconnect_on_block: true,
            tracked_peer_sets: NZUsize!(1),
        },
        participants,
    )
    .await;
    network.start();
    oracle
}

/// Registers every channel of [`CHANNELS`] for `key`, each with `quota`.
pub async fn register(oracle: &SimOracle, key: PublicKey, quota: Quota) -> Vec<Registered> {
    let control = oracle.control(key);
    let mut out = Vec::new();
    for channel in CHANNELS {
        out.push(control.register(channel, quota).await.unwrap());
    }
    out
}

/// The consensus networks from one (sender, receiver) pair per channel, in [`CHANNELS`] order.
pub fn networks<S, R>(channels: Vec<(S, R)>) -> Networks<S, R> {
    assert_eq!(channels.len(), CHANNELS.len(), "one pair per channel");
    let mut channels = channels.into_iter();
    let mut next = || channels.next().unwrap();
    Networks {
        votes: next(),
        certificates: next(),
        resolver: next(),
        blocks: next(),
        backfill: next(),
        mempool: next(),
    }
}

/// What one replica observed: executed blocks by height.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<BTreeMap<u64, Arc<ExecutedBlock>>>>);

impl Log {
    /// The highest executed height (0 before the first block).
    pub fn height(&self) -> u64 {
        self.0
            .lock()
            .unwrap()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }

    /// The block executed at `height`, if observed.
    pub fn get(&self, height: u64) -> Option<Arc<ExecutedBlock>> {
        self.0.lock().unwrap().get(&height).cloned()
    }

    /// Every executed transaction's rejection code (`None`: applied); asserts that none executed
    /// twice.
    pub fn receipts(&self) -> HashMap<Txid, Option<&'static str>> {
        let mut out = HashMap::new();
        for block in self.0.lock().unwrap().values() {
            for r in &block.receipts {
                assert!(
                    out.insert(r.txid, r.rejection).is_none(),
                    "transaction {} executed twice",
                    r.txid
                );
            }
        }
        out
    }

    /// The ids of every executed transaction, applied or rejected.
    pub fn executed(&self) -> HashSet<Txid> {
        let log = self.0.lock().unwrap();
        log.values()
            .flat_map(|b| b.receipts.iter().map(|r| r.txid))
            .collect()
    }
}

/// Records every block `handle` executes from now on into a new [`Log`].
pub fn observe(context: &deterministic::Context, handle: &ConsensusHandle<LedgerVerifier>) -> Log {
    let log = Log::default();
    let mut events = handle.subscribe();
    let sink = log.clone();
    context.child("observer").spawn(move |_| async move {
        while let Ok(block) = events.recv().await {
            sink.0.lock().unwrap().insert(block.height, block);
        }
    });
    log
}

/// Every log in `logs` holds identical blocks (digest, receipts, state commitment) at every
/// height they share; returns that height.
pub fn assert_agreement(logs: &[&Log]) -> u64 {
    let common = logs.iter().map(|l| l.height()).min().unwrap();
    for height in 1..=common {
        let first = logs[0].get(height).expect("log is contiguous");
        for log in &logs[1..] {
            let other = log.get(height).expect("log is contiguous");
            assert_eq!(
                first.digest, other.digest,
                "different blocks committed at {height}"
            );
            assert_eq!(
                first.receipts, other.receipts,
                "different receipts at {height}"
            );
            assert_eq!(
                first.commitment, other.commitment,
                "different state commitments at {height}"
            );
        }
    }
    common
}

/// Waits in simulated time, checking every `poll`, until `done` holds; fails once `bound` has
/// passed. Returns how long it took.
pub async fn wait(
    context: &deterministic::Context,
    what: &str,
    bound: Duration,
    poll: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let start = context.current();
    loop {
        let elapsed = context.current().duration_since(start).unwrap();
        if done() {
            return elapsed;
        }
        assert!(
            elapsed < bound,
            "timed out after {elapsed:?} waiting for {what}"
        );
        context.sleep(poll).await;
    }
}
