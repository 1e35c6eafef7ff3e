//! The real manifests load, and each kind of malformed manifest fails with the
//! file, the line and what is wrong. Each case edits a fresh copy of
//! `manifests/`, so the cases test the exact text users edit.

use std::path::{Path, PathBuf};

fn real() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Loads a copy of the manifests with `file` edited by replacing `from` with `to`.
fn broken(file: &str, from: &str, to: &str) -> codegen::ManifestError {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&real(), tmp.path());
    let p = tmp.path().join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "fixture edit: `{from}` not in {file}");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    let e = codegen::load(tmp.path()).expect_err("a malformed manifest must not load");
    assert_eq!(e.path, p, "error names the edited file: {e}");
    e
}

fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(real().join(file)).unwrap();
    text.lines().position(|l| l.contains(needle)).expect("needle in manifest") + 1
}

#[test]
fn the_real_manifests_load_with_the_guides_facts() {
    let m = codegen::load(&real()).unwrap();
    let names: Vec<_> = m.components.iter().map(|c| c.unit.component.as_str()).collect();
    assert_eq!(names, ["kube-apiserver", "kube-controller-manager", "kube-scheduler"]);
    let ports: Vec<_> = m.components.iter().map(|c| c.serving_port).collect();
    assert_eq!(ports, [6443, 10257, 10259]);
    assert_eq!(m.service_cidr, "10.32.0.0/24");
    assert_eq!(m.service_ip, "10.32.0.1");
    assert_eq!(m.etcd_servers, ["http://127.0.0.1:2379"]);
    let api = &m.components[0].unit;
    assert_eq!(api.flag("runtime-config").unwrap().value.as_deref(), Some("api/all=true"));
    assert_eq!(api.flags.len(), 24); // the guide's 23 plus --service-cluster-ip-range
                                     // The scheduler config brings its kubeconfig into the scheduler's paths.
    let sched = &m.components[2];
    assert!(sched.paths.iter().any(|p| p.path == "/var/lib/kubernetes/kube-scheduler.kubeconfig"));
    // Restart sets are derived: ca.crt is read by the apiserver and the controller-manager.
    let i = m.layout.files.iter().position(|f| f.dest == "/var/lib/kubernetes/ca.crt").unwrap();
    assert_eq!(m.restarts[i], ["kube-apiserver", "kube-controller-manager"]);
    let i = m.layout.files.iter().position(|f| f.dest == "/usr/local/bin/kubectl").unwrap();
    assert!(m.restarts[i].is_empty());
    assert_eq!(m.rbac.roles[0].rules[0].resources.len(), 5);
    assert_eq!(m.rbac.bindings[0].subjects[0].name, "kubernetes");
}

#[test]
fn rendered_constants_are_valid_rust_naming_every_unit() {
    let (src, inputs) = codegen::generate(&real()).unwrap();
    syn::parse_file(&src).expect("valid Rust");
    for c in ["KUBE_APISERVER", "KUBE_CONTROLLER_MANAGER", "KUBE_SCHEDULER", "CLUSTER_ROLES", "FILES", "SERVICE_IP"] {
        assert!(src.contains(&format!("pub const {c}")), "{c} missing");
    }
    assert!(inputs.iter().any(|p| p.ends_with("units/kube-apiserver.service")));
}

#[test]
fn unit_without_exec_start() {
    let f = "units/kube-scheduler.service";
    let e = broken(f, "ExecStart=/usr/local/bin/kube-scheduler \\\n  --config=/etc/kubernetes/config/kube-scheduler.yaml \\\n  --v=2\n", "");
    assert_eq!(e.line, line_of(f, "[Service]"));
    assert!(e.message.contains("no ExecStart="), "{e}");
}

#[test]
fn unit_continuation_at_end_of_file() {
    let f = "units/kube-scheduler.service";
    let e = broken(f, "WantedBy=multi-user.target\n", "WantedBy=multi-user.target \\\n");
    assert_eq!(e.line, line_of(f, "WantedBy"));
    assert!(e.message.contains("at end of file"), "{e}");
}

#[test]
fn unit_flag_given_twice() {
    let f = "units/kube-controller-manager.service";
    let e = broken(f, "  --v=2\n", "  --cluster-name=other \\\n  --v=2\n");
    assert_eq!(e.line, line_of(f, "--v=2"));
    assert!(e.message.contains("--cluster-name given twice (first at line 9)"), "{e}");
}

