//! `POST /api/tasks/batch`: up to `MAX_BATCH` task definitions, all checked before anything is
//! written; one invalid item refuses the whole batch with every problem as `{index, field,
//! message}`. The valid batch is created in one metadata transaction (all or none), then, with
//! `start: true`, each task is started as `POST /api/tasks/{id}/start` would.
//!
//! The body is JSON or YAML (`Content-Type: application/yaml`, for definitions kept in files):
//! `{tasks, start}`, or just the list of definitions; `?start=true` starts them too.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_TYPE;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::ControlError;
use crate::actors::supervisor::{CreateTasks, StartTask};
use crate::api::ApiState;
use crate::api::dto::{TaskBody, TaskDto};
use crate::api::error::{ApiError, ErrorCode, ItemFieldMessage};
use crate::domain::TaskSpec;

/// Most tasks one batch may define.
pub const MAX_BATCH: usize = 100;

/// A batch of task definitions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// 1 to 100 task definitions, each as `POST /api/tasks` takes it.
    #[schema(value_type = Vec<TaskBody>, min_items = 1, max_items = 100)]
    pub tasks: Vec<serde_json::Value>,
    /// Start every task once all are created (default false: they are created STOPPED).
    #[serde(default)]
    pub start: bool,
}

/// What a created batch answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchCreated {
    /// The created tasks, in the order of the request.
    pub items: Vec<TaskDto>,
    /// With `start: true`: tasks that could not be started (they exist, STOPPED), by index.
    pub start_errors: Vec<BatchStartError>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchStartError {
    pub index: usize,
    pub task_id: i64,
    pub error: String,
}

fn item_error(index: usize, field: &'static str, message: impl Into<String>) -> ItemFieldMessage {
    ItemFieldMessage { index, field, message: message.into() }
}

/// Checks every item (each as `POST /api/tasks` would, and no cluster key twice in the batch):
/// the specs, or every problem found.
pub fn check_items(items: Vec<serde_json::Value>) -> Result<Vec<TaskSpec>, Vec<ItemFieldMessage>> {
    let mut errors = Vec::new();
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(vec![item_error(0, "tasks", format!("give 1 to {MAX_BATCH} tasks, not {}", items.len()))]);
    }
    let mut specs = Vec::with_capacity(items.len());
    let mut first_with_key: BTreeMap<String, usize> = BTreeMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let body = match TaskBody::from_json(item) {
            Ok(b) => b,
            Err(e) => {
                errors.push(item_error(index, "body", format!("invalid task definition: {e}")));
                continue;
            }
        };
        match body.into_raw().validate() {
            Ok(spec) => {
                if let Some(first) = first_with_key.get(&spec.cluster_key) {
                    errors.push(item_error(index, "cluster_key", format!("item {first} has the same cluster_key")));
                } else {
                    first_with_key.insert(spec.cluster_key.clone(), index);
                }
                specs.push(spec);
            }
            Err(errs) => errors.extend(errs.into_iter().map(|e| item_error(index, e.field, e.message))),
        }
    }
    if errors.is_empty() { Ok(specs) } else { Err(errors) }
}

/// `?start=true`: start the tasks once created (for a YAML list, which has no `start` field).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchQuery {
    /// Start every task once all are created (as `start: true` in the body).
    pub start: Option<bool>,
}

/// The batch a body holds, by its content type: JSON or YAML, `{tasks, start}` or a bare list
/// of definitions.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<BatchBody, ApiError> {
    let value = if crate::api::yaml::is_yaml_content_type(content_type) {
        crate::api::yaml::to_json(body).map_err(ApiError::invalid)?
    } else if crate::api::yaml::is_json_content_type(content_type) {
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "a batch is JSON (Content-Type: application/json) or YAML (Content-Type: application/yaml)",
        ));
    };
    match value {
        serde_json::Value::Array(tasks) => Ok(BatchBody { tasks, start: false }),
        other => serde_json::from_value(other).map_err(|e| {
            ApiError::invalid(format!(
                "invalid batch: {e} (expected {{\"tasks\": [...], \"start\": false}} or a list of task definitions)"
            ))
        }),
    }
}

fn refused(status: StatusCode, code: ErrorCode, total: usize, items: Vec<ItemFieldMessage>) -> ApiError {
    let bad: std::collections::BTreeSet<usize> = items.iter().map(|i| i.index).collect();
    let mut e = ApiError::new(
        status,
        code,
        format!("{} of the {total} task definitions are refused; no task was created", bad.len()),
    );
    e.items = items;
    e
}

