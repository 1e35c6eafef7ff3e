//! What the server has, gathered in one SSH round trip by one shell script:
//! architecture, systemd, each layout file's sha256/mode/owner, directories,
//! unit states, listening sockets, free disk, leftover temp files from an
//! interrupted upload, and the text of units and configs (for diffs).

use std::collections::BTreeMap;

use base64::Engine;

use crate::model::{FileKind, DIRECTORIES, FILES, UNITS};
use crate::ssh::Host;
use crate::Error;

/// Temp files are `.NAME.kcp-tmp-RANDOM` beside their destination.
pub const TEMP_MARKER: &str = ".kcp-tmp-";

/// Sets `$H` to the server's fastest sha256 command: OpenSSL's (SHA-NI where
/// the CPU has it) when installed, else coreutils' sha256sum. Both print the
/// hash as the first word.
pub const HASH_CMD: &str = "if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi";

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RemoteFile {
    pub sha256: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnitState {
    /// UnitFileState: enabled, disabled, or empty when not installed.
    pub enabled: String,
    /// ActiveState: active, inactive, failed, activating…
    pub active: String,
    pub sub: String,
    pub active_enter_monotonic: u64,
    pub restarts: u32,
    pub main_pid: u32,
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
    pub dirs: BTreeMap<String, u32>,
    pub units: BTreeMap<String, UnitState>,
    pub listeners: Vec<Listener>,
    /// directory → (mount point, available bytes)
    pub disk: BTreeMap<String, (String, u64)>,
    pub stale: Vec<String>,
    #[serde(skip)]
    pub texts: BTreeMap<String, String>,
}

use crate::ssh::shell_quote as q;

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
for f in {files}; do [ -f "$f" ] && printf '%s\0' "$f"; done | xargs -0 -r -P 4 -n 1 $H | sed "s|^|sum${{T}}|"
for f in {files}; do [ -f "$f" ] && echo "stat${{T}}$f${{T}}$(stat -c "%a${{T}}%U${{T}}%G${{T}}%s" "$f")"; done
for f in {texts}; do [ -f "$f" ] && echo "text${{T}}$f${{T}}$(base64 -w0 "$f")"; done
for d in {dirs}; do
  [ -d "$d" ] && echo "dir${{T}}$d${{T}}$(stat -c %a "$d")"
  p=$d; while [ ! -d "$p" ]; do p=$(dirname "$p"); done
  df -PB1 "$p" | awk -v d="$d" -v T="$T" 'NR==2{{print "disk" T d T $6 T $4}}'
  for t in "$d"/.*{marker}*; do [ -e "$t" ] && echo "stale${{T}}$t"; done
done
if command -v systemctl >/dev/null; then
  for u in {units}; do
    systemctl show -p UnitFileState -p ActiveState -p SubState -p ActiveEnterTimestampMonotonic -p NRestarts -p MainPID "$u" 2>/dev/null | sed "s|^|prop${{T}}$u${{T}}|"
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
            ["stat", path, mode, owner, group, size] => {
                f.files.insert(
                    path.to_string(),
                    RemoteFile {
                        sha256: String::new(),
                        mode: u32::from_str_radix(mode, 8).unwrap_or(0),
                        owner: owner.to_string(),
                        group: group.to_string(),
                        size: size.parse().unwrap_or(0),
                    },
                );
            }
            ["text", path, b64] => {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    f.texts.insert(path.to_string(), String::from_utf8_lossy(&b).into_owned());
                }
            }
            ["dir", path, mode] => {
                f.dirs.insert(path.to_string(), u32::from_str_radix(mode, 8).unwrap_or(0));
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

/// Runs the gather script on `host`.
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
        let out = "arch\tx86_64\nsystemd\tyes\nsum\tabc  /usr/local/bin/kubectl\nsum\tdef */usr/local/bin/kube-apiserver\nstat\t/usr/local/bin/kube-apiserver\t755\troot\troot\t7\nstat\t/usr/local/bin/kubectl\t755\troot\troot\t42\ntext\t/etc/x\taGk=\ndir\t/var/lib/kubernetes\t700\ndisk\t/var/lib/kubernetes\t/\t1000\nstale\t/var/lib/kubernetes/.ca.key.kcp-tmp-1\nprop\tkube-apiserver.service\tActiveState=active\nprop\tkube-apiserver.service\tNRestarts=2\nss\tLISTEN 0      4096               *:6443             *:*    users:((\"kube-apiserver\",pid=3016,fd=3))\nss\tLISTEN 0 4096 127.0.0.1:2379 0.0.0.0:* users:((\"etcd\",pid=30,fd=8))\n";
        let f = parse(out);
        assert_eq!(f.arch, "x86_64");
        assert!(f.systemd);
        assert_eq!(f.files["/usr/local/bin/kubectl"].mode, 0o755);
        assert_eq!(f.files["/usr/local/bin/kubectl"].sha256, "abc");
        assert_eq!(f.files["/usr/local/bin/kube-apiserver"].sha256, "def");
        assert_eq!(f.texts["/etc/x"], "hi");
        assert_eq!(f.dirs["/var/lib/kubernetes"], 0o700);
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
