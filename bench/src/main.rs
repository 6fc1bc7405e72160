//! `coffer-bench`: measures verified transfers per second and their latency on a local Coffer
//! cluster it starts (or on a running one), and compares configurations. See
//! `docs/EVALUATION.md` for the method and the results.

use clap::{Args, Parser, Subcommand};
use coffer_bench::cluster::{Byzantine, ClusterSpec, LocalCluster, Runtime, Store};
use coffer_bench::report::{self, RunReport};
use coffer_bench::workload::{self, WorkloadSpec};
use coffer_bench::{configs, plot, sigcost};
use coffer_ledger::Keypair;
use coffer_wallet::ClusterConfig;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Extra warm-up with a silent replica: the clients' first requests to it time out once
/// (client submit timeout below) and consensus learns to skip its views (skip timeout 10 s).
const SILENT_EXTRA_WARMUP: Duration = Duration::from_secs(15);
/// Client deadline per replica for a submission. Shorter than the library default (35 s) so
/// that a silent replica costs each client one short wait, not the whole run.
const BENCH_SUBMIT_TIMEOUT_MS: u64 = 8_000;
/// Client deadline per replica for a read.
const BENCH_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a started cluster may take to finalize its first block.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Parser)]
#[command(
    name = "coffer-bench",
    version,
    about = "Throughput and latency of a Coffer cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one configuration.
    Run(RunArgs),
    /// Measure several configurations back to back; writes JSON, CSV, Markdown and SVG plots.
    Compare(CompareArgs),
    /// Print the BIP340 verification cost and the throughput limit it implies.
    VerifyCost {
        /// Replicas verifying every transfer.
        #[arg(long, default_value_t = 4)]
        replicas: usize,
    },
    /// Write a testnet whose replicas listen on the given hosts (for scripts/netns-3host.sh).
    TestnetHosts {
        /// Output directory (must not hold a testnet).
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated address of each replica, e.g. 10.77.0.1,10.77.0.1,10.77.0.2,10.77.0.2.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// First REST port (p2p ports are 100 above).
        #[arg(long, default_value_t = 27_000)]
        base_port: u16,
    },
    /// Run one replica (used by the benchmark's own clusters).
    #[command(hide = true)]
    Replica {
        /// The replica's directory (holding config.toml).
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Concurrent clients, each owning 100 wallets.
    #[arg(long, default_value_t = 32)]
    threads: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 180)]
    duration: u64,
    /// Unmeasured seconds before the window.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Output directory for results.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// First port of the local cluster (REST; p2p +100, Redis +150). Default: from the pid.
    #[arg(long)]
    base_port: Option<u16>,
    /// Directory for cluster files and logs (default: a fresh one under the system temp dir,
    /// removed after the run unless --keep).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the cluster's files and logs.
    #[arg(long)]
    keep: bool,
    /// Directory with scripts/redis-*.sh.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts"))]
    scripts: PathBuf,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Check every receipt signature of every transfer, as the `coffer` CLI does, instead of
    /// stopping at f+1 valid ones when all receipts agree
    #[arg(long)]
    audit: bool,
    /// Prune each replica's finalized-block archive to this many blocks (`[consensus]
    /// retain_blocks`; Redis stores only, at least 1024). Default: keep every block.
    #[arg(long)]
    retain_blocks: Option<u64>,
    /// Runtime of every replica (`[runtime] engine`).
    #[arg(long, value_enum, default_value_t = Runtime::Tokio)]
    runtime: Runtime,
    /// Worker threads per replica (`[runtime] workers`). Default: the replica's own, 2.
    #[arg(long)]
    workers: Option<usize>,
    /// With `--runtime io-uring`: tokio threads per replica for its REST gateway and Redis
    /// client (`[runtime] api_workers`). Default: the replica's own, 1.
    #[arg(long)]
    api_workers: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    /// Replicas (1 = f 0, 4 = f 1).
    #[arg(long, default_value_t = 4)]
    replicas: usize,
    /// Misbehaviour of the last replica.
    #[arg(long, value_enum, default_value_t = Byzantine::None)]
    byzantine: Byzantine,
    /// Storage mode of every replica.
    #[arg(long, value_enum, default_value_t = Store::Memory)]
    store: Store,
    /// Total offered transfers per second (open loop); closed loop without it.
    ///
    /// Each client starts its transfers on a fixed schedule, one in flight at a time, and
    /// latency counts from the scheduled start. The report's send lag shows how late they
    /// started: a lag near the latency means too few --threads for the rate.
    #[arg(long)]
    rate: Option<f64>,
    /// Name in the reports (default from the shape, e.g. n4-memory).
    #[arg(long)]
    name: Option<String>,
    /// Measure a running cluster described by this cluster.json instead of starting one.
    #[arg(long, requires = "issuer_key")]
    cluster: Option<PathBuf>,
    /// With --cluster: file holding the genesis issuer's secret key (hex).
    #[arg(long)]
    issuer_key: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct CompareArgs {
    /// Comma-separated configurations: n<N>[-forge|-silent][-memory|-standalone|-sentinel|-cluster][@half].
    #[arg(long, default_value = configs::DEFAULT)]
    configs: String,
    #[command(flatten)]
    common: Common,
}

