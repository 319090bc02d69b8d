//! The HTTP operations API (`executioner serve`): submissions, rejudges and problem
//! validations are accepted as long-running operations (`202 Accepted` +
//! `Operation-Location`), polled, cancelled while not started, listed with OData `$filter`;
//! a submission's messages are read or streamed as Server-Sent Events; workflows are
//! controlled step by step; remote workers register, take submissions and report.
//!
//! Submissions live in a [`Backend`] (`crate::store`): in memory (the default), or in the
//! Postgres store shared with `executioner worker --interface postgres` processes. Local workers
//! take submissions from [`AppState::worker_interface`].

mod admission;
pub mod auth;
mod callback_url;
pub mod callbacks;
mod doc;
mod error;
mod judge0;
pub mod limit;
mod metrics;
mod openapi;
pub mod operations;
mod respond;
mod route;
mod router;
mod routes;
mod runs;
pub mod status;
mod types;
/// The API's timestamps; the module is shared with the workflows.
pub use crate::time;
pub mod workers;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::interface::Interface;
use crate::language::Registry;
use crate::problem::ProblemStore;
use crate::store::{Backend, Status};
use crate::token::Token;
use crate::workflow::Runner;
use workers::Workers;

/// API settings; defaults in [`ApiConfig::default`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `sourceCode` accepted (413 beyond).
    pub max_source_bytes: usize,
    /// Submissions waiting for a worker beyond which new ones get 503.
    pub max_queued: usize,
    /// Seconds a client is told to wait before polling (`Retry-After`).
    pub retry_after_secs: u64,
    /// Operations per page of `GET /operations` when `$top` is not given, and the most allowed.
    pub page_size: (usize, usize),
    /// When set, submissions for problems it does not have are refused and percentages are
    /// computed from the problem's test count.
    pub problems: Option<Arc<ProblemStore>>,
    /// When set, submissions in languages it does not know are refused.
    pub languages: Option<Arc<Registry>>,
    /// How often registered workers are expected to send a heartbeat.
    pub heartbeat_interval: Duration,
    /// Heartbeats a worker may miss before it is unresponsive and its submissions are queued
    /// again.
    pub missed_heartbeats: u32,
    /// Longest wait a worker may ask for when it takes a submission.
    pub max_take_wait: Duration,
    /// Attempts per judging of a rejudge or validation when the request does not say.
    pub workflow_attempts: u32,
    /// Judgings at once of one rejudge or validation when the request does not say.
    pub workflow_concurrency: usize,
    /// How fast one client may call the API; `None`: no limit.
    pub rate_limit: Option<limit::RateLimit>,
    /// The bearer token workers must show to register, heartbeat, take and report; `None`:
    /// any client may act as a worker.
    pub worker_token: Option<Token>,
    /// The bearer token every other call needs (submitting, polling, rejudging...); `None`:
    /// any client may.
    pub client_token: Option<Token>,
    /// Where a rejudge may send its webhook (SSRF guard): `host` (any port) or `host:port`,
    /// compared with the URL's host as written. Empty: webhooks are refused. Submissions'
    /// callbacks go to the same hosts.
    pub webhook_hosts: Vec<String>,
    /// How submissions' callbacks are signed and sent (none without a secret).
    pub callbacks: callbacks::CallbackConfig,
    /// Limits of an ad-hoc run that does not give its own.
    pub run_default: RunLimits,
    /// The most an ad-hoc run may ask for (`serve --run-max-time`, `--run-max-memory`).
    pub run_max: RunLimits,
    /// The deadline of submissions and runs that do not give `deadlineSeconds`
    /// (`serve --deadline-seconds`); `None`: none.
    pub deadline: Option<Duration>,
}

/// CPU time and memory limits of an ad-hoc run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    pub time_ms: u64,
    pub memory_kb: u64,
}

