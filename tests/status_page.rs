//! The live status page of `executioner serve` (`GET /`) and its data (`GET /v1.0/status`,
//! `GET /v1.0/status/events`).
//!
//! In process, over the memory store: what a snapshot holds and how it is bounded, the stream
//! of snapshots, the client token. End to end: a real `executioner serve` process with a local
//! worker judging in Docker (it needs the sandbox: Docker, the images, `EXECUTIONER_DEMOTER`)
//! and the page in headless Chromium (Debian's `chromium`), read from its DOM; all three as
//! `scripts/test` sets them up.

mod browser;
mod client;
mod worker_process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{header, Method, Request, StatusCode};
use browser::Browser;
use executioner::api::auth::Token;
use executioner::api::status::{RECENT_SHOWN, RUNNING_SHOWN, TESTS_SHOWN};
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::MemoryInterface;
use executioner::protocol::{Body, Message, Submission};
use executioner::store::memory::MemoryBackend;
use executioner::verdict::Verdict;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::ServiceExt;
use worker_process::WorkerProcess;

/// Longest wait for a step in process: everything is local and quick.
const DEADLINE: Duration = Duration::from_secs(30);
/// Longest wait for `serve` to start, for a submission to be judged in Docker, and for the page
/// to show something.
const STARTUP: Duration = Duration::from_secs(60);
const JUDGING: Duration = Duration::from_secs(120);
const PAGE: Duration = Duration::from_secs(30);

const TOKEN: &str = "status-page-client-token";

// ---------------------------------------------------------------------------------------------
// In process

/// The API over a fresh memory store, its background tasks stopped when dropped.
struct Api {
    state: AppState,
    shutdown: CancellationToken,
    _stop: DropGuard,
}

impl Api {
    fn new(config: ApiConfig) -> Api {
        let shutdown = CancellationToken::new();
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        backend.follow(shutdown.clone());
        let state = AppState::new(backend, config, shutdown.clone()).with_local_worker(2);
        state.start();
        Api {
            state,
            _stop: shutdown.clone().drop_guard(),
            shutdown,
        }
    }

    async fn call(&self, uri: &str, token: Option<&str>) -> axum::response::Response {
        let mut request = Request::builder().method(Method::GET).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        api::router(self.state.clone())
            .oneshot(request.body(HttpBody::empty()).expect("request"))
            .await
            .expect("infallible")
    }

