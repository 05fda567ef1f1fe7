#!/usr/bin/env bash
# A fault soak (issue 22, item 5; not part of CI): a real mariadbd under a steady write load,
# several binlog-server tasks copying it through a TCP proxy with upload to a real moto_server,
# and every few seconds a random fault:
#   kill9        binlog-server killed with SIGKILL, restarted
#   sigterm      binlog-server stopped with SIGTERM (must exit within 60 s), restarted
#   source       mariadbd restarted (SIGTERM, start again on the same port)
#   link_cut     every connection through the proxy cut
#   s3_freeze    moto_server stopped (SIGSTOP) for 3-8 s, then continued
# Invariants checked all along:
#   - every SEALED file is byte-identical to the source's file of that name;
#   - after every kill -9, the stored checkpoint (read from meta.db before the restart) is not past
#     the bytes of the local file it points into;
# and at the end, once the load stopped and every task caught up:
#   - each task's copy is the source's binlog, byte for byte (bytes lost: must be 0);
#   - every GTID of the source is in each copy exactly once (no gap, no duplicate);
#   - every uploaded object is byte-identical to its local file.
# It prints a summary (faults by kind, transactions written, transactions found in each copy,
# bytes lost) and exits non-zero when an invariant broke.
#
#   scripts/soak.sh 30m                          # duration: 90, 90s, 30m, 2h
#   scripts/soak.sh 30m --tasks 3 --fault-every 5 --summary soak-summary.txt --keep
#
# Needs what `scripts/setup-deps.sh test` installs (mariadbd, mariadb client, moto_server with
# boto3, python3) and a built binary: $BINLOG_SERVER_BIN, else ${CARGO_TARGET_DIR:-target}/debug/
# binlog-server (built with `cargo build` when missing).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
bin=${BINLOG_SERVER_BIN:-${CARGO_TARGET_DIR:-$here/target}/debug/binlog-server}
if [ ! -x "$bin" ]; then
    (cd "$here" && cargo build --bin binlog-server)
fi
exec python3 - "$bin" "$@" <<'PY'
import argparse, json, os, random, re, shutil, signal, socket, sqlite3, struct, subprocess, sys
import tempfile, threading, time, urllib.request, urllib.error
from collections import Counter

BIN = sys.argv[1]
ap = argparse.ArgumentParser(prog="soak.sh")
ap.add_argument("duration")
ap.add_argument("--tasks", type=int, default=3)
ap.add_argument("--fault-every", type=float, default=5.0, help="mean seconds between faults")
ap.add_argument("--summary", help="also write the summary to this file")
ap.add_argument("--keep", action="store_true", help="keep the work directory")
ap.add_argument("--seed", type=int, default=None)
args = ap.parse_args(sys.argv[2:])
m = re.fullmatch(r"(\d+)([smh]?)", args.duration)
if not m:
    sys.exit("soak.sh: duration must be like 90, 90s, 30m or 2h")
DURATION = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
seed = args.seed if args.seed is not None else int(time.time())
rng = random.Random(seed)
ROOT = tempfile.mkdtemp(prefix="binlog-soak-")
IS_ROOT = os.geteuid() == 0
REPL_USER, REPL_PW = "repl", "repl-Soak-1"
AK, SK, BUCKET = "soak-key", "soak-secret", "binlogs"
violations = []
lock = threading.Lock()

def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

