//! `certs`: the certificate the apiserver actually serves against its
//! `--tls-cert-file`, and restarts still owed for files a component reads
//! only when it starts.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "certs.served", title: |_| format!("{APISERVER} serves its --tls-cert-file, chained to its CA for the names clients use"), each: Each::One, run: Run::Async(served) },
    Def { id: "certs.restart", title: |i| format!("{} has read every file it reads only at start", i.component()), each: Each::Component, run: Run::Host(restart) },
];

/// Flags whose files a component re-reads while it runs; every other file
/// a flag names is read when the component starts. Source:
/// k8s.io/apiserver/pkg/server/dynamiccertificates, which the secure
/// serving options of all three use for the serving pair (since v1.17) and
/// for the client CAs (since v1.19); measured on v1.20.2: a new matching
/// serving pair was served 50–60 s after it was written.
const RELOADED: &[&str] = &["tls-cert-file", "tls-private-key-file", "client-ca-file", "requestheader-client-ca-file"];

/// How long the apiserver may take to serve a serving pair written on
/// disk (it polls the files about once a minute).
const RELOAD_WINDOW: f64 = 120.0;

fn served(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    async move {
        let _ = ctx.probe().await;
        let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to read the serving certificate on the server") };
        let chain = match &ctx.served {
            None => return Finding::skip("needs --ssh (the port is reached through the server)"),
            Some(Err(e)) => return Finding::fail(format!("port {}: {e}", serving_port(Some(h), APISERVER)), format!("systemctl status {0}; journalctl -u {0}", APISERVER.unit())),
            Some(Ok(c)) => c,
        };
        let flags = installed(h, APISERVER).unwrap_or_default();
        let file = flags.get("tls-cert-file").map(str::to_string).unwrap_or_default();
        let disk = h.certs.get(&file).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
        let ca = flags.get("client-ca-file").and_then(|p| h.certs.get(p)).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
        let mut names: Vec<String> = h.kubeconfigs.values().filter_map(|(s, _)| crate::pki::host_of(s)).collect();
        names.extend(cluster::advertised(h));
        names.sort();
        names.dedup();
        let written = h.files.get(&file).map(|f| f.mtime_ns as f64 / 1e9).unwrap_or(0.0);
        let seen = Served { port: serving_port(Some(h), APISERVER), chain, file: &file, disk: disk.as_ref(), ca: ca.as_ref(), names: &names, age: h.now - written };
        verdict(&seen)
    }
    .boxed()
}

/// What `certs.served` compares: the chain a port presented, the file on
/// disk, its age by the server's clock, the CA and the names clients use.
struct Served<'a> {
    port: u16,
    chain: &'a [Vec<u8>],
    file: &'a str,
    disk: Option<&'a Cert>,
    ca: Option<&'a Cert>,
    names: &'a [String],
    /// Seconds since the file was last written.
    age: f64,
}

/// A certificate as the messages name it: serial and expiry.
fn named(c: &Cert) -> String {
    let (_, to) = c.validity();
    format!("serial {}, expires {}", c.serial(), crate::pki::date(to))
}

