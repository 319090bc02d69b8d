//! The Postgres interface against a real PostgreSQL (`scripts/postgres-up`): recovery through
//! the library (leases, fencing, retries, a server restart), then end to end with real
//! `executioner worker --interface postgres` processes judging in Docker (they need the sandbox:
//! Docker, the images, `EXECUTIONER_DEMOTER`, as `scripts/test` sets up).
//!
//! Tests that restart the server hold [`SERVER`] exclusively; every other test of this binary
//! holds it shared, so no test sees the restart of another one.

mod pg;
mod worker_process;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executioner::interface::{Interface, Sent};
use executioner::protocol::{Body, Message, Submission};
use executioner::store::postgres::queue::{StoredSubmission, SubmissionState};
use executioner::store::postgres::PostgresInterface;
use executioner::verdict::Verdict;
use nix::sys::signal::Signal;
use pg::{wait_for, TestDatabase};
use tokio::sync::RwLock;
use worker_process::WorkerProcess;

static SERVER: RwLock<()> = RwLock::const_new(());

/// Longest wait for a step of the library tests: everything is local and quick.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

fn submission(id: &str, source: &str) -> Submission {
    Submission {
        id: id.into(),
        problem: "test-base".into(),
        language: "python-3.11".into(),
        source_code: source.into(),
        files: Vec::new(),
        run: None,
    }
}

const A_PLUS_B: &str = "a, b = map(int, input().split())\nprint(a + b)\n";

async fn send(worker: &dyn Interface, id: &str, body: Body) -> Sent {
    worker
        .send(&Message::new(id, body))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

async fn status(interface: &PostgresInterface, id: &str) -> StoredSubmission {
    interface
        .status(id)
        .await
        .expect("status")
        .unwrap_or_else(|| panic!("{id} is not stored"))
}

/// `testing`/`tested` for tests 1..=n, all accepted.
fn passing_tests(n: u32) -> Vec<Body> {
    (1..=n)
        .flat_map(|test_case| {
            [
                Body::Testing {
                    test_case,
                    subtask: None,
                },
                Body::Tested {
                    test_case,
                    subtask: None,
                    result: Verdict::Accepted,
                    time: Some(10),
                    memory: Some(2000),
                    score: None,
                    output: None,
                },
            ]
        })
        .collect()
}

fn done(score: f64) -> Body {
    Body::Done {
        score: Some(score),
        failed_subtasks: None,
    }
}

/// Makes `id`'s lease run out now, as if its holder had stopped renewing it.
async fn expire_lease(db: &TestDatabase, id: &str) {
    let mut conn = db.connection().await;
    sqlx::query(
        "UPDATE submissions SET lease_expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut conn)
    .await
    .expect("expire the lease");
}

fn restart_server() {
    let status = Command::new("pg_ctlcluster")
        .args(["15", "main", "restart"])
        .status()
        .expect("run pg_ctlcluster (the tests run where scripts/postgres-up did)");
    assert!(status.success(), "pg_ctlcluster restart: {status}");
}

// ---------------------------------------------------------------------------------------------
// Recovery, through the library.

/// A worker that stops renewing (it hangs, or its lease is simply gone) loses the submission
/// to the next claimer; its later writes change nothing, and the new attempt starts clean.
#[tokio::test]
async fn an_expired_claim_is_taken_over_and_the_old_holder_is_fenced() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    // A long lease: its heartbeat will not renew it while the test runs.
    let mut slow = db.config();
    slow.lease = Duration::from_secs(120);
    let (old, new) = (db.interface_with(slow).await, db.interface().await);
    old.enqueue(&[submission("x", A_PLUS_B)]).await.unwrap();
    assert_eq!(send(&old, "x", Body::Executing).await, Sent::Recorded);
    for body in passing_tests(1) {
        assert_eq!(send(&old, "x", body).await, Sent::Recorded);
    }
    assert_eq!(send(&new, "x", Body::Executing).await, Sent::NotTaken);

    expire_lease(&db, "x").await;
    assert_eq!(within("next", new.next()).await.unwrap().unwrap().id, "x");
    assert_eq!(send(&new, "x", Body::Executing).await, Sent::Recorded);
    let taken = status(&new, "x").await;
    assert_eq!((taken.state, taken.attempts), (SubmissionState::Judging, 2));
    assert!(taken.results.is_empty(), "{:?}", taken.results);

    let late = Message::new(
        "x",
        Body::Testing {
            test_case: 2,
            subtask: None,
        },
    );
    let refused = old.send(&late).await.expect_err("the old holder is fenced");
    assert!(refused.reason.contains("lost"), "{refused}");
    assert!(old.send(&Message::new("x", done(1.0))).await.is_err());

    for body in passing_tests(2).into_iter().chain([done(1.0)]) {
        assert_eq!(send(&new, "x", body).await, Sent::Recorded);
    }
    let finished = status(&new, "x").await;
    assert_eq!(finished.state, SubmissionState::Judged);
    assert_eq!(finished.score, Some(1.0));
    let expected: Vec<Message> = passing_tests(2)
        .into_iter()
        .map(|b| Message::new("x", b))
        .collect();
    assert_eq!(finished.results, expected);
}

/// A worker that vanishes (its interface gone, no more heartbeats): the submission is offered
/// again once the lease has passed, without any notification.
#[tokio::test]
async fn a_vanished_workers_submission_returns_when_its_lease_expires() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let mut short = db.config();
    short.lease = Duration::from_secs(2);
    short.sweep_interval = Duration::from_secs(3600);
    let survivor = db.interface_with(short.clone()).await;
    {
        let vanishing = db.interface_with(short).await;
        vanishing
            .enqueue(&[submission("v", A_PLUS_B)])
            .await
            .unwrap();
        assert_eq!(send(&vanishing, "v", Body::Executing).await, Sent::Recorded);
        for body in passing_tests(1) {
            assert_eq!(send(&vanishing, "v", body).await, Sent::Recorded);
        }
        vanishing.close().await;
    }
    let started = Instant::now();
    assert_eq!(
        within("the lease to expire", survivor.next())
            .await
            .unwrap()
            .unwrap()
            .id,
        "v"
    );
    eprintln!("offered again after {:?}", started.elapsed());
    assert_eq!(send(&survivor, "v", Body::Executing).await, Sent::Recorded);
    for body in passing_tests(3).into_iter().chain([done(1.0)]) {
        assert_eq!(send(&survivor, "v", body).await, Sent::Recorded);
    }
    let finished = status(&survivor, "v").await;
    assert_eq!(
        (finished.state, finished.attempts),
        (SubmissionState::Judged, 2)
    );
    assert_eq!(finished.results.len(), 6);
}

