//! The one mapping from domain errors to HTTP: `{error, code}` (plus `fields` for validation).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::ControlError;
use crate::domain::FieldError;
use crate::meta::StoreError;

/// Stable, machine-readable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    TaskNotFound,
    TaskAlreadyExists,
    /// `max_tasks` tasks exist already.
    TaskLimitReached,
    InvalidStateTransition,
    RangeNotCovered,
    /// An imported file failed verification or does not continue the task's archive.
    ImportRefused,
    /// A sealed file's bytes differ from what was recorded when it was sealed: not served.
    FileChanged,
    Unauthorized,
    /// Cross-site request or foreign `Host` refused (`api::cross_site`).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    ServiceUnavailable,
    InternalError,
}

/// One invalid field and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldMessage {
    pub field: &'static str,
    pub message: String,
}

/// One invalid field of one item of a batch request (`index` counts from 0).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemFieldMessage {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}

/// An API error response: `{error, code}`, plus `fields` for validation errors and `items` for
/// those of a batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    pub code: ErrorCode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldMessage>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemFieldMessage>,
    /// What failed inside, for the server log only, never for the answer (it may name paths of
    /// the data directory or the metadata database's own words): set by [`ApiError::internal`],
    /// logged by [`log_internal_errors`].
    #[serde(skip)]
    pub detail: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, error: impl Into<String>) -> Self {
        ApiError { status, error: error.into(), code, fields: Vec::new(), items: Vec::new(), detail: None }
    }

    pub fn invalid(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, error)
    }

    pub fn fields(errs: Vec<FieldError>) -> Self {
        let msg = errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: msg,
            code: ErrorCode::InvalidRequest,
            fields: errs.into_iter().map(|e| FieldMessage { field: e.field, message: e.message }).collect(),
            items: Vec::new(),
            detail: None,
        }
    }

    /// A 500 that answers "see the server log", and the `detail` that the log then shows.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "internal error; see the server log",
        );
        e.detail = Some(detail.to_string());
        e
    }

    pub fn unavailable(what: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ServiceUnavailable, what)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.error)
    }
}

/// Most characters of `error` an answer carries, and of each field message: messages quote
/// client input (a value, a field name, a path), and an answer must not echo it at any length.
pub const MAX_ERROR_CHARS: usize = 1024;
pub const MAX_FIELD_MESSAGE_CHARS: usize = 300;

/// `text` cut to `max` characters, saying so.
pub fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}... (cut at {max} characters)", &text[..at]),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// The one way out for every error answer: lengths capped here.
    fn error_response(&self) -> HttpResponse {
        let capped = ApiError {
            status: self.status,
            error: capped(&self.error, MAX_ERROR_CHARS),
            code: self.code,
            fields: self
                .fields
                .iter()
                .map(|f| FieldMessage { field: f.field, message: capped(&f.message, MAX_FIELD_MESSAGE_CHARS) })
                .collect(),
            items: self
                .items
                .iter()
                .map(|f| ItemFieldMessage {
                    index: f.index,
                    field: f.field,
                    message: capped(&f.message, MAX_FIELD_MESSAGE_CHARS),
                })
                .collect(),
            detail: None,
        };
        HttpResponse::build(self.status).json(capped)
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let msg = e.to_string();
        match e {
            ControlError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, ErrorCode::TaskNotFound, msg),
            ControlError::AlreadyExists(_) => ApiError::new(StatusCode::CONFLICT, ErrorCode::TaskAlreadyExists, msg),
            ControlError::InvalidTransition { .. } | ControlError::ArchiveOnly(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::InvalidStateTransition, msg)
            }
            ControlError::Invalid(errs) => ApiError::fields(errs),
            ControlError::NotCovered(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::RangeNotCovered, msg)
            }
            ControlError::ShuttingDown => ApiError::unavailable(msg),
            ControlError::Timeout(_) => ApiError::unavailable(msg),
            ControlError::Store(StoreError::Unavailable(_) | StoreError::Misconfigured(_)) => {
                ApiError::unavailable("metadata database unavailable")
            }
            ControlError::Store(StoreError::ShuttingDown) => ApiError::unavailable("the service is shutting down"),
            // Paths of the data directory stay in the log.
            ControlError::Store(StoreError::Io { .. }) => ApiError::unavailable("a local file could not be read"),
            ControlError::Store(StoreError::Locked(_)) => {
                ApiError::unavailable("a metadata row is locked by another session's unfinished transaction; try again")
            }
            ControlError::Store(StoreError::TaskLimit(_)) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::TaskLimitReached, msg)
            }
            ControlError::Store(StoreError::NotFound) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "not found")
            }
            ControlError::Store(
                StoreError::Duplicate(_)
                | StoreError::Conflict(_)
                | StoreError::Forbidden { .. }
                | StoreError::Migration(_)
                | StoreError::Corrupt(_)
                | StoreError::Secrets(_)
                | StoreError::Fenced(_)
                | StoreError::Query(_),
            ) => ApiError::internal(msg),
        }
    }
}

