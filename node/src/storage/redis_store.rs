//! The Redis backend: standalone, sentinel and cluster, one pipeline per block.
//!
//! Write protocol (see `docs/STORAGE.md` for the reasoning):
//! - standalone and sentinel: one pipeline `MULTI, block entry, effects, meta, EXEC[, WAIT]`, so a
//!   block is applied entirely or not at all, whatever point a crash hits;
//! - cluster (no multi-slot transactions): (1) the block entry, which doubles as the journal,
//!   and `meta.pending = h`; (2) the effects, grouped per master, each group a pipeline; (3) the
//!   meta hash (height, commitment, supply), which is the commit point. Effects are idempotent,
//!   so recovery (in [`Store::load`]) re-applies a pending block from its journal.
//!
//! With `wait_replicas > 0` every pipeline ends with `WAIT`, on the connection that carried its
//! writes, so `persist` returns only after the replicas acknowledged everything it wrote.
//! Transient failures (connection loss, failover, a `WAIT` shortfall) are retried with bounded
//! backoff; each attempt first reads the applied height, so a block that landed before the error
//! is never applied twice.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, Cmd, Pipeline, RedisFuture, Value};

use super::codec::{self, Entry};
use super::keys::{self, Keys, UTXO_SHARDS};
use super::{
    BlockChange, DurabilityConfig, HistoryItem, MAX_SEQ, RedisConfig, RedisMode, RetryConfig,
    Snapshot, Storage, StorageError, Store, StoredBlock, Txid, check_page, validate_change,
};

/// The layout version written to `meta.version`; a store with another version is refused.
/// Version 4 added `{P}:rejected`: a version-3 store never recorded its rejections, so a
/// replica restored from one would remember fewer than a replica that executed the same blocks
/// (`docs/STORAGE.md`).
const LAYOUT_VERSION: &str = "4";
/// Effect pipelines in flight at once in cluster mode: bounds memory and open requests.
const CLUSTER_CONCURRENCY: usize = 32;
/// HSCAN batch size on load: large enough for few round trips, small enough not to stall Redis.
const SCAN_COUNT: usize = 1_000;

/// A test hook that simulates a crash in the middle of a block write.
///
/// `AfterCommands(n)` executes the first `n` commands of the block's plan (command 0 is the
/// block entry, the last is the meta update), then fails with [`StorageError::Failpoint`]
/// without doing the rest. Standalone and sentinel send them inside `MULTI` on a separate
/// connection and drop it before `EXEC`, which is what a crashed process does; cluster mode
/// executes them for real, as a crash between pipelines would leave them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailPoint {
    /// Stop after this many commands of the next block write.
    AfterCommands(usize),
}

/// Where a standalone or sentinel connection comes from.
enum Source {
    Url(Box<Client>),
    Sentinel(Box<SentinelClient>),
}

/// A non-cluster connection that is re-established (and, behind sentinel, re-discovered) after
/// any transient error.
struct Single {
    source: tokio::sync::Mutex<Source>,
    current: RwLock<Option<MultiplexedConnection>>,
    config: AsyncConnectionConfig,
}

enum Conn {
    Single(Box<Single>),
    Cluster(ClusterConnection),
}

/// One connection handle for one attempt.
#[derive(Clone)]
enum Handle {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// Hash fields to set: field → value.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// A keyed command of a block's write plan.
struct PlanCmd {
    key: String,
    cmd: Cmd,
}

/// A replica's state in Redis. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct RedisStore {
    conn: Conn,
    keys: Keys,
    durability: DurabilityConfig,
    retry: RetryConfig,
    /// Serialises writers: the protocol assumes one block write at a time.
    write_lock: tokio::sync::Mutex<()>,
    /// The applied height as last written or read; `None` when unknown (start, after an error).
    applied: Mutex<Option<Option<u64>>>,
    failpoint: Mutex<Option<FailPoint>>,
    /// Cluster mode: which master serves which slots, as last read.
    owners: Mutex<Option<Arc<SlotOwners>>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.conn {
            Conn::Single(_) => "single",
            Conn::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisStore")
            .field("mode", &mode)
            .field("keys", &self.keys)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl From<RedisStore> for Storage {
    fn from(s: RedisStore) -> Self {
        Storage::Redis(Box::new(s))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded values are plain data replaced whole; a poisoned lock still holds a valid one.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Root certificates for TLS to Redis, and a process-wide rustls crypto provider.
#[cfg(feature = "redis-tls")]
fn tls_certs(config: &RedisConfig) -> Result<redis::TlsCertificates, StorageError> {
    // Another component (the REST server) may have installed a provider already; either is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root_cert =
        match &config.tls_ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                StorageError::Config(format!("cannot read tls_ca_file {path:?}: {e}"))
            })?),
            None => None,
        };
    Ok(redis::TlsCertificates {
        client_tls: None,
        root_cert,
    })
}

fn plain_sentinel(master_name: &str, sentinels: &[String]) -> Result<SentinelClient, StorageError> {
    Ok(SentinelClient::build(
        sentinels.iter().map(String::as_str).collect::<Vec<_>>(),
        String::from(master_name),
        Some(SentinelNodeConnectionInfo::default()),
        SentinelServerType::Master,
    )?)
}

fn check_tls(tls: bool, urls: &[String]) -> Result<(), StorageError> {
    if tls && !cfg!(feature = "redis-tls") {
        return Err(StorageError::Config(
            "tls requested but coffer-node was built without the redis-tls feature".into(),
        ));
    }
    for u in urls {
        if tls != u.starts_with("rediss://") {
            return Err(StorageError::Config(format!(
                "url {u:?} does not match tls = {tls} (use rediss:// with tls, redis:// without)"
            )));
        }
    }
    Ok(())
}

