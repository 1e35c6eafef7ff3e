//! What the server has, gathered in one SSH round trip by one shell script:
//! architecture, systemd, each layout file's sha256/mode/owner/type,
//! directories (mode, owner), unit states (with NeedDaemonReload, drop-ins,
//! the running process's command line and start time), listening sockets,
//! free disk, leftover temp files from an interrupted upload, bootstrap's
//! pending-work marker, the server's clock, and the text of units and
//! configs (for diffs).

use std::collections::BTreeMap;

use base64::Engine;

use crate::model::{FileKind, DIRECTORIES, FILES, STATE_DIR, UNITS};
use crate::remote::Host;
use crate::Error;

/// Temp files are `.NAME.kcp-tmp-RANDOM` beside their destination.
pub const TEMP_MARKER: &str = ".kcp-tmp-";

/// What an interrupted run left to do, written in the commit round trip
/// before any file is renamed into place and cleared as each systemctl step
/// is done: `daemon-reload` and `restart UNIT` lines.
pub fn pending_marker() -> String {
    format!("{STATE_DIR}/pending")
}

/// Sets `$H` to the server's fastest sha256 command: OpenSSL's (SHA-NI where
/// the CPU has it) when installed, else coreutils' sha256sum. Both print the
/// hash as the first word.
pub const HASH_CMD: &str = "if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteFile {
    /// Empty unless a regular file.
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub size: u64,
    /// `stat -c %F` without following links: `regular file`, `symbolic link`, `directory`…
    pub kind: String,
}

