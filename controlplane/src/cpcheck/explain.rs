//! `kubectl cpcheck explain ID`: for every check id, what it checks, why it
//! matters, how to fix what it finds, and where in the guide (or which
//! upstream code) it comes from. The checks' own rows are data here, one
//! per table row id (a per-component row, `host.unit.kube-scheduler`, is
//! explained by its row, `host.unit`); the CIS controls from their data
//! (title, remediation, benchmark section: never the benchmark's licensed
//! rationale); the failure signatures from `crate::diagnose`. A unit test
//! holds the two sides together: no id without an explanation, no
//! explanation without an id.

use serde::Serialize;

use super::{Check, Group};

/// One table row's explanation.
pub struct Explanation {
    /// The row's id (`host.unit`: every `host.unit.COMPONENT`).
    pub id: &'static str,
    pub checks: &'static str,
    pub why: &'static str,
    pub fix: &'static str,
    /// The guide's step, the upstream code or document.
    pub see: &'static str,
}

const fn x(id: &'static str, checks: &'static str, why: &'static str, fix: &'static str, see: &'static str) -> Explanation {
    Explanation { id, checks, why, fix, see }
}

/// Every table row's explanation, by row id.
pub const EXPLANATIONS: &[Explanation] = &[
    x("host.unit", "The unit is active and enabled, and systemd has not restarted it by itself since it was last started on request (NRestarts).", "A unit that is down is a component that is not running; one systemd keeps restarting is a process that crashes, even when it answers healthy now.", "systemctl enable --now UNIT; journalctl -u UNIT: the row names the cause when the journal shows a known one (diagnose.*).", "the guide's step 08 (Start the Controller Services)"),
    x("host.drift", "The installed unit file (or the scheduler config) is what the manifests, plus --set overrides, install, line by line.", "A hand edit is lost at the next bootstrap run, and what runs is no longer what was reviewed.", "kubectl bootstrap server DEST re-installs it and restarts the unit; or make the edit an override (--set COMPONENT.FLAG=VALUE).", "manifests/units, manifests/configs"),
    x("host.running", "The running process's argv is the installed unit's ExecStart.", "A unit file changed without a restart does not run what it says.", "systemctl restart UNIT (bootstrap restarts what it changes).", "systemd.service(5) ExecStart"),
    x("host.reload", "systemd has read the unit file as it is on disk (NeedDaemonReload=no).", "A restart would start what systemd remembers, not the file.", "systemctl daemon-reload, then restart the unit.", "systemctl(1) daemon-reload"),
    x("host.dropins", "No drop-in and no other unit file overrides the installed unit.", "A drop-in changes flags behind the unit file's back: cpcheck, bootstrap and a reader of the file all see something else than what runs.", "Remove the drop-in (systemctl revert UNIT), or make its change an override.", "systemd.unit(5) drop-in directories"),
    x("host.directories", "The layout's directories exist, owned by root, with their modes; shared ones not writable by others.", "A directory others can write lets them replace a binary or a key.", "kubectl bootstrap server DEST creates them; chmod/chown as the row says.", "the guide's step 08 (mkdir -p of the config and state directories; kubectl bootstrap manifests lists them)"),
    x("host.paths", "Every path a flag of an installed unit names exists.", "A component started without a file it names exits at start.", "kubectl bootstrap server DEST puts back the layout's files; fix the flag for a path added by hand.", "the guide's step 08 (the files it places; kubectl bootstrap manifests lists them)"),
    x("host.permissions", "Every layout file has its owner and mode: keys, kubeconfigs and the encryption config 0600 root:root.", "A key or kubeconfig others can read hands out the cluster.", "chmod 600 and chown root:root, or kubectl bootstrap server DEST.", "CIS 1.1 (control plane node configuration files)"),
    x("host.etcd", "etcd answers healthy on the apiserver's --etcd-servers.", "Without etcd the apiserver serves nothing.", "systemctl status etcd; journalctl -u etcd.", "the guide's step 07 (Bootstrapping etcd)"),
    x("host.userland", "The server has what the plugins' scripts need: systemd 239 or later, GNU coreutils, flock and the other commands.", "On an older or trimmed server the scripts cannot read or change it safely.", "Install the missing packages (the row names them), or use a supported release (Debian 11+, Ubuntu 20.04+).", "README (servers supported)"),
    x("host.arch", "Each installed binary is built for the server's architecture.", "A binary of another architecture fails to exec (or runs under emulation, slowly).", "Ship the binaries of the server's architecture (downloads/controller for arm64 or amd64).", "the guide's step 02 (downloads per architecture)"),
    x("ports", "The component listens on its secure port, and it is its own process that holds it.", "Another process on the port answers for it, or keeps it from starting.", "ss -ltnp; stop the other process, or fix --secure-port.", "the secure ports: 6443 (apiserver), 10257 (controller-manager), 10259 (scheduler)"),
    x("ports.etcd-loopback", "etcd's client port is bound to loopback only.", "In this layout etcd is plain HTTP: bound elsewhere, anyone on the network reads and writes every object, Secrets included.", "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379 in /etc/default/etcd; systemctl restart etcd.", "the guide's step 07"),
    x("ports.insecure", "No plain-HTTP port of older releases (10251, 10252, 8080) is open.", "Plain HTTP needs no credentials.", "--port=0 (older releases), or a release without them.", "CIS 1.2.19/1.3.x/1.4.x (insecure ports)"),
    x("health", "The apiserver's /livez and /readyz (with the kubeconfig's credentials, verbose), the controller-manager's and scheduler's /healthz, through SSH tunnels.", "A running process that does not answer healthy is not serving.", "journalctl -u UNIT; /readyz names the failing sub-check (etcd: etcd is down or unreachable); the row names the cause when the journal shows a known one.", "Kubernetes API health endpoints"),
    x("api.version", "The API's /version is the installed binary's, built for the server's platform.", "A different version answers: another apiserver, or one not restarted after an upgrade.", "Restart the apiserver's unit; check the kubeconfig points at this server.", "the guide's step 08 (Verification: kubectl version)"),
    x("api.cluster-info", "The kubeconfig's credentials reach the API.", "Nothing else of the API can be checked, and kubectl does not work either.", "kubectl --kubeconfig ADMIN-KUBECONFIG cluster-info; check the server URL and credentials.", "the guide's step 08 (Verification)"),
    x("api.nodes", "The admin credentials may list Nodes.", "RBAC or authentication is broken for the admin.", "The admin certificate's O must be system:masters; check --authorization-mode.", "the guide's step 05 (admin kubeconfig)"),
    x("api.pods", "The admin credentials may list Pods in every namespace.", "As api.nodes.", "As api.nodes.", "the guide's step 05"),
    x("api.service", "The default/kubernetes Service has the first address of --service-cluster-ip-range and port 443.", "In-cluster clients reach the API through it.", "A Service made under another range keeps its address: delete it and the apiserver re-creates it.", "the apiserver's --service-cluster-ip-range"),
    x("api.endpoints", "The kubernetes Endpoints list this server's advertise address on 6443.", "In-cluster clients are sent elsewhere.", "--advertise-address must be an address of this server.", "the apiserver's --advertise-address"),
    x("consistency.service-cidr", "The apiserver and controller-manager use the same --service-cluster-ip-range.", "The controller-manager allocates addresses the apiserver does not route.", "Give both units the same range; restart both.", "the guide's step 08 (both units)"),
    x("consistency.service-ip-san", "The kubernetes Service's ClusterIP is a SAN of the serving certificate.", "In-cluster clients reaching the API by the Service IP fail TLS.", "Align --service-cluster-ip-range with the certificate, or re-issue the certificate with that IP.", "the guide's step 04 (kube-api-server SANs: 10.32.0.1)"),
    x("certs.served", "What each component's port serves: 6443 the apiserver's --tls-cert-file byte for byte, signed by the CA, naming the addresses clients use; 10257 and 10259 the certificate made at start, or their --tls-cert-file.", "A certificate written on disk is not the one served until the process loads it; one that does not match its key never will be.", "Wait out the reload (about a minute) for a matching pair; re-issue the pair if it does not match; systemctl restart UNIT.", "k8s.io/apiserver dynamiccertificates (serving pair reloads)"),
    x("certs.pair", "The serving certificate and its key on disk hold the same public key (compared on the server by openssl; nothing of the key leaves it).", "A mismatched pair is never loaded: the component keeps serving the old one, and fails at its next start.", "Put back the certificate issued for the key, or re-issue both: kubectl bootstrap certs renew; kubectl bootstrap server DEST.", "crypto/tls X509KeyPair"),
    x("certs.chain", "The serving certificate on disk is signed by the cluster CA (--client-ca-file) and names every host the kubeconfigs use.", "Clients verifying against the cluster CA refuse it.", "Re-issue the serving certificate from the cluster CA with those names.", "the guide's step 04"),
    x("certs.expiry", "Every certificate on the server, in its kubeconfigs and in --kubeconfig, against --warn-within (default 30d).", "An expired certificate stops the plane: clients are refused, the apiserver is not trusted.", "kubectl bootstrap certs renew on the jumpbox, then kubectl bootstrap server DEST.", "kubeadm certs check-expiration (the same horizon)"),
    x("certs.restart", "No file the component reads only at start (kubeconfig, service-account keys, kubelet client pair…) changed after its process started.", "The process still runs with the old file: a renewal is not in effect until it restarts.", "systemctl restart UNIT; bootstrap restarts what reads a file it changes.", "k8s.io/apiserver dynamiccertificates (what reloads), the RELOADED table in cpcheck/checks/certs.rs"),
    x("rbac.clusterrole", "The ClusterRole bootstrap applies has exactly its rules.", "Missing verbs or resources break the apiserver's access to kubelets (logs, exec).", "kubectl bootstrap server DEST re-applies it.", "the guide's step 08 (RBAC for Kubelet Authorization)"),
    x("rbac.clusterrolebinding", "The ClusterRoleBinding binds the role to the apiserver's kubelet client user.", "As rbac.clusterrole.", "kubectl bootstrap server DEST re-applies it.", "the guide's step 08 (RBAC for Kubelet Authorization)"),
    x("rbac.kubelet-access", "A SubjectAccessReview for the CN of --kubelet-client-certificate on nodes/proxy is allowed.", "kubectl logs and exec fail with Forbidden.", "The binding's user must be the certificate's CN (kubernetes in the guide).", "the guide's step 08"),
    x("leader", "The controller-manager's and scheduler's Leases are held by a live holder, renewed within their duration.", "No leader: no controller runs, no pod is scheduled.", "journalctl -u UNIT (a client that cannot reach the API cannot renew).", "client-go leaderelection"),
    x("cluster.apiservers-ready", "Every server's apiserver answers /readyz.", "A load balancer sends clients to one that is not.", "journalctl -u UNIT (the apiserver's) on the server named.", "the guide's step 08 (a highly available plane)"),
    x("cluster.endpoints", "The kubernetes Endpoints list every server's advertise address.", "In-cluster clients miss a server, or are sent to one that is gone.", "--advertise-address on each server; a stopped apiserver is removed after its lease ends.", "the apiserver's endpoint reconciler (lease)"),
    x("cluster.leases", "Each Lease has one holder, a server of the plane.", "Two controller-managers acting at once fight over objects.", "--leader-elect=true on every server; journalctl on the holder.", "client-go leaderelection"),
    x("cluster.same-files", "Every server has the same layout files (public by sha256, secret by an HMAC under this run's key).", "Servers that differ serve differently: a certificate or flag one server lacks.", "kubectl bootstrap server S1 S2 S3 with the same assets.", "the guide's step 08"),
    x("cluster.etcd-members", "Every server's etcd is healthy and a member of the same cluster.", "A split or missing member loses quorum sooner.", "systemctl status etcd; ETCD_INITIAL_CLUSTER in /etc/default/etcd.", "the guide's step 07"),
    x("cluster.endpoint", "--endpoint reaches a ready apiserver, its certificate naming the endpoint's host.", "Clients of the load balancer fail.", "Add the endpoint's host to the serving certificate's SANs; check the load balancer's backends.", "the guide's step 08 (a highly available plane)"),
];

