//! Safe access to a task's files for download and archives: names are validated, symlinks are
//! never followed, and a path must resolve inside the task's directory. Plus a minimal ustar
//! writer for `replay/archive` (regular files only, names under 100 bytes).

use crate::upload::ObjectStore;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::binlog::name::BinlogFileName;
use crate::pitr::Location;

/// Why a file cannot be served. Messages name the file, never a path on this server: they
/// reach API clients.
#[derive(Debug, thiserror::Error)]
pub enum FileAccessError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0} is not a regular file of the task's own (symlinks are never followed, hard links never served)")]
    Refused(String),
    #[error("{0} is only in the bucket, and upload (the bucket client) is not enabled")]
    OnlyInBucket(String),
    /// A sealed file no longer has the size or sha256 recorded when it was sealed.
    #[error(
        "{name} changed on disk since it was sealed ({detail}); it is not served. `binlog-server doctor` lists every \
         such file; restore this one from the bucket or from a backup (a sealed file never changes)"
    )]
    Changed { name: String, detail: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Validates a file name from a URL: a binlog file name, nothing that walks the tree.
pub fn validate_name(raw: &str) -> Result<BinlogFileName, FileAccessError> {
    if raw.contains('/') || raw.contains('\\') || raw == ".." || raw.contains("..") {
        return Err(FileAccessError::InvalidName(format!(
            "{:?} is not a file name",
            raw.chars().take(64).collect::<String>()
        )));
    }
    BinlogFileName::parse(raw).map_err(|e| FileAccessError::InvalidName(e.to_string()))
}

/// Opens a catalogued local file for reading: without following a symlink at the last
/// component (`O_NOFOLLOW`), only when its real parent directory is inside `task_dir`, and
/// only when it has no other name (a hard link could be to any file of the filesystem).
pub fn open_local(task_dir: &Path, path: &Path) -> Result<File, FileAccessError> {
    let shown = || path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |source| FileAccessError::Io { path: shown(), source };
    let root = task_dir.canonicalize().map_err(io)?;
    let parent = path.parent().ok_or_else(|| FileAccessError::Refused(shown()))?;
    let real_parent = parent.canonicalize().map_err(io)?;
    if !real_parent.starts_with(&root) || real_parent == root {
        return Err(FileAccessError::Refused(shown()));
    }
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map_err(
            |e| if e.raw_os_error() == Some(libc::ELOOP) { FileAccessError::Refused(shown()) } else { io(e) },
        )?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(FileAccessError::Refused(shown()));
    }
    Ok(file)
}

/// What the catalog recorded for a sealed file: it is served only while its bytes still match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedCopy {
    pub size: u64,
    /// `None` until the task has hashed the file (moments after sealing): the size is checked then.
    pub sha256: Option<String>,
}

impl SealedCopy {
    /// The expectation for a catalog row: `Some` for a sealed file only.
    pub fn of(rec: &crate::meta::FileRecord) -> Option<SealedCopy> {
        (rec.state == crate::meta::FileState::Sealed).then(|| SealedCopy { size: rec.size, sha256: rec.sha256.clone() })
    }

    /// The same expectation with its size alone (the bytes are checked some other way).
    pub fn size_only(&self) -> SealedCopy {
        SealedCopy { size: self.size, sha256: None }
    }

    /// The decision: what is wrong with a sealed file of `disk_size` bytes, whose sha256 is
    /// computed by `disk_sha256` only when the size agrees and a sha256 was recorded.
    pub fn mismatch(
        &self,
        disk_size: u64,
        disk_sha256: impl FnOnce() -> io::Result<String>,
    ) -> io::Result<Option<String>> {
        if disk_size != self.size {
            return Ok(Some(format!("{disk_size} bytes on disk, {} bytes when sealed", self.size)));
        }
        let Some(want) = &self.sha256 else { return Ok(None) };
        let got = disk_sha256()?;
        Ok((got != *want).then(|| format!("sha256 {got} on disk, {want} when sealed")))
    }
}

