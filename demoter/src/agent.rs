//! The agent: answers protocol requests, one JSON line in, one JSON line out.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::cgroup::{self, BoxCgroup, RunGuard};
use crate::error::Error;
use crate::fsops;
use crate::pack;
use crate::protocol::{Request, Response, RunResult, RunSpec, PROTOCOL_VERSION};
use crate::run::{self, Cleanup, RunEnv};
use crate::sys;

/// Serves requests for one box.
///
/// A run's result is sent as soon as it is final; the agent cleans up after the run and makes
/// the next run's cgroup while the host reads the result ([`Agent::catch_up`]), so neither is
/// on a test's path. Nothing else happens in the box before that clean-up is finished, and once
/// a clean-up fails the box is no longer clean: every later request is refused.
pub struct Agent {
    cgroup: Box<dyn BoxCgroup>,
    wipe: Vec<PathBuf>,
    ncpus: u64,
    runs: u64,
    /// The last run's clean-up, not yet done.
    pending: Option<Cleanup>,
    /// The next run's cgroup, made ahead (no limits yet, no process in it).
    next: Option<RunGuard>,
    /// Why the box is unusable: a clean-up that failed.
    unclean: Option<String>,
}

impl Agent {
    /// An agent for the box cgroup in `cgroup_dir`, emptying the `wipe` directories after every
    /// run. Run cgroups a previous agent left behind are removed.
    pub fn new(cgroup_dir: &Path, wipe: Vec<PathBuf>) -> Result<Agent, Error> {
        let cgroup = cgroup::detect(cgroup_dir)?;
        cgroup::remove_stale_runs(cgroup.as_ref());
        Ok(Agent::with_cgroup(cgroup, wipe))
    }

    pub fn with_cgroup(cgroup: Box<dyn BoxCgroup>, wipe: Vec<PathBuf>) -> Agent {
        Agent {
            cgroup,
            wipe,
            ncpus: sys::cpu_count(),
            runs: 0,
            pending: None,
            next: None,
            unclean: None,
        }
    }

    /// Performs one run. Reaps every ended child of the process afterwards (orphans of the run
    /// re-parent to the demoter), so this belongs in the demoter process only. The run's
    /// clean-up is left for [`Agent::catch_up`] (or the next request).
    pub fn run(&mut self, spec: &RunSpec) -> Result<RunResult, Error> {
        self.settle()?;
        self.runs += 1;
        let name = cgroup::run_name(self.runs);
        let (outcome, cleanup) = run::run_deferred(
            spec,
            &RunEnv {
                cgroup: self.cgroup.as_ref(),
                name: &name,
                wipe: &self.wipe,
                ncpus: self.ncpus,
            },
            &mut self.next,
        );
        self.pending = Some(cleanup);
        outcome
    }

    /// The work a run leaves, done while the host reads its result: the clean-up after it,
    /// then the next run's cgroup. A failed clean-up makes the box unusable.
    pub fn catch_up(&mut self) {
        if self.pending.is_none() {
            return;
        }
        if self.settle().is_err() {
            return;
        }
        if self.next.is_none() {
            match self.cgroup.make_run(&cgroup::run_name(self.runs + 1)) {
                Ok(cg) => self.next = Some(RunGuard::new(cg)),
                // Made again at the run, where a failure is reported.
                Err(e) => eprintln!("demoter: making the next run's cgroup ahead: {e}"),
            }
        }
    }

