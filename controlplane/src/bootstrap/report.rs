//! What a bootstrap run reports: typed structs that serialize to the JSON
//! output (`-o json`) and display as the text output. The JSON's
//! `apiVersion` is [`API_VERSION`], written here only.

use std::fmt;

use serde::Serialize;

use super::desired::{Content, Desired};
use super::plan::{Action, Plan};
use super::rollout::Wave;
use super::steps::{Outcome, StepTiming};
use crate::error::Problem;
use crate::output::human_bytes;
use crate::remote::probe::Probe;
use crate::Error;

/// The version of every JSON document `kubectl bootstrap` prints.
pub const API_VERSION: &str = "kubectl-bootstrap/v1";

/// A changed text file's diff (never of a secret or a binary).
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub dest: String,
    pub diff: String,
}

/// `--dry-run`: the plan, exactly as it would run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub destination: String,
    pub dry_run: bool,
    /// Would anything on the server change?
    pub changes: bool,
    pub upload_bytes: u64,
    pub actions: Vec<Action>,
    pub diffs: Vec<Diff>,
    /// What preflight found that does not stop the run.
    pub warnings: Vec<Problem>,
}

/// A run that finished.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub destination: String,
    pub dry_run: bool,
    pub changed: bool,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Before the plan: connecting and reading the server, preflight.
    pub prepare: Vec<StepTiming>,
    pub elapsed_seconds: f64,
}

/// `--dry-run` on several servers: each server's plan and the order the
/// run takes them in.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlanReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub dry_run: bool,
    /// Would anything on any server change?
    pub changes: bool,
    /// `first-deploy` (every server at once) or `rolling` (one at a time).
    pub rollout: &'static str,
    pub waves: Vec<Wave>,
    /// The waves, one line each, as the run prints them.
    pub order: Vec<String>,
    /// What preflight found that does not stop the run, each naming its server.
    pub warnings: Vec<Problem>,
    pub servers: Vec<PlanReport>,
}

impl ClusterPlanReport {
    pub fn new(servers: Vec<PlanReport>, waves: Vec<Wave>, order: Vec<String>, first_deploy: bool) -> Self {
        ClusterPlanReport {
            api_version: API_VERSION,
            kind: "ClusterPlan",
            dry_run: true,
            changes: servers.iter().any(|s| s.changes),
            rollout: if first_deploy { "first-deploy" } else { "rolling" },
            waves,
            order,
            warnings: Vec::new(),
            servers,
        }
    }
}

/// Totals over the servers of a run.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSummary {
    pub servers: usize,
    pub changed_servers: Vec<String>,
    pub uploaded_files: usize,
    pub bytes_sent: u64,
    /// `SERVER UNIT`, in the order they happened per server.
    pub restarted: Vec<String>,
}

/// A run over several servers that finished.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRunReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub dry_run: bool,
    pub changed: bool,
    pub rollout: &'static str,
    pub waves: Vec<Wave>,
    pub summary: ClusterSummary,
    /// Every server's warnings, each naming its server.
    pub warnings: Vec<Problem>,
    pub servers: Vec<RunReport>,
    pub elapsed_seconds: f64,
}

impl ClusterRunReport {
    pub fn new(servers: Vec<RunReport>, waves: Vec<Wave>, first_deploy: bool, elapsed_seconds: f64) -> Self {
        let summary = ClusterSummary {
            servers: servers.len(),
            changed_servers: servers.iter().filter(|s| s.changed).map(|s| s.destination.clone()).collect(),
            uploaded_files: servers.iter().map(|s| s.outcome.uploaded.len()).sum(),
            bytes_sent: servers.iter().map(|s| s.outcome.bytes_sent).sum(),
            restarted: servers.iter().flat_map(|s| s.outcome.restarted.iter().map(move |u| format!("{} {u}", s.destination))).collect(),
        };
        let warnings = servers.iter().flat_map(|s| s.outcome.warnings.iter().map(|w| w.clone().on(&s.destination))).collect();
        ClusterRunReport {
            api_version: API_VERSION,
            kind: "ClusterResult",
            warnings,
            dry_run: false,
            changed: servers.iter().any(|s| s.changed),
            rollout: if first_deploy { "first-deploy" } else { "rolling" },
            waves,
            summary,
            servers,
            elapsed_seconds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Report {
    Plan(PlanReport),
    Run(RunReport),
    ClusterPlan(ClusterPlanReport),
    ClusterRun(ClusterRunReport),
}

impl Report {
    /// Preflight's warnings, ahead of what the run itself found.
    pub fn with_warnings(mut self, mut w: Vec<Problem>) -> Self {
        match &mut self {
            Report::Plan(p) => p.warnings.append(&mut w),
            Report::ClusterPlan(c) => c.warnings.append(&mut w),
            Report::Run(r) => {
                w.append(&mut r.outcome.warnings);
                r.outcome.warnings = w;
            }
            Report::ClusterRun(c) => {
                w.append(&mut c.warnings);
                c.warnings = w;
            }
        }
        self
    }
}

/// A run that did not finish: the error and, from preflight, every problem.
#[derive(Debug)]
pub struct Failure {
    pub error: Error,
    pub problems: Vec<Problem>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure { error, problems: vec![] }
    }
}

/// A failure as JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub error: String,
    pub exit_code: u8,
    pub problems: Vec<Problem>,
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        self.error.exit_code()
    }
    pub fn report(&self) -> ErrorReport {
        ErrorReport { api_version: API_VERSION, kind: "Error", error: self.error.to_string(), exit_code: self.exit_code(), problems: self.problems.clone() }
    }
}

