//! The ICPC / Kattis problem package format (`problem.yaml`): legacy and the 2023-07 / 2025-09
//! drafts.
//!
//! # What is read
//!
//! - `problem_format_version`: absent, `legacy` or `legacy-icpc` is the legacy format;
//!   `2023-07-draft`, `2023-07`, `draft`, `2025-09`, `2025-09-draft` the newer one. Unknown keys
//!   anywhere are ignored.
//! - Limits: `limits.time_limit` (s), else a DOMjudge `.timelimit` file, else the operator's
//!   default; `limits.memory` / `limits.output` (MiB); `limits.validation_time` (s) /
//!   `limits.validation_memory` (MiB). Everything is rounded up to the model's units.
//! - Tests: `data/sample`, then `data/secret`, walked depth first; in each folder, test cases
//!   (`X.in` with its `X.ans`) and sub-folders together in byte order of their names. Names
//!   starting with `.` or `-` are skipped. Symlinks are followed only to targets inside the
//!   package.
//! - Checker: the newer format's `output_validator/` (a program folder), the legacy
//!   `output_validators/` (exactly one program: a folder or a single file). Either format falls
//!   back to the other's folder, as packages in transition do.
//! - Checker arguments per test: legacy `validator_flags` followed by the nearest `testdata.yaml`'s
//!   `output_validator_flags`; newer: `output_validator_args` of the nearest `test_group.yaml`
//!   (`testdata.yaml` in early drafts) that sets it, replaced by the test's own `X.yaml`. For the
//!   default checker they are split on whitespace into single flags.
//!
//! # Groups and scores
//!
//! The top-level folders of `data/secret` are the groups, one [`Subtask`] each, named by their
//! path under `data/` (`secret/group1`). Deeper folders are plain folders of their group. Samples
//! and tests directly in `secret` belong to no subtask.
//!
//! Pass-fail problems: every subtask is worth `1/n` and is pass-fail; each test weighs 1.
//!
//! Scoring problems, newer format (`test_group.yaml` keys `max_score`, `score_aggregation`,
//! `require_pass`; the 2023-07 draft's `scoring: {score, aggregation, require_pass}` too):
//! - `secret` is worth `max_score` (100); with groups, a group's share is its `max_score` over
//!   secret's, and the groups must add up to secret exactly. The 2023-07 draft splits what is
//!   left evenly among groups that do not say; 2025-09 requires every group to say.
//! - A test is worth the group's max over its test count in a `sum` group, the group's max in a
//!   `min` or `pass-fail` group (the divisor of a validator's `score.txt`).
//! - `secret` with `pass-fail` aggregation is all or nothing: `Scoring::Tests(PassFail)`, the
//!   groups flattened. Without groups, secret's aggregation scores the tests directly.
//! - Not representable, so refused: `unbounded` scores, `min` over groups, `require_pass` on
//!   `sample`, scoring keys below the groups, `require_pass` on a group that is not pass-fail.
//!
//! Scoring problems, legacy (`testdata.yaml`: `grading`, `grader_flags`, `accept_score`,
//! `reject_score`, `range`; the file of the nearest folder applies, as a whole):
//! - A group `g` can score at most `R_g`: its `range` maximum if finite, else the sum of its
//!   tests' `accept_score` (`sum`) or their largest `accept_score` (`min`, `avg`). Its share is
//!   `R_g / Σ R`; a finite `range` maximum of `secret` must equal `Σ R`.
//! - `sum`: the group's score over `R_g` is the `accept_score`-weighted mean of the tests'
//!   fractions when each test's max score is its `accept_score` scaled so that they add up to
//!   `R_g` (exactly `accept_score` without a `range`). `min`: each test's max score is `R_g`.
//!   `avg`: a `Sum` of equal weights, each test's max score `R_g`. Without groups the same rules
//!   apply to `secret` as a whole (`Scoring::Tests`).
//! - Samples are not scored (as `ignore_sample` does). `on_reject` is ignored: every test runs.
//!   `worst_error` / `first_error` only pick which rejection is reported, so they are accepted.
//! - Refused: `grading: custom`, `max`, `always_accept`, `accept_if_any_accepted`, a non-zero
//!   `reject_score`, a positive `range` minimum, `min`/`avg` over groups, tests directly in
//!   `secret` next to groups, nested `testdata.yaml` below a group other than a `sum` without
//!   `range` under a `sum` group, and `grading: {objective: min}`. Pass-fail problems refuse
//!   `grading: custom`, `always_accept` and `accept_if_any_accepted` (they change verdicts).
//!
//! Interactive problems (`type: interactive`, legacy `validation: custom interactive`) run the
//! output validator as the interactor; multi-pass problems (`type: multi-pass`,
//! `limits.validation_passes`, default 2) run the program again on the `nextpass.in` the
//! validator writes (see `judge`).
//!
//! Not supported yet (refused with a reason): interactive multi-pass and submit-answer problems,
//! validators with `build` / `run` scripts, tests with `.files` folders or `args`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::{
    Aggregation, Checker, CheckerLanguage, CheckerProgram, Data, Defaults, Format, Interaction,
    Problem, ProblemError, ProblemIo, Scoring, Subtask, TestCase, ValidationLimits,
};

/// Folders deeper than this under `data/` are refused (a symlink loop shows up as one).
const MAX_DEPTH: usize = 32;

/// Loads the ICPC package in `dir`. What every format must hold is checked by the caller.
pub(super) fn load(dir: &Path, id: &str, defaults: &Defaults) -> Result<Problem, ProblemError> {
    let root = std::fs::canonicalize(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ProblemError::Missing {
            id: id.to_owned(),
            path: dir.to_owned(),
        },
        _ => ProblemError::Unreadable {
            path: dir.to_owned(),
            source,
        },
    })?;
    let pkg = Package { id, root };
    let yaml_path = pkg.root.join("problem.yaml");
    let meta = pkg.read_yaml(&yaml_path)?.unwrap_or(Value::Null);
    let version = version(&yaml_path, &meta)?;
    let (scoring, mut interaction) = pkg.problem_type(&yaml_path, &meta, version)?;
    let (time_ms, memory_kb, output_limit_bytes, validation) =
        pkg.limits(&yaml_path, &meta, defaults)?;
    if let (Interaction::MultiPass { passes }, Some(given)) = (&mut interaction, validation.passes)
    {
        *passes = given;
    }
    let checker = pkg.checker(&meta, version)?;

    let data = pkg.root.join("data");
    let mut walk = Walk::default();
    if let Some((data, meta)) = pkg.entry(&data)? {
        if !meta.is_dir() {
            return Err(pkg.invalid(&data, "data must be a folder"));
        }
        walk.dirs.push((String::new(), data.clone()));
        for part in ["sample", "secret"] {
            if let Some((sub, meta)) = pkg.entry(&data.join(part))? {
                if meta.is_dir() {
                    pkg.walk(&sub, part, 1, &mut walk)?;
                }
            }
        }
    }
    let configs = pkg.configs(&walk, version)?;
    let groups: Vec<String> = walk
        .dirs
        .iter()
        .map(|(rel, _)| rel)
        .filter(|rel| group_of(&format!("{rel}/x")).as_deref() == Some(rel.as_str()))
        .cloned()
        .collect();
    for group in &groups {
        if !walk
            .tests
            .iter()
            .any(|t| group_of(&t.name).as_ref() == Some(group))
        {
            return Err(pkg.inconsistent(format!("group {group} has no test cases")));
        }
    }

    let default_checker = checker == Checker::Default;
    let mut tests = Vec::with_capacity(walk.tests.len());
    for found in &walk.tests {
        let checker_args = match version {
            Version::Legacy => legacy_args(&pkg, &meta, &yaml_path, &configs, found)?,
            Version::Draft2023 | Version::Spec2025 => pkg.new_args(&configs, found)?,
        };
        let checker_args = if default_checker {
            // The default checker takes `float_tolerance 1e-6` as two arguments.
            checker_args
                .iter()
                .flat_map(|a| a.split_whitespace().map(str::to_owned))
                .collect()
        } else {
            checker_args
        };
        tests.push(TestCase {
            name: found.name.clone(),
            input: Data::File(found.input.clone()),
            answer: Data::File(found.answer.clone()),
            subtask: None,
            weight: 1.0,
            max_score: 1.0,
            checker_args,
        });
    }

    let (subtasks, scoring) = match (scoring, version) {
        (Kind::PassFail, version) => {
            if version == Version::Legacy {
                legacy_verdicts(&pkg, &configs)?;
            }
            pass_fail(&groups, &walk, &mut tests)
        }
        (Kind::Scoring, Version::Legacy) => {
            legacy_scoring(&pkg, &groups, &walk, &configs, &mut tests)?
        }
        (Kind::Scoring, v) => new_scoring(&pkg, v, &groups, &walk, &configs, &mut tests)?,
    };
    let name = name(&meta).filter(|n| !n.trim().is_empty());
    Ok(Problem {
        id: id.to_owned(),
        name: name.unwrap_or_else(|| id.to_owned()),
        format: Format::Icpc,
        dir: dir.to_owned(),
        time_ms,
        memory_kb,
        output_limit_bytes,
        subtasks,
        scoring,
        tests,
        checker,
        io: ProblemIo::default(),
        validation,
        interaction,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Legacy,
    /// The 2023-07 draft: group scores may be left out and are inferred.
    Draft2023,
    /// 2025-09 and later drafts.
    Spec2025,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    PassFail,
    Scoring,
}

fn version(path: &Path, meta: &Value) -> Result<Version, ProblemError> {
    let invalid = |reason: String| ProblemError::Invalid {
        path: path.to_owned(),
        reason,
    };
    match field(meta, "problem_format_version") {
        None => Ok(Version::Legacy),
        Some(Value::String(v)) => match v.as_str() {
            "legacy" | "legacy-icpc" => Ok(Version::Legacy),
            "2023-07-draft" | "2023-07" => Ok(Version::Draft2023),
            "draft" | "2025-09" | "2025-09-draft" => Ok(Version::Spec2025),
            other => Err(invalid(format!(
                "unknown problem_format_version {other:?} (known: legacy, legacy-icpc, \
                 2023-07-draft, 2023-07, draft, 2025-09, 2025-09-draft)"
            ))),
        },
        Some(other) => Err(invalid(format!(
            "problem_format_version must be a string, is {}",
            describe(other)
        ))),
    }
}

/// `name`: a string, or a map of language to string (English preferred, else the first).
fn name(meta: &Value) -> Option<String> {
    match field(meta, "name")? {
        Value::Mapping(names) => names
            .get("en")
            .and_then(scalar)
            .or_else(|| names.values().find_map(scalar)),
        other => scalar(other),
    }
}

/// A test found under `data/`.
#[derive(Debug)]
struct Found {
    /// Under `data/`, without `.in`: `secret/group1/03`.
    name: String,
    input: PathBuf,
    answer: PathBuf,
    /// Its own `X.yaml`, if any.
    config: Option<PathBuf>,
    /// The folder holding it, under `data/`: `secret/group1`.
    parent: String,
}

#[derive(Debug, Default)]
struct Walk {
    tests: Vec<Found>,
    /// Every folder walked (its name under `data/`, `""` for `data` itself, and its real path),
    /// in walking order.
    dirs: Vec<(String, PathBuf)>,
    /// The real paths walked, so that a symlink loop is caught.
    seen: HashSet<PathBuf>,
}

/// A folder's `testdata.yaml` / `test_group.yaml`, by the folder's name under `data/`.
type Configs = HashMap<String, (PathBuf, Value)>;

/// The top-level group of test `name` (`secret/group1/03` → `secret/group1`), if any.
fn group_of(name: &str) -> Option<String> {
    let mut parts = name.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("secret"), Some(group), Some(_)) => Some(format!("secret/{group}")),
        _ => None,
    }
}

