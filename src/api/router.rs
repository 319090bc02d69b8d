//! The API's routers, built from the route table: each resource's routes (method, path, who may
//! call them, the statuses they answer, handler). Each group of routes is a router with its own
//! layers ([`Access`]: the client or the worker token, the rate limit), the groups merged into
//! one; a registered worker's own routes are a router nested under [`OWN_WORKER_PREFIX`], and the
//! Judge0-compatible API one nested under [`JUDGE0_PREFIX`]. A test checks the OpenAPI document
//! against the table, so neither has a route the other lacks.

use std::collections::BTreeMap;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, MethodRouter};
use axum::Router;

use super::error::ApiError;
use super::route::{Access, Route};
pub use super::route::{JUDGE0_PREFIX, OWN_WORKER_PREFIX};
use super::{auth, limit, AppState};

/// Every route of the main router ([`router`]), at its full path (what the OpenAPI document is
/// built from).
pub fn all() -> Vec<Route> {
    let mut routes = main_routes();
    routes.extend(
        super::routes::own_worker_routes()
            .into_iter()
            .map(|route| route.under(OWN_WORKER_PREFIX)),
    );
    routes.extend(
        super::judge0::routes()
            .into_iter()
            .map(|route| route.under(JUDGE0_PREFIX)),
    );
    routes
}

/// The routes of the main router but the nested ones.
fn main_routes() -> Vec<Route> {
    let mut routes = super::routes::routes();
    routes.extend(super::openapi::routes(openapi_json));
    routes.extend(super::metrics::routes());
    routes.extend(super::workflows::routes());
    routes.extend(super::status::routes());
    routes.extend(super::runs::routes());
    routes
}

/// The OpenAPI document of [`all`] as JSON, built once.
fn openapi_json() -> &'static str {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JSON.get_or_init(|| {
        // Plain data: it always serialises.
        serde_json::to_string(&super::openapi::document(&all())).unwrap_or_default()
    })
}

/// `routes` as an axum router (one path's methods merged into one route).
fn table(routes: Vec<Route>) -> Router<AppState> {
    routes.into_iter().fold(Router::new(), |router, route| {
        router.route(&route.path, route.handler)
    })
}

/// `routes` as one router per [`Access`], each behind its layers, merged. A path whose methods
/// are in two groups (`GET /v1.0/workers` a client's, `POST` a worker's) answers another method
/// (405) behind the layers of the group merged last, the higher [`Access`]: a worker's, as any
/// call but a read under `/v1.0/workers` was before the groups were routers.
fn scoped(routes: Vec<Route>, state: &AppState) -> Router<AppState> {
    let mut groups: BTreeMap<Access, Vec<Route>> = BTreeMap::new();
    for route in routes {
        groups.entry(route.access).or_default().push(route);
    }
    groups
        .into_iter()
        .fold(Router::new(), |router, (access, routes)| {
            router.merge(guard(table(routes), access, state))
        })
}

/// `routes` (not empty) behind the layers of `access`: its token, then the rate limit.
fn guard(routes: Router<AppState>, access: Access, state: &AppState) -> Router<AppState> {
    let routes = match access {
        Access::Open => routes,
        Access::Client => routes.route_layer(from_fn_with_state(state.clone(), auth::client)),
        Access::Worker | Access::OwnWorker => {
            routes.route_layer(from_fn_with_state(state.clone(), auth::worker))
        }
    };
    if access.is_limited() {
        routes.route_layer(from_fn_with_state(state.clone(), limit::limit))
    } else {
        routes
    }
}

/// A path no route has: 404 behind the client token and the rate limit.
fn unknown(state: &AppState) -> MethodRouter<AppState> {
    any(not_found)
        .layer(from_fn_with_state(state.clone(), auth::client))
        .layer(from_fn_with_state(state.clone(), limit::limit))
}

/// What a path under [`OWN_WORKER_PREFIX`] answers where no route of it does (`answer`: a path
/// no route has, another method): behind the client token for a read and the worker token for
/// any other call ([`auth::client_reads_worker_calls`]), as before the workers' own routes were a
/// router; not rate limited.
fn own_worker_default<H, T>(state: &AppState, answer: H) -> impl Handler<T, AppState>
where
    H: Handler<T, AppState>,
    T: 'static,
{
    answer.layer(from_fn_with_state(
        state.clone(),
        auth::client_reads_worker_calls,
    ))
}

/// The API's routes: every group's ([`Access`]) behind its layers, the nested ones included.
pub fn router(state: AppState) -> Router {
    let own_worker = scoped(super::routes::own_worker_routes(), &state)
        .method_not_allowed_fallback(own_worker_default(&state, method_not_allowed))
        .fallback(own_worker_default(&state, not_found));
    let judge0 = scoped(super::judge0::routes(), &state);
    let routes = scoped(main_routes(), &state)
        .nest(OWN_WORKER_PREFIX, own_worker)
        .nest(JUDGE0_PREFIX, judge0);
    finish(routes, state)
}

/// The Judge0-compatible API at the root, behind the same layers as [`router`]'s.
pub fn judge0_router(state: AppState) -> Router {
    finish(scoped(super::judge0::routes(), &state), state)
}

/// `routes` with the fallback ([`unknown`]) and the body limit.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(unknown(&state))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .with_state(state)
}

