//! Problems: one model for the three folder formats of SPEC §5, loading, validation and a cache.
//!
//! A folder under the problems root is recognised by the file it holds:
//! - `statement.json`: STAOJ ([`staoj`]), tests inline in `test-cases.json`;
//! - `problem.yaml`: the ICPC / Kattis problem package format ([`icpc`]), legacy and newer drafts;
//! - `problem.xml`: a Polygon package with its tests ([`polygon`]).
//!
//! All three load into [`Problem`]: tests in order, limits, subtasks (groups) with their share of
//! the score, and the [`Checker`] that decides whether an output is right. Test data of packages
//! stays in the package's files ([`Data::File`]) and is streamed when a test runs, never held in
//! memory for the whole problem.

mod flags;
pub mod icpc;
pub mod polygon;
mod staoj;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::sync::lock;
use serde::Deserialize;

pub use flags::DefaultFlags;

/// The folder format a problem was loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Staoj,
    Icpc,
    Polygon,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Staoj => "staoj",
            Format::Icpc => "icpc",
            Format::Polygon => "polygon",
        }
    }
}

/// A validated problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub id: String,
    pub name: String,
    pub format: Format,
    /// The problem's folder (checkers and test files are found below it).
    pub dir: PathBuf,
    /// CPU time limit per test, ms.
    pub time_ms: u64,
    /// Memory limit per test, KB.
    pub memory_kb: u64,
    /// Most a program may write per test, bytes; `None` = the judge's default.
    pub output_limit_bytes: Option<u64>,
    /// Empty when the problem has no subtasks. Test `subtask` numbers index it (1-based).
    pub subtasks: Vec<Subtask>,
    /// How the tests' results make the score.
    pub scoring: Scoring,
    /// In the order they run.
    pub tests: Vec<TestCase>,
    /// How an output is judged.
    pub checker: Checker,
    /// Where the program reads its input and writes its output.
    pub io: ProblemIo,
    /// Limits of the checker's runs; `None` fields = the judge's defaults.
    pub validation: ValidationLimits,
    /// How the program meets the checker.
    pub interaction: Interaction,
}

/// Most passes a multi-pass test may have.
pub const MAX_PASSES: u32 = 100;

/// How a test runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Interaction {
    /// The program reads the input and writes an output; then the checker judges the output.
    #[default]
    Batch,
    /// The program and the checker (an ICPC output validator acting as interactor) run at
    /// the same time, each one's stdout the other's stdin; the checker's exit decides.
    Interactive,
    /// ICPC multi-pass: after accepting a pass the validator may write `nextpass.in` to its
    /// feedback folder (which it keeps between passes), and the program runs again on it, at
    /// most `passes` times in all.
    MultiPass { passes: u32 },
    /// Polygon: a testlib interactor (C or C++) talks to the program, writing a log the
    /// problem's testlib checker then judges as the program's output.
    Interactor(CheckerProgram),
}

/// A subtask (STAOJ) or top-level test group (packages).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Subtask {
    /// Its share of the problem's score, in [0, 1]; the shares of a problem add up to 1.
    pub score: f64,
    /// STAOJ: the constraints text; packages: the group's name (`secret/group1`, `1`).
    #[serde(default)]
    pub constraints: String,
    /// How its tests' results make its score. STAOJ subtasks are pass-fail.
    #[serde(skip, default)]
    pub aggregation: Aggregation,
    /// Subtasks (1-based, earlier ones) that must get their full share for this one to score at
    /// all (ICPC `require_pass`, Polygon group dependencies).
    #[serde(skip, default)]
    pub requires: Vec<u32>,
}

/// How a group's tests make its score (ICPC `score_aggregation`, Polygon `points-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Its full share when every test is accepted, else nothing (Polygon `complete-group`).
    #[default]
    PassFail,
    /// Its share × the weighted mean of its tests' fractions (Polygon `each-test`: each test
    /// worth its points).
    Sum,
    /// Its share × the smallest of its tests' fractions.
    Min,
}

