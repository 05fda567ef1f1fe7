//! Prometheus metrics: the service's own families (`binlog_server_*`) and the HTTP families of
//! actix-web-prom, rendered together at `/metrics`.
//!
//! Every family is listed (HELP and TYPE) from process start, even before it has a sample:
//! dashboards and alerts can rely on the names. Labels are bounded: a task id, a state, or an
//! error code; never a file name or an error text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::domain::{TaskId, TaskState};

/// What [`Metrics::task_snapshot`] reads, per task id.
#[derive(Debug, Default)]
pub struct TaskSnapshot {
    /// `binlog_server_replication_lag_seconds`.
    pub lag: BTreeMap<i64, f64>,
    /// `binlog_server_writer_busy_seconds`.
    pub writer_busy: BTreeMap<i64, f64>,
    /// `binlog_server_writer_start_seconds`.
    pub writer_start: BTreeMap<i64, f64>,
    pub counters: BTreeMap<i64, crate::overview::Counters>,
}

/// The service's metric families.
pub struct Metrics {
    pub tasks: IntGaugeVec,
    /// Tasks retrying for longer than `retry.alert_after_sec`.
    pub tasks_stuck: prometheus::IntGauge,
    pub events: IntCounterVec,
    pub bytes_written: IntCounterVec,
    pub lag: GaugeVec,
    pub checkpoint_age: GaugeVec,
    pub writer_busy: GaugeVec,
    pub writer_start: GaugeVec,
    pub fsync: Histogram,
    pub reconnects: IntCounterVec,
    pub crc_errors: IntCounterVec,
    pub upload_backlog: IntGaugeVec,
    pub upload_failures: IntCounterVec,
    pub build_info: GaugeVec,
    pub up_since: Gauge,
    /// Cluster mode: leases this node holds, and leases it lost (taken over or expired).
    pub leases_held: prometheus::IntGauge,
    pub lease_losses: prometheus::IntCounter,
    /// GTID switchovers a task followed to another source.
    pub source_switchovers: IntCounterVec,
    /// Upload attempts of a file whose previous attempt failed.
    pub upload_retries: IntCounterVec,
    /// Nodes sharing the metadata database with a live heartbeat (standalone: 1).
    pub cluster_nodes_online: prometheus::IntGauge,
    /// The recovery window of every task (oldest event, breaks); text encoded when it changes.
    pub recovery: RecoveryFamilies,
    /// CPU, memory, open files, start time of this process (Linux).
    process: Option<Box<dyn Collector>>,
    /// Relay: clients connected per task, and binlog bytes sent to them.
    pub relay_clients: IntGaugeVec,
    pub relay_bytes_sent: IntCounterVec,
    /// Semi-sync: acks sent to the source, and the time from an event that asked for one to
    /// the ack (which waits for the fsync).
    pub semi_sync_acks: IntCounterVec,
    pub semi_sync_ack_seconds: Histogram,
    /// From reading the first event of a write batch off the source's socket to the fsync that
    /// makes it durable having returned (what a semi-sync ack or a relay client waits for).
    pub durable_seconds: Histogram,
    /// Relay: from a new durable checkpoint (published right after its fsync) to its first bytes
    /// written to the socket of a client that was waiting for it.
    pub relay_send_delay_seconds: Histogram,
}

