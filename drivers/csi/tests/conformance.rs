//! Conformance suite for kvol-csi, written from the CSI spec: every RPC's success path, idempotent
//! repeats and each mandated error code, against the real binary on real btrfs and loop devices.
//! Needs root, btrfs-progs and xfsprogs; skips with a message otherwise.

mod util;

use std::collections::HashMap;
use std::time::Duration;

use kvol_csi::v1::{
    plugin_capability, volume_capability::access_mode::Mode, volume_content_source, CapacityRange,
    ControllerExpandVolumeRequest, ControllerGetCapabilitiesRequest, ControllerGetVolumeRequest,
    ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest, CreateSnapshotRequest, DeleteSnapshotRequest,
    DeleteVolumeRequest, GetCapacityRequest, GetPluginCapabilitiesRequest, GetPluginInfoRequest, GetSnapshotRequest,
    ListSnapshotsRequest, ListVolumesRequest, NodeExpandVolumeRequest, NodeGetCapabilitiesRequest, NodeGetInfoRequest,
    NodeGetVolumeStatsRequest, NodeUnpublishVolumeRequest, NodeUnstageVolumeRequest, ProbeRequest, Topology,
    TopologyRequirement, ValidateVolumeCapabilitiesRequest, VolumeContentSource,
};
use tonic::Code;
use util::*;

const TOPOLOGY_KEY: &str = "topology.csi.kvol.io/node";

fn delete_req(id: &str) -> DeleteVolumeRequest {
    DeleteVolumeRequest { volume_id: id.into(), ..Default::default() }
}

fn unpublish_req(id: &str, target: &std::path::Path) -> NodeUnpublishVolumeRequest {
    NodeUnpublishVolumeRequest { volume_id: id.into(), target_path: target.to_str().unwrap().into() }
}

fn unstage_req(id: &str, staging: &std::path::Path) -> NodeUnstageVolumeRequest {
    NodeUnstageVolumeRequest { volume_id: id.into(), staging_target_path: staging.to_str().unwrap().into() }
}

fn snapshot_source(id: &str) -> Option<VolumeContentSource> {
    Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
            snapshot_id: id.into(),
        })),
    })
}

fn volume_source(id: &str) -> Option<VolumeContentSource> {
    Some(VolumeContentSource {
        r#type: Some(volume_content_source::Type::Volume(volume_content_source::VolumeSource { volume_id: id.into() })),
    })
}

fn topology(node: &str) -> Topology {
    Topology { segments: HashMap::from([(TOPOLOGY_KEY.to_owned(), node.to_owned())]) }
}

async fn create(fx: &Fixture, name: &str, bytes: i64, cap: kvol_csi::v1::VolumeCapability) -> String {
    fx.controller().create_volume(create_req(name, bytes, cap)).await.unwrap().into_inner().volume.unwrap().volume_id
}

// ---------------------------------------------------------------- Identity and capabilities

#[tokio::test]
async fn identity_reports_the_plugin_its_capabilities_and_readiness() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let info = fx.identity().get_plugin_info(GetPluginInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.name, "csi.kvol.io");
    assert!(!info.vendor_version.is_empty());
    let caps = fx.identity().get_plugin_capabilities(GetPluginCapabilitiesRequest {}).await.unwrap().into_inner();
    let services: Vec<i32> = caps
        .capabilities
        .iter()
        .filter_map(|c| match &c.r#type {
            Some(plugin_capability::Type::Service(s)) => Some(s.r#type),
            _ => None,
        })
        .collect();
    assert!(services.contains(&(plugin_capability::service::Type::ControllerService as i32)));
    assert!(services.contains(&(plugin_capability::service::Type::VolumeAccessibilityConstraints as i32)));
    assert!(caps.capabilities.iter().any(|c| matches!(&c.r#type, Some(plugin_capability::Type::VolumeExpansion(e)) if e.r#type == plugin_capability::volume_expansion::Type::Online as i32)));
    let probe = fx.identity().probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));

    let ccaps =
        fx.controller().controller_get_capabilities(ControllerGetCapabilitiesRequest {}).await.unwrap().into_inner();
    assert!(ccaps.capabilities.len() >= 10);
    let ncaps = fx.node().node_get_capabilities(NodeGetCapabilitiesRequest {}).await.unwrap().into_inner();
    assert_eq!(ncaps.capabilities.len(), 4);
    let info = fx.node().node_get_info(NodeGetInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.node_id, "node-1");
    assert_eq!(info.accessible_topology, Some(topology("node-1")));
}

