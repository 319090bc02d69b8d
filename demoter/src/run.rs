//! One run: set-up, the watch loop, measurement, clean-up.
//!
//! The program's stdout and stderr are pipes the demoter copies into the files the host asked
//! for, so the output limit is counted exactly and the page cache of the output is not charged
//! to the program. The watch loop polls the pipes and a pidfd of the main process, and wakes up
//! to compare the cgroup's CPU usage with the limit: next check after
//! `max(1 ms, remaining CPU / CPUs)`, so a run cannot overshoot by more than about a millisecond
//! however many CPUs it uses.
//!
//! Past its cap, an output pipe is drained without copying (spliced to `/dev/null`) at most
//! once per [`REST`]: a program flooding stderr costs the demoter (whose CPU no limit counts)
//! about a thousand wake-ups a second, whatever it writes, and is itself blocked on a full
//! pipe for at most that long.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
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

/// How long a pipe past its cap is left alone between two drains.
const REST: Duration = Duration::from_millis(1);

/// Size asked for a pipe past its cap (the default `pipe-max-size`), so that a program writing
/// at full speed fills it less often than once per [`REST`]; best effort.
const DISCARD_PIPE_BYTES: usize = 1 << 20;

/// Samples of the CPU usage kept over the idle window: the window is checked this many times
/// per its length.
const IDLE_SAMPLES: u32 = 10;

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
    let (outcome, cleanup) = run_deferred(spec, env, &mut None);
    match (outcome, cleanup.finish(env.wipe)) {
        (Ok(result), Ok(())) => Ok(result),
        (Err(e), Ok(())) | (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(cleanup)) => {
            eprintln!("demoter: also failed to clean up: {cleanup}");
            Err(e)
        }
    }
}

/// Performs one run, in the cgroup `prepared` holds if it holds one (made ahead, without
/// limits: it is taken, and given its limits here), and returns its result with the clean-up
/// still to do. The result is final: every process of the run is dead and measured, the output
/// taken. What is left (removing the cgroup and the working directory, emptying the wipe
/// directories, the user's IPC objects) must be [finished](Cleanup::finish) before anything
/// else runs in the box; the agent does it after sending the result.
pub fn run_deferred(
    spec: &RunSpec,
    env: &RunEnv<'_>,
    prepared: &mut Option<RunGuard>,
) -> (Result<RunResult, Error>, Cleanup) {
    let mut cleanup = Cleanup::default();
    let outcome = (|| {
        let memory_bytes = validate(spec)?;
        let plan = Plan::new(spec, memory_bytes)?;
        let limits = RunLimits {
            memory_bytes,
            pids: spec.limits.pids,
        };
        let cg = match prepared.take() {
            Some(cg) => {
                // Owned by the clean-up from here, whether the limits hold or not.
                let cg = cleanup.cg.insert(cg);
                cg.get().limit(&limits)?;
                cg
            }
            None => cleanup
                .cg
                .insert(RunGuard::new(env.cgroup.create_run(env.name, &limits)?)),
        };
        cleanup.uid = Some(spec.uid);
        if spec.fresh_cwd {
            cleanup.fresh = Some(FreshDir::create(&spec.cwd, spec.uid, spec.gid)?);
        }
        if let (Some(_), Some(name), Some(stdin)) = (&cleanup.fresh, &spec.input_name, &spec.stdin)
        {
            fsops::put(stdin, &spec.cwd.join(name), spec.uid, spec.gid, 0o644)?;
        }
        let result = execute(spec, &plan, cg.get(), env.ncpus)?;
        if let (Some(_), Some(name)) = (&cleanup.fresh, &spec.output_name) {
            // The program is gone (its cgroup is empty): the file cannot change under the copy.
            fsops::take_output(&spec.cwd.join(name), &spec.stdout)?;
        }
        Ok(result)
    })();
    (outcome, cleanup)
}

/// What a run leaves to clean up once its result is known; see [`run_deferred`].
#[derive(Debug, Default)]
#[must_use = "the box is not clean until the clean-up is finished"]
pub struct Cleanup {
    cg: Option<RunGuard>,
    fresh: Option<FreshDir>,
    /// The program's user, once something may have run as it.
    uid: Option<u32>,
}

