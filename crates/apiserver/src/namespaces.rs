//! Namespace lifecycle, as kube-apiserver and the namespace controller share it: deleting a namespace whose
//! `spec.finalizers` holds `kubernetes` marks it Terminating; this controller then deletes everything in it
//! (pods bound to a node go gracefully, through their node agent) and, once it is empty, removes the
//! `kubernetes` finalizer so the namespace itself goes.

use crate::read::get;
use crate::registry::{self, decode_stored, DeleteOptions};
use crate::status::ApiError;
use crate::{dispatch, ApiState};
use k8s_openapi::api::core::v1::Namespace;
use kvol_api::names::FINALIZER_NAMESPACE;
use kvol_api::resources::{by_kind, RESOURCES};
use kvol_store::{Precondition, RangeOptions};
use std::future::Future;
use std::time::Duration;

/// Run until `shutdown` resolves: every second, and on every namespace change, empty and finalize the
/// namespaces being deleted.
pub async fn run_controller(state: ApiState, shutdown: impl Future<Output = ()>) {
    let ns = by_kind("v1", "Namespace").expect("Namespace is served");
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
        }
        let Ok(listed) = state.store.range(&ns.key_prefix(), &RangeOptions::default()) else { continue };
        for kv in listed.kvs {
            let Ok(namespace) = decode_stored::<Namespace>(&kv) else { continue };
            if namespace.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let name = namespace.metadata.name.clone().unwrap_or_default();
            if let Err(e) = finalize(&state, &name).await {
                tracing::warn!(namespace = %name, error = %e, "emptying a terminating namespace failed; will retry");
            }
        }
    }
}

/// Delete what is left in namespace `name`; when nothing is, remove its `kubernetes` finalizer (and with it
/// the namespace, when no other finalizer holds it).
async fn finalize(state: &ApiState, name: &str) -> Result<(), ApiError> {
    let mut remaining = 0;
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let listed = state
            .store
            .range(&resource.namespace_prefix(Some(name)), &RangeOptions::default())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        for kv in listed.kvs {
            remaining += 1;
            let object = kv.key.rsplit('/').next().unwrap_or_default().to_string();
            let result = dispatch!(
                resource.kind,
                registry::delete(state, resource, Some(name), &object, DeleteOptions::default()),
                Err(ApiError::no_route())
            );
            match result {
                Ok(_) => {}
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        // Deleted objects with finalizers or grace periods are still there; check again on the next tick.
        let left: usize = RESOURCES
            .iter()
            .filter(|r| r.namespaced)
            .filter_map(|r| state.store.range(&r.namespace_prefix(Some(name)), &RangeOptions::default()).ok())
            .map(|l| l.kvs.len())
            .sum();
        if left > 0 {
            return Ok(());
        }
    }
    let resource = by_kind("v1", "Namespace").expect("Namespace is served");
    let current = get(state, resource, None, name)?;
    let mut namespace: Namespace = decode_stored(&current)?;
    if let Some(spec) = namespace.spec.as_mut() {
        if let Some(f) = spec.finalizers.as_mut() {
            f.retain(|f| f != FINALIZER_NAMESPACE);
        }
    }
    let held = namespace.metadata.finalizers.as_ref().is_some_and(|f| !f.is_empty())
        || namespace.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| !f.is_empty());
    let key = resource.key(None, name);
    let precondition = Precondition::ModRevision(current.mod_revision);
    if held {
        namespace.metadata.resource_version = None;
        let bytes = serde_json::to_vec(&namespace).map_err(|e| ApiError::internal(e.to_string()))?;
        state.store.put(key, bytes.into(), precondition).await.map_err(|e| registry::store_error(resource, name, e))?;
    } else {
        state.store.delete(key, precondition).await.map_err(|e| registry::store_error(resource, name, e))?;
        tracing::info!(namespace = %name, "namespace deleted");
    }
    Ok(())
}