impl Single {
    async fn get(&self) -> Result<MultiplexedConnection, StorageError> {
        if let Some(c) = self.read_current() {
            return Ok(c);
        }
        let mut source = self.source.lock().await;
        // Another task may have reconnected while this one waited for the source.
        if let Some(c) = self.read_current() {
            return Ok(c);
        }
        let conn = self.connect(&mut source).await?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    async fn connect(&self, source: &mut Source) -> Result<MultiplexedConnection, StorageError> {
        Ok(match source {
            Source::Url(client) => {
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await?
            }
            // Asks the sentinels for the current master and checks its ROLE before using it.
            Source::Sentinel(s) => s.get_async_connection_with_config(&self.config).await?,
        })
    }

    /// A connection of its own, not shared with other requests (for the crash failpoint).
    async fn dedicated(&self) -> Result<MultiplexedConnection, StorageError> {
        let mut source = self.source.lock().await;
        self.connect(&mut source).await
    }

    fn read_current(&self) -> Option<MultiplexedConnection> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn invalidate(&self) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Parsed `{P}:meta`.
#[derive(Debug, Default)]
struct Meta {
    height: Option<u64>,
    commitment: Vec<u8>,
    supply: u64,
    pending: Option<u64>,
}

impl RedisStore {
    /// Connects per `config`, retrying transient failures within the retry budget. Does not read
    /// or recover state: [`Store::load`] does.
    pub async fn connect(config: &RedisConfig) -> Result<Self, StorageError> {
        let keys = Keys::new(&config.prefix)?;
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let response_timeout = Duration::from_millis(config.response_timeout_ms);
        let async_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(response_timeout));
        let conn = match &config.mode {
            RedisMode::Standalone { url } => {
                check_tls(config.tls, std::slice::from_ref(url))?;
                #[cfg(feature = "redis-tls")]
                let client = if config.tls {
                    Client::build_with_tls(url.as_str(), tls_certs(config)?)?
                } else {
                    Client::open(url.as_str())?
                };
                #[cfg(not(feature = "redis-tls"))]
                let client = Client::open(url.as_str())?;
                Conn::Single(Box::new(Single {
                    source: tokio::sync::Mutex::new(Source::Url(Box::new(client))),
                    current: RwLock::new(None),
                    config: async_config,
                }))
            }
            RedisMode::Sentinel {
                master_name,
                sentinels,
            } => {
                check_tls(config.tls, sentinels)?;
                if sentinels.is_empty() {
                    return Err(StorageError::Config("no sentinel addresses".into()));
                }
                #[cfg(feature = "redis-tls")]
                let client = if config.tls {
                    use redis::IntoConnectionInfo;
                    let certs = tls_certs(config)?;
                    let addrs = sentinels
                        .iter()
                        .map(|u| Ok(u.as_str().into_connection_info()?.addr().clone()))
                        .collect::<Result<Vec<_>, redis::RedisError>>()?;
                    redis::sentinel::SentinelClientBuilder::new(
                        addrs,
                        master_name,
                        SentinelServerType::Master,
                    )?
                    .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                    .set_client_to_redis_certificates(certs.clone())
                    .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                    .set_client_to_sentinel_certificates(certs)
                    .build()?
                } else {
                    plain_sentinel(master_name, sentinels)?
                };
                #[cfg(not(feature = "redis-tls"))]
                let client = plain_sentinel(master_name, sentinels)?;
                Conn::Single(Box::new(Single {
                    source: tokio::sync::Mutex::new(Source::Sentinel(Box::new(client))),
                    current: RwLock::new(None),
                    config: async_config,
                }))
            }
            RedisMode::Cluster { seeds } => {
                check_tls(config.tls, seeds)?;
                if seeds.is_empty() {
                    return Err(StorageError::Config("no cluster seed nodes".into()));
                }
                let builder = redis::cluster::ClusterClientBuilder::new(seeds.clone())
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    // Redirects and reconnects inside one request; our own loop covers failover.
                    .retries(3);
                #[cfg(feature = "redis-tls")]
                let builder = if config.tls {
                    builder
                        .tls(redis::TlsMode::Secure)
                        .certs(tls_certs(config)?)
                } else {
                    builder
                };
                let client = builder.build()?;
                let retry = config.retry.clone();
                let conn = retrying(&retry, "cluster connect", || {
                    let client = client.clone();
                    async move { Ok(client.get_async_connection().await?) }
                })
                .await?;
                Conn::Cluster(conn)
            }
        };
        let store = Self {
            conn,
            keys,
            durability: config.durability.clone(),
            retry: config.retry.clone(),
            write_lock: tokio::sync::Mutex::new(()),
            applied: Mutex::new(None),
            failpoint: Mutex::new(None),
            owners: Mutex::new(None),
        };
        // Fail fast on an unreachable or misconfigured deployment, within the retry budget.
        store.read_meta().await?;
        Ok(store)
    }

    /// Arms (or with `None` disarms) the crash failpoint for the next block write. Test only.
    #[doc(hidden)]
    pub fn set_failpoint(&self, fp: Option<FailPoint>) {
        *lock(&self.failpoint) = fp;
    }

    fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    async fn handle(&self) -> Result<Handle, StorageError> {
        match &self.conn {
            Conn::Single(s) => Ok(Handle::Single(s.get().await?)),
            Conn::Cluster(c) => Ok(Handle::Cluster(c.clone())),
        }
    }

    /// Runs `op` with retries; on a transient error the single connection is dropped so the next
    /// attempt reconnects (and re-discovers the master behind sentinel).
    async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StorageError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StorageError>>,
    {
        retrying(&self.retry, what, || {
            let fut = op();
            async {
                let r = fut.await;
                if r.as_ref().is_err_and(StorageError::is_retryable) {
                    if let Conn::Single(s) = &self.conn {
                        s.invalidate();
                    }
                    *lock(&self.applied) = None;
                }
                r
            }
        })
        .await
    }

    async fn read_meta(&self) -> Result<Meta, StorageError> {
        let key = self.keys.meta();
        let raw: HashMap<String, Vec<u8>> = self
            .with_retry("read meta", || async {
                let mut h = self.handle().await?;
                Ok(redis::cmd("HGETALL").arg(&key).query_async(&mut h).await?)
            })
            .await?;
        parse_meta(&key, &raw)
    }

    async fn applied(&self) -> Result<Option<u64>, StorageError> {
        if let Some(a) = *lock(&self.applied) {
            return Ok(a);
        }
        let meta = self.read_meta().await?;
        *lock(&self.applied) = Some(meta.height);
        Ok(meta.height)
    }

    /// The commands that apply `change` at `height`: block entry first, meta last.
    fn plan(&self, height: u64, entry: Vec<u8>, change: &BlockChange) -> Vec<PlanCmd> {
        let k = &self.keys;
        let mut plan = Vec::new();
        let block_key = k.block(height);
        plan.push(PlanCmd {
            cmd: redis::cmd("SET").arg(&block_key).arg(entry).to_owned(),
            key: block_key,
        });
        // One HSET/HDEL/ZADD per key with all its fields: fewer commands, same effect.
        let mut hset: BTreeMap<String, Fields> = BTreeMap::new();
        for c in &change.created {
            let v = codec::encode_utxo_value(c.amount, &c.output);
            hset.entry(k.shard_outputs(keys::shard_of(&c.outpoint)))
                .or_default()
                .push((c.outpoint.clone(), v));
        }
        for t in &change.txs {
            hset.entry(k.shard_txs(keys::shard_of(&t.txid)))
                .or_default()
                .push((t.txid.to_vec(), t.record.clone()));
        }
        for (key, fields) in hset {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(&key);
            for (f, v) in fields {
                cmd.arg(f).arg(v);
            }
            plan.push(PlanCmd { key, cmd });
        }
        // Spends after creates: an output created and spent in one block must end up absent.
        let mut hdel: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for s in &change.spent {
            hdel.entry(k.shard_outputs(keys::shard_of(&s.outpoint)))
                .or_default()
                .push(s.outpoint.clone());
        }
        for (key, fields) in hdel {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(&key).arg(fields);
            plan.push(PlanCmd { key, cmd });
        }
        // This height's spends in one field of the spent hash; the field that falls out of the
        // horizon goes.
        let spends: Vec<&[u8]> = change
            .spent
            .iter()
            .map(|s| s.outpoint.as_slice())
            .chain(change.spent_in_block.iter().map(Vec::as_slice))
            .collect();
        if !spends.is_empty() {
            let packed = codec::encode_outpoints(&spends);
            let key = k.spent();
            plan.push(PlanCmd {
                cmd: redis::cmd("HSET")
                    .arg(&key)
                    .arg(height)
                    .arg(packed)
                    .to_owned(),
                key,
            });
        }
        if let Some(expired) = change.spent_from.checked_sub(1).filter(|h| *h > 0) {
            let key = k.spent();
            plan.push(PlanCmd {
                cmd: redis::cmd("HDEL").arg(&key).arg(expired).to_owned(),
                key,
            });
        }
        // Set members: the registry of addresses with history.
        let mut sadd: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut zadd: BTreeMap<String, Vec<(u64, Vec<u8>)>> = BTreeMap::new();
        for h in &change.history {
            zadd.entry(k.addr_history(&h.address))
                .or_default()
                .push((h.seq, history_member(h.seq, &h.entry)));
            // An address enters the registry with its first entry (sequence numbers start at
            // zero and are contiguous), so later entries need no write to it.
            if h.seq == 0 {
                sadd.entry(k.shard_addrs(keys::shard_of_address(&h.address)))
                    .or_default()
                    .push(h.address.as_bytes().to_vec());
            }
        }
        for (key, members) in zadd {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(&key);
            for (seq, m) in members {
                cmd.arg(seq).arg(m);
            }
            plan.push(PlanCmd { key, cmd });
        }
        for (key, mut members) in sadd {
            members.dedup();
            let mut cmd = redis::cmd("SADD");
            cmd.arg(&key).arg(members);
            plan.push(PlanCmd { key, cmd });
        }
        // The txid sets that are kept forever: one SADD each, when the block adds to them.
        for (key, txids) in [(k.mints(), &change.mints), (k.rejected(), &change.rejected)] {
            if !txids.is_empty() {
                let mut cmd = redis::cmd("SADD");
                cmd.arg(&key);
                for t in txids {
                    cmd.arg(t.as_slice());
                }
                plan.push(PlanCmd { key, cmd });
            }
        }
        let key = k.meta();
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key)
            .arg("height")
            .arg(height)
            .arg("commitment")
            .arg(change.commitment.as_slice())
            .arg("supply")
            .arg(change.supply)
            .arg("version")
            .arg(LAYOUT_VERSION);
        plan.push(PlanCmd { key, cmd });
        if self.is_cluster() {
            // The meta update is the commit point in cluster mode; drop the pending marker with it.
            let key = self.keys.meta();
            plan.push(PlanCmd {
                cmd: redis::cmd("HDEL").arg(&key).arg("pending").to_owned(),
                key,
            });
        }
        plan
    }