impl Cleanup {
    /// Kills whatever is left of the run and removes its cgroup, removes its working directory,
    /// empties `wipe` and removes the user's System V IPC objects; reports the first failure
    /// (after trying everything).
    pub fn finish(self, wipe: &[PathBuf]) -> Result<(), Error> {
        let Cleanup { cg, fresh, uid } = self;
        let Some(uid) = uid else {
            // Nothing ran: at most an unused cgroup to remove.
            return cg.map_or(Ok(()), RunGuard::destroy);
        };
        let mut cleanup = cg.map_or(Ok(()), RunGuard::destroy);
        if let Some(dir) = fresh {
            keep_first(&mut cleanup, dir.remove());
        }
        for dir in wipe {
            keep_first(&mut cleanup, fsops::wipe_contents(dir));
        }
        keep_first(&mut cleanup, sys::remove_sysv_ipc(uid).map(drop));
        sys::reap_orphans(REAP_DEADLINE);
        cleanup
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
            stderr: if spec.stderr_to_stdout {
                stdout_w.as_fd()
            } else {
                stderr_w.as_fd()
            },
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
        idle: spec
            .limits
            .idle_ms
            .map(|ms| Idle::new(Duration::from_millis(ms), start)),
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

/// Copies one of the program's output pipes into its file, keeping at most `keep` bytes; past
/// that, throws the rest away without copying it, resting [`REST`] between two drains.
struct Pump<'a> {
    fd: OwnedFd,
    file: File,
    path: &'a Path,
    keep: u64,
    kept: u64,
    /// Bytes read from the pipe, kept or not.
    seen: u64,
    open: bool,
    /// Set once `keep` bytes are kept.
    discard: Option<Discard>,
}

/// A pump past its cap.
struct Discard {
    /// Where the pipe is spliced to; `None` where it cannot be opened (then: read and dropped).
    null: Option<File>,
    /// The pipe is not polled before then.
    rest_until: Instant,
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
            discard: None,
        }
    }

    /// Reads what is available. Returns true when more than `keep` bytes have arrived in all.
    fn pump(&mut self, buf: &mut [u8]) -> Result<bool, Error> {
        if self.kept >= self.keep && self.discard.is_none() {
            self.discard = Some(self.start_discarding());
        }
        let read = match &mut self.discard {
            Some(discard) => {
                let read = drain(self.fd.as_fd(), discard.null.as_ref(), buf);
                discard.rest_until = Instant::now() + REST;
                read
            }
            None => sys::read_some(self.fd.as_fd(), buf),
        };
        let read = read.map_err(|source| Error::Sys {
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

    fn start_discarding(&self) -> Discard {
        // Best effort: a smaller pipe only makes the program wait a little more often.
        // SAFETY: fcntl on a descriptor we own; F_SETPIPE_SZ takes an integer.
        unsafe {
            libc::fcntl(
                self.fd.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                DISCARD_PIPE_BYTES as libc::c_int,
            )
        };
        let null = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
            .ok();
        Discard {
            null,
            rest_until: Instant::now(),
        }
    }

    /// Whether poll should watch the pipe at `now`.
    fn watched(&self, now: Instant) -> bool {
        self.open && self.discard.as_ref().is_none_or(|d| d.rest_until <= now)
    }

    /// When a resting pipe is to be watched again.
    fn rest_until(&self) -> Option<Instant> {
        self.discard
            .as_ref()
            .filter(|_| self.open)
            .map(|d| d.rest_until)
    }
}

/// Throws away what `fd` holds (up to one enlarged pipe's worth): spliced to `null` without
/// copying, or read into `buf` where splice is refused. `Ok(Some(0))` at EOF, `Ok(None)` when
/// empty.
fn drain(fd: BorrowedFd<'_>, null: Option<&File>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    if let Some(null) = null {
        // SAFETY: two descriptors we hold, no offsets.
        let n = unsafe {
            libc::splice(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                null.as_raw_fd(),
                std::ptr::null_mut(),
                DISCARD_PIPE_BYTES,
                libc::SPLICE_F_NONBLOCK,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => return Ok(None),
            Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EPERM) => {}
            _ => return Err(err),
        }
    }
    let mut total = 0;
    while total < DISCARD_PIPE_BYTES {
        match sys::read_some(fd, buf)? {
            Some(0) if total == 0 => return Ok(Some(0)),
            Some(0) | None => break,
            Some(n) => total += n,
        }
    }
    Ok((total > 0).then_some(total))
}

/// Notices a run that stopped using CPU: the CPU usage sampled every `window / IDLE_SAMPLES`.
struct Idle {
    window: Duration,
    /// `(when, CPU used by then)`, oldest first; the oldest is the newest at least `window` old.
    samples: VecDeque<(Instant, u64)>,
    /// When to sample next.
    next: Instant,
}

impl Idle {
    fn new(window: Duration, start: Instant) -> Idle {
        Idle {
            window,
            samples: VecDeque::from([(start, 0)]),
            next: start + Idle::period(window),
        }
    }

    fn period(window: Duration) -> Duration {
        (window / IDLE_SAMPLES).max(MIN_CHECK)
    }

    /// Records that the run had used `used_ns` of CPU at `now`. True when, over the last
    /// `window`, it used less than 1% of it.
    fn sample(&mut self, now: Instant, used_ns: u64) -> bool {
        self.samples.push_back((now, used_ns));
        while self
            .samples
            .get(1)
            .is_some_and(|&(then, _)| now.saturating_duration_since(then) >= self.window)
        {
            self.samples.pop_front();
        }
        self.next = now + Idle::period(self.window);
        let (then, used_then) = self.samples[0];
        let threshold = (self.window.as_nanos() / 100) as u64;
        now.saturating_duration_since(then) >= self.window
            && used_ns.saturating_sub(used_then) < threshold
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
    idle: Option<Idle>,
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
                    if let Some(idle) = self.idle.as_mut().filter(|idle| now >= idle.next) {
                        if idle.sample(now, self.cg.cpu_usage_ns()?) {
                            // Reported as the wall limit it stands in for.
                            killed = Some((LimitHit::Wall, now));
                            killed_ns = Some(sys::monotonic_ns());
                            cgroup::kill_all(self.cg, KILL_DEADLINE)?;
                            continue;
                        }
                    }
                    let idle_check = self.idle.as_ref().map_or(wall_deadline, |idle| idle.next);
                    next_check.min(wall_deadline).min(idle_check) - now
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
            for pump in [&self.stdout, &self.stderr] {
                if let Some(until) = pump.rest_until().filter(|&until| until > now) {
                    timeout = timeout.min(until - now);
                }
            }

            let mut fds = Vec::with_capacity(3);
            for pump in [&self.stdout, &self.stderr] {
                // A closed or resting pump stays in the array (fd -1 is ignored by poll) to
                // keep indices.
                fds.push(pollfd(pump.watched(now).then(|| pump.fd.as_raw_fd())));
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
                // Beyond `stderr_bytes` stderr is dropped, which is no limit.
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
                idle_ms: None,
            },
            input_name: None,
            output_name: None,
            pipe: None,
            stderr_to_stdout: false,
            cpu: None,
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

    /// A pipe's read end (non-blocking, as the watch loop has it), its write end, and the
    /// file a pump of it writes to.
    fn pipe_and_file(tmp: &tempfile::TempDir) -> (OwnedFd, File, PathBuf, File) {
        let path = tmp.path().join("out");
        let file = fsops::create_file(&path, 0o644).unwrap();
        let (r, w) = sys::pipe().unwrap();
        sys::set_nonblocking(r.as_fd()).unwrap();
        (r, File::from(w), path, file)
    }

    #[test]
    fn pump_keeps_at_most_its_share_and_counts_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let (r, mut w, path, file) = pipe_and_file(&tmp);
        let mut pump = Pump::new(r, file, &path, 5);
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

    #[test]
    fn past_its_cap_a_pump_drains_everything_at_once_and_then_rests() {
        let tmp = tempfile::tempdir().unwrap();
        let (r, mut w, path, file) = pipe_and_file(&tmp);
        let mut pump = Pump::new(r, file, &path, 5);
        let mut buf = vec![0u8; 1024];
        w.write_all(b"0123456789").unwrap();
        assert!(pump.pump(&mut buf).unwrap());
        assert!(pump.discard.is_none());
        w.write_all(&[b'x'; 60_000]).unwrap();
        let before = Instant::now();
        assert!(pump.pump(&mut buf).unwrap());
        // One call took it all (more than `buf` holds), and the pipe now rests.
        assert_eq!(pump.seen, 60_010);
        assert!(!pump.watched(before));
        assert!(pump.rest_until().unwrap() > before);
        assert!(pump.watched(before + 2 * REST));
        // SAFETY: F_GETPIPE_SZ on a descriptor we own.
        let size = unsafe { libc::fcntl(pump.fd.as_raw_fd(), libc::F_GETPIPE_SZ) };
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if max >= DISCARD_PIPE_BYTES {
            assert_eq!(size as usize, DISCARD_PIPE_BYTES);
        }
        drop(w);
        pump.pump(&mut buf).unwrap();
        assert!(!pump.open);
        assert_eq!(pump.rest_until(), None);
        assert_eq!(std::fs::read(&path).unwrap(), b"01234");
    }

    #[test]
    fn idle_is_less_than_one_percent_of_cpu_over_a_whole_window() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut idle = Idle::new(ms(1000), start);
        // Nothing used from the start: idle once a whole window has passed.
        for t in 1..10 {
            assert!(!idle.sample(start + ms(100 * t), 0), "{t}");
        }
        assert!(idle.sample(start + ms(1000), 9_999_999));

        let mut idle = Idle::new(ms(1000), start);
        // Busy for 2 s, then 1% of a CPU for 2 s: not idle.
        for t in 1..=20 {
            assert!(!idle.sample(start + ms(100 * t), t * 100_000_000), "{t}");
        }
        let busy = 2_000_000_000;
        for t in 21..=40 {
            let used = busy + (t - 20) * 1_000_000;
            assert!(!idle.sample(start + ms(100 * t), used), "{t}");
        }
        // Then nothing: the last second had 9 ms.
        assert!(idle.sample(start + ms(4100), busy + 20_000_000));
        assert!(idle.samples.len() <= IDLE_SAMPLES as usize + 1);
    }
}
