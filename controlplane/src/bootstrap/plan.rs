//! A bootstrap is a plan: plain data built by comparing the desired state
//! with what the probe read off the server. Each [`Action`] is one step the
//! executor runs as it stands (`steps`); `--dry-run` prints the same list.
//! Steps act on batches where a batch is what makes them fast: all files are
//! staged in one step and committed in one round trip.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bootstrap::desired::{Desired, DesiredFile};
use crate::local::compress::{Codec, Decision};
use crate::model::overrides::DesiredUnit;
use crate::model::{Component, FileKind, FileMode, Owed, APISERVER, DIRECTORIES};
use crate::output::human_bytes;
use crate::remote::probe::FileType;
use crate::remote::probe::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    New,
    Changed,
}

/// A directory to make, or one of bootstrap's own to give its mode back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirChange {
    pub path: String,
    pub mode: FileMode,
    /// What it was (for a fix).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
}

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub dest: String,
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
    pub bytes: u64,
    /// The desired content's sha256; never for a secret (a key's
    /// fingerprint is not for logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    pub change: Change,
    pub secret: bool,
    /// Index into `Desired::files`.
    #[serde(skip)]
    pub index: usize,
}

/// Files at least this big travel in a session of their own (and may be
/// compressed); smaller ones, and every secret, share one session.
pub const LARGE_FILE: u64 = 1 << 20;

impl FileChange {
    /// Does it travel in a session of its own?
    pub fn travels_alone(&self) -> bool {
        self.bytes >= LARGE_FILE && !self.secret
    }
    pub fn line(&self) -> String {
        let c = if self.change == Change::New { "new" } else { "changed" };
        format!("{} ({} {}:{}, {}, {c})", self.dest, self.mode, self.owner, self.group, human_bytes(self.bytes))
    }
}

/// A file in place whose mode or owner is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeChange {
    pub dest: String,
    pub mode: FileMode,
    pub owner: String,
    pub group: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Remove temp files an interrupted run left beside their destinations.
    RemoveStale {
        paths: Vec<String>,
    },
    /// Make missing directories; give bootstrap's own their mode and owner back.
    Directories {
        create: Vec<DirChange>,
        fix: Vec<DirChange>,
    },
    /// Stream these files to temps beside their destinations, each verified
    /// on arrival (large files a couple at a time, small ones in one session).
    Stage {
        files: Vec<FileChange>,
        /// How the large files travel (compressed where it pays).
        transfer: Decision,
    },
    /// Put the staged files in place in one round trip; first record
    /// `marker` (what the commit makes necessary) on the server.
    Commit {
        files: Vec<String>,
        #[serde(serialize_with = "owed_lines")]
        marker: Vec<Owed>,
    },
    SetModes {
        files: Vec<ModeChange>,
    },
    DaemonReload {
        because: Vec<String>,
    },
    Enable {
        #[serde(serialize_with = "unit_files")]
        units: Vec<Component>,
    },
    /// Stop units around another's restart (see [`build`]).
    Stop {
        #[serde(serialize_with = "unit_files")]
        units: Vec<Component>,
        because: String,
    },
    Start {
        #[serde(serialize_with = "unit_file")]
        unit: Component,
        because: Vec<String>,
    },
    Restart {
        #[serde(serialize_with = "unit_file")]
        unit: Component,
        because: Vec<String>,
    },
    WaitHealthy {
        components: Vec<Component>,
    },
    /// With several servers, once: until the `kubernetes` Endpoints list
    /// every server's advertise address (each apiserver adds itself within
    /// its reconcile interval after it starts).
    WaitEndpoints {
        addresses: Vec<String>,
    },
    ApplyRbac {
        cluster_roles: Vec<String>,
        cluster_role_bindings: Vec<String>,
    },
}

fn unit_file<S: serde::Serializer>(c: &Component, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(c.unit())
}

