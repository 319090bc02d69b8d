//! A route of the API: its method and path, who may call it, the statuses it answers, and its
//! handler. Each resource lists its own ([`super::router`](mod@super::router) builds the routers from them, one
//! per [`Access`] behind its layers, and checks the OpenAPI document against them).

use axum::handler::Handler;
use axum::routing::{on, MethodFilter, MethodRouter};

use super::doc::Doc;
use super::AppState;

/// Where the main router serves the Judge0-compatible API.
pub const JUDGE0_PREFIX: &str = "/judge0";

/// Where the main router serves a registered worker's own calls (heartbeats, takes, reports).
pub const OWN_WORKER_PREFIX: &str = "/v1.0/workers/{id}";

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
    pub fn openapi(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Delete => "delete",
        }
    }
}

/// Who may call a route, and whether the rate limit counts it: the layers of the router that
/// serves it ([`super::router`](mod@super::router)), in front of its handler and of its path's 405 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, without a token (the status page, the OpenAPI document); rate limited.
    Open,
    /// The client token (`Authorization: Bearer`, or Judge0's `X-Auth-Token`); rate limited.
    Client,
    /// The worker token (registering, deregistering); rate limited.
    Worker,
    /// The worker token, not rate limited: a registered worker's own traffic (heartbeats,
    /// takes, reports), paced by the judge's work.
    OwnWorker,
}

impl Access {
    /// Whether a route of this access answers 401 without its token (when one is configured).
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the route table's test")
    )]
    pub fn needs_token(self) -> bool {
        self != Access::Open
    }

    /// Whether the rate limit counts a route of this access (429 over it).
    pub fn is_limited(self) -> bool {
        self != Access::OwnWorker
    }
}

/// One route: a method on a path (axum's syntax, which is OpenAPI's: `{id}`).
pub struct Route {
    pub verb: Verb,
    pub path: String,
    /// Who may call it ([`Access::Client`] unless [`Route::access`] says).
    pub access: Access,
    /// Every status the route answers: its successes, its handler's errors, and those of the
    /// layers in front of it (401 without its token, 429 over the rate limit, 413 for a body
    /// over the limit).
    pub answers: &'static [u16],
    pub handler: MethodRouter<AppState>,
    /// What the OpenAPI document says of it.
    pub doc: Doc,
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
            access: Access::Client,
            answers,
            handler: on(verb.filter(), handler),
            doc: Doc::default(),
        }
    }

    /// The route open to `access` instead of [`Access::Client`].
    pub fn access(mut self, access: Access) -> Route {
        self.access = access;
        self
    }

    /// The route as the OpenAPI document describes it.
    pub fn doc(mut self, doc: Doc) -> Route {
        self.doc = doc;
        self
    }

    /// The route mounted under `prefix` (the router nests its group there).
    pub fn under(mut self, prefix: &str) -> Route {
        self.path = format!("{prefix}{}", self.path);
        self
    }
}
