//! The response shapes the handlers share: an accepted operation, a polled one, a created
//! resource, plain JSON; and reading an optional JSON body.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;
use super::operations::{location, Operation, OperationBody};
use super::types::Page;
use crate::store::Status;

/// Header text from ids and paths: they come from UUIDs or from URLs the client sent, so they
/// are valid header text; fall back to nothing rather than fail.
pub fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

fn with_headers(
    mut response: Response,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> Response {
    let map = response.headers_mut();
    for (name, value) in headers {
        map.insert(name, value);
    }
    response
}

/// `202 Accepted`: the operation, where to poll it, and when.
pub fn accepted(operation: &Operation, retry_after_secs: u64) -> Response {
    let poll = header_value(&location(&operation.id));
    with_headers(
        (StatusCode::ACCEPTED, Json(OperationBody::from(operation))).into_response(),
        [
            (HeaderName::from_static("operation-location"), poll.clone()),
            (header::LOCATION, poll),
            (header::RETRY_AFTER, HeaderValue::from(retry_after_secs)),
        ],
    )
}

/// `200 OK` with the operation; `Retry-After` while it is not finished.
pub fn polled(operation: &Operation, retry_after_secs: u64) -> Response {
    let response = Json(OperationBody::from(operation)).into_response();
    if operation.status.is_terminal() {
        return response;
    }
    with_headers(
        response,
        [(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))],
    )
}

/// `201 Created` with the resource and its location.
pub fn created(resource_location: &str, body: impl Serialize) -> Response {
    with_headers(
        (StatusCode::CREATED, Json(body)).into_response(),
        [(header::LOCATION, header_value(resource_location))],
    )
}

/// `{"value": [...]}`, the shape of every list.
pub fn list<T: Serialize>(items: Vec<T>) -> Json<Page<T>> {
    Json(Page::of(items))
}

/// A JSON body that may be left out (empty: the default).
pub fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

pub fn not_cancellable(status: Status) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "notCancellable",
        format!(
            "the operation is {}; only a not started submission, or a running rejudge or validation, can be cancelled",
            status.as_str()
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    response
}