/// Buckets for the live path's latencies: finer around 1 ms (what an ack adds to a commit on a
/// healthy set-up, and the goals docs/performance.md measures against).
fn live_buckets() -> Vec<f64> {
    vec![0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("binlog_server_{name}"), help)
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            tasks: IntGaugeVec::new(opts("tasks", "Tasks by state."), &["state"]).expect("valid metric"),
            tasks_stuck: prometheus::IntGauge::with_opts(opts(
                "tasks_stuck",
                "Tasks retrying (RETRY_BACKOFF) for longer than retry.alert_after_sec: a failure that does not pass.",
            ))
            .expect("valid metric"),
            events: IntCounterVec::new(opts("events_total", "Binlog events written to local files."), &["task"])
                .expect("valid metric"),
            bytes_written: IntCounterVec::new(
                opts("bytes_written_total", "Binlog bytes written to local files."),
                &["task"],
            )
            .expect("valid metric"),
            lag: GaugeVec::new(
                opts(
                    "replication_lag_seconds",
                    "Seconds between the source's timestamp of the last event written and now; 0 when caught up.",
                ),
                &["task"],
            )
            .expect("valid metric"),
            checkpoint_age: GaugeVec::new(
                opts("checkpoint_age_seconds", "Seconds since the task's durable checkpoint last advanced."),
                &["task"],
            )
            .expect("valid metric"),
            writer_busy: GaugeVec::new(
                opts(
                    "writer_busy_seconds",
                    "Seconds the writer's batch in progress (write-out and fsync) has been running, read once a \
                     second; 0 between batches. writer.stall_after_sec (10) or more: the disk is hanging \
                     (WRITER_STALLED).",
                ),
                &["task"],
            )
            .expect("valid metric"),
            writer_start: GaugeVec::new(
                opts(
                    "writer_start_seconds",
                    "Seconds the writer's start (crash recovery and reconciling the local files, before the task \
                     streams) has been running, read once a second; 0 otherwise. writer.start_stall_after_sec (60) \
                     or more: the disk is hanging or very slow (WRITER_STALLED).",
                ),
                &["task"],
            )
            .expect("valid metric"),
            fsync: Histogram::with_opts(
                HistogramOpts::new(
                    "binlog_server_fsync_duration_seconds",
                    "Duration of the fsync that makes a batch (and its checkpoint) durable.",
                )
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            )
            .expect("valid metric"),
            reconnects: IntCounterVec::new(
                opts("reconnects_total", "Replication attempts that ended in a retry, by error code."),
                &["task", "reason"],
            )
            .expect("valid metric"),
            crc_errors: IntCounterVec::new(
                opts("crc_errors_total", "Events refused because their CRC32 did not match."),
                &["task"],
            )
            .expect("valid metric"),
            upload_backlog: IntGaugeVec::new(opts("upload_backlog_files", "Sealed files not yet uploaded."), &["task"])
                .expect("valid metric"),
            upload_failures: IntCounterVec::new(opts("upload_failures_total", "Failed upload attempts."), &["task"])
                .expect("valid metric"),
            build_info: GaugeVec::new(
                opts("build_info", "The running binary's version and git commit (always 1)."),
                &["version", "commit"],
            )
            .expect("valid metric"),
            up_since: Gauge::with_opts(opts("start_time_seconds", "Unix time the process started."))
                .expect("valid metric"),
            leases_held: prometheus::IntGauge::with_opts(opts(
                "leases_held",
                "Cluster mode: task leases this node holds.",
            ))
            .expect("valid metric"),
            lease_losses: prometheus::IntCounter::with_opts(opts(
                "lease_losses_total",
                "Cluster mode: leases this node lost (taken over, or not renewed in time).",
            ))
            .expect("valid metric"),
            source_switchovers: IntCounterVec::new(
                opts("source_switchovers_total", "GTID switchovers a task followed to another source."),
                &["task"],
            )
            .expect("valid metric"),
            upload_retries: IntCounterVec::new(
                opts("upload_retries_total", "Upload attempts of a file whose previous attempt failed."),
                &["task"],
            )
            .expect("valid metric"),
            cluster_nodes_online: prometheus::IntGauge::with_opts(opts(
                "cluster_nodes_online",
                "Nodes sharing the metadata database whose heartbeat is live (standalone: 1).",
            ))
            .expect("valid metric"),
            recovery: RecoveryFamilies::new(),
            process: process_collector(),
            relay_clients: IntGaugeVec::new(
                opts("relay_clients", "Relay: clients logged in to the relay listener, by task."),
                &["task"],
            )
            .expect("valid metric"),
            relay_bytes_sent: IntCounterVec::new(
                opts("relay_bytes_sent_total", "Relay: bytes of binlog dumps sent to clients, by task."),
                &["task"],
            )
            .expect("valid metric"),
            semi_sync_acks: IntCounterVec::new(
                opts("semi_sync_acks_total", "Semi-sync acks sent to the source (each after the fsync covering it)."),
                &["task"],
            )
            .expect("valid metric"),
            semi_sync_ack_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "binlog_server_semi_sync_ack_seconds",
                    "Semi-sync: from receiving an event that asked for an ack to sending the ack (after its fsync).",
                )
                .buckets(live_buckets()),
            )
            .expect("valid metric"),
            durable_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "binlog_server_durable_seconds",
                    "From reading the first event of a write batch off the source's socket to its fsync having \
                     returned (the checkpoint durable).",
                )
                .buckets(live_buckets()),
            )
            .expect("valid metric"),
            relay_send_delay_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "binlog_server_relay_send_delay_seconds",
                    "Relay: from a new durable checkpoint to its first bytes written to the socket of a client \
                     waiting for it.",
                )
                .buckets(live_buckets()),
            )
            .expect("valid metric"),
        };
        for s in TaskState::ALL {
            m.tasks.with_label_values(&[s.as_str()]).set(0);
        }
        m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION"), env!("BUILD_GIT_COMMIT")]).set(1.0);
        m.cluster_nodes_online.set(1);
        m.up_since.set(chrono::Utc::now().timestamp() as f64);
        m
    }

    fn collectors(&self) -> Vec<&dyn Collector> {
        let ours: [&dyn Collector; 26] = [
            &self.tasks,
            &self.tasks_stuck,
            &self.events,
            &self.bytes_written,
            &self.lag,
            &self.checkpoint_age,
            &self.writer_busy,
            &self.writer_start,
            &self.fsync,
            &self.reconnects,
            &self.crc_errors,
            &self.upload_backlog,
            &self.upload_failures,
            &self.build_info,
            &self.up_since,
            &self.leases_held,
            &self.lease_losses,
            &self.source_switchovers,
            &self.upload_retries,
            &self.cluster_nodes_online,
            &self.relay_clients,
            &self.relay_bytes_sent,
            &self.semi_sync_acks,
            &self.semi_sync_ack_seconds,
            &self.durable_seconds,
            &self.relay_send_delay_seconds,
        ];
        ours.into_iter().chain(self.process.as_deref()).collect()
    }

    /// Forgets a deleted task's series (label sets must not grow forever).
    pub fn forget_task(&self, id: TaskId) {
        let t = id.0.to_string();
        let _ = self.events.remove_label_values(&[&t]);
        let _ = self.bytes_written.remove_label_values(&[&t]);
        let _ = self.lag.remove_label_values(&[&t]);
        let _ = self.checkpoint_age.remove_label_values(&[&t]);
        let _ = self.writer_busy.remove_label_values(&[&t]);
        let _ = self.writer_start.remove_label_values(&[&t]);
        let _ = self.crc_errors.remove_label_values(&[&t]);
        let _ = self.upload_backlog.remove_label_values(&[&t]);
        let _ = self.upload_failures.remove_label_values(&[&t]);
        let _ = self.upload_retries.remove_label_values(&[&t]);
        let _ = self.source_switchovers.remove_label_values(&[&t]);
        self.recovery.forget(id);
        let _ = self.relay_clients.remove_label_values(&[&t]);
        let _ = self.relay_bytes_sent.remove_label_values(&[&t]);
        let _ = self.semi_sync_acks.remove_label_values(&[&t]);
        // reconnects has a second label; drop every reason of this task.
        for code in crate::domain::TaskErrorCode::ALL {
            let _ = self.reconnects.remove_label_values(&[&t, code.as_str()]);
        }
    }

    /// Per task id: the replication lag, writer-busy and writer-start gauges, and the events and bytes
    /// counters, as this process has them now (for `/api/summary`).
    pub fn task_snapshot(&self) -> TaskSnapshot {
        fn by_task(c: &dyn Collector, value: impl Fn(&prometheus::proto::Metric) -> f64) -> BTreeMap<i64, f64> {
            let mut out = BTreeMap::new();
            for family in c.collect() {
                for m in family.get_metric() {
                    let id = m.get_label().iter().find(|l| l.name() == "task").and_then(|l| l.value().parse().ok());
                    if let Some(id) = id {
                        out.insert(id, value(m));
                    }
                }
            }
            out
        }
        let lag = by_task(&self.lag, |m| m.get_gauge().get_value());
        let writer_busy = by_task(&self.writer_busy, |m| m.get_gauge().get_value());
        let writer_start = by_task(&self.writer_start, |m| m.get_gauge().get_value());
        let events = by_task(&self.events, |m| m.get_counter().get_value());
        let bytes = by_task(&self.bytes_written, |m| m.get_counter().get_value());
        let mut counters: BTreeMap<i64, crate::overview::Counters> = BTreeMap::new();
        for (id, n) in events {
            counters.entry(id).or_default().events = n as u64;
        }
        for (id, n) in bytes {
            counters.entry(id).or_default().bytes = n as u64;
        }
        TaskSnapshot { lag, writer_busy, writer_start, counters }
    }

    /// Sets the per-state task counts (the other states to 0).
    pub fn set_task_counts(&self, counts: &[(TaskState, i64)]) {
        for s in TaskState::ALL {
            let n = counts.iter().find(|(st, _)| st == s).map(|(_, n)| *n).unwrap_or(0);
            self.tasks.with_label_values(&[s.as_str()]).set(n);
        }
    }

    /// Renders our families (every one, with or without samples) and then `http`'s.
    pub fn render(&self, http: &Registry) -> String {
        let mut out = render_collectors(&self.collectors());
        out.push_str(&self.recovery.text());
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&http.gather(), &mut buf).is_ok() {
            out.push_str(&String::from_utf8_lossy(&buf));
        }
        out
    }
}

