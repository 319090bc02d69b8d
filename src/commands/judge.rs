//! `executioner judge`: one source file judged in this process.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use executioner::protocol::{Body, Message, Submission};
use executioner::setup::{build_judge, Setup, SetupError};
use tokio_util::sync::CancellationToken;

use super::{print_message, read_sources, CommandError};

/// A human line about a message, for a terminal.
fn progress_line(message: &Message, tests: Option<usize>) -> Option<String> {
    let total = tests.map(|n| format!("/{n}")).unwrap_or_default();
    match &message.body {
        Body::Compiling => Some("compiling…".into()),
        Body::Compiled { result, .. } => Some(format!("compiled: {result:?}")),
        Body::Tested {
            test_case,
            result,
            time,
            memory,
            ..
        } => Some(format!(
            "test {test_case}{total}: {} ({} ms, {} KB)",
            result.as_str(),
            time.unwrap_or(0),
            memory.unwrap_or(0)
        )),
        Body::Done { score, .. } => Some(format!("done: score {}", score.unwrap_or(0.0))),
        Body::Error { reason } | Body::Invalid { reason } => Some(format!(
            "{}: {}",
            message.body.state(),
            reason.as_deref().unwrap_or("")
        )),
        _ => None,
    }
}

/// `executioner judge`: judges one file in this process, printing every message as a JSON
/// line. Exit status 0 for `done`, 1 for `error`, 2 for `invalid`.
pub async fn judge(
    setup: &Setup,
    problem: &str,
    language: &str,
    file: &Path,
    files: &[PathBuf],
    id: Option<String>,
) -> Result<ExitCode, CommandError> {
    let (source_code, files) = read_sources(file, files)?;
    let submission = Submission {
        id: id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        problem: problem.to_owned(),
        language: language.to_owned(),
        source_code,
        files,
        run: None,
    };
    let judge = match build_judge(setup).await {
        Ok(judge) => judge,
        // No sandbox (no Docker engine, no demoter): still the contract's sequence, ending in error.
        Err(e @ SetupError::Sandbox(_)) => {
            print_message(&Message::new(&submission.id, Body::Executing))?;
            let reason = Some(format!("the sandbox is not available: {e}"));
            print_message(&Message::new(&submission.id, Body::Error { reason }))?;
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let tests = executioner::problem::is_valid_id(problem)
        .then(|| judge.problems().get(problem).ok().map(|p| p.tests.len()))
        .flatten();
    let show_progress = std::io::stderr().is_terminal();
    let (tx, mut messages) = tokio::sync::mpsc::channel(32);
    // Nothing else claims it: the command's own `executing`, then what the judge yields.
    let executing = Message::new(&submission.id, Body::Executing);
    let printer = async move {
        let mut next = Some(executing);
        while let Some(message) = next {
            print_message(&message)?;
            if show_progress {
                if let Some(line) = progress_line(&message, tests) {
                    eprintln!("{line}");
                }
            }
            next = messages.recv().await;
        }
        Ok::<(), CommandError>(())
    };
    let never = CancellationToken::new();
    let judging = judge.judge(&submission, tx, &never);
    let (printed, ended) = tokio::join!(printer, judging);
    judge.sandbox().close_pool().await;
    printed?;
    Ok(match ended {
        Ok(Body::Done { .. }) => ExitCode::SUCCESS,
        Ok(Body::Invalid { .. }) => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}
