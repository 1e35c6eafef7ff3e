//! `leader`: every component that elects a leader holds a live Lease.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[Def { id: "leader", title: |i| format!("{} holds a fresh leader Lease", i.component()), each: Each::Client, run: Run::Api(lease) }];

fn lease<'a>(ctx: &'a Ctx, client: &'a kube::Client, i: Item) -> futures::future::BoxFuture<'a, Finding> {
    let c = i.component();
    async move {
        match Api::<Lease>::namespaced(client.clone(), "kube-system").get_opt(c.name()).await {
            Ok(Some(l)) => {
                // Judged by the server's clock when there is one, and by the Lease's own duration.
                let _ = ctx.probe().await; // what the server read, once it has
                let skew = ctx.host().map(|h| h.skew).unwrap_or(0.0);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
                match endpoints::lease_verdict(&l.spec.unwrap_or_default(), now, 0) {
                    Ok(d) => Finding::pass(d),
                    Err(why) => Finding::fail(format!("{c}: {why}"), format!("systemctl status {c}; journalctl -u {c}")),
                }
            }
            Ok(None) => Finding::fail(format!("no Lease kube-system/{c}"), format!("systemctl status {c} (leader election has not happened)")),
            Err(e) => Finding::fail(format!("cannot get the Lease: {e}"), "check the credentials"),
        }
    }
    .boxed()
}
