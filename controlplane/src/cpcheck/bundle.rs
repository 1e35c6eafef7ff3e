//! `kubectl cpcheck --bundle FILE.tar.gz`: everything a helper needs, for
//! every server, in one file that holds no secret: installed units and
//! configs, every layout file as its name, mode, owner and size (never a
//! secret's content or hash), the encryption config as its provider names,
//! running command lines, `systemctl status`, journal tails of each
//! component and etcd, binaries' versions, listening sockets, certificate
//! metadata (subject, names, issuer, validity, fingerprint: never a key),
//! etcd's health and members, what each port serves; for the plane
//! `/livez` and `/readyz?verbose`, Leases, Endpoints, recent events; the
//! plugins' version and the cpcheck report in JSON.
//!
//! One part failing never stops the bundle: each collector is bounded and
//! its error recorded in `errors.txt`. Server text is escaped and every
//! line that may hold a secret (`remote::journal::may_hold_secret`) is
//! dropped. Each file is capped, the whole too; the archive is written to
//! a temp beside its path (0600, created exclusively) and renamed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event};

use super::Report;
use crate::model::{Component, FILES};
use crate::pki::Cert;
use crate::remote::probe::Probe;
use crate::remote::Host;
use crate::Error;

/// No file in the bundle is larger (the rest is cut, saying so).
pub const FILE_CAP: usize = 1 << 20;
/// Nor the whole, uncompressed.
pub const TOTAL_CAP: usize = 16 << 20;
/// How long one collector may take.
const COLLECTOR_TIMEOUT: Duration = Duration::from_secs(15);
/// Journal lines per unit.
const JOURNAL_LINES: usize = 300;

/// One server as the bundle reads it.
pub struct Server<'a> {
    pub name: &'a str,
    pub host: Option<Arc<Host>>,
    /// What the checks read there, or why nothing was.
    pub probe: Result<Arc<Probe>, String>,
    pub served: &'a BTreeMap<Component, Result<Vec<Vec<u8>>, String>>,
}

/// The files of the bundle as they are gathered, with what failed.
#[derive(Default)]
struct Contents {
    files: Vec<(String, Vec<u8>)>,
    errors: Vec<String>,
    total: usize,
}

impl Contents {
    fn add(&mut self, name: impl Into<String>, mut bytes: Vec<u8>) {
        let name = name.into();
        if bytes.len() > FILE_CAP {
            bytes.truncate(FILE_CAP);
            bytes.extend_from_slice(format!("\n[cut at {FILE_CAP} bytes]\n").as_bytes());
        }
        if self.total + bytes.len() > TOTAL_CAP {
            self.errors.push(format!("{name}: left out (the bundle's {TOTAL_CAP}-byte cap)"));
            return;
        }
        self.total += bytes.len();
        self.files.push((name, bytes));
    }
    /// Server text: escaped, lines that may hold a secret dropped.
    fn text(&mut self, name: impl Into<String>, text: &str) {
        self.add(name, clean(text).into_bytes());
    }
    fn fail(&mut self, what: impl Into<String>, why: impl std::fmt::Display) {
        self.errors.push(format!("{}: {}", what.into(), crate::output::redact::line(&why.to_string())));
    }
}

/// `text` with control characters escaped and every line that may hold a
/// secret replaced by a marker.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for l in text.lines() {
        if crate::remote::journal::may_hold_secret(l) {
            out.push_str("[a line that may hold a secret: left out]\n");
        } else {
            out.push_str(&crate::output::redact::line(l));
            out.push('\n');
        }
    }
    out
}

/// A certificate's metadata (never a key).
fn cert_meta(where_: &str, c: &Cert) -> serde_json::Value {
    let x = c.x509();
    let (from, to) = c.validity();
    let (dns, ips) = c.sans();
    let fp = crate::local::files::sha256_hex(&c.der);
    let colon = fp.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).to_uppercase()).collect::<Vec<_>>().join(":");
    serde_json::json!({
        "where": where_,
        "subject": crate::output::redact::line(&x.subject().to_string()),
        "issuer": crate::output::redact::line(&x.issuer().to_string()),
        "serial": c.serial(),
        "notBefore": crate::pki::date(from),
        "notAfter": crate::pki::date(to),
        "dnsNames": dns,
        "ipAddresses": ips,
        "isCA": c.is_ca(),
        "sha256Fingerprint": colon,
    })
}

