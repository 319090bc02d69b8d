//! File system work the agent does as root: `Mkdir`, `Put`, `Seal`, a run's fresh working
//! directory and its clean-up. Programs may leave anything behind (symlinks to secrets, FIFOs,
//! hard links, unreadable directories), so nothing here follows a symlink it did not expect, and
//! a file the agent writes must be a plain file with a single link.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{fchown, lchown, DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::error::{Error, IoContext};
use crate::protocol::Pipe;
use crate::tree;

/// Bits a mode from the host may carry: no setuid/setgid (a root-owned setuid file would be a
/// way out of the sandbox).
const MODE_MASK: u32 = 0o1777;

/// Creates `path` (missing parents owned by root, mode 0755) owned by `uid:gid` with `mode`.
/// An existing directory (not a symlink) is accepted and given the owner and mode.
pub fn mkdir(path: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    create_parents(path)?;
    match DirBuilder::new().mode(0o700).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(path).at("stat", path)?;
            if !meta.is_dir() {
                return Err(Error::Refused {
                    path: path.to_path_buf(),
                    reason: "exists and is not a directory",
                });
            }
        }
        other => other.at("create directory", path)?,
    }
    lchown(path, Some(uid), Some(gid)).at("chown", path)?;
    fs::set_permissions(path, Permissions::from_mode(mode & MODE_MASK)).at("chmod", path)
}

/// Copies `src` to `dst` as root (never through a symlink at `dst`), then gives `dst` to
/// `uid:gid` with `mode`.
pub fn put(src: &Path, dst: &Path, uid: u32, gid: u32, mode: u32) -> Result<(), Error> {
    let mut from = File::open(src).at("open", src)?;
    if !from.metadata().at("stat", src)?.is_file() {
        return Err(Error::Refused {
            path: src.to_path_buf(),
            reason: "not a regular file",
        });
    }
    let mut to = create_file(dst, 0o600)?;
    io::copy(&mut from, &mut to).at("copy to", dst)?;
    fchown(&to, Some(uid), Some(gid)).at("chown", dst)?;
    to.set_permissions(Permissions::from_mode(mode & MODE_MASK))
        .at("chmod", dst)
}

/// Makes `path` and everything below it owned by root, without group/other write permission and
/// without setuid/setgid bits. Symlinks are re-owned but neither followed nor descended into.
/// The compiler may have built a tree of any depth: see [`tree`].
pub fn seal(path: &Path) -> Result<(), Error> {
    tree::seal(path)
}

/// Opens an interactive run's FIFOs in the order `pipe` gives: `(read, write)`, both blocking
/// and close-on-exec. Each open waits for the other side's end, at most `deadline`.
pub fn open_pipe(pipe: &Pipe, deadline: Duration) -> Result<(OwnedFd, OwnedFd), Error> {
    if pipe.read_first {
        let read = open_fifo(&pipe.read, false, deadline)?;
        Ok((read, open_fifo(&pipe.write, true, deadline)?))
    } else {
        let write = open_fifo(&pipe.write, true, deadline)?;
        Ok((open_fifo(&pipe.read, false, deadline)?, write))
    }
}

/// Opens FIFO `path` for reading or writing, waiting at most `deadline` for the other end.
fn open_fifo(path: &Path, write: bool, deadline: Duration) -> Result<OwnedFd, Error> {
    let meta = fs::symlink_metadata(path).at("stat", path)?;
    if !meta.file_type().is_fifo() {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "not a FIFO",
        });
    }
    let open = move |path: &Path, write: bool, flags: libc::c_int| {
        OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | flags)
            .open(path)
    };
    // A blocking open has no timeout: it waits on a thread, and if the other side never comes
    // this process becomes the other end itself, which lets the thread go.
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    thread::spawn(move || {
        let _ = tx.send(open(&owned, write, 0));
    });
    match rx.recv_timeout(deadline) {
        Ok(opened) => opened.map(OwnedFd::from).at("open", path),
        Err(_) => {
            let unblock = open(path, !write, libc::O_NONBLOCK);
            let _ = rx.recv_timeout(Duration::from_secs(1));
            drop(unblock);
            Err(Error::Refused {
                path: path.to_path_buf(),
                reason: "the other side of the interaction never opened its end",
            })
        }
    }
}

