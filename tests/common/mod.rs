//! What the integration tests share: the fixtures (languages, problems, submissions), a model of
//! what every fixture program does and so of the exact messages the judge must send for it, a
//! runner of `executioner judge`, and a bounded parallel runner of test cases.
//!
//! The expectations are derived from the fixture files themselves: a test case's verdict comes
//! from what the program prints (modelled here: a+b of every input pair, a+b+1, nothing, ...)
//! compared token by token with the expected output, and the score from SPEC §4. The designed
//! results of the subtask problems are also pinned as constants in `tests/conformance.rs`, so a
//! change to a fixture that breaks its documented purpose fails there.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Paths

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn problems_root() -> PathBuf {
    repo().join("fixtures").join("problems")
}

pub fn submissions_root() -> PathBuf {
    repo().join("fixtures").join("submissions")
}

/// The executioner binary under test.
pub fn executioner() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_executioner"));
    // EXECUTIONER_DEMOTER and the rest of the environment (set by scripts/test) are inherited.
    command.stdin(Stdio::null());
    command
}

// ---------------------------------------------------------------------------------------------
// Languages: read from the registry itself, so a new language needs only its table entry in
// languages.toml and a folder of fixture programs.

#[derive(Debug, Clone, PartialEq)]
pub struct Language {
    pub id: String,
    pub aliases: Vec<String>,
    /// Extension of its source file (`main.c` -> `c`), used by the fixture programs too.
    pub extension: String,
    /// Compiled languages send `compiling` and `compiled`; interpreted ones go straight to tests.
    pub compiled: bool,
    /// Docker image.
    pub image: String,
    /// The runtime files the agent reads ahead (`warm`).
    pub warm: Vec<String>,
    /// The file extensions that map to this language (`extensions`).
    pub extensions: Vec<String>,
    /// What the problem's time limit is multiplied by (`time_factor`, 1 unless set).
    pub time_factor: f64,
}

pub fn languages() -> Vec<Language> {
    let path = repo().join("languages.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let registry: toml::Value = text
        .parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()));
    let tables = registry
        .get("language")
        .and_then(toml::Value::as_array)
        .unwrap_or_else(|| panic!("{} has no [[language]] tables", path.display()));
    tables
        .iter()
        .map(|table| {
            let text = |key: &str| {
                table
                    .get(key)
                    .and_then(toml::Value::as_str)
                    .unwrap_or_else(|| panic!("a language of {} has no {key}", path.display()))
                    .to_owned()
            };
            let source = text("source");
            let extension = Path::new(&source)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_else(|| panic!("source file {source:?} has no extension"))
                .to_owned();
            let strings = |key: &str| -> Vec<String> {
                table
                    .get(key)
                    .and_then(toml::Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let aliases = strings("aliases");
            Language {
                id: text("id"),
                aliases,
                extension,
                compiled: table.get("compile").is_some(),
                image: text("image"),
                warm: strings("warm"),
                extensions: strings("extensions"),
                time_factor: table
                    .get("time_factor")
                    .map_or(1.0, |v| v.as_float().expect("time_factor is a float")),
            }
        })
        .collect()
}

/// The languages the conformance tests judge: the whole registry, or only the ids listed
/// (comma-separated) in `EXECUTIONER_TEST_LANGUAGES`, to check one language without the whole
/// matrix. An id that is not in the registry fails the test rather than testing nothing.
pub fn tested_languages() -> Vec<Language> {
    let all = languages();
    let Ok(only) = std::env::var("EXECUTIONER_TEST_LANGUAGES") else {
        return all;
    };
    let ids: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .collect();
    for id in &ids {
        assert!(
            all.iter().any(|l| l.id == *id),
            "EXECUTIONER_TEST_LANGUAGES names {id:?}, which is not in languages.toml"
        );
    }
    all.into_iter()
        .filter(|l| ids.contains(&l.id.as_str()))
        .collect()
}

pub fn language(id: &str) -> Language {
    languages()
        .into_iter()
        .find(|l| l.id == id)
        .unwrap_or_else(|| panic!("language {id} is not in languages.toml"))
}

impl Language {
    /// The fixture program `fixtures/submissions/<id>/<name>.<ext>`.
    pub fn program(&self, name: &str) -> PathBuf {
        submissions_root()
            .join(&self.id)
            .join(format!("{name}.{}", self.extension))
    }

    pub fn submission(&self, kind: Kind) -> PathBuf {
        self.program(kind.stem())
    }

    /// The kinds of fixture program this language has (`compile_success` only when compiled).
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|&k| self.compiled || k != Kind::CompileSuccess)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Kinds of fixture program, and what each does on one test.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Does not compile (for an interpreted language: refused by the interpreter at start).
    CompileError,
    /// Compiles with extra headers, functions and warnings; answers correctly.
    CompileSuccess,
    /// Prints a+b of every input pair, one per line.
    Accepted,
    /// Prints a+b+1 of every pair.
    Wrong,
    /// Prints the right answers, then exits with status 1.
    Error,
    /// Allocates and touches 512 MB.
    Mle,
    /// Busy loop forever.
    Tle,
    /// Blocks forever without CPU.
    Hang,
    /// Prints nothing.
    Empty,
    /// Prints the right answers with odd white space.
    Whitespace,
}

