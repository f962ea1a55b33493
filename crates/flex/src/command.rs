//! The FlexVolume command names (`driver-call.go` constants).

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// One FlexVolume call, named as the driver sees it in `argv[1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Command {
    /// `init`: run at probe time by kubelet and the controller manager; reports capabilities.
    Init,
    /// `getvolumename <json>`: kubelet ignores the answer and uses the spec's name.
    GetVolumeName,
    /// `attach <json> <node>`: controller side; answers `device`.
    Attach,
    /// `waitforattach <device> <json>`: node side; answers `device`.
    WaitForAttach,
    /// `isattached <json> <node>`: controller side; answers `attached`.
    IsAttached,
    /// `mountdevice <device mount path> <device> <json>`: node side, the global mount.
    MountDevice,
    /// `detach <volume name> <node>`: controller side.
    Detach,
    /// `unmountdevice <device mount path>`: node side.
    UnmountDevice,
    /// `mount <pod volume dir> <json>`: node side; the only call with pod data and secrets.
    Mount,
    /// `unmount <pod volume dir>`: node side.
    Unmount,
    /// `expandvolume <json> <device mount path> <new bytes> <old bytes>`: controller side.
    ExpandVolume,
    /// `expandfs <json> <device> <device mount path> <new bytes> <old bytes>`: node side.
    ExpandFs,
}

impl Command {
    /// Every command, in the order of the FlexVolume documentation.
    pub const ALL: [Command; 12] = [
        Command::Init,
        Command::GetVolumeName,
        Command::Attach,
        Command::WaitForAttach,
        Command::IsAttached,
        Command::MountDevice,
        Command::Detach,
        Command::UnmountDevice,
        Command::Mount,
        Command::Unmount,
        Command::ExpandVolume,
        Command::ExpandFs,
    ];

    /// The name passed as `argv[1]`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Command::Init => "init",
            Command::GetVolumeName => "getvolumename",
            Command::Attach => "attach",
            Command::WaitForAttach => "waitforattach",
            Command::IsAttached => "isattached",
            Command::MountDevice => "mountdevice",
            Command::Detach => "detach",
            Command::UnmountDevice => "unmountdevice",
            Command::Mount => "mount",
            Command::Unmount => "unmount",
            Command::ExpandVolume => "expandvolume",
            Command::ExpandFs => "expandfs",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Command {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Command::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| Error::UnknownCommand(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips_through_its_name() {
        for c in Command::ALL {
            assert_eq!(c.as_str().parse::<Command>().unwrap(), c);
        }
        assert!("waitfordetach".parse::<Command>().is_err());
    }
}
