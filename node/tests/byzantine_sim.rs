//! Seeded Byzantine simulation: four replicas (the real simplex + marshal + mempool + executor +
//! ledger stack, real ed25519 votes and BIP340 transactions) in commonware's deterministic
//! runtime over the simulated network, one fault per run:
//!
//! - `equivocator`: replica 0's identity runs twice (two processes, one key, both seeing every
//!   peer), each copy fed a different spend of the same outputs, so whenever that key leads it
//!   signs two different valid proposals for the same view;
//! - `twins`: the same, but a seeded split decides which honest replicas each copy talks to
//!   (Twins-style duplicate identity under a partition);
//! - `wrong_execution`: replica 0 runs honest consensus but its state machine reports wrong
//!   receipts and commitments; its signed receipts are then mixed with honest ones and must
//!   never form an f+1 quorum;
//! - `invalid_blocks`: replica 0 proposes blocks carrying an invalid transaction when it leads;
//! - `silent`: replica 0 never sends anything;
//! - `chaos`: four honest replicas over lossy links, with messages delayed, reordered and
//!   duplicated by a chaotic sender, and a seeded partition (one replica cut off, or a 2-2 split
//!   with no quorum) that heals later.
//!
//! Every run checks: honest replicas executed the same block (digest, receipts, commitment) at
//! every height; an independent replay of the accepted transactions (from the test's own copy of
//! every transaction) never spends an outpoint twice or a nonexistent one, and matches the
//! replica's UTXO set; supply equals what was minted; no transaction executed twice or that
//! nobody submitted; once the network heals, transfers submitted to honest replicas commit on
//! every honest replica within [`LIVENESS_BOUND`] of simulated time.
//!
//! Seeds: `COFFER_SIM_SEEDS` (`7`, `1..500`, `1..=20`, `3,9,27`; default `1..=2`) and
//! `COFFER_SIM_VARIANTS` (comma list; default all). A failure prints the seed, the variant and
//! the command that replays exactly that run. `scripts/sim-seeds.sh N` runs N seeds per variant
//! in release mode.

// The executor future nests deeper than the default limit allows.
#![recursion_limit = "256"]
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod simnet;

use bytes::Bytes;
use coffer_ledger::{
    Amount, Genesis, Keypair, Mint, OutPoint, SignedTransaction, Transaction, Transfer, TxOut,
    attest::{self, DiscardReason, QuorumError, ReceiptStatement, ReplicaSet},
};
use coffer_node::{
    consensus::{self, ConsensusConfig, ConsensusHandle, Scheme, channels},
    executor::ExecutedBlock,
    ledger::{LedgerMachine, LedgerVerifier, LedgerView},
    tx::{PersistError, Receipt, StateMachine, Txid},
};
use commonware_actor::{Feedback, Unreliable};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_consensus::simplex::types::Vote;
use commonware_cryptography::{
    Signer as _,
    ed25519::{PrivateKey, PublicKey},
    sha256::Digest,
};
use commonware_p2p::{
    CheckedSender, LimitedSender, Recipients,
    simulated::{Link, SplitOrigin, SplitTarget},
};
use commonware_runtime::{
    Clock as _, Handle, IoBuf, IoBufs, Quota, Runner as _, Spawner as _, Supervisor as _,
    deterministic,
};
use commonware_utils::{NZU32, Probability};
use rand::RngExt as _;
use simnet::{CHAIN, Log, Registered, SimOracle, chain, genesis, issuer};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, SystemTime},
};

const N: usize = 4;
/// Every honest transaction must commit everywhere within this much simulated time once the
/// network has healed.
const LIVENESS_BOUND: Duration = Duration::from_secs(60);
/// Bound on any other wait (funding under a Byzantine replica, catching up after a heal).
const WAIT_BOUND: Duration = Duration::from_secs(120);
/// Hard stop of one run, in simulated time.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Wallets paid by honest submissions during the fault phase.
const PAYERS: u32 = 12;
/// Wallets whose single output is spent twice, by two conflicting transfers, one pair at a
/// time spread over the fault phase.
const CONFLICTS: u32 = 24;
/// Wallets whose transfers are submitted after the heal (the liveness probe).
const PROBES: u32 = 4;
const WALLETS: u32 = PAYERS + CONFLICTS + PROBES;
const MINTED_PER_WALLET: u64 = 100;
/// BIP340 auxiliary randomness: fixed, so that transaction bytes (and so block digests) are the
/// same in every replay of a seed.
const AUX: [u8; 32] = [5; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Equivocator,
    Twins,
    WrongExecution,
    InvalidBlocks,
    Silent,
    Chaos,
    /// Not a fault scenario: the `wrong_execution` liar counted as honest, to show that the
    /// checks catch a replica whose results differ.
    LiarCountedHonest,
}

