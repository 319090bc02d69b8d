//! The `executioner` command line: parses arguments, sets up tracing, calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use executioner::judge::JudgeConfig;
use executioner::setup::{Setup, WarmPool};
use executioner::token::Token;
use executioner::worker::WorkerConfig;

mod commands;

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
        /// A further source file of a multi-file submission (repeatable), named by its base name
        /// in the build directory.
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
    },
    /// Run one program once on this command's stdin (the "run on my own input" button): its
    /// output goes to stdout and stderr, a summary to stderr. Exit status 0 accepted, 1 judge
    /// failure, 2 invalid, 3 compile error, 4 the program failed (non-zero exit, signal,
    /// limit, or not the expected output).
    Run {
        #[command(flatten)]
        common: Common,
        /// Language id or alias (see `executioner languages`).
        #[arg(long)]
        language: String,
        /// The program to run.
        source: PathBuf,
        /// A further source file (repeatable), named by its base name in the build directory.
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// A file with the output the program should write: the verdict then says whether it
        /// did (compared token by token, as a problem's default checker does).
        #[arg(long, value_name = "PATH")]
        expected: Option<PathBuf>,
        /// CPU seconds the program may use (the language's time factor applies).
        #[arg(long, default_value_t = 2.0, value_parser = run_seconds)]
        time_limit: f64,
        /// Memory, KB, the program may use.
        #[arg(long, default_value_t = 262144, value_parser = clap::value_parser!(u64).range(1024..=4194304))]
        memory_limit: u64,
        /// Print the run's report (verdict, output, exit, times) as one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// List the supported languages: the id, then its aliases.
    Languages {
        /// Language registry file (default: the built-in registry).
        #[arg(long, env = "EXECUTIONER_LANGUAGES")]
        languages: Option<PathBuf>,
        /// A table for people: id, aliases, file extensions, compiled or not, image, name.
        #[arg(long, conflicts_with = "json")]
        long: bool,
        /// One JSON object per language, for programs.
        #[arg(long)]
        json: bool,
    },
    /// Take submissions from an interface and judge them until SIGINT/SIGTERM: a store
    /// (memory, postgres, firestore) or a remote `executioner serve` (http).
    Worker {
        #[command(flatten)]
        common: Common,
        /// Where submissions come from.
        #[arg(long, env = "EXECUTIONER_INTERFACE", value_enum, default_value_t = InterfaceKind::Memory)]
        interface: InterfaceKind,
        /// Submissions judged at once (default: the number of cores); told to the service with
        /// `--interface http`.
        #[arg(long, env = "EXECUTIONER_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Seconds submissions in flight may take to finish after a shutdown signal.
        #[arg(long, env = "EXECUTIONER_DRAIN_TIMEOUT", default_value_t = 60)]
        drain_timeout: u64,
        /// Serve Prometheus metrics at http://ADDR/metrics while judging, e.g.
        /// 127.0.0.1:9464 (port 0: any free port; the log says which). Default: no exporter.
        #[arg(long, env = "EXECUTIONER_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        firestore: FirestoreArgs,
        #[command(flatten)]
        http: HttpArgs,
        #[command(flatten)]
        warm: WarmPoolArgs,
    },
    /// Serve the HTTP operations API, judging accepted submissions with local workers; the
    /// submissions are kept in memory, or in the Postgres store with --database-url.
    Serve {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        postgres: PostgresArgs,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long, env = "EXECUTIONER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Also serve the Judge0-compatible API (also under /judge0/ of the main API) at the
        /// root of this address, e.g. 127.0.0.1:2358, so a client configured for a Judge0 root
        /// URL works unchanged (port 0: any free port; the log says which).
        #[arg(long, env = "EXECUTIONER_JUDGE0_LISTEN")]
        judge0_listen: Option<String>,
        /// Submissions judged at once by the local worker (default: the number of cores); 0: no
        /// local worker, submissions are judged by remote ones (`worker --interface http`) only
        /// (rejudges and validations still run here).
        #[arg(long, env = "EXECUTIONER_CONCURRENCY")]
        concurrency: Option<usize>,
        /// Requests a second one client (IP address, IPv6 /64) may make on average; over it
        /// the API answers 429 with Retry-After. Registered workers' own calls are not
        /// counted. Default: no limit.
        #[arg(long, env = "EXECUTIONER_RATE_LIMIT", value_parser = positive_rate)]
        rate_limit: Option<f64>,
        /// Requests a quiet client may make at once (default: the rate, rounded up).
        #[arg(long, env = "EXECUTIONER_RATE_BURST", requires = "rate_limit")]
        rate_burst: Option<std::num::NonZeroU32>,
        /// A host (any port) or host:port a rejudge's webhook or a submission's callback may be
        /// sent to; repeat or separate with commas. Without one, rejudges asking for a webhook
        /// are refused (403), submissions asking for a callback too (400).
        #[arg(long, env = "EXECUTIONER_WEBHOOK_ALLOW", value_delimiter = ',')]
        webhook_allow: Vec<String>,
        /// The key submissions' callbacks (`callbackUrl`, to a --webhook-allow host) are
        /// signed with (HMAC-SHA256, header Executioner-Signature); without one, submissions
        /// asking for a callback are refused (400).
        #[arg(long, env = "EXECUTIONER_CALLBACK_SECRET", hide_env_values = true)]
        callback_secret: Option<String>,
        /// A secret remote workers must send (`worker --worker-token`) to register, take
        /// submissions and report; without one any client that reaches the API can act as a
        /// worker, so set it whenever the API is reachable beyond this machine.
        #[arg(long, env = "EXECUTIONER_WORKER_TOKEN", hide_env_values = true)]
        worker_token: Option<String>,
        /// A secret every other call must send (submitting, polling, cancelling, rejudging,
        /// listing workers); only the OpenAPI document is open without it.
        #[arg(long, env = "EXECUTIONER_CLIENT_TOKEN", hide_env_values = true)]
        client_token: Option<String>,
        /// Seconds between the heartbeats remote workers must send; one that misses 3 is
        /// unresponsive and its submissions are queued again (default: 10).
        #[arg(long, env = "EXECUTIONER_HEARTBEAT_SECONDS")]
        heartbeat_seconds: Option<u64>,
        /// Most CPU seconds an ad-hoc run (`POST /v1.0/runs`) may ask for; one that does not ask
        /// gets 2 s, or this when lower.
        #[arg(long, env = "EXECUTIONER_RUN_MAX_TIME", default_value_t = 10.0, value_parser = run_seconds)]
        run_max_time: f64,
        /// Most memory, KB, an ad-hoc run may ask for; one that does not ask gets 262144
        /// (256 MiB), or this when lower.
        #[arg(long, env = "EXECUTIONER_RUN_MAX_MEMORY", default_value_t = 524288, value_parser = clap::value_parser!(u64).range(1024..=4194304))]
        run_max_memory: u64,
        /// Seconds after which a submission or run that does not give its own
        /// `deadlineSeconds` ends, unfinished, as `timeout`. Default: no deadline.
        #[arg(long, env = "EXECUTIONER_DEADLINE_SECONDS", value_parser = clap::value_parser!(u64).range(1..=604800))]
        deadline_seconds: Option<u64>,
        #[command(flatten)]
        warm: WarmPoolArgs,
    },
    /// Long jobs made of steps: problem validation, rejudge.
    Workflow {
        #[command(subcommand)]
        command: WorkflowCommand,
    },
    /// Problem setters' tools.
    Problem {
        #[command(subcommand)]
        command: ProblemCommand,
    },
}

