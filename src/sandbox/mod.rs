//! The sandbox: one Docker container per submission, with the demoter running inside it as an
//! agent that takes run requests over the container's stdin and answers on its stdout, so a
//! test costs no Docker API round trip.
//!
//! Container layout (the contract with the demoter and the images):
//! - `/judge/demoter`: the static demoter binary (read-only bind mount);
//! - `/judge/cgroup`: the box's cgroup subtree (v1: one directory per controller);
//! - `/judge/io`: a host temp dir, root-only, for the source, test input and program output
//!   (expected outputs never enter the container);
//! - `/box`: tmpfs; `/box/build` holds the source and what compiling made, sealed read-only
//!   before tests; each test runs in a fresh `/box/run` removed afterwards;
//! - `/tmp`: tmpfs, emptied after every run (as are `/dev/shm`, `/dev/mqueue` and the System V
//!   IPC objects); the root file system is read-only;
//! - `/etc/resolv.conf` (empty), `/etc/hosts` (localhost only), `/etc/hostname` (`sandbox`, also
//!   the UTS host name): read-only files of the [`Sandbox`], never the host's.

mod agent;
pub mod cgroup;
mod cpus;
mod pool;
mod uids;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigCgroupnsModeEnum};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use bollard::Docker;
use demoter::protocol::{Limits, Pipe, Request, Response, RunResult, RunSpec, PROTOCOL_VERSION};

use self::agent::Agent;
use self::cgroup::{BoxCgroup, HostCgroups, Version};
pub use self::cpus::{pinned, Cpus, HeldCpu};
pub use self::pool::{WarmContainer, HEALTH_TIMEOUT};
use self::uids::{BoxUid, Uids};
use crate::backoff::Backoff;
use crate::problem::{Data, ProblemIo};
use crate::sync::lock;

/// Where the box tmpfs is mounted in the container.
pub const BOX_DIR: &str = "/box";
/// The build directory inside the container.
pub const BUILD_DIR: &str = "/box/build";
/// The per-run working directory inside the container (fresh for every run).
const RUN_DIR: &str = "/box/run";
const IO_DIR: &str = "/judge/io";
/// The agent's Unix socket, in the io dir (root-only to programs); removed once connected.
const AGENT_SOCKET: &str = "agent.sock";
/// Where a checker's container sees the io dir of the program it interacts with.
const PEER_DIR: &str = "/judge/peer";
/// The FIFO the interactor writes and the program reads, in the program's io dir.
const TO_PROGRAM: &str = "to-program";
/// The FIFO the program writes and the interactor reads.
const TO_INTERACTOR: &str = "to-interactor";
const CGROUP_DIR: &str = "/judge/cgroup";
const DEMOTER_PATH: &str = "/judge/demoter";
/// Container label that marks sandboxes, with the owning process as `host:pid`.
const OWNER_LABEL: &str = "executioner.owner";
/// The host name every container has (in its UTS namespace and its `/etc/hostname`).
pub const HOSTNAME: &str = "sandbox";
/// Prefix of the host dir of a [`Sandbox`]'s `/etc` files, followed by its process id.
const ETC_PREFIX: &str = "executioner-etc-";
/// The files Docker would otherwise write from the host into every container (mounted at
/// `/etc/<name>`, read-only).
const ETC_FILES: [&str; 3] = ["resolv.conf", "hosts", "hostname"];

/// What the containers get instead: no resolver (there is no network), localhost only,
/// [`HOSTNAME`].
fn etc_content(name: &str) -> String {
    match name {
        "hosts" => "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_owned(),
        "hostname" => format!("{HOSTNAME}\n"),
        _ => String::new(),
    }
}

/// A failure of the sandbox or of Docker: never a result of the judged program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("docker: {action}: {source}")]
    Docker {
        action: &'static str,
        source: bollard::errors::Error,
    },
    #[error("image {image:?} is not available (build it with sandbox-images/build)")]
    ImageMissing { image: String },
    #[error("demoter binary {path}: {reason}")]
    Demoter { path: PathBuf, reason: String },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "all {count} box uids from {first} are in use: more boxes at once than the range holds"
    )]
    NoUid { first: u32, count: u32 },
    #[error("sandbox agent in container {container} ended unexpectedly{}", stderr_suffix(.stderr))]
    AgentGone { container: String, stderr: String },
    #[error("sandbox agent in container {container} did not answer within {after:?}")]
    AgentTimeout { container: String, after: Duration },
    #[error("sandbox agent in container {container} answered {answer:?}")]
    AgentProtocol { container: String, answer: String },
    #[error("sandbox agent in container {container} failed: {error}")]
    AgentFailed { container: String, error: String },
}

