//! The HTTP operations API, in process (`oneshot`) and over a real socket. The test plays the
//! worker through the shared memory interface, so no Docker is needed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{header, Method, Request, Response, StatusCode};
use executioner::api::{self, ApiConfig, AppState, Operations, Status};
use executioner::interface::{Interface, MemoryInterface};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::protocol::{Body, Message};
use executioner::verdict::Verdict;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const DEADLINE: Duration = Duration::from_secs(10);

fn problems_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems")
}

/// An API over a fresh memory interface, checking problems (fixtures) and languages (built-in).
fn app(config: ApiConfig) -> (AppState, CancellationToken) {
    let shutdown = CancellationToken::new();
    let config = ApiConfig {
        problems: Some(Arc::new(ProblemStore::new(problems_root()))),
        languages: Some(Arc::new(Registry::builtin().expect("built-in registry"))),
        ..config
    };
    let state = AppState::new(Arc::new(MemoryInterface::new()), config, shutdown.clone());
    state.follow();
    (state, shutdown)
}

async fn call(
    state: &AppState,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> Response<HttpBody> {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            HttpBody::from(body.to_string())
        }
        None => HttpBody::empty(),
    };
    api::router(state.clone())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("infallible")
}

async fn json_of(response: Response<HttpBody>) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn a_plus_b() -> Value {
    json!({"problem": "test-base", "language": "python", "sourceCode": "print(sum(map(int, input().split())))"})
}

/// Submits and returns the operation id.
async fn submit(state: &AppState) -> String {
    let response = call(state, Method::POST, "/v1.0/submissions", Some(a_plus_b())).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    json_of(response).await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Waits (with a deadline) until operation `id` satisfies `done`.
async fn wait_for(
    operations: &Operations,
    id: &str,
    done: impl Fn(&executioner::api::operations::Operation) -> bool,
) {
    let waiting = async {
        loop {
            let mut changes = operations.subscribe();
            if operations.get(id).is_some_and(|op| done(&op)) {
                return;
            }
            let _ = changes.recv().await;
        }
    };
    tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("operation did not reach the expected state in time");
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
        },
    )
}

/// Plays the worker: takes the next submission through the API's gate and judges it fake.
async fn judge_next(state: &AppState, results: &[Verdict]) -> String {
    let gate = state.worker_interface();
    let submission = tokio::time::timeout(DEADLINE, gate.next())
        .await
        .expect("a submission in time")
        .expect("interface")
        .expect("not closed");
    let id = submission.id;
    gate.send(&Message::new(&id, Body::Executing))
        .await
        .expect("send");
    for (i, result) in results.iter().enumerate() {
        let n = i as u32 + 1;
        let testing = Message::new(
            &id,
            Body::Testing {
                test_case: n,
                subtask: None,
            },
        );
        gate.send(&testing).await.expect("send");
        gate.send(&tested(&id, n, *result)).await.expect("send");
    }
    id
}

async fn finish(state: &AppState, id: &str, score: f64) {
    let done = Message::new(
        id,
        Body::Done {
            score: Some(score),
            failed_subtasks: None,
        },
    );
    state.interface().send(&done).await.expect("send");
}

