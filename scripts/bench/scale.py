"""Scale: one binlog-server with many tasks configured and some of them streaming at once.

Run through scripts/bench/run.sh scale, which builds the release binary first. See
docs/performance.md for what is measured and how to read the output.
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    MariaDB, RssSampler, Server, busy_pct, cpu_stat, env_int, finish, gtid_seq, machine_facts, median, open_fds,
    output_root, poll_until, print_facts, proc_cpu, proc_status, run_main, say, shell_join, thread_cpu,
    thread_cpu_delta, wait_quiet, work_dir,
)


def source_args(i, tasks_per_source):
    return [
        f"--server-id={i + 1}",
        f"--gtid-domain-id={i}",
        "--sync-binlog=0",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-buffer-pool-size=64M",
        "--innodb-log-file-size=64M",
        # Every streaming task holds one connection (a binlog dump thread): the default 151
        # would cap one source at about 150 tasks.
        f"--max-connections={max(151, tasks_per_source + 50)}",
        "--performance-schema=OFF",
    ]


LOAD_SQL = """
CREATE TABLE bench.t (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct INT NOT NULL, note VARCHAR(200) NOT NULL,
                      ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB;
SET sql_log_bin = 0;
CREATE TABLE bench.stop_load (id INT PRIMARY KEY) ENGINE=InnoDB;
CREATE PROCEDURE bench.load(rate INT, seconds INT)
BEGIN
  DECLARE stop_at DATETIME(6) DEFAULT NOW(6) + INTERVAL seconds SECOND;
  DECLARE pause DOUBLE DEFAULT 1.0 / rate;
  WHILE NOW(6) < stop_at AND NOT EXISTS (SELECT 1 FROM bench.stop_load) DO
    INSERT INTO bench.t (acct, note) VALUES (FLOOR(RAND() * 100000), CONCAT('payment ', REPEAT('x', 100)));
    DO SLEEP(pause);
  END WHILE;
END
"""


# ---------------------------------------------------------------------------------------------
# wrk


def wrk_argv(url, seconds, conns):
    return ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", url]


UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out):
    """{p50, p75, p90, p99 (ms), rps, requests, non_2xx, errors} from `wrk --latency` output."""
    res = {}
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        res[f"p{pct}"] = float(val) * UNIT[unit]
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else float("nan")
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["errors"] = m.group(1).strip() if m else ""
    if "p99" not in res:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    return res


def run_wrk(url, seconds, conns):
    argv = wrk_argv(url, seconds, conns)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if r.returncode != 0:
        raise SystemExit(f"wrk failed: {r.stderr}{r.stdout}")
    return parse_wrk(r.stdout)


# ---------------------------------------------------------------------------------------------
# Open loop: requests at a fixed rate whatever the answers' speed (wrk's closed loop slows down
# with the server and so hides queueing; see docs/performance.md). The generator is
# benches/api_load.rs (BENCH_API_LOAD_BIN, built by run.sh): a Python client did not keep its own
# schedule on a loaded two-core machine (2026-12-05: 2,884 of 4,000 requests started late while
# binlog-server sat at 123%), so its figures measured the client.


def open_loop(port, paths, rate, seconds, workers=32):
    """Sends `rate` requests per second for `seconds`, cycling over `paths`, each due at
    t0 + i / rate; a request's latency is answer received - due (so time spent waiting for a free
    worker counts, as it would for a client). Returns {p50, p90, p99, max (ms), sent, non_2xx,
    errors, late_starts} where late_starts counts requests sent more than 1 ms after their due
    time (the load generator itself fell behind)."""
    argv = [os.environ["BENCH_API_LOAD_BIN"], "--addr", f"127.0.0.1:{port}", "--rate", str(rate),
            "--seconds", str(seconds), "--workers", str(workers)]
    for p in paths:
        argv += ["--path", p]
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=seconds * 10 + 120).stdout
    return json.loads(out.strip().splitlines()[-1])


def start_hog(cpu):
    """A neighbour: a busy loop pinned to one core (taskset), as another tenant's CPU-bound job."""
    if shutil.which("taskset") is None:
        raise SystemExit("error: taskset not found (Debian: util-linux)")
    return subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", "while True: pass"])


