//! What both kubectl plugins share, organised by audience (see
//! ARCHITECTURE.md):
//!
//! - [`model`]: the control plane as the manifests describe it (constants
//!   generated at build time) and the types around them; overrides.
//! - [`remote`]: the server over SSH: the connection, quoting, typed systemd
//!   operations, the one probe both plugins read the server with, the lock.
//! - [`kube`]: the Kubernetes API: kubeconfigs, tunnelled clients and health
//!   endpoints, Leases, the RBAC objects.
//! - [`pki`]: pure inspection of certificates, keys, kubeconfigs, binaries.
//! - [`bootstrap`]: `kubectl bootstrap`: desired state, preflight, the plan
//!   and its steps, the report.
//! - [`cpcheck`]: `kubectl cpcheck`: the checks by group, the CIS table, the
//!   reports.
//! - [`output`], [`local`]: what may be printed and how; local files,
//!   processes and signals.

pub mod bootstrap;
pub mod cpcheck;
pub mod diagnose;
pub mod error;
pub mod kube;
pub mod local;
pub mod model;
pub mod output;
pub mod pki;
pub mod remote;

pub use error::{exit, Error, Result};

/// The plugin version and the Kubernetes version the manifests target, for `--version`.
pub fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| format!("{} (manifests for Kubernetes {})", env!("CARGO_PKG_VERSION"), model::KUBERNETES_VERSION))
}
