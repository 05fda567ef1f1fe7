"""Commit -> durable checkpoint latency at steady transaction rates.

Run through scripts/bench/run.sh lag, which builds the release binary and the load generator
(benches/lag_load.rs) first. See docs/performance.md for what is measured and how to read it.
"""

import bisect
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    LogTail, MariaDB, Server, busy_pct, cpu_stat, env_int, env_list, finish, gtid_seq, machine_facts, median,
    output_root, parse_ts_ns, percentile, print_facts, proc_cpu, run_main, say, shell_join, thread_cpu,
    thread_cpu_delta, wait_quiet, work_dir, writer_settings,
)

SOURCE_VARS = ["binlog_commit_wait_count", "binlog_commit_wait_usec", "sync_binlog", "innodb_flush_log_at_trx_commit",
               "binlog_format", "binlog_checksum", "binlog_annotate_row_events", "version"]


def source_args():
    durable = os.environ.get("BENCH_SOURCE_DURABLE", "0") not in ("", "0")
    return [
        "--max-binlog-size=256M",
        f"--sync-binlog={1 if durable else 0}",
        f"--innodb-flush-log-at-trx-commit={1 if durable else 0}",
        "--innodb-buffer-pool-size=256M",
        "--innodb-log-file-size=256M",
    ]


SLOW_MS = 5.0


def read_checkpoints(tail, into):
    """Appends (ts_ns, seq, fsync_us, bytes) for every new 'checkpoint durable' line."""
    for line in tail.read():
        if line.get("msg") == "checkpoint durable":
            seq = gtid_seq(line.get("gtid"))
            if seq is not None:
                into.append((parse_ts_ns(line["ts"]), seq, int(line.get("fsync_us", 0)),
                             int(line.get("bytes", 0))))


def wait_for_seq(tail, cps, seq, timeout=60):
    deadline = time.monotonic() + timeout
    while not cps or cps[-1][1] < seq:
        read_checkpoints(tail, cps)
        if cps and cps[-1][1] >= seq:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"no durable checkpoint reached GTID seq {seq} within {timeout}s")
        time.sleep(0.02)


def load_argv(db, rate, seconds, out):
    argv = [os.environ["BENCH_LOAD_BIN"], "--url", f"mysql://root@127.0.0.1:{db.port}/bench?prefer_socket=false",
            "--rate", str(rate), "--seconds", str(seconds), "--out", str(out)]
    workers = os.environ.get("BENCH_LAG_WORKERS")
    if workers:
        argv += ["--workers", workers]
    return argv


