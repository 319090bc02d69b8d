//! Custom checkers (ICPC output validators, testlib checkers): compiled once per content into a
//! host cache, then run for every test in a container of their own, as another uid than the
//! program, with their own limits.
//!
//! The checker's container mounts, read-only, the compiled checker at `/judge/checker` and the
//! problem's folder at `/judge/problem`; the program's container sees neither. The program's
//! output is moved (a rename, no copy) into the checker's io dir as `team_output`; the checker
//! gets a fresh, empty feedback folder `/judge/io/feedback/` for every test.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use demoter::protocol::{Exit, LimitHit, Limits, RunResult};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::language::Registry;
use crate::problem::{Checker, CheckerLanguage, CheckerProgram, Data, Problem, Scoring, TestCase};
use crate::sandbox::{
    Container, Input, OpenOptions, Run, RunOutput, Sandbox, SandboxError, Side, WorkDir, BUILD_DIR,
};
use crate::sync::lock;

/// Bump when the way checkers are built changes: every cached checker is built again.
const RECIPE: &str = "2";
/// Where the compiled checker is mounted in its container.
const CHECKER_DIR: &str = "/judge/checker";
/// Where the problem's folder is mounted in the checker's container.
const PROBLEM_DIR: &str = "/judge/problem";
/// Where a Polygon interactor's build is mounted in the checker's container.
const INTERACTOR_DIR: &str = "/judge/interactor";
const IO_DIR: &str = "/judge/io";
/// Most source a checker may have, bytes (all files of its folder together).
const MAX_SOURCE_BYTES: u64 = 16 * 1024 * 1024;
/// What is kept of a checker's messages (stderr, `judgemessage.txt`), bytes.
const MESSAGE_BYTES: usize = 4096;

/// Checker settings. Defaults are in [`CheckerConfig::default`].
#[derive(Debug, Clone)]
pub struct CheckerConfig {
    /// Where compiled checkers are kept, one folder per content hash.
    pub cache_dir: PathBuf,
    /// CPU time of one check, ms, and the most a problem may ask for (`validation_time`);
    /// wall time is 3×.
    pub time_ms: u64,
    /// Memory of one check, KB, and the most a problem may ask for (`validation_memory`).
    pub memory_kb: u64,
    /// The uid (and gid) checkers run as: never the programs' uid.
    pub uid: u32,
    /// Limits of compiling a checker.
    pub compile_limits: Limits,
}

impl Default for CheckerConfig {
    /// `/var/cache/executioner/checkers`, 30 s and 1 GiB per check, uid 59999 (outside the programs' range), compiling as
    /// submissions do (60 s of CPU, 1 GiB).
    fn default() -> Self {
        CheckerConfig {
            cache_dir: PathBuf::from("/var/cache/executioner/checkers"),
            time_ms: 30_000,
            memory_kb: 1024 * 1024,
            uid: 59999,
            compile_limits: Limits {
                cpu_ms: 60_000,
                wall_ms: 120_000,
                memory_kb: 1024 * 1024,
                pids: 64,
                output_bytes: 64 * 1024 * 1024,
                stderr_bytes: 64 * 1024,
                idle_ms: None,
            },
        }
    }
}

