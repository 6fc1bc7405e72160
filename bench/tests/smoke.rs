//! A CI-sized run of the real benchmark binary: a few seconds against n=1 and n=4 clusters
//! with the memory store (real replica processes, TLS, signatures), then the reports are
//! checked: transfers completed, every one verified by f+1 receipts, JSON and CSV well-formed.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one benchmark invocation may take (start-up, funding, warm-up, 3 s, teardown) on a
/// loaded 2-core machine.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

fn bench(out: &Path, args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer-bench"))
        .arg("run")
        .args(args)
        .args([
            "--duration",
            "3",
            "--warmup",
            "1",
            "--threads",
            "4",
            "--no-progress",
        ])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "coffer-bench {args:?} failed: {status}");
            return;
        }
        if started.elapsed() > RUN_DEADLINE {
            // Its replicas notice their parent is gone and exit.
            let _ = child.kill();
            let _ = child.wait();
            panic!("coffer-bench {args:?} did not finish in {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A run's report, as JSON, with its text.
fn read_report(out: &Path, name: &str) -> (String, serde_json::Value) {
    let text = std::fs::read_to_string(out.join(format!("{name}.json"))).unwrap();
    let r = serde_json::from_str(&text).unwrap();
    (text, r)
}

/// Checks that `v` holds percentiles in milliseconds: 0 < p50 ≤ p99 ≤ max.
fn assert_percentiles(name: &str, v: &serde_json::Value) {
    let (p50, p99, max) = (
        v["p50_ms"].as_f64().unwrap(),
        v["p99_ms"].as_f64().unwrap(),
        v["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{name}: {v}");
}

/// Checks a run's report; returns how many counted transfers the last replica signed for.
fn check_report(out: &Path, name: &str, replicas: u64) -> u64 {
    let (text, r) = read_report(out, name);
    assert_eq!(r["replicas"], replicas);
    let m = &r["measurement"];
    let transfers = m["transfers"].as_u64().unwrap();
    assert!(transfers > 0, "{name}: no transfers: {text}");
    assert_eq!(
        m["verified"].as_u64().unwrap(),
        transfers,
        "{name}: unverified"
    );
    assert_eq!(
        m["rejected"].as_u64().unwrap(),
        0,
        "{name}: conflicting transfers"
    );
    let tps = m["throughput_tps"].as_f64().unwrap();
    assert!((tps - transfers as f64 / 3.0).abs() < 1e-6, "{name}: {tps}");
    assert_percentiles(name, &m["latency"]);
    let per_second: u64 = m["per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(per_second, transfers, "{name}: timeline does not add up");
    assert!(r["sig_limit"]["verify_us"].as_f64().unwrap() > 0.0);
    assert!(
        matches!(r["runtime"].as_str(), Some("tokio" | "io_uring")),
        "{name}: {}",
        r["runtime"]
    );
    // No --retain-blocks: every block kept.
    assert!(
        r["retain_blocks"].is_null(),
        "{name}: {}",
        r["retain_blocks"]
    );
    // The hiccup meter ran through the 3 s window: a 1 ms tick gives at most about 3,000
    // samples, and a loaded 2-core machine still fits hundreds.
    let h = &m["hiccups"];
    let samples = h["samples"].as_u64().unwrap();
    assert!((100..=3_001).contains(&samples), "{name}: {h}");
    assert!(
        h["p50_ms"].as_f64().unwrap() <= h["p99_ms"].as_f64().unwrap()
            && h["p99_ms"].as_f64().unwrap() <= h["max_ms"].as_f64().unwrap(),
        "{name}: {h}"
    );
    m["signed_by_last"].as_u64().unwrap()
}

#[test]
fn short_runs_on_one_and_four_replicas_verify_every_transfer() {
    let out = tempfile::tempdir().unwrap();
    // n=1 runs open loop, on the pacer's schedule; n=4 closed loop.
    bench(out.path(), &["--replicas", "1", "--rate", "200"]);
    check_report(out.path(), "n1-memory", 1);
    let (_, n1) = read_report(out.path(), "n1-memory");
    let m = &n1["measurement"];
    // At 200/s for 3 s the schedule has at most 600 starts, plus one per client at the edge.
    assert!(m["transfers"].as_u64().unwrap() <= 604, "{m}");
    assert_eq!(m["offered_rate_tps"].as_f64(), Some(200.0));
    assert_percentiles("n1-memory send lag", &m["send_lag"]);
    // `--audit` checks every receipt signature, so every signer is counted (without it the
    // client stops at f+1 valid ones, and the last replica's key may sort after them).
    bench(out.path(), &["--replicas", "4", "--audit"]);
    let honest_last = check_report(out.path(), "n4-memory", 4);
    // Gateways gather 2f+1 = 3 of 4 receipts when they come in time: the last replica is
    // among the signers of many transfers.
    assert!(honest_last > 0, "the honest last replica never signed");

    let csv = std::fs::read_to_string(out.path().join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    let fields = lines[0].split(',').count();
    assert!(lines[0].starts_with("name,replicas,f,"));
    assert!(
        lines[0].ends_with(
            ",retain_blocks,runtime,workers,api_workers,send_lag_p50_ms,send_lag_p99_ms"
        ),
        "{}",
        lines[0]
    );
    for line in &lines[1..] {
        assert_eq!(line.split(',').count(), fields, "{line}");
        // Every block kept (an empty retain_blocks), on the default runtime.
        assert!(line.contains(",,tokio,,,"), "{line}");
    }
    // A send lag for the open-loop run only.
    assert!(!lines[1].ends_with(",,"), "{}", lines[1]);
    assert!(lines[2].ends_with(",tokio,,,,"), "{}", lines[2]);
    assert!(lines[1].starts_with("n1-memory,1,0,memory,none,4,400,"));
    assert!(lines[2].starts_with("n4-memory,4,1,memory,none,4,400,"));
}

/// A forging replica (COFFER_BYZANTINE=forge) signs wrong receipts: transfers still complete,
/// every one verified, and none counted the forger's receipt. The replicas run on io_uring
/// (`--runtime io-uring`, one worker each) where this machine allows it.
#[test]
fn a_forging_replica_is_outvoted() {
    let out = tempfile::tempdir().unwrap();
    let uring = coffer_node::runtime::probe_io_uring().is_ok();
    let mut args = vec!["--replicas", "4", "--byzantine", "forge", "--audit"];
    if uring {
        args.extend(["--runtime", "io-uring", "--workers", "1"]);
    }
    bench(out.path(), &args);
    let forger_signed = check_report(out.path(), "n4-forge-memory", 4);
    assert_eq!(forger_signed, 0, "a forged receipt was counted");
    let (_, r) = read_report(out.path(), "n4-forge-memory");
    if uring {
        assert_eq!(r["runtime"], "io_uring");
        assert_eq!(r["workers"], 1);
    } else {
        assert_eq!(r["runtime"], "tokio");
        assert!(r["workers"].is_null());
    }
}