impl SandboxError {
    /// A short name of the failure, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SandboxError::Docker { .. } => "docker",
            SandboxError::ImageMissing { .. } => "image_missing",
            SandboxError::Demoter { .. } => "demoter",
            SandboxError::Cgroup { .. } => "cgroup",
            SandboxError::Io { .. } => "io",
            SandboxError::NoUid { .. } => "no_uid",
            SandboxError::AgentGone { .. } => "agent_gone",
            SandboxError::AgentTimeout { .. } => "agent_timeout",
            SandboxError::AgentProtocol { .. } => "agent_protocol",
            SandboxError::AgentFailed { .. } => "agent_failed",
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// An engine error about `image`: a 404 is the image missing, anything else the engine failing
/// to `action`.
fn image_error(image: &str, action: &'static str, source: bollard::errors::Error) -> SandboxError {
    match source {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        } => SandboxError::ImageMissing {
            image: image.to_owned(),
        },
        source => SandboxError::Docker { action, source },
    }
}

/// Sandbox settings. Defaults are in [`SandboxConfig::new`].
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The static demoter binary, bind-mounted into every container.
    pub demoter: PathBuf,
    /// The host's cgroup mount root.
    pub cgroup_root: PathBuf,
    /// Name of the cgroup all boxes are created under.
    pub cgroup_parent: String,
    /// Where host temp dirs of boxes are created.
    pub work_dir: PathBuf,
    /// The first of the unprivileged uids programs run as, one per box (`uid .. uid +
    /// box_uids`), and their gid (the `runner` group of the images).
    pub uid: u32,
    pub gid: u32,
    /// How many uids boxes are lent from (at most this many boxes at once on the host).
    pub box_uids: u32,
    /// Where the lent uids are locked; shared by every worker process on the host.
    pub uid_dir: PathBuf,
    /// Where the CPUs lent to runs are locked ([`Cpus`]); shared by every worker process on the
    /// host.
    pub cpu_dir: PathBuf,
    /// Size of the `/box` tmpfs, MiB.
    pub box_tmpfs_mb: u64,
    /// Size of the `/tmp` tmpfs, MiB.
    pub tmp_tmpfs_mb: u64,
    /// Memory cap of the container itself (the agent; runs have their own cgroups), MiB.
    pub container_memory_mb: u64,
    /// Tasks alive at once in a box (all runs together) and in the container itself.
    pub pids: u64,
    /// How long a container may take to start and report ready.
    pub start_timeout: Duration,
    /// Containers kept started and ready per image of `warm_images` (the warm pool, see
    /// `pool.rs`); 0: no pool.
    pub warm_pool: usize,
    /// The images the warm pool keeps ready.
    pub warm_images: Vec<String>,
}

impl SandboxConfig {
    /// Defaults: cgroups under `/sys/fs/cgroup/.../executioner`, uids 60000-60999 (locked in
    /// `<temp dir>/executioner.uids`), gid 60000, CPUs locked in `<temp dir>/executioner.cpus`,
    /// a 512 MiB `/box`, a 64 MiB `/tmp`, a 256 MiB container cap, 512 tasks, 30 s to start, no
    /// warm pool.
    pub fn new(demoter: PathBuf) -> Self {
        SandboxConfig {
            demoter,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            cgroup_parent: "executioner".into(),
            work_dir: std::env::temp_dir(),
            uid: 60000,
            gid: 60000,
            box_uids: 1000,
            uid_dir: std::env::temp_dir().join("executioner.uids"),
            cpu_dir: std::env::temp_dir().join("executioner.cpus"),
            box_tmpfs_mb: 512,
            tmp_tmpfs_mb: 64,
            container_memory_mb: 256,
            pids: 512,
            start_timeout: Duration::from_secs(30),
            warm_pool: 0,
            warm_images: Vec::new(),
        }
    }
}

/// Connection to Docker and the host cgroups; opens containers.
#[derive(Clone)]
pub struct Sandbox {
    docker: Docker,
    config: Arc<SandboxConfig>,
    cgroups: HostCgroups,
    uids: Arc<Uids>,
    cpus: Arc<Cpus>,
    /// Containers of this process whose removal failed (the engine was away): removed when the
    /// next box opens.
    unremoved: Arc<std::sync::Mutex<Vec<String>>>,
    owner: String,
    /// The `/etc` files of its containers, removed when the last clone and container are gone.
    etc: Arc<tempfile::TempDir>,
    /// Containers started ahead of time ([`Sandbox::prewarm`], [`Sandbox::close_pool`]).
    pool: Arc<pool::Pool>,
    /// Image ids by image name, with when they were asked (see [`Sandbox::image_id`]).
    image_ids: Arc<std::sync::Mutex<HashMap<String, (String, std::time::Instant)>>>,
}

