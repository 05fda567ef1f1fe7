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
//!
//! `--drain` (no `--out`): the catch-up client instead. It asks for a non-blocking dump
//! (`BINLOG_DUMP_NON_BLOCK`), reads to the server's end as fast as it can, writes nothing, and
//! prints one JSON line: the events and bytes received (artificial events and heartbeats left
//! out) and a CRC32 over those events' bytes, so that two servers' streams can be compared.
//! It measures what a server sends when the client costs little (mariadb-binlog, which writes
//! every event with its own system call, is the bound of a pull through it).

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use binlog_server::binlog::Flavor;
use binlog_server::binlog::name::BinlogFileName;
use binlog_server::domain::TlsMode;
use binlog_server::secret::Secret;
use binlog_server::source::conn::{ConnectParams, SourceConn, parse_err_packet};
use binlog_server::source::dump::{BINLOG_DUMP_NON_BLOCK, DumpFrom, ReplicaParams, inspect, start_dump_flagged};

const USAGE: &str = "usage: relay_probe --port PORT --user USER --password PW --file NAME --pos POS --out FILE.csv \
                     [--host H] [--server-id N] [--seconds S]\n       relay_probe --drain --port PORT --user USER --password PW --file NAME --pos POS";

const XID_EVENT: u8 = 16;
const QUERY_EVENT: u8 = 2;
const MARIADB_GTID_EVENT: u8 = 162;
const HEADER: usize = 19;
const HEARTBEAT_EVENT: u8 = 27;
/// LOG_EVENT_ARTIFICIAL_F: an event the server made up for this dump (not in its files).
const ARTIFICIAL: u16 = 0x20;

struct Args {
    host: String,
    port: u16,
    user: String,
    password: String,
    file: String,
    pos: u64,
    server_id: u32,
    seconds: f64,
    /// The arrival CSV; `None` with `--drain`.
    out: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let (mut host, mut port, mut user, mut password) = ("127.0.0.1".to_string(), None, None, String::new());
    let (mut file, mut pos, mut server_id, mut seconds, mut out) = (None, 4u64, 900u32, 3600.0f64, None);
    let mut drain = false;
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
            "--drain" => drain = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other if other.starts_with('-') => return Err(format!("unknown option {other}\n{USAGE}")),
            _ => {} // a libtest filter when run by `cargo test`
        }
    }
    let Some(port) = port else { return Ok(None) };
    let user = user.ok_or_else(|| format!("--user is required\n{USAGE}"))?;
    let file = file.ok_or_else(|| format!("--file is required\n{USAGE}"))?;
    if drain == out.is_some() {
        return Err(format!("give exactly one of --out and --drain\n{USAGE}"));
    }
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

/// What `--drain` received: every event the server's files hold from the start position on.
#[derive(Default)]
struct Drained {
    events: u64,
    bytes: u64,
    crc: crc32fast::Hasher,
}

impl Drained {
    /// Counts one packet (OK byte, then the event); artificial events and heartbeats are the
    /// server's own and differ between servers, so they are left out.
    fn add(&mut self, pkt: &[u8]) {
        if pkt.len() < 1 + HEADER || pkt[0] != 0 {
            return;
        }
        let ev = &pkt[1..];
        let flags = u16::from_le_bytes([ev[17], ev[18]]);
        if ev[4] == HEARTBEAT_EVENT || flags & ARTIFICIAL != 0 {
            return;
        }
        self.events += 1;
        self.bytes += ev.len() as u64;
        self.crc.update(ev);
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
    let flags = if args.out.is_none() { BINLOG_DUMP_NON_BLOCK } else { 0 };
    start_dump_flagged(&mut conn, &info, &replica, &DumpFrom::FilePos { file, pos: args.pos }, flags)
        .await
        .map_err(|e| format!("dump: {e}"))?;
    let Some(out) = args.out.as_deref() else { return drain(&mut conn).await };
    let out = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
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

/// `--drain`: reads a non-blocking dump to its EOF and prints what came.
async fn drain(conn: &mut SourceConn) -> Result<(), String> {
    let started = Instant::now();
    let mut got = Drained::default();
    loop {
        let pkt = conn.read_packet().await.map_err(|e| format!("reading the stream: {e}"))?;
        match pkt.first() {
            Some(0xFF) => return Err(format!("the server ended the dump: {}", parse_err_packet(&pkt))),
            Some(0xFE) if pkt.len() < 9 => break,
            _ => got.add(&pkt),
        }
    }
    println!(
        "{{\"events\":{},\"bytes\":{},\"crc32\":\"{:08x}\",\"elapsed_s\":{:.6}}}",
        got.events,
        got.bytes,
        got.crc.finalize(),
        started.elapsed().as_secs_f64()
    );
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
