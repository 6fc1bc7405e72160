//! Transaction ordering: commonware `simplex` (ed25519) + marshal block delivery, behind a
//! small seam.
//!
//! The rest of the node sees only [`ConsensusHandle`] (submit a transaction, subscribe to
//! executed blocks) and [`start`], which takes a runtime context, a [`ConsensusConfig`], the
//! state machine and six network channels. No engine type crosses this boundary.
//!
//! One replica is:
//! - a simplex engine (votes, certificates and certificate-repair channels) with round-robin
//!   leaders, signing with the replica's ed25519 key;
//! - marshal (standard variant, inline verification): blocks are broadcast whole by the leader,
//!   finalized blocks are persisted in local archives and delivered in height order, and
//!   missing ones are fetched from peers (backfill channel);
//! - the [`App`](application) that builds blocks from the mempool and checks peers' blocks;
//! - a gossip task that spreads locally submitted transactions to every replica, so a faulty
//!   leader cannot censor a transaction forever (the next honest leader proposes it);
//! - the [`Executor`] that applies finalized blocks exactly once and publishes the results.

pub(crate) mod application;
mod archives;
pub mod block;
mod early;
mod stats;

pub use application::ProposalLimits;
pub use archives::MIN_RETAIN_BLOCKS;
pub use stats::ConsensusStats;

use crate::{
    executor::{ExecutedBlock, Executor, FinalizedBlock, Offered},
    mempool::{Admission, Mempool, MempoolLimits},
    origins::Origins,
    tx::{MAX_TX_BYTES, StateMachine, TxRejection, TxVerifier, Txid},
};
use application::{App, BatchWindow};
use archives::Archives;
use block::Block;
use bytes::Bytes;
use commonware_broadcast::buffered;
use commonware_codec::{Decode, Encode, RangeCfg};
use commonware_consensus::{
    Reporter, Reporters,
    marshal::{self, Update, core::Actor as Marshal, standard::Inline},
    simplex::{
        self,
        config::{ForwardPolicy, SkipBudget, SkipPolicy},
        elector::RoundRobin,
    },
    types::{Epoch, FixedEpocher, Height, ViewDelta},
};
use commonware_cryptography::{
    Digestible as _, Signer as _,
    certificate::{ConstantProvider, Verifier as _},
    ed25519::{PrivateKey, PublicKey},
    sha256::Sha256,
};
use commonware_macros::select;
use commonware_p2p::{Blocker, Provider, Receiver, Recipients, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{Clock, Handle, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_utils::{
    Acknowledgement as _, NZU16, NZU64, NZUsize, acknowledgement::Exact, ordered::Set,
};
use futures::{StreamExt as _, channel::mpsc};
use stats::Tracker;
use std::{
    num::NonZeroUsize,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::broadcast;
use tracing::{error, info, warn};

/// The simplex signing scheme: ed25519, attributable votes and certificates.
pub type Scheme = simplex::scheme::ed25519::Scheme;

/// Network channel ids; every replica must use the same.
pub mod channels {
    /// Simplex votes.
    pub const VOTES: u64 = 0;
    /// Simplex certificates.
    pub const CERTIFICATES: u64 = 1;
    /// Simplex certificate repair.
    pub const RESOLVER: u64 = 2;
    /// Marshal block broadcast.
    pub const BLOCKS: u64 = 3;
    /// Marshal backfill of missing blocks.
    pub const BACKFILL: u64 = 4;
    /// Mempool gossip.
    pub const MEMPOOL: u64 = 5;
}

/// Most transactions carried by one gossip message.
const MAX_GOSSIP_BATCH: usize = 256;
/// Locally submitted transactions queued for gossip before `submit` answers busy.
const GOSSIP_QUEUE: usize = 16_384;
/// Executed-block notifications buffered per subscriber before the slowest ones lag.
const EVENT_CAPACITY: usize = 1_024;
/// Finalized blocks handed to the executor but not yet acknowledged.
const MAX_PENDING_ACKS: usize = 16;
/// Epoch length: the chain has a single, static validator set, so one epoch spans all
/// heights a replica will ever reach.
const EPOCH_LENGTH: u64 = 1 << 48;

/// Consensus timeouts (simplex terminology).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for the leader's proposal before voting to skip the view.
    pub leader: Duration,
    /// How long to wait for a notarization to certify before voting to skip.
    pub certification: Duration,
    /// How often to re-broadcast a nullify vote while stuck in a view.
    pub retry: Duration,
    /// How long a leader may be inactive (while a quorum is active) before its views are
    /// skipped immediately.
    pub skip: Duration,
    /// How long to wait for a peer to answer a fetch.
    pub fetch: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            leader: Duration::from_secs(1),
            certification: Duration::from_secs(2),
            retry: Duration::from_secs(5),
            skip: Duration::from_secs(10),
            fetch: Duration::from_secs(1),
        }
    }
}

