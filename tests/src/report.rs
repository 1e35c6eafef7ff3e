//! The plugins' JSON reports as the tests read them: typed (serde), so a
//! renamed or retyped field fails where it is read, not as a `null`
//! compared with something. Only the fields tests look at; unknown ones
//! are ignored, as any consumer of the documented schema would.

use serde::Deserialize;

/// A problem or warning: what, the fix, the server, the journal's words.
#[derive(Debug, Clone, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub server: Option<String>,
    pub what: String,
    pub fix: String,
    #[serde(default)]
    pub journal: Vec<String>,
}

/// One step as it ran.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    pub step: String,
    pub line: String,
    pub seconds: f64,
}

/// An RBAC object applied.
#[derive(Debug, Clone, Deserialize)]
pub struct Applied {
    pub kind: String,
    pub name: String,
    pub result: String,
}

/// `kubectl bootstrap server -o json` on one server (kind `Result`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub kind: String,
    pub destination: String,
    pub changed: bool,
    pub bytes_sent: u64,
    pub bytes_uploaded: u64,
    pub compression: String,
    pub uploaded: Vec<String>,
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub rbac: Vec<Applied>,
    pub steps: Vec<Step>,
    pub apiserver_restart_to_ready_seconds: Option<f64>,
    pub warnings: Vec<Problem>,
    pub prepare: Vec<Step>,
}

/// A wave of a run over several servers.
#[derive(Debug, Clone, Deserialize)]
pub struct Wave {
    pub part: String,
    #[serde(default)]
    pub pass: Option<u32>,
    pub servers: Vec<usize>,
}

/// Totals of a run over several servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub servers: usize,
    pub changed_servers: Vec<String>,
    pub uploaded_files: usize,
    pub restarted: Vec<String>,
}

/// A run over several servers (kind `ClusterResult`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRun {
    pub kind: String,
    pub changed: bool,
    pub rollout: String,
    pub waves: Vec<Wave>,
    pub summary: Summary,
    pub warnings: Vec<Problem>,
    pub servers: Vec<Run>,
}

/// A file of a stage action.
#[derive(Debug, Clone, Deserialize)]
pub struct File {
    pub dest: String,
    pub bytes: u64,
    pub secret: bool,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// How the stage's large files travel.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub codec: String,
    #[serde(default)]
    pub link_bytes_per_second: Option<f64>,
}

/// One action of a plan, by its `action` tag; the fields the tests read.
#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub action: String,
    #[serde(default)]
    pub files: serde_json::Value,
    #[serde(default)]
    pub transfer: Option<Transfer>,
    #[serde(default)]
    pub units: Vec<String>,
}

impl Action {
    /// A stage action's files.
    pub fn staged(&self) -> Vec<File> {
        serde_json::from_value(self.files.clone()).unwrap_or_else(|e| panic!("a {} action's files ({e}): {}", self.action, self.files))
    }
}

/// `--dry-run -o json` on one server (kind `Plan`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub kind: String,
    pub destination: String,
    pub changes: bool,
    pub actions: Vec<Action>,
}

impl Plan {
    /// The stage action, if the plan uploads anything.
    pub fn stage(&self) -> Option<&Action> {
        self.actions.iter().find(|a| a.action == "stage")
    }
}

/// `--dry-run -o json` on several servers (kind `ClusterPlan`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPlan {
    pub kind: String,
    pub changes: bool,
    pub rollout: String,
    pub waves: Vec<Wave>,
    pub order: Vec<String>,
    pub servers: Vec<Plan>,
}

/// A run that failed (kind `Error`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub kind: String,
    pub error: String,
    pub exit_code: u8,
    pub problems: Vec<Problem>,
}

/// One row of `kubectl cpcheck -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    pub id: String,
    #[serde(default)]
    pub server: Option<String>,
    pub group: String,
    pub title: String,
    pub status: String,
    pub detail: String,
    #[serde(default)]
    pub remediation: Option<String>,
    #[serde(default)]
    pub journal: Vec<String>,
}

/// The CIS benchmark a cpcheck report was checked against.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cis {
    pub benchmark: Option<String>,
    pub kubernetes_version: String,
}

/// `kubectl cpcheck -o json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Cpcheck {
    pub kind: String,
    pub cis: Cis,
    pub checks: Vec<Check>,
}

impl Cpcheck {
    /// The row `id` (on `server`, when the report covers several).
    pub fn row(&self, id: &str, server: Option<&str>) -> &Check {
        self.checks.iter().find(|c| c.id == id && (server.is_none() || c.server.as_deref() == server)).unwrap_or_else(|| panic!("no check {id} on {server:?}"))
    }
}

/// Reads a report from a plugin's stdout, saying what it was on failure.
pub fn parse<T: serde::de::DeserializeOwned>(stdout: &[u8]) -> T {
    serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("not the report expected ({e}): {}", String::from_utf8_lossy(stdout)))
}
