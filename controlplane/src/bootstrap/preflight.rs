//! Preflight: everything that can be known before the server changes. Every
//! problem is listed, each as one line with its fix.

use std::collections::BTreeMap;

use crate::bootstrap::desired::Desired;
use crate::bootstrap::plan::Plan;
use crate::error::Problem;
use crate::model::FileKind;
use crate::model::{asset_named_by, APISERVER, APISERVER_DEFAULT_SERVICE_CIDR};
use crate::output::human_bytes;
use crate::pki::{self, Cert};
use crate::remote::probe::Probe;

/// A preflight check: its stable id (what `--ignore-preflight-errors`
/// names and every problem it finds carries), whether ignoring it is
/// allowed, and what it finds.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    pub id: &'static str,
    /// Not ignorable: the run could not work, or would break the server.
    pub ignorable: bool,
    pub what: &'static str,
}

const fn check(id: &'static str, ignorable: bool, what: &'static str) -> Check {
    Check { id, ignorable, what }
}

/// Every preflight check, by id.
pub const CHECKS: &[Check] = &[
    check("asset-missing", false, "an asset the layout ships is missing from the assets directory"),
    check("asset-unreadable", false, "an asset cannot be read"),
    check("admin-kubeconfig", false, "the admin credential for the RBAC step cannot be found or read"),
    check("admin-not-masters", true, "the admin kubeconfig's user is not in system:masters (a warning)"),
    check("scheduler-version", false, "the scheduler's release cannot be read, or is older than v1.19"),
    check("service-cidr", false, "--service-cluster-ip-range is not a CIDR"),
    check("certificate", false, "a certificate is not a PEM X.509 certificate"),
    check("cert-validity", true, "a certificate is expired or not yet valid by the server's clock"),
    check("cert-expiring", true, "a certificate expires within 30 days (a warning)"),
    check("cert-purpose", true, "a certificate's extendedKeyUsage does not allow its role (serverAuth, clientAuth)"),
    check("ca-not-ca", true, "a CA certificate is not a CA (basicConstraints CA:TRUE)"),
    check("encryption-config", false, "the encryption config does not parse as the apiserver parses it"),
    check("key", false, "a private key cannot be read"),
    check("key-mismatch", false, "a private key does not match the certificate beside it"),
    check("kubeconfig", false, "a kubeconfig does not parse"),
    check("kubeconfig-ca", true, "a kubeconfig's CA is missing or does not verify the serving certificate"),
    check("kubeconfig-key", false, "a kubeconfig's client key does not match its certificate"),
    check("kubeconfig-chain", true, "a kubeconfig's client certificate is not signed by --client-ca-file"),
    check("kubeconfig-credentials", false, "a kubeconfig has no embedded client certificate and key"),
    check("kubeconfig-user", true, "a component's kubeconfig is not for the user its RBAC role is bound to"),
    check("kubelet-client-user", true, "--kubelet-client-certificate is not for a user the apiserver-to-kubelet RBAC binds"),
    check("serving-cert-names", true, "the serving certificate does not name an address clients use"),
    check("endpoint-san", true, "--endpoint's host is not a name of the serving certificate"),
    check("san", true, "a server's hostname or advertise address is not a name of the serving certificate"),
    check("advertise-address", true, "the apiserver cannot pick an address to advertise"),
    check("hostname-unique", true, "servers share a hostname"),
    check("address-unique", true, "servers would advertise the same address"),
    check("arch", false, "a binary is built for another architecture than the server's"),
    check("architectures", false, "the servers differ in architecture"),
    check("port-in-use", true, "a component's port is held by another process"),
    check("destination-not-file", false, "a destination on the server is not a regular file"),
    check("directory", false, "a directory bootstrap writes into is not a directory"),
    check("directory-shared", true, "a directory bootstrap writes into is writable by other users"),
    check("drop-in", true, "a unit has drop-ins that change it"),
    check("unit-override", true, "systemd loads a unit from a file that overrides the one bootstrap installs"),
    check("disk-space", false, "the upload does not fit on the server's file system"),
    check("compress", false, "--compress names a tool the server lacks"),
    check("systemd", false, "the server does not run systemd, or one older than v239"),
    check("userland", false, "the server lacks a command the plugins run"),
    check("coreutils", false, "the server's coreutils are too old"),
];

/// What `--ignore-preflight-errors` asked for: nothing, every ignorable
/// check (`all`), or the named ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ignore {
    #[default]
    None,
    All,
    Ids(Vec<&'static str>),
}

impl Ignore {
    /// Parses `ID,ID,…` or `all`: an unknown id, or one that may not be
    /// ignored, is bad input.
    pub fn parse(list: &[String]) -> Result<Ignore, crate::Error> {
        let mut ids = Vec::new();
        for id in list.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|i| !i.is_empty()) {
            if id.eq_ignore_ascii_case("all") {
                return Ok(Ignore::All);
            }
            let Some(c) = CHECKS.iter().find(|c| c.id.eq_ignore_ascii_case(id)) else {
                let shown = crate::output::redact::line(&id.chars().take(40).collect::<String>());
                return Err(crate::Error::Input(format!("--ignore-preflight-errors: no preflight check `{shown}`: kubectl bootstrap preflight-checks lists them")));
            };
            if !c.ignorable {
                return Err(crate::Error::Input(format!("--ignore-preflight-errors: `{}` cannot be ignored: {} would break the run or the server; fix it instead", c.id, c.what)));
            }
            ids.push(c.id);
        }
        Ok(if ids.is_empty() { Ignore::None } else { Ignore::Ids(ids) })
    }

    fn ignores(&self, id: &str) -> bool {
        let ignorable = CHECKS.iter().any(|c| c.id == id && c.ignorable);
        ignorable
            && match self {
                Ignore::None => false,
                Ignore::All => true,
                Ignore::Ids(ids) => ids.contains(&id),
            }
    }
}

