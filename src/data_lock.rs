//! The data directory's lock: `{data_dir}/binlog-server.lock`, an advisory `flock(2)`.
//!
//! A running server holds it shared for its whole life ([`DataDirLock::for_server`]); a command
//! that changes the data directory behind the server's back (`doctor --repair`) must hold it
//! exclusive ([`DataDirLock::exclusive`]), so the two never run at once. Shared, so that
//! nothing that started before this lock existed changes behaviour (each server has its own
//! data directory anyway). The kernel drops the lock with the process, `kill -9` included: a
//! stale lock file is harmless. [`holders`] names who holds it, read from `/proc/locks`.
//!
//! Never deletes the lock file: a process that opened it before the unlink would lock an inode
//! nobody else can find.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "binlog-server.lock";

/// A held lock on a data directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open the data directory's lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is locked by {holders}")]
    Held { path: PathBuf, holders: String },
}

impl DataDirLock {
    /// The running server's hold: shared; refused only while `doctor --repair` holds it.
    pub fn for_server(data_dir: &Path) -> Result<DataDirLock, LockError> {
        Self::take(data_dir, false)
    }

    /// Exclusive: refused while a server (or another exclusive holder) holds it.
    pub fn exclusive(data_dir: &Path) -> Result<DataDirLock, LockError> {
        Self::take(data_dir, true)
    }

    fn take(data_dir: &Path, exclusive: bool) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.clone(), source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let tried = if exclusive { file.try_lock() } else { file.try_lock_shared() };
        match tried {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => {
                let ino = file.metadata().map_err(io)?.ino();
                let text = std::fs::read_to_string("/proc/locks").unwrap_or_default();
                let pids = holders(&text, ino);
                Err(LockError::Held { path: path.clone(), holders: describe_holders(&pids) })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

/// The PIDs holding a `flock` on the inode `ino`, from the text of `/proc/locks` (lines like
/// `1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF`; a waiting lock, `1: -> FLOCK ...`, is not
/// a holder). Sorted, without repeats.
pub fn holders(proc_locks: &str, ino: u64) -> Vec<u32> {
    let mut pids: Vec<u32> = proc_locks
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            if words.next()? != "FLOCK" {
                return None;
            }
            let (_advisory, _mode) = (words.next()?, words.next()?);
            let pid = words.next()?.parse::<u32>().ok()?;
            let inode = words.next()?.rsplit(':').next()?.parse::<u64>().ok()?;
            (inode == ino).then_some(pid)
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// "pid 1234 (binlog-server serve --config x)", or a generic phrase when `/proc` says nothing.
fn describe_holders(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "another process (its pid is not visible here)".to_string();
    }
    let each: Vec<String> = pids
        .iter()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            if cmd.is_empty() { format!("pid {pid}") } else { format!("pid {pid} ({cmd})") }
        })
        .collect();
    each.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_table() {
        let text = "1: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 999 08:01:5678 0 EOF\n\
                    2: POSIX  ADVISORY  WRITE 42 08:01:5678 0 EOF\n\
                    3: FLOCK  ADVISORY  READ  77 fd:00:5678 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 5 08:01:56789 0 EOF\n\
                    5: FLOCK  ADVISORY  READ  1234 08:01:5678 0 EOF\n\
                    garbage\n";
        let cases: [(&str, u64, Vec<u32>); 3] = [
            ("readers of the inode, waiting and POSIX locks left out, sorted, once each", 5678, vec![77, 1234]),
            ("another inode", 56789, vec![5]),
            ("nobody", 1, vec![]),
        ];
        for (what, ino, want) in cases {
            assert_eq!(holders(text, ino), want, "{what}");
        }
    }

    #[test]
    fn servers_share_and_an_exclusive_hold_excludes_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = DataDirLock::for_server(dir.path()).expect("first server");
        let _b = DataDirLock::for_server(dir.path()).expect("servers share the lock");
        let err = DataDirLock::exclusive(dir.path()).expect_err("refused while servers hold it").to_string();
        assert!(err.contains(LOCK_FILE) && err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop((a, _b));
        let x = DataDirLock::exclusive(dir.path()).expect("free once they are gone");
        assert!(DataDirLock::for_server(dir.path()).is_err(), "no server starts during a repair");
        drop(x);
    }
}
