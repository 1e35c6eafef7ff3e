//! Failure signatures: the lines a control-plane component writes to its
//! journal when it cannot run as deployed, each with its cause and fix, as
//! data (id, components, pattern, cause, fix, where it comes from). Matched
//! against journal lines the probe read ([`crate::remote::probe`]'s
//! `signatures` fact): bootstrap names the cause of a unit that does not
//! become healthy, cpcheck's `diagnose.*` rows list every signature seen.
//!
//! Journal text is server text: what is matched here has already been
//! escaped, and a line that may hold a secret was dropped before it got
//! here ([`crate::remote::journal::may_hold_secret`]).

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::model::Component;

const API: Component = Component::KubeApiserver;
const CM: Component = Component::KubeControllerManager;
const SCHED: Component = Component::KubeScheduler;
const ALL: &[Component] = &[API, CM, SCHED];

/// One known failure.
#[derive(Debug)]
pub struct Signature {
    /// Stable; the cpcheck row is `diagnose.ID`.
    pub id: &'static str,
    /// What holds when it is not seen (the cpcheck row's title).
    pub title: &'static str,
    /// Whose journal it is looked for in.
    pub components: &'static [Component],
    /// Fixed strings the server keeps a line for (any of them): the
    /// server's `grep -F` sends only candidates.
    pub needles: &'static [&'static str],
    /// What a line's message must match (Rust `regex`); `{1}`, `{2}` in
    /// the cause and fix are its groups.
    pub pattern: &'static str,
    pub cause: &'static str,
    pub fix: &'static str,
    /// Why it matters (`kubectl cpcheck explain`).
    pub why: &'static str,
    /// The guide's step or the upstream code it comes from.
    pub source: &'static str,
}