#[derive(Subcommand)]
enum ProblemCommand {
    /// Load a problem (STAOJ, ICPC or Polygon) and print what the judge understood: format,
    /// limits, tests per group, scoring, checker (compiled now if needed); exit 1 with the
    /// reason when it is broken.
    Check {
        #[command(flatten)]
        common: Common,
        /// Problem id (a folder under --problems).
        #[arg(long)]
        problem: String,
    },
}

#[derive(Subcommand)]
enum WorkflowCommand {
    /// Judge a problem's solutions, each filed under the outcome it must get
    /// (DIR/accepted, wrong_answer, time_limit_exceeded, run_time_error, partially_accepted,
    /// rejected, brute_force); exit 0 only when every one got it.
    Validate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        workflow: WorkflowArgs,
        /// Problem id (a folder under --problems).
        #[arg(long)]
        problem: String,
        /// Folder of the solutions, one sub-folder per expected outcome (default: the
        /// package's own `submissions/`).
        #[arg(long)]
        solutions: Option<PathBuf>,
    },
    /// Judge submissions again (all of a problem, or the ids given), printing their new
    /// messages as JSON lines.
    Rejudge {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        workflow: WorkflowArgs,
        /// JSON-lines file of submissions (the memory interface's store); new messages are
        /// printed as JSON lines. Without it, --database-url.
        #[arg(long, required_unless_present = "database_url")]
        submissions: Option<PathBuf>,
        /// Rejudge the submissions of this Postgres store instead: their new results replace
        /// the stored ones, and the workflow's state is kept there, so the same command run
        /// again after an interruption continues it.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Name of the rejudge in the database (default: rejudge-<problem>, or from the ids).
        #[arg(long, requires = "database_url")]
        name: Option<String>,
        /// Rejudge every submission of this problem.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        problem: Option<String>,
        /// Rejudge the submission with this id (repeatable).
        #[arg(long)]
        id: Vec<String>,
        /// http:// URL told the summary when the rejudge is over.
        #[arg(long, env = "EXECUTIONER_WEBHOOK")]
        webhook: Option<String>,
    },
}

