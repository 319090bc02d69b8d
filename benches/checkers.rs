//! What a custom checker costs per test: one C submission judged end to end through the
//! library's judge on three ICPC packages of the same 100 tests, one checked by the default
//! output validator (in the worker), one by a compiled C++ output validator (a process in the
//! checker's own container per test), one interactive (the C++ interactor, in its own
//! container, hands the program its input through the FIFOs and checks the answer it writes
//! back); beside them, the bare fork+exec floor of the program on the host, measured in the
//! same run.
//!
//! Run: `cargo bench --bench checkers` with EXECUTIONER_DEMOTER set and the gcc-12 / g++-12
//! images built. Prints the per-test time (first `testing` to last `tested`, over the tests),
//! median of 3 submissions each; nothing is asserted.

mod floor;

use floor::{median, ms};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use executioner::interface::{Interface, InterfaceError, Sent};
use executioner::judge::JudgeConfig;
use executioner::protocol::{Body, Message, Submission};
use executioner::setup::{build_judge, Setup};
use executioner::worker::judge_for;
use tokio_util::sync::CancellationToken;

const TESTS: usize = 100;
const ROUNDS: usize = 3;
const PROGRAM: &str = "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a+b);return 0;}\n";
const VALIDATOR: &str = r#"#include <fstream>
#include <iostream>
// Accepts when the team's one number equals the answer's.
int main(int argc, char** argv) {
    if (argc < 4) return 1;
    std::ifstream ans(argv[2]);
    long long want, got;
    if (!(ans >> want)) return 1;
    if (!(std::cin >> got) || got != want) return 43;
    std::string extra;
    return (std::cin >> extra) ? 43 : 42;
}
"#;

const INTERACTOR: &str = r#"#include <cstdio>
#include <fstream>
#include <iostream>
// Hands the program the input's two numbers, accepts when it answers their sum.
int main(int argc, char** argv) {
    if (argc < 4) return 1;
    std::ifstream in(argv[1]);
    long long a, b, got;
    if (!(in >> a >> b)) return 1;
    std::cout << a << ' ' << b << std::endl;
    if (!(std::cin >> got) || got != a + b) return 43;
    std::string extra;
    return (std::cin >> extra) ? 43 : 42;
}
"#;

/// How a package judges.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Default,
    Validator,
    Interactive,
}

/// Records when each message arrived.
#[derive(Default)]
struct Clock {
    seen: Mutex<Vec<(Instant, Body)>>,
}

#[async_trait]
impl Interface for Clock {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        Ok(None)
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push((Instant::now(), message.body.clone()));
        Ok(Sent::Recorded)
    }
}

fn package(root: &Path, id: &str, kind: Kind) -> anyhow::Result<()> {
    let dir = root.join(id);
    std::fs::create_dir_all(dir.join("data/secret"))?;
    let interactive = if kind == Kind::Interactive {
        "type: interactive\n"
    } else {
        ""
    };
    std::fs::write(
        dir.join("problem.yaml"),
        format!(
            "problem_format_version: 2025-09\nname: {id}\nuuid: 0\n{interactive}limits:\n  time_limit: 1\n  memory: 64\n"
        ),
    )?;
    for i in 0..TESTS {
        let stem = dir.join(format!("data/secret/{i:03}"));
        std::fs::write(stem.with_extension("in"), format!("{i} {}\n", i * 7))?;
        std::fs::write(stem.with_extension("ans"), format!("{}\n", i * 8))?;
    }
    let source = match kind {
        Kind::Default => return Ok(()),
        Kind::Validator => VALIDATOR,
        Kind::Interactive => INTERACTOR,
    };
    std::fs::create_dir_all(dir.join("output_validator"))?;
    std::fs::write(dir.join("output_validator/validator.cpp"), source)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let cache = tempfile::tempdir()?;
    package(root.path(), "sum-default", Kind::Default)?;
    package(root.path(), "sum-validator", Kind::Validator)?;
    package(root.path(), "sum-interactive", Kind::Interactive)?;
    let mut config = JudgeConfig::default();
    config.checker.cache_dir = cache.path().to_owned();
    let setup = Setup {
        problems: root.path().to_owned(),
        languages: None,
        demoter: std::env::var_os("EXECUTIONER_DEMOTER").map(Into::into),
        cgroup_parent: "executioner".into(),
        judge: config,
        pool: Default::default(),
    };
    let judge = build_judge(&setup).await?;
    let cancel = CancellationToken::new();
    let mut report = Vec::new();
    for problem in ["sum-default", "sum-validator", "sum-interactive"] {
        let mut per_test = Vec::new();
        let mut whole = Vec::new();
        // One more submission than measured: the first compiles the checker into the cache.
        for round in 0..=ROUNDS {
            let clock = Clock::default();
            let submission = Submission {
                id: format!("{problem}-{round}"),
                problem: problem.into(),
                language: "gcc-12".into(),
                source_code: PROGRAM.into(),
                files: Vec::new(),
                run: None,
            };
            let started = Instant::now();
            judge_for(&judge, &submission, &clock, &cancel).await?;
            let took = started.elapsed();
            let seen = clock.seen.into_inner().unwrap_or_else(|e| e.into_inner());
            let accepted = seen.iter().filter(
                |(_, b)| matches!(b, Body::Tested { result, .. } if result.as_str() == "accepted"),
            );
            anyhow::ensure!(
                accepted.count() == TESTS,
                "{problem}: not all accepted: {seen:?}"
            );
            if round == 0 {
                continue;
            }
            whole.push(took);
            // From the first `testing` to the last `tested`, over the tests: the cost of a test
            // in a submission (a checker overlaps the next test's run, so the time between one
            // test's two messages would not show it).
            let first = seen.iter().find(|(_, b)| matches!(b, Body::Testing { .. }));
            let last = seen
                .iter()
                .rev()
                .find(|(_, b)| matches!(b, Body::Tested { .. }));
            if let (Some((first, _)), Some((last, _))) = (first, last) {
                per_test.push((*last - *first) / TESTS as u32);
            }
        }
        report.push((problem, median(per_test), median(whole)));
    }

    // The floor: the same program compiled and run directly on the host.
    let bare = floor::bare_fork_exec(PROGRAM, TESTS)?;
    for (problem, test, submission) in &report {
        println!(
            "{problem:15} median per test {:.2} ms ({:.2} ms over the bare fork+exec), whole submission {:.0} ms",
            ms(*test),
            ms(test.saturating_sub(bare)),
            ms(*submission)
        );
    }
    println!("bare fork+exec on the host: {:.2} ms", ms(bare));
    let (default, custom, interactive) = (report[0].1, report[1].1, report[2].1);
    println!(
        "the compiled C++ validator adds {:.2} ms per test over the default comparison",
        ms(custom.saturating_sub(default))
    );
    println!(
        "an interactive test costs {:.2} ms more than a batch test with the default comparison, {:+.2} ms against one with the compiled validator",
        ms(interactive.saturating_sub(default)),
        ms(interactive) - ms(custom)
    );
    Ok(())
}
