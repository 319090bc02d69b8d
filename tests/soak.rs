//! The soak (issue #15, item 11): many submissions of mixed verdicts, hostile ones among them
//! (fork bombs, memory bombs, output floods, deep directory trees, stderr floods), through two
//! `executioner worker --interface postgres` processes judging two at a time. Every submission
//! is judged exactly once with its verdict, the workers' memory stays flat, and nothing is left
//! behind. It takes long, so it is ignored by default:
//!
//! ```text
//! EXECUTIONER_SOAK_SUBMISSIONS=1000 cargo test --test soak -- --ignored --nocapture
//! ```
//!
//! (default 1000; it needs what `scripts/test` sets up: Docker, the images, PostgreSQL,
//! `EXECUTIONER_DEMOTER`).

mod pg;
mod worker_process;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use executioner::protocol::{Body, Submission};
use executioner::store::postgres::queue::{StoredSubmission, SubmissionState};
use executioner::verdict::Verdict;
use pg::{count_final, wait_for, TestDatabase};
use worker_process::WorkerProcess;

/// How a kind of submission ends on `test-base` (3 tests).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Judged, every test with this verdict.
    All(Verdict),
    /// The compiler refused it.
    CompileError,
}

/// The kinds of the mix: (name, language, source, expected end).
fn kinds() -> Vec<(&'static str, &'static str, String, Expect)> {
    let fixture = |language: &str, file: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/submissions")
            .join(language)
            .join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    use Verdict::*;
    vec![
        ("c-accepted", "gcc-12", fixture("gcc-12", "test_accepted.c"), Expect::All(Accepted)),
        ("c-wrong", "gcc-12", fixture("gcc-12", "test_wrong.c"), Expect::All(Wrong)),
        ("c-tle", "gcc-12", fixture("gcc-12", "test_tle.c"), Expect::All(TimeLimitExceeded)),
        ("c-mle", "gcc-12", fixture("gcc-12", "test_mle.c"), Expect::All(MemoryLimitExceeded)),
        ("c-exit1", "gcc-12", fixture("gcc-12", "test_error.c"), Expect::All(Error)),
        ("c-compile-error", "gcc-12", fixture("gcc-12", "compile_error.c"), Expect::CompileError),
        ("py-accepted", "python-3.11", fixture("python-3.11", "test_accepted.py"), Expect::All(Accepted)),
        ("py-wrong", "python-3.11", fixture("python-3.11", "test_wrong.py"), Expect::All(Wrong)),
        (
            "c-fork-bomb",
            "gcc-12",
            "#include <unistd.h>\nint main(void){for(;;)fork();}\n".into(),
            Expect::All(TimeLimitExceeded),
        ),
        (
            "c-deep-tree",
            "gcc-12",
            "#include <stdio.h>\n#include <sys/stat.h>\n#include <unistd.h>\n\
             int main(void){for(int i=0;i<20000;i++){if(mkdir(\"d\",0700)||chdir(\"d\"))break;}\
             long long a,b;while(scanf(\"%lld %lld\",&a,&b)==2)printf(\"%lld\\n\",a+b);return 0;}\n"
                .into(),
            Expect::All(Accepted),
        ),
        (
            "c-stderr-flood",
            "gcc-12",
            "#include <stdio.h>\n#include <string.h>\n\
             int main(void){static char k[65536];memset(k,'x',sizeof k);\
             for(int i=0;i<400;i++)fwrite(k,1,sizeof k,stderr);\
             long long a,b;while(scanf(\"%lld %lld\",&a,&b)==2)printf(\"%lld\\n\",a+b);return 0;}\n"
                .into(),
            Expect::All(Accepted),
        ),
        (
            "c-output-flood-wrong",
            "gcc-12",
            "#include <stdio.h>\nint main(void){for(long i=0;i<3000000;i++)puts(\"0123456789\");return 0;}\n"
                .into(),
            Expect::All(Wrong),
        ),
    ]
}