impl Aggregation {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::PassFail => "pass-fail",
            Aggregation::Sum => "sum",
            Aggregation::Min => "min",
        }
    }
}

/// How a problem's score is made from its tests (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// 1 when every test is accepted, else 0. Subtasks, if any, only say which groups failed.
    PassFail,
    /// The sum of the subtasks' scores; tests in no subtask (ICPC samples of a scoring problem)
    /// count for nothing.
    Subtasks,
    /// No subtasks: the tests with a weight above 0 aggregated as one group worth 1 (an ICPC
    /// scoring problem whose `secret` has no groups).
    Tests(Aggregation),
}

/// One test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// A name for people: `1` (STAOJ), `secret/group1/03` (ICPC), `07` (Polygon).
    pub name: String,
    pub input: Data,
    /// The answer file: the expected output, or what the checker is told.
    pub answer: Data,
    /// 1-based subtask number, `None` outside subtasks.
    pub subtask: Option<u32>,
    /// Its weight in a `Sum` aggregation (Polygon points; 1 elsewhere); 0 = not scored.
    pub weight: f64,
    /// The most it can score in the package's own points: an ICPC validator's `score.txt` is
    /// divided by it to give the test's fraction. 1 where a package has no points.
    pub max_score: f64,
    /// Arguments of the checker for this test: the default checker's flags
    /// (`case_sensitive`, `float_tolerance 1e-6`, ...) or a custom validator's extra arguments.
    pub checker_args: Vec<String>,
}

/// Test data: inline (STAOJ) or a file of the package, read as bytes when needed.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Inline(Arc<str>),
    File(PathBuf),
}

impl Data {
    /// A buffered reader of the bytes.
    pub fn open(&self) -> std::io::Result<Box<dyn BufRead + Send>> {
        Ok(match self {
            Data::Inline(text) => Box::new(Cursor::new(ArcBytes(text.clone()))),
            Data::File(path) => Box::new(BufReader::with_capacity(
                64 * 1024,
                std::fs::File::open(path)?,
            )),
        })
    }

    /// Size in bytes.
    pub fn len(&self) -> std::io::Result<u64> {
        match self {
            Data::Inline(text) => Ok(text.len() as u64),
            Data::File(path) => Ok(std::fs::metadata(path)?.len()),
        }
    }

    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Writes the bytes to `dst` (a new file): a kernel copy for files, so a large test costs no
    /// memory.
    pub fn copy_to(&self, dst: &Path) -> std::io::Result<()> {
        match self {
            Data::Inline(text) => std::fs::write(dst, text.as_bytes()),
            Data::File(path) => std::fs::copy(path, dst).map(|_| ()),
        }
    }
}

struct ArcBytes(Arc<str>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How outputs are judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Checker {
    /// Token by token in the worker, as the ICPC default output validator does it, with each
    /// test's `checker_args` as its flags (STAOJ tests carry `case_sensitive`: SPEC §3's token
    /// equality).
    Default,
    /// An ICPC output validator: `validator input answer feedback_dir/ [args] < output`; exit 42
    /// accepts, 43 rejects; `score.txt` / `score_multiplier.txt` give a fraction.
    Icpc(CheckerProgram),
    /// A testlib checker: `check input output answer`; exit 0 OK, 1 WA, 2 PE, 3 FAIL, 7 points.
    Testlib(CheckerProgram),
}

/// The source of a checker in the package, compiled once per content (see `crate::check`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckerProgram {
    /// The folder holding its files (every file in it is copied for compiling: headers too).
    pub dir: PathBuf,
    /// The files compiled (C, C++, Java) or run (Python: the first), relative to `dir`.
    pub sources: Vec<PathBuf>,
    pub language: CheckerLanguage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckerLanguage {
    C,
    Cpp,
    Python,
    Java,
}

impl CheckerLanguage {
    /// The language of a source file by its extension.
    pub fn of(path: &Path) -> Option<CheckerLanguage> {
        match path.extension()?.to_str()? {
            "c" => Some(CheckerLanguage::C),
            "cpp" | "cc" | "cxx" | "c++" | "C" => Some(CheckerLanguage::Cpp),
            "py" => Some(CheckerLanguage::Python),
            "java" => Some(CheckerLanguage::Java),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckerLanguage::C => "C",
            CheckerLanguage::Cpp => "C++",
            CheckerLanguage::Python => "Python",
            CheckerLanguage::Java => "Java",
        }
    }
}

/// Polygon's `input-file` / `output-file`: `None` = stdin / stdout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProblemIo {
    pub input_file: Option<String>,
    pub output_file: Option<String>,
}