/// mimalloc, as in `coffer-node`: the replicas this binary runs and its clients allocate per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Replica { home } = &cli.command {
        return match replica(home) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("replica: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("coffer-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => run_cmd(args).await,
            Command::Compare(args) => compare_cmd(args).await,
            Command::VerifyCost { replicas } => {
                let l = sigcost::limit(sigcost::measure_verify_us(), replicas);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&l).unwrap_or_else(|e| e.to_string())
                );
                Ok(())
            }
            Command::TestnetHosts {
                out,
                hosts,
                base_port,
            } => coffer_bench::cluster::generate_on_hosts(&out, &hosts, base_port)
                .map(|p| println!("{}", p.display()))
                .map_err(|e| e.to_string()),
            Command::Replica { .. } => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn replica(home: &Path) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .init();
    coffer_node::byzantine::init_from_env()?;
    exit_with_parent();
    let config = coffer_node::config::NodeConfig::load(&home.join("config.toml"))
        .map_err(|e| e.to_string())?;
    coffer_node::node::run(config).map_err(|e| e.to_string())
}

/// Ends this replica when the benchmark that started it is gone (killed without a chance to
/// stop its children): the replica is then re-parented, and its parent id changes.
fn exit_with_parent() {
    let parent = std::os::unix::process::parent_id();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(3);
            }
        }
    });
}

