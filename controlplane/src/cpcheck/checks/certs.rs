//! `certs`: the certificate each component actually serves against its
//! `--tls-cert-file` (and the pair on disk, compared on the server), the
//! chain to the CA for the names clients use, every certificate's expiry,
//! and restarts still owed for files a component reads only when it starts.
//!
//! Two ids moved here from `consistency` (see [`crate::cpcheck::MOVED`]):
//! `consistency.cert-chain` is `certs.chain`, `consistency.cert-expiry` is
//! `certs.expiry`.

use super::*;
use crate::remote::probe::pki::PairState;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "certs.served", title: |_| format!("{APISERVER} serves its --tls-cert-file, chained to its CA for the names clients use"), each: Each::One, run: Run::Async(served) },
    Def {
        id: "certs.served",
        title: |i| format!("{} serves its --tls-cert-file, or a certificate it made at start", i.component()),
        each: Each::Client,
        run: Run::Async(served_client),
    },
    Def { id: "certs.pair", title: |i| format!("{}'s serving certificate and key on disk belong together", i.component()), each: Each::Component, run: Run::Host(pair) },
    Def {
        id: "certs.chain",
        title: |_| format!("the serving certificate on disk chains to {} for the names kubeconfigs use", ca_asset()),
        each: Each::One,
        run: Run::Host(cert_chain),
    },
    Def { id: "certs.expiry", title: |_| "no certificate on the server or in the kubeconfig expires within --warn-within".into(), each: Each::One, run: Run::Async(expiry) },
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

/// The CA's asset name (`--client-ca-file`).
fn ca_asset() -> String {
    crate::model::asset_named_by(APISERVER, "client-ca-file")
}

/// The serving certificate's asset name (`--tls-cert-file`).
fn serving_asset() -> String {
    crate::model::asset_named_by(APISERVER, "tls-cert-file")
}

fn served(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    async move {
        let _ = ctx.probe().await;
        let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to read the serving certificate on the server") };
        let chain = match ctx.served.get(&APISERVER) {
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
        let pair = h.pairs.get(&file).map(|(k, st)| (k.as_str(), *st));
        let seen = Served {
            component: APISERVER,
            port: serving_port(Some(h), APISERVER),
            chain,
            file: &file,
            disk: disk.as_ref(),
            pair,
            verify: Some((ca.as_ref(), &names)),
            age: h.now - written,
        };
        verdict(&seen)
    }
    .boxed()
}

/// The controller-manager's or scheduler's port: with a `--tls-cert-file`,
/// compared as the apiserver's; without (the guide's units), what it made
/// at start: self-signed or not, and its expiry.
fn served_client(ctx: &Ctx, i: Item) -> futures::future::BoxFuture<'_, Finding> {
    async move {
        let c = i.component();
        let _ = ctx.probe().await;
        let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to reach the port on the server") };
        let port = serving_port(Some(h), c);
        let chain = match ctx.served.get(&c) {
            None => return Finding::skip("needs --ssh (the port is reached through the server)"),
            Some(Err(e)) => return Finding::fail(format!("port {port}: {e}"), format!("systemctl status {0}; journalctl -u {0}", c.unit())),
            Some(Ok(chain)) => chain,
        };
        let flags = installed(h, c).unwrap_or_default();
        if let Some(file) = flags.get("tls-cert-file") {
            let disk = h.certs.get(file).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
            let written = h.files.get(file).map(|f| f.mtime_ns as f64 / 1e9).unwrap_or(0.0);
            let pair = h.pairs.get(file).map(|(k, st)| (k.as_str(), *st));
            return verdict(&Served { component: c, port, chain, file, disk: disk.as_ref(), pair, verify: None, age: h.now - written });
        }
        let Ok(certs) = chain.iter().map(|d| Cert::from_der(d.clone())).collect::<Result<Vec<Cert>, _>>() else {
            return Finding::fail(format!("port {port} presented a certificate that does not parse"), format!("systemctl restart {}", c.unit()));
        };
        let Some(leaf) = certs.first() else { return Finding::fail(format!("port {port} presented no certificate"), format!("systemctl restart {}", c.unit())) };
        let made = match (Cert::self_contained(&certs), certs.len()) {
            (true, 1) => "self-signed".to_string(),
            (true, _) => format!("self-signed: issued by {}, a CA it presents with it", issuer_cn(leaf)),
            (false, _) => format!("issued by {}", issuer_cn(leaf)),
        };
        let what = format!("port {port} serves a certificate {c} made at start (no --tls-cert-file): {made}, {}", named(leaf));
        if leaf.seconds_left() <= 0 {
            Finding::warn(format!("{what}: expired"), format!("systemctl restart {} (it makes a new one at start), or give it a --tls-cert-file", c.unit()))
        } else {
            Finding::pass(what)
        }
    }
    .boxed()
}

