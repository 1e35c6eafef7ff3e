//! Every check, registered with its stable id. Ids never change meaning; new
//! checks get new ids.

use std::net::IpAddr;

use futures::FutureExt;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, ListParams, PostParams};

use super::gather::{installed_argv, installed_flags, running_flags, unit_parse_error, HostData};
use super::{Check, Ctx, Finding, Runner};
use crate::kube::health;
use crate::pki::Cert;
use crate::model::{CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, FILES, SCHEDULER_CONFIG, UNITS};
use crate::model::APISERVER_DEFAULT_SERVICE_CIDR;

type Flags = Vec<(String, Option<String>)>;

fn flag<'a>(flags: &'a Flags, name: &str) -> Option<&'a str> {
    flags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_deref().unwrap_or("true"))
}

fn unit_file(component: &str) -> String {
    format!("{component}.service")
}

/// Flags from the installed unit file.
fn installed(h: &HostData, component: &str) -> Option<Flags> {
    let f = unit_file(component);
    h.units.get(&f).and_then(|u| u.text.as_deref()).and_then(|t| installed_flags(t, &f))
}

/// Flags of the running process, else of the installed unit.
fn effective(h: &HostData, component: &str) -> Option<Flags> {
    let f = unit_file(component);
    match h.units.get(&f) {
        Some(u) if !u.cmdline.is_empty() => Some(running_flags(&u.cmdline)),
        _ => installed(h, component),
    }
}

fn serving_port(h: Option<&HostData>, component: &str) -> u16 {
    let spec = crate::model::unit(component);
    h.and_then(|h| installed(h, component))
        .and_then(|f| flag(&f, "secure-port").and_then(|p| p.parse().ok()))
        .or(spec.map(|s| s.serving_port))
        .unwrap_or(0)
}

fn api_cidr(h: &HostData) -> String {
    installed(h, "kube-apiserver")
        .and_then(|f| flag(&f, "service-cluster-ip-range").map(str::to_string))
        .unwrap_or_else(|| APISERVER_DEFAULT_SERVICE_CIDR.to_string())
}

fn host_check(id: &str, group: &'static str, title: &str, f: impl Fn(&Ctx, &HostData) -> Finding + Send + Sync + 'static) -> Check {
    Check { id: id.into(), group, title: title.into(), run: Runner::Host(Box::new(f)) }
}

fn api_check<F>(id: &str, group: &'static str, title: &str, f: F) -> Check
where
    F: for<'a> Fn(&'a Ctx, &'a kube::Client) -> futures::future::BoxFuture<'a, Finding> + Send + Sync + 'static,
{
    Check { id: id.into(), group, title: title.into(), run: Runner::Api(Box::new(f)) }
}

/// The first line where two texts differ (1-based), with both versions.
pub fn first_difference(installed: &str, expected: &str) -> Option<(usize, String, String)> {
    let (a, b): (Vec<&str>, Vec<&str>) = (installed.lines().collect(), expected.lines().collect());
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)).map(|i| {
        (i + 1, a.get(i).map(|s| s.trim().to_string()).unwrap_or("<end of file>".into()), b.get(i).map(|s| s.trim().to_string()).unwrap_or("<end of file>".into()))
    })
}

fn cis(ctx: &Ctx, ok: bool, pass: String, fail: String, fix: &str) -> Finding {
    if ok {
        Finding::pass(pass)
    } else if ctx.strict {
        Finding::fail(fail, fix)
    } else {
        Finding::warn(fail, fix)
    }
}

/// CIS checks on one component's effective flags.
fn cis_flag(id: &str, title: &str, component: &'static str, pred: fn(Option<&str>) -> bool, fix: &'static str) -> Check {
    let flag_name: String = title.split_whitespace().next().unwrap_or("").trim_start_matches("--").split('=').next().unwrap_or("").to_string();
    host_check(id, "cis", title, move |ctx, h| {
        let Some(flags) = effective(h, component) else {
            return Finding::skip(format!("{component} is neither running nor installed"));
        };
        let v = flag(&flags, &flag_name);
        let shown = v.map(|v| format!("--{flag_name}={v}")).unwrap_or(format!("--{flag_name} not set"));
        cis(ctx, pred(v), format!("{component}: {shown}"), format!("{component}: {shown}"), fix)
    })
}

fn num_at_least(v: Option<&str>, n: u64) -> bool {
    v.and_then(|v| v.parse::<u64>().ok()).is_some_and(|x| x >= n)
}

