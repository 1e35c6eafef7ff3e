//! Certificates on a real bed: the certificate the apiserver serves against
//! the one on disk (a new pair is a pending reload until the apiserver
//! serves it; one it never will is a failure naming 6443), and a restart
//! owed for a file a component reads only at start, until bootstrap's
//! re-run restores it and restarts the component.

use std::time::{Duration, Instant};

use e2e::report::{self, Cpcheck};
use e2e::{server_args, text};

const SERVING: &str = "/var/lib/kubernetes/kube-api-server.crt";
const SERVING_KEY: &str = "/var/lib/kubernetes/kube-api-server.key";
const CM_KUBECONFIG: &str = "/var/lib/kubernetes/kube-controller-manager.kubeconfig";

/// The `certs` group's rows: (status, detail) by id.
fn certs(bed: &testbed::Bed) -> Cpcheck {
    let mut args = e2e::cpcheck_args(bed);
    args.extend(["--only", "certs", "-o", "json"].map(String::from));
    report::parse(&e2e::cpcheck(&args).stdout)
}

/// Puts `bytes` at `dest` on the server as root would by hand: a temp
/// beside it, renamed over it.
fn put(bed: &testbed::Bed, dest: &str, bytes: &[u8], mode: &str) {
    let octal: String = bytes.iter().map(|b| format!("\\{b:03o}")).collect();
    bed.ssh(&format!("printf '{octal}' > {dest}.hand && chmod {mode} {dest}.hand && mv -f {dest}.hand {dest}")).unwrap();
}