impl Timeouts {
    /// Checks the ordering simplex requires (it asserts on these).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ok = self.leader > Duration::ZERO
            && self.certification > self.leader
            && self.retry > Duration::ZERO
            && self.skip > self.certification
            && self.skip > self.retry
            && self.fetch > Duration::ZERO;
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Timeouts(format!("{self:?}")))
        }
    }
}

/// Configuration of one replica's consensus.
#[derive(Clone, Debug)]
pub struct ConsensusConfig {
    /// Chain identifier; namespaces every consensus signature.
    pub chain_id: String,
    /// This replica's ed25519 key.
    pub signer: PrivateKey,
    /// Every replica's public key (from the genesis); n = 3f + 1.
    pub participants: Vec<PublicKey>,
    /// Prefix of this replica's storage partitions (journal, archives).
    pub partition_prefix: String,
    /// Consensus timeouts.
    pub timeouts: Timeouts,
    /// Block building limits.
    pub proposal: ProposalLimits,
    /// Mempool limits.
    pub mempool: MempoolLimits,
    /// Capacity of the engines' internal mailboxes.
    pub mailbox_size: usize,
    /// Finalized blocks kept in the local block archive below the executed height; `None`
    /// keeps every block (see `consensus/archives.rs`). Only for a replica whose state
    /// machine is durable: an ephemeral one rebuilds its state from the archive at every
    /// start. Blocks below the retention can no longer be served to a replica further behind.
    pub retain_blocks: Option<u64>,
    /// Test hook for Byzantine scenarios: when leading, propose blocks that carry an invalid
    /// transaction. Honest replicas must refuse to vote for them. Never set in production.
    #[doc(hidden)]
    pub byzantine_proposer: bool,
}

impl ConsensusConfig {
    /// A configuration with default limits and timeouts.
    pub fn new(chain_id: &str, signer: PrivateKey, participants: Vec<PublicKey>) -> Self {
        let partition_prefix = format!("coffer-{}", hex::encode(signer.public_key().encode()));
        Self {
            chain_id: chain_id.to_string(),
            signer,
            participants,
            partition_prefix,
            timeouts: Timeouts::default(),
            proposal: ProposalLimits::default(),
            mempool: MempoolLimits::default(),
            mailbox_size: 1_024,
            retain_blocks: None,
            byzantine_proposer: false,
        }
    }

    /// The namespace of every consensus signature of this chain.
    pub fn namespace(&self) -> Vec<u8> {
        format!("coffer/{}/consensus", self.chain_id).into_bytes()
    }
}

/// Errors detected before the replica starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The signer's key is not in the participant list.
    #[error("replica key {0} is not a participant")]
    NotParticipant(String),
    /// The participant list is empty or has duplicates.
    #[error("invalid participant list: {0}")]
    Participants(String),
    /// Timeouts violate simplex's ordering constraints.
    #[error("invalid timeouts: {0}")]
    Timeouts(String),
    /// A limit is zero or above its protocol maximum.
    #[error("invalid limit: {0}")]
    Limit(String),
    /// The block archives on disk do not match the configured retention.
    #[error("block archives: {0}")]
    Archives(String),
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The transaction failed the stateless check.
    #[error("transaction rejected: {0}")]
    Rejected(TxRejection),
    /// The mempool (or gossip queue) is full; retry later.
    #[error("mempool is full")]
    Busy,
    /// The replica is shutting down.
    #[error("replica is stopped")]
    Stopped,
}

impl SubmitError {
    /// Stable snake_case code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(rejection) => rejection.code(),
            Self::Busy => "busy",
            Self::Stopped => "stopped",
        }
    }
}

