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
        Box::new(LineBuffered::new(io::stderr()))
    } else {
        Box::new(LineBuffered::new(RotatingFile::open(
            PathBuf::from(&settings.file),
            settings.max_size_mb.saturating_mul(1024 * 1024),
            settings.max_files,
        )?))
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

/// Hands its writer whole lines. The formatters write a record in pieces (serde_json writes
/// every key, quote and value on its own), which on an unbuffered file or standard error is a
/// system call each, dozens per line, on the log thread; here a line is one write, and a rotating
/// file never splits a line across two files. A line is written out as soon as its newline
/// arrives (nothing waits in the buffer for later lines), on `flush`, when the buffer would pass
/// `LINE_BUFFER_MAX` (a piece that large goes straight through), and on drop.
pub struct LineBuffered<W: Write> {
    inner: W,
    buf: Vec<u8>,
}

/// A line longer than this is written out in parts, as it comes.
const LINE_BUFFER_MAX: usize = 64 * 1024;

impl<W: Write> LineBuffered<W> {
    pub fn new(inner: W) -> Self {
        LineBuffered { inner, buf: Vec::with_capacity(1024) }
    }

    /// Writes what is buffered; on an error the bytes are dropped (a log line is not retried, and
    /// the buffer must not grow without bound behind a failing writer).
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let res = self.inner.write_all(&self.buf);
        self.buf.clear();
        res
    }
}

impl<W: Write> Write for LineBuffered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.buf.len() + buf.len() > LINE_BUFFER_MAX {
            self.write_out()?;
            if buf.len() >= LINE_BUFFER_MAX {
                self.inner.write_all(buf)?;
                return Ok(buf.len());
            }
        }
        self.buf.extend_from_slice(buf);
        if buf.ends_with(b"\n") || self.buf.len() >= LINE_BUFFER_MAX {
            self.write_out()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for LineBuffered<W> {
    fn drop(&mut self) {
        let _ = self.write_out();
    }
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

    /// Counts the writes it gets and keeps their bytes.
    #[derive(Clone, Default)]
    struct Counting(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Write for Counting {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn json_logger(w: impl Write + Send + 'static) -> Logger {
        let d = slog_json::Json::new(w).add_default_keys().set_flush(true).build().fuse();
        Logger::root(std::sync::Mutex::new(d).fuse(), o!())
    }

    #[test]
    fn a_json_record_reaches_the_writer_as_one_whole_line() {
        // Unbuffered, the formatter writes a record in many pieces (what this buffer is for).
        let raw = Counting::default();
        slog::info!(json_logger(raw.clone()), "checkpoint durable"; "file" => "mariadb-bin.000001", "pos" => 4096u64);
        let pieces = raw.0.lock().unwrap().len();
        assert!(pieces > 10, "the formatter alone writes a record in pieces ({pieces})");

        let seen = Counting::default();
        let log = json_logger(LineBuffered::new(seen.clone()));
        for i in 0..3u64 {
            slog::info!(log, "checkpoint durable"; "file" => "mariadb-bin.000001", "pos" => i);
        }
        let writes = seen.0.lock().unwrap().clone();
        assert_eq!(writes.len(), 3, "one write per record");
        for (i, w) in writes.iter().enumerate() {
            assert!(w.ends_with(b"\n"), "a whole line: {:?}", String::from_utf8_lossy(w));
            let v: serde_json::Value = serde_json::from_slice(w).expect("one JSON record per write");
            assert_eq!(v["pos"], i as u64);
        }
    }

    #[test]
    fn line_buffering_writes_lines_as_they_end_and_long_ones_in_parts() {
        // (pieces written, writes the inner writer has seen after them)
        let seen = Counting::default();
        let mut w = LineBuffered::new(seen.clone());
        let count = |s: &Counting| s.0.lock().unwrap().len();
        w.write_all(b"{\"a\":").unwrap();
        assert_eq!(count(&seen), 0, "a partial line waits");
        w.write_all(b"1}\n").unwrap();
        assert_eq!(count(&seen), 1, "its newline writes it");
        w.write_all(b"two\nlines\n").unwrap();
        assert_eq!(count(&seen), 2, "lines that come in one piece go out in one write");
        w.write_all(b"no newline yet").unwrap();
        w.flush().unwrap();
        assert_eq!(count(&seen), 3, "flush writes what waits");
        // A long line in small pieces: written out each time the buffer is full, never beyond.
        w.write_all(b"{").unwrap();
        for _ in 0..(2 * LINE_BUFFER_MAX / 1000) {
            w.write_all(&[b'x'; 1000]).unwrap();
        }
        w.write_all(b"}\n").unwrap();
        // A piece of the limit or more goes straight through, after what waited.
        w.write_all(b"<").unwrap();
        w.write_all(&vec![b'y'; LINE_BUFFER_MAX]).unwrap();
        w.write_all(b">\n").unwrap();
        let writes = seen.0.lock().unwrap().clone();
        let long = &writes[3..];
        assert!(long.len() >= 5, "the long lines went out in parts ({})", long.len());
        assert!(long.iter().all(|p| p.len() <= LINE_BUFFER_MAX), "no write beyond the limit");
        let expected = [
            b"{".to_vec(),
            vec![b'x'; 2 * LINE_BUFFER_MAX / 1000 * 1000],
            b"}\n<".to_vec(),
            vec![b'y'; LINE_BUFFER_MAX],
            b">\n".to_vec(),
        ]
        .concat();
        assert_eq!(long.concat(), expected, "every byte, in order");
        w.write_all(b"tail").unwrap();
        drop(w);
        assert_eq!(seen.0.lock().unwrap().last().unwrap(), b"tail", "drop writes the rest");
    }

    #[test]
    fn a_rotating_log_never_splits_a_line_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let log = json_logger(LineBuffered::new(RotatingFile::open(path.clone(), 600, 3).unwrap()));
        for i in 0..40u64 {
            slog::info!(log, "a line"; "i" => i, "pad" => "p".repeat(40));
        }
        drop(log);
        let mut seen = Vec::new();
        for p in [
            RotatingFile::numbered(&path, 3),
            RotatingFile::numbered(&path, 2),
            RotatingFile::numbered(&path, 1),
            path.clone(),
        ] {
            let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(text.ends_with('\n'), "{} ends with a whole line", p.display());
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: {line:?} is not one record: {e}", p.display()));
                seen.push(v["i"].as_u64().unwrap());
            }
        }
        let n = seen.len() as u64;
        assert_eq!(seen, (40 - n..40).collect::<Vec<_>>(), "the newest lines, whole and in order");
    }

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
