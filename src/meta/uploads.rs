//! The upload queue and retention marks. The queue is the catalog itself: a sealed file with
//! its sha256 recorded is waiting for the bucket until it is UPLOADED, so the queue is bounded
//! by the disk and survives restarts; nothing in memory has to be replayed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::domain::TaskId;
use crate::meta::StoreError;
use crate::meta::models::{FileRecord, FileRow, FileState, UploadState, now_naive};
use crate::meta::schema::binlog_files;
use crate::meta::store::Store;

impl Store {
    /// The next file to upload at `now`: sealed, hashed, still on disk, and either never
    /// uploaded, failed with its retry due, or left UPLOADING by an interrupted run (the caller
    /// runs one upload at a time per task, so an UPLOADING row it did not start is stale).
    pub fn next_upload(&self, id: TaskId, now: DateTime<Utc>) -> Result<Option<FileRecord>, StoreError> {
        let mut conn = self.conn()?;
        let now = now_naive(now);
        let row: Option<FileRow> = binlog_files::table
            .filter(binlog_files::task_id.eq(id.0))
            .filter(binlog_files::state.eq(FileState::Sealed.as_str()))
            .filter(binlog_files::sha256.is_not_null())
            .filter(binlog_files::local_deleted_at.is_null())
            .filter(
                binlog_files::upload_state
                    .eq_any([UploadState::LocalOnly.as_str(), UploadState::Uploading.as_str()])
                    .or(binlog_files::upload_state
                        .eq(UploadState::UploadFailed.as_str())
                        .and(binlog_files::next_upload_at.is_null().or(binlog_files::next_upload_at.le(now)))),
            )
            .order(binlog_files::id.asc())
            .select(FileRow::as_select())
            .first(&mut *conn)
            .optional()?;
        row.map(FileRow::into_record).transpose()
    }

