//! `Coordinator` (cluster mode): this node's part in sharing tasks with the others.
//!
//! Every round (twice per renew interval, at most a second apart) it, in order:
//! 1. heartbeats and renews all of this node's leases (every `lease_renew_interval_sec`); a lease
//!    missing from the answer is lost: its task is stopped here without recording anything, and
//!    TASK_LEASE_LOST is logged. When the database does not answer (a round fails, or takes
//!    longer than the renew interval: a separate 100 ms timer watches), its tasks are
//!    LEASE_DEGRADED, and each stops writing when its local guard runs out, before the lease
//!    can expire in the database;
//! 2. stops the tasks it runs that an operator asked (on any node) to stop;
//! 3. finishes stops whose node is gone;
//! 4. claims tasks that should run and have no live lease, up to its fair share
//!    (`cluster::claim_budget`), and starts them under their lease.
//!
//! It never touches sockets; its store work runs on the blocking pool.

mod claim;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{Logger, info, warn};
use tokio::sync::watch;

use crate::actors::cluster_link::{CoordinatorLink, LeaseCommand, LocalEvent};
use crate::cluster::{LeaseGuard, local_validity};
use crate::config::Settings;
use crate::domain::{Mover, Task, TaskEventType, TaskId, TaskState};
use crate::meta::leases::{Fence, Lease};
use crate::meta::{Store, StoreError, Transition};
use crate::placement::{
    AcquiredLease, RoundFacts, Shutdown, acquired_lease, after_renewal, plan_round, releases_on_end, stops_here,
};
use claim::{PlaceLimits, place};

/// Graceful shutdown, before the supervisor stops the tasks: claim nothing more.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopPlacing;

/// Graceful shutdown, after the tasks stopped: release every lease and leave.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave;

/// How long `Leave` waits for a round in flight (the caller gives `Leave` 10 s in all).
const LEAVE_ROUND_WAIT: Duration = Duration::from_secs(5);

struct Held {
    epoch: i64,
    guard: LeaseGuard,
}

pub struct Coordinator {
    node_id: String,
    store: Store,
    settings: Arc<Settings>,
    supervisor: Recipient<LeaseCommand>,
    log: Logger,
    /// Counts finished rounds (`CoordinatorLink::rounds`).
    rounds: watch::Sender<u64>,
    held: HashMap<TaskId, Held>,
    busy: bool,
    again: bool,
    last_renew: Option<Instant>,
    /// When the round in flight (or the last one) started.
    round_started: Option<Instant>,
    last_repair: Option<Instant>,
    degraded: bool,
    shutdown: Shutdown,
}

/// A renewal's answer: when it was sent, and the (task, epoch) leases held after it.
type Renewal = Result<(Instant, Vec<(TaskId, i64)>), String>;

#[derive(Default)]
struct Outcome {
    /// `Some` when a renewal was attempted.
    renewed: Option<Renewal>,
    stop_requested: Vec<TaskId>,
    acquired: Vec<(Task, i64, Instant)>,
    /// Leases found taken by another node, with who holds them now.
    lost_to: HashMap<TaskId, Option<Lease>>,
}

impl Coordinator {
    pub fn new(
        node_id: String,
        store: Store,
        settings: Arc<Settings>,
        supervisor: Recipient<LeaseCommand>,
        log: &Logger,
    ) -> Self {
        Coordinator {
            log: log.new(slog::o!("actor" => "coordinator", "node_id" => node_id.clone())),
            node_id,
            store,
            settings,
            supervisor,
            rounds: watch::Sender::new(0),
            held: HashMap::new(),
            busy: false,
            again: false,
            last_renew: None,
            round_started: None,
            last_repair: None,
            degraded: false,
            shutdown: Shutdown::No,
        }
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(self.settings.cluster.lease_ttl_sec)
    }

    fn renew_interval(&self) -> Duration {
        Duration::from_secs(self.settings.cluster.lease_renew_interval_sec)
    }

    /// Rounds run twice per renew interval (at most a second apart), so a renewal is never
    /// skipped because a round came a little early.
    fn tick_period(&self) -> Duration {
        (self.renew_interval() / 2).min(Duration::from_secs(1))
    }

