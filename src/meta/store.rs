//! `Store`: every read and write of metadata, each a single transaction, on either backend.

use std::sync::Arc;

use diesel::prelude::*;

use crate::binlog::summary::FileSummary;
use crate::clock::SharedClock;
use crate::domain::{DesiredState, Mover, Task, TaskError, TaskEventType, TaskId, TaskSpec, TaskState};
use crate::meta::StoreError;
use crate::meta::cipher::{self, Cipher, CipherError};
use crate::meta::conn::{
    ConnTuning, Durability, MetaConnection, MetaDsn, MetaPool, build_pool, connect_without_writing, migrate_up,
    migration_status,
};
use crate::meta::leases::Fence;
use crate::meta::models::{
    Checkpoint, CheckpointRow, FileRecord, FileRow, FileState, NewTaskEvent, SummaryColumns, TaskEvent, TaskEventRow,
    TaskFilter, TaskRow, TaskSpecColumns, now_naive,
};
use crate::meta::schema::{binlog_files, checkpoints, relay_users, task_events, task_leases, tasks};
use crate::secret::Secret;

type Conn = diesel::r2d2::PooledConnection<crate::meta::conn::MetaConnManager>;

/// How a state change treats `last_error`.
#[derive(Debug, Clone)]
pub enum LastError {
    Keep,
    Clear,
    Set(TaskError),
}

/// A change of a task's state, checked against the state table (`TaskState::allows`), with
/// what changes along with it.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub to: TaskState,
    pub by: Mover,
    /// The state the mover holds, when it knows it (a task's own actors): the change then
    /// happens only from that state. Otherwise from any state the table allows `by`.
    pub from: Option<TaskState>,
    pub desired: Option<DesiredState>,
    pub last_error: LastError,
    pub event: Option<(TaskEventType, &'a str)>,
}

impl<'a> Transition<'a> {
    /// `by` moves the task to `to`.
    pub fn to(to: TaskState, by: Mover) -> Self {
        Transition { to, by, from: None, desired: None, last_error: LastError::Keep, event: None }
    }

    /// Only from `from`, the state the mover holds.
    pub fn from(self, from: TaskState) -> Self {
        Transition { from: Some(from), ..self }
    }

    pub fn desired(self, desired: DesiredState) -> Self {
        Transition { desired: Some(desired), ..self }
    }

    pub fn last_error(self, last_error: LastError) -> Self {
        Transition { last_error, ..self }
    }

    pub fn event(self, kind: TaskEventType, message: &'a str) -> Self {
        Transition { event: Some((kind, message)), ..self }
    }

    /// The states the change may start from: the table's, or the one the mover holds if the
    /// table allows the move from it (or it records a new error in the same state: another
    /// failed attempt).
    pub fn origins(&self) -> Result<Vec<TaskState>, StoreError> {
        match self.from {
            Some(f) if f == self.to && matches!(self.last_error, LastError::Set(_)) => Ok(vec![f]),
            Some(f) if f.allows(self.to, self.by) => Ok(vec![f]),
            Some(f) => Err(StoreError::Forbidden { from: f, to: self.to }),
            None => Ok(TaskState::origins(self.to, self.by)),
        }
    }
}

/// Handle to the metadata database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: MetaPool,
    dsn: Arc<MetaDsn>,
    clock: SharedClock,
    /// Encrypts source passwords at rest; `None` keeps them in clear (tests and tools only).
    cipher: Option<Cipher>,
    /// Cluster mode: the lease every write of this handle is fenced by (see `meta::leases`).
    fence: Option<Arc<Fence>>,
    /// The session settings every connection of the pool gets (see [`Store::with_own_pool`]).
    tuning: ConnTuning,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.dsn)
    }
}

/// Refuses when the tasks now number more than `max_tasks`: called after the inserts, inside
/// their transaction, so a refusal rolls them back.
fn check_task_limit(c: &mut MetaConnection, max_tasks: u32) -> Result<(), StoreError> {
    let existing: i64 = tasks::table.count().get_result(c)?;
    if existing > i64::from(max_tasks) {
        return Err(StoreError::TaskLimit(max_tasks));
    }
    Ok(())
}

fn load_checkpoint(
    conn: &mut MetaConnection,
    id: TaskId,
) -> Result<Option<(Checkpoint, chrono::DateTime<chrono::Utc>)>, StoreError> {
    let row: Option<CheckpointRow> =
        checkpoints::table.find(id.0).select(CheckpointRow::as_select()).first(conn).optional()?;
    match row {
        Some(r) => r.into_checkpoint(),
        None => Ok(None),
    }
}

fn load_task_ids(conn: &mut MetaConnection) -> Result<Vec<TaskId>, StoreError> {
    let ids: Vec<i64> = tasks::table.select(tasks::id).order(tasks::id.asc()).load(conn)?;
    Ok(ids.into_iter().map(TaskId).collect())
}

fn load_files(conn: &mut MetaConnection, id: TaskId) -> Result<Vec<FileRecord>, StoreError> {
    let rows: Vec<FileRow> = binlog_files::table
        .filter(binlog_files::task_id.eq(id.0))
        .order(binlog_files::id.asc())
        .select(FileRow::as_select())
        .load(conn)?;
    rows.into_iter().map(FileRow::into_record).collect()
}

/// Reads the catalog over one connection and writes nothing (for `doctor`, safe beside a
/// running server): no migration, no file created; the schema must be exactly this binary's.
pub struct CatalogReader {
    conn: MetaConnection,
}

impl CatalogReader {
    pub fn open(dsn: &MetaDsn) -> Result<CatalogReader, StoreError> {
        if let MetaDsn::Sqlite(path) = dsn
            && !path.is_file()
        {
            return Err(StoreError::Misconfigured(format!("no metadata database at {}", path.display())));
        }
        let mut conn = connect_without_writing(dsn)?;
        let status = migration_status(&mut conn)?;
        if !status.is_current() {
            return Err(StoreError::Migration(format!(
                "the metadata schema at {dsn} is not this binary's (pending: [{}], unknown: [{}])",
                status.pending.join(", "),
                status.unknown.join(", ")
            )));
        }
        Ok(CatalogReader { conn })
    }

    /// Every task id, ascending (no secrets are read).
    pub fn task_ids(&mut self) -> Result<Vec<TaskId>, StoreError> {
        load_task_ids(&mut self.conn)
    }

    pub fn list_files(&mut self, id: TaskId) -> Result<Vec<FileRecord>, StoreError> {
        load_files(&mut self.conn, id)
    }

    pub fn get_checkpoint(&mut self, id: TaskId) -> Result<Option<Checkpoint>, StoreError> {
        Ok(load_checkpoint(&mut self.conn, id)?.map(|(cp, _)| cp))
    }
}

impl Store {
    /// Opens the store. SQLite is migrated on the spot; MySQL must already be at this binary's
    /// schema version (operators migrate it with `binlog-server migrate up`).
    pub fn open(dsn: &MetaDsn, pool_size: u32, clock: SharedClock) -> Result<Store, StoreError> {
        Store::open_tuned(dsn, pool_size, clock, ConnTuning::default())
    }

