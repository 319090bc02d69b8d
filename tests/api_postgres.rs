//! The HTTP API over the Postgres store (`executioner serve --database-url`), against a real
//! PostgreSQL and the real judge (Docker, the demoter, the images): a real server on port 0
//! with a local worker judges a submission while its messages stream; cancelling works on the
//! store; and a restarted service reads the operations from the store and continues the rejudge
//! the previous one was running.

mod client;
mod judging;
mod pg;

use std::sync::Arc;
use std::time::Duration;

use executioner::api::backend::postgres::PostgresBackend;
use executioner::api::{self, ApiConfig, AppState, Backend};
use executioner::interface::{PostgresInterface, SubmissionState};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::worker::{Worker, WorkerConfig};
use executioner::workflow::{Env, Runner};
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
