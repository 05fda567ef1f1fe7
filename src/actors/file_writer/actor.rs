//! `FileWriterActor`: the task's writer as an actor. It owns the task's [`Writer`] and carries
//! each message to it on the writers' shared thread pool ([`WriterPool`]), one message at a time
//! and in the order they came (each handler is an `AtomicResponse`: the mailbox waits until the
//! job is done), so the writer sees exactly the sequence it saw on a thread of its own.
//!
//! Why a pool and not a thread per task: with 1,000 tasks streaming, a thread per writer spent
//! more CPU on being woken and put to sleep (task switches, and the spinning and `sched_yield` of
//! the `SyncArbiter` channel's receive) than on writing. The pool runs up to `writer.threads`
//! jobs at the same time, each on a thread of its own (started when a job finds none idle, ended
//! after [`KEEP_ALIVE`] idle); further jobs wait for a thread in the order they came. A writer
//! stuck in a slow fsync holds up only its own task while fewer than `writer.threads` are stuck.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;

use super::{CloseFiles, PersistCheckpoint, Prepare, Prepared, Recover, WriteBatch, Writer, WriterError};
use crate::meta::Checkpoint;

/// An idle pool thread ends after this long without work.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// The threads every task's writer runs its jobs on (see the module's doc). Cheap to clone.
#[derive(Clone)]
pub struct WriterPool {
    runtime: Arc<PoolRuntime>,
}

/// A tokio runtime used only for its blocking pool (nothing else runs on it). Dropped without
/// waiting: a job still running finishes on its thread, and its answer goes nowhere.
struct PoolRuntime(Option<tokio::runtime::Runtime>);

impl Drop for PoolRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl WriterPool {
    /// A pool that runs up to `threads` jobs at the same time (`writer.threads`, at least 1).
    pub fn new(threads: usize) -> std::io::Result<WriterPool> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(threads.max(1))
            .thread_keep_alive(KEEP_ALIVE)
            .thread_name("binlog-writer")
            .build()?;
        Ok(WriterPool { runtime: Arc::new(PoolRuntime(Some(rt))) })
    }

    fn spawn<R: Send + 'static>(&self, job: impl FnOnce() -> R + Send + 'static) -> tokio::task::JoinHandle<R> {
        let rt = self.runtime.0.as_ref().expect("the runtime is taken only when the pool is dropped");
        rt.spawn_blocking(job)
    }
}

pub struct FileWriterActor {
    writer: Arc<Mutex<Writer>>,
    pool: WriterPool,
}

impl Actor for FileWriterActor {
    type Context = Context<Self>;
}

impl FileWriterActor {
    /// Starts the actor for `writer` on the current arbiter; its jobs run on `pool`.
    pub fn start_on(pool: &WriterPool, writer: Writer) -> Addr<FileWriterActor> {
        FileWriterActor { writer: Arc::new(Mutex::new(writer)), pool: pool.clone() }.start()
    }

    /// Runs `job` on the pool; the actor takes no other message until it is done. A job that
    /// panicked fails its message, and every later one (the writer's state is then unknown: the
    /// task must prepare a new writer from the persisted checkpoint).
    fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Writer) -> Result<T, WriterError> + Send + 'static,
    ) -> ResponseActFuture<Self, Result<T, WriterError>> {
        let writer = self.writer.clone();
        let handle = self.pool.spawn(move || match writer.lock() {
            Ok(mut w) => job(&mut w),
            Err(_) => {
                Err(WriterError::Invariant("the writer failed earlier (a panic); it takes no more writes".into()))
            }
        });
        Box::pin(
            async move {
                handle.await.unwrap_or_else(|e| Err(WriterError::Invariant(format!("the writer's job failed: {e}"))))
            }
            .into_actor(self),
        )
    }
}

impl Handler<Prepare> for FileWriterActor {
    type Result = AtomicResponse<Self, Result<Prepared, WriterError>>;

    fn handle(&mut self, msg: Prepare, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.run(move |w| w.prepare(msg)))
    }
}

impl Handler<Recover> for FileWriterActor {
    type Result = AtomicResponse<Self, Result<Option<Checkpoint>, WriterError>>;

    fn handle(&mut self, msg: Recover, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.run(move |w| w.recover(msg)))
    }
}

impl Handler<WriteBatch> for FileWriterActor {
    type Result = AtomicResponse<Self, Result<Option<Checkpoint>, WriterError>>;

    fn handle(&mut self, msg: WriteBatch, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.run(move |w| w.write_batch(msg)))
    }
}

impl Handler<PersistCheckpoint> for FileWriterActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: PersistCheckpoint, _: &mut Context<Self>) -> Self::Result {
        // Most ticks (every `checkpoint_interval`, 200 ms, per task) have nothing to store: they
        // are answered here, without a job on the pool, whose hand-off costs more than the check
        // (1,000 idle tasks made 5,000 jobs a second). No job is in flight while a handler runs
        // (each is atomic), so the lock is free; if it is not (a panic poisoned it), the job
        // below says so.
        if let Ok(mut w) = self.writer.try_lock()
            && w.persist_idle()
        {
            return AtomicResponse::new(Box::pin(actix::fut::ready(())));
        }
        let inner = self.run(|w| {
            w.persist_on_timer();
            Ok(())
        });
        // Nobody waits for the answer; a failure is said by the writer itself (see
        // `persist_on_timer`), and a panic fails the next message.
        AtomicResponse::new(Box::pin(inner.map(|_, _, _| ())))
    }
}

impl Handler<CloseFiles> for FileWriterActor {
    type Result = AtomicResponse<Self, Result<Option<Checkpoint>, WriterError>>;

    fn handle(&mut self, _: CloseFiles, _: &mut Context<Self>) -> Self::Result {
        AtomicResponse::new(self.run(|w| w.close_files()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// What the module's doc promises: a job blocked (a writer stuck in a slow fsync) holds up
    /// no other writer's job while the pool has a thread left; each runs on a thread of its own.
    #[test]
    fn a_blocked_job_holds_up_no_other_job() {
        let pool = WriterPool::new(2).unwrap();
        let (release, blocked) = mpsc::channel::<()>();
        let (started, wait_started) = mpsc::channel::<std::thread::ThreadId>();
        let first = pool.spawn(move || {
            started.send(std::thread::current().id()).unwrap();
            blocked.recv_timeout(Duration::from_secs(30)).is_ok()
        });
        let first_thread = wait_started.recv_timeout(Duration::from_secs(10)).expect("the first job starts");
        let (done, wait_done) = mpsc::channel();
        let _second = pool.spawn(move || done.send(std::thread::current().id()).unwrap());
        let second_thread =
            wait_done.recv_timeout(Duration::from_secs(10)).expect("the second job ran while the first was blocked");
        assert_ne!(first_thread, second_thread);
        release.send(()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(rt.block_on(first).unwrap(), "the first job was released, not timed out");
    }
}
