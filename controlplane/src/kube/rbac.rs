//! k8s-openapi objects built from the compiled-in RBAC constants, ready for
//! server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::api::ObjectMeta;

use crate::model::{ClusterRoleBindingSpec, ClusterRoleSpec, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS};

fn map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn list(v: &[&str]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.iter().map(|s| s.to_string()).collect())
}

fn meta(name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta { name: Some(name.into()), labels: map(labels), annotations: map(annotations), ..Default::default() }
}

pub fn cluster_role(s: &ClusterRoleSpec) -> ClusterRole {
    ClusterRole {
        metadata: meta(s.name, s.labels, s.annotations),
        rules: Some(
            s.rules
                .iter()
                .map(|r| PolicyRule {
                    api_groups: list(r.api_groups).or_else(|| (!r.resources.is_empty()).then(Vec::new)),
                    resources: list(r.resources),
                    resource_names: list(r.resource_names),
                    non_resource_urls: list(r.non_resource_urls),
                    verbs: r.verbs.iter().map(|v| v.to_string()).collect(),
                })
                .collect(),
        ),
        aggregation_rule: None,
    }
}

pub fn cluster_role_binding(s: &ClusterRoleBindingSpec) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(s.name, s.labels, s.annotations),
        role_ref: RoleRef { api_group: "rbac.authorization.k8s.io".into(), kind: "ClusterRole".into(), name: s.role.into() },
        subjects: Some(
            s.subjects
                .iter()
                .map(|x| Subject { kind: x.kind.into(), name: x.name.into(), api_group: x.api_group.map(Into::into), namespace: x.namespace.map(Into::into) })
                .collect(),
        ),
    }
}

/// Every compiled-in ClusterRole and ClusterRoleBinding.
pub fn objects() -> (Vec<ClusterRole>, Vec<ClusterRoleBinding>) {
    (CLUSTER_ROLES.iter().map(cluster_role).collect(), CLUSTER_ROLE_BINDINGS.iter().map(cluster_role_binding).collect())
}

/// What server-side apply did to one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub name: String,
    /// created, updated or unchanged
    pub result: &'static str,
}

/// The field manager bootstrap applies as.
pub const FIELD_MANAGER: &str = "kubectl-bootstrap";

async fn apply_one<K>(client: &kube::Client, kind: &'static str, obj: K) -> Result<Applied, crate::Error>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()> + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use kube::api::{Api, Patch, PatchParams};
    let name = obj.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::all(client.clone());
    let err = |e: kube::Error| crate::Error::api(format!("apply {kind} {name}"), e);
    let before = api.get_opt(&name).await.map_err(err)?;
    let after = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&obj)).await.map_err(err)?;
    let result = match before {
        None => "created",
        Some(b) if b.meta().resource_version == after.meta().resource_version => "unchanged",
        Some(_) => "updated",
    };
    Ok(Applied { kind, name, result })
}

/// Do the compiled-in objects stand as they would be applied (the rules,
/// role and subjects, the labels and annotations)? `Some` of every object as
/// `unchanged` when all do; `None` when any differs, is missing or cannot be
/// read (then the RBAC step applies). Reads only.
pub async fn unchanged(client: &kube::Client) -> Option<Vec<Applied>> {
    use kube::api::Api;
    let (roles, bindings) = objects();
    let subset = |want: &ObjectMeta, have: &ObjectMeta| {
        let within = |w: &Option<BTreeMap<String, String>>, h: &Option<BTreeMap<String, String>>| w.iter().flatten().all(|(k, v)| h.as_ref().and_then(|h| h.get(k)) == Some(v));
        within(&want.labels, &have.labels) && within(&want.annotations, &have.annotations)
    };
    // Every object asked at once.
    let role_checks = roles.iter().map(|r| async move {
        let name = r.metadata.name.clone().unwrap_or_default();
        let have = Api::<ClusterRole>::all(client.clone()).get_opt(&name).await.ok()??;
        (have.rules == r.rules && subset(&r.metadata, &have.metadata)).then_some(Applied { kind: "ClusterRole", name, result: "unchanged" })
    });
    let binding_checks = bindings.iter().map(|b| async move {
        let name = b.metadata.name.clone().unwrap_or_default();
        let have = Api::<ClusterRoleBinding>::all(client.clone()).get_opt(&name).await.ok()??;
        (have.role_ref == b.role_ref && have.subjects == b.subjects && subset(&b.metadata, &have.metadata)).then_some(Applied {
            kind: "ClusterRoleBinding",
            name,
            result: "unchanged",
        })
    });
    let (r, b) = futures::future::join(futures::future::join_all(role_checks), futures::future::join_all(binding_checks)).await;
    r.into_iter().chain(b).collect()
}

/// Server-side applies every compiled-in ClusterRole and ClusterRoleBinding.
pub async fn apply(client: &kube::Client) -> Result<Vec<Applied>, crate::Error> {
    let (roles, bindings) = objects();
    let mut out = Vec::new();
    for r in roles {
        out.push(apply_one(client, "ClusterRole", r).await?);
    }
    for b in bindings {
        out.push(apply_one(client, "ClusterRoleBinding", b).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The objects equal what the manifest YAML itself deserializes to.
    #[test]
    fn objects_round_trip_to_the_manifest_yaml() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac/kube-apiserver-to-kubelet.yaml")).unwrap();
        let mut docs = text.split("\n---\n");
        let role: ClusterRole = serde_yaml::from_str(docs.next().unwrap()).unwrap();
        let binding: ClusterRoleBinding = serde_yaml::from_str(docs.next().unwrap()).unwrap();
        let (roles, bindings) = objects();
        assert_eq!(roles, vec![role]);
        assert_eq!(bindings, vec![binding]);
    }
}
