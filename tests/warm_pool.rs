//! The warm pool of sandbox containers (issue #19, item 3) against real Docker: a take is served
//! by a container started before it, the pool refills, a pooled container that died is
//! discarded for a fresh one, closing the pool leaves nothing behind, a submission judged in a
//! pooled container gets the messages it gets without a pool, and a worker started with
//! `--warm-pool` judges and leaves nothing when stopped.
//!
//! The metrics are the process's, shared by the tests of this file that run at once: each test
//! that reads them uses an image no other test here keeps warm.

mod boxes;
mod judging;

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use boxes::{compiled, demoter};
use demoter::protocol::{Exit, Limits};
use executioner::language::Registry;
use executioner::protocol::{Body, Message};
use executioner::sandbox::{Container, Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};
use tokio::sync::mpsc as tokio_mpsc;
use tokio_util::sync::CancellationToken;

fn image(language: &str) -> String {
    Registry::builtin()
        .unwrap()
        .resolve(language)
        .unwrap_or_else(|| panic!("{language} is not in the registry"))
        .image
        .clone()
}

/// A sandbox keeping `size` containers of `image` warm.
async fn pooled_sandbox(image: &str, size: usize) -> Sandbox {
    let mut config = SandboxConfig::new(demoter());
    config.warm_pool = size;
    config.warm_images = vec![image.to_owned()];
    Sandbox::connect(config)
        .await
        .expect("Docker engine and cgroups (run scripts/docker-up)")
}

/// Runs `body` with `sandbox`, then closes its pool even when `body` panicked (an assertion
/// failed), so a failing test leaves no pooled container behind; then fails as `body` did.
async fn with_pool<F, Fut>(sandbox: Sandbox, body: F)
where
    F: FnOnce(Sandbox) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(body(sandbox.clone())).await;
    sandbox.close_pool().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn docker() -> bollard::Docker {
    bollard::Docker::connect_with_local_defaults().unwrap()
}

/// The value of the sample of `metric` whose labels include every one of `labels`.
fn metric(metric: &str, labels: &[(&str, &str)]) -> f64 {
    let text = executioner::metrics::global().encode();
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

fn takes(image: &str, result: &str) -> f64 {
    metric(
        "executioner_warm_pool_takes_total",
        &[("image", image), ("result", result)],
    )
}

fn discarded(image: &str) -> f64 {
    metric("executioner_warm_pool_discarded_total", &[("image", image)])
}

/// The box cgroup dirs of the container `name` that exist (v1: one per controller; v2: one).
fn cgroups_of(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let root = Path::new("/sys/fs/cgroup");
    let v2 = root.join("executioner").join(name);
    if v2.exists() {
        found.push(v2);
    }
    for controller in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let dir = controller.path().join("executioner").join(name);
        if dir.exists() {
            found.push(dir);
        }
    }
    found
}

