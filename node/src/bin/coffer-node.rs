//! `coffer-node`: run a Coffer replica, generate a local testnet, or run a whole devnet.
//!
//! ```text
//! coffer-node start (--home DIR | --config FILE) [--log-format text|json]
//! coffer-node testnet --replicas N --out DIR [--base-port P] [--redis URL] [--host H]
//! coffer-node devnet [--replicas 4] [--redis URL] [--dir DIR] [--base-port P]
//! ```

use coffer_node::{
    config::NodeConfig,
    node,
    testnet::{self, Testnet, TestnetOptions},
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const USAGE: &str = "usage:
  coffer-node start (--home DIR | --config FILE) [--log-format text|json]
  coffer-node testnet --replicas N --out DIR [--base-port P] [--redis URL] [--host H]
  coffer-node devnet [--replicas N] [--redis URL] [--dir DIR] [--base-port P] [--log-format text|json]

  start    runs one replica (DIR/config.toml with --home)
  testnet  writes keys, genesis, dev TLS, per-replica configs, cluster.json and issuer.key
  devnet   generates a testnet (temporary directory unless --dir) and runs its replicas
           as child processes until Ctrl-C";

/// Default first API port (replica K: 8443 + K; p2p: 8543 + K).
const DEFAULT_BASE_PORT: u16 = 8443;
/// How long devnet waits for its replicas to finalize blocks.
const DEVNET_READY_TIMEOUT: Duration = Duration::from_secs(60);

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

fn main() -> ExitCode {
    let mut all: Vec<String> = std::env::args().skip(1).collect();
    if all.is_empty() || all[0] == "--help" || all[0] == "-h" {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let command = all.remove(0);
    let args = Args { rest: all };
    let result = match command.as_str() {
        "start" => start(args),
        "testnet" => testnet_cmd(args),
        "devnet" => devnet(args),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer-node: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn start(mut args: Args) -> Result<(), String> {
    let home = args.take("--home")?;
    let config = args.take("--config")?;
    let log_format = args.take("--log-format")?;
    args.finish()?;
    let path = match (home, config) {
        (Some(home), None) => PathBuf::from(home).join("config.toml"),
        (None, Some(config)) => PathBuf::from(config),
        _ => return Err("start needs exactly one of --home or --config".into()),
    };
    init_logs(log_format)?;
    coffer_node::byzantine::init_from_env()?;
    let config = NodeConfig::load(&path).map_err(|e| e.to_string())?;
    node::run(config).map_err(|e| e.to_string())
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
        host: args.take("--host")?.unwrap_or_else(|| "127.0.0.1".into()),
    })
}

fn testnet_cmd(mut args: Args) -> Result<(), String> {
    let options = testnet_options(&mut args, None)?;
    args.finish()?;
    let net = testnet::generate(&options).map_err(|e| e.to_string())?;
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

/// The devnet's children; killed (and reaped) when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SIGKILL via std; replicas hold no state that needs a clean close (the store
            // is written per block, consensus journals are crash-safe).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn devnet(mut args: Args) -> Result<(), String> {
    let dir = args.take("--dir")?.map(PathBuf::from);
    let log_format = args.take("--log-format")?;
    let default_dir = std::env::temp_dir().join(format!("coffer-devnet-{}", std::process::id()));
    let mut options = testnet_options(&mut args, Some(dir.clone().unwrap_or(default_dir)))?;
    args.finish()?;
    if dir.is_none() {
        // A temporary directory is fresh by construction.
        let _ = std::fs::remove_dir_all(&options.out);
    }
    options.out = absolute(&options.out)?;
    let reuse = options.out.join("genesis.json").exists();
    let net = if reuse {
        existing(&options)?
    } else {
        testnet::generate(&options).map_err(|e| e.to_string())?
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let mut children = Children(Vec::new());
    for config in &net.configs {
        let home = config.parent().unwrap_or(Path::new("."));
        let log = std::fs::File::create(home.join("replica.log"))
            .map_err(|e| format!("cannot create log in {}: {e}", home.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&exe);
        cmd.arg("start").arg("--home").arg(home);
        if let Some(format) = &log_format {
            cmd.arg("--log-format").arg(format);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start replica: {e}"))?;
        children.0.push(child);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let ca = std::fs::read(net.dir.join("tls/ca.pem")).map_err(|e| e.to_string())?;
        let started = Instant::now();
        loop {
            if let Some(bad) = children
                .0
                .iter_mut()
                .position(|c| matches!(c.try_wait(), Ok(Some(_))))
            {
                return Err(format!(
                    "replica{bad} exited; see {}",
                    net.configs[bad]
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join("replica.log")
                        .display()
                ));
            }
            let mut heights = Vec::new();
            for url in &net.urls {
                heights.push(status_height(url, &ca).await.unwrap_or(0));
            }
            if heights.iter().all(|h| *h >= 1) {
                break;
            }
            if started.elapsed() > DEVNET_READY_TIMEOUT {
                return Err(format!(
                    "replicas did not finalize within {} s (heights {heights:?}); logs in {}",
                    DEVNET_READY_TIMEOUT.as_secs(),
                    net.dir.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        print_banner(&net, options.redis.as_deref());
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
        println!("\nstopping the devnet");
        Ok::<(), String>(())
    })?;
    drop(children);
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

fn print_banner(net: &Testnet, redis: Option<&str>) {
    let dir = net.dir.display();
    let cluster = net.dir.join("cluster.json");
    let cluster = cluster.display();
    println!();
    println!(
        "Coffer devnet {} is up: {} replicas finalizing blocks.",
        net.genesis.chain_id.as_str(),
        net.configs.len()
    );
    match redis {
        Some(url) => println!("Storage: Redis at {url} (persistent)."),
        None => println!(
            "Storage: IN MEMORY (ephemeral): everything is lost when the devnet stops. Use --redis URL to keep it."
        ),
    }
    println!("Directory: {dir} (replica logs in replicaK/replica.log)");
    for (i, url) in net.urls.iter().enumerate() {
        println!("  replica{i}: REST API {url}/v1");
    }
    println!("Wallet cluster config: {cluster}");
    println!("Issuer wallet (DEV ONLY): secret in {}/issuer.key", dir);
    println!();
    println!("Try it (in another terminal):");
    println!("  cargo build --release -p coffer-wallet");
    println!("  export PATH=$PWD/target/release:$PATH");
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
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("not an https url: {url}"))?;
    let (host, _) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("no port in {url}"))?;
    let tls = coffer_node::api::tls::client_config(ca_pem).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls));
    let name = coffer_node::api::tls::server_name(host).map_err(|e| e.to_string())?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(rest)
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let request =
            format!("GET /v1/status HTTP/1.1\r\nHost: {rest}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        // The status document is small; cap what we read anyway.
        let _ = (&mut stream).take(1 << 20).read_to_end(&mut response).await;
        let text = String::from_utf8_lossy(&response);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .ok_or("no HTTP body")?;
        let json: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        json.get("height")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| "no height in status".to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), work)
        .await
        .map_err(|_| "status timed out".to_string())?
}
