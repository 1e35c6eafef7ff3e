//! Each bad input gives its own clear line and documented exit code, and the
//! server stays byte-for-byte as it was.

use std::path::Path;
use std::process::Command;

use e2e::{damaged, run_bootstrap, server_args, snapshot, text, with_assets};

struct Case {
    name: &'static str,
    args: Vec<String>,
    code: i32,
    line: String,
}

#[test]
fn each_bad_input_is_one_clear_line_and_the_server_is_untouched() {
    let bed = e2e::bed("bad");
    let tmp = bed.dir.join("cases");
    let before = snapshot(&bed);
    let mut cases = Vec::new();

    let d = damaged(&bed, &tmp, "missing", |d| std::fs::remove_file(d.join("service-accounts.key")).unwrap());
    cases.push(Case {
        name: "missing asset",
        args: with_assets(&bed, "root", &d),
        code: 2,
        line: format!("error: missing asset {}/service-accounts.key (for /var/lib/kubernetes/service-accounts.key)", d.display()),
    });

    let d = damaged(&bed, &tmp, "mismatch", |d| std::fs::copy(d.join("service-accounts.key"), d.join("kube-api-server.key")).map(drop).unwrap());
    cases.push(Case {
        name: "key that does not match its cert",
        args: with_assets(&bed, "root", &d),
        code: 2,
        line: format!("error: {}/kube-api-server.key does not match the certificate kube-api-server.crt", d.display()),
    });

    let d = damaged(&bed, &tmp, "arch", |d| {
        let p = d.join("downloads/controller/kube-controller-manager");
        let mut b = std::fs::read(&p).unwrap();
        b[18] = 183; // e_machine = aarch64
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b).unwrap();
    });
    cases.push(Case {
        name: "binary of another architecture",
        args: with_assets(&bed, "root", &d),
        code: 2,
        line: format!("error: {}/downloads/controller/kube-controller-manager is built for linux/arm64, the server is linux/amd64", d.display()),
    });

    let d = damaged(&bed, &tmp, "sans", |d| {
        let sans = testbed::pki::apiserver_sans(bed.address.into()).into_iter().filter(|s| s != controlplane::model::SERVICE_IP).collect();
        testbed::pki::reissue_apiserver(d, sans).unwrap();
    });
    cases.push(Case {
        name: "serving cert without the service IP",
        args: with_assets(&bed, "root", &d),
        code: 2,
        line: format!(
            "error: kube-api-server.crt does not name {} (the kubernetes Service IP (first address of 10.32.0.0/24)): reissue it with that name among its subjectAltNames",
            controlplane::model::SERVICE_IP
        ),
    });

    let d = damaged(&bed, &tmp, "kubeconfig", |d| std::fs::write(d.join("kube-scheduler.kubeconfig"), "apiVersion: v1\nclusters: [\n").unwrap());
    cases.push(Case {
        name: "malformed kubeconfig",
        args: with_assets(&bed, "root", &d),
        code: 2,
        line: format!("error: {}/kube-scheduler.kubeconfig: not a kubeconfig", d.display()),
    });

    let mut a = server_args(&bed, "root");
    a[1] = format!("root@10.240.{}.3", bed.slot);
    cases.push(Case { name: "unreachable host", args: a, code: 3, line: format!("error: cannot connect to root@10.240.{}.3", bed.slot) });

    let empty = tmp.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut a = server_args(&bed, "root");
    a[5] = empty.display().to_string();
    cases.push(Case { name: "unknown host key", args: a, code: 3, line: "the server's host key is unknown or changed".into() });

    let other = tmp.join("other_key");
    testbed::run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&other)).unwrap();
    let pubkey = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let changed = tmp.join("changed_known_hosts");
    std::fs::write(&changed, format!("{} {}\n", bed.address, pubkey.split_whitespace().take(2).collect::<Vec<_>>().join(" "))).unwrap();
    let mut a = server_args(&bed, "root");
    a[5] = changed.display().to_string();
    cases.push(Case { name: "changed host key", args: a, code: 3, line: "the server's host key is unknown or changed".into() });

    cases.push(Case {
        name: "user without sudo",
        args: server_args(&bed, "nosudo"),
        code: 2,
        line: format!("error: nosudo@{}: the login user is not root and `sudo -n` is refused", bed.address),
    });

    let mut a = server_args(&bed, "root");
    a.extend(["--set".into(), "kube-apiserver.nope=1".into()]);
    cases.push(Case { name: "unknown override flag", args: a, code: 2, line: "error: --set kube-apiserver.nope=1: kube-apiserver has no flag --nope".into() });

    cases.push(Case {
        name: "assets not a directory",
        args: with_assets(&bed, "root", Path::new("/nonexistent/assets")),
        code: 2,
        line: "error: --assets /nonexistent/assets: not a directory".into(),
    });

    let mut a = server_args(&bed, "root");
    a.extend(["--kubernetes-version".into(), "latest".into()]);
    cases.push(Case { name: "malformed --kubernetes-version", args: a, code: 2, line: "error: --kubernetes-version latest: expected vMAJOR.MINOR".into() });

    let mut failures = Vec::new();
    for c in &cases {
        let out = run_bootstrap(&c.args);
        let (stdout, stderr) = text(&out);
        let matching = stderr.lines().filter(|l| l.contains(&c.line)).count();
        if out.status.code() != Some(c.code) || matching != 1 {
            failures.push(format!("{}: exit {:?} (want {}), lines matching `{}`: {matching}\nstdout: {stdout}\nstderr: {stderr}", c.name, out.status.code(), c.code, c.line));
        }
        if stderr.contains("PRIVATE KEY") || stdout.contains("PRIVATE KEY") {
            failures.push(format!("{}: a private key reached the output", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(snapshot(&bed), before, "the server must be byte-for-byte unchanged");
}

/// A reader that goes away (`| head`) ends the output, not the plugin with a
/// panic.
#[test]
fn a_closed_pipe_is_not_a_crash() {
    for (bin, args) in [("kubectl-bootstrap", vec!["manifests"]), ("kubectl-cpcheck", vec!["--list"])] {
        let mut child = Command::new(e2e::plugin(bin)).args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
        // Gone before the plugin writes a byte: its first write fails (EPIPE).
        drop(child.stdout.take());
        drop(child.stderr.take());
        let st = child.wait().unwrap();
        assert_eq!(st.code(), Some(0), "{bin} {args:?}: a closed stdout is not a crash (101 is a panic)");
    }
}

/// A jump host (-J) is checked against --known-hosts as strictly as the
/// server: reached when its key is there, refused (exit 3) when it is not.
#[test]
fn a_jump_host_is_checked_against_known_hosts_like_the_server() {
    let bed = e2e::bed("jump");
    let key_line = std::fs::read_to_string(&bed.known_hosts).unwrap();
    let hostkey: Vec<&str> = key_line.split_whitespace().skip(1).take(2).collect();
    let dir = bed.dir.join("jump");
    std::fs::create_dir_all(&dir).unwrap();
    // The server is reached as 127.0.0.1 *from the jump host* (itself).
    let both = dir.join("both");
    std::fs::write(&both, format!("{} {}\n127.0.0.1 {}\n", bed.address, hostkey.join(" "), hostkey.join(" "))).unwrap();
    let target_only = dir.join("target_only");
    std::fs::write(&target_only, format!("127.0.0.1 {}\n", hostkey.join(" "))).unwrap();
    let args = |kh: &std::path::Path| -> Vec<String> {
        vec![
            "server".into(),
            "root@127.0.0.1".into(),
            "-J".into(),
            format!("root@{}", bed.address),
            "-i".into(),
            bed.key.display().to_string(),
            "--known-hosts".into(),
            kh.display().to_string(),
            "--assets".into(),
            bed.assets.display().to_string(),
            "--dry-run".into(),
        ]
    };
    let out = e2e::run_bootstrap(&args(&both));
    assert!(out.status.success(), "through the jump host: {:?}", text(&out));
    let out = e2e::run_bootstrap(&args(&target_only));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("error: cannot connect to root@127.0.0.1"), "{stderr}");

    // The same jump host named only in an ssh_config (ProxyJump, -F): its
    // key is checked as strictly, against the same known_hosts.
    let cfg = dir.join("ssh_config");
    std::fs::write(&cfg, format!("Host target\n  HostName 127.0.0.1\n  User root\n  ProxyJump root@{}\n  StrictHostKeyChecking no\n", bed.address)).unwrap();
    let via_config = |kh: &std::path::Path| -> Vec<String> {
        let mut a = args(kh);
        let j = a.iter().position(|x| x == "-J").unwrap();
        a.drain(j..j + 2);
        a[1] = "target".into();
        a.extend(["-F".into(), cfg.display().to_string(), "-v".into()]);
        a
    };
    let out = e2e::run_bootstrap(&via_config(&both));
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "through the ssh_config's jump host: {stderr}");
    // As `ssh -G` resolves it (OpenSSH brackets the address).
    assert!(stderr.contains(&format!("ProxyJump root@[{}]", bed.address)) || stderr.contains(&format!("ProxyJump root@{}\n", bed.address)), "-v names the route: {stderr}");
    let out = e2e::run_bootstrap(&via_config(&target_only));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "an unknown jump host key is refused though the ssh_config says StrictHostKeyChecking no: {stderr}");
    assert!(stderr.contains("error: cannot connect to target"), "{stderr}");
}
