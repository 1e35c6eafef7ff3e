//! `kubectl cpcheck`: small checks with stable ids, one file per group
//! (`checks/`), the CIS controls as data (`cis`), run concurrently over one
//! SSH connection and one API client, each bounded; reports as a table,
//! JSON (docs/cpcheck.schema.json) or JUnit (`report`).

pub mod checks;
pub mod cis;
pub mod report;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::kube::config::KubeOptions;
use crate::kube::health;
use crate::model::overrides::{desired_units, DesiredUnit, OverrideSources, Overrides};
use crate::model::{FileKind, Flags, Version, FILES, OUTPUT_FLAGS, UNITS};
use crate::remote::probe::{self, Probe, Request};
use crate::remote::{Host, SshOptions};
use crate::Error;

pub use report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
}

/// Details carry text from the server (unit lines, process names, answers):
/// every constructor escapes control characters, so no output format ever
/// receives them raw.
impl Finding {
    fn new(status: Status, d: impl Into<String>, fix: Option<String>) -> Self {
        Finding { status, detail: crate::output::redact::line(&d.into()), remediation: fix.map(|f| crate::output::redact::line(&f)) }
    }
    pub fn pass(d: impl Into<String>) -> Self {
        Self::new(Status::Pass, d, None)
    }
    pub fn warn(d: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Status::Warn, d, Some(fix.into()))
    }
    pub fn fail(d: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(Status::Fail, d, Some(fix.into()))
    }
    pub fn skip(d: impl Into<String>) -> Self {
        Self::new(Status::Skip, d, None)
    }
}

/// A check's result as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub group: &'static str,
    pub title: String,
    #[serde(flatten)]
    pub finding: Finding,
}

pub type HostFn = Box<dyn Fn(&Ctx, &Probe) -> Finding + Send + Sync>;
pub type ApiFn = Box<dyn for<'a> Fn(&'a Ctx, &'a kube::Client) -> BoxFuture<'a, Finding> + Send + Sync>;
pub type AsyncFn = Box<dyn for<'a> Fn(&'a Ctx) -> BoxFuture<'a, Finding> + Send + Sync>;

pub enum Runner {
    /// Reaches the server by itself (its own SSH tunnel).
    Async(AsyncFn),
    /// Reads the probe.
    Host(HostFn),
    /// Talks to the API (and may read the probe when there is one).
    Api(ApiFn),
}

pub struct Check {
    pub id: String,
    pub group: &'static str,
    pub title: String,
    pub run: Runner,
}

/// What the checks read.
pub struct Ctx {
    pub strict: bool,
    /// The units as the manifests plus overrides would install them.
    pub desired: Vec<DesiredUnit>,
    /// What the probe read, or why there is nothing.
    pub host: Result<Probe, String>,
    /// The API client, or why there is none.
    pub api: Result<kube::Client, String>,
    pub api_url: String,
    /// /healthz clients of the controller-manager and scheduler (over SSH).
    pub health: BTreeMap<&'static str, Result<kube::Client, String>>,
    /// `--timeout`: no check waits longer.
    pub timeout: Duration,
}

impl Ctx {
    pub fn host(&self) -> Option<&Probe> {
        self.host.as_ref().ok()
    }

