#!/usr/bin/env bash
# Upload throughput to an S3 test server while a task streams, and streaming with and without upload.
#
#   scripts/bench/upload.sh   (the same as: scripts/bench/run.sh upload)
#
# Builds the release binary, starts a throwaway mariadbd with a small max_binlog_size (own
# datadir and loopback port; the machine's own MariaDB is never touched), generates a >= 1 GiB
# bulk backlog (so many sealed files), then per run a fresh binlog-server catches up on it from
# the first file: once without upload, once with upload.enabled to a fresh moto_server (the S3
# server of the integration tests) on a loopback port. Streaming ends at the 'checkpoint
# durable' log line at the source's position; the upload run ends when the catalog
# (GET /api/tasks/{id}/files) shows every sealed file UPLOADED and verified. Run 1 also
# downloads every object and compares its sha256 with the source's file.
#
# Environment (all optional):
#   BENCH_RUNS=3                  runs of each kind (alternating which goes first)
#   BENCH_UPLOAD_MIB=1024         backlog size
#   BENCH_UPLOAD_BINLOG_MIB=64    the source's max_binlog_size
#   BENCH_TIMEOUT_S=900           per run
#   BENCH_KEEP=0, BENCH_TMPDIR, BENCH_OUT, BENCH_OUTPUT_DIR   as in catchup.sh
#   BINLOG_SERVER_WRITER_*        writer settings passed to binlog-server
#
# Needs moto_server and boto3 (scripts/setup-deps.sh test). Every process it starts is stopped
# by PID on exit; the work dir is removed unless BENCH_KEEP=1.
set -euo pipefail
exec "$(dirname "$0")/run.sh" upload "$@"
