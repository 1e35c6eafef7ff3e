//! `kubectl cpcheck` on a real bed set up by `kubectl bootstrap`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::report::Cpcheck;
use e2e::{cpcheck, cpcheck_args, run_bootstrap, server_args, text};
use serde_json::Value;

/// id → (status, detail).
type Statuses = BTreeMap<String, (String, String)>;

/// id → (status, detail) from `-o json`, the exit code, and the report
/// (typed, and as JSON for the schema).
fn run_json(bed: &e2e::Bed, extra: &[&str]) -> (Statuses, i32, (Cpcheck, Value)) {
    let mut args = cpcheck_args(bed);
    args.extend(["-o".into(), "json".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = cpcheck(&args);
    let report: Cpcheck = e2e::report::parse(&out.stdout);
    let map = report.checks.iter().map(|c| (c.id.clone(), (c.status.clone(), c.detail.clone()))).collect();
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    (map, out.status.code().unwrap_or(-1), (report, json))
}

/// Runs cpcheck until `id` has `status` (the cluster settles), or fails.
fn until(bed: &e2e::Bed, id: &str, status: &str) -> (BTreeMap<String, (String, String)>, i32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (m, code, _) = run_json(bed, &[]);
        if m.get(id).is_some_and(|s| s.0 == status) {
            return (m, code);
        }
        assert!(Instant::now() < deadline, "{id} never became {status}: {:?}", m.get(id));
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn restore(bed: &e2e::Bed) {
    let out = run_bootstrap(&server_args(bed, "root"));
    assert!(out.status.success(), "restore by bootstrap failed: {:?}", text(&out));
    until(bed, "leader.kube-scheduler", "PASS");
}

#[test]
fn healthy_then_one_breakage_at_a_time() {
    let bed = e2e::bootstrapped("cpc");

    // Healthy: everything passes but the CIS checks the guide's flags fail
    // (and 1.20's plain-HTTP ports), exit 0.
    let (m, code, report) = run_json(&bed, &[]);
    // (A CIS control with nothing in this layout, etcd's own files say, is SKIP.)
    let bad: Vec<_> =
        m.iter().filter(|(id, (s, _))| s != "PASS" && !((s == "WARN" || s == "SKIP") && id.starts_with("cis-")) && !(s == "WARN" && *id == "ports.insecure")).collect();
    assert!(bad.is_empty(), "unexpected non-PASS: {bad:#?}");
    assert_eq!(code, 0);
    assert!(m.iter().filter(|(id, _)| id.starts_with("cis-1.20/")).any(|(_, (s, _))| s == "WARN"), "the v1.20 bed is checked against cis-1.20");
    assert!(!m.keys().any(|id| id.starts_with("cis-1.12/")), "and only against it");
    assert_eq!(report.0.cis.benchmark.as_deref(), Some("cis-1.20"));
    assert!(m.len() >= 40, "{} checks", m.len());

    // The JSON validates against the documented schema.
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(e2e::workspace().join("docs/cpcheck.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&report.1).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // --strict turns CIS warnings into failures.
    let (m, code, _) = run_json(&bed, &["--strict", "--only", "cis"]);
    assert_eq!(m["cis-1.20/1.2.20"].0, "FAIL", "an automated control fails with --strict");
    assert_eq!(m["cis-1.20/1.2.1"].0, "WARN", "a manual one warns, as kube-bench reports it");
    assert_eq!(code, 1);
    // JUnit parses back with one testcase per check.
    let mut args = cpcheck_args(&bed);
    args.extend(["-o".into(), "junit".into()]);
    let out = cpcheck(&args);
    let xml = String::from_utf8(out.stdout).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("JUnit is XML");
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), report.0.checks.len());
    assert!(cases.iter().all(|c| c.attribute("name").is_some() && c.attribute("classname").is_some_and(|s| s.starts_with("cpcheck."))));
    assert_eq!(doc.root_element().attribute("failures"), Some("0"));

    // A key readable by others.
    bed.ssh("chmod 644 /var/lib/kubernetes/ca.key").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.permissions"].0.as_str(), code), ("FAIL", 1), "{:?}", m["host.permissions"]);
    assert!(m["host.permissions"].1.contains("/var/lib/kubernetes/ca.key is 0644 root:root"));
    bed.ssh("chmod 600 /var/lib/kubernetes/ca.key").unwrap();

    // An edited flag in an installed unit (drift), named with its line.
    bed.ssh("sed -i 's/--v=2/--v=4/' /etc/systemd/system/kube-scheduler.service").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.drift.kube-scheduler"].0.as_str(), code), ("FAIL", 1));
    assert!(m["host.drift.kube-scheduler"].1.contains("kube-scheduler.service drifted at line 8: installed `--v=4`, expected `--v=2`"), "{:?}", m["host.drift.kube-scheduler"]);
    restore(&bed);

    // The ClusterRoleBinding deleted.
    let kc = |args: &str| bed.ssh(&format!("kubectl --kubeconfig /dev/stdin {args} <<'EOF'\n{}\nEOF", std::fs::read_to_string(&bed.kubeconfig).unwrap()));
    kc("delete clusterrolebinding system:kube-apiserver").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["rbac.clusterrolebinding.system:kube-apiserver"].0.as_str(), code), ("FAIL", 1));
    assert_eq!(m["rbac.kubelet-access"].0, "FAIL");
    restore(&bed);

    // A verb removed from the ClusterRole.
    kc("patch clusterrole system:kube-apiserver-to-kubelet --type=json -p '[{\"op\":\"replace\",\"path\":\"/rules/0/verbs\",\"value\":[\"get\"]}]'").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    let r = &m["rbac.clusterrole.system:kube-apiserver-to-kubelet"];
    assert_eq!((r.0.as_str(), code), ("FAIL", 1));
    assert!(r.1.contains("missing verbs \"*\"") && r.1.contains("extra verbs \"get\""), "{r:?}");
    restore(&bed);

    // The scheduler stopped.
    bed.ssh("systemctl stop kube-scheduler").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.unit.kube-scheduler"].0.as_str(), code), ("FAIL", 1));
    assert_eq!(m["health.kube-scheduler"].0, "FAIL");
    bed.ssh("systemctl start kube-scheduler").unwrap();

    // etcd stopped: readyz names it.
    bed.ssh("systemctl stop etcd").unwrap();
    let (m, code) = until(&bed, "health.readyz", "FAIL");
    assert_eq!(code, 1);
    assert!(m["health.readyz"].1.contains("[-]etcd failed"), "{:?}", m["health.readyz"]);
    assert_eq!(m["host.etcd"].0, "FAIL");
    bed.ssh("systemctl start etcd").unwrap();
    until(&bed, "health.readyz", "PASS");

    // --service-cluster-ip-range removed from the apiserver (the guide's bug).
    bed.ssh("sed -i '/--service-cluster-ip-range/d' /etc/systemd/system/kube-apiserver.service && systemctl daemon-reload && systemctl restart kube-apiserver").unwrap();
    let (m, code) = until(&bed, "health.readyz", "PASS");
    assert_eq!((m["consistency.service-cidr"].0.as_str(), code), ("FAIL", 1));
    assert!(
        m["consistency.service-cidr"].1.contains("kube-apiserver uses 10.0.0.0/24 (its default: the flag is absent), kube-controller-manager 10.32.0.0/24"),
        "{:?}",
        m["consistency.service-cidr"]
    );
    restore(&bed);

    // A unit changed on disk that systemd has not read, then read but the
    // process not restarted: the two states an interrupted change leaves.
    bed.ssh("sed -i 's/--v=2/--v=5/' /etc/systemd/system/kube-scheduler.service").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.reload.kube-scheduler"].0.as_str(), code), ("FAIL", 1), "{:?}", m["host.reload.kube-scheduler"]);
    assert!(m["host.reload.kube-scheduler"].1.contains("NeedDaemonReload=yes"));
    bed.ssh("systemctl daemon-reload").unwrap();
    let (m, _, _) = run_json(&bed, &[]);
    assert_eq!(m["host.reload.kube-scheduler"].0, "PASS");
    assert_eq!(m["host.running.kube-scheduler"].0, "FAIL", "{:?}", m["host.running.kube-scheduler"]);
    assert!(m["host.running.kube-scheduler"].1.contains("--v=2 (unit: --v=5)"), "{:?}", m["host.running.kube-scheduler"]);
    restore(&bed);
    let (m, _, _) = run_json(&bed, &[]);
    assert_eq!(m["host.running.kube-scheduler"].0, "PASS");

    // A drop-in, and one of bootstrap's directories with a loose mode
    // (bootstrap puts it back).
    bed.ssh("mkdir -p /etc/systemd/system/kube-controller-manager.service.d && printf '[Service]\nEnvironment=A=1\n' > /etc/systemd/system/kube-controller-manager.service.d/x.conf && systemctl daemon-reload && chmod 0755 /var/lib/kubernetes").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.dropins.kube-controller-manager"].0.as_str(), code), ("FAIL", 1));
    assert!(
        m["host.dropins.kube-controller-manager"].1.contains("drop-in /etc/systemd/system/kube-controller-manager.service.d/x.conf"),
        "{:?}",
        m["host.dropins.kube-controller-manager"]
    );
    assert_eq!(m["host.directories"].0, "FAIL");
    assert!(m["host.directories"].1.contains("/var/lib/kubernetes is 0755 root:root, expected 0700 root:root"), "{:?}", m["host.directories"]);
    bed.ssh("rm -r /etc/systemd/system/kube-controller-manager.service.d && systemctl daemon-reload").unwrap();
    let mut dry = server_args(&bed, "root");
    dry.push("--dry-run".into());
    let out = run_bootstrap(&dry);
    assert!(text(&out).0.contains("chmod /var/lib/kubernetes/ → 0700 root:root (was 0755 root:root)"), "the plan shows the fix: {:?}", text(&out));
    restore(&bed);
    let (m, _, _) = run_json(&bed, &[]);
    assert_eq!((m["host.dropins.kube-controller-manager"].0.as_str(), m["host.directories"].0.as_str()), ("PASS", "PASS"));

    // What the server says is escaped everywhere, and an installed unit that
    // does not parse is a FAIL, never a skip.
    bed.ssh("printf '[Unit]\nDescription=x\n[Service]\nExecStart=/usr/local/bin/kube-scheduler --v=2\n\\033[2Jgarbage\n[Install]\nWantedBy=multi-user.target\n' > /etc/systemd/system/kube-scheduler.service").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["host.drift.kube-scheduler"].0.as_str(), code), ("FAIL", 1));
    assert!(m["host.drift.kube-scheduler"].1.contains("does not parse by systemd's rules: line 5"), "{:?}", m["host.drift.kube-scheduler"]);
    assert!(m["host.drift.kube-scheduler"].1.contains("\\u{1b}[2Jgarbage"), "escaped: {:?}", m["host.drift.kube-scheduler"]);
    assert_eq!(m["host.running.kube-scheduler"].0, "FAIL");
    for format in ["table", "junit"] {
        let mut args = cpcheck_args(&bed);
        args.extend(["-o".into(), format.into()]);
        let out = cpcheck(&args);
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(!stdout.contains('\u{1b}'), "{format}: no raw escape from the server");
        if format == "junit" {
            roxmltree::Document::parse(&stdout).expect("JUnit stays XML whatever the server says");
        }
    }
    restore(&bed);

    // Another listener on the apiserver's port while it is stopped.
    bed.ssh("systemctl stop kube-apiserver && systemd-run --unit=squatter nc -lk 6443 && sleep 1").unwrap();
    let (m, code, _) = run_json(&bed, &[]);
    assert_eq!((m["ports.kube-apiserver"].0.as_str(), code), ("FAIL", 1));
    assert!(m["ports.kube-apiserver"].1.starts_with("6443 is held by nc"), "{:?}", m["ports.kube-apiserver"]);
}