    /// [`Store::open`] with per-connection session settings (cluster mode's).
    pub fn open_tuned(
        dsn: &MetaDsn,
        pool_size: u32,
        clock: SharedClock,
        tuning: ConnTuning,
    ) -> Result<Store, StoreError> {
        let pool = build_pool(dsn, pool_size, tuning)?;
        let store = Store { pool, dsn: Arc::new(dsn.clone()), clock, cipher: None, fence: None, tuning };
        let mut conn = store.conn()?;
        match dsn {
            MetaDsn::Sqlite(_) => {
                migrate_up(&mut conn)?;
            }
            MetaDsn::Mysql(_) => {
                let status = migration_status(&mut conn)?;
                if !status.unknown.is_empty() {
                    return Err(StoreError::Migration(format!(
                        "the metadata schema at {dsn} is newer than this binary (unknown migrations: {}); \
                         upgrade binlog-server",
                        status.unknown.join(", ")
                    )));
                }
                if !status.pending.is_empty() {
                    return Err(StoreError::Migration(format!(
                        "the metadata schema at {dsn} is not migrated ({} pending: {}); run \
                         `binlog-server migrate up --meta-dsn ...` (or `make migrate-up META_DSN=...`) first",
                        status.pending.len(),
                        status.pending.join(", ")
                    )));
                }
            }
        }
        Ok(store)
    }

    pub fn dsn(&self) -> &MetaDsn {
        &self.dsn
    }

    /// The clock every stored time comes from (injectable in tests).
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// A connection whose commits are synced before they return ([`Durability::Synced`]).
    pub(super) fn conn(&self) -> Result<Conn, StoreError> {
        self.conn_with(Durability::Synced)
    }

    /// A connection whose commits reach the disk as `durability` says. Set at every checkout,
    /// whatever the connection's last user set.
    pub(super) fn conn_with(&self, durability: Durability) -> Result<Conn, StoreError> {
        let mut conn = self.pool.get()?;
        conn.set_durability(durability)?;
        Ok(conn)
    }

    /// The same database through a pool of its own, of `size` connections: the API's reads go
    /// through one, so that they never wait for a connection behind a thousand writers storing
    /// their checkpoints (on SQLite in WAL mode reads do not wait for the writer either). At
    /// 1,000 streaming tasks those writers hold the shared pool's connections most of the time,
    /// and one that the scheduler preempts while holding one makes every request behind it wait.
    pub fn with_own_pool(&self, size: u32) -> Result<Store, StoreError> {
        Ok(Store { pool: build_pool(&self.dsn, size, self.tuning)?, ..self.clone() })
    }

    /// A handle whose task writes commit only while `fence`'s lease holds (cluster mode).
    pub fn fenced(&self, fence: Fence) -> Store {
        Store { fence: Some(Arc::new(fence)), ..self.clone() }
    }

    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// Checks the fence inside a write's transaction (no-op for an unfenced handle).
    pub(super) fn check_fence(&self, c: &mut MetaConnection) -> Result<(), StoreError> {
        match &self.fence {
            Some(f) => crate::meta::leases::check_fence(c, f),
            None => Ok(()),
        }
    }

    /// Runs a write in one transaction, behind the fence when there is one, synced.
    pub(super) fn write_tx<T>(
        &self,
        f: impl FnOnce(&mut MetaConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_tx_with(Durability::Synced, f)
    }

    /// [`Store::write_tx`], its commit as durable as `durability` says.
    fn write_tx_with<T>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut MetaConnection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn_with(durability)?;
        if self.fence.is_none() {
            return f(&mut conn);
        }
        conn.transaction(|c| {
            self.check_fence(c)?;
            f(c)
        })
    }

    fn now(&self) -> chrono::NaiveDateTime {
        now_naive(self.clock.now())
    }

