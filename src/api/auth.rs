//! Tokens (`serve --worker-token`, `--client-token`), each sent as `Authorization: Bearer`:
//! - the worker token for registering, heartbeats, takes, reports and deregistering, so that
//!   only the operator's workers can take submissions or report verdicts;
//! - the client token for everything else (submitting, polling, cancelling, rejudging,
//!   listing workers...), so that only the contest platform drives the judge.
//!
//! Clients of the Judge0-compatible API may send the client token as Judge0's `X-Auth-Token`
//! header instead. The OpenAPI document and the status page (`GET /`, which holds no data) stay
//! open. A token not configured is not checked (a service on loopback, tests).
//!
//! Which routes need which token is not decided here from their paths: each group of routes is
//! a router with its middleware ([`client`] or [`worker`]) as a layer (see `api::router`
//! and `route::Access`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// The tokens' type, shared with the remote worker's client (`interface::http`).
pub use crate::token::Token;

/// Compares without returning early, so the time taken says nothing of where they differ.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// The bearer token of `request`, if it has one.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at(value.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// The token of Judge0's `X-Auth-Token` header, which the Judge0-compatible API's clients send
/// (accepted for the client token only).
fn judge0_token(request: &Request) -> Option<&[u8]> {
    request
        .headers()
        .get("x-auth-token")
        .map(|value| value.as_bytes().trim_ascii())
}

/// Middleware of the client routes' router (`Access::Client`): the client
/// token, as `Authorization: Bearer` or Judge0's `X-Auth-Token`, when configured; else 401.
pub async fn client(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.client_token else {
        return next.run(request).await;
    };
    let is_expected = |token: &[u8]| same(token, expected.expose().as_bytes());
    if judge0_token(&request).is_some_and(is_expected) || bearer(&request).is_some_and(is_expected)
    {
        return next.run(request).await;
    }
    refuse(&request, "this API needs the service's client token")
}

/// Middleware of the workers' routers (`Access::Worker` and
/// `Access::OwnWorker`): the worker token, as `Authorization: Bearer`, when
/// configured; else 401.
pub async fn worker(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.config.worker_token else {
        return next.run(request).await;
    };
    if bearer(&request).is_some_and(|token| same(token, expected.expose().as_bytes())) {
        return next.run(request).await;
    }
    refuse(&request, "worker calls need the service's worker token")
}

/// Middleware of what a registered worker's router answers where it has no route (another path
/// under it, another method): a read (`GET`) needs the client token, like the API's other reads,
/// and any other call the worker token.
pub async fn client_reads_worker_calls(
    state: State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() == Method::GET {
        client(state, request, next).await
    } else {
        worker(state, request, next).await
    }
}

/// 401 with `WWW-Authenticate: Bearer`, saying which token `request` lacked (`who`).
fn refuse(request: &Request, who: &str) -> Response {
    tracing::warn!(method = %request.method(), path = %request.uri().path(), "a call without its token was refused");
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        format!("{who} (Authorization: Bearer TOKEN)"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_the_bearer_scheme_and_compared_whole() {
        let with = |value: &str| {
            let mut r = Request::new(axum::body::Body::empty());
            r.headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer(&r).map(<[u8]>::to_vec)
        };
        assert_eq!(with("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(with("bearer  abc "), Some(b"abc".to_vec()));
        assert_eq!(with("Basic abc"), None);
        assert_eq!(with("Bearerabc"), None);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abd", b"abc"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"", b"abc"));
        assert_eq!(format!("{:?}", Token::new("s3cret")), "Token(***)");
    }
}
