//! DANGEROUS, FOR MEASUREMENTS ONLY: make this replica lie, to measure what one Byzantine
//! replica costs the others and the clients (`coffer-bench --byzantine forge`).
//!
//! Set `COFFER_BYZANTINE=forge` in a replica's environment and it signs receipts and read
//! statements with wrong contents: every receipt claims a `forged` result code and a corrupted
//! state commitment, every read statement a corrupted commitment. The signatures are valid
//! (made with the replica's real key), so only the quorum rule protects clients: they must
//! find f+1 matching statements from other replicas. Consensus and execution are untouched.
//!
//! Any other value is refused at start-up. Never set it on a real deployment; the replica logs
//! a warning at start-up when it is set. A silent (crashed, hung) replica needs no switch: the
//! benchmark stops the process with SIGSTOP.

use coffer_ledger::attest::{ReadStatement, ReceiptStatement};
use std::sync::OnceLock;

/// The environment variable that turns misbehaviour on.
pub const ENV: &str = "COFFER_BYZANTINE";
/// The result code a forging replica puts in every receipt.
pub const FORGED_CODE: &str = "forged";

/// How this replica misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Honest (the default).
    Honest,
    /// Signs wrong receipts and read statements.
    Forge,
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Reads [`ENV`] once; an unknown value is an error naming it.
pub fn init_from_env() -> Result<Mode, String> {
    let mode = match std::env::var(ENV) {
        Err(_) => Mode::Honest,
        Ok(v) if v.is_empty() || v == "none" => Mode::Honest,
        Ok(v) if v == "forge" => Mode::Forge,
        Ok(v) => return Err(format!("{ENV}={v:?}: want \"forge\" or \"none\"")),
    };
    let mode = *MODE.get_or_init(|| mode);
    if mode != Mode::Honest {
        tracing::warn!(
            "{ENV}={mode:?}: THIS REPLICA IS BYZANTINE ON PURPOSE (benchmarks only): it signs \
             wrong receipts and read statements"
        );
    }
    Ok(mode)
}

/// The mode set at start-up ([`Mode::Honest`] when [`init_from_env`] was never called).
pub fn mode() -> Mode {
    MODE.get().copied().unwrap_or(Mode::Honest)
}

fn corrupt(commitment: &mut [u8; 32]) {
    for b in commitment.iter_mut() {
        *b ^= 0x5a;
    }
}

/// Applies the misbehaviour to a receipt about to be signed.
pub fn receipt(statement: &mut ReceiptStatement) {
    if mode() == Mode::Forge {
        FORGED_CODE.clone_into(&mut statement.code);
        corrupt(&mut statement.commitment);
    }
}

/// Applies the misbehaviour to a read statement about to be signed.
pub fn read(statement: &mut ReadStatement) {
    if mode() == Mode::Forge {
        corrupt(&mut statement.commitment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honest_by_default_leaves_statements_alone() {
        // MODE is never set in unit tests (nothing calls init_from_env), so this is honest.
        let mut s = ReceiptStatement {
            chain_id: "c".into(),
            txid: [1; 32],
            height: 3,
            code: "ok".into(),
            commitment: [7; 32],
        };
        let before = s.clone();
        receipt(&mut s);
        assert_eq!(s, before);
        let mut c = [7u8; 32];
        corrupt(&mut c);
        assert_ne!(c, [7u8; 32]);
    }
}
