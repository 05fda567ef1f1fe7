//! Retention: which sealed files may leave the local disk and the bucket, decided in one pure
//! function (`plan`) and carried out by `sweep`.
//!
//! The rule (the only place it lives): a local copy goes when it was sealed longer ago than the
//! task's local retention AND (upload is off OR the file is UPLOADED and verified). A bucket
//! copy goes when it was sealed longer ago than the bucket retention. The checkpoint's file is
//! never touched, nor is an OPEN file, nor a file that was never sealed. Catalog rows stay (with
//! `local_deleted_at` / `remote_deleted_at` set) so the history stays readable.

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use slog::{Logger, info, warn};

use crate::clock::SharedClock;
use crate::domain::TaskId;
use crate::meta::{Checkpoint, FileRecord, FileState, Store, UploadState};
use crate::upload::ObjectStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub local_days: u32,
    pub bucket_days: u32,
    pub upload_enabled: bool,
}

/// What a sweep will delete.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub delete_local: Vec<FileRecord>,
    pub delete_remote: Vec<FileRecord>,
    /// Local copies past retention kept because they are not uploaded and verified yet.
    pub held_for_upload: usize,
}

fn is_checkpoint_file(f: &FileRecord, cp: Option<&Checkpoint>) -> bool {
    cp.is_some_and(|cp| cp.source_identity == f.source_identity && cp.file == f.file_name)
}

/// Decides what may be deleted at `now`.
pub fn plan(files: &[FileRecord], cp: Option<&Checkpoint>, policy: Policy, now: DateTime<Utc>) -> Plan {
    let mut out = Plan::default();
    let local_cutoff = now - Duration::days(i64::from(policy.local_days));
    let bucket_cutoff = now - Duration::days(i64::from(policy.bucket_days));
    for f in files {
        let Some(sealed_at) = f.sealed_at else { continue };
        if f.state != FileState::Sealed || is_checkpoint_file(f, cp) {
            continue;
        }
        if f.upload.local_deleted_at.is_none() && sealed_at <= local_cutoff {
            let uploaded = f.upload.state == UploadState::Uploaded && f.upload.verified;
            if !policy.upload_enabled || uploaded {
                out.delete_local.push(f.clone());
            } else {
                out.held_for_upload += 1;
            }
        }
        if policy.upload_enabled
            && f.upload.state == UploadState::Uploaded
            && f.upload.object_key.is_some()
            && f.upload.remote_deleted_at.is_none()
            && sealed_at <= bucket_cutoff
        {
            out.delete_remote.push(f.clone());
        }
    }
    out
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub deleted_local: Vec<String>,
    pub deleted_remote: Vec<String>,
    pub held_for_upload: usize,
    pub errors: Vec<String>,
}

