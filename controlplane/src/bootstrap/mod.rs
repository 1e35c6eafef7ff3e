//! `kubectl bootstrap`: desired state from the assets and manifests,
//! preflight, the plan (plain data), the steps that run it, the report.
//!
//! [`server`] is the whole run: local checks (hashing, certificates, the
//! kubeconfig that will be used) while connecting; the lock; one probe of
//! the server; preflight (every problem, nothing changed); the plan; then
//! either the plan as a report (`--dry-run`) or its steps, run as printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::error::Problem;
use crate::kube::config::KubeOptions;
use crate::local::compress::{self, Codec, Compress, Decision};
use crate::model::overrides::{desired_units, OverrideSources, Overrides};
use crate::model::version::{render_scheduler_config, scheduler_api_version, Version};
use crate::model::{Source, DIRECTORIES, FILES, SCHEDULER_CONFIG};
use crate::output::Ui;
use crate::remote::lock::{self, Lock};
use crate::remote::probe::{self, Probe, Request};
use crate::remote::{Host, SshOptions};
use crate::Error;

pub mod desired;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod reset;
pub mod rollout;
pub mod steps;

pub use report::{Failure, PlanReport, Report, RunReport};

/// What `kubectl bootstrap server` was asked.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// One server, or the servers of a highly available plane (each gets
    /// the same control plane; per-host SSH settings come from ssh_config).
    pub destinations: Vec<String>,
    pub ssh: SshOptions,
    /// The jumpbox directory: certs, kubeconfigs, encryption config, binaries.
    pub assets: PathBuf,
    pub overrides: OverrideSources,
    pub dry_run: bool,
    /// Every wait is bounded by it.
    pub timeout: Duration,
    pub kube: KubeOptions,
    /// The binaries' release, when they cannot run here to say it.
    pub kubernetes_version: Option<String>,
    /// The address clients use for the plane (a load balancer or virtual
    /// IP), `https://HOST[:PORT]`: preflight checks it is a certificate name.
    pub endpoint: Option<String>,
    /// How many servers are connected to, read and staged at once (0: all).
    pub concurrency: usize,
    /// How large files travel: `auto` compresses where it pays.
    pub compress: Compress,
}

async fn release(lock: Option<Lock<'_>>) {
    if let Some(l) = lock {
        l.release().await;
    }
}

async fn release_all(locks: Vec<Option<Lock<'_>>>) {
    futures::future::join_all(locks.into_iter().map(release)).await;
}

async fn close_all(hosts: Vec<Host>) {
    futures::future::join_all(hosts.into_iter().map(Host::close)).await;
}

fn timing(step: &'static str, line: &str, t: &mut Instant) -> steps::StepTiming {
    let s = steps::StepTiming { step, line: line.to_string(), seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0 };
    *t = Instant::now();
    s
}

fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The worst exit an error among several deserves: cannot connect (3),
/// else failed on a server (1), else bad input (2).
fn worst(errors: &[&Error]) -> u8 {
    if errors.iter().any(|e| matches!(e, Error::Connect(_))) {
        3
    } else if errors.iter().any(|e| matches!(e, Error::Server(_))) {
        1
    } else {
        2
    }
}

/// How the large files of `plan` travel to `host`: `--compress` as given
/// (a codec the server lacks is a preflight problem), or with `auto` the
/// codec whose estimate beats sending as is, by the link measured now and
/// a sample of the largest file compressed here.
async fn transfer(c: Compress, desired: &desired::Desired, host: &Host, probe: &Probe, plan: &plan::Plan) -> Result<Decision, Problem> {
    let bytes = plan.large_upload_bytes();
    match c {
        Compress::Use(Codec::None) => Ok(Decision::none("--compress none")),
        Compress::Use(codec) if !probe.has(codec) => Err(Problem::new(
            format!("--compress {}: the server has no {} to decompress with", codec.name(), codec.name()),
            format!("install it on the server (apt install {}), or pass --compress auto", codec.name()),
        )),
        Compress::Use(codec) => Ok(Decision { codec, link_bytes_per_second: None, sample: None, why: format!("--compress {}", codec.name()) }),
        Compress::Auto if bytes == 0 => Ok(Decision::none("no large file to send")),
        Compress::Auto => {
            // zstd beats gzip at both speed and size: gzip only without it.
            let have: Vec<Codec> = [Codec::Zstd, Codec::Gzip].into_iter().filter(|c| probe.has(*c)).take(1).collect();
            if have.is_empty() {
                return Ok(Decision::none("the server has neither zstd nor gzip"));
            }
            let link = match host.measure_link().await {
                Ok(l) => l,
                Err(e) => return Ok(Decision::none(format!("the link could not be measured ({e})"))),
            };
            // The largest upload stands for all (the binaries dominate).
            let largest = plan.uploads().iter().max_by_key(|f| f.bytes).map(|f| &desired.files[f.index]);
            let Some(desired::DesiredFile { content: desired::Content::File(asset), .. }) = largest else {
                return Ok(Decision::none("no large file on disk"));
            };
            let asset = asset.clone();
            let samples =
                tokio::task::spawn_blocking(move || have.into_iter().filter_map(|c| asset.reopen().and_then(|f| compress::sample(c, f)).ok().map(|s| (c, s))).collect::<Vec<_>>())
                    .await
                    .unwrap_or_default();
            Ok(compress::choose(bytes, link, &samples))
        }
    }
}

