"""Shared helpers for the benchmarks in scripts/bench/ (Python standard library only).

A throwaway mariadbd (own datadir, socket and loopback port; never the machine's own MariaDB),
the binlog-server binary with a JSON debug log, machine facts, per-thread CPU from /proc, and
clean-up of every process by the PID we started it with.
"""

import atexit
import calendar
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPL_USER = "repl"
REPL_PASSWORD = "bench-repl-pass"


def say(msg=""):
    print(msg, flush=True)


def env_int(name, default):
    v = os.environ.get(name, "")
    return int(v) if v.strip() else default


def env_list(name, default):
    v = os.environ.get(name, "")
    return v.split() if v.strip() else list(default)


def keep():
    return os.environ.get("BENCH_KEEP", "0") not in ("", "0")


def shell_join(argv):
    return " ".join(shlex.quote(str(a)) for a in argv)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_listens_on(pid, port):
    """Whether process `pid` itself holds the listening socket on 127.0.0.1:`port` (another
    process may have taken a port between free_port() and our bind, and would answer too)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in _read(table).splitlines()[1:]:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def find_bin(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"):
            if os.access(f"{d}/{n}", os.X_OK):
                return f"{d}/{n}"
    sys.exit(f"error: none of {names} found; run scripts/setup-deps.sh test")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def percentile(sorted_xs, p):
    if not sorted_xs:
        return float("nan")
    i = round(p / 100 * (len(sorted_xs) - 1))
    return sorted_xs[min(i, len(sorted_xs) - 1)]


# ---------------------------------------------------------------------------------------------
# Clean-up: every process by its PID, then the work dir.


class Cleanup:
    def __init__(self):
        self.procs = []  # (name, Popen)
        self.dirs = []
        self.failed = False
        atexit.register(self.run)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        say(f"\ninterrupted (signal {signum}); cleaning up")
        sys.exit(128 + signum)

    def add_proc(self, name, proc):
        self.procs.append((name, proc))

    def forget_proc(self, proc):
        self.procs = [(n, p) for (n, p) in self.procs if p is not proc]

    def add_dir(self, d):
        self.dirs.append(Path(d))

    def run(self):
        for name, p in reversed(self.procs):
            stop_process(p, name, timeout=60)
        self.procs = []
        for d in self.dirs:
            if keep():
                say(f"BENCH_KEEP=1: kept {d}")
            elif self.failed:
                say(f"the benchmark failed: kept {d} for a look (remove it when done)")
            else:
                shutil.rmtree(d, ignore_errors=True)
        self.dirs = []


CLEANUP = None


def finish(results):
    """Ends a benchmark's report: the load average, and the results as JSON to BENCH_OUT if set."""
    say("loadavg at the end: " + Path("/proc/loadavg").read_text().strip())
    out = os.environ.get("BENCH_OUT")
    if out:
        Path(out).write_text(json.dumps(results, indent=2, default=str))
        say(f"results written to {out}")


def run_main(main):
    """Runs `main`; a failure (not an interruption) keeps the work dir for a post-mortem."""
    try:
        main()
    except SystemExit as e:
        if e.code not in (None, 0) and not str(e.code).isdigit():
            cleanup().failed = True
        raise
    except Exception:
        cleanup().failed = True
        raise


def cleanup():
    global CLEANUP
    if CLEANUP is None:
        CLEANUP = Cleanup()
    return CLEANUP


def stop_process(p, name, timeout=60):
    """SIGTERM the PID we started, wait, then SIGKILL it if it is still there."""
    if p.poll() is not None:
        return p.returncode
    try:
        os.kill(p.pid, signal.SIGTERM)
        os.kill(p.pid, signal.SIGCONT)  # a process a bench froze (SIGSTOP) acts on SIGTERM only once resumed
    except ProcessLookupError:
        return p.wait()
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        say(f"{name} (pid {p.pid}) ignored SIGTERM for {timeout}s; SIGKILL")
        os.kill(p.pid, signal.SIGKILL)
        return p.wait()


