//! Problem packages end to end (SPEC §5): every program in the `submissions/` folders of the
//! ICPC and Polygon fixture packages, in C, C++, Python and Java, judged through `executioner
//! judge` against real Docker, each whole message sequence compared exactly.
//!
//! What each program must get is not computed here from the judge's rules: it is read from the
//! block between `verify:begin` and `verify:end` in the package's `EXPECTED.md`, written with
//! the package and checked against the package's own validator by `fixtures/problems/
//! icpc-verify.sh`. The one rule applied here is SPEC §4's for packages: `failedSubtasks` lists
//! the groups that did not get their full share (a test accepted for part of its points fails
//! its group).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{
    judge, message, pass, problems_root, run_cases, score_text, Case, JudgeRun, Pool, MEASURED,
    SOME_TEXT,
};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(600);

/// One test of a package as EXPECTED.md lists it.
#[derive(Debug, Clone)]
struct ExpectedTest {
    group: Option<u32>,
}

/// What one test must give: the wire verdict and the checker's fraction, if it gives one.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    result: &'static str,
    score: Option<f64>,
}

#[derive(Debug, Clone)]
struct Expected {
    tests: Vec<ExpectedTest>,
    /// (path under `submissions/`, per-test outcomes, score).
    programs: Vec<(String, Vec<Outcome>, f64)>,
}

/// The verify block of `problem`'s EXPECTED.md.
fn expected(problem: &str) -> Expected {
    let path = problems_root().join(problem).join("EXPECTED.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let block = text
        .split("<!-- verify:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- verify:end -->").next())
        .unwrap_or_else(|| panic!("{}: no verify block", path.display()));
    let mut tests = Vec::new();
    let mut programs = Vec::new();
    let mut section = "";
    for line in block.lines() {
        let trimmed = line.trim();
        if !line.starts_with("  ") {
            section = trimmed.split(' ').next().unwrap_or("");
            continue;
        }
        match section {
            "tests" => {
                // `t3 = secret/group1/02 (group 1) args: passfail`
                let rest = trimmed.split_once(" = ").expect("tN = name").1;
                let group = rest
                    .split_once("(group ")
                    .and_then(|(_, g)| g.split(')').next())
                    .map(|g| g.parse().expect("a group number"));
                tests.push(ExpectedTest { group });
            }
            "results" => {
                let (program, rest) = trimmed.split_once(": ").expect("program: results");
                let mut columns = rest.split(" | ");
                let outcomes = columns
                    .next()
                    .expect("results")
                    .split_whitespace()
                    .map(outcome)
                    .collect();
                let score = columns.next().expect("a score").trim();
                let score = score.parse().unwrap_or(f64::NAN);
                programs.push((program.to_owned(), outcomes, score));
            }
            _ => {}
        }
    }
    Expected { tests, programs }
}

fn outcome(word: &str) -> Outcome {
    let (result, score) = match word.split_once('(') {
        Some((result, rest)) => (
            result,
            Some(rest.trim_end_matches(')').parse().expect("a fraction")),
        ),
        None => (word, None),
    };
    let result = match result {
        "AC" => "accepted",
        "WA" => "wrong",
        "TLE" => "TLE",
        "MLE" => "MLE",
        "RTE" => "error",
        other => panic!("unknown outcome {other:?}"),
    };
    Outcome { result, score }
}

/// The language a package's program is in, by its extension, and whether it compiles.
fn language_of(path: &Path) -> (&'static str, bool) {
    match path.extension().and_then(|e| e.to_str()) {
        Some("c") => ("gcc-12", true),
        Some("cpp") => ("g++-12", true),
        Some("java") => ("java-17", true),
        Some("py") => ("python-3.11", false),
        other => panic!("{}: no language for {other:?}", path.display()),
    }
}

/// The exact messages of a program that runs to `done`.
fn messages(
    id: &str,
    expected: &Expected,
    compiled: bool,
    outcomes: &[Outcome],
    score: f64,
) -> Vec<Value> {
    let mut out = vec![message(id, "executing", json!({}))];
    if compiled {
        out.push(message(id, "compiling", json!({})));
        out.push(message(id, "compiled", json!({"result": "success"})));
    }
    let groups = expected.tests.iter().filter_map(|t| t.group).max();
    let mut failed = Vec::new();
    for (i, (test, outcome)) in expected.tests.iter().zip(outcomes).enumerate() {
        let mut position = json!({"testCase": i + 1});
        if let Some(group) = test.group {
            position["subtask"] = json!(group);
            let full = outcome.result == "accepted" && outcome.score.is_none_or(|s| s >= 1.0);
            if !full && !failed.contains(&group) {
                failed.push(group);
            }
        }
        out.push(message(id, "testing", position.clone()));
        position["result"] = json!(outcome.result);
        position["time"] = json!(MEASURED);
        position["memory"] = json!(MEASURED);
        if let Some(score) = outcome.score {
            position["score"] = score_text(score);
        }
        out.push(message(id, "tested", position));
    }
    failed.sort_unstable();
    let mut done = json!({"score": score_text(score)});
    if groups.is_some() {
        done["failedSubtasks"] = json!(failed);
    }
    out.push(message(id, "done", done));
    out
}

