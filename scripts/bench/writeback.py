#!/usr/bin/env python3
"""The mechanism behind the writer's early write-back, alone: batches of 1 MiB writes closed by
fdatasync, with and without sync_file_range(SYNC_FILE_RANGE_WRITE) after each megabyte (Linux).

    python3 scripts/bench/writeback.py [DIR]

DIR (default: BENCH_TMPDIR, TMPDIR or /tmp) should be on the disk binlog-server writes to.
Environment: BENCH_RUNS=3 rounds, BENCH_WB_BATCHES=80 batches of BENCH_WB_CHUNKS=12 MiB each.
Prints the throughput and the mean fdatasync time of each round; the file is removed after each.
"""
import ctypes
import os
import sys
import tempfile
import time

SYNC_FILE_RANGE_WRITE = 2
MIB = 1 << 20


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v else default


def one_round(directory, hint, batches, chunks, libc, buf):
    fd, path = tempfile.mkstemp(prefix="writeback-", dir=directory)
    try:
        written = kicked = 0
        fsync_s = 0.0
        start = time.perf_counter()
        for _ in range(batches):
            for _ in range(chunks):
                os.write(fd, buf)
                written += len(buf)
                if hint and written - kicked >= MIB:
                    if libc.sync_file_range(fd, kicked, written - kicked, SYNC_FILE_RANGE_WRITE) != 0:
                        raise OSError(ctypes.get_errno(), "sync_file_range")
                    kicked = written
            t = time.perf_counter()
            os.fdatasync(fd)
            fsync_s += time.perf_counter() - t
        elapsed = time.perf_counter() - start
        return written / elapsed / MIB, fsync_s / batches * 1000
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    if not sys.platform.startswith("linux"):
        sys.exit("sync_file_range is Linux only")
    directory = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
    runs, batches, chunks = env_int("BENCH_RUNS", 3), env_int("BENCH_WB_BATCHES", 80), env_int("BENCH_WB_CHUNKS", 12)
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    buf = os.urandom(MIB)
    print(f"{batches} batches of {chunks} x 1 MiB writes in {directory}, fdatasync after each batch")
    for r in range(1, runs + 1):
        for hint in (False, True):
            mibs, fsync_ms = one_round(directory, hint, batches, chunks, libc, buf)
            label = "with write-back hint   " if hint else "without write-back hint"
            print(f"round {r} {label} {mibs:8.1f} MiB/s   fdatasync mean {fsync_ms:5.2f} ms")


if __name__ == "__main__":
    main()