/// `error` is tried again after a backoff, until the retries are used up; then it stays.
#[tokio::test]
async fn errors_are_retried_until_the_retries_are_used_up() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let mut config = db.config();
    config.retries = 1;
    config.retry_backoff = Duration::from_millis(300);
    let worker = db.interface_with(config).await;
    worker.enqueue(&[submission("e", A_PLUS_B)]).await.unwrap();
    let error = || Body::Error {
        reason: Some("the sandbox failed".into()),
    };
    for attempt in 1..=2 {
        assert_eq!(
            within("next", worker.next()).await.unwrap().unwrap().id,
            "e"
        );
        assert_eq!(send(&worker, "e", Body::Executing).await, Sent::Recorded);
        assert_eq!(send(&worker, "e", Body::Compiling).await, Sent::Recorded);
        assert_eq!(send(&worker, "e", error()).await, Sent::Recorded);
        let stored = status(&worker, "e").await;
        assert_eq!(
            (stored.state, stored.attempts),
            (SubmissionState::Error, attempt)
        );
        assert_eq!(stored.reason.as_deref(), Some("the sandbox failed"));
    }
    // Used up: a new submission comes next, and the failed one cannot be claimed any more.
    worker.enqueue(&[submission("f", A_PLUS_B)]).await.unwrap();
    assert_eq!(
        within("next", worker.next()).await.unwrap().unwrap().id,
        "f"
    );
    let other = db.interface().await;
    assert_eq!(send(&other, "e", Body::Executing).await, Sent::NotTaken);
    assert_eq!(status(&worker, "e").await.state, SubmissionState::Error);
}

