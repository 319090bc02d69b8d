//! The wire protocol between the executioner (on the host) and the demoter agent (inside the
//! sandbox container): one JSON object per line in each direction, over the agent's
//! stdin (requests) and stdout (responses). The agent answers every request with exactly one
//! response, in order. Its stderr is free-form diagnostics and never part of the protocol.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Version of this protocol, announced in [`Response::Ready`].
pub const PROTOCOL_VERSION: u32 = 2;

/// A request from the host to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create directory `path` (and missing parents, owned by root) owned by `uid:gid` with `mode`.
    Mkdir {
        path: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Copy file `src` to `dst` (as root, never following a symlink at `dst`), then give `dst`
    /// to `uid:gid` with `mode`.
    Put {
        src: PathBuf,
        dst: PathBuf,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Make `path` and everything below it owned by root and writable by nobody else, so that
    /// later runs can read and execute what is there but not change it. Symlinks are not followed.
    Seal { path: PathBuf },
    /// Read `paths` (files, and the files below directories; symlinks not followed) ahead into
    /// the page cache, as the agent. A file first read by a run is charged to the run's memory
    /// cgroup: a runtime's 60 MB library read from disk would count against the program's memory
    /// limit (and thrash inside it) on the first test only. Read by the agent, it is charged to
    /// the container. A path that does not exist is an error; the pages are best effort.
    Warm { paths: Vec<PathBuf> },
    /// Run one program.
    Run(Box<RunSpec>),
    /// Write directory `src` (a sealed build) as one file `dst` (created, never through a
    /// link), at most `max_bytes` long: the compile cache's entry. Refused: symlinks that lead
    /// out of the tree, FIFOs, sockets, devices, more than `max_bytes`. Since version 2.
    Pack {
        src: PathBuf,
        dst: PathBuf,
        max_bytes: u64,
    },
    /// Restore the file `src` that `Pack` wrote as directory `dst` (absent or empty), every
    /// entry owned by `uid:gid` with its packed mode (never setuid/setgid). Since version 2.
    Unpack {
        src: PathBuf,
        dst: PathBuf,
        uid: u32,
        gid: u32,
    },
}

/// One program run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSpec {
    /// Program and arguments; `argv[0]` is looked up in `PATH` from `env` if it has no `/`.
    pub argv: Vec<String>,
    /// The program's whole environment, as `KEY=VALUE` strings. Nothing else is inherited.
    pub env: Vec<String>,
    /// Working directory of the program.
    pub cwd: PathBuf,
    /// When true, `cwd` must not exist: the agent creates it (owned by `uid:gid`, mode 0700)
    /// before the run and removes it with everything in it afterwards.
    pub fresh_cwd: bool,
    /// File opened (by the agent, as root) as the program's stdin; `None` = `/dev/null`.
    /// It must be a regular file and is not opened through a symlink.
    pub stdin: Option<PathBuf>,
    /// File the agent creates (as root, truncating) and fills with the program's stdout.
    /// A symlink, FIFO or file with other hard links at this path is refused (`Failed`).
    pub stdout: PathBuf,
    /// File the agent creates (as root, truncating) and fills with the program's stderr
    /// (at most `limits.stderr_bytes`; the rest is dropped without being copied, the pipe
    /// drained at most once a millisecond).
    pub stderr: PathBuf,
    /// Unprivileged identity the program runs as (never 0).
    pub uid: u32,
    pub gid: u32,
    pub limits: Limits,
    /// With `fresh_cwd`: the stdin file is also copied into the working directory under this
    /// plain name, owned by the program (a problem's `input-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_name: Option<String>,
    /// With `fresh_cwd`: after the run, this plain-named file of the working directory (a
    /// regular file, never followed through a link) replaces what `stdout` captured; absent,
    /// `stdout` is left empty (a problem's `output-file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_name: Option<String>,
    /// An interactive run: stdin and stdout are FIFOs shared with a run on the other side (the
    /// problem's interactor, in another container), instead of `stdin` and the stdout pump
    /// (`stdout` is left empty, no output limit: the other side reads what it wants).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipe: Option<Pipe>,
    /// The program's stderr is its stdout (`2>&1`): both go to `stdout`, interleaved as
    /// written, under the output limit; `stderr` is left empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stderr_to_stdout: bool,
    /// Pins the program, with every thread and process it makes, to this CPU (the host gives
    /// each run in progress a CPU of its own, for times that repeat). The program cannot widen
    /// it: `sched_setaffinity` fails with `EPERM`. A CPU the container may not use leaves the
    /// run unpinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
}

