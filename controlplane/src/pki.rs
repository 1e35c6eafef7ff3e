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

    /// A DER certificate (as a TLS server presents it).
    pub fn from_der(der: Vec<u8>) -> Result<Cert, crate::error::Unusable> {
        X509Certificate::from_der(&der).map_err(|_| "not an X.509 certificate".to_string())?;
        Ok(Cert { der })
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

    /// Does a presented chain (leaf first, DER) vouch for itself: the leaf
    /// signs itself, or the last certificate of the chain is a root that
    /// signs itself and each certificate is signed by the next? What a
    /// component without a --tls-cert-file serves (client-go makes a
    /// `localhost-ca@TIME` and a leaf it signs, at start).
    pub fn self_contained(chain: &[Cert]) -> bool {
        match chain {
            [] => false,
            [leaf] => leaf.signed_by(leaf),
            _ => chain.windows(2).all(|w| w[0].signed_by(&w[1])) && chain.last().is_some_and(|r| r.signed_by(r)),
        }
    }

    /// Seconds until notAfter (negative when expired).
    pub fn seconds_left(&self) -> i64 {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.x509().validity().not_after.timestamp() - now
    }

    /// notBefore and notAfter, seconds since the epoch.
    pub fn validity(&self) -> (i64, i64) {
        let v = self.x509().validity().clone();
        (v.not_before.timestamp(), v.not_after.timestamp())
    }

    /// May the certificate serve `purpose`? Without an extendedKeyUsage
    /// extension any purpose is allowed, as Go reads it; `anyExtendedKeyUsage`
    /// allows any too.
    pub fn allows(&self, purpose: Purpose) -> bool {
        match self.x509().extended_key_usage() {
            Ok(Some(e)) => {
                e.value.any
                    || match purpose {
                        Purpose::Server => e.value.server_auth,
                        Purpose::Client => e.value.client_auth,
                    }
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Does basicConstraints say CA:TRUE?
    pub fn is_ca(&self) -> bool {
        matches!(self.x509().basic_constraints(), Ok(Some(b)) if b.value.ca)
    }

    /// The subject's organizations (the groups a client certificate puts
    /// its user in).
    pub fn organizations(&self) -> Vec<String> {
        self.x509().subject().iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect()
    }

    /// The serial number, hex, for messages.
    pub fn serial(&self) -> String {
        self.x509().raw_serial_as_string()
    }

    fn public_key_raw(&self) -> Vec<u8> {
        self.x509().public_key().subject_public_key.data.to_vec()
    }
}

/// A time as certificates' messages give it: RFC 3339, UTC (seconds since
/// the epoch when out of range).
pub fn date(t: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp(t).ok().and_then(|d| d.format(&::time::format_description::well_known::Rfc3339).ok()).unwrap_or_else(|| t.to_string())
}

/// What a certificate is used for (its extendedKeyUsage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// serverAuth: a TLS server's certificate.
    Server,
    /// clientAuth: a client certificate.
    Client,
}

impl Purpose {
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Server => "serverAuth",
            Purpose::Client => "clientAuth",
        }
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
    let pkcs8 = private_key_pkcs8(text)?;
    let kp = rcgen::KeyPair::try_from(pkcs8.as_slice()).map_err(|_| "not a usable private key (PKCS#8: RSA, ECDSA P-256/P-384 or Ed25519)".to_string())?;
    Ok(kp.public_key_raw().to_vec())
}

/// A PEM private key as PKCS#8 DER (PKCS#1 RSA wrapped). Errors never
/// quote the key.
pub fn private_key_pkcs8(text: &[u8]) -> Result<Vec<u8>, crate::error::Unusable> {
    let s = std::str::from_utf8(text).map_err(|_| "not a PEM private key (not text)".to_string())?;
    let begin = s.lines().find(|l| l.starts_with("-----BEGIN ")).ok_or("not a PEM private key")?;
    let label = begin.trim_start_matches("-----BEGIN ").trim_end_matches("-----");
    let body: String = s.lines().skip_while(|l| !l.starts_with("-----BEGIN ")).skip(1).take_while(|l| !l.starts_with("-----END ")).collect();
    if label == "ENCRYPTED PRIVATE KEY" || s.contains("Proc-Type: 4,ENCRYPTED") {
        return Err("the key is encrypted: the control plane needs it unencrypted (openssl pkey -in KEY -out KEY.plain)".into());
    }
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).map_err(|e| format!("its PEM body is {}", base64_error(e)))?;
    match label {
        "PRIVATE KEY" => Ok(der),
        "RSA PRIVATE KEY" => Ok(pkcs1_to_pkcs8(&der)),
        other => Err(format!("unsupported key format {}: convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8`", pem_label(other)).into()),
    }
}

