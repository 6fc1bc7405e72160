//! `coffer-node testnet`: everything a local cluster needs, written to a directory.
//!
//! ```text
//! DIR/genesis.json          chain id, the issuer's public key, the replica set
//! DIR/issuer.key            the issuer's secret key, hex (DEV ONLY)
//! DIR/cluster.json          the wallet's cluster config (URLs, replica keys, CA)
//! DIR/tls/ca.pem            dev CA that clients pin (ca.key next to it: DEV ONLY)
//! DIR/tls/replicaK.{pem,key}
//! DIR/replicaK/config.toml  one replica's config, every option commented
//! ```
//!
//! Ports: replica K serves its REST API on `base_port + K` and p2p on `base_port + 100 + K`.

use crate::api::tls::{generate_dev_pki, write_dev_pki};
use crate::config::{genesis_key, private_key_hex, public_key_hex};
use coffer_ledger::{ChainId, Genesis, Keypair, Limits, ReplicaInfo};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use rand::Rng as _;
use std::path::{Path, PathBuf};

/// Most replicas a generated testnet may have.
pub const MAX_REPLICAS: usize = 64;
/// Offset of the p2p ports from the API ports.
pub const P2P_PORT_OFFSET: u16 = 100;

/// First base port of the local port blocks ([`port_block`]).
pub const LOCAL_PORTS_FIRST: u16 = 10_000;
/// Local port blocks, [`P2P_PORT_OFFSET`] × 2 apart: bases 10000, 10200, ..., 19800. A
/// block's REST and p2p ports stay below 20000: under Linux's ephemeral range (from 32768),
/// and under the ports the Redis test harness takes (from 20000).
pub const LOCAL_PORT_BLOCKS: u16 = 50;

/// The base port of local port block `slot` (taken modulo [`LOCAL_PORT_BLOCKS`]).
pub fn port_block(slot: usize) -> u16 {
    // Below LOCAL_PORT_BLOCKS, so it fits.
    let slot = u16::try_from(slot % usize::from(LOCAL_PORT_BLOCKS)).unwrap_or(0);
    LOCAL_PORTS_FIRST + slot * 2 * P2P_PORT_OFFSET
}

/// The base of the first block, in the order `slots` names them, whose every port in
/// `ports(base)` can be bound on 127.0.0.1 now; `None` when each has a taken port. Another
/// process may still take one before the cluster binds it; this skips those already taken.
pub fn first_free_block(
    slots: impl IntoIterator<Item = usize>,
    ports: impl Fn(u16) -> Vec<u16>,
) -> Option<u16> {
    slots.into_iter().map(port_block).find(|base| {
        ports(*base)
            .into_iter()
            .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
    })
}

/// A base port for a loopback testnet of `replicas` (at most [`P2P_PORT_OFFSET`]) whose REST
/// and p2p ports can all be bound now, or `None` when every block has a taken port.
///
/// The ports lie below the kernel's ephemeral range. A port picked by binding port 0 lies inside
/// it, and between the pick and the replica's bind, any outgoing connection (a replica dialing
/// a peer, a client, a Redis connection) may take it as its source port. Every block tried
/// comes from one per-process sequence starting at a block derived from the process id, so
/// clusters started at once by parallel tests, or by concurrent test processes, do not pick
/// the same block before either binds it.
pub fn free_base_port(replicas: usize) -> Option<u16> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(usize::MAX);
    let n = u16::try_from(replicas)
        .ok()
        .filter(|n| *n <= P2P_PORT_OFFSET)?;
    let _ = NEXT.compare_exchange(
        usize::MAX,
        std::process::id() as usize % usize::from(LOCAL_PORT_BLOCKS),
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let slots = (0..LOCAL_PORT_BLOCKS).map(|_| NEXT.fetch_add(1, Ordering::SeqCst));
    first_free_block(slots, |base| {
        (0..n)
            .flat_map(|i| [base + i, base + P2P_PORT_OFFSET + i])
            .collect()
    })
}

