//! A highly available plane on a real bed of three servers (one bridge,
//! a stacked etcd cluster, each server its own hostname): bootstrap from
//! nothing, a no-op re-run, a rolling change watched by a /readyz poller,
//! a failing unit that stops the rollout, and before any of it, preflight
//! that changes nothing anywhere; cpcheck on the healthy plane and on one
//! broken three ways.

use std::process::Command;

use e2e::report::{self, ClusterPlan, ClusterRun, Cpcheck};
use e2e::*;

/// How many of the servers' apiservers answer /readyz `ok` now (anonymous
/// /readyz, as a load balancer's health check asks).
fn ready_count(c: &Cluster) -> usize {
    let kids: Vec<_> = c.servers.iter().map(|s| readyz(s.address)).collect();
    ready_counts(&[kids.into_iter().map(|k| if k.wait_with_output().is_ok_and(|o| o.stdout.starts_with(b"ok\n")) { Ready::Yes } else { Ready::No(0) }).collect()])[0]
}

/// Every server's (kube-apiserver ActiveEnterTimestampMonotonic, NRestarts).
fn apiserver_starts(c: &Cluster) -> Vec<(u64, u64)> {
    c.servers.iter().map(|s| active_since(s, "kube-apiserver")).collect()
}

fn with(args: &[String], more: &[&str]) -> Vec<String> {
    let mut v = args.to_vec();
    v.extend(more.iter().map(|s| s.to_string()));
    v
}

