#!/usr/bin/env bash
# Builds the seed corpora under fuzz/corpus/ from the real MySQL binlog fixtures (which stay in
# shared/fixtures and are never copied into fuzz/ in git), plus a few synthetic protocol packets.
#
#   fuzz/seed.sh            # fixtures from $BINLOG_FIXTURES, ../shared/fixtures/mysql-binlogs
#                           # next to the checkout, or /work/shared/fixtures/mysql-binlogs
#
# Re-running it is harmless: seeds are rewritten, anything the fuzzer added is kept.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fixtures=""
for c in "${BINLOG_FIXTURES:-}" "$here/../../shared/fixtures/mysql-binlogs" /work/shared/fixtures/mysql-binlogs; do
    if [ -n "$c" ] && [ -f "$c/mariadb-bin.000001" ]; then
        fixtures=$c
        break
    fi
done
if [ -z "$fixtures" ]; then
    echo "seed.sh: MySQL binlog fixtures not found; set BINLOG_FIXTURES to the folder holding mariadb-bin.000001" >&2
    exit 1
fi

python3 - "$fixtures" "$here/corpus" "$here/../config.example.yaml" <<'PY'
import os, struct, sys, zlib

fixtures, corpus, example_config = sys.argv[1], sys.argv[2], sys.argv[3]
MAGIC = b"\xfebin"

