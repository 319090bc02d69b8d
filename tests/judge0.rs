//! The Judge0-compatible API end to end: a real `serve` process with a local worker (real
//! Docker) and `--judge0-listen 127.0.0.1:0`, driven by the official Judge0 Python SDK
//! unchanged (`tests/judge0/client.py`, run with `EXECUTIONER_JUDGE0_PYTHON`, the venv
//! `scripts/test` installs), and by raw HTTP for Judge0's error shapes, `fields` and
//! `base64_encoded`. Needs the sandbox (Docker, the images, `EXECUTIONER_DEMOTER`) and, for the
//! Postgres case, `EXECUTIONER_TEST_DATABASE_URL`.

mod pg;
mod worker_process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use worker_process::WorkerProcess;

const STARTUP: Duration = Duration::from_secs(60);
/// The SDK script: a dozen runs, one at a time, each compiled and run in Docker.
const SCRIPT: Duration = Duration::from_secs(600);
const TOKEN: &str = "judge0-client-token";

/// `serve` with a local worker, the main API and the Judge0 listener, callbacks allowed to
/// `callback_host` and signed.
struct Service {
    api: SocketAddr,
    judge0: SocketAddr,
    process: WorkerProcess,
}

impl Service {
    /// Over memory, or over the Postgres database `database`.
    fn start(callback_host: &str, database: Option<&str>) -> Service {
        let mut args = vec![
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--judge0-listen",
            "127.0.0.1:0",
            "--concurrency",
            "1",
            "--run-max-time",
            "5",
            "--webhook-allow",
            callback_host,
            "--callback-secret",
            "judge0-callback-secret",
            "--client-token",
            TOKEN,
        ];
        if let Some(url) = database {
            args.extend(["--database-url", url]);
        }
        let mut process = WorkerProcess::spawn(&args, &[]);
        let api = process.logged_address("serving the HTTP API", STARTUP);
        let judge0 = process.logged_address("serving the Judge0-compatible API", STARTUP);
        Service {
            api,
            judge0,
            process,
        }
    }
}

/// One request received by [`Receiver`].
#[derive(Debug)]
struct Received {
    method: String,
    path: String,
    body: Value,
}

/// An HTTP server on 127.0.0.1, port 0, answering 200 to every request and handing it over.
struct Receiver {
    addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (send, received) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let request = loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        break None;
                    };
                    if n == 0 {
                        break None;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let mut words = head.split_whitespace();
                        break Some(Received {
                            method: words.next().unwrap_or_default().to_owned(),
                            path: words.next().unwrap_or_default().to_owned(),
                            body: serde_json::from_str(body).unwrap_or(Value::Null),
                        });
                    }
                };
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                if let Some(request) = request {
                    let _ = send.send(request);
                }
            }
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    async fn next(&mut self, deadline: Duration) -> Received {
        tokio::time::timeout(deadline, self.received.recv())
            .await
            .expect("a callback in time")
            .expect("the receiver runs")
    }
}

/// The SDK's interpreter (the venv `scripts/test` makes).
fn python() -> PathBuf {
    std::env::var_os("EXECUTIONER_JUDGE0_PYTHON")
        .map(PathBuf::from)
        .expect(
            "EXECUTIONER_JUDGE0_PYTHON: the judge0 SDK's venv python (scripts/test installs it)",
        )
}