fn unit_files<S: serde::Serializer>(v: &[Component], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|c| c.unit()))
}

fn owed_lines<S: serde::Serializer>(v: &[Owed], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|o| o.to_string()))
}

/// Unit file names, space-separated.
fn units(v: &[Component]) -> String {
    v.iter().map(|c| c.unit()).collect::<Vec<_>>().join(" ")
}

impl Action {
    /// The step's kind, as in the JSON (`stage`, `daemon-reload`…).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::RemoveStale { .. } => "remove-stale",
            Action::Directories { .. } => "directories",
            Action::Stage { .. } => "stage",
            Action::Commit { .. } => "commit",
            Action::SetModes { .. } => "set-modes",
            Action::DaemonReload { .. } => "daemon-reload",
            Action::Enable { .. } => "enable",
            Action::Stop { .. } => "stop",
            Action::Start { .. } => "start",
            Action::Restart { .. } => "restart",
            Action::WaitHealthy { .. } => "wait-healthy",
            Action::WaitEndpoints { .. } => "wait-endpoints",
            Action::ApplyRbac { .. } => "apply-rbac",
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let why = |b: &[String]| if b.is_empty() { String::new() } else { format!(" ({})", b.join("; ")) };
        match self {
            Action::RemoveStale { paths } => format!("remove   {} temp file(s) an interrupted upload left", paths.len()),
            Action::Directories { create, fix } => {
                let mut parts: Vec<String> = create.iter().map(|d| format!("mkdir {} ({})", d.path, d.mode)).collect();
                parts.extend(fix.iter().map(|d| format!("chmod {}/ → {} root:root (was {})", d.path, d.mode, d.was.as_deref().unwrap_or("?"))));
                format!("dirs     {}", parts.join("; "))
            }
            Action::Stage { files, transfer } => {
                let bytes: u64 = files.iter().map(|f| f.bytes).sum();
                let how = match (transfer.codec, transfer.sample) {
                    (Codec::None, _) => format!("as is: {}", transfer.why),
                    (c, Some(s)) => {
                        let large: u64 = files.iter().filter(|f| f.travels_alone()).map(|f| f.bytes).sum();
                        format!("large files {}, ≈{} on the wire: {}", c.name(), human_bytes((large as f64 * s.ratio) as u64), transfer.why)
                    }
                    (c, None) => format!("large files {}: {}", c.name(), transfer.why),
                };
                format!("stage    {} file(s), {} ({how})", files.len(), human_bytes(bytes))
            }
            Action::Commit { files, marker } => format!(
                "commit   {} file(s) in place (chown, chmod, rename, fsync){}",
                files.len(),
                if marker.is_empty() { String::new() } else { format!("; owed after it: {}", marker.iter().map(Owed::to_string).collect::<Vec<_>>().join(", ")) }
            ),
            Action::SetModes { files } => format!("chmod    {}", files.iter().map(|f| format!("{} → {} {}:{}", f.dest, f.mode, f.owner, f.group)).collect::<Vec<_>>().join("; ")),
            Action::DaemonReload { because } => format!("systemctl daemon-reload{}", why(because)),
            Action::Enable { units: u } => format!("systemctl enable {}", units(u)),
            Action::Stop { units: u, because } => format!("systemctl stop {} ({because})", units(u)),
            Action::Start { unit, because } => format!("systemctl start {}{}", unit.unit(), why(because)),
            Action::Restart { unit, because } => format!("systemctl restart {}{}", unit.unit(), why(because)),
            Action::WaitHealthy { components } => format!(
                "wait     until healthy: {} (and leaders; a Lease left by a process stopped here is released)",
                components.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
            ),
            Action::WaitEndpoints { addresses } => format!("wait     until the kubernetes Endpoints list every server: {}", addresses.join(", ")),
            Action::ApplyRbac { cluster_roles, cluster_role_bindings } => {
                format!("apply    ClusterRole {} / ClusterRoleBinding {} (server-side)", cluster_roles.join(", "), cluster_role_bindings.join(", "))
            }
        }
    }

    /// Lines under `line()` that detail a batch (one per file), for --dry-run.
    pub fn details(&self) -> Vec<String> {
        match self {
            Action::RemoveStale { paths } => paths.clone(),
            Action::Stage { files, .. } => files.iter().map(FileChange::line).collect(),
            _ => Vec::new(),
        }
    }

    /// Does this action change the server?
    pub fn changes(&self) -> bool {
        !matches!(self, Action::WaitHealthy { .. } | Action::WaitEndpoints { .. } | Action::ApplyRbac { .. })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    /// Adds the cluster's once-only wait for `addresses` in the Endpoints
    /// (before the RBAC): for the server a run over several finishes through.
    pub fn wait_for_endpoints(&mut self, addresses: Vec<String>) {
        let at = self.actions.iter().position(|a| matches!(a, Action::ApplyRbac { .. })).unwrap_or(self.actions.len());
        self.actions.insert(at, Action::WaitEndpoints { addresses });
    }
    /// Sets how the stage step sends the large files.
    pub fn set_transfer(&mut self, d: Decision) {
        for a in &mut self.actions {
            if let Action::Stage { transfer, .. } = a {
                *transfer = d.clone();
            }
        }
    }
    /// How the stage step sends the large files.
    pub fn transfer(&self) -> Option<&Decision> {
        self.actions.iter().find_map(|a| if let Action::Stage { transfer, .. } = a { Some(transfer) } else { None })
    }
    /// The bytes of the files big enough to be sent on their own (and compressed).
    pub fn large_upload_bytes(&self) -> u64 {
        self.uploads().iter().filter(|f| f.travels_alone()).map(|f| f.bytes).sum()
    }
    /// The files the stage step uploads.
    pub fn uploads(&self) -> &[FileChange] {
        self.actions.iter().find_map(|a| if let Action::Stage { files, .. } = a { Some(files.as_slice()) } else { None }).unwrap_or(&[])
    }
    pub fn upload_bytes(&self) -> u64 {
        self.uploads().iter().map(|f| f.bytes).sum()
    }
    /// The components this plan starts or restarts, in order.
    pub fn restarts(&self) -> Vec<Component> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::Restart { unit, .. } | Action::Start { unit, .. } => Some(*unit),
                _ => None,
            })
            .collect()
    }
    /// Nothing on the server would change.
    pub fn is_noop(&self) -> bool {
        !self.actions.iter().any(Action::changes)
    }
    /// The plan's parts, as a run over several servers schedules them.
    pub fn parts(&self) -> Parts {
        let a = &self.actions;
        let prepare = a.iter().take_while(|x| matches!(x, Action::RemoveStale { .. } | Action::Directories { .. } | Action::Stage { .. })).count();
        let finish = a.len() - a.iter().rev().take_while(|x| matches!(x, Action::ApplyRbac { .. } | Action::WaitEndpoints { .. })).count();
        let mut passes = Vec::new();
        let mut at = prepare;
        for (i, x) in a.iter().enumerate().take(finish).skip(prepare) {
            if matches!(x, Action::WaitHealthy { .. }) {
                passes.push(at..i + 1);
                at = i + 1;
            }
        }
        if at < finish {
            passes.push(at..finish);
        }
        Parts { prepare: 0..prepare, passes, finish: finish..a.len() }
    }
    /// The actions of `part`.
    pub fn part(&self, part: Part) -> &[Action] {
        let p = self.parts();
        let r = match part {
            Part::Prepare => p.prepare,
            Part::Pass(k) => p.passes.get(k).cloned().unwrap_or(0..0),
            Part::Finish => p.finish,
        };
        &self.actions[r]
    }
}

