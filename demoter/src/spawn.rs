//! fork + demote + exec of the program.
//!
//! Everything the child needs (C strings, pointer arrays, open descriptors) is prepared before
//! `fork`, so the child only makes raw system calls and never allocates. The demoter is
//! single-threaded, which is what makes the child's copy of the process consistent.
//!
//! A failure while the child prepares itself (joining the cgroup, dropping privileges, chdir)
//! is a failure of the sandbox: the child reports `(stage, errno)` over a close-on-exec pipe and
//! the parent returns [`Error::ChildSetup`]. A failure of `execve` itself is the program's
//! outcome: the child writes a message to the program's stderr and exits with 127.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use crate::error::Error;
use crate::protocol::RunSpec;
use crate::seccomp::Filter;
use crate::sys;

/// Exit status of a child whose `execve` failed (as in shells).
pub const EXEC_FAILED: i32 = 127;

/// Open files a program may have at once.
const NOFILE: libc::rlim_t = 1024;

/// PATH used when the program's environment has none (as glibc's `execvp`).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Stages of the child's set-up, named in the error the parent reports.
const STAGES: [&str; 12] = [
    "joining the run cgroup",
    "resetting signals",
    "setsid",
    "setrlimit",
    "redirecting stdin/stdout/stderr",
    "closing inherited descriptors",
    "setgroups",
    "setgid",
    "setuid",
    "chdir to the working directory",
    "prctl",
    "installing the seccomp filter",
];
const JOIN: u32 = 0;
const SIGNALS: u32 = 1;
const SETSID: u32 = 2;
const RLIMIT: u32 = 3;
const DUP: u32 = 4;
const CLOSE: u32 = 5;
const SETGROUPS: u32 = 6;
const SETGID: u32 = 7;
const SETUID: u32 = 8;
const CHDIR: u32 = 9;
const PRCTL: u32 = 10;
const SECCOMP: u32 = 11;

