//! The whole path, not only the demoter: submissions judged end to end by the worker through the
//! memory interface (take, claim, container start, compile, tests, messages), beside the bare
//! fork+exec floor of the same program on the host, measured in the same run.
//!
//! Three parts, chosen with `BENCH_E2E` (comma-separated; all by default):
//! - `latency`: one C submission at a time on ICPC packages of 1, 100 and 1,000 tests. Reports,
//!   median over the rounds, the time from the claim (`executing`) to `compiling`, to
//!   `compiled`, to the last `tested`, and the per-test cost (first `testing` to last `tested`,
//!   over the tests) against the floor.
//! - `throughput`: a mix of C, C++, Python and Java submissions (accepted, wrong answer, TLE) on
//!   a 10-test problem, judged by one worker at concurrency 1, 2 and 4: submissions per second.
//! - `postgres`: through `executioner worker --interface postgres` processes on a fresh
//!   database (`EXECUTIONER_TEST_DATABASE_URL`, as the tests use): the per-test cost of the
//!   1,000-test package through one worker (every message a row), then the mix through two
//!   workers of 1 and of 2 slots each, in submissions per second.
//! - `spread`: one CPU-bound C program (about 500 ms of CPU) judged 20 times at concurrency 1,
//!   and 20 times at concurrency 2 beside another copy (the other slot busy): median, min and
//!   max of the CPU time the judge reports; with runs not pinned, then pinned, to a CPU of
//!   their own (`JudgeConfig::pin_cpus`).
//!
//! - `profile`: where a test's time goes. One C submission on the 1,000-test package judged 3
//!   times while `perf record -a` samples every CPU (about 2,000 times a second each); reports
//!   each command's share of the samples as CPU milliseconds per test (the program, the
//!   demoter, the worker's threads, dockerd, kernel threads, idle), then what the demoter, the
//!   program and the worker were doing (system calls, page faults, their own code). Needs `perf` and `kernel.perf_event_paranoid` ≤ 0 or root.
//!
//! Latency, throughput and profile run twice: with none of the features of issue #19 (no warm pool, no
//! compile cache, runs not pinned), then with all of them (a warm pool of 2 containers per
//! image, a compile cache, pinned runs; every round after the first resubmits the same code, so
//! its compile is a cache hit). The agent's Unix socket is always on (it replaced the attach
//! stream); the figures before it come from the bench built at an earlier commit.
//!
//! Run: `cargo bench --bench end_to_end` with EXECUTIONER_DEMOTER set and the gcc-12, g++-12,
//! python-3.11 and java-17 images built. Prints figures; nothing is asserted.

mod floor;
#[path = "../tests/pg/mod.rs"]
mod pg;
#[path = "../tests/worker_process/mod.rs"]
mod worker_process;

use floor::{median, ms};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use executioner::compile_cache::CompileCacheConfig;
use executioner::interface::{Interface, InterfaceError, Sent};
use executioner::judge::{Judge, JudgeConfig};
use executioner::protocol::{Body, Message, Submission};
use executioner::setup::{build_judge, Setup, WarmPool};
use executioner::store::memory::MemoryInterface;
use executioner::worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;
use worker_process::WorkerProcess;

const SUM_C: &str = "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a+b);return 0;}\n";

/// The memory interface, with the time each message was recorded.
struct Timed {
    inner: MemoryInterface,
    seen: Mutex<Vec<(Instant, Message)>>,
}

impl Timed {
    fn new(submissions: Vec<Submission>) -> Arc<Self> {
        let inner = MemoryInterface::new();
        for s in submissions {
            inner.push(s);
        }
        inner.close();
        Arc::new(Timed {
            inner,
            seen: Mutex::default(),
        })
    }

    /// The messages of `id` with the time each was recorded.
    fn of(&self, id: &str) -> Vec<(Instant, Body)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|(_, m)| m.id == id)
            .map(|(t, m)| (*t, m.body.clone()))
            .collect()
    }
}

