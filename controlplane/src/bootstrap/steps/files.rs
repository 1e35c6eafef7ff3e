//! Steps on files and directories in place: removing temps an interrupted
//! run left, making and correcting bootstrap's directories, fixing the mode
//! and owner of files whose content is right. One round trip each batch.

use super::Exec;
use crate::bootstrap::plan::{DirChange, ModeChange};
use crate::remote::shell_quote as q;
use crate::Error;

pub async fn remove_stale(x: &mut Exec<'_>, paths: &[String]) -> Result<(), Error> {
    x.host.sh_ok(&format!("rm -f {}", paths.iter().map(|p| q(p)).collect::<Vec<_>>().join(" "))).await.map(drop)
}

pub async fn directories(x: &mut Exec<'_>, create: &[DirChange], fix: &[DirChange]) -> Result<(), Error> {
    let mut script = String::from("set -e\n");
    for d in create {
        script.push_str(&format!("install -d -m {} -o root -g root {}\n", d.mode, q(&d.path)));
    }
    for d in fix {
        script.push_str(&format!("chown root:root {p} && chmod {} {p}\n", d.mode, p = q(&d.path)));
    }
    x.host.sh_ok(&script).await.map(drop)
}

pub async fn set_modes(x: &mut Exec<'_>, files: &[ModeChange]) -> Result<(), Error> {
    let mut script = String::from("set -e\n");
    for f in files {
        script.push_str(&format!(
            "chown {o}:{g} {d} || {{ echo 'chown {o}:{g} {dest} failed' >&2; exit 1; }}\nchmod {m} {d}\n",
            o = f.owner,
            g = f.group,
            d = q(&f.dest),
            dest = f.dest,
            m = f.mode
        ));
    }
    x.host.sh_ok(&script).await.map(drop)
}