    #[cfg(test)]
    pub fn for_tests(strict: bool) -> Ctx {
        Ctx {
            strict,
            desired: desired_units(&Overrides::default()),
            host: Err("no host in this test".into()),
            api: Err("no API in this test".into()),
            api_url: String::new(),
            health: BTreeMap::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

pub const GROUPS: &[&str] = &["host", "ports", "health", "api", "consistency", "rbac", "leader", "cis"];

/// How long one check may take at most (less when `--timeout` is shorter):
/// an apiserver whose etcd is down accepts requests and never answers them.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded(f: BoxFuture<'_, Finding>, limit: Duration) -> Finding {
    match tokio::time::timeout(limit, f).await {
        Ok(found) => found,
        Err(_) => Finding::fail(
            format!("no answer within {}s", limit.as_secs()),
            "the apiserver accepts requests but does not answer: check etcd (systemctl status etcd) and journalctl -u kube-apiserver",
        ),
    }
}

/// Runs `checks` concurrently, each bounded by `min(CHECK_TIMEOUT, --timeout)`;
/// `skip` ids are reported as SKIP.
pub async fn run(ctx: &Ctx, checks: &[Check], skip: &[String]) -> Vec<CheckResult> {
    let limit = ctx.timeout.min(CHECK_TIMEOUT);
    let futs = checks.iter().map(|c| async move {
        let finding = if skip.iter().any(|s| s == &c.id) {
            Finding::skip("skipped by --skip")
        } else {
            match &c.run {
                Runner::Host(f) => match &ctx.host {
                    Ok(h) => f(ctx, h),
                    Err(why) => Finding::skip(why.clone()),
                },
                Runner::Async(f) => bounded(f(ctx), limit).await,
                Runner::Api(f) => match &ctx.api {
                    Ok(client) => bounded(f(ctx, client), limit).await,
                    Err(why) => Finding::skip(why.clone()),
                },
            }
        };
        CheckResult { id: c.id.clone(), group: c.group, title: c.title.clone(), finding }
    });
    futures::future::join_all(futs).await
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub skipped: usize,
}

pub fn summarize(results: &[CheckResult]) -> Summary {
    let mut s = Summary::default();
    for r in results {
        match r.finding.status {
            Status::Pass => s.passed += 1,
            Status::Warn => s.warned += 1,
            Status::Fail => s.failed += 1,
            Status::Skip => s.skipped += 1,
        }
    }
    s
}

/// Every check of every group and every CIS benchmark here, in report order.
pub fn catalog() -> Vec<Check> {
    let mut v = checks::registry();
    v.extend(cis::every_check());
    v
}

/// Checks `--only`/`--skip` name: groups or ids. Unknown ones are bad input.
pub fn select(only: &[String], skip: &[String]) -> Result<Vec<Check>, Error> {
    let all = catalog();
    for o in only {
        if !GROUPS.contains(&o.as_str()) && !all.iter().any(|c| &c.id == o) {
            return Err(Error::Input(format!(
                "--only {}: unknown group or check id; groups: {} (kubectl cpcheck --list shows every id)",
                crate::output::redact::line(o),
                GROUPS.join(", ")
            )));
        }
    }
    for s in skip {
        if !all.iter().any(|c| &c.id == s) {
            return Err(Error::Input(format!("--skip {}: no check has that id (kubectl cpcheck --list shows them)", crate::output::redact::line(s))));
        }
    }
    Ok(if only.is_empty() { all } else { all.into_iter().filter(|c| only.iter().any(|o| o == c.group || o == &c.id)).collect() })
}

/// The paths, certificates, kubeconfigs and encryption config the installed
/// units (else the manifests) reference: what cpcheck's second request reads.
pub fn referenced(p: &Probe) -> Request {
    let mut req = Request::default();
    let mut certs: Vec<String> = FILES.iter().filter(|f| f.kind == FileKind::Certificate).map(|f| f.dest.to_string()).collect();
    for u in UNITS {
        let flags = p.units.get(u.file_name).and_then(|i| i.text.as_deref()).and_then(|t| Flags::from_unit(t, u.file_name).ok()).unwrap_or_default();
        for (name, value) in flags.iter() {
            let Some(v) = value else { continue };
            for part in v.split(',').filter(|p| p.starts_with('/')) {
                if !OUTPUT_FLAGS.contains(&name) && !req.paths.iter().any(|p| p == part) && !FILES.iter().any(|f| f.dest == part) {
                    req.paths.push(part.to_string());
                }
                if part.ends_with(".crt") && !certs.iter().any(|c| c == part) {
                    certs.push(part.to_string());
                }
            }
            if name == "encryption-provider-config" {
                req.encryption = Some(v.to_string());
            }
        }
    }
    req.certs = certs;
    req.kubeconfigs = FILES.iter().filter(|f| f.kind == FileKind::Kubeconfig).map(|f| f.dest.to_string()).collect();
    req
}

/// Reads the server for the checks: one request, then one for what the
/// installed units reference.
pub async fn gather(host: &Host) -> Result<Probe, Error> {
    let mut p = probe::read(host, &Request::cpcheck()).await?;
    let second = referenced(&p);
    probe::run(host, &second, &mut p).await?;
    Ok(p)
}

/// What `kubectl cpcheck` was asked.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Check the host too, over SSH.
    pub ssh_destination: Option<String>,
    pub ssh: SshOptions,
    pub kube: KubeOptions,
    pub overrides: OverrideSources,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub strict: bool,
    pub timeout: Duration,
}

fn is_loopback(config: &kube::Config) -> bool {
    config.cluster_url.host().map(|h| h.trim_matches(['[', ']'])).is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// The server's Kubernetes version: the installed apiserver binary's, else
/// the API's, else the manifests'.
async fn server_version(ctx: &Ctx) -> (Version, &'static str) {
    if let Some(v) = ctx.host().and_then(|h| h.units.get(&checks::unit_file(crate::model::APISERVER))).and_then(|u| u.binary_version.as_deref()).and_then(Version::parse) {
        return (v, "the installed kube-apiserver");
    }
    if let Ok(c) = &ctx.api {
        if let Ok(Ok(info)) = tokio::time::timeout(ctx.timeout.min(CHECK_TIMEOUT), c.apiserver_version()).await {
            if let Some(v) = Version::parse(&info.git_version) {
                return (v, "the API's /version");
            }
        }
    }
    (Version::parse(crate::model::KUBERNETES_VERSION).unwrap_or(Version { major: 1, minor: 32 }), "the manifests (the server said no version)")
}

/// Runs the checks `o` asks for and reports them.
pub async fn check(o: &CheckOptions) -> Result<Report, Error> {
    let overrides = Overrides::from_sources(&o.overrides)?;
    let registry = select(&o.only, &o.skip)?;
    // Credentials: an explicit --kubeconfig or --context that cannot be used is bad input;
    // no kubeconfig at all means the API checks are skipped.
    let explicit = o.kube.kubeconfig.is_some() || o.kube.context.is_some() || std::env::var_os("KUBECONFIG").is_some();
    let config = match crate::kube::config::config(&o.kube, None, o.timeout).await {
        Ok(c) => Ok(c),
        Err(e) if explicit => return Err(e),
        Err(e) => Err(format!("no API credentials ({e})")),
    };
    let host = match &o.ssh_destination {
        Some(d) => Some(Host::connect(d, &o.ssh, o.timeout).await?),
        None => None,
    };
    // The probe, the API client and the health tunnels come up concurrently.
    let read_host = async {
        match &host {
            Some(h) => gather(h).await.map_err(|e| e.to_string()),
            None => Err("no --ssh DESTINATION: host checks need the server".to_string()),
        }
    };
    let api_url = config.as_ref().map(|c| c.cluster_url.to_string()).unwrap_or_default();
    let connect_api = async {
        match (config, &host) {
            (Ok(c), Some(h)) if is_loopback(&c) => {
                let port = c.cluster_url.port_u16().unwrap_or(443);
                health::api_client(h, c, port).await.map_err(|e| e.to_string())
            }
            (Ok(c), _) => kube::Client::try_from(c).map_err(|e| format!("cannot build an API client: {e}")),
            (Err(e), _) => Err(e),
        }
    };
    // The controller-manager and scheduler are reached at their compiled-in
    // (plus overrides) port and bind address.
    let desired = desired_units(&overrides);
    let open_health = async {
        let mut m = BTreeMap::new();
        if let Some(h) = &host {
            for u in desired.iter().filter(|u| u.spec.component != crate::model::APISERVER) {
                let addr = health::reach_address(u.bind_address());
                m.insert(u.spec.component, health::anonymous_client(h, addr, u.serving_port()).await.map_err(|e| e.to_string()));
            }
        }
        m
    };
    let (host_data, api, health_clients) = tokio::join!(read_host, connect_api, open_health);
    let ctx = Ctx { strict: o.strict, desired, host: host_data, api, api_url, health: health_clients, timeout: o.timeout };
    // The CIS controls of the benchmark kube-bench picks for this version;
    // another benchmark's control named by --only is reported as SKIP.
    let (version, from) = server_version(&ctx).await;
    let benchmark = cis::benchmark_for(version);
    let here = |id: &str| benchmark.is_some_and(|b| id.starts_with(&format!("{b}/")));
    let (mut run_these, other): (Vec<Check>, Vec<Check>) = registry.into_iter().partition(|c| c.group != "cis" || here(&c.id));
    let mut results = run(&ctx, &run_these, &o.skip).await;
    for c in other.iter().filter(|c| o.only.iter().any(|x| x == &c.id)) {
        let why = match benchmark {
            Some(b) => format!("belongs to another benchmark: Kubernetes {version} is checked against {b}"),
            None => format!("no CIS benchmark for Kubernetes {version}"),
        };
        results.push(CheckResult { id: c.id.clone(), group: c.group, title: c.title.clone(), finding: Finding::skip(why) });
    }
    run_these.clear();
    if let Some(h) = host {
        h.close().await;
    }
    let cis = report::CisInfo {
        benchmark: benchmark.map(str::to_string),
        kubernetes_version: version.to_string(),
        version_from: from.to_string(),
        in_table: benchmark.is_some_and(|b| cis::BENCHMARKS.iter().any(|x| x.name == b)),
    };
    Ok(Report::new(results, cis))
}