/// One task's recovery window as its gauges show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowGauges {
    pub task: TaskId,
    /// Unix time of the oldest event the task holds (None: it holds none; no series).
    pub oldest: Option<i64>,
    pub breaks: i64,
}

/// The recovery-window families: a series per configured task (1,000 at 1,000 tasks, most of
/// the exposition), changed only by the refresh at most every 30 s (`api::metrics`) and by a
/// task's deletion. Their text is encoded when they have changed, and every scrape in between
/// reuses it: encoding them at each scrape made `/metrics` at 1,000 tasks several times dearer
/// (docs/performance.md). The gauges are private so that no change can skip the re-encoding.
pub struct RecoveryFamilies {
    oldest: GaugeVec,
    breaks: IntGaugeVec,
    /// The families' exposition text; None once a change made it stale.
    text: Mutex<Option<String>>,
    /// How many times the text was encoded (what the tests look at).
    encodes: AtomicUsize,
}

impl RecoveryFamilies {
    fn new() -> RecoveryFamilies {
        RecoveryFamilies {
            oldest: GaugeVec::new(
                opts(
                    "recovery_window_oldest_timestamp_seconds",
                    "Unix time of the oldest event a task still holds, locally or in the bucket.",
                ),
                &["task"],
            )
            .expect("valid metric"),
            breaks: IntGaugeVec::new(
                opts("recovery_breaks", "Breaks (gaps a replay cannot cross) in a task's recovery window."),
                &["task"],
            )
            .expect("valid metric"),
            text: Mutex::new(None),
            encodes: AtomicUsize::new(0),
        }
    }

