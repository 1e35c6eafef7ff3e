//! `cluster`: checks across the servers of a highly available plane (two or
//! more `--ssh`). Each names the servers it finds wrong; a server that
//! cannot be reached fails every check that needs it, by name, and the
//! rest still run.

use std::collections::BTreeMap;

use super::*;
use crate::cpcheck::ServerView;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "cluster.apiservers-ready", title: |_| format!("every server's {APISERVER} answers /readyz"), each: Each::One, run: Run::Async(apiservers_ready) },
    Def {
        id: "cluster.endpoints",
        title: |_| "default/kubernetes Endpoints list exactly every server's advertise address".into(),
        each: Each::One,
        run: Run::Async(kubernetes_endpoints),
    },
    Def { id: "cluster.leases", title: |_| "each leader Lease is held by one of the servers and is fresh".into(), each: Each::One, run: Run::Async(leases) },
    Def {
        id: "cluster.same-files",
        title: |_| "every server has the same binaries, units, configs, certificates and secrets".into(),
        each: Each::One,
        run: Run::Async(same_files),
    },
    Def { id: "cluster.etcd-members", title: |_| "every etcd member is healthy and the members are the servers".into(), each: Each::One, run: Run::Async(etcd_members) },
    Def { id: "cluster.endpoint", title: |_| "--endpoint reaches a ready apiserver".into(), each: Each::One, run: Run::Async(endpoint) },
];

/// SKIP unless there are several servers to compare.
fn several(ctx: &Ctx) -> Option<Finding> {
    (ctx.servers.len() < 2).then(|| Finding::skip("needs two or more servers (--ssh A --ssh B …)"))
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
pub fn members(json: &str) -> Result<Vec<Member>, crate::remote::BadReply> {
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

fn apiservers_ready(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    let servers = &ctx.servers;
    async move {
        if let Some(skip) = several(ctx) {
            return skip;
        }
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
            Finding::fail(
                bad.join("; "),
                format!("on each server named: systemctl status {u}; journalctl -u {u} (a failing etcd check: systemctl status etcd)", u = APISERVER.unit()),
            )
        }
    }
    .boxed()
}

fn kubernetes_endpoints(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    let servers = &ctx.servers;
    async move {
        if let Some(skip) = several(ctx) {
            return skip;
        }
        let Ok(client) = &ctx.api else { return Finding::skip(ctx.api.as_ref().err().cloned().unwrap_or_default()) };
        let ep = match Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
            Ok(Some(e)) => e,
            Ok(None) => return Finding::fail("Endpoints default/kubernetes does not exist", format!("journalctl -u {}", APISERVER.unit())),
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
                format!("an apiserver that is down drops out of the list; one that is up but missing: journalctl -u {} (advertise address)", APISERVER.unit()),
            )
        }
    }
    .boxed()
}