impl Sandbox {
    /// Connects to the local Docker engine (negotiating its API version) and prepares cgroups.
    pub async fn connect(config: SandboxConfig) -> Result<Self, SandboxError> {
        let demoter_reason = match std::fs::metadata(&config.demoter) {
            Ok(m) if m.is_file() => None,
            Ok(_) => Some("is not a file".to_owned()),
            Err(e) => Some(format!(
                "{e} (build it with scripts/build-demoter and pass --demoter or EXECUTIONER_DEMOTER)"
            )),
        };
        if let Some(reason) = demoter_reason {
            return Err(SandboxError::Demoter {
                path: config.demoter.clone(),
                reason,
            });
        }
        let docker = Docker::connect_with_local_defaults()
            .map_err(|source| SandboxError::Docker {
                action: "connect",
                source,
            })?
            .negotiate_version()
            .await
            .map_err(|source| SandboxError::Docker {
                action: "negotiate the API version",
                source,
            })?;
        let cgroups = HostCgroups::prepare(&config.cgroup_root, &config.cgroup_parent)?;
        let uids = Uids::new(&config.uid_dir, config.uid, config.box_uids)?;
        let cpus = Cpus::new(&config.cpu_dir)?;
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let etc = create_etc(&config.work_dir)?;
        Ok(Sandbox {
            docker,
            cgroups,
            uids: Arc::new(uids),
            cpus: Arc::new(cpus),
            unremoved: Arc::default(),
            owner: format!("{host}:{}", std::process::id()),
            pool: Arc::new(pool::Pool::new(&config)),
            config: Arc::new(config),
            etc: Arc::new(etc),
            image_ids: Arc::default(),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The CPUs runs are pinned to (see [`pinned`]).
    pub fn cpus(&self) -> &Cpus {
        &self.cpus
    }

    /// The id (`sha256:...`) of the image named `image`, as Docker has it now: what the
    /// compile cache keys builds by, so that a rebuilt image is another compiler. Asked of
    /// Docker at most once a minute per image and process.
    pub async fn image_id(&self, image: &str) -> Result<String, SandboxError> {
        const FRESH: Duration = Duration::from_secs(60);
        if let Some((id, asked)) = lock(&self.image_ids).get(image) {
            if asked.elapsed() < FRESH {
                return Ok(id.clone());
            }
        }
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(|source| image_error(image, "inspect an image", source))?;
        let id = inspected.id.ok_or_else(|| SandboxError::ImageMissing {
            image: image.to_owned(),
        })?;
        lock(&self.image_ids).insert(image.to_owned(), (id.clone(), std::time::Instant::now()));
        Ok(id)
    }

    /// Tries again to remove the containers whose removal failed (the engine was unreachable
    /// or restarting when their boxes closed).
    async fn remove_unremoved(&self) {
        let ids = std::mem::take(&mut *lock(&self.unremoved));
        for id in ids {
            if remove_container(&self.docker, &id).await {
                tracing::info!(container = %short(&id), "removed a sandbox container left when the engine was away");
            } else {
                lock(&self.unremoved).push(id);
            }
        }
    }

    /// Removes sandbox containers (and their cgroups) left by processes of this host that are
    /// gone, e.g. a worker that was SIGKILLed. Returns how many containers were removed.
    pub async fn remove_leftovers(&self) -> Result<usize, SandboxError> {
        let host = self.owner.split(':').next().unwrap_or_default().to_owned();
        let filters = HashMap::from([("label".to_owned(), vec![OWNER_LABEL.to_owned()])]);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|source| SandboxError::Docker {
                action: "list sandbox containers",
                source,
            })?;
        let mut removed = 0;
        for c in containers {
            let owner = c
                .labels
                .as_ref()
                .and_then(|l| l.get(OWNER_LABEL))
                .cloned()
                .unwrap_or_default();
            let Some((owner_host, pid)) = owner.split_once(':') else {
                continue;
            };
            let alive = pid
                .parse::<i32>()
                .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if owner_host != host || alive {
                continue;
            }
            if let Some(id) = c.id {
                remove_container(&self.docker, &id).await;
                removed += 1;
            }
            // Its host io dir: only one of ours (under the work dir, named by us) is removed.
            let io = c.mounts.unwrap_or_default().into_iter().find_map(|m| {
                (m.destination.as_deref() == Some(IO_DIR))
                    .then_some(m.source)
                    .flatten()
            });
            if let Some(io) = io.map(PathBuf::from) {
                let ours = io.parent() == Some(self.config.work_dir.as_path())
                    && io
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("executioner-"));
                if ours {
                    if let Err(e) = tokio::fs::remove_dir_all(&io).await {
                        tracing::warn!(path = %io.display(), error = %e, "could not remove a leftover io dir");
                    }
                }
            }
        }
        // Box cgroups of containers that no longer exist.
        let docker = self.docker.clone();
        let live: Vec<String> = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|source| SandboxError::Docker {
                action: "list containers",
                source,
            })?
            .into_iter()
            .flat_map(|c| c.names.unwrap_or_default())
            .map(|n| n.trim_start_matches('/').to_owned())
            .collect();
        let cgroups = self.cgroups.clone();
        tokio::task::spawn_blocking(move || {
            cgroups.remove_stale(|name| {
                name.starts_with("executioner-") && !live.iter().any(|l| l == name)
            })
        })
        .await
        .ok();
        let work_dir = self.config.work_dir.clone();
        tokio::task::spawn_blocking(move || remove_stale_etc(&work_dir))
            .await
            .ok();
        Ok(removed)
    }

