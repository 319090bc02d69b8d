//! The `executioner` command line: parses arguments, sets up tracing, calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use executioner::cli::{self, Setup};
use executioner::judge::JudgeConfig;
use executioner::worker::WorkerConfig;

#[derive(Parser)]
#[command(name = "executioner", version, about = "A sandboxed code judge")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "EXECUTIONER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Judge one source file and print every message as a JSON line.
    Judge {
        #[command(flatten)]
        common: Common,
        /// Problem id (a folder under --problems).
        #[arg(long)]
        problem: String,
        /// Language id or alias (see `executioner languages`).
        #[arg(long)]
        language: String,
        /// Submission id used in the messages (default: a random UUID).
        #[arg(long)]
        id: Option<String>,
        /// The program to judge.
        source: PathBuf,
    },
    /// List the supported languages: the id, then its aliases.
    Languages {
        /// Language registry file (default: the built-in registry).
        #[arg(long, env = "EXECUTIONER_LANGUAGES")]
        languages: Option<PathBuf>,
    },
    /// Take submissions from an interface and judge them until SIGINT/SIGTERM.
    Worker {
        #[command(flatten)]
        common: Common,
        /// Where submissions come from. `memory`: JSON lines on stdin, messages on stdout.
        #[arg(long, env = "EXECUTIONER_INTERFACE", value_enum, default_value_t = InterfaceKind::Memory)]
        interface: InterfaceKind,
        /// Submissions judged at once (default: the number of cores).
        #[arg(long, env = "EXECUTIONER_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Seconds submissions in flight may take to finish after a shutdown signal.
        #[arg(long, env = "EXECUTIONER_DRAIN_TIMEOUT", default_value_t = 60)]
        drain_timeout: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InterfaceKind {
    Memory,
    Postgres,
    Firestore,
}

#[derive(Args)]
struct Common {
    /// Root folder of the problems (STAOJ format).
    #[arg(long, env = "EXECUTIONER_PROBLEMS")]
    problems: PathBuf,
    /// Language registry file (default: the built-in registry).
    #[arg(long, env = "EXECUTIONER_LANGUAGES")]
    languages: Option<PathBuf>,
    /// The static demoter binary (default: next to this executable or in the cargo target dir).
    #[arg(long, env = "EXECUTIONER_DEMOTER")]
    demoter: Option<PathBuf>,
    /// Name of the cgroup every sandbox's cgroups are created under.
    #[arg(long, env = "EXECUTIONER_CGROUP_PARENT", default_value = "executioner")]
    cgroup_parent: String,
    /// Wall time limit as a multiple of the CPU time limit.
    #[arg(long, env = "EXECUTIONER_WALL_MULTIPLIER", default_value_t = 3.0)]
    wall_multiplier: f64,
}

impl Common {
    fn setup(self) -> Result<Setup, String> {
        if !(self.wall_multiplier.is_finite() && self.wall_multiplier >= 1.0) {
            return Err(format!(
                "--wall-multiplier must be at least 1, is {}",
                self.wall_multiplier
            ));
        }
        Ok(Setup {
            problems: self.problems,
            languages: self.languages,
            demoter: self.demoter,
            cgroup_parent: self.cgroup_parent,
            judge: JudgeConfig {
                wall_multiplier: self.wall_multiplier,
                ..JudgeConfig::default()
            },
        })
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Languages { languages } => cli::languages(languages.as_deref()),
        Command::Judge {
            common,
            problem,
            language,
            id,
            source,
        } => match common.setup() {
            Ok(setup) => cli::judge(&setup, &problem, &language, &source, id).await,
            Err(e) => Err(cli::CommandError::Usage(e)),
        },
        Command::Worker {
            common,
            interface,
            concurrency,
            drain_timeout,
        } => {
            let config = WorkerConfig {
                concurrency: concurrency.unwrap_or(WorkerConfig::default().concurrency),
                drain_timeout: Duration::from_secs(drain_timeout),
            };
            match (common.setup(), interface) {
                (Err(e), _) => Err(cli::CommandError::Usage(e)),
                (Ok(setup), InterfaceKind::Memory) => match cli::shutdown_signal() {
                    Ok(shutdown) => cli::memory_worker(&setup, config, shutdown).await,
                    Err(e) => Err(e),
                },
                (Ok(_), other) => Err(cli::CommandError::Usage(format!(
                    "the {} interface is not available in this build",
                    match other {
                        InterfaceKind::Postgres => "postgres",
                        _ => "firestore",
                    }
                ))),
            }
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %e, "executioner failed");
            eprintln!("executioner: {e}");
            // For `judge`, 1 is also "the last message is error": the judge could not even start.
            ExitCode::from(1)
        }
    }
}
