//! Point-in-time recovery handlers: the window, replay plans, the replay archive and single
//! file downloads. Plans come from `TaskQueries`; the only file work here is streaming the
//! bytes of files the plan names, opened through `pitr::files` (validated, no symlinks).

use std::path::PathBuf;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::stream;

use crate::api::dto::{FileQuery, ReplayQuery};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::{ApiState, TaskIdPath};
use crate::domain::FieldError;
use crate::pitr::files::{self, FileAccessError};
use crate::pitr::plan::{Plan, PlanFile, Request, Start, Stop};
use crate::pitr::window::Window;

type Result<T> = std::result::Result<T, ApiError>;

fn parse_time(field: &'static str, raw: &str, errs: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let parsed = DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S").map(|n| n.and_utc()));
    match parsed {
        Ok(t) if t.timestamp_subsec_nanos() == 0 => Some(t),
        Ok(_) => {
            errs.push(FieldError { field, message: "binlog event times are whole seconds".into() });
            None
        }
        Err(_) => {
            errs.push(FieldError {
                field,
                message: format!(
                    "{:?} is not an RFC 3339 time or YYYY-MM-DD HH:MM:SS (UTC)",
                    raw.chars().take(64).collect::<String>()
                ),
            });
            None
        }
    }
}

/// Exactly one start and one stop, each complete.
pub fn to_request(q: ReplayQuery) -> std::result::Result<Request, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut starts = Vec::new();
    match (q.start_file, q.start_pos) {
        (Some(file), Some(pos)) => starts.push(Start::FilePos { file, pos }),
        (None, None) => {}
        _ => errs.push(FieldError { field: "start_file", message: "start_file and start_pos go together".into() }),
    }
    if let Some(g) = q.start_gtid_set {
        starts.push(Start::GtidSet(g));
    }
    if let Some(t) = q.start_datetime.as_deref().and_then(|t| parse_time("start_datetime", t, &mut errs)) {
        starts.push(Start::Datetime(t));
    }
    let mut stops = Vec::new();
    if let Some(t) = q.stop_datetime.as_deref().and_then(|t| parse_time("stop_datetime", t, &mut errs)) {
        stops.push(Stop::Datetime(t));
    }
    if let Some(g) = q.stop_gtid {
        stops.push(Stop::Gtid(g));
    }
    match (q.stop_file, q.stop_pos) {
        (Some(file), Some(pos)) => stops.push(Stop::FilePos { file, pos }),
        (None, None) => {}
        _ => errs.push(FieldError { field: "stop_file", message: "stop_file and stop_pos go together".into() }),
    }
    if starts.len() != 1 && errs.iter().all(|e| !e.field.starts_with("start")) {
        errs.push(FieldError {
            field: "start",
            message: "give exactly one start: start_file+start_pos, start_gtid_set or start_datetime".into(),
        });
    }
    if stops.len() != 1 && errs.iter().all(|e| !e.field.starts_with("stop")) {
        errs.push(FieldError {
            field: "stop",
            message: "give exactly one stop: stop_datetime, stop_gtid or stop_file+stop_pos".into(),
        });
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Request {
        start: starts.pop().expect("exactly one"),
        stop: stops.pop().expect("exactly one"),
        start_source: q.start_source_identity.or_else(|| q.source_identity.clone()),
        stop_source: q.stop_source_identity.or(q.source_identity),
    })
}

impl From<FileAccessError> for ApiError {
    fn from(e: FileAccessError) -> Self {
        use actix_web::http::StatusCode;
        let msg = e.to_string();
        match e {
            FileAccessError::InvalidName(_) => ApiError::invalid(msg),
            FileAccessError::Refused(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, msg),
            FileAccessError::OnlyInBucket(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::RangeNotCovered, msg)
            }
            FileAccessError::Changed { .. } => ApiError::new(StatusCode::CONFLICT, ErrorCode::FileChanged, msg),
            FileAccessError::Io { .. } => ApiError::internal(msg),
        }
    }
}

#[utoipa::path(get, path = "/api/tasks/{id}/window", tag = "recovery", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "From where to where the held files allow a replay, and every break", body = Window), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn window(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse> {
    let w = state.queries.window(id.0).await?;
    Ok(HttpResponse::Ok().json(w))
}

async fn planned(state: &ApiState, id: TaskIdPath, q: ReplayQuery) -> Result<Plan> {
    let request = to_request(q).map_err(ApiError::fields)?;
    Ok(state.queries.plan_replay(id.0, request).await?)
}

