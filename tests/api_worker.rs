//! Remote workers (`executioner worker --interface http`) end to end: a real `executioner
//! serve` process (memory store, no local worker) and real worker processes judging in Docker
//! (they need the sandbox: Docker, the images, `EXECUTIONER_DEMOTER`, as `scripts/test` sets
//! up). Then the HTTP interface in process against an in-process service, for what processes
//! cannot show exactly: a dropped `next()`, a submission taken back, a forgotten registration.

mod client;
mod worker_process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use executioner::api::time::now_ms;
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::{HttpConfig, HttpInterface, Interface, Sent, SubmissionState};
use executioner::protocol::{Body, Message, Submission};
use executioner::store::memory::MemoryBackend;
use executioner::store::memory::MemoryInterface;
use executioner::store::{Intake, Listing, Status};
use executioner::verdict::Verdict;
use futures_util::FutureExt;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use worker_process::WorkerProcess;

/// Longest wait for a process to start, and for a submission to be judged.
const STARTUP: Duration = Duration::from_secs(60);
const JUDGING: Duration = Duration::from_secs(120);
/// Longest wait for a step of the in-process tests: everything is local and quick.
const DEADLINE: Duration = Duration::from_secs(30);

/// A slow a+b: long enough (3 tests of 1.5 s) to kill a worker in the middle of judging it.
const SLOW_A_PLUS_B: &str =
    "import time\ntime.sleep(1.5)\na, b = map(int, input().split())\nprint(a + b)\n";

