//! Paced load generator for `scripts/bench/lag.sh`: commits single-row InnoDB transactions at a
//! fixed rate, open loop (each transaction has a scheduled time; a late worker does not shift
//! the schedule), and records per transaction when it was scheduled, sent and acknowledged, and
//! its MariaDB GTID (`@@last_gtid`, read in the same round trip as the INSERT).
//!
//! ```text
//! cargo bench --bench lag_load -- --url 'mysql://root@127.0.0.1:PORT/bench?prefer_socket=false' \
//!     --rate 5000 --seconds 15 --out /tmp/lag.csv
//! ```
//!
//! Each worker is an OS thread with its own connection and a current-thread runtime, so pacing
//! uses `nanosleep` (tens of microseconds of slack) rather than the 1 ms tokio timer wheel.
//! Worker `k` of `W` owns tickets `k, k+W, k+2W, ...`; ticket `i` is due at `t0 + i / rate`.
//!
//! It writes CSV `ticket,worker,sched_ns,send_ns,ok_ns,gtid` (Unix epoch nanoseconds) and prints
//! one JSON summary line on stdout. Run without `--url` (as `cargo test --all-targets` does) it
//! does nothing and exits 0; `--list` (nextest's probe) lists no tests.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;

struct Args {
    url: String,
    rate: f64,
    seconds: f64,
    workers: usize,
    table: String,
    pad: usize,
    out: String,
}

const USAGE: &str = "usage: lag_load --url mysql://USER@HOST:PORT/DB --rate TX_PER_S --seconds S --out FILE.csv \
                     [--workers N] [--table NAME] [--pad BYTES]";

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = None;
    let (mut rate, mut seconds, mut workers, mut pad) = (1000.0f64, 10.0f64, 0usize, 100usize);
    let (mut table, mut out) = ("lag_load".to_string(), None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            // `cargo bench` passes --bench; nextest probes with --list.
            "--bench" => {}
            "--list" => return Ok(None),
            "--url" => url = Some(val("--url")?),
            "--rate" => rate = val("--rate")?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--seconds" => seconds = val("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--workers" => workers = val("--workers")?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--table" => table = val("--table")?,
            "--pad" => pad = val("--pad")?.parse().map_err(|e| format!("--pad: {e}"))?,
            "--out" => out = Some(val("--out")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}\n{USAGE}")),
            _ => {} // a libtest filter when run by `cargo test`
        }
    }
    let Some(url) = url else { return Ok(None) };
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    if !(rate > 0.0 && seconds > 0.0) {
        return Err("--rate and --seconds must be positive".into());
    }
    if !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("--table must be a plain identifier".into());
    }
    if workers == 0 {
        // About 2,500 tx/s per connection keeps each one well below its round-trip limit.
        workers = ((rate / 2500.0).ceil() as usize).clamp(1, 16);
    }
    Ok(Some(Args { url, rate, seconds, workers, table, pad, out }))
}

struct Rec {
    ticket: u64,
    worker: usize,
    sched_ns: u64,
    send_ns: u64,
    ok_ns: u64,
    gtid: String,
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One worker: connect, wait for the common start, then commit its tickets on schedule.
fn worker(
    k: usize,
    args: Arc<Args>,
    total: u64,
    start: Arc<Barrier>,
    t0: Arc<std::sync::OnceLock<(Instant, u64)>>,
) -> Result<Vec<Rec>, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let opts = mysql_async::Opts::from_url(&args.url).map_err(|e| e.to_string())?;
    let mut conn = rt.block_on(mysql_async::Conn::new(opts)).map_err(|e| format!("worker {k}: connect: {e}"))?;
    let pad = "x".repeat(args.pad);
    let period_ns = 1e9 / args.rate;
    let mut recs = Vec::with_capacity((total as usize / args.workers) + 1);
    let mut sql = String::with_capacity(128 + args.pad);
    start.wait();
    let (t0_instant, t0_unix) = *t0.get().expect("set before the barrier opens");
    let mut ticket = k as u64;
    while ticket < total {
        let offset = Duration::from_nanos((ticket as f64 * period_ns) as u64);
        let due = t0_instant + offset;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sql.clear();
        let _ =
            write!(sql, "INSERT INTO {} (w, n, pad) VALUES ({k}, {ticket}, '{pad}'); SELECT @@last_gtid", args.table);
        let send = SystemTime::now();
        let gtid: String = rt
            .block_on(async {
                let mut r = conn.query_iter(sql.as_str()).await?;
                let _: Vec<mysql_async::Row> = r.collect().await?;
                let g: Vec<String> = r.collect().await?;
                r.drop_result().await?;
                Ok::<_, mysql_async::Error>(g.into_iter().next().unwrap_or_default())
            })
            .map_err(|e| format!("worker {k}, ticket {ticket}: {e}"))?;
        let ok = SystemTime::now();
        recs.push(Rec {
            ticket,
            worker: k,
            sched_ns: t0_unix + offset.as_nanos() as u64,
            send_ns: unix_ns(send),
            ok_ns: unix_ns(ok),
            gtid,
        });
        ticket += args.workers as u64;
    }
    let _ = rt.block_on(conn.disconnect());
    Ok(recs)
}

