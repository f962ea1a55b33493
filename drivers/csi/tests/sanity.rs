//! The CSI community's sanity suite (kubernetes-csi/csi-test `pkg/sanity`), case by case, where the
//! conformance suite does not already cover it: the same calls with the same arguments and the same
//! checks, against the real binary on both backends (and, on the loop backend, also with sanity's
//! `--csi.testvolumeaccesstype=block`).
//!
//! The harness does what csi-sanity does around each case: it `mkdir`s the target parent
//! (`<tmp>/csi-mount`; NodePublish gets `<tmp>/csi-mount/target`, which does not exist) and the staging
//! directory, remembers every volume and snapshot a case creates, and afterwards cleans them up in
//! reverse order exactly as sanity's `Resources.Cleanup` does: NodeUnpublishVolume and
//! NodeUnstageVolume (OK or NOT_FOUND accepted), ControllerUnpublishVolume for volumes it published
//! (must be OK), then DeleteVolume / DeleteSnapshot (must be OK), once per registration. Then it removes
//! the two directories, which fails if the driver left anything mounted or created in them.
//! Needs root, btrfs-progs, e2fsprogs; skips with a message otherwise.

mod util;

use std::collections::HashMap;
use std::path::PathBuf;

use kvol_csi::v1::{
    controller_service_capability, list_snapshots_response, node_service_capability, plugin_capability,
    volume_capability::access_mode::Mode, volume_content_source, CapacityRange, ControllerExpandVolumeRequest,
    ControllerGetCapabilitiesRequest, ControllerPublishVolumeRequest, ControllerPublishVolumeResponse,
    ControllerUnpublishVolumeRequest, CreateSnapshotRequest, CreateVolumeRequest, CreateVolumeResponse,
    DeleteSnapshotRequest, DeleteVolumeRequest, GetCapacityRequest, GetPluginCapabilitiesRequest, GetPluginInfoRequest,
    ListSnapshotsRequest, ListVolumesRequest, NodeExpandVolumeRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest,
    NodeGetInfoResponse, NodeGetVolumeStatsRequest, NodePublishVolumeRequest, NodeStageVolumeRequest,
    NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest, Snapshot, TopologyRequirement,
    ValidateVolumeCapabilitiesRequest, VolumeCapability, VolumeContentSource,
};
use tonic::Code;
use util::*;

