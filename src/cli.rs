//! The commands of the `executioner` binary (SPEC §7), callable from `main` and tests.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::interface::{
    FirestoreConfig, FirestoreInterface, HttpConfig, HttpInterface, Interface, InterfaceError,
    MemoryInterface, PostgresConfig, PostgresInterface,
};
use crate::judge::{Judge, JudgeConfig};
use crate::language::{Registry, RegistryError};
use crate::problem::ProblemStore;
use crate::protocol::{Body, Message, SourceFile, Submission};
use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::worker::{Worker, WorkerConfig};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("the interface failed: {0}")]
    Interface(#[from] crate::interface::InterfaceError),
    #[error(transparent)]
    Workflow(Box<crate::workflow::command::CommandError>),
}

/// Settings every judging command shares.
#[derive(Debug, Clone)]
pub struct Setup {
    pub problems: PathBuf,
    /// Language registry file; `None` = the built-in registry.
    pub languages: Option<PathBuf>,
    /// The static demoter; `None` = found next to the executable (see [`find_demoter`]).
    pub demoter: Option<PathBuf>,
    pub cgroup_parent: String,
    pub judge: JudgeConfig,
    /// The warm pool of sandbox containers (off by default; see [`WarmPool`]).
    pub pool: WarmPool,
}

/// The warm pool of a worker (`--warm-pool`, `--warm-languages`): containers started ahead of
/// time for the images of some languages, so a submission does not wait for its container.
#[derive(Debug, Clone, Default)]
pub struct WarmPool {
    /// Containers kept ready per image; 0 (the default): no pool.
    pub size: usize,
    /// Language ids (or aliases) whose images are kept warm; empty: those of the first
    /// [`WARM_DEFAULT_LANGUAGES`] languages of the registry (the built-in one lists C, C++
    /// and Python first).
    pub languages: Vec<String>,
}

/// How many of the registry's first languages the warm pool keeps warm when none are named.
pub const WARM_DEFAULT_LANGUAGES: usize = 3;

impl WarmPool {
    /// The images to keep warm, in order, each once; an error names a language the registry
    /// does not know.
    pub fn images(&self, registry: &Registry) -> Result<Vec<String>, CommandError> {
        let mut images: Vec<String> = Vec::new();
        let chosen: Vec<String> = if self.languages.is_empty() {
            registry
                .iter()
                .take(WARM_DEFAULT_LANGUAGES)
                .map(|lang| lang.image.clone())
                .collect()
        } else {
            let mut chosen = Vec::new();
            for name in &self.languages {
                let lang = registry.resolve(name).ok_or_else(|| {
                    CommandError::Usage(format!(
                        "--warm-languages: {name:?} is not a language (see `executioner languages`)"
                    ))
                })?;
                chosen.push(lang.image.clone());
            }
            chosen
        };
        for image in chosen {
            if !images.contains(&image) {
                images.push(image);
            }
        }
        Ok(images)
    }
}

pub fn load_registry(path: Option<&Path>) -> Result<Registry, RegistryError> {
    match path {
        Some(path) => Registry::load(path),
        None => Registry::builtin(),
    }
}

/// The demoter binary: next to this executable, or where `scripts/build-demoter` puts it in a
/// cargo target directory (`target/x86_64-unknown-linux-gnu/release/demoter`).
pub fn find_demoter() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [
        dir.join("demoter"),
        dir.join("../x86_64-unknown-linux-gnu/release/demoter"),
        dir.join("../../x86_64-unknown-linux-gnu/release/demoter"),
    ];
    candidates.into_iter().find(|p| p.is_file())
}

/// Connects to Docker and builds a judge from `setup`.
pub async fn build_judge(setup: &Setup) -> Result<Arc<Judge>, CommandError> {
    let registry = load_registry(setup.languages.as_deref())?;
    let demoter = setup.demoter.clone().or_else(find_demoter).ok_or_else(|| {
        CommandError::Usage(
            "no demoter binary found: build it with scripts/build-demoter and pass --demoter or set EXECUTIONER_DEMOTER".into(),
        )
    })?;
    let mut config = SandboxConfig::new(demoter);
    config.cgroup_parent = setup.cgroup_parent.clone();
    if setup.pool.size > 0 {
        config.warm_pool = setup.pool.size;
        config.warm_images = setup.pool.images(&registry)?;
    }
    let sandbox = Sandbox::connect(config).await?;
    Ok(Arc::new(Judge::new(
        Arc::new(ProblemStore::with_defaults(
            &setup.problems,
            setup.judge.problem_defaults,
        )),
        Arc::new(registry),
        sandbox,
        setup.judge.clone(),
    )))
}

