//! A bootstrap is a plan: plain data built by comparing desired state with the
//! server's facts. The executor runs it; `--dry-run` prints it.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::desired::{Desired, DesiredFile};
use crate::facts::Facts;
use crate::model::{FileKind, DIRECTORIES, UNITS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    New,
    Changed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Remove a temp file an interrupted run left beside its destination.
    RemoveStale { path: String },
    CreateDir { path: String, mode: String },
    Upload {
        dest: String,
        mode: String,
        owner: String,
        group: String,
        bytes: u64,
        sha256: String,
        change: Change,
        secret: bool,
        #[serde(skip)]
        index: usize,
    },
    SetMode { dest: String, mode: String, owner: String, group: String },
    DaemonReload,
    Enable { units: Vec<String> },
    Start { unit: String },
    Restart { unit: String, because: Vec<String> },
    WaitHealthy { components: Vec<String> },
    ApplyRbac { cluster_roles: Vec<String>, cluster_role_bindings: Vec<String> },
}

impl Action {
    /// One line for humans.
    pub fn line(&self) -> String {
        match self {
            Action::RemoveStale { path } => format!("remove   {path} (left by an interrupted upload)"),
            Action::CreateDir { path, mode } => format!("mkdir    {path} ({mode})"),
            Action::Upload { dest, mode, owner, group, bytes, change, .. } => {
                let c = if *change == Change::New { "new" } else { "changed" };
                format!("upload   {dest} ({mode} {owner}:{group}, {}, {c})", human_bytes(*bytes))
            }
            Action::SetMode { dest, mode, owner, group } => format!("chmod    {dest} → {mode} {owner}:{group}"),
            Action::DaemonReload => "systemctl daemon-reload".into(),
            Action::Enable { units } => format!("systemctl enable {}", units.join(" ")),
            Action::Start { unit } => format!("systemctl start {unit}"),
            Action::Restart { unit, because } => format!("systemctl restart {unit} (changed: {})", because.join(", ")),
            Action::WaitHealthy { components } => format!("wait     until healthy: {}", components.join(", ")),
            Action::ApplyRbac { cluster_roles, cluster_role_bindings } => format!(
                "apply    ClusterRole {} / ClusterRoleBinding {} (server-side)",
                cluster_roles.join(", "),
                cluster_role_bindings.join(", ")
            ),
        }
    }

    /// Does this action change the server?
    pub fn changes(&self) -> bool {
        !matches!(self, Action::WaitHealthy { .. } | Action::ApplyRbac { .. })
    }
}

pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn upload_bytes(&self) -> u64 {
        self.actions.iter().map(|a| if let Action::Upload { bytes, .. } = a { *bytes } else { 0 }).sum()
    }
    pub fn restarts(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Restart { unit, .. } | Action::Start { unit } => Some(unit.clone()),
                _ => None,
            })
            .collect()
    }
    /// Nothing on the server would change.
    pub fn is_noop(&self) -> bool {
        !self.actions.iter().any(Action::changes)
    }
}

fn mode(m: u32) -> String {
    format!("{m:04o}")
}