/// A submission whose workers keep vanishing does not go round forever: once its retries are
/// used up, a heartbeat ends it with `error`.
#[tokio::test]
async fn a_submission_whose_workers_keep_vanishing_ends_in_error() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let mut config = db.config();
    config.retries = 0;
    config.lease = Duration::from_secs(120);
    let holder = db.interface_with(config.clone()).await;
    holder.enqueue(&[submission("z", A_PLUS_B)]).await.unwrap();
    assert_eq!(send(&holder, "z", Body::Executing).await, Sent::Recorded);
    holder.close().await;
    expire_lease(&db, "z").await;
    config.lease = Duration::from_secs(1); // heartbeats every 1/3 s
    let watcher = db.interface_with(config).await;
    let stored = wait_for(
        &db,
        "z to be abandoned",
        DEADLINE,
        Duration::from_secs(1),
        || async {
            Some(status(&watcher, "z").await).filter(|s| s.state == SubmissionState::Error)
        },
    )
    .await
    .unwrap();
    assert!(
        stored.reason.as_deref().unwrap_or("").contains("abandoned"),
        "{stored:?}"
    );
    assert_eq!(send(&watcher, "z", Body::Executing).await, Sent::NotTaken);
}

/// A new submission wakes a waiting `next()` through NOTIFY, with no sweep to fall back on;
/// one whose notification was lost is found by the sweep.
#[tokio::test]
async fn new_submissions_are_noticed_by_notification_and_by_the_sweep() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let mut config = db.config();
    config.sweep_interval = Duration::from_secs(3600);
    let worker = Arc::new(db.interface_with(config).await);
    let waiting = tokio::spawn({
        let worker = worker.clone();
        async move { worker.next().await }
    });
    let front = db.interface().await;
    front.enqueue(&[submission("n", A_PLUS_B)]).await.unwrap();
    let offered = within("the notification", waiting).await.unwrap().unwrap();
    assert_eq!(offered.unwrap().id, "n");
    assert_eq!(send(&*worker, "n", Body::Executing).await, Sent::Recorded);

    let mut config = db.config();
    config.sweep_interval = Duration::from_millis(200);
    let sweeper = Arc::new(db.interface_with(config).await);
    let mut conn = db.connection().await;
    sqlx::query("ALTER TABLE submissions DISABLE TRIGGER submissions_queued_notify")
        .execute(&mut conn)
        .await
        .unwrap();
    let waiting = tokio::spawn({
        let sweeper = sweeper.clone();
        async move { sweeper.next().await }
    });
    front
        .enqueue(&[submission("quiet", A_PLUS_B)])
        .await
        .unwrap();
    let found = within("the sweep", waiting).await.unwrap().unwrap();
    assert_eq!(found.unwrap().id, "quiet");
}

/// The server restarts in the middle of an attempt: the writes after it go through (retried),
/// none is doubled, and new submissions are noticed again.
#[tokio::test]
async fn an_attempt_survives_a_server_restart() {
    let _server = SERVER.write().await;
    let db = TestDatabase::create().await;
    let mut config = db.config();
    config.lease = Duration::from_secs(30);
    config.sweep_interval = Duration::from_secs(3600);
    let worker = Arc::new(db.interface_with(config).await);
    worker.enqueue(&[submission("r", A_PLUS_B)]).await.unwrap();
    assert_eq!(send(&*worker, "r", Body::Executing).await, Sent::Recorded);
    let tests = passing_tests(3);
    for body in &tests[..3] {
        assert_eq!(send(&*worker, "r", body.clone()).await, Sent::Recorded);
    }
    restart_server();
    for body in tests[3..].iter().cloned().chain([done(1.0)]) {
        assert_eq!(send(&*worker, "r", body).await, Sent::Recorded);
    }
    let finished = status(&worker, "r").await;
    assert_eq!(
        (finished.state, finished.attempts),
        (SubmissionState::Judged, 1)
    );
    let expected: Vec<Message> = tests.into_iter().map(|b| Message::new("r", b)).collect();
    assert_eq!(finished.results, expected);
    // The LISTEN connection is back: a new submission wakes `next()` (there is no sweep).
    let waiting = tokio::spawn({
        let worker = worker.clone();
        async move { worker.next().await }
    });
    let front = db.interface().await;
    front.enqueue(&[submission("r2", A_PLUS_B)]).await.unwrap();
    let offered = within("the notification after the restart", waiting).await;
    assert_eq!(offered.unwrap().unwrap().unwrap().id, "r2");
}

