//! Memory limits mean the same for a managed runtime as for C: a program that stays within the
//! problem's limit is not killed for the runtime's own overhead (here the JVM: its heap is capped
//! at the limit, its own memory comes on top, `memory_extra_kb`), and deep recursion fits the
//! thread stack the run command gives. Going over the limit is `test_mle` in the conformance
//! tests. Also: the Java class run is the public one as javac reads the file. Programs:
//! `fixtures/submissions/java-17/{memory_near_limit,deep_recursion,commented_public_class}.java`.

mod common;

use common::{expected_messages, judge, language, pass, Problem, Verdict};

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