/// Where a plan's parts are: what is staged before anything changes, the
/// passes (each ends waiting until healthy), what is done once at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parts {
    pub prepare: std::ops::Range<usize>,
    pub passes: Vec<std::ops::Range<usize>>,
    pub finish: std::ops::Range<usize>,
}

/// A part of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "part", content = "pass")]
pub enum Part {
    /// Remove stale temps, make directories, stage the uploads: nothing
    /// at a final path changes.
    Prepare,
    /// Commit, systemctl, wait until healthy (0-based).
    Pass(usize),
    /// Apply the RBAC.
    Finish,
}

/// The argv a desired unit gives its process.
pub fn argv(u: &DesiredUnit) -> Vec<String> {
    u.flags.argv(u.spec.exec)
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
pub fn build(desired: &Desired, probe: &Probe) -> Plan {
    build_for(desired, probe, Passes::One)
}

/// How one server's plan fits a run over several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Passes {
    /// One server, or the first deploy of several: everything in one pass.
    #[default]
    One,
    /// A change to a running plane of several servers: when a running
    /// apiserver and its running clients both change, the apiserver's files
    /// go in a first pass and the clients' in a second, so that every
    /// server's apiserver is new before any client is (the Kubernetes
    /// version-skew policy) and the clients keep running meanwhile.
    ApiserversFirst,
}

