//! The jumpbox's certificates: what `kubectl bootstrap certs check` lists
//! (each certificate the layout ships or a kubeconfig embeds, its expiry and
//! CA), and what `certs renew` re-issues from the jumpbox's CA: exactly the
//! leaf certificates the layout ships (the CA never), subject, names and
//! usages copied from each current certificate, new keys of the same type
//! and size unless asked to keep them (the service-account key always
//! kept), kubeconfigs rewritten, the old files kept in a backup directory,
//! every file replaced atomically.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Serialize;
use x509_parser::prelude::*;

use crate::model::{FileKind, Source, ADMIN_KUBECONFIG, APISERVER, FILES, UNITS};
use crate::pki::{self, Cert};
use crate::Error;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A certificate the layout ships (or the admin kubeconfig embeds), by
/// the asset that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// `kube-api-server`, `admin`: what `--only` names.
    pub name: String,
    /// The asset: `kube-api-server.crt`, `admin.kubeconfig`.
    pub file: String,
    /// Its key's asset, beside a certificate file (None in a kubeconfig).
    pub key: Option<String>,
    /// The key is never replaced (the service-account key: a new one would
    /// invalidate every ServiceAccount token issued).
    pub keep_key: bool,
    pub kubeconfig: bool,
}

/// The asset a layout file comes from (its last candidate, as documented).
fn asset(dest: &str) -> Option<String> {
    FILES.iter().find(|f| f.dest == dest).and_then(|f| match f.source {
        Source::Asset(c) => c.last().map(|s| s.to_string()),
        Source::Manifest { .. } => None,
    })
}

/// The CA's asset (`--client-ca-file`), never re-issued.
pub fn ca_asset() -> String {
    crate::model::asset_named_by(APISERVER, "client-ca-file")
}

/// Every leaf the layout ships, and the admin kubeconfig.
pub fn leaves() -> Vec<Leaf> {
    let ca = ca_asset();
    let signing_keys: Vec<&str> = UNITS.iter().flat_map(|u| u.flags.iter()).filter(|f| f.name.starts_with("service-account")).filter_map(|f| f.value).collect();
    let mut out = Vec::new();
    for f in FILES {
        let Some(file) = asset(f.dest) else { continue };
        let stem = file.trim_end_matches(".crt").trim_end_matches(".kubeconfig").to_string();
        match f.kind {
            FileKind::Certificate if file != ca => {
                let key_dest = f.dest.trim_end_matches(".crt").to_string() + ".key";
                out.push(Leaf { name: stem, file, key: asset(&key_dest), keep_key: signing_keys.contains(&key_dest.as_str()), kubeconfig: false });
            }
            FileKind::Kubeconfig => out.push(Leaf { name: stem, file, key: None, keep_key: false, kubeconfig: true }),
            _ => {}
        }
    }
    out.push(Leaf { name: ADMIN_KUBECONFIG.trim_end_matches(".kubeconfig").to_string(), file: ADMIN_KUBECONFIG.to_string(), key: None, keep_key: false, kubeconfig: true });
    out
}

/// One row of `certs check`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub name: String,
    pub file: String,
    pub subject: String,
    /// RFC 3339, UTC.
    pub expires: String,
    pub residual_days: i64,
    /// The issuer's common name.
    pub authority: String,
    pub is_ca: bool,
}

/// `kubectl bootstrap certs check -o json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub assets: String,
    pub certificates: Vec<Row>,
    /// With `--ssh`: what each server has on disk and serves.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerCerts>,
}

/// One server's certificates: the files the installed units name (and the
/// layout's), the kubeconfigs' client certificates, and what each
/// component's port serves.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerCerts {
    pub server: String,
    /// Why the server could not be read (then nothing else is listed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub certificates: Vec<Row>,
    pub served: Vec<ServedRow>,
}

