//! `binlog-server doctor --repair`: what can be put right after a diagnosis, and doing it.
//!
//! [`plan`] decides, per finding, from the finding and the catalog's row (pure, table-tested);
//! [`Repairer::run`] only carries a decision out and says how it went. Nothing is ever deleted:
//! whatever is moved away goes to `{data_dir}/.stale/doctor-{utc time}/{task}/{file}`. A file is
//! restored only from a bucket copy the catalog calls verified, and only after the downloaded
//! bytes have the catalog's size and sha256. The caller holds the data directory's lock
//! exclusively (`crate::data_lock`): no server runs while this changes its files.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CatalogFile, Finding, OpenTail, Problem, TaskFacts};
use crate::domain::TaskId;
use crate::layout::DataLayout;
use crate::upload::ObjectStore;

/// What `--repair` does about one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Move the file or directory into the stale folder.
    SetAside,
    /// Fetch the bucket's verified copy; a copy on disk goes to the stale folder first.
    Restore { object_key: String, size: u64, sha256: String },
    /// Not repairable here: why, and what the operator can do.
    NotPossible { why: String, next_step: String },
}

/// The decision for one finding, given the catalog's row for its file (none for an orphan) and
/// whether this run can reach the bucket.
pub fn plan(finding: &Finding, row: Option<&CatalogFile>, bucket_configured: bool) -> Action {
    match &finding.problem {
        Problem::Orphan { .. } | Problem::OrphanTaskDirectory => Action::SetAside,
        Problem::SealedFileMissing | Problem::SizeMismatch { .. } | Problem::Sha256Mismatch { .. } => {
            restore(row, bucket_configured)
        }
        Problem::NotARegularFile => Action::NotPossible {
            why: "something other than a regular file (a directory or a symbolic link) is where the catalog's \
                  file belongs; doctor does not guess what it is"
                .into(),
            next_step: "look at it and move it out of the data directory by hand, then run `doctor --repair` again \
                        (the file is then restored from the bucket if it holds a verified copy)"
                .into(),
        },
        Problem::OpenFileMissing | Problem::OpenFileShort { .. } => Action::NotPossible {
            why: "bytes the server had fsynced and checkpointed are gone (the storage lost them), and the bucket \
                  holds sealed files only; the server refuses to resume this task"
                .into(),
            next_step: "find out what rolled the storage back; then restore the data directory and the metadata \
                        database together from one backup, or delete the task and create it again to fetch the \
                        binlog from the source (which must still hold it)"
                .into(),
        },
    }
}

fn restore(row: Option<&CatalogFile>, bucket_configured: bool) -> Action {
    let refetch = |file: &str| {
        format!(
            "if the source still holds {file}, fetch it (`mariadb-binlog --read-from-remote-server --raw`), check \
             that its sha256 is the catalog's, put it in place with the server stopped and run `doctor` again; \
             otherwise the archive has a hole at this file"
        )
    };
    let Some(row) = row else {
        return Action::NotPossible {
            why: "the catalog has no row for this file".into(),
            next_step: "run `doctor` again: the catalog changed since the check".into(),
        };
    };
    match (row.in_bucket, &row.sha256, &row.object_key) {
        (true, Some(sha256), Some(key)) if bucket_configured => {
            Action::Restore { object_key: key.clone(), size: row.size, sha256: sha256.clone() }
        }
        (true, Some(_), Some(_)) => Action::NotPossible {
            why: "the bucket holds a verified copy, but upload is not configured for this run".into(),
            next_step: "run `doctor --repair` with the server's configuration (`--config`, the upload.* \
                        settings) so it can reach the bucket"
                .into(),
        },
        (true, _, _) => Action::NotPossible {
            why: "the catalog records no sha256 or no object key for the bucket copy: a download could not be \
                  checked"
                .into(),
            next_step: refetch(&row.file_name),
        },
        (false, _, _) => Action::NotPossible {
            why: "the bucket holds no verified copy of this file (not uploaded, not verified, or removed there by \
                  retention)"
                .into(),
            next_step: refetch(&row.file_name),
        },
    }
}

/// The folder this run moves things into: `{data_dir}/.stale/doctor-{utc time}` (to the
/// microsecond, so two runs never share one).
pub fn stale_dir(data_dir: &Path, now: DateTime<Utc>) -> PathBuf {
    DataLayout::new(data_dir).doctor_stale(&now.format("%Y%m%dT%H%M%S%.6fZ").to_string())
}