    /// Starts a container from `image` with the demoter agent in it, ready for requests; one
    /// from the warm pool when it has a healthy one (see `pool.rs`).
    pub async fn open(&self, image: &str) -> Result<Container, SandboxError> {
        if let Some(container) = self.take_warm(image).await {
            return Ok(container);
        }
        self.open_with(image, &OpenOptions::default()).await
    }

    /// [`Sandbox::open`] with extra read-only mounts and another identity for its runs (a
    /// checker's container); always a fresh start, never from the warm pool.
    pub async fn open_with(
        &self,
        image: &str,
        options: &OpenOptions,
    ) -> Result<Container, SandboxError> {
        let started = std::time::Instant::now();
        let opened = self.start_container(image, options).await;
        if opened.is_ok() {
            crate::metrics::global().observe_container_start(image, started.elapsed());
        }
        opened
    }

    async fn start_container(
        &self,
        image: &str,
        options: &OpenOptions,
    ) -> Result<Container, SandboxError> {
        self.remove_unremoved().await;
        let name = format!("executioner-{}", uuid::Uuid::new_v4().simple());
        let io = tempfile::Builder::new()
            .prefix("executioner-")
            .tempdir_in(&self.config.work_dir)
            .map_err(|source| SandboxError::Io {
                path: self.config.work_dir.clone(),
                source,
            })?;
        // The io dir is root-only: programs (uid 60000) cannot see inputs or outputs. A checker's
        // may be entered (not listed) so it can write its feedback folder there.
        set_mode(
            io.path(),
            if options.io_traversable { 0o711 } else { 0o700 },
        )?;
        // A program's box has a uid of its own; a checker's runs as the checker's.
        let (box_uid, uid, gid) = match options.uid {
            Some(uid) => (None, uid, uid),
            None => {
                let lent = self.uids.take()?;
                let uid = lent.uid();
                (Some(lent), uid, self.config.gid)
            }
        };
        write_identity(io.path(), uid, gid)?;
        let cgroups = self.cgroups.clone();
        let (box_name, pids) = (name.clone(), self.config.pids);
        let cgroup = tokio::task::spawn_blocking(move || cgroups.create_box(&box_name, pids))
            .await
            .map_err(|e| SandboxError::Io {
                path: PathBuf::from("/sys/fs/cgroup"),
                source: std::io::Error::other(e),
            })??;
        let mut cleanup = Cleanup {
            docker: self.docker.clone(),
            unremoved: self.unremoved.clone(),
            container: None,
            cgroup: Some(cgroup),
            io: Some(io),
            uid: box_uid,
            _etc: self.etc.clone(),
        };
        let body = self.container_body(image, &cleanup, options);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|source| image_error(image, "create a container", source));
        let id = match created {
            Ok(created) => created.id,
            Err(e) => {
                cleanup.run().await;
                return Err(e);
            }
        };
        cleanup.container = Some(id.clone());
        let mut container = Container {
            id: id.clone(),
            name: name.clone(),
            agent: None,
            io_dir: cleanup
                .io
                .as_ref()
                .map(|d| d.path().to_owned())
                .unwrap_or_default(),
            uid,
            gid,
            cleanup: Some(cleanup),
        };
        let attached = self
            .docker
            .attach_container(
                &id,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|source| SandboxError::Docker {
                action: "attach to the container",
                source,
            })?;
        self.docker
            .start_container(&id, None)
            .await
            .map_err(|source| SandboxError::Docker {
                action: "start the container",
                source,
            })?;
        let mut agent = Agent::new(short(&id), attached.input, attached.output);
        match agent.read(self.config.start_timeout).await? {
            Response::Ready { version } if version == PROTOCOL_VERSION => {}
            Response::Ready { version } => {
                return Err(SandboxError::Demoter {
                    path: self.config.demoter.clone(),
                    reason: format!(
                        "speaks agent protocol version {version}, this executioner {PROTOCOL_VERSION} (rebuild it with scripts/build-demoter)"
                    ),
                })
            }
            other => {
                return Err(SandboxError::AgentProtocol {
                    container: short(&id),
                    answer: format!("{other:?}"),
                })
            }
        }
        agent
            .connect(
                &container.io_dir.join(AGENT_SOCKET),
                self.config.start_timeout,
            )
            .await?;
        container.agent = Some(agent);
        Ok(container)
    }

    fn container_body(
        &self,
        image: &str,
        cleanup: &Cleanup,
        options: &OpenOptions,
    ) -> ContainerCreateBody {
        let c = &self.config;
        let mut binds = vec![
            format!("{}:{DEMOTER_PATH}:ro", c.demoter.display()),
            format!(
                "{}:{IO_DIR}:rw",
                cleanup
                    .io
                    .as_ref()
                    .map(|d| d.path().display().to_string())
                    .unwrap_or_default()
            ),
        ];
        // The box's own uid is `runner` to the programs that look their user up.
        if let Some(io) = &cleanup.io {
            for file in ["passwd", "group"] {
                binds.push(format!("{}:/etc/{file}:ro", io.path().join(file).display()));
            }
        }
        // Docker copies these from the host unless something is mounted there.
        binds.extend(
            ETC_FILES
                .iter()
                .map(|name| format!("{}:/etc/{name}:ro", self.etc.path().join(name).display())),
        );
        let cgroup = cleanup.cgroup.as_ref();
        binds.extend(cgroup.map(|g| g.binds(CGROUP_DIR)).unwrap_or_default());
        binds.extend(
            options
                .read_only
                .iter()
                .map(|(host, inside)| format!("{}:{inside}:ro", host.display())),
        );
        binds.extend(
            options
                .peer_io
                .iter()
                .map(|host| format!("{}:{PEER_DIR}:rw", host.display())),
        );
        let tmpfs = HashMap::from([
            (
                BOX_DIR.to_owned(),
                format!("rw,exec,nosuid,nodev,size={}m,mode=0755", c.box_tmpfs_mb),
            ),
            (
                "/tmp".to_owned(),
                format!("rw,exec,nosuid,nodev,size={}m,mode=1777", c.tmp_tmpfs_mb),
            ),
        ]);
        let memory = (c.container_memory_mb * 1024 * 1024) as i64;
        let host_config = HostConfig {
            binds: Some(binds),
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(tmpfs),
            // What the demoter needs to drop to the runner user, hand it its directories,
            // clean up after it and kill what it leaves. Programs keep none of these.
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(
                [
                    "CHOWN",
                    "DAC_OVERRIDE",
                    "FOWNER",
                    "KILL",
                    "SETGID",
                    "SETUID",
                ]
                .map(String::from)
                .to_vec(),
            ),
            security_opt: Some(vec!["no-new-privileges".into()]),
            pids_limit: Some(c.pids as i64),
            memory: Some(memory),
            memory_swap: Some(memory),
            // On cgroup v2 the demoter must see the host hierarchy to move runs into the box (a
            // move needs the common ancestor of both cgroups inside the mover's namespace). On
            // v1 no such rule applies: a private namespace hides the host's cgroup paths.
            cgroupns_mode: Some(match cgroup.map(|g| g.version()) {
                Some(Version::V2) => HostConfigCgroupnsModeEnum::HOST,
                _ => HostConfigCgroupnsModeEnum::PRIVATE,
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.to_owned()),
            hostname: Some(HOSTNAME.to_owned()),
            cmd: Some(
                [
                    DEMOTER_PATH,
                    "agent",
                    "--cgroup",
                    CGROUP_DIR,
                    "--wipe",
                    "/tmp",
                    "--wipe",
                    "/dev/shm",
                    "--wipe",
                    "/dev/mqueue",
                    "--socket",
                    &format!("{IO_DIR}/{AGENT_SOCKET}"),
                ]
                .map(String::from)
                .to_vec(),
            ),
            entrypoint: Some(vec![]),
            env: Some(vec![]),
            user: Some("0:0".into()),
            working_dir: Some("/".into()),
            network_disabled: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            labels: Some(HashMap::from([(
                OWNER_LABEL.to_owned(),
                self.owner.clone(),
            )])),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// A private dir in `work_dir` holding [`ETC_FILES`] (read-only, world-readable), named with
/// this process's id so that [`Sandbox::remove_leftovers`] can tell whose it is.
fn create_etc(work_dir: &Path) -> Result<tempfile::TempDir, SandboxError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{ETC_PREFIX}{}-", std::process::id()))
        .tempdir_in(work_dir)
        .map_err(|source| SandboxError::Io {
            path: work_dir.to_owned(),
            source,
        })?;
    for name in ETC_FILES {
        let path = dir.path().join(name);
        std::fs::write(&path, etc_content(name)).map_err(|source| SandboxError::Io {
            path: path.clone(),
            source,
        })?;
        set_mode(&path, 0o444)?;
    }
    Ok(dir)
}

/// Removes the `/etc` dirs in `work_dir` of processes that are gone (a SIGKILLed worker).
fn remove_stale_etc(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ETC_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a leftover /etc dir");
        }
    }
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        SandboxError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// Removes a container; `false` when the engine could not be made to (unreachable, restarting).
async fn remove_container(docker: &Docker, id: &str) -> bool {
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    // Docker 20.10 can fail a forced removal that races the container's own exit ("cannot
    // remove - container is not running") and leave it "removal in progress"; asking again works.
    let backoff = Backoff::new(Duration::from_millis(50), Duration::MAX).attempts(5);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match docker.remove_container(id, Some(options.clone())).await {
            Ok(()) => return true,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return true,
            Err(e) => {
                let Some(pause) = backoff.after(attempt) else {
                    tracing::warn!(container = %short(id), error = %e, "could not remove a sandbox container; tried again at the next box");
                    return false;
                };
                tracing::debug!(container = %short(id), error = %e, attempt, "removing a sandbox container again");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// What a container leaves to remove: the container, its cgroups, its host temp dir.
struct Cleanup {
    docker: Docker,
    /// Containers whose removal failed, tried again when the next box opens.
    unremoved: Arc<std::sync::Mutex<Vec<String>>>,
    container: Option<String>,
    cgroup: Option<BoxCgroup>,
    io: Option<tempfile::TempDir>,
    /// Given back last, once nothing of the box runs.
    uid: Option<BoxUid>,
    /// Keeps the `/etc` files it mounts while it exists.
    _etc: Arc<tempfile::TempDir>,
}

impl Cleanup {
    async fn run(&mut self) {
        if let Some(id) = self.container.take() {
            if !remove_container(&self.docker, &id).await {
                lock(&self.unremoved).push(id);
            }
        }
        // The container's processes are gone with it; whatever is still in the cgroups is killed.
        if let Some(cgroup) = self.cgroup.take() {
            let _ = tokio::task::spawn_blocking(move || drop(cgroup)).await;
        }
        self.io.take();
        self.uid.take();
    }
}

/// `passwd` and `group` for a box whose runs have `uid`/`gid`, written into its io dir: root,
/// `runner` as that uid and `nobody`, nothing of the image's or the host's.
fn write_identity(io: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    let files = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\n\
                 runner:x:{uid}:{gid}:runner:/nonexistent:/usr/sbin/nologin\n\
                 nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "group",
            format!("root:x:0:\nrunner:x:{gid}:\nnogroup:x:65534:\n"),
        ),
    ];
    for (name, text) in files {
        let path = io.join(name);
        std::fs::write(&path, text)
            .and_then(|()| {
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            })
            .map_err(|source| SandboxError::Io { path, source })?;
    }
    Ok(())
}

/// How a container differs from a submission's.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Host paths mounted read-only at the given container paths.
    pub read_only: Vec<(PathBuf, String)>,
    /// The uid (and gid) its runs have instead of the configured one.
    pub uid: Option<u32>,
    /// The io dir may be entered (mode 0711) by the runs' uid, not only by root.
    pub io_traversable: bool,
    /// The io dir of another container (a program's), mounted for the agent (root-only) so
    /// that an interactor's run can open the FIFOs [`Container::make_fifos`] made there.
    pub peer_io: Option<PathBuf>,
}

/// Where a run works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkDir {
    /// The build directory (compiling).
    Build,
    /// A fresh empty directory, removed with everything in it after the run.
    Fresh,
}

