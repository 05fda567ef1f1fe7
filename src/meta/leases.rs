//! Cluster mode's shared state: node heartbeats, task leases and the fence that every write of a
//! leased task passes through.
//!
//! Times are the metadata database's (`NOW(6)`), never a host's: two nodes whose clocks disagree
//! still agree on whether a lease has expired. Cluster mode runs on MySQL/MariaDB only (checked
//! at start-up), so the SQL here is MySQL's.
//!
//! Invariants (see docs/architecture.md):
//! - a lease changes hands only when it has expired or its owner released it, and its `epoch`
//!   grows whenever the owner changes;
//! - a fenced write (checkpoint, catalog, task state) commits only while the writer's lease is
//!   live with the epoch it was granted: the check and the write are one transaction, and the
//!   check's UPDATE locks the lease row, so a takeover cannot interleave.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};

use crate::domain::{TaskId, TaskState};
use crate::meta::StoreError;
use crate::meta::conn::MetaConnection;
use crate::meta::models::to_utc;
use crate::meta::store::Store;

/// Which lease a fenced store writes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub task_id: TaskId,
    pub node_id: String,
    pub epoch: i64,
}

/// A task's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub task_id: TaskId,
    pub owner: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
    /// Whether it had not expired when read (by the database's clock).
    pub live: bool,
}

/// The outcome of an acquisition attempt that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub epoch: i64,
    /// The owner before us, when there was one and it was another node.
    pub previous_owner: Option<String>,
}

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: String,
    pub version: String,
    pub max_tasks: i32,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub alive: bool,
    /// Live leases held.
    pub leases: i64,
}

/// What placement needs to know in one read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterCounts {
    /// Tasks whose operator wants them running (and that have not failed).
    pub wanted: i64,
    /// Live leases per owner.
    pub leases_by_node: std::collections::BTreeMap<String, i64>,
    /// Nodes with a recent heartbeat that have not left.
    pub alive_nodes: Vec<String>,
}

#[derive(QueryableByName)]
struct LeaseRow {
    #[diesel(sql_type = BigInt)]
    task_id: i64,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = BigInt)]
    epoch: i64,
    #[diesel(sql_type = Timestamp)]
    expires_at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    live: i64,
}

impl From<LeaseRow> for Lease {
    fn from(r: LeaseRow) -> Self {
        Lease {
            task_id: TaskId(r.task_id),
            owner: r.owner,
            epoch: r.epoch,
            expires_at: to_utc(r.expires_at),
            live: r.live != 0,
        }
    }
}