/// Most files `warm` opens in one request: a language's runtime is a few libraries and one
/// library folder, and a mistaken `warm = ["/"]` must not walk the whole image.
const WARM_FILES: usize = 20_000;

/// Bytes asked for in one read-ahead call.
const WARM_CHUNK: u64 = 2 << 20;

/// Asks the kernel to read `paths` (regular files, and the regular files below directories;
/// a symlink given in `paths` is followed, one met in a directory is not) into the page cache now. The pages are allocated, and charged to
/// this process's memory cgroup, before this returns; only the disk reads finish in the
/// background. Pages already cached cost a lookup each.
pub fn warm(paths: &[PathBuf]) -> Result<(), Error> {
    // The registry names libraries by their soname, which is a link to the versioned file.
    let mut pending = paths
        .iter()
        .rev()
        .map(|path| fs::canonicalize(path).at("resolve", path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut files = 0usize;
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        if meta.is_dir() {
            for entry in fs::read_dir(&path).at("list", &path)? {
                pending.push(entry.at("list", &path)?.path());
            }
            continue;
        }
        if !meta.is_file() || meta.len() == 0 {
            continue;
        }
        files += 1;
        if files > WARM_FILES {
            return Err(Error::Refused {
                path,
                reason: "more files to warm than the agent reads ahead in one request",
            });
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .at("open", &path)?;
        // One call reads ahead a few MB at most (8 MB seen on 6.18), so ask for the file in
        // chunks; a cached chunk costs a page-cache lookup per page.
        let mut offset = 0;
        while offset < meta.len() {
            // SAFETY: a valid descriptor; posix_fadvise reads no memory of ours.
            let rc = unsafe {
                libc::posix_fadvise(
                    std::os::fd::AsRawFd::as_raw_fd(&file),
                    offset as libc::off_t,
                    WARM_CHUNK as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                )
            };
            if rc != 0 {
                return Err(Error::Sys {
                    op: "read ahead",
                    source: io::Error::from_raw_os_error(rc),
                });
            }
            offset += WARM_CHUNK;
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (not `dir` itself), never following symlinks; a `dir` that
/// does not exist has nothing in it.
pub fn wipe_contents(dir: &Path) -> Result<(), Error> {
    match tree::remove_contents(dir) {
        // Not mounted here (e.g. no /dev/mqueue): nothing can be left in it.
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// The fresh working directory of a run: created for it, removed with everything in it after.
#[derive(Debug)]
pub struct FreshDir {
    path: Option<PathBuf>,
}

impl FreshDir {
    /// Creates `path` owned by `uid:gid`, mode 0700. It must not exist.
    pub fn create(path: &Path, uid: u32, gid: u32) -> Result<FreshDir, Error> {
        create_parents(path)?;
        match DirBuilder::new().mode(0o700).create(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Refused {
                    path: path.to_path_buf(),
                    reason: "the fresh working directory already exists",
                })
            }
            other => other.at("create directory", path)?,
        }
        let dir = FreshDir {
            path: Some(path.to_path_buf()),
        };
        lchown(path, Some(uid), Some(gid)).at("chown", path)?;
        fs::set_permissions(path, Permissions::from_mode(0o700)).at("chmod", path)?;
        Ok(dir)
    }

    /// Removes the directory and everything in it.
    pub fn remove(mut self) -> Result<(), Error> {
        match self.path.take() {
            Some(path) => tree::remove(&path),
            None => Ok(()),
        }
    }
}

impl Drop for FreshDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            if let Err(e) = tree::remove(&path) {
                eprintln!("demoter: {e}");
            }
        }
    }
}

/// Opens the program's stdin: a regular file (not through a symlink), or `/dev/null`.
pub fn open_stdin(path: Option<&Path>) -> Result<File, Error> {
    let Some(path) = path else {
        let null = Path::new("/dev/null");
        return File::open(null).at("open", null);
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .at("open stdin", path)?;
    if !file.metadata().at("stat", path)?.is_file() {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason: "stdin is not a regular file",
        });
    }
    clear_nonblocking(&file, path)?;
    Ok(file)
}

/// Replaces the content of `stdout` (the agent's own file) with the program's file `from`:
/// opened without following a link, copied only if it is a regular file; missing, `stdout`
/// is left empty.
pub fn take_output(from: &Path, stdout: &Path) -> Result<(), Error> {
    // Not there, or a link or something else in the way: no output.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(from)
        .ok();
    let mut out = create_file(stdout, 0o644)?;
    out.set_len(0).at("truncate", stdout)?;
    let Some(mut file) = file else {
        return Ok(());
    };
    if !file.metadata().at("stat", from)?.is_file() {
        return Ok(());
    }
    clear_nonblocking(&file, from)?;
    io::copy(&mut file, &mut out).at("copy the output file", from)?;
    Ok(())
}

/// Creates (or truncates) a file the agent writes as root: never through a symlink, never a
/// FIFO or device (O_NONBLOCK keeps a FIFO from blocking the open), never a file with other
/// hard links (which could be anyone's file).
pub fn create_file(path: &Path, mode: u32) -> Result<File, Error> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .at("create", path)?;
    let meta = file.metadata().at("stat", path)?;
    let reason = if !meta.is_file() {
        Some(if meta.file_type().is_fifo() {
            "a FIFO is in the way"
        } else {
            "not a regular file"
        })
    } else if meta.nlink() > 1 {
        Some("the file has other hard links")
    } else {
        None
    };
    if let Some(reason) = reason {
        return Err(Error::Refused {
            path: path.to_path_buf(),
            reason,
        });
    }
    file.set_len(0).at("truncate", path)?;
    clear_nonblocking(&file, path)?;
    Ok(file)
}

