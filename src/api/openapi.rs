//! `GET /v1.0/openapi.json`: the OpenAPI document of the API (`openapi.json`), open without a
//! token. A test of [`super::router`] checks it against the route table.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::route::{Access, Route, Verb};

const OPENAPI: &str = include_str!("openapi.json");

/// The document, open to anyone.
pub(super) fn routes() -> Vec<Route> {
    vec![Route::new(Verb::Get, "/v1.0/openapi.json", &[200, 429], openapi).access(Access::Open)]
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