#[utoipa::path(get, path = "/api/tasks/{id}/replay", tag = "recovery", params(("id" = i64, Path, description = "Task id", minimum = 1), ReplayQuery),
    responses((status = 200, description = "The files, one segment per source, and the exact decoder command(s) for the range", body = Plan), (status = 400, description = "Invalid request (not exactly one start and one stop)", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError),
              (status = 422, description = "RANGE_NOT_COVERED: the held files do not cover the range; the message says what is missing", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn replay(state: web::Data<ApiState>, id: TaskIdPath, q: web::Query<ReplayQuery>) -> Result<HttpResponse> {
    let plan = planned(&state, id, q.into_inner()).await?;
    Ok(HttpResponse::Ok().json(plan))
}

/// Chunks are produced on a blocking thread into this many slots: a slow client slows the
/// reader instead of filling memory.
const STREAM_SLOTS: usize = 8;

fn byte_stream(
    produce: impl FnOnce(&tokio::sync::mpsc::Sender<std::io::Result<web::Bytes>>) + Send + 'static,
) -> impl futures_util::Stream<Item = std::io::Result<web::Bytes>> {
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_SLOTS);
    tokio::task::spawn_blocking(move || produce(&tx));
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

async fn open_all(
    state: &ApiState,
    task_dir: PathBuf,
    plan_files: Vec<PlanFile>,
) -> Result<Vec<(PlanFile, std::fs::File)>> {
    let objects = state.queries.objects();
    web::block(move || {
        plan_files
            .into_iter()
            .map(|f| {
                files::open_location(&task_dir, &f.location, f.sealed.as_ref(), objects.as_deref()).map(|h| (f, h))
            })
            .collect::<std::result::Result<Vec<_>, FileAccessError>>()
    })
    .await
    .map_err(|_| ApiError::unavailable("the service is shutting down"))?
    .map_err(ApiError::from)
}

#[utoipa::path(get, path = "/api/tasks/{id}/replay/archive", tag = "recovery", params(("id" = i64, Path, description = "Task id", minimum = 1), ReplayQuery),
    responses((status = 200, description = "A tar of exactly the plan's files (an open file up to its checkpoint); across a switchover each under a folder named after its source", content_type = "application/x-tar", body = Vec<u8>), (status = 400, description = "Invalid request", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError),
              (status = 409, description = "FILE_CHANGED: a sealed file of the plan no longer has the size or sha256 recorded when it was sealed; nothing is sent", body = ApiError),
              (status = 422, description = "RANGE_NOT_COVERED", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn archive(state: web::Data<ApiState>, id: TaskIdPath, q: web::Query<ReplayQuery>) -> Result<HttpResponse> {
    let task = id.0;
    let plan = planned(&state, id, q.into_inner()).await?;
    let task_dir = crate::layout::DataLayout::new(&state.data_dir).task_dir(task);
    // Entry names: the file names, under a folder per source when the plan reads several.
    let names: Vec<String> = plan.files.iter().map(|f| plan.copy_path(f)).collect();
    let opened = open_all(&state, task_dir, plan.files).await?;
    let total: u64 = opened.iter().map(|(f, _)| 512 + f.size + files::tar_padding(f.size) as u64).sum::<u64>() + 1024;
    let mtime = Utc::now().timestamp().max(0) as u64;
    let body = byte_stream(move |tx| {
        for ((f, handle), name) in opened.into_iter().zip(names) {
            let header = match files::tar_header(&name, f.size, mtime) {
                Ok(h) => h,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if tx.blocking_send(Ok(web::Bytes::copy_from_slice(&header))).is_err() {
                return;
            }
            match files::copy_exact(handle, f.size, |chunk| tx.blocking_send(Ok(chunk.into())).is_ok()) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
            let pad = files::tar_padding(f.size);
            if pad > 0 && tx.blocking_send(Ok(web::Bytes::from(vec![0u8; pad]))).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Ok(web::Bytes::from(vec![0u8; 1024])));
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-tar")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"task-{}-replay.tar\"", task.0)))
        .no_chunking(total)
        .streaming(body))
}

#[utoipa::path(get, path = "/api/tasks/{id}/files/{name}", tag = "recovery",
    params(("id" = i64, Path, description = "Task id", minimum = 1), ("name" = String, Path, description = "A binlog file name (no path)"), FileQuery),
    responses((status = 200, description = "The file's bytes (an open file up to its checkpoint)", content_type = "application/octet-stream", body = Vec<u8>), (status = 400, description = "Invalid file name", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError),
              (status = 404, description = "No such task or file, or the file is not a regular file inside the task directory", body = ApiError),
              (status = 409, description = "FILE_CHANGED: the sealed file no longer has the size or sha256 recorded when it was sealed; it is not sent", body = ApiError),
              (status = 422, description = "The file is missing locally and in the bucket, or only in the bucket", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn download(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    name: web::Path<(String, String)>,
    q: web::Query<FileQuery>,
) -> Result<HttpResponse> {
    let name = files::validate_name(&name.into_inner().1)?;
    let (task_dir, f) = state.queries.locate_file(id.0, name, q.into_inner().source_identity).await?;
    let mut opened = open_all(&state, task_dir, vec![f]).await?;
    let (f, handle) = opened.pop().expect("one file opened");
    let size = f.size;
    let body = byte_stream(move |tx| {
        if let Err(e) = files::copy_exact(handle, size, |chunk| tx.blocking_send(Ok(chunk.into())).is_ok()) {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{}\"", f.name)))
        .no_chunking(size)
        .streaming(body))
}