def work_dir(prefix, base=None):
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base or os.environ.get("BENCH_TMPDIR") or None))
    cleanup().add_dir(d)
    return d


def output_root(root):
    """Where the tools under test write binlog files: BENCH_OUTPUT_DIR (e.g. /dev/shm, to take
    the disk out of the measurement) or the work dir."""
    base = os.environ.get("BENCH_OUTPUT_DIR")
    if not base:
        return root
    d = work_dir("binlog-bench-out.", base)
    say(f"binlog files are written to {d} ({df_line(d)})")
    return d


def df_line(path):
    """`df -hT` of the filesystem holding `path`, on one line (or "?")."""
    df = _cmd(["df", "-hT", str(path)]).splitlines()
    return " ".join(df[-1].split()) if len(df) > 1 else "?"


def peer_root(root, name):
    """Where a mariadbd that stands for another machine keeps its files (the source the load
    commits to, the replicas of the relay's fleet): BENCH_PEERS_DIR (e.g. /dev/shm) or the work dir.
    On the real topology those have disks of their own. Beside us on one disk, their writes that
    nobody syncs (the source's binlog with sync_binlog=0: about 0.5 MiB/s at 1k tx/s) pile up as
    dirty pages that the kernel writes back in one burst once they are 30 s old
    (vm.dirty_expire_centisecs), and whatever fsync runs then waits behind the burst: ours, not
    theirs (they sync nothing on the commit path). binlog-server's debug log goes there too (see
    `Server`). Remove a per-run one with `drop_dir`."""
    base = os.environ.get("BENCH_PEERS_DIR")
    if not base:
        return Path(root) / name
    Path(root).mkdir(parents=True, exist_ok=True)  # the run's own files (load.csv ...) stay there
    return work_dir(f"binlog-bench-{name}.", base)


def drop_dir(d):
    """Removes a work dir made by `work_dir` now, not at exit (kept with BENCH_KEEP=1)."""
    d = Path(d)
    if keep() or d not in cleanup().dirs:
        return
    cleanup().dirs.remove(d)
    shutil.rmtree(d, ignore_errors=True)


def peers_where():
    """One line for a report: where the peers' files are (see `peer_root`)."""
    base = os.environ.get("BENCH_PEERS_DIR")
    if not base:
        return "the source's (and any fleet's) files and binlog-server's debug log: in the work dir, on the disk under test"
    return f"the source's (and any fleet's) files and binlog-server's debug log: under {base} ({df_line(base)})"


def sync_before_run():
    """Before a measured run: writes back what earlier runs and the set-up left unwritten
    (`os.sync`), unless BENCH_SYNC_BEFORE_RUN=0. Otherwise their files, dirty in the page cache
    until 30 s old (vm.dirty_expire_centisecs), are written back in a burst during a later run, and
    whichever set-up fsyncs on its commit path then waits behind it: a stall of tens of ms that
    belongs to an earlier run."""
    if env_int("BENCH_SYNC_BEFORE_RUN", 1) != 0:
        os.sync()


def dirty_kib():
    """Dirty plus Writeback from /proc/meminfo, KiB: page-cache data not yet on the disk."""
    m = {}
    for line in _read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        if k in ("Dirty", "Writeback"):
            m[k] = int(v.split()[0])
    return m.get("Dirty", 0) + m.get("Writeback", 0)


class DirtySampler:
    """Samples `dirty_kib()` every `interval` seconds in a thread, for the line of a run: how much
    unwritten data the machine held at the start and at most (a burst written back during a run
    stalls every fsync on the disk)."""

    def __init__(self, interval=0.25):
        self.interval = interval
        self.samples = [dirty_kib()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self.interval):
            self.samples.append(dirty_kib())

    def stop(self):
        self._stop.set()
        self._thread.join()
        return f"dirty {self.samples[0] / 1024:.1f} MiB at the start, {max(self.samples) / 1024:.1f} at most"