    /// Runs blocking store work on the blocking thread pool, for async callers.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Unavailable(format!("metadata worker failed: {e}")))?
    }

    // Passwords at rest go through these two; see SECURITY.md.
    /// Passwords are encrypted with this cipher from now on (see `meta::cipher`).
    pub fn with_cipher(mut self, cipher: Cipher) -> Store {
        self.cipher = Some(cipher);
        self
    }

    // Every password goes through these two, bound to its task's cluster_key.
    fn encode_password(&self, p: &Secret, cluster_key: &str) -> String {
        match &self.cipher {
            Some(c) => c.encrypt(p, cluster_key),
            None => p.expose().to_string(),
        }
    }

    fn decode_password(&self, stored: &str, cluster_key: &str) -> Result<Secret, StoreError> {
        if !cipher::is_encrypted(stored) {
            return Ok(Secret::new(stored));
        }
        let c = self.cipher.as_ref().ok_or(StoreError::Secrets(CipherError::NoKey))?;
        c.decrypt(stored, cluster_key).map_err(StoreError::Secrets)
    }

    fn row_to_task(&self, row: TaskRow) -> Result<Task, StoreError> {
        let pw = self.decode_password(&row.source_password, &row.cluster_key)?;
        row.into_task(pw)
    }

    /// At start-up: every stored password must decrypt with the configured key (a wrong key
    /// stops the service here, not at some later request), and legacy clear-text passwords
    /// are encrypted. Returns how many were encrypted.
    pub fn check_and_encrypt_secrets(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|c| {
            let rows: Vec<(i64, String, String)> =
                tasks::table.select((tasks::id, tasks::cluster_key, tasks::source_password)).load(c)?;
            let mut encrypted = 0;
            for (id, key, stored) in rows {
                let clear = self.decode_password(&stored, &key)?;
                if !cipher::is_encrypted(&stored) && self.cipher.is_some() {
                    diesel::update(tasks::table.find(id))
                        .set(tasks::source_password.eq(self.encode_password(&clear, &key)))
                        .execute(c)?;
                    encrypted += 1;
                }
            }
            Ok(encrypted)
        })
    }

    /// Takes the write lock on task `id` as a transaction's first statement, before it reads.
    /// SQLite (WAL) refuses a transaction that read first and then writes once another
    /// connection committed in between (SQLITE_BUSY at once: `busy_timeout` does not apply), and
    /// the API answered 500; a transaction that writes first waits for the lock instead. A no-op
    /// update (on MySQL it locks the row, as `SELECT ... FOR UPDATE` would). Returns whether the
    /// task exists.
    pub(super) fn lock_task_row(&self, c: &mut MetaConnection, id: TaskId) -> Result<bool, StoreError> {
        Ok(diesel::update(tasks::table.find(id.0)).set(tasks::id.eq(tasks::id)).execute(c)? > 0)
    }

    fn load_task(&self, c: &mut MetaConnection, id: TaskId) -> Result<Task, StoreError> {
        let row: TaskRow = tasks::table.find(id.0).select(TaskRow::as_select()).first(c)?;
        self.row_to_task(row)
    }

    fn insert_event(
        &self,
        c: &mut MetaConnection,
        id: TaskId,
        kind: TaskEventType,
        message: &str,
    ) -> Result<(), StoreError> {
        diesel::insert_into(task_events::table)
            .values(NewTaskEvent { task_id: id.0, event_type: kind.as_str(), message, created_at: self.now() })
            .execute(c)?;
        Ok(())
    }

    /// Creates a task (STOPPED, desired STOPPED) with an empty checkpoint and a TASK_CREATED event.
    pub fn create_task(&self, spec: &TaskSpec) -> Result<Task, StoreError> {
        self.create_task_within(spec, u32::MAX)
    }

    /// Creates a task unless `max_tasks` tasks exist already (`StoreError::TaskLimit`), counted
    /// in the insert's own transaction.
    pub fn create_task_within(&self, spec: &TaskSpec, max_tasks: u32) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        let now = self.now();
        // Write first, count after: on SQLite a transaction that reads before it writes cannot
        // take the write lock once another connection committed in between (SQLITE_BUSY at
        // once, whatever busy_timeout says); an insert waits for the lock instead. Over the
        // limit, the transaction rolls the insert back.
        conn.transaction(|c| {
            let task = self.insert_task(c, spec, now)?;
            check_task_limit(c, max_tasks)?;
            Ok(task)
        })
    }

    /// Creates every task of `specs` in one transaction, as `create_task` does each: all or none.
    pub fn create_tasks(&self, specs: &[TaskSpec]) -> Result<Vec<Task>, StoreError> {
        self.create_tasks_within(specs, u32::MAX)
    }

    /// `create_tasks`, unless the tasks would then number more than `max_tasks`
    /// (`StoreError::TaskLimit`, nothing created).
    pub fn create_tasks_within(&self, specs: &[TaskSpec], max_tasks: u32) -> Result<Vec<Task>, StoreError> {
        let mut conn = self.conn()?;
        let now = self.now();
        // Write first, count after, as `create_task_within` (why there).
        conn.transaction(|c| {
            let created = specs.iter().map(|spec| self.insert_task(c, spec, now)).collect::<Result<Vec<_>, _>>()?;
            check_task_limit(c, max_tasks)?;
            Ok(created)
        })
    }

    /// Which of these cluster keys are taken.
    pub fn existing_cluster_keys(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        Ok(tasks::table.filter(tasks::cluster_key.eq_any(keys)).select(tasks::cluster_key).load(&mut *conn)?)
    }

    fn insert_task(
        &self,
        c: &mut MetaConnection,
        spec: &TaskSpec,
        now: chrono::NaiveDateTime,
    ) -> Result<Task, StoreError> {
        {
            let cols = TaskSpecColumns::from_spec(spec, self.encode_password(&spec.source.password, &spec.cluster_key));
            diesel::insert_into(tasks::table)
                .values((
                    cols,
                    tasks::desired_state.eq(DesiredState::Stopped.as_str()),
                    tasks::state.eq(TaskState::Stopped.as_str()),
                    tasks::created_at.eq(now),
                    tasks::updated_at.eq(now),
                ))
                .execute(c)?;
            // No RETURNING on MySQL: the unique cluster_key finds the row just inserted.
            let id: i64 = tasks::table.filter(tasks::cluster_key.eq(&spec.cluster_key)).select(tasks::id).first(c)?;
            diesel::insert_into(checkpoints::table)
                .values(CheckpointRow {
                    task_id: id,
                    source_identity: None,
                    file_name: None,
                    pos: None,
                    gtid_set: None,
                    updated_at: now,
                    node_id: None,
                    epoch: None,
                })
                .execute(c)?;
            self.insert_event(c, TaskId(id), TaskEventType::TaskCreated, &format!("task {:?} created", spec.name))?;
            self.load_task(c, TaskId(id))
        }
    }

    pub fn get_task(&self, id: TaskId) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        self.load_task(&mut conn, id)
    }

    /// A page of tasks (by id) and the total matching the filter.
    pub fn list_tasks(&self, filter: &TaskFilter, limit: i64, offset: i64) -> Result<(Vec<Task>, i64), StoreError> {
        let mut conn = self.conn()?;
        let build = || {
            let mut q = tasks::table.into_boxed();
            if let Some(s) = filter.state {
                q = q.filter(tasks::state.eq(s.as_str()));
            }
            if let Some(h) = &filter.host {
                q = q.filter(tasks::source_host.eq(h.clone()));
            }
            if let Some(p) = filter.port {
                q = q.filter(tasks::source_port.eq(i32::from(p)));
            }
            if let Some(s) = filter.search.as_ref().filter(|s| !s.is_empty()) {
                let pattern = format!("%{}%", s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
                q = q.filter(
                    tasks::name.like(pattern.clone()).escape('\\').or(tasks::cluster_key.like(pattern).escape('\\')),
                );
            }
            q
        };
        let total: i64 = build().count().get_result(&mut *conn)?;
        let rows: Vec<TaskRow> =
            build().order(tasks::id.asc()).limit(limit).offset(offset).select(TaskRow::as_select()).load(&mut *conn)?;
        let tasks = rows.into_iter().map(|r| self.row_to_task(r)).collect::<Result<Vec<_>, _>>()?;
        Ok((tasks, total))
    }

    /// How many tasks are in each state.
    /// Every task id, ascending.
    pub fn task_ids(&self) -> Result<Vec<TaskId>, StoreError> {
        load_task_ids(&mut *self.conn()?)
    }

    pub fn count_by_state(&self) -> Result<Vec<(TaskState, i64)>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<(String, i64)> =
            tasks::table.group_by(tasks::state).select((tasks::state, diesel::dsl::count_star())).load(&mut *conn)?;
        Ok(rows.into_iter().filter_map(|(s, n)| s.parse::<TaskState>().ok().map(|s| (s, n))).collect())
    }

    /// Tasks the operator wants running: restarted when the process starts.
    pub fn tasks_to_resume(&self) -> Result<Vec<Task>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<TaskRow> = tasks::table
            .filter(tasks::desired_state.eq(DesiredState::Running.as_str()))
            .order(tasks::id.asc())
            .select(TaskRow::as_select())
            .load(&mut *conn)?;
        rows.into_iter().map(|r| self.row_to_task(r)).collect()
    }

    /// Replaces a task's spec; only while the task is idle (STOPPED or FAILED).
    pub fn update_task(&self, id: TaskId, spec: &TaskSpec) -> Result<Task, StoreError> {
        let mut conn = self.conn()?;
        let now = self.now();
        conn.transaction(|c| {
            self.lock_task_row(c, id)?;
            let current = self.load_task(c, id)?;
            if !current.state.is_idle() {
                return Err(StoreError::Conflict(current.state));
            }
            let cols = TaskSpecColumns::from_spec(spec, self.encode_password(&spec.source.password, &spec.cluster_key));
            let n = diesel::update(tasks::table.find(id.0))
                .filter(tasks::state.eq_any([TaskState::Stopped.as_str(), TaskState::Failed.as_str()]))
                .set((cols, tasks::updated_at.eq(now)))
                .execute(c)?;
            if n == 0 {
                return Err(StoreError::Conflict(self.load_task(c, id)?.state));
            }
            self.insert_event(c, id, TaskEventType::TaskUpdated, "task configuration updated")?;
            self.load_task(c, id)
        })
    }

    /// Deletes a task and all its metadata; only while idle. Local files are not touched here.
    pub fn delete_task(&self, id: TaskId) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.transaction(|c| {
            self.lock_task_row(c, id)?;
            let current = self.load_task(c, id)?;
            if !current.state.is_idle() {
                return Err(StoreError::Conflict(current.state));
            }
            diesel::delete(binlog_files::table.filter(binlog_files::task_id.eq(id.0))).execute(c)?;
            diesel::delete(task_events::table.filter(task_events::task_id.eq(id.0))).execute(c)?;
            diesel::delete(checkpoints::table.filter(checkpoints::task_id.eq(id.0))).execute(c)?;
            diesel::delete(relay_users::table.filter(relay_users::task_id.eq(id.0))).execute(c)?;
            // An idle task holds no live lease; its row (cluster mode) goes with it.
            diesel::delete(task_leases::table.filter(task_leases::task_id.eq(id.0))).execute(c)?;
            diesel::delete(tasks::table.find(id.0)).execute(c)?;
            Ok(())
        })
    }

    /// Moves a task as `t` says if the state table allows it from the task's current state, in
    /// one transaction with its event row. Returns the updated task, or `Conflict(current)` /
    /// `NotFound` / `Forbidden` (a mover claiming a state the table does not let it leave).
    pub fn transition(&self, id: TaskId, t: Transition<'_>) -> Result<Task, StoreError> {
        let from = t.origins()?;
        let Transition { to, desired, last_error, event, .. } = t;
        let mut conn = self.conn()?;
        let now = self.now();
        conn.transaction(|c| {
            self.check_fence(c)?;
            let from_text: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
            let target = tasks::table.find(id.0).filter(tasks::state.eq_any(from_text));
            let n = match (&desired, &last_error) {
                (d, LastError::Keep) => diesel::update(target)
                    .set((
                        tasks::state.eq(to.as_str()),
                        d.map(|d| tasks::desired_state.eq(d.as_str())),
                        tasks::updated_at.eq(now),
                    ))
                    .execute(c)?,
                (d, LastError::Clear) => diesel::update(target)
                    .set((
                        tasks::state.eq(to.as_str()),
                        d.map(|d| tasks::desired_state.eq(d.as_str())),
                        tasks::last_error_code.eq(None::<String>),
                        tasks::last_error_message.eq(None::<String>),
                        tasks::last_error_since.eq(None::<chrono::NaiveDateTime>),
                        tasks::last_error_attempts.eq(None::<i32>),
                        tasks::updated_at.eq(now),
                    ))
                    .execute(c)?,
                (d, LastError::Set(e)) => diesel::update(target)
                    .set((
                        tasks::state.eq(to.as_str()),
                        d.map(|d| tasks::desired_state.eq(d.as_str())),
                        tasks::last_error_code.eq(Some(e.code.as_str())),
                        tasks::last_error_message.eq(Some(e.message.as_str())),
                        tasks::last_error_since.eq(Some(now_naive(e.since))),
                        tasks::last_error_attempts.eq(Some(i32::try_from(e.attempts).unwrap_or(i32::MAX))),
                        tasks::updated_at.eq(now),
                    ))
                    .execute(c)?,
            };
            if n == 0 {
                return Err(StoreError::Conflict(self.load_task(c, id)?.state));
            }
            if let Some((kind, message)) = event {
                self.insert_event(c, id, kind, message)?;
            }
            self.load_task(c, id)
        })
    }

    /// Sets the desired state only (used at start-up to reconcile stale rows).
    pub fn set_desired_state(&self, id: TaskId, desired: DesiredState) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        diesel::update(tasks::table.find(id.0))
            .set((tasks::desired_state.eq(desired.as_str()), tasks::updated_at.eq(self.now())))
            .execute(&mut *conn)?;
        Ok(())
    }

    pub fn append_event(&self, id: TaskId, kind: TaskEventType, message: &str) -> Result<(), StoreError> {
        self.write_tx(|conn| self.insert_event(conn, id, kind, message))
    }

    /// The newest `limit` events of a task, newest first.
    pub fn list_events(&self, id: TaskId, limit: i64) -> Result<Vec<TaskEvent>, StoreError> {
        let mut conn = self.conn()?;
        let rows: Vec<TaskEventRow> = task_events::table
            .filter(task_events::task_id.eq(id.0))
            .order(task_events::id.desc())
            .limit(limit)
            .select(TaskEventRow::as_select())
            .load(&mut *conn)?;
        Ok(rows.into_iter().map(TaskEvent::from).collect())
    }

    pub fn get_checkpoint(
        &self,
        id: TaskId,
    ) -> Result<Option<(Checkpoint, chrono::DateTime<chrono::Utc>)>, StoreError> {
        load_checkpoint(&mut *self.conn()?, id)
    }

    pub(super) fn write_checkpoint(
        &self,
        c: &mut MetaConnection,
        id: TaskId,
        cp: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let row = CheckpointRow {
            task_id: id.0,
            source_identity: cp.map(|c| c.source_identity.clone()),
            file_name: cp.map(|c| c.file.to_string()),
            pos: cp.map(|c| c.pos as i64),
            gtid_set: cp.and_then(|c| c.gtid_set.clone()),
            updated_at: self.now(),
            node_id: self.fence.as_ref().map(|f| f.node_id.clone()),
            epoch: self.fence.as_ref().map(|f| f.epoch),
        };
        let n = diesel::update(checkpoints::table.find(id.0)).set(&row).execute(c)?;
        if n == 0 {
            // The row is created with the task; a missing one means the task was deleted.
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Persists a checkpoint. Callers guarantee the bytes up to it are fsynced. Not synced
    /// itself ([`Durability::Lazy`]): a power cut may take it back, never put it ahead.
    pub fn save_checkpoint(&self, id: TaskId, cp: &Checkpoint) -> Result<(), StoreError> {
        self.write_tx_with(Durability::Lazy, |conn| self.write_checkpoint(conn, id, Some(cp)))
    }

    /// Persists a checkpoint inside the open file together with that file's catalog size (the
    /// local bytes up to the checkpoint) and summary (what those bytes hold), in one
    /// transaction, so readers never see one moved without the others. Not synced, as
    /// [`Store::save_checkpoint`].
    pub fn save_checkpoint_in_open_file(
        &self,
        id: TaskId,
        cp: &Checkpoint,
        size: u64,
        summary: &FileSummary,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn_with(Durability::Lazy)?;
        conn.transaction(|c| {
            self.check_fence(c)?;
            self.write_checkpoint(c, id, Some(cp))?;
            diesel::update(one_file!(id, &cp.source_identity, cp.file.as_str()))
                .set((binlog_files::size.eq(size as i64), SummaryColumns::from_summary(summary)))
                .execute(c)?;
            Ok(())
        })
    }

    /// Records a file's summary rebuilt from its bytes (a row that predates the catalog, or
    /// whose summary a crash left behind its seal).
    pub fn set_file_summary(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        summary: &FileSummary,
    ) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name)).set(SummaryColumns::from_summary(summary)).execute(conn)?;
            Ok(())
        })
    }

    /// Clears the checkpoint (a task whose start position was edited begins afresh).
    pub fn reset_checkpoint(&self, id: TaskId) -> Result<(), StoreError> {
        self.write_tx(|conn| self.write_checkpoint(conn, id, None))
    }

    /// The task's file catalog in stream order (by creation).
    pub fn list_files(&self, id: TaskId) -> Result<Vec<FileRecord>, StoreError> {
        load_files(&mut *self.conn()?, id)
    }

    /// Records a newly created local file (OPEN).
    pub fn insert_file(&self, rec: &FileRecord) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::insert_into(binlog_files::table).values(FileRow::from_record(rec)).execute(conn)?;
            Ok(())
        })
    }

    /// Marks a file SEALED with its final summary and moves the checkpoint past it, in one
    /// transaction: a file is SEALED in the catalog exactly when the checkpoint has left it.
    /// (`checkpoint` is `None` only while a cluster takeover re-fetches files the stored
    /// checkpoint is already past.)
    #[allow(clippy::too_many_arguments)]
    pub fn seal_file(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        end_pos: u64,
        size: u64,
        summary: &FileSummary,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let now = self.now();
        conn.transaction(|c| {
            self.check_fence(c)?;
            diesel::update(one_file!(id, identity, name))
                .set((
                    binlog_files::state.eq(FileState::Sealed.as_str()),
                    binlog_files::end_pos.eq(Some(end_pos as i64)),
                    binlog_files::size.eq(size as i64),
                    binlog_files::sealed_at.eq(Some(now)),
                    SummaryColumns::from_summary(summary),
                ))
                .execute(c)?;
            match checkpoint {
                Some(cp) => self.write_checkpoint(c, id, Some(cp)),
                None => Ok(()),
            }
        })
    }

    /// Moves a file's layout after a rebase: events from `start_pos` begin at `header_len`.
    pub fn update_file_layout(
        &self,
        id: TaskId,
        identity: &str,
        name: &str,
        start_pos: u64,
        header_len: u64,
    ) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name))
                .set((binlog_files::start_pos.eq(start_pos as i64), binlog_files::header_len.eq(header_len as i64)))
                .execute(conn)?;
            Ok(())
        })
    }

    /// Records a sealed file's sha256 (computed off the write path).
    pub fn set_file_sha256(&self, id: TaskId, identity: &str, name: &str, sha256: &str) -> Result<(), StoreError> {
        self.write_tx(|conn| {
            diesel::update(one_file!(id, identity, name)).set(binlog_files::sha256.eq(Some(sha256))).execute(conn)?;
            Ok(())
        })
    }

    /// Forgets catalog rows (files removed by reconciliation).
    pub fn delete_file_rows(&self, id: TaskId, identity: &str, names: &[String]) -> Result<(), StoreError> {
        if names.is_empty() {
            return Ok(());
        }
        self.write_tx(|conn| {
            diesel::delete(
                binlog_files::table
                    .filter(binlog_files::task_id.eq(id.0))
                    .filter(binlog_files::source_identity.eq(identity))
                    .filter(binlog_files::file_name.eq_any(names)),
            )
            .execute(conn)?;
            Ok(())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The store's contract, run against SQLite here and against the harness MariaDB in the
    //! integration suite (`tests/it/store.rs` calls `run_contract`).
    use super::*;
    use crate::binlog::name::BinlogFileName;
    use crate::domain::TaskErrorCode;

    pub fn spec(key: &str) -> TaskSpec {
        crate::domain::test_spec(&format!("task {key}"), key)
    }

    fn sqlite_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let dsn = MetaDsn::Sqlite(dir.path().join("meta.db"));
        let store = Store::open(&dsn, 2, crate::clock::system()).unwrap();
        (dir, store)
    }

    #[test]
    fn contract_on_sqlite() {
        let (_dir, store) = sqlite_store();
        crate::meta::store::contract::run_contract(&store);
    }

    #[test]
    fn reads_through_an_own_pool_never_wait_for_the_shared_pools_connections() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&MetaDsn::Sqlite(dir.path().join("meta.db")), 1, crate::clock::system()).unwrap();
        let id = store.create_task(&spec("own-pool")).unwrap().id;
        let reads = store.with_own_pool(1).unwrap();
        // A writer holds the shared pool's only connection (as a thousand writers storing
        // checkpoints hold all of them): the shared pool has none to give...
        let held = store.conn().unwrap();
        assert!(store.pool.try_get().is_none(), "the shared pool is exhausted");
        // ...and the reads' own pool answers at once, the same database.
        let started = std::time::Instant::now();
        assert_eq!(reads.get_task(id).unwrap().spec.name, "task own-pool");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        drop(held);
    }

    /// Every checkout sets how its commits reach the disk, whatever the connection's last user
    /// left: a connection a lazy checkpoint write used must not make the next commit (a task
    /// the API created, a file's catalog row) lazy too. SQLite's `synchronous`: 1 NORMAL, 2 FULL.
    #[test]
    fn every_checkout_sets_its_own_durability() {
        #[derive(diesel::QueryableByName)]
        struct Sync {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            synchronous: i32,
        }
        let dir = tempfile::tempdir().unwrap();
        // One connection: every checkout below gets the same one.
        let store = Store::open(&MetaDsn::Sqlite(dir.path().join("meta.db")), 1, crate::clock::system()).unwrap();
        let level = |conn: &mut Conn| -> i32 {
            diesel::sql_query("PRAGMA synchronous").get_result::<Sync>(&mut **conn).unwrap().synchronous
        };
        for (first, then, want) in [
            (Durability::Lazy, Durability::Synced, 2),
            (Durability::Synced, Durability::Lazy, 1),
            (Durability::Lazy, Durability::Lazy, 1),
            (Durability::Synced, Durability::Synced, 2),
        ] {
            let mut c = store.conn_with(first).unwrap();
            assert_eq!(level(&mut c), if first == Durability::Synced { 2 } else { 1 }, "{first:?}");
            drop(c);
            let mut c = store.conn_with(then).unwrap();
            assert_eq!(level(&mut c), want, "{first:?} then {then:?}");
        }
        // The plain checkout is synced, and so is the writes' helper.
        drop(store.conn_with(Durability::Lazy).unwrap());
        assert_eq!(level(&mut store.conn().unwrap()), 2);
        drop(store.conn_with(Durability::Lazy).unwrap());
        let got = store.write_tx(|c| Ok(diesel::sql_query("PRAGMA synchronous").get_result::<Sync>(c)?.synchronous));
        assert_eq!(got.unwrap(), 2);
    }

    /// On SQLite, a transaction that reads before it writes is refused the write lock at once
    /// (SQLITE_BUSY, busy_timeout or not) when another connection committed in between: the
    /// API answered 500 "database is locked" to a `PUT /relay` racing the writer's checkpoint
    /// (CI, 2026-12-04). Writes that read first must take the lock first; three threads here
    /// interleave them for a few hundred rounds and none may fail.
    #[test]
    fn sqlite_writes_that_read_first_never_meet_a_busy_database() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&MetaDsn::Sqlite(dir.path().join("meta.db")), 4, crate::clock::system()).unwrap();
        let a = store.create_task(&spec("busy-a")).unwrap().id;
        let b = store.create_task(&spec("busy-b")).unwrap().id;
        let rounds = 300;
        let hashes = crate::relay_auth::UserHashes::from_password("pw");
        let relay_writer = |id: TaskId, tag: &'static str| {
            let (store, h) = (store.clone(), hashes.clone());
            std::thread::spawn(move || -> Result<(), String> {
                for i in 0..rounds {
                    store
                        .set_relay_users(id, &[(format!("{tag}{}", i % 3), h.clone())])
                        .map_err(|e| format!("relay {tag}: {e}"))?;
                }
                Ok(())
            })
        };
        let mut writers = vec![relay_writer(a, "a"), relay_writer(b, "b")];
        writers.push({
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    store.retry_uploads(a, 10).map_err(|e| format!("retry a: {e}"))?;
                    store.retry_uploads(b, 10).map_err(|e| format!("retry b: {e}"))?;
                }
                Ok(())
            })
        });
        let failures: Vec<String> = writers.into_iter().filter_map(|w| w.join().unwrap().err()).collect();
        assert!(failures.is_empty(), "{failures:?}");
        assert_eq!(store.relay_user_names(a).unwrap(), vec![format!("a{}", (rounds - 1) % 3)]);
    }

    #[test]
    fn duplicate_cluster_key_leaves_nothing_behind() {
        let (_dir, store) = sqlite_store();
        store.create_task(&spec("dup")).unwrap();
        let err = store.create_task(&spec("dup")).unwrap_err();
        assert!(matches!(err, StoreError::Duplicate("cluster_key")), "{err:?}");
        let (all, total) = store.list_tasks(&TaskFilter::default(), 100, 0).unwrap();
        assert_eq!((all.len(), total), (1, 1));
    }

    #[test]
    fn transition_is_conditional() {
        let (_dir, store) = sqlite_store();
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 123_456_000).unwrap();
        let error = TaskError { code: TaskErrorCode::SourceAccessDenied, message: "denied".into(), since, attempts: 7 };
        let t = store.create_task(&spec("tr")).unwrap();
        let err = store.transition(t.id, Transition::to(TaskState::Stopping, Mover::Operator)).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(TaskState::Stopped)), "{err:?}");
        let err = store
            .transition(t.id, Transition::to(TaskState::Running, Mover::Task).from(TaskState::Stopped))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Forbidden { from: TaskState::Stopped, to: TaskState::Running }),
            "a move the table does not have is refused, whoever claims it: {err:?}"
        );
        store.transition(t.id, Transition::to(TaskState::Starting, Mover::Operator)).unwrap();
        let failed = store
            .transition(
                t.id,
                Transition::to(TaskState::Failed, Mover::Task)
                    .from(TaskState::Starting)
                    .last_error(LastError::Set(error.clone()))
                    .event(TaskEventType::TaskError, "denied"),
            )
            .unwrap();
        assert_eq!(failed.last_error.as_ref(), Some(&error), "code, message, since and attempts round-trip");
        // Retrying again records the new attempt count in place (a transition to the same state).
        let retrying = TaskError { attempts: 8, ..error.clone() };
        let again = store
            .transition(
                t.id,
                Transition::to(TaskState::Failed, Mover::Task)
                    .from(TaskState::Failed)
                    .last_error(LastError::Set(retrying.clone())),
            )
            .unwrap();
        assert_eq!(again.last_error, Some(retrying));
        let cleared = store
            .transition(t.id, Transition::to(TaskState::Stopped, Mover::Operator).last_error(LastError::Clear))
            .unwrap();
        assert_eq!(cleared.last_error, None);
        let _ = BinlogFileName::parse("x.000001").unwrap();
    }
}

