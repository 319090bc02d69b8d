//! cgroup v2 (unified hierarchy): the box is `DIR`, a run is `DIR/<name>`.
//!
//! From the kernel's cgroup-v2 documentation: `DIR` must hold no process itself once it
//! delegates controllers to children (the agent is not in it), controllers are enabled for the
//! children through `DIR/cgroup.subtree_control`, `cpu.stat` (`usage_usec`) exists whether or
//! not the cpu controller is enabled, `memory.peak` exists since Linux 5.19 and `cgroup.kill`
//! since 5.14.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use super::{
    kill_pids, list_runs, make_dir, read_file, read_keyed, read_pids, read_u64, remove_dir,
    write_file, BoxCgroup, RunCgroup, RunLimits,
};
use crate::error::Error;

/// Controllers the runs need (`cpu` only for weights; accounting works without it).
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// The box cgroup on a v2 host.
#[derive(Debug)]
pub struct V2Box {
    dir: PathBuf,
    /// `memory.swap.max` exists: swap can be turned off for runs.
    swap: bool,
}

impl V2Box {
    /// Enables the controllers runs need in `dir/cgroup.subtree_control` where it can; a
    /// controller that cannot be enabled shows later as a missing limit file with its path.
    pub fn new(dir: &Path) -> V2Box {
        vacate(dir);
        let control = dir.join("cgroup.subtree_control");
        let enabled = read_file(&control).unwrap_or_default();
        for controller in CONTROLLERS {
            if !enabled.split_whitespace().any(|c| c == controller) {
                if let Err(e) = write_file(&control, &format!("+{controller}")) {
                    eprintln!("demoter: cannot enable {controller}: {e}");
                }
            }
        }
        V2Box {
            dir: dir.to_path_buf(),
            swap: dir.join("memory.swap.max").exists(),
        }
    }
}

/// Leaf of the box cgroup that processes found in the box itself are moved to.
pub const AGENT_LEAF: &str = "agent";

/// A v2 cgroup can only give controllers to its children while it has no processes itself.
/// When the box has some (the agent was started inside it, e.g. as the root of a private
/// cgroup namespace), they are moved to the leaf `DIR/agent`. Best effort, logged.
fn vacate(dir: &Path) {
    let pids = match read_pids(&dir.join("cgroup.procs")) {
        Ok(pids) if !pids.is_empty() => pids,
        _ => return,
    };
    let leaf = dir.join(AGENT_LEAF);
    if let Err(e) = std::fs::create_dir(&leaf) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            eprintln!("demoter: cannot create {}: {e}", leaf.display());
            return;
        }
    }
    for pid in pids {
        // Each write moves one process; one that exited meanwhile does not matter.
        if let Err(e) = write_file(&leaf.join("cgroup.procs"), &pid.to_string()) {
            eprintln!("demoter: cannot move process {pid} out of the box cgroup: {e}");
        }
    }
}

impl BoxCgroup for V2Box {
    fn describe(&self) -> String {
        format!("cgroup v2 box {}", self.dir.display())
    }

    fn open_run(&self, name: &str) -> Box<dyn RunCgroup> {
        Box::new(V2Run::new(self.dir.join(name), self.swap))
    }

    fn make_run(&self, name: &str) -> Result<Box<dyn RunCgroup>, Error> {
        let run = V2Run::new(self.dir.join(name), self.swap);
        make_dir(&run.dir)?;
        Ok(Box::new(run))
    }

    fn run_names(&self) -> Result<Vec<String>, Error> {
        list_runs(&self.dir)
    }
}

/// The cgroup of one run on a v2 host.
#[derive(Debug)]
pub struct V2Run {
    dir: PathBuf,
    /// The swap controller is on: `memory.swap.max` keeps swap out of the run.
    swap: bool,
    /// Highest `memory.current` seen, for kernels without `memory.peak`.
    sampled_peak: Cell<u64>,
}

impl V2Run {
    fn new(dir: PathBuf, swap: bool) -> V2Run {
        V2Run {
            dir,
            swap,
            sampled_peak: Cell::new(0),
        }
    }
}

impl RunCgroup for V2Run {
    fn path(&self) -> &Path {
        &self.dir
    }

    fn limit(&self, limits: &RunLimits) -> Result<(), Error> {
        write_file(
            &self.dir.join("memory.max"),
            &limits.memory_bytes.to_string(),
        )?;
        if self.swap {
            write_file(&self.dir.join("memory.swap.max"), "0")?;
        }
        write_file(&self.dir.join("pids.max"), &limits.pids.to_string())
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        vec![self.dir.join("cgroup.procs")]
    }

    fn cpu_usage_ns(&self) -> Result<u64, Error> {
        let path = self.dir.join("cpu.stat");
        match read_keyed(&path, "usage_usec")? {
            Some(usec) => Ok(usec.saturating_mul(1000)),
            None => Err(Error::Parse {
                path,
                what: "usage_usec",
                text: String::new(),
            }),
        }
    }

    fn sample(&self) {
        if let Ok(current) = read_u64(&self.dir.join("memory.current")) {
            self.sampled_peak.set(self.sampled_peak.get().max(current));
        }
    }

