//! The one way either plugin reads a server: a shell script built from a
//! [`Request`] (what this caller needs), run in one SSH round trip, and a
//! parser of its lines into a [`Probe`]. Each fact read off a server owns
//! its script fragment and its parser, side by side, in a file of its own:
//!
//! - [`host`]: the clock and uptime, architecture, hostname, systemd and its
//!   version, the commands the scripts need, decompressors, addresses;
//! - [`files`]: the layout's files and directories (type from the mode bits,
//!   never from localized words), unit and config texts, sha256 sums with
//!   the server's hash cache, binaries' versions, keyed fingerprints;
//! - [`units`]: systemd's view of each unit, its process's argv, the
//!   journal lines that say why a process systemd restarted ended;
//! - [`sockets`]: listening TCP sockets from the kernel's tables, each
//!   attributed to a unit by socket inode against the unit's MainPID;
//! - [`etcd`]: the local member's health and the member list;
//! - [`pki`]: certificate blocks, kubeconfigs' server and client
//!   certificate, the encryption config's provider names, whether a serving
//!   certificate and its key belong together;
//! - [`upload`]: leftover temp files, the pending-work marker, free space.
//!
//! The reply is lines `TAG<TAB>FIELD…`: tags are [`Tag`]s, fields are
//! numbers, paths of the layout, validated words, or base64 (everything a
//! server, a user or a process on it could have written: names, texts,
//! journal lines). Nothing the server says can break a line or forge one.
//! A command that fails says so (`error`), and the read fails with its
//! words: never an empty answer. Every script runs under `LC_ALL=C` (see
//! [`super::Host`]).
//!
//! Secrets never leave the server: of a secret file only its mode, owner,
//! size and sha256 (bootstrap, to compare) are read; of a kubeconfig its
//! `server:` and client certificate; of the encryption config its provider
//! names; of a `.crt` its certificate blocks only.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use super::systemd::UnitStatus;
use super::Host;
use crate::Error;

pub mod etcd;
pub mod files;
pub mod host;
pub mod pki;
pub mod sockets;
pub mod units;
pub mod upload;

pub use files::{hash_cache, FileType, HmacKey, RemoteDir, RemoteFile, HASH_CMD, STAMP_FMT};
pub use sockets::{Holder, Listener};
pub use upload::{pending_marker, TEMP_MARKER};

/// What a caller needs read. Every path comes from the compiled-in layout or
/// from the installed units; nothing else is read.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The layout's files and directories (type, mode, owner, size) and the
    /// texts of units and configs.
    pub layout: bool,
    /// Listening sockets and who holds them.
    pub sockets: bool,
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
    /// etcd's /health on its client address, and the server's addresses.
    pub etcd_and_addresses: bool,
    /// More paths to stat (what installed flags reference).
    pub paths: Vec<String>,
    /// Public certificates to read.
    pub certs: Vec<String>,
    /// Kubeconfigs whose `server:` and client certificate to read.
    pub kubeconfigs: Vec<String>,
    /// The encryption config whose provider names to read.
    pub encryption: Option<String>,
    /// (certificate, key) pairs whose public halves to compare on the server.
    pub pairs: Vec<(String, String)>,
    /// etcd's member list (v3 gateway on the local member).
    pub etcd_members: bool,
    /// Journal lines that say why a unit's process ended.
    pub journals: Journals,
    /// Journal lines of every component within this many seconds that may
    /// show a known failure (`crate::diagnose`).
    pub signatures: Option<u64>,
    /// Fingerprints of the layout's files to compare across servers: the
    /// sha256 of a public file, an HMAC-SHA256 under this run's random key
    /// of a secret one (the key goes on stdin, never on a command line).
    pub fingerprints: Option<HmacKey>,
}