    fn wait_cmd(&self, p: &mut Pipeline) -> bool {
        if self.durability.wait_replicas == 0 {
            return false;
        }
        p.cmd("WAIT")
            .arg(self.durability.wait_replicas)
            .arg(self.durability.wait_timeout_ms);
        true
    }

    fn check_wait(&self, v: &Value) -> Result<(), StorageError> {
        let acked: i64 = redis::from_redis_value_ref(v).map_err(|e| StorageError::Corrupt {
            key: "WAIT reply".into(),
            reason: e.to_string(),
        })?;
        let acked = u64::try_from(acked).unwrap_or(0);
        if acked < u64::from(self.durability.wait_replicas) {
            return Err(StorageError::NotDurable {
                acked,
                wanted: self.durability.wait_replicas,
                timeout_ms: self.durability.wait_timeout_ms,
            });
        }
        Ok(())
    }

    /// Runs `cmds` (all in one slot in cluster mode) as one pipeline, then `WAIT` if configured.
    async fn run_group(&self, h: Handle, cmds: &[&PlanCmd]) -> Result<(), StorageError> {
        let mut p = redis::pipe();
        for c in cmds {
            p.add_command(c.cmd.clone());
        }
        self.run_pipe(h, p).await
    }

    /// Runs `p` with `WAIT` appended if configured, checking every reply.
    async fn run_pipe(&self, mut h: Handle, mut p: Pipeline) -> Result<(), StorageError> {
        let waits = self.wait_cmd(&mut p);
        let vals: Vec<Value> = p.query_async(&mut h).await?;
        check_no_errors(&vals)?;
        if waits {
            self.check_wait(vals.last().unwrap_or(&Value::Nil))?;
        }
        Ok(())
    }

