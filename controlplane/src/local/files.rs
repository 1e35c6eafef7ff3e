//! Local files the plugins read (assets, `--kubeconfig`, `--config`): only
//! regular files, opened so that a FIFO or a device can never block or feed
//! the run without end.

use std::fs::File;
use std::io::Read;

use sha2::{Digest, Sha256};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Certificates, keys, kubeconfigs and config files are small; anything
/// larger than this is not one of them.
pub const SMALL_FILE_LIMIT: u64 = 16 << 20;

/// Why a local file cannot be used: what is wrong with it, never what it
/// holds (it may hold a secret). Reads as the rest of a sentence that
/// starts with the file's name.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("no such file")]
    Missing,
    #[error("permission denied (make it readable by this user)")]
    Denied,
    #[error("is {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {size} bytes, larger than any file of this kind ({limit} at most)")]
    TooLarge { size: u64, limit: u64 },
    #[error("grew past {0} bytes while being read")]
    Grew(u64),
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
    move |source| FileError::Io { what, source }
}

/// What a non-regular file is, in words.
pub fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// Opens `path` (following symlinks) only if it is a regular file. The open
/// itself does not block on a FIFO (O_NONBLOCK), and the type is checked on
/// the open handle, so a swap between check and open changes nothing.
pub fn open_regular(path: &Path) -> Result<(File, u64), FileError> {
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::Missing,
        std::io::ErrorKind::PermissionDenied => FileError::Denied,
        _ => FileError::Io { what: "open", source: e },
    })?;
    let md = f.metadata().map_err(io("stat"))?;
    if !md.file_type().is_file() {
        return Err(FileError::NotRegular(kind(md.file_type())));
    }
    Ok((f, md.len()))
}

/// A local asset: opened once, checked to be a regular file on that handle,
/// and read only through it afterwards (hashing, checks, the upload): a file
/// swapped at its path after the checks is never what is sent.
#[derive(Debug, Clone)]
pub struct Asset {
    pub path: std::path::PathBuf,
    file: std::sync::Arc<File>,
    pub len: u64,
}

impl Asset {
    pub fn open(path: &Path) -> Result<Asset, FileError> {
        let (file, len) = open_regular(path)?;
        Ok(Asset { path: path.to_path_buf(), file: std::sync::Arc::new(file), len })
    }
    /// The same open file with an offset of its own (`/proc/self/fd/N`:
    /// the same inode, whatever is at the path now).
    pub fn reopen(&self) -> std::io::Result<File> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))?;
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (self.file.metadata()?, f.metadata()?);
        if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
            return Err(std::io::Error::other("the asset's handle no longer reopens to the same file"));
        }
        Ok(f)
    }
    /// Metadata of the handle (not of whatever is at the path now).
    pub fn metadata(&self) -> std::io::Result<std::fs::Metadata> {
        self.file.metadata()
    }
    /// Reads all of it, at most `limit` bytes.
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>, FileError> {
        if self.len > limit {
            return Err(FileError::TooLarge { size: self.len, limit });
        }
        let f = self.reopen().map_err(io("read"))?;
        let mut buf = Vec::with_capacity(self.len as usize);
        f.take(limit + 1).read_to_end(&mut buf).map_err(io("read"))?;
        if buf.len() as u64 > limit {
            return Err(FileError::Grew(limit));
        }
        Ok(buf)
    }
    /// Still the file at its path (same device and inode)?
    pub fn still_at_path(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
            _ => false,
        }
    }
}

/// Reads a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(FileError::TooLarge { size: len, limit });
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut buf).map_err(io("read"))?;
    if buf.len() as u64 > limit {
        return Err(FileError::Grew(limit));
    }
    Ok(buf)
}

/// The Kubernetes release a binary of any architecture says it is,
/// without running it: the `gitVersion=v…` its build recorded
/// ([`crate::model::version::GIT_VERSION_MARK`]), read through the asset's
/// handle in 1 MiB pieces (`Kubernetes v1.20.2`, as `--version` prints it).
pub fn git_version(a: &Asset) -> Option<String> {
    let mark = crate::model::version::GIT_VERSION_MARK.as_bytes();
    let finder = memchr::memmem::Finder::new(mark);
    let mut f = a.reopen().ok()?;
    let mut buf = vec![0u8; 1 << 20];
    let mut have = 0;
    loop {
        let n = f.read(&mut buf[have..]).ok()?;
        have += n;
        if let Some(at) = finder.find(&buf[..have]) {
            let rest = &buf[at + mark.len()..have];
            match rest.iter().position(|b| !(b.is_ascii_alphanumeric() || b"._+-".contains(b))) {
                Some(end) => {
                    let v = std::str::from_utf8(&rest[..end]).ok().filter(|v| v.starts_with(|c: char| c.is_ascii_digit()) && end <= 64)?;
                    return Some(format!("Kubernetes v{v}"));
                }
                // The version runs on into the next piece: keep it from the mark.
                None if n > 0 && rest.len() < 64 => {
                    buf.copy_within(at..have, 0);
                    have -= at;
                    continue;
                }
                None => return None,
            }
        }
        if n == 0 {
            return None;
        }
        // Keep the tail: the mark may straddle two pieces.
        let keep = have.min(mark.len());
        buf.copy_within(have - keep..have, 0);
        have = keep;
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_bytes_wherever_it_falls() {
        let dir = tempfile::tempdir().unwrap();
        for pad in [0usize, 5, (1 << 20) - 14, (1 << 20) - 5, (1 << 20) + 3] {
            let p = dir.path().join(format!("bin-{pad}"));
            let mut bytes = vec![0u8; pad];
            bytes.extend_from_slice(b"build\t-ldflags=\"-X 'k8s.io/component-base/version.gitVersion=v1.20.2' -X x\"\x00more");
            std::fs::write(&p, &bytes).unwrap();
            assert_eq!(git_version(&Asset::open(&p).unwrap()).as_deref(), Some("Kubernetes v1.20.2"), "at {pad}");
        }
        let p = dir.path().join("none");
        std::fs::write(&p, b"\x7fELF no version here gitVersion=vX").unwrap();
        assert_eq!(git_version(&Asset::open(&p).unwrap()), None);
    }
}

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Size and sha256 of a regular file, streamed.
pub fn hash_file(p: &Path) -> Result<(u64, String), FileError> {
    let (mut f, _) = open_regular(p)?;
    hash_reader(&mut f)
}

/// Bytes read and sha256 of everything `r` yields, streamed.
pub fn hash_reader(f: &mut impl Read) -> Result<(u64, String), FileError> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io("read"))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_a_fifo_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_regular(&fifo, 100).unwrap_err().to_string(), "is a FIFO, not a regular file");
        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert_eq!(read_regular(&link, 100).unwrap_err().to_string(), "is a character device, not a regular file");
        assert_eq!(read_regular(dir.path(), 100).unwrap_err().to_string(), "is a directory, not a regular file");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 101]).unwrap();
        assert!(read_regular(&big, 100).unwrap_err().to_string().contains("larger than"));
        std::fs::write(&big, b"ok").unwrap();
        assert_eq!(read_regular(&big, 100).unwrap(), b"ok");
        assert_eq!(read_regular(&dir.path().join("nope"), 100).unwrap_err().to_string(), "no such file");
    }
}
