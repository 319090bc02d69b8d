//! Interfaces: the stores submissions come from and messages go to (SPEC §6), behind one trait;
//! and the HTTP interface, through which a worker judges for a remote `executioner serve`.

pub mod http;
pub mod state;

use async_trait::async_trait;

use crate::protocol::{Message, Submission};

pub use http::{HttpConfig, HttpInterface};
pub use state::SubmissionState;

/// What became of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Recorded. For `executing`, the submission is now this worker's.
    Recorded,
    /// Only for `executing`: another worker already took the submission; drop it silently.
    NotTaken,
}

/// A failure of the store itself (connection lost, rejected write). Retryable.
#[derive(Debug, thiserror::Error)]
#[error("interface {interface}: {reason}")]
pub struct InterfaceError {
    pub interface: &'static str,
    pub reason: String,
}

/// A store of submissions and messages.
#[async_trait]
pub trait Interface: Send + Sync + 'static {
    /// The next pending submission, waiting until there is one. `Ok(None)` when no submission
    /// will ever come again. Cancel-safe: dropping the future loses no submission. A
    /// submission returned here is not yet taken; sending `executing` takes it.
    async fn next(&self) -> Result<Option<Submission>, InterfaceError>;

    /// Records one message. Messages of one submission are sent strictly in order.
    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError>;
}

/// What a worker is called in a shared store unless told otherwise: `host:pid`.
pub(crate) fn worker_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{host}:{}", std::process::id())
}

/// Runs `beat` every `period` until `stop` fires: a shared store's lease heartbeat. Cancellable
/// mid-beat, so a beat waiting for a lost server does not hold up shutdown.
pub(crate) async fn every<F, Fut>(
    period: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    mut beat: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = async {
                ticks.tick().await;
                beat().await;
            } => {}
            _ = stop.cancelled() => break,
        }
    }
}
