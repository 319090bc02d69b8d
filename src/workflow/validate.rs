//! Problem validation: judge a problem's reference and known-wrong solutions, each filed under
//! the outcome it must get, and report every mismatch and the slowest accepted time against
//! the limit.
//!
//! Solutions live in `DIR/<expected>/<file>`, `<expected>` one of [`Expected`]'s folder names;
//! the language follows from the file extension. A solution's outcome is the verdict of its
//! first failing test (every test runs, in order), or accepted when none fails.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::builder::{BuildError, WorkflowBuilder};
use super::engine::control::Selector;
use super::engine::step::{RetryPolicy, Step, StepError, StepSpec};
use super::engine::{StepContext, Workflow};
use super::judging::{End, JudgeStep, Judgement, SubmissionJudge};
use crate::language::Registry;
use crate::protocol::{SourceFile, Submission};
use crate::store::workflow::state::StepState;
use crate::store::WorkflowStore;
use crate::verdict::Verdict;

/// The outcome a solution is filed under.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    Accepted,
    WrongAnswer,
    TimeLimitExceeded,
    /// Memory limit exceeded or a run-time error.
    RunTimeError,
    /// A score strictly between 0 and 1 (problems with subtasks).
    PartiallyAccepted,
    /// Not accepted, for whatever reason (the ICPC format's `rejected`).
    Rejected,
    /// Never a wrong answer, but too slow or crashing somewhere (the ICPC format's
    /// `brute_force`).
    BruteForce,
}

impl Expected {
    pub const ALL: [Expected; 7] = [
        Expected::Accepted,
        Expected::WrongAnswer,
        Expected::TimeLimitExceeded,
        Expected::RunTimeError,
        Expected::PartiallyAccepted,
        Expected::Rejected,
        Expected::BruteForce,
    ];

    /// Its folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            Expected::Accepted => "accepted",
            Expected::WrongAnswer => "wrong_answer",
            Expected::TimeLimitExceeded => "time_limit_exceeded",
            Expected::RunTimeError => "run_time_error",
            Expected::PartiallyAccepted => "partially_accepted",
            Expected::Rejected => "rejected",
            Expected::BruteForce => "brute_force",
        }
    }

    /// Whether `judgement` is this outcome.
    pub fn matches(self, judgement: &Judgement) -> bool {
        if judgement.end != End::Done {
            return false;
        }
        let score = judgement.score.unwrap_or(0.0);
        let outcome = outcome(judgement);
        match self {
            Expected::PartiallyAccepted => score > 0.0 && score < 1.0,
            // Every test accepted, each for all of its points.
            Expected::Accepted => outcome == Some(Expected::Accepted) && score >= 1.0,
            Expected::Rejected => outcome != Some(Expected::Accepted) || score < 1.0,
            Expected::BruteForce => {
                !judgement.tests.iter().any(|t| t.result == Verdict::Wrong)
                    && matches!(
                        outcome,
                        Some(Expected::TimeLimitExceeded | Expected::RunTimeError)
                    )
            }
            expected => outcome == Some(expected),
        }
    }
}

/// What a judged solution got, in the terms of [`Expected`]; `None` if it was not judged to
/// the end (compile error, invalid).
pub fn outcome(judgement: &Judgement) -> Option<Expected> {
    if judgement.end != End::Done {
        return None;
    }
    Some(match judgement.first_failure() {
        None => Expected::Accepted,
        Some(Verdict::Wrong) => Expected::WrongAnswer,
        Some(Verdict::TimeLimitExceeded) => Expected::TimeLimitExceeded,
        Some(Verdict::MemoryLimitExceeded | Verdict::Error) => Expected::RunTimeError,
        Some(Verdict::Accepted) => unreachable!("the first failure is not accepted"),
    })
}

