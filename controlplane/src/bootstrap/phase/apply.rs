//! Phase 5: apply. The waves of [`rollout::waves`], each server's part run
//! by the executor exactly as `--dry-run` prints it; in a dry run, the
//! plans and the waves as the report.

use std::time::Instant;

use futures::StreamExt;

use super::Target;
use crate::bootstrap::desired::Desired;
use crate::bootstrap::plan::{self, Plan};
use crate::bootstrap::report::{self, PlanReport, Report, RunReport};
use crate::bootstrap::steps::{self, Exec, StepTiming};
use crate::bootstrap::{rollout, Failure, ServerOptions};
use crate::output::Ui;
use crate::Error;

/// Each target's name and plan, in the run's order (what the waves index).
fn named<'a>(targets: &'a [Target<'_>]) -> Vec<(&'a str, &'a Plan)> {
    targets.iter().map(|t| (t.name(), &t.plan)).collect()
}

/// The run's waves.
pub fn waves(targets: &[Target<'_>], first_deploy: bool) -> Vec<rollout::Wave> {
    rollout::waves(&targets.iter().map(|t| &t.plan).collect::<Vec<_>>(), first_deploy)
}

/// `--dry-run`: every plan and the order the run would take.
pub fn dry_run(targets: &[Target<'_>], desired: &Desired, first_deploy: bool) -> Report {
    let waves = waves(targets, first_deploy);
    let order: Vec<String> = waves.iter().map(|w| rollout::line(w, &named(targets))).collect();
    let mut reports: Vec<PlanReport> = targets.iter().map(|t| PlanReport::new(t.name(), &t.plan, desired, &t.probe)).collect();
    match reports.len() {
        1 => Report::Plan(reports.remove(0)),
        _ => Report::ClusterPlan(report::ClusterPlanReport::new(reports, waves, order, first_deploy)),
    }
}

/// One server while its plan runs.
struct Running<'a> {
    name: &'a str,
    plan: &'a Plan,
    exec: Exec<'a>,
}

/// What the run measured before the plan ran, for the reports.
pub struct Before {
    pub started: Instant,
    pub prepare: Vec<StepTiming>,
}

/// Runs every target's plan in waves and reports it.
pub async fn run(targets: &mut [Target<'_>], desired: &Desired, config: kube::Config, o: &ServerOptions, ui: &Ui, first_deploy: bool, before: Before) -> Result<Report, Failure> {
    let waves = waves(targets, first_deploy);
    let mut running: Vec<Running<'_>> = targets
        .iter_mut()
        .map(|t| {
            let mut exec = Exec::new(&t.server.host, desired, t.lock.as_ref(), config.clone(), o.timeout, &t.server.ui);
            exec.watch(&t.probe);
            if let Some(l) = t.look.take() {
                exec.seen(l, &t.probe);
            }
            Running { name: &t.server.name, plan: &t.plan, exec }
        })
        .collect();
    run_waves(&mut running, &waves, o.concurrency(), ui).await?;
    let elapsed = seconds(before.started);
    let mut runs: Vec<RunReport> = running
        .into_iter()
        .map(|r| RunReport {
            api_version: report::API_VERSION,
            kind: "Result",
            destination: r.name.to_string(),
            dry_run: false,
            changed: !r.plan.is_noop() || r.exec.outcome.rbac.iter().any(|x| x.result != "unchanged"),
            outcome: r.exec.outcome,
            prepare: before.prepare.clone(),
            elapsed_seconds: elapsed,
        })
        .collect();
    Ok(match runs.len() {
        1 => Report::Run(runs.remove(0)),
        _ => Report::ClusterRun(report::ClusterRunReport::new(runs, waves, first_deploy, elapsed)),
    })
}

fn seconds(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

/// Runs the waves. With several servers each server's wait also waits for
/// every other server's /readyz. A failure stops the run there: what was
/// staged on servers not yet reached is removed, and the error names the
/// server and those left as they were.
async fn run_waves(running: &mut [Running<'_>], waves: &[rollout::Wave], limit: usize, ui: &Ui) -> Result<(), Failure> {
    let several = running.len() > 1;
    let mut apis = Vec::new();
    if several {
        let opened = futures::future::join_all(running.iter_mut().map(|r| async move { (r.name, r.exec.clients().await.map(|c| c.api.clone())) })).await;
        for (name, api) in opened {
            apis.push((name.to_string(), api.map_err(|e| Error::Connect(format!("{name}: {e}")))?));
        }
    }
    let servers: Vec<(&str, &Plan)> = running.iter().map(|r| (r.name, r.plan)).collect();
    let lines: Vec<String> = waves.iter().map(|w| rollout::line(w, &servers)).collect();
    let mut reached = vec![false; running.len()];
    for (w, line) in waves.iter().zip(&lines) {
        if several {
            ui.step(&format!("== {line}"));
            // A server rolled alone waits for every other server's /readyz
            // too; servers waiting together (a first deploy, no-op passes)
            // each for their own health: a server broken before this run
            // must not hold up the one pass that fixes it.
            for (i, r) in running.iter_mut().enumerate() {
                // Staging several servers at once: one large file each at a time.
                r.exec.lanes = if w.servers.len() > 1 { 1 } else { steps::PARALLEL_LARGE };
                r.exec.peers = if w.servers == [i] { apis.iter().filter(|(n, _)| n != r.name).cloned().collect() } else { Vec::new() };
            }
        }
        let failed: Option<(usize, Error)> = {
            let runs = running.iter_mut().enumerate().filter(|(i, _)| w.servers.contains(i)).map(|(i, r)| {
                let actions = r.plan.part(w.part);
                async move { (i, steps::run_actions(actions, &mut r.exec).await) }
            });
            let errors: Vec<(usize, Error)> =
                futures::stream::iter(runs).buffer_unordered(limit.max(1)).filter_map(|(i, r)| async move { r.err().map(|e| (i, e)) }).collect().await;
            errors.into_iter().next()
        };
        if !matches!(w.part, plan::Part::Prepare) {
            for &i in &w.servers {
                reached[i] = true;
            }
        }
        if let Some((i, e)) = failed {
            return Err(stopped_at(running, &reached, i, e).await);
        }
    }
    Ok(())
}

/// The rollout stopped at server `at`: what was staged on servers not yet
/// reached is removed; the error names the server and those left as they
/// were. A run of one server fails with its error as it is.
async fn stopped_at(running: &mut [Running<'_>], reached: &[bool], at: usize, e: Error) -> Failure {
    if running.len() == 1 {
        return e.into();
    }
    let mut untouched = Vec::new();
    for (r, reached) in running.iter_mut().zip(reached) {
        if !*reached {
            r.exec.discard_staged().await;
            untouched.push(r.name);
        }
    }
    let left = if untouched.is_empty() { String::new() } else { format!("\nnot reached, as they were: {}", untouched.join(", ")) };
    let msg = format!("the rollout stopped at {}: {e}{left}\nfix the cause and run again: the next run finishes the rollout", running[at].name);
    match e {
        Error::Connect(_) => Error::Connect(msg),
        _ => Error::Server(msg),
    }
    .into()
}