/// What one component's secure port presents.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedRow {
    pub component: String,
    pub port: u16,
    /// The leaf it presents (`file`: `port N`), when the handshake succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Row>,
    /// Its `--tls-cert-file`, when the unit names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<String>,
    /// Is the served leaf byte for byte that file's certificate?
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as_file: Option<bool>,
    /// It vouches for itself: the leaf signs itself, or it presents the CA
    /// that does (what a component makes at start without a file).
    pub self_signed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckReport {
    /// 0, or 3 when a server could not be read.
    pub fn exit_code(&self) -> u8 {
        if self.servers.iter().any(|s| s.error.is_some()) {
            3
        } else {
            0
        }
    }
}

/// `check`, and with `destinations`, what each server has and serves: its
/// files read by the probe (certificate blocks only), its ports by a TLS
/// handshake through the SSH connection, as cpcheck reads them.
pub async fn check_servers(assets: &Path, destinations: &[String], ssh: &crate::remote::SshOptions, timeout: std::time::Duration) -> Result<CheckReport, Error> {
    let mut report = check(assets)?;
    let desired = crate::model::overrides::desired_units(&crate::model::overrides::Overrides::default());
    report.servers = futures::future::join_all(destinations.iter().map(|d| server_certs(d, &desired, ssh, timeout))).await;
    Ok(report)
}

/// What one server has on disk and serves (see [`check_servers`]).
async fn server_certs(dest: &str, desired: &[crate::model::overrides::DesiredUnit], ssh: &crate::remote::SshOptions, timeout: std::time::Duration) -> ServerCerts {
    {
        let mut s = ServerCerts { server: dest.to_string(), error: None, certificates: Vec::new(), served: Vec::new() };
        let read = async {
            let host = crate::remote::Host::connect(dest, ssh, timeout).await?;
            let guess = crate::cpcheck::referenced_by(|u| desired.iter().find(|d| d.spec.file_name == u.file_name).map(|d| d.flags.clone()).unwrap_or_default());
            let req = crate::remote::probe::Request { layout: true, certs: guess.certs, kubeconfigs: guess.kubeconfigs, ..Default::default() };
            let p = crate::remote::probe::read(&host, &req).await?;
            let served = crate::cpcheck::served_chains(&host, desired, None, timeout).await;
            Ok::<_, Error>((p, served))
        };
        match read.await {
            Err(e) => s.error = Some(e.to_string()),
            Ok((p, served)) => {
                let stem = |path: &str| path.rsplit('/').next().unwrap_or(path).trim_end_matches(".crt").trim_end_matches(".kubeconfig").to_string();
                for (path, pem) in &p.certs {
                    if let Ok(c) = Cert::from_pem(pem.as_bytes()) {
                        s.certificates.push(row(&stem(path), path, &c));
                    }
                }
                for (path, (_, pem)) in &p.kubeconfigs {
                    if let Some(c) = pem.as_ref().and_then(|pem| Cert::from_pem(pem.as_bytes()).ok()) {
                        s.certificates.push(row(&stem(path), path, &c));
                    }
                }
                s.certificates.sort_by_key(|r| (!r.is_ca, r.residual_days));
                for (c, chain) in served {
                    let unit = desired.iter().find(|u| u.spec.component == c);
                    let port = unit.map(|u| u.serving_port()).unwrap_or(c.serving_port());
                    let installed = p.units.get(c.unit()).and_then(|u| u.text.as_deref()).and_then(|t| crate::model::Flags::from_unit(t, c.unit()).ok());
                    let file = installed.as_ref().and_then(|f| f.get("tls-cert-file").map(str::to_string));
                    let mut r =
                        ServedRow { component: c.name().to_string(), port, certificate: None, tls_cert_file: file.clone(), same_as_file: None, self_signed: false, error: None };
                    match chain.map(|ch| ch.into_iter().map(Cert::from_der).collect::<Result<Vec<Cert>, _>>()) {
                        Err(e) => r.error = Some(e),
                        Ok(Err(_)) => r.error = Some("presented a certificate that does not parse".into()),
                        Ok(Ok(certs)) if certs.is_empty() => r.error = Some("presented no certificate".into()),
                        Ok(Ok(certs)) => {
                            let leaf = &certs[0];
                            r.self_signed = Cert::self_contained(&certs);
                            r.same_as_file = file.as_ref().map(|f| p.certs.get(f).and_then(|t| Cert::from_pem(t.as_bytes()).ok()).is_some_and(|d| d.der == leaf.der));
                            r.certificate = Some(row(c.name(), &format!("port {port}"), leaf));
                        }
                    }
                    s.served.push(r);
                }
            }
        }
        s
    }
}

fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

fn row(name: &str, file: &str, c: &Cert) -> Row {
    let (_, to) = c.validity();
    let x = c.x509();
    let issuer = x.issuer().iter_common_name().next().and_then(|n| n.as_str().ok()).unwrap_or("").to_string();
    Row {
        name: name.to_string(),
        file: file.to_string(),
        subject: crate::output::redact::line(&c.common_name().unwrap_or_default()),
        expires: pki::date(to),
        residual_days: (to - now()).div_euclid(86400),
        authority: crate::output::redact::line(&issuer),
        is_ca: c.is_ca(),
    }
}

/// A file of the assets directory, read if regular. It may hold a secret:
/// errors name it, never its content.
fn read(assets: &Path, file: &str) -> Result<Vec<u8>, Error> {
    crate::local::files::read_regular(&assets.join(file), LIMIT).map_err(|e| Error::Input(format!("{} {e}", assets.join(file).display())))
}

/// No certificate, key or kubeconfig is larger.
const LIMIT: u64 = 1 << 20;

/// The certificate a leaf's asset holds (embedded, for a kubeconfig).
fn current(assets: &Path, l: &Leaf) -> Result<Cert, Error> {
    let bytes = read(assets, &l.file)?;
    let bad = |e: crate::error::Unusable| Error::Input(format!("{}: {e}", assets.join(&l.file).display()));
    if l.kubeconfig {
        pki::kubeconfig(&bytes).map_err(bad)?.client_cert.ok_or_else(|| Error::Input(format!("{}: no embedded client certificate", assets.join(&l.file).display())))
    } else {
        Cert::from_pem(&bytes).map_err(bad)
    }
}

/// The CA and every leaf in `assets`, soonest expiry first among the leaves.
pub fn check(assets: &Path) -> Result<CheckReport, Error> {
    let ca = Cert::from_pem(&read(assets, &ca_asset())?).map_err(|e| Error::Input(format!("{}: {e}", assets.join(ca_asset()).display())))?;
    let mut rows = Vec::new();
    for l in leaves() {
        rows.push(row(&l.name, &l.file, &current(assets, &l)?));
    }
    rows.sort_by_key(|r| r.residual_days);
    rows.insert(0, row(ca_asset().trim_end_matches(".crt"), &ca_asset(), &ca));
    Ok(CheckReport { api_version: super::report::API_VERSION, kind: "CertificateCheck", assets: assets.display().to_string(), certificates: rows, servers: Vec::new() })
}

/// One certificate as `certs check` lists it: name, expiry, residual time,
/// authority, file.
fn write_row(f: &mut std::fmt::Formatter<'_>, r: &Row) -> std::fmt::Result {
    writeln!(f, "{:<26} {:<22} {:<14} {:<26} {}", r.name, r.expires, residual(r.residual_days), if r.is_ca { "(CA)" } else { r.authority.as_str() }, r.file)
}

