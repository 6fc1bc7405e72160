#!/usr/bin/env bash
# Runs Coffer's whole test suite. Tests that need Redis start their own servers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked "$@"
