//! The wait step: until every component answers healthy (the apiserver's
//! /livez and /readyz, the others' /healthz, through SSH tunnels) and every
//! leader Lease is held by a live holder. A component that keeps
//! restarting, or the timeout, ends the wait with its status and journal.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Exec;
use crate::bootstrap::desired::Desired;
use crate::kube::health::{self, HealthClients, Unhealthy};
use crate::model::{APISERVER, UNITS};
use crate::output::Ui;
use crate::remote::shell_quote as q;
use crate::remote::{systemd, Host};
use crate::Error;

/// A look at the running plane, taken while the server is read (reads
/// only: nothing changes before preflight): its tunnels, what is unhealthy,
/// the leader Leases, and whether the RBAC stands as desired.
pub struct Look {
    pub clients: HealthClients,
    pub unhealthy: Vec<Unhealthy>,
    pub leases: Vec<(&'static str, Result<Option<k8s_openapi::api::coordination::v1::Lease>, String>)>,
    pub rbac: Option<Vec<crate::kube::rbac::Applied>>,
    pub at: Instant,
}

/// Opens the tunnels and asks health, Leases and RBAC at once, each bounded.
pub async fn look(host: &Host, desired: &Desired, api_config: kube::Config) -> Result<Look, Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let clients = HealthClients::open(host, desired, api_config).await?;
    let api = clients.api.clone();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    let electing: Vec<&'static str> = desired.units.iter().map(|u| u.spec.component).filter(|c| *c != APISERVER).collect();
    let get_leases = futures::future::join_all(electing.into_iter().map(|c| {
        let leases = leases.clone();
        async move {
            let r = match tokio::time::timeout(Duration::from_secs(5), leases.get_opt(c)).await {
                Ok(Ok(l)) => Ok(l),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 5s".into()),
            };
            (c, r)
        }
    }));
    let rbac = async { tokio::time::timeout(Duration::from_secs(5), crate::kube::rbac::unchanged(&api)).await.ok().flatten() };
    let (unhealthy, leases, rbac) = tokio::join!(clients.check(), get_leases, rbac);
    Ok(Look { clients, unhealthy, leases, rbac, at: Instant::now() })
}

/// A [`Look`] with the probe's facts to judge it by.
pub(super) struct Seen {
    unhealthy: Vec<Unhealthy>,
    leases: Vec<(&'static str, Result<Option<k8s_openapi::api::coordination::v1::Lease>, String>)>,
    pub(super) rbac: Option<Vec<crate::kube::rbac::Applied>>,
    at: Instant,
    /// The server's clock minus this one's.
    skew: f64,
    /// When each unit last entered `active` (server seconds).
    started: BTreeMap<String, u64>,
}

impl Seen {
    pub(super) fn new(l: Look, p: &crate::remote::probe::Probe) -> (HealthClients, Seen) {
        let started = p.units.iter().map(|(u, s)| (u.clone(), s.active_enter_unix)).collect();
        (l.clients, Seen { unhealthy: l.unhealthy, leases: l.leases, rbac: l.rbac, at: l.at, skew: p.skew, started })
    }

