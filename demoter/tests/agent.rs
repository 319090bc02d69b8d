//! `demoter agent` over stdin/stdout against real cgroups, v1 or v2 (needs root).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use common::Fixture;
use demoter::protocol::{Exit, Request, Response};

/// A running agent and the two ends of its protocol.
struct AgentProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl AgentProcess {
    fn start(fx: &Fixture) -> AgentProcess {
        AgentProcess::start_with(fx, &[])
    }

    fn start_with(fx: &Fixture, args: &[&str]) -> AgentProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_demoter"))
            .arg("agent")
            .arg("--cgroup")
            .arg(&fx.cgroup_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start agent");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut agent = AgentProcess {
            child,
            stdin,
            stdout,
        };
        assert_eq!(agent.receive_line(), r#"{"status":"ready","version":2}"#);
        agent
    }

    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn receive_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "incomplete line {line:?}");
        line.trim_end().to_string()
    }

    fn request(&mut self, request: &Request) -> Response {
        self.send_line(&serde_json::to_string(request).unwrap());
        serde_json::from_str(&self.receive_line()).unwrap()
    }

    /// Closes stdin and returns the agent's exit code.
    fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        assert_eq!(rest, "", "nothing after the last response");
        self.child.wait().unwrap().code()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // Only when a test failed half-way: the child is ours, kill it by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_requests_in_order_and_answers_garbage_with_failed() {
    let fx = Fixture::new();
    let mut agent = AgentProcess::start(&fx);
    let uid = fx.uid;

    // Mkdir + Put + Seal: a root-owned, read-only directory with an input file.
    let data = fx.path("box/data");
    assert_eq!(
        agent.request(&Request::Mkdir {
            path: data.clone(),
            uid,
            gid: uid,
            mode: 0o777,
        }),
        Response::Ok
    );
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), uid);
    std::fs::write(fx.path("input-src"), "1 2 3\n").unwrap();
    assert_eq!(
        agent.request(&Request::Put {
            src: fx.path("input-src"),
            dst: data.join("input"),
            uid,
            gid: uid,
            mode: 0o666,
        }),
        Response::Ok
    );
    assert_eq!(
        agent.request(&Request::Seal { path: data.clone() }),
        Response::Ok
    );
    let sealed = std::fs::metadata(data.join("input")).unwrap();
    assert_eq!((sealed.uid(), sealed.mode() & 0o777), (0, 0o644));

    // Several runs in a row, each in a fresh cgroup and cwd.
    for round in 0..3 {
        let mut spec = fx.spec(&["sh", "-c", "cat; echo round $0 > /dev/stderr; exit $0"]);
        spec.argv.push(round.to_string());
        spec.stdin = Some(data.join("input"));
        match agent.request(&Request::Run(Box::new(spec))) {
            Response::Ran(r) => {
                assert_eq!(r.exit, Exit::Exited { code: round });
                assert_eq!(r.limit, None);
            }
            other => panic!("round {round}: {other:?}"),
        }
        assert_eq!(fx.read("box/stdout"), "1 2 3\n");
        assert_eq!(fx.read("box/stderr"), format!("round {round}\n"));
        // The next request is read once the agent has cleaned up after the run and made the
        // next run's cgroup ahead: then only that cgroup exists, with nothing in it.
        assert_eq!(
            agent.request(&Request::Seal { path: data.clone() }),
            Response::Ok
        );
        let runs = fx.run_cgroups();
        let next = format!("-{}", round + 2);
        assert!(!runs.is_empty(), "no cgroup made ahead");
        for run in &runs {
            assert!(run.to_string_lossy().ends_with(&next), "{runs:?}");
            assert_eq!(
                std::fs::read_to_string(run.join("cgroup.procs")).unwrap(),
                ""
            );
        }
    }

    // The sealed directory cannot be written by a run.
    let script = format!("echo x > {}", data.join("input").display());
    match agent.request(&Request::Run(Box::new(fx.spec(&["sh", "-c", &script])))) {
        Response::Ran(r) => assert_ne!(r.exit, Exit::Exited { code: 0 }),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(data.join("input")).unwrap(),
        "1 2 3\n"
    );

    // Garbage gets exactly one `failed` line and the agent carries on.
    agent.send_line("this is not json");
    let line = agent.receive_line();
    match serde_json::from_str::<Response>(&line).unwrap() {
        Response::Failed { error } => assert!(error.contains("malformed"), "{error}"),
        other => panic!("{other:?}"),
    }
    agent.send_line(r#"{"op":"run","argv":["true"]}"#);
    assert!(matches!(
        serde_json::from_str::<Response>(&agent.receive_line()).unwrap(),
        Response::Failed { .. }
    ));
    // A failing request is `failed` too, and the next one still works.
    assert!(matches!(
        agent.request(&Request::Seal {
            path: fx.path("box/missing")
        }),
        Response::Failed { .. }
    ));
    assert!(matches!(
        agent.request(&Request::Run(Box::new(fx.spec(&["true"])))),
        Response::Ran(_)
    ));

    assert_eq!(agent.finish(), Some(0));
    fx.assert_clean();
}