/// [`build`] for a server that is one of several.
pub fn build_for(desired: &Desired, probe: &Probe, passes: Passes) -> Plan {
    let mut actions = Vec::new();
    if !probe.stale.is_empty() {
        actions.push(Action::RemoveStale { paths: probe.stale.clone() });
    }
    if let Some(d) = directories(probe) {
        actions.push(d);
    }
    let (uploads, mut modes) = files(desired, probe);
    let (owed, owed_reload) = owed(desired, probe);
    let split = split_passes(desired, probe, &uploads, &owed, passes);
    if !uploads.is_empty() {
        actions.push(Action::Stage { files: uploads, transfer: Decision::none("not decided yet") });
    }
    for (k, files) in split.into_iter().enumerate() {
        let first = k == 0;
        let mut because = if first { owed.clone() } else { BTreeMap::new() };
        let mut reload = if first { owed_reload.clone() } else { Vec::new() };
        for f in &files {
            let spec = &desired.files[f.index].spec;
            for c in spec.restarts {
                because.entry(*c).or_default().push(spec.dest.to_string());
            }
            if spec.kind == FileKind::Unit {
                reload.push(format!("{} changed", spec.dest));
            }
        }
        pass(&mut actions, probe, files, &because, reload, if first { std::mem::take(&mut modes) } else { Vec::new() }, first);
    }
    actions.push(Action::ApplyRbac {
        cluster_roles: crate::model::CLUSTER_ROLES.iter().map(|r| r.name.to_string()).collect(),
        cluster_role_bindings: crate::model::CLUSTER_ROLE_BINDINGS.iter().map(|r| r.name.to_string()).collect(),
    });
    Plan { actions }
}

/// Directories to make, and bootstrap's own to give their mode back.
fn directories(probe: &Probe) -> Option<Action> {
    let (mut create, mut fix) = (Vec::new(), Vec::new());
    for d in DIRECTORIES {
        match probe.dirs.get(d.path) {
            None => create.push(DirChange { path: d.path.into(), mode: FileMode(d.mode), was: None }),
            Some(r) if d.owned && r.kind == FileType::Directory && (r.mode.0 != d.mode || r.owner != "root" || r.group != "root") => fix.push(DirChange {
                path: d.path.into(),
                mode: FileMode(d.mode),
                was: Some(format!("{} {}:{}", r.mode, crate::output::redact::line(&r.owner), crate::output::redact::line(&r.group))),
            }),
            _ => {}
        }
    }
    (!create.is_empty() || !fix.is_empty()).then_some(Action::Directories { create, fix })
}

