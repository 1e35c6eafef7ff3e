//! The guide's steps 04–06 for the bed: a CA, the apiserver's serving/kubelet
//! client certificate, the service-account key pair, client certificates and
//! kubeconfigs for admin, controller-manager and scheduler, and an
//! encryption config with a fresh random aescbc key. Written to an assets
//! directory laid out like the guide's jumpbox.

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use rand::RngCore;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};

/// A certificate's extendedKeyUsage, for tests that reissue one.
pub use rcgen::ExtendedKeyUsagePurpose as Purpose;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Writes `bytes` to `path` with `mode`, replacing what was there.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).with_context(|| format!("create {}", path.display()))?;
    std::io::Write::write_all(&mut f, bytes).with_context(|| format!("write {}", path.display()))
}

fn params(cn: &str, org: Option<&str>, sans: Vec<String>, days: i64) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "Washington");
    dn.push(DnType::LocalityName, "Seattle");
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(days);
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    Ok(p)
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The guide's `kube-api-server` SANs, plus the bed server's own address.
pub fn apiserver_sans(server_ip: IpAddr) -> Vec<String> {
    let mut v: Vec<String> = [
        "127.0.0.1",
        controlplane::model::SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster",
        "kubernetes.svc.cluster.local",
        "server.kubernetes.local",
        "api-server.kubernetes.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(server_ip.to_string());
    v
}

fn leaf(dir: &Path, name: &str, ca: &Ca, p: CertificateParams) -> Result<(String, String)> {
    let key = KeyPair::generate()?;
    let cert = p.signed_by(&key, &ca.issuer)?;
    let (crt, k) = (cert.pem(), key.serialize_pem());
    write_file(&dir.join(format!("{name}.crt")), crt.as_bytes(), 0o644)?;
    write_file(&dir.join(format!("{name}.key")), k.as_bytes(), 0o600)?;
    Ok((crt, k))
}

fn kubeconfig(ca_pem: &str, server: &str, user: &str, crt: &str, key: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: kubernetes-the-hard-way\ncontexts:\n- context:\n    cluster: kubernetes-the-hard-way\n    user: {user}\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {crt}\n    client-key-data: {key}\n",
        ca = B64.encode(ca_pem),
        crt = B64.encode(crt),
        key = B64.encode(key),
    )
}

/// The serving certificate's names for these servers: the guide's, every
/// server's address, and in a cluster every server's hostname.
pub fn cluster_sans(servers: &[(String, IpAddr)]) -> Vec<String> {
    let mut v = apiserver_sans(servers[0].1);
    for (name, ip) in &servers[1..] {
        v.push(ip.to_string());
        v.push(name.clone());
    }
    if servers.len() > 1 {
        v.push(servers[0].0.clone());
    }
    v
}

/// Generates every asset the guide's jumpbox holds into `dir`, for these
/// servers (hostname, address).
pub fn generate(dir: &Path, servers: &[(String, IpAddr)]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut ca_params = params("CA", None, vec![], 3650)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    write_file(&dir.join("ca.crt"), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes(), 0o600)?;
    let ca = Ca { pem: ca_cert.pem(), issuer: Issuer::new(ca_params, ca_key) };

    // The apiserver's serving certificate, also its client cert towards kubelets (CN kubernetes).
    let mut p = params("kubernetes", None, cluster_sans(servers), 365)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf(dir, "kube-api-server", &ca, p)?;

    let mut p = params("service-accounts", None, vec![], 365)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf(dir, "service-accounts", &ca, p)?;

    let clients = [
        ("admin", "admin", Some("system:masters"), "https://127.0.0.1:6443"),
        ("kube-controller-manager", "system:kube-controller-manager", Some("system:kube-controller-manager"), "https://server.kubernetes.local:6443"),
        ("kube-scheduler", "system:kube-scheduler", Some("system:kube-scheduler"), "https://server.kubernetes.local:6443"),
    ];
    for (file, cn, org, server) in clients {
        let mut p = params(cn, org, vec![], 365)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (crt, key) = leaf(dir, file, &ca, p)?;
        write_file(&dir.join(format!("{file}.kubeconfig")), kubeconfig(&ca.pem, server, cn, &crt, &key).as_bytes(), 0o600)?;
    }

    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let enc = format!(
        "kind: EncryptionConfiguration\napiVersion: apiserver.config.k8s.io/v1\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: {}\n      - identity: {{}}\n",
        B64.encode(secret)
    );
    write_file(&dir.join("encryption-config.yaml"), enc.as_bytes(), 0o600)?;
    Ok(())
}