/// Refuses a sealed file whose bytes changed since it was sealed (size, then sha256 read through
/// `file`, which is left at offset 0). Costs one read of the file when a sha256 is recorded.
pub fn verify_sealed(file: &mut File, name: &str, expect: &SealedCopy) -> Result<(), FileAccessError> {
    use std::io::{Seek, SeekFrom};
    let io = |source| FileAccessError::Io { path: name.to_string(), source };
    let disk_size = file.metadata().map_err(io)?.len();
    let found = expect
        .mismatch(disk_size, || {
            file.seek(SeekFrom::Start(0))?;
            sha256_of(&mut *file)
        })
        .map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    match found {
        Some(detail) => Err(FileAccessError::Changed { name: name.to_string(), detail }),
        None => Ok(()),
    }
}

/// The sha256 (lowercase hex) of everything `r` yields.
pub fn sha256_of(mut r: impl Read) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Opens a plan file's bytes wherever they are; a local sealed file only while it is the one
/// that was sealed.
pub fn open_location(
    task_dir: &Path,
    loc: &Location,
    sealed: Option<&SealedCopy>,
    objects: Option<&ObjectStore>,
) -> Result<File, FileAccessError> {
    match loc {
        Location::Local { path } => {
            let mut file = open_local(task_dir, path)?;
            if let Some(expect) = sealed {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                verify_sealed(&mut file, &name, expect)?;
            }
            Ok(file)
        }
        Location::Object { key } => open_object(key, objects),
    }
}

/// A file that only the bucket still holds: downloaded into an unlinked temporary file (so it
/// disappears with its handle). Called from blocking threads inside the runtime; `objects` is
/// the bucket, when upload is enabled.
pub fn open_object(key: &str, objects: Option<&ObjectStore>) -> Result<File, FileAccessError> {
    let only = || FileAccessError::OnlyInBucket(key.to_string());
    let objects = objects.ok_or_else(only)?;
    let handle = tokio::runtime::Handle::try_current().map_err(|_| only())?;
    let dir = std::env::temp_dir();
    let path = dir.join(format!("binlog-server-fetch-{}-{}", std::process::id(), rand::random::<u64>()));
    let fetched = handle.block_on(objects.download_to(key, &path));
    let file = fetched.and_then(|_| File::open(&path).map_err(|e| crate::upload::UploadError::Remote(e.to_string())));
    let _ = std::fs::remove_file(&path);
    file.map_err(|e| FileAccessError::Io {
        path: format!("bucket object {key}"),
        source: io::Error::other(e.to_string()),
    })
}