/// Days left as the tables show them.
fn residual(days: i64) -> String {
    if days < 0 {
        "expired".to_string()
    } else {
        format!("{days}d")
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<26} {:<22} {:<14} {:<26} FILE", "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY")?;
        for r in &self.certificates {
            write_row(f, r)?;
        }
        for s in &self.servers {
            writeln!(f, "\nSERVER {}", crate::output::redact::line(&s.server))?;
            if let Some(e) = &s.error {
                writeln!(f, "  error: {}", crate::output::redact::line(e))?;
                continue;
            }
            writeln!(f, "{:<26} {:<22} {:<14} {:<26} FILE", "CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY")?;
            for r in &s.certificates {
                write_row(f, r)?;
            }
            writeln!(f, "{:<26} {:<22} {:<14} {:<26} SERVED", "PORT", "EXPIRES", "RESIDUAL TIME", "CERTIFICATE AUTHORITY")?;
            for r in &s.served {
                let port = format!("{} {}", r.port, r.component);
                match (&r.certificate, &r.error) {
                    (Some(c), _) => {
                        let authority = if r.self_signed { "(self-signed)".to_string() } else { c.authority.clone() };
                        let what = match (&r.tls_cert_file, r.same_as_file) {
                            (Some(file), Some(true)) => format!("= {}", crate::output::redact::line(file)),
                            (Some(file), _) => format!("NOT {} (a reload or restart is pending: kubectl cpcheck --only certs)", crate::output::redact::line(file)),
                            (None, _) => "made at start (no --tls-cert-file)".to_string(),
                        };
                        writeln!(f, "{:<26} {:<22} {:<14} {:<26} {what}", port, c.expires, residual(c.residual_days), authority)?;
                    }
                    (None, e) => writeln!(f, "{:<26} error: {}", port, crate::output::redact::line(e.as_deref().unwrap_or("")))?,
                }
            }
        }
        Ok(())
    }
}

/// What `certs renew` was asked.
#[derive(Debug, Clone, Default)]
pub struct RenewOptions {
    pub assets: PathBuf,
    /// Lifetime of the new certificates; default: each current one's own.
    pub days: Option<u32>,
    /// Leaves by name (`kube-api-server`); empty: all.
    pub only: Vec<String>,
    pub reuse_keys: bool,
    pub dry_run: bool,
}

/// One leaf re-issued (or, dry run, that would be).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Renewed {
    pub name: String,
    pub file: String,
    pub old_expires: String,
    pub new_expires: String,
    pub new_key: bool,
}

/// `kubectl bootstrap certs renew -o json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RenewReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub dry_run: bool,
    /// Where the old files were kept (none on a dry run).
    pub backup: Option<String>,
    pub renewed: Vec<Renewed>,
}

impl std::fmt::Display for RenewReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would renew" } else { "renewed" };
        for r in &self.renewed {
            writeln!(f, "{verb} {} ({}): expires {} → {}{}", r.name, r.file, r.old_expires, r.new_expires, if r.new_key { ", new key" } else { ", same key" })?;
        }
        match &self.backup {
            Some(b) => write!(f, "the old files are in {b}; run kubectl bootstrap server to roll them out"),
            None => write!(f, "dry run: nothing was written"),
        }
    }
}