/// Resident memory of a process, KB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn check(id: &str, stored: &StoredSubmission, expect: Expect) {
    assert_eq!(
        stored.attempts, 1,
        "{id}: claimed more than once: {stored:?}"
    );
    match expect {
        Expect::CompileError => {
            assert_eq!(
                stored.state,
                SubmissionState::CompileError,
                "{id}: {stored:?}"
            )
        }
        Expect::All(verdict) => {
            assert_eq!(stored.state, SubmissionState::Judged, "{id}: {stored:?}");
            let tested: Vec<(u32, Verdict)> = stored
                .results
                .iter()
                .filter_map(|m| match &m.body {
                    Body::Tested {
                        test_case, result, ..
                    } => Some((*test_case, *result)),
                    _ => None,
                })
                .collect();
            assert_eq!(
                tested,
                vec![(1, verdict), (2, verdict), (3, verdict)],
                "{id}: {stored:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --ignored (EXECUTIONER_SOAK_SUBMISSIONS, default 1000)"]
async fn a_thousand_mixed_submissions_through_two_workers() {
    let total: usize = std::env::var("EXECUTIONER_SOAK_SUBMISSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let kinds = kinds();
    let db = TestDatabase::create().await;
    let front = db.interface().await;
    let all: Vec<(Submission, Expect)> = (0..total)
        .map(|i| {
            let (name, language, source, expect) = &kinds[i % kinds.len()];
            let submission = Submission {
                id: format!("soak-{i:05}-{name}"),
                problem: "test-base".into(),
                language: (*language).into(),
                source_code: source.clone(),
                files: Vec::new(),
                run: None,
            };
            (submission, *expect)
        })
        .collect();
    let submissions: Vec<Submission> = all.iter().map(|(s, _)| s.clone()).collect();
    front.enqueue(&submissions).await.unwrap();
    let started = Instant::now();
    let workers: Vec<WorkerProcess> = (0..2)
        .map(|_| {
            WorkerProcess::start(
                &["--interface", "postgres"],
                &[("DATABASE_URL", &db.url)],
                30,
                2,
            )
        })
        .collect();
    // Memory once warm (the first submissions judged), then at the end.
    let warm = (total / 20).max(1) as i64;
    wait_for(
        &db,
        "the first submissions",
        Duration::from_secs(600),
        Duration::from_secs(1),
        || async { (count_final(&db, "%").await >= warm).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}:\n{}",
            worker_process::logs(&workers.iter().collect::<Vec<_>>())
        )
    });
    let rss_warm: Vec<u64> = workers.iter().map(|w| rss_kb(w.pid())).collect();
    let mut last_report = Instant::now();
    loop {
        let done = count_final(&db, "%").await;
        if done >= total as i64 {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("soak: {done}/{total} after {:?}", started.elapsed());
            last_report = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(7200),
            "soak did not finish in 2 h: {done}/{total}:\n{}",
            worker_process::logs(&workers.iter().collect::<Vec<_>>())
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let took = started.elapsed();
    let rss_end: Vec<u64> = workers.iter().map(|w| rss_kb(w.pid())).collect();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (submission, expect) in &all {
        let stored = front
            .status(&submission.id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not stored", submission.id));
        check(&submission.id, &stored, *expect);
        let kind = submission.id.splitn(3, '-').nth(2).unwrap_or_default();
        *by_kind.entry(kind.to_owned()).or_default() += 1;
    }
    let pids: Vec<u32> = workers.iter().map(|w| w.pid()).collect();
    for worker in workers {
        let status = worker.stop(Duration::from_secs(120));
        assert!(status.success(), "worker exit: {status}");
    }
    eprintln!(
        "soak: {total} submissions ({} kinds: {by_kind:?}) by 2 workers × 2 in {took:?} \
         ({:.2} s each); worker RSS warm {rss_warm:?} KB, end {rss_end:?} KB",
        kinds.len(),
        took.as_secs_f64() / total as f64
    );
    for (warm, end) in rss_warm.iter().zip(&rss_end) {
        assert!(
            *end <= warm + 32 * 1024,
            "a worker grew from {warm} KB to {end} KB"
        );
    }
    // Nothing of theirs is left: no container labelled with either worker's pid.
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let left = docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    let theirs = left
        .iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("executioner.owner"))
                .is_some_and(|o| pids.iter().any(|p| o.ends_with(&format!(":{p}"))))
        })
        .count();
    assert_eq!(theirs, 0, "containers of the soak's workers are left");
}
