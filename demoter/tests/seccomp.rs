//! The program's seccomp filter, through `demoter run` on the host (needs root and cgroup v1):
//! outside Docker nothing else stands in the way, so every call the filter denies would succeed
//! or fail otherwise without it (user namespaces, keyrings, io_uring, perf, network sockets).

mod common;

use common::Fixture;
use demoter::protocol::Exit;

#[test]
fn denied_calls_fail_with_eperm_and_the_program_goes_on() {
    let fx = Fixture::new();
    let probe = fx.compile("probe", include_str!("seccomp/probe.c"));
    let r = fx.run(&fx.spec(&[&probe]));
    let stdout = fx.read("box/stdout");
    assert_eq!(
        r.exit,
        Exit::Exited { code: 0 },
        "{stdout}{}",
        fx.read("box/stderr")
    );
    assert_eq!(r.limit, None);
    // name=errno per call (0: it succeeded).
    assert_eq!(stdout, include_str!("seccomp/probe.out"));
    fx.assert_clean();
}
