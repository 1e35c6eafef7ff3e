//! `kubectl bootstrap`: desired state from the assets and manifests,
//! preflight, the plan (plain data), the steps that run it, the report.
//!
//! [`server`] is the whole run: local checks (hashing, certificates, the
//! kubeconfig that will be used) while connecting; the lock; one probe of
//! the server; preflight (every problem, nothing changed); the plan; then
//! either the plan as a report (`--dry-run`) or its steps, run as printed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::Problem;
use crate::kube::config::KubeOptions;
use crate::local::compress::Compress;
use crate::model::overrides::{desired_units, OverrideSources, Overrides};
use crate::model::version::{render_scheduler_config, scheduler_api_version, Version};
use crate::model::{Source, ADMIN_KUBECONFIG, DIRECTORIES, FILES, SCHEDULER_CONFIG};
use crate::output::Ui;
use crate::remote::lock::Lock;
use crate::remote::{Host, SshOptions};
use crate::Error;

pub mod certs;
pub mod desired;
pub mod phase;
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
    pub endpoint: Option<crate::model::Endpoint>,
    /// How many servers are connected to, read and staged at once (0: all).
    pub concurrency: usize,
    /// How large files travel: `auto` compresses where it pays.
    pub compress: Compress,
    /// Preflight problems that become warnings (`--ignore-preflight-errors`).
    pub ignore: preflight::Ignore,
}

impl ServerOptions {
    /// How many servers are connected to, read and staged at once.
    pub fn concurrency(&self) -> usize {
        match self.concurrency {
            0 => self.destinations.len().max(1),
            n => n.min(self.destinations.len()).max(1),
        }
    }
}

fn timing(step: &'static str, line: &str, t: &mut Instant) -> steps::StepTiming {
    let s = steps::StepTiming { step, line: line.to_string(), seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0 };
    *t = Instant::now();
    s
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
    match &o.kubernetes_version {
        Some(v) => Ok(Some(Version::parse(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", crate::output::redact::line(v))))?)),
        None => Ok(None),
    }
}

/// What is checked here, while the servers are connected to: the desired
/// state (hashing hundreds of MiB, certificates) and the API step's
/// credential (--kubeconfig, else $KUBECONFIG, else ASSETS/admin.kubeconfig),
/// checked like the assets' kubeconfigs before anything changes.
struct Local {
    desired: desired::Desired,
    problems: Vec<Problem>,
    admin: Option<crate::kube::config::Resolved>,
}

fn local(o: &ServerOptions, overrides: Overrides, version: Option<Version>) -> Local {
    let cache = crate::local::cache::HashCache::open();
    let (desired, mut problems) = desired::build(&o.assets, &overrides, version, o.timeout, &cache);
    // A dry run changes nothing, not even the local hash cache.
    if !o.dry_run {
        cache.save();
    }
    let mut extra = Vec::new();
    let admin = match crate::kube::config::resolve(&o.kube, Some(&o.assets.join(ADMIN_KUBECONFIG))) {
        Ok(r) => {
            extra.push((format!("the admin kubeconfig ({})", r.shown), crate::pki::kubeconfig_context(&r.kubeconfig, r.context.as_deref())));
            Some(r)
        }
        Err(e) => {
            problems.push(Problem::check("admin-kubeconfig", format!("the admin kubeconfig: {e}"), "pass --kubeconfig FILE (admin credentials for the RBAC step)"));
            None
        }
    };
    problems.extend(preflight::local(&desired, extra));
    Local { desired, problems, admin }
}

/// Each read server's one line: its platform, its login and the route.
fn describe(reads: &[phase::Read<'_>]) {
    for r in reads {
        let p = &r.probe;
        let systemd = match (p.systemd, p.systemd_version) {
            (true, Some(v)) => format!("systemd {v}"),
            (true, None) => "systemd".into(),
            (false, _) => "no systemd".into(),
        };
        let h = &r.server.host;
        let login = if h.sudo { "via sudo -n" } else { "root" };
        r.server.ui.detail(&format!("server: {} ({systemd}), login {login}{}", p.arch, h.route.as_deref().map(|r| format!(", {r}")).unwrap_or_default()));
    }
}

/// Deploys, starts and proves the control plane on one server or several
/// (or, with `dry_run`, says how it would), phase by phase over every
/// server ([`phase`]): local checks while connecting; every server locked
/// and read; planned; preflighted, and nothing changes anywhere unless
/// every server passes; then the waves of [`rollout::waves`]: staged
/// everywhere at once, a first deploy started everywhere at once, a
/// change to a running plane rolled one server at a time.
pub async fn server(o: &ServerOptions, ui: &Ui) -> Result<Report, Failure> {
    let started = Instant::now();
    let mut t = Instant::now();
    let overrides = Overrides::from_sources(&o.overrides)?;
    let version = validate(o)?;
    let checks = tokio::task::spawn_blocking({
        let o = o.clone();
        move || local(&o, overrides, version)
    });
    ui.step(&format!("connect  {}", o.destinations.join(" ")));
    let (checks, (connected, mut dropped)) = tokio::join!(checks, phase::connect::run(o, ui));
    let Local { desired, mut problems, admin } = match checks {
        Ok(l) => l,
        Err(e) => {
            futures::future::join_all(connected.into_iter().map(|c| c.host.close())).await;
            return Err(Error::task("the local checks stopped", e).into());
        }
    };
    let api = match &admin {
        Some(r) if !o.dry_run => crate::kube::config::from_resolved(r.clone(), o.timeout).await.ok(),
        _ => None,
    };
    let (reads, lost) = phase::read::run(&connected, o, &desired, api.as_ref()).await;
    dropped.extend(lost);
    describe(&reads);
    let mut prepare = vec![timing("connect", "connect, read the server, local checks", &mut t)];
    let phase::plan::Planned { mut targets, first_deploy, problems: found } = phase::plan::run(reads, &desired, o).await;
    problems.extend(found);
    problems.extend(phase::preflight::run(&targets, &desired, o));
    let (problems, warnings) = preflight::sort(problems, &o.ignore);
    prepare.push(timing("preflight", "preflight and plan", &mut t));
    let report = if !problems.is_empty() || !dropped.is_empty() {
        Err(phase::stopped(dropped, problems, &o.destinations))
    } else {
        if let Some(v) = desired.scheduler_version {
            ui.detail(&format!("binaries: Kubernetes {v}; scheduler config rendered as {}", scheduler_api_version(v).unwrap_or("?")));
        }
        if o.dry_run {
            Ok(phase::apply::dry_run(&targets, &desired, first_deploy))
        } else {
            let config = match api {
                Some(c) => Ok(c),
                None => crate::kube::config::from_resolved(admin.expect("a kubeconfig problem stops at preflight"), o.timeout).await.map_err(Failure::from),
            };
            match config {
                Ok(c) => phase::apply::run(&mut targets, &desired, c, o, ui, first_deploy, phase::apply::Before { started, prepare }).await,
                Err(f) => Err(f),
            }
        }
    };
    phase::release(targets.into_iter().map(|t| t.lock)).await;
    futures::future::join_all(connected.into_iter().map(|c| c.host.close())).await;
    report.map(|r| r.with_warnings(warnings))
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
            let restarts = if f.restarts.is_empty() { String::new() } else { format!("  (restarts {})", f.restarts.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")) };
            out.push_str(&format!("{:04o}  {}:{}  {}  <- {from}{restarts}\n", f.mode, f.owner, f.group, f.dest));
        }
        return Ok(out);
    };
    if let Some(d) = units.iter().find(|d| d.spec.file_name == name || d.spec.name == name) {
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
