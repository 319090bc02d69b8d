//! The HTTP operations API over the in-memory store, in process (`oneshot`) and over a real
//! socket. The tests play the workers (through the API's worker interface, or over HTTP as
//! remote workers) and, for rejudges and validations, the judge (a scripted one), so no Docker
//! is needed; `tests/api_postgres.rs` runs the real judge over the Postgres store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body as HttpBody;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use executioner::api::limit::RateLimit;
use executioner::api::time::now_ms;
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::{Interface, InterfaceError, MemoryInterface, Sent};
use executioner::judge::{Messages, Unheard};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::protocol::{Body, Message, Submission};
use executioner::store::filter::Expr;
use executioner::store::memory::MemoryBackend;
use executioner::store::operation::SortKey;
use executioner::store::{
    Backend, BackendError, Callbacks, Cancel, Intake, Listing, Queueing, Recorded, Status,
    SubmissionView, WorkflowStores,
};
use executioner::verdict::Verdict;
use executioner::workflow::{Env, Runner, SubmissionJudge};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::ServiceExt;

mod client;

const DEADLINE: Duration = Duration::from_secs(10);

fn problems_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems")
}

/// A judge playing from the source code: each line of a program is the verdict of one test
/// (`accepted`, `wrong`, `TLE`, ...); a program `hold` runs until its step is cancelled.
struct ScriptedJudge;

#[async_trait]
impl SubmissionJudge for ScriptedJudge {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        let id = &submission.id;
        let send = |message: Message| {
            let out = out.clone();
            async move { out.send(message).await.map_err(|_| Unheard) }
        };
        if submission.source_code.trim() == "hold" {
            cancel.cancelled().await;
            let error = Body::Error {
                reason: Some("interrupted".into()),
            };
            send(Message::new(id, error.clone())).await?;
            return Ok(error);
        }
        let verdicts: Vec<Verdict> = submission
            .source_code
            .lines()
            .map(|l| serde_json::from_value(json!(l.trim())).expect("a verdict per line"))
            .collect();
        for (i, &result) in verdicts.iter().enumerate() {
            let test_case = i as u32 + 1;
            let testing = Body::Testing {
                test_case,
                subtask: None,
            };
            send(Message::new(id, testing)).await?;
            send(tested(id, test_case, result)).await?;
        }
        let all = verdicts.iter().all(|v| *v == Verdict::Accepted);
        let done = Body::Done {
            score: Some(if all { 1.0 } else { 0.0 }),
            failed_subtasks: None,
        };
        send(Message::new(id, done.clone())).await?;
        Ok(done)
    }
}

/// `testing` then `tested` of one test.
fn test(id: &str, test_case: u32, result: Verdict) -> [Message; 2] {
    let testing = Body::Testing {
        test_case,
        subtask: None,
    };
    [Message::new(id, testing), tested(id, test_case, result)]
}

fn tested(id: &str, test_case: u32, result: Verdict) -> Message {
    Message::new(
        id,
        Body::Tested {
            test_case,
            subtask: None,
            result,
            time: Some(5),
            memory: Some(1024),
            score: None,
            output: None,
        },
    )
}

/// A response: status, headers, JSON body (`Null` when there is none).
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error_message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

/// An API over a fresh in-memory store checking problems (the fixtures) and languages (the
/// built-in registry), with rejudges and validations judged by [`ScriptedJudge`]. Its
/// background tasks stop when it is dropped.
struct Api {
    state: AppState,
    backend: Arc<MemoryBackend>,
    shutdown: CancellationToken,
    _stop: DropGuard,
}

impl Api {
    fn new(config: ApiConfig) -> Api {
        Api::over(config, |memory| memory)
    }

    /// An API whose store is `store` made of the memory store (the tests read the memory store
    /// itself).
    fn over(config: ApiConfig, store: impl FnOnce(Arc<MemoryBackend>) -> Arc<dyn Backend>) -> Api {
        let shutdown = CancellationToken::new();
        let config = ApiConfig {
            problems: Some(Arc::new(ProblemStore::new(problems_root()))),
            languages: Some(Arc::new(Registry::builtin().expect("built-in registry"))),
            ..config
        };
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        backend.follow(shutdown.clone());
        let stores = backend.clone().workflow_stores();
        let runner = Runner::new(
            Env {
                judge: Arc::new(ScriptedJudge),
                submissions: stores.submissions,
                results: stores.results,
                store: stores.workflows,
            },
            shutdown.clone(),
        );
        let state =
            AppState::new(store(backend.clone()), config, shutdown.clone()).with_workflows(runner);
        state.start();
        Api {
            state,
            backend,
            _stop: shutdown.clone().drop_guard(),
            shutdown,
        }
    }

    fn default() -> Api {
        Api::new(ApiConfig::default())
    }

    /// An API limiting each client to `per_second` requests, `burst` at once.
    fn limited(per_second: f64, burst: u32) -> Api {
        Api::new(ApiConfig {
            rate_limit: Some(RateLimit { per_second, burst }),
            ..ApiConfig::default()
        })
    }

    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> Reply {
        self.call_from(None, method, uri, body).await
    }

    /// A request from the client at `peer` (as a real server would see it).
    async fn call_from(
        &self,
        peer: Option<SocketAddr>,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut router = api::router(self.state.clone());
        if let Some(peer) = peer {
            router = router.layer(axum::Extension(ConnectInfo(peer)));
        }
        let (status, headers, body) = client::oneshot(router, method, uri, body.as_ref()).await;
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, body: Value) -> Reply {
        self.call(Method::POST, uri, Some(body)).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, None).await
    }

    /// Submits a+b and returns the operation id.
    async fn submit(&self) -> String {
        let reply = self.post("/v1.0/submissions", a_plus_b()).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["id"].as_str().expect("id").to_owned()
    }

    /// Waits (with a deadline) until submission `id` satisfies `done`.
    async fn wait_for(&self, id: &str, done: impl Fn(&SubmissionView) -> bool) {
        let waiting = async {
            loop {
                let mut changes = self.backend.subscribe();
                let view = self.backend.get(id).await.expect("memory store");
                if view.as_ref().is_some_and(&done) {
                    return;
                }
                let _ = changes.recv().await;
            }
        };
        tokio::time::timeout(DEADLINE, waiting)
            .await
            .expect("the submission did not reach the expected state in time");
    }

    /// Waits (with a deadline) until operation `id` is `status`, polling the API whenever
    /// something changed.
    async fn wait_for_operation(&self, id: &str, status: &str) -> Value {
        let uri = format!("/v1.0/operations/{id}");
        client::until_operation(&self.state, id, status, DEADLINE, || async {
            self.get(&uri).await.body
        })
        .await
    }

    /// Plays a local worker: takes the next submission and sends `executing` and one
    /// `testing`/`tested` pair per verdict.
    async fn judge_next(&self, results: &[Verdict]) -> String {
        let gate = self.state.worker_interface();
        let submission = tokio::time::timeout(DEADLINE, gate.next())
            .await
            .expect("a submission in time")
            .expect("interface")
            .expect("not closed");
        let id = submission.id;
        self.send(&Message::new(&id, Body::Executing)).await;
        for (i, result) in results.iter().enumerate() {
            for message in test(&id, i as u32 + 1, *result) {
                self.send(&message).await;
            }
        }
        id
    }

    async fn send(&self, message: &Message) {
        self.state
            .worker_interface()
            .send(message)
            .await
            .expect("send");
    }

    /// The states of submission `id`'s judge results, in order.
    async fn result_states(&self, id: &str) -> Vec<String> {
        let results = self
            .get(&format!("/v1.0/submissions/{id}/judge-results"))
            .await
            .body;
        results["value"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|m| m["state"].as_str().expect("a state").to_owned())
            .collect()
    }

    async fn finish(&self, id: &str, score: f64) {
        self.send(&Message::new(
            id,
            Body::Done {
                score: Some(score),
                failed_subtasks: None,
            },
        ))
        .await;
    }
}

