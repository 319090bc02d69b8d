//! The sandbox against real Docker: C programs that misbehave in every way the issue lists end
//! with a measured result, and leave no container, cgroup or file behind.

mod boxes;

use std::path::{Path, PathBuf};

use boxes::{compiled, demoter};
use demoter::protocol::{Exit, LimitHit, Limits, RunResult};
use executioner::language::Registry;
use executioner::sandbox::{Container, Input, Run, Sandbox, SandboxConfig, WorkDir, BUILD_DIR};

fn limits(cpu_ms: u64, memory_kb: u64) -> Limits {
    Limits {
        cpu_ms,
        wall_ms: cpu_ms * 2,
        memory_kb,
        pids: 16,
        output_bytes: 1 << 20,
        stderr_bytes: 4096,
        idle_ms: None,
    }
}

async fn run(container: &mut Container, limits: Limits, stdin: &str) -> (RunResult, Vec<u8>) {
    let out = container
        .run(Run {
            argv: vec![format!("{BUILD_DIR}/main")],
            env: vec!["PATH=/usr/bin:/bin".into()],
            work_dir: WorkDir::Fresh,
            stdin: Some(Input::Bytes(stdin.as_bytes())),
            limits,
            io: None,
            stderr_to_stdout: false,
        })
        .await
        .expect("the run is a result, not a sandbox failure");
    let stdout = std::fs::read(&out.stdout).unwrap();
    (out.result, stdout)
}

fn box_cgroup(name: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/memory/executioner").join(name)
}

/// Closes the container and checks that the container and its cgroup are gone.
async fn close_and_check(sandbox_docker: &bollard::Docker, container: Container) {
    let (id, name) = (container.id().to_owned(), container.name().to_owned());
    assert!(box_cgroup(&name).exists() || !Path::new("/sys/fs/cgroup/memory").exists());
    container.close().await;
    let inspect = sandbox_docker.inspect_container(&id, None).await;
    assert!(inspect.is_err(), "container {id} is still there");
    assert!(
        !box_cgroup(&name).exists(),
        "cgroup of {name} is still there"
    );
}

async fn setup() -> (Sandbox, bollard::Docker) {
    let sandbox = Sandbox::connect(SandboxConfig::new(demoter()))
        .await
        .expect("Docker engine and cgroups (run scripts/docker-up)");
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    (sandbox, docker)
}

const SUM: &str = r#"#include <stdio.h>
int main(void){long long a,b;if(scanf("%lld %lld",&a,&b)!=2)return 3;printf("%lld\n",a+b);return 0;}"#;

#[tokio::test]
async fn correct_output_exit_codes_and_signals_are_reported() {
    let (sandbox, docker) = setup().await;
    let mut c = compiled(&sandbox, SUM).await;
    let (r, out) = run(&mut c, limits(1000, 65536), "2 40\n").await;
    assert_eq!(r.exit, Exit::Exited { code: 0 });
    assert_eq!(r.limit, None);
    assert_eq!(out, b"42\n");
    // No input: the program itself exits 3.
    let (r, _) = run(&mut c, limits(1000, 65536), "").await;
    assert_eq!(r.exit, Exit::Exited { code: 3 });
    close_and_check(&docker, c).await;

    let mut c = compiled(&sandbox, "#include <stdlib.h>\nint main(void){exit(1);}").await;
    let (r, _) = run(&mut c, limits(1000, 65536), "").await;
    assert_eq!(r.exit, Exit::Exited { code: 1 });
    close_and_check(&docker, c).await;

    let mut c = compiled(
        &sandbox,
        "int main(void){volatile int *p=0; *p=1; return 0;}",
    )
    .await;
    let (r, _) = run(&mut c, limits(1000, 65536), "").await;
    assert_eq!(r.exit, Exit::Signaled { signal: 11 });
    assert_eq!(r.limit, None);
    close_and_check(&docker, c).await;
}

#[tokio::test]
async fn memory_time_and_wall_limits_are_hit() {
    let (sandbox, docker) = setup().await;
    // 300 MB touched under a 64 MB limit.
    let mut c = compiled(
        &sandbox,
        "#include <stdlib.h>\nint main(void){size_t n=300u<<20;volatile char*p=malloc(n);if(!p)return 2;for(size_t i=0;i<n;i+=4096)p[i]=1;return p[4096]-1;}",
    )
    .await;
    let (r, _) = run(&mut c, limits(5000, 64 * 1024), "").await;
    assert_eq!(r.limit, Some(LimitHit::Memory), "{r:?}");
    assert!(
        r.memory_kb >= 60 * 1024 && r.memory_kb <= 65 * 1024,
        "{r:?}"
    );
    close_and_check(&docker, c).await;

    // A busy loop under 500 ms: CPU time limit, measured between 500 and 600 ms.
    let mut c = compiled(
        &sandbox,
        "int main(void){volatile unsigned long x=0;for(;;)x++;}",
    )
    .await;
    let mut l = limits(500, 65536);
    l.wall_ms = 10_000;
    let (r, _) = run(&mut c, l, "").await;
    assert_eq!(r.limit, Some(LimitHit::Time), "{r:?}");
    assert!((500..600).contains(&r.cpu_ms), "{r:?}");
    close_and_check(&docker, c).await;

    // sleep 100: the wall limit ends it.
    let mut c = compiled(
        &sandbox,
        "#include <unistd.h>\nint main(void){sleep(100);return 0;}",
    )
    .await;
    let mut l = limits(500, 65536);
    l.wall_ms = 1000;
    let (r, _) = run(&mut c, l, "").await;
    assert_eq!(r.limit, Some(LimitHit::Wall), "{r:?}");
    assert!(r.wall_ms >= 1000 && r.wall_ms < 10_000, "{r:?}");
    assert!(r.cpu_ms < 100, "{r:?}");
    close_and_check(&docker, c).await;
}

