//! `Pack` and `Unpack`: a build directory to one file and back, for the host's compile cache.
//! The build directory lives on the container's tmpfs, out of reach of Docker's archive API, so
//! the agent writes it as a file into the io dir (which the host sees) and restores such a file
//! into the build directory of another box.
//!
//! The format is our own and small: a magic, then one record per entry in walk order (a
//! directory before what it holds), then an end record. Every integer is little-endian.
//!
//! ```text
//! "EXPACK01"
//! 'd' path mode mtime                 a directory (the first record is the root, path "")
//! 'f' path mode mtime size:u64 bytes  a regular file
//! 'l' path target                     a symlink whose target stays inside the tree
//! 'e'                                 the end
//! path, target = len:u16 bytes; mode = u32; mtime = seconds:i64 nanoseconds:u32
//! ```
//!
//! Owners are not kept: `Unpack` gives everything to the box's user, as compiling would have,
//! and the host seals the build afterwards. Modification times are kept (a runtime may compare
//! a compiled file's time with its source's, as Python's and Racket's do).

use std::collections::HashSet;
use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{fchown, lchown, DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext};
use crate::fsops;
use crate::tree;

const MAGIC: &[u8; 8] = b"EXPACK01";
const DIR: u8 = b'd';
const FILE: u8 = b'f';
const LINK: u8 = b'l';
const END: u8 = b'e';

/// Deepest entry below the root a pack holds: compilers make shallow trees, and a deeper one
/// (a program's doing) is refused rather than walked.
const MAX_DEPTH: usize = 32;

/// Bits of a mode a pack keeps and restores: no setuid/setgid.
const MODE_MASK: u32 = 0o1777;

/// Writes the tree at `src` (a directory) into a new file `dst` (never through a link), at most
/// `max_bytes` in all. Refused: a symlink whose target is absolute or leaves the tree, a FIFO,
/// socket or device, another file system, a tree deeper than [`MAX_DEPTH`], more than
/// `max_bytes`. On any failure `dst` is removed.
pub fn pack(src: &Path, dst: &Path, max_bytes: u64) -> Result<(), Error> {
    let file = fsops::create_file(dst, 0o600)?;
    let mut out = Counted {
        inner: BufWriter::new(file),
        written: 0,
        max: max_bytes,
        path: dst,
    };
    let done = write_tree(src, &mut out).and_then(|()| out.flush());
    if done.is_err() {
        let _ = fs::remove_file(dst);
    }
    done
}

fn write_tree(src: &Path, out: &mut Counted<'_>) -> Result<(), Error> {
    let root = fs::symlink_metadata(src).at("stat", src)?;
    if !root.is_dir() {
        return Err(Error::Refused {
            path: src.to_path_buf(),
            reason: "not a directory",
        });
    }
    out.put(MAGIC)?;
    // Relative paths still to write, the next on top; a directory's entries are pushed when it
    // is written, so a directory always comes before what it holds.
    let mut pending: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let path = src.join(&rel);
        let meta = fs::symlink_metadata(&path).at("stat", &path)?;
        if meta.dev() != root.dev() {
            return Err(refused(&path, "another file system is mounted in the tree"));
        }
        let kind = meta.file_type();
        if kind.is_dir() {
            out.put(&[DIR])?;
            out.put_bytes(rel.as_os_str().as_bytes(), &path)?;
            out.put(&(meta.mode() & MODE_MASK).to_le_bytes())?;
            out.put_time(&meta)?;
            let mut names = Vec::new();
            for entry in fs::read_dir(&path).at("list", &path)? {
                names.push(entry.at("list", &path)?.file_name());
            }
            if !names.is_empty() && rel.components().count() >= MAX_DEPTH {
                return Err(refused(&path, "the tree is deeper than a build may be"));
            }
            names.sort();
            pending.extend(names.into_iter().rev().map(|name| rel.join(name)));
        } else if kind.is_file() {
            let mut file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
                .at("open", &path)?;
            let opened = file.metadata().at("stat", &path)?;
            if !opened.is_file() || opened.ino() != meta.ino() {
                return Err(refused(&path, "the file changed while it was packed"));
            }
            let size = opened.len();
            out.put(&[FILE])?;
            out.put_bytes(rel.as_os_str().as_bytes(), &path)?;
            out.put(&(opened.mode() & MODE_MASK).to_le_bytes())?;
            out.put_time(&opened)?;
            out.put(&size.to_le_bytes())?;
            out.reserve(size)?;
            let copied = io::copy(&mut (&mut file).take(size), &mut out.inner).at("pack", &path)?;
            if copied != size {
                return Err(refused(&path, "the file changed while it was packed"));
            }
        } else if kind.is_symlink() {
            let target = fs::read_link(&path).at("read link", &path)?;
            if !stays_inside(&rel, &target) {
                return Err(refused(&path, "a symlink that leads out of the tree"));
            }
            out.put(&[LINK])?;
            out.put_bytes(rel.as_os_str().as_bytes(), &path)?;
            out.put_bytes(target.as_os_str().as_bytes(), &path)?;
        } else {
            let reason = if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            return Err(refused(&path, reason));
        }
    }
    out.put(&[END])
}

