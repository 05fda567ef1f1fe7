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
#   relay      the relay: fan-out latency to 1 and 20 replicas and catch-up of a 1 GiB backlog,
#              through binlog-server vs straight from the source
#
# BENCH_SERVER_BIN (and, for lag, semisync and relay, BENCH_LOAD_BIN; for relay also
# BENCH_PROBE_BIN; for scale BENCH_API_LOAD_BIN) set to existing binaries skip the builds (a release binary built elsewhere).
# Each builds the release binary (lag, semisync and relay also their bench binaries), then hands
# over to scripts/bench/SCENARIO.py. The environment variables each scenario reads are listed at
# the top of scripts/bench/SCENARIO.sh (kept as a shorthand for `run.sh SCENARIO`). Every process
# a scenario starts is stopped by PID on exit; its work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage() {
  echo "usage: scripts/bench/run.sh catchup|lag|scale|bigevents|upload|semisync|relay [ARGS...]" >&2
  exit 2
}
[ $# -ge 1 ] || usage
scenario=$1
shift
case "$scenario" in
  catchup | bigevents) ;;
  lag | semisync | relay) ;;
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

# The path of a bench binary, built with `cargo bench --no-run` (the release profile).
bench_bin() {
  cargo bench --quiet --bench "$1" --no-run --message-format=json \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1"
}

if { [ "$scenario" = lag ] || [ "$scenario" = semisync ] || [ "$scenario" = relay ]; } && [ -z "${BENCH_LOAD_BIN:-}" ]; then
  echo "== building the load generator: cargo bench --bench lag_load --no-run"
  BENCH_LOAD_BIN=$(bench_bin lag_load)
  [ -x "$BENCH_LOAD_BIN" ] || { echo "run.sh $scenario: could not find the lag_load binary" >&2; exit 1; }
  export BENCH_LOAD_BIN
fi
if [ "$scenario" = scale ] && [ -z "${BENCH_API_LOAD_BIN:-}" ]; then
  echo "== building the open-loop HTTP client: cargo bench --bench api_load --no-run"
  BENCH_API_LOAD_BIN=$(bench_bin api_load)
  [ -x "$BENCH_API_LOAD_BIN" ] || { echo "run.sh scale: could not find the api_load binary" >&2; exit 1; }
  export BENCH_API_LOAD_BIN
fi
if [ "$scenario" = relay ] && [ -z "${BENCH_PROBE_BIN:-}" ]; then
  echo "== building the arrival probe: cargo bench --bench relay_probe --no-run"
  BENCH_PROBE_BIN=$(bench_bin relay_probe)
  [ -x "$BENCH_PROBE_BIN" ] || { echo "run.sh relay: could not find the relay_probe binary" >&2; exit 1; }
  export BENCH_PROBE_BIN
fi

exec python3 "scripts/bench/$scenario.py" "$@"
