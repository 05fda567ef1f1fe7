"""The relay (issue 18): live fan-out latency and catch-up, through binlog-server vs from the source.

Run through scripts/bench/run.sh relay, which builds the release binary and the two bench binaries
(benches/lag_load.rs, benches/relay_probe.rs) first.

Fan-out. One throwaway source mariadbd, one binlog-server with the relay on and a task copying the
source from its first file, and a fleet of N-1 throwaway mariadbd replicas plus one arrival probe
(N = 1 and 20). Two set-ups, in rotating order run by run:

  source   every replica and the probe follow the source directly (binlog-server's task is
           stopped, so the source serves only them);
  relay    every replica and the probe follow binlog-server's relay (the task runs; the source
           serves one dump thread, ours);
  frozen   as relay, with one of the mariadbd replicas stopped by SIGSTOP for the whole run (fleets
           of 2 and more; BENCH_RELAY_FROZEN=0 leaves it out): issue 18's "a frozen replica does
           not change the others' lag", as the probe's latency beside the relay set-up's.

The load is lag_load's (single-row InnoDB transactions at a fixed rate, open loop), which records
per transaction when its COMMIT returned and its GTID. Arrival downstream is stamped by the probe
(benches/relay_probe.rs): a replica speaking the crate's own replica client, registered like the
others, that notes per GTID when the transaction's last event (XID) reached it, on the same clock
(CLOCK_REALTIME) as lag_load. The figure is arrival - commit returned, per transaction; it can be
negative from the source (a source sends the binlog to its dump threads before the COMMIT returns
to the client). The mariadbd replicas run only their IO thread (START SLAVE IO_THREAD): they pull
and write their relay logs like a real replica but do not apply, so 20 of them do not drown the
machine's 2 cores in SQL threads; after each run the script checks that every one of them read up
to the source's end position with no IO error. Each relay run also prints where our share went,
from binlog-server's own histograms scraped before and after it (bucket bounds, not exact
figures): a batch's first event read -> its fsync returned (`binlog_server_durable_seconds`), and
the checkpoint published -> its bytes written to each waiting client
(`binlog_server_relay_send_delay_seconds`). BENCH_PEERS_DIR (e.g. /dev/shm) puts the source's and
the fleet's files, and binlog-server's debug log, there instead of on the disk under test
(benchlib.peer_root says why); each run
starts with what was left unwritten written back (benchlib.sync_before_run; BENCH_SYNC_BEFORE_RUN=0
skips it), and its line says how much unwritten data the machine held at its start and at most.

Catch-up. A second source with a bulk backlog of BENCH_RELAY_BACKLOG_MIB (made the way catchup.py
makes its bulk profile), binlog-server caught up on it, then `mariadb-binlog
--read-from-remote-server --raw --to-last-log` pulls the whole backlog from the relay and from the
source, interleaved in pairs. mariadb-binlog rather than a fresh mariadbd replica: it is the same
dump protocol, its output is the files themselves, so byte identity with the source's own files
is checked directly, and the client's own cost is the same both ways (a replica would add its
relay-log writing and its SQL thread, the same on both sides, to a figure about the server side).
But mariadb-binlog writes every event with its own system call: on a 2-core machine it spends
about a core and is then the bound of both pulls. So each pair also has a second client, the
probe in `--drain` mode (BENCH_RELAY_CATCHUP_CLIENTS): a non-blocking dump read to its end by the
crate's replica client, nothing written, the events' count, bytes and CRC32 compared between
relay and source. It shows what each server can send; mariadb-binlog shows what a real client
gets. A third client, `replica` (not run by default), is what issue 18 names: a fresh mariadbd
replica (IO thread only, relay log not synced, as in the fan-out fleet) pointed at the first
file, timed from START SLAVE IO_THREAD until the size of its relay logs covers the backlog and
SHOW SLAVE STATUS says it read up to the source's end position (no IO error); its relay logs are
removed (RESET SLAVE ALL) before each pull, and its "client" CPU is the replica mariadbd's.
See docs/performance.md for how to read the output.
"""

