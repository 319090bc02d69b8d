/* Tries each system call the demoter's seccomp filter denies, then what every program needs.
 * Prints one `name=errno` line per call (0: it succeeded) and `done`: under the filter the
 * output is exactly probe.out beside this file. Shared by demoter/tests/seccomp.rs (the
 * demoter on the host) and tests/seccomp.rs (a real gcc-12 sandbox container). */
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

/* A call that makes a child when it succeeds: the child leaves at once. */
static void report_child(const char *name, long r) {
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, __WALL);
    report(name, r);
}

/* A check of several steps: 0 when all held, else the errno of the failed one. */
static void report_check(const char *name, int ok) {
    printf("%s=%d\n", name, ok ? 0 : (errno ? errno : -1));
    fflush(stdout);
}

static void *thread_main(void *arg) { return arg; }

int main(void) {
    /* In a child, so that a success does not make our parent (the demoter) our tracer. */
    int p[2];
    if (pipe(p) != 0) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        int e = ptrace(PTRACE_TRACEME, 0, 0, 0) < 0 ? errno : 0;
        write(p[1], &e, sizeof e);
        _exit(0);
    }
    int e = -1;
    if (pid < 0 || read(p[0], &e, sizeof e) != sizeof e) return 2;
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
    pattr.exclude_hv = 1;
    report("perf_event_open", syscall(SYS_perf_event_open, &pattr, 0, -1, -1, 0));

    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC));
    report("keyctl", syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    report("mount", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("unshare", unshare(CLONE_NEWUSER));
    report_child("clone_namespaces", syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
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
    errno = 0;
    int sv[2];
    char got[4] = "";
    report_check("unix_socketpair", socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0
                                        && write(sv[0], "abc", 3) == 3
                                        && read(sv[1], got, 3) == 3 && memcmp(got, "abc", 3) == 0);
    report("unix_socket", socket(AF_UNIX, SOCK_DGRAM, 0));
    pid_t child = fork();
    if (child == 0) _exit(7);
    int status = 0;
    report_check("fork", child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status)
                             && WEXITSTATUS(status) == 7);
    pthread_t t;
    void *ret = NULL;
    int err = pthread_create(&t, NULL, thread_main, &t);
    if (err == 0) err = pthread_join(t, &ret);
    errno = err;
    report_check("thread", err == 0 && ret == &t);
    FILE *f = fopen("scratch", "w+");
    char line[16] = "";
    report_check("file", f && fputs("kept\n", f) >= 0 && fseek(f, 0, SEEK_SET) == 0
                             && fgets(line, sizeof line, f) && strcmp(line, "kept\n") == 0);
    puts("done");
    return 0;
}