/// Preflight's findings as (problems that stop the run, warnings): a
/// warning by nature, or a problem `ignore` names.
pub fn sort(found: Vec<Problem>, ignore: &Ignore) -> (Vec<Problem>, Vec<Problem>) {
    let (warnings, problems): (Vec<Problem>, Vec<Problem>) = found.into_iter().partition(|p| p.warning || ignore.ignores(p.id));
    (problems, warnings.into_iter().map(Problem::warn).collect())
}

/// Local checks: certificates, keys, kubeconfigs, encryption config, and the
/// serving certificate's names. `extra_kubeconfigs` are local-only
/// kubeconfigs the run uses (the admin credential for the API step: the one
/// `--kubeconfig`, `KUBECONFIG` or the default selects), already parsed.
pub fn local(desired: &Desired, extra_kubeconfigs: Vec<(String, Result<pki::KubeconfigInfo, crate::error::Unusable>)>) -> Vec<Problem> {
    let mut p = Vec::new();
    let certs = certificates(desired, &mut p);
    p.extend(keys(desired, &certs));
    // The serving certificate and the names it must carry.
    let api = desired.unit(APISERVER);
    let serving = api.and_then(|u| u.flag("tls-cert-file")).and_then(|d| certs.get(d));
    let ca = api.and_then(|u| u.flag("client-ca-file")).and_then(|d| certs.get(d));
    let mut kubeconfigs: Vec<(String, Result<pki::KubeconfigInfo, crate::error::Unusable>)> =
        desired.files.iter().filter(|f| f.spec.kind == FileKind::Kubeconfig).filter_map(|f| f.bytes().ok().map(|b| (asset_name(f), pki::kubeconfig(&b)))).collect();
    // The admin credential: outside system:masters the RBAC step may lack
    // rights (bound otherwise, it still works: a warning).
    for (name, k) in &extra_kubeconfigs {
        let orgs = k.as_ref().ok().and_then(|k| k.client_cert.as_ref()).map(|c| c.organizations());
        if orgs.is_some_and(|o| !o.iter().any(|o| o == "system:masters")) {
            p.push(
                Problem::check(
                    "admin-not-masters",
                    format!("{name}: its user is not in the group system:masters"),
                    "use the admin kubeconfig (O=system:masters), or make sure its user may apply ClusterRoles and ClusterRoleBindings",
                )
                .warn(),
            );
        }
    }
    kubeconfigs.extend(extra_kubeconfigs);
    let mut names: Vec<(String, String)> = Vec::new();
    if let Some(u) = api {
        let cidr = u.flag("service-cluster-ip-range").unwrap_or(APISERVER_DEFAULT_SERVICE_CIDR);
        match crate::model::service_ip(cidr) {
            Some(ip) => names.push((ip, format!("the kubernetes Service IP (first address of {cidr})"))),
            None => p.push(Problem::check("service-cidr", format!("--service-cluster-ip-range={cidr} is not a CIDR"), "fix the override")),
        }
    }
    names.push(("127.0.0.1".into(), "loopback".into()));
    for (name, parsed) in &kubeconfigs {
        match parsed {
            Err(e) => p.push(Problem::check("kubeconfig", format!("{name}: {e}"), "regenerate it (the guide's step 05)")),
            Ok(k) => {
                if let Some(h) = k.host() {
                    names.push((crate::output::redact::line(&h), format!("the server of {name}")));
                }
                p.extend(kubeconfig(name, k, serving, ca));
            }
        }
    }
    if let Some(s) = serving {
        p.extend(serving_names(s, names));
    }
    p.extend(purposes(desired, &certs, serving, ca));
    p.extend(component_users(desired));
    p
}

/// Each certificate fits its role: the serving certificate may serve
/// (serverAuth), the CA the apiserver trusts is a CA, and the certificate
/// the apiserver shows kubelets may be a client and names a user the
/// apiserver-to-kubelet RBAC binds.
fn purposes(desired: &Desired, certs: &BTreeMap<&str, Cert>, serving: Option<&Cert>, ca: Option<&Cert>) -> Vec<Problem> {
    let mut p = Vec::new();
    if serving.is_some_and(|s| !s.allows(pki::Purpose::Server)) {
        p.push(Problem::check("cert-purpose", format!("{} does not allow serverAuth (its extendedKeyUsage)", serving_name()), "reissue it with extendedKeyUsage serverAuth"));
    }
    if ca.is_some_and(|c| !c.is_ca()) {
        p.push(Problem::check(
            "ca-not-ca",
            format!("{} is not a CA certificate (no basicConstraints CA:TRUE)", asset_named_by(APISERVER, "client-ca-file")),
            "use the cluster CA's certificate (the guide's step 04)",
        ));
    }
    let api = desired.unit(APISERVER);
    if let Some(c) = api.and_then(|u| u.flag("kubelet-client-certificate")).and_then(|d| certs.get(d)) {
        let name = asset_named_by(APISERVER, "kubelet-client-certificate");
        if !c.allows(pki::Purpose::Client) {
            p.push(Problem::check("cert-purpose", format!("{name} does not allow clientAuth (its extendedKeyUsage)"), "reissue it with extendedKeyUsage clientAuth"));
        }
        let bound = |kind: &str, n: &str| crate::model::CLUSTER_ROLE_BINDINGS.iter().flat_map(|b| b.subjects).any(|s| s.kind == kind && s.name == n);
        let cn = c.common_name().unwrap_or_default();
        if !bound("User", &cn) && !c.organizations().iter().any(|o| bound("Group", o)) {
            let users: Vec<&str> = crate::model::CLUSTER_ROLE_BINDINGS.iter().flat_map(|b| b.subjects).filter(|s| s.kind == "User").map(|s| s.name).collect();
            p.push(Problem::check(
                "kubelet-client-user",
                format!("{name} is for user `{}`; the apiserver-to-kubelet RBAC binds {}", crate::output::redact::line(&cn), users.join(", ")),
                format!("reissue it with CN={} (or change manifests/rbac)", users.first().copied().unwrap_or("")),
            ));
        }
    }
    p
}

