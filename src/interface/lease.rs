//! The lease engine: the one implementation of [`Interface`] for a store that any number of
//! workers share, over the store's primitives ([`LeaseStore`]).
//!
//! What it does, once for every shared store:
//! - `next()` offers what the store's [`LeaseStore::look`] finds, and keeps an offer cache: a
//!   submission offered is not offered again by this instance for [`OFFER_TTL`] while the
//!   worker gets around to claiming it, nor while this instance holds it.
//! - It waits for the store's wake-up (a listener the store runs, [`LeaseStore::listen`],
//!   started by the first `next()`) or a periodic sweep, whichever comes first; a look that
//!   fails for a while ([`LeaseStore::is_transient`]) is tried again with [`RETRY`] here, where
//!   the listener's reconnect wakes it at once.
//! - `send(executing)` claims ([`LeaseStore::claim`]) and keeps the claim in the held map;
//!   every later message is recorded for the held claim ([`LeaseStore::record`]), fenced by the
//!   store; a claim that ended, was lost or failed for good is dropped, so its lease runs out
//!   and another worker takes over.
//! - A heartbeat renews the leases held ([`LeaseStore::renew`]) every third of the lease.
//! - [`Leased::close`] stops the listener and the heartbeat, then lets the store let go of
//!   what it holds ([`LeaseStore::close`]).
//!
//! Single statements or requests of a store are tried again with [`retrying`] (the same
//! [`RETRY`] backoff, until the store's write deadline), and their failures reach the worker
//! as an [`InterfaceError`] that says whether they were transient.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{Interface, InterfaceError, Sent};
use crate::backoff::Backoff;
use crate::protocol::{Body, Message, Submission};
use crate::sync::lock;

/// How long a submission offered by `next()` is not offered again by this instance while the
/// worker gets around to claiming it.
pub const OFFER_TTL: Duration = Duration::from_secs(5);
/// Pauses between tries of a failed statement or request (and of a store's listener): 50 ms,
/// doubling, at most 2 s.
pub const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
/// The shortest wait of `next()` for something the store says will be due.
const SHORTEST_WAIT: Duration = Duration::from_millis(10);

/// The timings of a store's leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a claim lasts without a heartbeat. The heartbeat renews it every third of this.
    pub lease: Duration,
    /// How often `next()` looks for submissions without being woken.
    pub sweep_interval: Duration,
    /// How long a failed statement or request is tried again before it fails for good.
    pub write_deadline: Duration,
}

/// What `next()` asks a store to leave out: submissions offered lately, and those this
/// instance holds.
#[derive(Debug, Clone, Default)]
pub struct Skip {
    pub offered: Vec<String>,
    pub held: Vec<String>,
}

/// What a store's [`LeaseStore::look`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Look {
    /// A submission worth offering.
    Found(Submission),
    /// Nothing claimable; something may become due in this long (`None`: nothing known).
    Wait(Option<Duration>),
}

/// What became of a message recorded for a held claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded<C> {
    /// Recorded; the claim is still held, as this (the next message's index, ...).
    Holds(C),
    /// Recorded; it ended the claim.
    Ended,
    /// Nothing was recorded: the claim was lost (its lease expired and another worker took it).
    Lost,
}

/// Wakes a waiting `next()`: a store's listener calls [`Wake::wake`] on every event that may
/// have made a submission claimable, and whenever it (re)connects.
#[derive(Debug)]
pub struct Wake(watch::Sender<u64>);

impl Wake {
    /// Has every `next()` look again.
    pub fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// The primitives of a store that workers share through leases: the lease engine ([`Leased`])
/// does the rest.
#[async_trait]
pub trait LeaseStore: Send + Sync + Sized + 'static {
    /// A claim held: what later writes of its attempt are fenced on.
    type Claim: Clone + PartialEq + Send + Sync + 'static;
    /// A failure of the store's driver.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The name of the store, in errors and metrics.
    const NAME: &'static str;

    /// Whether `error` may go away if the same request is sent again.
    fn is_transient(error: &Self::Error) -> bool;

    /// The lease, the sweep and the write deadline.
    fn timing(&self) -> Timing;

    /// The next submission worth offering, leaving out `skip`, or how long until one may be
    /// due. Only reads.
    async fn look(&self, skip: &Skip) -> Result<Look, Self::Error>;

    /// Claims submission `id` (`executing`) for this instance: its claim, or `None` when
    /// another worker has it (or it is gone).
    async fn claim(&self, id: &str) -> Result<Option<Self::Claim>, InterfaceError>;

    /// Records a message after `executing` for the held `claim`, fenced on it.
    async fn record(
        &self,
        id: &str,
        claim: &Self::Claim,
        body: &Body,
    ) -> Result<Recorded<Self::Claim>, InterfaceError>;