/// `executioner problem check`: what the judge understood of a problem, with its checker
/// compiled; exit 1 with the reason when the problem cannot be judged.
pub async fn problem_check(setup: &Setup, id: &str) -> Result<ExitCode, CommandError> {
    if !crate::problem::is_valid_id(id) {
        return Err(CommandError::Usage(format!(
            "{id:?} is not a problem id: ids are [a-z0-9-]+"
        )));
    }
    let defaults = &setup.judge.problem_defaults;
    let problem = match crate::problem::load_with(&setup.problems, id, defaults) {
        Ok(problem) => problem,
        Err(e) => {
            eprintln!("executioner: problem {id} is broken: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let mut out = std::io::stdout().lock();
    for line in crate::problem::describe(&problem) {
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    drop(out);
    let line = if problem.checker == crate::problem::Checker::Default {
        "checker: compiled: nothing to compile".to_owned()
    } else {
        let judge = build_judge(setup).await?;
        match judge.build_checker(&problem).await {
            Ok(Some(built)) => format!(
                "checker: compiled: {} ({})",
                built.dir.display(),
                if built.compiled {
                    "compiled now"
                } else {
                    "from the cache"
                }
            ),
            Ok(None) => "checker: compiled: nothing to compile".to_owned(),
            Err(e) => {
                eprintln!("executioner: problem {id} is broken: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    };
    writeln!(std::io::stdout().lock(), "{line}").map_err(stdout_error)?;
    if let crate::problem::Interaction::Interactor(_) = &problem.interaction {
        let judge = build_judge(setup).await?;
        match judge.build_interactor(&problem).await {
            Ok(Some(built)) => writeln!(
                std::io::stdout().lock(),
                "interactor: compiled: {} ({})",
                built.dir.display(),
                if built.compiled {
                    "compiled now"
                } else {
                    "from the cache"
                }
            )
            .map_err(stdout_error)?,
            Ok(None) => {}
            Err(e) => {
                eprintln!("executioner: problem {id} is broken: the interactor: {e}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How `executioner languages` lists the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanguageList {
    /// SPEC §7: one line per language, the id then its aliases.
    Names,
    /// An aligned table with a header: id, aliases, extensions, compiled, image, time factor,
    /// name.
    Long,
    /// One JSON object per line: `id`, `name`, `aliases`, `extensions`, `compiled`, `image`,
    /// `timeFactor`.
    Json,
}

/// `executioner languages`: the registry, in registry order (which also decides which language
/// a file extension maps to when several claim it: the first).
pub fn languages(path: Option<&Path>, format: LanguageList) -> Result<ExitCode, CommandError> {
    let registry = load_registry(path)?;
    let lines: Vec<String> = match format {
        LanguageList::Names => registry
            .iter()
            .map(|lang| {
                std::iter::once(lang.id.as_str())
                    .chain(lang.aliases.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect(),
        LanguageList::Json => registry
            .iter()
            .map(|lang| {
                serde_json::json!({
                    "id": lang.id,
                    "name": lang.name,
                    "aliases": lang.aliases,
                    "extensions": lang.extensions,
                    "compiled": lang.is_compiled(),
                    "image": lang.image,
                    "timeFactor": lang.time_factor,
                })
                .to_string()
            })
            .collect(),
        LanguageList::Long => {
            let rows: Vec<[String; 7]> = std::iter::once(
                [
                    "ID",
                    "ALIASES",
                    "EXTENSIONS",
                    "COMPILED",
                    "IMAGE",
                    "TIME",
                    "NAME",
                ]
                .map(String::from),
            )
            .chain(registry.iter().map(|lang| {
                [
                    lang.id.clone(),
                    or_dash(lang.aliases.join(",")),
                    or_dash(lang.extensions.join(",")),
                    if lang.is_compiled() { "yes" } else { "no" }.to_owned(),
                    lang.image.clone(),
                    format!("{}x", lang.time_factor),
                    lang.name.clone(),
                ]
            }))
            .collect();
            let mut widths = [0; 7];
            for row in &rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            rows.iter()
                .map(|row| {
                    let cells: Vec<String> = row
                        .iter()
                        .zip(widths)
                        .map(|(cell, width)| format!("{cell:width$}"))
                        .collect();
                    cells.join("  ").trim_end().to_owned()
                })
                .collect()
        }
    };
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}").map_err(stdout_error)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A table cell that is never empty, so that the columns split on white space.
fn or_dash(cell: String) -> String {
    if cell.is_empty() {
        "-".to_owned()
    } else {
        cell
    }
}

fn stdout_error(source: std::io::Error) -> CommandError {
    CommandError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

fn print_message(message: &Message) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    let line = serde_json::to_string(message).map_err(|e| CommandError::Usage(e.to_string()))?;
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(stdout_error)
}

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

fn read_file(path: &Path) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|source| CommandError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The source `file` and the further `files` of a submission, each named by its base name (the
/// judge checks the name: a path that has none, such as `..`, gives an empty name and so
/// `invalid`). Text that is not UTF-8 is judged as the compiler would see it after lossy
/// decoding.
fn read_sources(file: &Path, files: &[PathBuf]) -> Result<(String, Vec<SourceFile>), CommandError> {
    let source = String::from_utf8_lossy(&read_file(file)?).into_owned();
    let mut further = Vec::with_capacity(files.len());
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        further.push(SourceFile {
            name,
            content: String::from_utf8_lossy(&read_file(path)?).into_owned(),
        });
    }
    Ok((source, further))
}

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
        problem: crate::protocol::RUN_PROBLEM.to_owned(),
        language: command.language,
        source_code,
        files,
        run: Some(Box::new(crate::protocol::RunSpec {
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
    let report = crate::run::RunReport::of(&messages);
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
        (Some("done"), Some(crate::verdict::Verdict::Accepted)) => 0,
        (Some("done"), _) => 4,
        _ => 1,
    }))
}

/// One line saying how a run went, e.g. `executioner: accepted, exit 0, 12 ms CPU, 15 ms wall, 3072 KB`.
fn run_summary(report: &crate::run::RunReport) -> String {
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
        Err(e @ CommandError::Sandbox(_)) => {
            print_message(&Message::new(&submission.id, Body::Executing))?;
            let reason = Some(format!("the sandbox is not available: {e}"));
            print_message(&Message::new(&submission.id, Body::Error { reason }))?;
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e),
    };
    let tests = crate::problem::is_valid_id(problem)
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

/// Removes the sandboxes of workers on this host that died without cleaning up.
pub async fn remove_leftover_sandboxes(judge: &Judge) {
    match judge.sandbox().remove_leftovers().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed sandboxes left by a previous worker"),
        Err(e) => warn!(error = %e, "could not look for leftover sandboxes"),
    }
}

/// First and longest pause between attempts to reach the Docker engine at a worker's start.
const DOCKER_RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// The judge of a worker command: while the Docker engine cannot be reached (not started yet,
/// restarting) it says so and tries again with a growing pause, until `shutdown` fires
/// (`Ok(None)`); any other failure (no demoter, no cgroups, a broken registry) is returned at
/// once. Sandboxes dead workers on this host left are removed first.
pub async fn worker_judge(
    setup: &Setup,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<Judge>>, CommandError> {
    let mut pause = DOCKER_RETRY.0;
    loop {
        match build_judge(setup).await {
            Ok(judge) => {
                remove_leftover_sandboxes(&judge).await;
                judge.sandbox().prewarm();
                return Ok(Some(judge));
            }
            Err(CommandError::Sandbox(e @ SandboxError::Docker { .. })) => {
                warn!(error = %e, retry_in = ?pause, "the Docker engine is not reachable; the worker waits for it");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return Ok(None),
                }
                pause = (pause * 2).min(DOCKER_RETRY.1);
            }
            Err(e) => return Err(e),
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

/// A TCP listener on `listen` (`host:port`; port 0: any free one).
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener, CommandError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CommandError::Io {
            path: PathBuf::from(listen),
            source,
        })
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
            if let Err(e) = crate::metrics::serve(listener, stop).await {
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

/// A token cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_signal() -> Result<CancellationToken, CommandError> {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let io = |source| CommandError::Io {
        path: PathBuf::from("<signals>"),
        source,
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutdown requested");
        cancel.cancel();
    });
    Ok(token)
}

/// Settings of `executioner serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0: any free port; the log says which).
    pub listen: String,
    /// Where the Judge0-compatible API is also served at the root, if anywhere.
    pub judge0_listen: Option<String>,
    /// The local worker; concurrency 0: none, only remote workers judge.
    pub worker: WorkerConfig,
    /// The API's limits and timings (its problems and languages are filled in from the setup).
    pub api: crate::api::ApiConfig,
    /// Keep submissions in this Postgres store instead of in memory.
    pub database: Option<PostgresConfig>,
}

/// `executioner serve`: the HTTP operations API on `config.listen` until `shutdown` fires, with
/// a local worker judging what it accepts (unless its concurrency is 0) beside any remote
/// workers, and rejudges and validations run in this process. Submissions are kept in memory,
/// or in the Postgres store of `config.database` (shared with any `executioner worker
/// --interface postgres`; workflows a restart interrupted are continued).
pub async fn serve(
    setup: &Setup,
    config: ServeConfig,
    shutdown: CancellationToken,
) -> Result<ExitCode, CommandError> {
    use crate::api::backend::{memory::MemoryBackend, postgres::PostgresBackend, Backend};
    let ServeConfig {
        listen,
        judge0_listen,
        worker,
        api,
        database,
    } = config;
    let listen = listen.as_str();
    let judge = build_judge(setup).await?;
    remove_leftover_sandboxes(&judge).await;
    let listener = bind(listen).await?;
    let judge0_listener = match &judge0_listen {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    // Their own caches: the judge's are not shared, and reading a problem twice is cheap.
    let problems = Arc::new(ProblemStore::new(&setup.problems));
    let languages = Arc::new(load_registry(setup.languages.as_deref())?);
    let api_config = crate::api::ApiConfig {
        problems: Some(problems.clone()),
        languages: Some(languages.clone()),
        ..api
    };
    let (backend, follower, postgres): (Arc<dyn Backend>, _, _) = match database {
        None => {
            let backend = MemoryBackend::new(Arc::new(MemoryInterface::new()));
            let follower = backend.follow(shutdown.clone());
            (backend as Arc<dyn Backend>, follower, None)
        }
        Some(database) => {
            let interface = Arc::new(PostgresInterface::connect(database).await?);
            let backend = PostgresBackend::new(interface.clone(), Some(problems), Some(languages));
            let follower = backend.follow(shutdown.clone());
            (backend as Arc<dyn Backend>, follower, Some(interface))
        }
    };
    let stores = backend.clone().workflow_stores();
    let runner = crate::workflow::Runner::new(
        crate::workflow::Env {
            judge: judge.clone(),
            submissions: stores.submissions,
            results: stores.results,
            store: stores.workflows,
        },
        shutdown.clone(),
    );
    match runner.resume_all().await {
        Ok(names) if !names.is_empty() => tracing::info!(?names, "workflows continued"),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "could not look for workflows to continue"),
    }
    let mut state = crate::api::AppState::new(backend, api_config, shutdown.clone())
        .with_workflows(runner.clone());
    if worker.concurrency > 0 {
        state = state.with_local_worker(worker.concurrency);
    }
    let sweeper = state.start();
    let sandbox = judge.sandbox().clone();
    let local =
        (worker.concurrency > 0).then(|| Worker::new(state.worker_interface(), judge, worker));
    if local.is_none() {
        tracing::info!("no local worker: only remote workers judge");
    }
    tracing::info!(listen = %listener.local_addr().map_or_else(|_| listen.to_owned(), |a| a.to_string()), "serving the HTTP API");
    if listener
        .local_addr()
        .is_ok_and(|addr| !addr.ip().is_loopback())
    {
        if state.config().worker_token.is_none() {
            warn!("the API is reachable beyond this machine and has no --worker-token: any client can act as a worker and report verdicts");
        }
        if state.config().client_token.is_none() {
            warn!("the API is reachable beyond this machine and has no --client-token: any client can submit, cancel and rejudge");
        }
    }
    let judge0 = judge0_listener.map(|listener| {
        let address = listener.local_addr().map_or_else(
            |_| judge0_listen.clone().unwrap_or_default(),
            |a| a.to_string(),
        );
        tracing::info!(listen = %address, "serving the Judge0-compatible API");
        crate::api::serve_judge0(listener, state.clone(), shutdown.clone())
    });
    sandbox.prewarm();
    let judging = async {
        if let Some(local) = local {
            local.run(shutdown.clone()).await;
        }
    };
    let judge0_served = async {
        match judge0 {
            Some(served) => served.await,
            None => Ok(()),
        }
    };
    let (served, (), judge0_served) = tokio::join!(
        crate::api::serve(listener, state, shutdown.clone()),
        judging,
        judge0_served
    );
    if let Err(e) = judge0_served {
        warn!(error = %e, "the Judge0-compatible API's listener failed");
    }
    runner.wait().await;
    sandbox.close_pool().await;
    let _ = tokio::join!(follower, sweeper);
    if let Some(interface) = postgres {
        interface.close().await;
    }
    served.map_err(|source| CommandError::Io {
        path: PathBuf::from(listen),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}
