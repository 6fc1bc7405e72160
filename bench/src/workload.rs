//! The workload: `threads` clients, each owning [`WALLETS_PER_CLIENT`] funded wallets, paying
//! random wallets (any client's) for a fixed time. Each client is a closed loop (one transfer
//! in flight; the next starts when the previous one is verified) unless a total `rate` is
//! given, in which case each client starts transfers on a fixed schedule and latency is
//! measured from the scheduled start (no coordinated omission). The schedule is kept by a
//! [`Pacer`](crate::pacer::Pacer), not tokio's millisecond timer, and how late each transfer
//! actually started is reported as `send_lag`.
//!
//! A transfer counts only when [`coffer_wallet::Client::submit`] returned it committed, which
//! means the client verified f+1 matching receipts signed by distinct genesis replicas.
//!
//! Clients track their wallets' coins themselves (a client is the only spender of its wallets;
//! outputs paid to another client's wallet are handed over through that client's inbox once
//! verified), so no transfer ever conflicts with another and no reads are needed.

use crate::hiccup::Hiccups;
use coffer_ledger::{
    Address, Amount, ChainId, Keypair, Mint, OutPoint, Transaction, Transfer, TxOut,
};
use coffer_wallet::{Client, ClientError, ClusterConfig, sign_with};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Wallets each client owns.
pub const WALLETS_PER_CLIENT: usize = 100;
/// Money minted to each wallet (units).
pub const FUNDING_PER_WALLET: u64 = 1_000_000_000;
/// Largest amount of one transfer (units); each is uniform in 1..=this.
pub const MAX_TRANSFER: u64 = 1_000;
/// Most clients: each holds a connection pool and a hundred keys.
pub const MAX_CLIENTS: usize = 4096;
/// Error messages kept for the report (the rest are only counted).
const MAX_ERRORS_KEPT: usize = 8;

/// Why the workload could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// Bad options.
    #[error("invalid workload options: {0}")]
    Options(String),
    /// The client could not be set up.
    #[error("client: {0}")]
    Client(String),
    /// Funding a client's wallets failed.
    #[error("funding client {client}: {reason}")]
    Funding {
        /// The client.
        client: usize,
        /// Why.
        reason: String,
    },
}

/// What to run.
#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    /// Concurrent clients.
    pub threads: usize,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it (connections, caches, leader rotation settle).
    pub warmup: Duration,
    /// Total offered transfers per second; closed loop when `None`.
    pub rate: Option<f64>,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
    /// Check every receipt signature (see [`Client::check_only_quorum`]).
    pub audit: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

/// What one measurement found.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Measurement {
    /// Transfers verified (f+1 receipts) within the measured window.
    pub transfers: u64,
    /// Of those, how many carried at least f+1 distinct signers (must equal `transfers`).
    pub verified: u64,
    /// Of those, how many the last replica (the Byzantine one, when there is one) signed a
    /// receipt for that counted: 0 with a forging or silent replica.
    #[serde(default)]
    pub signed_by_last: u64,
    /// Transfers the cluster proved rejected (should be 0: clients never conflict).
    pub rejected: u64,
    /// Transfers that failed without a verified outcome (timeouts, unreachable replicas).
    pub failed: u64,
    /// Length of the measured window, seconds.
    pub duration_s: f64,
    /// `transfers / duration_s`.
    pub throughput_tps: f64,
    /// Latency of the counted transfers (submission to verified receipts).
    pub latency: Latency,
    /// Verified transfers completed in each second of the window.
    pub per_second: Vec<u64>,
    /// Total offered rate, when open loop.
    pub offered_rate_tps: Option<f64>,
    /// Seconds spent minting the wallets' funds.
    pub funding_s: f64,
    /// The first few errors, for diagnosis.
    pub errors: Vec<String>,
    /// Where the CPU went during the run (funding, warm-up and window), when measurable.
    #[serde(default)]
    pub cpu: Option<CpuUse>,
    /// The machine's own scheduling stalls during the window (see [`crate::hiccup`]).
    #[serde(default)]
    pub hiccups: Option<Hiccups>,
    /// Open loop: how late the counted transfers started against their schedule. It is part
    /// of their latency (which counts from the scheduled start), but the client's doing.
    #[serde(default)]
    pub send_lag: Option<SendLag>,
}

