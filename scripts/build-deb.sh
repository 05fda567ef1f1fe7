#!/usr/bin/env bash
# Builds the Debian package around a binary cargo has already built (it never compiles).
#
#   scripts/build-deb.sh [--profile release|dev] [--fast] [--output DIR]
#
# release (make deb, make release-assets): the stripped binary in the .deb, its debug info in a
#   binlog-server-dbgsym .ddeb beside it.
# dev (tests/it/package.rs): the debug binary the test run already has, stripped, with fast
#   compression: the same package contents without a release build.
#
# The man pages and shell completions are generated here by the binary being packaged, into
# <target>/<profile>/deb-assets/ (Cargo.toml's [package.metadata.deb] lists them). Prints the
# path of each package built.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-deb: $*" >&2; exit 1; }
profile=release
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    --fast) extra+=(--fast); shift ;;
    --output) extra+=(--output "${2:?--output needs a directory}"); shift 2 ;;
    *) die "unknown argument $1 (usage: $0 [--profile release|dev] [--fast] [--output DIR])" ;;
  esac
done
case "$profile" in
  release) profile_dir=release; extra+=(--dbgsym --compress-debug-symbols=zlib) ;;
  dev) profile_dir=debug ;;
  *) die "--profile must be release or dev" ;;
esac
# (cargo also finds subcommands in $CARGO_HOME/bin when that is not on PATH.)
cargo deb --version >/dev/null 2>&1 || die "cargo-deb is not installed: run scripts/setup-deps.sh package"

target_dir=$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
bin="$target_dir/$profile_dir/binlog-server"
[ -x "$bin" ] || die "$bin is missing: build it first (cargo build --profile $profile)"

assets="$target_dir/$profile_dir/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/man"
"$bin" man --dir "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/binlog-server.bash"
"$bin" completions zsh >"$assets/_binlog-server"
"$bin" completions fish >"$assets/binlog-server.fish"

cargo deb --no-build --locked --profile "$profile" "${extra[@]}"