# ---------------------------------------------------------------------------------------------


def start_sources(root, n, tasks_per_source):
    # One after the other: parallel mariadb-install-db runs were seen to clash on their
    # temporary tables in the shared /tmp.
    dbs = []
    for i in range(n):
        db = MariaDB(root / f"mariadb-{i}", source_args(i, tasks_per_source)).start()
        db.sql("DELIMITER //\n" + LOAD_SQL + "//\nDELIMITER ;\n")
        dbs.append(db)
    return dbs


def task_states(server):
    counts = {}
    offset = 0
    while True:
        st, page = server.request("GET", f"/api/tasks?limit=1000&offset={offset}")
        if st != 200:
            raise SystemExit(f"GET /api/tasks failed: {st} {page}")
        for t in page["items"]:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return counts


def failed_reasons(server, ids):
    out = {}
    for i in ids:
        st, t = server.request("GET", f"/api/tasks/{i}")
        if st == 200 and t["state"] not in ("RUNNING",):
            err = (t.get("last_error") or {})
            key = f"{t['state']}: {err.get('code')} {str(err.get('message'))[:200]}"
            out[key] = out.get(key, 0) + 1
    return out


def metric_sums(server):
    """Sums over all label sets of a few /metrics families, and the response's size."""
    with urllib.request.urlopen(server.url("/metrics"), timeout=30) as r:
        text = r.read().decode()
    sums = {"bytes": len(text)}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("binlog_server_fsync_duration_seconds_count", "binlog_server_fsync_duration_seconds_sum",
                    "binlog_server_events_total", "binlog_server_bytes_written_total"):
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def nofile(pid):
    """'soft hard' of the process's open-files limit."""
    with open(f"/proc/{pid}/limits") as f:
        return " ".join(f.read().split("Max open files")[1].split()[:2])


def rss_mib(pid):
    return proc_status(pid).get("VmRSS", 0) / 1024