/// Every program of `problem`'s EXPECTED.md, judged as a case.
fn package_cases(problem: &'static str) -> Vec<Case> {
    let expected = expected(problem);
    assert!(
        !expected.programs.is_empty(),
        "{problem}: EXPECTED.md names no program"
    );
    expected
        .programs
        .clone()
        .into_iter()
        .map(|(program, outcomes, score)| {
            // ICPC programs are under `submissions/`; Polygon's are named from the package root.
            let package = problems_root().join(problem);
            let source = if program.starts_with("solutions/") {
                package.join(&program)
            } else {
                package.join("submissions").join(&program)
            };
            let (language, compiled) = language_of(&source);
            let expected = expected.clone();
            let slow = outcomes.iter().any(|o| o.result == "TLE");
            let cost = Duration::from_secs(if slow { 8 } else { 2 });
            Case::new(
                format!("{problem} / {program}"),
                Pool::Cpu,
                cost,
                move || {
                    assert_eq!(
                        outcomes.len(),
                        expected.tests.len(),
                        "{program}: one outcome a test"
                    );
                    judge(problem, language, &source, DEADLINE)?
                        .check(|id| messages(id, &expected, compiled, &outcomes, score))
                },
            )
        })
        .collect()
}

#[test]
fn icpc_float_tolerance_legacy_layout() {
    run_cases(package_cases("icpc-float"));
}

#[test]
fn icpc_case_insensitive_groups() {
    run_cases(package_cases("icpc-case"));
}

#[test]
fn icpc_custom_validator_in_cpp() {
    run_cases(package_cases("icpc-custom-cpp"));
}

#[test]
fn icpc_custom_validator_in_python() {
    run_cases(package_cases("icpc-custom-py"));
}

#[test]
fn icpc_custom_validator_in_java() {
    run_cases(package_cases("icpc-custom-java"));
}

#[test]
fn icpc_scoring_groups_with_partial_scores() {
    run_cases(package_cases("icpc-scoring"));
}

/// The output validator is the interactor: each program's whole message sequence, including
/// one that never flushes (TLE), one that crashes after a correct answer (`error`) and one that
/// floods the interactor (`wrong`).
#[test]
fn icpc_interactive_guess_the_number() {
    run_cases(package_cases("icpc-interactive-guess"));
}

/// Multi-pass: the program runs again on the `nextpass.in` the validator wrote, up to three
/// passes.
#[test]
fn icpc_multi_pass() {
    run_cases(package_cases("icpc-multipass-sum"));
}

/// Polygon: a testlib interactor talks to the program, then the testlib checker judges its log.
#[test]
fn polygon_interactor_and_checker() {
    run_cases(package_cases("polygon-interactive-guess"));
}

#[test]
fn polygon_testlib_checker_with_points_groups() {
    run_cases(package_cases("polygon-sum-points"));
}

#[test]
fn polygon_input_and_output_files() {
    run_cases(package_cases("polygon-file-io"));
}

/// A broken package ends each submission with `error` naming the fault, never a verdict.
fn broken(problem: &'static str, tests_started: usize, reason: &'static str) -> Case {
    Case::new(problem, Pool::Cpu, Duration::from_secs(5), move || {
        let source = problems_root()
            .join(problem)
            .join("submissions/accepted/sol.py");
        let run = judge(problem, "python-3.11", &source, DEADLINE)?;
        let said = run
            .messages
            .last()
            .and_then(|m| m["reason"].as_str())
            .unwrap_or_default()
            .to_owned();
        if !said.contains(reason) {
            return Err(format!(
                "{problem}: the reason {said:?} does not say {reason:?}\n{}",
                run.stderr_tail
            ));
        }
        run.check(|id| {
            let mut out = vec![message(id, "executing", json!({}))];
            for i in 1..=tests_started {
                out.push(message(id, "testing", json!({"testCase": i})));
            }
            out.push(message(id, "error", json!({"reason": SOME_TEXT})));
            out
        })
    })
}