/// Until every replica of a running cluster answers and has finalized a block.
async fn wait_for_cluster(config: &ClusterConfig, timeout: Duration) -> Result<(), String> {
    let client = coffer_wallet::Client::new(config.clone()).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let reports = client.status().await;
        let waiting: Vec<String> = reports
            .iter()
            .filter(|r| r.status.as_ref().is_none_or(|s| s.height < 1))
            .map(|r| format!("{}: {}", r.name, r.error.clone().unwrap_or_default()))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("cluster not ready: {}", waiting.join("; ")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn now_unix_s() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn default_name(replicas: usize, byzantine: Byzantine, store: Store) -> String {
    match byzantine {
        Byzantine::None => format!("n{replicas}-{}", store.name()),
        b => format!("n{replicas}-{}-{}", b.name(), store.name()),
    }
}

/// Reports are written here in full (one JSON per configuration) and as CSV rows.
fn write_run(out: &Path, r: &RunReport) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let json = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    let safe: String = r
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    report::write(&out.join(format!("{safe}.json")), &json)?;
    let csv = out.join("results.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap_or_default();
    if !text.starts_with(report::CSV_HEADER) {
        text = format!("{}\n", report::CSV_HEADER);
    }
    text.push_str(&report::csv_row(r));
    text.push('\n');
    report::write(&csv, &text)
}

fn summary(r: &RunReport) -> String {
    let m = &r.measurement;
    let hiccups = m.hiccups.map_or(String::new(), |h| {
        format!(
            "; machine hiccups p99 {:.1} ms max {:.0} ms",
            h.p99_ms, h.max_ms
        )
    });
    let lag = m.send_lag.map_or(String::new(), |l| {
        format!("; sent late p50 {:.2} ms p99 {:.1} ms", l.p50_ms, l.p99_ms)
    });
    format!(
        "{}: {} verified transfers in {:.0} s = {:.0}/s; p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.0} ms; \
         {} rejected, {} failed; {:.1} µs/verify, limit {:.0}/s, {:.1}% of it{hiccups}{lag}",
        r.name,
        m.transfers,
        m.duration_s,
        m.throughput_tps,
        m.latency.p50_ms,
        m.latency.p90_ms,
        m.latency.p99_ms,
        m.latency.max_ms,
        m.rejected,
        m.failed,
        r.sig_limit.verify_us,
        r.sig_limit.limit_tps,
        r.fraction_of_sig_limit * 100.0
    )
}

fn bench_config(path: &Path) -> Result<ClusterConfig, String> {
    let mut config = ClusterConfig::load(path).map_err(|e| e.to_string())?;
    config.submit_timeout_ms = BENCH_SUBMIT_TIMEOUT_MS;
    config.request_timeout_ms = BENCH_REQUEST_TIMEOUT_MS;
    Ok(config)
}

fn issuer_from_hex(text: &str) -> Result<Keypair, String> {
    Keypair::from_secret_hex(text.trim()).map_err(|e| format!("issuer key: {e}"))
}

/// Starts a cluster of the given shape, runs the workload on it and tears it down.
async fn measure_local(
    name: String,
    (replicas, store, byzantine): (usize, Store, Byzantine),
    rate: Option<f64>,
    common: &Common,
    run_index: usize,
) -> Result<RunReport, String> {
    let started_unix_s = now_unix_s();
    if common.retain_blocks.is_some() && store == Store::Memory {
        return Err(format!(
            "{name}: --retain-blocks needs a Redis store (a memory-store replica replays every block)"
        ));
    }
    // Measured before the cluster starts, on the otherwise idle machine.
    let sig = sigcost::limit(sigcost::measure_verify_us(), replicas);
    let pid = std::process::id();
    let base_port = match common.base_port {
        Some(port) => port,
        None => coffer_bench::cluster::free_base_port(pid as usize + run_index, replicas)
            .ok_or("no free block of loopback ports for the cluster (pass --base-port)")?,
    };
    let temp = common.work_dir.is_none();
    let parent = common
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("coffer-bench-{pid}-{run_index}")));
    let dir = parent.join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    let spec = ClusterSpec {
        replicas,
        store,
        byzantine,
        dir: dir.clone(),
        base_port,
        replica_exe: std::env::current_exe().map_err(|e| format!("own executable: {e}"))?,
        scripts_dir: common.scripts.clone(),
        retain_blocks: common.retain_blocks,
        runtime: common.runtime.engine(),
        workers: common.workers,
        api_workers: common.api_workers,
    };
    let retention = common
        .retain_blocks
        .map_or(String::new(), |n| format!(", {n} blocks retained"));
    eprintln!(
        "{name}: starting {replicas} replicas ({}{retention}) in {}",
        store.name(),
        dir.display()
    );
    let result = async {
        let cluster = LocalCluster::start(&spec, READY_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        let config = bench_config(&cluster.cluster_json)?;
        let issuer = issuer_from_hex(&cluster.issuer_secret_hex)?;
        let warmup = Duration::from_secs(common.warmup)
            + if byzantine == Byzantine::Silent {
                SILENT_EXTRA_WARMUP
            } else {
                Duration::ZERO
            };
        let wspec = WorkloadSpec {
            threads: common.threads,
            duration: Duration::from_secs(common.duration),
            warmup,
            rate,
            progress: !common.no_progress,
            audit: common.audit,
        };
        eprintln!(
            "{name}: funding {} wallets, then {} s warm-up and {} s measured",
            common.threads * workload::WALLETS_PER_CLIENT,
            warmup.as_secs(),
            common.duration
        );
        let silent = byzantine == Byzantine::Silent;
        let pids = cluster.pids();
        let cpu_now = || {
            let replicas: Option<f64> = pids.iter().map(|p| sigcost::process_cpu_s(*p)).sum();
            Some((
                std::time::Instant::now(),
                replicas?,
                sigcost::process_cpu_s(std::process::id())?,
                sigcost::machine_busy_s()?,
            ))
        };
        let cpu_before = cpu_now();
        let mut m = workload::run(&config, &issuer, &wspec, || {
            if silent {
                cluster
                    .silence(cluster.replicas() - 1)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())?;
        if let (Some(b), Some(a)) = (cpu_before, cpu_now()) {
            let wall = (a.0 - b.0).as_secs_f64().max(1e-3);
            let (r, c, all) = (a.1 - b.1, a.2 - b.2, a.3 - b.3);
            // Transfers during funding and warm-up are not counted; the per-transfer figure
            // uses the window's rate over the whole span, so it is an upper bound.
            let transfers = m.throughput_tps * wall;
            m.cpu = Some(workload::CpuUse {
                replicas_cores: r / wall,
                client_cores: c / wall,
                other_cores: ((all - r - c) / wall).max(0.0),
                replicas_us_per_transfer: if transfers > 0.0 {
                    r * 1e6 / transfers
                } else {
                    0.0
                },
            });
        }
        drop(cluster);
        let mut report = RunReport::new(
            name.clone(),
            (replicas, Some(store), byzantine, common.retain_blocks),
            common.threads,
            warmup.as_secs_f64(),
            m,
            sig,
            started_unix_s,
        );
        report.runtime = Some(spec.runtime.name().to_owned());
        report.workers = spec.workers;
        report.api_workers = spec.api_workers;
        Ok::<_, String>(report)
    }
    .await;
    if temp && !common.keep {
        // The whole per-run directory: it was created for this run only.
        let _ = std::fs::remove_dir_all(&parent);
    }
    result
}

async fn run_cmd(args: RunArgs) -> Result<(), String> {
    let common = &args.common;
    let report = match &args.cluster {
        Some(path) => {
            // The report records the retention the benchmark configured; a running cluster's
            // is its own and unknown here.
            if common.retain_blocks.is_some() {
                return Err(
                    "--retain-blocks applies to a cluster the benchmark starts, not to --cluster"
                        .into(),
                );
            }
            let started_unix_s = now_unix_s();
            let config = bench_config(path)?;
            let n = config.replicas.len();
            wait_for_cluster(&config, READY_TIMEOUT).await?;
            let sig = sigcost::limit(sigcost::measure_verify_us(), n);
            let key_path = args
                .issuer_key
                .as_ref()
                .ok_or("--cluster needs --issuer-key")?;
            let key = std::fs::read_to_string(key_path)
                .map_err(|e| format!("{}: {e}", key_path.display()))?;
            let issuer = issuer_from_hex(&key)?;
            let wspec = WorkloadSpec {
                threads: common.threads,
                duration: Duration::from_secs(common.duration),
                warmup: Duration::from_secs(common.warmup),
                rate: args.rate,
                progress: !common.no_progress,
                audit: common.audit,
            };
            let m = workload::run(&config, &issuer, &wspec, || Ok(()))
                .await
                .map_err(|e| e.to_string())?;
            RunReport::new(
                args.name
                    .clone()
                    .unwrap_or_else(|| format!("n{n}-external")),
                (n, None, Byzantine::None, None),
                common.threads,
                common.warmup as f64,
                m,
                sig,
                started_unix_s,
            )
        }
        None => {
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| default_name(args.replicas, args.byzantine, args.store));
            measure_local(
                name,
                (args.replicas, args.store, args.byzantine),
                args.rate,
                common,
                0,
            )
            .await?
        }
    };
    write_run(&common.out, &report)?;
    println!("{}", summary(&report));
    Ok(())
}

async fn compare_cmd(args: CompareArgs) -> Result<(), String> {
    let list = configs::parse_list(&args.configs)?;
    let common = &args.common;
    let mut reports: Vec<RunReport> = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let rate = if c.half {
            let peak = reports
                .iter()
                .rev()
                .find(|r| r.name == c.base)
                .ok_or_else(|| format!("{}: measure {} before it", c.name, c.base))?
                .measurement
                .throughput_tps;
            if peak <= 0.0 {
                return Err(format!("{}: {} measured no throughput", c.name, c.base));
            }
            Some(peak / 2.0)
        } else {
            None
        };
        let r = measure_local(
            c.name.clone(),
            (c.replicas, c.store, c.byzantine),
            rate,
            common,
            i,
        )
        .await?;
        println!("{}", summary(&r));
        write_run(&common.out, &r)?;
        reports.push(r);
    }
    let out = &common.out;
    let json = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
    report::write(&out.join("compare.json"), &json)?;
    report::write(&out.join("compare.csv"), &report::csv(&reports))?;
    report::write(&out.join("compare.md"), &report::markdown(&reports))?;
    plot::throughput(&reports, &out.join("throughput.svg"))?;
    plot::latency(&reports, &out.join("latency.svg"))?;
    plot::timeline(&reports, &out.join("timeline.svg"))?;
    println!("\n{}", report::markdown(&reports));
    Ok(())
}
