//! The control plane as the manifests describe it: types written here, values
//! generated at build time from `manifests/` by `codegen` (see build.rs).
//! Nothing in this crate or the plugins hard-codes a flag, path or rule.

pub mod overrides;
pub mod version;

pub use version::Version;

/// One `--name[=value]` flag of a unit's ExecStart, in manifest order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    pub name: &'static str,
    pub value: Option<&'static str>,
    /// 1-based line in the unit manifest.
    pub line: u32,
}

/// A path a component's flags or config reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRef {
    pub path: &'static str,
    /// `--client-ca-file`, or `kube-scheduler.yaml clientConnection.kubeconfig`.
    pub by: &'static str,
    /// Written by the component (e.g. --audit-log-path), not read.
    pub output: bool,
}

/// A systemd unit from `manifests/units`, with its derived facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitSpec {
    /// `kube-apiserver`: the file stem, the systemd unit name without `.service`.
    pub component: &'static str,
    pub file_name: &'static str,
    /// Path relative to manifests/.
    pub manifest: &'static str,
    pub description: &'static str,
    pub documentation: Option<&'static str>,
    /// The program ExecStart runs.
    pub exec: &'static str,
    pub flags: &'static [Flag],
    pub restart: Option<&'static str>,
    pub restart_sec: Option<&'static str>,
    pub wanted_by: &'static [&'static str],
    /// --secure-port, or the component's documented default (6443/10257/10259).
    pub serving_port: u16,
    /// The plain-HTTP port releases before 1.23 open unless `--port=0`.
    pub insecure_port: Option<u16>,
    /// --bind-address, or 0.0.0.0.
    pub bind_address: &'static str,
    pub paths: &'static [PathRef],
    /// The manifest byte for byte: what bootstrap uploads and cpcheck compares.
    pub text: &'static str,
}

impl UnitSpec {
    pub fn flag(&self, name: &str) -> Option<&'static Flag> {
        self.flags.iter().find(|f| f.name == name)
    }
    pub fn unit_name(&self) -> &'static str {
        self.file_name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerConfigSpec {
    pub manifest: &'static str,
    pub api_version: &'static str,
    pub api_version_line: u32,
    pub kubeconfig: &'static str,
    pub leader_elect: bool,
    pub text: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirSpec {
    pub path: &'static str,
    pub mode: u32,
    /// Made by bootstrap; `reset` removes it once empty.
    pub owned: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Candidate paths relative to the assets directory; the first present wins.
    Asset(&'static [&'static str]),
    /// Compiled in from manifests/.
    Manifest { path: &'static str, text: &'static str },
}