/// The files to upload (new or changed content), and those whose content is
/// right but mode or owner is not.
fn files(desired: &Desired, probe: &Probe) -> (Vec<FileChange>, Vec<ModeChange>) {
    let (mut uploads, mut modes) = (Vec::new(), Vec::new());
    for (index, f) in desired.files.iter().enumerate() {
        let DesiredFile { spec, size, sha256, .. } = f;
        let remote = probe.files.get(spec.dest);
        let change = match remote {
            None => Some(Change::New),
            Some(r) if &r.sha256 != sha256 || !r.is_regular() => Some(Change::Changed),
            _ => None,
        };
        if let Some(change) = change {
            uploads.push(FileChange {
                dest: spec.dest.into(),
                mode: FileMode(spec.mode),
                owner: spec.owner.into(),
                group: spec.group.into(),
                bytes: *size,
                sha256: (!spec.kind.is_secret()).then(|| sha256.clone()),
                change,
                secret: spec.kind.is_secret(),
                index,
            });
        } else if let Some(r) = remote {
            if r.mode.0 != spec.mode || r.owner != spec.owner || r.group != spec.group {
                modes.push(ModeChange { dest: spec.dest.into(), mode: FileMode(spec.mode), owner: spec.owner.into(), group: spec.group.into() });
            }
        }
    }
    (uploads, modes)
}

/// What the server's state says is still owed besides the files: restarts
/// by component (with why), and why systemd must reload.
fn owed(desired: &Desired, probe: &Probe) -> (BTreeMap<Component, Vec<String>>, Vec<String>) {
    let mut owed: BTreeMap<Component, Vec<String>> = BTreeMap::new();
    let mut reload: Vec<String> = Vec::new();
    for o in &probe.pending {
        match o {
            Owed::DaemonReload => reload.push("pending from an interrupted run".into()),
            Owed::Restart(c) => owed.entry(*c).or_default().push("pending from an interrupted run".into()),
        }
    }
    for u in &desired.units {
        let Some(st) = probe.units.get(u.spec.file_name) else { continue };
        if st.need_daemon_reload {
            reload.push(format!("systemd has not read the current {}", u.spec.file_name));
        }
        if probe.active(u.spec.file_name) && !st.cmdline.is_empty() {
            if let Some(d) = crate::model::argv_difference(&st.cmdline, &argv(u)) {
                owed.entry(u.spec.component).or_default().push(format!("running with other flags than its unit: {d}"));
            }
        }
    }
    (owed, reload)
}

/// The uploads by pass: two when a running apiserver and its running
/// clients both change because of files (the apiserver's files, and those
/// no unit reads, first; the clients' second), else one.
fn split_passes(desired: &Desired, probe: &Probe, uploads: &[FileChange], owed: &BTreeMap<Component, Vec<String>>, passes: Passes) -> Vec<Vec<FileChange>> {
    let restarts_of = |f: &FileChange| desired.files[f.index].spec.restarts;
    let apiserver_changes = owed.contains_key(&APISERVER) || uploads.iter().any(|f| restarts_of(f).contains(&APISERVER));
    let clients_change = uploads.iter().any(|f| !restarts_of(f).contains(&APISERVER) && restarts_of(f).iter().any(|c| probe.active(c.unit())));
    if passes == Passes::ApiserversFirst && probe.active(APISERVER.unit()) && apiserver_changes && clients_change {
        let (first, second): (Vec<FileChange>, Vec<FileChange>) = uploads.iter().cloned().partition(|f| restarts_of(f).is_empty() || restarts_of(f).contains(&APISERVER));
        vec![first, second]
    } else {
        vec![uploads.to_vec()]
    }
}