/// Middleware: every 500 an API handler answered is logged with its [`ApiError::detail`], so that
/// "see the server log" is true. Other statuses are the client's business or the service's
/// announced state (503), not a fault to look into.
pub async fn log_internal_errors(
    log: slog::Logger,
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let (method, path) = (req.method().to_string(), req.path().to_string());
    let res = next.call(req).await?;
    if res.status() == StatusCode::INTERNAL_SERVER_ERROR {
        let detail = res
            .response()
            .error()
            .and_then(|e| e.as_error::<ApiError>())
            .map(|e| e.detail.clone().unwrap_or_else(|| e.error.clone()));
        let detail = detail.unwrap_or_else(|| "an error answer that is not the API's own".into());
        slog::error!(log, "API request failed"; "method" => method, "path" => capped(&path, 200), "error" => detail);
    }
    Ok(res)
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        ApiError::unavailable("the service is shutting down")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_never_echo_input_at_length() {
        assert_eq!(capped("short", 10), "short");
        assert_eq!(capped("ééééé", 3), "ééé... (cut at 3 characters)");
        let long = "A".repeat(50_000);
        let mut e = ApiError::invalid(format!("unknown field `{long}`"));
        e.fields.push(FieldMessage { field: "name", message: long.clone() });
        let body = e.error_response().into_body();
        let bytes = actix_web::body::to_bytes_limited(body, 1 << 20);
        let bytes = futures_util::FutureExt::now_or_never(bytes).unwrap().unwrap().unwrap();
        assert!(bytes.len() < 2048, "{} bytes", bytes.len());
    }

    /// A writer the test reads back: what the logger printed.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[actix_web::test]
    async fn a_500_logs_its_detail_and_answers_without_it() {
        use actix_web::{App, test as web_test, web};
        use slog::Drain;
        let out = Captured::default();
        let drain = slog_term::FullFormat::new(slog_term::PlainSyncDecorator::new(out.clone())).build().fuse();
        let log = slog::Logger::root(drain, slog::o!());
        let app = web_test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(move |req, next| log_internal_errors(log.clone(), req, next)))
                .route(
                    "/boom",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(ApiError::internal("reading /data/meta.db: disk on fire"))
                    }),
                )
                .route(
                    "/missing",
                    web::get().to(|| async {
                        Err::<HttpResponse, _>(ApiError::new(
                            StatusCode::NOT_FOUND,
                            ErrorCode::NotFound,
                            "no such thing",
                        ))
                    }),
                ),
        )
        .await;

        let res = web_test::call_service(&app, web_test::TestRequest::get().uri("/boom").to_request()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(web_test::read_body(res).await.to_vec()).unwrap();
        assert!(body.contains("see the server log"), "{body}");
        assert!(!body.contains("disk on fire") && !body.contains("meta.db"), "the answer leaks the detail: {body}");
        let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("API request failed"), "{logged}");
        assert!(logged.contains("reading /data/meta.db: disk on fire"), "{logged}");
        assert!(logged.contains("/boom"), "{logged}");

        let res = web_test::call_service(&app, web_test::TestRequest::get().uri("/missing").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let logged = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!logged.contains("/missing"), "a client's 404 is not a fault to log: {logged}");
    }
}
