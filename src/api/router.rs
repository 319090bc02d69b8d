//! The API's routers, built from the route table: each resource's routes (method, path, the
//! statuses it answers, handler), behind the same layers. A test checks the OpenAPI document
//! against the table, so neither has a route the other lacks.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;

use super::error::ApiError;
use super::route::Route;
use super::AppState;

/// Where the main router serves the Judge0-compatible API.
pub const JUDGE0_PREFIX: &str = "/judge0";

/// Every route of the main router ([`super::router`]).
pub fn all() -> Vec<Route> {
    let mut routes = super::routes::routes();
    routes.extend(super::workflows::routes());
    routes.extend(super::status::routes());
    routes.extend(super::runs::routes());
    routes.extend(
        super::judge0::routes()
            .into_iter()
            .map(|route| route.under(JUDGE0_PREFIX)),
    );
    routes
}

/// `routes` as an axum router (one path's methods merged into one route).
fn table(routes: Vec<Route>) -> Router<AppState> {
    routes.into_iter().fold(Router::new(), |router, route| {
        router.route(&route.path, route.handler)
    })
}

/// The API's routes ([`all`]).
pub fn router(state: AppState) -> Router {
    guarded(table(all()), state)
}

/// The Judge0-compatible API at the root, behind the same layers as [`router`].
pub fn judge0_router(state: AppState) -> Router {
    guarded(table(super::judge0::routes()), state)
}

/// `routes` with the API's fallback (404), body limit, authentication and rate limit.
fn guarded(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::limit::limit,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notFound", "no such resource")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::api::ApiConfig;
    use crate::store::memory::MemoryBackend;
    use crate::store::memory::MemoryInterface;

    /// The OpenAPI document as the router serves it.
    async fn served_document() -> Value {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let state = AppState::new(backend, ApiConfig::default(), CancellationToken::new());
        let request = Request::get("/v1.0/openapi.json")
            .body(Body::empty())
            .unwrap();
        let response = crate::api::router(state).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    const VERBS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    /// What `document` lacks of `routes` (a route, or a status one answers) and the operations
    /// it has that `routes` lack; a route listed twice.
    fn gaps(routes: &[Route], document: &Value) -> Vec<String> {
        let mut gaps = Vec::new();
        let mut seen = BTreeSet::new();
        for route in routes {
            let name = format!("{} {}", route.verb.openapi().to_uppercase(), route.path);
            if !seen.insert((route.path.clone(), route.verb.openapi())) {
                gaps.push(format!("{name} is listed twice"));
            }
            let Some(operation) = document["paths"][&route.path].get(route.verb.openapi()) else {
                gaps.push(format!("{name} is not in the document"));
                continue;
            };
            for status in route.answers {
                if operation["responses"].get(status.to_string()).is_none() {
                    gaps.push(format!("{name} answers {status}, which the document lacks"));
                }
            }
        }
        let paths = document["paths"].as_object().cloned().unwrap_or_default();
        for (path, item) in &paths {
            for verb in VERBS {
                if item.get(*verb).is_some() && !seen.contains(&(path.clone(), *verb)) {
                    gaps.push(format!(
                        "the document has {} {path}, which the router lacks",
                        verb.to_uppercase()
                    ));
                }
            }
        }
        gaps
    }

    #[tokio::test]
    async fn the_openapi_document_has_every_route_and_status_and_no_other() {
        let gaps = gaps(&all(), &served_document().await);
        assert!(gaps.is_empty(), "{gaps:#?}");
    }

    #[tokio::test]
    async fn a_route_or_status_the_document_lacks_is_found() {
        let document = served_document().await;
        let mut without_path = document.clone();
        without_path["paths"]
            .as_object_mut()
            .unwrap()
            .remove("/v1.0/runs/{id}");
        assert_eq!(
            gaps(&all(), &without_path),
            ["GET /v1.0/runs/{id} is not in the document"]
        );
        let mut without_status = document.clone();
        without_status["paths"]["/v1.0/submissions"]["post"]["responses"]
            .as_object_mut()
            .unwrap()
            .remove("413");
        assert_eq!(
            gaps(&all(), &without_status),
            ["POST /v1.0/submissions answers 413, which the document lacks"]
        );
        let mut extra = document;
        extra["paths"]["/v1.0/runs/{id}"]["delete"] = serde_json::json!({"responses": {}});
        assert_eq!(
            gaps(&all(), &extra),
            ["the document has DELETE /v1.0/runs/{id}, which the router lacks"]
        );
    }
}
