//! The sidecar's settings, with kubernetes-csi's defaults.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use kvol_runtime::Backoff;

/// A controller-side role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// external-provisioner: CreateVolume/DeleteVolume for claims and released volumes.
    Provisioner,
    /// external-attacher: ControllerPublish/Unpublish for VolumeAttachments.
    Attacher,
    /// external-resizer: ControllerExpandVolume for grown claims.
    Resizer,
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s.trim() {
            "provisioner" => Ok(Role::Provisioner),
            "attacher" => Ok(Role::Attacher),
            "resizer" => Ok(Role::Resizer),
            other => Err(format!("unknown role {other:?} (expected provisioner, attacher or resizer)")),
        }
    }
}

/// Parses `provisioner,attacher,resizer`.
pub fn parse_roles(s: &str) -> Result<BTreeSet<Role>, String> {
    let roles: BTreeSet<Role> =
        s.split(',').filter(|r| !r.trim().is_empty()).map(Role::from_str).collect::<Result<_, _>>()?;
    if roles.is_empty() {
        return Err("no role given".into());
    }
    Ok(roles)
}

/// What [`crate::run_sidecar`] runs and how.
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// The driver's endpoint (`unix:///path/csi.sock` or a path).
    pub csi_address: String,
    /// The roles to run.
    pub roles: BTreeSet<Role>,
    /// Per-call timeout for driver calls (external-provisioner `--timeout`: 10 s; attacher 15 s).
    pub timeout: Duration,
    /// How long to wait for the driver to answer GetPluginInfo at start.
    pub driver_wait: Duration,
    /// Workers per role (kubernetes-csi `--worker-threads`; the library's threadiness is 4).
    pub workers: usize,
    /// Retry backoff of a failed claim (the library: 15 s … 1000 s).
    pub provision_backoff: Backoff,
    /// Failures of a claim after which it is given up (the library: 15; 0 = never).
    pub failed_provision_threshold: u32,
    /// Failures of a deletion after which it is given up (the library: 15; 0 = never).
    pub failed_delete_threshold: u32,
    /// How often creating the PV for a created volume is tried before the volume is deleted again
    /// (the library: 5).
    pub create_pv_retries: u32,
    /// Pause between those tries (the library: 10 s).
    pub create_pv_interval: Duration,
    /// Retry backoff of a VolumeAttachment (external-attacher: 1 s … 5 min).
    pub attach_backoff: Backoff,
    /// Retry backoff of an expansion (external-resizer: 1 s … 5 min).
    pub resize_backoff: Backoff,
    /// Every object is looked at again this often (kubernetes-csi: 15 min provisioner, 10 min attacher).
    pub resync: Duration,
    /// Events' source component suffix: `<driver>_<identity>`, as external-provisioner names it.
    pub identity: String,
}

impl SidecarConfig {
    /// external-provisioner's, external-attacher's and external-resizer's defaults for `csi_address` and
    /// `roles`: retries from 1 s doubling to 5 min, never given up (`FailedProvisionThreshold(0)`,
    /// `FailedDeleteThreshold(0)`).
    pub fn new(csi_address: impl Into<String>, roles: BTreeSet<Role>) -> SidecarConfig {
        SidecarConfig {
            csi_address: csi_address.into(),
            roles,
            timeout: Duration::from_secs(10),
            driver_wait: Duration::from_secs(60),
            workers: 4,
            provision_backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300) },
            failed_provision_threshold: 0,
            failed_delete_threshold: 0,
            create_pv_retries: 5,
            create_pv_interval: Duration::from_secs(10),
            attach_backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300) },
            resize_backoff: Backoff { base: Duration::from_secs(1), max: Duration::from_secs(300) },
            resync: Duration::from_secs(15 * 60),
            identity: hostname(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "kvol".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_role_lists_and_names_the_bad_one() {
        assert_eq!(parse_roles("provisioner, attacher").unwrap(), BTreeSet::from([Role::Provisioner, Role::Attacher]));
        assert!(parse_roles("provisioner,snapshotter").unwrap_err().contains("snapshotter"));
        assert!(parse_roles("").is_err());
    }
}