/// sanity's `TestVolumeSize` for these runs: 64 MiB, or `KVOL_SANITY_VOLUME_SIZE` bytes (like
/// `--csi.testvolumesize`; sanity's default, 10 GiB, does not fit the 2 GiB btrfs test pool).
fn test_volume_size() -> i64 {
    std::env::var("KVOL_SANITY_VOLUME_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(64 * MIB)
}

/// sanity's `TestVolumeExpandSize` default: `TestVolumeSize` + 1 GiB.
fn test_volume_expand_size() -> i64 {
    test_volume_size() + 1024 * MIB
}

/// sanity's `IdempotentCount` default.
const IDEMPOTENT_COUNT: usize = 10;
/// sanity's `MaxNameLength`.
const MAX_NAME_LENGTH: usize = 128;

/// What sanity registers for cleanup.
enum Resource {
    /// A volume, and the node it was controller-published to.
    Volume {
        id: String,
        node: Option<String>,
    },
    Snapshot(String),
}

/// One sanity run: the driver, sanity's two directories and its cleanup list.
struct Sanity {
    fx: Fixture,
    /// sanity's `TargetPath`: the *parent* of NodePublish's target.
    target_parent: PathBuf,
    /// sanity's `StagingPath`.
    staging: PathBuf,
    /// `--csi.testvolumeaccesstype=block`.
    block: bool,
    resources: Vec<Resource>,
    unique: String,
}

impl Sanity {
    /// A driver on `kind`, with sanity's directories made the default way (`mkdir`, parents exist).
    async fn new(kind: Kind, block: bool) -> Sanity {
        let fx = Fixture::with(kind, &[]).await;
        let target_parent = fx.path("csi-mount");
        let staging = fx.path("csi-staging");
        std::fs::create_dir(&target_parent).unwrap();
        std::fs::create_dir(&staging).unwrap();
        Sanity { fx, target_parent, staging, block, resources: Vec::new(), unique: "-0A1B2C3D-4E5F6071".into() }
    }

    fn label(&self) -> String {
        format!("{:?}{}", self.fx.kind, if self.block { "/block" } else { "" })
    }

    /// sanity's `UniqueString`.
    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.unique)
    }

    /// NodePublish's target path: `<TargetPath>/target`.
    fn target(&self) -> PathBuf {
        self.target_parent.join("target")
    }

    /// sanity's `TestVolumeCapabilityWithAccessType`.
    fn cap(&self, mode: Mode) -> VolumeCapability {
        if self.block {
            block_cap(mode)
        } else {
            mount_cap("", mode)
        }
    }

    fn rwo(&self) -> VolumeCapability {
        self.cap(Mode::SingleNodeWriter)
    }

    /// sanity's `MakeCreateVolumeReq`: required and limit both `TestVolumeSize`.
    fn make_create_req(&self, name: &str) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: name.into(),
            capacity_range: Some(CapacityRange { required_bytes: test_volume_size(), limit_bytes: test_volume_size() }),
            volume_capabilities: vec![self.rwo()],
            ..Default::default()
        }
    }

    /// A request with only `required_bytes`, as most cases send.
    fn sized_create_req(&self, name: &str) -> CreateVolumeRequest {
        let mut req = self.make_create_req(name);
        req.capacity_range = Some(CapacityRange { required_bytes: test_volume_size(), limit_bytes: 0 });
        req
    }

    /// `Resources.CreateVolume`: registers what was created.
    async fn create_volume(&mut self, req: CreateVolumeRequest) -> Result<CreateVolumeResponse, tonic::Status> {
        let result = self.fx.controller().create_volume(req).await.map(|r| r.into_inner());
        if let Some(volume) = result.as_ref().ok().and_then(|r| r.volume.as_ref()) {
            if !volume.volume_id.is_empty() {
                self.resources.push(Resource::Volume { id: volume.volume_id.clone(), node: None });
            }
        }
        result
    }

    /// `Resources.MustCreateVolume`.
    async fn must_create_volume(&mut self, req: CreateVolumeRequest) -> CreateVolumeResponse {
        let label = self.label();
        let created = self.create_volume(req).await.unwrap_or_else(|s| panic!("{label}: volume create failed: {s:?}"));
        assert!(!created.volume.as_ref().expect("volume in response").volume_id.is_empty());
        created
    }

    /// `Resources.DeleteVolume`: unregisters on success.
    async fn delete_volume(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.fx.controller().delete_volume(DeleteVolumeRequest { volume_id: id.into(), ..Default::default() }).await?;
        if let Some(i) = self.resources.iter().position(|r| matches!(r, Resource::Volume { id: v, .. } if v == id)) {
            self.resources.remove(i);
        }
        Ok(())
    }

    /// `Resources.ControllerPublishVolume`: registers the node for cleanup on success.
    async fn controller_publish(
        &mut self,
        req: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse, tonic::Status> {
        let (volume, node) = (req.volume_id.clone(), req.node_id.clone());
        let result = self.fx.controller().controller_publish_volume(req).await.map(|r| r.into_inner());
        if result.is_ok() && !volume.is_empty() && !node.is_empty() {
            self.resources.push(Resource::Volume { id: volume, node: Some(node) });
        }
        result
    }

    /// sanity's `MakeControllerPublishVolumeReq`.
    fn publish_req(&self, volume: &str, node: &str) -> ControllerPublishVolumeRequest {
        ControllerPublishVolumeRequest {
            volume_id: volume.into(),
            node_id: node.into(),
            volume_capability: Some(self.rwo()),
            readonly: false,
            ..Default::default()
        }
    }

    /// `Resources.CreateSnapshot`: registers on success.
    async fn create_snapshot(&mut self, name: &str, source: &str) -> Result<Snapshot, tonic::Status> {
        let req = CreateSnapshotRequest { name: name.into(), source_volume_id: source.into(), ..Default::default() };
        let snapshot = self.fx.controller().create_snapshot(req).await?.into_inner().snapshot.expect("snapshot");
        if !snapshot.snapshot_id.is_empty() {
            self.resources.push(Resource::Snapshot(snapshot.snapshot_id.clone()));
        }
        Ok(snapshot)
    }

    /// `Resources.MustCreateSnapshot`, with sanity's `verifySnapshotInfo`.
    async fn must_create_snapshot(&mut self, name: &str, source: &str) -> Snapshot {
        let label = self.label();
        let snapshot =
            self.create_snapshot(name, source).await.unwrap_or_else(|s| panic!("{label}: create snapshot: {s:?}"));
        verify_snapshot(&snapshot);
        snapshot
    }

    /// `Resources.MustCreateSnapshotFromVolumeRequest`.
    async fn must_create_snapshot_from_volume(&mut self, volume: &str, snapshot: &str) -> (Snapshot, String) {
        let req = self.make_create_req(volume);
        let id = self.must_create_volume(req).await.volume.unwrap().volume_id;
        (self.must_create_snapshot(snapshot, &id).await, id)
    }

    /// `Resources.DeleteSnapshot`: unregisters on success.
    async fn delete_snapshot(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.fx
            .controller()
            .delete_snapshot(DeleteSnapshotRequest { snapshot_id: id.into(), ..Default::default() })
            .await?;
        if let Some(i) = self.resources.iter().position(|r| matches!(r, Resource::Snapshot(s) if s == id)) {
            self.resources.remove(i);
        }
        Ok(())
    }

    async fn node_info(&self) -> NodeGetInfoResponse {
        let info = self.fx.node().node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
        assert!(!info.node_id.is_empty());
        info
    }

    /// sanity's node-side `nodeStageVolume` helper.
    async fn stage(&self, id: &str, context: &HashMap<String, String>, volume_context: &HashMap<String, String>) {
        let req = NodeStageVolumeRequest {
            volume_id: id.into(),
            staging_target_path: self.staging.to_str().unwrap().into(),
            volume_capability: Some(self.rwo()),
            publish_context: context.clone(),
            volume_context: volume_context.clone(),
            ..Default::default()
        };
        let label = self.label();
        self.fx.node().node_stage_volume(req).await.unwrap_or_else(|s| panic!("{label}: NodeStageVolume: {s:?}"));
    }

    /// sanity's node-side `nodePublishVolume` helper.
    async fn publish(&self, id: &str, context: &HashMap<String, String>, volume_context: &HashMap<String, String>) {
        let req = NodePublishVolumeRequest {
            volume_id: id.into(),
            target_path: self.target().to_str().unwrap().into(),
            staging_target_path: self.staging.to_str().unwrap().into(),
            volume_capability: Some(self.rwo()),
            publish_context: context.clone(),
            volume_context: volume_context.clone(),
            ..Default::default()
        };
        let label = self.label();
        self.fx.node().node_publish_volume(req).await.unwrap_or_else(|s| panic!("{label}: NodePublishVolume: {s:?}"));
    }

    /// Creates a volume the way sanity's node cases do, controller-publishes it to this node, stages
    /// and publishes it; returns its id.
    async fn create_and_publish(&mut self, name: &str) -> String {
        let req = self.sized_create_req(name);
        let volume = self.must_create_volume(req).await.volume.unwrap();
        let node = self.node_info().await.node_id;
        let published = self.controller_publish(self.publish_req(&volume.volume_id, &node)).await.unwrap();
        self.stage(&volume.volume_id, &published.publish_context, &volume.volume_context).await;
        self.publish(&volume.volume_id, &published.publish_context, &volume.volume_context).await;
        volume.volume_id
    }

    /// `Resources.Cleanup`, then sanity's `Teardown` (remove the two directories; here it must work).
    async fn cleanup(mut self) {
        let label = self.label();
        let (mut c, mut n) = (self.fx.controller(), self.fx.node());
        while let Some(resource) = self.resources.pop() {
            match resource {
                Resource::Volume { id, node } => {
                    let unpublish = NodeUnpublishVolumeRequest {
                        volume_id: id.clone(),
                        target_path: self.target().to_str().unwrap().into(),
                    };
                    if let Some(s) = relevant(n.node_unpublish_volume(unpublish).await) {
                        panic!("{label}: cleanup NodeUnpublishVolume {id}: {s:?}");
                    }
                    let unstage = NodeUnstageVolumeRequest {
                        volume_id: id.clone(),
                        staging_target_path: self.staging.to_str().unwrap().into(),
                    };
                    if let Some(s) = relevant(n.node_unstage_volume(unstage).await) {
                        panic!("{label}: cleanup NodeUnstageVolume {id}: {s:?}");
                    }
                    if let Some(node_id) = node {
                        let req =
                            ControllerUnpublishVolumeRequest { volume_id: id.clone(), node_id, ..Default::default() };
                        c.controller_unpublish_volume(req)
                            .await
                            .unwrap_or_else(|s| panic!("{label}: cleanup ControllerUnpublishVolume {id}: {s:?}"));
                    }
                    c.delete_volume(DeleteVolumeRequest { volume_id: id.clone(), ..Default::default() })
                        .await
                        .unwrap_or_else(|s| panic!("{label}: cleanup DeleteVolume {id}: {s:?}"));
                }
                Resource::Snapshot(id) => {
                    c.delete_snapshot(DeleteSnapshotRequest { snapshot_id: id.clone(), ..Default::default() })
                        .await
                        .unwrap_or_else(|s| panic!("{label}: cleanup DeleteSnapshot {id}: {s:?}"));
                }
            }
        }
        std::fs::remove_dir(&self.target_parent)
            .unwrap_or_else(|e| panic!("{label}: removing the target parent (driver left something): {e}"));
        std::fs::remove_dir(&self.staging)
            .unwrap_or_else(|e| panic!("{label}: removing the staging dir (still mounted?): {e}"));
        let listed = c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner();
        assert!(listed.entries.is_empty(), "{label}: cleanup left volumes: {listed:?}");
    }
}