#[tokio::test]
async fn the_btrfs_backend_refuses_a_pool_that_is_not_on_btrfs() {
    require!("mkfs.btrfs");
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kvol-csi"))
        .args([
            "--endpoint",
            dir.path().join("s.sock").to_str().unwrap(),
            "--nodeid",
            "n",
            "--backend",
            "btrfs",
            "--pool",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("btrfs file system"), "{stderr}");
    assert!(!dir.path().join("s.sock").exists());
}

// ---------------------------------------------------------------- CreateVolume / DeleteVolume

#[tokio::test]
async fn create_volume_is_idempotent_by_name_and_refuses_incompatible_repeats() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let first = c.create_volume(create_req("pvc-a", 64 * MIB, rwo())).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(first.capacity_bytes, 64 * MIB);
    assert_eq!(first.accessible_topology, vec![topology("node-1")]);
    let again = c.create_volume(create_req("pvc-a", 64 * MIB, rwo())).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(again, first, "a repeated CreateVolume returns the same volume");
    // A range that the existing volume still satisfies is compatible too.
    let mut ranged = create_req("pvc-a", 32 * MIB, rwo());
    ranged.capacity_range = Some(CapacityRange { required_bytes: 32 * MIB, limit_bytes: 128 * MIB });
    assert_eq!(c.create_volume(ranged).await.unwrap().into_inner().volume.unwrap().volume_id, first.volume_id);

    expect_code(c.create_volume(create_req("pvc-a", 128 * MIB, rwo())).await, Code::AlreadyExists);
    expect_code(c.create_volume(create_req("", 64 * MIB, rwo())).await, Code::InvalidArgument);
    let mut no_caps = create_req("pvc-b", 64 * MIB, rwo());
    no_caps.volume_capabilities.clear();
    expect_code(c.create_volume(no_caps).await, Code::InvalidArgument);
    let mut no_mode = rwo();
    no_mode.access_mode = None;
    expect_code(c.create_volume(create_req("pvc-b", 64 * MIB, no_mode)).await, Code::InvalidArgument);
    expect_code(
        c.create_volume(create_req("pvc-b", 64 * MIB, block_cap(Mode::SingleNodeWriter))).await,
        Code::InvalidArgument,
    );
    expect_code(
        c.create_volume(create_req("pvc-b", 64 * MIB, mount_cap("", Mode::MultiNodeMultiWriter))).await,
        Code::InvalidArgument,
    );
    let mut params = create_req("pvc-b", 64 * MIB, rwo());
    params.parameters.insert("no-such-parameter".into(), "x".into());
    expect_code(c.create_volume(params).await, Code::InvalidArgument);
    // csi-provisioner's --extra-create-metadata keys are accepted.
    let mut k8s = create_req("pvc-k8s", 8 * MIB, rwo());
    k8s.parameters.insert("csi.storage.k8s.io/pvc/name".into(), "data".into());
    c.create_volume(k8s).await.unwrap();

    let mut bad_range = create_req("pvc-b", 64 * MIB, rwo());
    bad_range.capacity_range = Some(CapacityRange { required_bytes: 64 * MIB, limit_bytes: 32 * MIB });
    expect_code(c.create_volume(bad_range).await, Code::OutOfRange);
    let mut tiny = create_req("pvc-b", 0, rwo());
    tiny.capacity_range = Some(CapacityRange { required_bytes: 0, limit_bytes: 1000 });
    expect_code(c.create_volume(tiny).await, Code::OutOfRange);
    expect_code(c.create_volume(create_req("pvc-huge", 1 << 40, rwo())).await, Code::ResourceExhausted);
    let mut elsewhere = create_req("pvc-b", 64 * MIB, rwo());
    elsewhere.accessibility_requirements =
        Some(TopologyRequirement { requisite: vec![topology("node-2")], preferred: vec![] });
    expect_code(c.create_volume(elsewhere).await, Code::ResourceExhausted);
    let mut here = create_req("pvc-b", 64 * MIB, rwo());
    here.accessibility_requirements = Some(TopologyRequirement {
        requisite: vec![topology("node-2"), topology("node-1")],
        preferred: vec![topology("node-1")],
    });
    c.create_volume(here).await.unwrap();
    // No capacity asked: the driver's default.
    let mut unsized_req = create_req("pvc-default", 0, rwo());
    unsized_req.capacity_range = None;
    assert_eq!(c.create_volume(unsized_req).await.unwrap().into_inner().volume.unwrap().capacity_bytes, 1 << 30);
}

#[tokio::test]
async fn delete_volume_is_idempotent_and_refuses_volumes_in_use() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let id = create(&fx, "pvc-del", 16 * MIB, rwo()).await;
    expect_code(c.delete_volume(delete_req("")).await, Code::InvalidArgument);

    let staging = fx.staging("del");
    fx.node().node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    let msg = expect_code(c.delete_volume(delete_req(&id)).await, Code::FailedPrecondition);
    assert!(msg.contains("in use"), "{msg}");
    fx.node().node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();

    c.delete_volume(delete_req(&id)).await.unwrap();
    c.delete_volume(delete_req(&id)).await.unwrap();
    c.delete_volume(delete_req("v0123456789abcdef0123456789abcdef")).await.unwrap();
    c.delete_volume(delete_req("not-an-id-of-ours")).await.unwrap();
    assert!(!fx.pool.join("volumes").join(&id).exists());
    let listed = c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner();
    assert!(listed.entries.is_empty());
}

#[tokio::test]
async fn list_volumes_paginates_and_aborts_on_a_foreign_token() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(create(&fx, &format!("pvc-list-{i}"), 8 * MIB, rwo()).await);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_volumes(ListVolumesRequest { max_entries: 2, starting_token: token.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        seen.extend(page.entries.iter().map(|e| e.volume.as_ref().unwrap().volume_id.clone()));
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen, ids);
    let all = c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner();
    assert_eq!(all.entries.len(), 5);
    assert!(all.next_token.is_empty());
    expect_code(
        c.list_volumes(ListVolumesRequest { max_entries: 0, starting_token: "bogus".into() }).await,
        Code::Aborted,
    );
    expect_code(
        c.list_volumes(ListVolumesRequest { max_entries: -1, starting_token: String::new() }).await,
        Code::InvalidArgument,
    );
}

