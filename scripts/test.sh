#!/usr/bin/env bash
# Runs every check CI runs: format, lints with warnings denied, the whole test suite, and a short
# run of the simulator benchmark. The last line totals the tests, whether they passed or not.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The node build leaves `stagger simulate` out; make sure it still compiles cleanly.
cargo clippy -p stagger --no-default-features --locked -- -D warnings

test_log="$(mktemp)"
trap 'rm -f "$test_log"' EXIT
print_total() {
    awk '/^test result:/ { passed += $4; failed += $6 } END { printf "tests: %d passed, %d failed\n", passed, failed }' \
        "$test_log"
}

test_status=0
cargo test --workspace --locked 2>&1 | tee "$test_log" || test_status=$?
if [ "$test_status" -ne 0 ]; then
    print_total
    exit "$test_status"
fi

# Short run of the simulator benchmark (1000 nodes x 1000 trials): checks that it builds and runs.
# The full run and its figures are in docs/benchmarks.md.
cargo bench -p stagger --bench simulate --locked -- --short

print_total
