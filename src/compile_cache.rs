//! The compile cache: what a successful compile left in the build directory, kept on the
//! worker's disk so that a rejudge or a resubmission of the same code skips the compile.
//!
//! An entry is keyed by everything that decides what the compiler makes ([`Key`]): the
//! language, the image's id (not its name: a rebuilt image is another compiler), the compile
//! command as run (options included), its environment and limits, and every source file by
//! name and content. Its value is the build directory as the demoter's `Pack` wrote it, after
//! the sandboxed compiler made it: nothing else ever writes an entry.
//!
//! Safety against a poisoned entry: the directory is root-only (created 0700; an existing one
//! that is not a directory owned by this user without group or other access is not used), every
//! entry is a 0600 file of this user with one link, written under a temporary name and renamed,
//! and it starts with the SHA-256 of the pack it holds, checked while the pack is copied out for
//! use. An entry that fails any check is `tampered`: removed, counted, and the submission
//! compiled as on a miss.
//!
//! Bounded: the entries together stay under [`CompileCacheConfig::max_bytes`]; storing one
//! evicts the least recently used (a hit renews an entry's modification time). Several
//! processes may share one directory: each entry is one file replaced atomically, and
//! eviction tolerates entries that vanish under it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

/// Bump when what an entry holds changes (the pack format, what the key covers): old entries
/// are then never hit, and age out.
const FORMAT: &str = "executioner-compile-cache-1";
/// Prefix of entries being written (and of nothing else in the directory).
const TEMP_PREFIX: &str = ".tmp-";
/// Temporary files older than this were left by a process that died while storing.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Compile cache settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileCacheConfig {
    /// Where entries are kept (created root-only if missing).
    pub dir: PathBuf,
    /// Most bytes all entries together take; one entry at most half of it.
    pub max_bytes: u64,
}

impl CompileCacheConfig {
    /// Where `worker --compile-cache-dir` keeps entries unless told: `<temp dir>/executioner.compile-cache`.
    pub fn default_dir() -> PathBuf {
        std::env::temp_dir().join("executioner.compile-cache")
    }

    /// The largest pack one entry may hold: half the cache, so that one build never empties it.
    pub fn max_entry_bytes(&self) -> u64 {
        self.max_bytes / 2
    }
}

/// What this process's cache did since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that found a sound entry (the compile was skipped).
    pub hits: u64,
    /// Lookups that found nothing (or could not read what they found).
    pub misses: u64,
    /// Lookups that found an entry failing its checks; it was removed.
    pub tampered: u64,
    /// Builds stored.
    pub stored: u64,
    /// Entries removed to stay under the size bound.
    pub evictions: u64,
}

/// A failure of the cache: it is logged and the submission compiled, never a judging's fault.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("compile cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("compile cache {path}: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("a build of {bytes} bytes is more than a compile cache entry may hold ({max})")]
    TooLarge { bytes: u64, max: u64 },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What an entry is found by: the SHA-256 of everything that decides what the compiler makes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key(String);

/// What goes into a [`Key`].
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub language: &'a str,
    /// The image's id (`sha256:...`), see [`crate::sandbox::Sandbox::image_id`].
    pub image_id: &'a str,
    /// The compile command as run, options included.
    pub argv: &'a [String],
    pub env: &'a [String],
    /// The compile limits, as text (a build that needed more than they allow is not this one).
    pub limits: &'a str,
    /// Every source file: its name in the build directory and its content.
    pub sources: &'a [(&'a str, &'a [u8])],
}

impl Key {
    pub fn new(parts: &KeyParts<'_>) -> Key {
        let mut hash = Sha256::new();
        // Every field is length-prefixed, so no two different inputs hash the same stream.
        let mut put = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        put(FORMAT.as_bytes());
        put(parts.language.as_bytes());
        put(parts.image_id.as_bytes());
        for list in [parts.argv, parts.env] {
            put(&(list.len() as u64).to_le_bytes());
            for item in list {
                put(item.as_bytes());
            }
        }
        put(parts.limits.as_bytes());
        put(&(parts.sources.len() as u64).to_le_bytes());
        for (name, content) in parts.sources {
            put(name.as_bytes());
            put(content);
        }
        Key(hex(&hash.finalize()))
    }