/// Does `key` (PEM) hold the private half of `cert`'s public key?
pub fn key_matches(cert: &Cert, key: &[u8]) -> Result<bool, crate::error::Unusable> {
    Ok(private_key_public_raw(key)? == cert.public_key_raw())
}

/// The encryption providers kube-apiserver knows, with the key lengths
/// (bytes, after base64) each accepts; `identity` and `kms` hold no key.
const PROVIDERS: &[(&str, &[usize])] = &[("aescbc", &[16, 24, 32]), ("aesgcm", &[16, 24, 32]), ("secretbox", &[32]), ("identity", &[]), ("kms", &[])];

/// An EncryptionConfiguration checked as kube-apiserver parses it: its kind,
/// resources, known providers, and every key base64 of a length its
/// provider takes. It holds the key that encrypts Secrets at rest: each
/// problem names the field's position, never a value.
pub fn encryption_config(bytes: &[u8]) -> Vec<String> {
    let v: serde_yaml::Value = match serde_yaml::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return vec![format!("not YAML: {}", crate::output::redact::yaml_error(&e))],
    };
    let kind = v.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    if kind != "EncryptionConfiguration" && kind != "EncryptionConfig" {
        return vec!["its kind is not EncryptionConfiguration".into()];
    }
    let Some(resources) = v.get("resources").and_then(|r| r.as_sequence()).filter(|r| !r.is_empty()) else {
        return vec!["no resources to encrypt".into()];
    };
    let mut p = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        let Some(providers) = r.get("providers").and_then(|p| p.as_sequence()).filter(|p| !p.is_empty()) else {
            p.push(format!("resources[{i}]: no providers"));
            continue;
        };
        for (j, provider) in providers.iter().enumerate() {
            p.extend(encryption_provider(&format!("resources[{i}].providers[{j}]"), provider));
        }
    }
    p
}