#[test]
fn unit_references_a_path_nothing_places() {
    let f = "units/kube-apiserver.service";
    let e = broken(f, "--client-ca-file=/var/lib/kubernetes/ca.crt", "--client-ca-file=/var/lib/kubernetes/other-ca.crt");
    assert_eq!(e.line, line_of(f, "--client-ca-file"));
    assert!(e.message.contains("/var/lib/kubernetes/other-ca.crt, which layout.yaml does not place"), "{e}");
}

#[test]
fn service_cidrs_that_disagree() {
    // The guide's bug: the apiserver without the flag uses 10.0.0.0/24.
    let f = "units/kube-apiserver.service";
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&real(), tmp.path());
    let p = tmp.path().join(f);
    let t = std::fs::read_to_string(&p).unwrap().replace("  --service-cluster-ip-range=10.32.0.0/24 \\\n", "");
    std::fs::write(&p, t).unwrap();
    let e = codegen::load(tmp.path()).unwrap_err();
    assert!(e.path.ends_with("units/kube-controller-manager.service"), "{e}");
    assert_eq!(e.line, line_of("units/kube-controller-manager.service", "--service-cluster-ip-range"));
    assert!(e.message.contains("disagrees with kube-apiserver's 10.0.0.0/24 (its default"), "{e}");
}

#[test]
fn rbac_document_of_another_kind() {
    let f = "rbac/kube-apiserver-to-kubelet.yaml";
    let e = broken(f, "kind: ClusterRoleBinding", "kind: RoleBinding");
    assert_eq!(e.line, line_of(f, "kind: ClusterRoleBinding"));
    assert!(e.message.contains("document 2 is a `RoleBinding`"), "{e}");
}

#[test]
fn rbac_rule_without_verbs() {
    let f = "rbac/kube-apiserver-to-kubelet.yaml";
    let e = broken(f, "    verbs:\n      - \"*\"\n", "    verbs: []\n");
    assert_eq!(e.line, line_of(f, "- apiGroups:"));
    assert!(e.message.contains("rule 1 of ClusterRole system:kube-apiserver-to-kubelet has no verbs"), "{e}");
}

#[test]
fn rbac_role_ref_to_an_undefined_cluster_role() {
    let f = "rbac/kube-apiserver-to-kubelet.yaml";
    let e = broken(f, "  kind: ClusterRole\n  name: system:kube-apiserver-to-kubelet", "  kind: ClusterRole\n  name: system:nope");
    assert_eq!(e.line, line_of(f, "roleRef:"));
    assert!(e.message.contains("refers to ClusterRole system:nope, which no manifest defines"), "{e}");
}

#[test]
fn rbac_yaml_syntax_error_points_at_its_line() {
    let f = "rbac/kube-apiserver-to-kubelet.yaml";
    let e = broken(f, "    resources:\n", "    resources: [\n");
    assert!(e.line >= line_of(f, "resources:"), "{e}");
}

#[test]
fn rbac_wrong_field_type_is_rejected_by_the_k8s_openapi_types() {
    let f = "rbac/kube-apiserver-to-kubelet.yaml";
    let e = broken(f, "    verbs:\n      - \"*\"\n", "    verbs: 5\n");
    assert!(e.message.contains("not a valid ClusterRole"), "{e}");
}

#[test]
fn layout_secret_with_a_loose_mode() {
    let f = "layout.yaml";
    let e = broken(f, "ca.key, mode: \"0600\"", "ca.key, mode: \"0644\"");
    assert_eq!(e.line, line_of(f, "/var/lib/kubernetes/ca.key"));
    assert!(e.message.contains("must be mode \"0600\""), "{e}");
}

#[test]
fn layout_missing_a_unit() {
    let e = {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&real(), tmp.path());
        let p = tmp.path().join("layout.yaml");
        let t: String = std::fs::read_to_string(&p).unwrap().lines().filter(|l| !l.contains("kube-scheduler.service")).map(|l| format!("{l}\n")).collect();
        std::fs::write(&p, t).unwrap();
        codegen::load(tmp.path()).unwrap_err()
    };
    assert!(e.path.ends_with("units/kube-scheduler.service"), "{e}");
    assert!(e.message.contains("layout.yaml does not place units/kube-scheduler.service"), "{e}");
}

#[test]
fn scheduler_config_of_another_kind() {
    let f = "configs/kube-scheduler.yaml";
    let e = broken(f, "kind: KubeSchedulerConfiguration", "kind: KubeProxyConfiguration");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("expected KubeSchedulerConfiguration"), "{e}");
}
