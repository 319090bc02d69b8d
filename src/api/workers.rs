//! The worker registry (seed 004's central/edge reporting): remote workers (e.g. `executioner
//! worker --interface http`, `crate::interface::http`) register, send heartbeats (with their
//! status, last error and what they hold), take submissions from the service, report each
//! message back and deregister when they stop. A worker that missed too many heartbeats is
//! unresponsive (the seed's "zombie"): the submissions it holds are queued again for another
//! worker, and what it reports later about them is refused.
//!
//! Every take that gives a worker a submission has a number, one more than the worker's last
//! (its *take*), and the worker names it with every message: a submission is held by a (worker,
//! take), so the late messages of an attempt the service took back are refused even when the
//! same worker took the submission again. A claim that never reaches its worker does not stay
//! held: a take whose request goes away while the claim is under way gives the submission back
//! as soon as the claim ends, and a heartbeat says which submissions the worker runs and the
//! last take it heard of, so the service queues again what it gave under that take or an
//! earlier one and the worker does not run (an answer lost on the way). A terminal message is
//! remembered (per worker, the last [`ENDED_KEPT`]), so that the same one sent again under the
//! same take, a retry after a lost answer, is answered as recorded.
//!
//! The service holds the claims of the submissions it hands out (through the backend's worker
//! interface, like a local worker), so the store's own recovery (e.g. Postgres leases) keeps
//! working while the service lives; the registry decides when a remote worker is gone.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::time::now_ms;
use crate::interface::{Interface, Sent};
use crate::protocol::{Body, Message, Submission};
use crate::store::{Backend, BackendError};
use crate::sync::lock;

/// Longest a stopping service waits for claims under way (see [`Workers::drain`]).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Terminal messages remembered per worker, so that one sent again is answered as recorded. A
/// worker sends one again within its write deadline (a minute), so the last few suffice.
pub const ENDED_KEPT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// The number of the last take that gave it a submission (0: none yet).
    pub last_take: u64,
    /// Declared unresponsive by the sweep (its submissions were queued again).
    pub lost: bool,
}

/// What a worker says with a heartbeat.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub status: Option<String>,
    pub error: Option<String>,
    /// What it holds; `None`: it does not say.
    pub holdings: Option<Holdings>,
}

/// What a worker holds, by its own account.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// The submissions it runs (or has taken and will run).
    pub running: BTreeSet<String>,
    /// The number of the last take whose answer it received (0: none). A submission given under
    /// a later take may still be on its way to the worker.
    pub last_take: u64,
}

/// The answer to a take.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// A submission, claimed (`executing`) for the worker under take `take`.
    Submission { submission: Submission, take: u64 },
    /// None came in time; `last_take` is the number of the last take that gave the worker a
    /// submission (0: none yet).
    Nothing { last_take: u64 },
}

