//! Ad-hoc runs end to end, judged in real Docker: `executioner run` on the command line;
//! `POST /v1.0/runs` on a real `serve` judged by a real remote worker (`--interface http`), and
//! on `serve --database-url` judged by a real `worker --interface postgres` (the run goes
//! through the same queue, store and worker as a submission). Needs the sandbox (Docker, the
//! images, `EXECUTIONER_DEMOTER`) and, for the Postgres case, `EXECUTIONER_TEST_DATABASE_URL`.

mod client;
mod pg;
mod worker_process;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::{json, Value};
use worker_process::WorkerProcess;

const STARTUP: Duration = Duration::from_secs(60);
const JUDGING: Duration = Duration::from_secs(120);
const TOKEN: &str = "test-worker-token";

fn problems() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems")
}

/// `executioner run <args> <source>` with `stdin`: exit status, stdout, stderr.
fn run_cli(args: &[&str], source: &Path, stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_executioner"))
        .arg("run")
        .arg("--problems")
        .arg(problems())
        .args(args)
        .arg(source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start executioner run");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write the input");
    drop(input);
    let out = child.wait_with_output().expect("executioner run ends");
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a program");
    path
}

const SUM_PY: &str =
    "import sys\na, b = map(int, input().split())\nprint(a + b)\nprint('note', file=sys.stderr)\n";

#[test]
fn the_run_command_gives_the_programs_output_exit_and_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let sum = write(dir.path(), "sum.py", SUM_PY);

    // Output and stderr come through as the program wrote them; accepted, exit status 0.
    let (code, stdout, stderr) = run_cli(&["--language", "python"], &sum, b"2 40\n");
    assert_eq!((code, stdout.as_slice()), (0, &b"42\n"[..]), "{stderr}");
    assert!(stderr.contains("note\n"), "{stderr}");
    assert!(stderr.contains("executioner: accepted, exit 0"), "{stderr}");

    // With an expected output: accepted when it matches (tokens), wrong (status 4) when not.
    let right = write(dir.path(), "right.txt", "42");
    let wrong = write(dir.path(), "wrong.txt", "41\n");
    let expect = |path: &Path| {
        let expected = path.to_str().unwrap();
        run_cli(
            &["--language", "python", "--expected", expected, "--json"],
            &sum,
            b"2 40\n",
        )
    };
    let (code, stdout, stderr) = expect(&right);
    let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
    assert_eq!(
        (code, &report["verdict"]),
        (0, &json!("accepted")),
        "{stderr}"
    );
    let (code, stdout, _) = expect(&wrong);
    let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
    assert_eq!((code, &report["verdict"]), (4, &json!("wrong")));
    assert_eq!(report["stdout"]["text"], "42\n");

    // A non-zero exit is a runtime error with its status; bytes that are not UTF-8 come back
    // as base64; more than 64 KiB is cut, with the total counted.
    let c = write(
        dir.path(),
        "bytes.c",
        "#include <stdio.h>\nint main(void){for(int i=0;i<70000;i++)putchar('x');putchar(0xff);return 3;}\n",
    );
    let (code, stdout, stderr) = run_cli(&["--language", "c", "--json"], &c, b"");
    let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(report["verdict"], "error");
    assert_eq!(report["exitCode"], 3);
    assert_eq!(report["stdout"]["bytes"], 70001);
    assert_eq!(report["stdout"]["truncated"], true);
    assert_eq!(report["stdout"]["text"].as_str().map(str::len), Some(65536));
    let (_, raw, _) = run_cli(&["--language", "c"], &c, b"");
    assert_eq!(
        raw.len(),
        65536,
        "the program's output is written as bytes, cut at 64 KiB"
    );
    let binary = write(
        dir.path(),
        "binary.c",
        "#include <stdio.h>\nint main(void){putchar(0xff);putchar(0);putchar('a');return 0;}\n",
    );
    let (_, stdout, _) = run_cli(&["--language", "c", "--json"], &binary, b"");
    let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
    assert_eq!(report["stdout"]["base64"], "/wBh", "{report}");

    // Limits: a loop is stopped at its CPU limit.
    let spin = write(dir.path(), "spin.py", "while True:\n    pass\n");
    let (code, stdout, _) = run_cli(
        &["--language", "python", "--time-limit", "0.3", "--json"],
        &spin,
        b"",
    );
    let report: Value = serde_json::from_slice(&stdout).expect("a JSON report");
    assert_eq!((code, &report["verdict"]), (4, &json!("TLE")), "{report}");
    assert!(report["exitSignal"].is_i64(), "{report}");

    // A compile error (status 3) shows the compiler's words; an unknown language is invalid (2).
    let broken = write(dir.path(), "broken.c", "int main( {\n");
    let (code, _, stderr) = run_cli(&["--language", "c"], &broken, b"");
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(stderr.contains("compile error"), "{stderr}");
    let (code, _, stderr) = run_cli(&["--language", "intercal"], &sum, b"");
    assert_eq!(code, 2, "{stderr}");
}

