"""Catch-up throughput: binlog-server (with fsync) against mariadb-binlog --raw (no fsync).

Run through scripts/bench/run.sh catchup, which builds the release binary first. See
docs/performance.md for what is measured and how to read the output.
"""

import os
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from shutil import which

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    LogTail, MariaDB, REPL_PASSWORD, REPL_USER, Server, busy_pct, cleanup, cpu_stat, env_int, env_list, find_bin,
    finish, machine_facts, median, output_root, parse_ts_ns, percentile, print_facts, proc_cpu, proc_io, run_main,
    say, server_binary, shell_join, thread_cpu, thread_cpu_delta, wait_quiet, work_dir, writer_settings,
)

MIB = 1024 * 1024
SOURCE_ARGS = [
    "--max-binlog-size=256M",
    "--sync-binlog=0",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-buffer-pool-size=256M",
    "--innodb-log-file-size=256M",
]
CATCHUP_TIMEOUT = env_int("BENCH_TIMEOUT_S", 900)
# After catching up, how long every sealed file may take to have its sha256 recorded.
HASHED_TIMEOUT = 300


# ---------------------------------------------------------------------------------------------
# Backlog generation.

BULK_SQL = """
CREATE TABLE bench.bulk (id BIGINT AUTO_INCREMENT PRIMARY KEY, k INT NOT NULL,
                         pad VARBINARY(4096) NOT NULL) ENGINE=InnoDB;
"""
# 5,000 rows of 1-4 KB (about 12.5 MB) per transaction.
BULK_TX = "INSERT INTO bench.bulk (k, pad) SELECT seq, REPEAT(MD5(seq), 32 + seq % 96) FROM seq_1_to_5000;\n"

OLTP_SQL = """
CREATE TABLE bench.oltp (id BIGINT AUTO_INCREMENT PRIMARY KEY, acct INT NOT NULL, amount DECIMAL(12,2) NOT NULL,
                         note VARCHAR(200) NOT NULL, ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))
                         ENGINE=InnoDB;
SET sql_log_bin = 0;
CREATE PROCEDURE bench.gen(n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < n DO
    INSERT INTO bench.oltp (acct, amount, note)
      VALUES (FLOOR(RAND() * 100000), RAND() * 1000, CONCAT('payment ', i, ' ', REPEAT('x', 100)));
    SET i = i + 1;
  END WHILE;
END
"""
# Autocommit: every INSERT in the loop is a transaction of its own (about 460 bytes of binlog).
OLTP_TX = "CALL bench.gen(50000);\n"


def binlog_stats(datadir, files):
    """Events and their mean size, transactions (XID or COMMIT), from the source's own files."""
    events = xids = 0
    for name, _size in files:
        data = Path(datadir, name).read_bytes()
        off = 4
        n = len(data)
        unpack = struct.unpack_from
        while off + 19 <= n:
            size = unpack("<I", data, off + 9)[0]
            t = data[off + 4]
            if t == 16:  # XID
                xids += 1
            events += 1
            if size < 19:
                break
            off += size
    return events, xids


SYSBENCH_TABLES = 4
SYSBENCH_TABLE_SIZE = 100000


def sysbench_argv(db, *more):
    """sysbench's oltp_write_only on the bench source: per transaction an indexed and a
    non-indexed UPDATE, a DELETE and an INSERT of ~200-byte rows (row events of a few hundred bytes)."""
    return ["sysbench", "oltp_write_only", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={db.port}",
            "--mysql-user=root", "--mysql-password=", "--mysql-db=bench", f"--tables={SYSBENCH_TABLES}",
            f"--table-size={SYSBENCH_TABLE_SIZE}"] + list(more)