#[async_trait]
impl Interface for Timed {
    async fn next(&self) -> Result<Option<Submission>, InterfaceError> {
        self.inner.next().await
    }

    async fn send(&self, message: &Message) -> Result<Sent, InterfaceError> {
        let sent = self.inner.send(message).await?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.push((Instant::now(), message.clone()));
        Ok(sent)
    }
}

/// Judges `submissions` with one worker of `concurrency` slots until the queue is empty;
/// returns the interface (with the times) and the wall time it took.
async fn judge_all(
    judge: &Arc<Judge>,
    submissions: Vec<Submission>,
    concurrency: usize,
) -> (Arc<Timed>, Duration) {
    let timed = Timed::new(submissions);
    let worker = Worker::new(
        timed.clone(),
        judge.clone(),
        WorkerConfig {
            concurrency,
            ..WorkerConfig::default()
        },
    );
    let started = Instant::now();
    worker.run(CancellationToken::new()).await;
    (timed, started.elapsed())
}

fn submission(id: String, problem: &str, language: &str, source: &str) -> Submission {
    Submission {
        id,
        problem: problem.into(),
        language: language.into(),
        source_code: source.into(),
        files: Vec::new(),
        run: None,
    }
}

/// An ICPC package `id` of `tests` tests: `a b` in, `a+b` out, where test `i` is `i 7i` (or
/// `inputs` when given).
fn package(root: &Path, id: &str, time_limit: &str, inputs: &[String]) -> anyhow::Result<()> {
    let dir = root.join(id);
    std::fs::create_dir_all(dir.join("data/secret"))?;
    std::fs::write(
        dir.join("problem.yaml"),
        format!(
            "problem_format_version: 2025-09\nname: {id}\nuuid: 0\nlimits:\n  time_limit: {time_limit}\n  memory: 256\n"
        ),
    )?;
    for (i, input) in inputs.iter().enumerate() {
        let stem = dir.join(format!("data/secret/{i:04}"));
        let sum: i64 = input
            .split_whitespace()
            .map(|n| n.parse::<i64>().unwrap_or(0))
            .sum();
        std::fs::write(stem.with_extension("in"), format!("{input}\n"))?;
        std::fs::write(stem.with_extension("ans"), format!("{sum}\n"))?;
    }
    Ok(())
}

fn sums(tests: usize) -> Vec<String> {
    (0..tests).map(|i| format!("{i} {}", i * 7)).collect()
}

/// When the first message matching `is` arrived.
fn at(seen: &[(Instant, Body)], is: impl Fn(&Body) -> bool) -> Option<Instant> {
    seen.iter().find(|(_, b)| is(b)).map(|(t, _)| *t)
}

