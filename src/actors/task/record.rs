//! How a `TaskActor` stores the states it reaches: `recording` decides (pure, table-tested),
//! `record_then` carries the decision out, in order with the actor's other writes.

use actix::prelude::*;
use slog::warn;

use super::TaskActor;
use crate::domain::{Mover, TaskEventType, TaskState};
use crate::meta::{LastError, Transition};

/// What `record` does with a state the task reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recording {
    /// Nothing to store: the lease is gone, or the same state again with nothing to say.
    Nothing,
    /// A change the state table does not have: logged, not stored.
    Impossible,
    /// Lease renewals fail: the store keeps LEASE_DEGRADED; the state reached is remembered and
    /// stored once renewals succeed again.
    Remember,
    /// Stored: a transition, or an event (and a new error) on the same state.
    Store,
}

/// The decision behind `record`: from the local state `from` to `to`, with or without an event,
/// while lease renewals fail (`degraded`) or after the lease was given up (`relinquished`).
pub(super) fn recording(from: TaskState, to: TaskState, event: bool, degraded: bool, relinquished: bool) -> Recording {
    if relinquished {
        return Recording::Nothing;
    }
    if degraded
        && !matches!(to, TaskState::LeaseDegraded | TaskState::Stopping | TaskState::Stopped | TaskState::Failed)
    {
        return Recording::Remember;
    }
    if from == to {
        return if event { Recording::Store } else { Recording::Nothing };
    }
    if from.can_become(to) { Recording::Store } else { Recording::Impossible }
}

impl TaskActor {
    /// Records `to` in the store if the local state allows it, in order with other writes.
    ///
    /// At most one `record` per handler: actix runs `ctx.wait` futures last-in first, so two
    /// writes from one handler would land reversed. Chain them with `record_then`.
    pub(super) fn record(
        &mut self,
        to: TaskState,
        last_error: LastError,
        event: Option<(TaskEventType, String)>,
        ctx: &mut Context<Self>,
    ) {
        self.record_then(to, last_error, event, ctx, |_, _| {});
    }

    /// Like `record`, then runs `then` once the write has landed (used to stop after the final
    /// state is stored, never before).
    pub(super) fn record_then(
        &mut self,
        to: TaskState,
        last_error: LastError,
        event: Option<(TaskEventType, String)>,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let id = self.id();
        let from = self.state;
        match recording(from, to, event.is_some(), self.degraded.is_some(), self.relinquished) {
            Recording::Store => {}
            Recording::Nothing => return then(self, ctx),
            Recording::Impossible => {
                warn!(self.ctx.log, "ignoring impossible transition"; "from" => %from, "to" => %to);
                return then(self, ctx);
            }
            Recording::Remember => {
                // Degraded wins in the store until renewals succeed again; remember the real state.
                self.degraded = Some(to);
                self.status.state = Some(TaskState::LeaseDegraded);
                return then(self, ctx);
            }
        }
        self.state = to;
        self.status.state = Some(to);
        let store = self.ctx.store.clone();
        let log = self.ctx.log.clone();
        // The actor waits for each write before its next message: transitions land in order.
        ctx.wait(
            async move {
                let res = store
                    .call(move |s| {
                        let ev = event.as_ref().map(|(k, m)| (*k, m.as_str()));
                        // The same state again with a new error (another failed attempt) updates
                        // the error in place; otherwise only the event is added.
                        if from == to && !matches!(last_error, LastError::Set(_)) {
                            if let Some((k, m)) = ev {
                                s.append_event(id, k, m)?;
                            }
                            return Ok(());
                        }
                        let mut t = Transition::to(to, Mover::Task).from(from).last_error(last_error);
                        t.event = ev;
                        s.transition(id, t).map(|_| ())
                    })
                    .await;
                match res {
                    Err(e) => warn!(log, "could not record the task state"; "to" => %to, "error" => %e),
                    Ok(()) => slog::debug!(log, "task state recorded"; "from" => %from, "to" => %to),
                }
            }
            .into_actor(self)
            .map(move |_, act, ctx| then(act, ctx)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    #[test]
    fn what_a_reached_state_records() {
        // (from, to, event, degraded, relinquished) -> recording
        let table = [
            // A move the state table has: stored.
            (Starting, Running, true, false, false, Recording::Store),
            (Running, RetryBackoff, true, false, false, Recording::Store),
            (Stopping, Stopped, false, false, false, Recording::Store),
            // The same state: only with something to say (an event, a new error).
            (Running, Running, true, false, false, Recording::Store),
            (Running, Running, false, false, false, Recording::Nothing),
            // A move the table does not have: dropped (and logged).
            (Stopped, Running, true, false, false, Recording::Impossible),
            (Failed, Stopping, false, false, false, Recording::Impossible),
            // Renewals failing: the store keeps LEASE_DEGRADED, the state is remembered...
            (LeaseDegraded, Running, true, true, false, Recording::Remember),
            (LeaseDegraded, RetryBackoff, true, true, false, Recording::Remember),
            // ...except the states that end the run, which are stored at once.
            (LeaseDegraded, Stopping, false, true, false, Recording::Store),
            (LeaseDegraded, Failed, true, true, false, Recording::Store),
            (Running, LeaseDegraded, true, true, false, Recording::Store),
            // The lease is gone: nothing more is recorded, whatever it is.
            (Running, Failed, true, false, true, Recording::Nothing),
            (Stopping, Stopped, true, true, true, Recording::Nothing),
        ];
        for (from, to, event, degraded, relinquished, want) in table {
            assert_eq!(
                recording(from, to, event, degraded, relinquished),
                want,
                "{from} -> {to}, event {event}, degraded {degraded}, relinquished {relinquished}"
            );
        }
    }
}