    /// Applies a plan atomically (standalone, sentinel).
    async fn write_atomic(&self, plan: &[PlanCmd]) -> Result<(), StorageError> {
        let fp = *lock(&self.failpoint);
        if let (Some(FailPoint::AfterCommands(n)), Conn::Single(s)) = (fp, &self.conn) {
            *lock(&self.failpoint) = None;
            let mut c = s.dedicated().await?;
            let mut p = redis::pipe();
            p.cmd("MULTI");
            for pc in plan.iter().take(n) {
                p.add_command(pc.cmd.clone());
            }
            let _: Vec<Value> = p.query_async(&mut c).await?;
            // Dropping the only handle closes the socket; Redis discards the open transaction.
            drop(c);
            return Err(StorageError::Failpoint(n));
        }
        let mut h = self.handle().await?;
        let mut p = redis::pipe();
        p.cmd("MULTI");
        for pc in plan {
            p.add_command(pc.cmd.clone());
        }
        p.cmd("EXEC");
        let waits = self.wait_cmd(&mut p);
        let vals: Vec<Value> = p.query_async(&mut h).await?;
        check_no_errors(&vals)?;
        let exec_at = plan.len() + 1;
        match vals.get(exec_at) {
            Some(Value::Array(inner)) if inner.len() == plan.len() => check_no_errors(inner)?,
            other => {
                return Err(StorageError::Corrupt {
                    key: "EXEC reply".into(),
                    reason: format!("unexpected {other:?}"),
                });
            }
        }
        if waits {
            self.check_wait(vals.last().unwrap_or(&Value::Nil))?;
        }
        Ok(())
    }