/// The issuer's common name, escaped when shown.
fn issuer_cn(c: &Cert) -> String {
    c.x509().issuer().iter_common_name().next().and_then(|n| n.as_str().ok()).unwrap_or("an unnamed issuer").to_string()
}

/// The serving pair on disk, as the server's `openssl` compared it.
fn pair(_: &Ctx, h: &Probe, i: Item) -> Finding {
    let c = i.component();
    let flags = installed(h, c).unwrap_or_default();
    let (Some(cert), Some(key)) = (flags.get("tls-cert-file"), flags.get("tls-private-key-file")) else {
        return Finding::pass(format!("no pair on disk (no --tls-cert-file and --tls-private-key-file): {c} serves a certificate it made at start"));
    };
    match h.pairs.get(cert).map(|(_, st)| *st) {
        None => Finding::skip(format!("{cert} or {key} is not a regular file on the server (see host.paths)")),
        Some(PairState::Match) => Finding::pass(format!("{cert} and {key} hold the same public key (compared on the server)")),
        Some(PairState::Mismatch) => Finding::fail(
            format!("{cert} does not match its key {key} (public halves compared on the server): {c} cannot load the pair and keeps serving the one it has"),
            "put back the certificate issued for that key, or re-issue both (kubectl bootstrap certs renew on the jumpbox, then kubectl bootstrap server DEST)",
        ),
        Some(PairState::CertUnreadable) => {
            Finding::fail(format!("openssl cannot read {cert} as a certificate"), "re-issue it (kubectl bootstrap certs renew; kubectl bootstrap server DEST)")
        }
        Some(PairState::KeyUnreadable) => Finding::fail(
            format!("openssl cannot read {key} as a private key (not PEM, encrypted, or unreadable)"),
            format!("{c} reads unencrypted PEM keys only: put the pair's key back (kubectl bootstrap server DEST)"),
        ),
        Some(PairState::NoOpenssl) => Finding::skip("the server has no openssl to compare the public halves (install it to have the pair checked)"),
    }
}

