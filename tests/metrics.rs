//! Prometheus metrics end to end: a real `executioner serve` process (memory store, no local
//! worker) and a real remote worker (`worker --interface http --metrics-listen`) judging in
//! Docker, both scraped by a real Prometheus (Debian's `prometheus`, installed by
//! `scripts/test`), then asked in PromQL what they did. Needs the sandbox (Docker, the images,
//! `EXECUTIONER_DEMOTER`).

mod client;
mod worker_process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use worker_process::WorkerProcess;

/// Longest wait for a process to start, a submission to be judged, Prometheus to see a value.
const STARTUP: Duration = Duration::from_secs(60);
const JUDGING: Duration = Duration::from_secs(120);
const SCRAPED: Duration = Duration::from_secs(60);

const TOKEN: &str = "test-worker-token";

fn fixture(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/submissions")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A GET whose body is returned as text (with its status).
async fn get_text(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    tokio::time::timeout(STARTUP, stream.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (
        status.expect("a status"),
        head.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// A real Prometheus scraping `targets` every second, killed (by PID) and its data removed when
/// dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[SocketAddr]) -> Prometheus {
        let binary =
            std::env::var("EXECUTIONER_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::tempdir().expect("a temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: executioner\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write the config");
        // Prometheus takes no port 0: a port free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {binary} (Debian's prometheus; scripts/test installs it): {e}")
            });
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Waits until Prometheus answers `/-/ready`.
    async fn ready(&mut self) {
        let until = Instant::now() + STARTUP;
        loop {
            if let Ok(mut stream) = TcpStream::connect(self.addr).await {
                let request = "GET /-/ready HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n";
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).await.is_ok()
                    && stream.read_to_string(&mut response).await.is_ok()
                    && response.starts_with("HTTP/1.1 200")
                {
                    return;
                }
            }
            let exited = self.child.try_wait().expect("wait for prometheus");
            assert!(
                exited.is_none() && Instant::now() < until,
                "prometheus did not become ready (exit: {exited:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of an instant PromQL query returning one sample; `None` while it returns none.
    async fn value(&self, query: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", client::encode(query));
        let reply = client::request(self.addr, "GET", &path, None).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        let result = reply.body["data"]["result"].as_array()?.first()?.clone();
        result["value"][1].as_str()?.parse().ok()
    }

    /// Polls `query` (scrapes come every second) until it gives `expected`.
    async fn until(&self, query: &str, expected: f64) {
        let until = Instant::now() + SCRAPED;
        let mut last = None;
        while Instant::now() < until {
            last = self.value(query).await;
            if last == Some(expected) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Prometheus answered {last:?} to {query}, not {expected}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn submit(addr: SocketAddr, language: &str, source: &str) -> String {
    let body = json!({"problem": "test-base", "language": language, "sourceCode": source});
    let reply = client::request(addr, "POST", "/v1.0/submissions", Some(&body)).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.body["id"].as_str().expect("an id").to_owned()
}

/// Polls the operation of `id` until it succeeded.
async fn until_succeeded(addr: SocketAddr, id: &str, worker: &WorkerProcess) -> Value {
    let until = Instant::now() + JUDGING;
    loop {
        let op = client::request(addr, "GET", &format!("/v1.0/operations/{id}"), None)
            .await
            .body;
        if op["status"] == "succeeded" {
            return op;
        }
        assert!(
            Instant::now() < until && op["status"] != "failed",
            "{id} did not succeed: {op}\n{}",
            worker.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_prometheus_counts_what_serve_and_a_worker_judged() {
    let mut service = WorkerProcess::spawn(
        &[
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--concurrency",
            "0",
            "--heartbeat-seconds",
            "1",
        ],
        &[("EXECUTIONER_WORKER_TOKEN", TOKEN)],
    );
    let api = service.logged_address("serving the HTTP API", STARTUP);
    let mut worker = WorkerProcess::spawn(
        &[
            "--log-format",
            "json",
            "worker",
            "--interface",
            "http",
            "--url",
            &format!("http://{api}"),
            "--worker-name",
            "metered",
            "--worker-token",
            TOKEN,
            "--concurrency",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let exporter = worker.logged_address("serving metrics", STARTUP);

    // Both answer a scrape in the OpenMetrics format, the worker's exporter on its own.
    for addr in [api, exporter] {
        let (status, head, text) = get_text(addr, "/metrics").await;
        assert_eq!(status, 200, "{text}");
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(
            text.contains("# TYPE executioner_in_flight_submissions gauge"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    let judged = [
        submit(api, "python", &fixture("python-3.11/test_accepted.py")).await,
        submit(api, "python", &fixture("python-3.11/test_wrong.py")).await,
        submit(api, "c", &fixture("clang-16/compile_error.c")).await,
    ];
    for id in &judged {
        until_succeeded(api, id, &worker).await;
    }

    let mut prometheus = Prometheus::start(&[api, exporter]);
    prometheus.ready().await;
    prometheus.until(r#"sum(up{job="executioner"})"#, 2.0).await;
    // The count of judged submissions, as an operator would ask for it.
    prometheus
        .until(
            r#"sum(executioner_submissions_total{outcome="judged"})"#,
            2.0,
        )
        .await;
    prometheus
        .until(
            r#"sum(executioner_submissions_total{outcome="compile_error"})"#,
            1.0,
        )
        .await;
    // test-base has 3 tests: 3 accepted from the first, 3 wrong from the second.
    prometheus
        .until(
            r#"sum(executioner_tests_total{language="python-3.11",verdict="accepted"})"#,
            3.0,
        )
        .await;
    prometheus
        .until(
            r#"sum(executioner_tests_total{language="python-3.11",verdict="wrong"})"#,
            3.0,
        )
        .await;
    prometheus
        .until(r#"sum(executioner_judging_seconds_count)"#, 3.0)
        .await;
    prometheus
        .until(
            r#"sum(executioner_compile_seconds_count{language="gcc-12"})"#,
            1.0,
        )
        .await;
    prometheus
        .until(
            r#"sum(executioner_container_start_seconds_count) >= bool 3"#,
            1.0,
        )
        .await;
    prometheus
        .until(r#"executioner_in_flight_submissions"#, 0.0)
        .await;
    // Seen by serve: the remote worker, and an empty queue.
    prometheus
        .until(r#"executioner_workers{status="active"}"#, 1.0)
        .await;
    prometheus
        .until(r#"executioner_queue_depth{store="memory"}"#, 0.0)
        .await;

    // Without a worker a submission waits: the queue and its age show it.
    let status = worker.stop(STARTUP);
    assert!(status.success(), "the worker stopped with {status}");
    submit(api, "python", &fixture("python-3.11/test_accepted.py")).await;
    prometheus
        .until(r#"executioner_queue_depth{store="memory"}"#, 1.0)
        .await;
    prometheus
        .until(
            r#"executioner_oldest_queued_seconds{store="memory"} > bool 0"#,
            1.0,
        )
        .await;
    prometheus
        .until(r#"executioner_workers{status="active"}"#, 0.0)
        .await;
    drop(prometheus);
    service.stop(STARTUP);
}
