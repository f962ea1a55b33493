//! Authorization. Members of `system:masters` may do everything. A node agent (`system:node:<name>` in
//! `system:nodes`) acts only as its own node, as Kubernetes' Node authorizer and NodeRestriction admission
//! enforce it:
//! - It may read what kubelet reads. Secrets and ConfigMaps are readable only when a pod bound to the node
//!   (or a PV one of those pods claims) refers to them.
//! - It may write only its own Node and CSINode, the status of pods bound to it, those pods' final deletion,
//!   and Events.
//! - It may use the `nodes/proxy` subresource only for its own node (Kubernetes grants nodes none).
//!
//! Everything else is refused with RBAC's wording, so clients print the same `Error from server (Forbidden)`.

use crate::auth::User;
use crate::status::ApiError;
use crate::ApiState;
use kvol_api::resources::by_kind;
use kvol_api::Resource;
use kvol_store::RangeOptions;
use serde_json::Value;

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

/// The request being authorized.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The verb.
    pub verb: Verb,
    /// The resource.
    pub resource: &'static Resource,
    /// `status`, `finalize`, `binding`, `proxy`, or none.
    pub subresource: Option<&'a str>,
    /// The namespace in the path.
    pub namespace: Option<&'a str>,
    /// The object's name: from the path, or from a `metadata.name=` field selector on a list or watch.
    pub name: Option<&'a str>,
}

/// The node a user acts for, if it is a node agent.
pub fn node_of(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    user.groups.iter().any(|g| g == "system:nodes").then_some(name)
}

/// Allow or refuse a request.
pub fn authorize(state: &ApiState, user: &User, a: &Attributes<'_>) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let Some(node) = node_of(user) else { return Err(forbidden(user, a, None)) };
    let kind = a.resource.kind;
    let allowed = match (kind, a.verb) {
        ("Secret" | "ConfigMap", verb) if verb.is_read() => match a.name {
            Some(name) => referenced_by_node(state, node, kind, a.namespace.unwrap_or_default(), name)?,
            None => false,
        },
        // Node authorizer grants no `nodes/proxy` at all; a node reading its own kubelet through the API
        // server reveals nothing it cannot read locally, so that much is allowed and no more.
        ("Node", Verb::Get) if a.subresource == Some("proxy") => a.name == Some(node),
        (_, verb) if verb.is_read() => true,
        // A create is authorized on the name the object will have (routes resolve `generateName` first): a
        // nameless create is no node's own.
        ("Node", Verb::Create | Verb::Update | Verb::Patch) => a.name == Some(node),
        ("CSINode", Verb::Create | Verb::Update | Verb::Patch | Verb::Delete) => a.name == Some(node),
        ("Pod", Verb::Update | Verb::Patch) if a.subresource == Some("status") => pod_on_node(state, node, a)?,
        ("Pod", Verb::Delete) => pod_on_node(state, node, a)?,
        ("Event", Verb::Create | Verb::Update | Verb::Patch) => true,
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        let why = match kind {
            "Secret" | "ConfigMap" => format!("no relationship found between node '{node}' and this object"),
            "Node" if a.subresource == Some("proxy") => format!("node '{node}' may proxy only to its own kubelet"),
            // NodeRestriction's words.
            "Node" => format!("node {node:?} is not allowed to modify node {:?}", a.name.unwrap_or("")),
            "CSINode" => "can only access CSINode with the same name as the requesting node".to_string(),
            "Pod" => format!("node '{node}' can only modify pods bound to it"),
            _ => format!("node '{node}' may not {} {}", a.verb.as_str(), a.resource.plural),
        };
        Err(forbidden(user, a, Some(&why)))
    }
}