import csv
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    DURABLE_HIST, RELAY_DELAY_HIST, REPL_PASSWORD, REPL_USER, DirtySampler, LogTail, MariaDB, Server, bucket_percentile,
    cleanup, env_int, env_list, finish, fmt_fsync_tail, fmt_le, free_port, fsync_times_ms, live_histograms, machine_facts,
    median, output_root, peer_root, peers_where, percentile, poll_until, print_facts, proc_cpu, run_main, say,
    shell_join, stop_process, sync_before_run, wait_quiet, work_dir,
)
from catchup import generate  # noqa: E402

MIB = 1024 * 1024
MODES = ["source", "relay"]
FROZEN = "frozen"
RELAY_USER = "benchrelay"
RELAY_PASSWORD = "bench-relay-pass"
PROBE_SERVER_ID = 900
SOURCE_ARGS = ["--max-binlog-size=256M", "--sync-binlog=0", "--innodb-flush-log-at-trx-commit=0",
               "--innodb-buffer-pool-size=256M", "--innodb-log-file-size=256M"]
# A replica that only runs its IO thread needs little memory; twenty of them share 2 cores.
REPLICA_ARGS = ["--sync-binlog=0", "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=16M", "--performance-schema=OFF", "--skip-slave-start",
                "--sync-relay-log=0", "--sync-master-info=0"]


def slave_status(db):
    argv = [db.client, "--no-defaults", "-h127.0.0.1", f"-P{db.port}", "-uroot", "-E", "-e", "SHOW SLAVE STATUS"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    out = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(": ")
        if sep:
            out[k.strip()] = v
    return out


def start_relay_server(root, db):
    relay_port = free_port()
    server = Server(root, {"BINLOG_SERVER_RELAY_LISTEN_ADDR": f"127.0.0.1:{relay_port}"}).start()
    first = db.binary_logs()[0][0]
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": first, "pos": 4}, name="relay", cluster_key="relay")
    st, body = server.request("PUT", f"/api/tasks/{task_id}/relay",
                              {"users": [{"name": RELAY_USER, "password": RELAY_PASSWORD}]})
    if st != 200:
        raise SystemExit(f"granting the relay user failed: {st} {body}")
    task_call(server, task_id, "start")
    return server, task_id, relay_port


def task_call(server, task_id, action):
    st, body = server.request("POST", f"/api/tasks/{task_id}/{action}")
    if st != 200:
        raise SystemExit(f"{action} of the task failed: {st} {body}")


def wait_checkpoint(server, task_id, target, timeout=300):
    """Until the task's stored checkpoint is exactly the source's (file, pos)."""
    def at():
        st, cp = server.request("GET", f"/api/tasks/{task_id}/checkpoint")
        return st == 200 and (cp or {}).get("file") == target[0] and int((cp or {}).get("pos") or 0) == target[1]
    poll_until(timeout, f"binlog-server's checkpoint to reach {target[0]}:{target[1]}", at, interval=0.05)


def relay_clients(server, task_id):
    st, body = server.request("GET", f"/api/tasks/{task_id}/replicas")
    return len(body.get("items", [])) if st == 200 and isinstance(body, dict) else -1


# ---------------------------------------------------------------------------------------------
# Fan-out.


def repoint(replica, port, user, password, start, extra=""):
    """Stops the replica, drops its relay logs and points it at `start` (file, pos) on `port`."""
    replica.sql(f"""
        STOP SLAVE; RESET SLAVE ALL;
        CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='{user}',
          MASTER_PASSWORD='{password}', MASTER_USE_GTID=no, MASTER_LOG_FILE='{start[0]}',
          MASTER_LOG_POS={start[1]}, MASTER_CONNECT_RETRY=1{extra};
    """)


def point_replicas(replicas, port, user, password, start):
    def one(r):
        repoint(r, port, user, password, start, ", MASTER_HEARTBEAT_PERIOD=1")
        r.sql("START SLAVE IO_THREAD")
    with ThreadPoolExecutor(max_workers=4) as ex:
        list(ex.map(one, replicas))
    for r in replicas:
        poll_until(60, f"replica {r.port}'s IO thread to connect",
                   lambda r=r: slave_status(r).get("Slave_IO_Running") == "Yes" or None, interval=0.1)


def replicas_reached(replicas, end, timeout=120):
    """Seconds until every replica's IO thread read up to `end`; raises on an IO error."""
    t0 = time.monotonic()
    pending = list(replicas)
    while pending:
        still = []
        for r in pending:
            st = slave_status(r)
            if st.get("Last_IO_Errno", "0") != "0":
                raise SystemExit(f"replica {r.port}: IO error {st.get('Last_IO_Errno')}: {st.get('Last_IO_Error')}")
            if (st.get("Master_Log_File"), int(st.get("Read_Master_Log_Pos") or 0)) != end:
                still.append(r)
        pending = still
        if pending and time.monotonic() - t0 > timeout:
            st = slave_status(pending[0])
            raise SystemExit(f"{len(pending)} replica(s) did not read up to {end[0]}:{end[1]} in {timeout} s; e.g. "
                             f"{pending[0].port} at {st.get('Master_Log_File')}:{st.get('Read_Master_Log_Pos')}")
        if pending:
            time.sleep(0.1)
    return time.monotonic() - t0


def start_probe(port, user, password, start, out, log):
    argv = [os.environ["BENCH_PROBE_BIN"], "--port", str(port), "--user", user, "--password", password,
            "--file", start[0], "--pos", str(start[1]), "--server-id", str(PROBE_SERVER_ID), "--out", str(out)]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(log, "ab"), text=True)
    cleanup().add_proc("relay_probe", p)
    ready, _, _ = select.select([p.stdout], [], [], 60)
    line = p.stdout.readline().strip() if ready else ""
    if line != "ready":
        stop_process(p, "relay_probe")
        raise SystemExit(f"the probe did not start (said {line!r}): {Path(log).read_text()[-2000:]}")
    return p


