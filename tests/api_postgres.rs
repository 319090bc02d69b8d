//! The HTTP API over the Postgres store (`executioner serve --database-url`), against a real
//! PostgreSQL and the real judge (Docker, the demoter, the images): a real server on port 0
//! with a local worker judges a submission while its messages stream; cancelling works on the
//! store; and a restarted service reads the operations from the store and continues the rejudge
//! the previous one was running. Without the judge: listing operations over a few hundred
//! submissions in every state selects and orders exactly what the old in-memory evaluation of
//! `$filter` did, page after page.

mod client;
mod judging;
mod pg;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use executioner::api::time::format_rfc3339;
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::postgres::{Cancelled, Column, Comparison, Condition, Operand};
use executioner::interface::{Interface, PostgresInterface, Sent, SubmissionState};
use executioner::judge::{Messages, Unheard};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::store::filter::{parse, Expr};
use executioner::store::operation::{Operation, SortKey, FILTER_FIELDS};
use executioner::store::postgres::PostgresBackend;
use executioner::store::{first_page, Backend, Listing as _, SubmissionView};
use executioner::verdict::Verdict;
use executioner::worker::{Worker, WorkerConfig};
use executioner::workflow::{Env, Runner, SubmissionJudge};
use judging::{problems, submission};
use pg::TestDatabase;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// For one judging or a small rejudge, TLEs included.
const DEADLINE: Duration = Duration::from_secs(300);

/// A service as `executioner serve --database-url` assembles it, on a real socket: the
/// Postgres backend, the real judge for its worker (when asked for) and its workflows.
struct Service {
    addr: std::net::SocketAddr,
    state: AppState,
    interface: Arc<PostgresInterface>,
    runner: Arc<Runner>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Service {
    async fn start(db: &TestDatabase, with_worker: bool) -> Service {
        let shutdown = CancellationToken::new();
        let interface = Arc::new(db.interface().await);
        let problems = Arc::new(ProblemStore::new(problems()));
        let languages = Arc::new(Registry::builtin().expect("built-in registry"));
        let backend = PostgresBackend::new(
            interface.clone(),
            Some(problems.clone()),
            Some(languages.clone()),
        );
        let mut tasks = vec![backend.follow(shutdown.clone())];
        let judge = judging::judge().await;
        let stores = backend.clone().workflow_stores();
        let runner = Runner::new(
            Env {
                judge: judge.clone(),
                submissions: stores.submissions,
                results: stores.results,
                store: stores.workflows,
            },
            shutdown.clone(),
        );
        runner.resume_all().await.expect("resume the workflows");
        let config = ApiConfig {
            problems: Some(problems),
            languages: Some(languages),
            ..ApiConfig::default()
        };
        let state = AppState::new(backend, config, shutdown.clone()).with_workflows(runner.clone());
        tasks.push(state.start());
        if with_worker {
            let worker = Worker::new(
                state.worker_interface(),
                judge,
                WorkerConfig {
                    concurrency: 2,
                    ..WorkerConfig::default()
                },
            );
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move { worker.run(stop).await }));
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = api::serve(listener, state.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            served.await.expect("the server runs");
        }));
        Service {
            addr,
            state,
            interface,
            runner,
            shutdown,
            tasks,
        }
    }

    /// Stops the way SIGTERM stops `serve`: running workflow steps are saved as running.
    async fn stop(self) {
        self.shutdown.cancel();
        self.runner.wait().await;
        for task in self.tasks {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the service stops in time")
                .expect("no task panics");
        }
        self.interface.close().await;
    }

    /// One request: the status and the JSON body.
    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let reply = client::request(self.addr, method, path, body.as_ref()).await;
        (reply.status, reply.body)
    }

    /// Polls operation `id` whenever the store or a workflow changed, until it is `status`.
    async fn wait_for_operation(&self, id: &str, status: &str) -> Value {
        let uri = format!("/v1.0/operations/{id}");
        client::until_operation(&self.state, id, status, DEADLINE, || async {
            self.http("GET", &uri, None).await.1
        })
        .await
    }
}

