//! `Supervisor`: owns one `TaskActor` per active task and is the only door for control-plane
//! commands (create, update, delete, start, stop; `commands`, `stop`) and, in cluster mode, for
//! what the coordinator asks (`cluster`). Reads do not come here: `queries::TaskQueries` serves
//! them, and `GetRuntime` answers what only a running task knows.
//!
//! Update, delete and start run one at a time (`AtomicResponse`); create and stop do not (the
//! store's unique `cluster_key` decides between two creates; a stop waits for the task's actors).
//! The store's conditional updates keep every state change within the state table
//! (`TaskState::allows`), even across processes. It never touches sockets; file work
//! (quarantining a deleted task's files) runs on the blocking pool.

mod archive;
mod cluster;
mod commands;
mod stop;

pub use archive::{FilesImported, runs_uploader};
pub use cluster::SetCoordinator;
pub use commands::{CreateTask, CreateTasks, DeleteTask, RetryUploads, SetRelayUsers, StartTask, UpdateTask};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
pub use stop::StopTask;

use actix::prelude::*;
use slog::{Logger, error, info, o, warn};

use crate::actors::cluster_link::{CoordinatorLink, LocalEvent};
use crate::actors::task::{RuntimeStatus, TaskActor, TaskContext, TaskExited};
use crate::cluster::LeaseGuard;
use crate::config::Settings;
use crate::domain::{DesiredState, FieldError, Mover, Task, TaskEventType, TaskId, TaskState};
use crate::layout::DataLayout;
use crate::meta::leases::Fence;
use crate::meta::{Store, StoreError, TaskFilter, Transition};
use crate::upload::ObjectStore;

/// Why a control-plane command was refused or failed. The API maps each variant to a status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("task {0} not found")]
    NotFound(TaskId),
    #[error("a task with cluster_key {0:?} already exists")]
    AlreadyExists(String),
    #[error("cannot {action} task {id}: it is {state}")]
    InvalidTransition { id: TaskId, state: TaskState, action: &'static str },
    #[error("invalid request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("task {0} did not stop within the deadline")]
    Timeout(TaskId),
    #[error("{0}")]
    NotCovered(String),
    #[error("task {0} is ARCHIVE_ONLY: it never connects to a source (add files with `binlog-server import`)")]
    ArchiveOnly(TaskId),
    #[error(transparent)]
    Store(StoreError),
}

impl ControlError {
    pub(crate) fn from_store(e: StoreError, id: Option<TaskId>, action: &'static str) -> Self {
        match (e, id) {
            (StoreError::NotFound, Some(id)) => ControlError::NotFound(id),
            (StoreError::Conflict(state), Some(id)) => ControlError::InvalidTransition { id, state, action },
            (other, _) => ControlError::Store(other),
        }
    }
}

pub type ControlResult<T> = Result<T, ControlError>;

pub struct Supervisor {
    store: Store,
    settings: Arc<Settings>,
    log: Logger,
    root_log: Logger,
    tasks: HashMap<TaskId, Addr<TaskActor>>,
    /// The uploaders of ARCHIVE_ONLY tasks, which never run (see `archive`).
    archives: HashMap<TaskId, Addr<crate::actors::upload::UploadActor>>,
    shutting_down: bool,
    /// The bucket, when upload is enabled.
    objects: Option<Arc<ObjectStore>>,
    /// Cluster mode: the coordinator decides which tasks run here (see `actors::coordinator`).
    coordinator: Option<CoordinatorLink>,
    /// The thread every task's `UploadActor` runs on (see `TaskContext::uploads`).
    uploads: actix::ArbiterHandle,
    /// The threads every task's writer does its blocking work on (see `TaskContext::writers`).
    writers: crate::actors::file_writer::WriterPool,
    /// Each task's durable checkpoint, for the relay (`relay::hub`).
    relay: crate::relay::CheckpointHub,
}