def load_argv(db, rate, seconds, out):
    return [os.environ["BENCH_LOAD_BIN"], "--url", f"mysql://root@127.0.0.1:{db.port}/bench?prefer_socket=false",
            "--rate", str(rate), "--seconds", str(seconds), "--out", str(out)]


def read_arrivals(path):
    out = {}
    try:
        with open(path) as f:
            for row in csv.reader(f):
                if len(row) == 2 and row[1].isdigit():
                    out[row[0]] = int(row[1])
    except OSError:
        pass
    return out


def fanout_run(ctx, mode, n, rate, seconds, warmup_s, root):
    db, server, task_id = ctx["db"], ctx["server"], ctx["task_id"]
    root.mkdir(parents=True, exist_ok=True)
    start = db.settle(quiet=1.0)
    if mode != "source":
        if ctx["task_stopped"]:
            task_call(server, task_id, "start")
            ctx["task_stopped"] = False
        wait_checkpoint(server, task_id, start)
        port, user, pw = ctx["relay_port"], RELAY_USER, RELAY_PASSWORD
    else:
        if not ctx["task_stopped"]:
            task_call(server, task_id, "stop")
            ctx["task_stopped"] = True
        port, user, pw = db.port, REPL_USER, REPL_PASSWORD
    replicas = ctx["fleet"][:n - 1]
    point_replicas(replicas, port, user, pw, start)
    probe = start_probe(port, user, pw, start, root / "arrivals.csv", root / "probe.log")
    clients = relay_clients(server, task_id) if mode != "source" else None
    frozen = replicas[0] if mode == FROZEN else None
    if frozen:
        os.kill(frozen.proc.pid, signal.SIGSTOP)
    sync_before_run()
    quiet = wait_quiet()
    log = LogTail(server.log_path)
    log.skip_to_end()
    cpu0_srv, cpu0_db = proc_cpu(server.proc.pid), proc_cpu(db.proc.pid)
    hist0 = live_histograms(server) if mode != "source" else None
    out = root / "load.csv"
    dirty = DirtySampler()
    r = subprocess.run(load_argv(db, rate, seconds, out), capture_output=True, text=True, timeout=seconds + 600)
    dirty = dirty.stop()
    if r.returncode != 0:
        raise SystemExit(f"load generator failed:\n{r.stderr}")
    rows = list(csv.DictReader(open(out)))
    want = {x["gtid"] for x in rows}
    try:
        arrivals = poll_until(60, "the probe to see every transaction",
                              lambda: (a if want <= (a := read_arrivals(root / "arrivals.csv")).keys() else None),
                              interval=0.05)
    except SystemExit:
        missing = len(want - read_arrivals(root / "arrivals.csv").keys())
        raise SystemExit(f"{mode}, {n} replicas: {missing} of {len(want)} transactions never reached the probe "
                         f"(log {root / 'probe.log'})")
    finally:
        if frozen:
            os.kill(frozen.proc.pid, signal.SIGCONT)
    cpu1_srv, cpu1_db = proc_cpu(server.proc.pid), proc_cpu(db.proc.pid)
    # Where our share goes, by binlog-server's own histograms: a batch's first event read -> its
    # fsync returned, and the checkpoint published -> its bytes written to each waiting client.
    stages = {}
    if hist0 is not None:
        hist1 = live_histograms(server)
        for key, name in (("durable", DURABLE_HIST), ("send_delay", RELAY_DELAY_HIST)):
            for q in (50, 99):
                stages[f"{key}_p{q}_le_s"] = bucket_percentile(hist0[name], hist1[name], q)
    # binlog-server's fsyncs during the run: the relay sends nothing past the durable checkpoint,
    # so each transaction waits for the fsync that covers it.
    fsync_ms = fsync_times_ms(log.read())
    end = db.settle(quiet=0.5)
    caught_s = replicas_reached(replicas, end)
    stop_process(probe, "relay_probe")
    cleanup().forget_proc(probe)
    t0 = min(int(x["sched_ns"]) for x in rows) + warmup_s * 1_000_000_000
    counted = [x for x in rows if int(x["sched_ns"]) >= t0]
    lat = sorted((arrivals[x["gtid"]] - int(x["ok_ns"])) / 1e6 for x in counted)
    sent = sorted((arrivals[x["gtid"]] - int(x["send_ns"])) / 1e6 for x in counted)
    span = (max(int(x["ok_ns"]) for x in rows) - min(int(x["sched_ns"]) for x in rows)) / 1e9
    return {
        "mode": mode, "replicas": n, "measured_tx": len(lat), "achieved_rate": len(rows) / span,
        "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1],
        "sent_p50_ms": percentile(sent, 50), "sent_p99_ms": percentile(sent, 99),
        "server_cpu_s": cpu1_srv[0] - cpu0_srv[0], "source_cpu_s": cpu1_db[0] - cpu0_db[0],
        "fsyncs": len(fsync_ms), "fsync_p50_ms": percentile(fsync_ms, 50), "fsync_p99_ms": percentile(fsync_ms, 99),
        "fsync_tail": fmt_fsync_tail(fsync_ms),
        "replicas_caught_up_s": caught_s, "relay_clients": clients, "quiet": quiet, "dirty": dirty, **stages,
    }