#[tokio::test]
async fn fork_bombs_and_endless_output_are_contained() {
    let (sandbox, docker) = setup().await;
    let mut c = compiled(
        &sandbox,
        "#include <unistd.h>\nint main(void){for(;;)fork();}",
    )
    .await;
    let (r, _) = run(&mut c, limits(1000, 65536), "").await;
    assert!(
        matches!(r.limit, Some(LimitHit::Time | LimitHit::Wall)),
        "{r:?}"
    );
    // The next run of the same container works: nothing of the bomb is left.
    close_and_check(&docker, c).await;

    // `yes`: stopped at the output limit, the output file holds exactly the limit.
    let mut c = compiled(
        &sandbox,
        "#include <stdio.h>\nint main(void){for(;;)fputs(\"y\\n\",stdout);}",
    )
    .await;
    let (r, out) = run(&mut c, limits(5000, 65536), "").await;
    assert_eq!(r.limit, Some(LimitHit::Output), "{r:?}");
    assert_eq!(out.len(), 1 << 20);
    close_and_check(&docker, c).await;
}

#[tokio::test]
async fn what_a_run_leaves_behind_is_gone_before_the_next() {
    let (sandbox, docker) = setup().await;
    // First run (input "1"): leaves a symlink to /etc/shadow, a FIFO, a file in /tmp and
    // /dev/shm, System V shared memory, a message queue and a semaphore set (with a message and
    // a value in them), a POSIX message queue, and a daemon. Second run (input "2"): reports what it can still see.
    let program = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <mqueue.h>
int main(void){
  int mode=0; if(scanf("%d",&mode)!=1) return 9;
  if(mode==1){
    symlink("/etc/shadow","shadow");
    mkfifo("fifo",0666);
    int f=open("/tmp/left",O_CREAT|O_WRONLY,0644); if(f>=0) close(f);
    f=open("/dev/shm/left",O_CREAT|O_WRONLY,0644); if(f>=0) close(f);
    int shm=shmget(0x5eed,4096,IPC_CREAT|0600); if(shm>=0){ char*p=shmat(shm,0,0); p[0]=42; shmdt(p); }
    int q=msgget(0x5eee,IPC_CREAT|0600); struct { long t; char c[8]; } m={1,"left"};
    if(q>=0) msgsnd(q,&m,sizeof m.c,0);
    int sem=semget(0x5eef,1,IPC_CREAT|0600); if(sem>=0) semctl(sem,0,SETVAL,7);
    mqd_t mq=mq_open("/left",O_CREAT|O_RDWR,0600,NULL);
    printf("%d ", shm>=0 && q>=0 && sem>=0 && mq!=(mqd_t)-1);
    if(fork()==0){ setsid(); if(fork()==0){ for(;;) sleep(1); } _exit(0); }
    /* Writing outside the run's directory fails. */
    f=open("/box/build/planted",O_CREAT|O_WRONLY,0644);
    printf("%s\n", f<0 ? "denied" : "written");
    return 0;
  }
  printf("%d %d %d %d %d\n", access("shadow",F_OK)==0, access("fifo",F_OK)==0,
         access("/tmp/left",F_OK)==0, access("/dev/shm/left",F_OK)==0,
         access("/box/build/planted",F_OK)==0);
  printf("%d %d %d %d\n", shmget(0x5eed,0,0)>=0, msgget(0x5eee,0)>=0, semget(0x5eef,0,0)>=0,
         mq_open("/left",O_RDONLY)!=(mqd_t)-1);
  /* Reading the shadow file through any path is impossible for the runner user. */
  printf("%d\n", open("/etc/shadow",O_RDONLY)>=0);
  return 0;
}"#;
    let mut c = compiled(&sandbox, program).await;
    let (r, out) = run(&mut c, limits(1000, 65536), "1").await;
    assert_eq!(r.exit, Exit::Exited { code: 0 }, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&out), "1 denied\n");
    let (r, out) = run(&mut c, limits(1000, 65536), "2").await;
    assert_eq!(r.exit, Exit::Exited { code: 0 }, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&out), "0 0 0 0 0\n0 0 0 0\n0\n");
    // The host's /etc/shadow was never touched through the link.
    let shadow = std::fs::symlink_metadata("/etc/shadow").unwrap();
    assert!(shadow.file_type().is_file());
    close_and_check(&docker, c).await;
}