/// A remote worker, played over HTTP.
struct Remote<'a> {
    api: &'a Api,
    id: String,
}

impl<'a> Remote<'a> {
    async fn register(api: &'a Api, name: &str) -> Remote<'a> {
        let reply = api.post("/v1.0/workers", json!({ "name": name })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        let id = reply.body["id"].as_str().expect("an id").to_owned();
        Remote { api, id }
    }

    /// A take waiting up to `wait`: the reply, with the take number it announces.
    async fn take(&self, wait: Duration) -> (Reply, u64) {
        let uri = format!("/v1.0/workers/{}/take?wait={}", self.id, wait.as_secs_f64());
        let reply = self.api.call(Method::POST, &uri, None).await;
        let number = reply
            .header("take")
            .unwrap_or_else(|| panic!("no Take header: {} {}", reply.status, reply.body))
            .parse()
            .expect("a take number");
        (reply, number)
    }

    /// A take that must bring a submission: its id and the take's number.
    async fn taken(&self) -> (String, u64) {
        let (reply, take) = self.take(DEADLINE).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        (reply.body["id"].as_str().expect("an id").to_owned(), take)
    }

    async fn report(&self, take: u64, message: &Message) -> Reply {
        let uri = format!("/v1.0/workers/{}/messages?take={take}", self.id);
        let body = serde_json::to_value(message).expect("a message");
        self.api.post(&uri, body).await
    }

    async fn heartbeat(&self, body: Value) -> Reply {
        let uri = format!("/v1.0/workers/{}/heartbeat", self.id);
        self.api.post(&uri, body).await
    }
}

fn a_plus_b() -> Value {
    json!({"problem": "test-base", "language": "python", "sourceCode": "print(sum(map(int, input().split())))"})
}

fn ids(page: &Value) -> Vec<String> {
    page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_submission_is_accepted_as_an_operation() {
    let api = Api::default();
    let reply = api.post("/v1.0/submissions", a_plus_b()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED);
    let location = reply.header("operation-location").unwrap().to_owned();
    assert_eq!(reply.header(header::RETRY_AFTER), Some("1"));
    let id = reply.body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1.0/operations/{id}"));
    assert_eq!(reply.body["status"], "notstarted");
    assert_eq!(reply.body["kind"], "submission");
    assert_eq!(reply.body["percentComplete"], 0);
    assert!(reply.body.get("resourceLocation").is_none());

    let polled = api.get(&location).await;
    assert_eq!(polled.status, StatusCode::OK);
    assert_eq!(polled.header(header::RETRY_AFTER), Some("1"));
    assert_eq!(polled.body["status"], "notstarted");
    assert_eq!(
        polled.body["createdDateTime"],
        reply.body["createdDateTime"]
    );

    let submission = api.get(&format!("/v1.0/submissions/{id}")).await.body;
    assert_eq!(submission["state"], "queued");
    // The worker sees it.
    let next = api.state.worker_interface().next().await.unwrap().unwrap();
    assert_eq!(next.id, id);
}

#[tokio::test]
async fn bad_submissions_get_json_errors() {
    let api = Api::new(ApiConfig {
        max_body_bytes: 4096,
        max_source_bytes: 100,
        ..ApiConfig::default()
    });
    let with = |field: &str, value: Value| {
        let mut body = a_plus_b();
        body[field] = value;
        body
    };
    let cases = [
        (
            with("problem", json!("../etc")),
            StatusCode::BAD_REQUEST,
            "problem id",
        ),
        (
            with("problem", json!("no-such-problem")),
            StatusCode::BAD_REQUEST,
            "unknown problem",
        ),
        (
            with("language", json!("intercal")),
            StatusCode::BAD_REQUEST,
            "unknown language",
        ),
        (
            with("sourceCode", json!("  ")),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            with("sourceCode", json!("x".repeat(101))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most 100",
        ),
        (
            with("sourceCode", json!("x".repeat(5000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
        (
            json!({"problem": "test-base"}),
            StatusCode::BAD_REQUEST,
            "missing field",
        ),
        (json!([1, 2]), StatusCode::BAD_REQUEST, "not valid"),
    ];
    for (body, status, message) in cases {
        let reply = api.post("/v1.0/submissions", body.clone()).await;
        assert_eq!(reply.status, status, "{body}");
        assert!(
            reply.error_message().contains(message),
            "{body}: {}",
            reply.body
        );
        assert!(reply.body["error"]["code"].is_string());
    }
    // Not JSON at all.
    let request = Request::post("/v1.0/submissions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from("{not json"))
        .unwrap();
    let response = api::router(api.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(api.backend.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let api = Api::new(ApiConfig {
        max_queued: 2,
        retry_after_secs: 7,
        ..ApiConfig::default()
    });
    api.submit().await;
    api.submit().await;
    let reply = api.post("/v1.0/submissions", a_plus_b()).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header(header::RETRY_AFTER), Some("7"));
    assert_eq!(reply.body["error"]["code"], "queueFull");
    // Once one starts, there is room again.
    api.judge_next(&[]).await;
    api.submit().await;
}

#[tokio::test]
async fn polling_follows_the_messages_to_the_result() {
    let api = Api::default();
    let id = api.submit().await;
    assert_eq!(api.judge_next(&[Verdict::Accepted]).await, id);
    api.wait_for(&id, |v| v.tests_done == 1).await;
    let op = api.get(&format!("/v1.0/operations/{id}")).await.body;
    assert_eq!(op["status"], "running");
    assert_eq!(op["percentComplete"], 33, "1 of the 3 tests of test-base");

    api.send(&tested(&id, 2, Verdict::Accepted)).await;
    api.send(&tested(&id, 3, Verdict::Wrong)).await;
    api.finish(&id, 0.0).await;
    api.wait_for(&id, |v| v.status == Status::Succeeded).await;
    let reply = api.get(&format!("/v1.0/operations/{id}")).await;
    assert!(reply.header(header::RETRY_AFTER).is_none());
    assert_eq!(reply.body["percentComplete"], 100);
    assert_eq!(
        reply.body["resourceLocation"],
        format!("/v1.0/submissions/{id}")
    );

    let submission = api.get(&format!("/v1.0/submissions/{id}")).await.body;
    assert_eq!(submission["state"], "judged");
    assert_eq!(submission["score"], 0.0);

    assert_eq!(
        api.result_states(&id).await,
        ["executing", "testing", "tested", "tested", "tested", "done"]
    );
    let results = api
        .get(&format!("/v1.0/submissions/{id}/judge-results"))
        .await
        .body;
    assert_eq!(results["value"][4]["result"], "wrong");
    assert!(results["value"][0]["judgeTime"].is_string());
}

#[tokio::test]
async fn failed_judgings_fail_the_operation() {
    let api = Api::default();
    let id = api.submit().await;
    api.judge_next(&[]).await;
    api.send(&Message::new(
        &id,
        Body::Invalid {
            reason: Some("unknown language".into()),
        },
    ))
    .await;
    api.wait_for(&id, |v| v.status.is_terminal()).await;
    let op = api.get(&format!("/v1.0/operations/{id}")).await.body;
    assert_eq!(op["status"], "failed");
    let submission = api.get(&format!("/v1.0/submissions/{id}")).await.body;
    assert_eq!(submission["state"], "invalidData");
    assert_eq!(submission["reason"], "unknown language");
}

#[tokio::test]
async fn delete_cancels_only_a_not_started_operation() {
    let api = Api::default();
    let first = api.submit().await;
    let second = api.submit().await;
    let uri = format!("/v1.0/operations/{first}");
    for _ in 0..2 {
        let reply = api.delete(&uri).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["status"], "cancelled");
    }
    // The worker skips the cancelled one.
    assert_eq!(api.judge_next(&[]).await, second);
    let reply = api.delete(&format!("/v1.0/operations/{second}")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header(header::ALLOW), Some("GET"));
    assert!(reply.error_message().contains("running"), "{}", reply.body);
    assert_eq!(
        api.delete("/v1.0/operations/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let submission = api.get(&format!("/v1.0/submissions/{first}")).await.body;
    assert_eq!(submission["state"], "cancelled");
}

#[tokio::test]
async fn operations_are_listed_sorted_paged_and_filtered() {
    let api = Api::default();
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(api.submit().await);
    }
    // created[0] runs, created[1] finishes, created[2] is cancelled; 3 and 4 wait.
    api.judge_next(&[]).await;
    api.judge_next(&[]).await;
    api.finish(&created[1], 1.0).await;
    api.wait_for(&created[1], |v| v.status == Status::Succeeded)
        .await;
    api.delete(&format!("/v1.0/operations/{}", created[2]))
        .await;

    let all = api.get("/v1.0/operations").await.body;
    let expected: Vec<String> = [3, 4, 0, 1, 2]
        .iter()
        .map(|&i| created[i].clone())
        .collect();
    assert_eq!(ids(&all), expected);
    assert!(all.get("nextLink").is_none());

    let page = api.get("/v1.0/operations?$top=2").await.body;
    assert_eq!(ids(&page), expected[..2]);
    let next = page["nextLink"].as_str().unwrap().to_owned();
    let page = api.get(&next).await.body;
    assert_eq!(ids(&page), expected[2..4]);
    let page = api.get("/v1.0/operations?top=2&skip=4").await.body;
    assert_eq!(ids(&page), expected[4..]);
    assert!(page.get("nextLink").is_none());

    let filter = |f: &str| {
        format!(
            "/v1.0/operations?$filter={}",
            f.replace(' ', "%20").replace('\'', "%27")
        )
    };
    let page = api.get(&filter("status eq 'notstarted'")).await.body;
    assert_eq!(ids(&page), expected[..2]);
    let page = api
        .get(&filter(
            "not (status eq 'notstarted' or status eq 'running') and problem eq 'test-base'",
        ))
        .await
        .body;
    assert_eq!(ids(&page), expected[3..]);
    let page = api
        .get(&filter(
            "createdDateTime gt 2000-01-01T00:00:00Z and percentComplete ge 100",
        ))
        .await
        .body;
    assert_eq!(ids(&page), [created[1].clone()]);
    // `and` binds tighter than `or`.
    let page = api
        .get(&filter(
            "status eq 'cancelled' or status eq 'running' and kind eq 'rejudge'",
        ))
        .await
        .body;
    assert_eq!(ids(&page), [created[2].clone()]);

    // A filter's nextLink keeps the filter.
    let url = format!("{}&$top=1", filter("status ne 'running'"));
    let page = api.get(&url).await.body;
    let next = page["nextLink"].as_str().unwrap().to_owned();
    let page = api.get(&next).await.body;
    assert_eq!(ids(&page), expected[1..2]);

    let reply = api.get(&filter("status eq")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.error_message().contains("at position 9"),
        "{}",
        reply.body
    );
    for bad in [
        "/v1.0/operations?$top=0",
        "/v1.0/operations?$top=x",
        "/v1.0/operations?$skip=-1",
    ] {
        assert_eq!(api.get(bad).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// Every operation of `GET uri`, following `nextLink` (which must carry `$skiptoken`, `$top`
/// and, when `uri` has one, `$filter`).
async fn follow(api: &Api, uri: &str) -> Vec<String> {
    let mut uri = uri.to_owned();
    let mut listed = Vec::new();
    loop {
        let reply = api.get(&uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
        listed.extend(ids(&reply.body));
        let Some(next) = reply.body.get("nextLink") else {
            return listed;
        };
        let next = next.as_str().unwrap().to_owned();
        assert!(next.starts_with("/v1.0/operations?$top="), "{next}");
        assert!(
            next.contains("&$skiptoken=") && !next.contains("$skip="),
            "{next}"
        );
        assert_eq!(
            next.contains("&$filter="),
            uri.contains("$filter="),
            "{next}"
        );
        uri = next;
    }
}

#[tokio::test]
async fn following_next_link_lists_every_operation_once_in_order() {
    let api = Api::default();
    // Submitted in a burst: many share a creation time (ms), ordered by creation order.
    let mut created = Vec::new();
    for _ in 0..23 {
        created.push(api.submit().await);
    }
    // Three run, one of them finishes; a validation (a workflow) is listed among them.
    for _ in 0..3 {
        api.judge_next(&[]).await;
    }
    api.finish(&created[1], 1.0).await;
    api.wait_for(&created[1], |v| v.status == Status::Succeeded)
        .await;
    let reply = api
        .post(
            "/v1.0/problems/test-base/validations",
            json!({"solutions": [{"name": "accepted/ok.py", "expected": "accepted",
                "language": "python-3.11", "sourceCode": "accepted\naccepted\naccepted"}]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let validation = reply.body["id"].as_str().unwrap().to_owned();
    api.wait_for_operation(&validation, "succeeded").await;

    let all = api.get("/v1.0/operations?$top=1000").await.body;
    assert!(all.get("nextLink").is_none());
    let all = ids(&all);
    let mut expected: Vec<String> = created.clone();
    expected.push(validation.clone());
    let mut sorted = all.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected, "each operation listed once");

    for top in [1, 2, 5, 23, 24] {
        let uri = format!("/v1.0/operations?$top={top}");
        assert_eq!(follow(&api, &uri).await, all, "$top={top}");
    }
    // With a filter: the order of all, less what it leaves out.
    let filter = "/v1.0/operations?$filter=status%20ne%20%27running%27";
    let selected = ids(&api.get(filter).await.body);
    assert_eq!(selected.len(), all.len() - 2);
    let kept: Vec<String> = all
        .iter()
        .filter(|id| selected.contains(id))
        .cloned()
        .collect();
    assert_eq!(selected, kept);
    for top in [1, 3] {
        let uri = format!("{filter}&$top={top}");
        assert_eq!(follow(&api, &uri).await, selected, "$top={top}");
    }
    // A client-given `$skip` still pages.
    let page = api.get("/v1.0/operations?$top=3&$skip=20").await.body;
    assert_eq!(ids(&page), all[20..23]);
    let next = page["nextLink"].as_str().unwrap();
    assert_eq!(ids(&api.get(next).await.body), all[23..]);

    let page = api.get("/v1.0/operations?$top=4").await.body;
    let next = page["nextLink"].as_str().unwrap();
    let token = next
        .split('&')
        .find_map(|part| part.strip_prefix("$skiptoken="))
        .unwrap();
    let mut tampered = token.to_owned();
    // The second byte is the status group: 3 is none.
    tampered.replace_range(2..4, "03");
    for (uri, message) in [
        (
            format!("/v1.0/operations?$skiptoken={tampered}"),
            "status group",
        ),
        ("/v1.0/operations?$skiptoken=zz".into(), "$skiptoken"),
        ("/v1.0/operations?$skiptoken=".into(), "$skiptoken"),
        (
            format!("/v1.0/operations?$skiptoken={token}x"),
            "$skiptoken",
        ),
        (
            format!("/v1.0/operations?$skip=4&$skiptoken={token}"),
            "together",
        ),
        (
            format!("/v1.0/operations?skip=0&skiptoken={token}"),
            "together",
        ),
    ] {
        let reply = api.get(&uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            reply.error_message().contains(message),
            "{uri}: {}",
            reply.body
        );
    }
}

#[tokio::test]
async fn unknown_things_are_404_and_the_openapi_document_is_served() {
    let api = Api::default();
    for uri in [
        "/v1.0/operations/x",
        "/v1.0/submissions/x",
        "/v1.0/submissions/x/judge-results",
        "/v1.0/submissions/x/events",
        "/v1.0/workflows/x",
        "/v1.0/workflows/x/steps",
        "/nope",
    ] {
        let reply = api.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(reply.body["error"]["message"].is_string());
    }
    let doc = api.get("/v1.0/openapi.json").await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1.0/submissions",
        "/v1.0/operations",
        "/v1.0/operations/{id}",
        "/v1.0/submissions/{id}/events",
        "/v1.0/workers",
        "/v1.0/workers/{id}/take",
        "/v1.0/workers/{id}/messages",
        "/v1.0/rejudges",
        "/v1.0/problems/{problem}/validations",
        "/v1.0/workflows/{name}",
        "/v1.0/workflows/{name}/steps",
        "/v1.0/workflows/{name}/steps/{action}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}

#[tokio::test]
async fn a_real_server_accepts_polls_and_streams_events() {
    let api = Api::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(api::serve(
        listener,
        api.state.clone(),
        api.shutdown.clone(),
    ));

    let reply = client::request(addr, "POST", "/v1.0/submissions", Some(&a_plus_b())).await;
    assert_eq!(reply.status, 202);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    let head = reply.head;
    assert!(
        head.contains(&format!("operation-location: /v1.0/operations/{id}")),
        "{head}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");

    // Executing is recorded before the stream opens: it must come first, then the live ones.
    assert_eq!(api.judge_next(&[]).await, id);
    let mut stream = client::Events::open(addr, &format!("/v1.0/submissions/{id}/events")).await;
    let mut events = Vec::new();
    let reading = async {
        while let Some(event) = stream.next().await {
            events.push(event.clone());
            if event == "executing" {
                // The stream is open: play the rest of the worker now.
                for n in 1..=3 {
                    for message in test(&id, n, Verdict::Accepted) {
                        api.send(&message).await;
                    }
                }
                api.finish(&id, 1.0).await;
            }
            if event == "done" {
                break;
            }
        }
    };
    tokio::time::timeout(DEADLINE, reading)
        .await
        .expect("events in time");
    assert_eq!(
        events,
        [
            "executing",
            "testing",
            "tested",
            "testing",
            "tested",
            "testing",
            "tested",
            "done"
        ]
    );

    let op = client::request(addr, "GET", &format!("/v1.0/operations/{id}"), None).await;
    assert_eq!(
        (op.status, op.body["status"].as_str()),
        (200, Some("succeeded"))
    );
    assert!(!op.head.contains("retry-after"));
    let location = op.body["resourceLocation"].as_str().unwrap().to_owned();
    let submission = client::request(addr, "GET", &location, None).await.body;
    assert_eq!(submission["score"], 1.0);
    assert_eq!(submission["state"], "judged");

    api.shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn workers_register_and_report_their_status_and_errors() {
    let api = Api::default();
    let reply = api
        .post("/v1.0/workers", json!({"name": "box-1", "concurrency": 4}))
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let id = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        reply.header(header::LOCATION),
        Some(&*format!("/v1.0/workers/{id}"))
    );
    assert_eq!(reply.body["status"], "active");
    let beat = api
        .post(
            &format!("/v1.0/workers/{id}/heartbeat"),
            json!({"status": "idle", "error": "docker is slow"}),
        )
        .await;
    assert_eq!(beat.status, StatusCode::OK);
    assert_eq!(beat.body["reportedStatus"], "idle");
    assert_eq!(beat.body["lastError"]["message"], "docker is slow");
    // A heartbeat without a body is one too.
    let beat = api
        .call(Method::POST, &format!("/v1.0/workers/{id}/heartbeat"), None)
        .await;
    assert_eq!(beat.status, StatusCode::OK);
    let listed = api.get("/v1.0/workers").await.body;
    assert_eq!(listed["value"][0]["id"], id.as_str());
    assert_eq!(listed["value"][0]["concurrency"], 4);
    assert_eq!(listed["value"][0]["runningOperations"], json!([]));
    // Where registering said the worker is.
    let one = api.get(&format!("/v1.0/workers/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body, listed["value"][0]);
    assert_eq!(
        api.get("/v1.0/workers/nope").await.status,
        StatusCode::NOT_FOUND
    );
    let unknown = api.post("/v1.0/workers/nope/heartbeat", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let bad = api.post("/v1.0/workers", json!({"name": " "})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    // Nothing to take: 204, saying no take gave it anything yet.
    let none = api
        .post(&format!("/v1.0/workers/{id}/take"), json!({}))
        .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    assert_eq!(none.header("take"), Some("0"));
    // A message names its take; what a worker holds is said with the last take it heard of.
    let untaken = api
        .post(
            &format!("/v1.0/workers/{id}/messages"),
            serde_json::to_value(Message::new("x", Body::Executing)).unwrap(),
        )
        .await;
    assert_eq!(untaken.status, StatusCode::BAD_REQUEST, "{}", untaken.body);
    assert!(untaken.error_message().contains("take"), "{}", untaken.body);
    let half = api
        .post(
            &format!("/v1.0/workers/{id}/heartbeat"),
            json!({"running": []}),
        )
        .await;
    assert_eq!(half.status, StatusCode::BAD_REQUEST, "{}", half.body);
    // A worker that stops deregisters; then the service knows it no more.
    let gone = api.delete(&format!("/v1.0/workers/{id}")).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(api.get("/v1.0/workers").await.body["value"], json!([]));
    let again = api.delete(&format!("/v1.0/workers/{id}")).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(again.body["error"]["code"], "unknownWorker");
}

/// A remote worker takes a submission and reports part of it, then falls silent: once it has
/// missed its heartbeats it is unresponsive, the submission is queued again (its partial
/// results gone), taken and finished by another worker; what the silent one reports
/// afterwards is refused.
#[tokio::test]
async fn a_worker_that_stops_heartbeating_has_its_operation_requeued_and_finished_by_another() {
    let api = Api::new(ApiConfig {
        // Long enough that the workers that do answer never look silent, even on a busy machine.
        heartbeat_interval: Duration::from_millis(1000),
        missed_heartbeats: 2,
        ..ApiConfig::default()
    });
    let id = api.submit().await;

    let silent = Remote::register(&api, "silent").await;
    let (taken, silent_take) = silent.take(Duration::ZERO).await;
    assert_eq!(taken.status, StatusCode::OK);
    assert_eq!((taken.body["id"].as_str(), silent_take), (Some(&*id), 1));
    assert_eq!(taken.body["sourceCode"], a_plus_b()["sourceCode"]);
    let testing = Message::new(
        &id,
        Body::Testing {
            test_case: 1,
            subtask: None,
        },
    );
    for message in [
        Message::new(&id, Body::Executing),
        testing.clone(),
        tested(&id, 1, Verdict::Accepted),
    ] {
        assert_eq!(
            silent.report(silent_take, &message).await.status,
            StatusCode::NO_CONTENT
        );
    }
    api.wait_for(&id, |v| v.tests_done == 1).await;
    let op = api.get(&format!("/v1.0/operations/{id}")).await.body;
    assert_eq!(
        (op["status"].as_str(), op["percentComplete"].as_i64()),
        (Some("running"), Some(33))
    );
    let listed = api.get("/v1.0/workers").await.body;
    assert_eq!(listed["value"][0]["runningOperations"], json!([id]));

    // The worker falls silent: the sweep finds it and queues its submission again.
    api.wait_for(&id, |v| v.status == Status::NotStarted).await;
    let listed = api.get("/v1.0/workers").await.body;
    assert_eq!(listed["value"][0]["status"], "unresponsive");
    assert_eq!(listed["value"][0]["runningOperations"], json!([]));
    let op = api.get(&format!("/v1.0/operations/{id}")).await.body;
    assert_eq!(
        (op["status"].as_str(), op["percentComplete"].as_i64()),
        (Some("notstarted"), Some(0))
    );

    let other = Remote::register(&api, "other").await;
    let (taken, other_take) = other.taken().await;
    assert_eq!(taken, id);
    let late = silent
        .report(silent_take, &tested(&id, 2, Verdict::Wrong))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["error"]["code"], "notHeld");
    let mut sequence = vec![Message::new(&id, Body::Executing)];
    for n in 1..=3 {
        sequence.extend(test(&id, n, Verdict::Accepted));
    }
    sequence.push(Message::new(
        &id,
        Body::Done {
            score: Some(1.0),
            failed_subtasks: None,
        },
    ));
    for message in sequence {
        assert_eq!(
            other.report(other_take, &message).await.status,
            StatusCode::NO_CONTENT
        );
    }
    let op = api.wait_for_operation(&id, "succeeded").await;
    assert_eq!(op["percentComplete"], 100);
    // Only the second worker's attempt.
    assert_eq!(
        api.result_states(&id).await,
        [
            "executing",
            "testing",
            "tested",
            "testing",
            "tested",
            "testing",
            "tested",
            "done"
        ]
    );
    let submission = api.get(&format!("/v1.0/submissions/{id}")).await.body;
    assert_eq!(
        (submission["state"].as_str(), submission["score"].as_f64()),
        (Some("judged"), Some(1.0))
    );
    // The finished submission is no longer the other worker's.
    let listed = api.get("/v1.0/workers").await.body;
    assert!(listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["runningOperations"] == json!([])));
}

/// A worker the service took a submission from (it looked silent) and then gave it again: the
/// late messages of its first take are refused and not recorded, those of the second are.
#[tokio::test]
async fn the_late_messages_of_an_old_take_are_refused() {
    let api = Api::default();
    let id = api.submit().await;
    let worker = Remote::register(&api, "w").await;
    let (taken, first) = worker.taken().await;
    assert_eq!(taken, id);
    let [testing, _] = test(&id, 1, Verdict::Accepted);
    assert_eq!(
        worker.report(first, &testing).await.status,
        StatusCode::NO_CONTENT
    );

    // It looked silent: taken back, and given to the same worker again.
    let requeued = api.state.workers().sweep(now_ms() + 3_600_000).await;
    assert_eq!(requeued, [id.as_str()]);
    let (again, second) = worker.taken().await;
    assert_eq!(again, id);
    assert!(second > first, "take {second} after take {first}");

    // Its first attempt goes on, late: refused.
    let late = worker.report(first, &tested(&id, 1, Verdict::Wrong)).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.body);
    assert_eq!(late.body["error"]["code"], "notHeld");
    // The second attempt is recorded alone.
    for message in test(&id, 1, Verdict::Accepted) {
        let reply = worker.report(second, &message).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    api.wait_for(&id, |v| v.tests_done == 1).await;
    let results = api
        .get(&format!("/v1.0/submissions/{id}/judge-results"))
        .await
        .body;
    let results: Vec<(&str, &str)> = results["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| {
            let state = m["state"].as_str().expect("a state");
            (state, m["result"].as_str().unwrap_or_default())
        })
        .collect();
    assert_eq!(
        results,
        [("executing", ""), ("testing", ""), ("tested", "accepted")]
    );
}

/// A take whose answer never reached its worker: a heartbeat saying the worker runs nothing
/// and heard of that take has the service queue the submission again, for any worker; one
/// that has not heard of it yet (the answer may still be on its way) leaves it, as does one
/// that says the worker runs it.
#[tokio::test]
async fn a_submission_whose_take_answer_was_lost_is_queued_again_by_the_heartbeat() {
    let api = Api::default();
    let id = api.submit().await;
    let worker = Remote::register(&api, "w").await;
    // The worker never gets this answer.
    let (_, take) = worker.taken().await;

    let held = |beat: Reply| {
        assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
        beat.body["runningOperations"].clone()
    };
    let on_its_way = json!({"status": "idle", "running": [], "lastTake": take - 1});
    assert_eq!(held(worker.heartbeat(on_its_way).await), json!([id]));
    let running = json!({"running": [id], "lastTake": take});
    assert_eq!(held(worker.heartbeat(running).await), json!([id]));
    let status = || async { api.backend.get(&id).await.unwrap().unwrap().status };
    assert_eq!(status().await, Status::Running);

    let lost = json!({"status": "idle", "running": [], "lastTake": take});
    assert_eq!(held(worker.heartbeat(lost).await), json!([]));
    assert_eq!(status().await, Status::NotStarted);
    let other = Remote::register(&api, "other").await;
    let (taken, other_take) = other.taken().await;
    assert_eq!(taken, id);
    // What the first worker would send under the lost take is refused.
    let [testing, _] = test(&id, 1, Verdict::Accepted);
    let refused = worker.report(take, &testing).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    let reply = other.report(other_take, &testing).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
}

/// The memory store, except that a claim (`executing`) waits until claims are let through, as
/// one over the network may take a while: for cutting a take short in the middle of its claim.
struct SlowClaims {
    memory: Arc<MemoryBackend>,
    gate: Arc<ClaimGate>,
}

struct ClaimGate {
    /// Claims started so far.
    started: tokio::sync::watch::Sender<usize>,
    /// Whether claims go through.
    open: tokio::sync::watch::Sender<bool>,
}

struct SlowClaimsInterface {
    inner: Arc<dyn Interface>,
    gate: Arc<ClaimGate>,
}

#[async_trait]
impl Interface for SlowClaimsInterface {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        self.inner.next().await
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        if message.body == Body::Executing {
            self.gate.started.send_modify(|n| *n += 1);
            let mut open = self.gate.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        self.inner.send(message).await
    }
}

#[async_trait]
impl Backend for SlowClaims {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn workflow_stores(self: Arc<Self>) -> WorkflowStores {
        self.memory.clone().workflow_stores()
    }
}

#[async_trait]
impl Listing for SlowClaims {
    async fn get(&self, id: &str) -> Result<Option<SubmissionView>, BackendError> {
        self.memory.get(id).await
    }

    async fn list(&self) -> Result<Vec<SubmissionView>, BackendError> {
        self.memory.list().await
    }

    async fn list_page(
        &self,
        filter: Option<&Expr>,
        after: Option<&SortKey>,
        limit: usize,
    ) -> Result<Vec<SubmissionView>, BackendError> {
        self.memory.list_page(filter, after, limit).await
    }

    async fn last_finished(&self, limit: usize) -> Result<Vec<SubmissionView>, BackendError> {
        self.memory.last_finished(limit).await
    }

    async fn messages(&self, id: &str) -> Result<Option<Vec<Recorded>>, BackendError> {
        self.memory.messages(id).await
    }

    async fn cancel(&self, id: &str) -> Result<Cancel, BackendError> {
        self.memory.cancel(id).await
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.memory.subscribe()
    }
}

#[async_trait]
impl Intake for SlowClaims {
    async fn submit(
        &self,
        submission: Submission,
        total_tests: Option<usize>,
        queueing: Queueing,
    ) -> Result<SubmissionView, BackendError> {
        self.memory.submit(submission, total_tests, queueing).await
    }

    async fn queued(&self) -> Result<usize, BackendError> {
        self.memory.queued().await
    }

    fn worker_interface(self: Arc<Self>) -> Arc<dyn Interface> {
        Arc::new(SlowClaimsInterface {
            inner: self.memory.clone().worker_interface(),
            gate: self.gate.clone(),
        })
    }

    async fn requeue(&self, id: &str) -> Result<bool, BackendError> {
        self.memory.requeue(id).await
    }

    async fn expire(&self, now_ms: i64) -> Result<Vec<String>, BackendError> {
        self.memory.expire(now_ms).await
    }
}

#[async_trait]
impl Callbacks for SlowClaims {
    async fn callbacks_due(&self) -> Result<Vec<SubmissionView>, BackendError> {
        self.memory.callbacks_due().await
    }

    async fn callback_settled(&self, id: &str, outcome_ms: i64) -> Result<(), BackendError> {
        self.memory.callback_settled(id, outcome_ms).await
    }
}

/// A take whose request goes away (the server drops its handler) in the middle of its claim:
/// the claim ends all the same and the submission is given back, for any worker to take.
#[tokio::test]
async fn a_take_cut_short_during_its_claim_gives_the_submission_back() {
    let gate = Arc::new(ClaimGate {
        started: tokio::sync::watch::channel(0).0,
        open: tokio::sync::watch::channel(false).0,
    });
    let api = Api::over(ApiConfig::default(), |memory| {
        Arc::new(SlowClaims {
            memory,
            gate: gate.clone(),
        })
    });
    let worker = Remote::register(&api, "w").await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/v1.0/workers/{}/take?wait=30", worker.id))
        .body(HttpBody::empty())
        .expect("request");
    let take = tokio::spawn(api::router(api.state.clone()).oneshot(request));
    let id = api.submit().await;
    let mut started = gate.started.subscribe();
    tokio::time::timeout(DEADLINE, started.wait_for(|n| *n == 1))
        .await
        .expect("the take claims the submission in time")
        .expect("the gate lives");

    take.abort();
    assert!(take.await.expect_err("cut short").is_cancelled());
    gate.open.send_replace(true);

    let other = Remote::register(&api, "other").await;
    let (taken, _) = other.taken().await;
    assert_eq!(taken, id);
    let listed = api.get("/v1.0/workers").await.body;
    let running: Vec<&Value> = listed["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|w| &w["runningOperations"])
        .collect();
    assert_eq!(running, [&json!([]), &json!([id])]);
    // The take that went away gave its number before the claim was given back.
    let refused = worker.report(1, &Message::new(&id, Body::Executing)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
}

/// The answer to `done` is lost and the worker sends it again: 204 both times, recorded once.
/// Another end sent after it is refused, as is the same `done` under another take.
#[tokio::test]
async fn a_terminal_message_sent_again_is_answered_as_recorded() {
    let api = Api::default();
    let id = api.submit().await;
    let worker = Remote::register(&api, "w").await;
    let (_, take) = worker.taken().await;
    let done = Message::new(
        &id,
        Body::Done {
            score: Some(0.0),
            failed_subtasks: None,
        },
    );
    for _ in 0..2 {
        let reply = worker.report(take, &done).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    }
    api.wait_for_operation(&id, "succeeded").await;
    assert_eq!(api.result_states(&id).await, ["executing", "done"]);

    let error = Message::new(
        &id,
        Body::Error {
            reason: Some("late".into()),
        },
    );
    let refused = worker.report(take, &error).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "notHeld");
    let refused = worker.report(take + 1, &done).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(api.result_states(&id).await, ["executing", "done"]);
}

/// Submits a program (scripted verdict lines) and has a local worker judge it as scripted.
async fn judged(api: &Api, verdicts: &[Verdict], score: f64) -> String {
    let id = api.submit().await;
    assert_eq!(api.judge_next(verdicts).await, id);
    api.finish(&id, score).await;
    api.wait_for(&id, |v| v.status == Status::Succeeded).await;
    id
}

/// Submits `source` (scripted verdicts, one per line) without judging it.
async fn submit_source(api: &Api, source: &str) -> String {
    let mut body = a_plus_b();
    body["sourceCode"] = json!(source);
    let reply = api.post("/v1.0/submissions", body).await;
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_rejudge_is_an_operation_whose_results_replace_the_old_ones() {
    let api = Api::default();
    let id = judged(&api, &[Verdict::Wrong], 0.0).await;
    // Its program, run again by the (scripted) judge, passes all three tests.
    let again = submit_source(&api, "accepted\naccepted\naccepted").await;

    for (body, message) in [
        (json!({}), "either problem"),
        (json!({"problem": "../x"}), "either problem"),
        (json!({"submissions": ["nope"]}), "nope"),
        (
            json!({"problem": "test-base", "webhook": "ftp://x"}),
            "http://",
        ),
    ] {
        let reply = api.post("/v1.0/rejudges", body.clone()).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(reply.error_message().contains(message), "{}", reply.body);
    }

    let reply = api
        .post(
            "/v1.0/rejudges",
            json!({"submissions": [again], "maxRunning": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["kind"], "rejudge");
    let location = reply.header("operation-location").unwrap().to_owned();
    let name = reply.body["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1.0/operations/{name}"));

    let op = api.wait_for_operation(&name, "succeeded").await;
    assert_eq!(op["percentComplete"], 100);
    assert_eq!(op["resourceLocation"], format!("/v1.0/workflows/{name}"));
    let submission = api.get(&format!("/v1.0/submissions/{again}")).await.body;
    assert_eq!(
        (submission["state"].as_str(), submission["score"].as_f64()),
        (Some("judged"), Some(1.0))
    );
    // Untouched: not selected.
    let untouched = api.get(&format!("/v1.0/submissions/{id}")).await.body;
    assert_eq!(untouched["score"], 0.0);

    let workflow = api.get(&format!("/v1.0/workflows/{name}")).await.body;
    assert_eq!(workflow["status"], "succeeded");
    assert_eq!(
        workflow["result"]["judged"][0]["submission"],
        again.as_str()
    );
    assert_eq!(
        workflow["counts"]["succeeded"], 2,
        "the judging and the summary"
    );

    // The rejudge is listed with the submissions, and filtered by kind.
    let page = api
        .get("/v1.0/operations?$filter=kind%20eq%20%27rejudge%27")
        .await
        .body;
    assert_eq!(ids(&page), [name.as_str()]);
    // Finished: it cannot be cancelled any more.
    assert_eq!(
        api.delete(&location).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn a_validation_is_an_operation_reporting_mismatches() {
    let api = Api::default();
    let solution = |name: &str, expected: &str, source: &str| json!({"name": name, "expected": expected, "language": "python-3.11", "sourceCode": source});
    let reply = api
        .post(
            "/v1.0/problems/test-base/validations",
            json!({"solutions": [
                solution("accepted/ok.py", "accepted", "accepted\naccepted\naccepted"),
                solution("wrong_answer/wa.py", "wrong_answer", "accepted\nwrong\naccepted"),
                solution("time_limit_exceeded/slow.py", "time_limit_exceeded", "accepted\naccepted\naccepted"),
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    assert_eq!(reply.body["kind"], "validation");
    let name = reply.body["id"].as_str().unwrap().to_owned();
    api.wait_for_operation(&name, "succeeded").await;
    let workflow = api.get(&format!("/v1.0/workflows/{name}")).await.body;
    let report = &workflow["result"];
    assert_eq!(report["problem"], "test-base");
    let matches: Vec<(&str, bool)> = report["solutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["solution"].as_str().unwrap(),
                s["matches"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        matches,
        [
            ("accepted/ok.py", true),
            ("wrong_answer/wa.py", true),
            ("time_limit_exceeded/slow.py", false)
        ]
    );
    assert_eq!(report["slowest_accepted"]["limit"], 3000);

    for (uri, body, status) in [
        (
            "/v1.0/problems/test-base/validations",
            json!({"solutions": []}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1.0/problems/no-such-problem/validations",
            json!({"solutions": [solution("accepted/a.py", "accepted", "accepted")]}),
            StatusCode::NOT_FOUND,
        ),
        (
            "/v1.0/problems/test-base/validations",
            json!({"solutions": [{"name": "x", "expected": "accepted", "language": "intercal", "sourceCode": "x"}]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/v1.0/problems/test-base/validations",
            json!({"solutions": [{"name": "x", "expected": "great", "language": "python", "sourceCode": "x"}]}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        assert_eq!(
            api.post(uri, body.clone()).await.status,
            status,
            "{uri} {body}"
        );
    }
}

/// The control API over HTTP: steps selected by tags, dry runs, refusals with their reason,
/// step status, and cancelling (shutting down) a running rejudge, idempotently.
#[tokio::test]
async fn workflow_steps_are_controlled_by_tags_with_dry_runs() {
    let api = Api::default();
    // Judged one at a time: the held one runs until interrupted, the others wait behind it.
    let held = submit_source(&api, "hold").await;
    let others = [
        submit_source(&api, "accepted").await,
        submit_source(&api, "wrong").await,
    ];
    let reply = api
        .post(
            "/v1.0/rejudges",
            json!({"problem": "test-base", "maxRunning": 1, "attempts": 1}),
        )
        .await;
    let name = reply.body["id"].as_str().unwrap().to_owned();
    let steps = format!("/v1.0/workflows/{name}/steps");
    let runner = api.state.workflows().unwrap().clone();
    let (workflow, _) = runner.get(&name).unwrap();
    tokio::time::timeout(
        DEADLINE,
        workflow.wait_until(|wf| {
            wf.status(
                &executioner::workflow::Selector::tag("submission", held.as_str()),
                &[],
            )[0]
            .state
                == executioner::workflow::StepState::Running
        }),
    )
    .await
    .expect("the held judging runs");

    let listed = api
        .get(&format!("{steps}?tag=kind=judge&fields=id,state"))
        .await
        .body;
    let states: Vec<(&str, &str)> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["state"].as_str().unwrap()))
        .collect();
    let judge = |id: &str| format!("judge-{id}");
    assert_eq!(
        states,
        [
            (&*judge(&held), "running"),
            (&*judge(&others[0]), "waiting"),
            (&*judge(&others[1]), "waiting")
        ]
    );
    let running = api.get(&format!("{steps}?state=running")).await.body;
    assert_eq!(running["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.get(&format!("{steps}?state=sleeping")).await.status,
        StatusCode::BAD_REQUEST
    );

    // Pause the waiting ones: a dry run first changes nothing.
    let pause = format!("{steps}/pause");
    let dry = api
        .post(&pause, json!({"tags": {"kind": "judge"}, "dryRun": true}))
        .await
        .body;
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["applied"].as_array().unwrap().len(), 2, "{dry}");
    assert_eq!(dry["refused"][0]["step"], judge(&held).as_str());
    assert!(
        dry["refused"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("only a ready or waiting step can be paused"),
        "{dry}"
    );
    let still = api
        .get(&format!("{steps}?state=waiting&tag=kind=judge"))
        .await
        .body;
    assert_eq!(still["value"].as_array().unwrap().len(), 2);
    let paused = api
        .post(
            &pause,
            json!({"tags": {"kind": "judge", "submission": others[0]}}),
        )
        .await
        .body;
    assert_eq!(paused["applied"][0]["to"], "marked_to_pause");
    // Skip the other; it cannot be unskipped once skipped.
    let skipped = api
        .post(
            &format!("{steps}/skip"),
            json!({"tags": {"submission": others[1]}}),
        )
        .await
        .body;
    assert_eq!(skipped["applied"][0]["to"], "marked_to_skip");
    assert_eq!(
        api.post(&format!("{steps}/teleport"), json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // DELETE on the rejudge's operation shuts it down: the held judging is interrupted.
    let uri = format!("/v1.0/operations/{name}");
    let cancelled = api.delete(&uri).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let op = api.wait_for_operation(&name, "cancelled").await;
    assert!(op.get("resourceLocation").is_none());
    assert_eq!(api.delete(&uri).await.body["status"], "cancelled");
    let refused = api.post(&format!("{steps}/resume"), json!({})).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.error_message().contains("shut down"),
        "{}",
        refused.body
    );
    let workflow = api.get(&format!("/v1.0/workflows/{name}")).await.body;
    assert_eq!(workflow["status"], "cancelled");
}

#[tokio::test]
async fn a_client_over_its_rate_is_refused_and_others_and_workers_are_not() {
    let api = Api::limited(0.5, 2);
    let a: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let a_again: SocketAddr = "192.0.2.1:40001".parse().unwrap();
    let b: SocketAddr = "192.0.2.2:40000".parse().unwrap();
    let get = |peer| api.call_from(Some(peer), Method::GET, "/v1.0/operations", None);

    // A registered worker (registering counts against its client's rate).
    let worker = api
        .call_from(
            Some(a),
            Method::POST,
            "/v1.0/workers",
            Some(json!({"name": "w"})),
        )
        .await;
    assert_eq!(worker.status, StatusCode::CREATED, "{}", worker.body);
    let worker = worker.body["id"].as_str().unwrap().to_owned();
    assert_eq!(get(a).await.status, StatusCode::OK);
    // The burst is spent; another connection of the same address is the same client.
    let refused = get(a_again).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert_eq!(refused.body["error"]["code"], "tooManyRequests");
    // One token comes back every 2 s.
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Nothing was done for a refused request.
    let before = api.backend.list().await.unwrap().len();
    let refused = api
        .call_from(Some(a), Method::POST, "/v1.0/submissions", Some(a_plus_b()))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(api.backend.list().await.unwrap().len(), before);

    // Another client has its own allowance.
    assert_eq!(get(b).await.status, StatusCode::OK);
    // The worker's own calls are never refused.
    for _ in 0..5 {
        let beat = api
            .call_from(
                Some(a),
                Method::POST,
                &format!("/v1.0/workers/{worker}/heartbeat"),
                None,
            )
            .await;
        assert_eq!(beat.status, StatusCode::OK, "{}", beat.body);
    }
}

#[tokio::test]
async fn a_real_server_limits_each_connecting_address() {
    let api = Api::limited(0.1, 3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(api::serve(
        listener,
        api.state.clone(),
        api.shutdown.clone(),
    ));
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            client::request(addr, "GET", "/v1.0/workers", None)
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    api.shutdown.cancel();
    server.await.unwrap().unwrap();
}

/// Accepts one HTTP request on `listener` and answers 200; returns its body.
async fn receive_one_post(listener: TcpListener) -> Value {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the request ended early");
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("a content-length");
            if body.len() >= length {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                return serde_json::from_str(body).expect("a JSON body");
            }
        }
    }
}

#[tokio::test]
async fn webhooks_go_only_to_allowed_hosts() {
    let hook = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hook.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/done");

    // By default a service sends no webhooks at all.
    let closed = Api::default();
    let id = judged(&closed, &[Verdict::Accepted], 1.0).await;
    let reply = closed
        .post(
            "/v1.0/rejudges",
            json!({"submissions": [id], "webhook": url}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(reply.body["error"]["code"], "webhookNotAllowed");
    assert!(
        reply.error_message().contains("--webhook-allow"),
        "{}",
        reply.body
    );

    let api = Api::new(ApiConfig {
        webhook_hosts: vec![format!("127.0.0.1:{port}")],
        ..ApiConfig::default()
    });
    // Its program, run again by the (scripted) judge, passes its test.
    let id = submit_source(&api, "accepted").await;
    // Not the allowed port, not the allowed host (the cloud metadata address, a name for it).
    for other in [
        format!("http://127.0.0.1:{}/done", port.wrapping_add(1).max(1)),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        format!("http://localhost:{port}/done"),
    ] {
        let reply = api
            .post(
                "/v1.0/rejudges",
                json!({"submissions": [id], "webhook": other}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{other}: {}",
            reply.body
        );
        assert!(reply.error_message().contains(&format!("127.0.0.1:{port}")));
    }
    assert!(
        api.backend.list().await.unwrap().len() == 1,
        "a refused rejudge starts nothing"
    );

    // The allowed one is told the summary once the rejudge is done.
    let received = tokio::spawn(receive_one_post(hook));
    let reply = api
        .post(
            "/v1.0/rejudges",
            json!({"submissions": [id], "webhook": url}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let name = reply.body["id"].as_str().unwrap().to_owned();
    api.wait_for_operation(&name, "succeeded").await;
    let told = tokio::time::timeout(DEADLINE, received)
        .await
        .expect("the webhook was called in time")
        .unwrap();
    assert!(told.to_string().contains(&id), "{told}");
}

#[tokio::test]
async fn with_a_worker_token_only_workers_that_show_it_act_as_workers() {
    let api = Api::new(ApiConfig {
        worker_token: Some(executioner::api::auth::Token::new("s3cret")),
        ..ApiConfig::default()
    });
    let register = |authorization: Option<&'static str>| {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/v1.0/workers")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let router = api::router(api.state.clone());
        async move {
            router
                .oneshot(request.body(HttpBody::from(r#"{"name":"w"}"#)).unwrap())
                .await
                .unwrap()
        }
    };
    for refused in [
        None,
        Some("Bearer guessed"),
        Some("Basic s3cret"),
        Some("Bearer s3cre"),
    ] {
        let response = register(refused).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{refused:?}");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }
    assert!(api.state.workers().all().is_empty(), "nobody registered");
    let response = register(Some("Bearer s3cret")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = api.state.workers().all()[0].id.clone();

    // Its heartbeats, takes and reports need the token too; so does deregistering it.
    api.submit().await;
    for (method, uri) in [
        (Method::POST, format!("/v1.0/workers/{id}/heartbeat")),
        (Method::POST, format!("/v1.0/workers/{id}/take")),
        (Method::POST, format!("/v1.0/workers/{id}/messages?take=1")),
        (Method::DELETE, format!("/v1.0/workers/{id}")),
    ] {
        let reply = api.call(method.clone(), &uri, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    assert_eq!(api.backend.queued().await.unwrap(), 1, "nothing was taken");
    // Reading stays open, as does the rest of the API.
    assert_eq!(api.get("/v1.0/workers").await.status, StatusCode::OK);
    assert_eq!(
        api.get(&format!("/v1.0/workers/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(api.get("/v1.0/operations").await.status, StatusCode::OK);
}

#[tokio::test]
async fn with_a_client_token_only_the_platform_drives_the_judge() {
    let api = Api::new(ApiConfig {
        client_token: Some(executioner::api::auth::Token::new("platform")),
        ..ApiConfig::default()
    });
    let call =
        |method: Method, uri: &'static str, body: Option<Value>, token: Option<&'static str>| {
            let mut request = Request::builder().method(method).uri(uri);
            if let Some(token) = token {
                request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            }
            let body = match body {
                Some(body) => {
                    request = request.header(header::CONTENT_TYPE, "application/json");
                    HttpBody::from(body.to_string())
                }
                None => HttpBody::empty(),
            };
            let router = api::router(api.state.clone());
            async move {
                router
                    .oneshot(request.body(body).unwrap())
                    .await
                    .unwrap()
                    .status()
            }
        };
    for (method, uri, body) in [
        (Method::POST, "/v1.0/submissions", Some(a_plus_b())),
        (Method::GET, "/v1.0/operations", None),
        (Method::GET, "/v1.0/operations/x", None),
        (Method::DELETE, "/v1.0/operations/x", None),
        (
            Method::POST,
            "/v1.0/rejudges",
            Some(json!({"problem": "test-base"})),
        ),
        (Method::GET, "/v1.0/workers", None),
        (Method::GET, "/v1.0/submissions/x/events", None),
    ] {
        for token in [None, Some("guessed")] {
            assert_eq!(
                call(method.clone(), uri, body.clone(), token).await,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {token:?}"
            );
        }
    }
    assert!(
        api.backend.list().await.unwrap().is_empty(),
        "nothing submitted"
    );
    assert_eq!(
        call(
            Method::POST,
            "/v1.0/submissions",
            Some(a_plus_b()),
            Some("platform")
        )
        .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        call(Method::GET, "/v1.0/operations", None, Some("platform")).await,
        StatusCode::OK
    );
    // The document describing the API is open; workers need no client token (they have their
    // own, not configured here).
    assert_eq!(
        call(Method::GET, "/v1.0/openapi.json", None, None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(
            Method::POST,
            "/v1.0/workers",
            Some(json!({"name": "w"})),
            None
        )
        .await,
        StatusCode::CREATED
    );
}
