//! Replicas vouching for each other's answers: signed receipts and read statements exchanged
//! over an authenticated p2p channel ([`CHANNEL`]), plus a heartbeat carrying each replica's
//! executed height.
//!
//! - **Receipts (push, with pull as a fallback).** After a block is executed (persisted), every
//!   replica attests the block's [`ReceiptStatement`]s with one signature of its replica key,
//!   over their Merkle root (each receipt carries its inclusion proof), and sends each receipt
//!   to the replicas that gossiped its transaction ([`Origins`]: the gateway its client waits
//!   at), or to every peer when it does not know where the transaction came from. Every
//!   replica keeps a bounded cache of receipts by txid, from all replicas
//!   (one per replica per txid; the p2p sender must be the signer). A peer's signature is
//!   checked only when this replica needs the receipt (a client waits for that txid here), at
//!   most once per peer and block (see [`Witness::gather_receipts`]). A gateway missing
//!   receipts (a restart emptied its cache, a message was dropped, or the transaction was not
//!   submitted here) asks its peers with [`Message::ReceiptRequest`]; they answer from their
//!   cache or re-sign from their store.
//! - **Reads (request/response).** The gateway answers a query from its own state at its
//!   persisted height `h`, signs it, and asks every peer for a statement about the same query at
//!   `h`. A peer at `h` answers at once; a peer behind waits (at most [`READ_WAIT`]) until it
//!   reaches `h`; a peer ahead answers at its own height. Rule: the gateway keeps the statements
//!   made at `h` (checked as they arrive) and answers as soon as f+1 match; if they do not
//!   within a round, it moves to the highest height f+1 peers answered at, which a correct
//!   replica has reached (or to its next height), once its own state is there, and asks again,
//!   until its deadline. Only a peer's first answer to a request counts. An idle or lightly
//!   loaded cluster holds a height for a few hundred milliseconds (leaders wait briefly before
//!   proposing an empty block), so the first or second round converges.
//!
//! None of this touches consensus: the channel has its own queues, a full outbound queue drops
//! messages (the pull path recovers receipts), and waiting is done in separate tasks.

use crate::api::answer::{Answer, history_from_store, plan_read, read_statement};
use crate::api::{AttestedRead, BackendError};
use crate::executor::ExecutedBlock;
use crate::ledger::LedgerView;
use crate::origins::Origins;
use crate::storage::{Storage, Store as _, ledger as stored};
use coffer_ledger::attest::{
    ReadQuery, ReadStatement, ReceiptStatement, ReplicaSet, Signed, Statement as _, sign,
};
use coffer_ledger::{ChainId, Txid};
use ed25519_dalek::SigningKey;
use foldhash::{HashMap, HashMapExt as _};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc};
use tracing::{debug, warn};

/// The p2p channel id (consensus uses 0..=5).
pub const CHANNEL: u64 = 6;
/// Txids whose receipts are cached; the oldest are forgotten first (the store still has them).
pub const RECEIPT_CACHE_TXIDS: usize = 100_000;
/// Most receipts in one message.
pub const MAX_RECEIPTS_PER_MESSAGE: usize = 256;
/// Most txids one receipt request may name.
pub const MAX_REQUESTED_TXIDS: usize = 64;
/// Largest message accepted on the channel, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// How long a peer behind waits to reach a requested read height.
pub const READ_WAIT: Duration = Duration::from_secs(2);
/// Messages queued for sending before new ones are dropped.
const OUTBOUND_QUEUE: usize = 4_096;
/// Read and receipt requests being served at once for peers, shared equally among them (so one
/// peer's requests cannot crowd out the others'); more are dropped (the gateway retries).
const MAX_SERVING_READS: usize = 256;
/// Reads this gateway waits on at once.
const MAX_PENDING_READS: usize = 1_024;
/// A peer is reachable when heard from within this long.
const REACHABLE_WITHIN: Duration = Duration::from_secs(3);
/// Heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// While a request waits for this replica to execute its transaction, how often the store is
/// asked again (own receipts normally reach the cache when the signer signs each block).
const OWN_RECHECK: Duration = Duration::from_secs(1);

/// What replicas send each other on [`CHANNEL`] (receipts in binary, the rest JSON; see
/// [`encode_message`]; at most [`MAX_MESSAGE_BYTES`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    /// Signed receipts (the sender's own).
    Receipts {
        receipts: Vec<Signed<ReceiptStatement>>,
    },
    /// Please send your receipts for these txids.
    ReceiptRequest { txids: Vec<Txid> },
    /// Please sign a statement about `query` at `height` (or later).
    ReadRequest {
        id: u64,
        height: u64,
        query: ReadQuery,
    },
    /// The answer to a read request.
    ReadResponse {
        id: u64,
        statement: Signed<ReadStatement>,
    },
    /// The sender's executed height.
    Status { height: u64 },
}

/// First byte of a binary receipts message. Other messages are JSON objects, which start with
/// `{`.
const RECEIPTS_TAG: u8 = 0x01;

/// Encodes a message for the wire. Receipts, the bulk of the traffic (one per transaction per
/// replica), travel in binary: the tag, then [`coffer_ledger::attest::encode_receipt_list`].
/// JSON with hex fields cost a replica several percent of its CPU. The rest is JSON.
fn encode_message(message: &Message) -> Option<Vec<u8>> {
    let Message::Receipts { receipts } = message else {
        return serde_json::to_vec(message).ok();
    };
    let mut out = vec![RECEIPTS_TAG];
    coffer_ledger::attest::encode_receipt_list(receipts, &mut out).ok()?;
    Some(out)
}

/// Decodes what [`encode_message`] produced; anything else (bad lengths, trailing bytes, a
/// statement that is not canonical, more than [`MAX_RECEIPTS_PER_MESSAGE`], receipts in JSON)
/// is an error.
fn decode_message(bytes: &[u8]) -> Result<Message, String> {
    let Some((&RECEIPTS_TAG, mut rest)) = bytes.split_first() else {
        return match serde_json::from_slice(bytes).map_err(|e| e.to_string())? {
            // Only the binary form bounds each receipt (its code, its proof) and checks that
            // its statement is canonical.
            Message::Receipts { .. } => Err("receipts travel in binary, not JSON".into()),
            message => Ok(message),
        };
    };
    let receipts = coffer_ledger::attest::decode_receipt_list(&mut rest, MAX_RECEIPTS_PER_MESSAGE)
        .map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after receipts", rest.len()));
    }
    Ok(Message::Receipts { receipts })
}

/// A request's interest in one txid's receipts (see [`Witness::wait_for`]).
struct Waiting<'a> {
    witness: &'a Witness,
    txid: Txid,
    notify: Arc<Notify>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut waiting = self
            .witness
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Other requests for the same txid (a client retry) hold clones; the map holds one and
        // this guard one. Clones are only made under this lock, so the count is exact here.
        if Arc::strong_count(&self.notify) <= 2 {
            waiting.remove(&self.txid);
        }
    }
}

/// Who a message goes to: every peer, or one.
#[derive(Clone, Copy, Debug)]
pub enum To {
    /// Every other replica.
    All,
    /// One replica (its ed25519 key).
    One([u8; 32]),
}

/// An encoded message waiting to be sent.
#[derive(Debug)]
pub struct Outbound {
    /// Recipients.
    pub to: To,
    /// Encoded bytes ([`encode_message`]).
    pub bytes: Vec<u8>,
}

/// A cached receipt and whether its signature was checked.
struct Cached {
    signed: Signed<ReceiptStatement>,
    check: Check,
}

/// Whether a cached receipt's signature was checked, and how it came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Unchecked,
    Valid,
    /// Kept, never counted: it holds its replica's place for this txid, so that a replica
    /// sending broken signatures costs at most one check per txid, however often it resends.
    Invalid,
}

#[derive(Default)]
struct ReceiptCache {
    by_txid: HashMap<Txid, ByReplica>,
    order: VecDeque<Txid>,
}

/// One txid's receipts, at most one per replica, sorted by replica key. A vector sized to what
/// arrived: most txids only ever hold this replica's own receipt, and a gateway's at most n. A
/// `BTreeMap` allocated room for eleven receipts per txid, about 3 KB, for each of the cached
/// 100,000 txids (`docs/EVALUATION.md`, session 12).
#[derive(Default)]
struct ByReplica(Vec<Cached>);

impl ByReplica {
    fn position(&self, replica: &[u8; 32]) -> Result<usize, usize> {
        self.0
            .binary_search_by(|c| c.signed.attestation.replica.cmp(replica))
    }

    fn get(&self, replica: &[u8; 32]) -> Option<&Cached> {
        self.position(replica).ok().map(|i| &self.0[i])
    }

    fn get_mut(&mut self, replica: &[u8; 32]) -> Option<&mut Cached> {
        self.position(replica).ok().map(|i| &mut self.0[i])
    }

    /// Keeps `cached` unless its replica already has a receipt here.
    fn insert_if_absent(&mut self, cached: Cached) {
        if let Err(i) = self.position(&cached.signed.attestation.replica) {
            if self.0.capacity() == 0 {
                self.0.reserve_exact(1);
            }
            self.0.insert(i, cached);
        }
    }

