//! Fuzz the block decoder: never panic, and anything that decodes re-encodes to the same bytes.
#![no_main]

use coffer_ledger::Block;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(block) = Block::decode(data) {
        assert_eq!(block.encode(), data, "decoding is not canonical");
    }
});
