//! What the server's certificates and kubeconfigs say, never what its keys
//! do: of a `.crt`, its CERTIFICATE blocks only (a cert+key bundle's key
//! lines never leave the server); of a kubeconfig, its `server:` and its
//! client certificate; of the encryption config, its providers' names; of
//! a serving pair, whether the key's public half is the certificate's
//! (compared on the server by `openssl`: nothing of the key leaves it).

use super::{b64_text, list, malformed, Probe, ProbeError, Request, Tag};

pub(crate) const TAGS: &[Tag] = &[Tag::Cert, Tag::KubeconfigServer, Tag::KubeconfigCert, Tag::Provider, Tag::Pair];

/// Whether a certificate and the key beside it belong together, as the
/// server's `openssl` compared their public halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairState {
    Match,
    Mismatch,
    /// `openssl x509` could not read the certificate.
    CertUnreadable,
    /// `openssl pkey` could not read the key (not a key, encrypted, or not
    /// readable by the login user).
    KeyUnreadable,
    /// The server has no `openssl`: nothing was compared.
    NoOpenssl,
}

impl PairState {
    const ALL: &'static [(PairState, &'static str)] = &[
        (PairState::Match, "match"),
        (PairState::Mismatch, "mismatch"),
        (PairState::CertUnreadable, "cert-unreadable"),
        (PairState::KeyUnreadable, "key-unreadable"),
        (PairState::NoOpenssl, "no-openssl"),
    ];
    pub fn as_str(self) -> &'static str {
        PairState::ALL.iter().find(|(s, _)| *s == self).map(|(_, w)| *w).unwrap_or_default()
    }
    fn parse(s: &str) -> Option<PairState> {
        PairState::ALL.iter().find(|(_, w)| *w == s).map(|(p, _)| *p)
    }
}

/// The providers the apiserver knows.
pub const PROVIDERS: &[&str] = &["aescbc", "aesgcm", "secretbox", "kms", "identity"];

pub(crate) fn script(req: &Request) -> String {
    let mut s = String::new();
    if !req.certs.is_empty() {
        s.push_str(&format!(
            "for p in {}; do [ -f \"$p\" ] && [ ! -L \"$p\" ] && echo \"cert${{T}}$p${{T}}$(awk '/^-----BEGIN CERTIFICATE-----/ {{ c = 1 }} c {{ print }} /^-----END CERTIFICATE-----/ {{ c = 0 }}' \"$p\" | base64 -w0)\"; done\n",
            list(&req.certs)
        ));
    }
    if !req.kubeconfigs.is_empty() {
        s.push_str(&format!(
            "for p in {}; do [ -f \"$p\" ] && [ ! -L \"$p\" ] || continue\n\
               awk -v T=\"$T\" '/^ *client-certificate-data:/ {{ v = $0; sub(/^ *client-certificate-data: */, \"\", v); print \"kccert\" T FILENAME T v; exit }}' \"$p\"\n\
               echo \"kcserver${{T}}$p${{T}}$(awk '/^ *server:/ {{ v = $0; sub(/^ *server: */, \"\", v); print v; exit }}' \"$p\" | base64 -w0)\"\n\
             done\n",
            list(&req.kubeconfigs)
        ));
    }
    if let Some(e) = &req.encryption {
        s.push_str(&format!(
            "[ -f {e} ] && [ ! -L {e} ] && awk -v T=\"$T\" 'match($0, /^ *- *({providers})/) {{ v = substr($0, RSTART, RLENGTH); gsub(/[ -]/, \"\", v); print \"provider\" T v }}' {e}\n",
            e = crate::remote::shell_quote(e),
            providers = PROVIDERS.join("|"),
        ));
    }
    if !req.pairs.is_empty() {
        // Only the word of the comparison is printed; the public halves
        // stay in the shell's variables, the key in openssl's memory.
        // Each pair in the background: two openssl processes.
        let each: String = req
            .pairs
            .iter()
            .enumerate()
            .map(|(i, (c, k))| super::background(&format!("pair-{i}"), &format!("pair {} {}", crate::remote::shell_quote(c), crate::remote::shell_quote(k))))
            .collect();
        s.push_str(&format!(
            "pair() {{ [ -f \"$1\" ] && [ ! -L \"$1\" ] && [ -f \"$2\" ] && [ ! -L \"$2\" ] || return 0\n\
               if ! command -v openssl >/dev/null 2>&1; then r=no-openssl\n\
               elif ! a=$(openssl x509 -noout -pubkey -in \"$1\" 2>/dev/null </dev/null); then r=cert-unreadable\n\
               elif ! b=$(openssl pkey -passin pass: -pubout -in \"$2\" 2>/dev/null </dev/null); then r=key-unreadable\n\
               elif [ \"$a\" = \"$b\" ]; then r=match; else r=mismatch; fi\n\
               echo \"pair${{T}}$1${{T}}$2${{T}}$r\"; }}\n{each}"
        ));
    }
    s
}

fn path(tag: Tag, s: &str) -> Result<String, ProbeError> {
    if !s.starts_with('/') || unitfile::control_char(s).is_some() {
        return Err(malformed(tag, "not an absolute path"));
    }
    Ok(s.to_string())
}

pub(crate) fn parse(tag: Tag, f: &[&str], p: &mut Probe) -> Result<(), ProbeError> {
    match (tag, f) {
        (Tag::Cert, [file, b]) => {
            p.certs.insert(path(tag, file)?, b64_text(tag, b)?);
        }
        (Tag::KubeconfigServer, [file, b]) => {
            let server = b64_text(tag, b)?.trim().trim_matches(['"', '\'']).to_string();
            p.kubeconfigs.entry(path(tag, file)?).or_default().0 = server;
        }
        (Tag::KubeconfigCert, [file, data]) => {
            // base64 of a PEM: decoded here, never shown raw.
            let data = data.trim().trim_matches(['"', '\'']);
            let pem = b64_text(tag, data).ok().filter(|p| p.contains("-----BEGIN CERTIFICATE-----"));
            p.kubeconfigs.entry(path(tag, file)?).or_default().1 = pem;
        }
        (Tag::Provider, [name]) => {
            let n = name.trim();
            if !PROVIDERS.contains(&n) {
                return Err(malformed(tag, "not a provider"));
            }
            p.encryption_providers.push(n.to_string());
        }
        (Tag::Pair, [cert, key, state]) => {
            let state = PairState::parse(state).ok_or_else(|| malformed(tag, "not a pair state"))?;
            p.pairs.insert(path(tag, cert)?, (path(tag, key)?, state));
        }
        (t, f) => return Err(malformed(t, format!("{} fields", f.len()))),
    }
    Ok(())
}