    /// Applies a plan in the cluster protocol's phases. `journal_done` skips phase 1 (recovery).
    async fn write_cluster(
        &self,
        height: u64,
        plan: &[PlanCmd],
        journal_done: bool,
    ) -> Result<(), StorageError> {
        let Conn::Cluster(conn) = &self.conn else {
            unreachable!("write_cluster is only called in cluster mode");
        };
        let fp = lock(&self.failpoint).take();
        let (first, rest) = plan.split_first().ok_or_else(|| StorageError::Corrupt {
            key: "plan".into(),
            reason: "empty plan".into(),
        })?;
        // The last two commands are the commit (meta update and pending removal).
        let commit_at = rest.len().saturating_sub(2);
        let (effects, commit) = rest.split_at(commit_at);
        if let Some(FailPoint::AfterCommands(0)) = fp {
            return Err(StorageError::Failpoint(0));
        }
        if !journal_done {
            // Phase 1: the journal and the marker that tells recovery where to look.
            let meta_key = self.keys.meta();
            let pending = PlanCmd {
                cmd: redis::cmd("HSET")
                    .arg(&meta_key)
                    .arg("pending")
                    .arg(height)
                    .to_owned(),
                key: meta_key,
            };
            let (a, b) = futures_util::future::join(
                self.run_group(Handle::Cluster(conn.clone()), &[first]),
                self.run_group(Handle::Cluster(conn.clone()), &[&pending]),
            )
            .await;
            a?;
            b?;
        }
        if let Some(FailPoint::AfterCommands(n)) = fp {
            // As a crash between pipelines would: some effects in, no commit.
            let mut h = conn.clone();
            for pc in rest.iter().take(n - 1) {
                let _: Value = pc.cmd.query_async(&mut h).await?;
            }
            return Err(StorageError::Failpoint(n));
        }
        // Phase 2: effects, one pipeline (and one WAIT) per master: a pipeline that is not a
        // transaction may mix slots as long as one node serves them all. If the topology moved
        // since the slot map was read, commands come back MOVED, and the retry re-reads it.
        let owners = self.slot_owners(conn).await?;
        let mut groups: HashMap<&str, (u16, Pipeline)> = HashMap::new();
        for pc in effects {
            let slot = key_slot(pc.key.as_bytes());
            let owner = owners.owner(slot).ok_or_else(|| {
                *lock(&self.owners) = None;
                StorageError::Redis(redis::RedisError::from((
                    redis::ErrorKind::ClusterConnectionNotFound,
                    "no master known for slot",
                    slot.to_string(),
                )))
            })?;
            groups
                .entry(owner)
                .or_insert_with(|| (slot, redis::pipe()))
                .1
                .add_command(pc.cmd.clone());
        }
        let written = stream::iter(groups.into_values())
            .map(|(slot, mut p)| {
                let mut c = conn.clone();
                async move {
                    let waits = self.wait_cmd(&mut p);
                    let n = p.len();
                    let route =
                        SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                    let vals = c.route_pipeline(p, 0, n, route).await?;
                    check_no_errors(&vals)?;
                    if waits {
                        self.check_wait(vals.last().unwrap_or(&Value::Nil))?;
                    }
                    Ok::<(), StorageError>(())
                }
            })
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await;
        if written.is_err() {
            *lock(&self.owners) = None;
        }
        written?;
        // Phase 3: commit.
        let commit: Vec<&PlanCmd> = commit.iter().collect();
        self.run_group(Handle::Cluster(conn.clone()), &commit).await
    }

