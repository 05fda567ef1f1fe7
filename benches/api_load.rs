//! Open-loop HTTP load for `scripts/bench/scale.sh`: GET requests at a fixed rate whatever the
//! answers' speed, each due at `t0 + i / rate`, cycling over the given paths; a request's latency
//! is answer received - due, so time spent waiting for a free connection counts, as it would for
//! a client (no coordinated omission).
//!
//! ```text
//! cargo bench --bench api_load -- --addr 127.0.0.1:8080 --rate 200 --seconds 20 \
//!     --path /api/tasks?limit=50 --path /metrics
//! ```
//!
//! It replaces a Python client that could not keep its own schedule on a loaded two-core machine
//! (2,884 of 4,000 requests started late while the server sat at 123% CPU): each worker here is
//! an OS thread with one keep-alive connection, plain blocking I/O, and `nanosleep` pacing, so
//! the generator costs a few microseconds of CPU per request. Worker `k` of `W` owns requests
//! `k, k+W, ...`; a worker still waiting for an answer when its next request is due sends it
//! late, and the lateness is in the latency (and counted in `late_starts`, > 1 ms).
//!
//! Prints one JSON line: `{"sent", "non_2xx", "errors", "late_starts", "p50", "p90", "p99",
//! "max"}` (milliseconds). Run without `--addr` (as `cargo test --all-targets` does) it does
//! nothing and exits 0; `--list` (nextest's probe) lists no tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    rate: f64,
    seconds: f64,
    workers: usize,
    paths: Vec<String>,
}

const USAGE: &str =
    "usage: api_load --addr HOST:PORT --rate REQ_PER_S --seconds S --path PATH [--path PATH ...] [--workers N]";

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut rate, mut seconds, mut workers, mut paths) = (None, None, None, 32usize, Vec::new());
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value; {USAGE}"));
        match a.as_str() {
            "--addr" => addr = Some(value()?),
            "--rate" => rate = Some(value()?.parse::<f64>().map_err(|e| format!("--rate: {e}"))?),
            "--seconds" => seconds = Some(value()?.parse::<f64>().map_err(|e| format!("--seconds: {e}"))?),
            "--workers" => workers = value()?.parse().map_err(|e| format!("--workers: {e}"))?,
            "--path" => paths.push(value()?),
            "--list" => return Ok(None),
            // cargo bench / nextest pass their own flags (--bench, --format terse, ...).
            _ => {}
        }
    }
    let Some(addr) = addr else { return Ok(None) };
    let (Some(rate), Some(seconds)) = (rate, seconds) else { return Err(USAGE.into()) };
    if paths.is_empty() || rate <= 0.0 || seconds <= 0.0 || workers == 0 {
        return Err(USAGE.into());
    }
    Ok(Some(Args { addr, rate, seconds, workers, paths }))
}

/// One GET on a keep-alive connection: the status, after the whole body was read.
fn get(conn: &mut BufReader<TcpStream>, host: &str, path: &str) -> std::io::Result<u16> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
    conn.get_mut().write_all(req.as_bytes())?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').unwrap_or((l, ""));
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse::<u64>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    if chunked {
        loop {
            line.clear();
            conn.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|e| std::io::Error::other(format!("bad chunk size {line:?}: {e}")))?;
            std::io::copy(&mut conn.by_ref().take(size + 2), &mut std::io::sink())?;
            if size == 0 {
                break;
            }
        }
    } else if let Some(n) = length {
        std::io::copy(&mut conn.by_ref().take(n), &mut std::io::sink())?;
    }
    if close {
        return Err(std::io::Error::other("the server closed the connection"));
    }
    Ok(status)
}

#[derive(Default)]
struct Tally {
    latencies_ms: Vec<f64>,
    non_2xx: u64,
    errors: u64,
    late: u64,
}

fn worker(k: usize, a: &Args, t0: Instant, n: u64) -> Tally {
    let mut t = Tally::default();
    let connect = || {
        TcpStream::connect(&a.addr).map(|s| {
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
            BufReader::with_capacity(64 * 1024, s)
        })
    };
    let mut conn = connect().ok();
    let mut i = k as u64;
    while i < n {
        let due = t0 + Duration::from_secs_f64(i as f64 / a.rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else if now - due > Duration::from_millis(1) {
            t.late += 1;
        }
        let path = &a.paths[i as usize % a.paths.len()];
        let answered = match conn.as_mut() {
            Some(c) => get(c, &a.addr, path),
            None => Err(std::io::Error::other("not connected")),
        };
        match answered {
            Ok(status) if (200..300).contains(&status) => {}
            Ok(_) => t.non_2xx += 1,
            Err(_) => {
                t.errors += 1;
                conn = connect().ok();
            }
        }
        t.latencies_ms.push(due.elapsed().as_secs_f64() * 1000.0);
        i += a.workers as u64;
    }
    t
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(Some(a)) => Arc::new(a),
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("api_load: {e}");
            return ExitCode::from(2);
        }
    };
    let n = (a.rate * a.seconds).round() as u64;
    let start = Arc::new(Barrier::new(a.workers + 1));
    let t0 = Instant::now() + Duration::from_millis(200);
    let handles: Vec<_> = (0..a.workers)
        .map(|k| {
            let (a, start) = (a.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                worker(k, &a, t0, n)
            })
        })
        .collect();
    start.wait();
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().expect("a worker panicked");
        all.latencies_ms.extend(t.latencies_ms);
        all.non_2xx += t.non_2xx;
        all.errors += t.errors;
        all.late += t.late;
    }
    let mut l = all.latencies_ms;
    l.sort_by(f64::total_cmp);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{{\"sent\": {}, \"non_2xx\": {}, \"errors\": {}, \"late_starts\": {}, \"p50\": {:.3}, \"p90\": {:.3}, \
         \"p99\": {:.3}, \"max\": {:.3}}}",
        l.len(),
        all.non_2xx,
        all.errors,
        all.late,
        percentile(&l, 0.50),
        percentile(&l, 0.90),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
    ExitCode::SUCCESS
}