/// The new certificate's parameters: the current one's subject, names and
/// usages; valid from five minutes ago for `days` (or the current
/// lifetime); a fresh random serial.
fn params_like(c: &Cert, days: Option<u32>) -> Result<rcgen::CertificateParams, Error> {
    use rcgen::{DnType, ExtendedKeyUsagePurpose as E, KeyUsagePurpose as K};
    let x = c.x509();
    let (dns, ips) = c.sans();
    let mut p = rcgen::CertificateParams::new(dns.into_iter().chain(ips.iter().map(|i| i.to_string())).collect::<Vec<_>>())
        .map_err(|e| Error::Input(format!("a subjectAltName of {}: {e}", c.common_name().unwrap_or_default())))?;
    let subject = x.subject();
    let mut dn = rcgen::DistinguishedName::new();
    let text = |a: &AttributeTypeAndValue<'_>| a.as_str().ok().map(str::to_string);
    for (ty, values) in [
        (DnType::CountryName, subject.iter_country().filter_map(text).collect::<Vec<_>>()),
        (DnType::StateOrProvinceName, subject.iter_state_or_province().filter_map(text).collect()),
        (DnType::LocalityName, subject.iter_locality().filter_map(text).collect()),
        (DnType::OrganizationName, subject.iter_organization().filter_map(text).collect()),
        (DnType::OrganizationalUnitName, subject.iter_organizational_unit().filter_map(text).collect()),
        (DnType::CommonName, subject.iter_common_name().filter_map(text).collect()),
    ] {
        for v in values {
            dn.push(ty.clone(), v);
        }
    }
    p.distinguished_name = dn;
    if let Ok(Some(ku)) = x.key_usage() {
        let k = ku.value;
        let map = [
            (k.digital_signature(), K::DigitalSignature),
            (k.non_repudiation(), K::ContentCommitment),
            (k.key_encipherment(), K::KeyEncipherment),
            (k.data_encipherment(), K::DataEncipherment),
            (k.key_agreement(), K::KeyAgreement),
            (k.key_cert_sign(), K::KeyCertSign),
            (k.crl_sign(), K::CrlSign),
        ];
        p.key_usages = map.into_iter().filter(|(on, _)| *on).map(|(_, u)| u).collect();
    }
    if let Ok(Some(eku)) = x.extended_key_usage() {
        let e = eku.value;
        p.extended_key_usages = [(e.any, E::Any), (e.server_auth, E::ServerAuth), (e.client_auth, E::ClientAuth)].into_iter().filter(|(on, _)| *on).map(|(_, u)| u).collect();
    }
    p.is_ca = if matches!(x.basic_constraints(), Ok(Some(_))) { rcgen::IsCa::ExplicitNoCa } else { rcgen::IsCa::NoCa };
    let (from, to) = c.validity();
    let lifetime = days.map(|d| i64::from(d) * 86400).unwrap_or(to - from).max(3600);
    let start = ::time::OffsetDateTime::now_utc() - ::time::Duration::minutes(5);
    p.not_before = start;
    p.not_after = start + ::time::Duration::seconds(lifetime);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    Ok(p)
}

/// A new key like `c`'s: RSA of the same size, else the same curve.
fn new_key_like(c: &Cert) -> Result<rcgen::KeyPair, Error> {
    use rsa::pkcs8::EncodePrivateKey;
    let x = c.x509();
    let failed = |e: String| Error::Input(format!("cannot make a key like {}'s: {e}", c.common_name().unwrap_or_default()));
    match x.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(k)) => {
            let bits = k.key_size();
            let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, bits).map_err(|e| failed(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
            rcgen::KeyPair::try_from(der.as_bytes()).map_err(|e| failed(e.to_string()))
        }
        Ok(x509_parser::public_key::PublicKey::EC(p)) => {
            let alg = if p.key_size() > 256 { &rcgen::PKCS_ECDSA_P384_SHA384 } else { &rcgen::PKCS_ECDSA_P256_SHA256 };
            rcgen::KeyPair::generate_for(alg).map_err(|e| failed(e.to_string()))
        }
        _ if x.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| failed(e.to_string())),
        _ => Err(failed("its key type is not RSA, ECDSA P-256/P-384 or Ed25519".into())),
    }
}

/// A PEM private key as rcgen signs with (PKCS#8; PKCS#1 RSA converted).
fn key_pair(assets: &Path, file: &str) -> Result<rcgen::KeyPair, Error> {
    let bytes = read(assets, file)?;
    let bad = || Error::Input(format!("{}: not a usable PEM private key (PKCS#8, or PKCS#1 RSA)", assets.join(file).display()));
    let der = pki::private_key_pkcs8(&bytes).map_err(|_| bad())?;
    rcgen::KeyPair::try_from(der.as_slice()).map_err(|_| bad())
}

/// Writes `bytes` to `path` atomically: a fresh temp beside it (created
/// exclusively, `mode` from the start), fsynced, renamed over it.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.renew-{:016x}", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::local(format!("cannot write {}", path.display()), e)
    })
}

