//! The HTTP control plane (actix-web): routes, extractor configuration and error mapping.
//!
//! Handlers decide nothing: commands go to the `Supervisor` as messages, reads to the read-only
//! query service `queries::TaskQueries` (and, for `summary`, the store). The exception to "no files" is `api::pitr`, whose download and
//! archive handlers stream binlog files (opened only through `pitr::files`, which enforces where
//! they may come from).

pub mod auth;
pub mod batch;
pub mod body;
pub mod cluster;
pub mod cross_site;
pub mod dto;
pub mod error;
pub mod import;
pub mod metrics;
pub mod openapi;
pub mod pitr;
pub mod rate_limit;
pub mod relay;
pub mod summary;
pub mod tasks;
pub use crate::tls_cert as tls;
pub mod ui;
pub mod yaml;

use std::future::{Ready, ready};

use actix::Addr;
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use crate::actors::Supervisor;
use crate::api::error::{ApiError, ErrorCode};
use crate::domain::TaskId;

/// Shared by every handler.
pub struct ApiState {
    /// Commands (create, update, delete, start, stop) and what only running tasks know.
    pub supervisor: Addr<Supervisor>,
    /// Reads: task rows, checkpoints, events, files, windows, plans, leases.
    pub queries: crate::queries::TaskQueries,
    pub server_id_base: u32,
    /// `retry.alert_after_sec`: a task retrying for longer is shown as stuck.
    pub alert_after: chrono::Duration,
    /// `writer.stall_after_sec` and `writer.start_stall_after_sec`: a task whose writer's batch
    /// or start runs longer is shown as stalled.
    pub writer_stall: crate::domain::StallAfter,
    /// Where actix-web-prom records the HTTP families (rendered after ours at `/metrics`).
    pub http_registry: prometheus::Registry,
    /// Where task files live (downloads check every path is inside it).
    pub data_dir: std::path::PathBuf,
    /// Who is connected to the relay listener (empty when it is off).
    pub relay_clients: crate::relay::clients::Clients,
    pub cluster: ClusterInfo,
    /// Read-only queries that need no actor (`/api/summary`).
    pub store: crate::meta::Store,
    /// Throughput between summary requests.
    pub rates: std::sync::Mutex<crate::overview::RateMeter>,
    /// When `/metrics` last recomputed the recovery-window families.
    pub recovery_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
    /// The last `/metrics` text, served again for `metrics::METRICS_MAX_AGE`.
    pub metrics_text: metrics::RenderedMetrics,
    pub upload_enabled: bool,
    /// `storage.import_dir`: the only folder `POST /api/tasks/{id}/import` reads (None: off).
    pub import_dir: Option<std::path::PathBuf>,
    pub log: slog::Logger,
}

impl ApiState {
    /// What `TaskDto::from_task` needs, as of now.
    pub fn dto_context(&self) -> dto::DtoContext {
        dto::DtoContext { server_id_base: self.server_id_base, alert_after: self.alert_after, now: chrono::Utc::now() }
    }
}

/// What the cluster endpoints need to know about this node.
#[derive(Clone)]
pub struct ClusterInfo {
    pub node_id: String,
    pub lease_ttl_sec: u64,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Cluster mode (else standalone: the cluster endpoints describe this one process).
    pub clustered: bool,
}

/// Which routes the credential guards (when auth is enabled).
#[derive(Clone)]
pub struct Guards {
    pub auth: Option<std::rc::Rc<auth::Authenticator>>,
    pub protect_api: bool,
    pub protect_metrics: bool,
    pub rate_limit: Option<std::sync::Arc<rate_limit::RateLimiter>>,
    /// Wrong credentials per address, on every guarded route (`api.auth.failure_limit`).
    pub failed_auth: Option<std::sync::Arc<rate_limit::FailedAuthLimiter>>,
    /// Request bodies under `/api` (`http.body_timeout_sec`, `http.max_body_bytes`).
    pub body: body::BodyLimits,
    /// Where a 500's detail is logged (`error::log_internal_errors`).
    pub log: slog::Logger,
}

/// `{id}` in a task path. A value that is not a task id cannot name a task: 404.
pub struct TaskIdPath(pub TaskId);

impl FromRequest for TaskIdPath {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.match_info().get("id").unwrap_or_default();
        ready(match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(TaskIdPath(TaskId(id))),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::TaskNotFound,
                format!("task {:?} not found", raw.chars().take(64).collect::<String>()),
            )),
        })
    }
}

/// One span per request when tracing is on: `HTTP <method> <route pattern>`.
pub async fn trace_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::Span;
    let route = req.match_pattern().unwrap_or_else(|| "UNMATCHED".into());
    let method = req.method().to_string();
    let mut span = crate::telemetry::tracing::span_named(
        format!("HTTP {method} {route}"),
        vec![KeyValue::new("http.request.method", method), KeyValue::new("http.route", route)],
    );
    let res = next.call(req).await;
    if let Ok(r) = &res {
        span.set_attribute(KeyValue::new("http.response.status_code", i64::from(r.status().as_u16())));
    }
    span.end();
    res
}

/// Liveness: `ok` (never behind auth).
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The process is up", body = String, content_type = "text/plain")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

fn redirect(to: &'static str) -> HttpResponse {
    HttpResponse::Found().insert_header((actix_web::http::header::LOCATION, to)).finish()
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    use actix_web::ResponseError;
    let path: String = req.path().chars().take(128).collect();
    ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, format!("no route for {} {path}", req.method()))
        .error_response()
}

