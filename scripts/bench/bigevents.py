"""Peak memory of binlog-server under a stream of very large events (256 MiB rows).

Run through scripts/bench/run.sh bigevents, which builds the release binary first. See
docs/performance.md for what is measured and how to read the output.
"""

import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    MariaDB, RssSampler, Server, env_int, finish, machine_facts, median, output_root, print_facts, proc_cpu,
    proc_status, run_main, say, shell_join, work_dir,
)
from catchup import diff_offsets  # noqa: E402

MIB = 1024 * 1024
TIMEOUT = env_int("BENCH_TIMEOUT_S", 600)


def source_args():
    return [
        "--max-allowed-packet=1G",
        "--max-binlog-size=512M",
        "--sync-binlog=0",
        "--innodb-buffer-pool-size=64M",
    ]


def event_sizes(datadir, files):
    """(events, largest event size, its type) over the source's own binlog files."""
    events, largest, largest_type = 0, 0, None
    for name, _size in files:
        with open(Path(datadir, name), "rb") as f:
            f.seek(4)
            while True:
                head = f.read(19)
                if len(head) < 19:
                    break
                size = struct.unpack_from("<I", head, 9)[0]
                if size > largest:
                    largest, largest_type = size, head[4]
                events += 1
                if size < 19:
                    break
                f.seek(size - 19, os.SEEK_CUR)
    return events, largest, largest_type


def insert_big(db, k, size_mib):
    # MyISAM: InnoDB refuses a BLOB larger than 10% of its redo log, and the engine does not
    # matter to the binlog (one Write_rows event holding the whole row).
    db.sql(f"INSERT INTO bench.big (k, b) VALUES ({k}, REPEAT(MD5({k}), {size_mib} * 32768))")


def verify(fetched_dir, source_dir, files):
    """Every source file byte-identical to the fetched one; the last (active) one may differ at
    offset 21 only (the in-use flag)."""
    names = [n for n, _ in files]
    got = sorted(p.name for p in Path(fetched_dir).iterdir())
    if got != names:
        return f"FAILED: file sets differ: fetched {got} vs source {names}"
    for i, name in enumerate(names):
        a, b = Path(fetched_dir, name), Path(source_dir, name)
        last = i == len(names) - 1
        if a.stat().st_size != b.stat().st_size:
            return f"FAILED: {name}: {a.stat().st_size} bytes fetched vs {b.stat().st_size} at the source"
        d = diff_offsets(a, b)
        if d and not (last and d == [21]):
            return f"FAILED: {name} differs at offsets {d}"
    total = sum(s for _, s in files)
    return f"ok: {len(names)} files, {total / MIB:.0f} MiB, byte-identical to the source's"


def one_run(db, root, mode, n_events, size_mib, first_file):
    """`live`: the task streams while the events are written; `catchup`: from the start of a
    finished backlog."""
    server = Server(root).start()
    pid = server.proc.pid
    base_rss = proc_status(pid).get("VmRSS", 0) / 1024
    sampler = RssSampler(pid, 0.05)
    task_id = server.create_task(db, {"mode": "FILE_POS", "file": first_file, "pos": 4})
    cpu0 = proc_cpu(pid)
    t0 = time.monotonic()
    st, body = server.request("POST", f"/api/tasks/{task_id}/start")
    if st != 200:
        raise SystemExit(f"starting the task failed: {st} {body}")
    if mode == "live":
        for k in range(n_events):
            insert_big(db, k, size_mib)
        db.sql("FLUSH BINARY LOGS")  # seal the last file that holds a big event
    target = db.settle(quiet=2.0)
    deadline = time.monotonic() + TIMEOUT
    while True:
        st, cp = server.request("GET", f"/api/tasks/{task_id}/checkpoint")
        if st == 200 and (cp.get("file"), cp.get("pos")) == target:
            break
        if time.monotonic() > deadline or server.proc.poll() is not None:
            st, t = server.request("GET", f"/api/tasks/{task_id}")
            raise SystemExit(f"the checkpoint did not reach {target}: {cp}; task {t}")
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    cpu1 = proc_cpu(pid)
    status = proc_status(pid)
    samples = sampler.stop()
    files = db.binary_logs()
    check = verify(server.files_dir(task_id), db.datadir, files)
    command = server.command_line()
    server.stop()
    return {
        "mode": mode,
        "base_rss_mib": base_rss,
        "peak_rss_mib": status.get("VmHWM", 0) / 1024,
        "sampled_max_rss_mib": max(kb for _, kb in samples) / 1024,
        "end_rss_mib": status.get("VmRSS", 0) / 1024,
        "elapsed_s": elapsed,
        "cpu_s": cpu1[0] - cpu0[0],
        "check": check,
        "command": command,
        "target": target,
    }


