//! `GET /api/summary`: everything the dashboard shows, in one request and a few queries however
//! many tasks there are (every task row in one query, two upload counts, one oldest-event query,
//! the node list in cluster mode). What is urgent is decided by `overview::summarize`; lag,
//! rates and stalled writers are this process's own measurements (its metrics), so in cluster
//! mode they cover the tasks this node runs.

use std::collections::BTreeMap;
use std::time::Instant;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::ControlError;
use crate::api::ApiState;
use crate::api::dto::TaskDto;
use crate::api::error::ApiError;
use crate::meta::TaskFilter;
use crate::overview::{self, LiveTask};
use crate::telemetry::metrics::metrics;

type Result<T> = std::result::Result<T, ApiError>;

/// The service at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryDto {
    pub generated_at: DateTime<Utc>,
    pub tasks: TaskCountsDto,
    /// Up to 50 tasks, most urgent first: stuck or with a stalled writer, failed, retrying, with
    /// an error, starting or stopping, running (worst lag first), stopped; failing the longest
    /// first within each.
    pub urgent: Vec<UrgentTaskDto>,
    /// The running task with the largest replication lag this node measured.
    pub worst_lag: Option<LagDto>,
    pub throughput: ThroughputDto,
    pub upload: UploadSummaryDto,
    /// Time of the oldest event any task still holds, locally or in the bucket.
    pub oldest_recovery_point: Option<DateTime<Utc>>,
    pub nodes: NodesDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCountsDto {
    pub total: i64,
    /// Every state, zeros included.
    pub by_state: BTreeMap<String, i64>,
    /// STARTING, RUNNING, RETRY_BACKOFF, LEASE_DEGRADED, STOPPING.
    pub active: i64,
    /// Retrying for longer than `retry.alert_after_sec`.
    pub stuck: i64,
    /// FAILED, RETRY_BACKOFF and LEASE_DEGRADED.
    pub failing: i64,
    /// Active tasks whose writer's batch (write-out and fsync, or the checkpoint's store) has
    /// not returned for `writer.stall_after_sec` (10 s by default) or longer, or whose writer's
    /// start (crash recovery and reconciling the local files) has not for
    /// `writer.start_stall_after_sec` (60 s): the disk or the metadata store hangs.
    pub writers_stalled: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UrgentTaskDto {
    pub task: TaskDto,
    /// Null when not running here or not measured yet.
    pub lag_seconds: Option<f64>,
    /// Null until two samples are at least a second apart.
    pub bytes_per_second: Option<f64>,
    /// How long the writer's batch in progress has run (0 between batches); null when not
    /// running here or not measured yet.
    pub writer_busy_seconds: Option<f64>,
    /// How long the writer's start (crash recovery and reconciling the local files, before the
    /// task streams) has run (0 when not starting); null when not running here or not measured
    /// yet.
    pub writer_start_seconds: Option<f64>,
    /// That batch has run for `writer.stall_after_sec` or longer (nothing becomes durable until
    /// it returns), or that start for `writer.start_stall_after_sec` (the task streams nothing).
    pub writer_stalled: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LagDto {
    pub task_id: i64,
    pub name: String,
    pub lag_seconds: f64,
}

/// Events and bytes written per second by this node's tasks, over the last `window_seconds`
/// (between summary requests, up to a minute). Nulls on the first request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThroughputDto {
    pub window_seconds: Option<f64>,
    pub events_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UploadSummaryDto {
    pub enabled: bool,
    /// Sealed files on disk not yet in the bucket (every task).
    pub backlog_files: i64,
    /// Files whose last upload attempt failed (every task).
    pub failed_files: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodesDto {
    /// `standalone` or `cluster`.
    pub mode: String,
    pub total: i64,
    pub alive: i64,
}

#[utoipa::path(get, path = "/api/summary", tag = "tasks",
    responses((status = 200, description = "Counts by state, the most urgent tasks, worst lag, throughput, upload backlog, the oldest recovery point and the nodes", body = SummaryDto),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError),
              (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn summary(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let store = state.store.clone();
    let (tasks, (backlog_files, failed_files), oldest) = web::block(move || {
        let (tasks, _) = store.list_tasks(&TaskFilter::default(), i64::MAX, 0)?;
        Ok::<_, crate::meta::StoreError>((tasks, store.upload_totals()?, store.oldest_recovery_point()?))
    })
    .await
    .map_err(|_| ApiError::unavailable("the service is shutting down"))?
    .map_err(ControlError::Store)?;
    let nodes = match state.cluster.clustered {
        true => {
            let nodes = state.queries.workers().await?;
            NodesDto {
                mode: "cluster".into(),
                total: nodes.len() as i64,
                alive: nodes.iter().filter(|n| n.alive).count() as i64,
            }
        }
        false => NodesDto { mode: "standalone".into(), total: 1, alive: 1 },
    };

    let snap = metrics().task_snapshot();
    let rates = state.rates.lock().map(|mut m| m.observe(Instant::now(), snap.counters)).unwrap_or_default();
    let mut live: BTreeMap<i64, LiveTask> = BTreeMap::new();
    for (id, lag) in snap.lag {
        live.entry(id).or_default().lag_seconds = Some(lag);
    }
    for (id, busy) in snap.writer_busy {
        live.entry(id).or_default().writer_busy_seconds = Some(busy);
    }
    for (id, start) in snap.writer_start {
        live.entry(id).or_default().writer_start_seconds = Some(start);
    }
    for (id, bps) in &rates.per_task_bytes {
        live.entry(*id).or_default().bytes_per_second = Some(*bps);
    }
    let ctx = state.dto_context();
    let alerts = overview::Alerts { alert_after: state.alert_after, writer_stall: state.writer_stall };
    let s = overview::summarize(&tasks, &live, ctx.now, alerts);
    Ok(HttpResponse::Ok().json(SummaryDto {
        generated_at: ctx.now,
        tasks: TaskCountsDto {
            total: s.total,
            by_state: s.by_state.iter().map(|(k, v)| ((*k).to_string(), *v)).collect(),
            active: s.active,
            stuck: s.stuck,
            failing: s.failing,
            writers_stalled: s.writers_stalled,
        },
        urgent: s
            .urgent
            .iter()
            .map(|u| UrgentTaskDto {
                task: TaskDto::from_task(u.task, &ctx),
                lag_seconds: u.live.lag_seconds,
                bytes_per_second: u.live.bytes_per_second,
                writer_busy_seconds: u.live.writer_busy_seconds,
                writer_start_seconds: u.live.writer_start_seconds,
                writer_stalled: u.writer_stalled,
            })
            .collect(),
        worst_lag: s.worst_lag.map(|(t, lag)| LagDto { task_id: t.id.0, name: t.spec.name.clone(), lag_seconds: lag }),
        throughput: ThroughputDto {
            window_seconds: rates.window_seconds,
            events_per_second: rates.events_per_second,
            bytes_per_second: rates.bytes_per_second,
        },
        upload: UploadSummaryDto { enabled: state.upload_enabled, backlog_files, failed_files },
        oldest_recovery_point: oldest,
        nodes,
    }))
}