/// What a container of `name` (id `id`, io dir `io`) left: the container, cgroups, io dir.
async fn left_by(id: &str, name: &str, io: &Path) -> Vec<String> {
    let mut left = Vec::new();
    if docker().inspect_container(id, None).await.is_ok() {
        left.push(format!("container {name}"));
    }
    left.extend(
        cgroups_of(name)
            .into_iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    if io.exists() {
        left.push(format!("io dir {}", io.display()));
    }
    left
}

fn io_listing(container: &Container) -> BTreeSet<String> {
    std::fs::read_dir(container.io_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

const SUM: &str = r#"#include <stdio.h>
int main(void){long long a,b;if(scanf("%lld %lld",&a,&b)!=2)return 3;printf("%lld\n",a+b);return 0;}"#;

/// Runs the compiled sum program: the container works.
async fn sums(container: &mut Container) {
    let out = container
        .run(Run {
            argv: vec![format!("{BUILD_DIR}/main")],
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Bytes(b"2 40\n")),
            limits: Limits {
                cpu_ms: 1000,
                wall_ms: 2000,
                memory_kb: 65536,
                pids: 16,
                output_bytes: 1 << 20,
                stderr_bytes: 4096,
                idle_ms: None,
            },
            io: None,
            stderr_to_stdout: false,
        })
        .await
        .expect("the run is a result");
    assert_eq!(out.result.exit, Exit::Exited { code: 0 });
    assert_eq!(std::fs::read(&out.stdout).unwrap(), b"42\n");
}

#[tokio::test]
async fn a_take_is_served_by_a_container_started_before_it_and_the_pool_refills() {
    let image = image("gcc-12");
    with_pool(pooled_sandbox(&image, 1).await, |sandbox| async move {
        sandbox.prewarm();
        sandbox.pool_settled().await;
        let before = sandbox.warm_containers(&image);
        assert_eq!(before.len(), 1, "the pool was not filled");
        let hits = takes(&image, "hit");

        // `compiled` opens a gcc-12 container as the judge does.
        let mut taken = compiled(&sandbox, SUM).await;
        assert_eq!(
            taken.id(),
            before[0].id,
            "the take did not come from the pool"
        );
        assert_eq!(takes(&image, "hit"), hits + 1.0);
        sums(&mut taken).await;

        // A replacement is started in the background: the pool is full again, with another one.
        sandbox.pool_settled().await;
        let after = sandbox.warm_containers(&image);
        assert_eq!(after.len(), 1, "the pool did not refill");
        assert_ne!(after[0].id, before[0].id);

        // A pooled container is a fresh one: its own uid and io dir holding only its identity,
        // as a container started on the spot has.
        let fresh = sandbox
            .open_with(&image, &Default::default())
            .await
            .expect("a fresh container");
        let mut second = sandbox.open(&image).await.expect("the refilled container");
        assert_eq!(second.id(), after[0].id);
        assert_eq!(io_listing(&second), io_listing(&fresh));
        assert_eq!(
            io_listing(&second),
            BTreeSet::from(["group".to_owned(), "passwd".to_owned()])
        );
        second.put_source("main.c", SUM.as_bytes()).await.unwrap();

        for container in [taken, fresh, second] {
            container.close().await;
        }
        let last = sandbox.warm_containers(&image);
        sandbox.close_pool().await;
        for c in before.iter().chain(&after).chain(&last) {
            let left = left_by(&c.id, &c.name, &c.io_dir).await;
            assert!(left.is_empty(), "left behind: {left:?}");
        }
        // Closed: no more takes from the pool, no more starts.
        let closed = sandbox.open(&image).await.expect("a fresh container");
        assert!(sandbox.warm_containers(&image).is_empty());
        closed.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_killed_pooled_container_is_discarded_for_a_fresh_one() {
    let image = image("g++-12");
    with_pool(pooled_sandbox(&image, 1).await, |sandbox| async move {
        sandbox.prewarm();
        sandbox.pool_settled().await;
        let pooled = sandbox.warm_containers(&image);
        assert_eq!(pooled.len(), 1, "the pool was not filled");
        let killed = &pooled[0];
        docker()
            .kill_container(
                &killed.id,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .expect("docker kill");
        let (unhealthy, misses, thrown) = (
            takes(&image, "unhealthy"),
            takes(&image, "miss"),
            discarded(&image),
        );

        let started = Instant::now();
        let mut taken = sandbox.open(&image).await.expect("a container");
        assert_ne!(taken.id(), killed.id, "the dead container was handed out");
        assert_eq!(takes(&image, "unhealthy"), unhealthy + 1.0);
        assert_eq!(takes(&image, "miss"), misses + 1.0);
        assert_eq!(discarded(&image), thrown + 1.0);
        assert!(
            started.elapsed() < executioner::sandbox::HEALTH_TIMEOUT + Duration::from_secs(30),
            "the health check held the take"
        );
        // The handed-out container works.
        taken.put_source("main.c", SUM.as_bytes()).await.unwrap();
        taken.close().await;

        let refilled = {
            sandbox.pool_settled().await;
            sandbox.warm_containers(&image)
        };
        sandbox.close_pool().await;
        for c in pooled.iter().chain(&refilled) {
            let left = left_by(&c.id, &c.name, &c.io_dir).await;
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn closing_the_pool_leaves_no_container_cgroup_or_io_dir() {
    let image = image("gcc-12");
    with_pool(pooled_sandbox(&image, 2).await, |sandbox| async move {
        sandbox.prewarm();
        sandbox.pool_settled().await;
        let pooled = sandbox.warm_containers(&image);
        assert_eq!(pooled.len(), 2, "the pool was not filled");
        for c in &pooled {
            assert!(
                !cgroups_of(&c.name).is_empty() && c.io_dir.exists(),
                "{c:?} has no cgroup or io dir"
            );
        }
        // A take starts a refill: closing while it runs closes the refill's container too
        // (scripts/test checks that no container of a finished process is left).
        let taken = sandbox.open(&image).await.expect("a container");
        sandbox.close_pool().await;
        assert!(sandbox.warm_containers(&image).is_empty());
        taken.close().await;
        for c in &pooled {
            let left = left_by(&c.id, &c.name, &c.io_dir).await;
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    })
    .await;
}

async fn judged(judge: &executioner::judge::Judge, language: &str, kind: &str) -> Vec<Body> {
    let submission = judging::submission(&format!("warm-{kind}"), language, kind);
    let (tx, mut rx) = tokio_mpsc::channel::<Message>(16);
    let collect = async {
        let mut bodies = Vec::new();
        while let Some(message) = rx.recv().await {
            bodies.push(message.body);
        }
        bodies
    };
    let never = CancellationToken::new();
    let (end, bodies) = tokio::join!(judge.judge(&submission, tx, &never), collect);
    end.expect("the receiver stayed");
    judging::untimed(&bodies)
}

#[tokio::test]
async fn a_submission_judged_in_a_pooled_container_gets_the_same_messages() {
    let language = "python-3.11";
    let image = image(language);
    let plain = judging::judge().await;
    let mut setup = judging::setup();
    setup.pool = executioner::setup::WarmPool {
        size: 1,
        languages: vec![language.to_owned()],
    };
    let warm = executioner::setup::build_judge(&setup)
        .await
        .expect("a judge with a warm pool");
    let sandbox = warm.sandbox().clone();
    with_pool(sandbox, |_| async move {
        warm.sandbox().prewarm();
        for kind in ["accepted", "wrong", "tle"] {
            warm.sandbox().pool_settled().await;
            let pooled = warm.sandbox().warm_containers(&image);
            assert_eq!(pooled.len(), 1, "the pool was not filled");
            let hits = takes(&image, "hit");
            let with_pool = judged(&warm, language, kind).await;
            assert_eq!(takes(&image, "hit"), hits + 1.0, "{kind}: not judged warm");
            let without = judged(&plain, language, kind).await;
            assert!(
                matches!(with_pool.last(), Some(Body::Done { .. })),
                "{with_pool:?}"
            );
            assert_eq!(with_pool, without, "{kind}");
            let left = left_by(&pooled[0].id, &pooled[0].name, &pooled[0].io_dir).await;
            assert!(left.is_empty(), "the judged container left {left:?}");
        }
        let last = warm.sandbox().warm_containers(&image);
        warm.sandbox().close_pool().await;
        for c in &last {
            let left = left_by(&c.id, &c.name, &c.io_dir).await;
            assert!(left.is_empty(), "left behind: {left:?}");
        }
    })
    .await;
}

/// A container of process `pid`: its id, name and host io dir.
async fn containers_with_io(pid: u32) -> Vec<(String, String, PathBuf)> {
    judging::owned_containers(pid)
        .await
        .into_iter()
        .map(|c| {
            let io = c
                .mounts
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.destination.as_deref() == Some("/judge/io"))
                .and_then(|m| m.source)
                .map(PathBuf::from)
                .unwrap_or_default();
            let name = c
                .names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default();
            (c.id.unwrap_or_default(), name, io)
        })
        .collect()
}

/// Kills the worker if the test ends early (SIGTERM first, so it cleans up).
struct Worker(Option<std::process::Child>);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let until = Instant::now() + Duration::from_secs(30);
            while Instant::now() < until && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn a_worker_with_a_warm_pool_judges_and_leaves_nothing_when_stopped() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_executioner"))
        .args(["worker", "--interface", "memory", "--concurrency", "1"])
        .args(["--warm-pool", "1", "--warm-languages", "gcc-12"])
        .arg("--problems")
        .arg(judging::problems())
        .env("RUST_LOG", "info,executioner::sandbox::pool=debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("start the worker");
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut worker = Worker(Some(child));
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    // The pool is filled at the start, before any submission.
    let until = Instant::now() + Duration::from_secs(60);
    while !log_text().contains("a warm container is ready") {
        assert!(Instant::now() < until, "no warm container:\n{}", log_text());
        assert!(
            worker.0.as_mut().unwrap().try_wait().unwrap().is_none(),
            "the worker exited:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = containers_with_io(pid).await;
    assert_eq!(seen.len(), 1, "{seen:?}");

    let submission = serde_json::json!({
        "id": "warm-worker",
        "problem": "test-base",
        "language": "gcc-12",
        "sourceCode": judging::program("gcc-12", "accepted"),
    });
    writeln!(stdin, "{submission}").unwrap();
    stdin.flush().unwrap();
    let mut states = Vec::new();
    let done = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("no end of judging:\n{}", log_text()));
        let message: serde_json::Value = serde_json::from_str(&line).unwrap();
        let state = message["state"].as_str().unwrap_or_default().to_owned();
        states.push(state.clone());
        if matches!(state.as_str(), "done" | "error" | "invalid") {
            break message;
        }
    };
    assert_eq!(done["state"], "done", "{states:?}\n{}", log_text());
    assert_eq!(done["score"], 1.0, "{done}");
    assert!(
        log_text().contains("took a warm container"),
        "not judged in a warm container:\n{}",
        log_text()
    );
    seen.extend(containers_with_io(pid).await);

    let mut child = worker.0.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > until {
            worker.0 = Some(child);
            panic!("the worker did not stop:\n{}", log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}\n{}", log_text());
    assert_eq!(judging::containers_of(pid).await, 0, "{}", log_text());
    for (id, name, io) in &seen {
        let left = left_by(id, name, io).await;
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