/// Checks what the command line says before anything connects.
fn validate(o: &ServerOptions) -> Result<Option<Version>, Error> {
    if o.destinations.is_empty() {
        return Err(Error::Input("no server given: kubectl bootstrap server DESTINATION [DESTINATION…]".into()));
    }
    for (i, d) in o.destinations.iter().enumerate() {
        if o.destinations[..i].contains(d) {
            return Err(Error::Input(format!("server {} is given twice: name each server once", crate::output::redact::line(d))));
        }
    }
    if !o.assets.is_dir() {
        return Err(Error::Input(format!(
            "--assets {}: not a directory (the jumpbox directory with certs, kubeconfigs and downloads/)",
            crate::output::redact::line(&o.assets.display().to_string())
        )));
    }
    if let Some(e) = &o.endpoint {
        let ok = e.parse::<http::Uri>().is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some_and(|h| !h.is_empty()) && matches!(u.path(), "" | "/"));
        if !ok || unitfile::control_char(e).is_some() {
            return Err(Error::Input(format!("--endpoint {}: expected https://HOST[:PORT] (the load balancer or virtual IP clients use)", crate::output::redact::line(e))));
        }
    }
    match &o.kubernetes_version {
        Some(v) => Ok(Some(Version::parse(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", crate::output::redact::line(v))))?)),
        None => Ok(None),
    }
}

/// Deploys, starts and proves the control plane on one server or several
/// (or, with `dry_run`, says how it would). With several: local checks
/// once; every server connected, locked, read, planned and preflighted
/// concurrently, and nothing changes anywhere unless every server passes;
/// then the waves of [`rollout::waves`]: staged everywhere at once, a first
/// deploy started everywhere at once, a change to a running plane rolled
/// one server at a time.
pub async fn server(o: &ServerOptions, ui: &Ui) -> Result<Report, Failure> {
    let started = Instant::now();
    let mut t = Instant::now();
    let overrides = Overrides::from_sources(&o.overrides)?;
    let version = validate(o)?;
    let dests = &o.destinations;
    let multi = dests.len() > 1;
    let uis: Vec<Ui> = dests.iter().map(|d| if multi { ui.for_server(d) } else { ui.clone() }).collect();
    let limit = if o.concurrency == 0 { dests.len() } else { o.concurrency.min(dests.len()) };
    // The API step's credential: --kubeconfig, else $KUBECONFIG, else
    // ASSETS/admin.kubeconfig. It is checked like the assets' kubeconfigs
    // before anything changes. Local work (hashing hundreds of MiB,
    // certificates) runs while we connect.
    let admin_default = o.assets.join("admin.kubeconfig");
    let local = tokio::task::spawn_blocking({
        let (assets, kube, timeout, dry_run) = (o.assets.clone(), o.kube.clone(), o.timeout, o.dry_run);
        move || {
            let cache = crate::local::cache::HashCache::open();
            let (desired, mut problems) = desired::build(&assets, &overrides, version, timeout, &cache);
            if !dry_run {
                cache.save();
            }
            let mut extra = Vec::new();
            let resolved = match crate::kube::config::resolve(&kube, Some(&admin_default)) {
                Ok(r) => {
                    let info = crate::pki::kubeconfig_context(&r.kubeconfig, r.context.as_deref());
                    extra.push((format!("the admin kubeconfig ({})", r.shown), info));
                    Some(r)
                }
                Err(e) => {
                    problems.push(Problem::new(format!("the admin kubeconfig: {e}"), "pass --kubeconfig FILE (admin credentials for the RBAC step)"));
                    None
                }
            };
            problems.extend(preflight::local(&desired, extra));
            (desired, problems, resolved)
        }
    });
    ui.step(&format!("connect  {}", dests.join(" ")));
    let connect = futures::stream::iter(dests.iter())
        .map(|d| async move {
            let host = Host::connect(d, &o.ssh, o.timeout).await?;
            host.require_root().await?;
            Ok::<_, Error>(host)
        })
        .buffered(limit)
        .collect::<Vec<_>>();
    let (local, connected) = tokio::join!(local, connect);
    let (desired, mut problems, resolved) = local.expect("local checks do not panic");
    let mut hosts = Vec::new();
    let mut failed: Vec<(usize, Error)> = Vec::new();
    for (i, r) in connected.into_iter().enumerate() {
        match r {
            Ok(h) => hosts.push(h),
            Err(e) => failed.push((i, e)),
        }
    }
    if !multi && !failed.is_empty() {
        return Err(Failure { error: failed.remove(0).1, problems });
    }
    // One run per server: wait for any other (a dry run changes nothing and
    // does not wait). The server is read under the lock, in the lock's own
    // session. Meanwhile, a look at the running plane (health, leaders,
    // RBAC; reads only): a no-op run needs nothing more.
    // A dry run changes nothing, not even the hash cache.
    let script = probe::script(&Request { write_cache: !o.dry_run, ..Request::bootstrap() });
    let index: Vec<usize> = (0..dests.len()).filter(|i| !failed.iter().any(|(f, _)| f == i)).collect();
    let read_all = async {
        let asked = std::time::SystemTime::now();
        let parse = |h: &Host, out: Result<Option<lock::Then>, Error>| -> Result<Probe, Error> {
            match out {
                Ok(Some((text, 0))) => {
                    let mut p = Probe::default();
                    probe::finish(&text, asked, &mut p).map(|_| p).map_err(|e| Error::Server(format!("{}: {e}", h.destination)))
                }
                Ok(Some((text, code))) => {
                    let _ = text;
                    Err(Error::Server(format!("{}: reading the server failed (exit {code})", h.destination)))
                }
                Ok(None) => Err(Error::Server(format!("{}: nothing was read", h.destination))),
                Err(e) => Err(e),
            }
        };
        if o.dry_run {
            // A dry run changes nothing and takes no lock.
            let outs = futures::stream::iter(hosts.iter())
                .map(|h| {
                    let script = &script;
                    async move { h.sh(script).await.map(|o| Some((o.stdout, o.status.code().unwrap_or(1)))) }
                })
                .buffered(limit)
                .collect::<Vec<_>>()
                .await;
            return hosts.iter().zip(outs).map(|(h, out)| (None, parse(h, out))).collect::<Vec<_>>();
        }
        // Every server's lock, all or nothing; each read under its lock in
        // the lock's own session.
        let refs: Vec<&Host> = hosts.iter().collect();
        let host_uis: Vec<Ui> = index.iter().map(|&i| uis[i].clone()).collect();
        match lock::acquire_all(&refs, o.timeout, &host_uis, Some(&script)).await {
            Ok(held) => held.into_iter().zip(&hosts).map(|((l, out), h)| (Some(l), parse(h, Ok(out)))).collect(),
            Err(errors) => {
                let mut errors: Vec<(usize, Error)> = errors;
                hosts
                    .iter()
                    .enumerate()
                    .map(|(k, h)| match errors.iter().position(|(i, _)| *i == k) {
                        Some(at) => (None, Err(errors.remove(at).1)),
                        None => (None, Err(Error::Server(format!("{}: not locked: every server is locked at once, and another could not be", h.destination)))),
                    })
                    .collect()
            }
        }
    };
    let config = match &resolved {
        Some(r) if !o.dry_run => crate::kube::config::from_resolved(r.clone(), o.timeout).await.ok(),
        _ => None,
    };
    let looks = futures::future::join_all(hosts.iter().map(|h| {
        let config = config.clone();
        let desired = &desired;
        async move {
            match config {
                Some(c) => steps::look(h, desired, c).await.ok(),
                None => None,
            }
        }
    }));
    let (read, mut looks) = tokio::join!(read_all, looks);
    let mut locks_ok = Vec::new();
    let mut probes = Vec::new();
    for (k, (l, r)) in read.into_iter().enumerate() {
        locks_ok.push(l);
        match r {
            Ok(p) => probes.push(p),
            Err(e) => {
                probes.push(Probe::default());
                failed.push((index[k], e));
            }
        }
    }
    let locks = locks_ok;
    let names: Vec<String> = index.iter().map(|&i| dests[i].clone()).collect();
    let mut prepare = vec![timing("connect", "connect, read the server, local checks", &mut t)];
    if !multi && !failed.is_empty() {
        release_all(locks).await;
        close_all(hosts).await;
        return Err(Failure { error: failed.remove(0).1, problems });
    }
    for ((h, p), &i) in hosts.iter().zip(&probes).zip(&index) {
        let systemd = match (p.systemd, p.systemd_version) {
            (true, Some(v)) => format!("systemd {v}"),
            (true, None) => "systemd".into(),
            (false, _) => "no systemd".into(),
        };
        uis[i].detail(&format!(
            "server: {} ({systemd}), login {}{}",
            p.arch,
            if h.sudo { "via sudo -n" } else { "root" },
            h.route.as_deref().map(|r| format!(", {r}")).unwrap_or_default()
        ));
    }
    // A first deploy: nothing runs anywhere yet. A change to a running
    // plane of several rolls, apiservers first.
    let first_deploy = probes.iter().all(|p| !crate::model::UNITS.iter().any(|u| p.active(u.file_name)));
    let mode = if multi && !first_deploy { plan::Rollout::ApiserversFirst } else { plan::Rollout::OnePass };
    let mut plans: Vec<plan::Plan> = probes.iter().map(|p| plan::build_for(&desired, p, mode)).collect();
    // How the large files travel to each server: its codecs, its link.
    let decisions = futures::future::join_all(hosts.iter().zip(&probes).zip(&plans).map(|((h, p), plan)| transfer(o.compress, &desired, h, p, plan))).await;
    for ((plan, d), name) in plans.iter_mut().zip(decisions).zip(&names) {
        match d {
            Ok(d) => plan.set_transfer(d),
            Err(x) => problems.push(if multi { x.on(name) } else { x }),
        }
    }
    for ((p, plan), name) in probes.iter().zip(&plans).zip(&names) {
        let found = preflight::remote(&desired, p, plan);
        problems.extend(found.into_iter().map(|x| if multi { x.on(name) } else { x }));
    }
    let servers: Vec<(&str, &Probe)> = names.iter().map(String::as_str).zip(probes.iter()).filter(|(n, _)| !failed.iter().any(|(i, _)| dests[*i] == *n)).collect();
    problems.extend(preflight::cluster(&desired, &servers, o.endpoint.as_deref()));
    prepare.push(timing("preflight", "preflight and plan", &mut t));
    if !problems.is_empty() || !failed.is_empty() {
        release_all(locks).await;
        close_all(hosts).await;
        let n = problems.len() + failed.len();
        let s = if n == 1 { "" } else { "s" };
        let code = worst(&failed.iter().map(|(_, e)| e).collect::<Vec<_>>());
        let mut all: Vec<Problem> = failed.iter().map(|(i, e)| Problem::new(e.to_string(), "").on(&dests[*i])).collect();
        all.append(&mut problems);
        if !multi {
            let error = Error::Input(format!("preflight found {n} problem{s}; nothing on {} was changed", dests[0]));
            return Err(Failure { error, problems: all });
        }
        let msg = format!("{n} problem{s} on {} server(s); nothing on any server was changed", dests.len());
        let error = match (code, failed.is_empty()) {
            (3, _) => Error::Connect(format!("{} of {} servers cannot be reached: {msg}", failed.iter().filter(|(_, e)| matches!(e, Error::Connect(_))).count(), dests.len())),
            (1, false) => Error::Server(msg),
            _ => Error::Input(format!("preflight found {msg}")),
        };
        return Err(Failure { error, problems: all });
    }
    if let Some(v) = desired.scheduler_version {
        ui.detail(&format!("binaries: Kubernetes {v}; scheduler config rendered as {}", scheduler_api_version(v).unwrap_or("?")));
    }
    if multi {
        let addresses: Vec<String> = probes.iter().filter_map(|p| preflight::advertise_address(&desired, p)).collect();
        plans[0].wait_for_endpoints(addresses);
    }
    let waves = rollout::waves(&plans, first_deploy);
    if o.dry_run {
        let reports: Vec<PlanReport> = names.iter().zip(&plans).zip(&probes).map(|((n, plan), p)| PlanReport::new(n, plan, &desired, p)).collect();
        let order: Vec<String> = waves.iter().map(|w| rollout::line(w, &names, &plans)).collect();
        release_all(locks).await;
        close_all(hosts).await;
        if !multi {
            return Ok(Report::Plan(reports.into_iter().next().expect("one server")));
        }
        return Ok(Report::ClusterPlan(report::ClusterPlanReport::new(reports, waves, order, first_deploy)));
    }
    let config = match config {
        Some(c) => c,
        None => crate::kube::config::from_resolved(resolved.expect("a kubeconfig problem stops at preflight"), o.timeout).await?,
    };
    let mut execs: Vec<steps::Exec<'_>> = hosts.iter().zip(&locks).zip(&uis).map(|((h, l), u)| steps::Exec::new(h, &desired, l.as_ref(), config.clone(), o.timeout, u)).collect();
    for ((x, look), p) in execs.iter_mut().zip(looks.iter_mut()).zip(&probes) {
        x.watch(p);
        if let Some(l) = look.take() {
            x.seen(l, p);
        }
    }
    let ran = run_waves(&mut execs, &plans, &waves, &names, limit, ui).await;
    let outcomes: Vec<steps::Outcome> = execs.into_iter().map(|x| x.outcome).collect();
    release_all(locks).await;
    close_all(hosts).await;
    ran?;
    let elapsed = seconds(started.elapsed());
    let mut runs: Vec<RunReport> = names
        .iter()
        .zip(outcomes)
        .zip(&plans)
        .map(|((n, outcome), plan)| RunReport {
            api_version: report::API_VERSION,
            kind: "Result",
            destination: n.clone(),
            dry_run: false,
            changed: !plan.is_noop() || outcome.rbac.iter().any(|r| r.result != "unchanged"),
            outcome,
            prepare: prepare.clone(),
            elapsed_seconds: elapsed,
        })
        .collect();
    if !multi {
        return Ok(Report::Run(runs.remove(0)));
    }
    Ok(Report::ClusterRun(report::ClusterRunReport::new(runs, waves, first_deploy, elapsed)))
}

/// Runs the waves. With several servers each server's wait also waits for
/// every other server's /readyz. A failure stops the run there: what was
/// staged on servers not yet reached is removed, and the error names the
/// server and those left as they were.
async fn run_waves(execs: &mut [steps::Exec<'_>], plans: &[plan::Plan], waves: &[rollout::Wave], names: &[String], limit: usize, ui: &Ui) -> Result<(), Failure> {
    let mut apis = Vec::new();
    if execs.len() > 1 {
        let opened = futures::future::join_all(execs.iter_mut().map(|x| async move { x.clients().await.map(|c| c.api.clone()) })).await;
        for (r, n) in opened.into_iter().zip(names) {
            apis.push(r.map_err(|e| Failure::from(Error::Connect(format!("{n}: {e}"))))?);
        }
    }
    let mut reached = vec![false; execs.len()];
    for w in waves {
        if execs.len() > 1 {
            ui.step(&format!("== {}", rollout::line(w, names, plans)));
            // A server rolled alone waits for every other server's /readyz
            // too; servers waiting together (a first deploy, no-op passes)
            // each for their own health: a server broken before this run
            // must not hold up the one pass that fixes it.
            for (i, x) in execs.iter_mut().enumerate() {
                // Staging several servers at once: one large file each at a time.
                x.lanes = if w.servers.len() > 1 { 1 } else { steps::PARALLEL_LARGE };
                x.peers =
                    if w.servers == [i] { names.iter().zip(&apis).enumerate().filter(|(j, _)| *j != i).map(|(_, (n, a))| (n.clone(), a.clone())).collect() } else { Vec::new() };
            }
        }
        let errors: Vec<(usize, Error)> = {
            let runs = execs.iter_mut().enumerate().filter(|(i, _)| w.servers.contains(i)).map(|(i, x)| {
                let actions = plans[i].part(w.part);
                async move { (i, steps::run_actions(actions, x).await) }
            });
            futures::stream::iter(runs).buffer_unordered(limit.max(1)).filter_map(|(i, r)| async move { r.err().map(|e| (i, e)) }).collect().await
        };
        if !matches!(w.part, plan::Part::Prepare) {
            for &i in &w.servers {
                reached[i] = true;
            }
        }
        if let Some((i, e)) = errors.into_iter().next() {
            if execs.len() == 1 {
                return Err(e.into());
            }
            let untouched: Vec<String> = (0..execs.len()).filter(|j| !reached[*j]).map(|j| names[j].clone()).collect();
            for (j, x) in execs.iter_mut().enumerate() {
                if !reached[j] {
                    x.discard_staged().await;
                }
            }
            let left = if untouched.is_empty() { String::new() } else { format!("\nnot reached, as they were: {}", untouched.join(", ")) };
            let msg = format!("the rollout stopped at {}: {e}{left}\nfix the cause and run again: the next run finishes the rollout", names[i]);
            return Err(match e {
                Error::Connect(_) => Error::Connect(msg),
                _ => Error::Server(msg),
            }
            .into());
        }
    }
    Ok(())
}

/// What `kubectl bootstrap reset` was asked (confirmation is the caller's).
#[derive(Debug, Clone)]
pub struct ResetOptions {
    pub destinations: Vec<String>,
    pub ssh: SshOptions,
    pub timeout: Duration,
}

/// Stops and disables the units, removes what bootstrap placed (under each
/// server's lock), on every server at once. Returns, per server, what it
/// did (one line each) or why it could not.
pub async fn reset(o: &ResetOptions, ui: &Ui) -> Vec<(String, Result<Vec<String>, Error>)> {
    async fn one(d: &str, o: &ResetOptions, ui: &Ui) -> Result<Vec<String>, Error> {
        let host = Host::connect(d, &o.ssh, o.timeout).await?;
        host.require_root().await?;
        let done = match Lock::acquire(&host, o.timeout, ui).await {
            Ok(lock) => {
                let done = reset::reset(&host).await;
                lock.release().await;
                done
            }
            Err(e) => Err(e),
        };
        host.close().await;
        done
    }
    let multi = o.destinations.len() > 1;
    let results = futures::future::join_all(o.destinations.iter().map(|d| async move { one(d, o, &if multi { ui.for_server(d) } else { ui.clone() }).await })).await;
    o.destinations.iter().cloned().zip(results).collect()
}

/// `kubectl bootstrap manifests [NAME]`: the layout, or one compiled-in file
/// as bootstrap would install it (overrides applied; the scheduler config
/// rendered for `version`).
pub fn manifests(name: Option<&str>, o: &Overrides, version: Option<Version>) -> Result<String, Error> {
    let units = desired_units(o);
    let Some(name) = name else {
        let mut out = String::new();
        for d in DIRECTORIES {
            out.push_str(&format!("{:04o}  {}/\n", d.mode, d.path));
        }
        for f in FILES {
            let from = match f.source {
                Source::Asset(c) => format!("asset {}", c.join(" | ")),
                Source::Manifest { path, .. } => format!("manifest {path}"),
            };
            let restarts = if f.restarts.is_empty() { String::new() } else { format!("  (restarts {})", f.restarts.join(", ")) };
            out.push_str(&format!("{:04o}  {}:{}  {}  <- {from}{restarts}\n", f.mode, f.owner, f.group, f.dest));
        }
        return Ok(out);
    };
    if let Some(d) = units.iter().find(|d| d.spec.file_name == name || d.spec.component == name) {
        return Ok(d.text.clone());
    }
    if SCHEDULER_CONFIG.manifest.ends_with(name) {
        return match version {
            None => Ok(SCHEDULER_CONFIG.text.to_string()),
            Some(v) => render_scheduler_config(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {v}: older than v1.19, which no scheduler config here fits"))),
        };
    }
    let known: Vec<_> = units.iter().map(|d| d.spec.file_name).chain([SCHEDULER_CONFIG.manifest.rsplit('/').next().unwrap_or_default()]).collect();
    Err(Error::Input(format!("no compiled-in manifest named `{}`; known: {}", crate::output::redact::line(name), known.join(", "))))
}
