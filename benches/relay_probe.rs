//! Arrival probe for `scripts/bench/relay.py`: a replica that registers with a MariaDB source
//! (or binlog-server's relay, which answers the same way), dumps its binlog from a file and
//! position, and records for each transaction when its last event (the XID, or a COMMIT query)
//! reached this process, keyed by the transaction's GTID.
//!
//! ```text
//! cargo bench --bench relay_probe -- --port PORT --user U --password P \
//!     --file mariadb-bin.000001 --pos 4 --out /tmp/arrivals.csv
//! ```
//!
//! It speaks through the crate's own replica client (`source::conn` + `source::dump`, the code
//! binlog-server uses against a real source), so the probe adds the same small parsing cost in
//! both set-ups. The arrival time is `SystemTime::now()` right after the packet was read, the
//! same clock lag_load stamps commits with. It prints `ready` on stdout once the dump is under
//! way (the first event arrived), then writes CSV `gtid,arrival_ns` one line per transaction
//! (line-buffered, so a SIGTERM from the script loses nothing written) until it is stopped or
//! `--seconds` pass. Run without `--port` (as `cargo test --all-targets` does) it does nothing
//! and exits 0; `--list` (nextest's probe) lists no tests.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use binlog_server::binlog::Flavor;
use binlog_server::binlog::name::BinlogFileName;
use binlog_server::domain::TlsMode;
use binlog_server::secret::Secret;
use binlog_server::source::conn::{ConnectParams, SourceConn, parse_err_packet};
use binlog_server::source::dump::{DumpFrom, ReplicaParams, inspect, start_dump};

const USAGE: &str = "usage: relay_probe --port PORT --user USER --password PW --file NAME --pos POS --out FILE.csv \
                     [--host H] [--server-id N] [--seconds S]";

const XID_EVENT: u8 = 16;
const QUERY_EVENT: u8 = 2;
const MARIADB_GTID_EVENT: u8 = 162;
const HEADER: usize = 19;