fn fixture(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/submissions")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The worker token of the services these tests start (given to `serve` in its environment,
/// to workers with `--worker-token`).
const TOKEN: &str = "test-worker-token";

/// An `executioner serve` process: the memory store, no local worker, heartbeats every second
/// (a worker silent for 3 s is unresponsive), workers authenticated with [`TOKEN`].
struct Service {
    process: WorkerProcess,
    addr: SocketAddr,
}

impl Service {
    /// Serves on `listen` (`127.0.0.1:0`: a free port).
    fn start(listen: &str) -> Service {
        let mut process = WorkerProcess::spawn(
            &[
                "--log-format",
                "json",
                "serve",
                "--listen",
                listen,
                "--concurrency",
                "0",
                "--heartbeat-seconds",
                "1",
            ],
            &[("EXECUTIONER_WORKER_TOKEN", TOKEN)],
        );
        let addr = process.logged_address("serving the HTTP API", STARTUP);
        Service { process, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `executioner worker --interface http` judging one submission at a time for `service`.
fn remote_worker(service: &Service, name: &str) -> WorkerProcess {
    WorkerProcess::spawn(
        &[
            "worker",
            "--interface",
            "http",
            "--url",
            &service.url(),
            "--worker-name",
            name,
            "--worker-token",
            TOKEN,
            "--concurrency",
            "1",
        ],
        &[],
    )
}

async fn submit(addr: SocketAddr, language: &str, source: &str) -> String {
    let body = json!({"problem": "test-base", "language": language, "sourceCode": source});
    let reply = client::request(addr, "POST", "/v1.0/submissions", Some(&body)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["id"].as_str().expect("an id").to_owned()
}

/// Follows the events of submission `id` until `until` (an event name) or its end.
async fn follow_events(
    addr: SocketAddr,
    id: &str,
    until: &[&str],
    processes: &[&WorkerProcess],
) -> Vec<String> {
    let mut stream = client::Events::open(addr, &format!("/v1.0/submissions/{id}/events")).await;
    let reading = async {
        let mut events = Vec::new();
        while let Some(event) = stream.next().await {
            let last = until.contains(&event.as_str());
            events.push(event);
            if last {
                break;
            }
        }
        events
    };
    tokio::time::timeout(JUDGING, reading)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no {until:?} event for {id} in time; logs:\n{}",
                worker_process::logs(processes)
            )
        })
}

/// Waits until submission `id` has ended; its operation then.
async fn judged(addr: SocketAddr, id: &str, processes: &[&WorkerProcess]) -> Value {
    follow_events(addr, id, &["done", "error", "invalid"], processes).await;
    client::request(addr, "GET", &format!("/v1.0/operations/{id}"), None)
        .await
        .body
}

/// The judge results of `id` as (state, test case, result), the score of `done` as a result.
async fn results(addr: SocketAddr, id: &str) -> Vec<(String, Option<u64>, Option<String>)> {
    let reply = client::request(
        addr,
        "GET",
        &format!("/v1.0/submissions/{id}/judge-results"),
        None,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| {
            assert_eq!(m["id"], id);
            let state = m["state"].as_str().expect("a state").to_owned();
            if state == "tested" {
                assert!(m["time"].is_u64() && m["memory"].is_u64(), "{m}");
            }
            let result = match state.as_str() {
                "done" => Some(format!("score {}", m["score"])),
                _ => m["result"].as_str().map(str::to_owned),
            };
            (state, m["testCase"].as_u64(), result)
        })
        .collect()
}

/// The messages of an a+b judged right on the 3 tests of test-base.
fn accepted_3() -> Vec<(String, Option<u64>, Option<String>)> {
    let mut expected = vec![("executing".to_owned(), None, None)];
    for n in 1..=3 {
        expected.push(("testing".into(), Some(n), None));
        expected.push(("tested".into(), Some(n), Some("accepted".into())));
    }
    expected.push(("done".into(), None, Some("score 1.0".into())));
    expected
}

async fn workers(addr: SocketAddr) -> Vec<Value> {
    let reply = client::request(addr, "GET", "/v1.0/workers", None).await;
    reply.body["value"].as_array().expect("a list").clone()
}

/// Polls `GET /v1.0/workers` until `done` holds (heartbeats are seen only by asking).
async fn until_workers(
    addr: SocketAddr,
    what: &str,
    processes: &[&WorkerProcess],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let waiting = async {
        loop {
            let listed = workers(addr).await;
            if done(&listed) {
                return listed;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(STARTUP, waiting)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: not in time; logs:\n{}",
                worker_process::logs(processes)
            )
        })
}

/// Sandbox containers of process `pid` on this host.
fn containers_of(pid: u32) -> Vec<String> {
    let host = nix::unistd::gethostname()
        .expect("hostname")
        .into_string()
        .expect("a UTF-8 hostname");
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label=executioner.owner={host}:{pid}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_worker_judges_with_the_exact_messages_and_reports_its_status() {
    let service = Service::start("127.0.0.1:0");
    let worker = remote_worker(&service, "remote-1");
    let addr = service.addr;
    let id = submit(
        addr,
        "python-3.11",
        &fixture("python-3.11/test_accepted.py"),
    )
    .await;
    let op = judged(addr, &id, &[&service.process, &worker]).await;
    assert_eq!(
        (op["status"].as_str(), op["percentComplete"].as_u64()),
        (Some("succeeded"), Some(100)),
        "{op}"
    );
    assert_eq!(results(addr, &id).await, accepted_3());
    let submission = client::request(addr, "GET", &format!("/v1.0/submissions/{id}"), None)
        .await
        .body;
    assert_eq!(
        (submission["state"].as_str(), submission["score"].as_f64()),
        (Some("judged"), Some(1.0))
    );

    // Listed as it registered, active, and idle again once its heartbeat says so.
    let listed = until_workers(addr, "the worker idle", &[&worker], |w| {
        w.len() == 1 && w[0]["reportedStatus"] == "idle"
    })
    .await;
    let me = &listed[0];
    assert_eq!(me["name"], "remote-1");
    assert_eq!(me["status"], "active");
    assert_eq!(me["concurrency"], 1);
    assert_eq!(me["runningOperations"], json!([]));
    assert!(me.get("lastError").is_none(), "{me}");

    // A worker without the service's token is refused and says why; it never gets listed.
    let mut impostor = WorkerProcess::spawn(
        &[
            "worker",
            "--interface",
            "http",
            "--url",
            &service.url(),
            "--worker-name",
            "impostor",
            "--worker-token",
            "guessed",
        ],
        &[],
    );
    impostor.wait_for_log("worker token", STARTUP);
    assert!(!impostor.stop(STARTUP).success());
    assert_eq!(workers(addr).await.len(), 1);

    // A clean stop deregisters.
    let pid = worker.pid();
    assert!(worker.stop(STARTUP).success());
    assert_eq!(workers(addr).await, Vec::<Value>::new());
    assert_eq!(containers_of(pid), Vec::<String>::new());
    assert!(service.process.stop(STARTUP).success());
}

/// A worker SIGKILLed in the middle of judging stops heartbeating: after 3 s the service queues
/// its submission again, and another worker judges it afresh (only its attempt is kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_remote_workers_submission_is_finished_by_another() {
    let service = Service::start("127.0.0.1:0");
    let addr = service.addr;
    let doomed = remote_worker(&service, "doomed");
    let id = submit(addr, "python-3.11", SLOW_A_PLUS_B).await;
    follow_events(addr, &id, &["testing"], &[&service.process, &doomed]).await;
    // Its heartbeat says what it does.
    until_workers(addr, "the worker judging", &[&doomed], |w| {
        w.len() == 1 && w[0]["reportedStatus"] == "judging 1"
    })
    .await;
    let listed = workers(addr).await;
    assert_eq!(listed[0]["runningOperations"], json!([id]));

    let doomed_pid = doomed.pid();
    doomed.kill();
    let during = results(addr, &id).await;
    assert!(
        during.iter().all(|(state, _, _)| state != "done"),
        "killed too late: {during:?}"
    );
    // Started once the first is gone: it removes the container the first left.
    let heir = remote_worker(&service, "heir");
    let op = judged(addr, &id, &[&service.process, &heir]).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(results(addr, &id).await, accepted_3());
    assert_eq!(containers_of(doomed_pid), Vec::<String>::new());

    let listed = workers(addr).await;
    let by_name = |name: &str| {
        listed
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {listed:?}"))
            .clone()
    };
    let (gone, heir_seen) = (by_name("doomed"), by_name("heir"));
    assert_eq!(gone["status"], "unresponsive");
    assert_eq!(gone["runningOperations"], json!([]));
    assert_eq!(heir_seen["status"], "active");
    assert_eq!(heir_seen["runningOperations"], json!([]));

    assert!(heir.stop(STARTUP).success());
    assert!(service.process.stop(STARTUP).success());
}

/// A rejudge under a service with no local worker (`--concurrency 0`) is judged by the remote
/// workers, through the queue the submissions go through: with none connected it waits (its
/// judging listed nowhere, the old result kept); once one connects, that one judges it and the
/// submission's result is replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejudge_waits_for_a_remote_worker_when_the_service_has_none() {
    let service = Service::start("127.0.0.1:0");
    let addr = service.addr;
    let first = remote_worker(&service, "first");
    let id = submit(
        addr,
        "python-3.11",
        &fixture("python-3.11/test_accepted.py"),
    )
    .await;
    let before = judged(addr, &id, &[&service.process, &first]).await;
    assert_eq!(before["status"], "succeeded", "{before}");
    assert!(first.stop(STARTUP).success());

    let body = json!({"submissions": [id]});
    let reply = client::request(addr, "POST", "/v1.0/rejudges", Some(&body)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let rejudge = reply.body["id"].as_str().expect("an id").to_owned();
    let operation = |name: String| async move {
        client::request(addr, "GET", &format!("/v1.0/operations/{name}"), None)
            .await
            .body
    };
    // No worker: nothing judges it (the service judged it in process before #18 item 4).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = operation(rejudge.clone()).await;
    assert_eq!(waiting["status"], "running", "{waiting}");
    let page = client::request(addr, "GET", "/v1.0/operations", None)
        .await
        .body;
    let mut listed: Vec<&str> = page["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["id"].as_str().expect("an id"))
        .collect();
    listed.sort_unstable();
    let mut expected = vec![id.as_str(), rejudge.as_str()];
    expected.sort_unstable();
    assert_eq!(listed, expected, "{page}");
    assert_eq!(
        operation(id.clone()).await["lastActionDateTime"],
        before["lastActionDateTime"]
    );

    let mut second = remote_worker(&service, "second");
    let ended = async {
        loop {
            let op = operation(rejudge.clone()).await;
            if op["status"] != "running" && op["status"] != "notstarted" {
                return op;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let ended = tokio::time::timeout(JUDGING, ended)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the rejudge did not end; logs:\n{}",
                worker_process::logs(&[&service.process, &second])
            )
        });
    assert_eq!(ended["status"], "succeeded", "{ended}");
    // The second worker judged it, as a judging of its own key.
    second.wait_for_log(&format!("{id}~"), STARTUP);
    let after = operation(id.clone()).await;
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_ne!(after["lastActionDateTime"], before["lastActionDateTime"]);
    assert_eq!(results(addr, &id).await, accepted_3());
    let workflow = client::request(addr, "GET", &format!("/v1.0/workflows/{rejudge}"), None)
        .await
        .body;
    assert_eq!(workflow["result"]["judged"][0]["submission"], id.as_str());

    assert!(second.stop(STARTUP).success());
    assert!(service.process.stop(STARTUP).success());
}

/// The service restarts (killed, a new one on the same port) under a running worker: the
/// worker finds itself forgotten, registers again and judges what the new service gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_worker_registers_again_with_a_restarted_service() {
    let first = Service::start("127.0.0.1:0");
    let addr = first.addr;
    let worker = remote_worker(&first, "steady");
    let before = until_workers(addr, "the worker registered", &[&worker], |w| w.len() == 1).await;
    first.process.kill();

    let second = Service::start(&addr.to_string());
    assert_eq!(second.addr, addr);
    let after = until_workers(addr, "the worker registered again", &[&worker], |w| {
        w.len() == 1 && w[0]["name"] == "steady"
    })
    .await;
    assert_ne!(after[0]["id"], before[0]["id"]);
    let id = submit(addr, "python", &fixture("python-3.11/test_accepted.py")).await;
    let op = judged(addr, &id, &[&second.process, &worker]).await;
    assert_eq!(op["status"], "succeeded", "{op}");
    assert_eq!(results(addr, &id).await, accepted_3());
    let registrations = worker
        .log_all()
        .matches("registered with the service")
        .count();
    assert_eq!(registrations, 2, "{}", worker.log_tail());

    assert!(worker.stop(STARTUP).success());
    assert!(second.process.stop(STARTUP).success());
}

/// The API on a real socket in this process, over a fresh memory store; the registry's sweep
/// is not started, so workers become unresponsive only when a test says so.
struct InProcess {
    state: AppState,
    backend: Arc<MemoryBackend>,
    addr: SocketAddr,
    _stop: DropGuard,
}

impl InProcess {
    async fn start() -> InProcess {
        let shutdown = CancellationToken::new();
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        backend.follow(shutdown.clone());
        let config = ApiConfig {
            heartbeat_interval: Duration::from_millis(200),
            ..ApiConfig::default()
        };
        let state = AppState::new(backend.clone(), config, shutdown.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(api::serve(listener, state.clone(), shutdown.clone()));
        InProcess {
            state,
            backend,
            addr,
            _stop: shutdown.drop_guard(),
        }
    }

    async fn connect(&self) -> HttpInterface {
        self.connect_with(|_| {}).await
    }

    /// A worker whose settings `adjust` changes.
    async fn connect_with(&self, adjust: impl FnOnce(&mut HttpConfig)) -> HttpInterface {
        let mut config = HttpConfig::new(format!("http://{}/", self.addr));
        adjust(&mut config);
        within("registering", HttpInterface::connect(config))
            .await
            .expect("registered")
    }

    async fn submit(&self, id: &str) {
        let submission = Submission {
            id: id.into(),
            problem: "test-base".into(),
            language: "python".into(),
            source_code: "x".into(),
            files: Vec::new(),
            run: None,
        };
        self.backend
            .submit(submission, Some(1), Default::default())
            .await
            .expect("queued");
    }

    /// Waits until submission `id` is in `state`.
    async fn until_state(&self, id: &str, state: SubmissionState) {
        within(&format!("{id} {state:?}"), async {
            loop {
                let mut changes = self.backend.subscribe();
                let view = self.backend.get(id).await.expect("memory store");
                if view.is_some_and(|v| v.state == state) {
                    return;
                }
                let _ = changes.recv().await;
            }
        })
        .await
    }

    /// Has `interface` judge `id` with one accepted test, and checks the service kept exactly
    /// those messages.
    async fn judge_one_test(&self, interface: &HttpInterface, id: &str) {
        judge_one_test(interface, id).await;
        assert_eq!(
            self.states(id).await,
            ["executing", "testing", "tested", "done"]
        );
    }

    async fn states(&self, id: &str) -> Vec<&'static str> {
        let messages = self.backend.messages(id).await.expect("memory store");
        messages
            .expect("a submission")
            .iter()
            .map(|r| r.message.body.state())
            .collect()
    }
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?} waiting for {what}"))
}

async fn take(interface: &HttpInterface) -> Submission {
    within("a submission", interface.next())
        .await
        .expect("taken")
        .expect("not closed")
}

async fn send(interface: &HttpInterface, id: &str, body: Body) -> Sent {
    interface
        .send(&Message::new(id, body))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"))
}

/// `executing`, one accepted test, `done`: all recorded.
async fn judge_one_test(interface: &HttpInterface, id: &str) {
    assert_eq!(send(interface, id, Body::Executing).await, Sent::Recorded);
    for body in one_test() {
        assert_eq!(send(interface, id, body).await, Sent::Recorded);
    }
    let done = Body::Done {
        score: Some(1.0),
        failed_subtasks: None,
    };
    assert_eq!(send(interface, id, done).await, Sent::Recorded);
}

fn one_test() -> [Body; 2] {
    [
        Body::Testing {
            test_case: 1,
            subtask: None,
        },
        Body::Tested {
            test_case: 1,
            subtask: None,
            result: Verdict::Accepted,
            time: Some(5),
            memory: Some(1024),
            score: None,
            output: None,
        },
    ]
}

/// A `next()` dropped while its take waits loses nothing: the submission the take then gets
/// (claimed by the service for this worker) is what the following `next()` returns.
#[tokio::test]
async fn a_submission_taken_for_a_dropped_next_is_kept_for_the_next_one() {
    let service = InProcess::start().await;
    let interface = service.connect().await;
    assert!(interface.next().now_or_never().is_none());
    service.submit("s").await;
    // Claimed for the worker with no next() waiting.
    service.until_state("s", SubmissionState::Judging).await;
    assert_eq!(take(&interface).await.id, "s");
    service.judge_one_test(&interface, "s").await;
    let view = service.backend.get("s").await.unwrap().unwrap();
    assert_eq!(view.status, Status::Succeeded);
    interface.close().await;
    assert!(service.state.workers().all().is_empty());
    assert_eq!(
        within("next after close", interface.next()).await.unwrap(),
        None
    );
}

/// A close while a take is under way gives back what the take got.
#[tokio::test]
async fn a_closed_worker_gives_back_what_it_took() {
    let service = InProcess::start().await;
    let interface = service.connect().await;
    assert!(interface.next().now_or_never().is_none());
    service.submit("c").await;
    service.until_state("c", SubmissionState::Judging).await;
    interface.close().await;
    service.until_state("c", SubmissionState::Queued).await;
    assert!(service.state.workers().all().is_empty());
}

/// The service queues a submission again (the worker looked silent): what the worker then
/// reports about it is refused, the worker drops it (and says so with its next heartbeat), and
/// the attempt it takes next is recorded alone.
#[tokio::test]
async fn a_submission_taken_back_is_dropped_and_judged_afresh() {
    let service = InProcess::start().await;
    let interface = service.connect().await;
    service.submit("f").await;
    assert_eq!(take(&interface).await.id, "f");
    assert_eq!(send(&interface, "f", Body::Executing).await, Sent::Recorded);
    let [testing, tested] = one_test();
    assert_eq!(send(&interface, "f", testing).await, Sent::Recorded);

    let requeued = service.state.workers().sweep(now_ms() + 3_600_000).await;
    assert_eq!(requeued, ["f"]);
    let refused = interface
        .send(&Message::new("f", tested))
        .await
        .expect_err("fenced");
    assert!(refused.reason.contains("another worker"), "{refused}");
    // Dropped: nothing more goes out for it.
    let done = Message::new(
        "f",
        Body::Done {
            score: Some(1.0),
            failed_subtasks: None,
        },
    );
    let dropped = interface.send(&done).await.expect_err("dropped");
    assert!(dropped.reason.contains("does not hold it"), "{dropped}");
    within("the error reported", async {
        loop {
            let reported = service.state.workers().all()[0].last_error.clone();
            if reported.is_some_and(|(e, _)| e.contains("another worker")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    assert_eq!(take(&interface).await.id, "f");
    service.judge_one_test(&interface, "f").await;
    interface.close().await;
}

/// A service that no longer knows the worker (as after a restart) refuses its messages with
/// 404: the worker drops that submission, registers again and goes on taking.
#[tokio::test]
async fn a_forgotten_worker_registers_again_and_goes_on() {
    let service = InProcess::start().await;
    let interface = service.connect().await;
    service.submit("a").await;
    assert_eq!(take(&interface).await.id, "a");
    assert_eq!(send(&interface, "a", Body::Executing).await, Sent::Recorded);
    let old = interface.worker_id().expect("registered");

    let requeued = service.state.workers().deregister(&old).await;
    assert_eq!(requeued, Some(vec!["a".to_owned()]));
    let [testing, _] = one_test();
    let refused = interface
        .send(&Message::new("a", testing))
        .await
        .expect_err("forgotten");
    assert!(
        refused.reason.contains("no longer knows this worker"),
        "{refused}"
    );

    assert_eq!(take(&interface).await.id, "a");
    let new = interface.worker_id().expect("registered again");
    assert_ne!(new, old);
    service.judge_one_test(&interface, "a").await;
    let listed = service.state.workers().all();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, new);
    interface.close().await;
}

/// Waits until the worker (the only one registered) sent a heartbeat after `after_ms`.
async fn until_heartbeat(service: &InProcess, after_ms: i64) {
    within("a heartbeat", async {
        while service.state.workers().all()[0].last_heartbeat_ms <= after_ms {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The service claimed a submission for the worker, and the answer never reached it (here the
/// take is made in the registry directly). The worker's next take answer tells it that take's
/// number; its heartbeat, which lists what it runs, then has the service queue the submission
/// again, and the worker takes it anew and judges it. What it runs stays its own meanwhile.
#[tokio::test]
async fn a_take_whose_answer_was_lost_comes_back_through_the_heartbeat() {
    let service = InProcess::start().await;
    let interface = service
        .connect_with(|config| config.take_wait = Duration::from_millis(100))
        .await;
    let worker = interface.worker_id().expect("registered");
    service.submit("l").await;
    let workers = service.state.workers();
    let lost = workers
        .take(&worker, Duration::ZERO, &CancellationToken::new())
        .await
        .expect("taken");
    assert_eq!(lost.number(), 1);

    assert_eq!(take(&interface).await.id, "l");
    assert_eq!(workers.all()[0].last_take, 2);
    // Held (and judged) here: the heartbeats list it, so it stays this worker's.
    let seen = workers.all()[0].last_heartbeat_ms;
    until_heartbeat(&service, seen).await;
    until_heartbeat(&service, workers.all()[0].last_heartbeat_ms).await;
    assert_eq!(workers.all()[0].running.iter().collect::<Vec<_>>(), ["l"]);
    service.judge_one_test(&interface, "l").await;
    interface.close().await;
}

/// The service takes a submission back from the worker (it looked silent) and gives it to the
/// same worker again while the old attempt still runs there: the worker does not run it twice
/// at once (it takes the next one instead), the old attempt is refused, and once it stopped the
/// heartbeat has the service queue the submission again, to be judged alone.
#[tokio::test]
async fn a_submission_given_again_while_its_old_attempt_runs_is_not_run_twice() {
    let service = InProcess::start().await;
    let interface = service.connect().await;
    service.submit("r").await;
    assert_eq!(take(&interface).await.id, "r");
    assert_eq!(send(&interface, "r", Body::Executing).await, Sent::Recorded);
    let [testing, tested] = one_test();
    assert_eq!(send(&interface, "r", testing).await, Sent::Recorded);

    let requeued = service.state.workers().sweep(now_ms() + 3_600_000).await;
    assert_eq!(requeued, ["r"]);
    // Queued first, "r" is given to this worker again; then "z".
    service.submit("z").await;
    assert_eq!(take(&interface).await.id, "z");
    let refused = interface
        .send(&Message::new("r", tested))
        .await
        .expect_err("the old take is refused");
    assert!(refused.reason.contains("took it back"), "{refused}");
    judge_one_test(&interface, "z").await;

    assert_eq!(take(&interface).await.id, "r");
    service.judge_one_test(&interface, "r").await;
    interface.close().await;
}