def violation(msg):
    with lock:
        violations.append(msg)
    log(f"INVARIANT BROKEN: {msg}")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def wait_for(what, cond, timeout=60.0, interval=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")

def which(name):
    for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin", "/usr/bin", "/sbin"]:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    sys.exit(f"soak.sh: {name} not found (run scripts/setup-deps.sh test)")

MARIADBD, CLIENT, INSTALL_DB = which("mariadbd"), which("mariadb"), which("mariadb-install-db")

# ---- the source -------------------------------------------------------------------------------
class Source:
    def __init__(self):
        self.dir = os.path.join(ROOT, "mariadb")
        self.datadir, self.binlogs = os.path.join(self.dir, "data"), os.path.join(self.dir, "binlog")
        for d in (self.datadir, self.binlogs, os.path.join(self.dir, "tmp")):
            os.makedirs(d)
        cmd = [INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.dir}/tmp",
               "--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve", "--force"]
        if IS_ROOT:
            cmd.append("--user=root")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.port, self.proc = free_port(), None
        self.start()
        self.sql(f"SET SESSION sql_log_bin=0; DROP USER IF EXISTS ''@'localhost'; "
                 f"CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PW}'; "
                 f"GRANT REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR, SELECT ON *.* TO '{REPL_USER}'@'%'")
        self.sql("CREATE DATABASE soak; CREATE TABLE soak.t (id BIGINT PRIMARY KEY, v VARCHAR(300))")

    def start(self):
        args = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.dir}/sock",
                f"--tmpdir={self.dir}/tmp", f"--pid-file={self.dir}/pid", f"--port={self.port}",
                "--bind-address=127.0.0.1", f"--log-bin={self.binlogs}/mariadb-bin", "--binlog-format=ROW",
                "--binlog-checksum=CRC32", "--max-binlog-size=1M", "--server-id=1",
                "--innodb-buffer-pool-size=32M", "--skip-name-resolve"]
        if IS_ROOT:
            args.append("--user=root")
        out = open(os.path.join(self.dir, "mariadbd.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        wait_for("mariadbd to accept SQL", lambda: self.try_sql("SELECT 1") is not None, 120)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill(); self.proc.wait()

    def try_sql(self, sql, timeout=30):
        try:
            r = subprocess.run([CLIENT, "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "--batch",
                                "--skip-column-names", "--connect-timeout=5", "-e", sql],
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return r.stdout if r.returncode == 0 else None

    def sql(self, sql):
        out = self.try_sql(sql)
        if out is None:
            raise RuntimeError(f"SQL failed on the source: {sql[:80]}")
        return out

    def files(self):
        with open(os.path.join(self.binlogs, "mariadb-bin.index")) as f:
            return [os.path.basename(l.strip()) for l in f if l.strip()]

    def end(self):
        row = self.sql("SHOW MASTER STATUS").split("\t")
        return row[0], int(row[1])

# ---- a proxy whose links can be cut -----------------------------------------------------------
class Proxy:
    def __init__(self, target_port):
        self.target, self.conns, self.lock = target_port, set(), threading.Lock()
        self.srv = socket.socket(); self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0)); self.srv.listen(64); self.port = self.srv.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.srv.accept()
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5); u.settimeout(None)
            except OSError:
                c.close(); continue
            with self.lock:
                self.conns.update((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:
            for s in (a, b):
                if s in self.conns:
                    self.conns.discard(s); s.close()

    def cut(self):
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns) // 2

# ---- S3 ---------------------------------------------------------------------------------------
class S3:
    def __init__(self):
        self.port = free_port()
        out = open(os.path.join(ROOT, "moto.log"), "ab")
        self.proc = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(self.port)], cwd=ROOT,
                                     stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        import boto3
        from botocore.config import Config
        self.s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="us-east-1",
                               aws_access_key_id=AK, aws_secret_access_key=SK,
                               config=Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"}))
        wait_for("moto_server", lambda: self.s3.create_bucket(Bucket=BUCKET) is not None, 60, 0.5)

    def get(self, key):
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