/// One run in a container.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub work_dir: WorkDir,
    /// What the program reads as stdin; `None` = `/dev/null`.
    pub stdin: Option<Input<'a>>,
    pub limits: Limits,
    /// The problem's input and output files (with [`WorkDir::Fresh`]): stdin is also that file
    /// in the working directory, and the output is that file instead of stdout.
    pub io: Option<&'a ProblemIo>,
    /// The program's stderr goes to its stdout (`2>&1`; an ad-hoc run that asks for it).
    pub stderr_to_stdout: bool,
}

/// A run's stdin.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// Test data (a package's file is copied in the kernel, never read into memory).
    Data(&'a Data),
    /// A file already in the container's io dir (see [`Container::io_dir`]), by name.
    IoFile(&'a str),
    /// An interaction: stdin and stdout are the FIFOs of [`Container::make_fifos`], from the
    /// program's side or from the interactor's (which sees them through its peer mount).
    Pipe(Side),
}

/// The two ends of an interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Program,
    Interactor,
}

impl Side {
    /// The demoter's FIFOs for this side: the program opens its read end first, the
    /// interactor its write end, so that neither waits for the other forever.
    fn pipe(self) -> Pipe {
        match self {
            Side::Program => Pipe {
                read: Path::new(IO_DIR).join(TO_PROGRAM),
                write: Path::new(IO_DIR).join(TO_INTERACTOR),
                read_first: true,
                ignore_sigpipe: false,
            },
            Side::Interactor => Pipe {
                read: Path::new(PEER_DIR).join(TO_INTERACTOR),
                write: Path::new(PEER_DIR).join(TO_PROGRAM),
                read_first: false,
                ignore_sigpipe: true,
            },
        }
    }
}