async fn method_not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
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
    use crate::api::auth::Token;
    use crate::api::limit::RateLimit;
    use crate::api::openapi::served_document;
    use crate::api::ApiConfig;
    use crate::store::memory::MemoryBackend;
    use crate::store::memory::MemoryInterface;

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

    #[test]
    fn each_route_answers_the_statuses_of_its_layers() {
        for route in all() {
            let name = format!("{} {}", route.verb.openapi().to_uppercase(), route.path);
            assert_eq!(
                route.answers.contains(&401),
                route.access.needs_token(),
                "{name} ({:?}) and 401",
                route.access
            );
            assert_eq!(
                route.answers.contains(&429),
                route.access.is_limited(),
                "{name} ({:?}) and 429",
                route.access
            );
        }
    }

    /// A router with both tokens (`client`, `worker`) and a rate limit of one call per client
    /// (a burst of 1, a token back every 1000 s).
    fn guarded_router() -> Router {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let config = ApiConfig {
            client_token: Some(Token::new("client")),
            worker_token: Some(Token::new("worker")),
            rate_limit: Some(RateLimit {
                per_second: 0.001,
                burst: 1,
            }),
            ..ApiConfig::default()
        };
        crate::api::router(AppState::new(backend, config, CancellationToken::new()))
    }

    /// The status of `method uri` with the bearer `token`.
    async fn status(router: &Router, method: &str, uri: &str, token: Option<&str>) -> u16 {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.status().as_u16()
    }

    #[tokio::test]
    async fn each_group_of_routes_and_its_unknown_paths_are_behind_its_layers() {
        // Which token a call needs, whether it is a route or not: the first answer with it, and
        // with the other token (a fresh router each time: the rate limit allows one call).
        for (method, uri, token, with, with_the_other) in [
            // Open.
            ("GET", "/v1.0/openapi.json", None, 200, 200),
            ("POST", "/v1.0/openapi.json", None, 405, 405),
            // The client's: routes, other methods, unknown paths, Judge0's.
            ("GET", "/v1.0/operations", Some("client"), 200, 401),
            ("PUT", "/v1.0/submissions", Some("client"), 405, 401),
            ("GET", "/v1.0/nothing", Some("client"), 404, 401),
            ("POST", "/nothing", Some("client"), 404, 401),
            ("GET", "/judge0/statuses", Some("client"), 200, 401),
            ("GET", "/judge0/nothing", Some("client"), 404, 401),
            ("GET", "/v1.0/workers", Some("client"), 200, 401),
            ("GET", "/v1.0/workers/w", Some("client"), 404, 401),
            ("GET", "/v1.0/workers/w/nothing", Some("client"), 404, 401),
            // The workers': registering, deregistering, another method on their paths, their
            // own calls and unknown paths under them.
            ("DELETE", "/v1.0/workers/w", Some("worker"), 404, 401),
            ("PUT", "/v1.0/workers", Some("worker"), 405, 401),
            ("PUT", "/v1.0/workers/w", Some("worker"), 405, 401),
            (
                "POST",
                "/v1.0/workers/w/heartbeat",
                Some("worker"),
                404,
                401,
            ),
            ("GET", "/v1.0/workers/w/take", Some("client"), 405, 401),
            ("POST", "/v1.0/workers/w/nothing", Some("worker"), 404, 401),
            ("PUT", "/v1.0/workers/w/take", Some("worker"), 405, 401),
        ] {
            let other = match token {
                Some("client") => Some("worker"),
                Some(_) => Some("client"),
                None => None,
            };
            let name = format!("{method} {uri}");
            assert_eq!(
                status(&guarded_router(), method, uri, token).await,
                with,
                "{name} with {token:?}"
            );
            assert_eq!(
                status(&guarded_router(), method, uri, other).await,
                with_the_other,
                "{name} with {other:?}"
            );
            if token.is_some() {
                assert_eq!(
                    status(&guarded_router(), method, uri, None).await,
                    401,
                    "{name} without a token"
                );
            }
        }
    }

    #[tokio::test]
    async fn another_method_is_405_with_the_methods_allowed_in_every_group() {
        for (uri, token, allowed) in [
            ("/v1.0/submissions", Some("client"), "POST"),
            ("/v1.0/openapi.json", None, "GET,HEAD"),
            ("/v1.0/workers/w/take", Some("worker"), "POST"),
        ] {
            let mut request = Request::builder().method("PATCH").uri(uri);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let response = guarded_router()
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{uri}");
            assert_eq!(response.headers()["allow"], allowed, "{uri}");
        }
    }

    #[tokio::test]
    async fn a_workers_own_calls_are_not_rate_limited_and_the_rest_are() {
        for (method, uri, token, limited) in [
            ("GET", "/", None, true),
            ("GET", "/v1.0/operations", Some("client"), true),
            ("GET", "/v1.0/nothing", Some("client"), true),
            ("GET", "/judge0/nothing", Some("client"), true),
            ("DELETE", "/v1.0/workers/w", Some("worker"), true),
            ("PUT", "/v1.0/workers", Some("worker"), true),
            ("POST", "/v1.0/workers/w/heartbeat", Some("worker"), false),
            ("GET", "/v1.0/workers/w/take", Some("client"), false),
            ("PUT", "/v1.0/workers/w/take", Some("worker"), false),
            ("POST", "/v1.0/workers/w/nothing", Some("worker"), false),
            ("GET", "/v1.0/workers/w/nothing", Some("client"), false),
        ] {
            let router = guarded_router();
            let first = status(&router, method, uri, token).await;
            assert_ne!(first, 429, "{method} {uri}");
            let second = status(&router, method, uri, token).await;
            let expected = if limited { 429 } else { first };
            assert_eq!(second, expected, "{method} {uri} again");
        }
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
