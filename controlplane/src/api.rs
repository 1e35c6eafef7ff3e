//! Kubernetes API client setup from a kubeconfig, as kubectl reads it:
//! `--kubeconfig`, else `KUBECONFIG`, else ~/.kube/config; `--context`.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

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

pub fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, Error> {
    Kubeconfig::read_from(path).map_err(|e| Error::Input(format!("--kubeconfig {}: {e}", path.display())))
}

/// A client config for `args`, with `default` as the kubeconfig when neither
/// --kubeconfig nor KUBECONFIG says otherwise.
pub async fn config(args: &KubeArgs, default: Option<&Path>) -> Result<kube::Config, Error> {
    let opts = KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let path = args.kubeconfig.clone().or_else(|| std::env::var_os("KUBECONFIG").is_none().then(|| default.map(Path::to_path_buf)).flatten());
    let kc = match &path {
        Some(p) => read_kubeconfig(p)?,
        None => Kubeconfig::read().map_err(|e| Error::Input(format!("kubeconfig: {e} (pass --kubeconfig FILE)")))?,
    };
    kube::Config::from_custom_kubeconfig(kc, &opts).await.map_err(|e| {
        let shown = path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "$KUBECONFIG".into());
        Error::Input(format!("kubeconfig {shown}: {e}"))
    })
}
