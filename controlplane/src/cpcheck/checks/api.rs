//! `api`: what the API serves: its version against the installed binary, nodes, pods, the `kubernetes` Service and its endpoints.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "api.version", title: |_| "/version".into(), each: Each::One, run: Run::Api(version) },
    Def { id: "api.cluster-info", title: |_| "control plane answers".into(), each: Each::One, run: Run::Api(cluster_info) },
    Def { id: "api.nodes", title: |_| "nodes listable".into(), each: Each::One, run: Run::Api(nodes) },
    Def { id: "api.pods", title: |_| "pods listable".into(), each: Each::One, run: Run::Api(pods) },
    Def { id: "api.service", title: |_| "default/kubernetes Service".into(), each: Each::One, run: Run::Api(service) },
    Def { id: "api.endpoints", title: |_| "default/kubernetes Endpoints point at the apiserver".into(), each: Each::One, run: Run::Api(kubernetes_endpoints) },
];

fn version<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        let (status, body) = endpoints::get(client, "/version").await;
        if status != 200 {
            return Finding::fail(format!("/version: HTTP {status}"), format!("journalctl -u {}", APISERVER.unit()));
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let show = |k: &str| crate::output::redact::line(v[k].as_str().unwrap_or("?"));
        let (git, platform) = (show("gitVersion"), show("platform"));
        let _ = ctx.probe().await; // what the server read, once it has
        let Some(host) = ctx.host() else {
            return Finding::pass(format!("gitVersion {git}, platform {platform} (no --ssh: not compared with the installed binary or the server's architecture)"));
        };
        let arch = crate::model::arch::Arch::from_uname(&host.arch);
        match arch {
            Some(a) if a.platform() != platform => {
                return Finding::fail(
                    format!("the API says platform {platform}, the server is {a} (uname -m {})", crate::output::redact::line(&host.arch)),
                    "install the control-plane binaries built for the server's architecture (kubectl bootstrap server DEST)",
                )
            }
            None => {
                return Finding::warn(
                    format!("gitVersion {git}, platform {platform}; the server's architecture `{}` is not one this tool knows", crate::output::redact::line(&host.arch)),
                    "",
                )
            }
            Some(_) => {}
        }
        // Exact version tokens: v1.32.10 is not v1.32.1.
        match host.units.get(APISERVER.unit()).and_then(|u| u.binary_version.clone()) {
            Some(b) if !b.split_whitespace().any(|w| w == git) => {
                Finding::warn(format!("API says {git}, {} says {b}", APISERVER.exec()), format!("systemctl restart {} (the binary changed since it started)", APISERVER.unit()))
            }
            Some(_) => Finding::pass(format!("gitVersion {git}, platform {platform}, as the installed binary and the server say")),
            None => Finding::warn(
                format!("gitVersion {git}, platform {platform}; the installed {} did not say its version, so it was not compared", APISERVER.exec()),
                format!("run {} --version on the server", APISERVER.exec()),
            ),
        }
    }
    .boxed()
}

fn cluster_info<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        match client.apiserver_version().await {
            Ok(_) => Finding::pass(format!("Kubernetes control plane is running at {}", ctx.api_url)),
            Err(e) => Finding::fail(format!("{}: {e}", ctx.api_url), "check the kubeconfig's server and credentials"),
        }
    }
    .boxed()
}

fn nodes<'a>(_: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        match Api::<Node>::all(client.clone()).list(&ListParams::default()).await {
            Ok(l) => Finding::pass(format!("{} node(s)", l.items.len())),
            Err(e) => Finding::fail(format!("cannot list nodes: {e}"), "check the credentials' RBAC"),
        }
    }
    .boxed()
}

fn pods<'a>(_: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        match Api::<Pod>::all(client.clone()).list(&ListParams::default()).await {
            Ok(l) => Finding::pass(format!("{} pod(s) in all namespaces", l.items.len())),
            Err(e) => Finding::fail(format!("cannot list pods: {e}"), "check the credentials' RBAC"),
        }
    }
    .boxed()
}

