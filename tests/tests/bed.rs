//! The bed is real before the plugins use it: systemd boots, etcd answers,
//! and the real kube-apiserver, installed by hand with the manifest's unit,
//! serves /version over HTTPS to the admin client certificate. Then the bed
//! goes down and nothing is left behind.

use std::process::Command;
use std::time::{Duration, Instant};

use controlplane::model::{self, Source, FILES};

#[test]
fn bed_runs_the_real_apiserver_and_leaves_nothing_behind() {
    let mut bed = e2e::bed("bedreal");

    assert_eq!(bed.ssh("cat /proc/1/comm").unwrap().trim(), "systemd", "PID 1 is systemd");
    // Booted: running, or degraded only by a unit the bed does not stand on
    // (Bed::up has then warned with that unit's journal).
    let state = bed.ssh("systemctl is-system-running; true").unwrap();
    let failed = bed.failed_units();
    match state.trim() {
        "running" => assert!(failed.is_empty(), "running with failed units: {failed:?}"),
        "degraded" => assert!(testbed::degraded_but_usable("degraded", &failed), "degraded by {failed:?}"),
        other => panic!("the server is `{other}`, failed units: {failed:?}"),
    }
    for unit in ["ssh", "etcd"] {
        assert_eq!(bed.ssh(&format!("systemctl is-active {unit}")).unwrap().trim(), "active", "{unit}");
    }
    bed.wait_etcd(Duration::from_secs(30)).expect("etcd answers /health");
    assert_eq!(bed.ssh_as("deploy", "sudo -n id -u").unwrap().trim(), "0", "deploy has passwordless sudo");
    assert!(bed.ssh_as("nosudo", "sudo -n true").is_err(), "nosudo has no sudo");
    let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(fwd.trim(), "0", "the bed must not turn on forwarding");

    // Install what the apiserver needs by hand (plain scp), where the layout says.
    let api = model::unit("kube-apiserver").unwrap();
    bed.ssh("mkdir -p /var/lib/kubernetes /etc/kubernetes/config").unwrap();
    for f in FILES.iter().filter(|f| f.restarts.contains(&api.component)) {
        match f.source {
            Source::Asset(candidates) => {
                let local = candidates.iter().map(|c| bed.assets.join(c)).find(|p| p.exists()).expect("asset present");
                e2e::scp(&bed, &local, f.dest);
            }
            Source::Manifest { text, .. } => {
                let tmp = bed.assets.join("upload.tmp");
                std::fs::write(&tmp, text).unwrap();
                e2e::scp(&bed, &tmp, f.dest);
            }
        }
    }
    bed.ssh(&format!("systemctl daemon-reload && systemctl start {}", api.file_name)).unwrap();

    // /version over HTTPS from this machine, verified against ca.crt, with the
    // admin client certificate, at the server's own address (a SAN).
    let server = format!("https://{}:{}", bed.address, api.serving_port);
    let deadline = Instant::now() + Duration::from_secs(120);
    let version = loop {
        let out =
            Command::new("kubectl").args(["--kubeconfig"]).arg(&bed.kubeconfig).args(["--server", &server, "get", "--raw", "/version", "--request-timeout=5s"]).output().unwrap();
        if out.status.success() {
            break serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
        }
        if Instant::now() > deadline {
            let journal = bed.ssh("journalctl -u kube-apiserver --no-pager -n 30").unwrap_or_default();
            panic!("kube-apiserver did not answer /version: {}\n{journal}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(version["gitVersion"], "v1.20.2");
    assert_eq!(bed.ssh("systemctl is-active kube-apiserver").unwrap().trim(), "active");

    bed.teardown();
    let left = bed.leftovers();
    assert!(left.is_empty(), "bed down left: {left:?}");
}

#[test]
fn two_beds_run_side_by_side_on_their_own_addresses() {
    let a = e2e::bed("beda");
    let b = e2e::bed("bedb");
    assert_ne!(a.address, b.address);
    for bed in [&a, &b] {
        let ip = bed.ssh("ip -4 -o addr show scope global | awk '{print $4}'").unwrap();
        assert_eq!(ip.trim(), format!("{}/24", bed.address));
        let health = bed.wait_etcd(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{}: {e:#}", bed.address));
        assert!(health.contains("\"health\":\"true\""), "{health}");
    }
    // A host key of another bed is refused: strict checking is real.
    let out = Command::new("ssh")
        .args(a.ssh_options().iter().map(|o| o.replace(&a.known_hosts.display().to_string(), &b.known_hosts.display().to_string())))
        .arg(a.dest())
        .arg("true")
        .output()
        .unwrap();
    assert!(!out.status.success(), "ssh must refuse a host key it does not know");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"));
}
