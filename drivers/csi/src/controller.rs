//! The Controller service: volumes and snapshots in the pool, by name, idempotently.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use kvol_csi::v1::{
    controller_server::Controller, controller_service_capability, list_snapshots_response, list_volumes_response,
    validate_volume_capabilities_response::Confirmed, volume_content_source, CapacityRange,
    ControllerExpandVolumeRequest, ControllerExpandVolumeResponse, ControllerGetCapabilitiesRequest,
    ControllerGetCapabilitiesResponse, ControllerGetVolumeRequest, ControllerGetVolumeResponse,
    ControllerModifyVolumeRequest, ControllerModifyVolumeResponse, ControllerPublishVolumeRequest,
    ControllerPublishVolumeResponse, ControllerServiceCapability, ControllerUnpublishVolumeRequest,
    ControllerUnpublishVolumeResponse, CreateSnapshotRequest, CreateSnapshotResponse, CreateVolumeRequest,
    CreateVolumeResponse, DeleteSnapshotRequest, DeleteSnapshotResponse, DeleteVolumeRequest, DeleteVolumeResponse,
    GetCapacityRequest, GetCapacityResponse, GetSnapshotRequest, GetSnapshotResponse, ListSnapshotsRequest,
    ListSnapshotsResponse, ListVolumesRequest, ListVolumesResponse, Snapshot, ValidateVolumeCapabilitiesRequest,
    ValidateVolumeCapabilitiesResponse, Volume, VolumeContentSource,
};
use tonic::{Request, Response, Status};

use crate::caps::{node_topology, topology_matches, Access, TOPOLOGY_KEY};
use crate::driver::{blocking, required, Driver};
use crate::error::{Error, Result};
use crate::store::{
    is_own_id, snapshot_id_for, volume_id_for, ContentSource, ControllerPublication, SnapshotMeta, VolumeMeta,
};

/// Capacity when the CO does not ask for one.
const DEFAULT_CAPACITY: u64 = 1 << 30;

/// Parameter prefix the external-provisioner adds (`--extra-create-metadata`); accepted and ignored.
const K8S_PARAMETER_PREFIX: &str = "csi.storage.k8s.io/";

/// The Controller service.
pub struct ControllerService {
    driver: Arc<Driver>,
}

impl ControllerService {
    /// A controller over `driver`.
    pub fn new(driver: Arc<Driver>) -> Self {
        ControllerService { driver }
    }

    fn volume_message(&self, meta: &VolumeMeta) -> Volume {
        Volume {
            capacity_bytes: meta.capacity_bytes as i64,
            volume_id: meta.id.clone(),
            volume_context: HashMap::from([("csi.kvol.io/backend".to_owned(), self.driver.backend.name().to_owned())]),
            content_source: meta.source.as_ref().map(|s| VolumeContentSource {
                r#type: Some(match s {
                    ContentSource::Snapshot(id) => {
                        volume_content_source::Type::Snapshot(volume_content_source::SnapshotSource {
                            snapshot_id: id.clone(),
                        })
                    }
                    ContentSource::Volume(id) => {
                        volume_content_source::Type::Volume(volume_content_source::VolumeSource {
                            volume_id: id.clone(),
                        })
                    }
                }),
            }),
            accessible_topology: vec![node_topology(&self.driver.node_id)],
        }
    }

    fn volume(&self, id: &str) -> Result<VolumeMeta> {
        self.driver.store.volume(id)?.ok_or_else(|| Error::VolumeNotFound { volume_id: id.to_owned() })
    }

    /// The capacity to provision for `range`: at least the backend minimum, rounded up to its
    /// granularity, within the limit; OUT_OF_RANGE if no such size exists.
    fn capacity_for(&self, range: Option<&CapacityRange>, at_least: u64) -> Result<u64> {
        let (required_bytes, limit) = range.map(|r| (r.required_bytes, r.limit_bytes)).unwrap_or((0, 0));
        if required_bytes < 0 || limit < 0 {
            return Err(Error::InvalidArgument { field: "capacity_range", reason: "negative bytes".into() });
        }
        let (required_bytes, limit) = (required_bytes as u64, limit as u64);
        if limit > 0 && required_bytes > limit {
            return Err(Error::CapacityOutOfRange(format!("required_bytes {required_bytes} > limit_bytes {limit}")));
        }
        let gran = self.driver.backend.granularity();
        let want = if required_bytes == 0 && limit == 0 { DEFAULT_CAPACITY } else { required_bytes };
        let mut cap = want.max(at_least).max(self.driver.backend.min_volume_bytes()).div_ceil(gran) * gran;
        if required_bytes == 0 && limit > 0 && cap > limit {
            cap = (limit / gran) * gran;
        }
        if limit > 0 && cap > limit {
            return Err(Error::CapacityOutOfRange(format!(
                "the smallest volume that fits is {cap} bytes, above limit_bytes {limit} (minimum {}, granularity {gran})",
                self.driver.backend.min_volume_bytes().max(at_least)
            )));
        }
        if cap < at_least || cap < self.driver.backend.min_volume_bytes() {
            return Err(Error::CapacityOutOfRange(format!(
                "{cap} bytes is below the minimum {}",
                at_least.max(self.driver.backend.min_volume_bytes())
            )));
        }
        Ok(cap)
    }

    fn check_capabilities(&self, caps: &[kvol_csi::v1::VolumeCapability]) -> Result<Vec<Access>> {
        if caps.is_empty() {
            return Err(Error::MissingField { field: "volume_capabilities" });
        }
        caps.iter().map(|c| Access::parse(c, "volume_capabilities")).collect()
    }

    fn check_parameters(parameters: &HashMap<String, String>) -> Result<()> {
        if let Some(key) = parameters.keys().find(|k| !k.starts_with(K8S_PARAMETER_PREFIX)) {
            return Err(Error::InvalidArgument { field: "parameters", reason: format!("unknown parameter {key:?}") });
        }
        Ok(())
    }
}

