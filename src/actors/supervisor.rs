//! `Supervisor`: owns one `TaskActor` per active task and is the only door for control-plane
//! commands (create, update, delete, start, stop) and reads.
//!
//! Update, delete and start run one at a time (`AtomicResponse`); create and stop do not (the
//! store's unique `cluster_key` decides between two creates; a stop waits for the task's actors).
//! The store's conditional updates keep every state change within the state table
//! (`TaskState::allows`), even across processes. Reads run concurrently. It never touches sockets; file work (quarantining a deleted task's files) runs on
//! the blocking pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use slog::{Logger, error, info, o, warn};

use crate::actors::cluster_link::{CoordinatorLink, LeaseCommand, LocalEvent};
use crate::actors::task::{RuntimeStatus, Stop, TaskActor, TaskContext, TaskExited, WakeUploads};
use crate::cluster::LeaseGuard;
use crate::config::Settings;
use crate::domain::{DesiredState, FieldError, Mover, Task, TaskEventType, TaskId, TaskSpec, TaskState};
use crate::meta::leases::Fence;
use crate::meta::{LastError, Store, StoreError, TaskFilter, Transition};
use crate::telemetry::tracing::span;
use crate::upload::ObjectStore;
use opentelemetry::KeyValue;

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
    shutting_down: bool,
    /// The bucket, when upload is enabled.
    objects: Option<Arc<ObjectStore>>,
    /// Cluster mode: the coordinator decides which tasks run here (see `actors::coordinator`).
    coordinator: Option<CoordinatorLink>,
    /// The thread every task's `UploadActor` runs on (see `TaskContext::uploads`).
    uploads: actix::ArbiterHandle,
    /// Each task's durable checkpoint, for the relay (`relay::hub`).
    relay: crate::relay::CheckpointHub,
}

impl Supervisor {
    /// Must run inside an actix `System` (it starts the uploads' arbiter).
    pub fn new(store: Store, settings: Arc<Settings>, objects: Option<Arc<ObjectStore>>, log: Logger) -> Self {
        Supervisor {
            objects,
            store,
            settings,
            log: log.new(o!("actor" => "supervisor")),
            root_log: log,
            tasks: HashMap::new(),
            shutting_down: false,
            coordinator: None,
            uploads: actix::Arbiter::new().handle(),
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
            relay: self.relay.clone(),
        };
        let addr = TaskActor::new(task, tctx).start();
        self.tasks.insert(id, addr);
    }

    fn task_dir(&self, id: TaskId) -> PathBuf {
        self.settings.data_dir.join(id.0.to_string())
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
        let fut = async move {
            store
                .call(|s| {
                    let (all, _) = s.list_tasks(&TaskFilter::default(), i64::MAX, 0)?;
                    let mut resume = Vec::new();
                    for t in all {
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
                    Ok(resume)
                })
                .await
                .map_err(move |e| {
                    error!(log, "cannot load tasks to resume"; "error" => %e);
                    e
                })
        };
        ctx.wait(fut.into_actor(self).map(|res, act, ctx| {
            if let Ok(tasks) = res {
                for t in tasks {
                    info!(act.log, "resuming task"; "task_id" => t.id.0);
                    act.spawn_task(t, None, ctx);
                }
            }
        }));
    }
}

macro_rules! store_call {
    ($store:expr, |$s:ident| $body:expr) => {{
        let store = $store.clone();
        async move { store.call(move |$s| $body).await }
    }};
}

/// Creates a task (STOPPED).
#[derive(Message)]
#[rtype(result = "ControlResult<Task>")]
pub struct CreateTask(pub TaskSpec);

impl Handler<CreateTask> for Supervisor {
    type Result = ResponseFuture<ControlResult<Task>>;

    fn handle(&mut self, msg: CreateTask, _: &mut Context<Self>) -> Self::Result {
        let key = msg.0.cluster_key.clone();
        let max_tasks = self.settings.max_tasks;
        let fut = store_call!(self.store, |s| s.create_task_within(&msg.0, max_tasks));
        Box::pin(async move {
            fut.await.map_err(|e| match e {
                StoreError::Duplicate(_) => ControlError::AlreadyExists(key),
                other => ControlError::Store(other),
            })
        })
    }
}

/// Creates several tasks (STOPPED) in one metadata transaction: all or none.
#[derive(Message)]
#[rtype(result = "ControlResult<Vec<Task>>")]
pub struct CreateTasks(pub Vec<TaskSpec>);

impl Handler<CreateTasks> for Supervisor {
    type Result = ResponseFuture<ControlResult<Vec<Task>>>;