/// Runs `tests/judge0/client.py` against `url`; its JSON results. Killed at [`SCRIPT`].
fn run_client(url: &str, callback: &str, service: &WorkerProcess) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/judge0/client.py");
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(python())
        .arg(script)
        .args([url, TOKEN, callback])
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(err.reopen().unwrap())
        .spawn()
        .expect("start the SDK script");
    let until = Instant::now() + SCRIPT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the SDK script ran past {SCRIPT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(out.path()).unwrap();
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert!(
        status.success(),
        "the SDK script failed ({status}):\n{stderr}\nservice log:\n{}",
        service.log_tail()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_runs_unchanged_against_the_judge0_listener() {
    the_sdk_runs_unchanged(None).await;
}

/// The same over the Postgres store: a Judge0 run's callback style is kept with it.
#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_runs_unchanged_over_postgres() {
    let db = pg::TestDatabase::create().await;
    the_sdk_runs_unchanged(Some(&db.url)).await;
}

async fn the_sdk_runs_unchanged(database: Option<&str>) {
    let mut receiver = Receiver::start().await;
    let service = Service::start(&receiver.addr.to_string(), database);
    let url = format!("http://{}", service.judge0);
    let callback = format!("http://{}/judge0-hook", receiver.addr);
    let results = {
        let (url, callback) = (url.clone(), callback.clone());
        let process = &service.process;
        tokio::task::block_in_place(|| run_client(&url, &callback, process))
    };

    // Client creation read /about, /languages and /config_info; the SDK's constants resolve
    // to Judge0 CE 1.13.1's ids, which this service lists (no Python 2).
    assert_eq!(results["version"], "1.13.1");
    assert_eq!(
        results["languages"],
        json!({"C": 50, "CPP": 52, "PYTHON": 71, "JAVA": 62})
    );
    assert_eq!(
        results["supported"],
        json!({"C": true, "CPP": true, "PYTHON": true, "PYTHON2": false})
    );
    assert_eq!(results["config"]["max_cpu_time_limit"], 5.0);
    assert_eq!(results["config"]["max_memory_limit"], 524288);
    assert_eq!(results["config"]["enable_callbacks"], true);
    assert_eq!(
        results["statuses"][10],
        json!({"id": 11, "description": "Runtime Error (NZEC)"})
    );

    for name in ["accepted_c", "accepted_cpp", "accepted_python"] {
        let run = &results[name];
        assert_eq!(run["status"], 3, "{name}: {run}");
        assert_eq!(run["stdout"], "42\n", "{name}: {run}");
        assert_eq!(run["exit_code"], 0, "{name}: {run}");
        assert!(
            run["time"].as_f64().is_some_and(|t| t < 5.0),
            "{name}: {run}"
        );
        assert!(
            run["memory"].as_f64().is_some_and(|m| m > 0.0),
            "{name}: {run}"
        );
        assert!(
            run["created_at"].is_string() && run["finished_at"].is_string(),
            "{run}"
        );
    }
    // Without an expected output it is accepted when it ran fine.
    assert_eq!(results["run"]["status"], 3, "{}", results["run"]);
    assert_eq!(results["run"]["stdout"], "hi\n");

    assert_eq!(results["wrong"]["status"], 4, "{}", results["wrong"]);
    assert_eq!(results["wrong"]["stdout"], "42\n");
    let tle = &results["tle"];
    assert_eq!(tle["status"], 5, "{tle}");
    // The SDK leaves `message` as Judge0 sends it with base64_encoded=true: base64.
    let message = tle["message"]
        .as_str()
        .and_then(executioner::protocol::base64_decode);
    assert_eq!(
        message.as_deref(),
        Some(&b"Time limit exceeded"[..]),
        "{tle}"
    );
    let compile = &results["compile_error"];
    assert_eq!(compile["status"], 6, "{compile}");
    assert!(
        compile["compile_output"]
            .as_str()
            .is_some_and(|o| o.contains("error")),
        "{compile}"
    );
    assert_eq!(compile["stdout"], Value::Null);
    let segv = &results["sigsegv"];
    assert_eq!(
        (&segv["status"], &segv["exit_signal"]),
        (&json!(7), &json!(11)),
        "{segv}"
    );
    let nzec = &results["nzec"];
    assert_eq!(
        (&nzec["status"], &nzec["exit_code"]),
        (&json!(11), &json!(3)),
        "{nzec}"
    );
    assert_eq!(nzec["stderr"], "bye\n");
    let message = nzec["message"]
        .as_str()
        .and_then(executioner::protocol::base64_decode);
    assert_eq!(message.as_deref(), Some(&b"Exited with error status 3"[..]));

    assert_eq!(
        results["args"]["stdout"], "x / y z\n",
        "{}",
        results["args"]
    );
    assert_eq!(
        results["options"]["stdout"], "42\n",
        "{}",
        results["options"]
    );
    assert_eq!(results["config"]["enable_compiler_options"], true);

    // The batch: created and polled together, each with its own verdict.
    let batch: Vec<_> = results["batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["status"].clone(), r["stdout"].clone()))
        .collect();
    assert_eq!(
        batch,
        [
            (json!(3), json!("3\n")),
            (json!(4), json!("10\n")),
            (json!(3), json!("42\n"))
        ]
    );

    // Bytes that are not UTF-8 reach the SDK base64; it decodes them with backslash escapes.
    assert_eq!(
        results["binary"]["stdout"], "\\xff\\xfeA",
        "{}",
        results["binary"]
    );

    // The callback: Judge0's PUT of the finished submission, base64, to the URL given.
    let put = receiver.next(Duration::from_secs(60)).await;
    assert_eq!(
        (put.method.as_str(), put.path.as_str()),
        ("PUT", "/judge0-hook")
    );
    assert_eq!(put.body["token"], results["callback"]["token"], "{put:?}");
    assert_eq!(
        put.body["status"],
        json!({"id": 3, "description": "Accepted"})
    );
    assert_eq!(put.body["stdout"], "NDIK\n");
    assert!(put.body["time"].is_string(), "{put:?}");

    // What cannot be honoured exactly is refused in Judge0's validation shape.
    assert_eq!(results["network"]["status"], 422, "{}", results["network"]);
    assert!(results["network"]["body"]["enable_network"].is_array());

    service.process.stop(Duration::from_secs(30));
}

/// A raw HTTP call; `(status, JSON body or Null)`.
async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<(&str, String)>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method, url)
        .timeout(Duration::from_secs(180));
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("a response");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn raw_http_gets_judge0_error_shapes_fields_and_base64() {
    let receiver = Receiver::start().await;
    let service = Service::start(&receiver.addr.to_string(), None);
    let base = format!("http://{}", service.judge0);
    let token = || Some(("X-Auth-Token", TOKEN.to_owned()));
    let get = |path: String| {
        let url = format!("{base}{path}");
        async move { call(reqwest::Method::GET, &url, token(), None).await }
    };
    let post = |path: &str, body: Value| {
        let url = format!("{base}{path}");
        async move { call(reqwest::Method::POST, &url, token(), Some(body)).await }
    };

    // The client token: X-Auth-Token or Bearer; none is 401. The same API under /judge0/.
    let (status, _) = call(reqwest::Method::GET, &format!("{base}/about"), None, None).await;
    assert_eq!(status, 401);
    let bearer = Some(("Authorization", format!("Bearer {TOKEN}")));
    let (status, about) = call(
        reqwest::Method::GET,
        &format!("http://{}/judge0/about", service.api),
        bearer,
        None,
    )
    .await;
    assert_eq!((status, &about["version"]), (200, &json!("1.13.1")));
    let (status, language) = get("/languages/71".into()).await;
    assert_eq!((status, &language["source_file"]), (200, &json!("main.py")));
    let (status, _) = get("/languages/70".into()).await;
    assert_eq!(status, 404);

    // Validation errors: 422 {"field": ["message"]}.
    let c = |source: &str| json!({"source_code": source, "language_id": 50});
    let cases = [
        (
            json!({"source_code": "x"}),
            json!({"language_id": ["can't be blank"]}),
        ),
        (
            json!({"source_code": "x", "language_id": 150000}),
            json!({"language_id": ["language with id 150000 doesn't exist"]}),
        ),
        (
            json!({"source_code": "x", "language_id": 71, "cpu_time_limit": 6}),
            json!({"cpu_time_limit": ["must be less than or equal to 5"]}),
        ),
    ];
    for (body, expected) in cases {
        let (status, reply) = post("/submissions", body.clone()).await;
        assert_eq!((status, &reply), (422, &expected), "{body}");
    }
    for field in [
        ("enable_network", json!(true)),
        ("compiler_options", json!("-fplugin=/tmp/x.so")),
        ("compiler_options", json!("-o /tmp/x")),
        ("compiler_options", json!("-O2 $(id)")),
        ("command_line_arguments", json!("$HOME")),
        ("command_line_arguments", json!("a | b")),
        ("number_of_runs", json!(21)),
        ("number_of_runs", json!(0)),
        ("wall_time_limit", json!(16)),
        ("cpu_extra_time", json!(1)),
        (
            "additional_files",
            json!("UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="),
        ),
    ] {
        let mut body = c("int main(void){return 0;}");
        body[field.0] = field.1;
        let (status, reply) = post("/submissions", body).await;
        assert_eq!(status, 422, "{}: {reply}", field.0);
        assert!(reply[field.0][0].is_string(), "{}: {reply}", field.0);
    }
    let (status, reply) = post(
        "/submissions?base64_encoded=true",
        json!({"source_code": "not base64!", "language_id": 71}),
    )
    .await;
    assert_eq!(
        (status, &reply["source_code"][0]),
        (422, &json!("is not valid base64"))
    );

    // number_of_runs: run 3 times, accepted, time and memory averaged.
    let mut body = json!({"source_code": "print(int(input()) + 1)", "language_id": 71, "stdin": "41", "expected_output": "42", "number_of_runs": 3});
    body["number_of_runs"] = json!(3);
    let (status, reply) = post(
        "/submissions?wait=true&fields=status,time,memory,stdout",
        body,
    )
    .await;
    assert_eq!(
        (status, &reply["status"]["id"], &reply["stdout"]),
        (201, &json!(3), &json!("42\n")),
        "{reply}"
    );
    assert!(
        reply["time"].is_string() && reply["memory"].is_u64(),
        "{reply}"
    );

    // redirect_stderr_to_stdout: both streams in stdout, in the order written (2>&1).
    let both = "#include <stdio.h>\nint main(void){puts(\"out 1\");fflush(stdout);fputs(\"err\\n\",stderr);puts(\"out 2\");return 0;}\n";
    for (redirect, stdout, stderr) in [
        (true, json!("out 1\nerr\nout 2\n"), Value::Null),
        (false, json!("out 1\nout 2\n"), json!("err\n")),
    ] {
        let mut body = c(both);
        body["redirect_stderr_to_stdout"] = json!(redirect);
        let (status, reply) =
            post("/submissions?wait=true&fields=stdout,stderr,status", body).await;
        assert_eq!(status, 201, "{reply}");
        assert_eq!(
            (&reply["stdout"], &reply["stderr"]),
            (&stdout, &stderr),
            "{reply}"
        );
    }

    // wait=true: the result in the answer (201), default fields only, time in seconds as a
    // string. An output that is not UTF-8 without base64: Judge0's error with the token.
    let binary =
        "#include <stdio.h>\nint main(void){putchar(0xff);putchar(0xfe);putchar('A');return 0;}\n";
    let (status, reply) = post("/submissions?wait=true", c(binary)).await;
    assert_eq!(status, 201, "{reply}");
    let id = reply["token"].as_str().expect("a token").to_owned();
    let not_utf8 = json!({
        "token": id,
        "error": "some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter"
    });
    assert_eq!(reply, not_utf8);
    let (status, reply) = get(format!("/submissions/{id}")).await;
    assert_eq!((status, &reply), (400, &not_utf8));
    let (status, shown) = get(format!("/submissions/{id}?base64_encoded=true")).await;
    assert_eq!(status, 200, "{shown}");
    let mut keys: Vec<_> = shown.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "compile_output",
            "memory",
            "message",
            "status",
            "stderr",
            "stdout",
            "time",
            "token"
        ]
    );
    assert_eq!(shown["stdout"], "//5B\n");
    assert_eq!(shown["status"], json!({"id": 3, "description": "Accepted"}));
    let time = shown["time"].as_str().expect("time as a string");
    assert!(time.parse::<f64>().is_ok_and(|t| t < 5.0), "{time}");
    assert!(shown["memory"].is_u64());

    // fields: exactly those named; a name Judge0 does not know is a 400.
    let (status, some) = get(format!(
        "/submissions/{id}?fields=status_id,exit_code,language_id,wall_time"
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(some.as_object().unwrap().len(), 4, "{some}");
    assert_eq!(
        (&some["status_id"], &some["exit_code"], &some["language_id"]),
        (&json!(3), &json!(0), &json!(50))
    );
    assert!(some["wall_time"].is_string());
    let (status, reply) = get(format!("/submissions/{id}?fields=status,bogus")).await;
    assert_eq!(
        (status, &reply),
        (400, &json!({"error": "invalid fields: [bogus]"}))
    );

    // A UTF-8 answer with base64 input and wait; the text comes back plain without base64.
    let (status, reply) = post(
        "/submissions?base64_encoded=true&wait=true",
        json!({
            "source_code": "cHJpbnQoaW5wdXQoKVs6Oi0xXQ==", // print(input()[::-1] (no ")")
            "language_id": 71,
            "stdin": "YWJj",
        }),
    )
    .await;
    assert_eq!(status, 201);
    // Python compiles nothing ahead: as in Judge0, a syntax error is a non-zero exit.
    assert_eq!(reply["status"]["id"], 11, "{reply}");
    let (status, reply) = post(
        "/submissions?base64_encoded=true&wait=true",
        json!({"source_code": "cHJpbnQoaW5wdXQoKVs6Oi0xXSk=", "language_id": "71", "stdin": "YWJj"}),
    )
    .await;
    assert_eq!(
        (status, &reply["stdout"]),
        (201, &json!("Y2JhCg==\n")),
        "{reply}"
    );
    let python = reply["token"].as_str().unwrap().to_owned();
    let (_, plain) = get(format!("/submissions/{python}")).await;
    assert_eq!(plain["stdout"], "cba\n");

    // Arguments reach the program as argv, split as a shell splits words (no shell); a
    // language whose run command cannot take them refuses them. A wall-clock limit of its own.
    let (status, reply) = post(
        "/submissions?wait=true",
        json!({
            "source_code": "import sys\nprint(sys.argv[1:])",
            "language_id": 71,
            "command_line_arguments": "a 'b c' \"d\\\"e\" x=1",
        }),
    )
    .await;
    assert_eq!(
        (status, &reply["stdout"]),
        (201, &json!("['a', 'b c', 'd\"e', 'x=1']\n")),
        "{reply}"
    );
    let (status, reply) = post(
        "/submissions",
        json!({"source_code": "BEGIN { print 1 }", "language_id": 1017, "command_line_arguments": "x"}),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["command_line_arguments"][0]
            .as_str()
            .is_some_and(|m| m.contains("gawk")),
        "{reply}"
    );
    let (status, reply) = post(
        "/submissions?wait=true",
        json!({"source_code": "import time\ntime.sleep(4)", "language_id": 71, "wall_time_limit": 0.5}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(reply["status"]["id"], 5, "{reply}");
    assert_eq!(reply["message"], "Time limit exceeded (wall clock)");

    // Compiler options (GCC and Clang languages only), as argv after the compile command.
    let (status, reply) = post(
        "/submissions?wait=true&fields=status_id,stdout,compile_output",
        json!({
            "source_code": "#include <stdio.h>\nint main(void){printf(\"%d %s\\n\", ANSWER, WORD);return 0;}\n",
            "language_id": 50,
            "compiler_options": "-O0 -DANSWER=42 '-DWORD=\"a b\"' -Wall",
        }),
    )
    .await;
    assert_eq!(
        (status, &reply["stdout"]),
        (201, &json!("42 a b\n")),
        "{reply}"
    );
    let (status, reply) = post(
        "/submissions",
        json!({"source_code": "print(1)", "language_id": 71, "compiler_options": "-O2"}),
    )
    .await;
    assert_eq!(status, 422, "{reply}");
    assert!(
        reply["compiler_options"][0]
            .as_str()
            .is_some_and(|m| m.contains("python-3.11")),
        "{reply}"
    );

    // Over its memory limit: Judge0 has no memory status; the run (natively MLE) is a runtime
    // error by how it ended (an exit status or a signal).
    let (status, reply) = post(
        "/submissions?wait=true&fields=token,status,exit_signal,exit_code,message",
        json!({
            "source_code": include_str!("../fixtures/submissions/gcc-12/test_mle.c"),
            "language_id": 50,
            "memory_limit": 131072,
        }),
    )
    .await;
    assert_eq!(status, 201);
    let (_, native) = call(
        reqwest::Method::GET,
        &format!(
            "http://{}/v1.0/runs/{}",
            service.api,
            reply["token"].as_str().unwrap()
        ),
        token(),
        None,
    )
    .await;
    assert_eq!(native["verdict"], "MLE", "{native}");
    let runtime_error = match (&reply["exit_signal"], &reply["exit_code"]) {
        (Value::Null, code) => (json!(11), json!(format!("Exited with error status {code}"))),
        (signal, _) => (json!(12), json!(format!("Caught fatal signal {signal}"))),
    };
    assert_eq!(
        (reply["status"]["id"].clone(), reply["message"].clone()),
        runtime_error,
        "{reply}"
    );

    // Batch: per-item answers (a token or the item's own errors); unknown tokens read as null.
    let (status, created) = post(
        "/submissions/batch",
        json!({"submissions": [{"source_code": "print(1)", "language_id": 71}, {"source_code": "x"}]}),
    )
    .await;
    assert_eq!(status, 201);
    assert!(created[0]["token"].is_string(), "{created}");
    assert_eq!(created[1], json!({"language_id": ["can't be blank"]}));
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (status, batch) = get(format!(
        "/submissions/batch?tokens={python},{unknown}&fields=token,status_id"
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        batch,
        json!({"submissions": [{"token": python, "status_id": 3}, null]})
    );

    // Unknown token: 404; deleting: Judge0 with deletion off (which this service never allows).
    let (status, _) = get(format!("/submissions/{unknown}")).await;
    assert_eq!(status, 404);
    let (status, reply) = call(
        reqwest::Method::DELETE,
        &format!("{base}/submissions/{python}"),
        token(),
        None,
    )
    .await;
    assert_eq!(
        (status, &reply),
        (400, &json!({"error": "delete not allowed"}))
    );

    service.process.stop(Duration::from_secs(30));
}
