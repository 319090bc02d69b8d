//! The one error type of the demoter. Every variant carries what it concerns (a path, a pid, a
//! stage), so the `Failed { error }` line the host receives says where the sandbox broke.

use std::io;
use std::path::{Path, PathBuf};

/// A failure of the demoter or its environment, never of the program it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is wrong.
    #[error("usage: {0}")]
    Usage(String),

    /// A request line (or the run spec argument) is not valid JSON for the protocol.
    #[error("malformed request: {source}")]
    BadRequest {
        #[source]
        source: serde_json::Error,
    },

    /// The run spec is well-formed JSON but cannot be honoured (uid 0, empty argv, zero limit...).
    #[error("invalid run spec: {0}")]
    InvalidSpec(String),

    /// The `--cgroup` directory is neither layout the demoter knows.
    #[error(
        "{}: neither a cgroup v1 box (memory/cgroup.procs) nor a cgroup v2 one (cgroup.controllers)",
        path.display()
    )]
    NoCgroup { path: PathBuf },

    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A step of a walk over a directory tree failed (the tree may be too deep for a path, so
    /// the entry is named by its depth below the root).
    #[error("{op} {name:?}, {depth} levels below {}: {source}", root.display())]
    Walk {
        op: &'static str,
        root: PathBuf,
        depth: usize,
        name: String,
        #[source]
        source: io::Error,
    },

    /// A cgroup file did not hold what the kernel documents.
    #[error("{}: cannot parse {what} from {text:?}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        text: String,
    },

    /// A system call that concerns no path failed.
    #[error("{op}: {source}")]
    Sys {
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// The forked child could not become the program (join cgroup, drop privileges, chdir...).
    #[error("setting up the program failed at {stage}: {source}")]
    ChildSetup {
        stage: &'static str,
        #[source]
        source: io::Error,
    },

    /// The program's seccomp filter cannot be built: the demoter runs on an architecture it
    /// has no audit value for.
    #[error("no seccomp filter for the {arch} architecture")]
    SeccompFilter { arch: &'static str },

    /// A run's clean-up failed (a process that would not die, a directory that would not
    /// empty): the box may hold what that run left, so it runs nothing more.
    #[error("the box is not clean after an earlier run ({reason}); it runs nothing more")]
    Unclean { reason: String },

    /// Something exists where it must not, or is not what it must be.
    #[error("{}: refusing: {reason}", path.display())]
    Refused { path: PathBuf, reason: &'static str },

    /// Processes survived SIGKILL for too long (stuck in the kernel).
    #[error("{}: processes still present after {waited_ms} ms of SIGKILL", path.display())]
    CgroupNotEmpty { path: PathBuf, waited_ms: u64 },

    /// The main process did not die after SIGKILL.
    #[error("main process {pid} did not exit within {waited_ms} ms of SIGKILL")]
    Unkillable { pid: i32, waited_ms: u64 },

    /// Reading requests from stdin failed.
    #[error("reading requests: {source}")]
    Input {
        #[source]
        source: io::Error,
    },

    /// The agent's socket could not be made, accepted on, or was reached by someone else.
    #[error("agent socket {}: {source}", path.display())]
    Socket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Writing a response to stdout failed.
    #[error("writing a response: {source}")]
    Output {
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True when the error is the kernel's EBUSY (e.g. rmdir of a cgroup that still has tasks).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }

    /// True when the error is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The last OS error of a system call that concerns no path.
    pub(crate) fn last_os(op: &'static str) -> Error {
        Error::Sys {
            op,
            source: io::Error::last_os_error(),
        }
    }
}

/// Attaches the operation and path to an I/O result.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: &Path) -> Result<T, Error> {
        self.map_err(|source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Keeps the first error of a sequence of clean-up steps that must all be attempted.
pub(crate) fn keep_first(first: &mut Result<(), Error>, next: Result<(), Error>) {
    if let Err(e) = next {
        if first.is_ok() {
            *first = Err(e);
        } else {
            eprintln!("demoter: also failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_name_the_operation_and_path() {
        let err = std::fs::read("/nonexistent/demoter-test")
            .at("read", Path::new("/nonexistent/demoter-test"))
            .unwrap_err();
        assert!(err.is_not_found());
        let text = err.to_string();
        assert!(
            text.starts_with("read /nonexistent/demoter-test: "),
            "{text}"
        );
    }

    #[test]
    fn keep_first_keeps_the_first_error() {
        let mut first = Ok(());
        keep_first(&mut first, Ok(()));
        keep_first(&mut first, Err(Error::Usage("a".into())));
        keep_first(&mut first, Err(Error::Usage("b".into())));
        assert_eq!(first.unwrap_err().to_string(), "usage: a");
    }
}
