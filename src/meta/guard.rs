//! The SQLite metadata file, watched. At start, a data directory whose catalog is gone (while
//! task directories remain) or is not a SQLite database is refused: starting on an empty catalog
//! would lose track of every binlog file already held. While running, the file the store opened
//! must stay the file at its path: deleted, replaced or overwritten, the server says so, naming
//! the file and the way back, and stops in order.
//!
//! [`judge_at_start`] and [`judge_running`] are the decisions (pure); [`look`] (at start),
//! [`HeldFile::look`] (while running: never an open and close, see there) and [`task_dirs`]
//! gather the facts. Nothing here repairs, creates or removes a file, and no binlog file is ever
//! touched.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first 16 bytes of every SQLite 3 database.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How often a running server looks at its metadata file.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A file's identity on its filesystem: what the store opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// What is at the metadata path now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Missing,
    /// `header_ok`: the first bytes are SQLite's, or the file is empty (SQLite has not written
    /// its first page yet).
    File {
        id: FileId,
        header_ok: bool,
    },
    /// At start only ([`look`]): a file with no bytes, and no write-ahead log beside it that
    /// holds any (SQLite in WAL mode leaves the database file empty until its first WAL
    /// checkpoint, the commits in `-wal`): a database that never had a commit.
    Empty {
        id: FileId,
    },
    Unreadable(String),
}

/// What is wrong with the metadata file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFault {
    /// At start: no metadata file, but task directories with binlog files.
    MissingWithTasks {
        task_dirs: Vec<String>,
    },
    /// At start: a metadata file that never had a commit (lost to a power cut before its first
    /// one was synced, say), but task directories with binlog files.
    EmptyWithTasks {
        task_dirs: Vec<String>,
    },
    /// Once open: a catalog that knows no task (a database that lost its commits, or another
    /// one), but task directories with binlog files.
    NoTaskWithTasks {
        task_dirs: Vec<String>,
    },
    /// While running: the file the store opened is no longer at its path.
    Deleted,
    /// While running: another file is at the path now.
    Replaced,
    /// The file does not start like a SQLite database.
    NotSqlite,
    Unreadable(String),
}

/// The decision at start: whether the server may open (or create) the metadata file.
pub fn judge_at_start(seen: &Seen, task_dirs: &[String]) -> Result<(), MetaFault> {
    match seen {
        Seen::Missing if task_dirs.is_empty() => Ok(()),
        Seen::Missing => Err(MetaFault::MissingWithTasks { task_dirs: task_dirs.to_vec() }),
        Seen::Empty { .. } if task_dirs.is_empty() => Ok(()),
        Seen::Empty { .. } => Err(MetaFault::EmptyWithTasks { task_dirs: task_dirs.to_vec() }),
        Seen::File { header_ok: true, .. } => Ok(()),
        Seen::File { header_ok: false, .. } => Err(MetaFault::NotSqlite),
        Seen::Unreadable(e) => Err(MetaFault::Unreadable(e.clone())),
    }
}

/// The decision once the catalog is open: a catalog that knows no task may not run beside task
/// directories. (One that knows some tasks and not a directory's is left to `doctor`: a power cut
/// between a delete's commit and its folder's move leaves such a folder.)
pub fn judge_catalog(tasks_known: i64, task_dirs: &[String]) -> Result<(), MetaFault> {
    if tasks_known == 0 && !task_dirs.is_empty() {
        return Err(MetaFault::NoTaskWithTasks { task_dirs: task_dirs.to_vec() });
    }
    Ok(())
}

/// The decision while running: whether the file at the path is still the one the store opened,
/// and still a SQLite database.
pub fn judge_running(opened: FileId, seen: &Seen) -> Result<(), MetaFault> {
    match seen {
        Seen::Missing => Err(MetaFault::Deleted),
        Seen::File { id, .. } | Seen::Empty { id } if *id != opened => Err(MetaFault::Replaced),
        Seen::Empty { .. } => Ok(()),
        Seen::File { header_ok: false, .. } => Err(MetaFault::NotSqlite),
        Seen::File { .. } => Ok(()),
        Seen::Unreadable(e) => Err(MetaFault::Unreadable(e.clone())),
    }
}

/// A fault with the paths it concerns: the message an operator reads, with the way back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaFileError {
    pub path: PathBuf,
    pub data_dir: PathBuf,
    pub fault: MetaFault,
}

