//! Mount option strings (`ro`, `bind`, `rshared`, `size=16m`) parsed into `mount(2)` flags and data, and
//! the sequence of `mount(2)` calls one `Mounter::mount` request needs.
//!
//! Pure: both the real and the fake mounter execute the same plan, so the fake exercises the same
//! steps (and can fail at any of them) that the kernel sees.

use std::path::PathBuf;

use nix::mount::MsFlags;

/// Options parsed from the strings a Kubernetes `mount.Interface` caller passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `bind` or `rbind`.
    pub bind: bool,
    /// `rbind`: bind the whole subtree.
    pub recursive_bind: bool,
    /// `remount`.
    pub remount: bool,
    /// Flags to set (`ro`, `nosuid`, `nodev`, `noexec`, atime flags…).
    pub flags: MsFlags,
    /// Flags the options explicitly clear (`rw`, `suid`, `dev`, `exec`, `atime`…): on a bind remount they
    /// are not carried over from the current mount.
    pub cleared: MsFlags,
    /// Propagation change requested (`shared`, `rslave`, …).
    pub propagation: Option<Propagation>,
    /// Options for the file system itself (`size=16m`, `mode=0755`), passed as mount data.
    pub data: Vec<String>,
    /// Options only mount(8) understands (`loop`): the request must go through the mount helper.
    pub needs_mount_program: bool,
}

/// A mount propagation change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// `MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE` or `MS_UNBINDABLE`.
    pub kind: MsFlags,
    /// The `r` forms apply to the whole subtree (`MS_REC`).
    pub recursive: bool,
    /// The option as written, for messages.
    pub name: &'static str,
}

const FLAG_OPTIONS: &[(&str, MsFlags, bool)] = &[
    // (option, flag, set?) — `false` clears the flag.
    ("ro", MsFlags::MS_RDONLY, true),
    ("rw", MsFlags::MS_RDONLY, false),
    ("nosuid", MsFlags::MS_NOSUID, true),
    ("suid", MsFlags::MS_NOSUID, false),
    ("nodev", MsFlags::MS_NODEV, true),
    ("dev", MsFlags::MS_NODEV, false),
    ("noexec", MsFlags::MS_NOEXEC, true),
    ("exec", MsFlags::MS_NOEXEC, false),
    ("sync", MsFlags::MS_SYNCHRONOUS, true),
    ("async", MsFlags::MS_SYNCHRONOUS, false),
    ("dirsync", MsFlags::MS_DIRSYNC, true),
    ("noatime", MsFlags::MS_NOATIME, true),
    ("atime", MsFlags::MS_NOATIME, false),
    ("nodiratime", MsFlags::MS_NODIRATIME, true),
    ("diratime", MsFlags::MS_NODIRATIME, false),
    ("relatime", MsFlags::MS_RELATIME, true),
    ("norelatime", MsFlags::MS_RELATIME, false),
    ("strictatime", MsFlags::MS_STRICTATIME, true),
    ("lazytime", MsFlags::MS_LAZYTIME, true),
    ("nolazytime", MsFlags::MS_LAZYTIME, false),
    ("silent", MsFlags::MS_SILENT, true),
    ("loud", MsFlags::MS_SILENT, false),
];

const PROPAGATION_OPTIONS: &[(&str, MsFlags, bool)] = &[
    ("shared", MsFlags::MS_SHARED, false),
    ("rshared", MsFlags::MS_SHARED, true),
    ("slave", MsFlags::MS_SLAVE, false),
    ("rslave", MsFlags::MS_SLAVE, true),
    ("private", MsFlags::MS_PRIVATE, false),
    ("rprivate", MsFlags::MS_PRIVATE, true),
    ("unbindable", MsFlags::MS_UNBINDABLE, false),
    ("runbindable", MsFlags::MS_UNBINDABLE, true),
];

/// Options that only mean something to mount(8) or fstab and are dropped, as mount(8) drops them.
fn is_userspace_only(opt: &str) -> bool {
    matches!(
        opt,
        "defaults" | "auto" | "noauto" | "_netdev" | "nofail" | "user" | "nouser" | "users" | "owner" | "group" | ""
    ) || opt.starts_with("x-")
        || opt.starts_with("comment=")
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            bind: false,
            recursive_bind: false,
            remount: false,
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: None,
            data: Vec::new(),
            needs_mount_program: false,
        }
    }
}

