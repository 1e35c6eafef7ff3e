//! The commit step: puts the staged files in place in one round trip, and
//! records first what that makes necessary.

use super::Exec;
use crate::model::{FileMode, Owed};
use crate::remote::probe::pending_marker;
use crate::remote::shell_quote as q;
use crate::Error;

/// One staged file to put in place.
pub struct Placement<'a> {
    pub tmp: &'a str,
    pub dest: &'a str,
    pub owner: &'a str,
    pub group: &'a str,
    pub mode: FileMode,
    /// Its sha256, to enter in the server's hash cache (never a secret's).
    pub sha256: Option<&'a str>,
}

/// The commit script: check this run still holds the lock (`fence`),
/// record `marker` at `marker_path` (written and fsynced before any
/// rename), fsync the temps, then for each file chown, chmod and rename it
/// over its destination (`mv -T`: never into a directory), each step
/// checked, then fsync the directories so the renames survive a crash. It
/// prints `placed DEST` per file; on a failure it says which file and step
/// on one line, removes the temps not placed and exits 1.
pub fn commit_script(files: &[Placement<'_>], marker: &[Owed], marker_path: &str, fence: Option<String>) -> String {
    let temps: Vec<String> = files.iter().map(|f| q(f.tmp)).collect();
    // Each step's own words are kept and reported on the one line that says
    // which file and which step failed.
    let mut script =
        format!("set -e\nfail() {{ echo \"$1${{o:+: $o}}\" | tr '\\n' ' ' >&2; exit 1; }}\nrun() {{ o=$(\"$@\" 2>&1); }}\nmt=\ntrap 'rm -f {} $mt' EXIT\n", temps.join(" "));
    if let Some(f) = fence {
        script.push_str(&f);
    }
    if !marker.is_empty() {
        // A fresh mktemp file beside it, renamed over it: never written
        // through anything at its path or at a predictable temp name; the
        // old marker read only if it is a regular file, not a link.
        let lines: Vec<String> = marker.iter().map(|l| q(&l.to_string())).collect();
        let (dir, name) = marker_path.rsplit_once('/').unwrap_or((".", marker_path));
        script.push_str(&format!(
            "o=; mt=$(mktemp {tmpl}) || fail 'cannot write {m}'\n\
             {{ if [ -f {mq} ] && [ ! -L {mq} ]; then cat {mq}; fi; printf '%s\\n' {lines}; }} | awk '!seen[$0]++' > \"$mt\" || fail 'cannot write {m}'\n\
             run sync \"$mt\" || fail 'cannot write {m}'\nrun mv -fT \"$mt\" {mq} || fail 'cannot write {m}'\nmt=\n",
            lines = lines.join(" "),
            tmpl = q(&format!("{dir}/.{name}.XXXXXXXXXX")),
            m = marker_path,
            mq = q(marker_path),
        ));
    }
    // The data first (staging started each temp's fsync; this waits for
    // whatever is still being written back), then the renames, then the
    // directories that hold them.
    script.push_str(&format!("run sync {} || fail 'fsync of the uploaded files failed'\n", temps.join(" ")));
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        let (t, d) = (q(f.tmp), q(f.dest));
        script.push_str(&format!(
            "run chown -h {o}:{g} {t} || fail 'chown {o}:{g} {dest} failed'\n\
             run chmod {m} {t} || fail 'chmod {m} {dest} failed'\n\
             if [ -L {d} ] || {{ [ -e {d} ] && [ ! -f {d} ]; }}; then o=; fail '{dest} is not a regular file'; fi\n\
             run mv -fT {t} {d} || fail 'rename into {dest} failed'\n\
             echo placed {d}\n",
            o = f.owner,
            g = f.group,
            m = f.mode,
            dest = f.dest,
        ));
        dirs.insert(f.dest.rsplit_once('/').map_or("/", |(d, _)| if d.is_empty() { "/" } else { d }));
    }
    script.push_str(&format!("run sync {} || fail 'fsync of the directories failed'\ntrap - EXIT\n", dirs.iter().map(|d| q(d)).collect::<Vec<_>>().join(" ")));
    script
}

