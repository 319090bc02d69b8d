//! The one interface suite: the same cases, written once against the `Interface` trait, run
//! against every store (memory, Postgres, Firestore). A store joins by implementing
//! [`Store`] and adding one `suite!` line at the bottom.
//!
//! A store is seen from two sides: the workers' (`Interface`: `next`, `send`) and the front
//! end's ([`Store::enqueue`], [`Store::stored`]: what a reader of the store finds, SPEC §6).

mod firestore_emulator;
mod pg;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use executioner::interface::SubmissionState;
use executioner::interface::{Interface, Sent};
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::store::firestore::FirestoreInterface;
use executioner::store::memory::MemoryInterface;
use executioner::store::postgres::PostgresInterface;
use executioner::verdict::Verdict;
use tokio_util::sync::CancellationToken;

/// Longest wait for anything in this suite: all of it is local and quick.
const DEADLINE: Duration = Duration::from_secs(30);

/// What a reader of the store finds about one submission.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    state: SubmissionState,
    score: Option<f64>,
    failed_subtasks: Option<Vec<u32>>,
    /// The `testing` and `tested` messages, in order.
    results: Vec<Message>,
}

/// A store under test.
#[async_trait]
trait Store: Send + Sync {
    /// A worker's handle on the store. Each call may be another worker sharing the store.
    async fn worker(&self) -> Arc<dyn Interface>;
    /// Queues submissions, as a front end would.
    async fn enqueue(&self, submissions: &[Submission]);
    /// What the store holds about `id`.
    async fn stored(&self, id: &str) -> Stored;
}

// ---------------------------------------------------------------------------------------------
// Memory: the message log, read through the mapping of SPEC §6 (the reference model).

struct MemoryStore(Arc<MemoryInterface>);

impl MemoryStore {
    fn new() -> Self {
        MemoryStore(Arc::new(MemoryInterface::new()))
    }
}

/// SPEC §6: what a store holds after these messages.
fn fold(messages: &[Message]) -> Stored {
    let mut stored = Stored {
        state: SubmissionState::Queued,
        score: None,
        failed_subtasks: None,
        results: Vec::new(),
    };
    for message in messages {
        match &message.body {
            Body::Executing => stored.state = SubmissionState::Judging,
            Body::Compiling => stored.state = SubmissionState::Compiling,
            Body::Compiled {
                result: CompileResult::Success,
                ..
            } => stored.state = SubmissionState::Compiled,
            Body::Compiled {
                result: CompileResult::Error,
                ..
            } => {
                stored.state = SubmissionState::CompileError;
                stored.score = Some(0.0);
            }
            Body::Testing { .. } | Body::Tested { .. } => stored.results.push(message.clone()),
            Body::Done {
                score,
                failed_subtasks,
            } => {
                if stored.state != SubmissionState::CompileError {
                    stored.state = SubmissionState::Judged;
                }
                stored.score = Some(score.unwrap_or(0.0));
                stored.failed_subtasks = failed_subtasks.clone();
            }
            Body::Error { .. } => stored.state = SubmissionState::Error,
            Body::Invalid { .. } => stored.state = SubmissionState::InvalidData,
        }
    }
    stored
}

#[async_trait]
impl Store for MemoryStore {
    async fn worker(&self) -> Arc<dyn Interface> {
        self.0.clone()
    }

    async fn enqueue(&self, submissions: &[Submission]) {
        for s in submissions {
            self.0.push(s.clone());
        }
    }

    async fn stored(&self, id: &str) -> Stored {
        fold(&self.0.messages_of(id))
    }
}

// ---------------------------------------------------------------------------------------------
// Postgres: a database of its own per test; every worker is a new interface instance.

struct PgStore {
    front: PostgresInterface,
    workers: Mutex<Vec<Arc<PostgresInterface>>>,
    // Last: dropped after every connection above.
    db: pg::TestDatabase,
}