/// One solution to judge (JSON: `name`, `expected`, `language`, `sourceCode`, optional `files`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Solution {
    /// `<expected>/<file name>`, how the report names it.
    pub name: String,
    pub expected: Expected,
    pub language: String,
    #[serde(rename = "sourceCode")]
    pub source_code: String,
    /// Further source files (SPEC §1 `files`), judged with the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<SourceFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no language has the extension {extension:?}")]
    UnknownExtension { path: PathBuf, extension: String },
    #[error("{dir} holds no solutions (expected files under {folders})")]
    NoSolutions { dir: PathBuf, folders: String },
    #[error("{path} is not valid UTF-8")]
    NotText { path: PathBuf },
    #[error("{dir} holds {count} programs; a folder submission must hold one (several files per submission are not supported yet)")]
    NotOneProgram { dir: PathBuf, count: usize },
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The solutions under `dir`, folder by folder in [`Expected::ALL`] order, files sorted by name.
/// A missing folder has no solutions; a file whose extension no language has is an error
/// (hidden files and notes, `.md` / `.txt`, are skipped). A folder inside holding one program is
/// that program (the ICPC format's directory submissions), named by the folder.
pub fn discover(dir: &Path, registry: &Registry) -> Result<Vec<Solution>, ValidateError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ValidateError::Io { path, source }
    };
    std::fs::metadata(dir).map_err(io(dir))?;
    let mut solutions = Vec::new();
    for expected in Expected::ALL {
        let folder = dir.join(expected.as_str());
        if !folder.is_dir() {
            continue;
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let path = entry.map_err(io(&folder))?.path();
            if path.is_dir() {
                let inside = program_files(&path).map_err(io(&path))?;
                match inside.as_slice() {
                    [one] => files.push((one.clone(), path)),
                    _ => {
                        return Err(ValidateError::NotOneProgram {
                            dir: path,
                            count: inside.len(),
                        })
                    }
                }
            } else if path.is_file() && !is_note(&path) {
                files.push((path.clone(), path));
            }
        }
        files.sort();
        for (path, named) in files {
            let extension = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
                .to_owned();
            let language = registry.by_extension(&extension).ok_or_else(|| {
                ValidateError::UnknownExtension {
                    path: path.clone(),
                    extension,
                }
            })?;
            let file = named.file_name().unwrap_or_default().to_string_lossy();
            let source = std::fs::read(&path).map_err(io(&path))?;
            let source_code = String::from_utf8(source)
                .map_err(|_| ValidateError::NotText { path: path.clone() })?;
            solutions.push(Solution {
                name: format!("{}/{file}", expected.as_str()),
                language: language.id.clone(),
                expected,
                source_code,
                files: Vec::new(),
            });
        }
    }
    if solutions.is_empty() {
        return Err(ValidateError::NoSolutions {
            dir: dir.to_owned(),
            folders: Expected::ALL.map(Expected::as_str).join(", "),
        });
    }
    Ok(solutions)
}

/// Hidden files and notes beside the solutions.
fn is_note(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.starts_with('.')
        || matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("md" | "txt" | "yaml" | "yml")
        )
}

/// The program files of a folder submission.
fn program_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && !is_note(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// What the validation settles about one solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SolutionReport {
    pub solution: String,
    pub language: String,
    pub expected: Expected,
    /// What it got; `None` when it could not be judged to the end.
    pub got: Option<Expected>,
    pub score: Option<f64>,
    /// Longest CPU time of a test, ms.
    pub max_time: Option<u64>,
    pub matches: bool,
    /// Why it did not match, when `got` does not say it (compile error, judging failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The slowest test time over the accepted solutions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slowest {
    pub solution: String,
    pub time: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub problem: String,
    pub solutions: Vec<SolutionReport>,
    pub slowest_accepted: Option<Slowest>,
}

impl ValidationReport {
    /// Every solution got its expected outcome.
    pub fn passed(&self) -> bool {
        self.solutions.iter().all(|s| s.matches)
    }