    fn handle(&mut self, msg: CreateTasks, _: &mut Context<Self>) -> Self::Result {
        let keys = msg.0.iter().map(|s| s.cluster_key.as_str()).collect::<Vec<_>>().join(", ");
        let max_tasks = self.settings.max_tasks;
        let fut = store_call!(self.store, |s| s.create_tasks_within(&msg.0, max_tasks));
        Box::pin(async move {
            fut.await.map_err(|e| match e {
                // Another client took a key between the handler's check and this transaction.
                StoreError::Duplicate(_) => ControlError::AlreadyExists(format!("among {keys}")),
                other => ControlError::Store(other),
            })
        })
    }
}

/// Replaces a task's spec (only while it is idle). `keep_password` reuses the stored one, as far
/// as `domain::kept_password` allows.
#[derive(Message)]
#[rtype(result = "ControlResult<Task>")]
pub struct UpdateTask {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub keep_password: bool,
}

impl Handler<UpdateTask> for Supervisor {
    type Result = AtomicResponse<Self, ControlResult<Task>>;

    fn handle(&mut self, msg: UpdateTask, _: &mut Context<Self>) -> Self::Result {
        let UpdateTask { id, mut spec, keep_password } = msg;
        let key = spec.cluster_key.clone();
        let fut = store_call!(self.store, |s| {
            let current = s.get_task(id)?;
            if keep_password {
                match crate::domain::kept_password(&current.spec.source, &spec.source) {
                    Ok(password) => spec.source.password = password,
                    Err(refused) => return Ok(Err(refused)),
                }
            }
            let updated = s.update_task(id, &spec)?;
            // A new start position means a new beginning: the old checkpoint no longer applies.
            if current.spec.start != updated.spec.start {
                s.reset_checkpoint(id)?;
            }
            Ok(Ok(updated))
        });
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, _, _| match res {
            Ok(Ok(task)) => Ok(task),
            Ok(Err(refused)) => Err(ControlError::Invalid(vec![refused])),
            Err(StoreError::Duplicate(_)) => Err(ControlError::AlreadyExists(key)),
            Err(other) => Err(ControlError::from_store(other, Some(id), "update")),
        })))
    }
}

/// Deletes an idle task's metadata and moves its files aside (or removes them with `purge`).
#[derive(Message)]
#[rtype(result = "ControlResult<()>")]
pub struct DeleteTask {
    pub id: TaskId,
    pub purge_files: bool,
}

impl Handler<DeleteTask> for Supervisor {
    type Result = AtomicResponse<Self, ControlResult<()>>;

    fn handle(&mut self, msg: DeleteTask, _: &mut Context<Self>) -> Self::Result {
        let id = msg.id;
        let dir = self.task_dir(id);
        let trash = self.settings.data_dir.join(".deleted");
        let log = self.log.clone();
        let fut = store_call!(self.store, |s| {
            s.delete_task(id)?;
            crate::telemetry::metrics::metrics().forget_task(id);
            // Files are the product: a delete keeps them unless asked, moved where nothing will
            // mistake them for a live task's (ids are not reused, but MySQL 5.7 can reuse one).
            if dir.exists() {
                let res = if msg.purge_files {
                    std::fs::remove_dir_all(&dir)
                } else {
                    std::fs::create_dir_all(&trash).and_then(|_| {
                        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
                        std::fs::rename(&dir, trash.join(format!("{}-{stamp}", id.0)))
                    })
                };
                if let Err(e) = res {
                    warn!(log, "task deleted but its files could not be moved"; "task_id" => id.0, "dir" => %dir.display(), "error" => %e);
                }
            }
            Ok(())
        });
        AtomicResponse::new(Box::pin(
            fut.into_actor(self).map(move |res, _, _| res.map_err(|e| ControlError::from_store(e, Some(id), "delete"))),
        ))
    }
}

/// Starts a STOPPED or FAILED task.
#[derive(Message)]
#[rtype(result = "ControlResult<Task>")]
pub struct StartTask(pub TaskId);

impl Handler<StartTask> for Supervisor {
    type Result = AtomicResponse<Self, ControlResult<Task>>;