def sysbench(db, *more):
    r = subprocess.run(sysbench_argv(db, *more), capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise SystemExit(f"sysbench {' '.join(more)} failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")


DROP_ALL = ("SET sql_log_bin = 0; DROP TABLE IF EXISTS bench.bulk, bench.oltp; DROP PROCEDURE IF EXISTS bench.gen; " +
            "".join(f"DROP TABLE IF EXISTS bench.sbtest{i + 1}; " for i in range(SYSBENCH_TABLES)))


def generate(db, profile, target_bytes):
    db.sql(DROP_ALL)
    if profile == "sysbench":
        # The tables are filled before RESET MASTER: the backlog is only the write transactions.
        sysbench(db, "--threads=4", "prepare")
    db.sql("RESET MASTER")
    started = time.monotonic()
    if profile == "bulk":
        db.sql(BULK_SQL)
        stmt, per_call = BULK_TX, 8
    elif profile == "oltp":
        db.sql("DELIMITER //\n" + OLTP_SQL + "//\nDELIMITER ;\n")
        stmt, per_call = OLTP_TX, 1
    while sum(s for _, s in db.binary_logs()) < target_bytes:
        if profile == "sysbench":
            sysbench(db, "--threads=4", "--time=20", "--events=0", "--report-interval=0", "run")
        else:
            db.sql(stmt * per_call, db="bench")
    gen_s = time.monotonic() - started
    # Free the InnoDB data without logging it, so no page flushing competes with the runs, and
    # push every dirty page of the generation to disk before the first measurement.
    db.sql(DROP_ALL)
    target = db.settle()
    subprocess.run(["sync", "-f", str(db.datadir)], check=False)
    files = db.binary_logs()
    total = sum(s for _, s in files)
    events, xids = binlog_stats(db.datadir, files)
    gtid = db.value("SELECT @@gtid_binlog_pos")
    return {
        "profile": profile,
        "files": files,
        "first": files[0][0],
        "target": target,
        "bytes": total,
        "events": events,
        "transactions": xids,
        "gtid": gtid,
        "generate_s": gen_s,
    }


# ---------------------------------------------------------------------------------------------
# One run of each tool.


def fsync_files(d):
    t = time.monotonic()
    for p in sorted(Path(d).iterdir()):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.monotonic() - t


def binlog_argv(db, backlog, out_dir):
    return [find_bin("mariadb-binlog", "mysqlbinlog"), "--no-defaults", "--read-from-remote-server", "--raw",
            "--host", "127.0.0.1", "--port", str(db.port), "--user", REPL_USER, f"--password={REPL_PASSWORD}",
            f"--result-file={out_dir}/", backlog["first"], "--to-last-log"]


SYSCALLS = ["write", "writev", "pwrite64", "lseek", "read", "recvfrom", "fdatasync", "fsync", "sched_yield", "futex",
            "epoll_wait"]


def perf_stat_prefix(out):
    events = ",".join([f"syscalls:sys_enter_{c}" for c in SYSCALLS] + ["raw_syscalls:sys_enter"])
    return ["perf", "stat", "-x", ",", "-o", str(out), "-e", events]


def perf_stat_counts(path):
    """{syscall: calls} from `perf stat -x ,` output; 'all' is every syscall."""
    calls = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[0].strip().isdigit():
            name = parts[2].strip()
            name = "all" if name == "raw_syscalls:sys_enter" else name.removeprefix("syscalls:sys_enter_")
            calls[name] = int(parts[0])
    return calls


def run_theirs(db, backlog, out_dir, syscalls_out=None):
    out_dir.mkdir(parents=True)
    argv = binlog_argv(db, backlog, out_dir)
    if syscalls_out:
        argv = perf_stat_prefix(syscalls_out) + ["--"] + argv
    quiet_busy, waited = wait_quiet()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    db0, m0 = proc_cpu(db.proc.pid), cpu_stat()
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=CATCHUP_TIMEOUT)
    elapsed = time.monotonic() - t0
    db1, m1 = proc_cpu(db.proc.pid), cpu_stat()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"mariadb-binlog failed ({r.returncode}):\n{r.stderr}")
    sync_s = fsync_files(out_dir)
    own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime) + db1[0] - db0[0]
    return {
        "machine_busy_pct": busy_pct(m0, m1),
        "others_busy_pct": busy_pct(m0, m1) - 100 * own / (elapsed * os.cpu_count()),
        "quiet_wait": (quiet_busy, waited),
        "elapsed_s": elapsed,
        "mib_s": backlog["bytes"] / MIB / elapsed,
        "fsync_after_s": sync_s,
        "user_s": ru1.ru_utime - ru0.ru_utime,
        "sys_s": ru1.ru_stime - ru0.ru_stime,
        "source_cpu_s": db1[0] - db0[0],
    }


