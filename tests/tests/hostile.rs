//! The hardening table: hostile and mistaken inputs on a running control
//! plane. Each gives one clear line (what, where, what to do) and its
//! documented exit code; where preflight refuses, the server is unchanged
//! (files, modes, owners, unit states); and no part of any private key body
//! from the assets ever reaches stdout or stderr.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::{damaged, leak, server_args, snapshot, text, with_assets};

/// One row of the table.
struct Case {
    name: &'static str,
    /// Server-side damage before the run, and its repair after.
    setup: Option<(&'static str, &'static str)>,
    run: Box<dyn Fn() -> Output>,
    code: i32,
    /// Exactly one stderr line contains this.
    line: String,
    /// The run must not take longer (a FIFO must not block it).
    within: Duration,
}

impl Case {
    fn new(name: &'static str, setup: Option<(&'static str, &'static str)>, run: Box<dyn Fn() -> Output>, code: i32, line: String) -> Case {
        Case { name, setup, run, code, line, within: Duration::from_secs(120) }
    }
}

fn bootstrap_with(args: Vec<String>, env: Vec<(&'static str, String)>) -> Box<dyn Fn() -> Output> {
    Box::new(move || {
        let mut c = Command::new(e2e::plugin("kubectl-bootstrap"));
        c.args(&args).env_remove("KUBECONFIG");
        for (k, v) in &env {
            c.env(k, v);
        }
        c.output().expect("run kubectl-bootstrap")
    })
}

fn cpcheck_with(args: Vec<String>) -> Box<dyn Fn() -> Output> {
    Box::new(move || Command::new(e2e::plugin("kubectl-cpcheck")).args(&args).env_remove("KUBECONFIG").output().expect("run kubectl-cpcheck"))
}

fn plus(mut a: Vec<String>, more: &[&str]) -> Vec<String> {
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let st = Command::new("mkfifo").arg(p).status().unwrap();
    assert!(st.success());
}

#[test]
fn hostile_and_mistaken_inputs_each_get_one_line_and_leave_the_server_unchanged() {
    let bed = e2e::bootstrapped("hostile");
    let tmp = bed.dir.join("cases");
    std::fs::create_dir_all(&tmp).unwrap();
    let a = &bed.assets;
    let base = || server_args(&bed, "root");
    let secrets = testbed::pki::secret_bodies(a).unwrap();
    assert!(secrets.len() >= 10, "{} key bodies", secrets.len());
    let fast = Duration::from_secs(30);
    let mut cases: Vec<Case> = Vec::new();

    // ---- secrets where something else belongs (the first report)
    let key = a.join("admin.key").display().to_string();
    cases.push(Case::new(
        "--kubeconfig is a private key",
        None,
        bootstrap_with(plus(base(), &["--kubeconfig", &key]), vec![]),
        2,
        format!("error: the admin kubeconfig: --kubeconfig {key}: not a kubeconfig: line 1, column 1:"),
    ));
    cases.push(Case::new(
        "KUBECONFIG is a private key",
        None,
        bootstrap_with(base(), vec![("KUBECONFIG", key.clone())]),
        2,
        format!("error: the admin kubeconfig: $KUBECONFIG {key}: not a kubeconfig: line 1, column 1:"),
    ));
    let ca_key = a.join("ca.key").display().to_string();
    cases.push(Case::new(
        "--config is a private key",
        None,
        bootstrap_with(plus(base(), &["--config", &ca_key]), vec![]),
        2,
        format!("error: --config {ca_key}: line 1, column 1:"),
    ));
    cases.push(Case::new(
        "cpcheck --config is a private key",
        None,
        cpcheck_with(plus(bed.cpcheck_args(), &["--config", &ca_key])),
        2,
        format!("error: --config {ca_key}: line 1, column 1:"),
    ));
    let mut cargs = bed.cpcheck_args();
    let i = cargs.iter().position(|x| x == "--kubeconfig").unwrap();
    cargs[i + 1] = key.clone();
    cases.push(Case::new("cpcheck --kubeconfig is a private key", None, cpcheck_with(cargs), 2, format!("error: --kubeconfig {key}: not a kubeconfig: line 1, column 1:")));
    let d = damaged(&bed, &tmp, "swapped-kubeconfig", |d| {
        std::fs::copy(d.join("kube-scheduler.key"), d.join("kube-scheduler.kubeconfig")).unwrap();
    });
    cases.push(Case::new(
        "a key where a kubeconfig belongs",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/kube-scheduler.kubeconfig: not a kubeconfig: line 1, column 1:", d.display()),
    ));
    let d = damaged(&bed, &tmp, "swapped-cert", |d| {
        std::fs::copy(d.join("ca.key"), d.join("ca.crt")).unwrap();
    });
    cases.push(Case::new(
        "a key where a certificate belongs",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/ca.crt: its PEM block is `PRIVATE KEY`, expected CERTIFICATE", d.display()),
    ));
    let d = damaged(&bed, &tmp, "encrypted-key", |d| {
        let k = d.join("service-accounts.key");
        let st =
            Command::new("openssl").args(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:secret", "-in"]).arg(&k).arg("-out").arg(d.join("enc.key")).status().unwrap();
        assert!(st.success());
        std::fs::rename(d.join("enc.key"), &k).unwrap();
    });
    cases.push(Case::new(
        "an encrypted key",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/service-accounts.key: the key is encrypted", d.display()),
    ));
    let d = damaged(&bed, &tmp, "expired", |d| testbed::pki::reissue_apiserver_expired(d, bed.address.into()).unwrap());
    cases.push(Case::new(
        "an expired serving certificate",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/kube-api-server.crt expired on", d.display()),
    ));
    let d = damaged(&bed, &tmp, "not-base64", |d| testbed::pki::write_encryption_config(d, "c2VjcmV0!!not-base64").unwrap());
    cases.push(Case::new(
        "an encryption key that is not base64",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!(
            "error: {}/encryption-config.yaml: resources[0].providers[0].aescbc.keys[0].secret: secrets must be base64 encoded: it is not valid base64 at offset 8",
            d.display()
        ),
    ));
    let d = damaged(&bed, &tmp, "short-key", |d| testbed::pki::write_encryption_config(d, "c2hvcnRrZXkxMA==").unwrap());
    cases.push(Case::new(
        "an encryption key of 10 bytes",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/encryption-config.yaml: resources[0].providers[0].aescbc.keys[0].secret: decodes to 10 bytes; aescbc takes 16, 24, 32 bytes", d.display()),
    ));
    let client_only = damaged(&bed, &tmp, "no-server-auth", |d| testbed::pki::reissue_apiserver_for(d, bed.address.into(), vec![testbed::pki::Purpose::ClientAuth], 365).unwrap());
    cases.push(Case::new(
        "a serving certificate without serverAuth",
        None,
        bootstrap_with(with_assets(&bed, "root", &client_only), vec![]),
        2,
        "error: kube-api-server.crt does not allow serverAuth (its extendedKeyUsage): reissue it with extendedKeyUsage serverAuth [cert-purpose]".into(),
    ));
    let d = damaged(&bed, &tmp, "scheduler-user", |d| testbed::pki::reissue_kubeconfig(d, "kube-scheduler", "admin").unwrap());
    cases.push(Case::new(
        "a scheduler kubeconfig for another user",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!(
            "error: {}/kube-scheduler.kubeconfig: its client certificate is for user `admin`; Kubernetes grants kube-scheduler its permissions as `system:kube-scheduler`",
            d.display()
        ),
    ));
    cases.push(Case::new(
        "a preflight check that may not be ignored",
        None,
        bootstrap_with(plus(with_assets(&bed, "root", &client_only), &["--ignore-preflight-errors", "cert-purpose,arch"]), vec![]),
        2,
        "error: --ignore-preflight-errors: `arch` cannot be ignored".into(),
    ));
    cases.push(Case::new(
        "an unknown preflight check",
        None,
        bootstrap_with(plus(with_assets(&bed, "root", &client_only), &["--ignore-preflight-errors=cert-porpose"]), vec![]),
        2,
        "error: --ignore-preflight-errors: no preflight check `cert-porpose`".into(),
    ));
    let d = damaged(&bed, &tmp, "bad-encryption", |d| std::fs::write(d.join("encryption-config.yaml"), "kind: Secret\nsecret: c2VjcmV0c2VjcmV0c2VjcmV0\n").unwrap());
    cases.push(Case::new(
        "an encryption config of the wrong kind",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/encryption-config.yaml: its kind is not EncryptionConfiguration", d.display()),
    ));
    let d = damaged(&bed, &tmp, "broken-encryption", |d| {
        std::fs::write(d.join("encryption-config.yaml"), "kind: EncryptionConfiguration\nresources: [\n  secret: c2VjcmV0c2VjcmV0c2VjcmV0\n").unwrap()
    });
    cases.push(Case::new(
        "an encryption config that is not YAML",
        None,
        bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        2,
        format!("error: {}/encryption-config.yaml: not YAML: line", d.display()),
    ));

    // ---- overrides that would write more than a flag value (the second report)
    let evil = tmp.join("evil.yaml");
    std::fs::write(&evil, "kube-scheduler:\n  v: \"2\\0StandardInput=data\\0StandardInputData=ZWNobyBwd25lZAo=\\0ExecStartPre=/bin/sh\"\n").unwrap();
    cases.push(Case::new(
        "--config value with NUL",
        None,
        bootstrap_with(plus(base(), &["--config", evil.to_str().unwrap()]), vec![]),
        2,
        format!("error: --config {}: kube-scheduler.v: the value holds the control character \\u{{0}}", evil.display()),
    ));
    cases.push(Case::new(
        "--set value with a newline",
        None,
        bootstrap_with(plus(base(), &["--set", "kube-apiserver.v=2\nX=1"]), vec![]),
        2,
        "kube-apiserver.v: the value holds the control character \\u{a}".into(),
    ));
    cases.push(Case::new(
        "--set value with a carriage return",
        None,
        bootstrap_with(plus(base(), &["--set", "kube-apiserver.v=2\rX=1"]), vec![]),
        2,
        "kube-apiserver.v: the value holds the control character \\u{d}".into(),
    ));
    cases.push(Case::new(
        "--set component with an escape sequence",
        None,
        bootstrap_with(plus(base(), &["--set", "kube-\x1b[2Japiserver.v=3"]), vec![]),
        2,
        "the component holds the control character \\u{1b}".into(),
    ));
    cases.push(Case::new(
        "cpcheck --set value with NUL",
        None,
        cpcheck_with(plus(bed.cpcheck_args(), &["--config", evil.to_str().unwrap()])),
        2,
        "kube-scheduler.v: the value holds the control character \\u{0}".into(),
    ));

    // ---- local files that are not files
    let d = damaged(&bed, &tmp, "fifo", |d| mkfifo(&d.join("ca.crt")));
    cases.push(Case {
        name: "a FIFO asset",
        setup: None,
        run: bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        code: 2,
        line: format!("error: asset {}/ca.crt is a FIFO, not a regular file", d.display()),
        within: fast,
    });
    let d = damaged(&bed, &tmp, "devzero", |d| {
        let p = d.join("downloads/client/kubectl");
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    });
    cases.push(Case {
        name: "an asset linked to /dev/zero",
        setup: None,
        run: bootstrap_with(with_assets(&bed, "root", &d), vec![]),
        code: 2,
        line: format!("error: asset {}/downloads/client/kubectl is a character device, not a regular file", d.display()),
        within: fast,
    });
    let fifo = tmp.join("kubeconfig.fifo");
    mkfifo(&fifo);
    cases.push(Case {
        name: "--kubeconfig is a FIFO",
        setup: None,
        run: bootstrap_with(plus(base(), &["--kubeconfig", fifo.to_str().unwrap()]), vec![]),
        code: 2,
        line: format!("--kubeconfig {}: is a FIFO, not a regular file", fifo.display()),
        within: fast,
    });

    // ---- the kubeconfig that will be used, whichever selects it
    let other = tmp.join("other-pki");
    testbed::pki::generate(&other, &[("server".into(), bed.address.into())]).unwrap();
    let foreign = other.join("admin.kubeconfig").display().to_string();
    cases.push(Case::new(
        "--kubeconfig of another cluster",
        None,
        bootstrap_with(plus(base(), &["--kubeconfig", &foreign]), vec![]),
        2,
        format!("error: the admin kubeconfig (--kubeconfig {foreign}): its CA does not verify the apiserver's serving certificate"),
    ));
    cases.push(Case::new(
        "KUBECONFIG of another cluster",
        None,
        bootstrap_with(base(), vec![("KUBECONFIG", foreign.clone())]),
        2,
        format!("error: the admin kubeconfig ($KUBECONFIG ({foreign})): its CA does not verify the apiserver's serving certificate"),
    ));

    // ---- the server: what preflight refuses (nothing changes)
    cases.push(Case::new(
        "a destination that is a directory",
        Some(("mv /var/lib/kubernetes/ca.crt /root/ca.crt && mkdir /var/lib/kubernetes/ca.crt", "rmdir /var/lib/kubernetes/ca.crt && mv /root/ca.crt /var/lib/kubernetes/ca.crt")),
        bootstrap_with(base(), vec![]),
        2,
        "error: /var/lib/kubernetes/ca.crt on the server is a directory, not a regular file".into(),
    ));
    cases.push(Case::new(
        "a destination that is a symlink",
        Some(("mv /usr/local/bin/kubectl /root/kubectl && ln -s /bin/true /usr/local/bin/kubectl", "rm /usr/local/bin/kubectl && mv /root/kubectl /usr/local/bin/kubectl")),
        bootstrap_with(base(), vec![]),
        2,
        "error: /usr/local/bin/kubectl on the server is a symbolic link, not a regular file".into(),
    ));
    cases.push(Case::new(
        "a shared directory writable by others",
        Some(("chmod 0777 /usr/local/bin", "chmod 0755 /usr/local/bin")),
        bootstrap_with(base(), vec![]),
        2,
        "error: /usr/local/bin/ is 0777 root:root: writable by other users".into(),
    ));
    cases.push(Case::new("a drop-in under /etc", Some((
        "mkdir -p /etc/systemd/system/kube-apiserver.service.d && printf '[Service]\\nEnvironment=X=1\\n' > /etc/systemd/system/kube-apiserver.service.d/override.conf && systemctl daemon-reload",
        "rm -r /etc/systemd/system/kube-apiserver.service.d && systemctl daemon-reload")),
        bootstrap_with(base(), vec![]), 2, "error: kube-apiserver.service has drop-in(s) that change it: /etc/systemd/system/kube-apiserver.service.d/override.conf".into()));
    cases.push(Case::new("a drop-in under /run", Some((
        "mkdir -p /run/systemd/system/kube-scheduler.service.d && printf '[Service]\\nEnvironment=X=1\\n' > /run/systemd/system/kube-scheduler.service.d/x.conf && systemctl daemon-reload",
        "rm -r /run/systemd/system/kube-scheduler.service.d && systemctl daemon-reload")),
        bootstrap_with(base(), vec![]), 2, "error: kube-scheduler.service has drop-in(s) that change it: /run/systemd/system/kube-scheduler.service.d/x.conf".into()));
    cases.push(Case::new(
        "a small file system at preflight",
        Some(("mount -t tmpfs -o size=64m,mode=0755 tmpfs /usr/local/bin", "umount /usr/local/bin")),
        bootstrap_with(base(), vec![]),
        2,
        "error: not enough free space on the file system of /usr/local/bin".into(),
    ));

    let mut failures = Vec::new();
    for c in &cases {
        if let Some((setup, _)) = c.setup {
            bed.ssh(setup).unwrap_or_else(|e| panic!("{}: setup: {e}", c.name));
        }
        let before = snapshot(&bed);
        let t = Instant::now();
        let out = (c.run)();
        let took = t.elapsed();
        let after = snapshot(&bed);
        if let Some((_, repair)) = c.setup {
            bed.ssh(repair).unwrap_or_else(|e| panic!("{}: repair: {e}", c.name));
        }
        let (stdout, stderr) = text(&out);
        let matching = stderr.lines().filter(|l| l.contains(&c.line)).count();
        if out.status.code() != Some(c.code) || matching != 1 {
            failures.push(format!("{}: exit {:?} (want {}), lines containing `{}`: {matching}\nstderr: {stderr}", c.name, out.status.code(), c.code, c.line));
        }
        if took > c.within {
            failures.push(format!("{}: took {took:?}", c.name));
        }
        if let Some(w) = leak(&format!("{stdout}{stderr}"), &secrets) {
            failures.push(format!("{}: a private key's body reached the output (…{w}…)", c.name));
        }
        if stderr.chars().any(|ch| ch.is_control() && ch != '\n') {
            failures.push(format!("{}: a raw control character on stderr: {stderr:?}", c.name));
        }
        if c.code == 2 && before != after {
            failures.push(format!("{}: the server changed though preflight refused", c.name));
        }
    }
    eprintln!("{} hostile inputs tried", cases.len());
    assert!(cases.len() >= 25, "the table has {} rows", cases.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Ignored, a problem is a warning: the plan goes on, the warning in -o json.
    let out = bootstrap_with(plus(with_assets(&bed, "root", &client_only), &["--ignore-preflight-errors", "cert-purpose", "--dry-run", "-o", "json"]), vec![])();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<&str> = plan["warnings"].as_array().unwrap().iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, vec!["cert-purpose"], "{stdout}");
    // A certificate that expires in 10 days is a warning, by the server's clock.
    let expiring = damaged(&bed, &tmp, "expiring", |d| {
        let both = vec![testbed::pki::Purpose::ServerAuth, testbed::pki::Purpose::ClientAuth];
        testbed::pki::reissue_apiserver_for(d, bed.address.into(), both, 10).unwrap()
    });
    let out = bootstrap_with(plus(with_assets(&bed, "root", &expiring), &["--dry-run"]), vec![])();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warned: Vec<&str> = stdout.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warned.len(), 1, "{stdout}");
    // Whole days left by the server's clock: 9 or 10, as the second the
    // certificate was issued in and the server's clock reading fall.
    let days = ["expires in 9 day(s)", "expires in 10 day(s)"];
    assert!(warned[0].contains("kube-api-server.crt expires in ") && days.iter().any(|d| warned[0].contains(d)) && warned[0].ends_with("[cert-expiring]"), "{stdout}");
    // One secret file alone changed (the scheduler's kubeconfig reissued,
    // as a renewal does): staged with its sum, placed, the scheduler
    // restarted; then the original restored the same way.
    let renewed = damaged(&bed, &tmp, "scheduler-renewed", |d| testbed::pki::reissue_kubeconfig(d, "kube-scheduler", "system:kube-scheduler").unwrap());
    for (what, args) in [("the renewed kubeconfig", with_assets(&bed, "root", &renewed)), ("the original back", server_args(&bed, "root"))] {
        let out = e2e::run_bootstrap(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success() && stdout.contains("changed: 1 file(s)") && stdout.contains("restarted: kube-scheduler"), "{what}:\n{stdout}\n{stderr}");
    }
    // And the control plane is still as it was: a plain run changes nothing.
    let out = e2e::run_bootstrap(&server_args(&bed, "root"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("nothing changed"), "{stdout}\n{stderr}");
}