#[test]
fn a_box_whose_clean_up_failed_runs_nothing_more() {
    let fx = Fixture::new();
    let wipe = fx.path("box/wiped");
    std::fs::create_dir(&wipe).unwrap();
    let mut agent = AgentProcess::start_with(&fx, &["--wipe", wipe.to_str().unwrap()]);
    let ran = |response: Response| matches!(response, Response::Ran(r) if r.exit == Exit::Exited { code: 0 });
    assert!(ran(
        agent.request(&Request::Run(Box::new(fx.spec(&["true"]))))
    ));
    // Answered once the first run's clean-up is done.
    assert_eq!(
        agent.request(&Request::Seal {
            path: fx.path("box")
        }),
        Response::Ok
    );
    // What the agent empties after every run is no longer a directory: the next run's result
    // is final and sent, its clean-up fails after it.
    std::fs::remove_dir(&wipe).unwrap();
    std::fs::write(&wipe, "not a directory").unwrap();
    assert!(ran(
        agent.request(&Request::Run(Box::new(fx.spec(&["true"]))))
    ));
    for request in [
        Request::Run(Box::new(fx.spec(&["true"]))),
        Request::Seal {
            path: fx.path("box"),
        },
    ] {
        match agent.request(&request) {
            Response::Failed { error } => assert!(error.contains("not clean"), "{error}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(agent.finish(), Some(0));
    fx.assert_clean();
}

#[test]
fn a_new_agent_kills_and_removes_runs_of_a_dead_agent() {
    let fx = Fixture::new();
    // A run cgroup as a crashed agent (a pid above any pid_max) would have left it, with a
    // process still in it.
    let mut straggler = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = straggler.id().to_string();
    for dir in fx.box_cgroups() {
        let run = dir.join("run-2147483632-1");
        std::fs::create_dir(&run).unwrap();
        std::fs::write(run.join("cgroup.procs"), &pid).unwrap();
    }
    assert_eq!(fx.run_cgroups().len(), fx.box_cgroups().len());

    let agent = AgentProcess::start(&fx);
    // Ready is only announced after the clean-up.
    assert!(fx.run_cgroups().is_empty());
    let status = straggler.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(agent.finish(), Some(0));
    fx.assert_clean();
}

/// Median per-run overhead of the agent (`/bin/true`, 100 runs). A measurement, not a test:
/// `cargo test -p demoter --test agent -- --ignored --nocapture`.
#[test]
#[ignore]
fn measure_agent_overhead() {
    let fx = Fixture::new();
    let mut agent = AgentProcess::start(&fx);
    let mut spec = fx.spec(&["/bin/true"]);
    spec.fresh_cwd = false;
    spec.cwd = "/".into();
    let mut times = Vec::new();
    let mut walls = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        match agent.request(&Request::Run(Box::new(spec.clone()))) {
            Response::Ran(r) => walls.push(r.wall_ms),
            other => panic!("{other:?}"),
        }
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    walls.sort();
    println!(
        "agent round trip for /bin/true: median {:.2} ms, p90 {:.2} ms, min {:.2} ms; \
         program wall median {} ms",
        times[50], times[90], times[0], walls[50]
    );
    assert_eq!(agent.finish(), Some(0));
    fx.assert_clean();
}
