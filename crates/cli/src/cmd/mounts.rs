//! `kvol mounts POD [-n NS] [-c CONTAINER] --format oci|docker`: a container's volume mounts as a
//! container runtime takes them — OCI runtime-spec `mounts` JSON, or `docker run -v` flags — computed
//! from the pod, its claims and the agent's directory layout (subPath binds, read-only, propagation).

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OCI runtime-spec `mounts` (JSON).
    Oci,
    /// `docker run -v SRC:DST[:ro][,rslave]` flags.
    Docker,
}

#[derive(clap::Args)]
pub struct Args {
    /// The pod.
    pod: String,
    /// The container (default: the pod's first container).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "oci")]
    format: Format,
    /// The agent's root directory (default: <data-dir>/kubelet, as `kvol agent` and `kvol server` use).
    #[arg(long)]
    root_dir: Option<PathBuf>,
    #[command(flatten)]
    connect: crate::client::ConnectArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let kubeconfig = args
            .connect
            .kubeconfig
            .clone()
            .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
            .unwrap_or_else(|| args.connect.data_dir.join("kubeconfig"));
        let client = crate::client::client_from_kubeconfig(&kubeconfig).await?;
        let namespace = args.connect.namespace.clone().unwrap_or_else(|| client.default_namespace().to_string());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let pod = pods.get(&args.pod).await.with_context(|| format!("getting pod {namespace}/{}", args.pod))?;
        let container = match &args.container {
            Some(c) => c.clone(),
            None => pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone()).unwrap_or_default(),
        };
        let root = args.root_dir.clone().unwrap_or_else(|| args.connect.data_dir.join("kubelet"));
        let registry = kvol_volume::PluginRegistry::with(kvol_volume::all_plugins())?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut volumes = BTreeMap::new();
        for (name, spec) in kvol_node::populator::volume_specs(&client, &pod).await {
            match spec {
                Ok(spec) => {
                    volumes.insert(name, kvol_node::volume_path(&root, &uid, &registry, &spec)?);
                }
                Err(e) => bail!("volume {name:?}: {e}"),
            }
        }
        let mounts = kvol_node::container_mounts(&root, &pod, &container, &volumes)?;
        let devices = kvol_node::container_devices(&pod, &container, &volumes)?;
        match args.format {
            Format::Oci if devices.is_empty() => {
                println!("{}", serde_json::to_string_pretty(&kvol_node::to_oci(&mounts))?)
            }
            // Raw block volumes are devices, not mounts: runtime-spec's `linux.devices` (and the cgroup
            // rule that lets the container use them).
            Format::Oci => {
                let oci = serde_json::json!({
                    "mounts": kvol_node::to_oci(&mounts),
                    "linux": { "devices": oci_devices(&devices)? },
                });
                println!("{}", serde_json::to_string_pretty(&oci)?)
            }
            Format::Docker => {
                let mut flags = kvol_node::to_docker(&mounts);
                flags.extend(kvol_node::devices_to_docker(&devices));
                println!("{}", flags.join(" "))
            }
        }
        Ok(())
    })
}

/// runtime-spec `linux.devices` entries for the pod's block devices: the device numbers come from the
/// device node the pod's link resolves to.
fn oci_devices(devices: &[kvol_node::ContainerDevice]) -> anyhow::Result<Vec<serde_json::Value>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    devices
        .iter()
        .map(|d| {
            let meta = std::fs::metadata(&d.path_on_host)
                .with_context(|| format!("the block device of {}", d.path_on_host.display()))?;
            if !meta.file_type().is_block_device() {
                bail!("{} is not a block device", d.path_on_host.display());
            }
            let rdev = meta.rdev();
            Ok(serde_json::json!({
                "path": d.path_in_container,
                "type": "b",
                "major": nix::sys::stat::major(rdev),
                "minor": nix::sys::stat::minor(rdev),
                "fileMode": meta.mode() & 0o7777,
                "uid": 0,
                "gid": 0,
            }))
        })
        .collect()
}