    fn set_degraded(&mut self, why: String) {
        warn!(self.log, "cannot renew leases"; "error" => &why, "tasks" => self.held.len());
        self.degraded = true;
        for id in self.held.keys() {
            self.supervisor.do_send(LeaseCommand::Health { id: *id, degraded: true });
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            self.again = true;
            return;
        }
        self.busy = true;
        self.again = false;
        let now = Instant::now();
        let plan = plan_round(&RoundFacts {
            now,
            last_renew: self.last_renew,
            last_repair: self.last_repair,
            renew_interval: self.renew_interval(),
            tick_period: self.tick_period(),
            leaving: self.shutdown != Shutdown::No,
        });
        let (renew_due, repair_due, placing) = (plan.renew, plan.repair, plan.place);
        self.round_started = Some(now);
        if renew_due {
            self.last_renew = Some(now);
        }
        if repair_due {
            self.last_repair = Some(now);
        }
        let held: Vec<(TaskId, i64)> = self.held.iter().map(|(id, h)| (*id, h.epoch)).collect();
        let (node, ttl_ms) = (self.node_id.clone(), self.ttl().as_millis() as u64);
        let max_tasks = self.settings.cluster.max_tasks_per_node;
        let data_dir = self.settings.data_dir.clone();
        let place_for = self.tick_period();
        let log = self.log.clone();
        let store = self.store.clone();
        let fut = async move {
            store
                .call(move |s| {
                    let mut out = Outcome::default();
                    if renew_due {
                        let sent = Instant::now();
                        let ids: Vec<TaskId> = held.iter().map(|(id, _)| *id).collect();
                        match s.heartbeat_node(&node).and_then(|()| s.renew_leases(&node, &ids, ttl_ms)) {
                            Ok(leases) => {
                                for id in after_renewal(&held, &leases).lost {
                                    out.lost_to.insert(id, s.get_lease(id).ok().flatten());
                                }
                                out.renewed = Some(Ok((sent, leases)));
                            }
                            Err(e) => {
                                out.renewed = Some(Err(e.to_string()));
                                return Ok(out);
                            }
                        }
                    }
                    let ids: Vec<TaskId> = held.iter().map(|(id, _)| *id).collect();
                    out.stop_requested = s.desired_stopped_among(&ids)?;
                    if repair_due {
                        for id in s.orphaned_stops()? {
                            let _ = s.transition(
                                id,
                                Transition::to(TaskState::Stopped, Mover::Repair)
                                    .event(TaskEventType::TaskStopped, "stopped (the node that ran it is gone)"),
                            );
                        }
                    }
                    if placing {
                        let limits = PlaceLimits { ttl_ms, max_tasks, mine: held.len(), time: place_for };
                        out.acquired = place(s, &node, limits, &data_dir, &log);
                    }
                    Ok(out)
                })
                .await
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.busy = false;
            match res {
                Ok(out) => act.apply(out),
                // Whatever the round was doing, the database did not answer: renewals will not either.
                Err(e) if !act.degraded => act.set_degraded(e.to_string()),
                Err(e) => slog::debug!(act.log, "cluster round failed"; "error" => %e),
            }
            act.enforce_guards();
            crate::telemetry::metrics::metrics().leases_held.set(act.held.len() as i64);
            act.rounds.send_modify(|n| *n += 1);
            if act.again {
                act.tick(ctx);
            }
        }));
    }

    fn apply(&mut self, out: Outcome) {
        let validity = local_validity(self.ttl());
        match out.renewed {
            Some(Ok((sent, leases))) => {
                let held: Vec<(TaskId, i64)> = self.held.iter().map(|(id, h)| (*id, h.epoch)).collect();
                for id in after_renewal(&held, &leases).extend {
                    if let Some(h) = self.held.get(&id) {
                        h.guard.extend(sent + validity);
                    }
                }
                if self.degraded {
                    info!(self.log, "lease renewals succeed again");
                    self.degraded = false;
                    for id in self.held.keys() {
                        self.supervisor.do_send(LeaseCommand::Health { id: *id, degraded: false });
                    }
                }
                for (id, now_held_by) in out.lost_to {
                    let Some(h) = self.held.remove(&id) else { continue };
                    h.guard.revoke();
                    let whom = match &now_held_by {
                        Some(l) if l.live && l.owner != self.node_id => {
                            format!("now held by {} (epoch {})", l.owner, l.epoch)
                        }
                        _ => "it expired".to_string(),
                    };
                    crate::telemetry::metrics::metrics().lease_losses.inc();
                    let message = format!("node {} lost the lease (epoch {}): {whom}", self.node_id, h.epoch);
                    warn!(self.log, "lease lost"; "task_id" => id.0, "epoch" => h.epoch, "detail" => &whom);
                    self.supervisor.do_send(LeaseCommand::Relinquish { id, reason: message.clone() });
                    let store = self.store.clone();
                    actix::spawn(async move {
                        let _ = store.call(move |s| s.append_event(id, TaskEventType::TaskLeaseLost, &message)).await;
                    });
                }
            }
            Some(Err(e)) if !self.degraded => self.set_degraded(e),
            Some(Err(_)) | None => {}
        }
        let held: HashSet<TaskId> = self.held.keys().copied().collect();
        for id in stops_here(&held, &out.stop_requested) {
            info!(self.log, "stop requested for a task running here"; "task_id" => id.0);
            self.supervisor.do_send(LeaseCommand::Stop(id));
        }
        for (task, epoch, sent) in out.acquired {
            let id = task.id;
            let guard = LeaseGuard::new(epoch, sent + validity);
            match acquired_lease(self.shutdown) {
                AcquiredLease::Run => {
                    self.held.insert(id, Held { epoch, guard: guard.clone() });
                    let fence = Fence { task_id: id, node_id: self.node_id.clone(), epoch };
                    self.supervisor.do_send(LeaseCommand::Run { task: Box::new(task), guard, fence });
                }
                AcquiredLease::HoldForLeave => {
                    info!(self.log, "lease acquired by a round that began before the shutdown; the task is not \
                                     started here and the lease is released on leaving"; "task_id" => id.0, "epoch" => epoch);
                    self.held.insert(id, Held { epoch, guard });
                }
                AcquiredLease::GiveBack => {
                    info!(self.log, "lease acquired by a round that ended after the node left; released";
                          "task_id" => id.0, "epoch" => epoch);
                    self.settle(id, epoch, false);
                }
            }
        }
    }

    /// A task whose guard ran out (renewals failed for too long) stops writing here now.
    fn enforce_guards(&mut self) {
        let expired: Vec<TaskId> = self.held.iter().filter(|(_, h)| !h.guard.is_valid()).map(|(id, _)| *id).collect();
        for id in expired {
            let h = self.held.remove(&id).expect("listed");
            crate::telemetry::metrics::metrics().lease_losses.inc();
            warn!(self.log, "lease not renewed in time; the task stops writing here"; "task_id" => id.0, "epoch" => h.epoch);
            self.supervisor.do_send(LeaseCommand::Relinquish {
                id,
                reason: format!("lease (epoch {}) could not be renewed before it could expire", h.epoch),
            });
            self.settle(id, h.epoch, false);
        }
    }

    /// A local task ended: give its lease back. If it was no longer ours (the task noticed
    /// before a renewal did: its writer found the guard expired or a write fenced), say so on
    /// the task's timeline.
    fn release(&mut self, id: TaskId) {
        let Some(h) = self.held.remove(&id) else { return };
        h.guard.revoke();
        self.settle(id, h.epoch, true);
    }

    /// Releases the lease if it is still ours; otherwise records on the task's timeline that
    /// this node lost it (and counts the loss, unless the caller already did).
    fn settle(&self, id: TaskId, epoch: i64, count: bool) {
        let (store, node, log) = (self.store.clone(), self.node_id.clone(), self.log.clone());
        actix::spawn(async move {
            let res = store
                .call(move |s| {
                    if s.release_lease(id, &node, epoch)? {
                        return Ok(None);
                    }
                    let whom = match s.get_lease(id)? {
                        Some(l) if l.live && l.owner != node => format!("now held by {} (epoch {})", l.owner, l.epoch),
                        _ => "it expired".to_string(),
                    };
                    let message = format!("node {node} lost the lease (epoch {epoch}): {whom}");
                    s.append_event(id, TaskEventType::TaskLeaseLost, &message)?;
                    Ok(Some(message))
                })
                .await;
            match res {
                Ok(Some(message)) => {
                    if count {
                        crate::telemetry::metrics::metrics().lease_losses.inc();
                    }
                    warn!(log, "lease lost"; "task_id" => id.0, "detail" => message);
                }
                Ok(None) => {}
                Err(e) => warn!(log, "could not release a lease (it will expire)"; "task_id" => id.0, "error" => %e),
            }
        });
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick_period(), |act, ctx| act.tick(ctx));
        // Independent of the rounds, which can block on an unreachable database: a renewal that
        // takes too long means degraded, and a guard that ran out stops its task at once.
        ctx.run_interval(Duration::from_millis(100), |act, _| {
            // A round stuck that long (waiting for a connection, say) also holds back renewals.
            if act.busy && !act.degraded && act.round_started.is_some_and(|t| t.elapsed() >= act.renew_interval()) {
                act.set_degraded("the metadata database has not answered within the renew interval".into());
            }
            act.enforce_guards();
        });
        self.tick(ctx);
    }
}

