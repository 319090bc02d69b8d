//! Per-submission callbacks (`callbackUrl`) end to end: the API as `executioner serve`
//! assembles it, on a real socket, judging with the real judge (Docker, the demoter, the
//! images) in a local worker or, over Postgres, in an `executioner worker --interface postgres`
//! process; and a real HTTP receiver on port 0 that records every POST and answers as scripted.
//! Signatures are checked here with the hmac crate, apart from the service's own code.

mod client;
mod judging;
mod pg;
mod worker_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use executioner::api::auth::Token;
use executioner::api::callbacks::CallbackConfig;
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::{MemoryInterface, PostgresInterface};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::store::memory::MemoryBackend;
use executioner::store::postgres::PostgresBackend;
use executioner::store::Backend;
use executioner::worker::{Worker, WorkerConfig};
use executioner::workflow::{Env, Runner};
use hmac::{Hmac, Mac};
use pg::TestDatabase;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker_process::WorkerProcess;

const SECRET: &str = "callback-test-secret";
/// For one judging (or a few), a compile included.
const DEADLINE: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// The receiver

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    /// Lower-case names.
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
    }

    /// The body, after checking the signature and that it tells of submission `id` ending in
    /// `state` with `score`.
    fn finished(&self, id: &str, state: &str, score: f64) -> Value {
        self.verified();
        let body = self.json();
        assert_eq!(
            (&body["id"], &body["state"], &body["score"]),
            (&json!(id), &json!(state), &json!(score)),
            "{body}"
        );
        body
    }

    /// The timestamp, after checking the signature as a receiver would: HMAC-SHA256 of
    /// `timestamp.body` under the secret, in hex after `sha256=`.
    fn verified(&self) -> u64 {
        let timestamp = self.header("executioner-timestamp");
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{timestamp}.{}", self.body).as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            self.header("executioner-signature"),
            format!("sha256={expected}"),
            "the signature does not verify"
        );
        let timestamp: u64 = timestamp.parse().expect("unix seconds");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(timestamp.abs_diff(now) < 600, "{timestamp} is not now");
        timestamp
    }
}

/// An HTTP server on 127.0.0.1, port 0: answers each POST with the next of its statuses (200
/// once they are used up), the first only once released when asked to hold it. Stops when
/// dropped.
struct Receiver {
    addr: SocketAddr,
    posts: mpsc::UnboundedReceiver<Received>,
    release: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(statuses: Vec<u16>, hold_first: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, posts) = mpsc::unbounded_channel();
        let (release, released) = oneshot::channel();
        let mut held = hold_first.then_some(released);
        let task = tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let Some(received) = read_request(&mut stream).await else {
                    continue;
                };
                let _ = tx.send(received);
                if let Some(released) = held.take() {
                    let _ = released.await;
                }
                let status = statuses.next().unwrap_or(200);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        Receiver {
            addr,
            posts,
            release: Some(release),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/judged", self.addr)
    }

    /// The next POST, waiting for it.
    async fn next(&mut self) -> Received {
        tokio::time::timeout(DEADLINE, self.posts.recv())
            .await
            .expect("a callback in time")
            .expect("the receiver runs")
    }

    /// Lets the held answer go.
    fn release(&mut self) {
        let _ = self.release.take().expect("held once").send(());
    }

    /// The POSTs received and not yet taken.
    fn rest(&mut self) -> Vec<Received> {
        std::iter::from_fn(|| self.posts.try_recv().ok()).collect()
    }
}

/// One request: the head up to the blank line and `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let request_line = lines.next()?.to_owned();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers.get("content-length")?.parse().ok()?;
            if data.len() >= end + 4 + length {
                let body = String::from_utf8(data[end + 4..end + 4 + length].to_vec()).ok()?;
                return Some(Received {
                    request_line,
                    headers,
                    body,
                });
            }
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    }
}

// ---------------------------------------------------------------------------------------------
// The service

/// The API's settings: the fixtures' problems, the built-in languages, callbacks allowed to the
/// receiver (host and port), signed with [`SECRET`] (when `signed`), retried quickly, the store
/// read again every `sweep`.
fn config(receiver: &Receiver, signed: bool, sweep: Duration) -> ApiConfig {
    ApiConfig {
        problems: Some(Arc::new(ProblemStore::new(judging::problems()))),
        languages: Some(Arc::new(Registry::builtin().expect("built-in registry"))),
        webhook_hosts: vec![receiver.addr.to_string()],
        callbacks: CallbackConfig {
            secret: signed.then(|| Token::new(SECRET)),
            attempts: 5,
            backoff: (Duration::from_millis(20), Duration::from_millis(200)),
            // A held answer is slow, not failed.
            timeout: DEADLINE,
            sweep,
        },
        ..ApiConfig::default()
    }
}

