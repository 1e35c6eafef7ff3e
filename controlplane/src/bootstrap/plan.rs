//! A bootstrap is a plan: plain data built by comparing desired state with the
//! server's facts. The executor runs it; `--dry-run` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::desired::{Desired, DesiredFile};
use crate::remote::probe::Facts;
use crate::model::{FileKind, UnitSpec, DIRECTORIES, UNITS};
use crate::model::overrides::DesiredUnit;

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
    /// Give one of bootstrap's own directories its mode and owner back.
    FixDir { path: String, mode: String, owner: String, group: String, was: String },
    Upload {
        dest: String,
        mode: String,
        owner: String,
        group: String,
        bytes: u64,
        /// The desired content's sha256; never for a secret (a key's
        /// fingerprint is not for logs).
        #[serde(skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        change: Change,
        secret: bool,
        #[serde(skip)]
        index: usize,
    },
    SetMode { dest: String, mode: String, owner: String, group: String },
    DaemonReload { because: Vec<String> },
    Enable { units: Vec<String> },
    /// Stop units around another's restart (see [`build`]).
    Stop { units: Vec<String>, because: String },
    Start { unit: String, because: Vec<String> },
    Restart { unit: String, because: Vec<String> },
    WaitHealthy { components: Vec<String> },
    ApplyRbac { cluster_roles: Vec<String>, cluster_role_bindings: Vec<String> },
}

