//! Memory limits mean the same for a managed runtime as for C: a program that stays within the
//! problem's limit is not killed for the runtime's own overhead (here the JVM: its heap is capped
//! at the limit, its own memory comes on top, `memory_extra_kb`), and deep recursion fits the
//! thread stack the run command gives. Going over the limit is `test_mle` in the conformance
//! tests. Also: the Java class run is the public one as javac reads the file. Programs:
//! `fixtures/submissions/java-17/{memory_near_limit,deep_recursion,commented_public_class}.java`.

mod common;

use std::process::Command;

use common::{
    expected_for_kind, expected_messages, judge, language, languages, pass, Kind, Problem, Verdict,
};

/// Judges Java program `name` on test-base (128000 KB, 3000 ms), where every test must be
/// accepted.
fn accepted_on_test_base(name: &str) -> Result<(), String> {
    let problem = Problem::load("test-base");
    let java = language("java-17");
    let verdicts = vec![Verdict::Accepted; problem.tests.len()];
    judge(
        &problem.id,
        &java.id,
        &java.program(name),
        problem.judge_deadline(),
    )?
    .check(|id| expected_messages(id, &problem, java.compiled, Some(&verdicts)))
}

/// 100 MiB live of a 125 MiB heap, with garbage and JIT compiling going on: accepted.
#[test]
fn a_java_program_near_its_memory_limit_is_accepted() {
    pass(accepted_on_test_base("memory_near_limit"));
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
    for lang in languages().into_iter().filter(|l| !l.warm.is_empty()) {
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
