//! Workflows over the Postgres store, against a real PostgreSQL (`scripts/postgres-up`) and the
//! real judge (Docker, the demoter, the language images, as `scripts/test` sets them up): a
//! rejudge replaces the stored results of the submissions it judges, and a rejudge whose
//! process is killed mid-way is continued from the database by the next process.

mod judging;
mod pg;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use executioner::interface::SubmissionState;
use executioner::interface::{Interface, Sent};
use executioner::protocol::{Body, Message};
use executioner::store::postgres::PostgresInterface;
use executioner::store::postgres::{PostgresSubmissions, PostgresWorkflowStore};
use executioner::store::WorkflowStore;
use executioner::verdict::Verdict;
use executioner::workflow::rejudge::{self, Progress, Selection};
use executioner::workflow::runner::Outcome;
use executioner::workflow::{Definition, Env, Runner, Settings};
use judging::{problems, submission};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pg::{wait_for, TestDatabase};
use serde_json::Value;
use sqlx::Row;
use tokio_util::sync::CancellationToken;

/// For a whole rejudge: compiling and running a few programs, TLEs included.
const DEADLINE: Duration = Duration::from_secs(600);
/// How often a wait on something that sends no notification (a workflow snapshot) looks again.
const RECHECK: Duration = Duration::from_millis(200);

