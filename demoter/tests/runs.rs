//! `demoter run` against real cgroups, v1 or v2 (needs root).

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{fingerprint, Fixture};
use demoter::protocol::{Exit, LimitHit, Response};

#[test]
fn output_goes_to_the_files_and_stdin_comes_from_one() {
    let fx = Fixture::new();
    fs::write(fx.path("input"), "3 4\n").unwrap();
    let mut spec = fx.spec(&["sh", "-c", "read a b; echo $((a + b)); echo oops >&2; pwd"]);
    spec.stdin = Some(fx.path("input"));
    let r = fx.run(&spec);
    assert_eq!(r.exit, Exit::Exited { code: 0 });
    assert_eq!(r.limit, None);
    assert!(r.exited_normally());
    let expected = format!("7\n{}\n", fx.path("box/cwd").display());
    assert_eq!(fx.read("box/stdout"), expected);
    assert_eq!(r.stdout_bytes, expected.len() as u64);
    assert_eq!(fx.read("box/stderr"), "oops\n");
    assert!(r.memory_kb > 0);
    // The fresh working directory is gone.
    assert!(!fx.path("box/cwd").exists());
    fx.assert_clean();
}

#[test]
fn named_input_and_output_files_live_in_the_fresh_directory() {
    let fx = Fixture::new();
    fs::write(fx.path("input"), "3 4\n").unwrap();
    // Reads its input file by name, writes the answer to its output file, chatter to stdout.
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "read a b < input.txt; echo $((a + b)) > output.txt; echo chatter",
    ]);
    spec.stdin = Some(fx.path("input"));
    spec.input_name = Some("input.txt".into());
    spec.output_name = Some("output.txt".into());
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    assert_eq!(fx.read("box/stdout"), "7\n");
    assert!(!fx.path("box/cwd").exists());
    // No output file: no output. A link planted in its place is not followed.
    let mut spec = fx.spec(&["sh", "-c", "echo to-stdout; ln -s /etc/passwd output.txt"]);
    spec.output_name = Some("output.txt".into());
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    assert_eq!(fx.read("box/stdout"), "");
    // A name with a slash is refused.
    let mut spec = fx.spec(&["true"]);
    spec.output_name = Some("../escape".into());
    let (response, _, _) = fx.run_raw(&[], &serde_json::to_string(&spec).unwrap());
    assert!(matches!(response, Response::Failed { .. }), "{response:?}");
    fx.assert_clean();
}

#[test]
fn runs_as_the_given_user_with_exactly_the_given_environment() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sh", "-c", "id -u; id -g; id -G; env | sort; ulimit -c"]);
    spec.env.push("ANSWER=42".into());
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    let uid = fx.uid.to_string();
    let out = fx.read("box/stdout");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..3], &[uid.as_str(), uid.as_str(), uid.as_str()]);
    // sh adds PWD (and may add SHLVL, _); nothing of the demoter's environment leaks.
    let env: Vec<&str> = lines[3..lines.len() - 1]
        .iter()
        .copied()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(
        env,
        ["ANSWER=42", "HOME=/nonexistent", "PATH=/usr/bin:/bin"]
    );
    assert_eq!(lines[lines.len() - 1], "0");
    fx.assert_clean();
}

#[test]
fn exit_code_is_reported() {
    let fx = Fixture::new();
    let r = fx.run(&fx.spec(&["sh", "-c", "exit 1"]));
    assert_eq!(r.exit, Exit::Exited { code: 1 });
    assert_eq!(r.limit, None);
    assert!(!r.exited_normally());
    fx.assert_clean();
}

#[test]
fn a_missing_program_exits_127_with_a_message() {
    let fx = Fixture::new();
    let r = fx.run(&fx.spec(&["no-such-program-anywhere"]));
    assert_eq!(r.exit, Exit::Exited { code: 127 });
    assert!(
        fx.read("box/stderr").contains("no-such-program-anywhere"),
        "{}",
        fx.read("box/stderr")
    );
    fx.assert_clean();
}

