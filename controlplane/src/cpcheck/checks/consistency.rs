//! `consistency`: settings that must agree across components and certificates: service ranges, the Service IP among the serving certificate's names, the chain to the CA, expiry.

use super::*;

/// The checks of this group, in report order.
pub fn checks() -> Vec<Check> {
    let mut v = Vec::new();
    v.push(host_check("consistency.service-cidr", "consistency", "apiserver and controller-manager agree on the service CIDR", |_, h| {
        let api = api_cidr(h);
        let cm = installed(h, "kube-controller-manager").and_then(|f| f.get("service-cluster-ip-range").map(str::to_string));
        let api_explicit = installed(h, "kube-apiserver").is_some_and(|f| f.get("service-cluster-ip-range").is_some());
        match cm {
            Some(cm) if cm != api => Finding::fail(
                format!("kube-apiserver uses {api}{}, kube-controller-manager {cm}", if api_explicit { "" } else { " (its default: the flag is absent)" }),
                "give both units the same --service-cluster-ip-range and restart them",
            ),
            Some(cm) => Finding::pass(format!("both {cm}")),
            None => Finding::pass(format!("kube-apiserver {api}; kube-controller-manager sets none")),
        }
    }));
    v.push(api_check("consistency.service-ip-san", "consistency", "the kubernetes Service IP is in the serving certificate", |ctx, client| {
        async move {
            let _ = ctx.probe().await; // what the server read, once it has
            let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to read the serving certificate") };
            let Some(cert) = installed(h, "kube-apiserver").and_then(|f| f.get("tls-cert-file").map(str::to_string)).and_then(|p| h.certs.get(&p).cloned()) else {
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
    }));
    v.push(host_check("consistency.cert-chain", "consistency", "the serving certificate chains to ca.crt for the names kubeconfigs use", |_, h| {
        let flags = installed(h, "kube-apiserver").unwrap_or_default();
        let get = |f: &str| flags.get(f).and_then(|p| h.certs.get(p)).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
        let (Some(serving), Some(ca)) = (get("tls-cert-file"), get("client-ca-file")) else {
            return Finding::fail("cannot read --tls-cert-file or --client-ca-file", "kubectl bootstrap server DEST");
        };
        if !serving.signed_by(&ca) {
            return Finding::fail("the serving certificate is not signed by the client CA", "reissue kube-api-server.crt from ca.crt");
        }
        let mut names: Vec<String> = h.kubeconfigs.values().filter_map(|(s, _)| crate::pki::host_of(s)).collect();
        names.sort();
        names.dedup();
        let missing: Vec<&String> = names.iter().filter(|n| !serving.covers(n)).collect();
        if missing.is_empty() {
            Finding::pass(format!("signed by ca.crt; names {}", names.join(", ")))
        } else {
            Finding::fail(
                format!("the serving certificate does not name {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
                "reissue kube-api-server.crt with those SANs",
            )
        }
    }));
    v.push(host_check("consistency.cert-expiry", "consistency", "certificates are not about to expire", |_, h| {
        let mut certs: Vec<(String, i64)> = h.certs.iter().filter_map(|(p, t)| Cert::from_pem(t.as_bytes()).ok().map(|c| (p.clone(), c.seconds_left()))).collect();
        certs
            .extend(h.kubeconfigs.iter().filter_map(|(p, (_, c))| c.as_ref().and_then(|c| Cert::from_pem(c.as_bytes()).ok()).map(|c| (format!("{p} (client)"), c.seconds_left()))));
        if certs.is_empty() {
            return Finding::fail("no certificates found", "kubectl bootstrap server DEST");
        }
        certs.sort_by_key(|c| c.1);
        let days = |s: i64| s / 86400;
        let expired: Vec<String> = certs.iter().filter(|c| c.1 <= 0).map(|c| c.0.clone()).collect();
        let soon: Vec<String> = certs.iter().filter(|c| c.1 > 0 && days(c.1) < 30).map(|c| format!("{} ({}d)", c.0, days(c.1))).collect();
        if !expired.is_empty() {
            Finding::fail(format!("expired: {}", expired.join(", ")), "reissue them from ca.crt and run kubectl bootstrap server DEST")
        } else if !soon.is_empty() {
            Finding::warn(format!("expiring within 30 days: {}", soon.join(", ")), "reissue them before they expire")
        } else {
            Finding::pass(format!("{} certificates; soonest {} in {} days", certs.len(), certs[0].0, days(certs[0].1)))
        }
    }));

    v
}
