//! An `executioner worker` process for end-to-end tests of a shared store, killed (by its
//! handle) if the test ends before it does. It judges in Docker, so it needs the sandbox:
//! Docker, the images, `EXECUTIONER_DEMOTER`, as `scripts/test` sets up.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub struct WorkerProcess {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl WorkerProcess {
    /// `executioner worker --problems <fixtures> --concurrency N --lease-seconds L <args>` with
    /// `env` added to the inherited environment; its logs go to a file.
    pub fn start(
        args: &[&str],
        env: &[(&str, &str)],
        lease_seconds: u64,
        concurrency: usize,
    ) -> WorkerProcess {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let problems = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems");
        let child = Command::new(env!("CARGO_BIN_EXE_executioner"))
            .arg("worker")
            .args(args)
            .arg("--problems")
            .arg(problems)
            .args(["--concurrency", &concurrency.to_string()])
            .args(["--lease-seconds", &lease_seconds.to_string()])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("start executioner worker");
        WorkerProcess { child, log }
    }

    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, signal).expect("signal the worker");
    }

    pub fn log_all(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let text = self.log_all();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// SIGTERM, then the exit status within `deadline`.
    pub fn stop(mut self, deadline: Duration) -> std::process::ExitStatus {
        self.signal(Signal::SIGTERM);
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the worker") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the worker did not stop within {deadline:?}:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of every worker's log, for a failure message.
pub fn logs(workers: &[&WorkerProcess]) -> String {
    workers
        .iter()
        .map(|w| w.log_tail())
        .collect::<Vec<_>>()
        .join("\n----\n")
}