#[test]
fn segfault_is_signal_11() {
    let fx = Fixture::new();
    let exe = fx.compile(
        "segv",
        "int main(void) { *(volatile int *)0 = 1; return 0; }\n",
    );
    let r = fx.run(&fx.spec(&[&exe]));
    assert_eq!(r.exit, Exit::Signaled { signal: 11 });
    assert_eq!(r.limit, None);
    fx.assert_clean();
}

#[test]
fn touching_300_mb_under_64_mb_is_memory() {
    let fx = Fixture::new();
    let exe = fx.compile(
        "hog",
        r#"#include <stdlib.h>
int main(void) {
    size_t size = 300u << 20;
    volatile char *p = malloc(size);
    if (!p) return 3;
    for (size_t i = 0; i < size; i += 4096) p[i] = 1;
    return 0;
}
"#,
    );
    let mut spec = fx.spec(&[&exe]);
    spec.limits.memory_kb = 64 * 1024;
    let r = fx.run(&spec);
    assert_eq!(r.limit, Some(LimitHit::Memory), "{r:?}");
    assert_eq!(r.exit, Exit::Signaled { signal: 9 });
    assert!(r.memory_kb <= 64 * 1024, "{r:?}");
    assert!(r.memory_kb > 32 * 1024, "{r:?}");
    fx.assert_clean();
}

#[test]
fn a_busy_loop_stops_at_its_cpu_limit_to_the_millisecond() {
    let fx = Fixture::new();
    let exe = fx.compile(
        "spin",
        "int main(void) { volatile unsigned long n = 0; for (;;) n++; }\n",
    );
    let mut spec = fx.spec(&[&exe]);
    spec.limits.cpu_ms = 500;
    spec.limits.wall_ms = 20_000;
    let r = fx.run(&spec);
    assert_eq!(r.limit, Some(LimitHit::Time), "{r:?}");
    assert_eq!(r.exit, Exit::Signaled { signal: 9 });
    assert!((500..600).contains(&r.cpu_ms), "{r:?}");
    fx.assert_clean();
}

#[test]
fn sleeping_is_stopped_at_the_wall_limit() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sleep", "100"]);
    spec.limits.cpu_ms = 1000;
    spec.limits.wall_ms = 1000;
    let r = fx.run(&spec);
    assert_eq!(r.limit, Some(LimitHit::Wall), "{r:?}");
    assert_eq!(r.exit, Exit::Signaled { signal: 9 });
    assert!(r.wall_ms >= 1000, "{r:?}");
    fx.assert_clean();
}

#[test]
fn a_program_idle_for_its_idle_limit_is_stopped_long_before_the_wall_limit() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sleep", "100"]);
    spec.limits.cpu_ms = 10_000;
    spec.limits.wall_ms = 5_000;
    spec.limits.idle_ms = Some(500);
    let r = fx.run(&spec);
    // Reported as the wall limit it stands in for, at the idle limit (plus a sample period).
    assert_eq!(r.limit, Some(LimitHit::Wall), "{r:?}");
    assert_eq!(r.exit, Exit::Signaled { signal: 9 });
    assert!((500..1000).contains(&r.wall_ms), "{r:?}");
    fx.assert_clean();
}

#[test]
fn a_busy_program_is_never_idle() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done",
    ]);
    spec.limits.cpu_ms = 10_000;
    spec.limits.wall_ms = 20_000;
    spec.limits.idle_ms = Some(100);
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    assert!(r.wall_ms > 100, "too short to tell: {r:?}");
    fx.assert_clean();
}

#[test]
fn a_fork_bomb_is_contained_and_leaves_nothing() {
    let fx = Fixture::new();
    let exe = fx.compile(
        "bomb",
        r#"#include <unistd.h>
int main(void) {
    for (;;) {
        fork();
        for (volatile int i = 0; i < 100000; i++) {}
    }
}
"#,
    );
    let mut spec = fx.spec(&[&exe]);
    spec.limits.pids = 16;
    spec.limits.cpu_ms = 1000;
    spec.limits.wall_ms = 3000;
    let r = fx.run(&spec);
    assert!(
        matches!(r.limit, Some(LimitHit::Time) | Some(LimitHit::Wall)),
        "{r:?}"
    );
    fx.assert_clean();
}