#[test]
fn broken_packages_are_judging_faults() {
    run_cases(vec![
        broken("broken-icpc-crash", 1, "exit code 1"),
        broken("broken-icpc-hang", 1, "time limit"),
        broken("broken-icpc-exit0", 1, "exit code 0"),
        broken("broken-icpc-missing-ans", 0, ".ans"),
        broken("broken-icpc-noncompiling", 0, "does not compile"),
        // An interactor that spins: its own CPU limit ends it, a judging fault, never a TLE.
        broken("broken-icpc-interactive-hang", 1, "time limit"),
    ]);
}

/// `executioner workflow validate` with no `--solutions` judges the package's own
/// `submissions/` and finds each program where its folder says.
#[test]
fn validate_judges_a_package_by_its_own_submissions() {
    let mut cases = Vec::new();
    for problem in ["icpc-float", "icpc-scoring", "icpc-interactive-guess"] {
        cases.push(Case::new(
            format!("validate {problem}"),
            Pool::Cpu,
            Duration::from_secs(30),
            move || {
                let output = common::executioner()
                    .args(["workflow", "validate", "--problems"])
                    .arg(problems_root())
                    .args(["--problem", problem])
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|e| format!("cannot run executioner: {e}"))?;
                let report = String::from_utf8_lossy(&output.stdout);
                if !output.status.success() {
                    return Err(format!(
                        "exit status {}; report:\n{report}\nstderr:\n{}",
                        output.status,
                        common::tail(&output.stderr, 3000)
                    ));
                }
                for (program, _, _) in expected(problem).programs {
                    if !report.contains(program.as_str()) {
                        return Err(format!("the report does not name {program}:\n{report}"));
                    }
                }
                Ok(())
            },
        ));
    }
    run_cases(cases);
}

/// A hostile output (60 MB on one line, NUL bytes in it) is judged `wrong` by a custom checker
/// without the judge holding it: its peak memory stays within a few MB of judging a tiny wrong
/// output.
#[test]
fn a_hostile_output_reaches_the_checker_without_growing_the_judge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let program = |name: &str, body: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("#include <stdio.h>\nint main(void) {{ {body} return 0; }}\n"),
        )
        .expect("write the program");
        path
    };
    let tiny = program("tiny.c", "puts(\"1 1\");");
    let flood = program(
        "flood.c",
        "static char line[1 << 20]; for (int i = 0; i < (int)sizeof line; i++) line[i] = i % 97 ? 'x' : 0; \
         for (int i = 0; i < 60; i++) fwrite(line, 1, sizeof line, stdout);",
    );
    let peak = |source: &Path| peak_judging(&problems_root(), "icpc-custom-cpp", source);
    let check = || -> Result<(), String> {
        let (base, _) = peak(&tiny)?;
        let (hostile, messages) = peak(&flood)?;
        let results: Vec<&str> = messages
            .iter()
            .filter(|m| m["state"] == "tested")
            .map(|m| m["result"].as_str().unwrap_or_default())
            .collect();
        if results.is_empty() || results.iter().any(|r| *r != "wrong") {
            return Err(format!("expected every test wrong, got {results:?}"));
        }
        // The output is 60 MB; the judge may grow by allocator noise, never by the output.
        if hostile > base + 8 * 1024 {
            return Err(format!(
                "the judge peaked at {hostile} KB judging 60 MB outputs, {base} KB judging tiny ones"
            ));
        }
        eprintln!("peak RSS: {base} KB (tiny output), {hostile} KB (60 MB output)");
        Ok(())
    };
    pass(check());
}

/// Judges `source` (C) with `executioner judge`: the judge's peak resident memory (KB) and its
/// messages.
fn peak_judging(
    problems: &Path,
    problem: &str,
    source: &Path,
) -> Result<(u64, Vec<Value>), String> {
    let mut child = common::executioner()
        .args(["judge", "--problems"])
        .arg(problems)
        .args(["--problem", problem, "--language", "gcc-12"])
        .arg(source)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run executioner: {e}"))?;
    let pid = child.id();
    let stdout = common::drain(child.stdout.take().expect("piped"));
    let status = wait4(pid)?;
    let out = stdout.join().unwrap_or_default();
    let messages = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if status.0 != 0 {
        return Err(format!("exit status {}: {messages:?}", status.0));
    }
    Ok((status.1, messages))
}