/// The result of one test, as SPEC §2 spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Wrong,
    Mle,
    Tle,
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Wrong => "wrong",
            Verdict::Mle => "MLE",
            Verdict::Tle => "TLE",
            Verdict::Error => "error",
        }
    }
}

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::CompileError,
        Kind::CompileSuccess,
        Kind::Accepted,
        Kind::Wrong,
        Kind::Error,
        Kind::Mle,
        Kind::Tle,
        Kind::Hang,
        Kind::Empty,
        Kind::Whitespace,
    ];

    /// File name of the fixture program, without extension.
    pub fn stem(self) -> &'static str {
        match self {
            Kind::CompileError => "compile_error",
            Kind::CompileSuccess => "compile_success",
            Kind::Accepted => "test_accepted",
            Kind::Wrong => "test_wrong",
            Kind::Error => "test_error",
            Kind::Mle => "test_mle",
            Kind::Tle => "test_tle",
            Kind::Hang => "test_hang",
            Kind::Empty => "test_empty",
            Kind::Whitespace => "test_whitespace",
        }
    }

    /// The verdict of one test, from what the program does with its input.
    pub fn verdict(self, test: &TestCase) -> Verdict {
        let printed: Vec<String> = match self {
            Kind::Accepted | Kind::CompileSuccess | Kind::Whitespace => {
                sums(&test.input).iter().map(i128::to_string).collect()
            }
            Kind::Wrong => sums(&test.input)
                .iter()
                .map(|s| (s + 1).to_string())
                .collect(),
            Kind::Empty => Vec::new(),
            // An interpreted program that does not parse fails at start like a crash.
            Kind::CompileError | Kind::Error => return Verdict::Error,
            Kind::Mle => return Verdict::Mle,
            Kind::Tle | Kind::Hang => return Verdict::Tle,
        };
        if printed
            .iter()
            .map(String::as_str)
            .eq(test.output.split_whitespace())
        {
            Verdict::Accepted
        } else {
            Verdict::Wrong
        }
    }

    /// Verdicts of every test of `problem` in `language`; `None` when it does not compile.
    pub fn verdicts(self, language: &Language, problem: &Problem) -> Option<Vec<Verdict>> {
        if self == Kind::CompileError && language.compiled {
            return None;
        }
        Some(problem.tests.iter().map(|t| self.verdict(t)).collect())
    }
}

/// a+b of every pair of integers in `input`, in order (a trailing odd integer is ignored).
pub fn sums(input: &str) -> Vec<i128> {
    let numbers: Vec<i128> = input
        .split_whitespace()
        .map(|t| {
            t.parse()
                .unwrap_or_else(|e| panic!("input token {t:?}: {e}"))
        })
        .collect();
    numbers.chunks_exact(2).map(|p| p[0] + p[1]).collect()
}

