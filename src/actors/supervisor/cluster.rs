//! Cluster mode: the supervisor's side of `actors::cluster_link` (what the coordinator asks).

use std::time::Duration;

use actix::prelude::*;
use slog::info;

use super::Supervisor;
use crate::actors::cluster_link::{CoordinatorLink, LeaseCommand};
use crate::actors::task::Stop;

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
                    self.spawn_task(*task, Some((guard, fence)), ctx);
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