impl Handler<LocalEvent> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: LocalEvent, ctx: &mut Context<Self>) {
        match msg {
            LocalEvent::PlaceNow => self.tick(ctx),
            LocalEvent::TaskEnded { id, epoch } => {
                if releases_on_end(self.held.get(&id).map(|h| h.epoch), epoch) {
                    self.release(id);
                }
            }
        }
    }
}

impl Handler<StopPlacing> for Coordinator {
    type Result = ();

    fn handle(&mut self, _: StopPlacing, _: &mut Context<Self>) {
        if self.shutdown == Shutdown::No {
            self.shutdown = Shutdown::Leaving;
        }
    }
}

impl Handler<Leave> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    /// Waits for a round in flight first (at most `LEAVE_ROUND_WAIT`): one that began before
    /// `StopPlacing` may still acquire leases, and they must be released with the others.
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        if self.shutdown == Shutdown::No {
            self.shutdown = Shutdown::Leaving;
        }
        let mut rounds = self.rounds.subscribe();
        let in_flight = self.busy;
        let log = self.log.clone();
        let wait = async move {
            if in_flight && tokio::time::timeout(LEAVE_ROUND_WAIT, rounds.changed()).await.is_err() {
                warn!(
                    log,
                    "a cluster round still runs; leaving without it (a lease it acquires is released \
                            when it ends, or expires)"
                );
            }
        };
        Box::pin(wait.into_actor(self).then(|(), act, _| {
            act.shutdown = Shutdown::Left;
            let held: Vec<(TaskId, i64)> = act.held.drain().map(|(id, h)| (id, h.epoch)).collect();
            let (store, node, log) = (act.store.clone(), act.node_id.clone(), act.log.clone());
            async move {
                let n = held.len();
                let res = store
                    .call(move |s| {
                        for (id, epoch) in held {
                            s.release_lease(id, &node, epoch)?;
                        }
                        s.node_left(&node)
                    })
                    .await;
                match res {
                    Ok(()) => info!(log, "left the cluster"; "leases_released" => n),
                    Err(e) => warn!(log, "could not release every lease (they will expire)"; "error" => %e),
                }
            }
            .into_actor(act)
        }))
    }
}