    fn values(&self) -> impl Iterator<Item = &Cached> {
        self.0.iter()
    }
}

impl ReceiptCache {
    /// Keeps `signed` unless its replica already gave one for this txid; `verified` when its
    /// signature is known to be valid (this replica's own).
    fn insert(&mut self, signed: Signed<ReceiptStatement>, verified: bool) {
        let txid = Txid(signed.statement.txid);
        let entry = self.by_txid.entry(txid).or_insert_with(|| {
            self.order.push_back(txid);
            ByReplica::default()
        });
        let check = if verified {
            Check::Valid
        } else {
            Check::Unchecked
        };
        entry.insert_if_absent(Cached { signed, check });
        while self.order.len() > RECEIPT_CACHE_TXIDS {
            if let Some(old) = self.order.pop_front() {
                self.by_txid.remove(&old);
            }
        }
    }
}

/// Gathering parameters.
#[derive(Clone, Copy, Debug)]
pub struct Patience {
    /// How long a gateway waits for peers to push a transaction's receipts before it asks
    /// them.
    pub quorum: Duration,
    /// One read round: how long to wait for f+1 at one height before moving on.
    pub read_round: Duration,
}

impl Default for Patience {
    fn default() -> Self {
        Self {
            quorum: Duration::from_millis(500),
            read_round: READ_WAIT + Duration::from_millis(500),
        }
    }
}

/// When a caller found a txid missing from the store: see [`Witness::store_mark`].
#[derive(Clone, Copy, Debug)]
pub struct StoreMark {
    at: tokio::time::Instant,
    lagged: u64,
}

/// This replica's side of the exchange; shared by the network task and the REST backend.
pub struct Witness {
    chain_id: ChainId,
    key: SigningKey,
    me: [u8; 32],
    replicas: ReplicaSet,
    names: Vec<(String, [u8; 32])>,
    ledger: LedgerView,
    store: Arc<Storage>,
    events: broadcast::Sender<Arc<ExecutedBlock>>,
    cache: Mutex<ReceiptCache>,
    /// Requests waiting for receipts, by txid: an arrival wakes only the requests it concerns
    /// (waking every waiting request on every message cost a lock and a copy per request).
    waiting: Mutex<HashMap<Txid, Arc<Notify>>>,
    outbound: mpsc::Sender<Outbound>,
    pending_reads: Mutex<HashMap<u64, PendingRead>>,
    next_read: AtomicU64,
    serving: Arc<Serving>,
    heard: Mutex<HashMap<[u8; 32], (u64, Instant)>>,
    patience: Patience,
    origins: Arc<Origins>,
    /// How many times the signer fell behind and skipped blocks (their receipts are only in
    /// the store).
    lagged: AtomicU64,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("me", &hex::encode(self.me))
            .finish_non_exhaustive()
    }
}

/// Everything a [`Witness`] is built from.
pub struct WitnessParts {
    /// The chain.
    pub chain_id: ChainId,
    /// This replica's receipt key (same seed as its consensus key).
    pub key: SigningKey,
    /// Genesis replicas: name and key, in genesis order.
    pub replicas: Vec<(String, [u8; 32])>,
    /// The executed state.
    pub ledger: LedgerView,
    /// The store blocks are persisted to.
    pub store: Arc<Storage>,
    /// Executed blocks, published after persistence.
    pub events: broadcast::Sender<Arc<ExecutedBlock>>,
    /// Gathering parameters.
    pub patience: Patience,
    /// Where this replica heard of each transaction: receipts go to the replicas that
    /// gossiped it.
    pub origins: Arc<Origins>,
}

impl Witness {
    /// A witness and the queue of messages it wants sent (drain it into the p2p sender).
    pub fn new(parts: WitnessParts) -> Result<(Arc<Self>, mpsc::Receiver<Outbound>), String> {
        let replicas = ReplicaSet::new(parts.replicas.iter().map(|(_, k)| *k))
            .map_err(|e| format!("replica set: {e}"))?;
        let me = parts.key.verifying_key().to_bytes();
        if !replicas.contains(&me) {
            return Err(format!("key {} is not a genesis replica", hex::encode(me)));
        }
        let (outbound, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let serving = Arc::new(Serving::new(replicas.len().saturating_sub(1)));
        Ok((
            Arc::new(Self {
                chain_id: parts.chain_id,
                key: parts.key,
                me,
                replicas,
                names: parts.replicas,
                ledger: parts.ledger,
                store: parts.store,
                events: parts.events,
                cache: Mutex::new(ReceiptCache::default()),
                waiting: Mutex::new(HashMap::new()),
                outbound,
                pending_reads: Mutex::new(HashMap::new()),
                next_read: AtomicU64::new(1),
                serving,
                heard: Mutex::new(HashMap::new()),
                patience: parts.patience,
                origins: parts.origins,
                lagged: AtomicU64::new(0),
            }),
            rx,
        ))
    }

    /// The genesis replica set.
    pub fn replicas(&self) -> &ReplicaSet {
        &self.replicas
    }

    /// This replica's key.
    pub fn me(&self) -> [u8; 32] {
        self.me
    }

    /// The chain.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// This replica's name in the genesis.
    pub fn name(&self) -> &str {
        self.names
            .iter()
            .find(|(_, k)| *k == self.me)
            .map_or("", |(n, _)| n.as_str())
    }

    /// Genesis replicas with their last reported height and whether they were heard recently
    /// (this replica: its own height, always reachable).
    pub fn peers(&self, own_height: u64) -> Vec<(String, [u8; 32], Option<u64>, bool)> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        self.names
            .iter()
            .map(|(name, key)| {
                if *key == self.me {
                    return (name.clone(), *key, Some(own_height), true);
                }
                match heard.get(key) {
                    Some((h, at)) => (
                        name.clone(),
                        *key,
                        Some(*h),
                        now.duration_since(*at) <= REACHABLE_WITHIN,
                    ),
                    None => (name.clone(), *key, None, false),
                }
            })
            .collect()
    }

