#!/usr/bin/env bash
# A short run of every fuzz target (2,000 inputs from a fixed seed, at most 30 s each), called by
# `make test`. It needs cargo-fuzz
# (`cargo install cargo-fuzz`) and nothing else: `-s none` builds on the stable toolchain. Without
# cargo-fuzz it prints SKIPPED and succeeds. A crash fails it, naming the target and the input.
#
#   fuzz/smoke.sh             # 2,000 runs per target, at most 30 s
#   fuzz/smoke.sh 60          # at most 60 s per target (FUZZ_SMOKE_SECONDS works too);
#                             # FUZZ_SMOKE_RUNS and FUZZ_SMOKE_SEED change the inputs
#
# The first build is slow (about 15 minutes on two busy cores; the targets link the whole crate);
# it goes to $FUZZ_TARGET_DIR, else $CARGO_TARGET_DIR/fuzz, else fuzz/target, apart from the main
# build's artefacts (different compiler flags would evict them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-${FUZZ_SMOKE_SECONDS:-30}}
runs=${FUZZ_SMOKE_RUNS:-2000}
seed=${FUZZ_SMOKE_SEED:-1}
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: SKIPPED (cargo-fuzz is not installed; \`cargo install cargo-fuzz\` enables it)"
    exit 0
fi
cd "$here"
if [ ! -d corpus ]; then
    ./seed.sh >/dev/null
fi
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=$FUZZ_TARGET_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/fuzz
fi
cargo fuzz build -s none
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
for target in $(cargo fuzz list); do
    # A fixed seed and a fixed number of runs: the same inputs on every machine, however fast,
    # so `make test` passes or fails the same way each time (a campaign, fuzz/campaign.sh, is
    # where new ground is explored). The time only caps a very slow machine.
    opts=(-seed="$seed" -runs="$runs" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    if [ -f "dict/$target.dict" ]; then
        opts+=(-dict="dict/$target.dict")
    fi
    # The strict invariants (README.md) are part of the smoke, except in `handshake`, where strict
    # means "do not skip the known mysql_common overflow" (README.md, Known findings).
    strict=1
    if [ "$target" = handshake ]; then
        strict=0
    fi
    if BINLOG_FUZZ_STRICT=$strict cargo fuzz run -s none "$target" -- "${opts[@]}" >"$logs/$target.log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$logs/$target.log" | tail -1)
        echo "fuzz smoke: $target ok (seed $seed, ${execs:-?} executions, ${cov:-cov: ?})"
    else
        echo "fuzz smoke: $target FAILED; the end of its log:"
        tail -n 40 "$logs/$target.log"
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]} (crash inputs under fuzz/artifacts/; see fuzz/README.md to reproduce)"
    exit 1
fi