async fn send(interface: &dyn Interface, id: &str, body: Body) -> Sent {
    interface
        .send(&Message::new(id, body))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// Judges `id` as a worker would have, long ago and wrongly: one wrong test, score 0.5.
async fn stale_result(worker: &PostgresInterface, id: &str) {
    assert_eq!(
        worker.next().await.unwrap().map(|s| s.id),
        Some(id.to_owned())
    );
    assert_eq!(send(worker, id, Body::Executing).await, Sent::Recorded);
    for body in one_wrong_test(0.5) {
        assert_eq!(send(worker, id, body).await, Sent::Recorded);
    }
}

/// What a worker sends after `executing` for one wrong test, then `done` with `score`.
fn one_wrong_test(score: f64) -> [Body; 3] {
    [
        Body::Testing {
            test_case: 1,
            subtask: None,
        },
        Body::Tested {
            test_case: 1,
            subtask: None,
            result: Verdict::Wrong,
            time: Some(1),
            memory: Some(1),
            score: None,
            output: None,
        },
        Body::Done {
            score: Some(score),
            failed_subtasks: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejudge_over_postgres_replaces_the_stored_results() {
    let db = TestDatabase::create().await;
    let interface = Arc::new(db.interface().await);
    let submissions = [
        submission("p1-accepted", "python-3.11", "accepted"),
        submission("p2-wrong", "python-3.11", "wrong"),
        submission("p3-accepted", "gcc-12", "accepted"),
        submission("p4-queued", "python-3.11", "accepted"),
        submission("p5-held", "python-3.11", "accepted"),
    ];
    interface.enqueue(&submissions).await.unwrap();
    // Old results for the first three; the fourth was never judged; the fifth is being judged
    // by a worker right now.
    for s in &submissions[..3] {
        stale_result(&interface, &s.id).await;
    }
    let worker = db.interface().await;
    let held = loop {
        let next = worker.next().await.unwrap().unwrap();
        if next.id == "p5-held" {
            break next;
        }
    };
    assert_eq!(
        send(&worker, &held.id, Body::Executing).await,
        Sent::Recorded
    );

    let results = Arc::new(PostgresSubmissions::new(interface.clone()));
    let store = Arc::new(PostgresWorkflowStore::new(&interface));
    let env = Env {
        judge: judging::judge().await,
        submissions: results.clone(),
        results: results.clone(),
        store: store.clone(),
    };
    let shutdown = CancellationToken::new();
    let runner = Runner::new(env, shutdown.clone());
    let definition = Definition::rejudge(
        &*results,
        Selection::Problem("test-base".into()),
        Settings::new(2, 2).with_backoff(Duration::from_millis(200), Duration::from_secs(1)),
        None,
    )
    .await
    .unwrap();
    let workflow = runner.create("rejudge-pg", definition).await.unwrap();
    if tokio::time::timeout(DEADLINE, workflow.wait_until(|wf| wf.is_finished()))
        .await
        .is_err()
    {
        panic!("the rejudge did not finish: {}", workflow.end_state());
    }
    assert_eq!(
        Progress::of(&workflow),
        Progress {
            total: 5,
            judged: 5,
            ..Progress::default()
        }
    );
    for s in &submissions {
        let stored = interface.status(&s.id).await.unwrap().unwrap();
        let want = if s.id.contains("wrong") { 0.0 } else { 1.0 };
        assert_eq!(
            (stored.state, stored.score),
            (SubmissionState::Judged, Some(want)),
            "{}",
            s.id
        );
        // test-base has 3 tests: the old single wrong result is gone.
        let verdicts: Vec<Verdict> = stored
            .results
            .iter()
            .filter_map(|m| match m.body {
                Body::Tested { result, .. } => Some(result),
                _ => None,
            })
            .collect();
        let verdict = if want == 1.0 {
            Verdict::Accepted
        } else {
            Verdict::Wrong
        };
        assert_eq!(verdicts, [verdict; 3], "{}", s.id);
        assert_eq!(stored.results.len(), 6, "{}", s.id);
    }
    // The worker that held p5 lost it: its late writes change nothing.
    assert!(worker
        .send(&Message::new(
            "p5-held",
            Body::Done {
                score: Some(0.0),
                failed_subtasks: None
            }
        ))
        .await
        .is_err());
    assert_eq!(
        interface.status("p5-held").await.unwrap().unwrap().score,
        Some(1.0)
    );

    // The workflow is stored, over, with its summary.
    shutdown.cancel();
    runner.wait().await;
    let stored = store.get("rejudge-pg").await.unwrap().unwrap();
    assert!(stored.over);
    assert_eq!(stored.definition["kind"], "rejudge");
    let view = runner.view("rejudge-pg").await.unwrap().unwrap();
    assert_eq!(view.outcome, Outcome::Succeeded);
    let summary: rejudge::Summary =
        serde_json::from_value(runner.result("rejudge-pg").await.unwrap().unwrap()).unwrap();
    assert_eq!(summary.judged.len(), 5);
    worker.close().await;
    interface.close().await;
}

/// `executioner workflow rejudge --database-url`, killed (by its handle) if the test ends
/// first.
struct Rejudge {
    child: Child,
    log: tempfile::NamedTempFile,
    out: tempfile::NamedTempFile,
}

impl Rejudge {
    fn start(db: &TestDatabase) -> Rejudge {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let out = tempfile::NamedTempFile::new().expect("an output file");
        let child = Command::new(env!("CARGO_BIN_EXE_executioner"))
            .args(["workflow", "rejudge", "--problem", "test-base"])
            .args(["--concurrency", "1", "--problems"])
            .arg(problems())
            .args(["--database-url", &db.url])
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("the output file"))
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("start executioner workflow rejudge");
        Rejudge { child, log, out }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its exit status, once it has exited.
    async fn exited(&mut self) -> std::process::ExitStatus {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the rejudge") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "the rejudge did not finish within {DEADLINE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Rejudge {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Step states of the stored snapshot of `workflow`.
async fn stored_steps(db: &TestDatabase, workflow: &str) -> Vec<(String, String)> {
    let mut conn = db.connection().await;
    let row = sqlx::query("SELECT snapshot::text AS snapshot FROM workflows WHERE name = $1")
        .bind(workflow)
        .fetch_optional(&mut conn)
        .await
        .unwrap();
    let Some(text) = row.and_then(|r| r.get::<Option<String>, _>("snapshot")) else {
        return Vec::new();
    };
    let snapshot: Value = serde_json::from_str(&text).unwrap();
    snapshot["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Who wrote each submission's result (`rejudge@host:pid`), by id.
async fn written_by(db: &TestDatabase) -> Vec<(String, Option<String>)> {
    let mut conn = db.connection().await;
    sqlx::query("SELECT id, claimed_by FROM submissions ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get("id"), r.get("claimed_by")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejudge_killed_mid_way_is_continued_from_the_database() {
    let db = TestDatabase::create().await;
    let interface = db.interface().await;
    // One at a time: the second burns its CPU limit on each test, which leaves time to kill
    // the process while it runs, after the first has been judged.
    interface
        .enqueue(&[
            submission("k1-accepted", "python-3.11", "accepted"),
            submission("k2-tle", "python-3.11", "tle"),
            submission("k3-accepted", "gcc-12", "accepted"),
            submission("k4-wrong", "python-3.11", "wrong"),
        ])
        .await
        .unwrap();

    let first = Rejudge::start(&db);
    let found = wait_for(
        &db,
        "k1 judged and k2 running in the first process",
        DEADLINE,
        RECHECK,
        || async {
            let steps = stored_steps(&db, "rejudge-test-base").await;
            let state = |id: &str| {
                steps
                    .iter()
                    .find(|(step, _)| step == id)
                    .map(|(_, s)| s.clone())
            };
            (state("judge-k1-accepted").as_deref() == Some("succeeded")
                && state("judge-k2-tle").as_deref() == Some("running"))
            .then_some(())
        },
    )
    .await;
    if let Err(e) = found {
        panic!("{e}\n{}", first.log());
    }
    let first_pid = first.pid();
    kill(Pid::from_raw(first_pid), Signal::SIGKILL).expect("kill the first rejudge");
    drop(first);
    // Its session, and with it its hold on the workflow, ends with it.
    wait_for(
        &db,
        "the killed process's advisory lock to go",
        Duration::from_secs(30),
        RECHECK,
        || async {
            let mut conn = db.connection().await;
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(&mut conn)
            .await
            .ok()?;
            (held == 0).then_some(())
        },
    )
    .await
    .unwrap();

    let mut second = Rejudge::start(&db);
    let status = second.exited().await;
    assert!(
        status.success(),
        "the second rejudge failed ({status}):\n{}",
        second.log()
    );
    assert!(
        second.log().contains("continuing the interrupted rejudge"),
        "{}",
        second.log()
    );

    // k1 kept the result the first process wrote; the rest were judged by the second.
    let by = written_by(&db).await;
    let first_writer = format!(":{first_pid}");
    let second_writer = format!(":{}", second.pid());
    assert!(
        by[0]
            .1
            .as_deref()
            .is_some_and(|w| w.ends_with(&first_writer)),
        "{by:?}"
    );
    for (id, writer) in &by[1..] {
        assert!(
            writer
                .as_deref()
                .is_some_and(|w| w.ends_with(&second_writer)),
            "{id}: {by:?}"
        );
    }
    let steps = stored_steps(&db, "rejudge-test-base").await;
    assert!(steps.iter().all(|(_, s)| s == "succeeded"), "{steps:?}");
    for (id, want) in [
        ("k1-accepted", 1.0),
        ("k2-tle", 0.0),
        ("k3-accepted", 1.0),
        ("k4-wrong", 0.0),
    ] {
        let stored = interface.status(id).await.unwrap().unwrap();
        assert_eq!(
            (stored.state, stored.score),
            (SubmissionState::Judged, Some(want)),
            "{id}"
        );
    }
    // What the second process printed: the stored state of every submission it reports.
    let out = std::fs::read_to_string(second.out.path()).unwrap();
    let printed: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 4, "{out}");
    assert!(printed.iter().all(|p| p["state"] == "judged"), "{out}");
    interface.close().await;
}

/// A workflow's judging (`store::Judgings`) is a row of the queue that the workers take like a
/// submission (a worker of a standalone rejudge, `judgings_only`, takes nothing else) and that
/// no listing shows; queued again for its slot, it replaces the one left behind; forgotten, its
/// worker is fenced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judging_is_taken_by_the_workers_and_listed_nowhere() {
    use executioner::store::postgres::PostgresBackend;
    use executioner::store::{Backend, Listing};

    let db = TestDatabase::create().await;
    let interface = Arc::new(db.interface().await);
    // A contestant's submission, queued before the judgings.
    interface
        .enqueue(&[submission("a1", "python-3.11", "accepted")])
        .await
        .unwrap();
    let backend = PostgresBackend::new(interface.clone(), None, None);
    let shutdown = CancellationToken::new();
    let follower = backend.follow(shutdown.clone());
    let stores = backend.clone().workflow_stores();
    let judging = |key: &str| executioner::protocol::Submission {
        id: key.to_owned(),
        ..submission("a1", "python-3.11", "wrong")
    };
    stores
        .judgings
        .enqueue("wf/a1", judging("a1~old"))
        .await
        .unwrap();
    stores
        .judgings
        .enqueue("wf/a1", judging("a1~new"))
        .await
        .unwrap();
    assert_eq!(stores.judgings.progress("a1~old").await.unwrap(), None);
    assert_eq!(
        stores.judgings.progress("a1~new").await.unwrap(),
        Some(Vec::new())
    );

    // Listed nowhere, selected by no rejudge.
    let ids = |views: Vec<executioner::store::SubmissionView>| -> Vec<String> {
        views.into_iter().map(|v| v.id).collect()
    };
    assert_eq!(ids(backend.list().await.unwrap()), ["a1"]);
    assert_eq!(
        ids(backend.list_page(None, None, 10).await.unwrap()),
        ["a1"]
    );
    let selected = stores
        .submissions
        .select(&Selection::Problem("test-base".into()))
        .await
        .unwrap();
    assert_eq!(
        selected.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["a1"]
    );

    // A worker of judgings only takes the judging, not the older submission.
    let mut config = db.config();
    config.judgings_only = true;
    let worker = db.interface_with(config).await;
    let taken = worker.next().await.unwrap().unwrap();
    assert_eq!(taken.id, "a1~new");
    assert_eq!(taken.source_code, judging("a1~new").source_code);
    let mut bodies = vec![Body::Executing];
    bodies.extend(one_wrong_test(0.0));
    for body in &bodies {
        assert_eq!(send(&worker, "a1~new", body.clone()).await, Sent::Recorded);
    }
    let progress = stores.judgings.progress("a1~new").await.unwrap().unwrap();
    assert_eq!(
        progress.into_iter().map(|m| m.body).collect::<Vec<_>>(),
        bodies
    );
    assert_eq!(
        ids(backend.last_finished(10).await.unwrap()),
        Vec::<String>::new()
    );

    // Forgotten: gone, and a worker still at it is fenced out.
    let second = db
        .interface_with({
            let mut config = db.config();
            config.judgings_only = true;
            config
        })
        .await;
    stores
        .judgings
        .enqueue("wf/a2", judging("a2~k"))
        .await
        .unwrap();
    let taken = second.next().await.unwrap().unwrap();
    assert_eq!(taken.id, "a2~k");
    assert_eq!(send(&second, "a2~k", Body::Executing).await, Sent::Recorded);
    stores.judgings.forget("a2~k").await.unwrap();
    stores.judgings.forget("a2~k").await.unwrap();
    assert_eq!(stores.judgings.progress("a2~k").await.unwrap(), None);
    assert!(second
        .send(&Message::new(
            "a2~k",
            Body::Testing {
                test_case: 1,
                subtask: None
            }
        ))
        .await
        .is_err());
    // The contestant's submission is still queued, for the workers of submissions.
    let plain = db.interface().await;
    assert_eq!(
        plain.next().await.unwrap().map(|s| s.id).as_deref(),
        Some("a1")
    );

    shutdown.cancel();
    let _ = follower.await;
    for interface in [plain, second, worker] {
        interface.close().await;
    }
    interface.close().await;
}
