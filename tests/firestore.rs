//! The Firestore interface against the emulator (`scripts/firestore-up`): recovery through the
//! library (leases, fencing, takeovers, re-queued submissions, the worker count), then end to
//! end with real `executioner worker --interface firestore` processes judging in Docker, read
//! back the way the STAOJ front end reads them: document by document, field by field.
//!
//! The front end here is written with the `firestore` crate's own API (transactions, typed
//! documents, queries ordered by `judgeTime`), not with the interface under test.

mod common;
mod firestore_emulator;
mod worker_process;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use executioner::interface::SubmissionState;
use executioner::interface::{Interface, Sent};
use executioner::protocol::{Body, Message, Submission};
use executioner::store::firestore::FirestoreInterface;
use executioner::store::firestore::{StoredSubmission, JUDGE_RESULTS, SUBMISSIONS};
use firestore::gcloud_sdk::google::firestore::v1::{value::ValueType, Document};
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreTimestamp};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as Json};
use worker_process::WorkerProcess;

/// Longest wait for a step of the library tests: everything is local and quick.
const DEADLINE: Duration = Duration::from_secs(30);

const A_PLUS_B: &str = "a, b = map(int, input().split())\nprint(a + b)\n";

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

async fn send(worker: &dyn Interface, id: &str, body: Body) -> Sent {
    worker
        .send(&Message::new(id, body))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

async fn status(front: &FirestoreInterface, id: &str) -> StoredSubmission {
    front
        .status(id)
        .await
        .expect("status")
        .unwrap_or_else(|| panic!("submission {id} is not stored"))
}

/// A worker's interface that counts nothing and renews nothing once `close`d: a worker that is
/// about to vanish.
async fn mortal_worker(project: &str) -> FirestoreInterface {
    FirestoreInterface::open(firestore_emulator::config(project))
        .await
        .expect("connect")
}

fn testing(test_case: u32) -> Body {
    Body::Testing {
        test_case,
        subtask: None,
    }
}

fn tested(test_case: u32) -> Body {
    Body::Tested {
        test_case,
        subtask: None,
        result: executioner::verdict::Verdict::Accepted,
        time: Some(10),
        memory: Some(3000),
        score: None,
        output: None,
    }
}

fn done(score: f64) -> Body {
    Body::Done {
        score: Some(score),
        failed_subtasks: None,
    }
}

/// Offered by `next()` within the deadline (takeovers wait for a lease to pass).
async fn next_is(worker: &FirestoreInterface, id: &str) {
    let offered = within(id, worker.next())
        .await
        .expect("next")
        .expect("a submission");
    assert_eq!(offered.id, id);
}

// ---------------------------------------------------------------------------------------------
// Recovery through the library.

/// A worker that stops renewing its lease loses the submission to another once the lease has
/// passed; the old holder's writes change nothing from then on, and its results are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_claim_is_taken_over_and_the_old_holder_is_fenced() {
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    front.enqueue(&[submission("x", A_PLUS_B)]).await.unwrap();
    let doomed = mortal_worker(&project).await;
    next_is(&doomed, "x").await;
    assert_eq!(send(&doomed, "x", Body::Executing).await, Sent::Recorded);
    assert_eq!(send(&doomed, "x", testing(1)).await, Sent::Recorded);
    doomed.close().await; // its heartbeat stops: as if it had died

    let heir = mortal_worker(&project).await;
    next_is(&heir, "x").await;
    assert_eq!(send(&heir, "x", Body::Executing).await, Sent::Recorded);
    let taken = status(&front, "x").await;
    assert_eq!((taken.state, taken.attempts), (SubmissionState::Judging, 2));
    assert!(
        taken.results.is_empty(),
        "the old attempt's results stay: {taken:?}"
    );

    // The old holder wakes up: refused, and nothing it sends lands.
    let late = doomed.send(&Message::new("x", tested(1))).await;
    assert!(
        late.as_ref()
            .is_err_and(|e| e.reason.contains("claim was lost")),
        "{late:?}"
    );
    for body in [testing(1), tested(1), done(1.0)] {
        assert_eq!(send(&heir, "x", body).await, Sent::Recorded);
    }
    let late = doomed.send(&Message::new("x", done(0.0))).await;
    assert!(late.is_err(), "{late:?}");
    let end = status(&front, "x").await;
    assert_eq!((end.state, end.score), (SubmissionState::Judged, Some(1.0)));
    let expected: Vec<Message> = [testing(1), tested(1)]
        .into_iter()
        .map(|b| Message::new("x", b))
        .collect();
    assert_eq!(end.results, expected);
    heir.close().await;
}