    /// The cluster's slot → master map, from `CLUSTER SLOTS`, cached until a write fails.
    async fn slot_owners(&self, conn: &ClusterConnection) -> Result<Arc<SlotOwners>, StorageError> {
        if let Some(o) = lock(&self.owners).clone() {
            return Ok(o);
        }
        let v: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn.clone())
            .await?;
        let owners = Arc::new(parse_cluster_slots(&v)?);
        *lock(&self.owners) = Some(owners.clone());
        Ok(owners)
    }

    /// A write attempt: re-reads the applied height (a previous attempt may have landed), then
    /// writes or confirms.
    async fn persist_attempt(
        &self,
        height: u64,
        block: &[u8],
        plan: &[PlanCmd],
    ) -> Result<(), StorageError> {
        match self.applied().await? {
            Some(applied) if height <= applied => {
                let stored = self.block(height).await?;
                if stored.is_none_or(|b| b.block != block) {
                    return Err(StorageError::Conflict { height });
                }
                // The earlier attempt's WAIT may not have finished; re-touching the meta hash on
                // this connection and waiting covers everything written before it, because
                // replication applies the stream in order.
                let meta = self.keys.meta();
                let touch = PlanCmd {
                    cmd: redis::cmd("HSET")
                        .arg(&meta)
                        .arg("version")
                        .arg(LAYOUT_VERSION)
                        .to_owned(),
                    key: meta,
                };
                return self.run_group(self.handle().await?, &[&touch]).await;
            }
            Some(applied) if height != applied + 1 => {
                return Err(StorageError::OutOfOrder {
                    expected: applied + 1,
                    got: height,
                });
            }
            _ => {}
        }
        if self.is_cluster() {
            self.write_cluster(height, plan, false).await?;
        } else {
            self.write_atomic(plan).await?;
        }
        *lock(&self.applied) = Some(Some(height));
        Ok(())
    }

    /// Finishes a cluster-mode block write a crash interrupted (no-op when none is pending).
    async fn recover(&self) -> Result<(), StorageError> {
        let meta = self.read_meta().await?;
        let Some(pending) = meta.pending else {
            return Ok(());
        };
        // The commit sets the height and clears the marker in one pipeline; if only the first
        // survived (a server crash between the two), the block is committed: clear the marker.
        let committed = meta.height.is_some_and(|h| pending <= h);
        if !committed
            && meta
                .height
                .is_some_and(|h| h.checked_add(1) != Some(pending))
        {
            return Err(StorageError::Corrupt {
                key: self.keys.meta(),
                reason: format!("pending {pending} does not follow height {:?}", meta.height),
            });
        }
        let key = self.keys.block(pending);
        let raw: Option<Vec<u8>> = self
            .with_retry("read pending block", || async {
                let mut h = self.handle().await?;
                Ok(redis::cmd("GET").arg(&key).query_async(&mut h).await?)
            })
            .await?;
        let Some(raw) = raw.filter(|_| !committed) else {
            // Crashed inside phase 1 before the journal landed (no effect was written), or the
            // block is committed already.
            let meta_key = self.keys.meta();
            return self
                .with_retry("clear pending", || async {
                    let mut h = self.handle().await?;
                    let _: Value = redis::cmd("HDEL")
                        .arg(&meta_key)
                        .arg("pending")
                        .query_async(&mut h)
                        .await?;
                    Ok(())
                })
                .await;
        };
        let Entry {
            height,
            block,
            change,
        } = codec::decode_entry(&key, &raw)?;
        // The journal came back from Redis: hold it to the rules a fresh change obeys (key-safe
        // addresses above all) before turning it into keys.
        validate_change(height, &block, &change)?;
        if height != pending {
            return Err(StorageError::Corrupt {
                key,
                reason: format!("entry height {height}, expected {pending}"),
            });
        }
        tracing::warn!(height, "re-applying block interrupted by a crash");
        let plan = self.plan(height, raw, &change);
        self.with_retry("recover block", || self.write_cluster(height, &plan, true))
            .await?;
        *lock(&self.applied) = Some(Some(height));
        Ok(())
    }

    /// A set of txids (mints, rejections), sorted; a missing key is the empty set.
    async fn txid_set(&self, key: &str, what: &str) -> Result<Vec<Txid>, StorageError> {
        let raw: Vec<Vec<u8>> = self
            .with_retry(&format!("read {what} txids"), || async {
                let mut h = self.handle().await?;
                Ok(redis::cmd("SMEMBERS").arg(key).query_async(&mut h).await?)
            })
            .await?;
        let mut txids = raw
            .iter()
            .map(|t| {
                <Txid>::try_from(t.as_slice()).map_err(|_| StorageError::Corrupt {
                    key: key.to_owned(),
                    reason: format!("{what} txid of {} bytes", t.len()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        txids.sort();
        Ok(txids)
    }

    async fn members(&self, key: &str) -> Result<Vec<Vec<u8>>, StorageError> {
        self.scan("SSCAN", "scan set", key).await
    }

    /// Every element of a set (`SSCAN`) or field-value pair of a hash (`HSCAN`), a page at a
    /// time, retried as a whole.
    async fn scan<T>(&self, command: &str, what: &str, key: &str) -> Result<Vec<T>, StorageError>
    where
        Vec<T>: redis::FromRedisValue,
    {
        self.with_retry(what, || async {
            let mut h = self.handle().await?;
            let mut out = Vec::new();
            let mut cursor: u64 = 0;
            loop {
                let (next, items): (u64, Vec<T>) = redis::cmd(command)
                    .arg(key)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut h)
                    .await?;
                out.extend(items);
                if next == 0 {
                    return Ok(out);
                }
                cursor = next;
            }
        })
        .await
    }

    /// The number of history entries of each of `addresses`, several addresses in flight at
    /// once: one round trip each (`ZCARD` and the first and last members), not the entries.
    /// A history whose first and last sequence numbers do not span its size is corrupt.
    async fn history_lengths(
        &self,
        addresses: Vec<Vec<u8>>,
    ) -> Result<Vec<(String, u64)>, StorageError> {
        stream::iter(addresses)
            .map(|a| async move {
                let address = String::from_utf8(a).map_err(|e| StorageError::Corrupt {
                    key: "address registry".into(),
                    reason: format!("address not utf-8: {:?}", e.as_bytes()),
                })?;
                keys::check_address(&address)?;
                let key = self.keys.addr_history(&address);
                let (len, first, last): (u64, Vec<Vec<u8>>, Vec<Vec<u8>>) = self
                    .with_retry("count history", || async {
                        let mut h = self.handle().await?;
                        Ok(redis::pipe()
                            .cmd("ZCARD")
                            .arg(&key)
                            .cmd("ZRANGE")
                            .arg(&key)
                            .arg(0)
                            .arg(0)
                            .cmd("ZRANGE")
                            .arg(&key)
                            .arg(-1)
                            .arg(-1)
                            .query_async(&mut h)
                            .await?)
                    })
                    .await?;
                let seq = |m: Option<&Vec<u8>>| {
                    m.map(|m| decode_history_member(&key, &address, m).map(|i| i.seq))
                        .transpose()
                };
                let span = (seq(first.first())?, seq(last.first())?);
                if span != (Some(0), len.checked_sub(1)) {
                    return Err(StorageError::Corrupt {
                        key: key.clone(),
                        reason: format!("{len} entries span sequence numbers {span:?}"),
                    });
                }
                Ok((address, len))
            })
            .buffer_unordered(CLUSTER_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await
    }

    async fn scan_hash(&self, key: &str) -> Result<Fields, StorageError> {
        self.scan("HSCAN", "scan", key).await
    }
}

/// Slot ranges and the master serving each (`host:port`).
#[derive(Debug)]
struct SlotOwners(Vec<(u16, u16, String)>);

impl SlotOwners {
    fn owner(&self, slot: u16) -> Option<&str> {
        self.0
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|(_, _, node)| node.as_str())
    }
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn parse_cluster_slots(v: &Value) -> Result<SlotOwners, StorageError> {
    let bad = |why: &str| StorageError::Corrupt {
        key: "CLUSTER SLOTS reply".into(),
        reason: why.to_owned(),
    };
    let Value::Array(ranges) = v else {
        return Err(bad("not an array"));
    };
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        let Value::Array(items) = r else {
            return Err(bad("range not an array"));
        };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            return Err(bad("range without start, end and master"));
        };
        let host: String = master
            .first()
            .and_then(|h| redis::from_redis_value_ref(h).ok())
            .ok_or_else(|| bad("master without host"))?;
        let Some(Value::Int(port)) = master.get(1) else {
            return Err(bad("master without port"));
        };
        let (Ok(lo), Ok(hi)) = (u16::try_from(*lo), u16::try_from(*hi)) else {
            return Err(bad("slot out of range"));
        };
        out.push((lo, hi, format!("{host}:{port}")));
    }
    Ok(SlotOwners(out))
}

/// Redis Cluster's key slot: CRC16/XMODEM of the hash tag (or the whole key) mod 16384.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|b| *b == b'}')
                .filter(|close| *close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for b in tagged {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16_384
}

/// A history member: `seq | entry`, the seq as an LEB128 varint. The score is the seq too; the
/// member carries it exactly (a score is an f64) and keeps members of distinct entries distinct
/// (the varint is prefix-free). With the ledger's 61-byte entries a member stays within 64 bytes
/// while seq < 2^21, which lets Redis keep a small history as a listpack (its default
/// `zset-max-listpack-value` is 64) instead of a skiplist: cheaper to add to, and smaller.
fn history_member(seq: u64, entry: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(3 + entry.len());
    let mut v = seq;
    loop {
        // The low seven bits, so the cast cannot truncate.
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            m.push(byte);
            break;
        }
        m.push(byte | 0x80);
    }
    m.extend_from_slice(entry);
    m
}

fn decode_history_member(key: &str, address: &str, m: &[u8]) -> Result<HistoryItem, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let mut seq: u64 = 0;
    // Below MAX_SEQ = 2^53 a varint takes at most 8 bytes (56 bits).
    for (i, byte) in m.iter().enumerate().take(8) {
        seq |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && *byte == 0 {
                return Err(corrupt(format!(
                    "history member seq not minimal: {:?}",
                    &m[..=i]
                )));
            }
            if seq >= MAX_SEQ {
                return Err(corrupt(format!("history member seq {seq} above 2^53")));
            }
            return Ok(HistoryItem {
                address: address.to_owned(),
                seq,
                entry: m[i + 1..].to_vec(),
            });
        }
    }
    Err(corrupt(format!(
        "history member of {} bytes without a seq",
        m.len()
    )))
}

