//! Every check, one file per group, each a named function in its group's
//! static table (`CHECKS`), with its stable id. Ids never change meaning; a
//! new check gets a new id. The helpers here read the probe the way every
//! group needs it.

use std::net::IpAddr;

pub use futures::FutureExt;
pub use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
pub use k8s_openapi::api::coordination::v1::Lease;
pub use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
pub use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
pub use kube::api::{Api, ListParams, PostParams};

pub use super::{Ctx, Def, Each, Finding, Group, Item, Run};
pub use crate::kube::health as endpoints;
pub use crate::model::{ActiveState, Component, FileMode, Flags, APISERVER, APISERVER_DEFAULT_SERVICE_CIDR, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, FILES, SCHEDULER_CONFIG};
pub use crate::pki::Cert;
pub use crate::remote::probe::Probe;

mod api;
mod certs;
pub mod cluster;
mod consistency;
mod diagnose;
mod health;
mod host;
mod leader;
mod ports;
mod rbac;

/// The table of `group` (the CIS controls are data rows of their own: see `cis`).
pub fn table(group: Group) -> &'static [Def] {
    match group {
        Group::Host => host::CHECKS,
        Group::Ports => ports::CHECKS,
        Group::Health => health::CHECKS,
        Group::Api => api::CHECKS,
        Group::Consistency => consistency::CHECKS,
        Group::Certs => certs::CHECKS,
        Group::Rbac => rbac::CHECKS,
        Group::Leader => leader::CHECKS,
        Group::Cluster => cluster::CHECKS,
        Group::Diagnose => diagnose::CHECKS,
        Group::Cis => &[],
    }
}

/// Flags of the installed unit file (none when absent or unreadable).
pub fn installed(h: &Probe, c: Component) -> Option<Flags> {
    h.units.get(c.unit()).and_then(|u| u.text.as_deref()).and_then(|t| Flags::from_unit(t, c.unit()).ok())
}

/// The argv an installed unit's ExecStart gives its process.
pub fn installed_argv(text: &str, file_name: &str) -> Option<Vec<String>> {
    let u = unitfile::parse_unit(std::path::Path::new(file_name), text).ok()?;
    Some(std::iter::once(u.exec).chain(u.args).collect())
}

/// Flags of the running process, else of the installed unit.
pub fn effective(h: &Probe, c: Component) -> Option<Flags> {
    match h.units.get(c.unit()) {
        Some(u) if !u.cmdline.is_empty() => Some(Flags::from_argv(&u.cmdline)),
        _ => installed(h, c),
    }
}

/// A component's secure port as installed, else as the manifests say.
pub fn serving_port(h: Option<&Probe>, c: Component) -> u16 {
    h.and_then(|h| installed(h, c)).and_then(|f| f.get("secure-port").and_then(|p| p.parse().ok())).unwrap_or(c.serving_port())
}

/// The apiserver's service range as installed (its default when absent).
pub fn api_cidr(h: &Probe) -> String {
    installed(h, APISERVER).and_then(|f| f.get("service-cluster-ip-range").map(str::to_string)).unwrap_or_else(|| APISERVER_DEFAULT_SERVICE_CIDR.to_string())
}

/// Where a component's unit is installed.
pub fn unit_dest(c: Component) -> &'static str {
    crate::model::placed(c.spec().manifest).map(|f| f.dest).unwrap_or_default()
}

