#!/usr/bin/env bash
# Runs every check CI runs: format, lints with warnings denied, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# Short run of the simulator benchmark (1000 nodes x 1000 trials): checks that it builds and runs.
# The full run and its figures are in docs/benchmarks.md.
cargo bench -p stagger --bench simulate --locked -- --short
