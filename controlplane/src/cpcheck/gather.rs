//! Everything the host checks read, gathered in two SSH round trips: the
//! first reads units, states, processes, sockets, etcd; the second what the
//! installed flags point at (paths, certificates, the encryption providers).
//! Secret files never leave the server: only their mode/owner, the provider
//! names of the encryption config and the `server:` and client-certificate
//! lines of kubeconfigs are read.

use std::collections::BTreeMap;

use base64::Engine;

use crate::remote::probe::{parse_ss, Listener};
use crate::model::{FileKind, FILES, SCHEDULER_CONFIG, UNITS};
use crate::remote::Host;
use crate::Error;

#[derive(Debug, Clone, Default)]
pub struct UnitInfo {
    pub active: String,
    pub enabled: String,
    pub restarts: u32,
    pub main_pid: u32,
    /// systemd runs an older version of the unit than the file on disk.
    pub need_daemon_reload: bool,
    /// Drop-ins that change the unit.
    pub drop_ins: Vec<String>,
    /// The unit file systemd loaded.
    pub fragment: String,
    /// The installed unit file, if any.
    pub text: Option<String>,
    /// The running process's argv.
    pub cmdline: Vec<String>,
    /// `BINARY --version` of the installed binary.
    pub binary_version: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PathInfo {
    pub mode: u32,
    pub owner: String,
    pub group: String,
    pub kind: String,
}

#[derive(Debug, Clone, Default)]
pub struct HostData {
    pub units: BTreeMap<String, UnitInfo>,
    pub scheduler_config: Option<String>,
    pub listeners: Vec<Listener>,
    pub etcd_health: String,
    pub addresses: Vec<String>,
    pub paths: BTreeMap<String, PathInfo>,
    /// Certificates (public) by path.
    pub certs: BTreeMap<String, String>,
    /// kubeconfig path → (server URL, client certificate PEM).
    pub kubeconfigs: BTreeMap<String, (String, Option<String>)>,
    /// Provider names of the encryption config, in order.
    pub encryption_providers: Vec<String>,
    /// The layout's directories: mode, owner, group, type (following links).
    pub dirs: BTreeMap<String, PathInfo>,
    /// The server's clock (seconds since the epoch) when it was read.
    pub now: f64,
    /// The server's clock minus this machine's, in seconds.
    pub skew: f64,
}

use crate::remote::shell_quote as q;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Parses the first round trip.
fn parse_first(out: &str, d: &mut HostData) {
    for line in out.lines() {
        let p: Vec<&str> = line.splitn(3, '\t').collect();
        match p.as_slice() {
            ["prop", unit, kv] => {
                let u = d.units.entry(unit.to_string()).or_default();
                if let Some((k, v)) = kv.split_once('=') {
                    match k {
                        "ActiveState" => u.active = v.into(),
                        "UnitFileState" => u.enabled = v.into(),
                        "NRestarts" => u.restarts = v.parse().unwrap_or(0),
                        "MainPID" => u.main_pid = v.parse().unwrap_or(0),
                        "NeedDaemonReload" => u.need_daemon_reload = v == "yes",
                        "DropInPaths" => u.drop_ins = v.split_whitespace().map(str::to_string).collect(),
                        "FragmentPath" => u.fragment = v.to_string(),
                        _ => {}
                    }
                }
            }
            ["unittext", unit, t] => d.units.entry(unit.to_string()).or_default().text = Some(b64(t)),
            ["cmdline", unit, t] => {
                d.units.entry(unit.to_string()).or_default().cmdline = b64(t).split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect()
            }
            ["version", unit, v] => d.units.entry(unit.to_string()).or_default().binary_version = Some(v.trim().to_string()),
            ["schedconf", t] => d.scheduler_config = Some(b64(t)),
            ["ss", rest] => d.listeners.extend(parse_ss(rest)),
            ["etcd", rest] => d.etcd_health = rest.to_string(),
            ["addr", a] => d.addresses.push(a.split('/').next().unwrap_or(a).to_string()),
            ["now", t] => d.now = t.trim().parse().unwrap_or(0.0),
            ["dir", path, rest] => {
                let f: Vec<&str> = rest.split('\t').collect();
                if f.len() == 4 {
                    d.dirs.insert(path.to_string(), PathInfo { mode: u32::from_str_radix(f[0], 8).unwrap_or(0), owner: f[1].into(), group: f[2].into(), kind: f[3].into() });
                }
            }
            _ => {}
        }
    }
}

fn first_script(scheduler_config_path: &str) -> String {
    let mut s = String::from("T=$(printf '\\t')\necho \"now${T}$(date +%s.%N)\"\n");
    let dirs: Vec<String> = crate::model::DIRECTORIES.iter().map(|d| q(d.path)).collect();
    s.push_str(&format!("for d in {}; do [ -e \"$d\" ] && echo \"dir${{T}}$d${{T}}$(stat -L -c \"%a${{T}}%U${{T}}%G${{T}}%F\" \"$d\")\"; done\n", dirs.join(" ")));
    for u in UNITS {
        let n = q(u.file_name);
        s.push_str(&format!(
            "systemctl show -p ActiveState -p UnitFileState -p NRestarts -p MainPID -p NeedDaemonReload -p DropInPaths -p FragmentPath {n} 2>/dev/null | sed \"s|^|prop${{T}}{f}${{T}}|\"\n\
             [ -f /etc/systemd/system/{f} ] && echo \"unittext${{T}}{f}${{T}}$(base64 -w0 /etc/systemd/system/{f})\"\n\
             pid=$(systemctl show -p MainPID --value {n} 2>/dev/null); [ -n \"$pid\" ] && [ \"$pid\" != 0 ] && echo \"cmdline${{T}}{f}${{T}}$(base64 -w0 /proc/$pid/cmdline 2>/dev/null)\"\n\
             [ -x {exe} ] && (echo \"version${{T}}{f}${{T}}$(timeout 5 {exe} --version 2>/dev/null | head -1)\") &\n",
            f = u.file_name,
            exe = q(u.exec),
        ));
    }
    s.push_str(&format!("[ -f {p} ] && echo \"schedconf${{T}}$(base64 -w0 {p})\"\n", p = q(scheduler_config_path)));
    s.push_str("ss -Htlnp 2>/dev/null | sed \"s|^|ss${T}|\"\n");
    // /dev/tcp is bash's: the server may have no HTTP client. etcd 3.4
    // answers `"health":"false"` when a read through raft takes over a
    // second, which a loaded server sees now and then: ask up to three
    // times, a second apart, in the background. A refused connection is
    // a verdict at once.
    s.push_str(
        "(for i in 1 2 3; do \
           e=$(timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/2379 && printf \"GET /health HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 | tail -1' 2>&1 | tr -d '\\r\\n'); \
           case \"$e\" in *'\"health\":\"false\"'*) [ $i = 3 ] || sleep 1 ;; *) break ;; esac; \
         done; echo \"etcd${T}$e\") &\n",
    );
    s.push_str("ip -o -4 addr show scope global 2>/dev/null | awk -v T=\"$T\" '{print \"addr\" T $4}'\n");
    s.push_str("ip -o -6 addr show scope global 2>/dev/null | awk -v T=\"$T\" '{print \"addr\" T $4}'\nwait\ntrue\n");
    s
}

/// Paths the second round trip reads: every FILES destination, and every
/// path the installed units' flags reference.
fn second_script(paths: &[String], certs: &[String], kubeconfigs: &[String], encryption: Option<&str>) -> String {
    let mut s = String::from("T=$(printf '\\t')\n");
    let list = |v: &[String]| v.iter().map(|p| q(p)).collect::<Vec<_>>().join(" ");
    if !paths.is_empty() {
        s.push_str(&format!("for p in {}; do [ -e \"$p\" ] && echo \"path${{T}}$p${{T}}$(stat -c \"%a${{T}}%U${{T}}%G${{T}}%F\" \"$p\")\"; done\n", list(paths)));
    }
    if !certs.is_empty() {
        s.push_str(&format!("for p in {}; do [ -f \"$p\" ] && echo \"cert${{T}}$p${{T}}$(base64 -w0 \"$p\")\"; done\n", list(certs)));
    }
    if !kubeconfigs.is_empty() {
        s.push_str(&format!(
            "for p in {}; do [ -f \"$p\" ] || continue; echo \"kcserver${{T}}$p${{T}}$(grep -m1 -E '^ *server:' \"$p\" | sed 's/^ *server: *//')\"; echo \"kccert${{T}}$p${{T}}$(grep -m1 -E '^ *client-certificate-data:' \"$p\" | sed 's/^ *client-certificate-data: *//')\"; done\n",
            list(kubeconfigs)
        ));
    }
    if let Some(e) = encryption {
        s.push_str(&format!(
            "[ -f {e} ] && grep -oE '^ *- *(aescbc|aesgcm|secretbox|kms|identity)' {e} | sed 's/[ -]//g' | sed \"s|^|provider${{T}}|\"\n",
            e = q(e)
        ));
    }
    s.push_str("true\n");
    s
}

fn parse_second(out: &str, d: &mut HostData) {
    for line in out.lines() {
        let p: Vec<&str> = line.splitn(3, '\t').collect();
        match p.as_slice() {
            ["path", path, rest] => {
                let f: Vec<&str> = rest.split('\t').collect();
                if f.len() == 4 {
                    d.paths.insert(
                        path.to_string(),
                        PathInfo { mode: u32::from_str_radix(f[0], 8).unwrap_or(0), owner: f[1].into(), group: f[2].into(), kind: f[3].into() },
                    );
                }
            }
            ["cert", path, t] => {
                d.certs.insert(path.to_string(), b64(t));
            }
            ["kcserver", path, server] => d.kubeconfigs.entry(path.to_string()).or_default().0 = server.trim().to_string(),
            ["kccert", path, data] => {
                let pem = b64(data);
                d.kubeconfigs.entry(path.to_string()).or_default().1 = (!pem.is_empty()).then_some(pem);
            }
            ["provider", name] => d.encryption_providers.push(name.trim().to_string()),
            _ => {}
        }
    }
}

/// A unit's flags as installed: parsed from the installed unit file.
pub fn installed_flags(text: &str, file_name: &str) -> Option<Vec<(String, Option<String>)>> {
    unitfile::parse_unit(std::path::Path::new(file_name), text).ok().map(|u| u.flags.into_iter().map(|f| (f.name, f.value)).collect())
}

/// Why an installed unit does not parse (by systemd's rules), if it does not.
pub fn unit_parse_error(text: &str, file_name: &str) -> Option<String> {
    unitfile::parse_unit(std::path::Path::new(file_name), text).err().map(|e| format!("line {}: {}", e.line, crate::output::redact::line(&e.message)))
}

/// The argv an installed unit's ExecStart gives its process.
pub fn installed_argv(text: &str, file_name: &str) -> Option<Vec<String>> {
    let u = unitfile::parse_unit(std::path::Path::new(file_name), text).ok()?;
    Some(
        std::iter::once(u.exec)
            .chain(u.flags.into_iter().map(|f| match f.value {
                Some(v) => format!("--{}={v}", f.name),
                None => format!("--{}", f.name),
            }))
            .collect(),
    )
}

/// Flags of the running process (`--name=value` words of its argv).
pub fn running_flags(cmdline: &[String]) -> Vec<(String, Option<String>)> {
    cmdline
        .iter()
        .skip(1)
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| match w.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (w.to_string(), None),
        })
        .collect()
}

