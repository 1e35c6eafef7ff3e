//! The executor: one loop over the plan. Each [`Action`] runs itself (one
//! file per kind of step, k0sctl-style) against a shared [`Exec`] context
//! and records its own timing; what `--dry-run` prints is what runs.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bootstrap::desired::Desired;
use crate::bootstrap::plan::{Action, Plan};
use crate::kube::health::HealthClients;
use crate::kube::rbac::Applied;
use crate::output::Ui;
use crate::remote::lock::Lock;
use crate::remote::Host;
use crate::Error;

mod commit;
mod files;
mod rbac;
mod stage;
mod units;
mod wait;

pub use commit::{clear_marker, commit_script};
pub use stage::{stage_script, PARALLEL_LARGE, SMALL_FILE};
pub use wait::{look, Look};

/// One step as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// The action's kind (`stage`, `commit`, `restart`…).
    pub step: &'static str,
    /// Its line, as `--dry-run` printed it.
    pub line: String,
    pub seconds: f64,
}

/// What the steps did, for the report.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Bytes on the wire (compressed where the stage compressed).
    pub bytes_sent: u64,
    /// The same files' own size.
    pub bytes_uploaded: u64,
    /// How the large files travelled (`none`, `zstd`, `gzip`).
    pub compression: crate::local::compress::Codec,
    pub uploaded: Vec<String>,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub rbac: Vec<Applied>,
    pub steps: Vec<StepTiming>,
    /// Seconds from the first systemctl step of the apiserver's restart
    /// (stopping its clients, or the restart itself) to its /readyz ok.
    pub apiserver_restart_to_ready_seconds: Option<f64>,
    /// What did not stop the run but an operator wants to know: a
    /// component that exited while it ran (systemd started it again), with
    /// its journal's own words.
    pub warnings: Vec<crate::error::Problem>,
}

/// What the steps share while a plan runs.
pub struct Exec<'a> {
    pub host: &'a Host,
    pub desired: &'a Desired,
    pub lock: Option<&'a Lock<'a>>,
    pub api_config: kube::Config,
    pub timeout: Duration,
    pub ui: &'a Ui,
    pub outcome: Outcome,
    /// Files the stage step put in temps, for the commit step.
    staged: Vec<stage::Staged>,
    /// The tunnelled clients the wait step opened, for the RBAC step.
    clients: Option<HealthClients>,
    /// When the apiserver's restart began.
    api_restart: Option<Instant>,
    /// The other servers' apiservers, by name, when the run has several:
    /// the wait step waits until each answers /readyz too.
    pub peers: Vec<(String, kube::Client)>,
    /// What [`look`] saw before the run, and the probe's facts to judge
    /// it by: while nothing has changed, the wait and RBAC steps need
    /// nothing more.
    look: Option<wait::Seen>,
    /// Has any step changed the server yet?
    changed: bool,
    /// Large files streamed at once to this server (fewer when several
    /// servers are staged at once: they share this machine's cores).
    pub lanes: usize,
    /// Each unit's generation as this run last knew it (read with the
    /// server, or right after this run started it): any other start is a
    /// crash systemd papered over, reported as a warning.
    generations: std::collections::BTreeMap<crate::model::Component, crate::remote::systemd::Generation>,
    /// When this run read the server (its clock): the journal is read from
    /// there.
    since: Option<f64>,
}

