#!/usr/bin/env bash
# Scale: one binlog-server with 1,000 tasks configured, all of them streaming at once (issue 20).
#
#   scripts/bench/scale.sh   (the same as: scripts/bench/run.sh scale)
#
# Builds the release binary, starts BENCH_SCALE_SOURCES throwaway mariadbd (own datadirs and
# loopback ports; the machine's own MariaDB is never touched) and binlog-server, creates the
# tasks (LATEST, round robin over the sources, distinct cluster_key values), starts the first
# BENCH_SCALE_STREAMING of them, puts a paced single-row write load on every source, and
# measures the RSS (sampled every 100 ms, and VmHWM) and CPU of binlog-server, then the API
# latency under that load with wrk (GET /api/tasks?limit=50, GET /api/tasks/{id}, /metrics; a
# closed loop: it slows down with the server), then at a fixed request rate (open loop: every
# request is due at its time and its latency counts from then), quiet and with a CPU hog pinned
# to core 0 (a neighbour's busy loop).
# At the end every streaming task must hold its source's final position as its checkpoint.
#
# Environment (all optional):
#   BENCH_SCALE_TASKS=1000      tasks configured
#   BENCH_SCALE_STREAMING=1000  tasks started (streaming)
#   BENCH_SCALE_SOURCES=4       mariadbd instances (tasks are spread round robin)
#   BENCH_SCALE_TX_PER_S=5      write load per source (transactions per second, paced in SQL);
#                               every streaming task of a source receives and fsyncs each of them
#                               (1,000 tasks at 5 tx/s: 5,000 events and up to 5,000 fsyncs/s);
#                               0: no load, the streams idle (heartbeats only)
#   BENCH_SCALE_STEADY_S=15     window for RSS and CPU before the API load
#   BENCH_SCALE_WRK_S=10        seconds per wrk run
#   BENCH_SCALE_WRK_CONNS=4     wrk connections (one thread)
#   BENCH_SCALE_IDLE_WRK=1      also one wrk run per endpoint before any task streams
#   BENCH_RUNS=3                wrk runs per endpoint, and open-loop runs, under load (medians)
#   BENCH_SCALE_OPEN_RATE=200   open-loop request rate (0: no open-loop runs)
#   BENCH_SCALE_OPEN_S=20       seconds per open-loop run
#   BENCH_SCALE_HOG=1           each open-loop run again with a CPU hog on core 0 (taskset)
#   BENCH_KEEP=0, BENCH_TMPDIR, BENCH_OUT, BENCH_OUTPUT_DIR   as in catchup.sh
#
# Needs wrk (Debian: apt-get install -y wrk). Every process it starts is stopped by PID on exit.
set -euo pipefail
exec "$(dirname "$0")/run.sh" scale "$@"
