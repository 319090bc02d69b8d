//! The worker with the memory interface (SPEC §7): submissions in on stdin, one JSON object per
//! line; every message out on stdout, one JSON object per line, interleaved between submissions
//! but in order within each; SIGTERM ends it cleanly (exit 0) once in-flight work is done.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

use common::{
    compare, drain, expected_for_kind, expected_invalid, languages, problems_root, tail,
    ChildGuard, Kind, Problem,
};

const SUBMISSIONS: usize = 50;
/// For all of them to be judged, on a 2-core machine, two at a time.
const JUDGING_DEADLINE: Duration = Duration::from_secs(900);
/// For the worker to exit after SIGTERM once nothing is in flight.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

enum Event {
    Line(String),
    Eof,
}

struct Submission {
    line: String,
    expected: Vec<Value>,
}

/// 50 submissions of quick kinds, every language × kind × problem in turn, plus two invalid.
fn submissions() -> Vec<Submission> {
    let languages = languages();
    let kinds = [Kind::Accepted, Kind::Wrong, Kind::Error, Kind::CompileError];
    let problems: Vec<Problem> = [
        "test-base",
        "test-subtasks-pass",
        "test-subtasks-fail",
        "test-subtasks-mixed",
    ]
    .iter()
    .map(|id| Problem::load(id))
    .collect();
    let source = |path| std::fs::read_to_string(path).expect("fixture program");
    let mut all = vec![
        invalid("w-unknown-language", "test-base", "cobol-1960", "x"),
        invalid("w-bad-problem-id", "../x", &languages[0].id, "x"),
    ];
    for i in 0..SUBMISSIONS - all.len() {
        let language = &languages[i % languages.len()];
        let kind = kinds[(i / languages.len()) % kinds.len()];
        let problem = &problems[(i / (languages.len() * kinds.len())) % problems.len()];
        let id = format!("w-{i:02}-{}-{}-{}", language.id, kind.stem(), problem.id);
        let line = json!({
            "id": id,
            "problem": problem.id,
            "language": language.id,
            "sourceCode": source(language.submission(kind)),
            // Carried along and ignored (SPEC §1).
            "user": "conformance-test",
        });
        all.push(Submission {
            line: line.to_string(),
            expected: expected_for_kind(&id, problem, language, kind),
        });
    }
    all
}

fn invalid(id: &str, problem: &str, language: &str, source: &str) -> Submission {
    let line = json!({"id": id, "problem": problem, "language": language, "sourceCode": source});
    Submission {
        line: line.to_string(),
        expected: expected_invalid(id),
    }
}

fn is_terminal(message: &Value) -> bool {
    matches!(
        message["state"].as_str(),
        Some("done" | "error" | "invalid")
    )
}

#[test]
fn worker_judges_submissions_from_stdin_and_stops_on_sigterm() {
    let submissions = submissions();
    assert_eq!(submissions.len(), SUBMISSIONS);

    let mut child = common::executioner()
        .arg("worker")
        .arg("--problems")
        .arg(problems_root())
        .args(["--interface", "memory", "--concurrency", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start executioner worker");
    let pid = Pid::from_raw(child.id() as i32);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard(Some(child));

    let (tx, events) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if tx.send(Event::Line(line)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Event::Eof);
    });

    for s in &submissions {
        writeln!(stdin, "{}", s.line).expect("write a submission to the worker");
    }
    stdin.flush().expect("flush the worker's stdin");

    // Read until every submission has its terminal message.
    let mut problems: Vec<String> = Vec::new();
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    let mut finished = 0;
    let deadline = Instant::now() + JUDGING_DEADLINE;
    while finished < submissions.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Line(line)) => match serde_json::from_str::<Value>(&line) {
                Ok(message) if message["id"].is_string() => {
                    if is_terminal(&message) {
                        finished += 1;
                    }
                    let id = message["id"].as_str().unwrap_or_default().to_owned();
                    by_id.entry(id).or_default().push(message);
                }
                _ => problems.push(format!("stdout line is not a message: {line:?}")),
            },
            Ok(Event::Eof) => {
                problems.push(format!(
                    "the worker closed stdout after {finished} submissions"
                ));
                break;
            }
            Err(_) => {
                problems.push(format!(
                    "only {finished} of {} submissions finished within {JUDGING_DEADLINE:?}",
                    submissions.len()
                ));
                break;
            }
        }
    }

    for s in &submissions {
        let id = s.expected[0]["id"].as_str().expect("id");
        let actual = by_id.remove(id).unwrap_or_default();
        if let Err(diff) = compare(&s.expected, &actual) {
            problems.push(format!("submission {id}: {diff}"));
        }
    }
    for (id, messages) in &by_id {
        problems.push(format!(
            "messages for an unknown submission {id}: {messages:?}"
        ));
    }

    // Clean stop: SIGTERM (to our own child, by pid), then stdout ends and the status is 0.
    kill(pid, Signal::SIGTERM).expect("send SIGTERM to the worker");
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Line(line)) => problems.push(format!("message after the last one: {line}")),
            Ok(Event::Eof) => break,
            Err(_) => {
                problems.push(format!("still running {EXIT_DEADLINE:?} after SIGTERM"));
                break;
            }
        }
    }
    drop(stdin);
    let mut child = guard.0.take().expect("child");
    let status = match child.try_wait() {
        // stdout is closed: it has exited (or is about to); the wait is short.
        Ok(Some(status)) => Some(status),
        _ if problems.iter().any(|p| p.starts_with("still running")) => {
            let _ = child.kill();
            let _ = child.wait();
            None
        }
        _ => child.wait().ok(),
    };
    match status {
        Some(status) if status.code() == Some(0) => {}
        other => problems.push(format!("exit status after SIGTERM: {other:?} (expected 0)")),
    }
    let stderr = stderr.join().unwrap_or_default();

    assert!(
        problems.is_empty(),
        "{}\n\nworker stderr tail:\n{}",
        problems.join("\n\n"),
        tail(&stderr, 4000)
    );
}