impl<'a> Exec<'a> {
    pub fn new(host: &'a Host, desired: &'a Desired, lock: Option<&'a Lock<'a>>, api_config: kube::Config, timeout: Duration, ui: &'a Ui) -> Exec<'a> {
        Exec {
            host,
            desired,
            lock,
            api_config,
            timeout,
            ui,
            outcome: Outcome::default(),
            staged: Vec::new(),
            clients: None,
            api_restart: None,
            peers: Vec::new(),
            look: None,
            changed: false,
            lanes: stage::PARALLEL_LARGE,
            generations: Default::default(),
            since: None,
        }
    }

    /// What the server read says of each unit's generation, and when: a
    /// later start that this run did not ask for is a crash.
    pub fn watch(&mut self, probe: &crate::remote::probe::Probe) {
        self.generations = crate::model::Component::ALL.iter().map(|c| (*c, probe.units.get(c.unit()).map(|s| s.generation()).unwrap_or_default())).collect();
        self.since = (probe.now > 0.0).then_some(probe.now);
    }

    /// Hands over what [`look`] saw (and its tunnels), with the probe it
    /// is judged by.
    pub fn seen(&mut self, l: Look, probe: &crate::remote::probe::Probe) {
        let (clients, seen) = wait::Seen::new(l, probe);
        self.clients = Some(clients);
        self.look = Some(seen);
    }

    /// The tunnelled health clients of this server (opened on first use).
    pub async fn clients(&mut self) -> Result<&HealthClients, Error> {
        if self.clients.is_none() {
            self.clients = Some(HealthClients::open(self.host, &self.desired.units, self.api_config.clone()).await?);
        }
        Ok(self.clients.as_ref().expect("just opened"))
    }
}

impl Action {
    /// Runs this step.
    pub async fn run(&self, x: &mut Exec<'_>) -> Result<(), Error> {
        match self {
            Action::RemoveStale { paths } => files::remove_stale(x, paths).await,
            Action::Directories { create, fix } => files::directories(x, create, fix).await,
            Action::Stage { files, transfer } => stage::run(x, files, transfer.codec).await,
            Action::Commit { files, marker } => commit::run(x, files, marker).await,
            Action::SetModes { files } => files::set_modes(x, files).await,
            Action::DaemonReload { .. } | Action::Enable { .. } | Action::Stop { .. } | Action::Start { .. } | Action::Restart { .. } => units::run(x, self).await,
            Action::WaitHealthy { .. } => wait::run(x).await,
            Action::WaitEndpoints { addresses } => wait::endpoints(x, addresses).await,
            Action::ApplyRbac { .. } => rbac::run(x).await,
        }
    }
}

impl Exec<'_> {
    /// Removes what was staged and not committed (a rollout stopped before
    /// this server's turn): nothing of this run is left on it.
    pub async fn discard_staged(&mut self) {
        let temps: Vec<String> = std::mem::take(&mut self.staged).into_iter().map(|s| crate::remote::shell_quote(&s.tmp)).collect();
        if !temps.is_empty() {
            let _ = self.host.sh(&format!("rm -f {}", temps.join(" "))).await;
        }
    }
}

/// Runs every step of `plan` in order, each timed.
pub async fn execute(plan: &Plan, x: &mut Exec<'_>) -> Result<(), Error> {
    run_actions(&plan.actions, x).await
}

/// Runs `actions` (a part of a plan) in order, each timed.
pub async fn run_actions(actions: &[Action], x: &mut Exec<'_>) -> Result<(), Error> {
    for a in actions {
        let t = Instant::now();
        x.ui.step(&a.line());
        x.changed |= a.changes();
        a.run(x).await?;
        x.outcome.steps.push(StepTiming { step: a.kind(), line: a.line(), seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0 });
    }
    Ok(())
}

