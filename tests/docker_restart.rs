//! The Docker engine restarted under a running worker (issue #15, item 10): the submission in
//! flight ends as `error` with the reason, the worker stays up, judges the next submission once
//! the engine is back, and the container it could not remove while the engine was away is
//! removed then. It stops and starts the machine's `dockerd` (through `scripts/docker-up`), so
//! it is ignored by default and `scripts/test` runs it on its own after the rest:
//!
//! ```text
//! cargo test --test docker_restart -- --ignored
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bollard::query_parameters::ListContainersOptions;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

mod judging;

/// The worker process, SIGKILLed if the test ends first.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The next message about `id`, within `deadline`.
fn next_of(printed: &mpsc::Receiver<Value>, id: &str, deadline: Duration, log: &Path) -> Value {
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match printed.recv_timeout(left) {
            Ok(message) if message["id"] == id => return message,
            Ok(_) => continue,
            Err(_) => panic!(
                "no message about {id} within {deadline:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
        }
    }
}

/// Stops the engine this machine runs (by the pid it wrote) and starts it again.
fn restart_engine() {
    let pid: i32 = std::fs::read_to_string("/var/run/docker.pid")
        .expect("dockerd's pid file")
        .trim()
        .parse()
        .expect("a pid");
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("stop dockerd");
    let until = Instant::now() + Duration::from_secs(60);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < until, "dockerd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    let up = Command::new(judging::repo().join("scripts/docker-up"))
        .status()
        .expect("run scripts/docker-up");
    assert!(up.success(), "scripts/docker-up failed");
}

async fn containers_of(pid: u32) -> usize {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let filters = HashMap::from([("label".to_owned(), vec!["executioner.owner".to_owned()])]);
    let all = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .unwrap();
    all.iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("executioner.owner"))
                .is_some_and(|o| o.ends_with(&format!(":{pid}")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts dockerd: scripts/test runs it alone, after the rest"]
async fn a_worker_rides_out_an_engine_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let child = Command::new(env!("CARGO_BIN_EXE_executioner"))
        .args(["worker", "--interface", "memory", "--concurrency", "1"])
        .arg("--problems")
        .arg(judging::problems())
        .env("RUST_LOG", "info")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start executioner worker");
    let mut worker = Worker(child);
    let mut stdin = worker.0.stdin.take().unwrap();
    let stdout = worker.0.stdout.take().unwrap();
    let (lines, printed) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str(&line) {
                if lines.send(value).is_err() {
                    break;
                }
            }
        }
    });
    let mut submit = |id: &str, source: &str| {
        let submission = executioner::protocol::Submission {
            id: id.into(),
            problem: "test-base".into(),
            language: "python-3.11".into(),
            source_code: source.into(),
        };
        writeln!(stdin, "{}", serde_json::to_string(&submission).unwrap()).unwrap();
        stdin.flush().unwrap();
    };

    // In flight when the engine goes: a program that sleeps through its first test.
    submit(
        "in-flight",
        "import time\ntime.sleep(0.8)\na, b = map(int, input().split())\nprint(a + b)\n",
    );
    let minute = Duration::from_secs(60);
    loop {
        let message = tokio::task::block_in_place(|| next_of(&printed, "in-flight", minute, &log));
        if message["state"] == "testing" {
            break;
        }
    }
    tokio::task::block_in_place(restart_engine);
    let end = loop {
        let message = tokio::task::block_in_place(|| next_of(&printed, "in-flight", minute, &log));
        let state = message["state"].as_str().unwrap_or_default().to_owned();
        if matches!(state.as_str(), "done" | "error" | "invalid") {
            break message;
        }
    };
    assert_eq!(end["state"], "error", "{end}");
    assert!(
        end["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("sandbox"),
        "the reason says what failed: {end}"
    );
    assert!(worker.0.try_wait().unwrap().is_none(), "the worker died");

    // The engine is back: the next submission is judged, and what the restart left is gone.
    submit("after", "a, b = map(int, input().split())\nprint(a + b)\n");
    let done = loop {
        let message = tokio::task::block_in_place(|| next_of(&printed, "after", minute, &log));
        if message["state"] == "done" {
            break message;
        }
        assert_ne!(message["state"], "error", "{message}");
    };
    assert_eq!(done["score"], 1.0, "{done}");
    let pid = worker.0.id();
    let until = Instant::now() + Duration::from_secs(20);
    while containers_of(pid).await > 0 {
        assert!(
            Instant::now() < until,
            "the worker's containers are still there:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::block_in_place(|| worker.0.wait()).unwrap();
    assert!(status.success(), "worker exit: {status:?}");
}
