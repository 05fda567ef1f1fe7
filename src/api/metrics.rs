//! `GET /metrics`: the Prometheus text exposition of every family (see `telemetry::metrics`),
//! and what keeps the HTTP families' labels bounded whatever clients send: route patterns, not
//! paths (`UNMATCHED` for no route), and one `OTHER` for every method HTTP does not define.

use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::meta::TaskFilter;
use crate::telemetry::metrics::{WindowGauges, metrics};

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Every binlog_server_* family, then the HTTP families", body = String,
               content_type = "text/plain; version=0.0.4"),
              (status = 401, description = "Missing or invalid credentials (when metrics are protected)", body = ApiError),
              (status = 429, description = "Too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError),
              (status = 503, description = "Unavailable", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn metrics_text(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let text = match state.metrics_text.fresh(Instant::now()) {
        Some(text) => text,
        None => {
            let text = render(&state).await?;
            state.metrics_text.store(Instant::now(), text.clone());
            text
        }
    };
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(text))
}

/// How long a rendered `/metrics` text is served again. At 1,000 streaming tasks a render is
/// about 300 KB and two metadata queries (2026-12-05: 30 ms p50 under wrk while the tasks
/// streamed); a scraper asks every 15 s or more, so values at most this old change nothing for
/// it, while a burst of scrapes (several Prometheus, dashboards, a benchmark) no longer takes a
/// core from the writers and the API.
pub const METRICS_MAX_AGE: Duration = Duration::from_secs(1);

/// The last rendered `/metrics` text and when it was rendered.
#[derive(Default)]
pub struct RenderedMetrics {
    last: std::sync::Mutex<Option<(Instant, bytes::Bytes)>>,
}

impl RenderedMetrics {
    /// The last text, if it was rendered less than [`METRICS_MAX_AGE`] before `now`.
    pub fn fresh(&self, now: Instant) -> Option<bytes::Bytes> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref().filter(|(at, _)| now.saturating_duration_since(*at) < METRICS_MAX_AGE).map(|(_, t)| t.clone())
    }

    pub fn store(&self, at: Instant, text: bytes::Bytes) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((at, text));
    }
}

async fn render(state: &web::Data<ApiState>) -> Result<bytes::Bytes, ApiError> {
    let counts = state.queries.count_by_state().await?;
    let stuck = state.queries.count_stuck().await?;
    let m = metrics();
    m.set_task_counts(&counts);
    m.tasks_stuck.set(stuck);
    if state.cluster.clustered {
        let nodes = state.queries.workers().await?;
        m.cluster_nodes_online.set(nodes.iter().filter(|n| n.alive).count() as i64);
    }
    refresh_recovery_windows(state);
    Ok(bytes::Bytes::from(m.render(&state.http_registry)))
}

/// How often the recovery-window families are recomputed (each task's window is a catalog query
/// and, across a switchover, a look into files: too much for every scrape at 1,000 tasks).
pub const RECOVERY_REFRESH: Duration = Duration::from_secs(30);

/// Starts a recomputation of every task's recovery window gauges when the last one is older
/// than `RECOVERY_REFRESH` (or none ran yet); the scrape does not wait for it.
fn refresh_recovery_windows(state: &web::Data<ApiState>) {
    {
        let Ok(mut last) = state.recovery_refreshed.lock() else { return };
        if last.is_some_and(|t| t.elapsed() < RECOVERY_REFRESH) {
            return;
        }
        *last = Some(Instant::now());
    }
    let store = state.store.clone();
    let queries = state.queries.clone();
    actix_web::rt::spawn(async move {
        let Ok(Ok((tasks, _))) = web::block(move || store.list_tasks(&TaskFilter::default(), i64::MAX, 0)).await else {
            return;
        };
        for t in tasks {
            // A task deleted meanwhile answers NOT_FOUND; its series were forgotten with it.
            // Set one at a time, right after its read, so that a deletion is not undone later.
            if let Ok(w) = queries.window(t.id).await {
                let oldest = w.earliest.and_then(|p| p.time).map(|at| at.timestamp());
                metrics().recovery.set(&[WindowGauges { task: t.id, oldest, breaks: w.breaks.len() as i64 }]);
            }
        }
    });
}

/// What a made-up method is called from the first middleware on (metrics, traces, errors).
pub const OTHER_METHOD: &str = "OTHER";

/// Whether `m` is one of the methods HTTP defines (RFC 9110, and PATCH).
pub fn is_known_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::DELETE
            | Method::PATCH
            | Method::OPTIONS
            | Method::TRACE
            | Method::CONNECT
    )
}

/// Middleware, inside the HTTP metrics: renames a method HTTP does not define to `OTHER`
/// before anything reads it, so that `M0000XYZ /healthz` and its thousand variations add one set
/// of series, not a set each. No route takes such a method: the answer (404 or 405) is the same.
pub async fn fold_unknown_method(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !is_known_method(req.method()) {
        req.head_mut().method = Method::from_bytes(OTHER_METHOD.as_bytes()).expect("OTHER is an HTTP token");
    }
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_text_is_served_again_for_at_most_the_max_age() {
        let cache = RenderedMetrics::default();
        let t0 = Instant::now();
        assert_eq!(cache.fresh(t0), None, "nothing rendered yet");
        cache.store(t0, bytes::Bytes::from_static(b"first"));
        assert_eq!(cache.fresh(t0).as_deref(), Some(&b"first"[..]));
        assert_eq!(cache.fresh(t0 + METRICS_MAX_AGE - Duration::from_millis(1)).as_deref(), Some(&b"first"[..]));
        assert_eq!(cache.fresh(t0 + METRICS_MAX_AGE), None, "as old as the max age: rendered again");
        cache.store(t0 + METRICS_MAX_AGE, bytes::Bytes::from_static(b"second"));
        assert_eq!(cache.fresh(t0 + METRICS_MAX_AGE).as_deref(), Some(&b"second"[..]));
    }

    #[test]
    fn only_made_up_methods_fold() {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"] {
            assert!(is_known_method(&Method::from_bytes(m.as_bytes()).unwrap()), "{m}");
        }
        for m in ["M0000XYZ", "get", "PROPFIND", "OTHER"] {
            assert!(!is_known_method(&Method::from_bytes(m.as_bytes()).unwrap()), "{m}");
        }
    }
}