    /// Sets these tasks' windows (one refresh); the next scrape encodes the text again.
    pub fn set(&self, windows: &[WindowGauges]) {
        for w in windows {
            let label = w.task.0.to_string();
            match w.oldest {
                Some(at) => self.oldest.with_label_values(&[&label]).set(at as f64),
                None => {
                    let _ = self.oldest.remove_label_values(&[&label]);
                }
            }
            self.breaks.with_label_values(&[&label]).set(w.breaks);
        }
        self.stale();
    }

    /// Forgets a deleted task's series.
    pub fn forget(&self, id: TaskId) {
        let t = id.0.to_string();
        let _ = self.oldest.remove_label_values(&[&t]);
        let _ = self.breaks.remove_label_values(&[&t]);
        self.stale();
    }

    /// Marks the text stale, after the gauges changed (so a scrape that encoded meanwhile is
    /// encoded again at the next).
    fn stale(&self) {
        if let Ok(mut text) = self.text.lock() {
            *text = None;
        }
    }

    /// The families' text: the last one encoded, or encoded now when a change made it stale.
    fn text(&self) -> String {
        let encode = || {
            self.encodes.fetch_add(1, Ordering::Relaxed);
            render_collectors(&[&self.oldest, &self.breaks])
        };
        match self.text.lock() {
            Ok(mut text) => text.get_or_insert_with(encode).clone(),
            // A scrape that panicked while encoding: encode without the cache.
            Err(_) => encode(),
        }
    }
}