/// The seam between consensus and the rest of the node.
#[derive(Clone)]
pub struct ConsensusHandle<V: TxVerifier> {
    verifier: V,
    mempool: Arc<Mutex<Mempool>>,
    arrivals: Arc<tokio::sync::Notify>,
    gossip: mpsc::Sender<Bytes>,
    events: broadcast::Sender<Arc<ExecutedBlock>>,
    executed: Arc<AtomicU64>,
    tracker: Tracker,
    origins: Arc<Origins>,
}

impl<V: TxVerifier> ConsensusHandle<V> {
    /// Where this replica heard of each transaction (its API or peers' gossip).
    pub fn origins(&self) -> Arc<Origins> {
        self.origins.clone()
    }

    /// The stateless check this replica runs (shares its signature cache).
    pub fn verifier(&self) -> &V {
        &self.verifier
    }

    /// Where consensus is: current view and leader, finalized and executed heights, and how
    /// many views were skipped (see [`ConsensusStats`]).
    pub fn stats(&self) -> ConsensusStats {
        self.tracker.snapshot(self.executed_height())
    }

    /// Checks a transaction statelessly, adds it to the mempool and gossips it to every replica.
    ///
    /// Resubmitting a pending transaction succeeds without effect (same txid).
    pub fn submit(&self, tx: Bytes) -> Result<Txid, SubmitError> {
        if tx.len() > MAX_TX_BYTES {
            return Err(SubmitError::Rejected(TxRejection::TooLarge {
                size: tx.len(),
                max: MAX_TX_BYTES,
            }));
        }
        let txid = self.verifier.check(&tx).map_err(SubmitError::Rejected)?;
        let mut pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
        match pool.insert(txid, tx.clone()) {
            Admission::Duplicate => Ok(txid),
            Admission::Busy => Err(SubmitError::Busy),
            Admission::Added => {
                let mut gossip = self.gossip.clone();
                match gossip.try_send(tx) {
                    Ok(()) => {
                        self.origins.local(txid.0);
                        self.arrivals.notify_one();
                        Ok(txid)
                    }
                    Err(e) if e.is_full() => {
                        // Keep the invariant "pending locally implies gossiped".
                        pool.remove(&txid);
                        Err(SubmitError::Busy)
                    }
                    Err(_) => {
                        pool.remove(&txid);
                        Err(SubmitError::Stopped)
                    }
                }
            }
        }
    }

    /// The sender executed blocks are published on (to subscribe again later).
    pub fn event_sender(&self) -> broadcast::Sender<Arc<ExecutedBlock>> {
        self.events.clone()
    }

