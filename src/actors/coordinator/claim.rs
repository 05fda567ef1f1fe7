//! A coordinator round's store work for placement: claim unplaced tasks up to the budget
//! (`cluster::claim_budget`), each under a fresh lease, its directory adopted (`cluster::adopt_task_dir`).

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use slog::{Logger, info, warn};

use crate::cluster::{adopt_task_dir, claim_budget};
use crate::domain::{DesiredState, Mover, Task, TaskEventType, TaskId, TaskState};
use crate::meta::leases::ClusterCounts;
use crate::meta::{Store, StoreError, Transition};

/// How much one placement round may claim.
pub(super) struct PlaceLimits {
    pub ttl_ms: u64,
    pub max_tasks: u32,
    /// Leases this node holds now.
    pub mine: usize,
    /// How long the round may spend claiming: renewals wait for the round to end, so a node
    /// taking over hundreds of tasks does it over several rounds instead of starving its own.
    pub time: Duration,
}

/// Claims unplaced tasks up to this node's share; returns those acquired (task, epoch, when the
/// acquisition was sent). Never fails the round: an error stops the
/// claiming and what was claimed until then is kept (a lease acquired for a task that could not
/// be prepared is given back, or, if even that fails, left to expire: only held leases are
/// renewed).
pub(super) fn place(
    s: &Store,
    node: &str,
    limits: PlaceLimits,
    data_dir: &std::path::Path,
    log: &Logger,
) -> Vec<(Task, i64, Instant)> {
    let started = Instant::now();
    let listed = s.cluster_counts(limits.ttl_ms).and_then(|c| Ok((c, s.unplaced_tasks(1000)?)));
    let (counts, mut unplaced): (ClusterCounts, Vec<TaskId>) = match listed {
        Ok(x) => x,
        Err(e) => {
            warn!(log, "placement skipped this round"; "error" => %e);
            return Vec::new();
        }
    };
    let mine = (limits.mine as i64).max(counts.leases_by_node.get(node).copied().unwrap_or(0));
    let budget = claim_budget(counts.wanted, counts.alive_nodes.len(), mine, limits.max_tasks, unplaced.len());
    // Nodes race for the same tasks; shuffling spreads them instead of colliding on the first.
    unplaced.shuffle(&mut rand::rng());
    let mut acquired = Vec::new();
    for id in unplaced {
        if acquired.len() >= budget || started.elapsed() >= limits.time {
            break;
        }
        match claim(s, node, id, limits.ttl_ms, data_dir, log) {
            Ok(Some(claimed)) => acquired.push(claimed),
            Ok(None) => {}
            // Another session holds the lease row locked: a node stalled inside a transaction.
            // Skip the task this round (the database ends that transaction within a TTL, see
            // `ConnTuning`) and go on with the others.
            Err(StoreError::Locked(why)) => {
                warn!(log, "task skipped this round: its lease row is locked by another node's unfinished \
                            metadata transaction"; "task_id" => id.0, "error" => why);
            }
            Err(e) => {
                warn!(log, "placement stopped for this round"; "task_id" => id.0, "error" => %e);
                break;
            }
        }
    }
    acquired
}

/// Takes the lease of `id` and prepares the task to run here; `None` if another node was faster
/// or the task no longer wants to run.
fn claim(
    s: &Store,
    node: &str,
    id: TaskId,
    ttl_ms: u64,
    data_dir: &std::path::Path,
    log: &Logger,
) -> Result<Option<(Task, i64, Instant)>, StoreError> {
    let sent = Instant::now();
    let Some(acq) = s.acquire_lease(id, node, ttl_ms)? else { return Ok(None) };
    let prepared = (|| {
        let task = s.get_task(id)?;
        if task.desired_state != DesiredState::Running || task.state == TaskState::Failed {
            return Ok(None);
        }
        match adopt_task_dir(data_dir, id.0, node, acq.epoch) {
            Ok(Some(moved)) => {
                info!(log, "files from another lease moved aside"; "task_id" => id.0, "to" => %moved.display());
                let note = format!(
                    "this node's folder of the task, written under another lease, moved whole to {} (kept, never \
                     read): what neither this node nor the bucket holds is fetched again from the source",
                    moved.display()
                );
                if let Err(e) = s.append_event(id, TaskEventType::FilesSetAside, &note) {
                    warn!(log, "the folder set aside could not be recorded as a task event"; "task_id" => id.0, "error" => %e);
                }
            }
            Ok(None) => {}
            Err(e) => {
                warn!(log, "cannot prepare the task's directory; giving the lease back"; "task_id" => id.0, "error" => %e);
                return Ok(None);
            }
        }
        let previous = acq.previous_owner.as_ref().map(|p| format!("; previous owner {p}")).unwrap_or_default();
        let message = format!("node {node} acquired the lease (epoch {}{previous})", acq.epoch);
        let task = s.transition(
            id,
            Transition::to(TaskState::Starting, Mover::Repair).event(TaskEventType::TaskLeaseAcquired, &message),
        )?;
        info!(log, "lease acquired"; "task_id" => id.0, "epoch" => acq.epoch);
        Ok(Some((task, acq.epoch, sent)))
    })();
    if !matches!(prepared, Ok(Some(_))) {
        let _ = s.release_lease(id, node, acq.epoch);
    }
    prepared
}