impl Variant {
    const ALL: [Variant; 6] = [
        Self::Equivocator,
        Self::Twins,
        Self::WrongExecution,
        Self::InvalidBlocks,
        Self::Silent,
        Self::Chaos,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Equivocator => "equivocator",
            Self::Twins => "twins",
            Self::WrongExecution => "wrong_execution",
            Self::InvalidBlocks => "invalid_blocks",
            Self::Silent => "silent",
            Self::Chaos => "chaos",
            Self::LiarCountedHonest => "liar_counted_honest",
        }
    }

    fn index(self) -> u64 {
        Self::ALL
            .iter()
            .position(|v| *v == self)
            .unwrap_or(Self::ALL.len()) as u64
    }

    /// Replicas whose behaviour is checked (all but the Byzantine key).
    fn honest(self) -> Vec<usize> {
        match self {
            Self::Chaos | Self::LiarCountedHonest => (0..N).collect(),
            _ => (1..N).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Transactions: the test keeps every byte string it ever submits, to audit what executed.

fn wallet(i: u32) -> Keypair {
    let mut secret = [7u8; 32];
    secret[..4].copy_from_slice(&i.to_be_bytes());
    Keypair::from_secret_bytes(secret).unwrap()
}

fn replica_key(i: usize) -> PrivateKey {
    PrivateKey::from_seed(2_000 + i as u64)
}

/// The issuer's (unsigned) mint of [`MINTED_PER_WALLET`] to wallet `i`, with mint nonce `i`.
fn mint_tx(i: u32) -> Transaction {
    Transaction::Mint(Mint {
        chain_id: chain(),
        issuer: issuer().public_key(),
        nonce: u64::from(i),
        outputs: vec![TxOut::to_address(
            Amount(MINTED_PER_WALLET),
            wallet(i).address(),
        )],
    })
}

/// Every transaction the test created, by the id the node reports.
#[derive(Default)]
struct Book {
    txs: HashMap<Txid, SignedTransaction>,
}

impl Book {
    fn record(&mut self, stx: SignedTransaction) -> Bytes {
        let bytes = Bytes::from(stx.encode());
        self.txs.insert(Txid(stx.txid().0), stx);
        bytes
    }

    /// The issuer mints to wallet `i` (mint nonce `i`).
    fn mint(&mut self, i: u32) -> Bytes {
        self.record(mint_tx(i).sign_with_aux(&issuer(), &AUX))
    }

    /// Wallet `i` spends its minted output, paying wallet `to`.
    fn pay(&mut self, i: u32, to: u32) -> Bytes {
        let minted = issuer().sign_tx(mint_tx(i)).txid();
        let from = wallet(i);
        self.record(
            Transaction::Transfer(Transfer {
                chain_id: chain(),
                signer: from.public_key(),
                inputs: vec![OutPoint {
                    txid: minted,
                    vout: 0,
                }],
                outputs: vec![TxOut::to_address(
                    Amount(MINTED_PER_WALLET),
                    wallet(to).address(),
                )],
            })
            .sign_with_aux(&from, &AUX),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// A chaotic sender: delays (hence reorders, even on one link) and duplicates messages.

/// Fault rates, shared by every chaotic sender of a run and zeroed when the network heals.
#[derive(Default)]
struct Knobs {
    /// Per mille of messages held back for a random delay (so later ones overtake them).
    delay_per_mille: AtomicU32,
    /// Per mille of messages sent a second time, after a random delay.
    duplicate_per_mille: AtomicU32,
    /// Upper bound of those random delays.
    max_delay_ms: AtomicU32,
}

impl Knobs {
    fn heal(&self) {
        self.delay_per_mille.store(0, Ordering::Relaxed);
        self.duplicate_per_mille.store(0, Ordering::Relaxed);
    }
}

/// The runtime context is not `Clone`; senders are, so they share one behind a lock.
type Shared = Arc<Mutex<deterministic::Context>>;

#[derive(Clone)]
struct Chaotic<S> {
    inner: S,
    context: Shared,
    knobs: Arc<Knobs>,
    peers: Arc<Vec<PublicKey>>,
}

struct ChaoticChecked<S> {
    sender: Chaotic<S>,
    recipients: Recipients<PublicKey>,
}

impl<S: LimitedSender<PublicKey = PublicKey>> LimitedSender for Chaotic<S> {
    type PublicKey = PublicKey;
    type Checked<'a>
        = ChaoticChecked<S>
    where
        Self: 'a;

    fn check(
        &mut self,
        recipients: Recipients<PublicKey>,
    ) -> Result<Self::Checked<'_>, SystemTime> {
        // Rate limits are applied by the inner sender at the moment each copy leaves.
        Ok(ChaoticChecked {
            sender: self.clone(),
            recipients,
        })
    }
}

impl<S: LimitedSender<PublicKey = PublicKey>> Chaotic<S> {
    fn send_now(&mut self, recipients: Recipients<PublicKey>, message: IoBuf, priority: bool) {
        if let Ok(checked) = self.inner.check(recipients) {
            let _ = checked.send(message, priority);
        }
    }

    fn send_later(&self, recipients: Recipients<PublicKey>, message: IoBuf, priority: bool) {
        let max = u64::from(self.knobs.max_delay_ms.load(Ordering::Relaxed)).max(1);
        let context = self.context.lock().unwrap().child("chaos");
        let delay = Duration::from_millis(context.child("rng").random_range(0..max));
        let mut sender = self.clone();
        context.spawn(move |context| async move {
            context.sleep(delay).await;
            sender.send_now(recipients, message, priority);
        });
    }
}

impl<S: LimitedSender<PublicKey = PublicKey>> CheckedSender for ChaoticChecked<S> {
    type PublicKey = PublicKey;

    fn recipients(&self) -> Vec<PublicKey> {
        match &self.recipients {
            Recipients::All => self.sender.peers.to_vec(),
            Recipients::Some(keys) => keys.clone(),
            Recipients::One(key) => vec![key.clone()],
        }
    }

    fn send(mut self, message: impl Into<IoBufs> + Send, priority: bool) -> Unreliable<Feedback> {
        let message: IoBuf = message.into().coalesce();
        let knobs = &self.sender.knobs;
        let (delay, duplicate) = (
            knobs.delay_per_mille.load(Ordering::Relaxed),
            knobs.duplicate_per_mille.load(Ordering::Relaxed),
        );
        let (dup_roll, delay_roll) = {
            let mut rng = self.sender.context.lock().unwrap();
            (rng.random_range(0..1_000), rng.random_range(0..1_000))
        };
        if dup_roll < duplicate {
            self.sender
                .send_later(self.recipients.clone(), message.clone(), priority);
        }
        if delay_roll < delay {
            self.sender.send_later(self.recipients, message, priority);
        } else {
            self.sender.send_now(self.recipients, message, priority);
        }
        Unreliable::Outcome(Feedback::Ok)
    }
}

// ---------------------------------------------------------------------------------------------
// Twins: one registration of the Byzantine key, split between two replica instances.

/// Which copy of the twinned identity an honest replica talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Primary,
    Secondary,
    Both,
}

/// Per view, the payload each copy of the twinned key notarized (primary, secondary).
type Notarized = Arc<Mutex<BTreeMap<u64, (Option<Digest>, Option<Digest>)>>>;

#[derive(Clone)]
struct Split {
    sides: Arc<HashMap<PublicKey, Side>>,
    seen: Notarized,
}

impl Split {
    fn sees(&self, peer: &PublicKey, origin: SplitOrigin) -> bool {
        matches!(
            (self.sides.get(peer), origin),
            (Some(Side::Both), _)
                | (Some(Side::Primary), SplitOrigin::Primary)
                | (Some(Side::Secondary), SplitOrigin::Secondary)
        )
    }

    /// `channel`: votes are inspected (to count equivocations); gossip is withheld, so the
    /// transactions each copy is fed reach blocks only through that copy's own proposals.
    fn forwarder(
        self,
        channel: u64,
    ) -> impl Fn(SplitOrigin, &Recipients<PublicKey>, &IoBuf) -> Option<Recipients<PublicKey>>
    + Send
    + Sync
    + Clone
    + 'static {
        move |origin, recipients, message| {
            if channel == channels::MEMPOOL {
                return None;
            }
            if channel == channels::VOTES
                && let Ok(Vote::Notarize(n)) = Vote::<Scheme, Digest>::decode(message.clone())
            {
                {
                    let mut seen = self.seen.lock().unwrap();
                    let entry = seen.entry(n.proposal.round.view().get()).or_default();
                    match origin {
                        SplitOrigin::Primary => entry.0 = Some(n.proposal.payload),
                        SplitOrigin::Secondary => entry.1 = Some(n.proposal.payload),
                    }
                }
            }
            let wanted: Vec<PublicKey> = match recipients {
                Recipients::All => self.sides.keys().cloned().collect(),
                Recipients::Some(keys) => keys.clone(),
                Recipients::One(key) => vec![key.clone()],
            };
            let mut kept: Vec<PublicKey> = wanted
                .into_iter()
                .filter(|k| self.sees(k, origin))
                .collect();
            kept.sort();
            (!kept.is_empty()).then_some(Recipients::Some(kept))
        }
    }

    fn router(self) -> impl Fn(&(PublicKey, IoBuf)) -> SplitTarget + Send + Sync + 'static {
        move |(from, _)| match self.sides.get(from) {
            Some(Side::Primary) => SplitTarget::Primary,
            Some(Side::Secondary) => SplitTarget::Secondary,
            Some(Side::Both) => SplitTarget::Both,
            None => SplitTarget::None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A state machine that lies about its results.

/// Runs the real ledger but reports every accepted transaction as rejected, every rejected one
/// as accepted, and a commitment that is not the state's.
struct Corrupt(LedgerMachine);

impl StateMachine for Corrupt {
    fn applied_height(&self) -> u64 {
        self.0.applied_height()
    }

    fn apply_block(&mut self, height: u64, txs: &[Bytes]) -> Vec<Receipt> {
        self.0
            .apply_block(height, txs)
            .into_iter()
            .map(|r| match r.rejection {
                None => Receipt {
                    rejection: Some("insufficient_funds"),
                    code: 3,
                    ..r
                },
                Some(_) => Receipt {
                    rejection: None,
                    code: 0,
                    ..r
                },
            })
            .collect()
    }

    fn persist(&mut self) -> impl std::future::Future<Output = Result<(), PersistError>> + Send {
        self.0.persist()
    }

    fn commitment(&self) -> [u8; 32] {
        let mut c = self.0.commitment();
        c[0] ^= 0xff;
        c
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster.

struct Replica {
    handle: ConsensusHandle<LedgerVerifier>,
    _root: Handle<()>,
    log: Log,
    view: LedgerView,
}

struct Sim {
    context: deterministic::Context,
    oracle: SimOracle,
    keys: Vec<PrivateKey>,
    genesis: Genesis,
    knobs: Arc<Knobs>,
    link: Link,
}

impl Sim {
    fn participants(&self) -> Vec<PublicKey> {
        self.keys.iter().map(|k| k.public_key()).collect()
    }

    async fn set_link(&self, a: usize, b: usize, link: Option<Link>) {
        let (pa, pb) = (self.keys[a].public_key(), self.keys[b].public_key());
        for (from, to) in [(pa.clone(), pb.clone()), (pb, pa)] {
            let _ = self.oracle.remove_link(from.clone(), to.clone()).await;
            if let Some(link) = &link {
                self.oracle.add_link(from, to, link.clone()).await.unwrap();
            }
        }
    }

    /// Links every pair within each group, and cuts every pair across groups.
    async fn partition(&self, groups: &[Vec<usize>], link: &Link) {
        for a in 0..N {
            for b in a + 1..N {
                let together = groups.iter().any(|g| g.contains(&a) && g.contains(&b));
                self.set_link(a, b, together.then(|| link.clone())).await;
            }
        }
    }

    async fn register(&self, i: usize) -> Vec<Registered> {
        let quota = Quota::per_second(NZU32!(10_000));
        simnet::register(&self.oracle, self.keys[i].public_key(), quota).await
    }

    fn chaotic<S>(&self, i: usize, inner: S) -> Chaotic<S> {
        let me = self.keys[i].public_key();
        Chaotic {
            inner,
            context: Arc::new(Mutex::new(self.context.child("chaotic"))),
            knobs: self.knobs.clone(),
            peers: Arc::new(
                self.participants()
                    .into_iter()
                    .filter(|k| *k != me)
                    .collect(),
            ),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start<S, R, M>(
        &self,
        i: usize,
        copy: &str,
        machine: M,
        view: LedgerView,
        byzantine_proposer: bool,
        channels: Vec<(S, R)>,
    ) -> Replica
    where
        S: commonware_p2p::Sender<PublicKey = PublicKey>,
        R: commonware_p2p::Receiver<PublicKey = PublicKey>,
        M: StateMachine,
    {
        let networks = simnet::networks(channels);
        let key = self.keys[i].clone();
        let control = self.oracle.control(key.public_key());
        let mut cfg = ConsensusConfig::new(CHAIN, key, self.participants());
        cfg.partition_prefix = format!("replica{i}{copy}");
        cfg.timeouts = simnet::timeouts();
        cfg.byzantine_proposer = byzantine_proposer;
        let (handle, root) = consensus::start(
            self.context
                .child("replica")
                .with_attribute("index", format!("{i}{copy}")),
            cfg,
            LedgerVerifier::new(Arc::new(self.genesis.clone())),
            machine,
            self.oracle.manager(),
            control,
            networks,
        )
        .expect("valid config");
        let log = simnet::observe(&self.context, &handle);
        Replica {
            handle,
            _root: root,
            log,
            view,
        }
    }

    /// An honest replica (`corrupt`: with a lying state machine; `invalid`: proposing invalid
    /// blocks), its sends passing through the chaotic sender.
    async fn start_plain(&self, i: usize, corrupt: bool, invalid: bool) -> Replica {
        let channels: Vec<_> = self
            .register(i)
            .await
            .into_iter()
            .map(|(s, r)| (self.chaotic(i, s), r))
            .collect();
        let machine = LedgerMachine::new(self.genesis.clone()).unwrap();
        let view = machine.view();
        if corrupt {
            self.start(i, "", Corrupt(machine), view, invalid, channels)
        } else {
            self.start(i, "", machine, view, invalid, channels)
        }
    }

    /// Two replicas sharing replica `i`'s key, each talking to the honest replicas `split` assigns
    /// it.
    async fn start_twins(&self, i: usize, split: Split) -> (Replica, Replica) {
        let mut primary = Vec::new();
        let mut secondary = Vec::new();
        for ((sender, receiver), channel) in
            self.register(i).await.into_iter().zip(simnet::CHANNELS)
        {
            let (sa, sb) = sender.split_with(split.clone().forwarder(channel));
            let (ra, rb) = receiver.split_with(self.context.child("twins"), split.clone().router());
            primary.push((self.chaotic(i, sa), ra));
            secondary.push((self.chaotic(i, sb), rb));
        }
        let ma = LedgerMachine::new(self.genesis.clone()).unwrap();
        let mb = LedgerMachine::new(self.genesis.clone()).unwrap();
        let (va, vb) = (ma.view(), mb.view());
        (
            self.start(i, "a", ma, va, false, primary),
            self.start(i, "b", mb, vb, false, secondary),
        )
    }

    /// Waits (in simulated time, at most `bound`) until `done` holds, checking every 50ms;
    /// returns how long it took.
    async fn wait(&self, what: &str, bound: Duration, done: impl FnMut() -> bool) -> Duration {
        let poll = Duration::from_millis(50);
        simnet::wait(&self.context, what, bound, poll, done).await
    }
}

fn probability(per_mille: u64) -> Probability {
    Probability::new(per_mille, 1_000).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Invariants.

/// Honest replicas executed identical blocks at every height they share; returns that height.
fn check_agreement(honest: &[&Replica]) -> u64 {
    let logs: Vec<&Log> = honest.iter().map(|r| &r.log).collect();
    simnet::assert_agreement(&logs)
}

/// Replays the accepted transactions of `replica`'s log from the test's own copies and checks
/// the replica's ledger state against the replay.
fn audit(replica: &Replica, state: &coffer_ledger::LedgerState, book: &Book) {
    let mut unspent: HashMap<OutPoint, Amount> = HashMap::new();
    let mut minted = 0u64;
    let mut seen = HashSet::new();
    for height in 1..=state.height() {
        let block = replica
            .log
            .get(height)
            .expect("every executed height observed");
        for receipt in &block.receipts {
            assert!(
                seen.insert(receipt.txid),
                "transaction {} executed twice",
                receipt.txid
            );
            let stx = book
                .txs
                .get(&receipt.txid)
                .unwrap_or_else(|| panic!("executed {} that nobody submitted", receipt.txid));
            if receipt.rejection.is_some() {
                continue;
            }
            let txid = stx.txid();
            let outputs = match &stx.tx {
                Transaction::Mint(m) => {
                    minted += m.outputs.iter().map(|o| o.amount.0).sum::<u64>();
                    &m.outputs
                }
                Transaction::Transfer(t) => {
                    let mut spent = 0u64;
                    for input in &t.inputs {
                        let amount = unspent.remove(input).unwrap_or_else(|| {
                            panic!("{} at height {height} spends {input:?}: spent twice or never created", receipt.txid)
                        });
                        spent += amount.0;
                    }
                    let paid: u64 = t.outputs.iter().map(|o| o.amount.0).sum();
                    assert_eq!(
                        spent, paid,
                        "transfer {} does not conserve value",
                        receipt.txid
                    );
                    &t.outputs
                }
            };
            for (vout, out) in outputs.iter().enumerate() {
                unspent.insert(
                    OutPoint {
                        txid,
                        vout: vout as u32,
                    },
                    out.amount,
                );
            }
        }
    }
    let snapshot = state.snapshot();
    let replica_utxos: HashMap<OutPoint, Amount> = snapshot
        .utxos
        .iter()
        .map(|(op, out)| (*op, out.amount))
        .collect();
    assert_eq!(replica_utxos, unspent, "UTXO set differs from the replay");
    let sum: u64 = unspent.values().map(|a| a.0).sum();
    assert_eq!(
        sum, minted,
        "supply not conserved: UTXOs hold {sum}, minted {minted}"
    );
    assert_eq!(
        state.total_supply().0,
        minted,
        "reported supply differs from minted"
    );
}

/// Replica 0 signs receipts from its lying state machine; mixed with honest receipts, they must
/// never make an f+1 quorum for a false statement.
fn check_forged_receipts_indexed(sim: &Sim, liar: &Replica, honest: &[(usize, &Replica)]) {
    let signing = |i: usize| {
        let seed: [u8; 32] = sim.keys[i].encode()[..].try_into().unwrap();
        ed25519_dalek::SigningKey::from_bytes(&seed)
    };
    let replicas = ReplicaSet::new(sim.participants().iter().map(|k| {
        let mut out = [0u8; 32];
        out.copy_from_slice(&k.encode());
        out
    }))
    .unwrap();
    let threshold = replicas.weak_quorum();
    let statement = |block: &ExecutedBlock, receipt: &Receipt| ReceiptStatement {
        chain_id: CHAIN.into(),
        txid: receipt.txid.0,
        height: block.height,
        code: receipt.rejection.unwrap_or(attest::CODE_OK).into(),
        commitment: block.commitment,
    };
    let (i1, r1) = honest[0];
    let (i2, _) = honest[1];
    let height = (1..=liar.log.height().min(r1.log.height()))
        .find(|h| !liar.log.get(*h).unwrap().receipts.is_empty())
        .expect("the liar executed some transaction");
    let (lie_block, truth_block) = (liar.log.get(height).unwrap(), r1.log.get(height).unwrap());
    let lie = statement(&lie_block, &lie_block.receipts[0]);
    let truth = statement(&truth_block, &truth_block.receipts[0]);
    assert_ne!(lie, truth, "the corrupt machine reported the truth");

    let forged = attest::sign(lie.clone(), &signing(0)).unwrap();
    let h1 = attest::sign(truth.clone(), &signing(i1)).unwrap();
    let h2 = attest::sign(truth.clone(), &signing(i2)).unwrap();
    // The liar alone, or the liar plus one honest dissenting replica: no quorum for anything.
    match attest::verify_quorum(&[forged.clone(), h1.clone()], &replicas, CHAIN, threshold) {
        Err(QuorumError::NotEnough { best, .. }) => assert_eq!(best, 1),
        other => panic!("a forged receipt counted: {other:?}"),
    }
    // The liar claiming an honest replica's key: bad signature, does not count.
    let mut impersonation = forged.clone();
    impersonation.attestation.replica = h1.attestation.replica;
    let verified = attest::verify_quorum(
        &[impersonation, h1.clone(), h2.clone()],
        &replicas,
        CHAIN,
        threshold,
    )
    .unwrap();
    assert_eq!(verified.statement, truth);
    assert!(
        verified
            .discarded
            .iter()
            .any(|d| d.reason == DiscardReason::BadSignature && d.index == 0)
    );
    // The liar signing both the lie and the truth counts for neither.
    let both = attest::sign(truth.clone(), &signing(0)).unwrap();
    match attest::verify_quorum(
        &[forged.clone(), both, h1.clone()],
        &replicas,
        CHAIN,
        threshold,
    ) {
        Err(QuorumError::NotEnough {
            best, discarded, ..
        }) => {
            assert_eq!(best, 1);
            assert!(
                discarded
                    .iter()
                    .any(|d| d.reason == DiscardReason::Equivocation)
            );
        }
        other => panic!("an equivocating replica counted: {other:?}"),
    }
    // With f+1 honest receipts the truth wins and the liar is reported as dissenting.
    let verified = attest::verify_quorum(&[forged, h1, h2], &replicas, CHAIN, threshold).unwrap();
    assert_eq!(verified.statement, truth);
    assert!(
        verified
            .discarded
            .iter()
            .any(|d| d.reason == DiscardReason::Dissent && d.index == 0)
    );
}

// ---------------------------------------------------------------------------------------------
// One run.

/// What one run measured.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Height all honest replicas agreed on.
    height: u64,
    /// Simulated time from the heal until the liveness probe committed everywhere.
    recovery: Duration,
    /// Block digests of the first honest replica (fingerprint of the run, for reproducibility).
    fingerprint: Vec<[u8; 32]>,
    /// Views in which the twinned key notarized two different proposals.
    equivocations: usize,
}

async fn run(context: deterministic::Context, variant: Variant) -> Outcome {
    let mut rng = context.child("rng");
    let keys: Vec<PrivateKey> = (0..N).map(replica_key).collect();
    let participants: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
    let oracle = simnet::start_network(&context, participants.clone()).await;
    let latency = rng.random_range(5..60u64);
    let chaos = variant == Variant::Chaos;
    let link = Link {
        latency: Duration::from_millis(latency),
        jitter: Duration::from_millis(rng.random_range(0..=latency / 2)),
        success_rate: probability(if chaos {
            rng.random_range(800..990)
        } else {
            1_000
        }),
    };
    let knobs = Arc::new(Knobs::default());
    if chaos {
        knobs
            .delay_per_mille
            .store(rng.random_range(20..200), Ordering::Relaxed);
        knobs
            .duplicate_per_mille
            .store(rng.random_range(20..200), Ordering::Relaxed);
        knobs
            .max_delay_ms
            .store(rng.random_range(50..1_000), Ordering::Relaxed);
    }
    let sim = Sim {
        genesis: genesis(&keys),
        context: context.child("sim"),
        oracle,
        keys,
        knobs: knobs.clone(),
        link: link.clone(),
    };
    sim.partition(&[(0..N).collect()], &sim.link).await;

    // Replicas. Byzantine ones sit at index 0; honest ones follow.
    let mut byzantine: Vec<Replica> = Vec::new();
    let mut honest: Vec<Replica> = Vec::new();
    let mut honest_index = Vec::new();
    let seen = Notarized::default();
    match variant {
        Variant::Equivocator | Variant::Twins => {
            let sides: HashMap<PublicKey, Side> = (1..N)
                .map(|i| {
                    let side = if variant == Variant::Equivocator {
                        Side::Both
                    } else {
                        [Side::Primary, Side::Secondary, Side::Both][rng.random_range(0..3usize)]
                    };
                    (participants[i].clone(), side)
                })
                .collect();
            let split = Split {
                sides: Arc::new(sides),
                seen: seen.clone(),
            };
            let (a, b) = sim.start_twins(0, split).await;
            byzantine.push(a);
            byzantine.push(b);
        }
        Variant::WrongExecution => byzantine.push(sim.start_plain(0, true, false).await),
        Variant::InvalidBlocks => byzantine.push(sim.start_plain(0, false, true).await),
        Variant::Silent | Variant::Chaos | Variant::LiarCountedHonest => {}
    }
    for i in variant.honest() {
        let liar = variant == Variant::LiarCountedHonest && i == 0;
        honest.push(sim.start_plain(i, liar, false).await);
        honest_index.push(i);
    }
    let honest_refs: Vec<&Replica> = honest.iter().collect();
    let all_executed = |ids: &[Txid]| {
        honest_refs.iter().all(|r| {
            let done = r.log.executed();
            ids.iter().all(|id| done.contains(id))
        })
    };

    // Fund every wallet through honest replicas.
    let mut book = Book::default();
    let mints: Vec<Txid> = (0..WALLETS)
        .map(|w| {
            let tx = book.mint(w);
            honest[w as usize % honest.len()].handle.submit(tx).unwrap()
        })
        .collect();
    sim.wait("mints executed by every honest replica", WAIT_BOUND, || {
        all_executed(&mints)
    })
    .await;

    // Fault phase: honest payments, and conflicting pairs spending the same output twice. With
    // a twinned identity, each copy gets one spend of the pair, so the two proposals it makes
    // when leading conflict.
    let mut payments = Vec::new();
    for w in 0..PAYERS {
        let tx = book.pay(w, w + 1_000);
        payments.push(honest[w as usize % honest.len()].handle.submit(tx).unwrap());
    }
    let fault_time = Duration::from_millis(rng.random_range(1_000..10_000));
    let submit_conflicts = async |book: &mut Book| {
        for w in PAYERS..PAYERS + CONFLICTS {
            let (x, y) = (book.pay(w, w + 2_000), book.pay(w, w + 3_000));
            let (first, second): (&Replica, &Replica) = match byzantine.as_slice() {
                [a, b] => (a, b),
                [a] => (a, &honest[w as usize % honest.len()]),
                _ => (&honest[0], &honest[1]),
            };
            let _ = first.handle.submit(x);
            let _ = second.handle.submit(y);
            context.sleep(fault_time / CONFLICTS).await;
        }
    };
    if chaos {
        let mut order: Vec<usize> = (0..N).collect();
        for i in (1..N).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let groups = if rng.random_bool(0.5) {
            // One replica cut off: the other three keep a quorum.
            vec![order[..1].to_vec(), order[1..].to_vec()]
        } else {
            // Two halves: no quorum anywhere until the heal.
            vec![order[..2].to_vec(), order[2..].to_vec()]
        };
        sim.partition(&groups, &sim.link).await;
        submit_conflicts(&mut book).await;
        sim.partition(&[(0..N).collect()], &sim.link).await;
        context.sleep(fault_time / 2).await;
    } else {
        submit_conflicts(&mut book).await;
    }

    // Heal: reliable links, no chaotic delays or duplicates.
    knobs.heal();
    let healthy = Link {
        latency: Duration::from_millis(latency),
        jitter: Duration::ZERO,
        success_rate: probability(1_000),
    };
    sim.partition(&[(0..N).collect()], &healthy).await;
    let probes: Vec<Txid> = (PAYERS + CONFLICTS..WALLETS)
        .map(|w| {
            let tx = book.pay(w, w + 1_000);
            honest[w as usize % honest.len()].handle.submit(tx).unwrap()
        })
        .collect();
    let recovery = sim
        .wait("liveness after the heal", LIVENESS_BOUND, || {
            all_executed(&probes) && all_executed(&payments)
        })
        .await;

    // Let every honest replica reach the same height, then check everything.
    let target = honest.iter().map(|r| r.log.height()).max().unwrap();
    sim.wait("honest replicas at the same height", WAIT_BOUND, || {
        honest.iter().all(|r| r.log.height() >= target)
    })
    .await;
    let height = check_agreement(&honest_refs);
    for replica in &honest {
        // The state is briefly ahead of the persisted height while a block is being written.
        let mut state = None;
        // Blocks are published after they are persisted: wait until the log has caught up
        // with the state too.
        sim.wait("a persisted state to audit", WAIT_BOUND, || {
            state = replica
                .view
                .persisted()
                .map(|s| s.clone())
                .filter(|s| replica.log.height() >= s.height());
            state.is_some()
        })
        .await;
        audit(replica, &state.unwrap(), &book);
    }
    let first = &honest[0];
    let executed = first.log.executed();
    let receipts: HashMap<Txid, Option<&'static str>> = (1..=first.log.height())
        .flat_map(|h| first.log.get(h).unwrap().receipts.clone())
        .map(|r| (r.txid, r.rejection))
        .collect();
    for id in mints.iter().chain(&payments).chain(&probes) {
        assert_eq!(receipts[id], None, "honest transaction {id} rejected");
    }
    assert!(executed.len() >= mints.len() + payments.len() + probes.len());
    if variant == Variant::WrongExecution {
        let liar = &byzantine[0];
        sim.wait("the liar executed", WAIT_BOUND, || {
            liar.log.height() >= height
        })
        .await;
        let named: Vec<(usize, &Replica)> = honest_index.iter().copied().zip(&honest).collect();
        check_forged_receipts_indexed(&sim, liar, &named);
    }
    let equivocations = seen
        .lock()
        .unwrap()
        .values()
        .filter(|(a, b)| matches!((a, b), (Some(a), Some(b)) if a != b))
        .count();
    Outcome {
        equivocations,
        height,
        recovery,
        fingerprint: (1..=height)
            .map(|h| first.log.get(h).unwrap().digest)
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Drivers.

fn parse_seeds(spec: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once("..=") {
            out.extend(a.parse::<u64>().unwrap()..=b.parse::<u64>().unwrap());
        } else if let Some((a, b)) = part.split_once("..") {
            out.extend(a.parse::<u64>().unwrap()..b.parse::<u64>().unwrap());
        } else {
            out.push(part.parse().unwrap());
        }
    }
    out
}

fn variants() -> Vec<Variant> {
    match std::env::var("COFFER_SIM_VARIANTS") {
        Ok(list) => list
            .split(',')
            .map(|name| {
                *Variant::ALL
                    .iter()
                    .find(|v| v.name() == name.trim())
                    .unwrap_or_else(|| panic!("unknown variant {name:?}"))
            })
            .collect(),
        Err(_) => Variant::ALL.to_vec(),
    }
}

/// Runs one seeded run; a panic anywhere in it (an invariant, a timeout, an actor) is an `Err`.
fn run_seed(seed: u64, variant: Variant) -> Result<Outcome, String> {
    let runner = deterministic::Runner::new(
        deterministic::Config::new()
            // Distinct streams per variant for the same user-facing seed.
            .with_seed(seed.wrapping_mul(16).wrapping_add(variant.index()))
            .with_timeout(Some(RUN_TIMEOUT)),
    );
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        runner.start(|context| run(context, variant))
    }))
    .map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn seeded_byzantine_runs_keep_safety_and_liveness() {
    let spec = std::env::var("COFFER_SIM_SEEDS").unwrap_or_else(|_| "1..=2".into());
    let seeds = parse_seeds(&spec);
    let variants = variants();
    let mut failures = Vec::new();
    let mut ran = 0usize;
    let mut worst_recovery: HashMap<&str, Duration> = HashMap::new();
    let mut equivocations: HashMap<&str, usize> = HashMap::new();
    // Runs in which the twinned key did sign two proposals for one view. Not every run gets
    // there: honest replicas block the key as soon as they hold proof of any double vote, and
    // that can happen before it leads with conflicting transactions (seed 191: after view 3).
    let mut exercised: HashMap<&str, usize> = HashMap::new();
    let wall = std::time::Instant::now();
    for &seed in &seeds {
        for &variant in &variants {
            ran += 1;
            match run_seed(seed, variant) {
                Ok(outcome) => {
                    let worst = worst_recovery.entry(variant.name()).or_default();
                    *worst = (*worst).max(outcome.recovery);
                    *equivocations.entry(variant.name()).or_default() += outcome.equivocations;
                    if outcome.equivocations > 0 {
                        *exercised.entry(variant.name()).or_default() += 1;
                    }
                }
                Err(reason) => {
                    eprintln!(
                        "FAILED seed {seed} variant {}: {reason}\n  reproduce: COFFER_SIM_SEEDS={seed} COFFER_SIM_VARIANTS={} cargo test -p coffer-node --release --test byzantine_sim -- --nocapture seeded",
                        variant.name(),
                        variant.name()
                    );
                    failures.push((seed, variant.name(), reason));
                }
            }
        }
    }
    let mut worst: Vec<_> = worst_recovery.into_iter().collect();
    worst.sort();
    let mut equivocations: Vec<_> = equivocations.into_iter().filter(|(_, n)| *n > 0).collect();
    equivocations.sort();
    let equivocator_runs = if variants.contains(&Variant::Equivocator) {
        seeds.len()
    } else {
        0
    };
    let exercised_runs = exercised.get("equivocator").copied().unwrap_or(0);
    println!(
        "byzantine_sim: seeds {spec}, {ran} runs, {} failed, {:.1} s wall; worst recovery after \
         heal (simulated): {worst:?}; views with two conflicting proposals from one key: \
         {equivocations:?}; equivocator runs where it equivocated: {exercised_runs} of \
         {equivocator_runs}",
        failures.len(),
        wall.elapsed().as_secs_f64()
    );
    assert!(
        equivocator_runs == 0 || exercised_runs > 0,
        "the twinned leader never equivocated in any run"
    );
    assert!(
        failures.is_empty(),
        "{} of {ran} runs failed: {failures:?}",
        failures.len()
    );
}

#[test]
fn the_checks_catch_a_replica_with_different_results() {
    let failure = run_seed(1, Variant::LiarCountedHonest).expect_err("a liar went unnoticed");
    assert!(
        failure.contains("different state commitments")
            || failure.contains("different receipts")
            || failure.contains("rejected"),
        "{failure}"
    );
}

#[test]
fn a_seed_replays_exactly() {
    for variant in [Variant::Twins, Variant::Chaos] {
        let first = run_seed(5, variant).unwrap();
        let second = run_seed(5, variant).unwrap();
        assert!(first.height > 0);
        assert_eq!(
            first.fingerprint, second.fingerprint,
            "{variant:?} diverged between replays"
        );
        assert_eq!(first.recovery, second.recovery);
    }
}
