//! kvol's volume plugin layer: the traits a volume type implements, the registry the node agent finds
//! plugins in, and the in-tree plugins (emptyDir, hostPath, configMap, secret, nfs, local).
//!
//! Design decision: kubelet's shape, in small role traits. A [`VolumePlugin`] only answers "is this spec
//! mine, and what is it called" and hands out a per-volume [`Mounter`] or [`Unmounter`]; optional
//! capabilities (a usage limit to watch) are reached through `as_…` methods that return `None` by default,
//! so a plugin never implements a method it cannot honour. Plugins do blocking host I/O and never talk to
//! the API server: everything they need from it (ConfigMaps, Secrets) comes through the [`VolumeHost`] the
//! node agent injects. The registry is built explicitly and rejects duplicate names.

pub mod error;
pub mod host;
pub mod mount_root;
pub mod plugin;
pub mod plugins;
pub mod registry;
pub mod spec;

pub use error::{Error, ErrorClass, Result};
pub use host::VolumeHost;
pub use plugin::{
    AttachablePlugin, DeviceMountRef, DeviceVolumePlugin, ExpandablePlugin, LimitedVolume, Mounter, MounterArgs,
    NodeAttachablePlugin, NodeExpandablePlugin, PodRef, Unmounter, VolumePlugin,
};
pub use plugins::{all_plugins, names};
pub use registry::{PluginRegistry, PluginSource};
pub use spec::VolumeSpec;
