//! `kubectl cpcheck`: small checks with stable ids, one file per group
//! (`checks/`), the CIS controls as data (`cis`), run concurrently over one
//! SSH connection and one API client, each bounded; reports as a table,
//! JSON (docs/cpcheck.schema.json) or JUnit (`report`).

pub mod checks;
pub mod cis;
pub mod report;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
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
    /// The server's own words behind it (journal lines), escaped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<String>,
}

/// Details carry text from the server (unit lines, process names, answers):
/// every constructor escapes control characters, so no output format ever
/// receives them raw.
impl Finding {
    fn new(status: Status, d: impl Into<String>, fix: Option<String>) -> Self {
        Finding { status, detail: crate::output::redact::line(&d.into()), remediation: fix.map(|f| crate::output::redact::line(&f)), journal: Vec::new() }
    }
    /// The same finding, with the journal lines that show it (escaped here too).
    pub fn with_journal(mut self, lines: &[String]) -> Self {
        self.journal = lines.iter().map(|l| crate::output::redact::line(l)).collect();
        self
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
    /// The server a host check ran on, when several were checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
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
    /// What the probe read (or why there is nothing), once it has: checks
    /// that need no host start while the server is still being read.
    pub host: ProbeSlot,
    /// The API client, or why there is none.
    pub api: Result<kube::Client, String>,
    pub api_url: String,
    /// /healthz clients of the controller-manager and scheduler (over SSH).
    pub health: BTreeMap<&'static str, Result<kube::Client, String>>,
    /// `--timeout`: no check waits longer.
    pub timeout: Duration,
    /// Every server, for the cluster checks (empty unless several).
    pub servers: Vec<ServerView>,
    /// `--endpoint` and a client for it.
    pub endpoint: Option<(String, Result<kube::Client, String>)>,
}

/// One server of several as the cluster checks see it.
pub struct ServerView {
    pub name: String,
    /// What was read there, or why nothing was (cannot connect…).
    pub probe: Result<Probe, String>,
    /// A client of its own apiserver (through its SSH connection).
    pub api: Result<kube::Client, String>,
}

/// The probe's result as it arrives, shared by every check.
pub type ProbeSlot = futures::future::Shared<BoxFuture<'static, Result<Arc<Probe>, String>>>;

/// A slot that already holds `r`.
pub fn ready(r: Result<Probe, String>) -> ProbeSlot {
    futures::FutureExt::shared(futures::FutureExt::boxed(futures::future::ready(r.map(Arc::new))))
}

impl Ctx {
    /// What the probe read, if it has finished (and succeeded).
    pub fn host(&self) -> Option<&Probe> {
        self.host.peek().and_then(|r| r.as_ref().ok()).map(|a| a.as_ref())
    }

    /// What the probe read, waiting for it.
    pub async fn probe(&self) -> Result<Arc<Probe>, String> {
        self.host.clone().await
    }

    #[cfg(test)]
    pub fn for_tests(strict: bool) -> Ctx {
        Ctx {
            strict,
            desired: desired_units(&Overrides::default()),
            host: ready(Err("no host in this test".into())),
            api: Err("no API in this test".into()),
            api_url: String::new(),
            health: BTreeMap::new(),
            timeout: Duration::from_secs(5),
            servers: Vec::new(),
            endpoint: None,
        }
    }
}

pub const GROUPS: &[&str] = &["host", "ports", "health", "api", "consistency", "rbac", "leader", "cluster", "cis"];

/// Groups whose checks run on every server (with several): what they read
/// is the server's own. The others are about the cluster and run once.
pub const PER_SERVER: &[&str] = &["host", "ports", "health", "consistency", "cis"];

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
    let refs: Vec<&Check> = checks.iter().collect();
    run_refs(ctx, &refs, skip).await
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
    v.extend(checks::cluster_checks());
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
    referenced_by(|u| p.units.get(u.file_name).and_then(|i| i.text.as_deref()).and_then(|t| Flags::from_unit(t, u.file_name).ok()).unwrap_or_default())
}

