//! The FlexVolume exec protocol, shared by kvol's flexVolume plugin (the caller, kubelet's
//! role) and kvol's own drivers (the callee).
//!
//! Every byte a driver sees and every reading of its answer follows Kubernetes'
//! `pkg/volume/flexvolume` code rather than its documentation, where the two differ (argv of
//! `detach`, the `pod.uid` and `mounterArgs.FsGroup` keys, combined stdout+stderr): drivers
//! written for kubelet must run under kvol unchanged. The one deliberate difference is that
//! every call has a time limit and a hung driver's whole process group is killed
//! ([`CallLimits`]); kubelet only limits `waitforattach`, and then kills just the driver.
//!
//! The caller side is async (tokio); the parsing and building parts are plain functions that a
//! driver binary can use without a runtime.

mod call;
mod command;
pub mod discovery;
mod driver;
mod error;
mod gojson;
mod options;
mod probe;
mod status;

pub use call::DriverCall;
pub use command::Command;
pub use driver::{CallLimits, Driver};
pub use error::{Error, Result};
pub use gojson::marshal_string_map;
pub use options::{
    mount_extra_options, options_for_driver, parse_options_json, DriverOptions, MountArgs, OptionKey, PodInfo,
    VolumeSpec, SECRET_KEY_PREFIX,
};
pub use probe::{PluginDirWatcher, ProbeEvent, ProbeOp};
pub use status::{DriverCapabilities, DriverStatus, STATUS_FAILURE, STATUS_NOT_SUPPORTED, STATUS_SUCCESS};
