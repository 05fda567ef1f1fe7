//! Page-cache bypass (`writer.direct_io`): the open file is written with `O_DIRECT` from an
//! aligned in-memory buffer, so the kernel neither copies the bytes into its cache nor writes
//! them back later; the `sync_data` before each checkpoint then only has the disk's cache and the
//! file's metadata to flush.
//!
//! `O_DIRECT` wants offsets, lengths and buffer addresses aligned ([`ALIGN`]). The buffer holds
//! the file's bytes from an aligned offset (`base`) to the logical end (`base + len`): full
//! buffers are written as they fill, and a flush writes the rest zero-padded to the next
//! alignment, keeping the last partial block in memory to be written again, with what follows it,
//! at the next flush. The bytes before the logical end are therefore always the source's, and a
//! rewrite of the partial block puts back the same bytes it held.
//!
//! A small flush (a live stream's batch of a few transactions, under [`SMALL_FLUSH`]) does not
//! go direct: the bytes not yet in the file are written through the page cache, exactly them, at
//! their offset, by a second, buffered handle of the same file ([`flush_way`]). A direct write of
//! the padded block followed by the cut changes the file's length twice per batch, and the
//! `sync_data` then has more metadata to make durable besides the bytes: measured on this
//! project's disk, 0.33-0.34 against 0.19-0.20 ms per 400-byte record at the median (0.53-0.67
//! against 0.34-0.40 at p99; `scripts/bench/fsync_layout.py`), every commit of a semi-sync source
//! waiting for it (docs/performance.md, 2026-12-07, seventeenth session). Large batches (a
//! catch-up's) still bypass the cache. The two handles
//! are coherent: a direct write flushes and drops the cached pages it covers, and the
//! `sync_data` of either handle makes the whole file's data durable.
//!
//! Each flush ends by cutting the padding (`ftruncate` to the logical size, in
//! `OpenLocal::write_out`) before the `sync_data` that makes the bytes and the length durable, so
//! at every published checkpoint the file is exactly the source's bytes, as with buffered writes.
//! A crash between the padded write and the cut leaves up to `ALIGN - 1` zero bytes past the end:
//! `binlog::tail::scan` stops there (an event of size 0 is incomplete) and recovery cuts the file
//! back to its last complete transaction. Rewriting the partial block puts back the bytes it held,
//! as the page cache's write-back of a partly written page does.

use super::*;
use std::os::unix::fs::FileExt as _;

/// Offsets, lengths and buffer addresses of `O_DIRECT` writes are multiples of this (4 KiB covers
/// 512-byte and 4 KiB sector disks; ext4 and xfs ask for the logical sector size or less).
pub(super) const ALIGN: usize = 4096;
/// The buffer starts this small (a streaming task's batches are a few KiB) ...
const MIN_BUF: usize = 64 * 1024;
/// ... and grows, for a catch-up's large batches, up to this: one write per MiB.
const MAX_BUF: usize = WRITEBACK_CHUNK as usize;
/// A flush with fewer bytes than this not yet in the file writes them through the page cache
/// (see [`flush_way`]): below it the cut of the padded block costs a live batch more latency than
/// the copy into the cache costs CPU (about 3 CPU-s per GiB: 0.2 ms for 64 KiB).
pub(super) const SMALL_FLUSH: usize = MIN_BUF;

/// How a flush writes the bytes the file does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FlushWay {
    /// Every byte is in the file already.
    Nothing,
    /// Exactly the missing bytes, through the page cache (no padding, no cut).
    Cached,
    /// The aligned window, zero-padded, with `O_DIRECT` (the caller cuts the padding).
    Direct,
}

/// The decision, from how many appended bytes the file does not hold yet.
pub(super) fn flush_way(unwritten: usize) -> FlushWay {
    match unwritten {
        0 => FlushWay::Nothing,
        n if n < SMALL_FLUSH => FlushWay::Cached,
        _ => FlushWay::Direct,
    }
}

/// What the writer does with `writer.direct_io`, decided once per writer from the setting and
/// what the data directory's filesystem does with `O_DIRECT` (see [`choose`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IoChoice {
    Direct,
    /// Through the page cache; `why` is logged once when `auto` fell back.
    Buffered {
        why: Option<String>,
    },
}

