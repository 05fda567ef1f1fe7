#!/usr/bin/env bash
# Starts a throwaway MariaDB with the binlog on, for demos and manual testing.
#
#   scripts/dev-source.sh start [DIR] [PORT]   start (DIR default /tmp/binlog-dev-source, PORT 3307)
#   scripts/dev-source.sh stop  [DIR]          stop it (by the PID it recorded)
#   scripts/dev-source.sh sql   [DIR] SQL      run SQL as root
#
# It never touches the machine's own MariaDB: its own datadir, socket and port, loopback only.
# A replication user repl / repl-pass is created.
set -euo pipefail

cmd=${1:-start}
dir=${2:-/tmp/binlog-dev-source}
port=${3:-3307}

find_bin() {
  for c in "$@"; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
    for d in /usr/sbin /usr/bin /usr/local/bin; do
      if [ -x "$d/$c" ]; then echo "$d/$c"; return 0; fi
    done
  done
  echo "error: none of $* found; run scripts/setup-deps.sh demo" >&2
  exit 1
}

client() {
  "$(find_bin mariadb mysql)" --no-defaults -h127.0.0.1 -P"$(cat "$dir/port")" -uroot "$@"
}

case "$cmd" in
  start)
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "already running: pid $(cat "$dir/pid"), port $(cat "$dir/port"), dir $dir"
      exit 0
    fi
    mariadbd=$(find_bin mariadbd mysqld)
    install_db=$(find_bin mariadb-install-db mysql_install_db)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    user_opt=()
    [ "$(id -u)" = 0 ] && user_opt=(--user=root)
    if [ ! -d "$dir/data/mysql" ]; then
      # --force --skip-name-resolve: a host whose own name does not resolve (a chroot without
      # /etc/hosts) must not stop the set-up (--force skips only that check); clients connect
      # by IP anyway.
      "$install_db" --no-defaults --datadir="$dir/data" --auth-root-authentication-method=normal \
        --skip-test-db --force --skip-name-resolve "${user_opt[@]}" >"$dir/install.log" 2>&1 \
        || { cat "$dir/install.log" >&2; exit 1; }
    fi
    echo "$port" >"$dir/port"
    "$mariadbd" --no-defaults --datadir="$dir/data" --socket="$dir/sock" --port="$port" \
      --bind-address=127.0.0.1 --pid-file="$dir/mariadbd.pid" \
      --log-bin="$dir/data/mariadb-bin" --binlog-format=ROW --binlog-checksum=CRC32 \
      --max-binlog-size=1M --server-id=1 --gtid-domain-id=0 --max-allowed-packet=64M \
      --innodb-buffer-pool-size=64M --skip-name-resolve "${user_opt[@]}" \
      >"$dir/mariadbd.log" 2>&1 &
    echo $! >"$dir/pid"
    for _ in $(seq 1 300); do
      if client -e "SELECT 1" >/dev/null 2>&1; then break; fi
      if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        echo "mariadbd exited; log:" >&2; tail -n 30 "$dir/mariadbd.log" >&2; exit 1
      fi
      sleep 0.1
    done
    client -e "SELECT 1" >/dev/null
    client <<'SQL'
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'repl-pass';
GRANT REPLICATION SLAVE, BINLOG MONITOR, REPLICATION MASTER ADMIN, SLAVE MONITOR ON *.* TO 'repl'@'%';
CREATE DATABASE IF NOT EXISTS demo;
SQL
    echo "MariaDB running: host 127.0.0.1 port $port user repl password repl-pass (pid $(cat "$dir/pid"), dir $dir)"
    ;;
  stop)
    if [ -f "$dir/pid" ]; then
      pid=$(cat "$dir/pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$dir/pid"
      echo "stopped"
    else
      echo "not running"
    fi
    ;;
  sql)
    shift 2 || true
    client -e "$*"
    ;;
  *)
    echo "usage: $0 start|stop|sql [DIR] [PORT|SQL]" >&2
    exit 2
    ;;
esac
