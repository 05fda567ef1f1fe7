//! Request bodies under `/api` are read in full before a handler runs: within
//! `http.body_timeout_sec` of the request's headers (actix-web bounds only the time to receive
//! the headers; a client sending one byte a second would otherwise hold a connection for as long
//! as it likes) and up to `http.max_body_bytes` bytes. Too slow is 408, too large 413, and the
//! connection is closed; handlers then read the buffered copy.
//!
//! Runs after authentication: an unauthenticated client is answered before its body is read.

use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
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
    resp.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(req.into_response(resp))
}
