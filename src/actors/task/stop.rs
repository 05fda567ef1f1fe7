//! How a `TaskActor` ends: an operator's stop, a process shutdown, a lease given up; and the
//! cluster's lease health and the operator's upload retry.

use actix::prelude::*;
use slog::{info, warn};

use super::{LeaseDegraded, Relinquish, Shutdown, Stop, TaskActor, WakeUploads};
use crate::actors::upload::UploadNow;
use crate::domain::{TaskEventType, TaskState};
use crate::meta::LastError;

impl Handler<Stop> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        info!(self.ctx.log, "stopping");
        // The supervisor already moved the stored state to STOPPING.
        if self.state != TaskState::Failed {
            self.state = TaskState::Stopping;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |act, ctx| {
            // Stop (and answer) only once the final state is stored.
            let finish = move |_: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                ctx.stop();
                let _ = tx.send(());
            };
            if act.state == TaskState::Stopping {
                let event = Some((TaskEventType::TaskStopped, "stopped".to_string()));
                act.record_then(TaskState::Stopped, LastError::Keep, event, ctx, finish);
            } else {
                finish(act, ctx);
            }
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<Shutdown> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |act, ctx| {
            let finish = move |_: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                ctx.stop();
                let _ = tx.send(());
            };
            let to_stopped = |act: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                if act.state == TaskState::Stopping {
                    let msg = "stopped for process shutdown (resumes at next start)".to_string();
                    act.record_then(
                        TaskState::Stopped,
                        LastError::Keep,
                        Some((TaskEventType::TaskStopped, msg)),
                        ctx,
                        finish,
                    );
                } else {
                    finish(act, ctx);
                }
            };
            if act.state.can_become(TaskState::Stopping) {
                act.record_then(TaskState::Stopping, LastError::Keep, None, ctx, to_stopped);
            } else {
                to_stopped(act, ctx);
            }
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<Relinquish> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Relinquish, ctx: &mut Context<Self>) -> Self::Result {
        warn!(self.ctx.log, "giving the task up on this node"; "reason" => &msg.reason);
        if let Some(g) = &self.ctx.lease {
            g.revoke();
        }
        self.relinquished = true;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |_, ctx| {
            ctx.stop();
            let _ = tx.send(());
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<LeaseDegraded> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseDegraded, ctx: &mut Context<Self>) {
        if self.stopping || self.relinquished {
            return;
        }
        match (msg.0, self.degraded) {
            (true, None) => {
                let left = self.ctx.lease.as_ref().map(|g| g.remaining().as_secs_f64()).unwrap_or(0.0);
                warn!(self.ctx.log, "lease renewal failed; writing stops if it does not succeed in time";
                      "seconds_left" => left);
                let msg = format!("lease renewal failed; writing stops in {left:.1} s unless a renewal succeeds");
                let before = self.state;
                self.record(
                    TaskState::LeaseDegraded,
                    LastError::Keep,
                    Some((TaskEventType::TaskLeaseDegraded, msg)),
                    ctx,
                );
                self.degraded = Some(before);
            }
            (false, Some(underlying)) => {
                info!(self.ctx.log, "lease renewed again");
                self.degraded = None;
                let to = if underlying == TaskState::LeaseDegraded { TaskState::Running } else { underlying };
                self.record(to, LastError::Keep, Some((TaskEventType::TaskRunning, "lease renewed again".into())), ctx);
            }
            _ => {}
        }
    }
}

impl Handler<WakeUploads> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: WakeUploads, _: &mut Context<Self>) {
        if let Some(u) = &self.uploader {
            u.do_send(UploadNow);
        }
    }
}