    fn memory_peak_bytes(&self) -> Result<Option<u64>, Error> {
        match read_u64(&self.dir.join("memory.peak")) {
            Ok(peak) => Ok(Some(peak)),
            Err(e) if e.is_not_found() => {
                self.sample();
                Ok(Some(self.sampled_peak.get()).filter(|&p| p > 0))
            }
            Err(e) => Err(e),
        }
    }

    fn oom_kills(&self) -> Result<u64, Error> {
        Ok(read_keyed(&self.dir.join("memory.events"), "oom_kill")?.unwrap_or(0))
    }

    fn stop_forks(&self) -> Result<(), Error> {
        write_file(&self.dir.join("pids.max"), "0")
    }

    fn procs(&self) -> Result<Vec<i32>, Error> {
        match read_pids(&self.dir.join("cgroup.procs")) {
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            other => other,
        }
    }

    fn kill(&self, pids: &[i32]) -> Result<(), Error> {
        let kill_file = self.dir.join("cgroup.kill");
        if kill_file.exists() {
            // Atomic for the whole cgroup: no race with forks or pid reuse.
            write_file(&kill_file, "1")
        } else {
            kill_pids(pids)
        }
    }

    fn remove(&self) -> Result<(), Error> {
        remove_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const LIMITS: RunLimits = RunLimits {
        memory_bytes: 256 << 20,
        pids: 32,
    };

    fn fake_box(subtree: &str, swap: bool) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(tmp.path().join("cgroup.subtree_control"), subtree).unwrap();
        if swap {
            fs::write(tmp.path().join("memory.swap.max"), "max\n").unwrap();
        }
        tmp
    }

    #[test]
    fn enables_missing_controllers() {
        let tmp = fake_box("", true);
        V2Box::new(tmp.path());
        // A real cgroupfs accumulates the writes; a plain file keeps the last one.
        assert_eq!(
            fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );

        let tmp = fake_box("cpu memory pids\n", true);
        V2Box::new(tmp.path());
        assert_eq!(
            fs::read_to_string(tmp.path().join("cgroup.subtree_control")).unwrap(),
            "cpu memory pids\n"
        );
    }

    #[test]
    fn processes_in_the_box_move_to_a_leaf() {
        let tmp = fake_box("cpu memory pids\n", true);
        fs::write(tmp.path().join("cgroup.procs"), "4242\n").unwrap();
        V2Box::new(tmp.path());
        assert_eq!(
            fs::read_to_string(tmp.path().join("agent/cgroup.procs")).unwrap(),
            "4242"
        );
        // The leaf is not a run.
        assert!(V2Box::new(tmp.path()).run_names().unwrap().is_empty());
    }

    #[test]
    fn create_run_writes_limits() {
        let tmp = fake_box("cpu memory pids\n", true);
        let run = V2Box::new(tmp.path()).create_run("run-1", &LIMITS).unwrap();
        let read = |p: &str| fs::read_to_string(tmp.path().join("run-1").join(p)).unwrap();
        assert_eq!(read("memory.max"), "268435456");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "32");
        assert_eq!(
            run.procs_files(),
            vec![tmp.path().join("run-1/cgroup.procs")]
        );
    }

    #[test]
    fn without_swap_controller_swap_max_is_not_written() {
        let tmp = fake_box("cpu memory pids\n", false);
        V2Box::new(tmp.path()).create_run("run-1", &LIMITS).unwrap();
        assert!(!tmp.path().join("run-1/memory.swap.max").exists());
    }

    #[test]
    fn reads_counters() {
        let tmp = fake_box("cpu memory pids\n", true);
        let run = V2Box::new(tmp.path()).create_run("run-1", &LIMITS).unwrap();
        let write = |p: &str, v: &str| fs::write(tmp.path().join("run-1").join(p), v).unwrap();
        write(
            "cpu.stat",
            "usage_usec 600123\nuser_usec 600000\nsystem_usec 123\n",
        );
        write(
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n",
        );
        assert_eq!(run.cpu_usage_ns().unwrap(), 600_123_000);
        assert_eq!(run.oom_kills().unwrap(), 1);

        // Without memory.peak, the highest sampled memory.current is the peak.
        assert_eq!(run.memory_peak_bytes().unwrap(), None);
        write("memory.current", "4096\n");
        run.sample();
        write("memory.current", "1024\n");
        assert_eq!(run.memory_peak_bytes().unwrap(), Some(4096));
        write("memory.peak", "8192\n");
        assert_eq!(run.memory_peak_bytes().unwrap(), Some(8192));
    }

    #[test]
    fn kill_prefers_cgroup_kill() {
        let tmp = fake_box("cpu memory pids\n", true);
        let run = V2Box::new(tmp.path()).create_run("run-1", &LIMITS).unwrap();
        fs::write(tmp.path().join("run-1/cgroup.kill"), "").unwrap();
        run.kill(&[]).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("run-1/cgroup.kill")).unwrap(),
            "1"
        );
        run.stop_forks().unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("run-1/pids.max")).unwrap(),
            "0"
        );
    }
}