/// Big test data is streamed: a package of 4 tests whose inputs and answers are 50 MB each is
/// judged (input copied in by the kernel, output compared by the default validator as streams)
/// with the judge's memory as flat as for a package of tiny tests.
#[test]
fn big_test_data_is_streamed_with_the_judge_memory_flat() {
    const MB: usize = 1 << 20;
    let root = tempfile::tempdir().expect("temp dir");
    let write_package = |id: &str, tests: usize, megabytes: usize| {
        let dir = root.path().join(id);
        std::fs::create_dir_all(dir.join("data/secret")).expect("package dir");
        std::fs::write(
            dir.join("problem.yaml"),
            "problem_format_version: 2025-09\nname: Echo\nuuid: 1\nlimits:\n  time_limit: 5\n  memory: 64\n  output: 100\n",
        )
        .expect("problem.yaml");
        // One line of numbers, repeated: the program echoes it, the answer is the same.
        let line: String = (0..MB / 8)
            .map(|i| format!("{:07}\n", i % 9_999_999))
            .collect();
        for t in 0..tests {
            for ext in ["in", "ans"] {
                let path = dir.join(format!("data/secret/{t:02}.{ext}"));
                let mut file =
                    std::io::BufWriter::new(std::fs::File::create(&path).expect("test file"));
                for _ in 0..megabytes {
                    std::io::Write::write_all(&mut file, line.as_bytes()).expect("write");
                }
            }
        }
    };
    write_package("tiny", 4, 0);
    write_package("big", 4, 50);
    let source = root.path().join("echo.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { static char b[1 << 16]; size_t n; \
         while ((n = fread(b, 1, sizeof b, stdin)) > 0) fwrite(b, 1, n, stdout); return 0; }\n",
    )
    .expect("write the program");
    let check = || -> Result<(), String> {
        let (tiny, _) = peak_judging(root.path(), "tiny", &source)?;
        let (big, messages) = peak_judging(root.path(), "big", &source)?;
        let results: Vec<&str> = messages
            .iter()
            .filter(|m| m["state"] == "tested")
            .map(|m| m["result"].as_str().unwrap_or_default())
            .collect();
        if results != ["accepted"; 4] {
            return Err(format!("expected 4 accepted tests, got {results:?}"));
        }
        if big > tiny + 8 * 1024 {
            return Err(format!(
                "the judge peaked at {big} KB on 200 MB of tests, {tiny} KB on tiny ones"
            ));
        }
        eprintln!("peak RSS: {tiny} KB (tiny tests), {big} KB (4 tests of 50 MB)");
        Ok(())
    };
    pass(check());
}

/// Waits for `pid` (a child of this process); its exit code and peak resident memory in KB.
fn wait4(pid: u32) -> Result<(i32, u64), String> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; both pointers are to live locals.
    let reaped = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    if reaped != pid as i32 {
        return Err(format!("wait4: {}", std::io::Error::last_os_error()));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss as u64))
}

/// `executioner problem check` says what the judge understood, compiles the checker, and
/// refuses a broken package with its reason.
#[test]
fn problem_check_describes_packages_and_names_what_is_broken() {
    let check = |problem: &str| {
        let output = common::executioner()
            .args(["problem", "check", "--problems"])
            .arg(problems_root())
            .args(["--problem", problem])
            .output()
            .expect("run executioner problem check");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = check("polygon-sum-points");
    assert_eq!(code, Some(0), "{out}\n{err}");
    for expected in [
        "(polygon format)",
        "limits: time 1000 ms, memory 262144 KB",
        "subtask 3 2: share 0.6000, sum, 4 test(s), requires [2]: 05 06 07 08",
        "checker: testlib checker in C++",
        "checker: compiled: ",
    ] {
        assert!(out.contains(expected), "{expected:?} missing in:\n{out}");
    }
    let (code, out, err) = check("icpc-scoring");
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("subtask 2 secret/group2: share 0.7000, sum, 4 test(s)"),
        "{out}"
    );
    for (problem, reason) in [
        ("broken-icpc-missing-ans", ".ans"),
        ("broken-icpc-noncompiling", "does not compile"),
        ("broken-scores", "add up to"),
    ] {
        let (code, out, err) = check(problem);
        assert_eq!(code, Some(1), "{problem}: {out}\n{err}");
        assert!(err.contains(reason), "{problem}: {reason:?} not in {err}");
    }
}

