//! The wait step: until every component answers healthy (the apiserver's
//! /livez and /readyz, the others' /healthz, through SSH tunnels) and every
//! leader Lease is held by a live holder. A component that keeps
//! restarting, or the timeout, ends the wait with its status and journal.
//! Once healthy, a unit whose process exited during the run (its generation
//! moved without this run starting it) is reported as a warning. The
//! server is read through the probe, like everything else.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;

use super::Exec;
use crate::kube::health::{self, HealthClients, Unhealthy};
use crate::model::overrides::DesiredUnit;
use crate::model::{Component, APISERVER};
use crate::output::Ui;
use crate::remote::probe::{self, Journals, Request};
use crate::remote::{systemd, Host};
use crate::Error;

/// What reading a leader Lease gave.
type LeaseRead = Result<Option<Lease>, String>;

/// A look at the running plane, taken while the server is read (reads
/// only: nothing changes before preflight): its tunnels, what is unhealthy,
/// the leader Leases, and whether the RBAC stands as desired.
pub struct Look {
    pub clients: HealthClients,
    pub unhealthy: Vec<Unhealthy>,
    pub leases: Vec<(Component, LeaseRead)>,
    pub rbac: Option<Vec<crate::kube::rbac::Applied>>,
    pub at: Instant,
}

/// Each client's Lease (every component but the apiserver elects a leader).
async fn read_leases(api: &kube::Client) -> Vec<(Component, LeaseRead)> {
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    futures::future::join_all(Component::clients().map(|c| {
        let leases = leases.clone();
        async move {
            let r = match tokio::time::timeout(Duration::from_secs(5), leases.get_opt(c.name())).await {
                Ok(Ok(l)) => Ok(l),
                Ok(Err(e)) => Err(crate::output::redact::line(&e.to_string())),
                Err(_) => Err("no answer within 5s".into()),
            };
            (c, r)
        }
    }))
    .await
}

/// Opens the tunnels and asks health, Leases and RBAC at once, each bounded.
pub async fn look(host: &Host, units: &[DesiredUnit], api_config: kube::Config) -> Result<Look, Error> {
    let clients = HealthClients::open(host, units, api_config).await?;
    let api = clients.api.clone();
    let rbac = async { tokio::time::timeout(Duration::from_secs(5), crate::kube::rbac::unchanged(&api)).await.ok().flatten() };
    let (unhealthy, leases, rbac) = tokio::join!(clients.check(), read_leases(&api), rbac);
    Ok(Look { clients, unhealthy, leases, rbac, at: Instant::now() })
}

/// A [`Look`] with the probe's facts to judge it by.
pub(super) struct Seen {
    unhealthy: Vec<Unhealthy>,
    leases: Vec<(Component, LeaseRead)>,
    pub(super) rbac: Option<Vec<crate::kube::rbac::Applied>>,
    at: Instant,
    /// The server's clock minus this one's.
    skew: f64,
    /// When each unit last entered `active` (server seconds).
    started: BTreeMap<Component, u64>,
}

impl Seen {
    pub(super) fn new(l: Look, p: &crate::remote::probe::Probe) -> (HealthClients, Seen) {
        (l.clients, Seen { unhealthy: l.unhealthy, leases: l.leases, rbac: l.rbac, at: l.at, skew: p.skew, started: started(p) })
    }