#[derive(Args)]
struct WorkflowArgs {
    /// Attempts per judging when the infrastructure fails (backoff 1 s, doubling).
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Judgings at once (default: the number of cores).
    #[arg(long, env = "EXECUTIONER_CONCURRENCY")]
    concurrency: Option<usize>,
}

impl WorkflowArgs {
    fn common(&self) -> commands::workflow::Common {
        commands::workflow::Common {
            attempts: self.attempts.max(1),
            concurrency: self
                .concurrency
                .unwrap_or(WorkerConfig::default().concurrency)
                .max(1),
        }
    }
}

async fn workflow(command: WorkflowCommand) -> Result<ExitCode, commands::CommandError> {
    use executioner::workflow::rejudge::Selection;
    let shutdown = commands::shutdown_signal()?;
    match command {
        WorkflowCommand::Validate {
            common,
            workflow,
            problem,
            solutions,
        } => {
            let setup = common.setup().map_err(commands::CommandError::Usage)?;
            let solutions =
                solutions.unwrap_or_else(|| setup.problems.join(&problem).join("submissions"));
            Ok(commands::workflow::validate(
                &setup,
                &workflow.common(),
                &problem,
                &solutions,
                shutdown,
            )
            .await?)
        }
        WorkflowCommand::Rejudge {
            common,
            workflow,
            submissions,
            database_url,
            name,
            problem,
            id,
            webhook,
        } => {
            let setup = common.setup().map_err(commands::CommandError::Usage)?;
            let selection = match problem {
                Some(problem) => Selection::Problem(problem),
                None => Selection::Ids(id),
            };
            let common = workflow.common();
            // A file given explicitly wins over a DATABASE_URL in the environment.
            let source = match (submissions, database_url) {
                (Some(path), _) => commands::workflow::Source::File(path),
                (None, Some(url)) => commands::workflow::Source::Postgres {
                    config: executioner::store::postgres::PostgresConfig::new(url),
                    name,
                },
                (None, None) => {
                    return Err(commands::CommandError::Usage(
                        "give --submissions FILE or --database-url URL".into(),
                    ))
                }
            };
            Ok(commands::workflow::rejudge(
                &setup,
                &common,
                source,
                &selection,
                webhook.as_deref(),
                shutdown,
            )
            .await?)
        }
    }
}

/// Settings of `--interface postgres` (defaults: `PostgresConfig::new`).
#[derive(Args)]
struct PostgresArgs {
    /// postgres://user:password@host:port/database (`--interface postgres`).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Seconds a claim lasts without a heartbeat; a dead worker's submissions return to the
    /// queue after this long (default: 30).
    #[arg(long, env = "EXECUTIONER_LEASE_SECONDS")]
    lease_seconds: Option<u64>,
    /// Times a submission that ended in `error` is tried again (default: 3).
    #[arg(long, env = "EXECUTIONER_RETRIES")]
    retries: Option<u32>,
}

