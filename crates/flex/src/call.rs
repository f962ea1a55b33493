//! `DriverCall`: one driver invocation's argv, built exactly as kubelet and the controller
//! manager build it (`attacher.go`, `detacher.go`, `mounter.go`, `unmounter.go`, `expander.go`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gojson::marshal_string_map;
use crate::options::{mount_extra_options, options_for_driver, MountArgs, VolumeSpec};
use crate::Command;

/// One call to a driver: the command, its arguments after the command, an optional time limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverCall {
    command: Command,
    args: Vec<String>,
    timeout: Option<Duration>,
}

impl DriverCall {
    /// A call with no arguments yet; `argv[1]` is the command name.
    pub fn new(command: Command) -> Self {
        DriverCall { command, args: vec![command.as_str().to_owned()], timeout: None }
    }

    /// Appends one argument (`DriverCall.Append`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends the options JSON built from `spec` and `extra` (`DriverCall.AppendSpec`).
    pub fn spec(self, spec: &VolumeSpec, extra: BTreeMap<String, String>) -> Self {
        let json = marshal_string_map(&options_for_driver(spec, extra));
        self.arg(json)
    }

    /// Overrides the driver's time limit for this call.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The command.
    pub fn command(&self) -> Command {
        self.command
    }

    /// The arguments after the executable: `[command, ...]`.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// This call's own time limit, if one was set.
    pub fn time_limit(&self) -> Option<Duration> {
        self.timeout
    }

    /// `init`.
    pub fn init() -> Self {
        Self::new(Command::Init)
    }

    /// `getvolumename <json>` (kubelet ignores the answer).
    pub fn get_volume_name(spec: &VolumeSpec) -> Self {
        Self::new(Command::GetVolumeName).spec(spec, BTreeMap::new())
    }

    /// `attach <json> <node>`; no secrets are passed.
    pub fn attach(spec: &VolumeSpec, node: &str) -> Self {
        Self::new(Command::Attach).spec(spec, BTreeMap::new()).arg(node)
    }

    /// `waitforattach <device> <json>`.
    pub fn wait_for_attach(device_path: &str, spec: &VolumeSpec) -> Self {
        Self::new(Command::WaitForAttach).arg(device_path).spec(spec, BTreeMap::new())
    }

    /// `isattached <json> <node>` (current kubelet order: options, then node).
    pub fn is_attached(spec: &VolumeSpec, node: &str) -> Self {
        Self::new(Command::IsAttached).spec(spec, BTreeMap::new()).arg(node)
    }

    /// `mountdevice <device mount path> <device> <json>`.
    pub fn mount_device(device_mount_path: &str, device_path: &str, spec: &VolumeSpec) -> Self {
        Self::new(Command::MountDevice).arg(device_mount_path).arg(device_path).spec(spec, BTreeMap::new())
    }

    /// `detach <volume name> <node>`: the PV or volume name, not a device (the docs are wrong).
    pub fn detach(volume_name: &str, node: &str) -> Self {
        Self::new(Command::Detach).arg(volume_name).arg(node)
    }

    /// `unmountdevice <device mount path>`.
    pub fn unmount_device(device_mount_path: &str) -> Self {
        Self::new(Command::UnmountDevice).arg(device_mount_path)
    }

    /// `mount <pod volume dir> <json>` with pod metadata, secrets and fsGroup in the options.
    pub fn mount(target_dir: &str, spec: &VolumeSpec, args: &MountArgs) -> Self {
        Self::new(Command::Mount).arg(target_dir).spec(spec, mount_extra_options(args))
    }

    /// `unmount <pod volume dir>`.
    pub fn unmount(target_dir: &str) -> Self {
        Self::new(Command::Unmount).arg(target_dir)
    }

    /// `expandvolume <json> <device mount path> <new size> <old size>` (sizes in bytes).
    pub fn expand_volume(spec: &VolumeSpec, device_mount_path: &str, new_size: i64, old_size: i64) -> Self {
        Self::new(Command::ExpandVolume)
            .spec(spec, BTreeMap::new())
            .arg(device_mount_path)
            .arg(new_size.to_string())
            .arg(old_size.to_string())
    }