    async fn status(&self) -> Value {
        let response = self.call("/v1.0/status", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    /// Queues a+b for test-base (3 tests); its id.
    async fn submit(&self, n: usize) -> String {
        let submission = Submission {
            id: format!("submission-{n:03}"),
            problem: "test-base".into(),
            language: "python-3.11".into(),
            source_code: "print(1)".into(),
            files: Vec::new(),
            run: None,
        };
        let view = self
            .state
            .backend()
            .submit(submission, Some(3), Default::default())
            .await
            .expect("memory store");
        view.id
    }

    /// Plays a worker: takes the next submission, sends `executing` and `tests` accepted tests.
    async fn start_judging(&self, tests: u32) -> String {
        let gate = self.state.worker_interface();
        let submission = tokio::time::timeout(DEADLINE, gate.next())
            .await
            .expect("a submission in time")
            .expect("interface")
            .expect("not closed");
        let id = submission.id;
        self.send(Message::new(&id, Body::Executing)).await;
        for test_case in 1..=tests {
            self.test(&id, test_case).await;
        }
        id
    }

    async fn test(&self, id: &str, test_case: u32) {
        self.send(Message::new(
            id,
            Body::Testing {
                test_case,
                subtask: None,
            },
        ))
        .await;
        self.send(Message::new(
            id,
            Body::Tested {
                test_case,
                subtask: None,
                result: Verdict::Accepted,
                time: Some(7),
                memory: Some(2048),
                score: None,
                output: None,
            },
        ))
        .await;
    }

    async fn finish(&self, id: &str, score: f64) {
        self.send(Message::new(
            id,
            Body::Done {
                score: Some(score),
                failed_subtasks: None,
            },
        ))
        .await;
    }

    async fn send(&self, message: Message) {
        self.state
            .worker_interface()
            .send(&message)
            .await
            .expect("send");
    }

    /// Waits until submission `id`'s last message is recorded in the store.
    async fn settled(&self, id: &str, messages: usize) {
        let backend = self.state.backend();
        tokio::time::timeout(DEADLINE, async {
            loop {
                let mut changes = backend.subscribe();
                let seen = backend
                    .messages(id)
                    .await
                    .expect("store")
                    .unwrap_or_default();
                if seen.len() >= messages {
                    return;
                }
                let _ = changes.recv().await;
            }
        })
        .await
        .expect("the messages recorded in time");
    }
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| s["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test]
async fn a_snapshot_shows_the_queue_the_judging_and_the_last_results_bounded() {
    let api = Api::new(ApiConfig::default());
    let total = RECENT_SHOWN + 5;
    for n in 0..total {
        api.submit(n).await;
    }
    for n in 0..total {
        let id = api.start_judging(3).await;
        api.finish(&id, if n % 2 == 0 { 1.0 } else { 0.0 }).await;
        api.settled(&id, 8).await;
    }
    // One judged past the shown tests, one just started, two waiting.
    for n in 0..4 {
        api.submit(total + n).await;
    }
    let long = api.start_judging(TESTS_SHOWN as u32 + 2).await;
    api.settled(&long, 1 + 2 * (TESTS_SHOWN + 2)).await;
    let started = api.start_judging(0).await;
    api.send(Message::new(
        &started,
        Body::Testing {
            test_case: 1,
            subtask: None,
        },
    ))
    .await;
    api.settled(&started, 2).await;

    let status = api.status().await;
    assert_eq!(status["queued"], 2, "{status}");
    assert_eq!(status["localWorker"]["concurrency"], 2);
    assert_eq!(status["workers"], json!([]));
    assert!(status["generatedDateTime"].is_string());

    // The last submitted results, newest first, no more than shown.
    let recent = &status["recent"];
    let expected: Vec<String> = (total - RECENT_SHOWN..total)
        .rev()
        .map(|n| format!("submission-{n:03}"))
        .collect();
    assert_eq!(ids(recent), expected);
    assert_eq!(recent[0]["state"], "judged");
    // Even ones scored 1, odd ones 0; the newest is even.
    assert_eq!(recent[0]["score"], 1.0);
    assert_eq!(recent[1]["score"], 0.0);
    assert_eq!(recent[0]["problem"], "test-base");

    // The judging ones, oldest first, with their last tests and the one running.
    let running = &status["running"];
    assert_eq!(ids(running), [long.as_str(), started.as_str()]);
    assert_eq!(running[0]["tests"].as_array().unwrap().len(), TESTS_SHOWN);
    assert_eq!(running[0]["testsOmitted"], 2);
    assert_eq!(running[0]["testsDone"], TESTS_SHOWN + 2);
    let last = &running[0]["tests"][TESTS_SHOWN - 1];
    assert_eq!(
        (&last["testCase"], &last["result"], &last["time"]),
        (&json!(TESTS_SHOWN + 2), &json!("accepted"), &json!(7))
    );
    assert_eq!(running[1]["testing"], 1);
    assert_eq!(running[1]["tests"], json!([]));
    assert_eq!(status["moreRunning"], false);
}

#[tokio::test]
async fn only_the_oldest_judging_submissions_are_shown() {
    let api = Api::new(ApiConfig::default());
    let mut judging = Vec::new();
    for n in 0..RUNNING_SHOWN + 3 {
        api.submit(n).await;
        let id = api.start_judging(1).await;
        api.settled(&id, 3).await;
        judging.push(id);
    }
    let status = api.status().await;
    assert_eq!(ids(&status["running"]), judging[..RUNNING_SHOWN]);
    assert_eq!(status["moreRunning"], true);
}

#[tokio::test]
async fn recent_results_are_the_last_submitted_of_many_finished() {
    // Cancelled ones are finished too.
    let api = Api::new(ApiConfig::default());
    let total = 250;
    for n in 0..total {
        let id = api.submit(n).await;
        let cancelled = api.state.backend().cancel(&id).await.expect("memory store");
        assert_eq!(cancelled, executioner::store::Cancel::Cancelled);
    }
    let status = api.status().await;
    let expected: Vec<String> = (total - RECENT_SHOWN..total)
        .rev()
        .map(|n| format!("submission-{n:03}"))
        .collect();
    assert_eq!(ids(&status["recent"]), expected);
    assert_eq!(status["recent"][0]["state"], "cancelled");
}

/// The events of a status stream.
struct Stream {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl Stream {
    /// The next event's name and data; `None` once the stream has ended. Keep-alive comments
    /// do not count: the deadline is the event's.
    async fn next(&mut self) -> Option<(String, Value)> {
        tokio::time::timeout(DEADLINE, self.event())
            .await
            .expect("an event in time")
    }

    async fn event(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = name.to_owned();
                    } else if let Some(text) = line.strip_prefix("data: ") {
                        data.push_str(text);
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((event, serde_json::from_str(&data).expect("JSON data")));
            }
            let chunk = self.body.next().await?.expect("the stream");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_one_per_change_and_ends_on_shutdown() {
    let api = Api::new(ApiConfig::default());
    let response = api.call("/v1.0/status/events", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut stream = Stream {
        body: response.into_body().into_data_stream(),
        buffer: String::new(),
    };
    let (event, first) = stream.next().await.expect("a first snapshot");
    assert_eq!(event, "snapshot");
    assert_eq!(
        (&first["queued"], &first["running"]),
        (&json!(0), &json!([]))
    );

    let id = api.submit(0).await;
    let (_, queued) = stream
        .next()
        .await
        .expect("a snapshot after the submission");
    assert_eq!(queued["queued"], 1);

    api.start_judging(2).await;
    // The messages may come as one snapshot or several: until both tests show.
    loop {
        let (_, next) = stream.next().await.expect("snapshots while judging");
        let running = &next["running"];
        if running[0]["tests"].as_array().is_some_and(|t| t.len() == 2) {
            assert_eq!(
                (&running[0]["id"], &next["queued"]),
                (&json!(id), &json!(0))
            );
            break;
        }
    }
    api.finish(&id, 1.0).await;
    loop {
        let (_, next) = stream.next().await.expect("a snapshot after the end");
        if next["recent"][0]["id"] == id {
            assert_eq!(next["recent"][0]["state"], "judged");
            assert_eq!(next["running"], json!([]));
            break;
        }
    }

    api.shutdown.cancel();
    assert!(stream.next().await.is_none(), "the stream ends on shutdown");
}

#[tokio::test]
async fn with_a_client_token_the_page_is_open_and_its_data_are_not() {
    let api = Api::new(ApiConfig {
        client_token: Some(Token::new(TOKEN)),
        ..ApiConfig::default()
    });
    let page = api.call("/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    let html = axum::body::to_bytes(page.into_body(), usize::MAX)
        .await
        .unwrap();
    let html = String::from_utf8(html.to_vec()).unwrap();
    assert!(html.contains("/v1.0/status/events"));
    assert!(!html.contains(TOKEN));

    for uri in ["/v1.0/status", "/v1.0/status/events"] {
        for token in [None, Some("wrong")] {
            let response = api.call(uri, token).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{uri}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
        let response = api.call(uri, Some(TOKEN)).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }

    // The document (open too) describes them.
    let doc = api.call("/v1.0/openapi.json", None).await;
    let doc = axum::body::to_bytes(doc.into_body(), usize::MAX)
        .await
        .unwrap();
    let doc: Value = serde_json::from_slice(&doc).unwrap();
    for path in ["/", "/v1.0/status", "/v1.0/status/events"] {
        assert!(doc["paths"].get(path).is_some(), "{path}");
    }
    let documented = doc["components"]["schemas"]["Status"]["required"]
        .as_array()
        .expect("the Status schema");
    let status = Api::new(ApiConfig::default()).status().await;
    for field in documented {
        assert!(
            status.get(field.as_str().unwrap()).is_some(),
            "{field} is documented, not sent"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// End to end: `executioner serve` and the page in Chromium

/// An `executioner serve` process: the memory store, a local worker judging one submission at
/// a time in Docker, `env` added to its environment; stopped with SIGTERM when dropped, so it
/// leaves nothing behind.
struct Service {
    process: Option<WorkerProcess>,
    addr: SocketAddr,
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.terminate(STARTUP);
        }
    }
}

impl Service {
    fn start(env: &[(&str, &str)]) -> Service {
        let mut process = WorkerProcess::spawn(
            &[
                "--log-format",
                "json",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--concurrency",
                "1",
            ],
            env,
        );
        let addr = process.logged_address("serving the HTTP API", STARTUP);
        Service {
            process: Some(process),
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Submits `fixtures/submissions/<fixture>` for test-base; its id.
    async fn submit(&self, token: Option<&str>, language: &str, fixture: &str) -> String {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/submissions")
            .join(language)
            .join(fixture);
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let body = json!({"problem": "test-base", "language": language, "sourceCode": source});
        let reply =
            client::request_as(self.addr, token, "POST", "/v1.0/submissions", Some(&body)).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        reply.body["id"].as_str().expect("an id").to_owned()
    }
}

/// Installed in the page: records in `window.seen` every submission, and every test of it, that
/// the "being judged" list ever shows (it is redrawn at every snapshot).
const RECORDER: &str = r##"
window.seen = { judging: {}, tests: {} };
new MutationObserver(() => {
  for (const item of document.querySelectorAll("#judging [data-submission]")) {
    const id = item.dataset.submission;
    window.seen.judging[id] = item.innerText;
    for (const test of item.querySelectorAll("[data-test-case]")) {
      window.seen.tests[id + "/" + test.dataset.testCase] = test.dataset.result;
    }
  }
}).observe(document.getElementById("judging"), { childList: true, subtree: true });
true
"##;

/// JavaScript: the text of submission `id` among the recent results, or null.
fn recent_item(id: &str) -> String {
    format!(
        "document.querySelector('#recent [data-submission=' + JSON.stringify({}) + ']')?.innerText ?? null",
        json!(id)
    )
}

/// JavaScript: whether the page follows the stream.
const LIVE: &str = "document.body.dataset.connection === 'live'";

/// JavaScript: types `token` into the page's token form and sends it.
fn enter_token(token: &str) -> String {
    format!(
        "document.getElementById('token-input').value = {}; document.getElementById('token-form').requestSubmit(); true",
        json!(token)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_a_submission_judged_test_by_test_then_its_result() {
    let service = Service::start(&[]);
    let mut page = Browser::open(&service.url("/")).await;
    page.wait_for("a live connection", LIVE, PAGE).await;
    page.wait_for(
        "the local worker",
        "document.querySelector('#workers [data-worker=local]')?.innerText ?? null",
        PAGE,
    )
    .await;
    page.eval(RECORDER).await;

    // What clients write is shown as text, never as markup: a worker's name is theirs.
    let name = "<img id=injected src=x onerror=\"document.title='owned'\">";
    let registered = client::request(
        service.addr,
        "POST",
        "/v1.0/workers",
        Some(&json!({"name": name})),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.body);
    let shown = page
        .wait_for(
            "the registered worker",
            "document.querySelector('#workers [data-status]')?.innerText ?? null",
            PAGE,
        )
        .await;
    assert!(shown.as_str().unwrap_or_default().contains(name), "{shown}");
    assert_eq!(
        page.eval("[document.getElementById('injected'), document.title]")
            .await,
        json!([null, "executioner status"])
    );

    // Each of its 3 tests runs to the time limit (3 s), so each verdict is shown while the
    // next test runs.
    let id = service.submit(None, "python-3.11", "test_tle.py").await;
    let result = page
        .wait_for("the submission's result", &recent_item(&id), JUDGING)
        .await;
    let result = result.as_str().unwrap_or_default();
    for shown in [
        id.as_str(),
        "test-base",
        "python-3.11",
        "judged",
        "score 0%",
    ] {
        assert!(result.contains(shown), "{shown:?} not in {result:?}");
    }
    let seen = page.eval("window.seen").await;
    let judging = seen["judging"][&id].as_str().unwrap_or_else(|| {
        panic!(
            "the submission was never shown being judged: {seen}\n{}",
            page.log()
        )
    });
    assert!(judging.contains("test-base"), "{judging}");
    for test in 1..=2 {
        assert_eq!(
            seen["tests"][format!("{id}/{test}")],
            "TLE",
            "test {test} was not shown as it was judged: {seen}"
        );
    }
    // Once judged it is no longer shown as being judged.
    page.wait_for(
        "an empty judging list",
        "document.querySelectorAll('#judging [data-submission]').length === 0",
        PAGE,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_client_token_the_page_asks_for_it_and_then_shows_the_data() {
    let service = Service::start(&[("EXECUTIONER_CLIENT_TOKEN", TOKEN)]);
    let addr = service.addr;
    let page = client::request(addr, "GET", "/", None).await;
    assert_eq!(page.status, 200);
    assert!(
        page.head.contains("content-type: text/html"),
        "{}",
        page.head
    );
    for path in ["/v1.0/status", "/v1.0/status/events"] {
        let reply = client::request(addr, "GET", path, None).await;
        assert_eq!(reply.status, 401, "{path}");
        assert_eq!(reply.body["error"]["code"], "unauthorized");
    }
    let status = client::request_as(addr, Some(TOKEN), "GET", "/v1.0/status", None).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.body["localWorker"]["concurrency"], 1);

    let mut page = Browser::open(&service.url("/")).await;
    page.wait_for(
        "the token form",
        "document.body.dataset.connection === 'token' && !document.getElementById('token-section').hidden",
        PAGE,
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('#workers li, #recent li').length")
            .await,
        0,
        "no data without the token"
    );
    page.eval(&enter_token("wrong")).await;
    page.wait_for(
        "the wrong token refused",
        "document.getElementById('token-why').innerText.includes('refused')",
        PAGE,
    )
    .await;
    page.eval(&enter_token(TOKEN)).await;
    page.wait_for("a live connection", LIVE, PAGE).await;
    page.wait_for(
        "the local worker",
        "document.querySelector('#workers [data-worker=local]')?.innerText ?? null",
        PAGE,
    )
    .await;

    let id = service
        .submit(Some(TOKEN), "python-3.11", "test_accepted.py")
        .await;
    let result = page
        .wait_for("the submission's result", &recent_item(&id), JUDGING)
        .await;
    let result = result.as_str().unwrap_or_default();
    assert!(
        result.contains("judged") && result.contains("score 100%"),
        "{result}"
    );

    // The token stays with the tab: a reload follows the stream without asking again.
    page.reload().await;
    page.wait_for(
        "the reloaded page live, with the result",
        &format!("({LIVE}) && ({}) !== null", recent_item(&id)),
        PAGE,
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('token-section').hidden")
            .await,
        true
    );
}