#[derive(QueryableByName)]
struct NodeRow {
    #[diesel(sql_type = Text)]
    node_id: String,
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = Integer)]
    max_tasks: i32,
    #[diesel(sql_type = Timestamp)]
    started_at: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    heartbeat_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Timestamp>)]
    left_at: Option<NaiveDateTime>,
    #[diesel(sql_type = BigInt)]
    alive: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct OwnerCount {
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// How long a claim waits for a lease row that another session holds locked (seconds, the
/// smallest `innodb_lock_wait_timeout`). A claim is never urgent: the row is skipped this round
/// and tried again at the next, while the round goes on (the default, 50 s, would hold up the
/// claiming node's own renewals for longer than a TTL).
pub const CLAIM_LOCK_WAIT_SEC: u32 = 1;

/// `NOW(6) + INTERVAL ms`, for a validated millisecond count.
fn now_plus(ms: u64) -> String {
    format!("NOW(6) + INTERVAL {} MICROSECOND", ms.saturating_mul(1000))
}

fn require_mysql(c: &MetaConnection) -> Result<(), StoreError> {
    match c {
        MetaConnection::Mysql(_) => Ok(()),
        MetaConnection::Sqlite(_) => {
            Err(StoreError::Misconfigured("cluster mode needs a MySQL/MariaDB metadata database".into()))
        }
    }
}

/// The fence check: bumps a counter on the lease row if (and only if) it is still ours and
/// live. The UPDATE takes the row lock, which a takeover's UPDATE must wait for.
pub(crate) fn check_fence(c: &mut MetaConnection, f: &Fence) -> Result<(), StoreError> {
    require_mysql(c)?;
    let n = diesel::sql_query(
        "UPDATE task_leases SET fence_checks = fence_checks + 1 \
         WHERE task_id = ? AND owner = ? AND epoch = ? AND expires_at > NOW(6)",
    )
    .bind::<BigInt, _>(f.task_id.0)
    .bind::<Text, _>(&f.node_id)
    .bind::<BigInt, _>(f.epoch)
    .execute(c)?;
    if n == 1 { Ok(()) } else { Err(StoreError::Fenced(format!("{} epoch {}", f.node_id, f.epoch))) }
}

impl Store {
    /// Registers this node (again): a restart with the same node_id takes over its row.
    pub fn register_node(&self, node_id: &str, version: &str, max_tasks: u32) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        diesel::sql_query(
            "INSERT INTO cluster_nodes (node_id, version, max_tasks, started_at, heartbeat_at, left_at) \
             VALUES (?, ?, ?, NOW(6), NOW(6), NULL) \
             ON DUPLICATE KEY UPDATE version = VALUES(version), max_tasks = VALUES(max_tasks), \
             started_at = NOW(6), heartbeat_at = NOW(6), left_at = NULL",
        )
        .bind::<Text, _>(node_id)
        .bind::<Text, _>(version)
        .bind::<Integer, _>(max_tasks.min(i32::MAX as u32) as i32)
        .execute(&mut *conn)?;
        Ok(())
    }

    pub fn heartbeat_node(&self, node_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        diesel::sql_query("UPDATE cluster_nodes SET heartbeat_at = NOW(6), left_at = NULL WHERE node_id = ?")
            .bind::<Text, _>(node_id)
            .execute(&mut *conn)?;
        Ok(())
    }

    /// A graceful stop: the node is no longer counted as alive.
    pub fn node_left(&self, node_id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        diesel::sql_query("UPDATE cluster_nodes SET left_at = NOW(6) WHERE node_id = ?")
            .bind::<Text, _>(node_id)
            .execute(&mut *conn)?;
        Ok(())
    }

    /// Every registered node; alive = heartbeat within `ttl_ms` and not left.
    pub fn list_nodes(&self, ttl_ms: u64) -> Result<Vec<NodeInfo>, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        let rows: Vec<NodeRow> = diesel::sql_query(format!(
            "SELECT node_id, version, max_tasks, started_at, heartbeat_at, left_at, \
             CAST(left_at IS NULL AND heartbeat_at > NOW(6) - INTERVAL {} MICROSECOND AS SIGNED) AS alive \
             FROM cluster_nodes ORDER BY node_id",
            ttl_ms.saturating_mul(1000)
        ))
        .load(&mut *conn)?;
        let counts = live_lease_counts(&mut conn)?;
        Ok(rows
            .into_iter()
            .map(|r| NodeInfo {
                leases: counts.get(&r.node_id).copied().unwrap_or(0),
                node_id: r.node_id,
                version: r.version,
                max_tasks: r.max_tasks,
                started_at: to_utc(r.started_at),
                heartbeat_at: to_utc(r.heartbeat_at),
                left_at: r.left_at.map(to_utc),
                alive: r.alive != 0,
            })
            .collect())
    }

    /// Takes the task's lease for `node_id` if it is free (none yet, expired, or released) or
    /// already ours and live. The epoch grows with every new holding: when the owner changes,
    /// and when a node takes back a lease of its own that had expired, so that whatever a former
    /// holding of the same node still has in flight is fenced like another node's would be.
    ///
    /// A lease row locked by another session's open transaction (a node stalled between its
    /// fence check and its commit) is waited for at most [`CLAIM_LOCK_WAIT_SEC`]; then the
    /// answer is [`StoreError::Locked`] and nothing changed.
    pub fn acquire_lease(&self, id: TaskId, node_id: &str, ttl_ms: u64) -> Result<Option<Acquired>, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        diesel::sql_query(format!("SET SESSION innodb_lock_wait_timeout = {CLAIM_LOCK_WAIT_SEC}"))
            .execute(&mut *conn)?;
        let acquired = acquire_in(&mut conn, id, node_id, ttl_ms);
        // Back to the server's default for whatever uses this pooled connection next; should
        // this fail, the connection is unusable and the pool's check-out test drops it.
        let reset = diesel::sql_query("SET SESSION innodb_lock_wait_timeout = DEFAULT").execute(&mut *conn);
        let acquired = acquired?;
        reset?;
        Ok(acquired)
    }

    /// The session's `idle_transaction_timeout` (MariaDB), or `None` where the server has no
    /// such variable (MySQL).
    pub fn idle_transaction_timeout(&self) -> Result<Option<u64>, StoreError> {
        #[derive(QueryableByName)]
        struct Value {
            #[diesel(sql_type = BigInt)]
            v: i64,
        }
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        match diesel::sql_query("SELECT CAST(@@SESSION.idle_transaction_timeout AS SIGNED) AS v")
            .get_result::<Value>(&mut *conn)
        {
            Ok(row) => Ok(Some(row.v.max(0) as u64)),
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("Unknown system variable") =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// [`Store::acquire_lease`]'s transaction.
fn acquire_in(
    conn: &mut MetaConnection,
    id: TaskId,
    node_id: &str,
    ttl_ms: u64,
) -> Result<Option<Acquired>, StoreError> {
    conn.transaction(|c| {
        let before = lease_row(c, id)?;
        // MySQL assigns left to right: `epoch` still sees the old owner and expiry.
        let n = diesel::sql_query(format!(
            "UPDATE task_leases SET epoch = CASE WHEN owner = ? AND expires_at > NOW(6) THEN epoch ELSE epoch + 1 END, \
                 owner = ?, \
                 expires_at = {}, acquired_at = NOW(6), renewed_at = NOW(6) \
                 WHERE task_id = ? AND (owner = ? OR expires_at <= NOW(6))",
            now_plus(ttl_ms)
        ))
        .bind::<Text, _>(node_id)
        .bind::<Text, _>(node_id)
        .bind::<BigInt, _>(id.0)
        .bind::<Text, _>(node_id)
        .execute(c)?;
        if n == 0 {
            let inserted = diesel::sql_query(format!(
                "INSERT IGNORE INTO task_leases \
                     (task_id, owner, epoch, expires_at, acquired_at, renewed_at, fence_checks) \
                     VALUES (?, ?, 1, {}, NOW(6), NOW(6), 0)",
                now_plus(ttl_ms)
            ))
            .bind::<BigInt, _>(id.0)
            .bind::<Text, _>(node_id)
            .execute(c)?;
            if inserted == 0 {
                return Ok(None);
            }
        }
        let after = lease_row(c, id)?.ok_or(StoreError::NotFound)?;
        if after.owner != node_id {
            return Ok(None);
        }
        let previous_owner = before.map(|b| b.owner).filter(|o| o != node_id);
        Ok(Some(Acquired { epoch: after.epoch, previous_owner }))
    })
}

impl Store {
    /// Renews the live leases of `tasks` that `node_id` holds; returns them (task, epoch) as they
    /// now stand. Only the tasks the node runs: a live lease of its own it does not run (left by
    /// a crashed predecessor of the same node id, or acquired by a round that then failed) is
    /// left to expire, so that placement can give the task to a node that will run it.
    pub fn renew_leases(&self, node_id: &str, tasks: &[TaskId], ttl_ms: u64) -> Result<Vec<(TaskId, i64)>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        // Integers only, so they can be written into the statement.
        let ids = tasks.iter().map(|t| t.0.to_string()).collect::<Vec<_>>().join(",");
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        conn.transaction(|c| {
            diesel::sql_query(format!(
                "UPDATE task_leases SET expires_at = {}, renewed_at = NOW(6) \
                 WHERE owner = ? AND expires_at > NOW(6) AND task_id IN ({ids})",
                now_plus(ttl_ms)
            ))
            .bind::<Text, _>(node_id)
            .execute(c)?;
            let rows: Vec<LeaseRow> = diesel::sql_query(format!(
                "SELECT task_id, owner, epoch, expires_at, CAST(1 AS SIGNED) AS live FROM task_leases \
                 WHERE owner = ? AND expires_at > NOW(6) AND task_id IN ({ids})"
            ))
            .bind::<Text, _>(node_id)
            .load(c)?;
            Ok(rows.into_iter().map(|r| (TaskId(r.task_id), r.epoch)).collect())
        })
    }

    /// Gives a lease up (graceful stop, task stopped or failed): it expires now, so another
    /// node may take it at once. Only the holder of this epoch can release it.
    pub fn release_lease(&self, id: TaskId, node_id: &str, epoch: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        let n = diesel::sql_query(
            "UPDATE task_leases SET expires_at = NOW(6) WHERE task_id = ? AND owner = ? AND epoch = ? \
             AND expires_at > NOW(6)",
        )
        .bind::<BigInt, _>(id.0)
        .bind::<Text, _>(node_id)
        .bind::<BigInt, _>(epoch)
        .execute(&mut *conn)?;
        Ok(n == 1)
    }

    /// The task's lease, if it ever had one.
    pub fn get_lease(&self, id: TaskId) -> Result<Option<Lease>, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        Ok(lease_row(&mut conn, id)?.map(Lease::from))
    }

    /// Tasks that should run but have no live lease (placement's work list), oldest first.
    pub fn unplaced_tasks(&self, limit: i64) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        let rows: Vec<IdRow> = diesel::sql_query(
            "SELECT t.id AS id FROM tasks t \
             LEFT JOIN task_leases l ON l.task_id = t.id AND l.expires_at > NOW(6) \
             WHERE t.desired_state = 'RUNNING' AND t.state <> 'FAILED' AND l.task_id IS NULL \
             ORDER BY t.id LIMIT ?",
        )
        .bind::<BigInt, _>(limit)
        .load(&mut *conn)?;
        Ok(rows.into_iter().map(|r| TaskId(r.id)).collect())
    }

    /// Tasks asked to stop whose owner is gone (no live lease) but whose state still says a node
    /// runs them: nothing else will ever finish their stop.
    pub fn orphaned_stops(&self) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        // The state names are our own constants (`TaskState::ACTIVE`), never input.
        let active: Vec<String> = TaskState::ACTIVE.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let rows: Vec<IdRow> = diesel::sql_query(format!(
            "SELECT t.id AS id FROM tasks t \
             LEFT JOIN task_leases l ON l.task_id = t.id AND l.expires_at > NOW(6) \
             WHERE t.desired_state = 'STOPPED' \
             AND t.state IN ({}) \
             AND l.task_id IS NULL",
            active.join(", ")
        ))
        .load(&mut *conn)?;
        Ok(rows.into_iter().map(|r| TaskId(r.id)).collect())
    }

    /// Wanted tasks, live leases per node and live nodes, for placement and the overview.
    pub fn cluster_counts(&self, ttl_ms: u64) -> Result<ClusterCounts, StoreError> {
        let mut conn = self.conn()?;
        require_mysql(&conn)?;
        let wanted: Vec<Count> =
            diesel::sql_query("SELECT COUNT(*) AS n FROM tasks WHERE desired_state = 'RUNNING' AND state <> 'FAILED'")
                .load(&mut *conn)?;
        let leases_by_node = live_lease_counts(&mut conn)?;
        #[derive(QueryableByName)]
        struct Alive {
            #[diesel(sql_type = Text)]
            node_id: String,
        }
        let alive: Vec<Alive> = diesel::sql_query(format!(
            "SELECT node_id FROM cluster_nodes WHERE left_at IS NULL \
             AND heartbeat_at > NOW(6) - INTERVAL {} MICROSECOND ORDER BY node_id",
            ttl_ms.saturating_mul(1000)
        ))
        .load(&mut *conn)?;
        Ok(ClusterCounts {
            wanted: wanted.first().map_or(0, |c| c.n),
            leases_by_node,
            alive_nodes: alive.into_iter().map(|a| a.node_id).collect(),
        })
    }

    /// Those of `ids` whose operator asked them to stop.
    pub fn desired_stopped_among(&self, ids: &[TaskId]) -> Result<Vec<TaskId>, StoreError> {
        use crate::meta::schema::tasks;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn()?;
        let raw: Vec<i64> = ids.iter().map(|i| i.0).collect();
        let rows: Vec<i64> = tasks::table
            .filter(tasks::id.eq_any(raw))
            .filter(tasks::desired_state.eq(crate::domain::DesiredState::Stopped.as_str()))
            .select(tasks::id)
            .load(&mut *conn)?;
        Ok(rows.into_iter().map(TaskId).collect())
    }

    /// Who wrote the task's checkpoint, under which epoch (cluster mode; `None` standalone).
    pub fn checkpoint_writer(&self, id: TaskId) -> Result<Option<(String, i64)>, StoreError> {
        use crate::meta::schema::checkpoints;
        let mut conn = self.conn()?;
        let row: Option<(Option<String>, Option<i64>)> = checkpoints::table
            .find(id.0)
            .select((checkpoints::node_id, checkpoints::epoch))
            .first(&mut *conn)
            .optional()?;
        Ok(match row {
            Some((Some(node), Some(epoch))) => Some((node, epoch)),
            _ => None,
        })
    }
}

fn lease_row(c: &mut MetaConnection, id: TaskId) -> Result<Option<LeaseRow>, StoreError> {
    let mut rows: Vec<LeaseRow> = diesel::sql_query(
        "SELECT task_id, owner, epoch, expires_at, CAST(expires_at > NOW(6) AS SIGNED) AS live \
         FROM task_leases WHERE task_id = ?",
    )
    .bind::<BigInt, _>(id.0)
    .load(c)?;
    Ok(rows.pop())
}

fn live_lease_counts(c: &mut MetaConnection) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
    let rows: Vec<OwnerCount> =
        diesel::sql_query("SELECT owner, COUNT(*) AS n FROM task_leases WHERE expires_at > NOW(6) GROUP BY owner")
            .load(c)?;
    Ok(rows.into_iter().map(|r| (r.owner, r.n)).collect())
}