/// What the child does, prepared in the parent.
pub struct Plan {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Paths `argv[0]` may resolve to, tried in order (`execvp` semantics, with the program's
    /// own credentials).
    candidates: Vec<CString>,
    cwd: CString,
    uid: libc::uid_t,
    gid: libc::gid_t,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
    /// Written to the program's stderr before the errno text when exec fails.
    exec_failed_prefix: Vec<u8>,
    /// Highest descriptor to close if `close_range` is not available.
    max_fd: RawFd,
    /// SIGPIPE starts ignored (an interactor's writes to a program that is gone fail instead).
    ignore_sigpipe: bool,
    /// The one CPU the program runs on (`RunSpec::cpu`, when this process may use it).
    cpu: Option<libc::cpu_set_t>,
    /// Installed last, just before `execve`.
    seccomp: Filter,
}

impl Plan {
    pub fn new(spec: &RunSpec, memory_bytes: u64) -> Result<Plan, Error> {
        let cstring = |what: &str, bytes: &[u8]| {
            CString::new(bytes)
                .map_err(|_| Error::InvalidSpec(format!("{what} contains a NUL byte")))
        };
        let argv = spec
            .argv
            .iter()
            .map(|a| cstring("argv", a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = spec
            .env
            .iter()
            .map(|e| cstring("env", e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        let program = spec
            .argv
            .first()
            .ok_or_else(|| Error::InvalidSpec("argv is empty".into()))?;
        let candidates = candidates(program, &spec.env)
            .into_iter()
            .map(|c| cstring("program path", &c))
            .collect::<Result<Vec<_>, _>>()?;
        let limit = |n: u64| libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // Whole-second backstop under the millisecond cgroup check: SIGXCPU at the soft limit,
        // SIGKILL at the hard one.
        let cpu_s = spec.limits.cpu_ms.div_ceil(1000) + 1;
        let rlimits = vec![
            // 1, not 0: with a pipe core_pattern (systemd-coredump, apport) the kernel ignores
            // 0 and starts the helper on the host; 1 means no dump either way (core(5)).
            (libc::RLIMIT_CORE, limit(1)),
            (libc::RLIMIT_FSIZE, limit(spec.limits.output_bytes)),
            (libc::RLIMIT_STACK, limit(memory_bytes)),
            (libc::RLIMIT_NOFILE, limit(NOFILE)),
            (
                libc::RLIMIT_CPU,
                libc::rlimit {
                    rlim_cur: cpu_s,
                    rlim_max: cpu_s + 1,
                },
            ),
        ];
        let mut nofile = limit(0);
        // SAFETY: nofile is a valid pointer to an rlimit.
        let max_fd = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) } == 0 {
            nofile.rlim_cur.min(1 << 20) as RawFd
        } else {
            1 << 16
        };
        Ok(Plan {
            argv,
            envp,
            candidates,
            cwd: cstring("cwd", spec.cwd.as_os_str().as_bytes())?,
            uid: spec.uid,
            gid: spec.gid,
            rlimits,
            exec_failed_prefix: format!("demoter: cannot execute {program}: ").into_bytes(),
            max_fd,
            ignore_sigpipe: spec.pipe.as_ref().is_some_and(|p| p.ignore_sigpipe),
            cpu: spec.cpu.and_then(cpu_set),
            seccomp: Filter::new(spec.cpu.is_some())?,
        })
    }
}

/// The paths `program` is looked up at: itself if it has a `/`, else each `PATH` entry of `env`
/// (an empty entry is the working directory).
pub fn candidates(program: &str, env: &[String]) -> Vec<Vec<u8>> {
    if program.contains('/') {
        return vec![program.as_bytes().to_vec()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            Path::new(dir)
                .join(OsStr::new(program))
                .as_os_str()
                .as_bytes()
                .to_vec()
        })
        .collect()
}

/// Descriptors the child gets: it writes "0" to each `cgroup_procs`, and makes `stdin`,
/// `stdout`, `stderr` its 0, 1, 2.
pub struct ChildFds<'a> {
    pub cgroup_procs: &'a [OwnedFd],
    pub stdin: BorrowedFd<'a>,
    pub stdout: BorrowedFd<'a>,
    pub stderr: BorrowedFd<'a>,
}

/// Forks; the child becomes the program. Returns the child's pid once it has exec'd (or failed
/// to exec, which the program's exit status shows).
pub fn spawn(plan: &Plan, fds: &ChildFds<'_>) -> Result<i32, Error> {
    let (report_r, report_w) = sys::pipe()?;
    let argv = null_terminated(&plan.argv);
    let envp = null_terminated(&plan.envp);
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the demoter is single-threaded, so the child is a consistent copy; it only makes
    // system calls on data prepared above and ends in execve or _exit.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Error::last_os("fork")),
        0 => {
            // SAFETY: we are the freshly forked child; see `child`.
            unsafe { child(plan, fds, &argv, &envp, report_w.as_raw_fd(), parent) }
        }
        pid => {
            drop(report_w);
            match read_report(&report_r) {
                Ok(None) => Ok(pid),
                Ok(Some((stage, errno))) => {
                    sys::reap(pid);
                    let stage = STAGES.get(stage as usize).copied().unwrap_or("unknown");
                    Err(Error::ChildSetup {
                        stage,
                        source: io::Error::from_raw_os_error(errno),
                    })
                }
                Err(e) => {
                    // SAFETY: pid is our own child; SIGKILL then reap it.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    sys::reap(pid);
                    Err(e)
                }
            }
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// Reads the child's `(stage, errno)` report; `None` at EOF (the exec happened or failed as
/// the program's outcome).
fn read_report(fd: &OwnedFd) -> Result<Option<(u32, i32)>, Error> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length stay within buf.
        let n = unsafe {
            libc::read(
                fd.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return Err(Error::last_os("read the child's set-up report")),
        }
    }
    match got {
        0 => Ok(None),
        8 => {
            let stage = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
            Ok(Some((stage, errno)))
        }
        _ => Err(Error::Sys {
            op: "read the child's set-up report",
            source: io::Error::from(io::ErrorKind::UnexpectedEof),
        }),
    }
}

fn errno() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Reports `stage` and the current errno to the parent and exits.
///
/// # Safety
/// Only to be called in the forked child.
unsafe fn fail(report: RawFd, stage: u32) -> ! {
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&stage.to_ne_bytes());
    buf[4..].copy_from_slice(&errno().to_ne_bytes());
    // SAFETY: buf is valid for 8 bytes; a failed write leaves the parent with a short read,
    // which it reports too.
    unsafe {
        libc::write(report, buf.as_ptr().cast(), buf.len());
        libc::_exit(EXEC_FAILED)
    }
}

/// The set holding only `cpu`, if this process may run there (a CPU outside the container's
/// cpuset, or offline, leaves the run unpinned rather than failing it).
fn cpu_set(cpu: u32) -> Option<libc::cpu_set_t> {
    let cpu = usize::try_from(cpu).ok()?;
    if cpu >= libc::CPU_SETSIZE as usize {
        return None;
    }
    // SAFETY: cpu_set_t is plain data, valid zeroed; the pointers are to live locals of the
    // size passed.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut allowed) == -1 || !libc::CPU_ISSET(cpu, &allowed) {
            return None;
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        Some(set)
    }
}

/// The child side: join the run, shed everything inherited, drop to the program's identity,
/// exec.
///
/// # Safety
/// Must run in the child of `fork()` of a single-threaded process, with pointers built from
/// `plan` (`argv`, `envp` are NULL-terminated arrays of pointers into `plan`).
unsafe fn child(
    plan: &Plan,
    fds: &ChildFds<'_>,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    report: RawFd,
    parent: libc::pid_t,
) -> ! {
    // SAFETY (whole body): only system calls on descriptors and memory prepared before fork;
    // every failure ends in `fail` or `_exit`, nothing returns to the caller.
    unsafe {
        for fd in fds.cgroup_procs {
            if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                fail(report, JOIN);
            }
        }
        // Checked allowed before the fork; should the kernel still refuse, the run goes on
        // unpinned (its times are then only as repeatable as without pinning).
        if let Some(set) = &plan.cpu {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set);
        }