/// A `serve` process (no local worker) and the worker that judges for it; when dropped, the
/// worker is stopped as an operator would (SIGTERM: it finishes what it judges and leaves
/// nothing behind), then the service.
struct Deployment {
    api: SocketAddr,
    service: Option<WorkerProcess>,
    worker: Option<WorkerProcess>,
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.terminate(JUDGING);
        }
        if let Some(service) = self.service.take() {
            service.terminate(STARTUP);
        }
    }
}

impl Deployment {
    /// `serve` over memory and a remote worker, or over Postgres (`database`) and a worker on
    /// the same database.
    fn start(database: Option<&str>) -> Deployment {
        let mut args = vec![
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "0",
            "--run-max-time",
            "5",
            // A remote worker silent for 1.5 s is unresponsive, given up on after 3 s.
            "--heartbeat-seconds",
            "1",
        ];
        if let Some(url) = database {
            args.extend(["--database-url", url]);
        }
        let mut service = WorkerProcess::spawn(&args, &[("EXECUTIONER_WORKER_TOKEN", TOKEN)]);
        let api = service.logged_address("serving the HTTP API", STARTUP);
        let url = format!("http://{api}");
        let worker_args = match database {
            None => vec![
                "worker",
                "--interface",
                "http",
                "--url",
                &url,
                "--worker-token",
                TOKEN,
                "--concurrency",
                "1",
            ],
            Some(database) => vec![
                "worker",
                "--interface",
                "postgres",
                "--database-url",
                database,
                "--concurrency",
                "1",
                "--lease-seconds",
                "2",
            ],
        };
        let worker = WorkerProcess::spawn(&worker_args, &[]);
        Deployment {
            api,
            service: Some(service),
            worker: Some(worker),
        }
    }

    fn worker(&self) -> &WorkerProcess {
        self.worker
            .as_ref()
            .expect("the worker runs until the deployment is dropped")
    }

    async fn post_run(&self, body: Value) -> client::Reply {
        client::request(self.api, "POST", "/v1.0/runs", Some(&body)).await
    }

    /// Queues a run; its id.
    async fn run(&self, body: Value) -> String {
        let reply = self.post_run(body).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        assert_eq!(reply.body["kind"], "run", "{}", reply.body);
        reply.body["id"].as_str().expect("an id").to_owned()
    }

