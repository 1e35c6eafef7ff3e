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

/// The line a failing journalctl leaves in the probe's journal blocks
/// (which are base64: no journal line can forge it).
const JOURNAL_FAILED: &str = "kcp-journal-failed";

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

/// bootstrap's record of the files it placed: `file STAMP SHA256 PATH` and
/// `version SHA256 vX.Y.Z` lines, root's alone (0600), rewritten under the
/// lock. A file whose stamp (`stat` [`STAMP_FMT`]: device, inode, size,
/// mtime and ctime in ns) is unchanged is not hashed again; a cache someone
/// else owns or may write is not read.
pub fn hash_cache() -> String {
    format!("{STATE_DIR}/hashes")
}

/// `stat -c` format of a file's stamp.
pub const STAMP_FMT: &str = "%d:%i:%s:%.9Y:%.9Z";

/// Sets `$C` to the hash cache if it may be trusted, else /dev/null.
fn trusted_cache() -> String {
    format!("C={c}; if [ -f \"$C\" ] && [ ! -L \"$C\" ] && [ -O \"$C\" ] && [ \"$(stat -c %a \"$C\")\" = 600 ]; then :; else C=/dev/null; fi\n", c = q(&hash_cache()))
}

/// Sums of the layout's files from `$st` (the `stat` lines): public
/// regular files from the cache `$C` where their stamp is unchanged
/// (`hit<TAB>STAMP<TAB>SHA<TAB>PATH`), the others hashed (`TAG<TAB>SHA PATH`),
/// secrets always hashed (one `sha256sum`: they are small), never entered.
/// Leaves `$res` (the hit and miss lines) and `$new` (the hasher's lines)
/// for a cache writer.
fn sums(tag: &str, hit: &str, public: &[&str], secret: &[&str]) -> String {
    format!(
        "res=$(printf '%s\\n' \"$st\" | awk -F\"$T\" -v T=\"$T\" -v C=\"$C\" -v pub={public} 'BEGIN {{ n = split(pub, P, \" \"); for (i = 1; i <= n; i++) W[P[i]] = 1; while ((getline l < C) > 0) {{ k = split(l, a, \" \"); if (k == 4 && a[1] == \"file\" && length(a[3]) == 64) c[a[2] \" \" a[4]] = a[3] }} }} $1 == \"stat\" && ($2 in W) && $7 ~ /^regular/ {{ k = $8 \" \" $2; if (k in c) print \"hit\" T $8 T c[k] T $2; else print \"miss\" T $8 T $2 }}')\n\
         printf '%s\\n' \"$res\" | while IFS=\"$T\" read -r w a b c; do [ \"$w\" = hit ] && echo \"{hit}${{T}}$a${{T}}$b${{T}}$c\"; done\n\
         new=\n\
         case \"$res\" in *miss*) new=$(printf '%s\\n' \"$res\" | awk -F\"$T\" '$1 == \"miss\" {{ print $3 }}' | xargs -d '\\n' -r -P 4 -n 1 $H) ;; esac\n\
         sec=; for f in {secret}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && sec=\"$sec $f\"; done\n\
         [ -n \"$sec\" ] && new=\"$new\n$(sha256sum -- $sec)\"\n\
         printf '%s\\n' \"$new\" | while IFS= read -r l; do [ -n \"$l\" ] && printf '{tag}\\t%s\\n' \"$l\"; done\n",
        public = q(&public.join(" ")),
        secret = list(secret),
    )
}

