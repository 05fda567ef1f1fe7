#!/usr/bin/env python3
"""Why an fsync stalls now and then: a neighbour's writes that nobody syncs, written back in a
burst once they are old enough (issues 17 and 18: the 20-180 ms stalls seen in the semi-sync and
fan-out benches, and only in the set-ups that fsync on the commit path).

    python3 scripts/bench/neighbour_writeback.py [DIR]

A loop of small appends, each followed by fdatasync, at BENCH_NW_RATE (1,000/s) records of 400
bytes (a semi-sync or relay commit's share of a write batch), for BENCH_NW_SECONDS (40: longer
than the kernel's vm.dirty_expire_centisecs, 30 s by default); interleaved round by round with and
without a neighbour process that appends BENCH_NW_MIB_S (0.5: what a source mariadbd with
sync_binlog=0 writes to its binlog at 1k single-row tx/s) MiB/s to another file in DIR and never
syncs. BENCH_RUNS rounds (2). Per round: the fdatasync p50 / p99 / p99.9 / max, each fdatasync
over 10 ms with its second since the start, and the most unwritten data (Dirty + Writeback of
/proc/meminfo) the machine held. DIR (default BENCH_TMPDIR, TMPDIR or /tmp) should be on the disk
binlog-server writes to. The files are removed after each round.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import DirtySampler, env_int, percentile  # noqa: E402


def env_float(name, default):
    v = os.environ.get(name, "")
    return float(v) if v else default


NEIGHBOUR = """
import os, sys, time
path, rate, secs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
chunk = b"n" * max(1, int(rate * (1 << 20) / 100))
t0 = time.monotonic(); k = 0
while time.monotonic() - t0 < secs:
    os.write(fd, chunk)
    k += 1
    d = t0 + k / 100 - time.monotonic()
    if d > 0:
        time.sleep(d)
"""


def one_round(directory, with_neighbour, rate, seconds, mib_s):
    fd, path = tempfile.mkstemp(prefix="nw-loop-", dir=directory)
    npath = os.path.join(directory, f"nw-neighbour-{os.getpid()}")
    neighbour = None
    dirty = None
    try:
        os.sync()  # what earlier rounds left unwritten is not this round's
        if with_neighbour:
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, npath, str(mib_s), str(seconds + 2)])
        dirty = DirtySampler()
        record = b"r" * 400
        durs, slow = [], []
        start = time.monotonic()
        due = start
        while due - start < seconds:
            due += 1.0 / rate
            d = due - time.monotonic()
            if d > 0:
                time.sleep(d)
            os.write(fd, record)
            t = time.monotonic()
            os.fdatasync(fd)
            ms = (time.monotonic() - t) * 1000
            durs.append(ms)
            if ms > 10:
                slow.append(f"{ms:.1f} ms at {t - start:.1f} s")
        durs.sort()
        dirty.stop()
        return durs, slow, max(dirty.samples) / 1024
    finally:
        if dirty:
            dirty.stop()
        if neighbour:
            neighbour.kill()
            neighbour.wait()
        os.close(fd)
        os.unlink(path)
        if os.path.exists(npath):
            os.unlink(npath)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else (os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir())
    rate = env_int("BENCH_NW_RATE", 1000)
    seconds = env_int("BENCH_NW_SECONDS", 40)
    mib_s = env_float("BENCH_NW_MIB_S", 0.5)
    runs = env_int("BENCH_RUNS", 2)
    with open("/proc/sys/vm/dirty_expire_centisecs") as f:
        expire = int(f.read()) / 100
    with open("/proc/sys/vm/dirty_writeback_centisecs") as f:
        every = int(f.read()) / 100
    print(f"dir {directory}; {rate} fdatasyncs/s of 400 bytes for {seconds} s per round; neighbour {mib_s} MiB/s "
          f"unsynced; kernel writes back dirty data older than {expire:.0f} s, looking every {every:.0f} s", flush=True)
    for i in range(runs):
        for mode in (["alone", "neighbour"] if i % 2 == 0 else ["neighbour", "alone"]):
            durs, slow, peak_mib = one_round(directory, mode == "neighbour", rate, seconds, mib_s)
            print(f"round {i + 1} {mode:>9}: {len(durs)} fdatasyncs, p50 {percentile(durs, 50):.3f} ms, p99 "
                  f"{percentile(durs, 99):.3f}, p99.9 {percentile(durs, 99.9):.3f}, max {durs[-1]:.1f}; unwritten at most "
                  f"{peak_mib:.1f} MiB; over 10 ms: {', '.join(slow) if slow else 'none'}", flush=True)


if __name__ == "__main__":
    main()
