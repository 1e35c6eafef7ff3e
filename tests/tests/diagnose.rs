//! Failures that explain themselves, on one real bed: every failure
//! signature reproduced by hand as the guide's readers break a plane
//! (tests/src/diagnose_bed.rs), cpcheck naming the cause and fix, the row
//! passing again after the fix; bootstrap's own failure path naming the
//! cause of a unit that does not become healthy (etcd stopped).

use e2e::diagnose_bed::{cases, reproduce};
use e2e::{server_args, text};

#[test]
fn every_signature_is_named_by_cpcheck_and_cleared_by_the_fix_and_bootstrap_names_the_cause() {
    let bed = e2e::bootstrapped("diagnose");
    for case in cases() {
        let m = reproduce(&bed, &case);
        eprintln!("{}: named after {:.1}s, cleared {:.1}s after the fix: {}", m.id, m.detected.as_secs_f64(), m.cleared.as_secs_f64(), m.detail);
    }

    // bootstrap: a change whose restart cannot become healthy (etcd stopped)
    // fails naming the cause and fix above the journal tail. Measured on
    // the bed: the old apiserver does not exit on SIGTERM while etcd is
    // gone, so the restart step itself runs out of --timeout (systemd's
    // stop timeout is 90s) and says why; on a run where it exits in time,
    // the wait step does.
    bed.ssh("systemctl stop etcd").unwrap();
    let mut args = server_args(&bed, "root");
    args.extend(["--set", "kube-apiserver.v=3", "--timeout", "40s"].map(String::from));
    let out = e2e::run_bootstrap(&args);
    let (_, err) = text(&out);
    bed.ssh("systemctl start etcd").unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let cause = err.find("cause [diagnose.etcd-unreachable]: etcd does not answer at 127.0.0.1:2379").unwrap_or_else(|| panic!("{err}"));
    let tail = err.find("--- journalctl -u kube-apiserver.service").unwrap_or_else(|| panic!("{err}"));
    assert!(cause < tail, "the cause comes before the journal tail: {err}");
    assert!(err.contains("\nfix: systemctl status etcd"), "{err}");
    // Fixed: the re-run passes.
    let out = e2e::run_bootstrap(&args);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Every secret of the bed's assets in the forms it could leak in: each
/// private key's PEM body lines and the hex of its DER, the encryption
/// key as written (base64) and decoded (hex), each kubeconfig's
/// client-key-data and its decoded PEM body lines.
fn secret_forms(assets: &std::path::Path) -> Vec<(String, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = Vec::new();
    let pem_forms = |v: &mut Vec<(String, String)>, what: &str, pem: &str| {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for l in pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 24) {
            v.push((format!("{what} (PEM line)"), l[..24].to_string()));
        }
        if let Ok(der) = b64.decode(&body) {
            v.push((format!("{what} (hex)"), hex::encode(&der)[..48].to_string()));
        }
    };
    for e in std::fs::read_dir(assets).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".key") {
            pem_forms(&mut v, &name, &std::fs::read_to_string(&p).unwrap());
        }
        if name.ends_with(".kubeconfig") {
            let text = std::fs::read_to_string(&p).unwrap();
            let data = text.lines().find_map(|l| l.trim().strip_prefix("client-key-data:")).unwrap().trim().to_string();
            v.push((format!("{name} client-key-data"), data[..40].to_string()));
            pem_forms(&mut v, &format!("{name} client key"), &String::from_utf8(b64.decode(&data).unwrap()).unwrap());
        }
    }
    let enc = std::fs::read_to_string(assets.join("encryption-config.yaml")).unwrap();
    let secret = enc.lines().find_map(|l| l.trim().strip_prefix("secret:")).unwrap().trim().to_string();
    v.push(("the encryption key".into(), secret.clone()));
    v.push(("the encryption key (hex)".into(), hex::encode(b64.decode(&secret).unwrap())));
    v
}