/// What a caller needs read. Every path comes from the compiled-in layout or
/// from the installed units; nothing else is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// sha256 of every layout file (bootstrap compares them): from the
    /// server's hash cache where a file's stamp is unchanged.
    pub hashes: bool,
    /// Rewrite the hash cache with what this read learnt (bootstrap, under
    /// its lock).
    pub write_cache: bool,
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
    /// For a unit systemd restarted by itself (NRestarts > 0), the journal
    /// lines that say why its process ended (cpcheck).
    pub crash_journals: bool,
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
        Request { hashes: true, write_cache: true, upload_state: true, ..Default::default() }
    }
    /// What cpcheck reads first (the installed units decide the rest).
    pub fn cpcheck() -> Request {
        Request { versions: true, etcd_and_addresses: true, crash_journals: true, ..Default::default() }
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
    /// Decompressors the server has (`zstd`, `gzip`).
    pub codecs: Vec<String>,
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
    /// Can the server decompress `codec`?
    pub fn has(&self, codec: crate::local::compress::Codec) -> bool {
        codec == crate::local::compress::Codec::None || self.codecs.iter().any(|c| c == codec.name())
    }
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

/// The script for `req`. Written for few processes: on a small server each
/// fork and exec costs a millisecond or more, and a no-op run is mostly
/// this script. Large outputs come as `begin<TAB>TAG` … `end<TAB>TAG` blocks.
pub fn script(req: &Request) -> String {
    let files: Vec<&str> = FILES.iter().map(|f| f.dest).chain(req.paths.iter().map(String::as_str)).collect();
    let texts: Vec<&str> = FILES.iter().filter(|f| matches!(f.kind, FileKind::Unit | FileKind::Config)).map(|f| f.dest).collect();
    let dirs: Vec<&str> = DIRECTORIES.iter().map(|d| d.path).collect();
    let units: Vec<&str> = UNITS.iter().map(|u| u.file_name).collect();
    let props: Vec<String> = systemd::PROPERTIES.iter().map(|p| format!("-p {p}")).collect();
    let mut s = format!(
        "T=$(printf '\\t')\n{HASH_CMD}\n\
         echo \"now${{T}}$(date +%s.%N)\"\n\
         echo \"arch${{T}}$(uname -m)\"\n\
         read -r h < /proc/sys/kernel/hostname && echo \"hostname${{T}}$h\"\n\
         if [ -d /run/systemd/system ]; then echo \"systemd${{T}}yes\"; else echo \"systemd${{T}}no\"; fi\n\
         for c in zstd gzip; do command -v $c >/dev/null 2>&1 && echo \"codec${{T}}$c\"; done\n\
         set -- $(ip -o -4 route show default 2>/dev/null); dev=; while [ $# -gt 1 ]; do [ \"$1\" = dev ] && dev=$2; shift; done\n\
         if [ -n \"$dev\" ]; then set -- $(ip -o -4 addr show dev \"$dev\" scope global 2>/dev/null); [ $# -ge 4 ] && echo \"advertise${{T}}${{4%/*}}\"; fi\n\
         st=$(stat -c \"stat${{T}}%n${{T}}%a${{T}}%U${{T}}%G${{T}}%s${{T}}%F${{T}}{STAMP_FMT}\" -- {files} 2>/dev/null)\n\
         printf '%s\\n' \"$st\"\n\
         for f in {texts}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"text${{T}}$f${{T}}$(base64 -w0 \"$f\")\"; done\n\
         stat -L -c \"dir${{T}}%n${{T}}%a${{T}}%U${{T}}%G${{T}}%F\" -- {dirs} 2>/dev/null\n",
        files = list(&files),
        texts = list(&texts),
        dirs = list(&dirs),
    );
    if req.hashes || req.versions || req.fingerprints.is_some() {
        s.push_str(&trusted_cache());
    }
    if req.hashes {
        // Public files by their stamp from the cache, the rest hashed (four
        // at a time); secrets always hashed, never entered.
        let public: Vec<&str> = FILES.iter().filter(|f| !f.kind.is_secret()).map(|f| f.dest).collect();
        let secret: Vec<&str> = FILES.iter().filter(|f| f.kind.is_secret()).map(|f| f.dest).collect();
        s.push_str(&sums("sum", "hit", &public, &secret));
        if req.write_cache {
            // Only when something was hashed (or there was no cache to
            // trust): the hits, and the public files hashed now, each under
            // the stamp it had before hashing (a file changed meanwhile has
            // a newer ctime and never matches that entry); version lines kept.
            s.push_str(&format!(
                "case \"$res\" in *miss*) if [ -d {dir} ]; then\n\
                   {{ {{ printf '%s\\n' \"$res\" | awk -F\"$T\" '$1 == \"hit\" {{ print \"file\", $2, $3, $4 }} $1 == \"miss\" {{ print \"miss\", $2, $3 }}'; printf '%s\\n' \"$new\" | sed 's/^/sum /'; }} | awk '$1 == \"file\" {{ print; next }} $1 == \"miss\" {{ s[$3] = $2; next }} $1 == \"sum\" {{ p = $3; sub(/^\\*/, \"\", p); if (p in s) print \"file\", s[p], $2, p }}'; grep '^version ' \"$C\" 2>/dev/null; }} | (umask 077; cat > {tmp}) && mv -f {tmp} {cache}\n\
                 fi ;; esac\n",
                dir = q(STATE_DIR),
                tmp = q(&format!("{}.tmp", hash_cache())),
                cache = q(&hash_cache()),
            ));
        }
    }
    if req.upload_state {
        s.push_str(&format!(
            "[ -f {pending} ] && while IFS= read -r l; do echo \"pending${{T}}$l\"; done < {pending}\n\
             set --; for d in {dirs}; do p=$d; while [ ! -d \"$p\" ]; do p=${{p%/*}}; [ -z \"$p\" ] && p=/; done; set -- \"$@\" \"$p\"\n\
               for t in \"$d\"/.*{TEMP_MARKER}*; do [ -e \"$t\" ] && echo \"stale${{T}}$t\"; done\n\
             done\n\
             df -PB1 -- \"$@\" 2>/dev/null | awk -v T=\"$T\" -v d={dlist} 'BEGIN {{ split(d, D, \" \") }} NR > 1 {{ print \"disk\" T D[NR - 1] T $6 T $4 }}'\n",
            pending = q(&pending_marker()),
            dirs = list(&dirs),
            dlist = q(&dirs.join(" ")),
        ));
    }
    // Every unit's properties in one `systemctl show` (blocks in the order
    // asked), the running processes' command lines from their MainPID.
    s.push_str(&format!(
        "if command -v systemctl >/dev/null; then\n\
           props=$(systemctl show --timestamp=unix {props} -p ActiveEnterTimestamp {units} 2>/dev/null)\n\
           printf 'begin\\tprops\\n%s\\nend\\tprops\\n' \"$props\"\n\
           printf '%s\\n' \"$props\" | {{ set -- {units}; while IFS= read -r l; do case \"$l\" in MainPID=*) p=${{l#MainPID=}}; [ \"$p\" != 0 ] && [ -r /proc/$p/cmdline ] && echo \"cmdline${{T}}$1${{T}}$(base64 -w0 /proc/$p/cmdline)\"; shift ;; esac; done; }}\n\
         fi\n",
        props = props.join(" "),
        units = list(&units),
    ));
    if req.crash_journals {
        // Units systemd restarted by itself: the lines of their journal that
        // may say why, base64 (server text, any bytes) after the unit's name.
        s.push_str(&format!(
            "printf '%s\\n' \"$props\" | awk -v u={units} 'BEGIN {{ split(u, U, \" \"); i = 1 }} /^$/ {{ i++; next }} /^NRestarts=/ && $0 != \"NRestarts=0\" {{ print U[i] }}' | while IFS= read -r u; do\n\
               echo \"journal${{T}}$u${{T}}$({journal} | base64 -w0)\"\n\
             done\n",
            units = q(&units.join(" ")),
            journal = crate::remote::journal::crash_script("\"$u\"", None, JOURNAL_FAILED),
        ));
    }
    if req.versions {
        // The version bootstrap recorded for this very file (by its stamp),
        // else the binary's own answer (in the background).
        let pairs: Vec<String> = UNITS.iter().map(|u| format!("{} {}", u.exec, u.file_name)).collect();
        s.push_str(&format!(
            "vs=$(printf '%s\\n' \"$st\" | awk -F\"$T\" -v T=\"$T\" -v C=\"$C\" -v want={want} 'BEGIN {{ n = split(want, W, \" \"); for (i = 1; i < n; i += 2) U[W[i]] = W[i + 1]; while ((getline l < C) > 0) {{ split(l, a, \" \"); if (a[1] == \"file\") F[a[2] \" \" a[4]] = a[3]; else if (a[1] == \"version\") {{ v = l; sub(/^version [0-9a-f]+ /, \"\", v); V[a[2]] = v }} }} }} $1 == \"stat\" && ($2 in U) {{ k = $8 \" \" $2; if ((k in F) && (F[k] in V)) print \"version\" T U[$2] T V[F[k]]; else print \"ask\" T U[$2] T $2 }}')\n\
             printf '%s\\n' \"$vs\" | while IFS=\"$T\" read -r what unit exe; do case \"$what\" in version) echo \"version${{T}}$unit${{T}}$exe\" ;; ask) [ -x \"$exe\" ] && (echo \"version${{T}}$unit${{T}}$(timeout 5 \"$exe\" --version 2>/dev/null | head -1)\") & ;; esac; done\n",
            want = q(&pairs.join(" ")),
        ));
    }
    s.push_str("printf 'begin\\tss\\n'; ss -Htlnp 2>/dev/null; printf 'end\\tss\\n'\n");
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
             ip -o addr show scope global 2>/dev/null | while read -r n i fam a rest; do echo \"addr${{T}}$a\"; done\n",
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
            "if command -v basenc >/dev/null; then for f in {secret}; do [ -f \"$f\" ] && [ ! -L \"$f\" ] && echo \"fp${{T}}$f${{T}}hmac:$(hm \"$f\")\"; done; fi\n",
            secret = list(&secret),
        ));
        s.push_str(&sums("fpsum", "fphit", &public, &[]));
    }
    if !req.certs.is_empty() {
        // PEM is text: every certificate in one pass, a line at a time.
        s.push_str(&format!(
            "set --; for p in {}; do [ -f \"$p\" ] && [ ! -L \"$p\" ] && set -- \"$@\" \"$p\"; done; [ $# -gt 0 ] && awk -v T=\"$T\" '{{ print \"certline\" T FILENAME T $0 }}' \"$@\"\n",
            list(&req.certs)
        ));
    }
    if !req.kubeconfigs.is_empty() {
        s.push_str(&format!(
            "set --; for p in {}; do [ -f \"$p\" ] && set -- \"$@\" \"$p\"; done; [ $# -gt 0 ] && awk -v T=\"$T\" '/^ *server:/ && !s[FILENAME]++ {{ v = $0; sub(/^ *server: */, \"\", v); print \"kcserver\" T FILENAME T v }} /^ *client-certificate-data:/ && !c[FILENAME]++ {{ v = $0; sub(/^ *client-certificate-data: */, \"\", v); print \"kccert\" T FILENAME T v }}' \"$@\"\n",
            list(&req.kubeconfigs)
        ));
    }
    if let Some(e) = &req.encryption {
        s.push_str(&format!(
            "[ -f {e} ] && awk -v T=\"$T\" 'match($0, /^ *- *(aescbc|aesgcm|secretbox|kms|identity)/) {{ v = substr($0, RSTART, RLENGTH); gsub(/[ -]/, \"\", v); print \"provider\" T v }}' {e}\n",
            e = q(e)
        ));
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
    // Inside a `begin<TAB>TAG` … `end<TAB>TAG` block: its tag, and for
    // `props` the unit whose block this is (blocks in UNITS order).
    let mut block: Option<&str> = None;
    let mut unit = 0usize;
    for line in out.lines() {
        match (block, line.split_once('\t')) {
            (None, Some(("begin", tag))) => {
                block = Some(match tag {
                    "props" => "props",
                    "ss" => "ss",
                    _ => "other",
                });
                unit = 0;
                continue;
            }
            (Some(_), Some(("end", _))) => {
                block = None;
                continue;
            }
            (Some("props"), _) => {
                if line.is_empty() {
                    unit += 1;
                } else if let (Some(u), Some((k, v))) = (UNITS.get(unit), line.split_once('=')) {
                    p.units.entry(u.file_name.to_string()).or_default().set(k, v);
                }
                continue;
            }
            (Some("ss"), _) => {
                p.listeners.extend(parse_ss(line));
                continue;
            }
            (Some(_), _) => continue,
            _ => {}
        }
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["hit", _stamp, sha, path] => {
                sums.insert(path.to_string(), sha.to_string());
            }
            ["fphit", _stamp, sha, path] => {
                p.fingerprints.insert(path.to_string(), format!("sha256:{sha}"));
            }
            ["certline", path, text] => {
                let c = p.certs.entry(path.to_string()).or_default();
                c.push_str(text);
                c.push('\n');
            }
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
            ["stat", path, mode, owner, group, size, kind, ..] => {
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
            ["codec", c] => p.codecs.push(c.trim().to_string()),
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
            ["journal", unit, b] => {
                let crashes = match base64::engine::general_purpose::STANDARD.decode(b.trim()) {
                    Ok(bytes) => crate::remote::journal::crash_lines(&bytes, JOURNAL_FAILED),
                    Err(_) => Err("its journal came back garbled".into()),
                };
                p.units.entry(unit.to_string()).or_default().crashes = crashes;
            }
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
    finish(&String::from_utf8_lossy(&out.stdout), asked, into);
    Ok(())
}

/// Parses the script's output `out` into `into`; `asked` is when the script
/// was sent (the server's clock read in it sets the skew).
pub fn finish(out: &str, asked: std::time::SystemTime, into: &mut Probe) {
    parse(out, into);
    if into.now > 0.0 {
        into.skew = into.now - asked.duration_since(std::time::UNIX_EPOCH).map(|t| t.as_secs_f64()).unwrap_or(0.0);
    }
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
        assert!(b.contains("xargs -d '\\n' -r -P 4 -n 1 $H") && b.contains("df -PB1") && !b.contains("--version") && !b.contains("/dev/tcp"));
        let c = script(&Request::cpcheck());
        assert!(!c.contains("xargs -d") && c.contains("--version") && c.contains("/dev/tcp/127.0.0.1/2379"));
        // Secrets are never read whole: no base64 of a key, kubeconfig or the encryption config.
        for f in FILES.iter().filter(|f| f.kind.is_secret()) {
            assert!(!b.contains(&format!("base64 -w0 '{}'", f.dest)));
        }
    }

    /// The block form: every unit's properties from one `systemctl show`
    /// (blocks in UNITS order, a blank line apart), listeners raw, hits
    /// from the hash cache, certificates a line at a time.
    #[test]
    fn blocks_and_cache_hits_parse() {
        let reply = "begin\tprops\nActiveState=active\nMainPID=10\nActiveEnterTimestamp=@1796050104\n\nActiveState=failed\nNRestarts=4\n\nActiveState=inactive\nend\tprops\n\
begin\tss\nLISTEN 0 4096 *:6443 *:* users:((\"kube-apiserver\",pid=3016,fd=7))\nend\tss\n\
stat\t/usr/local/bin/kubectl\t755\troot\troot\t42\tregular file\t39:7:42:1.000000000:2.000000000\n\
hit\t39:7:42:1.000000000:2.000000000\tabc\t/usr/local/bin/kubectl\n\
miss\t39:8:9:1.0:2.0\t/usr/local/bin/kube-scheduler\nsum\tdef  /usr/local/bin/kube-scheduler\n\
certline\t/c.crt\t-----BEGIN CERTIFICATE-----\ncertline\t/c.crt\tMIIB\n";
        let mut p = Probe::default();
        parse(reply, &mut p);
        let unit = |i: usize| &p.units[UNITS[i].file_name];
        assert!(unit(0).active.is_up() && unit(0).main_pid == 10 && unit(0).active_enter_unix == 1796050104);
        assert_eq!((unit(1).active.clone(), unit(1).restarts), (crate::model::ActiveState::Failed, 4));
        assert!(!unit(2).active.is_up());
        assert_eq!(p.listeners[0].port, 6443);
        assert_eq!((p.files["/usr/local/bin/kubectl"].sha256.as_str(), p.files["/usr/local/bin/kubectl"].size), ("abc", 42));
        assert_eq!(p.certs["/c.crt"], "-----BEGIN CERTIFICATE-----\nMIIB\n");
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