/// Registers the node and starts its coordinator (cluster mode); returns it and the link the
/// supervisor needs (`SetCoordinator`).
pub async fn start(
    node_id: String,
    store: Store,
    settings: Arc<Settings>,
    supervisor: Recipient<LeaseCommand>,
    log: &Logger,
) -> Result<(Addr<Coordinator>, CoordinatorLink), StoreError> {
    let (n, max) = (node_id.clone(), settings.cluster.max_tasks_per_node);
    store.call(move |s| s.register_node(&n, env!("CARGO_PKG_VERSION"), max)).await?;
    match store.call(|s| s.idle_transaction_timeout()).await {
        Ok(Some(sec)) => {
            slog::debug!(log, "metadata transactions idle this long are ended by the database"; "seconds" => sec)
        }
        Ok(None) => warn!(
            log,
            "the metadata database cannot end idle transactions (it has no idle_transaction_timeout: MySQL): \
             a node frozen inside a metadata transaction keeps that task's lease row locked until it resumes \
             or its connection drops (wait_timeout), and no other node can take the task over meanwhile; \
             MariaDB ends such a transaction after the lease TTL"
        ),
        Err(e) => warn!(log, "cannot read the metadata database's idle_transaction_timeout"; "error" => %e),
    }
    let coordinator = Coordinator::new(node_id, store, settings, supervisor, log);
    let rounds = coordinator.rounds.subscribe();
    let addr = coordinator.start();
    let link = CoordinatorLink { events: addr.clone().recipient(), rounds };
    Ok((addr, link))
}
