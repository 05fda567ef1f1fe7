#!/usr/bin/env python3
"""What a streaming batch's fdatasync costs by file layout, alone: small records (the size of a
few sysbench transactions) each closed by fdatasync, (a) appended to a growing file, as the writer
does (the new size makes every fdatasync commit the filesystem journal as well), and (b) written
over a file already filled with zeros (a preallocated log: nothing but the data is flushed).
The two are interleaved record by record, so a noisy machine hits both alike.

    python3 scripts/bench/fsync_layout.py [DIR]

DIR (default: BENCH_TMPDIR, TMPDIR or /tmp) should be on the disk binlog-server writes to.
Environment: BENCH_RUNS=2 rounds of BENCH_FSYNC_RECORDS=3000 records of BENCH_FSYNC_RECORD=400
bytes, BENCH_FSYNC_GAP_MS=1 between records; BENCH_FSYNC_NEIGHBOURS=0 files that a second
process appends to without fsync meanwhile (sources and replicas writing binlogs and relay logs)
at BENCH_FSYNC_NEIGHBOUR_MBS=10 MB/s in all. Prints p50/p90/p99/p99.9/max per layout and round;
the files are removed after each round.
"""
import os
import sys
import tempfile
import time


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v else default


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))] * 1e3


def neighbours(directory, files, mbs, stop_r):
    """Child process: appends 2 KB writes round-robin to `files` files at `mbs` MB/s until the
    parent closes the pipe."""
    fds, paths = [], []
    for i in range(files):
        fd, path = tempfile.mkstemp(prefix=f"fsync-neighbour{i}-", dir=directory)
        fds.append(fd)
        paths.append(path)
    os.set_blocking(stop_r, False)
    chunk, rate, sent, start, i = b"y" * 2000, mbs * 1e6, 0, time.perf_counter(), 0
    try:
        while True:
            try:
                if os.read(stop_r, 1) == b"":
                    break
            except BlockingIOError:
                pass
            os.write(fds[i % files], chunk)
            sent += len(chunk)
            i += 1
            ahead = sent / rate - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
    finally:
        for p in paths:
            os.unlink(p)


def one_round(directory, records, size, gap):
    rec = b"x" * size
    fa, pa = tempfile.mkstemp(prefix="fsync-append-", dir=directory)
    fb, pb = tempfile.mkstemp(prefix="fsync-overwrite-", dir=directory)
    try:
        os.fsync(fa)
        os.write(fb, b"\0" * (records * size + 4096))
        os.fsync(fb)
        append, overwrite, off = [], [], 0
        for _ in range(records):
            t = time.perf_counter()
            os.pwrite(fa, rec, off)
            os.fdatasync(fa)
            append.append(time.perf_counter() - t)
            t = time.perf_counter()
            os.pwrite(fb, rec, off)
            os.fdatasync(fb)
            overwrite.append(time.perf_counter() - t)
            off += size
            if gap:
                time.sleep(gap)
        return append, overwrite
    finally:
        os.close(fa)
        os.close(fb)
        os.unlink(pa)
        os.unlink(pb)


def main():
    directory = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_TMPDIR")
                 or os.environ.get("TMPDIR") or "/tmp")
    runs = env_int("BENCH_RUNS", 2)
    records = env_int("BENCH_FSYNC_RECORDS", 3000)
    size = env_int("BENCH_FSYNC_RECORD", 400)
    gap = env_int("BENCH_FSYNC_GAP_MS", 1) / 1000
    n_neigh = env_int("BENCH_FSYNC_NEIGHBOURS", 0)
    mbs = env_int("BENCH_FSYNC_NEIGHBOUR_MBS", 10)
    print(f"dir {directory}: {runs} round(s) of {records} records of {size} B, each + fdatasync, "
          f"{gap * 1e3:.0f} ms apart; {n_neigh} neighbour file(s) at {mbs} MB/s")
    for r in range(1, runs + 1):
        child, stop_w = None, None
        if n_neigh:
            stop_r, stop_w = os.pipe()
            child = os.fork()
            if child == 0:
                os.close(stop_w)
                try:
                    neighbours(directory, n_neigh, mbs, stop_r)
                finally:
                    os._exit(0)
            os.close(stop_r)
        try:
            append, overwrite = one_round(directory, records, size, gap)
        finally:
            if child:
                os.close(stop_w)
                os.waitpid(child, 0)
        for name, lat in (("append (growing file)", append), ("overwrite (zero-filled file)", overwrite)):
            print(f"round {r} {name}: p50 {pct(lat, .5):.3f} p90 {pct(lat, .9):.3f} p99 {pct(lat, .99):.3f} "
                  f"p99.9 {pct(lat, .999):.3f} max {max(lat) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
