//! cgroup v1: one hierarchy per controller. The box is `DIR/{memory,cpuacct,pids}`; a run is a
//! child directory of the same name in each.

use std::path::{Path, PathBuf};

use super::{
    kill_pids, list_runs, make_dir, read_keyed, read_pids, read_u64, remove_dir, write_file,
    BoxCgroup, RunCgroup, RunLimits,
};
use crate::error::Error;

/// The controllers a run is placed in, in the order a process joins them.
const CONTROLLERS: [&str; 3] = ["memory", "cpuacct", "pids"];

/// The box cgroup on a v1 host.
#[derive(Debug)]
pub struct V1Box {
    dir: PathBuf,
    /// Swap accounting is on: `memory.memsw.limit_in_bytes` exists and keeps swap out of the run.
    memsw: bool,
}

impl V1Box {
    /// `dir` must contain `memory`, `cpuacct` and `pids`.
    pub fn new(dir: &Path) -> Result<V1Box, Error> {
        for controller in CONTROLLERS {
            let procs = dir.join(controller).join("cgroup.procs");
            if !procs.exists() {
                return Err(Error::Refused {
                    path: procs,
                    reason: "cgroup v1 box lacks this controller",
                });
            }
        }
        Ok(V1Box {
            dir: dir.to_path_buf(),
            memsw: dir.join("memory/memory.memsw.limit_in_bytes").exists(),
        })
    }
}

impl V1Box {
    fn run(&self, name: &str) -> V1Run {
        V1Run {
            memory: self.dir.join("memory").join(name),
            cpuacct: self.dir.join("cpuacct").join(name),
            pids: self.dir.join("pids").join(name),
            memsw: self.memsw,
        }
    }
}

impl BoxCgroup for V1Box {
    fn describe(&self) -> String {
        format!("cgroup v1 box {}", self.dir.display())
    }

    fn open_run(&self, name: &str) -> Box<dyn RunCgroup> {
        Box::new(self.run(name))
    }

    fn make_run(&self, name: &str) -> Result<Box<dyn RunCgroup>, Error> {
        let run = self.run(name);
        let mut created = Vec::new();
        for dir in run.dirs() {
            if let Err(e) = make_dir(dir) {
                // Only what this call created: a directory that was there is not ours.
                for dir in created {
                    if let Err(cleanup) = remove_dir(dir) {
                        eprintln!("demoter: {cleanup}");
                    }
                }
                return Err(e);
            }
            created.push(dir);
        }
        Ok(Box::new(run))
    }