#[tokio::test]
async fn the_program_has_no_network() {
    let (sandbox, docker) = setup().await;
    let program = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
int main(void){
  int s=socket(AF_INET,SOCK_STREAM,0);
  struct sockaddr_in a; memset(&a,0,sizeof a); a.sin_family=AF_INET; a.sin_port=htons(80);
  inet_pton(AF_INET,"127.0.0.1",&a.sin_addr);
  int local = s>=0 && connect(s,(struct sockaddr*)&a,sizeof a)==0;
  int u=socket(AF_INET,SOCK_DGRAM,0);
  a.sin_port=htons(53); inet_pton(AF_INET,"1.1.1.1",&a.sin_addr);
  int out = u>=0 && sendto(u,"x",1,0,(struct sockaddr*)&a,sizeof a)==1;
  printf("%d %d\n", local, out);
  return 0;
}"#;
    let mut c = compiled(&sandbox, program).await;
    let (r, out) = run(&mut c, limits(2000, 65536), "").await;
    assert_eq!(r.exit, Exit::Exited { code: 0 }, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&out), "0 0\n");
    close_and_check(&docker, c).await;
}

#[tokio::test]
async fn a_missing_image_is_a_sandbox_error_not_a_result() {
    let (sandbox, _) = setup().await;
    let err = sandbox
        .open("executioner/no-such-image")
        .await
        .err()
        .expect("opening a missing image fails");
    assert!(
        matches!(err, executioner::sandbox::SandboxError::ImageMissing { .. }),
        "{err}"
    );
}

/// Holds every inotify instance its user may have (128 by default), then sleeps holding them.
const EXHAUST_INOTIFY: &str = r#"#include <stdio.h>
#include <sys/inotify.h>
#include <unistd.h>
int main(void){int n=0;while(inotify_init1(0)>=0)n++;printf("%d %u\n",n,getuid());fflush(stdout);sleep(3);return 0;}"#;

/// A moment later, wants one inotify instance; says who it is.
const WANT_INOTIFY: &str = r#"#include <pwd.h>
#include <stdio.h>
#include <sys/inotify.h>
#include <unistd.h>
int main(void){usleep(1000000);int fd=inotify_init1(0);struct passwd*p=getpwuid(getuid());
printf("%s %u %s\n",fd>=0?"ok":"refused",getuid(),p?p->pw_name:"?");return 0;}"#;

#[tokio::test]
async fn a_box_exhausting_its_user_limits_does_not_reach_another() {
    let (sandbox, docker) = setup().await;
    let mut greedy = compiled(&sandbox, EXHAUST_INOTIFY).await;
    let mut other = compiled(&sandbox, WANT_INOTIFY).await;
    let mut slow = limits(1000, 65536);
    slow.wall_ms = 6000;
    let ((greedy_result, greedy_out), (other_result, other_out)) =
        tokio::join!(run(&mut greedy, slow, ""), run(&mut other, slow, ""));
    let (greedy_out, other_out) = (
        String::from_utf8_lossy(&greedy_out).into_owned(),
        String::from_utf8_lossy(&other_out).into_owned(),
    );
    assert!(greedy_result.exited_normally() && other_result.exited_normally());
    let held: Vec<&str> = greedy_out.split_whitespace().collect();
    let seen: Vec<&str> = other_out.split_whitespace().collect();
    assert!(
        held[0].parse::<u32>().unwrap() >= 8,
        "the greedy box held inotify instances: {greedy_out}"
    );
    assert_eq!(
        seen[0], "ok",
        "the other box lost its inotify to the greedy one: {other_out}"
    );
    assert_ne!(held[1], seen[1], "two boxes at once ran as one uid");
    assert_eq!(seen[2], "runner", "the box's uid has a name: {other_out}");
    close_and_check(&docker, greedy).await;
    close_and_check(&docker, other).await;
}

#[tokio::test]
async fn box_uids_run_out_with_a_clear_error_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SandboxConfig::new(demoter());
    config.uid_dir = dir.path().to_owned();
    config.box_uids = 1;
    let sandbox = Sandbox::connect(config).await.unwrap();
    let docker = bollard::Docker::connect_with_local_defaults().unwrap();
    let image = Registry::builtin()
        .unwrap()
        .resolve("gcc-12")
        .unwrap()
        .image
        .clone();
    let first = sandbox.open(&image).await.expect("the one uid is free");
    let refused = sandbox.open(&image).await;
    let error = refused.err().expect("no second box without a uid");
    assert!(
        error.to_string().contains("box uids") && error.to_string().contains("in use"),
        "{error}"
    );
    close_and_check(&docker, first).await;
    let again = sandbox.open(&image).await.expect("the uid came back");
    close_and_check(&docker, again).await;
}
