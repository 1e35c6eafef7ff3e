//! The CIS Kubernetes Benchmark checks as data (kube-bench's model: id,
//! test, remediation), for the benchmark kube-bench itself picks for the
//! server's Kubernetes version, so ids compare one to one with its report.
//!
//! A check's id names its benchmark and control (`cis-1.20/1.2.20`): control
//! numbers differ between benchmarks and ids are never reused. Sections 1.2
//! (apiserver), 1.3 (controller-manager) and 1.4 (scheduler) are the
//! benchmarks' flag tests, read from the running process (else the installed
//! unit), as kube-bench reads `ps`; section 1.1's file checks are mapped onto
//! this layout (a component's "pod specification file" is its systemd unit,
//! its kubeconfig is the one under /var/lib/kubernetes, the PKI directory is
//! /var/lib/kubernetes). Controls with nothing in this layout (etcd's own
//! files, CNI, admin.conf on the server) are SKIP, saying so. A failed
//! automated control is WARN (FAIL with `--strict`); a manual one, and one
//! with no test, is WARN, as kube-bench reports them.

use super::checks::effective;
use super::{Check, Ctx, Finding, Group, Item, Run};
use crate::model::{Component, FileKind, FileMode, Version, APISERVER, FILES};
use crate::remote::probe::Probe;

/// What a benchmark is for: its kube-bench name and the releases
/// kube-bench's `version_mapping` sends to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Benchmark {
    pub name: &'static str,
    pub releases: &'static str,
}

/// The benchmarks this table holds.
pub const BENCHMARKS: &[Benchmark] = &[Benchmark { name: "cis-1.20", releases: "1.19–1.21" }, Benchmark { name: "cis-1.12", releases: "1.32–1.33" }];

/// kube-bench's `version_mapping` (cfg/config.yaml): the benchmark it runs
/// for a Kubernetes release, whether or not this table holds it.
pub fn benchmark_for(v: Version) -> Option<&'static str> {
    Some(match (v.major, v.minor) {
        (1, 15) => "cis-1.5",
        (1, 16..=18) => "cis-1.6",
        (1, 19..=21) => "cis-1.20",
        (1, 22 | 23) => "cis-1.23",
        (1, 24) => "cis-1.24",
        (1, 25) => "cis-1.7",
        (1, 26) => "cis-1.8",
        (1, 27) => "cis-1.9",
        (1, 28) => "cis-1.10",
        (1, 29..=31) => "cis-1.11",
        (1, 32 | 33) => "cis-1.12",
        (1, 34 | 35) => "cis-2.0",
        _ => return None,
    })
}