/// The store contract shared by the SQLite unit test and the MariaDB integration test (test
/// builds only: the `test-support` feature).
#[cfg(any(test, feature = "test-support"))]
pub mod contract {
    use super::*;
    use crate::binlog::name::BinlogFileName;
    use crate::domain::{RawTaskSpec, TaskErrorCode};

    fn spec(key: &str, host: &str) -> TaskSpec {
        RawTaskSpec {
            name: Some(format!("task {key}")),
            cluster_key: Some(key.into()),
            host: Some(host.into()),
            port: Some(3306),
            user: Some("repl".into()),
            password: Some(Secret::new("contract-pw")),
            flavor: Some("mysql".into()),
            start_mode: Some("GTID".into()),
            start_gtid_set: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5".into()),
            ..Default::default()
        }
        .validate()
        .expect("contract spec is valid")
    }

    /// A new OPEN file of source "srv-1" (4 bytes: the magic), as the writer records it.
    fn open_file(task: TaskId, name: &str, created_at: chrono::DateTime<chrono::Utc>) -> FileRecord {
        FileRecord {
            task_id: task.0,
            source_identity: "srv-1".into(),
            file_name: BinlogFileName::parse(name).expect("name"),
            state: FileState::Open,
            start_pos: 4,
            header_len: 4,
            end_pos: None,
            size: 4,
            sha256: None,
            created_at,
            sealed_at: None,
            upload: Default::default(),
            summary: Default::default(),
        }
    }

