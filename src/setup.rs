//! A judge built from settings: the problems folder, the language registry, the demoter, the
//! cgroup parent, the judge's limits and the warm pool. Every judging command of the binary
//! builds its judge here, and so do the tests and benchmarks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::judge::{Judge, JudgeConfig};
use crate::language::{Registry, RegistryError};
use crate::problem::ProblemStore;
use crate::sandbox::{Sandbox, SandboxConfig, SandboxError};

/// Why a judge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("no demoter binary found: build it with scripts/build-demoter and pass --demoter or set EXECUTIONER_DEMOTER")]
    NoDemoter,
    #[error("--warm-languages: {name:?} is not a language (see `executioner languages`)")]
    UnknownWarmLanguage { name: String },
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
    pub fn images(&self, registry: &Registry) -> Result<Vec<String>, SetupError> {
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
                let lang = registry
                    .resolve(name)
                    .ok_or_else(|| SetupError::UnknownWarmLanguage { name: name.clone() })?;
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

/// The registry in the file at `path`, or the built-in one.
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
pub async fn build_judge(setup: &Setup) -> Result<Arc<Judge>, SetupError> {
    let registry = load_registry(setup.languages.as_deref())?;
    let demoter = setup
        .demoter
        .clone()
        .or_else(find_demoter)
        .ok_or(SetupError::NoDemoter)?;
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
