//! The desired-state populator (kubelet's `populator/desired_state_of_world_populator.go`): turns a pod
//! bound to this node into the volumes it needs, resolving claims through their bound PersistentVolumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{Api, Client};
use kvol_mount::FsGroupChangePolicy;
use kvol_volume::{MounterArgs, PluginRegistry, PodRef, VolumeHost, VolumeSpec};

use crate::desired::{DesiredDevice, DesiredPod, DesiredVolume, ObjectRef};
use crate::error::{Error, Result};
use crate::volume_id::VolumeId;

/// Whether the agent should have this pod's volumes set up: not being deleted and not finished.
pub fn wants_volumes(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
    pod.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
}

/// The pod's uid, namespace and name.
pub fn pod_ref(pod: &Pod) -> PodRef {
    PodRef {
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

/// The pod's fsGroup settings.
pub fn mounter_args(pod: &Pod) -> MounterArgs {
    let sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    MounterArgs {
        fs_group: sc.and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok()),
        fs_group_change_policy: match sc.and_then(|s| s.fs_group_change_policy.as_deref()) {
            Some("OnRootMismatch") => FsGroupChangePolicy::OnRootMismatch,
            _ => FsGroupChangePolicy::Always,
        },
    }
}

/// Resolves a claim to its bound PV, with kubelet's messages.
pub async fn resolve_claim(client: &Client, namespace: &str, claim: &str) -> Result<PersistentVolume> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = pvcs.get(claim).await.map_err(|e| {
        Error::Claim(format!(
            "error processing PVC {namespace}/{claim}: failed to fetch PVC from API server: {}",
            api_message(&e)
        ))
    })?;
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if phase != "Bound" || volume_name.is_empty() {
        return Err(Error::Claim(format!(
            "error processing PVC {namespace}/{claim}: PVC {namespace}/{claim} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume_name:?})"
        )));
    }
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get(&volume_name).await.map_err(|e| {
        Error::Claim(format!(
            "error processing PVC {namespace}/{claim}: failed to fetch PV {volume_name:?} from API server: {}",
            api_message(&e)
        ))
    })?;
    let claim_uid = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.uid.clone());
    match claim_uid {
        None => Err(Error::Claim(format!(
            "error processing PVC {namespace}/{claim}: found PV object {volume_name:?} but its Spec.ClaimRef is nil"
        ))),
        Some(uid) if Some(&uid) != pvc.metadata.uid.as_ref() => Err(Error::Claim(format!(
            "error processing PVC {namespace}/{claim}: found PV object {volume_name:?} but its ClaimRef.UID {uid:?} points to a different PVC (UID {:?})",
            pvc.metadata.uid.clone().unwrap_or_default()
        ))),
        Some(_) => Ok(pv),
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Every volume of `pod` as a spec (claims resolved) or the error that prevents it, by the pod's volume name.
pub async fn volume_specs(client: &Client, pod: &Pod) -> BTreeMap<String, std::result::Result<VolumeSpec, String>> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let mut out = BTreeMap::new();
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default() {
        let spec = match &v.persistent_volume_claim {
            Some(claim) => resolve_claim(client, &namespace, &claim.claim_name)
                .await
                .map(|pv| VolumeSpec::Persistent { pv: Box::new(pv), read_only: claim.read_only.unwrap_or(false) })
                .map_err(|e| e.to_string()),
            None => Ok(VolumeSpec::Inline(Box::new(v.clone()))),
        };
        out.insert(v.name.clone(), spec);
    }
    out
}

/// The desired volumes of `pod`, with the device phase of those whose plugin has one.
pub async fn desired_pod(
    client: &Client,
    registry: &PluginRegistry,
    host: &Arc<dyn VolumeHost>,
    pod: Arc<Pod>,
) -> DesiredPod {
    let specs = volume_specs(client, &pod).await;
    let mut desired = desired_pod_from_specs(registry, pod, specs);
    resolve_devices(&mut desired, host).await;
    desired
}

/// Fills in [`DesiredVolume::device`] (kubelet's unique volume name and whether to wait for an attach).
/// The plugin may run its driver for the name (FlexVolume's `getvolumename`), so this runs on the blocking
/// pool; a volume whose name cannot be had becomes one of the pod's errors.
pub async fn resolve_devices(desired: &mut DesiredPod, host: &Arc<dyn VolumeHost>) {
    let mut failed = Vec::new();
    for (outer_name, volume) in desired.volumes.iter_mut() {
        if volume.plugin.as_device().is_none() {
            continue;
        }
        let plugin = Arc::clone(&volume.plugin);
        let spec = volume.spec.clone();
        let host = Arc::clone(host);
        let resolved = tokio::task::spawn_blocking(move || {
            let device = plugin.as_device().expect("checked above");
            let unique_name = device.unique_name(&spec, host.as_ref())?;
            let requires_attach = device.requires_attach(&spec, host.as_ref())?;
            Ok::<_, kvol_volume::Error>(DesiredDevice { unique_name, requires_attach })
        })
        .await;
        match resolved {
            Ok(Ok(device)) => volume.device = Some(device),
            Ok(Err(e)) => failed.push((outer_name.clone(), e.to_string())),
            Err(e) => failed.push((outer_name.clone(), format!("resolving the volume's device: {e}"))),
        }
    }
    for (outer_name, error) in failed {
        desired.volumes.remove(&outer_name);
        desired.errors.insert(outer_name, error);
    }
}

/// [`desired_pod`] for specs already resolved.
pub fn desired_pod_from_specs(
    registry: &PluginRegistry,
    pod: Arc<Pod>,
    specs: BTreeMap<String, std::result::Result<VolumeSpec, String>>,
) -> DesiredPod {
    let pod_ref = pod_ref(&pod);
    let mut volumes = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for (outer_name, spec) in specs {
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                errors.insert(outer_name, e);
                continue;
            }
        };
        let plugin = match registry.find_by_spec(&spec) {
            Ok(p) => p,
            Err(e) => {
                // kubelet's populator text.
                let message = format!("failed to get Plugin from volumeSpec for volume {:?} err={e}", spec.name());
                errors.insert(outer_name, message);
                continue;
            }
        };
        let object = spec.inline().and_then(|v| {
            v.config_map
                .as_ref()
                .map(|c| ObjectRef::ConfigMap(c.name.clone()))
                .or_else(|| v.secret.as_ref().map(|s| ObjectRef::Secret(s.secret_name.clone().unwrap_or_default())))
        });
        let id =
            VolumeId { pod_uid: pod_ref.uid.clone(), plugin: plugin.name().to_string(), spec_name: spec.name().into() };
        volumes.insert(
            outer_name.clone(),
            DesiredVolume { id, outer_name, spec, plugin, generation: 0, object, device: None },
        );
    }
    DesiredPod { args: mounter_args(&pod), pod, pod_ref, volumes, errors, first_seen: Instant::now() }
}