/// How a flag's value is tested (kube-bench's `compare.op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq(&'static str),
    NotEq(&'static str),
    /// The comma-separated value contains this element.
    Has(&'static str),
    NotHas(&'static str),
    Gte(u64),
    Gt(u64),
    /// Present, any value.
    Set,
    /// Absent.
    NotSet,
    /// Every comma-separated element is one of these.
    ValidElements(&'static str),
}

/// A file of this layout a section 1.1 control is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A component's systemd unit (its "pod specification file").
    Unit(Component),
    /// A component's kubeconfig (in the PKI directory).
    Kubeconfig(Component),
    /// The PKI directory and every file in it (ownership).
    PkiAll,
    /// Every certificate there.
    PkiCerts,
    /// Every key there.
    PkiKeys,
    /// Nothing in this layout is that file: SKIP with the reason.
    NotHere(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// `--FLAG` of `component`, by `op`; `unset_passes` for kube-bench's
    /// `bin_op: or` with `set: false` (the default is safe).
    Flag { component: Component, flag: &'static str, op: Op, unset_passes: bool },
    /// Every one of these flags of `component` is set.
    AllSet { component: Component, flags: &'static [&'static str] },
    /// The encryption config's first provider is one of these.
    Providers(&'static [&'static str]),
    /// Permissions no wider than `max` (when set) and this owner (when set).
    File { target: Target, max: Option<u32>, owner: Option<&'static str> },
    /// The benchmark gives no test: review by hand.
    Review(&'static str),
}

/// One control of one benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub benchmark: &'static str,
    pub id: &'static str,
    pub test: Test,
    /// The benchmark marks it Manual (kube-bench reports a failure as WARN).
    pub manual: bool,
    /// What to do; `{unit}`, `{kubeconfig}` and `{pki}` stand for the
    /// layout's paths ([`Row::remediation`]).
    pub remediation: &'static str,
}

const API: Component = APISERVER;
const CM: Component = Component::KubeControllerManager;
const SCHED: Component = Component::KubeScheduler;

const fn flag(benchmark: &'static str, id: &'static str, component: Component, flag: &'static str, op: Op, remediation: &'static str) -> Row {
    Row { benchmark, id, test: Test::Flag { component, flag, op, unset_passes: false }, manual: false, remediation }
}

const fn or_unset(mut r: Row) -> Row {
    if let Test::Flag { component, flag, op, .. } = r.test {
        r.test = Test::Flag { component, flag, op, unset_passes: true };
    }
    r
}

const fn manual(mut r: Row) -> Row {
    r.manual = true;
    r
}

const fn file(benchmark: &'static str, id: &'static str, target: Target, max: Option<u32>, owner: Option<&'static str>, remediation: &'static str) -> Row {
    Row { benchmark, id, test: Test::File { target, max, owner }, manual: false, remediation }
}

const fn all(benchmark: &'static str, id: &'static str, component: Component, flags: &'static [&'static str], remediation: &'static str) -> Row {
    Row { benchmark, id, test: Test::AllSet { component, flags }, manual: false, remediation }
}

const STRONG_CIPHERS_120: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_256_GCM_SHA384,TLS_RSA_WITH_AES_128_GCM_SHA256";
const STRONG_CIPHERS_112: &str = "TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384,TLS_CHACHA20_POLY1305_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256";
const ETCD_NOT_HERE: Target = Target::NotHere("etcd is not managed by this layout (Debian's etcd package owns its unit and data)");
const CNI_NOT_HERE: Target = Target::NotHere("no CNI is installed on a control-plane server of this layout");
const ADMIN_NOT_HERE: Target = Target::NotHere("the admin kubeconfig stays on the jumpbox; none is placed on the server");

/// Section 1.1 for both benchmarks: the same controls, `spec` the widest
/// mode the benchmark allows for unit files and kubeconfigs.
macro_rules! files_section {
    ($b:expr, $spec:expr) => {
        [
            file($b, "1.1.1", Target::Unit(API), Some($spec), None, "chmod the unit {unit} down (kubectl bootstrap places it 0644)"),
            file($b, "1.1.2", Target::Unit(API), None, Some("root:root"), "chown root:root {unit}"),
            file($b, "1.1.3", Target::Unit(CM), Some($spec), None, "chmod the unit {unit} down"),
            file($b, "1.1.4", Target::Unit(CM), None, Some("root:root"), "chown root:root {unit}"),
            file($b, "1.1.5", Target::Unit(SCHED), Some($spec), None, "chmod the unit {unit} down"),
            file($b, "1.1.6", Target::Unit(SCHED), None, Some("root:root"), "chown root:root {unit}"),
            file($b, "1.1.7", ETCD_NOT_HERE, None, None, "check etcd's unit with your etcd tooling"),
            file($b, "1.1.8", ETCD_NOT_HERE, None, None, "check etcd's unit with your etcd tooling"),
            manual(file($b, "1.1.9", CNI_NOT_HERE, None, None, "check the CNI files on the nodes")),
            manual(file($b, "1.1.10", CNI_NOT_HERE, None, None, "check the CNI files on the nodes")),
            file($b, "1.1.11", ETCD_NOT_HERE, None, None, "chmod 700 etcd's data directory"),
            file($b, "1.1.12", ETCD_NOT_HERE, None, None, "chown etcd:etcd etcd's data directory"),
            file($b, "1.1.13", ADMIN_NOT_HERE, None, None, "keep {admin} 0600 on the jumpbox"),
            file($b, "1.1.14", ADMIN_NOT_HERE, None, None, "keep {admin} root-owned on the jumpbox"),
            file($b, "1.1.15", Target::Kubeconfig(SCHED), Some($spec), None, "chmod 600 {kubeconfig}"),
            file($b, "1.1.16", Target::Kubeconfig(SCHED), None, Some("root:root"), "chown root:root {kubeconfig}"),
            file($b, "1.1.17", Target::Kubeconfig(CM), Some($spec), None, "chmod 600 {kubeconfig}"),
            file($b, "1.1.18", Target::Kubeconfig(CM), None, Some("root:root"), "chown root:root {kubeconfig}"),
            file($b, "1.1.19", Target::PkiAll, None, Some("root:root"), "chown -R root:root {pki}"),
            manual(file($b, "1.1.20", Target::PkiCerts, Some(0o644), None, "chmod 644 {pki}/*.crt")),
            manual(file($b, "1.1.21", Target::PkiKeys, Some(0o600), None, "chmod 600 {pki}/*.key")),
        ]
    };
}

/// Sections 1.2–1.4 of cis-1.20 (Kubernetes 1.19–1.21).
fn cis_1_20() -> Vec<Row> {
    const B: &str = "cis-1.20";
    let mut v: Vec<Row> = files_section!(B, 0o644).to_vec();
    v.extend([
        manual(flag(B, "1.2.1", API, "anonymous-auth", Op::Eq("false"), "--anonymous-auth=false (kubeadm keeps it on for health probes; decide per cluster)")),
        flag(B, "1.2.2", API, "token-auth-file", Op::NotSet, "remove --token-auth-file; use certificates or an OIDC provider"),
        or_unset(flag(B, "1.2.3", API, "kubelet-https", Op::Eq("true"), "remove --kubelet-https (true is the default)")),
        all(B, "1.2.4", API, &["kubelet-client-certificate", "kubelet-client-key"], "set --kubelet-client-certificate and --kubelet-client-key"),
        flag(B, "1.2.5", API, "kubelet-certificate-authority", Op::Set, "set --kubelet-certificate-authority to the cluster CA"),
        flag(B, "1.2.6", API, "authorization-mode", Op::NotHas("AlwaysAllow"), "set --authorization-mode without AlwaysAllow (Node,RBAC)"),
        flag(B, "1.2.7", API, "authorization-mode", Op::Has("Node"), "include Node in --authorization-mode"),
        flag(B, "1.2.8", API, "authorization-mode", Op::Has("RBAC"), "include RBAC in --authorization-mode"),
        manual(flag(
            B,
            "1.2.9",
            API,
            "enable-admission-plugins",
            Op::Has("EventRateLimit"),
            "add EventRateLimit to --enable-admission-plugins with --admission-control-config-file",
        )),
        or_unset(flag(B, "1.2.10", API, "enable-admission-plugins", Op::NotHas("AlwaysAdmit"), "remove AlwaysAdmit from --enable-admission-plugins")),
        manual(flag(B, "1.2.11", API, "enable-admission-plugins", Op::Has("AlwaysPullImages"), "add AlwaysPullImages to --enable-admission-plugins")),
        Row {
            benchmark: B,
            id: "1.2.12",
            test: Test::Review("SecurityContextDeny, unless PodSecurityPolicy is in place: review --enable-admission-plugins"),
            manual: true,
            remediation: "add SecurityContextDeny (or PodSecurityPolicy) to --enable-admission-plugins",
        },
        or_unset(flag(B, "1.2.13", API, "disable-admission-plugins", Op::NotHas("ServiceAccount"), "remove ServiceAccount from --disable-admission-plugins")),
        or_unset(flag(B, "1.2.14", API, "disable-admission-plugins", Op::NotHas("NamespaceLifecycle"), "remove NamespaceLifecycle from --disable-admission-plugins")),
        flag(B, "1.2.15", API, "enable-admission-plugins", Op::Has("PodSecurityPolicy"), "add PodSecurityPolicy to --enable-admission-plugins (with policies in place)"),
        flag(B, "1.2.16", API, "enable-admission-plugins", Op::Has("NodeRestriction"), "add NodeRestriction to --enable-admission-plugins"),
        flag(B, "1.2.17", API, "insecure-bind-address", Op::NotSet, "remove --insecure-bind-address"),
        flag(B, "1.2.18", API, "insecure-port", Op::Eq("0"), "set --insecure-port=0"),
        or_unset(flag(B, "1.2.19", API, "secure-port", Op::Gt(0), "remove --secure-port=0")),
        flag(B, "1.2.20", API, "profiling", Op::Eq("false"), "set --profiling=false"),
        flag(B, "1.2.21", API, "audit-log-path", Op::Set, "set --audit-log-path"),
        flag(B, "1.2.22", API, "audit-log-maxage", Op::Gte(30), "set --audit-log-maxage=30"),
        flag(B, "1.2.23", API, "audit-log-maxbackup", Op::Gte(10), "set --audit-log-maxbackup=10"),
        flag(B, "1.2.24", API, "audit-log-maxsize", Op::Gte(100), "set --audit-log-maxsize=100"),
        Row {
            benchmark: B,
            id: "1.2.25",
            test: Test::Review("--request-timeout as appropriate"),
            manual: false,
            remediation: "set --request-timeout if the default (60s) does not suit",
        },
        or_unset(flag(B, "1.2.26", API, "service-account-lookup", Op::Eq("true"), "remove --service-account-lookup=false")),
        flag(B, "1.2.27", API, "service-account-key-file", Op::Set, "set --service-account-key-file"),
        all(B, "1.2.28", API, &["etcd-certfile", "etcd-keyfile"], "serve etcd over TLS; set --etcd-certfile and --etcd-keyfile"),
        all(B, "1.2.29", API, &["tls-cert-file", "tls-private-key-file"], "set --tls-cert-file and --tls-private-key-file"),
        flag(B, "1.2.30", API, "client-ca-file", Op::Set, "set --client-ca-file"),
        flag(B, "1.2.31", API, "etcd-cafile", Op::Set, "serve etcd over TLS; set --etcd-cafile"),
        manual(flag(B, "1.2.32", API, "encryption-provider-config", Op::Set, "set --encryption-provider-config")),
        Row {
            benchmark: B,
            id: "1.2.33",
            test: Test::Providers(&["aescbc", "kms", "secretbox"]),
            manual: true,
            remediation: "put aescbc, kms or secretbox first in the EncryptionConfiguration",
        },
        manual(flag(B, "1.2.34", API, "tls-cipher-suites", Op::ValidElements(STRONG_CIPHERS_120), "set --tls-cipher-suites to strong ciphers only")),
        manual(flag(B, "1.3.1", CM, "terminated-pod-gc-threshold", Op::Set, "set --terminated-pod-gc-threshold (e.g. 10)")),
        flag(B, "1.3.2", CM, "profiling", Op::Eq("false"), "set --profiling=false"),
        flag(B, "1.3.3", CM, "use-service-account-credentials", Op::NotEq("false"), "set --use-service-account-credentials=true"),
        flag(B, "1.3.4", CM, "service-account-private-key-file", Op::Set, "set --service-account-private-key-file"),
        flag(B, "1.3.5", CM, "root-ca-file", Op::Set, "set --root-ca-file"),
        or_unset(flag(B, "1.3.6", CM, "feature-gates", Op::NotHas("RotateKubeletServerCertificate=false"), "remove RotateKubeletServerCertificate=false from --feature-gates")),
        or_unset(flag(B, "1.3.7", CM, "bind-address", Op::Eq("127.0.0.1"), "set --bind-address=127.0.0.1 (health checks then need the server's loopback)")),
        flag(B, "1.4.1", SCHED, "profiling", Op::Eq("false"), "set --profiling=false"),
        or_unset(flag(B, "1.4.2", SCHED, "bind-address", Op::Eq("127.0.0.1"), "set --bind-address=127.0.0.1")),
    ]);
    v
}

/// Sections 1.1–1.4 of cis-1.12 (Kubernetes 1.32–1.33).
fn cis_1_12() -> Vec<Row> {
    const B: &str = "cis-1.12";
    let mut v: Vec<Row> = files_section!(B, 0o600).to_vec();
    v.extend([
        manual(flag(B, "1.2.1", API, "anonymous-auth", Op::Eq("false"), "--anonymous-auth=false (kubeadm keeps it on for health probes; decide per cluster)")),
        flag(B, "1.2.2", API, "token-auth-file", Op::NotSet, "remove --token-auth-file; use certificates or an OIDC provider"),
        manual(flag(B, "1.2.3", API, "enable-admission-plugins", Op::Has("DenyServiceExternalIPs"), "add DenyServiceExternalIPs to --enable-admission-plugins")),
        all(B, "1.2.4", API, &["kubelet-client-certificate", "kubelet-client-key"], "set --kubelet-client-certificate and --kubelet-client-key"),
        flag(B, "1.2.5", API, "kubelet-certificate-authority", Op::Set, "set --kubelet-certificate-authority to the cluster CA"),
        flag(B, "1.2.6", API, "authorization-mode", Op::NotHas("AlwaysAllow"), "set --authorization-mode without AlwaysAllow (Node,RBAC)"),
        flag(B, "1.2.7", API, "authorization-mode", Op::Has("Node"), "include Node in --authorization-mode"),
        flag(B, "1.2.8", API, "authorization-mode", Op::Has("RBAC"), "include RBAC in --authorization-mode"),
        manual(flag(
            B,
            "1.2.9",
            API,
            "enable-admission-plugins",
            Op::Has("EventRateLimit"),
            "add EventRateLimit to --enable-admission-plugins with --admission-control-config-file",
        )),
        or_unset(flag(B, "1.2.10", API, "enable-admission-plugins", Op::NotHas("AlwaysAdmit"), "remove AlwaysAdmit from --enable-admission-plugins")),
        manual(flag(B, "1.2.11", API, "enable-admission-plugins", Op::Has("AlwaysPullImages"), "add AlwaysPullImages to --enable-admission-plugins")),
        or_unset(flag(B, "1.2.12", API, "disable-admission-plugins", Op::NotHas("ServiceAccount"), "remove ServiceAccount from --disable-admission-plugins")),
        or_unset(flag(B, "1.2.13", API, "disable-admission-plugins", Op::NotHas("NamespaceLifecycle"), "remove NamespaceLifecycle from --disable-admission-plugins")),
        flag(B, "1.2.14", API, "enable-admission-plugins", Op::Has("NodeRestriction"), "add NodeRestriction to --enable-admission-plugins"),
        flag(B, "1.2.15", API, "profiling", Op::Eq("false"), "set --profiling=false"),
        flag(B, "1.2.16", API, "audit-log-path", Op::Set, "set --audit-log-path"),
        flag(B, "1.2.17", API, "audit-log-maxage", Op::Gte(30), "set --audit-log-maxage=30"),
        flag(B, "1.2.18", API, "audit-log-maxbackup", Op::Gte(10), "set --audit-log-maxbackup=10"),
        flag(B, "1.2.19", API, "audit-log-maxsize", Op::Gte(100), "set --audit-log-maxsize=100"),
        Row {
            benchmark: B,
            id: "1.2.20",
            test: Test::Review("--request-timeout as appropriate"),
            manual: true,
            remediation: "set --request-timeout if the default (60s) does not suit",
        },
        or_unset(flag(B, "1.2.21", API, "service-account-lookup", Op::Eq("true"), "remove --service-account-lookup=false")),
        flag(B, "1.2.22", API, "service-account-key-file", Op::Set, "set --service-account-key-file"),
        all(B, "1.2.23", API, &["etcd-certfile", "etcd-keyfile"], "serve etcd over TLS; set --etcd-certfile and --etcd-keyfile"),
        all(B, "1.2.24", API, &["tls-cert-file", "tls-private-key-file"], "set --tls-cert-file and --tls-private-key-file"),
        flag(B, "1.2.25", API, "client-ca-file", Op::Set, "set --client-ca-file"),
        flag(B, "1.2.26", API, "etcd-cafile", Op::Set, "serve etcd over TLS; set --etcd-cafile"),
        manual(flag(B, "1.2.27", API, "encryption-provider-config", Op::Set, "set --encryption-provider-config")),
        Row {
            benchmark: B,
            id: "1.2.28",
            test: Test::Providers(&["aescbc", "kms", "secretbox"]),
            manual: true,
            remediation: "put aescbc, kms or secretbox first in the EncryptionConfiguration",
        },
        manual(flag(B, "1.2.29", API, "tls-cipher-suites", Op::ValidElements(STRONG_CIPHERS_112), "set --tls-cipher-suites to strong ciphers only")),
        flag(B, "1.2.30", API, "service-account-extend-token-expiration", Op::Eq("false"), "set --service-account-extend-token-expiration=false"),
        manual(flag(B, "1.3.1", CM, "terminated-pod-gc-threshold", Op::Set, "set --terminated-pod-gc-threshold (e.g. 10)")),
        flag(B, "1.3.2", CM, "profiling", Op::Eq("false"), "set --profiling=false"),
        flag(B, "1.3.3", CM, "use-service-account-credentials", Op::NotEq("false"), "set --use-service-account-credentials=true"),
        flag(B, "1.3.4", CM, "service-account-private-key-file", Op::Set, "set --service-account-private-key-file"),
        flag(B, "1.3.5", CM, "root-ca-file", Op::Set, "set --root-ca-file"),
        or_unset(flag(B, "1.3.6", CM, "feature-gates", Op::NotHas("RotateKubeletServerCertificate=false"), "remove RotateKubeletServerCertificate=false from --feature-gates")),
        or_unset(flag(B, "1.3.7", CM, "bind-address", Op::Eq("127.0.0.1"), "set --bind-address=127.0.0.1 (health checks then need the server's loopback)")),
        flag(B, "1.4.1", SCHED, "profiling", Op::Eq("false"), "set --profiling=false"),
        or_unset(flag(B, "1.4.2", SCHED, "bind-address", Op::Eq("127.0.0.1"), "set --bind-address=127.0.0.1")),
    ]);
    v
}

/// Every row of every benchmark here.
pub fn table() -> Vec<Row> {
    let mut v = cis_1_20();
    v.extend(cis_1_12());
    v
}

impl Row {
    /// `cis-1.20/1.2.20`.
    pub fn check_id(&self) -> String {
        format!("{}/{}", self.benchmark, self.id)
    }

    /// A title for `--list` and reports.
    pub fn title(&self) -> String {
        match self.test {
            Test::Flag { component, flag, op, unset_passes } => {
                let what = match op {
                    Op::Eq(v) => format!("--{flag}={v}"),
                    Op::NotEq(v) => format!("--{flag} not {v}"),
                    Op::Has(v) => format!("--{flag} includes {v}"),
                    Op::NotHas(v) => format!("--{flag} excludes {v}"),
                    Op::Gte(n) => format!("--{flag} >= {n}"),
                    Op::Gt(n) => format!("--{flag} > {n}"),
                    Op::Set => format!("--{flag} is set"),
                    Op::NotSet => format!("--{flag} is not set"),
                    Op::ValidElements(_) => format!("--{flag} lists only strong values"),
                };
                format!("{what}{} on {component}", if unset_passes { " (or unset)" } else { "" })
            }
            Test::AllSet { component, flags } => format!("{} set on {component}", flags.iter().map(|f| format!("--{f}")).collect::<Vec<_>>().join(" and ")),
            Test::Providers(p) => format!("Secrets encrypted with {} first", p.join(", ")),
            Test::File { target, max, owner } => {
                let what = match target {
                    Target::Unit(c) => format!("{c}'s unit"),
                    Target::Kubeconfig(c) => format!("{c}'s kubeconfig"),
                    Target::PkiAll => "the PKI directory and its files".into(),
                    Target::PkiCerts => "the certificates".into(),
                    Target::PkiKeys => "the keys".into(),
                    Target::NotHere(_) => "(not in this layout)".into(),
                };
                match (max, owner) {
                    (Some(m), _) => format!("{what}: {} or more restrictive", FileMode(m)),
                    (None, Some(o)) => format!("{what}: owned by {o}"),
                    (None, None) => what,
                }
            }
            Test::Review(what) => format!("{what} (review)"),
        }
    }
}

/// The comma-separated elements of a flag value.
fn elements(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim)
}

/// Evaluates `op` on a flag's value (`None`: not set).
pub fn holds(op: Op, value: Option<&str>, unset_passes: bool) -> bool {
    let Some(v) = value else { return unset_passes || op == Op::NotSet };
    match op {
        Op::Eq(want) => v == want,
        Op::NotEq(want) => v != want,
        Op::Has(e) => elements(v).any(|x| x == e),
        Op::NotHas(e) => !elements(v).any(|x| x == e),
        Op::Gte(n) => v.parse::<u64>().is_ok_and(|x| x >= n),
        Op::Gt(n) => v.parse::<u64>().is_ok_and(|x| x > n),
        Op::Set => true,
        Op::NotSet => false,
        Op::ValidElements(valid) => elements(v).all(|x| elements(valid).any(|ok| ok == x)),
    }
}

/// The placed files a section 1.1 target means, with what the probe read.
fn targets(t: Target) -> Vec<&'static str> {
    match t {
        Target::Unit(c) => crate::model::placed(c.spec().manifest).map(|f| vec![f.dest]).unwrap_or_default(),
        Target::Kubeconfig(c) => FILES.iter().filter(|f| f.kind == FileKind::Kubeconfig && f.restarts == [c]).map(|f| f.dest).collect(),
        Target::PkiAll => FILES.iter().filter(|f| f.dest.starts_with(pki_dir())).map(|f| f.dest).collect(),
        Target::PkiCerts => FILES.iter().filter(|f| f.kind == FileKind::Certificate).map(|f| f.dest).collect(),
        Target::PkiKeys => FILES.iter().filter(|f| f.kind == FileKind::Key).map(|f| f.dest).collect(),
        Target::NotHere(_) => Vec::new(),
    }
}