def run_ours(db, backlog, root, syscalls_out=None, perf_out=None, binary=None):
    server = Server(root, binary=binary).start()
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": backlog["first"], "pos": 4})
    tail = LogTail(server.log_path)
    tail.read()
    pid = server.proc.pid
    tracer = None
    if syscalls_out:
        tracer = subprocess.Popen(perf_stat_prefix(syscalls_out) + ["-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cleanup().add_proc("perf stat", tracer)
        time.sleep(1.0)  # attached to every thread before the clock starts
    if perf_out:
        tracer = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", str(perf_out)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cleanup().add_proc("perf", tracer)
        time.sleep(1.0)
    quiet_busy, waited = wait_quiet()
    cpu0, thr0, io0, db0 = proc_cpu(pid), thread_cpu(pid), proc_io(pid), proc_cpu(db.proc.pid)
    m0 = cpu_stat()
    target_file, target_pos = backlog["target"]
    t0_wall = time.time_ns()
    t0 = time.monotonic()
    status, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if status != 200:
        raise SystemExit(f"starting the task failed: {status} {body}")
    end_ns = None
    checkpoints, fsync_us, problems = 0, [], []
    while end_ns is None:
        for line in tail.read():
            msg = line.get("msg")
            if msg == "checkpoint durable":
                checkpoints += 1
                fsync_us.append(int(line.get("fsync_us", 0)))
                if line.get("file") == target_file and int(line.get("pos", 0)) >= target_pos:
                    end_ns = parse_ts_ns(line["ts"])
            elif line.get("level") in ("WARN", "ERRO", "CRIT"):
                problems.append(line)
        if end_ns is None:
            exited = server.proc.poll()
            if time.monotonic() - t0 > CATCHUP_TIMEOUT or exited is not None:
                why = f"exited with status {exited}" if exited is not None else f"timed out ({CATCHUP_TIMEOUT} s)"
                raise SystemExit(f"binlog-server did not reach {target_file}:{target_pos}: {why}; warnings and "
                                 f"errors: {problems[-5:]}\nlog: {server.log_path}, console: {server.root}/console.log")
            time.sleep(0.02)
    seen = time.monotonic() - t0
    cpu1, thr1, io1, db1 = proc_cpu(pid), thread_cpu(pid), proc_io(pid), proc_cpu(db.proc.pid)
    m1 = cpu_stat()
    if tracer:
        tracer.send_signal(2)  # SIGINT: detach and write the counts
        tracer.wait(timeout=120)
        cleanup().forget_proc(tracer)
    # The API shows the stored checkpoint, written at most every checkpoint_interval_ms: it
    # follows the durable one shortly. It must arrive at exactly the source's position.
    api_deadline = time.monotonic() + 10
    while True:
        status, cp = server.request("GET", f"/api/tasks/{task_id}/checkpoint")
        if status == 200 and (cp or {}).get("file") == target_file and int((cp or {}).get("pos") or 0) == target_pos:
            break
        if time.monotonic() > api_deadline:
            raise SystemExit(f"the API checkpoint {cp} is not the source's position {target_file}:{target_pos}")
        time.sleep(0.02)
    api_s = time.monotonic() - t0
    # The work is done when every sealed file's sha256 is recorded too (a catch-up's sealed
    # files are read back and hashed after sealing): our CPU is counted until then.
    hashed_deadline = time.monotonic() + HASHED_TIMEOUT
    while True:
        status, page = server.request("GET", f"/api/tasks/{task_id}/files")
        sealed = [f for f in (page or {}).get("items", []) if f.get("state") == "SEALED"] if status == 200 else None
        if sealed is not None and all(f.get("sha256") for f in sealed):
            break
        if time.monotonic() > hashed_deadline:
            raise SystemExit(f"sealed files still without a sha256 {HASHED_TIMEOUT} s after catching up: "
                             f"{[f['name'] for f in sealed or [] if not f.get('sha256')]}")
        time.sleep(0.05)  # each poll is a request that our CPU count includes
    hashed_s = time.monotonic() - t0
    cpu2 = proc_cpu(pid)
    files_dir = server.files_dir(task_id)
    command = server.command_line()
    server.stop()
    elapsed = (end_ns - t0_wall) / 1e9
    fsync_us.sort()
    own = cpu1[0] - cpu0[0] + db1[0] - db0[0]
    return {
        "machine_busy_pct": busy_pct(m0, m1),
        "others_busy_pct": busy_pct(m0, m1) - 100 * own / (seen * os.cpu_count()),
        "quiet_wait": (quiet_busy, waited),
        "elapsed_s": elapsed,
        "seen_s": seen,
        "api_s": api_s,
        "mib_s": backlog["bytes"] / MIB / elapsed,
        "hashed_s": hashed_s,
        # Until every sealed file is hashed (the headline), and until caught up.
        "user_s": cpu2[1] - cpu0[1],
        "sys_s": cpu2[2] - cpu0[2],
        "caught_up_cpu_s": cpu1[0] - cpu0[0],
        "threads": thread_cpu_delta(pid, thr0, thr1),
        "io": {k: io1.get(k, 0) - io0.get(k, 0) for k in io1},
        "source_cpu_s": db1[0] - db0[0],
        "checkpoints": checkpoints,
        "fsync_us_p50": percentile(fsync_us, 50),
        "fsync_us_p99": percentile(fsync_us, 99),
        "problems": [p.get("msg") for p in problems],
        "files_dir": files_dir,
        "command": command,
    }


# ---------------------------------------------------------------------------------------------
# Byte identity.


def diff_offsets(a, b, limit=16):
    """Offsets where two files differ (sizes compared separately), at most `limit`."""
    out = []
    with open(a, "rb") as fa, open(b, "rb") as fb:
        base = 0
        while len(out) < limit:
            x, y = fa.read(4 * MIB), fb.read(4 * MIB)
            if not x and not y:
                break
            if x != y:
                for i in range(min(len(x), len(y))):
                    if x[i] != y[i]:
                        out.append(base + i)
                        if len(out) >= limit:
                            break
            base += max(len(x), len(y))
    return out


def verify(ours_dir, theirs_dir, source_dir=None):
    """Sealed files byte-identical; the last (active) one may differ at offset 21 only."""
    theirs = sorted(p.name for p in Path(theirs_dir).iterdir())
    ours = sorted(p.name for p in Path(ours_dir).iterdir()) if ours_dir else []
    if theirs != ours:
        return f"FAILED: file sets differ: ours {ours} vs mariadb-binlog {theirs}"
    notes = []
    for i, name in enumerate(theirs):
        a, b = Path(ours_dir, name), Path(theirs_dir, name)
        last = i == len(theirs) - 1
        if a.stat().st_size != b.stat().st_size:
            return f"FAILED: {name}: {a.stat().st_size} bytes (ours) vs {b.stat().st_size} (mariadb-binlog)"
        d = diff_offsets(a, b)
        if d and not (last and d == [21]):
            return f"FAILED: {name} differs at offsets {d}"
        if d:
            notes.append(f"{name} differs at offset 21 only (in-use flag of the active file)")
        if source_dir and not last:
            s = Path(source_dir, name)
            if s.stat().st_size != b.stat().st_size or diff_offsets(s, b):
                return f"FAILED: mariadb-binlog's {name} is not the source's file"
    what = f"{len(theirs)} files, {len(theirs) - 1} sealed identical"
    if source_dir:
        what += " (and identical to the source's own)"
    return "ok: " + what + ("; " + "; ".join(notes) if notes else "; the active file identical too")


# ---------------------------------------------------------------------------------------------
# Profiling passes (not timed).


def per_gib(n, nbytes):
    return n * (1024 ** 3) / nbytes


def fmt_threads(threads, elapsed):
    return ", ".join(f"{name} {100 * (u + s) / elapsed:.0f}% (u {u:.2f}s s {s:.2f}s)"
                     for name, (u, s) in list(threads.items())[:6])


def servers():
    """[(key, label, binary)]: BENCH_SERVER_BIN (A), and BENCH_SERVER_BIN_B when an A/B run is asked for."""
    a = server_binary()
    b = os.environ.get("BENCH_SERVER_BIN_B")
    if not b:
        return [("A", "binlog-server", a)]
    return [("A", "binlog-server A", a), ("B", "binlog-server B", b)]


def spread(xs):
    return f"{min(xs):.1f}-{max(xs):.1f}"


def say_load(when):
    say(f"load average {when}: {load_avg()}")


def load_avg():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def measure(db, backlog, runs, root, out_root):
    first_file, nbytes = backlog["first"], backlog["bytes"]
    say(f"\n== {backlog['profile']}: {nbytes / MIB:.1f} MiB in {len(backlog['files'])} files, "
        f"{backlog['events']} events (mean {nbytes / max(backlog['events'], 1):.0f} B), "
        f"{backlog['transactions']} transactions (mean {nbytes / max(backlog['transactions'], 1):.0f} B); "
        f"generated in {backlog['generate_s']:.0f} s; source at {backlog['target'][0]}:{backlog['target'][1]}, "
        f"GTID {backlog['gtid']}")
    say("mariadb-binlog command:")
    say("  " + shell_join(binlog_argv(db, backlog, out_root / f"{backlog['profile']}-runN" / "theirs")))
    ours = servers()
    tools = ["theirs"] + [k for k, _, _ in ours]
    label = {"theirs": "mariadb-binlog"} | {k: lab for k, lab, _ in ours}
    binary = {k: b for k, _, b in ours}
    runs_of = {k: [] for k in tools}
    say_load("before the runs")
    for i in range(runs):
        # Every tool in every round, the order rotated per round: none always goes first.
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        run_root = out_root / f"{backlog['profile']}-run{i + 1}"
        t_dir = run_root / "theirs"
        res = {}
        for who in order:
            if who == "theirs":
                res[who] = run_theirs(db, backlog, t_dir)
            else:
                res[who] = run_ours(db, backlog, run_root / f"server-{who}", binary=binary[who])
            subprocess.run(["sync", "-f", str(run_root)], check=False)
        if i == 0:
            say("binlog-server command (task: FILE_POS " + first_file + ":4, POST /api/tasks/1/start, clock "
                "stops at the 'checkpoint durable' log line reaching the source's position):")
            for k, _, _ in ours:
                say(f"  {k}: " + res[k]["command"])
        say(f"run {i + 1} ({' then '.join(label[w] for w in order)}); {load_avg()}:")
        t = res["theirs"]
        say(f"  {'mariadb-binlog':16} {t['elapsed_s']:7.2f} s {t['mib_s']:8.1f} MiB/s  cpu u {t['user_s']:.2f}s "
            f"s {t['sys_s']:.2f}s ({per_gib(t['user_s'] + t['sys_s'], nbytes):.2f} s/GiB); fsync of its files "
            f"afterwards {t['fsync_after_s']:.2f} s; mariadbd cpu {t['source_cpu_s']:.2f}s; "
            f"machine {t['machine_busy_pct']:.0f}% busy, others {t['others_busy_pct']:.0f}% "
            f"(waited {t['quiet_wait'][1]:.0f} s for a quiet moment)")
        for k, _, _ in ours:
            o = res[k]
            check = verify(o["files_dir"], t_dir, db.datadir if i == 0 and k == "A" else None)
            say(f"  {label[k]:16} {o['elapsed_s']:7.2f} s {o['mib_s']:8.1f} MiB/s  cpu u {o['user_s']:.2f}s "
                f"s {o['sys_s']:.2f}s ({per_gib(o['user_s'] + o['sys_s'], nbytes):.2f} s/GiB, "
                f"{100 * (o['user_s'] + o['sys_s']) / o['elapsed_s']:.0f}% of one core; until caught up "
                f"{per_gib(o['caught_up_cpu_s'], nbytes):.2f} s/GiB, every sealed file hashed at "
                f"{o['hashed_s']:.2f} s); "
                f"mariadbd cpu {o['source_cpu_s']:.2f}s; {o['checkpoints']} checkpoints, "
                f"fsync p50 {o['fsync_us_p50'] / 1000:.1f} ms p99 {o['fsync_us_p99'] / 1000:.1f} ms; "
                f"machine {o['machine_busy_pct']:.0f}% busy, others {o['others_busy_pct']:.0f}% "
                f"(waited {o['quiet_wait'][1]:.0f} s)")
            say(f"    threads: {fmt_threads(o['threads'], o['elapsed_s'])}")
            io = o["io"]
            say(f"    /proc io: {io.get('syscw', 0)} write syscalls ({per_gib(io.get('syscw', 0), nbytes):.0f}/GiB), "
                f"{io.get('syscr', 0)} read syscalls ({per_gib(io.get('syscr', 0), nbytes):.0f}/GiB), "
                f"wchar {io.get('wchar', 0) / MIB:.0f} MiB, rchar {io.get('rchar', 0) / MIB:.0f} MiB")
            if o["problems"]:
                say(f"    warnings in the server log: {o['problems'][:5]}")
            say(f"    byte identity: {check}")
            if check.startswith("FAILED"):
                raise SystemExit(f"byte identity check failed ({label[k]}); files kept in {run_root}")
        for k in tools:
            runs_of[k].append(res[k])
        if os.environ.get("BENCH_KEEP", "0") in ("", "0"):
            subprocess.run(["rm", "-rf", str(run_root)], check=False)
    say_load("after the runs")

    def cpu_gib(r):
        return per_gib(r["user_s"] + r["sys_s"], nbytes)

    # CPU time per GiB hardly depends on what else runs on the machine; wall time does.
    per_tool = {}
    for k in tools:
        rs = runs_of[k]
        per_tool[k] = {
            "label": label[k],
            "mib_s": median([r["mib_s"] for r in rs]),
            "runs_mib_s": [round(r["mib_s"], 1) for r in rs],
            "cpu_s_per_gib": median([cpu_gib(r) for r in rs]),
            "runs_cpu_s_per_gib": [round(cpu_gib(r), 2) for r in rs],
            "user_s_per_gib": median([per_gib(r["user_s"], nbytes) for r in rs]),
            "sys_s_per_gib": median([per_gib(r["sys_s"], nbytes) for r in rs]),
            "source_cpu_s_per_gib": median([per_gib(r["source_cpu_s"], nbytes) for r in rs]),
            "cpu_pct": median([100 * (r["user_s"] + r["sys_s"]) / r["elapsed_s"] for r in rs]),
        }
    theirs_runs = runs_of["theirs"]
    summary = {
        "bytes": nbytes,
        "tools": per_tool,
        "mariadb_binlog_plus_fsync_mib_s": median(
            [nbytes / MIB / (r["elapsed_s"] + r["fsync_after_s"]) for r in theirs_runs]),
        "others_busy_pct": median([r["others_busy_pct"] for k in tools for r in runs_of[k]]),
        # The names earlier versions of this script wrote (BENCH_OUT readers).
        "mariadb_binlog_mib_s": per_tool["theirs"]["mib_s"],
        "binlog_server_mib_s": per_tool["A"]["mib_s"],
        "binlog_server_cpu_s_per_gib": per_tool["A"]["cpu_s_per_gib"],
        "mariadb_binlog_cpu_s_per_gib": per_tool["theirs"]["cpu_s_per_gib"],
        "runs_mariadb_binlog_mib_s": per_tool["theirs"]["runs_mib_s"],
        "runs_binlog_server_mib_s": per_tool["A"]["runs_mib_s"],
    }
    summary["ratio"] = per_tool["A"]["mib_s"] / per_tool["theirs"]["mib_s"]
    summary["ratios"] = {f"{k}/theirs": per_tool[k]["mib_s"] / per_tool["theirs"]["mib_s"] for k in binary}
    if "B" in binary:
        summary["ratios"]["B/A"] = per_tool["B"]["mib_s"] / per_tool["A"]["mib_s"]
        summary["cpu_ratio_B/A"] = per_tool["B"]["cpu_s_per_gib"] / per_tool["A"]["cpu_s_per_gib"]

    if os.environ.get("BENCH_SYSCALLS", "1") not in ("", "0") and which("perf"):
        say("syscalls per GiB (one extra run of each tool under `perf stat -e syscalls:sys_enter_*`; not timed):")
        prof = out_root / f"{backlog['profile']}-syscalls"
        t_out = prof / "theirs.perf-stat"
        prof.mkdir(parents=True)
        run_theirs(db, backlog, prof / "theirs", syscalls_out=t_out)
        counted = [("mariadb-binlog", perf_stat_counts(t_out))]
        for k, lab, b in servers():
            o_out = prof / f"ours-{k}.perf-stat"
            run_ours(db, backlog, prof / f"server-{k}", syscalls_out=o_out, binary=b)
            counted.append((lab, perf_stat_counts(o_out)))
        syscalls = {}
        for name, calls in counted:
            shown = [(k, v) for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v]
            say(f"  {name:15} " + ", ".join(f"{k} {per_gib(v, nbytes):.0f}" for k, v in shown))
            syscalls[name] = {k: round(per_gib(v, nbytes)) for k, v in calls.items()}
        summary["syscalls_per_gib"] = syscalls
        subprocess.run(["rm", "-rf", str(prof)], check=False)

    if os.environ.get("BENCH_PERF", "0") not in ("", "0"):
        prof = out_root / f"{backlog['profile']}-perf"
        prof.mkdir(parents=True)
        perf_data = prof / "perf.data"
        run_theirs(db, backlog, prof / "theirs")
        run_ours(db, backlog, prof / "server", perf_out=perf_data)
        rep = subprocess.run(["perf", "report", "-i", str(perf_data), "--stdio", "--no-children",
                              "--sort", "comm,dso,symbol", "--percent-limit", "1.5", "-g", "none"],
                             capture_output=True, text=True)
        say("perf (binlog-server, self time by thread/dso/symbol, >= 1.5%):")
        for line in rep.stdout.splitlines():
            if line.strip() and not line.startswith("#"):
                say("  " + " ".join(line.split()).removesuffix(" - -"))
        subprocess.run(["rm", "-rf", str(prof / "theirs"), str(prof / "server")], check=False)
    return summary


def main():
    runs = env_int("BENCH_RUNS", 5)
    profiles = env_list("BENCH_PROFILES", ["bulk", "oltp"])
    sizes = {"bulk": env_int("BENCH_BULK_MIB", 1024), "oltp": env_int("BENCH_OLTP_MIB", 1024),
             "sysbench": env_int("BENCH_SYSBENCH_MIB", 1024)}
    for profile in profiles:
        if profile not in sizes:
            raise SystemExit(f"unknown profile {profile} (bulk, oltp, sysbench)")
    if "sysbench" in profiles and not which("sysbench"):
        raise SystemExit("the sysbench profile needs sysbench (Debian: apt-get install -y sysbench); "
                         "or leave it out: BENCH_PROFILES=\"bulk oltp\"")
    root = work_dir("binlog-bench-catchup.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    say_load("at the start")
    out_root = output_root(root)
    db = MariaDB(root / "mariadb", SOURCE_ARGS).start()
    say("source: " + shell_join(db.argv))
    src_vars = db.variables(["binlog_checksum", "binlog_format", "max_binlog_size", "sync_binlog",
                             "innodb_flush_log_at_trx_commit", "binlog_row_event_max_size",
                             "binlog_annotate_row_events", "version"])
    say("source variables: " + ", ".join(f"{k}={v}" for k, v in sorted(src_vars.items())))
    say("binlog-server writer: " + ", ".join(f"{k}={v}" for k, v in writer_settings().items()))
    for k, lab, b in servers():
        say(f"{lab}: {b}")
    say(f"runs per tool and profile: {runs} (every tool once per round, the order rotated per round)")
    results = {"machine": facts, "source_variables": src_vars, "writer": writer_settings(),
               "servers": {k: b for k, _, b in servers()}, "profiles": {}}
    for profile in profiles:
        say(f"\n== generating the {profile} backlog (>= {sizes[profile]} MiB)")
        backlog = generate(db, profile, sizes[profile] * MIB)
        summary = measure(db, backlog, runs, root, out_root)
        summary.update({k: backlog[k] for k in ("events", "transactions", "generate_s")})
        results["profiles"][profile] = summary
    db.stop()

    say("\n== summary (median of %d runs, spread min-max; MiB = 2^20 bytes of binlog; CPU-s/GiB = user+sys of "
        "the tool's process, binlog-server's until every sealed file's sha256 is recorded; mariadbd = the source's "
        "CPU-s/GiB while serving that tool)" % runs)
    for p, s in results["profiles"].items():
        say(f"{p}: {s['bytes'] / MIB:.0f} MiB, {s['events']} events, {s['transactions']} transactions; other "
            f"processes used {s['others_busy_pct']:.0f}% of the machine (median over runs)")
        say(f"  {'tool':16} {'MiB/s':>8} {'spread':>13} {'CPU-s/GiB':>10} {'(user':>6} {'sys)':>5} "
            f"{'spread':>11} {'mariadbd':>9}")
        for k, t in s["tools"].items():
            cpu = t["runs_cpu_s_per_gib"]
            say(f"  {t['label']:16} {t['mib_s']:8.1f} {spread(t['runs_mib_s']):>13} {t['cpu_s_per_gib']:10.2f} "
                f"{t['user_s_per_gib']:6.2f} {t['sys_s_per_gib']:5.2f} {spread(cpu):>11} "
                f"{t['source_cpu_s_per_gib']:9.2f}")
        say(f"  {'mariadb-binlog + fsync after':29} {s['mariadb_binlog_plus_fsync_mib_s']:.1f} MiB/s")
        say("  ratios of medians (MiB/s): " + ", ".join(f"{k} {v:.2f}x" for k, v in s["ratios"].items()) +
            (f"; CPU-s/GiB B/A {s['cpu_ratio_B/A']:.2f}x" if "cpu_ratio_B/A" in s else ""))
        say("  runs MiB/s: " + "; ".join(f"{t['label']} {t['runs_mib_s']}" for t in s["tools"].values()))
        say("  runs CPU-s/GiB: " + "; ".join(f"{t['label']} {t['runs_cpu_s_per_gib']}" for t in s["tools"].values()))
    say_load("at the end")
    finish(results)


if __name__ == "__main__":
    run_main(main)
