//! The HTTP operations API (`executioner serve`): submissions are accepted as long-running
//! operations (`202 Accepted` + `Operation-Location`), polled, cancelled while not started,
//! listed with OData `$filter`, and their messages read or streamed as Server-Sent Events.
//!
//! The API feeds an in-memory interface; a local worker takes submissions from it through
//! [`AppState::worker_interface`], and the operations table follows the interface's messages.

mod error;
pub mod filter;
pub mod operations;
mod routes;
pub mod time;
pub mod workers;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

pub use error::ApiError;
pub use operations::{Operations, Status};

use crate::interface::{Interface, MemoryInterface};
use crate::language::Registry;
use crate::problem::ProblemStore;

/// API settings; defaults in [`ApiConfig::default`].
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `sourceCode` accepted (413 beyond).
    pub max_source_bytes: usize,
    /// Operations not started yet beyond which new submissions get 503.
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
    /// Seconds between the heartbeats registered workers are expected to send.
    pub heartbeat_interval_secs: u64,
    /// Heartbeats a worker may miss before it is listed as unresponsive.
    pub missed_heartbeats: u32,
}

impl Default for ApiConfig {
    /// 1 MiB bodies, 256 KiB sources, 1000 queued operations, poll after 1 s, pages of 50
    /// (at most 1000), no problem or language checks, heartbeats every 10 s, unresponsive after
    /// 3 missed.
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 1 << 20,
            max_source_bytes: 256 << 10,
            max_queued: 1000,
            retry_after_secs: 1,
            page_size: (50, 1000),
            problems: None,
            languages: None,
            heartbeat_interval_secs: 10,
            missed_heartbeats: 3,
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    interface: Arc<MemoryInterface>,
    operations: Arc<Operations>,
    config: Arc<ApiConfig>,
    workers: Arc<workers::Workers>,
    shutdown: CancellationToken,
}

impl AppState {
    /// `shutdown` ends the message follower and open event streams.
    pub fn new(
        interface: Arc<MemoryInterface>,
        config: ApiConfig,
        shutdown: CancellationToken,
    ) -> Self {
        AppState {
            interface,
            operations: Arc::new(Operations::default()),
            workers: Arc::new(workers::Workers::new(
                i64::try_from(config.heartbeat_interval_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
                i64::from(config.missed_heartbeats),
            )),
            config: Arc::new(config),
            shutdown,
        }
    }

    pub fn operations(&self) -> &Arc<Operations> {
        &self.operations
    }

    pub fn interface(&self) -> &Arc<MemoryInterface> {
        &self.interface
    }

    /// The interface a local worker must use: it skips cancelled operations.
    pub fn worker_interface(&self) -> Arc<dyn Interface> {
        Arc::new(operations::Gate {
            inner: self.interface.clone(),
            operations: self.operations.clone(),
        })
    }

    /// Starts applying the interface's messages to the operations table, until shutdown.
    /// Subscribes before returning, so no message sent after this call is missed.
    pub fn follow(&self) -> JoinHandle<()> {
        let mut messages = self.interface.subscribe();
        let (interface, operations, shutdown) = (
            self.interface.clone(),
            self.operations.clone(),
            self.shutdown.clone(),
        );
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    m = messages.recv() => m,
                    _ = shutdown.cancelled() => return,
                };
                match received {
                    Ok(message) => operations.apply(&message),
                    Err(RecvError::Lagged(missed)) => {
                        warn!(missed, "operations table lagged; reading the log again");
                        operations.resync(&interface);
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        })
    }
}

/// The API's routes, under `/v1.0`.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves the API on `listener` until `shutdown` fires, then finishes the requests in flight
/// (event streams end on the state's shutdown token).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
