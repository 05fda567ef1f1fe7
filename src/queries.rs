//! `TaskQueries`: the read-only query service the API calls directly (task rows, checkpoints,
//! events, files, relay user names, recovery windows, replay plans, file lookups).
//!
//! It reads the metadata store (on the blocking pool, through `Store::call`) and, to place GTIDs
//! in files, the task directories. It never changes anything and never talks to an actor: what
//! only a running task knows (its live status) comes from the `Supervisor` (`GetRuntime`).

use std::path::PathBuf;
use std::sync::Arc;

use crate::actors::supervisor::{ControlError, ControlResult};
use crate::domain::{FieldError, Task, TaskId, TaskState};
use crate::layout::DataLayout;
use crate::meta::leases::{ClusterCounts, Lease, NodeInfo};
use crate::meta::{Checkpoint, FileRecord, Store, StoreError, TaskEvent, TaskFilter};
use crate::pitr::{self, plan::Plan, plan::PlanFile, window::Window};
use crate::upload::ObjectStore;

/// The stored checkpoint and when it was written; in cluster mode also by which node, under
/// which lease epoch.
pub type CheckpointView = (Option<(Checkpoint, chrono::DateTime<chrono::Utc>)>, Option<(String, i64)>);

/// A task plus what only its running actors know.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub task: Task,
    pub runtime: Option<crate::actors::task::RuntimeStatus>,
}

/// Read-only queries over the store and the data directory. Cheap to clone.
#[derive(Clone)]
pub struct TaskQueries {
    store: Store,
    layout: DataLayout,
    /// `retry.alert_after_sec`: a task retrying for longer is stuck.
    alert_after: chrono::Duration,
    /// `cluster.lease_ttl_sec` in milliseconds: a node whose heartbeat is older is gone.
    lease_ttl_ms: u64,
    /// The bucket, when upload is enabled: files only it still holds are read from there.
    objects: Option<Arc<ObjectStore>>,
}

fn read_error(id: TaskId) -> impl FnOnce(StoreError) -> ControlError {
    move |e| ControlError::from_store(e, Some(id), "read")
}

impl TaskQueries {
    /// Reads something of task `id` on the store's blocking pool: `NotFound` (404) when the
    /// task does not exist, other store errors as reads.
    async fn of_task<T: Send + 'static>(
        &self,
        id: TaskId,
        read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> ControlResult<T> {
        self.store
            .call(move |s| {
                s.get_task(id)?;
                read(s)
            })
            .await
            .map_err(read_error(id))
    }

    pub fn new(store: Store, settings: &crate::config::Settings, objects: Option<Arc<ObjectStore>>) -> Self {
        TaskQueries {
            store,
            layout: DataLayout::new(&settings.data_dir),
            alert_after: crate::retry::RetryPolicy::from_settings(&settings.retry).alert_after,
            lease_ttl_ms: settings.cluster.lease_ttl_sec * 1000,
            objects,
        }
    }

    fn task_dir(&self, id: TaskId) -> PathBuf {
        self.layout.task_dir(id)
    }

    /// The bucket, when upload is enabled (what `pitr::files::open_location` reads from).
    pub fn objects(&self) -> Option<Arc<ObjectStore>> {
        self.objects.clone()
    }

    fn reader(&self, id: TaskId) -> LocalTxnReader {
        LocalTxnReader { task_dir: self.task_dir(id), objects: self.objects.clone() }
    }

    /// One task's row.
    pub async fn task(&self, id: TaskId) -> ControlResult<Task> {
        self.store.call(move |s| s.get_task(id)).await.map_err(|e| ControlError::from_store(e, Some(id), "get"))
    }

    /// A page of tasks and how many match in all.
    pub async fn list(&self, filter: TaskFilter, limit: i64, offset: i64) -> ControlResult<(Vec<Task>, i64)> {
        self.store.call(move |s| s.list_tasks(&filter, limit, offset)).await.map_err(ControlError::Store)
    }

    /// Task counts by state (for `/metrics` and the cluster overview).
    pub async fn count_by_state(&self) -> ControlResult<Vec<(TaskState, i64)>> {
        self.store.call(|s| s.count_by_state()).await.map_err(ControlError::Store)
    }

    /// How many tasks are stuck (`retry::is_stuck`). It counts every task of the metadata store
    /// (in cluster mode, every node's).
    pub async fn count_stuck(&self) -> ControlResult<i64> {
        let retrying = TaskFilter { state: Some(TaskState::RetryBackoff), ..TaskFilter::default() };
        let (tasks, _) =
            self.store.call(move |s| s.list_tasks(&retrying, i64::MAX, 0)).await.map_err(ControlError::Store)?;
        let now = chrono::Utc::now();
        let stuck =
            tasks.iter().filter(|t| crate::retry::is_stuck(t.state, t.last_error.as_ref(), now, self.alert_after));
        Ok(stuck.count() as i64)
    }

    pub async fn checkpoint(&self, id: TaskId) -> ControlResult<CheckpointView> {
        self.of_task(id, move |s| Ok((s.get_checkpoint(id)?, s.checkpoint_writer(id)?))).await
    }

    pub async fn events(&self, id: TaskId, limit: i64) -> ControlResult<Vec<TaskEvent>> {
        self.of_task(id, move |s| s.list_events(id, limit)).await
    }