/// The first line where two texts differ (1-based), with both versions.
pub fn first_difference(installed: &str, expected: &str) -> Option<(usize, String, String)> {
    let (a, b): (Vec<&str>, Vec<&str>) = (unitfile::systemd_lines(installed), unitfile::systemd_lines(expected));
    (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .map(|i| (i + 1, a.get(i).map(|s| s.trim().to_string()).unwrap_or("<end of file>".into()), b.get(i).map(|s| s.trim().to_string()).unwrap_or("<end of file>".into())))
}

/// The journal lines of `c` that count: its current process's while it
/// runs (what a fixed and restarted unit said before no longer counts:
/// systemd keeps NRestarts across a `systemctl restart`, so only the
/// process tells invocations apart); else — down, or between two starts of
/// a crash loop — every line the probe read, its previous invocations
/// within `--journal-since`.
pub(crate) fn counted_lines(h: &Probe, c: Component) -> Result<Vec<String>, String> {
    let Some(st) = h.units.get(c.unit()) else { return Ok(Vec::new()) };
    let lines = st.signature_lines.clone()?;
    if st.active == ActiveState::Active && st.main_pid > 0 {
        let own = format!("[{}]: ", st.main_pid);
        return Ok(lines.into_iter().filter(|l| l.contains(&own)).collect());
    }
    Ok(lines)
}

/// A failing finding about `c`, with the cause its journal shows (the
/// latest line that matches a signature) named first and its fix.
pub fn with_cause(f: Finding, h: Option<&Probe>, c: Component) -> Finding {
    if f.status != super::Status::Fail {
        return f;
    }
    let Some(lines) = h.and_then(|h| counted_lines(h, c).ok()) else { return f };
    let latest = lines.iter().rev().find_map(|l| crate::diagnose::match_line(c, l));
    match latest {
        None => f,
        Some(cause) => {
            let mut journal = vec![cause.line.clone()];
            journal.extend(f.journal.iter().cloned());
            Finding { detail: format!("{}; cause [diagnose.{}]: {}", f.detail, cause.id, cause.cause), remediation: Some(cause.fix), journal, ..f }
        }
    }
}

/// Every check but the CIS ones (see `cpcheck::cis`), in report order.
pub fn registry() -> Vec<super::Check> {
    Group::ALL.iter().filter(|g| !matches!(g, Group::Cis | Group::Cluster)).flat_map(|g| table(*g).iter().flat_map(move |d| d.expand(*g))).collect()
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::testing::{self, api, findings, healthy, healthz, pki};
    use super::*;
    use crate::cpcheck::Status;
    use crate::remote::probe::{Holder, Listener};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// On a server as bootstrap leaves it, every check passes.
    #[test]
    fn a_healthy_server_passes_every_check() {
        let f = rt().block_on(async { findings(healthy(), api(|_, _| None), false).await });
        let bad: Vec<_> = f.iter().filter(|(_, (s, _))| *s != Status::Pass).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(f.len(), registry().len());
    }

    /// How the fake apiserver answers differently, for one case.
    type Route = Box<dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync>;
    /// What breaks, how the probe and the API show it, the id that reports it.
    type Breakage = (&'static str, Box<dyn Fn(&mut Probe)>, Route, &'static str, Status, &'static str);

    /// Each check, broken the way it exists to catch: its own id reports it.
    #[test]
    fn each_check_reports_what_it_exists_to_catch() {
        let none = || -> Route { Box::new(|_, _| None) };
        let keep = || -> Box<dyn Fn(&mut Probe)> { Box::new(|_| {}) };
        let cases: Vec<Breakage> = vec![
            (
                "unit stopped",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-scheduler.service").unwrap().active = ActiveState::Failed),
                none(),
                "host.unit.kube-scheduler",
                Status::Fail,
                "failed, enabled",
            ),
            (
                "a crash systemd papered over",
                Box::new(|p: &mut Probe| {
                    let u = p.units.get_mut("kube-apiserver.service").unwrap();
                    u.restarts = 1;
                    u.crashes = Ok(vec!["F1201 21:50:21.2 311 storage_decorator.go:57] Unable to create storage backend".into()]);
                }),
                none(),
                "host.unit.kube-apiserver",
                Status::Warn,
                "active, enabled, 1 restart(s): its process exited and systemd started it again",
            ),
            (
                "a server below the systemd floor, lacking flock",
                Box::new(|p: &mut Probe| {
                    p.systemd_version = Some(237);
                    p.missing = vec!["flock".into()];
                }),
                none(),
                "host.userland",
                Status::Fail,
                "the server runs systemd 237; the plugins need 239 or later",
            ),
            (
                "a binary of another architecture",
                Box::new(|p: &mut Probe| {
                    let bin = FILES.iter().find(|f| f.kind == crate::model::FileKind::Binary).unwrap().dest;
                    p.heads.get_mut(bin).unwrap()[18] = 0xb7;
                }),
                none(),
                "host.arch",
                Status::Fail,
                "is built for linux/arm64; the server is linux/amd64",
            ),
            (
                "an apiserver built for another platform",
                keep(),
                Box::new(|m: &str, p: &str| {
                    (m == "GET" && p == "/version").then(|| (200, serde_json::json!({"major": "1", "minor": "20", "gitVersion": "v1.20.2", "platform": "linux/arm64"}).to_string()))
                }),
                "api.version",
                Status::Fail,
                "the API says platform linux/arm64, the server is linux/amd64",
            ),
            (
                "unit edited",
                Box::new(|p: &mut Probe| {
                    let u = p.units.get_mut("kube-scheduler.service").unwrap();
                    u.text = Some(u.text.as_ref().unwrap().replace("--v=2", "--v=4"));
                }),
                none(),
                "host.drift.kube-scheduler",
                Status::Fail,
                "installed `--v=4`, expected `--v=2`",
            ),
            (
                // Valid for systemd (a `--flag value` pair, a `-` prefix):
                // drift with the differing line, not "does not parse".
                "unit hand-edited the way systemd allows",
                Box::new(|p: &mut Probe| {
                    let u = p.units.get_mut("kube-scheduler.service").unwrap();
                    u.text = Some(u.text.as_ref().unwrap().replace("--v=2", "--v 2").replace("ExecStart=/", "ExecStart=-/"));
                }),
                none(),
                "host.drift.kube-scheduler",
                Status::Fail,
                "drifted at line",
            ),
            (
                "unit unparseable",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-scheduler.service").unwrap().text = Some("[Unit]\ngarbage\n".into())),
                none(),
                "host.drift.kube-scheduler",
                Status::Fail,
                "does not parse by systemd's rules: line 2",
            ),
            (
                "scheduler config edited",
                Box::new(|p: &mut Probe| {
                    let d = crate::model::placed(SCHEDULER_CONFIG.manifest).unwrap().dest;
                    let t = p.texts.get_mut(d).unwrap();
                    *t = t.replace("leaderElect: true", "leaderElect: false");
                }),
                none(),
                "host.drift.kube-scheduler-config",
                Status::Fail,
                "drifted at line",
            ),
            (
                "other running flags",
                Box::new(|p: &mut Probe| {
                    let c = &mut p.units.get_mut("kube-apiserver.service").unwrap().cmdline;
                    let i = c.iter().position(|w| w == "--v=2").unwrap();
                    c[i] = "--v=9".into();
                }),
                none(),
                "host.running.kube-apiserver",
                Status::Fail,
                "--v=9 (unit: --v=2)",
            ),
            (
                "daemon-reload pending",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-scheduler.service").unwrap().need_daemon_reload = true),
                none(),
                "host.reload.kube-scheduler",
                Status::Fail,
                "NeedDaemonReload=yes",
            ),
            (
                "a drop-in",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-apiserver.service").unwrap().drop_ins = vec!["/run/systemd/system/kube-apiserver.service.d/x.conf".into()]),
                none(),
                "host.dropins.kube-apiserver",
                Status::Fail,
                "drop-in /run/systemd/system/kube-apiserver.service.d/x.conf",
            ),
            (
                "an overriding unit file",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-apiserver.service").unwrap().fragment = "/etc/systemd/system.control/kube-apiserver.service".into()),
                none(),
                "host.dropins.kube-apiserver",
                Status::Fail,
                "loaded from /etc/systemd/system.control",
            ),
            (
                "a loose own directory",
                Box::new(|p: &mut Probe| p.dirs.get_mut("/var/lib/kubernetes").unwrap().mode = FileMode(0o755)),
                none(),
                "host.directories",
                Status::Fail,
                "/var/lib/kubernetes is 0755 root:root, expected 0700",
            ),
            (
                "a shared directory others may write",
                Box::new(|p: &mut Probe| p.dirs.get_mut("/usr/local/bin").unwrap().mode = FileMode(0o777)),
                none(),
                "host.directories",
                Status::Fail,
                "/usr/local/bin is 0777 root:root: writable by others",
            ),
            (
                "a referenced path missing",
                Box::new(|p: &mut Probe| drop(p.files.remove("/var/lib/kubernetes/service-accounts.crt"))),
                none(),
                "host.paths",
                Status::Fail,
                "/var/lib/kubernetes/service-accounts.crt (--service-account-key-file of kube-apiserver)",
            ),
            (
                "a key readable by others",
                Box::new(|p: &mut Probe| p.files.get_mut("/var/lib/kubernetes/ca.key").unwrap().mode = FileMode(0o644)),
                none(),
                "host.permissions",
                Status::Fail,
                "/var/lib/kubernetes/ca.key is 0644 root:root",
            ),
            (
                "a kubeconfig changed by hand after the controller-manager started",
                Box::new(|p: &mut Probe| p.files.get_mut("/var/lib/kubernetes/kube-controller-manager.kubeconfig").unwrap().mtime_ns = (p.now as u64 - 10) * 1_000_000_000),
                none(),
                "certs.restart.kube-controller-manager",
                Status::Fail,
                "restart pending: changed since kube-controller-manager started, read only at start: --kubeconfig /var/lib/kubernetes/kube-controller-manager.kubeconfig",
            ),
            (
                "a scheduler that exits at start on a flag this release does not know",
                Box::new(|p: &mut Probe| {
                    let u = p.units.get_mut("kube-scheduler.service").unwrap();
                    u.active = ActiveState::Failed;
                    u.signature_lines = Ok(vec![
                        "2026-12-02T05:10:01+0000 server kube-scheduler[1]: I1202 05:10:01.1 1 flags.go:59] FLAG: --v=\"2\"".into(),
                        "2026-12-02T05:10:01+0000 server kube-scheduler[1]: Error: unknown flag: --no-such-flag".into(),
                    ]);
                }),
                none(),
                "host.unit.kube-scheduler",
                Status::Fail,
                "failed, enabled, 0 restart(s); cause [diagnose.unknown-flag]: this release does not know the flag --no-such-flag",
            ),
            (
                "401s in a running scheduler's journal (its own process)",
                Box::new(|p: &mut Probe| {
                    let started = p.units["kube-scheduler.service"].active_enter_unix as i64;
                    let at = |t: i64| {
                        ::time::OffsetDateTime::from_unix_timestamp(t)
                            .unwrap()
                            .format(::time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+0000"))
                            .unwrap()
                    };
                    p.units.get_mut("kube-scheduler.service").unwrap().signature_lines =
                        Ok(vec![format!("{} server kube-scheduler[100]: E1202 r.go:1] Failed to watch *v1.Pod: failed to list *v1.Pod: Unauthorized", at(started + 5))]);
                }),
                none(),
                "diagnose.client-unauthorized",
                Status::Warn,
                "kube-scheduler: the apiserver refuses this component's client certificate (Unauthorized)",
            ),
            ("etcd unhealthy", Box::new(|p: &mut Probe| p.etcd_health = "{\"health\":\"false\"}".into()), none(), "host.etcd", Status::Fail, "does not answer healthy"),
            (
                "nothing on the apiserver's port",
                Box::new(|p: &mut Probe| p.listeners.retain(|l| l.port != 6443)),
                none(),
                "ports.kube-apiserver",
                Status::Fail,
                "nothing listens on 6443",
            ),
            (
                "someone else on the scheduler's port",
                Box::new(|p: &mut Probe| {
                    p.listeners.retain(|l| l.port != 10259);
                    p.listeners.push(Listener { addr: testing::ANY, port: 10259, inode: 7, unit: None, holder: Some(Holder { pid: 7, name: "nc".into() }) });
                }),
                none(),
                "ports.kube-scheduler",
                Status::Fail,
                "10259 is held by nc (pid 7)",
            ),
            (
                "etcd on every address",
                Box::new(|p: &mut Probe| p.listeners.push(Listener { addr: std::net::Ipv4Addr::UNSPECIFIED.into(), port: 2379, inode: 31, unit: None, holder: None })),
                none(),
                "ports.etcd-loopback",
                Status::Fail,
                "2379 is also bound to 0.0.0.0",
            ),
            (
                "a plain-HTTP port open",
                Box::new(|p: &mut Probe| p.listeners.push(Listener { addr: testing::ANY, port: 10251, inode: 9, unit: Some("kube-scheduler.service".into()), holder: None })),
                none(),
                "ports.insecure",
                Status::Warn,
                "10251 (kube-scheduler.service)",
            ),
            (
                "readyz failing",
                keep(),
                Box::new(|_, p: &str| p.starts_with("/readyz").then(|| (500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n".to_string()))),
                "health.readyz",
                Status::Fail,
                "[-]etcd failed",
            ),
            (
                "livez failing",
                keep(),
                Box::new(|_, p: &str| p.starts_with("/livez").then(|| (500, "[-]ping failed\n".to_string()))),
                "health.livez",
                Status::Fail,
                "[-]ping failed",
            ),
            (
                "the binary changed since start",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-apiserver.service").unwrap().binary_version = Some("Kubernetes v1.20.4".into())),
                none(),
                "api.version",
                Status::Warn,
                "API says v1.20.2, /usr/local/bin/kube-apiserver says Kubernetes v1.20.4",
            ),
            (
                "a binary one patch release off (a prefix of the API's)",
                Box::new(|p: &mut Probe| p.units.get_mut("kube-apiserver.service").unwrap().binary_version = Some("Kubernetes v1.20.2".into())),
                Box::new(|_, p: &str| (p == "/version").then(|| (200, serde_json::json!({"major":"1","minor":"20","gitVersion":"v1.20.21","platform":"linux/amd64"}).to_string()))),
                "api.version",
                Status::Warn,
                "API says v1.20.21, /usr/local/bin/kube-apiserver says Kubernetes v1.20.2",
            ),
            ("the API refuses /version", keep(), Box::new(|_, p: &str| (p == "/version").then(|| (500, "{}".to_string()))), "api.cluster-info", Status::Fail, ""),
            (
                "nodes forbidden",
                keep(),
                Box::new(|_, p: &str| (p.starts_with("/api/v1/nodes")).then(|| (403, "{\"kind\":\"Status\",\"code\":403,\"message\":\"forbidden\"}".to_string()))),
                "api.nodes",
                Status::Fail,
                "cannot list nodes",
            ),
            (
                "pods forbidden",
                keep(),
                Box::new(|_, p: &str| (p.starts_with("/api/v1/pods")).then(|| (403, "{\"kind\":\"Status\",\"code\":403}".to_string()))),
                "api.pods",
                Status::Fail,
                "cannot list pods",
            ),
            (
                "the Service kept an old IP",
                keep(),
                Box::new(|_, p: &str| {
                    (p == "/api/v1/namespaces/default/services/kubernetes").then(|| (200, serde_json::json!({"kind":"Service","apiVersion":"v1","metadata":{"name":"kubernetes"},"spec":{"clusterIP":"10.0.0.1","ports":[{"port":443,"targetPort":6443}]}}).to_string()))
                }),
                "api.service",
                Status::Fail,
                "ClusterIP 10.0.0.1, expected 10.32.0.1",
            ),
            (
                "endpoints elsewhere",
                keep(),
                Box::new(|_, p: &str| {
                    (p == "/api/v1/namespaces/default/endpoints/kubernetes").then(|| (200, serde_json::json!({"kind":"Endpoints","apiVersion":"v1","metadata":{"name":"kubernetes"},"subsets":[{"addresses":[{"ip":"10.9.9.9"}],"ports":[{"port":6443}]}]}).to_string()))
                }),
                "api.endpoints",
                Status::Fail,
                "10.9.9.9:6443 is not this server's address",
            ),
            (
                "service ranges disagree",
                Box::new(|p: &mut Probe| {
                    let u = p.units.get_mut("kube-apiserver.service").unwrap();
                    u.text = Some(u.text.as_ref().unwrap().replace("  --service-cluster-ip-range=10.32.0.0/24 \\\n", ""));
                }),
                none(),
                "consistency.service-cidr",
                Status::Fail,
                "kube-apiserver uses 10.0.0.0/24 (its default: the flag is absent), kube-controller-manager 10.32.0.0/24",
            ),
            (
                "the Service IP not a SAN",
                Box::new(|p: &mut Probe| {
                    let k = pki(&["127.0.0.1", "server.kubernetes.local"]);
                    p.certs.insert("/var/lib/kubernetes/kube-api-server.crt".into(), k.serving);
                    p.certs.insert("/var/lib/kubernetes/ca.crt".into(), k.ca);
                }),
                none(),
                "consistency.service-ip-san",
                Status::Fail,
                "ClusterIP 10.32.0.1 is not among the serving certificate's SANs",
            ),
            (
                "a serving cert from another CA",
                Box::new(|p: &mut Probe| {
                    p.certs.insert("/var/lib/kubernetes/kube-api-server.crt".into(), pki(&["127.0.0.1"]).serving);
                }),
                none(),
                "certs.chain",
                Status::Fail,
                "not signed by the client CA",
            ),
            (
                "no certificate readable",
                Box::new(|p: &mut Probe| {
                    p.certs.clear();
                    p.kubeconfigs.clear();
                }),
                none(),
                "certs.expiry",
                Status::Fail,
                "no certificates found",
            ),
            (
                "a serving certificate put in place without its key",
                Box::new(|p: &mut Probe| {
                    let crt = "/var/lib/kubernetes/kube-api-server.crt";
                    p.pairs.get_mut(crt).unwrap().1 = crate::remote::probe::pki::PairState::Mismatch;
                }),
                none(),
                "certs.pair.kube-apiserver",
                Status::Fail,
                "/var/lib/kubernetes/kube-api-server.crt does not match its key /var/lib/kubernetes/kube-api-server.key",
            ),
            (
                "a server without openssl",
                Box::new(|p: &mut Probe| {
                    let crt = "/var/lib/kubernetes/kube-api-server.crt";
                    p.pairs.get_mut(crt).unwrap().1 = crate::remote::probe::pki::PairState::NoOpenssl;
                }),
                none(),
                "certs.pair.kube-apiserver",
                Status::Skip,
                "the server has no openssl",
            ),
            (
                "a verb taken from the ClusterRole",
                keep(),
                Box::new(|_, p: &str| {
                    p.starts_with("/apis/rbac.authorization.k8s.io/v1/clusterroles/").then(|| {
                        let mut r = crate::kube::rbac::objects().0.remove(0);
                        r.rules.as_mut().unwrap()[0].verbs = vec!["get".into()];
                        (200, serde_json::to_string(&r).unwrap())
                    })
                }),
                "rbac.clusterrole.system:kube-apiserver-to-kubelet",
                Status::Fail,
                "missing verbs \"*\"",
            ),
            (
                "the binding deleted",
                keep(),
                Box::new(|_, p: &str| p.starts_with("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/").then(|| (404, testing::NOT_FOUND.to_string()))),
                "rbac.clusterrolebinding.system:kube-apiserver",
                Status::Fail,
                "does not exist",
            ),
            (
                "kubelet access denied",
                keep(),
                Box::new(|m: &str, p: &str| {
                    (m == "POST" && p.contains("subjectaccessreviews"))
                        .then(|| (201, serde_json::json!({"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{},"status":{"allowed":false}}).to_string()))
                }),
                "rbac.kubelet-access",
                Status::Fail,
                "is denied nodes/proxy",
            ),
            (
                "a stale Lease",
                keep(),
                Box::new(|_, p: &str| {
                    p.ends_with("/leases/kube-scheduler").then(|| {
                let old = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(27);
                (200, serde_json::json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"kube-scheduler"},"spec":{"holderIdentity":"server_1","leaseDurationSeconds":15,"renewTime":old.to_string()}}).to_string())
            })
                }),
                "leader.kube-scheduler",
                Status::Fail,
                "longer ago than its leaseDurationSeconds (15)",
            ),
        ];
        let rt = rt();
        let mut failures = Vec::new();
        for (what, damage, routes, id, want, detail) in cases {
            let mut p = healthy();
            damage(&mut p);
            let f = rt.block_on(async { findings(p, api(routes), false).await });
            match f.get(id) {
                Some((s, d)) if *s == want && d.contains(detail) => {}
                other => failures.push(format!("{what}: {id} is {other:?}, expected {want:?} containing `{detail}`")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // The health endpoint of a component is reached through its own tunnel.
        let r = rt.block_on(async {
            let mut ctx = crate::cpcheck::Ctx::for_tests(false);
            ctx.health.insert(Component::KubeScheduler, Ok(healthz(500)));
            crate::cpcheck::run(&ctx, &registry().iter().collect::<Vec<_>>(), &[]).await
        });
        let f = r.iter().find(|r| r.id == "health.kube-scheduler").unwrap();
        assert_eq!((f.finding.status, f.finding.detail.as_str()), (Status::Fail, "/healthz: HTTP 500"));
    }

    #[test]
    fn ids_are_unique_and_grouped() {
        let mut r = registry();
        r.extend(crate::cpcheck::cis::every_check());
        let mut ids: Vec<&str> = r.iter().map(|c| c.id.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate check ids");
        for c in &r {
            let prefix = if c.group == Group::Cis { "cis-".to_string() } else { format!("{}.", c.group) };
            assert!(c.id.starts_with(&prefix), "{} is not under its group {}", c.id, c.group);
        }
    }

    /// A moved id's new one exists, its old one no longer does, and
    /// `--only`/`--skip` take the old one as the new.
    #[test]
    fn moved_ids_point_at_checks_that_exist() {
        let all: Vec<String> = crate::cpcheck::catalog().into_iter().map(|c| c.id).collect();
        for (old, new) in crate::cpcheck::MOVED {
            assert!(all.iter().any(|i| i == new) && !all.iter().any(|i| i == old), "{old} → {new}");
            let picked = crate::cpcheck::select(&[old.to_string()], &[]).unwrap();
            assert_eq!(picked.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [*new]);
            assert!(!crate::cpcheck::select(&[], &[old.to_string()]).unwrap().is_empty());
        }
        let changelog = include_str!("../../../../CHANGELOG.md");
        for (old, new) in crate::cpcheck::MOVED {
            assert!(changelog.contains(&format!("`{old}` is now `{new}`")), "CHANGELOG.md says {old} moved to {new}");
        }
    }

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(first_difference("a\nb\nc\n", "a\nb\nc\n"), None);
        assert_eq!(first_difference("a\n  --v=4 \\\nc\n", "a\n  --v=2 \\\nc\n"), Some((2, "--v=4 \\".into(), "--v=2 \\".into())));
        assert_eq!(first_difference("a\n", "a\nb\n"), Some((2, "<end of file>".into(), "b".into())));
        // A line systemd splits is split here too.
        assert_eq!(first_difference("a\0b\n", "a\n").map(|d| d.0), Some(2));
    }
}
