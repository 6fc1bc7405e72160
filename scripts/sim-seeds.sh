#!/usr/bin/env bash
# Runs the seeded Byzantine simulation over many seeds (release build): every variant
# (equivocator, twins, wrong_execution, invalid_blocks, silent, chaos) for seeds 1..=N.
#
#   scripts/sim-seeds.sh 1000                 # seeds 1..=1000, every variant
#   scripts/sim-seeds.sh 200 twins,chaos      # two variants only
#   FIRST=5001 scripts/sim-seeds.sh 1000      # seeds 5001..=6000
#
# Prints "byzantine_sim: seeds ..., R runs, F failed" and, for each failure, the command that
# replays exactly that run.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:?usage: scripts/sim-seeds.sh N [variants]}"
first="${FIRST:-1}"
last=$((first + count - 1))
export COFFER_SIM_SEEDS="${first}..=${last}"
if [ -n "${2:-}" ]; then
  export COFFER_SIM_VARIANTS="$2"
fi
exec cargo test -p coffer-node --release --test byzantine_sim -- \
  --nocapture --exact seeded_byzantine_runs_keep_safety_and_liveness