/// One path with its methods; any other method is 405 with `Allow`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        use actix_web::ResponseError;
        let mut resp =
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed, format!("allowed: {allow}"))
                .error_response();
        resp.headers_mut()
            .insert(actix_web::http::header::ALLOW, actix_web::http::header::HeaderValue::from_static(allow));
        resp
    }))
}

/// Routes under `/api`; JSON bodies up to `max_body` bytes.
pub fn api_scope(
    max_body: usize,
) -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::scope("/api")
        .app_data(web::JsonConfig::default().limit(max_body).error_handler(|err, _| {
            match err {
                // A YAML body passes the cross-site check (POST /api/tasks/batch reads it);
                // every other route reads JSON only.
                actix_web::error::JsonPayloadError::ContentType => ApiError::new(
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    error::ErrorCode::UnsupportedMediaType,
                    "this route takes a JSON body (Content-Type: application/json)",
                )
                .into(),
                err => ApiError::invalid(format!("invalid JSON body: {err}")).into(),
            }
        }))
        // Handlers reading raw bytes (a YAML batch) see what `body::read_whole` let through.
        .app_data(web::PayloadConfig::default().limit(max_body))
        .app_data(
            web::QueryConfig::default()
                .error_handler(|err, _| ApiError::invalid(format!("invalid query string: {err}")).into()),
        )
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi::spec)))
        .service(resource("/summary", "GET").route(web::get().to(summary::summary)))
        .service(resource("/tasks", "GET, POST").route(web::post().to(tasks::create)).route(web::get().to(tasks::list)))
        // Before `/tasks/{id}`, which would take `batch` for an id.
        .service(resource("/tasks/batch", "POST").route(web::post().to(batch::create)))
        .service(
            resource("/tasks/{id}", "GET, PUT, DELETE")
                .route(web::get().to(tasks::get))
                .route(web::put().to(tasks::update))
                .route(web::delete().to(tasks::delete)),
        )
        .service(resource("/tasks/{id}/start", "POST").route(web::post().to(tasks::start)))
        .service(resource("/tasks/{id}/stop", "POST").route(web::post().to(tasks::stop)))
        .service(resource("/tasks/{id}/checkpoint", "GET").route(web::get().to(tasks::checkpoint)))
        .service(resource("/tasks/{id}/events", "GET").route(web::get().to(tasks::events)))
        .service(resource("/tasks/{id}/files", "GET").route(web::get().to(tasks::files)))
        .service(resource("/tasks/{id}/files/retry-upload", "POST").route(web::post().to(tasks::retry_upload)))
        .service(resource("/tasks/{id}/upload-failures", "GET").route(web::get().to(tasks::upload_failures)))
        .service(resource("/tasks/{id}/replication", "GET").route(web::get().to(tasks::replication)))
        .service(resource("/tasks/{id}/import", "POST").route(web::post().to(import::import)))
        .service(resource("/tasks/{id}/replicas", "GET").route(web::get().to(relay::replicas)))
        .service(
            resource("/tasks/{id}/relay", "GET, PUT")
                .route(web::get().to(relay::get_users))
                .route(web::put().to(relay::put_users)),
        )
        .service(resource("/tasks/{id}/window", "GET").route(web::get().to(pitr::window)))
        .service(resource("/tasks/{id}/replay", "GET").route(web::get().to(pitr::replay)))
        .service(resource("/tasks/{id}/replay/archive", "GET").route(web::get().to(pitr::archive)))
        .service(resource("/tasks/{id}/files/{name}", "GET").route(web::get().to(pitr::download)))
        .service(resource("/tasks/{id}/lease", "GET").route(web::get().to(cluster::lease)))
        .service(resource("/workers", "GET").route(web::get().to(cluster::workers)))
        .service(resource("/cluster/overview", "GET").route(web::get().to(cluster::overview)))
        .default_service(web::to(not_found))
}

/// The whole application's routes; `auth` (when enabled) guards `/api` if `protect_api`. The UI
/// (`/`, `/ui/`) is never guarded: it asks for the token when the API answers 401.
pub fn configure(cfg: &mut web::ServiceConfig, guards: Guards, ui_source: &ui::UiSource) {
    ui::configure(cfg, ui_source);
    let api_guard = if guards.protect_api { guards.auth.clone() } else { None };
    let metrics_guard = if guards.protect_metrics { guards.auth.clone() } else { None };
    let limiter = guards.rate_limit.clone();
    let body_limits = guards.body;
    let (api_failures, metrics_failures) = (guards.failed_auth.clone(), guards.failed_auth.clone());
    let log = guards.log.clone();
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(
            resource("/metrics", "GET")
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    auth::require(metrics_guard.clone(), metrics_failures.clone(), req, next)
                }))
                .route(web::get().to(metrics::metrics_text)),
        )
        // The UI fetches its own open copy of the document: the spec is no secret, while
        // /api/openapi.json stays behind the API's auth like every /api route.
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/swagger/{_:.*}")
                .url("/swagger/openapi.json", <openapi::ApiDoc as utoipa::OpenApi>::openapi()),
        )
        .route("/swagger", web::get().to(|| async { redirect("/swagger/index.html") }))
        .service(
            api_scope(body_limits.max_bytes)
                // Innermost: an unauthenticated or refused client is answered before its body is read.
                .wrap(actix_web::middleware::from_fn(move |req, next| body::read_whole(body_limits, req, next)))
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    auth::require(api_guard.clone(), api_failures.clone(), req, next)
                }))
                // Outermost: a flood is turned away before anything else runs.
                .wrap(actix_web::middleware::from_fn(move |req, next| rate_limit::limit(limiter.clone(), req, next)))
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    error::log_internal_errors(log.clone(), req, next)
                })),
        )
        .default_service(web::to(not_found));
}