/// RBAC's message: `pods "p" is forbidden: User "u" cannot patch resource "pods/status" in API group ""
/// in the namespace "default"[: reason]`.
fn forbidden(user: &User, a: &Attributes<'_>, why: Option<&str>) -> ApiError {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource.plural),
        None => a.resource.plural.to_string(),
    };
    let subject = match a.name {
        Some(name) => format!("{} {name:?}", crate::status::qualified(a.resource)),
        None => crate::status::qualified(a.resource),
    };
    let scope = match a.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    let mut message = format!(
        "{subject} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.name,
        a.verb.as_str(),
        a.resource.group
    );
    if let Some(why) = why {
        message.push_str(": ");
        message.push_str(why);
    }
    let mut e = ApiError::forbidden(message);
    e.details =
        Some(serde_json::json!({ "name": a.name.unwrap_or(""), "group": a.resource.group, "kind": a.resource.plural }));
    e
}

fn stored(
    state: &ApiState,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let kv = state.store.get(&resource.key(namespace, name)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(kv.and_then(|kv| serde_json::from_slice(&kv.value).ok()))
}

fn pod_on_node(state: &ApiState, node: &str, a: &Attributes<'_>) -> Result<bool, ApiError> {
    let Some(name) = a.name else { return Ok(false) };
    Ok(stored(state, a.resource, a.namespace, name)?.is_some_and(|pod| pod["spec"]["nodeName"] == node))
}

/// Whether a pod bound to `node` in `namespace` refers to the Secret or ConfigMap `name`, directly or
/// through a PersistentVolume it claims.
fn referenced_by_node(state: &ApiState, node: &str, kind: &str, namespace: &str, name: &str) -> Result<bool, ApiError> {
    let pods = by_kind("v1", "Pod").expect("Pod is served");
    let listed = state
        .store
        .range(&pods.namespace_prefix(Some(namespace)), &RangeOptions::default())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    for kv in listed.kvs {
        let Ok(pod) = serde_json::from_slice::<Value>(&kv.value) else { continue };
        if pod["spec"]["nodeName"] != node {
            continue;
        }
        let mut refs = Vec::new();
        pod_references(&pod, kind, &mut refs);
        if refs.iter().any(|r| r == name) {
            return Ok(true);
        }
        if kind == "Secret" && pv_secret_of_pod(state, &pod, namespace, name)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn strings(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The names of the Secrets or ConfigMaps a pod refers to: volumes, projected sources, env, envFrom and
/// (for Secrets) image pull secrets.
fn pod_references(pod: &Value, kind: &str, out: &mut Vec<String>) {
    let push = |out: &mut Vec<String>, v: &Value| {
        if let Some(s) = v.as_str() {
            out.push(s.to_string());
        }
    };
    let spec = &pod["spec"];
    for volume in strings(&spec["volumes"]) {
        match kind {
            "Secret" => {
                push(out, &volume["secret"]["secretName"]);
                push(out, &volume["flexVolume"]["secretRef"]["name"]);
                push(out, &volume["csi"]["nodePublishSecretRef"]["name"]);
                push(out, &volume["cephfs"]["secretRef"]["name"]);
            }
            _ => push(out, &volume["configMap"]["name"]),
        }
        for source in strings(&volume["projected"]["sources"]) {
            push(out, &source[if kind == "Secret" { "secret" } else { "configMap" }]["name"]);
        }
    }
    let (key_ref, env_from) =
        if kind == "Secret" { ("secretKeyRef", "secretRef") } else { ("configMapKeyRef", "configMapRef") };
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for container in strings(&spec[list]) {
            for env in strings(&container["env"]) {
                push(out, &env["valueFrom"][key_ref]["name"]);
            }
            for from in strings(&container["envFrom"]) {
                push(out, &from[env_from]["name"]);
            }
        }
    }
    if kind == "Secret" {
        for s in strings(&spec["imagePullSecrets"]) {
            push(out, &s["name"]);
        }
    }
}

/// Whether a PV bound to one of the pod's claims names the Secret in this namespace (flexVolume, csi,
/// cephfs secret references).
fn pv_secret_of_pod(state: &ApiState, pod: &Value, namespace: &str, secret: &str) -> Result<bool, ApiError> {
    let pvcs = by_kind("v1", "PersistentVolumeClaim").expect("PVC is served");
    let pvs = by_kind("v1", "PersistentVolume").expect("PV is served");
    for volume in strings(&pod["spec"]["volumes"]) {
        let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() else { continue };
        let Some(pvc) = stored(state, pvcs, Some(namespace), claim)? else { continue };
        let Some(pv_name) = pvc["spec"]["volumeName"].as_str() else { continue };
        let Some(pv) = stored(state, pvs, None, pv_name)? else { continue };
        let spec = &pv["spec"];
        for reference in [
            &spec["flexVolume"]["secretRef"],
            &spec["csi"]["nodeStageSecretRef"],
            &spec["csi"]["nodePublishSecretRef"],
            &spec["csi"]["nodeExpandSecretRef"],
            &spec["cephfs"]["secretRef"],
        ] {
            let ns = reference["namespace"].as_str().unwrap_or(namespace);
            if reference["name"] == secret && ns == namespace {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Tokens;
    use kvol_store::{Precondition, SqliteOptions, SqliteStore, Store};
    use std::sync::Arc;

    struct Fixture {
        state: ApiState,
        _dir: tempfile::TempDir,
    }

    async fn fixture(objects: &[(&str, &str, Option<&str>, Value)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("db"), SqliteOptions::default()).unwrap());
        for (kind, name, ns, obj) in objects {
            let r = kvol_api::RESOURCES.iter().find(|r| r.kind == *kind).unwrap();
            store.put(r.key(*ns, name), serde_json::to_vec(obj).unwrap().into(), Precondition::None).await.unwrap();
        }
        let (tokens, _) = Tokens::load_or_create(&dir.path().join("tokens.csv")).unwrap();
        let state = ApiState {
            store,
            tokens: Arc::new(tokens),
            advertise_address: String::new(),
            bookmark_interval: std::time::Duration::from_secs(1),
            watch_timeout: std::time::Duration::from_secs(1),
            limits: Default::default(),
        };
        Fixture { state, _dir: dir }
    }

    fn node(name: &str) -> User {
        User { name: format!("system:node:{name}"), groups: vec!["system:nodes".into(), "system:authenticated".into()] }
    }

    fn attrs<'a>(
        kind: &str,
        verb: Verb,
        ns: Option<&'a str>,
        name: Option<&'a str>,
        sub: Option<&'a str>,
    ) -> Attributes<'a> {
        let resource = kvol_api::RESOURCES.iter().find(|r| r.kind == kind).unwrap();
        Attributes { verb, resource, subresource: sub, namespace: ns, name }
    }

    fn pod_on(node: &str) -> Value {
        serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "a"}}}]}],
                "volumes": [{"name": "s", "secret": {"secretName": "mounted"}}, {"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}]
            }
        })
    }

    #[tokio::test]
    async fn a_node_acts_only_as_itself() {
        let f = fixture(&[
            ("Pod", "p", Some("default"), pod_on("n1")),
            ("PersistentVolumeClaim", "claim", Some("default"), serde_json::json!({"spec": {"volumeName": "pv1"}})),
            (
                "PersistentVolume",
                "pv1",
                None,
                serde_json::json!({"spec": {"flexVolume": {"driver": "k8s/x", "secretRef": {"name": "flex-secret"}}}}),
            ),
        ])
        .await;
        let n1 = node("n1");
        let n2 = node("n2");
        struct Case {
            name: &'static str,
            user: User,
            attrs: Attributes<'static>,
            allowed: bool,
        }
        let cases = [
            Case {
                name: "reads pods",
                user: n2.clone(),
                attrs: attrs("Pod", Verb::List, None, None, None),
                allowed: true,
            },
            Case {
                name: "updates its own node",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Patch, None, Some("n1"), Some("status")),
                allowed: true,
            },
            Case {
                name: "may not update another node",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Update, None, Some("n2"), None),
                allowed: false,
            },
            Case {
                name: "proxies to its own kubelet",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Get, None, Some("n1"), Some("proxy")),
                allowed: true,
            },
            Case {
                name: "may not proxy to another node's kubelet",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Get, None, Some("n2"), Some("proxy")),
                allowed: false,
            },
            Case {
                name: "may not delete its node",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Delete, None, Some("n1"), None),
                allowed: false,
            },
            Case {
                name: "patches status of its pod",
                user: n1.clone(),
                attrs: attrs("Pod", Verb::Patch, Some("default"), Some("p"), Some("status")),
                allowed: true,
            },
            Case {
                name: "may not patch status of another node's pod",
                user: n2.clone(),
                attrs: attrs("Pod", Verb::Patch, Some("default"), Some("p"), Some("status")),
                allowed: false,
            },
            Case {
                name: "may not change a pod's spec",
                user: n1.clone(),
                attrs: attrs("Pod", Verb::Update, Some("default"), Some("p"), None),
                allowed: false,
            },
            Case {
                name: "deletes its pod",
                user: n1.clone(),
                attrs: attrs("Pod", Verb::Delete, Some("default"), Some("p"), None),
                allowed: true,
            },
            Case {
                name: "reads a secret its pod mounts",
                user: n1.clone(),
                attrs: attrs("Secret", Verb::Get, Some("default"), Some("mounted"), None),
                allowed: true,
            },
            Case {
                name: "reads a secret a claimed PV names",
                user: n1.clone(),
                attrs: attrs("Secret", Verb::Watch, Some("default"), Some("flex-secret"), None),
                allowed: true,
            },
            Case {
                name: "reads a configmap its pod's env uses",
                user: n1.clone(),
                attrs: attrs("ConfigMap", Verb::Get, Some("default"), Some("env-cm"), None),
                allowed: true,
            },
            Case {
                name: "may not read an unrelated secret",
                user: n1.clone(),
                attrs: attrs("Secret", Verb::Get, Some("default"), Some("other"), None),
                allowed: false,
            },
            Case {
                name: "may not read secrets of pods on other nodes",
                user: n2.clone(),
                attrs: attrs("Secret", Verb::Get, Some("default"), Some("mounted"), None),
                allowed: false,
            },
            Case {
                name: "may not list all secrets",
                user: n1.clone(),
                attrs: attrs("Secret", Verb::List, Some("default"), None, None),
                allowed: false,
            },
            Case {
                name: "creates events",
                user: n1.clone(),
                attrs: attrs("Event", Verb::Create, Some("default"), Some("e"), None),
                allowed: true,
            },
            Case {
                name: "writes its CSINode",
                user: n1.clone(),
                attrs: attrs("CSINode", Verb::Create, None, Some("n1"), None),
                allowed: true,
            },
            Case {
                name: "may not create its CSINode without a name (generateName)",
                user: n1.clone(),
                attrs: attrs("CSINode", Verb::Create, None, None, None),
                allowed: false,
            },
            Case {
                name: "may not create a Node without a name (generateName)",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Create, None, None, None),
                allowed: false,
            },
            Case {
                name: "may not create another node",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Create, None, Some("n2"), None),
                allowed: false,
            },
            Case {
                name: "creates its own node",
                user: n1.clone(),
                attrs: attrs("Node", Verb::Create, None, Some("n1"), None),
                allowed: true,
            },
            Case {
                name: "may not create PVs",
                user: n1.clone(),
                attrs: attrs("PersistentVolume", Verb::Create, None, Some("x"), None),
                allowed: false,
            },
            Case {
                name: "an ordinary user without a group may do nothing",
                user: User { name: "bob".into(), groups: vec![] },
                attrs: attrs("Pod", Verb::Get, Some("default"), Some("p"), None),
                allowed: false,
            },
        ];
        for c in cases {
            let got = authorize(&f.state, &c.user, &c.attrs);
            assert_eq!(got.is_ok(), c.allowed, "{}: {:?}", c.name, got.err().map(|e| e.message));
        }
    }

    #[tokio::test]
    async fn refusals_read_like_rbac() {
        let f = fixture(&[]).await;
        let e = authorize(&f.state, &node("n1"), &attrs("PersistentVolume", Verb::Create, None, Some("x"), None))
            .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"persistentvolumes "x" is forbidden: User "system:node:n1" cannot create resource "persistentvolumes" in API group "" at the cluster scope: node 'n1' may not create persistentvolumes"#
        );
    }
}
