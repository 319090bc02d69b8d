//! The Firestore emulator stops and starts again under a running `executioner worker
//! --interface firestore` (a binary of its own: the emulator it restarts is its alone). The
//! emulator keeps nothing, so the test queues new submissions afterwards: the worker notices the
//! lost connection, reconnects its listener, and judges them without being restarted itself.

mod firestore_emulator;
mod worker_process;

use std::time::Duration;

use executioner::interface::SubmissionState;
use executioner::protocol::Submission;
use executioner::store::firestore::FirestoreInterface;
use firestore_emulator::Emulator;
use worker_process::WorkerProcess;

const A_PLUS_B: &str = "a, b = map(int, input().split())\nprint(a + b)\n";

fn batch(prefix: &str, n: usize) -> Vec<Submission> {
    (0..n)
        .map(|i| Submission {
            id: format!("{prefix}-{i}"),
            problem: "test-base".into(),
            language: "python-3.11".into(),
            source_code: A_PLUS_B.into(),
            files: Vec::new(),
            run: None,
        })
        .collect()
}

/// Waits until every submission of `all` is judged (with score 1, claimed once).
async fn wait_judged(front: &FirestoreInterface, all: &[Submission], worker: &WorkerProcess) {
    let waited = firestore_emulator::wait_for(
        "the submissions to be judged",
        Duration::from_secs(180),
        Duration::from_millis(500),
        || async {
            for s in all {
                let stored = front.status(&s.id).await.ok()??;
                if stored.state != SubmissionState::Judged {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
    if let Err(e) = waited {
        panic!("{e}; worker:\n{}", worker.log_tail());
    }
    for s in all {
        let stored = front.status(&s.id).await.unwrap().unwrap();
        assert_eq!(
            (stored.score, stored.attempts, stored.results.len()),
            (Some(1.0), 1, 6),
            "{}: {stored:?}",
            s.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_rides_out_an_emulator_restart() {
    let emulator = Emulator::start(0);
    let (host, port) = (emulator.host.clone(), emulator.port());
    // This binary's only test: the variable is set before any client exists.
    std::env::set_var("FIRESTORE_EMULATOR_HOST", &host);
    let project = firestore_emulator::new_project();
    let front = FirestoreInterface::open(firestore_emulator::config(&project))
        .await
        .expect("connect to the emulator");
    let worker = WorkerProcess::start(
        &["--interface", "firestore", "--project-id", &project],
        &[("FIRESTORE_EMULATOR_HOST", &host)],
        10,
        2,
    );
    let before = batch("before", 4);
    front.enqueue(&before).await.unwrap();
    wait_judged(&front, &before, &worker).await;

    emulator.stop();
    // Down long enough for the worker to notice (its listener fails, its looks fail).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let emulator = Emulator::start(port);
    eprintln!("emulator restarted on {}", emulator.host);

    let after = batch("after", 4);
    firestore_emulator::wait_for(
        "the emulator to take writes again",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async { front.enqueue(&after).await.ok() },
    )
    .await
    .unwrap();
    wait_judged(&front, &after, &worker).await;
    let log = worker.log_all();
    assert!(
        log.contains("the listener failed") || log.contains("cannot listen"),
        "the worker never noticed the emulator was gone:\n{}",
        worker.log_tail()
    );
    assert!(worker.stop(Duration::from_secs(60)).success());
    front.close().await;
    drop(emulator);
}