/// Where a finding's file goes inside the stale folder: `{task}/{file}`; an orphan task
/// directory (`N/`) becomes `N`.
pub fn stale_path(stale: &Path, finding_task: i64, file: &str) -> PathBuf {
    match file.strip_suffix('/') {
        Some(dir) => stale.join(dir),
        None => stale.join(finding_task.to_string()).join(file),
    }
}

/// Where the finding's file is: `{data_dir}/{task}/{file}`, or `{data_dir}/N` for `N/`.
pub fn live_path(data_dir: &Path, task: i64, file: &str) -> PathBuf {
    let layout = DataLayout::new(data_dir);
    match file.strip_suffix('/') {
        Some(dir) => layout.entry(dir),
        None => layout.task_path(TaskId(task), file),
    }
}

/// How one step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Done {
        detail: String,
    },
    /// Nothing for the doctor to do: the server deals with it when it resumes.
    LeftToServer {
        detail: String,
    },
    NotRepaired {
        why: String,
        next_step: String,
    },
}

/// One line of the repair report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub task_id: i64,
    pub file: String,
    /// What was found (none for an open file's tail, which is no problem).
    #[serde(flatten)]
    pub problem: Option<Problem>,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} file {}: ", self.task_id, self.file)?;
        if let Some(p) = &self.problem {
            write!(f, "{p}: ")?;
        }
        match &self.outcome {
            Outcome::Done { detail } => write!(f, "REPAIRED: {detail}"),
            Outcome::LeftToServer { detail } => write!(f, "left to the server: {detail}"),
            Outcome::NotRepaired { why, next_step } => write!(f, "NOT REPAIRED: {why}; next: {next_step}"),
        }
    }
}

/// An open file's bytes past its durable length: the server cuts them when it resumes.
pub fn tail_step(t: &OpenTail) -> Step {
    Step {
        task_id: t.task_id,
        file: t.file.clone(),
        problem: None,
        outcome: Outcome::LeftToServer {
            detail: format!(
                "{} bytes past the checkpoint (durable length {}, disk {}); the server truncates them when it \
                 resumes the task",
                t.disk - t.durable_len,
                t.durable_len,
                t.disk
            ),
        },
    }
}

/// Carries out the plans of one run. `bucket` is the object store with a runtime to drive it,
/// when upload is configured.
pub struct Repairer<'a> {
    pub data_dir: &'a Path,
    pub stale: PathBuf,
    pub bucket: Option<(&'a ObjectStore, &'a tokio::runtime::Runtime)>,
}

impl Repairer<'_> {
    /// Plans and carries out the repair of every finding of one task (`facts` = None for an
    /// orphan task directory's finding).
    pub fn run(&self, facts: Option<&TaskFacts>, finding: &Finding) -> Step {
        let row = facts.and_then(|t| t.catalog.iter().find(|c| c.rel_path == finding.file));
        let outcome = match plan(finding, row, self.bucket.is_some()) {
            Action::SetAside => match self.set_aside(finding.task_id, &finding.file) {
                Ok(to) => Outcome::Done { detail: format!("moved to {}", to.display()) },
                Err(e) => Outcome::NotRepaired {
                    why: format!("cannot move it aside: {e}"),
                    next_step: "fix the cause (permissions, space) and run `doctor --repair` again".into(),
                },
            },
            Action::Restore { object_key, size, sha256 } => match self.restore(finding, &object_key, size, &sha256) {
                Ok(detail) => Outcome::Done { detail },
                Err(why) => Outcome::NotRepaired {
                    why,
                    next_step: "fix the cause (bucket reachable, credentials, space) and run `doctor --repair` \
                                again; the file on disk was left as it was"
                        .into(),
                },
            },
            Action::NotPossible { why, next_step } => Outcome::NotRepaired { why, next_step },
        };
        Step { task_id: finding.task_id, file: finding.file.clone(), problem: Some(finding.problem.clone()), outcome }
    }

    /// Moves a file or directory into the stale folder (same file system: a rename), and makes
    /// both directories' entries durable.
    fn set_aside(&self, task: i64, file: &str) -> std::io::Result<PathBuf> {
        let from = live_path(self.data_dir, task, file);
        let to = stale_path(&self.stale, task, file);
        let parent = to.parent().expect("a stale path always has a parent: the stale folder");
        std::fs::create_dir_all(parent)?;
        std::fs::rename(&from, &to)?;
        sync_dir(parent)?;
        if let Some(p) = from.parent() {
            sync_dir(p)?;
        }
        Ok(to)
    }

    /// Download to a temporary name beside the file, check size and sha256 against the catalog,
    /// fsync (`download_to` does), set the bad copy aside, rename into place, fsync the folder: a
    /// crash at any point leaves either the old state or the restored file, never a half one
    /// under the file's name.
    fn restore(&self, finding: &Finding, key: &str, size: u64, sha256: &str) -> Result<String, String> {
        let (objects, rt) = self.bucket.ok_or("no bucket configured")?;
        let path = live_path(self.data_dir, finding.task_id, &finding.file);
        let dir = path.parent().expect("a task file's path has a folder").to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.doctor-restore"));
        if let Err(e) = fetch_checked(objects, rt, key, &tmp, size, sha256) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let mut detail = format!("restored from the bucket object {key} ({size} bytes, sha256 verified)");
        if std::fs::symlink_metadata(&path).is_ok() {
            match self.set_aside(finding.task_id, &finding.file) {
                Ok(to) => detail.push_str(&format!("; the bad copy moved to {}", to.display())),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("cannot move the bad copy aside: {e}"));
                }
            }
        }
        std::fs::rename(&tmp, &path).map_err(|e| format!("cannot rename {} into place: {e}", tmp.display()))?;
        sync_dir(&dir).map_err(|e| format!("cannot fsync {}: {e}", dir.display()))?;
        Ok(detail)
    }
}