    /// Leases and fencing (MySQL/MariaDB only: cluster mode's backend). Uses the database's
    /// clock, so the waits are real: the TTLs here are short.
    pub fn run_lease_contract(store: &Store) {
        use crate::meta::leases::Fence;
        let t = store.create_task(&spec("lease-contract", "db1")).expect("create");
        let id = t.id;
        assert_eq!(store.get_lease(id).expect("read"), None, "never leased");

        // a takes it (epoch 1); b cannot while it is live; a again keeps the epoch.
        let a = store.acquire_lease(id, "node-a", 60_000).expect("acquire").expect("free lease");
        assert_eq!((a.epoch, a.previous_owner.as_deref()), (1, None));
        assert_eq!(store.acquire_lease(id, "node-b", 60_000).expect("acquire"), None, "held by a");
        assert_eq!(store.acquire_lease(id, "node-a", 60_000).expect("acquire").map(|x| x.epoch), Some(1));
        let l = store.get_lease(id).expect("read").expect("leased");
        assert!(l.live && l.owner == "node-a" && l.epoch == 1, "{l:?}");
        assert_eq!(store.renew_leases("node-a", &[id], 60_000).expect("renew"), vec![(id, 1)]);
        assert_eq!(store.renew_leases("node-b", &[id], 60_000).expect("renew"), vec![]);
        assert_eq!(store.renew_leases("node-a", &[], 60_000).expect("renew"), vec![]);
        // Only the tasks named are renewed: a lease the node holds but does not run expires.
        let other = store.create_task(&spec("lease-contract-2", "db2")).expect("create").id;
        assert_eq!(store.acquire_lease(other, "node-a", 300).expect("acquire").map(|x| x.epoch), Some(1));
        let wait_free = |who: &str, ttl_ms: u64| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                assert_eq!(store.renew_leases("node-a", &[id], 60_000).expect("renew"), vec![(id, 1)]);
                if let Some(x) = store.acquire_lease(other, who, ttl_ms).expect("acquire") {
                    break x;
                }
                assert!(std::time::Instant::now() < deadline, "a lease nobody renews must expire");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        };
        let b2 = wait_free("node-b", 300);
        assert_eq!((b2.epoch, b2.previous_owner.as_deref()), (2, Some("node-a")));
        // The same node taking back its own expired lease gets a new epoch: its former holding is
        // fenced like another node's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.get_lease(other).expect("read").is_some_and(|l| l.live) {
            assert!(std::time::Instant::now() < deadline, "a 300 ms lease must expire");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let b3 = store.acquire_lease(other, "node-b", 60_000).expect("acquire").expect("expired, so free");
        assert_eq!((b3.epoch, b3.previous_owner.as_deref()), (3, None));
        let stale_b = store.fenced(Fence { task_id: other, node_id: "node-b".into(), epoch: 2 });
        let err = stale_b
            .transition(other, Transition::to(TaskState::Starting, Mover::Operator))
            .expect_err("a former holding of the same node is fenced");
        assert!(matches!(err, StoreError::Fenced(_)), "{err:?}");
        assert!(store.release_lease(other, "node-b", 3).expect("release"));

