//! A minimal volume-aware scheduler: the VolumeBinding plugin's part of kube-scheduler, enough for
//! `WaitForFirstConsumer`. A pod without `spec.nodeName` goes to the first node (by name, the node already
//! selected for its claims first) where every bound claim's volume fits the node's labels and every delayed
//! claim can get a volume: a matching static PV there (bound now), or provisioning (the claim gets
//! `volume.kubernetes.io/selected-node`). Once all its claims are Bound, the pod is bound to the node.
//!
//! Pods are bound through the `pods/binding` subresource, as kube-scheduler binds them.

use crate::ctx::{claim_volume_name, set_annotation, Ctx};
use crate::error::{api, Result};
use crate::matching::{self, ClaimQuery, NodeFacts, SearchScope};
use crate::protection::{pod_claim_names, pod_is_terminated};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use kvol_api::names::{ANN_SELECTED_NODE, DEFAULT_SCHEDULER_NAME, NO_PROVISIONER};
use kvol_runtime::EventType;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The component name on the scheduler's events.
const SCHEDULER: &str = "default-scheduler";

/// What a node needs done for a pod's delayed claims.
enum Step {
    /// Bind this static volume to the claim.
    BindStatic(Arc<PersistentVolume>, Arc<PersistentVolumeClaim>),
    /// Ask the provisioner for a volume on the node.
    Provision(Arc<PersistentVolumeClaim>),
}

/// Whether this scheduler places a pod.
pub fn is_ours(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref()).unwrap_or("").is_empty()
        && spec.and_then(|s| s.scheduler_name.as_deref()).is_none_or(|n| n == DEFAULT_SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !pod_is_terminated(pod)
}

impl Ctx {
    /// Place one pod.
    pub async fn sync_pod(self: &Arc<Self>, key: &str) -> Result<()> {
        let Some(pod) = self.pods.get(key) else { return Ok(()) };
        if !is_ours(&pod) {
            return Ok(());
        }
        let namespace = pod.namespace().unwrap_or_default();
        let mut claims = Vec::new();
        for name in pod_claim_names(&pod) {
            match self.claims.get(&format!("{namespace}/{name}")) {
                Some(c) => claims.push(c),
                None => {
                    let message = format!(
                        "0/{} nodes are available: persistentvolumeclaim {name:?} not found.",
                        self.nodes.len()
                    );
                    self.recorder.event(&*pod, EventType::Warning, "FailedScheduling", message, SCHEDULER);
                    return Ok(());
                }
            }
        }
        let mut nodes: Vec<Arc<Node>> = self
            .nodes
            .list()
            .into_iter()
            .filter(|n| !n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false))
            .collect();
        nodes.sort_by_key(|n| n.name_any());
        let preferred: Option<String> = claims.iter().find_map(|c| c.annotations().get(ANN_SELECTED_NODE).cloned());
        if let Some(p) = &preferred {
            nodes.sort_by_key(|n| n.name_any() != *p);
        }
        if nodes.is_empty() {
            self.recorder.event(&*pod, EventType::Warning, "FailedScheduling", "0/0 nodes are available.", SCHEDULER);
            return Ok(());
        }
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut chosen = None;
        for node in &nodes {
            match self.plan_for_node(node, &claims) {
                Ok(steps) => {
                    chosen = Some((node.clone(), steps));
                    break;
                }
                Err(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        let Some((node, steps)) = chosen else {
            let detail: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} node(s) {r}")).collect();
            let message = format!("0/{} nodes are available: {}.", nodes.len(), detail.join(", "));
            self.recorder.event(&*pod, EventType::Warning, "FailedScheduling", message, SCHEDULER);
            return Ok(());
        };
        let node_name = node.name_any();
        for step in steps {
            match step {
                Step::BindStatic(volume, claim) => self.bind(volume, claim).await?,
                Step::Provision(claim) => {
                    if claim.annotations().get(ANN_SELECTED_NODE) != Some(&node_name) {
                        let mut new = (*claim).clone();
                        set_annotation(&mut new, ANN_SELECTED_NODE, &node_name);
                        self.replace_claim(&new).await?;
                    }
                }
            }
        }
        let all_bound = pod_claim_names(&pod)
            .iter()
            .all(|name| self.claims.get(&format!("{namespace}/{name}")).is_some_and(|c| Ctx::claim_is_bound(&c)));
        if !all_bound {
            // Claim updates bring the pod back; this is the safety net.
            self.pod_queue.add_after(key.to_string(), Duration::from_secs(2));
            return Ok(());
        }
        // Bind through the `binding` subresource, as kube-scheduler does: a pod's spec cannot be updated.
        let binding = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": { "name": pod.name_any(), "namespace": namespace, "uid": pod.metadata.uid },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node_name },
        });
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        self.metrics.writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pods.create_subresource::<serde_json::Value, serde_json::Value>(
            "binding",
            &pod.name_any(),
            &PostParams::default(),
            &binding,
        )
        .await
        .map_err(api("bind", format!("pod/{key}")))?;
        let mut written = (*pod).clone();
        written.spec.get_or_insert_with(Default::default).node_name = Some(node_name.clone());
        self.pods.apply(written.clone());
        let message = format!("Successfully assigned {key} to {node_name}");
        self.recorder.event(&written, EventType::Normal, "Scheduled", message, SCHEDULER);
        Ok(())
    }

    /// What placing the pod's claims on `node` takes, or why it cannot be.
    fn plan_for_node(
        &self,
        node: &Node,
        claims: &[Arc<PersistentVolumeClaim>],
    ) -> std::result::Result<Vec<Step>, String> {
        let empty = BTreeMap::new();
        let name = node.name_any();
        let facts = NodeFacts { name: &name, labels: node.metadata.labels.as_ref().unwrap_or(&empty) };
        let mut excluded: HashSet<String> = self.reserved.lock().keys().cloned().collect();
        let mut steps = Vec::new();
        for claim in claims {
            let volume_name = claim_volume_name(claim);
            if !volume_name.is_empty() {
                let Some(volume) = self.volumes.get(volume_name) else {
                    return Err("had bound volumes that do not exist yet".into());
                };
                if !matching::check_node_affinity(&volume, facts) {
                    return Err("had volume node affinity conflict".into());
                }
                continue;
            }
            if !self.is_delay_binding(claim) {
                return Err("pod has unbound immediate PersistentVolumeClaims".into());
            }
            if let Some(selected) = claim.annotations().get(ANN_SELECTED_NODE) {
                if *selected != name {
                    return Err(format!("are not the node {selected:?} selected for claim {}", claim.name_any()));
                }
                steps.push(Step::Provision(claim.clone()));
                continue;
            }
            let query = ClaimQuery::new(claim).map_err(|e| e.to_string())?;
            let scope = SearchScope { node: Some(facts), excluded: Some(&excluded), delay_binding: true };
            let index = self.volumes.read();
            let found = matching::find_matching_volume(&query, index.all().map(|v| &**v), scope)
                .and_then(|v| index.get(v.metadata.name.as_deref().unwrap_or("")));
            drop(index);
            if let Some(volume) = found {
                excluded.insert(volume.name_any());
                steps.push(Step::BindStatic(volume, claim.clone()));
                continue;
            }
            let provisionable = self
                .claim_class_object(claim)
                .is_some_and(|c| c.provisioner != NO_PROVISIONER && !c.provisioner.is_empty());
            if !provisionable {
                return Err("didn't find available persistent volumes to bind".into());
            }
            steps.push(Step::Provision(claim.clone()));
        }
        Ok(steps)
    }
}
