//! What a submission can learn of the host (issue #15, item 6): every container has an empty
//! `/etc/resolv.conf`, `/etc/hosts` with localhost only and the host name `sandbox`, instead of
//! the host's files that Docker would copy in; a compiler that includes them echoes nothing of
//! the host. Real containers, real compiles.

mod boxes;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use demoter::protocol::{Exit, Limits};
use executioner::language::Registry;
use executioner::sandbox::{
    Container, OpenOptions, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR,
};

use boxes::{compile, demoter};
use common::{expected_messages, judge, Problem, Verdict};

/// Prints the three files and the node name, each after a `--name--` line.
const SHOW: &str = r#"#include <stdio.h>
#include <sys/utsname.h>
static void show(const char *path) {
    printf("--%s--\n", path);
    FILE *f = fopen(path, "r");
    if (!f) { printf("<unreadable>\n"); return; }
    int c;
    while ((c = fgetc(f)) != EOF) putchar(c);
    fclose(f);
}
int main(void) {
    show("/etc/resolv.conf");
    show("/etc/hosts");
    show("/etc/hostname");
    struct utsname u;
    if (uname(&u) != 0) return 2;
    printf("--uname--\n%s\n", u.nodename);
    return 0;
}
"#;

const EXPECTED: &str = "--/etc/resolv.conf--\n\
--/etc/hosts--\n127.0.0.1\tlocalhost\n::1\tlocalhost\n\
--/etc/hostname--\nsandbox\n\
--uname--\nsandbox\n";

fn limits() -> Limits {
    Limits {
        cpu_ms: 2000,
        wall_ms: 4000,
        memory_kb: 65536,
        pids: 16,
        output_bytes: 1 << 20,
        stderr_bytes: 4096,
        idle_ms: None,
    }
}

/// Compiles [`SHOW`] in `container`, runs it and gives what it printed.
async fn show(container: &mut Container) -> String {
    let (result, errors) = compile(container, SHOW).await;
    assert!(result.exited_normally(), "compile failed: {errors}");
    container.seal_build().await.expect("seal the build");
    printed(container, vec![format!("{BUILD_DIR}/main")]).await
}

/// What `cat path` prints in a fresh run.
async fn cat(container: &mut Container, path: &str) -> String {
    printed(container, vec!["/bin/cat".into(), path.into()]).await
}