    /// Waits for run `id` to finish; its operation and its result.
    async fn finished(&self, id: &str) -> (Value, Value) {
        let until = Instant::now() + JUDGING;
        loop {
            let op = client::request(self.api, "GET", &format!("/v1.0/operations/{id}"), None)
                .await
                .body;
            if op["status"] == "succeeded" || op["status"] == "failed" {
                let location = op["resourceLocation"].as_str().unwrap_or_default();
                assert_eq!(location, format!("/v1.0/runs/{id}"), "{op}");
                let result = client::request(self.api, "GET", location, None).await;
                assert_eq!(result.status, 200, "{}", result.body);
                return (op, result.body);
            }
            assert!(
                Instant::now() < until,
                "run {id} did not finish: {op}\n{}",
                self.worker().log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What both deployments must do with runs.
async fn runs_are_judged_by_the_worker(deployment: &Deployment) {
    let id = deployment
        .run(json!({"language": "python", "sourceCode": SUM_PY, "stdin": "20 22\n"}))
        .await;
    let (op, result) = deployment.finished(&id).await;
    assert_eq!(op["status"], "succeeded");
    assert_eq!(result["verdict"], "accepted", "{result}");
    assert_eq!(result["stdout"]["text"], "42\n");
    assert_eq!(result["stderr"]["text"], "note\n");
    assert_eq!(result["exitCode"], 0);
    assert!(result["time"].is_u64() && result["memory"].is_u64() && result["wallTime"].is_u64());
    assert_eq!(result["end"], "done");

    // An expected output, a compile error, a limit below the operator's cap.
    let id = deployment
        .run(json!({"language": "python", "sourceCode": SUM_PY, "stdin": "1 1", "expectedOutput": "3\n"}))
        .await;
    assert_eq!(deployment.finished(&id).await.1["verdict"], "wrong");
    let id = deployment
        .run(json!({"language": "c", "sourceCode": "int main( {"}))
        .await;
    let (_, result) = deployment.finished(&id).await;
    assert_eq!(result["compileError"], true, "{result}");
    assert!(result["compileOutput"]
        .as_str()
        .is_some_and(|o| o.contains("error")));
    let id = deployment
        .run(json!({"language": "python", "sourceCode": "while True:\n    pass\n", "timeLimitMs": 300}))
        .await;
    let (_, result) = deployment.finished(&id).await;
    assert_eq!(result["verdict"], "TLE", "{result}");

    // Repeated: one test per run, time and memory averaged over them.
    let id = deployment
        .run(json!({"language": "python", "sourceCode": SUM_PY, "stdin": "1 2", "numberOfRuns": 3}))
        .await;
    let (_, result) = deployment.finished(&id).await;
    let messages = client::request(
        deployment.api,
        "GET",
        &format!("/v1.0/submissions/{id}/judge-results"),
        None,
    )
    .await;
    let tested: Vec<&Value> = messages.body["value"]
        .as_array()
        .expect("a list")
        .iter()
        .filter(|m| m["state"] == "tested")
        .collect();
    assert_eq!(tested.len(), 3, "{}", messages.body);
    let mean = |field: &str| {
        let sum: u64 = tested.iter().map(|m| m[field].as_u64().unwrap()).sum();
        (sum as f64 / 3.0).round() as u64
    };
    assert_eq!(
        (&result["verdict"], &result["stdout"]["text"]),
        (&json!("accepted"), &json!("3\n"))
    );
    assert_eq!(
        (result["time"].as_u64(), result["memory"].as_u64()),
        (Some(mean("time")), Some(mean("memory")))
    );

    // Runs are operations of their own kind, filtered apart from submissions.
    let listed = client::request(
        deployment.api,
        "GET",
        &format!(
            "/v1.0/operations?$filter={}",
            client::encode("kind eq 'run'")
        ),
        None,
    )
    .await;
    let kinds: Vec<&Value> = listed.body["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|op| &op["kind"])
        .collect();
    assert_eq!(kinds.len(), 5, "{}", listed.body);
    assert!(kinds.iter().all(|k| *k == "run"), "{}", listed.body);

    // Refused, with the API's error shape: limits over the operator's caps, unknown fields, NUL,
    // an unknown language; a submission is no run.
    for (body, what) in [
        (
            json!({"language": "python", "sourceCode": "print(1)", "timeLimitMs": 5001}),
            "timeLimitMs",
        ),
        (
            json!({"language": "python", "sourceCode": "print(1)", "memoryLimitKb": 600000}),
            "memoryLimitKb",
        ),
        (
            json!({"language": "python", "sourceCode": "print(1)", "stdin": "a\u{0}b"}),
            "NUL",
        ),
        (
            json!({"language": "python", "sourceCode": "print(1)", "enableNetwork": true}),
            "enableNetwork",
        ),
        (
            json!({"language": "intercal", "sourceCode": "print(1)"}),
            "unknown language",
        ),
    ] {
        let reply = deployment.post_run(body).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        let message = reply.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(what), "{what}: {}", reply.body);
    }
    let submitted = client::request(
        deployment.api,
        "POST",
        "/v1.0/submissions",
        Some(&json!({"problem": "test-base", "language": "python", "sourceCode": SUM_PY})),
    )
    .await;
    let submission = submitted.body["id"].as_str().expect("an id");
    let reply = client::request(
        deployment.api,
        "GET",
        &format!("/v1.0/runs/{submission}"),
        None,
    )
    .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_through_serve_are_judged_by_a_remote_worker() {
    let deployment = Deployment::start(None);
    runs_are_judged_by_the_worker(&deployment).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_through_the_postgres_store_are_judged_by_a_postgres_worker() {
    let db = pg::TestDatabase::create().await;
    let deployment = Deployment::start(Some(&db.url));
    runs_are_judged_by_the_worker(&deployment).await;
}

/// Waits until operation `id` has `status`; the operation then.
async fn until_status(deployment: &Deployment, id: &str, status: &str) -> Value {
    let until = Instant::now() + JUDGING;
    loop {
        let op = client::request(
            deployment.api,
            "GET",
            &format!("/v1.0/operations/{id}"),
            None,
        )
        .await
        .body;
        if op["status"] == status {
            return op;
        }
        assert!(
            Instant::now() < until,
            "{id} never became {status}: {op}\n{}",
            deployment.worker().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deadlines: a run still judging when its deadline passes ends as `timeout` at once, and what
/// its worker sends afterwards is not recorded; a queued submission past its deadline ends as
/// `timeout` and is never judged; both are listed by `$filter=status eq 'timeout'`.
async fn deadlines_end_operations(deployment: &Deployment) {
    let slow = deployment
        .run(json!({
            "language": "python",
            "sourceCode": "import time\ntime.sleep(2.5)\nprint('late')\n",
            "timeLimitMs": 5000,
            "deadlineSeconds": 1.0,
        }))
        .await;
    // It was taken: the worker runs it when the deadline passes.
    until_status(deployment, &slow, "running").await;
    let op = until_status(deployment, &slow, "timeout").await;
    // What it did until then (and why it ended) stays readable.
    assert_eq!(op["resourceLocation"], format!("/v1.0/runs/{slow}"), "{op}");
    // The worker finishes the program (2.5 s), then takes the next: by then its late messages
    // have been refused.
    let next = deployment
        .run(json!({"language": "python", "sourceCode": "print(1)"}))
        .await;
    let (op, result) = deployment.finished(&next).await;
    assert_eq!(
        (&op["status"], &result["verdict"]),
        (&json!("succeeded"), &json!("accepted"))
    );
    let reply = client::request(deployment.api, "GET", &format!("/v1.0/runs/{slow}"), None).await;
    assert_eq!(reply.body["status"], "timeout", "{}", reply.body);
    assert!(reply.body.get("verdict").is_none(), "{}", reply.body);
    assert_eq!(
        reply.body["reason"], "the operation passed its deadline",
        "{}",
        reply.body
    );

    // Not started in time (the worker is busy for 3 s): never judged.
    let busy = deployment
        .run(json!({
            "language": "python",
            "sourceCode": "import time\ntime.sleep(3)\n",
            "timeLimitMs": 5000,
        }))
        .await;
    until_status(deployment, &busy, "running").await;
    let queued = client::request(
        deployment.api,
        "POST",
        "/v1.0/submissions",
        Some(&json!({"problem": "test-base", "language": "python", "sourceCode": SUM_PY, "deadlineSeconds": 0.5})),
    )
    .await;
    assert_eq!(queued.status, 202, "{}", queued.body);
    let queued = queued.body["id"].as_str().expect("an id").to_owned();
    until_status(deployment, &queued, "timeout").await;
    until_status(deployment, &busy, "succeeded").await;
    let submission = client::request(
        deployment.api,
        "GET",
        &format!("/v1.0/submissions/{queued}"),
        None,
    )
    .await;
    assert_eq!(submission.body["state"], "cancelled", "{}", submission.body);
    let messages = client::request(
        deployment.api,
        "GET",
        &format!("/v1.0/submissions/{queued}/judge-results"),
        None,
    )
    .await;
    assert_eq!(messages.body["value"], json!([]), "never judged");
    let cancel = client::request(
        deployment.api,
        "DELETE",
        &format!("/v1.0/operations/{queued}"),
        None,
    )
    .await;
    assert_eq!(cancel.status, 405, "{}", cancel.body);

    let listed = client::request(
        deployment.api,
        "GET",
        &format!(
            "/v1.0/operations?$filter={}",
            client::encode("status eq 'timeout'")
        ),
        None,
    )
    .await;
    let mut ids: Vec<&str> = listed.body["value"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|op| op["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![slow.as_str(), queued.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected, "{}", listed.body);

    for bad in [json!(0), json!(-1), json!(1e9), json!("soon")] {
        let reply = deployment
            .post_run(
                json!({"language": "python", "sourceCode": "print(1)", "deadlineSeconds": bad}),
            )
            .await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_end_operations_over_memory() {
    let deployment = Deployment::start(None);
    deadlines_end_operations(&deployment).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_end_operations_over_postgres() {
    let db = pg::TestDatabase::create().await;
    let deployment = Deployment::start(Some(&db.url));
    deadlines_end_operations(&deployment).await;
}

/// Unresponsive: a worker stopped (SIGSTOP) while judging a run sends no heartbeat; the run's
/// operation is `unresponsive` (listed by `$filter=status eq 'unresponsive'`) until it is queued
/// again (memory: after 3 missed heartbeats) or the worker comes back (Postgres, whose lease
/// nobody else took); either way, once the worker runs again (SIGCONT), the run is judged.
async fn a_silent_worker_makes_its_operation_unresponsive(deployment: &Deployment, requeued: bool) {
    let slow = deployment
        .run(json!({
            "language": "python",
            "sourceCode": "import time\ntime.sleep(1.5)\nprint('done')\n",
            "timeLimitMs": 5000,
        }))
        .await;
    until_status(deployment, &slow, "running").await;
    deployment.worker().signal(Signal::SIGSTOP);
    until_status(deployment, &slow, "unresponsive").await;
    let listed = client::request(
        deployment.api,
        "GET",
        &format!(
            "/v1.0/operations?$filter={}",
            client::encode("status eq 'unresponsive'")
        ),
        None,
    )
    .await;
    let ids: Vec<&Value> = listed.body["value"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|op| &op["id"])
        .collect();
    assert_eq!(ids, [&json!(slow)], "{}", listed.body);
    if requeued {
        until_status(deployment, &slow, "notstarted").await;
    }
    deployment.worker().signal(Signal::SIGCONT);
    let (op, result) = deployment.finished(&slow).await;
    assert_eq!(
        (&op["status"], &result["stdout"]["text"]),
        (&json!("succeeded"), &json!("done\n")),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_remote_worker_makes_its_operation_unresponsive() {
    let deployment = Deployment::start(None);
    a_silent_worker_makes_its_operation_unresponsive(&deployment, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_makes_its_operation_unresponsive() {
    let db = pg::TestDatabase::create().await;
    let deployment = Deployment::start(Some(&db.url));
    a_silent_worker_makes_its_operation_unresponsive(&deployment, false).await;
}
