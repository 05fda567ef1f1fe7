#!/usr/bin/env bash
# The relay (issue 18): live fan-out latency and catch-up, through binlog-server vs from the source.
#
#   scripts/bench/relay.sh   (the same as: scripts/bench/run.sh relay)
#
# Fan-out: one throwaway source mariadbd, binlog-server with the relay on and a task copying it,
# and N-1 throwaway mariadbd replicas (IO thread only) plus an arrival probe
# (benches/relay_probe.rs) following either the source or the relay, the two set-ups in rotating
# order. Load: lag_load (benches/lag_load.rs) at a fixed rate; per transaction, COMMIT returned
# (lag_load's clock) -> its XID event at the probe (the probe's clock, the same CLOCK_REALTIME).
# Catch-up: a second source with a bulk backlog, binlog-server caught up on it, and
# `mariadb-binlog --read-from-remote-server --raw --to-last-log` pulling it all from the relay and
# from the source in interleaved pairs, each pull checked byte for byte against the source's files;
# and the same pairs with the probe's `--drain` client (a non-blocking dump read to its end, nothing
# written: what each server can send when the client is not the bound); with `replica` among the
# clients also a fresh mariadbd replica's IO thread pulling it all (what issue 18 names).
#
# Environment (all optional):
#   BENCH_RELAY_PARTS="fanout catchup"  which parts to run
#   BENCH_RELAY_REPLICAS="1 20"         fleet sizes N (N-1 mariadbd replicas + the probe)
#   BENCH_RELAY_RATE=1000               transactions per second during a fan-out run
#   BENCH_RELAY_SECONDS=10              length of each fan-out run
#   BENCH_RELAY_WARMUP_S=1              first seconds of each fan-out run not counted
#   BENCH_RELAY_BACKLOG_MIB=1024        catch-up backlog size
#   BENCH_RELAY_CATCHUP_CLIENTS="mariadb-binlog drain"  catch-up clients: mariadb-binlog, drain,
#                                       replica (the first two by default)
#   BENCH_RUNS=5                        fan-out runs per set-up and size; catch-up pairs
#   BENCH_QUIET_WAIT_S=120, BENCH_QUIET_IDLE_PCT=60  wait for an idle machine before each run
#   BENCH_SERVER_BIN, BENCH_LOAD_BIN, BENCH_PROBE_BIN  existing binaries (skip the builds)
#   BENCH_KEEP=0                        1 keeps the work dir (logs, per-transaction CSV files)
#   BENCH_TMPDIR, BENCH_OUT, BENCH_OUTPUT_DIR  work dir location; JSON results file; CSV/pull dir
#   BINLOG_SERVER_WRITER_*              writer settings passed to binlog-server (default: built-in)
#
# Every process it starts is stopped by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" relay "$@"
