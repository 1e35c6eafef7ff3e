//! `kubectl bootstrap reset`: stop and disable the units, remove every file
//! bootstrap places and its own directories once empty. etcd and everything
//! else stay.

use crate::model::{DIRECTORIES, FILES, UNITS};
use crate::remote::probe::{pending_marker, TEMP_MARKER};
use crate::remote::shell_quote as q;
use crate::remote::systemd::Op;
use crate::remote::Host;
use crate::Error;

/// `kubectl bootstrap reset`: stops and disables the units, removes every file
/// bootstrap places and its own directories once empty. etcd and everything
/// else stay. Returns what it did, one line each.
pub async fn reset(host: &Host) -> Result<Vec<String>, Error> {
    // The apiserver's clients first: while they hold watches on it, the
    // apiserver's own shutdown waits for them (up to a minute).
    let mut units: Vec<String> = UNITS.iter().filter(|u| u.component != crate::model::APISERVER).map(|u| u.file_name.to_string()).collect();
    units.extend(UNITS.iter().filter(|u| u.component == crate::model::APISERVER).map(|u| u.file_name.to_string()));
    let files: Vec<String> = FILES.iter().map(|f| q(f.dest)).collect();
    let dirs: Vec<String> = DIRECTORIES.iter().filter(|d| d.owned).map(|d| q(d.path)).collect();
    let script = format!(
        "set -e\n{disable}\n\
         for f in {f}; do\n  d=$(dirname \"$f\"); b=$(basename \"$f\")\n  for t in \"$d\"/.\"$b\"{m}*; do [ -e \"$t\" ] && rm -f \"$t\"; done\n  if [ -e \"$f\" ]; then rm -f \"$f\" && echo \"removed $f\"; fi\ndone\n\
         rm -f {marker} {cache} {cache}.tmp\n\
         {reload}\nsystemctl reset-failed {u} 2>/dev/null || true\n\
         for d in {d}; do [ -d \"$d\" ] && rmdir \"$d\" 2>/dev/null && echo \"removed $d/\"; done\ntrue\n",
        disable = Op::DisableNow(units.clone()).command(),
        reload = Op::DaemonReload.command(),
        u = units.join(" "),
        f = files.join(" "),
        d = dirs.join(" "),
        m = TEMP_MARKER,
        marker = q(&pending_marker()),
        cache = q(&crate::remote::probe::hash_cache()),
    );
    Ok(host.sh_ok(&script).await?.lines().map(str::to_string).collect())
}
