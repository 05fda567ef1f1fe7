"""Upload throughput to an S3 test server (moto) while a task streams a >= 1 GiB backlog, and
the streaming throughput with and without upload.

Run through scripts/bench/run.sh upload, which builds the release binary first. See
docs/performance.md for what is measured and how to read the output.
"""

import hashlib
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    LogTail, MariaDB, Server, busy_pct, cleanup, cpu_stat, env_int, find_bin, finish, free_port, machine_facts,
    median, output_root, parse_ts_ns, percentile, pid_listens_on, print_facts, proc_cpu, proc_status, run_main, say,
    shell_join, stop_process, thread_cpu, thread_cpu_delta, wait_quiet, work_dir,
)
from catchup import generate  # noqa: E402

MIB = 1024 * 1024
TIMEOUT = env_int("BENCH_TIMEOUT_S", 900)
BUCKET = "binlogs"
ACCESS_KEY, SECRET_KEY = "testing-key", "testing-secret"


def source_args():
    return [
        f"--max-binlog-size={env_int('BENCH_UPLOAD_BINLOG_MIB', 64)}M",
        "--sync-binlog=0",
        "--innodb-flush-log-at-trx-commit=0",
        "--innodb-buffer-pool-size=256M",
        "--innodb-log-file-size=256M",
    ]