/// Why a testnet could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// Bad options.
    #[error("invalid testnet options: {0}")]
    Options(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Key, genesis or certificate generation failed.
    #[error("generation failed: {0}")]
    Generate(String),
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct TestnetOptions {
    /// Number of replicas (n = 3f + 1 is the useful shape; any n >= 1 works).
    pub replicas: usize,
    /// Output directory (created; must not already hold a testnet).
    pub out: PathBuf,
    /// First API port; see the module docs.
    pub base_port: u16,
    /// Redis URL for every replica's store (each under its own prefix); memory when `None`.
    pub redis: Option<String>,
    /// The genesis limits (validated before anything is written).
    pub limits: Limits,
    /// Host the replicas listen on and clients connect to.
    pub host: String,
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct Testnet {
    /// The output directory.
    pub dir: PathBuf,
    /// The genesis.
    pub genesis: Genesis,
    /// Config file of each replica.
    pub configs: Vec<PathBuf>,
    /// REST URL of each replica.
    pub urls: Vec<String>,
    /// The issuer's secret, hex.
    pub issuer_secret_hex: String,
}

fn write(path: &Path, contents: &str) -> Result<(), TestnetError> {
    std::fs::write(path, contents).map_err(|source| TestnetError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file holding a secret (a private key): readable by its owner only.
fn write_secret(path: &Path, contents: &str) -> Result<(), TestnetError> {
    crate::api::tls::write_private(path, contents.as_bytes()).map_err(|source| TestnetError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Creates `path` (and its parents): a testnet holds private keys, so its directories are its
/// owner's only.
fn mkdir(path: &Path) -> Result<(), TestnetError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(|source| TestnetError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Generates a testnet as described in the module docs.
pub fn generate(options: &TestnetOptions) -> Result<Testnet, TestnetError> {
    let n = options.replicas;
    if n == 0 || n > MAX_REPLICAS {
        return Err(TestnetError::Options(format!(
            "replicas {n} not in 1..={MAX_REPLICAS}"
        )));
    }
    // n <= MAX_REPLICAS (64), so it fits every integer type used below.
    let n16 = u16::try_from(n).unwrap_or(u16::MAX);
    let last = u32::from(options.base_port) + u32::from(P2P_PORT_OFFSET) + u32::from(n16);
    if options.base_port < 1024 || last > u32::from(u16::MAX) {
        return Err(TestnetError::Options(format!(
            "base port {} leaves no room for {n} replicas",
            options.base_port
        )));
    }
    options
        .limits
        .validate()
        .map_err(|e| TestnetError::Options(e.to_string()))?;
    if options.out.join("genesis.json").exists() {
        return Err(TestnetError::Options(format!(
            "{} already holds a testnet: choose another --out, delete it, or run it with \
             `coffer-node devnet --dir {}`",
            options.out.display(),
            options.out.display()
        )));
    }
    mkdir(&options.out)?;
    let mut rng = rand::rng();
    let keys: Vec<PrivateKey> = (0..n)
        .map(|_| {
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            PrivateKey::decode(seed.to_vec()).map_err(|e| TestnetError::Generate(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = (0..n).map(|i| format!("replica{i}")).collect();
    let issuer = Keypair::generate();
    let mut suffix = [0u8; 4];
    rng.fill_bytes(&mut suffix);
    let chain_id = ChainId::new(format!("devnet-{}", hex::encode(suffix)))
        .map_err(|e| TestnetError::Generate(e.to_string()))?;
    let genesis = Genesis {
        chain_id: chain_id.clone(),
        issuers: vec![issuer.public_key()],
        replicas: keys
            .iter()
            .zip(&names)
            .map(|(k, name)| ReplicaInfo {
                name: name.clone(),
                public_key: genesis_key(&k.public_key()),
            })
            .collect(),
        limits: options.limits,
    };

    write(&options.out.join("genesis.json"), &genesis.to_json())?;
    write_secret(
        &options.out.join("issuer.key"),
        &format!("{}\n", hex::encode(issuer.secret_bytes())),
    )?;

    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let extra: Vec<&str> = if options.host == "127.0.0.1" || options.host == "localhost" {
        Vec::new()
    } else {
        vec![options.host.as_str()]
    };
    let pki =
        generate_dev_pki(&name_refs, &extra).map_err(|e| TestnetError::Generate(e.to_string()))?;
    let tls_dir = options.out.join("tls");
    write_dev_pki(&pki, &tls_dir).map_err(|source| TestnetError::Io {
        path: tls_dir.clone(),
        source,
    })?;

    let host = &options.host;
    let index = |i: usize| u16::try_from(i).unwrap_or(u16::MAX);
    let api_port = |i: usize| options.base_port + index(i);
    let p2p_port = |i: usize| options.base_port + P2P_PORT_OFFSET + index(i);
    let urls: Vec<String> = (0..n)
        .map(|i| format!("https://{host}:{}", api_port(i)))
        .collect();
    let mut peers = String::new();
    for (i, key) in keys.iter().enumerate() {
        peers.push_str(&format!(
            "\n[[peers]]                        # {}\npublic_key = \"{}\"\naddress = \"{host}:{}\"\n",
            names[i],
            public_key_hex(&key.public_key()),
            p2p_port(i)
        ));
    }
    let mut configs = Vec::with_capacity(n);
    for (i, key) in keys.iter().enumerate() {
        let dir = options.out.join(&names[i]);
        mkdir(&dir)?;
        let storage = match &options.redis {
            Some(url) => format!(
                "backend = \"redis\"                # \"memory\" (ephemeral) or \"redis\"\n\
                 mode = \"standalone\"               # or \"sentinel\" (master_name, sentinels) / \"cluster\" (seeds)\n\
                 url = \"{url}\"\n\
                 prefix = \"coffer:{chain}:{name}\"   # this replica's key namespace\n\
                 connect_timeout_ms = 1000         # per connection attempt\n\
                 response_timeout_ms = 5000        # per command or pipeline\n\
                 # tls = true                      # rediss:// (needs the redis-tls build feature)\n\
                 # tls_ca_file = \"redis-ca.pem\"   # CA of the Redis servers (default: system roots)\n\
                 # durability = {{ wait_replicas = 1, wait_timeout_ms = 2000 }}   # with Redis replicas\n\
                 # Retries inside one block write (connection loss, failover). Past max_elapsed_ms\n\
                 # the replica reports an unhealthy store and keeps retrying the block (capped\n\
                 # backoff) until Redis answers; nothing is acknowledged before it is persisted.\n\
                 retry = {{ base_delay_ms = 20, max_delay_ms = 1000, max_elapsed_ms = 30000 }}\n",
                chain = chain_id.as_str(),
                name = names[i],
            ),
            None => "backend = \"memory\"               # EPHEMERAL: state is lost when the replica stops.\n\
                      # For Redis: backend = \"redis\", mode = \"standalone\", url = \"redis://127.0.0.1:6379\",\n\
                      # prefix = \"coffer:<name>\" (or mode = \"sentinel\" / \"cluster\"; see docs/STORAGE.md).\n"
                .to_owned(),
        };
        let text = format!(
            "# Coffer replica {name} of chain {chain} (generated by `coffer-node testnet`; DEV ONLY).\n\
             # Run it with: coffer-node start --home {home}\n\
             # Environment overrides: COFFER_P2P_LISTEN, COFFER_API_LISTEN, COFFER_DATA_DIR;\n\
             # the store: COFFER_STORAGE_URL (a redis:// URL: standalone, or \"memory\"),\n\
             # COFFER_REDIS_SENTINELS (comma-separated) + COFFER_REDIS_MASTER_NAME (sentinel),\n\
             # COFFER_REDIS_CLUSTER_SEEDS (comma-separated; Redis Cluster), COFFER_STORAGE_PREFIX,\n\
             # COFFER_REDIS_WAIT_REPLICAS; the runtime: COFFER_RUNTIME (tokio or io_uring),\n\
             # COFFER_RUNTIME_WORKERS, COFFER_RUNTIME_API_WORKERS, COFFER_RUNTIME_BLOCKING_THREADS.\n\
             # Logs: COFFER_LOG (e.g. info,coffer_node=debug).\n\
             \n\
             # The ledger genesis (chain id, issuers, replica set); relative to this file.\n\
             genesis = \"../genesis.json\"\n\
             # Consensus journals and finalized-block archives; relative to this file.\n\
             data_dir = \"data\"\n\
             # This replica's ed25519 key (consensus votes, p2p identity, receipt signatures). SECRET.\n\
             private_key = \"{key}\"\n\
             # Where peers reach this replica (authenticated, encrypted p2p).\n\
             p2p_listen = \"{host}:{p2p}\"\n\
             \n\
             [api]                            # the REST gateway (HTTPS only)\n\
             listen = \"{host}:{api}\"\n\
             tls_cert = \"../tls/{name}.pem\"   # certificate chain (PEM), signed by ../tls/ca.pem\n\
             tls_key = \"../tls/{name}.key\"    # its private key (PEM). SECRET.\n\
             max_connections = 1024           # open connections at once\n\
             max_body_bytes = 131072          # largest request body\n\
             requests_per_second = 200        # per client address (burst: twice this)\n\
             request_timeout_ms = 10000       # reads (504 after)\n\
             submit_timeout_ms = 30000        # submissions waiting for their commit (504 after)\n\
             \n\
             [storage]                        # where executed blocks and state are persisted\n\
             {storage}\
             \n\
             [consensus]                      # simplex timeouts and block limits (defaults)\n\
             leader_timeout_ms = 1000         # wait for the leader's proposal before skipping the view\n\
             certification_timeout_ms = 2000  # wait for a notarization to certify\n\
             timeout_retry_ms = 5000          # re-broadcast a nullify vote this often while stuck\n\
             skip_timeout_ms = 10000          # skip an inactive leader's views after this long\n\
             fetch_timeout_ms = 1000          # wait for a peer to answer a fetch\n\
             max_block_txs = 500              # transactions per block\n\
             max_block_bytes = 1048576        # transaction bytes per block\n\
             mempool_max_txs = 50000          # pending transactions (503 busy beyond)\n\
             mempool_max_bytes = 67108864     # pending transaction bytes\n\
             idle_block_ms = 300              # an idle leader waits this long before an empty block\n\
             batch_wait_ms = 2                # a leader with few new transactions waits up to this long for more\n\
             # retain_blocks = 1000000        # Redis stores only: keep this many finalized blocks below\n\
             #                                # the executed height, prune older ones (unset: keep all)\n\
             \n\
             [health]                         # GET /v1/health and `coffer-node health --home DIR`\n\
             stall_after_ms = 10000           # unhealthy when no block executed for this long\n\
             slow_persist_ms = 5000           # unhealthy when one block persist takes this long\n\
             \n\
             [shutdown]                       # on SIGTERM / Ctrl-C\n\
             grace_ms = 10000                 # open API connections may finish their request\n\
             block_timeout_ms = 30000         # the block in flight may finish persisting\n\
             \n\
             # [runtime]                      # unset: commonware's tokio runtime, 2 workers\n\
             # engine = \"io_uring\"            # Linux 6.1+: consensus, p2p and storage on io_uring\n\
             # workers = 2                    # worker threads (io_uring: consensus and p2p)\n\
             # api_workers = 1                # io_uring: tokio threads for the REST API and Redis\n\
             # blocking_threads = 2           # tokio: threads for file I/O and host-name lookups\n\
             \n\
             # Every genesis replica (this one included) and its p2p address: IP:port or\n\
             # host:port (DNS names, e.g. docker compose services, are resolved at start).\n\
             {peers}",
            name = names[i],
            chain = chain_id.as_str(),
            home = dir.display(),
            key = private_key_hex(key),
            p2p = p2p_port(i),
            api = api_port(i),
        );
        // It holds the replica's private key.
        let path = dir.join("config.toml");
        write_secret(&path, &text)?;
        configs.push(path);
    }

    let cluster = serde_json::json!({
        "chain_id": chain_id.as_str(),
        "f": genesis.f(),
        "replicas": genesis.replicas.iter().zip(&urls).map(|(r, url)| serde_json::json!({
            "name": r.name,
            "url": url,
            "public_key": hex::encode(r.public_key.0),
        })).collect::<Vec<_>>(),
        "ca_cert": "tls/ca.pem",
        "max_inputs": genesis.limits.max_inputs,
    });
    let cluster_text = serde_json::to_string_pretty(&cluster)
        .map_err(|e| TestnetError::Generate(e.to_string()))?;
    write(&options.out.join("cluster.json"), &cluster_text)?;
    Ok(Testnet {
        dir: options.out.clone(),
        genesis,
        configs,
        urls,
        issuer_secret_hex: hex::encode(issuer.secret_bytes()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn base_ports_are_distinct_blocks_below_the_ephemeral_range_and_skip_taken_ports() {
        assert_eq!(
            free_base_port(usize::from(P2P_PORT_OFFSET) + 1),
            None,
            "more replicas than a block holds"
        );
        // Hold every base port handed out: each later call must move to another block, and
        // once every block is held there is none left.
        let mut held = Vec::new();
        let mut bases = Vec::new();
        while let Some(base) = free_base_port(4) {
            assert!(
                bases.len() < usize::from(LOCAL_PORT_BLOCKS),
                "more bases than blocks: {bases:?}"
            );
            assert!((LOCAL_PORTS_FIRST..20_000).contains(&base), "{base}");
            assert!(base + P2P_PORT_OFFSET + 3 < 20_000, "{base}");
            assert_eq!(
                (base - LOCAL_PORTS_FIRST) % (2 * P2P_PORT_OFFSET),
                0,
                "{base}"
            );
            assert!(!bases.contains(&base), "{base} handed out twice");
            held.push(std::net::TcpListener::bind(("127.0.0.1", base)).expect("it was free"));
            bases.push(base);
        }
        assert!(!bases.is_empty(), "no free block at all");
    }

    #[test]
    fn generated_configs_load_and_agree() {
        let dir = std::env::temp_dir().join(format!("coffer-testnet-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let net = generate(&TestnetOptions {
            replicas: 4,
            out: dir.clone(),
            base_port: 20_000,
            redis: Some("redis://127.0.0.1:6379".into()),
            limits: Limits {
                spent_horizon: 500,
                ..Limits::default()
            },
            host: "127.0.0.1".into(),
        })
        .unwrap();
        assert_eq!(net.configs.len(), 4);
        assert_eq!(net.genesis.limits.spent_horizon, 500);
        for (i, path) in net.configs.iter().enumerate() {
            let config = NodeConfig::load(path).unwrap();
            let genesis = config.load_genesis().unwrap();
            assert_eq!(genesis, net.genesis);
            assert_eq!(config.peer_set(&genesis).unwrap().len(), 4);
            assert_eq!(
                config.api.as_ref().unwrap().listen.port(),
                20_000 + i as u16
            );
            assert!(matches!(
                config.storage,
                crate::storage::StorageConfig::Redis(_)
            ));
            config.consensus(&genesis).unwrap();
        }
        // The commented [runtime] section is valid once uncommented, and says what it does.
        let text = std::fs::read_to_string(&net.configs[0]).unwrap();
        let uncommented: String = text
            .lines()
            .map(|l| {
                for key in [
                    "[runtime]",
                    "engine",
                    "workers",
                    "api_workers",
                    "blocking_threads",
                ] {
                    if let Some(rest) = l.strip_prefix(&format!("# {key}")) {
                        return format!("{key}{rest}\n");
                    }
                }
                format!("{l}\n")
            })
            .collect();
        assert_ne!(uncommented, text, "a commented [runtime] section");
        let runtime = NodeConfig::parse(&uncommented).unwrap().runtime;
        assert_eq!(runtime.engine, crate::runtime::Engine::IoUring);
        assert_eq!(
            (
                runtime.workers,
                runtime.api_workers,
                runtime.blocking_threads
            ),
            (2, 1, crate::runtime::DEFAULT_BLOCKING_THREADS)
        );
        assert_eq!(
            NodeConfig::parse(&text).unwrap().runtime,
            crate::runtime::RuntimeSection::default()
        );
        assert!(dir.join("tls/ca.pem").exists());
        // Private keys are their owner's only, whatever the umask: the directory, the issuer's
        // key, each replica's config (its private key) and the TLS keys.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode =
                |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(""), 0o700);
            for secret in [
                "issuer.key",
                "replica0/config.toml",
                "replica3/config.toml",
                "tls/ca.key",
                "tls/replica0.key",
            ] {
                assert_eq!(mode(secret), 0o600, "{secret}");
            }
        }
        assert!(
            generate(&TestnetOptions {
                replicas: 1,
                out: dir.clone(),
                base_port: 20_000,
                redis: None,
                limits: Limits::default(),
                host: "127.0.0.1".into(),
            })
            .is_err(),
            "refuses to overwrite a testnet"
        );
        let _ = std::fs::remove_dir_all(&dir);
        // Invalid limits are refused before anything is written.
        let refused = generate(&TestnetOptions {
            replicas: 1,
            out: dir.clone(),
            base_port: 20_000,
            redis: None,
            limits: Limits {
                spent_horizon: 0,
                ..Limits::default()
            },
            host: "127.0.0.1".into(),
        });
        assert!(
            matches!(refused, Err(TestnetError::Options(ref m)) if m.contains("spent_horizon")),
            "{refused:?}"
        );
        assert!(!dir.exists());
    }
}