/// What a probe of the data directory found (see [`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DirFacts {
    /// tmpfs or ramfs: the files live in the page cache; there is nothing to bypass.
    pub memory_fs: bool,
    /// `Err(errno)` when opening a file there with `O_DIRECT` failed.
    pub odirect: Result<(), i32>,
}

/// The decision: `off` is buffered; `on` is direct, or an error where the filesystem refuses
/// it; `auto` is direct where the filesystem accepts it and is not memory, buffered otherwise
/// (with the reason, logged once).
pub(super) fn choose(setting: DirectIo, facts: &DirFacts) -> Result<IoChoice, String> {
    match (setting, facts) {
        (DirectIo::Off, _) => Ok(IoChoice::Buffered { why: None }),
        (DirectIo::On, DirFacts { odirect: Err(errno), .. }) => Err(format!(
            "writer.direct_io is on but the filesystem of the data directory refuses O_DIRECT ({}); \
             set it to auto or off",
            io::Error::from_raw_os_error(*errno)
        )),
        (DirectIo::On, _) => Ok(IoChoice::Direct),
        (DirectIo::Auto, DirFacts { odirect: Err(errno), .. }) => Ok(IoChoice::Buffered {
            why: Some(format!("the filesystem refuses O_DIRECT ({})", io::Error::from_raw_os_error(*errno))),
        }),
        (DirectIo::Auto, DirFacts { memory_fs: true, .. }) => {
            Ok(IoChoice::Buffered { why: Some("the filesystem is in memory (tmpfs): no page cache to bypass".into()) })
        }
        (DirectIo::Auto, _) => Ok(IoChoice::Direct),
    }
}

/// What the filesystem of `dir` does: its type (statfs) and whether a file there opens with
/// `O_DIRECT` (a probe file, removed again). An error other than the refusal is an error.
pub(super) fn probe(dir: &Path) -> io::Result<DirFacts> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `statfs` is plain data (all zeros is a valid value) that the call fills in; `c` is
    // a NUL-terminated path that outlives the call.
    let (rc, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &mut st), st)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // tmpfs and ramfs (0x858458f6, which libc does not name).
    let memory_fs = matches!(st.f_type, libc::TMPFS_MAGIC | 0x8584_58f6);
    let path = dir.join(".direct-io-probe");
    let opened =
        OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).custom_flags(libc::O_DIRECT).open(&path);
    // Created even when the open itself is refused (the check comes after the creation).
    let _ = fs::remove_file(&path);
    let odirect = match opened {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Err(libc::EINVAL),
        Err(e) => return Err(e),
    };
    Ok(DirFacts { memory_fs, odirect })
}

/// Opens `path` for direct writes (and reads: recovery of a resumed file reads through it too).
pub(super) fn open_direct(path: &Path, create: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).custom_flags(libc::O_DIRECT);
    if create {
        o.create_new(true).mode(0o600); // row data: the owner's only
    }
    o.open(path)
}

