//! The coordinator's decisions (cluster mode), pure: what a round does (renew, repair, place),
//! what a renewal's answer means for the leases this node holds (extend, lost), which held leases
//! a round stops or gives up, when a task's end releases its lease, and what becomes of a lease
//! acquired while the node shuts down. How many tasks to claim is `cluster::claim_budget`.
//! `actors::coordinator` gathers the facts and carries the decisions out; nothing here touches
//! the store, a clock or an actor.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::domain::TaskId;

/// When the coordinator last did what, and its pace.
#[derive(Debug, Clone, Copy)]
pub struct RoundFacts {
    pub now: Instant,
    pub last_renew: Option<Instant>,
    pub last_repair: Option<Instant>,
    pub renew_interval: Duration,
    /// How often rounds run (`tick_period`).
    pub tick_period: Duration,
    /// Graceful shutdown began: claim nothing more.
    pub leaving: bool,
}

/// What one round does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundPlan {
    /// Heartbeat the node and renew every held lease.
    pub renew: bool,
    /// Finish stops whose node is gone.
    pub repair: bool,
    /// Claim unplaced tasks up to the budget.
    pub place: bool,
}

/// A renewal is due when the renew interval has passed, give or take half a round: rounds run
/// twice per interval, so a round a little early must not push the renewal a whole round later.
/// Repairs run once per renew interval (never early: they scan every task).
pub fn plan_round(f: &RoundFacts) -> RoundPlan {
    let slack = f.tick_period / 2;
    let renew = f.last_renew.is_none_or(|t| f.now.saturating_duration_since(t) + slack >= f.renew_interval);
    let repair = f.last_repair.is_none_or(|t| f.now.saturating_duration_since(t) >= f.renew_interval);
    RoundPlan { renew, repair, place: !f.leaving }
}

/// What a renewal's answer means for the held leases `(task, epoch)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Renewed {
    /// Still ours under the same epoch: their local guards move forward.
    pub extend: Vec<TaskId>,
    /// Missing from the answer (expired, or another node took it): the task stops here.
    pub lost: Vec<TaskId>,
}

/// Sorts the held leases by the renewal's answer (the leases it renewed). A lease renewed under
/// another epoch than the one held is not ours any more: the holding it names is a newer one.
pub fn after_renewal(held: &[(TaskId, i64)], answer: &[(TaskId, i64)]) -> Renewed {
    let renewed: HashSet<(TaskId, i64)> = answer.iter().copied().collect();
    let mut out = Renewed::default();
    for lease in held {
        if renewed.contains(lease) {
            out.extend.push(lease.0);
        } else {
            out.lost.push(lease.0);
        }
    }
    out
}

/// The held tasks an operator asked (on any node) to stop: this node stops them.
pub fn stops_here(held: &HashSet<TaskId>, stop_requested: &[TaskId]) -> Vec<TaskId> {
    stop_requested.iter().copied().filter(|id| held.contains(id)).collect()
}

/// A local task ended after running under `ended` (`None`: it does not know, standalone start or
/// an actor that never ran): its lease is released if this node holds it and it is that holding,
/// never a newer one taken since.
pub fn releases_on_end(held: Option<i64>, ended: Option<i64>) -> bool {
    held.is_some_and(|h| ended.is_none_or(|e| e == h))
}

/// Where graceful shutdown stands when a round that acquired leases ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Not shutting down.
    No,
    /// `StopPlacing` came (the tasks are stopping), `Leave` has not released the leases yet.
    Leaving,
    /// `Leave` released what was held.
    Left,
}

/// What becomes of a lease acquired by a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquiredLease {
    /// Start the task under it.
    Run,
    /// Hold it without starting the task: `Leave` releases it with the others. (A round that
    /// began before the shutdown claims as usual; starting its tasks now would run them on a node
    /// whose supervisor is stopping everything, and a lease that nothing runs is renewed until
    /// the process exits, then blocks the task for a whole TTL.)
    HoldForLeave,
    /// Release it at once: `Leave` has already released the rest.
    GiveBack,
}

