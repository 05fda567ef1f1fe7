//! API authentication: a bearer token or an API key header, compared in constant time.
//! `/healthz` is never protected; `/api/*` and `/metrics` are when configured. Wrong
//! credentials are counted per client address (`rate_limit::FailedAuthLimiter`): once an
//! address has spent its budget, it gets 429 before its credential is looked at.
//!
//! Never logs or echoes the presented or configured credential.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

use crate::api::error::{ApiError, ErrorCode};
use crate::api::rate_limit::{FailedAuthLimiter, too_many};
use crate::config::{AuthMode, AuthSettings};
use crate::secret::{Secret, constant_time_eq};

/// The credential check, built once from the settings.
#[derive(Clone)]
pub struct Authenticator {
    mode: AuthMode,
    secret: Secret,
    header: HeaderName,
}

impl Authenticator {
    /// `None` when auth is disabled.
    pub fn from_settings(s: &AuthSettings) -> Option<Rc<Self>> {
        if !s.enabled {
            return None;
        }
        let (secret, header) = match s.mode {
            AuthMode::Bearer => (s.bearer_token.clone(), AUTHORIZATION),
            AuthMode::ApiKey => (
                s.api_key.clone(),
                HeaderName::try_from(s.api_key_header.as_str()).unwrap_or(HeaderName::from_static("x-api-key")),
            ),
        };
        Some(Rc::new(Authenticator { mode: s.mode, secret, header }))
    }

    /// Whether the request carries the configured credential.
    pub fn check(&self, req: &ServiceRequest) -> bool {
        self.attempt(req) == Some(true)
    }

    /// `None` when the request presents no credential (no header: not a guess), else whether it
    /// is the configured one.
    fn attempt(&self, req: &ServiceRequest) -> Option<bool> {
        let value = req.headers().get(&self.header)?;
        let presented: &[u8] = match self.mode {
            AuthMode::Bearer => {
                let v = value.as_bytes();
                if v.len() < 7 || !v[..7].eq_ignore_ascii_case(b"bearer ") {
                    return Some(false);
                }
                v[7..].trim_ascii()
            }
            AuthMode::ApiKey => value.as_bytes().trim_ascii(),
        };
        Some(constant_time_eq(presented, self.secret.expose().as_bytes()))
    }

    fn challenge(&self) -> HeaderValue {
        match self.mode {
            AuthMode::Bearer => HeaderValue::from_static("Bearer realm=\"binlog-server\""),
            AuthMode::ApiKey => {
                HeaderValue::from_str(&format!("ApiKey realm=\"binlog-server\", header=\"{}\"", self.header))
                    .unwrap_or(HeaderValue::from_static("ApiKey realm=\"binlog-server\""))
            }
        }
    }

    /// The 401 answer: `{error, code}` with `WWW-Authenticate`.
    pub fn unauthorized(&self) -> HttpResponse {
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or invalid credentials (see api.auth in docs/guide/configuration.md)",
        )
        .error_response();
        resp.headers_mut().insert(WWW_AUTHENTICATE, self.challenge());
        resp
    }
}

/// Middleware: lets the request through only with the credential (when `auth` is set). An
/// address whose wrong credentials spent its budget (`failures`) gets 429, right credential or
/// not; a request without any credential gets 401 (the UI's cue to ask for the token).
pub async fn require(
    auth: Option<Rc<Authenticator>>,
    failures: Option<Arc<FailedAuthLimiter>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(a) = auth else {
        return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
    };
    let Some(right) = a.attempt(&req) else {
        let resp = a.unauthorized();
        return Ok(crate::api::body::answer_unread(req, resp));
    };
    let now = Instant::now();
    let limited = failures.zip(req.peer_addr().map(|p| p.ip()));
    if let Some((l, ip)) = &limited
        && let Err(wait) = l.admit(*ip, now)
    {
        let resp = too_many(wait, "too many failed authentication attempts from this address");
        return Ok(crate::api::body::answer_unread(req, resp));
    }
    if !right {
        if let Some((l, ip)) = &limited {
            l.record_failure(*ip, now);
        }
        let resp = a.unauthorized();
        return Ok(crate::api::body::answer_unread(req, resp));
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn settings(mode: AuthMode) -> AuthSettings {
        AuthSettings {
            enabled: true,
            mode,
            bearer_token: Secret::new("tok-123"),
            api_key: Secret::new("key-456"),
            ..Default::default()
        }
    }

    #[test]
    fn bearer_requires_the_exact_token() {
        let a = Authenticator::from_settings(&settings(AuthMode::Bearer)).unwrap();
        let ok = TestRequest::default().insert_header(("Authorization", "Bearer tok-123")).to_srv_request();
        assert!(a.check(&ok));
        let ok2 = TestRequest::default().insert_header(("Authorization", "bearer tok-123")).to_srv_request();
        assert!(a.check(&ok2));
        for bad in ["Bearer tok-12", "Bearer tok-1234", "Bearer TOK-123", "Basic tok-123", "tok-123", "Bearer "] {
            let r = TestRequest::default().insert_header(("Authorization", bad)).to_srv_request();
            assert!(!a.check(&r), "{bad:?} accepted");
        }
        assert!(!a.check(&TestRequest::default().to_srv_request()));
    }

    #[test]
    fn api_key_uses_its_header() {
        let a = Authenticator::from_settings(&settings(AuthMode::ApiKey)).unwrap();
        let ok = TestRequest::default().insert_header(("X-API-Key", "key-456")).to_srv_request();
        assert!(a.check(&ok));
        let wrong = TestRequest::default().insert_header(("Authorization", "Bearer key-456")).to_srv_request();
        assert!(!a.check(&wrong));
        let resp = a.unauthorized();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().get(WWW_AUTHENTICATE).is_some());
    }

    #[test]
    fn disabled_auth_builds_nothing() {
        assert!(Authenticator::from_settings(&AuthSettings::default()).is_none());
    }
}
