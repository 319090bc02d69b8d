//! Judging one submission: the message sequence of SPEC §2, from `executing` to its end.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use demoter::protocol::{Exit, LimitHit, Limits, RunResult};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, instrument, warn};

use crate::check::custom::{
    Built, CheckError, CheckOutcome, CheckerBox, CheckerCache, CheckerConfig,
};
use crate::check::{compare, DefaultFlags};
use crate::compile_cache::{CompileCache, CompileCacheConfig, Key, KeyParts, Lookup};
use crate::language::{Language, Placeholders, Registry};
use crate::problem::{
    is_valid_id, Checker, Defaults, Interaction, Problem, ProblemStore, TestCase,
};
use crate::protocol::{Body, Captured, CompileResult, Message, RunSpec, Submission};
use crate::sandbox::{
    Container, HeldCpu, Input, Run, RunOutput, Sandbox, SandboxError, Side, WorkDir, BUILD_DIR,
};
use crate::score::{round4, score, Graded};
use crate::verdict::Verdict;

/// Judging settings. Defaults are in [`JudgeConfig::default`].
#[derive(Debug, Clone)]
pub struct JudgeConfig {
    /// Wall time limit = CPU time limit × this, so a sleeping or blocked program ends as TLE.
    pub wall_multiplier: f64,
    /// Longest accepted source, bytes.
    pub max_source_bytes: usize,
    /// Most a program may print to stdout per test, bytes (more is `error`).
    pub output_limit_bytes: u64,
    /// Stderr kept per run, bytes.
    pub stderr_limit_bytes: u64,
    /// Limits of compiling.
    pub compile_limits: Limits,
    /// Longest `compileOutput`, characters.
    pub compile_output_chars: usize,
    /// Test runs and checker runs of all submissions at once (a checker's run overlaps the next
    /// test's run, but never beyond this many processes judged at once on the host).
    pub cpu_slots: usize,
    /// Pin each test and checker run to a CPU of its own (see [`crate::sandbox::Cpus`]) when
    /// `cpu_slots` is at most the CPUs this process may use; with more slots than CPUs runs
    /// share CPUs anyway and are not pinned.
    pub pin_cpus: bool,
    /// What packages that do not say get (time, memory, output limits).
    pub problem_defaults: Defaults,
    /// Custom checkers: their cache, limits and uid.
    pub checker: CheckerConfig,
    /// Bytes of stdout and of stderr an ad-hoc run reports (each).
    pub run_output_bytes: usize,
    /// Where and how much of successful builds to keep, so that the same code is not compiled
    /// again (see [`crate::compile_cache`]); `None`: every submission is compiled.
    pub compile_cache: Option<CompileCacheConfig>,
}

impl Default for JudgeConfig {
    /// 3× wall time, 256 KiB sources, 64 MiB of output per test; compiling gets 30 s of CPU,
    /// 60 s of wall time but at most 10 s with almost no CPU used (a compiler blocked reading
    /// a pipe or a terminal), 1 GiB, 64 tasks and 64 MiB files; 8000 characters of compiler output;
    /// as many test and checker runs at once as the host has cores, each pinned to its own;
    /// package and checker defaults as [`Defaults::default`] and [`CheckerConfig::default`];
    /// 64 KiB of each of an ad-hoc run's stdout and stderr; no compile cache (the command line
    /// turns one on: `--compile-cache-mb`).
    fn default() -> Self {
        JudgeConfig {
            wall_multiplier: 3.0,
            max_source_bytes: 256 * 1024,
            output_limit_bytes: 64 * 1024 * 1024,
            stderr_limit_bytes: 64 * 1024,
            compile_limits: Limits {
                cpu_ms: 30_000,
                wall_ms: 60_000,
                memory_kb: 1024 * 1024,
                pids: 64,
                output_bytes: 64 * 1024 * 1024,
                stderr_bytes: 64 * 1024,
                idle_ms: Some(10_000),
            },
            compile_output_chars: 8000,
            cpu_slots: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_cpus: true,
            problem_defaults: Defaults::default(),
            checker: CheckerConfig::default(),
            run_output_bytes: 64 << 10,
            compile_cache: None,
        }
    }
}

/// Where a judging yields its messages, in order: a bounded channel, so judging waits while
/// whoever drains it is behind.
pub type Messages = mpsc::Sender<Message>;

/// One judging's end of [`Messages`]: wraps each body in a message of its submission.
#[derive(Clone, Copy)]
struct Yield<'a> {
    id: &'a str,
    out: &'a Messages,
}

impl Yield<'_> {
    async fn send(self, body: Body) -> Result<(), Unheard> {
        self.out
            .send(Message::new(self.id, body))
            .await
            .map_err(|_| Unheard)
    }
}

/// Nobody takes a judging's messages any more (the receiver was dropped): judging stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nobody takes this judging's messages any more")]
pub struct Unheard;

