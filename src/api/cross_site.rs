//! Defences against requests a web page on another site makes the operator's browser send: the
//! default configuration (no authentication, loopback) is reachable from any page that browser
//! opens. For every route but `/healthz`:
//!
//! - A request that changes state (POST, PUT, DELETE under `/api`) must be one another site
//!   cannot make without a CORS preflight, which this server never grants: a JSON body
//!   (`Content-Type: application/json`), or no body and the `X-Requested-With` header (any
//!   value; the UI sends it on every call). A form or text body is 415, nothing at all is 403.
//! - A foreign `Origin` is refused (403): browsers name the page's site there.
//! - While a route is open without a credential, the `Host` header must name this server:
//!   `localhost`, an IP address, or a name in `http.allowed_hosts` (403 otherwise). A page that
//!   rebinds its own DNS name to 127.0.0.1 still sends that name; an IP address cannot be
//!   rebound.
//!
//! `Policy::check` is the decision (pure, table-tested); `guard` only gathers the facts.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::ResponseError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_TYPE, HOST, ORIGIN};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;

use crate::api::error::{ApiError, ErrorCode};
use crate::config::Settings;

/// The header that marks a request without a body as one a page on another site did not make.
pub const REQUESTED_WITH: &str = "x-requested-with";

/// What the rules depend on, from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Some route answers without a credential: `Host` must name this server.
    pub open_routes: bool,
    /// `http.allowed_hosts`, lower case.
    pub allowed_hosts: Vec<String>,
}

/// What the rules look at in one request.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub has_body: bool,
    pub requested_with: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ForeignHost,
    ForeignOrigin,
    NotJson,
    Unmarked,
}

/// `host[:port]` or `[v6]:port` without the port, lower case, without a final dot.
fn host_name(authority: &str) -> String {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => match authority.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => authority,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Policy {
        Policy { open_routes: s.has_open_routes(), allowed_hosts: s.http.allowed_host_names() }
    }

    /// The decision for one request.
    pub fn check(&self, r: &Facts<'_>) -> Result<(), Refusal> {
        if r.path == "/healthz" {
            return Ok(());
        }
        if self.open_routes
            && let Some(host) = r.host
            && !self.names_this_server(host)
        {
            return Err(Refusal::ForeignHost);
        }
        if let Some(origin) = r.origin
            && !self.is_our_origin(origin, r.host)
        {
            return Err(Refusal::ForeignOrigin);
        }
        let changes_state = matches!(*r.method, Method::POST | Method::PUT | Method::DELETE);
        if !changes_state || !(r.path == "/api" || r.path.starts_with("/api/")) {
            return Ok(());
        }
        // JSON, or YAML (POST /api/tasks/batch; other routes answer 415): neither is a type a
        // cross-site form may send, so a browser asks this server first (CORS preflight).
        let json = r
            .content_type
            .is_some_and(|t| crate::api::yaml::is_json_content_type(t) || crate::api::yaml::is_yaml_content_type(t));
        match (json, r.has_body || r.content_type.is_some(), r.requested_with) {
            (true, _, _) | (false, false, true) => Ok(()),
            (false, true, _) => Err(Refusal::NotJson),
            (false, false, false) => Err(Refusal::Unmarked),
        }
    }

    fn names_this_server(&self, host: &str) -> bool {
        let name = host_name(host);
        name == "localhost" || name.parse::<IpAddr>().is_ok() || self.allowed_hosts.contains(&name)
    }

    /// `scheme://host[:port]` of this very server (as the `Host` header names it), or of a name
    /// the operator allows. `null` (a sandboxed or privacy-sensitive context) is nobody's.
    fn is_our_origin(&self, origin: &str, host: Option<&str>) -> bool {
        let Some((_, authority)) = origin.split_once("://") else { return false };
        host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) || self.allowed_hosts.contains(&host_name(authority))
    }
}

impl Refusal {
    fn error(self, r: &Facts<'_>) -> ApiError {
        let shown = |v: Option<&str>| v.unwrap_or_default().chars().take(64).collect::<String>();
        let (status, code, message) = match self {
            Refusal::ForeignHost => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "Host {:?} does not name this server: while routes are open without authentication only \
                     localhost, IP addresses and http.allowed_hosts are answered (DNS rebinding protection)",
                    shown(r.host)
                ),
            ),
            Refusal::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                format!(
                    "cross-site request refused: Origin {:?} is not this server (add its host to \
                     http.allowed_hosts if it is)",
                    shown(r.origin)
                ),
            ),
            Refusal::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "a request that changes state takes a JSON body (Content-Type: application/json; POST \
                 /api/tasks/batch also application/yaml), or no body and the header X-Requested-With"
                    .to_string(),
            ),
            Refusal::Unmarked => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "a request that changes state without a body needs the header X-Requested-With (any value) or \
                 Content-Type: application/json: a page on another site can send neither"
                    .to_string(),
            ),
        };
        ApiError::new(status, code, message)
    }
}