/// sanity's `isRelevantError`: node cleanup calls may answer OK or NOT_FOUND.
fn relevant<T>(result: Result<T, tonic::Status>) -> Option<tonic::Status> {
    result.err().filter(|s| s.code() != Code::NotFound)
}

/// sanity's `verifySnapshotInfo`.
#[track_caller]
fn verify_snapshot(snapshot: &Snapshot) {
    assert!(!snapshot.snapshot_id.is_empty());
    assert!(!snapshot.source_volume_id.is_empty());
    let t = snapshot.creation_time.as_ref().expect("creation_time");
    assert!(t.seconds != 0 || t.nanos != 0, "creation_time is zero");
}

/// sanity's `UniqueStringWithLength`: the prefix padded to exactly `len` characters.
fn name_of_length(prefix: &str, len: usize) -> String {
    let mut name = prefix.to_owned();
    while name.len() < len {
        name.push('x');
    }
    name
}

/// sanity's `DefaultIDGenerator.GenerateUniqueValidVolumeID` (also its node ids): a valid-looking
/// id of nothing.
fn fake_id(kind: &str, n: u32) -> String {
    format!("fake-{kind}-id-{n:010x}")
}

/// Every backend and access type the reviewers run sanity with; `KVOL_SANITY_BACKEND=btrfs|loop`
/// keeps one backend.
fn runs() -> Vec<(Kind, bool)> {
    let only = std::env::var("KVOL_SANITY_BACKEND").unwrap_or_default();
    [(Kind::Btrfs, false), (Kind::Loop, false), (Kind::Loop, true)]
        .into_iter()
        .filter(|(kind, _)| only.is_empty() || format!("{kind:?}").eq_ignore_ascii_case(&only))
        .collect()
}

/// The backends of [`runs`].
fn kinds() -> Vec<Kind> {
    runs().into_iter().filter(|(_, block)| !block).map(|(kind, _)| kind).collect()
}

// ---------------------------------------------------------------- Identity Service / capabilities

