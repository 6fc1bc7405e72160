//! Fuzz the signed-transaction decoder and the mempool check: never panic, and anything that
//! decodes re-encodes to the same bytes (canonical).
#![no_main]

use coffer_ledger::{Genesis, SignedTransaction};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn genesis() -> &'static Genesis {
    static G: OnceLock<Genesis> = OnceLock::new();
    G.get_or_init(|| {
        let json = r#"{"chain_id":"coffer-fuzz",
            "issuers":["79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"],
            "replicas":[{"name":"r0","public_key":"0101010101010101010101010101010101010101010101010101010101010101"}]}"#;
        Genesis::from_json(json).expect("fuzz genesis is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(stx) = SignedTransaction::decode(data) {
        assert_eq!(stx.encode(), data, "decoding is not canonical");
        let _ = stx.txid();
    }
    let _ = coffer_ledger::verify_bytes(genesis(), data);
});
