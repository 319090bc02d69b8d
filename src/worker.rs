//! The worker: takes submissions from an interface and judges up to N at once, until shut down.
//! For each it claims the submission with `executing`, lets the judge run it and forwards the
//! messages the judge yields to the interface: worker → judge → messages → worker → store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::interface::{Interface, InterfaceError, Sent};
use crate::judge::Judge;
use crate::metrics;
use crate::protocol::{Body, CompileResult, Message, Submission};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Submissions judged at once.
    pub concurrency: usize,
    /// After shutdown is asked for, how long submissions in flight may take to finish before
    /// they are ended with `error`.
    pub drain_timeout: Duration,
}

impl Default for WorkerConfig {
    /// One submission per core; 60 s to drain.
    fn default() -> Self {
        WorkerConfig {
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// How judging one submission for an interface ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Another worker took it; nothing was sent but the refused `executing`.
    NotTaken,
    /// The terminal message that was sent.
    Finished(Body),
}

/// Messages a judging may run ahead of the interface that records them.
const AHEAD: usize = 32;

/// Judges `submission` for `interface`: claims it with `executing`, then forwards every message
/// the judge yields, in order, until the terminal one. `Err` when the interface failed, so the
/// sequence could not be completed; the judging then stops at its next message.
pub async fn judge_for(
    judge: &Judge,
    submission: &Submission,
    interface: &dyn Interface,
    cancel: &CancellationToken,
) -> Result<Outcome, InterfaceError> {
    let metrics = metrics::global();
    let id = submission.id.as_str();
    let claimed = match interface.send(&Message::new(id, Body::Executing)).await {
        Ok(claimed) => claimed,
        Err(e) => {
            metrics.count_store_error(e.interface, "report");
            return Err(e);
        }
    };
    if claimed == Sent::NotTaken {
        info!(submission_id = %id, "taken by another worker");
        metrics.count_submission("not_taken");
        return Ok(Outcome::NotTaken);
    }
    let _in_flight = metrics.in_flight();
    let started = Instant::now();
    let mut compile_error = false;
    let (tx, mut rx) = mpsc::channel::<Message>(AHEAD);
    let forward = async {
        // Returning drops `rx`: a judging still under way stops at its next message.
        while let Some(message) = rx.recv().await {
            if let Body::Compiled {
                result: CompileResult::Error,
                ..
            } = message.body
            {
                compile_error = true;
            }
            interface.send(&message).await?;
        }
        Ok::<_, InterfaceError>(())
    };
    let (ended, forwarded) = tokio::join!(judge.judge(submission, tx, cancel), forward);
    if let Err(e) = forwarded {
        metrics.count_store_error(e.interface, "report");
        metrics.count_submission("unreported");
        return Err(e);
    }
    // Only languages the registry knows label the series: the submission's own name is input.
    let language = judge
        .languages()
        .resolve(&submission.language)
        .map_or("unknown", |l| l.id.as_str());
    metrics.observe_judging(language, started.elapsed());
    match ended {
        Ok(end) => {
            metrics.count_submission(match &end {
                Body::Done { .. } if compile_error => "compile_error",
                Body::Done { .. } => "judged",
                Body::Invalid { .. } => "invalid",
                _ => "error",
            });
            Ok(Outcome::Finished(end))
        }
        // The receiver only goes away when forwarding failed, which returned above.
        Err(unheard) => Err(InterfaceError::permanent("worker", unheard.to_string())),
    }
}

pub struct Worker {
    interface: Arc<dyn Interface>,
    judge: Arc<Judge>,
    config: WorkerConfig,
}

/// Pauses after the interface failed to deliver a submission: 100 ms, doubling, at most 30 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

impl Worker {
    pub fn new(interface: Arc<dyn Interface>, judge: Arc<Judge>, config: WorkerConfig) -> Self {
        Worker {
            interface,
            judge,
            config,
        }
    }

    /// Judges submissions until `shutdown` fires (or the interface has no more), then stops
    /// taking new ones and waits for those in flight, ending stragglers with `error` once the
    /// drain deadline has passed.
    pub async fn run(&self, shutdown: CancellationToken) {
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let abort = CancellationToken::new();
        let mut failures = 0;
        info!(concurrency = self.config.concurrency, "worker started");
        loop {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let next = tokio::select! {
                next = self.interface.next() => next,
                _ = shutdown.cancelled() => break,
            };
            match next {
                Ok(Some(submission)) => {
                    failures = 0;
                    let (interface, judge, abort) =
                        (self.interface.clone(), self.judge.clone(), abort.clone());
                    tracker.spawn(async move {
                        let _permit = permit;
                        if let Err(e) = judge_for(&judge, &submission, &*interface, &abort).await {
                            error!(submission_id = %submission.id, error = %e, "could not report to the interface");
                        }
                    });
                }
                Ok(None) => {
                    info!("no more submissions");
                    break;
                }
                Err(e) => {
                    metrics::global().count_store_error(e.interface, "take");
                    failures += 1;
                    let pause = BACKOFF.delay(failures);
                    warn!(error = %e, retry_in = ?pause, "could not take a submission");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => break,
                    }
                }
            }
        }
        tracker.close();
        if !tracker.is_empty() {
            info!(in_flight = tracker.len(), "finishing submissions in flight");
        }
        if !shutdown.is_cancelled() {
            // The interface has no more submissions: let the last ones finish.
            tracker.wait().await;
        } else if tokio::time::timeout(self.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                in_flight = tracker.len(),
                "drain deadline passed; ending the rest with error"
            );
            abort.cancel();
            tracker.wait().await;
        }
        info!("worker stopped");
    }
}
