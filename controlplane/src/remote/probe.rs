//! The one way either plugin reads a server: a shell script built from a
//! [`Request`] (what this caller needs), run in one SSH round trip, and one
//! parser of its tagged lines (`TAG<TAB>…`) into a [`Probe`]. bootstrap asks
//! for hashes, texts for diffs, free space, temp files and the pending
//! marker; cpcheck for versions, etcd, addresses, and in a second request the
//! certificates and paths the installed units name.
//!
//! Secrets never leave the server: of a secret file only its mode, owner,
//! size and sha256 (bootstrap, to compare) are read; of a kubeconfig its
//! `server:` and client certificate lines; of the encryption config its
//! provider names.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use super::systemd::{self, UnitStatus};
use super::{shell_quote as q, Host};
use crate::model::{FileKind, FileMode, DIRECTORIES, FILES, SCHEDULER_CONFIG, STATE_DIR, UNITS};
use crate::Error;

/// Temp files are `.NAME.kcp-tmp-RANDOM` beside their destination.
pub const TEMP_MARKER: &str = ".kcp-tmp-";

/// Sets `$H` to the server's fastest sha256 command: OpenSSL's (SHA-NI where
/// the CPU has it) when installed, else coreutils' sha256sum. Both print the
/// hash as the first word.
pub const HASH_CMD: &str = "if command -v openssl >/dev/null 2>&1; then H='openssl dgst -sha256 -r'; else H=sha256sum; fi";

/// What an interrupted run left to do, written in the commit round trip
/// before any file is renamed into place and cleared as each systemctl step
/// is done: `daemon-reload` and `restart UNIT` lines.
pub fn pending_marker() -> String {
    format!("{STATE_DIR}/pending")
}

/// `hm FILE`: HMAC-SHA256 of FILE under the key whose pads ([`HmacKey::pads`])
/// arrive on stdin. Only builtins and pipes see them: nothing on a command
/// line, which every user of the server can read in /proc.
pub const HMAC_SH: &str = "read -r IP; read -r OP\n\
    hm() { i=$( { printf %s \"$IP\" | basenc --base16 -d; cat -- \"$1\"; } | sha256sum | cut -c1-64 | tr a-f A-F ); \
    { printf %s \"$OP\" | basenc --base16 -d; printf %s \"$i\" | basenc --base16 -d; } | sha256sum | cut -c1-64; }\n";

/// What a caller needs read. Every path comes from the compiled-in layout or
/// from the installed units; nothing else is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// sha256 of every layout file (bootstrap compares them).
    pub hashes: bool,
    /// Free space of the layout's directories, leftover temps, the marker.
    pub upload_state: bool,
    /// `--version` of the installed binaries (cpcheck, when not known).
    pub versions: bool,
    /// etcd's /health on 127.0.0.1, and the server's addresses.
    pub etcd_and_addresses: bool,
    /// More paths to stat (what installed flags reference).
    pub paths: Vec<String>,
    /// Public certificates to read.
    pub certs: Vec<String>,
    /// Kubeconfigs whose `server:` and client certificate to read.
    pub kubeconfigs: Vec<String>,
    /// The encryption config whose provider names to read.
    pub encryption: Option<String>,
    /// etcd's member list (v3 gateway on the local member).
    pub etcd_members: bool,
    /// Fingerprints of the layout's files to compare across servers: the
    /// sha256 of a public file, an HMAC-SHA256 under this run's random key
    /// of a secret one (the key goes on stdin, never on a command line).
    pub fingerprints: Option<HmacKey>,
}

