//! Test fixtures: a node in a temp dir (plugin dir, kubelet root), bash drivers that record their
//! argv, a host with secrets and pods, a multi-thread runtime for the plugins to block on, and a cleanup
//! that unmounts whatever a test left mounted under the temp dir, even when it fails.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, FlexPersistentVolumeSource, FlexVolumeSource, LocalObjectReference, PersistentVolume,
    PersistentVolumeSpec, Pod, PodSpec, Secret, SecretReference, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use parking_lot::Mutex;

use super::{FlexConfig, FlexVolumePlugin};
use crate::error::Result;
use crate::host::VolumeHost;
use crate::plugin::PodRef;
use crate::spec::VolumeSpec;

/// A host backed by a temp dir and the real mounter, with secrets and pods set by the test.
pub(crate) struct TestHost {
    pub root: PathBuf,
    pub secrets: Mutex<BTreeMap<(String, String), Secret>>,
    pub pods: Mutex<BTreeMap<(String, String), Pod>>,
}

impl VolumeHost for TestHost {
    fn root_dir(&self) -> &Path {
        &self.root
    }
    fn mounter(&self) -> Arc<dyn kvol_mount::Mounter> {
        Arc::new(kvol_mount::RealMounter::new())
    }
    fn config_map(&self, _namespace: &str, _name: &str) -> Result<Option<ConfigMap>> {
        Ok(None)
    }
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>> {
        Ok(self.secrets.lock().get(&(namespace.to_owned(), name.to_owned())).cloned())
    }
    fn node_name(&self) -> &str {
        "node1"
    }
    fn pod(&self, namespace: &str, name: &str) -> Result<Option<Pod>> {
        Ok(self.pods.lock().get(&(namespace.to_owned(), name.to_owned())).cloned())
    }
}

/// A node in a temp dir. Dropping it unmounts everything mounted beneath it.
pub(crate) struct Node {
    pub tmp: tempfile::TempDir,
    pub config: FlexConfig,
    pub host: Arc<TestHost>,
    pub rt: tokio::runtime::Runtime,
}

impl Node {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new().prefix("kvol-flexvolume-test.").tempdir().unwrap();
        let config = FlexConfig::new(tmp.path().join("exec"));
        std::fs::create_dir_all(&config.plugin_dir).unwrap();
        let host = Arc::new(TestHost {
            root: tmp.path().join("kubelet"),
            secrets: Mutex::new(BTreeMap::new()),
            pods: Mutex::new(BTreeMap::new()),
        });
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Node { tmp, config, host, rt }
    }

    pub fn host(&self) -> Arc<dyn VolumeHost> {
        self.host.clone()
    }

    /// Installs a bash driver as `<dir_name>/<exe>`: it appends its argv (fields separated by 0x1f) to
    /// `<tmp>/calls`, then runs `body` with `$STATE` set to the temp dir.
    pub fn install(&self, dir_name: &str, body: &str) -> PathBuf {
        let exe_name = dir_name.rsplit('~').next().unwrap();
        let dir = self.config.plugin_dir.join(dir_name);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp_exe = dir.join(format!(".{exe_name}"));
        let script = format!(
            "#!/bin/bash\nSTATE='{}'\n(IFS=$'\\x1f'; echo \"$*\") >> \"$STATE/calls\"\n{body}\n",
            self.tmp.path().display()
        );
        std::fs::write(&tmp_exe, script).unwrap();
        std::fs::set_permissions(&tmp_exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join(exe_name);
        std::fs::rename(&tmp_exe, &exe).unwrap();
        exe
    }

    /// Loads the driver in `dir_name` (runs its `init`).
    pub fn plugin(&self, dir_name: &str) -> FlexVolumePlugin {
        self.rt.block_on(FlexVolumePlugin::init(&self.config, dir_name, self.rt.handle().clone())).unwrap()
    }

    /// Every recorded call, as argv lists.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.tmp.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\x1f').map(str::to_owned).collect())
            .collect()
    }

    /// The recorded calls of `command`.
    pub fn calls_of(&self, command: &str) -> Vec<Vec<String>> {
        self.calls().into_iter().filter(|c| c[0] == command).collect()
    }

    /// Mount points beneath the temp dir.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.tmp.path())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let left = self.mounts();
        if std::thread::panicking() {
            eprintln!("work dir: {}", self.tmp.path().display());
            for m in &left {
                eprintln!("  left mounted: {}", m.display());
            }
            eprintln!("  calls: {:?}", self.calls());
        }
        for m in left.into_iter().rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4).map(|mp| PathBuf::from(mp.replace("\\040", " "))))
        .filter(|mp| mp.starts_with(dir))
        .collect()
}

/// Whether the tests can mount (root).
pub(crate) fn can_mount(test: &str) -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("SKIP {test}: needs root (mounts)");
    }
    root
}

/// The pod the tests mount for.
pub(crate) fn pod_ref() -> PodRef {
    PodRef { uid: "uid-1".into(), namespace: "default".into(), name: "nginx-flex".into() }
}

/// An inline flexVolume of `driver`.
pub(crate) fn inline(name: &str, driver: &str, options: &[(&str, &str)]) -> VolumeSpec {
    VolumeSpec::Inline(Box::new(Volume {
        name: name.into(),
        flex_volume: Some(FlexVolumeSource {
            driver: driver.into(),
            fs_type: Some("ext4".into()),
            options: Some(options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            read_only: None,
            secret_ref: None,
        }),
        ..Default::default()
    }))
}

/// An inline flexVolume with a `secretRef`.
pub(crate) fn inline_with_secret(name: &str, driver: &str, secret: &str) -> VolumeSpec {
    let VolumeSpec::Inline(mut v) = inline(name, driver, &[]) else { unreachable!() };
    v.flex_volume.as_mut().unwrap().secret_ref = Some(LocalObjectReference { name: secret.into() });
    VolumeSpec::Inline(v)
}

/// A PV with a flexVolume source, claimed `read_only` or not.
pub(crate) fn persistent(
    name: &str,
    driver: &str,
    options: &[(&str, &str)],
    secret: Option<(&str, &str)>,
    read_only: bool,
) -> VolumeSpec {
    VolumeSpec::Persistent {
        pv: Box::new(PersistentVolume {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PersistentVolumeSpec {
                flex_volume: Some(FlexPersistentVolumeSource {
                    driver: driver.into(),
                    fs_type: Some("xfs".into()),
                    options: Some(options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                    read_only: Some(false),
                    secret_ref: secret.map(|(ns, n)| SecretReference {
                        name: Some(n.into()),
                        namespace: (!ns.is_empty()).then(|| ns.into()),
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }),
        read_only,
    }
}

/// A secret of `type_` with `data`.
pub(crate) fn secret(type_: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        type_: Some(type_.into()),
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Default::default()
    }
}

/// A pod with a service account.
pub(crate) fn pod(service_account: &str) -> Pod {
    Pod {
        spec: Some(PodSpec { service_account_name: Some(service_account.into()), ..Default::default() }),
        ..Default::default()
    }
}

/// Waits until `f` holds, up to `limit`.
pub(crate) fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
