"""Commit latency on the source with semi-synchronous replication (issue 17).

Run through scripts/bench/run.sh semisync, which builds the release binary and the load generator
(benches/lag_load.rs) first. Three set-ups, each on a fresh source per run, interleaved run by run:

  async      the source alone, no semi-sync (the baseline);
  binlog     rpl_semi_sync_master_enabled, wait_point AFTER_SYNC, a long timeout, and binlog-server
             as the one semi-sync replica (a task with source.semi_sync, acks after its fsync);
  replica    the same source settings, and a second mariadbd as the semi-sync replica (the
             reference: MariaDB's own replica acks after it has written the event to its relay log).
  replica-sync  with BENCH_SEMI_REPLICA_SYNC=1: the replica above with sync_relay_log=1, so that
             it acks only after its relay log is synced, as binlog-server acks after its fsync
             (the like-for-like reference);
  binlog-b   with BENCH_SERVER_BIN_B set: binlog as above, with that second binlog-server binary
             (an A/B of two builds in one session, interleaved with the others); with
             BENCH_SERVER_B_ENV set (e.g. "BINLOG_SERVER_LOG_LEVEL=info"), binlog as above with those
             settings over the bench's (the same binary unless BENCH_SERVER_BIN_B names another).

The load is lag_load's: single-row InnoDB transactions at a fixed rate, open loop; the commit
latency of a transaction is from when it was due to when its COMMIT returned (queueing behind a
slow commit counts). See docs/performance.md for how to read the figures.

BENCH_PEERS_DIR (e.g. /dev/shm) puts the source's files (and binlog-server's debug log) there
instead of on the disk under test, as on the real topology, where the source has a disk of its
own (see benchlib.peer_root: its unsynced binlog, written back in a burst once 30 s old, stalls
every fsync on the disk, and only the set-ups that fsync on the commit path wait for it). Each
run starts with what earlier runs left unwritten written back (benchlib.sync_before_run;
BENCH_SYNC_BEFORE_RUN=0 skips it), and its line says how much unwritten data the machine held at
its start and at most.
"""

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    ACK_HIST, DURABLE_HIST, REPL_PASSWORD, REPL_USER, DirtySampler, MariaDB, Server, bucket_percentile, drop_dir,
    env_int, env_list, finish, peer_root, peers_where, sync_before_run,
    LogTail, fmt_fsync_tail, fmt_le, fsync_times_ms, live_histograms, machine_facts, median, output_root, percentile, poll_until, print_facts, run_main, say,
    shell_join, wait_quiet, work_dir,
)

MODES = ["async", "binlog", "replica"]
SEMI_TIMEOUT_MS = 600_000


def source_args(semi):
    args = ["--max-binlog-size=256M", "--sync-binlog=0", "--innodb-flush-log-at-trx-commit=0",
            "--innodb-buffer-pool-size=256M"]
    if semi:
        args += ["--rpl-semi-sync-master-enabled=ON", "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
                 f"--rpl-semi-sync-master-timeout={SEMI_TIMEOUT_MS}"]
    return args


def status(db, name):
    return int(db.value(f"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '{name}'"))