def one_run(db, server, tail, rate, seconds, warmup_s, out_csv):
    cps = []
    quiet = wait_quiet()
    read_checkpoints(tail, [])  # drop what came before this run
    pid = server.proc.pid
    cpu0, thr0, db0, m0 = proc_cpu(pid), thread_cpu(pid), proc_cpu(db.proc.pid), cpu_stat()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    argv = load_argv(db, rate, seconds, out_csv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 10 + 120)
    if r.returncode != 0:
        raise SystemExit(f"load generator failed ({r.returncode}):\n{r.stderr}{r.stdout}")
    load = json.loads(r.stdout.strip().splitlines()[-1])
    rows = list(csv.DictReader(open(out_csv)))
    last_seq = max(gtid_seq(x["gtid"]) or 0 for x in rows)
    wait_for_seq(tail, cps, last_seq)
    wall = time.monotonic() - t0
    cpu1, thr1, db1, m1 = proc_cpu(pid), thread_cpu(pid), proc_cpu(db.proc.pid), cpu_stat()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = cpu1[0] - cpu0[0] + db1[0] - db0[0] + (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)

    seqs = [c[1] for c in cps]
    first_sched = min(int(x["sched_ns"]) for x in rows)
    lags, lags_send = [], []
    slow, slow_fsync = 0, 0
    for x in rows:
        if int(x["sched_ns"]) < first_sched + warmup_s * 1e9:
            continue
        seq = gtid_seq(x["gtid"])
        i = bisect.bisect_left(seqs, seq)
        if i == len(seqs):
            raise SystemExit(f"no checkpoint covers GTID seq {seq}")
        lag = (cps[i][0] - int(x["ok_ns"])) / 1e6
        lags.append(lag)
        lags_send.append((cps[i][0] - int(x["send_ns"])) / 1e6)
        if lag > SLOW_MS:
            # A transaction that arrives while the writer fsyncs waits for that fsync (the
            # previous checkpoint's) and then its own: is most of its lag in those two?
            slow += 1
            in_fsync = (cps[i][2] + (cps[i - 1][2] if i > 0 else 0)) / 1000
            slow_fsync += in_fsync >= lag / 2
    lags.sort()
    lags_send.sort()
    # Checkpoints during the measured window.
    start_ns = first_sched + warmup_s * 1e9
    end_ns = max(int(x["ok_ns"]) for x in rows)
    window = [c for c in cps if start_ns <= c[0] <= end_ns]
    span_s = max((end_ns - start_ns) / 1e9, 1e-9)
    fsyncs = sorted(c[2] for c in window)
    return {
        "machine_busy_pct": busy_pct(m0, m1),
        "others_busy_pct": busy_pct(m0, m1) - 100 * own / (wall * os.cpu_count()),
        "quiet_wait_s": quiet[1],
        "load": load,
        "load_command": shell_join(argv),
        "measured_tx": len(lags),
        "lag_ms": {"min": lags[0], "p50": percentile(lags, 50), "p90": percentile(lags, 90),
                   "p99": percentile(lags, 99), "p999": percentile(lags, 99.9), "max": lags[-1]},
        "lag_from_send_ms": {"p50": percentile(lags_send, 50), "p99": percentile(lags_send, 99),
                             "max": lags_send[-1]},
        "slow_tx": slow,
        "slow_tx_mostly_fsync": slow_fsync,
        "checkpoints_per_s": len(window) / span_s,
        "tx_per_checkpoint": len(lags) / max(len(window), 1),
        "bytes_per_checkpoint": sum(c[3] for c in window) / max(len(window), 1),
        "fsync_ms": {"p50": percentile(fsyncs, 50) / 1000, "p99": percentile(fsyncs, 99) / 1000,
                     "max": (fsyncs[-1] if fsyncs else 0) / 1000},
        "server_cpu_pct": 100 * (cpu1[0] - cpu0[0]) / wall,
        "server_threads": {k: round(100 * (u + s) / wall, 1)
                           for k, (u, s) in list(thread_cpu_delta(pid, thr0, thr1).items())[:5]},
        "source_cpu_pct": 100 * (db1[0] - db0[0]) / wall,
        "load_cpu_pct": 100 * ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) / wall,
    }