/// Why a checker could not give a verdict: a fault of the problem or of the judge, never the
/// contestant's.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the checker does not compile: {output}")]
    Compile { output: String },
    #[error("checker: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("checker {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no image for {0} checkers in the language registry")]
    NoImage(&'static str),
    /// The checker ran but broke its protocol: crashed, hung, exited with a code that means
    /// nothing, or wrote a bad score.
    #[error("the checker failed on test {test}: {reason}")]
    Fault { test: String, reason: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckError + '_ {
    move |source| CheckError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a checker said about one output.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    pub accepted: bool,
    /// The fraction of the test's points, when the checker gave one.
    pub fraction: Option<f64>,
    /// What it told the judges (`judgemessage.txt`, testlib's message), cut short.
    pub message: String,
}

/// Compiled checkers, cached on the host by the content of their sources.
pub struct CheckerCache {
    config: CheckerConfig,
    /// One lock per content hash, so concurrent submissions compile a checker once.
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A compiled checker: its folder in the cache and how to run it there.
#[derive(Debug, Clone)]
pub struct Built {
    pub dir: PathBuf,
    pub image: String,
    /// The command, with paths inside the checker's container.
    pub argv: Vec<String>,
    pub env: Vec<String>,
    /// Tasks the runtime needs (a JVM has threads).
    pub pids: u64,
    /// Whether this run compiled it (false: it came from the cache).
    pub compiled: bool,
}

/// The registry's language whose image runs checkers of `language`.
fn language_id(language: CheckerLanguage) -> &'static str {
    match language {
        CheckerLanguage::C => "c",
        CheckerLanguage::Cpp => "cpp",
        CheckerLanguage::Python => "python3",
        CheckerLanguage::Java => "java",
    }
}

impl CheckerCache {
    pub fn new(mut config: CheckerConfig) -> Self {
        // Bind-mounted by this path: it must be absolute.
        if let Ok(absolute) = std::path::absolute(&config.cache_dir) {
            config.cache_dir = absolute;
        }
        sweep(&config.cache_dir, std::time::Duration::from_secs(3600));
        CheckerCache {
            config,
            building: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &CheckerConfig {
        &self.config
    }

    /// The checker of `program`, compiled now or taken from the cache.
    pub async fn build(
        &self,
        program: &CheckerProgram,
        sandbox: &Sandbox,
        languages: &Registry,
    ) -> Result<Built, CheckError> {
        let language = languages
            .resolve(language_id(program.language))
            .ok_or(CheckError::NoImage(program.language.as_str()))?;
        let (key, files) = {
            let (program, image) = (program.clone(), language.image.clone());
            tokio::task::spawn_blocking(move || content_key(&program, &image))
                .await
                .map_err(|e| CheckError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })??
        };
        let dir = self.config.cache_dir.join(&key);
        let lock = {
            let mut building = lock(&self.building);
            building.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let ready = dir.join(".ready");
        let compiled = if tokio::fs::try_exists(&ready).await.unwrap_or(false) {
            false
        } else {
            // Removed whatever happens (a failure, a cancelled judging) unless it became `dir`.
            let tmp = Scratch(Some(
                self.config
                    .cache_dir
                    .join(format!("{key}.tmp-{}", uuid::Uuid::new_v4().simple())),
            ));
            let path = tmp.path().to_owned();
            self.compile(
                program,
                &files,
                &language.image,
                &language.env,
                sandbox,
                &path,
            )
            .await?;
            std::fs::write(path.join(".ready"), b"")
                .and_then(|()| match std::fs::rename(&path, &dir) {
                    // Another process built the same content meanwhile: theirs is as good.
                    Err(_) if ready.exists() => Ok(()),
                    other => other.map(|()| tmp.keep()),
                })
                .map_err(io_error(&dir))?;
            info!(checker = %program.dir.display(), cache = %dir.display(), "checker compiled");
            true
        };
        let main = program
            .sources
            .first()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let argv = match program.language {
            CheckerLanguage::C | CheckerLanguage::Cpp => vec![format!("{CHECKER_DIR}/checker")],
            CheckerLanguage::Python => vec![
                "/usr/bin/python3".into(),
                "-B".into(),
                format!("{CHECKER_DIR}/{main}"),
            ],
            CheckerLanguage::Java => vec![
                "java".into(),
                "-XX:+UseSerialGC".into(),
                "-Xss64m".into(),
                "-cp".into(),
                format!("{CHECKER_DIR}/checker.jar"),
                java_main_class(program),
            ],
        };
        Ok(Built {
            dir,
            image: language.image.clone(),
            argv,
            env: language.env.clone(),
            pids: language.run_pids.max(16),
            compiled,
        })
    }

    /// Compiles (or for Python copies) the checker's files into `out`.
    async fn compile(
        &self,
        program: &CheckerProgram,
        files: &[PathBuf],
        image: &str,
        env: &[String],
        sandbox: &Sandbox,
        out: &Path,
    ) -> Result<(), CheckError> {
        tokio::fs::create_dir_all(out)
            .await
            .map_err(io_error(out))?;
        if program.language == CheckerLanguage::Python {
            for file in files {
                let dst = out.join(file);
                tokio::fs::copy(program.dir.join(file), &dst)
                    .await
                    .map_err(io_error(&dst))?;
                set_mode(&dst, 0o644)?;
            }
            return Ok(());
        }
        let mut container = sandbox.open(image).await?;
        let result = async {
            for file in files {
                let bytes = tokio::fs::read(program.dir.join(file))
                    .await
                    .map_err(io_error(&program.dir.join(file)))?;
                container
                    .put_source(&file.to_string_lossy(), &bytes)
                    .await?;
            }
            let sources: Vec<String> = program
                .sources
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let (compile, artifact): (Vec<String>, &str) = match program.language {
                CheckerLanguage::C | CheckerLanguage::Cpp => {
                    let (compiler, standard) = match program.language {
                        CheckerLanguage::C => ("gcc", "-std=gnu17"),
                        _ => ("g++", "-std=gnu++17"),
                    };
                    (
                        [
                            compiler, standard, "-O2", "-pipe", "-static", "-o", "checker",
                        ]
                        .into_iter()
                        .map(String::from)
                        .chain(sources)
                        .chain(["-lm".to_owned()])
                        .collect(),
                        "checker",
                    )
                }
                CheckerLanguage::Java => (
                    vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        "javac -encoding UTF-8 -d classes \"$@\" && jar cf checker.jar -C classes ."
                            .into(),
                        "javac".into(),
                    ]
                    .into_iter()
                    .chain(sources)
                    .collect(),
                    "checker.jar",
                ),
                CheckerLanguage::Python => unreachable!("Python checkers are not compiled"),
            };
            let ran = container
                .run(Run {
                    argv: compile,
                    env: env.to_vec(),
                    work_dir: WorkDir::Build,
                    stdin: None,
                    limits: self.config.compile_limits,
                    io: None,
                    stderr_to_stdout: false,
                })
                .await?;
            if !ran.result.exited_normally() {
                let mut output = read_head(&ran.stderr, 4000);
                output.push_str(&read_head(&ran.stdout, 1000));
                return Err(CheckError::Compile {
                    output: format!("{} ({})", output.trim_end(), describe(&ran.result)),
                });
            }
            // The artifact leaves the container as the stdout of `cat`.
            let fetched = container
                .run(Run {
                    argv: vec!["cat".into(), format!("{BUILD_DIR}/{artifact}")],
                    env: env.to_vec(),
                    work_dir: WorkDir::Build,
                    stdin: None,
                    limits: self.config.compile_limits,
                    io: None,
                    stderr_to_stdout: false,
                })
                .await?;
            if !fetched.result.exited_normally() {
                return Err(CheckError::Compile {
                    output: format!("the compiler made no {artifact}"),
                });
            }
            let dst = out.join(artifact);
            tokio::fs::copy(&fetched.stdout, &dst)
                .await
                .map_err(io_error(&dst))?;
            set_mode(&dst, 0o755)
        }
        .await;
        container.close().await;
        result
    }
}

/// Removes what builds that never finished (a process killed mid-build) left in the cache:
/// `*.tmp-*` folders older than `age` (a younger one may be another process's build).
fn sweep(cache: &Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|elapsed| elapsed >= age);
        if old && entry.file_name().to_string_lossy().contains(".tmp-") {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                warn!(path = %entry.path().display(), error = %e, "could not remove a stale checker build");
            }
        }
    }
}