    pub async fn files(&self, id: TaskId) -> ControlResult<Vec<FileRecord>> {
        self.of_task(id, move |s| s.list_files(id)).await
    }

    pub async fn upload_failures(&self, id: TaskId, limit: i64) -> ControlResult<Vec<FileRecord>> {
        self.of_task(id, move |s| s.upload_failures(id, limit)).await
    }

    /// The names of a task's relay users.
    pub async fn relay_users(&self, id: TaskId) -> ControlResult<Vec<String>> {
        self.of_task(id, move |s| s.relay_user_names(id)).await
    }

    /// The task's recovery window. Reads files only to check a switchover the GTID states alone
    /// do not decide.
    pub async fn window(&self, id: TaskId) -> ControlResult<Window> {
        let (data_dir, reader) = (self.layout.root().to_path_buf(), self.reader(id));
        self.store
            .call(move |s| {
                let task = s.get_task(id)?;
                let files = pitr::load_catalog(s, &data_dir, id)?;
                Ok(pitr::window::window(task.spec.source.flavor, &files, &reader))
            })
            .await
            .map_err(read_error(id))
    }

    /// Plans a replay (`GET /api/tasks/{id}/replay`). Reads files only to place GTIDs.
    pub async fn plan_replay(&self, id: TaskId, request: pitr::plan::Request) -> ControlResult<Plan> {
        let (data_dir, reader) = (self.layout.root().to_path_buf(), self.reader(id));
        let planned = self
            .store
            .call(move |s| {
                let task = s.get_task(id)?;
                let files = pitr::load_catalog(s, &data_dir, id)?;
                Ok(pitr::plan::plan(task.spec.source.flavor, &files, &request, &reader))
            })
            .await
            .map_err(read_error(id))?;
        planned.map_err(|e| ControlError::NotCovered(e.0))
    }

    /// One catalogued file of a task, for download: `(task_dir, file)`. `source_identity` picks
    /// one when several sources wrote a file of that name.
    pub async fn locate_file(
        &self,
        id: TaskId,
        name: crate::binlog::name::BinlogFileName,
        source_identity: Option<String>,
    ) -> ControlResult<(PathBuf, PlanFile)> {
        let data_dir = self.layout.root().to_path_buf();
        let files = self.of_task(id, move |s| pitr::load_catalog(s, &data_dir, id)).await?;
        let hits: Vec<&pitr::CatalogFile> = files
            .iter()
            .filter(|f| f.record.file_name == name)
            .filter(|f| source_identity.as_ref().is_none_or(|s| *s == f.record.source_identity))
            .collect();
        let f = match hits.as_slice() {
            [] => return Err(ControlError::Store(StoreError::NotFound)),
            [f] => *f,
            _ => {
                return Err(ControlError::Invalid(vec![FieldError {
                    field: "source_identity",
                    message: format!("{name} exists under several sources; name one"),
                }]));
            }
        };
        let location = f
            .location
            .clone()
            .ok_or_else(|| ControlError::NotCovered(format!("{name} is missing on local disk and in the bucket")))?;
        Ok((
            self.task_dir(id),
            PlanFile {
                name: f.record.file_name.to_string(),
                source_identity: f.record.source_identity.clone(),
                size: f.record.local_offset(f.held_end()),
                location,
                sealed: pitr::files::SealedCopy::of(&f.record),
            },
        ))
    }
}

impl TaskQueries {
    /// Cluster mode: the nodes (`GET /api/workers`).
    pub async fn workers(&self) -> ControlResult<Vec<NodeInfo>> {
        let ttl = self.lease_ttl_ms;
        self.store.call(move |s| s.list_nodes(ttl)).await.map_err(ControlError::Store)
    }

    /// Cluster mode: counts, the nodes, and how many tasks want to run with no live lease
    /// (`GET /api/cluster/overview`).
    pub async fn cluster_overview(&self) -> ControlResult<(ClusterCounts, Vec<NodeInfo>, usize)> {
        let ttl = self.lease_ttl_ms;
        self.store
            .call(move |s| {
                let counts = s.cluster_counts(ttl)?;
                let nodes = s.list_nodes(ttl)?;
                let unplaced = s.unplaced_tasks(100_000)?.len();
                Ok((counts, nodes, unplaced))
            })
            .await
            .map_err(ControlError::Store)
    }

    /// Cluster mode: a task's lease (`GET /api/tasks/{id}/lease`).
    pub async fn lease(&self, id: TaskId) -> ControlResult<Option<Lease>> {
        self.of_task(id, move |s| s.get_lease(id)).await
    }
}

/// Reads transaction starts from the files (local, or fetched from the bucket).
struct LocalTxnReader {
    task_dir: PathBuf,
    objects: Option<Arc<ObjectStore>>,
}

impl pitr::TxnReader for LocalTxnReader {
    fn starts(&self, f: &pitr::CatalogFile) -> std::io::Result<Vec<crate::binlog::summary::TxnStart>> {
        let loc = f.location.as_ref().ok_or_else(|| std::io::Error::other("missing"))?;
        // Planning reads transaction starts only; the bytes are verified when they are served.
        let file = pitr::files::open_location(&self.task_dir, loc, None, self.objects.as_deref())
            .map_err(std::io::Error::other)?;
        let limit = f.record.local_offset(f.held_end());
        crate::binlog::summary::transaction_starts(std::io::BufReader::new(file), limit).map(|(s, _)| s)
    }
}
