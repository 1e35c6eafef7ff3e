//! `cluster`: checks across the servers of a highly available plane (two or
//! more `--ssh`). Each names the servers it finds wrong; a server that
//! cannot be reached fails every check that needs it, by name, and the
//! rest still run.

use std::collections::BTreeMap;

use super::*;
use crate::cpcheck::{AsyncFn, ServerView};

fn cluster_check(id: &str, title: &str, f: impl for<'a> Fn(&'a Ctx, &'a [ServerView]) -> futures::future::BoxFuture<'a, Finding> + Send + Sync + 'static) -> Check {
    let run: AsyncFn = Box::new(move |ctx: &Ctx| {
        if ctx.servers.len() < 2 {
            return async { Finding::skip("needs two or more servers (--ssh A --ssh B …)") }.boxed();
        }
        f(ctx, &ctx.servers)
    });
    Check { id: id.into(), group: "cluster", title: title.into(), run: Runner::Async(run) }
}

/// The address a server's apiserver advertises: its installed
/// `--advertise-address`, else its default route's interface address.
pub fn advertised(p: &Probe) -> Option<String> {
    installed(p, APISERVER).and_then(|f| f.get("advertise-address").map(str::to_string)).or_else(|| p.default_address.clone())
}

/// `NAME: why` for each server that could not be read.
fn unreadable(servers: &[ServerView]) -> Vec<String> {
    servers.iter().filter_map(|s| s.probe.as_ref().err().map(|e| format!("{}: {}", s.name, e))).collect()
}

/// An etcd member as the v3 gateway lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub name: String,
    pub peer_hosts: Vec<String>,
}

/// The members in etcd's answer to /v3/cluster/member/list.
pub fn members(json: &str) -> Result<Vec<Member>, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|_| {
        let first = json.lines().next().unwrap_or("").chars().take(80).collect::<String>();
        if first.is_empty() {
            "no answer".to_string()
        } else {
            format!("not a member list: {first}")
        }
    })?;
    let list = v["members"].as_array().ok_or("the answer has no members")?;
    Ok(list
        .iter()
        .map(|m| Member {
            id: m["ID"].as_str().map(str::to_string).unwrap_or_else(|| m["ID"].to_string()),
            name: m["name"].as_str().unwrap_or("").to_string(),
            peer_hosts: m["peerURLs"].as_array().into_iter().flatten().filter_map(|u| u.as_str()).filter_map(crate::pki::host_of).collect(),
        })
        .collect())
}