impl fmt::Display for MetaFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.fault {
            MetaFault::MissingWithTasks { task_dirs } => write!(
                f,
                "the metadata database {path} does not exist, but {} holds task directories ({}): starting would \
                 create an empty catalog that knows none of their binlog files, so binlog-server refuses to start",
                self.data_dir.display(),
                task_dirs.join(", ")
            )?,
            MetaFault::EmptyWithTasks { task_dirs } => write!(
                f,
                "the metadata database {path} is empty (never a commit, no write-ahead log: lost before its first \
                 commit reached the disk, or emptied), but {} holds task directories ({}): starting would create an \
                 empty catalog that knows none of their binlog files, so binlog-server refuses to start",
                self.data_dir.display(),
                task_dirs.join(", ")
            )?,
            MetaFault::NoTaskWithTasks { task_dirs } => write!(
                f,
                "the metadata database {path} knows no task, but {} holds task directories ({}): a catalog that \
                 lost its commits (as a power cut could with binlog-server before 2026-12-07) or another database; \
                 running would forget their binlog files, so binlog-server refuses to start",
                self.data_dir.display(),
                task_dirs.join(", ")
            )?,
            MetaFault::Deleted => {
                write!(f, "the metadata database {path} was deleted while binlog-server was running; stopping")?
            }
            MetaFault::Replaced => write!(
                f,
                "the metadata database {path} was replaced by another file while binlog-server was running; stopping"
            )?,
            MetaFault::NotSqlite => write!(f, "the metadata database {path} is corrupt: it is not a SQLite database")?,
            MetaFault::Unreadable(e) => write!(f, "cannot read the metadata database {path}: {e}")?,
        }
        write!(f, ". {}", recovery_steps(&self.path, &self.data_dir))
    }
}

impl std::error::Error for MetaFileError {}

/// What an operator does next, whatever happened to the metadata file.
pub fn recovery_steps(path: &Path, data_dir: &Path) -> String {
    let (path, data_dir) = (path.display(), data_dir.display());
    format!(
        "The binlog files under {data_dir} were not touched. To recover: with binlog-server stopped, remove \
         {path}-wal and {path}-shm (they belong to the lost database), restore {path} from a backup, run \
         `binlog-server doctor` to check it against the files on disk, and start again: tasks resume from the \
         restored checkpoints and fetch what is missing from their sources. Without a backup: move the task \
         directories out of {data_dir} (they hold complete binlog files), remove {path} and its -wal and -shm \
         files, and start afresh"
    )
}

/// Looks at the metadata path: present or not, its identity, its first 16 bytes. Opens and
/// closes the file: only before this process has a SQLite connection to it (see [`HeldFile`]).
pub fn look(path: &Path) -> Seen {
    let id = match identity(path) {
        Ok(id) => id,
        Err(seen) => return seen,
    };
    let seen = match std::fs::File::open(path) {
        Ok(file) => header_of(&file, id),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Seen::Missing,
        Err(e) => return Seen::Unreadable(e.to_string()),
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let holds_nothing = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => m.len() == 0,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    match seen {
        Seen::File { id, header_ok: true } if holds_nothing(path) && holds_nothing(Path::new(&wal)) => {
            Seen::Empty { id }
        }
        seen => seen,
    }
}

/// The identity of the regular file at `path`, by `stat`; otherwise what is seen there.
fn identity(path: &Path) -> Result<FileId, Seen> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Seen::Missing),
        Err(e) => return Err(Seen::Unreadable(e.to_string())),
    };
    let id = FileId { dev: meta.dev(), ino: meta.ino() };
    if meta.is_file() { Ok(id) } else { Err(Seen::File { id, header_ok: false }) }
}

/// `file` seen as `id`: whether its first bytes are SQLite's (or it is still empty).
fn header_of(file: &std::fs::File, id: FileId) -> Seen {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; SQLITE_MAGIC.len()];
    let mut got = 0;
    while got < head.len() {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Seen::Unreadable(e.to_string()),
        }
    }
    Seen::File { id, header_ok: got == 0 || head == *SQLITE_MAGIC }
}

