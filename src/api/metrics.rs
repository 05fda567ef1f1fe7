//! `GET /metrics`: the Prometheus text exposition of every family (see `telemetry::metrics`).

use actix_web::{HttpResponse, web};

use crate::actors::supervisor::{CountStuck, CountTasks};
use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::telemetry::metrics::metrics;

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Every binlog_server_* family, then the HTTP families", body = String,
               content_type = "text/plain; version=0.0.4"),
              (status = 401, description = "Missing or invalid credentials (when metrics are protected)", body = ApiError),
              (status = 503, description = "Unavailable", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn metrics_text(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let counts = state.supervisor.send(CountTasks).await??;
    let stuck = state.supervisor.send(CountStuck).await??;
    let m = metrics();
    m.set_task_counts(&counts);
    m.tasks_stuck.set(stuck);
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(m.render(&state.http_registry)))
}
