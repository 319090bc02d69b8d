//! An `executioner worker` process for end-to-end tests of a shared store (or any other
//! `executioner` command, e.g. `serve`), killed (by its handle) if the test ends before it
//! does. It judges in Docker, so it needs the sandbox: Docker, the images,
//! `EXECUTIONER_DEMOTER`, as `scripts/test` sets up.

// Every test binary uses a different part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
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
        let (concurrency, lease_seconds) = (concurrency.to_string(), lease_seconds.to_string());
        let mut all = vec!["worker"];
        all.extend_from_slice(args);
        all.extend([
            "--concurrency",
            &concurrency,
            "--lease-seconds",
            &lease_seconds,
        ]);
        WorkerProcess::spawn(&all, env)
    }

    /// `executioner <args> --problems <fixtures>` with `env` added to the inherited
    /// environment; its logs go to a file.
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let problems = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/problems");
        WorkerProcess::spawn_on(&problems, args, env)
    }

    /// [`WorkerProcess::spawn`] with the problems of `problems`.
    pub fn spawn_on(problems: &Path, args: &[&str], env: &[(&str, &str)]) -> WorkerProcess {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_executioner"))
            .args(args)
            .arg("--problems")
            .arg(problems)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start executioner {args:?}: {e}"));
        WorkerProcess { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first log line containing `needle`, waiting for it until `deadline`.
    pub fn wait_for_log(&mut self, needle: &str, deadline: Duration) -> String {
        let until = Instant::now() + deadline;
        loop {
            if let Some(line) = self.log_all().lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            let exited = self.child.try_wait().expect("wait for the process");
            assert!(
                exited.is_none() && Instant::now() < until,
                "no log line with {needle:?} within {deadline:?} (exit: {exited:?}):\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address in the `listen` field of the first JSON log line containing `needle` (a
    /// process started with `--log-format json` that bound port 0), waiting until `deadline`.
    pub fn logged_address(&mut self, needle: &str, deadline: Duration) -> std::net::SocketAddr {
        let line = self.wait_for_log(needle, deadline);
        let log: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        log["fields"]["listen"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen address in {line}"))
    }

    /// SIGKILL, and gone (reaped) when this returns.
    pub fn kill(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
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

    /// For a guard's `Drop`, where a panic would abort: SIGCONT (in case it was stopped) and
    /// SIGTERM, so it finishes what it judges and removes its sandboxes; SIGKILL if it has not
    /// exited within `deadline`. Never panics.
    pub fn terminate(mut self, deadline: Duration) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = kill(pid, Signal::SIGTERM);
        let until = Instant::now() + deadline;
        while Instant::now() < until {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
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