/// Copies the files `leaves` will replace into a new
/// `ASSETS/.backup/<UTC time>/` (0700; each file keeps its mode).
fn backup(assets: &Path, files: &[String]) -> Result<PathBuf, Error> {
    let stamp = ::time::OffsetDateTime::now_utc().format(::time::macros::format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap_or_default();
    let root = assets.join(".backup");
    let dir = root.join(&stamp);
    let made = (|| {
        std::fs::DirBuilder::new().mode(0o700).recursive(true).create(&root)?;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        for f in files {
            let from = assets.join(f);
            let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&from)?.permissions()) & 0o777;
            let bytes = crate::local::files::read_regular(&from, LIMIT).map_err(|e| std::io::Error::other(format!("{} {e}", from.display())))?;
            let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(dir.join(f))?;
            out.write_all(&bytes)?;
            out.sync_all()?;
        }
        Ok::<_, std::io::Error>(())
    })();
    made.map_err(|e| Error::local(format!("cannot keep the old files in {}", dir.display()), e))?;
    Ok(dir)
}

/// A kubeconfig with its current context's user's client certificate and
/// key replaced (base64 PEM, as `kubectl config set-credentials
/// --embed-certs` writes them).
fn rewrite_kubeconfig(text: &[u8], cert_pem: &str, key_pem: &str) -> Result<Vec<u8>, crate::error::Unusable> {
    let mut v: serde_yaml::Value = serde_yaml::from_slice(text).map_err(|e| format!("not a kubeconfig: {}", crate::output::redact::yaml_error(&e)))?;
    let current = v.get("current-context").and_then(|c| c.as_str()).ok_or("no current-context")?.to_string();
    let user = v
        .get("contexts")
        .and_then(|c| c.as_sequence())
        .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(|n| n.as_str()) == Some(current.as_str())))
        .and_then(|c| c.get("context")?.get("user")?.as_str().map(str::to_string))
        .ok_or("its current context names no user")?;
    let users = v.get_mut("users").and_then(|u| u.as_sequence_mut()).ok_or("no users")?;
    let entry = users.iter_mut().find(|u| u.get("name").and_then(|n| n.as_str()) == Some(user.as_str())).ok_or("the current context's user is not among its users")?;
    let creds = entry.get_mut("user").and_then(|u| u.as_mapping_mut()).ok_or("the current context's user has no credentials")?;
    creds.insert("client-certificate-data".into(), B64.encode(cert_pem).into());
    creds.insert("client-key-data".into(), B64.encode(key_pem).into());
    serde_yaml::to_string(&v).map(String::into_bytes).map_err(|_| "cannot write it back".to_string().into())
}

/// What one leaf becomes: its files' new bytes (file, bytes, mode).
type NewFiles = Vec<(String, Vec<u8>, u32)>;

