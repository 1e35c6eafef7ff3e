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
use crate::model::overrides::{desired_units, OverrideSources, Overrides};
use crate::model::version::{render_scheduler_config, scheduler_api_version, Version};
use crate::model::{Source, DIRECTORIES, FILES, SCHEDULER_CONFIG};
use crate::output::Ui;
use crate::remote::lock::Lock;
use crate::remote::probe::{self, Request};
use crate::remote::{Host, SshOptions};
use crate::Error;

pub mod desired;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod reset;
pub mod steps;

pub use report::{Failure, PlanReport, Report, RunReport};

/// What `kubectl bootstrap server` was asked.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub destination: String,
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
}

async fn release(lock: Option<Lock<'_>>) {
    if let Some(l) = lock {
        l.release().await;
    }
}

fn timing(step: &'static str, line: &str, t: &mut Instant) -> steps::StepTiming {
    let s = steps::StepTiming { step, line: line.to_string(), seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0 };
    *t = Instant::now();
    s
}

/// Deploys, starts and proves the control plane on one server (or, with
/// `dry_run`, says how it would).
pub async fn server(o: &ServerOptions, ui: &Ui) -> Result<Report, Failure> {
    let started = Instant::now();
    let mut t = Instant::now();
    let destination = o.destination.as_str();
    let overrides = Overrides::from_sources(&o.overrides)?;
    if !o.assets.is_dir() {
        return Err(Error::Input(format!(
            "--assets {}: not a directory (the jumpbox directory with certs, kubeconfigs and downloads/)",
            crate::output::redact::line(&o.assets.display().to_string())
        ))
        .into());
    }
    let version = match &o.kubernetes_version {
        Some(v) => Some(Version::parse(v).ok_or_else(|| Error::Input(format!("--kubernetes-version {}: expected vMAJOR.MINOR, e.g. v1.32", crate::output::redact::line(v))))?),
        None => None,
    };
    // The API step's credential: --kubeconfig, else $KUBECONFIG, else
    // ASSETS/admin.kubeconfig. It is checked like the assets' kubeconfigs
    // before anything changes. Local work (hashing hundreds of MiB,
    // certificates) runs while we connect.
    let admin_default = o.assets.join("admin.kubeconfig");
    let local = tokio::task::spawn_blocking({
        let (assets, kube, timeout) = (o.assets.clone(), o.kube.clone(), o.timeout);
        move || {
            let (desired, mut problems) = desired::build(&assets, &overrides, version, timeout);
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
    ui.step(&format!("connect  {destination}"));
    let remote = async {
        let host = Host::connect(destination, &o.ssh, o.timeout).await?;
        host.require_root().await?;
        Ok::<_, Error>(host)
    };
    let (local, host) = tokio::join!(local, remote);
    let (desired, mut problems, resolved) = local.expect("local checks do not panic");
    let host = host.map_err(|error| Failure { error, problems: problems.clone() })?;
    // One run per server: wait for any other (a dry run changes nothing and
    // does not wait). The server is read under the lock.
    let lock = if o.dry_run {
        None
    } else {
        match Lock::acquire(&host, o.timeout, ui).await {
            Ok(l) => Some(l),
            Err(error) => return Err(Failure { error, problems }),
        }
    };
    let probe = match probe::read(&host, &Request::bootstrap()).await {
        Ok(p) => p,
        Err(error) => return Err(Failure { error, problems }),
    };
    let mut prepare = vec![timing("connect", "connect, read the server, local checks", &mut t)];
    ui.detail(&format!("server: {} ({}), login {}", probe.arch, if probe.systemd { "systemd" } else { "no systemd" }, if host.sudo { "via sudo -n" } else { "root" }));
    let plan = plan::build(&desired, &probe);
    problems.extend(preflight::remote(&desired, &probe, &plan));
    prepare.push(timing("preflight", "preflight and plan", &mut t));
    if !problems.is_empty() {
        let n = problems.len();
        release(lock).await;
        host.close().await;
        let error = Error::Input(format!("preflight found {n} problem{}; nothing on {destination} was changed", if n == 1 { "" } else { "s" }));
        return Err(Failure { error, problems });
    }
    if let Some(v) = desired.scheduler_version {
        ui.detail(&format!("binaries: Kubernetes {v}; scheduler config rendered as {}", scheduler_api_version(v).unwrap_or("?")));
    }
    if o.dry_run {
        let report = PlanReport::new(destination, &plan, &desired, &probe);
        release(lock).await;
        host.close().await;
        return Ok(Report::Plan(report));
    }
    let config = crate::kube::config::from_resolved(resolved.expect("a kubeconfig problem stops at preflight"), o.timeout).await?;
    let mut x = steps::Exec::new(&host, &desired, lock.as_ref(), config, o.timeout, ui);
    let ran = steps::execute(&plan, &mut x).await;
    let outcome = x.outcome;
    release(lock).await;
    host.close().await;
    ran?;
    let changed = !plan.is_noop() || outcome.rbac.iter().any(|r| r.result != "unchanged");
    Ok(Report::Run(RunReport {
        api_version: report::API_VERSION,
        kind: "Result",
        destination: destination.to_string(),
        dry_run: false,
        changed,
        outcome,
        prepare,
        elapsed_seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    }))
}

/// What `kubectl bootstrap reset` was asked (confirmation is the caller's).
#[derive(Debug, Clone)]
pub struct ResetOptions {
    pub destination: String,
    pub ssh: SshOptions,
    pub timeout: Duration,
}

/// Stops and disables the units, removes what bootstrap placed (under the
/// server's lock). Returns what it did, one line each.
pub async fn reset(o: &ResetOptions, ui: &Ui) -> Result<Vec<String>, Error> {
    let host = Host::connect(&o.destination, &o.ssh, o.timeout).await?;
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