impl MountOptions {
    /// Parses option strings; each string may itself be comma-separated (`"ro,noexec"`).
    pub fn parse<S: AsRef<str>>(options: &[S]) -> MountOptions {
        let mut o = MountOptions::default();
        for opt in options.iter().flat_map(|s| s.as_ref().split(',')).map(str::trim) {
            if let Some((_, flag, set)) = FLAG_OPTIONS.iter().find(|(n, _, _)| *n == opt) {
                if *set {
                    o.flags |= *flag;
                    o.cleared -= *flag;
                } else {
                    o.flags -= *flag;
                    o.cleared |= *flag;
                }
            } else if let Some((name, kind, recursive)) = PROPAGATION_OPTIONS.iter().find(|(n, _, _)| *n == opt) {
                o.propagation = Some(Propagation { kind: *kind, recursive: *recursive, name });
            } else {
                match opt {
                    "bind" => o.bind = true,
                    "rbind" => {
                        o.bind = true;
                        o.recursive_bind = true;
                    }
                    "remount" => o.remount = true,
                    "loop" => o.needs_mount_program = true,
                    _ if is_userspace_only(opt) => {}
                    _ => o.data.push(opt.to_string()),
                }
            }
        }
        o
    }

    /// Mount data as the kernel takes it: comma-joined.
    pub fn data_string(&self) -> String {
        self.data.join(",")
    }

    /// Whether a remount is needed after a bind: the bind itself ignores every flag but `MS_REC`.
    fn needs_bind_remount(&self) -> bool {
        !self.flags.is_empty() || !self.cleared.is_empty() || !self.data.is_empty()
    }
}

/// One `mount(2)` call (or one run of mount(8)) of a mount request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountStep {
    /// `mount(source, target, NULL, MS_BIND[|MS_REC])`.
    Bind { source: String, target: PathBuf, recursive: bool },
    /// `mount(source, target, fstype, MS_REMOUNT[|MS_BIND]|flags, data)`; a bind remount changes only the
    /// per-mount flags, which is how a read-only bind is made.
    Remount {
        source: String,
        target: PathBuf,
        fstype: String,
        bind: bool,
        flags: MsFlags,
        cleared: MsFlags,
        data: String,
    },
    /// `mount(source, target, fstype, flags, data)`: a new mount.
    Mount { source: String, target: PathBuf, fstype: String, flags: MsFlags, data: String },
    /// `mount(NULL, target, NULL, MS_SHARED|…[|MS_REC])`.
    Propagation { target: PathBuf, propagation: Propagation },
    /// `mount -t fstype -o options source target` through mount(8), for file systems that need a helper.
    Helper { source: String, target: PathBuf, fstype: String, options: Vec<String> },
}

impl MountStep {
    /// Whether this step creates a new mount (which a failed later step must undo).
    pub fn creates_mount(&self) -> bool {
        matches!(self, MountStep::Bind { .. } | MountStep::Mount { .. } | MountStep::Helper { .. })
    }

    /// The step's name, as used for failure injection and messages.
    pub fn kind(&self) -> StepKind {
        match self {
            MountStep::Bind { .. } => StepKind::Bind,
            MountStep::Remount { .. } => StepKind::Remount,
            MountStep::Mount { .. } => StepKind::Mount,
            MountStep::Propagation { .. } => StepKind::Propagation,
            MountStep::Helper { .. } => StepKind::Helper,
        }
    }
}

/// The kinds of host steps a mounter performs; the fake mounter can fail any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    Bind,
    Remount,
    Mount,
    Propagation,
    Helper,
    Unmount,
    IsLikelyNotMountPoint,
    List,
}

/// File system types whose mount needs a user-space helper (`mount.nfs`, `mount.ceph`, FUSE daemons):
/// `mount(2)` alone cannot mount them, so mount(8) is run, as Kubernetes always does.
pub fn type_needs_helper(fstype: &str) -> bool {
    matches!(fstype, "nfs" | "nfs4" | "ceph" | "cifs" | "smb3" | "glusterfs" | "fuse" | "sshfs" | "lustre")
        || fstype.starts_with("fuse.")
}