/// The controller-manager's and scheduler's kubeconfigs are for the users
/// Kubernetes' own RBAC grants them (`system:kube-scheduler`, …).
fn component_users(desired: &Desired) -> Vec<Problem> {
    let mut p = Vec::new();
    // A component's kubeconfig is the one the layout restarts it for (the
    // scheduler names its own in its config file, not on its unit).
    for f in desired.files.iter().filter(|f| f.spec.kind == FileKind::Kubeconfig) {
        let [c] = f.spec.restarts else { continue };
        let c = *c;
        if c == APISERVER {
            continue;
        }
        let Some(cert) = f.bytes().ok().and_then(|b| pki::kubeconfig(&b).ok()).and_then(|k| k.client_cert) else { continue };
        let cn = cert.common_name().unwrap_or_default();
        if cn != c.rbac_user() {
            p.push(Problem::check(
                "kubeconfig-user",
                format!(
                    "{}: its client certificate is for user `{}`; Kubernetes grants {c} its permissions as `{}`",
                    asset_name(f),
                    crate::output::redact::line(&cn),
                    c.rbac_user()
                ),
                format!("reissue it with CN={} (the guide's step 04)", c.rbac_user()),
            ));
        }
    }
    p
}

/// Every certificate parsed (by its destination), and the encryption
/// config checked; what cannot be read or parsed is a problem.
fn certificates<'d>(desired: &'d Desired, p: &mut Vec<Problem>) -> BTreeMap<&'d str, Cert> {
    let mut certs = BTreeMap::new();
    let encryption = desired.unit(APISERVER).and_then(|u| u.flag("encryption-provider-config"));
    // Only what is parsed here is read: binaries are streamed, never held.
    for f in desired.files.iter().filter(|f| matches!(f.spec.kind, FileKind::Certificate | FileKind::Secret)) {
        let bytes = match f.bytes() {
            Ok(b) => b,
            Err(e) => {
                p.push(Problem::check("asset-unreadable", format!("cannot read the asset for {}: {e}", f.spec.dest), "make it readable"));
                continue;
            }
        };
        match f.spec.kind {
            FileKind::Certificate => match Cert::from_pem(&bytes) {
                Ok(c) => {
                    certs.insert(f.spec.dest, c);
                }
                Err(e) => p.push(Problem::check("certificate", format!("{}: {e}", asset_name(f)), "replace it with the PEM certificate")),
            },
            FileKind::Secret if encryption == Some(f.spec.dest) => {
                for e in pki::encryption_config(&bytes) {
                    p.push(Problem::check(
                        "encryption-config",
                        format!("{}: {e}", asset_name(f)),
                        "write an EncryptionConfiguration whose keys are 32 random bytes, base64 (head -c 32 /dev/urandom | base64; the guide's step 06)",
                    ));
                }
            }
            _ => {}
        }
    }
    certs
}

/// Each key matches the certificate beside it (x.key ↔ x.crt).
fn keys(desired: &Desired, certs: &BTreeMap<&str, Cert>) -> Vec<Problem> {
    let mut p = Vec::new();
    for f in desired.files.iter().filter(|f| f.spec.kind == FileKind::Key) {
        let crt = f.spec.dest.trim_end_matches(".key").to_string() + ".crt";
        let Some(cert) = certs.get(crt.as_str()) else { continue };
        match f.bytes().map_err(|e| crate::error::Unusable(e.to_string())).and_then(|b| pki::key_matches(cert, &b)) {
            Ok(true) => {}
            Ok(false) => p.push(Problem::check(
                "key-mismatch",
                format!("{} does not match the certificate {}", asset_name(f), crt.rsplit('/').next().unwrap_or(&crt)),
                "use the key the certificate was issued for, or reissue the certificate",
            )),
            Err(e) => p.push(Problem::check("key", format!("{}: {e}", asset_name(f)), "replace it with the PEM private key")),
        }
    }
    p
}