/// Why judging stopped before `done`.
enum Failure {
    /// The submission's own data cannot be judged: `invalid`.
    Invalid(String),
    /// The judge or its infrastructure failed: `error`.
    Error(String),
    /// Nobody takes the messages: nothing more can be reported.
    Unheard,
}

impl From<Unheard> for Failure {
    fn from(_: Unheard) -> Self {
        Failure::Unheard
    }
}

impl From<CheckError> for Failure {
    fn from(e: CheckError) -> Self {
        match e {
            // The compiler quotes the checker's source: the setter reads it in the log or in
            // `executioner problem check`, the contest platform only learns that it failed.
            CheckError::Compile { output } => {
                warn!(%output, "the problem's checker does not compile");
                Failure::Error(
                    "the checker does not compile (see the worker's log or `executioner problem check`)"
                        .into(),
                )
            }
            e => Failure::Error(e.to_string()),
        }
    }
}

/// Longest CPU time an ad-hoc run may ask for, ms; the API caps it lower (`serve --run-max-time`).
pub const MAX_RUN_TIME_MS: u64 = 60_000;
/// Most memory an ad-hoc run may ask for, KB; the API caps it lower (`serve --run-max-memory`).
pub const MAX_RUN_MEMORY_KB: u64 = 4 << 20;

/// Most arguments a run may give its program, and most bytes of them all.
pub const MAX_RUN_ARGS: (usize, usize) = (256, 4096);

/// `Err(reason)` when a run's limits (or arguments) are outside what any judge runs.
pub fn check_run_limits(run: &RunSpec) -> Result<(), String> {
    if let Some(n) = run.number_of_runs {
        if !(1..=crate::protocol::MAX_NUMBER_OF_RUNS).contains(&n) {
            return Err(format!(
                "a run may be repeated 1 to {} times, not {n}",
                crate::protocol::MAX_NUMBER_OF_RUNS
            ));
        }
    }
    for (what, args) in [
        ("arguments", &run.args),
        ("compile options", &run.compile_args),
    ] {
        let bytes: usize = args.iter().map(String::len).sum();
        if args.len() > MAX_RUN_ARGS.0 || bytes > MAX_RUN_ARGS.1 {
            return Err(format!(
                "a run may give at most {} {what} of {} bytes in all",
                MAX_RUN_ARGS.0, MAX_RUN_ARGS.1
            ));
        }
        if args.iter().any(|a| a.contains('\0')) {
            return Err(format!("a run's {what} hold a NUL byte"));
        }
    }
    if let Some(wall) = run.wall_limit_ms {
        if !(1..=3 * MAX_RUN_TIME_MS).contains(&wall) {
            return Err(format!(
                "a run's wall-clock limit must be 1 to {} ms, not {wall}",
                3 * MAX_RUN_TIME_MS
            ));
        }
    }
    if !(1..=MAX_RUN_TIME_MS).contains(&run.time_limit_ms) {
        return Err(format!(
            "a run's time limit must be 1 to {MAX_RUN_TIME_MS} ms, not {}",
            run.time_limit_ms
        ));
    }
    if !(1024..=MAX_RUN_MEMORY_KB).contains(&run.memory_limit_kb) {
        return Err(format!(
            "a run's memory limit must be 1024 to {MAX_RUN_MEMORY_KB} KB, not {}",
            run.memory_limit_kb
        ));
    }
    Ok(())
}

/// The first `cap` bytes of the file at `path`, and its length.
async fn read_prefix(path: &Path, cap: usize) -> Result<(Vec<u8>, u64), Failure> {
    use tokio::io::AsyncReadExt;
    let failed = |e: std::io::Error| Failure::Error(format!("reading {}: {e}", path.display()));
    let file = tokio::fs::File::open(path).await.map_err(failed)?;
    let total = file.metadata().await.map_err(failed)?.len();
    let mut kept = Vec::with_capacity(cap.min(total as usize));
    file.take(cap as u64)
        .read_to_end(&mut kept)
        .await
        .map_err(failed)?;
    Ok((kept, total))
}

impl From<SandboxError> for Failure {
    fn from(e: SandboxError) -> Self {
        crate::metrics::global().count_sandbox_error(e.kind());
        Failure::Error(format!("sandbox failure: {e}"))
    }
}

/// Judges submissions: problems, languages and the sandbox together.
pub struct Judge {
    problems: Arc<ProblemStore>,
    languages: Arc<Registry>,
    sandbox: Sandbox,
    checkers: CheckerCache,
    /// One permit per test or checker run in progress (see `JudgeConfig::cpu_slots`).
    cpu: tokio::sync::Semaphore,
    /// Whether runs are pinned (`JudgeConfig::pin_cpus` and few enough slots).
    pin: bool,
    config: JudgeConfig,
    /// Builds kept from earlier compiles, if configured and its directory is safe to use.
    compile_cache: Option<Arc<CompileCache>>,
}

/// The name of a build's pack in a box's io dir, on its way to or from the compile cache.
const BUILD_PACK: &str = "build.pack";