    pub fn mismatches(&self) -> impl Iterator<Item = &SolutionReport> {
        self.solutions.iter().filter(|s| !s.matches)
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "validation of problem {}", self.problem)?;
        for s in &self.solutions {
            let got = match (s.got, &s.note) {
                (Some(got), _) => got.as_str().to_owned(),
                (None, Some(note)) => note.clone(),
                (None, None) => "not judged".to_owned(),
            };
            let score = s.score.map(|x| format!(" score {x}")).unwrap_or_default();
            let time = s.max_time.map(|t| format!(" {t} ms")).unwrap_or_default();
            writeln!(
                f,
                "  {:<8} {} [{}]: expected {}, got {got}{score}{time}",
                if s.matches { "ok" } else { "MISMATCH" },
                s.solution,
                s.language,
                s.expected.as_str(),
            )?;
        }
        match &self.slowest_accepted {
            Some(slowest) => {
                let percent = slowest.time * 100 / slowest.limit.max(1);
                write!(
                    f,
                    "slowest accepted: {} ms ({}) of the {} ms limit ({percent}%)",
                    slowest.time, slowest.solution, slowest.limit
                )?;
                if slowest.time * 2 > slowest.limit {
                    f.write_str(": less than a 2x margin")?;
                }
                writeln!(f)?;
            }
            None => writeln!(f, "slowest accepted: no accepted solution was judged")?,
        }
        let mismatches = self.mismatches().count();
        if mismatches == 0 {
            write!(f, "every solution got its expected outcome")
        } else {
            write!(
                f,
                "{mismatches} of {} solutions did not",
                self.solutions.len()
            )
        }
    }
}

/// Settings of a validation run.
#[derive(Clone, Default)]
pub struct Options {
    pub retry: RetryPolicy,
    /// Solutions judged at once (0 counts as 1).
    pub max_running: usize,
    /// The workflow's name; default `validate-<problem>`.
    pub name: Option<String>,
    /// Where every change of the steps' states is saved.
    pub store: Option<Arc<dyn WorkflowStore>>,
}

/// Step id of the join that writes the report.
pub const REPORT: &str = "report";

/// One judge step per solution (tag `kind=solution`), forked; the report step joins them.
pub fn workflow(
    problem: &str,
    time_limit_ms: u64,
    solutions: &[Solution],
    judge: Arc<dyn SubmissionJudge>,
    options: &Options,
) -> Result<Workflow, ValidateError> {
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| format!("validate-{problem}"));
    let mut builder = WorkflowBuilder::new(name).max_running(options.max_running.max(1));
    if let Some(store) = &options.store {
        builder = builder.store(store.clone());
    }
    let mut joins = Vec::new();
    for (i, solution) in solutions.iter().enumerate() {
        let id = format!("solution-{}", i + 1);
        let submission = Submission {
            id: id.clone(),
            problem: problem.to_owned(),
            language: solution.language.clone(),
            source_code: solution.source_code.clone(),
            files: solution.files.clone(),
            run: None,
        };
        let step = JudgeStep {
            submission,
            judge: judge.clone(),
            results: None,
        };
        builder = builder.step(
            StepSpec::new(&id, Arc::new(step))
                .tag("kind", "solution")
                .tag("solution", &solution.name)
                .tag("expected", solution.expected.as_str())
                .tag("language", &solution.language)
                .retry(options.retry),
        );
        joins.push(id);
    }
    let report = ReportStep {
        problem: problem.to_owned(),
        time_limit_ms,
    };
    builder = builder.step(StepSpec::new(REPORT, Arc::new(report)).tag("kind", "report"));
    let pairs: Vec<(&str, &str)> = joins.iter().map(|id| (id.as_str(), REPORT)).collect();
    Ok(builder.completion_pairs(&pairs).build()?)
}

/// The report of a finished validation workflow.
pub fn report_of(workflow: &Workflow) -> Option<ValidationReport> {
    let status = workflow.status(&Selector::id(REPORT), &[StepState::Succeeded]);
    let result = status.into_iter().next()?.result?;
    serde_json::from_value(result).ok()
}

struct ReportStep {
    problem: String,
    time_limit_ms: u64,
}