impl PostgresArgs {
    fn config(self) -> Result<executioner::store::postgres::PostgresConfig, String> {
        self.optional_config()?
            .ok_or_else(|| "--interface postgres needs --database-url or DATABASE_URL".into())
    }

    /// `None` without a database URL.
    fn optional_config(
        self,
    ) -> Result<Option<executioner::store::postgres::PostgresConfig>, String> {
        let Some(url) = self.database_url else {
            return Ok(None);
        };
        let mut config = executioner::store::postgres::PostgresConfig::new(url);
        if let Some(seconds) = self.lease_seconds {
            if seconds == 0 {
                return Err("--lease-seconds must be at least 1".into());
            }
            config.lease = Duration::from_secs(seconds);
        }
        if let Some(retries) = self.retries {
            config.retries = retries;
        }
        Ok(Some(config))
    }
}

/// Settings of `--interface firestore` (defaults: `FirestoreConfig::new`). Credentials come
/// from `GOOGLE_APPLICATION_CREDENTIALS` (or the other usual places); `FIRESTORE_EMULATOR_HOST`
/// selects an emulator instead.
#[derive(Args)]
struct FirestoreArgs {
    /// The Google Cloud project of the Firestore database (`--interface firestore`).
    #[arg(long, env = "GOOGLE_CLOUD_PROJECT")]
    project_id: Option<String>,
    /// The Firestore database (default: `(default)`).
    #[arg(long, env = "EXECUTIONER_FIRESTORE_DATABASE")]
    firestore_database: Option<String>,
}

impl FirestoreArgs {
    fn config(
        self,
        postgres: &PostgresArgs,
    ) -> Result<executioner::store::firestore::FirestoreConfig, String> {
        let project = self
            .project_id
            .ok_or("--interface firestore needs --project-id or GOOGLE_CLOUD_PROJECT")?;
        let mut config = executioner::store::firestore::FirestoreConfig::new(project);
        if let Some(database) = self.firestore_database {
            config.database_id = database;
        }
        if let Some(seconds) = postgres.lease_seconds {
            if seconds == 0 {
                return Err("--lease-seconds must be at least 1".into());
            }
            config.lease = Duration::from_secs(seconds);
        }
        if let Some(retries) = postgres.retries {
            config.retries = retries;
        }
        Ok(config)
    }
}

/// The warm pool of sandbox containers (see `executioner::setup::WarmPool`).
#[derive(Args)]
struct WarmPoolArgs {
    /// Sandbox containers kept started and ready per warm language's image, so a submission
    /// does not wait for its container (each holds a box uid, and memory, while it waits);
    /// 0: none.
    #[arg(long, env = "EXECUTIONER_WARM_POOL", default_value_t = 0)]
    warm_pool: usize,
    /// Language ids whose images the warm pool keeps (comma-separated; default: the first 3
    /// languages of the registry).
    #[arg(long, env = "EXECUTIONER_WARM_LANGUAGES", value_delimiter = ',')]
    warm_languages: Vec<String>,
}

impl WarmPoolArgs {
    /// `setup` with this warm pool.
    fn apply(self, setup: Result<Setup, String>) -> Result<Setup, String> {
        setup.map(|setup| Setup {
            pool: WarmPool {
                size: self.warm_pool,
                languages: self.warm_languages,
            },
            ..setup
        })
    }
}

/// Settings of `--interface http` (defaults: `HttpConfig::new`).
#[derive(Args)]
struct HttpArgs {
    /// The `executioner serve` to judge for, http://HOST:PORT (`--interface http`).
    #[arg(long, env = "EXECUTIONER_URL")]
    url: Option<String>,
    /// How the service lists this worker (default: HOSTNAME:PID).
    #[arg(long, env = "EXECUTIONER_WORKER_NAME")]
    worker_name: Option<String>,
    /// The service's worker token (`serve --worker-token`), sent with every request.
    #[arg(long, env = "EXECUTIONER_WORKER_TOKEN", hide_env_values = true)]
    worker_token: Option<String>,
}