/// How late open-loop transfers started, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct SendLag {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// Average cores busy during a run, by whom: the replicas, the benchmark's clients, and the
/// rest of the machine (other processes: a shared machine is visible here).
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct CpuUse {
    /// Cores used by all replica processes together.
    pub replicas_cores: f64,
    /// Cores used by the benchmark process (clients: signing, TLS, receipt verification).
    pub client_cores: f64,
    /// Cores used by everything else on the machine.
    pub other_cores: f64,
    /// Replica CPU time per verified transfer, microseconds.
    pub replicas_us_per_transfer: f64,
}

struct Wallet {
    key: Keypair,
    coins: Vec<(OutPoint, u64)>,
}

/// Outputs paid to a client's wallets by other clients: (wallet index, outpoint, amount).
type Inbox = Mutex<Vec<(usize, OutPoint, u64)>>;

struct Shared {
    addresses: Vec<Address>,
    inboxes: Vec<Inbox>,
    chain_id: ChainId,
    threshold: usize,
    last_replica: String,
    measure_start: Instant,
    measure_end: Instant,
    counted: AtomicU64,
    stop: AtomicBool,
}

struct ClientResult {
    histogram: Histogram<u64>,
    /// Open loop: how late each counted transfer started, microseconds.
    send_lag: Histogram<u64>,
    per_second: Vec<u64>,
    transfers: u64,
    verified: u64,
    signed_by_last: u64,
    rejected: u64,
    failed: u64,
    errors: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a client task panicked; the data is a plain list.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A latency histogram in microseconds (also the hiccup meter's).
pub(crate) fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; the bounds are constants that are valid.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| {
        unreachable!("constant histogram bounds are valid");
    })
}

/// Mints [`FUNDING_PER_WALLET`] to each of `wallets` in one transaction (at most the genesis'
/// outputs per transaction, 256 by default); returns each wallet's coin.
async fn fund(
    client: &Client,
    issuer: &Keypair,
    wallets: &mut [Wallet],
    nonce: u64,
) -> Result<(), ClientError> {
    let outputs = wallets
        .iter()
        .map(|w| TxOut::to_address(Amount(FUNDING_PER_WALLET), w.key.public_key().address()))
        .collect();
    let tx = Transaction::Mint(Mint {
        chain_id: client.chain_id().clone(),
        issuer: issuer.public_key(),
        nonce,
        outputs,
    });
    let signed = sign_with(issuer, client.chain_id(), tx)?;
    let committed = client.submit(&signed).await?;
    for (vout, w) in wallets.iter_mut().enumerate() {
        // At most WALLETS_PER_CLIENT (100) outputs.
        let vout = u32::try_from(vout).unwrap_or(u32::MAX);
        w.coins.push((
            OutPoint {
                txid: committed.txid,
                vout,
            },
            FUNDING_PER_WALLET,
        ));
    }
    Ok(())
}