struct Args {
    host: String,
    port: u16,
    user: String,
    password: String,
    file: String,
    pos: u64,
    server_id: u32,
    seconds: f64,
    out: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let (mut host, mut port, mut user, mut password) = ("127.0.0.1".to_string(), None, None, String::new());
    let (mut file, mut pos, mut server_id, mut seconds, mut out) = (None, 4u64, 900u32, 3600.0f64, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value\n{USAGE}"));
        match a.as_str() {
            "--bench" => {}
            "--list" => return Ok(None),
            "--host" => host = val("--host")?,
            "--port" => port = Some(val("--port")?.parse::<u16>().map_err(|e| format!("--port: {e}"))?),
            "--user" => user = Some(val("--user")?),
            "--password" => password = val("--password")?,
            "--file" => file = Some(val("--file")?),
            "--pos" => pos = val("--pos")?.parse().map_err(|e| format!("--pos: {e}"))?,
            "--server-id" => server_id = val("--server-id")?.parse().map_err(|e| format!("--server-id: {e}"))?,
            "--seconds" => seconds = val("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--out" => out = Some(val("--out")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}\n{USAGE}")),
            _ => {} // a libtest filter when run by `cargo test`
        }
    }
    let Some(port) = port else { return Ok(None) };
    let user = user.ok_or_else(|| format!("--user is required\n{USAGE}"))?;
    let file = file.ok_or_else(|| format!("--file is required\n{USAGE}"))?;
    let out = out.ok_or_else(|| format!("--out is required\n{USAGE}"))?;
    Ok(Some(Args { host, port, user, password, file, pos, server_id, seconds, out }))
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// What one event packet (OK byte, then the event) says about transactions.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A MariaDB GTID event: domain-server-seq.
    Gtid(String),
    /// The event that ends a transaction (XID, or a QUERY whose text is COMMIT).
    End,
    Other,
}

fn classify(pkt: &[u8]) -> Seen {
    // 0x00 (OK), then the 19-byte header: timestamp 4, type 1, server_id 4, size 4, log_pos 4, flags 2.
    if pkt.len() < 1 + HEADER || pkt[0] != 0 {
        return Seen::Other;
    }
    let ev = &pkt[1..];
    let u32_at = |o: usize| u32::from_le_bytes([ev[o], ev[o + 1], ev[o + 2], ev[o + 3]]);
    match ev[4] {
        MARIADB_GTID_EVENT if ev.len() >= HEADER + 12 => {
            let seq = u64::from_le_bytes(ev[HEADER..HEADER + 8].try_into().expect("8 bytes"));
            let domain = u32_at(HEADER + 8);
            Seen::Gtid(format!("{domain}-{}-{seq}", u32_at(5)))
        }
        XID_EVENT => Seen::End,
        // QUERY: thread id 4, exec time 4, db len 1, error code 2, status vars len 2, status
        // vars, db, NUL, then the statement (and a CRC32 at the end).
        QUERY_EVENT if ev.len() >= HEADER + 13 => {
            let db_len = ev[HEADER + 8] as usize;
            let vars_len = u16::from_le_bytes([ev[HEADER + 11], ev[HEADER + 12]]) as usize;
            let text = HEADER + 13 + vars_len + db_len + 1;
            if ev.get(text..text + 6) == Some(b"COMMIT".as_slice()) { Seen::End } else { Seen::Other }
        }
        _ => Seen::Other,
    }
}

async fn run(args: Args) -> Result<(), String> {
    let params = ConnectParams {
        host: args.host.clone(),
        port: args.port,
        user: args.user.clone(),
        password: Secret::new(args.password.clone()),
        tls_mode: TlsMode::Disabled,
        tls_ca_file: None,
        tls_ca_dir: None,
        server_public_key: None,
        connect_timeout: Duration::from_secs(30),
        max_packet: 1 << 30,
    };
    let mut conn = SourceConn::connect(&params).await.map_err(|e| format!("connect to {}: {e}", args.port))?;
    let info = inspect(&mut conn, Flavor::Mariadb).await.map_err(|e| format!("inspect: {e}"))?;
    let file = BinlogFileName::parse(&args.file).map_err(|e| format!("--file: {e}"))?;
    let replica =
        ReplicaParams { server_id: args.server_id, replica_uuid: String::new(), heartbeat: Duration::from_secs(1) };
    start_dump(&mut conn, &info, &replica, &DumpFrom::FilePos { file, pos: args.pos })
        .await
        .map_err(|e| format!("dump: {e}"))?;
    let out = std::fs::File::create(&args.out).map_err(|e| format!("{}: {e}", args.out))?;
    let mut out = std::io::LineWriter::new(out);
    writeln!(out, "gtid,arrival_ns").map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut ready = false;
    let mut gtid: Option<String> = None;
    while Instant::now() < deadline {
        let pkt = match tokio::time::timeout_at(deadline.into(), conn.read_packet()).await {
            Ok(p) => p.map_err(|e| format!("reading the stream: {e}"))?,
            Err(_) => break,
        };
        let at = SystemTime::now();
        if pkt.first() == Some(&0xFF) {
            return Err(format!("the server ended the dump: {}", parse_err_packet(&pkt)));
        }
        if !ready {
            ready = true;
            println!("ready");
            let _ = std::io::stdout().flush();
        }
        match classify(&pkt) {
            Seen::Gtid(g) => gtid = Some(g),
            Seen::End => {
                if let Some(g) = gtid.take() {
                    writeln!(out, "{g},{}", unix_ns(at)).map_err(|e| e.to_string())?;
                }
            }
            Seen::Other => {}
        }
        if pkt.first() == Some(&0xFE) && pkt.len() < 9 {
            break; // EOF: a non-blocking dump ended
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(args)) => {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("relay_probe: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("relay_probe: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("relay_probe: {e}");
            ExitCode::from(2)
        }
    }
}