fn refused(path: &Path, reason: &'static str) -> Error {
    Error::Refused {
        path: path.to_path_buf(),
        reason,
    }
}

/// True when a symlink at `link` (relative to the root) pointing to `target` resolves inside
/// the root, judged by the names alone: relative, and never above the root.
fn stays_inside(link: &Path, target: &Path) -> bool {
    use std::path::Component;
    let mut depth = link.components().count().saturating_sub(1) as i64;
    for part in target.components() {
        match part {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    !target.as_os_str().is_empty()
}

/// The pack's file, counting what is written against its limit.
struct Counted<'a> {
    inner: BufWriter<File>,
    written: u64,
    max: u64,
    path: &'a Path,
}

impl Counted<'_> {
    /// Counts `n` more bytes, refusing to go over the limit.
    fn reserve(&mut self, n: u64) -> Result<(), Error> {
        self.written = self.written.saturating_add(n);
        if self.written > self.max {
            return Err(refused(
                self.path,
                "the build is larger than the pack may be",
            ));
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.reserve(bytes.len() as u64)?;
        self.inner.write_all(bytes).at("write", self.path)
    }

    fn put_bytes(&mut self, bytes: &[u8], of: &Path) -> Result<(), Error> {
        let len = u16::try_from(bytes.len()).map_err(|_| refused(of, "a name too long to pack"))?;
        self.put(&len.to_le_bytes())?;
        self.put(bytes)
    }

    fn put_time(&mut self, meta: &fs::Metadata) -> Result<(), Error> {
        self.put(&meta.mtime().to_le_bytes())?;
        self.put(&(meta.mtime_nsec().clamp(0, 999_999_999) as u32).to_le_bytes())
    }

    fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().at("write", self.path)
    }
}

/// Restores the pack `src` (a regular file, not opened through a link) as directory `dst`, which
/// must not exist or be empty; everything in it is owned by `uid:gid`, with the modes (less
/// setuid/setgid) and modification times packed. An entry under a name that is not a plain
/// path below the root, or under a symlink, is refused. On any failure `dst` is removed.
pub fn unpack(src: &Path, dst: &Path, uid: u32, gid: u32) -> Result<(), Error> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(src)
        .at("open", src)?;
    if !file.metadata().at("stat", src)?.is_file() {
        return Err(refused(src, "not a regular file"));
    }
    let mut input = BufReader::new(file);
    let existed = match fs::symlink_metadata(dst) {
        Ok(meta) => {
            let empty = meta.is_dir() && fs::read_dir(dst).at("list", dst)?.next().is_none();
            if !empty {
                return Err(refused(dst, "the build directory exists and is not empty"));
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).at("stat", dst),
    };
    let done = read_tree(&mut input, src, dst, uid, gid, existed);
    if done.is_err() {
        if let Err(e) = tree::remove(dst) {
            eprintln!("demoter: also failed: {e}");
        }
    }
    done
}