/// The program never sees what the checker sees: the package (answers, checker sources), the
/// compiled checker, its feedback folder. A program that finds any of them exits 3 (`error`);
/// one that finds none solves the problem (`accepted`).
#[test]
fn the_program_cannot_see_answers_checker_or_feedback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("snoop.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <unistd.h>
int main(void) {
    const char *secrets[] = {
        "/judge/problem", "/judge/problem/tests/01.a", "/judge/checker",
        "/judge/checker/checker", "/judge/io/feedback", "/judge/io/team_output",
        "/judge/io/answer", "/judge/io/stdout", "/box/build/../../judge/problem",
    };
    for (unsigned i = 0; i < sizeof secrets / sizeof *secrets; i++)
        if (access(secrets[i], F_OK) == 0) return 3;
    long long a, b;
    FILE *in = fopen("input.txt", "r"), *out = fopen("output.txt", "w");
    if (!in || !out || fscanf(in, "%lld %lld", &a, &b) != 2) return 1;
    fprintf(out, "%lld\n", a + b);
    return fclose(out) != 0;
}
"#,
    )
    .expect("write the program");
    let run = judge("polygon-file-io", "gcc-12", &source, DEADLINE);
    pass(run.and_then(|run| every_test(&run, 3, "accepted")));
}

/// An interactive program sees only its two pipes: not the interactor's container (its
/// binary, the input, the answer, the feedback folder), not the FIFOs' files, not the
/// interactor's process. A program that finds any of them exits 3 or 4 (`error`); one that
/// finds none plays the game (`accepted`).
#[test]
fn an_interactive_program_sees_only_its_pipes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = dir.path().join("snoop.c");
    std::fs::write(
        &source,
        r#"#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    const char *secrets[] = {
        "/judge/peer", "/judge/peer/to-program", "/judge/problem", "/judge/checker",
        "/judge/io/to-program", "/judge/io/to-interactor", "/judge/io/answer",
        "/judge/io/input", "/judge/io/feedback",
    };
    for (unsigned i = 0; i < sizeof secrets / sizeof *secrets; i++)
        if (access(secrets[i], F_OK) == 0) return 3;
    DIR *proc = opendir("/proc");
    for (struct dirent *e; proc && (e = readdir(proc));) {
        char path[300], text[512];
        snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i++) if (!text[i]) text[i] = ' ';
        text[n] = 0;
        if (strstr(text, "/judge/checker") || strstr(text, "feedback")) return 4;
    }
    long n, lo = 1, hi;
    if (scanf("%ld", &n) != 1) return 1;
    for (hi = n; lo <= hi;) {
        long mid = lo + (hi - lo) / 2;
        printf("? %ld\n", mid);
        fflush(stdout);
        char reply[4];
        if (scanf("%3s", reply) != 1 || reply[0] == '=') return 0;
        if (reply[0] == '<') hi = mid - 1; else lo = mid + 1;
    }
    return 0;
}
"#,
    )
    .expect("write the program");
    let run = judge("icpc-interactive-guess", "gcc-12", &source, DEADLINE);
    pass(run.and_then(|run| every_test(&run, 6, "accepted")));
}

/// Hostile programs on an interactive problem end with the right verdict within the wall limit,
/// and nothing is left waiting: one that closes its stdout at once and then waits forever (the
/// interactor rejects first: `wrong`), one whose child keeps the pipes open after the parent
/// exits (the child dies with the run, the interactor rejects: `wrong`), one that never reads
/// nor writes (`TLE`).
#[test]
fn hostile_interactive_programs_get_their_verdicts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let programs = [
        (
            "closes_stdout",
            "#include <unistd.h>\nint main(void) { close(1); for (;;) pause(); }\n",
            "wrong",
        ),
        (
            "forks",
            "#include <unistd.h>\nint main(void) { if (fork() == 0) for (;;) pause(); return 0; }\n",
            "wrong",
        ),
        (
            "silent",
            "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
            "TLE",
        ),
    ];
    let mut cases = Vec::new();
    for (name, text, verdict) in programs {
        let source = dir.path().join(format!("{name}.c"));
        std::fs::write(&source, text).expect("write the program");
        cases.push(Case::new(
            name,
            Pool::Idle,
            Duration::from_secs(20),
            move || {
                let run = judge("icpc-interactive-guess", "gcc-12", &source, DEADLINE)?;
                every_test(&run, 6, verdict).map_err(|e| format!("{name}: {e}"))
            },
        ));
    }
    run_cases(cases);
}

/// Checks that `run` judged `count` tests, each with `verdict`.
fn every_test(run: &JudgeRun, count: usize, verdict: &str) -> Result<(), String> {
    let results: Vec<&str> = run
        .messages
        .iter()
        .filter(|m| m["state"] == "tested")
        .filter_map(|m| m["result"].as_str())
        .collect();
    if results.len() == count && results.iter().all(|r| *r == verdict) {
        Ok(())
    } else {
        Err(format!(
            "expected {count} × {verdict}, got {results:?}\n{}",
            run.stderr_tail
        ))
    }
}
