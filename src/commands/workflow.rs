//! `executioner workflow ...`: problem validation and rejudge from the command line, with the
//! real judge. Reports go to stdout, progress to stderr when it is a terminal.
//!
//! Judgings go through a store's queue, as in `serve` (`workflow::QueuedJudge`), taken by a
//! worker this command starts: one of its own over memory, or, for a rejudge of the Postgres
//! store, one that takes only judgings from the store's queue, beside any other workers of
//! that store (which take them too).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use executioner::language::RegistryError;
use executioner::problem::ProblemError;
use executioner::setup::{build_judge, load_registry, Setup, SetupError};
use executioner::store::memory::{MemoryBackend, MemoryInterface, MemoryResultStore};
use executioner::store::postgres::{PostgresBackend, PostgresConfig, PostgresInterface};
use executioner::store::postgres::{PostgresSubmissions, PostgresWorkflowStore};
use executioner::store::workflow::state::StepState;
use executioner::store::{Backend, WorkflowStore};
use executioner::worker::{Worker, WorkerConfig};
use executioner::workflow::control::Selector;
use executioner::workflow::definition::{Definition, DefinitionError, Env, Settings};
use executioner::workflow::engine::step::RetryPolicy;
use executioner::workflow::engine::{Event, Workflow};
use executioner::workflow::rejudge::{self, RejudgeError, Selection};
use executioner::workflow::runner::{Runner, RunnerError};
use executioner::workflow::validate::{self, ValidateError};
use executioner::workflow::webhook::{Webhook, WebhookError};
use executioner::workflow::QueuedJudge;

