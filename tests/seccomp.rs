//! The demoter's own seccomp filter against real Docker: a C program compiled in the gcc-12
//! image tries each system call the filter denies and prints the errno it got. Each must fail
//! with EPERM (clone3 with ENOSYS, so the C library falls back to clone), the program must go
//! on and exit normally, and what a program needs (local sockets, fork, threads, files) must
//! still work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use demoter::protocol::{Exit, Limits};
use executioner::language::{Placeholders, Registry};
use executioner::sandbox::{Container, Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};

fn demoter() -> PathBuf {
    std::env::var_os("EXECUTIONER_DEMOTER")
        .map(PathBuf::from)
        .or_else(executioner::cli::find_demoter)
        .expect("set EXECUTIONER_DEMOTER to the static demoter (scripts/build-demoter)")
}

/// Each probe prints `name=errno` (0 when the call succeeded); the run ends with `done`.
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long r) {
    printf("%s=%d\n", name, r < 0 ? errno : 0);
    fflush(stdout);
}

/* A call that would make a child on success: the child leaves at once. */
static void report_child(const char *name, long r) {
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, __WALL);
    report(name, r);
}

static void *thread_main(void *arg) { return arg; }

int main(void) {
    /* In a child, so a success does not make the demoter our tracer. */
    int p[2];
    if (pipe(p) != 0) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        int e = ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 ? errno : 0;
        write(p[1], &e, sizeof e);
        _exit(0);
    }
    int e = -1;
    read(p[0], &e, sizeof e);
    waitpid(pid, NULL, 0);
    printf("ptrace=%d\n", e);

    char secret[8] = "secret", copy[8] = "";
    struct iovec local = {copy, sizeof copy}, remote = {secret, sizeof secret};
    report("process_vm_readv", process_vm_readv(getpid(), &local, 1, &remote, 1, 0));
    report("process_vm_writev", process_vm_writev(getpid(), &remote, 1, &local, 1, 0));

    union bpf_attr battr;
    memset(&battr, 0, sizeof battr);
    battr.map_type = BPF_MAP_TYPE_ARRAY;
    battr.key_size = 4;
    battr.value_size = 4;
    battr.max_entries = 1;
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &battr, sizeof battr));

    struct perf_event_attr pattr;
    memset(&pattr, 0, sizeof pattr);
    pattr.size = sizeof pattr;
    pattr.type = PERF_TYPE_SOFTWARE;
    pattr.config = PERF_COUNT_SW_TASK_CLOCK;
    pattr.exclude_kernel = 1;
    report("perf_event_open", syscall(SYS_perf_event_open, &pattr, 0, -1, -1, 0));

    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("unshare", unshare(CLONE_NEWUSER));
    report_child("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    struct clone_args cargs;
    memset(&cargs, 0, sizeof cargs);
    cargs.exit_signal = SIGCHLD;
    report_child("clone3", syscall(SYS_clone3, &cargs, sizeof cargs));
    report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    report("socket_inet6", socket(AF_INET6, SOCK_DGRAM, 0));
    report("socket_netlink", socket(AF_NETLINK, SOCK_RAW, 0));
    report("socket_packet", socket(AF_PACKET, SOCK_RAW, 0));
    int inet_pair[2];
    report("socketpair_inet", socketpair(AF_INET, SOCK_STREAM, 0, inet_pair));
    struct io_uring_params uparams;
    memset(&uparams, 0, sizeof uparams);
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, &uparams));
    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));

    /* What programs need. */
    int sv[2];
    char got[4] = "";
    int unix_ok = socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && write(sv[0], "abc", 3) == 3
                  && read(sv[1], got, 3) == 3 && memcmp(got, "abc", 3) == 0;
    printf("unix_socketpair=%d\n", unix_ok);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    printf("unix_socket=%d\n", s >= 0);
    pid_t child = fork();
    if (child == 0) _exit(7);
    int status = 0;
    printf("fork=%d\n", child > 0 && waitpid(child, &status, 0) == child
                            && WIFEXITED(status) && WEXITSTATUS(status) == 7);
    pthread_t t;
    void *ret = NULL;
    printf("thread=%d\n", pthread_create(&t, NULL, thread_main, &t) == 0
                              && pthread_join(t, &ret) == 0 && ret == &t);
    FILE *f = fopen("scratch", "w+");
    char line[16] = "";
    int file_ok = f && fputs("kept\n", f) >= 0 && fseek(f, 0, SEEK_SET) == 0
                  && fgets(line, sizeof line, f) && strcmp(line, "kept\n") == 0;
    printf("file=%d\n", file_ok);
    puts("done");
    return 0;
}
"#;