# ---- binlog-server ----------------------------------------------------------------------------
class Server:
    def __init__(self, s3):
        self.data = os.path.join(ROOT, "server", "data"); os.makedirs(self.data)
        self.port, self.proc = free_port(), None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BINLOG_SERVER_")}
        self.env.update({
            "BINLOG_SERVER_DATA_DIR": self.data, "BINLOG_SERVER_LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "BINLOG_SERVER_LOG_FILE": os.path.join(ROOT, "server", "server.log"),
            "BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS": "100", "BINLOG_SERVER_REPLICATION_RETRY_MAX_MS": "2000",
            "BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS": "500",
            "BINLOG_SERVER_UPLOAD_ENABLED": "true", "BINLOG_SERVER_UPLOAD_ENDPOINT": f"http://127.0.0.1:{s3.port}",
            "BINLOG_SERVER_UPLOAD_BUCKET": BUCKET, "BINLOG_SERVER_UPLOAD_ACCESS_KEY": AK,
            "BINLOG_SERVER_UPLOAD_SECRET_KEY": SK, "BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC": "1",
            "BINLOG_SERVER_UPLOAD_RETRY_MAX_SEC": "5", "BINLOG_SERVER_UPLOAD_REQUEST_TIMEOUT_SEC": "10",
        })
        self.start()

    def start(self):
        out = open(os.path.join(ROOT, "server", "console.log"), "ab")
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        wait_for("binlog-server /healthz", lambda: self.call("GET", "/healthz", raw=True) is not None, 60)

    def call(self, method, path, body=None, raw=False, timeout=15):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else
                                     {"X-Requested-With": "soak"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read()
                return text if raw else json.loads(text or b"null")
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def files(self, tid):
        r = self.call("GET", f"/api/tasks/{tid}/files")
        return r["items"] if r else None

    def local(self, tid, f):
        return os.path.join(self.data, str(tid), f["source_identity"], f["name"])

# ---- the load ---------------------------------------------------------------------------------
class Load:
    """Single-row autocommit INSERTs in batches, each batch one client run; ids never repeat."""
    def __init__(self, src):
        self.src, self.next_id, self.stop, self.batches_failed = src, 1, threading.Event(), 0
        self.paused = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop.is_set():
            if self.paused.is_set():
                time.sleep(0.1); continue
            first = self.next_id
            self.next_id += 20
            stmts = "".join(f"INSERT INTO soak.t VALUES ({i}, REPEAT('x', {50 + i % 200}));"
                            for i in range(first, first + 20))
            if self.src.try_sql(stmts, timeout=20) is None:
                self.batches_failed += 1
                time.sleep(0.2)

# ---- binlog parsing (MariaDB): GTIDs of a file ------------------------------------------------
def gtids(data):
    """(domain, server, seq) of every GTID event (type 162) in a binlog file's bytes."""
    out, at = [], 4
    while at + 19 <= len(data):
        typ, server = data[at + 4], struct.unpack_from("<I", data, at + 5)[0]
        size = struct.unpack_from("<I", data, at + 9)[0]
        if size < 19 or at + size > len(data):
            break
        if typ == 162:
            seq, domain = struct.unpack_from("<QI", data, at + 19)
            out.append((domain, server, seq))
        at += size
    return out

# ---- checks -----------------------------------------------------------------------------------
checked_sealed = {}  # (task, name) -> size, compared once each

def check_sealed(srv, src, tasks):
    for tid in tasks:
        files = srv.files(tid)
        if files is None:
            return
        for f in files:
            if f["state"] != "SEALED" or (tid, f["name"]) in checked_sealed:
                continue
            try:
                local = open(srv.local(tid, f), "rb").read()
            except FileNotFoundError:
                violation(f"task {tid}: sealed {f['name']} missing on disk"); continue
            source = open(os.path.join(src.binlogs, f["name"]), "rb").read()
            if local != source:
                violation(f"task {tid}: sealed {f['name']} differs from the source's ({len(local)} vs {len(source)} bytes)")
            checked_sealed[(tid, f["name"])] = len(local)

def check_checkpoints_on_disk(srv, tasks):
    """After a kill -9 and before the restart: stored checkpoint <= bytes in the local file."""
    db = sqlite3.connect(f"file:{srv.data}/meta.db?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT task_id, source_identity, file_name, pos FROM checkpoints").fetchall()
    finally:
        db.close()
    for tid, ident, name, pos in rows:
        if name is None:
            continue
        path = os.path.join(srv.data, str(tid), ident, name)
        size = os.path.getsize(path) if os.path.exists(path) else -1
        if size < pos:
            violation(f"task {tid}: checkpoint {name}:{pos} is past the {size} bytes on disk")

# ---- faults -----------------------------------------------------------------------------------
def main():
    log(f"soak: {DURATION}s, {args.tasks} tasks, a fault every ~{args.fault_every}s, seed {seed}, work dir {ROOT}")
    src = Source()
    s3 = S3()
    proxy = Proxy(src.port)
    srv = Server(s3)
    first = src.files()[0]
    tasks = []
    for i in range(args.tasks):
        t = srv.call("POST", "/api/tasks", {
            "name": f"soak-{i}", "cluster_key": f"soak-{i}",
            "source": {"host": "127.0.0.1", "port": proxy.port, "user": REPL_USER, "password": REPL_PW,
                       "flavor": "mariadb"},
            "start": {"mode": "FILE_POS", "file": first, "pos": 4}})
        if not t or "id" not in t:
            sys.exit(f"soak.sh: creating a task failed: {t}")
        tasks.append(t["id"])
        srv.call("POST", f"/api/tasks/{t['id']}/start", {})
    load = Load(src)
    faults, kill9_checks = Counter(), 0
    started = time.time()
    next_check = started
    while time.time() - started < DURATION:
        time.sleep(rng.uniform(0.4, 1.6) * args.fault_every)
        kind = rng.choice(["kill9", "sigterm", "source", "link_cut", "s3_freeze"])
        try:
            if kind == "kill9":
                srv.proc.kill(); srv.proc.wait()
                check_checkpoints_on_disk(srv, tasks); kill9_checks += 1
                srv.start()
            elif kind == "sigterm":
                srv.proc.send_signal(signal.SIGTERM)
                try:
                    srv.proc.wait(60)
                except subprocess.TimeoutExpired:
                    violation("binlog-server did not exit within 60 s of SIGTERM")
                    srv.proc.kill(); srv.proc.wait()
                srv.start()
            elif kind == "source":
                load.paused.set(); src.stop(); src.start(); load.paused.clear()
            elif kind == "link_cut":
                proxy.cut()
            elif kind == "s3_freeze":
                s3.proc.send_signal(signal.SIGSTOP)
                threading.Timer(rng.uniform(3, 8), lambda: s3.proc.send_signal(signal.SIGCONT)).start()
        except Exception as e:
            violation(f"fault {kind} could not be carried out or recovered from: {e}")
        faults[kind] += 1
        if time.time() >= next_check:
            check_sealed(srv, src, tasks)
            next_check = time.time() + 10
            log(f"{sum(faults.values())} faults {dict(faults)}; {load.next_id - 1} rows sent; "
                f"{len(checked_sealed)} sealed files checked; {len(violations)} violations")

    # ---- the end: stop the load, let every task catch up, compare everything ----
    load.stop.set()
    time.sleep(1)
    os.kill(s3.proc.pid, signal.SIGCONT)
    src.sql("FLUSH BINARY LOGS")
    end = src.end()
    def caught_up(tid):
        cp = srv.call("GET", f"/api/tasks/{tid}/checkpoint")
        return cp and cp.get("file") == end[0] and cp.get("pos") == end[1]
    for tid in tasks:
        try:
            wait_for(f"task {tid} to catch up with {end}", lambda: caught_up(tid), 300, 1)
        except RuntimeError as e:
            t = srv.call("GET", f"/api/tasks/{tid}")
            violation(f"{e}: {t and t.get('state')} {t and t.get('last_error')}")
    check_sealed(srv, src, tasks)
    rows = int(src.sql("SELECT COUNT(*) FROM soak.t").strip())
    source_files = src.files()
    source_gtids = []
    for n in source_files:
        source_gtids += gtids(open(os.path.join(src.binlogs, n), "rb").read())
    per_task = {}
    for tid in tasks:
        files = srv.files(tid) or []
        found, lost = [], 0
        by_name = {f["name"]: f for f in files}
        for n in source_files:
            sdata = open(os.path.join(src.binlogs, n), "rb").read()
            f = by_name.get(n)
            ldata = open(srv.local(tid, f), "rb").read() if f and os.path.exists(srv.local(tid, f)) else b""
            same = 0
            limit = min(len(sdata), len(ldata))
            # The open file's FDE in-use flag (offset 21) is the only byte a copy may differ in.
            while same < limit and (sdata[same] == ldata[same] or same == 21):
                same += 1
            lost += len(sdata) - same
            found += gtids(ldata[:same])
        dup = sum(c - 1 for c in Counter(found).values() if c > 1)
        missing = len(set(source_gtids) - set(found))
        per_task[tid] = (len(found), dup, missing, lost)
        if lost or dup or missing:
            violation(f"task {tid}: {lost} bytes lost, {dup} duplicate and {missing} missing transactions")
    # Uploaded objects: wait until the sealed files are up, then compare bytes.
    def all_uploaded():
        for tid in tasks:
            for f in srv.files(tid) or []:
                if f["state"] == "SEALED" and not (f["upload"]["state"] == "UPLOADED" and f["upload"]["verified"]):
                    return False
        return True
    try:
        wait_for("every sealed file to be uploaded and verified", all_uploaded, 300, 2)
    except RuntimeError as e:
        violation(str(e))
    objects, object_mismatch = 0, 0
    for tid in tasks:
        for f in srv.files(tid) or []:
            key = f["upload"].get("object_key")
            if f["upload"]["state"] == "UPLOADED" and key:
                objects += 1
                if s3.get(key) != open(srv.local(tid, f), "rb").read():
                    object_mismatch += 1
                    violation(f"task {tid}: object {key} differs from {f['name']}")

    elapsed = time.time() - started
    lines = [
        f"binlog-server fault soak: {elapsed / 60:.1f} min, seed {seed}, {args.tasks} tasks, "
        f"a fault every ~{args.fault_every:g} s (uniform 0.4x..1.6x)",
        "faults injected: " + ", ".join(f"{k} {faults[k]}" for k in ["kill9", "sigterm", "source", "link_cut", "s3_freeze"])
        + f" (total {sum(faults.values())})",
        f"transactions written: {len(source_gtids)} GTIDs in the source's binlog ({rows} rows committed, "
        f"{load.batches_failed} client batches failed during faults), {len(source_files)} binlog files",
    ]
    for tid, (found, dup, missing, lost) in per_task.items():
        lines.append(f"task {tid}: transactions found in the archive {found}, duplicates {dup}, missing {missing}, "
                     f"bytes lost {lost}")
    lines += [
        f"sealed files compared with the source: {len(checked_sealed)}; checkpoint-vs-disk checks after kill -9: {kill9_checks}",
        f"uploaded objects compared with the local files: {objects}, different: {object_mismatch}",
        f"invariant violations: {len(violations)}" + ("" if not violations else ": " + "; ".join(violations[:10])),
        "RESULT: " + ("PASS" if not violations else "FAIL"),
    ]
    print("\n".join(lines), flush=True)
    if args.summary:
        with open(args.summary, "w") as f:
            f.write("\n".join(lines) + "\n")
    for p in (srv.proc, src.proc, s3.proc):
        try:
            p.send_signal(signal.SIGCONT) if p is s3.proc else None
            p.terminate(); p.wait(60)
        except Exception:
            p.kill()
    if not args.keep:
        shutil.rmtree(ROOT, ignore_errors=True)
    else:
        log(f"kept {ROOT}")
    sys.exit(0 if not violations else 1)

main()
PY
