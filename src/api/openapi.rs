//! The OpenAPI 3.1 document (utoipa), served at `/api/openapi.json` (behind the API's auth) and
//! to the Swagger UI at `/swagger/` (assets compiled into the binary, no network).
//!
//! `docs/openapi.json` is the committed copy; a test fails when the served document differs
//! (regenerate with `UPDATE_OPENAPI=1 cargo test --lib openapi`).

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{batch, cluster, import, metrics, pitr, relay, summary, tasks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "binlog-server",
        description = "Pulls MySQL/MariaDB binlogs into durable, byte-identical local files. Errors are \
                       `{error, code}` (plus `fields` for validation errors). When authentication is on, send \
                       `Authorization: Bearer <token>` or the API key header (default `X-API-Key`).",
    ),
    paths(
        crate::api::healthz,
        metrics::metrics_text,
        spec,
        summary::summary,
        tasks::create,
        batch::create,
        tasks::list,
        tasks::get,
        tasks::update,
        tasks::delete,
        tasks::start,
        tasks::stop,
        tasks::checkpoint,
        tasks::events,
        tasks::files,
        tasks::retry_upload,
        tasks::upload_failures,
        tasks::replication,
        import::import,
        relay::put_users,
        relay::get_users,
        relay::replicas,
        pitr::window,
        pitr::replay,
        pitr::archive,
        pitr::download,
        cluster::workers,
        cluster::overview,
        cluster::lease,
    ),
    modifiers(&Security),
    tags((name = "tasks", description = "Replication tasks"), (name = "recovery", description = "Point-in-time recovery: window, replay plans, file downloads"), (name = "cluster", description = "Cluster mode: nodes, leases, placement"), (name = "relay", description = "Relay users: who may read a task's binlog over the replication protocol (relay.listen_addr)"), (name = "service", description = "Health, metrics, this document"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))));
    }
}

/// The document as JSON (built once).
pub fn document() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises"))
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"),
              (status = 401, description = "Missing or invalid credentials (when auth is on)", body = crate::api::error::ApiError),
              (status = 429, description = "Too many requests (api.rate_limit), or too many wrong credentials from this address (api.auth.failure_limit)", body = crate::api::error::ApiError)),
    security((), ("bearer" = []), ("api_key" = [])))]
pub async fn spec() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_document_matches_the_served_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let served = format!("{}\n", document());
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &served).expect("write docs/openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == served,
            "docs/openapi.json differs from the served document: regenerate it with \
             `UPDATE_OPENAPI=1 cargo test --lib openapi` and review the diff"
        );
    }

    #[test]
    fn the_document_names_every_operation_and_the_enums() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            ("/healthz", "get"),
            ("/metrics", "get"),
            ("/api/openapi.json", "get"),
            ("/api/tasks", "post"),
            ("/api/tasks", "get"),
            ("/api/tasks/{id}", "put"),
            ("/api/tasks/{id}", "delete"),
            ("/api/tasks/{id}/start", "post"),
            ("/api/tasks/{id}/replication", "get"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path} is not documented");
        }
        let flavor = &doc["components"]["schemas"]["Flavor"]["enum"];
        assert_eq!(flavor, &serde_json::json!(["mysql", "mariadb"]), "serde renames reach the schema");
    }
}
