//! Steps on files and directories in place: removing temps an interrupted
//! run left, making and correcting bootstrap's directories, fixing the mode
//! and owner of files whose content is right. One round trip each batch.

use super::Exec;
use crate::bootstrap::plan::{DirChange, ModeChange};
use crate::remote::shell_quote as q;
use crate::Error;

/// Removes temps an interrupted run left: only names of the temp shape in
/// the layout's directories (the probe listed no others), only files or
/// links (`rm` removes a link, never what it points at).
pub fn remove_stale_script(paths: &[String]) -> Option<String> {
    let paths: Vec<String> = paths.iter().filter(|p| crate::remote::probe::upload::is_temp(p)).map(|p| q(p)).collect();
    (!paths.is_empty()).then(|| format!("for t in {}; do if [ -f \"$t\" ] || [ -L \"$t\" ]; then rm -f -- \"$t\"; fi; done", paths.join(" ")))
}

pub async fn remove_stale(x: &mut Exec<'_>, paths: &[String]) -> Result<(), Error> {
    match remove_stale_script(paths) {
        Some(s) => x.host.sh_ok(&s).await.map(drop),
        None => Ok(()),
    }
}

/// Makes missing directories and gives bootstrap's own their mode and owner
/// back. A five-digit mode clears setgid and setuid, which GNU chmod keeps
/// on a directory for a four-digit one; never through a link.
pub fn directories_script(create: &[DirChange], fix: &[DirChange]) -> String {
    let mut script = String::from("set -e\n");
    for d in create {
        script.push_str(&format!("install -d -m 0{} -o root -g root {}\n", d.mode, q(&d.path)));
    }
    for d in fix {
        script.push_str(&format!(
            "if [ -L {p} ] || [ ! -d {p} ]; then echo '{path} is not a directory' >&2; exit 1; fi\nchown -h root:root {p} && chmod 0{} {p}\n",
            d.mode,
            p = q(&d.path),
            path = d.path
        ));
    }
    script
}

pub async fn directories(x: &mut Exec<'_>, create: &[DirChange], fix: &[DirChange]) -> Result<(), Error> {
    x.host.sh_ok(&directories_script(create, fix)).await.map(drop)
}

pub async fn set_modes(x: &mut Exec<'_>, files: &[ModeChange]) -> Result<(), Error> {
    x.host.sh_ok(&set_modes_script(files)).await.map(drop)
}

/// Fixes the mode and owner of files whose content is right: never through
/// a link, only on a regular file.
pub fn set_modes_script(files: &[ModeChange]) -> String {
    let mut script = String::from("set -e\n");
    for f in files {
        script.push_str(&format!(
            "if [ -L {d} ] || [ ! -f {d} ]; then echo '{dest} is not a regular file' >&2; exit 1; fi\n\
             chown -h {o}:{g} {d} || {{ echo 'chown {o}:{g} {dest} failed' >&2; exit 1; }}\nchmod 0{m} {d}\n",
            o = f.owner,
            g = f.group,
            d = q(&f.dest),
            dest = f.dest,
            m = f.mode
        ));
    }
    script
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileMode;

    /// A setgid directory (as a shared parent may pass it on) converges:
    /// the five-digit mode clears the bit a four-digit one keeps.
    #[test]
    fn an_odd_directory_mode_converges() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("own");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o2755)).unwrap();
        let fix = [DirChange { path: p.display().to_string(), mode: FileMode(0o700), was: None }];
        let me = String::from_utf8(std::process::Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
        // chown root:root needs root: run only the chmod part elsewhere.
        let script = directories_script(&[], &fix);
        let script = if me.trim() == "0" { script } else { script.replace("chown -h root:root", "true") };
        assert!(std::process::Command::new("sh").arg("-c").arg(&script).status().unwrap().success());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777, 0o700);
        // A link where a directory should be is refused, not followed.
        let l = d.path().join("link");
        std::os::unix::fs::symlink(&p, &l).unwrap();
        let fix = [DirChange { path: l.display().to_string(), mode: FileMode(0o700), was: None }];
        assert!(!std::process::Command::new("sh").arg("-c").arg(directories_script(&[], &fix)).status().unwrap().success());
    }
}