fn leases(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    let servers = &ctx.servers;
    async move {
        if let Some(skip) = several(ctx) {
            return skip;
        }
        let Ok(client) = &ctx.api else { return Finding::skip(ctx.api.as_ref().err().cloned().unwrap_or_default()) };
        let hostnames: BTreeMap<&str, &str> = servers.iter().filter_map(|s| s.probe.as_ref().ok().map(|p| (p.hostname.as_str(), s.name.as_str()))).collect();
        let skew = servers.iter().find_map(|s| s.probe.as_ref().ok()).map(|p| p.skew).unwrap_or(0.0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for c in Component::clients() {
            match Api::<Lease>::namespaced(client.clone(), "kube-system").get_opt(c.name()).await {
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
            let units: Vec<&str> = Component::clients().map(|c| c.unit()).collect();
            Finding::fail(bad.join("; "), format!("systemctl status {} on the servers; journalctl -u them", units.join(" ")))
        }
    }
    .boxed()
}

fn same_files(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    let servers = &ctx.servers;
    async move {
        if let Some(skip) = several(ctx) {
            return skip;
        }
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
                bad.extend(odd_ones(f.dest, seen));
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
}

/// Where servers disagree on a file: the odd ones out (every group but the
/// largest; a missing file is always the odd one), or, when no group is
/// larger than the others, every group.
fn odd_ones(dest: &str, seen: BTreeMap<String, Vec<&str>>) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&str>)> = seen.into_iter().collect();
    groups.sort_by_key(|(fp, n)| (std::cmp::Reverse(n.len()), fp == "absent"));
    let tie = groups.len() > 1 && groups[0].1.len() == groups[1].1.len() && groups.iter().all(|(fp, _)| fp != "absent");
    if tie {
        let mut sides: Vec<String> = groups.iter().map(|(_, n)| n.join(", ")).collect();
        sides.sort();
        return vec![format!("{dest} differs between {}", sides.join(" and "))];
    }
    groups.iter().skip(1).map(|(fp, names)| format!("{dest} {} on {}", if fp == "absent" { "absent" } else { "differs" }, names.join(", "))).collect()
}

fn etcd_members(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    let servers = &ctx.servers;
    async move {
        if let Some(skip) = several(ctx) {
            return skip;
        }
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
}

fn endpoint(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    async move {
        match &ctx.endpoint {
            None => Finding::skip("no --endpoint given"),
            Some((e, Err(why))) => Finding::fail(format!("{}: {why}", e.url()), "check the load balancer or virtual IP"),
            Some((e, Ok(c))) => match endpoints::get(c, "/readyz").await {
                (200, _) => Finding::pass(format!("{}/readyz ok", e.url())),
                (0, body) => Finding::fail(format!("{}: {}", e.url(), body.lines().next().unwrap_or("")), "check the load balancer or virtual IP reaches the servers' port 6443"),
                (status, _) => Finding::fail(format!("{}/readyz → HTTP {status}", e.url()), "check the apiservers behind it (cluster.apiservers-ready)"),
            },
        }
    }
    .boxed()
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
        assert_eq!(members("").unwrap_err().to_string(), "no answer");
        assert!(members("bash: connect: Connection refused").unwrap_err().to_string().starts_with("not a member list: bash: connect"));
    }

    use crate::cpcheck::checks::testing;
    use crate::cpcheck::{Group, Status};

    /// Two servers as a healthy plane shows them; `break_it` changes what
    /// the second one (or the plane's API) says.
    struct Plane {
        s2: Probe,
        s2_readyz: u16,
        endpoints: Vec<&'static str>,
        holder: &'static str,
        s2_readable: bool,
        endpoint_readyz: u16,
    }

    impl Default for Plane {
        fn default() -> Self {
            Plane {
                s2: server("server-2", "10.240.1.12"),
                s2_readyz: 200,
                endpoints: vec!["10.240.1.11", "10.240.1.12"],
                holder: "server-1_abc",
                s2_readable: true,
                endpoint_readyz: 200,
            }
        }
    }

    fn server(hostname: &str, address: &str) -> Probe {
        let mut p = testing::healthy();
        p.hostname = hostname.into();
        p.addresses = vec![address.into()];
        p.default_address = Some(address.into());
        p.etcd_members =
            r#"{"members":[{"ID":"1","name":"server-1","peerURLs":["http://10.240.1.11:2380"]},{"ID":"2","name":"server-2","peerURLs":["http://10.240.1.12:2380"]}]}"#.into();
        p.fingerprints = FILES.iter().map(|f| (f.dest.to_string(), "same".to_string())).collect();
        p
    }

    fn readyz(status: u16) -> kube::Client {
        testing::api(move |_, p| p.starts_with("/readyz").then(|| (status, if status == 200 { "ok".to_string() } else { "[-]etcd failed\n".to_string() })))
    }

    fn findings(plane: Plane) -> BTreeMap<String, (Status, String)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut ctx = Ctx::for_tests(false);
            let (endpoints, holder) = (plane.endpoints.clone(), plane.holder);
            ctx.api = Ok(testing::api(move |_, p| {
                if p.starts_with("/api/v1/namespaces/default/endpoints/kubernetes") {
                    let addresses: Vec<serde_json::Value> = endpoints.iter().map(|ip| serde_json::json!({ "ip": ip })).collect();
                    return Some((200, serde_json::json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": "kubernetes"}, "subsets": [{"addresses": addresses, "ports": [{"port": 6443}]}]}).to_string()));
                }
                p.starts_with("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/").then(|| {
                    let now = k8s_openapi::jiff::Timestamp::now();
                    (200, serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "x", "namespace": "kube-system"}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": now.to_string()}}).to_string())
                })
            }));
            let s2 = if plane.s2_readable { Ok(plane.s2) } else { Err("cannot connect to s2: Connection refused".to_string()) };
            ctx.servers = vec![
                ServerView { name: "s1".into(), probe: Ok(server("server-1", "10.240.1.11")), api: Ok(readyz(200)) },
                ServerView { name: "s2".into(), probe: s2, api: Ok(readyz(plane.s2_readyz)) },
            ];
            ctx.endpoint = Some((crate::model::Endpoint::parse_https("https://lb.example").unwrap(), Ok(readyz(plane.endpoint_readyz))));
            let checks: Vec<crate::cpcheck::Check> = CHECKS.iter().flat_map(|d| d.expand(Group::Cluster)).collect();
            let cluster: Vec<&crate::cpcheck::Check> = checks.iter().collect();
            crate::cpcheck::run(&ctx, &cluster, &[]).await.into_iter().map(|r| (r.id, (r.finding.status, r.finding.detail))).collect()
        })
    }

    #[test]
    fn the_odd_server_out_is_named_and_a_tie_names_both() {
        let seen = |v: &[(&str, &[&'static str])]| v.iter().map(|(k, n)| (k.to_string(), n.to_vec())).collect::<BTreeMap<_, _>>();
        assert_eq!(odd_ones("/f", seen(&[("a", &["s1", "s3"]), ("b", &["s2"])])), ["/f differs on s2"]);
        assert_eq!(odd_ones("/f", seen(&[("a", &["s1"]), ("b", &["s2"])])), ["/f differs between s1 and s2"]);
        assert_eq!(odd_ones("/f", seen(&[("a", &["s1"]), ("absent", &["s2"])])), ["/f absent on s2"]);
    }

    #[test]
    fn a_healthy_plane_of_two_passes_every_cluster_check() {
        let f = findings(Plane::default());
        assert_eq!(f.len(), CHECKS.len());
        for (id, (status, detail)) in &f {
            assert_eq!(*status, Status::Pass, "{id}: {detail}");
        }
    }

    /// Each breakage fails the check that exists to catch it, naming the
    /// server; the others still pass.
    #[test]
    fn each_cluster_check_names_the_server_it_finds_wrong() {
        let d = Plane::default;
        let fingerprint = |p: Plane| {
            let mut p = p;
            p.s2.fingerprints.insert(FILES[0].dest.into(), "other".into());
            p
        };
        let etcd_down = |p: Plane| {
            let mut p = p;
            p.s2.etcd_health = "{\"health\":\"false\"}".into();
            p
        };
        let cases: Vec<(&str, Plane, &str, String)> = vec![
            ("an apiserver not ready", Plane { s2_readyz: 500, ..d() }, "cluster.apiservers-ready", "s2: /readyz → HTTP 500 (etcd failing)".into()),
            ("a server missing from Endpoints", Plane { endpoints: vec!["10.240.1.11"], ..d() }, "cluster.endpoints", "s2 (10.240.1.12:6443) is not listed".into()),
            (
                "a stranger in Endpoints",
                Plane { endpoints: vec!["10.240.1.11", "10.240.1.12", "10.9.9.9"], ..d() },
                "cluster.endpoints",
                "10.9.9.9:6443 listed but not one of the servers".into(),
            ),
            ("a Lease held elsewhere", Plane { holder: "elsewhere_1", ..d() }, "cluster.leases", "held by elsewhere_1, which is none of the servers".into()),
            ("a file that differs", fingerprint(d()), "cluster.same-files", format!("{} differs between s1 and s2", FILES[0].dest)),
            ("an etcd member down", etcd_down(d()), "cluster.etcd-members", "s2: etcd /health".into()),
            ("the load balancer's backend not ready", Plane { endpoint_readyz: 503, ..d() }, "cluster.endpoint", "https://lb.example:443/readyz → HTTP 503".into()),
        ];
        for (what, plane, id, says) in cases {
            let f = findings(plane);
            let (status, detail) = &f[id];
            assert_eq!(*status, Status::Fail, "{what}: {id}: {detail}");
            assert!(detail.contains(&says), "{what}: {id}: {detail}");
            let others: Vec<_> = f.iter().filter(|(i, (s, _))| i.as_str() != id && *s != Status::Pass).collect();
            assert!(others.is_empty(), "{what}: only {id} fails: {others:#?}");
        }
        // A server that cannot be read fails every check that needs what
        // it would have said, by name.
        let f = findings(Plane { s2_readable: false, ..d() });
        for id in ["cluster.endpoints", "cluster.same-files", "cluster.etcd-members", "cluster.leases"] {
            assert_eq!(f[id].0, Status::Fail, "{id}: {}", f[id].1);
            assert!(f[id].1.contains("s2: cannot connect to s2"), "{id}: {}", f[id].1);
        }
    }
}
