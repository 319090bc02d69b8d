//! One run: set-up, the watch loop, measurement, clean-up.
//!
//! The program's stdout and stderr are pipes the demoter copies into the files the host asked
//! for, so the output limit is counted exactly and the page cache of the output is not charged
//! to the program. The watch loop polls the pipes and a pidfd of the main process, and wakes up
//! to compare the cgroup's CPU usage with the limit: next check after
//! `max(1 ms, remaining CPU / CPUs)`, so a run cannot overshoot by more than about a millisecond
//! however many CPUs it uses.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup::{self, BoxCgroup, RunCgroup, RunGuard, RunLimits, KILL_DEADLINE};
use crate::error::{keep_first, Error, IoContext};
use crate::fsops::{self, FreshDir};
use crate::limit::{self, Observed};
use crate::protocol::{Exit, LimitHit, Limits, RunResult, RunSpec};
use crate::spawn::{self, ChildFds, Plan};
use crate::sys::{self, Reaped};

/// How long the pipes may stay open once every process of the run is dead.
const DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// How long orphans may take to become reapable after their cgroup emptied.
const REAP_DEADLINE: Duration = Duration::from_millis(500);

/// Without a pidfd, how often the main process is polled for.
const NO_PIDFD_TICK: Duration = Duration::from_millis(5);

/// Shortest pause between two CPU checks.
const MIN_CHECK: Duration = Duration::from_millis(1);

/// How long an interactive run waits for the other side to open its ends of the FIFOs.
const PIPE_DEADLINE: Duration = Duration::from_secs(10);

/// Bytes read from a pipe at a time.
const CHUNK: usize = 64 * 1024;

/// Where a run happens.
pub struct RunEnv<'a> {
    /// The box cgroup the run's cgroup is created in.
    pub cgroup: &'a dyn BoxCgroup,
    /// Name of the run's cgroup (unique in the box).
    pub name: &'a str,
    /// Directories emptied after the run (`/tmp`, `/dev/shm`...).
    pub wipe: &'a [PathBuf],
    /// CPUs the run can use at once.
    pub ncpus: u64,
}

/// Performs one run and cleans up after it, whatever happened: afterwards the run's cgroup is
/// empty and removed, the fresh working directory removed, the wipe directories empty and the
/// System V IPC objects of the program's user removed.
pub fn run(spec: &RunSpec, env: &RunEnv<'_>) -> Result<RunResult, Error> {
    let memory_bytes = validate(spec)?;
    let plan = Plan::new(spec, memory_bytes)?;
    let limits = RunLimits {
        memory_bytes,
        pids: spec.limits.pids,
    };
    let cg = RunGuard::new(env.cgroup.create_run(env.name, &limits)?);
    let fresh = if spec.fresh_cwd {
        Some(FreshDir::create(&spec.cwd, spec.uid, spec.gid)?)
    } else {
        None
    };
    if let (Some(_), Some(name), Some(stdin)) = (&fresh, &spec.input_name, &spec.stdin) {
        fsops::put(stdin, &spec.cwd.join(name), spec.uid, spec.gid, 0o644)?;
    }

    let mut outcome = execute(spec, &plan, cg.get(), env.ncpus);
    if let (Some(_), Some(name), Ok(_)) = (&fresh, &spec.output_name, &outcome) {
        // The program is gone (its cgroup is empty): the file cannot change under the copy.
        if let Err(e) = fsops::take_output(&spec.cwd.join(name), &spec.stdout) {
            outcome = Err(e);
        }
    }

    let mut cleanup = cg.destroy();
    if let Some(dir) = fresh {
        keep_first(&mut cleanup, dir.remove());
    }
    for dir in env.wipe {
        keep_first(&mut cleanup, fsops::wipe_contents(dir));
    }
    keep_first(&mut cleanup, sys::remove_sysv_ipc(spec.uid).map(drop));
    sys::reap_orphans(REAP_DEADLINE);
    match (outcome, cleanup) {
        (Ok(result), Ok(())) => Ok(result),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(cleanup)) => {
            eprintln!("demoter: also failed to clean up: {cleanup}");
            Err(e)
        }
    }
}

