//! Where an import over the API may read: only inside `storage.import_dir`. A path (relative to
//! it, or absolute inside it) must resolve inside the folder once every symlink is followed;
//! files are opened without following a symlink at the last component, a folder's symlinks are
//! skipped, and errors name the path as given relative to the folder, never another server path.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::binlog::name::BinlogFileName;
use crate::import::run::{Offer, binlog_files_in};

/// Why a path is not imported. Messages reach API clients.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("import over the API is off: set storage.import_dir to the folder it may read")]
    Off,
    #[error("{0:?} is not a path inside the import folder (storage.import_dir)")]
    Outside(String),
    #[error("{shown}: {reason}")]
    Unreadable { shown: String, reason: String },
}

fn shown(raw: &str) -> String {
    raw.chars().take(200).collect()
}

/// The real path of `raw` inside `import_dir`.
pub fn resolve(import_dir: &Path, raw: &str) -> Result<PathBuf, SourceError> {
    let outside = || SourceError::Outside(shown(raw));
    let given = Path::new(raw);
    if raw.is_empty() || given.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(outside());
    }
    let root = import_dir
        .canonicalize()
        .map_err(|e| SourceError::Unreadable { shown: "storage.import_dir".into(), reason: e.kind().to_string() })?;
    let joined = if given.is_absolute() { given.to_path_buf() } else { root.join(given) };
    let real = joined
        .canonicalize()
        .map_err(|e| SourceError::Unreadable { shown: shown(raw), reason: e.kind().to_string() })?;
    if !real.starts_with(&root) {
        return Err(outside());
    }
    Ok(real)
}

fn open(path: &Path, shown: &str) -> Result<File, SourceError> {
    let unreadable = |reason: String| SourceError::Unreadable { shown: shown.to_string(), reason };
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| unreadable(e.kind().to_string()))?;
    if !f.metadata().map_err(|e| unreadable(e.kind().to_string()))?.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    Ok(f)
}

/// The files `raw` names inside `import_dir` (a file, or a folder's `name.NNNNNN` files), opened.
pub fn offers(import_dir: Option<&Path>, raw: &str) -> Result<Vec<Offer>, SourceError> {
    let root = import_dir.ok_or(SourceError::Off)?;
    let real = resolve(root, raw)?;
    let rel = |p: &Path| {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        p.strip_prefix(&root).map(|r| r.display().to_string()).unwrap_or_else(|_| shown(raw))
    };
    let unreadable = |reason: String| SourceError::Unreadable { shown: shown(raw), reason };
    if real.is_dir() {
        let files = binlog_files_in(&real).map_err(|e| unreadable(e.kind().to_string()))?;
        if files.is_empty() {
            return Err(unreadable("no binlog file (name.NNNNNN) in this folder".into()));
        }
        files
            .into_iter()
            .map(|(name, path)| {
                let shown = rel(&path);
                Ok(Offer { file: open(&path, &shown)?, name, shown })
            })
            .collect()
    } else {
        let name = real.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let name = BinlogFileName::parse(name).map_err(|e| unreadable(e.to_string()))?;
        let shown = rel(&real);
        Ok(vec![Offer { file: open(&real, &shown)?, name, shown }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_inside_the_import_folder_are_read() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("imports");
        std::fs::create_dir_all(root.join("old")).unwrap();
        std::fs::write(root.join("old/bin.000001"), b"x").unwrap();
        std::fs::write(root.join("old/bin.index"), b"x").unwrap();
        std::fs::write(base.path().join("secret.000001"), b"x").unwrap();
        std::os::unix::fs::symlink(base.path().join("secret.000001"), root.join("old/bin.000002")).unwrap();
        std::os::unix::fs::symlink(base.path(), root.join("up")).unwrap();

        assert!(matches!(offers(None, "old"), Err(SourceError::Off)));
        // A folder: its binlog files, not the index, not the symlink leading out.
        let got = offers(Some(&root), "old").unwrap();
        assert_eq!(got.iter().map(|o| o.shown.as_str()).collect::<Vec<_>>(), vec!["old/bin.000001"]);
        let abs = root.join("old/bin.000001");
        assert_eq!(offers(Some(&root), abs.to_str().unwrap()).unwrap().len(), 1);
        for bad in
            ["../secret.000001", "old/../../secret.000001", "up/secret.000001", "old/bin.000002", "/etc/passwd", ""]
        {
            match offers(Some(&root), bad) {
                Err(SourceError::Outside(_)) => {}
                other => panic!("{bad}: {:?}", other.map(|o| o.len())),
            }
        }
        // Errors never carry the server's paths.
        let e = offers(Some(&root), "missing.000001").unwrap_err().to_string();
        assert!(!e.contains(base.path().to_str().unwrap()), "{e}");
    }
}
