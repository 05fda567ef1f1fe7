//! `/api/tasks/{id}/relay`: who may pull the task's binlog through the relay listener. Checks the
//! body, hashes the passwords (`relay::auth`) and hands the hashes to the supervisor; passwords
//! are never stored, returned or logged.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::supervisor::SetRelayUsers;
use crate::api::error::ApiError;
use crate::api::{ApiState, TaskIdPath};
use crate::domain::FieldError;
use crate::relay::auth::{UserHashes, check_name};
use crate::secret::Secret;

/// Longest relay password accepted.
const MAX_PASSWORD_LEN: usize = 256;
/// Most relay users per task.
const MAX_USERS: usize = 100;

/// The relay users of a task; replaces the previous list (an empty list revokes all).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayUsersBody {
    pub users: Vec<RelayUserBody>,
}

/// One relay user: the name a replica logs in with (unique across tasks) and its password.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayUserBody {
    #[schema(min_length = 1, max_length = 80, pattern = r"^[A-Za-z0-9_.@-]+$")]
    pub name: String,
    /// Write-only: only SHA1(SHA1(password)) and SHA256(SHA256(password)) are stored.
    #[schema(value_type = String, format = Password, min_length = 1, max_length = 256)]
    pub password: Secret,
}

/// The names of a task's relay users (passwords and hashes are never returned).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RelayUsersDto {
    pub task_id: i64,
    pub users: Vec<String>,
}

/// Checks the list; all problems at once.
fn validate(body: &RelayUsersBody) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    if body.users.len() > MAX_USERS {
        errs.push(FieldError { field: "users", message: format!("at most {MAX_USERS} relay users per task") });
    }
    let mut seen = std::collections::BTreeSet::new();
    for u in &body.users {
        if let Err(m) = check_name(&u.name) {
            errs.push(FieldError { field: "users.name", message: format!("{:?}: {m}", u.name) });
        } else if !seen.insert(u.name.as_str()) {
            errs.push(FieldError { field: "users.name", message: format!("{:?} appears twice", u.name) });
        }
        let len = u.password.expose().len();
        if len == 0 || len > MAX_PASSWORD_LEN {
            errs.push(FieldError {
                field: "users.password",
                message: format!("the password of {:?} must have 1 to {MAX_PASSWORD_LEN} bytes", u.name),
            });
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

#[utoipa::path(put, path = "/api/tasks/{id}/relay", tag = "relay", params(("id" = i64, Path, description = "Task id", minimum = 1)), request_body = RelayUsersBody,
    responses((status = 200, description = "The task's relay users now (names only)", body = RelayUsersDto),
              (status = 400, description = "Invalid request (a bad or repeated name, a name another task has, an empty password)", body = ApiError), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 403, description = "Cross-site request refused: a foreign Origin or Host, or neither a JSON body nor the X-Requested-With header", body = ApiError), (status = 415, description = "A body that is not JSON (Content-Type: application/json)", body = ApiError), (status = 408, description = "The request body did not arrive within http.body_timeout_sec", body = ApiError), (status = 413, description = "The request body is larger than 64 KiB", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn put_users(
    state: web::Data<ApiState>,
    id: TaskIdPath,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let body: RelayUsersBody =
        serde_json::from_value(body.into_inner()).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    validate(&body).map_err(ApiError::fields)?;
    let users = body.users.iter().map(|u| (u.name.clone(), UserHashes::from_password(u.password.expose()))).collect();
    let names = state.supervisor.send(SetRelayUsers { id: id.0, users }).await??;
    Ok(HttpResponse::Ok().json(RelayUsersDto { task_id: id.0.0, users: names }))
}

#[utoipa::path(get, path = "/api/tasks/{id}/relay", tag = "relay", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "The task's relay users (names only)", body = RelayUsersDto), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn get_users(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse, ApiError> {
    let names = state.queries.relay_users(id.0).await?;
    Ok(HttpResponse::Ok().json(RelayUsersDto { task_id: id.0.0, users: names }))
}

/// The clients connected to a task through the relay.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReplicaPage {
    pub items: Vec<crate::relay::clients::RelayClient>,
}

#[utoipa::path(get, path = "/api/tasks/{id}/replicas", tag = "relay", params(("id" = i64, Path, description = "Task id", minimum = 1)),
    responses((status = 200, description = "Clients connected through the relay now: server id, address, user, mode, file and position reached, bytes sent, connected since", body = ReplicaPage), (status = 401, description = "Missing or invalid credentials (when auth is on)", body = ApiError), (status = 404, description = "No such task", body = ApiError), (status = 503, description = "Unavailable (shutting down, metadata database down)", body = ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn replicas(state: web::Data<ApiState>, id: TaskIdPath) -> Result<HttpResponse, ApiError> {
    // 404 for a task that does not exist.
    state.queries.task(id.0).await?;
    Ok(HttpResponse::Ok().json(ReplicaPage { items: state.relay_clients.of_task(id.0) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(users: &[(&str, &str)]) -> RelayUsersBody {
        RelayUsersBody {
            users: users
                .iter()
                .map(|(n, p)| RelayUserBody { name: n.to_string(), password: Secret::new(*p) })
                .collect(),
        }
    }

    #[test]
    fn relay_user_lists_are_checked_whole() {
        assert!(validate(&body(&[("r1", "pw"), ("r2", "pw")])).is_ok());
        assert!(validate(&body(&[])).is_ok());
        let errs = validate(&body(&[("r1", "pw"), ("r1", ""), ("bad name", "x")])).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["users.name", "users.password", "users.name"]);
        // A password never appears in a message.
        let errs = validate(&body(&[("ok", &"p".repeat(300))])).unwrap_err();
        assert!(!errs[0].message.contains("ppp"), "{}", errs[0].message);
    }
}
