//! The project's real test server (see README "Test bed"): used by
//! `cargo xtask bed …`, the demo, and the end-to-end tests.

mod bed;
mod cluster;
pub mod pki;

pub use bed::{base_dir, degraded_but_usable, kubernetes_bin, list, run, Arch, Bed, BedOptions, Member, Os, LOCALES};
pub use cluster::{etcd_config, Cluster};