/// A folder being built in the cache, removed when dropped unless kept.
struct Scratch(Option<PathBuf>);

impl Scratch {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// The content hash of a checker (its folder's files and how it is built), and those files.
fn content_key(
    program: &CheckerProgram,
    image: &str,
) -> Result<(String, Vec<PathBuf>), CheckError> {
    let mut files = Vec::new();
    let mut total = 0;
    for entry in std::fs::read_dir(&program.dir).map_err(io_error(&program.dir))? {
        let entry = entry.map_err(io_error(&program.dir))?;
        let meta = std::fs::metadata(entry.path()).map_err(io_error(&entry.path()))?;
        let name = entry.file_name();
        if meta.is_file() && !name.to_string_lossy().starts_with('.') {
            total += meta.len();
            files.push(PathBuf::from(name));
        }
    }
    if total > MAX_SOURCE_BYTES {
        return Err(CheckError::Compile {
            output: format!(
                "its folder holds {total} bytes, more than {MAX_SOURCE_BYTES} bytes of source"
            ),
        });
    }
    files.sort();
    let mut hash = Sha256::new();
    hash.update(RECIPE.as_bytes());
    hash.update(program.language.as_str().as_bytes());
    // A new image may need the checker built again (another JVM, another Python).
    hash.update(image.as_bytes());
    for source in &program.sources {
        hash.update(b"\0source\0");
        hash.update(source.to_string_lossy().as_bytes());
    }
    for file in &files {
        let path = program.dir.join(file);
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        hash.update(b"\0file\0");
        hash.update(file.to_string_lossy().as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    let key = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((key, files))
}

/// The class a Java checker runs: the source that declares `main`, by its file name.
fn java_main_class(program: &CheckerProgram) -> String {
    let has_main = |source: &PathBuf| {
        std::fs::read_to_string(program.dir.join(source))
            .map(|text| text.contains("static void main"))
            .unwrap_or(false)
    };
    program
        .sources
        .iter()
        .find(|s| has_main(s))
        .or(program.sources.first())
        .and_then(|s| s.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CheckError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(path))
}

/// At most `max` bytes of a file, as text.
fn read_head(path: &Path, max: usize) -> String {
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(max as u64).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn describe(result: &RunResult) -> String {
    match (result.limit, result.exit) {
        (Some(LimitHit::Time), _) => format!("exceeded its CPU time limit ({} ms)", result.cpu_ms),
        (Some(LimitHit::Wall), _) => {
            format!("exceeded its wall time limit ({} ms)", result.wall_ms)
        }
        (Some(LimitHit::Memory), _) => "exceeded its memory limit".to_owned(),
        (Some(LimitHit::Output), _) => "wrote more than its output limit".to_owned(),
        (None, Exit::Exited { code }) => format!("exit code {code}"),
        (None, Exit::Signaled { signal }) => format!("killed by signal {signal}"),
    }
}

/// A checker's container for one submission, ready to check its outputs.
pub struct CheckerBox {
    container: Container,
    built: Built,
    /// A Polygon interactor's command (a static binary, mounted beside the checker).
    interactor: Option<Vec<String>>,
    checker: Checker,
    problem_dir: PathBuf,
    limits: Limits,
    uid: u32,
    /// Whether score files mean anything: in a pass-fail problem they are ignored.
    scored: bool,
}

impl CheckerBox {
    /// Starts the container for `problem`'s checker (compiled as `built`). An interactive
    /// problem's checker gets `peer_io`, the io dir of the program's container (where the
    /// FIFOs are), mounted for its agent.
    pub async fn open(
        sandbox: &Sandbox,
        config: &CheckerConfig,
        built: Built,
        problem: &Problem,
        peer_io: Option<PathBuf>,
        interactor: Option<Built>,
    ) -> Result<CheckerBox, CheckError> {
        let mut read_only = vec![
            (built.dir.clone(), CHECKER_DIR.to_owned()),
            (problem.dir.clone(), PROBLEM_DIR.to_owned()),
        ];
        let interactor = interactor.map(|it| {
            read_only.push((it.dir.clone(), INTERACTOR_DIR.to_owned()));
            // C and C++ build to one static binary, which runs in any checker's image.
            it.argv
                .iter()
                .map(|arg| arg.replacen(CHECKER_DIR, INTERACTOR_DIR, 1))
                .collect()
        });
        let options = OpenOptions {
            read_only,
            uid: Some(config.uid),
            io_traversable: true,
            peer_io,
        };
        let container = sandbox.open_with(&built.image, &options).await?;
        // A package may ask for less than the operator's limits, never for more.
        let time_ms = problem
            .validation
            .time_ms
            .map_or(config.time_ms, |t| t.min(config.time_ms));
        let limits = Limits {
            cpu_ms: time_ms,
            wall_ms: time_ms.saturating_mul(3),
            memory_kb: problem
                .validation
                .memory_kb
                .map_or(config.memory_kb, |m| m.min(config.memory_kb)),
            pids: built.pids,
            output_bytes: 8 * 1024 * 1024,
            stderr_bytes: 64 * 1024,
            idle_ms: None,
        };
        Ok(CheckerBox {
            container,
            built,
            interactor,
            checker: problem.checker.clone(),
            problem_dir: problem.dir.clone(),
            limits,
            uid: config.uid,
            scored: problem.scoring != Scoring::PassFail,
        })
    }

    /// Removes the container.
    pub async fn close(self) {
        self.container.close().await;
    }

    /// Where the checker finds `data`: the problem's file through the read-only mount, or the
    /// bytes written into its io dir as `name`.
    fn place(&self, data: &Data, name: &str) -> Result<String, CheckError> {
        if let Data::File(path) = data {
            if let Ok(relative) = path.strip_prefix(&self.problem_dir) {
                return Ok(format!("{PROBLEM_DIR}/{}", relative.display()));
            }
        }
        let host = self.container.io_dir().join(name);
        let _ = std::fs::remove_file(&host);
        data.copy_to(&host).map_err(io_error(&host))?;
        set_mode(&host, 0o644)?;
        Ok(format!("{IO_DIR}/{name}"))
    }

    /// Takes the program's `output` (a file on the host, moved away, so the program's next run
    /// can begin at once) for the next [`CheckerBox::check`], with a fresh feedback folder.
    pub async fn take(&mut self, output: &Path) -> Result<(), CheckError> {
        self.take_output(output, true).await
    }

    /// [`CheckerBox::take`] for a later pass of a multi-pass test: the feedback folder stays
    /// as the validator left it, without the `nextpass.in` already taken.
    pub async fn take_next_pass(&mut self, output: &Path) -> Result<(), CheckError> {
        self.take_output(output, false).await
    }

    async fn take_output(&mut self, output: &Path, fresh: bool) -> Result<(), CheckError> {
        let io = self.container.io_dir().to_owned();
        let (output, team, feedback, uid) = (
            output.to_owned(),
            io.join("team_output"),
            io.join("feedback"),
            self.uid,
        );
        tokio::task::spawn_blocking(move || {
            prepare(&output, &team, fresh.then_some((&feedback, uid)))
        })
        .await
        .map_err(|e| CheckError::Io {
            path: io,
            source: std::io::Error::other(e),
        })?
    }

    /// Moves the `nextpass.in` the validator wrote in its feedback folder to `to` (a file of
    /// the program's io dir); `false` when it wrote none. A link or anything but a plain file
    /// there is the validator's fault.
    pub async fn take_next_input(
        &mut self,
        test: &TestCase,
        to: &Path,
    ) -> Result<bool, CheckError> {
        let from = self.container.io_dir().join("feedback/nextpass.in");
        let (to, name) = (to.to_owned(), test.name.clone());
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::OpenOptionsExt;
            let file = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc_o_nofollow())
                .open(&from)
            {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(_) => {
                    return Err(CheckError::Fault {
                        test: name,
                        reason: "its nextpass.in is not a plain file".into(),
                    })
                }
                Ok(file) => file,
            };
            let plain = file.metadata().map(|m| m.is_file()).unwrap_or(false);
            if !plain {
                return Err(CheckError::Fault {
                    test: name,
                    reason: "its nextpass.in is not a plain file".into(),
                });
            }
            let _ = std::fs::remove_file(&to);
            let mut out = std::fs::File::create(&to).map_err(io_error(&to))?;
            std::io::copy(&mut &file, &mut out).map_err(io_error(&to))?;
            std::fs::remove_file(&from).map_err(io_error(&from))?;
            Ok(true)
        })
        .await
        .map_err(|e| CheckError::Io {
            path: PathBuf::from("nextpass.in"),
            source: std::io::Error::other(e),
        })?
    }

    /// Judges the output taken last of `test`.
    pub async fn check(&mut self, test: &TestCase) -> Result<CheckOutcome, CheckError> {
        let io = self.container.io_dir().to_owned();
        let team = io.join("team_output");
        let input = self.place(&test.input, "input")?;
        let answer = self.place(&test.answer, "answer")?;
        let team_path = format!("{IO_DIR}/team_output");
        let mut argv = self.built.argv.clone();
        let stdin = match self.checker {
            Checker::Testlib(_) => {
                argv.extend([input, team_path, answer]);
                None
            }
            _ => {
                argv.extend([input, answer, format!("{IO_DIR}/feedback/")]);
                argv.extend(test.checker_args.iter().cloned());
                Some(Input::IoFile("team_output"))
            }
        };
        let ran = self.run(argv, stdin).await?;
        let outcome = self.outcome(test, &ran)?;
        let _ = tokio::fs::remove_file(&team).await;
        Ok(outcome)
    }

    /// Runs the interactor of `test` (ICPC: `validator input answer feedback_dir [args]`)
    /// talking to the program's run through the FIFOs of the program's container, which the
    /// caller starts at the same time. Also gives when the interactor ended (monotonic ns),
    /// to tell which side ended first.
    pub async fn interact(&mut self, test: &TestCase) -> Result<(CheckOutcome, u64), CheckError> {
        let io = self.container.io_dir().to_owned();
        let (feedback, uid) = (io.join("feedback"), self.uid);
        tokio::task::spawn_blocking(move || fresh_feedback(&feedback, uid))
            .await
            .map_err(|e| CheckError::Io {
                path: io,
                source: std::io::Error::other(e),
            })??;
        let input = self.place(&test.input, "input")?;
        let answer = self.place(&test.answer, "answer")?;
        // ICPC: the validator interacts and decides. Polygon: the interactor writes a log
        // (`interactor input log answer`) that the checker then judges.
        let log = format!("{IO_DIR}/feedback/log");
        let argv = match &self.interactor {
            Some(interactor) => {
                let mut argv = interactor.clone();
                argv.extend([input, log, answer]);
                argv
            }
            None => {
                let mut argv = self.built.argv.clone();
                argv.extend([input, answer, format!("{IO_DIR}/feedback/")]);
                argv.extend(test.checker_args.iter().cloned());
                argv
            }
        };
        let ran = self.run(argv, Some(Input::Pipe(Side::Interactor))).await?;
        let ended = ran.result.ended_ns.unwrap_or(u64::MAX);
        if self.interactor.is_none() {
            return Ok((self.outcome(test, &ran)?, ended));
        }
        // testlib's exit codes: anything but ok is the interactor's verdict (or fault);
        // after ok, the checker judges the log as the program's output.
        let said = self.outcome_as(test, &ran, true)?;
        if !said.accepted {
            return Ok((said, ended));
        }
        let log = self.container.io_dir().join("feedback/log");
        self.take(&log).await?;
        Ok((self.check(test).await?, ended))
    }

    /// One run of the checker's (or interactor's) `argv` in a fresh folder, under its limits.
    async fn run(
        &mut self,
        argv: Vec<String>,
        stdin: Option<Input<'_>>,
    ) -> Result<RunOutput, CheckError> {
        let run = Run {
            argv,
            env: self.built.env.clone(),
            work_dir: WorkDir::Fresh,
            stdin,
            limits: self.limits,
            io: None,
            stderr_to_stdout: false,
        };
        Ok(self.container.run(run).await?)
    }

    /// What the checker's finished run means, or its fault.
    fn outcome(&self, test: &TestCase, ran: &RunOutput) -> Result<CheckOutcome, CheckError> {
        self.outcome_as(test, ran, false)
    }

    /// [`CheckerBox::outcome`]; `testlib` reads the exit code as testlib's whatever the
    /// checker is (a Polygon interactor).
    fn outcome_as(
        &self,
        test: &TestCase,
        ran: &RunOutput,
        testlib: bool,
    ) -> Result<CheckOutcome, CheckError> {
        let feedback = self.container.io_dir().join("feedback");
        let stderr = read_head(&ran.stderr, MESSAGE_BYTES);
        // What the checker itself said stays in the log: it may quote the answer, and the
        // reason of an `error` reaches the contest platform.
        let fault = |reason: String| {
            let said = feedback_file(&feedback, "judgemessage.txt", MESSAGE_BYTES);
            warn!(test = %test.name, %reason, stderr = %stderr.trim(), judgemessage = %said.unwrap_or_default().trim(), "checker failed");
            CheckError::Fault {
                test: test.name.clone(),
                reason,
            }
        };
        if ran.result.limit.is_some() || matches!(ran.result.exit, Exit::Signaled { .. }) {
            return Err(fault(format!("it {}", describe(&ran.result))));
        }
        let Exit::Exited { code } = ran.result.exit else {
            unreachable!("signals are handled above")
        };
        match self.checker {
            _ if testlib => testlib_outcome(code, &stderr).map_err(fault),
            Checker::Testlib(_) => testlib_outcome(code, &stderr).map_err(fault),
            // Samples of a scoring problem are not scored: their score files are ignored too.
            _ => {
                icpc_outcome(code, &feedback, test, self.scored && test.weight > 0.0).map_err(fault)
            }
        }
    }
}

/// Moves the program's output to the checker's io dir and makes an empty feedback folder its
/// uid owns.
fn prepare(output: &Path, team: &Path, feedback: Option<(&Path, u32)>) -> Result<(), CheckError> {
    let _ = std::fs::remove_file(team);
    if std::fs::rename(output, team).is_err() {
        // Another file system: a kernel copy, then the program's file goes.
        std::fs::copy(output, team).map_err(io_error(team))?;
        let _ = std::fs::remove_file(output);
    }
    set_mode(team, 0o644)?;
    match feedback {
        Some((feedback, uid)) => fresh_feedback(feedback, uid),
        None => Ok(()),
    }
}

/// `O_NOFOLLOW`: a link the checker left is never followed on the host.
fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// An empty feedback folder that the checker's uid owns.
fn fresh_feedback(feedback: &Path, uid: u32) -> Result<(), CheckError> {
    match std::fs::remove_dir_all(feedback) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(feedback)(e));
        }
        _ => {}
    }
    std::fs::create_dir(feedback).map_err(io_error(feedback))?;
    std::os::unix::fs::chown(feedback, Some(uid), Some(uid)).map_err(io_error(feedback))?;
    set_mode(feedback, 0o700)
}