async fn latency(judge: &Arc<Judge>, root: &Path) -> anyhow::Result<()> {
    println!("## latency: one C submission at a time, concurrency 1");
    let bare = floor::bare_fork_exec(SUM_C, 200)?;
    println!(
        "bare fork+exec on the host: {:.2} ms (median of 200)",
        ms(bare)
    );
    println!(
        "{:>6} | {:>8} | {:>9} | {:>8} | {:>11} | {:>9} | {:>10} | {:>8}",
        "tests",
        "rounds",
        "compiling",
        "compiled",
        "last tested",
        "per test",
        "over floor",
        "× floor"
    );
    for (tests, rounds) in [(1usize, 7usize), (100, 5), (1000, 3)] {
        let problem = format!("sum-{tests}");
        package(root, &problem, "1", &sums(tests))?;
        // One round more than measured: the first warms the page cache and the problem cache.
        let ids: Vec<String> = (0..=rounds).map(|r| format!("{problem}-{r}")).collect();
        let submissions = ids
            .iter()
            .map(|id| submission(id.clone(), &problem, "gcc-12", SUM_C))
            .collect();
        let (timed, _) = judge_all(judge, submissions, 1).await;
        let (mut compiling, mut compiled, mut last, mut per_test) =
            (vec![], vec![], vec![], vec![]);
        for id in &ids[1..] {
            let seen = timed.of(id);
            let accepted = seen
                .iter()
                .filter(|(_, b)| {
                    matches!(b, Body::Tested { result, .. } if result.as_str() == "accepted")
                })
                .count();
            anyhow::ensure!(accepted == tests, "{id}: not all accepted: {seen:?}");
            let claim = at(&seen, |b| matches!(b, Body::Executing)).expect("executing");
            let first = at(&seen, |b| matches!(b, Body::Testing { .. })).expect("testing");
            let end = seen
                .iter()
                .rev()
                .find(|(_, b)| matches!(b, Body::Tested { .. }))
                .map(|(t, _)| *t)
                .expect("tested");
            compiling.push(at(&seen, |b| matches!(b, Body::Compiling)).expect("compiling") - claim);
            compiled
                .push(at(&seen, |b| matches!(b, Body::Compiled { .. })).expect("compiled") - claim);
            last.push(end - claim);
            per_test.push((end - first) / tests as u32);
        }
        let per_test = median(per_test);
        println!(
            "{tests:>6} | {rounds:>8} | {:>6.1} ms | {:>5.0} ms | {:>8.0} ms | {:>6.2} ms | {:>7.2} ms | {:>8.2}",
            ms(median(compiling)),
            ms(median(compiled)),
            ms(median(last)),
            ms(per_test),
            ms(per_test.saturating_sub(bare)),
            ms(per_test) / ms(bare)
        );
    }
    Ok(())
}

const WRONG_C: &str = "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;printf(\"%lld\\n\",a-b);return 0;}\n";
const TLE_C: &str = "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 1;volatile long long s=0;if(a==3)for(;;)s++;printf(\"%lld\\n\",a+b);return 0;}\n";
const SUM_CPP: &str =
    "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a+b<<'\\n';}\n";
const WRONG_CPP: &str =
    "#include <iostream>\nint main(){long long a,b;std::cin>>a>>b;std::cout<<a*b<<'\\n';}\n";
const SUM_PY: &str = "a, b = map(int, input().split())\nprint(a + b)\n";
const WRONG_PY: &str = "a, b = map(int, input().split())\nprint(a + b + 1)\n";
const TLE_PY: &str = "a, b = map(int, input().split())\nwhile a == 3:\n    pass\nprint(a + b)\n";
const SUM_JAVA: &str = "import java.util.*;\npublic class Main{public static void main(String[] x){Scanner s=new Scanner(System.in);long a=s.nextLong(),b=s.nextLong();System.out.println(a+b);}}\n";
const WRONG_JAVA: &str = "import java.util.*;\npublic class Main{public static void main(String[] x){Scanner s=new Scanner(System.in);long a=s.nextLong(),b=s.nextLong();System.out.println(a);}}\n";

/// The throughput mix: (language, source, what it should get).
const MIX: [(&str, &str, &str); 10] = [
    ("gcc-12", SUM_C, "accepted"),
    ("gcc-12", WRONG_C, "wrong"),
    ("gcc-12", TLE_C, "TLE"),
    ("g++-12", SUM_CPP, "accepted"),
    ("g++-12", WRONG_CPP, "wrong"),
    ("python-3.11", SUM_PY, "accepted"),
    ("python-3.11", WRONG_PY, "wrong"),
    ("python-3.11", TLE_PY, "TLE"),
    ("java-17", SUM_JAVA, "accepted"),
    ("java-17", WRONG_JAVA, "wrong"),
];

/// `rounds` copies of the mix on problem `mix`, named `{prefix}-{round}-{k}`, with what each
/// should get.
fn mix(prefix: &str, rounds: usize) -> (Vec<Submission>, Vec<&'static str>) {
    (0..rounds)
        .flat_map(|r| {
            MIX.iter()
                .enumerate()
                .map(move |(k, (language, source, want))| {
                    let id = format!("{prefix}-{r}-{k}");
                    (submission(id, "mix", language, source), *want)
                })
        })
        .unzip()
}

