//! Well-known annotation, label and finalizer names, in one place, spelled as Kubernetes spells them.

/// Marks the default StorageClass.
pub const ANN_IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`ANN_IS_DEFAULT_CLASS`], still honoured by Kubernetes.
pub const ANN_BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// Set on a claim once the PV controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a PV and claim when the controller (not the user) made the binding.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a WaitForFirstConsumer claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Who provisioned a PV.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// Which provisioner should provision a claim.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`].
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// kubectl's record of the last applied configuration.
pub const ANN_LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The provisioner name that means "never provisioned".
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// Keeps a claim while pods use it.
pub const FINALIZER_PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Keeps a PV while it is bound.
pub const FINALIZER_PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// The field manager-free marker the apiserver sets on namespaces.
pub const FINALIZER_NAMESPACE: &str = "kubernetes";
/// A node's hostname label.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
/// The per-driver node IDs on a Node.
pub const ANN_CSI_NODE_ID: &str = "csi.volume.kubernetes.io/nodeid";
/// Nodes whose attach/detach is done by the controller.
pub const ANN_CONTROLLER_MANAGED_ATTACH: &str = "volumes.kubernetes.io/controller-managed-attach-detach";

/// Whether an object's annotations mark it as the default StorageClass (either spelling, value `"true"`).
pub fn is_default_class(annotations: Option<&std::collections::BTreeMap<String, String>>) -> bool {
    annotations.is_some_and(|a| {
        a.get(ANN_IS_DEFAULT_CLASS).map(String::as_str) == Some("true")
            || a.get(ANN_BETA_IS_DEFAULT_CLASS).map(String::as_str) == Some("true")
    })
}

/// Set on a PV by kvol's local-path provisioner: how the volume's capacity is enforced (`btrfs-qgroup`), or
/// `none` when the filesystem under the base directory cannot limit a directory.
pub const ANN_CAPACITY_ENFORCEMENT: &str = "kvol.io/capacity-enforcement";
/// Why a local-path PV's capacity is not enforced (set with `ANN_CAPACITY_ENFORCEMENT: none`).
pub const ANN_CAPACITY_NOT_ENFORCED_REASON: &str = "kvol.io/capacity-not-enforced-reason";
/// Set on a local-path PV provisioned with `archiveOnDelete: "true"`: Delete reclaim renames the directory
/// to `archived-<name>` instead of removing it.
pub const ANN_ARCHIVE_ON_DELETE: &str = "kvol.io/archive-on-delete";
/// A PV (or claim) handed to a CSI driver by in-tree migration: the in-tree controllers stand down.
pub const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// The scheduler that places pods whose `schedulerName` is unset.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
