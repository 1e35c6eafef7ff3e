//! Remembered hashes of the jumpbox's assets, so a re-run hashes only what
//! changed: each entry is keyed by the file's (device, inode, size, mtime,
//! ctime), and the binaries' versions by their content hash, in one file
//! in the user's cache directory (`$XDG_CACHE_HOME/kubectl-bootstrap/`).
//!
//! - Any change to a file moves its ctime (which no user can set back):
//!   restoring size and mtime with `touch` does not make a stale entry match.
//! - A cache that does not parse, has another format, or that someone else
//!   owns or may write is ignored, never trusted.
//! - Secret files are never entered (they are small; their hashes are not
//!   for a file on disk).
//! - A file that changes while it is hashed is not entered.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

const FORMAT: &str = "kubectl-bootstrap/hash-cache/v1";
/// Entries kept at most (the oldest unused go first).
const MAX_ENTRIES: usize = 512;

/// What identifies one state of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: i64,
    pub ctime: i64,
    pub ctime_ns: i64,
}

impl Stamp {
    pub fn of(md: &std::fs::Metadata) -> Stamp {
        Stamp { dev: md.dev(), ino: md.ino(), size: md.size(), mtime: md.mtime(), mtime_ns: md.mtime_nsec(), ctime: md.ctime(), ctime_ns: md.ctime_nsec() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    sha256: String,
    /// The run that last used it (for pruning).
    used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    format: String,
    files: BTreeMap<PathBuf, Entry>,
    /// sha256 of a binary → its `--version`'s Kubernetes version.
    versions: BTreeMap<String, String>,
}

/// The cache for one run.
#[derive(Debug)]
pub struct HashCache {
    path: Option<PathBuf>,
    stored: Mutex<Stored>,
    run: u64,
    /// Hashes served from the cache this run, and computed.
    pub hits: std::sync::atomic::AtomicUsize,
    pub misses: std::sync::atomic::AtomicUsize,
}

/// `$XDG_CACHE_HOME/kubectl-bootstrap/hashes.json`, else under `~/.cache`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute()).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("kubectl-bootstrap").join("hashes.json"))
}

/// Reads the cache at `path` if it is ours: a regular file owned by this
/// user, writable by nobody else, of this format.
fn load(path: &Path) -> Option<Stored> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    let md = f.metadata().ok()?;
    let euid = unsafe { libc::geteuid() };
    if !md.file_type().is_file() || md.uid() != euid || md.permissions().mode() & 0o022 != 0 || md.len() > 4 << 20 {
        return None;
    }
    let mut text = String::new();
    f.take(4 << 20).read_to_string(&mut text).ok()?;
    let s: Stored = serde_json::from_str(&text).ok()?;
    let sane = s.format == FORMAT && s.files.values().all(|e| e.sha256.len() == 64 && e.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    sane.then_some(s)
}

impl HashCache {
    /// The user's cache (empty when there is none, or it is not to be trusted).
    pub fn open() -> HashCache {
        match default_path() {
            Some(p) => Self::at(&p),
            None => Self::disabled(),
        }
    }

    /// The cache at `path`.
    pub fn at(path: &Path) -> HashCache {
        let stored = load(path).unwrap_or_else(|| Stored { format: FORMAT.into(), ..Default::default() });
        let run = stored.files.values().map(|e| e.used).max().unwrap_or(0) + 1;
        HashCache { path: Some(path.to_path_buf()), stored: Mutex::new(stored), run, hits: Default::default(), misses: Default::default() }
    }

    /// No cache: every file is hashed.
    pub fn disabled() -> HashCache {
        HashCache { path: None, stored: Mutex::new(Stored { format: FORMAT.into(), ..Default::default() }), run: 1, hits: Default::default(), misses: Default::default() }
    }

