//! Several files per submission (issue #16 item 4, SPEC §1 `files`), against real Docker: the
//! multi-file fixtures (`fixtures/multi-file/<language>/<case>/`) are judged accepted in C, C++,
//! Java and Python, through the judge (as the memory worker judges), through `executioner judge
//! --file` and through Postgres; bad file names end as `invalid` with the reason.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use executioner::protocol::{Body, Message, SourceFile, Submission};

mod common;
mod judging;

/// `case` is `<folder>/<case>` under `fixtures/multi-file/`: the folder is named after the
/// language the case was written for; its variants (C++20 on GCC, Clang) judge the same files.
fn case_dir(case: &str) -> PathBuf {
    judging::repo().join("fixtures/multi-file").join(case)
}

/// The main source's file name in the language (its `source` in languages.toml).
fn main_name(language: &str) -> &'static str {
    match language {
        "java-17" => "Main.java",
        "python-3.11" | "pypy-3.9" => "main.py",
        c if c.starts_with("gcc") || c == "clang-16" => "main.c",
        _ => "main.cpp",
    }
}

/// The fixture case as a submission: the main source as `sourceCode`, the rest as `files`.
fn multi(id: &str, language: &str, case: &str) -> Submission {
    let dir = case_dir(case);
    let main = main_name(language);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name != main {
            files.push(SourceFile {
                name,
                content: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!files.is_empty(), "{}", dir.display());
    Submission {
        id: id.to_owned(),
        problem: "test-base".to_owned(),
        language: language.to_owned(),
        source_code: std::fs::read_to_string(dir.join(main)).unwrap(),
        files,
        run: None,
    }
}

/// (language, case): judged for the languages under test (`EXECUTIONER_TEST_LANGUAGES`).
const CASES: [(&str, &str); 12] = [
    ("gcc-12", "gcc-12/header-and-unit"),
    ("clang-16", "gcc-12/header-and-unit"),
    ("g++-12", "g++-12/header-and-unit"),
    ("g++-12-c++20", "g++-12/header-and-unit"),
    ("g++-12-c++23", "g++-12/header-and-unit"),
    ("clang++-16", "g++-12/header-and-unit"),
    ("clang++-16-c++20", "g++-12/header-and-unit"),
    ("clang++-16-c++23", "g++-12/header-and-unit"),
    ("java-17", "java-17/two-classes"),
    ("python-3.11", "python-3.11/module"),
    ("python-3.11", "python-3.11/dunder-main"),
    ("pypy-3.9", "pypy-3.9/module"),
];

async fn judged(submission: &Submission) -> (Body, Vec<Body>) {
    let judge = judging::judge().await;
    let cancel = CancellationToken::new();
    let (tx, mut rx) = mpsc::channel::<Message>(16);
    let collect = async {
        let mut bodies = Vec::new();
        while let Some(message) = rx.recv().await {
            bodies.push(message.body);
        }
        bodies
    };
    let (end, bodies) = tokio::join!(judge.judge(submission, tx, &cancel), collect);
    (end.expect("the receiver stayed"), bodies)
}

fn accepted(end: &Body, bodies: &[Body]) -> bool {
    matches!(end, Body::Done { score: Some(s), .. } if *s == 1.0)
        && bodies
            .iter()
            .filter(|b| matches!(b, Body::Tested { .. }))
            .count()
            == 3
}

#[tokio::test]
async fn multi_file_submissions_are_accepted_in_every_language_with_a_rule() {
    let tested: Vec<String> = common::tested_languages()
        .into_iter()
        .map(|l| l.id)
        .collect();
    let mut failures = Vec::new();
    let mut judged_cases = 0;
    for (language, case) in CASES {
        if !tested.iter().any(|id| id == language) {
            continue;
        }
        judged_cases += 1;
        let id = format!("multi-{language}-{}", case.replace('/', "-"));
        let submission = multi(&id, language, case);
        let (end, bodies) = judged(&submission).await;
        if !accepted(&end, &bodies) {
            failures.push(format!("{language} {case}: {end:?} after {bodies:?}"));
        }
        // The main source alone does not solve the task: the files are what make it accepted.
        let alone = Submission {
            files: Vec::new(),
            ..submission
        };
        let (end, bodies) = judged(&alone).await;
        if accepted(&end, &bodies) {
            failures.push(format!("{language} {case}: accepted without its files"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(judged_cases > 0, "no multi-file case in a tested language");
}

#[tokio::test]
async fn bad_file_names_are_invalid_with_the_reason() {
    let good = multi("bad", "g++-12", "g++-12/header-and-unit");
    let named = |names: &[&str]| -> Vec<SourceFile> {
        names
            .iter()
            .map(|n| SourceFile {
                name: (*n).to_owned(),
                content: "int x;\n".to_owned(),
            })
            .collect()
    };
    let many: Vec<String> = (0..65).map(|i| format!("f{i}.cpp")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let cases: Vec<(Vec<SourceFile>, &str)> = vec![
        (named(&["../x"]), "file name \"../x\""),
        (named(&["a/b"]), "path separator"),
        (named(&["a.cpp", "a.cpp"]), "appears twice"),
        (named(&["main.cpp"]), "own source file name"),
        (named(&[""]), "is empty"),
        (named(&many), "more than the limit of 64"),
    ];
    for (files, reason) in cases {
        let submission = Submission {
            files,
            ..good.clone()
        };
        let (end, bodies) = judged(&submission).await;
        match &end {
            Body::Invalid { reason: Some(got) } if got.contains(reason) => {}
            other => panic!("{reason}: {other:?}"),
        }
        assert_eq!(bodies.len(), 1, "{bodies:?}");
    }
    // Together the files may not be larger than one source may be.
    let big = Submission {
        files: vec![SourceFile {
            name: "big.hpp".into(),
            content: "/".repeat(executioner::judge::JudgeConfig::default().max_source_bytes),
        }],
        ..good
    };
    match judged(&big).await.0 {
        Body::Invalid { reason: Some(got) } if got.contains("source code and files") => {}
        other => panic!("{other:?}"),
    }
}

/// `executioner judge --file PATH` (repeatable): each file named by its base name.
#[test]
fn the_cli_judges_a_multi_file_submission() {
    let dir = case_dir("java-17/two-classes");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_executioner"))
        .arg("judge")
        .arg("--problems")
        .arg(judging::problems())
        .args(["--problem", "test-base", "--language", "java"])
        .arg(dir.join("Main.java"))
        .arg("--file")
        .arg(dir.join("Summer.java"))
        .stdin(Stdio::null())
        .output()
        .expect("run executioner judge");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap();
    assert_eq!(last["state"], "done", "{stdout}");
    assert_eq!(last["score"].as_f64(), Some(1.0), "{stdout}");
    assert!(output.status.success());
    assert!(Path::new(&dir).join("Summer.java").exists());
}