fn read_tree(
    input: &mut impl Read,
    src: &Path,
    dst: &Path,
    uid: u32,
    gid: u32,
    existed: bool,
) -> Result<(), Error> {
    let bad = |reason| refused(src, reason);
    let mut magic = [0u8; 8];
    read_exact(input, &mut magic, src)?;
    if &magic != MAGIC {
        return Err(bad("not a build pack"));
    }
    // Directories made so far (relative): an entry goes only into one of them.
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    // Their modes and times, set last: a read-only directory still takes its entries.
    let mut finish: Vec<(PathBuf, u32, SystemTime)> = Vec::new();
    loop {
        let tag = read_array::<1>(input, src)?[0];
        if tag == END {
            break;
        }
        let rel = PathBuf::from(std::ffi::OsStr::from_bytes(&read_bytes(input, src)?));
        let first = dirs.is_empty();
        if first != (tag == DIR && rel.as_os_str().is_empty()) {
            return Err(bad("the pack does not start with its root directory"));
        }
        if !first {
            let plain = rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
            if !plain || rel.as_os_str().is_empty() || !dirs.contains(&parent) {
                return Err(bad("an entry outside the directories of the pack"));
            }
        }
        let path = dst.join(&rel);
        match tag {
            DIR => {
                let mode = u32::from_le_bytes(read_array(input, src)?) & MODE_MASK;
                let mtime = read_time(input, src)?;
                if !(first && existed) {
                    if first {
                        fsops::create_parents(dst)?;
                    }
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .at("create directory", &path)?;
                }
                lchown(&path, Some(uid), Some(gid)).at("chown", &path)?;
                dirs.insert(rel.clone());
                finish.push((path, mode, mtime));
            }
            FILE => {
                let mode = u32::from_le_bytes(read_array(input, src)?) & MODE_MASK;
                let mtime = read_time(input, src)?;
                let size = u64::from_le_bytes(read_array(input, src)?);
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&path)
                    .at("create", &path)?;
                let copied =
                    io::copy(&mut input.by_ref().take(size), &mut file).at("unpack", &path)?;
                if copied != size {
                    return Err(bad("the pack ends inside a file"));
                }
                fchown(&file, Some(uid), Some(gid)).at("chown", &path)?;
                file.set_permissions(Permissions::from_mode(mode))
                    .at("chmod", &path)?;
                file.set_times(FileTimes::new().set_modified(mtime))
                    .at("set the time of", &path)?;
            }
            LINK => {
                let target = PathBuf::from(std::ffi::OsStr::from_bytes(&read_bytes(input, src)?));
                if !stays_inside(&rel, &target) {
                    return Err(bad("a symlink that leads out of the tree"));
                }
                std::os::unix::fs::symlink(&target, &path).at("create symlink", &path)?;
                lchown(&path, Some(uid), Some(gid)).at("chown", &path)?;
            }
            _ => return Err(bad("an unknown record")),
        }
    }
    if input.read(&mut [0u8; 1]).at("read", src)? != 0 {
        return Err(bad("bytes after the end of the pack"));
    }
    for (path, mode, mtime) in finish.into_iter().rev() {
        fs::set_permissions(&path, Permissions::from_mode(mode)).at("chmod", &path)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .at("open directory", &path)?;
        dir.set_times(FileTimes::new().set_modified(mtime))
            .at("set the time of", &path)?;
    }
    Ok(())
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], src: &Path) -> Result<(), Error> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => refused(src, "the pack ends early"),
        _ => Error::Io {
            op: "read",
            path: src.to_path_buf(),
            source: e,
        },
    })
}

fn read_array<const N: usize>(input: &mut impl Read, src: &Path) -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    read_exact(input, &mut buf, src)?;
    Ok(buf)
}

fn read_bytes(input: &mut impl Read, src: &Path) -> Result<Vec<u8>, Error> {
    let len = u16::from_le_bytes(read_array(input, src)?);
    let mut buf = vec![0u8; usize::from(len)];
    read_exact(input, &mut buf, src)?;
    if buf.contains(&0) {
        return Err(refused(src, "a name with a NUL byte"));
    }
    Ok(buf)
}

fn read_time(input: &mut impl Read, src: &Path) -> Result<SystemTime, Error> {
    let secs = i64::from_le_bytes(read_array(input, src)?);
    let nanos = u32::from_le_bytes(read_array(input, src)?).min(999_999_999);
    let time = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
    };
    time.ok_or_else(|| refused(src, "a time out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_judged_by_where_their_names_lead() {
        assert!(stays_inside(Path::new("a"), Path::new("b")));
        assert!(stays_inside(Path::new("d/a"), Path::new("../b")));
        assert!(!stays_inside(Path::new("a"), Path::new("../b")));
        assert!(!stays_inside(Path::new("d/a"), Path::new("../../b")));
        assert!(!stays_inside(Path::new("a"), Path::new("/etc/passwd")));
        assert!(!stays_inside(Path::new("a"), Path::new("")));
        assert!(stays_inside(Path::new("a"), Path::new("./x/../y")));
    }
}
