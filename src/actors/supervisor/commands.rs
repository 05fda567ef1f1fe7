//! The supervisor's commands that change a task's row: create, update, delete, start, relay
//! users, upload retry. Update, delete and start run one at a time (`AtomicResponse`).

use actix::prelude::*;
use opentelemetry::KeyValue;
use slog::warn;

use super::{ControlError, ControlResult, Supervisor};
use crate::actors::cluster_link::LocalEvent;
use crate::actors::task::WakeUploads;
use crate::actors::upload::UploadNow;
use crate::domain::{DesiredState, Mover, Task, TaskEventType, TaskId, TaskSpec, TaskState};
use crate::layout::DataLayout;
use crate::meta::{LastError, Store, StoreError, Transition};
use crate::telemetry::tracing::span;

/// Creates a task (STOPPED).
#[derive(Message)]
#[rtype(result = "ControlResult<Task>")]
pub struct CreateTask(pub TaskSpec);

impl Handler<CreateTask> for Supervisor {
    type Result = ResponseActFuture<Self, ControlResult<Task>>;

    fn handle(&mut self, msg: CreateTask, _: &mut Context<Self>) -> Self::Result {
        let key = msg.0.cluster_key.clone();
        let max_tasks = self.settings.max_tasks;
        let (layout, log) = (self.layout(), self.log.clone());
        let fut = self.call(move |s| {
            let task = s.create_task_within(&msg.0, max_tasks)?;
            set_aside_leftover_folder(s, &layout, task.id, &log);
            Ok(task)
        });
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            let task = res.map_err(|e| match e {
                StoreError::Duplicate(_) => ControlError::AlreadyExists(key),
                other => ControlError::Store(other),
            })?;
            act.sync_archive(task.id, Some(&task));
            Ok(task)
        }))
    }
}

/// A new task's folder is its own: one already there was left by a task this catalog does not
/// know (created after the `meta.db` backup the catalog was restored from, which hands its id out
/// again; or a MySQL 5.7 store reusing an id after a restart). It is moved to
/// `{data_dir}/.stale/{task}-{time}`, never deleted and never mixed with the new task's files.
/// A failed move is logged: the task's start then sets aside what it does not know, file by file.
fn set_aside_leftover_folder(store: &Store, layout: &DataLayout, id: TaskId, log: &slog::Logger) {
    let dir = layout.task_dir(id);
    if !dir.exists() {
        return;
    }
    let to = layout.stale_copy_now(id);
    match move_folder(layout, &dir, &to) {
        Ok(()) => {
            warn!(log, "a new task's folder held files of a task this catalog does not know (a metadata \
                        database restored from an older backup?); set aside";
                "task_id" => id.0, "dir" => %dir.display(), "to" => %to.display());
            let note = format!(
                "the folder {} held files of a task this catalog does not know (a metadata database restored \
                 from an older backup?): moved whole to {} (kept, never read)",
                dir.display(),
                to.display()
            );
            if let Err(e) = store.append_event(id, TaskEventType::FilesSetAside, &note) {
                warn!(log, "the folder set aside could not be recorded as a task event"; "task_id" => id.0, "error" => %e);
            }
        }
        Err(e) => warn!(log, "a new task's folder holds files of a task this catalog does not know, and could not \
                              be set aside"; "task_id" => id.0, "dir" => %dir.display(), "error" => %e),
    }
}

/// Moves a task's folder `dir` to `to` (its parent created if need be) so that the move survives
/// a power cut: the new name by its folder's fsync, the old name's absence by the data dir's.
fn move_folder(layout: &DataLayout, dir: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    let parent = to.parent().unwrap_or(layout.root());
    std::fs::create_dir_all(parent)?;
    std::fs::rename(dir, to)?;
    sync_dir(parent)?;
    sync_dir(layout.root())
}

fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all())
}

/// Creates several tasks (STOPPED) in one metadata transaction: all or none.
#[derive(Message)]
#[rtype(result = "ControlResult<Vec<Task>>")]
pub struct CreateTasks(pub Vec<TaskSpec>);

impl Handler<CreateTasks> for Supervisor {
    type Result = ResponseActFuture<Self, ControlResult<Vec<Task>>>;

    fn handle(&mut self, msg: CreateTasks, _: &mut Context<Self>) -> Self::Result {
        let keys = msg.0.iter().map(|s| s.cluster_key.as_str()).collect::<Vec<_>>().join(", ");
        let max_tasks = self.settings.max_tasks;
        let (layout, log) = (self.layout(), self.log.clone());
        let fut = self.call(move |s| {
            let tasks = s.create_tasks_within(&msg.0, max_tasks)?;
            for t in &tasks {
                set_aside_leftover_folder(s, &layout, t.id, &log);
            }
            Ok(tasks)
        });
        Box::pin(fut.into_actor(self).map(move |res, act, _| {
            let tasks = res.map_err(|e| match e {
                // Another client took a key between the handler's check and this transaction.
                StoreError::Duplicate(_) => ControlError::AlreadyExists(format!("among {keys}")),
                other => ControlError::Store(other),
            })?;
            for t in &tasks {
                act.sync_archive(t.id, Some(t));
            }
            Ok(tasks)
        }))
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
        let fut = self.call(move |s| {
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
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, _| match res {
            Ok(Ok(task)) => {
                // A new uploader: the spec it was started with (the cluster_key names objects) changed.
                act.sync_archive(id, None);
                act.sync_archive(id, Some(&task));
                Ok(task)
            }
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
        let layout = self.layout();
        let dir = layout.task_dir(id);
        let log = self.log.clone();
        let fut = self.call(move |s| {
            s.delete_task(id)?;
            crate::telemetry::metrics::metrics().forget_task(id);
            // Files are the product: a delete keeps them unless asked, moved where nothing will
            // mistake them for a live task's (ids are not reused, but MySQL 5.7 can reuse one).
            if dir.exists() {
                // The move (or removal) must survive a power cut, or the folder comes back where
                // a task of this id keeps its files.
                let res = if msg.purge_files {
                    std::fs::remove_dir_all(&dir).and_then(|()| sync_dir(layout.root()))
                } else {
                    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S").to_string();
                    move_folder(&layout, &dir, &layout.deleted_copy(id, &stamp))
                };
                if let Err(e) = res {
                    warn!(log, "task deleted but its files could not be moved"; "task_id" => id.0, "dir" => %dir.display(), "error" => %e);
                }
            }
            Ok(())
        });
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, _| {
            res.map_err(|e| ControlError::from_store(e, Some(id), "delete"))?;
            act.sync_archive(id, None);
            Ok(())
        })))
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
        let fut = self.call(move |s| {
            if shutting_down {
                return Err(StoreError::ShuttingDown);
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
        let fut = self.call(move |s| {
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
        let archive = self.archives.get(&id).cloned();
        let fut = self.call(move |s| {
            s.get_task(id)?;
            s.retry_uploads(id, limit)
        });
        Box::pin(async move {
            let n = fut.await.map_err(|e| ControlError::from_store(e, Some(id), "update"))?;
            if let Some(a) = actor {
                a.do_send(WakeUploads);
            }
            if let Some(a) = archive {
                a.do_send(UploadNow);
            }
            Ok(n)
        })
    }
}