/// The checks of this group, in report order.
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    v.push(cluster_check("cluster.apiservers-ready", "every server's kube-apiserver answers /readyz", |_, servers| {
        async move {
            let answers = futures::future::join_all(servers.iter().map(|s| async move {
                match &s.api {
                    Err(e) => Err(format!("{}: {e}", s.name)),
                    Ok(c) => match endpoints::get(c, "/readyz?verbose").await {
                        (200, _) => Ok(s.name.clone()),
                        (0, body) => Err(format!("{}: /readyz → {}", s.name, body.lines().next().unwrap_or(""))),
                        (status, body) => {
                            let failing = endpoints::failing_checks(&body);
                            Err(format!("{}: /readyz → HTTP {status}{}", s.name, if failing.is_empty() { String::new() } else { format!(" ({} failing)", failing.join(", ")) }))
                        }
                    },
                }
            }))
            .await;
            let bad: Vec<String> = answers.iter().filter_map(|a| a.as_ref().err().cloned()).collect();
            if bad.is_empty() {
                Finding::pass(format!("ready: {}", answers.into_iter().flatten().collect::<Vec<_>>().join(", ")))
            } else {
                Finding::fail(bad.join("; "), "on each server named: systemctl status kube-apiserver; journalctl -u kube-apiserver (a failing etcd check: systemctl status etcd)")
            }
        }
        .boxed()
    }));
    v.push(cluster_check("cluster.endpoints", "default/kubernetes Endpoints list exactly every server's advertise address", |ctx, servers| {
        async move {
            let Ok(client) = &ctx.api else { return Finding::skip(ctx.api.as_ref().err().cloned().unwrap_or_default()) };
            let ep = match Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
                Ok(Some(e)) => e,
                Ok(None) => return Finding::fail("Endpoints default/kubernetes does not exist", "journalctl -u kube-apiserver"),
                Err(e) => return Finding::fail(format!("cannot get Endpoints: {e}"), "check the credentials"),
            };
            let mut listed: Vec<(String, i32)> = Vec::new();
            for s in ep.subsets.unwrap_or_default() {
                let ports: Vec<i32> = s.ports.unwrap_or_default().iter().map(|p| p.port).collect();
                for a in s.addresses.unwrap_or_default() {
                    for p in &ports {
                        listed.push((a.ip.clone(), *p));
                    }
                }
            }
            let mut bad = unreadable(servers);
            let mut expected = Vec::new();
            for s in servers {
                let Ok(p) = &s.probe else { continue };
                let port = serving_port(Some(p), APISERVER) as i32;
                match advertised(p) {
                    None => bad.push(format!("{}: no advertise address (no default route, no --advertise-address)", s.name)),
                    Some(a) => {
                        if !listed.contains(&(a.clone(), port)) {
                            bad.push(format!("{} ({a}:{port}) is not listed", s.name));
                        }
                        expected.push((a, port));
                    }
                }
            }
            let extra: Vec<String> = listed.iter().filter(|l| !expected.contains(l)).map(|(a, p)| format!("{a}:{p}")).collect();
            if !extra.is_empty() && bad.is_empty() {
                bad.push(format!("{} listed but not one of the servers", extra.join(", ")));
            }
            let shown: Vec<String> = listed.iter().map(|(a, p)| format!("{a}:{p}")).collect();
            if bad.is_empty() {
                Finding::pass(format!("{} ({} servers)", shown.join(", "), servers.len()))
            } else {
                Finding::fail(
                    format!("{} (listed: {})", bad.join("; "), if shown.is_empty() { "none".into() } else { shown.join(", ") }),
                    "an apiserver that is down drops out of the list; one that is up but missing: journalctl -u kube-apiserver (advertise address)",
                )
            }
        }
        .boxed()
    }));
    v.push(cluster_check("cluster.leases", "each leader Lease is held by one of the servers and is fresh", |ctx, servers| {
        async move {
            let Ok(client) = &ctx.api else { return Finding::skip(ctx.api.as_ref().err().cloned().unwrap_or_default()) };
            let hostnames: BTreeMap<&str, &str> = servers.iter().filter_map(|s| s.probe.as_ref().ok().map(|p| (p.hostname.as_str(), s.name.as_str()))).collect();
            let skew = servers.iter().find_map(|s| s.probe.as_ref().ok()).map(|p| p.skew).unwrap_or(0.0);
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            for c in UNITS.iter().map(|u| u.component).filter(|c| *c != APISERVER) {
                match Api::<Lease>::namespaced(client.clone(), "kube-system").get_opt(c).await {
                    Ok(Some(l)) => {
                        let spec = l.spec.unwrap_or_default();
                        let holder = spec.holder_identity.clone().unwrap_or_default();
                        let host = holder.split('_').next().unwrap_or("");
                        match (hostnames.get(host), endpoints::lease_verdict(&spec, now, 0)) {
                            (Some(server), Ok(_)) => good.push(format!("{c} by {server}")),
                            (None, _) => bad.push(format!("{c}: held by {holder}, which is none of the servers ({})", hostnames.keys().copied().collect::<Vec<_>>().join(", "))),
                            (Some(server), Err(why)) => bad.push(format!("{c} ({server}): {why}")),
                        }
                    }
                    Ok(None) => bad.push(format!("{c}: no Lease")),
                    Err(e) => bad.push(format!("{c}: cannot get its Lease: {e}")),
                }
            }
            bad.extend(unreadable(servers));
            if bad.is_empty() {
                Finding::pass(format!("held: {}", good.join(", ")))
            } else {
                Finding::fail(bad.join("; "), "systemctl status kube-controller-manager kube-scheduler on the servers; journalctl -u them")
            }
        }
        .boxed()
    }));
    v.push(cluster_check("cluster.same-files", "every server has the same binaries, units, configs, certificates and secrets", |_, servers| {
        async move {
            let mut bad = unreadable(servers);
            let read: Vec<(&str, &Probe)> = servers.iter().filter_map(|s| s.probe.as_ref().ok().map(|p| (s.name.as_str(), p))).collect();
            let mut uncompared = Vec::new();
            for f in FILES {
                // What each server has: a fingerprint, `absent`, or nothing (not compared).
                let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                for (name, p) in &read {
                    match (p.fingerprints.get(f.dest), p.files.contains_key(f.dest)) {
                        (Some(fp), _) => seen.entry(fp.clone()).or_default().push(name),
                        (None, false) => seen.entry("absent".into()).or_default().push(name),
                        (None, true) => uncompared.push(format!("{} on {name}", f.dest)),
                    }
                }
                if seen.len() > 1 {
                    // The odd ones out: every group but the largest.
                    let mut groups: Vec<(String, Vec<&str>)> = seen.into_iter().collect();
                    groups.sort_by_key(|(_, n)| std::cmp::Reverse(n.len()));
                    for (fp, names) in groups.iter().skip(1) {
                        let how = if fp == "absent" { "absent" } else { "differs" };
                        bad.push(format!("{} {how} on {}", f.dest, names.join(", ")));
                    }
                }
            }
            if !bad.is_empty() {
                Finding::fail(bad.join("; "), "run kubectl bootstrap server with every server again: it puts the same files on each")
            } else if !uncompared.is_empty() {
                Finding::warn(format!("not compared (no basenc on the server for the keyed hash): {}", uncompared.join(", ")), "install coreutils ≥ 8.31 on the servers")
            } else {
                Finding::pass(format!("{} files alike on {} servers (secrets compared by an HMAC under a key of this run only)", FILES.len(), read.len()))
            }
        }
        .boxed()
    }));
    v.push(cluster_check("cluster.etcd-members", "every etcd member is healthy and the members are the servers", |_, servers| {
        async move {
            let mut bad = unreadable(servers);
            let mut lists: Vec<(&str, Vec<Member>)> = Vec::new();
            for s in servers {
                let Ok(p) = &s.probe else { continue };
                if !p.etcd_health.contains("\"health\":\"true\"") {
                    let why = if p.etcd_health.is_empty() { "no answer".to_string() } else { p.etcd_health.chars().take(80).collect() };
                    bad.push(format!("{}: etcd /health → {why}", s.name));
                    continue;
                }
                match members(&p.etcd_members) {
                    Ok(m) => lists.push((s.name.as_str(), m)),
                    Err(e) => bad.push(format!("{}: etcd member list: {e}", s.name)),
                }
            }
            if let Some((first, list)) = lists.first() {
                let ids = |l: &[Member]| -> Vec<String> {
                    let mut v: Vec<String> = l.iter().map(|m| m.id.clone()).collect();
                    v.sort();
                    v
                };
                for (name, other) in lists.iter().skip(1) {
                    if ids(other) != ids(list) {
                        bad.push(format!("{name} sees other members than {first}"));
                    }
                }
                for s in servers {
                    let Ok(p) = &s.probe else { continue };
                    let mine: Vec<&String> = p.addresses.iter().chain(p.default_address.iter()).collect();
                    if !list.iter().any(|m| m.peer_hosts.iter().any(|h| mine.contains(&h))) {
                        bad.push(format!("{}: no etcd member has its address", s.name));
                    }
                }
                let addresses: Vec<&String> = servers.iter().filter_map(|s| s.probe.as_ref().ok()).flat_map(|p| p.addresses.iter().chain(p.default_address.iter())).collect();
                for m in list.iter().filter(|m| !m.peer_hosts.iter().any(|h| addresses.contains(&h))) {
                    bad.push(format!("member {} ({}) is none of the servers", m.name, m.peer_hosts.join(", ")));
                }
            }
            if bad.is_empty() {
                let names: Vec<String> = lists.first().map(|(_, l)| l.iter().map(|m| m.name.clone()).collect()).unwrap_or_default();
                Finding::pass(format!("{} healthy members: {}", names.len(), names.join(", ")))
            } else {
                Finding::fail(bad.join("; "), "on each server named: systemctl status etcd; journalctl -u etcd")
            }
        }
        .boxed()
    }));
    let endpoint: AsyncFn = Box::new(|ctx: &Ctx| {
        async move {
            match &ctx.endpoint {
                None => Finding::skip("no --endpoint given"),
                Some((url, Err(e))) => Finding::fail(format!("{url}: {e}"), "check the load balancer or virtual IP"),
                Some((url, Ok(c))) => match endpoints::get(c, "/readyz").await {
                    (200, _) => Finding::pass(format!("{url}/readyz ok")),
                    (0, body) => Finding::fail(format!("{url}: {}", body.lines().next().unwrap_or("")), "check the load balancer or virtual IP reaches the servers' port 6443"),
                    (status, _) => Finding::fail(format!("{url}/readyz → HTTP {status}"), "check the apiservers behind it (cluster.apiservers-ready)"),
                },
            }
        }
        .boxed()
    });
    v.push(Check { id: "cluster.endpoint".into(), group: "cluster", title: "--endpoint reaches a ready apiserver".into(), run: Runner::Async(endpoint) });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_member_lists_parse_and_bad_answers_say_why() {
        // As etcd 3.4's gateway answers (recorded from the bed).
        let json = r#"{"header":{"cluster_id":"961156111585423019"},"members":[{"ID":"10440855418377223755","name":"server-1","peerURLs":["http://10.240.1.11:2380"],"clientURLs":["http://127.0.0.1:2379"]},{"ID":"11415862959627867463","name":"server-2","peerURLs":["http://10.240.1.12:2380"]}]}"#;
        let m = members(json).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].name.as_str(), m[0].peer_hosts.clone()), ("server-1", vec!["10.240.1.11".to_string()]));
        assert_eq!(members("").unwrap_err(), "no answer");
        assert!(members("bash: connect: Connection refused").unwrap_err().starts_with("not a member list: bash: connect"));
    }
}