def main():
    rates = [int(r) for r in env_list("BENCH_LAG_RATES", ["1000", "5000", "20000"])]
    seconds = env_int("BENCH_LAG_SECONDS", 15)
    runs = env_int("BENCH_RUNS", 3)
    warmup_s = env_int("BENCH_LAG_WARMUP_S", 1)
    root = work_dir("binlog-bench-lag.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    db = MariaDB(root / "mariadb", source_args()).start()
    say("source: " + shell_join(db.argv))
    src_vars = db.variables(SOURCE_VARS)
    say("source group commit and durability: " + ", ".join(f"{k}={src_vars.get(k)}" for k in SOURCE_VARS))
    server = Server(output_root(root) / "server").start()
    say("binlog-server: " + server.command_line())
    w = writer_settings()
    say("writer settings: " + ", ".join(f"{k.removeprefix('BINLOG_SERVER_WRITER_').lower()}={v}" for k, v in w.items()))
    task_id = server.create_task(db, {"mode": "LATEST"})
    status, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if status != 200:
        raise SystemExit(f"starting the task failed: {status} {body}")

    def running():
        st, t = server.request("GET", f"/api/tasks/{task_id}")
        return st == 200 and t.get("state") == "RUNNING"

    deadline = time.monotonic() + 30
    while not running():
        if time.monotonic() > deadline:
            raise SystemExit("the task did not reach RUNNING")
        time.sleep(0.05)
    tail = LogTail(server.log_path)
    # Warm-up: the table, the connections, the page cache of the first file.
    warm = root / "warmup.csv"
    r = subprocess.run(load_argv(db, 500, 2, warm), capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"load generator failed:\n{r.stderr}")
    cps = []
    wait_for_seq(tail, cps, gtid_seq(db.value("SELECT @@gtid_binlog_pos")))
    say(f"load generator: {shell_join(load_argv(db, 'RATE', seconds, root / 'lag.csv'))}")
    say(f"{runs} run(s) of {seconds} s per rate; the first {warmup_s} s of each run is not counted\n")

    results = {"machine": facts, "source_variables": src_vars, "writer": w, "rates": {}}
    for rate in rates:
        per = []
        for i in range(runs):
            res = one_run(db, server, tail, rate, seconds, warmup_s, root / f"lag-{rate}-{i + 1}.csv")
            per.append(res)
            lag, ld = res["lag_ms"], res["load"]
            say(f"rate {rate}/s run {i + 1}: achieved {ld['achieved_rate']:.0f}/s ({ld['workers']} connections, "
                f"send late p99 {ld['late_p99_us'] / 1000:.1f} ms, commit rtt p50 {ld['rtt_p50_us'] / 1000:.2f} ms); "
                f"lag p50 {lag['p50']:.2f} ms, p90 {lag['p90']:.2f}, p99 {lag['p99']:.2f}, "
                f"p99.9 {lag['p999']:.2f}, max {lag['max']:.2f} (min {lag['min']:.2f})")
            say(f"    {res['checkpoints_per_s']:.0f} checkpoints/s, {res['tx_per_checkpoint']:.1f} tx and "
                f"{res['bytes_per_checkpoint'] / 1024:.1f} KiB each; fsync p50 {res['fsync_ms']['p50']:.2f} ms "
                f"p99 {res['fsync_ms']['p99']:.2f} max {res['fsync_ms']['max']:.2f}; cpu: binlog-server "
                f"{res['server_cpu_pct']:.0f}% {res['server_threads']}, mariadbd {res['source_cpu_pct']:.0f}%, "
                f"load generator {res['load_cpu_pct']:.0f}%; machine {res['machine_busy_pct']:.0f}% busy, other "
                f"processes {res['others_busy_pct']:.0f}% (waited {res['quiet_wait_s']:.0f} s for a quiet moment)")
            if res["slow_tx"]:
                say(f"    {res['slow_tx']} of {res['measured_tx']} transactions waited > {SLOW_MS:.0f} ms; for "
                    f"{res['slow_tx_mostly_fsync']} of them, the fsync of their checkpoint and the one before "
                    f"took at least half of the wait")
        results["rates"][rate] = per

    server.stop()
    db.stop()
    say("\n== summary (lag = first durable checkpoint covering the transaction's GTID - its COMMIT's return;"
        f" median over {runs} run(s) of each run's percentile, max over all runs)")
    say(f"{'rate':>7} {'achieved':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} "
        f"{'cp/s':>6} {'fsync p50':>9} {'our cpu':>8} {'others':>7}")
    for rate, per in results["rates"].items():
        m = lambda k: median([p["lag_ms"][k] for p in per])  # noqa: E731
        say(f"{rate:>7} {median([p['load']['achieved_rate'] for p in per]):>9.0f} {m('p50'):>8.2f} {m('p90'):>8.2f} "
            f"{m('p99'):>8.2f} {m('p999'):>9.2f} {max(p['lag_ms']['max'] for p in per):>8.2f} "
            f"{median([p['checkpoints_per_s'] for p in per]):>6.0f} "
            f"{median([p['fsync_ms']['p50'] for p in per]):>7.2f}ms "
            f"{median([p['server_cpu_pct'] for p in per]):>7.0f}% "
            f"{median([p['others_busy_pct'] for p in per]):>6.0f}%")
    finish(results)


if __name__ == "__main__":
    run_main(main)
