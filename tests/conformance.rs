//! End-to-end conformance: every fixture program of every language (languages.toml) on every
//! fixture problem, through `executioner judge`, checked message by message against SPEC §2-4.
//! One test per problem; each runs its cases in parallel (bounded, see `common::run_cases`) and
//! reports every mismatching case by name before failing.
//! `EXECUTIONER_TEST_LANGUAGES=java-17,gcc-12` (ids, not aliases) restricts the matrix to those
//! languages.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use std::time::Duration;

use common::{
    expected_messages, judge, languages, run_cases, tested_languages, Case, Kind, Language, Pool,
    Problem, Verdict,
};

/// The main problems: every kind of program.
fn every_kind(language: &Language) -> Vec<Kind> {
    language.kinds()
}

/// The edge-case problems are about outputs: only programs that end quickly. (Busy loops and
/// hangs on 60 tests would cost minutes and test nothing the main problems do not.)
fn output_kinds(language: &Language) -> Vec<Kind> {
    language
        .kinds()
        .into_iter()
        .filter(|k| {
            matches!(
                k,
                Kind::Accepted
                    | Kind::CompileSuccess
                    | Kind::Wrong
                    | Kind::Error
                    | Kind::Empty
                    | Kind::Whitespace
            )
        })
        .collect()
}

fn conformance(problem_id: &str, kinds: fn(&Language) -> Vec<Kind>) {
    let problem = Problem::load(problem_id);
    let cases = tested_languages()
        .iter()
        .flat_map(|language| {
            kinds(language)
                .into_iter()
                .map(|kind| Case::fixture(&problem, language, kind))
                .collect::<Vec<_>>()
        })
        .collect();
    run_cases(cases);
}

#[test]
fn test_base() {
    conformance("test-base", every_kind);
}

#[test]
fn test_subtasks_pass() {
    conformance("test-subtasks-pass", every_kind);
}

#[test]
fn test_subtasks_fail() {
    conformance("test-subtasks-fail", every_kind);
}

#[test]
fn test_subtasks_mixed() {
    conformance("test-subtasks-mixed", every_kind);
}

#[test]
fn edge_empty_output() {
    conformance("edge-empty-output", output_kinds);
}

#[test]
fn edge_many_tests() {
    conformance("edge-many-tests", output_kinds);
}

#[test]
fn edge_big_output() {
    conformance("edge-big-output", output_kinds);
}

#[test]
fn edge_whitespace() {
    conformance("edge-whitespace", output_kinds);
}

/// A program writing "y\n" without end (`output_flood`, in every language) is stopped by the
/// output limit on every test: `error`, never TLE or MLE, whatever its runtime buffers.
#[test]
fn output_limit() {
    let problem = Problem::load("test-base");
    let cases = tested_languages()
        .into_iter()
        .map(|language| {
            let problem = problem.clone();
            let name = format!("{} / {} / output_flood", problem.id, language.id);
            let cost = Duration::from_millis(500 + 50 * problem.tests.len() as u64);
            Case::new(name, Pool::Cpu, cost, move || {
                let verdicts = vec![Verdict::Error; problem.tests.len()];
                judge(
                    &problem.id,
                    &language.id,
                    &language.program(OUTPUT_FLOOD),
                    problem.judge_deadline(),
                )?
                .check(|id| expected_messages(id, &problem, language.compiled, Some(&verdicts)))
            })
        })
        .collect();
    run_cases(cases);
}

/// The fixture program of every language that writes without end.
const OUTPUT_FLOOD: &str = "output_flood";

