//! Runs one replica as a process: tokio runtime, authenticated p2p with the genesis peer set,
//! consensus, execution and the optional dev ingress.

use crate::{
    config::{ConfigFileError, NodeConfig},
    consensus::{self, ConfigError, Networks, channels},
    executor::MemoryStore,
    ingress,
    ledger::{LedgerMachine, LedgerVerifier},
};
use commonware_cryptography::{ChaCha20Poly1305, Signer as _};
use commonware_p2p::{Address, AddressableManager as _, authenticated::lookup};
use commonware_runtime::{Quota, Runner as _, Spawner as _, Supervisor as _, tokio as runtime};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{NZU32, NZUsize, ordered::Map};
use std::time::Duration;
use tracing::{info, warn};

/// Executed blocks kept in the in-memory block store of a process.
const RETAINED_BLOCKS: usize = 100_000;

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
}

/// Runs the replica described by `config` until the process is stopped.
pub fn run(config: NodeConfig) -> Result<(), RunError> {
    let genesis = config.load_genesis()?;
    let consensus_cfg = config.consensus(&genesis)?;
    let peers = config.peer_set(&genesis)?;
    let machine =
        LedgerMachine::new(genesis.clone()).map_err(|e| ConfigFileError::Genesis(e.to_string()))?;
    let verifier = LedgerVerifier::new(std::sync::Arc::new(genesis.clone()));
    let signer = consensus_cfg.signer.clone();
    let n = peers.len();
    let peer_map: Map<_, Address> = peers
        .iter()
        .map(|(k, a)| (k.clone(), Address::Symmetric(*a)))
        .collect::<Vec<_>>()
        .try_into()
        .map_err(|e| RunError::Peers(format!("{e:?}")))?;
    let namespace = format!("coffer/{}/p2p", genesis.chain_id.as_str());
    let runner = runtime::Runner::new(
        runtime::Config::new().with_storage_directory(config.data_dir.clone()),
    );
    runner.start(|context| async move {
        let handshake = Cups::<_, ChaCha20Poly1305>::new(
            Sake {
                signer: signer.clone(),
                synchrony_bound: Duration::from_secs(5),
                max_handshake_age: Duration::from_secs(10),
                version: sake::Version::V1,
            },
            cups::Version::V1,
        );
        let mut p2p_cfg = lookup::Config::local(
            handshake,
            namespace.as_bytes(),
            config.p2p_listen,
            NZUsize!(n),
            consensus::max_message_size(n),
            NZUsize!(4_096),
        );
        // Loopback test clusters reconnect quickly after a peer restarts.
        p2p_cfg.peer_connection_cooldown = Duration::from_millis(500);
        // The replica set is static (the genesis), so only one peer set is ever tracked.
        p2p_cfg.tracked_peer_sets = NZUsize!(1);
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
        network.start();

        let started = consensus::start(
            context.child("consensus"),
            consensus_cfg,
            verifier,
            machine,
            MemoryStore::new(RETAINED_BLOCKS),
            oracle.clone(),
            oracle,
            networks,
        );
        let (handle, root) = match started {
            Ok(started) => started,
            Err(e) => return Err(RunError::Consensus(e)),
        };
        info!(public_key = %signer.public_key(), replicas = n, "replica started");
        let mut events = handle.subscribe();
        context.child("log").spawn(move |_| async move {
            while let Ok(block) = events.recv().await {
                info!(
                    height = block.height,
                    txs = block.receipts.len(),
                    commitment = hex::encode(block.commitment),
                    "executed"
                );
            }
        });
        if let Some(addr) = config.ingress_listen {
            let handle = handle.clone();
            tokio::spawn(async move {
                if let Err(e) = ingress::serve(addr, handle).await {
                    warn!(error = %e, "ingress stopped");
                }
            });
        }
        if let Err(e) = root.await {
            warn!(error = ?e, "replica stopped");
        }
        Ok(())
    })
}