    fn run_names(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for controller in CONTROLLERS {
            for name in list_runs(&self.dir.join(controller))? {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }
}

/// The cgroups of one run on a v1 host.
#[derive(Debug)]
pub struct V1Run {
    memory: PathBuf,
    cpuacct: PathBuf,
    pids: PathBuf,
    /// See [`V1Box::memsw`].
    memsw: bool,
}

impl V1Run {
    fn dirs(&self) -> [&Path; 3] {
        [&self.memory, &self.cpuacct, &self.pids]
    }
}

impl RunCgroup for V1Run {
    fn path(&self) -> &Path {
        &self.memory
    }

    fn limit(&self, limits: &RunLimits) -> Result<(), Error> {
        let bytes = limits.memory_bytes.to_string();
        // memsw must stay >= memory, so memory goes first (both start unlimited).
        write_file(&self.memory.join("memory.limit_in_bytes"), &bytes)?;
        if self.memsw {
            write_file(&self.memory.join("memory.memsw.limit_in_bytes"), &bytes)?;
        } else if let Err(e) = write_file(&self.memory.join("memory.swappiness"), "0") {
            // Without swap accounting this only makes swapping less likely.
            eprintln!("demoter: {e}");
        }
        write_file(&self.pids.join("pids.max"), &limits.pids.to_string())
    }

    fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn cpu_usage_ns(&self) -> Result<u64, Error> {
        read_u64(&self.cpuacct.join("cpuacct.usage"))
    }

    fn memory_peak_bytes(&self) -> Result<Option<u64>, Error> {
        read_u64(&self.memory.join("memory.max_usage_in_bytes")).map(Some)
    }

    fn oom_kills(&self) -> Result<u64, Error> {
        // `oom_kill` exists since Linux 4.13; without it only the peak tells (see `limit`).
        Ok(read_keyed(&self.memory.join("memory.oom_control"), "oom_kill")?.unwrap_or(0))
    }

    fn stop_forks(&self) -> Result<(), Error> {
        write_file(&self.pids.join("pids.max"), "0")
    }

    fn procs(&self) -> Result<Vec<i32>, Error> {
        // A process joins the three cgroups one after another: look in all of them.
        let mut all = Vec::new();
        for dir in self.dirs() {
            match read_pids(&dir.join("cgroup.procs")) {
                Ok(pids) => all.extend(pids),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }

    fn kill(&self, pids: &[i32]) -> Result<(), Error> {
        kill_pids(pids)
    }

    fn remove(&self) -> Result<(), Error> {
        let mut result = Ok(());
        for dir in self.dirs() {
            crate::error::keep_first(&mut result, remove_dir(dir));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn fake_box(memsw: bool) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for c in CONTROLLERS {
            fs::create_dir(tmp.path().join(c)).unwrap();
            fs::write(tmp.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        if memsw {
            fs::write(tmp.path().join("memory/memory.memsw.limit_in_bytes"), "").unwrap();
        }
        tmp
    }

    const LIMITS: RunLimits = RunLimits {
        memory_bytes: 64 << 20,
        pids: 16,
    };

    #[test]
    fn create_run_writes_limits_in_each_controller() {
        let tmp = fake_box(true);
        let boxed = V1Box::new(tmp.path()).unwrap();
        let run = boxed.create_run("run-1", &LIMITS).unwrap();
        let read = |p: &str| fs::read_to_string(tmp.path().join(p)).unwrap();
        assert_eq!(read("memory/run-1/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory/run-1/memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/run-1/pids.max"), "16");
        assert!(tmp.path().join("cpuacct/run-1").is_dir());
        assert_eq!(
            run.procs_files(),
            vec![
                tmp.path().join("memory/run-1/cgroup.procs"),
                tmp.path().join("cpuacct/run-1/cgroup.procs"),
                tmp.path().join("pids/run-1/cgroup.procs"),
            ]
        );
        assert_eq!(boxed.run_names().unwrap(), vec!["run-1".to_string()]);
    }

    #[test]
    fn without_swap_accounting_memsw_is_not_written() {
        let tmp = fake_box(false);
        let boxed = V1Box::new(tmp.path()).unwrap();
        boxed.create_run("run-1", &LIMITS).unwrap();
        assert!(!tmp
            .path()
            .join("memory/run-1/memory.memsw.limit_in_bytes")
            .exists());
        assert_eq!(
            fs::read_to_string(tmp.path().join("memory/run-1/memory.swappiness")).unwrap(),
            "0"
        );
    }

    #[test]
    fn an_existing_run_is_refused_and_left_alone() {
        let tmp = fake_box(true);
        fs::create_dir(tmp.path().join("cpuacct/run-1")).unwrap();
        let boxed = V1Box::new(tmp.path()).unwrap();
        let err = boxed.create_run("run-1", &LIMITS).unwrap_err();
        assert!(err.to_string().contains("cpuacct/run-1"), "{err}");
        // The memory cgroup created before the failure was removed again, the other one kept.
        assert!(!tmp.path().join("memory/run-1").exists());
        assert!(tmp.path().join("cpuacct/run-1").exists());
    }

    #[test]
    fn reads_counters_and_kills() {
        let tmp = fake_box(true);
        let boxed = V1Box::new(tmp.path()).unwrap();
        let run = boxed.create_run("run-1", &LIMITS).unwrap();
        let write = |p: &str, v: &str| fs::write(tmp.path().join(p), v).unwrap();
        write("cpuacct/run-1/cpuacct.usage", "501234567\n");
        write("memory/run-1/memory.max_usage_in_bytes", "1048576\n");
        write(
            "memory/run-1/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        );
        write("memory/run-1/cgroup.procs", "");
        write("pids/run-1/cgroup.procs", "");
        assert_eq!(run.cpu_usage_ns().unwrap(), 501_234_567);
        assert_eq!(run.memory_peak_bytes().unwrap(), Some(1 << 20));
        assert_eq!(run.oom_kills().unwrap(), 1);
        assert_eq!(run.procs().unwrap(), Vec::<i32>::new());
        super::super::kill_all(run.as_ref(), std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("pids/run-1/pids.max")).unwrap(),
            "0"
        );
    }

    #[test]
    fn remove_tolerates_missing_directories() {
        let tmp = fake_box(true);
        let boxed = V1Box::new(tmp.path()).unwrap();
        let run = boxed.open_run("run-9");
        fs::create_dir(tmp.path().join("pids/run-9")).unwrap();
        run.remove().unwrap();
        assert!(!tmp.path().join("pids/run-9").exists());
    }
}