impl Supervisor {
    /// Runs `f` on the store (on the blocking pool); the future owns what it needs.
    fn call<T, F>(&self, f: F) -> impl std::future::Future<Output = Result<T, StoreError>> + use<T, F>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.store.clone();
        async move { store.call(f).await }
    }

    /// Must run inside an actix `System` (it starts the uploads' arbiter).
    pub fn new(store: Store, settings: Arc<Settings>, objects: Option<Arc<ObjectStore>>, log: Logger) -> Self {
        let writers = crate::actors::file_writer::WriterPool::new(settings.writer.threads)
            .expect("a runtime without drivers builds");
        Supervisor {
            objects,
            store,
            settings,
            log: log.new(o!("actor" => "supervisor")),
            root_log: log,
            tasks: HashMap::new(),
            archives: HashMap::new(),
            shutting_down: false,
            coordinator: None,
            uploads: actix::Arbiter::new().handle(),
            writers,
            relay: crate::relay::CheckpointHub::default(),
        }
    }

    /// Shares `hub` with the relay: task writers publish their durable checkpoints there.
    pub fn with_relay(mut self, hub: crate::relay::CheckpointHub) -> Self {
        self.relay = hub;
        self
    }

    fn cluster_mode(&self) -> bool {
        self.settings.mode == crate::config::Mode::Cluster
    }

    /// Starts a task's actors; in cluster mode under `lease`, with a store fenced by it.
    fn spawn_task(&mut self, task: Task, lease: Option<(LeaseGuard, Fence)>, ctx: &mut Context<Self>) {
        let id = task.id;
        let (store, guard) = match lease {
            Some((guard, fence)) => (self.store.fenced(fence), Some(guard)),
            None => (self.store.clone(), None),
        };
        let tctx = TaskContext {
            store,
            settings: self.settings.clone(),
            log: self.root_log.new(o!("task_id" => id.0)),
            supervisor: ctx.address().recipient(),
            objects: self.objects.clone(),
            lease: guard,
            uploads: self.uploads.clone(),
            writers: self.writers.clone(),
            relay: self.relay.clone(),
        };
        let addr = TaskActor::new(task, tctx).start();
        self.tasks.insert(id, addr);
    }

    fn layout(&self) -> DataLayout {
        DataLayout::new(&self.settings.data_dir)
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.cluster_mode() {
            // Tasks run where the coordinator places them; rows are repaired there too.
            return;
        }
        // Bring back what the operator wants running; repair rows a killed process left behind.
        let store = self.store.clone();
        let log = self.log.clone();
        let data_dir = self.settings.data_dir.clone();
        let recover_log = self.log.clone();
        let fut = async move {
            store
                .call(move |s| {
                    let (all, _) = s.list_tasks(&TaskFilter::default(), i64::MAX, 0)?;
                    let mut resume = Vec::new();
                    let mut archives = Vec::new();
                    for t in all {
                        if t.spec.start.is_archive_only() {
                            archives.push(t.clone());
                        }
                        match t.desired_state {
                            // A failed task waits for its operator, restart or not.
                            DesiredState::Running if t.state == TaskState::Failed => {}
                            DesiredState::Running => {
                                let resumed = Transition::to(TaskState::Starting, Mover::Repair)
                                    .event(TaskEventType::TaskStarted, "resumed at process start");
                                resume.push(s.transition(t.id, resumed)?);
                            }
                            DesiredState::Stopped if t.state.is_active() => {
                                s.transition(t.id, Transition::to(TaskState::Stopped, Mover::Repair))?;
                            }
                            DesiredState::Stopped => {}
                        }
                    }
                    // What an import killed between a rename and its catalogue row left (no
                    // task runs yet; an import running meanwhile holds its task's lock).
                    for t in s.list_tasks(&TaskFilter::default(), i64::MAX, 0)?.0 {
                        if resume.iter().any(|r: &Task| r.id == t.id) {
                            continue;
                        }
                        recover_import(s, &data_dir, t.id, &recover_log);
                    }
                    Ok((resume, archives))
                })
                .await
                .map_err(move |e| {
                    error!(log, "cannot load tasks to resume"; "error" => %e);
                    e
                })
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            if let Ok((tasks, archives)) = res {
                for t in tasks {
                    info!(act.log, "resuming task"; "task_id" => t.id.0);
                    act.spawn_task(t, None, ctx);
                }
                for t in archives {
                    act.sync_archive(t.id, Some(&t));
                }
            }
        }));
    }
}

/// Undoes an interrupted import of task `id` (`import::run::recover_interrupted`), unless an
/// import of it is running now. Blocking.
fn recover_import(store: &Store, data_dir: &std::path::Path, id: TaskId, log: &Logger) {
    use crate::import::run;
    if !DataLayout::new(data_dir).import_staging(id).exists() {
        return; // no import was interrupted (and no lock file is created for nothing)
    }
    let res = run::try_lock(data_dir, id).and_then(|lock| match lock {
        Some(_held) => run::recover_interrupted(store, data_dir, id),
        None => Ok(Vec::new()),
    });
    match res {
        Ok(removed) if removed.is_empty() => {}
        Ok(removed) => {
            warn!(log, "removed what an interrupted import left"; "task_id" => id.0, "files" => removed.join(","))
        }
        Err(e) => error!(log, "cannot undo an interrupted import"; "task_id" => id.0, "error" => %e),
    }
}

/// A TaskActor ended (stopped or failed); forget its address.
impl Handler<TaskExited> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: TaskExited, _: &mut Context<Self>) {
        // Only the actor that ended leaves the table: after a lease was taken again, a newer
        // actor may run the task already.
        if self.tasks.get(&msg.id).is_some_and(|a| *a == msg.actor) {
            self.tasks.remove(&msg.id);
        }
        if let Some(c) = &self.coordinator {
            c.events.do_send(LocalEvent::TaskEnded { id: msg.id, epoch: msg.epoch });
        }
    }
}

/// What only a task's running actors know (`None` when it does not run here).
#[derive(Message)]
#[rtype(result = "Option<RuntimeStatus>")]
pub struct GetRuntime(pub TaskId);

impl Handler<GetRuntime> for Supervisor {
    type Result = ResponseFuture<Option<RuntimeStatus>>;

    fn handle(&mut self, msg: GetRuntime, _: &mut Context<Self>) -> Self::Result {
        let actor = self.tasks.get(&msg.0).cloned();
        Box::pin(async move {
            match actor {
                Some(a) => a.send(crate::actors::task::GetStatus).await.ok(),
                None => None,
            }
        })
    }
}

/// Graceful shutdown: stop every task (flush, fsync, checkpoint) without changing what the
/// operator asked for, so they resume at the next start. Bounded by `shutdown_timeout_sec`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        self.stop_archives();
        let actors: Vec<(TaskId, Addr<TaskActor>)> = self.tasks.iter().map(|(k, v)| (*k, v.clone())).collect();
        let deadline = Duration::from_secs(self.settings.shutdown_timeout_sec.max(1));
        let log = self.log.clone();
        info!(log, "stopping tasks for shutdown"; "tasks" => actors.len());
        Box::pin(
            async move {
                let stops = actors.into_iter().map(|(id, a)| {
                    let log = log.clone();
                    async move {
                        match tokio::time::timeout(deadline, a.send(crate::actors::task::Shutdown)).await {
                            Ok(_) => {}
                            Err(_) => warn!(log, "task did not stop before the shutdown deadline"; "task_id" => id.0),
                        }
                    }
                });
                futures_util::future::join_all(stops).await;
            }
            .into_actor(self),
        )
    }
}