#[utoipa::path(post, path = "/api/tasks/batch", tag = "tasks", params(BatchQuery),
    request_body(description = "`{tasks, start}`, or a bare list of task definitions; as JSON or as YAML (one document, no anchors or aliases)",
        content((BatchBody = "application/json"), (BatchBody = "application/yaml"))),
    responses((status = 201, description = "Every task created (in one transaction), and started with `start: true`", body = BatchCreated),
              (status = 400, description = "At least one invalid item: nothing was created; `items` lists every problem as {index, field, message}", body = ApiError),
              (status = 409, description = "A cluster_key is taken (by an existing task): nothing was created; `items` names them", body = ApiError),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is neither JSON (Content-Type: application/json) nor YAML (application/yaml)", body = ApiError), (status = 408, description = "The request body did not arrive within http.body_timeout_sec", body = ApiError), (status = 413, description = "The request body is larger than http.max_body_bytes", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn create(
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<BatchQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let mut body = parse_body(content_type, &body)?;
    body.start |= query.start.unwrap_or(false);
    let total = body.tasks.len();
    let specs = check_items(body.tasks)
        .map_err(|items| refused(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, total, items))?;
    let keys: Vec<String> = specs.iter().map(|s| s.cluster_key.clone()).collect();
    let store = state.store.clone();
    let taken = web::block(move || store.existing_cluster_keys(&keys))
        .await
        .map_err(|_| ApiError::unavailable("the service is shutting down"))?
        .map_err(ControlError::Store)?;
    if !taken.is_empty() {
        let items = specs
            .iter()
            .enumerate()
            .filter(|(_, s)| taken.contains(&s.cluster_key))
            .map(|(i, s)| item_error(i, "cluster_key", format!("a task with cluster_key {:?} exists", s.cluster_key)))
            .collect();
        return Err(refused(StatusCode::CONFLICT, ErrorCode::TaskAlreadyExists, total, items));
    }
    let tasks = state.supervisor.send(CreateTasks(specs)).await??;
    let ctx = state.dto_context();
    let mut items: Vec<TaskDto> = tasks.iter().map(|t| TaskDto::from_task(t, &ctx)).collect();
    let mut start_errors = Vec::new();
    if body.start {
        for (index, task) in tasks.iter().enumerate() {
            match state.supervisor.send(StartTask(task.id)).await? {
                Ok(started) => items[index] = TaskDto::from_task(&started, &ctx),
                Err(e) => start_errors.push(BatchStartError { index, task_id: task.id.0, error: e.to_string() }),
            }
        }
    }
    Ok(HttpResponse::Created().json(BatchCreated { items, start_errors }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(key: &str) -> serde_json::Value {
        json!({
            "name": format!("task {key}"),
            "cluster_key": key,
            "source": {"host": "127.0.0.1", "port": 3306, "user": "repl", "password": "pw", "flavor": "mariadb"},
            "start": {"mode": "LATEST"},
        })
    }

    #[test]
    fn every_problem_is_reported_by_index_and_field() {
        let mut bad_port = item("b");
        bad_port["source"]["port"] = json!(70000);
        let items = vec![item("a"), bad_port, json!([1]), item("a"), json!({"name": "x", "typo": 1})];
        let errs = check_items(items).unwrap_err();
        let found: Vec<(usize, &str)> = errs.iter().map(|e| (e.index, e.field)).collect();
        assert!(found.contains(&(1, "source.port")), "{errs:?}");
        assert!(found.contains(&(2, "body")), "{errs:?}");
        assert!(found.contains(&(3, "cluster_key")), "{errs:?}");
        assert!(found.contains(&(4, "body")), "{errs:?}");
        assert!(!found.iter().any(|(i, _)| *i == 0), "item 0 is fine: {errs:?}");
    }

    #[test]
    fn a_batch_holds_1_to_100_items() {
        assert_eq!(check_items((0..100).map(|i| item(&format!("k{i}"))).collect()).unwrap().len(), 100);
        for n in [0, 101] {
            let errs = check_items((0..n).map(|i| item(&format!("k{i}"))).collect()).unwrap_err();
            assert_eq!(errs[0].field, "tasks", "{n}: {errs:?}");
        }
    }
}
