#!/usr/bin/env bash
# A fuzz campaign: every target (or the ones named) for SECONDS each, one core each, niced, and a
# table of what each run did (executions, coverage, features, corpus, crashes) for README.md.
#
#   fuzz/campaign.sh 600                       # every target, 10 minutes each, one after the other
#   fuzz/campaign.sh 600 gtid names            # just these
#   PARALLEL=2 fuzz/campaign.sh 600            # two targets at a time
#
# Logs go to fuzz/logs/<target>.log, crash inputs to fuzz/artifacts/<target>/. Same build and
# target directory rules as smoke.sh; strict invariants on (except `handshake`, see README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
secs=${1:?usage: fuzz/campaign.sh SECONDS [TARGET...]}
shift
cd "$here"
[ -d corpus ] || ./seed.sh >/dev/null
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=$FUZZ_TARGET_DIR
elif [ -n "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR=$CARGO_TARGET_DIR/fuzz
fi
nice -n 15 cargo fuzz build -s none
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p logs

run_one() {
    local target=$1 strict=1
    [ "$target" = handshake ] && strict=0
    local opts=(-max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
    [ -f "dict/$target.dict" ] && opts+=(-dict="dict/$target.dict")
    local started rc=0
    started=$(date +%s)
    BINLOG_FUZZ_STRICT=$strict nice -n 15 cargo fuzz run -s none "$target" -- "${opts[@]}" \
        >"logs/$target.log" 2>&1 || rc=$?
    local took=$(($(date +%s) - started))
    local execs cov ft corp crashes
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$target.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "logs/$target.log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "logs/$target.log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "logs/$target.log" | tail -1 | cut -d' ' -f2)
    crashes=$(find "artifacts/$target" -type f 2>/dev/null | wc -l)
    printf '| `%s` | %ss | %s | %s | %s | %s | %s | %s |\n' "$target" "$took" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$crashes" "$([ $rc -eq 0 ] && echo ok || echo "exit $rc: see logs/$target.log")"
}

echo "| target | time | executions | coverage (edges) | features | corpus (inputs/size) | crash files | result |"
echo "|---|---|---|---|---|---|---|---|"
parallel=${PARALLEL:-1}
running=0
for t in "${targets[@]}"; do
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait
