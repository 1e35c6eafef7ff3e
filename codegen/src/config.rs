//! `manifests/configs/kube-scheduler.yaml`: the KubeSchedulerConfiguration.

use std::path::Path;

use serde::Deserialize;

use crate::yaml::{line_of_key, yaml_err};
use crate::ManifestError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub text: String,
    pub api_version: String,
    pub kubeconfig: String,
    pub leader_elect: bool,
    /// 1-based line of `apiVersion:`, the line version rendering rewrites.
    pub api_version_line: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    api_version: String,
    kind: String,
    client_connection: ClientConnection,
    #[serde(default)]
    leader_election: Option<LeaderElection>,
}
#[derive(Deserialize)]
struct ClientConnection {
    kubeconfig: String,
}
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderElection {
    leader_elect: Option<bool>,
}

pub fn parse_scheduler_config(path: &Path, text: &str) -> Result<SchedulerConfig, ManifestError> {
    let raw: Raw = serde_yaml::from_str(text).map_err(|e| yaml_err(path, 0, &e))?;
    let err = |key: &str, m: String| ManifestError::new(path, line_of_key(text, 1, key), m);
    if raw.kind != "KubeSchedulerConfiguration" {
        return Err(err("kind", format!("kind is `{}`, expected KubeSchedulerConfiguration", raw.kind)));
    }
    if !raw.api_version.starts_with("kubescheduler.config.k8s.io/") {
        return Err(err("apiVersion", format!("apiVersion `{}` is not kubescheduler.config.k8s.io/…", raw.api_version)));
    }
    if !raw.client_connection.kubeconfig.starts_with('/') {
        return Err(err("kubeconfig", "clientConnection.kubeconfig must be an absolute path".into()));
    }
    let api_version_line = line_of_key(text, 1, "apiVersion");
    Ok(SchedulerConfig {
        text: text.to_string(),
        api_version: raw.api_version,
        kubeconfig: raw.client_connection.kubeconfig,
        leader_elect: raw.leader_election.and_then(|l| l.leader_elect).unwrap_or(true),
        api_version_line,
    })
}