impl Judge {
    pub fn new(
        problems: Arc<ProblemStore>,
        languages: Arc<Registry>,
        sandbox: Sandbox,
        config: JudgeConfig,
    ) -> Self {
        let pin = config.pin_cpus && config.cpu_slots.max(1) <= sandbox.cpus().count();
        Judge {
            problems,
            languages,
            sandbox,
            checkers: CheckerCache::new(config.checker.clone()),
            cpu: tokio::sync::Semaphore::new(config.cpu_slots.max(1)),
            pin,
            compile_cache: config.compile_cache.clone().and_then(|cache| {
                CompileCache::open(cache)
                    .inspect_err(|e| warn!(error = %e, "the compile cache is off"))
                    .ok()
                    .map(Arc::new)
            }),
            config,
        }
    }

    /// The compile cache, when there is one.
    pub fn compile_cache(&self) -> Option<&CompileCache> {
        self.compile_cache.as_deref()
    }

    pub fn languages(&self) -> &Registry {
        &self.languages
    }

    pub fn problems(&self) -> &ProblemStore {
        &self.problems
    }

    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// Judges `submission`, which the caller has claimed with `executing`: yields every later
    /// message of SPEC §2 into `out`, in order, ending with the terminal one (`done`, `invalid`
    /// or `error`), which it also returns. `cancel` ends judging early with `error` (worker
    /// shutdown past its deadline). `Err` only when the receiver went away, so the sequence
    /// could not be completed; judging stops at the next message.
    #[instrument(skip_all, fields(submission_id = %submission.id, problem = %submission.problem, language = %submission.language))]
    pub async fn judge(
        &self,
        submission: &Submission,
        out: Messages,
        cancel: &CancellationToken,
    ) -> Result<Body, Unheard> {
        let messages = Yield {
            id: &submission.id,
            out: &out,
        };
        let end = match self.pipeline(submission, messages, cancel).await {
            Ok(done) => done,
            Err(Failure::Invalid(reason)) => {
                info!(%reason, "invalid submission");
                Body::Invalid {
                    reason: Some(reason),
                }
            }
            Err(Failure::Error(reason)) => {
                warn!(%reason, "judging failed");
                Body::Error {
                    reason: Some(reason),
                }
            }
            Err(Failure::Unheard) => return Err(Unheard),
        };
        messages.send(end.clone()).await?;
        Ok(end)
    }

    async fn pipeline(
        &self,
        submission: &Submission,
        messages: Yield<'_>,
        cancel: &CancellationToken,
    ) -> Result<Body, Failure> {
        let language = self
            .languages
            .resolve(&submission.language)
            .ok_or_else(|| {
                Failure::Invalid(format!(
                    "unknown language {:?}",
                    truncate(&submission.language, 64)
                ))
            })?;
        if submission.run.is_none() && !is_valid_id(&submission.problem) {
            return Err(Failure::Invalid(format!(
                "invalid problem id {:?}: ids are [a-z0-9-]+",
                truncate(&submission.problem, 64)
            )));
        }
        if let Some(run) = &submission.run {
            check_run_limits(run).map_err(Failure::Invalid)?;
        }
        if submission.source_code.trim().is_empty() {
            return Err(Failure::Invalid("the source code is empty".into()));
        }
        if submission.source_code.len() > self.config.max_source_bytes {
            return Err(Failure::Invalid(format!(
                "the source code is {} bytes, more than the limit of {} bytes",
                submission.source_code.len(),
                self.config.max_source_bytes
            )));
        }
        submission
            .check_files(&language.source)
            .map_err(Failure::Invalid)?;
        if submission.source_bytes() > self.config.max_source_bytes {
            return Err(Failure::Invalid(format!(
                "the source code and files are {} bytes, more than the limit of {} bytes",
                submission.source_bytes(),
                self.config.max_source_bytes
            )));
        }
        let problem = match &submission.run {
            Some(run) => Arc::new(Problem::ad_hoc(run)),
            None => self.load_problem(&submission.problem).await?,
        };
        let mut container = self.sandbox.open(&language.image).await?;
        let result = self
            .in_container(
                &mut container,
                submission,
                language,
                &problem,
                messages,
                cancel,
            )
            .await;
        container.close().await;
        result
    }

    async fn load_problem(&self, id: &str) -> Result<Arc<Problem>, Failure> {
        // Loading reads and parses files: keep it off the async threads.
        let (store, id) = (self.problems.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || store.get(&id))
            .await
            .map_err(|e| Failure::Error(format!("loading the problem failed: {e}")))?
            .map_err(|e| Failure::Error(e.to_string()))
    }

