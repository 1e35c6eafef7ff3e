//! What the two plugin binaries share on their command line, and nothing
//! else: clap arguments that turn into the library's plain options, the
//! duration parser, and kubectl's plugin plumbing ([`plugin`]).

use std::path::PathBuf;

pub mod plugin;

/// How to reach the server (the destination itself is positional in
/// bootstrap and `--ssh` in cpcheck).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SshArgs {
    /// Private key file (ssh -i).
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// SSH port (ssh -p).
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Jump host (ssh -J); its host key is checked like the server's.
    #[arg(short = 'J', long = "jump", value_name = "HOST")]
    pub jump: Option<String>,
    /// known_hosts file to check the server's host key against.
    #[arg(long = "known-hosts", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record an unknown host key (never a changed one).
    #[arg(long = "accept-new-host-key")]
    pub accept_new_host_key: bool,
    /// ssh_config to read instead of ~/.ssh/config (ssh -F); a jump host it names (ProxyJump) is checked like the server.
    #[arg(short = 'F', long = "ssh-config", value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

impl From<&SshArgs> for controlplane::remote::SshOptions {
    fn from(a: &SshArgs) -> Self {
        controlplane::remote::SshOptions {
            identity: a.identity.clone(),
            port: a.port,
            jump: a.jump.clone(),
            known_hosts: a.known_hosts.clone(),
            accept_new_host_key: a.accept_new_host_key,
            config: a.ssh_config.clone(),
        }
    }
}

/// kubectl's own flags for choosing credentials (kubectl does not pass its
/// global flags to plugins, so each plugin takes them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KubeArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use.
    #[arg(long = "context", value_name = "NAME")]
    pub context: Option<String>,
}

impl From<&KubeArgs> for controlplane::kube::config::KubeOptions {
    fn from(a: &KubeArgs) -> Self {
        controlplane::kube::config::KubeOptions { kubeconfig: a.kubeconfig.clone(), context: a.context.clone() }
    }
}

/// Unit flag overrides on top of the compiled-in manifests.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OverrideArgs {
    /// Override a unit flag: COMPONENT.FLAG=VALUE, e.g. kube-apiserver.v=3 (repeatable; wins over --config).
    #[arg(long = "set", value_name = "COMPONENT.FLAG=VALUE")]
    pub set: Vec<String>,
    /// YAML file of overrides: `COMPONENT: {FLAG: VALUE}`.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl From<&OverrideArgs> for controlplane::model::overrides::OverrideSources {
    fn from(a: &OverrideArgs) -> Self {
        controlplane::model::overrides::OverrideSources { set: a.set.clone(), config: a.config.clone() }
    }
}

/// Parses `--endpoint`: `https://HOST[:PORT]`, nothing else (both plugins).
pub fn parse_endpoint(s: &str) -> Result<controlplane::model::Endpoint, controlplane::error::Unusable> {
    controlplane::model::Endpoint::parse_https(s)
}

/// Parses a duration like `3m`, `90s`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 90s or 3m ({e})"))
}
