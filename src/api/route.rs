//! A route of the API: its method and path, the statuses it answers, and its handler. Each
//! resource lists its own ([`super::router`] builds the routers from them, and checks the
//! OpenAPI document against them).

use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};

use super::AppState;

/// The methods the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }

    /// Its name in an OpenAPI path item.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the OpenAPI document's test")
    )]
    pub fn openapi(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }
}

/// One route: a method on a path (axum's syntax, which is OpenAPI's: `{id}`).
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "verb and answers are read by the OpenAPI document's test"
    )
)]
pub struct Route {
    pub verb: Verb,
    pub path: String,
    /// Every status the route answers: its successes, its handler's errors, and those of the
    /// layers in front of it (401 without its token, 429 over the rate limit, 413 for a body
    /// over the limit).
    pub answers: &'static [u16],
    pub handler: MethodRouter<AppState>,
}

impl Route {
    pub fn new<H, T>(verb: Verb, path: &str, answers: &'static [u16], handler: H) -> Route
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Route {
            verb,
            path: path.to_owned(),
            answers,
            handler: on(verb.filter(), handler),
        }
    }

    /// The route mounted under `prefix`.
    pub fn under(mut self, prefix: &str) -> Route {
        self.path = format!("{prefix}{}", self.path);
        self
    }
}