impl PgStore {
    async fn new() -> Self {
        let db = pg::TestDatabase::create().await;
        PgStore {
            front: db.interface().await,
            workers: Mutex::new(Vec::new()),
            db,
        }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn worker(&self) -> Arc<dyn Interface> {
        let worker = Arc::new(self.db.interface().await);
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(worker.clone());
        worker
    }

    async fn enqueue(&self, submissions: &[Submission]) {
        self.front.enqueue(submissions).await.expect("enqueue");
    }

    async fn stored(&self, id: &str) -> Stored {
        let s = self
            .front
            .status(id)
            .await
            .expect("status")
            .unwrap_or_else(|| panic!("submission {id} is not stored"));
        Stored {
            state: s.state,
            score: s.score,
            failed_subtasks: s.failed_subtasks,
            results: s.results,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Firestore: a project of its own per test on the emulator; every worker is a new interface
// instance (counted in info/info.judgeCount, as a worker process would be).

struct FirestoreStore {
    project: String,
    front: FirestoreInterface,
    workers: Mutex<Vec<Arc<FirestoreInterface>>>,
}

impl FirestoreStore {
    async fn new() -> Self {
        let project = firestore_emulator::new_project();
        FirestoreStore {
            front: firestore_emulator::front(&project).await,
            project,
            workers: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl Store for FirestoreStore {
    async fn worker(&self) -> Arc<dyn Interface> {
        let worker = FirestoreInterface::connect(firestore_emulator::config(&self.project))
            .await
            .expect("connect a worker");
        let worker = Arc::new(worker);
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(worker.clone());
        worker
    }

    async fn enqueue(&self, submissions: &[Submission]) {
        self.front.enqueue(submissions).await.expect("enqueue");
    }

    async fn stored(&self, id: &str) -> Stored {
        let s = self
            .front
            .status(id)
            .await
            .expect("status")
            .unwrap_or_else(|| panic!("submission {id} is not stored"));
        Stored {
            state: s.state,
            score: s.score,
            failed_subtasks: s.failed_subtasks,
            results: s.results,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

fn submission(id: &str) -> Submission {
    Submission {
        id: id.into(),
        problem: "test-base".into(),
        language: "python-3.11".into(),
        source_code: "a, b = map(int, input().split())\nprint(a + b)\n".into(),
        files: Vec::new(),
        run: None,
    }
}

fn message(id: &str, body: Body) -> Message {
    Message::new(id, body)
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

async fn next(worker: &dyn Interface) -> Submission {
    within("a submission", worker.next())
        .await
        .expect("next")
        .expect("a submission, not the end of the stream")
}

async fn send(worker: &dyn Interface, id: &str, body: Body) -> Sent {
    worker.send(&message(id, body)).await.expect("send")
}

/// Sends every message after the claim, each expected to be recorded.
async fn report(worker: &dyn Interface, id: &str, bodies: &[Body]) {
    for body in bodies {
        assert_eq!(
            send(worker, id, body.clone()).await,
            Sent::Recorded,
            "{id}: {body:?}"
        );
    }
}

fn tested(test_case: u32, subtask: Option<u32>, result: Verdict) -> Body {
    Body::Tested {
        test_case,
        subtask,
        result,
        time: Some(12),
        memory: Some(3400),
        // Every store keeps a checker's partial score with the result.
        score: (result == Verdict::Wrong).then_some(0.25),
        output: None,
    }
}

/// A run of tests: `testing`, `tested` for each verdict, in subtasks of `per_subtask` tests.
fn tests(verdicts: &[Verdict], per_subtask: Option<u32>) -> Vec<Body> {
    let mut bodies = Vec::new();
    for (i, &verdict) in verdicts.iter().enumerate() {
        let test_case = i as u32 + 1;
        let subtask = per_subtask.map(|n| i as u32 / n + 1);
        bodies.push(Body::Testing { test_case, subtask });
        bodies.push(tested(test_case, subtask, verdict));
    }
    bodies
}

mod cases {
    use super::*;

    pub async fn next_yields_a_queued_submission(store: &dyn Store) {
        let worker = store.worker().await;
        let s = submission("s-next");
        store.enqueue(std::slice::from_ref(&s)).await;
        assert_eq!(next(&*worker).await, s);
        assert_eq!(store.stored("s-next").await.state, SubmissionState::Queued);
    }

    pub async fn next_waits_for_a_submission_to_arrive(store: &dyn Store) {
        let worker = store.worker().await;
        let waiting = tokio::spawn({
            let worker = worker.clone();
            async move { next(&*worker).await }
        });
        tokio::task::yield_now().await;
        store.enqueue(&[submission("s-late")]).await;
        assert_eq!(within("next", waiting).await.unwrap().id, "s-late");
    }

    pub async fn executing_claims_once(store: &dyn Store) {
        let (first, second) = (store.worker().await, store.worker().await);
        store.enqueue(&[submission("s-claim")]).await;
        assert_eq!(next(&*first).await.id, "s-claim");
        assert_eq!(
            send(&*first, "s-claim", Body::Executing).await,
            Sent::Recorded
        );
        assert_eq!(
            send(&*first, "s-claim", Body::Executing).await,
            Sent::NotTaken
        );
        assert_eq!(
            send(&*second, "s-claim", Body::Executing).await,
            Sent::NotTaken
        );
        assert_eq!(
            store.stored("s-claim").await.state,
            SubmissionState::Judging
        );
        // The refused claims changed nothing: the holder goes on.
        report(&*first, "s-claim", &[Body::Compiling]).await;
        assert_eq!(
            store.stored("s-claim").await.state,
            SubmissionState::Compiling
        );
    }

    pub async fn messages_are_recorded_in_order(store: &dyn Store) {
        let worker = store.worker().await;
        store.enqueue(&[submission("s-order")]).await;
        assert_eq!(
            send(&*worker, "s-order", Body::Executing).await,
            Sent::Recorded
        );
        let run = tests(
            &[
                Verdict::Accepted,
                Verdict::Wrong,
                Verdict::TimeLimitExceeded,
            ],
            None,
        );
        report(&*worker, "s-order", &[Body::Compiling]).await;
        report(
            &*worker,
            "s-order",
            &[Body::Compiled {
                result: CompileResult::Success,
                compile_output: None,
            }],
        )
        .await;
        assert_eq!(
            store.stored("s-order").await.state,
            SubmissionState::Compiled
        );
        report(&*worker, "s-order", &run).await;
        let done = Body::Done {
            score: Some(0.0),
            failed_subtasks: None,
        };
        report(&*worker, "s-order", &[done]).await;
        let stored = store.stored("s-order").await;
        let expected: Vec<Message> = run.into_iter().map(|b| message("s-order", b)).collect();
        assert_eq!(stored.results, expected);
        assert_eq!(stored.state, SubmissionState::Judged);
        assert_eq!(stored.score, Some(0.0));
    }

    pub async fn terminal_states_map_to_the_store(store: &dyn Store) {
        let worker = store.worker().await;
        let ids = ["t-compile-error", "t-invalid", "t-error", "t-subtasks"];
        let all: Vec<Submission> = ids.iter().map(|id| submission(id)).collect();
        store.enqueue(&all).await;
        for id in ids {
            assert_eq!(send(&*worker, id, Body::Executing).await, Sent::Recorded);
        }
        let compiled_error = Body::Compiled {
            result: CompileResult::Error,
            compile_output: Some("main.c:1: error".into()),
        };
        report(
            &*worker,
            "t-compile-error",
            &[Body::Compiling, compiled_error],
        )
        .await;
        let stored = store.stored("t-compile-error").await;
        assert_eq!(stored.state, SubmissionState::CompileError);
        assert_eq!(stored.score, Some(0.0));
        let done = Body::Done {
            score: None,
            failed_subtasks: None,
        };
        report(&*worker, "t-compile-error", &[done]).await;
        let stored = store.stored("t-compile-error").await;
        assert_eq!(
            (stored.state, stored.score, stored.failed_subtasks),
            (SubmissionState::CompileError, Some(0.0), None)
        );

        let invalid = Body::Invalid {
            reason: Some("unknown language".into()),
        };
        report(&*worker, "t-invalid", &[invalid]).await;
        assert_eq!(
            store.stored("t-invalid").await.state,
            SubmissionState::InvalidData
        );

        let error = Body::Error {
            reason: Some("the sandbox failed".into()),
        };
        report(&*worker, "t-error", &[Body::Compiling, error]).await;
        assert_eq!(store.stored("t-error").await.state, SubmissionState::Error);

        let verdicts = [
            Verdict::Accepted,
            Verdict::Accepted,
            Verdict::MemoryLimitExceeded,
            Verdict::Error,
        ];
        let mut bodies = tests(&verdicts, Some(2));
        bodies.push(Body::Done {
            score: Some(0.5),
            failed_subtasks: Some(vec![2]),
        });
        report(&*worker, "t-subtasks", &bodies).await;
        let stored = store.stored("t-subtasks").await;
        assert_eq!(stored.state, SubmissionState::Judged);
        assert_eq!(stored.score, Some(0.5));
        assert_eq!(stored.failed_subtasks, Some(vec![2]));
        assert_eq!(stored.results.len(), 8);
        assert_eq!(
            stored.results[5],
            message(
                "t-subtasks",
                tested(3, Some(2), Verdict::MemoryLimitExceeded)
            )
        );
    }

    pub async fn finished_submissions_are_not_offered_again(store: &dyn Store) {
        let worker = store.worker().await;
        store.enqueue(&[submission("f-first")]).await;
        assert_eq!(next(&*worker).await.id, "f-first");
        assert_eq!(
            send(&*worker, "f-first", Body::Executing).await,
            Sent::Recorded
        );
        let done = Body::Done {
            score: Some(1.0),
            failed_subtasks: None,
        };
        report(&*worker, "f-first", &[done]).await;
        store.enqueue(&[submission("f-second")]).await;
        assert_eq!(next(&*worker).await.id, "f-second");
        assert_eq!(store.stored("f-first").await.state, SubmissionState::Judged);
    }

    /// 20 submissions, 4 workers claiming as fast as they can: each submission is taken by
    /// exactly one of them, and every one is taken.
    pub async fn concurrent_claimers_take_each_submission_once(store: &dyn Store) {
        const SUBMISSIONS: usize = 20;
        const CLAIMERS: usize = 4;
        let all: Vec<Submission> = (0..SUBMISSIONS)
            .map(|i| submission(&format!("c-{i:02}")))
            .collect();
        store.enqueue(&all).await;
        let claims: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let all_taken = CancellationToken::new();
        let mut claimers = Vec::new();
        for claimer in 0..CLAIMERS {
            let worker = store.worker().await;
            let (claims, all_taken) = (claims.clone(), all_taken.clone());
            claimers.push(tokio::spawn(async move {
                let mut mine = 0;
                loop {
                    let s = tokio::select! {
                        s = worker.next() => s.expect("next").expect("a submission"),
                        _ = all_taken.cancelled() => return mine,
                    };
                    if send(&*worker, &s.id, Body::Executing).await != Sent::Recorded {
                        continue;
                    }
                    mine += 1;
                    let end = Body::Done {
                        score: Some(1.0),
                        failed_subtasks: None,
                    };
                    assert_eq!(send(&*worker, &s.id, end).await, Sent::Recorded);
                    let mut claims = claims.lock().unwrap();
                    *claims.entry(s.id.clone()).or_default() += 1;
                    let taken = claims.len();
                    drop(claims);
                    eprintln!("claimer {claimer} took {}", s.id);
                    if taken == SUBMISSIONS {
                        all_taken.cancel();
                    }
                }
            }));
        }
        within("every submission to be claimed", all_taken.cancelled()).await;
        let mut total = 0;
        for claimer in claimers {
            total += within("the claimers to stop", claimer).await.unwrap();
        }
        let claims = claims.lock().unwrap().clone();
        assert_eq!(total, SUBMISSIONS, "claims: {claims:?}");
        let ids: HashSet<&String> = claims.keys().collect();
        assert_eq!(ids.len(), SUBMISSIONS);
        assert!(claims.values().all(|&n| n == 1), "claims: {claims:?}");
        for s in &all {
            assert_eq!(store.stored(&s.id).await.state, SubmissionState::Judged);
        }
    }
}

macro_rules! suite {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            suite!(@cases $make;
                next_yields_a_queued_submission,
                next_waits_for_a_submission_to_arrive,
                executing_claims_once,
                messages_are_recorded_in_order,
                terminal_states_map_to_the_store,
                finished_submissions_are_not_offered_again,
                concurrent_claimers_take_each_submission_once,
            );
        }
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make;
                cases::$case(&store).await;
            }
        )*
    };
}

suite!(memory, MemoryStore::new());
suite!(postgres, PgStore::new().await);
suite!(firestore, FirestoreStore::new().await);