        // Fenced writes pass for the holder, and record who wrote the checkpoint.
        let fenced_a = store.fenced(Fence { task_id: id, node_id: "node-a".into(), epoch: 1 });
        let cp = |pos: u64| Checkpoint {
            source_identity: "srv-1".into(),
            file: BinlogFileName::parse("bin.000001").expect("name"),
            pos,
            gtid_set: None,
        };
        fenced_a.save_checkpoint(id, &cp(100)).expect("the holder writes");
        assert_eq!(store.checkpoint_writer(id).expect("writer"), Some(("node-a".into(), 1)));

        // Released: b takes it over with a larger epoch; a's fenced writes are refused and
        // change nothing; a can no longer renew or release it.
        assert!(store.release_lease(id, "node-a", 1).expect("release"));
        let b = store.acquire_lease(id, "node-b", 60_000).expect("acquire").expect("released lease");
        assert_eq!((b.epoch, b.previous_owner.as_deref()), (2, Some("node-a")));
        let err = fenced_a.save_checkpoint(id, &cp(200)).expect_err("a stale owner is fenced");
        assert!(matches!(err, StoreError::Fenced(_)), "{err:?}");
        let err = fenced_a
            .transition(id, Transition::to(TaskState::Starting, Mover::Operator))
            .expect_err("state writes are fenced too");
        assert!(matches!(err, StoreError::Fenced(_)), "{err:?}");
        assert_eq!(store.get_checkpoint(id).expect("cp").map(|(c, _)| c.pos), Some(100));
        assert_eq!(store.get_task(id).expect("task").state, TaskState::Stopped);
        assert!(!store.release_lease(id, "node-a", 1).expect("release"), "only the holder releases");
        assert_eq!(store.renew_leases("node-a", &[id], 60_000).expect("renew"), vec![]);
        let fenced_b = store.fenced(Fence { task_id: id, node_id: "node-b".into(), epoch: 2 });
        fenced_b.save_checkpoint(id, &cp(300)).expect("the new holder writes");
        assert_eq!(store.checkpoint_writer(id).expect("writer"), Some(("node-b".into(), 2)));

