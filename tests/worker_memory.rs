//! The worker with the memory interface (SPEC §7): submissions in on stdin, one JSON object per
//! line; every message out on stdout, one JSON object per line, interleaved between submissions
//! but in order within each; SIGTERM ends it cleanly (exit 0) once in-flight work is done.
//! And what judging costs the worker itself: a compiler's 64 MiB of output or a wrong answer of
//! 60 MB leave its resident memory within a few MB (issue #15, item 3).

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
    compare, drain, expected_for_kind, expected_invalid, expected_messages, problems_root, tail,
    tested_languages, ChildGuard, Kind, Problem, Verdict,
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
    let languages = tested_languages();
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

/// `executioner worker --interface memory` judging `concurrency` at once, all three pipes piped.
fn memory_worker(concurrency: usize) -> std::process::Child {
    common::executioner()
        .arg("worker")
        .arg("--problems")
        .arg(problems_root())
        .args([
            "--interface",
            "memory",
            "--concurrency",
            &concurrency.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start executioner worker")
}

#[test]
fn worker_judges_submissions_from_stdin_and_stops_on_sigterm() {
    let submissions = submissions();
    assert_eq!(submissions.len(), SUBMISSIONS);

    let mut child = memory_worker(2);
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

/// How much the worker's peak resident memory may grow while judging one flood.
const RSS_GROWTH_MAX_KB: u64 = 16 * 1024;
/// For one submission of the resident-memory test to be judged.
const SUBMISSION_DEADLINE: Duration = Duration::from_secs(300);

/// A worker (memory interface, one submission at a time) fed one submission at a time.
struct Worker {
    pid: Pid,
    stdin: Option<std::process::ChildStdin>,
    events: mpsc::Receiver<Event>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    guard: ChildGuard,
}

impl Worker {
    fn start() -> Worker {
        let mut child = memory_worker(1);
        let pid = Pid::from_raw(child.id() as i32);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        let (tx, events) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(Event::Line(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Event::Eof);
        });
        Worker {
            pid,
            stdin: Some(stdin),
            events,
            stderr: Some(stderr),
            guard: ChildGuard(Some(child)),
        }
    }

    /// Judges one submission: its messages, up to the terminal one.
    fn judge(&mut self, id: &str, problem: &str, language: &str, source: &str) -> Vec<Value> {
        let line =
            json!({"id": id, "problem": problem, "language": language, "sourceCode": source});
        let stdin = self.stdin.as_mut().expect("the worker's stdin");
        writeln!(stdin, "{line}").expect("write a submission to the worker");
        stdin.flush().expect("flush the worker's stdin");
        let deadline = Instant::now() + SUBMISSION_DEADLINE;
        let mut messages = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Line(line)) => {
                    let message: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|_| self.fail(&format!("not a message: {line:?}")));
                    let terminal = is_terminal(&message);
                    messages.push(message);
                    if terminal {
                        return messages;
                    }
                }
                Ok(Event::Eof) => self.fail(&format!("the worker ended while judging {id}")),
                Err(_) => self.fail(&format!("{id} not judged within {SUBMISSION_DEADLINE:?}")),
            }
        }
    }

    /// Resets the peak resident memory to the current one, which it gives, in KB.
    fn reset_peak(&self) -> u64 {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .expect("reset the worker's peak RSS (clear_refs)");
        self.status_kb("VmRSS:")
    }

    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("the worker's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the worker's status"))
    }

    fn fail(&mut self, problem: &str) -> ! {
        // The guard kills and reaps it, so stderr ends.
        drop(std::mem::replace(&mut self.guard, ChildGuard(None)));
        let stderr = self
            .stderr
            .take()
            .and_then(|s| s.join().ok())
            .unwrap_or_default();
        panic!("{problem}\n\nworker stderr tail:\n{}", tail(&stderr, 4000))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SIGTERM to our own child, by pid, while it is not reaped: it stops cleanly and
        // removes its containers.
        if let Some(mut child) = self.guard.0.take() {
            let _ = kill(self.pid, Signal::SIGTERM);
            drop(self.stdin.take());
            let _ = child.wait();
        }
    }
}

