//! Memory limits mean the same for a managed runtime as for C: a program that stays within the
//! problem's limit is not killed for the runtime's own overhead (here the JVM: its heap is capped
//! at the limit, its own memory comes on top, `memory_extra_kb`), and deep recursion fits the
//! thread stack the run command gives. Going over the limit is `test_mle` in the conformance
//! tests. Every language with a `memory_near_limit` fixture program is checked near its limit.
//! Also: the Java class run is the public one as javac reads the file. Programs:
//! `fixtures/submissions/java-17/{memory_near_limit,deep_recursion,commented_public_class}.java`.

mod common;

use std::process::Command;

use common::{
    expected_for_kind, expected_messages, judge, language, pass, tested_languages, Kind, Problem,
    Verdict,
};

/// Judges program `name` of language `id` on test-base (128000 KB, 3000 ms), where every test
/// must be accepted.
fn accepted_on_test_base_in(id: &str, name: &str) -> Result<(), String> {
    let problem = Problem::load("test-base");
    let lang = language(id);
    let verdicts = vec![Verdict::Accepted; problem.tests.len()];
    judge(
        &problem.id,
        &lang.id,
        &lang.program(name),
        problem.judge_deadline(),
    )?
    .check(|sid| expected_messages(sid, &problem, lang.compiled, Some(&verdicts)))
}

fn accepted_on_test_base(name: &str) -> Result<(), String> {
    accepted_on_test_base_in("java-17", name)
}

/// A program of a managed runtime (a garbage collector, a heap the runtime sizes) that keeps
/// about 100 MiB live within test-base's 125 MiB limit, with garbage made on the way, is
/// accepted: the runtime's own memory is not charged against the contestant. Every tested
/// language with a `memory_near_limit` fixture program (Java's keeps 100 MiB live of a 125 MiB
/// heap, with the JIT compiling). Going over the limit is `test_mle` in the conformance tests.
#[test]
fn a_managed_runtime_program_near_its_memory_limit_is_accepted() {
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for lang in tested_languages() {
        if !lang.program("memory_near_limit").exists() {
            continue;
        }
        checked.push(lang.id.clone());
        if let Err(e) = accepted_on_test_base_in(&lang.id, "memory_near_limit") {
            failures.push(format!("{}: {e}", lang.id));
        }
    }
    assert!(
        failures.is_empty(),
        "near the limit, not accepted:\n{}",
        failures.join("\n\n")
    );
    eprintln!("near the limit, accepted: {}", checked.join(" "));
}

/// 300,000 nested calls on the main thread: accepted.
#[test]
fn java_deep_recursion_fits_the_thread_stack() {
    pass(accepted_on_test_base("deep_recursion"));
}

/// The class run is the public one as javac reads the file: not a commented-out one, not
/// another class with a main method, in its package.
#[test]
fn java_runs_the_public_class_javac_sees() {
    pass(accepted_on_test_base("commented_public_class"));
}

/// Drops `files` of `image` from the host's page cache (the clean, unmapped pages of a file, as
/// after a reboot or under memory pressure).
fn evict(image: &str, files: &[&str]) {
    for file in files {
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none", image, "dd"])
            .arg(format!("if={file}"))
            .args(["iflag=nocache", "count=0"])
            .output()
            .expect("docker run");
        assert!(
            out.status.success(),
            "evicting {file} in {image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A page a run reads first is charged to the run's memory cgroup. A runtime read from disk by
/// the first test (PyPy's library alone is 56 MB) would count against that test's 64 MB limit:
/// it reported the whole limit as its memory and thrashed inside it, a wall-time TLE on a
/// loaded machine. The registry's `warm` files are read by the agent before the first test, so
/// the first test's memory is the program's own, as on the tests after it.
#[test]
fn a_runtime_read_from_disk_is_not_charged_to_the_first_test() {
    let problem = Problem::load("edge-empty-output");
    let cases: [(&str, &[&str]); 2] = [
        ("pypy-3.9", &["/usr/lib/x86_64-linux-gnu/libpypy3.9-c.so"]),
        (
            "node-18",
            &[
                "/usr/lib/x86_64-linux-gnu/libnode.so.108",
                "/usr/lib/x86_64-linux-gnu/libicudata.so.72",
            ],
        ),
    ];
    for (id, files) in cases {
        let lang = language(id);
        evict(&lang.image, files);
        let run = judge(
            &problem.id,
            &lang.id,
            &lang.submission(Kind::Accepted),
            problem.judge_deadline(),
        )
        .unwrap_or_else(|e| panic!("{id}: {e}"));
        pass(run.check(|sid| expected_for_kind(sid, &problem, &lang, Kind::Accepted)));
        let memory: Vec<u64> = run
            .messages
            .iter()
            .filter(|m| m["state"] == "tested")
            .map(|m| m["memory"].as_u64().expect("memory"))
            .collect();
        let later = memory[1..].iter().copied().max().expect("several tests");
        assert!(
            memory[0] <= later + 8 * 1024,
            "{id}: the first test was charged {} KB, later tests at most {later} KB: {memory:?}",
            memory[0]
        );
    }
}

/// Every file the registry has read ahead exists in its language's image (a missing one is
/// only a warning when judging, and its pages would be charged to the first test again).
#[test]
fn every_runtime_file_to_read_ahead_is_in_its_image() {
    for lang in tested_languages()
        .into_iter()
        .filter(|l| !l.warm.is_empty())
    {
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none"])
            .arg(&lang.image)
            .args([
                "sh",
                "-c",
                "for p in \"$@\"; do test -e \"$p\" || echo \"$p\"; done",
                "sh",
            ])
            .args(&lang.warm)
            .output()
            .expect("docker run");
        assert!(out.status.success(), "{}: {:?}", lang.id, out);
        let missing = String::from_utf8_lossy(&out.stdout);
        assert!(
            missing.is_empty(),
            "{}: not in the image:\n{missing}",
            lang.id
        );
    }
}
