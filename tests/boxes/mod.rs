//! What the tests that drive sandbox containers directly share: the demoter to mount, and a C
//! program compiled in a gcc-12 box as the judge compiles (its compile limits).

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

use demoter::protocol::RunResult;
use executioner::judge::JudgeConfig;
use executioner::language::{Language, Placeholders, Registry};
use executioner::sandbox::{Container, Run, Sandbox, WorkDir, BUILD_DIR};

/// The static demoter of `EXECUTIONER_DEMOTER` (or where `scripts/build-demoter` puts it).
pub fn demoter() -> PathBuf {
    std::env::var_os("EXECUTIONER_DEMOTER")
        .map(PathBuf::from)
        .or_else(executioner::setup::find_demoter)
        .expect("set EXECUTIONER_DEMOTER to the static demoter (scripts/build-demoter)")
}

/// The gcc-12 language of the built-in registry.
pub fn gcc() -> Language {
    Registry::builtin()
        .unwrap()
        .resolve("gcc-12")
        .unwrap()
        .clone()
}

/// Compiles `source` in `container` as the judge compiles; the build is not sealed. Returns the
/// compile's result and stderr.
pub async fn compile(container: &mut Container, source: &str) -> (RunResult, String) {
    let c = gcc();
    container
        .put_source(&c.source, source.as_bytes())
        .await
        .unwrap();
    let values = Placeholders {
        build: BUILD_DIR,
        memory_kb: 65536,
        files: &[],
    };
    let out = container
        .run(Run {
            argv: c.expand(c.compile.as_ref().unwrap(), &values),
            env: c.env.clone(),
            work_dir: WorkDir::Build,
            stdin: None,
            limits: JudgeConfig::default().compile_limits,
            io: None,
            stderr_to_stdout: false,
        })
        .await
        .expect("compiling is a result, not a sandbox failure");
    let errors = std::fs::read_to_string(&out.stderr).unwrap_or_default();
    (out.result, errors)
}

/// Opens a gcc-12 container, compiles `program` (which must compile) and seals the build.
pub async fn compiled(sandbox: &Sandbox, program: &str) -> Container {
    let mut container = sandbox.open(&gcc().image).await.expect("open a container");
    let (result, errors) = compile(&mut container, program).await;
    assert!(result.exited_normally(), "compile failed: {errors}");
    container.seal_build().await.unwrap();
    container
}