    /// `expandfs <json> <device> <device mount path> <new size> <old size>` (sizes in bytes).
    pub fn expand_fs(
        spec: &VolumeSpec,
        device_path: &str,
        device_mount_path: &str,
        new_size: i64,
        old_size: i64,
    ) -> Self {
        Self::new(Command::ExpandFs)
            .spec(spec, BTreeMap::new())
            .arg(device_path)
            .arg(device_mount_path)
            .arg(new_size.to_string())
            .arg(old_size.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::PodInfo;

    fn spec() -> VolumeSpec {
        VolumeSpec {
            name: "vol1".into(),
            fs_type: "ext4".into(),
            read_only: false,
            options: [("volumeID".to_owned(), "v".to_owned())].into(),
        }
    }

    const JSON: &str = r#"{"kubernetes.io/fsType":"ext4","kubernetes.io/pvOrVolumeName":"vol1","kubernetes.io/readwrite":"rw","volumeID":"v"}"#;

    struct Case {
        call: DriverCall,
        argv: Vec<&'static str>,
    }

    #[test]
    fn every_call_has_kubelets_argv() {
        let cases = vec![
            Case { call: DriverCall::init(), argv: vec!["init"] },
            Case { call: DriverCall::get_volume_name(&spec()), argv: vec!["getvolumename", JSON] },
            Case { call: DriverCall::attach(&spec(), "node1"), argv: vec!["attach", JSON, "node1"] },
            Case {
                call: DriverCall::wait_for_attach("/dev/loop3", &spec()),
                argv: vec!["waitforattach", "/dev/loop3", JSON],
            },
            Case { call: DriverCall::is_attached(&spec(), "node1"), argv: vec!["isattached", JSON, "node1"] },
            Case {
                call: DriverCall::mount_device("/g", "/dev/loop3", &spec()),
                argv: vec!["mountdevice", "/g", "/dev/loop3", JSON],
            },
            Case { call: DriverCall::detach("vol1", "node1"), argv: vec!["detach", "vol1", "node1"] },
            Case { call: DriverCall::unmount_device("/g"), argv: vec!["unmountdevice", "/g"] },
            Case { call: DriverCall::unmount("/p"), argv: vec!["unmount", "/p"] },
            Case {
                call: DriverCall::expand_volume(&spec(), "/g", 2048, 1024),
                argv: vec!["expandvolume", JSON, "/g", "2048", "1024"],
            },
            Case {
                call: DriverCall::expand_fs(&spec(), "/dev/loop3", "/g", 2048, 1024),
                argv: vec!["expandfs", JSON, "/dev/loop3", "/g", "2048", "1024"],
            },
        ];
        for case in cases {
            assert_eq!(case.call.args(), case.argv, "{}", case.call.command());
        }
    }

    #[test]
    fn mount_passes_the_pod_dir_then_options_with_pod_metadata() {
        let args = MountArgs {
            pod: PodInfo {
                name: "nginx-nfs".into(),
                namespace: "default".into(),
                uid: "3fd5".into(),
                service_account_name: "default".into(),
            },
            secrets: Default::default(),
            fs_group: None,
        };
        let call = DriverCall::mount("/var/lib/kubelet/pods/3fd5/volumes/k8s~nfs/test", &spec(), &args);
        assert_eq!(
            call.args(),
            [
                "mount",
                "/var/lib/kubelet/pods/3fd5/volumes/k8s~nfs/test",
                r#"{"kubernetes.io/fsType":"ext4","kubernetes.io/pod.name":"nginx-nfs","kubernetes.io/pod.namespace":"default","kubernetes.io/pod.uid":"3fd5","kubernetes.io/pvOrVolumeName":"vol1","kubernetes.io/readwrite":"rw","kubernetes.io/serviceAccount.name":"default","volumeID":"v"}"#,
            ]
        );
    }
}
