//! Per-test overhead of the sandbox: the median time of one test run through the demoter agent
//! in a running container, against a bare fork+exec of the same binary on the host.
//!
//! Run: `scripts/bench` (or `cargo bench --bench per_test_overhead` with EXECUTIONER_DEMOTER set
//! and the gcc-12 image built). Prints medians; nothing is asserted.

mod floor;

use floor::{median, ms};
use std::time::Instant;

use demoter::protocol::Limits;
use executioner::language::{Placeholders, Registry};
use executioner::sandbox::{Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};
use executioner::setup::find_demoter;

const RUNS: usize = 100;
const PROGRAM: &str = "#include <stdio.h>\nint main(void){int a,b;if(scanf(\"%d %d\",&a,&b)!=2)return 1;printf(\"%d\\n\",a+b);return 0;}\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let demoter = std::env::var_os("EXECUTIONER_DEMOTER")
        .map(Into::into)
        .or_else(find_demoter)
        .ok_or_else(|| anyhow::anyhow!("set EXECUTIONER_DEMOTER to the static demoter"))?;
    let registry = Registry::builtin()?;
    let c = registry
        .resolve("gcc-12")
        .ok_or_else(|| anyhow::anyhow!("gcc-12 missing"))?;
    let sandbox = Sandbox::connect(SandboxConfig::new(demoter)).await?;

    // The container is started once (a cost paid per submission, reported separately).
    let started = Instant::now();
    let mut container = sandbox.open(&c.image).await?;
    let start_cost = started.elapsed();
    container.put_source(&c.source, PROGRAM.as_bytes()).await?;
    let values = Placeholders {
        build: BUILD_DIR,
        memory_kb: 65536,
        files: &[],
    };
    let compile = Run {
        argv: c.expand(c.compile.as_deref().unwrap_or_default(), &values),
        env: c.env.clone(),
        work_dir: WorkDir::Build,
        stdin: None,
        limits: executioner::judge::JudgeConfig::default().compile_limits,
        io: None,
        stderr_to_stdout: false,
    };
    let compiled = container.run(compile).await?;
    anyhow::ensure!(
        compiled.result.exited_normally(),
        "compile failed: {compiled:?}"
    );
    container.seal_build().await?;
    let limits = Limits {
        cpu_ms: 1000,
        wall_ms: 3000,
        memory_kb: 65536,
        pids: 16,
        output_bytes: 1 << 20,
        stderr_bytes: 65536,
        idle_ms: None,
    };
    let mut sandboxed = Vec::with_capacity(RUNS);
    for i in 0..RUNS + 5 {
        let input = format!("{i} 1\n");
        let run = Run {
            argv: c.expand(&c.run, &values),
            env: c.env.clone(),
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Bytes(input.as_bytes())),
            limits,
            io: None,
            stderr_to_stdout: false,
        };
        let t = Instant::now();
        let out = container.run(run).await?;
        let elapsed = t.elapsed();
        anyhow::ensure!(out.result.exited_normally(), "run failed: {out:?}");
        if i >= 5 {
            sandboxed.push(elapsed); // the first runs warm caches
        }
    }
    container.close().await;

    // The same program, compiled and run directly on the host.
    let bare = floor::bare_fork_exec(PROGRAM, RUNS)?;
    let (s, b) = (median(sandboxed), bare);
    println!(
        "container start + agent ready: {:.1} ms (once per submission)",
        ms(start_cost)
    );
    println!(
        "median per test, sandboxed (demoter agent, fresh cgroup + dir): {:.2} ms",
        ms(s)
    );
    println!(
        "median per test, bare fork+exec on the host:                   {:.2} ms",
        ms(b)
    );
    println!(
        "median per-test overhead: {:.2} ms over {RUNS} tests",
        ms(s.saturating_sub(b))
    );
    Ok(())
}
