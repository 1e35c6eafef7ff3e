//! Pure inspection of local assets: certificates, private keys, kubeconfigs,
//! ELF binaries. No I/O here beyond what the caller passes in, so every rule is
//! unit-tested on generated fixtures.

use std::net::IpAddr;

use base64::Engine;
use x509_parser::prelude::*;

/// A parsed certificate, owning its DER.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Vec<u8>,
}

impl Cert {
    /// Errors never quote the input: a key passed where a certificate
    /// belongs must not be printed.
    pub fn from_pem(text: &[u8]) -> Result<Cert, crate::error::Unusable> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(text).map_err(|_| "not a PEM certificate".to_string())?;
        if pem.label != "CERTIFICATE" {
            return Err(format!("its PEM block is {}, expected CERTIFICATE", pem_label(&pem.label)).into());
        }
        X509Certificate::from_der(&pem.contents).map_err(|_| "its PEM block is not an X.509 certificate".to_string())?;
        Ok(Cert { der: pem.contents })
    }

    pub fn x509(&self) -> X509Certificate<'_> {
        X509Certificate::from_der(&self.der).expect("checked in from_pem").1
    }

    pub fn common_name(&self) -> Option<String> {
        self.x509().subject().iter_common_name().next().and_then(|c| c.as_str().ok()).map(str::to_string)
    }

    /// DNS names and IP addresses of the subjectAltName extension.
    pub fn sans(&self) -> (Vec<String>, Vec<IpAddr>) {
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        if let Ok(Some(ext)) = self.x509().subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => ips.push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                        16 => ips.push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        (dns, ips)
    }

    /// Does the certificate name `host` (an IP or a DNS name, wildcards honoured)?
    pub fn covers(&self, host: &str) -> bool {
        let (dns, ips) = self.sans();
        match host.parse::<IpAddr>() {
            Ok(ip) => ips.contains(&ip),
            Err(_) => dns.iter().any(|d| {
                d.eq_ignore_ascii_case(host) || d.strip_prefix("*.").is_some_and(|suffix| host.split_once('.').is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(suffix)))
            }),
        }
    }

    /// Was this certificate signed by `issuer`'s key?
    pub fn signed_by(&self, issuer: &Cert) -> bool {
        let ca = issuer.x509();
        self.x509().verify_signature(Some(ca.public_key())).is_ok()
    }

    /// Seconds until notAfter (negative when expired).
    pub fn seconds_left(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.x509().validity().not_after.timestamp() - now
    }

    fn public_key_raw(&self) -> Vec<u8> {
        self.x509().public_key().subject_public_key.data.to_vec()
    }
}

/// A PEM label as read from a file, safe to print (`PRIVATE KEY`).
fn pem_label(label: &str) -> String {
    let l: String = label.chars().take(40).collect();
    format!("`{}`", crate::output::redact::line(&l))
}

/// Where base64 decoding failed, without the offending byte.
fn base64_error(e: base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => format!("not valid base64 at offset {at}"),
        base64::DecodeError::InvalidLength(_) => "not valid base64 (wrong length)".into(),
        base64::DecodeError::InvalidPadding => "not valid base64 (bad padding)".into(),
    }
}

/// Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    fn der_len(n: usize) -> Vec<u8> {
        if n < 0x80 {
            vec![n as u8]
        } else {
            let b = n.to_be_bytes();
            let b: Vec<u8> = b.iter().copied().skip_while(|x| *x == 0).collect();
            let mut v = vec![0x80 | b.len() as u8];
            v.extend(b);
            v
        }
    }
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend(der_len(body.len()));
        v.extend_from_slice(body);
        v
    }
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let alg = [0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(&alg);
    body.extend(tlv(0x04, pkcs1));
    tlv(0x30, &body)
}

