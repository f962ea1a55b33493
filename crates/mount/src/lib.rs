//! kvol's host-side layer: everything the node agent and the drivers do to the machine's mount table and
//! file systems — `mount(2)`/`umount(2)`, `/proc/self/mountinfo`, symlink-safe subPaths, the atomic
//! writer of configMap/secret volumes, fsGroup ownership, kubelet's directory layout, loop devices, mkfs
//! and tmpfs.
//!
//! Design decisions:
//! - **Syscalls behind a trait, parsers on text.** [`Mounter`] has a real implementation on `mount(2)` and
//!   a [`FakeMounter`] that records calls and fails any step on demand; the mountinfo parser takes `&str`.
//!   Both mounters execute the same [`mount_options::plan`], so a unit test against the fake exercises the
//!   same bind → remount → propagation sequence (and its rollback) as the kernel sees.
//! - **Kubernetes' semantics, made idempotent.** Every function that changes the host checks first and
//!   treats "already gone" as success, so the reconciler can retry anything after a crash.
//! - **Paths from users are resolved beneath their root by file descriptor** (`openat2(RESOLVE_BENEATH)`,
//!   or the same walk in user space), and subPath binds mount `/proc/self/fd/<fd>`, never a path a user
//!   could swap.
//! - **One error type** whose [`Error::class`] tells the node agent whether to retry, to re-check the host
//!   (uncertain) or to give up.

pub mod atomic_writer;
mod command;
pub mod error;
pub mod format;
pub mod loopdev;
pub mod mount_options;
pub mod mounter;
pub mod mountinfo;
pub mod ownership;
pub mod paths;
pub mod safe_path;
pub mod statx;
pub mod tmpfs;

pub use atomic_writer::{AtomicWriter, FileProjection, WriteOutcome};
pub use error::{Error, ErrorClass, Result};
pub use format::{mkfs_if_unformatted, FormatOutcome};
pub use mount_options::{MountOptions, StepKind};
pub use mounter::{cleanup_mount_point, FakeCall, FakeMounter, Mounter, RealMounter};
pub use mountinfo::{
    find_by_mount_point, is_corrupted_mount_error, is_likely_not_mount_point, is_mount_point, mount_refs,
    parse_mountinfo, read_mountinfo, MountInfo,
};
pub use ownership::{set_volume_ownership, FsGroupChangePolicy};
pub use safe_path::{bind_subpath, clean_subpaths, safe_make_dir, validate_sub_path, VerifiedPath};
pub use statx::{statx, statx_mount_root, PathStat};
pub use tmpfs::mount_tmpfs;
