//! Problems in the STAOJ folder format (SPEC §5): loading, validation and a cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Deserialize;

/// A validated problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub id: String,
    pub name: String,
    /// CPU time limit per test, ms.
    pub time_ms: u64,
    /// Memory limit per test, KB.
    pub memory_kb: u64,
    /// Empty when the problem has no subtasks.
    pub subtasks: Vec<Subtask>,
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Subtask {
    pub score: f64,
    #[serde(default)]
    pub constraints: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TestCase {
    pub input: String,
    pub output: String,
    /// 1-based subtask number.
    #[serde(default)]
    pub subtask: Option<u32>,
}

impl Problem {
    pub fn has_subtasks(&self) -> bool {
        !self.subtasks.is_empty()
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

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    name: String,
    time: i64,
    memory: i64,
    #[serde(default)]
    subtasks: Option<Vec<Subtask>>,
}

fn read(id: &str, path: &Path) -> Result<Vec<u8>, ProblemError> {
    std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ProblemError::Missing {
                id: id.to_owned(),
                path: path.to_owned(),
            }
        } else {
            ProblemError::Unreadable {
                path: path.to_owned(),
                source,
            }
        }
    })
}

fn parse<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T, ProblemError> {
    serde_json::from_slice(bytes).map_err(|source| ProblemError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// Loads and validates problem `id` from `root`. The caller has checked `is_valid_id(id)`.
pub fn load(root: &Path, id: &str) -> Result<Problem, ProblemError> {
    let dir = root.join(id);
    let statement_path = dir.join("statement.json");
    let tests_path = dir.join("test-cases.json");
    let statement: Statement = parse(&statement_path, &read(id, &statement_path)?)?;
    let tests: Vec<TestCase> = parse(&tests_path, &read(id, &tests_path)?)?;
    validate(id, statement, tests)
}

fn validate(id: &str, statement: Statement, tests: Vec<TestCase>) -> Result<Problem, ProblemError> {
    let inconsistent = |reason: String| ProblemError::Inconsistent {
        id: id.to_owned(),
        reason,
    };
    if statement.time <= 0 {
        return Err(inconsistent(format!(
            "time limit must be positive, is {}",
            statement.time
        )));
    }
    if statement.memory <= 0 {
        return Err(inconsistent(format!(
            "memory limit must be positive, is {}",
            statement.memory
        )));
    }
    if tests.is_empty() {
        return Err(inconsistent("it has no test cases".into()));
    }
    let subtasks = statement.subtasks.unwrap_or_default();
    if !subtasks.is_empty() {
        if let Some((i, s)) = subtasks
            .iter()
            .enumerate()
            .find(|(_, s)| !(s.score.is_finite() && s.score >= 0.0))
        {
            return Err(inconsistent(format!(
                "subtask {} has an invalid score {}",
                i + 1,
                s.score
            )));
        }
        let total: f64 = subtasks.iter().map(|s| s.score).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(inconsistent(format!(
                "subtask scores add up to {total}, not 1"
            )));
        }
    }
    for (i, test) in tests.iter().enumerate() {
        match (test.subtask, subtasks.len()) {
            (Some(s), n) if s == 0 || s as usize > n => {
                return Err(inconsistent(format!(
                    "test {} names subtask {s}, but the problem has {n} subtask(s)",
                    i + 1
                )))
            }
            (None, n) if n > 0 => {
                return Err(inconsistent(format!(
                    "test {} names no subtask, but the problem has {n} subtasks",
                    i + 1
                )))
            }
            _ => {}
        }
    }
    for (i, _) in subtasks.iter().enumerate() {
        let number = i as u32 + 1;
        if !tests.iter().any(|t| t.subtask == Some(number)) {
            return Err(inconsistent(format!("subtask {number} has no tests")));
        }
    }
    Ok(Problem {
        id: id.to_owned(),
        name: statement.name,
        time_ms: statement.time as u64,
        memory_kb: statement.memory as u64,
        subtasks,
        tests,
    })
}

/// Problems under one root, cached: a problem is read again only when one of its files changed.
#[derive(Debug)]
pub struct ProblemStore {
    root: PathBuf,
    cache: Mutex<HashMap<String, Cached>>,
}

#[derive(Debug)]
struct Cached {
    stamp: (SystemTime, SystemTime),
    problem: Arc<Problem>,
}

impl ProblemStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ProblemStore {
            root: root.into(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn stamp(&self, id: &str) -> Option<(SystemTime, SystemTime)> {
        let dir = self.root.join(id);
        let m = |name: &str| std::fs::metadata(dir.join(name)).and_then(|m| m.modified());
        Some((m("statement.json").ok()?, m("test-cases.json").ok()?))
    }

    /// The problem `id` (a valid id), loaded from disk or from the cache.
    pub fn get(&self, id: &str) -> Result<Arc<Problem>, ProblemError> {
        let stamp = self.stamp(id);
        if let Some(stamp) = stamp {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(cached) = cache.get(id).filter(|c| c.stamp == stamp) {
                return Ok(cached.problem.clone());
            }
        }
        let problem = Arc::new(load(&self.root, id)?);
        if let Some(stamp) = stamp {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
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

    fn write(dir: &Path, id: &str, statement: &str, tests: &str) {
        let p = dir.join(id);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("statement.json"), statement).unwrap();
        std::fs::write(p.join("test-cases.json"), tests).unwrap();
    }

    const TWO_TESTS: &str =
        r#"[{"input":"1 2","output":"3","subtask":1},{"input":"2 2","output":"4","subtask":2}]"#;

    #[test]
    fn ids_are_checked() {
        assert!(is_valid_id("test-base"));
        assert!(is_valid_id("a1"));
        for bad in ["", "../x", "a/b", "A", "a.b", "a b", "..", "é"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn loads_a_problem_with_subtasks() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p",
            r#"{"name":"P","time":1000,"memory":65536,"subtasks":[{"score":0.4,"constraints":"a"},{"score":0.6,"constraints":"b"}],"extra":1}"#,
            TWO_TESTS,
        );
        let p = load(dir.path(), "p").unwrap();
        assert_eq!(p.time_ms, 1000);
        assert_eq!(p.memory_kb, 65536);
        assert_eq!(p.subtasks.len(), 2);
        assert_eq!(p.tests[1].subtask, Some(2));
    }

    #[test]
    fn no_subtasks_field_means_no_subtasks() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p",
            r#"{"name":"P","time":1000,"memory":1000}"#,
            r#"[{"input":"","output":""}]"#,
        );
        assert!(!load(dir.path(), "p").unwrap().has_subtasks());
        write(
            dir.path(),
            "q",
            r#"{"name":"Q","time":1000,"memory":1000,"subtasks":[]}"#,
            r#"[{"input":"","output":""}]"#,
        );
        assert!(!load(dir.path(), "q").unwrap().has_subtasks());
    }

    fn inconsistency(statement: &str, tests: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p", statement, tests);
        match load(dir.path(), "p") {
            Err(e @ ProblemError::Inconsistent { .. }) => e.to_string(),
            other => panic!("expected an inconsistency, got {other:?}"),
        }
    }

    #[test]
    fn inconsistent_problems_are_refused_with_a_reason() {
        let st = |subtasks: &str| {
            format!(r#"{{"name":"P","time":1000,"memory":1000,"subtasks":{subtasks}}}"#)
        };
        let two = st(r#"[{"score":0.5},{"score":0.5}]"#);
        assert!(inconsistency(
            &two,
            r#"[{"input":"","output":"","subtask":3},{"input":"","output":"","subtask":1},{"input":"","output":"","subtask":2}]"#
        )
        .contains("names subtask 3"));
        assert!(
            inconsistency(&st(r#"[{"score":0.5},{"score":0.4}]"#), TWO_TESTS).contains("add up to")
        );
        assert!(inconsistency(
            r#"{"name":"P","time":0,"memory":1000}"#,
            r#"[{"input":"","output":""}]"#
        )
        .contains("time limit"));
        assert!(inconsistency(
            r#"{"name":"P","time":10,"memory":-5}"#,
            r#"[{"input":"","output":""}]"#
        )
        .contains("memory limit"));
        assert!(inconsistency(&two, "[]").contains("no test cases"));
        assert!(inconsistency(
            &two,
            r#"[{"input":"","output":"","subtask":1},{"input":"","output":""}]"#
        )
        .contains("names no subtask"));
        assert!(
            inconsistency(&two, r#"[{"input":"","output":"","subtask":1}]"#)
                .contains("subtask 2 has no tests")
        );
        assert!(inconsistency(
            r#"{"name":"P","time":10,"memory":10}"#,
            r#"[{"input":"","output":"","subtask":1}]"#
        )
        .contains("names subtask 1"));
    }

    #[test]
    fn missing_and_malformed_problems_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(dir.path(), "nope"),
            Err(ProblemError::Missing { .. })
        ));
        write(dir.path(), "p", "{not json", "[]");
        let err = load(dir.path(), "p").unwrap_err();
        assert!(matches!(err, ProblemError::Malformed { .. }));
        assert!(err.to_string().contains("statement.json"));
    }

    #[test]
    fn the_store_reloads_a_changed_problem() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProblemStore::new(dir.path());
        write(
            dir.path(),
            "p",
            r#"{"name":"P","time":1000,"memory":1000}"#,
            r#"[{"input":"","output":"1"}]"#,
        );
        let first = store.get("p").unwrap();
        assert!(Arc::ptr_eq(&first, &store.get("p").unwrap()));
        // A different mtime makes the store read the files again.
        let tests = dir.path().join("p/test-cases.json");
        std::fs::write(&tests, r#"[{"input":"","output":"2"}]"#).unwrap();
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&tests)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(store.get("p").unwrap().tests[0].output, "2");
    }
}
