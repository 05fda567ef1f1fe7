//! Who is connected to the relay, for `GET /api/tasks/{id}/replicas` and the relay metrics. A
//! read-only view for the API; each connection updates its own entry and removes it when it ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::TaskId;
use crate::telemetry::metrics::metrics;

/// One connected relay client.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelayClient {
    /// The relay's connection id.
    pub connection_id: u32,
    pub task_id: i64,
    /// The server id the replica registered with (COM_REGISTER_SLAVE / the dump request); null
    /// before it said.
    pub server_id: Option<u32>,
    pub address: String,
    pub user: String,
    /// `connected` (logged in, no dump yet), `position` (a dump by file and position) or `gtid`.
    pub mode: String,
    /// Where the dump is (the source's file name and position of the next event).
    pub file: Option<String>,
    pub pos: Option<u64>,
    pub bytes_sent: u64,
    pub connected_since: DateTime<Utc>,
}

/// The connected clients of every task.
#[derive(Clone, Default)]
pub struct Clients {
    inner: Arc<Mutex<BTreeMap<u32, RelayClient>>>,
}

impl Clients {
    /// Registers a logged-in client; it stays listed while the guard lives.
    pub fn register(&self, client: RelayClient) -> ClientGuard {
        let (id, task) = (client.connection_id, client.task_id);
        metrics().relay_clients.with_label_values(&[&task.to_string()]).inc();
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).insert(id, client);
        let bytes_sent = metrics().relay_bytes_sent.with_label_values(&[&task.to_string()]);
        ClientGuard { clients: self.clone(), id, task, bytes_sent }
    }

    /// The clients of `task`, oldest connection first.
    pub fn of_task(&self, task: TaskId) -> Vec<RelayClient> {
        let map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|c| c.task_id == task.0).cloned().collect()
    }
}

/// A connection's entry: updated as it goes, removed on drop.
pub struct ClientGuard {
    clients: Clients,
    id: u32,
    task: i64,
    /// The task's `binlog_server_relay_bytes_sent_total`, looked up once.
    bytes_sent: prometheus::IntCounter,
}

impl ClientGuard {
    pub fn update(&self, f: impl FnOnce(&mut RelayClient)) {
        if let Some(c) = self.clients.inner.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&self.id) {
            f(c);
        }
    }

    /// Counts bytes sent to the client (its entry and the task's metric).
    pub fn sent(&self, bytes: u64, file: &str, pos: u64) {
        self.bytes_sent.inc_by(bytes);
        self.update(|c| {
            c.bytes_sent += bytes;
            if c.file.as_deref() != Some(file) {
                c.file = Some(file.to_string());
            }
            c.pos = Some(pos);
        });
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.clients.inner.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
        metrics().relay_clients.with_label_values(&[&self.task.to_string()]).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: u32, task: i64) -> RelayClient {
        RelayClient {
            connection_id: id,
            task_id: task,
            server_id: None,
            address: "127.0.0.1:5000".into(),
            user: "r".into(),
            mode: "connected".into(),
            file: None,
            pos: None,
            bytes_sent: 0,
            connected_since: Utc::now(),
        }
    }

    #[test]
    fn clients_are_listed_while_connected_and_counted() {
        let clients = Clients::default();
        let a = clients.register(client(1, 900));
        let _b = clients.register(client(2, 901));
        a.sent(100, "b.000001", 120);
        let listed = clients.of_task(TaskId(900));
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (listed[0].bytes_sent, listed[0].pos, listed[0].file.as_deref()),
            (100, Some(120), Some("b.000001"))
        );
        assert_eq!(metrics().relay_clients.with_label_values(&["900"]).get(), 1);
        drop(a);
        assert!(clients.of_task(TaskId(900)).is_empty());
        assert_eq!(metrics().relay_clients.with_label_values(&["900"]).get(), 0);
        assert_eq!(metrics().relay_bytes_sent.with_label_values(&["900"]).get(), 100);
    }
}