impl Taken {
    /// The take's number, or the last one's when it brought nothing.
    pub fn number(&self) -> u64 {
        match self {
            Taken::Submission { take, .. } => *take,
            Taken::Nothing { last_take } => *last_take,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("no worker with id {0:?}: register first")]
    UnknownWorker(String),
    #[error("worker {worker} does not hold submission {submission} under take {take} (it was queued again after the worker stopped answering, or given under another take, or never given to it)")]
    NotHeld {
        worker: String,
        submission: String,
        take: u64,
    },
    #[error(transparent)]
    Store(#[from] BackendError),
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, Entry>,
    /// Submission id -> who holds it.
    holders: HashMap<String, Holder>,
}

/// A registered worker, and the terminal messages it reported last (oldest first).
struct Entry {
    worker: RegisteredWorker,
    ended: VecDeque<(u64, Message)>,
}

/// The worker and take holding a submission, and the last message reported about it.
struct Holder {
    worker: String,
    take: u64,
    /// A message equal to this one is the same report sent again (the worker retried after
    /// losing the answer): no two consecutive messages of a submission are ever equal.
    last: Option<Message>,
}

impl Registry {
    /// Forgets that `worker` holds `submission` under `take`; whether it did.
    fn release(&mut self, submission: &str, worker: &str, take: u64) -> bool {
        match self.holders.get(submission) {
            Some(holder) if holder.worker == worker && holder.take == take => {}
            _ => return false,
        }
        self.holders.remove(submission);
        if let Some(entry) = self.workers.get_mut(worker) {
            entry.worker.running.remove(submission);
        }
        true
    }
}

/// Registered workers and what they hold. A worker is unresponsive once `interval * missed`
/// passed without a heartbeat (or a report).
pub struct Workers {
    registry: Mutex<Registry>,
    interval: Duration,
    missed: u32,
    backend: Arc<dyn Backend>,
    interface: Arc<dyn Interface>,
    /// Claims under way, and the giving back of those whose take went away.
    tasks: TaskTracker,
    /// Told when a worker registers, sends a heartbeat or deregisters (the status page).
    changed: tokio::sync::watch::Sender<()>,
}

impl Workers {
    pub fn new(backend: Arc<dyn Backend>, interval: Duration, missed: u32) -> Self {
        Workers {
            registry: Mutex::new(Registry::default()),
            interval,
            missed,
            interface: backend.clone().worker_interface(),
            backend,
            tasks: TaskTracker::new(),
            changed: tokio::sync::watch::Sender::new(()),
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Changes when a worker registers, sends a heartbeat or deregisters.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
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
            last_take: 0,
            lost: false,
        };
        let entry = Entry {
            worker: worker.clone(),
            ended: VecDeque::new(),
        };
        self.registry().workers.insert(worker.id.clone(), entry);
        self.changed.send_replace(());
        info!(worker_id = %worker.id, name = %worker.name, "worker registered");
        worker
    }

    /// Worker `id` is alive; `None` for an unknown worker.
    fn touch<'r>(registry: &'r mut Registry, id: &str) -> Option<&'r mut Entry> {
        let entry = registry.workers.get_mut(id)?;
        entry.worker.last_heartbeat_ms = now_ms();
        if entry.worker.lost {
            info!(worker_id = %id, "an unresponsive worker answers again");
            entry.worker.lost = false;
        }
        Some(entry)
    }

    /// Records a heartbeat and what it reports; `None` for an unknown worker. When the worker
    /// says what it holds, the submissions given to it under its last take or earlier that it
    /// does not run are queued again (the answer of their take never reached it).
    pub async fn heartbeat(&self, id: &str, report: Report) -> Option<RegisteredWorker> {
        let (worker, orphans) = {
            let mut registry = self.registry();
            let worker = &mut Self::touch(&mut registry, id)?.worker;
            if let Some(status) = report.status {
                worker.reported_status = Some(status);
            }
            if let Some(error) = report.error {
                warn!(worker_id = %id, error = %error, "a worker reports an error");
                worker.last_error = Some((error, worker.last_heartbeat_ms));
            }
            let orphans: Vec<(String, u64)> = match &report.holdings {
                None => Vec::new(),
                Some(holdings) => registry
                    .holders
                    .iter()
                    .filter(|(submission, holder)| {
                        holder.worker == id
                            && holder.take <= holdings.last_take
                            && !holdings.running.contains(*submission)
                    })
                    .map(|(submission, holder)| (submission.clone(), holder.take))
                    .collect(),
            };
            for (submission, take) in &orphans {
                warn!(worker_id = %id, submission_id = %submission, take, "the worker does not run a submission given to it: the answer of its take was lost");
                registry.release(submission, id, *take);
            }
            let worker = registry.workers.get(id).map(|e| e.worker.clone())?;
            (worker, orphans)
        };
        self.changed.send_replace(());
        for (submission, _) in orphans {
            self.requeue(&submission, id).await;
        }
        Some(worker)
    }