/// The metadata file as a running server looks at it: through a descriptor opened once and
/// never closed. A server must not open and close its SQLite file beside SQLite: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, SQLite's included, and
/// another process opening the database (the sqlite3 shell, a backup, `doctor`) then believes it
/// is alone, checkpoints and deletes the WAL, and every later commit of ours goes to a deleted
/// file: lost at the next start. (A first version of this watch did that every 2 s;
/// `api::put_keeps_the_stored_password_unless_given_a_new_one`, which reads the file with the
/// sqlite3 shell, saw the server's writes vanish.)
#[derive(Debug, Clone, Copy)]
pub struct HeldFile {
    file: &'static std::fs::File,
    id: FileId,
}

impl HeldFile {
    /// Opens `path` for the life of the process: the descriptor is leaked on purpose, so that
    /// it is closed only when the process exits.
    pub fn open(path: &Path) -> std::io::Result<HeldFile> {
        let file = std::fs::File::open(path)?;
        let m = file.metadata()?;
        let id = FileId { dev: m.dev(), ino: m.ino() };
        Ok(HeldFile { file: Box::leak(Box::new(file)), id })
    }

    /// The identity of the file the store opened.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// What is at `path` now: its identity by `stat` (never an open), and the first bytes of the
    /// held file (a replaced file is told by its identity).
    pub fn look(&self, path: &Path) -> Seen {
        match identity(path) {
            Ok(id) => header_of(self.file, id),
            Err(seen) => seen,
        }
    }
}

/// The task directories under `data_dir` (directories named by a task id), sorted by id.
pub fn task_dirs(data_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return Vec::new() };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()))
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(|id| id.to_string()).collect()
}

/// The start-up check of a SQLite metadata file.
pub fn check_at_start(path: &Path, data_dir: &Path) -> Result<(), MetaFileError> {
    judge_at_start(&look(path), &task_dirs(data_dir)).map_err(|fault| MetaFileError {
        path: path.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        fault,
    })
}

/// The check once a SQLite catalog is open: it must know a task when task directories exist.
pub fn check_catalog(path: &Path, data_dir: &Path, tasks_known: i64) -> Result<(), MetaFileError> {
    judge_catalog(tasks_known, &task_dirs(data_dir)).map_err(|fault| MetaFileError {
        path: path.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        fault,
    })
}