        // Catalog rows and upload marks are fenced alike: the holder's go through; every file
        // write of a stale owner is refused and changes nothing (nor the checkpoint a seal moves).
        let file = |name: &str| open_file(id, name, chrono::Utc::now());
        fenced_b.insert_file(&file("bin.000001")).expect("the holder records a file");
        let before = store.list_files(id).expect("files");
        let one = || vec!["bin.000001".to_string()];
        let stale = [
            ("insert_file", fenced_a.insert_file(&file("bin.000002"))),
            (
                "seal_file",
                fenced_a.seal_file(id, "srv-1", "bin.000001", 500, 500, &FileSummary::default(), Some(&cp(600))),
            ),
            ("set_file_sha256", fenced_a.set_file_sha256(id, "srv-1", "bin.000001", &"0".repeat(64))),
            ("mark_uploading", fenced_a.mark_uploading(id, "srv-1", "bin.000001", "key")),
            ("mark_uploaded", fenced_a.mark_uploaded(id, "srv-1", "bin.000001", chrono::Utc::now())),
            ("mark_upload_failed", fenced_a.mark_upload_failed(id, "srv-1", "bin.000001", 1, "e", chrono::Utc::now())),
            ("delete_file_rows", fenced_a.delete_file_rows(id, "srv-1", &one())),
        ];
        for (what, res) in stale {
            assert!(matches!(res, Err(StoreError::Fenced(_))), "a stale owner's {what}: {res:?}");
        }
        assert_eq!(store.list_files(id).expect("files"), before, "the catalog is as the holder left it");
        assert_eq!(store.get_checkpoint(id).expect("cp").map(|(c, _)| c.pos), Some(300));
        fenced_b.delete_file_rows(id, "srv-1", &one()).expect("the holder's file writes pass");

        // Expiry by the database's clock: a short lease runs out without anyone releasing it.
        assert!(store.acquire_lease(id, "node-b", 200).expect("renew own").is_some());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let c = loop {
            if let Some(c) = store.acquire_lease(id, "node-c", 60_000).expect("acquire") {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "a 200 ms lease must expire");
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        assert_eq!(c.epoch, 3);
        assert!(matches!(fenced_b.save_checkpoint(id, &cp(400)), Err(StoreError::Fenced(_))));

        // Placement's reads.
        store.set_desired_state(id, DesiredState::Running).expect("desired");
        assert_eq!(store.unplaced_tasks(10).expect("unplaced"), vec![], "c holds it");
        let counts = store.cluster_counts(60_000).expect("counts");
        assert_eq!(counts.leases_by_node.get("node-c"), Some(&1));
        assert!(counts.wanted >= 1);
        assert!(store.release_lease(id, "node-c", 3).expect("release"));
        assert_eq!(store.unplaced_tasks(10).expect("unplaced"), vec![id]);
        assert_eq!(store.desired_stopped_among(&[id]).expect("stopped"), vec![]);
        store.register_node("node-c", "test", 5).expect("register");
        store.heartbeat_node("node-c").expect("heartbeat");
        let nodes = store.list_nodes(60_000).expect("nodes");
        assert!(nodes.iter().any(|n| n.node_id == "node-c" && n.alive && n.max_tasks == 5), "{nodes:?}");
        store.node_left("node-c").expect("leave");
        assert!(store.list_nodes(60_000).expect("nodes").iter().any(|n| n.node_id == "node-c" && !n.alive));
        store.set_desired_state(id, DesiredState::Stopped).expect("desired");
    }

    /// The upload queue on the sealed, hashed `bin.000001` of `id`.
    fn upload_contract(store: &Store, id: TaskId, now: chrono::DateTime<chrono::Utc>) {
        use crate::meta::UploadState;
        let state = |s: &Store| s.list_files(id).expect("files")[0].upload.clone();
        assert_eq!(store.upload_backlog(id).expect("backlog"), 1);
        let next = store.next_upload(id, now).expect("next").expect("the sealed file is due");
        assert_eq!(next.file_name.as_str(), "bin.000001");
        store.mark_uploading(id, "srv-1", "bin.000001", "p/k/srv-1/bin.000001").expect("uploading");
        assert_eq!(state(store).state, UploadState::Uploading);
        // A row left UPLOADING (interrupted run) is due again.
        assert!(store.next_upload(id, now).expect("next").is_some());
        let later = now + chrono::Duration::seconds(600);
        store.mark_upload_failed(id, "srv-1", "bin.000001", 3, "HTTP 403 AccessDenied: no", later).expect("failed");
        let u = state(store);
        assert_eq!(
            (u.state, u.attempts, u.last_error.as_deref()),
            (UploadState::UploadFailed, 3, Some("HTTP 403 AccessDenied: no"))
        );
        assert!(store.next_upload(id, now).expect("next").is_none(), "not due before its retry time");
        assert!(store.next_upload(id, later).expect("next").is_some(), "due at its retry time");
        let due = store.next_upload_due(id).expect("due").expect("a retry time");
        assert!((due - later).num_seconds().abs() <= 1, "{due} vs {later}");
        assert_eq!(store.upload_failures(id, 10).expect("failures").len(), 1);
        assert_eq!(store.retry_uploads(id, 10).expect("retry"), 1);
        assert_eq!(state(store).attempts, 0);
        assert!(store.next_upload(id, now).expect("next").is_some(), "due now after retry-upload");
        store.mark_uploaded(id, "srv-1", "bin.000001", now).expect("uploaded");
        let u = state(store);
        assert_eq!((u.state, u.verified, u.last_error), (UploadState::Uploaded, true, None));
        assert_eq!(u.object_key.as_deref(), Some("p/k/srv-1/bin.000001"));
        assert_eq!(store.upload_backlog(id).expect("backlog"), 0);
        assert!(store.next_upload(id, later).expect("next").is_none());
        assert_eq!(store.retry_uploads(id, 10).expect("retry"), 0);
        store.mark_local_deleted(id, "srv-1", "bin.000001", now).expect("local deleted");
        store.mark_remote_deleted(id, "srv-1", "bin.000001", now).expect("remote deleted");
        let u = state(store);
        assert!(u.local_deleted_at.is_some() && u.remote_deleted_at.is_some());
    }