fn verdict(s: &Served<'_>) -> Finding {
    let Some(leaf) = s.chain.first().and_then(|d| Cert::from_der(d.clone()).ok()) else {
        return Finding::fail(format!("port {} presented a certificate that does not parse", s.port), "reissue the serving certificate");
    };
    let Some(disk) = s.disk else {
        return Finding::fail(format!("cannot read --tls-cert-file {}", s.file), "kubectl bootstrap server DEST");
    };
    if leaf.der != disk.der {
        let what = format!("port {} serves {}; {} on disk is {} (written {:.0}s ago)", s.port, named(&leaf), s.file, named(disk), s.age.max(0.0));
        return if s.age < RELOAD_WINDOW {
            Finding::warn(format!("reload pending: {what}"), format!("{APISERVER} re-reads its serving pair about once a minute: check again shortly"))
        } else {
            Finding::fail(
                what,
                format!(
                    "{APISERVER} did not load it: check that --tls-private-key-file matches it and journalctl -u {}; then systemctl restart {}",
                    APISERVER.unit(),
                    APISERVER.unit()
                ),
            )
        };
    }
    let Some(ca) = s.ca else {
        return Finding::fail("cannot read --client-ca-file to verify the served chain", "kubectl bootstrap server DEST");
    };
    if !leaf.signed_by(ca) {
        return Finding::fail(
            format!("port {} serves a certificate that {} did not sign", s.port, crate::model::asset_named_by(APISERVER, "client-ca-file")),
            "reissue the serving certificate from the cluster CA",
        );
    }
    let missing: Vec<&str> = s.names.iter().filter(|n| !leaf.covers(n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Finding::fail(
            format!("port {} serves a certificate that does not name {} (clients use it)", s.port, missing.join(", ")),
            format!("reissue {} with those names among its subjectAltNames", crate::model::asset_named_by(APISERVER, "tls-cert-file")),
        );
    }
    Finding::pass(format!("port {} serves {} ({}), signed by the CA, naming {}", s.port, s.file, named(&leaf), s.names.join(", ")))
}

/// Files a flag of the running unit names that changed after the unit's
/// process started, and that the component reads only at start.
fn restart(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let Some(st) = h.units.get(c.unit()).filter(|s| s.active == ActiveState::Active && s.active_enter_unix > 0) else {
        return Finding::skip(format!("{c} is not running"));
    };
    let owed = owed(&installed(h, c).unwrap_or_default(), h, st.active_enter_unix as f64);
    if owed.is_empty() {
        return Finding::pass("no file it reads only at start changed since it started");
    }
    Finding::fail(
        format!("restart pending: changed since {c} started, read only at start: {}", owed.join(", ")),
        format!("systemctl restart {} (kubectl bootstrap server DEST restores the files and restarts it)", c.unit()),
    )
}

/// `--flag PATH` for each file `flags` name that was written more than a
/// second after `started` (server clock) and is not re-read while running.
fn owed(flags: &Flags, h: &Probe, started: f64) -> Vec<String> {
    flags
        .0
        .iter()
        .filter(|(k, _)| !RELOADED.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = v.as_deref()?;
            let f = h.files.get(v)?;
            (f.mtime_ns as f64 / 1e9 > started + 1.0).then(|| format!("--{k} {}", crate::output::redact::line(v)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn pki() -> (Cert, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        (Cert::from_pem(c.pem().as_bytes()).unwrap(), Issuer::new(p, k))
    }

    fn leaf(issuer: &Issuer<'static, KeyPair>, names: &[&str]) -> Cert {
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        Cert::from_pem(p.signed_by(&KeyPair::generate().unwrap(), issuer).unwrap().pem().as_bytes()).unwrap()
    }

    #[test]
    fn the_served_certificate_is_the_one_on_disk_or_a_reload_is_pending() {
        let (ca, issuer) = pki();
        let (old, new) = (leaf(&issuer, &["10.0.0.1", "server.kubernetes.local"]), leaf(&issuer, &["10.0.0.1", "server.kubernetes.local"]));
        let names = vec!["10.0.0.1".to_string(), "server.kubernetes.local".to_string()];
        let chain = vec![old.der.clone()];
        let at = |disk: &Cert, age: f64, names: &[String], ca: &Cert| {
            let f = verdict(&Served { port: 6443, chain: &chain, file: "/var/lib/kubernetes/kube-api-server.crt", disk: Some(disk), ca: Some(ca), names, age });
            (f.status, f.detail)
        };
        let (st, d) = at(&old, 5000.0, &names, &ca);
        assert_eq!(st, crate::cpcheck::Status::Pass, "{d}");
        // A new pair on disk: served within the reload window, else a failure naming both serials.
        let (st, d) = at(&new, 30.0, &names, &ca);
        assert_eq!(st, crate::cpcheck::Status::Warn, "{d}");
        assert!(d.starts_with("reload pending: port 6443 serves serial ") && d.contains(&new.serial()) && d.contains(&old.serial()), "{d}");
        let (st, d) = at(&new, 300.0, &names, &ca);
        assert_eq!(st, crate::cpcheck::Status::Fail, "{d}");
        assert!(d.contains("(written 300s ago)"), "{d}");
        // The chain and the names clients use.
        let (other_ca, _) = pki();
        assert_eq!(at(&old, 5000.0, &names, &other_ca).0, crate::cpcheck::Status::Fail);
        let (st, d) = at(&old, 5000.0, &["lb.example".to_string()], &ca);
        assert!(st == crate::cpcheck::Status::Fail && d.contains("does not name lb.example"), "{d}");
    }

    #[test]
    fn a_file_read_only_at_start_that_changed_since_is_a_restart_owed() {
        let mut h = Probe::default();
        let file = |secs: u64| crate::remote::probe::RemoteFile { mtime_ns: secs * 1_000_000_000, ..crate::remote::probe::RemoteFile::default() };
        h.files.insert("/k.kubeconfig".into(), file(2000));
        h.files.insert("/tls.crt".into(), file(2000));
        h.files.insert("/sa.key".into(), file(900));
        let flags = Flags(vec![
            ("kubeconfig".into(), Some("/k.kubeconfig".into())),
            ("tls-cert-file".into(), Some("/tls.crt".into())),
            ("service-account-private-key-file".into(), Some("/sa.key".into())),
            ("v".into(), Some("2".into())),
        ]);
        // Started before the kubeconfig changed: owed; the serving certificate is re-read.
        assert_eq!(owed(&flags, &h, 1000.0), vec!["--kubeconfig /k.kubeconfig".to_string()]);
        // Started after every change: nothing owed.
        assert!(owed(&flags, &h, 2500.0).is_empty());
    }
}
