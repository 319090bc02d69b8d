//! Thin wrappers around the system calls the standard library does not offer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::Error;

/// Process-wide set-up, before anything else: fds 0-2 exist (so no file the demoter opens lands
/// on them), a known umask, and orphans of a run re-parent to the demoter (unless it is PID 1,
/// which gets them anyway) so it can reap them.
pub fn prepare_process() -> Result<(), Error> {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: the path is a NUL-terminated literal; open returns the lowest free fd,
            // which is `fd` since all lower ones exist.
            let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if opened != fd {
                return Err(Error::last_os("open /dev/null for a closed standard fd"));
            }
        }
    }
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(0o022) };
    // An inherited SIGCHLD = SIG_IGN would make the kernel reap children before wait4 sees
    // their status.
    // SAFETY: installs the default disposition; no handler function is involved.
    if unsafe { libc::signal(libc::SIGCHLD, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(Error::last_os("signal(SIGCHLD, SIG_DFL)"));
    }
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } != 1 {
        // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag, no pointers.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == -1 {
            return Err(Error::last_os("prctl(PR_SET_CHILD_SUBREAPER)"));
        }
    }
    Ok(())
}

/// A pidfd for our child `pid` (Linux 5.3+); `None` where the kernel or seccomp refuses.
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        eprintln!(
            "demoter: pidfd_open: {}; polling instead",
            io::Error::last_os_error()
        );
        return None;
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// How a reaped child ended, with its resource usage.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    pub status: libc::c_int,
    /// Peak resident set size of the child, KB.
    pub max_rss_kb: u64,
}

/// Reaps child `pid` if it has ended (`WNOHANG`).
pub fn try_reap(pid: i32) -> Result<Option<Reaped>, Error> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and usage are valid, exclusive pointers for the duration of the call.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        match rc {
            0 => return Ok(None),
            -1 if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => continue,
            -1 => return Err(Error::last_os("wait4")),
            _ => {
                return Ok(Some(Reaped {
                    status,
                    max_rss_kb: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                }))
            }
        }
    }
}

/// Blocks until child `pid` has ended and reaps it (for a child known to be exiting).
pub fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: status is a valid pointer; EINTR is retried.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
    {}
}

/// Reaps every ended child (orphans of a run re-parented to us). Waits up to `within` for
/// children that are still on their way out (their cgroup is already empty).
pub fn reap_orphans(within: Duration) {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: status is a valid pointer.
        let rc = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if rc > 0 {
            continue;
        }
        if rc == -1 {
            // ECHILD: no children at all, the normal end.
            return;
        }
        if start.elapsed() >= within {
            eprintln!("demoter: children still alive after the run; reaping them later");
            return;
        }
        thread::sleep(Duration::from_micros(500));
    }
}

/// The kernel's monotonic clock (shared by every container of the host), nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A pipe whose both ends are close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Sys {
        op: "pipe2",
        source: e.into(),
    })
}

pub fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<(), Error> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl on a live descriptor; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } == -1 {
        return Err(Error::last_os("fcntl(O_NONBLOCK)"));
    }
    Ok(())
}

/// Reads what is available; `Ok(None)` when it would block or was interrupted.
pub fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: buf is valid for writes of buf.len() bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(err),
    }
}

/// `poll(2)` on `fds` for at most `timeout` (rounded up to whole milliseconds, so a wait is
/// never cut short into a busy loop). EINTR counts as a timeout.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> Result<(), Error> {
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: fds is a valid, exclusive slice of pollfd for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
        return Err(Error::last_os("poll"));
    }
    Ok(())
}

/// Number of CPUs the runs can use at once (at least 1).
pub fn cpu_count() -> u64 {
    thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// Removes the System V IPC objects (shared memory segments, message queues, semaphore sets) of
/// this IPC namespace that `uid` may remove: they outlive the processes that made them, and a
/// run must not hand anything to the next. Removing another user's object needs CAP_SYS_ADMIN,
/// which the demoter does not keep, so it acts with `uid` as its effective uid (restored before
/// returning; the demoter is single-threaded). A segment still attached would only be marked,
/// but every process of the run is gone by now. Returns how many objects were removed.
pub fn remove_sysv_ipc(uid: u32) -> Result<usize, Error> {
    let ids = |table: &str| -> Vec<libc::c_int> {
        // Absent without SysV IPC in the kernel: nothing to remove. The second column is the id.
        let Ok(text) = std::fs::read_to_string(table) else {
            return Vec::new();
        };
        text.lines()
            .skip(1)
            .filter_map(|line| line.split_whitespace().nth(1)?.parse().ok())
            .collect()
    };
    let (shm, msg, sem) = (
        ids("/proc/sysvipc/shm"),
        ids("/proc/sysvipc/msg"),
        ids("/proc/sysvipc/sem"),
    );
    if shm.is_empty() && msg.is_empty() && sem.is_empty() {
        return Ok(0);
    }
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    // SAFETY: seteuid takes a uid; the real and saved uids stay root, so it can be undone.
    if unsafe { libc::seteuid(uid) } == -1 {
        return Err(Error::last_os("seteuid to remove the run's IPC objects"));
    }
    let mut removed = 0;
    // Failures are objects of other users (EPERM) or already gone (EINVAL, EIDRM): skipped.
    for id in shm {
        // SAFETY: IPC_RMID takes no buffer.
        removed +=
            usize::from(unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0);
    }
    for id in msg {
        // SAFETY: IPC_RMID takes no buffer.
        removed +=
            usize::from(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) } == 0);
    }
    for id in sem {
        // SAFETY: IPC_RMID ignores the semaphore number and takes no fourth argument.
        removed += usize::from(unsafe { libc::semctl(id, 0, libc::IPC_RMID) } == 0);
    }
    // SAFETY: as above; the saved uid is the original one.
    if unsafe { libc::seteuid(euid) } == -1 {
        return Err(Error::last_os("seteuid back after removing IPC objects"));
    }
    Ok(removed)
}
