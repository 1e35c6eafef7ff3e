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
    generations: std::collections::BTreeMap<String, crate::remote::systemd::Generation>,
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
        self.generations = probe.units.iter().map(|(u, s)| (u.clone(), s.generation())).collect();
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
            self.clients = Some(HealthClients::open(self.host, self.desired, self.api_config.clone()).await?);
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