impl Default for ApiConfig {
    /// 1 MiB bodies, 256 KiB sources, 1000 queued submissions, poll after 1 s, pages of 50
    /// (at most 1000), no problem or language checks, heartbeats every 10 s, unresponsive after
    /// 3 missed, workers wait at most 30 s for a submission, workflows judge 2 at once with 3
    /// attempts each, no rate limit, no tokens, no webhooks, no callbacks
    /// ([`callbacks::CallbackConfig::default`]); ad-hoc runs get 2 s and 256 MiB unless they
    /// ask, and may ask for up to 10 s and 512 MiB; no deadline unless asked for.
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_source_bytes: 256 << 10,
            max_queued: 1000,
            retry_after_secs: 1,
            page_size: (50, 1000),
            problems: None,
            languages: None,
            heartbeat_interval: Duration::from_secs(10),
            missed_heartbeats: 3,
            max_take_wait: Duration::from_secs(30),
            workflow_attempts: 3,
            workflow_concurrency: 2,
            rate_limit: None,
            worker_token: None,
            client_token: None,
            webhook_hosts: Vec::new(),
            callbacks: callbacks::CallbackConfig::default(),
            run_default: RunLimits {
                time_ms: 2_000,
                memory_kb: 256 << 10,
            },
            run_max: RunLimits {
                time_ms: 10_000,
                memory_kb: 512 << 10,
            },
            deadline: None,
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    backend: Arc<dyn Backend>,
    config: Arc<ApiConfig>,
    workers: Arc<Workers>,
    /// Rejudges and validations; `None`: the service has no judge of its own for them (their
    /// endpoints answer 503).
    workflows: Option<Arc<Runner>>,
    limiter: Option<Arc<limit::Limiter>>,
    /// Submissions the service's own worker judges at once; `None`: it has none (shown on the
    /// status page).
    local_worker: Option<usize>,
    shutdown: CancellationToken,
}

impl AppState {
    /// `shutdown` ends the background tasks and open event streams.
    pub fn new(backend: Arc<dyn Backend>, config: ApiConfig, shutdown: CancellationToken) -> Self {
        AppState {
            workers: Arc::new(Workers::new(
                backend.clone(),
                config.heartbeat_interval,
                config.missed_heartbeats,
            )),
            backend,
            limiter: config
                .rate_limit
                .map(|rate| Arc::new(limit::Limiter::new(rate))),
            config: Arc::new(config),
            workflows: None,
            local_worker: None,
            shutdown,
        }
    }

    /// Serves rejudges and validations with `runner` (built on this backend's
    /// [`Backend::workflow_stores`]).
    pub fn with_workflows(mut self, runner: Arc<Runner>) -> Self {
        self.workflows = Some(runner);
        self
    }

    /// Says that a worker of this process judges `concurrency` submissions at once.
    pub fn with_local_worker(mut self, concurrency: usize) -> Self {
        self.local_worker = Some(concurrency);
        self
    }

    pub fn local_worker(&self) -> Option<usize> {
        self.local_worker
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    pub fn workers(&self) -> &Arc<Workers> {
        &self.workers
    }

    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    pub fn workflows(&self) -> Option<&Arc<Runner>> {
        self.workflows.as_ref()
    }

    /// The interface a local worker uses.
    pub fn worker_interface(&self) -> Arc<dyn Interface> {
        self.backend.clone().worker_interface()
    }

    /// Starts the registry's sweep (unresponsive workers' submissions are queued again) and the
    /// sending of submissions' callbacks, until shutdown.
    pub fn start(&self) -> JoinHandle<()> {
        let sweep = self.workers.watch(self.shutdown.clone());
        let callbacks = callbacks::follow(
            self.backend.clone(),
            self.config.clone(),
            self.shutdown.clone(),
        );
        let deadlines = tokio::spawn(expire_deadlines(
            self.backend.clone(),
            self.shutdown.clone(),
        ));
        tokio::spawn(async move {
            let (sweep, callbacks, deadlines) = tokio::join!(sweep, callbacks, deadlines);
            for ended in [sweep, callbacks, deadlines] {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "a background task of the API failed");
                }
            }
        })
    }
}

/// How often operations past their deadline are ended.
const DEADLINE_SWEEP: Duration = Duration::from_millis(500);

/// Ends operations past their deadline ([`Intake::expire`]) every [`DEADLINE_SWEEP`] until
/// `shutdown`.
///
/// [`Intake::expire`]: crate::store::Intake::expire
async fn expire_deadlines(backend: Arc<dyn Backend>, shutdown: CancellationToken) {
    loop {
        match backend.expire(time::now_ms()).await {
            Ok(ended) => {
                for id in ended {
                    tracing::info!(submission_id = %id, "operation timed out");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot end the operations past their deadline"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DEADLINE_SWEEP) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The API's routes, under `/v1.0`.
pub fn router(state: AppState) -> Router {
    router::router(state)
}

/// The Judge0-compatible API at the root (`serve --judge0-listen`): the routes the main router
/// has under `/judge0`, with the same token, rate limit and body limit.
pub fn judge0_router(state: AppState) -> Router {
    router::judge0_router(state)
}

/// Serves the Judge0-compatible API ([`judge0_router`]) on `listener` until `shutdown` fires.
pub async fn serve_judge0(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = judge0_router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Serves the API on `listener` until `shutdown` fires, then finishes the requests in flight
/// (event streams end on the state's shutdown token) and the claims they started.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let workers = state.workers.clone();
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    // A take cut short left its claim to finish (and give the submission back) on its own.
    workers.drain().await;
    served
}