    /// Subscribes to executed blocks, in height order from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ExecutedBlock>> {
        self.events.subscribe()
    }

    /// Height of the last executed block.
    pub fn executed_height(&self) -> u64 {
        self.executed.load(Ordering::Acquire)
    }

    /// Whether `txid` is pending in the local mempool.
    pub fn is_pending(&self, txid: &Txid) -> bool {
        self.mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(txid)
    }

    /// Number of pending transactions in the local mempool.
    pub fn pending(&self) -> usize {
        self.mempool.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The six network channels of a replica (see [`channels`] for their ids).
pub struct Networks<S, R> {
    /// Simplex votes.
    pub votes: (S, R),
    /// Simplex certificates.
    pub certificates: (S, R),
    /// Simplex certificate repair.
    pub resolver: (S, R),
    /// Marshal block broadcast.
    pub blocks: (S, R),
    /// Marshal backfill.
    pub backfill: (S, R),
    /// Mempool gossip.
    pub mempool: (S, R),
}

/// Largest message any channel must carry (a full block plus certificates and framing).
pub fn max_message_size(participants: usize) -> u32 {
    let participants = u32::try_from(participants).unwrap_or(u32::MAX);
    let size =
        marshal::max_payload_size::<marshal::standard::Standard<Block>, Scheme>(participants, &());
    // The bound is a few MiB; saturate rather than truncate on a platform with a tiny u32.
    u32::try_from(size + 1024).unwrap_or(u32::MAX)
}

/// Refuses a data directory whose block archives were written with the other retention
/// setting (kept whole vs pruned, see [`ConsensusConfig::retain_blocks`]).
pub async fn check_archives<E: Storage>(
    context: &E,
    config: &ConsensusConfig,
) -> Result<(), ConfigError> {
    archives::check_layout(context, &config.partition_prefix, config.retain_blocks)
        .await
        .map_err(ConfigError::Archives)
}

/// Validates `config` and starts a replica under `context`.
///
/// Returns the seam and the handle of the replica's root task: aborting it stops every actor
/// of the replica (as a crash would); its storage survives for a restart.
#[allow(clippy::too_many_arguments)]
pub fn start<E, V, M, P, B, S, R>(
    context: E,
    config: ConsensusConfig,
    verifier: V,
    machine: M,
    peers: P,
    blocker: B,
    networks: Networks<S, R>,
) -> Result<(ConsensusHandle<V>, Handle<()>), ConfigError>
where
    E: Spawner + Clock + Metrics + Storage + rand::CryptoRng + rand::Rng,
    V: TxVerifier,
    M: StateMachine,
    P: Provider<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
{
    config.timeouts.validate()?;
    if config.proposal.max_txs == 0 || config.proposal.max_txs > block::MAX_BLOCK_TXS {
        return Err(ConfigError::Limit(format!(
            "proposal max_txs {} not in 1..={}",
            config.proposal.max_txs,
            block::MAX_BLOCK_TXS
        )));
    }
    if config.proposal.max_bytes < MAX_TX_BYTES
        || config.proposal.max_bytes > block::MAX_BLOCK_BYTES
    {
        return Err(ConfigError::Limit(format!(
            "proposal max_bytes {} not in {MAX_TX_BYTES}..={}",
            config.proposal.max_bytes,
            block::MAX_BLOCK_BYTES
        )));
    }
    if config.mempool.max_txs == 0 || config.mempool.max_bytes < MAX_TX_BYTES {
        return Err(ConfigError::Limit(format!("mempool {:?}", config.mempool)));
    }
    if let Some(retain) = config.retain_blocks
        && retain < MIN_RETAIN_BLOCKS
    {
        return Err(ConfigError::Limit(format!(
            "retain_blocks {retain} is below {MIN_RETAIN_BLOCKS}"
        )));
    }
    let mailbox_size = NonZeroUsize::new(config.mailbox_size)
        .ok_or_else(|| ConfigError::Limit("mailbox_size must be positive".into()))?;
    let participants = Set::try_from(config.participants.clone())
        .map_err(|e| ConfigError::Participants(format!("{e:?}")))?;
    if participants.is_empty() {
        return Err(ConfigError::Participants("empty".into()));
    }
    let me = config.signer.public_key();
    let scheme = Scheme::signer(
        &config.namespace(),
        participants.clone(),
        config.signer.clone(),
    )
    .ok_or_else(|| ConfigError::NotParticipant(me.to_string()))?;

    let mempool = Arc::new(Mutex::new(
        Mempool::new(config.mempool).with_peers(participants.len().saturating_sub(1)),
    ));
    let arrivals = Arc::new(tokio::sync::Notify::new());
    let executed = Arc::new(AtomicU64::new(machine.applied_height()));
    let tracker = Tracker::new(&participants);
    let alone = participants.len() == 1;
    let (events, _) = broadcast::channel(EVENT_CAPACITY);
    let (gossip_tx, gossip_rx) = mpsc::channel(GOSSIP_QUEUE);
    let origins = Arc::new(Origins::default());
    let handle = ConsensusHandle {
        verifier: verifier.clone(),
        mempool: mempool.clone(),
        arrivals: arrivals.clone(),
        gossip: gossip_tx,
        events: events.clone(),
        executed: executed.clone(),
        tracker: tracker.clone(),
        origins: origins.clone(),
    };

    // The executor calls the store (the Redis client, whose timers and sockets need tokio):
    // it runs with the caller's tokio runtime entered, whichever runtime polls it.
    let ambient = tokio::runtime::Handle::try_current().ok();
    let root = context.child("replica").spawn(move |context| async move {
        let genesis = Block::genesis(&config.chain_id);
        let genesis_digest = genesis.digest();
        let page_cache = CacheRef::new(NZU16!(4096), NZUsize!(1024));
        let prefix = config.partition_prefix.clone();

        // Marshal: ordered, persisted, backfilled delivery of finalized blocks.
        let (backfill_rx, backfill_resolver) = marshal::resolver::p2p::init(
            context.child("backfill"),
            marshal::resolver::p2p::Config {
                public_key: me.clone(),
                peer_provider: peers.clone(),
                blocker: blocker.clone(),
                mailbox_size,
                fetch_timeout: nz_duration(config.timeouts.fetch),
                fetch_retry_delay: Duration::from_millis(100),
                priority_requests: false,
                priority_responses: false,
            },
            networks.backfill,
        );
        let (broadcast_engine, buffer) = buffered::Engine::new(
            context.child("blocks"),
            buffered::Config {
                public_key: me.clone(),
                mailbox_size,
                deque_size: 16,
                priority: false,
                codec_config: (),
                peer_provider: peers.clone(),
                strategy: Sequential,
            },
        );
        broadcast_engine.start(networks.blocks);

        let retain = config.retain_blocks;
        let finalizations = Archives::open(
            context.child("finalizations"),
            &prefix,
            "finalizations",
            &page_cache,
            Scheme::certificate_codec_config_unbounded(),
            retain,
        )
        .await;
        let blocks = Archives::<_, _, Arc<Block>>::open(
            context.child("finalized_blocks"),
            &prefix,
            "blocks",
            &page_cache,
            (),
            retain,
        )
        .await;
        let (finalizations, blocks) = match (finalizations, blocks) {
            (Ok(f), Ok(b)) => (f, b),
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot open marshal archives");
                return;
            }
        };
        let epocher = FixedEpocher::new(NZU64!(EPOCH_LENGTH));
        let (marshal_actor, marshal_mailbox, floor) = Marshal::init(
            context.child("marshal"),
            finalizations,
            blocks,
            marshal::Config {
                provider: ConstantProvider::new(scheme.clone()),
                epocher: epocher.clone(),
                start: marshal::Start::Genesis(commonware_cryptography::Digested::precomputed(
                    genesis,
                    genesis_digest,
                )),
                partition_prefix: format!("{prefix}-marshal"),
                mailbox_size,
                view_retention: ViewDelta::new(64),
                prunable_items_per_section: NZU64!(256),
                page_cache: page_cache.clone(),
                replay_buffer: NZUsize!(1 << 20),
                key_write_buffer: NZUsize!(1 << 20),
                value_write_buffer: NZUsize!(1 << 20),
                block_codec_config: (),
                max_repair: NZUsize!(16),
                max_pending_acks: NZUsize!(MAX_PENDING_ACKS),
                strategy: Sequential,
            },
        )
        .await;
        let processed = floor.processed().map_or(0, |p| p.height().get());
        info!(processed, "marshal restored");

        // Executor: replays what marshal processed but the store has not (ephemeral stores
        // restart from genesis), then follows marshal's ordered deliveries and, ahead of them,
        // the blocks simplex's finalizations name that this replica already holds (`early`).
        let (deliveries_tx, deliveries_rx) =
            mpsc::unbounded::<(commonware_cryptography::Digested<Block>, Exact)>();
        let (early_tx, early_rx) = mpsc::channel(early::QUEUE);
        let held = Arc::new(Mutex::new(early::Held::default()));
        let executed_for_app = executed.clone();
        let mut executor = Executor::new(machine, mempool.clone(), executed, events);
        let replay_mailbox = marshal_mailbox.clone();
        let prune_mailbox = marshal_mailbox.clone();
        let executed_tracker = tracker.clone();
        let mut pruner = retain.map(archives::Pruner::new);
        context.child("executor").spawn(move |_| {
            crate::runtime::InTokio::new(ambient, async move {
                let from = executor.applied_height() + 1;
                for height in from..=processed {
                    let Some(block) = replay_mailbox.get_block(Height::new(height)).await else {
                        // Marshal already processed this height, so it will not deliver it
                        // again: a store behind the archive's pruning point (acknowledged
                        // blocks lost by Redis) cannot catch up on its own.
                        error!(
                            height,
                            processed,
                            "finalized block missing from the local archive below marshal's \
                             processed height: this replica's store lost blocks it had \
                             acknowledged and cannot catch up by itself; restore the store from \
                             a backup at or above the processed height, or, if its peers keep \
                             every finalized block (no retain_blocks), wipe its store and data \
                             directory to resync from them"
                        );
                        break;
                    };
                    if let Err(e) = executor.offer(finalized(&block)).await {
                        crate::executor::fatal_store_error(&e);
                    }
                }
                let mut arrivals = futures::stream::select(
                    deliveries_rx.map(|(block, ack)| (block, Some(ack))),
                    early_rx.map(|block| (block, None)),
                );
                while let Some((block, ack)) = arrivals.next().await {
                    // Marshal's copy of a block already executed early (the usual case) is not
                    // converted for the executor only to be found a duplicate.
                    let offered = if block.inner().height <= executor.applied_height() {
                        Ok(Offered::Duplicate)
                    } else {
                        executor.offer(finalized(&block)).await
                    };
                    match offered {
                        Ok(Offered::Applied) if ack.is_none() => executed_tracker.executed_early(),
                        // An early block above a gap is normal (its ancestor's certificate came
                        // first, or it was never held); marshal delivers it again in order.
                        Ok(Offered::Dropped) if ack.is_some() => {
                            warn!(height = block.inner().height, "dropped block above gap")
                        }
                        Ok(_) => {}
                        Err(e) => crate::executor::fatal_store_error(&e),
                    }
                    let Some(ack) = ack else {
                        continue;
                    };
                    // Acknowledge only once applied and recorded: marshal then advances its
                    // processed height, which bounds what a restart must replay.
                    ack.acknowledge();
                    if let Some(below) = pruner
                        .as_mut()
                        .and_then(|p| p.after(executor.applied_height()))
                    {
                        info!(below, "pruning finalized blocks");
                        prune_mailbox.prune(Height::new(below));
                    }
                }
            })
        });
        marshal_actor.start(
            Deliveries {
                tx: deliveries_tx,
                tracker: tracker.clone(),
            },
            buffer,
            (backfill_rx, backfill_resolver),
        );

        // Mempool gossip.
        let (gossip_sender, gossip_receiver) = networks.mempool;
        context.child("gossip").spawn({
            let mempool = mempool.clone();
            let arrivals = arrivals.clone();
            let verifier = verifier.clone();
            let blocker = blocker.clone();
            let origins = origins.clone();
            move |_| {
                gossip(
                    gossip_rx,
                    (gossip_sender, gossip_receiver),
                    blocker,
                    (mempool, arrivals, origins),
                    verifier,
                )
            }
        });

        // Simplex.
        let app = App {
            mempool,
            arrivals,
            window: Arc::new(Mutex::new(BatchWindow::new(alone))),
            verifier,
            executed: executed_for_app,
            held: held.clone(),
            limits: config.proposal,
            byzantine: config.byzantine_proposer,
        };
        let wrapper = Inline::new(context.child("inline"), app, marshal_mailbox, epocher);
        let timeouts = config.timeouts;
        let engine = simplex::Engine::new(
            context.child("simplex"),
            simplex::config::Config {
                scheme,
                elector: RoundRobin::<Sha256>::default(),
                blocker,
                automaton: wrapper.clone(),
                relay: wrapper.clone(),
                // Marshal needs every activity; the tracker follows views for `stats`; early
                // finality hands held blocks to the executor on their finalization.
                reporter: Reporters::from((
                    wrapper,
                    Reporters::from((tracker, early::EarlyFinality { held, tx: early_tx })),
                )),
                strategy: Sequential,
                partition: format!("{prefix}-simplex"),
                mailbox_size,
                epoch: Epoch::zero(),
                floor: simplex::config::Floor::Genesis(genesis_digest),
                replay_buffer: NZUsize!(1 << 20),
                write_buffer: NZUsize!(1 << 20),
                page_cache,
                leader_timeout: timeouts.leader,
                certification_timeout: timeouts.certification,
                timeout_retry: timeouts.retry,
                view_retention: ViewDelta::new(64),
                skip: SkipPolicy::Enabled {
                    timeout: timeouts.skip,
                    budget: SkipBudget::Participants,
                },
                fetch_timeout: nz_duration(timeouts.fetch),
                fetch_retry_delay: Duration::from_millis(100),
                forward: ForwardPolicy::SilentVoters,
                track_historical_votes: false,
            },
        );
        let engine = engine.start(networks.votes, networks.certificates, networks.resolver);
        // The replica lives as long as its engine; every actor above is a descendant of this
        // task and stops with it.
        if let Err(e) = engine.await {
            warn!(error = ?e, "consensus engine stopped");
        }
    });
    Ok((handle, root))
}

