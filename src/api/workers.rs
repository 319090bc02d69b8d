//! The worker registry (seed 004's central/edge reporting): remote workers (e.g. `executioner
//! worker --interface http`, `crate::interface::http`) register, send heartbeats (with their
//! status and last error), take submissions from the service, report each message back and
//! deregister when they stop. A worker that missed too many heartbeats is unresponsive (the
//! seed's "zombie"): the submissions it holds are queued again for another worker, and what it
//! reports later about them is refused.
//!
//! The service holds the claims of the submissions it hands out (through the backend's worker
//! interface, like a local worker), so the store's own recovery (e.g. Postgres leases) keeps
//! working while the service lives; the registry decides when a remote worker is gone.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backend::{Backend, BackendError};
use super::time::now_ms;
use crate::interface::{Interface, Sent};
use crate::protocol::{Body, Message, Submission};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerStatus {
    Active,
    Unresponsive,
}

#[derive(Debug, Clone)]
pub struct RegisteredWorker {
    pub id: String,
    pub name: String,
    pub concurrency: Option<u32>,
    pub registered_ms: i64,
    pub last_heartbeat_ms: i64,
    /// What the worker last said of itself (free text, e.g. "idle", "judging 2").
    pub reported_status: Option<String>,
    /// The last error it reported, and when.
    pub last_error: Option<(String, i64)>,
    /// Submissions it holds.
    pub running: BTreeSet<String>,
    /// Declared unresponsive by the sweep (its submissions were queued again).
    pub lost: bool,
}

/// What a worker says with a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub status: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no worker with id {0:?}: register first")]
    UnknownWorker(String),
    #[error("worker {worker} does not hold submission {submission} (it was queued again after the worker stopped answering, or never given to it)")]
    NotHeld { worker: String, submission: String },
    #[error(transparent)]
    Store(#[from] BackendError),
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, RegisteredWorker>,
    /// Submission id -> who holds it.
    holders: HashMap<String, Holder>,
}

/// The worker holding a submission, and the last message it reported about it.
struct Holder {
    worker: String,
    /// A message equal to this one is the same report sent again (the worker retried after
    /// losing the answer): no two consecutive messages of a submission are ever equal.
    last: Option<Message>,
}

/// Registered workers and what they hold. A worker is unresponsive once `interval * missed`
/// passed without a heartbeat (or a report).
pub struct Workers {
    registry: Mutex<Registry>,
    interval: Duration,
    missed: u32,
    backend: Arc<dyn Backend>,
    interface: Arc<dyn Interface>,
}