/// Applies the task's retention once. `objects` is the bucket when upload is enabled.
pub async fn sweep(
    store: &Store,
    objects: Option<&ObjectStore>,
    task_id: TaskId,
    data_dir: &Path,
    clock: &SharedClock,
    log: &Logger,
) -> Result<Report, String> {
    let (task, files, cp) = store
        .call(move |s| {
            let task = s.get_task(task_id)?;
            let files = s.list_files(task_id)?;
            let cp = s.get_checkpoint(task_id)?.map(|(c, _)| c);
            Ok((task, files, cp))
        })
        .await
        .map_err(|e| format!("cannot read the catalog: {e}"))?;
    let policy = Policy {
        local_days: task.spec.retention_days,
        bucket_days: task.spec.bucket_retention_days,
        upload_enabled: objects.is_some(),
    };
    let now = clock.now();
    let p = plan(&files, cp.as_ref(), policy, now);
    let mut report = Report { held_for_upload: p.held_for_upload, ..Report::default() };

    for f in p.delete_local {
        let path = f.local_path(data_dir);
        let removed = tokio::task::spawn_blocking({
            let path = path.clone();
            move || match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        if let Err(e) = removed {
            report.errors.push(format!("cannot delete {}: {e}", path.display()));
            continue;
        }
        let (identity, name) = (f.source_identity.clone(), f.file_name.to_string());
        let n = name.clone();
        match store.call(move |s| s.mark_local_deleted(task_id, &identity, &n, now)).await {
            Ok(()) => {
                info!(log, "retention deleted a local file"; "file" => &name, "sealed_at" => %f.sealed_at.unwrap_or(now));
                report.deleted_local.push(name);
            }
            Err(e) => report.errors.push(format!("{name}: deleted but not recorded: {e}")),
        }
    }

    if let Some(objects) = objects {
        for f in p.delete_remote {
            let Some(key) = f.upload.object_key.clone() else { continue };
            if let Err(e) = objects.delete(&key).await {
                report.errors.push(format!("cannot delete object {key}: {e}"));
                continue;
            }
            let (identity, name) = (f.source_identity.clone(), f.file_name.to_string());
            let n = name.clone();
            match store.call(move |s| s.mark_remote_deleted(task_id, &identity, &n, now)).await {
                Ok(()) => {
                    info!(log, "retention deleted an object"; "key" => &key);
                    report.deleted_remote.push(name);
                }
                Err(e) => report.errors.push(format!("{key}: deleted but not recorded: {e}")),
            }
        }
    }
    for e in &report.errors {
        warn!(log, "retention"; "error" => e);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;
    use crate::meta::UploadInfo;

    fn t(days_ago: i64) -> DateTime<Utc> {
        now() - Duration::days(days_ago)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-24T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn file(n: u32, sealed_days_ago: Option<i64>, upload: UploadState, verified: bool) -> FileRecord {
        FileRecord {
            task_id: 1,
            source_identity: "src".into(),
            file_name: BinlogFileName::parse(&format!("mysql-bin.{n:06}")).unwrap(),
            state: if sealed_days_ago.is_some() { FileState::Sealed } else { FileState::Open },
            start_pos: 4,
            header_len: 4,
            end_pos: sealed_days_ago.map(|_| 1000),
            size: 1000,
            sha256: Some("x".into()),
            created_at: t(100),
            sealed_at: sealed_days_ago.map(t),
            upload: UploadInfo {
                state: upload,
                verified,
                object_key: (upload == UploadState::Uploaded).then(|| format!("k/{n}")),
                ..UploadInfo::default()
            },
            summary: Default::default(),
        }
    }

    fn names(v: &[FileRecord]) -> Vec<u32> {
        v.iter().map(|f| f.file_name.as_str()[10..].parse().unwrap()).collect()
    }

    fn cp(n: u32) -> Checkpoint {
        Checkpoint {
            source_identity: "src".into(),
            file: BinlogFileName::parse(&format!("mysql-bin.{n:06}")).unwrap(),
            pos: 500,
            gtid_set: None,
        }
    }

    #[test]
    fn with_upload_only_verified_uploads_past_local_retention_go() {
        let files = vec![
            file(1, Some(40), UploadState::Uploaded, true), // old, uploaded, verified: local + remote
            file(2, Some(20), UploadState::Uploaded, true), // old enough locally, not for the bucket
            file(3, Some(20), UploadState::Uploaded, false), // not verified: kept
            file(4, Some(20), UploadState::UploadFailed, false), // not uploaded: kept
            file(5, Some(20), UploadState::LocalOnly, false), // not uploaded: kept
            file(6, Some(2), UploadState::Uploaded, true),  // too young
            file(7, None, UploadState::LocalOnly, false),   // open
        ];
        let p = plan(&files, Some(&cp(7)), Policy { local_days: 7, bucket_days: 30, upload_enabled: true }, now());
        assert_eq!(names(&p.delete_local), vec![1, 2]);
        assert_eq!(names(&p.delete_remote), vec![1]);
        assert_eq!(p.held_for_upload, 3);
    }

    #[test]
    fn without_upload_age_alone_decides_and_the_bucket_is_left_alone() {
        let files = vec![
            file(1, Some(40), UploadState::LocalOnly, false),
            file(2, Some(3), UploadState::LocalOnly, false),
            file(3, None, UploadState::LocalOnly, false),
        ];
        let p = plan(&files, Some(&cp(3)), Policy { local_days: 7, bucket_days: 30, upload_enabled: false }, now());
        assert_eq!(names(&p.delete_local), vec![1]);
        assert!(p.delete_remote.is_empty());
    }

    #[test]
    fn the_checkpoint_file_is_never_deleted_even_when_sealed_and_old() {
        // A checkpoint at the end of a sealed file (the next file not yet created).
        let files =
            vec![file(1, Some(40), UploadState::Uploaded, true), file(2, Some(40), UploadState::Uploaded, true)];
        let p = plan(&files, Some(&cp(2)), Policy { local_days: 1, bucket_days: 1, upload_enabled: true }, now());
        assert_eq!(names(&p.delete_local), vec![1]);
        assert_eq!(names(&p.delete_remote), vec![1]);
    }

    #[test]
    fn exactly_at_the_cutoff_counts_as_old_and_deleted_copies_are_not_planned_again() {
        let mut f = file(1, Some(7), UploadState::Uploaded, true);
        let p = plan(&[f.clone()], None, Policy { local_days: 7, bucket_days: 7, upload_enabled: true }, now());
        assert_eq!((p.delete_local.len(), p.delete_remote.len()), (1, 1));
        f.upload.local_deleted_at = Some(now());
        f.upload.remote_deleted_at = Some(now());
        let p = plan(&[f], None, Policy { local_days: 7, bucket_days: 7, upload_enabled: true }, now());
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn another_sources_file_with_the_checkpoints_name_is_not_protected_by_it() {
        let mut old = file(2, Some(40), UploadState::LocalOnly, false);
        old.source_identity = "old-src".into();
        let p = plan(&[old], Some(&cp(2)), Policy { local_days: 7, bucket_days: 30, upload_enabled: false }, now());
        assert_eq!(names(&p.delete_local), vec![2]);
    }
}