/// One pass: commit `files`, reload, enable, restart or start what needs
/// it, wait until healthy.
fn pass(
    actions: &mut Vec<Action>,
    probe: &Probe,
    files: Vec<FileChange>,
    because: &BTreeMap<Component, Vec<String>>,
    mut reload: Vec<String>,
    modes: Vec<ModeChange>,
    first: bool,
) {
    let up = |c: Component| probe.active(c.unit());
    if !files.is_empty() {
        // The marker: what the commit makes necessary, recorded before it.
        let mut marker = Vec::new();
        if !reload.is_empty() {
            marker.push(Owed::DaemonReload);
        }
        marker.extend(Component::ALL.iter().filter(|c| because.contains_key(c) && up(**c)).map(|c| Owed::Restart(*c)));
        actions.push(Action::Commit { files: files.iter().map(|f| f.dest.clone()).collect(), marker });
    }
    if !modes.is_empty() {
        actions.push(Action::SetModes { files: modes });
    }
    reload.dedup();
    if !reload.is_empty() {
        actions.push(Action::DaemonReload { because: reload });
    }
    let to_enable: Vec<Component> = Component::ALL.iter().copied().filter(|c| !probe.units.get(c.unit()).is_some_and(|s| s.is_enabled())).collect();
    if first && !to_enable.is_empty() {
        actions.push(Action::Enable { units: to_enable });
    }
    restarts(actions, probe, because, first);
    actions.push(Action::WaitHealthy { components: Component::ALL.to_vec() });
}

