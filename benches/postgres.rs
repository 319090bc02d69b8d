//! What the Postgres interface costs per submission, without any judging: `next()`, the claim,
//! and the messages of a typical compiled submission on a 3-test problem (executing, compiling,
//! compiled, 3 × testing/tested, done: 10 statements), against a real PostgreSQL.
//!
//! `cargo bench --bench postgres` with `EXECUTIONER_TEST_DATABASE_URL` set (scripts/postgres-up
//! prints it). `BENCH_SUBMISSIONS` (default 2000) submissions per run; one run with 1 worker,
//! one with 4 workers sharing the database (each its own interface, as separate processes would).

#[path = "../tests/pg/mod.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use executioner::interface::{Interface, PostgresInterface, Sent};
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::verdict::Verdict;

fn sequence() -> Vec<Body> {
    let mut bodies = vec![
        Body::Compiling,
        Body::Compiled {
            result: CompileResult::Success,
            compile_output: None,
        },
    ];
    for test_case in 1..=3 {
        bodies.push(Body::Testing {
            test_case,
            subtask: None,
        });
        bodies.push(Body::Tested {
            test_case,
            subtask: None,
            result: Verdict::Accepted,
            time: Some(4),
            memory: Some(1800),
        });
    }
    bodies.push(Body::Done {
        score: Some(1.0),
        failed_subtasks: None,
    });
    bodies
}

/// One worker: takes submissions until `total` have been judged by all workers together.
/// Returns the time from `next()` to `done` of each submission it judged.
async fn work(
    worker: Arc<PostgresInterface>,
    judged: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) -> anyhow::Result<Vec<Duration>> {
    use std::sync::atomic::Ordering;
    let mut times = Vec::new();
    let bodies = sequence();
    while judged.load(Ordering::SeqCst) < total {
        let started = Instant::now();
        let next = tokio::time::timeout(Duration::from_millis(500), worker.next()).await;
        let Ok(next) = next else { continue }; // the others took the last ones
        let Some(submission) = next? else { break };
        let id = submission.id;
        if worker.send(&Message::new(&id, Body::Executing)).await? != Sent::Recorded {
            continue;
        }
        for body in &bodies {
            worker.send(&Message::new(&id, body.clone())).await?;
        }
        times.push(started.elapsed());
        judged.fetch_add(1, Ordering::SeqCst);
    }
    Ok(times)
}

async fn run(workers: usize, submissions: usize) -> anyhow::Result<()> {
    let db = pg::TestDatabase::create().await;
    let front = db.interface().await;
    let all: Vec<Submission> = (0..submissions)
        .map(|i| Submission {
            id: format!("b-{i:06}"),
            problem: "test-base".into(),
            language: "gcc-12".into(),
            source_code: "#include <stdio.h>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);}\n".into(),
        })
        .collect();
    for chunk in all.chunks(1000) {
        front.enqueue(chunk).await?;
    }
    let mut config = db.config();
    config.max_connections = 2;
    let judged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut interfaces = Vec::new();
    for _ in 0..workers {
        interfaces.push(Arc::new(PostgresInterface::connect(config.clone()).await?));
    }
    let started = Instant::now();
    let tasks: Vec<_> = interfaces
        .iter()
        .map(|w| tokio::spawn(work(w.clone(), judged.clone(), submissions)))
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await??);
    }
    let elapsed = started.elapsed();
    for interface in &interfaces {
        interface.close().await;
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "postgres interface, {workers} worker(s), {n} submissions × 11 statements (claim + 10 messages): \
         {rate:.0} submissions/s; per submission median {median:.2} ms, p95 {p95:.2} ms, max {max:.2} ms",
        n = times.len(),
        rate = times.len() as f64 / elapsed.as_secs_f64(),
        median = at(0.5).as_secs_f64() * 1e3,
        p95 = at(0.95).as_secs_f64() * 1e3,
        max = at(1.0).as_secs_f64() * 1e3,
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: only build-check then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let submissions = std::env::var("BENCH_SUBMISSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    for workers in [1, 4] {
        run(workers, submissions).await?;
    }
    Ok(())
}