        // Dispositions set to "ignore" (the Rust runtime ignores SIGPIPE) and the signal mask
        // survive exec: give the program the defaults.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, ptr::null_mut()) == -1 {
            fail(report, SIGNALS);
        }
        for signal in 1..=libc::SIGRTMAX() {
            // Fails harmlessly for SIGKILL, SIGSTOP and the signals glibc reserves.
            libc::signal(signal, libc::SIG_DFL);
        }
        if plan.ignore_sigpipe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }

        if libc::setsid() == -1 {
            fail(report, SETSID);
        }
        for (resource, value) in &plan.rlimits {
            if libc::setrlimit(*resource, value) == -1 {
                fail(report, RLIMIT);
            }
        }

        // The sources are all >= 3 (fds 0-2 of the demoter are always open), so no dup2
        // overwrites a source still needed.
        for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if libc::dup2(from.as_raw_fd(), to) == -1 {
                fail(report, DUP);
            }
        }
        // Keep only 0-2 and the report pipe, which goes to 3 and closes itself at exec.
        let mut report = report;
        if report != 3 {
            if libc::dup3(report, 3, libc::O_CLOEXEC) == -1 {
                fail(report, DUP);
            }
            report = 3;
        }
        if libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32) == -1 {
            if errno() != libc::ENOSYS {
                fail(report, CLOSE);
            }
            for fd in 4..=plan.max_fd {
                libc::close(fd);
            }
        }

        if libc::setgroups(0, ptr::null()) == -1 {
            fail(report, SETGROUPS);
        }
        if libc::setresgid(plan.gid, plan.gid, plan.gid) == -1 {
            fail(report, SETGID);
        }
        if libc::setresuid(plan.uid, plan.uid, plan.uid) == -1 {
            fail(report, SETUID);
        }
        // After setuid, so a directory the program cannot enter is a set-up error.
        if libc::chdir(plan.cwd.as_ptr()) == -1 {
            fail(report, CHDIR);
        }
        // After setuid: changing credentials clears the parent-death signal. Then make sure the
        // parent did not die before it was set.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
            fail(report, PRCTL);
        }
        if libc::getppid() != parent {
            libc::_exit(EXEC_FAILED);
        }
        // Setuid binaries in the box (should one appear) gain nothing.
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
            fail(report, PRCTL);
        }
        // Last, so no set-up step above runs under it; needs no_new_privs.
        if plan.seccomp.install() == -1 {
            fail(report, SECCOMP);
        }

        let mut exec_errno = libc::ENOENT;
        for candidate in &plan.candidates {
            libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => exec_errno = libc::EACCES,
                other => {
                    exec_errno = other;
                    break;
                }
            }
        }
        let prefix = &plan.exec_failed_prefix;
        libc::write(2, prefix.as_ptr().cast(), prefix.len());
        let text = libc::strerror(exec_errno);
        libc::write(2, text.cast(), libc::strlen(text));
        libc::write(2, b"\n".as_ptr().cast(), 1);
        libc::_exit(EXEC_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_up_the_program_in_the_path_of_its_environment() {
        let env = vec!["HOME=/x".to_string(), "PATH=/usr/bin::/bin".to_string()];
        assert_eq!(
            candidates("sh", &env),
            vec![
                b"/usr/bin/sh".to_vec(),
                b"./sh".to_vec(),
                b"/bin/sh".to_vec()
            ]
        );
        assert_eq!(candidates("./a.out", &env), vec![b"./a.out".to_vec()]);
        assert_eq!(
            candidates("sh", &[]),
            vec![b"/bin/sh".to_vec(), b"/usr/bin/sh".to_vec()]
        );
    }
}
