//! Kubernetes API client setup from a kubeconfig, as kubectl reads it:
//! `--kubeconfig`, else `KUBECONFIG` (a `:`-separated list, merged), else a
//! default (bootstrap: the assets' admin.kubeconfig), else ~/.kube/config;
//! `--context`. The file holds credentials: it is read only if it is a
//! regular file, and errors give positions, never content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::output::redact;
use crate::Error;

/// kubectl's own choices of credentials (kubectl does not pass its global
/// flags to plugins, so each plugin takes them).
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    pub kubeconfig: Option<PathBuf>,
    /// The context to use.
    pub context: Option<String>,
}

/// The kubeconfig a run uses, resolved and parsed.
#[derive(Clone)]
pub struct Resolved {
    /// How to name it in messages: `--kubeconfig PATH`, `$KUBECONFIG (…)`, or the path.
    pub shown: String,
    pub kubeconfig: Kubeconfig,
    pub context: Option<String>,
}

fn read_one(path: &Path, shown: &str) -> Result<Kubeconfig, Error> {
    let bytes = crate::local::files::read_regular(path, crate::local::files::SMALL_FILE_LIMIT).map_err(|e| Error::Input(format!("{shown}: {e}")))?;
    crate::pki::parse_kubeconfig(&bytes).map_err(|e| Error::Input(format!("{shown}: {e}")))
}

/// Which kubeconfig `args` (and the environment) select, with `default` used
/// when neither --kubeconfig nor KUBECONFIG says.
pub fn resolve(args: &KubeOptions, default: Option<&Path>) -> Result<Resolved, Error> {
    let show = |p: &Path| redact::line(&p.display().to_string());
    let (shown, kubeconfig) = if let Some(p) = &args.kubeconfig {
        let shown = format!("--kubeconfig {}", show(p));
        let kc = read_one(p, &shown)?;
        (shown, kc)
    } else if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect();
        let shown = format!("$KUBECONFIG ({})", paths.iter().map(|p| show(p)).collect::<Vec<_>>().join(":"));
        let mut merged: Option<Kubeconfig> = None;
        for p in paths.iter().filter(|p| p.exists()) {
            let kc = read_one(p, &format!("$KUBECONFIG {}", show(p)))?;
            merged = Some(match merged {
                None => kc,
                Some(m) => m.merge(kc).map_err(|e| Error::Input(format!("{shown}: {}", redact::parse_error(&e))))?,
            });
        }
        (shown.clone(), merged.ok_or_else(|| Error::Input(format!("{shown}: none of these files exists")))?)
    } else {
        let p = match default {
            Some(d) => d.to_path_buf(),
            None => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")).ok_or_else(|| Error::Input("no kubeconfig: pass --kubeconfig FILE".into()))?,
        };
        let shown = show(&p);
        if !p.exists() && default.is_none() {
            return Err(Error::Input(format!("kubeconfig {shown}: no such file (pass --kubeconfig FILE)")));
        }
        let kc = read_one(&p, &shown)?;
        (shown, kc)
    };
    Ok(Resolved { shown, kubeconfig, context: args.context.clone() })
}

/// A client config for `args`, with `default` as the kubeconfig when neither
/// --kubeconfig nor KUBECONFIG says otherwise. Every request is bounded:
/// an apiserver that accepts a connection and never answers costs at most
/// `timeout` per request.
pub async fn config(args: &KubeOptions, default: Option<&Path>, timeout: Duration) -> Result<kube::Config, Error> {
    let r = resolve(args, default)?;
    from_resolved(r, timeout).await
}

pub async fn from_resolved(r: Resolved, timeout: Duration) -> Result<kube::Config, Error> {
    let opts = KubeConfigOptions { context: r.context.clone(), ..Default::default() };
    let mut c = kube::Config::from_custom_kubeconfig(r.kubeconfig, &opts).await.map_err(|e| Error::Input(format!("kubeconfig {}: {}", r.shown, redact::parse_error(&e))))?;
    bound(&mut c, timeout);
    Ok(c)
}

/// Connect, read and write timeouts of at most `timeout` (and 30 s).
pub fn bound(c: &mut kube::Config, timeout: Duration) {
    let t = timeout.min(Duration::from_secs(30));
    c.connect_timeout = Some(t.min(Duration::from_secs(10)));
    c.read_timeout = Some(t);
    c.write_timeout = Some(t);
}