/// A file bootstrap places on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    pub dest: &'static str,
    pub mode: u32,
    pub owner: &'static str,
    pub group: &'static str,
    pub kind: FileKind,
    pub source: Source,
    /// Components that restart when this file changes (derived by codegen).
    pub restarts: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleSpec {
    pub api_groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub resource_names: &'static [&'static str],
    pub non_resource_urls: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterRoleSpec {
    pub name: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    pub annotations: &'static [(&'static str, &'static str)],
    pub rules: &'static [RuleSpec],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectSpec {
    pub kind: &'static str,
    pub name: &'static str,
    pub api_group: Option<&'static str>,
    pub namespace: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterRoleBindingSpec {
    pub name: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    pub annotations: &'static [(&'static str, &'static str)],
    pub role: &'static str,
    pub subjects: &'static [SubjectSpec],
}

mod generated {
    use super::*;
    include!(concat!(env!("OUT_DIR"), "/manifests.rs"));
}
pub use generated::*;

/// The first usable address of a CIDR (`10.32.0.0/24` → `10.32.0.1`): the
/// `kubernetes` Service's ClusterIP for a service range.
pub fn first_address(cidr: &str) -> Option<std::net::IpAddr> {
    use std::net::IpAddr;
    match cidr.parse::<ipnet::IpNet>().ok()? {
        ipnet::IpNet::V4(n) if n.prefix_len() < 32 => Some(IpAddr::V4((u32::from(n.network()) + 1).into())),
        ipnet::IpNet::V6(n) if n.prefix_len() < 128 => Some(IpAddr::V6((u128::from(n.network()) + 1).into())),
        _ => None,
    }
}

/// The first address of a service range as text, the `kubernetes` Service's ClusterIP.
pub fn service_ip(cidr: &str) -> Option<String> {
    first_address(cidr).map(|ip| ip.to_string())
}

/// Where the apiserver reaches etcd (the first of --etcd-servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// etcd's client endpoint as the manifests' apiserver uses it (etcd's
/// default port when the URL names none).
pub fn etcd_endpoint() -> Endpoint {
    let url = ETCD_SERVERS.first().copied().unwrap_or("http://127.0.0.1:2379");
    let hostport = url.split_once("://").map(|x| x.1).unwrap_or(url).split('/').next().unwrap_or("");
    match hostport.rsplit_once(':') {
        Some((h, p)) => Endpoint { host: h.trim_matches(['[', ']']).to_string(), port: p.parse().unwrap_or(2379) },
        None => Endpoint { host: hostport.to_string(), port: 2379 },
    }
}

/// A file's permission bits. Shown and serialized as four octal digits
/// (`0644`), the way chmod takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileMode(pub u32);

impl FileMode {
    /// From `stat -c %a` (`644`, `1777`).
    pub fn from_octal(s: &str) -> Option<FileMode> {
        u32::from_str_radix(s.trim(), 8).ok().filter(|m| *m <= 0o7777).map(FileMode)
    }
    /// No permission bit beyond `max`'s (kube-bench's `bitmask` test: 600 passes 644).
    pub fn within(self, max: FileMode) -> bool {
        self.0 & !max.0 & 0o777 == 0 && self.0 & 0o7000 == 0
    }
    /// Writable by a user other than the owner, through the group or by anyone.
    pub fn writable_by_others(self) -> bool {
        self.0 & 0o022 != 0
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl serde::Serialize for FileMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// systemd's ActiveState of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    Activating,
    Deactivating,
    Failed,
    #[default]
    Inactive,
    /// Anything newer systemd may say.
    #[serde(untagged)]
    Other(String),
}

impl ActiveState {
    pub fn parse(s: &str) -> ActiveState {
        match s {
            "active" => ActiveState::Active,
            "reloading" => ActiveState::Reloading,
            "activating" => ActiveState::Activating,
            "deactivating" => ActiveState::Deactivating,
            "failed" => ActiveState::Failed,
            "inactive" | "" => ActiveState::Inactive,
            other => ActiveState::Other(other.to_string()),
        }
    }
    /// Running, or on its way there: not to be started again.
    pub fn is_up(&self) -> bool {
        matches!(self, ActiveState::Active | ActiveState::Reloading | ActiveState::Activating)
    }
}

impl std::fmt::Display for ActiveState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ActiveState::Active => "active",
            ActiveState::Reloading => "reloading",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
            ActiveState::Failed => "failed",
            ActiveState::Inactive => "inactive",
            ActiveState::Other(o) => o,
        };
        f.write_str(s)
    }
}

/// A command line's `--name[=value]` flags, in order: from a unit's
/// ExecStart, a running process's argv, or the manifests plus overrides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flags(pub Vec<(String, Option<String>)>);

impl Flags {
    /// The `--flag` words of an argv (the program itself skipped). A flag
    /// given as `--flag value` (two words, as Go's flag package and cobra
    /// take them) has that value: a word that is not a flag belongs to the
    /// flag before it.
    pub fn from_argv(argv: &[String]) -> Flags {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for w in argv.iter().skip(1) {
            match w.strip_prefix("--") {
                Some(body) if !body.is_empty() => out.push(match body.split_once('=') {
                    Some((n, v)) => (n.to_string(), Some(v.to_string())),
                    None => (body.to_string(), None),
                }),
                _ => {
                    if let Some((_, v @ None)) = out.last_mut() {
                        *v = Some(w.clone());
                    }
                }
            }
        }
        Flags(out)
    }

    /// The flags of a unit file's ExecStart, read by systemd's rules.
    pub fn from_unit(text: &str, file_name: &str) -> Result<Flags, String> {
        let u = unitfile::parse_unit(std::path::Path::new(file_name), text).map_err(|e| format!("line {}: {}", e.line, crate::output::redact::line(&e.message)))?;
        Ok(Flags(u.flags.into_iter().map(|f| (f.name, f.value)).collect()))
    }

    /// The flag's value; a bare `--flag` reads `true`, as Go's flag package
    /// takes it for booleans.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or("true"))
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// The argv that runs `exec` with these flags.
    pub fn argv(&self, exec: &str) -> Vec<String> {
        std::iter::once(exec.to_string())
            .chain(self.0.iter().map(|(n, v)| match v {
                Some(v) => format!("--{n}={v}"),
                None => format!("--{n}"),
            }))
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }
}

