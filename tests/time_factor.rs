//! A language's `time_factor` (languages.toml) multiplies the problem's time limit for its runs,
//! end to end through `executioner judge` and real Docker: the same C program, which burns about
//! 0.9 s of CPU before answering, is `TLE` on a 0.5 s problem in a language without a factor and
//! `accepted` in one with factor 3, and the `time` reported is the CPU it used, not scaled.

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use common::{executioner, run_judge};

/// Two copies of GCC's C: `c-plain` (factor 1, the default) and `c-slow` (factor 3).
const REGISTRY: &str = r#"
[[language]]
id = "c-plain"
name = "C"
image = "executioner/gcc-12"
source = "main.c"
extensions = ["c"]
compile = ["gcc", "-std=gnu17", "-O2", "-pipe", "-o", "main", "{sources}", "-lm"]
run = ["{build}/main"]
env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]

[[language]]
id = "c-slow"
name = "C, given three times the time"
image = "executioner/gcc-12"
source = "main.c"
compile = ["gcc", "-std=gnu17", "-O2", "-pipe", "-o", "main", "{sources}", "-lm"]
run = ["{build}/main"]
env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
time_factor = 3.0
"#;

/// Burns 900 ms of its own CPU time, then prints the sum of the two numbers it reads.
const PROGRAM: &str = r#"
#include <stdio.h>
#include <time.h>
int main(void) {
    volatile unsigned long spin = 0;
    while (clock() < 9 * CLOCKS_PER_SEC / 10) spin++;
    long long a, b;
    if (scanf("%lld %lld", &a, &b) != 2) return 1;
    printf("%lld\n", a + b);
    return 0;
}
"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Judges PROGRAM in `language` on a one-test problem with a 500 ms limit; the `tested` message.
fn judge_in(dir: &Path, language: &str) -> Value {
    let mut command = executioner();
    command
        .arg("judge")
        .arg("--languages")
        .arg(dir.join("languages.toml"))
        .arg("--problems")
        .arg(dir.join("problems"))
        .args(["--problem", "half-second", "--language", language])
        .arg(dir.join("main.c"));
    let run = run_judge(command, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    let tested: Vec<&Value> = run
        .messages
        .iter()
        .filter(|m| m["state"] == "tested")
        .collect();
    assert_eq!(
        tested.len(),
        1,
        "{language}: one tested message expected, got {:?}\nstderr: {}",
        run.messages,
        run.stderr_tail
    );
    tested[0].clone()
}

#[test]
fn a_time_factor_multiplies_the_limit_and_the_time_reported_is_unscaled() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("languages.toml"), REGISTRY);
    write(&dir.path().join("main.c"), PROGRAM);
    let problem = dir.path().join("problems/half-second");
    write(
        &problem.join("statement.json"),
        r#"{"name": "A plus B, slowly", "time": 500, "memory": 65536, "subtasks": []}"#,
    );
    write(
        &problem.join("test-cases.json"),
        r#"[{"input": "2 3\n", "output": "5\n"}]"#,
    );

    let plain = judge_in(dir.path(), "c-plain");
    assert_eq!(plain["result"], "TLE", "factor 1: {plain}");

    let slow = judge_in(dir.path(), "c-slow");
    assert_eq!(slow["result"], "accepted", "factor 3: {slow}");
    let time = slow["time"].as_u64().expect("a time");
    assert!(
        (850..1500).contains(&time),
        "factor 3: the reported time is the CPU used (~900 ms), not scaled: {slow}"
    );
}