/// Lines that may hold a secret, planted in the scheduler's journal as
/// root (OBJECT_SYSTEMD_UNIT), each holding a needle the diagnose filter
/// sends: none reaches cpcheck's output or the support bundle; the bundle
/// holds what a helper needs and no secret in any form.
#[test]
fn the_support_bundle_holds_what_a_helper_needs_and_no_secret() {
    let bed = e2e::bootstrapped("bundle");
    let forms = secret_forms(&bed.assets);
    let enc = forms.iter().find(|f| f.0 == "the encryption key").unwrap().1.clone();
    let key = std::fs::read_to_string(bed.assets.join("kube-scheduler.key")).unwrap();
    let key_line = key.lines().find(|l| !l.starts_with("-----")).unwrap().to_string();
    let planted = [
        format!("E1202 x.go:1] Unauthorized while sending {enc}"),
        "E1202 x.go:1] Unauthorized: Authorization: Bearer kcp-planted-token-0123".to_string(),
        format!("E1202 x.go:1] Unauthorized -----BEGIN EC PRIVATE KEY----- {key_line}"),
        "E1202 x.go:1] Unauthorized token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".to_string(),
    ];
    for l in &planted {
        bed.ssh(&format!("printf 'MESSAGE=%s\\nOBJECT_SYSTEMD_UNIT=kube-scheduler.service\\nPRIORITY=3\\n' {} | logger --journald", controlplane::remote::shell_quote(l))).unwrap();
    }
    let shown = bed.ssh("journalctl -u kube-scheduler.service -n 50 --no-pager | grep -c kcp-planted-token").unwrap();
    assert_eq!(shown.trim(), "1", "the planted lines are in the unit's journal as journalctl -u reads it");

    let dir = bed.dir.join("bundle-out");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cpcheck.tar.gz");
    let mut args = e2e::cpcheck_args(&bed);
    args.extend(["-o".to_string(), "json".to_string(), "--bundle".to_string(), path.display().to_string()]);
    let out = e2e::cpcheck(&args);
    assert_eq!(out.status.code(), Some(0), "a healthy bed (the planted lines are dropped, never a cause): {:?}", text(&out));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let x = dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    let st = std::process::Command::new("tar").arg("xzf").arg(&path).arg("-C").arg(&x).status().unwrap();
    assert!(st.success());
    let root = x.join("bundle");
    let server = root.join("servers").join(bed.dest());
    for f in ["README", "version.txt", "cpcheck.json", "errors.txt", "plane/readyz.txt", "plane/livez.txt", "plane/leases.json", "plane/endpoints.json", "plane/events.txt"] {
        assert!(root.join(f).is_file(), "{f}");
    }
    for f in [
        "units/kube-apiserver.service",
        "files.txt",
        "systemctl-status.txt",
        "journal/kube-scheduler.service.log",
        "journal/etcd.service.log",
        "certificates.json",
        "served.json",
        "sockets.txt",
        "etcd-health.json",
        "processes/kube-apiserver.json",
        "encryption-providers.txt",
        "config/etc/kubernetes/config/kube-scheduler.yaml",
    ] {
        assert!(server.join(f).is_file(), "{f}: {:?}", std::fs::read_dir(&server).map(|d| d.map(|e| e.unwrap().file_name()).collect::<Vec<_>>()));
    }
    let errors = std::fs::read_to_string(root.join("errors.txt")).unwrap();
    assert!(errors.is_empty(), "every collector succeeded on a healthy bed: {errors}");
    let files = std::fs::read_to_string(server.join("files.txt")).unwrap();
    assert!(files.contains("/var/lib/kubernetes/kube-scheduler.kubeconfig  (secret: content not read)"), "{files}");
    assert_eq!(std::fs::read_to_string(server.join("encryption-providers.txt")).unwrap().trim(), "aescbc\nidentity");
    let journal = std::fs::read_to_string(server.join("journal/kube-scheduler.service.log")).unwrap();
    assert!(journal.contains("[a line that may hold a secret: left out]"), "the planted lines are in the tail, left out");
    // No secret in any form, anywhere in the bundle or cpcheck's output.
    let mut all = out.stdout.clone();
    all.extend_from_slice(&out.stderr);
    let mut walk = vec![root.clone()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk.push(p);
            } else {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
    }
    let all = String::from_utf8_lossy(&all);
    assert!(forms.len() >= 20, "{forms:?}");
    for (what, form) in &forms {
        assert!(!all.contains(form.as_str()), "{what} is in the bundle or cpcheck's output");
    }
    for l in ["kcp-planted-token", "eyJhbGciOiJSUzI1NiJ9", "PRIVATE KEY"] {
        assert!(!all.contains(l), "{l} reached the output");
    }
}
