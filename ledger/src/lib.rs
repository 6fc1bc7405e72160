//! Coffer ledger core: pure types, canonical encoding, validation and the UTXO state machine.
pub mod attest;
