//! Every failure signature (controlplane::diagnose) reproduced on a real,
//! bootstrapped bed the way the guide's readers break a plane: a file or
//! unit edited on the server by hand, the unit restarted. For each: how
//! long until `kubectl cpcheck` names the cause (its `diagnose.ID` row, and
//! the cause on the failing unit's own row), then the fix, and how long
//! until the row passes again (lines from before the restart no longer
//! count). Used by tests/tests/diagnose.rs and `cargo xtask diagnose`.

use std::process::Command;
use std::time::{Duration, Instant};

use testbed::Bed;

use crate::report::{self, Cpcheck};

/// One signature's reproduction.
pub struct Case {
    /// The signature's id.
    pub id: &'static str,
    /// The unit it breaks.
    pub unit: &'static str,
    /// What the cause names (part of the row's detail).
    pub names: &'static str,
    /// Breaks the plane by hand (and restarts what it broke).
    pub break_it: fn(&Bed),
    /// What the reader does before bootstrap's re-run restores the files.
    pub undo: fn(&Bed),
}

/// What one reproduction measured.
#[derive(Debug)]
pub struct Measured {
    pub id: &'static str,
    /// From the break to cpcheck's WARN naming the cause.
    pub detected: Duration,
    /// From the fix to the row passing again.
    pub cleared: Duration,
    /// The row's detail when it named the cause.
    pub detail: String,
}

const SCHED_KUBECONFIG: &str = "/var/lib/kubernetes/kube-scheduler.kubeconfig";
const CM_KUBECONFIG: &str = "/var/lib/kubernetes/kube-controller-manager.kubeconfig";

fn ssh(bed: &Bed, script: &str) {
    bed.ssh(script).unwrap_or_else(|e| panic!("{script}: {e:#}"));
}

/// A throwaway CA and a client pair it signs, base64 (one line each):
/// (ca, client cert, client key).
fn foreign_pair(bed: &Bed) -> (String, String, String) {
    let dir = bed.dir.join("foreign-ca");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        let o = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl");
        assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    openssl(&["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=foreign-ca", "-days", "2", "-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(&["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=system:kube-scheduler", "-keyout", "c.key", "-out", "c.csr"]);
    openssl(&["x509", "-req", "-in", "c.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-out", "c.crt"]);
    use base64::Engine;
    let b = |f: &str| base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).unwrap());
    (b("ca.crt"), b("c.crt"), b("c.key"))
}

/// Every signature, in catalogue order.
pub fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "scheduler-config-version",
            unit: "kube-scheduler.service",
            names: "apiVersion kubescheduler.config.k8s.io/v1 is not registered",
            break_it: |b| {
                ssh(b, "sed -i 's#^apiVersion: kubescheduler.config.k8s.io/.*#apiVersion: kubescheduler.config.k8s.io/v1#' /etc/kubernetes/config/kube-scheduler.yaml && systemctl restart kube-scheduler")
            },
            undo: |_| {},
        },
        Case {
            id: "certificate-name",
            unit: "kube-scheduler.service",
            names: "does not name 127.0.0.2",
            break_it: |b| ssh(b, &format!("sed -i 's#server: .*#server: https://127.0.0.2:6443#' {SCHED_KUBECONFIG} && systemctl restart kube-scheduler")),
            undo: |_| {},
        },
        Case {
            id: "encryption-config",
            unit: "kube-apiserver.service",
            names: "the apiserver cannot use its encryption config",
            break_it: |b| ssh(b, "sed -i 's#secret: .*#secret: not-base64!!#' /var/lib/kubernetes/encryption-config.yaml && systemctl restart kube-apiserver"),
            undo: |_| {},
        },
        Case {
            id: "etcd-unreachable",
            unit: "kube-apiserver.service",
            names: "etcd does not answer at 127.0.0.1:2379",
            break_it: |b| ssh(b, "systemctl stop etcd && systemctl restart kube-apiserver"),
            undo: |b| ssh(b, "systemctl start etcd && systemctl restart kube-apiserver"),
        },
        Case {
            id: "port-in-use",
            unit: "kube-scheduler.service",
            names: ":10259 is already taken",
            break_it: |b| ssh(b, "systemctl stop kube-scheduler && systemd-run --unit=kcp-squatter nc -lk 10259 && sleep 1 && systemctl start kube-scheduler"),
            undo: |b| ssh(b, "systemctl stop kcp-squatter; systemctl restart kube-scheduler"),
        },
        Case {
            id: "file-unreadable",
            unit: "kube-controller-manager.service",
            names: "/var/lib/kubernetes/ca.key: no such file or directory",
            break_it: |b| ssh(b, "mv /var/lib/kubernetes/ca.key /root/ca.key.away && systemctl restart kube-controller-manager"),
            undo: |b| ssh(b, "rm -f /root/ca.key.away"),
        },
        Case {
            id: "unknown-flag",
            unit: "kube-scheduler.service",
            names: "does not know the flag --no-such-flag",
            break_it: |b| {
                ssh(b, "sed -i 's#--v=2#--v=2 --no-such-flag#' /etc/systemd/system/kube-scheduler.service && systemctl daemon-reload && systemctl restart kube-scheduler")
            },
            undo: |_| {},
        },
        Case {
            id: "client-unauthorized",
            unit: "kube-scheduler.service",
            names: "refuses this component's client certificate",
            break_it: |b| {
                let (_, crt, key) = foreign_pair(b);
                ssh(b, &format!("sed -i -e 's#client-certificate-data: .*#client-certificate-data: {crt}#' -e 's#client-key-data: .*#client-key-data: {key}#' {SCHED_KUBECONFIG} && systemctl restart kube-scheduler"))
            },
            undo: |_| {},
        },
        Case {
            id: "server-untrusted",
            unit: "kube-controller-manager.service",
            names: "not signed by the CA this component's kubeconfig trusts",
            break_it: |b| {
                let (ca, _, _) = foreign_pair(b);
                ssh(b, &format!("sed -i 's#certificate-authority-data: .*#certificate-authority-data: {ca}#' {CM_KUBECONFIG} && systemctl restart kube-controller-manager"))
            },
            undo: |_| {},
        },
    ]
}

