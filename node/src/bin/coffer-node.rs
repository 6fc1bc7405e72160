//! `coffer-node`: run a Coffer replica, generate a local testnet, or run a whole devnet.
//!
//! ```text
//! coffer-node start (--home DIR | --config FILE) [--log-format text|json]
//! coffer-node health (--home DIR | --config FILE | --url URL) [--ca FILE] [--timeout-ms N]
//! coffer-node testnet --replicas N --out DIR [--base-port P] [--redis URL] [--host H]
//!     [--spent-horizon BLOCKS]
//! coffer-node devnet [--replicas 4] [--redis URL] [--dir DIR] [--base-port P]
//!     [--spent-horizon BLOCKS]
//! ```
//!
//! Exit codes: 0 success (or healthy), 1 failure (or unhealthy), 2 usage error.

use coffer_ledger::Limits;
use coffer_node::{
    config::NodeConfig,
    node,
    testnet::{self, Testnet, TestnetOptions},
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

const USAGE: &str = "usage:
  coffer-node start (--home DIR | --config FILE) [--log-format text|json]
  coffer-node health (--home DIR | --config FILE | --url URL) [--ca FILE] [--timeout-ms N]
  coffer-node testnet --replicas N --out DIR [--base-port P] [--redis URL] [--host H]
                     [--spent-horizon BLOCKS]
  coffer-node devnet [--replicas N] [--redis URL] [--dir DIR] [--base-port P] [--log-format text|json]
                     [--spent-horizon BLOCKS]

  start    runs one replica (DIR/config.toml with --home); SIGTERM or Ctrl-C stops it
           gracefully (API drained, block in flight persisted), exit 0
  health   checks one replica's GET /v1/health over TLS: exit 0 healthy, 1 unhealthy or
           unreachable. The CA is --ca, else $COFFER_HEALTH_CA, else ../tls/ca.pem next to
           the config (the testnet layout)
  testnet  writes keys, genesis, dev TLS, per-replica configs, cluster.json and issuer.key;
           --spent-horizon sets how many blocks the ledger remembers spent outputs
           (genesis limits.spent_horizon, default 10000)
  devnet   generates a testnet (temporary directory unless --dir) and runs its replicas
           as child processes until Ctrl-C or SIGTERM, then stops them gracefully";

/// Default first API port (replica K: 8443 + K; p2p: 8543 + K).
const DEFAULT_BASE_PORT: u16 = 8443;
/// How long devnet waits for its replicas to finalize blocks.
const DEVNET_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long devnet waits for its replicas to stop after asking them to (their API drain and
/// in-flight block bounds, with margin); stragglers are then killed.
const DEVNET_STOP_TIMEOUT: Duration = Duration::from_secs(45);

/// Why a command failed.
enum Failure {
    /// Bad arguments: the usage is printed, exit 2.
    Usage(String),
    /// The command ran and failed: exit 1.
    Run(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Usage(e)
    }
}

fn run_err(e: impl std::fmt::Display) -> Failure {
    Failure::Run(e.to_string())
}

struct Args {
    rest: Vec<String>,
}

impl Args {
    fn take(&mut self, flag: &str) -> Result<Option<String>, String> {
        let Some(i) = self.rest.iter().position(|a| a == flag) else {
            return Ok(None);
        };
        if i + 1 >= self.rest.len() {
            return Err(format!("{flag} needs a value"));
        }
        let value = self.rest.remove(i + 1);
        self.rest.remove(i);
        Ok(Some(value))
    }

    fn finish(self) -> Result<(), String> {
        match self.rest.first() {
            Some(extra) => Err(format!("unexpected argument {extra:?}")),
            None => Ok(()),
        }
    }
}

fn parse<T: std::str::FromStr>(flag: &str, value: Option<String>, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("{flag}: invalid value {v:?}")),
    }
}

fn init_logs(format: Option<String>) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,coffer_node=info"));
    match format.as_deref() {
        None | Some("text") => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            // Colour only on a terminal: logs redirected to files stay greppable.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        Some("json") => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        Some(other) => return Err(format!("--log-format: {other:?} is not text or json")),
    }
    Ok(())
}

