//! The host side of the cgroups a sandbox's runs are limited by: one subtree per container
//! ("box"), created here under a parent the container cannot escape, bind-mounted into the
//! container where the demoter creates one child per run, and removed here afterwards.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::SandboxError;

/// The cgroup v1 controllers the demoter uses.
pub const V1_CONTROLLERS: [&str; 3] = ["memory", "cpuacct", "pids"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Where box cgroups are made: `<root>/<controller>/<parent>/` (v1) or `<root>/<parent>/` (v2).
#[derive(Debug, Clone)]
pub struct HostCgroups {
    root: PathBuf,
    parent: String,
    version: Version,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Cgroup {
        path: path.to_owned(),
        source,
    }
}

impl HostCgroups {
    /// Detects the cgroup version under `root` (normally `/sys/fs/cgroup`) and makes sure the
    /// parent cgroup exists.
    pub fn prepare(root: &Path, parent: &str) -> Result<Self, SandboxError> {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else if root.join("memory").join("cgroup.procs").exists() {
            Version::V1
        } else {
            return Err(SandboxError::Cgroup {
                path: root.to_owned(),
                source: std::io::Error::new(
                    ErrorKind::NotFound,
                    "neither cgroup v2 nor a cgroup v1 memory controller is mounted here",
                ),
            });
        };
        let cgroups = HostCgroups {
            root: root.to_owned(),
            parent: parent.to_owned(),
            version,
        };
        match version {
            Version::V1 => {
                for controller in V1_CONTROLLERS {
                    let dir = root.join(controller).join(parent);
                    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                }
            }
            Version::V2 => {
                let dir = root.join(parent);
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                // Controllers must be enabled on the way down for the boxes and their runs.
                enable_v2_controllers(root)?;
                enable_v2_controllers(&dir)?;
            }
        }
        Ok(cgroups)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Creates the cgroup of one box, limited to `pids` tasks in all.
    pub fn create_box(&self, name: &str, pids: u64) -> Result<BoxCgroup, SandboxError> {
        let dirs: Vec<(String, PathBuf)> = match self.version {
            Version::V1 => V1_CONTROLLERS
                .iter()
                .map(|c| {
                    (
                        (*c).to_owned(),
                        self.root.join(c).join(&self.parent).join(name),
                    )
                })
                .collect(),
            Version::V2 => vec![(String::new(), self.root.join(&self.parent).join(name))],
        };
        let cgroup = BoxCgroup {
            dirs,
            version: self.version,
        };
        for (_, dir) in &cgroup.dirs {
            std::fs::create_dir(dir).map_err(io_err(dir))?;
        }
        let pids_dir = match self.version {
            Version::V1 => &cgroup.dirs[2].1,
            Version::V2 => {
                enable_v2_controllers(&cgroup.dirs[0].1)?;
                &cgroup.dirs[0].1
            }
        };
        let file = pids_dir.join("pids.max");
        std::fs::write(&file, pids.to_string()).map_err(io_err(&file))?;
        Ok(cgroup)
    }

    /// Box cgroups left behind (e.g. by a killed worker) whose name `is_stale` accepts.
    pub fn remove_stale(&self, is_stale: impl Fn(&str) -> bool) -> usize {
        let base = match self.version {
            Version::V1 => self.root.join(V1_CONTROLLERS[0]).join(&self.parent),
            Version::V2 => self.root.join(&self.parent),
        };
        let Ok(entries) = std::fs::read_dir(&base) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir() || !is_stale(&name) {
                continue;
            }
            let dirs = match self.version {
                Version::V1 => V1_CONTROLLERS
                    .iter()
                    .map(|c| {
                        (
                            String::new(),
                            self.root.join(c).join(&self.parent).join(&name),
                        )
                    })
                    .collect(),
                Version::V2 => vec![(String::new(), entry.path())],
            };
            let cgroup = BoxCgroup {
                dirs,
                version: self.version,
            };
            if cgroup.remove().is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

fn enable_v2_controllers(dir: &Path) -> Result<(), SandboxError> {
    let file = dir.join("cgroup.subtree_control");
    // Each controller separately: one that is not available must not block the others.
    for controller in ["+memory", "+pids", "+cpu"] {
        if let Err(source) = std::fs::write(&file, controller) {
            if controller != "+cpu" {
                return Err(SandboxError::Cgroup { path: file, source });
            }
        }
    }
    Ok(())
}

/// The cgroup subtree of one box. Removed (after killing anything left in it) on drop.
#[derive(Debug)]
pub struct BoxCgroup {
    /// (name under `/judge/cgroup` in the container, host directory).
    dirs: Vec<(String, PathBuf)>,
    version: Version,
}

impl BoxCgroup {
    /// Bind mounts (`host:container:rw`) that hand the subtree to the container at `target`.
    pub fn binds(&self, target: &str) -> Vec<String> {
        self.dirs
            .iter()
            .map(|(name, dir)| {
                let inside = if name.is_empty() {
                    target.to_owned()
                } else {
                    format!("{target}/{name}")
                };
                format!("{}:{inside}:rw", dir.display())
            })
            .collect()
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Kills every process left in the subtree and removes it, children first.
    pub fn remove(&self) -> Result<(), SandboxError> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, dir) in &self.dirs {
            remove_tree(dir, deadline)?;
        }
        Ok(())
    }
}

impl Drop for BoxCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(error = %e, "could not remove a box cgroup");
        }
    }
}

fn kill_all(dir: &Path) {
    let procs = dir.join("cgroup.procs");
    if let Ok(text) = std::fs::read_to_string(procs) {
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // Only processes inside our own box cgroup are signalled.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), SandboxError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(SandboxError::Cgroup {
                path: dir.to_owned(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path(), deadline)?;
        }
    }
    loop {
        kill_all(dir);
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            // Busy while the killed processes are still exiting.
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc_ebusy()) => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(source) => {
                return Err(SandboxError::Cgroup {
                    path: dir.to_owned(),
                    source,
                })
            }
        }
    }
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_name_each_v1_controller() {
        let cgroup = BoxCgroup {
            dirs: vec![
                ("memory".into(), "/sys/fs/cgroup/memory/e/b".into()),
                ("pids".into(), "/sys/fs/cgroup/pids/e/b".into()),
            ],
            version: Version::V1,
        };
        assert_eq!(
            cgroup.binds("/judge/cgroup"),
            [
                "/sys/fs/cgroup/memory/e/b:/judge/cgroup/memory:rw",
                "/sys/fs/cgroup/pids/e/b:/judge/cgroup/pids:rw"
            ]
        );
        std::mem::forget(cgroup);
    }

    #[test]
    fn v2_binds_the_box_itself() {
        let cgroup = BoxCgroup {
            dirs: vec![(String::new(), "/sys/fs/cgroup/e/b".into())],
            version: Version::V2,
        };
        assert_eq!(
            cgroup.binds("/judge/cgroup"),
            ["/sys/fs/cgroup/e/b:/judge/cgroup:rw"]
        );
        std::mem::forget(cgroup);
    }

    #[test]
    fn an_unknown_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            HostCgroups::prepare(dir.path(), "x"),
            Err(SandboxError::Cgroup { .. })
        ));
    }

    #[test]
    fn remove_tree_removes_nested_directories() {
        // On a plain file system rmdir works as on cgroupfs once the directories are empty.
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("box");
        std::fs::create_dir_all(b.join("run-1")).unwrap();
        std::fs::create_dir_all(b.join("run-2/x")).unwrap();
        remove_tree(&b, Instant::now() + Duration::from_secs(1)).unwrap();
        assert!(!b.exists());
    }
}
