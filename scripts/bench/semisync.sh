#!/usr/bin/env bash
# Commit latency on the source at steady transaction rates, with and without semi-sync (issue 17).
#
#   scripts/bench/semisync.sh   (the same as: scripts/bench/run.sh semisync)
#
# For each rate and run, three set-ups in rotating order, each on a fresh throwaway mariadbd (own
# datadir and loopback port; the machine's own MariaDB is never touched): the source alone
# (async); the source with rpl_semi_sync_master_enabled, wait_point AFTER_SYNC and a long timeout,
# with binlog-server as its semi-sync replica (a task with source.semi_sync); the same source with a
# second mariadbd as its semi-sync replica (the reference). The load generator (benches/lag_load.rs)
# commits single-row InnoDB transactions at the rate, open loop; latency is due -> COMMIT returned.
# Each semi-sync run also prints the source's own averages for the run (Rpl_semi_sync_master_
# tx_avg_wait_time: a commit's wait for its ack; net_avg_wait_time: event sent -> ack back) and,
# for binlog-server, the buckets of its binlog_server_semi_sync_ack_seconds histogram that hold
# the run's p50 and p99 (event received -> ack sent): where the added latency is spent.
#
# Environment (all optional):
#   BENCH_SEMI_RATES="1000 5000"   target rates, transactions per second
#   BENCH_SEMI_SECONDS=10          length of each run
#   BENCH_SEMI_WARMUP_S=1          first seconds of each run not counted
#   BENCH_SEMI_WORKERS             connections of the load generator (default: max(4, rate / 250))
#   BENCH_RUNS=5                   runs per rate and set-up
#   BENCH_SERVER_BIN, BENCH_LOAD_BIN  existing binaries (skip the builds)
#   BENCH_SERVER_BIN_B             a second binlog-server binary: a fourth set-up, binlog-b (A/B)
#   BENCH_SERVER_B_ENV             BINLOG_SERVER_NAME=value ... for binlog-b (the same binary unless
#                                  BENCH_SERVER_BIN_B is set): e.g. BINLOG_SERVER_LOG_LEVEL=info
#   BENCH_SEMI_REPLICA_SYNC=0      1 adds replica-sync: the mariadbd replica with sync_relay_log=1
#                                  (it acks after syncing its relay log, as we ack after our fsync)
#   BENCH_KEEP=0                   1 keeps the work dir (logs, per-commit CSV files)
#   BENCH_TMPDIR, BENCH_OUT, BENCH_OUTPUT_DIR  work dir location; JSON results file; binlog dir
#   BINLOG_SERVER_WRITER_*         writer settings passed to binlog-server (default: built-in)
#
# Every process it starts is stopped by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" semisync "$@"