pub async fn gather(host: &Host) -> Result<HostData, Error> {
    let mut d = HostData::default();
    let sc = crate::model::placed(SCHEDULER_CONFIG.manifest).map(|f| f.dest).unwrap_or_default();
    let asked = std::time::SystemTime::now();
    let first = host.sh_ok(&first_script(sc)).await?;
    parse_first(&first, &mut d);
    if d.now > 0.0 {
        d.skew = d.now - asked.duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs_f64()).unwrap_or(0.0);
    }
    // What the installed (or else compiled-in) flags reference.
    let mut paths: Vec<String> = FILES.iter().map(|f| f.dest.to_string()).collect();
    let mut certs: Vec<String> = FILES.iter().filter(|f| f.kind == FileKind::Certificate).map(|f| f.dest.to_string()).collect();
    let kubeconfigs: Vec<String> = FILES.iter().filter(|f| f.kind == FileKind::Kubeconfig).map(|f| f.dest.to_string()).collect();
    let mut encryption = None;
    for u in UNITS {
        let flags = d.units.get(u.file_name).and_then(|i| i.text.as_deref()).and_then(|t| installed_flags(t, u.file_name)).unwrap_or_default();
        for (name, value) in flags {
            let Some(v) = value else { continue };
            for part in v.split(',').filter(|p| p.starts_with('/')) {
                if !crate::model::OUTPUT_FLAGS.contains(&name.as_str()) && !paths.iter().any(|p| p == part) {
                    paths.push(part.to_string());
                }
                if part.ends_with(".crt") && !certs.iter().any(|c| c == part) {
                    certs.push(part.to_string());
                }
            }
            if name == "encryption-provider-config" {
                encryption = Some(v.clone());
            }
        }
    }
    let second = host.sh_ok(&second_script(&paths, &certs, &kubeconfigs, encryption.as_deref())).await?;
    parse_second(&second, &mut d);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_round_trips() {
        let mut d = HostData::default();
        let e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let first = format!(
            "prop\tkube-apiserver.service\tActiveState=active\nprop\tkube-apiserver.service\tNRestarts=1\nunittext\tkube-apiserver.service\t{}\ncmdline\tkube-apiserver.service\t{}\nversion\tkube-apiserver.service\tKubernetes v1.20.2\netcd\t{{\"health\":\"true\"}}\naddr\t10.240.1.2/24\n",
            e("[Unit]\n"),
            e("/usr/local/bin/kube-apiserver\0--v=2\0--profiling=false\0")
        );
        parse_first(&first, &mut d);
        let u = &d.units["kube-apiserver.service"];
        assert_eq!((u.active.as_str(), u.restarts), ("active", 1));
        assert_eq!(running_flags(&u.cmdline), vec![("v".to_string(), Some("2".to_string())), ("profiling".to_string(), Some("false".to_string()))]);
        assert_eq!(d.addresses, ["10.240.1.2"]);
        let second = "path\t/var/lib/kubernetes/ca.key\t600\troot\troot\tregular file\nkcserver\t/x.kubeconfig\thttps://server.kubernetes.local:6443\nprovider\taescbc\nprovider\tidentity\n";
        parse_second(second, &mut d);
        assert_eq!(d.paths["/var/lib/kubernetes/ca.key"].mode, 0o600);
        assert_eq!(d.kubeconfigs["/x.kubeconfig"].0, "https://server.kubernetes.local:6443");
        assert_eq!(d.encryption_providers, ["aescbc", "identity"]);
    }
}
