#!/usr/bin/env bash
# Installs what one make target needs on Debian 12, and only what is missing.
#
#   scripts/setup-deps.sh build     compile binlog-server            (make run, make build)
#   scripts/setup-deps.sh demo      build + a throwaway MariaDB      (make demo)
#   scripts/setup-deps.sh package   build + the .deb tooling         (make deb, make release-assets)
#   scripts/setup-deps.sh test      all of the above + test servers  (make test)
#
# Idempotent and quiet: when everything is there it prints nothing, changes nothing and does
# not touch the network. It says what it installs, and exits 1 with the command to run when it
# cannot install (not root and no sudo, no apt-get, no dpkg). SKIP_SETUP_DEPS=1 skips it (a
# machine set up by other means). It never starts, stops or reconfigures the machine's own
# MariaDB service: the tests and the demo start their own mariadbd on ephemeral ports (if apt's
# postinst starts the packaged service, it is left alone).
set -euo pipefail

CARGO_DEB_VERSION=3.7.0

me=setup-deps
usage() { echo "usage: $0 build|demo|package|test" >&2; exit 2; }
level=${1:-}
case "$level" in
  build | demo | package | test) ;;
  *) usage ;;
esac
[ "${SKIP_SETUP_DEPS:-0}" = 1 ] && exit 0

in_level() { # in_level GROUP: whether $level includes GROUP
  case "$1:$level" in
    build:*) return 0 ;;
    demo:demo | demo:test | package:package | package:test | test:test) return 0 ;;
    *) return 1 ;;
  esac
}

# --- Debian packages ------------------------------------------------------------------------
apt_wanted=()
if in_level build; then
  apt_wanted+=(
    libmariadb-dev-compat  # diesel's mysql backend links the C client (libmysqlclient.so, headers)
    pkg-config             # lets mysqlclient-sys find it
  )
  # rustup's toolchain links through the system C compiler; Debian's rustc package brings it.
  if ! command -v cc >/dev/null 2>&1; then apt_wanted+=(gcc libc6-dev); fi
  # cargo fetches crates over HTTPS (installing rustup needed them too, so this is rare).
  if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then apt_wanted+=(ca-certificates); fi
fi
if in_level demo; then
  apt_wanted+=(
    mariadb-server         # mariadbd + mariadb-install-db: the demo's (and each test's) source
    mariadb-client         # the mariadb CLI for set-up SQL
    curl                   # the demo talks to the API
    python3                # ... and reads its JSON
  )
fi
if in_level package; then
  apt_wanted+=(
    dpkg-dev               # dpkg-shlibdeps: the .deb's library dependencies
    binutils               # objcopy/strip: the stripped binary and its separate debug info
  )
fi
if in_level test; then
  apt_wanted+=(
    procps                 # `kill`: the test harness sends SIGTERM to the processes it starts
    openssl                # the TLS tests make a throwaway CA and server certificates
    sqlite3                # tests read the embedded metadata database (ciphertext at rest)
    chromium               # the UI's browser test (playwright-core drives Debian's chromium)
    adduser                # the package test installs the .deb, whose postinst adds the user
    gdb                    # a hung server's thread stacks in a failing test's message
  )
  if ! { command -v node && command -v npm; } >/dev/null 2>&1; then apt_wanted+=(nodejs npm); fi
  if ! python3 -m pip --version >/dev/null 2>&1; then apt_wanted+=(python3-pip); fi
fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "$me: dpkg-query not found: cannot tell which of these Debian packages are installed:" >&2
  echo "  ${apt_wanted[*]}" >&2
  echo "On another system, install their equivalents, then run again with SKIP_SETUP_DEPS=1." >&2
  exit 1
fi
is_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

apt_missing=()
for pkg in "${apt_wanted[@]}"; do
  is_installed "$pkg" || apt_missing+=("$pkg")
done

# Runs a command as root: directly when we are root, else through sudo (checked below).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ "${#apt_missing[@]}" -gt 0 ]; then
  install_cmd="apt-get install --no-install-recommends ${apt_missing[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$me: missing Debian packages: ${apt_missing[*]}" >&2
    echo "$me: cannot install them: apt-get not found (this script installs with apt, on Debian 12)." >&2
    echo "Install them (or your system's equivalents), then run again (or set SKIP_SETUP_DEPS=1)." >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
    echo "$me: missing Debian packages: ${apt_missing[*]}" >&2
    echo "$me: cannot install them: not root, and sudo is not available. As root, run:" >&2
    echo "  apt-get update && $install_cmd" >&2
    exit 1
  fi
  echo "$me: installing with apt: ${apt_missing[*]}"
  # apt-get update only when something is actually going to be installed.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${apt_missing[@]}" >/dev/null
  for pkg in "${apt_missing[@]}"; do
    is_installed "$pkg" || { echo "$me: apt-get finished but $pkg is not installed" >&2; exit 1; }
  done
fi

# --- the .deb builder -----------------------------------------------------------------------
if in_level package; then
  have_cargo_deb="$(cargo deb --version 2>/dev/null | awk '{print $NF}' || true)"
  if [ "$have_cargo_deb" != "$CARGO_DEB_VERSION" ]; then
    echo "$me: installing cargo-deb $CARGO_DEB_VERSION (cargo install; a few minutes, once)"
    cargo install --quiet --locked cargo-deb --version "$CARGO_DEB_VERSION"
    cargo deb --version >/dev/null 2>&1 || { echo "$me: cargo-deb installed, but cargo deb does not run" >&2; exit 1; }
  fi
fi

in_level test || exit 0

# --- python tools ---------------------------------------------------------------------------
# Installs a pip package when its command is missing: pip_install <command> <requirement>.
pip_install() {
  local cmd=$1 req=$2
  command -v "$cmd" >/dev/null 2>&1 && return
  echo "$me: installing $req (pip)"
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
    echo "$me: $req installed but $cmd is not on PATH" >&2
    exit 1
  fi
}

pip_install moto_server 'moto[server]'          # the S3-compatible test server
pip_install schemathesis 'schemathesis>=4,<5'    # the API checked against its OpenAPI document

# --- browser end-to-end tests -------------------------------------------------------------
# tests/it/ui_e2e.rs drives the UI with playwright-core (npm, pinned by tests/e2e's lock file)
# and Debian's chromium (above): playwright never downloads a browser of its own.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "$me: node $(node --version) is older than 20, which playwright-core needs;" \
    "the browser tests will be skipped" >&2
fi

e2e_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e"
playwright_pkg="$e2e_dir/node_modules/playwright-core/package.json"
want_playwright="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["packages"]["node_modules/playwright-core"]["version"])' "$e2e_dir/package-lock.json")"
have_playwright="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$playwright_pkg" 2>/dev/null || true)"
if [ "$have_playwright" != "$want_playwright" ]; then
  echo "$me: installing playwright-core@$want_playwright (npm ci in tests/e2e)"
  # No browser download: playwright-core has none, and chromium comes from apt above.
  (cd "$e2e_dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