    /// The key as 64 hex digits (the entry's file name).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The pack was copied out, checked.
    Hit,
    Miss,
    /// An entry failed its checks and was removed.
    Tampered,
}

impl Lookup {
    fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Tampered => "tampered",
        }
    }
}

/// The cache of one worker process (see the module's documentation).
#[derive(Debug)]
pub struct CompileCache {
    config: CompileCacheConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    tampered: AtomicU64,
    stored: AtomicU64,
    evictions: AtomicU64,
    /// One eviction pass at a time in this process.
    evicting: std::sync::Mutex<()>,
}

impl CompileCache {
    /// Opens (creating it root-only) the cache directory; refuses one that others could write
    /// or read, or that is not a plain directory. Removes what a process that died while
    /// storing left.
    pub fn open(config: CompileCacheConfig) -> Result<CompileCache, CacheError> {
        let dir = &config.dir;
        match fs::DirBuilder::new()
            .recursive(false)
            .mode(0o700)
            .create(dir)
        {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = dir.parent() {
                    fs::create_dir_all(parent).map_err(io_error(parent))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir)
                    .map_err(io_error(dir))?;
            }
            other => other.map_err(io_error(dir))?,
        }
        let meta = fs::symlink_metadata(dir).map_err(io_error(dir))?;
        let reason = if !meta.is_dir() {
            Some("is not a directory (a symlink?)".to_owned())
        } else if meta.uid() != nix::unistd::geteuid().as_raw() {
            Some(format!(
                "is owned by uid {}, not by this process's user",
                meta.uid()
            ))
        } else if meta.mode() & 0o077 != 0 {
            Some(format!(
                "has mode {:o}: others may reach it (it must be 0700)",
                meta.mode() & 0o7777
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(CacheError::Unsafe {
                path: dir.clone(),
                reason,
            });
        }
        let cache = CompileCache {
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            tampered: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            evicting: std::sync::Mutex::new(()),
        };
        cache.remove_stale_temps();
        Ok(cache)
    }

    pub fn config(&self) -> &CompileCacheConfig {
        &self.config
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            tampered: self.tampered.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The file of `key`'s entry (which may not exist).
    pub fn entry_path(&self, key: &Key) -> PathBuf {
        self.config.dir.join(key.as_str())
    }

    /// Every entry now in the directory: its path and size, least recently used first.
    pub fn entries(&self) -> Result<Vec<(PathBuf, u64)>, CacheError> {
        let mut entries: Vec<(PathBuf, u64, SystemTime)> = Vec::new();
        let dir = &self.config.dir;
        for entry in fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // Gone meanwhile (another process evicted it): not an entry any more.
            let Ok(meta) = entry.metadata() else { continue };
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((entry.path(), meta.len(), used));
        }
        entries.sort_by_key(|(_, _, used)| *used);
        Ok(entries
            .into_iter()
            .map(|(path, size, _)| (path, size))
            .collect())
    }

    /// Looks `key` up for `language` (a metrics label) and on a hit copies its pack to `to` (a
    /// new file), checked against its hash. Blocking. An entry that fails a check is removed
    /// and reported as [`Lookup::Tampered`]; an entry that cannot be read is a miss.
    pub fn fetch(&self, key: &Key, language: &str, to: &Path) -> Lookup {
        let path = self.entry_path(key);
        let found = match self.copy_out(&path, to) {
            Ok(found) => found,
            Err(e) => {
                warn!(error = %e, "reading a compile cache entry failed; compiling");
                Lookup::Miss
            }
        };
        if found != Lookup::Hit {
            let _ = fs::remove_file(to);
        }
        match found {
            Lookup::Hit => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                // Recently used: the last to be evicted.
                if let Err(e) = File::options()
                    .write(true)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                {
                    debug!(path = %path.display(), error = %e, "could not renew a compile cache entry");
                }
            }
            Lookup::Miss => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            Lookup::Tampered => {
                self.tampered.fetch_add(1, Ordering::Relaxed);
                warn!(entry = %path.display(), "a compile cache entry failed its checks; removed, compiling");
                if let Err(e) = fs::remove_file(&path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        warn!(entry = %path.display(), error = %e, "could not remove a tampered compile cache entry");
                    }
                }
            }
        }
        crate::metrics::global().count_compile_cache(language, found.as_str());
        found
    }

    fn copy_out(&self, path: &Path, to: &Path) -> Result<Lookup, CacheError> {
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::Miss),
            // A symlink in its place (ELOOP) is no entry of ours.
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => return Ok(Lookup::Tampered),
            Err(e) => return Err(io_error(path)(e)),
        };
        let meta = file.metadata().map_err(io_error(path))?;
        if !meta.is_file()
            || meta.uid() != nix::unistd::geteuid().as_raw()
            || meta.mode() & 0o077 != 0
            || meta.nlink() != 1
        {
            return Ok(Lookup::Tampered);
        }
        let mut input = BufReader::new(file);
        let mut header = String::new();
        (&mut input)
            .take(200)
            .read_line(&mut header)
            .map_err(io_error(path))?;
        let Some((hash, len)) = parse_header(&header) else {
            return Ok(Lookup::Tampered);
        };
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(to)
            .map_err(io_error(to))?;
        let mut hashing = HashingWriter {
            inner: &mut out,
            hash: Sha256::new(),
            bytes: 0,
        };
        io::copy(&mut input, &mut hashing).map_err(io_error(path))?;
        let (digest, bytes) = (hex(&hashing.hash.finalize()), hashing.bytes);
        out.flush().map_err(io_error(to))?;
        Ok(if digest == hash && bytes == len {
            Lookup::Hit
        } else {
            Lookup::Tampered
        })
    }

    /// Stores the pack at `from` as `key`'s entry, then evicts least recently used entries
    /// until all fit under the bound. Blocking.
    pub fn store(&self, key: &Key, from: &Path) -> Result<(), CacheError> {
        let mut input = File::open(from).map_err(io_error(from))?;
        let bytes = input.metadata().map_err(io_error(from))?.len();
        let max = self.config.max_entry_bytes();
        if bytes > max {
            return Err(CacheError::TooLarge { bytes, max });
        }
        let temp = self
            .config
            .dir
            .join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        // Streamed (a build may be large): the header is written last, in the room kept for it.
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&temp)
            .and_then(|mut file| {
                // The mode is set again: a umask cannot widen it, but make it exact.
                file.set_permissions(fs::Permissions::from_mode(0o600))?;
                let room = header(&[0; 32], 0).len();
                file.write_all(&vec![b' '; room])?;
                let (digest, copied) = {
                    let mut buffered = io::BufWriter::new(&mut file);
                    let mut hashing = HashingWriter {
                        inner: &mut buffered,
                        hash: Sha256::new(),
                        bytes: 0,
                    };
                    io::copy(&mut input, &mut hashing)?;
                    hashing.flush()?;
                    (hashing.hash.finalize(), hashing.bytes)
                };
                io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
                file.write_all(header(&digest, copied).as_bytes())
            })
            .and_then(|()| fs::rename(&temp, self.entry_path(key)));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_error(&temp)(e));
        }
        self.stored.fetch_add(1, Ordering::Relaxed);
        debug!(key = key.as_str(), bytes, "compile cache entry stored");
        self.evict(key)
    }

    /// Removes the least recently used entries (never `keep`) until all fit under the bound.
    fn evict(&self, keep: &Key) -> Result<(), CacheError> {
        let _one = crate::sync::lock(&self.evicting);
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|(_, size)| size).sum();
        let keep = self.entry_path(keep);
        for (path, size) in entries {
            if total <= self.config.max_bytes {
                break;
            }
            if path == keep {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().count_compile_cache_eviction();
                    info!(entry = %path.display(), bytes = size, "compile cache entry evicted");
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
            total = total.saturating_sub(size);
        }
        Ok(())
    }

    fn remove_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.config.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX)
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= STALE_TEMP);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// An entry's first line: `<FORMAT> <sha256 hex> <length, 20 digits>\n` (one length whatever
/// the pack's).
fn header(digest: &[u8], bytes: u64) -> String {
    format!("{FORMAT} {} {bytes:020}\n", hex(digest))
}