/// Every check, in report order.
pub fn registry() -> Vec<Check> {
    let mut v = Vec::new();

    // ---- host
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        v.push(host_check(&format!("host.unit.{c}"), "host", &format!("{f} active and enabled"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::fail(format!("{f} is not installed"), "kubectl bootstrap server DEST") };
            let detail = format!("{}, {}, {} restart(s)", i.active, if i.enabled.is_empty() { "not installed" } else { &i.enabled }, i.restarts);
            if i.active == "active" && i.enabled == "enabled" {
                Finding::pass(detail)
            } else {
                Finding::fail(detail, format!("systemctl enable --now {f}; journalctl -u {f}"))
            }
        }));
    }
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        let dest = crate::model::placed(u.manifest).map(|x| x.dest).unwrap_or("");
        v.push(host_check(&format!("host.drift.{c}"), "host", &format!("{dest} as the manifests install it"), move |ctx, h| {
            let Some(want) = ctx.desired.iter().find(|d| d.spec.component == c) else { return Finding::skip("not in the manifests") };
            match h.units.get(f).and_then(|i| i.text.as_deref()) {
                None => Finding::fail(format!("{dest} is missing"), "kubectl bootstrap server DEST"),
                Some(t) if unit_parse_error(t, f).is_some() => Finding::fail(
                    format!("{dest} does not parse by systemd's rules: {}", unit_parse_error(t, f).unwrap_or_default()),
                    "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
                ),
                Some(t) => match first_difference(t, &want.text) {
                    None => Finding::pass(format!("{dest} matches")),
                    Some((line, got, exp)) => Finding::fail(
                        format!("{dest} drifted at line {line}: installed `{got}`, expected `{exp}`"),
                        "kubectl bootstrap server DEST (re-installs it and restarts the unit)",
                    ),
                },
            }
        }));
    }
    let sc_dest = crate::model::placed(SCHEDULER_CONFIG.manifest).map(|x| x.dest).unwrap_or("");
    v.push(host_check("host.drift.kube-scheduler-config", "host", &format!("{sc_dest} as the manifests install it"), move |_, h| {
        let Some(t) = &h.scheduler_config else { return Finding::fail(format!("{sc_dest} is missing"), "kubectl bootstrap server DEST") };
        // Rendered for the installed scheduler's version, as bootstrap does.
        let version = h.units.get("kube-scheduler.service").and_then(|u| u.binary_version.as_deref()).and_then(crate::bootstrap::desired::Version::parse);
        let want = version.and_then(crate::bootstrap::desired::render_scheduler_config).unwrap_or_else(|| SCHEDULER_CONFIG.text.to_string());
        match first_difference(t, &want) {
            None => Finding::pass(format!("{sc_dest} matches")),
            Some((line, got, exp)) => Finding::fail(format!("{sc_dest} drifted at line {line}: installed `{got}`, expected `{exp}`"), "kubectl bootstrap server DEST"),
        }
    }));
    // New checks get new ids; these are the state an interrupted change leaves.
    for u in UNITS {
        let (c, f) = (u.component, u.file_name);
        v.push(host_check(&format!("host.running.{c}"), "host", &format!("{c} runs the flags of its installed unit"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
            let Some(text) = i.text.as_deref() else { return Finding::skip(format!("{f} is not installed")) };
            let Some(want) = installed_argv(text, f) else {
                return Finding::fail(format!("{f} does not parse: {}", unit_parse_error(text, f).unwrap_or_default()), "kubectl bootstrap server DEST");
            };
            if i.cmdline.is_empty() {
                return Finding::skip(format!("{c} is not running (see host.unit.{c})"));
            }
            match crate::bootstrap::plan::argv_difference(&i.cmdline, &want) {
                None => Finding::pass(format!("pid {}: {} flags as in {f}", i.main_pid, want.len() - 1)),
                Some(d) => Finding::fail(format!("pid {} runs other flags than {f}: {d}", i.main_pid), format!("systemctl daemon-reload && systemctl restart {f} (or kubectl bootstrap server DEST)")),
            }
        }));
        v.push(host_check(&format!("host.reload.{c}"), "host", &format!("systemd has read the current {f}"), move |_, h| {
            match h.units.get(f) {
                Some(i) if i.need_daemon_reload => Finding::fail(format!("{f} changed on disk since systemd read it (NeedDaemonReload=yes)"), format!("systemctl daemon-reload && systemctl restart {f}")),
                Some(_) => Finding::pass("NeedDaemonReload=no"),
                None => Finding::skip(format!("{f} is not installed")),
            }
        }));
        let dest = crate::model::placed(u.manifest).map(|x| x.dest).unwrap_or("");
        v.push(host_check(&format!("host.dropins.{c}"), "host", &format!("nothing but {dest} defines {f}"), move |_, h| {
            let Some(i) = h.units.get(f) else { return Finding::skip(format!("{f} is not installed")) };
            let mut bad: Vec<String> = i.drop_ins.iter().map(|d| format!("drop-in {d}")).collect();
            if !i.fragment.is_empty() && i.fragment != dest {
                bad.push(format!("loaded from {} instead of {dest}", i.fragment));
            }
            if bad.is_empty() {
                Finding::pass(format!("{dest}, no drop-ins"))
            } else {
                Finding::fail(bad.join(", "), format!("remove them (then systemctl daemon-reload && systemctl restart {f}); put changes in the manifests or --set"))
            }
        }));
    }
    v.push(host_check("host.directories", "host", "the layout's directories have their modes and owners", |_, h| {
        let mut bad = Vec::new();
        for d in crate::model::DIRECTORIES {
            let Some(p) = h.dirs.get(d.path) else {
                bad.push(format!("{} is missing", d.path));
                continue;
            };
            if p.kind != "directory" {
                bad.push(format!("{} is {}", d.path, p.kind));
            } else if d.owned && (p.mode != d.mode || p.owner != "root" || p.group != "root") {
                bad.push(format!("{} is {:04o} {}:{}, expected {:04o} root:root", d.path, p.mode, p.owner, p.group, d.mode));
            } else if !d.owned && (p.mode & 0o002 != 0 || (p.mode & 0o020 != 0 && p.group != "root") || p.owner != "root") {
                bad.push(format!("{} is {:04o} {}:{}: writable by others", d.path, p.mode, p.owner, p.group));
            }
        }
        if bad.is_empty() {
            Finding::pass(format!("{} directories as the layout says", crate::model::DIRECTORIES.len()))
        } else {
            Finding::fail(bad.join(", "), "kubectl bootstrap server DEST fixes its own directories; chown root:root DIR && chmod go-w DIR for shared ones")
        }
    }));
    v.push(host_check("host.paths", "host", "every path a flag references exists", |_, h| {
        let mut missing = Vec::new();
        let mut n = 0;
        for u in UNITS {
            if let Some(e) = h.units.get(u.file_name).and_then(|i| i.text.as_deref()).and_then(|t| unit_parse_error(t, u.file_name)) {
                missing.push(format!("{} does not parse ({e})", u.file_name));
                continue;
            }
            let Some(flags) = installed(h, u.component) else { continue };
            for (name, value) in &flags {
                if crate::model::OUTPUT_FLAGS.contains(&name.as_str()) {
                    continue;
                }
                for p in value.as_deref().unwrap_or("").split(',').filter(|p| p.starts_with('/')) {
                    n += 1;
                    if !h.paths.contains_key(p) {
                        missing.push(format!("{p} (--{name} of {})", u.component));
                    }
                }
            }
        }
        if missing.is_empty() {
            Finding::pass(format!("{n} referenced paths exist"))
        } else {
            Finding::fail(format!("missing: {}", missing.join(", ")), "kubectl bootstrap server DEST, or fix the flag")
        }
    }));
    v.push(host_check("host.permissions", "host", "keys, kubeconfigs and the encryption config are 0600 root:root", |_, h| {
        let mut bad = Vec::new();
        let mut n = 0;
        for f in FILES.iter().filter(|f| f.kind.is_secret()) {
            if let Some(p) = h.paths.get(f.dest) {
                n += 1;
                if p.mode != 0o600 || p.owner != "root" || p.group != "root" {
                    bad.push(format!("{} is {:04o} {}:{}", f.dest, p.mode, p.owner, p.group));
                }
            }
        }
        if bad.is_empty() {
            Finding::pass(format!("{n} secret files are 0600 root:root"))
        } else {
            Finding::fail(bad.join(", "), "chown root:root FILE && chmod 0600 FILE")
        }
    }));
    v.push(host_check("host.etcd", "host", "etcd answers /health", |_, h| {
        if h.etcd_health.contains("\"health\":\"true\"") {
            Finding::pass(format!("127.0.0.1:2379/health: {}", h.etcd_health))
        } else {
            Finding::fail(
                format!("etcd does not answer healthy on 127.0.0.1:2379: {}", if h.etcd_health.is_empty() { "no answer" } else { &h.etcd_health }),
                "systemctl status etcd; journalctl -u etcd",
            )
        }
    }));

    // ---- ports
    for u in UNITS {
        let c = u.component;
        v.push(host_check(&format!("ports.{c}"), "ports", &format!("{c} listens on its secure port"), move |_, h| {
            let port = serving_port(Some(h), c);
            let comm: String = c.chars().take(15).collect();
            let here: Vec<_> = h.listeners.iter().filter(|l| l.port == port).collect();
            if here.is_empty() {
                return Finding::fail(format!("nothing listens on {port}"), format!("systemctl start {c}; journalctl -u {c}"));
            }
            match here.iter().find(|l| l.process.as_deref() != Some(comm.as_str())) {
                Some(l) => Finding::fail(
                    format!("{port} is held by {} (pid {}), not {c}", l.process.as_deref().unwrap_or("?"), l.pid.map(|p| p.to_string()).unwrap_or("?".into())),
                    format!("stop that process, then systemctl restart {c}"),
                ),
                None => Finding::pass(format!("{}:{port} held by {comm}", here[0].addr)),
            }
        }));
    }
    v.push(host_check("ports.etcd-loopback", "ports", "etcd's client port 2379 is bound to loopback only", |_, h| {
        let l: Vec<_> = h.listeners.iter().filter(|l| l.port == 2379).collect();
        if l.is_empty() {
            return Finding::fail("nothing listens on 2379", "systemctl start etcd");
        }
        let exposed: Vec<String> = l.iter().filter(|x| !x.addr.parse::<IpAddr>().is_ok_and(|a| a.is_loopback())).map(|x| x.addr.clone()).collect();
        if exposed.is_empty() {
            Finding::pass("2379 on loopback only")
        } else {
            Finding::fail(format!("2379 is also bound to {}", exposed.join(", ")), "set etcd's --listen-client-urls to http://127.0.0.1:2379")
        }
    }));
    v.push(host_check("ports.insecure", "ports", "no insecure (plain HTTP) ports", |_, h| {
        let open: Vec<String> = h
            .listeners
            .iter()
            .filter(|l| l.port == 10251 || l.port == 10252)
            .map(|l| format!("{} ({})", l.port, l.process.as_deref().unwrap_or("?")))
            .collect();
        if open.is_empty() {
            Finding::pass("10251 and 10252 are closed")
        } else {
            Finding::warn(format!("plain-HTTP ports open: {}", open.join(", ")), "add --port=0 to kube-controller-manager and kube-scheduler (older releases open these by default)")
        }
    }));

    // ---- health
    for path in ["livez", "readyz"] {
        v.push(api_check(&format!("health.{path}"), "health", &format!("kube-apiserver /{path}"), move |_, client| {
            async move {
                let (status, body) = health::get(client, &format!("/{path}?verbose")).await;
                if status == 200 {
                    Finding::pass(format!("/{path} ok ({} checks)", body.lines().filter(|l| l.starts_with("[+]")).count()))
                } else {
                    let failing = health::failing_checks(&body);
                    let what = if failing.is_empty() { format!("HTTP {status}: {}", body.lines().next().unwrap_or("")) } else { failing.iter().map(|f| format!("[-]{f} failed")).collect::<Vec<_>>().join(", ") };
                    Finding::fail(format!("/{path}: {what}"), "journalctl -u kube-apiserver; a failing etcd check means etcd is down or unreachable")
                }
            }
            .boxed()
        }));
    }
    for u in UNITS.iter().filter(|u| u.component != "kube-apiserver") {
        let c = u.component;
        let run: super::AsyncFn = Box::new(move |ctx: &Ctx| {
            async move {
                match ctx.health.get(c) {
                    None => Finding::skip("needs --ssh (the port is reached through the server)"),
                    Some(Err(e)) => Finding::skip(e.clone()),
                    Some(Ok(client)) => {
                        let (status, body) = health::get(client, "/healthz").await;
                        if status == 200 {
                            Finding::pass(format!("/healthz {}", body.trim()))
                        } else {
                            let why = if status == 0 { body.lines().next().unwrap_or("").to_string() } else { format!("HTTP {status}") };
                            Finding::fail(format!("/healthz: {why}"), format!("systemctl status {c}; journalctl -u {c}"))
                        }
                    }
                }
            }
            .boxed()
        });
        v.push(Check { id: format!("health.{c}"), group: "health", title: format!("{c} https /healthz (self-signed, not verified)"), run: Runner::Async(run) });
    }

    // ---- api
    v.push(api_check("api.version", "api", "/version", |ctx, client| {
        async move {
            let (status, body) = health::get(client, "/version").await;
            if status != 200 {
                return Finding::fail(format!("/version: HTTP {status}"), "journalctl -u kube-apiserver");
            }
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let git = v["gitVersion"].as_str().unwrap_or("?").to_string();
            let binary = ctx.host().and_then(|h| h.units.get("kube-apiserver.service")).and_then(|u| u.binary_version.clone());
            match binary {
                Some(b) if !b.contains(&git) => Finding::warn(format!("API says {git}, /usr/local/bin/kube-apiserver says {b}"), "systemctl restart kube-apiserver (the binary changed since it started)"),
                _ => Finding::pass(format!("gitVersion {git}")),
            }
        }
        .boxed()
    }));
    v.push(api_check("api.cluster-info", "api", "control plane answers", |ctx, client| {
        async move {
            match client.apiserver_version().await {
                Ok(_) => Finding::pass(format!("Kubernetes control plane is running at {}", ctx.api_url)),
                Err(e) => Finding::fail(format!("{}: {e}", ctx.api_url), "check the kubeconfig's server and credentials"),
            }
        }
        .boxed()
    }));
    v.push(api_check("api.nodes", "api", "nodes listable", |_, client| {
        async move {
            match Api::<Node>::all(client.clone()).list(&ListParams::default()).await {
                Ok(l) => Finding::pass(format!("{} node(s)", l.items.len())),
                Err(e) => Finding::fail(format!("cannot list nodes: {e}"), "check the credentials' RBAC"),
            }
        }
        .boxed()
    }));
    v.push(api_check("api.pods", "api", "pods listable", |_, client| {
        async move {
            match Api::<Pod>::all(client.clone()).list(&ListParams::default()).await {
                Ok(l) => Finding::pass(format!("{} pod(s) in all namespaces", l.items.len())),
                Err(e) => Finding::fail(format!("cannot list pods: {e}"), "check the credentials' RBAC"),
            }
        }
        .boxed()
    }));
    v.push(api_check("api.service", "api", "default/kubernetes Service", |ctx, client| {
        async move {
            let svc = match Api::<Service>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
                Ok(Some(s)) => s,
                Ok(None) => return Finding::fail("default/kubernetes does not exist", "journalctl -u kube-apiserver (it creates the Service)"),
                Err(e) => return Finding::fail(format!("cannot get default/kubernetes: {e}"), "check the credentials"),
            };
            let spec = svc.spec.unwrap_or_default();
            let ip = spec.cluster_ip.unwrap_or_default();
            let port = serving_port(ctx.host(), "kube-apiserver");
            let ports: Vec<String> = spec.ports.unwrap_or_default().iter().map(|p| format!("{}→{}", p.port, p.target_port.as_ref().map(|t| match t { k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i) => i.to_string(), k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone() }).unwrap_or_default())).collect();
            let want_ports = vec![format!("443→{port}")];
            let want_ip = ctx.host().map(api_cidr).and_then(|c| crate::bootstrap::preflight::service_ip(&c));
            let mut bad = Vec::new();
            if let Some(w) = &want_ip {
                if *w != ip {
                    bad.push(format!("ClusterIP {ip}, expected {w} (first address of the apiserver's --service-cluster-ip-range)"));
                }
            }
            if ports != want_ports {
                bad.push(format!("ports {}, expected {}", ports.join(","), want_ports.join(",")));
            }
            if bad.is_empty() {
                Finding::pass(format!("ClusterIP {ip}, port {}", ports.join(",")))
            } else {
                Finding::fail(bad.join("; "), "the Service keeps the IP it was created with: delete it (kubectl delete svc kubernetes) and the apiserver recreates it")
            }
        }
        .boxed()
    }));
    v.push(api_check("api.endpoints", "api", "default/kubernetes Endpoints point at the apiserver", |ctx, client| {
        async move {
            let port = serving_port(ctx.host(), "kube-apiserver") as i32;
            let ep = match Api::<Endpoints>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
                Ok(Some(e)) => e,
                Ok(None) => return Finding::fail("Endpoints default/kubernetes does not exist", "journalctl -u kube-apiserver"),
                Err(e) => return Finding::fail(format!("cannot get Endpoints: {e}"), "check the credentials"),
            };
            let mut addrs = Vec::new();
            for s in ep.subsets.unwrap_or_default() {
                let ports: Vec<i32> = s.ports.unwrap_or_default().iter().map(|p| p.port).collect();
                for a in s.addresses.unwrap_or_default() {
                    for p in &ports {
                        addrs.push((a.ip.clone(), *p));
                    }
                }
            }
            let shown: Vec<String> = addrs.iter().map(|(a, p)| format!("{a}:{p}")).collect();
            if addrs.is_empty() {
                return Finding::fail("Endpoints default/kubernetes has no addresses", "journalctl -u kube-apiserver (advertise address)");
            }
            let own = ctx.host().map(|h| h.addresses.clone());
            let wrong: Vec<&String> = shown
                .iter()
                .zip(&addrs)
                .filter(|(_, (a, p))| *p != port || own.as_ref().is_some_and(|o| !o.contains(a)))
                .map(|(s, _)| s)
                .collect();
            // EndpointSlices where discovery.k8s.io/v1 is served.
            let (status, _) = health::get(client, "/apis/discovery.k8s.io/v1").await;
            let mut slices = String::new();
            if status == 200 {
                let (st, body) = health::get(client, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes").await;
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let eps: Vec<String> = v["items"].as_array().into_iter().flatten().flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default()).flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default()).filter_map(|a| a.as_str().map(str::to_string)).collect();
                if st != 200 || eps.is_empty() {
                    return Finding::fail("no EndpointSlice for the kubernetes Service", "journalctl -u kube-apiserver");
                }
                slices = format!("; EndpointSlice {}", eps.join(","));
            }
            if wrong.is_empty() {
                Finding::pass(format!("{}{slices}", shown.join(",")))
            } else {
                Finding::fail(format!("{} is not this server's address:{port}", wrong.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")), "set --advertise-address to the server's address")
            }
        }
        .boxed()
    }));

    // ---- consistency
    v.push(host_check("consistency.service-cidr", "consistency", "apiserver and controller-manager agree on the service CIDR", |_, h| {
        let api = api_cidr(h);
        let cm = installed(h, "kube-controller-manager").and_then(|f| flag(&f, "service-cluster-ip-range").map(str::to_string));
        let api_explicit = installed(h, "kube-apiserver").is_some_and(|f| flag(&f, "service-cluster-ip-range").is_some());
        match cm {
            Some(cm) if cm != api => Finding::fail(
                format!("kube-apiserver uses {api}{}, kube-controller-manager {cm}", if api_explicit { "" } else { " (its default: the flag is absent)" }),
                "give both units the same --service-cluster-ip-range and restart them",
            ),
            Some(cm) => Finding::pass(format!("both {cm}")),
            None => Finding::pass(format!("kube-apiserver {api}; kube-controller-manager sets none")),
        }
    }));
    v.push(api_check("consistency.service-ip-san", "consistency", "the kubernetes Service IP is in the serving certificate", |ctx, client| {
        async move {
            let Some(h) = ctx.host() else { return Finding::skip("needs --ssh to read the serving certificate") };
            let Some(cert) = installed(h, "kube-apiserver").and_then(|f| flag(&f, "tls-cert-file").map(str::to_string)).and_then(|p| h.certs.get(&p).cloned()) else {
                return Finding::fail("cannot read the apiserver's --tls-cert-file", "kubectl bootstrap server DEST");
            };
            let Ok(cert) = Cert::from_pem(cert.as_bytes()) else { return Finding::fail("the serving certificate does not parse", "reissue it") };
            let ip = match Api::<Service>::namespaced(client.clone(), "default").get_opt("kubernetes").await {
                Ok(Some(s)) => s.spec.and_then(|s| s.cluster_ip).unwrap_or_default(),
                _ => return Finding::skip("no default/kubernetes Service to compare"),
            };
            if cert.covers(&ip) {
                Finding::pass(format!("{ip} is a SAN of the serving certificate"))
            } else {
                Finding::fail(format!("ClusterIP {ip} is not among the serving certificate's SANs (in-cluster clients will fail TLS)"), "align --service-cluster-ip-range with the certificate, or reissue the certificate with that IP")
            }
        }
        .boxed()
    }));
    v.push(host_check("consistency.cert-chain", "consistency", "the serving certificate chains to ca.crt for the names kubeconfigs use", |_, h| {
        let flags = installed(h, "kube-apiserver").unwrap_or_default();
        let get = |f: &str| flag(&flags, f).and_then(|p| h.certs.get(p)).and_then(|t| Cert::from_pem(t.as_bytes()).ok());
        let (Some(serving), Some(ca)) = (get("tls-cert-file"), get("client-ca-file")) else {
            return Finding::fail("cannot read --tls-cert-file or --client-ca-file", "kubectl bootstrap server DEST");
        };
        if !serving.signed_by(&ca) {
            return Finding::fail("the serving certificate is not signed by the client CA", "reissue kube-api-server.crt from ca.crt");
        }
        let mut names: Vec<String> = h.kubeconfigs.values().filter_map(|(s, _)| crate::pki::host_of(s)).collect();
        names.sort();
        names.dedup();
        let missing: Vec<&String> = names.iter().filter(|n| !serving.covers(n)).collect();
        if missing.is_empty() {
            Finding::pass(format!("signed by ca.crt; names {}", names.join(", ")))
        } else {
            Finding::fail(format!("the serving certificate does not name {}", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")), "reissue kube-api-server.crt with those SANs")
        }
    }));
    v.push(host_check("consistency.cert-expiry", "consistency", "certificates are not about to expire", |_, h| {
        let mut certs: Vec<(String, i64)> = h.certs.iter().filter_map(|(p, t)| Cert::from_pem(t.as_bytes()).ok().map(|c| (p.clone(), c.seconds_left()))).collect();
        certs.extend(h.kubeconfigs.iter().filter_map(|(p, (_, c))| c.as_ref().and_then(|c| Cert::from_pem(c.as_bytes()).ok()).map(|c| (format!("{p} (client)"), c.seconds_left()))));
        if certs.is_empty() {
            return Finding::fail("no certificates found", "kubectl bootstrap server DEST");
        }
        certs.sort_by_key(|c| c.1);
        let days = |s: i64| s / 86400;
        let expired: Vec<String> = certs.iter().filter(|c| c.1 <= 0).map(|c| c.0.clone()).collect();
        let soon: Vec<String> = certs.iter().filter(|c| c.1 > 0 && days(c.1) < 30).map(|c| format!("{} ({}d)", c.0, days(c.1))).collect();
        if !expired.is_empty() {
            Finding::fail(format!("expired: {}", expired.join(", ")), "reissue them from ca.crt and run kubectl bootstrap server DEST")
        } else if !soon.is_empty() {
            Finding::warn(format!("expiring within 30 days: {}", soon.join(", ")), "reissue them before they expire")
        } else {
            Finding::pass(format!("{} certificates; soonest {} in {} days", certs.len(), certs[0].0, days(certs[0].1)))
        }
    }));

    // ---- rbac
    for spec in CLUSTER_ROLES {
        v.push(api_check(&format!("rbac.clusterrole.{}", spec.name), "rbac", &format!("ClusterRole {}", spec.name), move |_, client| {
            async move {
                let got = match Api::<ClusterRole>::all(client.clone()).get_opt(spec.name).await {
                    Ok(Some(r)) => r,
                    Ok(None) => return Finding::fail(format!("ClusterRole {} does not exist", spec.name), "kubectl bootstrap server DEST (applies the RBAC)"),
                    Err(e) => return Finding::fail(format!("cannot get it: {e}"), "check the credentials"),
                };
                let want = crate::kube::rbac::cluster_role(spec).rules.unwrap_or_default();
                let have = got.rules.unwrap_or_default();
                let mut diff = Vec::new();
                for (i, w) in want.iter().enumerate() {
                    let Some(h) = have.get(i) else {
                        diff.push(format!("rule {} missing", i + 1));
                        continue;
                    };
                    let set = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
                    for (what, a, b) in [("verbs", w.verbs.clone(), h.verbs.clone()), ("resources", set(&w.resources), set(&h.resources)), ("apiGroups", set(&w.api_groups), set(&h.api_groups))] {
                        let missing: Vec<&String> = a.iter().filter(|x| !b.contains(x)).collect();
                        let extra: Vec<&String> = b.iter().filter(|x| !a.contains(x)).collect();
                        if !missing.is_empty() {
                            diff.push(format!("rule {} missing {what} {}", i + 1, missing.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",")));
                        }
                        if !extra.is_empty() {
                            diff.push(format!("rule {} has extra {what} {}", i + 1, extra.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",")));
                        }
                    }
                }
                if have.len() > want.len() {
                    diff.push(format!("{} extra rule(s)", have.len() - want.len()));
                }
                if diff.is_empty() {
                    Finding::pass(format!("{} rule(s) as in the manifests", want.len()))
                } else {
                    Finding::fail(diff.join("; "), "kubectl bootstrap server DEST (server-side applies the manifests' rules)")
                }
            }
            .boxed()
        }));
    }
    for spec in CLUSTER_ROLE_BINDINGS {
        v.push(api_check(&format!("rbac.clusterrolebinding.{}", spec.name), "rbac", &format!("ClusterRoleBinding {}", spec.name), move |_, client| {
            async move {
                let got = match Api::<ClusterRoleBinding>::all(client.clone()).get_opt(spec.name).await {
                    Ok(Some(r)) => r,
                    Ok(None) => return Finding::fail(format!("ClusterRoleBinding {} does not exist", spec.name), "kubectl bootstrap server DEST (applies the RBAC)"),
                    Err(e) => return Finding::fail(format!("cannot get it: {e}"), "check the credentials"),
                };
                let want = crate::kube::rbac::cluster_role_binding(spec);
                let mut diff = Vec::new();
                if got.role_ref != want.role_ref {
                    diff.push(format!("roleRef {}/{}, expected ClusterRole/{}", got.role_ref.kind, got.role_ref.name, spec.role));
                }
                let key = |s: &k8s_openapi::api::rbac::v1::Subject| format!("{} {}", s.kind, s.name);
                let (w, h): (Vec<String>, Vec<String>) = (want.subjects.unwrap_or_default().iter().map(key).collect(), got.subjects.unwrap_or_default().iter().map(key).collect());
                for m in w.iter().filter(|x| !h.contains(x)) {
                    diff.push(format!("missing subject {m}"));
                }
                for e in h.iter().filter(|x| !w.contains(x)) {
                    diff.push(format!("extra subject {e}"));
                }
                if diff.is_empty() {
                    Finding::pass(format!("{} → ClusterRole {}", w.join(", "), spec.role))
                } else {
                    Finding::fail(diff.join("; "), "kubectl bootstrap server DEST")
                }
            }
            .boxed()
        }));
    }
    v.push(api_check("rbac.kubelet-access", "rbac", "the apiserver's kubelet client may reach kubelets", |ctx, client| {
        async move {
            // The user is the CN of --kubelet-client-certificate.
            let from_cert = ctx.host().and_then(|h| {
                let p = installed(h, "kube-apiserver").and_then(|f| flag(&f, "kubelet-client-certificate").map(str::to_string))?;
                Cert::from_pem(h.certs.get(&p)?.as_bytes()).ok()?.common_name()
            });
            let (user, source) = match from_cert {
                Some(u) => (u, "CN of --kubelet-client-certificate"),
                None => match CLUSTER_ROLE_BINDINGS.iter().flat_map(|b| b.subjects).find(|s| s.kind == "User") {
                    Some(s) => (s.name.to_string(), "the manifests' binding (no --ssh to read the certificate)"),
                    None => return Finding::skip("no user to check"),
                },
            };
            let mut denied = Vec::new();
            for sub in ["proxy", "stats", "log", "spec", "metrics"] {
                let sar = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(user.clone()),
                        resource_attributes: Some(ResourceAttributes { verb: Some("get".into()), resource: Some("nodes".into()), subresource: Some(sub.into()), ..Default::default() }),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &sar).await {
                    Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => {}
                    Ok(_) => denied.push(format!("nodes/{sub}")),
                    Err(e) => return Finding::fail(format!("SubjectAccessReview failed: {e}"), "check the credentials"),
                }
            }
            if denied.is_empty() {
                Finding::pass(format!("user {user} ({source}) may get nodes/proxy, stats, log, spec, metrics"))
            } else {
                Finding::fail(format!("user {user} ({source}) is denied {}", denied.join(", ")), "kubectl bootstrap server DEST (applies the ClusterRoleBinding)")
            }
        }
        .boxed()
    }));

    // ---- leader
    for c in UNITS.iter().map(|u| u.component).filter(|c| *c != crate::model::APISERVER) {
        v.push(api_check(&format!("leader.{c}"), "leader", &format!("{c} holds a fresh leader Lease"), move |ctx, client| {
            async move {
                match Api::<Lease>::namespaced(client.clone(), "kube-system").get_opt(c).await {
                    Ok(Some(l)) => {
                        // Judged by the server's clock when there is one, and by the Lease's own duration.
                        let skew = ctx.host().map(|h| h.skew).unwrap_or(0.0);
                        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0) + skew;
                        match health::lease_verdict(&l.spec.unwrap_or_default(), now, 0) {
                            Ok(d) => Finding::pass(d),
                            Err(why) => Finding::fail(format!("{c}: {why}"), format!("systemctl status {c}; journalctl -u {c}")),
                        }
                    }
                    Ok(None) => Finding::fail(format!("no Lease kube-system/{c}"), format!("systemctl status {c} (leader election has not happened)")),
                    Err(e) => Finding::fail(format!("cannot get the Lease: {e}"), "check the credentials"),
                }
            }
            .boxed()
        }));
    }

    // ---- cis (kube-bench ids)
    v.push(cis_flag("cis.1.2.1", "--anonymous-auth=false on kube-apiserver", "kube-apiserver", |v| v == Some("false"), "add --anonymous-auth=false to kube-apiserver"));
    v.push(cis_flag("cis.1.2.18", "--profiling=false on kube-apiserver", "kube-apiserver", |v| v == Some("false"), "add --profiling=false to kube-apiserver"));
    v.push(cis_flag("cis.1.3.2", "--profiling=false on kube-controller-manager", "kube-controller-manager", |v| v == Some("false"), "add --profiling=false to kube-controller-manager"));
    v.push(cis_flag("cis.1.4.1", "--profiling=false on kube-scheduler", "kube-scheduler", |v| v == Some("false"), "add --profiling=false to kube-scheduler"));
    v.push(cis_flag("cis.1.2.8", "--authorization-mode includes Node", "kube-apiserver", |v| v.is_some_and(|v| v.split(',').any(|m| m == "Node")), "add Node to --authorization-mode"));
    v.push(cis_flag("cis.1.2.9", "--authorization-mode includes RBAC", "kube-apiserver", |v| v.is_some_and(|v| v.split(',').any(|m| m == "RBAC")), "add RBAC to --authorization-mode"));
    v.push(cis_flag("cis.1.2.22", "--audit-log-path is set", "kube-apiserver", |v| v.is_some_and(|v| !v.is_empty()), "set --audit-log-path"));
    v.push(cis_flag("cis.1.2.23", "--audit-log-maxage >= 30", "kube-apiserver", |v| num_at_least(v, 30), "set --audit-log-maxage=30"));
    v.push(cis_flag("cis.1.2.24", "--audit-log-maxbackup >= 10", "kube-apiserver", |v| num_at_least(v, 10), "set --audit-log-maxbackup=10"));
    v.push(cis_flag("cis.1.2.25", "--audit-log-maxsize >= 100", "kube-apiserver", |v| num_at_least(v, 100), "set --audit-log-maxsize=100"));
    v.push(cis_flag("cis.1.3.7", "--bind-address=127.0.0.1 on kube-controller-manager", "kube-controller-manager", |v| v == Some("127.0.0.1"), "set --bind-address=127.0.0.1 (health checks then need the server's loopback)"));
    v.push(cis_flag("cis.1.4.2", "--bind-address=127.0.0.1 on kube-scheduler", "kube-scheduler", |v| v == Some("127.0.0.1"), "set --bind-address=127.0.0.1"));
    v.push(host_check("cis.1.2.29", "cis", "kube-apiserver talks to etcd over TLS", |ctx, h| {
        let Some(f) = effective(h, "kube-apiserver") else { return Finding::skip("kube-apiserver is neither running nor installed") };
        let servers = flag(&f, "etcd-servers").unwrap_or("");
        let ok = flag(&f, "etcd-certfile").is_some() && flag(&f, "etcd-keyfile").is_some() && servers.split(',').all(|s| s.starts_with("https://"));
        cis(ctx, ok, format!("--etcd-servers={servers} with client certificates"), format!("--etcd-servers={servers} without TLS client certificates"), "serve etcd over TLS and set --etcd-cafile, --etcd-certfile, --etcd-keyfile")
    }));
    v.push(host_check("cis.1.2.34", "cis", "an encryption provider (aescbc, kms, secretbox) protects Secrets", |ctx, h| {
        let first = h.encryption_providers.first().cloned();
        let ok = first.as_deref().is_some_and(|p| matches!(p, "aescbc" | "kms" | "secretbox"));
        let shown = if h.encryption_providers.is_empty() { "no --encryption-provider-config providers".to_string() } else { format!("providers {}", h.encryption_providers.join(", ")) };
        cis(ctx, ok, shown.clone(), shown, "put aescbc, kms or secretbox first in the EncryptionConfiguration")
    }));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_grouped() {
        let r = registry();
        let mut ids: Vec<&str> = r.iter().map(|c| c.id.as_str()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate check ids");
        for c in &r {
            assert!(super::super::GROUPS.contains(&c.group), "{}", c.id);
            assert!(c.id.starts_with(&format!("{}.", c.group)), "{} is not under its group {}", c.id, c.group);
        }
    }

    #[test]
    fn first_difference_names_the_line() {
        assert_eq!(first_difference("a\nb\nc\n", "a\nb\nc\n"), None);
        assert_eq!(first_difference("a\n  --v=4 \\\nc\n", "a\n  --v=2 \\\nc\n"), Some((2, "--v=4 \\".into(), "--v=2 \\".into())));
        assert_eq!(first_difference("a\n", "a\nb\n"), Some((2, "<end of file>".into(), "b".into())));
    }
}
