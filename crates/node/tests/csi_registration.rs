//! kubelet's plugin registration, against a real API server: the real `kvol-csi` driver (loop backend)
//! announced by kvol's node-driver-registrar is registered in the driver registry, the CSINode object and
//! the Node (annotation and topology label), and unregistered when the registrar's socket goes; a plugin
//! with an unsupported version is refused through NotifyRegistrationStatus. Needs a built driver
//! (`cargo build -p kvol-csi-driver`); skips with a message otherwise.

mod util;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::CSINode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use kube::Api;
use kvol_csi::pluginregistration::registration_server::{Registration, RegistrationServer};
use kvol_csi::pluginregistration::{InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse};
use kvol_node::csinode::NODE_ID_ANNOTATION;
use kvol_node::plugin_watcher::{registry_dir, run_plugin_watcher};
use kvol_volume::plugins::csi::{CsiDrivers, RegistrationEvent};
use util::*;

const DRIVER: &str = "csi.kvol.io";
const TOPOLOGY_KEY: &str = "topology.csi.kvol.io/node";
const T: Duration = Duration::from_secs(15);

fn driver_binary() -> PathBuf {
    std::env::var_os("KVOL_CSI_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/kvol-csi"))
}

/// The driver process; killed on drop.
struct DriverProcess(Child);

impl Drop for DriverProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver(work: &Path) -> Result<(DriverProcess, PathBuf)> {
    let pool = work.join("pool");
    std::fs::create_dir_all(&pool)?;
    let socket = work.join("csi.sock");
    let log = std::fs::File::create(work.join("driver.log"))?;
    let child = Command::new(driver_binary())
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .args(["--nodeid", NODE, "--backend", "loop", "--pool"])
        .arg(&pool)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting kvol-csi")?;
    Ok((DriverProcess(child), socket))
}

/// A registration server that answers GetInfo with `info` and records what it is told.
struct FakePlugin {
    info: PluginInfo,
    statuses: Arc<Mutex<Vec<RegistrationStatus>>>,
}

#[tonic::async_trait]
impl Registration for FakePlugin {
    async fn get_info(&self, _: tonic::Request<InfoRequest>) -> Result<tonic::Response<PluginInfo>, tonic::Status> {
        Ok(tonic::Response::new(self.info.clone()))
    }
    async fn notify_registration_status(
        &self,
        req: tonic::Request<RegistrationStatus>,
    ) -> Result<tonic::Response<RegistrationStatusResponse>, tonic::Status> {
        self.statuses.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(RegistrationStatusResponse {}))
    }
}