/// Compares desired with actual and lists what to do, in execution order.
pub fn build(desired: &Desired, facts: &Facts) -> Plan {
    let mut actions = Vec::new();
    for s in &facts.stale {
        actions.push(Action::RemoveStale { path: s.clone() });
    }
    for d in DIRECTORIES {
        if !facts.dirs.contains_key(d.path) {
            actions.push(Action::CreateDir { path: d.path.into(), mode: mode(d.mode) });
        }
    }
    let mut changed_components: BTreeSet<&str> = BTreeSet::new();
    let mut because: Vec<(&str, &str)> = Vec::new();
    let mut unit_changed = false;
    for (index, f) in desired.files.iter().enumerate() {
        let DesiredFile { spec, size, sha256, .. } = f;
        let remote = facts.files.get(spec.dest);
        let change = match remote {
            None => Some(Change::New),
            Some(r) if &r.sha256 != sha256 => Some(Change::Changed),
            _ => None,
        };
        if let Some(change) = change {
            actions.push(Action::Upload {
                dest: spec.dest.into(),
                mode: mode(spec.mode),
                owner: spec.owner.into(),
                group: spec.group.into(),
                bytes: *size,
                sha256: sha256.clone(),
                change,
                secret: spec.kind.is_secret(),
                index,
            });
            for c in spec.restarts {
                changed_components.insert(c);
                because.push((c, spec.dest));
            }
            unit_changed |= spec.kind == FileKind::Unit;
        } else if let Some(r) = remote {
            if r.mode != spec.mode || r.owner != spec.owner || r.group != spec.group {
                actions.push(Action::SetMode { dest: spec.dest.into(), mode: mode(spec.mode), owner: spec.owner.into(), group: spec.group.into() });
            }
        }
    }
    if unit_changed {
        actions.push(Action::DaemonReload);
    }
    let to_enable: Vec<String> = UNITS
        .iter()
        .filter(|u| facts.units.get(u.file_name).map(|s| s.enabled.as_str()) != Some("enabled"))
        .map(|u| u.file_name.to_string())
        .collect();
    if !to_enable.is_empty() {
        actions.push(Action::Enable { units: to_enable });
    }
    for u in UNITS {
        let active = facts.units.get(u.file_name).is_some_and(|s| s.active == "active" || s.active == "activating" || s.active == "reloading");
        if !active {
            actions.push(Action::Start { unit: u.file_name.into() });
        } else if changed_components.contains(u.component) {
            let why = because.iter().filter(|(c, _)| *c == u.component).map(|(_, d)| d.to_string()).collect();
            actions.push(Action::Restart { unit: u.file_name.into(), because: why });
        }
    }
    actions.push(Action::WaitHealthy { components: UNITS.iter().map(|u| u.component.to_string()).collect() });
    actions.push(Action::ApplyRbac {
        cluster_roles: crate::model::CLUSTER_ROLES.iter().map(|r| r.name.to_string()).collect(),
        cluster_role_bindings: crate::model::CLUSTER_ROLE_BINDINGS.iter().map(|r| r.name.to_string()).collect(),
    });
    Plan { actions }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Content, DesiredFile};
    use crate::facts::{RemoteFile, UnitState};
    use crate::model::FILES;
    use crate::overrides::{desired_units, Overrides};

    fn desired() -> Desired {
        let files = FILES
            .iter()
            .map(|spec| DesiredFile { spec, content: Content::Text(spec.dest.into()), size: 10, sha256: format!("sha-{}", spec.dest) })
            .collect();
        Desired { files, units: desired_units(&Overrides::default()), scheduler_version: None }
    }

    fn converged(d: &Desired) -> Facts {
        let mut f = Facts::default();
        for x in &d.files {
            f.files.insert(x.spec.dest.into(), RemoteFile { sha256: x.sha256.clone(), mode: x.spec.mode, owner: "root".into(), group: "root".into(), size: 10 });
        }
        for dd in DIRECTORIES {
            f.dirs.insert(dd.path.into(), dd.mode);
        }
        for u in UNITS {
            f.units.insert(u.file_name.into(), UnitState { enabled: "enabled".into(), active: "active".into(), ..Default::default() });
        }
        f
    }

    #[test]
    fn empty_server_gets_everything_in_order() {
        let d = desired();
        let p = build(&d, &Facts::default());
        let kinds: Vec<_> = p.actions.iter().map(|a| serde_json::to_value(a).unwrap()["action"].as_str().unwrap().to_string()).collect();
        let first_upload = kinds.iter().position(|k| k == "upload").unwrap();
        assert!(kinds[..first_upload].iter().all(|k| k == "create-dir"));
        assert_eq!(p.actions.iter().filter(|a| matches!(a, Action::Upload { .. })).count(), FILES.len());
        assert!(kinds.contains(&"daemon-reload".to_string()));
        assert_eq!(kinds.iter().filter(|k| *k == "start").count(), 3);
        assert_eq!(kinds.last().unwrap(), "apply-rbac");
    }

    #[test]
    fn converged_server_is_a_noop() {
        let d = desired();
        let p = build(&d, &converged(&d));
        assert!(p.is_noop(), "{:#?}", p.actions);
        assert_eq!(p.upload_bytes(), 0);
        assert!(p.restarts().is_empty());
    }

    #[test]
    fn a_changed_cert_restarts_exactly_its_readers_and_a_mode_drift_is_fixed_in_place() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/var/lib/kubernetes/ca.crt").unwrap().sha256 = "old".into();
        f.files.get_mut("/var/lib/kubernetes/ca.key").unwrap().mode = 0o644;
        let p = build(&d, &f);
        let restarted = p.restarts();
        assert_eq!(restarted, ["kube-apiserver.service", "kube-controller-manager.service"]);
        assert!(!p.actions.iter().any(|a| matches!(a, Action::DaemonReload)));
        assert!(p.actions.iter().any(|a| matches!(a, Action::SetMode { dest, mode, .. } if dest == "/var/lib/kubernetes/ca.key" && mode == "0600")));
    }

    #[test]
    fn a_changed_unit_reloads_and_restarts_only_that_component() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/etc/systemd/system/kube-scheduler.service").unwrap().sha256 = "old".into();
        let p = build(&d, &f);
        assert!(p.actions.iter().any(|a| matches!(a, Action::DaemonReload)));
        assert_eq!(p.restarts(), ["kube-scheduler.service"]);
    }
}