#[tokio::test]
async fn a_submission_is_accepted_as_an_operation() {
    let (state, _shutdown) = app(ApiConfig::default());
    let response = call(&state, Method::POST, "/v1.0/submissions", Some(a_plus_b())).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()["operation-location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    let body = json_of(response).await;
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1.0/operations/{id}"));
    assert_eq!(body["status"], "notstarted");
    assert_eq!(body["percentComplete"], 0);
    assert!(body.get("resourceLocation").is_none());

    let polled = call(&state, Method::GET, &location, None).await;
    assert_eq!(polled.status(), StatusCode::OK);
    assert_eq!(polled.headers()[header::RETRY_AFTER], "1");
    let polled = json_of(polled).await;
    assert_eq!(polled["status"], "notstarted");
    assert_eq!(polled["createdDateTime"], body["createdDateTime"]);

    let submission = json_of(
        call(
            &state,
            Method::GET,
            &format!("/v1.0/submissions/{id}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(submission["state"], "queued");
    // The worker sees it.
    assert_eq!(state.interface().next().await.unwrap().unwrap().id, id);
}

#[tokio::test]
async fn bad_submissions_get_json_errors() {
    let (state, _shutdown) = app(ApiConfig {
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
            with("language", json!("cobol")),
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
        (
            json!([1, 2]),
            StatusCode::BAD_REQUEST,
            "not a valid submission",
        ),
    ];
    for (body, status, message) in cases {
        let response = call(
            &state,
            Method::POST,
            "/v1.0/submissions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(response.status(), status, "{body}");
        let error = json_of(response).await;
        let text = error["error"]["message"].as_str().unwrap();
        assert!(text.contains(message), "{body}: {text}");
        assert!(error["error"]["code"].is_string());
    }
    // Not JSON at all.
    let request = Request::post("/v1.0/submissions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(HttpBody::from("{not json"))
        .unwrap();
    let response = api::router(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(response).await["error"]["message"].is_string());
    assert!(state.operations().all().is_empty());
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let (state, _shutdown) = app(ApiConfig {
        max_queued: 2,
        retry_after_secs: 7,
        ..ApiConfig::default()
    });
    submit(&state).await;
    submit(&state).await;
    let response = call(&state, Method::POST, "/v1.0/submissions", Some(a_plus_b())).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    assert_eq!(json_of(response).await["error"]["code"], "queueFull");
    // Once one starts, there is room again.
    judge_next(&state, &[]).await;
    submit(&state).await;
}

#[tokio::test]
async fn polling_follows_the_messages_to_the_result() {
    let (state, _shutdown) = app(ApiConfig::default());
    let id = submit(&state).await;
    assert_eq!(judge_next(&state, &[Verdict::Accepted]).await, id);
    wait_for(state.operations(), &id, |op| op.log.len() == 3).await;
    let op =
        json_of(call(&state, Method::GET, &format!("/v1.0/operations/{id}"), None).await).await;
    assert_eq!(op["status"], "running");
    assert_eq!(op["percentComplete"], 33, "1 of the 3 tests of test-base");

    let more = [
        tested(&id, 2, Verdict::Accepted),
        tested(&id, 3, Verdict::Wrong),
    ];
    for m in &more {
        state.interface().send(m).await.unwrap();
    }
    finish(&state, &id, 0.0).await;
    wait_for(state.operations(), &id, |op| op.status == Status::Succeeded).await;
    let response = call(&state, Method::GET, &format!("/v1.0/operations/{id}"), None).await;
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
    let op = json_of(response).await;
    assert_eq!(op["percentComplete"], 100);
    assert_eq!(op["resourceLocation"], format!("/v1.0/submissions/{id}"));

    let submission = json_of(
        call(
            &state,
            Method::GET,
            &format!("/v1.0/submissions/{id}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(submission["state"], "judged");
    assert_eq!(submission["score"], 0.0);

    let results = json_of(
        call(
            &state,
            Method::GET,
            &format!("/v1.0/submissions/{id}/judge-results"),
            None,
        )
        .await,
    )
    .await;
    let states: Vec<&str> = results["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        ["executing", "testing", "tested", "tested", "tested", "done"]
    );
    assert_eq!(results["value"][4]["result"], "wrong");
    assert!(results["value"][0]["judgeTime"].is_string());
}

#[tokio::test]
async fn failed_judgings_fail_the_operation() {
    let (state, _shutdown) = app(ApiConfig::default());
    let id = submit(&state).await;
    judge_next(&state, &[]).await;
    let invalid = Message::new(
        &id,
        Body::Invalid {
            reason: Some("unknown language".into()),
        },
    );
    state.interface().send(&invalid).await.unwrap();
    wait_for(state.operations(), &id, |op| op.status.is_terminal()).await;
    let op =
        json_of(call(&state, Method::GET, &format!("/v1.0/operations/{id}"), None).await).await;
    assert_eq!(op["status"], "failed");
    let submission = json_of(
        call(
            &state,
            Method::GET,
            &format!("/v1.0/submissions/{id}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(submission["state"], "invalidData");
    assert_eq!(submission["reason"], "unknown language");
}

#[tokio::test]
async fn delete_cancels_only_a_not_started_operation() {
    let (state, _shutdown) = app(ApiConfig::default());
    let first = submit(&state).await;
    let second = submit(&state).await;
    let uri = format!("/v1.0/operations/{first}");
    for _ in 0..2 {
        let response = call(&state, Method::DELETE, &uri, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json_of(response).await["status"], "cancelled");
    }
    // The worker skips the cancelled one.
    assert_eq!(judge_next(&state, &[]).await, second);
    wait_for(state.operations(), &second, |op| {
        op.status == Status::Running
    })
    .await;
    let response = call(
        &state,
        Method::DELETE,
        &format!("/v1.0/operations/{second}"),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(json_of(response).await["error"]["message"]
        .as_str()
        .unwrap()
        .contains("running"));
    let response = call(&state, Method::DELETE, "/v1.0/operations/nope", None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let submission = json_of(
        call(
            &state,
            Method::GET,
            &format!("/v1.0/submissions/{first}"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(submission["state"], "cancelled");
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
async fn operations_are_listed_sorted_paged_and_filtered() {
    let (state, _shutdown) = app(ApiConfig::default());
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(submit(&state).await);
    }
    // created[0] runs, created[1] finishes, created[2] is cancelled; 3 and 4 wait.
    judge_next(&state, &[]).await;
    judge_next(&state, &[]).await;
    finish(&state, &created[1], 1.0).await;
    wait_for(state.operations(), &created[1], |op| {
        op.status == Status::Succeeded
    })
    .await;
    call(
        &state,
        Method::DELETE,
        &format!("/v1.0/operations/{}", created[2]),
        None,
    )
    .await;

    let all = json_of(call(&state, Method::GET, "/v1.0/operations", None).await).await;
    let expected: Vec<String> = [3, 4, 0, 1, 2]
        .iter()
        .map(|&i| created[i].clone())
        .collect();
    assert_eq!(ids(&all), expected);
    assert!(all.get("nextLink").is_none());

    let page = json_of(call(&state, Method::GET, "/v1.0/operations?$top=2", None).await).await;
    assert_eq!(ids(&page), expected[..2]);
    let next = page["nextLink"].as_str().unwrap().to_owned();
    let page = json_of(call(&state, Method::GET, &next, None).await).await;
    assert_eq!(ids(&page), expected[2..4]);
    let page =
        json_of(call(&state, Method::GET, "/v1.0/operations?top=2&skip=4", None).await).await;
    assert_eq!(ids(&page), expected[4..]);
    assert!(page.get("nextLink").is_none());

    let filter = |f: &str| {
        format!(
            "/v1.0/operations?$filter={}",
            f.replace(' ', "%20").replace('\'', "%27")
        )
    };
    let page =
        json_of(call(&state, Method::GET, &filter("status eq 'notstarted'"), None).await).await;
    assert_eq!(ids(&page), expected[..2]);
    let page = json_of(
        call(
            &state,
            Method::GET,
            &filter(
                "not (status eq 'notstarted' or status eq 'running') and problem eq 'test-base'",
            ),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(ids(&page), expected[3..]);
    let page = json_of(
        call(
            &state,
            Method::GET,
            &filter("createdDateTime gt 2000-01-01T00:00:00Z and percentComplete ge 100"),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(ids(&page), [created[1].clone()]);

    // A filter's nextLink keeps the filter.
    let url = format!("{}&$top=1", filter("status ne 'running'"));
    let page = json_of(call(&state, Method::GET, &url, None).await).await;
    let next = page["nextLink"].as_str().unwrap().to_owned();
    let page = json_of(call(&state, Method::GET, &next, None).await).await;
    assert_eq!(ids(&page), expected[1..2]);

    let response = call(&state, Method::GET, &filter("status eq"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = json_of(response).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("at position 9"), "{message}");
    for bad in [
        "/v1.0/operations?$top=0",
        "/v1.0/operations?$top=x",
        "/v1.0/operations?$skip=-1",
    ] {
        assert_eq!(
            call(&state, Method::GET, bad, None).await.status(),
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_things_are_404_and_the_openapi_document_is_served() {
    let (state, _shutdown) = app(ApiConfig::default());
    for uri in [
        "/v1.0/operations/x",
        "/v1.0/submissions/x",
        "/v1.0/submissions/x/judge-results",
        "/v1.0/submissions/x/events",
        "/nope",
    ] {
        let response = call(&state, Method::GET, uri, None).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
        assert!(json_of(response).await["error"]["message"].is_string());
    }
    let doc = json_of(call(&state, Method::GET, "/v1.0/openapi.json", None).await).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1.0/submissions",
        "/v1.0/operations",
        "/v1.0/operations/{id}",
        "/v1.0/submissions/{id}/events",
        "/v1.0/workers",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status and the body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), json)
}

#[tokio::test]
async fn a_real_server_accepts_polls_and_streams_events() {
    let (state, shutdown) = app(ApiConfig::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(api::serve(listener, state.clone(), shutdown.clone()));

    let (status, head, body) = http(addr, "POST", "/v1.0/submissions", Some(&a_plus_b())).await;
    assert_eq!(status, 202);
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(
        head.contains(&format!("operation-location: /v1.0/operations/{id}")),
        "{head}"
    );
    assert!(head.contains("retry-after: 1"), "{head}");

    // Executing is recorded before the stream opens: it must come first, then the live ones.
    assert_eq!(judge_next(&state, &[]).await, id);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /v1.0/submissions/{id}/events HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut events = Vec::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(event) = line.strip_prefix("event: ") {
                events.push(event.to_owned());
                if event == "executing" {
                    // The stream is open: play the rest of the worker now.
                    let gate = state.worker_interface();
                    for n in 1..=3 {
                        gate.send(&Message::new(
                            &id,
                            Body::Testing {
                                test_case: n,
                                subtask: None,
                            },
                        ))
                        .await
                        .unwrap();
                        gate.send(&tested(&id, n, Verdict::Accepted)).await.unwrap();
                    }
                    finish(&state, &id, 1.0).await;
                }
                if event == "done" {
                    break;
                }
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

    let (status, head, op) = http(addr, "GET", &format!("/v1.0/operations/{id}"), None).await;
    assert_eq!((status, op["status"].as_str()), (200, Some("succeeded")));
    assert!(!head.contains("retry-after"));
    let location = op["resourceLocation"].as_str().unwrap().to_owned();
    let (_, _, submission) = http(addr, "GET", &location, None).await;
    assert_eq!(submission["score"], 1.0);
    assert_eq!(submission["state"], "judged");

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn workers_register_and_send_heartbeats() {
    let (state, _shutdown) = app(ApiConfig::default());
    let response = call(
        &state,
        Method::POST,
        "/v1.0/workers",
        Some(json!({"name": "box-1", "concurrency": 4})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let worker = json_of(response).await;
    let id = worker["id"].as_str().unwrap().to_owned();
    assert_eq!(worker["status"], "active");
    let beat = call(
        &state,
        Method::POST,
        &format!("/v1.0/workers/{id}/heartbeat"),
        None,
    )
    .await;
    assert_eq!(beat.status(), StatusCode::OK);
    let listed = json_of(call(&state, Method::GET, "/v1.0/workers", None).await).await;
    assert_eq!(listed["value"][0]["id"], id.as_str());
    assert_eq!(listed["value"][0]["concurrency"], 4);
    let unknown = call(&state, Method::POST, "/v1.0/workers/nope/heartbeat", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad = call(
        &state,
        Method::POST,
        "/v1.0/workers",
        Some(json!({"name": " "})),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}