/// Where the layout keeps certificates: the "PKI directory".
fn pki_dir() -> &'static str {
    FILES.iter().find(|f| f.kind == FileKind::Certificate).and_then(|f| f.dest.rsplit_once('/')).map(|x| x.0).unwrap_or_default()
}

/// What a row finds on a server that can be judged: it holds or not, and
/// what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Holds(String),
    Fails(String),
}

impl Verdict {
    fn of(holds: bool, detail: String) -> Verdict {
        if holds {
            Verdict::Holds(detail)
        } else {
            Verdict::Fails(detail)
        }
    }
}

/// What a row finds on a server; SKIP for what cannot be judged here.
pub fn evaluate(row: &Row, h: &Probe) -> Result<Verdict, Finding> {
    match row.test {
        Test::Flag { component, flag, op, unset_passes } => {
            let Some(flags) = effective(h, component) else { return Err(Finding::skip(format!("{component} is neither running nor installed"))) };
            let v = flags.get(flag);
            let shown = v.map(|v| format!("--{flag}={v}")).unwrap_or(format!("--{flag} not set"));
            let d = format!("{component}: {shown}");
            Ok(Verdict::of(holds(op, v, unset_passes), d))
        }
        Test::AllSet { component, flags: want } => {
            let Some(flags) = effective(h, component) else { return Err(Finding::skip(format!("{component} is neither running nor installed"))) };
            let missing: Vec<String> = want.iter().filter(|f| !flags.is_set(f)).map(|f| format!("--{f}")).collect();
            Ok(if missing.is_empty() { Verdict::Holds(format!("{component}: {} set", want.len())) } else { Verdict::Fails(format!("{component}: {} not set", missing.join(", "))) })
        }
        Test::Providers(valid) => {
            let first = h.encryption_providers.first();
            let shown = if h.encryption_providers.is_empty() { "no encryption providers".to_string() } else { format!("providers {}", h.encryption_providers.join(", ")) };
            Ok(Verdict::of(first.is_some_and(|p| valid.contains(&p.as_str())), shown))
        }
        Test::File { target: Target::NotHere(why), .. } => Err(Finding::skip(format!("not applicable: {why}"))),
        Test::File { target, max, owner } => {
            let paths = targets(target);
            let mut bad = Vec::new();
            let mut n = 0;
            for p in &paths {
                let Some(f) = h.files.get(*p) else { continue };
                n += 1;
                if let Some(m) = max {
                    if !f.mode.within(FileMode(m)) {
                        bad.push(format!("{p} is {}", f.mode));
                    }
                }
                if let Some(o) = owner {
                    if f.owners() != o {
                        bad.push(format!("{p} is owned by {}", f.owners()));
                    }
                }
            }
            if n == 0 {
                return Err(Finding::fail(format!("none of {} exists", paths.join(", ")), "kubectl bootstrap server DEST"));
            }
            Ok(if bad.is_empty() { Verdict::Holds(format!("{n} file(s) as required")) } else { Verdict::Fails(bad.join(", ")) })
        }
        Test::Review(what) => Ok(Verdict::Fails(format!("no automated test: {what}"))),
    }
}

