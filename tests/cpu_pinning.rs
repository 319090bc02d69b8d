//! Runs pinned to a CPU of their own (issue #19, "times that repeat"), end to end through the
//! judge and real Docker containers: the program sees one CPU while the slots fit the CPUs,
//! cannot widen it, and sees every CPU when pinning is off or the slots outnumber the CPUs.

mod boxes;

use std::sync::Arc;

use boxes::demoter;
use executioner::judge::{Judge, JudgeConfig};
use executioner::language::Registry;
use executioner::problem::ProblemStore;
use executioner::protocol::{Body, Submission};
use executioner::sandbox::{Sandbox, SandboxConfig};
use tokio_util::sync::CancellationToken;

/// Prints how many CPUs it may run on, then `moved` or `stayed` after trying to run on all.
const CPUS_C: &str = r#"#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
int main(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 3;
    printf("%d\n", CPU_COUNT(&set));
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int i = 0; i < CPU_SETSIZE; i++) CPU_SET(i, &all);
    printf("%s\n", sched_setaffinity(0, sizeof all, &all) == 0 ? "moved" : "stayed");
    return 0;
}
"#;

/// The CPUs this test may use.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The outputs of one judging of [`CPUS_C`] against a package whose one test expects `answer`:
/// the test's verdict.
async fn verdict(pin_cpus: bool, cpu_slots: usize, answer: &str) -> String {
    let problems = tempfile::tempdir().unwrap();
    let dir = problems.path().join("cpus");
    std::fs::create_dir_all(dir.join("data/secret")).unwrap();
    std::fs::write(
        dir.join("problem.yaml"),
        "problem_format_version: 2025-09\nname: cpus\nuuid: 0\nlimits:\n  time_limit: 2\n",
    )
    .unwrap();
    std::fs::write(dir.join("data/secret/1.in"), "").unwrap();
    std::fs::write(dir.join("data/secret/1.ans"), answer).unwrap();

    // CPUs locked in a directory of this test's own, so other tests' runs do not take them.
    let locks = tempfile::tempdir().unwrap();
    let mut sandbox = SandboxConfig::new(demoter());
    sandbox.cpu_dir = locks.path().to_owned();
    let sandbox = Sandbox::connect(sandbox).await.expect("Docker engine");
    let checkers = tempfile::tempdir().unwrap();
    let mut config = JudgeConfig {
        pin_cpus,
        cpu_slots,
        ..JudgeConfig::default()
    };
    config.checker.cache_dir = checkers.path().to_owned();
    let judge = Judge::new(
        Arc::new(ProblemStore::new(problems.path())),
        Arc::new(Registry::builtin().unwrap()),
        sandbox,
        config,
    );
    let submission = Submission {
        id: "pinning".into(),
        problem: "cpus".into(),
        language: "gcc-12".into(),
        source_code: CPUS_C.into(),
        files: Vec::new(),
        run: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let cancel = CancellationToken::new();
    let (end, bodies) = tokio::join!(judge.judge(&submission, tx, &cancel), async {
        let mut bodies = Vec::new();
        while let Some(message) = rx.recv().await {
            bodies.push(message.body);
        }
        bodies
    });
    assert!(
        matches!(end, Ok(Body::Done { .. })),
        "{end:?} after {bodies:?}"
    );
    let verdicts: Vec<String> = bodies
        .iter()
        .filter_map(|b| match b {
            Body::Tested { result, .. } => Some(result.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "{bodies:?}");
    verdicts.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_test_runs_on_one_cpu_it_cannot_leave_while_the_slots_fit() {
    assert_eq!(verdict(true, 1, "1\nstayed\n").await, "accepted");
}

#[tokio::test]
async fn without_pinning_or_with_more_slots_than_cpus_a_test_sees_every_cpu() {
    let all = format!("{}\nmoved\n", cpus());
    assert_eq!(verdict(false, 1, &all).await, "accepted");
    assert_eq!(verdict(true, cpus() + 1, &all).await, "accepted");
}