#[test]
fn yes_is_stopped_at_the_output_limit() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["yes"]);
    spec.limits.output_bytes = 1 << 20;
    let r = fx.run(&spec);
    assert_eq!(r.limit, Some(LimitHit::Output), "{r:?}");
    assert!(r.stdout_bytes > 1 << 20, "{r:?}");
    let written = fs::metadata(fx.path("box/stdout")).unwrap().len();
    assert_eq!(written, 1 << 20);
    assert!(fx.read("box/stdout").lines().all(|l| l == "y"));
    fx.assert_clean();
}

#[test]
fn stderr_beyond_its_share_is_dropped_without_a_limit() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["sh", "-c", "head -c 100000 /dev/zero >&2; echo done"]);
    spec.limits.stderr_bytes = 1000;
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    assert_eq!(fs::metadata(fx.path("box/stderr")).unwrap().len(), 1000);
    assert_eq!(fx.read("box/stdout"), "done\n");
    fx.assert_clean();
}

#[test]
fn a_daemon_that_outlives_main_is_killed() {
    let fx = Fixture::new();
    let exe = fx.compile(
        "daemon",
        r#"#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
    int ready[2];
    if (pipe(ready)) return 2;
    if (fork() == 0) {
        setsid();
        if (fork() == 0) {
            /* The daemon: keeps stdout open and never ends by itself. */
            close(ready[0]);
            write(ready[1], "x", 1);
            for (;;) pause();
        }
        _exit(0);
    }
    char c;
    close(ready[1]);
    if (read(ready[0], &c, 1) != 1) return 3;
    printf("main done\n");
    return 0;
}
"#,
    );
    let r = fx.run(&fx.spec(&[&exe]));
    assert!(r.exited_normally(), "{r:?}");
    assert_eq!(fx.read("box/stdout"), "main done\n");
    fx.assert_clean();
}

#[test]
fn links_fifos_and_locked_dirs_in_the_cwd_are_removed_safely() {
    let fx = Fixture::new();
    let shadow = std::path::Path::new("/etc/shadow");
    let before = fingerprint(shadow);
    let exe = fx.compile(
        "litter",
        r#"#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
int main(void) {
    if (symlink("/etc/shadow", "shadow-link")) return 2;
    if (symlink("/etc", "etc-link")) return 3;
    if (mkfifo("fifo", 0600)) return 4;
    int fd = open("file", O_CREAT | O_WRONLY, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1) return 5;
    if (link("file", "hard")) return 6;
    link("/etc/shadow", "shadow-hard"); /* refused by protected_hardlinks, or not */
    if (mkdir("locked", 0700) || mkdir("locked/inner", 0700)) return 7;
    if (close(open("locked/inner/f", O_CREAT | O_WRONLY, 0600))) return 8;
    if (symlink("/etc/shadow", "locked/inner/link")) return 9;
    if (chmod("locked/inner", 0) || chmod("locked", 0)) return 10;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strcpy(a.sun_path, "sock");
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a)) return 11;
    return 0;
}
"#,
    );
    let r = fx.run(&fx.spec(&[&exe]));
    assert!(r.exited_normally(), "{r:?} {}", fx.read("box/stderr"));
    assert!(!fx.path("box/cwd").exists());
    assert!(fx.path("box").is_dir());
    assert_eq!(fingerprint(shadow), before);
    assert!(std::path::Path::new("/etc/passwd").exists());
    fx.assert_clean();
}

#[test]
fn writing_outside_the_cwd_into_a_root_dir_fails() {
    let fx = Fixture::new();
    let target = fx.path("box/intruder");
    let script = format!("echo x > {}", target.display());
    let r = fx.run(&fx.spec(&["sh", "-c", &script]));
    assert_ne!(r.exit, Exit::Exited { code: 0 });
    assert!(!target.exists());
    assert!(fx.read("box/stderr").contains("Permission denied"));
    fx.assert_clean();
}

