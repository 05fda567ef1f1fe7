//! Who may read what binlog-server writes. Binlog files hold every changed row, the metadata
//! database the catalog and the encrypted passwords: nothing is readable by other local users,
//! whatever umask the process was started with. The process runs with umask 077 (files 0600,
//! directories 0700, SQLite's included), and a data directory left open by an older version is
//! tightened at start-up, saying so in the log.
//!
//! Never follows a symlink while tightening: a link in `data_dir` must not make us chmod its
//! target.

use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt};
use std::path::{Path, PathBuf};

/// The umask binlog-server runs with.
pub const PRIVATE_UMASK: u32 = 0o077;

/// Sets the process's umask to 077: everything created from here on is private to its owner.
pub fn restrict_umask() {
    // SAFETY: umask(2) cannot fail and touches no memory; it only changes the process's mask.
    unsafe {
        libc::umask(PRIVATE_UMASK as libc::mode_t);
    }
}

/// The mode an entry should have instead of `mode`, when `mode` lets group or others in: the
/// owner's bits only (a directory's or a file's, whatever they were).
pub fn tightened(mode: u32) -> Option<u32> {
    let perms = mode & 0o7777;
    (perms & 0o077 != 0).then_some(perms & 0o700)
}

/// What `prepare` changed: `(path, former mode)`.
#[derive(Debug, Default)]
pub struct Tightened {
    pub dirs: Vec<(PathBuf, u32)>,
    pub files: Vec<(PathBuf, u32)>,
}

/// Creates `data_dir` (0700), or tightens it and every directory and regular file under it.
pub fn prepare(data_dir: &Path) -> io::Result<Tightened> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(data_dir)?;
    let mut done = Tightened::default();
    // The data directory itself may be a symlink an operator set up: its target is ours.
    let meta = std::fs::metadata(data_dir)?;
    tighten(data_dir, meta.permissions().mode(), &mut done.dirs)?;
    walk(data_dir, &mut done)?;
    Ok(done)
}

fn walk(dir: &Path, done: &mut Tightened) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            tighten(&path, mode, &mut done.dirs)?;
            walk(&path, done)?;
        } else if meta.is_file() {
            tighten(&path, mode, &mut done.files)?;
        }
    }
    Ok(())
}

fn tighten(path: &Path, mode: u32, changed: &mut Vec<(PathBuf, u32)>) -> io::Result<()> {
    if let Some(new) = tightened(mode) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(new))?;
        changed.push((path.to_path_buf(), mode & 0o7777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_and_other_bits_go() {
        assert_eq!(tightened(0o40755), Some(0o700));
        assert_eq!(tightened(0o100644), Some(0o600));
        assert_eq!(tightened(0o100600), None);
        assert_eq!(tightened(0o40700), None);
        assert_eq!(tightened(0o100640), Some(0o600));
        assert_eq!(tightened(0o100400), None, "read-only for its owner stays so");
    }

    #[test]
    fn an_old_data_dir_is_tightened_without_following_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(data.join("1/src")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(data.join("meta.db"), b"x").unwrap();
        std::fs::write(data.join("1/src/bin.000001"), b"x").unwrap();
        let set = |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        for d in [&data, &data.join("1"), &data.join("1/src"), &outside] {
            set(d, 0o755);
        }
        set(&data.join("meta.db"), 0o644);
        set(&data.join("1/src/bin.000001"), 0o644);
        std::os::unix::fs::symlink(&outside, data.join("link")).unwrap();

        let done = prepare(&data).unwrap();
        assert_eq!((done.dirs.len(), done.files.len()), (3, 2), "{done:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("1/src")), 0o700);
        assert_eq!(mode(&data.join("1/src/bin.000001")), 0o600);
        assert_eq!(mode(&outside), 0o755, "a symlink's target is not ours to change");
        assert!(prepare(&data).unwrap().dirs.is_empty(), "a second start changes nothing");

        let fresh = root.path().join("new/data");
        prepare(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700, "created private whatever the umask");
    }
}
