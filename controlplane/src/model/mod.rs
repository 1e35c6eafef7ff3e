//! The control plane as the manifests describe it: types written here, values
//! generated at build time from `manifests/` by `codegen` (see build.rs).
//! Nothing in this crate or the plugins hard-codes a flag, path or rule.

pub mod overrides;

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