/// A file of the feedback folder, at most `max` bytes; `None` when absent.
fn feedback_file(feedback: &Path, name: &str, max: usize) -> Option<String> {
    let path = feedback.join(name);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if !meta.is_file() {
        return Some(String::new());
    }
    Some(read_head(&path, max))
}

fn parse_fraction(text: &str, what: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what} does not hold a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{what} holds {value}"))
    }
}

/// The ICPC protocol: 42 accepts, 43 rejects, anything else is the validator's failure;
/// `score_multiplier.txt` is a fraction, `score.txt` points out of the test's maximum.
fn icpc_outcome(
    code: i32,
    feedback: &Path,
    test: &TestCase,
    scored: bool,
) -> Result<CheckOutcome, String> {
    let message = feedback_file(feedback, "judgemessage.txt", MESSAGE_BYTES).unwrap_or_default();
    let score_file = |name| feedback_file(feedback, name, 256).filter(|_| scored);
    let (multiplier, score) = (score_file("score_multiplier.txt"), score_file("score.txt"));
    match code {
        42 => {
            let fraction = match (multiplier, score) {
                (Some(_), Some(_)) => {
                    return Err("it wrote both score.txt and score_multiplier.txt".into())
                }
                (Some(m), None) => Some(parse_fraction(&m, "score_multiplier.txt")?),
                (None, Some(s)) => {
                    let points = parse_fraction(&s, "score.txt")?;
                    if test.max_score <= 0.0 {
                        return Err("it wrote score.txt for a test worth nothing".into());
                    }
                    Some(points / test.max_score)
                }
                (None, None) => None,
            };
            if let Some(f) = fraction {
                if !(-1e-9..=1.0 + 1e-9).contains(&f) {
                    return Err(format!(
                        "its score is {f} of the test's points, not in [0, 1]"
                    ));
                }
            }
            Ok(CheckOutcome {
                accepted: true,
                fraction: fraction.map(|f| f.clamp(0.0, 1.0)),
                message,
            })
        }
        43 => {
            if multiplier.is_some() || score.is_some() {
                return Err("it rejected the output but wrote a score".into());
            }
            Ok(CheckOutcome {
                accepted: false,
                fraction: None,
                message,
            })
        }
        other => Err(format!(
            "exit code {other} (an output validator exits 42 to accept, 43 to reject)"
        )),
    }
}