def fanout(root, out_root, results):
    sizes = [int(x) for x in env_list("BENCH_RELAY_REPLICAS", ["1", "20"])]
    rate = env_int("BENCH_RELAY_RATE", 1000)
    seconds = env_int("BENCH_RELAY_SECONDS", 10)
    warmup_s = env_int("BENCH_RELAY_WARMUP_S", 1)
    runs = env_int("BENCH_RUNS", 5)
    say(f"== fan-out: {rate} tx/s for {seconds} s per run (first {warmup_s} s not counted), {runs} run(s) per "
        f"set-up and fleet size {sizes}, set-ups in rotating order")
    say(f"source: {shell_join(SOURCE_ARGS)}; replicas: {shell_join(REPLICA_ARGS)}, IO thread only")
    say(peers_where())
    db = MariaDB(peer_root(root, "fan-source"), SOURCE_ARGS).start()
    server, task_id, relay_port = start_relay_server(root / "fan-server", db)
    say(f"binlog-server: {server.command_line()}")
    say(f"relay on 127.0.0.1:{relay_port}; load: {os.environ['BENCH_LOAD_BIN']} --rate {rate} --seconds {seconds}")
    # Warm the source (buffer pool, table) before any run counts.
    r = subprocess.run(load_argv(db, 200, 2, root / "warmup.csv"), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise SystemExit(f"load generator failed:\n{r.stderr}")
    fleet_size = max(sizes) - 1
    t = time.monotonic()
    # One after the other: mariadb-install-db run in parallel collide on their temporary tables.
    fleet = [MariaDB(peer_root(root, f"replica-{i}"), REPLICA_ARGS + [f"--server-id={10 + i}"]).start() for i in range(fleet_size)]
    say(f"{fleet_size} replica mariadbd started in {time.monotonic() - t:.0f} s\n")
    ctx = {"db": db, "server": server, "task_id": task_id, "relay_port": relay_port, "fleet": fleet,
           "task_stopped": False}
    per_size = {}
    with_frozen = env_int("BENCH_RELAY_FROZEN", 1) != 0
    for n in sizes:
        modes = MODES + ([FROZEN] if with_frozen and n > 1 else [])
        per = {m: [] for m in modes}
        for r in fleet[n - 1:]:
            r.sql("STOP SLAVE")  # members this fleet size does not use stay quiet
        for i in range(runs):
            order = modes[i % len(modes):] + modes[:i % len(modes)]
            for mode in order:
                res = fanout_run(ctx, mode, n, rate, seconds, warmup_s, out_root / f"fan-{n}-{i + 1}-{mode}")
                per[mode].append(res)
                cl = (f", relay clients {res['relay_clients']}; {res['fsyncs']} fsyncs, p50 {res['fsync_p50_ms']:.2f} "
                      f"ms, p99 {res['fsync_p99_ms']:.2f} ms, {res['fsync_tail']}; received -> fsynced p50 "
                      f"{fmt_le(res['durable_p50_le_s'])}, p99 {fmt_le(res['durable_p99_le_s'])}; published -> sent "
                      f"to each waiting client p50 {fmt_le(res['send_delay_p50_le_s'])}, p99 "
                      f"{fmt_le(res['send_delay_p99_le_s'])}" if mode != "source" else "")
                say(f"{n:>2} replica(s) run {i + 1} {mode:>6}: achieved {res['achieved_rate']:.0f}/s, commit -> "
                    f"arrival p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms, max {res['max_ms']:.1f} ms; "
                    f"cpu binlog-server {res['server_cpu_s']:.2f} s, source {res['source_cpu_s']:.2f} s; replicas at "
                    f"the end after {res['replicas_caught_up_s']:.1f} s{cl}; machine busy {res['quiet'][0]:.0f}% "
                    f"before; {res['dirty']}")
        per_size[n] = per
    for r in fleet:
        r.stop()
    server.stop()
    db.stop()
    results["fanout"] = per_size

    say("\n== fan-out summary: commit returned -> transaction at the probe, median over runs of each run's "
        "percentile [min - max over runs]; relay - source: median over rounds of (relay - source of the same round)")
    say(f"{'N':>3} {'set-up':>7} {'p50 ms':>22} {'p99 ms':>22} {'max ms':>20} {'cpu-s srv':>10} {'cpu-s src':>10}")
    for n, per in per_size.items():
        for mode in per:
            p50 = [r["p50_ms"] for r in per[mode]]
            p99 = [r["p99_ms"] for r in per[mode]]
            mx = [r["max_ms"] for r in per[mode]]
            say(f"{n:>3} {mode:>7} {median(p50):>8.3f} [{min(p50):.3f}-{max(p50):.3f}] "
                f"{median(p99):>8.3f} [{min(p99):.3f}-{max(p99):.3f}] {median(mx):>7.1f} [{min(mx):.1f}-{max(mx):.1f}] "
                f"{median([r['server_cpu_s'] for r in per[mode]]):>10.2f} "
                f"{median([r['source_cpu_s'] for r in per[mode]]):>10.2f}")
        d50 = [a["p50_ms"] - b["p50_ms"] for a, b in zip(per["relay"], per["source"])]
        d99 = [a["p99_ms"] - b["p99_ms"] for a, b in zip(per["relay"], per["source"])]
        say(f"{n:>3} relay - source: p50 {median(d50):+.3f} ms [{min(d50):+.3f} .. {max(d50):+.3f}], "
            f"p99 {median(d99):+.3f} ms [{min(d99):+.3f} .. {max(d99):+.3f}]")
        if FROZEN in per:
            f50 = [a["p50_ms"] - b["p50_ms"] for a, b in zip(per[FROZEN], per["relay"])]
            f99 = [a["p99_ms"] - b["p99_ms"] for a, b in zip(per[FROZEN], per["relay"])]
            say(f"{n:>3} frozen - relay: p50 {median(f50):+.3f} ms [{min(f50):+.3f} .. {max(f50):+.3f}], "
                f"p99 {median(f99):+.3f} ms [{min(f99):+.3f} .. {max(f99):+.3f}] (one replica SIGSTOPped)")


# ---------------------------------------------------------------------------------------------
# Catch-up.


def digests(paths, mask_flag=None):
    """{name: sha256}; for the file named `mask_flag`, byte 21 (the FDE's flags, whose
    LOG_EVENT_BINLOG_IN_USE_F a source's dump thread clears in the active file it sends) is
    hashed as zero."""
    out = {}
    for p in paths:
        h = sha256()
        with open(p, "rb") as f:
            first = True
            while chunk := f.read(8 * MIB):
                if first and Path(p).name == mask_flag and len(chunk) > 21:
                    chunk = chunk[:21] + b"\0" + chunk[22:]
                first = False
                h.update(chunk)
        out[Path(p).name] = h.hexdigest()
    return out


def pull(port, user, password, first, out_dir, serving_pid):
    out_dir.mkdir(parents=True)
    argv = [shutil.which("mariadb-binlog") or "/usr/bin/mariadb-binlog", "--no-defaults", "--read-from-remote-server",
            "--raw", "--to-last-log", "--host=127.0.0.1", f"--port={port}", f"--user={user}",
            f"--result-file={out_dir}/", first]
    env = dict(os.environ, MYSQL_PWD=password)
    quiet = wait_quiet()
    ru0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu(serving_pid)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    elapsed = time.monotonic() - t0
    ru1, c1 = resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu(serving_pid)
    if r.returncode != 0:
        raise SystemExit(f"mariadb-binlog from port {port} failed ({r.returncode}):\n{r.stderr}")
    return {
        "elapsed_s": elapsed, "serving_cpu_s": c1[0] - c0[0],
        "client_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), "quiet": quiet,
        "argv": argv,
    }


def drain(port, user, password, first, serving_pid):
    """The probe's `--drain` pull: a non-blocking dump read to its end, nothing written."""
    argv = [os.environ["BENCH_PROBE_BIN"], "--drain", "--port", str(port), "--user", user, "--password", password,
            "--file", first, "--pos", "4", "--server-id", str(PROBE_SERVER_ID + 1)]
    quiet = wait_quiet()
    ru0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu(serving_pid)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    elapsed = time.monotonic() - t0
    ru1, c1 = resource.getrusage(resource.RUSAGE_CHILDREN), proc_cpu(serving_pid)
    if r.returncode != 0:
        raise SystemExit(f"the drain probe from port {port} failed ({r.returncode}):\n{r.stderr}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return {
        "elapsed_s": elapsed, "serving_cpu_s": c1[0] - c0[0],
        "client_cpu_s": (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), "quiet": quiet,
        "argv": [a if a != password else "..." for a in argv], "stream": got,
    }


CATCHUP_REPLICA_SERVER_ID = 950


def replica_pull(replica, port, user, password, first, end, nbytes, serving_pid):
    """A fresh replica's IO thread pulls the backlog from `port`: seconds until its relay logs
    hold it (then checked to have read up to `end`)."""
    repoint(replica, port, user, password, (first, 4))

    def relay_logs():
        return sum(p.stat().st_size for p in replica.datadir.iterdir()
                   if "relay-bin." in p.name and p.name.rsplit(".", 1)[-1].isdigit())
    quiet = wait_quiet()
    c0, r0 = proc_cpu(serving_pid), proc_cpu(replica.proc.pid)
    t0 = time.monotonic()
    replica.sql("START SLAVE IO_THREAD")
    # The relay logs hold every event sent (with the replica's own format descriptions, less the
    # source files' 4-byte headers), so their size passing the backlog's less 64 KiB is the end
    # within a few events (~0.1 ms at these speeds); polled on the file system, which costs the
    # replica nothing. SHOW SLAVE STATUS then confirms the end position, untimed.
    poll_until(600, "the replica's relay logs to cover the backlog",
               lambda: relay_logs() >= nbytes - 64 * 1024 or None, interval=0.005)
    elapsed = time.monotonic() - t0
    c1, r1 = proc_cpu(serving_pid), proc_cpu(replica.proc.pid)
    replicas_reached([replica], end, timeout=60)
    replica.sql("STOP SLAVE")
    return {
        "elapsed_s": elapsed, "serving_cpu_s": c1[0] - c0[0], "client_cpu_s": r1[0] - r0[0], "quiet": quiet,
        "argv": ["START", "SLAVE", "IO_THREAD", f"(MASTER_PORT={port}, MASTER_LOG_FILE='{first}', MASTER_LOG_POS=4)"],
    }


def catchup(root, out_root, results):
    mib = env_int("BENCH_RELAY_BACKLOG_MIB", 1024)
    runs = env_int("BENCH_RUNS", 5)
    clients = env_list("BENCH_RELAY_CATCHUP_CLIENTS", ["mariadb-binlog", "drain"])
    for c in clients:
        if c not in ("mariadb-binlog", "drain", "replica"):
            raise SystemExit(f"BENCH_RELAY_CATCHUP_CLIENTS: unknown client {c!r} (mariadb-binlog, drain, replica)")
    say(f"\n== catch-up: a {mib} MiB bulk backlog (catchup.py's bulk profile) pulled from the relay and from the "
        f"source by {' and '.join(clients)}, {runs} interleaved pair(s) each")
    db = MariaDB(root / "cu-source", SOURCE_ARGS).start()
    backlog = generate(db, "bulk", mib * MIB)
    say(f"backlog: {backlog['bytes'] / MIB:.0f} MiB in {len(backlog['files'])} files, {backlog['events']} events, "
        f"made in {backlog['generate_s']:.0f} s")
    server, task_id, relay_port = start_relay_server(root / "cu-server", db)
    t = time.monotonic()
    wait_checkpoint(server, task_id, backlog["target"], timeout=1800)
    say(f"binlog-server caught up in {time.monotonic() - t:.1f} s (not the measurement)")
    active = backlog["files"][-1][0]
    replica = None
    if "replica" in clients:
        replica = MariaDB(root / "cu-replica", REPLICA_ARGS + [f"--server-id={CATCHUP_REPLICA_SERVER_ID}"]).start()
        # A fresh replica's first pull was the slowest of an invocation more than once (2.3 and
        # 2.9 s against 1.6-1.9 s after): one pull from the source first, not counted.
        replica_pull(replica, db.port, REPL_USER, REPL_PASSWORD, backlog["first"], tuple(backlog["target"]),
                     backlog["bytes"], db.proc.pid)
    # What each pull must equal: the source's own files (the active one but for its in-use flag),
    # and, byte for byte, what the other side sent.
    want = digests([db.datadir / name for name, _ in backlog["files"]], mask_flag=active)
    sent = {}
    per = {c: {m: [] for m in MODES} for c in clients}
    streams = {}
    for i in range(runs):
        order = MODES if i % 2 == 0 else MODES[::-1]
        for client in clients:
            for mode in order:
                port, user, password, pid = ((relay_port, RELAY_USER, RELAY_PASSWORD, server.proc.pid) if mode == "relay"
                                             else (db.port, REPL_USER, REPL_PASSWORD, db.proc.pid))
                if client == "replica":
                    res = replica_pull(replica, port, user, password, backlog["first"], tuple(backlog["target"]),
                                       backlog["bytes"], pid)
                    check = f"read up to {backlog['target'][0]}:{backlog['target'][1]}, no IO error"
                elif client == "drain":
                    res = drain(port, user, password, backlog["first"], pid)
                    st = res["stream"]
                    streams.setdefault(mode, st)
                    other = streams.get("source" if mode == "relay" else "relay")
                    for seen in (streams[mode], other):
                        if seen is not None and {k: st[k] for k in ("events", "bytes", "crc32")} != \
                                {k: seen[k] for k in ("events", "bytes", "crc32")}:
                            raise SystemExit(f"drain from the {mode}: {st} differs from an earlier pull's {seen}")
                    check = f"{st['events']} events, {st['bytes'] / MIB:.0f} MiB, crc32 {st['crc32']} as every other drain"
                else:
                    out_dir = out_root / f"cu-{i + 1}-{mode}"
                    res = pull(port, user, password, backlog["first"], out_dir, pid)
                    paths = sorted(out_dir.iterdir())
                    got, raw = digests(paths, mask_flag=active), digests(paths)
                    if got != want:
                        bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
                        raise SystemExit(f"catch-up from the {mode}: files differ from the source's own: {bad} "
                                         f"(kept {out_dir})")
                    sent.setdefault(mode, raw)
                    other = sent.get("source" if mode == "relay" else "relay")
                    if raw != sent[mode] or (other is not None and raw != other):
                        raise SystemExit(f"catch-up from the {mode}: not byte-identical to the other pulls (kept {out_dir})")
                    shutil.rmtree(out_dir)
                    check = "identical to the source's files and to every other pull"
                res["mib_s"] = backlog["bytes"] / MIB / res["elapsed_s"]
                per[client][mode].append(res)
                say(f"pair {i + 1} {client:>14} {mode:>6}: {res['elapsed_s']:.2f} s, {res['mib_s']:.0f} MiB/s, serving "
                    f"process {res['serving_cpu_s']:.2f} cpu-s, client {res['client_cpu_s']:.2f} cpu-s; {check}; "
                    f"machine busy {res['quiet'][0]:.0f}% before")
    for client in clients:
        say(f"command ({client}): MYSQL_PWD=... {shell_join(per[client]['relay'][0]['argv'])}")
    if replica is not None:
        replica.stop()
    server.stop()
    db.stop()
    gib = backlog["bytes"] / (1024 * MIB)
    results["catchup"] = {"backlog": {k: v for k, v in backlog.items() if k != "files"}, "runs": per}
    for client in clients:
        say(f"\n== catch-up summary, client {client}: median [min - max] over pairs")
        for mode in MODES:
            rate = [r["mib_s"] for r in per[client][mode]]
            cpu = [r["serving_cpu_s"] / gib for r in per[client][mode]]
            cl = [r["client_cpu_s"] / gib for r in per[client][mode]]
            who = "binlog-server" if mode == "relay" else "mariadbd"
            say(f"{mode:>7}: {median(rate):.0f} MiB/s [{min(rate):.0f}-{max(rate):.0f}]; serving process ({who}) "
                f"{median(cpu):.2f} cpu-s/GiB [{min(cpu):.2f}-{max(cpu):.2f}]; client {median(cl):.2f} cpu-s/GiB "
                f"[{min(cl):.2f}-{max(cl):.2f}]")
        ratio = [a["mib_s"] / b["mib_s"] for a, b in zip(per[client]["relay"], per[client]["source"])]
        say(f"relay / source throughput ({client}): {median(ratio):.2f}x [{min(ratio):.2f}-{max(ratio):.2f}]")


def main():
    parts = env_list("BENCH_RELAY_PARTS", ["fanout", "catchup"])
    root = work_dir("binlog-bench-relay.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    say(f"binlog-server: {os.environ.get('BENCH_SERVER_BIN')}")
    say(f"probe: {os.environ.get('BENCH_PROBE_BIN')}")
    out_root = output_root(root)
    results = {"machine": facts}
    if "fanout" in parts:
        fanout(root, out_root, results)
    if "catchup" in parts:
        catchup(root, out_root, results)
    finish(results)


if __name__ == "__main__":
    run_main(main)