/// The raw public key of a PEM private key (PKCS#8, or PKCS#1 RSA).
pub fn private_key_public_raw(text: &[u8]) -> Result<Vec<u8>, crate::error::Unusable> {
    let s = std::str::from_utf8(text).map_err(|_| "not a PEM private key (not text)".to_string())?;
    let begin = s.lines().find(|l| l.starts_with("-----BEGIN ")).ok_or("not a PEM private key")?;
    let label = begin.trim_start_matches("-----BEGIN ").trim_end_matches("-----");
    let body: String = s.lines().skip_while(|l| !l.starts_with("-----BEGIN ")).skip(1).take_while(|l| !l.starts_with("-----END ")).collect();
    if label == "ENCRYPTED PRIVATE KEY" || s.contains("Proc-Type: 4,ENCRYPTED") {
        return Err("the key is encrypted: the control plane needs it unencrypted (openssl pkey -in KEY -out KEY.plain)".into());
    }
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| format!("its PEM body is {}", base64_error(e)))?;
    let pkcs8 = match label {
        "PRIVATE KEY" => der,
        "RSA PRIVATE KEY" => pkcs1_to_pkcs8(&der),
        other => return Err(format!("unsupported key format {}: convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`", pem_label(other)).into()),
    };
    let kp = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(|_| "not a usable private key (PKCS#8: RSA, ECDSA P-256/P-384 or Ed25519)".to_string())?;
    Ok(kp.public_key_raw().to_vec())
}

/// Does `key` (PEM) hold the private half of `cert`'s public key?
pub fn key_matches(cert: &Cert, key: &[u8]) -> Result<bool, crate::error::Unusable> {
    Ok(private_key_public_raw(key)? == cert.public_key_raw())
}

/// What a kubeconfig's current context says, with its embedded credentials.
pub struct KubeconfigInfo {
    pub server: String,
    pub ca: Option<Cert>,
    pub client_cert: Option<Cert>,
    pub client_key: Option<Vec<u8>>,
}