/// Downloads `key` to `tmp` (fsynced) and checks it has the catalog's size and sha256.
fn fetch_checked(
    objects: &ObjectStore,
    rt: &tokio::runtime::Runtime,
    key: &str,
    tmp: &Path,
    size: u64,
    sha256: &str,
) -> Result<(), String> {
    let got = rt.block_on(objects.download_to(key, tmp)).map_err(|e| format!("download of {key}: {e}"))?;
    let got_sha = super::sha256_of(tmp).map_err(|e| e.to_string())?;
    if got != size || !got_sha.eq_ignore_ascii_case(sha256) {
        return Err(format!(
            "the bucket object {key} ({got} bytes, sha256 {got_sha}) is not the catalog's ({size} bytes, sha256 \
             {sha256})"
        ));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::FileState;

    fn row(in_bucket: bool, sha: Option<&str>, key: Option<&str>) -> CatalogFile {
        CatalogFile {
            rel_path: "src-1/bin.000001".into(),
            source_identity: "src-1".into(),
            file_name: "bin.000001".into(),
            state: FileState::Sealed,
            size: 100,
            sha256: sha.map(str::to_string),
            local_deleted: false,
            start_pos: 4,
            header_len: 4,
            in_bucket,
            object_key: key.map(str::to_string),
        }
    }

    fn finding(problem: Problem) -> Finding {
        Finding { task_id: 1, file: "src-1/bin.000001".into(), problem }
    }

    /// What a case expects: this action, or a refusal whose reason says this.
    enum Want {
        Is(Action),
        NotPossible(&'static str),
    }

    #[test]
    fn plan_table() {
        let verified = row(true, Some("aa"), Some("k/src-1/bin.000001"));
        let restore = Action::Restore { object_key: "k/src-1/bin.000001".into(), size: 100, sha256: "aa".into() };
        let sha_bad = Problem::Sha256Mismatch { catalog: "aa".into(), disk: "ab".into() };
        let short = Problem::OpenFileShort { checkpoint_offset: 40, disk: 39 };
        type Case<'a> = (&'a str, Problem, Option<CatalogFile>, bool, Want);
        let cases: Vec<Case> = vec![
            ("an orphan file is set aside", Problem::Orphan { size: 3 }, None, false, Want::Is(Action::SetAside)),
            ("an orphan task directory too", Problem::OrphanTaskDirectory, None, true, Want::Is(Action::SetAside)),
            (
                "a flipped byte, verified copy: restored",
                sha_bad.clone(),
                Some(verified.clone()),
                true,
                Want::Is(restore.clone()),
            ),
            (
                "a missing sealed file: restored",
                Problem::SealedFileMissing,
                Some(verified.clone()),
                true,
                Want::Is(restore.clone()),
            ),
            (
                "a wrong size: restored",
                Problem::SizeMismatch { catalog: 100, disk: 7 },
                Some(verified.clone()),
                true,
                Want::Is(restore.clone()),
            ),
            (
                "verified copy but no bucket configured",
                sha_bad.clone(),
                Some(verified.clone()),
                false,
                Want::NotPossible("upload is not configured"),
            ),
            (
                "not in the bucket",
                sha_bad.clone(),
                Some(row(false, Some("aa"), Some("k"))),
                true,
                Want::NotPossible("no verified copy"),
            ),
            (
                "in the bucket but no sha256 to check a download against",
                Problem::SealedFileMissing,
                Some(row(true, None, Some("k"))),
                true,
                Want::NotPossible("no sha256"),
            ),
            ("no catalog row", Problem::SealedFileMissing, None, true, Want::NotPossible("no row")),
            (
                "not a regular file: by hand",
                Problem::NotARegularFile,
                Some(verified.clone()),
                true,
                Want::NotPossible("not guess"),
            ),
            ("open file short: lost durable bytes", short, None, true, Want::NotPossible("fsynced")),
            (
                "open file missing: lost durable bytes",
                Problem::OpenFileMissing,
                None,
                true,
                Want::NotPossible("fsynced"),
            ),
        ];
        for (what, problem, row, bucket, want) in cases {
            let got = plan(&finding(problem), row.as_ref(), bucket);
            match (&want, &got) {
                (Want::Is(a), got) => assert_eq!(got, a, "{what}"),
                (Want::NotPossible(needle), Action::NotPossible { why, next_step }) => {
                    assert!(why.contains(needle), "{what}: {why}");
                    assert!(!next_step.is_empty(), "{what}: every refusal says what to do");
                }
                (Want::NotPossible(_), got) => panic!("{what}: {got:?}"),
            }
        }
    }

    #[test]
    fn paths_table() {
        let data = Path::new("/d");
        let now = DateTime::parse_from_rfc3339("2026-12-04T17:30:00.123456Z").unwrap().with_timezone(&Utc);
        let stale = stale_dir(data, now);
        assert_eq!(stale, Path::new("/d/.stale/doctor-20261204T173000.123456Z"));
        let cases = [
            (
                "a file of a task",
                3,
                "src-1/x.bin",
                "/d/3/src-1/x.bin",
                "/d/.stale/doctor-20261204T173000.123456Z/3/src-1/x.bin",
            ),
            ("an orphan task directory", 9, "9/", "/d/9", "/d/.stale/doctor-20261204T173000.123456Z/9"),
        ];
        for (what, task, file, live, aside) in cases {
            assert_eq!(live_path(data, task, file), Path::new(live), "{what}");
            assert_eq!(stale_path(&stale, task, file), Path::new(aside), "{what}");
        }
    }

    #[test]
    fn set_aside_moves_and_never_deletes() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        std::fs::create_dir_all(data.join("1/src-1")).unwrap();
        std::fs::write(data.join("1/src-1/stray"), b"keep me").unwrap();
        std::fs::create_dir_all(data.join("9/src-1")).unwrap();
        std::fs::write(data.join("9/src-1/bin.000001"), b"old").unwrap();
        let r = Repairer { data_dir: data, stale: stale_dir(data, Utc::now()), bucket: None };
        let orphan = Finding { task_id: 1, file: "src-1/stray".into(), problem: Problem::Orphan { size: 7 } };
        let step = r.run(None, &orphan);
        assert!(matches!(step.outcome, Outcome::Done { .. }), "{step}");
        assert!(!data.join("1/src-1/stray").exists());
        assert_eq!(std::fs::read(r.stale.join("1/src-1/stray")).unwrap(), b"keep me");
        let dir = Finding { task_id: 9, file: "9/".into(), problem: Problem::OrphanTaskDirectory };
        let step = r.run(None, &dir);
        assert!(matches!(step.outcome, Outcome::Done { .. }), "{step}");
        assert_eq!(std::fs::read(r.stale.join("9/src-1/bin.000001")).unwrap(), b"old");
        let missing = Finding { task_id: 1, file: "src-1/gone".into(), problem: Problem::Orphan { size: 1 } };
        let step = r.run(None, &missing);
        assert!(matches!(&step.outcome, Outcome::NotRepaired { why, .. } if why.contains("cannot move")), "{step}");
    }
}
