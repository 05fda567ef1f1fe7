//! `POST /api/tasks/{id}/import`: imports binlog files from the server's disk, only from inside
//! `storage.import_dir` (`import::source` decides what may be read). The work is
//! `import::run::import_from` on a blocking thread; this handler only maps its answer.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::api::error::{ApiError, ErrorCode};
use crate::api::{ApiState, TaskIdPath};
use crate::import::run::{self, ImportError, Report};
use crate::import::source::{self, SourceError};
use crate::meta::StoreError;

/// What to import: a file or a folder, relative to `storage.import_dir` (or absolute inside it).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    pub path: String,
    /// The uuid of the MySQL server that wrote the files, for files that do not name it (no GTID
    /// transaction of their own, e.g. written with gtid_mode OFF); as `binlog-server import
    /// --source-uuid`. Files that name their server must name this one.
    #[serde(default)]
    #[schema(example = "357df524-4139-11ee-9979-b033ee13919e")]
    pub source_uuid: Option<String>,
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        let msg = e.to_string();
        match e {
            SourceError::Off | SourceError::Outside(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, msg)
            }
            SourceError::Unreadable { .. } => ApiError::invalid(msg),
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        let msg = e.to_string();
        match e {
            ImportError::Refused { .. } | ImportError::Lineage(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ImportRefused, msg)
            }
            ImportError::NoTask(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::TaskNotFound, msg),
            ImportError::Active(_) | ImportError::Busy(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidStateTransition, msg)
            }
            ImportError::Store(StoreError::Unavailable(_) | StoreError::Misconfigured(_)) => {
                ApiError::unavailable("metadata database unavailable")
            }
            ImportError::Store(StoreError::ShuttingDown) => ApiError::unavailable("the service is shutting down"),
            // Paths of the data directory stay in the log.
            ImportError::Io { .. } | ImportError::Store(_) => ApiError::internal(msg),
        }
    }
}

#[utoipa::path(post, path = "/api/tasks/{id}/import", tag = "tasks", params(("id" = i64, Path, description = "Task id", minimum = 1)), request_body = ImportBody,
    responses((status = 200, description = "The files were verified and added to the task's archive", body = Report),
              (status = 400, description = "Invalid request, or the path cannot be read", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Import over the API is off (storage.import_dir), the path leads outside it, or a cross-site request was refused", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 409, description = "The task is running (stop it first; an ARCHIVE_ONLY task takes imports at any time), or another import into it is running", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 422, description = "A file failed verification (which file, offset and why) or does not continue the task's archive: nothing was imported", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn import(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    body: web::Json<ImportBody>,
) -> Result<HttpResponse, ApiError> {
    if let Some(u) = &body.source_uuid {
        crate::binlog::gtid::Uuid::parse(u).map_err(|e| ApiError::invalid(format!("source_uuid {u:?}: {}", e.0)))?;
    }
    let offers = source::offers(state.import_dir.as_deref(), &body.path)?;
    let source_uuid = body.into_inner().source_uuid;
    let (store, data_dir, log) = (state.store.clone(), state.data_dir.clone(), state.log.clone());
    let id = id.0;
    let report = web::block(move || {
        let r = run::import_from(&store, &data_dir, id, offers, source_uuid.as_deref());
        match &r {
            Ok(rep) => slog::info!(log, "files imported"; "task_id" => id.0, "files" => rep.files.len(), "source" => &rep.source_identity),
            Err(e) => slog::warn!(log, "import refused or failed"; "task_id" => id.0, "error" => %e),
        }
        r
    })
    .await
    .map_err(|e| ApiError::internal(format!("the import's worker thread failed: {e}")))??;
    // An archive-only task's uploader takes the new files at once.
    state.supervisor.do_send(crate::actors::supervisor::FilesImported(id));
    Ok(HttpResponse::Ok().json(report))
}
