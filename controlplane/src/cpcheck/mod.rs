//! `kubectl cpcheck`: small checks with stable ids, each a named function
//! listed in its group's static table (`checks/`, one file per group), the
//! CIS controls as data (`cis`), run concurrently, each bounded; reports as
//! a table, JSON (docs/cpcheck.schema.json) or JUnit (`report`).
//!
//! One path for any number of servers ([`check`]): every `--ssh` server is
//! connected to and read, and its API client and health tunnels opened, in
//! one place ([`open`]); the groups that read a server run on each (one
//! server is N = 1), the others once for the plane.

pub mod bundle;
pub mod checks;
pub mod cis;
pub mod explain;
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
use crate::model::{ClusterRoleBindingSpec, ClusterRoleSpec, Component, Endpoint, FileKind, Flags, Version, APISERVER, FILES, OUTPUT_FLAGS, UNITS};
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

/// A group of checks: its name is the prefix of its checks' ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Group {
    Host,
    Ports,
    Health,
    Api,
    Consistency,
    Certs,
    Rbac,
    Leader,
    Cluster,
    Diagnose,
    Cis,
}

impl Group {
    /// Every group, in report order.
    pub const ALL: &'static [Group] =
        &[Group::Host, Group::Ports, Group::Health, Group::Api, Group::Consistency, Group::Certs, Group::Rbac, Group::Leader, Group::Cluster, Group::Diagnose, Group::Cis];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Host => "host",
            Group::Ports => "ports",
            Group::Health => "health",
            Group::Api => "api",
            Group::Consistency => "consistency",
            Group::Certs => "certs",
            Group::Rbac => "rbac",
            Group::Leader => "leader",
            Group::Cluster => "cluster",
            Group::Diagnose => "diagnose",
            Group::Cis => "cis",
        }
    }

    pub fn parse(s: &str) -> Option<Group> {
        Group::ALL.iter().copied().find(|g| g.as_str() == s)
    }

    /// Does it read one server (and so run on each of several)? The others
    /// are about the plane and run once.
    pub fn per_server(self) -> bool {
        matches!(self, Group::Host | Group::Ports | Group::Health | Group::Consistency | Group::Certs | Group::Diagnose | Group::Cis)
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Group {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
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
    /// The same finding, with the journal lines that show it (escaped here too).
    pub fn with_journal(mut self, lines: &[String]) -> Self {
        self.journal = lines.iter().map(|l| crate::output::redact::line(l)).collect();
        self
    }
}

/// A check's result as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    /// The server a per-server check ran on, when several were checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub group: Group,
    pub title: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// What a table row stands for when it is one check per component, role,
/// binding or path (its id then ends with that name).
#[derive(Debug, Clone, Copy)]
pub enum Item {
    One,
    Component(Component),
    Role(&'static ClusterRoleSpec),
    Binding(&'static ClusterRoleBindingSpec),
    Path(&'static str),
    /// The compiled-in scheduler config (its id ends with its reader's
    /// name and `-config`).
    Config,
    Cis(cis::Row),
    /// A failure signature (its id ends with the signature's).
    Signature(&'static crate::diagnose::Signature),
}

impl Item {
    /// The component of a per-component row.
    pub fn component(self) -> Component {
        match self {
            Item::Component(c) => c,
            other => unreachable!("a per-component check got {other:?}"),
        }
    }
    /// What an id ends with.
    fn suffix(self) -> Option<String> {
        match self {
            Item::One | Item::Cis(_) => None,
            Item::Component(c) => Some(c.name().to_string()),
            Item::Role(r) => Some(r.name.to_string()),
            Item::Binding(b) => Some(b.name.to_string()),
            Item::Path(p) => Some(p.to_string()),
            Item::Signature(s) => Some(s.id.to_string()),
            Item::Config => crate::model::placed(crate::model::SCHEDULER_CONFIG.manifest).and_then(|f| f.restarts.first()).map(|c| format!("{c}-config")),
        }
    }
}

/// A check that reads the server.
pub type HostFn = fn(&Ctx, &Probe, Item) -> Finding;
/// A check that asks the API (and may read the server when there is one).
pub type ApiFn = for<'a> fn(&'a Ctx, &'a kube::Client, Item) -> BoxFuture<'a, Finding>;
/// A check that reaches the server by itself (its own tunnel) or every server.
pub type AsyncFn = for<'a> fn(&'a Ctx, Item) -> BoxFuture<'a, Finding>;

#[derive(Clone, Copy)]
pub enum Run {
    Host(HostFn),
    Api(ApiFn),
    Async(AsyncFn),
}

/// Which items a table row stands for.
#[derive(Debug, Clone, Copy)]
pub enum Each {
    One,
    /// Every component.
    Component,
    /// Every component but the apiserver (those that elect a leader).
    Client,
    Role,
    Binding,
    Path(&'static [&'static str]),
    /// The compiled-in scheduler config.
    Config,
    /// Every failure signature (`crate::diagnose`).
    Signature,
}

/// A row of a group's table: a named function and what it is for.
pub struct Def {
    /// The id, or its prefix (`host.unit` → `host.unit.kube-apiserver`).
    pub id: &'static str,
    pub title: fn(Item) -> String,
    pub each: Each,
    pub run: Run,
}

/// One check to run: a row for one item.
#[derive(Clone)]
pub struct Check {
    pub id: String,
    pub group: Group,
    pub title: String,
    pub item: Item,
    pub run: Run,
}

impl Def {
    /// The checks this row stands for.
    pub fn expand(&self, group: Group) -> Vec<Check> {
        let items: Vec<Item> = match self.each {
            Each::One => vec![Item::One],
            Each::Component => Component::ALL.iter().map(|c| Item::Component(*c)).collect(),
            Each::Client => Component::clients().map(Item::Component).collect(),
            Each::Role => crate::model::CLUSTER_ROLES.iter().map(Item::Role).collect(),
            Each::Binding => crate::model::CLUSTER_ROLE_BINDINGS.iter().map(Item::Binding).collect(),
            Each::Path(v) => v.iter().map(|p| Item::Path(p)).collect(),
            Each::Config => vec![Item::Config],
            Each::Signature => crate::diagnose::SIGNATURES.iter().map(Item::Signature).collect(),
        };
        items
            .into_iter()
            .map(|item| Check {
                id: match item.suffix() {
                    Some(s) => format!("{}.{s}", self.id),
                    None => self.id.to_string(),
                },
                group,
                title: (self.title)(item),
                item,
                run: self.run,
            })
            .collect()
    }
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
    pub health: BTreeMap<Component, Result<kube::Client, String>>,
    /// The chain each component's secure port presents (through SSH),
    /// leaf first; empty without a server.
    pub served: BTreeMap<Component, Result<Vec<Vec<u8>>, String>>,
    /// `--warn-within`: a certificate expiring sooner is a warning.
    pub warn_within: Duration,
    /// The certificates `--kubeconfig` embeds or names, by what they are
    /// (`--kubeconfig PATH (client)`), or why they could not be read.
    pub kubeconfig_certs: Vec<(String, Result<crate::pki::Cert, String>)>,
    /// `--timeout`: no check waits longer.
    pub timeout: Duration,
    /// Every server, for the cluster checks (empty unless several).
    pub servers: Vec<ServerView>,
    /// `--endpoint` and a client for it.
    pub endpoint: Option<(Endpoint, Result<kube::Client, String>)>,
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
pub(crate) fn ready(r: Result<Probe, String>) -> ProbeSlot {
    futures::FutureExt::shared(futures::FutureExt::boxed(futures::future::ready(r.map(Arc::new))))
}

impl Ctx {
    /// What the probe read, if it has finished (and succeeded).
    pub fn host(&self) -> Option<&Probe> {
        self.host.peek().and_then(|r| r.as_ref().ok()).map(|a| a.as_ref())
    }

    /// What the probe read, waiting for it.
    pub(crate) async fn probe(&self) -> Result<Arc<Probe>, String> {
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
            served: BTreeMap::new(),
            warn_within: DEFAULT_WARN_WITHIN,
            kubeconfig_certs: Vec::new(),
            timeout: Duration::from_secs(5),
            servers: Vec::new(),
            endpoint: None,
        }
    }
}

/// `--warn-within`'s default: certificates expiring within 30 days warn
/// (kubeadm's `certs check-expiration` and preflight use the same horizon).
pub const DEFAULT_WARN_WITHIN: Duration = Duration::from_secs(30 * 86400);

/// `--journal-since`'s default.
pub const DEFAULT_JOURNAL_SINCE: Duration = Duration::from_secs(600);

/// How long one check may take at most (less when `--timeout` is shorter):
/// an apiserver whose etcd is down accepts requests and never answers them.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded(f: BoxFuture<'_, Finding>, limit: Duration) -> Finding {
    match tokio::time::timeout(limit, f).await {
        Ok(found) => found,
        Err(_) => Finding::fail(
            format!("no answer within {}s", limit.as_secs()),
            format!("the apiserver accepts requests but does not answer: check etcd (systemctl status etcd) and journalctl -u {}", APISERVER.unit()),
        ),
    }
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
    let mut v: Vec<Check> = Group::ALL.iter().filter(|g| **g != Group::Cis).flat_map(|g| checks::table(*g).iter().flat_map(move |d| d.expand(*g))).collect();
    v.extend(cis::every_check());
    v
}

/// Ids that moved: (old, new). `--only` and `--skip` still take the old
/// ones (as the new); CHANGELOG.md says when each moved.
pub const MOVED: &[(&str, &str)] = &[("consistency.cert-chain", "certs.chain"), ("consistency.cert-expiry", "certs.expiry")];

/// The id `id` is now (itself unless it moved).
pub fn current_id(id: &str) -> &str {
    MOVED.iter().find(|(old, _)| *old == id).map(|(_, new)| *new).unwrap_or(id)
}

/// Checks `--only`/`--skip` name: groups or ids (a moved id as its new
/// one). Unknown ones are bad input.
pub fn select(only: &[String], skip: &[String]) -> Result<Vec<Check>, Error> {
    let only: Vec<String> = only.iter().map(|o| current_id(o).to_string()).collect();
    let skip: Vec<String> = skip.iter().map(|o| current_id(o).to_string()).collect();
    let (only, skip) = (&only[..], &skip[..]);
    let all = catalog();
    let groups = || Group::ALL.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ");
    for o in only {
        if Group::parse(o).is_none() && !all.iter().any(|c| &c.id == o) {
            return Err(Error::Input(format!(
                "--only {}: unknown group or check id; groups: {} (kubectl cpcheck --list shows every id)",
                crate::output::redact::line(o),
                groups()
            )));
        }
    }
    for s in skip {
        if !all.iter().any(|c| &c.id == s) {
            return Err(Error::Input(format!("--skip {}: no check has that id (kubectl cpcheck --list shows them)", crate::output::redact::line(s))));
        }
    }
    Ok(if only.is_empty() { all } else { all.into_iter().filter(|c| only.iter().any(|o| Group::parse(o) == Some(c.group) || o == &c.id)).collect() })
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
        if let (Some(c), Some(k)) = (flags.get("tls-cert-file"), flags.get("tls-private-key-file")) {
            req.pairs.push((c.to_string(), k.to_string()));
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
    /// The plane's load-balanced address.
    pub endpoint: Option<Endpoint>,
    /// A certificate expiring sooner is a warning (`--warn-within`).
    pub warn_within: Duration,
    /// How far back the journals are searched for failure signatures
    /// (`--journal-since`; never before a running unit's current start).
    pub journal_since: Duration,
    /// Write a support bundle here (`--bundle`).
    pub bundle: Option<std::path::PathBuf>,
}

fn is_loopback(config: &kube::Config) -> bool {
    config.cluster_url.host().map(|h| h.trim_matches(['[', ']'])).is_some_and(|h| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

/// The server's Kubernetes version: the installed apiserver binary's, else
/// the API's, else the manifests'.
async fn server_version(ctx: &Ctx) -> (Version, &'static str) {
    let _ = ctx.probe().await;
    if let Some(v) = ctx.host().and_then(|h| h.units.get(APISERVER.unit())).and_then(|u| u.binary_version.as_deref()).and_then(Version::parse) {
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

/// One server, opened: what was read there (as it arrives), an API client
/// through its SSH connection (when `tunnel` or the kubeconfig names a
/// loopback address), the controller-manager's and scheduler's /healthz.
struct Opened {
    name: String,
    host: Option<Arc<Host>>,
    probe: ProbeSlot,
    api: Result<kube::Client, String>,
    health: BTreeMap<Component, Result<kube::Client, String>>,
    served: BTreeMap<Component, Result<Vec<Vec<u8>>, String>>,
}

/// Reads `host`: the first request guesses, from the units the manifests
/// (and overrides) install, what they reference; only what the installed
/// units reference beyond that (drift) takes a second round trip.
async fn read_server(host: Arc<Host>, desired: Vec<DesiredUnit>, key: Option<probe::HmacKey>, journal_since: Duration) -> Result<Probe, Error> {
    let guess = referenced_by(|u| desired.iter().find(|d| d.spec.file_name == u.file_name).map(|d| d.flags.clone()).unwrap_or_default());
    let first = Request {
        etcd_members: key.is_some(),
        fingerprints: key,
        paths: guess.paths.clone(),
        certs: guess.certs.clone(),
        kubeconfigs: guess.kubeconfigs.clone(),
        encryption: guess.encryption.clone(),
        pairs: guess.pairs.clone(),
        signatures: Some(journal_since.as_secs()),
        ..Request::cpcheck()
    };
    let mut p = probe::read(&host, &first).await?;
    let need = referenced(&p);
    let more = |have: &[String], want: &[String]| want.iter().filter(|w| !have.contains(w)).cloned().collect::<Vec<_>>();
    let second = Request {
        paths: more(&guess.paths, &need.paths),
        certs: more(&guess.certs, &need.certs),
        kubeconfigs: more(&guess.kubeconfigs, &need.kubeconfigs),
        encryption: need.encryption.clone().filter(|e| guess.encryption.as_ref() != Some(e)),
        pairs: need.pairs.iter().filter(|p| !guess.pairs.contains(p)).cloned().collect(),
        ..Default::default()
    };
    if !second.paths.is_empty() || !second.certs.is_empty() || !second.kubeconfigs.is_empty() || second.encryption.is_some() || !second.pairs.is_empty() {
        probe::run(&host, &second, &mut p).await?;
    }
    Ok(p)
}

/// Connects to `dest` and opens what the checks read there, each part
/// started at once (checks that need no host start before the read ends).
async fn open(dest: &str, o: &CheckOptions, config: &Result<kube::Config, String>, desired: &[DesiredUnit], tunnel: bool, key: Option<probe::HmacKey>) -> Result<Opened, Error> {
    let host = Arc::new(Host::connect(dest, &o.ssh, o.timeout).await?);
    let journal_since = if o.journal_since.is_zero() { DEFAULT_JOURNAL_SINCE } else { o.journal_since };
    let read = read_server(host.clone(), desired.to_vec(), key, journal_since);
    let probe: ProbeSlot = futures::FutureExt::shared(futures::FutureExt::boxed(async move {
        match tokio::spawn(read).await {
            Ok(r) => r.map(Arc::new).map_err(|e| e.to_string()),
            Err(e) => Err(format!("reading the server stopped: {e}")),
        }
    }));
    let started = probe.clone();
    tokio::spawn(async move {
        let _ = started.await;
    });
    let connect_api = async {
        match config {
            Ok(c) if tunnel || is_loopback(c) => {
                let port = if is_loopback(c) {
                    c.cluster_url.port_u16().unwrap_or(443)
                } else {
                    desired.iter().find(|u| u.spec.component == APISERVER).map(|u| u.serving_port()).unwrap_or(6443)
                };
                health::api_client(&host, c.clone(), port).await.map_err(|e| e.to_string())
            }
            Ok(c) => kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}")),
            Err(e) => Err(e.clone()),
        }
    };
    // The controller-manager and scheduler are reached at their compiled-in
    // (plus overrides) port and bind address.
    let open_health = futures::future::join_all(desired.iter().filter(|u| u.spec.component != APISERVER).map(|u| {
        let host = &host;
        async move { (u.spec.component, health::anonymous_client(host, health::reach_address(u.bind_address()), u.serving_port()).await.map_err(|e| e.to_string())) }
    }));
    // The certificate each component serves: the apiserver's asked for by
    // the name clients use.
    let sni = config.as_ref().ok().and_then(|c| c.tls_server_name.clone().or_else(|| c.cluster_url.host().map(|h| h.trim_matches(['[', ']']).to_string())));
    let served = served_chains(&host, desired, sni.as_deref(), o.timeout);
    let (api, health, served) = tokio::join!(connect_api, open_health, served);
    Ok(Opened { name: dest.to_string(), host: Some(host), probe, api, health: health.into_iter().collect(), served })
}

/// The chain each component's secure port presents on `host`, at the port
/// and bind address the manifests (and overrides) give it; the apiserver's
/// asked for by `sni` (the name clients use), the others' by `localhost`.
pub async fn served_chains(host: &Host, desired: &[DesiredUnit], sni: Option<&str>, timeout: Duration) -> BTreeMap<Component, Result<Vec<Vec<u8>>, String>> {
    let limit = timeout.min(Duration::from_secs(10));
    let each = desired.iter().map(|u| async move {
        let c = u.spec.component;
        let name = if c == APISERVER { sni.unwrap_or("kubernetes") } else { "localhost" };
        (c, health::served_chain(host, health::reach_address(u.bind_address()), u.serving_port(), name, limit).await.map_err(|e| e.to_string()))
    });
    futures::future::join_all(each).await.into_iter().collect()
}

/// Runs `checks` on `ctx` with the CIS controls of the benchmark
/// kube-bench picks for its server's version; another benchmark's control
/// named by --only is reported as SKIP.
async fn run_with_cis(ctx: &Ctx, checks: &[&Check], o: &CheckOptions) -> (Vec<CheckResult>, report::CisInfo) {
    // Every other check starts at once; the CIS ones once the version
    // (from the server's binary, else the API) says which benchmark.
    let (rest, cis_checks): (Vec<&Check>, Vec<&Check>) = checks.iter().partition(|c| c.group != Group::Cis);
    let choose_and_run = async {
        let (version, from) = server_version(ctx).await;
        let benchmark = cis::benchmark_for(version);
        let here = |id: &str| benchmark.is_some_and(|b| id.starts_with(&format!("{b}/")));
        let (run_these, other): (Vec<&Check>, Vec<&Check>) = cis_checks.iter().partition(|c| here(&c.id));
        (run(ctx, &run_these, &o.skip).await, other, version, from, benchmark)
    };
    let (mut results, (cis_results, other, version, from, benchmark)) = tokio::join!(run(ctx, &rest, &o.skip), choose_and_run);
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

/// Runs `checks` concurrently, each bounded by `min(CHECK_TIMEOUT, --timeout)`
/// from the moment what the server read is in (the read is bounded by
/// `--timeout` itself: on a slow server, an emulated one, it may take longer
/// than a check's own work, which must not be blamed for it); `skip` ids
/// are reported as SKIP.
pub async fn run(ctx: &Ctx, checks: &[&Check], skip: &[String]) -> Vec<CheckResult> {
    let limit = ctx.timeout.min(CHECK_TIMEOUT);
    let futs = checks.iter().map(|c| async move {
        let finding = if skip.iter().any(|s| s == &c.id) {
            Finding::skip("skipped by --skip")
        } else {
            let _ = ctx.probe().await;
            match c.run {
                Run::Host(f) => match ctx.probe().await {
                    Ok(h) => f(ctx, &h, c.item),
                    Err(why) => Finding::skip(why),
                },
                Run::Async(f) => bounded(f(ctx, c.item), limit).await,
                Run::Api(f) => match &ctx.api {
                    Ok(client) => bounded(f(ctx, client, c.item), limit).await,
                    Err(why) => Finding::skip(why.clone()),
                },
            }
        };
        CheckResult { id: c.id.clone(), server: None, group: c.group, title: c.title.clone(), finding }
    });
    futures::future::join_all(futs).await
}

/// A client for `--endpoint`: the kubeconfig's credentials, that address.
fn endpoint_client(e: &Endpoint, config: &Result<kube::Config, String>) -> Result<kube::Client, String> {
    let mut c = config.clone()?;
    let original = c.cluster_url.host().map(|h| h.trim_matches(['[', ']']).to_string());
    c.cluster_url = e.url().parse().map_err(|_| format!("--endpoint {e}: not a URL"))?;
    // TLS is verified for the endpoint's own name, which the serving
    // certificate must carry; the kubeconfig's name is not assumed.
    if c.tls_server_name.as_deref() == original.as_deref() {
        c.tls_server_name = None;
    }
    kube::Client::try_from(c).map_err(|e| format!("cannot build an API client: {e}"))
}

/// The kubeconfig's credentials: an explicit `--kubeconfig`, `--context`
/// or `KUBECONFIG` that cannot be used is bad input; none at all means the
/// API checks are skipped.
async fn credentials(o: &CheckOptions) -> Result<Result<kube::Config, String>, Error> {
    let explicit = o.kube.kubeconfig.is_some() || o.kube.context.is_some() || std::env::var_os("KUBECONFIG").is_some();
    match crate::kube::config::config(&o.kube, None, o.timeout).await {
        Ok(c) => Ok(Ok(c)),
        Err(e) if explicit => Err(e),
        Err(e) => Ok(Err(format!("no API credentials ({e})"))),
    }
}

/// The certificates the kubeconfig in use holds (its client certificate,
/// embedded or a file, and its certificate-authority), named by where they
/// are; an unreadable one with its reason, never its content.
fn kubeconfig_certs(o: &CheckOptions, config: &Result<kube::Config, String>) -> Vec<(String, Result<crate::pki::Cert, String>)> {
    let Ok(c) = config else { return Vec::new() };
    let shown = crate::kube::config::resolve(&o.kube, None).map(|r| r.shown).unwrap_or_else(|_| "the kubeconfig".into());
    let mut v = Vec::new();
    let client = if let Some(d) = &c.auth_info.client_certificate_data {
        use base64::Engine;
        Some(base64::engine::general_purpose::STANDARD.decode(d.trim()).map_err(|_| "client-certificate-data is not base64".to_string()))
    } else {
        c.auth_info.client_certificate.as_ref().map(|p| {
            crate::local::files::read_regular(std::path::Path::new(p), crate::local::files::SMALL_FILE_LIMIT).map_err(|e| format!("{} {e}", crate::output::redact::line(p)))
        })
    };
    if let Some(pem) = client {
        v.push((format!("{shown} (client)"), pem.and_then(|p| crate::pki::Cert::from_pem(&p).map_err(|e| e.to_string()))));
    }
    for der in c.root_cert.iter().flatten() {
        v.push((format!("{shown} (certificate-authority)"), crate::pki::Cert::from_der(der.clone()).map_err(|e| e.to_string())));
    }
    v
}

/// Runs the checks `o` asks for and reports them: on every `--ssh` server
/// (none, one or several) the per-server groups, the others once.
pub async fn check(o: &CheckOptions) -> Result<Report, Error> {
    let overrides = Overrides::from_sources(&o.overrides)?;
    let registry = select(&o.only, &o.skip)?;
    if let Some(b) = &o.bundle {
        bundle::preflight(b)?;
    }
    let config = credentials(o).await?;
    let api_url = config.as_ref().map(|c| c.cluster_url.to_string()).unwrap_or_default();
    let desired = desired_units(&overrides);
    let kubeconfig_certs = kubeconfig_certs(o, &config);
    let dests = &o.ssh_destinations;
    let several = dests.len() > 1;
    // The cluster checks need two servers (one with --endpoint: that one),
    // unless --only names them.
    let named = |c: &Check| o.only.iter().any(|x| x == &c.id || Group::parse(x) == Some(c.group));
    let registry: Vec<Check> = registry.into_iter().filter(|c| c.group != Group::Cluster || several || named(c) || (c.id == "cluster.endpoint" && o.endpoint.is_some())).collect();
    // Every server, connected and opened at once; with several, secrets are
    // compared under a key of this run.
    let key = several.then(probe::HmacKey::random);
    let opened: Vec<Result<Opened, Error>> = futures::future::join_all(dests.iter().map(|d| open(d, o, &config, &desired, several, key.clone()))).await;
    if !opened.is_empty() && opened.iter().all(|h| h.is_err()) {
        let first = opened.into_iter().find_map(|h| h.err()).expect("one at least");
        return Err(if several { Error::Connect(format!("no server can be reached ({} given); the first: {first}", dests.len())) } else { first });
    }
    let mut servers: Vec<Opened> = opened
        .into_iter()
        .zip(dests)
        .map(|(r, d)| {
            r.unwrap_or_else(|e| Opened {
                name: d.clone(),
                host: None,
                probe: ready(Err(e.to_string())),
                api: Err(e.to_string()),
                health: BTreeMap::new(),
                served: BTreeMap::new(),
            })
        })
        .collect();
    if servers.is_empty() {
        // No --ssh: the API from the kubeconfig, no host.
        let api = config.as_ref().map_err(Clone::clone).and_then(|c| kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}")));
        servers.push(Opened {
            name: String::new(),
            host: None,
            probe: ready(Err("no --ssh DESTINATION: host checks need the server".into())),
            api,
            health: BTreeMap::new(),
            served: BTreeMap::new(),
        });
    }
    let ctx_of = |s: &Opened| Ctx {
        strict: o.strict,
        desired: desired.clone(),
        host: s.probe.clone(),
        api: s.api.clone(),
        api_url: api_url.clone(),
        health: s.health.clone(),
        served: s.served.clone(),
        warn_within: o.warn_within,
        kubeconfig_certs: kubeconfig_certs.clone(),
        timeout: o.timeout,
        servers: Vec::new(),
        endpoint: None,
    };
    let (per_server, once): (Vec<&Check>, Vec<&Check>) = registry.iter().partition(|c| c.group.per_server());
    let per = futures::future::join_all(servers.iter().map(|s| {
        let (ctx, per_server) = (ctx_of(s), &per_server);
        async move {
            let (rows, cis) = run_with_cis(&ctx, per_server, o).await;
            (ctx.host().is_some(), rows, cis)
        }
    }))
    .await;
    // The CIS benchmark as the first server that was read saw it.
    let cis_info = per.iter().find(|(read, _, _)| *read).or(per.first()).map(|(_, _, cis)| cis.clone()).expect("at least one context ran");
    let mut results = Vec::new();
    for (s, (_, rows, _)) in servers.iter().zip(per) {
        results.extend(rows.into_iter().map(|mut r| {
            r.server = several.then(|| s.name.clone());
            r
        }));
    }
    let cluster = plane(&servers, &config, ctx_of, several, &config_endpoint(o, &config)).await;
    results.extend(run(&cluster, &once, &o.skip).await);
    drop(cluster);
    let report = Report::new(results, cis_info);
    if let Some(path) = &o.bundle {
        let mut views = Vec::new();
        for s in &servers {
            views.push(bundle::Server { name: &s.name, host: s.host.clone(), probe: s.probe.clone().await, served: &s.served });
        }
        let api = servers.iter().find_map(|s| s.api.as_ref().ok());
        bundle::write(path, &views, api, &report).await?;
        drop(views);
    }
    futures::future::join_all(servers.into_iter().filter_map(|s| s.host).filter_map(|h| Arc::try_unwrap(h).ok()).map(Host::close)).await;
    Ok(report)
}

fn config_endpoint(o: &CheckOptions, config: &Result<kube::Config, String>) -> Option<(Endpoint, Result<kube::Client, String>)> {
    o.endpoint.as_ref().map(|e| (e.clone(), endpoint_client(e, config)))
}

/// The plane's own context: the API through the kubeconfig's address, or
/// through the first server whose apiserver answers /readyz when that is a
/// loopback one; with several servers, every server's view.
async fn plane(
    servers: &[Opened],
    config: &Result<kube::Config, String>,
    ctx_of: impl Fn(&Opened) -> Ctx,
    several: bool,
    endpoint: &Option<(Endpoint, Result<kube::Client, String>)>,
) -> Ctx {
    let mut views = Vec::new();
    for s in servers {
        views.push(ServerView { name: s.name.clone(), probe: s.probe.clone().await.map(|p| (*p).clone()), api: s.api.clone() });
    }
    // A tunnel opens to a stopped apiserver too: the first that answers /readyz.
    let answering = futures::future::join_all(views.iter().map(|v| async move {
        match &v.api {
            Ok(c) => health::get(c, "/readyz").await.0 == 200,
            Err(_) => false,
        }
    }))
    .await;
    let first_ok = answering
        .iter()
        .position(|r| *r)
        .or_else(|| views.iter().position(|v| v.api.is_ok() && v.probe.is_ok()))
        .or_else(|| views.iter().position(|v| v.probe.is_ok()))
        .unwrap_or(0);
    let mut ctx = ctx_of(&servers[first_ok]);
    if let Ok(c) = config {
        if !is_loopback(c) {
            ctx.api = kube::Client::try_from(c.clone()).map_err(|e| format!("cannot build an API client: {e}"));
        }
    }
    ctx.health = BTreeMap::new();
    ctx.endpoint = endpoint.clone();
    if several {
        ctx.servers = views;
    }
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waits_for_the_read(ctx: &Ctx, _: Item) -> BoxFuture<'_, Finding> {
        futures::FutureExt::boxed(async move {
            match ctx.probe().await {
                Ok(_) => Finding::pass("read"),
                Err(e) => Finding::skip(e),
            }
        })
    }

    /// A server that takes longer to read than a check may take (an
    /// emulated arm64 server on a busy machine: CI failed five certs rows
    /// with "no answer within 10s" that way) is not blamed on the checks:
    /// their bound starts once the read is in.
    #[tokio::test]
    async fn a_slow_read_of_the_server_does_not_time_the_checks_out() {
        let mut ctx = Ctx::for_tests(false);
        ctx.timeout = Duration::from_millis(200);
        ctx.host = futures::FutureExt::shared(futures::FutureExt::boxed(async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Err::<Arc<Probe>, String>("read after 600ms".into())
        }));
        let check = Check { id: "t.slow-read".into(), group: Group::Certs, title: "t".into(), item: Item::One, run: Run::Async(waits_for_the_read) };
        let got = run(&ctx, &[&check], &[]).await;
        assert_eq!(got[0].finding.status, Status::Skip, "{:?}", got[0].finding);
        assert_eq!(got[0].finding.detail, "read after 600ms");
    }
}
