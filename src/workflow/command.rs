//! `executioner workflow ...`: problem validation and rejudge from the command line, with the
//! real judge. Reports go to stdout, progress to stderr when it is a terminal.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::control::Selector;
use super::engine::{Event, Workflow};
use super::rejudge::{self, RejudgeError, Selection};
use super::state::StepState;
use super::step::RetryPolicy;
use super::store::MemoryResultStore;
use super::validate::{self, ValidateError};
use super::webhook::{Webhook, WebhookError};
use crate::cli::{self, Setup};
use crate::problem::ProblemError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Setup(#[from] cli::CommandError),
    #[error(transparent)]
    Problem(#[from] ProblemError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error(transparent)]
    Rejudge(#[from] RejudgeError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("{what}: {source}")]
    Output {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the workflow was shut down before it finished")]
    ShutDown,
}

impl From<CommandError> for cli::CommandError {
    fn from(e: CommandError) -> Self {
        cli::CommandError::Workflow(Box::new(e))
    }
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
}

/// `executioner workflow validate`: exit 0 only when every solution got its expected outcome.
pub async fn validate(
    setup: &Setup,
    common: &Common,
    problem: &str,
    solutions_dir: &std::path::Path,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    if !crate::problem::is_valid_id(problem) {
        return Err(cli::CommandError::Usage(format!(
            "{problem:?} is not a problem id: ids are [a-z0-9-]+"
        ))
        .into());
    }
    let registry =
        cli::load_registry(setup.languages.as_deref()).map_err(cli::CommandError::from)?;
    let solutions = validate::discover(solutions_dir, &registry)?;
    let limits = crate::problem::load(&setup.problems, problem)?;
    let judge = cli::build_judge(setup).await?;
    let options = validate::Options {
        retry: common.retry(),
        max_running: common.concurrency,
        ..validate::Options::default()
    };
    let workflow = validate::workflow(problem, limits.time_ms, &solutions, judge, &options)?;
    run_with_progress(&workflow, shutdown, |wf, step| {
        let status = wf.status(&Selector::id(step), &[]).into_iter().next()?;
        let name = status.tags.get("solution")?;
        Some(format!("{name}: {}", status.state))
    })
    .await?;
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

/// `executioner workflow rejudge`: submissions from a JSON-lines file; every rejudged
/// submission's new messages printed as JSON lines. Exit 0 when every submission was judged.
pub async fn rejudge(
    setup: &Setup,
    common: &Common,
    submissions: &std::path::Path,
    selection: &Selection,
    webhook: Option<&str>,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    let chosen = rejudge::select(rejudge::read_submissions(submissions)?, selection)?;
    let webhook = webhook.map(Webhook::parse).transpose()?;
    let judge = cli::build_judge(setup).await?;
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
    let workflow = rejudge::workflow(&name, &chosen, judge, results.clone(), &options)?;
    run_with_progress(&workflow, shutdown, |wf, step| {
        let status = wf.status(&Selector::id(step), &[]).into_iter().next()?;
        status.tags.get("submission")?;
        Some(rejudge::Progress::of(wf).to_string())
    })
    .await?;
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
    for (id, state, error) in &summary.not_judged {
        eprintln!(
            "not judged: {id} ({state}): {}",
            error.as_deref().unwrap_or("")
        );
    }
    Ok(if summary.not_judged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Starts every step and runs the workflow to its end, printing `line(step)` to stderr (when
/// it is a terminal) each time a step finishes.
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
    workflow
        .start(&Selector::all(), false)
        .map_err(|_| CommandError::ShutDown)?;
    let end = workflow.run(&shutdown).await;
    printer.abort();
    tracing::info!(end = %end, "workflow ended");
    if end.shut_down {
        return Err(CommandError::ShutDown);
    }
    Ok(())
}
