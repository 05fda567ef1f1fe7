//! `/api/tasks` handlers: parse and validate input, send one message to the supervisor (commands)
//! or call `TaskQueries` (reads), shape the answer. No business logic here.

use actix::Addr;
use actix_web::{HttpResponse, web};

use crate::actors::Supervisor;
use crate::actors::supervisor::{CreateTask, DeleteTask, GetRuntime, RetryUploads, StartTask, StopTask, UpdateTask};
use crate::api::dto::{
    CheckpointDto, DeleteQuery, EventPage, FileDto, FilePage, LimitQuery, ListQuery, ReplicationDto, RetryUploadDto,
    TaskBody, TaskDto, TaskPage, UploadFailurePage,
};
use crate::api::error::ApiError;
use crate::api::{ApiState, TaskIdPath};
use crate::domain::{FieldError, TaskState};
use crate::meta::TaskFilter;
use crate::queries::TaskView;

type Result<T> = std::result::Result<T, ApiError>;

fn sup(state: &ApiState) -> &Addr<Supervisor> {
    &state.supervisor
}

fn parse_body(body: web::Json<serde_json::Value>) -> Result<TaskBody> {
    TaskBody::from_json(body.into_inner()).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn bounded(value: Option<i64>, default: i64, max: i64, field: &'static str) -> Result<i64> {
    match value {
        None => Ok(default),
        Some(v) if (0..=max).contains(&v) => Ok(v),
        Some(v) => {
            Err(ApiError::fields(vec![FieldError { field, message: format!("{v} is not between 0 and {max}") }]))
        }
    }
}

#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = TaskBody,
    responses((status = 201, description = "Created", body = TaskDto, headers(("Location" = String, description = "The new task's URL"))),
              (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 408, description = "The request body did not arrive within http.body_timeout_sec", body = ApiError), (status = 413, description = "The request body is larger than http.max_body_bytes (default 64 KiB)", body = ApiError), (status = 409, description = "A task with this cluster_key exists", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn create(state: web::Data<ApiState>, body: web::Json<serde_json::Value>) -> Result<HttpResponse> {
    let spec = parse_body(body)?.into_raw().validate().map_err(ApiError::fields)?;
    let task = sup(&state).send(CreateTask(spec)).await??;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/tasks/{}", task.id)))
        .json(TaskDto::from_task(&task, &state.dto_context())))
}

#[utoipa::path(get, path = "/api/tasks", tag = "tasks", params(ListQuery),
    responses((status = 200, description = "A page of tasks", body = TaskPage), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn list(state: web::Data<ApiState>, q: web::Query<ListQuery>) -> Result<HttpResponse> {
    let q = q.into_inner();
    let limit = bounded(q.limit, 50, 1000, "limit")?;
    let offset = bounded(q.offset, 0, i64::MAX, "offset")?;
    let mut errs = Vec::new();
    let st = match q.state.as_deref() {
        None => None,
        Some(s) => match s.parse::<TaskState>() {
            Ok(s) => Some(s),
            Err(e) => {
                errs.push(FieldError { field: "state", message: e });
                None
            }
        },
    };
    let port = match q.port {
        None => None,
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => {
            errs.push(FieldError { field: "port", message: format!("{p} is not between 1 and 65535") });
            None
        }
    };
    if !errs.is_empty() {
        return Err(ApiError::fields(errs));
    }
    let filter = TaskFilter { state: st, host: q.host.filter(|h| !h.is_empty()), port, search: q.q };
    let (tasks, total) = state.queries.list(filter, limit, offset).await?;
    let ctx = state.dto_context();
    Ok(HttpResponse::Ok().json(TaskPage {
        items: tasks.iter().map(|t| TaskDto::from_task(t, &ctx)).collect(),
        total,
        limit,
        offset,
    }))
}

#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task", body = TaskDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn get(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let task = state.queries.task(id.0).await?;
    Ok(HttpResponse::Ok().json(TaskDto::from_task(&task, &state.dto_context())))
}

#[utoipa::path(put, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)), request_body = TaskBody,
    responses((status = 200, description = "Replaced (the task must be STOPPED or FAILED)", body = TaskDto),
              (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 408, description = "The request body did not arrive within http.body_timeout_sec", body = ApiError), (status = 413, description = "The request body is larger than http.max_body_bytes (default 64 KiB)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 409, description = "The task is active, or the cluster_key is taken", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn update(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse> {
    let body = parse_body(body)?;
    let keep_password = body.keeps_password();
    let spec = body.into_raw().validate().map_err(ApiError::fields)?;
    let task = sup(&state).send(UpdateTask { id: id.0, spec, keep_password }).await??;
    Ok(HttpResponse::Ok().json(TaskDto::from_task(&task, &state.dto_context())))
}

#[utoipa::path(delete, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1), DeleteQuery),
    responses((status = 204, description = "Deleted (the task must be STOPPED or FAILED)"),
              (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 409, description = "The task is active", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn delete(state: web::Data<ApiState>, id: TaskIdPath, q: web::Query<DeleteQuery>) -> Result<HttpResponse> {
    sup(&state).send(DeleteTask { id: id.0, purge_files: q.purge_files.unwrap_or(false) }).await??;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/tasks/{id}/start", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "Starting", body = TaskDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 404, description = "No such task", body = ApiError),
              (status = 409, description = "INVALID_STATE_TRANSITION: the task is already active", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn start(state: web::Data<ApiState>, id: TaskIdPath, body: web::Bytes) -> Result<HttpResponse> {
    // A body is ignored, but read: a body left unread makes actix close the connection.
    drop(body);
    let task = sup(&state).send(StartTask(id.0)).await??;
    Ok(HttpResponse::Ok().json(TaskDto::from_task(&task, &state.dto_context())))
}

#[utoipa::path(post, path = "/api/tasks/{id}/stop", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "Stopped: files flushed and the checkpoint saved", body = TaskDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 404, description = "No such task", body = ApiError),
              (status = 409, description = "INVALID_STATE_TRANSITION: the task is not active", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn stop(state: web::Data<ApiState>, id: TaskIdPath, body: web::Bytes) -> Result<HttpResponse> {
    drop(body);
    let task = sup(&state).send(StopTask(id.0)).await??;
    Ok(HttpResponse::Ok().json(TaskDto::from_task(&task, &state.dto_context())))
}

#[utoipa::path(get, path = "/api/tasks/{id}/checkpoint", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The durable checkpoint (nulls before the first one)", body = CheckpointDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn checkpoint(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let (cp, writer) = state.queries.checkpoint(id.0).await?;
    let (node_id, epoch) = writer.map_or((None, None), |(n, e)| (Some(n), Some(e)));
    let dto = match cp {
        Some((cp, at)) => CheckpointDto {
            task_id: id.0.0,
            source_identity: Some(cp.source_identity),
            file: Some(cp.file.to_string()),
            pos: Some(cp.pos),
            gtid_set: cp.gtid_set,
            updated_at: Some(at),
            node_id,
            epoch,
        },
        None => CheckpointDto {
            task_id: id.0.0,
            source_identity: None,
            file: None,
            pos: None,
            gtid_set: None,
            updated_at: None,
            node_id,
            epoch,
        },
    };
    Ok(HttpResponse::Ok().json(dto))
}

#[utoipa::path(get, path = "/api/tasks/{id}/events", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1), LimitQuery),
    responses((status = 200, description = "The task's events, newest first", body = EventPage), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn events(state: web::Data<ApiState>, id: TaskIdPath, q: web::Query<LimitQuery>) -> Result<HttpResponse> {
    let limit = bounded(q.limit, 100, 1000, "limit")?;
    let events = state.queries.events(id.0, limit).await?;
    Ok(HttpResponse::Ok().json(EventPage { items: events }))
}

#[utoipa::path(get, path = "/api/tasks/{id}/files", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task's local binlog files", body = FilePage), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn files(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let files = state.queries.files(id.0).await?;
    Ok(HttpResponse::Ok().json(FilePage { items: files.iter().map(FileDto::from_record).collect() }))
}

#[utoipa::path(post, path = "/api/tasks/{id}/files/retry-upload", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1), LimitQuery),
    responses((status = 200, description = "Up to `limit` (default 100) failed uploads, oldest first, are due now with a fresh backoff", body = RetryUploadDto), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn retry_upload(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse> {
    let limit = bounded(q.limit, 100, 1000, "limit")?;
    let retried = sup(&state).send(RetryUploads { id: id.0, limit }).await??;
    Ok(HttpResponse::Ok().json(RetryUploadDto { retried }))
}

#[utoipa::path(get, path = "/api/tasks/{id}/upload-failures", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1), LimitQuery),
    responses((status = 200, description = "Files whose last upload failed, with the reason, oldest first", body = UploadFailurePage), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn upload_failures(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    q: web::Query<LimitQuery>,
) -> Result<HttpResponse> {
    let limit = bounded(q.limit, 100, 1000, "limit")?;
    let files = state.queries.upload_failures(id.0, limit).await?;
    Ok(HttpResponse::Ok().json(UploadFailurePage { items: files.iter().map(FileDto::from_record).collect() }))
}

#[utoipa::path(get, path = "/api/tasks/{id}/replication", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "Live replication status", body = ReplicationDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn replication(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let task = state.queries.task(id.0).await?;
    let runtime = sup(&state).send(GetRuntime(id.0)).await?;
    Ok(HttpResponse::Ok().json(ReplicationDto::from_view(&TaskView { task, runtime })))
}