    /// Registers interest in `txid`'s receipts; the guard withdraws it.
    fn wait_for(&self, txid: Txid) -> Waiting<'_> {
        let notify = self
            .waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(txid)
            .or_default()
            .clone();
        Waiting {
            witness: self,
            txid,
            notify,
        }
    }

    /// Wakes the requests waiting for any of `txids`.
    fn wake(&self, txids: impl Iterator<Item = Txid>) {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.is_empty() {
            return;
        }
        for txid in txids {
            if let Some(notify) = waiting.get(&txid) {
                notify.notify_waiters();
            }
        }
    }

    fn send(&self, to: To, message: &Message) {
        let Some(bytes) = encode_message(message) else {
            return;
        };
        debug_assert!(bytes.len() <= MAX_MESSAGE_BYTES, "message within the limit");
        if self.outbound.try_send(Outbound { to, bytes }).is_err() {
            debug!("witness outbound queue full; message dropped");
        }
    }

    /// One signature for the whole block: over the Merkle root of its receipts, each receipt
    /// carrying its inclusion proof.
    fn sign_block(&self, block: &ExecutedBlock) -> Vec<Signed<ReceiptStatement>> {
        let statements = block
            .receipts
            .iter()
            .map(|r| {
                let mut statement = ReceiptStatement {
                    chain_id: self.chain_id.as_str().to_owned(),
                    txid: r.txid.0,
                    height: block.height,
                    code: r
                        .rejection
                        .unwrap_or(coffer_ledger::attest::CODE_OK)
                        .to_owned(),
                    commitment: block.commitment,
                };
                crate::byzantine::receipt(&mut statement);
                statement
            })
            .collect();
        coffer_ledger::attest::sign_receipts(statements, &self.key).unwrap_or_else(|e| {
            warn!(height = block.height, error = %e, "receipts not signed");
            Vec::new()
        })
    }

    /// Signs and spreads the receipts of every executed block. Runs until the events end.
    pub async fn run_signer(self: Arc<Self>) {
        let mut events = self.events.subscribe();
        loop {
            let block = match events.recv().await {
                Ok(block) => block,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Receipts of the skipped blocks are re-signed from the store on demand:
                    // wake every request, so that each looks there.
                    warn!(skipped = n, "receipt signer lagged");
                    self.lagged.fetch_add(1, Ordering::Relaxed);
                    for notify in self
                        .waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                    {
                        notify.notify_waiters();
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let signed = self.sign_block(&block);
            tracing::debug!(n = signed.len(), "receipts signed");
            {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                for s in &signed {
                    cache.insert(s.clone(), true);
                }
            }
            self.wake(signed.iter().map(|s| Txid(s.statement.txid)));
            for (to, receipts) in self.route(signed) {
                for chunk in receipts.chunks(MAX_RECEIPTS_PER_MESSAGE) {
                    self.send(
                        to,
                        &Message::Receipts {
                            receipts: chunk.to_vec(),
                        },
                    );
                }
            }
        }
    }

    /// Who gets which of this replica's receipts: each receipt goes to the replicas that
    /// gossiped its transaction (a client waits at the one it submitted to; this replica's own
    /// submissions need no one's push), and to every peer when its origin is unknown (heard of
    /// only in a block, or forgotten). A gateway missing receipts still asks for them.
    fn route(
        &self,
        signed: Vec<Signed<ReceiptStatement>>,
    ) -> Vec<(To, Vec<Signed<ReceiptStatement>>)> {
        let mut everyone = Vec::new();
        let mut by_peer: BTreeMap<[u8; 32], Vec<Signed<ReceiptStatement>>> = BTreeMap::new();
        for s in signed {
            match self.origins.get(&s.statement.txid) {
                None => everyone.push(s),
                Some(origin) => {
                    let peers: Vec<_> = origin
                        .peers
                        .into_iter()
                        .filter(|p| *p != self.me && self.replicas.contains(p))
                        .collect();
                    if let Some((last, rest)) = peers.split_last() {
                        for p in rest {
                            by_peer.entry(*p).or_default().push(s.clone());
                        }
                        by_peer.entry(*last).or_default().push(s);
                    } else if !origin.local {
                        everyone.push(s);
                    }
                }
            }
        }
        let mut out: Vec<_> = by_peer
            .into_iter()
            .map(|(peer, receipts)| (To::One(peer), receipts))
            .collect();
        if !everyone.is_empty() {
            out.push((To::All, everyone));
        }
        out
    }

    /// Sends this replica's height to every peer, every second, until the process ends.
    pub async fn run_heartbeat(self: Arc<Self>) {
        loop {
            self.send(
                To::All,
                &Message::Status {
                    height: self.ledger.persisted_height(),
                },
            );
            tokio::time::sleep(HEARTBEAT).await;
        }
    }

    /// Handles one message from `peer` (authenticated by the p2p layer).
    pub fn on_message(self: &Arc<Self>, peer: [u8; 32], bytes: &[u8]) {
        if !self.replicas.contains(&peer) || peer == self.me {
            return;
        }
        if bytes.len() > MAX_MESSAGE_BYTES {
            warn!(
                peer = hex::encode(peer),
                len = bytes.len(),
                "oversized message"
            );
            return;
        }
        let message: Message = match decode_message(bytes) {
            Ok(m) => m,
            Err(e) => {
                warn!(peer = hex::encode(peer), error = %e, "undecodable witness message");
                return;
            }
        };
        match message {
            Message::Receipts { receipts } => {
                tracing::debug!(
                    n = receipts.len(),
                    peer = hex::encode(&peer[..2]),
                    "receipts received"
                );
                if receipts.len() > MAX_RECEIPTS_PER_MESSAGE {
                    return;
                }
                // Only the sender's own statements: nobody relays another's. The signature is
                // checked when the receipt is needed.
                let receipts: Vec<_> = receipts
                    .into_iter()
                    .filter(|s| {
                        s.attestation.replica == peer
                            && s.statement.chain_id == self.chain_id.as_str()
                    })
                    .collect();
                // Only about transactions this replica heard of, waits for or holds receipts
                // of: a peer's receipts for made-up txids would otherwise push the real ones
                // out of the bounded cache.
                let heard = self
                    .origins
                    .known(receipts.iter().map(|s| s.statement.txid));
                let awaited: Vec<bool> = {
                    let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                    receipts
                        .iter()
                        .map(|s| waiting.contains_key(&Txid(s.statement.txid)))
                        .collect()
                };
                let mut kept = Vec::new();
                {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    for ((signed, heard), awaited) in receipts.into_iter().zip(heard).zip(awaited) {
                        let txid = Txid(signed.statement.txid);
                        if heard || awaited || cache.by_txid.contains_key(&txid) {
                            kept.push(txid);
                            cache.insert(signed, false);
                        }
                    }
                }
                self.wake(kept.into_iter());
            }
            Message::ReceiptRequest { txids } => {
                // Served from the same bounded pool as reads: a peer cannot make this replica
                // run unbounded store lookups.
                if txids.len() > MAX_REQUESTED_TXIDS {
                    return;
                }
                let Some(slot) = self.serving.start(peer) else {
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let mut out = Vec::new();
                    for txid in txids {
                        if let Ok(Some(own)) = this.own_receipt(&txid).await {
                            out.push(own);
                        }
                    }
                    if !out.is_empty() {
                        this.send(To::One(peer), &Message::Receipts { receipts: out });
                    }
                });
            }
            Message::ReadRequest { id, height, query } => {
                let Some(slot) = self.serving.start(peer) else {
                    return;
                };
                let this = self.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let deadline = tokio::time::Instant::now() + READ_WAIT;
                    if let Ok(Some(statement)) =
                        this.statement_at_least(&query, height, deadline).await
                    {
                        this.send(To::One(peer), &Message::ReadResponse { id, statement });
                    }
                });
            }
            Message::ReadResponse { id, statement } => {
                if statement.attestation.replica != peer {
                    return;
                }
                // One answer per peer and read: repeats could otherwise fill the waiter's queue
                // (it holds one per replica) and crowd out the other replicas' answers.
                let mut pending = self.pending_reads.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(waiter) = pending.get_mut(&id)
                    && !waiter.answered.contains(&peer)
                {
                    waiter.answered.push(peer);
                    let _ = waiter.tx.try_send(statement);
                }
            }
            Message::Status { height } => {
                self.heard
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer, (height, Instant::now()));
            }
        }
    }

    /// This replica's signed receipt for `txid`, if it executed it: from the cache, else
    /// re-signed from the store (the statement is deterministic, so it is the same).
    pub async fn own_receipt(
        &self,
        txid: &Txid,
    ) -> Result<Option<Signed<ReceiptStatement>>, BackendError> {
        if let Some(own) = self.cached_own_receipt(txid) {
            return Ok(Some(own));
        }
        let internal = |e: crate::storage::StorageError| BackendError::Internal(e.to_string());
        let Some(receipt) = stored::receipt(&*self.store, txid)
            .await
            .map_err(internal)?
        else {
            return Ok(None);
        };
        let Some(block) = self.store.block(receipt.height).await.map_err(internal)? else {
            return Err(BackendError::Internal(format!(
                "block {} of a stored receipt is missing",
                receipt.height
            )));
        };
        let commitment = stored::decode_commitment(&block.record).map_err(internal)?;
        let mut statement =
            crate::api::answer::receipt_statement(&self.chain_id, &receipt, &commitment);
        crate::byzantine::receipt(&mut statement);
        let signed =
            sign(statement, &self.key).map_err(|e| BackendError::Internal(e.to_string()))?;
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(signed.clone(), true);
        Ok(Some(signed))
    }

    /// This replica's receipt for `txid` if it is in the cache.
    fn cached_own_receipt(&self, txid: &Txid) -> Option<Signed<ReceiptStatement>> {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_txid
            .get(txid)
            .and_then(|m| m.get(&self.me))
            .map(|c| c.signed.clone())
    }

    /// Every cached receipt for `txid` not found invalid, signatures checked or not.
    fn cached_receipts_unchecked(&self, txid: &Txid) -> Vec<Signed<ReceiptStatement>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .by_txid
            .get(txid)
            .map(|by_replica| {
                by_replica
                    .values()
                    .filter(|c| c.check != Check::Invalid)
                    .map(|c| c.signed.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The cached receipts for `txid` whose signatures are valid, gathered.
    fn verified_receipts(&self, txid: &Txid) -> crate::api::gather::Gathered<ReceiptStatement> {
        let mut gathered = crate::api::gather::Gathered::new(
            self.replicas.clone(),
            self.chain_id.as_str().to_owned(),
        );
        for s in self.cached_receipts(txid) {
            // Verified by `cached_receipts`.
            let _ = gathered.add_verified(s);
        }
        gathered
    }

    /// Every cached receipt for `txid` with a valid signature (this replica's included).
    /// Signatures not checked yet are checked now, once; an invalid receipt is never counted,
    /// and its replica's later receipts for `txid` are ignored (a correct replica never signs
    /// badly over the authenticated channel).
    pub fn cached_receipts(&self, txid: &Txid) -> Vec<Signed<ReceiptStatement>> {
        let unchecked: Vec<Signed<ReceiptStatement>> = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let Some(by_replica) = cache.by_txid.get(txid) else {
                return Vec::new();
            };
            by_replica
                .values()
                .filter(|c| c.check == Check::Unchecked)
                .map(|c| c.signed.clone())
                .collect()
        };
        // Verified outside the lock: the network task inserts meanwhile.
        let checked: Vec<([u8; 32], bool)> = unchecked
            .iter()
            .map(|s| (s.attestation.replica, self.replicas.verify(s).is_ok()))
            .collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let Some(by_replica) = cache.by_txid.get_mut(txid) else {
            return Vec::new();
        };
        for (replica, valid) in checked {
            let Some(c) = by_replica.get_mut(&replica) else {
                continue;
            };
            if valid {
                c.check = Check::Valid;
            } else {
                warn!(
                    replica = hex::encode(replica),
                    %txid,
                    "receipt with an invalid signature refused (its replica's later receipts \
                     for this transaction are ignored)"
                );
                c.check = Check::Invalid;
            }
        }
        by_replica
            .values()
            .filter(|c| c.check == Check::Valid)
            .map(|c| c.signed.clone())
            .collect()
    }

    /// A mark to take just before looking `txid` up in the store: passed to
    /// [`Witness::gather_receipts`] when the store did not have it.
    pub fn store_mark(&self) -> StoreMark {
        StoreMark {
            at: tokio::time::Instant::now(),
            lagged: self.lagged.load(Ordering::Relaxed),
        }
    }

    /// Waits until this replica executed `txid`, then gathers receipts until f+1 with valid
    /// signatures match (or 2f+1 match, unchecked); `Timeout` at `deadline` without f+1.
    /// `Ok(None)` if this replica has not executed it by the deadline. With `checked`, the
    /// caller found `txid` missing from the store at that mark (a fresh submission, checked
    /// for a replay): the store is not asked again until the signer skips blocks or
    /// OWN_RECHECK passes, which saves a submission one store read (a Redis round trip).
    pub async fn gather_receipts(
        &self,
        txid: &Txid,
        deadline: tokio::time::Instant,
        checked: Option<StoreMark>,
    ) -> Result<Option<Vec<Signed<ReceiptStatement>>>, BackendError> {
        let waiting = self.wait_for(*txid);
        // Own execution first. The signer caches this replica's receipts as it signs each
        // block, so the store (a Redis round trip) is asked only at first (the transaction may
        // have executed long ago, or before a restart) unless the caller just did, after the
        // signer skipped blocks, and every OWN_RECHECK as a safety net; not on every peer
        // receipt that wakes the request.
        let mut store_asked = checked.map(|m| (m.at, m.lagged));
        loop {
            let arrived = waiting.notify.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.cached_own_receipt(txid).is_some() {
                break;
            }
            let now = tokio::time::Instant::now();
            let lagged = self.lagged.load(Ordering::Relaxed);
            if store_asked.is_none_or(|(at, seen)| now >= at + OWN_RECHECK || lagged != seen) {
                store_asked = Some((now, lagged));
                if self.own_receipt(txid).await?.is_some() {
                    break;
                }
            }
            let wake = deadline.min(tokio::time::Instant::now() + OWN_RECHECK);
            if tokio::time::timeout_at(wake, arrived).await.is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return Ok(None);
            }
        }
        let mut asked = false;
        // Peers push receipts only to the replicas a transaction was gossiped from: when it
        // was not submitted here, ask at once.
        let ask_after = if self.origins.is_local(&txid.0) {
            tokio::time::Instant::now() + self.patience.quorum
        } else {
            tokio::time::Instant::now()
        };
        loop {
            let arrived = waiting.notify.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            // 2f+1 distinct replicas vouching for the same statement include f+1 honest ones,
            // whose signatures are valid (each receipt came over the authenticated channel from
            // its signer): the client, which checks signatures, is then certain to find f+1,
            // and the gateway checks none.
            let mut unchecked = crate::api::gather::Gathered::new(
                self.replicas.clone(),
                self.chain_id.as_str().to_owned(),
            );
            for s in self.cached_receipts_unchecked(txid) {
                let _ = unchecked.add_verified(s);
            }
            if unchecked.strong() {
                return Ok(Some(unchecked.into_vec()));
            }
            // f+1 match: answer as soon as their signatures check, rather than wait for the
            // slowest of 2f+1 (on a busy host, milliseconds per transfer). A peer signs one
            // Merkle root per block and `ReplicaSet` remembers the roots it verified, so this
            // costs one ed25519 check per peer and block, then a few hashes per receipt.
            if unchecked.weak() {
                let gathered = self.verified_receipts(txid);
                if gathered.weak() {
                    return Ok(Some(gathered.into_vec()));
                }
                // Invalid signatures no longer count (see `cached_receipts`): wait for more.
            }
            let now = tokio::time::Instant::now();
            if !asked && now >= ask_after {
                // Peers may have executed it before this replica's cache could hear them
                // (restart, lag): ask.
                self.send(To::All, &Message::ReceiptRequest { txids: vec![*txid] });
                asked = true;
            }
            if now >= deadline {
                return Err(BackendError::Timeout(format!(
                    "{} of {} matching receipts for {txid}",
                    self.verified_receipts(txid).matching(),
                    self.replicas.weak_quorum()
                )));
            }
            let mut wake = deadline;
            if !asked {
                wake = wake.min(ask_after);
            }
            let _ = tokio::time::timeout_at(wake, arrived).await;
        }
    }

    /// Waits (until `deadline`) for the persisted state to reach `height`, then signs a
    /// statement about `query` at the height it is at. `Ok(None)` if it never got there.
    async fn statement_at_least(
        &self,
        query: &ReadQuery,
        height: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Signed<ReadStatement>>, BackendError> {
        Ok(self
            .answer_at_least(query, height, deadline)
            .await?
            .map(|(_, _, s)| s))
    }

    async fn answer_at_least(
        &self,
        query: &ReadQuery,
        height: u64,
        deadline: tokio::time::Instant,
    ) -> Result<
        Option<(
            coffer_ledger::Commitment,
            coffer_ledger::attest::ReadResult,
            Signed<ReadStatement>,
        )>,
        BackendError,
    > {
        let mut events = self.events.subscribe();
        loop {
            let planned = {
                match self.ledger.persisted() {
                    Some(state) if state.height() >= height => {
                        Some((state.commitment(), plan_read(&state, query)?))
                    }
                    _ => None,
                }
            };
            let answered = match planned {
                Some((commitment, Answer::Ready(result))) => Some((commitment, result)),
                // Entries at or below the persisted height never change, so reading them after
                // the state lock is released still answers at `commitment`.
                Some((commitment, Answer::History { address, window })) => Some((
                    commitment,
                    history_from_store(&*self.store, &address, window).await?,
                )),
                None => None,
            };
            if let Some((commitment, result)) = answered {
                let mut statement = read_statement(&self.chain_id, &commitment, query, &result)?;
                crate::byzantine::read(&mut statement);
                let signed = sign(statement, &self.key)
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                return Ok(Some((commitment, result, signed)));
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Ok(None),
                Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(None),
                Ok(_) => {}
            }
        }
    }

    /// Answers `query` with f+1 matching signed statements, by the rule in the module docs;
    /// `Timeout` at `deadline`.
    pub async fn read(
        &self,
        query: &ReadQuery,
        deadline: tokio::time::Instant,
    ) -> Result<AttestedRead, BackendError> {
        let mut target = 0u64;
        let mut best = 0usize;
        loop {
            let Some((commitment, result, own)) =
                self.answer_at_least(query, target, deadline).await?
            else {
                return Err(BackendError::Timeout(format!(
                    "state did not reach height {target}; best agreement {best}"
                )));
            };
            let height = commitment.height;
            let mut gathered = crate::api::gather::Gathered::new(
                self.replicas.clone(),
                self.chain_id.as_str().to_owned(),
            );
            let _ = gathered.add(own);
            let (tx, mut rx) = mpsc::channel(self.replicas.len().max(1));
            let id = self.next_read.fetch_add(1, Ordering::Relaxed);
            let registered = {
                let mut pending = self.pending_reads.lock().unwrap_or_else(|e| e.into_inner());
                if pending.len() < MAX_PENDING_READS {
                    pending.insert(
                        id,
                        PendingRead {
                            tx,
                            answered: Vec::new(),
                        },
                    );
                    true
                } else {
                    false
                }
            };
            if !registered {
                return Err(BackendError::Busy("too many reads in flight".into()));
            }
            if !gathered.strong() {
                self.send(
                    To::All,
                    &Message::ReadRequest {
                        id,
                        height,
                        query: query.clone(),
                    },
                );
            }
            let round_end = (tokio::time::Instant::now() + self.patience.read_round).min(deadline);
            let query_digest = query
                .digest()
                .map_err(|e| BackendError::Internal(e.to_string()))?;
            // Distinct replicas that answered this round, and the heights of valid answers
            // about this query made ahead of `height`.
            let mut answered: Vec<[u8; 32]> = Vec::new();
            let mut ahead: Vec<u64> = Vec::new();
            loop {
                // f+1 agree (statements are checked as they arrive, so waiting for more would
                // only wait for the slowest replica), or everyone answered: this round is over.
                if gathered.weak() || answered.len() + 1 >= self.replicas.len() {
                    break;
                }
                if tokio::time::Instant::now() >= round_end {
                    break;
                }
                match tokio::time::timeout_at(round_end, rx.recv()).await {
                    Ok(Some(statement)) => {
                        let replica = statement.attestation.replica;
                        if replica == self.me || answered.contains(&replica) {
                            continue;
                        }
                        answered.push(replica);
                        if statement.statement.height == height {
                            let _ = gathered.add(statement);
                        } else if statement.statement.height > height
                            && statement.statement.query_digest == query_digest
                            && self.accepts(&statement)
                        {
                            ahead.push(statement.statement.height);
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            self.pending_reads
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            best = best.max(gathered.matching());
            if gathered.weak() {
                return Ok(AttestedRead {
                    height,
                    commitment: coffer_ledger::hash::Hex::new(&commitment.state_hash.0).to_string(),
                    result,
                    attestations: gathered.into_vec(),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(BackendError::Timeout(format!(
                    "{best} of {} matching read statements",
                    self.replicas.weak_quorum()
                )));
            }
            // Peers moved on: meet them at the highest height f+1 of them reached, which at
            // least one correct replica did (a single replica's claim could name a height no
            // one reaches), or at the next one.
            target = next_read_height(height, ahead, self.replicas.weak_quorum());
        }
    }

    /// Verifies `signed` as a statement this replica would keep (tests).
    pub fn accepts(&self, signed: &Signed<ReadStatement>) -> bool {
        self.replicas.contains(&signed.attestation.replica)
            && signed.statement.chain_id() == self.chain_id.as_str()
            && signed.verify_signature().is_ok()
    }
}

/// Requests from peers being served, counted per peer: each peer has an equal share of
/// [`MAX_SERVING_READS`].
struct Serving {
    share: usize,
    by_peer: Mutex<HashMap<[u8; 32], usize>>,
}

impl Serving {
    fn new(peers: usize) -> Self {
        Self {
            share: (MAX_SERVING_READS / peers.max(1)).max(1),
            by_peer: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one of `peer`'s requests, held until dropped; `None` when its share is in
    /// use.
    fn start(self: &Arc<Self>, peer: [u8; 32]) -> Option<ServingSlot> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|e| e.into_inner());
        let serving = by_peer.entry(peer).or_default();
        if *serving >= self.share {
            return None;
        }
        *serving += 1;
        Some(ServingSlot {
            serving: self.clone(),
            peer,
        })
    }
}

/// One request being served (see [`Serving::start`]).
struct ServingSlot {
    serving: Arc<Serving>,
    peer: [u8; 32],
}

impl Drop for ServingSlot {
    fn drop(&mut self) {
        let mut by_peer = self
            .serving
            .by_peer
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_peer.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// A read waiting for peers' statements: where to send them, and which peers already
/// answered (one answer each).
struct PendingRead {
    tx: mpsc::Sender<Signed<ReadStatement>>,
    answered: Vec<[u8; 32]>,
}

/// The height a read's next round waits for, after a round at `height` in which peers
/// answered at the heights `ahead` (each above `height`, one per replica): the highest height
/// that `weak_quorum` (f+1) of them reached, so at least one correct replica is there;
/// `height + 1` when fewer are ahead.
fn next_read_height(height: u64, mut ahead: Vec<u64>, weak_quorum: usize) -> u64 {
    ahead.sort_unstable_by(|a, b| b.cmp(a));
    let reached = weak_quorum
        .checked_sub(1)
        .and_then(|i| ahead.get(i))
        .copied()
        .unwrap_or(0);
    reached.max(height.saturating_add(1))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ledger::LedgerMachine;
    use crate::tx::{Receipt, Txid as NodeTxid};
    use coffer_ledger::{Genesis, Keypair, Limits, ReplicaInfo, ReplicaKey};

    fn keys() -> Vec<SigningKey> {
        (1..=4u8)
            .map(|i| SigningKey::from_bytes(&[i; 32]))
            .collect()
    }

    fn witness(patience: Patience) -> (Arc<Witness>, mpsc::Receiver<Outbound>) {
        let (w, out, _) = witness_and_machine(patience);
        (w, out)
    }

    /// A request for `txid` gathering in the background with a 10 s deadline, after a store
    /// check at `checked` if given.
    fn gather_in_background(
        w: &Arc<Witness>,
        txid: [u8; 32],
        checked: Option<StoreMark>,
    ) -> tokio::task::JoinHandle<Result<Option<Vec<Signed<ReceiptStatement>>>, BackendError>> {
        let w = w.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            w.gather_receipts(&Txid(txid), deadline, checked).await
        })
    }

    /// A witness and the state machine whose store it reads (to execute blocks behind the
    /// signer's back).
    fn witness_and_machine(
        patience: Patience,
    ) -> (Arc<Witness>, mpsc::Receiver<Outbound>, LedgerMachine) {
        let keys = keys();
        let chain_id = ChainId::new("witness").unwrap();
        let replicas: Vec<(String, [u8; 32])> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (format!("r{i}"), k.verifying_key().to_bytes()))
            .collect();
        let genesis = Genesis {
            chain_id: chain_id.clone(),
            issuers: vec![Keypair::from_secret_bytes([9; 32]).unwrap().public_key()],
            replicas: replicas
                .iter()
                .map(|(name, key)| ReplicaInfo {
                    name: name.clone(),
                    public_key: ReplicaKey(*key),
                })
                .collect(),
            limits: Limits::default(),
        };
        let machine = LedgerMachine::new(genesis).unwrap();
        let (events, _) = broadcast::channel(16);
        let (w, out) = Witness::new(WitnessParts {
            chain_id,
            key: keys[0].clone(),
            replicas,
            ledger: machine.view(),
            store: machine.store(),
            events,
            patience,
            origins: Arc::new(Origins::default()),
        })
        .unwrap();
        (w, out, machine)
    }

    fn block(txid: [u8; 32]) -> ExecutedBlock {
        ExecutedBlock {
            height: 1,
            digest: [0; 32],
            receipts: vec![Receipt {
                txid: NodeTxid(txid),
                rejection: None,
                code: 0,
            }],
            commitment: [7; 32],
            commitment_encoding: Vec::new(),
        }
    }

    fn statement(txid: [u8; 32]) -> ReceiptStatement {
        ReceiptStatement {
            chain_id: "witness".into(),
            txid,
            height: 1,
            code: "ok".into(),
            commitment: [7; 32],
        }
    }

    /// This replica executed a block holding `txid`: its own signed receipt is cached.
    fn executed_here(w: &Witness, txid: [u8; 32]) {
        for s in w.sign_block(&block(txid)) {
            w.cache.lock().unwrap().insert(s, true);
        }
    }

    /// The receipts a request for `txid` gets within 2 s; this replica must have executed it.
    async fn gathered(w: &Witness, txid: [u8; 32]) -> Vec<Signed<ReceiptStatement>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        w.gather_receipts(&Txid(txid), deadline, None)
            .await
            .unwrap()
            .unwrap()
    }

    /// Short gathering patience for paused-time tests.
    fn quick_patience() -> Patience {
        Patience {
            quorum: Duration::from_millis(100),
            read_round: Duration::from_secs(1),
        }
    }

    /// Whether any message drained from `out` asked peers for receipts.
    fn asked(out: &mut mpsc::Receiver<Outbound>) -> bool {
        let mut asked = false;
        while let Ok(o) = out.try_recv() {
            asked |= String::from_utf8_lossy(&o.bytes).contains("receipt_request");
        }
        asked
    }

    /// `peer` sends this replica its own valid receipt for `txid`.
    fn receipt_from(w: &Arc<Witness>, peer: &SigningKey, txid: [u8; 32]) {
        w.on_message(
            peer.verifying_key().to_bytes(),
            &receipts_message(vec![sign(statement(txid), peer).unwrap()]),
        );
    }

    /// The test replicas, to check a gateway's answer the way a client does.
    fn replica_set() -> ReplicaSet {
        ReplicaSet::new(keys().iter().map(|k| k.verifying_key().to_bytes())).unwrap()
    }

    fn receipts_message(receipts: Vec<Signed<ReceiptStatement>>) -> Vec<u8> {
        encode_message(&Message::Receipts { receipts }).unwrap()
    }

    #[tokio::test]
    async fn only_the_senders_own_valid_receipts_are_kept() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        let peer = k[1].verifying_key().to_bytes();
        let txid = [3; 32];
        w.origins.gossiped(txid, peer);
        // Relaying replica 2's receipt, a forged one, and another chain's: all dropped.
        let relayed = sign(statement(txid), &k[2]).unwrap();
        let mut forged = sign(statement(txid), &k[1]).unwrap();
        forged.statement.height = 2;
        let mut other_chain = statement(txid);
        other_chain.chain_id = "elsewhere".into();
        let other_chain = sign(other_chain, &k[1]).unwrap();
        w.on_message(peer, &receipts_message(vec![relayed, forged, other_chain]));
        assert!(w.cached_receipts(&Txid(txid)).is_empty());
        // The forged one was the sender's own: checked when needed, found invalid, refused.
        let check = |t: [u8; 32]| {
            w.cache.lock().unwrap().by_txid[&Txid(t)]
                .get(&peer)
                .map(|c| c.check)
        };
        assert_eq!(check(txid), Some(Check::Invalid));
        // Garbage and strangers are ignored without a panic.
        w.on_message(peer, b"\xff not json");
        let stranger = SigningKey::from_bytes(&[9; 32]);
        let own_by_stranger = sign(statement(txid), &stranger).unwrap();
        w.on_message(
            stranger.verifying_key().to_bytes(),
            &receipts_message(vec![own_by_stranger]),
        );
        assert!(w.cached_receipts(&Txid(txid)).is_empty());
        // A replica that signed badly is not heard again for that txid: neither a valid receipt
        // nor the broken one resent is taken or checked.
        let mut broken = sign(statement(txid), &k[1]).unwrap();
        broken.attestation.signature[0] ^= 1;
        w.on_message(
            peer,
            &receipts_message(vec![sign(statement(txid), &k[1]).unwrap(), broken]),
        );
        assert!(w.cached_receipts(&Txid(txid)).is_empty());
        assert!(w.cached_receipts_unchecked(&Txid(txid)).is_empty());
        assert_eq!(check(txid), Some(Check::Invalid));
        // Its valid receipt for another txid is kept.
        let other = [13; 32];
        w.origins.gossiped(other, peer);
        w.on_message(
            peer,
            &receipts_message(vec![sign(statement(other), &k[1]).unwrap()]),
        );
        assert_eq!(w.cached_receipts(&Txid(other)).len(), 1);
        assert_eq!(check(other), Some(Check::Valid));
    }

    #[tokio::test(start_paused = true)]
    async fn gathering_settles_for_f_plus_one_and_times_out_below() {
        let (w, mut out) = witness(quick_patience());
        let k = keys();
        let txid = [4; 32];
        // Not executed here: nothing to gather.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        assert!(
            w.gather_receipts(&Txid(txid), deadline, None)
                .await
                .unwrap()
                .is_none()
        );
        // Executed here but nobody else answers: below f+1 at the deadline, and the peers
        // were asked.
        executed_here(&w, txid);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let err = w.gather_receipts(&Txid(txid), deadline, None).await;
        assert!(matches!(err, Err(BackendError::Timeout(_))), "{err:?}");
        assert!(asked(&mut out), "peers were asked for their receipts");
        // One matching peer receipt makes f+1 = 2.
        receipt_from(&w, &k[1], txid);
        let got = gathered(&w, txid).await;
        assert_eq!(got.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn f_plus_one_valid_receipts_are_answered_without_waiting_for_the_slowest() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        let txid = [10; 32];
        executed_here(&w, txid);
        let started = tokio::time::Instant::now();
        let gather = gather_in_background(&w, txid, None);
        tokio::task::yield_now().await;
        // Own receipt only: still waiting.
        assert!(w.waiting.lock().unwrap().contains_key(&Txid(txid)));
        // The first peer's valid receipt makes f+1: answered on arrival, checked, without
        // waiting for a third replica or the patience (paused time would jump to it).
        receipt_from(&w, &k[1], txid);
        let got = gather.await.unwrap().unwrap().unwrap();
        assert_eq!(got.len(), 2);
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "{:?}",
            started.elapsed()
        );
        let set = replica_set();
        let v = coffer_ledger::attest::verify_quorum(&got, &set, "witness", 2).unwrap();
        assert!(v.discarded.is_empty());
        assert!(v.signers.contains(&k[1].verifying_key().to_bytes()));
    }

    /// A supply read running in the background with a 10 s deadline, the id of the request it
    /// sent its peers, and the gateway's own signed statement at the requested height.
    async fn supply_read_in_background(
        w: &Arc<Witness>,
        out: &mut mpsc::Receiver<Outbound>,
    ) -> (
        tokio::task::JoinHandle<Result<AttestedRead, BackendError>>,
        u64,
        Signed<ReadStatement>,
    ) {
        let reader = {
            let w = w.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                w.read(&ReadQuery::Supply, deadline).await
            })
        };
        tokio::task::yield_now().await;
        let mut request = None;
        while let Ok(o) = out.try_recv() {
            if let Ok(Message::ReadRequest { id, height, .. }) = decode_message(&o.bytes) {
                request = Some((id, height));
            }
        }
        let (id, height) = request.expect("the gateway asked its peers");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let (_, _, own) = w
            .answer_at_least(&ReadQuery::Supply, height, deadline)
            .await
            .unwrap()
            .unwrap();
        (reader, id, own)
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_is_answered_when_f_plus_one_statements_match() {
        let (w, mut out, _machine) = witness_and_machine(Patience::default());
        let k = keys();
        let started = tokio::time::Instant::now();
        let (reader, id, own) = supply_read_in_background(&w, &mut out).await;
        // One peer signs the same statement: with the gateway's own, f+1 = 2.
        let peer = sign(own.statement.clone(), &k[1]).unwrap();
        w.on_message(
            k[1].verifying_key().to_bytes(),
            &encode_message(&Message::ReadResponse {
                id,
                statement: peer,
            })
            .unwrap(),
        );
        let read = reader.await.unwrap().unwrap();
        assert_eq!(read.attestations.len(), 2);
        // Answered on arrival: no wait for a third replica (paused time would jump to it).
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "{:?}",
            started.elapsed()
        );
        let set = replica_set();
        let v =
            coffer_ledger::attest::verify_quorum(&read.attestations, &set, "witness", 2).unwrap();
        assert!(v.signers.contains(&k[1].verifying_key().to_bytes()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_repeating_its_answer_neither_ends_a_read_round_nor_crowds_out_others() {
        let (w, mut out, _machine) = witness_and_machine(Patience::default());
        let k = keys();
        let (reader, id, own) = supply_read_in_background(&w, &mut out).await;
        let height = own.statement.height;
        let respond = |from: &SigningKey, statement: ReadStatement| {
            let signed = sign(statement, from).unwrap();
            w.on_message(
                from.verifying_key().to_bytes(),
                &encode_message(&Message::ReadResponse {
                    id,
                    statement: signed,
                })
                .unwrap(),
            );
        };
        // A lying peer answers as many times as there are replicas, with another result at
        // the same height and with a height far ahead, before anyone else answers. Counted
        // per message, that ended the round as if every replica had answered, and filled the
        // queue so that the next answer was dropped.
        let mut lie = own.statement.clone();
        lie.result_digest = [0xee; 32];
        let mut far = own.statement.clone();
        far.height = height + 1_000_000_000;
        for statement in [lie.clone(), far, lie.clone(), lie] {
            respond(&k[1], statement);
        }
        respond(&k[2], own.statement.clone());
        let read = reader.await.unwrap();
        let read = read.expect("the correct peer's answer makes f+1 with the gateway's own");
        assert_eq!(read.height, height);
        let signers: Vec<[u8; 32]> = read
            .attestations
            .iter()
            .map(|a| a.attestation.replica)
            .collect();
        assert!(signers.contains(&k[2].verifying_key().to_bytes()));
        let v =
            coffer_ledger::attest::verify_quorum(&read.attestations, &replica_set(), "witness", 2)
                .unwrap();
        assert_eq!(v.statement, own.statement);
    }

    #[test]
    fn a_read_moves_on_to_a_height_f_plus_one_peers_reached() {
        // f+1 = 2 (n = 4): one replica ahead alone names no height; the second highest of
        // those ahead is a height a correct replica reached.
        assert_eq!(next_read_height(5, vec![], 2), 6);
        assert_eq!(next_read_height(5, vec![1_000_000_000], 2), 6);
        assert_eq!(next_read_height(5, vec![1_000_000_000, 8], 2), 8);
        assert_eq!(next_read_height(5, vec![7, 9, 8], 2), 8);
        assert_eq!(next_read_height(5, vec![6, 6], 2), 6);
        // f = 0: the one replica is the gateway; f = 2 (n = 7): the third highest.
        assert_eq!(next_read_height(5, vec![9], 1), 9);
        assert_eq!(next_read_height(5, vec![20, 30, 7, 10], 3), 10);
        assert_eq!(next_read_height(u64::MAX, vec![], 2), u64::MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn a_strong_quorum_is_returned_unchecked_and_still_proves_the_receipt() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        let txid = [5; 32];
        executed_here(&w, txid);
        // Replica 1 is honest; replica 2 sends its own receipt with a broken signature.
        let honest = sign(statement(txid), &k[1]).unwrap();
        let mut broken = sign(statement(txid), &k[2]).unwrap();
        broken.attestation.signature[0] ^= 1;
        w.on_message(
            k[1].verifying_key().to_bytes(),
            &receipts_message(vec![honest]),
        );
        w.on_message(
            k[2].verifying_key().to_bytes(),
            &receipts_message(vec![broken]),
        );
        // 2f+1 = 3 match: answered at once, without checking (the broken one travels along).
        let got = gathered(&w, txid).await;
        assert_eq!(got.len(), 3);
        // The client still finds f+1 valid signatures; a full audit reports the broken one.
        let set = replica_set();
        let v = coffer_ledger::attest::accept_quorum(&got, &set, "witness", 2).unwrap();
        assert_eq!(v.signers.len(), 2);
        assert!(!v.signers.contains(&k[2].verifying_key().to_bytes()));
        let audit = coffer_ledger::attest::verify_quorum(&got, &set, "witness", 2).unwrap();
        assert_eq!(audit.signers.len(), 2);
        assert_eq!(audit.discarded.len(), 1);
        // Below 2f+1, every signature is checked: the broken one is refused and only the two
        // valid receipts remain.
        assert_eq!(w.cached_receipts(&Txid(txid)).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_is_woken_by_its_receipts_and_withdraws_after() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        let txid = [6; 32];
        executed_here(&w, txid);
        let started = tokio::time::Instant::now();
        let gather = gather_in_background(&w, txid, None);
        tokio::task::yield_now().await;
        assert!(w.waiting.lock().unwrap().contains_key(&Txid(txid)));
        // Receipts for another txid do not concern it; its own two peers' receipts do.
        for peer in &k[1..=2] {
            receipt_from(&w, peer, [9; 32]);
            receipt_from(&w, peer, txid);
        }
        let got = gather.await.unwrap().unwrap().unwrap();
        assert_eq!(got.len(), 3);
        // Answered on arrival: no patience or deadline ran out.
        assert!(started.elapsed() < Patience::default().quorum);
        assert!(w.waiting.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_receipt_with_a_broken_signature_never_makes_f_plus_one() {
        let (w, _out) = witness(quick_patience());
        let k = keys();
        let txid = [8; 32];
        executed_here(&w, txid);
        let mut broken = sign(statement(txid), &k[1]).unwrap();
        broken.attestation.signature[0] ^= 1;
        w.on_message(
            k[1].verifying_key().to_bytes(),
            &receipts_message(vec![broken]),
        );
        // Own + broken look like f+1 until checked; checked at once, the broken one is
        // refused, and without another receipt the request times out.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let err = w.gather_receipts(&Txid(txid), deadline, None).await;
        assert!(matches!(err, Err(BackendError::Timeout(_))), "{err:?}");
        assert_eq!(w.cached_receipts(&Txid(txid)).len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_peer_flooding_requests_uses_only_its_share_of_the_serving_pool() {
        let (w, mut out) = witness(Patience::default());
        let k = keys();
        let request = |from: &SigningKey, id: u64, height: u64| {
            w.on_message(
                from.verifying_key().to_bytes(),
                &encode_message(&Message::ReadRequest {
                    id,
                    height,
                    query: ReadQuery::Supply,
                })
                .unwrap(),
            );
        };
        // A height this replica will not reach holds a slot for `READ_WAIT`: the whole pool
        // from one peer, once its answers would have starved the other peers.
        for id in 0..MAX_SERVING_READS as u64 {
            request(&k[3], id, u64::MAX);
        }
        request(&k[1], 1_000, 0);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut answered = Vec::new();
        while let Ok(o) = out.try_recv() {
            if let (To::One(to), Ok(Message::ReadResponse { id, .. })) =
                (o.to, decode_message(&o.bytes))
            {
                answered.push((to, id));
            }
        }
        assert_eq!(answered, vec![(k[1].verifying_key().to_bytes(), 1_000)]);
        // Its share: a third of the pool each for three peers, freed as requests end.
        let share = MAX_SERVING_READS / 3;
        assert_eq!(
            w.serving
                .by_peer
                .lock()
                .unwrap()
                .get(&k[3].verifying_key().to_bytes()),
            Some(&share)
        );
        tokio::time::sleep(READ_WAIT + Duration::from_millis(10)).await;
        assert!(w.serving.by_peer.lock().unwrap().is_empty());
    }

    #[test]
    fn read_requests_travel_as_json_with_the_query_inline() {
        // Replicas of different versions exchange these: the JSON form is a wire format.
        let cases = [
            (
                ReadQuery::Balance {
                    address: "a".into(),
                },
                r#"{"type":"read_request","id":1,"height":2,"query":{"kind":"balance","address":"a"}}"#,
            ),
            (
                ReadQuery::Utxos {
                    address: "a".into(),
                    cursor: None,
                    limit: 5,
                },
                r#"{"type":"read_request","id":1,"height":2,"query":{"kind":"utxos","address":"a","cursor":null,"limit":5}}"#,
            ),
            (
                ReadQuery::History {
                    address: "a".into(),
                    cursor: Some("7".into()),
                    limit: 5,
                },
                r#"{"type":"read_request","id":1,"height":2,"query":{"kind":"history","address":"a","cursor":"7","limit":5}}"#,
            ),
            (
                ReadQuery::Supply,
                r#"{"type":"read_request","id":1,"height":2,"query":{"kind":"supply"}}"#,
            ),
        ];
        for (query, json) in cases {
            let message = Message::ReadRequest {
                id: 1,
                height: 2,
                query: query.clone(),
            };
            assert_eq!(
                String::from_utf8(encode_message(&message).unwrap()).unwrap(),
                json
            );
            let Ok(Message::ReadRequest { query: back, .. }) = decode_message(json.as_bytes())
            else {
                panic!("{json} did not decode");
            };
            assert_eq!(back, query);
        }
        // An absent cursor and unknown fields are tolerated.
        let lenient = r#"{"type":"read_request","id":1,"height":2,"query":{"kind":"utxos","address":"a","limit":5,"more":0}}"#;
        let Ok(Message::ReadRequest { query: back, .. }) = decode_message(lenient.as_bytes())
        else {
            panic!("lenient query did not decode");
        };
        assert_eq!(
            back,
            ReadQuery::Utxos {
                address: "a".into(),
                cursor: None,
                limit: 5
            }
        );
    }

    #[test]
    fn receipts_travel_in_binary_and_garbage_is_refused() {
        let k = keys();
        let receipts: Vec<_> = (0..3u8)
            .map(|i| sign(statement([i; 32]), &k[usize::from(i)]).unwrap())
            .collect();
        let bytes = encode_message(&Message::Receipts {
            receipts: receipts.clone(),
        })
        .unwrap();
        assert_eq!(bytes[0], RECEIPTS_TAG);
        let json = serde_json::to_vec(&Message::Receipts {
            receipts: receipts.clone(),
        })
        .unwrap();
        assert!(
            bytes.len() * 2 < json.len(),
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        let Ok(Message::Receipts { receipts: back }) = decode_message(&bytes) else {
            panic!("binary receipts did not decode");
        };
        assert_eq!(back, receipts);
        // Other messages stay JSON.
        let status = encode_message(&Message::Status { height: 3 }).unwrap();
        assert_eq!(status[0], b'{');
        assert!(matches!(
            decode_message(&status),
            Ok(Message::Status { height: 3 })
        ));
        // Receipts in JSON are refused, however well formed: only the binary decoder bounds a
        // receipt (a 900 KB code was cached as it came).
        assert!(decode_message(&json).is_err());
        let mut long = statement([7; 32]);
        long.code = "a".repeat(900_000);
        let mut signed = sign(statement([7; 32]), &k[1]).unwrap();
        signed.statement = long;
        let long = serde_json::to_vec(&Message::Receipts {
            receipts: vec![signed],
        })
        .unwrap();
        assert!(decode_message(&long).is_err());
        // Every truncation, trailing bytes, a corrupted statement and an oversized count fail.
        for cut in 1..bytes.len() {
            assert!(decode_message(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_message(&trailing).is_err());
        let mut corrupt = bytes.clone();
        corrupt[6] ^= 0xff; // inside the first statement's domain tag
        assert!(decode_message(&corrupt).is_err());
        let mut many = vec![RECEIPTS_TAG];
        many.extend_from_slice(&u16::MAX.to_be_bytes());
        assert!(decode_message(&many).is_err());
    }

    #[tokio::test]
    async fn binary_receipts_from_a_peer_are_cached() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        let txid = [12; 32];
        let own = sign(statement(txid), &k[1]).unwrap();
        let bytes = encode_message(&Message::Receipts {
            receipts: vec![own],
        })
        .unwrap();
        // Not before this replica heard of the transaction: made-up txids would push real
        // ones out of the bounded cache.
        w.on_message(k[1].verifying_key().to_bytes(), &bytes);
        assert!(w.cached_receipts(&Txid(txid)).is_empty());
        w.origins.local(txid);
        w.on_message(k[1].verifying_key().to_bytes(), &bytes);
        assert_eq!(w.cached_receipts(&Txid(txid)).len(), 1);
        // A txid a request waits for here, or one whose receipts are cached already, is kept
        // too.
        let (awaited, held) = ([13; 32], [14; 32]);
        let _waiting = w.wait_for(Txid(awaited));
        w.cache
            .lock()
            .unwrap()
            .insert(sign(statement(held), &k[0]).unwrap(), true);
        let bytes = encode_message(&Message::Receipts {
            receipts: vec![
                sign(statement(awaited), &k[1]).unwrap(),
                sign(statement(held), &k[1]).unwrap(),
                sign(statement([15; 32]), &k[1]).unwrap(),
            ],
        })
        .unwrap();
        w.on_message(k[1].verifying_key().to_bytes(), &bytes);
        assert_eq!(w.cached_receipts(&Txid(awaited)).len(), 1);
        assert_eq!(w.cached_receipts(&Txid(held)).len(), 2);
        assert!(w.cached_receipts(&Txid([15; 32])).is_empty());
    }

    #[tokio::test]
    async fn a_block_is_signed_once_and_its_proven_receipts_travel_and_verify() {
        let (w, _out) = witness(Patience::default());
        let k = keys();
        // A peer's receipts for a block of three transactions.
        let statements: Vec<_> = (20..23u8).map(|i| statement([i; 32])).collect();
        let signed = coffer_ledger::attest::sign_receipts(statements, &k[1]).unwrap();
        assert!(signed.iter().all(|s| s.attestation.proof.is_some()
            && s.attestation.signature == signed[0].attestation.signature));
        let bytes = encode_message(&Message::Receipts {
            receipts: signed.clone(),
        })
        .unwrap();
        let Ok(Message::Receipts { receipts: back }) = decode_message(&bytes) else {
            panic!("proven receipts did not decode");
        };
        assert_eq!(back, signed);
        for cut in 1..bytes.len() {
            assert!(decode_message(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 20..33u8 {
            w.origins.local([i; 32]);
        }
        w.on_message(k[1].verifying_key().to_bytes(), &bytes);
        for i in 20..23u8 {
            assert_eq!(w.cached_receipts(&Txid([i; 32])).len(), 1, "txid {i}");
        }
        // A receipt whose statement is not the leaf its proof was made for is dropped.
        let mut moved = signed[0].clone();
        moved.statement.txid = [30; 32];
        let bytes = encode_message(&Message::Receipts {
            receipts: vec![moved],
        })
        .unwrap();
        w.on_message(k[1].verifying_key().to_bytes(), &bytes);
        assert!(w.cached_receipts(&Txid([30; 32])).is_empty());
        // This replica signs its own blocks the same way.
        let own = w.sign_block(&block([40; 32]));
        assert_eq!(own[0].attestation.proof.as_ref().map(|p| p.count), Some(1));
        assert!(w.replicas().verify(&own[0]).is_ok());
    }

    /// The genesis issuer's mint with `nonce`.
    fn mint(nonce: u64) -> coffer_ledger::SignedTransaction {
        let issuer = Keypair::from_secret_bytes([9; 32]).unwrap();
        issuer.sign_tx(coffer_ledger::Transaction::Mint(coffer_ledger::Mint {
            chain_id: ChainId::new("witness").unwrap(),
            issuer: issuer.public_key(),
            nonce,
            outputs: vec![coffer_ledger::TxOut::to_address(
                coffer_ledger::Amount(5),
                issuer.address(),
            )],
        }))
    }

    /// Executes and persists a block holding one mint at `height`, without the signer hearing
    /// of it (as when it lagged); returns the mint's txid.
    async fn executed_behind_the_signer(machine: &mut LedgerMachine, height: u64) -> [u8; 32] {
        use crate::tx::StateMachine as _;
        let mint = mint(height);
        let receipts = machine.apply_block(height, &[bytes::Bytes::from(mint.encode())]);
        assert_eq!(receipts[0].rejection, None);
        machine.persist().await.unwrap();
        mint.txid().0
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_request_reads_the_store_at_first_after_a_lag_or_a_recheck_only() {
        let (w, mut out, mut machine) = witness_and_machine(quick_patience());
        let k = keys();
        // Once this replica holds its own receipt, a request for a transaction not submitted
        // here asks its peers at once: that request shows the wait for own execution ended.
        let wait = |txid: [u8; 32]| gather_in_background(&w, txid, None);

        // Already executed before the request (or before a restart): found in the store.
        let old = executed_behind_the_signer(&mut machine, 1).await;
        let request = wait(old);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(asked(&mut out), "own receipt read from the store at once");
        request.abort();

        // Executed while the request waits, with no signer: a peer's receipt wakes the
        // request, which looks in the cache only...
        let next = mint(2).txid().0;
        let request = wait(next);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(executed_behind_the_signer(&mut machine, 2).await, next);
        receipt_from(&w, &k[1], next);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !asked(&mut out),
            "a peer's receipt does not send the request to the store"
        );
        // ...until the recheck.
        tokio::time::sleep(OWN_RECHECK).await;
        assert!(
            asked(&mut out),
            "the periodic recheck found it in the store"
        );
        request.abort();

        // Executed while the signer lagged: the lag wakes the request, which reads the store
        // without waiting for the recheck.
        let signer = tokio::spawn(w.clone().run_signer());
        tokio::task::yield_now().await;
        let request = wait(executed_behind_the_signer(&mut machine, 3).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            asked(&mut out),
            "found at once: it executed before the request"
        );
        request.abort();
        let fourth = mint(4).txid().0;
        let request = wait(fourth);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(executed_behind_the_signer(&mut machine, 4).await, fourth);
        assert!(!asked(&mut out));
        // More blocks than the event channel holds, sent before the signer runs: it lags.
        for i in 0..20u8 {
            w.events.send(Arc::new(block([100 + i; 32]))).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(w.lagged.load(Ordering::Relaxed), 1);
        assert!(asked(&mut out), "the lag sent the request to the store");
        request.abort();
        signer.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_checked_submission_skips_the_first_store_read_but_not_the_recheck() {
        let (w, mut out, mut machine) = witness_and_machine(quick_patience());
        // In the store, not in the cache: a read at first would find it at once.
        let txid = executed_behind_the_signer(&mut machine, 1).await;
        let mark = w.store_mark();
        let request = gather_in_background(&w, txid, Some(mark));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !asked(&mut out),
            "the submission's own store check counts as the first read"
        );
        tokio::time::sleep(OWN_RECHECK).await;
        assert!(
            asked(&mut out),
            "the periodic recheck still reads the store"
        );
        request.abort();

        // A mark taken before the signer lagged: the lag sends the request to the store.
        let txid = executed_behind_the_signer(&mut machine, 2).await;
        let mark = w.store_mark();
        w.lagged.fetch_add(1, Ordering::Relaxed);
        let request = gather_in_background(&w, txid, Some(mark));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            asked(&mut out),
            "a lag since the mark reads the store at once"
        );
        request.abort();
    }

    /// The receipts each recipient got in `out`'s messages, by txid's first byte.
    fn routed(out: &mut mpsc::Receiver<Outbound>) -> BTreeMap<String, Vec<u8>> {
        let mut got: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        while let Ok(o) = out.try_recv() {
            let Ok(Message::Receipts { receipts }) = decode_message(&o.bytes) else {
                continue;
            };
            let to = match o.to {
                To::All => "all".to_owned(),
                To::One(k) => hex::encode(&k[..2]),
            };
            got.entry(to)
                .or_default()
                .extend(receipts.iter().map(|r| r.statement.txid[0]));
        }
        got
    }

    #[tokio::test]
    async fn receipts_go_to_the_replicas_that_gossiped_their_transactions() {
        let (w, mut out) = witness(Patience::default());
        let k = keys();
        let (p1, p2) = (
            k[1].verifying_key().to_bytes(),
            k[2].verifying_key().to_bytes(),
        );
        // 1: gossiped by replica 1. 2: submitted here. 3: never heard of (seen only in the
        // block). 4: gossiped by replicas 1 and 2 (a Byzantine one raced the gateway). 5:
        // submitted here and also gossiped by replica 2 (its client tried both). 6: "gossiped"
        // by this replica itself and by a stranger: neither is a peer to send to.
        w.origins.gossiped([1; 32], p1);
        w.origins.local([2; 32]);
        w.origins.gossiped([4; 32], p1);
        w.origins.gossiped([4; 32], p2);
        w.origins.local([5; 32]);
        w.origins.gossiped([5; 32], p2);
        w.origins.gossiped([6; 32], w.me());
        w.origins.gossiped([6; 32], [0xee; 32]);
        let signer = tokio::spawn(w.clone().run_signer());
        tokio::task::yield_now().await;
        let block = ExecutedBlock {
            receipts: (1..=6u8)
                .map(|i| Receipt {
                    txid: NodeTxid([i; 32]),
                    rejection: None,
                    code: 0,
                })
                .collect(),
            ..block([0; 32])
        };
        w.events.send(Arc::new(block)).unwrap();
        // The signer caches its own receipts before sending: wait for the last one.
        for _ in 0..1_000 {
            if !w.cached_receipts(&Txid([6; 32])).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        signer.abort();
        let got = routed(&mut out);
        let expected = BTreeMap::from([
            (hex::encode(&p1[..2]), vec![1, 4]),
            (hex::encode(&p2[..2]), vec![4, 5]),
            ("all".to_owned(), vec![3, 6]),
        ]);
        assert_eq!(got, expected);
        // Every routed receipt is this replica's, proven against one signed root.
        for i in 1..=6u8 {
            let own = w.cached_receipts(&Txid([i; 32]));
            assert_eq!(own.len(), 1, "txid {i}");
            assert!(w.replicas().verify(&own[0]).is_ok());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gateway_asks_at_once_for_receipts_of_transactions_not_submitted_there() {
        let (w, mut out) = witness(quick_patience());
        // Submitted here: peers push their receipts, so within the patience nobody is asked.
        w.origins.local([7; 32]);
        executed_here(&w, [7; 32]);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let err = w.gather_receipts(&Txid([7; 32]), deadline, None).await;
        assert!(matches!(err, Err(BackendError::Timeout(_))), "{err:?}");
        assert!(!asked(&mut out));
        // Gossiped here by a peer (a client retry, a status query): asked at once.
        w.origins
            .gossiped([8; 32], keys()[1].verifying_key().to_bytes());
        executed_here(&w, [8; 32]);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(50);
        let err = w.gather_receipts(&Txid([8; 32]), deadline, None).await;
        assert!(matches!(err, Err(BackendError::Timeout(_))), "{err:?}");
        assert!(asked(&mut out));
    }
}