def main():
    n_events = env_int("BENCH_BIG_EVENTS", 4)
    size_mib = env_int("BENCH_BIG_EVENT_MIB", 256)
    runs = env_int("BENCH_RUNS", 3)
    root = work_dir("binlog-bench-bigevents.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    db = MariaDB(root / "mariadb", source_args()).start()
    say("source: " + shell_join(db.argv))
    src_vars = db.variables(["max_allowed_packet", "max_binlog_size", "binlog_format", "binlog_row_image",
                             "binlog_checksum", "version"])
    say("source variables: " + ", ".join(f"{k}={v}" for k, v in sorted(src_vars.items())))
    db.sql("CREATE TABLE bench.big (k INT PRIMARY KEY, b LONGBLOB NOT NULL) ENGINE=MyISAM")
    first_file = db.binary_logs()[0][0]
    out_root = output_root(root)
    say(f"\n== {n_events} rows of {size_mib} MiB (`INSERT INTO bench.big VALUES (k, REPEAT(MD5(k), "
        f"{size_mib} * 32768))`); run 1 streams while they are written, runs 2..{runs} catch up from "
        f"{first_file}:4; a fresh binlog-server per run")
    results = {"machine": facts, "source_variables": src_vars, "runs": []}
    largest = None
    for i in range(runs):
        mode = "live" if i == 0 else "catchup"
        r = one_run(db, out_root / f"run{i + 1}", mode, n_events, size_mib, first_file)
        if largest is None:
            files = db.binary_logs()
            events, largest, ltype = event_sizes(db.datadir, files)
            say(f"source binlog: {len(files)} files, {sum(s for _, s in files) / MIB:.0f} MiB, {events} events; "
                f"largest event {largest} bytes ({largest / MIB:.2f} MiB, type {ltype})")
        if i == 0:
            say("binlog-server: " + r["command"])
        r["largest_event_mib"] = largest / MIB
        r["peak_over_event"] = r["peak_rss_mib"] / r["largest_event_mib"]
        r["excess_mib"] = r["peak_rss_mib"] - 2 * r["largest_event_mib"]
        r["growth_over_event"] = (r["peak_rss_mib"] - r["base_rss_mib"]) / r["largest_event_mib"]
        say(f"run {i + 1} ({mode}): {r['elapsed_s']:.1f} s to the source's position {r['target'][0]}:"
            f"{r['target'][1]}, cpu {r['cpu_s']:.1f} s; RSS at start {r['base_rss_mib']:.1f} MiB, peak (VmHWM) "
            f"{r['peak_rss_mib']:.1f} MiB (sampled max {r['sampled_max_rss_mib']:.1f}), at the end "
            f"{r['end_rss_mib']:.1f} MiB; peak = {r['peak_over_event']:.2f}x the largest event "
            f"(2x event {r['excess_mib']:+.1f} MiB); growth over the RSS at start = {r['growth_over_event']:.2f}x "
            f"the largest event")
        say(f"  byte identity: {r['check']}")
        if r["check"].startswith("FAILED"):
            raise SystemExit("byte identity check failed")
        results["runs"].append(r)
    db.stop()

    say(f"\n== summary (largest event {largest / MIB:.2f} MiB)")
    for mode in ("live", "catchup"):
        rs = [r for r in results["runs"] if r["mode"] == mode]
        if rs:
            say(f"{mode:8} peak RSS {[round(r['peak_rss_mib'], 1) for r in rs]} MiB, median "
                f"{median([r['peak_rss_mib'] for r in rs]):.1f} MiB = "
                f"{median([r['peak_over_event'] for r in rs]):.2f}x the largest event; max over runs "
                f"{max(r['peak_rss_mib'] for r in rs):.1f} MiB = 2x event {max(r['excess_mib'] for r in rs):+.1f} MiB")
    finish(results)


if __name__ == "__main__":
    run_main(main)