/// Every problem, then the error: `error: …` lines.
impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.problems {
            writeln!(f, "error: {p}")?;
        }
        write!(f, "error: {}", self.error)
    }
}

/// The diff of a changed text file; secrets and binaries are never shown
/// (a binary gets its short sha256; a secret nothing).
pub fn diff(a: &Action, desired: &Desired, probe: &Probe) -> Vec<Diff> {
    let Action::Stage { files, .. } = a else { return Vec::new() };
    let mut out = Vec::new();
    for c in files.iter().filter(|c| c.change == super::plan::Change::Changed) {
        let f = &desired.files[c.index];
        let diff = if f.spec.kind.is_secret() {
            "    (secret: contents not shown)\n".to_string()
        } else {
            match (&f.content, probe.texts.get(f.spec.dest)) {
                (Content::Text(new), Some(old)) => {
                    let d = similar::TextDiff::from_lines(old.as_str(), new.as_str());
                    // The server's side is the server's text: escaped.
                    crate::output::redact::block(
                        &d.unified_diff().context_radius(2).header(&format!("{} (server)", f.spec.dest), &format!("{} (desired)", f.spec.dest)).to_string(),
                    )
                }
                _ => {
                    let old = probe.files.get(f.spec.dest).map(|r| r.sha256.as_str()).unwrap_or("-");
                    format!("    sha256 {} → {}\n", &old[..old.len().min(12)], &f.sha256[..f.sha256.len().min(12)])
                }
            }
        };
        out.push(Diff { dest: f.spec.dest.to_string(), diff });
    }
    out
}

impl PlanReport {
    pub fn new(destination: &str, plan: &Plan, desired: &Desired, probe: &Probe) -> PlanReport {
        PlanReport {
            api_version: API_VERSION,
            kind: "Plan",
            destination: destination.to_string(),
            dry_run: true,
            changes: !plan.is_noop(),
            upload_bytes: plan.upload_bytes(),
            diffs: plan.actions.iter().flat_map(|a| diff(a, desired, probe)).collect(),
            actions: plan.actions.clone(),
            warnings: Vec::new(),
        }
    }
}

impl fmt::Display for PlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan for {} (dry run: nothing changes):", self.destination)?;
        for a in &self.actions {
            writeln!(f, "  {}", a.line())?;
            for d in a.details() {
                writeln!(f, "           {d}")?;
            }
            if let Action::Stage { .. } = a {
                for d in &self.diffs {
                    for l in d.diff.lines() {
                        writeln!(f, "    {l}")?;
                    }
                }
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let changing = self.actions.iter().filter(|a| a.changes()).count();
        if !self.changes {
            write!(f, "dry run: nothing would change")
        } else {
            write!(f, "dry run: {changing} step(s) would change the server, {} to upload; run without --dry-run to apply", human_bytes(self.upload_bytes))
        }
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.outcome;
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        if !self.changed {
            writeln!(f, "nothing changed: the control plane was already as desired")?;
        } else {
            let codec = if o.compression == crate::local::compress::Codec::None {
                String::new()
            } else {
                format!(" ({} of files, {})", human_bytes(o.bytes_uploaded), o.compression.name())
            };
            writeln!(f, "changed: {} file(s), {} sent{codec}; started: {}; restarted: {}", o.uploaded.len(), human_bytes(o.bytes_sent), list(&o.started), list(&o.restarted))?;
        }
        if !o.rbac.is_empty() {
            let parts: Vec<String> = o.rbac.iter().map(|r| format!("{} {} {}", r.kind, r.name, r.result)).collect();
            writeln!(f, "rbac: {}", parts.join("; "))?;
        }
        for w in &o.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let steps: Vec<String> = self.prepare.iter().chain(&o.steps).map(|s| format!("{} {:.1}s", s.step, s.seconds)).collect();
        write!(f, "steps: {}; total {:.1}s", steps.join(", "), self.elapsed_seconds)
    }
}

