//! What both kubectl plugins share: the control plane as the manifests
//! describe it (constants generated at build time), runtime overrides, the
//! RBAC objects, host access over SSH, and API client setup.

pub mod api;
pub mod check;
pub mod desired;
pub mod exec;
pub mod output;
pub mod preflight;
pub mod facts;
pub mod files;
pub mod health;
pub mod plan;
pub mod inspect;
pub mod interrupt;
pub mod local;
pub mod lock;
mod error;
pub mod model;
pub mod overrides;
pub mod plugin;
pub mod rbac;
pub mod redact;
pub mod ssh;

pub use error::{exit, Error, Result};

/// The plugin version and the Kubernetes version the manifests target, for `--version`.
pub fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| format!("{} (manifests for Kubernetes {})", env!("CARGO_PKG_VERSION"), model::KUBERNETES_VERSION))
}
