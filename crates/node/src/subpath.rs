//! subPath and subPathExpr (kubelet's `makeMounts` and `subpath_linux.go`): the part of a volume a
//! container mounts is bound, symlink-safely, to `<pod>/volume-subpaths/<volume>/<container>/<index>`
//! before the container would start, and unbound before the volume is torn down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, VolumeMount};
use kvol_mount::Mounter as HostMounter;

use crate::error::{Error, Result};

/// Every container (init containers first) with its volumeMounts, as kubelet walks them.
pub fn containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let init = spec.and_then(|s| s.init_containers.as_deref()).unwrap_or_default();
    let main = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    init.iter().chain(main.iter())
}

/// `(container, index in its volumeMounts, mount)` of every mount with a subPath or subPathExpr.
pub fn subpath_mounts(pod: &Pod) -> impl Iterator<Item = (&Container, usize, &VolumeMount)> {
    containers(pod).flat_map(|c| {
        c.volume_mounts.as_deref().unwrap_or_default().iter().enumerate().filter_map(move |(i, m)| {
            let has = m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty());
            has.then_some((c, i, m))
        })
    })
}

/// The container's environment as subPathExpr sees it: literal values and the pod fields of the downward
/// API that are known on the node.
fn environment(pod: &Pod, container: &Container) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for e in container.env.as_deref().unwrap_or_default() {
        let value = if let Some(v) = &e.value {
            Some(v.clone())
        } else if let Some(field) = e.value_from.as_ref().and_then(|f| f.field_ref.as_ref()) {
            let meta = &pod.metadata;
            match field.field_path.as_str() {
                "metadata.name" => meta.name.clone(),
                "metadata.namespace" => meta.namespace.clone(),
                "metadata.uid" => meta.uid.clone(),
                "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                "spec.serviceAccountName" => pod.spec.as_ref().and_then(|s| s.service_account_name.clone()),
                _ => None,
            }
        } else {
            None
        };
        if let Some(v) = value {
            env.insert(e.name.clone(), v);
        }
    }
    env
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$$` is a literal `$`, an unknown
/// variable stays as written.
pub fn expand(input: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The sub path a mount asks for, expanded.
pub fn sub_path_of(pod: &Pod, container: &Container, mount: &VolumeMount) -> Result<String> {
    if let Some(expr) = mount.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
        let expanded = expand(expr, &environment(pod, container));
        kvol_mount::validate_sub_path(&expanded).map_err(|e| Error::SubPath {
            volume: mount.name.clone(),
            container: container.name.clone(),
            reason: e.to_string(),
        })?;
        return Ok(expanded);
    }
    Ok(mount.sub_path.clone().unwrap_or_default())
}

/// Sets up every subPath bind of `pod`; `volume_paths` maps the pod's volume names to their host paths.
/// Idempotent (a bind of the same file is left alone).
pub fn set_up(
    mounter: &dyn HostMounter,
    root: &Path,
    pod: &Pod,
    volume_paths: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    for (container, index, mount) in subpath_mounts(pod) {
        let err =
            |reason: String| Error::SubPath { volume: mount.name.clone(), container: container.name.clone(), reason };
        let volume_path = volume_paths.get(&mount.name).ok_or_else(|| err("the volume is not mounted".to_string()))?;
        let sub_path = sub_path_of(pod, container, mount)?;
        kvol_mount::validate_sub_path(&sub_path).map_err(|e| err(e.to_string()))?;
        // kubelet creates a missing subPath as a directory with the volume root's mode, without following
        // symlinks, so that the container does not get a root-owned 0755 one from the runtime.
        let mode = std::fs::metadata(volume_path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o750);
        if let Err(e) = kvol_mount::VerifiedPath::open(volume_path, &sub_path) {
            if e.raw_os_error() == Some(libc::ENOENT) {
                kvol_mount::safe_make_dir(volume_path, &sub_path, mode).map_err(|e| err(e.to_string()))?;
            } else {
                return Err(err(e.to_string()));
            }
        }
        let target = kvol_mount::paths::pod_volume_subpath_dir(root, uid, &mount.name, &container.name, index);
        kvol_mount::bind_subpath(mounter, volume_path, &sub_path, &target).map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

/// Unbinds and removes every subPath of a pod (kubelet's `CleanSubPaths` for each volume). Idempotent.
pub fn clean(mounter: &dyn HostMounter, root: &Path, uid: &str) -> Result<()> {
    let pod_dir = kvol_mount::paths::pod_dir(root, uid);
    let dir = kvol_mount::paths::pod_volume_subpaths_dir(root, uid);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::ReadDir { path: dir, source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::ReadDir { path: dir.clone(), source })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        kvol_mount::clean_subpaths(mounter, &pod_dir, &name)?;
    }
    match std::fs::remove_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::RemovePodDir { path: dir, source: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_like_kubernetes() {
        let env: BTreeMap<String, String> = [("POD".to_string(), "web-0".to_string())].into();
        assert_eq!(expand("logs/$(POD)", &env), "logs/web-0");
        assert_eq!(expand("$$(POD)/$(NOPE)", &env), "$(POD)/$(NOPE)");
        assert_eq!(expand("a$b$(", &env), "a$b$(");
    }
}