/// Limits of a checker's run (ICPC `validation_time`, `validation_memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidationLimits {
    pub time_ms: Option<u64>,
    pub memory_kb: Option<u64>,
    /// ICPC `limits.validation_passes`: most runs of a multi-pass test.
    pub passes: Option<u32>,
}

/// What the operator sets for packages that do not say (`--default-time-limit`, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Defaults {
    /// Time limit of an ICPC package without `limits.time_limit` or `.timelimit`, ms.
    pub time_ms: u64,
    /// Memory limit of an ICPC package without `limits.memory`, KB (the format's 2048 MiB).
    pub memory_kb: u64,
    /// Output limit of an ICPC package without `limits.output`, bytes (the format's 8 MiB).
    pub output_bytes: u64,
}

impl Default for Defaults {
    /// 1 s, 2048 MiB, 8 MiB: the typical system defaults of the ICPC package format.
    fn default() -> Self {
        Defaults {
            time_ms: 1000,
            memory_kb: 2048 * 1024,
            output_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Problem {
    pub fn has_subtasks(&self) -> bool {
        !self.subtasks.is_empty()
    }

    /// The one-test problem an ad-hoc run is judged as: its input, its expected output (empty
    /// when none was given: the judge then does not compare), its limits, the default checker
    /// with STAOJ's token rules.
    pub fn ad_hoc(run: &crate::protocol::RunSpec) -> Problem {
        Problem {
            id: crate::protocol::RUN_PROBLEM.to_owned(),
            name: "ad-hoc run".to_owned(),
            format: Format::Staoj,
            dir: PathBuf::new(),
            time_ms: run.time_limit_ms,
            memory_kb: run.memory_limit_kb,
            output_limit_bytes: None,
            subtasks: Vec::new(),
            scoring: Scoring::PassFail,
            // Each repetition is a test of its own, on the same input.
            tests: (1..=run.number_of_runs.unwrap_or(1).max(1))
                .map(|n| TestCase {
                    name: n.to_string(),
                    input: Data::Inline(run.stdin.as_str().into()),
                    answer: Data::Inline(run.expected_output.as_deref().unwrap_or("").into()),
                    subtask: None,
                    weight: 1.0,
                    max_score: 1.0,
                    checker_args: vec!["case_sensitive".to_owned()],
                })
                .collect(),
            checker: Checker::Default,
            io: ProblemIo::default(),
            validation: ValidationLimits::default(),
            interaction: Interaction::Batch,
        }
    }
}

/// Why a problem cannot be used. Any of these ends a submission with `error` (SPEC §5): it is a
/// deployment fault, and the submission can be judged again once the problem is fixed.
#[derive(Debug, thiserror::Error)]
pub enum ProblemError {
    #[error("problem {id:?} not found: {path} does not exist")]
    Missing { id: String, path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {source}")]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A package file that does not parse or says something the format does not allow.
    #[error("{path} is not valid: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("problem {id:?} is inconsistent: {reason}")]
    Inconsistent { id: String, reason: String },
}

/// True when `id` is a syntactically possible problem id: `[a-z0-9-]+` (no dots, no slashes).
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The file that marks each format, in the order they are looked for.
const MARKERS: [(&str, Format); 3] = [
    ("statement.json", Format::Staoj),
    ("problem.yaml", Format::Icpc),
    ("problem.xml", Format::Polygon),
];

/// The format of the folder `dir`, by the file it holds.
pub fn detect(dir: &Path) -> Option<Format> {
    MARKERS
        .iter()
        .find(|(marker, _)| dir.join(marker).is_file())
        .map(|&(_, format)| format)
}

/// Loads and validates problem `id` from `root`. The caller has checked `is_valid_id(id)`.
pub fn load(root: &Path, id: &str) -> Result<Problem, ProblemError> {
    load_with(root, id, &Defaults::default())
}

/// [`load`] with the operator's defaults for what a package does not say.
pub fn load_with(root: &Path, id: &str, defaults: &Defaults) -> Result<Problem, ProblemError> {
    // Absolute and without links: the folder is bind-mounted into checkers' containers by this
    // path, and every file the judge reads must stay below it.
    let dir = root.join(id);
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let mut problem = match detect(&dir) {
        Some(Format::Staoj) => staoj::load(&dir, id)?,
        Some(Format::Icpc) => icpc::load(&dir, id, defaults)?,
        Some(Format::Polygon) => polygon::load(&dir, id)?,
        // No marker: the STAOJ loader names what is missing, as it always has.
        None => staoj::load(&dir, id)?,
    };
    problem.dir = dir;
    check(&problem)?;
    contained(&problem)?;
    Ok(problem)
}

/// Every file of a package the judge reads (test data, the checker's folder) is inside the
/// package, links resolved: a package cannot make the worker read a host file into a sandbox,
/// a compile error or a reason.
fn contained(problem: &Problem) -> Result<(), ProblemError> {
    let outside = |path: &Path| ProblemError::Invalid {
        path: path.to_owned(),
        reason: format!(
            "it is not inside the problem's folder {} (a link out of the package?)",
            problem.dir.display()
        ),
    };
    let check = |path: &Path| match std::fs::canonicalize(path) {
        Ok(real) if real.starts_with(&problem.dir) => Ok(()),
        Ok(_) => Err(outside(path)),
        Err(source) => Err(ProblemError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    };
    for test in &problem.tests {
        for data in [&test.input, &test.answer] {
            if let Data::File(path) = data {
                check(path)?;
            }
        }
    }
    if let Checker::Icpc(program) | Checker::Testlib(program) = &problem.checker {
        check(&program.dir)?;
        let entries =
            std::fs::read_dir(&program.dir).map_err(|source| ProblemError::Unreadable {
                path: program.dir.clone(),
                source,
            })?;
        for entry in entries {
            let entry = entry.map_err(|source| ProblemError::Unreadable {
                path: program.dir.clone(),
                source,
            })?;
            check(&entry.path())?;
        }
    }
    Ok(())
}

/// Subtask shares are finite, not negative, and add up to 1 (within 1e-6); none is fine.
fn shares(subtasks: &[Subtask]) -> Result<(), String> {
    if subtasks.is_empty() {
        return Ok(());
    }
    if let Some((i, s)) = subtasks
        .iter()
        .enumerate()
        .find(|(_, s)| !(s.score.is_finite() && s.score >= 0.0))
    {
        return Err(format!(
            "subtask {} has an invalid score {}",
            i + 1,
            s.score
        ));
    }
    let total: f64 = subtasks.iter().map(|s| s.score).sum();
    if (total - 1.0).abs() > 1e-6 {
        return Err(format!("subtask scores add up to {total}, not 1"));
    }
    Ok(())
}

/// What every format must hold, whatever its loader checked.
fn check(problem: &Problem) -> Result<(), ProblemError> {
    let inconsistent = |reason: String| ProblemError::Inconsistent {
        id: problem.id.clone(),
        reason,
    };
    if problem.time_ms == 0 {
        return Err(inconsistent("time limit must be positive, is 0".into()));
    }
    if problem.memory_kb == 0 {
        return Err(inconsistent("memory limit must be positive, is 0".into()));
    }
    if problem.tests.is_empty() {
        return Err(inconsistent("it has no test cases".into()));
    }
    if let Interaction::MultiPass { passes } = problem.interaction {
        if !matches!(problem.checker, Checker::Icpc(_)) {
            return Err(inconsistent(
                "a multi-pass problem needs its own validator to write the next pass's input"
                    .into(),
            ));
        }
        if !(2..=MAX_PASSES).contains(&passes) {
            return Err(inconsistent(format!(
                "validation_passes must be from 2 to {MAX_PASSES}, is {passes}"
            )));
        }
    }
    if let Interaction::Interactor(program) = &problem.interaction {
        if !matches!(program.language, CheckerLanguage::C | CheckerLanguage::Cpp) {
            return Err(inconsistent(format!(
                "the interactor is in {}; interactors must be C or C++",
                program.language.as_str()
            )));
        }
        if !matches!(problem.checker, Checker::Testlib(_)) {
            return Err(inconsistent(
                "an interactor's log needs a testlib checker".into(),
            ));
        }
    }
    if matches!(problem.interaction, Interaction::Interactor(_))
        && problem.io != ProblemIo::default()
    {
        return Err(inconsistent(
            "an interactive program talks through stdin and stdout, not files".into(),
        ));
    }
    if problem.interaction == Interaction::Interactive {
        if !matches!(problem.checker, Checker::Icpc(_)) {
            return Err(inconsistent(
                "an interactive problem needs its own validator to talk to the program".into(),
            ));
        }
        if problem.io != ProblemIo::default() {
            return Err(inconsistent(
                "an interactive program talks through stdin and stdout, not files".into(),
            ));
        }
    }
    let n = problem.subtasks.len();
    shares(&problem.subtasks).map_err(inconsistent)?;
    for (i, test) in problem.tests.iter().enumerate() {
        if let Some(s) = test.subtask {
            if s == 0 || s as usize > n {
                return Err(inconsistent(format!(
                    "test {} names subtask {s}, but the problem has {n} subtask(s)",
                    i + 1
                )));
            }
        }
        if !(test.weight.is_finite() && test.weight >= 0.0) {
            return Err(inconsistent(format!(
                "test {} has an invalid weight {}",
                i + 1,
                test.weight
            )));
        }
    }
    for (i, subtask) in problem.subtasks.iter().enumerate() {
        let number = i as u32 + 1;
        let tests = problem.tests.iter().filter(|t| t.subtask == Some(number));
        let (count, weight) = tests.fold((0, 0.0), |(c, w), t| (c + 1, w + t.weight));
        if count == 0 {
            return Err(inconsistent(format!("subtask {number} has no tests")));
        }
        if subtask.aggregation == Aggregation::Sum && weight <= 0.0 && subtask.score > 0.0 {
            return Err(inconsistent(format!(
                "subtask {number} is worth {} but its tests weigh nothing",
                subtask.score
            )));
        }
    }
    if let Scoring::Tests(_) = problem.scoring {
        if n > 0 {
            return Err(inconsistent(
                "a problem scored by its tests cannot have subtasks".into(),
            ));
        }
        if !problem.tests.iter().any(|t| t.weight > 0.0) {
            return Err(inconsistent("no test is scored".into()));
        }
    }
    if problem.checker == Checker::Default {
        for (i, test) in problem.tests.iter().enumerate() {
            if let Err(reason) = DefaultFlags::parse(&test.checker_args) {
                return Err(inconsistent(format!(
                    "test {} ({}): default output validator flags {:?}: {reason}",
                    i + 1,
                    test.name,
                    test.checker_args
                )));
            }
        }
    }
    Ok(())
}

/// What the judge understood of `problem`, as lines for people (`executioner problem check`).
pub fn describe(problem: &Problem) -> Vec<String> {
    let mut lines = vec![
        format!(
            "problem {}: {} ({} format)",
            problem.id,
            problem.name,
            problem.format.as_str()
        ),
        format!(
            "limits: time {} ms, memory {} KB, output {}",
            problem.time_ms,
            problem.memory_kb,
            problem
                .output_limit_bytes
                .map_or("the judge's default".to_owned(), |b| format!("{b} bytes"))
        ),
        format!(
            "io: input from {}, output to {}",
            problem.io.input_file.as_deref().unwrap_or("stdin"),
            problem.io.output_file.as_deref().unwrap_or("stdout")
        ),
        format!(
            "scoring: {}",
            match problem.scoring {
                Scoring::PassFail => "pass-fail (1 when every test is accepted)".to_owned(),
                Scoring::Subtasks => "the sum of the subtasks' scores".to_owned(),
                Scoring::Tests(a) => format!("the tests' scores, aggregated by {}", a.as_str()),
            }
        ),
        format!(
            "runs: {}",
            match &problem.interaction {
                Interaction::Batch => "batch (the program reads the input, then the checker \
                                       judges its output)"
                    .to_owned(),
                Interaction::Interactive => {
                    "interactive (the output validator talks to the program)".to_owned()
                }
                Interaction::MultiPass { passes } => format!(
                    "multi-pass, at most {passes} passes (the program runs again on the \
                     validator's nextpass.in)"
                ),
                Interaction::Interactor(program) => format!(
                    "interactive: testlib interactor in {}, {} ({:?}); the checker judges its log",
                    program.language.as_str(),
                    program.dir.display(),
                    program.sources
                ),
            }
        ),
        format!("tests: {}", problem.tests.len()),
    ];
    let outside: Vec<&str> = problem
        .tests
        .iter()
        .filter(|t| t.subtask.is_none())
        .map(|t| t.name.as_str())
        .collect();
    if !outside.is_empty() && problem.has_subtasks() {
        lines.push(format!(
            "  in no subtask: {} test(s): {}",
            outside.len(),
            outside.join(" ")
        ));
    }
    for (i, subtask) in problem.subtasks.iter().enumerate() {
        let number = i as u32 + 1;
        let tests: Vec<&TestCase> = problem
            .tests
            .iter()
            .filter(|t| t.subtask == Some(number))
            .collect();
        let requires = if subtask.requires.is_empty() {
            String::new()
        } else {
            format!(", requires {:?}", subtask.requires)
        };
        lines.push(format!(
            "  subtask {number} {}: share {:.4}, {}, {} test(s){requires}: {}",
            subtask.constraints,
            subtask.score,
            subtask.aggregation.as_str(),
            tests.len(),
            tests
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    let args: Vec<&Vec<String>> = problem
        .tests
        .iter()
        .map(|t| &t.checker_args)
        .filter(|a| !a.is_empty())
        .collect();
    lines.push(match &problem.checker {
        Checker::Default => "checker: the default output validator".to_owned(),
        Checker::Icpc(program) => format!(
            "checker: ICPC output validator in {}, {} ({:?})",
            program.language.as_str(),
            program.dir.display(),
            program.sources
        ),
        Checker::Testlib(program) => format!(
            "checker: testlib checker in {}, {} ({:?})",
            program.language.as_str(),
            program.dir.display(),
            program.sources
        ),
    });
    if let Some(first) = args.first() {
        lines.push(format!(
            "checker arguments: {:?} ({} of {} tests have some)",
            first,
            args.len(),
            problem.tests.len()
        ));
    }
    if let Some(ms) = problem.validation.time_ms {
        lines.push(format!("checker time limit: {ms} ms"));
    }
    if let Some(kb) = problem.validation.memory_kb {
        lines.push(format!("checker memory limit: {kb} KB"));
    }
    lines
}

/// Problems under one root, cached: a problem is read again only when one of its files changed.
#[derive(Debug)]
pub struct ProblemStore {
    root: PathBuf,
    defaults: Defaults,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    stamp: Stamp,
    problem: Arc<Problem>,
}

/// What a problem's files looked like when it was loaded: every file's path, size and mtime
/// (a package's tree is walked: a few hundred stats, far less than judging one test).
type Stamp = Vec<(PathBuf, u64, SystemTime)>;

fn stamp(dir: &Path) -> Option<Stamp> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).ok()? {
            let entry = entry.ok()?;
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                out.push((entry.path(), meta.len(), meta.modified().ok()?));
            }
        }
    }
    out.sort();
    Some(out)
}

impl ProblemStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self::with_defaults(root, Defaults::default())
    }

    pub fn with_defaults(root: impl Into<PathBuf>, defaults: Defaults) -> Self {
        ProblemStore {
            root: root.into(),
            defaults,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// The problem `id` (a valid id), loaded from disk or from the cache.
    pub fn get(&self, id: &str) -> Result<Arc<Problem>, ProblemError> {
        let stamp = stamp(&self.root.join(id));
        if let Some(stamp) = &stamp {
            let cache = lock(&self.cache);
            if let Some(cached) = cache.get(id).filter(|c| &c.stamp == stamp) {
                return Ok(cached.problem.clone());
            }
        }
        let problem = Arc::new(load_with(&self.root, id, &self.defaults)?);
        if let Some(stamp) = stamp {
            let mut cache = lock(&self.cache);
            cache.insert(
                id.to_owned(),
                Cached {
                    stamp,
                    problem: problem.clone(),
                },
            );
        }
        Ok(problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id("test-base"));
        assert!(is_valid_id("a1"));
        for bad in ["", "../x", "a/b", "A", "a.b", "a b", "..", "é"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn data_reads_inline_and_file_bytes_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.in");
        std::fs::write(&path, b"1 2\n\xff").unwrap();
        let mut inline = Vec::new();
        Data::Inline("1 2\n".into())
            .open()
            .unwrap()
            .read_to_end(&mut inline)
            .unwrap();
        assert_eq!(inline, b"1 2\n");
        let file = Data::File(path.clone());
        let mut bytes = Vec::new();
        file.open().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, b"1 2\n\xff");
        assert_eq!(file.len().unwrap(), 5);
        let copy = dir.path().join("copy");
        file.copy_to(&copy).unwrap();
        assert_eq!(std::fs::read(copy).unwrap(), b"1 2\n\xff");
    }

    use std::io::Read;

    /// A Polygon package whose test is a link out of the package, or whose checker folder
    /// holds one, is refused: the worker would read a host file.
    #[test]
    fn links_out_of_a_package_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("p");
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::create_dir_all(dir.join("files")).unwrap();
        std::fs::write(
            dir.join("problem.xml"),
            r#"<problem><judging input-file="" output-file=""><testset name="tests">
            <time-limit>1000</time-limit><memory-limit>67108864</memory-limit>
            <test-count>1</test-count><input-path-pattern>tests/%02d</input-path-pattern>
            <answer-path-pattern>tests/%02d.a</answer-path-pattern><tests><test/></tests>
            </testset></judging><assets><checker type="testlib">
            <source path="files/check.cpp" type="cpp.g++17"/></checker></assets></problem>"#,
        )
        .unwrap();
        std::fs::write(dir.join("files/check.cpp"), "int main() {}").unwrap();
        std::fs::write(dir.join("tests/01.a"), "1").unwrap();
        let secret = root.path().join("secret");
        std::fs::write(&secret, "host data").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("tests/01")).unwrap();
        let err = load(root.path(), "p").unwrap_err().to_string();
        assert!(err.contains("not inside the problem's folder"), "{err}");
        // A link inside the package is fine.
        std::fs::remove_file(dir.join("tests/01")).unwrap();
        std::fs::write(dir.join("tests/real"), "1 2").unwrap();
        std::os::unix::fs::symlink(dir.join("tests/real"), dir.join("tests/01")).unwrap();
        assert!(load(root.path(), "p").is_ok());
        // A header linked out of the checker's folder is refused too.
        std::os::unix::fs::symlink(&secret, dir.join("files/testlib.h")).unwrap();
        let err = load(root.path(), "p").unwrap_err().to_string();
        assert!(err.contains("testlib.h"), "{err}");
    }

    #[test]
    fn the_format_is_detected_by_its_marker_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(detect(dir.path()), None);
        std::fs::write(dir.path().join("problem.xml"), "").unwrap();
        assert_eq!(detect(dir.path()), Some(Format::Polygon));
        std::fs::write(dir.path().join("problem.yaml"), "").unwrap();
        assert_eq!(detect(dir.path()), Some(Format::Icpc));
        std::fs::write(dir.path().join("statement.json"), "").unwrap();
        assert_eq!(detect(dir.path()), Some(Format::Staoj));
    }
}