fn nz_duration(d: Duration) -> commonware_utils::NonZeroDuration {
    commonware_utils::NonZeroDuration::new(d).unwrap_or(
        commonware_utils::NonZeroDuration::new(Duration::from_millis(1)).expect("non-zero"),
    )
}

fn finalized(block: &commonware_cryptography::Digested<Block>) -> FinalizedBlock {
    let mut digest = [0u8; 32];
    digest.copy_from_slice(block.digest().as_ref());
    FinalizedBlock {
        height: block.inner().height,
        digest,
        txs: block.inner().txs.clone(),
    }
}

/// Marshal's reporter: forwards finalized blocks to the executor task.
///
/// The channel is unbounded in type but bounded in practice: marshal keeps at most
/// `MAX_PENDING_ACKS` blocks unacknowledged, and tips are not forwarded.
#[derive(Clone)]
struct Deliveries {
    tx: mpsc::UnboundedSender<(commonware_cryptography::Digested<Block>, Exact)>,
    tracker: Tracker,
}

impl Reporter for Deliveries {
    type Activity = Update<Block>;

    fn report(&mut self, activity: Self::Activity) -> commonware_actor::Feedback {
        match activity {
            Update::Block(block, ack) => {
                if self.tx.unbounded_send((block, ack)).is_err() {
                    return commonware_actor::Feedback::Closed;
                }
                commonware_actor::Feedback::Ok
            }
            Update::Tip(_, height, _) => {
                self.tracker.finalized_tip(height.get());
                commonware_actor::Feedback::Ok
            }
        }
    }
}

