//! The resources kvol serves, as one static table: group, version, kind, plural, scope and subresources.
//! The API server routes by it, discovery is generated from it and the CLI resolves `kvol get pv` with it,
//! so adding a resource is one row here plus its validation and defaulting.

/// One served resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    /// API group; `""` for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `PersistentVolume`.
    pub kind: &'static str,
    /// Lower-case plural used in URLs, e.g. `persistentvolumes`.
    pub plural: &'static str,
    /// Lower-case singular name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl's short names, e.g. `pv`.
    pub short_names: &'static [&'static str],
    /// Whether the resource has a `status` subresource.
    pub has_status: bool,
    /// Categories for `kubectl get all` and friends.
    pub categories: &'static [&'static str],
}

impl Resource {
    /// `v1` or `storage.k8s.io/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `PersistentVolumeList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key prefix for every object of this resource: `/registry/<group>/<plural>/`.
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/core/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    /// The store key prefix for the objects of one namespace (or all objects of a cluster-scoped resource).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.key_prefix()),
            _ => self.key_prefix(),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    /// Whether `word` names this resource the way kubectl accepts it: plural, singular, kind (any case),
    /// a short name, or `plural.group`.
    pub fn matches_name(&self, word: &str) -> bool {
        let w = word.to_ascii_lowercase();
        let (base, group) = match w.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (w.clone(), None),
        };
        if let Some(g) = group {
            let own = if self.group.is_empty() { "" } else { self.group };
            if g != own && !(own.is_empty() && g == "core") {
                return false;
            }
        }
        base == self.plural
            || base == self.singular
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.contains(&base.as_str())
    }
}

const CORE: &str = "";
const STORAGE: &str = "storage.k8s.io";

/// Every resource kvol serves.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: CORE,
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        has_status: true,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        has_status: true,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        has_status: true,
        categories: &["all"],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        has_status: false,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        has_status: false,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        has_status: true,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        has_status: true,
        categories: &[],
    },
    Resource {
        group: CORE,
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        has_status: false,
        categories: &[],
    },
    Resource {
        group: STORAGE,
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        has_status: false,
        categories: &[],
    },
    Resource {
        group: STORAGE,
        version: "v1",
        kind: "VolumeAttachment",
        plural: "volumeattachments",
        singular: "volumeattachment",
        namespaced: false,
        short_names: &[],
        has_status: true,
        categories: &[],
    },
    Resource {
        group: STORAGE,
        version: "v1",
        kind: "CSIDriver",
        plural: "csidrivers",
        singular: "csidriver",
        namespaced: false,
        short_names: &[],
        has_status: false,
        categories: &[],
    },
    Resource {
        group: STORAGE,
        version: "v1",
        kind: "CSINode",
        plural: "csinodes",
        singular: "csinode",
        namespaced: false,
        short_names: &[],
        has_status: false,
        categories: &[],
    },
];

/// The resource served at `/<prefix>/<group>/<version>/<plural>`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The resource a user means by `word` (`pv`, `persistentvolumes`, `PersistentVolume`, `sc.storage.k8s.io`).
pub fn by_name(word: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.matches_name(word))
}

/// The API groups served besides the core group, each with its versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resources_by_every_name_kubectl_accepts() {
        for word in ["pv", "PV", "persistentvolume", "persistentvolumes", "PersistentVolume", "pv.core"] {
            assert_eq!(by_name(word).map(|r| r.kind), Some("PersistentVolume"), "{word}");
        }
        assert_eq!(by_name("sc.storage.k8s.io").map(|r| r.kind), Some("StorageClass"));
        assert_eq!(by_name("sc.apps"), None);
        assert_eq!(by_name("deployments"), None);
    }

    #[test]
    fn keys_place_namespaced_objects_under_their_namespace() {
        let pvc = by_kind("v1", "PersistentVolumeClaim").unwrap();
        assert_eq!(pvc.key(Some("default"), "c1"), "/registry/core/persistentvolumeclaims/default/c1");
        let sc = by_kind("storage.k8s.io/v1", "StorageClass").unwrap();
        assert_eq!(sc.key(None, "fast"), "/registry/storage.k8s.io/storageclasses/fast");
        assert!(by_kind("storage.k8s.io/v3", "StorageClass").is_none());
    }

    #[test]
    fn lists_the_storage_group() {
        assert_eq!(groups(), vec![("storage.k8s.io", vec!["v1"])]);
    }
}