// ---------------------------------------------------------------- ControllerPublish / Validate / Capacity

#[tokio::test]
async fn controller_publish_checks_volume_node_and_compatibility() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let id = create(&fx, "pvc-pub", 16 * MIB, rwo()).await;
    let publish = |volume: &str, node: &str, readonly: bool| ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        volume_capability: Some(rwo()),
        readonly,
        ..Default::default()
    };
    expect_code(c.controller_publish_volume(publish("", "node-1", false)).await, Code::InvalidArgument);
    expect_code(c.controller_publish_volume(publish(&id, "", false)).await, Code::InvalidArgument);
    let mut no_cap = publish(&id, "node-1", false);
    no_cap.volume_capability = None;
    expect_code(c.controller_publish_volume(no_cap).await, Code::InvalidArgument);
    expect_code(
        c.controller_publish_volume(publish("v0123456789abcdef0123456789abcdef", "node-1", false)).await,
        Code::NotFound,
    );
    expect_code(c.controller_publish_volume(publish(&id, "node-9", false)).await, Code::NotFound);

    let ctx = c.controller_publish_volume(publish(&id, "node-1", false)).await.unwrap().into_inner().publish_context;
    let again = c.controller_publish_volume(publish(&id, "node-1", false)).await.unwrap().into_inner().publish_context;
    assert_eq!(ctx, again);
    expect_code(c.controller_publish_volume(publish(&id, "node-1", true)).await, Code::AlreadyExists);

    let listed = c.list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.entries[0].status.as_ref().unwrap().published_node_ids, vec!["node-1".to_string()]);
    let got = c.controller_get_volume(ControllerGetVolumeRequest { volume_id: id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.status.unwrap().published_node_ids, vec!["node-1".to_string()]);
    expect_code(c.delete_volume(delete_req(&id)).await, Code::FailedPrecondition);

    let unpublish = |volume: &str, node: &str| ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    };
    expect_code(c.controller_unpublish_volume(unpublish("", "node-1")).await, Code::InvalidArgument);
    c.controller_unpublish_volume(unpublish(&id, "node-1")).await.unwrap();
    c.controller_unpublish_volume(unpublish(&id, "node-1")).await.unwrap();
    c.controller_unpublish_volume(unpublish("v0123456789abcdef0123456789abcdef", "node-1")).await.unwrap();
    c.controller_publish_volume(publish(&id, "node-1", true)).await.unwrap();
    c.controller_unpublish_volume(unpublish(&id, "")).await.unwrap();
    c.delete_volume(delete_req(&id)).await.unwrap();
    expect_code(c.controller_get_volume(ControllerGetVolumeRequest { volume_id: id }).await, Code::NotFound);
}