impl Action {
    /// One line for humans.
    pub fn line(&self) -> String {
        let why = |b: &[String]| if b.is_empty() { String::new() } else { format!(" ({})", b.join("; ")) };
        match self {
            Action::RemoveStale { path } => format!("remove   {path} (left by an interrupted upload)"),
            Action::CreateDir { path, mode } => format!("mkdir    {path} ({mode})"),
            Action::FixDir { path, mode, owner, group, was } => format!("chmod    {path}/ → {mode} {owner}:{group} (was {was})"),
            Action::Upload { dest, mode, owner, group, bytes, change, .. } => {
                let c = if *change == Change::New { "new" } else { "changed" };
                format!("upload   {dest} ({mode} {owner}:{group}, {}, {c})", human_bytes(*bytes))
            }
            Action::SetMode { dest, mode, owner, group } => format!("chmod    {dest} → {mode} {owner}:{group}"),
            Action::DaemonReload { because } => format!("systemctl daemon-reload{}", why(because)),
            Action::Enable { units } => format!("systemctl enable {}", units.join(" ")),
            Action::Stop { units, because } => format!("systemctl stop {} ({because})", units.join(" ")),
            Action::Start { unit, because } => format!("systemctl start {unit}{}", why(because)),
            Action::Restart { unit, because } => format!("systemctl restart {unit}{}", why(because)),
            Action::WaitHealthy { components } => format!("wait     until healthy: {} (and leaders; a Lease left by a process stopped here is released)", components.join(", ")),
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
    /// The pending-work marker the commit writes before it places any file
    /// (`daemon-reload`, `restart UNIT`): what must follow the commit, so an
    /// interrupted run is finished by the next one.
    pub marker: Vec<String>,
}

impl Plan {
    pub fn upload_bytes(&self) -> u64 {
        self.actions.iter().map(|a| if let Action::Upload { bytes, .. } = a { *bytes } else { 0 }).sum()
    }
    pub fn restarts(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Restart { unit, .. } | Action::Start { unit, .. } => Some(unit.clone()),
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

/// The argv a unit's ExecStart gives its process.
pub fn argv(u: &DesiredUnit) -> Vec<String> {
    std::iter::once(u.spec.exec.to_string())
        .chain(u.flags.iter().map(|(n, v)| match v {
            Some(v) => format!("--{n}={v}"),
            None => format!("--{n}"),
        }))
        .collect()
}

/// How a running process's argv differs from `want`, e.g. `--v=2 (unit: --v=3)`.
pub fn argv_difference(running: &[String], want: &[String]) -> Option<String> {
    if running == want {
        return None;
    }
    let name = |w: &str| w.split('=').next().unwrap_or(w).to_string();
    let mut diffs = Vec::new();
    for w in want.iter().skip(1) {
        match running.iter().skip(1).find(|r| name(r) == name(w)) {
            Some(r) if r != w => diffs.push(format!("{} (unit: {})", crate::output::redact::line(r), w)),
            None => diffs.push(format!("{} missing", name(w))),
            _ => {}
        }
    }
    for r in running.iter().skip(1).filter(|r| !want.iter().any(|w| name(w) == name(r))) {
        diffs.push(format!("{} (not in the unit)", crate::output::redact::line(r)));
    }
    if running.first() != want.first() {
        diffs.insert(0, format!("runs {} (unit: {})", crate::output::redact::line(running.first().map(String::as_str).unwrap_or("?")), want[0]));
    }
    if diffs.is_empty() {
        diffs.push("flag order".into());
    }
    Some(diffs.join(", "))
}

/// Compares desired with actual and lists what to do, in execution order.
///
/// Besides what the files say, the server's state says what an interrupted
/// run left undone: a unit systemd has not re-read (NeedDaemonReload), a
/// process running other flags than its unit, and the pending-work marker
/// (restarts a cert or binary change still owes). The plan finishes that.
///
/// Restarting the apiserver alone makes it wait, after it stops listening,
/// until its clients on the server (controller-manager, scheduler) close
/// their watches: they do only once they lose their leases and exit, 10 s
/// to a minute later (v1.20: `--request-timeout`, 60 s, bounds the wait).
/// So the plan stops those clients first, restarts the apiserver, and
/// starts them again: seconds instead, and no crash-restart of them.
pub fn build(desired: &Desired, facts: &Facts) -> Plan {
    let mut actions = Vec::new();
    for s in &facts.stale {
        actions.push(Action::RemoveStale { path: s.clone() });
    }
    for d in DIRECTORIES {
        match facts.dirs.get(d.path) {
            None => actions.push(Action::CreateDir { path: d.path.into(), mode: mode(d.mode) }),
            Some(r) if d.owned && r.kind == "directory" && (r.mode != d.mode || r.owner != "root" || r.group != "root") => actions.push(Action::FixDir {
                path: d.path.into(),
                mode: mode(d.mode),
                owner: "root".into(),
                group: "root".into(),
                was: format!("{} {}:{}", mode(r.mode), crate::output::redact::line(&r.owner), crate::output::redact::line(&r.group)),
            }),
            _ => {}
        }
    }
    let mut because: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut reload: Vec<String> = Vec::new();
    for (index, f) in desired.files.iter().enumerate() {
        let DesiredFile { spec, size, sha256, .. } = f;
        let remote = facts.files.get(spec.dest);
        let change = match remote {
            None => Some(Change::New),
            Some(r) if &r.sha256 != sha256 || !r.is_regular() => Some(Change::Changed),
            _ => None,
        };
        if let Some(change) = change {
            actions.push(Action::Upload {
                dest: spec.dest.into(),
                mode: mode(spec.mode),
                owner: spec.owner.into(),
                group: spec.group.into(),
                bytes: *size,
                sha256: (!spec.kind.is_secret()).then(|| sha256.clone()),
                change,
                secret: spec.kind.is_secret(),
                index,
            });
            for c in spec.restarts {
                because.entry(c).or_default().push(spec.dest.to_string());
            }
            if spec.kind == FileKind::Unit {
                reload.push(format!("{} changed", spec.dest));
            }
        } else if let Some(r) = remote {
            if r.mode != spec.mode || r.owner != spec.owner || r.group != spec.group {
                actions.push(Action::SetMode { dest: spec.dest.into(), mode: mode(spec.mode), owner: spec.owner.into(), group: spec.group.into() });
            }
        }
    }
    // What the server's state says is still owed.
    for line in &facts.pending {
        match line.split_once(' ') {
            None if line == "daemon-reload" => reload.push("pending from an interrupted run".into()),
            Some(("restart", unit)) => {
                if let Some(u) = UNITS.iter().find(|u| u.file_name == unit) {
                    because.entry(u.component).or_default().push("pending from an interrupted run".into());
                }
            }
            _ => {}
        }
    }
    for u in &desired.units {
        let Some(st) = facts.units.get(u.spec.file_name) else { continue };
        if st.need_daemon_reload {
            reload.push(format!("systemd has not read the current {}", u.spec.file_name));
        }
        if facts.active(u.spec.file_name) && !st.cmdline.is_empty() {
            if let Some(d) = argv_difference(&st.cmdline, &argv(u)) {
                because.entry(u.spec.component).or_default().push(format!("running with other flags than its unit: {d}"));
            }
        }
    }
    reload.dedup();
    if !reload.is_empty() {
        actions.push(Action::DaemonReload { because: reload.clone() });
    }
    let to_enable: Vec<String> = UNITS
        .iter()
        .filter(|u| facts.units.get(u.file_name).map(|s| s.enabled.as_str()) != Some("enabled"))
        .map(|u| u.file_name.to_string())
        .collect();
    if !to_enable.is_empty() {
        actions.push(Action::Enable { units: to_enable });
    }
    let why = |c: &str| -> Vec<String> {
        let mut v: Vec<String> = because.get(c).cloned().unwrap_or_default().into_iter().map(|d| if d.starts_with('/') { format!("changed: {d}") } else { d }).collect();
        v.dedup();
        v
    };
    let restart = |u: &UnitSpec| facts.active(u.file_name) && because.contains_key(u.component);
    let apiserver = UNITS.iter().find(|u| u.component == crate::model::APISERVER);
    let mut stopped: Vec<&UnitSpec> = Vec::new();
    if let Some(api) = apiserver.filter(|a| restart(a)) {
        stopped = UNITS.iter().filter(|u| u.component != api.component && facts.active(u.file_name)).collect();
        if !stopped.is_empty() {
            actions.push(Action::Stop {
                units: stopped.iter().map(|u| u.file_name.to_string()).collect(),
                because: format!("their watches would hold {}'s shutdown until they lose their leases", api.file_name),
            });
        }
        actions.push(Action::Restart { unit: api.file_name.into(), because: why(api.component) });
    }
    for u in UNITS {
        if stopped.iter().any(|s| s.file_name == u.file_name) {
            let mut b = why(u.component);
            b.insert(0, "stopped around the apiserver's restart".into());
            actions.push(Action::Start { unit: u.file_name.into(), because: b });
        } else if !facts.active(u.file_name) {
            actions.push(Action::Start { unit: u.file_name.into(), because: Vec::new() });
        } else if restart(u) && Some(u.file_name) != apiserver.map(|a| a.file_name) {
            actions.push(Action::Restart { unit: u.file_name.into(), because: why(u.component) });
        }
    }
    actions.push(Action::WaitHealthy { components: UNITS.iter().map(|u| u.component.to_string()).collect() });
    actions.push(Action::ApplyRbac {
        cluster_roles: crate::model::CLUSTER_ROLES.iter().map(|r| r.name.to_string()).collect(),
        cluster_role_bindings: crate::model::CLUSTER_ROLE_BINDINGS.iter().map(|r| r.name.to_string()).collect(),
    });
    // What the commit must record as owed before it places anything.
    let mut marker = Vec::new();
    if actions.iter().any(|a| matches!(a, Action::Upload { .. })) {
        if actions.iter().any(|a| matches!(a, Action::DaemonReload { .. })) {
            marker.push("daemon-reload".to_string());
        }
        for a in &actions {
            if let Action::Restart { unit, .. } | Action::Start { unit, .. } = a {
                if facts.active(unit) {
                    marker.push(format!("restart {unit}"));
                }
            }
        }
    }
    Plan { actions, marker }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::desired::{Content, DesiredFile};
    use crate::remote::probe::{RemoteDir, RemoteFile, UnitState};
    use crate::model::FILES;
    use crate::model::overrides::{desired_units, Overrides};

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
            f.files.insert(
                x.spec.dest.into(),
                RemoteFile { sha256: x.sha256.clone(), mode: x.spec.mode, owner: "root".into(), group: "root".into(), size: 10, kind: "regular file".into() },
            );
        }
        for dd in DIRECTORIES {
            f.dirs.insert(dd.path.into(), RemoteDir { mode: dd.mode, owner: "root".into(), group: "root".into(), kind: "directory".into() });
        }
        for u in &d.units {
            f.units.insert(u.spec.file_name.into(), UnitState { enabled: "enabled".into(), active: "active".into(), cmdline: argv(u), ..Default::default() });
        }
        f
    }

    fn kinds(p: &Plan) -> Vec<String> {
        p.actions.iter().map(|a| serde_json::to_value(a).unwrap()["action"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn empty_server_gets_everything_in_order() {
        let d = desired();
        let p = build(&d, &Facts::default());
        let kinds = kinds(&p);
        let first_upload = kinds.iter().position(|k| k == "upload").unwrap();
        assert!(kinds[..first_upload].iter().all(|k| k == "create-dir"));
        assert_eq!(p.actions.iter().filter(|a| matches!(a, Action::Upload { .. })).count(), FILES.len());
        assert!(kinds.contains(&"daemon-reload".to_string()));
        assert_eq!(kinds.iter().filter(|k| *k == "start").count(), 3);
        assert_eq!(kinds.last().unwrap(), "apply-rbac");
        // Nothing ran yet, so nothing is owed if the run stops after the commit
        // but before the starts: inactive units are started by the next run anyway.
        assert_eq!(p.marker, ["daemon-reload"]);
    }

    #[test]
    fn converged_server_is_a_noop() {
        let d = desired();
        let p = build(&d, &converged(&d));
        assert!(p.is_noop(), "{:#?}", p.actions);
        assert_eq!(p.upload_bytes(), 0);
        assert!(p.restarts().is_empty());
        assert!(p.marker.is_empty());
    }

    #[test]
    fn a_changed_cert_restarts_exactly_its_readers_and_a_mode_drift_is_fixed_in_place() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/var/lib/kubernetes/ca.crt").unwrap().sha256 = "old".into();
        f.files.get_mut("/var/lib/kubernetes/ca.key").unwrap().mode = 0o644;
        let p = build(&d, &f);
        // The apiserver's restart is framed by stopping and starting its clients.
        assert_eq!(kinds(&p)[kinds(&p).iter().position(|k| k == "stop").unwrap()..kinds(&p).len() - 2], ["stop", "restart", "start", "start"]);
        assert_eq!(p.restarts(), ["kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"]);
        assert!(!p.actions.iter().any(|a| matches!(a, Action::DaemonReload { .. })));
        assert!(p.actions.iter().any(|a| matches!(a, Action::SetMode { dest, mode, .. } if dest == "/var/lib/kubernetes/ca.key" && mode == "0600")));
        assert_eq!(p.marker, ["restart kube-apiserver.service", "restart kube-controller-manager.service", "restart kube-scheduler.service"]);
    }

    #[test]
    fn a_changed_unit_reloads_and_restarts_only_that_component() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/etc/systemd/system/kube-scheduler.service").unwrap().sha256 = "old".into();
        let p = build(&d, &f);
        assert!(p.actions.iter().any(|a| matches!(a, Action::DaemonReload { .. })));
        assert_eq!(p.restarts(), ["kube-scheduler.service"]);
        assert_eq!(p.marker, ["daemon-reload", "restart kube-scheduler.service"]);
    }

    #[test]
    fn an_interrupted_run_is_finished_from_the_servers_state() {
        let d = desired();
        // The unit file is in place, systemd has not read it, the process runs old flags.
        let mut f = converged(&d);
        let u = f.units.get_mut("kube-apiserver.service").unwrap();
        u.need_daemon_reload = true;
        let i = u.cmdline.iter().position(|w| w.starts_with("--v=")).unwrap();
        u.cmdline[i] = "--v=4".into();
        let p = build(&d, &f);
        assert!(p.actions.iter().all(|a| !matches!(a, Action::Upload { .. })));
        let line = |k: &str| p.actions.iter().find(|a| kinds(&Plan { actions: vec![(*a).clone()], marker: vec![] })[0] == k).map(Action::line).unwrap();
        assert!(line("daemon-reload").contains("systemd has not read the current kube-apiserver.service"), "{}", line("daemon-reload"));
        assert!(line("restart").contains("running with other flags than its unit: --v=4 (unit: --v=2)"), "{}", line("restart"));
        // A cert replaced but never picked up: only the marker knows.
        let mut f = converged(&d);
        f.pending = vec!["restart kube-scheduler.service".into()];
        let p = build(&d, &f);
        assert_eq!(p.restarts(), ["kube-scheduler.service"]);
        assert!(p.actions.iter().any(|a| a.line().contains("pending from an interrupted run")));
    }

    #[test]
    fn owned_directories_are_corrected_and_secrets_carry_no_hash() {
        let d = desired();
        let mut f = converged(&d);
        f.dirs.insert("/var/lib/kubernetes".into(), RemoteDir { mode: 0o755, owner: "root".into(), group: "adm".into(), kind: "directory".into() });
        // A shared directory is not bootstrap's to change.
        f.dirs.insert("/usr/local/bin".into(), RemoteDir { mode: 0o775, owner: "root".into(), group: "staff".into(), kind: "directory".into() });
        let p = build(&d, &f);
        let fixes: Vec<String> = p.actions.iter().filter(|a| matches!(a, Action::FixDir { .. })).map(Action::line).collect();
        assert_eq!(fixes, ["chmod    /var/lib/kubernetes/ → 0700 root:root (was 0755 root:adm)"]);
        let p = build(&d, &Facts::default());
        for a in &p.actions {
            if let Action::Upload { secret, sha256, dest, .. } = a {
                assert_eq!(sha256.is_none(), *secret, "{dest}");
                let json = serde_json::to_string(a).unwrap();
                assert_eq!(json.contains("sha256"), !*secret, "{json}");
            }
        }
    }
}
