//! The control plane as the manifests describe it: types written here, values
//! generated at build time from `manifests/` by `codegen` (see build.rs).
//! Nothing in this crate or the plugins hard-codes a flag, path or rule.

pub mod arch;
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
    pub component: Component,
    /// `kube-apiserver`: the file stem, the systemd unit name without `.service`.
    pub name: &'static str,
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
    pub restarts: &'static [Component],
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

/// A host and port: where the apiserver reaches etcd (the first of
/// --etcd-servers), or the plane's load-balanced address (`--endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Endpoint {
    /// `https://HOST[:PORT]` (port 443 when none), nothing else: no path,
    /// query, user or control character. One line saying what is wrong.
    pub fn parse_https(s: &str) -> Result<Endpoint, crate::error::Unusable> {
        let want = "expected https://HOST[:PORT] (the load balancer or virtual IP clients use)";
        if crate::output::redact::line(s) != s {
            return Err(want.into());
        }
        let u: http::Uri = s.parse().map_err(|_| crate::error::Unusable::from(want))?;
        let path_ok = matches!(u.path_and_query().map(|p| p.as_str()), None | Some("") | Some("/"));
        let host = u.host().filter(|h| !h.is_empty()).map(|h| h.trim_matches(['[', ']']).to_string());
        match (u.scheme_str(), host, path_ok, u.authority().is_some_and(|a| a.as_str().contains('@'))) {
            (Some("https"), Some(host), true, false) => Ok(Endpoint { host, port: u.port_u16().unwrap_or(443) }),
            _ => Err(want.into()),
        }
    }
    /// `https://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("https://{self}")
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

/// A unit that does not parse, as one line (`line N: what`): the message
/// quotes the server's text, escaped.
pub fn unit_error(e: &unitfile::ParseError) -> String {
    format!("line {}: {}", e.line, crate::output::redact::line(&e.message))
}

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
    pub fn from_unit(text: &str, file_name: &str) -> Result<Flags, unitfile::ParseError> {
        let u = unitfile::parse_unit(std::path::Path::new(file_name), text)?;
        Ok(Flags(u.flags.into_iter().map(|f| (f.name, f.value)).collect()))
    }

    /// The flag's value; a bare `--flag` reads `true`, as Go's flag package
    /// takes it for booleans.
    pub fn get(&self, name: &str) -> Option<&str> {
        // Given twice, the program reads the last.
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or("true"))
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

/// How a running process's argv differs from `want` (both as argv: the
/// program, then its words), e.g. `--v=2 (unit: --v=3)`; None when equal. A
/// flag given as `--flag value` reads as `--flag=value` (see
/// [`Flags::from_argv`]). Server text is escaped.
pub fn argv_difference(running: &[String], want: &[String]) -> Option<String> {
    if running == want {
        return None;
    }
    let (r, w) = (Flags::from_argv(running), Flags::from_argv(want));
    let shown = |n: &str, v: Option<&str>| {
        crate::output::redact::line(&match v {
            Some(v) => format!("--{n}={v}"),
            None => format!("--{n}"),
        })
    };
    let mut diffs = Vec::new();
    for (n, v) in w.iter() {
        match r.iter().find(|(rn, _)| *rn == n) {
            Some((_, rv)) if rv != v => diffs.push(format!("{} (unit: {})", shown(n, rv), shown(n, v))),
            None => diffs.push(format!("--{n} missing")),
            _ => {}
        }
    }
    for (n, v) in r.iter().filter(|(n, _)| !w.is_set(n)) {
        diffs.push(format!("{} (not in the unit)", shown(n, v)));
    }
    if running.first() != want.first() {
        diffs.insert(
            0,
            format!("runs {} (unit: {})", crate::output::redact::line(running.first().map(String::as_str).unwrap_or("?")), want.first().map(String::as_str).unwrap_or("?")),
        );
    }
    if diffs.is_empty() {
        if r == w {
            return None;
        }
        diffs.push("flag order".into());
    }
    Some(diffs.join(", "))
}