/// The text exposition of `collectors`, every family listed (HELP and TYPE) even without a
/// sample. Each collector is collected once per render, whatever number of families it has: the
/// process collector reads `/proc/self` (stat, limits, every open descriptor) on each collect and
/// has seven families, and a collect per family made every scrape read it seven times.
fn render_collectors(collectors: &[&dyn Collector]) -> String {
    let mut out = String::new();
    let encoder = TextEncoder::new();
    for c in collectors {
        let families = c.collect();
        for desc in c.desc() {
            let family = families.iter().find(|f| f.name() == desc.fq_name);
            match family.filter(|f| !f.get_metric().is_empty()) {
                Some(f) => {
                    let _ = encoder.encode_utf8(std::slice::from_ref(f), &mut out);
                }
                None => {
                    let kind = family.or(families.first()).map(|f| f.get_field_type()).unwrap_or_default();
                    let _ = writeln!(out, "# HELP {} {}", desc.fq_name, desc.help);
                    let _ = writeln!(out, "# TYPE {} {}", desc.fq_name, format!("{kind:?}").to_ascii_lowercase());
                }
            }
        }
    }
    out
}

/// The prometheus crate's process collector (`process_*` families: CPU seconds, resident and
/// virtual memory, open and maximum file descriptors, start time); Linux only.
#[cfg(target_os = "linux")]
fn process_collector() -> Option<Box<dyn Collector>> {
    Some(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
}

#[cfg(not(target_os = "linux"))]
fn process_collector() -> Option<Box<dyn Collector>> {
    None
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered_even_without_samples() {
        let text = metrics().render(&Registry::new());
        for name in [
            "binlog_server_tasks",
            "binlog_server_tasks_stuck",
            "binlog_server_events_total",
            "binlog_server_bytes_written_total",
            "binlog_server_replication_lag_seconds",
            "binlog_server_checkpoint_age_seconds",
            "binlog_server_writer_busy_seconds",
            "binlog_server_writer_start_seconds",
            "binlog_server_fsync_duration_seconds",
            "binlog_server_reconnects_total",
            "binlog_server_crc_errors_total",
            "binlog_server_upload_backlog_files",
            "binlog_server_upload_failures_total",
            "binlog_server_build_info",
            "binlog_server_source_switchovers_total",
            "binlog_server_upload_retries_total",
            "binlog_server_cluster_nodes_online",
            "binlog_server_recovery_window_oldest_timestamp_seconds",
            "binlog_server_recovery_breaks",
            "binlog_server_semi_sync_acks_total",
            "binlog_server_semi_sync_ack_seconds",
            "binlog_server_durable_seconds",
            "binlog_server_relay_send_delay_seconds",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert!(text.contains("binlog_server_tasks{state=\"RUNNING\"}"), "{text}");
        assert!(text.contains("# TYPE binlog_server_events_total counter"), "{text}");
    }

    #[test]
    fn samples_appear_and_deleted_tasks_are_forgotten() {
        let m = metrics();
        m.events.with_label_values(&["987654"]).inc_by(5);
        m.reconnects.with_label_values(&["987654", "SOURCE_UNREACHABLE"]).inc();
        let text = m.render(&Registry::new());
        assert!(text.contains("binlog_server_events_total{task=\"987654\"} 5"), "{text}");
        m.forget_task(TaskId(987654));
        let text = m.render(&Registry::new());
        assert!(!text.contains("987654"), "{text}");
    }

    #[test]
    fn the_recovery_families_are_encoded_again_only_after_a_change() {
        let r = RecoveryFamilies::new();
        let encodes = || r.encodes.load(Ordering::Relaxed);
        let w = |task, oldest, breaks| WindowGauges { task: TaskId(task), oldest, breaks };
        // (what changes before the scrape, series the scrape shows, series it must not show, encodes so far)
        type Step<'a> = (&'a dyn Fn(&RecoveryFamilies), &'a [&'a str], &'a [&'a str], usize);
        let steps: [Step; 6] = [
            (&|_| {}, &["# TYPE binlog_server_recovery_breaks gauge"], &["task="], 1),
            (
                &|r| r.set(&[w(1, Some(1_700_000_000), 0), w(2, None, 3)]),
                &[
                    "binlog_server_recovery_window_oldest_timestamp_seconds{task=\"1\"} 1700000000",
                    "binlog_server_recovery_breaks{task=\"1\"} 0",
                    "binlog_server_recovery_breaks{task=\"2\"} 3",
                ],
                &["_seconds{task=\"2\"}"],
                2,
            ),
            (&|_| {}, &["binlog_server_recovery_breaks{task=\"2\"} 3"], &[], 2),
            (
                &|r| r.set(&[w(2, Some(1_700_000_100), 0)]),
                &["_seconds{task=\"2\"} 1700000100", "binlog_server_recovery_breaks{task=\"2\"} 0"],
                &["binlog_server_recovery_breaks{task=\"2\"} 3"],
                3,
            ),
            (
                &|r| r.forget(TaskId(1)),
                &["{task=\"2\"}", "# TYPE binlog_server_recovery_window_oldest_timestamp_seconds gauge"],
                &["task=\"1\""],
                4,
            ),
            (&|_| {}, &["{task=\"2\"}"], &["task=\"1\""], 4),
        ];
        for (i, (change, shown, absent, n)) in steps.into_iter().enumerate() {
            change(&r);
            let text = r.text();
            for s in shown {
                assert!(text.contains(s), "step {i}: {s} missing:\n{text}");
            }
            for s in absent {
                assert!(!text.contains(s), "step {i}: {s} shown:\n{text}");
            }
            assert_eq!(encodes(), n, "step {i}");
        }
    }

    /// A collector of three families that counts its collects (as the process collector, which
    /// reads /proc on each).
    struct Counting {
        gauges: [prometheus::IntGauge; 3],
        collects: std::sync::atomic::AtomicUsize,
    }

    impl Collector for Counting {
        fn desc(&self) -> Vec<&prometheus::core::Desc> {
            self.gauges.iter().flat_map(|g| g.desc()).collect()
        }

        fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
            self.collects.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.gauges.iter().flat_map(|g| g.collect()).collect()
        }
    }

    #[test]
    fn a_collector_of_several_families_is_collected_once_per_render() {
        let gauge = |n: &str| prometheus::IntGauge::new(n, "help").expect("valid metric");
        let c = Counting { gauges: [gauge("h16m_a"), gauge("h16m_b"), gauge("h16m_c")], collects: 0.into() };
        c.gauges[1].set(7);
        let text = render_collectors(&[&c]);
        assert_eq!(c.collects.load(std::sync::atomic::Ordering::SeqCst), 1, "{text}");
        for name in ["h16m_a", "h16m_b", "h16m_c"] {
            assert!(text.contains(&format!("# TYPE {name} gauge")), "{name} missing:\n{text}");
        }
        assert!(text.contains("h16m_b 7"), "{text}");
        // Every family of ours and the process collector's is still rendered, each collected once.
        let ours = metrics().render(&Registry::new());
        assert_eq!(ours.matches("# TYPE process_open_fds ").count(), 1, "{ours}");
    }

    #[test]
    fn the_grafana_dashboard_queries_only_families_that_exist() {
        let dash = include_str!("../../docs/grafana/binlog-server.json");
        let json: serde_json::Value = serde_json::from_str(dash).expect("the dashboard is JSON");
        assert!(json["panels"].as_array().is_some_and(|p| p.len() >= 10));
        let text = metrics().render(&Registry::new());
        let http = ["binlog_server_http_requests_total", "binlog_server_http_requests_duration_seconds"];
        let mut seen = 0;
        for word in dash.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(name) = word.strip_prefix("binlog_server_").map(|_| word) {
                let family = ["_bucket", "_count", "_sum"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
                let known = text.contains(&format!("# TYPE {family} ")) || http.contains(&family);
                assert!(known, "the dashboard queries {name}, which /metrics does not have");
                seen += 1;
            }
        }
        assert!(seen >= 12, "{seen}");
    }
}