fn renew_one(assets: &Path, l: &Leaf, o: &RenewOptions, issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> Result<(Renewed, NewFiles), Error> {
    let old = current(assets, l)?;
    let params = params_like(&old, o.days)?;
    let keep = l.keep_key || o.reuse_keys;
    let key = match (&l.key, l.kubeconfig, keep) {
        (Some(k), _, true) => key_pair(assets, k)?,
        (None, true, true) => {
            let k = pki::kubeconfig(&read(assets, &l.file)?).map_err(|e| Error::Input(format!("{}: {e}", assets.join(&l.file).display())))?;
            let pem = k.client_key.ok_or_else(|| Error::Input(format!("{}: no embedded client key", assets.join(&l.file).display())))?;
            let der = pki::private_key_pkcs8(&pem).map_err(|e| Error::Input(format!("{}: its client key: {e}", assets.join(&l.file).display())))?;
            rcgen::KeyPair::try_from(der.as_slice()).map_err(|_| Error::Input(format!("{}: its client key is not usable", assets.join(&l.file).display())))?
        }
        _ => new_key_like(&old)?,
    };
    let cert = params.signed_by(&key, issuer).map_err(|e| Error::Input(format!("cannot sign {}: {e}", l.name)))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let new = Cert::from_pem(cert_pem.as_bytes()).map_err(|e| Error::Input(format!("the new {}: {e}", l.name)))?;
    let mut files: NewFiles = Vec::new();
    if l.kubeconfig {
        let text = read(assets, &l.file)?;
        files.push((l.file.clone(), rewrite_kubeconfig(&text, &cert_pem, &key_pem).map_err(|e| Error::Input(format!("{}: {e}", assets.join(&l.file).display())))?, 0o600));
        // The guide also keeps NAME.crt and NAME.key beside it: kept in step.
        for (side, bytes, mode) in [(format!("{}.crt", l.name), cert_pem.as_bytes(), 0o644), (format!("{}.key", l.name), key_pem.as_bytes(), 0o600)] {
            if assets.join(&side).is_file() {
                files.push((side, bytes.to_vec(), mode));
            }
        }
    } else {
        files.push((l.file.clone(), cert_pem.into_bytes(), 0o644));
        if let (Some(k), false) = (&l.key, keep) {
            files.push((k.clone(), key_pem.into_bytes(), 0o600));
        }
    }
    let renewed = Renewed { name: l.name.clone(), file: l.file.clone(), old_expires: pki::date(old.validity().1), new_expires: pki::date(new.validity().1), new_key: !keep };
    Ok((renewed, files))
}

/// Re-issues the leaves `o` names from the CA in the assets directory.
/// Nothing is written unless every leaf could be re-issued; then the old
/// files go to the backup and each new one replaces its file atomically.
pub fn renew(o: &RenewOptions) -> Result<RenewReport, Error> {
    let all = leaves();
    for n in &o.only {
        if !all.iter().any(|l| &l.name == n) {
            let known: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
            return Err(Error::Input(format!("--only {}: no such certificate (renewable: {})", crate::output::redact::line(n), known.join(", "))));
        }
    }
    let chosen: Vec<&Leaf> = all.iter().filter(|l| o.only.is_empty() || o.only.contains(&l.name)).collect();
    let ca_file = ca_asset();
    let ca_key_file = ca_file.trim_end_matches(".crt").to_string() + ".key";
    let ca_pem = String::from_utf8(read(&o.assets, &ca_file)?).map_err(|_| Error::Input(format!("{}: not PEM text", o.assets.join(&ca_file).display())))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, key_pair(&o.assets, &ca_key_file)?).map_err(|e| Error::Input(format!("{}: {e}", o.assets.join(&ca_file).display())))?;
    let mut renewed = Vec::new();
    let mut writes: NewFiles = Vec::new();
    for l in chosen {
        let (r, files) = renew_one(&o.assets, l, o, &issuer)?;
        renewed.push(r);
        writes.extend(files);
    }
    if o.dry_run {
        return Ok(RenewReport { api_version: super::report::API_VERSION, kind: "CertificateRenewal", dry_run: true, backup: None, renewed });
    }
    let old: Vec<String> = writes.iter().map(|(f, _, _)| f.clone()).collect();
    let kept = backup(&o.assets, &old)?;
    for (file, bytes, mode) in &writes {
        replace(&o.assets.join(file), bytes, *mode)?;
    }
    Ok(RenewReport { api_version: super::report::API_VERSION, kind: "CertificateRenewal", dry_run: false, backup: Some(kept.display().to_string()), renewed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leaves_are_the_layouts_and_the_admin_kubeconfig_never_the_ca() {
        let names: Vec<String> = leaves().iter().map(|l| l.name.clone()).collect();
        for n in ["kube-api-server", "service-accounts", "kube-controller-manager", "kube-scheduler", "admin"] {
            assert!(names.contains(&n.to_string()), "{names:?}");
        }
        assert!(!leaves().iter().any(|l| l.file == ca_asset()));
        let sa = leaves().into_iter().find(|l| l.name == "service-accounts").unwrap();
        assert!(sa.keep_key && sa.key.is_some());
        assert!(!leaves().into_iter().find(|l| l.name == "kube-api-server").unwrap().keep_key);
    }
}
