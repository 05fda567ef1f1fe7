//! The one interface between the `Coordinator` and the `Supervisor` (cluster mode). Neither
//! imports the other: the coordinator holds a `Recipient<LeaseCommand>`, the supervisor a
//! `CoordinatorLink`, and `app` wires them together.

use actix::prelude::*;
use tokio::sync::watch;

use crate::cluster::LeaseGuard;
use crate::domain::{Task, TaskId};
use crate::meta::leases::Fence;

/// What the coordinator asks of the supervisor. Each is carried out without a reply.
#[derive(Message)]
#[rtype(result = "()")]
pub enum LeaseCommand {
    /// Run a task here under a lease this node just acquired.
    Run { task: Box<Task>, guard: LeaseGuard, fence: Fence },
    /// Stop a local task without recording anything: its lease is lost or about to be.
    Relinquish { id: TaskId, reason: String },
    /// The operator asked (on any node) to stop a task this node runs: stop it as `StopTask` does.
    Stop(TaskId),
    /// Lease renewals fail (`degraded: true`) or work again (`false`).
    Health { id: TaskId, degraded: bool },
}

/// What the supervisor tells the coordinator.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub enum LocalEvent {
    /// A task was started through the API: look for work now.
    PlaceNow,
    /// A local task's actors ended (stopped, failed, or gave the lease up), having run under
    /// `epoch`: the lease is given back if it is still that holding.
    TaskEnded { id: TaskId, epoch: Option<i64> },
}

/// The supervisor's side of the link.
#[derive(Clone)]
pub struct CoordinatorLink {
    pub events: Recipient<LocalEvent>,
    /// Counts the coordinator's finished rounds: a stop waiting for another node watches it to
    /// look at the store again once the cluster had a chance to move.
    pub rounds: watch::Receiver<u64>,
}