// ---------------------------------------------------------------------------------------------
// End to end: `executioner worker --interface postgres` processes judging in Docker.

/// `executioner worker --interface postgres` on the database of `db`.
fn start_worker(db: &TestDatabase, lease_seconds: u64, concurrency: usize) -> WorkerProcess {
    WorkerProcess::start(
        &["--interface", "postgres"],
        &[("DATABASE_URL", &db.url)],
        lease_seconds,
        concurrency,
    )
}

/// States a submission ends in (an `error` with a retry to come is not an end).
const FINAL: &str = "(state IN ('judged', 'invalidData')
    OR (state = 'compileError' AND lease_expires_at IS NULL)
    OR (state = 'error' AND not_before IS NULL))";

async fn count_final(db: &TestDatabase) -> Option<i64> {
    let mut conn = db.connection().await;
    sqlx::query_scalar(&format!("SELECT count(*) FROM submissions WHERE {FINAL}"))
        .fetch_one(&mut conn)
        .await
        .ok()
}

/// Waits until `n` submissions have ended, telling the workers' logs if not in time.
async fn wait_final(db: &TestDatabase, n: i64, deadline: Duration, workers: &[&WorkerProcess]) {
    let waited = wait_for(
        db,
        "the submissions to end",
        deadline,
        Duration::from_secs(2),
        || async { count_final(db).await.filter(|&done| done >= n) },
    )
    .await;
    if let Err(e) = waited {
        panic!("{e}; workers:\n{}", worker_process::logs(workers));
    }
}

/// What `status` must find for a submission judged exactly once: its state, score, and the
/// test results 1..=3 in order with these verdicts.
fn assert_judged(id: &str, stored: &StoredSubmission, verdict: Verdict) {
    let score = if verdict == Verdict::Accepted {
        1.0
    } else {
        0.0
    };
    assert_eq!(
        (stored.state, stored.score),
        (SubmissionState::Judged, Some(score)),
        "{id}: {stored:?}"
    );
    let shape: Vec<(String, u32, Option<Verdict>)> = stored
        .results
        .iter()
        .map(|m| match &m.body {
            Body::Testing { test_case, .. } => ("testing".into(), *test_case, None),
            Body::Tested {
                test_case, result, ..
            } => ("tested".into(), *test_case, Some(*result)),
            other => panic!("{id}: not a result: {other:?}"),
        })
        .collect();
    let expected: Vec<(String, u32, Option<Verdict>)> = (1..=3)
        .flat_map(|t| {
            [
                ("testing".into(), t, None),
                ("tested".into(), t, Some(verdict)),
            ]
        })
        .collect();
    assert_eq!(shape, expected, "{id}");
}

/// 3 workers × 2 at a time share one database: 300 submissions, each judged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_judge_300_submissions_exactly_once() {
    const SUBMISSIONS: usize = 300;
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let front = db.interface().await;
    let wrong = "a, b = map(int, input().split())\nprint(a + b + 1)\n";
    let all: Vec<(Submission, Option<Verdict>)> = (0..SUBMISSIONS)
        .map(|i| {
            let id = format!("s-{i:03}");
            match i % 30 {
                7 => (submission(&id, wrong), Some(Verdict::Wrong)),
                19 => {
                    let mut s = submission(&id, A_PLUS_B);
                    s.language = "cobol-1960".into();
                    (s, None)
                }
                _ => (submission(&id, A_PLUS_B), Some(Verdict::Accepted)),
            }
        })
        .collect();
    let submissions: Vec<Submission> = all.iter().map(|(s, _)| s.clone()).collect();
    front.enqueue(&submissions).await.unwrap();
    let started = Instant::now();
    let workers: Vec<WorkerProcess> = (0..3).map(|_| start_worker(&db, 30, 2)).collect();
    let refs: Vec<&WorkerProcess> = workers.iter().collect();
    wait_final(&db, SUBMISSIONS as i64, Duration::from_secs(1200), &refs).await;
    let took = started.elapsed();
    eprintln!(
        "{SUBMISSIONS} submissions judged by 3 workers × 2 in {took:?} ({:.2} s each)",
        took.as_secs_f64() / SUBMISSIONS as f64
    );
    for (s, verdict) in &all {
        let stored = status(&front, &s.id).await;
        assert_eq!(stored.attempts, 1, "{}: claimed more than once", s.id);
        match verdict {
            Some(verdict) => assert_judged(&s.id, &stored, *verdict),
            None => assert_eq!(stored.state, SubmissionState::InvalidData, "{}", s.id),
        }
    }
    let mut conn = db.connection().await;
    let by_worker: Vec<(String, i64)> =
        sqlx::query_as("SELECT claimed_by, count(*) FROM submissions GROUP BY claimed_by")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    eprintln!("claims per worker: {by_worker:?}");
    for worker in workers {
        let status = worker.stop(Duration::from_secs(60));
        assert!(status.success(), "worker exit: {status}");
    }
}