/// A ustar header block for a regular file.
pub fn tar_header(name: &str, size: u64, mtime: u64) -> io::Result<[u8; 512]> {
    if name.len() > 99 || size >= 0o77777777777 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: too long or too large for ustar")));
    }
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, mtime);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// Padding after `size` bytes of content, to the next 512-byte block.
pub fn tar_padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Reads exactly `len` bytes of `file` in chunks, calling `sink` for each; fails if the file
/// is shorter (it changed under us).
pub fn copy_exact(file: File, len: u64, mut sink: impl FnMut(Vec<u8>) -> bool) -> io::Result<bool> {
    let mut r = file.take(len);
    let mut left = len;
    while left > 0 {
        let mut buf = vec![0u8; left.min(256 * 1024) as usize];
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than its catalog size"));
        }
        buf.truncate(n);
        left -= n as u64;
        if !sink(buf) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_walk_the_tree_are_refused() {
        for bad in ["../x", "..", "a/../../etc/passwd", "/etc/passwd", "a\\b", ".hidden", "", "x..000001", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(validate_name("mysql-bin.000042").unwrap().as_str(), "mysql-bin.000042");
    }

    #[test]
    fn symlinks_and_paths_outside_the_task_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let task = root.path().join("1");
        let ident = task.join("src");
        std::fs::create_dir_all(&ident).unwrap();
        std::fs::write(ident.join("bin.000001"), b"data").unwrap();
        std::fs::write(root.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), ident.join("bin.000002")).unwrap();
        assert!(open_local(&task, &ident.join("bin.000001")).is_ok());
        assert!(matches!(open_local(&task, &ident.join("bin.000002")), Err(FileAccessError::Refused(_))));
        // A symlinked identity directory pointing outside the task is refused too.
        let outside = root.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("bin.000003"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, task.join("evil")).unwrap();
        assert!(matches!(open_local(&task, &task.join("evil").join("bin.000003")), Err(FileAccessError::Refused(_))));
        assert!(matches!(open_local(&task, &root.path().join("secret")), Err(FileAccessError::Refused(_))));
        // A hard link to a file outside the task: same inode, second name.
        std::fs::hard_link(root.path().join("secret"), ident.join("bin.000004")).unwrap();
        let refused = open_local(&task, &ident.join("bin.000004")).unwrap_err();
        let text = refused.to_string();
        assert!(matches!(refused, FileAccessError::Refused(_)), "{text}");
        assert!(text.starts_with("bin.000004 ") && !text.contains('/'), "names the file, no path: {text}");
    }

    #[test]
    fn a_sealed_file_is_judged_by_size_then_sha256() {
        let sha = |b: &[u8]| sha256_of(b).unwrap();
        let good = b"sealed bytes";
        let expect = SealedCopy { size: good.len() as u64, sha256: Some(sha(good)) };
        let unhashed = SealedCopy { size: good.len() as u64, sha256: None };
        let never = || -> io::Result<String> { panic!("the sha256 is not needed here") };
        // (expectation, size on disk, bytes on disk, mismatch expected)
        let cases: [(&SealedCopy, u64, &[u8], Option<&str>); 5] = [
            (&expect, 12, good, None),
            (&expect, 12, b"SEALED bytes", Some("sha256 ")),
            (&expect, 13, good, Some("13 bytes on disk, 12 bytes when sealed")),
            (&unhashed, 12, b"anything 12b", None),
            (&unhashed, 11, good, Some("11 bytes on disk")),
        ];
        for (want, size, bytes, found) in cases {
            let got = if size != want.size || want.sha256.is_none() {
                want.mismatch(size, never).unwrap()
            } else {
                want.mismatch(size, || Ok(sha(bytes))).unwrap()
            };
            match (found, got) {
                (None, None) => {}
                (Some(part), Some(text)) => assert!(text.contains(part), "{text:?} should say {part:?}"),
                (want, got) => panic!("size {size}, bytes {bytes:?}: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_changed_sealed_file_is_not_served() {
        let root = tempfile::tempdir().unwrap();
        let task = root.path().join("1");
        let ident = task.join("src");
        std::fs::create_dir_all(&ident).unwrap();
        let path = ident.join("bin.000001");
        std::fs::write(&path, b"the sealed bytes").unwrap();
        let expect = SealedCopy { size: 16, sha256: Some(sha256_of(&b"the sealed bytes"[..]).unwrap()) };
        let loc = Location::Local { path: path.clone() };
        let mut served = String::new();
        open_location(&task, &loc, Some(&expect), None).unwrap().read_to_string(&mut served).unwrap();
        assert_eq!(served, "the sealed bytes", "a verified file is read from its start");
        std::fs::write(&path, b"the SEALED bytes").unwrap();
        let err = open_location(&task, &loc, Some(&expect), None).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FileAccessError::Changed { .. }), "{text}");
        assert!(text.starts_with("bin.000001 changed on disk since it was sealed (sha256 "), "{text}");
        assert!(!text.contains(root.path().to_str().unwrap()), "names the file, no path: {text}");
        // An open file (no expectation) is served as it is.
        assert!(open_location(&task, &loc, None, None).is_ok());
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let h = tar_header("bin.000001", 1234, 1_700_000_000).unwrap();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let mut copy = h;
        copy[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, copy.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&h[124..135], b"00000002322");
        assert_eq!(tar_padding(1234), 512 - 1234 % 512);
        assert_eq!(tar_padding(1024), 0);
        assert!(tar_header(&"x".repeat(100), 1, 0).is_err());
    }
}