/// One provider entry: exactly one known provider, its keys usable.
fn encryption_provider(at: &str, provider: &serde_yaml::Value) -> Vec<String> {
    let Some(m) = provider.as_mapping().filter(|m| m.len() == 1) else {
        return vec![format!("{at}: one provider per entry ({})", PROVIDERS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "))];
    };
    let (name, body) = m.iter().next().expect("one entry");
    let name = name.as_str().unwrap_or("");
    let Some((_, lengths)) = PROVIDERS.iter().find(|p| p.0 == name) else {
        return vec![format!(
            "{at}: unknown provider `{}` (known: {})",
            crate::output::redact::line(&name.chars().take(40).collect::<String>()),
            PROVIDERS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
        )];
    };
    if lengths.is_empty() {
        return Vec::new();
    }
    let Some(keys) = body.get("keys").and_then(|k| k.as_sequence()).filter(|k| !k.is_empty()) else {
        return vec![format!("{at}.{name}: no keys")];
    };
    let mut p = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        let here = format!("{at}.{name}.keys[{k}]");
        if key.get("name").and_then(|n| n.as_str()).is_none_or(str::is_empty) {
            p.push(format!("{here}: no name"));
        }
        match key.get("secret").and_then(|s| s.as_str()) {
            None => p.push(format!("{here}.secret: missing")),
            Some(s) => match base64::engine::general_purpose::STANDARD.decode(s.trim()) {
                Err(e) => p.push(format!("{here}.secret: secrets must be base64 encoded: it is {}", base64_error(e))),
                Ok(b) if !lengths.contains(&b.len()) => {
                    let want: Vec<String> = lengths.iter().map(|l| l.to_string()).collect();
                    p.push(format!("{here}.secret: decodes to {} bytes; {name} takes {} bytes", b.len(), want.join(", ")))
                }
                Ok(_) => {}
            },
        }
    }
    p
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
    fn purposes_ca_and_subject_as_go_reads_them() {
        let (ca_pem, issuer) = ca();
        let ca = Cert::from_pem(ca_pem.as_bytes()).unwrap();
        assert!(ca.is_ca());
        let leaf = |ekus: Vec<rcgen::ExtendedKeyUsagePurpose>, org: Option<&str>| {
            let mut p = CertificateParams::new(vec!["a".into()]).unwrap();
            p.extended_key_usages = ekus;
            p.distinguished_name.push(rcgen::DnType::CommonName, "system:kube-scheduler");
            if let Some(o) = org {
                p.distinguished_name.push(rcgen::DnType::OrganizationName, o);
            }
            Cert::from_pem(p.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap().pem().as_bytes()).unwrap()
        };
        use rcgen::ExtendedKeyUsagePurpose as E;
        let server = leaf(vec![E::ServerAuth], None);
        assert!(server.allows(Purpose::Server) && !server.allows(Purpose::Client) && !server.is_ca());
        let client = leaf(vec![E::ClientAuth], Some("system:masters"));
        assert!(!client.allows(Purpose::Server) && client.allows(Purpose::Client));
        assert_eq!((client.common_name().as_deref(), client.organizations()), (Some("system:kube-scheduler"), vec!["system:masters".to_string()]));
        let any = leaf(vec![], None);
        assert!(any.allows(Purpose::Server) && any.allows(Purpose::Client));
        let (from, to) = any.validity();
        assert!(from < to && !any.serial().is_empty());
    }

    #[test]
    fn encryption_config_is_read_as_the_apiserver_reads_it() {
        let config =
            |providers: &str| format!("kind: EncryptionConfiguration\napiVersion: apiserver.config.k8s.io/v1\nresources:\n  - resources: [secrets]\n    providers:\n{providers}");
        let key32 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let good = config(&format!("      - aescbc:\n          keys:\n            - name: key1\n              secret: {key32}\n      - identity: {{}}\n"));
        assert_eq!(encryption_config(good.as_bytes()), Vec::<String>::new());
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 10]);
        let bad = config(&format!("      - aescbc:\n          keys:\n            - name: key1\n              secret: {short}\n            - name: key2\n              secret: \"not*base64\"\n      - secretbox:\n          keys:\n            - name: k\n              secret: {short}\n      - rot13: {{}}\n"));
        let found = encryption_config(bad.as_bytes());
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].starts_with("resources[0].providers[0].aescbc.keys[0].secret: decodes to 10 bytes; aescbc takes 16, 24, 32 bytes"), "{}", found[0]);
        assert!(found[1].contains("keys[1].secret: secrets must be base64 encoded: it is not valid base64 at offset 3"), "{}", found[1]);
        assert!(found[2].contains("secretbox takes 32 bytes") && found[3].contains("unknown provider `rot13`"), "{found:#?}");
        // No value of the file reaches a message.
        assert!(found.iter().all(|l| !l.contains(&short) && !l.contains("not*base64")));
        assert_eq!(encryption_config(config("").as_bytes()), vec!["resources[0]: no providers".to_string()]);
        assert_eq!(encryption_config(b"kind: Secret\n"), vec!["its kind is not EncryptionConfiguration".to_string()]);
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