/// Every signature, in the order they are tried (the first match of a line
/// wins).
pub const SIGNATURES: &[Signature] = &[
    Signature {
        id: "scheduler-config-version",
        title: "the scheduler config's apiVersion is registered in this release",
        components: &[SCHED],
        needles: &["is registered for version"],
        pattern: r#"no kind \\?"(\w+)\\?" is registered for version \\?"([^"\\]+)"#,
        cause: "the scheduler config's apiVersion {2} is not registered in this scheduler release (kind {1})",
        fix: "render the config for the binaries' release: kubectl bootstrap server DEST --kubernetes-version vX.Y (what the scheduler binary's --version prints), or ship the release the config was written for",
        why: "the scheduler exits at start: no pod is ever scheduled",
        source: "the guide's step 08 (the scheduler config, kubescheduler.config.k8s.io/v1: v1.25 and later; v1beta1 before)",
    },
    Signature {
        id: "certificate-name",
        title: "certificates name the addresses used to reach them",
        components: ALL,
        needles: &["x509: certificate is valid for"],
        pattern: r"x509: certificate is valid for (.+?), not ([^\s,;]+)",
        cause: "a certificate does not name {2}, the address used to reach it (it is valid for {1})",
        fix: "re-issue the certificate with {2} among its subjectAltNames (kubectl bootstrap certs renew copies the names: add it to the CSR), or reach it by a name it carries; if {2} is the kubernetes Service's ClusterIP, give the apiserver the --service-cluster-ip-range whose first address the certificate names",
        why: "every client that uses that address fails TLS: kubectl, the controller-manager, the scheduler, in-cluster clients of the Service IP",
        source: "the guide's step 04 (the serving certificate's SANs) and crypto/x509 (HostnameError)",
    },
    Signature {
        id: "encryption-config",
        title: "the apiserver can use its encryption config",
        components: &[API],
        needles: &["base64", "key size", "key length", "provider", "EncryptionConfiguration", "encryption"],
        pattern: r"((?:secrets must be base64 encoded|invalid key size \d+|invalid key length \d*|illegal base64 data at input byte \d+)|(?:error while parsing (?:encryption provider configuration )?file[^:]*: .+)|(?:EncryptionConfiguration[^:]*: .+)|(?:did not contain any providers?))",
        cause: "the apiserver cannot use its encryption config: {1}",
        fix: "each key must be base64 of 16, 24 or 32 bytes (aescbc, aesgcm) or 32 (secretbox), under a known provider: head -c 32 /dev/urandom | base64 makes one; then kubectl bootstrap server DEST (its preflight checks the file)",
        why: "the apiserver exits at start: the whole plane is down",
        source: "the guide's step 06 (the encryption config) and k8s.io/apiserver/pkg/server/options/encryptionconfig",
    },
    Signature {
        id: "etcd-unreachable",
        title: "etcd answers the apiserver",
        components: &[API],
        needles: &["connection refused"],
        pattern: r"(?:Error while dialing|grpc|etcd).*?dial tcp ([^\s]+): connect: connection refused",
        cause: "etcd does not answer at {1} (--etcd-servers): connection refused",
        fix: "systemctl status etcd on the server (start it, or fix ETCD_LISTEN_CLIENT_URLS in /etc/default/etcd); --etcd-servers must name where it listens",
        why: "the apiserver cannot read or write any object: it never becomes ready",
        source: "the guide's step 07 (etcd) and go.etcd.io/etcd's client (grpc)",
    },
    Signature {
        id: "port-in-use",
        title: "no component's port is taken by another process",
        components: ALL,
        needles: &["address already in use"],
        pattern: r"listen tcp ([^\s]+): bind: address already in use",
        cause: "{1} is already taken by another process",
        fix: "ss -ltnp shows who holds it: stop that process (an old copy of the component started by hand?) or move the component's --secure-port",
        why: "the component exits at start and systemd restarts it in a loop",
        source: "net.Listen (syscall EADDRINUSE)",
    },
    Signature {
        id: "file-unreadable",
        title: "every file the units name exists and can be read",
        components: ALL,
        needles: &["no such file or directory", "permission denied"],
        pattern: r"open (/[^\s:]+): (no such file or directory|permission denied)",
        cause: "{1}: {2} (a file the unit names does not exist or cannot be read)",
        fix: "kubectl bootstrap server DEST puts back every file the layout ships; for a path added by hand, check the unit (systemctl cat UNIT) and the file's mode",
        why: "the component exits at start, or runs without what the file configures",
        source: "the guide's step 08 (the files it places; kubectl bootstrap manifests lists them)",
    },
    Signature {
        id: "unknown-flag",
        title: "every flag is known to this release",
        components: ALL,
        needles: &["unknown flag"],
        pattern: r"unknown flag: (--?[A-Za-z0-9_.-]+)",
        cause: "this release does not know the flag {1}",
        fix: "remove {1} from the unit (kubectl bootstrap manifests UNIT shows it; --set COMPONENT.FLAG- removes an override), or ship a release that knows it",
        why: "the component exits at start with its usage text",
        source: "spf13/pflag (unknown flag)",
    },
    Signature {
        id: "client-unauthorized",
        title: "the apiserver accepts the controller-manager's and scheduler's client certificates",
        components: &[CM, SCHED],
        needles: &["Unauthorized"],
        pattern: r"(Unauthorized)",
        cause: "the apiserver refuses this component's client certificate ({1}): it is not signed by --client-ca-file's CA, or has expired",
        fix: "re-issue the component's kubeconfig from the CA the apiserver trusts (kubectl bootstrap certs renew --only COMPONENT; kubectl bootstrap server DEST)",
        why: "the component cannot read or write anything: no controller runs, or no pod is scheduled",
        source: "the guide's step 05 (kubeconfigs) and k8s.io/apiserver's x509 authenticator",
    },
    Signature {
        id: "server-untrusted",
        title: "the apiserver's certificate is signed by the CA the controller-manager and scheduler trust",
        components: &[CM, SCHED],
        needles: &["certificate signed by unknown authority"],
        pattern: r"x509: certificate signed by unknown authority",
        cause: "the apiserver's serving certificate is not signed by the CA this component's kubeconfig trusts (its certificate-authority-data)",
        fix: "issue every certificate from the one cluster CA and embed that CA in the kubeconfigs: kubectl bootstrap certs check lists each one's authority",
        why: "every TLS connection between the two fails",
        source: "the guide's step 04 (one CA) and crypto/x509 (UnknownAuthorityError)",
    },
];

/// A signature found in a line.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cause {
    pub id: &'static str,
    pub component: String,
    /// The cause and fix with the line's own words filled in (escaped).
    pub cause: String,
    pub fix: String,
    /// The line it was found in (escaped server text).
    pub line: String,
}

fn compiled() -> &'static [Regex] {
    static RE: OnceLock<Vec<Regex>> = OnceLock::new();
    RE.get_or_init(|| SIGNATURES.iter().map(|s| Regex::new(s.pattern).expect("a signature's pattern compiles")).collect())
}