    async fn in_container(
        &self,
        container: &mut Container,
        submission: &Submission,
        language: &Language,
        problem: &Problem,
        messages: Yield<'_>,
        cancel: &CancellationToken,
    ) -> Result<Body, Failure> {
        // The checker's container starts (and the checker compiles, once per content) while the
        // submission compiles.
        // An interactor reaches the program through FIFOs in the program's io dir.
        let interactive = matches!(
            problem.interaction,
            Interaction::Interactive | Interaction::Interactor(_)
        );
        let peer_io = interactive.then(|| container.io_dir().to_owned());
        let (compiled, checker) = tokio::join!(
            self.compile(container, submission, language, problem, messages, cancel),
            cancellable(cancel, self.checker_box(problem, peer_io)),
        );
        let checker = checker.and_then(|built| built.map_err(Failure::from));
        let mut checker = match (compiled, checker) {
            (Ok(None), Ok(checker)) => checker,
            (Ok(None), Err(e)) => return Err(e),
            (compiled, checker) => {
                if let Ok(Some(checker)) = checker {
                    checker.close().await;
                }
                // Compiled with an error (`done`), or failed: the checker's fate does not matter.
                return compiled.and_then(|done| {
                    done.ok_or_else(|| Failure::Error("compiling ended without a result".into()))
                });
            }
        };
        let result = self
            .run_tests(
                container,
                checker.as_mut(),
                submission,
                language,
                problem,
                messages,
                cancel,
            )
            .await;
        if let Some(checker) = checker {
            checker.close().await;
        }
        result
    }

    /// Saves and compiles the source, sealing the build directory. `Some(done)` when it did not
    /// compile (`compiled error` was sent).
    async fn compile(
        &self,
        container: &mut Container,
        submission: &Submission,
        language: &Language,
        problem: &Problem,
        messages: Yield<'_>,
        cancel: &CancellationToken,
    ) -> Result<Option<Body>, Failure> {
        let files: Vec<String> = submission.files.iter().map(|f| f.name.clone()).collect();
        let values = Placeholders {
            build: BUILD_DIR,
            memory_kb: problem.memory_kb,
            files: &files,
        };
        let Some(compile) = &language.compile else {
            self.put_sources(container, submission, language).await?;
            self.finish_build(container, language).await?;
            return Ok(None);
        };
        messages.send(Body::Compiling).await?;
        let mut argv = language.expand(compile, &values);
        if let Some(run) = &submission.run {
            argv.extend(run.compile_args.iter().cloned());
        }
        let key = self.cache_key(submission, language, &argv).await;
        if let Some(key) = &key {
            if self.restore_build(container, key, language).await {
                info!(key = key.as_str(), "compile cache hit: not compiled");
                messages
                    .send(Body::Compiled {
                        result: CompileResult::Success,
                        compile_output: None,
                    })
                    .await?;
                self.finish_build(container, language).await?;
                return Ok(None);
            }
        }
        self.put_sources(container, submission, language).await?;
        let run = Run {
            argv,
            env: language.env.clone(),
            work_dir: WorkDir::Build,
            stdin: None,
            limits: self.config.compile_limits,
            io: None,
            stderr_to_stdout: false,
        };
        let started = std::time::Instant::now();
        let out = cancellable(cancel, container.run(run)).await??;
        crate::metrics::global().observe_compile(&language.id, started.elapsed());
        if !out.result.exited_normally() {
            let output = self
                .compile_output(&out.result, &out.stdout, &out.stderr)
                .await;
            info!(exit = ?out.result.exit, limit = ?out.result.limit, "compile error");
            messages
                .send(Body::Compiled {
                    result: CompileResult::Error,
                    compile_output: Some(output),
                })
                .await?;
            return Ok(Some(Body::Done {
                score: None,
                failed_subtasks: None,
            }));
        }
        messages
            .send(Body::Compiled {
                result: CompileResult::Success,
                compile_output: None,
            })
            .await?;
        container.seal_build().await?;
        if let Some(key) = &key {
            self.keep_build(container, key).await;
        }
        self.warm(container, language).await?;
        Ok(None)
    }

    /// Saves the source and the submission's further files in the build directory.
    async fn put_sources(
        &self,
        container: &mut Container,
        submission: &Submission,
        language: &Language,
    ) -> Result<(), Failure> {
        container
            .put_source(&language.source, submission.source_code.as_bytes())
            .await?;
        // The names were checked (plain file names, not the source's); the agent never writes
        // through a link.
        for file in &submission.files {
            container
                .put_source(&file.name, file.content.as_bytes())
                .await?;
        }
        Ok(())
    }

    /// Seals the build directory and reads the runtime ahead.
    async fn finish_build(
        &self,
        container: &mut Container,
        language: &Language,
    ) -> Result<(), Failure> {
        container.seal_build().await?;
        self.warm(container, language).await
    }

    async fn warm(&self, container: &mut Container, language: &Language) -> Result<(), Failure> {
        match container.warm(&language.warm).await {
            // Best effort: a cold cache costs the first test memory, not its verdict here.
            Err(SandboxError::AgentFailed { error, .. }) => {
                warn!(language = %language.id, %error, "reading the runtime ahead failed")
            }
            other => other?,
        }
        Ok(())
    }