// ---------------------------------------------------------------------------------------------
// Problems (SPEC §5), read as plain JSON.

#[derive(Debug, Clone)]
pub struct Problem {
    pub id: String,
    pub time_ms: u64,
    pub memory_kb: u64,
    /// Empty when the problem has no subtasks.
    pub subtask_scores: Vec<f64>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone)]
pub struct TestCase {
    pub input: String,
    pub output: String,
    pub subtask: Option<u64>,
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

impl Problem {
    /// Loads a valid fixture problem (panics on a broken one: those are for `bad_input`).
    pub fn load(id: &str) -> Problem {
        let folder = problems_root().join(id);
        let statement = read_json(&folder.join("statement.json"));
        let tests = read_json(&folder.join("test-cases.json"));
        let number = |v: &Value, key: &str| {
            v[key]
                .as_u64()
                .unwrap_or_else(|| panic!("{id}: {key} is not a positive integer"))
        };
        let subtask_scores = statement["subtasks"]
            .as_array()
            .map(|subtasks| {
                subtasks
                    .iter()
                    .map(|s| s["score"].as_f64().expect("subtask score"))
                    .collect()
            })
            .unwrap_or_default();
        let tests = tests
            .as_array()
            .unwrap_or_else(|| panic!("{id}: test-cases.json is not an array"))
            .iter()
            .map(|t| TestCase {
                input: t["input"].as_str().expect("input").to_owned(),
                output: t["output"].as_str().expect("output").to_owned(),
                subtask: t.get("subtask").map(|s| s.as_u64().expect("subtask")),
            })
            .collect();
        Problem {
            id: id.to_owned(),
            time_ms: number(&statement, "time"),
            memory_kb: number(&statement, "memory"),
            subtask_scores,
            tests,
        }
    }

    pub fn has_subtasks(&self) -> bool {
        !self.subtask_scores.is_empty()
    }

    /// Wall time limit of one test (SPEC §3: 3x the CPU limit by default).
    pub fn wall_limit(&self) -> Duration {
        Duration::from_millis(3 * self.time_ms)
    }

    /// How long a whole judge run may take before the test gives up on it: every test hitting
    /// its wall limit, twice over, plus room for containers and compiling on a loaded machine.
    pub fn judge_deadline(&self) -> Duration {
        Duration::from_secs(120) + 2 * self.wall_limit() * self.tests.len() as u32
    }

    /// Score and failed subtasks of `verdicts` (SPEC §4).
    pub fn score(&self, verdicts: &[Verdict]) -> (f64, Option<Vec<u64>>) {
        assert_eq!(verdicts.len(), self.tests.len());
        if !self.has_subtasks() {
            let all = verdicts.iter().all(|&v| v == Verdict::Accepted);
            return (if all { 1.0 } else { 0.0 }, None);
        }
        let mut failed: Vec<u64> = self
            .tests
            .iter()
            .zip(verdicts)
            .filter(|(_, &v)| v != Verdict::Accepted)
            .map(|(t, _)| {
                t.subtask
                    .expect("a test of a subtask problem names its subtask")
            })
            .collect();
        failed.sort_unstable();
        failed.dedup();
        let total: f64 = (1..=self.subtask_scores.len() as u64)
            .filter(|s| !failed.contains(s))
            .map(|s| self.subtask_scores[s as usize - 1])
            .sum();
        // An empty f64 sum is -0.0; the score of nothing passed is 0, never "-0.0".
        (round4(total) + 0.0, Some(failed))
    }
}

pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

// ---------------------------------------------------------------------------------------------
// Expected messages (SPEC §2), and the normalisation that makes measured values comparable.

/// Stands for a measured `time` / `memory`: any non-negative integer.
pub const MEASURED: &str = "<non-negative integer>";
/// Stands for a `compileOutput` / `reason`: any non-empty string.
pub const SOME_TEXT: &str = "<non-empty text>";

pub fn score_text(score: f64) -> Value {
    Value::String(format!("<score {score:.4}>"))
}

/// One expected message: `id`, `state` and the fields of `extra`.
pub fn message(id: &str, state: &str, extra: Value) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), id.into());
    m.insert("state".into(), state.into());
    if let Value::Object(extra) = extra {
        m.extend(extra);
    }
    Value::Object(m)
}