/// What `explain ID` prints (`-o json` too).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Explained {
    pub id: String,
    pub title: String,
    pub checks: String,
    pub why: String,
    pub fix: String,
    pub see: String,
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}: {}\n", self.id, self.title)?;
        writeln!(f, "Checks: {}\n", self.checks)?;
        writeln!(f, "Why:    {}\n", self.why)?;
        writeln!(f, "Fix:    {}\n", self.fix)?;
        write!(f, "See:    {}", self.see)
    }
}

/// The table row id a check id comes from (`host.unit.kube-scheduler` →
/// `host.unit`).
fn row_id(c: &Check) -> Option<&'static str> {
    super::checks::table(c.group).iter().find(|d| d.expand(c.group).iter().any(|x| x.id == c.id)).map(|d| d.id)
}

/// The explanation of `id`: a check id (a moved one as its new id), or a
/// failure signature's id.
pub fn explain(id: &str) -> Option<Explained> {
    let id = super::current_id(id);
    let signature = |s: &crate::diagnose::Signature, shown: String| Explained {
        id: shown,
        title: s.title.to_string(),
        checks: format!("The journals of {} for: {} (when seen, it means: {})", s.components.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "), s.pattern, s.cause),
        why: s.why.to_string(),
        fix: s.fix.to_string(),
        see: s.source.to_string(),
    };
    if let Some(s) = crate::diagnose::signature(id) {
        return Some(signature(s, id.to_string()));
    }
    let c = super::catalog().into_iter().find(|c| c.id == id)?;
    if let super::Item::Cis(row) = c.item {
        let section = row.id.rsplit_once('.').map(|(s, _)| s).unwrap_or(row.id);
        return Some(Explained {
            id: c.id.clone(),
            title: c.title.clone(),
            checks: format!(
                "CIS Kubernetes Benchmark {} control {} ({}), as kube-bench audits it{}",
                row.benchmark,
                row.id,
                c.title,
                if row.manual { "; a Manual control: reported WARN, never FAIL" } else { "" }
            ),
            why: format!("A control of the benchmark's section {section}: its rationale is the benchmark's own text (not reproduced here)."),
            fix: row.remediation(),
            see: format!("CIS Kubernetes Benchmark {}, section {section}; kube-bench cfg/{}", row.benchmark, row.benchmark),
        });
    }
    if let super::Item::Signature(s) = c.item {
        return Some(signature(s, c.id.clone()));
    }
    let e = EXPLANATIONS.iter().find(|e| Some(e.id) == row_id(&c))?;
    Some(Explained { id: c.id.clone(), title: c.title.clone(), checks: e.checks.into(), why: e.why.into(), fix: e.fix.into(), see: e.see.into() })
}

/// `explain --list`: every failure signature (id, whose journal, title).
pub fn signatures() -> Vec<(String, String, String)> {
    crate::diagnose::SIGNATURES.iter().map(|s| (s.id.to_string(), s.components.iter().map(|c| c.name()).collect::<Vec<_>>().join(","), s.title.to_string())).collect()
}

impl Explained {
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an explanation serializes")
    }
}

