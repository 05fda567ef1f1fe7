//! The API's answers to the limits of [`crate::rate_limit`]: 429 `RATE_LIMITED` with
//! `Retry-After`, from the requests-per-second middleware (`api.rate_limit`, off by default) and
//! from authentication's wrong-credentials budget (`api.auth.failure_limit`, on by default: on
//! every route behind authentication, `/metrics` too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::ResponseError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;

use crate::api::error::{ApiError, ErrorCode};
pub use crate::rate_limit::{FailedAuthLimiter, RateLimiter};

/// The 429 answer: `RATE_LIMITED`, `Retry-After` in whole seconds (at least 1).
pub fn too_many(wait: Duration, what: &str) -> actix_web::HttpResponse {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited, format!("{what}; retry in {secs} s"))
            .error_response();
    resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// Middleware: 429 when the client's bucket is empty (when a limiter is configured).
pub async fn limit(
    limiter: Option<Arc<RateLimiter>>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if let (Some(l), Some(peer)) = (limiter, req.peer_addr())
        && let Err(wait) = l.check(peer.ip(), Instant::now())
    {
        return Ok(crate::api::body::answer_unread(req, too_many(wait, "too many requests from this address")));
    }
    next.call(req).await.map(ServiceResponse::map_into_boxed_body)
}