/// Free Pascal writes its messages to stdout: each include doubles the `{$WARNING}` lines
/// below, 512 × 800 lines of about 270 bytes, far beyond the 64 MiB compile output cap, from
/// a 200 KB source.
fn pascal_flood() -> String {
    const LEVELS: usize = 9;
    let mut source = String::new();
    for level in 1..=LEVELS {
        let undef = if level == 1 {
            String::new()
        } else {
            format!("{{$undef D{level}}}")
        };
        source.push_str(&format!(
            "{{$ifndef D{level}}}{{$define D{level}}}{{$I main.pas}}{{$I main.pas}}{undef}{{$else}}\n"
        ));
    }
    let warning = format!("{{$WARNING {}}}\n", "x".repeat(240));
    source.push_str(&warning.repeat(800));
    source.push_str(&"{$endif}\n".repeat(LEVELS));
    source
}

/// 60 MB of 0xff bytes as the answer to every test.
const C_FLOOD: &str = r#"#include <stdio.h>
#include <string.h>
int main(void) {
    static char block[1 << 20];
    memset(block, 0xff, sizeof block);
    for (int i = 0; i < 60; i++) fwrite(block, 1, sizeof block, stdout);
    return 0;
}
"#;

const C_WRONG: &str = "#include <stdio.h>\nint main(void){puts(\"\\xff\");return 0;}\n";

/// The worker's peak resident memory grows by less than [`RSS_GROWTH_MAX_KB`] while it judges
/// a compiler's output flood and a 60 MB wrong answer, each after a warm-up of its kind.
#[test]
fn worker_memory_stays_small_on_output_floods() {
    let problem = Problem::load("test-base");
    let mut worker = Worker::start();
    let mut problems = Vec::new();

    // Compiler output: a small compile error first, so that what the worker keeps from
    // judging any compile error is already counted.
    let warm = worker.judge("rss-fpc-warm", "test-base", "fpc-3.2", "begin x end.");
    let before = worker.reset_peak();
    let flood = worker.judge("rss-fpc-flood", "test-base", "fpc-3.2", &pascal_flood());
    let peak = worker.status_kb("VmHWM:");
    let output = flood
        .iter()
        .find_map(|m| m["compileOutput"].as_str())
        .unwrap_or_default();
    for (id, messages) in [("rss-fpc-warm", &warm), ("rss-fpc-flood", &flood)] {
        if let Err(diff) = compare(&expected_messages(id, &problem, true, None), messages) {
            problems.push(format!("{id}: {diff}"));
        }
    }
    if !output.ends_with("the compiler wrote too much output") {
        problems.push(format!(
            "the flood did not reach the compile output cap: {:?}",
            tail(output.as_bytes(), 300)
        ));
    }
    if peak.saturating_sub(before) > RSS_GROWTH_MAX_KB {
        problems.push(format!(
            "compiler output flood: peak RSS {peak} KB, {before} KB before"
        ));
    }
    eprintln!("compiler output flood: peak RSS {peak} KB, {before} KB before");

    // A wrong answer: a short one first, then 60 MB of 0xff for every test.
    let wrong = vec![Verdict::Wrong; problem.tests.len()];
    let warm = worker.judge("rss-c-warm", "test-base", "gcc-12", C_WRONG);
    let before = worker.reset_peak();
    let flood = worker.judge("rss-c-flood", "test-base", "gcc-12", C_FLOOD);
    let peak = worker.status_kb("VmHWM:");
    for (id, messages) in [("rss-c-warm", &warm), ("rss-c-flood", &flood)] {
        if let Err(diff) = compare(
            &expected_messages(id, &problem, true, Some(&wrong)),
            messages,
        ) {
            problems.push(format!("{id}: {diff}"));
        }
    }
    if peak.saturating_sub(before) > RSS_GROWTH_MAX_KB {
        problems.push(format!(
            "60 MB wrong answer: peak RSS {peak} KB, {before} KB before"
        ));
    }
    eprintln!("60 MB wrong answer: peak RSS {peak} KB, {before} KB before");

    if !problems.is_empty() {
        worker.fail(&problems.join("\n\n"));
    }
}
