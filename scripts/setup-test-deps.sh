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

# --- browser end-to-end tests -------------------------------------------------------------
# tests/it/ui_e2e.rs drives the UI with playwright-core (npm, pinned by tests/e2e's lock file)
# and Debian's chromium: playwright never downloads a browser of its own.
if dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q '^install ok installed$'; then
  report chromium present
else
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  report chromium installed
fi

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  report nodejs present
else
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  report nodejs installed
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "setup-test-deps: node $(node --version) is older than 20, which playwright-core needs;" \
    "the browser tests will be skipped" >&2
fi

e2e_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e"
playwright_pkg="$e2e_dir/node_modules/playwright-core/package.json"
want_playwright="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["packages"]["node_modules/playwright-core"]["version"])' "$e2e_dir/package-lock.json")"
have_playwright="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$playwright_pkg" 2>/dev/null || true)"
if [ "$have_playwright" = "$want_playwright" ]; then
  report "playwright-core@$want_playwright" present
else
  # No browser download: playwright-core has none, and chromium comes from apt above.
  (cd "$e2e_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  report "playwright-core@$want_playwright" installed
fi
