//! Coffer benchmark harness.
