//! Interfaces: the stores submissions come from and messages go to (SPEC §6), behind one trait;
//! and the HTTP interface, through which a worker judges for a remote `executioner serve`.

pub mod http;
pub mod lease;
pub mod state;

use async_trait::async_trait;

use crate::protocol::{Message, Submission};

pub use http::{HttpConfig, HttpInterface};
pub use lease::{LeaseStore, Leased};
pub use state::SubmissionState;

/// What became of a sent message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Recorded. For `executing`, the submission is now this worker's.
    Recorded,
    /// Only for `executing`: another worker already took the submission; drop it silently.
    NotTaken,
}

/// Whether an [`InterfaceError`] may go away if the same thing is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The store could not be reached, was overloaded or asked to try again (a lost
    /// connection, a restarting server, a timeout): the same request may succeed later.
    Transient,
    /// The store answered, and would answer the same again (a lost claim, a rejected or
    /// malformed request, an unreadable record).
    Permanent,
}

/// A failure of the store itself (connection lost, rejected write). Whether it is worth
/// another try is decided once, where the driver's error is at hand ([`ErrorKind`]); that
/// error, when there is one, is kept as the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[error("interface {interface}: {reason}")]
pub struct InterfaceError {
    pub interface: &'static str,
    pub reason: String,
    pub kind: ErrorKind,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl InterfaceError {
    /// A failure of `interface` that may go away if tried again.
    pub fn transient(interface: &'static str, reason: impl Into<String>) -> Self {
        InterfaceError {
            interface,
            reason: reason.into(),
            kind: ErrorKind::Transient,
            source: None,
        }
    }

    /// A failure of `interface` that trying again would not mend.
    pub fn permanent(interface: &'static str, reason: impl Into<String>) -> Self {
        InterfaceError {
            kind: ErrorKind::Permanent,
            ..Self::transient(interface, reason)
        }
    }

    /// The same failure, caused by `source` (the driver's error).
    pub fn caused_by(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        InterfaceError {
            source: Some(Box::new(source)),
            ..self
        }
    }

    /// Whether trying again may help.
    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
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