#[tokio::test]
async fn validate_capabilities_confirms_only_what_the_backend_supports() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let id = create(&fx, "pvc-val", 16 * MIB, rwo()).await;
    let validate = |volume: &str, caps: Vec<kvol_csi::v1::VolumeCapability>| ValidateVolumeCapabilitiesRequest {
        volume_id: volume.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    let ok = c
        .validate_volume_capabilities(validate(&id, vec![rwo(), mount_cap("btrfs", Mode::SingleNodeReaderOnly)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.confirmed.unwrap().volume_capabilities.len(), 2);
    let no = c
        .validate_volume_capabilities(validate(&id, vec![mount_cap("", Mode::MultiNodeMultiWriter)]))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none());
    assert!(!no.message.is_empty());
    let no = c
        .validate_volume_capabilities(validate(&id, vec![block_cap(Mode::SingleNodeWriter)]))
        .await
        .unwrap()
        .into_inner();
    assert!(no.confirmed.is_none());
    expect_code(c.validate_volume_capabilities(validate(&id, vec![])).await, Code::InvalidArgument);
    expect_code(c.validate_volume_capabilities(validate("", vec![rwo()])).await, Code::InvalidArgument);
    expect_code(
        c.validate_volume_capabilities(validate("v0123456789abcdef0123456789abcdef", vec![rwo()])).await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn get_capacity_reports_free_space_where_volumes_can_go() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let all = c.get_capacity(GetCapacityRequest::default()).await.unwrap().into_inner();
    assert!(all.available_capacity > 1024 * MIB && all.available_capacity <= 2048 * MIB, "{all:?}");
    assert_eq!(all.minimum_volume_size, Some(MIB));
    let here = GetCapacityRequest {
        volume_capabilities: vec![rwo()],
        accessible_topology: Some(topology("node-1")),
        ..Default::default()
    };
    assert!(c.get_capacity(here).await.unwrap().into_inner().available_capacity > 0);
    let there = GetCapacityRequest { accessible_topology: Some(topology("node-2")), ..Default::default() };
    assert_eq!(c.get_capacity(there).await.unwrap().into_inner().available_capacity, 0);
    let block =
        GetCapacityRequest { volume_capabilities: vec![block_cap(Mode::SingleNodeWriter)], ..Default::default() };
    assert_eq!(c.get_capacity(block).await.unwrap().into_inner().available_capacity, 0);
}

// ---------------------------------------------------------------- Node: stage, publish and back

#[tokio::test]
async fn btrfs_stage_publish_unpublish_unstage_are_idempotent_with_the_mandated_errors() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut n = fx.node();
    let id = create(&fx, "pvc-node", 32 * MIB, rwo()).await;
    let staging = fx.staging("node");
    let target = fx.target("pod-a");
    let target_ro = fx.target("pod-ro");
    let missing = "v0123456789abcdef0123456789abcdef";

    // NodeStageVolume
    expect_code(n.node_stage_volume(stage_req("", &staging, rwo())).await, Code::InvalidArgument);
    let mut no_path = stage_req(&id, &staging, rwo());
    no_path.staging_target_path.clear();
    expect_code(n.node_stage_volume(no_path).await, Code::InvalidArgument);
    let mut no_cap = stage_req(&id, &staging, rwo());
    no_cap.volume_capability = None;
    expect_code(n.node_stage_volume(no_cap).await, Code::InvalidArgument);
    expect_code(n.node_stage_volume(stage_req(missing, &staging, rwo())).await, Code::NotFound);
    expect_code(
        n.node_stage_volume(stage_req(&id, &staging, block_cap(Mode::SingleNodeWriter))).await,
        Code::FailedPrecondition,
    );
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    assert!(is_mounted(&staging));
    let mut flags = rwo();
    if let Some(kvol_csi::v1::volume_capability::AccessType::Mount(m)) = &mut flags.access_type {
        m.mount_flags = vec!["noexec".into()];
    }
    expect_code(n.node_stage_volume(stage_req(&id, &staging, flags)).await, Code::AlreadyExists);

    // NodePublishVolume
    let mut no_target = publish_req(&id, &staging, &target, rwo(), false);
    no_target.target_path.clear();
    expect_code(n.node_publish_volume(no_target).await, Code::InvalidArgument);
    let mut no_staging = publish_req(&id, &staging, &target, rwo(), false);
    no_staging.staging_target_path.clear();
    expect_code(n.node_publish_volume(no_staging).await, Code::FailedPrecondition);
    expect_code(n.node_publish_volume(publish_req(missing, &staging, &target, rwo(), false)).await, Code::NotFound);
    expect_code(
        n.node_publish_volume(publish_req(&id, &fx.staging("elsewhere"), &target, rwo(), false)).await,
        Code::FailedPrecondition,
    );
    n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
    assert!(is_mounted(&target));
    expect_code(n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), true)).await, Code::AlreadyExists);
    std::fs::write(target.join("hello"), b"world").unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target_ro, rwo(), true)).await.unwrap();
    assert_eq!(std::fs::read(target_ro.join("hello")).unwrap(), b"world");
    let err = std::fs::write(target_ro.join("nope"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    // SINGLE_NODE_SINGLE_WRITER allows one target only.
    let single = mount_cap("", Mode::SingleNodeSingleWriter);
    expect_code(
        n.node_publish_volume(publish_req(&id, &staging, &fx.target("pod-c"), single, false)).await,
        Code::FailedPrecondition,
    );

    // NodeGetVolumeStats
    let stats = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage[0].total, 32 * MIB);
    expect_code(
        n.node_get_volume_stats(NodeGetVolumeStatsRequest { volume_id: id.clone(), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    expect_code(
        n.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: missing.into(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
    );
    expect_code(
        n.node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: fx.path("gone").to_str().unwrap().into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
    );

    // Unstage before unpublish is refused; then unpublish, unstage, each twice.
    expect_code(n.node_unstage_volume(unstage_req(&id, &staging)).await, Code::FailedPrecondition);
    expect_code(n.node_unpublish_volume(unpublish_req("", &target)).await, Code::InvalidArgument);
    expect_code(n.node_unpublish_volume(unpublish_req(&id, std::path::Path::new(""))).await, Code::InvalidArgument);
    for t in [&target, &target_ro] {
        n.node_unpublish_volume(unpublish_req(&id, t)).await.unwrap();
        n.node_unpublish_volume(unpublish_req(&id, t)).await.unwrap();
        assert!(!is_mounted(t));
        assert!(!t.exists(), "NodeUnpublishVolume removes the target it created");
    }
    expect_code(n.node_unpublish_volume(unpublish_req(missing, &target)).await, Code::NotFound);
    expect_code(n.node_unstage_volume(unstage_req("", &staging)).await, Code::InvalidArgument);
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    assert!(!is_mounted(&staging));
    expect_code(n.node_unstage_volume(unstage_req(missing, &staging)).await, Code::NotFound);
    fx.controller().delete_volume(delete_req(&id)).await.unwrap();
}

#[tokio::test]
async fn btrfs_quota_refuses_an_over_fill_and_expansion_raises_it_online() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut n = fx.node();
    let id = create(&fx, "pvc-quota", 16 * MIB, rwo()).await;
    let staging = fx.staging("quota");
    let target = fx.target("pod-quota");
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();

    write_bytes(&target.join("fits"), 8 << 20).unwrap();
    let err = write_bytes(&target.join("too-much"), 16 << 20).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "writing past the qgroup limit: {err}");
    std::fs::remove_file(target.join("too-much")).unwrap();
    sh("sync", &[]);
    let stats = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bytes = &stats.usage[0];
    assert!(bytes.used >= 8 * MIB && bytes.used < 12 * MIB, "{bytes:?}");
    assert_eq!(bytes.total, 16 * MIB);
    assert_eq!(bytes.available, bytes.total - bytes.used);

    let mut c = fx.controller();
    let grow = |bytes: i64| ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange { required_bytes: bytes, limit_bytes: 0 }),
        ..Default::default()
    };
    let grown = c.controller_expand_volume(grow(64 * MIB)).await.unwrap().into_inner();
    assert_eq!(grown.capacity_bytes, 64 * MIB);
    assert!(!grown.node_expansion_required);
    assert_eq!(c.controller_expand_volume(grow(32 * MIB)).await.unwrap().into_inner().capacity_bytes, 64 * MIB);
    let node = n
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(node.capacity_bytes, 64 * MIB);
    write_bytes(&target.join("now-fits"), 32 << 20).unwrap();

    expect_code(c.controller_expand_volume(grow(1 << 40)).await, Code::OutOfRange);
    let mut limited = grow(128 * MIB);
    limited.capacity_range = Some(CapacityRange { required_bytes: 0, limit_bytes: 32 * MIB });
    expect_code(c.controller_expand_volume(limited).await, Code::OutOfRange);
    let mut no_range = grow(0);
    no_range.capacity_range = None;
    expect_code(c.controller_expand_volume(no_range).await, Code::InvalidArgument);
    expect_code(
        c.controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: "v0123456789abcdef0123456789abcdef".into(),
            capacity_range: Some(CapacityRange { required_bytes: MIB, limit_bytes: 0 }),
            ..Default::default()
        })
        .await,
        Code::NotFound,
    );
    expect_code(
        n.node_expand_volume(NodeExpandVolumeRequest { volume_id: id.clone(), ..Default::default() }).await,
        Code::InvalidArgument,
    );
    expect_code(
        n.node_expand_volume(NodeExpandVolumeRequest {
            volume_id: "v0123456789abcdef0123456789abcdef".into(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
    );

    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
}

// ---------------------------------------------------------------- Snapshots and clones

#[tokio::test]
async fn btrfs_snapshots_restore_and_clone_with_the_mandated_errors() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::btrfs().await;
    let mut c = fx.controller();
    let mut n = fx.node();
    let id = create(&fx, "pvc-src", 32 * MIB, rwo()).await;
    let staging = fx.staging("src");
    let target = fx.target("pod-src");
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
    std::fs::write(target.join("data"), b"before").unwrap();

    let snap_req = |name: &str, source: &str| CreateSnapshotRequest {
        source_volume_id: source.into(),
        name: name.into(),
        ..Default::default()
    };
    let snap = c.create_snapshot(snap_req("snap-1", &id)).await.unwrap().into_inner().snapshot.unwrap();
    assert!(snap.ready_to_use);
    assert_eq!(snap.source_volume_id, id);
    assert_eq!(snap.size_bytes, 32 * MIB);
    assert!(snap.creation_time.is_some());
    assert_eq!(c.create_snapshot(snap_req("snap-1", &id)).await.unwrap().into_inner().snapshot.unwrap(), snap);
    std::fs::write(target.join("data"), b"after").unwrap();
    let other = create(&fx, "pvc-other", 8 * MIB, rwo()).await;
    expect_code(c.create_snapshot(snap_req("snap-1", &other)).await, Code::AlreadyExists);
    expect_code(c.create_snapshot(snap_req("snap-2", "v0123456789abcdef0123456789abcdef")).await, Code::NotFound);
    expect_code(c.create_snapshot(snap_req("", &id)).await, Code::InvalidArgument);
    expect_code(c.create_snapshot(snap_req("snap-2", "")).await, Code::InvalidArgument);
    let snap2 = c.create_snapshot(snap_req("snap-2", &other)).await.unwrap().into_inner().snapshot.unwrap();

    // ListSnapshots: all, by id, by source, paginated, bad token.
    let list = |req: ListSnapshotsRequest| {
        let mut c = fx.controller();
        async move { c.list_snapshots(req).await }
    };
    assert_eq!(list(ListSnapshotsRequest::default()).await.unwrap().into_inner().entries.len(), 2);
    let by_id = list(ListSnapshotsRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    assert_eq!(by_id.entries[0].snapshot.as_ref().unwrap(), &snap);
    let by_src = list(ListSnapshotsRequest { source_volume_id: other.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_src.entries[0].snapshot.as_ref().unwrap(), &snap2);
    assert!(list(ListSnapshotsRequest { snapshot_id: "s-unknown".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries
        .is_empty());
    let page = list(ListSnapshotsRequest { max_entries: 1, ..Default::default() }).await.unwrap().into_inner();
    assert_eq!(page.entries.len(), 1);
    let rest =
        list(ListSnapshotsRequest { max_entries: 1, starting_token: page.next_token.clone(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.next_token.is_empty());
    expect_code(
        list(ListSnapshotsRequest { starting_token: "nonsense".into(), ..Default::default() }).await,
        Code::Aborted,
    );
    let got = c
        .get_snapshot(GetSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.snapshot.unwrap(), snap);

    // Restore from the snapshot: the data as it was.
    let mut restore = create_req("pvc-restored", 32 * MIB, rwo());
    restore.volume_content_source = snapshot_source(&snap.snapshot_id);
    let restored = c.create_volume(restore.clone()).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(restored.content_source, snapshot_source(&snap.snapshot_id));
    assert_eq!(c.create_volume(restore).await.unwrap().into_inner().volume.unwrap(), restored);
    let mut other_source = create_req("pvc-restored", 32 * MIB, rwo());
    other_source.volume_content_source = snapshot_source(&snap2.snapshot_id);
    expect_code(c.create_volume(other_source).await, Code::AlreadyExists);
    let mut too_small = create_req("pvc-small", 16 * MIB, rwo());
    too_small.capacity_range = Some(CapacityRange { required_bytes: 16 * MIB, limit_bytes: 16 * MIB });
    too_small.volume_content_source = snapshot_source(&snap.snapshot_id);
    expect_code(c.create_volume(too_small).await, Code::OutOfRange);
    let mut missing = create_req("pvc-missing", 32 * MIB, rwo());
    missing.volume_content_source = snapshot_source("s0123456789abcdef0123456789abcdef");
    expect_code(c.create_volume(missing).await, Code::NotFound);
    let mut missing_vol = create_req("pvc-missing", 32 * MIB, rwo());
    missing_vol.volume_content_source = volume_source("v0123456789abcdef0123456789abcdef");
    expect_code(c.create_volume(missing_vol).await, Code::NotFound);
    let mut empty_source = create_req("pvc-missing", 32 * MIB, rwo());
    empty_source.volume_content_source = Some(VolumeContentSource { r#type: None });
    expect_code(c.create_volume(empty_source).await, Code::InvalidArgument);

    // Clone the live volume.
    let mut clone = create_req("pvc-clone", 32 * MIB, rwo());
    clone.volume_content_source = volume_source(&id);
    let cloned = c.create_volume(clone).await.unwrap().into_inner().volume.unwrap();

    for (vol, want) in [(&restored.volume_id, "before"), (&cloned.volume_id, "after")] {
        let st = fx.staging(vol);
        let t = fx.target(&format!("pod-{vol}"));
        n.node_stage_volume(stage_req(vol, &st, rwo())).await.unwrap();
        n.node_publish_volume(publish_req(vol, &st, &t, rwo(), false)).await.unwrap();
        assert_eq!(std::fs::read_to_string(t.join("data")).unwrap(), want);
        n.node_unpublish_volume(unpublish_req(vol, &t)).await.unwrap();
        n.node_unstage_volume(unstage_req(vol, &st)).await.unwrap();
        c.delete_volume(delete_req(vol)).await.unwrap();
    }

    // DeleteSnapshot: idempotent; GetSnapshot then says NOT_FOUND.
    let del = |id: &str| DeleteSnapshotRequest { snapshot_id: id.into(), ..Default::default() };
    expect_code(c.delete_snapshot(del("")).await, Code::InvalidArgument);
    c.delete_snapshot(del(&snap.snapshot_id)).await.unwrap();
    c.delete_snapshot(del(&snap.snapshot_id)).await.unwrap();
    c.delete_snapshot(del("garbage")).await.unwrap();
    expect_code(
        c.get_snapshot(GetSnapshotRequest { snapshot_id: snap.snapshot_id.clone(), ..Default::default() }).await,
        Code::NotFound,
    );
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
}

// ---------------------------------------------------------------- Concurrency and restarts

#[tokio::test]
async fn a_second_call_for_a_volume_with_an_operation_in_flight_is_aborted() {
    require!("mkfs.btrfs", "losetup");
    let fx = Fixture::with(Kind::Btrfs, &[("KVOL_CSI_TEST_OP_DELAY_MS", "1000")]).await;
    let (mut a, mut b) = (fx.controller(), fx.controller());
    let (r1, r2) = tokio::join!(a.create_volume(create_req("pvc-race", 16 * MIB, rwo())), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.create_volume(create_req("pvc-race", 16 * MIB, rwo())).await
    });
    let id = r1.unwrap().into_inner().volume.unwrap().volume_id;
    expect_code(r2, Code::Aborted);

    // Node side too: a stage in flight makes a concurrent publish for the volume abort.
    let staging = fx.staging("race");
    let (mut n1, mut n2) = (fx.node(), fx.node());
    let (s1, s2) = tokio::join!(n1.node_stage_volume(stage_req(&id, &staging, rwo())), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        n2.node_publish_volume(publish_req(&id, &staging, &fx.target("race"), rwo(), false)).await
    });
    s1.unwrap();
    expect_code(s2, Code::Aborted);
    // Once the first call is done, the retry succeeds.
    fx.node().node_publish_volume(publish_req(&id, &staging, &fx.target("race"), rwo(), false)).await.unwrap();
    fx.node().node_unpublish_volume(unpublish_req(&id, &fx.target("race"))).await.unwrap();
    fx.node().node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
}

#[tokio::test]
async fn state_survives_a_killed_driver() {
    require!("mkfs.btrfs", "losetup");
    let mut fx = Fixture::btrfs().await;
    let id = create(&fx, "pvc-restart", 16 * MIB, rwo()).await;
    let snap = fx
        .controller()
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "snap-restart".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let staging = fx.staging("restart");
    let target = fx.target("pod-restart");
    fx.node().node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    fx.node().node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();

    fx.kill();
    fx.start().await;

    let listed = fx.controller().list_volumes(ListVolumesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].volume.as_ref().unwrap().capacity_bytes, 16 * MIB);
    let snaps = fx.controller().list_snapshots(ListSnapshotsRequest::default()).await.unwrap().into_inner();
    assert_eq!(snaps.entries[0].snapshot.as_ref().unwrap(), &snap);
    assert_eq!(create(&fx, "pvc-restart", 16 * MIB, rwo()).await, id);
    // Repeats after the restart are recognised from the mount table and the node record.
    fx.node().node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    fx.node().node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
    expect_code(
        fx.node().node_publish_volume(publish_req(&id, &staging, &target, rwo(), true)).await,
        Code::AlreadyExists,
    );
    fx.node().node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    fx.node().node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    assert!(!is_mounted(&staging) && !is_mounted(&target));
}

/// Regression test for the statx-based mount checks and the swapped-in node records: what a crash or a
/// power loss can leave (mounts whose node record is torn, a mount stacked on a target) is adopted or
/// cleaned up, on both backends.
#[tokio::test]
async fn mounts_without_a_readable_record_are_adopted_and_stacked_mounts_all_removed() {
    require!("mkfs.btrfs", "losetup", "mkfs.ext4");
    for kind in [Kind::Btrfs, Kind::Loop] {
        let mut fx = Fixture::with(kind, &[]).await;
        let id = create(&fx, "pvc-torn", 32 * MIB, rwo()).await;
        let staging = fx.staging("torn");
        let target = fx.target("pod-torn");
        fx.node().node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
        fx.node().node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();

        // A power loss can leave the unsynced record empty; the mounts are kept here to see them adopted.
        fx.kill();
        let record = fx.pool.join("meta/nodes").join(&fx.node_id).join(format!("{id}.json"));
        std::fs::write(&record, b"").unwrap();
        fx.start().await;
        let mut n = fx.node();
        expect_code(
            n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await,
            Code::FailedPrecondition,
        );
        n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
        n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
        n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
        expect_code(n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), true)).await, Code::AlreadyExists);

        // A second mount stacked on the target (a publish retried across a crash): all are removed.
        sh("mount", &["--bind", staging.to_str().unwrap(), target.to_str().unwrap()]);
        n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
        assert!(!is_mounted(&target), "{kind:?}: every stacked mount is gone");
        assert!(!target.exists());
        n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
        n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
        assert!(!is_mounted(&staging));
        assert!(!record.exists(), "{kind:?}: an empty record is removed");
        fx.controller().delete_volume(delete_req(&id)).await.unwrap();
    }
}

// ---------------------------------------------------------------- loop backend

#[tokio::test]
async fn loop_ext4_volume_stages_publishes_and_grows_offline() {
    require!("losetup", "mkfs.ext4", "resize2fs");
    let fx = Fixture::loop_files().await;
    let (mut c, mut n) = (fx.controller(), fx.node());
    let ext4 = mount_cap("ext4", Mode::SingleNodeWriter);
    let id = create(&fx, "pvc-ext4", 64 * MIB, ext4.clone()).await;
    let staging = fx.staging("ext4");
    let target = fx.target("pod-ext4");
    n.node_stage_volume(stage_req(&id, &staging, ext4.clone())).await.unwrap();
    n.node_stage_volume(stage_req(&id, &staging, ext4.clone())).await.unwrap();
    expect_code(
        n.node_stage_volume(stage_req(&id, &staging, mount_cap("xfs", Mode::SingleNodeWriter))).await,
        Code::AlreadyExists,
    );
    n.node_publish_volume(publish_req(&id, &staging, &target, ext4.clone(), false)).await.unwrap();
    std::fs::write(target.join("data"), b"ext4 data").unwrap();
    // The file size is a hard capacity.
    let err = write_bytes(&target.join("big"), 80 << 20).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    std::fs::remove_file(target.join("big")).unwrap();
    let stats = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2, "bytes and inodes: {stats:?}");
    let before = stats.usage[0].total;

    let grown = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange { required_bytes: 128 * MIB, limit_bytes: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(grown.node_expansion_required);
    // Online ext4 growth is not possible on this kernel: an honest FAILED_PRECONDITION.
    let msg = expect_code(
        n.node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            staging_target_path: staging.to_str().unwrap().into(),
            ..Default::default()
        })
        .await,
        Code::FailedPrecondition,
    );
    assert!(msg.contains("offline"), "{msg}");
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    assert!(
        sh("losetup", &["-j", fx.pool.join(format!("volumes/{id}.img")).to_str().unwrap()]).trim().is_empty(),
        "unstage detaches the loop device"
    );
    // Offline growth at the next stage.
    n.node_stage_volume(stage_req(&id, &staging, ext4.clone())).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, ext4.clone(), false)).await.unwrap();
    assert_eq!(std::fs::read(target.join("data")).unwrap(), b"ext4 data");
    let after = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .usage[0]
        .total;
    assert!(after > before + 48 * MIB, "grown from {before} to {after}");
    expect_code(c.delete_volume(delete_req(&id)).await, Code::FailedPrecondition);
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    c.delete_volume(delete_req(&id)).await.unwrap();
    assert!(!fx.pool.join(format!("volumes/{id}.img")).exists());
}