/// The exact messages of a submission that runs to `done`. `verdicts` is `None` for a compile
/// error (compiled languages only).
pub fn expected_messages(
    id: &str,
    problem: &Problem,
    compiled: bool,
    verdicts: Option<&[Verdict]>,
) -> Vec<Value> {
    let mut messages = vec![message(id, "executing", json!({}))];
    if compiled {
        messages.push(message(id, "compiling", json!({})));
        match verdicts {
            Some(_) => messages.push(message(id, "compiled", json!({"result": "success"}))),
            None => {
                messages.push(message(
                    id,
                    "compiled",
                    json!({"result": "error", "compileOutput": SOME_TEXT}),
                ));
                messages.push(message(id, "done", json!({})));
                return messages;
            }
        }
    }
    let verdicts = verdicts.expect("only a compiled language can fail to compile");
    for (i, (test, verdict)) in problem.tests.iter().zip(verdicts).enumerate() {
        let mut position = json!({"testCase": i + 1});
        if problem.has_subtasks() {
            position["subtask"] = json!(test.subtask);
        }
        messages.push(message(id, "testing", position.clone()));
        position["result"] = json!(verdict.as_str());
        position["time"] = json!(MEASURED);
        position["memory"] = json!(MEASURED);
        messages.push(message(id, "tested", position));
    }
    let (score, failed) = problem.score(verdicts);
    let mut done = json!({"score": score_text(score)});
    if let Some(failed) = failed {
        done["failedSubtasks"] = json!(failed);
    }
    messages.push(message(id, "done", done));
    messages
}

/// The messages of a fixture program of `kind`.
pub fn expected_for_kind(
    id: &str,
    problem: &Problem,
    language: &Language,
    kind: Kind,
) -> Vec<Value> {
    let verdicts = kind.verdicts(language, problem);
    expected_messages(id, problem, language.compiled, verdicts.as_deref())
}

/// `executing, invalid{reason}`.
pub fn expected_invalid(id: &str) -> Vec<Value> {
    vec![
        message(id, "executing", json!({})),
        message(id, "invalid", json!({"reason": SOME_TEXT})),
    ]
}

/// Replaces what a judge may legitimately choose (measurements, texts, optional fields) by the
/// placeholders the expected messages use, after checking each has the right shape; anything
/// of the wrong shape is left as it is, so the comparison shows it.
pub fn normalize(message: &Value) -> Value {
    let mut m = message.clone();
    let Some(fields) = m.as_object_mut() else {
        return m;
    };
    // Optional everywhere: the interface's timestamp.
    if fields.get("judgeTime").is_some_and(Value::is_string) {
        fields.remove("judgeTime");
    }
    let non_empty_text =
        |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let state = fields
        .get("state")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match state.as_str() {
        "tested" => {
            for key in ["time", "memory"] {
                if fields.get(key).is_some_and(Value::is_u64) {
                    fields.insert(key.into(), MEASURED.into());
                }
            }
            // A checker's partial score: 4 decimals in [0, 1], as `done`'s.
            if let Some(score) = fields.get("score").and_then(Value::as_f64) {
                if (score - round4(score)).abs() < 1e-9 && (0.0..=1.0).contains(&score) {
                    fields.insert("score".into(), score_text(score));
                }
            }
        }
        "compiled" => {
            let success = fields.get("result").and_then(Value::as_str) == Some("success");
            if non_empty_text(fields.get("compileOutput")) {
                fields.insert("compileOutput".into(), SOME_TEXT.into());
            }
            // Optional after a successful compile (warnings, truncated).
            if success && fields.get("compileOutput").is_some_and(Value::is_string) {
                fields.remove("compileOutput");
            }
        }
        "invalid" | "error" if non_empty_text(fields.get("reason")) => {
            fields.insert("reason".into(), SOME_TEXT.into());
        }
        "done" => {
            if let Some(score) = fields.get("score").and_then(Value::as_f64) {
                let rounded = (score - round4(score)).abs() < 1e-9;
                if rounded && (0.0..=1.0).contains(&score) {
                    fields.insert("score".into(), score_text(score));
                }
            }
        }
        _ => {}
    }
    m
}