fn judged_states(results: &Value) -> Vec<String> {
    results["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_is_queued_in_postgres_judged_and_streamed() {
    let db = TestDatabase::create().await;
    // No worker yet: cancelling a queued submission is decided by the store.
    let quiet = Service::start(&db, false).await;
    let c = judging::program("gcc-12", "accepted");
    let body = json!({"problem": "test-base", "language": "gcc-12", "sourceCode": c});
    let (status, cancelled) = quiet
        .http("POST", "/v1.0/submissions", Some(body.clone()))
        .await;
    assert_eq!(status, 202);
    let cancelled = cancelled["id"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, op) = quiet
            .http("DELETE", &format!("/v1.0/operations/{cancelled}"), None)
            .await;
        assert_eq!((status, op["status"].as_str()), (200, Some("cancelled")));
    }
    quiet.stop().await;

    let service = Service::start(&db, true).await;
    let (status, accepted) = service.http("POST", "/v1.0/submissions", Some(body)).await;
    assert_eq!(status, 202);
    let id = accepted["id"].as_str().unwrap().to_owned();
    // The stream, opened at once, shows every message in order, live.
    let mut stream =
        client::Events::open(service.addr, &format!("/v1.0/submissions/{id}/events")).await;
    let mut events = Vec::new();
    let reading = async {
        while let Some(event) = stream.next().await {
            events.push(event.clone());
            if event == "done" || event == "error" {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, reading)
        .await
        .expect("the events in time");
    let expected = [
        "executing",
        "compiling",
        "compiled",
        "testing",
        "tested",
        "testing",
        "tested",
        "testing",
        "tested",
        "done",
    ];
    assert_eq!(events, expected);

    let op = service.wait_for_operation(&id, "succeeded").await;
    assert_eq!(op["percentComplete"], 100);
    let (_, submission) = service
        .http("GET", op["resourceLocation"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (submission["state"].as_str(), submission["score"].as_f64()),
        (Some("judged"), Some(1.0))
    );
    let (_, results) = service
        .http(
            "GET",
            &format!("/v1.0/submissions/{id}/judge-results"),
            None,
        )
        .await;
    assert_eq!(judged_states(&results), expected);
    assert_eq!(results["value"][4]["result"], "accepted");
    assert!(results["value"][4]["judgeTime"].is_string());

    // The store itself says the same; the cancelled one was never taken.
    let stored = service.interface.status(&id).await.unwrap().unwrap();
    assert_eq!(stored.state, SubmissionState::Judged);
    let (_, listed) = service.http("GET", "/v1.0/operations", None).await;
    let statuses: Vec<(&str, &str)> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap(), o["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (cancelled.as_str(), "cancelled"),
            (id.as_str(), "succeeded")
        ]
    );
    let (_, view) = service
        .http("GET", &format!("/v1.0/submissions/{cancelled}"), None)
        .await;
    assert_eq!(view["state"], "cancelled");
    service.stop().await;
}

/// A multi-file submission (SPEC §1 `files`) through the API over Postgres with the real judge:
/// the files are stored with it (`files` column), reach the worker through the claim and make
/// the C++ program (a second unit and a header) accepted; a bad file name is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_multi_file_submission_is_stored_in_postgres_and_judged_accepted() {
    let db = TestDatabase::create().await;
    let service = Service::start(&db, true).await;
    let dir = judging::repo().join("fixtures/multi-file/g++-12/header-and-unit");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let files = json!([
        {"name": "pairsum.cpp", "content": read("pairsum.cpp")},
        {"name": "pairsum.hpp", "content": read("pairsum.hpp")},
    ]);
    let body = json!({"problem": "test-base", "language": "cpp", "sourceCode": read("main.cpp"),
        "files": files});
    let (status, accepted) = service.http("POST", "/v1.0/submissions", Some(body)).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let op = service.wait_for_operation(&id, "succeeded").await;
    let (_, submission) = service
        .http("GET", op["resourceLocation"].as_str().unwrap(), None)
        .await;
    assert_eq!(
        (submission["state"].as_str(), submission["score"].as_f64()),
        (Some("judged"), Some(1.0)),
        "{submission}"
    );
    let stored: Option<Value> = sqlx::query_scalar::<_, Option<String>>(
        "SELECT files::text FROM submissions WHERE id = $1",
    )
    .bind(&id)
    .fetch_one(service.interface.pool())
    .await
    .unwrap()
    .map(|text| serde_json::from_str(&text).unwrap());
    assert_eq!(stored, Some(files));

    let bad = json!({"problem": "test-base", "language": "cpp", "sourceCode": read("main.cpp"),
        "files": [{"name": "../x", "content": "int x;"}]});
    let (status, error) = service.http("POST", "/v1.0/submissions", Some(bad)).await;
    assert_eq!(status, 400, "{error}");
    assert!(error.to_string().contains("../x"), "{error}");
    service.stop().await;
}

/// A problem package through the API over Postgres with the real judge: the ICPC scoring
/// package's partial submission, its checker's fractions kept with the results.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_package_submission_keeps_its_partial_scores_in_postgres() {
    let db = TestDatabase::create().await;
    let service = Service::start(&db, true).await;
    let source = problems().join("icpc-scoring/submissions/partially_accepted/greedy.py");
    let source = std::fs::read_to_string(&source).expect("the fixture program");
    let body = json!({"problem": "icpc-scoring", "language": "python3", "sourceCode": source});
    let (status, accepted) = service.http("POST", "/v1.0/submissions", Some(body)).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    let op = service.wait_for_operation(&id, "succeeded").await;
    let (_, submission) = service
        .http("GET", op["resourceLocation"].as_str().unwrap(), None)
        .await;
    // EXPECTED.md: group 2 earns 70 × (2/3 + 1 + 2/5 + 1) / 4 of 70, group 1 all of its 30.
    assert_eq!(submission["score"].as_f64(), Some(0.8367), "{submission}");
    assert_eq!(submission["failedSubtasks"], json!([2]), "{submission}");
    let (_, results) = service
        .http(
            "GET",
            &format!("/v1.0/submissions/{id}/judge-results"),
            None,
        )
        .await;
    let tested: Vec<(Value, Value, Value)> = results["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "tested")
        .map(|m| {
            (
                m["subtask"].clone(),
                m["result"].clone(),
                m["score"].clone(),
            )
        })
        .collect();
    let partial = |subtask: u32, score: f64| (json!(subtask), json!("accepted"), json!(score));
    let full = |subtask: Value| (subtask, json!("accepted"), Value::Null);
    assert_eq!(
        tested,
        [
            full(Value::Null),
            full(json!(1)),
            full(json!(1)),
            full(json!(1)),
            partial(2, 0.6667),
            partial(2, 1.0),
            partial(2, 0.4),
            partial(2, 1.0),
        ]
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_service_continues_the_rejudge_it_was_running() {
    let db = TestDatabase::create().await;
    let front = db.interface().await;
    // As a front end would insert them; judged one at a time by the rejudge, the second
    // burning its CPU limit on every test.
    front
        .enqueue(&[
            submission("r1-accepted", "python-3.11", "accepted"),
            submission("r2-tle", "python-3.11", "tle"),
            submission("r3-wrong", "gcc-12", "wrong"),
        ])
        .await
        .unwrap();
    front.close().await;

    let first = Service::start(&db, false).await;
    let (status, accepted) = first
        .http(
            "POST",
            "/v1.0/rejudges",
            Some(json!({"problem": "test-base", "maxRunning": 1})),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let name = accepted["id"].as_str().unwrap().to_owned();
    let (workflow, _) = first.runner.get(&name).unwrap();
    let progressed = tokio::time::timeout(
        DEADLINE,
        workflow.wait_until(|wf| {
            let p = executioner::workflow::rejudge::Progress::of(wf);
            p.judged == 1 && p.running == 1
        }),
    )
    .await;
    assert!(progressed.is_ok(), "{}", workflow.end_state());
    first.stop().await;

    let second = Service::start(&db, false).await;
    let op = second.wait_for_operation(&name, "succeeded").await;
    assert_eq!(op["kind"], "rejudge");
    let (_, workflow) = second
        .http("GET", &format!("/v1.0/workflows/{name}"), None)
        .await;
    assert_eq!(workflow["running"], true);
    let judged = workflow["result"]["judged"].as_array().unwrap();
    assert_eq!(judged.len(), 3, "{workflow}");
    for (id, score) in [("r1-accepted", 1.0), ("r2-tle", 0.0), ("r3-wrong", 0.0)] {
        let (_, submission) = second
            .http("GET", &format!("/v1.0/submissions/{id}"), None)
            .await;
        assert_eq!(
            (submission["state"].as_str(), submission["score"].as_f64()),
            (Some("judged"), Some(score)),
            "{id}"
        );
    }
    // The first judging kept the first process's result: it ran once.
    let status = second.runner.get(&name).unwrap().0.status(
        &executioner::workflow::Selector::tag("submission", "r1-accepted"),
        &[],
    );
    assert_eq!(status[0].attempts, 1);
    second.stop().await;

    // A third service did not take up the finished rejudge, but an operator can still rerun
    // one of its judgings: the workflow is taken up again from the store.
    let third = Service::start(&db, false).await;
    assert!(
        third.runner.get(&name).is_none(),
        "a finished workflow is not resumed"
    );
    let before = third.interface.record("r3-wrong").await.unwrap().unwrap();
    let (status, steps) = third
        .http(
            "GET",
            &format!("/v1.0/workflows/{name}/steps?tag=submission=r3-wrong&fields=id,state"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{steps}");
    assert_eq!(steps["value"][0]["state"], "succeeded", "{steps}");
    let (status, report) = third
        .http(
            "POST",
            &format!("/v1.0/workflows/{name}/steps/rerun"),
            Some(json!({"tags": {"submission": "r3-wrong"}})),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["applied"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    third.wait_for_operation(&name, "succeeded").await;
    let after = third.interface.record("r3-wrong").await.unwrap().unwrap();
    assert_eq!(
        (after.state, after.score),
        (SubmissionState::Judged, Some(0.0))
    );
    assert!(
        after.updated_ms > before.updated_ms,
        "judged again: {} then {}",
        before.updated_ms,
        after.updated_ms
    );
    third.stop().await;
}

/// Rejudges without a sandbox: every judging passes one test.
struct PassingJudge;

#[async_trait::async_trait]
impl SubmissionJudge for PassingJudge {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        _cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        let id = &submission.id;
        let done = Body::Done {
            score: Some(1.0),
            failed_subtasks: None,
        };
        let mut messages = test(id, 1).to_vec();
        messages.push(Message::new(id, done.clone()));
        for message in messages {
            out.send(message).await.map_err(|_| Unheard)?;
        }
        Ok(done)
    }
}

/// `testing` then `tested` of one test.
fn test(id: &str, test_case: u32) -> [Message; 2] {
    let testing = Body::Testing {
        test_case,
        subtask: None,
    };
    let tested = Body::Tested {
        test_case,
        subtask: None,
        result: Verdict::Accepted,
        time: Some(3),
        memory: Some(900),
        score: None,
        output: None,
    };
    [Message::new(id, testing), Message::new(id, tested)]
}

/// Unknown problems (no test count: 0% until succeeded) among known ones of 3, 8 and 60 tests.
const LISTED_PROBLEMS: [&str; 5] = [
    "test-base",
    "test-subtasks-mixed",
    "edge-many-tests",
    "o'brien",
    "Test-base",
];
/// Submissions per `INSERT`: they share a submission time.
const CHUNK: usize = 36;

/// Ids whose byte order is not their order in any locale ('O' < 'i' < 'o' < 'é').
fn listed_id(i: usize) -> String {
    match i % 4 {
        0 => format!("op-{i:03}"),
        1 => format!("Op-{i:03}"),
        2 => format!("it's-{i:03}"),
        _ => format!("é-{i:03}"),
    }
}

fn listed_submission(i: usize) -> Submission {
    Submission {
        id: listed_id(i),
        problem: LISTED_PROBLEMS[i % LISTED_PROBLEMS.len()].into(),
        language: ["gcc-12", "python-3.11", "it's"][i % 7 % 3].into(),
        source_code: "print(1)\n".into(),
        files: Vec::new(),
        run: None,
    }
}

/// The workers of the listing test: `worker` and `front` retry after `error` (3 retries),
/// `last_try` does not; leases outlast the test.
struct Workers {
    front: PostgresInterface,
    worker: PostgresInterface,
    last_try: PostgresInterface,
}

impl Workers {
    async fn connect(db: &TestDatabase) -> Workers {
        let mut config = db.config();
        config.lease = Duration::from_secs(600);
        let front = db.interface_with(config.clone()).await;
        let worker = db.interface_with(config.clone()).await;
        config.retries = 0;
        let last_try = db.interface_with(config).await;
        Workers {
            front,
            worker,
            last_try,
        }
    }

    /// Claims `id` on `by` and sends `bodies` after `executing`, as a worker would.
    async fn judge(by: &PostgresInterface, id: &str, bodies: Vec<Body>) {
        let claimed = by.send(&Message::new(id, Body::Executing)).await.unwrap();
        assert_eq!(claimed, Sent::Recorded, "{id}");
        for body in bodies {
            by.send(&Message::new(id, body)).await.unwrap();
        }
    }

    /// Queues submissions `range` (one statement) and brings submission `i` to the state
    /// `i % 12` picks.
    async fn populate(&self, range: std::ops::Range<usize>) {
        let submissions: Vec<Submission> = range.clone().map(listed_submission).collect();
        self.front.enqueue(&submissions).await.unwrap();
        for i in range {
            let id = listed_id(i);
            let total = match i % LISTED_PROBLEMS.len() {
                0 => 3,
                1 => 8,
                _ => 2,
            };
            let tests = |n: u32| (1..=n).flat_map(|t| test(&id, t)).map(|m| m.body);
            let done = |score| Body::Done {
                score: Some(score),
                failed_subtasks: None,
            };
            let compile_error = [
                Body::Compiling,
                Body::Compiled {
                    result: CompileResult::Error,
                    compile_output: Some("oops".into()),
                },
            ];
            let failure = |reason: &str| Body::Error {
                reason: Some(reason.into()),
            };
            match i % 12 {
                0 => {}
                1 => assert_eq!(self.front.cancel(&id).await.unwrap(), Cancelled::Yes),
                // Running, some tests done (for a known problem: some percent).
                2 => Self::judge(&self.worker, &id, tests((i / 12 % 4) as u32).collect()).await,
                // Running with every test done: at 100% but not succeeded.
                3 => Self::judge(&self.worker, &id, tests(total).collect()).await,
                4 => Self::judge(&self.worker, &id, vec![Body::Compiling]).await,
                5 => {
                    let mut bodies = compile_error.to_vec();
                    bodies.push(done(0.0));
                    Self::judge(&self.worker, &id, bodies).await
                }
                // The compile error recorded, `done` not yet: still running.
                6 => Self::judge(&self.worker, &id, compile_error.to_vec()).await,
                7 => {
                    let bodies = tests(total).chain([done(1.0)]).collect();
                    Self::judge(&self.worker, &id, bodies).await
                }
                // Will be tried again: running.
                8 => Self::judge(&self.front, &id, vec![failure("sandbox")]).await,
                // No retries left: failed.
                9 => Self::judge(&self.last_try, &id, vec![failure("for good")]).await,
                10 => {
                    let invalid = Body::Invalid {
                        reason: Some("bad".into()),
                    };
                    Self::judge(&self.worker, &id, vec![invalid]).await
                }
                // As a rejudge records a whole judging.
                _ => {
                    let mut messages = vec![Message::new(&id, Body::Executing)];
                    messages.extend(test(&id, 1));
                    messages.push(Message::new(&id, done(0.5)));
                    assert!(self.front.replace(&id, &messages).await.unwrap());
                }
            }
        }
    }

    async fn close(self) {
        self.front.close().await;
        self.worker.close().await;
        self.last_try.close().await;
    }
}

/// The API in process over the Postgres backend, with rejudges judged by [`PassingJudge`].
struct Listing {
    state: AppState,
    backend: Arc<PostgresBackend>,
    runner: Arc<Runner>,
    shutdown: CancellationToken,
}

impl Listing {
    async fn start(db: &TestDatabase) -> Listing {
        let shutdown = CancellationToken::new();
        let problems = Arc::new(ProblemStore::new(problems()));
        let backend =
            PostgresBackend::new(Arc::new(db.interface().await), Some(problems.clone()), None);
        backend.follow(shutdown.clone());
        let stores = backend.clone().workflow_stores();
        let runner = Runner::new(
            Env {
                judge: Arc::new(PassingJudge),
                submissions: stores.submissions,
                results: stores.results,
                store: stores.workflows,
            },
            shutdown.clone(),
        );
        let config = ApiConfig {
            problems: Some(problems),
            ..ApiConfig::default()
        };
        let state =
            AppState::new(backend.clone(), config, shutdown.clone()).with_workflows(runner.clone());
        Listing {
            state,
            backend,
            runner,
            shutdown,
        }
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let router = api::router(self.state.clone());
        let (status, _, body) = client::oneshot(router, method, uri, body.as_ref()).await;
        (status, body)
    }

    /// The old way of listing: every submission read, the workflows added, filtered and sorted
    /// in memory. The submissions' operations, and all.
    async fn reference(&self, filter: Option<&Expr>) -> (Vec<SubmissionView>, Vec<Operation>) {
        let selects = |op: &Operation| filter.is_none_or(|f| f.matches(&|name| op.field(name)));
        let mut views: Vec<SubmissionView> = self
            .backend
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter(|v| selects(&Operation::of_submission(v)))
            .collect();
        views.sort_by_cached_key(|v| Operation::of_submission(v).sort_key());
        let mut ops: Vec<Operation> = views.iter().map(Operation::of_submission).collect();
        let workflows = self.runner.views().await.unwrap();
        ops.extend(workflows.iter().map(Operation::of_workflow).filter(selects));
        ops.sort_by_cached_key(Operation::position);
        (views, ops)
    }

    /// Every page of `GET /v1.0/operations?$top=...&$filter=...`, following `nextLink`.
    async fn pages(&self, top: usize, filter: &str) -> Vec<Value> {
        let mut uri = format!(
            "/v1.0/operations?$top={top}&$filter={}",
            client::encode(filter)
        );
        let mut items = Vec::new();
        for page in 0.. {
            let (status, body) = self.call(Method::GET, &uri, None).await;
            assert_eq!(status, StatusCode::OK, "{uri}: {body}");
            let value = body["value"].as_array().unwrap();
            items.extend(value.iter().cloned());
            let Some(next) = body.get("nextLink") else {
                break;
            };
            assert_eq!(value.len(), top, "{uri}: only a full page has a next one");
            let next = next.as_str().unwrap();
            assert!(
                next.starts_with(&format!("/v1.0/operations?$top={top}&$skiptoken="))
                    && next.contains("&$filter="),
                "{next}"
            );
            // A client-given `$skip` reaches the same page.
            let skip = (page + 1) * top;
            let skipped = format!(
                "/v1.0/operations?$top={top}&$skip={skip}&$filter={}",
                client::encode(filter)
            );
            let (status, by_skip) = self.call(Method::GET, &skipped, None).await;
            assert_eq!(status, StatusCode::OK, "{skipped}: {by_skip}");
            let (_, by_token) = self.call(Method::GET, next, None).await;
            assert_eq!(by_skip["value"], by_token["value"], "{skipped}");
            uri = next.to_owned();
        }
        items
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_operations_are_those_the_filter_selects_in_order() {
    let db = TestDatabase::create_english().await;
    let workers = Workers::connect(&db).await;
    let listing = Listing::start(&db).await;
    let n = 8 * CHUNK;
    for chunk in 0..n / CHUNK / 2 {
        workers.populate(chunk * CHUNK..(chunk + 1) * CHUNK).await;
    }
    // A finished rejudge among the submissions: an operation of another kind, with no
    // language and no problem.
    let judged: Vec<String> = [7, 19].into_iter().map(listed_id).collect();
    let (status, accepted) = listing
        .call(
            Method::POST,
            "/v1.0/rejudges",
            Some(json!({"submissions": judged})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let rejudge = accepted["id"].as_str().unwrap().to_owned();
    client::until_operation(&listing.state, &rejudge, "succeeded", DEADLINE, || async {
        let uri = format!("/v1.0/operations/{rejudge}");
        listing.call(Method::GET, &uri, None).await.1
    })
    .await;
    for chunk in n / CHUNK / 2..n / CHUNK {
        workers.populate(chunk * CHUNK..(chunk + 1) * CHUNK).await;
    }

    // Datetimes the submissions have: a submission time, one of the last changes.
    let (all, ops) = listing.reference(None).await;
    assert_eq!((all.len(), ops.len()), (n, n + 1));
    let statuses: std::collections::BTreeSet<&str> =
        ops.iter().map(|op| op.status.as_str()).collect();
    assert_eq!(statuses.len(), 5, "{statuses:?}");
    // The last finished (the status page's recent results): the listing's end, backwards.
    for limit in [1, 20, n] {
        let last: Vec<String> = listing
            .backend
            .last_finished(limit)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.id)
            .collect();
        let expected: Vec<String> = all
            .iter()
            .rev()
            .filter(|v| v.status.is_terminal())
            .take(limit)
            .map(|v| v.id.clone())
            .collect();
        assert_eq!(last, expected, "the last {limit} finished");
    }
    let mut created: Vec<i64> = all.iter().map(|v| v.created_ms).collect();
    created.sort();
    let mut changed: Vec<i64> = all.iter().map(|v| v.last_action_ms).collect();
    changed.sort();
    let (created, changed) = (
        format_rfc3339(created[n / 2]),
        format_rfc3339(changed[n / 3]),
    );
    // The same instant one hour east of UTC.
    let created_east = {
        let ms = executioner::api::time::parse_rfc3339(&created).unwrap() + 3_600_000;
        format_rfc3339(ms).replace('Z', "+01:00")
    };

    let filters = [
        "status eq 'notstarted'".to_owned(),
        "status eq 'running'".into(),
        "status ne 'succeeded'".into(),
        "'failed' eq status or status eq 'cancelled'".into(),
        "status eq 'Running'".into(),
        "kind eq 'submission'".into(),
        "kind ne 'submission'".into(),
        "kind eq 'rejudge' or status eq 'cancelled'".into(),
        "id eq 'it''s-002'".into(),
        "id gt 'Op-' and id lt 'op-'".into(),
        "id ge 'é'".into(),
        "not (id lt 'it''s') and status ne 'running'".into(),
        "problem eq 'o''brien'".into(),
        "problem ne 'test-base'".into(),
        "problem eq null".into(),
        "problem gt 'T' and problem le 'test-base'".into(),
        "language eq 'x'".into(),
        "language ne 'gcc-12'".into(),
        "language eq 'it''s' and (status eq 'running' or status eq 'failed')".into(),
        "id eq 5".into(),
        "id eq id and createdDateTime le lastActionDateTime".into(),
        format!("createdDateTime eq {created}"),
        format!("createdDateTime lt {created} and not (status eq 'notstarted')"),
        format!("createdDateTime eq {created_east}"),
        format!("{created} le createdDateTime or lastActionDateTime lt {changed}"),
        format!("lastActionDateTime ge {changed}"),
        "percentComplete lt 100".into(),
        "percentComplete eq 100".into(),
        "percentComplete eq 100 and status ne 'succeeded'".into(),
        "percentComplete gt 33.4 and percentComplete lt 66.7".into(),
        "not (percentComplete gt 50) and problem eq 'test-subtasks-mixed'".into(),
        "percentComplete eq 0 or language eq 'it''s'".into(),
        "not (percentComplete lt 100 or status eq 'cancelled')".into(),
        "(percentComplete ge 25 and id lt 'o') or not (status ne 'failed')".into(),
        "100 gt percentComplete and not not (kind eq 'submission')".into(),
        "percentComplete ge 0".into(),
        "percentComplete eq 'x'".into(),
    ];
    let mut discriminating = 0;
    for text in &filters {
        let filter = parse(text, FILTER_FIELDS).unwrap_or_else(|e| panic!("{text}: {e}"));
        let (views, ops) = listing.reference(Some(&filter)).await;
        if !ops.is_empty() && ops.len() < n + 1 {
            discriminating += 1;
        }
        // After nothing, after the middle one, and after a key with a seq no row has (every
        // row's is 0): past every id of its time.
        let middle = views
            .get(views.len() / 2)
            .map(|v| Operation::of_submission(v).sort_key());
        let past_ids = middle.clone().map(|key| SortKey { seq: 1, ..key });
        for after in [None, middle.as_ref(), past_ids.as_ref()] {
            let listed: Vec<SubmissionView> = views
                .iter()
                .filter(|v| after.is_none_or(|a| Operation::of_submission(v).sort_key() > *a))
                .cloned()
                .collect();
            for limit in [1, 5, 40, 1000] {
                let page = listing
                    .backend
                    .list_page(Some(&filter), after, limit)
                    .await
                    .unwrap();
                let expected = &listed[..limit.min(listed.len())];
                assert_eq!(page, expected, "{text}, after {after:?}, limit {limit}");
                let all = listing.backend.list().await.unwrap();
                let in_memory = first_page(all, Some(&filter), after, limit);
                assert_eq!(
                    in_memory, expected,
                    "{text}, after {after:?}, limit {limit}"
                );
            }
        }
        let expected: Vec<Value> = ops.iter().map(Operation::to_json).collect();
        assert_eq!(listing.pages(13, text).await, expected, "{text}");
    }
    // Most select some operations and not others.
    assert!(discriminating >= filters.len() - 6, "{discriminating}");

    // Texts with a NUL are compared in memory (the database takes none).
    for text in [
        "id lt 'op-\u{0}'",
        "not (id eq 'a\u{0}') and id ge 'op-\u{0}x'",
    ] {
        let filter = parse(text, FILTER_FIELDS).unwrap();
        let (views, _) = listing.reference(Some(&filter)).await;
        let page = listing
            .backend
            .list_page(Some(&filter), None, 1000)
            .await
            .unwrap();
        assert_eq!(page, views, "{text:?}");
    }

    // Without a filter, and in batches smaller than a chunk of equal submission times.
    let expected: Vec<Value> = ops.iter().map(Operation::to_json).collect();
    let (status, body) = listing
        .call(Method::GET, "/v1.0/operations?$top=1000", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["value"].as_array().unwrap(), &expected);
    assert!(body.get("nextLink").is_none());
    let interface = listing.backend.interface();
    for (condition, filter) in [
        (Condition::True, None),
        (
            Condition::Compare(
                Operand::Column(Column::Status),
                Comparison::Ne,
                Operand::Text("succeeded".into()),
            ),
            Some(parse("status ne 'succeeded'", FILTER_FIELDS).unwrap()),
        ),
    ] {
        let mut ids = Vec::new();
        interface
            .scan_listing(&condition, None, 5, |record| {
                ids.push(record.id);
                true
            })
            .await
            .unwrap();
        let (views, _) = listing.reference(filter.as_ref()).await;
        let expected: Vec<String> = views.into_iter().map(|v| v.id).collect();
        assert_eq!(ids, expected);
    }

    // A front end may write any time, an infinite one too: the index takes the row.
    sqlx::query(
        "INSERT INTO submissions (id, problem, language, source_code, submission_time)
         VALUES ('forever', 'test-base', 'gcc-12', 'x', 'infinity')",
    )
    .execute(interface.pool())
    .await
    .unwrap();

    listing.shutdown.cancel();
    listing.runner.wait().await;
    workers.close().await;
}
