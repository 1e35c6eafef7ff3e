//! The RBAC step: server-side apply of the compiled-in ClusterRoles and
//! ClusterRoleBindings, through the tunnel the wait step opened.

use super::Exec;
use crate::Error;

pub async fn run(x: &mut Exec<'_>) -> Result<(), Error> {
    // Seen as desired before the run: nothing to apply.
    if let Some(unchanged) = x.look.as_mut().and_then(|l| l.rbac.take()) {
        for r in &unchanged {
            x.ui.step(&format!("  {} {} {}", r.kind, r.name, r.result));
        }
        x.outcome.rbac = unchanged;
        return Ok(());
    }
    let timeout = x.timeout;
    let api = x.clients().await?.api.clone();
    let applied = match tokio::time::timeout(timeout, crate::kube::rbac::apply(&api)).await {
        Ok(r) => r?,
        Err(_) => return Err(Error::Server(format!("applying the RBAC got no answer within {}s (--timeout)", timeout.as_secs()))),
    };
    for r in &applied {
        x.ui.step(&format!("  {} {} {}", r.kind, r.name, r.result));
    }
    x.outcome.rbac = applied;
    Ok(())
}
