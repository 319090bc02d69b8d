//! Walks over directory trees a program built: removing them and sealing them.
//!
//! A program can build a directory chain deeper than the agent's open-file limit, the call
//! stack or `PATH_MAX` allow, so a walk holds one directory open (two while it moves), keeps no
//! path below its root and does not recurse. It goes down with `openat(name, O_NOFOLLOW)`, never
//! follows a symlink and refuses to cross into another file system; it goes back up with
//! `openat("..")` and checks that it arrived in the directory it came from, by device and inode
//! kept for each level (with where to resume reading it: 24 bytes a level).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{Error, IoContext};

/// Bytes of directory entries read at a time.
const ENTRIES_BUF: usize = 32 * 1024;

/// Removes `path` and everything below it; a symlink is removed, not followed. A missing `path`
/// is fine.
pub fn remove(path: &Path) -> Result<(), Error> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        meta => meta.at("stat", path)?,
    };
    if meta.is_dir() {
        remove_contents(path)?;
        std::fs::remove_dir(path).at("remove", path)
    } else {
        std::fs::remove_file(path).at("remove", path)
    }
}

/// Removes everything inside directory `dir`, not `dir` itself.
pub fn remove_contents(dir: &Path) -> Result<(), Error> {
    let mut walk = Walk::open(dir)?;
    loop {
        let Some(entry) = walk.next_entry()? else {
            // Back in the parent, which is read again from its start: what was read is gone,
            // and the directory just emptied is removed when it is met again.
            if walk.ascend(Resume::Start)? {
                continue;
            }
            return Ok(());
        };
        if walk.is_dir(&entry)? {
            match walk.unlink(&entry, libc::AT_REMOVEDIR) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    walk.descend(&entry)?;
                }
                Err(e) => return Err(walk.error("remove directory", &entry, e)),
            }
        } else {
            walk.unlink(&entry, 0)
                .map_err(|e| walk.error("remove", &entry, e))?;
        }
    }
}