/// The component that serves the API; the others are its clients.
pub const APISERVER: &str = "kube-apiserver";

/// The unit of `component`, if the manifests define one.
pub fn unit(component: &str) -> Option<&'static UnitSpec> {
    UNITS.iter().find(|u| u.component == component)
}

/// The layout entry that places the compiled-in manifest `manifest`.
pub fn placed(manifest: &str) -> Option<&'static FileSpec> {
    FILES.iter().find(|f| matches!(f.source, Source::Manifest { path, .. } if path == manifest))
}

/// The layout entry placed at `dest`.
pub fn file(dest: &str) -> Option<&'static FileSpec> {
    FILES.iter().find(|f| f.dest == dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");

    #[test]
    fn constants_are_the_manifests_on_disk_byte_for_byte() {
        for u in UNITS {
            let on_disk = std::fs::read_to_string(format!("{MANIFESTS}/{}", u.manifest)).unwrap();
            assert_eq!(u.text, on_disk, "{} is stale: rebuild", u.manifest);
            let parsed = unitfile::parse_unit(std::path::Path::new(u.manifest), &on_disk).unwrap();
            let flags: Vec<_> = parsed.flags.iter().map(|f| (f.name.as_str(), f.value.as_deref())).collect();
            let consts: Vec<_> = u.flags.iter().map(|f| (f.name, f.value)).collect();
            assert_eq!(flags, consts);
        }
        let sc = std::fs::read_to_string(format!("{MANIFESTS}/{}", SCHEDULER_CONFIG.manifest)).unwrap();
        assert_eq!(SCHEDULER_CONFIG.text, sc);
    }

    #[test]
    fn modes_states_and_flags_are_typed() {
        let m = FileMode::from_octal("644").unwrap();
        assert_eq!(m.to_string(), "0644");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"0644\"");
        assert!(FileMode(0o600).within(FileMode(0o644)) && !FileMode(0o664).within(FileMode(0o644)) && !FileMode(0o4600).within(FileMode(0o644)));
        assert!(FileMode(0o1777).writable_by_others() && !FileMode(0o755).writable_by_others());
        assert_eq!(FileMode::from_octal("99"), None);
        assert!(ActiveState::parse("activating").is_up() && !ActiveState::parse("failed").is_up());
        assert_eq!(ActiveState::parse("maintenance").to_string(), "maintenance");
        let f = Flags::from_argv(&["/x".into(), "--v=2".into(), "--profiling".into(), "--anonymous-auth".into(), "false".into(), "--insecure".into()]);
        assert_eq!((f.get("v"), f.get("profiling"), f.get("anonymous-auth"), f.get("insecure"), f.get("nope")), (Some("2"), Some("true"), Some("false"), Some("true"), None));
        assert_eq!(f.argv("/x"), ["/x", "--v=2", "--profiling", "--anonymous-auth=false", "--insecure"]);
        let u = Flags::from_unit(KUBE_SCHEDULER.text, KUBE_SCHEDULER.file_name).unwrap();
        assert_eq!(u.get("v"), Some("2"));
        assert!(Flags::from_unit("[Unit]\ngarbage\n", "x.service").unwrap_err().starts_with("line 2:"));
    }

    #[test]
    fn etcd_is_reached_where_the_apiserver_reaches_it() {
        let e = etcd_endpoint();
        assert!(ETCD_SERVERS[0].ends_with(&format!("{}:{}", e.host, e.port)), "{e} from {}", ETCD_SERVERS[0]);
    }

    #[test]
    fn the_service_ip_is_the_first_address_of_the_range() {
        assert_eq!(first_address(SERVICE_CIDR).map(|i| i.to_string()).as_deref(), Some(SERVICE_IP));
        assert_eq!(first_address("10.96.0.0/12").unwrap().to_string(), "10.96.0.1");
        assert_eq!(first_address("fd00::/108").unwrap().to_string(), "fd00::1");
        assert_eq!(first_address("nope"), None);
    }

    #[test]
    fn every_unit_and_its_binary_are_placed() {
        for u in UNITS {
            assert_eq!(file(u.exec).map(|f| f.kind), Some(FileKind::Binary), "{}", u.exec);
            let placed = FILES.iter().any(|f| matches!(f.source, Source::Manifest { path, .. } if path == u.manifest));
            assert!(placed, "{} not placed", u.manifest);
        }
        for f in FILES.iter().filter(|f| f.kind.is_secret()) {
            assert_eq!(f.mode, 0o600, "{}", f.dest);
        }
    }
}
