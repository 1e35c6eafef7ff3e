//! Fixtures for the checks' unit tests: a healthy server as the probe reads
//! it (built from the model, with a real generated PKI), a fake apiserver
//! behind a `tower` service (kube's client takes any), and a runner that
//! returns every check's finding by id.

use std::collections::BTreeMap;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use super::*;
use crate::cpcheck::{run, Ctx, Status};
use crate::model::overrides::{desired_units, Overrides};
use crate::model::{FileKind, DIRECTORIES, SERVICE_IP};
use crate::remote::probe::{Holder, Listener, RemoteDir, RemoteFile};

/// The unspecified address a dual-stack listener binds.
pub const ANY: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);
use crate::remote::systemd::UnitStatus;

/// PEMs of a CA, a serving certificate (the guide's names), a client certificate.
pub struct Pki {
    pub ca: String,
    pub serving: String,
    pub client: String,
}

pub fn pki(serving_names: &[&str]) -> Pki {
    let mut p = CertificateParams::new(vec![]).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, "CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = p.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(p, ca_key);
    let mut s = CertificateParams::new(serving_names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    s.distinguished_name.push(DnType::CommonName, "kubernetes");
    let serving = s.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().pem();
    let mut c = CertificateParams::new(vec![]).unwrap();
    c.distinguished_name.push(DnType::CommonName, "system:kube-scheduler");
    let client = c.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().pem();
    Pki { ca, serving, client }
}

/// A self-signed certificate, as the controller-manager and scheduler make
/// one at start without a --tls-cert-file (DER).
pub fn self_signed() -> Vec<u8> {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "localhost@1700000000");
    p.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
}

/// A server where everything is as bootstrap leaves it.
pub fn healthy() -> Probe {
    let pki = pki(&["127.0.0.1", SERVICE_IP, "server.kubernetes.local", "10.240.1.2"]);
    let mut p = Probe {
        hostname: "server".into(),
        arch: "x86_64".into(),
        systemd: true,
        systemd_version: Some(252),
        coreutils: Some("9.1".into()),
        uptime: 1000.0,
        etcd_health: "{\"health\":\"true\"}".into(),
        addresses: vec!["10.240.1.2".into()],
        ..Default::default()
    };
    p.now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let file = |mode: u32| RemoteFile {
        mode: FileMode(mode),
        owner: "root".into(),
        group: "root".into(),
        size: 1,
        kind: crate::remote::probe::FileType::Regular,
        sha256: String::new(),
        mtime_ns: 0,
    };
    for f in FILES {
        p.files.insert(f.dest.into(), file(f.mode));
        if f.kind == FileKind::Binary {
            p.heads.insert(f.dest.into(), b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00".to_vec());
        }
        match f.kind {
            FileKind::Certificate => {
                let pem = if f.dest.ends_with("ca.crt") { &pki.ca } else { &pki.serving };
                p.certs.insert(f.dest.into(), pem.clone());
            }
            FileKind::Kubeconfig => {
                p.kubeconfigs.insert(f.dest.into(), ("https://server.kubernetes.local:6443".into(), Some(pki.client.clone())));
            }
            _ => {}
        }
    }
    // The serving pair the apiserver's unit names belongs together.
    for u in desired_units(&Overrides::default()) {
        if let (Some(c), Some(k)) = (u.flag("tls-cert-file"), u.flag("tls-private-key-file")) {
            p.pairs.insert(c.into(), (k.into(), crate::remote::probe::pki::PairState::Match));
        }
    }
    for d in DIRECTORIES {
        p.dirs.insert(d.path.into(), RemoteDir { mode: FileMode(d.mode), owner: "root".into(), group: "root".into(), kind: crate::remote::probe::FileType::Directory });
    }
    for u in desired_units(&Overrides::default()) {
        let dest = crate::model::placed(u.spec.manifest).unwrap().dest;
        p.texts.insert(dest.into(), u.text.clone());
        let st = UnitStatus {
            active: ActiveState::Active,
            enabled: "enabled".into(),
            main_pid: 100,
            fragment: dest.into(),
            text: Some(u.text.clone()),
            cmdline: u.flags.argv(u.spec.exec),
            binary_version: Some("Kubernetes v1.20.2".into()),
            active_enter_unix: p.now as u64 - 500,
            ..Default::default()
        };
        p.units.insert(u.spec.file_name.into(), st);
        let inode = 1000 + p.listeners.len() as u64;
        p.units.get_mut(u.spec.file_name).unwrap().sockets = vec![inode];
        p.listeners.push(Listener { addr: ANY, port: u.serving_port(), inode, unit: Some(u.spec.file_name.into()), holder: None });
    }
    let sc = crate::model::placed(SCHEDULER_CONFIG.manifest).unwrap().dest;
    p.texts.insert(sc.into(), crate::model::version::render_scheduler_config(crate::model::Version { major: 1, minor: 20 }).unwrap());
    p.listeners.push(Listener {
        addr: std::net::Ipv4Addr::LOCALHOST.into(),
        port: crate::model::etcd_endpoint().port,
        inode: 30,
        unit: None,
        holder: Some(Holder { pid: 30, name: "etcd".into() }),
    });
    p.encryption_providers = vec!["aescbc".into(), "identity".into()];
    p
}

/// What the fake apiserver answers for a method and path: (status, body).
pub type Routes = Arc<dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync>;

/// An apiserver as a healthy v1.20 one answers, unless `over` says otherwise.
pub fn api(over: impl Fn(&str, &str) -> Option<(u16, String)> + Send + Sync + 'static) -> kube::Client {
    let routes: Routes = Arc::new(move |m: &str, p: &str| over(m, p).or_else(|| healthy_answer(m, p)));
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let routes = routes.clone();
        async move {
            let path = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let (status, body) = routes(req.method().as_str(), &path).unwrap_or((404, NOT_FOUND.into()));
            Ok::<_, std::convert::Infallible>(
                http::Response::builder().status(status).header("content-type", "application/json").body(kube::client::Body::from(body.into_bytes())).unwrap(),
            )
        }
    });
    kube::Client::new(svc, "default")
}

