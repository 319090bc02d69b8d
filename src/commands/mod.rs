//! The commands of the `executioner` binary (SPEC §7): each builds what it needs from the
//! library (a judge from a [`Setup`](executioner::setup::Setup), an interface, the API) and
//! says how it went as an exit status. `main` parses the arguments and calls one of them.

mod judge;
mod languages;
mod problem;
mod run;
mod serve;
mod worker;
pub mod workflow;

use std::io::Write;
use std::path::{Path, PathBuf};

use executioner::interface::InterfaceError;
use executioner::language::RegistryError;
use executioner::protocol::{Message, SourceFile};
use executioner::setup::SetupError;
use tokio_util::sync::CancellationToken;

pub use judge::judge;
pub use languages::{languages, LanguageList};
pub use problem::problem_check;
pub use run::{run, RunCommand};
pub use serve::{serve, ServeConfig};
pub use worker::{firestore_worker, http_worker, memory_worker, metrics_exporter, postgres_worker};

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("the interface failed: {0}")]
    Interface(#[from] InterfaceError),
    #[error(transparent)]
    Workflow(Box<workflow::CommandError>),
}

impl From<workflow::CommandError> for CommandError {
    fn from(e: workflow::CommandError) -> Self {
        CommandError::Workflow(Box::new(e))
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

/// A TCP listener on `listen` (`host:port`; port 0: any free one).
pub async fn bind(listen: &str) -> Result<tokio::net::TcpListener, CommandError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| CommandError::Io {
            path: PathBuf::from(listen),
            source,
        })
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
