#!/usr/bin/env bash
# Runs Coffer's whole test suite. Tests that need Redis start their own servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"

# The docker files cannot run here (no container engine): check them statically, and run the
# compose files' init step against the real coffer-node binary.
cargo build --locked -p coffer-node --bin coffer-node
python3 scripts/check-docker.py --init-smoke "${CARGO_TARGET_DIR:-target}/debug/coffer-node"

# The fuzz targets (their own workspace, run by hand with cargo-fuzz: docs/FAULTS.md) still
# compile against the current API, from their checked-in lock file.
cargo check --locked --manifest-path fuzz/Cargo.toml --bins \
  --target-dir "${CARGO_TARGET_DIR:-target}/fuzz-check"