impl fmt::Display for ClusterPlanReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.servers {
            writeln!(f, "{s}\n")?;
        }
        writeln!(
            f,
            "order ({}):",
            if self.rollout == "rolling" { "a running plane: one server at a time, each healthy before the next" } else { "a first deploy: every server at once" }
        )?;
        for (i, l) in self.order.iter().enumerate() {
            writeln!(f, "  {}. {l}", i + 1)?;
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let n = self.servers.iter().filter(|s| s.changes).count();
        if n == 0 {
            write!(f, "dry run: nothing would change on any of {} servers", self.servers.len())
        } else {
            write!(f, "dry run: {n} of {} servers would change; run without --dry-run to apply", self.servers.len())
        }
    }
}

impl fmt::Display for ClusterRunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.servers {
            writeln!(f, "{}:", s.destination)?;
            for l in s.to_string().lines().filter(|l| !l.starts_with("steps:")) {
                writeln!(f, "  {l}")?;
            }
        }
        // Preflight's warnings (each server's own are listed above).
        for w in self.warnings.iter().filter(|w| !w.id.is_empty()) {
            writeln!(f, "warning: {w}")?;
        }
        let m = &self.summary;
        if m.changed_servers.is_empty() {
            write!(f, "nothing changed on any of {} servers; total {:.1}s", m.servers, self.elapsed_seconds)
        } else {
            write!(
                f,
                "{} of {} servers changed ({}): {} file(s), {} sent; total {:.1}s",
                m.changed_servers.len(),
                m.servers,
                self.rollout,
                m.uploaded_files,
                human_bytes(m.bytes_sent),
                self.elapsed_seconds
            )
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Plan(p) => p.fmt(f),
            Report::Run(r) => r.fmt(f),
            Report::ClusterPlan(p) => p.fmt(f),
            Report::ClusterRun(r) => r.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::rbac::Applied;

    fn run() -> RunReport {
        let outcome = Outcome {
            bytes_sent: 1434,
            uploaded: vec!["/etc/systemd/system/kube-apiserver.service".into()],
            restarted: vec!["kube-apiserver.service".into()],
            rbac: vec![Applied { kind: "ClusterRole", name: "x".into(), result: "unchanged" }],
            steps: vec![StepTiming { step: "stage", line: "stage    1 file(s), 1.4 KiB".into(), seconds: 0.26 }],
            ..Default::default()
        };
        RunReport { api_version: API_VERSION, kind: "Result", destination: "root@h".into(), dry_run: false, changed: true, outcome, prepare: vec![], elapsed_seconds: 7.26 }
    }

    #[test]
    fn the_json_has_its_version_and_camel_case_fields() {
        let v = serde_json::to_value(Report::Run(run())).unwrap();
        assert_eq!(v["apiVersion"], "kubectl-bootstrap/v1");
        assert_eq!(v["kind"], "Result");
        assert_eq!(v["bytesSent"], 1434);
        assert_eq!(v["uploaded"][0], "/etc/systemd/system/kube-apiserver.service");
        assert_eq!(v["steps"][0]["seconds"], 0.26);
        assert!(v["apiserverRestartToReadySeconds"].is_null());
        let e = Failure { error: Error::Input("bad".into()), problems: vec![Problem::new("what", "fix")] };
        let v = serde_json::to_value(e.report()).unwrap();
        assert_eq!((v["kind"].as_str(), v["exitCode"].as_u64(), v["problems"][0]["fix"].as_str()), (Some("Error"), Some(2), Some("fix")));
        assert_eq!(e.to_string(), "error: what: fix\nerror: bad");
    }

    #[test]
    fn the_text_says_what_changed_and_how_long_each_step_took() {
        let t = run().to_string();
        assert_eq!(t, "changed: 1 file(s), 1.4 KiB sent; started: none; restarted: kube-apiserver.service\nrbac: ClusterRole x unchanged\nsteps: stage 0.3s; total 7.3s");
        let mut r = run();
        r.changed = false;
        assert!(r.to_string().starts_with("nothing changed"));
        // A warning, with the server's words under it, escaped.
        r.outcome.warnings.push(Problem::new("x.service exited", "journalctl -u x.service").with_journal(vec!["F1201 boom".into()]));
        let t = r.to_string();
        assert!(t.contains("\nwarning: x.service exited: journalctl -u x.service\n    | F1201 boom\nsteps:"), "{t}");
        let v = serde_json::to_value(Report::Run(r)).unwrap();
        assert_eq!(v["warnings"][0]["journal"][0], "F1201 boom");
        assert!(serde_json::to_value(Report::Run(run())).unwrap()["warnings"].as_array().unwrap().is_empty());
    }
}