/// A random per-run HMAC key. Its Debug says nothing.
#[derive(Clone)]
pub struct HmacKey([u8; 64]);

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    pub fn random() -> HmacKey {
        HmacKey(rand::random())
    }
    /// The key XOR the HMAC inner and outer pads (block size 64: the key is
    /// exactly a block), upper-case hex for `basenc --base16 -d`, one per
    /// line: the script's stdin.
    pub fn pads(&self) -> String {
        let hex = |pad: u8| self.0.iter().map(|b| format!("{:02X}", b ^ pad)).collect::<String>();
        format!("{}\n{}\n", hex(0x36), hex(0x5c))
    }
    /// HMAC-SHA256 of `data` under this key, as the server computes it.
    #[cfg(test)]
    pub fn hmac(&self, data: &[u8]) -> String {
        use sha2::Digest;
        let pad = |p: u8| self.0.iter().map(|b| b ^ p).collect::<Vec<u8>>();
        let inner = sha2::Sha256::new().chain_update(pad(0x36)).chain_update(data).finalize();
        let outer = sha2::Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        outer.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Request {
    /// What bootstrap needs to plan: everything about the layout's files.
    pub fn bootstrap() -> Request {
        Request { hashes: true, upload_state: true, ..Default::default() }
    }
    /// What cpcheck reads first (the installed units decide the rest).
    pub fn cpcheck() -> Request {
        Request { versions: true, etcd_and_addresses: true, ..Default::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
    pub size: u64,
    /// `stat -c %F` without following links: `regular file`, `symbolic link`, `directory`…
    pub kind: String,
    /// Empty unless a regular file and hashes were asked for.
    pub sha256: String,
}

impl RemoteFile {
    pub fn is_regular(&self) -> bool {
        self.kind == "regular file" || self.kind == "regular empty file"
    }
    /// `owner:group`.
    pub fn owners(&self) -> String {
        format!("{}:{}", self.owner, self.group)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteDir {
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
    /// `stat -L -c %F`: `directory` unless something else sits there.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    pub addr: String,
    pub port: u16,
    /// Process name as ss shows it (cut at 15 characters by the kernel).
    pub process: Option<String>,
    pub pid: Option<u32>,
}

/// Everything read off a server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    pub arch: String,
    pub systemd: bool,
    pub hostname: String,
    /// The server's clock when read (seconds since the epoch), and its
    /// difference to this machine's.
    pub now: f64,
    pub skew: f64,
    /// Layout files and asked-for paths that exist.
    pub files: BTreeMap<String, RemoteFile>,
    pub dirs: BTreeMap<String, RemoteDir>,
    /// By unit file name.
    pub units: BTreeMap<String, UnitStatus>,
    pub listeners: Vec<Listener>,
    /// directory → (mount point, available bytes)
    pub disk: BTreeMap<String, (String, u64)>,
    /// Temp files an interrupted upload left.
    pub stale: Vec<String>,
    /// Lines of the pending-work marker an interrupted run left.
    pub pending: Vec<String>,
    pub etcd_health: String,
    /// etcd's answer to /v3/cluster/member/list (JSON), when asked.
    pub etcd_members: String,
    pub addresses: Vec<String>,
    /// The first global IPv4 address of the interface with the default
    /// route: what the apiserver advertises unless told otherwise.
    pub default_address: Option<String>,
    /// Path → sha256 (public) or HMAC (secret), when asked.
    #[serde(skip)]
    pub fingerprints: BTreeMap<String, String>,
    /// Texts of units and configs (never of secrets), by path.
    #[serde(skip)]
    pub texts: BTreeMap<String, String>,
    /// Public certificates, by path.
    #[serde(skip)]
    pub certs: BTreeMap<String, String>,
    /// kubeconfig path → (server URL, client certificate PEM).
    #[serde(skip)]
    pub kubeconfigs: BTreeMap<String, (String, Option<String>)>,
    /// Provider names of the encryption config, in order.
    pub encryption_providers: Vec<String>,
}

impl Probe {
    /// Is `unit` running (or starting)?
    pub fn active(&self, unit: &str) -> bool {
        self.units.get(unit).is_some_and(|s| s.active.is_up())
    }
    /// The server's clock now, by this machine's and the measured skew.
    pub fn server_now(&self) -> f64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + self.skew
    }
    /// The scheduler config as installed, if any.
    pub fn scheduler_config(&self) -> Option<&str> {
        crate::model::placed(SCHEDULER_CONFIG.manifest).and_then(|f| self.texts.get(f.dest)).map(String::as_str)
    }
}

fn list<S: AsRef<str>>(v: &[S]) -> String {
    v.iter().map(|p| q(p.as_ref())).collect::<Vec<_>>().join(" ")
}

/// The script for `req`.
pub fn script(req: &Request) -> String {
    let files: Vec<&str> = FILES.iter().map(|f| f.dest).chain(req.paths.iter().map(String::as_str)).collect();
    let texts: Vec<&str> = FILES.iter().filter(|f| matches!(f.kind, FileKind::Unit | FileKind::Config)).map(|f| f.dest).collect();
    let dirs: Vec<&str> = DIRECTORIES.iter().map(|d| d.path).collect();
    let mut s = format!(
        "T=$(printf '\\t')\n{HASH_CMD}\n\
         echo \"now${{T}}$(date +%s.%N)\"\n\
         echo \"arch${{T}}$(uname -m)\"\n\
         echo \"hostname${{T}}$(hostname)\"\n\
         if [ -d /run/systemd/system ]; then echo \"systemd${{T}}yes\"; else echo \"systemd${{T}}no\"; fi\n\
         dev=$(ip -o -4 route show default 2>/dev/null | awk '{{for(i=1;i<NF;i++) if($i==\"dev\"){{print $(i+1); exit}}}}')\n\
         [ -n \"$dev\" ] && ip -o -4 addr show dev \"$dev\" scope global 2>/dev/null | awk -v T=\"$T\" 'NR==1{{split($4,a,\"/\"); print \"advertise\" T a[1]}}'\n\
         for f in {files}; do if [ -e \"$f\" ] || [ -L \"$f\" ]; then echo \"stat${{T}}$f${{T}}$(stat -c \"%a${{T}}%U${{T}}%G${{T}}%s${{T}}%F\" \"$f\")\"; fi; done\n\
         for f in {texts}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"text${{T}}$f${{T}}$(base64 -w0 \"$f\")\"; done\n\
         for d in {dirs}; do [ -e \"$d\" ] && echo \"dir${{T}}$d${{T}}$(stat -L -c \"%a${{T}}%U${{T}}%G${{T}}%F\" \"$d\")\"; done\n",
        files = list(&files),
        texts = list(&texts),
        dirs = list(&dirs),
    );
    if req.hashes {
        s.push_str(&format!(
            "for f in {}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && printf '%s\\0' \"$f\"; done | xargs -0 -r -P 4 -n 1 $H | sed \"s|^|sum${{T}}|\"\n",
            list(&FILES.iter().map(|f| f.dest).collect::<Vec<_>>())
        ));
    }
    if req.upload_state {
        s.push_str(&format!(
            "[ -f {pending} ] && sed \"s|^|pending${{T}}|\" {pending}\n\
             for d in {dirs}; do\n\
               p=$d; while [ ! -d \"$p\" ]; do p=$(dirname \"$p\"); done\n\
               df -PB1 \"$p\" | awk -v d=\"$d\" -v T=\"$T\" 'NR==2{{print \"disk\" T d T $6 T $4}}'\n\
               for t in \"$d\"/.*{TEMP_MARKER}*; do [ -e \"$t\" ] && echo \"stale${{T}}$t\"; done\n\
             done\n",
            pending = q(&pending_marker()),
            dirs = list(&dirs),
        ));
    }
    s.push_str("if command -v systemctl >/dev/null; then\n");
    for u in UNITS {
        s.push_str(&systemd::show(u.file_name, "prop"));
        s.push_str(&format!(
            "pid=$(systemctl show -p MainPID --value {n} 2>/dev/null); [ -n \"$pid\" ] && [ \"$pid\" != 0 ] && echo \"cmdline${{T}}{f}${{T}}$(base64 -w0 /proc/$pid/cmdline 2>/dev/null)\"\n",
            n = q(u.file_name),
            f = u.file_name
        ));
        if req.versions {
            s.push_str(&format!("[ -x {exe} ] && (echo \"version${{T}}{f}${{T}}$(timeout 5 {exe} --version 2>/dev/null | head -1)\") &\n", exe = q(u.exec), f = u.file_name));
        }
    }
    s.push_str("fi\nss -Htlnp 2>/dev/null | sed \"s|^|ss${T}|\"\n");
    if req.etcd_and_addresses {
        // /dev/tcp is bash's: the server may have no HTTP client. etcd 3.4
        // answers `"health":"false"` when a read through raft takes over a
        // second, which a loaded server sees now and then: ask up to three
        // times, a second apart, in the background. A refused connection is
        // a verdict at once.
        let etcd = crate::model::etcd_endpoint();
        s.push_str(&format!(
            "(for i in 1 2 3; do \
               e=$(timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && printf \"GET /health HTTP/1.0\\r\\n\\r\\n\" >&3 && cat <&3 | tail -1' 2>&1 | tr -d '\\r\\n'); \
               case \"$e\" in *'\"health\":\"false\"'*) [ $i = 3 ] || sleep 1 ;; *) break ;; esac; \
             done; echo \"etcd${{T}}$e\") &\n\
             ip -o -4 addr show scope global 2>/dev/null | awk -v T=\"$T\" '{{print \"addr\" T $4}}'\n\
             ip -o -6 addr show scope global 2>/dev/null | awk -v T=\"$T\" '{{print \"addr\" T $4}}'\n",
            host = etcd.host,
            port = etcd.port,
        ));
    }
    if req.etcd_members {
        let etcd = crate::model::etcd_endpoint();
        s.push_str(&format!(
            "(m=$(timeout 5 bash -c 'exec 3<>/dev/tcp/{host}/{port} && printf \"POST /v3/cluster/member/list HTTP/1.0\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n{{}}\" >&3 && cat <&3 | tail -1' 2>&1 | tr -d '\\r\\n'); echo \"etcdmembers${{T}}$m\") &\n",
            host = etcd.host,
            port = etcd.port,
        ));
    }
    if req.fingerprints.is_some() {
        let secret: Vec<&str> = FILES.iter().filter(|f| f.kind.is_secret()).map(|f| f.dest).collect();
        let public: Vec<&str> = FILES.iter().filter(|f| !f.kind.is_secret()).map(|f| f.dest).collect();
        s.push_str(HMAC_SH);
        s.push_str(&format!(
            "if command -v basenc >/dev/null; then for f in {secret}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"fp${{T}}$f${{T}}hmac:$(hm \"$f\")\"; done; fi\n\
             for f in {public}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && printf '%s\\0' \"$f\"; done | xargs -0 -r -P 4 -n 1 $H | sed \"s|^|fpsum${{T}}|\"\n",
            secret = list(&secret),
            public = list(&public),
        ));
    }
    if !req.certs.is_empty() {
        s.push_str(&format!("for p in {}; do [ -f \"$p\" ] && echo \"cert${{T}}$p${{T}}$(base64 -w0 \"$p\")\"; done\n", list(&req.certs)));
    }
    if !req.kubeconfigs.is_empty() {
        s.push_str(&format!(
            "for p in {}; do [ -f \"$p\" ] || continue; echo \"kcserver${{T}}$p${{T}}$(grep -m1 -E '^ *server:' \"$p\" | sed 's/^ *server: *//')\"; echo \"kccert${{T}}$p${{T}}$(grep -m1 -E '^ *client-certificate-data:' \"$p\" | sed 's/^ *client-certificate-data: *//')\"; done\n",
            list(&req.kubeconfigs)
        ));
    }
    if let Some(e) = &req.encryption {
        s.push_str(&format!("[ -f {e} ] && grep -oE '^ *- *(aescbc|aesgcm|secretbox|kms|identity)' {e} | sed 's/[ -]//g' | sed \"s|^|provider${{T}}|\"\n", e = q(e)));
    }
    s.push_str("wait\ntrue\n");
    s
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

fn b64(s: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Parses the script's output into `p` (a second request adds to the first).
pub fn parse(out: &str, p: &mut Probe) {
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    for line in out.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["now", t] => p.now = t.trim().parse().unwrap_or(0.0),
            ["arch", a] => p.arch = a.to_string(),
            ["hostname", h] => p.hostname = h.trim().to_string(),
            ["systemd", s] => p.systemd = *s == "yes",
            ["sum", rest] => {
                // `HASH  path` (sha256sum) or `HASH *path` (openssl -r).
                if let Some((sha, path)) = rest.split_once(' ') {
                    sums.insert(path.trim_start_matches(' ').trim_start_matches('*').to_string(), sha.to_string());
                }
            }
            ["stat", path, mode, owner, group, size, kind] => {
                let f = RemoteFile {
                    mode: FileMode::from_octal(mode).unwrap_or_default(),
                    owner: owner.to_string(),
                    group: group.to_string(),
                    size: size.parse().unwrap_or(0),
                    kind: kind.to_string(),
                    sha256: String::new(),
                };
                p.files.insert(path.to_string(), f);
            }
            ["text", path, b] => {
                if let Some(t) = b64(b) {
                    p.texts.insert(path.to_string(), t);
                }
            }
            ["dir", path, mode, owner, group, kind] => {
                let d = RemoteDir { mode: FileMode::from_octal(mode).unwrap_or_default(), owner: owner.to_string(), group: group.to_string(), kind: kind.to_string() };
                p.dirs.insert(path.to_string(), d);
            }
            ["disk", dir, mount, avail] => {
                p.disk.insert(dir.to_string(), (mount.to_string(), avail.parse().unwrap_or(0)));
            }
            ["stale", path] => p.stale.push(path.to_string()),
            ["pending", l] => p.pending.push(l.trim().to_string()),
            ["prop", unit, kv] => {
                if let Some((k, v)) = kv.split_once('=') {
                    p.units.entry(unit.to_string()).or_default().set(k, v);
                }
            }
            ["cmdline", unit, b] => {
                if let Some(c) = b64(b) {
                    p.units.entry(unit.to_string()).or_default().cmdline = c.split('\0').filter(|s| !s.is_empty()).map(str::to_string).collect();
                }
            }
            ["version", unit, v] => p.units.entry(unit.to_string()).or_default().binary_version = Some(v.trim().to_string()),
            ["ss", rest] => p.listeners.extend(parse_ss(rest)),
            ["etcd", rest] => p.etcd_health = rest.to_string(),
            ["etcdmembers", rest] => p.etcd_members = rest.to_string(),
            ["advertise", a] => p.default_address = Some(a.trim().to_string()),
            ["fp", path, v] => {
                p.fingerprints.insert(path.to_string(), v.trim().to_string());
            }
            ["fpsum", rest] => {
                if let Some((sha, path)) = rest.split_once(' ') {
                    p.fingerprints.insert(path.trim_start_matches(' ').trim_start_matches('*').to_string(), format!("sha256:{sha}"));
                }
            }
            ["addr", a] => p.addresses.push(a.split('/').next().unwrap_or(a).to_string()),
            ["cert", path, b] => {
                p.certs.insert(path.to_string(), b64(b).unwrap_or_default());
            }
            ["kcserver", path, server] => p.kubeconfigs.entry(path.to_string()).or_default().0 = server.trim().to_string(),
            ["kccert", path, data] => {
                let pem = b64(data).unwrap_or_default();
                p.kubeconfigs.entry(path.to_string()).or_default().1 = (!pem.is_empty()).then_some(pem);
            }
            ["provider", name] => p.encryption_providers.push(name.trim().to_string()),
            _ => {}
        }
    }
    for (path, file) in p.files.iter_mut() {
        if let Some(s) = sums.remove(path) {
            file.sha256 = s;
        }
    }
    // The installed unit texts, where the checks look for them.
    for u in UNITS {
        if let Some(dest) = crate::model::placed(u.manifest).map(|f| f.dest) {
            if let Some(t) = p.texts.get(dest) {
                p.units.entry(u.file_name.to_string()).or_default().text = Some(t.clone());
            }
        }
    }
}

/// Runs `req` on `host` and parses it into `into` (the server's clock is
/// read in it; the local time it answered sets the skew).
pub async fn run(host: &Host, req: &Request, into: &mut Probe) -> Result<(), Error> {
    let asked = std::time::SystemTime::now();
    let out = match &req.fingerprints {
        Some(key) => host.sh_input(&script(req), key.pads().as_bytes()).await?,
        None => host.sh(&script(req)).await?,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if host.sudo && (err.contains("a password is required") || err.contains("sudo:")) {
            return Err(Error::Input(format!(
                "{}: the login user is not root and `sudo -n` is refused ({}): log in as root, or allow passwordless sudo",
                host.destination,
                crate::output::redact::line(err.trim().lines().next().unwrap_or(""))
            )));
        }
        return Err(Error::Server(format!("{}: reading the server failed: {}", host.destination, crate::output::redact::line(err.trim()))));
    }
    parse(&String::from_utf8_lossy(&out.stdout), into);
    if into.now > 0.0 {
        into.skew = into.now - asked.duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs_f64()).unwrap_or(0.0);
    }
    Ok(())
}

/// One request on its own.
pub async fn read(host: &Host, req: &Request) -> Result<Probe, Error> {
    let mut p = Probe::default();
    run(host, req, &mut p).await?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_hmac_is_hmac_sha256_and_its_key_is_on_no_command_line() {
        let key = HmacKey::random();
        let dir = std::env::temp_dir().join(format!("kcp-hmac-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secret");
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&f, &data).unwrap();
        let script = format!("{HMAC_SH}hm {}", shell_quote_test(&f.display().to_string()));
        assert!(!script.contains(&key.pads()[..20]));
        let mut c = std::process::Command::new("sh").arg("-c").arg(&script).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(key.pads().as_bytes()).unwrap();
        let out = c.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), key.hmac(&data));
        // Another key, another answer: nothing to compare across runs.
        assert_ne!(HmacKey::random().hmac(&data), key.hmac(&data));
        assert_eq!(format!("{key:?}"), "HmacKey(..)");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn shell_quote_test(s: &str) -> String {
        crate::remote::shell_quote(s)
    }

    /// A reply as a server gives it (recorded from the bed, trimmed).
    const REPLY: &str = "now\t1796049323.105266432\narch\tx86_64\nhostname\tserver\nsystemd\tyes\n\
sum\tabc  /usr/local/bin/kubectl\nsum\tdef */usr/local/bin/kube-apiserver\n\
stat\t/usr/local/bin/kube-apiserver\t755\troot\troot\t7\tregular file\n\
stat\t/usr/local/bin/kubectl\t755\troot\troot\t42\tregular file\n\
stat\t/var/lib/kubernetes/ca.crt\t777\troot\troot\t9\tsymbolic link\n\
text\t/etc/systemd/system/kube-scheduler.service\tW1VuaXRdCg==\n\
dir\t/var/lib/kubernetes\t750\troot\tadm\tdirectory\n\
disk\t/var/lib/kubernetes\t/\t1000\n\
stale\t/var/lib/kubernetes/.ca.key.kcp-tmp-1\n\
pending\trestart kube-apiserver.service\n\
prop\tkube-apiserver.service\tActiveState=active\n\
prop\tkube-apiserver.service\tNRestarts=2\n\
prop\tkube-apiserver.service\tNeedDaemonReload=yes\n\
prop\tkube-apiserver.service\tDropInPaths=/etc/systemd/system/kube-apiserver.service.d/x.conf /run/systemd/system/kube-apiserver.service.d/y.conf\n\
prop\tkube-apiserver.service\tActiveEnterTimestamp=@1796050104\n\
cmdline\tkube-apiserver.service\tL3gALS12PTIA\n\
version\tkube-apiserver.service\tKubernetes v1.20.2\n\
ss\tLISTEN 0      4096               *:6443             *:*    users:((\"kube-apiserver\",pid=3016,fd=3))\n\
ss\tLISTEN 0 4096 127.0.0.1:2379 0.0.0.0:* users:((\"etcd\",pid=30,fd=8))\n\
etcd\t{\"health\":\"true\"}\n\
addr\t10.240.1.2/24\n\
kcserver\t/x.kubeconfig\thttps://server.kubernetes.local:6443\n\
provider\taescbc\nprovider\tidentity\n\
garbage line\n";

    #[test]
    fn a_recorded_reply_parses_into_every_field() {
        let mut p = Probe::default();
        parse(REPLY, &mut p);
        assert_eq!((p.arch.as_str(), p.hostname.as_str(), p.systemd), ("x86_64", "server", true));
        assert!((p.now - 1796049323.105).abs() < 0.01);
        assert_eq!(p.files["/usr/local/bin/kubectl"].mode, FileMode(0o755));
        assert_eq!(p.files["/usr/local/bin/kubectl"].sha256, "abc");
        assert_eq!(p.files["/usr/local/bin/kube-apiserver"].sha256, "def");
        assert!(p.files["/usr/local/bin/kubectl"].is_regular() && !p.files["/var/lib/kubernetes/ca.crt"].is_regular());
        assert_eq!(p.dirs["/var/lib/kubernetes"], RemoteDir { mode: FileMode(0o750), owner: "root".into(), group: "adm".into(), kind: "directory".into() });
        assert_eq!(p.disk["/var/lib/kubernetes"], ("/".to_string(), 1000));
        assert_eq!((p.stale.len(), p.pending.as_slice()), (1, ["restart kube-apiserver.service".to_string()].as_slice()));
        let u = &p.units["kube-apiserver.service"];
        assert!(u.need_daemon_reload && u.active.is_up());
        assert_eq!((u.restarts, u.drop_ins.len(), u.active_enter_unix), (2, 2, 1796050104));
        assert_eq!(u.cmdline, ["/x", "--v=2"]);
        assert_eq!(u.binary_version.as_deref(), Some("Kubernetes v1.20.2"));
        assert_eq!(p.units["kube-scheduler.service"].text.as_deref(), Some("[Unit]\n"));
        assert_eq!(p.listeners[0], Listener { addr: "*".into(), port: 6443, process: Some("kube-apiserver".into()), pid: Some(3016) });
        assert_eq!(p.listeners[1].addr, "127.0.0.1");
        assert_eq!(p.etcd_health, "{\"health\":\"true\"}");
        assert_eq!(p.addresses, ["10.240.1.2"]);
        assert_eq!(p.kubeconfigs["/x.kubeconfig"].0, "https://server.kubernetes.local:6443");
        assert_eq!(p.encryption_providers, ["aescbc", "identity"]);
    }

    #[test]
    fn the_script_reads_only_what_is_asked_and_names_every_layout_path() {
        let b = script(&Request::bootstrap());
        for f in FILES {
            assert!(b.contains(f.dest), "{}", f.dest);
        }
        assert!(b.contains("xargs -0 -r -P 4 -n 1 $H") && b.contains("df -PB1") && !b.contains("--version") && !b.contains("/dev/tcp"));
        let c = script(&Request::cpcheck());
        assert!(!c.contains("xargs -0") && c.contains("--version") && c.contains("/dev/tcp/127.0.0.1/2379"));
        // Secrets are never read whole: no base64 of a key, kubeconfig or the encryption config.
        for f in FILES.iter().filter(|f| f.kind.is_secret()) {
            assert!(!b.contains(&format!("base64 -w0 '{}'", f.dest)));
        }
    }

    #[test]
    fn the_script_runs_under_sh_and_its_output_parses() {
        // Run it here, against this machine: it must be valid POSIX sh and
        // end well whatever exists.
        let out = std::process::Command::new("sh").arg("-c").arg(script(&Request::bootstrap())).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mut p = Probe::default();
        parse(&String::from_utf8_lossy(&out.stdout), &mut p);
        assert!(!p.arch.is_empty() && p.now > 0.0);
    }
}
