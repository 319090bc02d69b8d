//! What a shared store costs per submission, without any judging: `next()`, the claim, and the
//! messages of a typical compiled submission on a 3-test problem (executing, compiling,
//! compiled, 3 × testing/tested, done: 10 writes), against a real PostgreSQL and the Firestore
//! emulator.
//!
//! `cargo bench --bench stores` with `EXECUTIONER_TEST_DATABASE_URL` set (scripts/postgres-up
//! prints it) and the emulator installed (scripts/firestore-up). `BENCH_SUBMISSIONS` (default
//! 2000) submissions per run; `BENCH_STORES` (default `postgres,firestore`) picks the stores.
//! For each store, one run with 1 worker, one with 4 workers sharing it (each its own
//! interface, as separate processes would).

#[path = "../tests/firestore_emulator/mod.rs"]
mod firestore_emulator;
#[path = "../tests/pg/mod.rs"]
mod pg;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use executioner::interface::{Interface, Sent};
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::store::firestore::FirestoreInterface;
use executioner::store::postgres::PostgresInterface;
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
            score: None,
            output: None,
        });
    }
    bodies.push(Body::Done {
        score: Some(1.0),
        failed_subtasks: None,
    });
    bodies
}

/// Durations by what was measured: a whole submission, or one call.
type Times = BTreeMap<&'static str, Vec<Duration>>;

/// One worker: takes submissions until `total` have been judged by all workers together.
/// Times each submission from `next()` to `done`, and each call.
async fn work(
    worker: Arc<dyn Interface>,
    judged: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) -> anyhow::Result<Times> {
    use std::sync::atomic::Ordering;
    let mut times = Times::new();
    let bodies = sequence();
    while judged.load(Ordering::SeqCst) < total {
        let started = Instant::now();
        let next = tokio::time::timeout(Duration::from_millis(500), worker.next()).await;
        let Ok(next) = next else { continue }; // the others took the last ones
        let Some(submission) = next? else { break };
        times.entry("next()").or_default().push(started.elapsed());
        let id = submission.id;
        let claiming = Instant::now();
        let claimed = worker.send(&Message::new(&id, Body::Executing)).await?;
        times.entry("claim").or_default().push(claiming.elapsed());
        if claimed != Sent::Recorded {
            continue;
        }
        for body in &bodies {
            let sending = Instant::now();
            worker.send(&Message::new(&id, body.clone())).await?;
            times
                .entry(body.state())
                .or_default()
                .push(sending.elapsed());
        }
        times
            .entry("submission")
            .or_default()
            .push(started.elapsed());
        judged.fetch_add(1, Ordering::SeqCst);
    }
    Ok(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn submissions(n: usize) -> Vec<Submission> {
    (0..n)
        .map(|i| Submission {
            id: format!("b-{i:06}"),
            problem: "test-base".into(),
            language: "gcc-12".into(),
            source_code: "#include <stdio.h>\nint main(){long long a,b;scanf(\"%lld %lld\",&a,&b);printf(\"%lld\\n\",a+b);}\n".into(),
            files: Vec::new(),
            run: None,
        })
        .collect()
}

async fn postgres(workers: usize, n: usize) -> anyhow::Result<()> {
    let db = pg::TestDatabase::create().await;
    let front = db.interface().await;
    for chunk in submissions(n).chunks(1000) {
        front.enqueue(chunk).await?;
    }
    let mut config = db.config();
    config.max_connections = 2;
    let mut interfaces = Vec::new();
    for _ in 0..workers {
        interfaces.push(Arc::new(PostgresInterface::connect(config.clone()).await?));
    }
    let dyns = interfaces.iter().map(|i| i.clone() as Arc<dyn Interface>);
    run("postgres", dyns.collect(), n).await?;
    for interface in &interfaces {
        interface.close().await;
    }
    Ok(())
}

async fn firestore(workers: usize, n: usize) -> anyhow::Result<()> {
    let project = firestore_emulator::new_project();
    let front = firestore_emulator::front(&project).await;
    front.enqueue(&submissions(n)).await?;
    let mut interfaces = Vec::new();
    for _ in 0..workers {
        let config = executioner::store::firestore::FirestoreConfig::new(&project);
        interfaces.push(Arc::new(FirestoreInterface::connect(config).await?));
    }
    let dyns = interfaces.iter().map(|i| i.clone() as Arc<dyn Interface>);
    run("firestore (emulator)", dyns.collect(), n).await?;
    for interface in &interfaces {
        interface.close().await;
    }
    Ok(())
}

async fn run(
    store: &str,
    interfaces: Vec<Arc<dyn Interface>>,
    submissions: usize,
) -> anyhow::Result<()> {
    let workers = interfaces.len();
    let judged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = interfaces
        .iter()
        .map(|w| tokio::spawn(work(w.clone(), judged.clone(), submissions)))
        .collect();
    let mut times = Times::new();
    for task in tasks {
        for (what, durations) in task.await?? {
            times.entry(what).or_default().extend(durations);
        }
    }
    let elapsed = started.elapsed();
    let judged = times.get("submission").map_or(0, Vec::len);
    println!(
        "{store} interface, {workers} worker(s): {judged} submissions in {:.1} s = {:.0} submissions/s",
        elapsed.as_secs_f64(),
        judged as f64 / elapsed.as_secs_f64()
    );
    for (what, durations) in &mut times {
        durations.sort();
        let at = |q: f64| durations[((durations.len() - 1) as f64 * q).round() as usize];
        println!(
            "  {what:<12} median {:>6.2} ms  p95 {:>6.2} ms  max {:>7.2} ms  (n = {})",
            ms(at(0.5)),
            ms(at(0.95)),
            ms(at(1.0)),
            durations.len()
        );
    }
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
    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "postgres,firestore".into());
    for store in stores.split(',') {
        for workers in [1, 4] {
            match store {
                "postgres" => postgres(workers, submissions).await?,
                "firestore" => firestore(workers, submissions).await?,
                other => anyhow::bail!("unknown store {other:?} in BENCH_STORES"),
            }
        }
    }
    Ok(())
}