fn run(args: Args) -> Result<(), String> {
    let args = Arc::new(args);
    let total = (args.rate * args.seconds).round() as u64;
    {
        // The table, once, before the clock starts.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let opts = mysql_async::Opts::from_url(&args.url).map_err(|e| e.to_string())?;
        rt.block_on(async {
            let mut c = mysql_async::Conn::new(opts).await?;
            c.query_drop(format!(
                "CREATE TABLE IF NOT EXISTS {} (id BIGINT AUTO_INCREMENT PRIMARY KEY, w INT NOT NULL, \
                 n BIGINT NOT NULL, pad VARCHAR(4000) NOT NULL) ENGINE=InnoDB",
                args.table
            ))
            .await?;
            c.disconnect().await
        })
        .map_err(|e| format!("creating table {}: {e}", args.table))?;
    }
    let barrier = Arc::new(Barrier::new(args.workers + 1));
    let t0 = Arc::new(std::sync::OnceLock::new());
    let handles: Vec<_> = (0..args.workers)
        .map(|k| {
            let (a, b, t) = (args.clone(), barrier.clone(), t0.clone());
            std::thread::Builder::new()
                .name(format!("lag-load-{k}"))
                .spawn(move || worker(k, a, total, b, t))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    // Every worker is connected when the barrier opens; the schedule starts a little later.
    let lead = Duration::from_millis(50);
    let _ = t0.set((Instant::now() + lead, unix_ns(SystemTime::now() + lead)));
    barrier.wait();
    let mut recs = Vec::with_capacity(total as usize);
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => recs.extend(r),
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a worker panicked".into()),
        }
    }
    recs.sort_by_key(|r| r.ticket);

    let mut csv = String::with_capacity(recs.len() * 64);
    csv.push_str("ticket,worker,sched_ns,send_ns,ok_ns,gtid\n");
    for r in &recs {
        let _ = writeln!(csv, "{},{},{},{},{},{}", r.ticket, r.worker, r.sched_ns, r.send_ns, r.ok_ns, r.gtid);
    }
    std::fs::write(&args.out, csv).map_err(|e| format!("writing {}: {e}", args.out))?;

    let mut late: Vec<u64> = recs.iter().map(|r| r.send_ns.saturating_sub(r.sched_ns)).collect();
    let mut rtt: Vec<u64> = recs.iter().map(|r| r.ok_ns.saturating_sub(r.send_ns)).collect();
    late.sort_unstable();
    rtt.sort_unstable();
    let first = recs.iter().map(|r| r.send_ns).min().unwrap_or(0);
    let last = recs.iter().map(|r| r.ok_ns).max().unwrap_or(0);
    let span = (last.saturating_sub(first)) as f64 / 1e9;
    let achieved = if span > 0.0 { recs.len() as f64 / span } else { 0.0 };
    let summary = serde_json::json!({
        "rate_target": args.rate,
        "seconds_target": args.seconds,
        "workers": args.workers,
        "scheduled": total,
        "commits": recs.len(),
        "achieved_rate": (achieved * 10.0).round() / 10.0,
        "late_p50_us": percentile(&late, 50.0) / 1000,
        "late_p99_us": percentile(&late, 99.0) / 1000,
        "late_max_us": late.last().copied().unwrap_or(0) / 1000,
        "rtt_p50_us": percentile(&rtt, 50.0) / 1000,
        "rtt_p99_us": percentile(&rtt, 99.0) / 1000,
        "errors": errors,
    });
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{summary}");
    if errors.is_empty() { Ok(()) } else { Err(format!("{} worker(s) failed", errors.len())) }
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(args)) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lag_load: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("lag_load: {e}");
            ExitCode::from(2)
        }
    }
}
