#!/usr/bin/env python3
"""Would a second fdatasync in flight cut the live path's tail? Small records arrive at random
(Poisson, BENCH_FSYNC_RATE per second) and are appended to one file, each made durable by an
fdatasync, in two ways interleaved round by round:

  serial     what the writer does: one fdatasync at a time; records that arrive meanwhile wait
             for it to return, then are written together and synced by the next one;
  pipelined  a record that arrives while an fdatasync is in flight is written at once and gets
             an fdatasync of its own on a second thread (at most BENCH_FSYNC_DEPTH in flight);
             a record counts as durable only when its own fdatasync and every earlier one have
             returned (the checkpoint must not pass a hole).

Prints, per mode and round, the time from a record's arrival to its being durable: p50, p90,
p99, p99.9, max (ms), and the fdatasync calls made.

    python3 scripts/bench/fsync_pipeline.py [DIR]

DIR (default: BENCH_TMPDIR, TMPDIR or /tmp) should be on the disk binlog-server writes to.
Environment: BENCH_RUNS=3 rounds of BENCH_FSYNC_RECORDS=5000 records of BENCH_FSYNC_RECORD=400
bytes, BENCH_FSYNC_RATE=1000 per second, BENCH_FSYNC_DEPTH=2. Files are removed after each round.
"""
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fsync_layout import env_int, pct  # noqa: E402


def arrivals(n, rate, seed):
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def wait_until(t):
    while True:
        d = t - time.perf_counter()
        if d <= 0:
            return
        time.sleep(d if d > 0.0005 else 0)


def serial(fd, sched, record):
    start = time.perf_counter() + 0.05
    due = [start + a for a in sched]
    done = [0.0] * len(due)
    i, syncs = 0, 0
    while i < len(due):
        wait_until(due[i])
        now = time.perf_counter()
        j = i
        while j < len(due) and due[j] <= now:
            j += 1
        os.write(fd, record * (j - i))
        os.fdatasync(fd)
        syncs += 1
        t = time.perf_counter()
        for k in range(i, j):
            done[k] = t
        i = j
    return [d - a for d, a in zip(done, due)], syncs


def pipelined(fd, sched, record, depth):
    start = time.perf_counter() + 0.05
    due = [start + a for a in sched]
    done = [0.0] * len(due)
    slots = threading.Semaphore(depth)
    lock = threading.Lock()
    batches = []  # (first, end, finished time or None), in write order
    durable_upto = [0]

    def sync(idx):
        os.fdatasync(fd)
        t = time.perf_counter()
        with lock:
            first, end, _ = batches[idx]
            batches[idx] = (first, end, t)
            # In order: a batch is durable once it and every earlier one returned.
            while durable_upto[0] < len(batches) and batches[durable_upto[0]][2] is not None:
                f, e, _ = batches[durable_upto[0]]
                for k in range(f, e):
                    done[k] = t
                durable_upto[0] += 1
        slots.release()

    pool = ThreadPoolExecutor(depth)  # threads started once, as the writer pool's are
    i = 0
    while i < len(due):
        wait_until(due[i])
        slots.acquire()
        now = time.perf_counter()
        j = i
        while j < len(due) and due[j] <= now:
            j += 1
        os.write(fd, record * (j - i))
        with lock:
            batches.append((i, j, None))
            idx = len(batches) - 1
        pool.submit(sync, idx)
        i = j
    pool.shutdown(wait=True)
    return [d - a for d, a in zip(done, due)], len(batches)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
    runs = env_int("BENCH_RUNS", 3)
    n = env_int("BENCH_FSYNC_RECORDS", 5000)
    size = env_int("BENCH_FSYNC_RECORD", 400)
    rate = env_int("BENCH_FSYNC_RATE", 1000)
    depth = env_int("BENCH_FSYNC_DEPTH", 2)
    record = os.urandom(size)
    print(f"dir {directory}; {runs} rounds of {n} records of {size} bytes at {rate}/s (Poisson); depth {depth}")
    print(f"{'round':>5} {'mode':>10} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7} {'max':>7} {'fsyncs':>7}  (ms)")
    for r in range(runs):
        sched = arrivals(n, rate, seed=r)
        modes = ["serial", "pipelined"] if r % 2 == 0 else ["pipelined", "serial"]
        for mode in modes:
            fd, path = tempfile.mkstemp(prefix=f"fsync-pipeline-{mode}-", dir=directory)
            try:
                if mode == "serial":
                    lat, syncs = serial(fd, sched, record)
                else:
                    lat, syncs = pipelined(fd, sched, record, depth)
            finally:
                os.close(fd)
                os.unlink(path)
            print(f"{r + 1:>5} {mode:>10} {pct(lat, 0.5):7.3f} {pct(lat, 0.9):7.3f} {pct(lat, 0.99):7.3f} "
                  f"{pct(lat, 0.999):7.3f} {max(lat) * 1e3:7.3f} {syncs:>7}")


if __name__ == "__main__":
    main()