    /// Renews the leases of the claims `held`; the ids of those found lost, which are dropped.
    async fn renew(&self, held: Vec<(String, Self::Claim)>) -> Vec<String>;

    /// Listens for changes until `stop`, waking `next()` on each (and on every reconnect).
    async fn listen(&self, wake: &Wake, stop: &CancellationToken);

    /// Lets go of the store once the listener and the heartbeat have stopped.
    async fn close(&self);
}

/// Runs `op` of the store `S` until it succeeds, fails with an error that is not transient, or
/// the store's write deadline has passed; the last error then.
pub async fn retrying<S, T, F, Fut>(store: &S, what: &str, id: &str, op: F) -> Result<T, S::Error>
where
    S: LeaseStore,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, S::Error>>,
{
    RETRY
        .deadline(store.timing().write_deadline)
        .retry(op, S::is_transient, |e, pause| {
            warn!(interface = S::NAME, submission_id = %id, step = what, error = %e, retry_in = ?pause, "request failed; trying again");
        })
        .await
}

/// `error` of the store `S` as an [`InterfaceError`] that says what failed and whether it was
/// transient.
pub fn failed<S: LeaseStore>(reason: impl Into<String>, error: S::Error) -> InterfaceError {
    let failure = if S::is_transient(&error) {
        InterfaceError::transient(S::NAME, reason)
    } else {
        InterfaceError::permanent(S::NAME, reason)
    };
    failure.caused_by(error)
}

/// What `next()`, `send()` and the heartbeat share.
struct State<C> {
    /// Claims held, by submission id: their leases are renewed.
    held: Mutex<HashMap<String, C>>,
    /// Submissions offered by `next()` and not claimed yet, with when.
    offered: Mutex<HashMap<String, Instant>>,
    /// Bumped by the store's listener: `next()` looks again.
    wake: Wake,
}