/// A kubeconfig's CA verifies the serving certificate; its client key
/// matches its certificate, which the cluster CA signed.
fn kubeconfig(name: &str, k: &pki::KubeconfigInfo, serving: Option<&Cert>, ca: Option<&Cert>) -> Vec<Problem> {
    let mut p = Vec::new();
    match (&k.ca, serving) {
        (None, _) => p.push(Problem::check("kubeconfig-ca", format!("{name}: no certificate-authority-data"), "embed the CA (kubectl config set-cluster --embed-certs)")),
        (Some(kca), _) if !kca.is_ca() => p.push(Problem::check(
            "ca-not-ca",
            format!("{name}: its certificate-authority-data is not a CA certificate"),
            "embed the cluster CA (kubectl config set-cluster --embed-certs)",
        )),
        (Some(kca), Some(s)) if !s.signed_by(kca) => p.push(Problem::check(
            "kubeconfig-ca",
            format!("{name}: its CA does not verify the apiserver's serving certificate"),
            format!("use the CA that issued {}", serving_name()),
        )),
        _ => {}
    }
    match (&k.client_cert, &k.client_key) {
        (Some(c), Some(key)) => {
            if !c.allows(pki::Purpose::Client) {
                p.push(Problem::check(
                    "cert-purpose",
                    format!("{name}: its client certificate does not allow clientAuth (its extendedKeyUsage)"),
                    "reissue it with extendedKeyUsage clientAuth",
                ));
            }
            if !pki::key_matches(c, key).unwrap_or(false) {
                p.push(Problem::check("kubeconfig-key", format!("{name}: its client key does not match its client certificate"), "regenerate it"));
            }
            if ca.is_some_and(|ca| !c.signed_by(ca)) {
                p.push(Problem::check(
                    "kubeconfig-chain",
                    format!("{name}: its client certificate is not signed by {}", asset_named_by(APISERVER, "client-ca-file")),
                    "reissue it from the cluster CA",
                ));
            }
        }
        _ => p.push(Problem::check("kubeconfig-credentials", format!("{name}: no client certificate and key"), "embed them (kubectl config set-credentials --embed-certs)")),
    }
    p
}

/// The serving certificate names every address clients use (each with
/// why), and has not expired.
fn serving_names(s: &Cert, names: Vec<(String, String)>) -> Vec<Problem> {
    let mut p = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (n, why) in names {
        if seen.insert(n.clone()) && !s.covers(&n) {
            p.push(Problem::check("serving-cert-names", format!("{} does not name {n} ({why})", serving_name()), "reissue it with that name among its subjectAltNames"));
        }
    }
    p
}

fn asset_name(f: &crate::bootstrap::desired::DesiredFile) -> String {
    match &f.content {
        crate::bootstrap::desired::Content::File(a) => crate::output::redact::line(&a.path.display().to_string()),
        crate::bootstrap::desired::Content::Text(_) => f.spec.dest.to_string(),
    }
}

/// Unit directories that take precedence over /etc/systemd/system: a unit
/// file there replaces the one bootstrap installs.
const OVERRIDING_UNIT_DIRS: &[&str] = &["/etc/systemd/system.control/", "/run/systemd/system.control/", "/run/systemd/transient/", "/run/systemd/generator.early/"];

/// Remote checks on the gathered facts and the plan.
pub fn remote(desired: &Desired, facts: &Probe, plan: &Plan) -> Vec<Problem> {
    let mut p = crate::remote::probe::host::requirements(facts);
    p.extend(destinations(desired, facts));
    p.extend(directories(facts));
    p.extend(unit_overrides(desired, facts));
    for f in desired.files.iter().filter(|f| f.spec.kind == FileKind::Binary) {
        if let Err(e) = pki::check_elf(&f.head(64), &facts.arch) {
            p.push(Problem::check("arch", format!("{} {e}", asset_name(f)), format!("use the linux/{} build of {}", facts.arch, f.spec.dest.rsplit('/').next().unwrap_or(""))));
        }
    }
    // A port is the component's when its unit's main process holds the
    // socket (by inode): never by a process name, which anyone can choose.
    for (component, port) in crate::bootstrap::desired::serving_ports(desired) {
        if let Some(l) = facts.listeners.iter().find(|l| l.port == port && !l.held_by(component.unit())) {
            p.push(Problem::check("port-in-use", format!("port {port} ({component}) is held by {}", l.who()), "stop it or free the port"));
        }
    }
    p.extend(free_space(facts, plan));
    if facts.now > 0.0 {
        p.extend(validity(desired, facts.now as i64));
    }
    p
}

/// Renew this many seconds before a certificate expires (a warning).
const EXPIRING: i64 = 30 * 86400;

/// Every certificate bootstrap ships, and every certificate embedded in a
/// kubeconfig it ships, is valid now by the server's clock (`now`); one
/// that expires within 30 days is a warning.
fn validity(desired: &Desired, now: i64) -> Vec<Problem> {
    let mut certs: Vec<(String, Cert)> = Vec::new();
    for f in &desired.files {
        let Ok(bytes) = (match f.spec.kind {
            FileKind::Certificate | FileKind::Kubeconfig => f.bytes(),
            _ => continue,
        }) else {
            continue;
        };
        match f.spec.kind {
            FileKind::Certificate => certs.extend(Cert::from_pem(&bytes).ok().map(|c| (asset_name(f), c))),
            _ => {
                if let Ok(k) = pki::kubeconfig(&bytes) {
                    certs.extend(k.client_cert.map(|c| (format!("{}: its client certificate", asset_name(f)), c)));
                    certs.extend(k.ca.map(|c| (format!("{}: its certificate-authority-data", asset_name(f)), c)));
                }
            }
        }
    }
    let date = pki::date;
    let mut p = Vec::new();
    for (name, c) in certs {
        let (from, to) = c.validity();
        if now < from {
            p.push(Problem::check(
                "cert-validity",
                format!("{name} is not valid before {} (the server's clock reads {})", date(from), date(now)),
                "check the server's clock (timedatectl), or reissue it",
            ));
        } else if now > to {
            p.push(Problem::check("cert-validity", format!("{name} expired on {}", date(to)), "reissue it (the guide's step 04)"));
        } else if to - now < EXPIRING {
            p.push(
                Problem::check("cert-expiring", format!("{name} expires in {} day(s), on {}", (to - now) / 86400, date(to)), "reissue it before then, and run bootstrap again")
                    .warn(),
            );
        }
    }
    p
}