#[tokio::test]
async fn identity_and_capabilities_are_only_what_sanity_knows() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for kind in kinds() {
        let sc = Sanity::new(kind, false).await;
        let mut i = sc.fx.identity();
        // GetPluginCapabilities: services and expansion types sanity knows.
        for cap in i.get_plugin_capabilities(GetPluginCapabilitiesRequest {}).await.unwrap().into_inner().capabilities {
            use plugin_capability::{service, volume_expansion, Type};
            match cap.r#type {
                Some(Type::Service(s)) => assert!(
                    [
                        service::Type::ControllerService as i32,
                        service::Type::VolumeAccessibilityConstraints as i32,
                        service::Type::GroupControllerService as i32
                    ]
                    .contains(&s.r#type),
                    "unknown service {s:?}"
                ),
                Some(Type::VolumeExpansion(e)) => {
                    assert!([volume_expansion::Type::Online as i32, volume_expansion::Type::Offline as i32]
                        .contains(&e.r#type))
                }
                other => panic!("unknown plugin capability {other:?}"),
            }
        }
        // Probe: OK (or FAILED_PRECONDITION).
        i.probe(ProbeRequest {}).await.unwrap();
        // GetPluginInfo: 1..=63 characters, letters at both ends, letters, digits, '-', '.', '_' inside.
        let name = i.get_plugin_info(GetPluginInfoRequest {}).await.unwrap().into_inner().name;
        let bytes = name.as_bytes();
        assert!(!name.is_empty() && name.len() <= 63, "{name}");
        assert!(bytes[0].is_ascii_alphabetic() && bytes[bytes.len() - 1].is_ascii_alphabetic(), "{name}");
        assert!(bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(b)), "{name}");

        // ControllerGetCapabilities: only RPC types sanity lists (GET_SNAPSHOT, for one, is not).
        use controller_service_capability::rpc::Type as C;
        let known = [
            C::CreateDeleteVolume,
            C::PublishUnpublishVolume,
            C::ListVolumes,
            C::GetCapacity,
            C::CreateDeleteSnapshot,
            C::ListSnapshots,
            C::PublishReadonly,
            C::CloneVolume,
            C::ExpandVolume,
            C::ModifyVolume,
            C::ListVolumesPublishedNodes,
            C::GetVolume,
            C::VolumeCondition,
            C::SingleNodeMultiWriter,
        ]
        .map(|t| t as i32);
        let ccaps = sc
            .fx
            .controller()
            .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
            .await
            .unwrap()
            .into_inner();
        for cap in ccaps.capabilities {
            match cap.r#type {
                Some(controller_service_capability::Type::Rpc(rpc)) => assert!(known.contains(&rpc.r#type), "{rpc:?}"),
                None => panic!("a controller capability without an rpc"),
            }
        }
        use node_service_capability::rpc::Type as N;
        let known = [
            N::Unknown,
            N::StageUnstageVolume,
            N::GetVolumeStats,
            N::ExpandVolume,
            N::VolumeCondition,
            N::SingleNodeMultiWriter,
            N::VolumeMountGroup,
        ]
        .map(|t| t as i32);
        for cap in
            sc.fx.node().node_get_capabilities(NodeGetCapabilitiesRequest {}).await.unwrap().into_inner().capabilities
        {
            match cap.r#type {
                Some(node_service_capability::Type::Rpc(rpc)) => assert!(known.contains(&rpc.r#type), "{rpc:?}"),
                None => panic!("a node capability without an rpc"),
            }
        }

        // NodeGetInfo: an id, a non-negative limit, and (VOLUME_ACCESSIBILITY_CONSTRAINTS) a topology.
        let info = sc.node_info().await;
        assert!(info.max_volumes_per_node >= 0);
        assert!(info.accessible_topology.is_some());

        // GetCapacity with no optional values.
        sc.fx.controller().get_capacity(GetCapacityRequest::default()).await.unwrap();
        sc.cleanup().await;
    }
}

// ---------------------------------------------------------------- Controller Service

#[tokio::test]
async fn list_volumes_shows_new_volumes_hides_deleted_ones_and_aborts_on_an_invalid_token() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let mut c = sc.fx.controller();
        for entry in c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner().entries {
            assert!(!entry.volume.unwrap().volume_id.is_empty());
        }
        expect_code(
            c.list_volumes(ListVolumesRequest { starting_token: "invalid-token".into(), ..Default::default() }).await,
            Code::Aborted,
        );
        let total = c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner().entries.len();
        // Named "sanity", no capacity range: the driver's default size.
        let req =
            CreateVolumeRequest { name: "sanity".into(), volume_capabilities: vec![sc.rwo()], ..Default::default() };
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        assert_eq!(c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner().entries.len(), total + 1);
        sc.delete_volume(&id).await.unwrap();
        assert_eq!(c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner().entries.len(), total);
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn create_volume_cases_of_sanity() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        // No name; no capabilities.
        expect_code(
            sc.create_volume(CreateVolumeRequest::default()).await.map(tonic::Response::new),
            Code::InvalidArgument,
        );
        let no_caps = CreateVolumeRequest {
            name: sc.unique("sanity-controller-create-no-volume-capabilities"),
            ..Default::default()
        };
        expect_code(sc.create_volume(no_caps).await.map(tonic::Response::new), Code::InvalidArgument);

        // With capacity: at least what was asked.
        let req = sc.sized_create_req(&sc.unique("sanity-controller-create-single-with-capacity"));
        let volume = sc.must_create_volume(req).await.volume.unwrap();
        assert!(volume.capacity_bytes >= test_volume_size(), "{label}: {volume:?}");

        // Same name and capacity twice: the same volume.
        let req = sc.sized_create_req(&sc.unique("sanity-controller-create-twice"));
        let first = sc.must_create_volume(req.clone()).await.volume.unwrap();
        let second = sc.must_create_volume(req).await.volume.unwrap();
        assert!(first.capacity_bytes >= test_volume_size() && second.capacity_bytes >= test_volume_size());
        assert_eq!(first.volume_id, second.volume_id, "{label}");

        // Same name, other capacity (required = limit both times): ALREADY_EXISTS.
        let name = sc.unique("sanity-controller-create-twice-different");
        sc.must_create_volume(sc.make_create_req(&name)).await;
        let mut bigger = sc.make_create_req(&name);
        bigger.capacity_range =
            Some(CapacityRange { required_bytes: 2 * test_volume_size(), limit_bytes: 2 * test_volume_size() });
        expect_code(sc.create_volume(bigger).await.map(tonic::Response::new), Code::AlreadyExists);

        // A 128-character name.
        let req = sc.sized_create_req(&name_of_length("sanity-controller-create-maxlen", MAX_NAME_LENGTH));
        assert!(sc.must_create_volume(req).await.volume.unwrap().capacity_bytes >= test_volume_size());

        // From a snapshot; from a snapshot that does not exist.
        let req = sc.make_create_req(&sc.unique("sanity-controller-source-vol"));
        let source = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let snapshot = sc.must_create_snapshot(&sc.unique("sanity-controller-snap-from-vol"), &source).await;
        assert!(snapshot.ready_to_use);
        let mut from_snapshot = sc.make_create_req(&sc.unique("sanity-controller-vol-from-snap"));
        from_snapshot.volume_content_source = Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
                snapshot_id: snapshot.snapshot_id.clone(),
            })),
        });
        sc.create_volume(from_snapshot.clone()).await.unwrap_or_else(|s| panic!("{label}: from snapshot: {s:?}"));
        let mut missing = from_snapshot;
        missing.name = sc.unique("sanity-controller-vol-from-missing-snap");
        missing.volume_content_source = Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
                snapshot_id: "non-existing-snapshot-id".into(),
            })),
        });
        expect_code(sc.create_volume(missing).await.map(tonic::Response::new), Code::NotFound);

        // A clone; a clone of a volume that does not exist.
        let mut clone = sc.make_create_req(&sc.unique("sanity-controller-vol-from-vol"));
        clone.volume_content_source = Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Volume(volume_content_source::VolumeSource {
                volume_id: source.clone(),
            })),
        });
        sc.create_volume(clone.clone()).await.unwrap_or_else(|s| panic!("{label}: clone: {s:?}"));
        clone.name = sc.unique("sanity-controller-vol-from-missing-vol");
        clone.volume_content_source = Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Volume(volume_content_source::VolumeSource {
                volume_id: fake_id("vol", 1),
            })),
        });
        expect_code(sc.create_volume(clone).await.map(tonic::Response::new), Code::NotFound);
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn delete_validate_publish_and_expand_cases_of_sanity() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        let mut c = sc.fx.controller();

        // DeleteVolume: no id; sanity's invalid id ("fake-vol-id") succeeds; a real one.
        expect_code(c.delete_volume(DeleteVolumeRequest::default()).await, Code::InvalidArgument);
        c.delete_volume(DeleteVolumeRequest { volume_id: "fake-vol-id".into(), ..Default::default() }).await.unwrap();
        let req = sc.sized_create_req(&sc.unique("sanity-controller-create-appropriate"));
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        sc.delete_volume(&id).await.unwrap();

        // ValidateVolumeCapabilities.
        let validate = |volume: &str, caps: Vec<VolumeCapability>| ValidateVolumeCapabilitiesRequest {
            volume_id: volume.into(),
            volume_capabilities: caps,
            ..Default::default()
        };
        expect_code(c.validate_volume_capabilities(validate("", vec![])).await, Code::InvalidArgument);
        let req = sc.sized_create_req(&sc.unique("sanity-controller-validate"));
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        expect_code(c.validate_volume_capabilities(validate(&id, vec![])).await, Code::InvalidArgument);
        let confirmed = c.validate_volume_capabilities(validate(&id, vec![sc.rwo()])).await.unwrap().into_inner();
        let confirmed = confirmed.confirmed.unwrap_or_else(|| panic!("{label}: {}", confirmed.message));
        assert_eq!(confirmed.volume_capabilities, vec![sc.rwo()], "{label}: confirmed echoes the request");
        expect_code(c.validate_volume_capabilities(validate(&fake_id("vol", 2), vec![sc.rwo()])).await, Code::NotFound);

        // ControllerPublishVolume.
        let node = sc.node_info().await.node_id;
        expect_code(
            sc.controller_publish(ControllerPublishVolumeRequest::default()).await.map(tonic::Response::new),
            Code::InvalidArgument,
        );
        let mut no_node = sc.publish_req(&fake_id("vol", 3), "");
        no_node.volume_capability = None;
        expect_code(sc.controller_publish(no_node).await.map(tonic::Response::new), Code::InvalidArgument);
        let mut no_cap = sc.publish_req(&fake_id("vol", 4), &fake_id("node", 4));
        no_cap.volume_capability = None;
        expect_code(sc.controller_publish(no_cap).await.map(tonic::Response::new), Code::InvalidArgument);
        expect_code(
            sc.controller_publish(sc.publish_req(&fake_id("vol", 5), &fake_id("node", 5)))
                .await
                .map(tonic::Response::new),
            Code::NotFound,
        );
        let req = CreateVolumeRequest {
            name: sc.unique("sanity-controller-wrong-node"),
            volume_capabilities: vec![sc.rwo()],
            ..Default::default()
        };
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        expect_code(
            sc.controller_publish(sc.publish_req(&id, &fake_id("node", 6))).await.map(tonic::Response::new),
            Code::NotFound,
        );
        let req = CreateVolumeRequest {
            name: sc.unique("sanity-controller-published-incompatible"),
            volume_capabilities: vec![sc.rwo()],
            ..Default::default()
        };
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        sc.controller_publish(sc.publish_req(&id, &node)).await.unwrap();
        let mut readonly = sc.publish_req(&id, &node);
        readonly.readonly = true;
        expect_code(sc.controller_publish(readonly).await.map(tonic::Response::new), Code::AlreadyExists);

        // ControllerUnpublishVolume without an id.
        expect_code(
            c.controller_unpublish_volume(ControllerUnpublishVolumeRequest::default()).await,
            Code::InvalidArgument,
        );

        // ControllerExpandVolume: no id; no range; to exactly the size asked.
        let rwo = sc.rwo();
        let expand = |volume: &str, range: Option<CapacityRange>| ControllerExpandVolumeRequest {
            volume_id: volume.into(),
            capacity_range: range,
            volume_capability: Some(rwo.clone()),
            ..Default::default()
        };
        let range = Some(CapacityRange { required_bytes: test_volume_expand_size(), limit_bytes: 0 });
        expect_code(c.controller_expand_volume(expand("", range)).await, Code::InvalidArgument);
        expect_code(c.controller_expand_volume(expand("", None)).await, Code::InvalidArgument);
        let req = sc.sized_create_req(&sc.unique("sanity-expand-volume"));
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let grown = c.controller_expand_volume(expand(&id, range)).await.unwrap().into_inner();
        assert_eq!(grown.capacity_bytes, test_volume_expand_size(), "{label}");
        sc.cleanup().await;
    }
}