/// mimalloc: under load, glibc malloc's free-list consolidation cost a replica 6-10% of its CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    if all.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    // Help asked for, anywhere (`coffer-node --help`, `coffer-node devnet -h`): the usage, on
    // stdout, and success.
    if all.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let command = all.remove(0);
    let args = Args { rest: all };
    let result = match command.as_str() {
        "start" => start(args).map(|()| ExitCode::SUCCESS),
        "health" => health(args),
        "testnet" => testnet_cmd(args).map(|()| ExitCode::SUCCESS),
        "devnet" => devnet(args).map(|()| ExitCode::SUCCESS),
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Usage(e)) => {
            eprintln!("coffer-node: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("coffer-node: {e}");
            ExitCode::FAILURE
        }
    }
}

fn start(mut args: Args) -> Result<(), Failure> {
    let home = args.take("--home")?;
    let config = args.take("--config")?;
    let log_format = args.take("--log-format")?;
    args.finish()?;
    let path = match (home, config) {
        (Some(home), None) => PathBuf::from(home).join("config.toml"),
        (None, Some(config)) => PathBuf::from(config),
        _ => {
            return Err(Failure::Usage(
                "start needs exactly one of --home or --config".into(),
            ));
        }
    };
    init_logs(log_format)?;
    coffer_node::byzantine::init_from_env().map_err(run_err)?;
    let config = NodeConfig::load(&path).map_err(run_err)?;
    node::run(config).map_err(run_err)
}

/// Where `health` connects and which CA it trusts.
fn health_target(args: &mut Args) -> Result<(String, PathBuf), Failure> {
    let home = args.take("--home")?;
    let config = args.take("--config")?;
    let url = args.take("--url")?;
    let ca = args
        .take("--ca")?
        .or_else(|| std::env::var("COFFER_HEALTH_CA").ok())
        .map(PathBuf::from);
    let path = match (home, config, url) {
        (Some(home), None, None) => PathBuf::from(home).join("config.toml"),
        (None, Some(config), None) => PathBuf::from(config),
        (None, None, Some(url)) => {
            let ca = ca.ok_or_else(|| Failure::Usage("--url needs --ca FILE".into()))?;
            return Ok((url, ca));
        }
        _ => {
            return Err(Failure::Usage(
                "health needs exactly one of --home, --config or --url".into(),
            ));
        }
    };
    let config = NodeConfig::load(&path).map_err(run_err)?;
    let api = config
        .api
        .as_ref()
        .ok_or_else(|| run_err(format!("{} has no [api] section", path.display())))?;
    // A replica listening on every interface is probed on loopback (its dev certificate
    // names 127.0.0.1 and ::1).
    let ip = match api.listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let url = format!("https://{ip}:{}", api.listen.port());
    let ca = ca.unwrap_or_else(|| config.resolve(Path::new("../tls/ca.pem")));
    Ok((url, ca))
}