/// What units with these flags reference (see [`referenced`]).
pub fn referenced_by(flags_of: impl Fn(&crate::model::UnitSpec) -> Flags) -> Request {
    let mut req = Request::default();
    let mut certs: Vec<String> = FILES.iter().filter(|f| f.kind == FileKind::Certificate).map(|f| f.dest.to_string()).collect();
    for u in UNITS {
        let flags = flags_of(u);
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

/// What `kubectl cpcheck` was asked.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Check the host(s) too, over SSH: one server, or every server of an
    /// HA plane (host checks then run on each, cluster checks across them).
    pub ssh_destinations: Vec<String>,
    pub ssh: SshOptions,
    pub kube: KubeOptions,
    pub overrides: OverrideSources,
    pub only: Vec<String>,
    pub skip: Vec<String>,
    pub strict: bool,
    pub timeout: Duration,
    /// The plane's load-balanced address, `https://HOST[:PORT]`.
    pub endpoint: Option<String>,
}

fn is_loopback(config: &kube::Config) -> bool {
    config.cluster_url.host().map(|h| h.trim_matches(['[', ']'])).is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// The server's Kubernetes version: the installed apiserver binary's, else
/// the API's, else the manifests'.
async fn server_version(ctx: &Ctx) -> (Version, &'static str) {
    let _ = ctx.probe().await;
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

/// What one server gives the checks: what was read there, an API client
/// (through its SSH connection when `tunnel` or the kubeconfig names a
/// loopback address), the controller-manager's and scheduler's /healthz.
struct Opened {
    probe: ProbeSlot,
    api: Result<kube::Client, String>,
    health: BTreeMap<&'static str, Result<kube::Client, String>>,
}

async fn open(host: &Arc<Host>, config: &Result<kube::Config, String>, desired: &[DesiredUnit], tunnel: bool, key: Option<&probe::HmacKey>) -> Opened {
    // The probe runs on its own (checks that need no host start before it
    // ends); the API client and the health tunnels come up meanwhile.
    // One round trip: what the units as the manifests (and overrides) say
    // reference is read with the rest; only what the installed units
    // reference beyond that (drift) takes a second.
    let (host_for_probe, desired_for_probe, key_for_probe) = (host.clone(), desired.to_vec(), key.cloned());
    let read_host = async move {
        let (host, desired, key) = (&host_for_probe, &desired_for_probe, key_for_probe);
        let guess = referenced_by(|u| desired.iter().find(|d| d.spec.file_name == u.file_name).map(|d| d.flags.clone()).unwrap_or_default());
        let first = Request {
            etcd_members: key.is_some(),
            fingerprints: key.clone(),
            paths: guess.paths.clone(),
            certs: guess.certs.clone(),
            kubeconfigs: guess.kubeconfigs.clone(),
            encryption: guess.encryption.clone(),
            ..Request::cpcheck()
        };
        let mut p = probe::read(host, &first).await?;
        let need = referenced(&p);
        let more = |have: &[String], want: &[String]| want.iter().filter(|w| !have.contains(w)).cloned().collect::<Vec<_>>();
        let second = Request {
            paths: more(&guess.paths, &need.paths),
            certs: more(&guess.certs, &need.certs),
            kubeconfigs: more(&guess.kubeconfigs, &need.kubeconfigs),
            encryption: need.encryption.clone().filter(|e| guess.encryption.as_ref() != Some(e)),
            ..Default::default()
        };
        if !second.paths.is_empty() || !second.certs.is_empty() || !second.kubeconfigs.is_empty() || second.encryption.is_some() {
            probe::run(host, &second, &mut p).await?;
        }
        Ok::<_, Error>(p)
    };
    let connect_api = async {
        match config {
            Ok(c) if tunnel || is_loopback(c) => {
                let port = if is_loopback(c) {
                    c.cluster_url.port_u16().unwrap_or(443)
                } else {
                    desired.iter().find(|u| u.spec.component == crate::model::APISERVER).map(|u| u.serving_port()).unwrap_or(6443)
                };
                health::api_client(host, c.clone(), port).await.map_err(|e| e.to_string())
            }
            Ok(c) => kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}")),
            Err(e) => Err(e.clone()),
        }
    };
    // The controller-manager and scheduler are reached at their compiled-in
    // (plus overrides) port and bind address.
    let open_health = async {
        let mut m = BTreeMap::new();
        for u in desired.iter().filter(|u| u.spec.component != crate::model::APISERVER) {
            let addr = health::reach_address(u.bind_address());
            m.insert(u.spec.component, health::anonymous_client(host, addr, u.serving_port()).await.map_err(|e| e.to_string()));
        }
        m
    };
    let probe: ProbeSlot = futures::FutureExt::shared(futures::FutureExt::boxed(async move {
        match tokio::spawn(read_host).await {
            Ok(r) => r.map(Arc::new).map_err(|e| e.to_string()),
            Err(e) => Err(format!("reading the server stopped: {e}")),
        }
    }));
    // Started now, not when a check first asks.
    let started = probe.clone();
    tokio::spawn(async move {
        let _ = started.await;
    });
    let (api, health) = tokio::join!(connect_api, open_health);
    Opened { probe, api, health }
}

/// Runs `checks` on `ctx` with the CIS controls of the benchmark
/// kube-bench picks for its server's version; another benchmark's control
/// named by --only is reported as SKIP.
async fn run_with_cis(ctx: &Ctx, checks: &[&Check], o: &CheckOptions) -> (Vec<CheckResult>, report::CisInfo) {
    // Every other check starts at once; the CIS ones once the version
    // (from the server's binary, else the API) says which benchmark.
    let (rest, cis_checks): (Vec<&Check>, Vec<&Check>) = checks.iter().partition(|c| c.group != "cis");
    let choose_and_run = async {
        let (version, from) = server_version(ctx).await;
        let benchmark = cis::benchmark_for(version);
        let here = |id: &str| benchmark.is_some_and(|b| id.starts_with(&format!("{b}/")));
        let (run_these, other): (Vec<&Check>, Vec<&Check>) = cis_checks.iter().partition(|c| here(&c.id));
        (run_refs(ctx, &run_these, &o.skip).await, other, version, from, benchmark)
    };
    let (mut results, (cis_results, other, version, from, benchmark)) = tokio::join!(run_refs(ctx, &rest, &o.skip), choose_and_run);
    results.extend(cis_results);
    for c in other.iter().filter(|c| o.only.iter().any(|x| x == &c.id)) {
        let why = match benchmark {
            Some(b) => format!("belongs to another benchmark: Kubernetes {version} is checked against {b}"),
            None => format!("no CIS benchmark for Kubernetes {version}"),
        };
        results.push(CheckResult { id: c.id.clone(), server: None, group: c.group, title: c.title.clone(), finding: Finding::skip(why) });
    }
    let cis = report::CisInfo {
        benchmark: benchmark.map(str::to_string),
        kubernetes_version: version.to_string(),
        version_from: from.to_string(),
        in_table: benchmark.is_some_and(|b| cis::BENCHMARKS.iter().any(|x| x.name == b)),
    };
    (results, cis)
}

async fn run_refs(ctx: &Ctx, checks: &[&Check], skip: &[String]) -> Vec<CheckResult> {
    let limit = ctx.timeout.min(CHECK_TIMEOUT);
    let futs = checks.iter().map(|c| async move {
        let finding = if skip.iter().any(|s| s == &c.id) {
            Finding::skip("skipped by --skip")
        } else {
            match &c.run {
                Runner::Host(f) => match ctx.probe().await {
                    Ok(h) => f(ctx, &h),
                    Err(why) => Finding::skip(why),
                },
                Runner::Async(f) => bounded(f(ctx), limit).await,
                Runner::Api(f) => match &ctx.api {
                    Ok(client) => bounded(f(ctx, client), limit).await,
                    Err(why) => Finding::skip(why.clone()),
                },
            }
        };
        CheckResult { id: c.id.clone(), server: None, group: c.group, title: c.title.clone(), finding }
    });
    futures::future::join_all(futs).await
}

/// A client for `--endpoint`: the kubeconfig's credentials, that address.
fn endpoint_client(url: &str, config: &Result<kube::Config, String>) -> Result<kube::Client, String> {
    let mut c = config.clone()?;
    let original = c.cluster_url.host().map(|h| h.trim_matches(['[', ']']).to_string());
    c.cluster_url = url.parse().map_err(|_| format!("--endpoint {}: not a URL", crate::output::redact::line(url)))?;
    // TLS is verified for the endpoint's own name, which the serving
    // certificate must carry; the kubeconfig's name is not assumed.
    if c.tls_server_name.as_deref() == original.as_deref() {
        c.tls_server_name = None;
    }
    kube::Client::try_from(c).map_err(|e| format!("cannot build an API client: {e}"))
}

/// Runs the checks `o` asks for and reports them.
pub async fn check(o: &CheckOptions) -> Result<Report, Error> {
    let overrides = Overrides::from_sources(&o.overrides)?;
    let registry = select(&o.only, &o.skip)?;
    if let Some(e) = &o.endpoint {
        if !e.parse::<http::Uri>().is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some()) || unitfile::control_char(e).is_some() {
            return Err(Error::Input(format!("--endpoint {}: expected https://HOST[:PORT]", crate::output::redact::line(e))));
        }
    }
    // Credentials: an explicit --kubeconfig or --context that cannot be used is bad input;
    // no kubeconfig at all means the API checks are skipped.
    let explicit = o.kube.kubeconfig.is_some() || o.kube.context.is_some() || std::env::var_os("KUBECONFIG").is_some();
    let config = match crate::kube::config::config(&o.kube, None, o.timeout).await {
        Ok(c) => Ok(c),
        Err(e) if explicit => return Err(e),
        Err(e) => Err(format!("no API credentials ({e})")),
    };
    let api_url = config.as_ref().map(|c| c.cluster_url.to_string()).unwrap_or_default();
    let desired = desired_units(&overrides);
    let endpoint = o.endpoint.as_ref().map(|u| (u.clone(), endpoint_client(u, &config)));
    let dests = &o.ssh_destinations;
    // The cluster checks need two servers (one with --endpoint: that one),
    // unless --only names them.
    let named = |c: &Check| o.only.iter().any(|x| x == &c.id || x == c.group);
    let registry: Vec<Check> =
        registry.into_iter().filter(|c| c.group != "cluster" || dests.len() > 1 || named(c) || (c.id == "cluster.endpoint" && o.endpoint.is_some())).collect();
    if dests.len() <= 1 {
        let host = match dests.first() {
            Some(d) => Some(Arc::new(Host::connect(d, &o.ssh, o.timeout).await?)),
            None => None,
        };
        let opened = match &host {
            Some(h) => open(h, &config, &desired, false, None).await,
            None => Opened {
                probe: ready(Err("no --ssh DESTINATION: host checks need the server".into())),
                api: match &config {
                    Ok(c) => kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}")),
                    Err(e) => Err(e.clone()),
                },
                health: BTreeMap::new(),
            },
        };
        let ctx = Ctx { strict: o.strict, desired, host: opened.probe, api: opened.api, api_url, health: opened.health, timeout: o.timeout, servers: Vec::new(), endpoint };
        let all: Vec<&Check> = registry.iter().collect();
        let (results, cis) = run_with_cis(&ctx, &all, o).await;
        drop(ctx);
        if let Some(h) = host.and_then(|h| Arc::try_unwrap(h).ok()) {
            h.close().await;
        }
        return Ok(Report::new(results, cis));
    }
    // Several servers: each connected and read at once; one that cannot be
    // reached fails the checks that need it, by name.
    let key = probe::HmacKey::random();
    let hosts: Vec<Result<Arc<Host>, Error>> = futures::future::join_all(dests.iter().map(|d| async { Host::connect(d, &o.ssh, o.timeout).await.map(Arc::new) })).await;
    if hosts.iter().all(|h| h.is_err()) {
        let first = hosts.into_iter().find_map(|h| h.err()).expect("several");
        return Err(Error::Connect(format!("no server can be reached ({} given); the first: {first}", dests.len())));
    }
    let opened: Vec<Opened> = futures::future::join_all(hosts.iter().map(|h| async {
        match h {
            Ok(h) => open(h, &config, &desired, true, Some(&key)).await,
            Err(e) => Opened { probe: ready(Err(e.to_string())), api: Err(e.to_string()), health: BTreeMap::new() },
        }
    }))
    .await;
    // The cluster checks compare what every server read: wait for all.
    let mut read = Vec::new();
    for op in &opened {
        read.push(op.probe.clone().await.map(|p| (*p).clone()));
    }
    let (per_server, once): (Vec<&Check>, Vec<&Check>) = registry.iter().partition(|c| PER_SERVER.contains(&c.group));
    let mut results = Vec::new();
    let mut cis_info = None;
    let mut views = Vec::new();
    let mut contexts = Vec::new();
    for ((d, op), probe) in dests.iter().zip(opened).zip(read) {
        views.push(ServerView { name: d.clone(), probe, api: op.api.clone() });
        contexts.push((
            d,
            Ctx {
                strict: o.strict,
                desired: desired.clone(),
                host: op.probe,
                api: op.api,
                api_url: api_url.clone(),
                health: op.health,
                timeout: o.timeout,
                servers: Vec::new(),
                endpoint: None,
            },
        ));
    }
    let per_server = &per_server;
    let per = futures::future::join_all(contexts.iter().map(|(d, ctx)| async move { (*d, run_with_cis(ctx, per_server, o).await) })).await;
    for (d, (rows, cis)) in per {
        if cis_info.is_none() && contexts.iter().any(|(n, c)| *n == d && c.host().is_some()) {
            cis_info = Some(cis);
        }
        results.extend(rows.into_iter().map(|mut r| {
            r.server = Some(d.to_string());
            r
        }));
    }
    // The cluster's own checks: the API through the kubeconfig's address,
    // or through the first server that answers when that is a loopback one.
    // A tunnel opens to a stopped apiserver too: the first that answers /readyz.
    let answering = futures::future::join_all(views.iter().map(|v| async move {
        match &v.api {
            Ok(c) => health::get(c, "/readyz").await.0 == 200,
            Err(_) => false,
        }
    }))
    .await;
    let first_ok = answering.iter().position(|r| *r).or_else(|| views.iter().position(|v| v.api.is_ok() && v.probe.is_ok())).or_else(|| views.iter().position(|v| v.probe.is_ok()));
    let api = match &config {
        Ok(c) if !is_loopback(c) => kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}")),
        Ok(_) => first_ok.map(|i| views[i].api.clone()).unwrap_or_else(|| Err("no server's apiserver can be reached".into())),
        Err(e) => Err(e.clone()),
    };
    let host = ready(first_ok.map(|i| views[i].probe.clone()).unwrap_or_else(|| Err("no server could be read".into())));
    let cluster = Ctx { strict: o.strict, desired, host, api, api_url, health: BTreeMap::new(), timeout: o.timeout, servers: views, endpoint };
    results.extend(run_refs(&cluster, &once, &o.skip).await);
    drop(contexts);
    let cis = match cis_info {
        Some(c) => c,
        None => run_with_cis(&cluster, &[], o).await.1,
    };
    drop(cluster);
    futures::future::join_all(hosts.into_iter().flatten().filter_map(|h| Arc::try_unwrap(h).ok()).map(Host::close)).await;
    Ok(Report::new(results, cis))
}