/// Runs the workload against the cluster described by `config`, minting with `issuer`.
/// `before_warmup` runs once every wallet is funded (e.g. to silence a replica).
pub async fn run(
    config: &ClusterConfig,
    issuer: &Keypair,
    spec: &WorkloadSpec,
    before_warmup: impl FnOnce() -> Result<(), String>,
) -> Result<Measurement, WorkloadError> {
    let threads = spec.threads;
    if threads == 0 || threads > MAX_CLIENTS {
        return Err(WorkloadError::Options(format!(
            "{threads} clients; want 1..={MAX_CLIENTS}"
        )));
    }
    if spec.duration.is_zero() {
        return Err(WorkloadError::Options("duration must be above 0".into()));
    }
    if let Some(rate) = spec.rate
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(WorkloadError::Options(format!(
            "rate {rate} must be above 0"
        )));
    }
    let chain_id =
        ChainId::new(config.chain_id.clone()).map_err(|e| WorkloadError::Client(e.to_string()))?;
    let mut clients = Vec::with_capacity(threads);
    let mut wallets: Vec<Vec<Wallet>> = Vec::with_capacity(threads);
    for i in 0..threads {
        let mut client =
            Client::new(config.clone()).map_err(|e| WorkloadError::Client(e.to_string()))?;
        // Clients start at different gateways and stay with one that answers.
        client.spread_from(i);
        // f+1 valid receipts prove a transfer; auditing the surplus is optional.
        if !spec.audit {
            client.check_only_quorum();
        }
        // One verifier per process, as a wallet service would run: each replica's signature
        // over a block's receipts is checked once for all clients.
        if let Some(first) = clients.first() {
            client.share_verified_blocks(first);
        }
        clients.push(client);
        wallets.push(
            (0..WALLETS_PER_CLIENT)
                .map(|_| Wallet {
                    key: Keypair::generate(),
                    coins: Vec::new(),
                })
                .collect(),
        );
    }

    // Funding: one mint per client, all in flight at once.
    let funding_started = Instant::now();
    let nonce_base: u64 = rand::random();
    let issuer = Arc::new(
        Keypair::from_secret_bytes(issuer.secret_bytes())
            .map_err(|e| WorkloadError::Client(format!("issuer key: {e}")))?,
    );
    let mut set = tokio::task::JoinSet::new();
    for (i, (client, mut ws)) in clients.into_iter().zip(wallets).enumerate() {
        let issuer = issuer.clone();
        let nonce = nonce_base.wrapping_add(i as u64);
        set.spawn(async move {
            let r = fund(&client, &issuer, &mut ws, nonce).await;
            (i, client, ws, r)
        });
    }
    let mut funded: Vec<Option<(Client, Vec<Wallet>)>> = (0..threads).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, client, ws, r) =
            joined.map_err(|e| WorkloadError::Client(format!("funding task: {e}")))?;
        r.map_err(|e| WorkloadError::Funding {
            client: i,
            reason: e.to_string(),
        })?;
        funded[i] = Some((client, ws));
    }
    let funding_s = funding_started.elapsed().as_secs_f64();
    let funded: Vec<(Client, Vec<Wallet>)> = funded.into_iter().flatten().collect();
    if funded.len() != threads {
        return Err(WorkloadError::Client("a funding task vanished".into()));
    }

    before_warmup().map_err(WorkloadError::Client)?;

    let addresses = funded
        .iter()
        .flat_map(|(_, ws)| ws.iter().map(|w| w.key.public_key().address()))
        .collect();
    let measure_start = Instant::now() + spec.warmup;
    let shared = Arc::new(Shared {
        addresses,
        inboxes: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
        chain_id,
        threshold: config.threshold(),
        last_replica: config
            .replicas
            .last()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
        measure_start,
        measure_end: measure_start + spec.duration,
        counted: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let hiccups = crate::hiccup::measure(measure_start.into_std(), shared.measure_end.into_std());
    let schedule = match spec.rate {
        None => None,
        Some(rate) => {
            let pacer = crate::pacer::Pacer::start()
                .map_err(|e| WorkloadError::Client(format!("pacer thread: {e}")))?;
            Some((Duration::from_secs_f64(threads as f64 / rate), pacer))
        }
    };
    let mut set = tokio::task::JoinSet::new();
    for (i, (client, ws)) in funded.into_iter().enumerate() {
        let shared = shared.clone();
        let schedule = schedule
            .as_ref()
            .map(|(every, pacer)| (*every, pacer.handle()));
        set.spawn(client_loop(i, client, ws, shared, schedule));
    }

    let bar = spec
        .progress
        .then(|| progress_bar(spec.warmup + spec.duration));
    let started = Instant::now();
    let end = shared.measure_end;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(bar) = &bar {
            let now = Instant::now();
            bar.set_position(started.elapsed().as_secs().min(bar.length().unwrap_or(0)));
            let counted = shared.counted.load(Ordering::Relaxed);
            if now < measure_start {
                bar.set_message("warming up".to_string());
            } else {
                let secs = (now - measure_start).as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{counted} verified, {:.0} transfers/s",
                    counted as f64 / secs
                ));
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let window_s = spec.duration.as_secs_f64();
    let seconds = spec.duration.as_secs().max(1);
    let mut hist = histogram();
    let mut lag = histogram();
    let mut m = Measurement {
        duration_s: window_s,
        per_second: vec![0; usize::try_from(seconds).unwrap_or(usize::MAX)],
        offered_rate_tps: spec.rate,
        funding_s,
        ..Measurement::default()
    };
    // Transfers still in flight at the end are not counted; give them a bounded time to end so
    // that the tasks (and their connections) are gone before the cluster is stopped.
    let drain_deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let next = tokio::time::timeout_at(drain_deadline, set.join_next()).await;
        let joined = match next {
            Err(_) => {
                set.abort_all();
                break;
            }
            Ok(None) => break,
            Ok(Some(joined)) => joined,
        };
        let Ok(r) = joined else { continue };
        let _ = hist.add(&r.histogram);
        let _ = lag.add(&r.send_lag);
        for (slot, n) in m.per_second.iter_mut().zip(&r.per_second) {
            *slot += n;
        }
        m.transfers += r.transfers;
        m.verified += r.verified;
        m.signed_by_last += r.signed_by_last;
        m.rejected += r.rejected;
        m.failed += r.failed;
        for e in r.errors {
            if m.errors.len() < MAX_ERRORS_KEPT {
                m.errors.push(e);
            }
        }
    }
    m.hiccups = hiccups.await.ok();
    m.throughput_tps = m.transfers as f64 / window_s;
    let ms = |us: u64| us as f64 / 1000.0;
    if m.transfers > 0 {
        m.latency = Latency {
            p50_ms: ms(hist.value_at_quantile(0.50)),
            p90_ms: ms(hist.value_at_quantile(0.90)),
            p99_ms: ms(hist.value_at_quantile(0.99)),
            max_ms: ms(hist.max()),
            mean_ms: hist.mean() / 1000.0,
        };
        if schedule.is_some() {
            m.send_lag = Some(SendLag {
                p50_ms: ms(lag.value_at_quantile(0.50)),
                p99_ms: ms(lag.value_at_quantile(0.99)),
                max_ms: ms(lag.max()),
            });
        }
    }
    drop(schedule);
    Ok(m)
}