/// `executioner serve` in process on port 0: its store, a local worker of concurrency 1 when
/// asked for, rejudges and validations with the real judge.
struct Service {
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    postgres: Option<Arc<PostgresInterface>>,
}

impl Service {
    async fn memory(config: ApiConfig, with_worker: bool) -> Service {
        let shutdown = CancellationToken::new();
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let follower = backend.follow(shutdown.clone());
        Service::start(backend, config, with_worker, shutdown, follower, None).await
    }

    /// Over the store of `db`, without a local worker (a worker process judges).
    async fn postgres(db: &TestDatabase, config: ApiConfig) -> Service {
        let shutdown = CancellationToken::new();
        let interface = Arc::new(db.interface().await);
        let backend = PostgresBackend::new(
            interface.clone(),
            config.problems.clone(),
            config.languages.clone(),
        );
        let follower = backend.follow(shutdown.clone());
        Service::start(backend, config, false, shutdown, follower, Some(interface)).await
    }

    async fn start(
        backend: Arc<dyn Backend>,
        config: ApiConfig,
        with_worker: bool,
        shutdown: CancellationToken,
        follower: JoinHandle<()>,
        postgres: Option<Arc<PostgresInterface>>,
    ) -> Service {
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
        let state = AppState::new(backend, config, shutdown.clone()).with_workflows(runner);
        let mut tasks = vec![follower, state.start()];
        if with_worker {
            let worker = Worker::new(
                state.worker_interface(),
                judge,
                WorkerConfig {
                    concurrency: 1,
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
            shutdown,
            tasks,
            postgres,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the service stops in time")
                .expect("no task panics");
        }
        if let Some(interface) = self.postgres {
            interface.close().await;
        }
    }

    async fn http(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let reply = client::request(self.addr, method, path, body.as_ref()).await;
        (reply.status, reply.body)
    }

    /// Submits `body`; the operation id of the 202.
    async fn submit(&self, body: Value) -> String {
        let (status, reply) = self.http("POST", "/v1.0/submissions", Some(body)).await;
        assert_eq!(status, 202, "{reply}");
        reply["id"].as_str().expect("an id").to_owned()
    }

    async fn wait_for_operation(&self, id: &str, status: &str) -> Value {
        let uri = format!("/v1.0/operations/{id}");
        client::until_operation(&self.state, id, status, DEADLINE, || async {
            self.http("GET", &uri, None).await.1
        })
        .await
    }

    /// Waits until the store records that the callback of `id` went out for its outcome.
    async fn until_settled(&self, id: &str) {
        let backend = self.state.backend();
        let waiting = async {
            loop {
                let mut changes = backend.subscribe();
                let view = backend.get(id).await.unwrap().expect("the submission");
                if view.callback_sent_ms == Some(view.last_action_ms) {
                    return;
                }
                let _ = changes.recv().await;
            }
        };
        tokio::time::timeout(DEADLINE, waiting)
            .await
            .expect("the callback recorded as sent in time");
    }

    /// Stops once the callback of `id` is recorded as sent; then nothing more reached
    /// `receiver`.
    async fn stop_once_settled(self, id: &str, receiver: &mut Receiver) {
        self.until_settled(id).await;
        self.stop().await;
        let rest = receiver.rest();
        assert!(rest.is_empty(), "callbacks sent again: {rest:?}");
    }

    /// GET of submission `id`.
    async fn submission(&self, id: &str) -> Value {
        let (status, body) = self
            .http("GET", &format!("/v1.0/submissions/{id}"), None)
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Whether `query` finds a row in the database at `url` (`None` also when it cannot be asked).
async fn finds(url: &str, query: &str) -> Option<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let row = sqlx::query(query).fetch_optional(&mut conn).await.ok()?;
    let _ = conn.close().await;
    row.map(|_| ())
}

/// The fixture program `test_<kind>` in C for problem `test-base`, with `callback`.
fn c_submission(kind: &str, callback: Option<&str>) -> Value {
    let mut body = json!({
        "problem": "test-base",
        "language": "gcc-12",
        "sourceCode": judging::program("gcc-12", kind),
    });
    if let Some(url) = callback {
        body["callbackUrl"] = json!(url);
    }
    body
}

// ---------------------------------------------------------------------------------------------
// The tests

/// A judged submission's callback: one POST to the URL given, JSON, the body the client reads
/// with GET (final state and score), signed so that it verifies with the secret. Its receiver
/// takes its time to answer (until the next submission is judged), while the store is read
/// again every 50 ms (as after a lag): it is sent once all the same. The next submission,
/// without a callback, sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_judged_submission_is_posted_once_signed() {
    let mut receiver = Receiver::start(Vec::new(), true).await;
    let url = receiver.url();
    let service = Service::memory(config(&receiver, true, Duration::from_millis(50)), true).await;
    let id = service.submit(c_submission("accepted", Some(&url))).await;
    let post = receiver.next().await;
    let body = post.finished(&id, "judged", 1.0);
    assert_eq!(post.request_line, "POST /hooks/judged HTTP/1.1");
    assert_eq!(post.header("content-type"), "application/json");
    assert_eq!(body["callbackUrl"], json!(url));
    service.wait_for_operation(&id, "succeeded").await;
    assert_eq!(service.submission(&id).await, body);

    let other = service.submit(c_submission("wrong", None)).await;
    service.wait_for_operation(&other, "succeeded").await;
    let shown = service.submission(&other).await;
    assert!(shown.get("callbackUrl").is_none(), "{shown}");
    receiver.release();
    service.stop_once_settled(&id, &mut receiver).await;
}

/// A receiver that fails twice (500) gets the callback a third time, each attempt signed
/// afresh; meanwhile the worker goes on judging: a submission made while the first attempt is
/// still unanswered is judged before that attempt ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_gets_three_attempts_without_holding_up_judging() {
    let mut receiver = Receiver::start(vec![500, 500, 200], true).await;
    let url = receiver.url();
    let service = Service::memory(config(&receiver, true, Duration::from_secs(3600)), true).await;
    let id = service.submit(c_submission("accepted", Some(&url))).await;
    let first = receiver.next().await;
    assert_eq!(first.json()["id"], json!(id));

    let next = service.submit(c_submission("accepted", None)).await;
    service.wait_for_operation(&next, "succeeded").await;

    receiver.release();
    let attempts = [first, receiver.next().await, receiver.next().await];
    let mut last = 0;
    for attempt in &attempts {
        let timestamp = attempt.verified();
        assert!(timestamp >= last);
        last = timestamp;
        assert_eq!(attempt.body, attempts[0].body);
    }
    assert_eq!(attempts[0].json()["state"], "judged");
    service.stop_once_settled(&id, &mut receiver).await;
}

/// A callback URL that is malformed, or whose host or port is not allowed, or any callback
/// when the service has no secret: 400 with the API's error shape, and nothing queued. An
/// allowed one is shown back, and a submission cancelled before judging calls back too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_callback_urls_are_refused_and_nothing_is_queued() {
    let mut receiver = Receiver::start(Vec::new(), false).await;
    let url = receiver.url();
    let other_port = format!(
        "http://127.0.0.1:{}/x",
        receiver.addr.port().wrapping_add(1)
    );
    let cases = [
        (json!("http://example.org/hook"), "callbackNotAllowed"),
        (json!("http://169.254.169.254/latest"), "callbackNotAllowed"),
        (json!(other_port), "callbackNotAllowed"),
        (json!("not a url"), "badRequest"),
        (json!(""), "badRequest"),
        (json!(url.replace("http:", "https:")), "badRequest"),
        (json!(format!("{url}/a b")), "badRequest"),
        (json!(5), "badRequest"),
    ];
    let unsigned =
        Service::memory(config(&receiver, false, Duration::from_secs(3600)), false).await;
    let service = Service::memory(config(&receiver, true, Duration::from_secs(3600)), false).await;
    let mut body = c_submission("accepted", None);
    for (callback, code) in cases {
        body["callbackUrl"] = callback.clone();
        let (status, reply) = service
            .http("POST", "/v1.0/submissions", Some(body.clone()))
            .await;
        assert_eq!(
            (status, reply["error"]["code"].as_str()),
            (400, Some(code)),
            "{callback}: {reply}"
        );
        assert!(reply["error"]["message"].is_string(), "{reply}");
    }
    body["callbackUrl"] = json!(url);
    let (status, reply) = unsigned
        .http("POST", "/v1.0/submissions", Some(body.clone()))
        .await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (400, Some("callbackNotAllowed")),
        "{reply}"
    );
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--callback-secret"),
        "{reply}"
    );
    for refused in [&service, &unsigned] {
        let (_, listed) = refused.http("GET", "/v1.0/operations", None).await;
        assert_eq!(listed["value"], json!([]), "{listed}");
        assert_eq!(refused.state.backend().queued().await.unwrap(), 0);
    }

    let id = service.submit(body).await;
    assert_eq!(service.submission(&id).await["callbackUrl"], json!(url));
    let (status, op) = service
        .http("DELETE", &format!("/v1.0/operations/{id}"), None)
        .await;
    assert_eq!((status, op["status"].as_str()), (200, Some("cancelled")));
    let post = receiver.next().await;
    post.verified();
    let body = post.json();
    assert_eq!(
        (&body["id"], &body["state"]),
        (&json!(id), &json!("cancelled"))
    );
    assert!(body.get("score").is_none(), "{body}");
    unsigned.stop().await;
    service.stop().await;
}

