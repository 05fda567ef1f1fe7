//! What a `TaskActor` does with its children's reports: the replication's (connected,
//! streaming, ended: retry or fail by `retry::RetryState`) and the writer's (checkpointed, file
//! sealed: record it, hash it, wake the uploader).

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use rand::Rng;
use slog::{info, warn};

use super::TaskActor;
use crate::actors::file_writer::WriterEvent;
use crate::actors::replication::ReplicationEvent;
use crate::actors::upload::UploadNow;
use crate::domain::{TaskError, TaskEventType, TaskState};
use crate::meta::LastError;
use crate::retry::{Failure, RetryPolicy, SourcePos, Verdict};
use crate::telemetry::metrics::metrics;

impl Handler<ReplicationEvent> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: ReplicationEvent, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        match msg {
            ReplicationEvent::Connected { identity, version, tls, .. } => {
                self.status.source_identity = Some(identity);
                self.status.source_version = Some(version);
                self.status.tls = tls;
            }
            ReplicationEvent::Streaming { from, heard } => {
                // Only a source heard from ends the retry period (backoff, attempts, the
                // error's `since`): one that accepts each dump and then says nothing is retried
                // ever more slowly and counts as stuck, its error kept, instead of looking
                // healthy between two silences.
                if heard {
                    self.heard_from_source();
                }
                self.status.connected_since = Some(Utc::now());
                self.status.streaming_from = Some(from.clone());
                let source = format!(
                    "{} ({})",
                    self.status.source_identity.as_deref().unwrap_or("?"),
                    self.status.source_version.as_deref().unwrap_or("?")
                );
                info!(self.ctx.log, "streaming"; "from" => &from, "source" => &source, "heard" => heard);
                self.record(
                    TaskState::Running,
                    if heard { LastError::Clear } else { LastError::Keep },
                    Some((TaskEventType::TaskRunning, format!("streaming from {from} on {source}"))),
                    ctx,
                );
            }
            ReplicationEvent::Heard => {
                // The error kept while the stream was only accepted is cleared in the store too.
                let had_error = self.status.last_error.is_some();
                self.heard_from_source();
                if had_error && self.state == TaskState::Running {
                    let from = self.status.streaming_from.clone().unwrap_or_default();
                    let msg = format!("the source sends events again (streaming from {from})");
                    self.record(TaskState::Running, LastError::Clear, Some((TaskEventType::TaskRunning, msg)), ctx);
                }
            }
            ReplicationEvent::Switchover { old, new } => {
                metrics().source_switchovers.with_label_values(&[&self.label]).inc();
                let msg = format!("source changed from {old} to {new}; following it by GTID");
                let state = self.state;
                self.record(state, LastError::Keep, Some((TaskEventType::SourceSwitchover, msg)), ctx);
            }
            ReplicationEvent::TornTail { file, at } => {
                let msg = format!(
                    "the source's {file} ends with an event that never ended at {at}: it crashed while writing it, and \
                     what it was writing was never committed. Resuming by GTID from the checkpoint: when the source goes \
                     on in its next file, our copy of {file} is sealed at the last transaction before the tear"
                );
                let state = self.state;
                self.record(state, LastError::Keep, Some((TaskEventType::SourceTornTail, msg)), ctx);
            }
            ReplicationEvent::SemiSync { active, reason } => {
                let was_unavailable = self.status.semi_sync.unavailable.is_some();
                self.status.semi_sync.active = active;
                self.status.semi_sync.unavailable = reason.clone();
                // Said once per change, not at every reconnect.
                if let (Some(reason), false) = (reason, was_unavailable) {
                    let state = self.state;
                    self.record(state, LastError::Keep, Some((TaskEventType::SemiSyncUnavailable, reason)), ctx);
                }
            }
            ReplicationEvent::Progress(p) => self.apply_progress(p),
            ReplicationEvent::Ended { error, code, retryable, crc_error, at } => {
                self.replication = None;
                self.base_events = self.status.events_written;
                self.base_bytes = self.status.bytes_written;
                self.base_acks = self.status.semi_sync.acks_sent;
                self.status.semi_sync.active = false;
                if crc_error {
                    self.status.crc_errors += 1;
                    metrics().crc_errors.with_label_values(&[&self.label]).inc();
                }
                let failure = Failure {
                    code,
                    message: error,
                    retryable,
                    at,
                    checkpoint: self
                        .status
                        .checkpoint
                        .as_ref()
                        .map(|c| SourcePos { file: c.file.to_string(), pos: c.pos }),
                };
                let policy = RetryPolicy::from_settings(&self.ctx.settings.retry);
                match self.failures.failed(failure, Utc::now(), &policy) {
                    Verdict::Retry(err) => self.retry_later(err, ctx),
                    Verdict::Fail(err) => self.fail(err, ctx),
                }
            }
        }
    }
}

impl TaskActor {
    /// The source sent an event or a heartbeat: the retry period is over.
    fn heard_from_source(&mut self) {
        self.attempt = 0;
        self.failures.streaming();
        self.status.last_error = None;
    }

    /// RETRY_BACKOFF with `err` as the task's last error (stored, so every node's API shows
    /// it), and a new attempt after the backoff.
    fn retry_later(&mut self, err: TaskError, ctx: &mut Context<Self>) {
        let delay = self.backoff();
        self.status.reconnects += 1;
        metrics().reconnects.with_label_values(&[&self.label, err.code.as_str()]).inc();
        self.status.retry_in_ms = Some(delay.as_millis() as u64);
        self.status.last_error = Some(err.clone());
        warn!(self.ctx.log, "replication interrupted; retrying"; "error" => &err.message, "code" => %err.code,
              "attempts" => err.attempts, "retry_in_ms" => delay.as_millis() as u64);
        let event =
            format!("{}: {}; attempt {}, retrying in {} ms", err.code, err.message, err.attempts, delay.as_millis());
        self.record(TaskState::RetryBackoff, LastError::Set(err), Some((TaskEventType::TaskRetryBackoff, event)), ctx);
        self.retry = Some(ctx.run_later(delay, |act, ctx| act.start_attempt(ctx)));
    }

