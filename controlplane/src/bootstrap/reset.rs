//! `kubectl bootstrap reset`: stop and disable the units, remove every file
//! bootstrap places and its own directories once empty. etcd and everything
//! else stay.

use crate::model::{Component, APISERVER, DIRECTORIES, FILES};
use crate::remote::probe::{pending_marker, TEMP_MARKER};
use crate::remote::shell_quote as q;
use crate::remote::systemd::Op;
use crate::remote::Host;
use crate::Error;

/// The reset script: the apiserver's clients first (while they hold
/// watches on it, the apiserver's own shutdown waits for them, up to a
/// minute); every placed file and temp (never through a link: `rm` removes
/// the link); bootstrap's own state; its own directories once empty.
pub fn script() -> String {
    let mut units: Vec<Component> = Component::clients().collect();
    units.push(APISERVER);
    let files: Vec<String> = FILES.iter().map(|f| q(f.dest)).collect();
    let dirs: Vec<String> = DIRECTORIES.iter().filter(|d| d.owned).map(|d| q(d.path)).collect();
    format!(
        "set -e\n{disable}\n\
         for f in {f}; do\n  d=${{f%/*}}; b=${{f##*/}}\n  for t in \"$d\"/.\"$b\"{m}*; do if [ -f \"$t\" ] || [ -L \"$t\" ]; then rm -f \"$t\"; fi; done\n  if [ -f \"$f\" ] || [ -L \"$f\" ]; then rm -f \"$f\" && echo \"removed $f\"; fi\ndone\n\
         rm -f {marker} {cache}\n\
         for t in {state}/.hashes.* {state}/.pending.*; do if [ -f \"$t\" ] || [ -L \"$t\" ]; then rm -f \"$t\"; fi; done\n\
         {reload}\nsystemctl reset-failed {u} 2>/dev/null || true\n\
         for d in {d}; do if [ -d \"$d\" ] && [ ! -L \"$d\" ] && rmdir \"$d\" 2>/dev/null; then echo \"removed $d/\"; fi; done\ntrue\n",
        disable = Op::DisableNow(units.clone()).command(),
        reload = Op::DaemonReload.command(),
        u = units.iter().map(|c| q(c.unit())).collect::<Vec<_>>().join(" "),
        f = files.join(" "),
        d = dirs.join(" "),
        m = TEMP_MARKER,
        marker = q(&pending_marker()),
        cache = q(&crate::remote::probe::hash_cache()),
        state = q(crate::model::STATE_DIR),
    )
}

/// `kubectl bootstrap reset` on one server: runs [`script`]. Returns what
/// it did, one line each (paths of the layout).
pub async fn reset(host: &Host) -> Result<Vec<String>, Error> {
    Ok(host.sh_ok(&script()).await?.lines().map(str::to_string).collect())
}