    /// Healthy and every leader live, as seen (None: it was not, or the
    /// look is too old to go by).
    fn verdict(&self) -> Option<Vec<Component>> {
        if !self.unhealthy.is_empty() || self.at.elapsed() > Duration::from_secs(10) {
            return None;
        }
        let now = now() + self.skew;
        let mut held = Vec::new();
        for (c, l) in &self.leases {
            let Ok(Some(l)) = l else { return None };
            health::lease_verdict(&l.spec.clone().unwrap_or_default(), now, self.started.get(c).copied().unwrap_or(0)).ok()?;
            held.push(*c);
        }
        Some(held)
    }
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// When each unit last became active, server seconds (0: never).
fn started(p: &crate::remote::probe::Probe) -> BTreeMap<Component, u64> {
    Component::ALL.iter().map(|c| (*c, p.units.get(c.unit()).map(|s| s.active_enter_unix).unwrap_or(0))).collect()
}

fn names(v: &[Component]) -> String {
    v.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
}

/// The `Active:` line and the journal's last lines of `unit`, escaped.
pub async fn diagnose(host: &Host, unit: Component) -> String {
    match host.sh(&systemd::diagnose(unit)).await {
        Ok(o) => crate::output::redact::block(String::from_utf8_lossy(&o.stdout).trim_end()),
        Err(e) => e.to_string(),
    }
}

/// Each unit's NRestarts now, as the probe reads it.
async fn restarts_now(host: &Host) -> Result<BTreeMap<Component, u32>, Error> {
    let p = probe::read(host, &Request::units()).await?;
    Ok(Component::ALL.iter().map(|c| (*c, p.units.get(c.unit()).map(|s| s.restarts).unwrap_or(0))).collect())
}

/// Waits until every component answers healthy; returns when the
/// apiserver first answered ready.
async fn healthy(host: &Host, clients: &HealthClients, peers: &[(String, kube::Client)], timeout: Duration, ui: &Ui) -> Result<Instant, Error> {
    let start = Instant::now();
    let mut api_ready: Option<Instant> = None;
    let baseline = restarts_now(host).await?;
    let mut last_report = Instant::now();
    loop {
        let (bad, peers_bad) = tokio::join!(clients.check(), peers_not_ready(peers));
        if api_ready.is_none() && !bad.iter().any(|b| b.component == APISERVER) {
            api_ready = Some(Instant::now());
        }
        if bad.is_empty() && peers_bad.is_empty() {
            return Ok(api_ready.unwrap_or_else(Instant::now));
        }
        let waiting = if bad.is_empty() {
            // Healthy here; another server's apiserver is not ready.
            if start.elapsed() >= timeout {
                return Err(Error::Server(format!("not every other server's {APISERVER} became ready within {}s: {}", timeout.as_secs(), peers_bad.join("; "))));
            }
            format!("the other servers: {}", peers_bad.join("; "))
        } else {
            stuck(host, &bad, &baseline, start, timeout).await?;
            bad.iter().map(|b| format!("{} {}", b.component, b.why)).collect::<Vec<_>>().join("; ")
        };
        if last_report.elapsed() > Duration::from_secs(10) {
            ui.step(&format!("  waiting ({}s): {waiting}", start.elapsed().as_secs()));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Ends the wait when a unfit component keeps restarting (three restarts
/// since the wait began; a client's only once the apiserver answers: it
/// may restart while the apiserver is down) or the time is up: the error
/// names each with its status and journal.
async fn stuck(host: &Host, bad: &[Unhealthy], baseline: &BTreeMap<Component, u32>, start: Instant, timeout: Duration) -> Result<(), Error> {
    let now = restarts_now(host).await?;
    let api_down = bad.iter().any(|b| b.component == APISERVER);
    let looping: Vec<&Unhealthy> = bad
        .iter()
        .filter(|b| b.component == APISERVER || !api_down)
        .filter(|b| now.get(&b.component).unwrap_or(&0).saturating_sub(*baseline.get(&b.component).unwrap_or(&0)) >= 3)
        .collect();
    let timed_out = start.elapsed() >= timeout;
    if !timed_out && looping.is_empty() {
        return Ok(());
    }
    let culprits: Vec<&Unhealthy> = if looping.is_empty() { bad.iter().collect() } else { looping };
    // What their journals say since the wait began (and a minute before:
    // the start it waits on), matched against the known failures.
    let window = start.elapsed().as_secs() + 60;
    let units: Vec<Component> = culprits.iter().map(|b| b.component).collect();
    let mut said = explain(host, &units, window).await.into_iter();
    let mut msg = String::new();
    for b in culprits {
        let reason = if timed_out { format!("not healthy after {}s", timeout.as_secs()) } else { "keeps restarting".to_string() };
        msg.push_str(&format!("{} {reason} ({})\n", b.component, b.why));
        msg.push_str(&said.next().unwrap_or_default());
        msg.push('\n');
    }
    Err(Error::Server(msg.trim_end().to_string()))
}

/// For each of `units`, in order: the known failure the last lines of its
/// journal (within `window` seconds) match, as `cause [diagnose.ID]: …` and
/// `fix: …` lines above its status and journal tail. A journal that could
/// not be searched says so in place of the cause.
pub async fn explain(host: &Host, units: &[Component], window: u64) -> Vec<String> {
    let said = probe::read(host, &Request { signatures: Some(window), ..Request::units() }).await;
    let mut out = Vec::new();
    for &c in units {
        let mut msg = String::new();
        let lines = said.as_ref().map_err(|e| e.to_string()).and_then(|p| p.units.get(c.unit()).map(|u| u.signature_lines.clone()).unwrap_or_else(|| Ok(Vec::new())));
        match lines {
            Ok(lines) => {
                if let Some(cause) = lines.iter().rev().find_map(|l| crate::diagnose::match_line(c, l)) {
                    msg.push_str(&format!("cause [diagnose.{}]: {}\nfix: {}\n", cause.id, cause.cause, cause.fix));
                }
            }
            Err(e) => msg.push_str(&format!("(its journal could not be searched for a known cause: {})\n", crate::output::redact::line(&e))),
        }
        msg.push_str(&diagnose(host, c).await);
        out.push(msg);
    }
    out
}

/// The other servers whose apiserver does not answer /readyz now, with why.
async fn peers_not_ready(peers: &[(String, kube::Client)]) -> Vec<String> {
    let answers = futures::future::join_all(peers.iter().map(|(name, c)| async move { (name, health::get(c, "/readyz").await) })).await;
    answers
        .into_iter()
        .filter(|(_, (status, _))| *status != 200)
        .map(|(name, (status, body))| {
            let why = if status == 0 { crate::output::redact::line(body.lines().next().unwrap_or("")) } else { format!("HTTP {status}") };
            format!("{name}: /readyz → {why}")
        })
        .collect()
}

/// Waits until every component that elects a leader (all but the
/// apiserver) has its kube-system Lease held by a live holder: renewed after
/// the component last (re)started here, and within the Lease's own
/// `leaseDurationSeconds`. A Lease still naming a holder that died with the
/// old process (after a reset, a restart) is released, as that process
/// would have on a clean exit, so the new one need not wait it out.
async fn leaders(host: &Host, api: &kube::Client, timeout: Duration, ui: &Ui) -> Result<(), Error> {
    let start = Instant::now();
    // The server's name and clock, and when each component started there.
    let p = probe::read(host, &Request::units()).await?;
    let (hostname, skew, started) = (p.hostname.clone(), p.skew, started(&p));
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    let mut last = Vec::new();
    let mut released: Vec<Component> = Vec::new();
    loop {
        host.alive().await?;
        let mut waiting = Vec::new();
        for (c, read) in read_leases(api).await {
            let since = started.get(&c).copied().unwrap_or(0);
            let verdict = match read {
                Ok(Some(l)) => {
                    let verdict = health::lease_verdict(&l.spec.clone().unwrap_or_default(), now() + skew, since);
                    if verdict.is_err() && !released.contains(&c) && health::held_by_previous_local_process(&l, &hostname, since) {
                        release(&leases, c, l, ui).await;
                        released.push(c);
                    }
                    verdict.map_err(|e| e.0)
                }
                Ok(None) => Err("no Lease yet".into()),
                Err(e) => Err(format!("cannot read its Lease: {e}")),
            };
            if let Err(why) = verdict {
                waiting.push(format!("{c}: {why}"));
            }
        }
        if waiting.is_empty() {
            ui.step(&format!("  leaders elected: {}", names(&Component::clients().collect::<Vec<_>>())));
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Server(format!("no live leader in kube-system after {}s: {}", timeout.as_secs(), waiting.join("; "))));
        }
        if waiting != last && start.elapsed() > Duration::from_secs(5) {
            ui.step(&format!("  waiting for leaders ({}s): {}", start.elapsed().as_secs(), waiting.join("; ")));
            last = waiting;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Releases `c`'s Lease held by this server's previous process.
async fn release(leases: &kube::Api<Lease>, c: Component, l: Lease, ui: &Ui) {
    match tokio::time::timeout(Duration::from_secs(5), leases.replace(c.name(), &kube::api::PostParams::default(), &health::released(l))).await {
        Ok(Ok(_)) => ui.step(&format!("  released {c}'s Lease: its holder stopped with the process this run replaced")),
        _ => ui.detail(&format!("could not release {c}'s Lease (someone else changed it); waiting it out")),
    }
}

/// Until the `kubernetes` Endpoints list every one of `addresses`.
pub async fn endpoints(x: &mut Exec<'_>, addresses: &[String]) -> Result<(), Error> {
    use k8s_openapi::api::core::v1::Endpoints;
    let (timeout, ui) = (x.timeout, x.ui);
    let api = x.clients().await?.api.clone();
    let eps: kube::Api<Endpoints> = kube::Api::namespaced(api, "default");
    let start = Instant::now();
    loop {
        let listed: Vec<String> = match tokio::time::timeout(Duration::from_secs(5), eps.get_opt("kubernetes")).await {
            Ok(Ok(Some(e))) => e.subsets.unwrap_or_default().into_iter().flat_map(|s| s.addresses.unwrap_or_default()).map(|a| a.ip).collect(),
            _ => Vec::new(),
        };
        let missing: Vec<&String> = addresses.iter().filter(|a| !listed.contains(a)).collect();
        if missing.is_empty() {
            ui.step(&format!("  listed: {}", addresses.join(", ")));
            return Ok(());
        }
        if start.elapsed() >= timeout {
            return Err(Error::Server(format!(
                "the kubernetes Endpoints did not list {} within {}s (listed: {}): journalctl -u {} on those servers (advertise address)",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                timeout.as_secs(),
                // The addresses are the apiserver's words: escaped.
                if listed.is_empty() { "none".to_string() } else { crate::output::redact::line(&listed.join(", ")) },
                APISERVER.unit()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What `healthy` means, for the step's lines.
fn healthy_line() -> String {
    Component::ALL.iter().map(|c| if *c == APISERVER { format!("{c} /livez /readyz") } else { format!("{c} /healthz") }).collect::<Vec<_>>().join(", ")
}

pub async fn run(x: &mut Exec<'_>) -> Result<(), Error> {
    // Nothing changed since the look, which saw it healthy with live
    // leaders: that is the answer (a server rolled alone still asks its peers).
    if !x.changed && x.peers.is_empty() {
        if let Some(held) = x.look.as_ref().and_then(|l| l.verdict()) {
            x.ui.step(&format!("  healthy: {} (as read with the server; nothing changed since)", healthy_line()));
            x.ui.step(&format!("  leaders live: {}", names(&held)));
            return Ok(());
        }
    }
    let (host, timeout, ui, api_restart) = (x.host, x.timeout, x.ui, x.api_restart);
    let peers = x.peers.clone();
    let clients = x.clients().await?;
    let ready = healthy(host, clients, &peers, timeout, ui).await?;
    ui.step(&format!(
        "  healthy: {}{}",
        healthy_line(),
        if peers.is_empty() { String::new() } else { format!("; /readyz of {}", peers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")) }
    ));
    let api = clients.api.clone();
    leaders(host, &api, timeout, ui).await?;
    if let Some(t) = api_restart {
        x.outcome.apiserver_restart_to_ready_seconds = Some((ready.duration_since(t).as_secs_f64() * 1000.0).round() / 1000.0);
        x.api_restart = None;
    }
    unasked_starts(x).await
}

/// Every unit started since this run last knew it, other than by this run:
/// its process exited (a crash systemd papered over with `Restart=`) or
/// someone else restarted it. Each is a warning with its journal's words
/// since the run began; the run still succeeds, as the plane is healthy.
async fn unasked_starts(x: &mut Exec<'_>) -> Result<(), Error> {
    let p = probe::read(x.host, &Request::units()).await?;
    let mut found = Vec::new();
    for c in Component::ALL.iter().copied() {
        let g = p.units.get(c.unit()).map(|s| s.generation()).unwrap_or_default();
        let before = x.generations.insert(c, g.clone()).unwrap_or_default();
        if before != g {
            found.push((c, before, g));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let crashed: Vec<Component> = found.iter().map(|(c, _, _)| *c).collect();
    let journals = match x.since {
        Some(since) => probe::read(x.host, &Request { journals: Journals::Since(crashed, since), ..Request::units() }).await.map(|p| p.units),
        None => Err(Error::Server("the run's start time on the server is unknown".into())),
    };
    for (c, before, g) in found {
        let what = if g.restarts > before.restarts {
            format!("{} exited while this run ran and systemd started it again ({} restart(s) by Restart=)", c.unit(), g.restarts - before.restarts)
        } else if g.invocation == before.invocation {
            format!("{}'s process (pid {}) exited while this run ran; systemd starts it again (Restart=)", c.unit(), before.main_pid)
        } else {
            format!("{} was started again while this run ran, not by this run", c.unit())
        };
        let lines = match journals.as_ref().map(|u| u.get(c.unit()).map(|s| &s.crashes)) {
            Ok(Some(Ok(lines))) if !lines.is_empty() => lines.clone(),
            Ok(Some(Ok(_))) | Ok(None) => vec!["(no line of its journal since this run began says why)".to_string()],
            Ok(Some(Err(e))) => vec![format!("(its journal could not be read: {e})")],
            Err(e) => vec![format!("(its journal could not be read: {e})")],
        };
        x.ui.step(&format!("  warning: {what}"));
        x.outcome.warnings.push(crate::error::Problem::new(what, format!("journalctl -u {}: the lines below say why it ended", c.unit())).with_journal(lines));
    }
    Ok(())
}
