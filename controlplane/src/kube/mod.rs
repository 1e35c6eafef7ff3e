//! The Kubernetes API: kubeconfigs read as kubectl reads them, clients
//! tunnelled over SSH, health endpoints and Leases, the RBAC objects.

pub mod config;
pub mod health;
pub mod rbac;
