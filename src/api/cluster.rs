//! Cluster endpoints: `/api/workers`, `/api/cluster/overview`, `/api/tasks/{id}/lease`. They read
//! the shared metadata (`TaskQueries`, cluster mode); standalone, they describe this one process.

use actix_web::{HttpResponse, web};

use crate::api::dto::{ClusterOverviewDto, LeaseDto, WorkerDto, WorkerList};
use crate::api::error::ApiError;
use crate::api::{ApiState, TaskIdPath};

type Result<T> = std::result::Result<T, ApiError>;

#[utoipa::path(get, path = "/api/workers", tag = "cluster",
    responses((status = 200, description = "The nodes sharing the metadata database (standalone: this process)", body = WorkerList),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError),
              (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn workers(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let workers = match state.cluster.clustered {
        true => state
            .queries
            .workers()
            .await?
            .into_iter()
            .map(|n| WorkerDto {
                node_id: n.node_id,
                alive: n.alive,
                started_at: n.started_at,
                heartbeat_at: n.heartbeat_at,
                left_at: n.left_at,
                leases: n.leases,
                max_tasks: (n.max_tasks > 0).then_some(i64::from(n.max_tasks)),
                version: n.version,
            })
            .collect(),
        false => vec![WorkerDto {
            node_id: state.cluster.node_id.clone(),
            alive: true,
            started_at: state.cluster.started_at,
            heartbeat_at: chrono::Utc::now(),
            left_at: None,
            leases: 0,
            max_tasks: None,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }],
    };
    Ok(HttpResponse::Ok().json(WorkerList { workers }))
}

#[utoipa::path(get, path = "/api/cluster/overview", tag = "cluster",
    responses((status = 200, description = "Mode, nodes, and how the wanted tasks are placed", body = ClusterOverviewDto),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError),
              (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn overview(state: web::Data<ApiState>) -> Result<HttpResponse> {
    let c = &state.cluster;
    let dto = match c.clustered {
        true => {
            let (counts, nodes, unplaced) = state.queries.cluster_overview().await?;
            ClusterOverviewDto {
                mode: "cluster".into(),
                node_id: c.node_id.clone(),
                lease_ttl_sec: c.lease_ttl_sec,
                workers: nodes.len() as i64,
                workers_alive: nodes.iter().filter(|n| n.alive).count() as i64,
                tasks_wanted_running: counts.wanted,
                tasks_leased: counts.leases_by_node.values().sum(),
                tasks_unplaced: unplaced as i64,
                leases_by_node: counts.leases_by_node,
            }
        }
        false => {
            // Standalone: every active task runs in this process.
            let by_state = state.queries.count_by_state().await?;
            let active: i64 = by_state.iter().filter(|(s, _)| s.is_active()).map(|(_, n)| n).sum();
            ClusterOverviewDto {
                mode: "standalone".into(),
                node_id: c.node_id.clone(),
                lease_ttl_sec: c.lease_ttl_sec,
                workers: 1,
                workers_alive: 1,
                tasks_wanted_running: active,
                tasks_leased: active,
                tasks_unplaced: 0,
                leases_by_node: [(c.node_id.clone(), active)].into_iter().collect(),
            }
        }
    };
    Ok(HttpResponse::Ok().json(dto))
}

#[utoipa::path(get, path = "/api/tasks/{id}/lease", tag = "cluster", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task's lease: owner, epoch, expiry by the database's clock (nulls when never leased, and in standalone mode)", body = LeaseDto),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError),
              (status = 404, description = "No such task", body = ApiError),
              (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn lease(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let lease = match state.cluster.clustered {
        true => state.queries.lease(id.0).await?,
        false => {
            // Standalone: no leases, but the task must exist.
            state.queries.task(id.0).await?;
            None
        }
    };
    Ok(HttpResponse::Ok().json(match lease {
        Some(l) => LeaseDto {
            task_id: l.task_id.0,
            owner: Some(l.owner),
            epoch: Some(l.epoch),
            expires_at: Some(l.expires_at),
            live: l.live,
        },
        None => LeaseDto { task_id: id.0.0, owner: None, epoch: None, expires_at: None, live: false },
    }))
}