/// What `argv` prints in a fresh run, which must exit 0.
async fn printed(container: &mut Container, argv: Vec<String>) -> String {
    let out = container
        .run(Run {
            argv: argv.clone(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir: WorkDir::Fresh,
            stdin: None,
            limits: limits(),
            io: None,
            stderr_to_stdout: false,
        })
        .await
        .expect("the run is a result");
    assert_eq!(out.result.exit, Exit::Exited { code: 0 }, "{argv:?}");
    String::from_utf8_lossy(&std::fs::read(&out.stdout).expect("its stdout")).into_owned()
}

/// `/etc` dirs of this process's sandboxes in `dir`.
fn etc_dirs(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("executioner-etc-{}-", std::process::id());
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn programs_and_checkers_see_fixed_resolv_conf_hosts_and_hostname() {
    let work = tempfile::tempdir().expect("a work dir");
    let mut config = SandboxConfig::new(demoter());
    config.work_dir = work.path().to_owned();
    let sandbox = Sandbox::connect(config)
        .await
        .expect("Docker engine and cgroups");
    let registry = Registry::builtin().expect("the language registry");
    let image = registry.resolve("gcc-12").expect("gcc-12").image.clone();

    // A submission's container.
    let mut program = sandbox.open(&image).await.expect("open a container");
    let seen = show(&mut program).await;
    let cgroups = cat(&mut program, "/proc/self/cgroup").await;
    program.close().await;
    assert_eq!(seen, EXPECTED, "what a program sees");
    // On cgroup v1 the container has a cgroup namespace of its own: the paths a program sees
    // are relative to the container's cgroup, never the host's `/docker/<id>`.
    if Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        assert!(
            !cgroups.contains("docker") && cgroups.lines().any(|l| l.ends_with(":/")),
            "the host's cgroup paths are visible:\n{cgroups}"
        );
    }

    // A checker's: another uid, a traversable io dir.
    let mut checker = sandbox
        .open_with(
            &image,
            &OpenOptions {
                uid: Some(60001),
                io_traversable: true,
                ..Default::default()
            },
        )
        .await
        .expect("open a checker's container");
    let seen = show(&mut checker).await;
    checker.close().await;
    assert_eq!(seen, EXPECTED, "what a checker sees");

    // The files live in one dir per sandbox, gone with the last clone.
    assert_eq!(etc_dirs(work.path()).len(), 1);
    let clone = sandbox.clone();
    drop(sandbox);
    assert_eq!(etc_dirs(work.path()).len(), 1, "a clone still uses them");
    drop(clone);
    assert_eq!(etc_dirs(work.path()), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn leftover_etc_dirs_of_dead_processes_are_removed() {
    let work = tempfile::tempdir().expect("a work dir");
    // The pid of a process that has ended (ours, reaped).
    let mut child = std::process::Command::new("true")
        .spawn()
        .expect("run true");
    let dead = child.id();
    child.wait().expect("reap true");
    let leftover = work.path().join(format!("executioner-etc-{dead}-x1y2z3"));
    std::fs::create_dir(&leftover).expect("a leftover dir");
    std::fs::write(leftover.join("hosts"), "").expect("a leftover file");
    // One of a live process (ours) that is not this sandbox's stays.
    let live = work
        .path()
        .join(format!("executioner-etc-{}-other", std::process::id()));
    std::fs::create_dir(&live).expect("a live dir");

    let mut config = SandboxConfig::new(demoter());
    config.work_dir = work.path().to_owned();
    let sandbox = Sandbox::connect(config)
        .await
        .expect("Docker engine and cgroups");
    sandbox.remove_leftovers().await.expect("remove leftovers");
    assert!(!leftover.exists(), "the dead process's dir is still there");
    assert!(live.exists(), "a live process's dir was removed");
    assert_eq!(
        etc_dirs(work.path()).len(),
        2,
        "this sandbox's and the live one"
    );
}

/// A compiler that includes the container's `/etc/resolv.conf` echoes nothing of the host's
/// (it is empty), and its `/etc/hostname` is `sandbox` (defined away here): the program
/// compiles and is accepted, through the whole judge. (Docker 20.10 gives a container without
/// network the image's empty `resolv.conf` and `hosts` but its own id as host name; other
/// engines copy the host's `resolv.conf`.)
#[test]
fn a_compile_that_includes_resolv_conf_and_hostname_shows_nothing_of_the_host() {
    let host_lines: Vec<String> = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let dir = tempfile::tempdir().expect("a temp dir");
    let source = dir.path().join("main.c");
    std::fs::write(
        &source,
        "#include \"/etc/resolv.conf\"\n#define sandbox\n#include \"/etc/hostname\"\n\
         #include <stdio.h>\n\
         int main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 3;\
         printf(\"%lld\\n\",a+b);return 0;}\n",
    )
    .expect("write the source");
    let problem = Problem::load("test-base");
    let run =
        judge("test-base", "gcc-12", &source, Duration::from_secs(120)).expect("the judge ran");
    let all: String = run.messages.iter().map(|m| format!("{m}\n")).collect();
    for line in &host_lines {
        assert!(
            !all.contains(line.as_str()),
            "the host's resolv.conf line {line:?} reached the submitter:\n{all}"
        );
    }
    let verdicts = vec![Verdict::Accepted; problem.tests.len()];
    if let Err(e) = run.check(|id| expected_messages(id, &problem, true, Some(&verdicts))) {
        panic!("{e}");
    }
}