    /// Capped exponential backoff with jitter: uniform in [d/2, d], d = initial * 2^attempt.
    fn backoff(&mut self) -> Duration {
        let r = &self.ctx.settings.replication;
        let exp = r.retry_initial_ms.saturating_mul(1u64 << self.attempt.min(20));
        let d = exp.min(r.retry_max_ms).max(1);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::rng().random_range(d / 2..=d))
    }

    pub(super) fn hash_next(&mut self, ctx: &mut Context<Self>) {
        if self.hashing {
            return;
        }
        let Some((identity, name, path, written)) = self.to_hash.pop_front() else { return };
        self.hashing = true;
        let store = self.ctx.store.clone();
        let id = self.id();
        let log = self.ctx.log.clone();
        ctx.spawn(
            async move {
                // Hashed as the writer wrote it, or else read back.
                let digest = match written {
                    Some(d) => Ok(d),
                    None => read_back(read_back_permits(), move || {
                        sha256_file(&path).map_err(|e| crate::meta::StoreError::Io {
                            what: format!("cannot read {}", path.display()),
                            source: e,
                        })
                    })
                    .await
                    .and_then(|r| r),
                };
                let res = match digest {
                    Ok(d) => store.call(move |s| s.set_file_sha256(id, &identity, &name, &d)).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = res {
                    warn!(log, "could not record a sealed file's sha256"; "error" => %e);
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.hashing = false;
                // The file is in the upload queue once its sha256 is recorded.
                if let Some(u) = &act.uploader {
                    u.do_send(UploadNow);
                }
                act.hash_next(ctx);
            }),
        );
    }
}

impl Handler<WriterEvent> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: WriterEvent, ctx: &mut Context<Self>) {
        match msg {
            WriterEvent::Checkpointed { checkpoint, fsync, .. } => {
                self.status.checkpoint = Some(checkpoint);
                self.status.checkpoint_at = Some(Utc::now());
                self.status.last_fsync_us = Some(fsync.as_micros() as u64);
            }
            WriterEvent::FileCreated { .. } => {}
            WriterEvent::FileSealed { identity, name, path, size, sha256 } => {
                let state = self.state;
                self.record(
                    state,
                    LastError::Keep,
                    Some((TaskEventType::TaskFileRotated, format!("{name} sealed ({size} bytes)"))),
                    ctx,
                );
                self.to_hash.push_back((identity, name.to_string(), path, sha256));
                self.hash_next(ctx);
            }
        }
    }
}

/// How many sealed files are read back for their digest at the same time, process-wide, on a
/// machine with `cores` CPUs: each read holds a blocking thread and a 1 MiB buffer, and many
/// tasks sealing at once (a thousand catching up after an outage) would otherwise run hundreds of
/// them side by side (tokio's blocking pool takes up to 512), for no more CPU than the cores give.
pub fn read_back_parallelism(cores: usize) -> usize {
    cores.clamp(1, 4)
}

fn read_back_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(read_back_parallelism(cores))
    })
}

/// Runs `job` (a file read back) on the blocking pool once `permits` has a permit for it.
async fn read_back<T: Send + 'static>(
    permits: &tokio::sync::Semaphore,
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, crate::meta::StoreError> {
    let _permit = permits.acquire().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| crate::meta::StoreError::Unavailable(format!("the read-back of a sealed file failed: {e}")))
}

/// The sha256 of a file, streamed (the digest the catalog records at sealing, and that serving
/// and uploading check against).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    crate::pitr::files::sha256_of(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn read_backs_run_one_per_core_up_to_four() {
        for (cores, want) in [(0, 1), (1, 1), (2, 2), (4, 4), (64, 4)] {
            assert_eq!(read_back_parallelism(cores), want, "{cores} cores");
        }
    }

    /// Many read-backs queued at once: two run (the permits), the others wait, and once let go
    /// every one of them runs.
    #[test]
    fn read_backs_beyond_the_permits_wait_their_turn() {
        let permits = Arc::new(tokio::sync::Semaphore::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let gate = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let runner = {
            let (permits, now, most, gate) = (permits.clone(), now.clone(), most.clone(), gate.clone());
            std::thread::spawn(move || {
                let jobs = (0..12).map(|i| {
                    let (now, most, gate) = (now.clone(), most.clone(), gate.clone());
                    read_back(&permits, move || {
                        let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(at_once, Ordering::SeqCst);
                        let deadline = std::time::Instant::now() + Duration::from_secs(30);
                        while !gate.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                            std::thread::yield_now();
                        }
                        now.fetch_sub(1, Ordering::SeqCst);
                        i
                    })
                });
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                rt.block_on(futures_util::future::join_all(jobs))
            })
        };
        // Two start; for a while no third does (the blocking pool would take all twelve at once).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while now.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < deadline, "two read-backs should be running");
            std::thread::yield_now();
        }
        let watch_until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < watch_until {
            assert!(now.load(Ordering::SeqCst) <= 2, "more read-backs at once than permits");
            std::thread::yield_now();
        }
        gate.store(true, Ordering::SeqCst);
        let done: Vec<usize> = runner.join().unwrap().into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(done, (0..12).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 2, "two at a time, not fewer and not more");
    }
}
