//! The program's own seccomp filter, on top of the container's (Docker's default profile), as
//! isolate and DMOJ have: the system calls a judged program never needs and that widen the
//! kernel surface it can reach fail with `EPERM`, so the program sees an error and goes on.
//!
//! Everything else is allowed: the filter is a deny list, so no language runtime loses a call
//! it uses, and the container's own profile still applies underneath (the stricter answer of
//! the two wins).
//!
//! The BPF program is built once per run before `fork` (building allocates); the child only
//! hands it to the kernel, as its last step before `execve`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::Error;

/// Denied outright: debugging and reading other processes, kernel extension points (eBPF,
/// perf, modules, kexec), asynchronous kernel interfaces with a history of escapes
/// (`io_uring`, `userfaultfd`), the kernel keyring, namespaces and mounts, and administration
/// calls (clock, swap, reboot, quotas, accounting, the kernel log). Most of these already fail
/// for a process without capabilities; denying them here keeps them closed whatever profile or
/// capabilities the engine gives the container.
const DENIED: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_mount_setattr,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_fanotify_init,
    libc::SYS_memfd_secret,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_lookup_dcookie,
    libc::SYS_vhangup,
    libc::SYS_uselib,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

/// The `clone` flags that create namespaces. `CLONE_NEWTIME` (0x80) is left out: in `clone`
/// those bits are the exit signal, it only means a namespace to `clone3` and `unshare`.
const CLONE_NAMESPACES: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// x32 system calls are numbered from this bit up, under the x86_64 audit architecture: a
/// filter that lists x86_64 numbers must refuse them or they would bypass it.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The filter, compiled, ready to be installed in the child.
pub struct Filter {
    program: Vec<libc::sock_filter>,
}

impl Filter {
    /// Compiles the filter for the architecture the demoter runs on. A call made with another
    /// architecture's convention (an `int 0x80` i386 call) kills the program: the deny list
    /// is checked against the audit architecture first (the `ENOSYS` answers come before it,
    /// and are no less strict). With `pinned`, `sched_setaffinity` is denied too, so a program
    /// pinned to its CPU cannot move to another.
    pub fn new(pinned: bool) -> Result<Filter, Error> {
        let invalid = |source| Error::SeccompFilter { source };
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(invalid)?;
        let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
            DENIED.iter().map(|&number| (number, Vec::new())).collect();
        if pinned {
            rules.insert(libc::SYS_sched_setaffinity, Vec::new());
        }
        // A rule matches when all its conditions hold, a call when any of its rules matches.
        let flag_set = |bit: libc::c_int| {
            let bit = bit as u32 as u64;
            SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(bit), bit)
                .and_then(|c| SeccompRule::new(vec![c]))
        };
        rules.insert(
            libc::SYS_clone,
            CLONE_NAMESPACES
                .into_iter()
                .map(flag_set)
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
        );
        // Only local sockets: no network family (even without a network, AF_INET reaches the
        // loopback device's stack), no netlink (the kernel's configuration interfaces), no
        // packet sockets. The domain is an int: its low 32 bits are what the kernel reads.
        for call in [libc::SYS_socket, libc::SYS_socketpair] {
            let not_unix = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Ne,
                libc::AF_UNIX as u64,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(invalid)?;
            rules.insert(call, vec![not_unix]);
        }
        let deny = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            arch,
        )
        .map_err(invalid)?;
        let deny = BpfProgram::try_from(deny).map_err(invalid)?;
        let program = enosys_prefix()
            .into_iter()
            .chain(deny.into_iter().map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            }))
            .collect();
        Ok(Filter { program })
    }

    /// Installs the filter on the calling thread; returns -1 with `errno` set on failure.
    /// `PR_SET_NO_NEW_PRIVS` must be set already (the kernel refuses a filter otherwise).
    ///
    /// # Safety
    /// Async-signal-safe (one system call on memory prepared before `fork`): meant for the
    /// forked child, just before `execve`.
    pub unsafe fn install(&self) -> libc::c_long {
        let prog = libc::sock_fprog {
            len: self.program.len() as libc::c_ushort,
            filter: self.program.as_ptr().cast_mut(),
        };
        // SAFETY: prog points to a valid BPF program of `len` instructions; the kernel copies
        // it and does not keep the pointer.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        }
    }

    /// Number of BPF instructions.
    pub fn len(&self) -> usize {
        self.program.len()
    }

    /// Always false: a filter has at least its architecture check.
    pub fn is_empty(&self) -> bool {
        self.program.is_empty()
    }
}