fn check_no_errors(vals: &[Value]) -> Result<(), StorageError> {
    for v in vals {
        if let Value::ServerError(e) = v {
            return Err(StorageError::Redis(redis::RedisError::from(e.clone())));
        }
    }
    Ok(())
}

fn parse_meta(key: &str, raw: &HashMap<String, Vec<u8>>) -> Result<Meta, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let num = |field: &str| -> Result<Option<u64>, StorageError> {
        raw.get(field)
            .map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| corrupt(format!("field {field} is not a u64: {v:?}")))
            })
            .transpose()
    };
    let mut meta = Meta {
        height: num("height")?,
        supply: num("supply")?.unwrap_or(0),
        pending: num("pending")?,
        ..Meta::default()
    };
    if let Some(v) = raw.get("version")
        && v.as_slice() != LAYOUT_VERSION.as_bytes()
    {
        return Err(corrupt(format!(
            "layout version {:?}, this build reads {LAYOUT_VERSION}",
            String::from_utf8_lossy(v)
        )));
    }
    if meta.height.is_some() {
        meta.commitment = raw
            .get("commitment")
            .ok_or_else(|| corrupt("height without commitment".into()))?
            .clone();
    }
    Ok(meta)
}

/// Bounded exponential backoff around `op` for transient errors.
async fn retrying<T, F, Fut>(cfg: &RetryConfig, what: &str, mut op: F) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StorageError>>,
{
    let start = Instant::now();
    let max_elapsed = Duration::from_millis(cfg.max_elapsed_ms);
    let max_delay = Duration::from_millis(cfg.max_delay_ms.max(1));
    let mut delay = Duration::from_millis(cfg.base_delay_ms.max(1));
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() => {
                let elapsed = start.elapsed();
                if elapsed + delay > max_elapsed {
                    return Err(StorageError::Unavailable {
                        attempts,
                        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                        last: Box::new(e),
                    });
                }
                tracing::warn!(what, attempts, error = %e, "transient redis failure, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(max_delay);
            }
            Err(e) => return Err(e),
        }
    }
}