/// Every destination is a regular file or absent: `mv` would put a file
/// *into* a directory, and replace a symlink rather than what it points at.
fn destinations(desired: &Desired, facts: &Probe) -> Vec<Problem> {
    let mut p = Vec::new();
    for f in &desired.files {
        if let Some(r) = facts.files.get(f.spec.dest).filter(|r| !r.is_regular()) {
            p.push(Problem::check(
                "destination-not-file",
                format!("{} on the server is {}, not a regular file", f.spec.dest, r.kind),
                format!("move it away (mv {0} {0}.old): bootstrap places a regular file there", f.spec.dest),
            ));
        }
    }
    p
}

/// Directories, read without following links: bootstrap writes only into
/// directories it checked. Its own are corrected by the plan; a shared one
/// anyone else may write to lets them replace what bootstrap places.
fn directories(facts: &Probe) -> Vec<Problem> {
    let mut p = Vec::new();
    let show = crate::output::redact::line;
    for d in crate::model::DIRECTORIES {
        let Some(r) = facts.dirs.get(d.path) else { continue };
        if r.kind != crate::remote::probe::FileType::Directory {
            let fix = if d.owned {
                format!("move it away (mv {0} {0}.old): bootstrap makes this directory itself", d.path)
            } else {
                format!("bootstrap writes only into a real directory at {}, never through a link: make it one (a system directory: whoever changed it knows why)", d.path)
            };
            p.push(Problem::check("directory", format!("{} on the server is {}, not a directory", d.path, r.kind), fix));
            continue;
        }
        let loose = r.mode.0 & 0o002 != 0 || (r.mode.0 & 0o020 != 0 && r.group != "root") || r.owner != "root";
        if !d.owned && loose {
            p.push(Problem::check(
                "directory-shared",
                format!("{}/ is {} {}:{}: writable by other users, who could replace what bootstrap places there", d.path, r.mode, show(&r.owner), show(&r.group)),
                format!("chown root:root {0} && chmod go-w {0}", d.path),
            ));
        }
    }
    p
}

/// Drop-ins and overriding unit files change what runs without showing in
/// the unit bootstrap installs.
fn unit_overrides(desired: &Desired, facts: &Probe) -> Vec<Problem> {
    let mut p = Vec::new();
    let show = crate::output::redact::line;
    for u in &desired.units {
        let Some(st) = facts.units.get(u.spec.file_name) else { continue };
        if !st.drop_ins.is_empty() {
            let paths: Vec<String> = st.drop_ins.iter().map(|d| show(d)).collect();
            p.push(Problem::check(
                "drop-in",
                format!("{} has drop-in(s) that change it: {}", u.spec.file_name, paths.join(", ")),
                format!("remove them (rm {} && systemctl daemon-reload), or make the change with --set/--config so it is in the unit", paths.join(" ")),
            ));
        }
        let dest = crate::model::placed(u.spec.manifest).map(|f| f.dest).unwrap_or_default();
        let installed = facts.files.contains_key(dest);
        if !st.fragment.is_empty() && st.fragment != dest && (installed || OVERRIDING_UNIT_DIRS.iter().any(|d| st.fragment.starts_with(d))) {
            p.push(Problem::check(
                "unit-override",
                format!("systemd loads {} from {}, which overrides {dest}", u.spec.file_name, show(&st.fragment)),
                format!("remove {} and run systemctl daemon-reload", show(&st.fragment)),
            ));
        }
    }
    p
}

/// The new bytes must fit beside the old ones while uploading, per file
/// system (by its id: no mount point text to parse).
fn free_space(facts: &Probe, plan: &Plan) -> Vec<Problem> {
    let mut need: BTreeMap<String, (u64, u64, Vec<&str>)> = BTreeMap::new();
    for f in plan.uploads() {
        let dir = f.dest.rsplit_once('/').map(|x| x.0).unwrap_or("/");
        if let Some((fs, avail)) = facts.disk.get(dir) {
            let e = need.entry(fs.clone()).or_insert((0, *avail, Vec::new()));
            e.0 += f.bytes;
            if !e.2.contains(&dir) {
                e.2.push(dir);
            }
        }
    }
    need.into_values()
        .filter(|(bytes, avail, _)| bytes + (16 << 20) > *avail)
        .map(|(bytes, avail, dirs)| {
            Problem::check(
                "disk-space",
                format!("not enough free space on the file system of {}: the upload needs {}, {} is free", dirs.join(", "), human_bytes(bytes), human_bytes(avail)),
                "free some space on the server",
            )
        })
        .collect()
}