/// Fails unless the messages `seen` of mix submission `id` give it what it should get.
fn check_mix(id: &str, want: &str, seen: &[Body]) -> anyhow::Result<()> {
    let got: Vec<&str> = seen
        .iter()
        .filter_map(|b| match b {
            Body::Tested { result, .. } => Some(result.as_str()),
            _ => None,
        })
        .collect();
    let ok = match want {
        "accepted" => got.len() == 10 && got.iter().all(|r| *r == "accepted"),
        "wrong" => got.contains(&"wrong"),
        _ => got.contains(&"TLE"),
    };
    anyhow::ensure!(ok, "{id}: wanted {want}, got {got:?}");
    Ok(())
}

/// The mix through two `executioner worker --interface postgres` processes of 1 and of 2 slots
/// each, on a fresh database per run: submissions per second, from the enqueue of a round of
/// the mix (the workers started, idle and warm) to its last submission's final state.
async fn postgres_throughput(
    root: &Path,
    scratch: &Path,
    features: Features,
) -> anyhow::Result<()> {
    println!("\n## throughput through PostgreSQL: the mix, two worker processes");
    package(root, "mix", "1", &sums(10))?;
    const ROUNDS: usize = 2;
    for slots in [1usize, 2] {
        let db = pg::TestDatabase::create().await;
        let front = db.interface().await;
        let cache = scratch.join(format!("compile-cache-postgres-{slots}"));
        let workers: Vec<WorkerProcess> = (0..2)
            .map(|_| postgres_worker(root, &cache, &db, slots, features))
            .collect();
        // Unmeasured: a round that warms the images, the problem, the pools and the caches.
        let (warm, _) = mix("warm", 1);
        front.enqueue(&warm).await?;
        wait_final(&db, "warm-%", warm.len()).await?;
        let (submissions, wants) = mix("pg", ROUNDS);
        let started = Instant::now();
        front.enqueue(&submissions).await?;
        wait_final(&db, "pg-%", submissions.len()).await?;
        let took = started.elapsed();
        for (submission, want) in submissions.iter().zip(wants) {
            let stored = front
                .status(&submission.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("{} is not stored", submission.id))?;
            let seen: Vec<Body> = stored.results.into_iter().map(|m| m.body).collect();
            check_mix(&submission.id, want, &seen)?;
        }
        for worker in workers {
            let status = worker.stop(Duration::from_secs(120));
            anyhow::ensure!(status.success(), "a worker exited with {status}");
        }
        println!(
            "2 workers × {slots} slots: {} submissions in {:.1} s, {:.2} submissions/s",
            submissions.len(),
            took.as_secs_f64(),
            submissions.len() as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}

/// One C submission at a time on the 1,000-test package, through one `executioner worker
/// --interface postgres` process: the per-test cost with every message a row written in
/// PostgreSQL (first `testing` to last `tested`, by the time each was recorded), against the
/// floor.
async fn postgres_latency(root: &Path, scratch: &Path, features: Features) -> anyhow::Result<()> {
    const TESTS: usize = 1000;
    const ROUNDS: usize = 3;
    println!("\n## latency through PostgreSQL: one worker process, one slot, {TESTS} tests");
    let bare = floor::bare_fork_exec(SUM_C, 200)?;
    let problem = format!("sum-{TESTS}");
    package(root, &problem, "1", &sums(TESTS))?;
    let db = pg::TestDatabase::create().await;
    let front = db.interface().await;
    let worker = postgres_worker(
        root,
        &scratch.join("compile-cache-latency"),
        &db,
        1,
        features,
    );
    let mut per_test = Vec::new();
    // One round more than measured: the first warms the caches.
    for round in 0..=ROUNDS {
        let id = format!("pg-latency-{round}");
        front
            .enqueue(&[submission(id.clone(), &problem, "gcc-12", SUM_C)])
            .await?;
        wait_final(&db, &id, 1).await?;
        let timed = front.timed_results(&id).await?;
        let accepted = timed
            .iter()
            .filter(|(m, _)| matches!(&m.body, Body::Tested { result, .. } if result.as_str() == "accepted"))
            .count();
        anyhow::ensure!(accepted == TESTS, "{id}: {accepted} of {TESTS} accepted");
        let (first, last) = (timed[0].1, timed[timed.len() - 1].1);
        if round > 0 {
            per_test.push(Duration::from_micros(
                u64::try_from(last - first)? * 1000 / TESTS as u64,
            ));
        }
    }
    let status = worker.stop(Duration::from_secs(120));
    anyhow::ensure!(status.success(), "the worker exited with {status}");
    let per_test = median(per_test);
    println!(
        "per test {:.2} ms, floor {:.2} ms, over the floor {:.2} ms",
        ms(per_test),
        ms(bare),
        ms(per_test.saturating_sub(bare))
    );
    Ok(())
}

/// An `executioner worker --interface postgres` process of `slots` on `db`, with `features`
/// (its compile cache in `cache`), once it has started.
fn postgres_worker(
    root: &Path,
    cache: &Path,
    db: &pg::TestDatabase,
    slots: usize,
    features: Features,
) -> WorkerProcess {
    let slots = slots.to_string();
    let mut args = vec!["worker", "--interface", "postgres", "--concurrency", &slots];
    match features {
        Features::None => args.extend(["--no-pin-cpus", "--compile-cache-mb", "0"]),
        Features::All => args.extend([
            "--warm-pool",
            "2",
            "--warm-languages",
            "gcc-12,g++-12,python-3.11,java-17",
        ]),
    }
    let cache = cache.to_string_lossy();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("EXECUTIONER_COMPILE_CACHE_DIR", cache.as_ref()),
    ];
    let mut worker = WorkerProcess::spawn_on(root, &args, &env);
    worker.wait_for_log("worker started", Duration::from_secs(60));
    worker
}

/// Waits until `count` submissions whose id is `LIKE` `pattern` are final.
async fn wait_final(db: &pg::TestDatabase, pattern: &str, count: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while pg::count_final(db, pattern).await < count as i64 {
        anyhow::ensure!(Instant::now() < deadline, "{pattern}: not judged in 10 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn throughput(judge: &Arc<Judge>, root: &Path) -> anyhow::Result<()> {
    println!("\n## throughput: a mix of C, C++, Python and Java (accepted, wrong, TLE), 10 tests each, time limit 1 s");
    package(root, "mix", "1", &sums(10))?;
    // Warm every image and the problem once, unmeasured.
    let warm = MIX
        .iter()
        .enumerate()
        .map(|(k, (language, source, _))| submission(format!("warm-{k}"), "mix", language, source))
        .collect();
    judge_all(judge, warm, 2).await;
    const ROUNDS: usize = 2;
    for concurrency in [1usize, 2, 4] {
        let (submissions, wants) = mix(&format!("mix-{concurrency}"), ROUNDS);
        let ids: Vec<String> = submissions.iter().map(|s| s.id.clone()).collect();
        let (timed, took) = judge_all(judge, submissions, concurrency).await;
        for (id, want) in ids.iter().zip(wants) {
            let seen: Vec<Body> = timed.of(id).into_iter().map(|(_, b)| b).collect();
            check_mix(id, want, &seen)?;
        }
        println!(
            "concurrency {concurrency}: {} submissions in {:.1} s, {:.2} submissions/s",
            ids.len(),
            took.as_secs_f64(),
            ids.len() as f64 / took.as_secs_f64()
        );
    }
    Ok(())
}

async fn spread(judge: &Arc<Judge>, root: &Path) -> anyhow::Result<()> {
    // Calibrate the loop on the host so that it takes about 500 ms.
    let spin = "#include <stdio.h>\nint main(void){long long n;if(scanf(\"%lld\",&n)!=1)return 1;volatile unsigned long long s=0;for(long long i=0;i<n;i++)s+=i;printf(\"%llu\\n\",(unsigned long long)s*0);return 0;}\n";
    let probe = 100_000_000i64;
    let took = floor::run_once(spin, &format!("{probe}"))?;
    let n = (probe as f64 * 0.5 / took.as_secs_f64()) as i64;
    let dir = root.join("spin");
    std::fs::create_dir_all(dir.join("data/secret"))?;
    std::fs::write(
        dir.join("problem.yaml"),
        "problem_format_version: 2025-09\nname: spin\nuuid: 0\nlimits:\n  time_limit: 3\n  memory: 64\n",
    )?;
    std::fs::write(dir.join("data/secret/1.in"), format!("{n}\n"))?;
    std::fs::write(dir.join("data/secret/1.ans"), "0\n")?;
    for (concurrency, count) in [(1usize, 20usize), (2, 40)] {
        let submissions = (0..=count)
            .map(|i| submission(format!("spin-{concurrency}-{i}"), "spin", "gcc-12", spin))
            .collect::<Vec<_>>();
        let ids: Vec<String> = submissions.iter().map(|s| s.id.clone()).collect();
        let (timed, _) = judge_all(judge, submissions, concurrency).await;
        let mut times: Vec<u64> = Vec::new();
        // The first warms caches.
        for id in &ids[1..] {
            for (_, b) in timed.of(id) {
                if let Body::Tested { result, time, .. } = b {
                    anyhow::ensure!(result.as_str() == "accepted", "{id}: {result:?}");
                    times.push(time.unwrap_or_default());
                }
            }
        }
        times.sort_unstable();
        let (min, max) = (times[0], times[times.len() - 1]);
        println!(
            "concurrency {concurrency}: {} runs, CPU time median {} ms, min {min} ms, max {max} ms, max/min {:.3}",
            times.len(),
            times[times.len() / 2],
            max as f64 / min.max(1) as f64
        );
    }
    Ok(())
}

/// How often `perf record` samples each CPU in `profile`.
const PERF_HZ: u32 = 1999;

async fn profile(judge: &Arc<Judge>, root: &Path, scratch: &Path) -> anyhow::Result<()> {
    const TESTS: usize = 1000;
    const ROUNDS: usize = 3;
    println!("## profile: {ROUNDS} C submissions of {TESTS} tests, every CPU sampled");
    let problem = format!("sum-{TESTS}");
    package(root, &problem, "1", &sums(TESTS))?;
    // A round outside the profile warms the page cache, the problem cache and the pool.
    judge_all(
        judge,
        vec![submission("warm".into(), &problem, "gcc-12", SUM_C)],
        1,
    )
    .await;
    // BENCH_PERF_DATA keeps the recording for `perf report -i`.
    let data =
        std::env::var_os("BENCH_PERF_DATA").map_or_else(|| scratch.join("perf.data"), Into::into);
    let mut perf = std::process::Command::new("perf")
        .args(["record", "-a", "-g", "-F", &PERF_HZ.to_string(), "-o"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("profile: cannot start perf: {e}"))?;
    // perf needs a moment to open its events on every CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let submissions = (0..ROUNDS)
        .map(|r| submission(format!("profile-{r}"), &problem, "gcc-12", SUM_C))
        .collect();
    let (timed, took) = judge_all(judge, submissions, 1).await;
    // SIGINT makes perf write its data out and exit.
    let pid = i32::try_from(perf.id())?;
    // SAFETY: kill(2) on the perf process this function started and has not yet waited for.
    unsafe { libc::kill(pid, libc::SIGINT) };
    perf.wait()?;
    let tested = (0..ROUNDS)
        .map(|r| {
            timed
                .of(&format!("profile-{r}"))
                .iter()
                .filter(|(_, b)| matches!(b, Body::Tested { .. }))
                .count()
        })
        .sum::<usize>();
    anyhow::ensure!(tested == ROUNDS * TESTS, "profile: {tested} tests judged");
    let tests = tested as f64;
    println!(
        "judged {tested} tests in {:.0} ms: {:.2} ms a test, wall, claim to done",
        ms(took),
        ms(took) / tests
    );
    // Samples of the whole recording (it began 0.5 s before the judging), in CPU ms per test.
    let report = perf_report(&data, &["--no-children", "--sort", "comm", "-g", "none"])?;
    let per_test = |samples: f64| samples * 1000.0 / f64::from(PERF_HZ) / tests;
    println!(
        "{:>16} | {:>8} | {:>12}",
        "command", "samples", "CPU ms/test"
    );
    for (samples, what) in report.iter().take(12) {
        println!(
            "{what:>16} | {samples:>8} | {:>12.3}",
            per_test(*samples as f64)
        );
    }
    // What each command on a test's path was doing, by the outermost frame of each sample.
    for (comm, activities) in breakdown(&data, &["demoter", "main", "tokio-rt-worker"])? {
        let samples: u64 = activities.iter().map(|(_, n)| n).sum();
        println!(
            "### {comm}: {:.3} CPU ms per test, by what it was doing",
            per_test(samples as f64)
        );
        for (what, n) in activities.iter().take(10) {
            println!("{:>8.3} | {what}", per_test(*n as f64));
        }
    }
    Ok(())
}

/// What a command was doing and how many samples caught it at it, most first.
type Activities = Vec<(String, u64)>;

/// The samples of each of `comms` in `data`, by what the command was doing: the system call it
/// was in (the outermost one of the call chain), a page fault, the start of a forked child,
/// other kernel work, or its own code; most first.
fn breakdown(data: &Path, comms: &[&str]) -> anyhow::Result<Vec<(String, Activities)>> {
    let out = std::process::Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(data)
        .args(["--comms", &comms.join(","), "-F", "comm,ip,sym"])
        .output()?;
    anyhow::ensure!(out.status.success(), "perf script failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut counts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        Default::default();
    // A sample: its command on a line of its own, then its call chain, innermost frame first,
    // one "address symbol" a line, indented; a blank line after.
    for sample in text.split("\n\n") {
        let mut lines = sample.lines().filter(|l| !l.trim().is_empty());
        let Some(comm) = lines.next().map(str::trim) else {
            continue;
        };
        let frames: Vec<&str> = lines.map(str::trim).collect();
        let what = activity(&frames);
        *counts
            .entry(comm.to_owned())
            .or_default()
            .entry(what)
            .or_default() += 1;
    }
    Ok(comms
        .iter()
        .filter_map(|comm| {
            let mut activities: Vec<_> = counts.remove(*comm)?.into_iter().collect();
            activities.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            Some((comm.to_string(), activities))
        })
        .collect())
}

/// What a sample with call chain `frames` (innermost first) was doing.
fn activity(frames: &[&str]) -> String {
    let symbol = |frame: &str| frame.split_once(' ').map_or("", |(_, s)| s).to_owned();
    for frame in frames.iter().rev() {
        let symbol = symbol(frame);
        // Installing a seccomp filter reaches its work through `do_seccomp` without the system
        // call's own frame.
        if symbol == "do_seccomp" {
            return "system call seccomp".into();
        }
        for prefix in ["__x64_sys_", "__do_sys_", "__arm64_sys_"] {
            if let Some(call) = symbol.strip_prefix(prefix) {
                return format!("system call {call}");
            }
        }
        if symbol.starts_with("asm_exc_page_fault") {
            return "page faults".into();
        }
        if symbol == "ret_from_fork" || symbol == "ret_from_fork_asm" {
            return "a forked child's start".into();
        }
    }
    // Kernel addresses are the upper half.
    match frames.first() {
        Some(frame) if frame.starts_with("ffff") => "kernel, other".into(),
        _ => "its own code".into(),
    }
}

/// `perf report` of `data` with `args`: each line's sample count and what it is, most first.
fn perf_report(data: &Path, args: &[&str]) -> anyhow::Result<Vec<(u64, String)>> {
    let out = std::process::Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(data)
        .args(["--stdio", "-n"])
        .args(args)
        .output()?;
    anyhow::ensure!(out.status.success(), "perf report failed: {out:?}");
    let mut lines = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "    12.34%          1001  demoter"
        let mut fields = line.split_whitespace();
        let (Some(share), Some(samples)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(samples) = samples.parse::<u64>() else {
            continue;
        };
        if share.ends_with('%') {
            lines.push((samples, fields.collect::<Vec<_>>().join(" ")));
        }
    }
    Ok(lines)
}

/// A judge over the packages in `root` with the default configuration changed by `tweak`.
/// What a judge of the bench has on: everything this release added (warm pool, compile cache,
/// pinning) or none of it.
#[derive(Clone, Copy)]
enum Features {
    None,
    All,
}

impl Features {
    fn label(self) -> &'static str {
        match self {
            Features::None => "no warm pool, no compile cache, runs not pinned",
            Features::All => "warm pool (2 per image), compile cache, runs pinned",
        }
    }
}

/// A judge over the packages in `root`, with `features`, and its runs pinned or not.
async fn judge_with(
    root: &Path,
    scratch: &Path,
    features: Features,
    pin: bool,
) -> anyhow::Result<Arc<Judge>> {
    let mut config = JudgeConfig::default();
    config.checker.cache_dir = scratch.join("checkers");
    config.pin_cpus = pin;
    let mut pool = WarmPool::default();
    if let Features::All = features {
        config.compile_cache = Some(CompileCacheConfig {
            dir: scratch.join("compile-cache"),
            max_bytes: 512 << 20,
        });
        pool = WarmPool {
            size: 2,
            languages: ["gcc-12", "g++-12", "python-3.11", "java-17"]
                .map(String::from)
                .to_vec(),
        };
    }
    let setup = Setup {
        problems: root.to_owned(),
        languages: None,
        demoter: std::env::var_os("EXECUTIONER_DEMOTER").map(Into::into),
        cgroup_parent: "executioner".into(),
        judge: config,
        pool,
    };
    let judge = build_judge(&setup).await?;
    judge.sandbox().prewarm();
    judge.sandbox().pool_settled().await;
    Ok(judge)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let parts =
        std::env::var("BENCH_E2E").unwrap_or_else(|_| "latency,throughput,postgres,spread".into());
    let root = tempfile::tempdir()?;
    let scratch = tempfile::tempdir()?;
    for part in parts.split(',') {
        let part = part.trim();
        if part == "postgres" {
            for features in [Features::None, Features::All] {
                println!("\n# {}", features.label());
                postgres_latency(root.path(), scratch.path(), features).await?;
                postgres_throughput(root.path(), scratch.path(), features).await?;
            }
            continue;
        }
        if part == "spread" {
            println!("\n## spread: the CPU time of one CPU-bound C program (about 500 ms)");
            for pin in [false, true] {
                println!(
                    "### runs {}pinned to a CPU of their own",
                    if pin { "" } else { "not " }
                );
                let judge = judge_with(root.path(), scratch.path(), Features::None, pin).await?;
                spread(&judge, root.path()).await?;
            }
            continue;
        }
        for features in [Features::None, Features::All] {
            println!("\n# {}", features.label());
            let judge = judge_with(
                root.path(),
                scratch.path(),
                features,
                matches!(features, Features::All),
            )
            .await?;
            match part {
                "latency" => latency(&judge, root.path()).await?,
                "throughput" => throughput(&judge, root.path()).await?,
                "profile" => profile(&judge, root.path(), scratch.path()).await?,
                other => anyhow::bail!(
                    "BENCH_E2E: unknown part {other:?} (latency, throughput, postgres, spread, profile)"
                ),
            }
            judge.sandbox().close_pool().await;
        }
    }
    Ok(())
}
