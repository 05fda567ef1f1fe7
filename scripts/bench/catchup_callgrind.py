"""Instruction counts of one catch-up under callgrind (issue 20): where our user-space CPU goes.

Usage (after a release build; see docs/performance.md, "callgrind instruction counts"):

    BENCH_SERVER_BIN=target/release/binlog-server BENCH_PROFILES="bulk oltp" \
      BENCH_BULK_MIB=160 BENCH_OLTP_MIB=100 python3 scripts/bench/catchup_callgrind.py

Per profile: generates the backlog on a throwaway mariadbd (catchup.py's `generate`), runs
`binlog-server serve` once natively (user and system CPU-seconds from /proc/PID/stat) and once
under `valgrind --tool=callgrind --instr-atstart=no`, with instrumentation switched on just before
POST /api/tasks/1/start and off once the stored checkpoint reaches the source's end. So the
counts cover the catch-up only (not start-up, not shutdown). Prints instructions per MiB of binlog
and leaves callgrind.out.<profile> in the output directory for `callgrind_annotate`.
BENCH_CALLGRIND_REPS=N runs the valgrind part N times (the counts repeat to within about 0.1%).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    MariaDB, Server, cleanup, env_int, env_list, proc_cpu, run_main, say, server_binary, work_dir,
)
from catchup import MIB, SOURCE_ARGS, generate  # noqa: E402

TIMEOUT_S = env_int("BENCH_TIMEOUT_S", 1800)


def wait_caught_up(server, task_id, target):
    file, pos = target
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        status, cp = server.request("GET", f"/api/tasks/{task_id}/checkpoint")
        if status == 200 and (cp or {}).get("file") == file and int((cp or {}).get("pos") or 0) == pos:
            return
        if server.proc.poll() is not None:
            raise SystemExit(f"binlog-server exited ({server.proc.returncode}); log {server.log_path}")
        if time.monotonic() > deadline:
            raise SystemExit(f"not caught up to {file}:{pos} after {TIMEOUT_S} s (checkpoint {cp})")
        # Not faster: every poll is an HTTP request and a query the profile counts too.
        time.sleep(0.5)


def callgrind_control(*args):
    subprocess.run(["callgrind_control", *args], check=True, stdout=subprocess.DEVNULL, timeout=120)


def run_native(db, backlog, root, binary):
    server = Server(root, binary=binary).start()
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": backlog["first"], "pos": 4})
    pid = server.proc.pid
    c0 = proc_cpu(pid)
    t0 = time.monotonic()
    status, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if status != 200:
        raise SystemExit(f"start failed: {status} {body}")
    wait_caught_up(server, task_id, backlog["target"])
    c1 = proc_cpu(pid)
    seen = time.monotonic() - t0
    server.stop()
    gib = backlog["bytes"] / (1 << 30)
    return {"user": (c1[1] - c0[1]) / gib, "sys": (c1[2] - c0[2]) / gib, "seen_s": seen}


def run_callgrind(db, backlog, root, out_file, binary):
    root.mkdir(parents=True, exist_ok=True)
    wrapper = root / "valgrind-wrapper.sh"
    wrapper.write_text("#!/bin/sh\nexec valgrind --tool=callgrind --instr-atstart=no "
                       f"--callgrind-out-file={out_file} {binary} \"$@\"\n")
    wrapper.chmod(0o755)
    server = Server(root, binary=str(wrapper))
    server.start()
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": backlog["first"], "pos": 4})
    pid = server.proc.pid
    callgrind_control("-i", "on", str(pid))
    status, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if status != 200:
        raise SystemExit(f"start failed: {status} {body}")
    wait_caught_up(server, task_id, backlog["target"])
    callgrind_control("-i", "off", str(pid))
    server.stop()
    total = None
    for line in Path(out_file).read_text().splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            total = int(line.split()[1])
    return total


def main():
    profiles = env_list("BENCH_PROFILES", ["bulk", "oltp"])
    sizes = {"bulk": env_int("BENCH_BULK_MIB", 160), "oltp": env_int("BENCH_OLTP_MIB", 100),
             "sysbench": env_int("BENCH_SYSBENCH_MIB", 100)}
    reps = env_int("BENCH_CALLGRIND_REPS", 1)
    native = env_int("BENCH_NATIVE", 1)
    # BENCH_SERVER_BINS="A=path B=path": every binary on the same backlog (an A/B of one change).
    bins = [b.split("=", 1) for b in env_list("BENCH_SERVER_BINS", [f"ours={server_binary()}"])]
    root = work_dir("binlog-bench-callgrind.")
    out_root = Path(os.environ.get("BENCH_CALLGRIND_DIR") or ".").resolve()
    out_root.mkdir(parents=True, exist_ok=True)
    say(f"work dir {root}, callgrind output in {out_root}, binaries {bins}")
    db = MariaDB(root / "mariadb", SOURCE_ARGS).start()
    for profile in profiles:
        backlog = generate(db, profile, sizes[profile] * MIB)
        mib = backlog["bytes"] / MIB
        say(f"== {profile}: {mib:.1f} MiB, {backlog['events']} events, {backlog['transactions']} transactions")
        for label, binary in bins:
            if native:
                r = run_native(db, backlog, root / f"native-{profile}-{label}", binary)
                say(f"  {label} native: user {r['user']:.2f} sys {r['sys']:.2f} CPU-s/GiB "
                    f"({r['seen_s']:.1f} s to the API checkpoint)")
            for i in range(reps):
                out = out_root / f"callgrind.out.{profile}.{label}.{i}"
                total = run_callgrind(db, backlog, root / f"cg-{profile}-{label}-{i}", out, binary)
                say(f"  {label} callgrind run {i}: {total} instructions, {total / mib / 1e6:.2f} M instructions "
                    f"per MiB ({out})")
    db.stop()


if __name__ == "__main__":
    run_main(main)