/// What a run did, with its output files on the host.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub result: RunResult,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// A running sandbox container. Close it with [`Container::close`]; dropping it removes it in
/// the background.
pub struct Container {
    id: String,
    name: String,
    agent: Option<Agent>,
    io_dir: PathBuf,
    uid: u32,
    gid: u32,
    cleanup: Option<Cleanup>,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name, also the name of its box cgroup.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn request(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, SandboxError> {
        let agent = self.agent.as_mut().ok_or_else(|| SandboxError::AgentGone {
            container: short(&self.id),
            stderr: String::new(),
        })?;
        agent.request(request, timeout).await
    }

    async fn expect_ok(&mut self, request: &Request) -> Result<(), SandboxError> {
        match self.request(request, Duration::from_secs(30)).await? {
            Response::Ok => Ok(()),
            Response::Failed { error } => Err(SandboxError::AgentFailed {
                container: short(&self.id),
                error,
            }),
            other => Err(SandboxError::AgentProtocol {
                container: short(&self.id),
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Saves `source` as `name` in the build directory, owned by the runner user.
    pub async fn put_source(&mut self, name: &str, source: &[u8]) -> Result<(), SandboxError> {
        let host = self.io_dir.join("source");
        tokio::fs::write(&host, source)
            .await
            .map_err(|e| SandboxError::Io {
                path: host,
                source: e,
            })?;
        let (uid, gid) = (self.uid, self.gid);
        self.expect_ok(&Request::Mkdir {
            path: BUILD_DIR.into(),
            uid,
            gid,
            mode: 0o755,
        })
        .await?;
        self.expect_ok(&Request::Put {
            src: format!("{IO_DIR}/source").into(),
            dst: Path::new(BUILD_DIR).join(name),
            uid,
            gid,
            mode: 0o644,
        })
        .await
    }

    /// Makes the build directory read-only for programs, so no test can change what the next runs.
    pub async fn seal_build(&mut self) -> Result<(), SandboxError> {
        self.expect_ok(&Request::Seal {
            path: BUILD_DIR.into(),
        })
        .await
    }

    /// Writes the (sealed) build directory as one file, at most `max_bytes`, into the io dir
    /// as `name`, and gives its host path (see [`Request::Pack`]).
    pub async fn pack_build(
        &mut self,
        name: &str,
        max_bytes: u64,
    ) -> Result<PathBuf, SandboxError> {
        self.expect_ok(&Request::Pack {
            src: BUILD_DIR.into(),
            dst: Path::new(IO_DIR).join(name),
            max_bytes,
        })
        .await?;
        Ok(self.io_dir.join(name))
    }

    /// Restores the build directory from `name`, a pack in the io dir (see
    /// [`Container::pack_build`]), owned by the runner user; seal it afterwards as after
    /// compiling. On failure the build directory is left absent.
    pub async fn unpack_build(&mut self, name: &str) -> Result<(), SandboxError> {
        let (uid, gid) = (self.uid, self.gid);
        self.expect_ok(&Request::Unpack {
            src: Path::new(IO_DIR).join(name),
            dst: BUILD_DIR.into(),
            uid,
            gid,
        })
        .await
    }

    /// Makes fresh FIFOs for the next interaction in this container's io dir (root-only: the
    /// agents open them and hand them to the two runs).
    pub async fn make_fifos(&mut self) -> Result<(), SandboxError> {
        let io = self.io_dir.clone();
        tokio::task::spawn_blocking(move || {
            for name in [TO_PROGRAM, TO_INTERACTOR] {
                let path = io.join(name);
                match std::fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SandboxError::Io { path, source: e })
                    }
                    _ => {}
                }
                nix::unistd::mkfifo(
                    &path,
                    nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
                )
                .map_err(|e| SandboxError::Io {
                    path: path.clone(),
                    source: e.into(),
                })?;
            }
            Ok(())
        })
        .await
        .map_err(|e| SandboxError::Io {
            path: self.io_dir.clone(),
            source: std::io::Error::other(e),
        })?
    }

    /// Reads `paths` (absolute, in the image) into the page cache as the agent, so that no run
    /// is charged for them (see [`Request::Warm`]).
    pub async fn warm(&mut self, paths: &[String]) -> Result<(), SandboxError> {
        if paths.is_empty() {
            return Ok(());
        }
        self.expect_ok(&Request::Warm {
            paths: paths.iter().map(PathBuf::from).collect(),
        })
        .await
    }

    /// The host directory mounted at `/judge/io` (root-only): inputs and outputs of runs.
    pub fn io_dir(&self) -> &Path {
        &self.io_dir
    }

    /// Runs one program through the demoter (pinned to a CPU inside [`pinned`]).
    pub async fn run(&mut self, run: Run<'_>) -> Result<RunOutput, SandboxError> {
        let host = self.io_dir.join("stdin");
        let io = |source| SandboxError::Io {
            path: host.clone(),
            source,
        };
        let stdin = match run.stdin {
            Some(Input::Bytes(bytes)) => {
                tokio::fs::write(&host, bytes).await.map_err(io)?;
                Some(PathBuf::from(format!("{IO_DIR}/stdin")))
            }
            Some(Input::Data(data)) => {
                let (data, dst) = (data.clone(), host.clone());
                // A fresh file each time: never write through a link into a package's data.
                tokio::task::spawn_blocking(move || {
                    match std::fs::remove_file(&dst) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                    data.copy_to(&dst)
                })
                .await
                .map_err(|e| io(std::io::Error::other(e)))?
                .map_err(io)?;
                Some(PathBuf::from(format!("{IO_DIR}/stdin")))
            }
            Some(Input::IoFile(name)) => Some(Path::new(IO_DIR).join(name)),
            Some(Input::Pipe(_)) | None => None,
        };
        let pipe = match run.stdin {
            Some(Input::Pipe(side)) => Some(side.pipe()),
            _ => None,
        };
        let (cwd, fresh_cwd) = match run.work_dir {
            WorkDir::Build => (BUILD_DIR, false),
            WorkDir::Fresh => (RUN_DIR, true),
        };
        let spec = RunSpec {
            argv: run.argv,
            env: run.env,
            cwd: cwd.into(),
            fresh_cwd,
            stdin,
            stdout: format!("{IO_DIR}/stdout").into(),
            stderr: format!("{IO_DIR}/stderr").into(),
            uid: self.uid,
            gid: self.gid,
            limits: run.limits,
            input_name: run.io.and_then(|io| io.input_file.clone()),
            output_name: run.io.and_then(|io| io.output_file.clone()),
            pipe,
            stderr_to_stdout: run.stderr_to_stdout,
            cpu: cpus::current(),
        };
        // The demoter enforces the wall limit; this only catches an agent that stopped answering.
        let timeout = Duration::from_millis(run.limits.wall_ms) + Duration::from_secs(20);
        match self.request(&Request::Run(Box::new(spec)), timeout).await? {
            Response::Ran(result) => Ok(RunOutput {
                result,
                stdout: self.io_dir.join("stdout"),
                stderr: self.io_dir.join("stderr"),
            }),
            Response::Failed { error } => Err(SandboxError::AgentFailed {
                container: short(&self.id),
                error,
            }),
            other => Err(SandboxError::AgentProtocol {
                container: short(&self.id),
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Stops and removes the container, its cgroups and its temp dir.
    pub async fn close(mut self) {
        // The agent stays attached until the container is gone: closing its stdin first would
        // make the container exit while it is being removed, a race Docker handles badly.
        let agent = self.agent.take();
        if let Some(mut cleanup) = self.cleanup.take() {
            cleanup.run().await;
        }
        drop(agent);
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut cleanup) = self.cleanup.take() {
            let agent = self.agent.take();
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(async move {
                        cleanup.run().await;
                        drop(agent);
                    });
                }
                Err(_) => tracing::warn!(
                    container = %short(&self.id),
                    "sandbox dropped outside a runtime; it is removed at the next start"
                ),
            }
        }
    }
}
