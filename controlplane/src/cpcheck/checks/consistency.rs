//! `consistency`: settings that must agree across components and certificates: service ranges, the Service IP among the serving certificate's names, the chain to the CA, expiry.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "consistency.service-cidr", title: |_| "apiserver and controller-manager agree on the service CIDR".into(), each: Each::One, run: Run::Host(service_cidr) },
    Def { id: "consistency.service-ip-san", title: |_| "the kubernetes Service IP is in the serving certificate".into(), each: Each::One, run: Run::Api(service_ip_san) },
    Def {
        id: "consistency.cert-chain",
        title: |_| format!("the serving certificate chains to {} for the names kubeconfigs use", ca_asset()),
        each: Each::One,
        run: Run::Host(cert_chain),
    },
    Def { id: "consistency.cert-expiry", title: |_| "certificates are not about to expire".into(), each: Each::One, run: Run::Host(cert_expiry) },
];

/// The CA's asset name (`--client-ca-file`).
fn ca_asset() -> String {
    crate::model::asset_named_by(APISERVER, "client-ca-file")
}

/// The serving certificate's asset name (`--tls-cert-file`).
fn serving_asset() -> String {
    crate::model::asset_named_by(APISERVER, "tls-cert-file")
}

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

fn cert_chain(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let flags = installed(h, APISERVER).unwrap_or_default();
    let get = |f: &str| flags.get(f).and_then(|p| h.certs.get(p)).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
    let (Some(serving), Some(ca)) = (get("tls-cert-file"), get("client-ca-file")) else {
        return Finding::fail("cannot read --tls-cert-file or --client-ca-file", "kubectl bootstrap server DEST");
    };
    if !serving.signed_by(&ca) {
        return Finding::fail("the serving certificate is not signed by the client CA", format!("reissue {} from {}", serving_asset(), ca_asset()));
    }
    let mut names: Vec<String> = h.kubeconfigs.values().filter_map(|(s, _)| crate::pki::host_of(s)).collect();
    names.sort();
    names.dedup();
    let missing: Vec<&String> = names.iter().filter(|n| !serving.covers(n)).collect();
    if missing.is_empty() {
        Finding::pass(format!("signed by {}; names {}", ca_asset(), names.join(", ")))
    } else {
        Finding::fail(
            format!("the serving certificate does not name {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
            format!("reissue {} with those SANs", serving_asset()),
        )
    }
}

fn cert_expiry(_: &Ctx, h: &Probe, _: Item) -> Finding {
    let mut certs: Vec<(String, i64)> = h.certs.iter().filter_map(|(p, t)| Cert::from_pem(t.as_bytes()).ok().map(|c| (p.clone(), c.seconds_left()))).collect();
    certs.extend(h.kubeconfigs.iter().filter_map(|(p, (_, c))| c.as_ref().and_then(|c| Cert::from_pem(c.as_bytes()).ok()).map(|c| (format!("{p} (client)"), c.seconds_left()))));
    if certs.is_empty() {
        return Finding::fail("no certificates found", "kubectl bootstrap server DEST");
    }
    certs.sort_by_key(|c| c.1);
    let days = |s: i64| s / 86400;
    let expired: Vec<String> = certs.iter().filter(|c| c.1 <= 0).map(|c| c.0.clone()).collect();
    let soon: Vec<String> = certs.iter().filter(|c| c.1 > 0 && days(c.1) < 30).map(|c| format!("{} ({}d)", c.0, days(c.1))).collect();
    if !expired.is_empty() {
        Finding::fail(format!("expired: {}", expired.join(", ")), format!("reissue them from {} and run kubectl bootstrap server DEST", ca_asset()))
    } else if !soon.is_empty() {
        Finding::warn(format!("expiring within 30 days: {}", soon.join(", ")), "reissue them before they expire")
    } else {
        Finding::pass(format!("{} certificates; soonest {} in {} days", certs.len(), certs[0].0, days(certs[0].1)))
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