/// Compares whole sequences; on a mismatch, shows both side by side.
pub fn compare(expected: &[Value], actual: &[Value]) -> Result<(), String> {
    let normalized: Vec<Value> = actual.iter().map(normalize).collect();
    if normalized == expected {
        return Ok(());
    }
    let mut report = String::from("message sequence differs (expected | actual, normalised):\n");
    for i in 0..expected.len().max(normalized.len()) {
        let show = |v: Option<&Value>| v.map_or("(none)".to_owned(), Value::to_string);
        let (e, a) = (expected.get(i), normalized.get(i));
        let mark = if e == a { "  " } else { "!!" };
        report.push_str(&format!("{mark} {i:3} expected {}\n", show(e)));
        if e != a {
            report.push_str(&format!("{mark} {i:3} actual   {}\n", show(a)));
        }
    }
    Err(report)
}

/// The exit status SPEC §7 gives for a sequence ending in `last_state`.
pub fn exit_code_for(messages: &[Value]) -> i32 {
    match messages.last().and_then(|m| m["state"].as_str()) {
        Some("done") => 0,
        Some("error") => 1,
        Some("invalid") => 2,
        other => panic!("not a terminal state: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Running the judge.

/// One `executioner judge` run.
#[derive(Debug)]
pub struct JudgeRun {
    /// Every stdout line that parsed as JSON, in order.
    pub messages: Vec<Value>,
    /// Stdout lines that were not JSON (there must be none).
    pub junk: Vec<String>,
    pub status: ExitStatus,
    /// The end of stderr (logs), for diagnostics.
    pub stderr_tail: String,
    pub elapsed: Duration,
}

/// Kills and reaps the child if the test gives up on it (deadline or panic).
pub struct ChildGuard(pub Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                // Our own child, by its handle: no broad kill.
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Reads a pipe to its end on a thread.
pub fn drain<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

pub fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// Runs `executioner judge --problems <problems> --problem <problem> --language <language>
/// <source>`; gives up (killing it) after `deadline`.
pub fn judge_with(
    problems: &Path,
    problem: &str,
    language: &str,
    source: &Path,
    deadline: Duration,
) -> Result<JudgeRun, String> {
    let mut command = executioner();
    command
        .arg("judge")
        .arg("--problems")
        .arg(problems)
        .args(["--problem", problem, "--language", language])
        .arg(source);
    run_judge(command, deadline)
}

/// Runs an `executioner judge` command and collects what it printed; gives up (killing it)
/// after `deadline`.
pub fn run_judge(mut command: Command, deadline: Duration) -> Result<JudgeRun, String> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start executioner: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let mut guard = ChildGuard(Some(child));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut stdout = stdout;
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    let out = match rx.recv_timeout(deadline) {
        Ok(out) => out,
        Err(_) => {
            drop(guard); // kills it, so stderr ends
            let stderr = stderr.join().unwrap_or_default();
            return Err(format!(
                "no end after {deadline:?}; killed it. stderr tail:\n{}",
                tail(&stderr, 3000)
            ));
        }
    };
    let status = guard
        .0
        .take()
        .expect("child")
        .wait()
        .map_err(|e| format!("wait: {e}"))?;
    let stderr = stderr.join().unwrap_or_default();
    let mut messages = Vec::new();
    let mut junk = Vec::new();
    for line in String::from_utf8_lossy(&out).lines() {
        match serde_json::from_str::<Value>(line) {
            Ok(v) if v.is_object() => messages.push(v),
            _ => junk.push(line.to_owned()),
        }
    }
    Ok(JudgeRun {
        messages,
        junk,
        status,
        stderr_tail: tail(&stderr, 3000),
        elapsed: started.elapsed(),
    })
}

/// Judges a fixture-problem submission.
pub fn judge(
    problem: &str,
    language: &str,
    source: &Path,
    deadline: Duration,
) -> Result<JudgeRun, String> {
    judge_with(&problems_root(), problem, language, source, deadline)
}

impl JudgeRun {
    /// The submission id the judge chose: that of its first message.
    pub fn id(&self) -> String {
        self.messages
            .first()
            .and_then(|m| m["id"].as_str())
            .unwrap_or("<no id>")
            .to_owned()
    }

    /// Checks the whole run: no junk on stdout, exactly `expected` (built for the run's id), the
    /// exit status SPEC §7 gives for it.
    pub fn check(&self, expected: impl FnOnce(&str) -> Vec<Value>) -> Result<(), String> {
        let expected = expected(&self.id());
        let mut problems = Vec::new();
        if !self.junk.is_empty() {
            problems.push(format!(
                "stdout lines that are not JSON objects: {:?}",
                self.junk
            ));
        }
        if let Err(diff) = compare(&expected, &self.messages) {
            problems.push(diff);
        }
        let code = exit_code_for(&expected);
        if self.status.code() != Some(code) {
            problems.push(format!("exit status {} (expected {code})", self.status));
        }
        self.report(problems)
    }

    /// Checks a run that must end in `error` with a reason: `executing`, then at most compiling
    /// and a successful compile, then `error`; exit status 1.
    pub fn check_error(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if !self.junk.is_empty() {
            problems.push(format!(
                "stdout lines that are not JSON objects: {:?}",
                self.junk
            ));
        }
        let id = self.id();
        let states: Vec<Value> = self.messages.iter().map(normalize).collect();
        let allowed_between = [
            message(&id, "compiling", json!({})),
            message(&id, "compiled", json!({"result": "success"})),
        ];
        let well_formed = states.len() >= 2
            && states[0] == message(&id, "executing", json!({}))
            && states[states.len() - 1] == message(&id, "error", json!({"reason": SOME_TEXT}))
            && states[1..states.len() - 1]
                .iter()
                .all(|m| allowed_between.contains(m));
        if !well_formed {
            problems.push(format!(
                "expected executing, [compiling, compiled success,] error{{reason}}; got:\n{}",
                self.messages
                    .iter()
                    .map(|m| format!("   {m}\n"))
                    .collect::<String>()
            ));
        }
        if self.status.code() != Some(1) {
            problems.push(format!("exit status {} (expected 1)", self.status));
        }
        self.report(problems)
    }

    fn report(&self, problems: Vec<String>) -> Result<(), String> {
        if problems.is_empty() {
            return Ok(());
        }
        let raw: String = self.messages.iter().map(|m| format!("   {m}\n")).collect();
        Err(format!(
            "{}\nraw messages:\n{raw}stderr tail:\n{}",
            problems.join("\n"),
            self.stderr_tail
        ))
    }
}

/// Judges fixture program `kind` of `language` on `problem` and checks every message.
pub fn check_fixture(problem: &Problem, language: &Language, kind: Kind) -> Result<(), String> {
    let source = language.submission(kind);
    let run = judge(&problem.id, &language.id, &source, problem.judge_deadline())?;
    run.check(|id| expected_for_kind(id, problem, language, kind))
}

// ---------------------------------------------------------------------------------------------
// A bounded parallel runner. The machine has 2 cores: CPU-bound cases (compiling, busy loops)
// share a few slots; cases that mostly wait (programs that block until the wall limit) have
// slots of their own. The slots are shared by every test of the binary (cargo runs tests on
// several threads at once), so the bound holds across them.

/// Which slots a case takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    Cpu,
    Idle,
}

struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    const fn new(n: usize) -> Slots {
        Slots {
            free: Mutex::new(n),
            freed: Condvar::new(),
        }
    }

    fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Judge runs at once, per pool, across the whole test binary.
const CPU_SLOTS: usize = 3;
const IDLE_SLOTS: usize = 4;
static CPU: Slots = Slots::new(CPU_SLOTS);
static IDLE: Slots = Slots::new(IDLE_SLOTS);

/// One named check, run by [`run_cases`].
pub struct Case {
    pub name: String,
    pub pool: Pool,
    /// Rough expected duration; longer cases start first.
    pub cost: Duration,
    pub check: Box<dyn FnOnce() -> Result<(), String> + Send>,
}

impl Case {
    pub fn new(
        name: impl Into<String>,
        pool: Pool,
        cost: Duration,
        check: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            pool,
            cost,
            check: Box::new(check),
        }
    }

    /// The case judging fixture program `kind` of `language` on `problem`.
    pub fn fixture(problem: &Problem, language: &Language, kind: Kind) -> Case {
        let tests = problem.tests.len() as u32;
        let (pool, cost) = match kind {
            Kind::Hang => (Pool::Idle, problem.wall_limit() * tests),
            Kind::Tle => (Pool::Cpu, Duration::from_millis(problem.time_ms) * tests),
            _ => (
                Pool::Cpu,
                Duration::from_millis(500 + 50 * u64::from(tests)),
            ),
        };
        let name = format!("{} / {} / {}", problem.id, language.id, kind.stem());
        let (problem, language) = (problem.clone(), language.clone());
        Case::new(name, pool, cost, move || {
            check_fixture(&problem, &language, kind)
        })
    }
}

/// Runs every case (a bounded number at once), then fails listing every case that failed, each
/// with its report. A panicking check counts as a failure of its case only.
pub fn run_cases(cases: Vec<Case>) {
    let total = cases.len();
    let queues = [Mutex::new(VecDeque::new()), Mutex::new(VecDeque::new())];
    let mut sorted = cases;
    sorted.sort_by_key(|case| std::cmp::Reverse(case.cost));
    for case in sorted {
        let queue = &queues[case.pool as usize];
        queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(case);
    }
    let failures: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for (pool, queue) in [Pool::Cpu, Pool::Idle].into_iter().zip(&queues) {
            let (slots, width) = match pool {
                Pool::Cpu => (&CPU, CPU_SLOTS),
                Pool::Idle => (&IDLE, IDLE_SLOTS),
            };
            let failures = &failures;
            let queued = queue.lock().map(|q| q.len()).unwrap_or(0);
            for _ in 0..width.min(queued) {
                scope.spawn(move || loop {
                    let Some(case) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        break;
                    };
                    let _slot = slots.acquire();
                    let started = Instant::now();
                    let result = catch_unwind(AssertUnwindSafe(case.check))
                        .unwrap_or_else(|panic| Err(panic_text(&panic)));
                    let took = started.elapsed();
                    match result {
                        Ok(()) => eprintln!("ok     {} ({took:.1?})", case.name),
                        Err(report) => {
                            eprintln!("FAILED {} ({took:.1?})\n{report}\n", case.name);
                            failures
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((case.name, report));
                        }
                    }
                });
            }
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    if !failures.is_empty() {
        let names: Vec<&str> = failures.iter().map(|(n, _)| n.as_str()).collect();
        panic!(
            "{} of {total} cases failed (reports above):\n  {}",
            failures.len(),
            names.join("\n  ")
        );
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(non-text panic)".to_owned());
    format!("panicked: {text}")
}

/// Fails the test with `result`'s report, shown as text (not Debug-escaped).
pub fn pass(result: Result<(), String>) {
    if let Err(report) = result {
        panic!("{report}");
    }
}