/// Pagination over ids sorted ascending: entries from `token` on, at most `max` (0 = all).
fn paginate<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    token: &str,
    max: i32,
    prefix: char,
) -> Result<(Vec<T>, String)> {
    if max < 0 {
        return Err(Error::InvalidArgument { field: "max_entries", reason: "must not be negative".into() });
    }
    if !token.is_empty() && !is_own_id(token, prefix) {
        return Err(Error::BadToken { token: token.to_owned() });
    }
    let mut rest: Vec<T> = items.into_iter().filter(|i| id(i) >= token).collect();
    let mut next = String::new();
    if max > 0 && rest.len() > max as usize {
        next = id(&rest[max as usize]).to_owned();
        rest.truncate(max as usize);
    }
    Ok((rest, next))
}

fn snapshot_message(meta: &SnapshotMeta) -> Snapshot {
    Snapshot {
        size_bytes: meta.size_bytes as i64,
        snapshot_id: meta.id.clone(),
        source_volume_id: meta.source_volume_id.clone(),
        creation_time: Some(prost_types::Timestamp { seconds: meta.created_secs, nanos: meta.created_nanos }),
        ready_to_use: true,
        group_snapshot_id: String::new(),
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(&self, req: Request<CreateVolumeRequest>) -> Result<Response<CreateVolumeResponse>, Status> {
        let req = req.into_inner();
        let name = required(&req.name, "name")?;
        let accesses = self.check_capabilities(&req.volume_capabilities)?;
        if let Some(reason) = accesses.iter().find_map(|a| a.unsupported_by(self.driver.backend.as_ref())) {
            return Err(Error::InvalidArgument { field: "volume_capabilities", reason }.into());
        }
        Self::check_parameters(&req.parameters)?;
        if let Some(reqs) = &req.accessibility_requirements {
            if !reqs.requisite.is_empty() && !reqs.requisite.iter().any(|t| topology_matches(t, &self.driver.node_id)) {
                return Err(Error::ResourceExhausted(format!(
                    "no requisite topology is reachable: volumes live on {TOPOLOGY_KEY}={}",
                    self.driver.node_id
                ))
                .into());
            }
        }
        let source = match req.volume_content_source.as_ref().map(|s| s.r#type.as_ref()) {
            None => None,
            Some(None) => {
                return Err(Error::InvalidArgument {
                    field: "volume_content_source",
                    reason: "no snapshot or volume set".into(),
                }
                .into())
            }
            Some(Some(volume_content_source::Type::Snapshot(s))) => Some(ContentSource::Snapshot(
                required(&s.snapshot_id, "volume_content_source.snapshot.snapshot_id")?.to_owned(),
            )),
            Some(Some(volume_content_source::Type::Volume(v))) => Some(ContentSource::Volume(
                required(&v.volume_id, "volume_content_source.volume.volume_id")?.to_owned(),
            )),
        };
        let id = volume_id_for(name);
        let mut keys = vec![id.as_str()];
        if let Some(ContentSource::Volume(src) | ContentSource::Snapshot(src)) = &source {
            keys.push(src.as_str());
        }
        let _guard = self.driver.begin(&keys).await?;

        let source_size = match &source {
            None => 0,
            Some(ContentSource::Snapshot(s)) => {
                self.driver
                    .store
                    .snapshot(s)?
                    .ok_or_else(|| Error::SnapshotNotFound { snapshot_id: s.clone() })?
                    .size_bytes
            }
            Some(ContentSource::Volume(v)) => self.volume(v)?.capacity_bytes,
        };
        let range = req.capacity_range.as_ref();
        let block = accesses.iter().any(|a| a.block);
        if let Some(existing) = self.driver.store.volume(&id)? {
            let (required_bytes, limit) =
                range.map(|r| (r.required_bytes as u64, r.limit_bytes as u64)).unwrap_or((0, 0));
            let fits = existing.capacity_bytes >= required_bytes && (limit == 0 || existing.capacity_bytes <= limit);
            if !fits {
                return Err(Error::AlreadyExists {
                    what: format!("volume {name:?}"),
                    reason: format!("it has {} bytes, outside the requested range", existing.capacity_bytes),
                }
                .into());
            }
            if existing.source != source {
                return Err(Error::AlreadyExists {
                    what: format!("volume {name:?}"),
                    reason: format!("it was created from {:?}", existing.source),
                }
                .into());
            }
            // Repairs a creation interrupted after the metadata was written (idempotent).
            let (backend, id2, cap, src) =
                (self.driver.backend.clone(), id.clone(), existing.capacity_bytes, existing.source.clone());
            blocking(move || backend.create_volume(&id2, cap, src.as_ref())).await?;
            return Ok(Response::new(CreateVolumeResponse { volume: Some(self.volume_message(&existing)) }));
        }
        let capacity = self.capacity_for(range, source_size)?;
        let backend = self.driver.backend.clone();
        let available = blocking(move || backend.available_bytes()).await?;
        if capacity > available {
            return Err(Error::ResourceExhausted(format!(
                "{capacity} bytes requested, {available} bytes free in the pool"
            ))
            .into());
        }
        let meta = VolumeMeta {
            id: id.clone(),
            name: name.to_owned(),
            capacity_bytes: capacity,
            block,
            source: source.clone(),
            parameters: Default::default(),
            published: Default::default(),
        };
        let (backend, store, m) = (self.driver.backend.clone(), self.driver.store.clone(), meta.clone());
        blocking(move || {
            backend.create_volume(&m.id, m.capacity_bytes, m.source.as_ref())?;
            store.put_volume(&m)
        })
        .await?;
        tracing::info!(volume = %id, %name, capacity, "created volume");
        Ok(Response::new(CreateVolumeResponse { volume: Some(self.volume_message(&meta)) }))
    }

    async fn delete_volume(&self, req: Request<DeleteVolumeRequest>) -> Result<Response<DeleteVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        if !is_own_id(&id, 'v') {
            return Ok(Response::new(DeleteVolumeResponse {}));
        }
        let _guard = self.driver.begin(&[&id]).await?;
        if let Some(meta) = self.driver.store.volume(&id)? {
            if let Some(node) = meta.published.keys().next() {
                return Err(Error::FailedPrecondition(format!("volume {id} is still published to node {node}")).into());
            }
        }
        let (backend, store) = (self.driver.backend.clone(), self.driver.store.clone());
        blocking(move || {
            if let Some(usage) = backend.in_use(&id)? {
                return Err(Error::FailedPrecondition(format!("volume {id} is in use: {usage}")));
            }
            backend.delete_volume(&id)?;
            store.remove_volume(&id)
        })
        .await?;
        Ok(Response::new(DeleteVolumeResponse {}))
    }

    async fn controller_publish_volume(
        &self,
        req: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?;
        let node = required(&req.node_id, "node_id")?;
        let access = Access::parse_required(req.volume_capability.as_ref(), "volume_capability")?;
        let _guard = self.driver.begin(&[id]).await?;
        let mut meta = self.volume(id)?;
        if node != self.driver.node_id {
            return Err(Error::NodeNotFound { node_id: node.to_owned(), own: self.driver.node_id.clone() }.into());
        }
        if let Some(reason) = access.unsupported_by(self.driver.backend.as_ref()) {
            return Err(Error::InvalidArgument { field: "volume_capability", reason }.into());
        }
        let publication =
            ControllerPublication { readonly: req.readonly, block: access.block, mode: access.mode as i32 };
        match meta.published.get(node) {
            Some(existing) if *existing == publication => {}
            Some(existing) => {
                return Err(Error::AlreadyExists {
                    what: format!("publication of volume {id} to node {node}"),
                    reason: format!("published with readonly={} block={}", existing.readonly, existing.block),
                }
                .into())
            }
            None => {
                meta.published.insert(node.to_owned(), publication);
                let store = self.driver.store.clone();
                blocking(move || store.put_volume(&meta)).await?;
            }
        }
        Ok(Response::new(ControllerPublishVolumeResponse {
            publish_context: HashMap::from([("csi.kvol.io/node".to_owned(), node.to_owned())]),
        }))
    }

    async fn controller_unpublish_volume(
        &self,
        req: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?;
        let _guard = self.driver.begin(&[id]).await?;
        // A volume or node that does not exist is not published there: success.
        if let Some(mut meta) = self.driver.store.volume(id)? {
            let before = meta.published.len();
            if req.node_id.is_empty() {
                meta.published.clear();
            } else {
                meta.published.remove(&req.node_id);
            }
            if meta.published.len() != before {
                let store = self.driver.store.clone();
                blocking(move || store.put_volume(&meta)).await?;
            }
        }
        Ok(Response::new(ControllerUnpublishVolumeResponse {}))
    }

    async fn validate_volume_capabilities(
        &self,
        req: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?;
        let accesses = self.check_capabilities(&req.volume_capabilities)?;
        self.volume(id)?;
        if let Some(reason) = accesses.iter().find_map(|a| a.unsupported_by(self.driver.backend.as_ref())) {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse { confirmed: None, message: reason }));
        }
        if let Err(e) = Self::check_parameters(&req.parameters) {
            return Ok(Response::new(ValidateVolumeCapabilitiesResponse { confirmed: None, message: e.to_string() }));
        }
        Ok(Response::new(ValidateVolumeCapabilitiesResponse {
            confirmed: Some(Confirmed {
                volume_context: req.volume_context,
                volume_capabilities: req.volume_capabilities,
                parameters: req.parameters,
                mutable_parameters: Default::default(),
            }),
            message: String::new(),
        }))
    }

    async fn list_volumes(&self, req: Request<ListVolumesRequest>) -> Result<Response<ListVolumesResponse>, Status> {
        let req = req.into_inner();
        let store = self.driver.store.clone();
        let volumes = blocking(move || store.volumes()).await?;
        let (page, next_token) = paginate(volumes, |v| v.id.as_str(), &req.starting_token, req.max_entries, 'v')?;
        let entries = page
            .iter()
            .map(|meta| list_volumes_response::Entry {
                volume: Some(self.volume_message(meta)),
                status: Some(list_volumes_response::VolumeStatus {
                    published_node_ids: meta.published.keys().cloned().collect(),
                    volume_condition: None,
                }),
            })
            .collect();
        Ok(Response::new(ListVolumesResponse { entries, next_token }))
    }

    async fn get_capacity(&self, req: Request<GetCapacityRequest>) -> Result<Response<GetCapacityResponse>, Status> {
        let req = req.into_inner();
        let accesses: Vec<Access> =
            req.volume_capabilities.iter().map(|c| Access::parse(c, "volume_capabilities")).collect::<Result<_>>()?;
        let reachable = req.accessible_topology.as_ref().is_none_or(|t| topology_matches(t, &self.driver.node_id));
        let supported = accesses.iter().all(|a| a.unsupported_by(self.driver.backend.as_ref()).is_none())
            && Self::check_parameters(&req.parameters).is_ok();
        let backend = self.driver.backend.clone();
        let free = if reachable && supported { blocking(move || backend.available_bytes()).await? } else { 0 };
        let gran = self.driver.backend.granularity();
        let max = (free / gran) * gran;
        Ok(Response::new(GetCapacityResponse {
            available_capacity: free as i64,
            maximum_volume_size: Some(max as i64),
            minimum_volume_size: Some(self.driver.backend.min_volume_bytes() as i64),
        }))
    }

    async fn controller_get_capabilities(
        &self,
        _: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        use controller_service_capability::{rpc::Type, Rpc, Type as CapType};
        let capabilities = [
            Type::CreateDeleteVolume,
            Type::PublishUnpublishVolume,
            Type::ListVolumes,
            Type::GetCapacity,
            Type::CreateDeleteSnapshot,
            Type::ListSnapshots,
            Type::CloneVolume,
            Type::PublishReadonly,
            Type::ExpandVolume,
            Type::ListVolumesPublishedNodes,
            Type::GetVolume,
            Type::SingleNodeMultiWriter,
        ]
        .into_iter()
        .map(|t| ControllerServiceCapability { r#type: Some(CapType::Rpc(Rpc { r#type: t as i32 })) })
        .collect();
        Ok(Response::new(ControllerGetCapabilitiesResponse { capabilities }))
    }

    async fn create_snapshot(
        &self,
        req: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        let req = req.into_inner();
        let source = required(&req.source_volume_id, "source_volume_id")?.to_owned();
        let name = required(&req.name, "name")?.to_owned();
        if !req.parameters.is_empty() {
            Self::check_parameters(&req.parameters)?;
        }
        let id = snapshot_id_for(&name);
        let _guard = self.driver.begin(&[&id, &source]).await?;
        if let Some(existing) = self.driver.store.snapshot(&id)? {
            if existing.source_volume_id != source {
                return Err(Error::AlreadyExists {
                    what: format!("snapshot {name:?}"),
                    reason: format!("it is a snapshot of volume {}", existing.source_volume_id),
                }
                .into());
            }
            let (backend, sid, vid) = (self.driver.backend.clone(), id.clone(), source.clone());
            blocking(move || backend.create_snapshot(&sid, &vid)).await?;
            return Ok(Response::new(CreateSnapshotResponse { snapshot: Some(snapshot_message(&existing)) }));
        }
        let volume = self.volume(&source)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let meta = SnapshotMeta {
            id: id.clone(),
            name,
            source_volume_id: source,
            size_bytes: volume.capacity_bytes,
            created_secs: now.as_secs() as i64,
            created_nanos: now.subsec_nanos() as i32,
        };
        let (backend, store, m) = (self.driver.backend.clone(), self.driver.store.clone(), meta.clone());
        blocking(move || {
            backend.create_snapshot(&m.id, &m.source_volume_id)?;
            store.put_snapshot(&m)
        })
        .await?;
        Ok(Response::new(CreateSnapshotResponse { snapshot: Some(snapshot_message(&meta)) }))
    }

    async fn delete_snapshot(
        &self,
        req: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.snapshot_id, "snapshot_id")?.to_owned();
        if !is_own_id(&id, 's') {
            return Ok(Response::new(DeleteSnapshotResponse {}));
        }
        let _guard = self.driver.begin(&[&id]).await?;
        let (backend, store) = (self.driver.backend.clone(), self.driver.store.clone());
        blocking(move || {
            backend.delete_snapshot(&id)?;
            store.remove_snapshot(&id)
        })
        .await?;
        Ok(Response::new(DeleteSnapshotResponse {}))
    }

    async fn list_snapshots(
        &self,
        req: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        let req = req.into_inner();
        let store = self.driver.store.clone();
        let mut snapshots = blocking(move || store.snapshots()).await?;
        if !req.snapshot_id.is_empty() {
            snapshots.retain(|s| s.id == req.snapshot_id);
        }
        if !req.source_volume_id.is_empty() {
            snapshots.retain(|s| s.source_volume_id == req.source_volume_id);
        }
        let (page, next_token) = paginate(snapshots, |s| s.id.as_str(), &req.starting_token, req.max_entries, 's')?;
        let entries =
            page.iter().map(|s| list_snapshots_response::Entry { snapshot: Some(snapshot_message(s)) }).collect();
        Ok(Response::new(ListSnapshotsResponse { entries, next_token }))
    }

    async fn get_snapshot(&self, req: Request<GetSnapshotRequest>) -> Result<Response<GetSnapshotResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.snapshot_id, "snapshot_id")?;
        let meta =
            self.driver.store.snapshot(id)?.ok_or_else(|| Error::SnapshotNotFound { snapshot_id: id.to_owned() })?;
        Ok(Response::new(GetSnapshotResponse { snapshot: Some(snapshot_message(&meta)) }))
    }

    async fn controller_expand_volume(
        &self,
        req: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?.to_owned();
        let range = req.capacity_range.ok_or(Error::MissingField { field: "capacity_range" })?;
        let _guard = self.driver.begin(&[&id]).await?;
        let mut meta = self.volume(&id)?;
        let node_expansion_required = self.driver.backend.name() == "loop";
        if range.limit_bytes > 0 && meta.capacity_bytes > range.limit_bytes as u64 {
            return Err(Error::CapacityOutOfRange(format!(
                "volume {id} already has {} bytes, above limit_bytes {}; volumes do not shrink",
                meta.capacity_bytes, range.limit_bytes
            ))
            .into());
        }
        if range.required_bytes >= 0 && (range.required_bytes as u64) <= meta.capacity_bytes {
            return Ok(Response::new(ControllerExpandVolumeResponse {
                capacity_bytes: meta.capacity_bytes as i64,
                node_expansion_required,
            }));
        }
        let capacity = self.capacity_for(Some(&range), meta.capacity_bytes)?;
        let backend = self.driver.backend.clone();
        let free = blocking(move || backend.available_bytes()).await?;
        if capacity - meta.capacity_bytes > free {
            return Err(Error::CapacityOutOfRange(format!(
                "growing volume {id} to {capacity} bytes needs {} more bytes, {free} free",
                capacity - meta.capacity_bytes
            ))
            .into());
        }
        meta.capacity_bytes = capacity;
        let (backend, store) = (self.driver.backend.clone(), self.driver.store.clone());
        blocking(move || {
            backend.expand_volume(&meta.id, meta.capacity_bytes)?;
            store.put_volume(&meta)
        })
        .await?;
        Ok(Response::new(ControllerExpandVolumeResponse { capacity_bytes: capacity as i64, node_expansion_required }))
    }

    async fn controller_get_volume(
        &self,
        req: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        let req = req.into_inner();
        let id = required(&req.volume_id, "volume_id")?;
        let meta = self.volume(id)?;
        Ok(Response::new(ControllerGetVolumeResponse {
            volume: Some(self.volume_message(&meta)),
            status: Some(kvol_csi::v1::controller_get_volume_response::VolumeStatus {
                published_node_ids: meta.published.keys().cloned().collect(),
                volume_condition: None,
            }),
        }))
    }

    async fn controller_modify_volume(
        &self,
        _: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        Err(Error::Unimplemented("ControllerModifyVolume").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_resumes_at_the_token_and_refuses_foreign_tokens() {
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|n| volume_id_for(n)).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        let (page, next) = paginate(sorted.clone(), |s| s.as_str(), "", 2, 'v').unwrap();
        assert_eq!(page, sorted[..2]);
        assert_eq!(next, sorted[2]);
        let (page, next) = paginate(sorted.clone(), |s| s.as_str(), &next, 2, 'v').unwrap();
        assert_eq!(page, sorted[2..]);
        assert!(next.is_empty());
        assert!(matches!(paginate(sorted.clone(), |s| s.as_str(), "garbage", 0, 'v'), Err(Error::BadToken { .. })));
        assert!(matches!(paginate(sorted, |s| s.as_str(), "", -1, 'v'), Err(Error::InvalidArgument { .. })));
    }
}