#[test]
fn wipe_dirs_are_emptied_without_following_links() {
    let fx = Fixture::new();
    let wipe = fx.path("wipe");
    fs::create_dir(&wipe).unwrap();
    fs::set_permissions(&wipe, fs::Permissions::from_mode(0o1777)).unwrap();
    let keep = fx.path("keep");
    fs::write(&keep, "keep").unwrap();
    let before = fingerprint(&keep);
    let script = format!(
        "cd {w} && ln -s {k} link && ln -s / root && mkfifo fifo && mkdir -p d/e && touch d/e/f \
         && chmod 0 d/e d && echo x > file",
        w = wipe.display(),
        k = keep.display()
    );
    let wipe_arg = wipe.to_str().unwrap();
    let r = fx.run_with(&["--wipe", wipe_arg], &fx.spec(&["sh", "-c", &script]));
    assert!(r.exited_normally(), "{r:?} {}", fx.read("box/stderr"));
    assert!(wipe.is_dir());
    assert_eq!(fs::read_dir(&wipe).unwrap().count(), 0);
    assert_eq!(fingerprint(&keep), before);
    fx.assert_clean();
}

#[test]
fn a_missing_cwd_is_a_sandbox_failure_that_leaves_nothing() {
    let fx = Fixture::new();
    let mut spec = fx.spec(&["true"]);
    spec.fresh_cwd = false;
    spec.cwd = fx.path("box/missing");
    let (response, code, _) = fx.run_raw(&[], &serde_json::to_string(&spec).unwrap());
    match response {
        Response::Failed { error } => assert!(error.contains("chdir"), "{error}"),
        other => panic!("expected failed, got {other:?}"),
    }
    assert_eq!(code, 1);
    fx.assert_clean();
}

#[test]
fn an_existing_fresh_cwd_is_refused() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("box/cwd")).unwrap();
    fs::write(fx.path("box/cwd/precious"), "x").unwrap();
    let (response, code, _) = fx.run_raw(&[], &serde_json::to_string(&fx.spec(&["true"])).unwrap());
    assert!(matches!(response, Response::Failed { .. }), "{response:?}");
    assert_eq!(code, 1);
    assert_eq!(fx.read("box/cwd/precious"), "x");
    fx.assert_clean();
}

#[test]
fn a_malformed_spec_fails_and_bad_usage_exits_2() {
    let fx = Fixture::new();
    let (response, code, _) = fx.run_raw(&[], "{\"argv\":");
    assert!(matches!(response, Response::Failed { .. }), "{response:?}");
    assert_eq!(code, 1);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_demoter"))
        .args(["run", "--cgroup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    fx.assert_clean();
}

/// The CPUs this test process may use, from `/proc/self/status` (`Cpus_allowed_list`).
fn allowed_cpus() -> Vec<u32> {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim();
    list.split(',')
        .flat_map(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            a.parse::<u32>().unwrap()..=b.parse::<u32>().unwrap()
        })
        .collect()
}

#[test]
fn a_pinned_run_stays_on_its_cpu_and_cannot_widen_it() {
    let fx = Fixture::new();
    let cpu = *allowed_cpus().last().unwrap();
    // What the program and a child of it may use, then an attempt to widen it.
    let mut spec = fx.spec(&[
        "sh",
        "-c",
        "grep Cpus_allowed_list /proc/self/status; sh -c 'grep Cpus_allowed_list /proc/self/status'; \
         taskset -p -c 0-1023 $$ > /dev/null 2>&1 && echo widened || echo refused",
    ]);
    spec.cpu = Some(cpu);
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?} {}", fx.read("box/stderr"));
    let line = format!("Cpus_allowed_list:\t{cpu}\n");
    assert_eq!(fx.read("box/stdout"), format!("{line}{line}refused\n"));

    // Unpinned, the same program keeps what the demoter had and may change it.
    spec.cpu = None;
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    let out = fx.read("box/stdout");
    assert!(out.ends_with("widened\n"), "{out}");

    // A CPU the demoter may not use leaves the run unpinned instead of failing it.
    spec.cpu = Some(1023);
    let r = fx.run(&spec);
    assert!(r.exited_normally(), "{r:?}");
    fx.assert_clean();
}
