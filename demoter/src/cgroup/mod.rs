//! Cgroups of the box and of each run, v1 and v2 behind one pair of traits.
//!
//! The host gives the agent one directory (`--cgroup DIR`) and the agent creates one child cgroup
//! per run in it. Everything is plain file I/O under paths derived from `DIR`, so unit tests run
//! against a temp dir. The layout is detected from what is in `DIR`:
//! - v1: `DIR/memory`, `DIR/cpuacct` and `DIR/pids` are the box's cgroup of each controller;
//! - v2: `DIR` is the box's cgroup (and the agent itself is not in it).

pub mod v1;
pub mod v2;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext};

/// Prefix of the per-run cgroup names, so stale ones can be recognised and removed.
pub const RUN_PREFIX: &str = "run-";

/// How long the processes of a run may survive SIGKILL before it is an infrastructure failure.
pub const KILL_DEADLINE: Duration = Duration::from_secs(5);

/// How long `rmdir` of an emptied cgroup may keep answering EBUSY.
const RMDIR_DEADLINE: Duration = Duration::from_secs(2);

/// The limits the cgroup itself enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Memory of the run, swap excluded.
    pub memory_bytes: u64,
    /// Processes and threads alive at once.
    pub pids: u64,
}

/// The box's cgroup, in which per-run cgroups are created.
pub trait BoxCgroup: std::fmt::Debug {
    /// Human-readable description for diagnostics.
    fn describe(&self) -> String;
    /// Handle to the run cgroup `name`, whether or not it exists.
    fn open_run(&self, name: &str) -> Box<dyn RunCgroup>;
    /// Creates the (new) run cgroup `name`, with no limits yet: the agent makes the next run's
    /// cgroup ahead of its request. On failure nothing is left behind.
    fn make_run(&self, name: &str) -> Result<Box<dyn RunCgroup>, Error>;
    /// Creates the (new) run cgroup `name` and sets its limits. On failure nothing is left behind.
    fn create_run(&self, name: &str, limits: &RunLimits) -> Result<Box<dyn RunCgroup>, Error> {
        let run = self.make_run(name)?;
        match run.limit(limits) {
            Ok(()) => Ok(run),
            Err(e) => {
                if let Err(cleanup) = run.remove() {
                    eprintln!("demoter: {cleanup}");
                }
                Err(e)
            }
        }
    }
    /// Names of existing run cgroups (left over by a crashed agent, normally none).
    fn run_names(&self) -> Result<Vec<String>, Error>;
}

/// The cgroup of one run.
pub trait RunCgroup: std::fmt::Debug {
    /// Where the run cgroup lives, for error messages.
    fn path(&self) -> &Path;
    /// Sets the run's limits, before any process joins it.
    fn limit(&self, limits: &RunLimits) -> Result<(), Error>;
    /// `cgroup.procs` files a process writes "0" to in order to join the run.
    fn procs_files(&self) -> Vec<PathBuf>;
    /// CPU time used by all processes of the run so far, nanoseconds.
    fn cpu_usage_ns(&self) -> Result<u64, Error>;
    /// Called at every CPU check: lets a cgroup without a peak counter sample its memory.
    fn sample(&self) {}
    /// Peak memory of the run, if the cgroup can tell.
    fn memory_peak_bytes(&self) -> Result<Option<u64>, Error>;
    /// How many processes of the run the OOM killer killed.
    fn oom_kills(&self) -> Result<u64, Error>;
    /// Makes every further fork in the run fail.
    fn stop_forks(&self) -> Result<(), Error>;
    /// Process ids in the run.
    fn procs(&self) -> Result<Vec<i32>, Error>;
    /// Sends SIGKILL to every process of the run (`pids` = what `procs` just returned).
    fn kill(&self, pids: &[i32]) -> Result<(), Error>;
    /// Removes the cgroup directories (which must be empty of processes). Missing ones are fine.
    fn remove(&self) -> Result<(), Error>;
}

/// Detects the layout of `dir` and returns the box cgroup.
pub fn detect(dir: &Path) -> Result<Box<dyn BoxCgroup>, Error> {
    if dir.join("memory/cgroup.procs").exists() {
        Ok(Box::new(v1::V1Box::new(dir)?))
    } else if dir.join("cgroup.controllers").exists() {
        Ok(Box::new(v2::V2Box::new(dir)))
    } else {
        Err(Error::NoCgroup {
            path: dir.to_path_buf(),
        })
    }
}

