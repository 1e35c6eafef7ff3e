//! `kubectl bootstrap`: desired state from the assets and manifests,
//! preflight, the plan (plain data), the steps that run it, the report.

pub mod desired;
pub mod exec;
pub mod plan;
pub mod preflight;