def out(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def events(data):
    """(offset, bytes) of each complete event after the magic, like FileEvents."""
    pos, evs = 4, []
    while pos + 19 <= len(data):
        size = struct.unpack_from("<I", data, pos + 9)[0]
        if size < 19 or pos + size > len(data):
            break
        evs.append((pos, data[pos:pos + size]))
        pos += size
    return evs

def artificial_rotate(name, pos, crc):
    body = struct.pack("<Q", pos) + name
    size = 19 + len(body) + (4 if crc else 0)
    ev = struct.pack("<IBIIIH", 0, 4, 1, size, 0, 0x20) + body
    if crc:
        ev += struct.pack("<I", zlib.crc32(ev) & 0xffffffff)
    return ev

def chunks(evs):
    return b"".join(struct.pack("<H", len(e)) + e for e in evs if len(e) <= 0xffff)

n_fixtures = 0
for fname in sorted(os.listdir(fixtures)):
    path = os.path.join(fixtures, fname)
    if not os.path.isfile(path):
        continue
    data = open(path, "rb").read()
    # event_parsers: the file as it is on disk.
    out("event_parsers", fname, data)
    if not data.startswith(MAGIC):
        continue
    n_fixtures += 1
    evs = [e for _, e in events(data)]
    if not evs:
        continue
    maria = b"MariaDB" in evs[0][:80] or fname.startswith("mariadb")
    flavor = 0x02 if maria else 0x00
    rot = lambda crc: artificial_rotate(b"f.000001", 4, crc)
    # stream_tracker (layout in fuzz_targets/stream_tracker.rs): flags, u32 end_pos, has_tx, events.
    def st(flags, end_pos, has_tx, evlist):
        return bytes([flags]) + struct.pack("<I", end_pos) + bytes([has_tx]) + chunks(evlist)
    out("stream_tracker", fname + ".crc", st(0x09 | flavor, 0, 0, [rot(True)] + evs))
    out("stream_tracker", fname + ".nocrc", st(0x00 | flavor, 0, 0, [rot(False)] + evs))
    out("stream_tracker", fname + ".gtid", st(0x49 | flavor, 0, 0, [rot(True)] + evs))
    offs = events(data)
    if len(offs) > 3:
        mid = offs[2][0] + len(offs[2][1])
        out("stream_tracker", fname + ".open", st(0x19 | flavor, mid, 1, [rot(True)] + evs))
        out("stream_tracker", fname + ".sealed", st(0x39 | flavor, 0, 0, [rot(True)] + evs))
    # packets: the file as a binlog dump stream (OK byte, event) in raw framing, 1 MiB limit.
    stream, seq = b"", 0
    for e in evs[:40]:
        p = b"\x00" + e
        stream += struct.pack("<I", len(p))[:3] + bytes([seq]) + p
        seq = (seq + 1) & 0xff
    out("packets", fname, bytes([4, 0x00]) + stream)
    # gtid: PREVIOUS_GTIDS bodies (mode 0).
    for i, e in enumerate(evs):
        if e[4] == 35:
            out("gtid", "%s.prev%d" % (fname, i), b"\x00" + e[19:-4])
            out("gtid", "%s.prev%d.nocrc" % (fname, i), b"\x00" + e[19:])

# packets: continuation packets (segment encoding, see fuzz_targets/packets.rs), with a 64 MiB limit and with limits that
# refuse them; a read schedule with short reads and Pending.
def lit(b):
    return bytes([len(b)]) + b
def fill_chunk(v):
    # 0xFF, 'B', d, byte: a run of 0xFFFFFF - d copies (see fuzz_targets/packets.rs).
    return b"\xffB\x00" + bytes([v])
big = lit(b"\xff\xff\xff\x00") + fill_chunk(0x41) + lit(b"\x0a\x00\x00\x01") + lit(b"0123456789")
exact = lit(b"\xff\xff\xff\x00") + fill_chunk(0x00) + lit(b"\x00\x00\x00\x01")
out("packets", "synthetic.16mib-plus-10", bytes([9, 0x80]) + big)
out("packets", "synthetic.16mib-exact", bytes([9, 0x80]) + exact)
out("packets", "synthetic.16mib-over-limit", bytes([7, 0x80]) + big)
out("packets", "synthetic.schedule", bytes([4, 0x03, 0x03, 0x61, 0x00]) + b"\x05\x00\x00\x00hello\x05\x00\x00\x01world")
out("packets", "synthetic.err", bytes([4, 0x00]) + b"\x12\x00\x00\x00\xff\x15\x04#28000Access denied")

# handshake: greetings and auth switch requests as MariaDB and MySQL send them, an ERR packet.
def greeting(version, caps, plugin, mariadb_caps=0):
    g = b"\x0a" + version + b"\x00" + struct.pack("<I", 42) + b"abcdefgh" + b"\x00"
    g += struct.pack("<H", caps & 0xffff) + b"\x2d" + struct.pack("<H", 2) + struct.pack("<H", caps >> 16)
    g += bytes([21]) + b"\x00" * 6 + struct.pack("<I", mariadb_caps)
    g += b"ijklmnopqrst\x00" + plugin + b"\x00"
    return g
out("handshake", "mariadb-10.11", greeting(b"5.5.5-10.11.19-MariaDB-0+deb12u1", 0x81fff7fe, b"mysql_native_password", 0x1d))
out("handshake", "mysql-8.0", greeting(b"8.0.36", 0xdfffffff, b"caching_sha2_password"))
out("handshake", "mysql-5.5-ed25519", greeting(b"5.5.5-11.4.2-MariaDB", 0x81fff7fe, b"client_ed25519", 0x1d))
out("handshake", "switch-native", b"\xfemysql_native_password\x00" + b"A" * 20 + b"\x00")
out("handshake", "switch-ed25519", b"\xfeclient_ed25519\x00" + b"B" * 32)
out("handshake", "err", b"\xff\x15\x04#28000Access denied for user 'repl'")

# gtid: one seed per mode.
out("gtid", "text", b"\x01" + b"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,00000000-0000-0000-0000-000000000001:tag_a:1-3")
out("gtid", "mariadb", b"\x02" + b"0-1-100,1-2-5")
out("gtid", "varlen", b"\x03" + bytes([10, 0x01, 0x02, 0x03, 0x07, 1, 2, 3, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]))
out("gtid", "algebra", b"\x04" + bytes([0x00, 1, 0, 5, 0, 0, 0, 0, 0, 0] * 3 + [0x05, 1, 1, 9, 0, 0, 0, 0, 0, 0, 0x06, 0, 0, 1, 0, 0, 0, 0, 0, 0]))

# names.
for i, n in enumerate([b"mysql-bin.000001", b"mariadb-bin.000042\xffmariadb-bin.000043", b"bin.999999\xffbin.1000000", b"bug32407.001"]):
    out("names", "seed%d" % i, n)

# config.
if os.path.isfile(example_config):
    out("config", "config.example.yaml", open(example_config, "rb").read())
out("config", "minimal.yaml", b"listen_addr: 127.0.0.1:8080\nlog:\n  level: debug\n")

print("seed.sh: %d fixtures -> %s" % (n_fixtures, corpus))
for t in sorted(os.listdir(corpus)):
    print("  %-15s %d files" % (t, len(os.listdir(os.path.join(corpus, t)))))
PY
