//! What one `GET /v1.0/operations` costs over the Postgres store holding a contest's worth of
//! submissions: the first page, filtered pages, and a page deep into the list (by `$skip`, and by
//! the `$skiptoken` of the nextLink of the page before), through the API's router in process
//! (no socket), against a real PostgreSQL.
//!
//! `cargo bench --bench operations` with `EXECUTIONER_TEST_DATABASE_URL` set
//! (scripts/postgres-up prints it). `BENCH_SUBMISSIONS` (default 20000) submissions: 2% queued,
//! 2% being judged (one test done), 2% ended in `error`, 1% compile errors, the rest judged
//! (three `tested` results each); `BENCH_REPEAT` (default 20) requests per case.

#[path = "../tests/client/mod.rs"]
mod client;
#[path = "../tests/pg/mod.rs"]
mod pg;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::http::{Request, StatusCode};
use axum::Router;
use executioner::api::time::format_rfc3339;
use executioner::api::{self, ApiConfig, AppState};
use executioner::interface::Interface;
use executioner::problem::ProblemStore;
use executioner::protocol::{Body, CompileResult, Message, Submission};
use executioner::store::postgres::PostgresBackend;
use executioner::store::postgres::PostgresInterface;
use executioner::verdict::Verdict;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const PROBLEMS: [&str; 3] = ["test-base", "test-subtasks-mixed", "edge-many-tests"];
const LANGUAGES: [&str; 3] = ["gcc-12", "python-3.11", "g++-12"];

fn submission(i: usize) -> Submission {
    Submission {
        id: format!("b-{i:06}"),
        problem: PROBLEMS[i % PROBLEMS.len()].into(),
        language: LANGUAGES[i / 7 % LANGUAGES.len()].into(),
        source_code: "print(sum(map(int, input().split())))\n".into(),
        files: Vec::new(),
        run: None,
    }
}

fn tested(id: &str, test_case: u32) -> [Message; 2] {
    [
        Message::new(
            id,
            Body::Testing {
                test_case,
                subtask: None,
            },
        ),
        Message::new(
            id,
            Body::Tested {
                test_case,
                subtask: None,
                result: Verdict::Accepted,
                time: Some(4),
                memory: Some(1800),
                score: None,
                output: None,
            },
        ),
    ]
}

/// The messages of a finished judging of submission `i` (`None`: left queued or running).
fn judging(i: usize, id: &str) -> Option<Vec<Message>> {
    let mut messages = vec![Message::new(id, Body::Executing)];
    match i % 100 {
        0..=3 => return None,
        4 | 5 => messages.push(Message::new(
            id,
            Body::Error {
                reason: Some("the sandbox failed".into()),
            },
        )),
        6 => {
            messages.push(Message::new(id, Body::Compiling));
            messages.push(Message::new(
                id,
                Body::Compiled {
                    result: CompileResult::Error,
                    compile_output: Some("error".into()),
                },
            ));
            messages.push(Message::new(
                id,
                Body::Done {
                    score: None,
                    failed_subtasks: None,
                },
            ));
        }
        _ => {
            for test_case in 1..=3 {
                messages.extend(tested(id, test_case));
            }
            messages.push(Message::new(
                id,
                Body::Done {
                    score: Some(1.0),
                    failed_subtasks: None,
                },
            ));
        }
    }
    Some(messages)
}

/// Queues `n` submissions (500 per statement, so 500 share a submission time) and judges them
/// as a rejudge records results (one transaction each); those being judged are claimed by
/// `worker`, which holds them for the run.
async fn populate(front: &PostgresInterface, worker: &PostgresInterface, n: usize) {
    let all: Vec<Submission> = (0..n).map(submission).collect();
    for chunk in all.chunks(500) {
        front.enqueue(chunk).await.expect("enqueue");
    }
    let finished = futures_util::stream::iter(0..n)
        .filter_map(|i| async move {
            let id = submission(i).id;
            judging(i, &id).map(|messages| (id, messages))
        })
        .map(|(id, messages)| async move { front.replace(&id, &messages).await })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    for done in finished {
        done.expect("replace");
    }
    for i in (0..n).filter(|i| matches!(i % 100, 2 | 3)) {
        let id = submission(i).id;
        worker
            .send(&Message::new(&id, Body::Executing))
            .await
            .expect("claim");
        for message in tested(&id, 1) {
            worker.send(&message).await.expect("a result");
        }
    }
}

/// How long `GET uri` took, and its body.
async fn get(app: &Router, uri: &str) -> (Duration, serde_json::Value) {
    let started = Instant::now();
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(HttpBody::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{uri}: {body:?}");
    (elapsed, serde_json::from_slice(&body).expect("a JSON body"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: only build-check then.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let (n, repeat) = (env("BENCH_SUBMISSIONS", 20_000), env("BENCH_REPEAT", 20));
    let db = pg::TestDatabase::create().await;
    let mut config = db.config();
    config.max_connections = 8;
    let front = Arc::new(PostgresInterface::connect(config.clone()).await?);
    config.lease = Duration::from_secs(600);
    let worker = PostgresInterface::connect(config).await?;
    let started = Instant::now();
    populate(&front, &worker, n).await;
    println!(
        "{n} submissions stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sqlx::query("ANALYZE").execute(front.pool()).await?;

    let problems = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems");
    let backend = PostgresBackend::new(
        front.clone(),
        Some(Arc::new(ProblemStore::new(problems))),
        None,
    );
    let shutdown = CancellationToken::new();
    let state = AppState::new(backend, ApiConfig::default(), shutdown.clone());
    // Built once, as `serve` builds it: what is measured is the request, not the router.
    let app = api::router(state);
    // Half-way through the list: the submission time of its middle chunk.
    let middle = front
        .record(&submission(n / 2).id)
        .await?
        .expect("stored")
        .submitted_ms;
    let filter = |f: &str| format!("/v1.0/operations?$top=50&$filter={}", client::encode(f));
    // The nextLink of the page before: the same page as `$skip=10000`, by its `$skiptoken`.
    let (_, before) = get(&app, "/v1.0/operations?$top=50&$skip=9950").await;
    let token_page = before["nextLink"].as_str().expect("a next page").to_owned();
    let cases = [
        ("first page", "/v1.0/operations?$top=50".to_owned()),
        ("status eq 'failed'", filter("status eq 'failed'")),
        (
            "problem and createdDateTime",
            filter(&format!(
                "problem eq 'test-base' and createdDateTime ge {}",
                format_rfc3339(middle)
            )),
        ),
        ("percentComplete lt 100", filter("percentComplete lt 100")),
        (
            "page at $skip=10000",
            "/v1.0/operations?$top=50&$skip=10000".into(),
        ),
        ("page at 10000 by nextLink", token_page),
    ];
    for (what, uri) in &cases {
        get(&app, uri).await;
        let mut times: Vec<Duration> = Vec::new();
        for _ in 0..repeat {
            times.push(get(&app, uri).await.0);
        }
        times.sort();
        println!(
            "  {what:<28} median {:>8.2} ms  min {:>8.2} ms  max {:>8.2} ms  (n = {repeat})",
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    shutdown.cancel();
    worker.close().await;
    front.close().await;
    Ok(())
}