/// Makes `path` and everything below it owned by root, without group/other write permission and
/// without setuid/setgid bits. Symlinks are re-owned but neither followed nor descended into.
pub fn seal(path: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(path).at("stat", path)?;
    std::os::unix::fs::lchown(path, Some(0), Some(0)).at("chown", path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = std::os::unix::fs::MetadataExt::mode(&meta);
    std::fs::set_permissions(
        path,
        std::os::unix::fs::PermissionsExt::from_mode(sealed_mode(mode)),
    )
    .at("chmod", path)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mut walk = Walk::open(path)?;
    loop {
        let Some(entry) = walk.next_entry()? else {
            if walk.ascend(Resume::Saved)? {
                continue;
            }
            return Ok(());
        };
        let stat = walk
            .stat(&entry)
            .map_err(|e| walk.error("stat", &entry, e))?;
        // SAFETY: a descriptor we own and a NUL-terminated name; no memory is written.
        let rc = unsafe {
            libc::fchownat(
                walk.dir.as_raw_fd(),
                entry.name.as_ptr(),
                0,
                0,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(rc).map_err(|e| walk.error("chown", &entry, e))?;
        let kind = stat.st_mode & libc::S_IFMT;
        if kind == libc::S_IFLNK {
            continue;
        }
        // Not a symlink (just seen, and no process of the program is left to swap it), so
        // following is safe; fchmodat cannot refuse to follow on every kernel.
        // SAFETY: as above.
        let rc = unsafe {
            libc::fchmodat(
                walk.dir.as_raw_fd(),
                entry.name.as_ptr(),
                sealed_mode(stat.st_mode),
                0,
            )
        };
        check(rc).map_err(|e| walk.error("chmod", &entry, e))?;
        if kind == libc::S_IFDIR {
            walk.descend(&entry)?;
        }
    }
}

/// The mode `seal` gives: no write for group and others, no setuid/setgid.
fn sealed_mode(mode: u32) -> u32 {
    mode & 0o7777 & !0o022 & !0o6000
}

/// One entry of the directory being read.
struct Entry {
    name: CString,
    /// `d_type` of the entry (`DT_UNKNOWN` on file systems that do not fill it in).
    kind: u8,
    /// Where reading the directory continues after this entry (`d_off`).
    next: i64,
}

/// A device and inode: which directory a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Id {
    dev: u64,
    ino: u64,
}

/// A directory above the current one.
struct Level {
    id: Id,
    /// Where reading it resumes when the walk comes back.
    resume: i64,
}

/// Where reading a directory resumes when the walk comes back up to it.
#[derive(Clone, Copy)]
enum Resume {
    /// From its first entry (removal: what was read is gone).
    Start,
    /// After the entry the walk went down into.
    Saved,
}

/// The state of a walk: the open directory, the levels above it, and a buffer of entries.
struct Walk<'a> {
    root: &'a Path,
    /// The device of the root: the walk never leaves it.
    dev: u64,
    dir: OwnedFd,
    id: Id,
    above: Vec<Level>,
    buf: Vec<u8>,
    /// Unread bytes of `buf` are `pos..len`.
    pos: usize,
    len: usize,
}

impl<'a> Walk<'a> {
    fn open(root: &'a Path) -> Result<Walk<'a>, Error> {
        let c_root = CString::new(root.as_os_str().as_bytes()).map_err(|_| Error::Refused {
            path: root.to_path_buf(),
            reason: "the path contains a NUL byte",
        })?;
        let dir = open_dir(libc::AT_FDCWD, &c_root).at("open directory", root)?;
        let id = id_of(&dir).at("stat", root)?;
        Ok(Walk {
            root,
            dev: id.dev,
            dir,
            id,
            above: Vec::new(),
            buf: vec![0; ENTRIES_BUF],
            pos: 0,
            len: 0,
        })
    }

    /// The next entry of the current directory other than `.` and `..`; `None` at its end.
    fn next_entry(&mut self) -> Result<Option<Entry>, Error> {
        loop {
            if self.pos >= self.len {
                // SAFETY: the buffer is valid for writes of its length; the kernel writes at
                // most that many bytes of whole records.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_getdents64,
                        self.dir.as_raw_fd(),
                        self.buf.as_mut_ptr(),
                        self.buf.len(),
                    )
                };
                if n < 0 {
                    return Err(self.fail("read directory", io::Error::last_os_error()));
                }
                if n == 0 {
                    return Ok(None);
                }
                self.pos = 0;
                self.len = n as usize;
            }
            // struct linux_dirent64: u64 d_ino, i64 d_off, u16 d_reclen, u8 d_type, name.
            let record = &self.buf[self.pos..self.len];
            let field = |at: usize, len: usize| record.get(at..at + len);
            let (Some(off), Some(reclen), Some(&kind)) =
                (field(8, 8), field(16, 2), record.get(18))
            else {
                return Err(self.fail("read directory", io::ErrorKind::InvalidData.into()));
            };
            let next = i64::from_ne_bytes(off.try_into().unwrap_or_default());
            let reclen = usize::from(u16::from_ne_bytes(reclen.try_into().unwrap_or_default()));
            let name = record
                .get(19..reclen)
                .and_then(|bytes| CStr::from_bytes_until_nul(bytes).ok());
            let Some(name) = name else {
                return Err(self.fail("read directory", io::ErrorKind::InvalidData.into()));
            };
            self.pos += reclen;
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                return Ok(Some(Entry {
                    name: name.to_owned(),
                    kind,
                    next,
                }));
            }
        }
    }

    /// True when `entry` is a directory (not a symlink to one).
    fn is_dir(&self, entry: &Entry) -> Result<bool, Error> {
        match entry.kind {
            libc::DT_DIR => Ok(true),
            libc::DT_UNKNOWN => {
                let stat = self.stat(entry).map_err(|e| self.error("stat", entry, e))?;
                Ok(stat.st_mode & libc::S_IFMT == libc::S_IFDIR)
            }
            _ => Ok(false),
        }
    }

    fn stat(&self, entry: &Entry) -> io::Result<libc::stat> {
        // SAFETY: an all-zero stat is a valid value of this plain C struct.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: a descriptor we own, a NUL-terminated name and a stat to write.
        let rc = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                entry.name.as_ptr(),
                &mut stat,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        check(rc).map(|()| stat)
    }

    fn unlink(&self, entry: &Entry, flags: libc::c_int) -> io::Result<()> {
        // SAFETY: a descriptor we own and a NUL-terminated name.
        check(unsafe { libc::unlinkat(self.dir.as_raw_fd(), entry.name.as_ptr(), flags) })
    }

    /// Makes directory `entry` the current one.
    fn descend(&mut self, entry: &Entry) -> Result<(), Error> {
        let child = open_dir(self.dir.as_raw_fd(), &entry.name)
            .map_err(|e| self.error("open directory", entry, e))?;
        let id = id_of(&child).map_err(|e| self.error("stat", entry, e))?;
        if id.dev != self.dev {
            return Err(Error::Refused {
                path: self.root.to_path_buf(),
                reason: "another file system is mounted in the tree",
            });
        }
        self.above.push(Level {
            id: self.id,
            resume: entry.next,
        });
        self.dir = child;
        self.id = id;
        self.len = 0;
        Ok(())
    }

    /// Makes the parent the current directory again, reading it from where `resume` says.
    /// False at the root (nothing above).
    fn ascend(&mut self, resume: Resume) -> Result<bool, Error> {
        let Some(level) = self.above.pop() else {
            return Ok(false);
        };
        let parent = open_dir(self.dir.as_raw_fd(), c"..")
            .map_err(|e| self.fail("open the parent directory", e))?;
        let id = id_of(&parent).map_err(|e| self.fail("stat the parent directory", e))?;
        if id != level.id {
            return Err(Error::Refused {
                path: self.root.to_path_buf(),
                reason: "a directory of the tree moved during the walk",
            });
        }
        let offset = match resume {
            Resume::Start => 0,
            Resume::Saved => level.resume,
        };
        // SAFETY: lseek on a descriptor we own.
        if unsafe { libc::lseek(parent.as_raw_fd(), offset, libc::SEEK_SET) } == -1 {
            let e = io::Error::last_os_error();
            self.above.push(level);
            return Err(self.fail("seek in the parent directory", e));
        }
        self.dir = parent;
        self.id = id;
        self.len = 0;
        Ok(true)
    }

    /// An error about `entry` of the current directory.
    fn error(&self, op: &'static str, entry: &Entry, source: io::Error) -> Error {
        Error::Walk {
            op,
            root: self.root.to_path_buf(),
            depth: self.above.len(),
            name: entry.name.to_string_lossy().into_owned(),
            source,
        }
    }

    /// An error about the current directory itself.
    fn fail(&self, op: &'static str, source: io::Error) -> Error {
        Error::Walk {
            op,
            root: self.root.to_path_buf(),
            depth: self.above.len(),
            name: ".".to_owned(),
            source,
        }
    }
}

/// Opens directory `name` relative to `at`, never through a symlink; without updating access
/// times where the kernel allows it (O_NOATIME needs ownership or CAP_FOWNER).
fn open_dir(at: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a NUL-terminated name; `at` is AT_FDCWD or a descriptor the caller owns.
    let mut fd = unsafe { libc::openat(at, name.as_ptr(), flags | libc::O_NOATIME) };
    if fd == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        // SAFETY: as above.
        fd = unsafe { libc::openat(at, name.as_ptr(), flags) };
    }
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn id_of(fd: &OwnedFd) -> io::Result<Id> {
    // SAFETY: an all-zero stat is a valid value of this plain C struct.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a descriptor we own and a stat to write.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(Id {
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