impl Workers {
    pub fn new(backend: Arc<dyn Backend>, interval: Duration, missed: u32) -> Self {
        Workers {
            registry: Mutex::new(Registry::default()),
            interval,
            missed,
            interface: backend.clone().worker_interface(),
            backend,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn register(&self, name: String, concurrency: Option<u32>) -> RegisteredWorker {
        let now = now_ms();
        let worker = RegisteredWorker {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            concurrency,
            registered_ms: now,
            last_heartbeat_ms: now,
            reported_status: None,
            last_error: None,
            running: BTreeSet::new(),
            lost: false,
        };
        self.registry()
            .workers
            .insert(worker.id.clone(), worker.clone());
        info!(worker_id = %worker.id, name = %worker.name, "worker registered");
        worker
    }

    /// Records a heartbeat (and what it reports); `None` for an unknown worker.
    pub fn heartbeat(&self, id: &str, report: Report) -> Option<RegisteredWorker> {
        let now = now_ms();
        let mut registry = self.registry();
        let worker = registry.workers.get_mut(id)?;
        worker.last_heartbeat_ms = now;
        if worker.lost {
            info!(worker_id = %id, "an unresponsive worker answers again");
            worker.lost = false;
        }
        if let Some(status) = report.status {
            worker.reported_status = Some(status);
        }
        if let Some(error) = report.error {
            warn!(worker_id = %id, error = %error, "a worker reports an error");
            worker.last_error = Some((error, now));
        }
        Some(worker.clone())
    }

    /// Every worker, oldest registration first.
    pub fn all(&self) -> Vec<RegisteredWorker> {
        let mut all: Vec<_> = self.registry().workers.values().cloned().collect();
        all.sort_by_key(|w| (w.registered_ms, w.id.clone()));
        all
    }

    fn silent_too_long(&self, worker: &RegisteredWorker, now_ms: i64) -> bool {
        let allowed = self.interval.saturating_mul(self.missed);
        let allowed = i64::try_from(allowed.as_millis()).unwrap_or(i64::MAX);
        now_ms - worker.last_heartbeat_ms > allowed
    }

    pub fn status_at(&self, worker: &RegisteredWorker, now_ms: i64) -> WorkerStatus {
        if worker.lost || self.silent_too_long(worker, now_ms) {
            WorkerStatus::Unresponsive
        } else {
            WorkerStatus::Active
        }
    }

    /// Gives worker `id` the next submission, waiting up to `wait` for one; `None` if none
    /// came. The submission is claimed (`executing`) on the worker's behalf.
    pub async fn take(
        &self,
        id: &str,
        wait: Duration,
    ) -> Result<Option<Submission>, DispatchError> {
        self.heartbeat(id, Report::default())
            .ok_or_else(|| DispatchError::UnknownWorker(id.to_owned()))?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            // Only the wait is bounded: a claim under way is not cut short.
            let next = match tokio::time::timeout_at(until, self.interface.next()).await {
                Ok(next) => next.map_err(BackendError::from)?,
                Err(_) => return Ok(None),
            };
            let Some(submission) = next else {
                return Ok(None);
            };
            let claim = Message::new(&submission.id, Body::Executing);
            match self
                .interface
                .send(&claim)
                .await
                .map_err(BackendError::from)?
            {
                Sent::NotTaken => continue,
                Sent::Recorded => {}
            }
            {
                let mut registry = self.registry();
                if let Some(worker) = registry.workers.get_mut(id) {
                    worker.running.insert(submission.id.clone());
                    let holder = Holder {
                        worker: id.to_owned(),
                        last: None,
                    };
                    registry.holders.insert(submission.id.clone(), holder);
                    info!(worker_id = %id, submission_id = %submission.id, "submission given to a worker");
                    return Ok(Some(submission));
                }
            }
            // The worker deregistered while its claim was under way: nobody will judge it.
            self.requeue(&submission.id, id).await;
            return Err(DispatchError::UnknownWorker(id.to_owned()));
        }
    }

    /// Records a message worker `id` sends about a submission it holds. `executing` was sent
    /// when the worker took it, and a message equal to the one before is that one sent again:
    /// either changes nothing.
    pub async fn report(&self, id: &str, message: &Message) -> Result<(), DispatchError> {
        {
            let mut registry = self.registry();
            let Some(worker) = registry.workers.get_mut(id) else {
                return Err(DispatchError::UnknownWorker(id.to_owned()));
            };
            worker.last_heartbeat_ms = now_ms();
            let holder = match registry.holders.get_mut(&message.id) {
                Some(holder) if holder.worker == id => holder,
                _ => {
                    return Err(DispatchError::NotHeld {
                        worker: id.to_owned(),
                        submission: message.id.clone(),
                    })
                }
            };
            if message.body == Body::Executing || holder.last.as_ref() == Some(message) {
                return Ok(());
            }
            holder.last = Some(message.clone());
        }
        let sent = self.interface.send(message).await;
        if message.body.is_terminal() || sent.is_err() {
            self.release(&message.id);
        }
        sent.map_err(BackendError::from)?;
        Ok(())
    }

    /// Forgets who holds `submission`.
    fn release(&self, submission: &str) -> Option<String> {
        let mut registry = self.registry();
        let holder = registry.holders.remove(submission)?;
        if let Some(w) = registry.workers.get_mut(&holder.worker) {
            w.running.remove(submission);
        }
        Some(holder.worker)
    }

    /// Queues `submission` again, taken from `worker`, which will not judge it.
    async fn requeue(&self, submission: &str, worker: &str) -> bool {
        match self.backend.requeue(submission).await {
            Ok(true) => {
                info!(submission_id = %submission, worker_id = %worker, "queued again: its worker will not judge it");
                true
            }
            Ok(false) => false,
            Err(e) => {
                warn!(submission_id = %submission, worker_id = %worker, error = %e, "could not queue again a submission its worker will not judge; the store's own recovery takes it");
                false
            }
        }
    }

    /// Forgets worker `id` (it stopped) and queues again the submissions it holds. `None` for
    /// an unknown worker, else the ids of the submissions queued again.
    pub async fn deregister(&self, id: &str) -> Option<Vec<String>> {
        let held = {
            let mut registry = self.registry();
            let worker = registry.workers.remove(id)?;
            for submission in &worker.running {
                registry.holders.remove(submission);
            }
            worker.running
        };
        info!(worker_id = %id, held = held.len(), "worker deregistered");
        let mut requeued = Vec::new();
        for submission in held {
            if self.requeue(&submission, id).await {
                requeued.push(submission);
            }
        }
        Some(requeued)
    }

    /// Declares unresponsive the workers silent for too long at `now_ms`, and queues again the
    /// submissions they hold. Returns the ids of the submissions queued again.
    pub async fn sweep(&self, now_ms: i64) -> Vec<String> {
        let orphans: Vec<(String, String)> = {
            let mut registry = self.registry();
            let lost: Vec<String> = registry
                .workers
                .values()
                .filter(|w| !w.lost && self.silent_too_long(w, now_ms))
                .map(|w| w.id.clone())
                .collect();
            let mut orphans = Vec::new();
            for id in lost {
                if let Some(worker) = registry.workers.get_mut(&id) {
                    worker.lost = true;
                    warn!(worker_id = %id, name = %worker.name, running = worker.running.len(), "worker unresponsive: it missed its heartbeats");
                    orphans.extend(
                        std::mem::take(&mut worker.running)
                            .into_iter()
                            .map(|s| (s, id.clone())),
                    );
                }
            }
            for (submission, _) in &orphans {
                registry.holders.remove(submission);
            }
            orphans
        };
        let mut requeued = Vec::new();
        for (submission, worker) in orphans {
            if self.requeue(&submission, &worker).await {
                requeued.push(submission);
            }
        }
        requeued
    }

    /// Sweeps every half heartbeat interval until `shutdown`.
    pub fn watch(self: &Arc<Self>, shutdown: CancellationToken) -> JoinHandle<()> {
        let workers = self.clone();
        let every = (self.interval / 2).max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {
                        workers.sweep(now_ms()).await;
                    }
                    _ = shutdown.cancelled() => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::backend::memory::MemoryBackend;
    use crate::interface::{MemoryInterface, SubmissionState};

    fn submission(id: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: "p".into(),
            language: "c".into(),
            source_code: "x".into(),
        }
    }

    #[tokio::test]
    async fn a_silent_worker_is_unresponsive_and_its_submission_goes_to_another() {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let _follow = backend.follow(CancellationToken::new());
        let workers = Workers::new(backend.clone(), Duration::from_secs(1), 3);
        backend.submit(submission("s"), Some(2)).await.unwrap();
        let a = workers.register("a".into(), Some(1));
        let t = a.last_heartbeat_ms;
        assert_eq!(workers.status_at(&a, t + 3000), WorkerStatus::Active);
        assert_eq!(workers.status_at(&a, t + 3001), WorkerStatus::Unresponsive);

        let taken = workers.take(&a.id, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(taken.id, "s");
        let testing = Message::new(
            "s",
            Body::Testing {
                test_case: 1,
                subtask: None,
            },
        );
        workers.report(&a.id, &testing).await.unwrap();
        assert_eq!(workers.sweep(t + 3000).await, Vec::<String>::new());
        assert_eq!(workers.sweep(t + 10_000).await, ["s"]);
        let view = backend.get("s").await.unwrap().unwrap();
        assert_eq!(view.state, SubmissionState::Queued);
        assert!(matches!(
            workers.report(&a.id, &testing).await,
            Err(DispatchError::NotHeld { .. })
        ));

        let b = workers.register("b".into(), None);
        assert_eq!(
            workers
                .take(&b.id, Duration::ZERO)
                .await
                .unwrap()
                .unwrap()
                .id,
            "s"
        );
        assert!(workers
            .all()
            .iter()
            .all(|w| w.running.len() == usize::from(w.id == b.id)));
        assert!(matches!(
            workers.take("nobody", Duration::ZERO).await,
            Err(DispatchError::UnknownWorker(_))
        ));
    }

    #[tokio::test]
    async fn a_message_sent_again_is_recorded_once() {
        let interface = Arc::new(MemoryInterface::new());
        let backend = MemoryBackend::new(interface.clone());
        let _follow = backend.follow(CancellationToken::new());
        let workers = Workers::new(backend.clone(), Duration::from_secs(10), 3);
        backend.submit(submission("s"), Some(1)).await.unwrap();
        let a = workers.register("a".into(), None);
        workers.take(&a.id, Duration::ZERO).await.unwrap().unwrap();
        let testing = Message::new(
            "s",
            Body::Testing {
                test_case: 1,
                subtask: None,
            },
        );
        for message in [Message::new("s", Body::Executing), testing.clone(), testing] {
            workers.report(&a.id, &message).await.unwrap();
        }
        let states: Vec<&str> = interface
            .messages_of("s")
            .iter()
            .map(|m| m.body.state())
            .collect();
        assert_eq!(states, ["executing", "testing"]);
    }

    #[tokio::test]
    async fn a_deregistered_worker_gives_its_submissions_back() {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let _follow = backend.follow(CancellationToken::new());
        let workers = Workers::new(backend.clone(), Duration::from_secs(10), 3);
        backend.submit(submission("s"), Some(1)).await.unwrap();
        let a = workers.register("a".into(), None);
        workers.take(&a.id, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(workers.deregister(&a.id).await, Some(vec!["s".to_owned()]));
        assert_eq!(workers.deregister(&a.id).await, None);
        assert!(workers.all().is_empty());
        let view = backend.get("s").await.unwrap().unwrap();
        assert_eq!(view.state, SubmissionState::Queued);
        let b = workers.register("b".into(), None);
        let taken = workers.take(&b.id, Duration::ZERO).await.unwrap().unwrap();
        assert_eq!(taken.id, "s");
    }
}
