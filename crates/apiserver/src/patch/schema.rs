//! Patch metadata per kind: which list fields merge, by which key, and which carry `retainKeys`.
//!
//! kube-apiserver reads this from the Go struct tags (`patchStrategy`, `patchMergeKey`) by reflection.
//! kvol has no Go types to reflect on, so the tags of the kinds kvol serves are written out here as
//! a static table, one path per tagged field. Paths join map field names with `.` and pass through
//! list elements transparently: `spec.containers.ports` is the `ports` field of every container.
//! Every entry was checked against `staging/src/k8s.io/api/core/v1/types.go`,
//! `staging/src/k8s.io/api/storage/v1/types.go` and `apimachinery/pkg/apis/meta/v1/types.go`;
//! fields without a tag (tolerations, `mountOptions`, `volumesAttached`, `topologyKeys` …) are absent
//! and so keep the default: maps merge, lists are replaced.

/// How a field's value is patched, as its Go `patchStrategy` tag says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// No tag: maps merge recursively, lists are replaced by the patch's list.
    #[default]
    Default,
    /// `patchStrategy:"merge"`: lists merge (by `merge_key` for lists of maps, by value otherwise).
    Merge,
    /// `patchStrategy:"replace"`: the patch's value replaces the whole field.
    Replace,
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldPatch {
    pub(crate) strategy: Strategy,
    /// `patchMergeKey`: the key identifying an element of a list of maps.
    pub(crate) merge_key: Option<&'static str>,
    /// `retainKeys` in the strategy: clients send `$retainKeys` in the list's elements. Applying a
    /// patch honours `$retainKeys` wherever it appears, so this is informational only.
    #[allow(dead_code)] // kept for completeness of the tag table; the apply side never needs it
    pub(crate) retain_keys: bool,
}

const fn merge_primitives() -> FieldPatch {
    FieldPatch { strategy: Strategy::Merge, merge_key: None, retain_keys: false }
}

const fn merge_by(key: &'static str) -> FieldPatch {
    FieldPatch { strategy: Strategy::Merge, merge_key: Some(key), retain_keys: false }
}

const fn merge_retain_by(key: &'static str) -> FieldPatch {
    FieldPatch { strategy: Strategy::Merge, merge_key: Some(key), retain_keys: true }
}

/// `ObjectMeta`, shared by every typed kind.
const OBJECT_META: &[(&str, FieldPatch)] =
    &[("metadata.finalizers", merge_primitives()), ("metadata.ownerReferences", merge_by("uid"))];

/// `PodSpec`, `PodStatus`, `Container` and `EphemeralContainerCommon`.
const POD: &[(&str, FieldPatch)] = &[
    ("spec.volumes", merge_retain_by("name")),
    ("spec.initContainers", merge_by("name")),
    ("spec.containers", merge_by("name")),
    ("spec.ephemeralContainers", merge_by("name")),
    ("spec.initContainers.ports", merge_by("containerPort")),
    ("spec.initContainers.env", merge_by("name")),
    ("spec.initContainers.volumeMounts", merge_by("mountPath")),
    ("spec.initContainers.volumeDevices", merge_by("devicePath")),
    ("spec.containers.ports", merge_by("containerPort")),
    ("spec.containers.env", merge_by("name")),
    ("spec.containers.volumeMounts", merge_by("mountPath")),
    ("spec.containers.volumeDevices", merge_by("devicePath")),
    ("spec.ephemeralContainers.ports", merge_by("containerPort")),
    ("spec.ephemeralContainers.env", merge_by("name")),
    ("spec.ephemeralContainers.volumeMounts", merge_by("mountPath")),
    ("spec.ephemeralContainers.volumeDevices", merge_by("devicePath")),
    ("spec.imagePullSecrets", merge_by("name")),
    ("spec.hostAliases", merge_by("ip")),
    ("spec.topologySpreadConstraints", merge_by("topologyKey")),
    ("spec.schedulingGates", merge_by("name")),
    ("spec.resourceClaims", merge_retain_by("name")),
    ("status.conditions", merge_by("type")),
    ("status.podIPs", merge_by("ip")),
    ("status.hostIPs", merge_by("ip")),
    ("status.resourceClaimStatuses", merge_retain_by("name")),
];

/// `NodeSpec` and `NodeStatus` (`volumesAttached` and `volumesInUse` have no tag: atomic).
const NODE: &[(&str, FieldPatch)] = &[
    ("spec.podCIDRs", merge_primitives()),
    ("status.conditions", merge_by("type")),
    ("status.addresses", merge_by("type")),
];

/// `PersistentVolumeClaimStatus` and `NamespaceStatus` share the conditions tag.
const STATUS_CONDITIONS: &[(&str, FieldPatch)] = &[("status.conditions", merge_by("type"))];

/// `CSINodeSpec`.
const CSI_NODE: &[(&str, FieldPatch)] = &[("spec.drivers", merge_by("name"))];

/// The patch metadata of one kind.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schema {
    /// False for kinds kvol does not know: no field has a strategy at all.
    known: bool,
    fields: &'static [(&'static str, FieldPatch)],
}

impl Schema {
    /// The schema of `kind` (`Pod`, `PersistentVolume`, `CSINode` …). Unknown kinds get plain map
    /// merging with every list replaced.
    pub(crate) fn for_kind(kind: &str) -> Schema {
        let fields: &'static [(&'static str, FieldPatch)] = match kind {
            "Pod" => POD,
            "Node" => NODE,
            "PersistentVolumeClaim" | "Namespace" => STATUS_CONDITIONS,
            "CSINode" => CSI_NODE,
            "PersistentVolume" | "ConfigMap" | "Secret" | "Event" | "StorageClass" | "VolumeAttachment"
            | "CSIDriver" => &[],
            _ => return Schema { known: false, fields: &[] },
        };
        Schema { known: true, fields }
    }

    /// The metadata of the field at `path` (see the module doc for the path form).
    pub(crate) fn field(&self, path: &str) -> FieldPatch {
        if !self.known {
            return FieldPatch::default();
        }
        OBJECT_META.iter().chain(self.fields).find(|(p, _)| *p == path).map(|(_, f)| *f).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_volumes_merge_by_name_and_retain_keys() {
        let f = Schema::for_kind("Pod").field("spec.volumes");
        assert_eq!(f.strategy, Strategy::Merge);
        assert_eq!(f.merge_key, Some("name"));
        assert!(f.retain_keys);
    }

    #[test]
    fn every_typed_kind_merges_finalizers_and_owner_references() {
        for kind in [
            "PersistentVolume",
            "PersistentVolumeClaim",
            "Pod",
            "ConfigMap",
            "Secret",
            "Node",
            "Namespace",
            "Event",
            "StorageClass",
            "VolumeAttachment",
            "CSIDriver",
            "CSINode",
        ] {
            let s = Schema::for_kind(kind);
            assert_eq!(s.field("metadata.finalizers").strategy, Strategy::Merge, "{kind}");
            assert_eq!(s.field("metadata.ownerReferences").merge_key, Some("uid"), "{kind}");
        }
    }

    #[test]
    fn untagged_fields_and_unknown_kinds_have_the_default_strategy() {
        assert_eq!(Schema::for_kind("Pod").field("spec.tolerations"), FieldPatch::default());
        assert_eq!(Schema::for_kind("PersistentVolume").field("spec.mountOptions"), FieldPatch::default());
        assert_eq!(Schema::for_kind("Node").field("status.volumesAttached"), FieldPatch::default());
        assert_eq!(Schema::for_kind("Widget").field("metadata.finalizers"), FieldPatch::default());
    }
}