/// `(hash, length)` of an entry's first line (see [`header`]).
fn parse_header(line: &str) -> Option<(String, u64)> {
    let mut parts = line.strip_suffix('\n')?.split(' ');
    let (format, hash, len) = (parts.next()?, parts.next()?, parts.next()?);
    if format != FORMAT || parts.next().is_some() || hash.len() != 64 {
        return None;
    }
    Some((hash.to_owned(), len.parse().ok()?))
}

/// Hashes and counts what passes through to `inner`.
struct HashingWriter<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, max_bytes: u64) -> CompileCache {
        CompileCache::open(CompileCacheConfig {
            dir: dir.join("cache"),
            max_bytes,
        })
        .unwrap()
    }

    fn key(source: &str) -> Key {
        Key::new(&KeyParts {
            language: "c",
            image_id: "sha256:1",
            argv: &["gcc".to_owned()],
            env: &[],
            limits: "",
            sources: &[("main.c", source.as_bytes())],
        })
    }

    #[test]
    fn keys_differ_with_every_part() {
        let base = KeyParts {
            language: "c",
            image_id: "sha256:1",
            argv: &["gcc".to_owned(), "-O2".to_owned()],
            env: &[],
            limits: "",
            sources: &[("main.c", b"x")],
        };
        let argv = ["gcc-O2".to_owned()];
        let others = [
            KeyParts {
                language: "cpp",
                ..base
            },
            KeyParts {
                image_id: "sha256:2",
                ..base
            },
            KeyParts {
                argv: &argv,
                ..base
            },
            KeyParts {
                sources: &[("main.c", b"y")],
                ..base
            },
            KeyParts {
                sources: &[("main.c", b"x"), ("a.h", b"")],
                ..base
            },
        ];
        let first = Key::new(&base);
        assert_eq!(first, Key::new(&base));
        for other in &others {
            assert_ne!(first, Key::new(other), "{other:?}");
        }
    }

    #[test]
    fn an_entry_round_trips_and_a_flipped_byte_is_tampered() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = cache(tmp.path(), 1 << 20);
        let mode = fs::metadata(&cache.config.dir).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        let pack = tmp.path().join("pack");
        fs::write(&pack, b"the build").unwrap();
        let k = key("a");
        let out = tmp.path().join("out");
        assert_eq!(cache.fetch(&k, "c", &out), Lookup::Miss);
        assert!(!out.exists());
        cache.store(&k, &pack).unwrap();
        let entry = cache.entry_path(&k);
        assert_eq!(fs::metadata(&entry).unwrap().mode() & 0o777, 0o600);
        assert_eq!(cache.fetch(&k, "c", &out), Lookup::Hit);
        assert_eq!(fs::read(&out).unwrap(), b"the build");
        fs::remove_file(&out).unwrap();

        let mut bytes = fs::read(&entry).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&entry, &bytes).unwrap();
        assert_eq!(cache.fetch(&k, "c", &out), Lookup::Tampered);
        assert!(!entry.exists() && !out.exists());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses, stats.tampered), (1, 1, 1));
    }

    #[test]
    fn storing_evicts_the_least_recently_used() {
        let tmp = tempfile::tempdir().unwrap();
        // Each entry is about 100 bytes of header and 1000 of pack: two fit, three do not.
        let cache = cache(tmp.path(), 2500);
        let pack = tmp.path().join("pack");
        fs::write(&pack, vec![1u8; 1000]).unwrap();
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let out = tmp.path().join("out");
        cache.store(&a, &pack).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        cache.store(&b, &pack).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(cache.fetch(&a, "c", &out), Lookup::Hit);
        fs::remove_file(&out).unwrap();
        cache.store(&c, &pack).unwrap();
        assert!(cache.entry_path(&a).exists());
        assert!(!cache.entry_path(&b).exists());
        assert!(cache.entry_path(&c).exists());
        assert_eq!(cache.stats().evictions, 1);

        // More than half the cache: refused, nothing evicted.
        fs::write(&pack, vec![1u8; 1300]).unwrap();
        assert!(matches!(
            cache.store(&key("d"), &pack),
            Err(CacheError::TooLarge { .. })
        ));
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn a_directory_others_can_reach_is_not_used() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("open");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let opened = CompileCache::open(CompileCacheConfig {
            dir: dir.clone(),
            max_bytes: 1,
        });
        assert!(
            matches!(opened, Err(CacheError::Unsafe { .. })),
            "{opened:?}"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let opened = CompileCache::open(CompileCacheConfig {
            dir: link,
            max_bytes: 1,
        });
        assert!(
            matches!(opened, Err(CacheError::Unsafe { .. })),
            "{opened:?}"
        );
    }
}
