//! A uid per box. Programs judged at the same time run as different uids, so per-user kernel
//! limits (inotify instances and watches, POSIX message queue bytes, processes counted per
//! user) and the demoter's clean-up of what "the program's user" left (System V IPC) never
//! reach across boxes. A uid is lent by an exclusive `flock` on a file named after it in a
//! shared directory, so boxes of other worker processes on the same host never get it either,
//! and a process that dies gives its uids back with its file descriptors.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::SandboxError;

/// The uids boxes are lent: `first .. first + count`, locked in `dir`.
#[derive(Debug)]
pub struct Uids {
    dir: PathBuf,
    first: u32,
    count: u32,
    /// Where the next search starts, so uids are reused as late as possible.
    next: AtomicU32,
}

/// One box's uid, held until dropped (after the box's processes are gone).
#[derive(Debug)]
pub struct BoxUid {
    uid: u32,
    _lock: Flock<File>,
}

impl BoxUid {
    pub fn uid(&self) -> u32 {
        self.uid
    }
}

impl Uids {
    /// The pool `first .. first + count` (at least one uid), locked in `dir` (made, root-only,
    /// if missing).
    pub fn new(dir: &Path, first: u32, count: u32) -> Result<Self, SandboxError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SandboxError::Io {
                path: dir.to_owned(),
                source,
            })?;
        Ok(Uids {
            dir: dir.to_owned(),
            first,
            count: count.max(1),
            next: AtomicU32::new(0),
        })
    }

    /// A uid no other box on this host holds; an error when every one is taken.
    pub fn take(&self) -> Result<BoxUid, SandboxError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for step in 0..self.count {
            let uid = self.first + (start.wrapping_add(step) % self.count);
            let path = self.dir.join(uid.to_string());
            match try_lend(&path) {
                Ok(Some(lock)) => {
                    self.next
                        .store(start.wrapping_add(step + 1), Ordering::Relaxed);
                    return Ok(BoxUid { uid, _lock: lock });
                }
                Ok(None) => continue,
                Err(source) => return Err(SandboxError::Io { path, source }),
            }
        }
        Err(SandboxError::NoUid {
            first: self.first,
            count: self.count,
        })
    }
}

/// An exclusive `flock` on the file at `path` (made 0600 if missing), or `None` when another
/// holder, in this process or another, has it: how uids and CPUs are lent host-wide.
pub(super) fn try_lend(path: &Path) -> std::io::Result<Option<Flock<File>>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_get_different_uids_across_pools_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        // Two pools over one directory: two worker processes on one host.
        let (a, b) = (
            Uids::new(dir.path(), 70000, 3).unwrap(),
            Uids::new(dir.path(), 70000, 3).unwrap(),
        );
        let first = a.take().unwrap();
        let second = b.take().unwrap();
        let third = a.take().unwrap();
        let mut held = [first.uid(), second.uid(), third.uid()];
        held.sort();
        assert_eq!(held, [70000, 70001, 70002]);
        assert!(matches!(
            b.take(),
            Err(SandboxError::NoUid { count: 3, .. })
        ));
        let freed = second.uid();
        drop(second);
        assert_eq!(a.take().unwrap().uid(), freed);
    }
}