/// One set of binaries serves one architecture: servers that differ are one
/// problem, naming each server's.
fn architectures(servers: &[(&str, &Probe)]) -> Option<Problem> {
    let named = |p: &Probe| crate::model::arch::Arch::from_uname(&p.arch).map(|a| a.platform()).unwrap_or_else(|| crate::output::redact::line(&p.arch));
    let first = named(servers.first()?.1);
    servers.iter().any(|(_, p)| named(p) != first).then(|| {
        let each: Vec<String> = servers.iter().map(|(n, p)| format!("{n} {}", named(p))).collect();
        Problem::check(
            "architectures",
            format!("the servers differ in architecture ({}): one plane runs one set of binaries", each.join(", ")),
            "use servers of one architecture, or bootstrap each architecture's servers as a plane of its own",
        )
    })
}

/// The apiserver's serving certificate as the person who has it names it.
fn serving_name() -> String {
    asset_named_by(APISERVER, "tls-cert-file")
}

/// The serving certificate bootstrap installs (`--tls-cert-file`), parsed.
fn serving_cert(desired: &Desired) -> Option<Cert> {
    let dest = desired.unit(APISERVER).and_then(|u| u.flag("tls-cert-file"))?;
    let f = desired.file(dest)?;
    Cert::from_pem(&f.bytes().ok()?).ok()
}

/// The address `probe`'s server will advertise: `--advertise-address` when
/// set, else what the apiserver picks itself (the default route's interface).
pub fn advertise_address(desired: &Desired, probe: &Probe) -> Option<String> {
    desired.unit(APISERVER).and_then(|u| u.flag("advertise-address")).map(str::to_string).or_else(|| probe.default_address.clone())
}

