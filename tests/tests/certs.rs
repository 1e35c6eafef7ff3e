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

    // A certificate the apiserver will never serve (not its key's), older
    // than the reload window: FAIL naming 6443.
    testbed::pki::reissue_apiserver(&dir, testbed::pki::apiserver_sans(bed.address.into())).unwrap();
    put(&bed, SERVING, &std::fs::read(dir.join("kube-api-server.crt")).unwrap(), "0644");
    bed.ssh(&format!("touch -d '-10 min' {SERVING}")).unwrap();
    let row = certs(&bed).row("certs.served", None).clone();
    assert_eq!(row.status, "FAIL", "{row:#?}");
    assert!(row.detail.starts_with("port 6443 serves serial ") && row.detail.contains("(written 6"), "{row:#?}");

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
}

/// A directory holding a copy of the bed's assets (its CA), to reissue in.
fn tempfile_dir(bed: &testbed::Bed) -> std::path::PathBuf {
    let dir = bed.dir.join("certs-e2e");
    testbed::pki::copy_assets(&bed.assets, &dir).unwrap();
    dir
}
