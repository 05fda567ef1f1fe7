#!/usr/bin/env bash
# Peak memory of binlog-server under a stream of 256 MiB events.
#
#   scripts/bench/bigevents.sh   (the same as: scripts/bench/run.sh bigevents)
#
# Builds the release binary, starts a throwaway mariadbd (max_allowed_packet=1G, own datadir
# and loopback port; the machine's own MariaDB is never touched), then per run a fresh
# binlog-server with a task from the first binlog file: run 1 streams while BENCH_BIG_EVENTS
# rows of BENCH_BIG_EVENT_MIB MiB (LONGBLOB, one Write_rows event each) are written, the other
# runs catch up on the same files. Reports VmHWM (peak RSS) against the largest event in the
# source's files, and checks every fetched file byte for byte against the source's.
#
# Environment (all optional):
#   BENCH_BIG_EVENTS=4          rows (events) written
#   BENCH_BIG_EVENT_MIB=256     size of each row's blob (the task's replication.max_event_bytes
#                               default, 1 GiB, admits it)
#   BENCH_RUNS=3                run 1 live, the others catch-up
#   BENCH_TIMEOUT_S=600         per run
#   BENCH_KEEP=0, BENCH_TMPDIR, BENCH_OUT, BENCH_OUTPUT_DIR   as in catchup.sh
#
# Every process it starts is stopped by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" bigevents "$@"