impl Component {
    /// `kube-apiserver`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
    /// `kube-apiserver.service`.
    pub fn unit(self) -> &'static str {
        self.spec().file_name
    }
    /// Its secure port as the manifests give it.
    pub fn serving_port(self) -> u16 {
        self.spec().serving_port
    }
    /// Its binary on the server.
    pub fn exec(self) -> &'static str {
        self.spec().exec
    }
    /// The component named `name` (`kube-apiserver`), if the manifests define it.
    pub fn named(name: &str) -> Option<Component> {
        Component::ALL.iter().copied().find(|c| c.name() == name)
    }
    /// The component whose unit file is `unit` (`kube-apiserver.service`).
    pub fn of_unit(unit: &str) -> Option<Component> {
        Component::ALL.iter().copied().find(|c| c.unit() == unit)
    }
    /// The user Kubernetes' own RBAC grants this component's permissions
    /// to (`system:kube-scheduler`): its kubeconfig's client certificate's CN.
    pub fn rbac_user(self) -> String {
        format!("system:{}", self.name())
    }
    /// The API server's clients (every other component).
    pub fn clients() -> impl Iterator<Item = Component> {
        Component::ALL.iter().copied().filter(|c| *c != APISERVER)
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Component {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The unit of the component named `name`, if the manifests define one.
pub fn unit(name: &str) -> Option<&'static UnitSpec> {
    Component::named(name).map(Component::spec)
}

/// Work a run owes the server after it placed files: one line of the
/// pending marker each, written before the commit renames anything and
/// cleared as each systemctl step is done, so an interrupted run's next
/// run finishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owed {
    /// `daemon-reload`
    DaemonReload,
    /// `restart kube-apiserver.service`
    Restart(Component),
}

impl std::fmt::Display for Owed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owed::DaemonReload => f.write_str("daemon-reload"),
            Owed::Restart(c) => write!(f, "restart {}", c.unit()),
        }
    }
}

impl std::str::FromStr for Owed {
    type Err = ();
    /// A marker line; anything else (another version's, a damaged line) is
    /// not owed work.
    fn from_str(s: &str) -> Result<Owed, ()> {
        match s.trim().split_once(' ') {
            None if s.trim() == "daemon-reload" => Ok(Owed::DaemonReload),
            Some(("restart", unit)) => Component::of_unit(unit).map(Owed::Restart).ok_or(()),
            _ => Err(()),
        }
    }
}

/// The layout entry that places the compiled-in manifest `manifest`.
pub fn placed(manifest: &str) -> Option<&'static FileSpec> {
    FILES.iter().find(|f| matches!(f.source, Source::Manifest { path, .. } if path == manifest))
}

/// The layout entry placed at `dest`.
pub fn file(dest: &str) -> Option<&'static FileSpec> {
    FILES.iter().find(|f| f.dest == dest)
}

/// The asset (its name in the jumpbox's assets directory) that `c`'s
/// manifest flag `flag` names on the server (`ca.crt` for the apiserver's
/// `--client-ca-file`): how messages name a file to the person who has it.
pub fn asset_named_by(c: Component, flag: &str) -> String {
    let dest = c.spec().flag(flag).and_then(|f| f.value);
    match dest.and_then(file).map(|f| f.source) {
        Some(Source::Asset(candidates)) => candidates.last().copied().unwrap_or_default().to_string(),
        _ => format!("the file of {c}'s --{flag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(unit_error(&Flags::from_unit("[Unit]\ngarbage\n", "x.service").unwrap_err()).starts_with("line 2:"));
    }

    #[test]
    fn the_service_ip_is_the_first_address_of_the_range() {
        assert_eq!(first_address("10.96.0.0/12").unwrap().to_string(), "10.96.0.1");
        assert_eq!(first_address("fd00::/108").unwrap().to_string(), "fd00::1");
        assert_eq!(first_address("nope"), None);
    }
}