    /// Exercises every store operation; panics with a message on the first broken promise.
    pub fn run_contract(store: &Store) {
        let a = store.create_task(&spec("contract-a", "h1")).expect("create a");
        let b = store.create_task(&spec("contract-b", "h2")).expect("create b");
        assert_ne!(a.id, b.id);
        assert_eq!(a.state, TaskState::Stopped);
        assert_eq!(a.desired_state, DesiredState::Stopped);
        assert_eq!(a.spec.source.password.expose(), "contract-pw");
        assert_eq!(store.get_task(a.id).expect("get a"), a);

        assert!(matches!(store.create_task(&spec("contract-a", "h3")), Err(StoreError::Duplicate(_))));

        let f = TaskFilter { host: Some("h2".into()), ..Default::default() };
        let (items, total) = store.list_tasks(&f, 10, 0).expect("list by host");
        assert_eq!(total, 1);
        assert_eq!(items[0].id, b.id);
        let f = TaskFilter { search: Some("contract-".into()), ..Default::default() };
        let (items, total) = store.list_tasks(&f, 1, 1).expect("list page 2");
        assert_eq!((items.len(), total), (1, 2));
        assert_eq!(items[0].id, b.id);

        let running = store
            .transition(
                a.id,
                Transition::to(TaskState::Starting, Mover::Operator)
                    .desired(DesiredState::Running)
                    .last_error(LastError::Clear)
                    .event(TaskEventType::TaskStarted, "started"),
            )
            .expect("start a");
        assert_eq!(running.state, TaskState::Starting);
        // A retrying task's error, with since when and how many attempts, round-trips (microseconds
        // kept, as DATETIME(6) does); the next attempt updates it in place; streaming clears it.
        let since = chrono::DateTime::<chrono::Utc>::from_timestamp(1_800_000_000, 654_321_000).expect("a time");
        let err =
            TaskError { code: TaskErrorCode::ChecksumMismatch, message: "CRC32 mismatch".into(), since, attempts: 1 };
        let retrying = store
            .transition(
                a.id,
                Transition::to(TaskState::RetryBackoff, Mover::Task)
                    .from(TaskState::Starting)
                    .last_error(LastError::Set(err.clone())),
            )
            .expect("retry a");
        assert_eq!(retrying.last_error.as_ref(), Some(&err));
        let again = TaskError { attempts: 2, ..err };
        let retrying = store
            .transition(
                a.id,
                Transition::to(TaskState::RetryBackoff, Mover::Task)
                    .from(TaskState::RetryBackoff)
                    .last_error(LastError::Set(again.clone())),
            )
            .expect("retry a again");
        assert_eq!(store.get_task(a.id).expect("get a").last_error, Some(again));
        let running = store
            .transition(
                a.id,
                Transition::to(TaskState::Starting, Mover::Task).from(retrying.state).last_error(LastError::Clear),
            )
            .expect("a streams again");
        assert_eq!(running.last_error, None);
        assert!(matches!(store.delete_task(a.id), Err(StoreError::Conflict(TaskState::Starting))));
        assert!(matches!(store.update_task(a.id, &spec("contract-a", "h9")), Err(StoreError::Conflict(_))));
        let resumable = store.tasks_to_resume().expect("resume list");
        assert_eq!(resumable.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id]);

        let updated = store.update_task(b.id, &spec("contract-b", "h5")).expect("update b");
        assert_eq!(updated.spec.source.host, "h5");
        assert!(updated.updated_at >= b.updated_at);

        assert_eq!(store.get_checkpoint(a.id).expect("cp"), None);
        let cp = Checkpoint {
            source_identity: "srv-1".into(),
            file: BinlogFileName::parse("bin.000001").expect("name"),
            pos: 1234,
            gtid_set: Some("0-1-5".into()),
        };
        store.save_checkpoint(a.id, &cp).expect("save cp");
        assert_eq!(store.get_checkpoint(a.id).expect("cp").map(|c| c.0), Some(cp.clone()));

        let now = chrono::Utc::now();
        let rec = open_file(a.id, "bin.000001", now);
        store.insert_file(&rec).expect("insert file");
        assert!(store.insert_file(&rec).is_err(), "a file is recorded once");
        let partial = FileSummary {
            first_event_at: Some(1_700_000_000),
            last_event_at: Some(1_700_000_100),
            first_gtid: Some("0-1-1".into()),
            last_gtid: Some("0-1-5".into()),
            gtid_start: Some("0-1-0".into()),
            gtid_end: Some("0-1-5".into()),
            gtid_added: None,
            summary_pos: 999,
        };
        store.save_checkpoint_in_open_file(a.id, &cp, 999, &partial).expect("checkpoint with size");
        let open = store.list_files(a.id).expect("files");
        assert_eq!((open[0].size, &open[0].summary), (999, &partial));
        let cp2 = Checkpoint { file: BinlogFileName::parse("bin.000002").expect("name"), pos: 4, ..cp.clone() };
        let sealed = FileSummary { last_gtid: Some("0-1-6".into()), summary_pos: 1000, ..partial.clone() };
        store.seal_file(a.id, "srv-1", "bin.000001", 1000, 1000, &sealed, Some(&cp2)).expect("seal");
        assert_eq!(store.list_files(a.id).expect("files")[0].summary, sealed);
        let rebuilt = FileSummary { gtid_added: Some("x".into()), ..sealed.clone() };
        store.set_file_summary(a.id, "srv-1", "bin.000001", &rebuilt).expect("summary");
        assert_eq!(store.list_files(a.id).expect("files")[0].summary, rebuilt);
        store.set_file_sha256(a.id, "srv-1", "bin.000001", &"ab".repeat(32)).expect("sha");
        let files = store.list_files(a.id).expect("files");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].state, FileState::Sealed);
        assert_eq!(files[0].end_pos, Some(1000));
        assert_eq!(files[0].sha256.as_deref(), Some("ab".repeat(32).as_str()));
        assert_eq!(store.get_checkpoint(a.id).expect("cp").map(|c| c.0), Some(cp2));
        upload_contract(store, a.id, now);
        store.delete_file_rows(a.id, "srv-1", &["bin.000001".to_string()]).expect("delete rows");
        assert!(store.list_files(a.id).expect("files").is_empty());

        for i in 0..5 {
            store.append_event(a.id, TaskEventType::TaskRunning, &format!("e{i}")).expect("event");
        }
        let ev = store.list_events(a.id, 3).expect("events");
        assert_eq!(ev.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), vec!["e4", "e3", "e2"]);

        store
            .transition(a.id, Transition::to(TaskState::Stopping, Mover::Operator).desired(DesiredState::Stopped))
            .expect("stopping");
        store
            .transition(a.id, Transition::to(TaskState::Stopped, Mover::Task).from(TaskState::Stopping))
            .expect("stopped");
        store.delete_task(a.id).expect("delete a");
        assert!(matches!(store.get_task(a.id), Err(StoreError::NotFound)));
        assert!(store.list_events(a.id, 10).expect("events").is_empty());
        assert_eq!(store.get_checkpoint(a.id).expect("cp"), None);
        store.delete_task(b.id).expect("delete b");
        assert!(matches!(store.delete_task(b.id), Err(StoreError::NotFound)));
    }
}