    /// When the earliest failed upload is due again.
    pub fn next_upload_due(&self, id: TaskId) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.conn()?;
        let at: Option<chrono::NaiveDateTime> = binlog_files::table
            .filter(binlog_files::task_id.eq(id.0))
            .filter(binlog_files::upload_state.eq(UploadState::UploadFailed.as_str()))
            .filter(binlog_files::local_deleted_at.is_null())
            .select(diesel::dsl::min(binlog_files::next_upload_at))
            .first(&mut *conn)?;
        Ok(at.map(|t| t.and_utc()))
    }

    pub fn mark_uploading(&self, id: TaskId, identity: &str, name: &str, key: &str) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name))
                .set((
                    binlog_files::upload_state.eq(UploadState::Uploading.as_str()),
                    binlog_files::object_key.eq(Some(key)),
                    binlog_files::upload_verified.eq(false),
                ))
                .execute(conn)?;
            Ok(())
        })
    }

    pub fn mark_uploaded(&self, id: TaskId, identity: &str, name: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name))
                .set((
                    binlog_files::upload_state.eq(UploadState::Uploaded.as_str()),
                    binlog_files::uploaded_at.eq(Some(now_naive(at))),
                    binlog_files::upload_verified.eq(true),
                    binlog_files::upload_error.eq(None::<String>),
                    binlog_files::next_upload_at.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)?;
            Ok(())
        })
    }

    pub fn mark_upload_failed(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        attempts: u32,
        error: &str,
        next_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            // Long S3 bodies are cut: the column is TEXT, but an operator needs the first line.
            let error: String = error.chars().take(2000).collect();
            diesel::update(one_file!(id, identity, name))
                .set((
                    binlog_files::upload_state.eq(UploadState::UploadFailed.as_str()),
                    binlog_files::upload_attempts.eq(attempts as i32),
                    binlog_files::upload_error.eq(Some(error)),
                    binlog_files::next_upload_at.eq(Some(now_naive(next_at))),
                    binlog_files::upload_verified.eq(false),
                ))
                .execute(conn)?;
            Ok(())
        })
    }

    /// Makes up to `limit` failed uploads due now with a fresh backoff; returns how many.
    pub fn retry_uploads(&self, id: TaskId, limit: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|c| {
            // Write first, then read (see `Store::lock_task_row`).
            self.lock_task_row(c, id)?;
            let ids: Vec<i64> = binlog_files::table
                .filter(binlog_files::task_id.eq(id.0))
                .filter(binlog_files::upload_state.eq(UploadState::UploadFailed.as_str()))
                .filter(binlog_files::local_deleted_at.is_null())
                .order(binlog_files::id.asc())
                .limit(limit)
                .select(binlog_files::id)
                .load(c)?;
            let n = diesel::update(binlog_files::table.filter(binlog_files::id.eq_any(&ids)))
                .set((
                    binlog_files::next_upload_at.eq(None::<chrono::NaiveDateTime>),
                    binlog_files::upload_attempts.eq(0),
                ))
                .execute(c)?;
            Ok(n)
        })
    }

    /// Failed uploads, oldest file first.
    pub fn upload_failures(&self, id: TaskId, limit: i64) -> Result<Vec<FileRecord>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<FileRow> = binlog_files::table
            .filter(binlog_files::task_id.eq(id.0))
            .filter(binlog_files::upload_state.eq(UploadState::UploadFailed.as_str()))
            .order(binlog_files::id.asc())
            .limit(limit)
            .select(FileRow::as_select())
            .load(&mut *conn)?;
        rows.into_iter().map(FileRow::into_record).collect()
    }

    /// Sealed files still on disk and not yet in the bucket.
    pub fn upload_backlog(&self, id: TaskId) -> Result<i64, StoreError> {
        let mut conn = self.conn()?;
        Ok(binlog_files::table
            .filter(binlog_files::task_id.eq(id.0))
            .filter(binlog_files::state.eq(FileState::Sealed.as_str()))
            .filter(binlog_files::local_deleted_at.is_null())
            .filter(binlog_files::upload_state.ne(UploadState::Uploaded.as_str()))
            .count()
            .get_result(&mut *conn)?)
    }

    /// Every task's upload backlog (as `upload_backlog`) and failed uploads, in two queries.
    pub fn upload_totals(&self) -> Result<(i64, i64), StoreError> {
        let mut conn = self.conn()?;
        let backlog = binlog_files::table
            .filter(binlog_files::state.eq(FileState::Sealed.as_str()))
            .filter(binlog_files::local_deleted_at.is_null())
            .filter(binlog_files::upload_state.ne(UploadState::Uploaded.as_str()))
            .count()
            .get_result(&mut *conn)?;
        let failed = binlog_files::table
            .filter(binlog_files::upload_state.eq(UploadState::UploadFailed.as_str()))
            .filter(binlog_files::local_deleted_at.is_null())
            .count()
            .get_result(&mut *conn)?;
        Ok((backlog, failed))
    }

    /// The time of the oldest event any task still holds, on local disk or (verified) in the
    /// bucket: the oldest point a recovery could start from, over every task.
    pub fn oldest_recovery_point(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let mut conn = self.conn()?;
        let oldest: Option<chrono::NaiveDateTime> = binlog_files::table
            .filter(
                binlog_files::local_deleted_at.is_null().or(binlog_files::upload_state
                    .eq(UploadState::Uploaded.as_str())
                    .and(binlog_files::remote_deleted_at.is_null())),
            )
            .select(diesel::dsl::min(binlog_files::first_event_at))
            .first(&mut *conn)?;
        Ok(oldest.map(crate::meta::models::to_utc))
    }

    pub fn mark_local_deleted(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name))
                .set(binlog_files::local_deleted_at.eq(Some(now_naive(at))))
                .execute(conn)?;
            Ok(())
        })
    }

    pub fn mark_remote_deleted(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name))
                .set(binlog_files::remote_deleted_at.eq(Some(now_naive(at))))
                .execute(conn)?;
            Ok(())
        })
    }
}