/// The second, buffered handle of a file opened with [`open_direct`]: small flushes go through
/// it ([`FlushWay::Cached`]).
pub(super) fn open_cached(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// The aligned tail of an open file: its bytes from `base` (aligned) to the logical end.
pub(super) struct DirectTail {
    /// Over-allocated by `ALIGN` so that an aligned window of `cap` bytes fits: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    cap: usize,
    base: u64,
    len: usize,
    /// The window's first `written` bytes are in the file (the rest only here).
    written: usize,
    /// Bytes appended since the last flush (a small batch shrinks a grown buffer).
    since_flush: usize,
    /// The file's buffered handle, for small flushes ([`open_cached`]).
    cached: File,
}

impl DirectTail {
    /// A file whose logical size is `size`; `partial` is its last `size % ALIGN` bytes (in the
    /// file already); `cached` is its buffered handle.
    pub(super) fn new(size: u64, partial: &[u8], cached: File) -> Self {
        debug_assert_eq!(partial.len() as u64, size % ALIGN as u64);
        let mut t = DirectTail {
            buf: Vec::new(),
            start: 0,
            cap: 0,
            base: size - partial.len() as u64,
            len: 0,
            written: 0,
            since_flush: 0,
            cached,
        };
        t.resize(MIN_BUF);
        t.window()[..partial.len()].copy_from_slice(partial);
        t.len = partial.len();
        t.written = partial.len();
        t
    }

    /// The logical size of the file: what has been appended.
    pub(super) fn size(&self) -> u64 {
        self.base + self.len as u64
    }

    fn window(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.start + self.cap]
    }

    /// A new buffer of `cap` bytes holding what the old one held.
    fn resize(&mut self, cap: usize) {
        let mut buf = vec![0u8; cap + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN);
        buf[start..start + self.len].copy_from_slice(&self.buf[self.start..self.start + self.len]);
        (self.buf, self.start, self.cap) = (buf, start, cap);
    }

    /// Appends `data`, writing every buffer that fills.
    pub(super) fn append(&mut self, file: &File, mut data: &[u8]) -> io::Result<()> {
        self.since_flush += data.len();
        while !data.is_empty() {
            let n = (self.cap - self.len).min(data.len());
            let at = self.len;
            self.window()[at..at + n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == self.cap && self.cap < MAX_BUF {
                // A large batch: fewer, larger writes.
                self.resize((self.cap * 2).min(MAX_BUF));
            } else if self.len == self.cap {
                let (base, cap) = (self.base, self.cap);
                file.write_all_at(self.window(), base)?;
                self.base += cap as u64;
                self.len = 0;
                self.written = 0;
            }
        }
        Ok(())
    }

    /// Writes what the file does not hold yet ([`flush_way`]): a small rest exactly, through the
    /// page cache; otherwise the window zero-padded to the next alignment, directly. Either way
    /// the last partial block is kept for the next write. Afterwards everything appended is in
    /// the file, which ends at the offset returned: the logical size, or past it by the padding
    /// (the caller cuts it). A buffer grown for a burst shrinks again when little was pending.
    pub(super) fn flush(&mut self, file: &File) -> io::Result<u64> {
        let since = std::mem::take(&mut self.since_flush);
        let (len, base, written) = (self.len, self.base, self.written);
        let end = match flush_way(len - written) {
            FlushWay::Nothing => return Ok(self.size()),
            FlushWay::Cached => {
                let w = &self.buf[self.start..self.start + len];
                self.cached.write_all_at(&w[written..], base + written as u64)?;
                self.size()
            }
            FlushWay::Direct => {
                let padded = len.div_ceil(ALIGN) * ALIGN;
                let w = self.window();
                w[len..padded].fill(0);
                file.write_all_at(&w[..padded], base)?;
                base + padded as u64
            }
        };
        let full = len / ALIGN * ALIGN;
        self.window().copy_within(full..len, 0);
        self.base += full as u64;
        self.len -= full;
        self.written = self.len;
        if self.cap > MIN_BUF && since < MIN_BUF {
            self.resize(MIN_BUF);
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(memory_fs: bool, odirect: Result<(), i32>) -> DirFacts {
        DirFacts { memory_fs, odirect }
    }

    #[test]
    fn the_choice_for_every_setting_and_filesystem() {
        let direct = Ok(IoChoice::Direct);
        let buffered = Ok(IoChoice::Buffered { why: None });
        let einval = Err(libc::EINVAL);
        for (setting, f, want) in [
            (DirectIo::Off, facts(false, Ok(())), buffered.clone()),
            (DirectIo::Off, facts(true, einval), buffered.clone()),
            (DirectIo::On, facts(false, Ok(())), direct.clone()),
            (DirectIo::On, facts(true, Ok(())), direct.clone()),
            (DirectIo::Auto, facts(false, Ok(())), direct.clone()),
        ] {
            assert_eq!(choose(setting, &f), want, "{setting:?} {f:?}");
        }
        // auto falls back, saying why; on refuses to start.
        let memory = choose(DirectIo::Auto, &facts(true, Ok(()))).unwrap();
        assert!(matches!(&memory, IoChoice::Buffered { why: Some(w) } if w.contains("tmpfs")), "{memory:?}");
        let refused = choose(DirectIo::Auto, &facts(false, einval)).unwrap();
        assert!(
            matches!(&refused, IoChoice::Buffered { why: Some(w) } if w.contains("refuses O_DIRECT")),
            "{refused:?}"
        );
        let err = choose(DirectIo::On, &facts(false, einval)).unwrap_err();
        assert!(err.contains("refuses O_DIRECT"), "{err}");
    }

    #[test]
    fn tmpfs_is_seen_as_memory() {
        let shm = Path::new("/dev/shm");
        if !shm.is_dir() {
            return;
        }
        let dir = tempfile::tempdir_in(shm).unwrap();
        let f = probe(dir.path()).unwrap();
        assert!(f.memory_fs, "{f:?}");
        assert!(matches!(choose(DirectIo::Auto, &f), Ok(IoChoice::Buffered { why: Some(_) })));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file is removed");
    }

    #[test]
    fn small_flushes_go_through_the_cache_and_large_ones_direct() {
        use FlushWay::*;
        for (unwritten, want) in [
            (0, Nothing),
            (1, Cached),
            (400, Cached),
            (SMALL_FLUSH - 1, Cached),
            (SMALL_FLUSH, Direct),
            (8 << 20, Direct),
        ] {
            assert_eq!(flush_way(unwritten), want, "{unwritten} bytes not in the file yet");
        }
    }

    /// Appends and flushes in every pattern (sizes around the alignment, the small-flush line
    /// and the buffer's growth): after each flush the file holds exactly the bytes appended,
    /// then zeros to the next alignment at most (a direct flush) or nothing more (a small one
    /// through the cache); after the cut `OpenLocal::write_out` makes, exactly the bytes.
    #[test]
    fn every_flush_leaves_exactly_the_appended_bytes_then_padding() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let f = match open_direct(&path, true) {
            Ok(f) => f,
            Err(_) => OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap(), // no O_DIRECT here: same logic
        };
        let mut t = DirectTail::new(0, &[], open_cached(&path).unwrap());
        let mut want: Vec<u8> = Vec::new();
        let mut n = 0u32;
        let (mut exact, mut padded) = (0, 0);
        for (i, size) in [1usize, 4095, 1, 4096, 19, 70_000, 3, 1 << 20, 5000, (1 << 20) + 7, 1, 0, 250_000, 400, 400]
            .into_iter()
            .enumerate()
        {
            let chunk: Vec<u8> = (0..size)
                .map(|_| {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (n >> 16) as u8 | 1 // never 0: padding is told apart
                })
                .collect();
            t.append(&f, &chunk).unwrap();
            want.extend_from_slice(&chunk);
            assert_eq!(t.size(), want.len() as u64);
            if i % 3 != 1 {
                let end = t.flush(&f).unwrap();
                let got = fs::read(&path).unwrap();
                assert_eq!(end, got.len() as u64, "flush says where the file ends");
                assert!(got.len() >= want.len() && got.len() < want.len() + ALIGN, "{} vs {}", got.len(), want.len());
                assert_eq!(got[..want.len()], want[..], "after {i} appends");
                assert!(got[want.len()..].iter().all(|b| *b == 0));
                if end == t.size() {
                    exact += 1;
                } else {
                    assert_eq!(got.len() % ALIGN, 0, "padded to the alignment");
                    padded += 1;
                    f.set_len(t.size()).unwrap();
                }
                assert_eq!(fs::read(&path).unwrap(), want, "after {i} appends and the cut");
            }
        }
        assert!(exact >= 5 && padded >= 2, "both ways are taken, in turn: {exact} exact, {padded} padded");
        // Resuming a file mid-block (a restart) continues it exactly.
        let partial = &want[want.len() / ALIGN * ALIGN..];
        let mut r = DirectTail::new(want.len() as u64, partial, open_cached(&path).unwrap());
        r.append(&f, b"after the restart").unwrap();
        want.extend_from_slice(b"after the restart");
        assert_eq!(r.flush(&f).unwrap(), want.len() as u64, "a small flush: nothing to cut");
        assert_eq!(fs::read(&path).unwrap(), want);
        let big = vec![7u8; SMALL_FLUSH];
        r.append(&f, &big).unwrap();
        want.extend_from_slice(&big);
        let end = r.flush(&f).unwrap();
        assert!(end > r.size() && end.is_multiple_of(ALIGN as u64), "a large one: padded ({end})");
        f.set_len(r.size()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), want);
    }
}