    /// Finishes the last run's clean-up if it is pending; fails if a clean-up ever failed.
    fn settle(&mut self) -> Result<(), Error> {
        if let Some(cleanup) = self.pending.take() {
            if let Err(e) = cleanup.finish(&self.wipe) {
                eprintln!("demoter: cleaning up after run {}: {e}", self.runs);
                self.unclean = Some(e.to_string());
                // The cgroup made ahead is not needed any more.
                self.next = None;
            }
        }
        match &self.unclean {
            Some(reason) => Err(Error::Unclean {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Carries out one request.
    pub fn handle(&mut self, request: &Request) -> Response {
        if let Err(e) = self.settle() {
            return failed(e);
        }
        let done = match request {
            Request::Mkdir {
                path,
                uid,
                gid,
                mode,
            } => fsops::mkdir(path, *uid, *gid, *mode).map(|()| Response::Ok),
            Request::Put {
                src,
                dst,
                uid,
                gid,
                mode,
            } => fsops::put(src, dst, *uid, *gid, *mode).map(|()| Response::Ok),
            Request::Seal { path } => fsops::seal(path).map(|()| Response::Ok),
            Request::Warm { paths } => fsops::warm(paths).map(|()| Response::Ok),
            Request::Run(spec) => self.run(spec).map(Response::Ran),
            Request::Pack {
                src,
                dst,
                max_bytes,
            } => pack::pack(src, dst, *max_bytes).map(|()| Response::Ok),
            Request::Unpack { src, dst, uid, gid } => {
                pack::unpack(src, dst, *uid, *gid).map(|()| Response::Ok)
            }
        };
        done.unwrap_or_else(failed)
    }

    /// Parses and carries out one request line; a malformed line is answered with `Failed`.
    pub fn handle_line(&mut self, line: &str) -> Response {
        match serde_json::from_str::<Request>(line) {
            Ok(request) => self.handle(&request),
            Err(source) => failed(Error::BadRequest { source }),
        }
    }

    /// Announces readiness, then answers every line of `input` until EOF.
    pub fn serve(&mut self, mut input: impl BufRead, mut output: impl Write) -> Result<(), Error> {
        respond(
            &Response::Ready {
                version: PROTOCOL_VERSION,
            },
            &mut output,
        )?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = input
                .read_line(&mut line)
                .map_err(|source| Error::Input { source })?;
            if n == 0 {
                return Ok(());
            }
            let response = self.handle_line(&line);
            respond(&response, &mut output)?;
            self.catch_up();
        }
    }
}

impl Drop for Agent {
    /// Leaves the box as a run would: the last run cleaned up after, the cgroup made ahead
    /// removed (its guard's drop).
    fn drop(&mut self) {
        let _ = self.settle();
    }
}

impl Agent {
    /// Serves one connection on a Unix socket instead of stdin/stdout: a local round trip
    /// without the engine's attach stream in between. Makes the socket at `path` (root-only,
    /// in a directory no program can enter), announces readiness on `announce`, accepts one
    /// connection, from root only, removes the socket so nothing else can ever connect, then
    /// serves that connection until EOF (announcing readiness on it too).
    pub fn serve_socket(&mut self, path: &Path, mut announce: impl Write) -> Result<(), Error> {
        let socket_error = |source| Error::Socket {
            path: path.to_owned(),
            source,
        };
        let listener = UnixListener::bind(path).map_err(socket_error)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(socket_error)?;
        respond(
            &Response::Ready {
                version: PROTOCOL_VERSION,
            },
            &mut announce,
        )?;
        let (stream, _) = listener.accept().map_err(socket_error)?;
        std::fs::remove_file(path).map_err(socket_error)?;
        drop(listener);
        match peer_uid(&stream) {
            Ok(0) => {}
            Ok(uid) => {
                return Err(socket_error(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("connected by uid {uid}, not root"),
                )))
            }
            Err(source) => return Err(socket_error(source)),
        }
        let input = BufReader::new(stream.try_clone().map_err(socket_error)?);
        self.serve(input, stream)
    }
}

/// The uid of the process at the other end of a Unix socket (`SO_PEERCRED`).
fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid for writes of the sizes given.
    let got = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if got == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn failed(error: Error) -> Response {
    eprintln!("demoter: {error}");
    Response::Failed {
        error: error.to_string(),
    }
}

/// Writes one response line and flushes it.
pub fn respond(response: &Response, output: &mut impl Write) -> Result<(), Error> {
    let mut line = serde_json::to_vec(response).map_err(|e| Error::Output { source: e.into() })?;
    line.push(b'\n');
    output
        .write_all(&line)
        .and_then(|()| output.flush())
        .map_err(|source| Error::Output { source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn agent(tmp: &Path) -> Agent {
        fs::write(tmp.join("cgroup.controllers"), "").unwrap();
        fs::write(tmp.join("cgroup.subtree_control"), "memory pids cpu").unwrap();
        Agent::new(tmp, vec![]).unwrap()
    }

    #[test]
    fn serves_one_connection_on_a_socket_nothing_else_can_reach() {
        use std::io::{BufRead, BufReader, Write};
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.sock");
        let server = {
            let (path, dir) = (path.clone(), tmp.path().to_owned());
            std::thread::spawn(move || {
                let mut announce = Vec::new();
                let served = agent(&dir).serve_socket(&path, &mut announce);
                (served, announce)
            })
        };
        // The socket exists (root-only) once readiness is announced; poll for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "no socket");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stream = UnixStream::connect(&path).unwrap();
        let mut lines = BufReader::new(stream.try_clone().unwrap()).lines();
        let ready: Response = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert!(matches!(ready, Response::Ready { .. }), "{ready:?}");
        // Only one connection: the socket is gone once taken.
        assert!(!path.exists());
        assert!(UnixStream::connect(&path).is_err());
        let dir = tmp.path().join("made");
        let request = Request::Mkdir {
            path: dir.clone(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            mode: 0o755,
        };
        let mut writer = stream;
        writeln!(writer, "{}", serde_json::to_string(&request).unwrap()).unwrap();
        let answer: Response = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(answer, Response::Ok);
        assert!(dir.is_dir());
        drop(writer);
        drop(lines);
        let (served, announce) = server.join().unwrap();
        served.unwrap();
        let first: Response = serde_json::from_slice(announce.trim_ascii_end()).unwrap();
        assert!(matches!(first, Response::Ready { .. }), "{first:?}");
    }

    #[test]
    fn serves_one_response_per_line_and_survives_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("made");
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let input = format!(
            "{}\nnot json\n{{\"op\":\"launch\"}}\n{}\n",
            serde_json::to_string(&Request::Mkdir {
                path: dir.clone(),
                uid,
                gid,
                mode: 0o755
            })
            .unwrap(),
            serde_json::to_string(&Request::Seal {
                path: tmp.path().join("missing"),
            })
            .unwrap(),
        );
        let mut out = Vec::new();
        agent(tmp.path()).serve(input.as_bytes(), &mut out).unwrap();
        let lines: Vec<Response> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            Response::Ready {
                version: PROTOCOL_VERSION
            }
        );
        assert_eq!(lines[1], Response::Ok);
        assert!(dir.is_dir());
        for (line, needle) in [(&lines[2], "malformed"), (&lines[3], "malformed")] {
            match line {
                Response::Failed { error } => assert!(error.contains(needle), "{error}"),
                other => panic!("expected failed, got {other:?}"),
            }
        }
        match &lines[4] {
            Response::Failed { error } => assert!(error.contains("missing"), "{error}"),
            other => panic!("expected failed, got {other:?}"),
        }
    }

    #[test]
    fn a_run_as_root_is_refused_before_anything_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let mut agent = agent(tmp.path());
        let spec = RunSpec {
            argv: vec!["/bin/true".into()],
            env: vec![],
            cwd: tmp.path().join("cwd"),
            fresh_cwd: true,
            stdin: None,
            stdout: tmp.path().join("out"),
            stderr: tmp.path().join("err"),
            uid: 0,
            gid: 0,
            limits: crate::protocol::Limits {
                cpu_ms: 100,
                wall_ms: 100,
                memory_kb: 1024,
                pids: 1,
                output_bytes: 1,
                stderr_bytes: 1,
                idle_ms: None,
            },
            input_name: None,
            output_name: None,
            pipe: None,
            stderr_to_stdout: false,
            cpu: None,
        };
        match agent.handle(&Request::Run(Box::new(spec))) {
            Response::Failed { error } => assert!(error.contains("root"), "{error}"),
            other => panic!("expected failed, got {other:?}"),
        }
        assert!(!tmp.path().join("cwd").exists());
        assert!(cgroup::list_runs(tmp.path()).unwrap().is_empty());
    }
}