    fn handle(&mut self, msg: StartTask, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0;
        let span = span("task.start", vec![KeyValue::new("task.id", id.0)]);
        let shutting_down = self.shutting_down;
        let fut = store_call!(self.store, |s| {
            if shutting_down {
                return Err(StoreError::Unavailable("shutting down".into()));
            }
            if s.get_task(id)?.spec.start.is_archive_only() {
                return Ok(None);
            }
            s.transition(
                id,
                Transition::to(TaskState::Starting, Mover::Operator)
                    .desired(DesiredState::Running)
                    .last_error(LastError::Clear)
                    .event(TaskEventType::TaskStarted, "start requested"),
            )
            .map(Some)
        });
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let _span = span;
            if shutting_down {
                return Err(ControlError::ShuttingDown);
            }
            let task = res
                .map_err(|e| ControlError::from_store(e, Some(id), "start"))?
                .ok_or(ControlError::ArchiveOnly(id))?;
            if act.cluster_mode() {
                // Whichever node has room takes its lease (this one is told to look now).
                if let Some(c) = &act.coordinator {
                    c.events.do_send(LocalEvent::PlaceNow);
                }
            } else {
                act.spawn_task(task.clone(), None, ctx);
            }
            Ok(task)
        })))
    }
}

/// Stops a task and waits (bounded) until its files are flushed and its checkpoint saved.
#[derive(Message)]
#[rtype(result = "ControlResult<Task>")]
pub struct StopTask(pub TaskId);

/// Finishes a stop that no task actor will finish: STOPPING becomes STOPPED, with a TASK_STOPPED
/// event saying `why`.
async fn finish_stop(store: &Store, id: TaskId, why: &'static str) -> Result<Task, StoreError> {
    store
        .call(move |s| {
            s.transition(id, Transition::to(TaskState::Stopped, Mover::Operator).event(TaskEventType::TaskStopped, why))
        })
        .await
}

impl Handler<StopTask> for Supervisor {
    type Result = ResponseActFuture<Self, ControlResult<Task>>;

    fn handle(&mut self, msg: StopTask, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0;
        let deadline = Duration::from_secs(self.settings.shutdown_timeout_sec.max(1));
        let store = self.store.clone();
        let stop_store = store.clone();
        let cluster = self.cluster_mode();
        let span = span("task.stop", vec![KeyValue::new("task.id", id.0)]);
        let recorded = async move {
            let task =
                store.call(move |s| s.get_task(id)).await.map_err(|e| ControlError::from_store(e, Some(id), "stop"))?;
            if task.state == TaskState::Failed {
                // A failed task has no actors left; stopping it only records the intent.
                return store
                    .call(move |s| {
                        s.transition(
                            id,
                            Transition::to(TaskState::Stopped, Mover::Operator)
                                .desired(DesiredState::Stopped)
                                .event(TaskEventType::TaskStopped, "stop requested"),
                        )
                    })
                    .await
                    .map(Some)
                    .map_err(|e| ControlError::from_store(e, Some(id), "stop"));
            }
            store
                .call(move |s| {
                    s.transition(
                        id,
                        Transition::to(TaskState::Stopping, Mover::Operator).desired(DesiredState::Stopped),
                    )
                })
                .await
                .map_err(|e| ControlError::from_store(e, Some(id), "stop"))?;
            Ok(None)
        };
        // The actor is looked up once STOPPING is recorded, not when the request arrived: a
        // start handled in between may have spawned one, which would otherwise keep running
        // (and fight the next start's actor for the source) while the task says STOPPED.
        Box::pin(recorded.into_actor(self).then(move |res, act, _| {
            let actor = act.tasks.get(&id).cloned();
            let rounds = act.coordinator.as_ref().map(|c| c.rounds.clone());
            let store = stop_store;
            async move {
                let _span = span;
                if let Some(done) = res? {
                    return Ok(done);
                }
                match actor {
                    Some(addr) if addr.connected() => {
                        match tokio::time::timeout(deadline, addr.send(Stop)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => {} // the actor already ended; its exit path recorded the state
                            Err(_) => return Err(ControlError::Timeout(id)),
                        }
                    }
                    _ if cluster => {
                        // Another node runs it: its coordinator sees the request and stops it.
                        // If no node holds its lease, nobody will: finish the transition here.
                        // The store is the only channel between nodes, so look at it again after
                        // each of this node's coordinator rounds (every node runs them at the
                        // same pace).
                        let Some(mut rounds) = rounds else { return Err(ControlError::ShuttingDown) };
                        rounds.borrow_and_update();
                        let until = tokio::time::Instant::now() + deadline;
                        let mut expired = false;
                        loop {
                            let (state, live) = store
                                .call(move |s| {
                                    let t = s.get_task(id)?;
                                    let live = s.get_lease(id)?.is_some_and(|l| l.live);
                                    Ok((t.state, live))
                                })
                                .await
                                .map_err(|e| ControlError::from_store(e, Some(id), "stop"))?;
                            if !state.is_active() {
                                break;
                            }
                            if !live {
                                let _ = finish_stop(&store, id, "stopped (no node held its lease)").await;
                                break;
                            }
                            if expired {
                                return Err(ControlError::Timeout(id));
                            }
                            match tokio::time::timeout_at(until, rounds.changed()).await {
                                Ok(Ok(())) => {}
                                // The coordinator is gone: the process is shutting down.
                                Ok(Err(_)) => return Err(ControlError::ShuttingDown),
                                Err(_) => expired = true,
                            }
                        }
                    }
                    _ => {
                        // No actor (e.g. it died): finish the transition here.
                        finish_stop(&store, id, "stopped")
                            .await
                            .map_err(|e| ControlError::from_store(e, Some(id), "stop"))?;
                    }
                }
                store.call(move |s| s.get_task(id)).await.map_err(|e| ControlError::from_store(e, Some(id), "stop"))
            }
            .into_actor(act)
        }))
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

// --- cluster mode: the coordinator's side of `cluster_link` ---------------------------------------

/// Wires the coordinator in (cluster mode, once at start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCoordinator(pub CoordinatorLink);

impl Handler<SetCoordinator> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: SetCoordinator, _: &mut Context<Self>) {
        self.coordinator = Some(msg.0);
    }
}

