//! `executioner worker`: submissions taken from an interface and judged until a shutdown
//! signal; the worker's metrics exporter.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use executioner::backoff::Backoff;
use executioner::interface::{HttpConfig, HttpInterface, Interface, InterfaceError};
use executioner::judge::Judge;
use executioner::protocol::Submission;
use executioner::sandbox::SandboxError;
use executioner::setup::{build_judge, Setup, SetupError};
use executioner::store::firestore::{FirestoreConfig, FirestoreInterface};
use executioner::store::memory::MemoryInterface;
use executioner::store::postgres::{PostgresConfig, PostgresInterface};
use executioner::worker::{Worker, WorkerConfig};
use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{bind, print_message, CommandError};

/// Removes the sandboxes of workers on this host that died without cleaning up.
pub async fn remove_leftover_sandboxes(judge: &Judge) {
    match judge.sandbox().remove_leftovers().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed sandboxes left by a previous worker"),
        Err(e) => warn!(error = %e, "could not look for leftover sandboxes"),
    }
}

/// The pauses between attempts to reach the Docker engine at a worker's start.
const DOCKER_RETRY: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));

/// The judge of a worker command: while the Docker engine cannot be reached (not started yet,
/// restarting) it says so and tries again with a growing pause, until `shutdown` fires
/// (`Ok(None)`); any other failure (no demoter, no cgroups, a broken registry) is returned at
/// once. Sandboxes dead workers on this host left are removed first.
pub async fn worker_judge(
    setup: &Setup,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<Judge>>, CommandError> {
    let mut failures = 0;
    loop {
        match build_judge(setup).await {
            Ok(judge) => {
                remove_leftover_sandboxes(&judge).await;
                judge.sandbox().prewarm();
                return Ok(Some(judge));
            }
            Err(SetupError::Sandbox(e @ SandboxError::Docker { .. })) => {
                failures += 1;
                let pause = DOCKER_RETRY.delay(failures);
                warn!(error = %e, retry_in = ?pause, "the Docker engine is not reachable; the worker waits for it");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A worker command over a connected interface: the judge (after removing what dead workers on
/// this host left), then `connect`, then judging until `shutdown` fires. Returns the interface
/// for the command to close.
async fn judge_from<I: Interface>(
    setup: &Setup,
    config: WorkerConfig,
    connect: impl std::future::Future<Output = Result<I, InterfaceError>>,
    shutdown: CancellationToken,
) -> Result<Option<Arc<I>>, CommandError> {
    let Some(judge) = worker_judge(setup, &shutdown).await? else {
        return Ok(None);
    };
    let sandbox = judge.sandbox().clone();
    let interface = match connect.await {
        Ok(interface) => Arc::new(interface),
        Err(e) => {
            sandbox.close_pool().await;
            return Err(e.into());
        }
    };
    Worker::new(interface.clone(), judge, config)
        .run(shutdown)
        .await;
    sandbox.close_pool().await;
    Ok(Some(interface))
}

/// The exporter of `worker --metrics-listen`: serves `GET /metrics` until dropped.
pub struct MetricsExporter {
    _stop: tokio_util::sync::DropGuard,
}

/// Listens on `listen` (port 0: any free one; the log says which) and serves this process's
/// metrics there until the returned exporter is dropped.
pub async fn metrics_exporter(listen: &str) -> Result<MetricsExporter, CommandError> {
    let listener = bind(listen).await?;
    let address = listener
        .local_addr()
        .map_or_else(|_| listen.to_owned(), |a| a.to_string());
    tracing::info!(listen = %address, "serving metrics");
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            if let Err(e) = executioner::metrics::serve(listener, stop).await {
                warn!(error = %e, "the metrics listener failed");
            }
        }
    });
    Ok(MetricsExporter {
        _stop: stop.drop_guard(),
    })
}

/// `executioner worker --interface postgres`: submissions from a shared database, judged until
/// `shutdown` fires; any number of workers may share the database.
pub async fn postgres_worker(
    setup: &Setup,
    config: WorkerConfig,
    database: PostgresConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let connect = PostgresInterface::connect(database);
    if let Some(interface) = judge_from(setup, config, connect, shutdown).await? {
        interface.close().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `executioner worker --interface firestore`: submissions from a Firestore database (the STAOJ
/// layout), judged until `shutdown` fires; counted in `info/info.judgeCount` while it runs.
pub async fn firestore_worker(
    setup: &Setup,
    config: WorkerConfig,
    database: FirestoreConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let connect = FirestoreInterface::connect(database);
    if let Some(interface) = judge_from(setup, config, connect, shutdown).await? {
        interface.close().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `executioner worker --interface http`: submissions from a remote `executioner serve`, as one
/// of its registered workers, judged until `shutdown` fires; deregistered at the end, so that
/// the service queues again anything this worker still held.
pub async fn http_worker(
    setup: &Setup,
    config: WorkerConfig,
    service: HttpConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let connect = HttpInterface::connect(service);
    if let Some(interface) = judge_from(setup, config, connect, shutdown).await? {
        interface.close().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `executioner worker --interface memory`: submissions are read from stdin (one JSON object
/// per line), messages printed to stdout as JSON lines, until `shutdown` fires.
pub async fn memory_worker(
    setup: &Setup,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let Some(judge) = worker_judge(setup, &shutdown).await? else {
        return Ok(ExitCode::SUCCESS);
    };
    let interface = Arc::new(MemoryInterface::new());
    let mut messages = interface.subscribe();
    let reader = tokio::spawn({
        let interface = interface.clone();
        async move {
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let mut number = 0u64;
            while let Ok(Some(line)) = lines.next_line().await {
                number += 1;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Submission>(&line) {
                    Ok(submission) => interface.push(submission),
                    Err(e) => {
                        warn!(line = number, error = %e, "ignoring a line that is not a submission")
                    }
                }
            }
        }
    });
    let printing = CancellationToken::new();
    let printer = tokio::spawn({
        let printing = printing.clone();
        async move {
            loop {
                let message = tokio::select! {
                    m = messages.recv() => m,
                    _ = printing.cancelled() => break,
                };
                match message {
                    Ok(message) => print_message(&message)?,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(missed = n, "printer lagged")
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
            // Shutting down: print what is left.
            while let Ok(message) = messages.try_recv() {
                print_message(&message)?;
            }
            Ok::<(), CommandError>(())
        }
    });
    let sandbox = judge.sandbox().clone();
    Worker::new(interface.clone(), judge, config)
        .run(shutdown)
        .await;
    sandbox.close_pool().await;
    reader.abort();
    printing.cancel();
    match printer.await {
        Ok(result) => result?,
        Err(e) => warn!(error = %e, "printer task failed"),
    }
    Ok(ExitCode::SUCCESS)
}