/// Spreads locally submitted transactions and admits peers' ones.
///
/// Local submissions are batched: whatever is queued when the task wakes (up to
/// `MAX_GOSSIP_BATCH`) goes out in one message to every replica. Transactions received from
/// peers are checked and admitted but not re-gossiped: the submitting replica already sent them
/// to everyone. An honest replica only gossips transactions that passed the same stateless
/// check, so a peer sending garbage is blocked. The sender of every copy that passes (or is
/// already known) is recorded in `origins`: the witness sends the transaction's receipts there.
async fn gossip<V, S, R, B>(
    mut local: mpsc::Receiver<Bytes>,
    (mut sender, mut receiver): (S, R),
    mut blocker: B,
    (mempool, arrivals, origins): (Arc<Mutex<Mempool>>, Arc<tokio::sync::Notify>, Arc<Origins>),
    verifier: V,
) where
    V: TxVerifier,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let cfg = (
        RangeCfg::new(1..=MAX_GOSSIP_BATCH),
        RangeCfg::new(1..=MAX_TX_BYTES),
    );
    loop {
        select! {
            tx = local.next() => {
                let Some(tx) = tx else { return };
                let mut batch = vec![tx];
                while batch.len() < MAX_GOSSIP_BATCH {
                    match local.try_recv() {
                        Ok(tx) => batch.push(tx),
                        _ => break,
                    }
                }
                tracing::debug!(n = batch.len(), "gossiping local transactions");
                sender.send(Recipients::All, batch.encode(), false);
            },
            message = receiver.recv() => {
                let Ok((peer, message)) = message else { return };
                let Ok(batch) = Vec::<Bytes>::decode_cfg(message, &cfg) else {
                    warn!(%peer, "undecodable mempool gossip; blocking peer");
                    let _ = blocker.block(peer);
                    continue;
                };
                tracing::debug!(n = batch.len(), "gossiped transactions received");
                let from = crate::config::genesis_key(&peer).0;
                for tx in batch {
                    // A byte-identical copy of a pending transaction (the client also sent it
                    // to us) passed the check already: skip it. Any other copy of a known txid
                    // is checked (txids exclude the signature, so a peer could otherwise send
                    // endless unchecked variants with broken signatures, unblocked).
                    let txid = verifier.txid(&tx);
                    if mempool
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains_exact(&txid, &tx)
                    {
                        origins.gossiped(txid.0, from);
                        continue;
                    }
                    match verifier.check(&tx) {
                        Ok(txid) => {
                            origins.gossiped(txid.0, from);
                            let mut pool = mempool.lock().unwrap_or_else(|e| e.into_inner());
                            match pool.insert_gossiped(txid, tx, from) {
                                Admission::Busy => break,
                                Admission::Added => arrivals.notify_one(),
                                Admission::Duplicate => {}
                            }
                        }
                        Err(e) => {
                            warn!(%peer, error = %e, "invalid gossiped transaction; blocking peer");
                            let _ = blocker.block(peer.clone());
                            break;
                        }
                    }
                }
            },
        }
    }
}
