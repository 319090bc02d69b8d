//! Fixtures for the integration tests: a real cgroup box per test, a world-readable work
//! directory, C programs compiled at test time, and a uid no other test uses.
//!
//! These tests need root and cgroups as mounted: v1 controllers at
//! /sys/fs/cgroup/{memory,cpuacct,pids}, or else a v2 hierarchy at /sys/fs/cgroup with memory,
//! pids and cpu enabled in its `cgroup.subtree_control` (scripts/cgroup-v2-guest boots one).
//! Where there is no gcc (that guest), `DEMOTER_TEST_PROGRAMS` names a directory of the
//! programs built beforehand: `NAME` and the `NAME.c` it was built from.

#![allow(dead_code)] // Each test binary uses a different part.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use demoter::protocol::{Limits, Response, RunResult, RunSpec};

pub const CONTROLLERS: [&str; 3] = ["memory", "cpuacct", "pids"];

/// The cgroup hierarchy mounted at /sys/fs/cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
}

pub fn layout() -> Layout {
    if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        Layout::V1
    } else {
        Layout::V2
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One test's world: its own cgroup box, work dir and uid. Everything is removed on drop.
pub struct Fixture {
    pub n: u32,
    /// The `--cgroup` directory: v1, symlinks to this test's cgroup of each controller; v2, the
    /// test's cgroup itself.
    pub cgroup_dir: PathBuf,
    /// World-readable work directory (programs, files the runs read).
    pub work: tempfile::TempDir,
    pub uid: u32,
    cgroups: Vec<PathBuf>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("demoter-test-{}-{n}", std::process::id());
        let work = tempfile::tempdir().expect("temp dir");
        fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let create = |dir: &Path| {
            fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()))
        };
        let (cgroup_dir, cgroups) = match layout() {
            Layout::V1 => {
                let cgroup_dir = work.path().join("cgroup");
                fs::create_dir(&cgroup_dir).unwrap();
                let mut cgroups = Vec::new();
                for controller in CONTROLLERS {
                    let dir = Path::new("/sys/fs/cgroup").join(controller).join(&name);
                    create(&dir);
                    symlink(&dir, cgroup_dir.join(controller)).unwrap();
                    cgroups.push(dir);
                }
                (cgroup_dir, cgroups)
            }
            Layout::V2 => {
                let dir = Path::new("/sys/fs/cgroup").join(&name);
                create(&dir);
                (dir.clone(), vec![dir])
            }
        };
        let boxdir = work.path().join("box");
        fs::create_dir(&boxdir).unwrap();
        fs::set_permissions(&boxdir, fs::Permissions::from_mode(0o755)).unwrap();
        Fixture {
            n,
            cgroup_dir,
            work,
            // Distinct per test (per binary and test), so "no process of this uid is left" is
            // this test's business only.
            uid: 61000 + (std::process::id() % 1000) * 16 + n,
            cgroups,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// A spec running `argv` as this test's uid in a fresh `box/cwd`, output to `box/stdout`
    /// and `box/stderr`, with generous limits.
    pub fn spec(&self, argv: &[&str]) -> RunSpec {
        RunSpec {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into(), "HOME=/nonexistent".into()],
            cwd: self.path("box/cwd"),
            fresh_cwd: true,
            stdin: None,
            stdout: self.path("box/stdout"),
            stderr: self.path("box/stderr"),
            uid: self.uid,
            gid: self.uid,
            limits: Limits {
                cpu_ms: 2000,
                wall_ms: 10_000,
                memory_kb: 256 * 1024,
                pids: 32,
                output_bytes: 1 << 20,
                stderr_bytes: 64 * 1024,
                idle_ms: None,
            },
            input_name: None,
            output_name: None,
            pipe: None,
            stderr_to_stdout: false,
            cpu: None,
        }
    }

    /// This test's cgroups in which the demoter creates run cgroups: one per controller on v1,
    /// the box itself on v2.
    pub fn box_cgroups(&self) -> &[PathBuf] {
        &self.cgroups
    }

    /// Compiles C `source` into the work dir and returns the executable's path.
    pub fn compile(&self, name: &str, source: &str) -> String {
        let src = self.path(&format!("{name}.c"));
        let exe = self.path(name);
        if let Some(dir) = std::env::var_os("DEMOTER_TEST_PROGRAMS") {
            let built = Path::new(&dir).join(name);
            let built_from = fs::read_to_string(built.with_extension("c"))
                .unwrap_or_else(|e| panic!("no prebuilt {name} in {dir:?}: {e}"));
            assert_eq!(built_from, source, "prebuilt {name} is stale");
            fs::copy(&built, &exe).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
            return exe.to_str().unwrap().to_string();
        }
        fs::write(&src, source).unwrap();
        let out = Command::new("gcc")
            .args(["-O1", "-o"])
            .arg(&exe)
            .arg(&src)
            .output()
            .expect("gcc");
        assert!(
            out.status.success(),
            "gcc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe.to_str().unwrap().to_string()
    }

    /// `demoter run` with `extra` arguments before the spec; returns the parsed response line
    /// and the exit status.
    pub fn run_raw(&self, extra: &[&str], spec: &str) -> (Response, i32, Output) {
        let out = Command::new(env!("CARGO_BIN_EXE_demoter"))
            .arg("run")
            .arg("--cgroup")
            .arg(&self.cgroup_dir)
            .args(extra)
            .arg(spec)
            .output()
            .expect("run demoter");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one response line expected; stdout {stdout:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        let response = serde_json::from_str(lines[0]).expect("response JSON");
        (response, out.status.code().unwrap_or(-1), out)
    }

    /// Runs `spec` and expects it to have been carried out (exit 0, `ran`).
    pub fn run(&self, spec: &RunSpec) -> RunResult {
        self.run_with(&[], spec)
    }

    pub fn run_with(&self, extra: &[&str], spec: &RunSpec) -> RunResult {
        let (response, code, out) = self.run_raw(extra, &serde_json::to_string(spec).unwrap());
        match response {
            Response::Ran(result) => {
                assert_eq!(code, 0);
                result
            }
            other => panic!(
                "expected ran, got {other:?} (stderr {:?})",
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    pub fn read(&self, rel: &str) -> String {
        String::from_utf8_lossy(&fs::read(self.path(rel)).unwrap()).to_string()
    }

    /// Run cgroups (`run-*`) present in any controller of this test's box.
    pub fn run_cgroups(&self) -> Vec<PathBuf> {
        let mut runs = Vec::new();
        for dir in &self.cgroups {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name().to_string_lossy().starts_with("run-") {
                    runs.push(entry.path());
                }
            }
        }
        runs
    }

    /// The demoter must leave no run cgroup and no process of the test's uid behind.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.run_cgroups(),
            Vec::<PathBuf>::new(),
            "run cgroups left"
        );
        assert_eq!(processes_of(self.uid), Vec::<i32>::new(), "processes left");
        for dir in &self.cgroups {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
            assert_eq!(procs, "", "processes in {}", dir.display());
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Even when the test failed: kill what is left, remove run cgroups, then the box.
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in &self.cgroups {
            let mut children: Vec<PathBuf> = fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                        .map(|e| e.path())
                        .collect()
                })
                .unwrap_or_default();
            children.push(dir.clone());
            for cg in children {
                while cg.exists() {
                    if let Ok(procs) = fs::read_to_string(cg.join("cgroup.procs")) {
                        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                            // SAFETY: pid > 0 read from the test's own cgroup.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                    if fs::remove_dir(&cg).is_ok() || Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// Pids of processes whose real uid is `uid`.
pub fn processes_of(uid: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A process that exited meanwhile has no status any more.
        let Ok(status) = fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let real_uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok());
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if real_uid == Some(uid) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

/// Owner, mode, link count, size and content of a file, to show it was not touched.
pub fn fingerprint(path: &Path) -> (u32, u32, u64, u64, Vec<u8>) {
    let meta = fs::symlink_metadata(path).unwrap();
    (
        meta.uid(),
        meta.mode(),
        meta.nlink(),
        meta.len(),
        fs::read(path).unwrap(),
    )
}
