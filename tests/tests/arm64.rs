//! The guide's own platform, arm64, on real (emulated) machines: an arm64
//! server (Debian arm64 booted under qemu-user) gets the arm64 binaries, a
//! re-run restarts nothing, cpcheck reports linux/arm64 and passes, and
//! amd64 binaries are refused before anything changes; an arm64 jumpbox
//! (the arm64 plugins run under emulation here) plans, deploys and checks
//! an amd64 server exactly as the native plugins do.

use std::process::Command;

use controlplane::local::files::{git_version, Asset};
use controlplane::model::UNITS;
use e2e::report::{self, Cpcheck, Plan};
use e2e::{active_since, damaged, run_bootstrap, snapshot, text, with_assets};
use testbed::{Arch, BedOptions};

/// Emulation is slow (boot ~18 s, first deploy ~60 s, healthy ~40 s after
/// start): every wait of these runs gets this much.
const EMULATED: &str = "8m";

#[test]
fn an_arm64_server_gets_arm64_binaries_and_refuses_others_before_anything_changes() {
    let bed = e2e::bed_with("arm64", &BedOptions { arch: Arch::Arm64, ..Default::default() });
    assert_eq!(bed.ssh("uname -m").unwrap().trim(), "aarch64");
    // Versions are read from the binaries of either architecture, never by running them.
    let amd64 = testbed::kubernetes_bin(Arch::Amd64).unwrap();
    for dir in [&bed.k8s_bin, &amd64] {
        for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"] {
            assert_eq!(git_version(&Asset::open(&dir.join(b)).unwrap()).as_deref(), Some("Kubernetes v1.20.2"), "{}", dir.join(b).display());
        }
    }
    let with_timeout = |mut a: Vec<String>| {
        a.extend(["--timeout".into(), EMULATED.into()]);
        a
    };

    // amd64 binaries for an arm64 server: every one named, exit 2, the server as it was.
    let before = snapshot(&bed);
    let wrong = damaged(&bed, &bed.dir.join("cases"), "amd64", |d| {
        for (sub, b) in [("controller", "kube-apiserver"), ("controller", "kube-controller-manager"), ("controller", "kube-scheduler"), ("client", "kubectl")] {
            let p = d.join("downloads").join(sub).join(b);
            let _ = std::fs::remove_file(&p);
            std::os::unix::fs::symlink(amd64.join(b), &p).unwrap();
        }
    });
    let out = run_bootstrap(&with_timeout(with_assets(&bed, "root", &wrong)));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"] {
        assert!(stderr.lines().any(|l| l.contains(&format!("/{b} is built for linux/amd64, the server is linux/arm64"))), "{b} named: {stderr}");
    }
    assert_eq!(snapshot(&bed), before, "preflight changed the server");

    // The arm64 binaries: deployed, healthy; a re-run restarts nothing.
    let args = with_timeout(e2e::server_args(&bed, "root"));
    let out = run_bootstrap(&args);
    assert!(out.status.success(), "first deploy on arm64: {:?}\n{}", text(&out), e2e::plane_journals(&bed));
    let since: Vec<(u64, u64)> = UNITS.iter().map(|u| active_since(&bed, u.file_name)).collect();
    let out = run_bootstrap(&args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("nothing changed"), "a re-run on arm64 changes nothing: {stdout}\n{stderr}");
    let now: Vec<(u64, u64)> = UNITS.iter().map(|u| active_since(&bed, u.file_name)).collect();
    assert_eq!(since, now, "a re-run restarted a component (an emulated command line read wrongly?)\n{}", e2e::plane_journals(&bed));

    // cpcheck: exit 0, the server's architecture and the API's platform linux/arm64.
    let mut check = e2e::cpcheck_args(&bed);
    check.extend(["--timeout".into(), "60s".into(), "-o".into(), "json".into()]);
    let out = e2e::cpcheck(&check);
    let v: Cpcheck = report::parse(&out.stdout);
    let failed: Vec<_> = v.checks.iter().filter(|c| c.status == "FAIL").collect();
    assert_eq!(out.status.code(), Some(0), "cpcheck on arm64: {failed:#?}");
    let version = v.row("api.version", None);
    assert!(version.status == "PASS" && version.detail.contains("platform linux/arm64"), "{version:#?}");
    assert_eq!(v.row("host.arch", None).status, "PASS", "{:#?}", v.row("host.arch", None));
    for u in UNITS {
        let running = v.row(&format!("host.running.{}", u.name), None);
        assert_eq!(running.status, "PASS", "{running:#?}");
    }
}

#[test]
fn an_arm64_jumpbox_plans_deploys_and_checks_like_a_native_one() {
    let arm = e2e::release_plugins("aarch64-unknown-linux-musl");
    assert!(Command::new("bash").arg(e2e::workspace().join("scripts/binfmt.sh")).arg("arm64").status().unwrap().success());
    let bed = e2e::bed("armjump");
    let mut args = e2e::server_args(&bed, "root");
    args.extend(["--compress".into(), "none".into(), "--timeout".into(), "5m".into()]);
    let arm_bootstrap = |a: &[String]| Command::new(arm.join("kubectl-bootstrap")).args(a).env_remove("KUBECONFIG").output().unwrap();
    let arm_cpcheck = |a: &[String]| Command::new(arm.join("kubectl-cpcheck")).args(a).env_remove("KUBECONFIG").output().unwrap();
    let json = |mut a: Vec<String>, extra: &[&str]| {
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    // The same plan, action by action.
    let dry = json(args.clone(), &["--dry-run", "-o", "json"]);
    let (native, emulated) = (run_bootstrap(&dry), arm_bootstrap(&dry));
    assert_eq!((native.status.code(), emulated.status.code()), (Some(0), Some(0)), "{:?}", text(&emulated));
    let steps = |p: &Plan| {
        p.actions.iter().map(|a| (a.action.clone(), if a.action == "stage" { a.staged().into_iter().map(|f| f.dest).collect::<Vec<_>>() } else { Vec::new() })).collect::<Vec<_>>()
    };
    let (n, e): (Plan, Plan) = (report::parse(&native.stdout), report::parse(&emulated.stdout));
    assert_eq!(steps(&e), steps(&n));
    // The emulated plugins deploy; a native re-run finds nothing to change.
    let out = arm_bootstrap(&args);
    assert!(out.status.success(), "the arm64 plugin's deploy: {:?}", text(&out));
    let out = run_bootstrap(&e2e::server_args(&bed, "root"));
    assert!(out.status.success() && text(&out).0.contains("nothing changed"), "{:?}", text(&out));
    // The same checks, the same statuses.
    let check = json(e2e::cpcheck_args(&bed), &["-o", "json"]);
    let (native, emulated) = (e2e::cpcheck(&check), arm_cpcheck(&check));
    assert_eq!(native.status.code(), emulated.status.code(), "{:?}", text(&emulated));
    let rows = |o: &std::process::Output| {
        let v: Cpcheck = report::parse(&o.stdout);
        v.checks.into_iter().map(|c| (c.id, c.status)).collect::<Vec<_>>()
    };
    assert_eq!(rows(&emulated), rows(&native));
    // Bad input: the same line and exit code.
    let bad = json(args.clone(), &["--set", "kube-apiserver"]);
    let (native, emulated) = (run_bootstrap(&bad), arm_bootstrap(&bad));
    assert_eq!((emulated.status.code(), text(&emulated).1), (native.status.code(), text(&native).1));
}