/// Middleware: answers a refused request itself; lets the others through.
pub async fn guard(
    policy: Arc<Policy>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let h = req.headers();
    let text = |name| h.get(name).and_then(|v: &actix_web::http::header::HeaderValue| v.to_str().ok());
    let has_body = crate::api::body::declares_body(h);
    let facts = Facts {
        method: req.method(),
        path: req.path(),
        host: text(HOST),
        origin: text(ORIGIN),
        content_type: text(CONTENT_TYPE),
        has_body,
        requested_with: h.contains_key(REQUESTED_WITH),
    };
    match policy.check(&facts) {
        Ok(()) => next.call(req).await.map(ServiceResponse::map_into_boxed_body),
        Err(refusal) => {
            let resp = refusal.error(&facts).error_response();
            Ok(crate::api::body::answer_unread(req, resp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(method: &'a Method, path: &'a str) -> Facts<'a> {
        Facts {
            method,
            path,
            host: Some("127.0.0.1:8080"),
            origin: None,
            content_type: None,
            has_body: false,
            requested_with: false,
        }
    }

    #[test]
    fn requests_that_change_state_must_be_json_or_marked() {
        let p = Policy { open_routes: true, allowed_hosts: vec![] };
        let post = Method::POST;
        let base = facts(&post, "/api/tasks/1/start");
        let table: &[(&str, Facts, Result<(), Refusal>)] = &[
            ("JSON", Facts { content_type: Some("application/json"), has_body: true, ..base }, Ok(())),
            ("JSON, charset", Facts { content_type: Some("Application/JSON; charset=utf-8"), ..base }, Ok(())),
            ("no body, marked", Facts { requested_with: true, ..base }, Ok(())),
            ("text", Facts { content_type: Some("text/plain"), has_body: true, ..base }, Err(Refusal::NotJson)),
            ("YAML", Facts { content_type: Some("application/yaml"), has_body: true, ..base }, Ok(())),
            (
                "text/yaml: a form could not send it, but no route reads it",
                Facts { content_type: Some("text/yaml"), has_body: true, ..base },
                Err(Refusal::NotJson),
            ),
            (
                "a form, marked",
                Facts {
                    content_type: Some("application/x-www-form-urlencoded"),
                    has_body: true,
                    requested_with: true,
                    ..base
                },
                Err(Refusal::NotJson),
            ),
            ("a body without a type", Facts { has_body: true, ..base }, Err(Refusal::NotJson)),
            ("nothing", base, Err(Refusal::Unmarked)),
            ("DELETE, nothing", Facts { method: &Method::DELETE, ..base }, Err(Refusal::Unmarked)),
            ("GET, nothing", Facts { method: &Method::GET, ..base }, Ok(())),
            ("PATCH is for the router (405)", Facts { method: &Method::PATCH, ..base }, Ok(())),
            ("POST outside /api", Facts { path: "/ui/", ..base }, Ok(())),
            ("POST /apis", Facts { path: "/apis", ..base }, Ok(())),
        ];
        for (what, f, want) in table {
            assert_eq!(p.check(f), *want, "{what}");
        }
    }

    #[test]
    fn origins_and_hosts() {
        let open = Policy { open_routes: true, allowed_hosts: vec!["binlog.internal".into()] };
        let closed = Policy { open_routes: false, ..open.clone() };
        let get = Method::GET;
        let base = facts(&get, "/api/tasks");
        let with_host = |h| Facts { host: Some(h), ..base };
        let with_origin = |o| Facts { origin: Some(o), ..base };
        let table: &[(&str, &Policy, Facts, Result<(), Refusal>)] = &[
            ("an IP address", &open, with_host("10.1.2.3:8080"), Ok(())),
            ("IPv6", &open, with_host("[::1]:8080"), Ok(())),
            ("localhost", &open, with_host("LocalHost.:8080"), Ok(())),
            ("an allowed name", &open, with_host("binlog.internal"), Ok(())),
            ("a rebound name", &open, with_host("attacker.example:8080"), Err(Refusal::ForeignHost)),
            ("a name like an address", &open, with_host("127.0.0.1.attacker.example"), Err(Refusal::ForeignHost)),
            ("any name with every route protected", &closed, with_host("attacker.example"), Ok(())),
            ("/healthz answers anyone", &open, Facts { path: "/healthz", ..with_host("x.example") }, Ok(())),
            ("no Host (HTTP/1.0)", &open, Facts { host: None, ..base }, Ok(())),
            ("the same origin", &open, with_origin("http://127.0.0.1:8080"), Ok(())),
            ("an allowed origin", &open, with_origin("https://binlog.internal"), Ok(())),
            ("another port", &open, with_origin("http://127.0.0.1:9999"), Err(Refusal::ForeignOrigin)),
            ("another site", &closed, with_origin("https://attacker.example"), Err(Refusal::ForeignOrigin)),
            ("null", &closed, with_origin("null"), Err(Refusal::ForeignOrigin)),
        ];
        for (what, p, f, want) in table {
            assert_eq!(p.check(f), *want, "{what}");
        }
    }
}