/// What each probe must report: the errno under the filter, or 1 for "works".
fn expected() -> BTreeMap<&'static str, i32> {
    let eperm = [
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "mount",
        "unshare",
        "clone_newns",
        "socket_inet",
        "socket_inet6",
        "socket_netlink",
        "socket_packet",
        "socketpair_inet",
        "io_uring_setup",
        "kexec_load",
        "init_module",
    ];
    let works = ["unix_socketpair", "unix_socket", "fork", "thread", "file"];
    eperm
        .into_iter()
        .map(|name| (name, libc::EPERM))
        .chain([("clone3", libc::ENOSYS)])
        .chain(works.into_iter().map(|name| (name, 1)))
        .collect()
}

/// Opens a gcc-12 container and compiles `program` in it.
async fn compiled(sandbox: &Sandbox, program: &str) -> Container {
    let registry = Registry::builtin().unwrap();
    let c = registry.resolve("gcc-12").unwrap();
    let mut container = sandbox.open(&c.image).await.expect("open a container");
    container
        .put_source(&c.source, program.as_bytes())
        .await
        .unwrap();
    let values = Placeholders {
        build: BUILD_DIR,
        memory_kb: 65536,
    };
    let out = container
        .run(Run {
            argv: c.expand(c.compile.as_ref().unwrap(), &values),
            env: c.env.clone(),
            work_dir: WorkDir::Build,
            stdin: None,
            limits: executioner::judge::JudgeConfig::default().compile_limits,
            io: None,
        })
        .await
        .unwrap();
    let errors = std::fs::read_to_string(&out.stderr).unwrap_or_default();
    assert!(out.result.exited_normally(), "compile failed: {errors}");
    container.seal_build().await.unwrap();
    container
}

#[tokio::test]
async fn denied_calls_fail_with_eperm_and_the_program_goes_on() {
    let sandbox = Sandbox::connect(SandboxConfig::new(demoter()))
        .await
        .expect("Docker engine and cgroups (run scripts/docker-up)");
    let mut container = compiled(&sandbox, PROBE).await;
    let out = container
        .run(Run {
            argv: vec![format!("{BUILD_DIR}/main")],
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Bytes(b"")),
            limits: Limits {
                cpu_ms: 2000,
                wall_ms: 10_000,
                memory_kb: 65536,
                pids: 16,
                output_bytes: 1 << 20,
                stderr_bytes: 4096,
            },
            io: None,
        })
        .await;
    // Read everything, then close the container, then assert: a failed assertion leaves no
    // container behind.
    let stdout = out
        .as_ref()
        .ok()
        .and_then(|o| std::fs::read_to_string(&o.stdout).ok());
    container.close().await;
    let out = out.expect("the run is a result, not a sandbox failure");
    let stdout = stdout.expect("the program's stdout");
    assert_eq!(out.result.exit, Exit::Exited { code: 0 }, "{stdout}");
    assert_eq!(out.result.limit, None);
    assert!(stdout.ends_with("done\n"), "{stdout}");
    let got: BTreeMap<&str, i32> = stdout
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name, value.parse().expect("a number")))
        .collect();
    assert_eq!(got, expected(), "name=errno (1 = works):\n{stdout}");
}