#[tokio::test]
async fn loop_xfs_volume_grows_online() {
    require!("losetup", "mkfs.xfs", "xfs_growfs");
    let fx = Fixture::loop_files().await;
    let (mut c, mut n) = (fx.controller(), fx.node());
    let xfs = mount_cap("xfs", Mode::SingleNodeWriter);
    let id = create(&fx, "pvc-xfs", 320 * MIB, xfs.clone()).await;
    let staging = fx.staging("xfs");
    let target = fx.target("pod-xfs");
    n.node_stage_volume(stage_req(&id, &staging, xfs.clone())).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, xfs.clone(), false)).await.unwrap();
    let total = |n: &mut kvol_csi::v1::node_client::NodeClient<_>| {
        let req = NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        };
        let mut n = n.clone();
        async move { n.node_get_volume_stats(req).await.unwrap().into_inner().usage[0].total }
    };
    let before = total(&mut n).await;
    c.controller_expand_volume(ControllerExpandVolumeRequest {
        volume_id: id.clone(),
        capacity_range: Some(CapacityRange { required_bytes: 512 * MIB, limit_bytes: 0 }),
        ..Default::default()
    })
    .await
    .unwrap();
    let expanded = n
        .node_expand_volume(NodeExpandVolumeRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            staging_target_path: staging.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(expanded.capacity_bytes, 512 * MIB);
    let after = total(&mut n).await;
    assert!(after > before + 150 * MIB, "xfs grew online from {before} to {after}");
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    c.delete_volume(delete_req(&id)).await.unwrap();
}