/// Workers that keep vanishing while judging a submission: after `retries` takeovers it ends as
/// `error`, with the reason in its claim, instead of killing worker after worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_whose_workers_keep_vanishing_ends_in_error() {
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    front.enqueue(&[submission("v", A_PLUS_B)]).await.unwrap();
    let mut config = firestore_emulator::config(&project);
    config.retries = 1;
    for attempt in 1..=2 {
        let worker = FirestoreInterface::open(config.clone()).await.unwrap();
        next_is(&worker, "v").await;
        assert_eq!(send(&worker, "v", Body::Executing).await, Sent::Recorded);
        assert_eq!(status(&front, "v").await.attempts, attempt);
        worker.close().await;
    }
    let last = FirestoreInterface::open(config).await.unwrap();
    next_is(&last, "v").await;
    assert_eq!(send(&last, "v", Body::Executing).await, Sent::NotTaken);
    let end = status(&front, "v").await;
    assert_eq!(end.state, SubmissionState::Error, "{end:?}");
    assert!(
        end.reason
            .as_deref()
            .is_some_and(|r| r.contains("vanished")),
        "{end:?}"
    );
    // Nobody offers it any more.
    front.enqueue(&[submission("w", A_PLUS_B)]).await.unwrap();
    next_is(&last, "w").await;
    last.close().await;
}

/// A front end queues a judged submission again (a rejudge): it is judged afresh, and readers
/// see only the new attempt's results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_submission_is_judged_afresh() {
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    front.enqueue(&[submission("r", A_PLUS_B)]).await.unwrap();
    let worker = mortal_worker(&project).await;
    next_is(&worker, "r").await;
    assert_eq!(send(&worker, "r", Body::Executing).await, Sent::Recorded);
    for body in [testing(1), tested(1), testing(2), tested(2), done(1.0)] {
        assert_eq!(send(&worker, "r", body).await, Sent::Recorded);
    }
    assert_eq!(status(&front, "r").await.results.len(), 4);

    front.enqueue(&[submission("r", A_PLUS_B)]).await.unwrap();
    next_is(&worker, "r").await;
    assert_eq!(send(&worker, "r", Body::Executing).await, Sent::Recorded);
    let judging = status(&front, "r").await;
    assert_eq!(
        (judging.state, judging.attempts),
        (SubmissionState::Judging, 2)
    );
    assert!(judging.results.is_empty(), "{judging:?}");
    for body in [testing(1), tested(1), done(1.0)] {
        assert_eq!(send(&worker, "r", body).await, Sent::Recorded);
    }
    let end = status(&front, "r").await;
    assert_eq!(end.results.len(), 2, "{end:?}");
    assert_eq!((end.state, end.score), (SubmissionState::Judged, Some(1.0)));
    worker.close().await;
}