/// Checks across the servers of one run: with several, each server's
/// advertise address and hostname must be names of the serving certificate
/// (clients and the other servers reach it by them) and unique (Lease
/// holders are named by hostname, Endpoints list addresses); `--endpoint`'s
/// host must be a name of the certificate.
pub fn cluster(desired: &Desired, servers: &[(&str, &Probe)], endpoint: Option<&crate::model::Endpoint>) -> Vec<Problem> {
    let mut p = Vec::new();
    let show = crate::output::redact::line;
    let cert = serving_cert(desired);
    if let (Some(e), Some(c)) = (endpoint, &cert) {
        if !c.covers(&e.host) {
            p.push(Problem::check(
                "endpoint-san",
                format!("--endpoint {}: {} is not a name of the serving certificate", e.url(), e.host),
                format!("reissue {} with it among its SANs, or pass the address clients really use", serving_name()),
            ));
        }
    }
    if servers.len() < 2 {
        return p;
    }
    p.extend(architectures(servers));
    let mut hostnames: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut addresses: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, probe) in servers {
        if !probe.hostname.is_empty() {
            hostnames.entry(probe.hostname.as_str()).or_default().push(name);
        }
        let address = advertise_address(desired, probe);
        match &address {
            None => p.push(
                Problem::check(
                    "advertise-address",
                    "no default route: the apiserver cannot pick an address to advertise",
                    "give the server a default route (the apiserver advertises its interface's address)",
                )
                .on(name),
            ),
            Some(a) => addresses.entry(a.clone()).or_default().push(name),
        }
        let Some(c) = &cert else { continue };
        for (what, value) in [("the address it will advertise", address.as_deref()), ("its hostname", Some(probe.hostname.as_str()).filter(|h| !h.is_empty()))] {
            if let Some(v) = value.filter(|v| !c.covers(v)) {
                p.push(
                    Problem::check(
                        "san",
                        format!("{what}, {}, is not a name of the serving certificate", show(v)),
                        format!("reissue {} with every server's address and hostname among its SANs", serving_name()),
                    )
                    .on(name),
                );
            }
        }
    }
    for (h, names) in hostnames.iter().filter(|(_, n)| n.len() > 1) {
        p.push(Problem::check(
            "hostname-unique",
            format!("{} share the hostname {}", names.join(", "), show(h)),
            "give each server its own hostname (leader Leases name their holder by it)",
        ));
    }
    for (a, names) in addresses.iter().filter(|(_, n)| n.len() > 1) {
        p.push(Problem::check("address-unique", format!("{} would all advertise {a}", names.join(", ")), "each server must advertise its own address"));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::desired::{Content, DesiredFile};
    use crate::bootstrap::plan::{build_for, Passes};
    use crate::model::overrides::{desired_units, Overrides};
    use crate::model::{FileMode, DIRECTORIES, FILES};
    use crate::remote::probe::{FileType, Holder, Listener, RemoteDir, RemoteFile};

    /// Every layout file as small text; the serving certificate a real one
    /// naming `sans`.
    fn desired(sans: &[&str]) -> Desired {
        let key = rcgen::KeyPair::generate().unwrap();
        let serving = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap().self_signed(&key).unwrap().pem();
        let units = desired_units(&Overrides::default());
        let tls = units.iter().find(|u| u.spec.component == APISERVER).and_then(|u| u.flag("tls-cert-file")).unwrap().to_string();
        let files = FILES
            .iter()
            .map(|spec| {
                let text = if spec.dest == tls { serving.clone() } else { spec.dest.to_string() };
                DesiredFile { spec, size: text.len() as u64, sha256: crate::local::files::sha256_hex(text.as_bytes()), content: Content::Text(text) }
            })
            .collect();
        Desired { files, units, scheduler_version: None, versions: Default::default() }
    }

    /// A server ready for a first deploy: systemd 252, every command,
    /// directories root's, plenty of space, nothing listening.
    fn server(name: &str, address: &str) -> Probe {
        let mut p = Probe {
            hostname: name.into(),
            arch: "x86_64".into(),
            systemd: true,
            systemd_version: Some(252),
            coreutils: Some("9.1".into()),
            default_address: Some(address.into()),
            ..Default::default()
        };
        for d in DIRECTORIES {
            p.dirs.insert(d.path.into(), RemoteDir { mode: FileMode(d.mode), owner: "root".into(), group: "root".into(), kind: FileType::Directory });
            p.disk.insert(d.path.into(), ("fs1".into(), 10 << 30));
        }
        p
    }

    fn added(base: &[Problem], now: Vec<Problem>) -> Vec<String> {
        now.into_iter().filter(|p| !base.contains(p)).map(|p| p.to_string()).collect()
    }

    /// Each breakage of a server adds exactly the problem that names it.
    #[test]
    fn remote_names_each_thing_on_the_server_that_stops_a_deploy() {
        let d = desired(&["server-1"]);
        let clean = server("server-1", "10.0.0.1");
        let plan = build_for(&d, &clean, Passes::One);
        let base = remote(&d, &clean, &plan);
        let api = d.unit(APISERVER).unwrap();
        let (unit, port) = (api.spec.file_name, api.serving_port());
        type Breakage = (&'static str, Box<dyn Fn(&mut Probe)>, String);
        let bin_dir = DIRECTORIES.iter().find(|x| !x.owned).unwrap().path;
        let cases: Vec<Breakage> = vec![
            (
                "a directory at a file's place",
                Box::new(|p| {
                    drop(p.files.insert(
                        FILES[0].dest.into(),
                        RemoteFile { kind: FileType::Directory, mode: FileMode(0o755), owner: "root".into(), group: "root".into(), size: 0, sha256: String::new(), mtime_ns: 0 },
                    ))
                }),
                format!("{} on the server is a directory, not a regular file", FILES[0].dest),
            ),
            (
                "a shared directory others may write",
                Box::new(move |p| p.dirs.get_mut(bin_dir).unwrap().mode = FileMode(0o777)),
                format!("{bin_dir}/ is 0777 root:root: writable by other users"),
            ),
            (
                "a drop-in",
                Box::new(move |p| p.units.entry(unit.into()).or_default().drop_ins = vec!["/run/systemd/system/x.d/y.conf".into()]),
                format!("{unit} has drop-in(s) that change it"),
            ),
            (
                "an overriding unit file",
                Box::new(move |p| p.units.entry(unit.into()).or_default().fragment = "/run/systemd/transient/x.service".into()),
                format!("systemd loads {unit} from /run/systemd/transient/x.service"),
            ),
            (
                "a port held by another process",
                Box::new(move |p| {
                    p.listeners.push(Listener { addr: std::net::Ipv4Addr::UNSPECIFIED.into(), port, inode: 7, unit: None, holder: Some(Holder { pid: 7, name: "nc".into() }) })
                }),
                format!("port {port} ({APISERVER}) is held by"),
            ),
            ("a full file system", Box::new(|p| p.disk.values_mut().for_each(|v| v.1 = 1 << 20)), "not enough free space on the file system of".into()),
            ("an old systemd", Box::new(|p| p.systemd_version = Some(237)), "the server runs systemd 237".into()),
        ];
        for (what, breaks, says) in cases {
            let mut p = clean.clone();
            breaks(&mut p);
            let plan = build_for(&d, &p, Passes::One);
            let new = added(&base, remote(&d, &p, &plan));
            assert_eq!(new.len(), 1, "{what}: {new:#?}");
            assert!(new[0].contains(&says), "{what}: {new:#?}");
        }
    }

    /// Every id a problem is raised with is in CHECKS, and every id in
    /// CHECKS is raised somewhere: the catalogue `--ignore-preflight-errors`
    /// reads is the one the code uses.
    #[test]
    fn every_preflight_id_is_catalogued_and_every_catalogued_id_is_raised() {
        let mut raised = std::collections::BTreeSet::new();
        let mut dirs = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
                let path = e.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for part in text.split(concat!("Problem", "::check(")).skip(1) {
                        let id = part.trim_start().strip_prefix('"').and_then(|r| r.split('"').next()).unwrap_or_else(|| panic!("{}: an id that is not a literal", path.display()));
                        raised.insert(id.to_string());
                    }
                }
            }
        }
        let catalogued: std::collections::BTreeSet<String> = CHECKS.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(raised, catalogued);
        assert_eq!(catalogued.len(), CHECKS.len(), "an id catalogued twice");
    }

    #[test]
    fn ignoring_turns_named_ignorable_problems_into_warnings() {
        assert_eq!(Ignore::parse(&[]).unwrap(), Ignore::None);
        assert_eq!(Ignore::parse(&["port-in-use,drop-in".into()]).unwrap(), Ignore::Ids(vec!["port-in-use", "drop-in"]));
        assert_eq!(Ignore::parse(&["drop-in".into(), "ALL".into()]).unwrap(), Ignore::All);
        assert!(Ignore::parse(&["arch".into()]).unwrap_err().to_string().contains("`arch` cannot be ignored"));
        assert!(Ignore::parse(&["nope".into()]).unwrap_err().to_string().contains("no preflight check `nope`"));
        let found = vec![Problem::check("port-in-use", "p", "f"), Problem::check("arch", "a", "f"), Problem::check("cert-expiring", "e", "f").warn()];
        let ids = |v: &[Problem]| v.iter().map(|p| p.id).collect::<Vec<_>>();
        let (stop, warn) = sort(found.clone(), &Ignore::None);
        assert_eq!((ids(&stop), ids(&warn)), (vec!["port-in-use", "arch"], vec!["cert-expiring"]));
        // `all` ignores every ignorable check, never one that is not.
        let (stop, warn) = sort(found, &Ignore::All);
        assert_eq!((ids(&stop), ids(&warn)), (vec!["arch"], vec!["port-in-use", "cert-expiring"]));
        assert!(warn.iter().all(|w| w.warning));
        assert!(Problem::check("drop-in", "x has drop-ins", "remove them").to_string().ends_with("remove them [drop-in]"));
    }

    /// A certificate with these purposes and CN, valid from `from` to `to`
    /// seconds around now, signed by `issuer` (self-signed without).
    fn cert(cn: &str, purposes: Vec<rcgen::ExtendedKeyUsagePurpose>, days: (i64, i64)) -> String {
        let mut p = rcgen::CertificateParams::new(vec!["server-1".to_string()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.extended_key_usages = purposes;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::days(days.0);
        p.not_after = now + time::Duration::days(days.1);
        p.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
    }

    fn with_file(mut d: Desired, dest: &str, text: String) -> Desired {
        let f = d.files.iter_mut().find(|f| f.spec.dest == dest).unwrap();
        f.content = Content::Text(text);
        d
    }

    #[test]
    fn certificates_are_judged_by_the_server_clock_and_their_purpose() {
        let d = desired(&["server-1"]);
        let tls = d.unit(APISERVER).and_then(|u| u.flag("tls-cert-file")).unwrap().to_string();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let ids = |d: &Desired, now: i64| validity(d, now).into_iter().map(|p| (p.id, p.warning)).collect::<Vec<_>>();
        let valid = with_file(d.clone(), &tls, cert("kubernetes", vec![], (-1, 365)));
        assert_eq!(ids(&valid, now), vec![]);
        // The server's clock decides: a year on, the same certificate has expired.
        assert_eq!(ids(&valid, now + 400 * 86400), vec![("cert-validity", false)]);
        assert_eq!(ids(&valid, now + 350 * 86400), vec![("cert-expiring", true)]);
        assert_eq!(ids(&valid, now - 2 * 86400), vec![("cert-validity", false)]);
        assert!(validity(&valid, now - 2 * 86400)[0].to_string().contains("is not valid before"));
        // serverAuth missing from the serving certificate's extendedKeyUsage.
        let client_only = with_file(d.clone(), &tls, cert("kubernetes", vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth], (-1, 365)));
        let found: Vec<String> = local(&client_only, vec![]).into_iter().filter(|p| p.id == "cert-purpose").map(|p| p.to_string()).collect();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert!(found[0].contains("does not allow serverAuth"), "{found:#?}");
        let server_only = with_file(d, &tls, cert("kubernetes", vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth], (-1, 365)));
        assert!(local(&server_only, vec![]).iter().all(|p| p.id != "cert-purpose" || p.what.contains("clientAuth")));
    }

    /// Across servers: hostnames and addresses unique, each a name of the
    /// serving certificate, an address to advertise, `--endpoint` named.
    #[test]
    fn cluster_names_what_servers_cannot_share() {
        let d = desired(&["server-1", "server-2", "10.0.0.1", "10.0.0.2", "lb.example"]);
        let (s1, s2) = (server("server-1", "10.0.0.1"), server("server-2", "10.0.0.2"));
        let two = |a: &Probe, b: &Probe| cluster(&d, &[("s1", a), ("s2", b)], None).into_iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(two(&s1, &s2), Vec::<String>::new());
        let same_name = server("server-1", "10.0.0.2");
        assert_eq!(two(&s1, &same_name), vec!["s1, s2 share the hostname server-1: give each server its own hostname (leader Leases name their holder by it) [hostname-unique]"]);
        let same_address = server("server-2", "10.0.0.1");
        assert_eq!(two(&s1, &same_address), vec!["s1, s2 would all advertise 10.0.0.1: each server must advertise its own address [address-unique]"]);
        let unnamed = server("server-3", "10.0.0.3");
        let found = two(&s1, &unnamed);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(
            found[0].starts_with("s2: the address it will advertise, 10.0.0.3, is not a name of the serving certificate") && found[1].starts_with("s2: its hostname, server-3,"),
            "{found:#?}"
        );
        let no_route = Probe { default_address: None, ..server("server-2", "") };
        assert_eq!(
            two(&s1, &no_route),
            vec!["s2: no default route: the apiserver cannot pick an address to advertise: give the server a default route (the apiserver advertises its interface's address) [advertise-address]"]
        );
        // One set of binaries serves one architecture.
        let arm = Probe { arch: "aarch64".into(), ..server("server-2", "10.0.0.2") };
        assert_eq!(two(&s1, &arm), vec!["the servers differ in architecture (s1 linux/amd64, s2 linux/arm64): one plane runs one set of binaries: use servers of one architecture, or bootstrap each architecture's servers as a plane of its own [architectures]"]);
        // --endpoint, checked with one server too.
        let e = |s: &str| crate::model::Endpoint::parse_https(s).unwrap();
        assert!(cluster(&d, &[("s1", &s1)], Some(&e("https://lb.example:6443"))).is_empty());
        let found = cluster(&d, &[("s1", &s1)], Some(&e("https://other.example")));
        assert_eq!(found.len(), 1);
        assert!(found[0].what.starts_with("--endpoint https://other.example:443: other.example is not a name"), "{found:#?}");
    }
}
