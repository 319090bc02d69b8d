//! The STAOJ folder format (SPEC §5a): `statement.json` and `test-cases.json`, tests inline,
//! outputs compared by token equality.

use std::path::Path;

use serde::Deserialize;

use super::{
    Checker, Data, Format, Problem, ProblemError, ProblemIo, Scoring, Subtask, TestCase,
    ValidationLimits,
};

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    name: String,
    time: i64,
    memory: i64,
    #[serde(default)]
    subtasks: Option<Vec<Subtask>>,
}

#[derive(Deserialize)]
struct RawTest {
    input: String,
    output: String,
    /// 1-based subtask number.
    #[serde(default)]
    subtask: Option<u32>,
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

/// Loads the STAOJ problem in `dir`. What every format must hold is checked by the caller.
pub(super) fn load(dir: &Path, id: &str) -> Result<Problem, ProblemError> {
    let statement_path = dir.join("statement.json");
    let tests_path = dir.join("test-cases.json");
    let statement: Statement = parse(&statement_path, &read(id, &statement_path)?)?;
    let tests: Vec<RawTest> = parse(&tests_path, &read(id, &tests_path)?)?;
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
    // The checks in the order this format always made them, so a problem with several faults
    // is told the same one as before; the shared checks then find nothing more.
    super::shares(&subtasks).map_err(inconsistent)?;
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
    let scoring = if subtasks.is_empty() {
        Scoring::PassFail
    } else {
        Scoring::Subtasks
    };
    let tests = tests
        .into_iter()
        .enumerate()
        .map(|(i, t)| TestCase {
            name: (i + 1).to_string(),
            input: Data::Inline(t.input.into()),
            answer: Data::Inline(t.output.into()),
            subtask: t.subtask,
            weight: 1.0,
            max_score: 1.0,
            // SPEC §3: token equality, case and all.
            checker_args: vec!["case_sensitive".to_owned()],
        })
        .collect();
    Ok(Problem {
        id: id.to_owned(),
        name: statement.name,
        format: Format::Staoj,
        dir: dir.to_owned(),
        time_ms: statement.time as u64,
        memory_kb: statement.memory as u64,
        output_limit_bytes: None,
        subtasks,
        scoring,
        tests,
        checker: Checker::Default,
        io: ProblemIo::default(),
        validation: ValidationLimits::default(),
        interaction: super::Interaction::Batch,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{load, ProblemStore};
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
    fn loads_a_problem_with_subtasks() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "p",
            r#"{"name":"P","time":1000,"memory":65536,"subtasks":[{"score":0.4,"constraints":"a"},{"score":0.6,"constraints":"b"}],"extra":1}"#,
            TWO_TESTS,
        );
        let p = load(dir.path(), "p").unwrap();
        assert_eq!(p.format, Format::Staoj);
        assert_eq!(p.time_ms, 1000);
        assert_eq!(p.memory_kb, 65536);
        assert_eq!(p.subtasks.len(), 2);
        assert_eq!(p.scoring, Scoring::Subtasks);
        assert_eq!(p.tests[1].subtask, Some(2));
        assert_eq!(p.tests[1].answer, Data::Inline("4".into()));
        assert_eq!(p.checker, Checker::Default);
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
        let p = load(dir.path(), "p").unwrap();
        assert!(!p.has_subtasks());
        assert_eq!(p.scoring, Scoring::PassFail);
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
        // Several faults: the first in test order, as always.
        assert!(inconsistency(
            &two,
            r#"[{"input":"","output":"","subtask":3},{"input":"","output":""}]"#
        )
        .contains("test 1 names subtask 3"));
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
        assert_eq!(
            store.get("p").unwrap().tests[0].answer,
            Data::Inline("2".into())
        );
    }
}