/// The fixtures do what fixtures/README.md says they were designed for (no judge involved): if
/// this fails, a fixture changed, not the judge.
#[test]
fn fixtures_are_designed_as_documented() {
    use Kind::*;
    // (problem, kind, score, failed subtasks)
    let designed: &[(&str, Kind, f64, Option<&[u64]>)] = &[
        ("test-base", Accepted, 1.0, None),
        ("test-base", Wrong, 0.0, None),
        ("test-subtasks-pass", Accepted, 1.0, Some(&[])),
        ("test-subtasks-pass", Wrong, 0.0, Some(&[1, 2, 3])),
        ("test-subtasks-fail", Accepted, 0.8571, Some(&[2])),
        ("test-subtasks-fail", Wrong, 0.0, Some(&[1, 2, 3])),
        ("test-subtasks-mixed", Accepted, 0.4286, Some(&[1, 3])),
        ("test-subtasks-mixed", Whitespace, 0.4286, Some(&[1, 3])),
        ("test-subtasks-mixed", Wrong, 0.3214, Some(&[1, 2, 4])),
        ("test-subtasks-mixed", Empty, 0.0, Some(&[1, 2, 3, 4])),
        ("test-subtasks-mixed", Tle, 0.0, Some(&[1, 2, 3, 4])),
        ("edge-empty-output", Empty, 1.0, None),
        ("edge-empty-output", Whitespace, 0.0, None),
        ("edge-empty-output", Accepted, 0.0, None),
        ("edge-many-tests", Accepted, 1.0, None),
        ("edge-big-output", Accepted, 1.0, None),
        ("edge-big-output", Whitespace, 1.0, None),
        ("edge-whitespace", Accepted, 1.0, None),
        ("edge-whitespace", Whitespace, 1.0, None),
        ("edge-whitespace", Empty, 0.0, None),
    ];
    let c = common::language("gcc-12");
    for &(problem_id, kind, score, failed) in designed {
        let problem = Problem::load(problem_id);
        let verdicts = kind.verdicts(&c, &problem).expect("compiles");
        let (s, f) = problem.score(&verdicts);
        assert_eq!(
            (s, f.as_deref()),
            (score, failed),
            "{problem_id} / {}",
            kind.stem()
        );
    }
    // The edge cases really are what their names say.
    let empty = Problem::load("edge-empty-output");
    assert!(empty.tests.iter().all(|t| t.output.trim().is_empty()));
    assert_eq!(
        Kind::Empty.verdicts(&c, &empty).expect("compiles"),
        vec![Verdict::Accepted; 3]
    );
    assert_eq!(Problem::load("edge-many-tests").tests.len(), 60);
    let big = &Problem::load("edge-big-output").tests[0];
    assert!(
        big.output.len() > 150_000,
        "big output is {} bytes",
        big.output.len()
    );
    // Without subtask rounding the full score would not be exactly 1.
    let pass = Problem::load("test-subtasks-pass");
    assert_ne!(pass.subtask_scores.iter().sum::<f64>(), 1.0);
}

/// Every language has every kind of fixture program.
#[test]
fn every_language_has_every_fixture_program() {
    let mut missing = Vec::new();
    for language in languages() {
        let programs = language
            .kinds()
            .into_iter()
            .map(|kind| language.submission(kind));
        for path in programs.chain([language.program(OUTPUT_FLOOD)]) {
            if !path.is_file() {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "missing fixture programs: {missing:#?}");
}

/// `executioner languages` lists exactly the registry: each id with its aliases.
#[test]
fn languages_command_lists_the_registry() {
    let output = common::executioner()
        .arg("languages")
        .stderr(Stdio::inherit())
        .output()
        .expect("run executioner languages");
    assert!(output.status.success(), "exit status {}", output.status);
    let listed: BTreeSet<Vec<String>> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words: Vec<String> = l.split_whitespace().map(str::to_owned).collect();
            words[1..].sort();
            words
        })
        .collect();
    let registry: BTreeSet<Vec<String>> = languages()
        .into_iter()
        .map(|l| {
            let mut aliases = l.aliases;
            aliases.sort();
            std::iter::once(l.id).chain(aliases).collect()
        })
        .collect();
    assert_eq!(listed, registry);
}

/// `executioner languages --json` gives each language's id, aliases, file extensions (those a
/// package's `submissions/` files map by), whether it compiles, image and time factor, in
/// registry order;
/// `--long` is the same as a table for people.
#[test]
fn languages_command_lists_extensions_and_images() {
    let listing = |flag: &str| {
        let output = common::executioner()
            .args(["languages", flag])
            .stderr(Stdio::inherit())
            .output()
            .expect("run executioner languages");
        assert!(
            output.status.success(),
            "{flag}: exit status {}",
            output.status
        );
        String::from_utf8(output.stdout).expect("UTF-8 listing")
    };
    let registry = languages();
    let json: Vec<serde_json::Value> = listing("--json")
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(json.len(), registry.len());
    for (listed, language) in json.iter().zip(&registry) {
        assert_eq!(listed["id"], language.id.as_str());
        assert_eq!(listed["aliases"], serde_json::json!(language.aliases));
        assert_eq!(listed["extensions"], serde_json::json!(language.extensions));
        assert_eq!(listed["compiled"], language.compiled);
        assert_eq!(listed["image"], language.image.as_str());
        assert_eq!(listed["timeFactor"], language.time_factor);
        assert!(
            language.extensions.contains(&language.extension),
            "{}: its own source extension {:?} is not among its extensions",
            language.id,
            language.extension
        );
    }
    let long = listing("--long");
    let mut rows = long.lines();
    let header: Vec<&str> = rows.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "ALIASES",
            "EXTENSIONS",
            "COMPILED",
            "IMAGE",
            "TIME",
            "NAME"
        ]
    );
    for (row, language) in rows.zip(&registry) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], language.id);
        assert_eq!(cells[2], language.extensions.join(","), "{row}");
        assert_eq!(cells[4], language.image, "{row}");
        assert_eq!(cells[5], format!("{}x", language.time_factor), "{row}");
    }
}
