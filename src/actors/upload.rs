//! `UploadActor`: one per running task. Uploads the task's sealed files to the bucket, one at a
//! time, oldest first, verifies each, and applies retention on a timer.
//!
//! Replication never waits for it: the writer only records a sealed file in the catalog (the
//! queue), and this actor reads the catalog. A failed upload becomes UPLOAD_FAILED with its
//! reason and a retry time (capped exponential backoff with jitter); S3 being down only grows
//! the backlog (`binlog_server_upload_backlog_files`). Stopping drops an upload in flight: its
//! row stays UPLOADING and is uploaded again at the next start, and an unfinished multipart
//! upload is aborted then (`abort_stale_multiparts`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span as _, Status};
use rand::Rng;
use slog::{Logger, debug, info, warn};

use crate::domain::TaskId;
use crate::meta::Store;
use crate::telemetry::metrics::metrics;
use crate::telemetry::tracing as otel;
use crate::upload::{ObjectStore, retention};

/// How often the actor looks at the queue when nothing told it to (a safety net; sealing a
/// file and retry-upload wake it at once).
const IDLE_POLL: Duration = Duration::from_secs(30);

pub struct UploadParams {
    pub task_id: TaskId,
    pub cluster_key: String,
    pub data_dir: PathBuf,
    pub store: Store,
    /// `None` when upload is disabled: the actor then only applies local retention.
    pub objects: Option<Arc<ObjectStore>>,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub retention_interval: Duration,
    pub log: Logger,
    /// Cluster mode: nothing is uploaded or deleted once this node's lease is not valid.
    pub guard: Option<crate::cluster::LeaseGuard>,
}

impl UploadParams {
    /// The uploader of `task` under `settings` (a running task's, or an archive-only task's).
    pub fn for_task(
        settings: &crate::config::Settings,
        task: &crate::domain::Task,
        store: Store,
        objects: Option<Arc<ObjectStore>>,
        log: Logger,
        guard: Option<crate::cluster::LeaseGuard>,
    ) -> Self {
        let up = &settings.upload;
        UploadParams {
            task_id: task.id,
            cluster_key: task.spec.cluster_key.clone(),
            data_dir: settings.data_dir.clone(),
            store,
            objects,
            retry_initial: Duration::from_secs(up.retry_initial_sec),
            retry_max: Duration::from_secs(up.retry_max_sec),
            retention_interval: Duration::from_secs(settings.storage.retention_interval_sec),
            log,
            guard,
        }
    }
}

/// A file was sealed and hashed, or an operator asked for a retry: look at the queue now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UploadNow;

/// Stop now; an upload in flight is abandoned (and redone at the next start).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopUploads;

enum Step {
    /// One file was handled (uploaded or failed): look again at once.
    Handled,
    /// Nothing due; the earliest retry is at this time, if any.
    Idle(Option<chrono::DateTime<chrono::Utc>>),
    /// The catalog could not be read: try again later.
    StoreDown,
}

pub struct UploadActor {
    p: Arc<UploadParams>,
    busy: bool,
    again: bool,
    timer: Option<SpawnHandle>,
    label: String,
}

impl UploadActor {
    pub fn new(p: UploadParams) -> Self {
        let label = p.task_id.0.to_string();
        UploadActor { p: Arc::new(p), busy: false, again: false, timer: None, label }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        if let Some(h) = self.timer.take() {
            ctx.cancel_future(h);
        }
        self.busy = true;
        self.again = false;
        let p = self.p.clone();
        ctx.spawn(async move { step(&p).await }.into_actor(self).map(|step, act, ctx| {
            act.busy = false;
            act.refresh_backlog(ctx);
            let wait = match step {
                Step::Handled => Duration::ZERO,
                _ if act.again => Duration::ZERO,
                Step::Idle(due) => {
                    let now = act.p.store.clock().now();
                    due.map(|t| (t - now).to_std().unwrap_or(Duration::ZERO)).unwrap_or(IDLE_POLL).min(IDLE_POLL)
                }
                Step::StoreDown => Duration::from_secs(5),
            };
            act.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.kick(ctx);
            }));
        }));
    }

    fn refresh_backlog(&mut self, ctx: &mut Context<Self>) {
        let (store, id, label) = (self.p.store.clone(), self.p.task_id, self.label.clone());
        ctx.spawn(
            async move {
                if let Ok(n) = store.call(move |s| s.upload_backlog(id)).await {
                    metrics().upload_backlog.with_label_values(&[&label]).set(n);
                }
            }
            .into_actor(self),
        );
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        if self.p.guard.as_ref().is_some_and(|g| !g.is_valid()) {
            return;
        }
        let p = self.p.clone();
        ctx.spawn(
            async move {
                let clock = p.store.clock().clone();
                match retention::sweep(&p.store, p.objects.as_deref(), p.task_id, &p.data_dir, &clock, &p.log).await {
                    Ok(r) if !r.deleted_local.is_empty() || !r.deleted_remote.is_empty() => {
                        info!(p.log, "retention applied"; "local_deleted" => r.deleted_local.len(),
                              "objects_deleted" => r.deleted_remote.len(), "held_for_upload" => r.held_for_upload)
                    }
                    Ok(r) => debug!(p.log, "retention: nothing to delete"; "held_for_upload" => r.held_for_upload),
                    Err(e) => warn!(p.log, "retention skipped"; "error" => e),
                }
            }
            .into_actor(self),
        );
    }
}

/// Capped exponential backoff with jitter for the `attempts`-th failure: uniform in [d/2, d].
pub fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let d = initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(20)).min(max).max(Duration::from_millis(1));
    let ms = d.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// Uploads and verifies the next due file, recording the outcome.