/// testlib's exit codes: 0 OK, 1 WA, 2 PE, 3 FAIL, 7 points (the value first on stderr, after
/// an optional `points` word).
fn testlib_outcome(code: i32, stderr: &str) -> Result<CheckOutcome, String> {
    let message = stderr.trim().to_owned();
    match code {
        0 => Ok(CheckOutcome {
            accepted: true,
            fraction: None,
            message,
        }),
        1 | 2 => Ok(CheckOutcome {
            accepted: false,
            fraction: None,
            message,
        }),
        3 => Err("it reported FAIL".to_owned()),
        7 => {
            let mut words = message.split_whitespace();
            let first = words.next().unwrap_or_default();
            let value = if first.eq_ignore_ascii_case("points") {
                words.next().unwrap_or_default()
            } else {
                first
            };
            let fraction = parse_fraction(value, "its points message")?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(format!(
                    "it gave {fraction} points, not a fraction in [0, 1] of the test"
                ));
            }
            Ok(CheckOutcome {
                accepted: fraction > 0.0,
                fraction: Some(fraction),
                message,
            })
        }
        other => Err(format!(
            "exit code {other} (testlib checkers exit 0, 1, 2, 3 or 7)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_case(max_score: f64) -> TestCase {
        TestCase {
            name: "secret/1".into(),
            input: Data::Inline("".into()),
            answer: Data::Inline("".into()),
            subtask: None,
            weight: 1.0,
            max_score,
            checker_args: Vec::new(),
        }
    }

    #[test]
    fn icpc_exit_codes_and_score_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path();
        let t = test_case(20.0);
        let ok = icpc_outcome(42, f, &t, true).unwrap();
        assert!(ok.accepted && ok.fraction.is_none());
        std::fs::write(f.join("judgemessage.txt"), "token 3 wrong").unwrap();
        let wa = icpc_outcome(43, f, &t, true).unwrap();
        assert!(!wa.accepted);
        assert_eq!(wa.message, "token 3 wrong");
        assert!(icpc_outcome(0, f, &t, true)
            .unwrap_err()
            .contains("exit code 0"));
        assert!(icpc_outcome(1, f, &t, true).is_err());
        std::fs::write(f.join("score.txt"), "5\n").unwrap();
        assert_eq!(icpc_outcome(42, f, &t, true).unwrap().fraction, Some(0.25));
        assert!(icpc_outcome(43, f, &t, true)
            .unwrap_err()
            .contains("wrote a score"));
        std::fs::write(f.join("score.txt"), "25").unwrap();
        assert!(icpc_outcome(42, f, &t, true)
            .unwrap_err()
            .contains("not in [0, 1]"));
        std::fs::write(f.join("score.txt"), "lots").unwrap();
        assert!(icpc_outcome(42, f, &t, true)
            .unwrap_err()
            .contains("not hold a number"));
        std::fs::remove_file(f.join("score.txt")).unwrap();
        std::fs::write(f.join("score_multiplier.txt"), "0.5").unwrap();
        assert_eq!(icpc_outcome(42, f, &t, true).unwrap().fraction, Some(0.5));
        std::fs::write(f.join("score.txt"), "1").unwrap();
        assert!(icpc_outcome(42, f, &t, true).unwrap_err().contains("both"));
        // Where scores mean nothing (pass-fail problems, samples) score files are ignored.
        let plain = icpc_outcome(42, f, &t, false).unwrap();
        assert!(plain.accepted && plain.fraction.is_none());
        assert!(!icpc_outcome(43, f, &t, false).unwrap().accepted);
    }

    #[test]
    fn testlib_exit_codes_and_points() {
        assert!(testlib_outcome(0, "ok 3 numbers").unwrap().accepted);
        assert!(
            !testlib_outcome(1, "wrong answer 1st numbers differ")
                .unwrap()
                .accepted
        );
        assert!(!testlib_outcome(2, "wrong output format").unwrap().accepted);
        // What the checker said is logged, never put in the reason (it may quote the answer).
        let fail = testlib_outcome(3, "FAIL expected 42").unwrap_err();
        assert!(fail.contains("FAIL") && !fail.contains("42"), "{fail}");
        assert_eq!(
            testlib_outcome(7, "points 0.5 sum only").unwrap().fraction,
            Some(0.5)
        );
        assert_eq!(testlib_outcome(7, "0.25").unwrap().fraction, Some(0.25));
        assert!(testlib_outcome(7, "points 3").is_err());
        assert!(testlib_outcome(7, "").is_err());
        assert!(testlib_outcome(4, "").is_err());
    }

    #[test]
    fn stale_builds_are_swept_and_fresh_ones_kept() {
        let cache = tempfile::tempdir().unwrap();
        for name in ["abc.tmp-1", "abc", "def.tmp-2"] {
            std::fs::create_dir(cache.path().join(name)).unwrap();
        }
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for name in ["abc.tmp-1", "abc"] {
            std::fs::File::open(cache.path().join(name))
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        sweep(cache.path(), std::time::Duration::from_secs(3600));
        let mut left: Vec<String> = std::fs::read_dir(cache.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["abc", "def.tmp-2"]);
    }

    #[test]
    fn the_content_key_follows_every_file_of_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("check.cpp"), "int main(){}").unwrap();
        std::fs::write(dir.path().join("testlib.h"), "// a").unwrap();
        let program = CheckerProgram {
            dir: dir.path().to_owned(),
            sources: vec!["check.cpp".into()],
            language: CheckerLanguage::Cpp,
        };
        let (first, files) = content_key(&program, "gxx").unwrap();
        assert_eq!(files, vec![PathBuf::from("check.cpp"), "testlib.h".into()]);
        assert_eq!(content_key(&program, "gxx").unwrap().0, first);
        assert_ne!(content_key(&program, "other").unwrap().0, first);
        std::fs::write(dir.path().join("testlib.h"), "// b").unwrap();
        assert_ne!(content_key(&program, "gxx").unwrap().0, first);
    }
}