/// Whether a SQLite error text means a damaged database file (SQLITE_CORRUPT, SQLITE_NOTADB).
pub fn is_corruption(message: &str) -> bool {
    message.contains("database disk image is malformed") || message.contains("file is not a database")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: FileId = FileId { dev: 1, ino: 10 };
    const B: FileId = FileId { dev: 1, ino: 11 };

    #[test]
    fn at_start_a_missing_catalog_is_refused_only_beside_task_directories() {
        let dirs = vec!["1".to_string(), "7".to_string()];
        let cases: [(Seen, &[String], Result<(), MetaFault>); 8] = [
            (Seen::Missing, &[], Ok(())),
            (Seen::Missing, &dirs, Err(MetaFault::MissingWithTasks { task_dirs: dirs.clone() })),
            (Seen::Empty { id: A }, &[], Ok(())),
            (Seen::Empty { id: A }, &dirs, Err(MetaFault::EmptyWithTasks { task_dirs: dirs.clone() })),
            (Seen::File { id: A, header_ok: true }, &dirs, Ok(())),
            (Seen::File { id: A, header_ok: false }, &[], Err(MetaFault::NotSqlite)),
            (Seen::File { id: A, header_ok: false }, &dirs, Err(MetaFault::NotSqlite)),
            (Seen::Unreadable("EACCES".into()), &[], Err(MetaFault::Unreadable("EACCES".into()))),
        ];
        for (seen, dirs, want) in cases {
            assert_eq!(judge_at_start(&seen, dirs), want, "{seen:?} beside {dirs:?}");
        }
    }

    #[test]
    fn an_open_catalog_that_knows_no_task_is_refused_only_beside_task_directories() {
        let dirs = vec!["1".to_string(), "7".to_string()];
        let cases: [(i64, &[String], Result<(), MetaFault>); 4] = [
            (0, &[], Ok(())),
            (0, &dirs, Err(MetaFault::NoTaskWithTasks { task_dirs: dirs.clone() })),
            (1, &dirs, Ok(())),
            (3, &[], Ok(())),
        ];
        for (known, dirs, want) in cases {
            assert_eq!(judge_catalog(known, dirs), want, "{known} tasks beside {dirs:?}");
        }
    }

    #[test]
    fn while_running_the_opened_file_must_stay_at_its_path() {
        let cases = [
            (Seen::File { id: A, header_ok: true }, Ok(())),
            (Seen::Empty { id: A }, Ok(())),
            (Seen::Empty { id: B }, Err(MetaFault::Replaced)),
            (Seen::Missing, Err(MetaFault::Deleted)),
            (Seen::File { id: B, header_ok: true }, Err(MetaFault::Replaced)),
            (Seen::File { id: B, header_ok: false }, Err(MetaFault::Replaced)),
            (Seen::File { id: A, header_ok: false }, Err(MetaFault::NotSqlite)),
            (Seen::Unreadable("EIO".into()), Err(MetaFault::Unreadable("EIO".into()))),
        ];
        for (seen, want) in cases {
            assert_eq!(judge_running(A, &seen), want, "{seen:?}");
        }
    }

    #[test]
    fn every_message_names_the_file_and_the_way_back() {
        let faults = [
            MetaFault::MissingWithTasks { task_dirs: vec!["3".into()] },
            MetaFault::EmptyWithTasks { task_dirs: vec!["3".into()] },
            MetaFault::NoTaskWithTasks { task_dirs: vec!["3".into()] },
            MetaFault::Deleted,
            MetaFault::Replaced,
            MetaFault::NotSqlite,
            MetaFault::Unreadable("Permission denied".into()),
        ];
        for fault in faults {
            let e = MetaFileError { path: "/srv/meta.db".into(), data_dir: "/srv".into(), fault: fault.clone() };
            let text = e.to_string();
            assert!(
                text.starts_with("the metadata database /srv/meta.db ")
                    || text.contains("read the metadata database /srv/meta.db"),
                "{text}"
            );
            for step in [
                "were not touched",
                "restore /srv/meta.db from a backup",
                "binlog-server doctor",
                "move the task directories",
            ] {
                assert!(text.contains(step), "{fault:?}: {text:?} lacks {step:?}");
            }
        }
    }

    #[test]
    fn look_tells_sqlite_from_garbage_and_task_dirs_are_numeric() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.db");
        assert_eq!(look(&p), Seen::Missing);
        std::fs::write(&p, b"").unwrap();
        assert!(matches!(look(&p), Seen::Empty { .. }), "an empty file, no WAL: never a commit");
        let wal = dir.path().join("meta.db-wal");
        std::fs::write(&wal, b"").unwrap();
        assert!(matches!(look(&p), Seen::Empty { .. }), "an empty file, an empty WAL: never a commit");
        std::fs::write(&wal, b"the commits of a database whose file SQLite has not written yet").unwrap();
        assert!(matches!(look(&p), Seen::File { header_ok: true, .. }), "an empty file beside a WAL: its commits");
        std::fs::remove_file(&wal).unwrap();
        let mut page = SQLITE_MAGIC.to_vec();
        page.resize(4096, 0);
        std::fs::write(&p, &page).unwrap();
        let Seen::File { id, header_ok: true } = look(&p) else { panic!("{:?}", look(&p)) };
        assert!(judge_running(id, &look(&p)).is_ok());
        std::fs::write(&p, b"garbage, not a database at all").unwrap();
        assert!(matches!(look(&p), Seen::File { header_ok: false, .. }));
        for d in ["12", "3", "not-a-task", "04x"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("5"), b"a file, not a task directory").unwrap();
        assert_eq!(task_dirs(dir.path()), ["3", "12"]);
        assert!(is_corruption("file is not a database") && !is_corruption("database is locked"));
    }

    #[test]
    fn the_held_file_sees_overwrites_deletion_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("meta.db");
        let mut page = SQLITE_MAGIC.to_vec();
        page.resize(4096, 0);
        std::fs::write(&p, &page).unwrap();
        let held = HeldFile::open(&p).unwrap();
        assert_eq!(held.look(&p), Seen::File { id: held.id(), header_ok: true });
        // Overwritten in place (same inode): the header read through the held descriptor.
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        std::io::Write::write_all(&mut f, b"garbage!garbage!").unwrap();
        drop(f);
        assert_eq!(held.look(&p), Seen::File { id: held.id(), header_ok: false });
        assert_eq!(judge_running(held.id(), &held.look(&p)), Err(MetaFault::NotSqlite));
        std::fs::remove_file(&p).unwrap();
        assert_eq!(judge_running(held.id(), &held.look(&p)), Err(MetaFault::Deleted));
        std::fs::write(&p, &page).unwrap();
        assert_eq!(judge_running(held.id(), &held.look(&p)), Err(MetaFault::Replaced));
    }
}
