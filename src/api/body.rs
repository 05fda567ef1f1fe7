//! Request bodies under `/api` are read in full before a handler runs: within
//! `http.body_timeout_sec` of the request's headers (actix-web bounds only the time to receive
//! the headers; a client sending one byte a second would otherwise hold a connection for as long
//! as it likes) and up to `http.max_body_bytes` bytes. Too slow is 408, too large 413, and the
//! connection is closed; handlers then read the buffered copy.
//!
//! Runs after authentication: an unauthenticated client is answered before its body is read.
//! Every middleware that answers before this one does so through [`answer_unread`], so that the
//! unread body is never taken for the client's next request on the same connection.

use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpResponse, ResponseError};
use futures_util::StreamExt as _;

use crate::api::error::{ApiError, ErrorCode};

/// How long and how large a request body may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

enum Refused {
    TooLarge,
    Broken(PayloadError),
}

/// Whether a request's headers announce a body: chunked, or a length other than 0.
pub fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(TRANSFER_ENCODING)
        || headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|l| l.trim() != "0")
}

/// An answer given before the request's body was read (a refusal by a middleware). When the
/// request announced a body, its unread bytes may still be on their way, and the server would
/// take them for the next request on the connection; so the connection closes after this answer
/// and the answer says so (`Connection: close`), which tells a client not to send another request
/// on it. Without that, a keep-alive client's next request on the connection found it closed
/// ("peer disconnected"), depending on whether the body had arrived before the answer.
pub fn answer_unread(req: ServiceRequest, mut resp: HttpResponse) -> ServiceResponse<BoxBody> {
    if declares_body(req.headers()) {
        resp.head_mut().set_connection_type(ConnectionType::Close);
    }
    req.into_response(resp)
}

/// Middleware: buffers the whole body within the limits, or answers itself.
pub async fn read_whole(
    limits: BodyLimits,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let mut payload = req.take_payload();
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(Refused::Broken)?;
            if buf.len() + chunk.len() > limits.max_bytes {
                return Err(Refused::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<Bytes, Refused>(buf.freeze())
    };
    let refusal = match tokio::time::timeout(limits.timeout, read).await {
        Ok(Ok(body)) => {
            req.set_payload(body.into());
            return next.call(req).await.map(ServiceResponse::map_into_boxed_body);
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::RequestTimeout,
            format!(
                "the request body did not arrive within {} s (http.body_timeout_sec)",
                limits.timeout.as_secs_f64()
            ),
        ),
        Ok(Err(Refused::TooLarge)) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {} bytes", limits.max_bytes),
        ),
        Ok(Err(Refused::Broken(e))) => ApiError::invalid(format!("reading the request body: {e}")),
    };
    // The rest of the body is never read: the connection cannot carry another request.
    let mut resp: HttpResponse = refusal.error_response();
    resp.head_mut().set_connection_type(ConnectionType::Close);
    Ok(req.into_response(resp))
}
