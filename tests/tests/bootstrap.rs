//! `kubectl bootstrap server` on the real bed.

use std::process::Command;
use std::str::FromStr;

use controlplane::model::{Source, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, FILES, UNITS};
use e2e::report::{self, Cpcheck, Plan, Run};
use e2e::{active_since, run_bootstrap, server_args, snapshot, text};
use serde_json::Value;

fn kubectl(bed: &e2e::Bed, args: &[&str]) -> String {
    // The admin kubeconfig says https://127.0.0.1:6443; from this machine the
    // server is reached at its address (one of the serving cert's SANs).
    let out = Command::new("kubectl").arg("--kubeconfig").arg(&bed.kubeconfig).args(["--server", &format!("https://{}:6443", bed.address)]).args(args).output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn assert_converged(bed: &e2e::Bed) {
    for u in UNITS {
        let st = bed.ssh(&format!("systemctl is-enabled {0}; systemctl is-active {0}", u.file_name)).unwrap();
        assert_eq!(st.split_whitespace().collect::<Vec<_>>(), ["enabled", "active"], "{}\n{}", u.file_name, e2e::plane_journals(bed));
    }
    let v: Value = serde_json::from_str(&kubectl(bed, &["get", "--raw", "/version"])).unwrap();
    assert_eq!(v["gitVersion"], "v1.20.2");
    // RBAC with exactly the manifests' rules and subjects.
    let role: Value = serde_json::from_str(&kubectl(bed, &["get", "clusterrole", CLUSTER_ROLES[0].name, "-o", "json"])).unwrap();
    let rule = &role["rules"][0];
    let resources: Vec<&str> = rule["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(resources, CLUSTER_ROLES[0].rules[0].resources);
    assert_eq!(rule["verbs"][0], "*");
    let b: Value = serde_json::from_str(&kubectl(bed, &["get", "clusterrolebinding", CLUSTER_ROLE_BINDINGS[0].name, "-o", "json"])).unwrap();
    assert_eq!(b["subjects"][0]["name"], CLUSTER_ROLE_BINDINGS[0].subjects[0].name);
    assert_eq!(b["roleRef"]["name"], CLUSTER_ROLES[0].name);
    let can = kubectl(bed, &["auth", "can-i", "get", "nodes", "--subresource=proxy", "--as=kubernetes"]);
    assert_eq!(can.trim(), "yes");
    // Every file at its path with its mode, owner and bytes.
    let listing = bed.ssh(&format!("stat -c '%n %a %U:%G' {}", FILES.iter().map(|f| f.dest).collect::<Vec<_>>().join(" "))).unwrap();
    for f in FILES {
        assert!(listing.contains(&format!("{} {:o} root:root", f.dest, f.mode)), "{} mode/owner:\n{listing}", f.dest);
        if let Source::Asset(c) = f.source {
            let local = c.iter().map(|c| bed.assets.join(c)).find(|p| p.exists()).unwrap();
            let want = controlplane::local::files::sha256_hex(&std::fs::read(local).unwrap());
            let got = bed.ssh(&format!("sha256sum {}", f.dest)).unwrap();
            assert!(got.starts_with(&want), "{} differs", f.dest);
        }
    }
}

#[test]
fn from_nothing_then_noop_then_one_flag_changed() {
    let bed = e2e::bed("boot");
    let args = server_args(&bed, "root");

    // --dry-run on an empty server lists exactly what the real run then does, and changes nothing.
    let before = snapshot(&bed);
    let mut dry = args.clone();
    dry.extend(["--dry-run".into(), "-o".into(), "json".into()]);
    let out = run_bootstrap(&dry);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(snapshot(&bed), before, "--dry-run must change nothing");
    let planned: Plan = report::parse(&out.stdout);
    let planned_uploads: Vec<String> = planned.actions.iter().filter(|a| a.action == "stage").flat_map(|a| a.staged()).map(|f| f.dest).collect();
    assert_eq!(planned_uploads.len(), FILES.len());

    let mut json = args.clone();
    json.extend(["-o".into(), "json".into()]);
    let out = run_bootstrap(&json);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "first run failed:\n{stderr}");
    let first: Run = report::parse(stdout.as_bytes());
    assert_eq!(first.uploaded, planned_uploads, "the dry run listed exactly what the run did");
    let rbac: Vec<&str> = first.rbac.iter().map(|r| r.result.as_str()).collect();
    assert_eq!(rbac, ["created", "created"]);
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"), "no secret in any output");
    assert_converged(&bed);

    // Nothing changed: 0 bytes, no restart, says so.
    let since: Vec<(u64, u64)> = UNITS.iter().map(|u| active_since(&bed, u.file_name)).collect();
    let out = run_bootstrap(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
    let out = run_bootstrap(&json);
    let again: Run = report::parse(&out.stdout);
    assert_eq!((again.bytes_sent, again.changed), (0, false));
    let now: Vec<(u64, u64)> = UNITS.iter().map(|u| active_since(&bed, u.file_name)).collect();
    assert_eq!(since, now, "a no-op run restarts nothing\n{}", e2e::plane_journals(&bed));

    // One flag: only the apiserver's unit goes up, daemon-reload, only it restarts.
    let mut set = json.clone();
    set.extend(["--set".into(), "kube-apiserver.v=3".into()]);
    let out = run_bootstrap(&set);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let r: Run = report::parse(stdout.as_bytes());
    assert_eq!(r.uploaded, ["/etc/systemd/system/kube-apiserver.service"]);
    assert_eq!(r.restarted, ["kube-apiserver.service"]);
    assert!(stderr.contains("systemctl daemon-reload"), "{stderr}");
    let after: Vec<(u64, u64)> = UNITS.iter().map(|u| active_since(&bed, u.file_name)).collect();
    assert!(e2e::restarted_on_request(since[0], after[0]), "the apiserver was restarted: {since:?} → {after:?}\n{}", e2e::plane_journals(&bed));
    // Its clients on the server are stopped before and started after its
    // restart (their watches would hold its shutdown for up to a minute);
    // they are never restarted on their own, and the plan says why.
    let others: Vec<&str> = UNITS[1..].iter().map(|u| u.file_name).collect();
    let stop = format!("systemctl stop {} (their watches would hold kube-apiserver.service's shutdown", others.join(" "));
    let order: Vec<usize> = [stop.as_str(), "systemctl restart kube-apiserver.service", &format!("systemctl start {}", others[0]), &format!("systemctl start {}", others[1])]
        .iter()
        .map(|l| stderr.find(l).unwrap_or_else(|| panic!("`{l}` missing:\n{stderr}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "stop, restart, start in that order:\n{stderr}");
    for i in 1..UNITS.len() {
        assert_ne!(since[i].0, after[i].0, "{} was started again\n{}", UNITS[i].file_name, e2e::plane_journals(&bed));
        assert!(!stderr.contains(&format!("systemctl restart {}", UNITS[i].file_name)), "{stderr}");
    }
    assert!(bed.ssh("systemctl show -p ExecStart kube-apiserver").unwrap().contains("--v=3"));
    assert!(r.warnings.is_empty(), "nothing exited on its own during the run: {:#?}\n{}", r.warnings, e2e::plane_journals(&bed));

    // A component whose process exits while the run waits (here the
    // controller-manager, killed; the change is the scheduler's): the run
    // succeeds once the plane is healthy, and says so, with the journal's
    // own words, in text and JSON; cpcheck shows the restart the same way.
    let mut now_desired = args.clone();
    now_desired.extend(["--set".into(), "kube-apiserver.v=3".into(), "--set".into(), "kube-scheduler.v=3".into()]);
    let mut set = now_desired.clone();
    set.extend(["-o".into(), "json".into()]);
    let child = Command::new(e2e::plugin("kubectl-bootstrap")).args(&set).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let killer = std::thread::spawn({
        let (opts, dest) = (bed.ssh_options(), bed.dest());
        move || {
            // Once the scheduler has been restarted (its new pid), kill the controller-manager.
            Command::new("ssh")
                .args(opts)
                .arg(dest)
                .arg("old=$(systemctl show -p MainPID --value kube-scheduler); for i in $(seq 600); do n=$(systemctl show -p MainPID --value kube-scheduler); if [ \"$n\" != \"$old\" ] && [ \"$n\" != 0 ]; then kill -KILL $(systemctl show -p MainPID --value kube-controller-manager); exit 0; fi; sleep 0.05; done; exit 1")
                .status()
                .unwrap()
                .success()
        }
    });
    let out = child.wait_with_output().unwrap();
    assert!(killer.join().unwrap(), "the scheduler was never restarted");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let r: Run = report::parse(stdout.as_bytes());
    let w = &r.warnings;
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].what.starts_with("kube-controller-manager.service"), "{w:#?}");
    assert!(w[0].journal.iter().any(|l| l.contains("kube-controller-manager.service: Main process exited, code=killed, status=9/KILL")), "{w:#?}");
    assert!(stderr.contains("  warning: kube-controller-manager.service"), "{stderr}");
    bed.ssh("for i in $(seq 100); do systemctl is-active -q kube-controller-manager && exit 0; sleep 0.2; done; exit 1").expect("the controller-manager is started again");
    let out = run_bootstrap(&now_desired);
    let (stdout, _) = text(&out);
    assert!(out.status.success() && stdout.contains("nothing changed") && !stdout.contains("warning:"), "a no-op run after it warns of nothing new: {stdout}");
    let mut check = e2e::cpcheck_args(&bed);
    // The same overrides as the run: the units are as desired, no drift.
    check.extend(["--set", "kube-apiserver.v=3", "--set", "kube-scheduler.v=3", "--only", "host", "-o", "json"].map(String::from));
    let out = e2e::cpcheck(&check);
    let v: Cpcheck = report::parse(&out.stdout);
    let unit = v.row("host.unit.kube-controller-manager", None);
    assert_eq!(unit.status, "WARN", "{unit:#?}");
    assert!(unit.journal.iter().any(|l| l.contains("Main process exited, code=killed, status=9/KILL")), "{unit:#?}");
    let failed: Vec<&e2e::report::Check> = v.checks.iter().filter(|c| c.status == "FAIL").collect();
    assert_eq!(out.status.code(), Some(0), "a warning does not fail cpcheck; failed: {failed:#?}\n{}", e2e::plane_journals(&bed));
}

#[test]
fn a_sudo_user_bootstraps_too() {
    let bed = e2e::bed("sudo");
    // This server has no openssl: uploads and facts fall back to sha256sum.
    bed.ssh("rm /usr/bin/openssl").unwrap();
    let out = run_bootstrap(&server_args(&bed, "deploy"));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_converged(&bed);
    // Files are root's, secrets 0600, though the login was not root.
    let st = bed.ssh("stat -c '%a %U:%G' /var/lib/kubernetes/ca.key").unwrap();
    assert_eq!(st.trim(), "600 root:root");
}

#[test]
fn a_cut_connection_leaves_no_partial_file_and_the_next_run_completes() {
    let bed = e2e::bed("cut");
    let args = server_args(&bed, "root");
    // The plugin is built first: the watch below is bounded, a build is not part of it.
    let plugin = e2e::plugin("kubectl-bootstrap");
    // Watch on the server for the apiserver binary's temp file to appear.
    let watch = std::thread::spawn({
        let opts = bed.ssh_options();
        let dest = bed.dest();
        move || {
            Command::new("ssh")
                .args(opts)
                .arg(dest)
                .arg("for i in $(seq 6000); do ls /usr/local/bin/.kube-apiserver.kcp-tmp-* >/dev/null 2>&1 && exit 0; sleep 0.01; done; exit 1")
                .status()
                .unwrap()
                .success()
        }
    });
    let child = Command::new(plugin).args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    if !watch.join().unwrap() {
        let out = child.wait_with_output().unwrap();
        panic!("the upload never started: {:?}", text(&out));
    }
    // Kill the session's ssh master (its control socket lives in /tmp/kcp-PID-RANDOM).
    let killed = Command::new("pkill").args(["-KILL", "-f", &format!("/tmp/kcp-{}-", child.id())]).status().unwrap();
    assert!(killed.success(), "no ssh master found to kill");
    let out = child.wait_with_output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "a lost connection exits 3: {stderr}");
    let partial = bed.ssh("ls /usr/local/bin/kube-apiserver 2>/dev/null || echo absent").unwrap();
    assert_eq!(partial.trim(), "absent", "no half-written file at the final path");

    let out = run_bootstrap(&args);
    assert!(out.status.success(), "the next run completes: {:?}", text(&out));
    assert_converged(&bed);
    assert_eq!(e2e::leftover_temps(&bed).trim(), "", "no temp file is left");
}

#[test]
fn reset_removes_what_bootstrap_placed_and_keeps_etcd() {
    let bed = e2e::bed("reset");
    let out = run_bootstrap(&server_args(&bed, "root"));
    assert!(out.status.success(), "{:?}", text(&out));
    // The leaders before the reset: after it, "leaders elected" must mean
    // live ones, not the Leases the dead processes left.
    let holders = |bed: &e2e::Bed| -> Vec<(String, String)> {
        ["kube-controller-manager", "kube-scheduler"]
            .iter()
            .map(|c| {
                let v: Value = serde_json::from_str(&kubectl(bed, &["-n", "kube-system", "get", "lease", c, "-o", "json"])).unwrap();
                (v["spec"]["holderIdentity"].as_str().unwrap_or("").to_string(), v["spec"]["renewTime"].as_str().unwrap_or("").to_string())
            })
            .collect()
    };
    let old = holders(&bed);
    let out = e2e::bootstrap(&["reset", &bed.dest(), "-i", &bed.key.display().to_string(), "--known-hosts", &bed.known_hosts.display().to_string()]);
    assert_eq!(out.status.code(), Some(2), "reset without --yes and no terminal refuses");
    let out = e2e::bootstrap(&["reset", &bed.dest(), "-i", &bed.key.display().to_string(), "--known-hosts", &bed.known_hosts.display().to_string(), "--yes"]);
    assert!(out.status.success(), "{:?}", text(&out));
    for f in FILES {
        assert_eq!(bed.ssh(&format!("test -e {} && echo present || echo gone", f.dest)).unwrap().trim(), "gone", "{}", f.dest);
    }
    assert_eq!(bed.ssh("systemctl is-active etcd").unwrap().trim(), "active");
    assert_eq!(bed.ssh("test -d /usr/local/bin && echo kept").unwrap().trim(), "kept");
    assert_eq!(bed.ssh("test -d /var/lib/kubernetes && echo kept || echo gone").unwrap().trim(), "gone");

    // Deployed again.
    let out = run_bootstrap(&server_args(&bed, "root"));
    assert!(out.status.success(), "{:?}", text(&out));
    let new = holders(&bed);
    for ((c, (h0, _)), (h1, renewed)) in ["kube-controller-manager", "kube-scheduler"].iter().zip(&old).zip(&new) {
        assert_ne!(h0, h1, "{c}: still the old holder {h0}");
        let started = bed.ssh(&format!("systemctl show --timestamp=unix -p ActiveEnterTimestamp {c}")).unwrap();
        let started: i64 = started.trim().trim_start_matches("ActiveEnterTimestamp=@").parse().unwrap();
        let renewed = k8s_openapi::jiff::Timestamp::from_str(renewed).unwrap().as_second();
        assert!(renewed >= started, "{c}: renewed at {renewed}, before its unit started at {started}");
    }
}

#[test]
fn a_component_that_never_gets_healthy_is_named_with_its_status_and_journal() {
    let bed = e2e::bed("unhealthy");
    let mut args = server_args(&bed, "root");
    // An etcd that is not there: the apiserver never becomes ready.
    args.extend(["--set".into(), "kube-apiserver.etcd-servers=http://127.0.0.1:1".into(), "--timeout".into(), "30s".into()]);
    let out = run_bootstrap(&args);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "a server-side failure exits 1:\n{stderr}");
    let first = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_default();
    assert!(first.starts_with("error: kube-apiserver "), "names the component first: {first}\n{stderr}");
    assert!(stderr.contains("Active:"), "the systemctl status line:\n{stderr}");
    assert!(stderr.contains("--- journalctl -u kube-apiserver.service (last 20 lines)"), "{stderr}");
    let journal = stderr.split("--- journalctl -u kube-apiserver.service (last 20 lines)").nth(1).unwrap_or("");
    let lines = journal.lines().filter(|l| !l.trim().is_empty()).take_while(|l| !l.starts_with("error:")).count();
    assert!((1..=21).contains(&lines), "{lines} journal lines:\n{journal}");
    assert!(!stderr.contains("PRIVATE KEY"));
}