impl Request {
    /// What bootstrap needs to plan: everything about the layout's files.
    pub fn bootstrap() -> Request {
        Request { layout: true, sockets: true, hashes: true, write_cache: true, upload_state: true, ..Default::default() }
    }
    /// What cpcheck reads first (the installed units decide the rest).
    pub fn cpcheck() -> Request {
        Request { layout: true, sockets: true, versions: true, etcd_and_addresses: true, journals: Journals::Restarted, ..Default::default() }
    }
    /// The server and its units only (clock, hostname, systemd's view).
    pub fn units() -> Request {
        Request::default()
    }
}

/// Whose journals a read asks for (the lines that say why a process ended).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Journals {
    #[default]
    None,
    /// Every unit systemd restarted by itself (NRestarts > 0): its journal's
    /// last such lines (cpcheck).
    Restarted,
    /// These units', since this time by the server's clock (a run's own).
    Since(Vec<crate::model::Component>, f64),
}

/// Every tag a reply line can start with. Each fact's parser reads its own
/// (`TAGS` in its file); `error` is any fact's failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tag {
    Error,
    Now,
    Uptime,
    Arch,
    Hostname,
    Systemd,
    SystemdVersion,
    Missing,
    Coreutils,
    Codec,
    Advertise,
    Addr,
    Stat,
    Dir,
    Text,
    Hit,
    Sum,
    Version,
    Fingerprint,
    FingerprintHit,
    FingerprintSum,
    Props,
    Cmdline,
    Journal,
    Signatures,
    Listen,
    UnitSockets,
    Holder,
    Etcd,
    EtcdMembers,
    Cert,
    KubeconfigServer,
    KubeconfigCert,
    Provider,
    Pair,
    Pending,
    Stale,
    Disk,
    Elf,
}