/// `rel` and the folders above it, nearest first, ending with `""` (`data` itself).
fn ancestors(rel: &str) -> Vec<&str> {
    let mut out = vec![rel];
    let mut rest = rel;
    while let Some(i) = rest.rfind('/') {
        rest = &rest[..i];
        out.push(rest);
    }
    if !rel.is_empty() {
        out.push("");
    }
    out
}

/// The package being loaded: its id and canonical root.
struct Package<'a> {
    id: &'a str,
    root: PathBuf,
}

impl Package<'_> {
    fn inconsistent(&self, reason: impl Into<String>) -> ProblemError {
        ProblemError::Inconsistent {
            id: self.id.to_owned(),
            reason: reason.into(),
        }
    }

    fn invalid(&self, path: &Path, reason: impl Into<String>) -> ProblemError {
        ProblemError::Invalid {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    /// `path` (inside the package) and its metadata, or `None` when it does not exist. A symlink
    /// is resolved to its target, which must stay inside the package.
    fn entry(&self, path: &Path) -> Result<Option<(PathBuf, std::fs::Metadata)>, ProblemError> {
        let unreadable = |source| ProblemError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        if !meta.file_type().is_symlink() {
            return Ok(Some((path.to_owned(), meta)));
        }
        let target = match std::fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.invalid(path, "the symlink's target does not exist"));
            }
            Err(e) => return Err(unreadable(e)),
        };
        if !target.starts_with(&self.root) {
            return Err(self.invalid(
                path,
                format!(
                    "the symlink points outside the package, to {}",
                    target.display()
                ),
            ));
        }
        let meta = std::fs::metadata(&target).map_err(unreadable)?;
        Ok(Some((target, meta)))
    }

    /// The YAML file at `path`, `None` when there is none. It must hold a map (or nothing).
    fn read_yaml(&self, path: &Path) -> Result<Option<Value>, ProblemError> {
        let Some((real, meta)) = self.entry(path)? else {
            return Ok(None);
        };
        if !meta.is_file() {
            return Err(self.invalid(path, "not a file"));
        }
        let bytes = std::fs::read(&real).map_err(|source| ProblemError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
        // An empty file is an empty configuration, not an error.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(Value::Null));
        }
        let value: Value = serde_norway::from_slice(&bytes)
            .map_err(|e| self.invalid(path, format!("YAML does not parse: {e}")))?;
        match value {
            Value::Mapping(_) | Value::Null => Ok(Some(value)),
            other => Err(self.invalid(
                path,
                format!("expected a map of keys, found {}", describe(&other)),
            )),
        }
    }

    fn problem_type(
        &self,
        path: &Path,
        meta: &Value,
        version: Version,
    ) -> Result<(Kind, Interaction), ProblemError> {
        let mut interaction = Interaction::Batch;
        // Legacy `validation: custom interactive` (also seen in transitional packages).
        if let Some(validation) = field(meta, "validation") {
            let text = validation.as_str().ok_or_else(|| {
                self.invalid(path, "validation must be a string like `custom score`")
            })?;
            let mut words = text.split_whitespace();
            match words.next() {
                Some("default" | "custom") => {}
                _ => {
                    return Err(self.invalid(
                        path,
                        format!("validation {text:?} must begin with `default` or `custom`"),
                    ))
                }
            }
            for word in words {
                match word {
                    "score" => {}
                    "interactive" if text.starts_with("custom") => {
                        interaction = Interaction::Interactive
                    }
                    "interactive" => {
                        return Err(self.invalid(
                            path,
                            "validation `default interactive`: an interactive problem needs a \
                             custom validator",
                        ))
                    }
                    other => {
                        return Err(self.invalid(
                            path,
                            format!("unknown validation option {other:?} in {text:?}"),
                        ))
                    }
                }
            }
        }
        let types: Vec<String> = match field(meta, "type") {
            None => vec!["pass-fail".to_owned()],
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Sequence(seq)) if version != Version::Legacy && !seq.is_empty() => seq
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.invalid(path, "type must hold strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(self.invalid(
                    path,
                    format!(
                        "type must be a string{}, is {}",
                        if version == Version::Legacy {
                            ""
                        } else {
                            " or a non-empty list of strings"
                        },
                        describe(other)
                    ),
                ))
            }
        };
        let known: &[&str] = match version {
            Version::Legacy => &["pass-fail", "scoring"],
            _ => &[
                "pass-fail",
                "scoring",
                "interactive",
                "multi-pass",
                "submit-answer",
            ],
        };
        if let Some(t) = types.iter().find(|t| !known.contains(&t.as_str())) {
            return Err(self.invalid(path, format!("unknown problem type {t:?}")));
        }
        if types.iter().any(|t| t == "interactive") {
            interaction = Interaction::Interactive;
        }
        if types.iter().any(|t| t == "multi-pass") {
            if interaction == Interaction::Interactive {
                return Err(
                    self.inconsistent("interactive multi-pass problems are not supported yet")
                );
            }
            // `limits.validation_passes` (default 2) is read with the other limits.
            interaction = Interaction::MultiPass { passes: 2 };
        }
        if let Some(t) = types.iter().find(|t| t.as_str() == "submit-answer") {
            return Err(self.inconsistent(format!("{t} problems are not supported yet")));
        }
        let scoring = types.iter().any(|t| t == "scoring");
        if scoring && types.iter().any(|t| t == "pass-fail") {
            return Err(self.invalid(path, "type cannot be both pass-fail and scoring"));
        }
        if version == Version::Legacy {
            if let Some(objective) = field(meta, "grading").and_then(|g| field(g, "objective")) {
                match objective.as_str() {
                    Some("max") => {}
                    Some("min") => {
                        return Err(self.inconsistent(
                            "grading objective `min` (lower scores are better) is not supported",
                        ))
                    }
                    _ => return Err(self.invalid(path, "grading.objective must be min or max")),
                }
            }
        }
        let kind = if scoring {
            Kind::Scoring
        } else {
            Kind::PassFail
        };
        Ok((kind, interaction))
    }

    /// Time (ms), memory (KB), output (bytes) and the checker's limits.
    fn limits(
        &self,
        path: &Path,
        meta: &Value,
        defaults: &Defaults,
    ) -> Result<(u64, u64, Option<u64>, ValidationLimits), ProblemError> {
        let limits = match field(meta, "limits") {
            None => Value::Null,
            Some(l @ Value::Mapping(_)) => l.clone(),
            Some(other) => {
                return Err(self.invalid(
                    path,
                    format!("limits must be a map, is {}", describe(other)),
                ))
            }
        };
        let positive = |key: &str| -> Result<Option<f64>, ProblemError> {
            let Some(value) = field(&limits, key) else {
                return Ok(None);
            };
            match value.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
                _ => Err(self.invalid(
                    path,
                    format!(
                        "limits.{key} must be a positive number, is {}",
                        describe(value)
                    ),
                )),
            }
        };
        let time_ms = match positive("time_limit")? {
            Some(seconds) => round_up(seconds, 1000.0),
            None => match self.timelimit_file()? {
                Some(seconds) => round_up(seconds, 1000.0),
                None => defaults.time_ms,
            },
        };
        let memory_kb = positive("memory")?.map_or(defaults.memory_kb, |m| round_up(m, 1024.0));
        let output =
            positive("output")?.map_or(defaults.output_bytes, |m| round_up(m, 1024.0 * 1024.0));
        let validation = ValidationLimits {
            time_ms: positive("validation_time")?.map(|s| round_up(s, 1000.0)),
            memory_kb: positive("validation_memory")?.map(|m| round_up(m, 1024.0)),
            passes: match field(&limits, "validation_passes") {
                None => None,
                Some(value) => Some(
                    value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            self.invalid(
                                path,
                                format!(
                                    "limits.validation_passes must be a whole number, is {}",
                                    describe(value)
                                ),
                            )
                        })?,
                ),
            },
        };
        Ok((time_ms, memory_kb, Some(output), validation))
    }

    /// DOMjudge's `.timelimit`: seconds as a decimal number.
    fn timelimit_file(&self) -> Result<Option<f64>, ProblemError> {
        let path = self.root.join(".timelimit");
        let Some((real, _)) = self.entry(&path)? else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&real).map_err(|source| ProblemError::Unreadable {
            path: path.clone(),
            source,
        })?;
        match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Ok(Some(s)),
            _ => Err(self.invalid(
                &path,
                format!(
                    "must hold a positive number of seconds, holds {:?}",
                    text.trim()
                ),
            )),
        }
    }

    fn checker(&self, meta: &Value, version: Version) -> Result<Checker, ProblemError> {
        let single = self.root.join("output_validator");
        let legacy = self.root.join("output_validators");
        let custom = match version {
            Version::Legacy => {
                let text = field(meta, "validation").and_then(Value::as_str);
                text.is_some_and(|t| t.split_whitespace().next() == Some("custom"))
            }
            _ => self.entry(&single)?.is_some() || self.entry(&legacy)?.is_some(),
        };
        if !custom {
            return Ok(Checker::Default);
        }
        // The format's own folder first; the other one as packages in transition have it.
        let (first, second) = match version {
            Version::Legacy => (&legacy, &single),
            _ => (&single, &legacy),
        };
        for candidate in [first, second] {
            let Some((real, meta)) = self.entry(candidate)? else {
                continue;
            };
            if !meta.is_dir() {
                return Err(self.invalid(candidate, "must be a folder"));
            }
            let program = if candidate == &single {
                self.program(&real, "output_validator")?
            } else {
                self.one_program(&real)?
            };
            return Ok(Checker::Icpc(program));
        }
        Err(self.inconsistent(
            "validation is custom but the package has no output validator \
             (output_validators/ or output_validator/)",
        ))
    }

    /// The only program in legacy `output_validators/`: a folder or a single source file.
    fn one_program(&self, dir: &Path) -> Result<CheckerProgram, ProblemError> {
        let mut programs = Vec::new();
        for (name, path, meta) in self.list(dir)? {
            programs.push((name, path, meta));
        }
        match programs.as_slice() {
            [] => Err(self.inconsistent("output_validators/ holds no program")),
            [(name, path, meta)] => {
                let label = format!("output_validators/{name}");
                if meta.is_dir() {
                    self.program(path, &label)
                } else {
                    // A single file is a program folder holding just that file.
                    let language = CheckerLanguage::of(Path::new(name)).ok_or_else(|| {
                        self.inconsistent(format!(
                            "{label}: the language of the output validator is not known \
                             (C, C++, Python or Java sources)"
                        ))
                    })?;
                    Ok(CheckerProgram {
                        dir: dir.to_owned(),
                        sources: vec![PathBuf::from(name)],
                        language,
                    })
                }
            }
            _ => Err(self.inconsistent(format!(
                "output_validators/ holds {} programs ({}); only one output validator is \
                 supported",
                programs.len(),
                programs
                    .iter()
                    .map(|(n, _, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// The entries of `dir` that count (not `.x` or `-x`), sorted by name, symlinks resolved.
    fn list(&self, dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>, ProblemError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ProblemError::Unreadable {
            path: dir.to_owned(),
            source,
        })?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| ProblemError::Unreadable {
                path: dir.to_owned(),
                source,
            })?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(self.invalid(&path, "the file name is not UTF-8"));
            };
            // The format's auxiliary files (`.git`, `-draft`): the judge acts as if absent.
            if name.starts_with('.') || name.starts_with('-') {
                continue;
            }
            if let Some((real, meta)) = self.entry(&path)? {
                out.push((name, real, meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The program in folder `dir`: its language and sources from the files' extensions.
    fn program(&self, dir: &Path, label: &str) -> Result<CheckerProgram, ProblemError> {
        // Every file of the folder is copied for compiling: none may lead outside the package.
        self.check_tree(dir, 0)?;
        let files: Vec<String> = self
            .list(dir)?
            .into_iter()
            .filter(|(_, _, meta)| meta.is_file())
            .map(|(name, _, _)| name)
            .collect();
        if files.iter().any(|f| f == "build" || f == "run") {
            return Err(
                self.inconsistent(format!("{label}: build/run scripts are not supported yet"))
            );
        }
        let of = |lang: CheckerLanguage| -> Vec<&String> {
            files
                .iter()
                .filter(|f| CheckerLanguage::of(Path::new(f.as_str())) == Some(lang))
                .collect()
        };
        let (cpp, c, py, java) = (
            of(CheckerLanguage::Cpp),
            of(CheckerLanguage::C),
            of(CheckerLanguage::Python),
            of(CheckerLanguage::Java),
        );
        let (language, sources): (CheckerLanguage, Vec<&String>) = if !cpp.is_empty() {
            // C files next to C++ ones are compiled with them.
            let mut all: Vec<&String> = cpp.into_iter().chain(c).collect();
            all.sort();
            (CheckerLanguage::Cpp, all)
        } else if !c.is_empty() {
            (CheckerLanguage::C, c)
        } else if !py.is_empty() {
            let entry = match py.as_slice() {
                [one] => *one,
                _ => py
                    .iter()
                    .copied()
                    .find(|f| *f == "__main__.py")
                    .ok_or_else(|| {
                        self.inconsistent(format!(
                            "{label}: several Python files but no __main__.py to run"
                        ))
                    })?,
            };
            (CheckerLanguage::Python, vec![entry])
        } else if !java.is_empty() {
            (CheckerLanguage::Java, java)
        } else {
            return Err(self.inconsistent(format!(
                "{label}: no source file of a known language (C, C++, Python, Java)"
            )));
        };
        Ok(CheckerProgram {
            dir: dir.to_owned(),
            sources: sources.into_iter().map(PathBuf::from).collect(),
            language,
        })
    }

    /// Checks every entry below `dir` (symlinks stay inside the package).
    fn check_tree(&self, dir: &Path, depth: usize) -> Result<(), ProblemError> {
        if depth > MAX_DEPTH {
            return Err(self.invalid(dir, "folders nest too deep (a symlink loop?)"));
        }
        for (_, path, meta) in self.list(dir)? {
            if meta.is_dir() {
                self.check_tree(&path, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Walks folder `dir` (named `rel` under `data/`): its tests and sub-folders, in order.
    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        depth: usize,
        out: &mut Walk,
    ) -> Result<(), ProblemError> {
        if depth > MAX_DEPTH || !out.seen.insert(dir.to_owned()) {
            return Err(self.invalid(dir, "folders nest too deep or loop (symlinks?)"));
        }
        out.dirs.push((rel.to_owned(), dir.to_owned()));
        enum Item {
            Test(PathBuf),
            Dir(PathBuf),
        }
        let mut items: Vec<(String, Item)> = Vec::new();
        let mut file_dirs = HashSet::new();
        for (name, path, meta) in self.list(dir)? {
            if meta.is_dir() {
                match name.strip_suffix(".files") {
                    Some(test) => {
                        file_dirs.insert(test.to_owned());
                    }
                    None => items.push((name, Item::Dir(path))),
                }
            } else if let Some(test) = name.strip_suffix(".in").filter(|t| !t.is_empty()) {
                if meta.is_file() {
                    items.push((test.to_owned(), Item::Test(path)));
                }
            }
        }
        // Tests and folders together, by name (`String` orders by bytes).
        items.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = items.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(self.inconsistent(format!(
                "test {rel}/{0} and folder {rel}/{0} have the same name",
                pair[0].0
            )));
        }
        for (base, item) in items {
            let name = format!("{rel}/{base}");
            match item {
                Item::Dir(path) => self.walk(&path, &name, depth + 1, out)?,
                Item::Test(input) => {
                    if file_dirs.contains(&base) {
                        return Err(self.inconsistent(format!(
                            "test {name} has a {base}.files folder: file input is not supported \
                             yet"
                        )));
                    }
                    let answer = match self.entry(&dir.join(format!("{base}.ans")))? {
                        Some((answer, meta)) if meta.is_file() => answer,
                        _ => {
                            return Err(self.inconsistent(format!(
                                "test {name} has no answer file {name}.ans"
                            )))
                        }
                    };
                    let config = match self.entry(&dir.join(format!("{base}.yaml")))? {
                        Some((config, meta)) if meta.is_file() => Some(config),
                        _ => None,
                    };
                    out.tests.push(Found {
                        name,
                        input,
                        answer,
                        config,
                        parent: rel.to_owned(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The group configuration file of every folder walked that has one.
    fn configs(&self, walk: &Walk, version: Version) -> Result<Configs, ProblemError> {
        let names: &[&str] = match version {
            Version::Legacy => &["testdata.yaml"],
            // Early drafts named it `testdata.yaml` too.
            _ => &["test_group.yaml", "testdata.yaml"],
        };
        let mut out = Configs::new();
        for (rel, dir) in &walk.dirs {
            for name in names {
                let path = dir.join(name);
                if let Some(value) = self.read_yaml(&path)? {
                    out.insert(rel.clone(), (path, value));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Newer format: `output_validator_args` inherited key by key, the test's `X.yaml` last.
    fn new_args(&self, configs: &Configs, found: &Found) -> Result<Vec<String>, ProblemError> {
        let mut args = Vec::new();
        let mut submission_args = Vec::new();
        let mut own = Vec::new();
        for rel in ancestors(&found.parent) {
            if let Some((path, value)) = configs.get(rel) {
                own.push((path.clone(), value.clone()));
            }
        }
        own.reverse();
        if let Some(path) = &found.config {
            if let Some(value) = self.read_yaml(path)? {
                own.push((path.clone(), value));
            }
        }
        // Farthest first, so that nearer files replace what farther ones said.
        for (path, value) in &own {
            if let Some(v) = field(value, "output_validator_args") {
                args = self.strings(path, "output_validator_args", v)?;
            }
            if let Some(v) = field(value, "args") {
                submission_args = self.strings(path, "args", v)?;
            }
        }
        if !submission_args.is_empty() {
            return Err(self.inconsistent(format!(
                "test {} passes arguments to submissions (args): not supported yet",
                found.name
            )));
        }
        Ok(args)
    }

    /// A list of strings, or one string split on whitespace.
    fn strings(&self, path: &Path, key: &str, value: &Value) -> Result<Vec<String>, ProblemError> {
        match value {
            Value::Sequence(seq) => seq
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| {
                        self.invalid(
                            path,
                            format!("{key} must hold strings, holds {}", describe(v)),
                        )
                    })
                })
                .collect(),
            Value::String(s) => Ok(s.split_whitespace().map(str::to_owned).collect()),
            Value::Null => Ok(Vec::new()),
            other => Err(self.invalid(
                path,
                format!("{key} must be a list of strings, is {}", describe(other)),
            )),
        }
    }
}

/// Legacy: `validator_flags`, then the nearest `testdata.yaml`'s `output_validator_flags`.
fn legacy_args(
    pkg: &Package,
    meta: &Value,
    yaml_path: &Path,
    configs: &Configs,
    found: &Found,
) -> Result<Vec<String>, ProblemError> {
    let mut args = match field(meta, "validator_flags") {
        None => Vec::new(),
        Some(v) => pkg.strings(yaml_path, "validator_flags", v)?,
    };
    if let Some((path, config)) = nearest(configs, &found.parent) {
        match field(config, "output_validator_flags") {
            None => {}
            // The map form names a validator; only its flags matter with one validator.
            Some(map @ Value::Mapping(_)) => {
                if let Some(flags) = field(map, "flags") {
                    args.extend(pkg.strings(path, "output_validator_flags.flags", flags)?);
                }
            }
            Some(v) => args.extend(pkg.strings(path, "output_validator_flags", v)?),
        }
    }
    Ok(args)
}

/// Legacy: the `testdata.yaml` that applies to folder `rel`, the nearest one up.
fn nearest<'c>(configs: &'c Configs, rel: &str) -> Option<&'c (PathBuf, Value)> {
    ancestors(rel).into_iter().find_map(|a| configs.get(a))
}

/// Legacy pass-fail: a grader that would accept what the judge rejects is refused (score modes
/// and numbers do not matter without scores).
fn legacy_verdicts(pkg: &Package, configs: &Configs) -> Result<(), ProblemError> {
    for (path, value) in configs.values() {
        let flags = match field(value, "grader_flags") {
            Some(flags) => pkg.strings(path, "grader_flags", flags)?,
            None => Vec::new(),
        };
        let custom = field(value, "grading").and_then(Value::as_str) == Some("custom");
        if let Some(what) = flags
            .iter()
            .map(String::as_str)
            .find(|f| matches!(*f, "always_accept" | "accept_if_any_accepted"))
            .or(custom.then_some("grading: custom"))
        {
            return Err(
                pkg.inconsistent(format!("{}: {what} is not supported yet", path.display()))
            );
        }
    }
    Ok(())
}

/// Pass-fail: each top-level group of secret is a pass-fail subtask of equal share.
fn pass_fail(groups: &[String], walk: &Walk, tests: &mut [TestCase]) -> (Vec<Subtask>, Scoring) {
    let n = groups.len();
    let subtasks = groups
        .iter()
        .map(|g| Subtask {
            score: 1.0 / n as f64,
            constraints: g.clone(),
            aggregation: Aggregation::PassFail,
            requires: Vec::new(),
        })
        .collect();
    for (test, found) in tests.iter_mut().zip(&walk.tests) {
        test.subtask = group_number(groups, &found.name);
    }
    (subtasks, Scoring::PassFail)
}

fn group_number(groups: &[String], test: &str) -> Option<u32> {
    let group = group_of(test)?;
    groups
        .iter()
        .position(|g| *g == group)
        .map(|i| i as u32 + 1)
}

fn is_secret(name: &str) -> bool {
    name.starts_with("secret/")
}

/// `max_score` / `score_aggregation` / `require_pass` of one folder (or the 2023-07 draft's
/// `scoring: {score, aggregation, require_pass}`).
#[derive(Debug, Default)]
struct GroupScoring {
    /// `None`: not given; `Some(None)`: `unbounded`.
    max: Option<Option<f64>>,
    aggregation: Option<Aggregation>,
    require_pass: Vec<String>,
}

impl GroupScoring {
    fn says_anything(&self) -> bool {
        self.max.is_some() || self.aggregation.is_some() || !self.require_pass.is_empty()
    }
}

fn group_scoring(
    pkg: &Package,
    config: Option<&(PathBuf, Value)>,
) -> Result<GroupScoring, ProblemError> {
    let Some((path, value)) = config else {
        return Ok(GroupScoring::default());
    };
    let draft = field(value, "scoring");
    let get =
        |new: &str, old: &str| field(value, new).or_else(|| draft.and_then(|d| field(d, old)));
    let max = match get("max_score", "score") {
        None => None,
        Some(Value::String(s)) if s == "unbounded" => Some(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Some(Some(x)),
            _ => {
                return Err(pkg.invalid(
                    path,
                    format!(
                        "max_score must be a non-negative number or `unbounded`, is {}",
                        describe(v)
                    ),
                ))
            }
        },
    };
    let aggregation = match get("score_aggregation", "aggregation") {
        None => None,
        Some(v) => Some(match v.as_str() {
            Some("pass-fail") => Aggregation::PassFail,
            Some("sum") => Aggregation::Sum,
            Some("min") => Aggregation::Min,
            _ => {
                return Err(pkg.invalid(
                    path,
                    format!(
                        "score_aggregation must be pass-fail, sum or min, is {}",
                        describe(v)
                    ),
                ))
            }
        }),
    };
    let require_pass = match get("require_pass", "require_pass") {
        None => Vec::new(),
        Some(v) => pkg.strings(path, "require_pass", v)?,
    };
    Ok(GroupScoring {
        max,
        aggregation,
        require_pass,
    })
}

/// Scoring problems, newer format (see the module documentation).
fn new_scoring(
    pkg: &Package,
    version: Version,
    groups: &[String],
    walk: &Walk,
    configs: &Configs,
    tests: &mut [TestCase],
) -> Result<(Vec<Subtask>, Scoring), ProblemError> {
    let secret = group_scoring(pkg, configs.get("secret"))?;
    let secret_max = match secret.max {
        None => 100.0,
        Some(None) => return Err(pkg.inconsistent("unbounded max_score is not supported")),
        Some(Some(m)) if m > 0.0 => m,
        Some(Some(m)) => {
            return Err(pkg.inconsistent(format!("secret has max_score {m}: it must be positive")))
        }
    };
    if secret.require_pass.iter().any(|r| r == "sample") {
        return Err(pkg.inconsistent("require_pass on sample is not supported yet"));
    }
    if let Some(r) = secret.require_pass.first() {
        return Err(pkg.inconsistent(format!(
            "secret requires {r:?} to pass: secret may only require sample"
        )));
    }
    // Scoring keys below the groups would make nested groups.
    for (rel, _) in &walk.dirs {
        if rel.matches('/').count() >= 2 && group_scoring(pkg, configs.get(rel))?.says_anything() {
            return Err(pkg.inconsistent(format!(
                "{rel} sets scoring keys: nested scoring groups are not supported"
            )));
        }
    }
    let secret_aggregation = secret.aggregation.unwrap_or(Aggregation::Sum);
    let numbered: Vec<(usize, bool)> = walk
        .tests
        .iter()
        .enumerate()
        .map(|(i, f)| (i, is_secret(&f.name)))
        .collect();
    for (test, (_, secret_test)) in tests.iter_mut().zip(&numbered) {
        test.weight = if *secret_test { 1.0 } else { 0.0 };
    }
    let secret_count = numbered.iter().filter(|(_, s)| *s).count();

    if groups.is_empty() || secret_aggregation == Aggregation::PassFail {
        if secret_aggregation == Aggregation::PassFail {
            for g in groups {
                let aggregation = group_scoring(pkg, configs.get(g))?.aggregation;
                if aggregation.is_some_and(|a| a != Aggregation::PassFail) {
                    return Err(pkg.inconsistent(format!(
                        "secret is pass-fail, so group {g} must be pass-fail too"
                    )));
                }
            }
        }
        // Without groups (or all or nothing), secret's aggregation scores its tests.
        let max = match secret_aggregation {
            Aggregation::Sum => secret_max / secret_count.max(1) as f64,
            Aggregation::Min | Aggregation::PassFail => secret_max,
        };
        for (test, (_, secret_test)) in tests.iter_mut().zip(&numbered) {
            if *secret_test {
                test.max_score = max;
            }
        }
        return Ok((Vec::new(), Scoring::Tests(secret_aggregation)));
    }
    if secret_aggregation == Aggregation::Min {
        return Err(pkg.inconsistent("secret aggregates its groups with min: not supported yet"));
    }
    if let Some(found) = walk.tests.iter().find(|f| f.parent == "secret") {
        return Err(pkg.inconsistent(format!(
            "data/secret holds both test cases ({}) and groups",
            found.name
        )));
    }
    let mut scorings = Vec::with_capacity(groups.len());
    for g in groups {
        scorings.push(group_scoring(pkg, configs.get(g))?);
    }
    let given: f64 = scorings.iter().filter_map(|s| s.max.flatten()).sum();
    let missing = scorings.iter().filter(|s| s.max.is_none()).count();
    let mut maxes = Vec::with_capacity(groups.len());
    for (g, s) in groups.iter().zip(&scorings) {
        let max = match s.max {
            Some(Some(m)) => m,
            Some(None) => return Err(pkg.inconsistent("unbounded max_score is not supported")),
            // The 2023-07 draft shares out what the other groups leave.
            None if version == Version::Draft2023 => (secret_max - given) / missing as f64,
            None => {
                return Err(pkg.inconsistent(format!(
                    "group {g} has no max_score (required when secret's is bounded)"
                )))
            }
        };
        if max <= 0.0 {
            return Err(pkg.inconsistent(format!(
                "group {g} is worth {max} points: groups must be worth something"
            )));
        }
        maxes.push(max);
    }
    let total: f64 = maxes.iter().sum();
    if (total - secret_max).abs() > 1e-9 * secret_max.max(1.0) {
        return Err(pkg.inconsistent(format!(
            "group scores add up to {total}, not max_score {secret_max}"
        )));
    }
    let mut subtasks = Vec::with_capacity(groups.len());
    for (i, (g, s)) in groups.iter().zip(&scorings).enumerate() {
        let mut requires = Vec::new();
        for r in &s.require_pass {
            if r == "sample" {
                return Err(pkg.inconsistent("require_pass on sample is not supported yet"));
            }
            let wanted = if r.starts_with("secret/") {
                r.clone()
            } else {
                format!("secret/{r}")
            };
            let Some(j) = groups.iter().position(|x| *x == wanted) else {
                return Err(pkg.inconsistent(format!(
                    "group {g} requires {r:?}, which is not a group of secret"
                )));
            };
            if j >= i {
                return Err(pkg.inconsistent(format!(
                    "group {g} requires {wanted}, which does not come before it"
                )));
            }
            if scorings[j].aggregation.unwrap_or(Aggregation::PassFail) != Aggregation::PassFail {
                return Err(pkg.inconsistent(format!(
                    "group {g} requires {wanted}, which is not pass-fail"
                )));
            }
            requires.push(j as u32 + 1);
        }
        subtasks.push(Subtask {
            score: maxes[i] / secret_max,
            constraints: g.clone(),
            aggregation: s.aggregation.unwrap_or(Aggregation::PassFail),
            requires,
        });
    }
    for (i, subtask) in subtasks.iter().enumerate() {
        let number = i as u32 + 1;
        let members: Vec<usize> = walk
            .tests
            .iter()
            .enumerate()
            .filter(|(_, f)| group_number(groups, &f.name) == Some(number))
            .map(|(k, _)| k)
            .collect();
        let max = match subtask.aggregation {
            Aggregation::Sum => maxes[i] / members.len().max(1) as f64,
            Aggregation::Min | Aggregation::PassFail => maxes[i],
        };
        for k in members {
            if let Some(test) = tests.get_mut(k) {
                test.subtask = Some(number);
                test.max_score = max;
            }
        }
    }
    Ok((subtasks, Scoring::Subtasks))
}

/// The default grader's score mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sum,
    Min,
    Avg,
}

/// A legacy `testdata.yaml`, as far as scores go.
#[derive(Debug, Clone, Copy)]
struct Grading {
    mode: Mode,
    accept: f64,
    reject: f64,
    range: (f64, f64),
}

impl Default for Grading {
    fn default() -> Self {
        Grading {
            mode: Mode::Sum,
            accept: 1.0,
            reject: 0.0,
            range: (f64::NEG_INFINITY, f64::INFINITY),
        }
    }
}

fn grading(pkg: &Package, config: Option<&(PathBuf, Value)>) -> Result<Grading, ProblemError> {
    let mut out = Grading::default();
    let Some((path, value)) = config else {
        return Ok(out);
    };
    match field(value, "grading").map(|v| v.as_str()) {
        None | Some(Some("default")) => {}
        Some(Some("custom")) => {
            return Err(pkg.inconsistent(format!(
                "{}: custom graders (grading: custom) are not supported yet",
                path.display()
            )))
        }
        Some(_) => return Err(pkg.invalid(path, "grading must be default or custom")),
    }
    if let Some(flags) = field(value, "grader_flags") {
        for flag in pkg.strings(path, "grader_flags", flags)? {
            // The last score mode given wins, as the default grader does it.
            match flag.as_str() {
                "sum" => out.mode = Mode::Sum,
                "min" => out.mode = Mode::Min,
                "avg" => out.mode = Mode::Avg,
                // Verdict modes only pick the rejection reported; samples are never scored.
                "worst_error" | "first_error" | "ignore_sample" => {}
                "max" | "always_accept" | "accept_if_any_accepted" => {
                    return Err(pkg.inconsistent(format!(
                        "{}: grader flag {flag} is not supported yet",
                        path.display()
                    )))
                }
                other => {
                    return Err(pkg.invalid(path, format!("unknown grader flag {other:?}")));
                }
            }
        }
    }
    let number = |key: &str, default: f64| -> Result<f64, ProblemError> {
        match field(value, key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                pkg.invalid(path, format!("{key} must be a number, is {}", describe(v)))
            }),
        }
    };
    out.accept = number("accept_score", 1.0)?;
    out.reject = number("reject_score", 0.0)?;
    if let Some(v) = field(value, "range") {
        let text = scalar(v).unwrap_or_default();
        let parts: Vec<Option<f64>> = text
            .split_whitespace()
            .map(|p| p.parse::<f64>().ok().filter(|x| !x.is_nan()))
            .collect();
        match parts.as_slice() {
            [Some(lo), Some(hi)] if lo <= hi => out.range = (*lo, *hi),
            _ => {
                return Err(pkg.invalid(
                    path,
                    format!("range must be two numbers `min max`, is {}", describe(v)),
                ))
            }
        }
    }
    Ok(out)
}

/// Scoring problems, legacy (see the module documentation).
fn legacy_scoring(
    pkg: &Package,
    groups: &[String],
    walk: &Walk,
    configs: &Configs,
    tests: &mut [TestCase],
) -> Result<(Vec<Subtask>, Scoring), ProblemError> {
    // Every file is read, so that an unsupported grader anywhere is refused.
    let mut gradings: HashMap<&str, Grading> = HashMap::new();
    for (rel, _) in &walk.dirs {
        gradings.insert(rel.as_str(), grading(pkg, nearest(configs, rel))?);
    }
    let of = |rel: &str| gradings.get(rel).copied().unwrap_or_default();
    let owner = |rel: &str| nearest(configs, rel).map(|(path, _)| path.clone());

    // A scored unit: `secret` itself or a top-level group, with the indexes of its tests.
    let score_unit = |unit: &str,
                      members: &[usize],
                      tests: &mut [TestCase]|
     -> Result<(f64, Aggregation), ProblemError> {
        let grading = of(unit);
        let mut accepts = Vec::with_capacity(members.len());
        for &k in members {
            let found = &walk.tests[k];
            let own = of(&found.parent);
            if owner(&found.parent) != owner(unit)
                && !(grading.mode == Mode::Sum
                    && own.mode == Mode::Sum
                    && own.range.1 == f64::INFINITY)
            {
                return Err(pkg.inconsistent(format!(
                    "{}: nested test data groups with their own grading are not supported yet",
                    found.parent
                )));
            }
            if own.reject != 0.0 {
                return Err(pkg.inconsistent(format!(
                    "test {} has reject_score {}: only 0 is supported",
                    found.name, own.reject
                )));
            }
            if own.range.0 > 0.0 {
                return Err(pkg.inconsistent(format!(
                    "test {} is in a range starting at {}: only ranges from 0 or less are \
                     supported",
                    found.name, own.range.0
                )));
            }
            if own.accept <= 0.0 {
                return Err(pkg.inconsistent(format!(
                    "test {} has accept_score {}: it must be positive",
                    found.name, own.accept
                )));
            }
            accepts.push(own.accept);
        }
        let sum: f64 = accepts.iter().sum();
        let largest = accepts.iter().copied().fold(0.0, f64::max);
        let most = if grading.range.1.is_finite() {
            grading.range.1
        } else if grading.mode == Mode::Sum {
            sum
        } else {
            largest
        };
        if !(most > 0.0 && most.is_finite()) {
            return Err(pkg.inconsistent(format!("{unit} can score at most {most}")));
        }
        for (&k, &accept) in members.iter().zip(&accepts) {
            let test = &mut tests[k];
            (test.weight, test.max_score) = match grading.mode {
                Mode::Sum => (accept, accept * most / sum),
                Mode::Min | Mode::Avg => (1.0, most),
            };
        }
        let aggregation = match grading.mode {
            Mode::Sum | Mode::Avg => Aggregation::Sum,
            Mode::Min => Aggregation::Min,
        };
        Ok((most, aggregation))
    };

    for (test, found) in tests.iter_mut().zip(&walk.tests) {
        if !is_secret(&found.name) {
            test.weight = 0.0;
        }
    }
    let secret = of("secret");
    if groups.is_empty() {
        let members: Vec<usize> = (0..walk.tests.len())
            .filter(|&k| is_secret(&walk.tests[k].name))
            .collect();
        if members.is_empty() {
            return Ok((Vec::new(), Scoring::Tests(Aggregation::Sum)));
        }
        let (_, aggregation) = score_unit("secret", &members, tests)?;
        return Ok((Vec::new(), Scoring::Tests(aggregation)));
    }
    if secret.mode != Mode::Sum {
        return Err(
            pkg.inconsistent("secret aggregates its groups with min or avg: not supported yet")
        );
    }
    if let Some(found) = walk.tests.iter().find(|f| f.parent == "secret") {
        return Err(pkg.inconsistent(format!(
            "data/secret holds both test cases ({}) and groups: not supported for scoring \
             problems",
            found.name
        )));
    }
    let mut maxes = Vec::with_capacity(groups.len());
    let mut aggregations = Vec::with_capacity(groups.len());
    for (i, g) in groups.iter().enumerate() {
        let number = i as u32 + 1;
        let members: Vec<usize> = (0..walk.tests.len())
            .filter(|&k| group_number(groups, &walk.tests[k].name) == Some(number))
            .collect();
        let (most, aggregation) = score_unit(g, &members, tests)?;
        for &k in &members {
            tests[k].subtask = Some(number);
        }
        maxes.push(most);
        aggregations.push(aggregation);
    }
    let total: f64 = maxes.iter().sum();
    if secret.range.1.is_finite() && (total - secret.range.1).abs() > 1e-9 * total.max(1.0) {
        return Err(pkg.inconsistent(format!(
            "group scores add up to {total}, not the range maximum {} of secret",
            secret.range.1
        )));
    }
    let subtasks = groups
        .iter()
        .zip(maxes.iter().zip(aggregations))
        .map(|(g, (most, aggregation))| Subtask {
            score: most / total,
            constraints: g.clone(),
            aggregation,
            requires: Vec::new(),
        })
        .collect();
    Ok((subtasks, Scoring::Subtasks))
}

/// `map[key]`, a YAML null counting as absent.
fn field<'v>(map: &'v Value, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

/// A scalar as text: strings, and numbers or booleans as YAML wrote them.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A short description of a value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "empty".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("{n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(_) => "a tagged value".into(),
    }
}

/// `amount × scale` rounded up to a whole unit, except for the float noise of exact decimals
/// (1.1 s is 1100 ms, not 1101).
fn round_up(amount: f64, scale: f64) -> u64 {
    let x = amount * scale;
    let nearest = x.round();
    let x = if (x - nearest).abs() <= 1e-6 * nearest.max(1.0) {
        nearest
    } else {
        x.ceil()
    };
    // `as` saturates: absurdly large limits become u64::MAX rather than wrap.
    x.max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::super::load_with;
    use super::*;

    /// A package `p` under a fresh problems root, with `files` (path under `p`, contents).
    fn package(files: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = root.path().join("p").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        root
    }

    fn load_pkg(root: &tempfile::TempDir) -> Result<Problem, ProblemError> {
        load_with(root.path(), "p", &Defaults::default())
    }

    fn names(problem: &Problem) -> Vec<&str> {
        problem.tests.iter().map(|t| t.name.as_str()).collect()
    }

    /// The reason of an `Inconsistent` error (and fails on any other outcome).
    fn inconsistent(root: &tempfile::TempDir) -> String {
        match load_pkg(root) {
            Err(ProblemError::Inconsistent { reason, .. }) => reason,
            other => panic!("expected an inconsistent problem, got {other:?}"),
        }
    }

    /// The file and reason of an `Invalid` error.
    fn invalid(root: &tempfile::TempDir) -> (PathBuf, String) {
        match load_pkg(root) {
            Err(ProblemError::Invalid { path, reason }) => (path, reason),
            other => panic!("expected an invalid file, got {other:?}"),
        }
    }

    fn test<'p>(problem: &'p Problem, name: &str) -> &'p TestCase {
        problem.tests.iter().find(|t| t.name == name).unwrap()
    }

    const PAIR: [&str; 2] = ["1 2\n", "3\n"];

    /// `name.in` and `name.ans` under `data/`.
    fn case(name: &str) -> [(String, &'static str); 2] {
        [
            (format!("data/{name}.in"), PAIR[0]),
            (format!("data/{name}.ans"), PAIR[1]),
        ]
    }

    fn with_cases<'a>(files: &[(&'a str, &'a str)], cases: &[&str]) -> tempfile::TempDir {
        let owned: Vec<(String, &str)> = cases.iter().flat_map(|c| case(c)).collect();
        let mut all: Vec<(&str, &str)> = files.to_vec();
        all.extend(owned.iter().map(|(p, t)| (p.as_str(), *t)));
        package(&all)
    }

    #[test]
    fn legacy_pass_fail_with_float_flags_and_a_timelimit_file() {
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "name: Sum\nvalidator_flags: float_tolerance 1e-6\nlimits:\n  memory: 256\n  \
                     output: 16\n  validation_time: 30\n  validation_memory: 512\nauthor: x\n",
                ),
                (".timelimit", " 2.5\n"),
                (
                    "data/secret/testdata.yaml",
                    "output_validator_flags: case_sensitive\n",
                ),
            ],
            &["sample/1", "secret/10", "secret/02"],
        );
        // Float flags are the default validator's to parse (crate::check): the loader alone.
        let p = load(&root.path().join("p"), "p", &Defaults::default()).unwrap();
        assert_eq!(p.name, "Sum");
        assert_eq!(p.format, Format::Icpc);
        assert_eq!(p.dir, root.path().join("p"));
        assert_eq!((p.time_ms, p.memory_kb), (2500, 256 * 1024));
        assert_eq!(p.output_limit_bytes, Some(16 * 1024 * 1024));
        assert_eq!(
            p.validation,
            ValidationLimits {
                time_ms: Some(30_000),
                memory_kb: Some(512 * 1024),
                passes: None,
            }
        );
        assert_eq!(names(&p), ["sample/1", "secret/02", "secret/10"]);
        assert_eq!(p.checker, Checker::Default);
        assert_eq!(p.scoring, Scoring::PassFail);
        assert!(p.subtasks.is_empty());
        assert_eq!(
            test(&p, "sample/1").checker_args,
            ["float_tolerance", "1e-6"]
        );
        assert_eq!(
            test(&p, "secret/02").checker_args,
            ["float_tolerance", "1e-6", "case_sensitive"]
        );
        let Data::File(input) = &p.tests[1].input else {
            panic!("not a file")
        };
        assert!(input.is_absolute());
        assert!(input.ends_with("data/secret/02.in"), "{}", input.display());
        assert_eq!(p.tests[1].answer.len().unwrap(), 2);
        assert!(p
            .tests
            .iter()
            .all(|t| t.subtask.is_none() && t.weight == 1.0));
    }

    #[test]
    fn defaults_apply_and_limits_round_up() {
        let root = with_cases(&[("problem.yaml", "")], &["secret/1"]);
        let p = load_pkg(&root).unwrap();
        let d = Defaults::default();
        assert_eq!(p.name, "p");
        assert_eq!((p.time_ms, p.memory_kb), (d.time_ms, d.memory_kb));
        assert_eq!(p.output_limit_bytes, Some(d.output_bytes));
        assert_eq!(p.validation, ValidationLimits::default());
        for (limit, ms) in [("1.1", 1100), ("0.0005", 1), ("2", 2000), ("1.0001", 1001)] {
            let root = with_cases(
                &[("problem.yaml", &format!("limits:\n  time_limit: {limit}\n"))],
                &["secret/1"],
            );
            assert_eq!(load_pkg(&root).unwrap().time_ms, ms, "{limit}");
        }
        let root = with_cases(
            &[("problem.yaml", ""), (".timelimit", "1.2345")],
            &["secret/1"],
        );
        assert_eq!(load_pkg(&root).unwrap().time_ms, 1235);
    }

    #[test]
    fn new_format_pass_fail_groups_become_subtasks_in_order() {
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\nname:\n  de: Summe\n  en: Sum\n\
                     uuid: 1\nlimits:\n  time_limit: 1.1\n",
                ),
                (
                    "data/secret/test_group.yaml",
                    "output_validator_args: case_sensitive\n",
                ),
                (
                    "data/secret/group2/test_group.yaml",
                    "output_validator_args: []\n",
                ),
                (
                    "data/secret/group1/03.yaml",
                    "output_validator_args: [case_sensitive]\n",
                ),
                ("data/secret/group1/.hidden.in", "x"),
                ("data/secret/group1/-draft.in", "x"),
                ("data/secret/group1/notes.txt", "x"),
            ],
            &[
                "sample/b",
                "sample/a",
                "secret/group2/1",
                "secret/group1/10-big/01",
                "secret/group1/10",
                "secret/group1/04/01",
                "secret/group1/03",
            ],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.name, "Sum");
        assert_eq!(p.time_ms, 1100);
        assert_eq!(
            names(&p),
            [
                "sample/a",
                "sample/b",
                "secret/group1/03",
                "secret/group1/04/01",
                "secret/group1/10",
                // By name: `10` sorts before `10-big`, though `10-big` sorts before `10.in`.
                "secret/group1/10-big/01",
                "secret/group2/1"
            ]
        );
        assert_eq!(p.scoring, Scoring::PassFail);
        let subtasks: Vec<(&str, f64, Aggregation)> = p
            .subtasks
            .iter()
            .map(|s| (s.constraints.as_str(), s.score, s.aggregation))
            .collect();
        assert_eq!(
            subtasks,
            [
                ("secret/group1", 0.5, Aggregation::PassFail),
                ("secret/group2", 0.5, Aggregation::PassFail)
            ]
        );
        let numbers: Vec<Option<u32>> = p.tests.iter().map(|t| t.subtask).collect();
        assert_eq!(
            numbers,
            [None, None, Some(1), Some(1), Some(1), Some(1), Some(2)]
        );
        let args: Vec<usize> = p.tests.iter().map(|t| t.checker_args.len()).collect();
        // Samples inherit nothing from secret; group2 empties what secret set.
        assert_eq!(args, [0, 0, 1, 1, 1, 1, 0]);
        assert!(p
            .tests
            .iter()
            .all(|t| t.weight == 1.0 && t.max_score == 1.0));
    }

    #[test]
    fn scoring_groups_have_shares_test_maxima_and_dependencies() {
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\ntype: scoring\n",
                ),
                ("data/secret/g1/test_group.yaml", "max_score: 20\n"),
                (
                    "data/secret/g2/test_group.yaml",
                    "max_score: 30\nscore_aggregation: min\nrequire_pass: g1\n",
                ),
                (
                    "data/secret/g3/test_group.yaml",
                    "max_score: 50\nscore_aggregation: sum\nrequire_pass: [secret/g1]\n",
                ),
            ],
            &[
                "sample/1",
                "secret/g1/1",
                "secret/g2/1",
                "secret/g2/2",
                "secret/g3/1",
                "secret/g3/2",
            ],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Subtasks);
        let subtasks: Vec<(f64, Aggregation, Vec<u32>)> = p
            .subtasks
            .iter()
            .map(|s| (s.score, s.aggregation, s.requires.clone()))
            .collect();
        assert_eq!(
            subtasks,
            [
                (0.2, Aggregation::PassFail, vec![]),
                (0.3, Aggregation::Min, vec![1]),
                (0.5, Aggregation::Sum, vec![1])
            ]
        );
        let tests: Vec<(Option<u32>, f64, f64)> = p
            .tests
            .iter()
            .map(|t| (t.subtask, t.weight, t.max_score))
            .collect();
        assert_eq!(
            tests,
            [
                (None, 0.0, 1.0),
                (Some(1), 1.0, 20.0),
                (Some(2), 1.0, 30.0),
                (Some(2), 1.0, 30.0),
                (Some(3), 1.0, 25.0),
                (Some(3), 1.0, 25.0)
            ]
        );
    }

    #[test]
    fn the_2023_draft_infers_missing_group_scores() {
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2023-07-draft\ntype: scoring\n",
                ),
                ("data/secret/a/test_group.yaml", "scoring:\n  score: 40\n"),
            ],
            &["secret/a/1", "secret/b/1", "secret/c/1"],
        );
        let p = load_pkg(&root).unwrap();
        let shares: Vec<f64> = p.subtasks.iter().map(|s| s.score).collect();
        assert_eq!(shares, [0.4, 0.3, 0.3]);
        assert_eq!(p.tests[2].max_score, 30.0);
        // 2025-09 wants every group to say.
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\ntype: scoring\n",
                ),
                ("data/secret/a/test_group.yaml", "max_score: 40\n"),
            ],
            &["secret/a/1", "secret/b/1"],
        );
        assert!(inconsistent(&root).contains("group secret/b has no max_score"));
    }

    #[test]
    fn scoring_without_groups_scores_the_tests() {
        let root = with_cases(
            &[(
                "problem.yaml",
                "problem_format_version: 2025-09\ntype: [scoring]\n",
            )],
            &["sample/1", "secret/1", "secret/2", "secret/3", "secret/4"],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Tests(Aggregation::Sum));
        assert!(p.subtasks.is_empty());
        let tests: Vec<(f64, f64)> = p.tests.iter().map(|t| (t.weight, t.max_score)).collect();
        assert_eq!(
            tests,
            [
                (0.0, 1.0),
                (1.0, 25.0),
                (1.0, 25.0),
                (1.0, 25.0),
                (1.0, 25.0)
            ]
        );
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2023-07\ntype: scoring\n",
                ),
                (
                    "data/secret/test_group.yaml",
                    "scoring:\n  score: 50\n  aggregation: min\n",
                ),
            ],
            &["secret/1", "secret/2"],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Tests(Aggregation::Min));
        assert!(p.tests.iter().all(|t| t.max_score == 50.0));
    }

    #[test]
    fn legacy_scoring_maps_accept_scores_and_ranges() {
        let root = with_cases(
            &[
                ("problem.yaml", "type: scoring\nvalidation: custom score\n"),
                ("output_validators/v/v.cpp", "int main() {}\n"),
                (
                    "data/testdata.yaml",
                    "on_reject: continue\nrange: 0 100\ngrader_flags: first_error ignore_sample\n",
                ),
                (
                    "data/secret/g1/testdata.yaml",
                    "accept_score: 10\ngrader_flags: min\nrange: 0 40\n",
                ),
                (
                    "data/secret/g2/testdata.yaml",
                    "accept_score: 20\ngrader_flags: sum\n",
                ),
            ],
            &[
                "sample/1",
                "secret/g1/1",
                "secret/g1/2",
                "secret/g2/1",
                "secret/g2/2",
                "secret/g2/3",
            ],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Subtasks);
        let subtasks: Vec<(f64, Aggregation)> = p
            .subtasks
            .iter()
            .map(|s| (s.score, s.aggregation))
            .collect();
        assert_eq!(subtasks, [(0.4, Aggregation::Min), (0.6, Aggregation::Sum)]);
        let tests: Vec<(Option<u32>, f64, f64)> = p
            .tests
            .iter()
            .map(|t| (t.subtask, t.weight, t.max_score))
            .collect();
        assert_eq!(
            tests,
            [
                (None, 0.0, 1.0),
                (Some(1), 1.0, 40.0),
                (Some(1), 1.0, 40.0),
                (Some(2), 20.0, 20.0),
                (Some(2), 20.0, 20.0),
                (Some(2), 20.0, 20.0)
            ]
        );

        // No groups: a range above the accept scores scales each test's maximum.
        let root = with_cases(
            &[
                ("problem.yaml", "type: scoring\n"),
                ("data/secret/testdata.yaml", "range: 0 8\n"),
            ],
            &["secret/1", "secret/2", "secret/3", "secret/4"],
        );
        let p = load_pkg(&root).unwrap();
        assert_eq!(p.scoring, Scoring::Tests(Aggregation::Sum));
        assert!(p
            .tests
            .iter()
            .all(|t| t.weight == 1.0 && t.max_score == 2.0));
    }

    #[test]
    fn legacy_scoring_refuses_what_it_cannot_represent() {
        // (secret's testdata.yaml, group a's, what the reason says)
        for (secret, group, expected) in [
            (
                "grader_flags: accept_if_any_accepted\n",
                "",
                "accept_if_any_accepted is not supported",
            ),
            ("", "reject_score: 1\n", "reject_score 1"),
            ("", "range: 1 10\n", "range starting at 1"),
            ("grading: custom\n", "", "custom graders"),
            (
                "grader_flags: min\n",
                "",
                "secret aggregates its groups with min",
            ),
            ("range: 0 50\n", "", "add up to 2, not the range maximum 50"),
        ] {
            let group = format!("accept_score: 1\n{group}");
            let root = with_cases(
                &[
                    ("problem.yaml", "type: scoring\n"),
                    ("data/secret/testdata.yaml", secret),
                    ("data/secret/a/testdata.yaml", &group),
                    ("data/secret/b/testdata.yaml", "accept_score: 1\n"),
                ],
                &["secret/a/1", "secret/b/1"],
            );
            let reason = inconsistent(&root);
            assert!(reason.contains(expected), "{secret}{group}: {reason}");
        }
        let root = with_cases(
            &[
                ("problem.yaml", ""),
                (
                    "data/testdata.yaml",
                    "grader_flags: accept_if_any_accepted\n",
                ),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("accept_if_any_accepted is not supported"));
        let root = with_cases(
            &[
                ("problem.yaml", "type: scoring\n"),
                ("data/secret/testdata.yaml", "grader_flags: median\n"),
            ],
            &["secret/1"],
        );
        assert!(invalid(&root).1.contains("unknown grader flag"));
    }

    #[test]
    fn custom_validators_are_found_with_their_language() {
        // A C++ folder with a header and a C file: every C/C++ file is compiled, the header not.
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("output_validator/validate.cpp", "#include \"validate.h\"\n"),
                ("output_validator/validate.h", ""),
                ("output_validator/util.c", ""),
                ("output_validator/README", ""),
                (
                    "data/secret/test_group.yaml",
                    "output_validator_args: [\"a b\", c]\n",
                ),
            ],
            &["secret/1"],
        );
        let p = load_pkg(&root).unwrap();
        let Checker::Icpc(program) = &p.checker else {
            panic!("{:?}", p.checker)
        };
        assert_eq!(program.language, CheckerLanguage::Cpp);
        assert_eq!(
            program.sources,
            [PathBuf::from("util.c"), PathBuf::from("validate.cpp")]
        );
        assert!(program.dir.ends_with("p/output_validator"));
        // A custom validator gets its arguments as written.
        assert_eq!(p.tests[0].checker_args, ["a b", "c"]);

        // A single Python file; several need a __main__.py.
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("output_validator/check.py", ""),
            ],
            &["secret/1"],
        );
        let Checker::Icpc(program) = load_pkg(&root).unwrap().checker else {
            panic!("no custom checker")
        };
        assert_eq!(program.language, CheckerLanguage::Python);
        assert_eq!(program.sources, [PathBuf::from("check.py")]);
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("output_validator/__init__.py", ""),
                ("output_validator/__main__.py", ""),
                ("output_validator/lib.py", ""),
            ],
            &["secret/1"],
        );
        let Checker::Icpc(program) = load_pkg(&root).unwrap().checker else {
            panic!("no custom checker")
        };
        assert_eq!(program.sources, [PathBuf::from("__main__.py")]);

        // Legacy: output_validators/NAME/, or a single file right under output_validators/.
        let root = with_cases(
            &[
                ("problem.yaml", "validation: custom\nvalidator_flags: x y\n"),
                ("output_validators/x/validate.c", ""),
            ],
            &["secret/1"],
        );
        let p = load_pkg(&root).unwrap();
        let Checker::Icpc(program) = &p.checker else {
            panic!("no custom checker")
        };
        assert_eq!(program.language, CheckerLanguage::C);
        assert!(program.dir.ends_with("output_validators/x"));
        assert_eq!(p.tests[0].checker_args, ["x", "y"]);
        let root = with_cases(
            &[
                ("problem.yaml", "validation: custom score\n"),
                ("output_validators/Check.java", ""),
            ],
            &["secret/1"],
        );
        let Checker::Icpc(program) = load_pkg(&root).unwrap().checker else {
            panic!("no custom checker")
        };
        assert_eq!(program.language, CheckerLanguage::Java);
        assert_eq!(program.sources, [PathBuf::from("Check.java")]);
        assert!(program.dir.ends_with("p/output_validators"));

        // Legacy `validation: default` keeps the default checker, validators or not.
        let root = with_cases(
            &[
                ("problem.yaml", "validation: default\n"),
                ("output_validators/x/validate.c", ""),
            ],
            &["secret/1"],
        );
        assert_eq!(load_pkg(&root).unwrap().checker, Checker::Default);
    }

    #[test]
    fn validator_problems_are_reported() {
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("output_validator/build", "#!/bin/sh\n"),
                ("output_validator/run", "#!/bin/sh\n"),
                ("output_validator/v.cpp", ""),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("build/run scripts are not supported yet"));
        let root = with_cases(&[("problem.yaml", "validation: custom\n")], &["secret/1"]);
        assert!(inconsistent(&root).contains("no output validator"));
        let root = with_cases(
            &[
                ("problem.yaml", "validation: custom\n"),
                ("output_validators/a.py", ""),
                ("output_validators/b/b.cpp", ""),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("only one output validator"));
    }

    #[test]
    fn errors_name_their_cause() {
        let root = package(&[
            ("problem.yaml", ""),
            ("data/secret/1.in", ""),
            ("data/secret/1.ans", ""),
            ("data/secret/3.in", ""),
        ]);
        assert_eq!(
            inconsistent(&root),
            "test secret/3 has no answer file secret/3.ans"
        );

        let root = with_cases(
            &[("problem.yaml", "problem_format_version: 2020-01\n")],
            &["secret/1"],
        );
        let (path, reason) = invalid(&root);
        assert!(path.ends_with("problem.yaml"));
        assert!(
            reason.contains("unknown problem_format_version \"2020-01\""),
            "{reason}"
        );

        // Interactive: the output validator is the interactor, in either format's words.
        for (yaml, folder) in [
            (
                "problem_format_version: 2025-09\ntype: [pass-fail, interactive]\n",
                "output_validator/interactor.cpp",
            ),
            (
                "problem_format_version: 2023-07-draft\ntype: interactive\n",
                "output_validator/interactor.cpp",
            ),
            (
                "validation: custom interactive\n",
                "output_validators/interactor.cpp",
            ),
        ] {
            let root = with_cases(&[("problem.yaml", yaml), (folder, "")], &["secret/1"]);
            let problem = load_pkg(&root).unwrap();
            assert_eq!(problem.interaction, Interaction::Interactive, "{yaml}");
            assert!(matches!(problem.checker, Checker::Icpc(_)), "{yaml}");
        }
        let root = with_cases(
            &[(
                "problem.yaml",
                "problem_format_version: 2025-09\ntype: interactive\n",
            )],
            &["secret/1"],
        );
        assert_eq!(
            inconsistent(&root),
            "an interactive problem needs its own validator to talk to the program"
        );
        let root = with_cases(
            &[("problem.yaml", "validation: default interactive\n")],
            &["secret/1"],
        );
        assert!(invalid(&root).1.contains("needs a custom validator"));
        let root = with_cases(&[("problem.yaml", "")], &["secret/1"]);
        assert_eq!(load_pkg(&root).unwrap().interaction, Interaction::Batch);
        // Multi-pass: two passes unless `limits.validation_passes` says more.
        let multi = |limits: &str| {
            with_cases(
                &[
                    (
                        "problem.yaml",
                        format!("problem_format_version: draft\ntype: multi-pass\n{limits}").leak(),
                    ),
                    ("output_validator/v.cpp", ""),
                ],
                &["secret/1"],
            )
        };
        let passes = |root| load_pkg(&root).unwrap().interaction;
        assert_eq!(passes(multi("")), Interaction::MultiPass { passes: 2 });
        assert_eq!(
            passes(multi("limits:\n  validation_passes: 5\n")),
            Interaction::MultiPass { passes: 5 }
        );
        assert_eq!(
            inconsistent(&multi("limits:\n  validation_passes: 1\n")),
            "validation_passes must be from 2 to 100, is 1"
        );
        assert!(invalid(&multi("limits:\n  validation_passes: two\n"))
            .1
            .contains("validation_passes must be a whole number"));
        let root = with_cases(
            &[(
                "problem.yaml",
                "problem_format_version: draft\ntype: multi-pass\n",
            )],
            &["secret/1"],
        );
        assert_eq!(
            inconsistent(&root),
            "a multi-pass problem needs its own validator to write the next pass's input"
        );
        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: draft\ntype: [interactive, multi-pass]\n",
                ),
                ("output_validator/v.cpp", ""),
            ],
            &["secret/1"],
        );
        assert_eq!(
            inconsistent(&root),
            "interactive multi-pass problems are not supported yet"
        );

        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\ntype: scoring\n",
                ),
                ("data/secret/a/test_group.yaml", "max_score: 20\n"),
                ("data/secret/b/test_group.yaml", "max_score: 40\n"),
            ],
            &["secret/a/1", "secret/b/1"],
        );
        assert_eq!(
            inconsistent(&root),
            "group scores add up to 60, not max_score 100"
        );

        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\ntype: scoring\n",
                ),
                (
                    "data/secret/a/test_group.yaml",
                    "max_score: 100\nrequire_pass: sample\n",
                ),
            ],
            &["sample/1", "secret/a/1"],
        );
        assert_eq!(
            inconsistent(&root),
            "require_pass on sample is not supported yet"
        );

        let root = with_cases(
            &[
                (
                    "problem.yaml",
                    "problem_format_version: 2025-09\ntype: scoring\n",
                ),
                ("data/secret/test_group.yaml", "max_score: unbounded\n"),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("unbounded"));

        let root = with_cases(&[("problem.yaml", "name: [unclosed\n")], &["secret/1"]);
        let (path, reason) = invalid(&root);
        assert!(path.ends_with("problem.yaml"));
        assert!(reason.contains("YAML does not parse"), "{reason}");
        let root = with_cases(
            &[
                ("problem.yaml", ""),
                ("data/secret/testdata.yaml", "output_validator_flags: [a\n"),
            ],
            &["secret/1"],
        );
        assert!(invalid(&root).0.ends_with("data/secret/testdata.yaml"));

        for (limits, key) in [
            ("memory: 0", "limits.memory"),
            ("time_limit: fast", "limits.time_limit"),
            ("output: -1", "limits.output"),
        ] {
            let root = with_cases(
                &[("problem.yaml", &format!("limits:\n  {limits}\n"))],
                &["secret/1"],
            );
            let reason = invalid(&root).1;
            assert!(reason.contains(key), "{reason}");
        }
        let root = with_cases(
            &[("problem.yaml", ""), (".timelimit", "soon")],
            &["secret/1"],
        );
        assert!(invalid(&root).0.ends_with(".timelimit"));
    }

    #[test]
    fn file_input_and_submission_arguments_are_refused() {
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("data/secret/1.files/extra.txt", ""),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("test secret/1 has a 1.files folder"));
        let root = with_cases(
            &[
                ("problem.yaml", "problem_format_version: 2025-09\n"),
                ("data/secret/1.yaml", "args: [--fast]\n"),
            ],
            &["secret/1"],
        );
        assert!(inconsistent(&root).contains("passes arguments to submissions"));
    }

    #[test]
    fn symlinks_must_stay_inside_the_package() {
        use std::os::unix::fs::symlink;
        let root = with_cases(&[("problem.yaml", "")], &["secret/1"]);
        let p = root.path().join("p");
        std::fs::write(p.join("shared.ans"), "3\n").unwrap();
        std::fs::write(p.join("data/secret/2.in"), "1 2\n").unwrap();
        symlink("../../shared.ans", p.join("data/secret/2.ans")).unwrap();
        let problem = load_pkg(&root).unwrap();
        let canonical = std::fs::canonicalize(p.join("shared.ans")).unwrap();
        assert_eq!(problem.tests[1].answer, Data::File(canonical));

        std::fs::write(root.path().join("outside"), "secret\n").unwrap();
        symlink("../../../outside", p.join("data/secret/3.in")).unwrap();
        std::fs::write(p.join("data/secret/3.ans"), "").unwrap();
        let (path, reason) = invalid(&root);
        assert!(path.ends_with("data/secret/3.in"));
        assert!(reason.contains("outside the package"), "{reason}");
    }
}