/// sanity's "volume lifecycle should work / should be idempotent": ControllerPublish once and ten
/// times, after a CreateVolume constrained to NodeGetInfo's topology; its cleanup then unpublishes
/// (on the node, where nothing was published) and deletes, once per registration.
#[tokio::test]
async fn volume_lifecycle_publishes_repeatedly_and_cleans_up() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        for count in [1, IDEMPOTENT_COUNT] {
            let mut sc = Sanity::new(kind, block).await;
            let info = sc.node_info().await;
            let req = CreateVolumeRequest {
                name: sc.unique(&format!("sanity-controller-publish-{count}")),
                volume_capabilities: vec![sc.rwo()],
                accessibility_requirements: Some(TopologyRequirement {
                    requisite: vec![info.accessible_topology.clone().unwrap()],
                    preferred: vec![],
                }),
                ..Default::default()
            };
            let volume = sc.must_create_volume(req).await.volume.unwrap();
            for _ in 0..count {
                let mut req = sc.publish_req(&volume.volume_id, &info.node_id);
                req.volume_context = volume.volume_context.clone();
                sc.controller_publish(req).await.unwrap();
            }
            sc.cleanup().await;
        }
    }
}

// ---------------------------------------------------------------- Snapshots

#[tokio::test]
async fn list_snapshots_filters_and_paginates_as_sanity_expects() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for kind in kinds() {
        let mut sc = Sanity::new(kind, false).await;
        let label = sc.label();
        let mut c = sc.fx.controller();
        let lister = sc.fx.controller();
        let list = |req: ListSnapshotsRequest| {
            let mut c = lister.clone();
            async move { c.list_snapshots(req).await.unwrap().into_inner().entries }
        };
        for entry in list(ListSnapshotsRequest::default()).await {
            verify_snapshot(entry.snapshot.as_ref().unwrap());
        }

        // By snapshot id, among unrelated ones.
        sc.must_create_snapshot_from_volume(
            &sc.unique("listSnapshots-volume-unrelated-s-1"),
            &sc.unique("listSnapshots-snapshot-unrelated-s-1"),
        )
        .await;
        let (target, _) = sc
            .must_create_snapshot_from_volume(
                &sc.unique("listSnapshots-volume-target-s"),
                &sc.unique("listSnapshots-snapshot-target-s"),
            )
            .await;
        sc.must_create_snapshot_from_volume(
            &sc.unique("listSnapshots-volume-unrelated-s-2"),
            &sc.unique("listSnapshots-snapshot-unrelated-s-2"),
        )
        .await;
        let found = list(ListSnapshotsRequest { snapshot_id: target.snapshot_id.clone(), ..Default::default() }).await;
        assert_eq!(found.len(), 1, "{label}");
        verify_snapshot(found[0].snapshot.as_ref().unwrap());
        assert_eq!(found[0].snapshot.as_ref().unwrap().snapshot_id, target.snapshot_id);
        assert!(list(ListSnapshotsRequest { snapshot_id: "none-exist-id".into(), ..Default::default() })
            .await
            .is_empty());

        // By source volume id.
        let found =
            list(ListSnapshotsRequest { source_volume_id: target.source_volume_id.clone(), ..Default::default() })
                .await;
        assert_eq!(found.len(), 1, "{label}");
        assert_eq!(found[0].snapshot.as_ref().unwrap().source_volume_id, target.source_volume_id);
        assert!(list(ListSnapshotsRequest { source_volume_id: fake_id("vol", 7), ..Default::default() })
            .await
            .is_empty());

        // A new snapshot is listed, a deleted one is not.
        let total = list(ListSnapshotsRequest::default()).await.len();
        let (snapshot, _) = sc
            .must_create_snapshot_from_volume(
                &sc.unique("listSnapshots-volume-3"),
                &sc.unique("listSnapshots-snapshot-3"),
            )
            .await;
        assert_eq!(list(ListSnapshotsRequest::default()).await.len(), total + 1);
        sc.delete_snapshot(&snapshot.snapshot_id).await.unwrap();
        assert_eq!(list(ListSnapshotsRequest::default()).await.len(), total);

        // At least five snapshots; two per page; the token then returns all the rest.
        let before = list(ListSnapshotsRequest::default()).await.len();
        for i in before..5 {
            sc.must_create_snapshot_from_volume(&sc.unique(&format!("volume{i}")), &sc.unique(&format!("snapshot{i}")))
                .await;
        }
        let total = before.max(5);
        let page = c.list_snapshots(ListSnapshotsRequest { max_entries: 2, ..Default::default() }).await;
        let page = page.unwrap().into_inner();
        assert_eq!(page.entries.len(), 2, "{label}");
        assert!(!page.next_token.is_empty());
        let rest: Vec<list_snapshots_response::Entry> =
            list(ListSnapshotsRequest { starting_token: page.next_token, ..Default::default() }).await;
        assert_eq!(rest.len(), total - 2, "{label}");
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn create_and_delete_snapshot_cases_of_sanity() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for kind in kinds() {
        let mut sc = Sanity::new(kind, false).await;
        let label = sc.label();
        let mut c = sc.fx.controller();
        // DeleteSnapshot: no id; an invalid id succeeds; a real one (deleted by the cleanup).
        expect_code(c.delete_snapshot(DeleteSnapshotRequest::default()).await, Code::InvalidArgument);
        c.delete_snapshot(DeleteSnapshotRequest { snapshot_id: "reallyfakesnapshotid".into(), ..Default::default() })
            .await
            .unwrap();
        let req = sc.make_create_req(&sc.unique("DeleteSnapshot-volume-1"));
        let volume = sc.create_volume(req).await.unwrap().volume.unwrap().volume_id;
        sc.must_create_snapshot(&sc.unique("DeleteSnapshot-snapshot-1"), &volume).await;

        // CreateSnapshot: no name (source "testId"); no source.
        expect_code(
            c.create_snapshot(CreateSnapshotRequest { source_volume_id: "testId".into(), ..Default::default() }).await,
            Code::InvalidArgument,
        );
        expect_code(
            c.create_snapshot(CreateSnapshotRequest { name: "name".into(), ..Default::default() }).await,
            Code::InvalidArgument,
        );
        // The same name and source twice.
        let req = sc.make_create_req(&sc.unique("CreateSnapshot-volume-1"));
        let volume = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let name = sc.unique("CreateSnapshot-snapshot-1");
        let first = sc.must_create_snapshot(&name, &volume).await;
        let second = sc.must_create_snapshot(&name, &volume).await;
        assert_eq!(first.snapshot_id, second.snapshot_id, "{label}");
        // The same name, another source: ALREADY_EXISTS.
        let name = sc.unique("CreateSnapshot-snapshot-2");
        sc.must_create_snapshot_from_volume(&sc.unique("CreateSnapshot-volume-2"), &name).await;
        let req = sc.make_create_req(&sc.unique("CreateSnapshot-volume-3"));
        let other = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        expect_code(
            c.create_snapshot(CreateSnapshotRequest { name, source_volume_id: other, ..Default::default() }).await,
            Code::AlreadyExists,
        );
        // A 128-character name, twice.
        let req = sc.make_create_req(&sc.unique("CreateSnapshot-volume-maxlen-name"));
        let volume = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let name = name_of_length("CreateSnapshot-snapshot-maxlen", MAX_NAME_LENGTH);
        sc.must_create_snapshot(&name, &volume).await;
        sc.must_create_snapshot(&name, &volume).await;
        sc.cleanup().await;
    }
}