/// Checks what the kernel would not; returns the memory limit in bytes.
fn validate(spec: &RunSpec) -> Result<u64, Error> {
    let invalid = |what: &str| Err(Error::InvalidSpec(what.to_string()));
    let l = &spec.limits;
    if spec.argv.is_empty() {
        return invalid("argv is empty");
    }
    if spec.uid == 0 || spec.gid == 0 {
        return invalid("the program may not run as root (uid or gid 0)");
    }
    if !spec.cwd.is_absolute() {
        return invalid("cwd must be an absolute path");
    }
    for name in [&spec.input_name, &spec.output_name].into_iter().flatten() {
        if !spec.fresh_cwd || name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return invalid("input_name and output_name are plain file names, with fresh_cwd");
        }
    }
    if l.cpu_ms == 0 || l.wall_ms == 0 || l.memory_kb == 0 || l.pids == 0 {
        return invalid("cpu_ms, wall_ms, memory_kb and pids must be positive");
    }
    match l.memory_kb.checked_mul(1024) {
        Some(bytes) if bytes < i64::MAX as u64 => Ok(bytes),
        _ => invalid("memory_kb is too large"),
    }
}

/// Starts the program in `cg`, watches it and measures the finished run.
fn execute(
    spec: &RunSpec,
    plan: &Plan,
    cg: &dyn RunCgroup,
    ncpus: u64,
) -> Result<RunResult, Error> {
    // An interactive run reads and writes the FIFOs; its stdout pipe is then never handed to
    // the program, and its pump ends at once.
    let (stdin, fifo_out) = match &spec.pipe {
        Some(pipe) => {
            let (read, write) = fsops::open_pipe(pipe, PIPE_DEADLINE)?;
            (File::from(read), Some(write))
        }
        None => (fsops::open_stdin(spec.stdin.as_deref())?, None),
    };
    let stdout = fsops::create_file(&spec.stdout, 0o644)?;
    let stderr = fsops::create_file(&spec.stderr, 0o644)?;
    let (stdout_r, stdout_w) = sys::pipe()?;
    let (stderr_r, stderr_w) = sys::pipe()?;
    sys::set_nonblocking(stdout_r.as_fd())?;
    sys::set_nonblocking(stderr_r.as_fd())?;
    // The program may reopen its output as /dev/stdout or /dev/stderr (/proc/self/fd/N), which
    // checks the pipe's owner.
    for pipe in [&stdout_w, &stderr_w] {
        std::os::unix::fs::fchown(pipe, Some(spec.uid), Some(spec.gid)).map_err(|source| {
            Error::Sys {
                op: "chown the output pipe",
                source,
            }
        })?;
    }
    let cgroup_procs = cg
        .procs_files()
        .iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map(OwnedFd::from)
                .at("open", path)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    let pid = spawn::spawn(
        plan,
        &ChildFds {
            cgroup_procs: &cgroup_procs,
            stdin: stdin.as_fd(),
            stdout: fifo_out
                .as_ref()
                .map_or(stdout_w.as_fd(), |fifo| fifo.as_fd()),
            stderr: stderr_w.as_fd(),
        },
    )?;
    // Only the program may hold the write ends, or the pipes would never reach EOF.
    drop((stdin, fifo_out, stdout_w, stderr_w, cgroup_procs));

    let watch = Watch {
        cg,
        pid,
        pidfd: sys::pidfd_open(pid),
        start,
        limits: &spec.limits,
        ncpus: ncpus.max(1),
        stdout: Pump::new(stdout_r, stdout, &spec.stdout, spec.limits.output_bytes),
        stderr: Pump::new(stderr_r, stderr, &spec.stderr, spec.limits.stderr_bytes),
    };
    let watched = watch.run()?;

    // Every process of the run is dead: the counters are final.
    let cpu_ns = cg.cpu_usage_ns()?;
    let peak_bytes = match cg.memory_peak_bytes()? {
        Some(peak) => peak,
        None => watched.main.max_rss_kb.saturating_mul(1024),
    };
    let observed = Observed {
        exit: exit_of(watched.main.status),
        cpu_ns,
        wall_ms: watched.wall_ms,
        peak_bytes,
        oom_kills: cg.oom_kills()?,
        killed_for: watched.killed_for,
        output_exceeded: watched.output_exceeded,
    };
    Ok(RunResult {
        exit: observed.exit,
        cpu_ms: cpu_ns / 1_000_000,
        wall_ms: watched.wall_ms,
        memory_kb: peak_bytes.div_ceil(1024),
        limit: limit::decide(&observed, &spec.limits),
        stdout_bytes: watched.stdout_bytes,
        ended_ns: spec.pipe.as_ref().map(|_| watched.ended_ns),
    })
}

fn exit_of(status: libc::c_int) -> Exit {
    if libc::WIFSIGNALED(status) {
        Exit::Signaled {
            signal: libc::WTERMSIG(status),
        }
    } else {
        Exit::Exited {
            code: libc::WEXITSTATUS(status),
        }
    }
}