    /// Healthy and every leader live, as seen (None: it was not, or the
    /// look is too old to go by).
    fn verdict(&self) -> Option<Vec<String>> {
        if !self.unhealthy.is_empty() || self.at.elapsed() > Duration::from_secs(10) {
            return None;
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + self.skew;
        let mut held = Vec::new();
        for (c, l) in &self.leases {
            let Ok(Some(l)) = l else { return None };
            let since = self.started.get(&format!("{c}.service")).copied().unwrap_or(0);
            health::lease_verdict(&l.spec.clone().unwrap_or_default(), now, since).ok()?;
            held.push(c.to_string());
        }
        Some(held)
    }
}

/// The `Active:` line and the journal's last lines of `unit`, escaped.
pub async fn diagnose(host: &Host, unit: &str) -> String {
    match host.sh(&systemd::diagnose(unit)).await {
        Ok(o) => crate::output::redact::block(String::from_utf8_lossy(&o.stdout).trim_end()),
        Err(e) => e.to_string(),
    }
}

/// Waits until every component answers healthy; returns when the
/// apiserver first answered ready.
async fn healthy(host: &Host, clients: &HealthClients, peers: &[(String, kube::Client)], timeout: Duration, ui: &Ui) -> Result<Instant, Error> {
    let start = Instant::now();
    let mut api_ready: Option<Instant> = None;
    let units: Vec<&str> = UNITS.iter().map(|u| u.file_name).collect();
    let show = systemd::generations(&units);
    let restarts = |out: String| -> Result<BTreeMap<String, u32>, Error> {
        let g = systemd::parse_generations(&out, units.len()).map_err(|e| Error::Server(format!("{}: reading the units' restarts: {e}", host.destination)))?;
        Ok(units.iter().zip(g).map(|(u, g)| (u.to_string(), g.restarts)).collect())
    };
    let baseline = restarts(host.sh_ok(&show).await?)?;
    let mut last_report = Instant::now();
    loop {
        let (bad, peers_bad) = tokio::join!(clients.check(), peers_not_ready(peers));
        if api_ready.is_none() && !bad.iter().any(|b| b.component == APISERVER) {
            api_ready = Some(Instant::now());
        }
        if bad.is_empty() && peers_bad.is_empty() {
            return Ok(api_ready.unwrap_or_else(Instant::now));
        }
        if bad.is_empty() {
            // Healthy here; another server's apiserver is not ready.
            if start.elapsed() >= timeout {
                return Err(Error::Server(format!("not every other server's kube-apiserver became ready within {}s: {}", timeout.as_secs(), peers_bad.join("; "))));
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                ui.step(&format!("  waiting ({}s) for the other servers: {}", start.elapsed().as_secs(), peers_bad.join("; ")));
                last_report = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        // A unit restarting again and again will not get healthy: stop waiting.
        let now = restarts(host.sh_ok(&show).await?)?;
        // Components that need the apiserver may restart while it is down:
        // count their restarts only once it answers.
        let api_down = bad.iter().any(|b| b.component == APISERVER);
        let looping: Vec<&Unhealthy> = bad
            .iter()
            .filter(|b| b.component == APISERVER || !api_down)
            .filter(|b| {
                let u = format!("{}.service", b.component);
                now.get(&u).unwrap_or(&0).saturating_sub(*baseline.get(&u).unwrap_or(&0)) >= 3
            })
            .collect();
        let timed_out = start.elapsed() >= timeout;
        if timed_out || !looping.is_empty() {
            let culprits: Vec<&Unhealthy> = if looping.is_empty() { bad.iter().collect() } else { looping };
            let mut msg = String::new();
            for b in culprits {
                let reason = if timed_out { format!("not healthy after {}s", timeout.as_secs()) } else { "keeps restarting".to_string() };
                msg.push_str(&format!("{} {reason} ({})\n", b.component, b.why));
                msg.push_str(&diagnose(host, &format!("{}.service", b.component)).await);
                msg.push('\n');
            }
            return Err(Error::Server(msg.trim_end().to_string()));
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            ui.step(&format!("  waiting ({}s): {}", start.elapsed().as_secs(), bad.iter().map(|b| format!("{} {}", b.component, b.why)).collect::<Vec<_>>().join("; ")));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
/// old process (after a reset, a restart) does not count.
async fn leaders(host: &Host, api: &kube::Client, desired: &Desired, timeout: Duration, ui: &Ui) -> Result<(), Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let start = Instant::now();
    let electing: Vec<&crate::model::overrides::DesiredUnit> = desired.units.iter().filter(|u| u.spec.component != APISERVER).collect();
    // The server's name and clock, and when each component started there
    // (read as the probe reads them: from systemd's monotonic timestamps).
    let p = crate::remote::probe::read(host, &crate::remote::probe::Request::units()).await?;
    let (hostname, skew) = (p.hostname.clone(), p.skew);
    let started: Vec<u64> = electing.iter().map(|u| p.units.get(u.spec.file_name).map(|s| s.active_enter_unix).unwrap_or(0)).collect();
    let leases: kube::Api<Lease> = kube::Api::namespaced(api.clone(), "kube-system");
    let mut last = Vec::new();
    let mut released: Vec<&str> = Vec::new();
    loop {
        host.alive().await?;
        let mut waiting = Vec::new();
        for (i, u) in electing.iter().enumerate() {
            let c = u.spec.component;
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
            let since = started.get(i).copied().unwrap_or(0);
            let verdict = match tokio::time::timeout(Duration::from_secs(5), leases.get_opt(c)).await {
                Ok(Ok(Some(l))) => {
                    let verdict = health::lease_verdict(&l.spec.clone().unwrap_or_default(), now, since);
                    // Held by this server's previous process, which is gone
                    // (it renewed last before the component restarted here):
                    // release it as that process would have on a clean exit,
                    // so the new one need not wait the Lease out.
                    if verdict.is_err() && !released.contains(&c) && health::held_by_previous_local_process(&l, &hostname, since) {
                        match tokio::time::timeout(Duration::from_secs(5), leases.replace(c, &kube::api::PostParams::default(), &health::released(l))).await {
                            Ok(Ok(_)) => ui.step(&format!("  released {c}'s Lease: its holder stopped with the process this run replaced")),
                            _ => ui.detail(&format!("could not release {c}'s Lease (someone else changed it); waiting it out")),
                        }
                        released.push(c);
                    }
                    verdict
                }
                Ok(Ok(None)) => Err("no Lease yet".into()),
                Ok(Err(e)) => Err(format!("cannot read its Lease: {}", crate::output::redact::line(&e.to_string()))),
                Err(_) => Err("reading its Lease got no answer within 5s".into()),
            };
            if let Err(why) = verdict {
                waiting.push(format!("{c}: {why}"));
            }
        }
        if waiting.is_empty() {
            ui.step(&format!("  leaders elected: {}", electing.iter().map(|u| u.spec.component).collect::<Vec<_>>().join(", ")));
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
                "the kubernetes Endpoints did not list {} within {}s (listed: {}): journalctl -u kube-apiserver on those servers (advertise address)",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                timeout.as_secs(),
                // The addresses are the apiserver's words: escaped.
                if listed.is_empty() { "none".to_string() } else { crate::output::redact::line(&listed.join(", ")) }
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn run(x: &mut Exec<'_>) -> Result<(), Error> {
    // Nothing changed since the look, which saw it healthy with live
    // leaders: that is the answer (a server rolled alone still asks its peers).
    if !x.changed && x.peers.is_empty() {
        if let Some(held) = x.look.as_ref().and_then(|l| l.verdict()) {
            x.ui.step("  healthy: kube-apiserver /livez /readyz, kube-controller-manager /healthz, kube-scheduler /healthz (as read with the server; nothing changed since)");
            x.ui.step(&format!("  leaders live: {}", held.join(", ")));
            return Ok(());
        }
    }
    let (host, desired, timeout, ui, api_restart) = (x.host, x.desired, x.timeout, x.ui, x.api_restart);
    let peers = x.peers.clone();
    let clients = x.clients().await?;
    let ready = healthy(host, clients, &peers, timeout, ui).await?;
    ui.step(&format!(
        "  healthy: kube-apiserver /livez /readyz, kube-controller-manager /healthz, kube-scheduler /healthz{}",
        if peers.is_empty() { String::new() } else { format!("; /readyz of {}", peers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")) }
    ));
    let api = clients.api.clone();
    leaders(host, &api, desired, timeout, ui).await?;
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
    let units: Vec<&str> = UNITS.iter().map(|u| u.file_name).collect();
    let out = x.host.sh_ok(&systemd::generations(&units)).await?;
    let now = systemd::parse_generations(&out, units.len()).map_err(|e| Error::Server(format!("{}: reading the units' restarts: {e}", x.host.destination)))?;
    let mut found = Vec::new();
    for (u, g) in units.iter().zip(now) {
        let before = x.generations.insert(u.to_string(), g.clone()).unwrap_or_default();
        if before != g {
            found.push((*u, before, g));
        }
    }
    if found.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = found.iter().map(|(u, _, _)| *u).collect();
    let journals = journals(x.host, &names, x.since).await;
    for (u, before, g) in found {
        let what = if g.restarts > before.restarts {
            format!("{u} exited while this run ran and systemd started it again ({} restart(s) by Restart=)", g.restarts - before.restarts)
        } else if g.invocation == before.invocation {
            format!("{u}'s process (pid {}) exited while this run ran; systemd starts it again (Restart=)", before.main_pid)
        } else {
            format!("{u} was started again while this run ran, not by this run")
        };
        let lines = match journals.as_ref().map(|j| j.get(u)) {
            Ok(Some(Ok(lines))) if !lines.is_empty() => lines.clone(),
            Ok(Some(Ok(_))) | Ok(None) => vec!["(no line of its journal since this run began says why)".to_string()],
            Ok(Some(Err(e))) | Err(e) => vec![format!("(its journal could not be read: {e})")],
        };
        x.ui.step(&format!("  warning: {what}"));
        x.outcome.warnings.push(crate::error::Problem::new(what, format!("journalctl -u {u}: the lines below say why it ended")).with_journal(lines));
    }
    Ok(())
}

/// The lines of each of `units`' journals since `since` (server clock)
/// that say why its process ended, in one round trip: each unit's lines
/// base64-encoded (server bytes) after a marker line no journal line can
/// forge (a random token).
async fn journals(host: &Host, units: &[&str], since: Option<f64>) -> Result<BTreeMap<String, Result<Vec<String>, String>>, String> {
    use base64::Engine;
    let token = crate::remote::journal::token();
    let script: String =
        units.iter().map(|u| format!("printf '%s %s %s\\n' {token} {} \"$({} | base64 -w0)\"\n", q(u), crate::remote::journal::crash_script_for(u, since, &token))).collect();
    let out = host.sh_ok(&script).await.map_err(|e| e.to_string())?;
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let mut w = l.splitn(3, ' ');
        if let (Some(k), Some(u), Some(b)) = (w.next(), w.next(), w.next()) {
            if k == token && units.contains(&u) {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|_| format!("the journal of {u} came back garbled"))?;
                m.insert(u.to_string(), crate::remote::journal::crash_lines(&bytes, &token));
            }
        }
    }
    Ok(m)
}