fn json(v: &serde_json::Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("serializes");
    b.push(b'\n');
    b
}

/// What the probe read on one server, as files under `dir/`.
fn from_probe(c: &mut Contents, dir: &str, p: &Probe, served: &BTreeMap<Component, Result<Vec<Vec<u8>>, String>>) {
    for comp in Component::ALL {
        let u = comp.unit();
        if let Some(st) = p.units.get(u) {
            if let Some(t) = &st.text {
                c.text(format!("{dir}/units/{u}"), t);
            }
            let argv: Vec<String> =
                st.cmdline.iter().map(|a| if crate::remote::journal::may_hold_secret(a) { "[left out]".to_string() } else { crate::output::redact::line(a) }).collect();
            c.add(
                format!("{dir}/processes/{}.json", comp.name()),
                json(&serde_json::json!({
                    "unit": u, "active": st.active.to_string(), "sub": st.sub, "enabled": st.enabled, "restarts": st.restarts,
                    "mainPid": st.main_pid, "startedUnix": st.active_enter_unix, "argv": argv, "interpreter": st.interpreter,
                    "version": st.binary_version, "needDaemonReload": st.need_daemon_reload, "dropIns": st.drop_ins, "fragment": st.fragment,
                })),
            );
        }
    }
    for (path, text) in &p.texts {
        if !path.ends_with(".service") {
            c.text(format!("{dir}/config{path}"), text);
        }
    }
    // Every layout file and referenced path: name, mode, owner, size (never a secret's content or hash).
    let mut files = String::new();
    for (path, f) in &p.files {
        let secret = FILES.iter().find(|x| x.dest == path).is_some_and(|x| x.kind.is_secret());
        files.push_str(&format!("{} {}:{} {:>10} {}{}\n", f.mode, f.owner, f.group, f.size, path, if secret { "  (secret: content not read)" } else { "" }));
    }
    for (path, d) in &p.dirs {
        files.push_str(&format!("{} {}:{} {:>10} {path}/\n", d.mode, d.owner, d.group, "-"));
    }
    c.text(format!("{dir}/files.txt"), &files);
    c.text(format!("{dir}/encryption-providers.txt"), &(p.encryption_providers.join("\n") + "\n"));
    let sockets: String = p
        .listeners
        .iter()
        .map(|l| format!("{}:{} {}{}\n", l.addr, l.port, l.unit.as_deref().unwrap_or("-"), l.holder.as_ref().map(|h| format!(" (pid {} {})", h.pid, h.name)).unwrap_or_default()))
        .collect();
    c.text(format!("{dir}/sockets.txt"), &sockets);
    let mut certs = Vec::new();
    for (path, pem) in &p.certs {
        if let Ok(cert) = Cert::from_pem(pem.as_bytes()) {
            certs.push(cert_meta(path, &cert));
        }
    }
    for (path, (_, pem)) in &p.kubeconfigs {
        if let Some(cert) = pem.as_ref().and_then(|p| Cert::from_pem(p.as_bytes()).ok()) {
            certs.push(cert_meta(&format!("{path} (client)"), &cert));
        }
    }
    c.add(format!("{dir}/certificates.json"), json(&serde_json::Value::Array(certs)));
    let mut ports = Vec::new();
    for (comp, chain) in served {
        match chain {
            Ok(ch) => ports.push(serde_json::json!({"component": comp.name(), "chain": ch.iter().filter_map(|d| Cert::from_der(d.clone()).ok()).map(|x| cert_meta("served", &x)).collect::<Vec<_>>()})),
            Err(e) => ports.push(serde_json::json!({"component": comp.name(), "error": crate::output::redact::line(e)})),
        }
    }
    c.add(format!("{dir}/served.json"), json(&serde_json::Value::Array(ports)));
    c.text(format!("{dir}/etcd-health.json"), &p.etcd_health);
    if !p.etcd_members.is_empty() {
        c.text(format!("{dir}/etcd-members.json"), &p.etcd_members);
    }
    let mut host = String::new();
    host.push_str(&format!(
        "hostname: {}\narch: {}\nsystemd: {:?}\ncoreutils: {:?}\nmissing: {:?}\naddresses: {:?}\nclock skew: {:.1}s\n",
        p.hostname, p.arch, p.systemd_version, p.coreutils, p.missing, p.addresses, p.skew
    ));
    c.text(format!("{dir}/host.txt"), &host);
}

