//! The machine's signature-verification limit, measured in the same run as the throughput:
//! every replica verifies each transfer's BIP340 signature once, so n replicas sharing `cores`
//! cores can verify at most `cores × 10⁶ / (µs per verify × n)` transfers per second, whatever
//! the rest of the system does.

use coffer_ledger::{Amount, ChainId, Keypair, OutPoint, Transaction, Transfer, TxOut, Txid};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Verifications per timed round.
const VERIFIES_PER_ROUND: u32 = 2_000;
/// Rounds; the median is reported (robust to another process stealing the core briefly).
const ROUNDS: usize = 5;

/// The measured cost and the limit it implies.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct SigLimit {
    /// Microseconds per BIP340 verification of a transfer (one core, median of rounds).
    pub verify_us: f64,
    /// Cores of the machine (`available_parallelism`).
    pub cores: usize,
    /// Replicas, each verifying every transfer once.
    pub replicas: usize,
    /// `cores × 10⁶ / (verify_us × replicas)`.
    pub limit_tps: f64,
}

/// Times BIP340 verification of a one-input, two-output transfer on this core.
pub fn measure_verify_us() -> f64 {
    let key = Keypair::generate();
    let chain = ChainId::new("coffer-sigcost").unwrap_or_else(|_| {
        unreachable!("constant chain id is valid");
    });
    let tx = Transaction::Transfer(Transfer {
        chain_id: chain,
        signer: key.public_key(),
        inputs: vec![OutPoint {
            txid: Txid([7; 32]),
            vout: 0,
        }],
        outputs: vec![
            TxOut::to_address(Amount(500), Keypair::generate().public_key().address()),
            TxOut::to_address(Amount(499_500), key.public_key().address()),
        ],
    });
    let signed = key.sign_tx(tx);
    assert!(signed.verify_signature(), "a fresh signature must verify");
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut ok = 0u32;
            for _ in 0..VERIFIES_PER_ROUND {
                ok += u32::from(std::hint::black_box(&signed).verify_signature());
            }
            assert_eq!(ok, VERIFIES_PER_ROUND);
            started.elapsed().as_secs_f64() * 1e6 / f64::from(VERIFIES_PER_ROUND)
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

/// The limit for `replicas` replicas on this machine, from a verification cost.
pub fn limit(verify_us: f64, replicas: usize) -> SigLimit {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let limit_tps = cores as f64 * 1e6 / (verify_us * replicas.max(1) as f64);
    SigLimit {
        verify_us,
        cores,
        replicas,
        limit_tps,
    }
}

/// CPU time a process used so far, in seconds, from `/proc/PID/stat` (Linux; `None`
/// elsewhere or when the process is gone). Clock ticks are taken as 100 per second, the
/// kernel's USER_HZ on every mainstream Linux architecture.
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing ')' are plain.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Busy CPU time of the whole machine so far, in seconds (`/proc/stat`, all cores).
pub fn machine_busy_s() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_cores_over_n_verifies() {
        let l = limit(50.0, 4);
        assert!((l.limit_tps - l.cores as f64 * 5_000.0).abs() < 1e-6);
        let v = measure_verify_us();
        assert!(v > 0.1 && v < 10_000.0, "{v} µs per verify");
    }
}