/// Starts and restarts: an apiserver restart is framed by stopping its
/// running clients first and starting them after (see [`build`]).
fn restarts(actions: &mut Vec<Action>, probe: &Probe, because: &BTreeMap<Component, Vec<String>>, first: bool) {
    let up = |c: Component| probe.active(c.unit());
    let why = |c: Component| -> Vec<String> {
        let mut v: Vec<String> = because.get(&c).cloned().unwrap_or_default().into_iter().map(|d| if d.starts_with('/') { format!("changed: {d}") } else { d }).collect();
        v.dedup();
        v
    };
    let restart = |c: Component| up(c) && because.contains_key(&c);
    let mut stopped: Vec<Component> = Vec::new();
    if restart(APISERVER) {
        stopped = Component::clients().filter(|c| up(*c)).collect();
        if !stopped.is_empty() {
            actions.push(Action::Stop { units: stopped.clone(), because: format!("their watches would hold {}'s shutdown until they lose their leases", APISERVER.unit()) });
        }
        actions.push(Action::Restart { unit: APISERVER, because: why(APISERVER) });
    }
    for c in Component::ALL.iter().copied() {
        if stopped.contains(&c) {
            let mut b = why(c);
            b.insert(0, "stopped around the apiserver's restart".into());
            actions.push(Action::Start { unit: c, because: b });
        } else if !up(c) {
            if first {
                actions.push(Action::Start { unit: c, because: Vec::new() });
            }
        } else if restart(c) && c != APISERVER {
            actions.push(Action::Restart { unit: c, because: why(c) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::desired::Content;
    use crate::model::overrides::{desired_units, Overrides};
    use crate::model::FILES;
    use crate::remote::probe::{RemoteDir, RemoteFile};
    use crate::remote::systemd::UnitStatus;

    fn desired() -> Desired {
        let files = FILES.iter().map(|spec| DesiredFile { spec, content: Content::Text(spec.dest.into()), size: 10, sha256: format!("sha-{}", spec.dest) }).collect();
        Desired { files, units: desired_units(&Overrides::default()), scheduler_version: None, versions: Default::default() }
    }

    fn converged(d: &Desired) -> Probe {
        let mut f = Probe::default();
        for x in &d.files {
            f.files.insert(
                x.spec.dest.into(),
                RemoteFile {
                    sha256: x.sha256.clone(),
                    mtime_ns: 0,
                    mode: FileMode(x.spec.mode),
                    owner: "root".into(),
                    group: "root".into(),
                    size: 10,
                    kind: crate::remote::probe::FileType::Regular,
                },
            );
        }
        for dd in DIRECTORIES {
            f.dirs.insert(dd.path.into(), RemoteDir { mode: FileMode(dd.mode), owner: "root".into(), group: "root".into(), kind: crate::remote::probe::FileType::Directory });
        }
        for u in &d.units {
            let st = UnitStatus { enabled: "enabled".into(), active: crate::model::ActiveState::Active, cmdline: argv(u), ..Default::default() };
            f.units.insert(u.spec.file_name.into(), st);
        }
        f
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.actions.iter().map(Action::kind).collect()
    }

    fn marker(p: &Plan) -> Vec<String> {
        p.actions.iter().find_map(|a| if let Action::Commit { marker, .. } = a { Some(marker.iter().map(Owed::to_string).collect()) } else { None }).unwrap_or_default()
    }

    /// The unit files a plan starts or restarts, in order.
    fn restarts(p: &Plan) -> Vec<&'static str> {
        p.restarts().into_iter().map(|c| c.unit()).collect()
    }

    #[test]
    fn empty_server_gets_everything_in_order() {
        let d = desired();
        let p = build(&d, &Probe::default());
        assert_eq!(kinds(&p), ["directories", "stage", "commit", "daemon-reload", "enable", "start", "start", "start", "wait-healthy", "apply-rbac"]);
        assert_eq!(p.uploads().len(), FILES.len());
        // JSON names each action's kind the way kind() does.
        for a in &p.actions {
            assert_eq!(serde_json::to_value(a).unwrap()["action"], a.kind());
        }
        // Nothing ran yet: inactive units are started by the next run anyway.
        assert_eq!(marker(&p), ["daemon-reload"]);
    }

    #[test]
    fn a_running_plane_of_several_takes_the_apiserver_first_when_both_change() {
        let d = desired();
        let mut f = converged(&d);
        // New binaries for all three.
        for b in ["/usr/local/bin/kube-apiserver", "/usr/local/bin/kube-controller-manager", "/usr/local/bin/kube-scheduler"] {
            f.files.get_mut(b).unwrap().sha256 = "old".into();
        }
        // One server: one pass, as before.
        let one = build(&d, &f);
        assert_eq!(kinds(&one), ["stage", "commit", "stop", "restart", "start", "start", "wait-healthy", "apply-rbac"]);
        let p = build_for(&d, &f, Passes::ApiserversFirst);
        assert_eq!(kinds(&p), ["stage", "commit", "stop", "restart", "start", "start", "wait-healthy", "commit", "restart", "restart", "wait-healthy", "apply-rbac"]);
        let commits: Vec<Vec<String>> = p.actions.iter().filter_map(|a| if let Action::Commit { files, .. } = a { Some(files.clone()) } else { None }).collect();
        assert_eq!(commits[0], ["/usr/local/bin/kube-apiserver"]);
        assert_eq!(commits[1], ["/usr/local/bin/kube-controller-manager", "/usr/local/bin/kube-scheduler"]);
        // The first pass starts the clients again from their old binaries
        // (they are not committed yet); the second restarts them on the new.
        let line = |i: usize| p.actions[i].line();
        assert!(line(4).starts_with("systemctl start kube-controller-manager.service (stopped around"), "{}", line(4));
        assert!(line(8).contains("changed: /usr/local/bin/kube-controller-manager"), "{}", line(8));
        let parts = p.parts();
        assert_eq!((parts.prepare, parts.passes, parts.finish), (0..1, vec![1..7, 7..11], 11..12));
        // Only the apiserver changes: one pass, also on a plane of several.
        let mut g = converged(&d);
        g.files.get_mut("/usr/local/bin/kube-apiserver").unwrap().sha256 = "old".into();
        assert_eq!(build_for(&d, &g, Passes::ApiserversFirst).parts().passes.len(), 1);
        // A no-op: one pass that only waits.
        let n = build_for(&d, &converged(&d), Passes::ApiserversFirst);
        let parts = n.parts();
        assert_eq!((parts.prepare, parts.passes.len(), parts.passes[0].clone(), parts.finish), (0..0, 1, 0..1, 1..2));
    }

    #[test]
    fn converged_server_is_a_noop() {
        let d = desired();
        let p = build(&d, &converged(&d));
        assert!(p.is_noop(), "{:#?}", p.actions);
        assert_eq!(kinds(&p), ["wait-healthy", "apply-rbac"]);
        assert_eq!(p.upload_bytes(), 0);
    }

    #[test]
    fn a_changed_cert_restarts_exactly_its_readers_and_a_mode_drift_is_fixed_in_place() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/var/lib/kubernetes/ca.crt").unwrap().sha256 = "old".into();
        f.files.get_mut("/var/lib/kubernetes/ca.key").unwrap().mode = FileMode(0o644);
        let p = build(&d, &f);
        // The apiserver's restart is framed by stopping and starting its clients.
        assert_eq!(kinds(&p), ["stage", "commit", "set-modes", "stop", "restart", "start", "start", "wait-healthy", "apply-rbac"]);
        assert_eq!(restarts(&p), ["kube-apiserver.service", "kube-controller-manager.service", "kube-scheduler.service"]);
        assert!(p.actions.iter().any(|a| matches!(a, Action::SetModes { files } if files[0].dest == "/var/lib/kubernetes/ca.key" && files[0].mode == FileMode(0o600))));
        assert_eq!(marker(&p), ["restart kube-apiserver.service", "restart kube-controller-manager.service"]);
    }

    #[test]
    fn a_changed_unit_reloads_and_restarts_only_that_component() {
        let d = desired();
        let mut f = converged(&d);
        f.files.get_mut("/etc/systemd/system/kube-scheduler.service").unwrap().sha256 = "old".into();
        let p = build(&d, &f);
        assert!(p.actions.iter().any(|a| matches!(a, Action::DaemonReload { .. })));
        assert_eq!(restarts(&p), ["kube-scheduler.service"]);
        assert_eq!(marker(&p), ["daemon-reload", "restart kube-scheduler.service"]);
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
        assert!(p.uploads().is_empty());
        let line = |k: &str| p.actions.iter().find(|a| a.kind() == k).map(Action::line).unwrap();
        assert!(line("daemon-reload").contains("systemd has not read the current kube-apiserver.service"), "{}", line("daemon-reload"));
        assert!(line("restart").contains("running with other flags than its unit: --v=4 (unit: --v=2)"), "{}", line("restart"));
        // A cert replaced but never picked up: only the marker knows.
        let mut f = converged(&d);
        f.pending = vec!["restart kube-scheduler.service".parse().unwrap()];
        let p = build(&d, &f);
        assert_eq!(restarts(&p), ["kube-scheduler.service"]);
        assert!(p.actions.iter().any(|a| a.line().contains("pending from an interrupted run")));
    }

    #[test]
    fn owned_directories_are_corrected_and_secrets_carry_no_hash() {
        let d = desired();
        let mut f = converged(&d);
        f.dirs
            .insert("/var/lib/kubernetes".into(), RemoteDir { mode: FileMode(0o755), owner: "root".into(), group: "adm".into(), kind: crate::remote::probe::FileType::Directory });
        // A shared directory is not bootstrap's to change.
        f.dirs.insert("/usr/local/bin".into(), RemoteDir { mode: FileMode(0o775), owner: "root".into(), group: "staff".into(), kind: crate::remote::probe::FileType::Directory });
        let p = build(&d, &f);
        assert_eq!(p.actions[0].line(), "dirs     chmod /var/lib/kubernetes/ → 0700 root:root (was 0755 root:adm)");
        let p = build(&d, &Probe::default());
        for f in p.uploads() {
            assert_eq!(f.sha256.is_none(), f.secret, "{}", f.dest);
            let json = serde_json::to_string(f).unwrap();
            assert_eq!(json.contains("sha256"), !f.secret, "{json}");
        }
    }
}