impl Handler<LeaseCommand> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: LeaseCommand, ctx: &mut Context<Self>) -> Self::Result {
        match msg {
            LeaseCommand::Run { task, guard, fence } => {
                let id = task.id;
                if !self.shutting_down && !self.tasks.get(&id).is_some_and(|a| a.connected()) {
                    info!(self.log, "running task under lease"; "task_id" => id.0, "epoch" => fence.epoch);
                    self.spawn_task(task, Some((guard, fence)), ctx);
                }
                Box::pin(async {})
            }
            LeaseCommand::Relinquish { id, reason } => {
                let actor = self.tasks.remove(&id);
                Box::pin(async move {
                    if let Some(a) = actor {
                        let _ = a.send(crate::actors::task::Relinquish { reason }).await;
                    }
                })
            }
            LeaseCommand::Stop(id) => {
                let actor = self.tasks.get(&id).cloned();
                let deadline = Duration::from_secs(self.settings.shutdown_timeout_sec.max(1));
                Box::pin(async move {
                    if let Some(a) = actor {
                        let _ = tokio::time::timeout(deadline, a.send(Stop)).await;
                    }
                })
            }
            LeaseCommand::Health { id, degraded } => {
                if let Some(a) = self.tasks.get(&id) {
                    a.do_send(crate::actors::task::LeaseDegraded(degraded));
                }
                Box::pin(async {})
            }
        }
    }
}

/// Replaces a task's relay users (only their password hashes are stored). Replies with the names.
#[derive(Message)]
#[rtype(result = "ControlResult<Vec<String>>")]
pub struct SetRelayUsers {
    pub id: TaskId,
    pub users: Vec<(String, crate::relay::auth::UserHashes)>,
}

impl Handler<SetRelayUsers> for Supervisor {
    type Result = ResponseFuture<ControlResult<Vec<String>>>;

    fn handle(&mut self, msg: SetRelayUsers, _: &mut Context<Self>) -> Self::Result {
        let id = msg.id;
        let log = self.log.clone();
        let fut = store_call!(self.store, |s| {
            s.set_relay_users(id, &msg.users)?;
            s.relay_user_names(id)
        });
        Box::pin(async move {
            let names = fut.await.map_err(|e| match e {
                StoreError::Duplicate(_) => ControlError::Invalid(vec![crate::domain::FieldError {
                    field: "users",
                    message: "a relay user name is already granted another task (names are unique across tasks)".into(),
                }]),
                e => ControlError::from_store(e, Some(id), "set relay users"),
            })?;
            slog::info!(log, "relay users set"; "task_id" => id.0, "users" => names.join(","));
            Ok(names)
        })
    }
}

/// Operator retry: makes up to `limit` failed uploads due now and wakes the task's uploader.
#[derive(Message)]
#[rtype(result = "ControlResult<usize>")]
pub struct RetryUploads {
    pub id: TaskId,
    pub limit: i64,
}

impl Handler<RetryUploads> for Supervisor {
    type Result = ResponseFuture<ControlResult<usize>>;

    fn handle(&mut self, msg: RetryUploads, _: &mut Context<Self>) -> Self::Result {
        let RetryUploads { id, limit } = msg;
        let actor = self.tasks.get(&id).cloned();
        let fut = store_call!(self.store, |s| {
            s.get_task(id)?;
            s.retry_uploads(id, limit)
        });
        Box::pin(async move {
            let n = fut.await.map_err(|e| ControlError::from_store(e, Some(id), "update"))?;
            if let Some(a) = actor {
                a.do_send(WakeUploads);
            }
            Ok(n)
        })
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
