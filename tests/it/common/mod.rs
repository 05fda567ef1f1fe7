//! The integration-test harness: real processes on ephemeral ports in temp dirs.
//!
//! `mariadb` starts a `mariadbd` per test, `server` runs the binlog-server binary, `fake_source`
//! plays a source that misbehaves on purpose (an impostor asking for the password); this module
//! holds what they all need (polling with a deadline, ports, process and log helpers). It must never
//! mock MySQL or sleep to synchronise: every wait is a poll with a deadline and a message that
//! says what was being waited for. Every process it starts is killed by PID when its owner drops.
//!
//! Set `BINLOG_TEST_KEEP=1` to keep the temp dirs (their paths are printed) for a post-mortem.

// Not every test module uses every helper; the harness is shared by all of them.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_source;
pub mod mariadb;
pub mod pitr;
pub mod power_cut;
pub mod proxy;
pub mod replication;
pub mod s3;
pub mod server;

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Environment variable that keeps the temp dirs of harness processes after the test.
pub const KEEP_ENV: &str = "BINLOG_TEST_KEEP";

/// The value of the first sample in a `/metrics` text whose line starts with `prefix` (name and
/// labels).
pub fn metric_sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
}

/// Calls `f` until it returns `Some`, for at most `timeout`; panics naming `what` on timeout.
///
/// The short sleeps between calls are the polling interval, not synchronisation: the condition
/// itself is what the caller waits for.
pub fn poll_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    poll_until_or(timeout, || f().ok_or(()))
        .unwrap_or_else(|()| panic!("timed out after {:.1?} waiting for {what}", start.elapsed()))
}

/// [`poll_until`] for a caller that explains a timeout itself: `f`'s last `Err` when the time
/// is up.
pub fn poll_until_or<T, E>(timeout: Duration, mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(10);
    loop {
        let last = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(last);
        }
        thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(Duration::from_millis(200));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// Another process can take it before the caller binds it; the process starters retry.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr of a bound listener").port()
}

/// Whether harness temp dirs should survive the test (`BINLOG_TEST_KEEP=1`).
pub fn keep_temp_dirs() -> bool {
    std::env::var(KEEP_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A task spec for tests that talk to the store directly (no source is contacted): a MariaDB
/// source on 127.0.0.1:3306 as `repl`, LATEST, named after `key`. Override fields with
/// `RawTaskSpec { field, ..test_spec(key) }`, then `validate()`.
pub fn test_spec(key: &str) -> binlog_server::domain::RawTaskSpec {
    binlog_server::domain::RawTaskSpec {
        name: Some(format!("task {key}")),
        cluster_key: Some(key.into()),
        host: Some("127.0.0.1".into()),
        port: Some(3306),
        user: Some("repl".into()),
        password: Some(binlog_server::secret::Secret::new("pw")),
        flavor: Some("mariadb".into()),
        start_mode: Some("LATEST".into()),
        ..Default::default()
    }
}

/// A fresh temp dir named `<prefix>XXXXXX`; kept (and its path printed) under `BINLOG_TEST_KEEP`.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temp dir {prefix}*: {e}"));
    if keep_temp_dirs() {
        dir.disable_cleanup(true);
        eprintln!("{KEEP_ENV}: keeping {}", dir.path().display());
    }
    dir
}

/// Finds an executable on PATH or in `/usr/sbin`, `/usr/bin`, `/sbin` (mariadbd lives in sbin,
/// which is often not on a non-root PATH); `None` when it is nowhere.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/usr/local/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Like [`find_binary`], but panics with a hint to run the set-up script.
pub fn require_binary(name: &str) -> PathBuf {
    find_binary(name).unwrap_or_else(|| {
        panic!("`{name}` not found on PATH or in /usr/sbin, /usr/bin: run scripts/setup-deps.sh test")
    })
}

/// Whether this process runs as root (effective uid 0), read from `/proc/self/status`.
pub fn is_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// Whether a process with this PID exists (a zombie counts until it is reaped).
pub fn pid_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Sends a signal (`"TERM"`, `"KILL"`, ...) to `pid` with `kill(1)`.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("running `kill -{signal} {pid}` (procps installed?): {e}"));
    // A process that already exited makes kill fail; the caller's wait tells the rest.
    let _ = status;
}

/// Waits for `child` to exit for at most `timeout`; `None` if it is still running then.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep(interval.min(deadline - now));
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// The stacks of every thread of process `pid` by `gdb` (for a test's failure message, taken
/// before the process is killed), or why there are none.
pub fn thread_stacks(pid: u32, name: &str) -> String {
    match Command::new("gdb")
        .args(["-p", &pid.to_string(), "-batch", "-ex", "thread apply all bt"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => format!("--- {name}'s threads (gdb) ---\n{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => format!("no stacks of {name}: gdb: {e}"),
    }
}

/// SIGKILLs `child` and reaps it, so its PID is gone when this returns.
pub fn kill_and_reap(child: &mut Child) -> ExitStatus {
    // An error here means the child already exited; wait() below reaps it either way.
    let _ = child.kill();
    child.wait().unwrap_or_else(|e| panic!("reaping pid {}: {e}", child.id()))
}

/// Runs a command to completion with its output captured, killing it after `timeout`.
pub fn output_with_deadline(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        // The receiver may have given up already; nothing is left to tell then.
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("waiting for {what}: {e}"),
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("{what} did not finish within {timeout:?} (killed pid {pid})");
        }
    }
}

/// The last `max_lines` lines of a text file, or a note saying why there are none.
pub fn file_tail(path: &Path, max_lines: usize) -> String {
    match read_from(path, 0) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(max_lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// The text of a file from byte `offset` on (lossy UTF-8).
pub fn read_from(path: &Path, offset: u64) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Every path under `dir` (files and directories).
pub fn walk(dir: &Path) -> std::collections::BTreeSet<PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// Every file named `name` under `dir`, at any depth.
pub fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.is_file() && p.file_name().is_some_and(|n| n == name)).collect()
}

/// The size of a file, 0 if it does not exist yet.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Opens `path` for appending (created if missing): a process's stdout/stderr across restarts.
pub fn append_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {} for append: {e}", path.display()))
}

/// Whether `pid` owns a socket listening on TCP `port` (any local address, IPv4 or IPv6).
///
/// Tells our process apart from another one that took a raced ephemeral port.
pub fn pid_listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let local_port = cols[1].rsplit(':').next().and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", cols[9]));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(Result::ok)
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .any(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
}
