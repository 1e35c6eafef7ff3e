//! `manifests/rbac/*.yaml`: multi-document YAML of ClusterRoles and
//! ClusterRoleBindings, validated by deserializing into k8s-openapi's types.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Deserialize;

use crate::yaml::{document_lines, line_of_item, line_of_key, yaml_err};
use crate::ManifestError;

const RBAC_API: &str = "rbac.authorization.k8s.io/v1";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
    pub verbs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub api_group: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub role: String,
    pub subjects: Vec<Subject>,
    /// Where `roleRef:` is written, for the cross-document check.
    pub role_ref_at: (std::path::PathBuf, usize),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rbac {
    pub roles: Vec<Role>,
    pub bindings: Vec<Binding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
}

/// Parses one RBAC manifest and adds its objects to `into`. Cross-document
/// checks (a binding's roleRef must name a defined ClusterRole) run in
/// [`check_refs`] once every file is read.
pub fn parse_rbac(path: &Path, text: &str, into: &mut Rbac) -> Result<(), ManifestError> {
    let starts = document_lines(text);
    let mut n = 0usize;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| yaml_err(path, 0, &e))?;
        let start = *starts.get(n).unwrap_or(&1);
        n += 1;
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        let err = |key: &str, m: String| ManifestError::new(path, line_of_key(text, start, key), m);
        let head: Head = serde_yaml::from_value(value.clone()).map_err(|e| err("kind", format!("document {n}: {e}")))?;
        let kind = head.kind.unwrap_or_default();
        let api = head.api_version.unwrap_or_default();
        if !matches!(kind.as_str(), "ClusterRole" | "ClusterRoleBinding") {
            return Err(err("kind", format!("document {n} is a `{kind}`; only ClusterRole and ClusterRoleBinding belong here")));
        }
        if api != RBAC_API {
            return Err(err("apiVersion", format!("{kind} has apiVersion `{api}`, expected {RBAC_API}")));
        }
        if kind == "ClusterRole" {
            let r: ClusterRole = serde_yaml::from_value(value).map_err(|e| err("kind", format!("not a valid ClusterRole: {e}")))?;
            let name = r.metadata.name.clone().filter(|s| !s.is_empty()).ok_or_else(|| err("metadata", "ClusterRole has no metadata.name".into()))?;
            if into.roles.iter().any(|x| x.name == name) {
                return Err(err("name", format!("ClusterRole {name} is defined twice")));
            }
            if r.aggregation_rule.is_some() {
                return Err(err("aggregationRule", "aggregated ClusterRoles are not supported: list the rules".into()));
            }
            let rules_in = r.rules.unwrap_or_default();
            if rules_in.is_empty() {
                return Err(err("rules", format!("ClusterRole {name} has no rules")));
            }
            let mut rules = Vec::new();
            for (i, pr) in rules_in.into_iter().enumerate() {
                let line = line_of_item(text, start, "rules", i);
                let e = |m: String| ManifestError::new(path, line, m);
                if pr.verbs.is_empty() {
                    return Err(e(format!("rule {} of ClusterRole {name} has no verbs", i + 1)));
                }
                let resources = pr.resources.unwrap_or_default();
                let urls = pr.non_resource_urls.unwrap_or_default();
                if resources.is_empty() && urls.is_empty() {
                    return Err(e(format!("rule {} of ClusterRole {name} names no resources and no nonResourceURLs", i + 1)));
                }
                let groups = pr.api_groups.unwrap_or_default();
                if !resources.is_empty() && groups.is_empty() {
                    return Err(e(format!("rule {} of ClusterRole {name} has resources but no apiGroups (use \"\" for the core group)", i + 1)));
                }
                rules.push(Rule { api_groups: groups, resources, resource_names: pr.resource_names.unwrap_or_default(), non_resource_urls: urls, verbs: pr.verbs });
            }
            into.roles.push(Role { name, labels: r.metadata.labels.unwrap_or_default(), annotations: r.metadata.annotations.unwrap_or_default(), rules });
        } else {
            let b: ClusterRoleBinding = serde_yaml::from_value(value).map_err(|e| err("kind", format!("not a valid ClusterRoleBinding: {e}")))?;
            let name = b.metadata.name.clone().filter(|s| !s.is_empty()).ok_or_else(|| err("metadata", "ClusterRoleBinding has no metadata.name".into()))?;
            if into.bindings.iter().any(|x| x.name == name) {
                return Err(err("name", format!("ClusterRoleBinding {name} is defined twice")));
            }
            if b.role_ref.kind != "ClusterRole" || b.role_ref.api_group != RBAC_GROUP {
                return Err(err("roleRef", format!("ClusterRoleBinding {name}: roleRef must be kind ClusterRole, apiGroup {RBAC_GROUP}")));
            }
            let subjects_in = b.subjects.unwrap_or_default();
            if subjects_in.is_empty() {
                return Err(err("subjects", format!("ClusterRoleBinding {name} has no subjects")));
            }
            let mut subjects = Vec::new();
            for (i, s) in subjects_in.into_iter().enumerate() {
                let line = line_of_item(text, start, "subjects", i);
                let e = |m: String| ManifestError::new(path, line, m);
                match s.kind.as_str() {
                    "User" | "Group" if s.api_group.as_deref() != Some(RBAC_GROUP) => {
                        return Err(e(format!("subject {} ({} {}) needs apiGroup {RBAC_GROUP}", i + 1, s.kind, s.name)))
                    }
                    "ServiceAccount" if s.namespace.as_deref().unwrap_or("").is_empty() => {
                        return Err(e(format!("subject {} (ServiceAccount {}) needs a namespace", i + 1, s.name)))
                    }
                    "User" | "Group" | "ServiceAccount" => {}
                    other => return Err(e(format!("subject {} has kind `{other}`; expected User, Group or ServiceAccount", i + 1))),
                }
                if s.name.is_empty() {
                    return Err(e(format!("subject {} has no name", i + 1)));
                }
                subjects.push(Subject { kind: s.kind, name: s.name, api_group: s.api_group, namespace: s.namespace });
            }
            into.bindings.push(Binding {
                name,
                labels: b.metadata.labels.unwrap_or_default(),
                annotations: b.metadata.annotations.unwrap_or_default(),
                role: b.role_ref.name,
                subjects,
                role_ref_at: (path.to_path_buf(), line_of_key(text, start, "roleRef")),
            });
        }
    }
    Ok(())
}

/// Every binding's roleRef names a ClusterRole defined in the manifests.
pub fn check_refs(rbac: &Rbac) -> Result<(), ManifestError> {
    for b in &rbac.bindings {
        if !rbac.roles.iter().any(|r| r.name == b.role) {
            return Err(ManifestError::new(
                &b.role_ref_at.0,
                b.role_ref_at.1,
                format!("ClusterRoleBinding {} refers to ClusterRole {}, which no manifest defines", b.name, b.role),
            ));
        }
    }
    Ok(())
}
