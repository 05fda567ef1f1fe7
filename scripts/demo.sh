#!/usr/bin/env bash
# A five-minute tour: a throwaway MariaDB source, binlog-server pulling from it, files on disk.
#
# Starts its own mariadbd (temp datadir, ephemeral port; the machine's MariaDB is not touched)
# and binlog-server on BINLOG_SERVER_LISTEN_ADDR (default 127.0.0.1:8080), creates and starts a
# task from the first binlog file, writes some rows, and shows the task, its checkpoint and the
# local files. On an interactive terminal it then waits for Ctrl-C; DEMO_WAIT=0 exits at once.
# Everything it started is stopped by PID on exit; DEMO_KEEP=1 keeps the demo dir.
set -euo pipefail
cd "$(dirname "$0")/.."

listen_addr="${BINLOG_SERVER_LISTEN_ADDR:-127.0.0.1:8080}"
base_url="http://$listen_addr"
demo_wait="${DEMO_WAIT:-$([ -t 0 ] && echo 1 || echo 0)}"

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
find_bin() { command -v "$1" 2>/dev/null || { for d in /usr/sbin /usr/bin; do [ -x "$d/$1" ] && { echo "$d/$1"; return; }; done; die "$1 not found: run scripts/setup-deps.sh demo"; }; }

# Polls "$@" until it succeeds, for at most $1 seconds ($2 names what we wait for).
wait_for() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $what"
    sleep 0.2
  done
}

client=$(find_bin mariadb)
command -v curl >/dev/null || die "curl is required"

demo_dir="${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/binlog-demo.XXXXXX")}"
mkdir -p "$demo_dir"
db_pid="" server_pid="" interrupted=0
cleanup() {
  local rc=$?
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  # dev-source.sh waits for mariadbd to exit before the directory is removed.
  [ -n "$db_pid" ] && scripts/dev-source.sh stop "$demo_dir/mariadb" >/dev/null 2>&1 || true
  # Ctrl-C is how an interactive demo ends: only a real failure keeps the files for a look.
  if [ "${DEMO_KEEP:-0}" = 1 ] || { [ "$rc" -ne 0 ] && [ "$interrupted" = 0 ]; }; then
    echo "demo files kept in $demo_dir"
  else
    rm -rf "$demo_dir"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'interrupted=1; exit 130' INT TERM

say "building binlog-server"
cargo build --quiet
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server_bin="$target_dir/debug/binlog-server"

say "starting a throwaway MariaDB source in $demo_dir/mariadb (scripts/dev-source.sh)"
db_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
scripts/dev-source.sh start "$demo_dir/mariadb" "$db_port"
db_pid=$(cat "$demo_dir/mariadb/pid")
sql() { "$client" --no-defaults -h127.0.0.1 -P"$db_port" -uroot --batch --skip-column-names -e "$1"; }
sql "CREATE TABLE demo.orders (id INT PRIMARY KEY, item VARCHAR(64));
     INSERT INTO demo.orders VALUES (1, 'tea'), (2, 'coffee');"

say "starting binlog-server on $listen_addr"
BINLOG_SERVER_LISTEN_ADDR="$listen_addr" BINLOG_SERVER_DATA_DIR="$demo_dir/server-data" \
  BINLOG_SERVER_LOG_FILE="$demo_dir/server.log" "$server_bin" serve >"$demo_dir/server.console" 2>&1 &
server_pid=$!
wait_for 30 "$base_url/healthz" curl -fsS "$base_url/healthz"
kill -0 "$server_pid" 2>/dev/null || die "binlog-server exited: $(tail -5 "$demo_dir/server.console")"
echo "binlog-server pid $server_pid: GET /healthz -> $(curl -fsS "$base_url/healthz")"

say "creating a task that pulls from the first binlog file"
task=$(curl -sS -X POST "$base_url/api/tasks" -H 'Content-Type: application/json' -d "{
  \"name\": \"demo\", \"cluster_key\": \"demo\",
  \"source\": {\"host\": \"127.0.0.1\", \"port\": $db_port, \"user\": \"repl\", \"password\": \"repl-pass\", \"flavor\": \"mariadb\"},
  \"start\": {\"mode\": \"FILE_POS\", \"file\": \"mariadb-bin.000001\", \"pos\": 4},
  \"storage\": {\"retention_days\": 7}
}")
echo "$task"
task_id=$(printf '%s' "$task" | python3 -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))' 2>/dev/null || true)
[ -n "$task_id" ] || die "task creation did not return an id"
curl -sS -X POST "$base_url/api/tasks/$task_id/start" -H "X-Requested-With: demo.sh"; echo

say "writing to the source and rotating its binlog"
sql "INSERT INTO demo.orders VALUES (3, 'cocoa'), (4, 'water'); FLUSH BINARY LOGS;
     UPDATE demo.orders SET item = 'green tea' WHERE id = 1;"
sql "SHOW BINARY LOGS"

say "waiting (up to 20 s) for the checkpoint to reach the source's position"
want=$(sql "SHOW MASTER STATUS" | cut -f1,2)
checkpoint="" got=""
deadline=$((SECONDS + 20))
while [ "$SECONDS" -lt "$deadline" ]; do
  checkpoint=$(curl -sS "$base_url/api/tasks/$task_id/checkpoint")
  got=$(printf '%s' "$checkpoint" | python3 -c 'import json, sys; c = json.load(sys.stdin); print(c.get("file"), c.get("pos"), sep="\t")' 2>/dev/null || true)
  [ "$got" = "$want" ] && break
  sleep 0.5
done
echo "source at:  $want"
echo "checkpoint: $checkpoint"
[ "$got" = "$want" ] || echo "demo: the checkpoint did not reach the source's position within 20 s" >&2

say "the task and its local files"
curl -sS "$base_url/api/tasks/$task_id"; echo
curl -sS "$base_url/api/tasks/$task_id/files"; echo
# The newest file is still open: while it is, the source's copy carries the "in use" flag in its
# header, which the dump stream does not, so only the sealed files are compared byte for byte.
mapfile -t local_files < <(find "$demo_dir/server-data" -type f -name 'mariadb-bin.[0-9]*' | sort)
for local_file in "${local_files[@]}"; do
  name=$(basename "$local_file")
  size=$(stat -c %s "$local_file")
  if [ "$local_file" = "${local_files[-1]}" ]; then
    echo "$name: $size bytes (open)"
  elif cmp -s "$local_file" "$demo_dir/mariadb/data/$name"; then
    echo "$name: $size bytes (sealed), byte-identical to the source's file"
  else
    echo "$name: $size bytes (sealed), DIFFERS from the source's file"
  fi
done

if [ "$demo_wait" = 1 ]; then
  say "running: API at $base_url/api/tasks, source on 127.0.0.1:$db_port. Ctrl-C stops both."
  wait "$server_pid"
fi
