//! Fuzz the binary submit answer, which a wallet reads from a replica it does not trust (and
//! with it the receipt list replicas send each other): never panic, and anything that decodes
//! re-encodes to the same bytes (canonical).
#![no_main]

use coffer_ledger::rest::SubmitOutcome;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(outcome) = SubmitOutcome::decode(data) {
        assert_eq!(
            outcome.encode().expect("a decoded outcome encodes"),
            data,
            "decoding is not canonical"
        );
    }
});