    /// The compile cache's key of this compile; `None` without a cache, or when the image's
    /// id cannot be had (then it compiles, uncached).
    async fn cache_key(
        &self,
        submission: &Submission,
        language: &Language,
        argv: &[String],
    ) -> Option<Key> {
        self.compile_cache.as_ref()?;
        let image_id = match self.sandbox.image_id(&language.image).await {
            Ok(id) => id,
            Err(e) => {
                warn!(error = %e, "no image id for the compile cache; compiling");
                return None;
            }
        };
        let sources: Vec<(&str, &[u8])> =
            std::iter::once((language.source.as_str(), submission.source_code.as_bytes()))
                .chain(
                    submission
                        .files
                        .iter()
                        .map(|f| (f.name.as_str(), f.content.as_bytes())),
                )
                .collect();
        Some(Key::new(&KeyParts {
            language: &language.id,
            image_id: &image_id,
            argv,
            env: &language.env,
            limits: &format!("{:?}", self.config.compile_limits),
            sources: &sources,
        }))
    }

    /// Restores the build of `key` from the compile cache into the (empty) build directory:
    /// true on a hit. Anything that goes wrong is logged and makes it a miss.
    async fn restore_build(
        &self,
        container: &mut Container,
        key: &Key,
        language: &Language,
    ) -> bool {
        let Some(cache) = self.compile_cache.clone() else {
            return false;
        };
        let pack = container.io_dir().join(BUILD_PACK);
        let (found_key, id, to) = (key.clone(), language.id.clone(), pack.clone());
        let found = tokio::task::spawn_blocking(move || cache.fetch(&found_key, &id, &to))
            .await
            .unwrap_or(Lookup::Miss);
        if found != Lookup::Hit {
            return false;
        }
        let restored = container.unpack_build(BUILD_PACK).await;
        let _ = tokio::fs::remove_file(&pack).await;
        match restored {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "restoring a cached build failed; compiling");
                false
            }
        }
    }

    /// Keeps the sealed build in the compile cache under `key`; failures are logged only.
    async fn keep_build(&self, container: &mut Container, key: &Key) {
        let Some(cache) = self.compile_cache.clone() else {
            return;
        };
        let max_bytes = cache.config().max_entry_bytes();
        let pack = match container.pack_build(BUILD_PACK, max_bytes).await {
            Ok(pack) => pack,
            Err(e) => {
                warn!(error = %e, "the build was not packed for the compile cache");
                return;
            }
        };
        let (key, from) = (key.clone(), pack.clone());
        let stored = tokio::task::spawn_blocking(move || cache.store(&key, &from)).await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "the build was not kept in the compile cache"),
            Err(e) => warn!(error = %e, "the build was not kept in the compile cache"),
        }
        let _ = tokio::fs::remove_file(&pack).await;
    }

    /// The problem's custom checker compiled (or found in the cache); `None` for the default.
    pub async fn build_checker(&self, problem: &Problem) -> Result<Option<Built>, CheckError> {
        match &problem.checker {
            Checker::Default => Ok(None),
            Checker::Icpc(program) | Checker::Testlib(program) => self
                .checkers
                .build(program, &self.sandbox, &self.languages)
                .await
                .map(Some),
        }
    }

    /// A Polygon problem's interactor compiled (or found in the cache); `None` for others.
    pub async fn build_interactor(&self, problem: &Problem) -> Result<Option<Built>, CheckError> {
        match &problem.interaction {
            Interaction::Interactor(program) => self
                .checkers
                .build(program, &self.sandbox, &self.languages)
                .await
                .map(Some),
            _ => Ok(None),
        }
    }

    /// The container of the problem's custom checker, if it has one.
    async fn checker_box(
        &self,
        problem: &Problem,
        peer_io: Option<PathBuf>,
    ) -> Result<Option<CheckerBox>, CheckError> {
        let Some(built) = self.build_checker(problem).await? else {
            return Ok(None);
        };
        let interactor = self.build_interactor(problem).await?;
        let config = self.checkers.config();
        Ok(Some(
            CheckerBox::open(&self.sandbox, config, built, problem, peer_io, interactor).await?,
        ))
    }

    /// Runs `work` (a test's or a checker's run) once a CPU slot is free, pinned to a CPU of
    /// its own when there is one.
    async fn on_cpu<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        // The semaphore is never closed; without a permit the work still runs.
        let _slot = self.cpu.acquire().await.ok();
        let cpu = if self.pin {
            self.sandbox.cpus().take()
        } else {
            None
        };
        crate::sandbox::pinned(cpu.as_ref().map(HeldCpu::cpu), work).await
    }

    /// Runs every test in order, yielding `testing` and `tested`; ends with `done`.
    #[allow(clippy::too_many_arguments)] // the submission names its files for `{entry}`
    async fn run_tests<'a>(
        &self,
        container: &mut Container,
        mut checker: Option<&mut CheckerBox>,
        submission: &Submission,
        language: &'a Language,
        problem: &'a Problem,
        messages: Yield<'_>,
        cancel: &CancellationToken,
    ) -> Result<Body, Failure> {
        let files: Vec<String> = submission.files.iter().map(|f| f.name.clone()).collect();
        let values = Placeholders {
            build: BUILD_DIR,
            memory_kb: problem.memory_kb,
            files: &files,
        };
        let cpu_ms = language.time_limit_ms(problem.time_ms);
        let wall_ms = match submission.run.as_ref().and_then(|r| r.wall_limit_ms) {
            Some(wall_ms) => wall_ms,
            None => (cpu_ms as f64 * self.config.wall_multiplier).ceil() as u64,
        };
        let limits = Limits {
            cpu_ms,
            wall_ms,
            memory_kb: problem.memory_kb.saturating_add(language.memory_extra_kb),
            pids: language.run_pids,
            output_bytes: problem
                .output_limit_bytes
                .unwrap_or(self.config.output_limit_bytes),
            stderr_bytes: self.config.stderr_limit_bytes,
            idle_ms: None,
        };
        let mut argv = language.expand(&language.run, &values);
        if let Some(run) = &submission.run {
            argv.extend(run.args.iter().cloned());
        }
        let run_of = |test: &'a TestCase| Run {
            argv: argv.clone(),
            env: language.env.clone(),
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Data(&test.input)),
            limits,
            io: Some(&problem.io),
            stderr_to_stdout: submission.run.as_ref().is_some_and(|r| r.stderr_to_stdout),
        };
        let mut graded = Vec::with_capacity(problem.tests.len());
        // The next test's run, made while a custom checker judged this one.
        let mut ahead = None;
        for (index, test) in problem.tests.iter().enumerate() {
            let test_case = index as u32 + 1;
            messages
                .send(Body::Testing {
                    test_case,
                    subtask: test.subtask,
                })
                .await?;
            // Whether the interactor rejected before the program ended: then nothing the
            // program did afterwards (a crash on the closed pipe, a timeout) matters.
            let mut rejected_first = false;
            let (out, accepted, fraction) = if let Interaction::MultiPass { passes } =
                problem.interaction
            {
                let checker = checker.as_deref_mut().ok_or_else(|| {
                    Failure::Error("a multi-pass problem without its validator".into())
                })?;
                let (out, outcome) = self
                    .passes(container, checker, run_of(test), test, passes, cancel)
                    .await?;
                match outcome {
                    Some(outcome) => {
                        self.log_outcome(test_case, test, &outcome);
                        (out, outcome.accepted, outcome.fraction.map(round4))
                    }
                    None => (out, false, None),
                }
            } else if matches!(
                problem.interaction,
                Interaction::Interactive | Interaction::Interactor(_)
            ) {
                let checker = checker.as_deref_mut().ok_or_else(|| {
                    Failure::Error("an interactive problem without its interactor".into())
                })?;
                let (out, outcome, interactor_first) = cancellable(
                    cancel,
                    self.interact(container, checker, run_of(test), test),
                )
                .await??;
                rejected_first = interactor_first && !outcome.accepted;
                self.log_outcome(test_case, test, &outcome);
                (out, outcome.accepted, outcome.fraction.map(round4))
            } else {
                let out = match ahead.take() {
                    Some(out) => out,
                    None => cancellable(cancel, self.on_cpu(container.run(run_of(test)))).await??,
                };
                // What the checker said: accepted, and the fraction if it gave one. A run
                // without an expected output has nothing to compare.
                let unchecked = submission
                    .run
                    .as_ref()
                    .is_some_and(|run| run.expected_output.is_none());
                let (accepted, fraction) = if unchecked {
                    (true, None)
                } else if out.result.exited_normally() {
                    let outcome = match checker.as_deref_mut() {
                        Some(checker) => {
                            // The checker's process and the next test's run overlap: each has
                            // its own container, cgroups and limits, and messages keep their
                            // order.
                            checker.take(&out.stdout).await?;
                            let next = problem.tests.get(index + 1).map(run_of);
                            let both = async {
                                tokio::join!(self.on_cpu(checker.check(test)), async {
                                    match next {
                                        Some(run) => {
                                            self.on_cpu(container.run(run)).await.map(Some)
                                        }
                                        None => Ok(None),
                                    }
                                })
                            };
                            let (outcome, next) = cancellable(cancel, both).await?;
                            ahead = next?;
                            outcome?
                        }
                        None => compare_default(test, &out.stdout).await?,
                    };
                    self.log_outcome(test_case, test, &outcome);
                    (outcome.accepted, outcome.fraction.map(round4))
                } else {
                    (false, None)
                };
                (out, accepted, fraction)
            };
            // An output the checker accepted for part of its points is `accepted` with its
            // `score`; for none of them, `wrong`.
            let passes = accepted && fraction.is_none_or(|f| f > 0.0);
            let verdict = if rejected_first {
                Verdict::Wrong
            } else {
                Verdict::of_run(&out.result, language.oom_exit_code, || passes)
            };
            info!(
                test_case,
                verdict = verdict.as_str(),
                cpu_ms = out.result.cpu_ms,
                wall_ms = out.result.wall_ms,
                memory_kb = out.result.memory_kb,
                score = fraction,
                "tested"
            );
            graded.push(Graded {
                verdict,
                fraction: match verdict {
                    Verdict::Accepted => fraction.unwrap_or(1.0),
                    _ => 0.0,
                },
            });
            crate::metrics::global().count_test(&language.id, verdict.as_str());
            messages
                .send(Body::Tested {
                    test_case,
                    subtask: test.subtask,
                    result: verdict,
                    time: Some(out.result.cpu_ms),
                    memory: Some(out.result.memory_kb),
                    score: fraction,
                    output: match submission.run {
                        Some(_) => Some(Box::new(self.run_output(&out).await?)),
                        None => None,
                    },
                })
                .await?;
        }
        let score = score(problem, &graded);
        info!(score = score.score, failed_subtasks = ?score.failed_subtasks, "judged");
        Ok(Body::Done {
            score: Some(score.score),
            failed_subtasks: score.failed_subtasks,
        })
    }

    /// What an ad-hoc run wrote (the first [`JudgeConfig::run_output_bytes`] of each stream)
    /// and how it ended.
    async fn run_output(&self, out: &RunOutput) -> Result<crate::protocol::RunOutput, Failure> {
        let cap = self.config.run_output_bytes;
        let (stdout, stderr) =
            tokio::join!(read_prefix(&out.stdout, cap), read_prefix(&out.stderr, cap));
        let ((stdout, stdout_total), (stderr, stderr_total)) = (stdout?, stderr?);
        let result = &out.result;
        let (exit_code, exit_signal) = match result.exit {
            Exit::Exited { code } => (Some(code), None),
            Exit::Signaled { signal } => (None, Some(signal)),
        };
        Ok(crate::protocol::RunOutput {
            stdout: Captured::of(stdout, stdout_total.max(result.stdout_bytes)),
            stderr: Captured::of(stderr, stderr_total),
            exit_code,
            exit_signal,
            wall_time: result.wall_ms,
            limit: result.limit.map(|limit| {
                match limit {
                    LimitHit::Memory => "memory",
                    LimitHit::Time => "time",
                    LimitHit::Wall => "wall",
                    LimitHit::Output => "output",
                }
                .to_owned()
            }),
        })
    }

    fn log_outcome(&self, test_case: u32, test: &TestCase, outcome: &CheckOutcome) {
        if !outcome.accepted {
            info!(test_case, test = %test.name, message = %outcome.message, "wrong answer");
        } else if !outcome.message.is_empty() {
            info!(test_case, test = %test.name, message = %outcome.message, "checker message");
        }
    }

    /// One multi-pass test: the program runs on the input, then on each `nextpass.in` the
    /// validator writes when it accepts a pass, at most `passes` times. Gives the last run
    /// (its CPU time the sum of all passes', its memory their peak) and the validator's last
    /// outcome; `None` when a run failed.
    async fn passes(
        &self,
        container: &mut Container,
        checker: &mut CheckerBox,
        run: Run<'_>,
        test: &TestCase,
        passes: u32,
        cancel: &CancellationToken,
    ) -> Result<(RunOutput, Option<CheckOutcome>), Failure> {
        let next_input = container.io_dir().join("nextpass");
        let (mut cpu_ms, mut memory_kb) = (0, 0);
        for pass in 1..=passes {
            let this = Run {
                stdin: Some(if pass == 1 {
                    Input::Data(&test.input)
                } else {
                    Input::IoFile("nextpass")
                }),
                ..run.clone()
            };
            let mut out = cancellable(cancel, self.on_cpu(container.run(this))).await??;
            cpu_ms += out.result.cpu_ms;
            memory_kb = memory_kb.max(out.result.memory_kb);
            out.result.cpu_ms = cpu_ms;
            out.result.memory_kb = memory_kb;
            if !out.result.exited_normally() {
                return Ok((out, None));
            }
            if pass == 1 {
                checker.take(&out.stdout).await?;
            } else {
                checker.take_next_pass(&out.stdout).await?;
            }
            let outcome = cancellable(cancel, self.on_cpu(checker.check(test))).await??;
            let again = outcome.accepted && checker.take_next_input(test, &next_input).await?;
            if !again {
                return Ok((out, Some(outcome)));
            }
            if pass == passes {
                return Err(CheckError::Fault {
                    test: test.name.clone(),
                    reason: format!("it asked for a pass after the last one ({passes})"),
                }
                .into());
            }
            info!(test = %test.name, pass = pass + 1, "next pass");
        }
        unreachable!("the last pass returns")
    }

    /// One interactive test: the program (`run`, its stdin and stdout turned into the FIFOs)
    /// and the interactor start together, each in its own container, cgroup and limits.
    /// Gives the program's run, the interactor's outcome, and whether the interactor ended
    /// first.
    async fn interact(
        &self,
        container: &mut Container,
        checker: &mut CheckerBox,
        run: Run<'_>,
        test: &TestCase,
    ) -> Result<(RunOutput, CheckOutcome, bool), Failure> {
        container.make_fifos().await?;
        let run = Run {
            stdin: Some(Input::Pipe(Side::Program)),
            io: None,
            ..run
        };
        let (program, interactor) =
            tokio::join!(self.on_cpu(container.run(run)), checker.interact(test));
        let out = program?;
        let (outcome, interactor_ended) = interactor?;
        // A program killed by SIGPIPE wrote to an interactor that had gone. Otherwise both ends
        // are stamped on the host's monotonic clock when their process was reaped; a process
        // closes its pipes before it can be reaped, so when one side's end made the other
        // end at once, their order on the clock may come out either way (the verdict is then
        // a failure either way, only which one differs).
        let sigpipe = out.result.exit
            == Exit::Signaled {
                signal: nix::sys::signal::Signal::SIGPIPE as i32,
            };
        let interactor_first = sigpipe
            || out
                .result
                .ended_ns
                .is_some_and(|program_ended| interactor_ended < program_ended);
        Ok((out, outcome, interactor_first))
    }

    /// What the compiler said (stderr, then stdout), truncated, with why it stopped if a limit
    /// ended it.
    async fn compile_output(&self, result: &RunResult, stdout: &Path, stderr: &Path) -> String {
        // A character takes at most 4 bytes (an invalid byte becomes one character): this many
        // bytes of each file hold more than is kept, and a 64 MiB flood costs the worker no more.
        let max_bytes = 4 * (self.config.compile_output_chars as u64 + 1);
        let mut text = String::new();
        for path in [stderr, stdout] {
            text.push_str(&String::from_utf8_lossy(&read_head(path, max_bytes).await));
        }
        let limits = &self.config.compile_limits;
        let why = match result.limit {
            Some(LimitHit::Memory) => Some(format!(
                "compilation exceeded the memory limit of {} KB",
                limits.memory_kb
            )),
            Some(LimitHit::Time) => Some(format!(
                "compilation exceeded the time limit of {} ms",
                limits.cpu_ms
            )),
            // Ended before the wall limit: it was the idle limit.
            Some(LimitHit::Wall) => Some(match limits.idle_ms {
                Some(idle_ms) if result.wall_ms < limits.wall_ms => format!(
                    "the compiler was idle (used almost no CPU) for {idle_ms} ms and was stopped"
                ),
                _ => format!(
                    "compilation exceeded the wall time limit of {} ms",
                    limits.wall_ms
                ),
            }),
            Some(LimitHit::Output) => Some("the compiler wrote too much output".to_owned()),
            None => None,
        };
        let mut out = truncate(text.trim_end(), self.config.compile_output_chars);
        if let Some(why) = why {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&why);
        }
        if out.is_empty() {
            out = format!("the compiler failed ({:?}) without a message", result.exit);
        }
        out
    }
}