    /// Every worker, oldest registration first.
    pub fn all(&self) -> Vec<RegisteredWorker> {
        let registry = self.registry();
        let mut all: Vec<_> = registry
            .workers
            .values()
            .map(|e| e.worker.clone())
            .collect();
        all.sort_by_key(|w| (w.registered_ms, w.id.clone()));
        all
    }

    /// The registered worker `id`.
    pub fn get(&self, id: &str) -> Option<RegisteredWorker> {
        self.registry().workers.get(id).map(|e| e.worker.clone())
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

    /// Gives worker `id` the next submission, waiting up to `wait` (or until `stop`) for one.
    /// The submission is claimed (`executing`) on the worker's behalf under a new take number.
    ///
    /// Only the wait may be cut short: the claim runs to its end in a task of its own, and when
    /// this future is dropped meanwhile (the worker's request went away) the submission is
    /// given back as soon as it is claimed.
    pub async fn take(
        self: &Arc<Self>,
        id: &str,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Taken, DispatchError> {
        Self::touch(&mut self.registry(), id)
            .ok_or_else(|| DispatchError::UnknownWorker(id.to_owned()))?;
        let until = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(until, self.interface.next()) => match next {
                    Ok(next) => next.map_err(BackendError::from)?,
                    Err(_) => None,
                },
                _ = stop.cancelled() => None,
            };
            let Some(submission) = next else {
                let registry = self.registry();
                let entry = registry
                    .workers
                    .get(id)
                    .ok_or_else(|| DispatchError::UnknownWorker(id.to_owned()))?;
                return Ok(Taken::Nothing {
                    last_take: entry.worker.last_take,
                });
            };
            let claim = Claim {
                workers: self.clone(),
                worker: id.to_owned(),
                task: Some(
                    self.tasks
                        .spawn(self.clone().claim(id.to_owned(), submission)),
                ),
            };
            if let Some(taken) = claim.outcome().await? {
                return Ok(taken);
            }
        }
    }

    /// Claims `submission` for `worker` and records it as held under the worker's next take;
    /// `None` when another worker claimed it first.
    async fn claim(
        self: Arc<Self>,
        worker: String,
        submission: Submission,
    ) -> Result<Option<Taken>, DispatchError> {
        let claim = Message::new(&submission.id, Body::Executing);
        match self
            .interface
            .send(&claim)
            .await
            .map_err(BackendError::from)?
        {
            Sent::NotTaken => return Ok(None),
            Sent::Recorded => {}
        }
        {
            let mut registry = self.registry();
            if let Some(entry) = registry.workers.get_mut(&worker) {
                entry.worker.last_take += 1;
                let take = entry.worker.last_take;
                entry.worker.running.insert(submission.id.clone());
                let holder = Holder {
                    worker: worker.clone(),
                    take,
                    last: None,
                };
                registry.holders.insert(submission.id.clone(), holder);
                info!(worker_id = %worker, submission_id = %submission.id, take, "submission given to a worker");
                return Ok(Some(Taken::Submission { submission, take }));
            }
        }
        // The worker deregistered while its claim was under way: nobody will judge it.
        self.requeue(&submission.id, &worker).await;
        Err(DispatchError::UnknownWorker(worker))
    }

    /// Queues again `submission`, given to `worker` under `take` and never received: the take
    /// went away before it could answer.
    async fn give_back(&self, submission: &str, worker: &str, take: u64) {
        if self.registry().release(submission, worker, take) {
            info!(worker_id = %worker, submission_id = %submission, take, "the take went away before answering: giving its submission back");
            self.requeue(submission, worker).await;
        }
    }

