//! The demoter's own seccomp filter against real Docker: a C program compiled in the gcc-12
//! image tries each system call the filter denies and prints the errno it got. Each must fail
//! with EPERM (clone3 with ENOSYS, so the C library falls back to clone), the program must go
//! on and exit normally, and what a program needs (local sockets, fork, threads, files) must
//! still work. The probe is shared with the demoter's own test (demoter/tests/seccomp.rs).

use std::path::PathBuf;

use demoter::protocol::{Exit, Limits};
use executioner::language::{Placeholders, Registry};
use executioner::sandbox::{Container, Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};

fn demoter() -> PathBuf {
    std::env::var_os("EXECUTIONER_DEMOTER")
        .map(PathBuf::from)
        .or_else(executioner::cli::find_demoter)
        .expect("set EXECUTIONER_DEMOTER to the static demoter (scripts/build-demoter)")
}

/// Opens a gcc-12 container and compiles `program` in it.
async fn compiled(sandbox: &Sandbox, program: &str) -> Container {
    let registry = Registry::builtin().unwrap();
    let c = registry.resolve("gcc-12").unwrap();
    let mut container = sandbox.open(&c.image).await.expect("open a container");
    container
        .put_source(&c.source, program.as_bytes())
        .await
        .unwrap();
    let values = Placeholders {
        build: BUILD_DIR,
        memory_kb: 65536,
    };
    let out = container
        .run(Run {
            argv: c.expand(c.compile.as_ref().unwrap(), &values),
            env: c.env.clone(),
            work_dir: WorkDir::Build,
            stdin: None,
            limits: executioner::judge::JudgeConfig::default().compile_limits,
            io: None,
        })
        .await
        .unwrap();
    let errors = std::fs::read_to_string(&out.stderr).unwrap_or_default();
    assert!(out.result.exited_normally(), "compile failed: {errors}");
    container.seal_build().await.unwrap();
    container
}

#[tokio::test]
async fn denied_calls_fail_with_eperm_and_the_program_goes_on() {
    let sandbox = Sandbox::connect(SandboxConfig::new(demoter()))
        .await
        .expect("Docker engine and cgroups (run scripts/docker-up)");
    let mut container = compiled(&sandbox, include_str!("../demoter/tests/seccomp/probe.c")).await;
    let out = container
        .run(Run {
            argv: vec![format!("{BUILD_DIR}/main")],
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Bytes(b"")),
            limits: Limits {
                cpu_ms: 2000,
                wall_ms: 10_000,
                memory_kb: 65536,
                pids: 16,
                output_bytes: 1 << 20,
                stderr_bytes: 4096,
                idle_ms: None,
            },
            io: None,
        })
        .await;
    // Read everything, then close the container, then assert: a failed assertion leaves no
    // container behind.
    let stdout = out
        .as_ref()
        .ok()
        .and_then(|o| std::fs::read_to_string(&o.stdout).ok());
    container.close().await;
    let out = out.expect("the run is a result, not a sandbox failure");
    let stdout = stdout.expect("the program's stdout");
    assert_eq!(out.result.exit, Exit::Exited { code: 0 }, "{stdout}");
    assert_eq!(out.result.limit, None);
    // name=errno per call (0: it succeeded).
    assert_eq!(stdout, include_str!("../demoter/tests/seccomp/probe.out"));
}