fn service<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        let svc = match Api::<Service>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
            Ok(Some(s)) => s,
            Ok(None) => return Finding::fail("default/kubernetes does not exist", format!("journalctl -u {} (it creates the Service)", APISERVER.unit())),
            Err(e) => return Finding::fail(format!("cannot get default/kubernetes: {e}"), "check the credentials"),
        };
        let spec = svc.spec.unwrap_or_default();
        let ip = spec.cluster_ip.unwrap_or_default();
        let _ = ctx.probe().await; // what the server read, once it has
        let port = serving_port(ctx.host(), APISERVER);
        let ports: Vec<String> = spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| {
                format!(
                    "{}→{}",
                    p.port,
                    p.target_port
                        .as_ref()
                        .map(|t| match t {
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(),
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
                        })
                        .unwrap_or_default()
                )
            })
            .collect();
        let want_ports = vec![format!("443→{port}")];
        let _ = ctx.probe().await; // what the server read, once it has
        let want_ip = ctx.host().map(api_cidr).and_then(|c| crate::model::service_ip(&c));
        let mut bad = Vec::new();
        if let Some(w) = &want_ip {
            if *w != ip {
                bad.push(format!("ClusterIP {ip}, expected {w} (first address of the apiserver's --service-cluster-ip-range)"));
            }
        }
        if ports != want_ports {
            bad.push(format!("ports {}, expected {}", ports.join(","), want_ports.join(",")));
        }
        if bad.is_empty() {
            Finding::pass(format!("ClusterIP {ip}, port {}", ports.join(",")))
        } else {
            Finding::fail(bad.join("; "), "the Service keeps the IP it was created with: delete it (kubectl delete svc kubernetes) and the apiserver recreates it")
        }
    }
    .boxed()
}

fn kubernetes_endpoints<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        let _ = ctx.probe().await; // what the server read, once it has
        let port = serving_port(ctx.host(), APISERVER) as i32;
        let ep = match Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
            Ok(Some(e)) => e,
            Ok(None) => return Finding::fail("Endpoints default/kubernetes does not exist", format!("journalctl -u {}", APISERVER.unit())),
            Err(e) => return Finding::fail(format!("cannot get Endpoints: {e}"), "check the credentials"),
        };
        let mut addrs = Vec::new();
        for s in ep.subsets.unwrap_or_default() {
            let ports: Vec<i32> = s.ports.unwrap_or_default().iter().map(|p| p.port).collect();
            for a in s.addresses.unwrap_or_default() {
                for p in &ports {
                    addrs.push((a.ip.clone(), *p));
                }
            }
        }
        let shown: Vec<String> = addrs.iter().map(|(a, p)| format!("{a}:{p}")).collect();
        if addrs.is_empty() {
            return Finding::fail("Endpoints default/kubernetes has no addresses", format!("journalctl -u {} (advertise address)", APISERVER.unit()));
        }
        // With several servers, any server's address is right (the
        // cluster checks say whether each is listed).
        let own = if ctx.servers.is_empty() {
            let _ = ctx.probe().await; // what the server read, once it has
            ctx.host().map(|h| h.addresses.clone())
        } else {
            Some(ctx.servers.iter().filter_map(|s| s.probe.as_ref().ok()).flat_map(|p| p.addresses.iter().chain(p.default_address.iter()).cloned()).collect())
        };
        let wrong: Vec<&String> = shown.iter().zip(&addrs).filter(|(_, (a, p))| *p != port || own.as_ref().is_some_and(|o| !o.contains(a))).map(|(s, _)| s).collect();
        // EndpointSlices where discovery.k8s.io/v1 is served.
        let (status, _) = endpoints::get(client, "/apis/discovery.k8s.io/v1").await;
        let mut slices = String::new();
        if status == 200 {
            let (st, body) = endpoints::get(client, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let eps: Vec<String> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            if st != 200 || eps.is_empty() {
                return Finding::fail("no EndpointSlice for the kubernetes Service", format!("journalctl -u {}", APISERVER.unit()));
            }
            slices = format!("; EndpointSlice {}", eps.join(","));
        }
        if wrong.is_empty() {
            Finding::pass(format!("{}{slices}", shown.join(",")))
        } else {
            Finding::fail(
                format!("{} is not this server's address:{port}", wrong.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")),
                "set --advertise-address to the server's address",
            )
        }
    }
    .boxed()
}
