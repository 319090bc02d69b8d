//! The workflows end to end, against the real judge (Docker, the demoter, the language images):
//! a rejudge of 20 submissions, the validation of a fixture problem (and of a mislabelled copy,
//! through the command line), a retry after an injected infrastructure failure, and pause,
//! resume and skip on a running rejudge.
//!
//! The judge is built as `executioner judge` builds it (`setup::build_judge`), with the demoter
//! of `EXECUTIONER_DEMOTER` (and the registry of `EXECUTIONER_LANGUAGES`, if set). Nothing here sleeps: tests wait for the state they need, or for the
//! workflow's end state, with a deadline.

mod judging;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use judging::{judge, problems, repo, setup, submission};

use executioner::setup::load_registry;

use executioner::judge::{Judge, Messages, Unheard};
use executioner::protocol::{Body, Message, Submission};
use executioner::store::memory::MemoryResultStore;
use executioner::workflow::judging::End;
use executioner::workflow::rejudge::{self, Progress};
use executioner::workflow::validate::{self, Expected};
use executioner::workflow::webhook::Webhook;
use executioner::workflow::{
    retry, Action, EndState, Event, RetryPolicy, Selector, StepState, SubmissionJudge, Workflow,
};

/// For a whole workflow: compiling and running a few programs per core, TLEs included.
const DEADLINE: Duration = Duration::from_secs(900);

fn concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

async fn run_to_end(wf: &Workflow) -> EndState {
    tokio::time::timeout(DEADLINE, wf.run(&CancellationToken::new()))
        .await
        .unwrap_or_else(|_| panic!("no end state in time: {}", wf.end_state()))
}

async fn until(wf: &Workflow, what: &str, done: impl Fn(&Workflow) -> bool) {
    if tokio::time::timeout(DEADLINE, wf.wait_until(done))
        .await
        .is_err()
    {
        panic!("timed out waiting for {what}: {}", wf.end_state());
    }
}

fn last_body(results: &MemoryResultStore, id: &str) -> Option<Body> {
    results
        .messages_of(id)
        .and_then(|m| m.last().map(|m| m.body.clone()))
}

fn score_of(results: &MemoryResultStore, id: &str) -> Option<f64> {
    match last_body(results, id) {
        Some(Body::Done { score, .. }) => score,
        other => panic!("{id} did not end with done: {other:?}"),
    }
}

