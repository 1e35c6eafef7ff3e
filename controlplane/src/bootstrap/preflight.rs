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
                if let Err(e) = check_encryption_config(&bytes) {
                    p.push(Problem::check("encryption-config", format!("{}: {e}", asset_name(f)), "write an EncryptionConfiguration (the guide's step 06)"));
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
        (Some(kca), Some(s)) if !s.signed_by(kca) => p.push(Problem::check(
            "kubeconfig-ca",
            format!("{name}: its CA does not verify the apiserver's serving certificate"),
            format!("use the CA that issued {}", serving_name()),
        )),
        _ => {}
    }
    match (&k.client_cert, &k.client_key) {
        (Some(c), Some(key)) => {
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
    if s.seconds_left() <= 0 {
        p.push(Problem::check("cert-expired", format!("{} has expired", serving_name()), "reissue it"));
    }
    p
}

fn asset_name(f: &crate::bootstrap::desired::DesiredFile) -> String {
    match &f.content {
        crate::bootstrap::desired::Content::File(a) => crate::output::redact::line(&a.path.display().to_string()),
        crate::bootstrap::desired::Content::Text(_) => f.spec.dest.to_string(),
    }
}

/// The encryption config holds the key that encrypts Secrets at rest:
/// errors give positions and field names, never values.
fn check_encryption_config(bytes: &[u8]) -> Result<(), String> {
    let v: serde_yaml::Value = serde_yaml::from_slice(bytes).map_err(|e| format!("not YAML: {}", crate::output::redact::yaml_error(&e)))?;
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "EncryptionConfiguration" && kind != "EncryptionConfig" {
        return Err("its kind is not EncryptionConfiguration".into());
    }
    let ok = v.get("resources").and_then(|r| r.as_sequence()).is_some_and(|r| !r.is_empty());
    if !ok {
        return Err("no resources to encrypt".into());
    }
    Ok(())
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
                        RemoteFile { kind: FileType::Directory, mode: FileMode(0o755), owner: "root".into(), group: "root".into(), size: 0, sha256: String::new() },
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

    /// Across servers: hostnames and addresses unique, each a name of the
    /// serving certificate, an address to advertise, `--endpoint` named.
    #[test]
    fn cluster_names_what_servers_cannot_share() {
        let d = desired(&["server-1", "server-2", "10.0.0.1", "10.0.0.2", "lb.example"]);
        let (s1, s2) = (server("server-1", "10.0.0.1"), server("server-2", "10.0.0.2"));
        let two = |a: &Probe, b: &Probe| cluster(&d, &[("s1", a), ("s2", b)], None).into_iter().map(|p| p.to_string()).collect::<Vec<_>>();
        assert_eq!(two(&s1, &s2), Vec::<String>::new());
        let same_name = server("server-1", "10.0.0.2");
        assert_eq!(two(&s1, &same_name), vec!["s1, s2 share the hostname server-1: give each server its own hostname (leader Leases name their holder by it)"]);
        let same_address = server("server-2", "10.0.0.1");
        assert_eq!(two(&s1, &same_address), vec!["s1, s2 would all advertise 10.0.0.1: each server must advertise its own address"]);
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
            vec!["s2: no default route: the apiserver cannot pick an address to advertise: give the server a default route (the apiserver advertises its interface's address)"]
        );
        // One set of binaries serves one architecture.
        let arm = Probe { arch: "aarch64".into(), ..server("server-2", "10.0.0.2") };
        assert_eq!(two(&s1, &arm), vec!["the servers differ in architecture (s1 linux/amd64, s2 linux/arm64): one plane runs one set of binaries: use servers of one architecture, or bootstrap each architecture's servers as a plane of its own"]);
        // --endpoint, checked with one server too.
        let e = |s: &str| crate::model::Endpoint::parse_https(s).unwrap();
        assert!(cluster(&d, &[("s1", &s1)], Some(&e("https://lb.example:6443"))).is_empty());
        let found = cluster(&d, &[("s1", &s1)], Some(&e("https://other.example")));
        assert_eq!(found.len(), 1);
        assert!(found[0].what.starts_with("--endpoint https://other.example:443: other.example is not a name"), "{found:#?}");
    }
}