#[tokio::test]
async fn loop_block_volume_is_published_as_a_device() {
    require!("losetup", "mkfs.ext4");
    let fx = Fixture::loop_files().await;
    let (mut c, mut n) = (fx.controller(), fx.node());
    let block = block_cap(Mode::SingleNodeWriter);
    let id = create(&fx, "pvc-block", 32 * MIB, block.clone()).await;
    let staging = fx.staging("block");
    let target = fx.target("pod-block-dev");
    expect_code(
        n.node_publish_volume(publish_req(&id, &staging, &target, block.clone(), false)).await,
        Code::FailedPrecondition,
    );
    n.node_stage_volume(stage_req(&id, &staging, block.clone())).await.unwrap();
    n.node_stage_volume(stage_req(&id, &staging, block.clone())).await.unwrap();
    expect_code(
        n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await,
        Code::FailedPrecondition,
    );
    n.node_publish_volume(publish_req(&id, &staging, &target, block.clone(), false)).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, block.clone(), false)).await.unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&target).unwrap().file_type().is_block_device());
    sh(
        "dd",
        &["if=/dev/urandom", &format!("of={}", target.display()), "bs=1M", "count=4", "oflag=direct", "status=none"],
    );
    let stats = n
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.to_str().unwrap().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage[0].total, 32 * MIB);
    let grown = c
        .controller_expand_volume(ControllerExpandVolumeRequest {
            volume_id: id.clone(),
            capacity_range: Some(CapacityRange { required_bytes: 48 * MIB, limit_bytes: 0 }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(grown.node_expansion_required);
    n.node_expand_volume(NodeExpandVolumeRequest {
        volume_id: id.clone(),
        volume_path: target.to_str().unwrap().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let size = sh("blockdev", &["--getsize64", target.to_str().unwrap()]);
    assert_eq!(size.trim(), (48 * MIB).to_string());
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    assert!(!target.exists());
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    assert!(sh("losetup", &["-j", fx.pool.join(format!("volumes/{id}.img")).to_str().unwrap()]).trim().is_empty());
    c.delete_volume(delete_req(&id)).await.unwrap();
}

#[tokio::test]
async fn loop_snapshot_restores_the_data() {
    require!("losetup", "mkfs.ext4");
    let fx = Fixture::loop_files().await;
    let (mut c, mut n) = (fx.controller(), fx.node());
    let id = create(&fx, "pvc-lsrc", 32 * MIB, rwo()).await;
    let staging = fx.staging("lsrc");
    let target = fx.target("pod-lsrc");
    n.node_stage_volume(stage_req(&id, &staging, rwo())).await.unwrap();
    n.node_publish_volume(publish_req(&id, &staging, &target, rwo(), false)).await.unwrap();
    std::fs::write(target.join("data"), b"snapshotted").unwrap();
    n.node_unpublish_volume(unpublish_req(&id, &target)).await.unwrap();
    n.node_unstage_volume(unstage_req(&id, &staging)).await.unwrap();
    let snap = c
        .create_snapshot(CreateSnapshotRequest {
            source_volume_id: id.clone(),
            name: "lsnap".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    let mut restore = create_req("pvc-lrestore", 48 * MIB, rwo());
    restore.volume_content_source = snapshot_source(&snap.snapshot_id);
    let restored = c.create_volume(restore).await.unwrap().into_inner().volume.unwrap().volume_id;
    let st = fx.staging("lrestore");
    let t = fx.target("pod-lrestore");
    n.node_stage_volume(stage_req(&restored, &st, rwo())).await.unwrap();
    n.node_publish_volume(publish_req(&restored, &st, &t, rwo(), false)).await.unwrap();
    assert_eq!(std::fs::read(t.join("data")).unwrap(), b"snapshotted");
    n.node_unpublish_volume(unpublish_req(&restored, &t)).await.unwrap();
    n.node_unstage_volume(unstage_req(&restored, &st)).await.unwrap();
    c.delete_snapshot(DeleteSnapshotRequest { snapshot_id: snap.snapshot_id, ..Default::default() }).await.unwrap();
    c.delete_volume(delete_req(&restored)).await.unwrap();
    c.delete_volume(delete_req(&id)).await.unwrap();
}