/// A slow a+b: long enough to kill a worker in the middle of judging it.
const SLOW_A_PLUS_B: &str =
    "import time\ntime.sleep(1.5)\na, b = map(int, input().split())\nprint(a + b)\n";

/// A worker killed (SIGKILL) in the middle of judging: its submission is finished by another
/// worker once the lease has passed, with complete, ordered, undoubled results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_submission_is_finished_by_another() {
    let _server = SERVER.read().await;
    let db = TestDatabase::create().await;
    let front = db.interface().await;
    front
        .enqueue(&[submission("k", SLOW_A_PLUS_B)])
        .await
        .unwrap();
    let doomed = start_worker(&db, 3, 1);
    wait_for(
        &db,
        "the first worker to start testing",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || async {
            let s = front.status("k").await.ok().flatten()?;
            (!s.results.is_empty()).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; worker:\n{}", doomed.log_tail()));
    doomed.signal(Signal::SIGKILL);
    let during = status(&front, "k").await;
    assert!(during.results.len() < 6, "killed too late: {during:?}");
    drop(doomed);
    let heir = start_worker(&db, 3, 1);
    wait_final(&db, 1, Duration::from_secs(120), &[&heir]).await;
    let stored = status(&front, "k").await;
    assert_eq!(stored.attempts, 2);
    assert_judged("k", &stored, Verdict::Accepted);
    assert!(heir.stop(Duration::from_secs(60)).success());
}

/// The server restarts while 3 workers judge: they reconnect, and every submission is judged
/// exactly once with complete results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_server_restart() {
    const SUBMISSIONS: usize = 24;
    let _server = SERVER.write().await;
    let db = TestDatabase::create().await;
    let front = db.interface().await;
    let all: Vec<Submission> = (0..SUBMISSIONS)
        .map(|i| {
            let source = if i % 2 == 0 { SLOW_A_PLUS_B } else { A_PLUS_B };
            submission(&format!("r-{i:02}"), source)
        })
        .collect();
    front.enqueue(&all).await.unwrap();
    // A lease longer than the restart takes.
    let workers: Vec<WorkerProcess> = (0..3).map(|_| start_worker(&db, 15, 2)).collect();
    let refs: Vec<&WorkerProcess> = workers.iter().collect();
    wait_final(&db, 4, Duration::from_secs(300), &refs).await;
    restart_server();
    eprintln!("server restarted");
    wait_final(&db, SUBMISSIONS as i64, Duration::from_secs(600), &refs).await;
    let mut attempts = BTreeMap::new();
    for s in &all {
        let stored = status(&front, &s.id).await;
        *attempts.entry(stored.attempts).or_insert(0) += 1;
        assert_judged(&s.id, &stored, Verdict::Accepted);
    }
    eprintln!("submissions by attempts: {attempts:?}");
    let retried: usize = workers
        .iter()
        .map(|w| w.log_all().matches("trying again").count())
        .sum();
    eprintln!("writes retried across the restart: {retried}");
    for worker in workers {
        let status = worker.stop(Duration::from_secs(60));
        assert!(status.success(), "worker exit: {status}");
    }
}
