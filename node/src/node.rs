//! Runs one replica as a process: a runtime (commonware's tokio runtime, which also runs the
//! REST server and the Redis client; or commonware's io_uring runtime with a tokio runtime
//! beside it for those two, see [`runtime`](crate::runtime)), the store, authenticated p2p
//! with the genesis peer set, consensus, execution, the receipt/read
//! [`witness`](crate::witness) exchange and the REST gateway.

use crate::{
    api::{ApiServer, tls},
    backend::{Deadlines, NodeBackend, Operations},
    config::{ConfigFileError, NodeConfig, genesis_key, replica_key},
    consensus::{self, ConfigError, Networks, channels},
    instrument::Instrumented,
    ledger::{LedgerMachine, LedgerVerifier},
    p2p,
    runtime::{Engine, InTokio},
    shutdown::{self, BlockGate, Signals},
    storage::{Storage, StorageConfig, StorageError},
    watchdog,
    witness::{self, Patience, To, Witness, WitnessParts},
};
use coffer_ledger::LedgerState;
use commonware_codec::Encode as _;
use commonware_cryptography::Signer as _;
use commonware_p2p::{
    Address, AddressableManager as _, Receiver as _, Recipients, Sender as _, authenticated::lookup,
};
use commonware_runtime::{
    Clock, Metrics, Network, Quota, Resolver, Runner as _, Spawner, Storage as RuntimeStorage,
    iouring, tokio as runtime,
};
use commonware_utils::{NZU32, ordered::Map};
use std::{sync::Arc, time::Duration};
use tracing::{info, warn};

/// Errors that stop a replica process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration file is invalid.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// The consensus configuration is invalid.
    #[error(transparent)]
    Consensus(#[from] ConfigError),
    /// The peer set could not be built.
    #[error("invalid peer set: {0}")]
    Peers(String),
    /// The store could not be opened or the state restored from it.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The REST API could not start.
    #[error("api: {0}")]
    Api(String),
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Stopped by a signal before the block in flight was persisted.
    #[error("stopped before the block in flight was persisted (it is replayed at the next start)")]
    Unfinished,
}

/// Runs the replica described by `config` until the process is stopped.
pub fn run(config: NodeConfig) -> Result<(), RunError> {
    disable_huge_pages();
    let genesis = config.load_genesis()?;
    let consensus_cfg = config.consensus(&genesis)?;
    let peers = config.peer_set(&genesis)?;
    // The receipt key is the consensus key: commonware's ed25519 private key encoding is the
    // 32-byte seed ed25519-dalek takes (see `coffer_ledger::attest`).
    let seed: [u8; 32] =
        consensus_cfg.signer.encode()[..]
            .try_into()
            .map_err(|_| ConfigFileError::Key {
                field: "private_key".into(),
                reason: "not a 32-byte ed25519 seed".into(),
            })?;
    let receipt_key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let peer_map: Map<_, Address> = peers
        .iter()
        .map(|(k, a)| (k.clone(), Address::Symmetric(*a)))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|e| RunError::Peers(format!("{e:?}")))?;
    let tls_config = match &config.api {
        Some(api) => Some(
            tls::server_config_from_files(
                &config.resolve(&api.tls_cert),
                &config.resolve(&api.tls_key),
                false,
            )
            .map_err(|e| RunError::Api(e.to_string()))?,
        ),
        None => None,
    };
    let data_dir = config.resolve(&config.data_dir);
    let settings = config.runtime.clone();
    settings.validate().map_err(RunError::Runtime)?;
    info!(
        engine = settings.engine.name(),
        workers = settings.workers,
        blocking_threads = settings.blocking_threads,
        "runtime"
    );
    let parts = Parts {
        config,
        genesis,
        consensus_cfg,
        receipt_key,
        peer_map,
        tls_config,
    };
    match settings.engine {
        Engine::Tokio => {
            let runner = runtime::Runner::new(
                runtime::Config::new()
                    .with_worker_threads(settings.workers)
                    .with_max_blocking_threads(settings.blocking_threads)
                    .with_storage_directory(data_dir),
            );
            runner.start(|context| serve(context, parts))
        }
        Engine::IoUring => {
            crate::runtime::probe_io_uring().map_err(|e| {
                RunError::Runtime(format!(
                    "io_uring is not available here ({e}); set [runtime] engine = \"tokio\""
                ))
            })?;
            // The REST gateway and the Redis client run on tokio, beside the io_uring workers.
            let side = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(settings.api_workers)
                .thread_name("coffer-api")
                .enable_all()
                .build()
                .map_err(|e| RunError::Runtime(format!("tokio runtime: {e}")))?;
            let handle = side.handle().clone();
            let runner = iouring::Runner::new(
                iouring::Config::new()
                    .with_worker_threads(settings.workers)
                    // A replica shares its cores with its store, and in the benchmark with
                    // other replicas: an idle worker parks at once instead of spinning.
                    .with_idle_spinner(iouring::SpinnerConfig::disabled())
                    .with_storage_directory(data_dir),
            );
            let ended = runner.start(|context| InTokio::new(Some(handle), serve(context, parts)));
            // Tasks still on the side runtime (connections, the witness) end with it.
            side.shutdown_timeout(Duration::from_secs(1));
            ended
        }
    }
}