// ---------------------------------------------------------------- Node Service

#[tokio::test]
async fn node_calls_without_required_fields_are_invalid_arguments() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let mut n = sc.fx.node();
        let target = sc.target().to_str().unwrap().to_owned();
        let staging = sc.staging.to_str().unwrap().to_owned();
        let device = HashMap::from([("device".to_owned(), "/dev/mock".to_owned())]);

        // NodePublishVolume: nothing; no target; no capability.
        expect_code(n.node_publish_volume(NodePublishVolumeRequest::default()).await, Code::InvalidArgument);
        let no_target = NodePublishVolumeRequest { volume_id: fake_id("vol", 10), ..Default::default() };
        expect_code(n.node_publish_volume(no_target).await, Code::InvalidArgument);
        let no_cap = NodePublishVolumeRequest {
            volume_id: fake_id("vol", 11),
            target_path: target.clone(),
            ..Default::default()
        };
        expect_code(n.node_publish_volume(no_cap).await, Code::InvalidArgument);

        // NodeUnpublishVolume: nothing; no target.
        expect_code(n.node_unpublish_volume(NodeUnpublishVolumeRequest::default()).await, Code::InvalidArgument);
        let no_target = NodeUnpublishVolumeRequest { volume_id: fake_id("vol", 12), target_path: String::new() };
        expect_code(n.node_unpublish_volume(no_target).await, Code::InvalidArgument);

        // NodeStageVolume: no id; no staging path; no capability (for a volume that exists).
        let no_id = NodeStageVolumeRequest {
            staging_target_path: staging.clone(),
            volume_capability: Some(sc.rwo()),
            publish_context: device.clone(),
            ..Default::default()
        };
        expect_code(n.node_stage_volume(no_id).await, Code::InvalidArgument);
        let no_path = NodeStageVolumeRequest {
            volume_id: fake_id("vol", 13),
            volume_capability: Some(sc.rwo()),
            publish_context: device.clone(),
            ..Default::default()
        };
        expect_code(n.node_stage_volume(no_path).await, Code::InvalidArgument);
        let req = CreateVolumeRequest {
            name: sc.unique("sanity-node-stage-nocaps"),
            volume_capabilities: vec![mount_cap("", Mode::SingleNodeWriter)],
            ..Default::default()
        };
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let no_cap = NodeStageVolumeRequest {
            volume_id: id,
            staging_target_path: staging.clone(),
            publish_context: device,
            ..Default::default()
        };
        expect_code(n.node_stage_volume(no_cap).await, Code::InvalidArgument);

        // NodeUnstageVolume: no id; no staging path.
        let no_id = NodeUnstageVolumeRequest { volume_id: String::new(), staging_target_path: staging.clone() };
        expect_code(n.node_unstage_volume(no_id).await, Code::InvalidArgument);
        let no_path = NodeUnstageVolumeRequest { volume_id: fake_id("vol", 14), staging_target_path: String::new() };
        expect_code(n.node_unstage_volume(no_path).await, Code::InvalidArgument);

        // NodeGetVolumeStats: no id; no path; a volume that does not exist.
        let stats = |volume: &str, path: &str| NodeGetVolumeStatsRequest {
            volume_id: volume.into(),
            volume_path: path.into(),
            ..Default::default()
        };
        expect_code(n.node_get_volume_stats(stats("", "some/path")).await, Code::InvalidArgument);
        expect_code(n.node_get_volume_stats(stats(&fake_id("vol", 15), "")).await, Code::InvalidArgument);
        expect_code(n.node_get_volume_stats(stats(&fake_id("vol", 16), "some/path")).await, Code::NotFound);

        // NodeExpandVolume: no id; no path (for a volume that exists); a volume that does not exist.
        let no_id = NodeExpandVolumeRequest {
            volume_path: sc.target_parent.to_str().unwrap().into(),
            volume_capability: Some(sc.rwo()),
            ..Default::default()
        };
        expect_code(n.node_expand_volume(no_id).await, Code::InvalidArgument);
        let req = sc.sized_create_req(&sc.unique("sanity-node-expand-volume-valid-id"));
        let id = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let no_path =
            NodeExpandVolumeRequest { volume_id: id, volume_capability: Some(sc.rwo()), ..Default::default() };
        expect_code(n.node_expand_volume(no_path).await, Code::InvalidArgument);
        let missing = NodeExpandVolumeRequest {
            volume_id: fake_id("vol", 17),
            volume_path: "some/path".into(),
            ..Default::default()
        };
        expect_code(n.node_expand_volume(missing).await, Code::NotFound);
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn node_unpublish_removes_the_target_path_the_driver_created() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        let target = sc.target();
        assert!(!target.exists());
        let id = sc.create_and_publish(&sc.unique("sanity-node-unpublish-volume")).await;
        let meta = std::fs::metadata(&target).unwrap_or_else(|e| panic!("{label}: the driver creates the target: {e}"));
        if block {
            use std::os::unix::fs::FileTypeExt;
            assert!(meta.file_type().is_block_device(), "{label}: a block volume is published as a device file");
        } else {
            assert!(meta.is_dir(), "{label}");
        }
        sc.fx
            .node()
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id,
                target_path: target.to_str().unwrap().into(),
            })
            .await
            .unwrap();
        assert!(!target.exists(), "{label}: NodeUnpublishVolume removes the target it created");
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn node_get_volume_stats_is_not_found_for_a_path_the_volume_is_not_at() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let id = sc.create_and_publish(&sc.unique("sanity-node-get-volume-stats")).await;
        let req = NodeGetVolumeStatsRequest { volume_id: id, volume_path: "some/path".into(), ..Default::default() };
        expect_code(sc.fx.node().node_get_volume_stats(req).await, Code::NotFound);
        sc.cleanup().await;
    }
}