#[test]
fn the_served_certificate_and_restarts_owed_are_read_from_the_running_plane() {
    let bed = e2e::bootstrapped("certs");
    let r = certs(&bed);
    for c in &r.checks {
        assert_eq!(c.status, "PASS", "{c:#?}");
    }
    let first = r.row("certs.served", None).detail.clone();
    assert!(first.contains("port 6443 serves /var/lib/kubernetes/kube-api-server.crt (serial "), "{first}");
    // The pair compared on the server by its openssl; the clients' ports serve what they made at start.
    let pair = r.row("certs.pair.kube-apiserver", None).detail.clone();
    assert_eq!(pair, format!("{SERVING} and {SERVING_KEY} hold the same public key (compared on the server)"));
    for (c, port) in [("kube-controller-manager", 10257), ("kube-scheduler", 10259)] {
        let d = &r.row(&format!("certs.served.{c}"), None).detail;
        assert!(d.starts_with(&format!("port {port} serves a certificate {c} made at start (no --tls-cert-file): self-signed")) && d.contains(", serial "), "{d}");
    }
    // Every certificate on the server and in --kubeconfig within a horizon longer than the leaves' year: WARN naming them; the old id still selects it.
    let mut args = e2e::cpcheck_args(&bed);
    args.extend(["--only", "consistency.cert-expiry", "--warn-within", "400d", "-o", "json"].map(String::from));
    let horizon: Cpcheck = report::parse(&e2e::cpcheck(&args).stdout);
    let row = horizon.row("certs.expiry", None);
    assert_eq!(row.status, "WARN", "{row:#?}");
    assert!(row.detail.starts_with("expiring within 400d: ") && row.detail.contains(&format!("--kubeconfig {} (client) (36", bed.kubeconfig.display())), "{row:#?}");
    assert!(row.detail.contains(&format!("{SERVING} (36")) && !row.detail.contains("/var/lib/kubernetes/ca.crt"), "the CA lives ten years: {row:#?}");

    // certs check with the server: what it has, what each port serves.
    let out = std::process::Command::new(e2e::plugin("kubectl-bootstrap"))
        .args(["certs", "check", "--assets"])
        .arg(&bed.assets)
        .args(["--ssh", &bed.dest()])
        .args(bed.plugin_ssh_args())
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let server = &v["servers"][0];
    let files: Vec<&str> = server["certificates"].as_array().unwrap().iter().map(|r| r["file"].as_str().unwrap()).collect();
    assert!(files.contains(&SERVING) && files.contains(&CM_KUBECONFIG), "{files:?}");
    let served = |c: &str| server["served"].as_array().unwrap().iter().find(|r| r["component"] == c).unwrap().clone();
    let api = served("kube-apiserver");
    assert_eq!((api["port"].as_u64(), api["sameAsFile"].as_bool(), api["selfSigned"].as_bool()), (Some(6443), Some(true), Some(false)), "{api}");
    let sched = served("kube-scheduler");
    assert_eq!((sched["port"].as_u64(), sched["selfSigned"].as_bool(), sched.get("tlsCertFile")), (Some(10259), Some(true), None), "{sched}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("PRIVATE KEY"));

    // A new matching pair written by hand: a reload is pending, then served.
    let dir = tempfile_dir(&bed);
    testbed::pki::reissue_apiserver(&dir, testbed::pki::apiserver_sans(bed.address.into())).unwrap();
    let (crt, key) = (std::fs::read(dir.join("kube-api-server.crt")).unwrap(), std::fs::read(dir.join("kube-api-server.key")).unwrap());
    put(&bed, SERVING_KEY, &key, "0600");
    put(&bed, SERVING, &crt, "0644");
    let served = certs(&bed);
    let row = served.row("certs.served", None);
    assert_eq!(row.status, "WARN", "{row:#?}");
    assert!(row.detail.starts_with("reload pending: port 6443 serves serial "), "{row:#?}");
    let t = Instant::now();
    let last = loop {
        let r = certs(&bed);
        let row = r.row("certs.served", None).clone();
        if row.status != "WARN" || t.elapsed() > Duration::from_secs(180) {
            break row;
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    assert_eq!(last.status, "PASS", "the apiserver did not serve the new pair within {:?}: {last:#?}", t.elapsed());
    eprintln!("attack: a new serving pair written by hand: WARN reload pending, PASS once served after {:?}", t.elapsed());
    // The same files are also the apiserver's kubelet client pair, read
    // only at start: a restart is owed for those flags, never for the
    // serving pair it re-reads.
    let row = certs(&bed).row("certs.restart.kube-apiserver", None).clone();
    assert_eq!(row.status, "FAIL", "{row:#?}");
    assert!(row.detail.contains(&format!("--kubelet-client-certificate {SERVING}")) && row.detail.contains(&format!("--kubelet-client-key {SERVING_KEY}")), "{row:#?}");
    assert!(!row.detail.contains("--tls-cert-file") && !row.detail.contains("--tls-private-key-file"), "{row:#?}");

    // A certificate the apiserver will never serve (not its key's): FAIL
    // naming 6443 at once, the pair compared on the server.
    testbed::pki::reissue_apiserver(&dir, testbed::pki::apiserver_sans(bed.address.into())).unwrap();
    put(&bed, SERVING, &std::fs::read(dir.join("kube-api-server.crt")).unwrap(), "0644");
    let r = certs(&bed);
    let row = r.row("certs.served", None).clone();
    assert_eq!(row.status, "FAIL", "{row:#?}");
    assert!(row.detail.starts_with("port 6443 serves serial ") && row.detail.contains(&format!("does not match its key {SERVING_KEY}")), "{row:#?}");
    let row = r.row("certs.pair.kube-apiserver", None).clone();
    assert!(row.status == "FAIL" && row.detail.starts_with(&format!("{SERVING} does not match its key {SERVING_KEY}")), "{row:#?}");
    // A pair the server cannot compare (openssl taken away): SKIP with the
    // reason; the served certificate is judged by the reload window alone.
    bed.ssh("mv /usr/bin/openssl /usr/bin/openssl.away").unwrap();
    let r = certs(&bed);
    bed.ssh("mv /usr/bin/openssl.away /usr/bin/openssl").unwrap();
    let row = r.row("certs.pair.kube-apiserver", None).clone();
    assert!(row.status == "SKIP" && row.detail.contains("the server has no openssl"), "{row:#?}");
    let row = r.row("certs.served", None).clone();
    assert!(row.detail.contains("its key not compared: the server has no openssl"), "{row:#?}");

    // The controller-manager's kubeconfig changed by hand: a restart is owed.
    bed.ssh(&format!("printf '# changed by hand\\n' >> {CM_KUBECONFIG}")).unwrap();
    let row = certs(&bed).row("certs.restart.kube-controller-manager", None).clone();
    assert_eq!(row.status, "FAIL", "{row:#?}");
    assert!(row.detail.contains(&format!("restart pending: changed since kube-controller-manager started, read only at start: --kubeconfig {CM_KUBECONFIG}")), "{row:#?}");

    // bootstrap's re-run restores both files and restarts what reads them.
    let out = e2e::run_bootstrap(&server_args(&bed, "root"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("kube-controller-manager.service"), "{stdout}\n{stderr}");
    let t = Instant::now();
    let settled = loop {
        let r = certs(&bed);
        if r.checks.iter().all(|c| c.status == "PASS") || t.elapsed() > Duration::from_secs(180) {
            break r;
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    for c in &settled.checks {
        assert_eq!(c.status, "PASS", "{c:#?}");
    }

    // Renewed on the jumpbox, rolled by bootstrap: the apiserver serves the new serial, no restart owed.
    let renewed = bed.dir.join("certs-renewed");
    testbed::pki::copy_assets(&bed.assets, &renewed).unwrap();
    let out = std::process::Command::new(e2e::plugin("kubectl-bootstrap")).args(["certs", "renew", "--only", "kube-api-server", "--assets"]).arg(&renewed).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let new = controlplane::pki::Cert::from_pem(&std::fs::read(renewed.join("kube-api-server.crt")).unwrap()).unwrap();
    let out = e2e::run_bootstrap(&e2e::with_assets(&bed, "root", &renewed));
    let (stdout, stderr) = text(&out);
    let restarted = stdout.lines().find_map(|l| l.split_once("restarted: ").map(|x| x.1.to_string())).unwrap_or_default();
    assert!(out.status.success() && restarted.contains("kube-apiserver.service"), "{stdout}\n{stderr}");
    let r = certs(&bed);
    for c in &r.checks {
        assert_eq!(c.status, "PASS", "{c:#?}");
    }
    assert!(r.row("certs.served", None).detail.contains(&format!("serial {}", new.serial())), "{:#?}", r.row("certs.served", None));
}

/// A directory holding a copy of the bed's assets (its CA), to reissue in.
fn tempfile_dir(bed: &testbed::Bed) -> std::path::PathBuf {
    let dir = bed.dir.join("certs-e2e");
    testbed::pki::copy_assets(&bed.assets, &dir).unwrap();
    dir
}

/// `openssl` in `dir`, failing the test with its stderr.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn cert_of(path: &std::path::Path) -> controlplane::pki::Cert {
    controlplane::pki::Cert::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn renew_cmd(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(e2e::plugin("kubectl-bootstrap"));
    c.args(["certs", "renew", "--assets"]).arg(dir).args(extra);
    c.output().unwrap()
}

/// The guide's keys are RSA: a CA and a serving pair made by openssl, the
/// rest by the bed's PKI. `certs renew` re-issues every leaf from that CA
/// with its subject, names and usages, an RSA key of the same size, the
/// service-account key kept, kubeconfigs rewritten, the old files kept
/// 0700; a dry run writes nothing; the CA is never touched.
#[test]
fn certs_renew_reissues_the_leaves_from_the_jumpbox_ca_and_keeps_the_old_ones() {
    let dir = std::env::temp_dir().join(format!("certs-renew-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    testbed::pki::generate(&dir, &[("server".into(), "10.240.9.2".parse().unwrap())]).unwrap();
    openssl(&dir, &["genrsa", "-out", "ca.key", "2048"]);
    openssl(&dir, &["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=CA", "-days", "3650", "-out", "ca.crt", "-addext", "basicConstraints=critical,CA:TRUE"]);
    openssl(&dir, &["genrsa", "-out", "kube-api-server.key", "2048"]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,IP:10.32.0.1,DNS:server.kubernetes.local,IP:10.240.9.2\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n").unwrap();
    openssl(&dir, &["req", "-new", "-key", "kube-api-server.key", "-subj", "/CN=kubernetes/O=Kubernetes", "-out", "api.csr"]);
    openssl(&dir, &["x509", "-req", "-in", "api.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "90", "-extfile", "ext.cnf", "-out", "kube-api-server.crt"]);
    let before = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let (ca, sa_key, old_api) = (before("ca.crt"), before("service-accounts.key"), cert_of(&dir.join("kube-api-server.crt")));

    // A dry run lists every leaf and writes nothing.
    let out = renew_cmd(&dir, &["--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["renewed"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(!dir.join(".backup").exists() && before("kube-api-server.crt") == std::fs::read(dir.join("kube-api-server.crt")).unwrap());

    let out = renew_cmd(&dir, &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(before("ca.crt"), ca, "the CA is never re-issued");
    assert_eq!(before("service-accounts.key"), sa_key, "the service-account key is always kept");
    let ca = controlplane::pki::Cert::from_pem(&ca).unwrap();
    let api = cert_of(&dir.join("kube-api-server.crt"));
    assert!(api.signed_by(&ca) && api.serial() != old_api.serial());
    assert_eq!((api.common_name(), api.organizations(), api.sans()), (old_api.common_name(), old_api.organizations(), old_api.sans()));
    assert!(api.allows(controlplane::pki::Purpose::Server) && api.allows(controlplane::pki::Purpose::Client));
    // The same lifetime as the one it replaces (90 days), from now.
    let ((from, to), (ofrom, oto)) = (api.validity(), old_api.validity());
    assert!(((to - from) - (oto - ofrom)).abs() < 600, "{:?} vs {:?}", (from, to), (ofrom, oto));
    // A new RSA key of the same size, matching the certificate.
    let key = before("kube-api-server.key");
    assert!(controlplane::pki::key_matches(&api, &key).unwrap());
    let bits = std::process::Command::new("openssl").args(["rsa", "-in"]).arg(dir.join("kube-api-server.key")).args(["-noout", "-text"]).output().unwrap();
    assert!(String::from_utf8_lossy(&bits.stdout).contains("Private-Key: (2048 bit"), "not a 2048-bit RSA key");
    // Kubeconfigs embed their new pair, signed by the CA, for the same user.
    for k in ["kube-scheduler.kubeconfig", "kube-controller-manager.kubeconfig", "admin.kubeconfig"] {
        let info = controlplane::pki::kubeconfig(&before(k)).unwrap();
        let c = info.client_cert.unwrap();
        assert!(controlplane::pki::key_matches(&c, &info.client_key.unwrap()).unwrap(), "{k}");
        assert!(c.signed_by(&ca), "{k}");
    }
    // The old files, kept 0700.
    let backups: Vec<_> = std::fs::read_dir(dir.join(".backup")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(backups.len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&backups[0]).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(cert_of(&backups[0].join("kube-api-server.crt")).serial(), old_api.serial());
    assert_eq!(std::fs::metadata(backups[0].join("kube-api-server.key")).unwrap().permissions().mode() & 0o777, 0o600);
    // No key reached the output.
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"));
    // A name that is not a leaf is one line, exit 2.
    let out = renew_cmd(&dir, &["--only", "ca"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.starts_with("error: --only ca: no such certificate (renewable: "), "{}", text(&out).1);
    // Without the CA's key (or the CA) renew refuses, naming the file, exit 2, nothing written.
    std::fs::rename(dir.join("ca.key"), dir.join("ca.key.away")).unwrap();
    let api_now = before("kube-api-server.crt");
    let out = renew_cmd(&dir, &[]);
    let err = text(&out).1;
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("error: {}", dir.join("ca.key").display())), "{err}");
    assert_eq!(before("kube-api-server.crt"), api_now, "nothing re-issued");
    std::fs::rename(dir.join("ca.key.away"), dir.join("ca.key")).unwrap();
    std::fs::rename(dir.join("ca.crt"), dir.join("ca.crt.away")).unwrap();
    for cmd in [&["certs", "renew", "--assets"][..], &["certs", "check", "--assets"][..]] {
        let out = std::process::Command::new(e2e::plugin("kubectl-bootstrap")).args(cmd).arg(&dir).output().unwrap();
        let err = text(&out).1;
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(err.lines().count() == 1 && err.starts_with(&format!("error: {}", dir.join("ca.crt").display())), "{cmd:?}: {err}");
    }
    std::fs::rename(dir.join("ca.crt.away"), dir.join("ca.crt")).unwrap();
    // And certs check lists the new expiry.
    let out = std::process::Command::new(e2e::plugin("kubectl-bootstrap")).args(["certs", "check", "--assets"]).arg(&dir).args(["-o", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = v["certificates"].as_array().unwrap().iter().find(|r| r["name"] == "kube-api-server").unwrap().clone();
    assert!((88..=90).contains(&row["residualDays"].as_i64().unwrap()), "{row}");
    std::fs::remove_dir_all(&dir).unwrap();
}
