//! What the sandbox benches measure against: the same C program compiled and run directly on
//! the host (a bare fork+exec), and how they summarise samples.

use std::time::{Duration, Instant};

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median time of `runs` bare fork+execs of C `program` (compiled with the host's gcc),
/// each reading `{i} 1` on stdin, after 5 runs that warm caches.
pub fn bare_fork_exec(program: &str, runs: usize) -> anyhow::Result<Duration> {
    let dir = compile_on_host(program)?;
    let mut bare = Vec::with_capacity(runs);
    for i in 0..runs + 5 {
        let input = dir.path().join("in");
        std::fs::write(&input, format!("{i} 1\n"))?;
        let t = Instant::now();
        let out = std::process::Command::new(dir.path().join("main"))
            .stdin(std::fs::File::open(&input)?)
            .output()?;
        let elapsed = t.elapsed();
        anyhow::ensure!(out.status.success());
        if i >= 5 {
            bare.push(elapsed);
        }
    }
    Ok(median(bare))
}

/// The wall time of one bare run of C `program` (compiled with the host's gcc) on `input`.
#[allow(dead_code)] // Not every bench that shares this module calibrates.
pub fn run_once(program: &str, input: &str) -> anyhow::Result<Duration> {
    let dir = compile_on_host(program)?;
    let path = dir.path().join("in");
    std::fs::write(&path, input)?;
    let t = Instant::now();
    let out = std::process::Command::new(dir.path().join("main"))
        .stdin(std::fs::File::open(&path)?)
        .output()?;
    anyhow::ensure!(out.status.success(), "the program failed");
    Ok(t.elapsed())
}

/// A temp dir with C `program` compiled by the host's gcc as `main`.
fn compile_on_host(program: &str) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("main.c"), program)?;
    let status = std::process::Command::new("gcc")
        .args(["-O2", "-o", "main", "main.c"])
        .current_dir(dir.path())
        .status()?;
    anyhow::ensure!(status.success(), "host gcc failed");
    Ok(dir)
}