def main():
    n_tasks = env_int("BENCH_SCALE_TASKS", 1000)
    n_streaming = env_int("BENCH_SCALE_STREAMING", 1000)
    n_sources = env_int("BENCH_SCALE_SOURCES", 4)
    rate = env_int("BENCH_SCALE_TX_PER_S", 5)
    wrk_s = env_int("BENCH_SCALE_WRK_S", 10)
    wrk_conns = env_int("BENCH_SCALE_WRK_CONNS", 4)
    runs = env_int("BENCH_RUNS", 3)
    steady_s = env_int("BENCH_SCALE_STEADY_S", 15)
    open_rate = env_int("BENCH_SCALE_OPEN_RATE", 200)
    open_s = env_int("BENCH_SCALE_OPEN_S", 20)
    hog = env_int("BENCH_SCALE_HOG", 1)
    if shutil.which("wrk") is None:
        raise SystemExit("error: wrk not found (Debian: apt-get install -y wrk)")
    root = work_dir("binlog-bench-scale.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    say(f"\n== {n_sources} sources, {n_tasks} tasks configured, {n_streaming} streaming, "
        f"load {rate} tx/s per source (single-row InnoDB transactions, ~300 B of binlog each)")
    t = time.monotonic()
    dbs = start_sources(root, n_sources, (n_streaming + n_sources - 1) // n_sources)
    say(f"{n_sources} sources started in {time.monotonic() - t:.0f} s; e.g. " + shell_join(dbs[0].argv))

    server = Server(output_root(root) / "server", {"BINLOG_SERVER_LOG_LEVEL": "info"}).start()
    pid = server.proc.pid
    sampler = RssSampler(pid, 0.1)
    say("binlog-server: " + server.command_line())
    say(f"binlog-server at start: RSS {rss_mib(pid):.1f} MiB, {proc_status(pid).get('Threads')} threads, "
        f"{open_fds(pid)} fds; RLIMIT_NOFILE {nofile(pid)}")

    # 1,000 tasks, round-robin over the sources; the streaming ones are the first n_streaming
    # ids, so they are spread evenly too.
    busy, waited = wait_quiet()
    say(f"waited {waited:.0f} s for a quiet machine ({busy:.0f}% busy)")
    t = time.monotonic()
    ids = []
    for i in range(n_tasks):
        db = dbs[i % n_sources]
        ids.append(server.create_task(db, {"mode": "LATEST"}, name=f"scale {i:04}", cluster_key=f"scale-{i:04}"))
    create_s = time.monotonic() - t
    say(f"created {n_tasks} tasks in {create_s:.1f} s ({n_tasks / create_s:.0f}/s, sequential POSTs); "
        f"RSS {rss_mib(pid):.1f} MiB, {proc_status(pid).get('Threads')} threads, {open_fds(pid)} fds")
    time.sleep(2)
    idle_rss = rss_mib(pid)
    results = {"machine": facts, "tasks": n_tasks, "streaming": n_streaming, "sources": n_sources,
               "rate_per_source": rate, "create_s": create_s, "idle_rss_mib": idle_rss}

    urls = {
        "GET /api/tasks?limit=50": server.url("/api/tasks?limit=50"),
        "GET /api/tasks/{id}": server.url(f"/api/tasks/{ids[n_tasks // 2]}"),
        "GET /metrics": server.url("/metrics"),
    }
    say("wrk: " + shell_join(wrk_argv("URL", wrk_s, wrk_conns)) + " for URL in " + ", ".join(urls.values()))
    for name, url in urls.items():
        with urllib.request.urlopen(url, timeout=30) as r:
            say(f"  {name}: {len(r.read())} bytes per response")
    if env_int("BENCH_SCALE_IDLE_WRK", 1):
        say(f"\n== API latency with {n_tasks} tasks configured, none streaming (one run per endpoint)")
        idle = {}
        for name, url in urls.items():
            c0 = proc_cpu(pid)
            r = run_wrk(url, wrk_s, wrk_conns)
            r["server_cpu_pct"] = 100 * (proc_cpu(pid)[0] - c0[0]) / wrk_s
            idle[name] = r
            say(f"  {name:26} p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms  {r['rps']:7.0f} req/s "
                f"non-2xx {r['non_2xx']} {r['errors']}; binlog-server cpu {r['server_cpu_pct']:.0f}%")
        results["idle_wrk"] = idle

    # Start the streaming tasks.
    say(f"\n== starting {n_streaming} tasks")
    t = time.monotonic()
    streaming = ids[:n_streaming]
    for i in streaming:
        st, body = server.request("POST", f"/api/tasks/{i}/start")
        if st != 200:
            raise SystemExit(f"starting task {i} failed: {st} {body}")
    deadline = time.monotonic() + 120
    while True:
        counts = task_states(server)
        if counts.get("RUNNING", 0) >= n_streaming or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    start_s = time.monotonic() - t
    say(f"{counts.get('RUNNING', 0)} of {n_streaming} RUNNING after {start_s:.1f} s; states {counts}; "
        f"RSS {rss_mib(pid):.1f} MiB, {proc_status(pid).get('Threads')} threads, {open_fds(pid)} fds")
    if counts.get("RUNNING", 0) < n_streaming:
        say(f"  not running: {failed_reasons(server, streaming)}")
        raise SystemExit(f"only {counts.get('RUNNING', 0)} of {n_streaming} tasks reached RUNNING")
    conns = [int(db.value("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'"))
             for db in dbs]
    say(f"binlog dump connections per source: {conns}")
    results["start_s"] = start_s

    # The write load: one connection per source, paced in SQL, until the last measurement is done
    # (a row in bench.stop_load ends it): an overloaded server makes the open-loop runs last
    # longer than planned, and a load sized in advance ended before them (2026-12-05). `load_s`
    # is only a cap.
    load_s = 10 * (steady_s + runs * len(urls) * (wrk_s + 2) + 10 + runs * 2 * (open_s + 3)) + 600
    t_load = time.monotonic()
    gtid0 = [gtid_seq(db.value("SELECT @@gtid_binlog_pos"), i) or 0 for i, db in enumerate(dbs)]
    loads = []
    for db in dbs if rate > 0 else []:
        p = subprocess.Popen(db.client_argv("bench"), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        p.stdin.write(f"CALL bench.load({rate}, {load_s});\n")
        p.stdin.close()
        loads.append(p)
    if rate > 0:
        say(f"load: `CALL bench.load({rate}, {load_s})` on each source (INSERT then DO SLEEP(1/{rate}) in a loop, "
            f"until the measurements end)")
    else:
        say("load: none (BENCH_SCALE_TX_PER_S=0): the streams are idle, heartbeats only")
    # The steady window starts once every source has committed a second's worth of the load.
    def flowing():
        return all((gtid_seq(db.value("SELECT @@gtid_binlog_pos"), i) or 0) >= g + rate
                   for i, (db, g) in enumerate(zip(dbs, gtid0)))

    poll_until(60, "the load to flow on every source", flowing, interval=0.2)

    say(f"\n== steady streaming, no API load ({steady_s} s)")
    ms0 = metric_sums(server)
    t0 = time.monotonic()
    c0, thr0, m0 = proc_cpu(pid), thread_cpu(pid), cpu_stat()
    db0 = [proc_cpu(db.proc.pid)[0] for db in dbs]
    time.sleep(steady_s)
    t1 = time.monotonic()
    c1, thr1, m1 = proc_cpu(pid), thread_cpu(pid), cpu_stat()
    db1 = [proc_cpu(db.proc.pid)[0] for db in dbs]
    ms1 = metric_sums(server)
    steady_rss = sampler.between(t0, t1)
    own = (c1[0] - c0[0]) + (sum(db1) - sum(db0))
    steady = {
        "others_busy_pct": busy_pct(m0, m1) - 100 * own / ((t1 - t0) * os.cpu_count()),
        "rss_median_mib": median(steady_rss) / 1024, "rss_max_mib": max(steady_rss) / 1024,
        "cpu_pct": 100 * (c1[0] - c0[0]) / (t1 - t0),
        "user_pct": 100 * (c1[1] - c0[1]) / (t1 - t0), "sys_pct": 100 * (c1[2] - c0[2]) / (t1 - t0),
        "sources_cpu_pct": 100 * (sum(db1) - sum(db0)) / (t1 - t0),
        "machine_busy_pct": busy_pct(m0, m1),
        "events_per_s": (ms1.get("binlog_server_events_total", 0)
                         - ms0.get("binlog_server_events_total", 0)) / (t1 - t0),
        "bytes_per_s": (ms1.get("binlog_server_bytes_written_total", 0)
                        - ms0.get("binlog_server_bytes_written_total", 0)) / (t1 - t0),
        "fsyncs_per_s": (ms1.get("binlog_server_fsync_duration_seconds_count", 0)
                         - ms0.get("binlog_server_fsync_duration_seconds_count", 0)) / (t1 - t0),
        "fsync_mean_ms": 1000 * (ms1.get("binlog_server_fsync_duration_seconds_sum", 0)
                                 - ms0.get("binlog_server_fsync_duration_seconds_sum", 0))
                         / max(1, ms1.get("binlog_server_fsync_duration_seconds_count", 0)
                               - ms0.get("binlog_server_fsync_duration_seconds_count", 0)),
        "metrics_bytes": ms1["bytes"],
        "threads": {k: round(100 * (u + s) / (t1 - t0), 1)
                    for k, (u, s) in list(thread_cpu_delta(pid, thr0, thr1).items())[:6]},
    }
    say(f"all tasks together: {steady['events_per_s']:.0f} events/s, {steady['bytes_per_s'] / 1024:.0f} KiB/s written, "
        f"{steady['fsyncs_per_s']:.0f} fsyncs/s (mean {steady['fsync_mean_ms']:.2f} ms); /metrics is now "
        f"{steady['metrics_bytes']} bytes")
    say(f"binlog-server RSS median {steady['rss_median_mib']:.1f} MiB (max {steady['rss_max_mib']:.1f}); cpu "
        f"{steady['cpu_pct']:.0f}% of one core (user {steady['user_pct']:.0f}%, sys {steady['sys_pct']:.0f}%); "
        f"busiest threads {steady['threads']}; {proc_status(pid).get('Threads')} threads, {open_fds(pid)} fds; "
        f"the {n_sources} mariadbd {steady['sources_cpu_pct']:.0f}%; machine {steady['machine_busy_pct']:.0f}% "
        f"busy, of "
        f"which other processes {steady['others_busy_pct']:.0f}%")
    results["steady"] = steady

    say(f"\n== API latency under that load ({runs} runs per endpoint, round robin)")
    per = {name: [] for name in urls}
    for run in range(runs):
        for name, url in urls.items():
            c0, m0, ru0 = proc_cpu(pid), cpu_stat(), resource.getrusage(resource.RUSAGE_CHILDREN)
            d0 = sum(proc_cpu(db.proc.pid)[0] for db in dbs)
            w0 = time.monotonic()
            r = run_wrk(url, wrk_s, wrk_conns)
            wall = time.monotonic() - w0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            own = proc_cpu(pid)[0] - c0[0] + sum(proc_cpu(db.proc.pid)[0] for db in dbs) - d0 + wrk_cpu
            r["server_cpu_pct"] = 100 * (proc_cpu(pid)[0] - c0[0]) / wall
            r["wrk_cpu_pct"] = 100 * wrk_cpu / wall
            r["machine_busy_pct"] = busy_pct(m0, cpu_stat())
            r["others_busy_pct"] = r["machine_busy_pct"] - 100 * own / (wall * os.cpu_count())
            per[name].append(r)
            say(f"  run {run + 1} {name:26} p50 {r['p50']:6.2f} ms p75 {r['p75']:6.2f} p90 {r['p90']:6.2f} "
                f"p99 {r['p99']:6.2f} ms  {r['rps']:7.0f} req/s non-2xx {r['non_2xx']} {r['errors']}; "
                f"cpu binlog-server {r['server_cpu_pct']:.0f}%, wrk {r['wrk_cpu_pct']:.0f}%; machine "
                f"{r['machine_busy_pct']:.0f}% busy, other processes {r['others_busy_pct']:.0f}%")
    results["wrk"] = per

    if open_rate:
        paths = ["/api/tasks?limit=50", f"/api/tasks/{ids[n_tasks // 2]}", "/metrics"]
        say(f"\n== API latency at a fixed {open_rate} requests/s (open loop, {open_s} s per run, the three "
            f"endpoints in turn), {runs} runs" + (" quiet, then each with a CPU hog pinned to core 0" if hog else ""))
        opened = {"quiet": [], "hog": []}
        for run in range(runs):
            for kind in (["quiet", "hog"] if hog else ["quiet"]):
                h = start_hog(0) if kind == "hog" else None
                try:
                    c0, m0 = proc_cpu(pid), cpu_stat()
                    w0 = time.monotonic()
                    r = open_loop(server.port, paths, open_rate, open_s)
                    wall = time.monotonic() - w0
                    r["server_cpu_pct"] = 100 * (proc_cpu(pid)[0] - c0[0]) / wall
                    r["machine_busy_pct"] = busy_pct(m0, cpu_stat())
                finally:
                    if h is not None:
                        h.kill()
                        h.wait()
                opened[kind].append(r)
                say(f"  run {run + 1} {kind:5} p50 {r['p50']:6.2f} ms p90 {r['p90']:6.2f} p99 {r['p99']:6.2f} "
                    f"max {r['max']:7.2f} ms; {r['sent']} sent, non-2xx {r['non_2xx']}, errors {r['errors']}, "
                    f"late starts {r['late_starts']}; binlog-server cpu {r['server_cpu_pct']:.0f}%, machine "
                    f"{r['machine_busy_pct']:.0f}% busy")
        results["open_loop"] = {"rate": open_rate, "seconds": open_s, **opened}

    for db in dbs:
        db.sql("SET sql_log_bin = 0; INSERT INTO bench.stop_load VALUES (1)")
    for p in loads:
        p.wait(timeout=120)
        if p.returncode != 0:
            raise SystemExit(f"the load failed: {p.stderr.read()}")
    t_end = time.monotonic()
    gtid1 = [gtid_seq(db.value("SELECT @@gtid_binlog_pos"), i) or 0 for i, db in enumerate(dbs)]
    achieved = [(b - a) / (t_end - t_load) for a, b in zip(gtid0, gtid1)]
    say(f"\nload achieved {[round(x) for x in achieved]} tx/s per source (target {rate})")
    results["achieved_tx_per_s"] = achieved

    # Every streaming task must end at its source's position.
    targets = [db.settle(quiet=1.0) for db in dbs]
    t = time.monotonic()
    # Without a load there is no transaction to checkpoint: only the state is checked below.
    pending = set(streaming) if rate > 0 else set()
    while pending and time.monotonic() - t < 120:
        for i in list(pending):
            db_i = ids.index(i) % n_sources
            st, cp = server.request("GET", f"/api/tasks/{i}/checkpoint")
            if st == 200 and (cp.get("file"), cp.get("pos")) == targets[db_i]:
                pending.discard(i)
        time.sleep(0.2)
    if rate > 0:
        say(f"{n_streaming - len(pending)} of {n_streaming} tasks have their source's final position as checkpoint "
            f"({time.monotonic() - t:.1f} s after the load)")
    if pending:
        raise SystemExit(f"tasks not at their source's position: {sorted(pending)[:10]}")
    hwm = proc_status(pid).get("VmHWM", 0) / 1024
    load_rss = sampler.between(t0, t_end)
    results["peak_rss_mib"] = hwm
    results["load_rss_median_mib"] = median(load_rss) / 1024
    counts = task_states(server)
    say(f"states at the end: {counts}")
    warns = 0
    for line in open(server.log_path, errors="replace"):
        if '"level":"WARN"' in line or '"level":"ERRO"' in line:
            warns += 1
    say(f"warnings and errors in the server log: {warns}")
    sampler.stop()
    server.stop()
    for db in dbs:
        db.stop()

    say(f"\n== summary ({n_tasks} tasks, {n_streaming} streaming from {n_sources} sources at "
        f"~{median(achieved):.0f} tx/s each)")
    say(f"RSS: {idle_rss:.1f} MiB with {n_tasks} idle tasks; streaming: median {results['load_rss_median_mib']:.1f} "
        f"MiB, peak (VmHWM) {hwm:.1f} MiB")
    say(f"CPU (steady, no API load): {steady['cpu_pct']:.0f}% of one core")
    say(f"API latency under load, median of {runs} runs (wrk -c{wrk_conns}, {wrk_s} s each):")
    for name, rs in per.items():
        say(f"  {name:26} p50 {median([r['p50'] for r in rs]):6.2f} ms  p99 {median([r['p99'] for r in rs]):6.2f} "
            f"ms (runs {[round(r['p99'], 2) for r in rs]})  {median([r['rps'] for r in rs]):7.0f} req/s")
    if open_rate:
        for kind in ("quiet", "hog"):
            rs = results["open_loop"][kind]
            if rs:
                p99s = [r["p99"] for r in rs]
                say(f"API p99 at {open_rate} req/s (open loop), {kind}: median {median(p99s):.2f} ms "
                    f"(runs {[round(x, 2) for x in p99s]}, spread {min(p99s):.2f}-{max(p99s):.2f})")
    finish(results)


if __name__ == "__main__":
    run_main(main)
