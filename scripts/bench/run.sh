#!/usr/bin/env bash
# Runs one benchmark scenario against `mariadb-binlog --raw` or the scenario's own baseline:
#
#   scripts/bench/run.sh SCENARIO [ARGS...]
#
# SCENARIO is one of:
#   catchup    catch-up throughput against mariadb-binlog --raw, bulk and OLTP backlogs
#   lag        commit -> durable checkpoint latency at steady transaction rates
#   scale      1,000 tasks configured, all streaming: RSS, CPU, API latency (wrk and open loop; needs wrk)
#   bigevents  peak memory under a stream of 256 MiB events
#   upload     upload throughput to an S3 test server (needs moto_server)
#   semisync   commit latency on the source: async, semi-sync through binlog-server, semi-sync
#              with a second mariadbd as the reference
#
# BENCH_SERVER_BIN (and, for lag and semisync, BENCH_LOAD_BIN) set to existing binaries skip the
# builds (a release binary built elsewhere).
# Each builds the release binary (lag also its load generator, benches/lag_load.rs), then hands
# over to scripts/bench/SCENARIO.py. The environment variables each scenario reads are listed at
# the top of scripts/bench/SCENARIO.sh (kept as a shorthand for `run.sh SCENARIO`). Every process
# a scenario starts is stopped by PID on exit; its work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() {
  echo "usage: scripts/bench/run.sh catchup|lag|scale|bigevents|upload|semisync [ARGS...]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift
case "$scenario" in
  catchup | bigevents) ;;
  lag | semisync) ;;
  scale) command -v wrk >/dev/null || { echo "run.sh scale: wrk not found (Debian: apt-get install -y wrk)" >&2; exit 1; } ;;
  upload) command -v moto_server >/dev/null || { echo "run.sh upload: moto_server not found; run scripts/setup-deps.sh test" >&2; exit 1; } ;;
  *) echo "run.sh: unknown scenario '$scenario'" >&2; usage ;;
esac

if [ -z "${BENCH_SERVER_BIN:-}" ]; then
  echo "== building the release binary: cargo build --release --bin binlog-server"
  cargo build --release --quiet --bin binlog-server
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  export BENCH_SERVER_BIN="$target_dir/release/binlog-server"
fi
echo "== binlog-server: $BENCH_SERVER_BIN"

if [ "$scenario" = lag ] || [ "$scenario" = semisync ] && [ -z "${BENCH_LOAD_BIN:-}" ]; then
  echo "== building the load generator: cargo bench --bench lag_load --no-run"
  BENCH_LOAD_BIN=$(cargo bench --quiet --bench lag_load --no-run --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "lag_load" and m.get("executable"):
        print(m["executable"])')
  [ -x "$BENCH_LOAD_BIN" ] || { echo "run.sh lag: could not find the lag_load binary" >&2; exit 1; }
  export BENCH_LOAD_BIN
fi

exec python3 "scripts/bench/$scenario.py" "$@"