impl Tag {
    pub const ALL: &'static [Tag] = &[
        Tag::Error,
        Tag::Now,
        Tag::Uptime,
        Tag::Arch,
        Tag::Hostname,
        Tag::Systemd,
        Tag::SystemdVersion,
        Tag::Missing,
        Tag::Coreutils,
        Tag::Codec,
        Tag::Advertise,
        Tag::Addr,
        Tag::Stat,
        Tag::Dir,
        Tag::Text,
        Tag::Hit,
        Tag::Sum,
        Tag::Version,
        Tag::Fingerprint,
        Tag::FingerprintHit,
        Tag::FingerprintSum,
        Tag::Props,
        Tag::Cmdline,
        Tag::Journal,
        Tag::Signatures,
        Tag::Listen,
        Tag::UnitSockets,
        Tag::Holder,
        Tag::Etcd,
        Tag::EtcdMembers,
        Tag::Cert,
        Tag::KubeconfigServer,
        Tag::KubeconfigCert,
        Tag::Provider,
        Tag::Pair,
        Tag::Pending,
        Tag::Stale,
        Tag::Disk,
        Tag::Elf,
    ];

    /// The word the script writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Error => "error",
            Tag::Now => "now",
            Tag::Uptime => "uptime",
            Tag::Arch => "arch",
            Tag::Hostname => "hostname",
            Tag::Systemd => "systemd",
            Tag::SystemdVersion => "systemd-version",
            Tag::Missing => "missing",
            Tag::Coreutils => "coreutils",
            Tag::Codec => "codec",
            Tag::Advertise => "advertise",
            Tag::Addr => "addr",
            Tag::Stat => "stat",
            Tag::Dir => "dir",
            Tag::Text => "text",
            Tag::Hit => "hit",
            Tag::Sum => "sum",
            Tag::Version => "version",
            Tag::Fingerprint => "fp",
            Tag::FingerprintHit => "fphit",
            Tag::FingerprintSum => "fpsum",
            Tag::Props => "props",
            Tag::Cmdline => "cmdline",
            Tag::Journal => "journal",
            Tag::Signatures => "sig",
            Tag::Listen => "listen",
            Tag::UnitSockets => "usock",
            Tag::Holder => "holder",
            Tag::Etcd => "etcd",
            Tag::EtcdMembers => "etcdmembers",
            Tag::Cert => "cert",
            Tag::KubeconfigServer => "kcserver",
            Tag::KubeconfigCert => "kccert",
            Tag::Provider => "provider",
            Tag::Pair => "pair",
            Tag::Pending => "pending",
            Tag::Stale => "stale",
            Tag::Disk => "disk",
            Tag::Elf => "elf",
        }
    }

    pub fn parse(s: &str) -> Option<Tag> {
        Tag::ALL.iter().copied().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything read off a server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Probe {
    /// `uname -m` (validated: a machine name, nothing else).
    pub arch: String,
    pub systemd: bool,
    /// `systemctl --version`'s number (247), when systemd is there.
    pub systemd_version: Option<u32>,
    /// Commands the scripts need that the server lacks.
    pub missing: Vec<String>,
    /// GNU coreutils' version (`8.32`), when it is GNU's.
    pub coreutils: Option<String>,
    /// The server's hostname (escaped when shown).
    pub hostname: String,
    /// The server's clock when read (seconds since the epoch), its
    /// difference to this machine's, and its uptime (seconds since boot) read
    /// in the same breath: systemd's monotonic timestamps become times.
    pub now: f64,
    pub skew: f64,
    pub uptime: f64,
    /// Layout files and asked-for paths that exist.
    pub files: BTreeMap<String, RemoteFile>,
    pub dirs: BTreeMap<String, RemoteDir>,
    /// By unit file name.
    pub units: BTreeMap<String, UnitStatus>,
    pub listeners: Vec<Listener>,
    /// directory → (file system id, available bytes)
    pub disk: BTreeMap<String, (String, u64)>,
    /// Temp files an interrupted upload left (validated names only).
    pub stale: Vec<String>,
    /// What the pending-work marker an interrupted run left says is owed.
    #[serde(skip)]
    pub pending: Vec<crate::model::Owed>,
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
    /// Public certificates (their CERTIFICATE blocks only), by path.
    #[serde(skip)]
    pub certs: BTreeMap<String, String>,
    /// kubeconfig path → (server URL, client certificate PEM).
    #[serde(skip)]
    pub kubeconfigs: BTreeMap<String, (String, Option<String>)>,
    /// Provider names of the encryption config, in order.
    pub encryption_providers: Vec<String>,
    /// certificate path → (its key's path, whether they belong together).
    pub pairs: BTreeMap<String, (String, pki::PairState)>,
    /// The first 20 bytes of each of the layout's binaries (their ELF
    /// header: which machine they are built for).
    pub heads: BTreeMap<String, Vec<u8>>,
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
        crate::model::placed(crate::model::SCHEDULER_CONFIG.manifest).and_then(|f| self.texts.get(f.dest)).map(String::as_str)
    }
    /// Server seconds since the epoch at a systemd monotonic timestamp (µs
    /// since boot), by the clock and uptime read together; 0 when unknown.
    pub fn at_monotonic(&self, usec: u64) -> u64 {
        if usec == 0 || self.now <= 0.0 || self.uptime <= 0.0 {
            return 0;
        }
        (self.now - self.uptime + usec as f64 / 1e6).max(0.0) as u64
    }
}

/// Shell words for a list of paths.
pub fn list<S: AsRef<str>>(v: &[S]) -> String {
    v.iter().map(|p| super::shell_quote(p.as_ref())).collect::<Vec<_>>().join(" ")
}

/// The script for `req`: each fact's fragment, in order. Written for few
/// processes: on a small server each fork and exec costs a millisecond or
/// more, and a no-op run is mostly this script.
pub fn script(req: &Request) -> String {
    let mut body = host::script(req);
    body.push_str(&files::script(req));
    if req.upload_state {
        body.push_str(&upload::script());
    }
    body.push_str(&units::script(req));
    if req.sockets {
        body.push_str(&sockets::script());
    }
    body.push_str(&etcd::script(req));
    body.push_str(&pki::script(req));
    let mut s = format!("T=$(printf '\\t')\n{HASH_CMD}\n");
    // What runs in the background writes to a file of its own in a private
    // directory, printed once all is done: a line written by a background
    // job never lands inside another (a large line takes several writes).
    if body.contains(BACKGROUND) {
        s.push_str("bg=$(mktemp -d) || { echo \"error${T}mktemp -d${T}\"; exit 0; }\ntrap 'rm -rf \"$bg\"' EXIT\n");
        s.push_str(&body);
        s.push_str("wait\nfor f in \"$bg\"/*; do [ -f \"$f\" ] && cat \"$f\"; done\ntrue\n");
    } else {
        s.push_str(&body);
        s.push_str("true\n");
    }
    s
}