/// Over Postgres, judged by an `executioner worker --interface postgres` process: a callback
/// whose submission was judged while no service ran is sent by the next service to start (the
/// store keeps it due); one judged while the service runs reaches it through the store's
/// notifications alone (no sweeps), a compile error (whose end changes no state) included.
/// Each is sent once, signed, and recorded so that nothing is due afterwards; a rejudge's
/// outcome is sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_postgres_callbacks_follow_an_external_worker_and_survive_a_restart() {
    let db = TestDatabase::create().await;
    let mut receiver = Receiver::start(Vec::new(), false).await;
    let url = receiver.url();
    let no_sweeps = Duration::from_secs(3600);

    let before = Service::postgres(&db, config(&receiver, true, no_sweeps)).await;
    let judged = before.submit(c_submission("accepted", Some(&url))).await;
    before.stop().await;

    let worker = WorkerProcess::start(
        &["--interface", "postgres"],
        &[("DATABASE_URL", &db.url)],
        10,
        1,
    );
    let judged_query =
        format!("SELECT 1 FROM submissions WHERE id = '{judged}' AND state = 'judged'");
    pg::wait_for(
        &db,
        "judged by the worker process",
        DEADLINE,
        Duration::from_secs(1),
        || finds(&db.url, &judged_query),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", worker.log_tail()));

    let service = Service::postgres(&db, config(&receiver, true, no_sweeps)).await;
    receiver.next().await.finished(&judged, "judged", 1.0);

    let source = std::fs::read_to_string(
        judging::repo().join("fixtures/submissions/gcc-12/compile_error.c"),
    )
    .unwrap();
    let failed = service
        .submit(
            json!({"problem": "test-base", "language": "gcc-12", "sourceCode": source,
                       "callbackUrl": url}),
        )
        .await;
    let body = receiver.next().await.finished(&failed, "compileError", 0.0);
    assert_eq!(service.submission(&failed).await, body);

    for id in [&judged, &failed] {
        let settled = format!(
            "SELECT 1 FROM submissions WHERE id = '{id}' AND callback_sent_at = updated_at"
        );
        pg::wait_for(
            &db,
            "the callback recorded",
            DEADLINE,
            Duration::from_millis(100),
            || finds(&db.url, &settled),
        )
        .await
        .unwrap();
    }
    assert!(service
        .state
        .backend()
        .callbacks_due()
        .await
        .unwrap()
        .is_empty());

    // A rejudge is a new outcome, even when it ends as the last one did (no state change).
    let (status, rejudge) = service
        .http(
            "POST",
            "/v1.0/rejudges",
            Some(json!({"submissions": [judged]})),
        )
        .await;
    assert_eq!(status, 202, "{rejudge}");
    receiver.next().await.finished(&judged, "judged", 1.0);
    service
        .wait_for_operation(rejudge["id"].as_str().unwrap(), "succeeded")
        .await;
    service.stop().await;
    worker.stop(DEADLINE);
    let rest = receiver.rest();
    assert!(rest.is_empty(), "callbacks sent again: {rest:?}");
}

/// An ad-hoc run's callback carries the run as `GET /v1.0/runs/{id}` shows it: its verdict,
/// output and exit, signed like a submission's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_run_is_posted_with_its_output() {
    let mut receiver = Receiver::start(Vec::new(), false).await;
    let url = receiver.url();
    let service = Service::memory(config(&receiver, true, Duration::from_secs(30)), true).await;
    let (status, reply) = service
        .http(
            "POST",
            "/v1.0/runs",
            Some(json!({
                "language": "python",
                "sourceCode": "print(int(input()) * 2)",
                "stdin": "21\n",
                "callbackUrl": url,
            })),
        )
        .await;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().expect("an id").to_owned();
    let post = receiver.next().await;
    post.verified();
    let body = post.json();
    assert_eq!(
        (
            &body["id"],
            &body["verdict"],
            &body["stdout"]["text"],
            &body["exitCode"]
        ),
        (&json!(id), &json!("accepted"), &json!("42\n"), &json!(0)),
        "{body}"
    );
    service.wait_for_operation(&id, "succeeded").await;
    let (status, shown) = service.http("GET", &format!("/v1.0/runs/{id}"), None).await;
    assert_eq!((status, &shown), (200, &body));
    service.stop_once_settled(&id, &mut receiver).await;
}