impl Row {
    /// What to do, with the layout's paths in place of `{unit}`,
    /// `{kubeconfig}` and `{pki}`.
    pub fn remediation(&self) -> String {
        let target = match self.test {
            Test::File { target, .. } => targets(target).join(" "),
            _ => String::new(),
        };
        self.remediation.replace("{unit}", &target).replace("{kubeconfig}", &target).replace("{pki}", pki_dir()).replace("{admin}", crate::model::ADMIN_KUBECONFIG)
    }
}

/// A row's finding on a server.
fn run(ctx: &Ctx, h: &Probe, item: Item) -> Finding {
    let Item::Cis(row) = item else { unreachable!("a CIS check got {item:?}") };
    match evaluate(&row, h) {
        Err(f) => f,
        Ok(Verdict::Holds(d)) => Finding::pass(d),
        Ok(Verdict::Fails(d)) if row.manual || matches!(row.test, Test::Review(_)) || !ctx.strict => Finding::warn(d, row.remediation()),
        Ok(Verdict::Fails(d)) => Finding::fail(d, row.remediation()),
    }
}

/// A row as a check.
pub fn check(row: Row) -> Check {
    Check { id: row.check_id(), group: Group::Cis, title: row.title(), item: Item::Cis(row), run: Run::Host(run) }
}