use super::worker::remove_leftover_sandboxes;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Problem(#[from] ProblemError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Rejudge(#[from] RejudgeError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error("the database: {0}")]
    Database(#[from] executioner::interface::InterfaceError),
    #[error("{what}: {source}")]
    Output {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the workflow was shut down before it finished")]
    ShutDown,
}

/// What every workflow command shares.
#[derive(Debug, Clone)]
pub struct Common {
    /// Attempts per judging when the infrastructure fails.
    pub attempts: u32,
    /// Judgings at once.
    pub concurrency: usize,
}

impl Common {
    fn retry(&self) -> RetryPolicy {
        RetryPolicy::attempts(self.attempts)
    }

    fn settings(&self) -> Settings {
        Settings::new(self.attempts, self.concurrency)
    }
}

/// The judge of a workflow command: judgings queued in `backend` and judged by a local worker
/// of `concurrency` taking from it, until [`LocalWorker::stop`].
struct LocalWorker {
    judge: Arc<QueuedJudge>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalWorker {
    async fn start(
        setup: &Setup,
        backend: Arc<dyn Backend>,
        follower: JoinHandle<()>,
        stop: CancellationToken,
        concurrency: usize,
    ) -> Result<Self, CommandError> {
        let judge = build_judge(setup).await?;
        // A workflow command killed before this one may have left its sandboxes behind.
        remove_leftover_sandboxes(&judge).await;
        let stores = backend.clone().workflow_stores();
        let config = WorkerConfig {
            concurrency: concurrency.max(1),
            ..WorkerConfig::default()
        };
        let worker = Worker::new(backend.worker_interface(), judge, config);
        let running = tokio::spawn({
            let stop = stop.clone();
            async move { worker.run(stop).await }
        });
        Ok(LocalWorker {
            judge: Arc::new(QueuedJudge::new(stores.judgings)),
            stop,
            tasks: vec![follower, running],
        })
    }

    /// A local worker over a queue in memory of its own.
    async fn in_memory(setup: &Setup, concurrency: usize) -> Result<Self, CommandError> {
        let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
        let stop = CancellationToken::new();
        let follower = backend.follow(stop.clone());
        Self::start(setup, backend, follower, stop, concurrency).await
    }

    /// Stops the worker (nothing is in flight once the workflow has ended) and waits for it.
    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Where a rejudge takes its submissions from and puts their new results.
#[derive(Debug, Clone)]
pub enum Source {
    /// A JSON-lines file of submissions; new results printed as JSON lines.
    File(std::path::PathBuf),
    /// The Postgres store: results replace the stored ones, and the workflow's state is kept
    /// in the database under `name` (default: from the selection), so the same command run
    /// again after an interruption continues it.
    Postgres {
        config: PostgresConfig,
        name: Option<String>,
    },
}

/// The stored name of a rejudge of `selection`.
pub fn rejudge_name(selection: &Selection) -> String {
    match selection {
        Selection::Problem(problem) => format!("rejudge-{problem}"),
        Selection::Ids(ids) => {
            let joined = ids.join(",");
            if joined.len() <= 200 {
                format!("rejudge-ids-{joined}")
            } else {
                format!("rejudge-ids-{}-and-{}-more", ids[0], ids.len() - 1)
            }
        }
    }
}

/// `executioner workflow validate`: exit 0 only when every solution got its expected outcome.
pub async fn validate(
    setup: &Setup,
    common: &Common,
    problem: &str,
    solutions_dir: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    if !executioner::problem::is_valid_id(problem) {
        return Err(CommandError::Usage(format!(
            "{problem:?} is not a problem id: ids are [a-z0-9-]+"
        )));
    }
    let registry = load_registry(setup.languages.as_deref())?;
    let solutions = validate::discover(solutions_dir, &registry)?;
    let limits = executioner::problem::load(&setup.problems, problem)?;
    let local = LocalWorker::in_memory(setup, common.concurrency).await?;
    let judge = local.judge.clone();
    let options = validate::Options {
        retry: common.retry(),
        max_running: common.concurrency,
        ..validate::Options::default()
    };
    let workflow = validate::workflow(problem, limits.time_ms, &solutions, judge, &options)?;
    let _ = workflow.start(&Selector::all(), false);
    let ran = run_with_progress(&workflow, shutdown, |wf, step| {
        let status = wf.status(&Selector::id(step), &[]).into_iter().next()?;
        let name = status.tags.get("solution")?;
        Some(format!("{name}: {}", status.state))
    })
    .await;
    local.stop().await;
    ran?;
    let report = validate::report_of(&workflow).ok_or(CommandError::ShutDown)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{report}").map_err(|source| CommandError::Output {
        what: "stdout",
        source,
    })?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `executioner workflow rejudge`. Exit 0 when every submission was judged.
pub async fn rejudge(
    setup: &Setup,
    common: &Common,
    source: Source,
    selection: &Selection,
    webhook: Option<&str>,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    match source {
        Source::File(path) => {
            rejudge_file(setup, common, &path, selection, webhook, shutdown).await
        }
        Source::Postgres { config, name } => {
            // Its worker takes only judgings: the store's submissions are other workers' work.
            let config = PostgresConfig {
                judgings_only: true,
                ..config
            };
            let interface = Arc::new(PostgresInterface::connect(config).await?);
            let name = name.unwrap_or_else(|| rejudge_name(selection));
            let rejudged = rejudge_postgres(
                setup, common, &interface, &name, selection, webhook, shutdown,
            )
            .await;
            interface.close().await;
            rejudged
        }
    }
}

/// A rejudge of a JSON-lines file of submissions: every rejudged submission's new messages
/// printed as JSON lines.
async fn rejudge_file(
    setup: &Setup,
    common: &Common,
    submissions: &std::path::Path,
    selection: &Selection,
    webhook: Option<&str>,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let chosen = rejudge::select(rejudge::read_submissions(submissions)?, selection)?;
    let webhook = webhook.map(Webhook::parse).transpose()?;
    let local = LocalWorker::in_memory(setup, common.concurrency).await?;
    let results = Arc::new(MemoryResultStore::new());
    let options = rejudge::Options {
        retry: common.retry(),
        max_running: common.concurrency,
        webhook,
        store: None,
    };
    let name = match selection {
        Selection::Problem(problem) => format!("rejudge-{problem}"),
        Selection::Ids(_) => "rejudge".to_owned(),
    };
    let workflow = rejudge::workflow(
        &name,
        &chosen,
        local.judge.clone(),
        results.clone(),
        &options,
    )?;
    let _ = workflow.start(&Selector::all(), false);
    let ran = run_with_progress(&workflow, shutdown, rejudge_progress).await;
    local.stop().await;
    ran?;
    let summary = rejudge::summary_of(&workflow).ok_or(CommandError::ShutDown)?;
    let mut out = std::io::stdout().lock();
    let output = |source| CommandError::Output {
        what: "stdout",
        source,
    };
    for submission in &chosen {
        for message in results.messages_of(&submission.id).unwrap_or_default() {
            let line = serde_json::to_string(&message).unwrap_or_default();
            writeln!(out, "{line}").map_err(output)?;
        }
    }
    out.flush().map_err(output)?;
    Ok(report_not_judged(&summary))
}

fn rejudge_progress(wf: &Workflow, step: &str) -> Option<String> {
    let status = wf.status(&Selector::id(step), &[]).into_iter().next()?;
    status.tags.get("submission")?;
    Some(rejudge::Progress::of(wf).to_string())
}

fn report_not_judged(summary: &rejudge::Summary) -> ExitCode {
    for (id, state, error) in &summary.not_judged {
        eprintln!(
            "not judged: {id} ({state}): {}",
            error.as_deref().unwrap_or("")
        );
    }
    if summary.not_judged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A rejudge of the submissions of the Postgres store, whose results replace theirs there;
/// every rejudged submission's stored state printed as a JSON line. The workflow is kept in the
/// database as `name`: if a rejudge of that name was interrupted, this continues it (whatever
/// `selection` says).
async fn rejudge_postgres(
    setup: &Setup,
    common: &Common,
    interface: &Arc<PostgresInterface>,
    name: &str,
    selection: &Selection,
    webhook: Option<&str>,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let submissions = Arc::new(PostgresSubmissions::new(interface.clone()));
    let store = Arc::new(PostgresWorkflowStore::new(interface));
    // The languages say which compile: the judgings' messages are rebuilt from the rows with
    // them, the same way as the judging goes on (a compiled program's `compiled` stays).
    let languages = Arc::new(load_registry(setup.languages.as_deref())?);
    let backend = PostgresBackend::new(interface.clone(), None, Some(languages));
    let stop = CancellationToken::new();
    let follower = backend.follow(stop.clone());
    let local = LocalWorker::start(setup, backend, follower, stop, common.concurrency).await?;
    let env = Env {
        judge: local.judge.clone(),
        submissions: submissions.clone(),
        results: submissions.clone(),
        store: store.clone(),
    };
    let definition = Definition::rejudge(
        &*submissions,
        selection.clone(),
        common.settings(),
        webhook.map(str::to_owned),
    )
    .await?;
    let runner = Runner::new(env, shutdown.clone());
    let (workflow, resumed) = runner.prepare(name, definition, true).await?;
    if resumed {
        tracing::info!(
            workflow = name,
            "continuing the interrupted rejudge of that name"
        );
    }
    let ran = run_with_progress(&workflow, shutdown, rejudge_progress).await;
    local.stop().await;
    if let Err(e) = store.disown(name).await {
        tracing::warn!(workflow = name, error = %e, "could not give up the workflow");
    }
    ran?;
    let summary = rejudge::summary_of(&workflow).ok_or(CommandError::ShutDown)?;
    let mut out = std::io::stdout().lock();
    let output = |source| CommandError::Output {
        what: "stdout",
        source,
    };
    for judgement in &summary.judged {
        let Some(record) = interface.record(&judgement.submission).await? else {
            continue;
        };
        let line = serde_json::json!({
            "id": record.id,
            "state": record.state,
            "score": record.score,
            "failedSubtasks": record.failed_subtasks,
        });
        writeln!(out, "{line}").map_err(output)?;
    }
    out.flush().map_err(output)?;
    Ok(report_not_judged(&summary))
}

/// Runs the (started) workflow to its end, printing `line(step)` to stderr (when it is a
/// terminal) each time a step finishes.
async fn run_with_progress(
    workflow: &Workflow,
    shutdown: CancellationToken,
    line: impl Fn(&Workflow, &str) -> Option<String> + Send + 'static,
) -> Result<(), CommandError> {
    let show = std::io::stderr().is_terminal();
    let mut events = workflow.subscribe();
    let printer = tokio::spawn({
        let workflow = workflow.clone();
        async move {
            loop {
                match events.recv().await {
                    Ok(Event::Transition { step, to, .. })
                        if show
                            && matches!(
                                to,
                                StepState::Succeeded | StepState::Failed | StepState::Running
                            ) =>
                    {
                        if let Some(text) = line(&workflow, &step) {
                            eprintln!("{text}");
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        }
    });
    let end = workflow.run(&shutdown).await;
    printer.abort();
    tracing::info!(end = %end, "workflow ended");
    if end.shut_down {
        return Err(CommandError::ShutDown);
    }
    Ok(())
}