#[tokio::test]
async fn node_expand_works_after_node_publish() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4", "resize2fs");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        let req = sc.sized_create_req(&sc.unique("sanity-node-expand-volume"));
        let volume = sc.must_create_volume(req).await.volume.unwrap();
        let id = volume.volume_id.clone();
        let range = Some(CapacityRange { required_bytes: test_volume_expand_size(), limit_bytes: 0 });
        let grown = sc
            .fx
            .controller()
            .controller_expand_volume(ControllerExpandVolumeRequest {
                volume_id: id.clone(),
                capacity_range: range,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(grown.capacity_bytes, test_volume_expand_size(), "{label}");
        let node = sc.node_info().await.node_id;
        let published = sc.controller_publish(sc.publish_req(&id, &node)).await.unwrap();
        sc.stage(&id, &published.publish_context, &volume.volume_context).await;
        sc.publish(&id, &published.publish_context, &volume.volume_context).await;
        let req = NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: sc.target().to_str().unwrap().into(),
            capacity_range: range,
            ..Default::default()
        };
        sc.fx.node().node_expand_volume(req).await.unwrap_or_else(|s| panic!("{label}: NodeExpandVolume: {s:?}"));
        sc.cleanup().await;
    }
}

/// sanity's Node Service "should work" and "should be idempotent" (`runControllerTest` once and
/// `IdempotentCount` times): create in NodeGetInfo's topology, ControllerPublish, stage and publish
/// `count` times each, NodeGetVolumeStats on the target; everything else is the cleanup's.
#[tokio::test]
async fn node_service_should_work_and_be_idempotent() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        for count in [1, IDEMPOTENT_COUNT] {
            let mut sc = Sanity::new(kind, block).await;
            let label = format!("{} x{count}", sc.label());
            let info = sc.node_info().await;
            let mut req = sc.sized_create_req(&sc.unique(&format!("sanity-node-full-{count}")));
            req.accessibility_requirements = Some(TopologyRequirement {
                requisite: vec![info.accessible_topology.clone().unwrap()],
                preferred: vec![],
            });
            let volume = sc.must_create_volume(req).await.volume.unwrap();
            let mut publish = sc.publish_req(&volume.volume_id, &info.node_id);
            publish.volume_context = volume.volume_context.clone();
            let published = sc.controller_publish(publish).await.unwrap();
            for _ in 0..count {
                sc.stage(&volume.volume_id, &published.publish_context, &volume.volume_context).await;
            }
            for _ in 0..count {
                sc.publish(&volume.volume_id, &published.publish_context, &volume.volume_context).await;
            }
            let stats = sc
                .fx
                .node()
                .node_get_volume_stats(NodeGetVolumeStatsRequest {
                    volume_id: volume.volume_id.clone(),
                    volume_path: sc.target().to_str().unwrap().into(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|s| panic!("{label}: NodeGetVolumeStats: {s:?}"))
                .into_inner();
            assert!(!stats.usage.is_empty(), "{label}");
            sc.cleanup().await;
        }
    }
}