def poll_until(timeout, what, f, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Machine facts and /proc accounting.


def _read(path, default=""):
    try:
        return Path(path).read_text()
    except OSError:
        return default


def _cmd(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine_facts(data_path):
    cpu = next((l.split(":", 1)[1].strip() for l in _read("/proc/cpuinfo").splitlines()
                if l.startswith("model name")), platform.processor())
    mhz = next((l.split(":", 1)[1].strip() for l in _read("/proc/cpuinfo").splitlines()
                if l.startswith("cpu MHz")), "?")
    mem_kb = next((int(l.split()[1]) for l in _read("/proc/meminfo").splitlines() if l.startswith("MemTotal")), 0)
    df = _cmd(["df", "-hT", str(data_path)]).splitlines()
    dev = df[-1].split()[0] if len(df) > 1 else "?"
    base = os.path.basename(dev)
    rot = _read(f"/sys/block/{base}/queue/rotational").strip() or "?"
    sched = _read(f"/sys/block/{base}/queue/scheduler").strip() or "?"
    cache = _read(f"/sys/block/{base}/queue/write_cache").strip() or "?"
    mount = next((l.split()[3] for l in _read("/proc/mounts").splitlines()
                  if len(l.split()) > 3 and l.split()[0] == dev), "?")
    journal = next((l.split("]", 1)[-1].strip() for l in _cmd(["dmesg"]).splitlines()
                    if f"EXT4-fs ({base})" in l and "mounted" in l), "")
    git = _cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = _cmd(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(),
        "cpu": f"{cpu} ({mhz} MHz)",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "disk": f"{' '.join(df[-1].split()) if len(df) > 1 else '?'} (rotational={rot}, scheduler={sched}, "
                f"write_cache={cache}, mount options {mount})" + (f"; dmesg: {journal}" if journal else ""),
        "mariadbd": _cmd([find_bin("mariadbd", "mysqld"), "--version"]),
        "mariadb-binlog": _cmd([find_bin("mariadb-binlog", "mysqlbinlog"), "--version"]),
        "rustc": _cmd(["rustc", "--version"]),
        "commit": git + (" (+ local changes)" if dirty else ""),
        "loadavg": _read("/proc/loadavg").strip(),
        "page reporting": page_reporting(),
    }


def page_reporting():
    """Whether this (virtual) machine hands freed memory back to its host (virtio-balloon's free
    page reporting). Where it does, memory the kernel freed a few seconds ago is no longer backed
    by the host, and the first write to each page costs a host fault: about 2.2 s of system time
    per GiB on the 2026-12-06 machines, charged to whichever process fills the page cache with
    new data then. A catch-up run that lands on such memory shows up as a slow mode at about
    twice the CPU-s per GiB, for every tool alike (docs/performance.md, 2026-12-06, eleventh
    session)."""
    order = _read("/sys/module/page_reporting/parameters/page_reporting_order").strip()
    if not order:
        return "none (no page_reporting module)"
    if not os.path.isdir("/sys/bus/virtio/drivers/virtio_balloon"):
        return f"off (no virtio_balloon driver; page_reporting_order {order})"
    if int(order) > 10:
        return f"off (page_reporting_order {order}, above the largest block order)"
    return (f"on: freed blocks of order >= {order} go back to the host (first writes into them pay a host "
            f"fault; runs may be bimodal)")


def print_facts(facts):
    say("machine:")
    for k, v in facts.items():
        say(f"  {k:15} {v}")


def proc_cpu(pid):
    """(utime + stime) of a whole process in seconds, dead threads included; None if gone."""
    s = _read(f"/proc/{pid}/stat")
    if not s:
        return None
    f = s[s.rindex(")") + 2:].split()
    return (int(f[11]) + int(f[12])) / CLK_TCK, int(f[11]) / CLK_TCK, int(f[12]) / CLK_TCK


def thread_cpu(pid):
    """{tid: (name, utime_s, stime_s)} for the live threads of `pid`."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        s = _read(f"/proc/{pid}/task/{tid}/stat")
        if not s:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        out[tid] = (name, int(f[11]) / CLK_TCK, int(f[12]) / CLK_TCK)
    return out


def thread_cpu_delta(pid, before, after):
    """{label: (user_s, sys_s)} per thread between two thread_cpu() snapshots, busiest first.

    The label is `main` for the process's first thread and `name:tid` for the others (unnamed
    threads inherit the process name, so the tid tells them apart). Threads that ended between
    the snapshots are missing here but counted in proc_cpu()."""
    out = {}
    for tid, (name, u, s) in after.items():
        u0, s0 = (before[tid][1], before[tid][2]) if tid in before else (0.0, 0.0)
        label = "main" if tid == str(pid) else f"{name}:{tid}"
        out[label] = (u - u0, s - s0)
    return {k: v for k, v in sorted(out.items(), key=lambda kv: -(kv[1][0] + kv[1][1])) if v[0] + v[1] > 0}


def cpu_stat():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    vals = [int(x) for x in _read("/proc/stat").splitlines()[0].split()[1:9]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def busy_pct(before, after):
    """Machine CPU in use between two cpu_stat() samples, in % of all cores."""
    d_busy, d_total = after[0] - before[0], after[1] - before[1]
    return 100.0 * d_busy / d_total if d_total else 0.0


def wait_quiet(max_wait_s=None, idle_pct=None):
    """Waits (at most BENCH_QUIET_WAIT_S, default 120 s) until the machine is at least
    BENCH_QUIET_IDLE_PCT (default 60) % idle over one second: the other engineers' builds and
    tests share these cores. Returns the busy % seen last and how long it waited."""
    max_wait_s = env_int("BENCH_QUIET_WAIT_S", 120) if max_wait_s is None else max_wait_s
    idle_pct = env_int("BENCH_QUIET_IDLE_PCT", 60) if idle_pct is None else idle_pct
    t0 = time.monotonic()
    while True:
        a = cpu_stat()
        time.sleep(1.0)
        busy = busy_pct(a, cpu_stat())
        waited = time.monotonic() - t0
        if 100 - busy >= idle_pct or waited >= max_wait_s:
            return busy, waited


def proc_io(pid):
    """/proc/<pid>/io as a dict (rchar, wchar, syscr, syscw, read_bytes, write_bytes, ...)."""
    out = {}
    for line in _read(f"/proc/{pid}/io").splitlines():
        k, _, v = line.partition(":")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def proc_status(pid):
    """VmRSS, VmHWM, Threads ... of /proc/<pid>/status as ints (kB for the Vm* fields)."""
    out = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        v = v.split()
        if v and v[0].isdigit():
            out[k] = int(v[0])
    return out


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class RssSampler:
    """Samples VmRSS of `pid` every `interval` seconds in a thread: [(monotonic, rss_kb)]."""

    def __init__(self, pid, interval=0.1):
        self.pid, self.interval = pid, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            rss = proc_status(self.pid).get("VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def between(self, t0, t1):
        return [kb for (t, kb) in self.samples if t0 <= t <= t1]

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.samples


# ---------------------------------------------------------------------------------------------
# binlog-server's histograms, from /metrics.


def histogram_buckets(server, name):
    """One of binlog-server's histograms from `/metrics`: {upper bound s: cumulative count}."""
    with urllib.request.urlopen(server.url("/metrics"), timeout=30) as r:
        text = r.read().decode()
    out = {}
    prefix = f'{name}_bucket{{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            le, _, count = line[len(prefix):].partition('"} ')
            out[float(le)] = int(count)
    return out


def bucket_percentile(before, after, q):
    """The upper bound of the bucket that holds the q-th percentile of what was added between two
    scrapes of a cumulative histogram (None when nothing was added)."""
    delta = sorted((le, after[le] - before.get(le, 0)) for le in after)
    total = delta[-1][1] if delta else 0
    if total == 0:
        return None
    for le, n in delta:
        if n >= total * q / 100:
            return le
    return delta[-1][0]


# The live path's histograms: a batch's first event read -> its fsync returned; a durable checkpoint
# published -> its first bytes written to a waiting relay client; an event that asked for a
# semi-sync ack -> the ack sent.
DURABLE_HIST = "binlog_server_durable_seconds"
RELAY_DELAY_HIST = "binlog_server_relay_send_delay_seconds"
ACK_HIST = "binlog_server_semi_sync_ack_seconds"


def live_histograms(server):
    return {name: histogram_buckets(server, name) for name in (DURABLE_HIST, RELAY_DELAY_HIST, ACK_HIST)}


def fmt_le(le_s):
    return "-" if le_s is None else f"<= {le_s * 1000:g} ms"


# ---------------------------------------------------------------------------------------------
# Log timestamps.


def parse_ts_ns(ts):
    """RFC 3339 UTC ('2026-11-24T13:19:22.462637599Z') -> Unix nanoseconds."""
    ts = ts.rstrip("Z")
    if ts.endswith("+00:00"):
        ts = ts[:-6]
    main, _, frac = ts.partition(".")
    secs = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def gtid_seq(gtid, domain=0):
    """The sequence number of `domain` in a MariaDB GTID state like '0-1-12345,1-2-7'."""
    for part in (gtid or "").split(","):
        bits = part.strip().split("-")
        if len(bits) == 3 and bits[0].isdigit() and int(bits[0]) == domain:
            return int(bits[2])
    return None


def fsync_times_ms(records):
    """The writer's fsyncs (ms, sorted) in binlog-server's debug log records: one "checkpoint
    durable" line per batch that moved the checkpoint. Unlike the fsync histogram, this keeps a
    single slow one: one 100 ms fsync among 10,000 is not in any p99, but a commit p99 that jumps
    by 100 ms is often just that."""
    return sorted(int(x.get("fsync_us", 0)) / 1000 for x in records if x.get("msg") == "checkpoint durable")


def fmt_fsync_tail(fsync_ms):
    """'slowest fsync X ms, N over 10 ms' for a run's fsync times."""
    if not fsync_ms:
        return "no fsync in the log"
    return f"slowest fsync {fsync_ms[-1]:.1f} ms, {sum(f > 10 for f in fsync_ms)} over 10 ms"


class LogTail:
    """Reads a JSON-lines log file incrementally."""

    def __init__(self, path):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""

    def skip_to_end(self):
        self.offset = self.path.stat().st_size if self.path.exists() else 0
        self.partial = b""

    def read(self):
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out


# ---------------------------------------------------------------------------------------------
# A throwaway mariadbd.


class MariaDB:
    def __init__(self, root, extra_args):
        self.root = Path(root)
        self.datadir = self.root / "data"
        self.port = None
        self.proc = None
        self.extra_args = list(extra_args)
        self.client = find_bin("mariadb", "mysql")
        self.user_opt = ["--user=root"] if os.geteuid() == 0 else []

    def base_args(self):
        return [
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.root / 'sock'}",
            f"--pid-file={self.root / 'mariadbd.pid'}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--log-bin={self.datadir / 'mariadb-bin'}",
            "--binlog-format=ROW",
            "--binlog-checksum=CRC32",
            "--server-id=1",
            "--gtid-domain-id=0",
            "--max-allowed-packet=64M",
            "--skip-name-resolve",
            f"--log-error={self.root / 'mariadbd.err'}",
        ] + self.user_opt + self.extra_args

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        install = [find_bin("mariadb-install-db", "mysql_install_db"), "--no-defaults", f"--datadir={self.datadir}",
                   "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"] + self.user_opt
        r = subprocess.run(install, capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise SystemExit(f"mariadb-install-db failed:\n{r.stdout}{r.stderr}")
        for _attempt in range(5):
            self.port = free_port()
            self.argv = [find_bin("mariadbd", "mysqld")] + self.base_args()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=open(self.root / "mariadbd.console", "ab"))
            cleanup().add_proc("mariadbd", self.proc)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if pid_listens_on(self.proc.pid, self.port) and self.try_sql("SELECT 1") is not None:
                    break
                time.sleep(0.1)
            if self.proc.poll() is None:
                break
            err = _read(self.root / "mariadbd.err")
            if "Address already in use" not in err:
                raise SystemExit(f"mariadbd exited during start-up:\n{err[-3000:]}")
        else:
            raise SystemExit("mariadbd could not bind a free port")
        self.sql(f"""
            SET sql_log_bin = 0;
            DELETE FROM mysql.global_priv WHERE User = '';
            FLUSH PRIVILEGES;
            CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}';
            GRANT REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR, SELECT ON *.* TO '{REPL_USER}'@'%';
            CREATE DATABASE bench;
        """)
        self.sql("RESET MASTER")
        return self

    def client_argv(self, db=None):
        argv = [self.client, "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "--batch",
                "--skip-column-names"]
        return argv + ([db] if db else [])

    def try_sql(self, q, db=None):
        r = subprocess.run(self.client_argv(db), input=q, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            return None
        return [line.split("\t") for line in r.stdout.splitlines()]

    def sql(self, q, db=None):
        r = subprocess.run(self.client_argv(db), input=q, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise SystemExit(f"SQL failed on port {self.port}: {r.stderr.strip()}\n  SQL: {q.strip()[:500]}")
        return [line.split("\t") for line in r.stdout.splitlines()]

    def value(self, q):
        rows = self.sql(q)
        return rows[0][0] if rows and rows[0] else None

    def master_status(self):
        row = self.sql("SHOW MASTER STATUS")[0]
        return row[0], int(row[1])

    def binary_logs(self):
        return [(r[0], int(r[1])) for r in self.sql("SHOW BINARY LOGS")]

    def variables(self, names):
        rows = self.sql("SHOW GLOBAL VARIABLES WHERE Variable_name IN (%s)" % ",".join(f"'{n}'" for n in names))
        return {r[0]: r[1] for r in rows}

    def settle(self, quiet=3.0, timeout=120):
        """Waits until SHOW MASTER STATUS stops moving (MariaDB appends binlog checkpoint events a
        moment after a burst; the target position must not move under a measurement)."""
        last, since = None, time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = self.master_status()
            if cur != last:
                last, since = cur, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return cur
            time.sleep(0.25)
        return last

    def stop(self):
        if self.proc:
            stop_process(self.proc, "mariadbd", timeout=120)
            cleanup().forget_proc(self.proc)
            self.proc = None


# ---------------------------------------------------------------------------------------------
# binlog-server.


def server_binary():
    explicit = os.environ.get("BENCH_SERVER_BIN")
    if explicit:
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or str(REPO / "target")
    return str(Path(target) / "release" / "binlog-server")


WRITER_DEFAULTS = {
    "BINLOG_SERVER_WRITER_FSYNC_MAX_DELAY_MS": "2",
    "BINLOG_SERVER_WRITER_FSYNC_MAX_BYTES": "8388608",
    "BINLOG_SERVER_WRITER_CHECKPOINT_INTERVAL_MS": "200",
}


def writer_settings():
    """The writer settings in effect: the caller's BINLOG_SERVER_WRITER_* variables (every one of
    them, e.g. BINLOG_SERVER_WRITER_DIRECT_IO) over the defaults above."""
    s = {k: os.environ.get(k, v) for k, v in WRITER_DEFAULTS.items()}
    s.update({k: v for k, v in os.environ.items() if k.startswith("BINLOG_SERVER_WRITER_")})
    return s


class Server:
    def __init__(self, root, extra_env=None, binary=None):
        """`extra_env`: more BINLOG_SERVER_* settings (upload, log level ...); they win over the
        defaults below. `binary`: another binlog-server than BENCH_SERVER_BIN (an A/B run)."""
        self.root = Path(root)
        self.binary = binary or server_binary()
        self.data = self.root / "data"
        # Benches log at debug (a line per batch: each fsync's time), about 0.25 MiB/s at 1k tx/s,
        # where the default level writes next to nothing: under BENCH_PEERS_DIR, like the peers'
        # files, so that its writeback does not stall the fsyncs being measured (see peer_root).
        peers = os.environ.get("BENCH_PEERS_DIR")
        self.log_path = (work_dir("binlog-bench-log.", peers) if peers else self.root) / "server.log"
        self.port = None
        self.proc = None
        self.extra_env = dict(extra_env or {})

    def start(self):
        self.data.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BINLOG_SERVER_")}
        env.update(writer_settings())
        for _attempt in range(5):
            self.port = free_port()
            env.update({
                "BINLOG_SERVER_LISTEN_ADDR": f"127.0.0.1:{self.port}",
                "BINLOG_SERVER_DATA_DIR": str(self.data),
                "BINLOG_SERVER_LOG_FILE": str(self.log_path),
                "BINLOG_SERVER_LOG_FORMAT": "json",
                "BINLOG_SERVER_LOG_LEVEL": "debug",
                "BINLOG_SERVER_LOG_MAX_SIZE_MB": "4096",
            })
            env.update(self.extra_env)
            self.env_shown = {k: v for k, v in env.items() if k.startswith("BINLOG_SERVER_")}
            self.argv = [self.binary, "serve"]
            self.proc = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL,
                                         stdout=open(self.root / "console.log", "ab"), stderr=subprocess.STDOUT)
            cleanup().add_proc("binlog-server", self.proc)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.url("/healthz"), timeout=2) as r:
                        if r.status == 200 and pid_listens_on(self.proc.pid, self.port):
                            return self
                except (OSError, urllib.error.URLError):
                    pass
                time.sleep(0.05)
            console = _read(self.root / "console.log") + _read(self.log_path)
            stop_process(self.proc, "binlog-server")
            cleanup().forget_proc(self.proc)
            if "Address already in use" not in console and "os error 98" not in console:
                raise SystemExit(f"binlog-server did not start:\n{console[-3000:]}")
        raise SystemExit("binlog-server could not bind a free port")

    def command_line(self):
        return shell_join([f"{k}={v}" for k, v in sorted(self.env_shown.items())] + self.argv)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        # X-Requested-With: what the server asks of a request that changes state without a body.
        headers = {"X-Requested-With": "benchlib"}
        if data:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text.strip() else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, text

    def create_task(self, db, start, name="bench", cluster_key="bench"):
        body = {
            "name": name, "cluster_key": cluster_key,
            "source": {"host": "127.0.0.1", "port": db.port, "user": REPL_USER, "password": REPL_PASSWORD,
                       "flavor": "mariadb", "tls_mode": "disabled"},
            "start": start,
            "storage": {"retention_days": 7},
        }
        status, task = self.request("POST", "/api/tasks", body)
        if status != 201:
            raise SystemExit(f"creating the task failed: {status} {task}")
        return task["id"]

    def files_dir(self, task_id):
        d = self.data / str(task_id)
        subs = [p for p in d.iterdir() if p.is_dir()] if d.exists() else []
        return subs[0] if len(subs) == 1 else None

    def stop(self):
        if self.proc:
            stop_process(self.proc, "binlog-server", timeout=60)
            cleanup().forget_proc(self.proc)
            self.proc = None