/// Runs `work` unless `cancel` fires first (then: `error`, the worker is shutting down).
async fn cancellable<T>(
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Failure> {
    tokio::select! {
        result = work => Ok(result),
        _ = cancel.cancelled() => Err(Failure::Error("the worker shut down before judging finished".into())),
    }
}

/// At most `max` bytes from the start of a file (none if it cannot be read).
async fn read_head(path: &Path, max: u64) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    if let Ok(file) = tokio::fs::File::open(path).await {
        // What was read before an error is still worth showing.
        let _ = file.take(max).read_to_end(&mut bytes).await;
    }
    bytes
}

/// At most `max` characters of `text`, with a marker when cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}… (truncated)", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The default output validator on the program's output file, streamed on a blocking thread.
async fn compare_default(test: &TestCase, output: &Path) -> Result<CheckOutcome, Failure> {
    let (answer, args, output) = (
        test.answer.clone(),
        test.checker_args.clone(),
        output.to_owned(),
    );
    let name = test.name.clone();
    tokio::task::spawn_blocking(move || {
        let flags = DefaultFlags::parse(&args)
            .map_err(|e| Failure::Error(format!("test {name}: validator flags: {e}")))?;
        let mut expected = answer
            .open()
            .map_err(|e| Failure::Error(format!("cannot read the answer of test {name}: {e}")))?;
        let file = std::fs::File::open(&output)
            .map_err(|e| Failure::Error(format!("cannot read the program's output: {e}")))?;
        let mut actual = std::io::BufReader::with_capacity(64 * 1024, file);
        let comparison = compare(&flags, &mut expected, &mut actual)
            .map_err(|e| Failure::Error(format!("comparing the output of test {name}: {e}")))?;
        Ok(CheckOutcome {
            accepted: comparison.accepted,
            fraction: None,
            message: comparison.message,
        })
    })
    .await
    .map_err(|e| Failure::Error(format!("comparing the output failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_marks_what_it_cut() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc… (truncated)");
        assert_eq!(truncate("ééé", 2), "éé… (truncated)");
    }
}