fn quick_options(max_running: usize) -> rejudge::Options {
    rejudge::Options {
        retry: RetryPolicy::attempts(2)
            .with_backoff(Duration::from_millis(200), Duration::from_secs(1)),
        max_running,
        ..rejudge::Options::default()
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejudge_of_20_submissions_replaces_their_results() {
    let languages = ["gcc-12", "g++-12", "python-3.11"];
    let kinds = ["accepted", "wrong"];
    let submissions: Vec<Submission> = (0..20)
        .map(|i| {
            let (language, kind) = (languages[i % 3], kinds[(i / 3) % 2]);
            submission(&format!("r{i:02}-{kind}"), language, kind)
        })
        .collect();
    // Old results, all wrong: each must be replaced.
    let results = Arc::new(MemoryResultStore::new());
    for s in &submissions {
        let stale = Message::new(&s.id, Body::Error { reason: None });
        executioner::store::ResultStore::replace(&*results, &s.id, &[stale])
            .await
            .unwrap();
    }
    let wf = rejudge::workflow(
        "rejudge-e2e",
        &submissions,
        judge().await,
        results.clone(),
        &quick_options(concurrency()),
    )
    .unwrap();
    let mut events = wf.subscribe();
    wf.start(&Selector::all(), false).unwrap();
    let end = run_to_end(&wf).await;
    assert!(end.is_complete(), "{end}");
    assert_eq!(
        Progress::of(&wf),
        Progress {
            total: 20,
            judged: 20,
            ..Progress::default()
        }
    );
    // Progress was visible while it ran: every judge step reported its messages.
    let mut progressed = std::collections::BTreeSet::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Progress { step, .. } = event {
            progressed.insert(step);
        }
    }
    assert_eq!(progressed.len(), 20, "{progressed:?}");
    for s in &submissions {
        let want = if s.id.ends_with("accepted") { 1.0 } else { 0.0 };
        assert_eq!(score_of(&results, &s.id), Some(want), "{}", s.id);
        let first = &results.messages_of(&s.id).unwrap()[0];
        assert_eq!(first.body, Body::Executing);
    }
    let summary = rejudge::summary_of(&wf).unwrap();
    assert_eq!(summary.count(End::Done), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fixture_problem_validates_with_no_mismatch() {
    let registry = load_registry(setup().languages.as_deref()).unwrap();
    let dir = repo().join("fixtures/solutions/test-base");
    let solutions = validate::discover(&dir, &registry).unwrap();
    let expected: BTreeMap<Expected, usize> = solutions.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.expected).or_default() += 1;
        m
    });
    assert!(
        [
            Expected::Accepted,
            Expected::WrongAnswer,
            Expected::TimeLimitExceeded,
            Expected::RunTimeError
        ]
        .iter()
        .all(|e| expected.contains_key(e)),
        "{expected:?}"
    );
    let options = validate::Options {
        retry: RetryPolicy::attempts(2),
        max_running: concurrency(),
        ..validate::Options::default()
    };
    let wf = validate::workflow("test-base", 3000, &solutions, judge().await, &options).unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let end = run_to_end(&wf).await;
    assert!(end.is_complete(), "{end}");
    let report = validate::report_of(&wf).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.solutions.len(), solutions.len());
    let slowest = report.slowest_accepted.clone().expect("accepted solutions");
    assert_eq!(slowest.limit, 3000);
    assert!(slowest.solution.starts_with("accepted/"), "{report}");
    let text = report.to_string();
    assert!(
        text.contains("every solution got its expected outcome"),
        "{text}"
    );
    assert!(text.contains("slowest accepted"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_score_validates_as_partially_accepted() {
    let registry = load_registry(setup().languages.as_deref()).unwrap();
    let dir = repo().join("fixtures/solutions/test-subtasks-mixed");
    let solutions = validate::discover(&dir, &registry).unwrap();
    let options = validate::Options {
        retry: RetryPolicy::attempts(2),
        max_running: concurrency(),
        ..validate::Options::default()
    };
    let wf = validate::workflow(
        "test-subtasks-mixed",
        1000,
        &solutions,
        judge().await,
        &options,
    )
    .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    run_to_end(&wf).await;
    let report = validate::report_of(&wf).unwrap();
    assert!(report.passed(), "{report}");
}

/// Copies `fixtures/solutions/test-base` without the slow ones, with `accepted/sum.py` also
/// filed (wrongly) under `wrong_answer`.
fn mislabelled_copy(into: &Path) {
    let from = repo().join("fixtures/solutions/test-base");
    for (source, target) in [
        ("accepted/sum.py", "accepted/sum.py"),
        ("accepted/sum.py", "wrong_answer/mislabelled.py"),
        ("wrong_answer/plus_one.py", "wrong_answer/plus_one.py"),
        ("run_time_error/exit_1.py", "run_time_error/exit_1.py"),
    ] {
        let target = into.join(target);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(source), target).unwrap();
    }
}

#[test]
fn the_command_line_reports_a_mislabelled_solution_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    mislabelled_copy(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_executioner"))
        .args(["workflow", "validate", "--problem", "test-base"])
        .arg("--problems")
        .arg(problems())
        .arg("--solutions")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let mismatches: Vec<_> = stdout.lines().filter(|l| l.contains("MISMATCH")).collect();
    assert_eq!(mismatches.len(), 1, "{stdout}\n{stderr}");
    assert!(
        mismatches[0].contains("wrong_answer/mislabelled.py")
            && mismatches[0].contains("expected wrong_answer, got accepted"),
        "{stdout}"
    );
    assert!(stdout.contains("1 of 4 solutions did not"), "{stdout}");

    // Filed correctly, the same solutions pass: exit 0.
    std::fs::remove_file(dir.path().join("wrong_answer/mislabelled.py")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_executioner"))
        .args(["workflow", "validate", "--problem", "test-base"])
        .arg("--problems")
        .arg(problems())
        .arg("--solutions")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

// ---------------------------------------------------------------------------------------------

/// The real judge, whose first attempt hits an infrastructure failure: it is handed an already
/// cancelled token, as when a worker shuts down mid-judging, so the real pipeline ends it with
/// `error` (after opening a real container).
struct FailsFirstAttempt {
    judge: Arc<Judge>,
    attempts: AtomicU32,
}

#[async_trait]
impl SubmissionJudge for FailsFirstAttempt {
    async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            let broken = CancellationToken::new();
            broken.cancel();
            return self.judge.judge(submission, out, &broken).await;
        }
        self.judge.judge(submission, out, cancel).await
    }
}

/// A loopback webhook that answers 200 and hands over each JSON body.
async fn webhook() -> (Webhook, mpsc::UnboundedReceiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            let body = loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    break None;
                }
                data.extend_from_slice(&buf[..n]);
                let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if data.len() >= end + 4 + length {
                    break serde_json::from_slice(&data[end + 4..end + 4 + length]).ok();
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            if let Some(body) = body {
                let _ = tx.send(body);
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/results");
    (Webhook::parse(&url).unwrap(), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_infrastructure_failure_is_retried_and_the_owner_told() {
    let judge = Arc::new(FailsFirstAttempt {
        judge: judge().await,
        attempts: AtomicU32::new(0),
    });
    let results = Arc::new(MemoryResultStore::new());
    let (hook, mut told) = webhook().await;
    let policy =
        RetryPolicy::attempts(3).with_backoff(Duration::from_millis(100), Duration::from_secs(1));
    let wf = retry::workflow(
        submission("retried", "gcc-12", "accepted"),
        judge.clone(),
        Some(results.clone()),
        policy,
        hook,
        policy,
    )
    .unwrap();
    let mut events = wf.subscribe();
    wf.start(&Selector::all(), false).unwrap();
    let end = run_to_end(&wf).await;
    assert!(end.is_complete(), "{end}");

    let mut path = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let Event::Transition {
            step, action, to, ..
        } = event
        {
            if step == retry::JUDGE {
                path.push((action, to));
            }
        }
    }
    use Action::*;
    use StepState::*;
    assert_eq!(
        path,
        [
            (Start, Waiting),
            (Run, Running),
            (Retry, Ready),
            (Start, Waiting),
            (Run, Running),
            (Succeed, Succeeded)
        ]
    );
    assert_eq!(judge.attempts.load(Ordering::SeqCst), 2);
    // Only the successful attempt's messages are stored.
    assert_eq!(score_of(&results, "retried"), Some(1.0));
    let body = tokio::time::timeout(DEADLINE, told.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body["step"], "judge");
    assert_eq!(body["state"], "succeeded");
    assert_eq!(body["attempts"], 2);
    assert_eq!(body["result"]["end"], "done");
    assert_eq!(body["result"]["score"], 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_resume_and_skip_on_a_running_rejudge() {
    // One at a time, so that while the first runs every other one is still waiting; the first
    // burns its CPU time limit on each test, which leaves time for the control calls.
    let mut submissions = vec![submission("first", "python-3.11", "tle")];
    submissions.extend((0..3).map(|i| submission(&format!("held-{i}"), "gcc-12", "accepted")));
    submissions.extend((0..2).map(|i| submission(&format!("skipped-{i}"), "g++-12", "accepted")));
    submissions.extend((0..2).map(|i| submission(&format!("free-{i}"), "python-3.11", "wrong")));
    let results = Arc::new(MemoryResultStore::new());
    let wf = rejudge::workflow(
        "rejudge-controlled",
        &submissions,
        judge().await,
        results.clone(),
        &quick_options(1),
    )
    .unwrap();
    wf.start(&Selector::all(), false).unwrap();
    let runner = tokio::spawn({
        let wf = wf.clone();
        async move { wf.run(&CancellationToken::new()).await }
    });
    let first = rejudge::step_id("first");
    until(&wf, "the first judging", |wf| {
        wf.status(&Selector::id(&first), &[])[0].state == StepState::Running
    })
    .await;

    let c = Selector::tag("kind", "judge").and("language", "gcc-12");
    let dry = wf.pause(&c, true).unwrap();
    assert_eq!(dry.steps().len(), 3);
    let paused = wf.pause(&c, false).unwrap();
    assert_eq!(paused.steps().len(), 3, "{paused:?}");
    let skipped = wf
        .skip(&Selector::tag("language", "g++-12"), false)
        .unwrap();
    assert_eq!(skipped.steps().len(), 2, "{skipped:?}");
    // The running one can be neither paused nor skipped.
    let refused = wf
        .pause(&Selector::tag("submission", "first"), false)
        .unwrap();
    assert_eq!(refused.refused.len(), 1);

    let end = tokio::time::timeout(DEADLINE, runner)
        .await
        .unwrap()
        .unwrap();
    assert!(!end.is_complete(), "{end}");
    assert_eq!(end.count(StepState::Paused), 3, "{end}");
    assert_eq!(end.count(StepState::Skipped), 2, "{end}");
    assert_eq!(
        Progress::of(&wf),
        Progress {
            total: 8,
            judged: 3,
            skipped: 2,
            held: 3,
            ..Progress::default()
        }
    );
    // The summary waits for the held ones.
    let summary = end.blocked_step(rejudge::SUMMARY).unwrap();
    assert!(summary.reason.to_string().contains("paused"), "{end}");

    let resumed = wf.resume(&Selector::tag("kind", "judge"), false).unwrap();
    assert_eq!(resumed.steps().len(), 3);
    let end = run_to_end(&wf).await;
    assert!(end.is_complete(), "{end}");
    assert_eq!(score_of(&results, "first"), Some(0.0));
    for i in 0..3 {
        assert_eq!(score_of(&results, &format!("held-{i}")), Some(1.0));
    }
    for i in 0..2 {
        assert_eq!(results.messages_of(&format!("skipped-{i}")), None);
        assert_eq!(score_of(&results, &format!("free-{i}")), Some(0.0));
    }
    let summary = rejudge::summary_of(&wf).unwrap();
    assert_eq!(summary.judged.len(), 6);
    assert_eq!(summary.not_judged.len(), 2);
}