/// Copies one of the program's output pipes into its file, keeping at most `keep` bytes.
struct Pump<'a> {
    fd: OwnedFd,
    file: File,
    path: &'a Path,
    keep: u64,
    kept: u64,
    /// Bytes read from the pipe, kept or not.
    seen: u64,
    open: bool,
}

impl<'a> Pump<'a> {
    fn new(fd: OwnedFd, file: File, path: &'a Path, keep: u64) -> Pump<'a> {
        Pump {
            fd,
            file,
            path,
            keep,
            kept: 0,
            seen: 0,
            open: true,
        }
    }

    /// Reads what is available. Returns true when more than `keep` bytes have arrived in all.
    fn pump(&mut self, buf: &mut [u8]) -> Result<bool, Error> {
        let read = sys::read_some(self.fd.as_fd(), buf).map_err(|source| Error::Sys {
            op: "read the program's output",
            source,
        })?;
        match read {
            None => {}
            Some(0) => self.open = false,
            Some(n) => {
                self.seen += n as u64;
                let take = (n as u64).min(self.keep - self.kept) as usize;
                if take > 0 {
                    self.file.write_all(&buf[..take]).at("write", self.path)?;
                    self.kept += take as u64;
                }
            }
        }
        Ok(self.seen > self.keep)
    }
}

/// What the watch loop saw.
struct Watched {
    main: Reaped,
    wall_ms: u64,
    killed_for: Option<LimitHit>,
    output_exceeded: bool,
    stdout_bytes: u64,
    /// When the main process was reaped (monotonic clock, ns).
    ended_ns: u64,
}

/// The watch loop of one run.
struct Watch<'a> {
    cg: &'a dyn RunCgroup,
    pid: i32,
    pidfd: Option<OwnedFd>,
    start: Instant,
    limits: &'a Limits,
    ncpus: u64,
    stdout: Pump<'a>,
    stderr: Pump<'a>,
}

impl Watch<'_> {
    /// Runs until the main process has ended, every other process of the run is killed and the
    /// pipes are drained.
    fn run(mut self) -> Result<Watched, Error> {
        let cpu_limit_ns = self.limits.cpu_ms.saturating_mul(1_000_000);
        let wall_deadline = self.start + Duration::from_millis(self.limits.wall_ms);
        let mut next_check = self.start + self.check_delay(cpu_limit_ns, 0);
        let mut killed: Option<(LimitHit, Instant)> = None;
        let mut ended: Option<(Reaped, u64)> = None;
        let mut drain_until = None;
        let mut output_exceeded = false;
        let mut buf = vec![0u8; CHUNK];

        // A run killed at a limit ended when it was killed: its pipes close as it dies, and the
        // other side of an interaction may end before the kill is complete.
        let mut killed_ns = None;
        let mut ended_ns = 0;
        let (main, wall_ms) = loop {
            let now = Instant::now();
            let mut timeout = match (ended, killed) {
                (None, Some((_, at))) => {
                    // Killed: the pidfd wakes us when the main process is gone.
                    let waited = now - at;
                    if waited >= KILL_DEADLINE {
                        return Err(Error::Unkillable {
                            pid: self.pid,
                            waited_ms: waited.as_millis() as u64,
                        });
                    }
                    KILL_DEADLINE - waited
                }
                (None, None) => {
                    if now >= wall_deadline {
                        killed = Some((LimitHit::Wall, now));
                        killed_ns = Some(sys::monotonic_ns());
                        cgroup::kill_all(self.cg, KILL_DEADLINE)?;
                        continue;
                    }
                    if now >= next_check {
                        self.cg.sample();
                        let used = self.cg.cpu_usage_ns()?;
                        if used >= cpu_limit_ns {
                            killed = Some((LimitHit::Time, now));
                            killed_ns = Some(sys::monotonic_ns());
                            cgroup::kill_all(self.cg, KILL_DEADLINE)?;
                            continue;
                        }
                        next_check = now + self.check_delay(cpu_limit_ns, used);
                    }
                    next_check.min(wall_deadline) - now
                }
                (Some(done), _) => {
                    if !self.stdout.open && !self.stderr.open {
                        break done;
                    }
                    let until = *drain_until.get_or_insert(now + DRAIN_DEADLINE);
                    if now >= until {
                        eprintln!("demoter: output pipes still open after the run; closing them");
                        break done;
                    }
                    until - now
                }
            };
            if self.pidfd.is_none() && ended.is_none() {
                timeout = timeout.min(NO_PIDFD_TICK);
            }

            let mut fds = Vec::with_capacity(3);
            for pump in [&self.stdout, &self.stderr] {
                // A closed pump stays in the array (fd -1 is ignored by poll) to keep indices.
                fds.push(pollfd(pump.open.then(|| pump.fd.as_raw_fd())));
            }
            let watch_main = ended.is_none().then_some(self.pidfd.as_ref()).flatten();
            fds.push(pollfd(watch_main.map(|fd| fd.as_raw_fd())));
            sys::poll(&mut fds, timeout)?;

            if fds[0].revents != 0 && self.stdout.pump(&mut buf)? && !output_exceeded {
                output_exceeded = true;
                if ended.is_none() && killed.is_none() {
                    killed = Some((LimitHit::Output, Instant::now()));
                    killed_ns = Some(sys::monotonic_ns());
                    cgroup::kill_all(self.cg, KILL_DEADLINE)?;
                }
            }
            if fds[1].revents != 0 {
                // Beyond `stderr_bytes` stderr is read and dropped, which is no limit.
                self.stderr.pump(&mut buf)?;
            }
            if ended.is_none() && (self.pidfd.is_none() || fds[2].revents != 0) {
                if let Some(reaped) = sys::try_reap(self.pid)? {
                    let wall_ms = self.start.elapsed().as_millis() as u64;
                    ended_ns = sys::monotonic_ns();
                    ended = Some((reaped, wall_ms));
                    // Whatever the main process left behind (daemons, children) ends with it.
                    cgroup::kill_all(self.cg, KILL_DEADLINE)?;
                }
            }
        };

        Ok(Watched {
            main,
            wall_ms,
            killed_for: killed.map(|(limit, _)| limit),
            output_exceeded,
            stdout_bytes: self.stdout.seen,
            ended_ns: killed_ns.unwrap_or(ended_ns),
        })
    }

    /// When to look at the CPU usage next: the run cannot use the rest of its CPU time sooner
    /// than `remaining / ncpus`.
    fn check_delay(&self, limit_ns: u64, used_ns: u64) -> Duration {
        Duration::from_nanos(limit_ns.saturating_sub(used_ns) / self.ncpus).max(MIN_CHECK)
    }
}