impl HttpArgs {
    fn config(self, concurrency: usize) -> Result<executioner::interface::HttpConfig, String> {
        let url = self
            .url
            .ok_or("--interface http needs --url or EXECUTIONER_URL")?;
        let mut config = executioner::interface::HttpConfig::new(url);
        if let Some(name) = self.worker_name {
            config.worker_name = name;
        }
        config.token = self.worker_token.map(Token::new);
        // What the worker really judges at once (it takes one at least).
        config.concurrency = u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX);
        Ok(config)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InterfaceKind {
    /// Submissions as JSON lines on stdin, messages as JSON lines on stdout.
    Memory,
    /// A PostgreSQL store shared by any number of workers (--database-url).
    Postgres,
    /// A Firestore database in the STAOJ layout (--project-id).
    Firestore,
    /// A remote `executioner serve`, as one of its registered workers (--url).
    Http,
}

#[derive(Args)]
struct Common {
    /// Root folder of the problems: STAOJ folders, ICPC packages (problem.yaml) and Polygon
    /// packages (problem.xml).
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
    /// Time limit (seconds) of an ICPC package that gives none (no `limits.time_limit`, no
    /// `.timelimit` file).
    #[arg(long, env = "EXECUTIONER_DEFAULT_TIME_LIMIT", default_value_t = 1.0)]
    default_time_limit: f64,
    /// Memory limit (MiB) of an ICPC package that gives none.
    #[arg(long, env = "EXECUTIONER_DEFAULT_MEMORY_LIMIT", default_value_t = 2048)]
    default_memory_limit: u64,
    /// Output limit (MiB) of an ICPC package that gives none.
    #[arg(long, env = "EXECUTIONER_DEFAULT_OUTPUT_LIMIT", default_value_t = 8)]
    default_output_limit: u64,
    /// Where compiled checkers are kept (one folder per checker content; safe to delete).
    #[arg(
        long,
        env = "EXECUTIONER_CHECKER_CACHE",
        default_value = "/var/cache/executioner/checkers"
    )]
    checker_cache: PathBuf,
    /// CPU seconds one run of a checker may take: the default and the most a problem may ask
    /// for (`limits.validation_time`); wall time is 3×.
    #[arg(long, env = "EXECUTIONER_VALIDATION_TIME", default_value_t = 30)]
    validation_time: u64,
    /// Memory (MiB) of one run of a checker: the default and the most a problem may ask for
    /// (`limits.validation_memory`).
    #[arg(long, env = "EXECUTIONER_VALIDATION_MEMORY", default_value_t = 1024)]
    validation_memory: u64,
    /// Test runs and checker runs this process makes at once, all submissions together
    /// (default: the number of cores). A custom checker's run overlaps the next test's run
    /// only while a slot is free.
    #[arg(long, env = "EXECUTIONER_CPU_SLOTS")]
    cpu_slots: Option<usize>,
    /// Do not pin each test and checker run to a CPU of its own (by default they are, while
    /// --cpu-slots is at most the number of CPUs this process may use).
    #[arg(long, env = "EXECUTIONER_NO_PIN_CPUS")]
    no_pin_cpus: bool,
    /// MiB of successful builds this machine keeps, so that the same code (language, image,
    /// sources, compile options) is not compiled again; least recently used go first. 0: no
    /// compile cache.
    #[arg(long, env = "EXECUTIONER_COMPILE_CACHE_MB", default_value_t = 512)]
    compile_cache_mb: u64,
    /// Where the compile cache keeps builds (made root-only; safe to delete). Default:
    /// `<temp dir>/executioner.compile-cache`.
    #[arg(long, env = "EXECUTIONER_COMPILE_CACHE_DIR")]
    compile_cache_dir: Option<PathBuf>,
}

