//! Cluster mode's pieces that are not an actor: the node's identity, the local lease guard the
//! writers check before every write, and the placement arithmetic. The coordinator actor
//! (`actors::coordinator`) drives them; the shared state lives in `meta::leases`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::valid_node_id;
use crate::domain::TaskId;
use crate::layout::DataLayout;
pub use crate::layout::{LEASE_MARKER, NODE_ID_FILE};

/// This node's id: the configured one, else the one kept in `{data_dir}/node_id`, else a new
/// one written there (so a restart keeps its identity and can re-take its own leases).
pub fn resolve_node_id(configured: &str, data_dir: &Path) -> std::io::Result<String> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = DataLayout::new(data_dir).node_id_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim().to_string();
            if valid_node_id(&id) {
                return Ok(id);
            }
            return Err(std::io::Error::other(format!(
                "{} holds {id:?}, which is not a valid node id ([A-Za-z0-9._-]{{1,64}})",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host = hostname().unwrap_or_else(|| "node".into());
    let host: String =
        host.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).take(40).collect();
    let id = format!("{}-{:08x}", if host.is_empty() { "node".into() } else { host }, rand::random::<u32>());
    // Temp file + fsync + rename: a crash leaves either no file or a whole one.
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(id.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(id)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The local view of one lease: valid until a deadline the coordinator pushes forward after
/// every successful renewal. The writer and the uploader check it before every write, so a node
/// that cannot renew (metadata database unreachable, process frozen) stops writing before the
/// lease can expire in the database.
///
/// The deadline is `renewal sent + ttl - margin`, on the monotonic clock (which keeps running
/// while a process is stopped), and the database's expiry is `renewal received + ttl`, later.
#[derive(Debug, Clone)]
pub struct LeaseGuard {
    inner: Arc<GuardInner>,
}

#[derive(Debug)]
struct GuardInner {
    epoch: i64,
    base: Instant,
    /// Milliseconds after `base` until which writing is allowed.
    until_ms: AtomicU64,
    revoked: AtomicBool,
}

impl LeaseGuard {
    pub fn new(epoch: i64, valid_until: Instant) -> Self {
        let base = Instant::now();
        let g = LeaseGuard {
            inner: Arc::new(GuardInner { epoch, base, until_ms: AtomicU64::new(0), revoked: AtomicBool::new(false) }),
        };
        g.extend(valid_until);
        g
    }

    pub fn epoch(&self) -> i64 {
        self.inner.epoch
    }

    /// Moves the deadline forward (never back).
    pub fn extend(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.inner.base).as_millis() as u64;
        self.inner.until_ms.fetch_max(ms, Ordering::SeqCst);
    }

    /// The lease is gone: no write may happen under it any more.
    pub fn revoke(&self) {
        self.inner.revoked.store(true, Ordering::SeqCst);
    }

    pub fn is_valid(&self) -> bool {
        self.is_valid_at(Instant::now())
    }

    pub fn is_valid_at(&self, now: Instant) -> bool {
        !self.inner.revoked.load(Ordering::SeqCst)
            && now < self.inner.base + Duration::from_millis(self.inner.until_ms.load(Ordering::SeqCst))
    }

    /// Time left before writing stops (zero when already invalid).
    pub fn remaining(&self) -> Duration {
        if self.inner.revoked.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        (self.inner.base + Duration::from_millis(self.inner.until_ms.load(Ordering::SeqCst)))
            .saturating_duration_since(Instant::now())
    }
}

/// Makes `{data_dir}/{task}` this lease's: if its files were written under another lease (another
/// node held the task since, or they are from an earlier life of this node), they are not
/// trusted: the directory is moved to `{data_dir}/.stale/` (kept for an operator, never read)
/// and the writer fetches again what the bucket does not hold. Returns where it was moved.
pub fn adopt_task_dir(data_dir: &Path, task_id: i64, node_id: &str, epoch: i64) -> std::io::Result<Option<PathBuf>> {
    use std::io::Write;
    let layout = DataLayout::new(data_dir);
    let dir = layout.task_dir(TaskId(task_id));
    let marker = layout.lease_marker(TaskId(task_id));
    let want = format!("{node_id} {epoch}\n");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s == want) {
        return Ok(None);
    }
    let mut moved = None;
    if dir.exists() {
        std::fs::create_dir_all(layout.stale_dir())?;
        let to = layout.stale_copy_now(TaskId(task_id));
        std::fs::rename(&dir, &to)?;
        moved = Some(to);
    }
    std::fs::create_dir_all(&dir)?;
    let tmp = layout.lease_marker_tmp(TaskId(task_id));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(want.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &marker)?;
    std::fs::File::open(&dir)?.sync_all()?;
    std::fs::File::open(data_dir)?.sync_all()?;
    Ok(moved)
}

/// How long a lease may be written under after its renewal was sent: the TTL minus a margin for
/// the renewal's round trip and clock-rate differences (a tenth of the TTL, at least 500 ms).
pub fn local_validity(ttl: Duration) -> Duration {
    let margin = (ttl / 10).max(Duration::from_millis(500));
    ttl.saturating_sub(margin)
}

/// How many more tasks this node should claim now: up to its fair share of the wanted tasks
/// among the live nodes (rounded up), within `max_tasks` (0 = no limit), and never more than are
/// waiting.
pub fn claim_budget(wanted: i64, alive_nodes: usize, mine: i64, max_tasks: u32, unplaced: usize) -> usize {
    let nodes = alive_nodes.max(1) as i64;
    let share = (wanted + nodes - 1) / nodes;
    let mut budget = (share - mine).max(0);
    if max_tasks > 0 {
        budget = budget.min((i64::from(max_tasks) - mine).max(0));
    }
    (budget as usize).min(unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_a_fair_share_within_the_limit() {
        // 10 tasks on 3 nodes: a share is 4.
        assert_eq!(claim_budget(10, 3, 0, 0, 10), 4);
        assert_eq!(claim_budget(10, 3, 3, 0, 2), 1);
        // A node dies: 2 nodes left, a share is 5.
        assert_eq!(claim_budget(10, 2, 4, 0, 3), 1);
        assert_eq!(claim_budget(10, 2, 3, 0, 3), 2);
        // The limit wins over the share.
        assert_eq!(claim_budget(10, 1, 0, 3, 10), 3);
        assert_eq!(claim_budget(10, 1, 5, 3, 10), 0);
        // Never more than are waiting; a node not yet counted alive still counts as one.
        assert_eq!(claim_budget(10, 0, 0, 0, 2), 2);
    }

    #[test]
    fn the_guard_expires_and_only_moves_forward() {
        let now = Instant::now();
        let g = LeaseGuard::new(3, now + Duration::from_secs(10));
        assert!(g.is_valid_at(now + Duration::from_secs(9)));
        assert!(!g.is_valid_at(now + Duration::from_secs(11)));
        g.extend(now + Duration::from_secs(5));
        assert!(g.is_valid_at(now + Duration::from_secs(9)), "an earlier deadline does not shorten it");
        g.extend(now + Duration::from_secs(20));
        assert!(g.is_valid_at(now + Duration::from_secs(19)));
        g.revoke();
        assert!(!g.is_valid_at(now));
        assert_eq!(g.remaining(), Duration::ZERO);
        assert_eq!(g.epoch(), 3);
    }

    #[test]
    fn a_task_dir_from_another_lease_is_moved_aside() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join("7");
        std::fs::create_dir_all(dir.join("srv")).unwrap();
        std::fs::write(dir.join("srv/bin.000001"), b"old").unwrap();
        let moved = adopt_task_dir(data.path(), 7, "a", 2).unwrap().expect("files of no known lease are moved");
        assert_eq!(std::fs::read(moved.join("srv/bin.000001")).unwrap(), b"old");
        assert!(!dir.join("srv").exists());
        // The same lease again (a restart): the files stay.
        std::fs::create_dir_all(dir.join("srv")).unwrap();
        assert_eq!(adopt_task_dir(data.path(), 7, "a", 2).unwrap(), None);
        assert!(dir.join("srv").exists());
        // Another epoch: moved.
        assert!(adopt_task_dir(data.path(), 7, "a", 3).unwrap().is_some());
        assert!(!dir.join("srv").exists());
    }

    #[test]
    fn local_validity_leaves_a_margin() {
        assert_eq!(local_validity(Duration::from_secs(15)), Duration::from_millis(13_500));
        assert_eq!(local_validity(Duration::from_secs(3)), Duration::from_millis(2_500));
    }

    #[test]
    fn a_generated_node_id_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve_node_id("", dir.path()).unwrap();
        assert!(valid_node_id(&a), "{a}");
        assert_eq!(resolve_node_id("", dir.path()).unwrap(), a);
        assert_eq!(resolve_node_id("node-b", dir.path()).unwrap(), "node-b");
        std::fs::write(dir.path().join(NODE_ID_FILE), "bad id!").unwrap();
        assert!(resolve_node_id("", dir.path()).is_err());
    }
}
