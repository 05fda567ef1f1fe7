#!/usr/bin/env bash
# Commit -> durable checkpoint latency of binlog-server at steady transaction rates.
#
#   scripts/bench/lag.sh   (the same as: scripts/bench/run.sh lag)
#
# Builds the release binary and the load generator (benches/lag_load.rs), starts a throwaway
# mariadbd (own datadir and loopback port; the machine's own MariaDB is never touched) and
# binlog-server with a JSON debug log, creates and starts a task (LATEST), then for each rate
# commits single-row InnoDB transactions at that rate (paced, open loop) and matches every
# commit's GTID to the first 'checkpoint durable' log line that covers it.
#
# Environment (all optional):
#   BENCH_LAG_RATES="1000 5000 20000"  target rates, transactions per second
#   BENCH_LAG_SECONDS=15               length of each run
#   BENCH_LAG_WARMUP_S=1               first seconds of each run not counted
#   BENCH_LAG_WORKERS                  connections of the load generator (default: rate / 2500)
#   BENCH_RUNS=3                       runs per rate
#   BENCH_SOURCE_DURABLE=0             1: the source runs sync_binlog=1, innodb_flush_log_at_trx_commit=1
#   BENCH_KEEP=0                       1 keeps the work dir (logs, per-commit CSV files)
#   BENCH_TMPDIR, BENCH_OUT            work dir location; JSON results file
#   BINLOG_SERVER_WRITER_*             writer settings passed to binlog-server (default: built-in)
#
# Every process it starts is stopped by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" lag "$@"