impl Common {
    fn setup(self) -> Result<Setup, String> {
        if !(self.wall_multiplier.is_finite() && self.wall_multiplier >= 1.0) {
            return Err(format!(
                "--wall-multiplier must be at least 1, is {}",
                self.wall_multiplier
            ));
        }
        if !(self.default_time_limit.is_finite() && self.default_time_limit > 0.0) {
            return Err(format!(
                "--default-time-limit must be a positive number of seconds, is {}",
                self.default_time_limit
            ));
        }
        for (flag, value) in [
            ("--default-memory-limit", self.default_memory_limit),
            ("--default-output-limit", self.default_output_limit),
            ("--validation-time", self.validation_time),
            ("--validation-memory", self.validation_memory),
            ("--cpu-slots", self.cpu_slots.map_or(1, |n| n as u64)),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be positive"));
            }
        }
        let defaults = JudgeConfig::default();
        Ok(Setup {
            problems: self.problems,
            languages: self.languages,
            demoter: self.demoter,
            cgroup_parent: self.cgroup_parent,
            judge: JudgeConfig {
                wall_multiplier: self.wall_multiplier,
                cpu_slots: self.cpu_slots.unwrap_or(defaults.cpu_slots),
                pin_cpus: !self.no_pin_cpus,
                problem_defaults: executioner::problem::Defaults {
                    time_ms: (self.default_time_limit * 1000.0).ceil() as u64,
                    memory_kb: self.default_memory_limit * 1024,
                    output_bytes: self.default_output_limit * 1024 * 1024,
                },
                checker: executioner::check::custom::CheckerConfig {
                    cache_dir: self.checker_cache,
                    time_ms: self.validation_time * 1000,
                    memory_kb: self.validation_memory * 1024,
                    ..defaults.checker.clone()
                },
                compile_cache: (self.compile_cache_mb > 0).then(|| {
                    executioner::compile_cache::CompileCacheConfig {
                        dir: self.compile_cache_dir.unwrap_or_else(
                            executioner::compile_cache::CompileCacheConfig::default_dir,
                        ),
                        max_bytes: self.compile_cache_mb.saturating_mul(1024 * 1024),
                    }
                }),
                ..defaults
            },
            pool: WarmPool::default(),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("executioner: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(run(cli.command));
    // A blocking read of stdin (the memory worker's) must not keep the process alive.
    runtime.shutdown_background();
    code
}

async fn run(command: Command) -> ExitCode {
    let result = match command {
        Command::Languages {
            languages,
            long,
            json,
        } => {
            let format = match (long, json) {
                (_, true) => commands::LanguageList::Json,
                (true, false) => commands::LanguageList::Long,
                (false, false) => commands::LanguageList::Names,
            };
            commands::languages(languages.as_deref(), format)
        }
        Command::Judge {
            common,
            problem,
            language,
            id,
            source,
            files,
        } => match common.setup() {
            Ok(setup) => commands::judge(&setup, &problem, &language, &source, &files, id).await,
            Err(e) => Err(commands::CommandError::Usage(e)),
        },
        Command::Run {
            common,
            language,
            source,
            files,
            expected,
            time_limit,
            memory_limit,
            json,
        } => match common.setup() {
            Ok(setup) => {
                let command = commands::RunCommand {
                    language,
                    source,
                    files,
                    expected,
                    time_limit_ms: (time_limit * 1000.0).round() as u64,
                    memory_limit_kb: memory_limit,
                    json,
                };
                commands::run(&setup, command).await
            }
            Err(e) => Err(commands::CommandError::Usage(e)),
        },
        Command::Worker {
            common,
            interface,
            concurrency,
            drain_timeout,
            metrics_listen,
            postgres,
            firestore,
            http,
            warm,
        } => {
            let config = WorkerConfig {
                concurrency: concurrency.unwrap_or(WorkerConfig::default().concurrency),
                drain_timeout: Duration::from_secs(drain_timeout),
            };
            // Lives as long as the worker: dropping it stops the exporter.
            let exporter = match metrics_listen.as_deref() {
                Some(listen) => commands::metrics_exporter(listen).await.map(Some),
                None => Ok(None),
            };
            match (warm.apply(common.setup()), interface) {
                _ if exporter.is_err() => exporter.map(|_| ExitCode::SUCCESS),
                (Err(e), _) => Err(commands::CommandError::Usage(e)),
                (Ok(setup), InterfaceKind::Memory) => match commands::shutdown_signal() {
                    Ok(shutdown) => commands::memory_worker(&setup, config, shutdown).await,
                    Err(e) => Err(e),
                },
                (Ok(setup), InterfaceKind::Postgres) => {
                    match (postgres.config(), commands::shutdown_signal()) {
                        (Err(e), _) => Err(commands::CommandError::Usage(e)),
                        (_, Err(e)) => Err(e),
                        (Ok(database), Ok(shutdown)) => {
                            commands::postgres_worker(&setup, config, database, shutdown).await
                        }
                    }
                }
                (Ok(setup), InterfaceKind::Firestore) => {
                    match (firestore.config(&postgres), commands::shutdown_signal()) {
                        (Err(e), _) => Err(commands::CommandError::Usage(e)),
                        (_, Err(e)) => Err(e),
                        (Ok(database), Ok(shutdown)) => {
                            commands::firestore_worker(&setup, config, database, shutdown).await
                        }
                    }
                }
                (Ok(setup), InterfaceKind::Http) => {
                    match (http.config(config.concurrency), commands::shutdown_signal()) {
                        (Err(e), _) => Err(commands::CommandError::Usage(e)),
                        (_, Err(e)) => Err(e),
                        (Ok(service), Ok(shutdown)) => {
                            commands::http_worker(&setup, config, service, shutdown).await
                        }
                    }
                }
            }
        }
        Command::Serve {
            common,
            postgres,
            listen,
            judge0_listen,
            concurrency,
            rate_limit,
            rate_burst,
            webhook_allow,
            callback_secret,
            worker_token,
            client_token,
            heartbeat_seconds,
            run_max_time,
            run_max_memory,
            deadline_seconds,
            warm,
        } => {
            let worker = WorkerConfig {
                concurrency: concurrency.unwrap_or(WorkerConfig::default().concurrency),
                ..WorkerConfig::default()
            };
            let heartbeat_interval = match heartbeat_seconds {
                Some(0) => Err("--heartbeat-seconds must be at least 1".to_owned()),
                seconds => Ok(seconds.map(Duration::from_secs)),
            };
            match (
                warm.apply(common.setup()),
                postgres.optional_config(),
                heartbeat_interval,
                commands::shutdown_signal(),
            ) {
                (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) => {
                    Err(commands::CommandError::Usage(e))
                }
                (_, _, _, Err(e)) => Err(e),
                (Ok(setup), Ok(database), Ok(heartbeat_interval), Ok(shutdown)) => {
                    let defaults = executioner::api::ApiConfig::default();
                    let api = executioner::api::ApiConfig {
                        heartbeat_interval: heartbeat_interval
                            .unwrap_or(defaults.heartbeat_interval),
                        rate_limit: rate_limit.map(|per_second| {
                            let mut limit = executioner::api::limit::RateLimit::new(per_second);
                            if let Some(burst) = rate_burst {
                                limit.burst = burst.get();
                            }
                            limit
                        }),
                        webhook_hosts: webhook_allow,
                        callbacks: executioner::api::callbacks::CallbackConfig {
                            secret: callback_secret.filter(|s| !s.is_empty()).map(Token::new),
                            ..defaults.callbacks.clone()
                        },
                        worker_token: worker_token.filter(|t| !t.is_empty()).map(Token::new),
                        client_token: client_token.filter(|t| !t.is_empty()).map(Token::new),
                        run_max: executioner::api::RunLimits {
                            time_ms: (run_max_time * 1000.0).round() as u64,
                            memory_kb: run_max_memory,
                        },
                        deadline: deadline_seconds.map(Duration::from_secs),
                        ..defaults
                    };
                    let config = commands::ServeConfig {
                        listen,
                        judge0_listen,
                        worker,
                        api,
                        database,
                    };
                    commands::serve(&setup, config, shutdown).await
                }
            }
        }
        Command::Workflow { command } => workflow(command).await,
        Command::Problem {
            command: ProblemCommand::Check { common, problem },
        } => match common.setup() {
            Ok(setup) => commands::problem_check(&setup, &problem).await,
            Err(e) => Err(commands::CommandError::Usage(e)),
        },
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

/// A rate of requests: a positive, finite number.
/// Seconds of CPU time a run may be given: above 0, at most the judge's own cap.
fn run_seconds(text: &str) -> Result<f64, String> {
    let most = executioner::judge::MAX_RUN_TIME_MS as f64 / 1000.0;
    match text.parse::<f64>() {
        Ok(seconds) if seconds * 1000.0 >= 1.0 && seconds <= most => Ok(seconds),
        _ => Err(format!(
            "{text:?} is not a number of seconds from 0.001 to {most}"
        )),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of requests a second"
        )),
    }
}