/// Instructions that run before the deny list and answer `ENOSYS`, as a kernel without the call
/// would: `clone3`, whose flags sit in a struct a filter cannot read (the C library then falls
/// back to `clone`, whose flags the deny list checks; Docker's default profile does the same),
/// and every x32 call.
fn enosys_prefix() -> Vec<libc::sock_filter> {
    let op = |code: u32| code as libc::c_ushort;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: op(code),
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: op(code),
        jt,
        jf,
        k,
    };
    let enosys = libc::SECCOMP_RET_ERRNO | (libc::ENOSYS as u32 & libc::SECCOMP_RET_DATA);
    // seccomp_data.nr is the first field.
    let load_nr = stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0);
    let is_clone3 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let mut prefix = vec![load_nr];
    #[cfg(target_arch = "x86_64")]
    {
        // [1] clone3 -> [3]; [2] x32 -> [3], else -> [4] (the deny list).
        prefix.push(jump(is_clone3, libc::SYS_clone3 as u32, 1, 0));
        prefix.push(jump(
            libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
            X32_SYSCALL_BIT,
            0,
            1,
        ));
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // [1] clone3 -> [2], else -> [3] (the deny list).
        prefix.push(jump(is_clone3, libc::SYS_clone3 as u32, 0, 1));
    }
    prefix.push(stmt(libc::BPF_RET | libc::BPF_K, enosys));
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_to_a_program_the_kernel_accepts_in_size() {
        let filter = Filter::new(false).unwrap();
        // The kernel's limit is 4096 instructions; the filter is a few hundred.
        assert!(!filter.is_empty());
        assert!(filter.len() < 1024, "{} instructions", filter.len());
    }

    /// Forks, installs the filter in the child and returns what each call gave there: its
    /// result, or minus its errno. Only harmless arguments: without the filter each call does
    /// nothing or fails on its arguments, so a result of `-EPERM` is the filter's.
    fn in_filtered_child(calls: &[[libc::c_long; 6]]) -> Vec<libc::c_long> {
        let filter = Filter::new(false).unwrap();
        let mut fds = [0; 2];
        // SAFETY: fds is valid for two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes system calls on memory prepared before the fork and
        // ends in _exit (the test harness is multi-threaded).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1
                    || filter.install() == -1
                {
                    libc::_exit(1);
                }
                for call in calls {
                    let r = libc::syscall(call[0], call[1], call[2], call[3], call[4], call[5]);
                    let r: libc::c_long = if r == -1 {
                        -(*libc::__errno_location() as libc::c_long)
                    } else {
                        r
                    };
                    if r == 0 && call[0] == libc::SYS_clone {
                        libc::_exit(0); // the clone's child
                    }
                    libc::write(fds[1], (&r as *const libc::c_long).cast(), 8);
                }
                libc::_exit(0)
            }
        }
        // SAFETY: closing our copy of the write end, reading into a local buffer, reaping our
        // own child.
        let results = unsafe {
            libc::close(fds[1]);
            let mut results = Vec::new();
            let mut r: libc::c_long = 0;
            while libc::read(fds[0], (&mut r as *mut libc::c_long).cast(), 8) == 8 {
                results.push(r);
            }
            libc::close(fds[0]);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert_eq!(status, 0, "the filtered child failed");
            results
        };
        results
    }

    #[test]
    fn denies_what_it_lists_and_lets_the_rest_through() {
        let eperm = -libc::EPERM as libc::c_long;
        let enosys = -libc::ENOSYS as libc::c_long;
        let c = |n: libc::c_long| n;
        let flags = |f: libc::c_int| f as libc::c_long;
        let mut pair = [0 as libc::c_int; 2];
        let pair = pair.as_mut_ptr() as libc::c_long;
        let calls = [
            [libc::SYS_socket, c(2), c(1), 0, 0, 0], // AF_INET, SOCK_STREAM
            [libc::SYS_socket, c(10), c(2), 0, 0, 0], // AF_INET6, SOCK_DGRAM
            [libc::SYS_socket, c(16), c(3), 0, 0, 0], // AF_NETLINK, SOCK_RAW
            [libc::SYS_socketpair, c(2), c(1), 0, pair, 0],
            [libc::SYS_unshare, 0, 0, 0, 0, 0],
            [libc::SYS_settimeofday, 0, 0, 0, 0, 0],
            // pid 0 and no iovecs: without the filter, ESRCH.
            [libc::SYS_process_vm_readv, 0, 0, 0, 0, 0],
            [libc::SYS_mount, 0, 0, 0, 0, 0],
            [libc::SYS_io_uring_setup, 0, 0, 0, 0, 0],
            [libc::SYS_perf_event_open, 0, 0, 0, 0, 0],
            // A new user namespace with CLONE_FS, which the kernel rejects with EINVAL.
            [
                libc::SYS_clone,
                flags(libc::CLONE_NEWUSER | libc::CLONE_FS),
                0,
                0,
                0,
                0,
            ],
        ];
        #[cfg(target_arch = "x86_64")]
        let x32_getpid = libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long;
        let not_implemented = [
            [libc::SYS_clone3, 0, 0, 0, 0, 0],
            #[cfg(target_arch = "x86_64")]
            [x32_getpid, 0, 0, 0, 0, 0],
        ];
        let allowed = [
            [libc::SYS_socket, c(1), c(1), 0, 0, 0], // AF_UNIX
            [libc::SYS_socketpair, c(1), c(1), 0, pair, 0],
            [libc::SYS_clone, flags(libc::SIGCHLD), 0, 0, 0, 0], // a plain fork
        ];
        let all: Vec<_> = [&calls[..], &not_implemented, &allowed].concat();
        let results = in_filtered_child(&all);
        assert_eq!(results.len(), all.len());
        let (denied, rest) = results.split_at(calls.len());
        let (enosys_got, allowed_got) = rest.split_at(not_implemented.len());
        assert_eq!(denied, vec![eperm; calls.len()]);
        assert_eq!(enosys_got, vec![enosys; not_implemented.len()]);
        assert!(
            allowed_got.iter().all(|&r| r >= 0),
            "AF_UNIX sockets and fork: {allowed_got:?}"
        );
    }

    #[test]
    fn lists_each_call_once() {
        let mut numbers = DENIED.to_vec();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), DENIED.len());
        assert!(!numbers.contains(&libc::SYS_clone));
        assert!(!numbers.contains(&libc::SYS_socket));
    }
}