    /// Records a message worker `id` sends about a submission it holds under `take`.
    /// `executing` was sent when the worker took it, and a message equal to the one before is
    /// that one sent again: either changes nothing. A terminal message sent again after it was
    /// recorded (under the same take) is answered as recorded too.
    pub async fn report(
        &self,
        id: &str,
        take: u64,
        message: &Message,
    ) -> Result<(), DispatchError> {
        {
            let mut registry = self.registry();
            let Some(entry) = registry.workers.get_mut(id) else {
                return Err(DispatchError::UnknownWorker(id.to_owned()));
            };
            entry.worker.last_heartbeat_ms = now_ms();
            let ended = entry.ended.iter().any(|(t, m)| *t == take && m == message);
            let holder = match registry.holders.get_mut(&message.id) {
                Some(holder) if holder.worker == id && holder.take == take => holder,
                _ if ended => return Ok(()),
                _ => {
                    return Err(DispatchError::NotHeld {
                        worker: id.to_owned(),
                        submission: message.id.clone(),
                        take,
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
            let mut registry = self.registry();
            // Recorded and terminal: remembered, for the worker may send it again.
            if registry.release(&message.id, id, take) && sent.is_ok() {
                if let Some(entry) = registry.workers.get_mut(id) {
                    if entry.ended.len() == ENDED_KEPT {
                        entry.ended.pop_front();
                    }
                    entry.ended.push_back((take, message.clone()));
                }
            }
        }
        sent.map_err(BackendError::from)?;
        Ok(())
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
            let entry = registry.workers.remove(id)?;
            for submission in &entry.worker.running {
                registry.holders.remove(submission);
            }
            entry.worker.running
        };
        self.changed.send_replace(());
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
        let (orphans, silent) = {
            let mut registry = self.registry();
            // Late by more than half an interval: a heartbeat was missed. Their submissions are
            // `unresponsive` until a heartbeat comes or the worker is given up on.
            let late = i64::try_from((self.interval * 3 / 2).as_millis()).unwrap_or(i64::MAX);
            let silent: std::collections::HashSet<String> = registry
                .workers
                .values()
                .filter(|e| !e.worker.lost && now_ms - e.worker.last_heartbeat_ms > late)
                .flat_map(|e| e.worker.running.iter().cloned())
                .collect();
            let lost: Vec<String> = registry
                .workers
                .values()
                .filter(|e| !e.worker.lost && self.silent_too_long(&e.worker, now_ms))
                .map(|e| e.worker.id.clone())
                .collect();
            let mut orphans = Vec::new();
            for id in lost {
                if let Some(Entry { worker, .. }) = registry.workers.get_mut(&id) {
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
            (orphans, silent)
        };
        self.backend.holders_silent(&silent).await;
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

    /// Waits for the claims under way and the giving back of those whose take went away; for
    /// when no request can start another (the server stopped). A store that hangs does not
    /// hold up the shutdown beyond [`DRAIN_LIMIT`]: what it still holds then is recovered as
    /// the store recovers any dead worker's claims (Postgres leases; memory is gone anyway).
    pub async fn drain(&self) {
        self.tasks.close();
        if tokio::time::timeout(DRAIN_LIMIT, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                claims = self.tasks.len(),
                "claims still under way at shutdown; left to the store's recovery"
            );
        }
    }
}

/// A claim under way for a take. Dropped before its end (the take's request went away), it
/// gives back what the claim gets: nobody is left to tell the worker.
struct Claim {
    workers: Arc<Workers>,
    worker: String,
    /// `None` once its outcome was read.
    task: Option<JoinHandle<Result<Option<Taken>, DispatchError>>>,
}

impl Claim {
    async fn outcome(mut self) -> Result<Option<Taken>, DispatchError> {
        let Some(task) = self.task.as_mut() else {
            return Ok(None);
        };
        // Read and disarmed in one poll: no drop can come in between.
        let joined = task.await;
        self.task = None;
        joined.unwrap_or_else(|e| Err(BackendError(format!("a claim failed: {e}")).into()))
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        let (workers, worker) = (self.workers.clone(), std::mem::take(&mut self.worker));
        let giving_back = async move {
            if let Ok(Ok(Some(Taken::Submission { submission, take }))) = task.await {
                workers.give_back(&submission.id, &worker, take).await;
            }
        };
        // Outside a runtime (it is shutting down) nothing can be queued any more anyway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.workers.tasks.spawn_on(giving_back, &runtime);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::SubmissionState;
    use crate::store::memory::MemoryBackend;
    use crate::store::memory::MemoryInterface;
    use crate::store::{Intake, Listing};

    /// Takes without waiting: the submission and its take number.
    async fn take_now(workers: &Arc<Workers>, id: &str) -> (Submission, u64) {
        match workers
            .take(id, Duration::ZERO, &CancellationToken::new())
            .await
        {
            Ok(Taken::Submission { submission, take }) => (submission, take),
            other => panic!("nothing taken: {other:?}"),
        }
    }

    fn submission(id: &str) -> Submission {
        Submission::sample(id)
    }

    #[tokio::test]
    async fn a_silent_worker_is_unresponsive_and_its_submission_goes_to_another() {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let _follow = backend.follow(CancellationToken::new());
        let workers = Arc::new(Workers::new(backend.clone(), Duration::from_secs(1), 3));
        backend
            .submit(submission("s"), Some(2), Default::default())
            .await
            .unwrap();
        let a = workers.register("a".into(), Some(1));
        let t = a.last_heartbeat_ms;
        assert_eq!(workers.status_at(&a, t + 3000), WorkerStatus::Active);
        assert_eq!(workers.status_at(&a, t + 3001), WorkerStatus::Unresponsive);

        let (taken, take) = take_now(&workers, &a.id).await;
        assert_eq!((taken.id.as_str(), take), ("s", 1));
        let testing = Message::new(
            "s",
            Body::Testing {
                test_case: 1,
                subtask: None,
            },
        );
        workers.report(&a.id, take, &testing).await.unwrap();
        assert_eq!(workers.sweep(t + 3000).await, Vec::<String>::new());
        assert_eq!(workers.sweep(t + 10_000).await, ["s"]);
        let view = backend.get("s").await.unwrap().unwrap();
        assert_eq!(view.state, SubmissionState::Queued);
        assert!(matches!(
            workers.report(&a.id, take, &testing).await,
            Err(DispatchError::NotHeld { .. })
        ));

        let b = workers.register("b".into(), None);
        assert_eq!(take_now(&workers, &b.id).await, (submission("s"), 1));
        assert!(workers
            .all()
            .iter()
            .all(|w| w.running.len() == usize::from(w.id == b.id)));
        assert!(matches!(
            workers
                .take("nobody", Duration::ZERO, &CancellationToken::new())
                .await,
            Err(DispatchError::UnknownWorker(_))
        ));
    }

    #[tokio::test]
    async fn a_message_sent_again_is_recorded_once() {
        let interface = Arc::new(MemoryInterface::new());
        let backend = MemoryBackend::new(interface.clone());
        let _follow = backend.follow(CancellationToken::new());
        let workers = Arc::new(Workers::new(backend.clone(), Duration::from_secs(10), 3));
        backend
            .submit(submission("s"), Some(1), Default::default())
            .await
            .unwrap();
        let a = workers.register("a".into(), None);
        let (_, take) = take_now(&workers, &a.id).await;
        let testing = Message::new(
            "s",
            Body::Testing {
                test_case: 1,
                subtask: None,
            },
        );
        for message in [Message::new("s", Body::Executing), testing.clone(), testing] {
            workers.report(&a.id, take, &message).await.unwrap();
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
        let workers = Arc::new(Workers::new(backend.clone(), Duration::from_secs(10), 3));
        backend
            .submit(submission("s"), Some(1), Default::default())
            .await
            .unwrap();
        let a = workers.register("a".into(), None);
        take_now(&workers, &a.id).await;
        assert_eq!(workers.deregister(&a.id).await, Some(vec!["s".to_owned()]));
        assert_eq!(workers.deregister(&a.id).await, None);
        assert!(workers.all().is_empty());
        let view = backend.get("s").await.unwrap().unwrap();
        assert_eq!(view.state, SubmissionState::Queued);
        let b = workers.register("b".into(), None);
        assert_eq!(take_now(&workers, &b.id).await.0.id, "s");
    }
}