/// `text` with `{N}` replaced by the groups of `caps`.
fn fill(text: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = text.to_string();
    for i in 1..caps.len() {
        out = out.replace(&format!("{{{i}}}"), caps.get(i).map(|m| m.as_str()).unwrap_or(""));
    }
    out
}

/// The message of a journal line: after `IDENT[PID]: ` when it has one.
fn message(line: &str) -> &str {
    line.split_once("]: ").map(|(_, m)| m).unwrap_or(line)
}

/// klog's verbose-flag dump (`FLAG: --name="value"`) names files and
/// flags without anything having failed: never a cause.
fn is_flag_dump(msg: &str) -> bool {
    msg.contains("] FLAG: --")
}

/// The first signature of `component` that `line` (escaped) matches.
pub fn match_line(component: Component, line: &str) -> Option<Cause> {
    let msg = message(line);
    if is_flag_dump(msg) {
        return None;
    }
    SIGNATURES.iter().zip(compiled()).filter(|(s, _)| s.components.contains(&component)).find_map(|(s, re)| {
        re.captures(msg).map(|caps| Cause { id: s.id, component: component.name().to_string(), cause: fill(s.cause, &caps), fix: fill(s.fix, &caps), line: line.to_string() })
    })
}

/// Every distinct signature `lines` show for `component`, each with the
/// last line that showed it, in catalogue order.
pub fn causes(component: Component, lines: &[String]) -> Vec<Cause> {
    let mut found: Vec<Cause> = Vec::new();
    for l in lines {
        if let Some(c) = match_line(component, l) {
            match found.iter_mut().find(|f| f.id == c.id) {
                Some(f) => *f = c,
                None => found.push(c),
            }
        }
    }
    found.sort_by_key(|c| SIGNATURES.iter().position(|s| s.id == c.id));
    found
}

/// Every needle of every signature: what the server's `grep -F` keeps.
pub fn needles() -> Vec<&'static str> {
    let mut v: Vec<&str> = SIGNATURES.iter().flat_map(|s| s.needles.iter().copied()).collect();
    v.sort();
    v.dedup();
    v
}