/// Stops forks, then SIGKILLs the run's processes until none is left (or `within` passes).
pub fn kill_all(cg: &dyn RunCgroup, within: Duration) -> Result<(), Error> {
    if let Err(e) = cg.stop_forks() {
        // Killing still works, only less directly against a fork bomb.
        eprintln!("demoter: cannot stop forks: {e}");
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let pids = cg.procs()?;
        if pids.is_empty() {
            return Ok(());
        }
        cg.kill(&pids)?;
        if start.elapsed() >= within {
            return Err(Error::CgroupNotEmpty {
                path: cg.path().to_path_buf(),
                waited_ms: start.elapsed().as_millis() as u64,
            });
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Kills everything in the run cgroup and removes it.
pub fn destroy(cg: &dyn RunCgroup) -> Result<(), Error> {
    kill_all(cg, KILL_DEADLINE)?;
    let start = Instant::now();
    loop {
        match cg.remove() {
            Err(e) if e.is_busy() && start.elapsed() < RMDIR_DEADLINE => {
                // A task may still be on its way out of the cgroup.
                kill_all(cg, KILL_DEADLINE)?;
                thread::sleep(Duration::from_millis(1));
            }
            other => return other,
        }
    }
}

/// Owns a run cgroup: [`RunGuard::destroy`] removes it and reports failures; if the guard is
/// dropped instead (early return, panic), it is destroyed anyway and failures are logged.
#[derive(Debug)]
pub struct RunGuard {
    cg: Option<Box<dyn RunCgroup>>,
}

impl RunGuard {
    pub fn new(cg: Box<dyn RunCgroup>) -> RunGuard {
        RunGuard { cg: Some(cg) }
    }

    pub fn get(&self) -> &dyn RunCgroup {
        match &self.cg {
            Some(cg) => cg.as_ref(),
            // `cg` is only taken by `destroy(self)` and `drop`, after which no `get` can happen.
            None => unreachable!("run cgroup used after it was destroyed"),
        }
    }

    pub fn destroy(mut self) -> Result<(), Error> {
        match self.cg.take() {
            Some(cg) => destroy(cg.as_ref()),
            None => Ok(()),
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(cg) = self.cg.take() {
            if let Err(e) = destroy(cg.as_ref()) {
                eprintln!("demoter: cleaning up {}: {e}", cg.path().display());
            }
        }
    }
}

/// The name of a run cgroup: `run-<pid of the demoter>-<n>`.
pub fn run_name(n: u64) -> String {
    format!("{RUN_PREFIX}{}-{n}", std::process::id())
}

/// The demoter that created run cgroup `name`, if the name says.
fn run_owner(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(RUN_PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok().filter(|&pid: &i32| pid > 0)
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; pid > 0.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes run cgroups left behind by a demoter that is gone (best effort, logged). Those of a
/// demoter still running (another `demoter run` on the same box) are left alone.
pub fn remove_stale_runs(cg: &dyn BoxCgroup) {
    match cg.run_names() {
        Ok(names) => {
            for name in names {
                if run_owner(&name).is_some_and(process_exists) {
                    continue;
                }
                let run = cg.open_run(&name);
                eprintln!("demoter: removing stale cgroup {}", run.path().display());
                if let Err(e) = destroy(run.as_ref()) {
                    eprintln!("demoter: cannot remove stale cgroup: {e}");
                }
            }
        }
        Err(e) => eprintln!("demoter: cannot list {}: {e}", cg.describe()),
    }
}

/// Names of the `run-*` subdirectories of `dir`.
pub(crate) fn list_runs(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).at("list", dir)? {
        let entry = entry.at("list", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(RUN_PREFIX) && entry.file_type().at("stat", &entry.path())?.is_dir() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Creates a cgroup directory (it must not exist yet).
pub(crate) fn make_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir(path).at("create cgroup", path)
}

/// Removes a cgroup directory; a missing one is fine.
pub(crate) fn remove_dir(path: &Path) -> Result<(), Error> {
    match fs::remove_dir(path).at("remove cgroup", path) {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// Writes a control file. (`create` only matters for temp-dir tests: cgroupfs files exist.)
pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .at("open", path)?;
    file.write_all(value.as_bytes()).at("write", path)
}

pub(crate) fn read_file(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).at("read", path)
}

/// Reads a file holding one number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    let text = read_file(path)?;
    parse_u64(&text).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        what: "a number",
        text,
    })
}

/// Reads `key`'s value from a flat keyed file (`key value` lines); `None` if the key is absent.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>, Error> {
    let text = read_file(path)?;
    parse_keyed(&text, key).map_err(|()| Error::Parse {
        path: path.to_path_buf(),
        what: "a keyed number",
        text,
    })
}

/// Reads a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, Error> {
    let text = read_file(path)?;
    parse_pids(&text).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        what: "process ids",
        text,
    })
}

