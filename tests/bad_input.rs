//! Submissions and problems the judge must refuse or survive (SPEC §2, §5, §7): what the
//! submitter got wrong is `invalid` (exit 2), what the deployment got wrong is `error` (exit 1),
//! and what the program does (however strange its output) is a normal verdict.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    expected_invalid, expected_messages, judge, language, languages, pass, run_cases, Case, Kind,
    Pool, Problem, Verdict,
};

/// Invalid and error runs end before any test runs.
const QUICK: Duration = Duration::from_secs(120);

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

fn quick(name: String, check: impl FnOnce() -> Result<(), String> + Send + 'static) -> Case {
    Case::new(name, Pool::Cpu, Duration::from_secs(1), check)
}

#[test]
fn unknown_language_is_invalid() {
    let source = language("gcc-12").submission(Kind::Accepted);
    pass(
        judge("test-base", "cobol-1960", &source, QUICK)
            .and_then(|run| run.check(expected_invalid)),
    );
}

#[test]
fn impossible_problem_ids_are_invalid() {
    let mut cases = Vec::new();
    for id in [
        "../x",
        "x/../test-base",
        "/etc",
        "TEST-BASE",
        "test_base",
        "test base",
    ] {
        cases.push(quick(format!("problem id {id:?}"), move || {
            let source = language("gcc-12").submission(Kind::Accepted);
            judge(id, "gcc-12", &source, QUICK)?.check(expected_invalid)
        }));
    }
    run_cases(cases);
}

#[test]
fn empty_source_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for language in languages() {
        let source = write(dir.path(), &format!("empty.{}", language.extension), b"");
        cases.push(quick(
            format!("empty source / {}", language.id),
            move || judge("test-base", &language.id, &source, QUICK)?.check(expected_invalid),
        ));
    }
    run_cases(cases);
}

#[test]
fn oversized_source_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for language in languages() {
        // 10 MB of blank lines before a correct program: valid in every language, only too big.
        let mut text = vec![b'\n'; 10 << 20];
        text.extend(std::fs::read(language.submission(Kind::Accepted)).unwrap());
        let source = write(dir.path(), &format!("big.{}", language.extension), &text);
        cases.push(quick(
            format!("10 MB source / {}", language.id),
            move || judge("test-base", &language.id, &source, QUICK)?.check(expected_invalid),
        ));
    }
    run_cases(cases);
}

#[test]
fn missing_problem_is_an_error() {
    let source = language("gcc-12").submission(Kind::Accepted);
    pass(judge("no-such-problem", "gcc-12", &source, QUICK).and_then(|run| run.check_error()));
}

#[test]
fn broken_problems_are_errors() {
    let mut cases = Vec::new();
    for problem in [
        "broken-missing-subtask",
        "broken-scores",
        "broken-limits",
        "broken-json",
    ] {
        for language in languages() {
            cases.push(quick(format!("{problem} / {}", language.id), move || {
                let source = language.submission(Kind::Accepted);
                judge(problem, &language.id, &source, QUICK)?.check_error()
            }));
        }
    }
    run_cases(cases);
}

/// Output that is not UTF-8 is compared like any other (and is wrong here: an extra token).
#[test]
fn non_utf8_output_is_judged_wrong() {
    check_special_program("output_non_utf8", Verdict::Wrong);
}

/// A program writing without end is stopped by the output limit: `error`, not TLE or MLE.
#[test]
fn endless_output_is_stopped_as_an_error() {
    check_special_program("output_flood", Verdict::Error);
}

/// Judges C fixture program `name` on test-base, where every test must get `verdict`.
fn check_special_program(name: &str, verdict: Verdict) {
    let c = language("gcc-12");
    let problem = Problem::load("test-base");
    let verdicts = vec![verdict; problem.tests.len()];
    pass(
        judge(
            &problem.id,
            &c.id,
            &c.program(name),
            problem.judge_deadline(),
        )
        .and_then(|run| {
            run.check(|id| expected_messages(id, &problem, c.compiled, Some(&verdicts)))
        }),
    );
}