/// Reissues `kube-api-server.crt`/`.key` in `dir` from the CA there, with
/// `sans` instead of the guide's names (tests use it to break the SANs).
pub fn reissue_apiserver(dir: &Path, sans: Vec<String>) -> Result<()> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.crt"))?, ca_key)?;
    let ca = Ca { pem: std::fs::read_to_string(dir.join("ca.crt"))?, issuer };
    let mut p = params("kubernetes", None, sans, 365)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf(dir, "kube-api-server", &ca, p)?;
    Ok(())
}

/// Reissues `kube-api-server.crt`/`.key` in `dir` with the guide's names
/// for `server_ip`, valid from two days ago until yesterday: expired.
pub fn reissue_apiserver_expired(dir: &Path, server_ip: IpAddr) -> Result<()> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.crt"))?, ca_key)?;
    let ca = Ca { pem: std::fs::read_to_string(dir.join("ca.crt"))?, issuer };
    let mut p = params("kubernetes", None, apiserver_sans(server_ip), 365)?;
    p.not_before = OffsetDateTime::now_utc() - Duration::days(2);
    p.not_after = OffsetDateTime::now_utc() - Duration::days(1);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    leaf(dir, "kube-api-server", &ca, p)?;
    Ok(())
}

/// The CA in `dir`, to sign more with.
fn ca_in(dir: &Path) -> Result<Ca> {
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key"))?)?;
    let pem = std::fs::read_to_string(dir.join("ca.crt"))?;
    let issuer = Issuer::from_ca_cert_pem(&pem, ca_key)?;
    Ok(Ca { pem, issuer })
}

/// Reissues `kube-api-server.crt`/`.key` in `dir` with the guide's names for
/// `server_ip`, for `purposes` only, valid until `days` from now.
pub fn reissue_apiserver_for(dir: &Path, server_ip: IpAddr, purposes: Vec<ExtendedKeyUsagePurpose>, days: i64) -> Result<()> {
    let mut p = params("kubernetes", None, apiserver_sans(server_ip), days)?;
    p.extended_key_usages = purposes;
    leaf(dir, "kube-api-server", &ca_in(dir)?, p)?;
    Ok(())
}

/// Rewrites `NAME.kubeconfig` in `dir` (server as the guide's) with a
/// client certificate for user `cn`, signed by the CA there.
pub fn reissue_kubeconfig(dir: &Path, name: &str, cn: &str) -> Result<()> {
    let ca = ca_in(dir)?;
    let mut p = params(cn, None, vec![], 365)?;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let (crt, key) = leaf(dir, name, &ca, p)?;
    write_file(&dir.join(format!("{name}.kubeconfig")), kubeconfig(&ca.pem, "https://server.kubernetes.local:6443", cn, &crt, &key).as_bytes(), 0o600)
}

/// Rewrites the encryption config in `dir` with one aescbc key whose
/// secret is `secret` as written (tests break it: not base64, too short).
pub fn write_encryption_config(dir: &Path, secret: &str) -> Result<()> {
    let enc = format!(
        "kind: EncryptionConfiguration\napiVersion: apiserver.config.k8s.io/v1\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: \"{secret}\"\n      - identity: {{}}\n"
    );
    write_file(&dir.join("encryption-config.yaml"), enc.as_bytes(), 0o600)
}

/// The base64 bodies of every private key the assets in `dir` hold: the
/// `*.key` files, the kubeconfigs' client-key-data, the encryption
/// config's secret. Tests check no part of them reaches any output.
pub fn secret_bodies(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let pem_body = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>() };
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !p.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        if name.ends_with(".key") {
            out.push(pem_body(&text));
        } else if name.ends_with(".kubeconfig") {
            for l in text.lines().filter_map(|l| l.trim().strip_prefix("client-key-data:")) {
                let pem = String::from_utf8(B64.decode(l.trim())?)?;
                out.push(pem_body(&pem));
                out.push(l.trim().to_string());
            }
        } else if name == "encryption-config.yaml" {
            out.extend(text.lines().filter_map(|l| l.trim().strip_prefix("secret:")).map(|s| s.trim().to_string()));
        }
    }
    Ok(out)
}

/// Copies an assets directory (binaries stay symlinks) for a test to damage.
pub fn copy_assets(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_assets(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}
