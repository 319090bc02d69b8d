//! A CPU of its own for each run in progress, so a verdict near the time limit does not depend
//! on which core the scheduler picked or what ran beside it (caches, migrations, a neighbour's
//! hyper-thread). A CPU is lent, like a box uid, by an exclusive `flock` on a file named after
//! it in a directory shared by every worker process on the host: two workers never pin to the
//! same CPU, and a process that dies gives its CPUs back with its descriptors. When every CPU
//! is lent the run goes unpinned (it is judged as well, its time only as repeatable as without
//! pinning).
//!
//! The CPU reaches the demoter through a task-local set around the run's future ([`pinned`]),
//! read by [`super::Container::run`]; the demoter sets the program's affinity before it drops
//! privileges and denies it `sched_setaffinity`.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::fcntl::Flock;

use super::SandboxError;

tokio::task_local! {
    /// The CPU runs started by the current future are pinned to.
    static PINNED: Option<u32>;
}

/// Runs `work` with its sandbox runs pinned to `cpu` (`None`: not pinned).
pub async fn pinned<F: Future>(cpu: Option<u32>, work: F) -> F::Output {
    PINNED.scope(cpu, work).await
}

/// The CPU the current future's runs are pinned to, if any.
pub(super) fn current() -> Option<u32> {
    PINNED.try_with(|cpu| *cpu).ok().flatten()
}

/// The CPUs this process may use, lent one at a time, locked in a shared directory.
#[derive(Debug)]
pub struct Cpus {
    dir: PathBuf,
    /// Highest first: CPU 0 takes most interrupts and housekeeping on many hosts.
    ids: Vec<u32>,
}

/// One CPU, held until dropped (after the run on it has ended).
#[derive(Debug)]
pub struct HeldCpu {
    cpu: u32,
    _lock: Flock<File>,
}

impl HeldCpu {
    pub fn cpu(&self) -> u32 {
        self.cpu
    }
}

impl Cpus {
    /// The CPUs of this process's affinity mask, locked in `dir` (made, root-only, if missing).
    pub fn new(dir: &Path) -> Result<Self, SandboxError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SandboxError::Io {
                path: dir.to_owned(),
                source,
            })?;
        let mut ids: Vec<u32> = match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
            Ok(set) => (0..nix::sched::CpuSet::count())
                .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                .filter_map(|cpu| u32::try_from(cpu).ok())
                .collect(),
            Err(errno) => {
                tracing::warn!(%errno, "cannot read this process's CPUs: runs are not pinned");
                Vec::new()
            }
        };
        ids.reverse();
        Ok(Cpus {
            dir: dir.to_owned(),
            ids,
        })
    }

    /// How many CPUs this process may use.
    pub fn count(&self) -> usize {
        self.ids.len()
    }

    /// A CPU no other run on this host holds; `None` when every one is taken (or its lock file
    /// cannot be opened: pinning is best effort, never a reason to fail a run).
    pub fn take(&self) -> Option<HeldCpu> {
        for &cpu in &self.ids {
            let path = self.dir.join(cpu.to_string());
            match super::uids::try_lend(&path) {
                Ok(Some(lock)) => return Some(HeldCpu { cpu, _lock: lock }),
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot lock a CPU");
                    return None;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_get_different_cpus_across_processes_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        // Two lenders over one directory: two worker processes on one host.
        let (a, b) = (
            Cpus::new(dir.path()).unwrap(),
            Cpus::new(dir.path()).unwrap(),
        );
        assert!(a.count() >= 1);
        let held: Vec<HeldCpu> = (0..a.count())
            .map(|i| if i % 2 == 0 { a.take() } else { b.take() }.unwrap())
            .collect();
        let mut cpus: Vec<u32> = held.iter().map(HeldCpu::cpu).collect();
        cpus.sort();
        cpus.dedup();
        assert_eq!(cpus.len(), a.count(), "every CPU lent once");
        assert!(a.take().is_none() && b.take().is_none());
        let freed = held[0].cpu();
        drop(held);
        assert_eq!(b.take().map(|h| h.cpu()), Some(freed));
    }

    #[tokio::test]
    async fn the_pinned_cpu_is_seen_only_inside_its_future() {
        assert_eq!(current(), None);
        let inside = pinned(Some(3), async { current() }).await;
        assert_eq!(inside, Some(3));
        assert_eq!(pinned(None, async { current() }).await, None);
        assert_eq!(current(), None);
    }
}
