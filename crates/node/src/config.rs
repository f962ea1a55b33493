//! How the agent is set up (kubelet's flags of the same names).

use std::path::PathBuf;
use std::time::Duration;

/// kubelet's default `--volume-plugin-dir`.
pub const DEFAULT_VOLUME_PLUGIN_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";

/// The root under kvol's data directory when `--root-dir` is not given.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kvol/kubelet";

/// The agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `--node-name`: the Node object this agent registers and whose pods it serves.
    pub node_name: String,
    /// `--root-dir`: `<root>/pods/<uid>/volumes/…` (`/var/lib/kubelet` gives kubelet's paths).
    pub root_dir: PathBuf,
    /// How long a pod may wait for its volumes before the "Unable to attach or mount volumes" event
    /// (kubelet's `podAttachAndMountTimeout`, 2m3s).
    pub mount_timeout: Duration,
    /// The reconciler's period when nothing wakes it (kubelet's `reconcilerLoopSleepPeriod`, 100 ms).
    pub reconcile_period: Duration,
    /// Node status heartbeat (kubelet's `nodeStatusUpdateFrequency`, 10 s).
    pub heartbeat_period: Duration,
    /// How often emptyDir usage is checked against `sizeLimit` (kubelet's eviction monitoring, 10 s).
    pub usage_check_period: Duration,
    /// Delete terminating pods (gracePeriodSeconds=0) once their volumes are torn down, as kubelet does.
    pub delete_terminated_pods: bool,
    /// `--enable-controller-attach-detach`: the attach/detach controller attaches this node's volumes
    /// (true, kubelet's default); false makes the agent attach and detach them itself.
    pub controller_attach_detach: bool,
    /// `--volume-plugin-dir`: where FlexVolume drivers are found (`vendor~driver/driver`); `None` disables
    /// FlexVolume.
    pub volume_plugin_dir: Option<PathBuf>,
    /// Time limits of FlexVolume driver calls (kubelet has none but `waitforattach`'s; a hung driver is
    /// killed with its process group at its limit).
    pub flex_limits: kvol_flex::CallLimits,
    /// Environment variables added to every FlexVolume driver call (drivers otherwise inherit the agent's),
    /// e.g. a driver's state directory when several agents share one machine.
    pub flex_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// kubelet's `--address` and `--read-only-port`: where `/healthz` and `/stats/summary` are served over
    /// plain HTTP, without authentication (port 0 picks a free one). The bound port is reported as the
    /// Node's kubelet endpoint, so the API server's node proxy reaches it. `None` serves nothing (kubelet's
    /// `--read-only-port=0`).
    pub read_only_address: Option<std::net::SocketAddr>,
}

impl AgentConfig {
    /// Defaults for `node_name` and `root_dir`.
    pub fn new(node_name: impl Into<String>, root_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            node_name: node_name.into(),
            root_dir: root_dir.into(),
            mount_timeout: Duration::from_secs(123),
            reconcile_period: Duration::from_millis(100),
            heartbeat_period: Duration::from_secs(10),
            usage_check_period: Duration::from_secs(10),
            delete_terminated_pods: true,
            controller_attach_detach: true,
            volume_plugin_dir: None,
            flex_limits: kvol_volume::plugins::flexvolume::FlexConfig::default_limits(),
            flex_env: Vec::new(),
            read_only_address: None,
        }
    }
}