/// With a custom `CreateStagingDir`/`CreateTargetDir` (csi-sanity's `--csi.createstagingpathcmd`), the
/// staging path may not exist yet and the target parent may be made with `mkdir -p`: the driver
/// creates what it needs, and the cleanup still finds nothing left behind.
#[tokio::test]
async fn node_lifecycle_works_when_the_staging_path_does_not_exist_yet() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        std::fs::remove_dir(&sc.staging).unwrap();
        let id = sc.create_and_publish(&sc.unique("sanity-node-custom-dirs")).await;
        assert!(sc.staging.is_dir(), "{label}: NodeStageVolume creates a missing staging path");
        let n = &mut sc.fx.node();
        n.node_unpublish_volume(NodeUnpublishVolumeRequest {
            volume_id: id.clone(),
            target_path: sc.target().to_str().unwrap().into(),
        })
        .await
        .unwrap();
        n.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: id,
            staging_target_path: sc.staging.to_str().unwrap().into(),
        })
        .await
        .unwrap();
        sc.cleanup().await;
    }
}

/// A CO may create the target itself before NodePublishVolume (a directory for mount access, a file
/// for block access); publishing onto it, repeating, and unpublishing work the same, and the
/// unpublish leaves nothing for sanity's teardown to trip over.
#[tokio::test]
async fn node_publish_accepts_a_target_that_already_exists() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        if block {
            std::fs::write(sc.target(), b"").unwrap();
        } else {
            std::fs::create_dir(sc.target()).unwrap();
        }
        let id = sc.create_and_publish(&sc.unique("sanity-node-existing-target")).await;
        sc.publish(&id, &HashMap::new(), &HashMap::new()).await;
        assert!(is_mounted(&sc.target()), "{label}");
        sc.fx
            .node()
            .node_unpublish_volume(NodeUnpublishVolumeRequest {
                volume_id: id,
                target_path: sc.target().to_str().unwrap().into(),
            })
            .await
            .unwrap();
        assert!(!is_mounted(&sc.target()), "{label}");
        sc.cleanup().await;
    }
}

/// sanity's (disabled, `XIt`) ListVolumes pagination case: a token stays valid when the volumes of the
/// page before it are deleted, and a volume created between pages never shows up twice.
#[tokio::test]
async fn list_volumes_tokens_survive_deletes_and_additions_between_pages() {
    require!("mkfs.btrfs", "losetup");
    for kind in kinds() {
        let mut sc = Sanity::new(kind, false).await;
        let mut c = sc.fx.controller();
        let mut existing = std::collections::BTreeSet::new();
        for i in 0..3 {
            let req = CreateVolumeRequest {
                name: format!("sanity{i}"),
                volume_capabilities: vec![sc.rwo()],
                capacity_range: Some(CapacityRange { required_bytes: 8 * MIB, limit_bytes: 0 }),
                ..Default::default()
            };
            existing.insert(sc.must_create_volume(req).await.volume.unwrap().volume_id);
        }
        let page =
            c.list_volumes(ListVolumesRequest { max_entries: 2, ..Default::default() }).await.unwrap().into_inner();
        assert_eq!(page.entries.len(), 2);
        assert!(!page.next_token.is_empty());
        for entry in &page.entries {
            let id = entry.volume.as_ref().unwrap().volume_id.clone();
            assert!(existing.remove(&id));
            sc.delete_volume(&id).await.unwrap();
        }
        let req = CreateVolumeRequest {
            name: "new-addition".into(),
            volume_capabilities: vec![sc.rwo()],
            capacity_range: Some(CapacityRange { required_bytes: 8 * MIB, limit_bytes: 0 }),
            ..Default::default()
        };
        existing.insert(sc.must_create_volume(req).await.volume.unwrap().volume_id);
        let rest = c
            .list_volumes(ListVolumesRequest { starting_token: page.next_token, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert!(rest.entries.len() <= 2, "{rest:?}");
        for entry in rest.entries {
            assert!(existing.remove(&entry.volume.unwrap().volume_id), "listed once, and only what exists");
        }
        sc.cleanup().await;
    }
}

/// sanity's cleanup calls NodeUnstageVolume at its one staging path for every volume it created,
/// staged or not: for a volume that is not staged there the answer is OK, and whatever else is
/// mounted there (another volume's staging) is left alone.
#[tokio::test]
async fn unstaging_a_volume_that_is_not_staged_there_leaves_the_staged_one_alone() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for (kind, block) in runs() {
        let mut sc = Sanity::new(kind, block).await;
        let label = sc.label();
        let req = sc.sized_create_req(&sc.unique("sanity-idle"));
        let idle = sc.must_create_volume(req).await.volume.unwrap().volume_id;
        let staged = sc.create_and_publish(&sc.unique("sanity-staged")).await;
        let staging = sc.staging.to_str().unwrap().to_owned();
        let mut n = sc.fx.node();
        n.node_unstage_volume(NodeUnstageVolumeRequest { volume_id: idle, staging_target_path: staging.clone() })
            .await
            .unwrap();
        if !block {
            assert!(is_mounted(&sc.staging), "{label}: the staged volume's mount is still there");
        }
        // The staged volume staged elsewhere: unstaging it at another path is OK and changes nothing.
        let other = sc.fx.staging("other");
        n.node_unstage_volume(NodeUnstageVolumeRequest {
            volume_id: staged.clone(),
            staging_target_path: other.to_str().unwrap().into(),
        })
        .await
        .unwrap();
        let stats = NodeGetVolumeStatsRequest {
            volume_id: staged,
            volume_path: sc.target().to_str().unwrap().into(),
            ..Default::default()
        };
        n.node_get_volume_stats(stats).await.unwrap_or_else(|s| panic!("{label}: still published: {s:?}"));
        if !block {
            assert!(is_mounted(&sc.staging) && is_mounted(&sc.target()), "{label}");
        }
        std::fs::remove_dir(&other).unwrap();
        sc.cleanup().await;
    }
}