#[test]
fn bad_input_is_one_line_with_its_exit_code() {
    let bed = e2e::bed("cpcbad");
    // Each refusal: its exit code and one line on stderr, returned.
    let refused = |args: Vec<String>, code: i32| {
        let out = cpcheck(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    let with = |f: &dyn Fn(&mut Vec<String>)| {
        let mut args = cpcheck_args(&bed);
        f(&mut args);
        args
    };

    let stderr = refused(with(&|a| a[7] = "/nonexistent/kubeconfig".into()), 2);
    assert!(stderr.starts_with("error: --kubeconfig /nonexistent/kubeconfig:"), "{stderr}");

    let stderr = refused(with(&|a| a.extend(["--context".into(), "nope".into()])), 2);
    assert!(stderr.contains("nope"), "{stderr}");

    let stderr = refused(with(&|a| a[1] = format!("root@10.240.{}.3", bed.slot)), 3);
    assert!(stderr.starts_with(&format!("error: cannot connect to root@10.240.{}.3", bed.slot)), "{stderr}");

    for (flag, value, want) in [("--only", "nope", "error: --only nope: unknown group"), ("--skip", "nope", "error: --skip nope: no check has that id")] {
        let stderr = refused(with(&|a| a.extend([flag.to_string(), value.to_string()])), 2);
        assert!(stderr.starts_with(want), "{stderr}");
    }

    // Without --ssh the host checks are skipped, with the reason; without
    // credentials the API checks are.
    let out = cpcheck(&["--kubeconfig".into(), bed.kubeconfig.display().to_string(), "--only".into(), "host".into(), "-o".into(), "json".into()]);
    let v: Cpcheck = e2e::report::parse(&out.stdout);
    assert!(!v.checks.is_empty() && v.checks.iter().all(|c| c.status == "SKIP" && c.detail.contains("--ssh")), "{v:#?}");
    let mut args = cpcheck_args(&bed);
    args.truncate(6);
    args.extend(["--only".into(), "rbac".into(), "-o".into(), "json".into()]);
    let out = std::process::Command::new(e2e::plugin("kubectl-cpcheck")).args(&args).env("HOME", &bed.dir).env_remove("KUBECONFIG").output().unwrap();
    let v: Cpcheck = e2e::report::parse(&out.stdout);
    assert!(!v.checks.is_empty() && v.checks.iter().all(|c| c.status == "SKIP" && c.detail.contains("no API credentials")), "{v:#?}");
}