fn pollfd(fd: Option<libc::c_int>) -> libc::pollfd {
    libc::pollfd {
        fd: fd.unwrap_or(-1),
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Limits;

    fn spec() -> RunSpec {
        RunSpec {
            argv: vec!["/bin/true".into()],
            env: vec![],
            cwd: "/box".into(),
            fresh_cwd: false,
            stdin: None,
            stdout: "/box/out".into(),
            stderr: "/box/err".into(),
            uid: 60000,
            gid: 60000,
            limits: Limits {
                cpu_ms: 1000,
                wall_ms: 3000,
                memory_kb: 65536,
                pids: 16,
                output_bytes: 1 << 20,
                stderr_bytes: 1 << 16,
            },
            input_name: None,
            output_name: None,
            pipe: None,
        }
    }

    #[test]
    fn validation_refuses_root_and_empty_limits() {
        assert_eq!(validate(&spec()).unwrap(), 64 << 20);
        let mut s = spec();
        s.uid = 0;
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.gid = 0;
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.argv.clear();
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.limits.cpu_ms = 0;
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.limits.memory_kb = u64::MAX / 2;
        assert!(validate(&s).is_err());
        let mut s = spec();
        s.cwd = "box".into();
        assert!(validate(&s).is_err());
    }

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(exit_of(3 << 8), Exit::Exited { code: 3 });
        assert_eq!(exit_of(libc::SIGSEGV), Exit::Signaled { signal: 11 });
        // Core-dump flag set.
        assert_eq!(exit_of(0x80 | 6), Exit::Signaled { signal: 6 });
    }

    #[test]
    fn pump_keeps_at_most_its_share_and_counts_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out");
        let file = fsops::create_file(&path, 0o644).unwrap();
        let (r, w) = sys::pipe().unwrap();
        sys::set_nonblocking(r.as_fd()).unwrap();
        let mut pump = Pump::new(r, file, &path, 5);
        let mut w = File::from(w);
        let mut buf = vec![0u8; 3];
        w.write_all(b"abcd").unwrap();
        assert!(!pump.pump(&mut buf).unwrap()); // abc
        assert!(!pump.pump(&mut buf).unwrap()); // d
        assert!(!pump.pump(&mut buf).unwrap()); // nothing there: would block
        w.write_all(b"efgh").unwrap();
        assert!(pump.pump(&mut buf).unwrap()); // efg: 7 > 5
        assert!(pump.pump(&mut buf).unwrap()); // h
        drop(w);
        assert!(pump.open);
        pump.pump(&mut buf).unwrap();
        assert!(!pump.open);
        assert_eq!(pump.seen, 8);
        assert_eq!(std::fs::read(&path).unwrap(), b"abcde");
    }
}
