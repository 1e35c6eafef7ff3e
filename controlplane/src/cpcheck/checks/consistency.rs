//! `consistency`: settings that must agree across components: service
//! ranges, the Service IP among the serving certificate's names. (The
//! chain to the CA and expiry moved to `certs`.)

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "consistency.service-cidr", title: |_| "apiserver and controller-manager agree on the service CIDR".into(), each: Each::One, run: Run::Host(service_cidr) },
    Def { id: "consistency.service-ip-san", title: |_| "the kubernetes Service IP is in the serving certificate".into(), each: Each::One, run: Run::Api(service_ip_san) },
];

fn service_cidr(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let api = api_cidr(h);
    let api_explicit = installed(h, APISERVER).is_some_and(|f| f.get("service-cluster-ip-range").is_some());
    // Every client that sets a service range (the controller-manager).
    let set: Vec<(Component, String)> = Component::clients().filter_map(|c| installed(h, c).and_then(|f| f.get("service-cluster-ip-range").map(|v| (c, v.to_string())))).collect();
    let other: Vec<&(Component, String)> = set.iter().filter(|(_, v)| *v != api).collect();
    if !other.is_empty() {
        let theirs: Vec<String> = other.iter().map(|(c, v)| format!("{c} {v}")).collect();
        return Finding::fail(
            format!("{APISERVER} uses {api}{}, {}", if api_explicit { "" } else { " (its default: the flag is absent)" }, theirs.join(", ")),
            "give both units the same --service-cluster-ip-range and restart them",
        );
    }
    match set.first() {
        Some((_, v)) => Finding::pass(format!("both {v}")),
        None => Finding::pass(format!("{APISERVER} {api}; no other component sets one")),
    }
}

fn service_ip_san<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        let _ = ctx.probe().await; // what the server read, once it has
        let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to read the serving certificate") };
        let Some(cert) = installed(h, APISERVER).and_then(|f| f.get("tls-cert-file").map(str::to_string)).and_then(|p| h.certs.get(&p).cloned()) else {
            return Finding::fail("cannot read the apiserver's --tls-cert-file", "kubectl bootstrap server DEST");
        };
        let Ok(cert) = Cert::from_pem(cert.as_bytes()) else { return Finding::fail("the serving certificate does not parse", "reissue it") };
        let ip = match Api::<Service>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
            Ok(Some(s)) => s.spec.and_then(|s| s.cluster_ip).unwrap_or_default(),
            _ => return Finding::skip("no default/kubernetes Service to compare"),
        };
        if cert.covers(&ip) {
            Finding::pass(format!("{ip} is a SAN of the serving certificate"))
        } else {
            Finding::fail(
                format!("ClusterIP {ip} is not among the serving certificate's SANs (in-cluster clients will fail TLS)"),
                "align --service-cluster-ip-range with the certificate, or reissue the certificate with that IP",
            )
        }
    }
    .boxed()
}
