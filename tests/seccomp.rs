//! The demoter's own seccomp filter against real Docker: a C program compiled in the gcc-12
//! image tries each system call the filter denies and prints the errno it got. Each must fail
//! with EPERM (clone3 with ENOSYS, so the C library falls back to clone), the program must go
//! on and exit normally, and what a program needs (local sockets, fork, threads, files) must
//! still work. The probe is shared with the demoter's own test (demoter/tests/seccomp.rs).

mod boxes;

use boxes::{compiled, demoter};
use demoter::protocol::{Exit, Limits};
use executioner::sandbox::{Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};

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
            stderr_to_stdout: false,
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