/// Parses a file holding one unsigned number (and a newline).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses `key`'s value out of `key value` lines. `Ok(None)` if absent, `Err` if malformed.
#[allow(clippy::result_unit_err)]
pub fn parse_keyed(text: &str, key: &str) -> Result<Option<u64>, ()> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            return match (words.next().map(str::parse::<u64>), words.next()) {
                (Some(Ok(value)), None) => Ok(Some(value)),
                _ => Err(()),
            };
        }
    }
    Ok(None)
}

/// Parses one process id per line.
pub fn parse_pids(text: &str) -> Option<Vec<i32>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().ok().filter(|pid: &i32| *pid > 0))
        .collect()
}

/// SIGKILLs each pid; ones that are already gone are fine.
pub(crate) fn kill_pids(pids: &[i32]) -> Result<(), Error> {
    for &pid in pids.iter().filter(|&&pid| pid > 0) {
        // SAFETY: kill() has no memory-safety preconditions; pid > 0, so this never signals a
        // process group or every process.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        if rc == -1 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                return Err(Error::Sys {
                    op: "kill",
                    source: err,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_numbers() {
        assert_eq!(parse_u64("123456789\n"), Some(123_456_789));
        assert_eq!(parse_u64("max\n"), None);
        assert_eq!(parse_u64(""), None);
    }

    #[test]
    fn parses_keyed_files() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(oom_control, "oom_kill"), Ok(Some(3)));
        assert_eq!(parse_keyed(oom_control, "oom"), Ok(None));
        let cpu_stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(parse_keyed(cpu_stat, "usage_usec"), Ok(Some(1500)));
        assert_eq!(parse_keyed("oom_kill x\n", "oom_kill"), Err(()));
        assert_eq!(parse_keyed("oom_kill 1 2\n", "oom_kill"), Err(()));
    }

    #[test]
    fn parses_pids() {
        assert_eq!(parse_pids("12\n345\n"), Some(vec![12, 345]));
        assert_eq!(parse_pids(""), Some(vec![]));
        assert_eq!(parse_pids("12\nx\n"), None);
        assert_eq!(parse_pids("0\n"), None);
    }

    #[test]
    fn detects_layouts_and_refuses_others() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(detect(tmp.path()), Err(Error::NoCgroup { .. })));

        fs::write(tmp.path().join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(
            tmp.path().join("cgroup.subtree_control"),
            "memory pids cpu\n",
        )
        .unwrap();
        assert!(detect(tmp.path())
            .unwrap()
            .describe()
            .starts_with("cgroup v2"));

        let v1 = tempfile::tempdir().unwrap();
        for c in ["memory", "cpuacct", "pids"] {
            fs::create_dir(v1.path().join(c)).unwrap();
            fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        assert!(detect(v1.path())
            .unwrap()
            .describe()
            .starts_with("cgroup v1"));
    }

    #[test]
    fn run_names_carry_their_owner() {
        let name = run_name(7);
        assert_eq!(run_owner(&name), Some(std::process::id() as i32));
        assert!(name.ends_with("-7"));
        assert_eq!(run_owner("run-12-3"), Some(12));
        assert_eq!(run_owner("run-x-3"), None);
        assert_eq!(run_owner("run-12"), None);
        assert_eq!(run_owner("other"), None);
    }

    #[test]
    fn only_runs_of_dead_demoters_are_stale() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.controllers"), "").unwrap();
        fs::write(tmp.path().join("cgroup.subtree_control"), "memory pids cpu").unwrap();
        let boxed = detect(tmp.path()).unwrap();
        let mine = run_name(1);
        // Pid 0x7ffffff0 is above any pid_max: that demoter is gone.
        let dead = "run-2147483632-1";
        fs::create_dir(tmp.path().join(&mine)).unwrap();
        fs::create_dir(tmp.path().join(dead)).unwrap();
        remove_stale_runs(boxed.as_ref());
        // Destroying starts by stopping forks (which in a plain directory leaves a file behind
        // and so keeps rmdir from succeeding).
        assert!(tmp.path().join(dead).join("pids.max").exists());
        assert!(!tmp.path().join(&mine).join("pids.max").exists());
    }

    #[test]
    fn lists_only_run_directories() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("run-1-0")).unwrap();
        fs::create_dir(tmp.path().join("other")).unwrap();
        fs::write(tmp.path().join("run-file"), "").unwrap();
        assert_eq!(list_runs(tmp.path()).unwrap(), vec!["run-1-0".to_string()]);
    }
}
