#!/usr/bin/env bash
# The release assets, from one release build, into DIST (default dist/):
#
#   binlog-server_<version>_linux_amd64.tar.gz        stripped binary, README, example config
#   binlog-server_<version>_linux_amd64.debug.tar.gz  its debug info (binlog-server.debug; the
#                                                      binary names it in .gnu_debuglink)
#   binlog-server_<version>-1_amd64.deb               the package (scripts/build-deb.sh)
#   binlog-server-dbgsym_<version>-1_amd64.ddeb       the package's debug info
#   checksums.txt                                     sha256 of each of the above
#
# Run by `make release-assets`, after `cargo build --release --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "release-assets: $*" >&2; exit 1; }
dist=${DIST:-dist}
meta=$(cargo metadata --format-version 1 --no-deps)
version=$(printf '%s' "$meta" | grep -o '"name":"binlog-server","version":"[^"]*"' | cut -d'"' -f8)
target_dir=$(printf '%s' "$meta" | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
[ -n "$version" ] && [ -n "$target_dir" ] || die "cannot read the version or target dir from cargo metadata"
bin="$target_dir/release/binlog-server"
[ -x "$bin" ] || die "$bin is missing: run cargo build --release --locked first"
for f in README.md config.example.yaml; do
  [ -f "$f" ] || die "$f is missing"
done

name="binlog-server_${version}_linux_amd64"
mkdir -p "$dist"
rm -rf "${dist:?}/$name" "$dist/$name.tar.gz" "$dist/$name.debug.tar.gz" "$dist"/binlog-server*.deb \
  "$dist"/binlog-server*.ddeb "$dist/checksums.txt"

# Debug info apart (compressed, still readable by gdb and by Rust's backtraces), then a copy
# without it that points to it.
stage="$dist/$name"
mkdir -p "$stage" "$stage.debug"
objcopy --only-keep-debug --compress-debug-sections=zlib "$bin" "$stage.debug/binlog-server.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$stage.debug/binlog-server.debug" \
  "$bin" "$stage/binlog-server"
cp README.md config.example.yaml "$stage/"
if [ -f LICENSE ]; then cp LICENSE "$stage/"; fi
tar -C "$dist" -czf "$dist/$name.tar.gz" "$name"
tar -C "$stage.debug" -czf "$dist/$name.debug.tar.gz" binlog-server.debug
rm -rf "$stage" "$stage.debug"

scripts/build-deb.sh --profile release --output "$dist" >/dev/null

(cd "$dist" && sha256sum "$name.tar.gz" "$name.debug.tar.gz" binlog-server*.deb binlog-server*.ddeb >checksums.txt)
ls -l "$dist"
cat "$dist/checksums.txt"