/// What `certs.served` compares: the chain a port presented, the file on
/// disk and whether its key matches it, its age by the server's clock, and
/// (the apiserver) the CA and the names clients use.
struct Served<'a> {
    component: Component,
    port: u16,
    chain: &'a [Vec<u8>],
    file: &'a str,
    disk: Option<&'a Cert>,
    /// The key's path and how it compared, when the server compared it.
    pair: Option<(&'a str, PairState)>,
    /// The CA the chain must verify against and the names it must carry.
    verify: Option<(Option<&'a Cert>, &'a [String])>,
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
    let c = s.component;
    let Some(disk) = s.disk else {
        return Finding::fail(format!("cannot read --tls-cert-file {}", s.file), "kubectl bootstrap server DEST");
    };
    // A pair that does not belong together is never loaded: no waiting.
    if let Some((key, PairState::Mismatch)) = s.pair {
        return Finding::fail(
            format!("port {} serves {}; {} on disk is {} and does not match its key {key}: {c} will never load it", s.port, named(&leaf), s.file, named(disk)),
            "put back the certificate issued for that key, or re-issue both (kubectl bootstrap certs renew on the jumpbox, then kubectl bootstrap server DEST)",
        );
    }
    if leaf.der != disk.der {
        let compared = match s.pair {
            Some((_, PairState::Match)) => "",
            Some((_, PairState::NoOpenssl)) => "; its key not compared: the server has no openssl",
            _ => "; its key not compared",
        };
        let what = format!("port {} serves {}; {} on disk is {} (written {:.0}s ago{compared})", s.port, named(&leaf), s.file, named(disk), s.age.max(0.0));
        return if s.age < RELOAD_WINDOW {
            Finding::warn(format!("reload pending: {what}"), format!("{c} re-reads its serving pair about once a minute: check again shortly"))
        } else {
            Finding::fail(what, format!("{c} did not load it: check that --tls-private-key-file matches it and journalctl -u {}; then systemctl restart {}", c.unit(), c.unit()))
        };
    }
    let Some((ca, names)) = s.verify else {
        return Finding::pass(format!("port {} serves {} ({})", s.port, s.file, named(&leaf)));
    };
    let Some(ca) = ca else {
        return Finding::fail("cannot read --client-ca-file to verify the served chain", "kubectl bootstrap server DEST");
    };
    if !leaf.signed_by(ca) {
        return Finding::fail(
            format!("port {} serves a certificate that {} did not sign", s.port, crate::model::asset_named_by(APISERVER, "client-ca-file")),
            "reissue the serving certificate from the cluster CA",
        );
    }
    let missing: Vec<&str> = names.iter().filter(|n| !leaf.covers(n)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Finding::fail(
            format!("port {} serves a certificate that does not name {} (clients use it)", s.port, missing.join(", ")),
            format!("reissue {} with those names among its subjectAltNames", crate::model::asset_named_by(APISERVER, "tls-cert-file")),
        );
    }
    Finding::pass(format!("port {} serves {} ({}), signed by the CA, naming {}", s.port, s.file, named(&leaf), names.join(", ")))
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

/// A duration as `--warn-within` takes it: `30d`, `12h`, `90m`, `45s`.
pub fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Time left as the messages show it: whole days, else hours.
fn left(secs: i64) -> String {
    if secs >= 86400 {
        format!("{}d", secs / 86400)
    } else {
        format!("{}h", secs.max(0) / 3600)
    }
}

/// Every certificate on the server (files, kubeconfigs' client
/// certificates) and in `--kubeconfig`: expired FAILs, expiring within
/// `--warn-within` WARNs; the soonest is named.
fn expiry(ctx: &Ctx, _: Item) -> futures::future::BoxFuture<'_, Finding> {
    async move {
        let _ = ctx.probe().await;
        let mut certs: Vec<(String, i64)> = Vec::new();
        let mut unreadable: Vec<String> = Vec::new();
        if let Some(h) = ctx.host() {
            certs.extend(h.certs.iter().filter_map(|(p, t)| Cert::from_pem(t.as_bytes()).ok().map(|c| (p.clone(), c.seconds_left()))));
            certs.extend(
                h.kubeconfigs.iter().filter_map(|(p, (_, c))| c.as_ref().and_then(|c| Cert::from_pem(c.as_bytes()).ok()).map(|c| (format!("{p} (client)"), c.seconds_left()))),
            );
            if certs.is_empty() {
                return Finding::fail("no certificates found on the server", "kubectl bootstrap server DEST");
            }
        }
        for (what, c) in &ctx.kubeconfig_certs {
            match c {
                Ok(c) => certs.push((what.clone(), c.seconds_left())),
                Err(e) => unreadable.push(format!("{what}: {e}")),
            }
        }
        if !unreadable.is_empty() {
            return Finding::fail(format!("cannot read {}", unreadable.join("; ")), "fix the kubeconfig (kubectl config view --raw shows what it holds)");
        }
        if certs.is_empty() {
            return Finding::skip("no certificate to read: needs --ssh, or a kubeconfig with certificates");
        }
        certs.sort_by_key(|c| c.1);
        let within = ctx.warn_within.as_secs() as i64;
        let expired: Vec<String> = certs.iter().filter(|c| c.1 <= 0).map(|c| c.0.clone()).collect();
        let soon: Vec<String> = certs.iter().filter(|c| c.1 > 0 && c.1 <= within).map(|c| format!("{} ({})", c.0, left(c.1))).collect();
        if !expired.is_empty() {
            Finding::fail(
                format!("expired: {}", expired.join(", ")),
                format!("kubectl bootstrap certs renew on the jumpbox (from {}), then kubectl bootstrap server DEST", ca_asset()),
            )
        } else if !soon.is_empty() {
            Finding::warn(
                format!("expiring within {}: {}", span(ctx.warn_within), soon.join(", ")),
                "kubectl bootstrap certs renew on the jumpbox, then kubectl bootstrap server DEST, before they expire",
            )
        } else {
            Finding::pass(format!("{} certificates; soonest {} in {}", certs.len(), certs[0].0, left(certs[0].1)))
        }
    }
    .boxed()
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
        let with_pair = |disk: &Cert, age: f64, names: &[String], ca: &Cert, pair: PairState| {
            let file = "/var/lib/kubernetes/kube-api-server.crt";
            let f =
                verdict(&Served { component: APISERVER, port: 6443, chain: &chain, file, disk: Some(disk), pair: Some(("/k.key", pair)), verify: Some((Some(ca), names)), age });
            (f.status, f.detail)
        };
        let at = |disk: &Cert, age: f64, names: &[String], ca: &Cert| with_pair(disk, age, names, ca, PairState::Match);
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
        // A certificate that is not its key's: no reload will ever serve it, FAIL at once.
        let (st, d) = with_pair(&new, 5.0, &names, &ca, PairState::Mismatch);
        assert_eq!(st, crate::cpcheck::Status::Fail, "{d}");
        assert!(d.starts_with("port 6443 serves serial ") && d.contains("does not match its key /k.key"), "{d}");
        // Without openssl on the server the pair is not compared: the reload window decides, and says so.
        let (st, d) = with_pair(&new, 5.0, &names, &ca, PairState::NoOpenssl);
        assert!(st == crate::cpcheck::Status::Warn && d.contains("its key not compared: the server has no openssl"), "{d}");
    }

    /// A certificate file (with its pair) on a probe, for the expiry check.
    fn probe_with(certs: &[(&str, i64)]) -> Probe {
        let mut h = Probe::default();
        for (path, days) in certs {
            let mut p = CertificateParams::new(vec![]).unwrap();
            let now = ::time::OffsetDateTime::now_utc();
            p.not_before = now - ::time::Duration::days(1);
            p.not_after = now + ::time::Duration::days(*days) + ::time::Duration::minutes(5);
            h.certs.insert(path.to_string(), p.self_signed(&KeyPair::generate().unwrap()).unwrap().pem());
        }
        h
    }

    fn expiry_at(h: Probe, within_days: u64, kubeconfig: Vec<(String, Result<Cert, String>)>) -> (crate::cpcheck::Status, String) {
        let mut ctx = Ctx::for_tests(false);
        ctx.host = crate::cpcheck::ready(Ok(h));
        ctx.warn_within = std::time::Duration::from_secs(within_days * 86400);
        ctx.kubeconfig_certs = kubeconfig;
        let f = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(expiry(&ctx, Item::One));
        (f.status, f.detail)
    }

    #[test]
    fn expiry_warns_within_the_horizon_asked_and_fails_when_expired() {
        use crate::cpcheck::Status;
        let h = || probe_with(&[("/ca.crt", 3650), ("/api.crt", 10)]);
        let (st, d) = expiry_at(h(), 30, vec![]);
        assert_eq!((st, d.as_str()), (Status::Warn, "expiring within 30d: /api.crt (10d)"));
        let (st, d) = expiry_at(h(), 7, vec![]);
        assert_eq!((st, d.as_str()), (Status::Pass, "2 certificates; soonest /api.crt in 10d"));
        // The kubeconfig's own certificate counts, named as the kubeconfig.
        let expired = Cert::from_pem(probe_with(&[("/x", -3)]).certs["/x"].as_bytes()).unwrap();
        let (st, d) = expiry_at(h(), 7, vec![("--kubeconfig /tmp/admin.kubeconfig (client)".into(), Ok(expired))]);
        assert_eq!((st, d.as_str()), (Status::Fail, "expired: --kubeconfig /tmp/admin.kubeconfig (client)"));
        // One it cannot read is named with the reason, never its content.
        let (st, d) = expiry_at(h(), 7, vec![("--kubeconfig k (client)".into(), Err("not PEM at line 1".into()))]);
        assert_eq!((st, d.as_str()), (Status::Fail, "cannot read --kubeconfig k (client): not PEM at line 1"));
        assert_eq!(span(std::time::Duration::from_secs(12 * 3600)), "12h");
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