/// Never prints the client key.
impl std::fmt::Debug for KubeconfigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeconfigInfo")
            .field("server", &self.server)
            .field("ca", &self.ca.is_some())
            .field("client_cert", &self.client_cert.as_ref().and_then(|c| c.common_name()))
            .field("client_key", &self.client_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl KubeconfigInfo {
    /// The host part of `server` (`server.kubernetes.local`, `127.0.0.1`).
    pub fn host(&self) -> Option<String> {
        host_of(&self.server)
    }
}

/// The host part of a server URL such as `https://server.kubernetes.local:6443`.
pub fn host_of(server: &str) -> Option<String> {
    let rest = server.split_once("://").map(|x| x.1).unwrap_or(server);
    let hostport = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(h) = hostport.strip_prefix('[') { h.split(']').next().unwrap_or(h) } else { hostport.rsplit_once(':').map(|x| x.0).unwrap_or(hostport) };
    (!host.is_empty()).then(|| host.to_string())
}

/// Parses a kubeconfig's text. The file holds credentials (or is a key
/// picked by mistake): errors give positions, never content.
pub fn parse_kubeconfig(text: &[u8]) -> Result<kube::config::Kubeconfig, crate::error::Unusable> {
    let s = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 text (byte {})", e.valid_up_to()))?;
    serde_yaml::from_str(s).map_err(|e| format!("not a kubeconfig: {}", crate::output::redact::yaml_error(&e)).into())
}

/// A name from a kubeconfig (context, cluster), safe to print.
fn name(s: &str) -> String {
    crate::output::redact::line(&s.chars().take(80).collect::<String>())
}

pub fn kubeconfig(text: &[u8]) -> Result<KubeconfigInfo, crate::error::Unusable> {
    kubeconfig_context(&parse_kubeconfig(text)?, None)
}

/// The credentials of `context` (default: current-context) of a parsed kubeconfig.
pub fn kubeconfig_context(kc: &kube::config::Kubeconfig, context: Option<&str>) -> Result<KubeconfigInfo, crate::error::Unusable> {
    let ctx_name = match context {
        Some(c) => c.to_string(),
        None => kc.current_context.clone().ok_or("no current-context")?,
    };
    let ctx = kc.contexts.iter().find(|c| c.name == ctx_name).and_then(|c| c.context.clone()).ok_or_else(|| format!("context `{}` is not defined", name(&ctx_name)))?;
    let cluster = kc.clusters.iter().find(|c| c.name == ctx.cluster).and_then(|c| c.cluster.clone()).ok_or_else(|| format!("cluster `{}` is not defined", name(&ctx.cluster)))?;
    let server = cluster.server.clone().ok_or("the cluster has no server")?;
    let b64 = |d: &str, what: &str| base64::engine::general_purpose::STANDARD.decode(d.trim()).map_err(|e| format!("{what} is {}", base64_error(e)));
    let ca = match &cluster.certificate_authority_data {
        Some(d) => Some(Cert::from_pem(&b64(d, "certificate-authority-data")?).map_err(|e| format!("certificate-authority-data: {e}"))?),
        None => None,
    };
    let ca = match (ca, &cluster.certificate_authority) {
        (None, Some(path)) => Some(read_pem_cert(path, "certificate-authority")?),
        (ca, _) => ca,
    };
    let user = ctx.user.as_ref().and_then(|u| kc.auth_infos.iter().find(|a| &a.name == u)).and_then(|a| a.auth_info.clone());
    let (mut client_cert, mut client_key) = (None, None);
    if let Some(u) = user {
        if let Some(d) = &u.client_certificate_data {
            client_cert = Some(Cert::from_pem(&b64(d, "client-certificate-data")?).map_err(|e| format!("client-certificate-data: {e}"))?);
        }
        if let Some(d) = &u.client_key_data {
            use secrecy::ExposeSecret;
            client_key = Some(b64(d.expose_secret(), "client-key-data")?);
        }
        if client_cert.is_none() {
            if let Some(p) = &u.client_certificate {
                client_cert = Some(read_pem_cert(p, "client-certificate")?);
            }
        }
        if client_key.is_none() {
            if let Some(p) = &u.client_key {
                client_key =
                    Some(crate::local::files::read_regular(std::path::Path::new(p), crate::local::files::SMALL_FILE_LIMIT).map_err(|e| format!("client-key {}: {e}", name(p)))?);
            }
        }
    }
    Ok(KubeconfigInfo { server, ca, client_cert, client_key })
}

fn read_pem_cert(path: &str, what: &str) -> Result<Cert, String> {
    let b = crate::local::files::read_regular(std::path::Path::new(path), crate::local::files::SMALL_FILE_LIMIT).map_err(|e| format!("{what} {}: {e}", name(path)))?;
    Cert::from_pem(&b).map_err(|e| format!("{what} {}: {e}", name(path)))
}

/// Checks that `head` (the first bytes of a file) is an ELF executable for
/// the server's `uname -m`.
pub fn check_elf(head: &[u8], uname_m: &str) -> Result<(), crate::error::Unusable> {
    use crate::model::arch::{Arch, Elf};
    let Some(server) = Arch::from_uname(uname_m) else {
        return Err(format!("the server's architecture `{}` is not one this tool knows", crate::output::redact::line(uname_m)).into());
    };
    match Elf::of(head) {
        Elf::Executable(a) if a == server => Ok(()),
        Elf::Executable(a) => Err(format!("is built for {a}, the server is {server}").into()),
        Elf::OtherMachine(m) => Err(format!("is built for ELF machine {m}, the server is {server}").into()),
        Elf::NotExecutable => Err("is an ELF file but not an executable".into()),
        Elf::NotElf => Err("is not an ELF executable".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    fn ca() -> (String, Issuer<'static, KeyPair>) {
        let mut p = CertificateParams::new(vec![]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let k = KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        (c.pem(), Issuer::new(p, k))
    }

    #[test]
    fn sans_keys_and_chains() {
        let (ca_pem, issuer) = ca();
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["127.0.0.1".into(), "server.kubernetes.local".into(), "*.svc.local".into()]).unwrap();
        let leaf = Cert::from_pem(p.signed_by(&key, &issuer).unwrap().pem().as_bytes()).unwrap();
        assert!(leaf.covers("127.0.0.1") && leaf.covers("server.kubernetes.local") && leaf.covers("a.svc.local"));
        assert!(!leaf.covers("10.32.0.1") && !leaf.covers("a.b.svc.local"));
        let ca = Cert::from_pem(ca_pem.as_bytes()).unwrap();
        assert!(leaf.signed_by(&ca));
        let (other_ca, _) = self::ca();
        assert!(!leaf.signed_by(&Cert::from_pem(other_ca.as_bytes()).unwrap()));
        assert!(key_matches(&leaf, key.serialize_pem().as_bytes()).unwrap());
        assert!(!key_matches(&leaf, KeyPair::generate().unwrap().serialize_pem().as_bytes()).unwrap());
        assert!(leaf.seconds_left() > 0);
    }

    #[test]
    fn bad_pem_is_refused_with_a_reason() {
        assert!(Cert::from_pem(b"hello").unwrap_err().to_string().contains("not a PEM certificate"));
        assert!(private_key_public_raw(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n").unwrap_err().to_string().contains("openssl pkcs8"));
        assert!(private_key_public_raw(b"junk").unwrap_err().to_string().contains("not a PEM private key"));
    }

    #[test]
    fn elf_checks_magic_type_and_machine() {
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 62, 0];
        assert!(check_elf(&h, "x86_64").is_ok());
        assert_eq!(check_elf(&h, "aarch64").unwrap_err().to_string(), "is built for linux/amd64, the server is linux/arm64");
        h[18] = 183;
        assert!(check_elf(&h, "aarch64").is_ok());
        h[16] = 1;
        assert!(check_elf(&h, "aarch64").unwrap_err().to_string().contains("not an executable"));
        assert!(check_elf(b"#!/bin/sh\n", "x86_64").unwrap_err().to_string().contains("not an ELF"));
    }

    #[test]
    fn kubeconfig_host_and_embedded_credentials() {
        let (ca_pem, _) = ca();
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let text = format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://server.kubernetes.local:6443\n    certificate-authority-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\nusers:\n- name: u\n  user: {{}}\n", b(&ca_pem));
        let k = kubeconfig(text.as_bytes()).unwrap();
        assert_eq!(k.host().as_deref(), Some("server.kubernetes.local"));
        assert!(k.ca.is_some() && k.client_cert.is_none());
        assert!(kubeconfig(b"current-context: [").unwrap_err().to_string().contains("not a kubeconfig"));
        assert!(kubeconfig(text.replace("current-context: x", "current-context: y").as_bytes()).unwrap_err().to_string().contains("`y` is not defined"));
        // A private key given as a kubeconfig: the position, not the key.
        let key = KeyPair::generate().unwrap().serialize_pem();
        let e = kubeconfig(key.as_bytes()).unwrap_err().0;
        assert!(e.starts_with("not a kubeconfig: line 1, column 1:"), "{e}");
        let body = key.lines().nth(1).unwrap();
        assert!(!e.contains(&body[..16]) && !e.contains("BEGIN"), "{e}");
        // A key where a certificate belongs, and a bad base64 body.
        let e = Cert::from_pem(key.as_bytes()).unwrap_err().0;
        assert!(!e.contains(&body[..16]), "{e}");
        let e = private_key_public_raw(b"-----BEGIN PRIVATE KEY-----\nMIIB!!!!\n-----END PRIVATE KEY-----\n").unwrap_err().0;
        assert_eq!(e, "its PEM body is not valid base64 at offset 4");
    }
}