impl RemoteFile {
    pub fn is_regular(&self) -> bool {
        self.kind == "regular file" || self.kind == "regular empty file"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteDir {
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// `stat -L -c %F`: `directory` unless something else sits there.
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitState {
    /// UnitFileState: enabled, disabled, or empty when not installed.
    pub enabled: String,
    /// ActiveState: active, inactive, failed, activating…
    pub active: String,
    pub sub: String,
    pub active_enter_monotonic: u64,
    /// ActiveEnterTimestamp in seconds since the epoch (server clock), 0 if never.
    pub active_enter_unix: u64,
    pub restarts: u32,
    pub main_pid: u32,
    /// systemd has read an older version of the unit file than is on disk.
    pub need_daemon_reload: bool,
    /// Every drop-in that changes the unit (/etc, /run, /usr/lib).
    pub drop_ins: Vec<String>,
    /// The unit file systemd loaded.
    pub fragment: String,
    /// The running main process's argv.
    pub cmdline: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listener {
    pub addr: String,
    pub port: u16,
    /// Process name as ss shows it (cut at 15 characters by the kernel).
    pub process: Option<String>,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Facts {
    pub arch: String,
    pub systemd: bool,
    pub files: BTreeMap<String, RemoteFile>,
    pub dirs: BTreeMap<String, RemoteDir>,
    pub units: BTreeMap<String, UnitState>,
    pub listeners: Vec<Listener>,
    /// directory → (mount point, available bytes)
    pub disk: BTreeMap<String, (String, u64)>,
    pub stale: Vec<String>,
    /// Lines of the pending-work marker an interrupted run left.
    pub pending: Vec<String>,
    /// The server's clock when the facts were read (seconds since the epoch).
    pub now: f64,
    #[serde(skip)]
    pub texts: BTreeMap<String, String>,
}

impl Facts {
    /// Is `unit` running (or starting)?
    pub fn active(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(|s| matches!(s.active.as_str(), "active" | "activating" | "reloading"))
    }
}

use crate::remote::shell_quote as q;

/// The gather script. Every path comes from the compiled-in layout.
pub fn script() -> String {
    let files: Vec<String> = FILES.iter().map(|f| q(f.dest)).collect();
    let texts: Vec<String> = FILES.iter().filter(|f| matches!(f.kind, FileKind::Unit | FileKind::Config)).map(|f| q(f.dest)).collect();
    let dirs: Vec<String> = DIRECTORIES.iter().map(|d| q(d.path)).collect();
    let units: Vec<String> = UNITS.iter().map(|u| q(u.file_name)).collect();
    format!(
        r#"T=$(printf '\t')
{hash_cmd}
echo "arch${{T}}$(uname -m)"
if [ -d /run/systemd/system ]; then echo "systemd${{T}}yes"; else echo "systemd${{T}}no"; fi
echo "now${{T}}$(date +%s.%N)"
for f in {files}; do [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\0' "$f"; done | xargs -0 -r -P 4 -n 1 $H | sed "s|^|sum${{T}}|"
for f in {files}; do if [ -e "$f" ] || [ -L "$f" ]; then echo "stat${{T}}$f${{T}}$(stat -c "%a${{T}}%U${{T}}%G${{T}}%s${{T}}%F" "$f")"; fi; done
for f in {texts}; do [ -f "$f" ] && [ ! -L "$f" ] && echo "text${{T}}$f${{T}}$(base64 -w0 "$f")"; done
[ -f {pending} ] && sed "s|^|pending${{T}}|" {pending}
for d in {dirs}; do
  [ -e "$d" ] && echo "dir${{T}}$d${{T}}$(stat -L -c "%a${{T}}%U${{T}}%G${{T}}%F" "$d")"
  p=$d; while [ ! -d "$p" ]; do p=$(dirname "$p"); done
  df -PB1 "$p" | awk -v d="$d" -v T="$T" 'NR==2{{print "disk" T d T $6 T $4}}'
  for t in "$d"/.*{marker}*; do [ -e "$t" ] && echo "stale${{T}}$t"; done
done
if command -v systemctl >/dev/null; then
  for u in {units}; do
    systemctl show -p UnitFileState -p ActiveState -p SubState -p ActiveEnterTimestampMonotonic -p NRestarts -p MainPID -p NeedDaemonReload -p DropInPaths -p FragmentPath "$u" 2>/dev/null | sed "s|^|prop${{T}}$u${{T}}|"
    systemctl show --timestamp=unix -p ActiveEnterTimestamp "$u" 2>/dev/null | sed "s|^|prop${{T}}$u${{T}}|"
    pid=$(systemctl show -p MainPID --value "$u" 2>/dev/null)
    [ -n "$pid" ] && [ "$pid" != 0 ] && echo "cmdline${{T}}$u${{T}}$(base64 -w0 /proc/$pid/cmdline 2>/dev/null)"
  done
fi
ss -Htlnp 2>/dev/null | sed "s|^|ss${{T}}|"
true
"#,
        files = files.join(" "),
        texts = texts.join(" "),
        dirs = dirs.join(" "),
        units = units.join(" "),
        marker = TEMP_MARKER,
        hash_cmd = HASH_CMD,
        pending = q(&pending_marker()),
    )
}

/// Parses one `ss -Htlnp` line.
pub fn parse_ss(line: &str) -> Option<Listener> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = f.get(3)?;
    let (addr, port) = local.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let (mut process, mut pid) = (None, None);
    if let Some(u) = line.find("users:((\"") {
        let rest = &line[u + 9..];
        process = rest.split('"').next().map(str::to_string);
        pid = rest.split("pid=").nth(1).and_then(|p| p.split([',', ')']).next()).and_then(|p| p.parse().ok());
    }
    Some(Listener { addr: addr.trim_matches(['[', ']']).to_string(), port, process, pid })
}

/// Parses the gather script's output.
pub fn parse(out: &str) -> Facts {
    let mut f = Facts::default();
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    for line in out.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["arch", a] => f.arch = a.to_string(),
            ["systemd", s] => f.systemd = *s == "yes",
            ["sum", rest] => {
                // `HASH  path` (sha256sum) or `HASH *path` (openssl -r).
                if let Some((sha, path)) = rest.split_once(' ') {
                    sums.insert(path.trim_start_matches(' ').trim_start_matches('*').to_string(), sha.to_string());
                }
            }
            ["stat", path, mode, owner, group, size, kind] => {
                f.files.insert(
                    path.to_string(),
                    RemoteFile {
                        sha256: String::new(),
                        mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                        owner: owner.to_string(),
                        group: group.to_string(),
                        size: size.parse().unwrap_or(0),
                        kind: kind.to_string(),
                    },
                );
            }
            ["now", t] => f.now = t.parse().unwrap_or(0.0),
            ["pending", l] => f.pending.push(l.trim().to_string()),
            ["cmdline", unit, b64] => {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    f.units.entry(unit.to_string()).or_default().cmdline =
                        String::from_utf8_lossy(&b).split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect();
                }
            }
            ["text", path, b64] => {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    f.texts.insert(path.to_string(), String::from_utf8_lossy(&b).into_owned());
                }
            }
            ["dir", path, mode, owner, group, kind] => {
                f.dirs.insert(
                    path.to_string(),
                    RemoteDir { mode: u32::from_str_radix(mode, 8).unwrap_or(0), owner: owner.to_string(), group: group.to_string(), kind: kind.to_string() },
                );
            }
            ["disk", dir, mount, avail] => {
                f.disk.insert(dir.to_string(), (mount.to_string(), avail.parse().unwrap_or(0)));
            }
            ["stale", path] => f.stale.push(path.to_string()),
            ["prop", unit, kv] => {
                let st = f.units.entry(unit.to_string()).or_default();
                if let Some((k, v)) = kv.split_once('=') {
                    match k {
                        "UnitFileState" => st.enabled = v.to_string(),
                        "ActiveState" => st.active = v.to_string(),
                        "SubState" => st.sub = v.to_string(),
                        "ActiveEnterTimestampMonotonic" => st.active_enter_monotonic = v.parse().unwrap_or(0),
                        "NRestarts" => st.restarts = v.parse().unwrap_or(0),
                        "MainPID" => st.main_pid = v.parse().unwrap_or(0),
                        "NeedDaemonReload" => st.need_daemon_reload = v == "yes",
                        "DropInPaths" => st.drop_ins = v.split_whitespace().map(str::to_string).collect(),
                        "FragmentPath" => st.fragment = v.to_string(),
                        "ActiveEnterTimestamp" => st.active_enter_unix = v.trim_start_matches('@').parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            ["ss", rest] => f.listeners.extend(parse_ss(rest)),
            _ => {}
        }
    }
    for (path, file) in f.files.iter_mut() {
        file.sha256 = sums.remove(path).unwrap_or_default();
    }
    f
}

/// Runs the gather script on `host` (the server's clock is read in it; the
/// local time it answered is kept to compare Lease times with).
pub async fn gather(host: &Host) -> Result<Facts, Error> {
    let out = host.sh(&script()).await?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if host.sudo && (err.contains("a password is required") || err.contains("sudo:")) {
            return Err(Error::Input(format!(
                "{}: the login user is not root and `sudo -n` is refused ({}): log in as root, or allow passwordless sudo",
                host.destination,
                err.trim().lines().next().unwrap_or("")
            )));
        }
        return Err(Error::Server(format!("{}: gathering facts failed: {}", host.destination, err.trim())));
    }
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_of_line() {
        let out = "arch\tx86_64\nsystemd\tyes\nnow\t1796049323.105266432\nsum\tabc  /usr/local/bin/kubectl\nsum\tdef */usr/local/bin/kube-apiserver\nstat\t/usr/local/bin/kube-apiserver\t755\troot\troot\t7\tregular file\nstat\t/usr/local/bin/kubectl\t755\troot\troot\t42\tregular file\nstat\t/var/lib/kubernetes/ca.crt\t777\troot\troot\t9\tsymbolic link\ntext\t/etc/x\taGk=\ndir\t/var/lib/kubernetes\t750\troot\tadm\tdirectory\ndisk\t/var/lib/kubernetes\t/\t1000\nstale\t/var/lib/kubernetes/.ca.key.kcp-tmp-1\npending\trestart kube-apiserver.service\nprop\tkube-apiserver.service\tActiveState=active\nprop\tkube-apiserver.service\tNRestarts=2\nprop\tkube-apiserver.service\tNeedDaemonReload=yes\nprop\tkube-apiserver.service\tDropInPaths=/etc/systemd/system/kube-apiserver.service.d/x.conf /run/systemd/system/kube-apiserver.service.d/y.conf\nprop\tkube-apiserver.service\tActiveEnterTimestamp=@1796050104\ncmdline\tkube-apiserver.service\tL3gALS12PTIA\nss\tLISTEN 0      4096               *:6443             *:*    users:((\"kube-apiserver\",pid=3016,fd=3))\nss\tLISTEN 0 4096 127.0.0.1:2379 0.0.0.0:* users:((\"etcd\",pid=30,fd=8))\n";
        let f = parse(out);
        assert_eq!(f.arch, "x86_64");
        assert!(f.systemd);
        assert_eq!(f.files["/usr/local/bin/kubectl"].mode, 0o755);
        assert_eq!(f.files["/usr/local/bin/kubectl"].sha256, "abc");
        assert_eq!(f.files["/usr/local/bin/kube-apiserver"].sha256, "def");
        assert_eq!(f.texts["/etc/x"], "hi");
        assert_eq!(f.dirs["/var/lib/kubernetes"], RemoteDir { mode: 0o750, owner: "root".into(), group: "adm".into(), kind: "directory".into() });
        assert!(f.files["/usr/local/bin/kubectl"].is_regular());
        assert!(!f.files["/var/lib/kubernetes/ca.crt"].is_regular());
        assert_eq!(f.pending, ["restart kube-apiserver.service"]);
        assert!((f.now - 1796049323.105).abs() < 0.01);
        let u = &f.units["kube-apiserver.service"];
        assert!(u.need_daemon_reload);
        assert_eq!(u.drop_ins.len(), 2);
        assert_eq!(u.active_enter_unix, 1796050104);
        assert_eq!(u.cmdline, ["/x", "--v=2"]);
        assert_eq!(f.disk["/var/lib/kubernetes"], ("/".to_string(), 1000));
        assert_eq!(f.stale.len(), 1);
        assert_eq!(f.units["kube-apiserver.service"].restarts, 2);
        assert_eq!(f.listeners[0], Listener { addr: "*".into(), port: 6443, process: Some("kube-apiserver".into()), pid: Some(3016) });
        assert_eq!(f.listeners[1].addr, "127.0.0.1");
    }

    #[test]
    fn the_script_names_every_layout_path() {
        let s = script();
        for f in FILES {
            assert!(s.contains(f.dest), "{}", f.dest);
        }
    }
}
