//! Each task's durable checkpoint as a `tokio::sync::watch`: the task's `FileWriterActor`
//! publishes it right after the fsync that makes it durable (and when it reloads it), and every
//! relay dump of the task waits on it instead of polling. One channel per task, created on first
//! use by either side, kept across task restarts. Each value carries when it was published, so a
//! dump can say how long a waiting client waited for its bytes (`relay_send_delay_seconds`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::domain::TaskId;
use crate::meta::Checkpoint;

/// The durable checkpoints of all tasks (cheap to clone; one per process, passed in).
#[derive(Clone, Default)]
pub struct CheckpointHub {
    inner: Arc<Mutex<HashMap<TaskId, watch::Sender<Option<Published>>>>>,
}

/// A durable checkpoint as the writer published it.
#[derive(Clone, Debug)]
pub struct Published {
    pub checkpoint: Checkpoint,
    /// Right after the fsync that made it durable.
    pub at: Instant,
}

impl CheckpointHub {
    fn sender(&self, id: TaskId) -> watch::Sender<Option<Published>> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id).or_insert_with(|| watch::channel(None).0).clone()
    }

    /// The publishing side for a task's writer.
    pub fn publisher(&self, id: TaskId) -> DurablePublisher {
        DurablePublisher(self.sender(id))
    }

    /// Follows a task's durable checkpoint (`None` until its writer has published one).
    pub fn subscribe(&self, id: TaskId) -> watch::Receiver<Option<Published>> {
        self.sender(id).subscribe()
    }

    /// Forgets a deleted task's channel (dumps still holding it see no more changes).
    pub fn remove(&self, id: TaskId) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

/// What the writer holds: publish only what is durable.
#[derive(Clone)]
pub struct DurablePublisher(watch::Sender<Option<Published>>);

impl DurablePublisher {
    /// Called by the writer after the fsync covering `cp` returned (never before).
    pub fn publish(&self, cp: Option<&Checkpoint>) {
        self.0.send_if_modified(|cur| {
            if cur.as_ref().map(|p| &p.checkpoint) == cp {
                false
            } else {
                *cur = cp.map(|c| Published { checkpoint: c.clone(), at: Instant::now() });
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;

    #[test]
    fn subscribers_see_each_new_durable_checkpoint_whoever_came_first() {
        let hub = CheckpointHub::default();
        let mut rx = hub.subscribe(TaskId(1));
        assert!(rx.borrow().is_none());
        let cp = Checkpoint {
            source_identity: "mariadb-1-0".into(),
            file: BinlogFileName::parse("b.000001").unwrap(),
            pos: 120,
            gtid_set: None,
        };
        hub.publisher(TaskId(1)).publish(Some(&cp));
        assert!(rx.has_changed().unwrap());
        let published = rx.borrow_and_update().clone().expect("published");
        assert_eq!(published.checkpoint, cp);
        assert!(published.at.elapsed() < std::time::Duration::from_secs(60));
        // The same value again wakes nobody.
        hub.publisher(TaskId(1)).publish(Some(&cp));
        assert!(!rx.has_changed().unwrap());
        assert!(hub.subscribe(TaskId(2)).borrow().is_none());
    }
}