/// `info/info.judgeCount` counts connected workers and drops as they stop cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_count_follows_the_running_workers() {
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    assert_eq!(front.judge_count().await.unwrap(), None);
    let config = firestore_emulator::config(&project);
    let first = FirestoreInterface::connect(config.clone()).await.unwrap();
    let second = FirestoreInterface::connect(config).await.unwrap();
    assert_eq!(front.judge_count().await.unwrap(), Some(2));
    first.close().await;
    first.close().await; // a second close counts nothing
    assert_eq!(front.judge_count().await.unwrap(), Some(1));
    second.close().await;
    assert_eq!(front.judge_count().await.unwrap(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// A front end, written with the crate's own API.

/// A submission as the STAOJ front end writes it.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StaojSubmission {
    user: String,
    problem: String,
    problem_name: String,
    subtasks_count: i64,
    source_code: String,
    language: String,
    submission_time: FirestoreTimestamp,
    state: String,
}

struct Front {
    db: FirestoreDb,
}

impl Front {
    async fn new(project: &str) -> Front {
        firestore_emulator::shared();
        let db = FirestoreDb::with_options(FirestoreDbOptions::new(project.to_owned()))
            .await
            .expect("connect to the emulator");
        Front { db }
    }

    async fn submit(&self, id: &str, submission: &StaojSubmission) {
        let mut transaction = self.db.begin_transaction().await.expect("begin");
        self.db
            .fluent()
            .update()
            .in_col(SUBMISSIONS)
            .document_id(id)
            .object(submission)
            .add_to_transaction(&mut transaction)
            .expect("add the write");
        transaction.commit().await.expect("commit");
    }

    async fn document(&self, collection: &str, id: &str) -> Option<Document> {
        let mut found = self
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .batch([id])
            .await
            .expect("read");
        found.next().await.and_then(|(_, document)| document)
    }

    /// `submissions/{id}/judge-results`, ordered by `judgeTime` as the front end shows them.
    async fn results(&self, id: &str) -> Vec<Document> {
        let parent = self.db.parent_path(SUBMISSIONS, id).expect("a parent path");
        self.db
            .fluent()
            .select()
            .from(JUDGE_RESULTS)
            .parent(parent)
            .order(|o| o.fields([o.field("judgeTime").ascending()]))
            .query()
            .await
            .expect("query the results")
    }

    /// `state` of every submission.
    async fn states(&self) -> HashMap<String, String> {
        let all = self
            .db
            .fluent()
            .select()
            .from(SUBMISSIONS)
            .query()
            .await
            .unwrap_or_default();
        all.iter()
            .filter_map(|d| {
                let id = d.name.rsplit('/').next()?.to_owned();
                match &d.fields.get("state")?.value_type {
                    Some(ValueType::StringValue(s)) => Some((id, s.clone())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Waits until `n` submissions are in a final state.
    async fn wait_final(&self, n: usize, deadline: Duration, workers: &[&WorkerProcess]) {
        let waited = firestore_emulator::wait_for(
            "the submissions to end",
            deadline,
            Duration::from_millis(500),
            || async {
                let states = self.states().await;
                let ended = states
                    .values()
                    .filter(|s| {
                        ["judged", "compileError", "error", "invalidData"].contains(&s.as_str())
                    })
                    .count();
                (ended >= n).then_some(())
            },
        )
        .await;
        if let Err(e) = waited {
            panic!("{e}; workers:\n{}", worker_process::logs(workers));
        }
    }
}

/// A document's fields as JSON, Firestore's types kept apart: integers as numbers, doubles as
/// `{"double": x}`, timestamps as `"<timestamp>"`, anything else as a marker that never
/// matches an expectation.
fn fields_json(document: &Document) -> Map<String, Json> {
    document
        .fields
        .iter()
        .map(|(name, value)| {
            let v = match &value.value_type {
                Some(ValueType::StringValue(s)) => json!(s),
                Some(ValueType::IntegerValue(n)) => json!(n),
                Some(ValueType::DoubleValue(x)) => json!({ "double": x }),
                Some(ValueType::TimestampValue(_)) => json!("<timestamp>"),
                Some(ValueType::ArrayValue(a)) => Json::Array(
                    a.values
                        .iter()
                        .map(|v| match v.value_type {
                            Some(ValueType::IntegerValue(n)) => json!(n),
                            ref other => json!(format!("<not an integer: {other:?}>")),
                        })
                        .collect(),
                ),
                other => json!(format!("<unexpected {other:?}>")),
            };
            (name.clone(), v)
        })
        .collect()
}

fn worker_env(emulator: &str, project: &str) -> Vec<(String, String)> {
    vec![
        ("FIRESTORE_EMULATOR_HOST".into(), emulator.into()),
        ("GOOGLE_CLOUD_PROJECT".into(), project.into()),
    ]
}

fn start_worker(emulator: &str, project: &str, concurrency: usize) -> WorkerProcess {
    let env = worker_env(emulator, project);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    WorkerProcess::start(&["--interface", "firestore"], &env, 10, concurrency)
}

// ---------------------------------------------------------------------------------------------
// End to end, judging in Docker.

/// What one fixture submission must leave in the store.
struct Case {
    id: &'static str,
    problem: &'static str,
    language: &'static str,
    /// `None`: the language is not known (an `invalid` submission).
    kind: Option<common::Kind>,
}

/// Fixture submissions of every ending, judged by a worker: `submissions/{id}` holds exactly
/// the front end's fields plus `state`, `score` and `failedSubtasks` as SPEC §6 maps them, and
/// `judge-results` exactly the `testing`/`tested` messages, in order, each with exactly the
/// fields it should have and Firestore's types (integers, a timestamp).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judging_fixtures_writes_the_documents_of_spec_6() {
    use common::Kind;
    let emulator = firestore_emulator::shared();
    let project = firestore_emulator::new_project();
    let front = Front::new(&project).await;
    let cases = [
        Case {
            id: "subtasks-cpp",
            problem: "test-subtasks-mixed",
            language: "gcc-12",
            kind: Some(Kind::Accepted),
        },
        Case {
            id: "subtasks-wrong",
            problem: "test-subtasks-mixed",
            language: "python-3.11",
            kind: Some(Kind::Wrong),
        },
        Case {
            id: "plain-accepted",
            problem: "test-base",
            language: "python-3.11",
            kind: Some(Kind::Accepted),
        },
        Case {
            id: "compile-error",
            problem: "test-base",
            language: "gcc-12",
            kind: Some(Kind::CompileError),
        },
        Case {
            id: "unknown-language",
            problem: "test-base",
            language: "cobol-1960",
            kind: None,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let language = common::language(if case.kind.is_some() {
            case.language
        } else {
            "python-3.11"
        });
        let kind = case.kind.unwrap_or(Kind::Accepted);
        let source = common::submissions_root().join(&language.id).join(format!(
            "{}.{}",
            kind.stem(),
            language.extension
        ));
        let source = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        let staoj = StaojSubmission {
            user: format!("user-{i}"),
            problem: case.problem.into(),
            problem_name: format!("Problem {}", case.problem),
            subtasks_count: 4,
            source_code: source,
            language: case.language.into(),
            submission_time: FirestoreTimestamp::now(),
            state: "queued".into(),
        };
        front.submit(case.id, &staoj).await;
    }
    let worker = start_worker(emulator, &project, 2);
    front
        .wait_final(cases.len(), Duration::from_secs(300), &[&worker])
        .await;

    for (i, case) in cases.iter().enumerate() {
        let id = case.id;
        let expected_messages = match case.kind {
            Some(kind) => common::expected_for_kind(
                id,
                &common::Problem::load(case.problem),
                &common::language(case.language),
                kind,
            ),
            None => common::expected_invalid(id),
        };
        // SPEC §6: what the messages make of `submissions/{id}`.
        let mut expected = json!({
            "user": format!("user-{i}"),
            "problem": case.problem,
            "problemName": format!("Problem {}", case.problem),
            "subtasksCount": 4,
            "sourceCode": "<source>",
            "language": case.language,
            "submissionTime": "<timestamp>",
        });
        let last = expected_messages.last().expect("messages");
        let compile_error = expected_messages
            .iter()
            .any(|m| m["state"] == "compiled" && m["result"] == "error");
        match last["state"].as_str() {
            Some("done") if compile_error => {
                expected["state"] = json!("compileError");
                expected["score"] = json!({ "double": 0.0 });
            }
            Some("done") => {
                expected["state"] = json!("judged");
                let score = last["score"].as_str().expect("a score placeholder");
                let score: f64 = score
                    .trim_start_matches("<score ")
                    .trim_end_matches('>')
                    .parse()
                    .expect("a score");
                expected["score"] = json!({ "double": score });
                if let Some(failed) = last.get("failedSubtasks") {
                    expected["failedSubtasks"] = failed.clone();
                }
            }
            Some("invalid") => expected["state"] = json!("invalidData"),
            other => panic!("{id}: unexpected end {other:?}"),
        }
        let document = front
            .document(SUBMISSIONS, id)
            .await
            .unwrap_or_else(|| panic!("{id} is gone"));
        let mut actual = fields_json(&document);
        assert!(actual["sourceCode"].is_string(), "{id}: {actual:?}");
        actual.insert("sourceCode".into(), json!("<source>"));
        if let Some(score) = actual.get_mut("score") {
            // Rounded to 4 decimals by the judge: compare at that precision.
            if let Some(x) = score["double"].as_f64() {
                *score = json!({ "double": common::round4(x) });
            }
        }
        assert_eq!(Json::Object(actual), expected, "{id}: submissions/{id}");

        // judge-results: the testing/tested messages, in order, with exactly their fields.
        let expected_results: Vec<Json> = expected_messages
            .iter()
            .filter(|m| m["state"] == "testing" || m["state"] == "tested")
            .cloned()
            .collect();
        let results = front.results(id).await;
        let actual_results: Vec<Json> = results
            .iter()
            .map(|d| {
                let mut fields = fields_json(d);
                assert_eq!(
                    fields.remove("judgeTime"),
                    Some(json!("<timestamp>")),
                    "{id}: judgeTime of {}",
                    d.name
                );
                fields.insert("id".into(), json!(id));
                Json::Object(fields)
            })
            .collect();
        if let Err(report) = common::compare(&expected_results, &actual_results) {
            panic!("{id}: judge-results:\n{report}");
        }
    }
    assert!(worker.stop(Duration::from_secs(60)).success());
}

/// 3 worker processes (2 at a time each) on one collection: 100 submissions, each judged by
/// exactly one of them, with complete results; `info/info.judgeCount` shows the 3 while they
/// run and none once they stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_judge_100_submissions_exactly_once() {
    const SUBMISSIONS_N: usize = 100;
    let emulator = firestore_emulator::shared();
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    let reader = Front::new(&project).await;
    let wrong = "a, b = map(int, input().split())\nprint(a + b + 1)\n";
    let all: Vec<(Submission, &str)> = (0..SUBMISSIONS_N)
        .map(|i| {
            let id = format!("s-{i:03}");
            match i % 20 {
                7 => (submission(&id, wrong), "judged-wrong"),
                13 => {
                    let mut s = submission(&id, A_PLUS_B);
                    s.language = "cobol-1960".into();
                    (s, "invalidData")
                }
                _ => (submission(&id, A_PLUS_B), "judged"),
            }
        })
        .collect();
    let submissions: Vec<Submission> = all.iter().map(|(s, _)| s.clone()).collect();
    front.enqueue(&submissions).await.unwrap();
    let workers: Vec<WorkerProcess> = (0..3)
        .map(|_| start_worker(emulator, &project, 2))
        .collect();
    let refs: Vec<&WorkerProcess> = workers.iter().collect();
    firestore_emulator::wait_for(
        "3 workers to be counted",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async { (front.judge_count().await.ok()?? == 3).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}; workers:\n{}", worker_process::logs(&refs)));
    reader
        .wait_final(SUBMISSIONS_N, Duration::from_secs(900), &refs)
        .await;
    let mut ends = BTreeMap::new();
    for (s, end) in &all {
        let stored = status(&front, &s.id).await;
        assert_eq!(stored.attempts, 1, "{}: claimed more than once", s.id);
        *ends.entry(*end).or_insert(0) += 1;
        match *end {
            "invalidData" => {
                assert_eq!(stored.state, SubmissionState::InvalidData, "{}", s.id);
                assert!(stored.results.is_empty());
            }
            end => {
                let score = if end == "judged" { 1.0 } else { 0.0 };
                assert_eq!(
                    (stored.state, stored.score),
                    (SubmissionState::Judged, Some(score)),
                    "{}: {stored:?}",
                    s.id
                );
                let cases: Vec<u32> = stored
                    .results
                    .iter()
                    .map(|m| match m.body {
                        Body::Testing { test_case, .. } | Body::Tested { test_case, .. } => {
                            test_case
                        }
                        ref other => panic!("{}: not a result: {other:?}", s.id),
                    })
                    .collect();
                assert_eq!(cases, [1, 1, 2, 2, 3, 3], "{}", s.id);
            }
        }
    }
    eprintln!("ends: {ends:?}");
    for worker in workers {
        let status = worker.stop(Duration::from_secs(60));
        assert!(status.success(), "worker exit: {status}");
    }
    assert_eq!(front.judge_count().await.unwrap(), Some(0));
}