#[test]
fn ha_from_nothing_then_a_no_op_a_rolling_change_and_a_rollout_stopped_by_a_failing_unit() {
    let c = cluster("ha", 3);
    let args = c.bootstrap_args("root");
    // From nothing: every server at once.
    let out = run_bootstrap(&with(&args, &["-o", "json"]));
    assert!(out.status.success(), "first deploy: {:?}", text(&out));
    let v: ClusterRun = report::parse(&out.stdout);
    assert_eq!((v.kind.as_str(), v.rollout.as_str()), ("ClusterResult", "first-deploy"));
    assert_eq!(v.summary.changed_servers.len(), 3);
    for s in &c.servers {
        let st = s.ssh("systemctl is-active kube-apiserver kube-controller-manager kube-scheduler").unwrap();
        assert_eq!(st.split_whitespace().collect::<Vec<_>>(), ["active", "active", "active"], "{}\n{}", s.dest(), plane_journals(s));
    }
    let kubectl = |server: &Bed, a: &[&str]| {
        let o = Command::new("kubectl").arg("--kubeconfig").arg(&c.kubeconfig).arg("--server").arg(format!("https://{}:6443", server.address)).args(a).output().expect("kubectl");
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let eps = kubectl(&c.servers[0], &["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].addresses[*].ip}"]);
    let mut eps: Vec<&str> = eps.split_whitespace().collect();
    eps.sort();
    let mut want: Vec<String> = c.servers.iter().map(|s| s.address.to_string()).collect();
    want.sort();
    assert_eq!(eps, want, "the kubernetes Endpoints list the three servers");
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let holder = kubectl(&c.servers[1], &["-n", "kube-system", "get", "lease", lease, "-o", "jsonpath={.spec.holderIdentity}"]);
        let hosts: Vec<String> = c.servers.iter().map(|s| s.hostname()).collect();
        assert_eq!(hosts.iter().filter(|h| holder.starts_with(&format!("{h}_"))).count(), 1, "{lease} held by exactly one server: {holder}");
    }
    for s in &c.servers {
        assert_eq!(kubectl(s, &["auth", "can-i", "get", "nodes", "--subresource=proxy", "--as=kubernetes"]), "yes", "through {}", s.dest());
    }

    // A re-run changes nothing anywhere and restarts nothing.
    let before = apiserver_starts(&c);
    let snaps: Vec<String> = c.servers.iter().map(snapshot).collect();
    let out = run_bootstrap(&with(&args, &["-o", "json"]));
    assert!(out.status.success(), "re-run: {:?}", text(&out));
    let v: ClusterRun = report::parse(&out.stdout);
    assert!(!v.changed, "{v:#?}");
    assert_eq!(apiserver_starts(&c), before, "{}", c.servers.iter().map(plane_journals).collect::<Vec<_>>().join("\n"));
    assert_eq!(c.servers.iter().map(snapshot).collect::<Vec<_>>(), snaps, "the re-run changed a server");

    // Two runs naming the same servers differently (user@IP, ssh://user@IP:22)
    // and in opposite orders, started together: locks are taken all or
    // nothing, so neither holds one while waiting for the other's.
    let mut reversed: Vec<String> = vec!["server".into()];
    reversed.extend(c.servers.iter().rev().map(|s| format!("ssh://root@{}:22", s.address)));
    reversed.extend(args[1 + c.servers.len()..].iter().cloned());
    let timeout = ["--timeout", "60s"];
    let a = Command::new(plugin("kubectl-bootstrap")).args(with(&args, &timeout)).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let b = Command::new(plugin("kubectl-bootstrap")).args(with(&reversed, &timeout)).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "the run in server order: {:?}", text(&a));
    assert!(b.status.success(), "the run in the opposite order: {:?}", text(&b));
    eprintln!("attack: two runs over the 3 servers, named user@IP and ssh://user@IP:22, in opposite orders, started together: both exit 0 (locks all or nothing)");

    // A rolling flag change while every server's /readyz is polled every 100 ms.
    let poller = ReadyPoller::start(c.servers.iter().map(|s| s.address).collect());
    let out = run_bootstrap(&with(&args, &["--set", "kube-apiserver.v=3", "-o", "json"]));
    let answers = poller.stop();
    let samples = ready_counts(&answers);
    assert!(out.status.success(), "rolling change: {:?}", text(&out));
    let v: ClusterRun = report::parse(&out.stdout);
    assert_eq!(v.rollout, "rolling");
    // One wave per server, in order, each alone.
    let alone: Vec<usize> = v.waves.iter().filter(|w| w.part == "pass" && w.servers.len() == 1).map(|w| w.servers[0]).collect();
    assert_eq!(alone, [0, 1, 2], "{:#?}", v.waves);
    let min = *samples.iter().min().unwrap();
    let dips = samples.windows(2).filter(|w| w[0] == 3 && w[1] < 3).count();
    eprintln!("rolling change: {} /readyz samples every 100 ms, minimum ready {min} of 3, {dips} dips", samples.len());
    let low: Vec<&Vec<Ready>> = answers.iter().filter(|a| a.iter().filter(|r| **r == Ready::Yes).count() < 2).collect();
    assert!(min >= 2, "at some sample fewer than N-1 apiservers were ready: {samples:?}; those samples: {low:?}");
    assert!(dips >= 3, "each server's restart shows as its own dip: {samples:?}");
    let after = apiserver_starts(&c);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(restarted_on_request(*b, *a), "server {} restarted once, on request\n{}", i + 1, plane_journals(&c.servers[i]));
    }
    assert_eq!(ready_count(&c), 3);

    // A unit that will not start stops the rollout at the first server.
    let snaps: Vec<String> = c.servers.iter().map(snapshot).collect();
    let out = run_bootstrap(&with(&args, &["--set", "kube-apiserver.v=not-a-number", "--timeout", "90s"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let first = c.servers[0].dest();
    assert!(err.contains(&format!("the rollout stopped at {first}")), "{err}");
    assert!(err.contains("kube-apiserver") && err.contains("Active:"), "names the unit with its status: {err}");
    assert!(err.contains(&format!("not reached, as they were: {}, {}", c.servers[1].dest(), c.servers[2].dest())), "{err}");
    assert_eq!(snapshot(&c.servers[1]), snaps[1], "server 2 was not touched (no temp left either)");
    assert_eq!(snapshot(&c.servers[2]), snaps[2], "server 3 was not touched (no temp left either)");
    // Fixed input: the re-run finishes the rollout (server 1 back on the good unit).
    let out = run_bootstrap(&with(&args, &["--set", "kube-apiserver.v=3", "-o", "json"]));
    assert!(out.status.success(), "the fixed re-run: {:?}", text(&out));
    let v: ClusterRun = report::parse(&out.stdout);
    assert_eq!(v.summary.changed_servers, std::slice::from_ref(&first), "{v:#?}");
    assert_eq!(ready_count(&c), 3);
    let units: Vec<String> = c.servers.iter().map(|s| s.ssh("sha256sum /etc/systemd/system/kube-apiserver.service").unwrap()).collect();
    assert!(units.windows(2).all(|w| w[0] == w[1]), "{units:?}");

    // Every leaf renewed on the jumpbox, then rolled while /readyz is polled:
    // one server at a time, N-1 ready throughout, every apiserver serving
    // the new certificate after, no restart owed anywhere.
    let renewed = c.dir.join("renewed");
    testbed::pki::copy_assets(&c.assets, &renewed).unwrap();
    let renew = |extra: &[&str]| Command::new(plugin("kubectl-bootstrap")).args(["certs", "renew", "--assets"]).arg(&renewed).args(extra).output().unwrap();
    let old_api = controlplane::pki::Cert::from_pem(&std::fs::read(renewed.join("kube-api-server.crt")).unwrap()).unwrap();
    let out = renew(&[]);
    assert!(out.status.success(), "renew: {:?}", text(&out));
    let new_api = controlplane::pki::Cert::from_pem(&std::fs::read(renewed.join("kube-api-server.crt")).unwrap()).unwrap();
    assert_ne!(new_api.serial(), old_api.serial());
    let backup: Vec<_> = std::fs::read_dir(renewed.join(".backup")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(backup.len(), 1);
    let kept = controlplane::pki::Cert::from_pem(&std::fs::read(backup[0].join("kube-api-server.crt")).unwrap()).unwrap();
    assert_eq!(kept.serial(), old_api.serial(), "the old certificate is in the backup");
    let mut renewed_args = args.clone();
    let i = renewed_args.iter().position(|a| a == "--assets").unwrap();
    renewed_args[i + 1] = renewed.display().to_string();
    let poller = ReadyPoller::start(c.servers.iter().map(|s| s.address).collect());
    let t = std::time::Instant::now();
    let out = run_bootstrap(&with(&renewed_args, &["--set", "kube-apiserver.v=3", "-o", "json"]));
    let roll = t.elapsed();
    let answers = poller.stop();
    let samples = ready_counts(&answers);
    assert!(out.status.success(), "renew-and-roll: {:?}", text(&out));
    let v: ClusterRun = report::parse(&out.stdout);
    assert_eq!(v.rollout, "rolling");
    // Apiservers first (one pass), then their clients (another), each pass one server at a time, in order.
    let passes: Vec<(Option<u32>, Vec<usize>)> = v.waves.iter().filter(|w| w.part == "pass").map(|w| (w.pass, w.servers.clone())).collect();
    assert_eq!(passes.iter().map(|p| p.1.clone()).collect::<Vec<_>>(), [[0], [1], [2], [0], [1], [2]].map(|s| s.to_vec()), "{:#?}", v.waves);
    assert_eq!(passes.iter().map(|p| p.0).collect::<Vec<_>>(), [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)], "{:#?}", v.waves);
    let min = *samples.iter().min().unwrap();
    eprintln!("renew-and-roll: {:.1}s, {} /readyz samples every 100 ms, minimum ready {min} of 3", roll.as_secs_f64(), samples.len());
    assert!(min >= 2, "at some sample fewer than N-1 apiservers were ready: {samples:?}");
    let mut cp = c.cpcheck_args();
    cp.extend(["--only", "certs", "-o", "json"].map(String::from));
    let r: Cpcheck = report::parse(&cpcheck(&cp).stdout);
    for s in &c.servers {
        let served = r.row("certs.served", Some(&s.dest()));
        assert!(served.status == "PASS" && served.detail.contains(&format!("serial {}", new_api.serial())), "{}: {served:#?}", s.dest());
        for comp in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let row = r.row(&format!("certs.restart.{comp}"), Some(&s.dest()));
            assert_eq!(row.status, "PASS", "{}: no restart owed: {row:#?}", s.dest());
        }
    }
    // A second dry run lists the new expiries as the current ones.
    let out = renew(&["--dry-run", "-o", "json"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let api = j["renewed"].as_array().unwrap().iter().find(|r| r["name"] == "kube-api-server").unwrap().clone();
    assert_eq!(api["oldExpires"].as_str(), Some(controlplane::pki::date(new_api.validity().1).as_str()), "{api}");
}

#[test]
fn nothing_changes_anywhere_unless_every_server_passes_and_cpcheck_names_the_broken_server() {
    let c = cluster("hapre", 3);
    let args = c.bootstrap_args("root");
    let snaps = |c: &Cluster| c.servers.iter().map(snapshot).collect::<Vec<_>>();
    let clean = snaps(&c);
    // A server that cannot be reached: exit 3, named, nothing changed on the others.
    c.servers[2].link(false).unwrap();
    let out = run_bootstrap(&with(&args, &["--timeout", "5s"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains(&format!("{}: cannot connect to {}", c.servers[2].dest(), c.servers[2].dest())), "{err}");
    assert!(err.contains("nothing on any server was changed"), "{err}");
    c.servers[2].link(true).unwrap();
    // A server whose preflight fails: exit 2, named, nothing changed anywhere.
    c.servers[1].ssh("mkdir -p /var/lib/kubernetes/ca.crt").unwrap();
    let with_dir = snaps(&c);
    let out = run_bootstrap(&args);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("error: {}: /var/lib/kubernetes/ca.crt on the server is a directory", c.servers[1].dest())), "{err}");
    assert_eq!(snaps(&c), with_dir, "preflight changed a server");
    c.servers[1].ssh("rmdir /var/lib/kubernetes/ca.crt && rmdir /var/lib/kubernetes").unwrap();
    assert_eq!(snaps(&c), clean);
    // A dry run shows every server's plan and the order; --endpoint must be a certificate name.
    let out = run_bootstrap(&with(&args, &["--dry-run", "--endpoint", "https://lb.example.invalid:6443"]));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--endpoint https://lb.example.invalid:6443: lb.example.invalid is not a name of the serving certificate"), "{err}");
    let out = run_bootstrap(&with(&args, &["--dry-run", "-o", "json"]));
    assert!(out.status.success(), "{:?}", text(&out));
    let v: ClusterPlan = report::parse(&out.stdout);
    assert_eq!((v.kind.as_str(), v.servers.len()), ("ClusterPlan", 3));
    assert_eq!(snaps(&c), clean, "a dry run changed a server");

    let out = run_bootstrap(&args);
    assert!(out.status.success(), "bootstrap: {:?}", text(&out));
    let check = |extra: &[&str]| {
        let mut a = c.cpcheck_args();
        a.extend(extra.iter().map(|s| s.to_string()));
        cpcheck(&a)
    };
    let endpoint = format!("https://{}:6443", c.servers[1].address);
    let out = check(&["--endpoint", &endpoint]);
    assert_eq!(out.status.code(), Some(0), "a healthy HA plane: {}", redact_tail(&text(&out).0));
    let out = check(&["-o", "json", "--endpoint", &endpoint]);
    let v: Cpcheck = report::parse(&out.stdout);
    for id in ["cluster.apiservers-ready", "cluster.endpoints", "cluster.leases", "cluster.same-files", "cluster.etcd-members", "cluster.endpoint"] {
        assert_eq!(v.row(id, None).status, "PASS", "{id}");
    }
    // Host checks ran on each server, the server a field of its own.
    for s in &c.servers {
        assert_eq!(v.row("host.unit.kube-apiserver", Some(&s.dest())).server.as_deref(), Some(s.dest().as_str()));
    }

    // Broken three ways: an apiserver stopped, a unit edited, an etcd member stopped.
    c.servers[0].ssh("systemctl stop kube-apiserver").unwrap();
    c.servers[1].ssh("sed -i 's/--v=2/--v=4/' /etc/systemd/system/kube-scheduler.service").unwrap();
    c.servers[2].ssh("systemctl stop etcd").unwrap();
    let out = check(&["-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{:?}", text(&out));
    let v: Cpcheck = report::parse(&out.stdout);
    let failed = |id: &str, server: Option<&str>| -> String {
        let r = v.checks.iter().find(|r| r.id == id && r.server.as_deref() == server).unwrap_or_else(|| panic!("{id} {server:?}"));
        assert_eq!(r.status, "FAIL", "{id} on {server:?}: {r:#?}");
        r.detail.clone()
    };
    let (s1, s2, s3) = (c.servers[0].dest(), c.servers[1].dest(), c.servers[2].dest());
    assert!(failed("cluster.apiservers-ready", None).contains(&format!("{s1}: /readyz")));
    failed("host.unit.kube-apiserver", Some(&s1));
    failed("host.drift.kube-scheduler", Some(&s2));
    assert!(failed("cluster.same-files", None).contains(&format!("/etc/systemd/system/kube-scheduler.service differs on {s2}")));
    assert!(failed("cluster.etcd-members", None).contains(&format!("{s3}: etcd /health")));
    assert!(failed("cluster.endpoints", None).contains(&s1), "the stopped apiserver is not listed");
}
