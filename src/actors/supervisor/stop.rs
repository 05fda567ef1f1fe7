//! `StopTask`: an operator's stop, here or (cluster mode) on the node that runs the task.

use std::time::Duration;

use actix::prelude::*;
use opentelemetry::KeyValue;

use super::{ControlError, ControlResult, Supervisor};
use crate::actors::task::Stop;
use crate::domain::{DesiredState, Mover, Task, TaskEventType, TaskId, TaskState};
use crate::meta::{Store, StoreError, Transition};
use crate::telemetry::tracing::span;

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