def workers_for(rate):
    explicit = os.environ.get("BENCH_SEMI_WORKERS")
    # Each connection waits for its ack: enough of them that the schedule is kept.
    return int(explicit) if explicit else max(4, rate // 250)


def load_argv(db, rate, seconds, out):
    return [os.environ["BENCH_LOAD_BIN"], "--url", f"mysql://root@127.0.0.1:{db.port}/bench?prefer_socket=false",
            "--rate", str(rate), "--seconds", str(seconds), "--out", str(out), "--workers", str(workers_for(rate))]


def server_b_env():
    """BENCH_SERVER_B_ENV's BINLOG_SERVER_* settings for set-up binlog-b ({} when unset)."""
    env = {}
    for item in os.environ.get("BENCH_SERVER_B_ENV", "").split():
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("BINLOG_SERVER_"):
            raise SystemExit(f"BENCH_SERVER_B_ENV: {item!r} is not BINLOG_SERVER_NAME=value")
        env[key] = value
    return env


def set_up(mode, root):
    """A fresh source (where `peer_root` says), and its semi-sync replica for `binlog`, `binlog-b`
    and `replica` (in the work dir: on the disk under test); returns what to stop."""
    db = MariaDB(peer_root(root, "source"), source_args(mode != "async")).start()
    procs = [db]
    if mode in ("binlog", "binlog-b"):
        binary = os.environ.get("BENCH_SERVER_BIN_B") if mode == "binlog-b" else None
        extra_env = server_b_env() if mode == "binlog-b" else None
        server = Server(root / "server", extra_env=extra_env, binary=binary).start()
        procs.append(server)
        body = {
            "name": "semi", "cluster_key": "semi",
            "source": {"host": "127.0.0.1", "port": db.port, "user": REPL_USER, "password": REPL_PASSWORD,
                       "flavor": "mariadb", "tls_mode": "disabled", "semi_sync": True},
            "start": {"mode": "LATEST"}, "storage": {"retention_days": 7},
        }
        st, task = server.request("POST", "/api/tasks", body)
        if st != 201:
            raise SystemExit(f"creating the task failed: {st} {task}")
        st, body = server.request("POST", f"/api/tasks/{task['id']}/start")
        if st != 200:
            raise SystemExit(f"starting the task failed: {st} {body}")
    elif mode in ("replica", "replica-sync"):
        sync = ["--sync-relay-log=1"] if mode == "replica-sync" else []
        replica = MariaDB(root / "replica", ["--server-id=2", "--rpl-semi-sync-slave-enabled=ON",
                                             "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0"] + sync).start()
        procs.append(replica)
        replica.sql(f"""
            CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={db.port}, MASTER_USER='{REPL_USER}',
              MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos;
            START SLAVE;
        """)
    if mode != "async":
        poll_until(60, "the semi-sync replica to connect",
                   lambda: status(db, "Rpl_semi_sync_master_clients") == 1 or None)
    return db, procs


def one_run(mode, rate, seconds, warmup_s, root):
    db, procs = set_up(mode, root)
    server = procs[1] if mode in ("binlog", "binlog-b") else None
    try:
        r = subprocess.run(load_argv(db, 200, 2, root / "warmup.csv"), capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise SystemExit(f"load generator failed:\n{r.stderr}")
        sync_before_run()
        quiet = wait_quiet()[1]
        if mode != "async":
            db.sql("FLUSH STATUS")  # the source's semi-sync averages below cover this run only
        no_tx = status(db, "Rpl_semi_sync_master_no_tx") if mode != "async" else 0
        hist_before = live_histograms(server) if server else None
        log = LogTail(server.log_path) if server else None
        if log:
            log.skip_to_end()
        out = root / "load.csv"
        dirty = DirtySampler()
        r = subprocess.run(load_argv(db, rate, seconds, out), capture_output=True, text=True, timeout=seconds + 600)
        dirty = dirty.stop()
        if r.returncode != 0:
            raise SystemExit(f"load generator failed:\n{r.stderr}")
        rows = list(csv.DictReader(open(out)))
        t0 = min(int(x["sched_ns"]) for x in rows) + warmup_s * 1_000_000_000
        lat = sorted((int(x["ok_ns"]) - int(x["sched_ns"])) / 1e6 for x in rows if int(x["sched_ns"]) >= t0)
        span = (max(int(x["ok_ns"]) for x in rows) - min(int(x["sched_ns"]) for x in rows)) / 1e9
        res = {
            "mode": mode, "rate": rate, "measured_tx": len(lat), "achieved_rate": len(rows) / span,
            "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99), "max_ms": lat[-1],
            "quiet_wait_s": quiet, "dirty": dirty,
        }
        if mode != "async":
            res["no_tx_during_run"] = status(db, "Rpl_semi_sync_master_no_tx") - no_tx
            res["semi_sync_status"] = db.value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                                               "WHERE VARIABLE_NAME = 'Rpl_semi_sync_master_status'")
            # The source's own view (microseconds, averages since FLUSH STATUS): how long a commit
            # waited for the ack, and the time from sending an event to its ack coming back.
            res["source_tx_avg_wait_us"] = status(db, "Rpl_semi_sync_master_tx_avg_wait_time")
            res["source_net_avg_wait_us"] = status(db, "Rpl_semi_sync_master_net_avg_wait_time")
        if server:
            # Our share: event received -> ack sent, as binlog-server's histogram buckets hold it, and
            # the part of it until the fsync returned.
            after = live_histograms(server)
            res["ack_p50_le_s"] = bucket_percentile(hist_before[ACK_HIST], after[ACK_HIST], 50)
            res["ack_p99_le_s"] = bucket_percentile(hist_before[ACK_HIST], after[ACK_HIST], 99)
            res["durable_p50_le_s"] = bucket_percentile(hist_before[DURABLE_HIST], after[DURABLE_HIST], 50)
            res["durable_p99_le_s"] = bucket_percentile(hist_before[DURABLE_HIST], after[DURABLE_HIST], 99)
            res["fsync_tail"] = fmt_fsync_tail(fsync_times_ms(log.read()))
        return res
    finally:
        for p in reversed(procs):
            p.stop()
        drop_dir(db.root)
        if server:
            drop_dir(server.log_path.parent)


def main():
    rates = [int(r) for r in env_list("BENCH_SEMI_RATES", ["1000", "5000"])]
    seconds = env_int("BENCH_SEMI_SECONDS", 10)
    runs = env_int("BENCH_RUNS", 5)
    warmup_s = env_int("BENCH_SEMI_WARMUP_S", 1)
    root = work_dir("binlog-bench-semisync.")
    say(f"work dir {root}")
    facts = machine_facts(root)
    print_facts(facts)
    say(f"binlog-server: {os.environ.get('BENCH_SERVER_BIN')}")
    say(f"source: {shell_join(source_args(True))} (async: without the rpl_semi_sync_* options)")
    say(peers_where())
    say(f"load generator: {os.environ['BENCH_LOAD_BIN']} --rate RATE --seconds {seconds} --workers max(4, RATE/250)")
    out_root = output_root(root)
    say(f"{runs} run(s) of {seconds} s per rate and set-up, set-ups interleaved; first {warmup_s} s not counted\n")
    modes = (MODES + (["replica-sync"] if env_int("BENCH_SEMI_REPLICA_SYNC", 0) else [])
             + (["binlog-b"] if os.environ.get("BENCH_SERVER_BIN_B") or server_b_env() else []))
    if "binlog-b" in modes:
        b_env = " ".join(f"{k}={v}" for k, v in sorted(server_b_env().items()))
        say(f"binlog-server B (set-up binlog-b): {os.environ.get('BENCH_SERVER_BIN_B') or 'the same binary'}"
            + (f" with {b_env}" if b_env else ""))
    results = {"machine": facts, "rates": {}}
    for rate in rates:
        per = {m: [] for m in modes}
        for i in range(runs):
            # Rotate the order so that no set-up always runs first (or last) in a round.
            order = modes[i % len(modes):] + modes[:i % len(modes)]
            for mode in order:
                res = one_run(mode, rate, seconds, warmup_s, out_root / f"{rate}-{i + 1}-{mode}")
                per[mode].append(res)
                extra = (f", no_tx +{res['no_tx_during_run']}, status {res['semi_sync_status']}; source avg wait "
                         f"tx {res['source_tx_avg_wait_us']} us, net {res['source_net_avg_wait_us']} us"
                         if mode != "async" else "")
                if "ack_p50_le_s" in res:
                    extra += (f"; ours (event -> ack sent) p50 {fmt_le(res['ack_p50_le_s'])}, p99 "
                              f"{fmt_le(res['ack_p99_le_s'])}, of which received -> fsynced p50 "
                              f"{fmt_le(res['durable_p50_le_s'])}, p99 {fmt_le(res['durable_p99_le_s'])}; "
                              f"{res['fsync_tail']}")
                say(f"rate {rate}/s run {i + 1} {mode:>7}: achieved {res['achieved_rate']:.0f}/s, commit p50 "
                    f"{res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.1f} ms{extra}; "
                    f"{res['dirty']}")
        results["rates"][rate] = per

    say("\n== summary: commit latency (due -> COMMIT returned), median over runs of each run's percentile "
        "[min - max over runs]; added = median over runs of (set-up - async of the same run)")
    say(f"{'rate':>6} {'set-up':>8} {'p50 ms':>20} {'p99 ms':>22} {'added p99 ms':>22}")
    for rate, per in results["rates"].items():
        for mode in per:
            p50 = [r["p50_ms"] for r in per[mode]]
            p99 = [r["p99_ms"] for r in per[mode]]
            added = [r["p99_ms"] - a["p99_ms"] for r, a in zip(per[mode], per["async"])]
            say(f"{rate:>6} {mode:>8} {median(p50):>8.2f} [{min(p50):.2f}-{max(p50):.2f}] "
                f"{median(p99):>8.2f} [{min(p99):.2f}-{max(p99):.2f}] "
                f"{median(added):>8.2f} [{min(added):.2f}-{max(added):.2f}]")
        if "binlog-b" in per:
            d = [b["p99_ms"] - a["p99_ms"] for a, b in zip(per["binlog"], per["binlog-b"])]
            d50 = [b["p50_ms"] - a["p50_ms"] for a, b in zip(per["binlog"], per["binlog-b"])]
            say(f"{rate:>6} B - A: p50 {median(d50):+.2f} ms [{min(d50):+.2f} .. {max(d50):+.2f}], "
                f"p99 {median(d):+.2f} ms [{min(d):+.2f} .. {max(d):+.2f}] (per round)")
        # The source's own average wait per transaction (Rpl_semi_sync_master_tx_avg_wait_time):
        # a mean over every commit of a run, steadier than a p99 for telling two builds apart.
        waits = {m: [r["source_tx_avg_wait_us"] for r in per[m]] for m in per if m != "async"}
        if waits:
            say(f"{rate:>6} source's avg wait per tx, us: " + "; ".join(
                f"{m} {median(w):.0f} [{min(w)}-{max(w)}]" for m, w in waits.items()))
        if "replica-sync" in per:
            d = [b["p99_ms"] - r["p99_ms"] for r, b in zip(per["replica-sync"], per["binlog"])]
            say(f"{rate:>6} binlog - replica-sync: p99 {median(d):+.2f} ms [{min(d):+.2f} .. {max(d):+.2f}] (per round)")
    finish(results)


if __name__ == "__main__":
    run_main(main)