/// Every benchmark's checks (for --list, --only, --skip).
pub fn every_check() -> Vec<Check> {
    table().into_iter().map(check).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::probe::RemoteFile;

    #[test]
    fn the_benchmark_is_the_one_kube_bench_picks_for_the_version() {
        let v = |m| Version { major: 1, minor: m };
        assert_eq!(benchmark_for(v(20)), Some("cis-1.20"));
        assert_eq!(benchmark_for(v(19)), Some("cis-1.20"));
        assert_eq!(benchmark_for(v(21)), Some("cis-1.20"));
        assert_eq!(benchmark_for(v(32)), Some("cis-1.12"));
        assert_eq!(benchmark_for(v(33)), Some("cis-1.12"));
        assert_eq!(benchmark_for(v(30)), Some("cis-1.11"));
        assert_eq!(benchmark_for(v(14)), None);
        // The bed's release and the guide's are both in the table.
        for m in [20, 32] {
            assert!(BENCHMARKS.iter().any(|b| Some(b.name) == benchmark_for(v(m))));
        }
    }

    #[test]
    fn ids_name_their_benchmark_and_control_and_are_unique() {
        let t = table();
        let mut ids: Vec<String> = t.iter().map(Row::check_id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
        // The same control has different numbers in different benchmarks.
        let profiling = |b: &str| t.iter().find(|r| r.benchmark == b && matches!(r.test, Test::Flag { component: APISERVER, flag: "profiling", .. })).unwrap().check_id();
        assert_eq!(profiling("cis-1.20"), "cis-1.20/1.2.20");
        assert_eq!(profiling("cis-1.12"), "cis-1.12/1.2.15");
        let authz =
            |b: &str, e: &str| t.iter().find(|r| r.benchmark == b && matches!(r.test, Test::Flag { op: Op::Has(x), flag: "authorization-mode", .. } if x == e)).unwrap().check_id();
        assert_eq!((authz("cis-1.20", "Node"), authz("cis-1.20", "RBAC")), ("cis-1.20/1.2.7".into(), "cis-1.20/1.2.8".into()));
        // Every section 1.2–1.4 control of each benchmark is there.
        for (b, n12) in [("cis-1.20", 34), ("cis-1.12", 30)] {
            for s in 1..=n12 {
                assert!(t.iter().any(|r| r.benchmark == b && r.id == format!("1.2.{s}")), "{b} 1.2.{s}");
            }
            for s in 1..=21 {
                assert!(t.iter().any(|r| r.benchmark == b && r.id == format!("1.1.{s}")), "{b} 1.1.{s}");
            }
            assert_eq!(t.iter().filter(|r| r.benchmark == b && r.id.starts_with("1.3.")).count(), 7);
            assert_eq!(t.iter().filter(|r| r.benchmark == b && r.id.starts_with("1.4.")).count(), 2);
        }
    }

    #[test]
    fn ops_follow_kube_bench() {
        assert!(holds(Op::Eq("false"), Some("false"), false) && !holds(Op::Eq("false"), None, false));
        assert!(holds(Op::Eq("127.0.0.1"), None, true), "bin_op or set:false");
        assert!(holds(Op::Has("RBAC"), Some("Node,RBAC"), false) && !holds(Op::Has("RBAC"), Some("Node,RBACX"), false));
        assert!(holds(Op::NotHas("AlwaysAllow"), Some("Node,RBAC"), false) && !holds(Op::NotHas("AlwaysAllow"), None, false));
        assert!(holds(Op::Gte(30), Some("30"), false) && !holds(Op::Gte(30), Some("7"), false) && !holds(Op::Gte(30), Some("x"), false));
        assert!(holds(Op::NotSet, None, false) && !holds(Op::NotSet, Some("x"), false));
        assert!(holds(Op::ValidElements("A,B"), Some("B,A"), false) && !holds(Op::ValidElements("A,B"), Some("A,C"), false));
    }

    fn probe_with(cmdline: &[&str]) -> Probe {
        let mut p = Probe::default();
        let u = p.units.entry("kube-apiserver.service".into()).or_default();
        u.cmdline = cmdline.iter().map(|s| s.to_string()).collect();
        p
    }

    #[test]
    fn a_row_reads_the_running_flags_and_warns_unless_strict() {
        let row = *table().iter().find(|r| r.check_id() == "cis-1.20/1.2.20").unwrap();
        let c = check(row);
        let ctx = |strict| Ctx::for_tests(strict);
        let run = |p: &Probe, strict| match &c.run {
            super::super::Run::Host(f) => f(&ctx(strict), p, c.item),
            _ => unreachable!(),
        };
        assert_eq!(run(&probe_with(&["/x", "--profiling=false"]), false).status, super::super::Status::Pass);
        let f = run(&probe_with(&["/x", "--v=2"]), false);
        assert_eq!((f.status, f.detail.as_str()), (super::super::Status::Warn, "kube-apiserver: --profiling not set"));
        assert_eq!(run(&probe_with(&["/x"]), true).status, super::super::Status::Fail);
        // A manual control never fails, even with --strict.
        let m = check(*table().iter().find(|r| r.check_id() == "cis-1.20/1.2.1").unwrap());
        let f = match &m.run {
            super::super::Run::Host(f) => f(&ctx(true), &probe_with(&["/x"]), m.item),
            _ => unreachable!(),
        };
        assert_eq!(f.status, super::super::Status::Warn);
    }

    #[test]
    fn file_controls_map_onto_the_layout() {
        let mut p = Probe::default();
        let file = |mode, owner: &str| RemoteFile {
            mode: FileMode(mode),
            owner: owner.into(),
            group: "root".into(),
            size: 1,
            kind: crate::remote::probe::FileType::Regular,
            sha256: String::new(),
            mtime_ns: 0,
        };
        p.files.insert("/etc/systemd/system/kube-apiserver.service".into(), file(0o644, "root"));
        let row = |id: &str| *table().iter().find(|r| r.check_id() == id).unwrap();
        assert!(matches!(evaluate(&row("cis-1.20/1.1.1"), &p), Ok(Verdict::Holds(_))), "644 is fine for cis-1.20");
        assert_eq!(evaluate(&row("cis-1.12/1.1.1"), &p).unwrap(), Verdict::Fails("/etc/systemd/system/kube-apiserver.service is 0644".into()), "cis-1.12 wants 600");
        p.files.insert("/etc/systemd/system/kube-apiserver.service".into(), file(0o600, "nobody"));
        assert_eq!(evaluate(&row("cis-1.20/1.1.2"), &p).unwrap(), Verdict::Fails("/etc/systemd/system/kube-apiserver.service is owned by nobody:root".into()));
        assert!(matches!(evaluate(&row("cis-1.20/1.1.7"), &p), Err(f) if f.status == super::super::Status::Skip));
        assert_eq!(targets(Target::Kubeconfig(SCHED)), ["/var/lib/kubernetes/kube-scheduler.kubeconfig"]);
        assert!(targets(Target::PkiKeys).iter().all(|k| k.ends_with(".key")) && !targets(Target::PkiKeys).is_empty());
    }
}