/// `systemctl status` and the journal tails, each a bounded command.
async fn from_commands(c: &mut Contents, dir: &str, host: &Host) {
    let units: Vec<&str> = Component::ALL.iter().map(|c| c.unit()).chain(std::iter::once("etcd.service")).collect();
    let quoted = crate::remote::probe::list(&units);
    let status = format!("LC_ALL=C systemctl status {quoted} --no-pager -l -n 0; true");
    match host.sh_within(&status, COLLECTOR_TIMEOUT).await {
        Ok(o) => c.text(format!("{dir}/systemctl-status.txt"), &String::from_utf8_lossy(&o.stdout)),
        Err(e) => c.fail(format!("{dir}: systemctl status"), e),
    }
    for u in units {
        let script = format!("LC_ALL=C journalctl -u {} -n {JOURNAL_LINES} -o short-iso --no-pager -q", crate::remote::shell_quote(u));
        match host.sh_within(&script, COLLECTOR_TIMEOUT).await {
            Ok(o) if o.status.success() => c.text(format!("{dir}/journal/{u}.log"), &String::from_utf8_lossy(&o.stdout)),
            Ok(o) => c.fail(format!("{dir}: journalctl -u {u}"), format!("exit {}: {}", o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => c.fail(format!("{dir}: journalctl -u {u}"), e),
        }
    }
}

/// The plane through one API client: health, Leases, Endpoints, events.
async fn from_api(c: &mut Contents, client: &kube::Client) {
    for path in ["/livez?verbose", "/readyz?verbose"] {
        let (status, body) = crate::kube::health::get(client, path).await;
        let name = path.trim_start_matches('/').replace("?verbose", "");
        c.text(format!("plane/{name}.txt"), &format!("HTTP {status}\n{body}"));
    }
    match tokio::time::timeout(COLLECTOR_TIMEOUT, kube::Api::<Lease>::namespaced(client.clone(), "kube-system").list(&Default::default())).await {
        Ok(Ok(l)) => c.add("plane/leases.json", json(&serde_json::to_value(&l.items).unwrap_or_default())),
        Ok(Err(e)) => c.fail("plane: Leases", e),
        Err(_) => c.fail("plane: Leases", "no answer"),
    }
    match tokio::time::timeout(COLLECTOR_TIMEOUT, kube::Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes")).await {
        Ok(Ok(e)) => c.add("plane/endpoints.json", json(&serde_json::to_value(&e).unwrap_or_default())),
        Ok(Err(e)) => c.fail("plane: Endpoints", e),
        Err(_) => c.fail("plane: Endpoints", "no answer"),
    }
    match tokio::time::timeout(COLLECTOR_TIMEOUT, kube::Api::<Event>::all(client.clone()).list(&Default::default())).await {
        Ok(Ok(l)) => {
            let mut ev: Vec<&Event> = l.items.iter().collect();
            ev.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0.to_string()).or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string())));
            let text: String = ev
                .iter()
                .rev()
                .take(200)
                .map(|e| {
                    format!(
                        "{} {} {} {}/{}: {}\n",
                        e.last_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
                        e.type_.as_deref().unwrap_or(""),
                        e.reason.as_deref().unwrap_or(""),
                        e.involved_object.kind.as_deref().unwrap_or(""),
                        e.involved_object.name.as_deref().unwrap_or(""),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            c.text("plane/events.txt", &text);
        }
        Ok(Err(e)) => c.fail("plane: events", e),
        Err(_) => c.fail("plane: events", "no answer"),
    }
}

/// What the README inside says.
fn readme(c: &Contents) -> String {
    let mut s = format!(
        "kubectl cpcheck --bundle, {}\n\nWhat is here (no private key, no encryption secret, no kubeconfig credential:\nsecret files appear as their name, mode, owner and size only; journal,\nstatus and event lines that may hold a secret are left out):\n\n",
        crate::version_line()
    );
    for (name, bytes) in &c.files {
        s.push_str(&format!("  {name} ({} bytes)\n", bytes.len()));
    }
    s.push_str("  errors.txt: what could not be collected, and why\n");
    s
}

/// Collects the bundle for `servers` (what the checks read there, and
/// their connections) and `report`, and writes it to `path` atomically.
pub async fn write(path: &Path, servers: &[Server<'_>], api: Option<&kube::Client>, report: &Report) -> Result<(), Error> {
    let mut c = Contents::default();
    c.add("version.txt", format!("{}\n", crate::version_line()).into_bytes());
    c.add("cpcheck.json", format!("{}\n", report.json()).into_bytes());
    for s in servers {
        let dir = format!("servers/{}", sanitize(s.name));
        match &s.probe {
            Ok(p) => from_probe(&mut c, &dir, p, s.served),
            Err(e) => c.fail(format!("{dir}: reading the server"), e),
        }
        match &s.host {
            Some(h) => from_commands(&mut c, &dir, h).await,
            None => c.fail(format!("{dir}: commands"), "not connected"),
        }
    }
    match api {
        Some(client) => from_api(&mut c, client).await,
        None => c.fail("plane", "no API client (no credentials, or no server reached)"),
    }
    let errors: String = c.errors.iter().map(|e| format!("{e}\n")).collect();
    c.add("errors.txt", errors.into_bytes());
    let readme = readme(&c);
    c.files.insert(0, ("README".into(), readme.into_bytes()));
    let bytes = archive(&c.files).map_err(|e| Error::local("cannot build the bundle", e))?;
    write_new(path, &bytes)
}

/// A server's name as a directory name.
fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|ch| if ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | '@') { ch } else { '_' }).collect();
    if s.is_empty() {
        "server".into()
    } else {
        s
    }
}

