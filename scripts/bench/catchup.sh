#!/usr/bin/env bash
# Catch-up throughput: binlog-server (fsync before every checkpoint) against
# `mariadb-binlog --read-from-remote-server --raw` (no fsync), on the same backlog.
#
#   scripts/bench/catchup.sh   (the same as: scripts/bench/run.sh catchup)
#
# Builds the release binary, starts a throwaway mariadbd (own datadir and loopback port; the
# machine's own MariaDB is never touched), generates >= 1 GiB of binlog per profile (bulk: 1-4 KB
# rows in 12 MB transactions; oltp: single-row transactions of ~460 bytes; sysbench: sysbench's
# oltp_write_only), then runs every tool once per round, BENCH_RUNS rounds, the order rotated per
# round, checks that the files are byte-identical, and prints per tool the median MiB/s and CPU-s
# per GiB (its own and the source mariadbd's) with their spread, and the ratios of medians.
# `uptime`'s load is printed before, during and after.
#
# Environment (all optional):
#   BENCH_RUNS=5                rounds per profile (medians are reported)
#   BENCH_SERVER_BIN_B          a second binlog-server binary (an A/B run: A = BENCH_SERVER_BIN or
#                               the one built here, B = this one), interleaved with A and mariadb-binlog
#   BENCH_PROFILES="bulk oltp"  which profiles (bulk, oltp, sysbench)
#   BENCH_BULK_MIB=1024         backlog size of the bulk profile
#   BENCH_OLTP_MIB=1024         backlog size of the oltp profile
#   BENCH_SYSBENCH_MIB=1024     backlog size of the sysbench profile (needs sysbench:
#                               apt-get install -y sysbench)
#   BENCH_QUIET_WAIT_S=120      before each run, wait at most this long for a quiet machine
#   BENCH_SYSCALLS=1            one extra (untimed) run of each tool under `perf stat` (syscall counts)
#   BENCH_PERF=0                one extra run of binlog-server under `perf record` (needs perf)
#   BENCH_KEEP=0                1 keeps the work dir (source datadir, logs, fetched files)
#   BENCH_TMPDIR                where the work dir goes (default: $TMPDIR or /tmp)
#   BENCH_OUT                   also write the results as JSON to this file
#   BINLOG_SERVER_WRITER_*      writer settings passed to binlog-server (default: built-in defaults)
#
# Every process it starts is stopped by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" catchup "$@"
