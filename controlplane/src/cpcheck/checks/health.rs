//! `health`: the apiserver's /livez and /readyz, the others' /healthz (through SSH tunnels).

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "health", title: |i| format!("{APISERVER} /{}", path(i)), each: Each::Path(&["livez", "readyz"]), run: Run::Api(apiserver) },
    Def { id: "health", title: |i| format!("{} https /healthz (self-signed, not verified)", i.component()), each: Each::Client, run: Run::Async(healthz) },
];

fn path(i: Item) -> &'static str {
    match i {
        Item::Path(p) => p,
        other => unreachable!("a health path check got {other:?}"),
    }
}

fn apiserver<'a>(ctx: &'a Ctx, client: &'a kube::Client, i: Item) -> futures::future::BoxFuture<'a, Finding> {
    let path = path(i);
    async move {
        let (status, body) = endpoints::get(client, &format!("/{path}?verbose")).await;
        if status == 200 {
            return Finding::pass(format!("/{path} ok ({} checks)", body.lines().filter(|l| l.starts_with("[+]")).count()));
        }
        let failing = endpoints::failing_checks(&body);
        let what = if failing.is_empty() {
            format!("HTTP {status}: {}", body.lines().next().unwrap_or(""))
        } else {
            failing.iter().map(|f| format!("[-]{f} failed")).collect::<Vec<_>>().join(", ")
        };
        with_cause(
            Finding::fail(format!("/{path}: {what}"), format!("journalctl -u {}; a failing etcd check means etcd is down or unreachable", APISERVER.unit())),
            ctx.host(),
            APISERVER,
        )
    }
    .boxed()
}

fn healthz(ctx: &Ctx, i: Item) -> futures::future::BoxFuture<'_, Finding> {
    let c = i.component();
    async move {
        match ctx.health.get(&c) {
            None => Finding::skip("needs --ssh (the port is reached through the server)"),
            Some(Err(e)) => Finding::skip(e.clone()),
            Some(Ok(client)) => {
                let (status, body) = endpoints::get(client, "/healthz").await;
                if status == 200 {
                    Finding::pass(format!("/healthz {}", body.trim()))
                } else {
                    let why = if status == 0 { body.lines().next().unwrap_or("").to_string() } else { format!("HTTP {status}") };
                    with_cause(Finding::fail(format!("/healthz: {why}"), format!("systemctl status {c}; journalctl -u {c}")), ctx.host(), c)
                }
            }
        }
    }
    .boxed()
}