/// The files as a gzipped tar under `bundle/`.
fn archive(files: &[(String, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(now);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("bundle/{name}"), bytes.as_slice())?;
    }
    tar.into_inner()?.finish()
}

/// Writes `bytes` to `path` through a temp created exclusively beside it
/// (0600), synced, renamed over it.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(".{}.{:016x}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("bundle"), rand::random::<u64>()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Input(format!("--bundle {}: cannot write it: {e}", crate::output::redact::line(&path.display().to_string())))
    })
}

/// Refuses, before anything runs, a bundle path that cannot be written:
/// its directory missing, or the path a directory.
pub fn preflight(path: &Path) -> Result<(), Error> {
    let shown = crate::output::redact::line(&path.display().to_string());
    if path.is_dir() {
        return Err(Error::Input(format!("--bundle {shown}: is a directory (name a file, e.g. cpcheck-bundle.tar.gz)")));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(Error::Input(format!("--bundle {shown}: its directory does not exist")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_may_hold_a_secret_are_left_out_and_files_are_capped() {
        let t = clean("ok line\nclient-key-data: QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5eg==\nesc \x1b[2J\n");
        assert_eq!(t, "ok line\n[a line that may hold a secret: left out]\nesc \\u{1b}[2J\n");
        let mut c = Contents::default();
        c.add("big", vec![b'a'; FILE_CAP + 10]);
        assert!(c.files[0].1.len() < FILE_CAP + 100 && c.files[0].1.ends_with(b"bytes]\n"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tar.gz");
        write_new(&p, &archive(&c.files).unwrap()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(preflight(dir.path()).is_err() && preflight(&dir.path().join("no/such/x.tar.gz")).is_err() && preflight(&p).is_ok());
    }
}
