//! `health`: the apiserver's /livez and /readyz, the others' /healthz (through SSH tunnels).

use super::*;

/// The checks of this group, in report order.
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    for path in ["livez", "readyz"] {
        v.push(api_check(&format!("health.{path}"), "health", &format!("kube-apiserver /{path}"), move |_, client| {
            async move {
                let (status, body) = endpoints::get(client, &format!("/{path}?verbose")).await;
                if status == 200 {
                    Finding::pass(format!("/{path} ok ({} checks)", body.lines().filter(|l| l.starts_with("[+]")).count()))
                } else {
                    let failing = endpoints::failing_checks(&body);
                    let what = if failing.is_empty() {
                        format!("HTTP {status}: {}", body.lines().next().unwrap_or(""))
                    } else {
                        failing.iter().map(|f| format!("[-]{f} failed")).collect::<Vec<_>>().join(", ")
                    };
                    Finding::fail(format!("/{path}: {what}"), "journalctl -u kube-apiserver; a failing etcd check means etcd is down or unreachable")
                }
            }
            .boxed()
        }));
    }
    for u in UNITS.iter().filter(|u| u.component != "kube-apiserver") {
        let c = u.component;
        let run: crate::cpcheck::AsyncFn = Box::new(move |ctx: &Ctx| {
            async move {
                match ctx.health.get(c) {
                    None => Finding::skip("needs --ssh (the port is reached through the server)"),
                    Some(Err(e)) => Finding::skip(e.clone()),
                    Some(Ok(client)) => {
                        let (status, body) = endpoints::get(client, "/healthz").await;
                        if status == 200 {
                            Finding::pass(format!("/healthz {}", body.trim()))
                        } else {
                            let why = if status == 0 { body.lines().next().unwrap_or("").to_string() } else { format!("HTTP {status}") };
                            Finding::fail(format!("/healthz: {why}"), format!("systemctl status {c}; journalctl -u {c}"))
                        }
                    }
                }
            }
            .boxed()
        });
        v.push(Check { id: format!("health.{c}"), group: "health", title: format!("{c} https /healthz (self-signed, not verified)"), run: Runner::Async(run) });
    }

    v
}
