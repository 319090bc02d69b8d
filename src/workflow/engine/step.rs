//! What a step does (the [`Step`] trait), how its failure is described, and the policies the
//! engine applies to it (retries, pause on failure).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::StepContext;
use crate::backoff::Backoff;

/// The work of one step. Its result (any JSON) is kept as the step's result; a failure is kept
/// as its error. Neither a failure nor a panic brings the engine down.
#[async_trait]
pub trait Step: Send + Sync + 'static {
    /// Does the work. Should end soon after `ctx.cancel()` fires (interrupt, shutdown).
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError>;
}

/// Whether trying again may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The infrastructure failed (Docker, the store, the network): try again.
    Retryable,
    /// Trying again would give the same failure.
    Fatal,
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct StepError {
    pub kind: FailureKind,
    pub reason: String,
}

impl StepError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Retryable,
            reason: reason.into(),
        }
    }

    pub fn fatal(reason: impl Into<String>) -> Self {
        StepError {
            kind: FailureKind::Fatal,
            reason: reason.into(),
        }
    }
}

/// How often a step is tried when it fails with a retryable error, and how long to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each next one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// One attempt: no retry.
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// `attempts` in all, waiting 1 s, 2 s, 4 s ... (at most 60 s) between them.
    pub fn attempts(attempts: u32) -> Self {
        RetryPolicy {
            attempts: attempts.max(1),
            ..RetryPolicy::default()
        }
    }

    pub fn with_backoff(self, first: Duration, max: Duration) -> Self {
        RetryPolicy {
            first_backoff: first,
            max_backoff: max,
            ..self
        }
    }

    /// The wait after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        Backoff::new(self.first_backoff, self.max_backoff).delay(attempt)
    }
}

/// What happens when the last attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The step is Failed (its failure successors may run).
    #[default]
    Fail,
    /// The step is PausedDueToFailure until an operator resumes or reruns it.
    Pause,
}

/// A step as added to a workflow: its id, tags, work and policies.
#[derive(Clone)]
pub struct StepSpec {
    pub(crate) id: String,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) work: Arc<dyn Step>,
    pub(crate) retry: RetryPolicy,
    pub(crate) on_failure: OnFailure,
}

impl StepSpec {
    pub fn new(id: impl Into<String>, work: Arc<dyn Step>) -> Self {
        StepSpec {
            id: id.into(),
            tags: BTreeMap::new(),
            work,
            retry: RetryPolicy::default(),
            on_failure: OnFailure::Fail,
        }
    }

    /// Adds the tag `key=value`, by which control calls select steps.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }
}

/// A step made of an async closure.
pub struct FnStep<F>(F);

/// Wraps `f` as a step.
pub fn step_fn<F, Fut>(f: F) -> Arc<dyn Step>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    Arc::new(FnStep(f))
}

#[async_trait]
impl<F, Fut> Step for FnStep<F>
where
    F: Fn(StepContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, StepError>> + Send + 'static,
{
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError> {
        (self.0)(ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let policy = RetryPolicy::attempts(10)
            .with_backoff(Duration::from_millis(100), Duration::from_millis(500));
        let waits: Vec<_> = (1..=5).map(|a| policy.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(500));
        assert_eq!(RetryPolicy::attempts(0).attempts, 1);
    }
}
