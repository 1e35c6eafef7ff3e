//! cpcheck: a registry of small checks, each with a stable id and a group,
//! run concurrently over one SSH connection and one API client.

pub mod checks;
pub mod gather;
pub mod report;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::model::overrides::DesiredUnit;

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

pub type HostFn = Box<dyn Fn(&Ctx, &gather::HostData) -> Finding + Send + Sync>;
pub type ApiFn = Box<dyn for<'a> Fn(&'a Ctx, &'a kube::Client) -> BoxFuture<'a, Finding> + Send + Sync>;

pub type AsyncFn = Box<dyn for<'a> Fn(&'a Ctx) -> BoxFuture<'a, Finding> + Send + Sync>;

pub enum Runner {
    /// Reaches the server by itself (its own SSH tunnel).
    Async(AsyncFn),
    /// Reads the gathered host data.
    Host(HostFn),
    /// Talks to the API (and may read host data when there is some).
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
    /// Host data, or why there is none.
    pub host: Result<gather::HostData, String>,
    /// The API client, or why there is none.
    pub api: Result<kube::Client, String>,
    pub api_url: String,
    /// /healthz clients of the controller-manager and scheduler (over SSH).
    pub health: BTreeMap<&'static str, Result<kube::Client, String>>,
    /// `--timeout`: no check waits longer.
    pub timeout: std::time::Duration,
}

impl Ctx {
    pub fn host(&self) -> Option<&gather::HostData> {
        self.host.as_ref().ok()
    }
}

pub const GROUPS: &[&str] = &["host", "ports", "health", "api", "consistency", "rbac", "leader", "cis"];

/// How long one check may take at most (less when `--timeout` is shorter):
/// an apiserver whose etcd is down accepts requests and never answers them.
pub const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn bounded(f: BoxFuture<'_, Finding>, limit: std::time::Duration) -> Finding {
    match tokio::time::timeout(limit, f).await {
        Ok(found) => found,
        Err(_) => Finding::fail(
            format!("no answer within {}s", limit.as_secs()),
            "the apiserver accepts requests but does not answer: check etcd (systemctl status etcd) and journalctl -u kube-apiserver",
        ),
    }
}

/// Runs `checks` concurrently, each bounded by `min(CHECK_TIMEOUT, limit)`;
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