/// The signature with this id.
pub fn signature(id: &str) -> Option<&'static Signature> {
    SIGNATURES.iter().find(|s| s.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines in the shapes the components write them (klog's structured
    /// `err="…"` quoting included); tests/tests/diagnose.rs reproduces
    /// each on the bed.
    #[test]
    fn each_signature_names_its_cause_from_a_real_line() {
        let cases: &[(Component, &str, &str, &str)] = &[
            (
                SCHED,
                r#"2026-12-02T05:10:01+0000 server kube-scheduler[812]: E1202 05:10:01.1 812 run.go:74] "command failed" err="no kind \"KubeSchedulerConfiguration\" is registered for version \"kubescheduler.config.k8s.io/v1\" in scheme \"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme/scheme.go:30\"""#,
                "scheduler-config-version",
                "the scheduler config's apiVersion kubescheduler.config.k8s.io/v1 is not registered",
            ),
            (
                SCHED,
                "2026-12-02T05:10:01+0000 server kube-scheduler[812]: E1202 05:10:01.1 812 reflector.go:138] Failed to watch *v1.Pod: Get \"https://127.0.0.1:6443/api/v1/pods\": x509: certificate is valid for 10.240.0.10, 127.0.0.1, not server.kubernetes.local",
                "certificate-name",
                "a certificate does not name server.kubernetes.local, the address used to reach it (it is valid for 10.240.0.10, 127.0.0.1)",
            ),
            // The Service-IP variant: a --service-cluster-ip-range whose first address the certificate does not name.
            (
                CM,
                "2026-12-02T05:10:01+0000 server kube-controller-manager[900]: E1202 05:10:01.1 900 leaderelection.go:325] error retrieving resource lock kube-system/kube-controller-manager: Get \"https://10.0.0.1:443/apis\": x509: certificate is valid for 127.0.0.1, 10.32.0.1, not 10.0.0.1",
                "certificate-name",
                "does not name 10.0.0.1",
            ),
            (API, "2026-12-02T05:10:01+0000 server kube-apiserver[1]: Error: error while parsing file: error decoding encryption provider configuration file \"/var/lib/kubernetes/encryption-config.yaml\": secrets must be base64 encoded", "encryption-config", "the apiserver cannot use its encryption config: "),
            (API, "2026-12-02T05:10:01+0000 server kube-apiserver[1]: W1202 05:10:01.1 1 clientconn.go:1223] grpc: addrConn.createTransport failed to connect to {http://127.0.0.1:2379  <nil> 0 <nil>}. Err :connection error: desc = \"transport: Error while dialing dial tcp 127.0.0.1:2379: connect: connection refused\". Reconnecting...", "etcd-unreachable", "etcd does not answer at 127.0.0.1:2379"),
            (API, "2026-12-02T05:10:01+0000 server kube-apiserver[1]: Error: failed to create listener: failed to listen on 0.0.0.0:6443: listen tcp 0.0.0.0:6443: bind: address already in use", "port-in-use", "0.0.0.0:6443 is already taken"),
            (CM, "2026-12-02T05:49:02+0000 server kube-controller-manager[614]: F1202 05:49:02.091325     614 controllermanager.go:250] error starting controllers: failed to start kubernetes.io/kubelet-serving certificate controller: error reading CA cert file \"/var/lib/kubernetes/ca.crt\": open /var/lib/kubernetes/ca.key: no such file or directory", "file-unreadable", "/var/lib/kubernetes/ca.key: no such file or directory"),
            (SCHED, "2026-12-02T05:10:01+0000 server kube-scheduler[1]: Error: unknown flag: --no-such-flag", "unknown-flag", "this release does not know the flag --no-such-flag"),
            (SCHED, "2026-12-02T05:10:01+0000 server kube-scheduler[1]: E1202 05:10:01.1 1 reflector.go:138] Failed to watch *v1.Pod: failed to list *v1.Pod: Unauthorized", "client-unauthorized", "refuses this component's client certificate (Unauthorized)"),
            (CM, "2026-12-02T05:10:01+0000 server kube-controller-manager[1]: E1202 x.go:1] Get \"https://127.0.0.1:6443/api\": x509: certificate signed by unknown authority", "server-untrusted", "not signed by the CA this component's kubeconfig trusts"),
        ];
        for (c, line, id, cause) in cases {
            assert!(!crate::remote::journal::may_hold_secret(line), "{id}: {line}");
            let got = match_line(*c, line).unwrap_or_else(|| panic!("{id}: no signature matched {line}"));
            assert_eq!(got.id, *id, "{line}");
            assert!(got.cause.contains(cause), "{id}: {}", got.cause);
            assert!(!got.fix.contains('{'), "{id}: unfilled fix {}", got.fix);
        }
        // Every signature has a case.
        for s in SIGNATURES {
            assert!(cases.iter().any(|c| c.2 == s.id), "{} has no recorded line", s.id);
        }
    }

    #[test]
    fn flag_dumps_and_other_components_lines_are_not_causes() {
        // At -v=1 and above every flag is logged: a file named is not a failure.
        assert_eq!(match_line(API, "2026-12-02T05:10:01+0000 server kube-apiserver[1]: I1202 05:10:01.1 1 flags.go:59] FLAG: --encryption-provider-config=\"/var/lib/kubernetes/encryption-config.yaml\""), None);
        // 401s are the clients' signature, not the apiserver's; a goroutine's number is no status.
        assert_eq!(match_line(API, "2026-12-02T05:10:01+0000 server kube-apiserver[1]: I1202 httplog.go:89] \"HTTP\" verb=\"GET\" resp=401 Unauthorized"), None);
        assert_eq!(match_line(CM, "2026-12-02T05:49:28+0000 server kube-controller-manager[621]: goroutine 401 [select]:"), None);
        assert_eq!(match_line(SCHED, "2026-12-02T05:10:01+0000 server kube-scheduler[1]: I1202 05:10:01.1 1 serving.go:331] Generated self-signed cert in-memory"), None);
    }

    #[test]
    fn causes_are_distinct_and_keep_the_last_line() {
        let l = |n: u32| format!("2026-12-02T05:10:0{n}+0000 server kube-scheduler[1]: E1202 r.go:1] Failed to watch *v1.Pod: Unauthorized ({n})");
        let got = causes(SCHED, &[l(1), "x".into(), l(2)]);
        assert_eq!(got.len(), 1);
        assert!(got[0].line.ends_with("(2)"));
        assert!(needles().contains(&"unknown flag"));
    }
}
