//! slog set-up: text or JSON, a level, standard error or a size-rotated file, behind slog-async
//! so logging never blocks an actor. Lines carry key-values (`task_id`, `file`, `pos`).
//!
//! Never log a `Secret`'s clear text: `Secret` prints `***`, so `?secret` is safe, `expose()` is not.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use slog::{Drain, Logger, o};

use crate::config::{LogFormat, LogLevel, LogSettings};

/// Keeps the async drain alive; dropping it flushes pending lines.
pub struct LogGuard(#[allow(dead_code)] Option<slog_async::AsyncGuard>);

fn slog_level(l: LogLevel) -> slog::Level {
    match l {
        LogLevel::Trace => slog::Level::Trace,
        LogLevel::Debug => slog::Level::Debug,
        LogLevel::Info => slog::Level::Info,
        LogLevel::Warn => slog::Level::Warning,
        LogLevel::Error => slog::Level::Error,
    }
}

/// Builds the root logger from the settings.
pub fn init(settings: &LogSettings) -> io::Result<(Logger, LogGuard)> {
    let writer: Box<dyn Write + Send> = if settings.file.is_empty() {
        Box::new(io::stderr())
    } else {
        Box::new(RotatingFile::open(
            PathBuf::from(&settings.file),
            settings.max_size_mb.saturating_mul(1024 * 1024),
            settings.max_files,
        )?)
    };
    let level = slog_level(settings.level);
    let (drain, guard) = match settings.format {
        LogFormat::Json => {
            let d = slog_json::Json::new(writer).add_default_keys().set_flush(true).build().fuse();
            async_drain(d, level)
        }
        LogFormat::Text => {
            let decorator = slog_term::PlainDecorator::new(writer);
            let d = slog_term::FullFormat::new(decorator).use_utc_timestamp().build().fuse();
            async_drain(d, level)
        }
    };
    let logger = Logger::root(drain, o!());
    Ok((logger, LogGuard(Some(guard))))
}

fn async_drain<D>(
    d: D,
    level: slog::Level,
) -> (slog::Fuse<slog::LevelFilter<slog_async::Async>>, slog_async::AsyncGuard)
where
    D: Drain<Ok = (), Err = slog::Never> + Send + 'static,
{
    // Bounded: under a log storm lines are dropped (and the drop is reported) rather than
    // blocking replication.
    let (d, guard) = slog_async::Async::new(d)
        .chan_size(8192)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .thread_name("log".into())
        .build_with_guard();
    (slog::LevelFilter::new(d, level).fuse(), guard)
}

/// A logger that discards everything (tests, tools).
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A file that rotates to `path.1` .. `path.N` when it would grow past `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { path, file, size, max_bytes: max_bytes.max(1), keep })
    }

    fn numbered(path: &Path, n: u32) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            self.file = OpenOptions::new().create(true).write(true).truncate(true).open(&self.path)?;
            self.size = 0;
            return Ok(());
        }
        let _ = fs::remove_file(Self::numbered(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = Self::numbered(&self.path, n);
            if from.exists() {
                fs::rename(&from, Self::numbered(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, Self::numbered(&self.path, 1))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut f = RotatingFile::open(path.clone(), 100, 2).unwrap();
        for i in 0..10 {
            f.write_all(format!("line {i:02} {}\n", "x".repeat(40)).as_bytes()).unwrap();
        }
        f.flush().unwrap();
        assert!(path.exists());
        assert!(RotatingFile::numbered(&path, 1).exists());
        assert!(RotatingFile::numbered(&path, 2).exists());
        assert!(!RotatingFile::numbered(&path, 3).exists());
        for p in [path.clone(), RotatingFile::numbered(&path, 1)] {
            assert!(fs::metadata(&p).unwrap().len() <= 100, "{} too big", p.display());
        }
        let newest = fs::read_to_string(&path).unwrap();
        assert!(newest.contains("line 09"));
    }
}
