//! Programs that attack the sandbox's own machinery rather than their limits (issue #15), in
//! real containers: a directory chain deeper than the agent's open-file limit, a core dump, a
//! stderr flood, a compiler blocked on its own output pipe. Each run's result stands, and the
//! next run in the same container starts clean.

mod boxes;

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use boxes::{compile, demoter, gcc};
use demoter::protocol::{Exit, LimitHit, Limits, RunResult};
use executioner::judge::JudgeConfig;
use executioner::sandbox::{Container, Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};

async fn sandbox() -> Sandbox {
    Sandbox::connect(SandboxConfig::new(demoter()))
        .await
        .expect("Docker engine and cgroups (run scripts/docker-up)")
}

/// Generous limits: these programs are judged on what they do to the sandbox, not on time.
fn limits(cpu_ms: u64) -> Limits {
    Limits {
        cpu_ms,
        wall_ms: cpu_ms * 10,
        memory_kb: 256 * 1024,
        pids: 16,
        output_bytes: 1 << 20,
        stderr_bytes: 4096,
        idle_ms: None,
    }
}

/// Opens a C container, runs `check` on it, and closes it whatever happened (a failed check
/// included).
async fn in_container(check: impl AsyncFnOnce(&mut Container)) {
    let sandbox = sandbox().await;
    let mut container = sandbox.open(&gcc().image).await.expect("open a container");
    let outcome = AssertUnwindSafe(check(&mut container)).catch_unwind().await;
    container.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Compiles `source`, which must compile, and seals the build.
async fn build(container: &mut Container, source: &str) {
    let (result, errors) = compile(container, source).await;
    assert!(result.exited_normally(), "compile failed: {errors}");
    container.seal_build().await.unwrap();
}

/// Runs the compiled program in `work_dir` with `stdin`; returns its result and stdout.
async fn run_in(
    container: &mut Container,
    work_dir: WorkDir,
    stdin: &str,
    limits: Limits,
) -> (RunResult, String) {
    let out = container
        .run(Run {
            argv: vec![format!("{BUILD_DIR}/main")],
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir,
            stdin: Some(Input::Bytes(stdin.as_bytes())),
            limits,
            io: None,
            stderr_to_stdout: false,
        })
        .await
        .expect("the run is a result, not a sandbox failure");
    let stdout = std::fs::read_to_string(&out.stdout).unwrap();
    (out.result, stdout)
}

async fn run(container: &mut Container, stdin: &str, limits: Limits) -> (RunResult, String) {
    run_in(container, WorkDir::Fresh, stdin, limits).await
}

/// `build DIR`: makes a chain of 30,000 directories in DIR (`.` = the working directory), more
/// than the agent's 20,000 open files, and its path far longer than PATH_MAX.
/// `fill DIR`: makes a chain in DIR until the kernel refuses (exit 5) or the run is killed.
/// `count DIR`: prints how many entries DIR holds. `touch DIR`: creates a file in DIR (exit 4
/// if it cannot).
const CHAIN: &str = r#"#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
int main(void) {
    char op[16], dir[256];
    if (scanf("%15s %255s", op, dir) != 2 || chdir(dir)) return 2;
    if (!strcmp(op, "build")) {
        for (int i = 0; i < 30000; i++)
            if (mkdir("d", 0700) || chdir("d")) return 3;
        puts("built");
        return 0;
    }
    if (!strcmp(op, "touch")) return mkdir("t", 0700) ? 4 : 0;
    if (!strcmp(op, "fill"))
        for (;;)
            if (mkdir("d", 0700) || chdir("d")) return 5;
    DIR *d = opendir(".");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    printf("%d\n", n);
    return 0;
}
"#;

#[tokio::test]
async fn a_directory_chain_deeper_than_the_agents_open_files_is_removed_and_the_run_stands() {
    in_container(async |c| {
        build(c, CHAIN).await;
        for dir in [".", "/tmp", "/dev/shm"] {
            let (r, out) = run(c, &format!("build {dir}"), limits(10_000)).await;
            assert!(r.exited_normally(), "{dir}: {r:?}");
            assert_eq!(out, "built\n", "{dir}");
            let (r, out) = run(c, &format!("count {dir}"), limits(1000)).await;
            assert!(r.exited_normally(), "{dir}: {r:?}");
            assert_eq!(out, "0\n", "{dir} was not emptied after the run");
        }
    })
    .await;
}

#[tokio::test]
async fn a_chain_that_fills_the_memory_limit_is_removed_and_the_run_stands() {
    in_container(async |c| {
        build(c, CHAIN).await;
        let small = Limits {
            memory_kb: 32 * 1024,
            ..limits(20_000)
        };
        let (r, _) = run(c, "fill .", small).await;
        eprintln!("fill: {r:?}");
        // Its directories are charged to it: killed at the memory limit, or refused.
        assert!(
            r.limit == Some(LimitHit::Memory) || r.exit == Exit::Exited { code: 5 },
            "{r:?}"
        );
        let (r, out) = run(c, "count .", limits(1000)).await;
        assert!(r.exited_normally(), "{r:?}");
        assert_eq!(out, "0\n");
    })
    .await;
}

#[tokio::test]
async fn a_build_directory_holding_a_deep_chain_is_sealed() {
    in_container(async |c| {
        let (result, errors) = compile(c, CHAIN).await;
        assert!(result.exited_normally(), "compile failed: {errors}");
        // As a compile step that runs what it built would.
        let (r, out) = run_in(c, WorkDir::Build, "build .", limits(10_000)).await;
        assert!(r.exited_normally(), "{r:?}");
        assert_eq!(out, "built\n");
        c.seal_build()
            .await
            .expect("sealing a deep build directory");
        // Sealed: the program can no longer add to its build directory.
        let (r, _) = run_in(c, WorkDir::Build, "touch .", limits(1000)).await;
        assert_eq!(r.exit, Exit::Exited { code: 4 }, "{r:?}");
    })
    .await;
}

#[tokio::test]
async fn the_core_size_limit_is_the_one_a_pipe_core_pattern_honours() {
    in_container(async |c| {
        build(
            c,
            r#"#include <stdio.h>
#include <string.h>
int main(void) {
    char line[256];
    FILE *f = fopen("/proc/self/limits", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Max core file size", 18)) fputs(line, stdout);
    return 0;
}
"#,
        )
        .await;
        let (r, out) = run(c, "", limits(1000)).await;
        assert!(r.exited_normally(), "{r:?}");
        // Soft and hard limits 1: the value the kernel honours with a pipe core_pattern too.
        let fields: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(fields.get(4..6), Some(&["1", "1"][..]), "{out}");
    })
    .await;
}

/// CPU time (user + system) the container's init, the agent, has used, in milliseconds.
async fn agent_cpu_ms(docker: &bollard::Docker, container: &Container) -> u64 {
    let inspect = docker
        .inspect_container(container.id(), None)
        .await
        .unwrap();
    let pid = inspect.state.and_then(|s| s.pid).expect("the agent's pid");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    (fields[11] + fields[12]) * 1000 / ticks
}

#[tokio::test]
async fn a_stderr_flood_costs_the_agent_little_and_ends_by_the_programs_own_limit() {
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    in_container(async |c| {
        // One byte a write: the most wake-ups a program can cause.
        build(
            c,
            "#include <unistd.h>\nint main(void){for(;;)write(2,\"x\",1);}",
        )
        .await;
        let before = agent_cpu_ms(&docker, c).await;
        let (r, _) = run(c, "", limits(1000)).await;
        let agent = agent_cpu_ms(&docker, c).await - before;
        eprintln!("agent: {agent} ms of CPU for the program's {} ms", r.cpu_ms);
        assert_eq!(r.limit, Some(LimitHit::Time), "{r:?}");
        assert!(
            agent * 4 < r.cpu_ms,
            "the agent used {agent} ms of CPU while the program used {} ms",
            r.cpu_ms
        );
    })
    .await;
}

#[tokio::test]
async fn a_program_writing_50_mb_to_stderr_still_gets_its_answer_out() {
    in_container(async |c| {
        build(
            c,
            r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    static char line[1000];
    memset(line, 'd', sizeof line - 1);
    line[sizeof line - 1] = '\n';
    for (int i = 0; i < 50000; i++)
        if (write(2, line, sizeof line) != sizeof line) return 2;
    long long a, b;
    if (scanf("%lld %lld", &a, &b) != 2) return 3;
    printf("%lld\n", a + b);
    return 0;
}
"#,
        )
        .await;
        let (r, out) = run(c, "2 40\n", limits(2000)).await;
        assert!(r.exited_normally(), "{r:?}");
        assert_eq!(out, "42\n");
    })
    .await;
}

/// `#include "/dev/stdout"` makes cc1 read the pipe it writes its own output to.
const INCLUDES_ITS_OWN_OUTPUT: &str = "#include \"/dev/stdout\"\nint main(void){return 0;}\n";

#[tokio::test]
async fn a_compiler_blocked_on_its_own_output_ends_by_the_idle_limit() {
    in_container(async |c| {
        let (r, _) = compile(c, INCLUDES_ITS_OWN_OUTPUT).await;
        let limits = JudgeConfig::default().compile_limits;
        let idle_ms = limits.idle_ms.expect("compiles have an idle limit");
        assert_eq!(r.limit, Some(LimitHit::Wall), "{r:?}");
        // Ended one idle window (and a sampling period) after it blocked, not at the wall limit.
        assert!(r.wall_ms >= idle_ms && r.wall_ms < 2 * idle_ms, "{r:?}");
        assert!(r.wall_ms < limits.wall_ms, "{r:?}");
    })
    .await;
}

#[test]
fn the_judge_says_the_compiler_was_idle() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("main.c");
    std::fs::write(&source, INCLUDES_ITS_OWN_OUTPUT).unwrap();
    let run = common::judge("test-base", "gcc-12", &source, Duration::from_secs(120)).unwrap();
    let compiled = run
        .messages
        .iter()
        .find(|m| m["state"] == "compiled")
        .unwrap_or_else(|| panic!("no compiled message: {:?}", run.messages));
    assert_eq!(compiled["result"], "error", "{compiled}");
    let output = compiled["compileOutput"].as_str().unwrap_or_default();
    assert!(output.contains("idle"), "{output}");
    assert!(!output.contains("wall time limit"), "{output}");
}