/// Every remote script `a` runs, as (its command line, its stdin when that
/// carries more than file bytes), built by the same builders the steps run:
/// what the server's process list and sudo's log can see. Temp names are
/// placeholders.
pub fn scripts(a: &Action, desired: &Desired, fence: Option<String>) -> Vec<(String, Option<String>)> {
    use crate::bootstrap::plan::Action as A;
    match a {
        A::RemoveStale { paths } => files::remove_stale_script(paths).into_iter().map(|s| (s, None)).collect(),
        A::Directories { create, fix } => vec![(files::directories_script(create, fix), None)],
        A::SetModes { files: f } => vec![(files::set_modes_script(f), None)],
        A::Stage { files: changes, transfer } => {
            let all: Vec<(usize, &crate::bootstrap::desired::DesiredFile)> = changes.iter().map(|c| (c.index, &desired.files[c.index])).collect();
            let (large, small) = stage::sessions(all);
            let temp = |f: &crate::bootstrap::desired::DesiredFile| format!("{}.kcp-tmp-0", f.spec.dest);
            let mut out: Vec<(String, Option<String>)> = large
                .iter()
                .map(|(_, f)| {
                    let t = temp(f);
                    (stage::stage_script(&[(*f, t.as_str())], transfer.codec), None)
                })
                .collect();
            if !small.is_empty() {
                let temps: Vec<String> = small.iter().map(|(_, f)| temp(f)).collect();
                let pairs: Vec<(&crate::bootstrap::desired::DesiredFile, &str)> = small.iter().zip(&temps).map(|((_, f), t)| (*f, t.as_str())).collect();
                out.push((stage::stage_script(&pairs, crate::local::compress::Codec::None), stage::secret_sums(&small.iter().map(|(_, f)| *f).collect::<Vec<_>>())));
            }
            out
        }
        A::Commit { files: dests, marker } => {
            let temps: Vec<String> = dests.iter().map(|d| format!("{d}.kcp-tmp-0")).collect();
            let placements: Vec<commit::Placement<'_>> = dests
                .iter()
                .zip(&temps)
                .filter_map(|(d, t)| desired.file(d).map(|f| (f, t)))
                .map(|(f, t)| commit::Placement {
                    tmp: t,
                    dest: f.spec.dest,
                    owner: f.spec.owner,
                    group: f.spec.group,
                    mode: crate::model::FileMode(f.spec.mode),
                    sha256: (!f.spec.kind.is_secret()).then_some(f.sha256.as_str()),
                })
                .collect();
            let mut s = commit_script(&placements, marker, &crate::remote::probe::pending_marker(), fence);
            s.push_str(&commit::cache_entries(&placements, &desired.versions));
            vec![(s, None)]
        }
        A::DaemonReload { .. } | A::Enable { .. } | A::Stop { .. } | A::Start { .. } | A::Restart { .. } => vec![(units::script(a), None)],
        A::WaitHealthy { .. } => {
            let units = crate::remote::probe::Request::units();
            let journals = crate::remote::probe::Request {
                journals: crate::remote::probe::Journals::Since(crate::model::Component::ALL.to_vec(), 0.0),
                ..crate::remote::probe::Request::units()
            };
            vec![(crate::remote::probe::script(&units), None), (crate::remote::probe::script(&journals), None)]
        }
        A::WaitEndpoints { .. } | A::ApplyRbac { .. } => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::desired::{Content, DesiredFile};
    use crate::model::overrides::{desired_units, Overrides};
    use crate::model::FILES;

    /// A first deploy: every remote script's command line (which every user
    /// of the server sees in /proc, and sudo writes to the journal) holds
    /// no sha256 of a secret file; those travel on stdin.
    #[test]
    fn no_command_line_of_a_first_deploy_holds_a_secrets_hash() {
        let files = FILES
            .iter()
            .map(|spec| {
                let size = if spec.kind == crate::model::FileKind::Binary {
                    100 << 20
                } else if spec.kind.is_secret() {
                    2 << 20
                } else {
                    100
                };
                DesiredFile { spec, content: Content::Text(spec.dest.into()), size, sha256: crate::local::files::sha256_hex(spec.dest.as_bytes()) }
            })
            .collect();
        let desired = Desired { files, units: desired_units(&Overrides::default()), scheduler_version: None, versions: Default::default() };
        let plan = crate::bootstrap::plan::build(&desired, &crate::remote::probe::Probe::default());
        let secret: Vec<&str> = desired.files.iter().filter(|f| f.spec.kind.is_secret()).map(|f| f.sha256.as_str()).collect();
        assert!(secret.len() >= 5);
        let mut lines: Vec<String> = vec![crate::remote::probe::script(&crate::remote::probe::Request::bootstrap())];
        let mut stdin = String::new();
        for a in &plan.actions {
            for (line, input) in scripts(a, &desired, Some("grep -q tok /x\n".into())) {
                lines.push(line);
                stdin.extend(input);
            }
        }
        assert!(lines.len() > 10, "{} scripts", lines.len());
        for l in &lines {
            for sha in &secret {
                assert!(!l.contains(sha), "a secret's sha256 on a command line:\n{l}");
            }
        }
        // They do travel: on stdin, where only the script reads them.
        for sha in &secret {
            assert!(stdin.contains(sha), "{sha} not on stdin");
        }
        // A public file's sum may be on the command line (it is no secret).
        let public = desired.files.iter().find(|f| f.spec.kind == crate::model::FileKind::Binary).unwrap();
        assert!(lines.iter().any(|l| l.contains(&public.sha256)));
    }
}