    /// Size and sha256 of the regular file `p`: from the cache when its
    /// stamp is unchanged, else hashed (and entered unless `secret`).
    pub fn hash(&self, asset: &crate::local::files::Asset, secret: bool) -> Result<(u64, String), super::files::FileError> {
        use super::files::FileError;
        let p = asset.path.as_path();
        let mut f = asset.reopen().map_err(|source| FileError::Io { what: "read", source })?;
        let before = Stamp::of(&f.metadata().map_err(|source| FileError::Io { what: "stat", source })?);
        let key = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        if !secret {
            let mut s = self.stored.lock().expect("cache lock");
            if let Some(e) = s.files.get_mut(&key).filter(|e| e.stamp == before) {
                e.used = self.run;
                self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok((before.size, e.sha256.clone()));
            }
        }
        self.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (n, sha) = super::files::hash_reader(&mut f)?;
        let after = f.metadata().map(|m| Stamp::of(&m)).ok();
        if !secret && after == Some(before) && n == before.size {
            self.stored.lock().expect("cache lock").files.insert(key, Entry { stamp: before, sha256: sha.clone(), used: self.run });
        }
        Ok((n, sha))
    }

    /// The version remembered for a binary of this content.
    pub fn version(&self, sha256: &str) -> Option<String> {
        self.stored.lock().expect("cache lock").versions.get(sha256).cloned()
    }

    pub fn set_version(&self, sha256: &str, version: &str) {
        self.stored.lock().expect("cache lock").versions.insert(sha256.to_string(), version.to_string());
    }

    /// Writes the cache back (a private temp beside it, renamed over it);
    /// a cache that cannot be written is only a slower next run.
    pub fn save(&self) {
        let Some(path) = &self.path else { return };
        let Some(dir) = path.parent() else { return };
        let mut s = self.stored.lock().expect("cache lock");
        if s.files.len() > MAX_ENTRIES {
            let mut by_use: Vec<(u64, PathBuf)> = s.files.iter().map(|(p, e)| (e.used, p.clone())).collect();
            by_use.sort();
            for (_, p) in by_use.iter().take(s.files.len() - MAX_ENTRIES) {
                s.files.remove(p);
            }
        }
        let shas: std::collections::BTreeSet<String> = s.files.values().map(|e| e.sha256.clone()).collect();
        s.versions.retain(|k, _| shas.contains(k));
        let Ok(text) = serde_json::to_vec(&*s) else { return };
        let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir);
        let tmp = dir.join(format!(".hashes.{}.tmp", std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|_| f.sync_all()));
        if written.is_err() || std::fs::rename(&tmp, path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_hashed_again_even_with_size_and_mtime_put_back() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("c/hashes.json");
        let f = d.path().join("kube-apiserver");
        std::fs::write(&f, b"version one").unwrap();
        let c = HashCache::at(&cache);
        let (_, first) = c.hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap();
        c.save();
        let c = HashCache::at(&cache);
        assert_eq!(c.hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap().1, first);
        assert_eq!(c.hits.load(std::sync::atomic::Ordering::Relaxed), 1, "served from the cache");
        // Same size, mtime restored: ctime still moved.
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&f, b"version two").unwrap();
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().len(), 11);
        let (_, second) = c.hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap();
        assert_ne!(second, first, "the cache let a changed file through");
        assert_eq!(second, crate::local::files::sha256_hex(b"version two"));
    }

    #[test]
    fn secrets_are_never_entered_and_a_foreign_or_corrupt_cache_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("hashes.json");
        let key = d.path().join("ca.key");
        std::fs::write(&key, b"-----BEGIN PRIVATE KEY-----").unwrap();
        let c = HashCache::at(&cache);
        c.hash(&crate::local::files::Asset::open(&key).unwrap(), true).unwrap();
        c.save();
        let text = std::fs::read_to_string(&cache).unwrap();
        assert!(!text.contains("ca.key"), "{text}");
        assert_eq!(std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o600);
        // A forged entry in a cache others may write is not believed.
        let f = d.path().join("bin");
        std::fs::write(&f, b"real").unwrap();
        let c = HashCache::at(&cache);
        c.hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap();
        c.save();
        let forged = std::fs::read_to_string(&cache).unwrap().replace(&crate::local::files::sha256_hex(b"real"), &"0".repeat(64));
        std::fs::write(&cache, &forged).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(HashCache::at(&cache).hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap().1, crate::local::files::sha256_hex(b"real"));
        // Mode fixed: now it is ours and believed (which is what makes the
        // ownership check matter).
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(HashCache::at(&cache).hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap().1, "0".repeat(64));
        // Garbage: ignored.
        std::fs::write(&cache, b"{not json").unwrap();
        assert_eq!(HashCache::at(&cache).hash(&crate::local::files::Asset::open(&f).unwrap(), false).unwrap().1, crate::local::files::sha256_hex(b"real"));
    }
}