/// What [`run`] reads, resolves and checks before a runtime starts (files, keys, peer
/// addresses), for [`serve`].
struct Parts {
    config: NodeConfig,
    genesis: coffer_ledger::Genesis,
    consensus_cfg: consensus::ConsensusConfig,
    receipt_key: ed25519_dalek::SigningKey,
    peer_map: Map<commonware_cryptography::ed25519::PublicKey, Address>,
    tls_config: Option<Arc<rustls::ServerConfig>>,
}

/// The replica itself, on whichever runtime `context` belongs to (with a tokio runtime
/// entered for the REST gateway, the Redis client and the witness).
async fn serve<E>(context: E, parts: Parts) -> Result<(), RunError>
where
    E: Spawner
        + Clock
        + Metrics
        + RuntimeStorage
        + Network
        + Resolver
        + rand::CryptoRng
        + rand::Rng,
{
    let Parts {
        config,
        genesis,
        consensus_cfg,
        receipt_key,
        peer_map,
        tls_config,
    } = parts;
    let verifier = LedgerVerifier::new(Arc::new(genesis.clone()));
    let signer = consensus_cfg.signer.clone();
    let n = peer_map.len();
    let namespace = format!("coffer/{}/p2p", genesis.chain_id.as_str());
    // Installed first: a SIGTERM from here on is a graceful shutdown, not a kill.
    let signals = Signals::install().map_err(|e| RunError::Api(format!("signals: {e}")))?;
    let ops = Operations::default();
    let gate = Arc::new(BlockGate::new());
    let ephemeral = matches!(config.storage, StorageConfig::Memory);
    let store = Arc::new(Storage::open(&config.storage).await?);
    let machine = LedgerMachine::open(genesis.clone(), store.clone())
        .await?
        .with_signatures(verifier.signatures());
    let ledger = machine.view();
    {
        // What the ledger holds in memory: the sizes that drive a replica's memory.
        use crate::metrics::Kind;
        let sizes = [
            (
                "coffer_ledger_utxos",
                "Unspent outputs in this replica's ledger.",
                LedgerState::utxo_count as fn(&LedgerState) -> usize,
            ),
            (
                "coffer_ledger_spent_outputs",
                "Spent outputs the ledger remembers (those of the last spent_horizon blocks).",
                LedgerState::spent_count,
            ),
            (
                "coffer_ledger_addresses",
                "Addresses the ledger indexes.",
                LedgerState::address_count,
            ),
            (
                "coffer_ledger_rejected_txids",
                "Txids the ledger remembers as rejected with unknown_input (kept forever).",
                LedgerState::rejected_count,
            ),
        ];
        for (name, help, measure) in sizes {
            let view = ledger.clone();
            if let Err(e) = ops
                .metrics
                .register(name, help, Kind::Gauge, move || view.measure(measure))
            {
                warn!(metric = name, error = %e, "metric not registered");
            }
        }
    }
    {
        // How often a signer's key was already parsed: the key cache's hit rate.
        use crate::metrics::Kind;
        let keys = [
            (
                "coffer_signer_keys_parsed_total",
                "Signer keys parsed while decoding transactions (key cache misses).",
                (|s: &crate::sigcache::VerifiedSignatures| s.keys().parsed()) as fn(&_) -> u64,
            ),
            (
                "coffer_signer_keys_cached_total",
                "Signer keys found already parsed in the key cache.",
                |s| s.keys().hits(),
            ),
        ];
        for (name, help, read) in keys {
            let signatures = verifier.signatures();
            if let Err(e) = ops
                .metrics
                .register(name, help, Kind::Counter, move || read(&signatures))
            {
                warn!(metric = name, error = %e, "metric not registered");
            }
        }
    }
    info!(
        height = ledger.persisted_height(),
        store = if ephemeral {
            "memory (ephemeral)"
        } else {
            "redis"
        },
        "state restored"
    );

    let p2p_cfg = p2p::config(
        signer.clone(),
        namespace.as_bytes(),
        config.p2p_listen,
        n,
        consensus::max_message_size(n),
    );
    let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p_cfg);
    let _ = oracle.track(0, peer_map);
    // Per-peer message rate on each channel. Receivers preallocate one burst per peer, so
    // this also sizes their queues; 1000/s carries 256k gossiped transactions per second.
    let quota = Quota::per_second(NZU32!(1_000));
    let networks = Networks {
        votes: network.register(channels::VOTES, quota),
        certificates: network.register(channels::CERTIFICATES, quota),
        resolver: network.register(channels::RESOLVER, quota),
        blocks: network.register(channels::BLOCKS, quota),
        backfill: network.register(channels::BACKFILL, quota),
        mempool: network.register(channels::MEMPOOL, quota),
    };
    let (mut witness_sender, mut witness_receiver) = network.register(witness::CHANNEL, quota);
    network.start();

    {
        // The consensus engines' own metrics (views, nullifications, timeouts, latencies).
        // Every context encodes the runtime's one registry.
        let registry = context.child("metrics");
        let _ = ops.metrics.register_text(move || registry.encode());
    }
    consensus::check_archives(&context, &consensus_cfg).await?;
    let started = consensus::start(
        context.child("consensus"),
        consensus_cfg,
        verifier,
        Instrumented::new(machine, ops.metrics.clone(), gate.clone()),
        oracle.clone(),
        oracle,
        networks,
    );
    let (handle, mut root) = match started {
        Ok(started) => started,
        Err(e) => return Err(RunError::Consensus(e)),
    };
    info!(public_key = %signer.public_key(), replicas = n, "replica started");
    {
        use crate::metrics::Kind;
        let metrics = [
            (
                "coffer_consensus_view",
                "The consensus view this replica is in.",
                Kind::Gauge,
                (|s: &consensus::ConsensusStats| s.view) as fn(&_) -> u64,
            ),
            (
                "coffer_consensus_view_changes_total",
                "Views skipped by a nullification certificate (leader timeout or fault).",
                Kind::Counter,
                |s| s.nullifications,
            ),
            (
                "coffer_consensus_finalized_height",
                "Height of the highest finalized block this replica knows of.",
                Kind::Gauge,
                |s| s.finalized_height,
            ),
            (
                "coffer_consensus_blocks_executed_early_total",
                "Blocks executed on their finalization certificate, before marshal's \
                 delivery (this replica proposed or verified them).",
                Kind::Counter,
                |s| s.executed_early,
            ),
        ];
        for (name, help, kind, read) in metrics {
            let handle = handle.clone();
            if let Err(e) = ops
                .metrics
                .register(name, help, kind, move || read(&handle.stats()))
            {
                warn!(metric = name, error = %e, "metric not registered");
            }
        }
    }

    let (witness, mut outbound) = Witness::new(WitnessParts {
        chain_id: genesis.chain_id.clone(),
        key: receipt_key,
        replicas: genesis
            .replicas
            .iter()
            .map(|r| (r.name.clone(), r.public_key.0))
            .collect(),
        ledger,
        store: store.clone(),
        events: handle.event_sender(),
        patience: Patience::default(),
        origins: handle.origins(),
    })
    .map_err(RunError::Peers)?;
    tokio::spawn(witness.clone().run_signer());
    tokio::spawn(witness.clone().run_heartbeat());
    {
        let witness = witness.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    out = outbound.recv() => {
                        let Some(out) = out else { return };
                        let recipients = match out.to {
                            To::All => Recipients::All,
                            To::One(key) => match replica_key(&coffer_ledger::ReplicaKey(key)) {
                                Ok(k) => Recipients::One(k),
                                Err(_) => continue,
                            },
                        };
                        witness_sender.send(recipients, out.bytes, false);
                    }
                    message = witness_receiver.recv() => {
                        let Ok((peer, bytes)) = message else { return };
                        witness.on_message(genesis_key(&peer).0, bytes.as_ref());
                    }
                }
            }
        });
    }

    tokio::spawn(watchdog::watch(handle.clone(), witness.clone()));

    let mut events = handle.subscribe();
    let metrics = ops.metrics.clone();
    context.child("log").spawn(move |_| async move {
        loop {
            let block = match events.recv().await {
                Ok(block) => block,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(missed, "metrics and log fell behind executed blocks");
                    continue;
                }
                Err(_) => return,
            };
            metrics.on_executed(&block);
            if !block.receipts.is_empty() {
                info!(
                    height = block.height,
                    txs = block.receipts.len(),
                    commitment = %coffer_ledger::hash::Hex::new(&block.commitment),
                    "executed"
                );
            }
        }
    });
    let server = match (&config.api, tls_config) {
        (Some(api), Some(tls_config)) => {
            let api_config = api.api_config();
            let deadlines = Deadlines {
                // Answer before the gateway's own deadline turns the wait into a 504.
                submit: api_config
                    .submit_timeout
                    .saturating_sub(Duration::from_secs(2)),
                read: api_config
                    .request_timeout
                    .saturating_sub(Duration::from_secs(1)),
            };
            let backend = NodeBackend::new(
                Arc::new(genesis.clone()),
                handle.clone(),
                witness.clone(),
                store.clone(),
                deadlines,
            )
            .with_operations(ops.clone());
            let server = ApiServer::start(api.listen, tls_config, api_config, Arc::new(backend))
                .await
                .map_err(|e| RunError::Api(format!("listen {}: {e}", api.listen)))?;
            info!(listen = %server.local_addr(), "REST API listening (HTTPS)");
            Some(server)
        }
        _ => None,
    };
    let ended = shutdown::run_until_signal(
        signals,
        &mut root,
        server,
        &gate,
        &ops.stopping,
        &config.shutdown,
    )
    .await;
    match ended {
        shutdown::Ended::Stopped => {
            warn!("replica stopped");
            Ok(())
        }
        shutdown::Ended::Clean => Ok(()),
        shutdown::Ended::BlockUnfinished => Err(RunError::Unfinished),
    }
}

/// Turns transparent huge pages off for this process (Linux; elsewhere a no-op).
///
/// The consensus journals and archives allocate a fresh 1 MiB write buffer after every sync,
/// several times per view, and the allocator frees it again soon after. With huge pages each
/// such buffer faults in, and the kernel zeroes, a whole 2 MiB page: 5-7% of the CPU of a
/// four-replica benchmark went to `clear_page_erms` (`docs/EVALUATION.md`, session 12). With
/// 4 KiB pages only the few pages a view writes are touched. The flag is per process and
/// inherited by children; failing to set it only costs that CPU, so it is logged, not fatal.
fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        warn!(error = %e, "cannot disable transparent huge pages");
    }
}