/// A shared store as an [`Interface`]: the lease engine over the store's primitives.
pub struct Leased<S: LeaseStore> {
    /// The store (its own methods reach it here).
    pub(crate) shared: Arc<S>,
    state: Arc<State<S::Claim>>,
    /// Whether the listener runs: from the first `next()` on (a front end's view needs none).
    listening: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl<S: LeaseStore> Leased<S> {
    /// The engine over `store`, with its heartbeat started.
    pub(crate) fn start(store: S) -> Self {
        let shared = Arc::new(store);
        let state: Arc<State<S::Claim>> = Arc::new(State {
            held: Mutex::new(HashMap::new()),
            offered: Mutex::new(HashMap::new()),
            wake: Wake(watch::Sender::new(0)),
        });
        let heartbeat = (shared.timing().lease / 3).max(Duration::from_millis(100));
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        tasks.spawn({
            let (shared, state) = (shared.clone(), state.clone());
            super::every(heartbeat, stop.clone(), move || {
                let (shared, state) = (shared.clone(), state.clone());
                async move {
                    let held: Vec<(String, S::Claim)> = lock(&state.held)
                        .iter()
                        .map(|(id, claim)| (id.clone(), claim.clone()))
                        .collect();
                    let lost = shared.renew(held).await;
                    let mut held = lock(&state.held);
                    for id in lost {
                        held.remove(&id);
                    }
                }
            })
        });
        tasks.close();
        Leased {
            shared,
            state,
            listening: AtomicBool::new(false),
            stop,
            tasks,
        }
    }

    /// Drops the claim of submission `id` if this instance holds it (its lease is not renewed
    /// any more): the claim, for the store to give back.
    pub(crate) fn drop_claim(&self, id: &str) -> Option<S::Claim> {
        lock(&self.state.held).remove(id)
    }

    /// Stops the listener and the heartbeat, then lets go of the store. Claims still held are
    /// not renewed any more: their leases run out and other workers take them.
    pub async fn close(&self) {
        self.stop.cancel();
        self.tasks.wait().await;
        self.shared.close().await;
    }

    fn failure(reason: String) -> InterfaceError {
        InterfaceError::permanent(S::NAME, reason)
    }
}

impl<S: LeaseStore> Drop for Leased<S> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait]
impl<S: LeaseStore> Interface for Leased<S> {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        if !self.listening.swap(true, Ordering::SeqCst) {
            let (shared, state, stop) =
                (self.shared.clone(), self.state.clone(), self.stop.clone());
            self.tasks
                .spawn(async move { shared.listen(&state.wake, &stop).await });
        }
        let sweep = self.shared.timing().sweep_interval;
        let mut failures = 0;
        loop {
            // Subscribed before looking, so a wake-up while looking is not missed.
            let mut wake = self.state.wake.0.subscribe();
            let skip = {
                let mut offered = lock(&self.state.offered);
                offered.retain(|_, at| at.elapsed() < OFFER_TTL);
                Skip {
                    offered: offered.keys().cloned().collect(),
                    held: lock(&self.state.held).keys().cloned().collect(),
                }
            };
            let wait = match self.shared.look(&skip).await {
                Ok(Look::Found(submission)) => {
                    lock(&self.state.offered).insert(submission.id.clone(), Instant::now());
                    return Ok(Some(submission));
                }
                Ok(Look::Wait(due)) => {
                    failures = 0;
                    due.map_or(sweep, |due| {
                        due.clamp(SHORTEST_WAIT, sweep.max(SHORTEST_WAIT))
                    })
                }
                // The store is away (a restarted server, a network blip): wait for it here,
                // where the listener's reconnect wakes this at once.
                Err(e) if S::is_transient(&e) => {
                    failures += 1;
                    let pause = RETRY.delay(failures);
                    warn!(interface = S::NAME, error = %e, retry_in = ?pause, "cannot look for submissions; trying again");
                    pause
                }
                Err(e) => return Err(failed::<S>(format!("looking for submissions: {e}"), e)),
            };
            tokio::select! {
                _ = wake.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.stop.cancelled() => return Ok(None),
            }
        }
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let id = message.id.as_str();
        if message.body == Body::Executing {
            lock(&self.state.offered).remove(id);
            if lock(&self.state.held).contains_key(id) {
                // Already being judged here (offered twice): the first claim stands.
                return Ok(Sent::NotTaken);
            }
            return Ok(match self.shared.claim(id).await? {
                Some(claim) => {
                    lock(&self.state.held).insert(id.to_owned(), claim);
                    Sent::Recorded
                }
                None => Sent::NotTaken,
            });
        }
        let what = message.body.state();
        let held = lock(&self.state.held).get(id).cloned();
        let Some(claim) = held else {
            return Err(Self::failure(format!(
                "recording {what} of submission {id}: this worker does not hold it"
            )));
        };
        let recorded = self.shared.record(id, &claim, &message.body).await;
        let mut held = lock(&self.state.held);
        match recorded {
            Ok(Recorded::Holds(next)) => {
                // Unless it was dropped (or claimed again) meanwhile.
                if let Some(entry) = held.get_mut(id).filter(|entry| **entry == claim) {
                    *entry = next;
                }
                Ok(Sent::Recorded)
            }
            Ok(Recorded::Ended) => {
                held.remove(id);
                Ok(Sent::Recorded)
            }
            // Lost, or failed for good: stop renewing the lease, so that another worker takes
            // over a submission this one cannot finish.
            Ok(Recorded::Lost) => {
                held.remove(id);
                Err(Self::failure(format!(
                    "recording {what} of submission {id}: the claim was lost (its lease expired and another worker took it)"
                )))
            }
            Err(e) => {
                held.remove(id);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interface::ErrorKind;
    use std::collections::VecDeque;

    /// A store that fails as told: `look` answers from `looks` (then finds nothing), `claim`
    /// always succeeds, `record` answers from `records` (then records).
    #[derive(Default)]
    struct Toy {
        looks: Mutex<VecDeque<Result<Look, Failure>>>,
        records: Mutex<VecDeque<Recorded<u32>>>,
        skipped: Mutex<Vec<Skip>>,
        renewed: Mutex<Vec<Vec<String>>>,
        closed: AtomicBool,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("toy failure (transient: {0})")]
    struct Failure(bool);

    #[async_trait]
    impl LeaseStore for Toy {
        type Claim = u32;
        type Error = Failure;
        const NAME: &'static str = "toy";

        fn is_transient(error: &Failure) -> bool {
            error.0
        }

        fn timing(&self) -> Timing {
            Timing {
                lease: Duration::from_secs(3),
                sweep_interval: Duration::from_secs(1),
                write_deadline: Duration::from_secs(1),
            }
        }

        async fn look(&self, skip: &Skip) -> Result<Look, Failure> {
            lock(&self.skipped).push(skip.clone());
            lock(&self.looks)
                .pop_front()
                .unwrap_or(Ok(Look::Wait(None)))
        }

        async fn claim(&self, _id: &str) -> Result<Option<u32>, InterfaceError> {
            Ok(Some(1))
        }

        async fn record(
            &self,
            _id: &str,
            claim: &u32,
            _body: &Body,
        ) -> Result<Recorded<u32>, InterfaceError> {
            Ok(lock(&self.records)
                .pop_front()
                .unwrap_or(Recorded::Holds(claim + 1)))
        }

        async fn renew(&self, held: Vec<(String, u32)>) -> Vec<String> {
            let ids: Vec<String> = held.into_iter().map(|(id, _)| id).collect();
            lock(&self.renewed).push(ids.clone());
            ids.into_iter().filter(|id| id == "doomed").collect()
        }

        async fn listen(&self, _wake: &Wake, stop: &CancellationToken) {
            stop.cancelled().await;
        }

        async fn close(&self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    fn submission(id: &str) -> Submission {
        Submission {
            id: id.into(),
            problem: "p".into(),
            language: "cpp".into(),
            source_code: String::new(),
            files: Vec::new(),
            run: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn next_waits_out_transient_failures_and_surfaces_lasting_ones() {
        let toy = Toy::default();
        lock(&toy.looks).extend([
            Err(Failure(true)),
            Err(Failure(true)),
            Ok(Look::Found(submission("a"))),
            Err(Failure(false)),
        ]);
        let leased = Leased::start(toy);
        let started = tokio::time::Instant::now();
        assert_eq!(leased.next().await.unwrap().unwrap().id, "a");
        // Two pauses of RETRY: 50 ms, then 100 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(150));
        let lasting = leased.next().await.unwrap_err();
        assert_eq!(
            (lasting.interface, lasting.kind),
            ("toy", ErrorKind::Permanent)
        );
        assert!(!lasting.is_transient());
        let source = std::error::Error::source(&lasting).expect("the driver's error");
        assert_eq!(source.to_string(), "toy failure (transient: false)");
        // The offer cache: `a` was offered and not claimed, so the next looks leave it out.
        let skipped = lock(&leased.shared.skipped).clone();
        assert_eq!(skipped.last().unwrap().offered, ["a"]);
        leased.close().await;
        assert!(leased.shared.closed.load(Ordering::SeqCst));
        // Closed: no submission will come any more.
        assert_eq!(leased.next().await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn claims_are_held_renewed_and_dropped_when_they_end_or_are_lost() {
        let toy = Toy::default();
        lock(&toy.records).extend([Recorded::Holds(7), Recorded::Ended, Recorded::Lost]);
        let leased = Leased::start(toy);
        let send = |id: &str, body: Body| {
            let message = Message::new(id, body);
            let leased = &leased;
            async move { leased.send(&message).await }
        };
        assert_eq!(send("a", Body::Executing).await.unwrap(), Sent::Recorded);
        // Offered twice: the first claim stands.
        assert_eq!(send("a", Body::Executing).await.unwrap(), Sent::NotTaken);
        assert_eq!(send("a", Body::Compiling).await.unwrap(), Sent::Recorded);
        assert_eq!(lock(&leased.state.held).get("a"), Some(&7));
        assert_eq!(send("a", Body::Compiling).await.unwrap(), Sent::Recorded); // Ended
        let dropped = send("a", Body::Compiling).await.unwrap_err();
        assert!(dropped.reason.contains("does not hold it"), "{dropped}");

        assert_eq!(send("b", Body::Executing).await.unwrap(), Sent::Recorded);
        let lost = send("b", Body::Compiling).await.unwrap_err();
        assert!(lost.reason.contains("claim was lost"), "{lost}");
        assert!(!lost.is_transient());
        assert!(lock(&leased.state.held).is_empty());

        // The heartbeat renews what is held, every third of the lease, and drops what it lost.
        assert_eq!(send("c", Body::Executing).await.unwrap(), Sent::Recorded);
        assert_eq!(
            send("doomed", Body::Executing).await.unwrap(),
            Sent::Recorded
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut renewed = lock(&leased.shared.renewed).clone();
        renewed.iter_mut().for_each(|ids| ids.sort());
        // The first beat renews both and loses `doomed`; later ones renew only `c`.
        assert_eq!(renewed.first().unwrap(), &["c", "doomed"]);
        assert_eq!(renewed.last().unwrap(), &["c"]);
        let held: Vec<String> = lock(&leased.state.held).keys().cloned().collect();
        assert_eq!(held, ["c"]);
    }

    // Real time: the deadline of `Backoff` counts on the clock, not on tokio's.
    #[tokio::test]
    async fn a_statement_is_retried_while_transient_and_until_the_deadline() {
        let toy = Toy::default();
        let tries = std::sync::atomic::AtomicU32::new(0);
        let got = retrying(&toy, "writing", "a", || async {
            match tries.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err(Failure(true)),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(got.unwrap(), 2);
        tries.store(0, Ordering::SeqCst);
        let got: Result<(), _> = retrying(&toy, "writing", "a", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Failure(false))
        })
        .await;
        assert!(got.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        // Transient for ever: given up within the 1 s write deadline.
        let started = tokio::time::Instant::now();
        let got: Result<(), _> =
            retrying(&toy, "writing", "a", || async { Err(Failure(true)) }).await;
        let error = failed::<Toy>("writing", got.unwrap_err());
        assert!(error.is_transient());
        // Pauses of 50, 100, 200 and 400 ms; the next (800 ms) would end after the deadline.
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(750) && elapsed < Duration::from_secs(1),
            "{elapsed:?}"
        );
    }
}
