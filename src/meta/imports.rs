//! Cataloguing imported files (`crate::import`): one file's row and the checkpoint after it, in
//! one transaction, refused while replication actors may write the same catalog.

use diesel::prelude::*;

use crate::domain::{TaskId, TaskState};
use crate::meta::StoreError;
use crate::meta::models::{Checkpoint, FileRecord, FileRow, FileState, now_naive};
use crate::meta::schema::{binlog_files, tasks};
use crate::meta::store::Store;

/// The task's open file, sealed where its checkpoint is, before an import continues it.
#[derive(Debug, Clone, Copy)]
pub struct SealAt<'a> {
    pub identity: &'a str,
    pub name: &'a str,
    pub end_pos: u64,
    pub size: u64,
}

impl Store {
    /// Records an imported file and moves the checkpoint to its end, in one transaction (with
    /// `seal`, the task's open file is sealed in the same one). Refused with
    /// `StoreError::Conflict` while the task is in an active state, unless `while_active` (an
    /// archive-only task: no writer shares its catalog).
    pub fn catalog_import(
        &self,
        id: TaskId,
        rec: &FileRecord,
        seal: Option<SealAt<'_>>,
        checkpoint: &Checkpoint,
        while_active: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let now = now_naive(self.clock().now());
        // Write first, read the state after (see `create_task_within`: a SQLite transaction that
        // reads first may not get the write lock); an active task rolls it all back.
        conn.transaction(|c| {
            self.check_fence(c)?;
            if let Some(s) = seal {
                let n = diesel::update(one_file!(id, s.identity, s.name))
                    .filter(binlog_files::state.eq(FileState::Open.as_str()))
                    .set((
                        binlog_files::state.eq(FileState::Sealed.as_str()),
                        binlog_files::end_pos.eq(Some(s.end_pos as i64)),
                        binlog_files::size.eq(s.size as i64),
                        binlog_files::sealed_at.eq(Some(now)),
                    ))
                    .execute(c)?;
                if n != 1 {
                    return Err(StoreError::Corrupt(format!(
                        "task {id}: open file {} changed during the import",
                        s.name
                    )));
                }
            }
            diesel::insert_into(binlog_files::table).values(FileRow::from_record(rec)).execute(c)?;
            self.write_checkpoint(c, id, Some(checkpoint))?;
            let state: String = tasks::table.find(id.0).select(tasks::state).first(c)?;
            let state = state.parse::<TaskState>().map_err(|e| StoreError::Corrupt(format!("task {id}: {e}")))?;
            if state.is_active() && !while_active {
                return Err(StoreError::Conflict(state));
            }
            Ok(())
        })
    }
}
