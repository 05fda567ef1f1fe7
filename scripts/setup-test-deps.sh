#!/usr/bin/env bash
# Installs what the test suite needs, and only what is missing (Debian 12).
#
# Idempotent: a second run changes nothing and does not touch the network. It never starts,
# stops or reconfigures the machine's own MariaDB service: the tests start their own mariadbd
# per test on ephemeral ports (if apt's postinst starts the packaged service, it is left alone).
set -euo pipefail

APT_PACKAGES=(
  mariadb-server         # mariadbd + mariadb-install-db: a real source server per test
  mariadb-client         # the mariadb CLI the harness uses for set-up SQL
  libmariadb-dev-compat  # diesel's mysql backend links the C client (libmysqlclient.so)
  libmariadb-dev         # ... and its headers; must exist before the first cargo build
  pkg-config             # lets mysqlclient-sys find the library
  procps                 # `kill`: the test harness sends SIGTERM to the processes it starts
  openssl                # the TLS tests make a throwaway CA and server certificates
  sqlite3                # tests read the embedded metadata database (ciphertext at rest)
)

# Runs a command as root: directly when we are root, through sudo when it is available.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "setup-test-deps: need root (or sudo) to run: $*" >&2
    exit 1
  fi
}

report() { printf '%-24s %s\n' "$1" "$2"; }

# --- apt packages -------------------------------------------------------------------------
apt_missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
    report "$pkg" present
  else
    apt_missing+=("$pkg")
  fi
done

if [ "${#apt_missing[@]}" -gt 0 ]; then
  # apt-get update only when something is actually going to be installed.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" >/dev/null
  for pkg in "${apt_missing[@]}"; do
    report "$pkg" installed
  done
fi

# --- python tools ---------------------------------------------------------------------------
# Installs a pip package when its command is missing: pip_install <command> <requirement>.
pip_install() {
  local cmd=$1 req=$2
  if command -v "$cmd" >/dev/null 2>&1; then
    report "$req" present
    return
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3-pip >/dev/null
  fi
  # Debian 12 marks its system Python as externally managed (PEP 668) and pip then refuses to
  # install; a pyenv/venv Python has no marker and needs no flag.
  local flags=(--quiet)
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    flags+=(--break-system-packages)
  fi
  python3 -m pip install "${flags[@]}" "$req"
  # pyenv only exposes new console scripts after a rehash of its shims.
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
  hash -r
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "setup-test-deps: $req installed but $cmd is not on PATH" >&2
    exit 1
  fi
  report "$req" installed
}

pip_install moto_server 'moto[server]'          # the S3-compatible test server
pip_install schemathesis 'schemathesis>=4,<5'    # the API checked against its OpenAPI document

# --- browser end-to-end tests (reserved) ---------------------------------------------------
# TODO(browser-e2e): install chromium (apt) and playwright-core (npm) here, following the same
# pattern: check first, install only when missing, print "present"/"installed".