/// `explain --list -o json`.
pub fn signatures_json() -> String {
    let v: Vec<serde_json::Value> = signatures().iter().map(|(id, c, t)| serde_json::json!({"id": id, "components": c.split(',').collect::<Vec<_>>(), "title": t})).collect();
    serde_json::to_string_pretty(&v).expect("serializes")
}

/// Groups whose rows are explained here (the others from their own data).
pub fn explained_here(g: Group) -> bool {
    !matches!(g, Group::Cis | Group::Diagnose)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidy: no id without an explanation, no explanation without an id.
    #[test]
    fn every_id_has_an_explanation_and_every_explanation_an_id() {
        let mut rows: Vec<&str> = Group::ALL.iter().filter(|g| explained_here(**g)).flat_map(|g| super::super::checks::table(*g).iter().map(|d| d.id)).collect();
        rows.sort();
        rows.dedup();
        let mut explained: Vec<&str> = EXPLANATIONS.iter().map(|e| e.id).collect();
        explained.sort();
        let n = explained.len();
        explained.dedup();
        assert_eq!(explained.len(), n, "an id explained twice");
        let missing: Vec<&&str> = rows.iter().filter(|r| !explained.contains(r)).collect();
        let extra: Vec<&&str> = explained.iter().filter(|e| !rows.contains(e)).collect();
        assert!(missing.is_empty(), "rows without an explanation: {missing:?}");
        assert!(extra.is_empty(), "explanations without a row: {extra:?}");
        // Every check id, CIS and diagnose included, explains, with a fix.
        for c in super::super::catalog() {
            let e = explain(&c.id).unwrap_or_else(|| panic!("{} does not explain", c.id));
            assert!(!e.fix.is_empty() && !e.checks.is_empty() && !e.see.is_empty(), "{e:?}");
        }
        for (id, _, _) in signatures() {
            assert!(explain(&id).is_some(), "{id}");
        }
        // A moved id explains as its new one; an unknown one does not.
        assert_eq!(explain("consistency.cert-expiry").map(|e| e.id), Some("certs.expiry".to_string()));
        assert!(explain("no.such").is_none());
    }
}