/// A 404 as the apiserver words it.
pub const NOT_FOUND: &str = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"not found\",\"reason\":\"NotFound\",\"code\":404}";

fn lease(name: &str) -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"holderIdentity": "server_1", "leaseDurationSeconds": 15, "renewTime": now.to_string()}})
    .to_string()
}

fn healthy_answer(method: &str, path: &str) -> Option<(u16, String)> {
    let ok = |v: serde_json::Value| Some((200, v.to_string()));
    let (roles, bindings) = crate::kube::rbac::objects();
    match (method, path.split('?').next().unwrap_or(path)) {
        ("GET", "/livez") | ("GET", "/readyz") => Some((200, "[+]ping ok\n[+]etcd ok\nlivez check passed\n".into())),
        ("GET", "/version") => ok(
            serde_json::json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2", "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "", "compiler": "gc", "platform": "linux/amd64"}),
        ),
        ("GET", "/api/v1/nodes") => ok(serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": []})),
        ("GET", "/api/v1/pods") => ok(serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})),
        ("GET", "/api/v1/namespaces/default/services/kubernetes") => ok(serde_json::json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "kubernetes"},
            "spec": {"clusterIP": SERVICE_IP, "ports": [{"port": 443, "targetPort": 6443}]}})),
        ("GET", "/api/v1/namespaces/default/endpoints/kubernetes") => ok(serde_json::json!({"kind": "Endpoints", "apiVersion": "v1", "metadata": {"name": "kubernetes"},
            "subsets": [{"addresses": [{"ip": "10.240.1.2"}], "ports": [{"port": 6443}]}]})),
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            ok(serde_json::json!({"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {}, "status": {"allowed": true}}))
        }
        ("GET", p) if p.starts_with("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/") => Some((200, lease(p.rsplit('/').next().unwrap()))),
        ("GET", p) if p.starts_with("/apis/rbac.authorization.k8s.io/v1/clusterroles/") => {
            let name = p.rsplit('/').next().unwrap();
            roles.iter().find(|r| r.metadata.name.as_deref() == Some(name)).map(|r| (200, serde_json::to_string(r).unwrap()))
        }
        ("GET", p) if p.starts_with("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/") => {
            let name = p.rsplit('/').next().unwrap();
            bindings.iter().find(|r| r.metadata.name.as_deref() == Some(name)).map(|r| (200, serde_json::to_string(r).unwrap()))
        }
        _ => None,
    }
}

/// A /healthz endpoint answering `status`.
pub fn healthz(status: u16) -> kube::Client {
    api(move |_, p| p.starts_with("/healthz").then(|| (status, "ok".to_string())))
}

/// Runs every non-CIS check against `probe` and `api`: finding by id.
pub async fn findings(probe: Probe, api: kube::Client, strict: bool) -> BTreeMap<String, (Status, String)> {
    let mut ctx = Ctx::for_tests(strict);
    ctx.desired = desired_units(&Overrides::default());
    // The apiserver serves the certificate on disk.
    let tls = ctx.desired.iter().find(|u| u.spec.component == APISERVER).and_then(|u| u.flag("tls-cert-file")).unwrap_or_default();
    ctx.served.insert(APISERVER, probe.certs.get(tls).and_then(|pem| Cert::from_pem(pem.as_bytes()).ok()).map(|c| vec![c.der]).ok_or_else(|| "no serving certificate".to_string()));
    // The others serve a self-signed certificate made at start.
    for u in crate::model::UNITS.iter().filter(|u| u.component != APISERVER) {
        ctx.served.insert(u.component, Ok(vec![self_signed()]));
    }
    ctx.host = crate::cpcheck::ready(Ok(probe));
    ctx.api = Ok(api);
    for u in crate::model::UNITS.iter().filter(|u| u.component != APISERVER) {
        ctx.health.insert(u.component, Ok(healthz(200)));
    }
    run(&ctx, &registry().iter().collect::<Vec<_>>(), &[]).await.into_iter().map(|r| (r.id, (r.finding.status, r.finding.detail))).collect()
}
