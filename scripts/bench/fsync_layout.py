#!/usr/bin/env python3
"""What a streaming batch's fdatasync costs by file layout, alone: small records (the size of a
few sysbench transactions) each closed by fdatasync, (a) appended to a growing file, as the writer
does (the new size makes every fdatasync commit the filesystem journal as well), (b) written
over a file already filled with zeros (a preallocated log: nothing but the data is flushed),
(c) appended with O_DIRECT as `writer.direct_io` wrote every flush until 2026-12-07: the last
4 KiB block zero-padded, then the padding cut (two length changes per record), and (d) the same
without the cut (not an option for the writer, whose file must end where the source's bytes do:
what the cut costs). (c) and (d) are left out where the directory refuses O_DIRECT. The
layouts are interleaved record by record, so a noisy machine hits all alike.

    python3 scripts/bench/fsync_layout.py [DIR]

DIR (default: BENCH_TMPDIR, TMPDIR or /tmp) should be on the disk binlog-server writes to.
Environment: BENCH_RUNS=2 rounds of BENCH_FSYNC_RECORDS=3000 records of BENCH_FSYNC_RECORD=400
bytes, BENCH_FSYNC_GAP_MS=1 between records; BENCH_FSYNC_NEIGHBOURS=0 files that a second
process appends to without fsync meanwhile (sources and replicas writing binlogs and relay logs)
at BENCH_FSYNC_NEIGHBOUR_MBS=10 MB/s in all. Prints p50/p90/p99/p99.9/max per layout and round;
the files are removed after each round.
"""
import mmap
import os
import sys
import tempfile
import time

ALIGN = 4096


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


class Layout:
    """One file written record by record in one way (see the module's doc)."""

    def __init__(self, directory, kind, records, size):
        self.kind, self.size, self.off, self.lat = kind, size, 0, []
        flags = os.O_RDWR | (os.O_DIRECT if kind.startswith("direct") else 0)
        fd, self.path = tempfile.mkstemp(prefix=f"fsync-{kind.split()[0]}-", dir=directory)
        os.close(fd)
        self.fd = os.open(self.path, flags)
        if kind.startswith("overwrite"):
            os.write(self.fd, b"\0" * (records * size + 4096))
        os.fsync(self.fd)
        # O_DIRECT wants an aligned buffer: an anonymous mapping is page-aligned.
        self.block = mmap.mmap(-1, 2 * ALIGN)
        self.rec = b"x" * size

    def write(self):
        t = time.perf_counter()
        end = self.off + self.size
        if self.kind.startswith("direct"):
            base = self.off // ALIGN * ALIGN
            length = (end - base + ALIGN - 1) // ALIGN * ALIGN
            os.pwritev(self.fd, [memoryview(self.block)[:length]], base)
            if self.kind.startswith("direct, cut"):
                os.ftruncate(self.fd, end)
        else:
            os.pwrite(self.fd, self.rec, self.off)
        os.fdatasync(self.fd)
        self.lat.append(time.perf_counter() - t)
        self.off = end

    def close(self):
        os.close(self.fd)
        os.unlink(self.path)


KINDS = ["append (growing file)", "overwrite (zero-filled file)",
         "direct, cut (O_DIRECT, padded block then cut)", "direct, no cut (O_DIRECT, padded block)"]


def odirect_ok(directory):
    fd, path = tempfile.mkstemp(prefix="fsync-probe-", dir=directory)
    os.close(fd)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        os.unlink(path)


def one_round(directory, records, size, gap, kinds):
    layouts = [Layout(directory, k, records, size) for k in kinds]
    try:
        for i in range(records):
            # Each record's order rotates, so that no layout always goes first.
            for j in range(len(layouts)):
                layouts[(i + j) % len(layouts)].write()
            if gap:
                time.sleep(gap)
        return [(lay.kind, lay.lat) for lay in layouts]
    finally:
        for lay in layouts:
            lay.close()


def main():
    directory = (sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_TMPDIR")
                 or os.environ.get("TMPDIR") or "/tmp")
    runs = env_int("BENCH_RUNS", 2)
    records = env_int("BENCH_FSYNC_RECORDS", 3000)
    size = env_int("BENCH_FSYNC_RECORD", 400)
    gap = env_int("BENCH_FSYNC_GAP_MS", 1) / 1000
    n_neigh = env_int("BENCH_FSYNC_NEIGHBOURS", 0)
    mbs = env_int("BENCH_FSYNC_NEIGHBOUR_MBS", 10)
    kinds = KINDS if odirect_ok(directory) else KINDS[:2]
    print(f"dir {directory}: {runs} round(s) of {records} records of {size} B, each + fdatasync, "
          f"{gap * 1e3:.0f} ms apart; {n_neigh} neighbour file(s) at {mbs} MB/s"
          + ("" if kinds == KINDS else "; O_DIRECT refused here: the direct layouts are left out"))
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
            results = one_round(directory, records, size, gap, kinds)
        finally:
            if child:
                os.close(stop_w)
                os.waitpid(child, 0)
        for name, lat in results:
            print(f"round {r} {name}: p50 {pct(lat, .5):.3f} p90 {pct(lat, .9):.3f} p99 {pct(lat, .99):.3f} "
                  f"p99.9 {pct(lat, .999):.3f} max {max(lat) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