impl Store for RedisStore {
    async fn load(&self) -> Result<Option<Snapshot>, StorageError> {
        self.recover().await?;
        let meta = self.read_meta().await?;
        let Some(height) = meta.height else {
            return Ok(None);
        };
        *lock(&self.applied) = Some(Some(height));
        let mut utxos = Vec::new();
        for shard in 0..UTXO_SHARDS {
            let key = self.keys.shard_outputs(shard);
            for (outpoint, v) in self.scan_hash(&key).await? {
                let (_, output) = codec::decode_utxo_value(&key, &v)?;
                utxos.push((outpoint, output));
            }
        }
        utxos.sort();
        let key = self.keys.spent();
        let mut spent = Vec::new();
        for (field, ops) in self.scan_hash(&key).await? {
            let height = std::str::from_utf8(&field)
                .ok()
                .and_then(|f| f.parse::<u64>().ok())
                .ok_or_else(|| StorageError::Corrupt {
                    key: key.clone(),
                    reason: format!("field {field:?} is not a height"),
                })?;
            spent.extend(
                codec::decode_outpoints(&key, &ops)?
                    .into_iter()
                    .map(|op| (height, op)),
            );
        }
        let mut history_lengths = Vec::new();
        for shard in 0..UTXO_SHARDS {
            let addrs = self.members(&self.keys.shard_addrs(shard)).await?;
            history_lengths.extend(self.history_lengths(addrs).await?);
        }
        spent.sort();
        history_lengths.sort();
        let mints = self.txid_set(&self.keys.mints(), "mint").await?;
        let rejected = self.txid_set(&self.keys.rejected(), "rejected").await?;
        let tip = self
            .block(height)
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                key: self.keys.block(height),
                reason: "applied block missing".into(),
            })?;
        Ok(Some(Snapshot {
            height,
            commitment: meta.commitment,
            supply: meta.supply,
            utxos,
            spent,
            history_lengths,
            mints,
            rejected,
            tip,
        }))
    }

    async fn persist(
        &self,
        height: u64,
        block: &[u8],
        change: &BlockChange,
    ) -> Result<(), StorageError> {
        validate_change(height, block, change)?;
        let _writer = self.write_lock.lock().await;
        // Only a cluster write can stop between its effects (no transaction spans slots), so
        // only there does the entry carry the change as the journal that recovery finishes a
        // block from. Standalone and sentinel write a block in one MULTI/EXEC: their entry keeps
        // what reads need (the block, its record, its commitment), under a third of the bytes.
        let entry = if self.is_cluster() {
            codec::encode_entry(height, block, change)
        } else {
            codec::encode_entry(height, block, &change.without_journal())
        };
        let plan = self.plan(height, entry, change);
        self.with_retry("persist block", || {
            self.persist_attempt(height, block, &plan)
        })
        .await
    }

    async fn applied_height(&self) -> Result<Option<u64>, StorageError> {
        Ok(self.read_meta().await?.height)
    }

    async fn history(
        &self,
        address: &str,
        cursor: Option<u64>,
        limit: u32,
    ) -> Result<Vec<HistoryItem>, StorageError> {
        check_page(address, limit)?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.addr_history(address);
        let max = cursor.map_or_else(|| "+inf".to_owned(), |c| c.min(MAX_SEQ).to_string());
        let raw: Vec<Vec<u8>> = self
            .with_retry("read history", || async {
                let mut h = self.handle().await?;
                Ok(redis::cmd("ZREVRANGEBYSCORE")
                    .arg(&key)
                    .arg(&max)
                    .arg("-inf")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit)
                    .query_async(&mut h)
                    .await?)
            })
            .await?;
        raw.iter()
            .map(|m| decode_history_member(&key, address, m))
            .collect()
    }

    async fn block(&self, height: u64) -> Result<Option<StoredBlock>, StorageError> {
        let key = self.keys.block(height);
        let raw: Option<Vec<u8>> = self
            .with_retry("read block", || async {
                let mut h = self.handle().await?;
                Ok(redis::cmd("GET").arg(&key).query_async(&mut h).await?)
            })
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        let e = codec::decode_entry(&key, &raw)?;
        if e.height != height {
            return Err(StorageError::Corrupt {
                key,
                reason: format!("entry height {}", e.height),
            });
        }
        Ok(Some(StoredBlock {
            height,
            block: e.block,
            record: e.change.block_record,
        }))
    }

    async fn tx(&self, txid: &Txid) -> Result<Option<Vec<u8>>, StorageError> {
        let key = self.keys.shard_txs(keys::shard_of(txid));
        self.with_retry("read tx", || async {
            let mut h = self.handle().await?;
            Ok(redis::cmd("HGET")
                .arg(&key)
                .arg(txid.as_slice())
                .query_async(&mut h)
                .await?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn key_slot_matches_redis_cluster() {
        // The reference value from the Redis Cluster specification.
        // CRC16/XMODEM("123456789") = 0x31C3 = 12739, below 16384.
        assert_eq!(key_slot(b"123456789"), 12_739);
        for k in [
            "{coffer:r0}:meta",
            "coffer:r0:block:17",
            "{coffer:r0:a:coffer1xyz}:hist",
            "a{}b",
            "{}{x}",
            "{x",
            "",
        ] {
            assert_eq!(
                Slot::new(key_slot(k.as_bytes())),
                Some(Slot::for_key(k)),
                "{k}"
            );
        }
    }

    #[test]
    fn parses_cluster_slots() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let v = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node(7000),
                node(7003),
            ]),
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node(7001)]),
        ]);
        let o = parse_cluster_slots(&v).expect("parses");
        assert_eq!(o.owner(0), Some("127.0.0.1:7000"));
        assert_eq!(o.owner(5461), Some("127.0.0.1:7001"));
        assert_eq!(o.owner(16383), Some("127.0.0.1:7001"));
        assert!(parse_cluster_slots(&Value::Int(1)).is_err());
    }

    #[test]
    fn history_members_round_trip_and_stay_small() {
        let entry = [7u8; 61];
        for seq in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            MAX_SEQ - 1,
        ] {
            let m = history_member(seq, &entry);
            let item = decode_history_member("k", "a", &m).expect("decodes");
            assert_eq!(
                (item.seq, item.entry.as_slice()),
                (seq, &entry[..]),
                "{seq}"
            );
            if seq < 1 << 21 {
                assert!(m.len() <= 64, "seq {seq}: {} bytes", m.len());
            }
        }
        // Distinct seqs give distinct members even for equal entries.
        assert_ne!(history_member(1, &entry), history_member(1 << 7, &entry));
    }

    #[test]
    fn malformed_history_members_are_corrupt() {
        let corrupt = |m: &[u8]| {
            matches!(
                decode_history_member("k", "a", m),
                Err(StorageError::Corrupt { .. })
            )
        };
        assert!(corrupt(&[]), "empty");
        assert!(corrupt(&[0x80]), "seq cut short");
        assert!(corrupt(&[0x81, 0x00, 1]), "seq with a redundant zero byte");
        assert!(corrupt(&[0xff; 9]), "seq longer than 8 bytes");
        // 2^53 itself: eight bytes, the last holding bit 53 (bit 4 of the eighth group of 7).
        let too_big = history_member(MAX_SEQ, &[1]);
        assert!(corrupt(&too_big), "seq at 2^53");
    }
}
