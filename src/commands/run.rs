//! `executioner run`: one program run once on this command's stdin.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use executioner::protocol::{Body, Message, Submission};
use executioner::setup::{build_judge, Setup};
use tokio_util::sync::CancellationToken;

use super::{read_file, read_sources, CommandError};

/// What `executioner run` is asked to do.
#[derive(Debug, Clone)]
pub struct RunCommand {
    pub language: String,
    pub source: PathBuf,
    pub files: Vec<PathBuf>,
    /// A file holding the output the program should write.
    pub expected: Option<PathBuf>,
    pub time_limit_ms: u64,
    pub memory_limit_kb: u64,
    /// Print the run's report as JSON instead of the program's output.
    pub json: bool,
}

/// Most of this command's stdin given to the program.
const RUN_STDIN_BYTES: u64 = 64 << 20;

/// `executioner run`: runs one program once on this command's stdin, in this process's judge
/// (the same sandbox and judging as a submission), then writes what the program wrote to stdout
/// and stderr (at most 64 KiB of each) and a summary line to stderr; or, with `--json`, the
/// run's report. Exit status 0 when the run is accepted, 1 when the judge failed, 2 for an
/// invalid run, 3 for a compile error, 4 when the program failed (non-zero exit, a signal, a
/// limit, or an output other than the expected one).
pub async fn run(setup: &Setup, command: RunCommand) -> Result<ExitCode, CommandError> {
    use tokio::io::AsyncReadExt;
    let (source_code, files) = read_sources(&command.source, &command.files)?;
    let mut stdin = Vec::new();
    tokio::io::stdin()
        .take(RUN_STDIN_BYTES)
        .read_to_end(&mut stdin)
        .await
        .map_err(|source| CommandError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    let text = |bytes: Vec<u8>, what: &str| {
        String::from_utf8(bytes)
            .ok()
            .filter(|t| !t.contains('\0'))
            .ok_or_else(|| CommandError::Usage(format!("{what} must be UTF-8 text without NUL")))
    };
    let stdin = text(stdin, "the input")?;
    let expected_output = match &command.expected {
        Some(path) => Some(text(read_file(path)?, "the expected output")?),
        None => None,
    };
    let submission = Submission {
        id: uuid::Uuid::new_v4().to_string(),
        problem: executioner::protocol::RUN_PROBLEM.to_owned(),
        language: command.language,
        source_code,
        files,
        run: Some(Box::new(executioner::protocol::RunSpec {
            stdin,
            expected_output,
            time_limit_ms: command.time_limit_ms,
            memory_limit_kb: command.memory_limit_kb,
            args: Vec::new(),
            compile_args: Vec::new(),
            wall_limit_ms: None,
            stderr_to_stdout: false,
            number_of_runs: None,
        })),
    };
    let judge = build_judge(setup).await?;
    let show_progress = std::io::stderr().is_terminal();
    let (tx, mut rx) = tokio::sync::mpsc::channel(32);
    let collect = async move {
        let mut messages = Vec::new();
        while let Some(message) = rx.recv().await {
            if show_progress {
                match &message {
                    Message {
                        body: Body::Compiling,
                        ..
                    } => eprintln!("compiling..."),
                    Message {
                        body: Body::Testing { .. },
                        ..
                    } => eprintln!("running..."),
                    _ => {}
                }
            }
            messages.push(message);
        }
        messages
    };
    let never = CancellationToken::new();
    let (messages, _) = tokio::join!(collect, judge.judge(&submission, tx, &never));
    let report = executioner::run::RunReport::of(&messages);
    let mut out = std::io::stdout().lock();
    let written = if command.json {
        let json = serde_json::to_string(&report).unwrap_or_default();
        writeln!(out, "{json}")
    } else {
        if let Some(compile_output) = &report.compile_output {
            eprintln!("{compile_output}");
        }
        let (stdout, stderr) = report
            .output
            .as_ref()
            .map(|o| (o.stdout.bytes(), o.stderr.bytes()))
            .unwrap_or_default();
        let _ = std::io::stderr().write_all(&stderr);
        eprintln!("{}", run_summary(&report));
        out.write_all(&stdout)
    };
    written
        .and_then(|_| out.flush())
        .map_err(|source| CommandError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })?;
    Ok(ExitCode::from(match (report.end, report.verdict) {
        (Some("invalid"), _) => 2,
        (Some("done"), _) if report.compile_error => 3,
        (Some("done"), Some(executioner::verdict::Verdict::Accepted)) => 0,
        (Some("done"), _) => 4,
        _ => 1,
    }))
}

/// One line saying how a run went, e.g. `executioner: accepted, exit 0, 12 ms CPU, 15 ms wall, 3072 KB`.
fn run_summary(report: &executioner::run::RunReport) -> String {
    let mut parts = Vec::new();
    match (report.end, report.verdict) {
        (Some("done"), _) if report.compile_error => parts.push("compile error".to_owned()),
        (Some("done"), Some(verdict)) => parts.push(verdict.as_str().to_owned()),
        (end, _) => parts.push(format!(
            "{}: {}",
            end.unwrap_or("error"),
            report.reason.as_deref().unwrap_or("no result")
        )),
    }
    if let Some(output) = &report.output {
        match (output.exit_code, output.exit_signal) {
            (Some(code), _) => parts.push(format!("exit {code}")),
            (None, Some(signal)) => parts.push(format!("signal {signal}")),
            _ => {}
        }
        if let Some(limit) = &output.limit {
            parts.push(format!("{limit} limit"));
        }
        if let Some(time) = report.time {
            parts.push(format!("{time} ms CPU"));
        }
        parts.push(format!("{} ms wall", output.wall_time));
        if let Some(memory) = report.memory {
            parts.push(format!("{memory} KB"));
        }
        if output.stdout.truncated {
            parts.push(format!(
                "stdout cut at {} of {} bytes",
                output.stdout.bytes().len(),
                output.stdout.bytes
            ));
        }
    }
    format!("executioner: {}", parts.join(", "))
}