fn health(mut args: Args) -> Result<ExitCode, Failure> {
    let (url, ca_path) = health_target(&mut args)?;
    let timeout_ms = parse("--timeout-ms", args.take("--timeout-ms")?, 5_000u64)?;
    args.finish()?;
    let ca = std::fs::read(&ca_path)
        .map_err(|e| run_err(format!("cannot read CA {}: {e}", ca_path.display())))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(run_err)?;
    let answer = runtime.block_on(coffer_node::health::probe(
        &url,
        "/v1/health",
        &ca,
        Duration::from_millis(timeout_ms),
    ));
    let (code, body) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            println!("UNHEALTHY {url}: api: unreachable: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let report: coffer_node::api::Health = match serde_json::from_str(&body) {
        Ok(report) => report,
        Err(e) => {
            println!("UNHEALTHY {url}: api: status {code}, not a health report ({e})");
            return Ok(ExitCode::FAILURE);
        }
    };
    let verdict = report.healthy && code == 200;
    println!(
        "{} {} ({url}) height {}",
        if verdict { "HEALTHY" } else { "UNHEALTHY" },
        report.replica,
        report.height
    );
    for check in &report.checks {
        println!(
            "  {:<10} {}  {}",
            check.name,
            if check.ok { "ok  " } else { "FAIL" },
            check.detail
        );
    }
    Ok(if verdict {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn testnet_options(
    args: &mut Args,
    default_out: Option<PathBuf>,
) -> Result<TestnetOptions, String> {
    let replicas = parse("--replicas", args.take("--replicas")?, 4usize)?;
    let out = match (args.take("--out")?, default_out) {
        (Some(out), _) => PathBuf::from(out),
        (None, Some(d)) => d,
        (None, None) => return Err("testnet needs --out DIR".into()),
    };
    Ok(TestnetOptions {
        replicas,
        out,
        base_port: parse("--base-port", args.take("--base-port")?, DEFAULT_BASE_PORT)?,
        redis: args.take("--redis")?,
        limits: Limits {
            spent_horizon: parse(
                "--spent-horizon",
                args.take("--spent-horizon")?,
                Limits::default().spent_horizon,
            )?,
            ..Limits::default()
        },
        host: args.take("--host")?.unwrap_or_else(|| "127.0.0.1".into()),
    })
}

fn testnet_cmd(mut args: Args) -> Result<(), Failure> {
    let options = testnet_options(&mut args, None)?;
    args.finish()?;
    let net = testnet::generate(&options).map_err(run_err)?;
    println!(
        "testnet {} with {} replicas written to {}",
        net.genesis.chain_id.as_str(),
        net.configs.len(),
        net.dir.display()
    );
    for (config, url) in net.configs.iter().zip(&net.urls) {
        println!(
            "  coffer-node start --home {}    # API {url}",
            config.parent().unwrap_or(Path::new(".")).display()
        );
    }
    println!("wallet config: {}", net.dir.join("cluster.json").display());
    println!(
        "issuer key (DEV ONLY): {}",
        net.dir.join("issuer.key").display()
    );
    Ok(())
}

/// The devnet's children; killed (and reaped) when dropped, so that an error path or a
/// panic leaves no replica behind.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // Only stragglers get here after a graceful stop: replicas hold no state that
            // needs a clean close (the store is written per block, journals are crash-safe).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Children {
    /// Asks every replica to stop (SIGTERM: API drained, block in flight persisted) and waits
    /// for them, at most `within`. Returns each one's exit code (`None`: killed by a signal or
    /// still running at the deadline, then killed on drop).
    fn stop(&mut self, within: Duration) -> Vec<Option<i32>> {
        use rustix::process::{Pid, Signal, kill_process};
        for child in &self.0 {
            // The child may already have exited (a terminal's Ctrl-C reaches the whole
            // process group); then there is nothing to signal.
            let _ = kill_process(Pid::from_child(child), Signal::TERM);
        }
        let deadline = Instant::now() + within;
        let mut codes: Vec<Option<Option<i32>>> = vec![None; self.0.len()];
        while codes.iter().any(Option::is_none) && Instant::now() < deadline {
            for (child, code) in self.0.iter_mut().zip(codes.iter_mut()) {
                if code.is_none()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    *code = Some(status.code());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        codes.into_iter().map(Option::flatten).collect()
    }
}

/// A new directory under the system's temporary directory, with a random name and readable by
/// its owner only: created here, so never one another user prepared (a name from the process
/// id could be).
fn fresh_temp_dir() -> Result<PathBuf, String> {
    use rand::Rng as _;
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let mut last = None;
    for _ in 0..8 {
        let dir =
            std::env::temp_dir().join(format!("coffer-devnet-{:016x}", rand::rng().next_u64()));
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!("cannot create a devnet directory: {last:?}"))
}

fn devnet(mut args: Args) -> Result<(), Failure> {
    let dir = args.take("--dir")?.map(PathBuf::from);
    let log_format = args.take("--log-format")?;
    let out = match &dir {
        Some(dir) => dir.clone(),
        None => fresh_temp_dir().map_err(run_err)?,
    };
    let mut options = testnet_options(&mut args, Some(out))?;
    args.finish()?;
    options.out = absolute(&options.out).map_err(run_err)?;
    let reuse = options.out.join("genesis.json").exists();
    let net = if reuse {
        let net = existing(&options).map_err(run_err)?;
        check_restart(&net, &options)?;
        net
    } else {
        testnet::generate(&options).map_err(run_err)?
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(run_err)?;
    // Before the children start: a Ctrl-C from here on stops them gracefully.
    let mut signals = {
        let _enter = runtime.enter();
        coffer_node::shutdown::Signals::install().map_err(run_err)?
    };
    let exe =
        std::env::current_exe().map_err(|e| run_err(format!("cannot find own executable: {e}")))?;
    let mut children = Children(Vec::new());
    for config in &net.configs {
        let home = config.parent().unwrap_or(Path::new("."));
        let log = std::fs::File::create(home.join("replica.log"))
            .map_err(|e| run_err(format!("cannot create log in {}: {e}", home.display())))?;
        let err = log.try_clone().map_err(run_err)?;
        let mut cmd = Command::new(&exe);
        cmd.arg("start").arg("--home").arg(home);
        // Own process group: a terminal's Ctrl-C reaches only the devnet, which then stops the
        // replicas with one SIGTERM each (a second signal would make them exit at once).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if let Some(format) = &log_format {
            cmd.arg("--log-format").arg(format);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| run_err(format!("cannot start replica: {e}")))?;
        children.0.push(child);
    }
    let log_of = |i: usize| {
        net.configs[i]
            .parent()
            .unwrap_or(Path::new("."))
            .join("replica.log")
    };
    let signal = runtime.block_on(async {
        let ca = std::fs::read(net.dir.join("tls/ca.pem")).map_err(run_err)?;
        let started = Instant::now();
        loop {
            if let Some(bad) = children
                .0
                .iter_mut()
                .position(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return Err(run_err(format!(
                    "replica{bad} exited; see {}",
                    log_of(bad).display()
                )));
            }
            let mut heights = Vec::new();
            for url in &net.urls {
                heights.push(status_height(url, &ca).await.unwrap_or(0));
            }
            if heights.iter().all(|h| *h >= 1) {
                break;
            }
            if started.elapsed() > DEVNET_READY_TIMEOUT {
                return Err(run_err(format!(
                    "replicas did not finalize within {} s (heights {heights:?}); logs in {}",
                    DEVNET_READY_TIMEOUT.as_secs(),
                    net.dir.display()
                )));
            }
            tokio::select! {
                signal = signals.recv() => return Ok(Some(signal)),
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        print_banner(&net, dir.is_some());
        Ok::<_, Failure>(Some(signals.recv().await))
    })?;
    if let Some(signal) = signal {
        println!(
            "\n{signal}: stopping the devnet (each replica drains its API and finishes its block)"
        );
    }
    let codes = children.stop(DEVNET_STOP_TIMEOUT);
    let unclean: Vec<String> = codes
        .iter()
        .enumerate()
        .filter(|(_, code)| **code != Some(0))
        .map(|(i, code)| match code {
            Some(code) => format!(
                "replica{i} exited with {code} (see {})",
                log_of(i).display()
            ),
            None => format!(
                "replica{i} did not stop cleanly (see {})",
                log_of(i).display()
            ),
        })
        .collect();
    drop(children);
    if !unclean.is_empty() {
        return Err(run_err(unclean.join("; ")));
    }
    println!("devnet stopped: every replica exited cleanly");
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    if path.is_absolute() {
        Ok(path.to_owned())
    } else {
        Ok(std::env::current_dir()
            .map_err(|e| e.to_string())?
            .join(path))
    }
}

/// A testnet generated earlier in `options.out` (devnet --dir run again).
fn existing(options: &TestnetOptions) -> Result<Testnet, String> {
    let mut configs = Vec::new();
    let mut urls = Vec::new();
    for i in 0.. {
        let path = options.out.join(format!("replica{i}/config.toml"));
        if !path.exists() {
            break;
        }
        let config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
        let api = config
            .api
            .as_ref()
            .ok_or_else(|| format!("{} has no [api]", path.display()))?;
        urls.push(format!("https://{}:{}", options.host, api.listen.port()));
        configs.push(path);
    }
    let genesis_text =
        std::fs::read_to_string(options.out.join("genesis.json")).map_err(|e| e.to_string())?;
    let genesis = coffer_ledger::Genesis::from_json(&genesis_text).map_err(|e| e.to_string())?;
    let issuer = std::fs::read_to_string(options.out.join("issuer.key")).unwrap_or_default();
    Ok(Testnet {
        dir: options.out.clone(),
        genesis,
        configs,
        urls,
        issuer_secret_hex: issuer.trim().to_owned(),
    })
}

/// Refuses options that a restart of the testnet `net` would ignore: it restarts with the
/// storage, ports, size and genesis it was created with (options left at their defaults are
/// not checked).
fn check_restart(net: &Testnet, options: &TestnetOptions) -> Result<(), Failure> {
    let port = net
        .urls
        .first()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok());
    let differs = [
        (
            "--spent-horizon",
            options.limits != Limits::default()
                && options.limits.spent_horizon != net.genesis.limits.spent_horizon,
        ),
        (
            "--redis",
            options.redis.is_some() && options.redis != storage_of(net),
        ),
        (
            "--base-port",
            options.base_port != DEFAULT_BASE_PORT && port != Some(options.base_port),
        ),
        (
            "--replicas",
            options.replicas != 4 && options.replicas != net.configs.len(),
        ),
    ];
    match differs.iter().find(|(_, differs)| *differs) {
        Some((flag, _)) => Err(format!(
            "{flag} differs from the testnet in {}, which restarts with the storage, ports, \
             size and genesis it was created with (use a new --dir for others)",
            options.out.display()
        )
        .into()),
        None => Ok(()),
    }
}

/// What the replicas' configs say about their store, for the banner.
fn storage_of(net: &Testnet) -> Option<String> {
    let config = NodeConfig::load(net.configs.first()?).ok()?;
    match config.storage {
        coffer_node::storage::StorageConfig::Redis(r) => Some(match r.mode {
            coffer_node::storage::RedisMode::Standalone { url } => url,
            other => format!("{other:?}"),
        }),
        _ => None,
    }
}

fn print_banner(net: &Testnet, kept: bool) {
    let dir = net.dir.display();
    let cluster = net.dir.join("cluster.json");
    let cluster = cluster.display();
    println!();
    println!(
        "Coffer devnet {} is up: {} replicas finalizing blocks.",
        net.genesis.chain_id.as_str(),
        net.configs.len()
    );
    match (storage_of(net), kept) {
        (Some(url), _) => println!("Storage: Redis at {url} (persistent)."),
        (None, true) => println!(
            "Storage: in memory: each start rebuilds the state from the block archive in the directory. Use --redis URL (on a new directory) for a Redis store."
        ),
        (None, false) => println!(
            "Storage: IN MEMORY (ephemeral): a new chain each start without --dir. Use --redis URL for a Redis store."
        ),
    }
    println!(
        "Directory: {dir} (replica logs in replicaK/replica.log; kept after the devnet stops)"
    );
    for (i, url) in net.urls.iter().enumerate() {
        println!("  replica{i}: REST API {url}/v1");
    }
    println!("Wallet cluster config: {cluster}");
    println!("Issuer wallet (DEV ONLY): secret in {}/issuer.key", dir);
    println!();
    println!("Try it (in another terminal):");
    println!("  cargo build --release -p coffer-wallet");
    println!("  export PATH=${{CARGO_TARGET_DIR:-$PWD/target}}/release:$PATH");
    println!("  export COFFER_KEYSTORE={dir}/keystore.json");
    println!("  coffer --cluster {cluster} keys import issuer < {dir}/issuer.key");
    println!("  coffer --cluster {cluster} keys new alice");
    println!("  coffer --cluster {cluster} keys new bob");
    println!("  coffer --cluster {cluster} mint --issuer issuer --to alice 1000");
    println!("  coffer --cluster {cluster} send --from alice --to bob 250");
    println!("  coffer --cluster {cluster} balance bob");
    println!();
    println!("Ctrl-C stops the devnet.");
}

/// The height a replica reports at `/v1/status`, over HTTPS pinned to the dev CA.
async fn status_height(url: &str, ca_pem: &[u8]) -> Result<u64, String> {
    let (_, body) =
        coffer_node::health::probe(url, "/v1/status", ca_pem, Duration::from_secs(3)).await?;
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    json.get("height")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| "no height in status".to_string())
}