fn clear_nonblocking(file: &File, path: &Path) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function borrows; F_GETFL/F_SETFL touch no memory.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags == -1 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } == -1 {
        return Err(io::Error::last_os_error()).at("fcntl", path);
    }
    Ok(())
}

/// Creates the missing parents of `path`, owned by root with mode 0755.
pub(crate) fn create_parents(path: &Path) -> Result<(), Error> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .at("create parents of", path),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn the_two_sides_of_an_interaction_open_their_fifos_in_opposite_orders() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (
            tmp.path().join("to-program"),
            tmp.path().join("to-interactor"),
        );
        for fifo in [&a, &b] {
            nix::unistd::mkfifo(fifo.as_path(), nix::sys::stat::Mode::S_IRWXU).unwrap();
        }
        let program = Pipe {
            read: a.clone(),
            write: b.clone(),
            read_first: true,
            ignore_sigpipe: false,
        };
        let interactor = Pipe {
            read: b.clone(),
            write: a.clone(),
            read_first: false,
            ignore_sigpipe: true,
        };
        let other = thread::spawn(move || open_pipe(&interactor, Duration::from_secs(5)));
        let (p_read, p_write) = open_pipe(&program, Duration::from_secs(5)).unwrap();
        let (i_read, i_write) = other.join().unwrap().unwrap();
        let mut line = [0u8; 3];
        use std::io::{Read, Write};
        File::from(i_write).write_all(b"? 1").unwrap();
        File::from(p_read).read_exact(&mut line).unwrap();
        assert_eq!(&line, b"? 1");
        File::from(p_write).write_all(b"ok").unwrap();
        let mut back = String::new();
        File::from(i_read).read_to_string(&mut back).unwrap();
        assert_eq!(back, "ok");

        // Alone, a side gives up at its deadline, and nothing stays blocked.
        let lonely = Pipe {
            read: a.clone(),
            write: b.clone(),
            read_first: true,
            ignore_sigpipe: false,
        };
        let err = open_pipe(&lonely, Duration::from_millis(200)).unwrap_err();
        assert!(err.to_string().contains("never opened"), "{err}");
        let err = open_pipe(
            &Pipe {
                read_first: false,
                ..lonely
            },
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.to_string().contains("never opened"), "{err}");
        // Not a FIFO: refused at once.
        let plain = tmp.path().join("plain");
        fs::write(&plain, "").unwrap();
        let err = open_pipe(
            &Pipe {
                read: plain,
                write: b,
                read_first: true,
                ignore_sigpipe: false,
            },
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a FIFO"), "{err}");
    }

    #[test]
    fn warm_reads_files_and_folders_skips_links_and_fifos_and_refuses_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = tmp.path().join("lib");
        fs::create_dir_all(lib.join("deep/er")).unwrap();
        fs::write(lib.join("deep/er/a.so"), vec![7u8; 100_000]).unwrap();
        fs::write(lib.join("empty"), "").unwrap();
        symlink("/nonexistent", lib.join("dangling")).unwrap();
        nix::unistd::mkfifo(&lib.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let one = tmp.path().join("one");
        fs::write(&one, "x").unwrap();
        warm(&[lib.clone(), one.clone()]).unwrap();

        let err = warm(&[one, tmp.path().join("missing")]).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn put_refuses_a_symlink_or_hard_link_at_the_destination() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("secret");
        fs::write(&secret, "secret").unwrap();
        let src = tmp.path().join("src");
        fs::write(&src, "data").unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();

        let link = tmp.path().join("link");
        symlink(&secret, &link).unwrap();
        assert!(put(&src, &link, uid, gid, 0o644).is_err());
        let hard = tmp.path().join("hard");
        fs::hard_link(&secret, &hard).unwrap();
        let err = put(&src, &hard, uid, gid, 0o644).unwrap_err();
        assert!(err.to_string().contains("hard links"), "{err}");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "secret");

        let dst = tmp.path().join("dst");
        put(&src, &dst, uid, gid, 0o4755).unwrap();
        assert_eq!(fs::read_to_string(&dst).unwrap(), "data");
        // setuid is never granted.
        assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn create_file_refuses_a_fifo_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        assert!(create_file(&fifo, 0o644).is_err());
        assert!(open_stdin(Some(&fifo)).is_err());
    }

    #[test]
    fn mkdir_sets_owner_and_mode_and_is_idempotent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        mkdir(&dir, uid, gid, 0o750).unwrap();
        mkdir(&dir, uid, gid, 0o711).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o711);
        let file = tmp.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(mkdir(&file, uid, gid, 0o755).is_err());
    }

    #[test]
    fn seal_removes_write_bits_without_following_symlinks() {
        if !is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::write(&outside, "").unwrap();
        fs::set_permissions(&outside, Permissions::from_mode(0o666)).unwrap();
        lchown(&outside, Some(1234), Some(1234)).unwrap();

        let tree = tmp.path().join("tree");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/f"), "").unwrap();
        fs::set_permissions(tree.join("sub/f"), Permissions::from_mode(0o6777)).unwrap();
        fs::set_permissions(tree.join("sub"), Permissions::from_mode(0o777)).unwrap();
        symlink(&outside, tree.join("link")).unwrap();
        lchown(tree.join("sub/f"), Some(1234), Some(1234)).unwrap();
        lchown(tree.join("link"), Some(1234), Some(1234)).unwrap();

        seal(&tree).unwrap();
        let f = fs::metadata(tree.join("sub/f")).unwrap();
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (0, 0, 0o755));
        assert_eq!(
            fs::metadata(tree.join("sub")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(fs::symlink_metadata(tree.join("link")).unwrap().uid(), 0);
        let o = fs::metadata(&outside).unwrap();
        assert_eq!((o.uid(), o.mode() & 0o7777), (1234, 0o666));
    }

    #[test]
    fn wipe_removes_contents_but_not_targets_of_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let keep = tmp.path().join("keep");
        fs::create_dir(&keep).unwrap();
        fs::write(keep.join("file"), "x").unwrap();
        let wiped = tmp.path().join("wiped");
        fs::create_dir_all(wiped.join("d/e")).unwrap();
        fs::write(wiped.join("d/e/f"), "").unwrap();
        symlink(&keep, wiped.join("dirlink")).unwrap();
        symlink(keep.join("file"), wiped.join("filelink")).unwrap();
        nix::unistd::mkfifo(
            &wiped.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::set_permissions(wiped.join("d"), Permissions::from_mode(0o000)).unwrap();

        let result = wipe_contents(&wiped);
        if is_root() {
            result.unwrap();
            assert_eq!(fs::read_dir(&wiped).unwrap().count(), 0);
        } else {
            fs::set_permissions(wiped.join("d"), Permissions::from_mode(0o700)).unwrap();
        }
        assert!(wiped.is_dir());
        assert_eq!(fs::read_to_string(keep.join("file")).unwrap(), "x");
    }

    #[test]
    fn fresh_dir_must_not_exist_and_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let cwd = tmp.path().join("box/run");
        let fresh = FreshDir::create(&cwd, uid, gid).unwrap();
        assert_eq!(fs::metadata(&cwd).unwrap().mode() & 0o7777, 0o700);
        assert!(FreshDir::create(&cwd, uid, gid).is_err());
        fs::write(cwd.join("f"), "").unwrap();
        fresh.remove().unwrap();
        assert!(!cwd.exists());
        assert!(tmp.path().join("box").is_dir());
    }

    /// Deeper than the open-file limit of the agent (20000 in a container) and far past
    /// PATH_MAX.
    const DEPTH: usize = 25_000;

    /// A chain `dir/d/d/.../d` (`DEPTH` levels, mode 0777) on tmpfs, with a setuid file owned
    /// by nobody, a symlink to `outside` and a symlink to `..` every 1000 levels. Built by
    /// descriptor: its paths are too long for the kernel.
    fn deep_chain(dir: &Path, outside: &Path) {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let open = |at: libc::c_int, name: &std::ffi::CStr| {
            // SAFETY: test code: a NUL-terminated name, a descriptor we own.
            let fd =
                unsafe { libc::openat(at, name.as_ptr(), libc::O_DIRECTORY | libc::O_CLOEXEC) };
            assert!(fd >= 0, "{}", io::Error::last_os_error());
            // SAFETY: just opened, owned by nobody else.
            unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
        };
        let outside = CString::new(outside.as_os_str().as_bytes()).unwrap();
        let mut fd = open(
            libc::AT_FDCWD,
            &CString::new(dir.as_os_str().as_bytes()).unwrap(),
        );
        for level in 0..DEPTH {
            let at = std::os::fd::AsRawFd::as_raw_fd(&fd);
            // SAFETY: test code: a descriptor we own and NUL-terminated names.
            unsafe {
                assert_eq!(libc::mkdirat(at, c"d".as_ptr(), 0o777), 0);
                assert_eq!(libc::fchmodat(at, c"d".as_ptr(), 0o777, 0), 0);
                if level % 1000 == 0 {
                    assert_eq!(libc::symlinkat(outside.as_ptr(), at, c"out".as_ptr()), 0);
                    assert_eq!(libc::symlinkat(c"..".as_ptr(), at, c"up".as_ptr()), 0);
                    let file = libc::openat(
                        at,
                        c"f".as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o600,
                    );
                    assert!(file >= 0);
                    assert_eq!(libc::fchmod(file, 0o6777), 0);
                    if is_root() {
                        assert_eq!(libc::fchown(file, 65534, 65534), 0);
                    }
                    libc::close(file);
                }
            }
            fd = open(at, c"d");
        }
    }

    /// A temporary directory on tmpfs with `outside/keep` (mode 0777) that no walk may touch,
    /// removed with the walk under test (TempDir's own removal cannot remove a deep chain).
    struct Shm(tempfile::TempDir);

    impl Shm {
        fn new() -> Shm {
            let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
            let outside = tmp.path().join("outside");
            fs::create_dir(&outside).unwrap();
            fs::write(outside.join("keep"), "secret").unwrap();
            fs::set_permissions(&outside, Permissions::from_mode(0o777)).unwrap();
            Shm(tmp)
        }

        fn outside(&self) -> PathBuf {
            self.0.path().join("outside")
        }

        fn assert_outside_untouched(&self) {
            assert_eq!(fs::read(self.outside().join("keep")).unwrap(), b"secret");
            let meta = fs::metadata(self.outside()).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o777, "a symlink was followed");
        }
    }

    impl Drop for Shm {
        fn drop(&mut self) {
            let _ = crate::tree::remove(self.0.path());
        }
    }

    #[test]
    fn a_fresh_dir_holding_a_chain_deeper_than_the_open_file_limit_is_removed() {
        let shm = Shm::new();
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let cwd = shm.0.path().join("run");
        let fresh = FreshDir::create(&cwd, uid, gid).unwrap();
        deep_chain(&cwd, &shm.outside());
        fresh.remove().unwrap();
        assert!(!cwd.exists());
        shm.assert_outside_untouched();
    }

    #[test]
    fn wipe_empties_a_directory_holding_a_deep_chain() {
        let shm = Shm::new();
        let wiped = shm.0.path().join("wiped");
        fs::create_dir(&wiped).unwrap();
        deep_chain(&wiped, &shm.outside());
        wipe_contents(&wiped).unwrap();
        assert_eq!(fs::read_dir(&wiped).unwrap().count(), 0);
        shm.assert_outside_untouched();
    }

    #[test]
    fn seal_reaches_every_level_of_a_deep_chain_and_nothing_outside() {
        if !is_root() {
            return;
        }
        let shm = Shm::new();
        let build = shm.0.path().join("build");
        fs::create_dir(&build).unwrap();
        deep_chain(&build, &shm.outside());
        seal(&build).unwrap();
        shm.assert_outside_untouched();
        // Down the chain by descriptor, looking at each level.
        let mut dir = fs::File::open(&build).unwrap();
        for level in 0..DEPTH {
            let stat = |name: &std::ffi::CStr| {
                // SAFETY: test code: an all-zero stat is valid; a descriptor we own.
                let mut stat: libc::stat = unsafe { std::mem::zeroed() };
                // SAFETY: as above.
                let rc = unsafe {
                    libc::fstatat(
                        std::os::fd::AsRawFd::as_raw_fd(&dir),
                        name.as_ptr(),
                        &mut stat,
                        libc::AT_SYMLINK_NOFOLLOW,
                    )
                };
                assert_eq!(rc, 0, "level {level}");
                (stat.st_uid, stat.st_gid, stat.st_mode & 0o7777)
            };
            assert_eq!(stat(c"d"), (0, 0, 0o755), "level {level}");
            if level % 1000 == 0 {
                assert_eq!(stat(c"f"), (0, 0, 0o755), "level {level}");
            }
            // SAFETY: test code: a descriptor we own and a literal name.
            let next = unsafe {
                libc::openat(
                    std::os::fd::AsRawFd::as_raw_fd(&dir),
                    c"d".as_ptr(),
                    libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            assert!(next >= 0, "level {level}");
            // SAFETY: just opened, owned by nobody else.
            dir = unsafe { <fs::File as std::os::fd::FromRawFd>::from_raw_fd(next) };
        }
    }
}