/// The FIFOs of an interactive run, opened by the agent as root before the program starts.
/// Opening a FIFO waits for its other end, so the two sides open in opposite orders: the
/// side with `read_first` opens `read` then `write`, the other `write` then `read`. A side
/// whose peer never opens gives up after a few seconds (`Failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipe {
    /// FIFO the program reads as its stdin.
    pub read: PathBuf,
    /// FIFO the program writes as its stdout.
    pub write: PathBuf,
    pub read_first: bool,
    /// The program starts with SIGPIPE ignored, so a write to a side that has gone fails with
    /// EPIPE instead of killing it (for interactors, which must then decide, not crash).
    #[serde(default)]
    pub ignore_sigpipe: bool,
}

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time (user + system, all processes of the run), milliseconds.
    pub cpu_ms: u64,
    /// Wall-clock time from start to the end of the last process, milliseconds.
    pub wall_ms: u64,
    /// Memory of all processes of the run (cgroup, swap excluded), KB (1 KB = 1024 bytes).
    pub memory_kb: u64,
    /// Processes and threads alive at once.
    pub pids: u64,
    /// Bytes the program may write to stdout (and size of any file it writes).
    pub output_bytes: u64,
    /// Bytes of stderr kept; more is discarded without failing the run.
    pub stderr_bytes: u64,
    /// Ends the run (reported as `wall`) once its CPU time grew by less than 1% of this many
    /// milliseconds over the last this many milliseconds of wall time: a program blocked for
    /// good (a compiler reading its own output pipe) does not hold its slot until `wall_ms`.
    /// `None`: no such limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
}

/// A response from the agent to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// Sent once when the agent has started and is ready for requests.
    Ready { version: u32 },
    /// `Mkdir`, `Put`, `Seal`, `Warm`, `Pack` or `Unpack` succeeded.
    Ok,
    /// `Run` finished; the program's outcome is in the result (whatever it was).
    Ran(RunResult),
    /// The request could not be carried out: a failure of the sandbox, never of the program.
    Failed { error: String },
}

/// How a run ended and what it used. Derived only from the kernel (wait status, cgroup counters,
/// clocks), never from anything the program printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub exit: Exit,
    /// CPU time of all processes of the run (cgroup accounting), milliseconds.
    pub cpu_ms: u64,
    /// Wall-clock time, milliseconds.
    pub wall_ms: u64,
    /// Peak memory of the run's cgroup, KB.
    pub memory_kb: u64,
    /// The limit that ended (or was exceeded by) the run, if any. When several were, the first
    /// of memory, time, wall, output.
    pub limit: Option<LimitHit>,
    /// Bytes the program wrote to stdout (counted up to the point it was stopped).
    pub stdout_bytes: u64,
    /// Interactive runs: when the main process ended, on the kernel's monotonic clock (the
    /// same in every container of the host), nanoseconds. Tells which side ended first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ns: Option<u64>,
}

/// How the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Exit {
    Exited { code: i32 },
    Signaled { signal: i32 },
}

/// Which limit was hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    Memory,
    Time,
    Wall,
    Output,
}

impl RunResult {
    /// True when the program ended by itself with status 0 and within every limit.
    pub fn exited_normally(&self) -> bool {
        self.limit.is_none() && self.exit == Exit::Exited { code: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_stable() {
        let req = Request::Seal {
            path: "/box/build".into(),
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"op":"seal","path":"/box/build"}"#
        );
        let req = Request::Warm {
            paths: vec!["/usr/lib/x.so".into()],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"op":"warm","paths":["/usr/lib/x.so"]}"#
        );
        let req = Request::Pack {
            src: "/box/build".into(),
            dst: "/judge/io/build.pack".into(),
            max_bytes: 10,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"op":"pack","src":"/box/build","dst":"/judge/io/build.pack","max_bytes":10}"#
        );
        let req = Request::Unpack {
            src: "/judge/io/build.pack".into(),
            dst: "/box/build".into(),
            uid: 60000,
            gid: 60000,
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"op":"unpack","src":"/judge/io/build.pack","dst":"/box/build","uid":60000,"gid":60000}"#
        );
        let res = Response::Ran(RunResult {
            exit: Exit::Signaled { signal: 9 },
            cpu_ms: 501,
            wall_ms: 510,
            memory_kb: 1024,
            limit: Some(LimitHit::Time),
            stdout_bytes: 0,
            ended_ns: None,
        });
        let text = serde_json::to_string(&res).unwrap();
        assert_eq!(
            text,
            r#"{"status":"ran","exit":{"kind":"signaled","signal":9},"cpu_ms":501,"wall_ms":510,"memory_kb":1024,"limit":"time","stdout_bytes":0}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&text).unwrap(), res);
    }

    #[test]
    fn exited_normally_requires_code_zero_and_no_limit() {
        let mut r = RunResult {
            exit: Exit::Exited { code: 0 },
            cpu_ms: 1,
            wall_ms: 1,
            memory_kb: 1,
            limit: None,
            stdout_bytes: 0,
            ended_ns: None,
        };
        assert!(r.exited_normally());
        r.limit = Some(LimitHit::Time);
        assert!(!r.exited_normally());
        r.limit = None;
        r.exit = Exit::Exited { code: 1 };
        assert!(!r.exited_normally());
    }
}