/// cpcheck's rows for the signature and the unit.
fn rows(bed: &Bed, id: &str) -> Cpcheck {
    let mut args = bed.cpcheck_args();
    args.extend(["--only", "diagnose", "--only", "host", "-o", "json", "--timeout", "30s"].map(String::from));
    let out = crate::cpcheck(&args);
    let _ = id;
    report::parse(&out.stdout)
}

/// Polls cpcheck until `diagnose.ID` has `status` (at most `limit`).
fn until(bed: &Bed, id: &str, status: &str, limit: Duration) -> (Duration, Cpcheck) {
    let t = Instant::now();
    loop {
        let r = rows(bed, id);
        if r.row(&format!("diagnose.{id}"), None).status == status || t.elapsed() > limit {
            return (t.elapsed(), r);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Breaks the bed as `case` says, waits for cpcheck to name the cause,
/// checks what it says, fixes it (the case's undo, then bootstrap's
/// re-run), and waits for the row to pass again.
pub fn reproduce(bed: &Bed, case: &Case) -> Measured {
    let row_id = format!("diagnose.{}", case.id);
    let t = Instant::now();
    (case.break_it)(bed);
    let (_, r) = until(bed, case.id, "WARN", Duration::from_secs(120));
    let detected = t.elapsed();
    let row = r.row(&row_id, None).clone();
    let journals = || crate::journals(bed, &[case.unit]);
    // What the server's journal holds of it, and what the prefilter sends.
    let held = || {
        let needle = crate::diagnose_needle(case.id);
        bed.ssh(&format!(
            "echo lines in the window: $(journalctl -u {u} --since @$(( $(date +%s) - 600 )) -q --no-pager | wc -l); echo holding the needle: $(journalctl -u {u} --since @$(( $(date +%s) - 600 )) -q --no-pager | grep -c -F {n}); echo sent: $({} | grep -c -F {n})",
            controlplane::remote::journal::signature_script(case.unit, 600, "tok"),
            u = case.unit,
            n = controlplane::remote::shell_quote(needle)
        ))
        .unwrap_or_else(|e| format!("{e:#}"))
    };
    assert_eq!(row.status, "WARN", "{}: cpcheck did not name it within 120 s: {row:#?}\n{}\n{}", case.id, held(), journals());
    assert!(row.detail.contains(case.names), "{}: {row:#?}", case.id);
    assert!(row.remediation.as_deref().is_some_and(|f| !f.is_empty()), "{}: a WARN has a fix: {row:#?}", case.id);
    // A unit that is down says why on its own row.
    let component = case.unit.trim_end_matches(".service");
    let unit = r.row(&format!("host.unit.{component}"), None).clone();
    if unit.status == "FAIL" {
        assert!(unit.detail.contains(&format!("cause [{row_id}]")), "{}: {unit:#?}", case.id);
    }
    let detail = row.detail.clone();
    // The fix: the reader's own step, then bootstrap restores the files.
    let t = Instant::now();
    (case.undo)(bed);
    let out = crate::run_bootstrap(&crate::server_args(bed, "root"));
    assert!(out.status.success(), "{}: the re-run after the fix: {:?}", case.id, crate::text(&out));
    let (_, r) = until(bed, case.id, "PASS", Duration::from_secs(120));
    let cleared = t.elapsed();
    let row = r.row(&row_id, None);
    assert_eq!(row.status, "PASS", "{}: after the fix and restart: {row:#?}\n{}", case.id, journals());
    Measured { id: case.id, detected, cleared, detail }
}