/// The fate of a lease a round acquired, by where shutdown stands when that round ends.
pub fn acquired_lease(shutdown: Shutdown) -> AcquiredLease {
    match shutdown {
        Shutdown::No => AcquiredLease::Run,
        Shutdown::Leaving => AcquiredLease::HoldForLeave,
        Shutdown::Left => AcquiredLease::GiveBack,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: i64) -> TaskId {
        TaskId(id)
    }

    #[test]
    fn a_round_renews_repairs_and_places_when_due() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        let ago = |d: Duration| Some(now - d);
        // (last_renew, last_repair, leaving) -> (renew, repair, place); renew 4 s, rounds 1 s.
        type Row = (Option<Instant>, Option<Instant>, bool, (bool, bool, bool));
        let table: &[Row] = &[
            // First round: everything.
            (None, None, false, (true, true, true)),
            // Just done: nothing but placing.
            (ago(ms(10)), ago(ms(10)), false, (false, false, true)),
            // Half a round early still renews; a repair waits for the whole interval.
            (ago(ms(3_500)), ago(ms(3_500)), false, (true, false, true)),
            // Earlier than that: no renewal.
            (ago(ms(3_400)), ago(s(4)), false, (false, true, true)),
            // Late: both.
            (ago(s(9)), ago(s(9)), false, (true, true, true)),
            // Leaving: renew and repair as usual, claim nothing.
            (None, None, true, (true, true, false)),
            (ago(ms(10)), ago(ms(10)), true, (false, false, false)),
        ];
        for (i, (last_renew, last_repair, leaving, (renew, repair, place))) in table.iter().enumerate() {
            let facts = RoundFacts {
                now,
                last_renew: *last_renew,
                last_repair: *last_repair,
                renew_interval: s(4),
                tick_period: s(1),
                leaving: *leaving,
            };
            assert_eq!(
                plan_round(&facts),
                RoundPlan { renew: *renew, repair: *repair, place: *place },
                "row {i}: {facts:?}"
            );
        }
    }

    #[test]
    fn a_lease_acquired_during_shutdown_is_never_run_and_always_released() {
        let table = [
            (Shutdown::No, AcquiredLease::Run),
            (Shutdown::Leaving, AcquiredLease::HoldForLeave),
            (Shutdown::Left, AcquiredLease::GiveBack),
        ];
        for (shutdown, fate) in table {
            assert_eq!(acquired_lease(shutdown), fate, "{shutdown:?}");
        }
    }

    #[test]
    fn a_renewal_answer_extends_what_it_names_and_loses_the_rest() {
        // (held, answer) -> (extend, lost)
        type Row = (&'static [(i64, i64)], &'static [(i64, i64)], &'static [i64], &'static [i64]);
        let table: &[Row] = &[
            // Nothing held: nothing to do, whatever the answer says.
            (&[], &[], &[], &[]),
            (&[], &[(1, 1)], &[], &[]),
            // All renewed.
            (&[(1, 1), (2, 5)], &[(1, 1), (2, 5)], &[1, 2], &[]),
            // One missing from the answer: lost.
            (&[(1, 1), (2, 5)], &[(2, 5)], &[2], &[1]),
            // Renewed under another epoch: a newer holding, not ours.
            (&[(1, 1)], &[(1, 2)], &[], &[1]),
            // An empty answer loses everything.
            (&[(1, 1), (2, 5)], &[], &[], &[1, 2]),
        ];
        for (i, (held, answer, extend, lost)) in table.iter().enumerate() {
            let held: Vec<(TaskId, i64)> = held.iter().map(|(id, e)| (t(*id), *e)).collect();
            let answer: Vec<(TaskId, i64)> = answer.iter().map(|(id, e)| (t(*id), *e)).collect();
            let got = after_renewal(&held, &answer);
            let want =
                Renewed { extend: extend.iter().map(|i| t(*i)).collect(), lost: lost.iter().map(|i| t(*i)).collect() };
            assert_eq!(got, want, "row {i}");
        }
    }

    #[test]
    fn only_held_tasks_are_stopped_here() {
        let held: HashSet<TaskId> = [t(1), t(2)].into_iter().collect();
        assert_eq!(stops_here(&held, &[t(2), t(3)]), vec![t(2)]);
        assert_eq!(stops_here(&held, &[]), Vec::<TaskId>::new());
        assert_eq!(stops_here(&HashSet::new(), &[t(1)]), Vec::<TaskId>::new());
    }

    #[test]
    fn a_task_end_releases_only_the_holding_it_ran_under() {
        // (held epoch, ended epoch) -> release
        let table = [
            (None, None, false),
            (None, Some(3), false),
            (Some(3), None, true),
            (Some(3), Some(3), true),
            // The lease was taken again since: the newer holding stays.
            (Some(4), Some(3), false),
        ];
        for (held, ended, release) in table {
            assert_eq!(releases_on_end(held, ended), release, "held {held:?}, ended {ended:?}");
        }
    }
}
