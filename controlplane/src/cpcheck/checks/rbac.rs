//! `rbac`: the compiled-in ClusterRoles and ClusterRoleBindings exactly as the manifests say, and what they grant in effect.

use super::*;

/// The group's checks, in report order.
pub const CHECKS: &[Def] = &[
    Def { id: "rbac.clusterrole", title: |i| format!("ClusterRole {}", role(i).name), each: Each::Role, run: Run::Api(cluster_role) },
    Def { id: "rbac.clusterrolebinding", title: |i| format!("ClusterRoleBinding {}", binding(i).name), each: Each::Binding, run: Run::Api(cluster_role_binding) },
    Def { id: "rbac.kubelet-access", title: |_| "the apiserver's kubelet client may reach kubelets".into(), each: Each::One, run: Run::Api(kubelet_access) },
];

fn role(i: Item) -> &'static crate::model::ClusterRoleSpec {
    match i {
        Item::Role(r) => r,
        other => unreachable!("a ClusterRole check got {other:?}"),
    }
}

fn binding(i: Item) -> &'static crate::model::ClusterRoleBindingSpec {
    match i {
        Item::Binding(b) => b,
        other => unreachable!("a ClusterRoleBinding check got {other:?}"),
    }
}

fn cluster_role<'a>(_: &'a Ctx, client: &'a kube::Client, i: Item) -> futures::future::BoxFuture<'a, Finding> {
    let spec = role(i);
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
            for (what, a, b) in
                [("verbs", w.verbs.clone(), h.verbs.clone()), ("resources", set(&w.resources), set(&h.resources)), ("apiGroups", set(&w.api_groups), set(&h.api_groups))]
            {
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
}

fn cluster_role_binding<'a>(_: &'a Ctx, client: &'a kube::Client, i: Item) -> futures::future::BoxFuture<'a, Finding> {
    let spec = binding(i);
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
}

fn kubelet_access<'a>(ctx: &'a Ctx, client: &'a kube::Client, _: Item) -> futures::future::BoxFuture<'a, Finding> {
    async move {
        // The user is the CN of --kubelet-client-certificate.
        let _ = ctx.probe().await; // what the server read, once it has
        let from_cert = ctx.host().and_then(|h| {
            let p = installed(h, APISERVER).and_then(|f| f.get("kubelet-client-certificate").map(str::to_string))?;
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
}