class Moto:
    """moto_server on a loopback port in its own dir, with one bucket (as tests/it/common/s3.rs)."""

    def __init__(self, root):
        self.root = Path(root)
        self.proc = None

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            self.port = free_port()
            self.argv = [find_bin("moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]
            self.proc = subprocess.Popen(self.argv, cwd=self.root, stdin=subprocess.DEVNULL,
                                         stdout=open(self.root / "moto.log", "ab"), stderr=subprocess.STDOUT)
            cleanup().add_proc("moto_server", self.proc)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                if pid_listens_on(self.proc.pid, self.port):
                    self.client().create_bucket(Bucket=BUCKET)
                    return self
                time.sleep(0.1)
            self.stop()
        raise SystemExit(f"moto_server did not start (log in {self.root})")

    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint(), region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

    def objects(self):
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["Size"]
        return out

    def sha256(self, key):
        h = hashlib.sha256()
        body = self.client().get_object(Bucket=BUCKET, Key=key)["Body"]
        for chunk in iter(lambda: body.read(4 * MIB), b""):
            h.update(chunk)
        return h.hexdigest()

    def stop(self):
        if self.proc:
            stop_process(self.proc, "moto_server", timeout=30)
            cleanup().forget_proc(self.proc)
            self.proc = None


def upload_env(moto):
    return {
        "BINLOG_SERVER_UPLOAD_ENABLED": "true",
        "BINLOG_SERVER_UPLOAD_ENDPOINT": moto.endpoint(),
        "BINLOG_SERVER_UPLOAD_BUCKET": BUCKET,
        "BINLOG_SERVER_UPLOAD_ACCESS_KEY": ACCESS_KEY,
        "BINLOG_SERVER_UPLOAD_SECRET_KEY": SECRET_KEY,
        "BINLOG_SERVER_UPLOAD_PREFIX": "bench",
    }


def ts_s(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(4 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()


class Prober:
    """GET /api/tasks/{id} in a loop (one request at a time, 20 ms apart) while a run goes on:
    the handler asks the Supervisor actor, so its latency shows how long the actix System
    arbiter (where the task, replication and upload actors run) is kept busy."""

    def __init__(self, server, task_id):
        self.url = server.url(f"/api/tasks/{task_id}")
        self.ms = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as r:
                    r.read()
            except OSError:
                pass
            self.ms.append(1000 * (time.monotonic() - t))
            self._stop.wait(0.02)

    def stop(self):
        self._stop.set()
        self._thread.join()
        xs = sorted(self.ms)
        return {"n": len(xs), "p50": percentile(xs, 50), "p99": percentile(xs, 99), "max": xs[-1] if xs else 0}


def one_run(db, backlog, root, moto=None, check_objects=False):
    """A fresh binlog-server catches up on the backlog (with upload to `moto` when given).
    Streaming ends at the 'checkpoint durable' log line at the source's position; with upload,
    the run ends when every sealed file is UPLOADED (verified)."""
    server = Server(root, upload_env(moto) if moto else {}).start()
    pid = server.proc.pid
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": backlog["first"], "pos": 4})
    tail = LogTail(server.log_path)
    tail.read()
    quiet = wait_quiet()
    target_file, target_pos = backlog["target"]
    n_sealed = len(backlog["files"]) - 1
    cpu0, m0, thr0 = proc_cpu(pid), cpu_stat(), thread_cpu(pid)
    moto0 = proc_cpu(moto.proc.pid) if moto else None
    t0_wall = time.time()
    t0 = time.monotonic()
    st, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if st != 200:
        raise SystemExit(f"starting the task failed: {st} {body}")
    prober = Prober(server, task_id)
    stream_end = None
    uploads = []  # (ts, bytes, ms, parts) from 'file uploaded and verified'
    problems = []
    uploaded_at_stream_end = 0
    while True:
        for line in tail.read():
            msg = line.get("msg")
            if msg == "checkpoint durable" and stream_end is None:
                if line.get("file") == target_file and int(line.get("pos", 0)) >= target_pos:
                    stream_end = parse_ts_ns(line["ts"]) / 1e9
                    uploaded_at_stream_end = sum(u[1] for u in uploads)
                    cpu_stream, thr_stream = proc_cpu(pid), thread_cpu(pid)
            elif msg == "file uploaded and verified":
                uploads.append((parse_ts_ns(line["ts"]) / 1e9, int(line.get("bytes", 0)), int(line.get("ms", 0)),
                                int(line.get("parts", 0))))
            elif line.get("level") in ("WARN", "ERRO", "CRIT"):
                problems.append(f"{line.get('msg')} {line.get('error', '')}".strip())
        done = stream_end is not None and (moto is None or len(uploads) >= n_sealed)
        if done:
            break
        exited = server.proc.poll()
        if time.monotonic() - t0 > TIMEOUT or exited is not None:
            raise SystemExit(f"run did not finish (streamed: {stream_end is not None}, {len(uploads)} of "
                             f"{n_sealed} files uploaded, server exit {exited}); warnings: {problems[-5:]}; "
                             f"log {server.log_path}")
        time.sleep(0.02)
    end_wall = time.time()
    probe = prober.stop()
    cpu1, m1, thr1 = proc_cpu(pid), cpu_stat(), thread_cpu(pid)
    moto1 = proc_cpu(moto.proc.pid) if moto else None
    peak_rss = proc_status(pid).get("VmHWM", 0) / 1024
    res = {
        "upload": moto is not None,
        "stream_s": stream_end - t0_wall,
        "stream_mib_s": backlog["bytes"] / MIB / (stream_end - t0_wall),
        "stream_cpu_s": cpu_stream[0] - cpu0[0],
        # Per thread, in % of the streaming time; 'main' runs the actix System arbiter.
        "stream_threads": {k: round(100 * (u + s_) / (stream_end - t0_wall))
                           for k, (u, s_) in list(thread_cpu_delta(pid, thr0, thr_stream).items())[:4]},
        "all_threads_cpu_s": {k: round(u + s_, 2)
                              for k, (u, s_) in list(thread_cpu_delta(pid, thr0, thr1).items())[:4]},
        "peak_rss_mib": peak_rss,
        "machine_busy_pct": busy_pct(m0, m1),
        "quiet_wait_s": quiet[1],
        "problems": problems,
        "command": server.command_line(),
        "probe_ms": probe,
    }
    if moto:
        st, page = server.request("GET", f"/api/tasks/{task_id}/files")
        files = page["items"]
        up = [f for f in files if f["upload"]["state"] == "UPLOADED"]
        if len(up) != n_sealed or not all(f["upload"]["verified"] for f in up):
            raise SystemExit(f"catalog: {len(up)} of {n_sealed} sealed files UPLOADED and verified")
        up_bytes = sum(f["size"] for f in up)
        last_up = max(ts_s(f["upload"]["uploaded_at"]) for f in up)
        first_sealed = min(ts_s(f["sealed_at"]) for f in up)
        per_file = sorted(u[1] / MIB / (u[2] / 1000) for u in uploads if u[2] > 0)
        total_s = end_wall - t0_wall
        res.update({
            "files_uploaded": len(up),
            "uploaded_mib": up_bytes / MIB,
            "parts_per_file": median([u[3] for u in uploads]),
            # From the catalog: bytes of every sealed file / (last uploaded_at - task start).
            "upload_mib_s_from_start": up_bytes / MIB / (last_up - t0_wall),
            # From the first file sealed (the first moment there was anything to upload).
            "upload_mib_s_from_first_seal": up_bytes / MIB / (last_up - first_sealed),
            "upload_per_file_mib_s_p50": median(per_file),
            "uploaded_while_streaming_mib": uploaded_at_stream_end / MIB,
            "last_upload_after_stream_s": last_up - stream_end,
            "total_s": total_s,
            "server_cpu_pct": 100 * (cpu1[0] - cpu0[0]) / total_s,
            "moto_cpu_pct": 100 * (moto1[0] - moto0[0]) / total_s,
        })
        if check_objects:
            objs = moto.objects()
            bad = []
            for f in up:
                key = f["upload"]["object_key"]
                src = Path(db.datadir, f["name"])
                if objs.get(key) != src.stat().st_size or moto.sha256(key) != file_sha256(src):
                    bad.append(f["name"])
            res["objects_check"] = (f"FAILED: {bad}" if bad else
                                    f"ok: {len(up)} objects byte-identical (sha256) to the source's files")
    server.stop()
    return res


def main():
    runs = env_int("BENCH_RUNS", 3)
    size = env_int("BENCH_UPLOAD_MIB", 1024)
    root = work_dir("binlog-bench-upload.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    db = MariaDB(root / "mariadb", source_args()).start()
    say("source: " + shell_join(db.argv))
    say(f"\n== generating the bulk backlog (>= {size} MiB; 12 MB transactions of 1-4 KB rows)")
    backlog = generate(db, "bulk", size * MIB)
    say(f"{backlog['bytes'] / MIB:.0f} MiB in {len(backlog['files'])} files (the last one stays open), generated "
        f"in {backlog['generate_s']:.0f} s; source at {backlog['target'][0]}:{backlog['target'][1]}")
    out_root = output_root(root)
    results = {"machine": facts, "backlog_mib": backlog["bytes"] / MIB, "files": len(backlog["files"]),
               "runs": []}
    for i in range(runs):
        order = [False, True] if i % 2 == 0 else [True, False]
        for with_upload in order:
            run_root = out_root / f"run{i + 1}-{'upload' if with_upload else 'plain'}"
            moto = Moto(run_root / "moto").start() if with_upload else None
            r = one_run(db, backlog, run_root / "server", moto, check_objects=(with_upload and i == 0))
            if i == 0 and with_upload:
                say("moto: " + shell_join(moto.argv))
                say("binlog-server: " + r["command"])
            if moto:
                moto.stop()
            subprocess.run(["rm", "-rf", str(run_root)], check=False)
            what = "with upload   " if with_upload else "without upload"
            say(f"run {i + 1} {what}: streaming {r['stream_s']:.2f} s = {r['stream_mib_s']:.0f} MiB/s "
                f"(cpu {r['stream_cpu_s']:.1f} s; threads in % of that time {r['stream_threads']}); peak RSS "
                f"{r['peak_rss_mib']:.0f} MiB; machine "
                f"{r['machine_busy_pct']:.0f}% busy")
            if with_upload:
                say(f"    uploaded {r['files_uploaded']} files ({r['uploaded_mib']:.0f} MiB, "
                    f"{r['parts_per_file']:.0f} parts each) in {r['total_s']:.1f} s: "
                    f"{r['upload_mib_s_from_start']:.1f} "
                    f"MiB/s from the task start, {r['upload_mib_s_from_first_seal']:.1f} MiB/s from the first seal; "
                    f"one file p50 {r['upload_per_file_mib_s_p50']:.1f} MiB/s; {r['uploaded_while_streaming_mib']:.0f} "
                    f"MiB were up when streaming ended, the last file {r['last_upload_after_stream_s']:.1f} s later; "
                    f"cpu binlog-server {r['server_cpu_pct']:.0f}% (threads, cpu-s over the whole run: "
                    f"{r['all_threads_cpu_s']}), moto_server {r['moto_cpu_pct']:.0f}%")
                if "objects_check" in r:
                    say(f"    bucket: {r['objects_check']}")
                    if r["objects_check"].startswith("FAILED"):
                        raise SystemExit("objects differ from the source's files")
            pr = r["probe_ms"]
            say(f"    GET /api/tasks/{{id}} every 20 ms during the run: p50 {pr['p50']:.1f} ms, "
                f"p99 {pr['p99']:.1f} ms, "
                f"max {pr['max']:.1f} ms ({pr['n']} requests)")
            if r["problems"]:
                say(f"    warnings in the server log: {r['problems'][:5]}")
            r["run"] = i + 1
            results["runs"].append(r)
    db.stop()

    plain = [r for r in results["runs"] if not r["upload"]]
    up = [r for r in results["runs"] if r["upload"]]
    say(f"\n== summary (median of {runs} runs; {backlog['bytes'] / MIB:.0f} MiB backlog in "
        f"{len(backlog['files'])} files of <= {env_int('BENCH_UPLOAD_BINLOG_MIB', 64)} MiB)")
    say(f"streaming without upload {median([r['stream_mib_s'] for r in plain]):.0f} MiB/s "
        f"(runs {[round(r['stream_mib_s']) for r in plain]})")
    say(f"streaming with upload    {median([r['stream_mib_s'] for r in up]):.0f} MiB/s "
        f"(runs {[round(r['stream_mib_s']) for r in up]})")
    say(f"upload to moto_server    {median([r['upload_mib_s_from_start'] for r in up]):.1f} MiB/s from the task "
        f"start (runs {[round(r['upload_mib_s_from_start'], 1) for r in up]}), "
        f"{median([r['upload_mib_s_from_first_seal'] for r in up]):.1f} MiB/s from the first seal; one file "
        f"{median([r['upload_per_file_mib_s_p50'] for r in up]):.1f} MiB/s; moto_server cpu "
        f"{median([r['moto_cpu_pct'] for r in up]):.0f}%, binlog-server "
        f"{median([r['server_cpu_pct'] for r in up]):.0f}%")
    for name, rs in (("without upload", plain), ("with upload", up)):
        say(f"GET /api/tasks/{{id}} during the runs {name}: p50 {median([r['probe_ms']['p50'] for r in rs]):.1f} ms, "
            f"p99 {median([r['probe_ms']['p99'] for r in rs]):.1f} ms, "
            f"max {max(r['probe_ms']['max'] for r in rs):.1f} ms")
    finish(results)


if __name__ == "__main__":
    run_main(main)