/// Shell lines entering the placed public files in the server's hash cache
/// (under the stamp each has now), so the next read need not hash them.
/// Best effort: a cache that cannot be written only costs a hash.
/// A binary's `--version` line known here goes with it (`version SHA LINE`).
pub fn cache_entries(files: &[Placement<'_>], versions: &std::collections::BTreeMap<String, String>) -> String {
    use crate::remote::probe::files;
    let mut lines: Vec<String> = files.iter().filter_map(|f| f.sha256.map(|sha| files::cache_entry(f.dest, sha))).collect();
    for sha in files.iter().filter_map(|f| f.sha256) {
        if let Some(v) = versions.get(sha).and_then(|v| files::cache_version(sha, v)) {
            lines.push(v);
        }
    }
    files::cache_append(&lines)
}

/// A shell line removing `lines` from the pending marker at `marker_path`
/// once done (and the marker when nothing is left).
pub fn clear_marker(lines: &[Owed], marker_path: &str) -> String {
    let m = q(marker_path);
    let exprs: Vec<String> = lines.iter().map(|l| format!("-e {}", q(&format!("/^{}$/d", l.to_string().replace('.', "\\."))))).collect();
    format!("if [ -f {m} ] && [ ! -L {m} ]; then sed -i {} {m} && {{ [ -s {m} ] || rm -f {m}; }}; fi", exprs.join(" "))
}

pub async fn run(x: &mut Exec<'_>, dests: &[String], marker: &[Owed]) -> Result<(), Error> {
    // This commit's files; the rest stay staged for a later pass's commit.
    let (staged, later): (Vec<_>, Vec<_>) = std::mem::take(&mut x.staged).into_iter().partition(|s| dests.iter().any(|d| d == x.desired.files[s.index].spec.dest));
    x.staged = later;
    if staged.is_empty() {
        return Ok(());
    }
    let placements: Vec<Placement<'_>> = staged
        .iter()
        .map(|s| {
            let f = &x.desired.files[s.index].spec;
            let d = &x.desired.files[s.index];
            Placement { tmp: &s.tmp, dest: f.dest, owner: f.owner, group: f.group, mode: FileMode(f.mode), sha256: (!f.kind.is_secret()).then_some(d.sha256.as_str()) }
        })
        .collect();
    debug_assert!(placements.iter().all(|p| dests.iter().any(|d| d == p.dest)), "the commit places what the plan names");
    let mut script = commit_script(&placements, marker, &pending_marker(), x.lock.map(|l| l.fence()));
    script.push_str(&cache_entries(&placements, &x.desired.versions));
    let out = x.host.sh(&script).await?;
    let placed: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.strip_prefix("placed ")).map(str::to_string).collect();
    for s in staged.iter().filter(|s| placed.iter().any(|p| p == x.desired.files[s.index].spec.dest)) {
        x.outcome.bytes_sent += s.sent;
        x.outcome.bytes_uploaded += x.desired.files[s.index].size;
        x.outcome.uploaded.push(x.desired.files[s.index].spec.dest.to_string());
    }
    if !out.status.success() {
        let why = crate::output::redact::line(String::from_utf8_lossy(&out.stderr).trim());
        let before = if placed.is_empty() { String::new() } else { format!(" (placed before it: {})", placed.join(", ")) };
        return Err(Error::Server(format!("{}: commit failed: {why}{before}", x.host.destination)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn me() -> (String, String) {
        let o = |a: &str| String::from_utf8(std::process::Command::new("id").arg(a).output().unwrap().stdout).unwrap().trim().to_string();
        (o("-un"), o("-gn"))
    }

    /// The script, run here in a directory of its own: files land with their
    /// mode, the marker is written first, `placed` lines name each file.
    #[test]
    fn the_commit_script_places_every_file_and_writes_the_marker_first() {
        let d = tempfile::tempdir().unwrap();
        let (user, group) = me();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p(".a.kcp-tmp-1"), "A").unwrap();
        std::fs::write(p(".b.kcp-tmp-2"), "B").unwrap();
        std::fs::write(p("b"), "old").unwrap();
        let (ta, tb, a, b, m) = (p(".a.kcp-tmp-1"), p(".b.kcp-tmp-2"), p("a"), p("b"), p("pending"));
        let files = [
            Placement { tmp: &ta, dest: &a, owner: &user, group: &group, mode: FileMode(0o600), sha256: None },
            Placement { tmp: &tb, dest: &b, owner: &user, group: &group, mode: FileMode(0o644), sha256: Some("abc") },
        ];
        let script = commit_script(&files, &[Owed::DaemonReload, Owed::Restart(crate::model::APISERVER)], &m, None);
        let out = std::process::Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("placed {a}\nplaced {b}\n"));
        assert_eq!((std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap()), ("A".into(), "B".into()));
        assert_eq!(std::fs::metadata(&a).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::metadata(&b).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::read_to_string(&m).unwrap(), format!("daemon-reload\nrestart {}\n", crate::model::APISERVER.unit()));
        assert!(!std::path::Path::new(&ta).exists() && !std::path::Path::new(&format!("{m}.tmp")).exists());
        // Each systemctl step then clears its line; the last takes the marker.
        let run = |s: String| assert!(std::process::Command::new("sh").arg("-c").arg(s).status().unwrap().success());
        run(clear_marker(&[Owed::DaemonReload], &m));
        assert_eq!(std::fs::read_to_string(&m).unwrap(), format!("restart {}\n", crate::model::APISERVER.unit()));
        run(clear_marker(&[Owed::Restart(crate::model::APISERVER)], &m));
        assert!(!std::path::Path::new(&m).exists());
        // A second pass's commit adds to what the first still owes.
        std::fs::write(&m, format!("restart {}\n", crate::model::APISERVER.unit())).unwrap();
        run(commit_script(&[], &[Owed::DaemonReload, Owed::Restart(crate::model::APISERVER)], &m, None));
        assert_eq!(std::fs::read_to_string(&m).unwrap(), format!("restart {}\ndaemon-reload\n", crate::model::APISERVER.unit()));
    }

    /// A destination that became a directory stops the commit on one line
    /// naming it; what was placed before it is reported; no temp is left.
    #[test]
    fn a_failing_step_names_the_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let (user, group) = me();
        let p = |n: &str| d.path().join(n).display().to_string();
        std::fs::write(p(".a.kcp-tmp-1"), "A").unwrap();
        std::fs::write(p(".b.kcp-tmp-2"), "B").unwrap();
        std::fs::create_dir(p("b")).unwrap();
        let (ta, tb, a, b) = (p(".a.kcp-tmp-1"), p(".b.kcp-tmp-2"), p("a"), p("b"));
        let files = [
            Placement { tmp: &ta, dest: &a, owner: &user, group: &group, mode: FileMode(0o600), sha256: None },
            Placement { tmp: &tb, dest: &b, owner: &user, group: &group, mode: FileMode(0o644), sha256: Some("abc") },
        ];
        let out = std::process::Command::new("sh").arg("-c").arg(commit_script(&files, &[], &p("m"), None)).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("placed {a}\n"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim(), format!("{b} is not a regular file"));
        assert!(!std::path::Path::new(&tb).exists(), "the temp not placed is removed");
        assert!(std::path::Path::new(&b).is_dir(), "nothing was moved into the directory");
        // A tool that fails is quoted on the same line.
        std::fs::write(&ta, "A").unwrap();
        let bad = [Placement { tmp: &ta, dest: &a, owner: "no-such-user-kcp", group: &group, mode: FileMode(0o600), sha256: None }];
        let out = std::process::Command::new("sh").arg("-c").arg(commit_script(&bad, &[], &p("m"), None)).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("chown no-such-user-kcp:{group} {a} failed: chown: invalid user")), "{err}");
        assert_eq!(err.trim().lines().count(), 1);
    }
}