#[async_trait]
impl Step for ReportStep {
    async fn run(&self, ctx: StepContext) -> Result<Value, StepError> {
        let mut solutions = Vec::new();
        for status in ctx.status(&Selector::tag("kind", "solution")) {
            let tag = |key: &str| status.tags.get(key).cloned().unwrap_or_default();
            let expected: Expected = serde_json::from_value(Value::String(tag("expected")))
                .map_err(|e| {
                    StepError::fatal(format!("step {} has no expected outcome: {e}", status.id))
                })?;
            let judgement = status
                .result
                .and_then(|r| serde_json::from_value::<Judgement>(r).ok());
            let report = match judgement {
                Some(j) => SolutionReport {
                    solution: tag("solution"),
                    language: tag("language"),
                    expected,
                    // A partial score is also a first failing verdict: say what matched.
                    got: if expected.matches(&j) {
                        Some(expected)
                    } else {
                        outcome(&j)
                    },
                    score: j.score,
                    max_time: j.max_time(),
                    matches: expected.matches(&j),
                    note: match j.end {
                        End::Done => None,
                        End::CompileError => Some("compile error".to_owned()),
                        End::Invalid | End::Error => Some(format!(
                            "{}: {}",
                            if j.end == End::Invalid {
                                "invalid"
                            } else {
                                "error"
                            },
                            j.reason.unwrap_or_default()
                        )),
                    },
                },
                None => SolutionReport {
                    solution: tag("solution"),
                    language: tag("language"),
                    expected,
                    got: None,
                    score: None,
                    max_time: None,
                    matches: false,
                    note: Some(format!(
                        "not judged ({}): {}",
                        status.state,
                        status.error.unwrap_or_default()
                    )),
                },
            };
            solutions.push(report);
        }
        let slowest_accepted = solutions
            .iter()
            .filter(|s| s.expected == Expected::Accepted && s.got == Some(Expected::Accepted))
            .filter_map(|s| s.max_time.map(|t| (t, s)))
            .max_by_key(|(t, _)| *t)
            .map(|(time, s)| Slowest {
                solution: s.solution.clone(),
                time,
                limit: self.time_limit_ms,
            });
        let report = ValidationReport {
            problem: self.problem.clone(),
            solutions,
            slowest_accepted,
        };
        serde_json::to_value(report).map_err(|e| StepError::fatal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::judging::fake::{infra_error, tests, FakeJudge};
    use crate::workflow::judging::TestOutcome;
    use tokio_util::sync::CancellationToken;
    use Verdict::*;

    fn judged(score: f64, results: &[Verdict]) -> Judgement {
        Judgement {
            submission: "s".into(),
            end: End::Done,
            score: Some(score),
            tests: results
                .iter()
                .enumerate()
                .map(|(i, &result)| TestOutcome {
                    test_case: i as u32 + 1,
                    subtask: None,
                    result,
                    time: Some(1),
                    memory: Some(1),
                })
                .collect(),
            reason: None,
        }
    }

    #[test]
    fn the_outcome_is_the_first_failing_verdict() {
        assert_eq!(
            outcome(&judged(1.0, &[Accepted, Accepted])),
            Some(Expected::Accepted)
        );
        assert_eq!(
            outcome(&judged(0.0, &[Accepted, Wrong, TimeLimitExceeded])),
            Some(Expected::WrongAnswer)
        );
        assert_eq!(
            outcome(&judged(0.0, &[TimeLimitExceeded, Wrong])),
            Some(Expected::TimeLimitExceeded)
        );
        assert_eq!(
            outcome(&judged(0.0, &[MemoryLimitExceeded])),
            Some(Expected::RunTimeError)
        );
        assert_eq!(
            outcome(&judged(0.0, &[Error])),
            Some(Expected::RunTimeError)
        );
        let compile_error = Judgement {
            end: End::CompileError,
            ..judged(0.0, &[])
        };
        assert_eq!(outcome(&compile_error), None);
        assert!(!Expected::WrongAnswer.matches(&compile_error));
    }

    #[test]
    fn partially_accepted_means_a_score_strictly_between_0_and_1() {
        let pa = Expected::PartiallyAccepted;
        assert!(pa.matches(&judged(0.5, &[Accepted, Wrong])));
        assert!(!pa.matches(&judged(0.0, &[Wrong, Wrong])));
        assert!(!pa.matches(&judged(1.0, &[Accepted])));
    }

    #[test]
    fn discovery_files_solutions_by_folder_and_extension() {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        };
        put("wrong_answer/b.py");
        put("accepted/z.cpp");
        put("accepted/a.c");
        put("run_time_error/mle.py");
        let registry = Registry::builtin().unwrap();
        let found = discover(dir.path(), &registry).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|s| (s.name.as_str(), s.language.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("accepted/a.c", "gcc-12"),
                ("accepted/z.cpp", "g++-12"),
                ("wrong_answer/b.py", "python-3.11"),
                ("run_time_error/mle.py", "python-3.11"),
            ]
        );
        // Notes and hidden files beside the programs are not programs.
        put("accepted/notes.txt");
        put("accepted/README.md");
        put("accepted/.gitkeep");
        assert_eq!(discover(dir.path(), &registry).unwrap().len(), 4);
        // A folder holding one program is that program, named by the folder.
        put("brute_force/slow/main.py");
        put("brute_force/slow/README.md");
        let found = discover(dir.path(), &registry).unwrap();
        let last = found.last().unwrap();
        assert_eq!(
            (last.name.as_str(), last.expected),
            ("brute_force/slow", Expected::BruteForce)
        );
        put("brute_force/slow/helper.py");
        assert!(matches!(
            discover(dir.path(), &registry),
            Err(ValidateError::NotOneProgram { count: 2, .. })
        ));
        std::fs::remove_file(dir.path().join("brute_force/slow/helper.py")).unwrap();
        put("accepted/notes.xyz");
        assert!(matches!(
            discover(dir.path(), &registry),
            Err(ValidateError::UnknownExtension { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            discover(empty.path(), &registry),
            Err(ValidateError::NoSolutions { .. })
        ));
    }

    fn solution(name: &str, expected: Expected) -> Solution {
        Solution {
            name: format!("{}/{name}", expected.as_str()),
            expected,
            language: "python-3.11".into(),
            source_code: "print(1)".into(),
            files: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_validation_reports_mismatches_and_the_slowest_accepted_time() {
        let solutions = [
            solution("ok.py", Expected::Accepted),
            solution("slow.py", Expected::Accepted),
            solution("wa.py", Expected::WrongAnswer),
            solution("mislabelled.py", Expected::TimeLimitExceeded),
            solution("broken.py", Expected::RunTimeError),
        ];
        let judge = FakeJudge::new();
        judge.then("solution-1", tests(&[(Accepted, 10), (Accepted, 20)]));
        judge.then("solution-2", tests(&[(Accepted, 10), (Accepted, 2000)]));
        judge.then("solution-3", tests(&[(Accepted, 10), (Wrong, 5)]));
        judge.then("solution-4", tests(&[(Wrong, 10)]));
        judge.then("solution-5", infra_error("docker is gone"));
        let options = Options {
            retry: RetryPolicy::attempts(2).with_backoff(Default::default(), Default::default()),
            max_running: 2,
            ..Options::default()
        };
        let wf = workflow("p", 3000, &solutions, Arc::new(judge), &options).unwrap();
        wf.start(&Selector::all(), false).unwrap();
        let end = wf.run(&CancellationToken::new()).await;
        assert!(end.is_complete(), "{end}");
        let report = report_of(&wf).unwrap();
        let verdicts: Vec<_> = report
            .solutions
            .iter()
            .map(|s| (s.solution.as_str(), s.got, s.matches))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("accepted/ok.py", Some(Expected::Accepted), true),
                ("accepted/slow.py", Some(Expected::Accepted), true),
                ("wrong_answer/wa.py", Some(Expected::WrongAnswer), true),
                (
                    "time_limit_exceeded/mislabelled.py",
                    Some(Expected::WrongAnswer),
                    false
                ),
                ("run_time_error/broken.py", None, false),
            ]
        );
        assert!(!report.passed());
        assert_eq!(
            report.slowest_accepted,
            Some(Slowest {
                solution: "accepted/slow.py".into(),
                time: 2000,
                limit: 3000
            })
        );
        let text = report.to_string();
        assert!(
            text.contains("MISMATCH time_limit_exceeded/mislabelled.py"),
            "{text}"
        );
        assert!(text.contains("docker is gone"), "{text}");
        assert!(text.contains("less than a 2x margin"), "{text}");
    }
}