/// The `mount(2)` calls for one request, in order (Kubernetes' `MakeBindOpts`: a read-only bind is a bind
/// followed by `remount,bind,ro`; propagation is always its own call). `use_helper` sends the whole request
/// to mount(8) instead.
pub fn plan(source: &str, target: PathBuf, fstype: &str, options: &[String], use_helper: bool) -> Vec<MountStep> {
    let o = MountOptions::parse(options);
    if use_helper || o.needs_mount_program {
        return vec![MountStep::Helper {
            source: source.to_string(),
            target,
            fstype: fstype.to_string(),
            options: options.iter().flat_map(|s| s.split(',')).map(str::to_string).collect(),
        }];
    }
    let mut steps = Vec::new();
    if o.remount {
        steps.push(MountStep::Remount {
            source: source.to_string(),
            target: target.clone(),
            fstype: fstype.to_string(),
            bind: o.bind,
            flags: o.flags,
            cleared: o.cleared,
            data: o.data_string(),
        });
    } else if o.bind {
        steps.push(MountStep::Bind { source: source.to_string(), target: target.clone(), recursive: o.recursive_bind });
        if o.needs_bind_remount() {
            steps.push(MountStep::Remount {
                source: source.to_string(),
                target: target.clone(),
                fstype: String::new(),
                bind: true,
                flags: o.flags,
                cleared: o.cleared,
                data: o.data_string(),
            });
        }
    } else if !(source.is_empty() && fstype.is_empty() && o.propagation.is_some()) {
        steps.push(MountStep::Mount {
            source: source.to_string(),
            target: target.clone(),
            fstype: fstype.to_string(),
            flags: o.flags,
            data: o.data_string(),
        });
    }
    if let Some(propagation) = o.propagation {
        steps.push(MountStep::Propagation { target, propagation });
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_flags_propagation_and_data() {
        let o = MountOptions::parse(&s(&["ro,nosuid", "nodev", "noexec", "rshared", "size=16m", "mode=0755"]));
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
        assert_eq!(o.propagation.unwrap().kind, MsFlags::MS_SHARED);
        assert!(o.propagation.unwrap().recursive);
        assert_eq!(o.data_string(), "size=16m,mode=0755");
        assert!(!o.bind);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = MountOptions::parse(&s(&["ro", "rw"]));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn drops_fstab_only_options_and_flags_loop_for_mount8() {
        let o = MountOptions::parse(&s(&["defaults", "_netdev", "x-systemd.automount", "nofail", "loop"]));
        assert!(o.data.is_empty());
        assert!(o.needs_mount_program);
    }

    #[test]
    fn a_read_only_bind_is_a_bind_then_a_bind_remount() {
        let steps = plan("/src", "/dst".into(), "", &s(&["bind", "ro"]), false);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0], MountStep::Bind { source: "/src".into(), target: "/dst".into(), recursive: false });
        match &steps[1] {
            MountStep::Remount { bind: true, flags, .. } => assert_eq!(*flags, MsFlags::MS_RDONLY),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_plain_bind_needs_no_remount() {
        let steps = plan("/src", "/dst".into(), "", &s(&["rbind"]), false);
        assert_eq!(steps, vec![MountStep::Bind { source: "/src".into(), target: "/dst".into(), recursive: true }]);
    }

    #[test]
    fn propagation_is_its_own_last_step() {
        let steps = plan("/x", "/x".into(), "", &s(&["bind", "rshared"]), false);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].kind(), StepKind::Propagation);
        let steps = plan("", "/x".into(), "", &s(&["rslave"]), false);
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].kind(), StepKind::Propagation);
    }

    #[test]
    fn explicit_remount_is_a_single_step() {
        let steps = plan("/d", "/d".into(), "", &s(&["remount", "bind", "ro"]), false);
        assert_eq!(steps.len(), 1);
        assert!(matches!(steps[0], MountStep::Remount { bind: true, .. }));
    }

    #[test]
    fn helper_types_go_to_mount8_with_all_options() {
        assert!(type_needs_helper("nfs") && type_needs_helper("fuse.sshfs") && !type_needs_helper("ext4"));
        let steps = plan("srv:/exp", "/m".into(), "nfs", &s(&["ro,vers=4", "hard"]), true);
        assert_eq!(
            steps,
            vec![MountStep::Helper {
                source: "srv:/exp".into(),
                target: "/m".into(),
                fstype: "nfs".into(),
                options: s(&["ro", "vers=4", "hard"]),
            }]
        );
    }

    #[test]
    fn a_tmpfs_mount_passes_size_as_data() {
        let steps = plan("tmpfs", "/m".into(), "tmpfs", &s(&["size=1048576", "nosuid"]), false);
        assert_eq!(
            steps,
            vec![MountStep::Mount {
                source: "tmpfs".into(),
                target: "/m".into(),
                fstype: "tmpfs".into(),
                flags: MsFlags::MS_NOSUID,
                data: "size=1048576".into(),
            }]
        );
    }
}