/// Where a background job's output goes (see [`script`]).
const BACKGROUND: &str = "\"$bg\"/";

/// `body` run in the background, its output kept apart until the end.
pub(crate) fn background(name: &str, body: &str) -> String {
    format!("( {body} ) > {BACKGROUND}{name} &\n")
}

/// What a reply did not say as it should.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// A command on the server failed: its name and its own words (escaped).
    #[error("`{command}` failed on the server: {stderr}")]
    Failed { command: String, stderr: String },
    /// A line did not hold what its tag promises.
    #[error("the server's answer is malformed: {tag} line: {why}")]
    Malformed { tag: Tag, why: String },
}

pub(crate) fn malformed(tag: Tag, why: impl Into<String>) -> ProbeError {
    ProbeError::Malformed { tag, why: why.into() }
}

/// Decodes a base64 field into bytes.
pub(crate) fn b64(tag: Tag, s: &str) -> Result<Vec<u8>, ProbeError> {
    base64::engine::general_purpose::STANDARD.decode(s.trim()).map_err(|_| malformed(tag, "a field is not base64"))
}

/// Decodes a base64 field into text (lossy: server text is only shown, escaped).
pub(crate) fn b64_text(tag: Tag, s: &str) -> Result<String, ProbeError> {
    Ok(String::from_utf8_lossy(&b64(tag, s)?).into_owned())
}

/// What the parsers share while reading one reply: the sums are matched to
/// files once every line is in.
#[derive(Default)]
pub(crate) struct Reading {
    sums: BTreeMap<String, String>,
}

/// Parses a reply into `p` (a second request adds to the first). The reply
/// is bytes; every field that is not a base64 one is ASCII by construction,
/// so reading it lossily loses nothing.
pub fn parse(out: &[u8], p: &mut Probe) -> Result<(), ProbeError> {
    let text = String::from_utf8_lossy(out);
    let mut r = Reading::default();
    for line in text.lines() {
        let mut fields: Vec<&str> = line.split('\t').collect();
        let Some(tag) = Tag::parse(fields.remove(0)) else { continue };
        match tag {
            Tag::Error => {
                let command = fields.first().map(|c| crate::output::redact::line(c)).unwrap_or_default();
                let stderr = fields.get(1).map(|e| b64_text(tag, e)).transpose()?.unwrap_or_default();
                return Err(ProbeError::Failed { command, stderr: crate::output::redact::line(stderr.trim()) });
            }
            t if host::TAGS.contains(&t) => host::parse(t, &fields, p)?,
            t if files::TAGS.contains(&t) => files::parse(t, &fields, p, &mut r)?,
            t if units::TAGS.contains(&t) => units::parse(t, &fields, p)?,
            t if sockets::TAGS.contains(&t) => sockets::parse(t, &fields, p)?,
            t if etcd::TAGS.contains(&t) => etcd::parse(t, &fields, p)?,
            t if pki::TAGS.contains(&t) => pki::parse(t, &fields, p)?,
            t if upload::TAGS.contains(&t) => upload::parse(t, &fields, p)?,
            t => return Err(malformed(t, "no fact reads it")),
        }
    }
    files::finish(p, r);
    units::finish(p);
    sockets::finish(p);
    Ok(())
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
    finish(&out.stdout, asked, into).map_err(|e| Error::Server(format!("{}: {e}", host.destination)))
}

/// Parses the script's output `out` into `into`; `asked` is when the script
/// was sent (the server's clock read in it sets the skew).
pub fn finish(out: &[u8], asked: std::time::SystemTime, into: &mut Probe) -> Result<(), ProbeError> {
    parse(out, into)?;
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
mod tests;