fn progress_bar(total: Duration) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.as_secs());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn record_error(r: &mut ClientResult, e: String) {
    if r.errors.len() < MAX_ERRORS_KEPT {
        r.errors.push(e);
    }
}

async fn client_loop(
    me: usize,
    client: Client,
    mut wallets: Vec<Wallet>,
    shared: Arc<Shared>,
    schedule: Option<(Duration, crate::pacer::PacerHandle)>,
) -> ClientResult {
    let mut r = ClientResult {
        histogram: histogram(),
        send_lag: histogram(),
        per_second: vec![
            0;
            usize::try_from(
                (shared.measure_end - shared.measure_start).as_secs().max(1)
            )
            .unwrap_or(1)
        ],
        transfers: 0,
        verified: 0,
        signed_by_last: 0,
        rejected: 0,
        failed: 0,
        errors: Vec::new(),
    };
    // Open loop: start at a random phase within one interval so clients do not fire together.
    let mut due = Instant::now()
        + schedule
            .as_ref()
            .map_or(Duration::ZERO, |(i, _)| i.mul_f64(rand::random::<f64>()));
    let n_wallets = shared.addresses.len();
    let first_global = me * WALLETS_PER_CLIENT;
    while !shared.stop.load(Ordering::Relaxed) {
        let (start, late) = match &schedule {
            None => (Instant::now(), None),
            Some((interval, pacer)) => {
                pacer.sleep_until(due.into_std()).await;
                let start = due;
                due += *interval;
                (start, Some(start.elapsed()))
            }
        };
        if start >= shared.measure_end {
            break;
        }
        for (w, outpoint, amount) in lock(&shared.inboxes[me]).drain(..) {
            if let Some(wallet) = wallets.get_mut(w) {
                wallet.coins.push((outpoint, amount));
            }
        }
        // A random wallet with money (every wallet starts with plenty; only failures drain).
        let mut from = rand::random_range(0..WALLETS_PER_CLIENT);
        let mut tries = 0;
        while wallets[from].coins.is_empty() && tries < WALLETS_PER_CLIENT {
            from = (from + 1) % WALLETS_PER_CLIENT;
            tries += 1;
        }
        if wallets[from].coins.is_empty() {
            record_error(&mut r, "every wallet of this client is empty".into());
            break;
        }
        let to = loop {
            let to = rand::random_range(0..n_wallets);
            if to != first_global + from || n_wallets == 1 {
                break to;
            }
        };
        // Spend the largest coin: one input, one signature, and change that stays large.
        let wallet = &mut wallets[from];
        let Some((pos, _)) = wallet.coins.iter().enumerate().max_by_key(|(_, c)| c.1) else {
            continue;
        };
        let (input, value) = wallet.coins.swap_remove(pos);
        let amount = rand::random_range(1..=MAX_TRANSFER.min(value));
        let change = value - amount;
        let mut outputs = vec![TxOut::to_address(Amount(amount), shared.addresses[to])];
        if change > 0 {
            outputs.push(TxOut::to_address(
                Amount(change),
                wallet.key.public_key().address(),
            ));
        }
        let tx = Transaction::Transfer(Transfer {
            chain_id: shared.chain_id.clone(),
            signer: wallet.key.public_key(),
            inputs: vec![input],
            outputs,
        });
        let signed = match sign_with(&wallet.key, &shared.chain_id, tx) {
            Ok(s) => s,
            Err(e) => {
                record_error(&mut r, e.to_string());
                r.failed += 1;
                continue;
            }
        };
        match client.submit(&signed).await {
            Ok(committed) => {
                let done = Instant::now();
                if done >= shared.measure_start && done < shared.measure_end {
                    let us = u64::try_from((done - start).as_micros()).unwrap_or(u64::MAX);
                    r.histogram.saturating_record(us.max(1));
                    if let Some(late) = late {
                        let late = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
                        r.send_lag.saturating_record(late.max(1));
                    }
                    r.transfers += 1;
                    if committed.signers.len() >= shared.threshold {
                        r.verified += 1;
                    }
                    if committed.signers.contains(&shared.last_replica) {
                        r.signed_by_last += 1;
                    }
                    let second = (done - shared.measure_start).as_secs();
                    if let Some(slot) = usize::try_from(second)
                        .ok()
                        .and_then(|s| r.per_second.get_mut(s))
                    {
                        *slot += 1;
                    }
                    shared.counted.fetch_add(1, Ordering::Relaxed);
                }
                if change > 0 {
                    wallets[from].coins.push((
                        OutPoint {
                            txid: committed.txid,
                            vout: 1,
                        },
                        change,
                    ));
                }
                let owner = to / WALLETS_PER_CLIENT;
                let out = OutPoint {
                    txid: committed.txid,
                    vout: 0,
                };
                if owner == me {
                    wallets[to % WALLETS_PER_CLIENT].coins.push((out, amount));
                } else if let Some(inbox) = shared.inboxes.get(owner) {
                    lock(inbox).push((to % WALLETS_PER_CLIENT, out, amount));
                }
            }
            Err(ClientError::Rejected { code, message }) => {
                r.rejected += 1;
                record_error(&mut r, format!("rejected {code}: {message}"));
            }
            Err(e) => {
                // The coin may or may not be spent: it is dropped either way.
                r.failed += 1;
                record_error(&mut r, e.to_string());
            }
        }
    }
    r
}
