//! What an upload needs to know and what an interrupted one left: temp
//! files beside the destinations (listed NUL-safe, base64, and only names
//! of the temp shape count), the pending-work marker (only a regular file,
//! root's, not a link, bounded), and the free space of each directory's
//! file system (`stat -f`: no mount point text to parse).

use super::{b64, list, malformed, Probe, ProbeError, Tag};
use crate::model::{DIRECTORIES, STATE_DIR};

pub(crate) const TAGS: &[Tag] = &[Tag::Pending, Tag::Stale, Tag::Disk];

/// Temp files are `.NAME.kcp-tmp-HEX` beside their destination.
pub const TEMP_MARKER: &str = ".kcp-tmp-";

/// What an interrupted run left to do, written in the commit round trip
/// before any file is renamed into place and cleared as each systemctl step
/// is done.
pub fn pending_marker() -> String {
    format!("{STATE_DIR}/pending")
}

/// The largest marker read: it holds a few short lines.
const MARKER_LIMIT: usize = 4096;

/// Is `path` a temp file bootstrap would have made in one of the layout's
/// directories: `DIR/.NAME.kcp-tmp-HEX`, nothing else (no other directory,
/// no control character, no path in the name)?
pub fn is_temp(path: &str) -> bool {
    let Some((dir, name)) = path.rsplit_once('/') else { return false };
    let Some((stem, suffix)) = name.rsplit_once(TEMP_MARKER) else { return false };
    DIRECTORIES.iter().any(|d| d.path == dir)
        && stem.starts_with('.')
        && stem.len() > 1
        && !suffix.is_empty()
        && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        && name.len() <= 255
        && unitfile::control_char(name).is_none()
}

pub(crate) fn script() -> String {
    let dirs: Vec<&str> = DIRECTORIES.iter().map(|d| d.path).collect();
    format!(
        "P={marker}; if [ -f \"$P\" ] && [ ! -L \"$P\" ] && [ \"$(stat -c %u \"$P\")\" = 0 ]; then echo \"pending${{T}}$(head -c {MARKER_LIMIT} \"$P\" | base64 -w0)\"; fi\n\
         set --; for d in {dirs}; do p=$d; while [ ! -d \"$p\" ]; do p=${{p%/*}}; [ -z \"$p\" ] && p=/; done; set -- \"$@\" \"$p\"\n\
           [ -d \"$d\" ] && [ ! -L \"$d\" ] && echo \"stale${{T}}$d${{T}}$(find \"$d\" -maxdepth 1 -mindepth 1 -name '.*{TEMP_MARKER}*' \\( -type f -o -type l \\) -print0 2>/dev/null | base64 -w0)\"\n\
         done\n\
         stat -f -c '%i %a %S' -- \"$@\" | awk -v T=\"$T\" -v d={dlist} 'BEGIN {{ split(d, D, \" \") }} {{ print \"disk\" T D[NR] T $1 T $2 T $3 }}'\n",
        marker = crate::remote::shell_quote(&pending_marker()),
        dirs = list(&dirs),
        dlist = crate::remote::shell_quote(&dirs.join(" ")),
    )
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Pending, [b]) => {
            let text = String::from_utf8_lossy(&b64(tag, b)?).into_owned();
            // Only work this version knows how to owe; anything else is not work.
            p.pending.extend(text.lines().filter_map(|l| l.parse::<crate::model::Owed>().ok()));
        }
        (Tag::Stale, [dir, b]) => {
            if !DIRECTORIES.iter().any(|d| d.path == *dir) {
                return Err(malformed(tag, "not a directory of the layout"));
            }
            for name in b64(tag, b)?.split(|c| *c == 0).filter(|n| !n.is_empty()) {
                // Anything else found by the pattern is left alone.
                if let Ok(path) = std::str::from_utf8(name) {
                    if is_temp(path) && path.starts_with(&format!("{dir}/")) {
                        p.stale.push(path.to_string());
                    }
                }
            }
        }
        (Tag::Disk, [dir, fsid, avail, bsize]) => {
            if !DIRECTORIES.iter().any(|d| d.path == *dir) {
                return Err(malformed(tag, "not a directory of the layout"));
            }
            let n = |s: &str| s.parse::<u64>().map_err(|_| malformed(tag, "not a number"));
            if fsid.is_empty() || !fsid.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(malformed(tag, "not a file system id"));
            }
            p.disk.insert(dir.to_string(), (fsid.to_string(), n(avail)?.saturating_mul(n(bsize)?)));
        }
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}