fn csi_drivers_of(csinode: &Option<CSINode>) -> Vec<(String, String, Vec<String>)> {
    csinode
        .as_ref()
        .map(|c| {
            c.spec
                .drivers
                .iter()
                .map(|d| (d.name.clone(), d.node_id.clone(), d.topology_keys.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_driver_appears_in_csinode_and_the_node_and_goes_with_its_socket() -> Result<()> {
    if !driver_binary().exists() {
        eprintln!("SKIP: {} is missing: run `cargo build -p kvol-csi-driver` first", driver_binary().display());
        return Ok(());
    }
    let cluster = Cluster::start().await?;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let csinodes: Api<CSINode> = Api::all(cluster.client.clone());
    let labels = BTreeMap::from([("kubernetes.io/hostname".to_string(), NODE.to_string())]);
    nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: ObjectMeta { name: Some(NODE.into()), labels: Some(labels), ..Default::default() },
                ..Default::default()
            },
        )
        .await?;
    let work = cluster.work("driver");
    let (_driver, driver_socket) = start_driver(&work)?;

    let root = cluster.root();
    let drivers = CsiDrivers::new();
    let events: Arc<Mutex<Vec<RegistrationEvent>>> = Arc::default();
    let (stop_watcher, watcher_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn({
        let (client, drivers, events) = (cluster.client.clone(), Arc::clone(&drivers), Arc::clone(&events));
        let root = root.clone();
        async move {
            run_plugin_watcher(client, NODE.into(), root, drivers, move |e| events.lock().unwrap().push(e), async {
                let _ = watcher_stopped.await;
            })
            .await
        }
    });
    let registry = registry_dir(&root);
    eventually("the registry directory", T, || registry.is_dir()).await?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&registry)?.permissions());
    ensure!(mode & 0o777 == 0o750, "plugins_registry mode {mode:o}");

    // node-driver-registrar, as kvol runs it.
    let mut config = kvol_csi_sidecar::RegistrarConfig::new(
        format!("unix://{}", driver_socket.display()),
        driver_socket.to_string_lossy().into_owned(),
    );
    config.plugin_registration_path = registry.clone();
    config.driver_wait = Duration::from_secs(10);
    let (stop_registrar, registrar_stopped) = tokio::sync::oneshot::channel::<()>();
    let registrar = tokio::spawn(kvol_csi_sidecar::run_registrar(config, async {
        let _ = registrar_stopped.await;
    }));

    // The event comes last, once the driver is in the registry, the CSINode and the Node.
    eventually("the driver's registration", T, || !events.lock().unwrap().is_empty()).await?;
    let info = drivers.get(DRIVER).context("registered")?;
    ensure!(info.node_id == NODE, "{info:?}");
    ensure!(info.topology.get(TOPOLOGY_KEY).map(String::as_str) == Some(NODE), "{info:?}");
    ensure!(info.endpoint == driver_socket.to_string_lossy(), "{info:?}");
    ensure!(matches!(events.lock().unwrap().as_slice(), [RegistrationEvent::Registered(i)] if i.name == DRIVER));

    let csinode = csinodes.get_opt(NODE).await?;
    ensure!(
        csi_drivers_of(&csinode) == vec![(DRIVER.to_string(), NODE.to_string(), vec![TOPOLOGY_KEY.to_string()])],
        "CSINode: {csinode:?}"
    );
    let owner = &csinode.as_ref().unwrap().metadata.owner_references.as_ref().context("owner references")?[0];
    ensure!(owner.kind == "Node" && owner.name == NODE, "{owner:?}");
    let node = nodes.get(NODE).await?;
    let annotation = node.metadata.annotations.as_ref().and_then(|a| a.get(NODE_ID_ANNOTATION)).cloned();
    let ids: BTreeMap<String, String> = serde_json::from_str(annotation.as_deref().unwrap_or("{}"))?;
    ensure!(ids == BTreeMap::from([(DRIVER.to_string(), NODE.to_string())]), "annotation {annotation:?}");
    let node_labels = node.metadata.labels.clone().unwrap_or_default();
    ensure!(node_labels.get(TOPOLOGY_KEY).map(String::as_str) == Some(NODE), "labels {node_labels:?}");
    ensure!(node_labels.get("kubernetes.io/hostname").map(String::as_str) == Some(NODE), "other labels kept");

    // A plugin with only CSI 0.x is refused, and told why.
    let statuses: Arc<Mutex<Vec<RegistrationStatus>>> = Arc::default();
    let fake = FakePlugin {
        info: PluginInfo {
            r#type: "CSIPlugin".into(),
            name: "old.csi.example".into(),
            endpoint: work.join("old.sock").to_string_lossy().into_owned(),
            supported_versions: vec!["0.3.0".into()],
        },
        statuses: Arc::clone(&statuses),
    };
    let (stop_fake, fake_stopped) = tokio::sync::oneshot::channel::<()>();
    let fake_socket = registry.join("old.csi.example-reg.sock");
    let fake_server = tokio::spawn({
        let router = tonic::transport::Server::builder().add_service(RegistrationServer::new(fake));
        let path = fake_socket.clone();
        async move {
            kvol_csi::serve_unix(&path, router, async {
                let _ = fake_stopped.await;
            })
            .await
        }
    });
    eventually("the refusal", T, || !statuses.lock().unwrap().is_empty()).await?;
    {
        let statuses = statuses.lock().unwrap();
        ensure!(!statuses[0].plugin_registered, "{statuses:?}");
        ensure!(statuses[0].error.contains("validation failed"), "{statuses:?}");
    }
    ensure!(drivers.get("old.csi.example").is_none());
    let _ = stop_fake.send(());
    fake_server.await??;

    // The registrar stops: its socket goes, and so does the driver's registration.
    let _ = stop_registrar.send(());
    registrar.await??;
    eventually("the driver's unregistration", T, || events.lock().unwrap().len() == 2).await?;
    ensure!(drivers.get(DRIVER).is_none());
    ensure!(
        matches!(events.lock().unwrap().last(), Some(RegistrationEvent::Unregistered { name }) if name == DRIVER),
        "{:?}",
        events.lock().unwrap()
    );
    let csinode = csinodes.get_opt(NODE).await?;
    ensure!(csi_drivers_of(&csinode).is_empty(), "CSINode after unregistration: {csinode:?}");
    let node = nodes.get(NODE).await?;
    ensure!(
        !node.metadata.annotations.unwrap_or_default().contains_key(NODE_ID_ANNOTATION),
        "the node ID annotation goes with the last driver"
    );

    let _ = stop_watcher.send(());
    watcher.await??;
    Ok(())
}