async fn step(p: &UploadParams) -> Step {
    let Some(objects) = p.objects.clone() else { return Step::Idle(None) };
    if p.guard.as_ref().is_some_and(|g| !g.is_valid()) {
        return Step::StoreDown;
    }
    let id = p.task_id;
    let now = p.store.clock().now();
    let next = match p.store.call(move |s| s.next_upload(id, now)).await {
        Ok(Some(f)) => f,
        Ok(None) => return p.store.call(move |s| s.next_upload_due(id)).await.map_or(Step::StoreDown, Step::Idle),
        Err(e) => {
            warn!(p.log, "cannot read the upload queue"; "error" => %e);
            return Step::StoreDown;
        }
    };
    let (identity, name) = (next.source_identity.clone(), next.file_name.to_string());
    let key = objects.object_key(&p.cluster_key, &identity, &name);
    let Some(sha256) = next.sha256.clone() else { return Step::Handled };
    {
        let (i, n, k) = (identity.clone(), name.clone(), key.clone());
        if let Err(e) = p.store.call(move |s| s.mark_uploading(id, &i, &n, &k)).await {
            warn!(p.log, "cannot record the upload start"; "error" => %e);
            return Step::StoreDown;
        }
    }
    let path = next.local_path(&p.data_dir);
    if p.guard.is_some() && std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) < next.size {
        // Cluster takeover: the writer is fetching this file again; it is uploaded once whole.
        debug!(p.log, "file not whole on this node yet; upload waits"; "file" => &name);
        let (i, n) = (identity.clone(), name.clone());
        let _ = p
            .store
            .call(move |s| {
                s.mark_upload_failed(
                    id,
                    &i,
                    &n,
                    0,
                    "waiting for the file to be fetched again",
                    now + chrono::Duration::seconds(2),
                )
            })
            .await;
        return Step::Idle(Some(now + chrono::Duration::seconds(2)));
    }
    let mut span = otel::span(
        "upload",
        vec![
            KeyValue::new("task.id", id.0),
            KeyValue::new("file", name.clone()),
            KeyValue::new("size", next.size as i64),
        ],
    );
    if next.upload.attempts > 0 {
        metrics().upload_retries.with_label_values(&[&id.0.to_string()]).inc();
    }
    let started = std::time::Instant::now();
    let result = match objects.upload_file(&path, &key, &sha256).await {
        Ok(u) => objects.verify(&u).await.map(|()| u),
        Err(e) => Err(e),
    };
    let at = p.store.clock().now();
    match result {
        Ok(u) => {
            span.end();
            let (i, n) = (identity.clone(), name.clone());
            if let Err(e) = p.store.call(move |s| s.mark_uploaded(id, &i, &n, at)).await {
                warn!(p.log, "uploaded but could not record it (will upload again)"; "file" => &name, "error" => %e);
                return Step::StoreDown;
            }
            info!(p.log, "file uploaded and verified"; "file" => &name, "key" => &u.key, "bytes" => u.size,
                  "parts" => u.parts, "ms" => started.elapsed().as_millis() as u64);
        }
        Err(e) => {
            let message = e.to_string();
            span.set_status(Status::error(message.clone()));
            span.end();
            let attempts = next.upload.attempts.saturating_add(1);
            let delay = backoff(p.retry_initial, p.retry_max, attempts);
            let next_at = at + chrono::Duration::from_std(delay).unwrap_or_else(|_| chrono::Duration::seconds(60));
            metrics().upload_failures.with_label_values(&[&id.0.to_string()]).inc();
            warn!(p.log, "upload failed"; "file" => &name, "attempt" => attempts, "error" => &message,
                  "retry_in_s" => delay.as_secs());
            let (i, n) = (identity, name);
            if let Err(e) = p.store.call(move |s| s.mark_upload_failed(id, &i, &n, attempts, &message, next_at)).await {
                warn!(p.log, "cannot record the upload failure"; "error" => %e);
                return Step::StoreDown;
            }
        }
    }
    Step::Handled
}

impl Actor for UploadActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(objects) = self.p.objects.clone() {
            // Multipart uploads a crash or kill left unfinished: abort them before anything else.
            let p = self.p.clone();
            ctx.wait(
                async move {
                    let prefix = objects.task_prefix(&p.cluster_key);
                    match objects.abort_stale_multiparts(&prefix).await {
                        Ok(0) => {}
                        Ok(n) => info!(p.log, "aborted unfinished multipart uploads"; "count" => n, "prefix" => prefix),
                        Err(e) => warn!(p.log, "could not list unfinished multipart uploads"; "error" => %e),
                    }
                }
                .into_actor(self),
            );
        }
        self.kick(ctx);
        self.sweep(ctx);
        ctx.run_interval(self.p.retention_interval.max(Duration::from_secs(1)), |act, ctx| act.sweep(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let _ = metrics().upload_backlog.remove_label_values(&[&self.label]);
    }
}

impl Handler<UploadNow> for UploadActor {
    type Result = ();

    fn handle(&mut self, _: UploadNow, ctx: &mut Context<Self>) {
        self.kick(ctx);
    }
}

impl Handler<StopUploads> for UploadActor {
    type Result = ();

    fn handle(&mut self, _: StopUploads, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let (i, m) = (Duration::from_secs(5), Duration::from_secs(900));
        for _ in 0..50 {
            let d1 = backoff(i, m, 1);
            assert!(d1 >= Duration::from_millis(2500) && d1 <= i, "{d1:?}");
            let d3 = backoff(i, m, 3);
            assert!(d3 >= Duration::from_secs(10) && d3 <= Duration::from_secs(20), "{d3:?}");
            let big = backoff(i, m, 40);
            assert!(big >= m / 2 && big <= m, "{big:?}");
        }
    }
}
