//! The `nfs` driver: the seeds' bash+jq driver done right.
//!
//! `init` says there is no attach; `mount <dir> <json>` mounts `server:/share` with type nfs
//! through mount(8) (whose `mount.nfs` helper negotiates the protocol), read-only when kubelet
//! says `ro`, with the user's `mountOptions`; `unmount <dir>` unmounts. Both are idempotent
//! through mountinfo, and a failed mount answers mount's own error and removes any directory
//! it created.

use std::collections::BTreeMap;
use std::path::Path;

use kvol_flex::{parse_options_json, DriverCapabilities, DriverOptions, DriverStatus};

use crate::error::{Error, Result};
use crate::sys::{canonical, run_tool, Created};
use crate::{expect_args, Reply};

/// The options the nfs driver reads.
#[derive(Debug, PartialEq, Eq)]
pub struct NfsOptions {
    /// `server`: host name or address.
    pub server: String,
    /// `share`: the export path; a missing leading `/` is added (the seeds write `export`).
    pub share: String,
    /// `kubernetes.io/readwrite` is `ro`.
    pub read_only: bool,
    /// `mountOptions`: comma-separated mount options (`vers=4.1,soft`).
    pub mount_options: Vec<String>,
}

impl TryFrom<&BTreeMap<String, String>> for NfsOptions {
    type Error = Error;

    fn try_from(map: &BTreeMap<String, String>) -> Result<Self> {
        let base = DriverOptions::try_from(map)?;
        let server = base.required("server")?.to_owned();
        if server.starts_with('-') || server.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(invalid("server", &server, "not a host name or address"));
        }
        let share = base.required("share")?.to_owned();
        if share.starts_with('-') {
            return Err(invalid("share", &share, "not an export path"));
        }
        let mount_options: Vec<String> = base
            .optional("mountOptions")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
        if let Some(bad) = mount_options.iter().find(|o| o.starts_with('-') || o.contains(char::is_whitespace)) {
            return Err(invalid("mountOptions", bad, "not a mount option"));
        }
        Ok(NfsOptions { server, share, read_only: base.read_only, mount_options })
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> Error {
    Error::Options(kvol_flex::Error::InvalidOption { key: key.into(), value: value.into(), reason: reason.into() })
}

impl NfsOptions {
    /// `server:/share`, with an IPv6 address bracketed.
    pub fn source(&self) -> String {
        let server = if self.server.contains(':') && !self.server.starts_with('[') {
            format!("[{}]", self.server)
        } else {
            self.server.clone()
        };
        let slash = if self.share.starts_with('/') { "" } else { "/" };
        format!("{server}:{slash}{}", self.share)
    }

    /// The `-o` argument.
    pub fn options(&self) -> String {
        let mut o = vec![if self.read_only { "ro" } else { "rw" }.to_owned()];
        o.extend(self.mount_options.iter().cloned());
        o.join(",")
    }
}

/// What `init` answers.
pub const CAPABILITIES: DriverCapabilities = DriverCapabilities {
    attach: false,
    selinux_relabel: true,
    // statfs on an NFS mount is cheap and meaningful.
    supports_metrics: true,
    // chown -R over NFS is slow and fails under root_squash; the in-tree nfs plugin does not
    // apply fsGroup either.
    fs_group: false,
    requires_fs_resize: true,
};

/// Runs one nfs driver call.
pub fn call(args: &[String]) -> Result<Reply> {
    match args.first().map(String::as_str) {
        Some("init") => Ok(Reply::Init(CAPABILITIES)),
        Some("mount") => {
            let [dir, json] = expect_args(args, "mount <mount dir> <json options>")?;
            mount(Path::new(dir), &NfsOptions::try_from(&parse_options_json(json)?)?)
        }
        Some("unmount") => {
            let [dir] = expect_args(args, "unmount <mount dir>")?;
            unmount(Path::new(dir))
        }
        _ => Ok(Reply::NotSupported),
    }
}

fn mount(dir: &Path, opts: &NfsOptions) -> Result<Reply> {
    if !dir.is_absolute() {
        return Err(Error::Usage(format!("mount dir {} is not absolute", dir.display())));
    }
    let source = opts.source();
    let mounts = kvol_mount::read_mountinfo()?;
    if let Some(m) = kvol_mount::find_by_mount_point(&mounts, &canonical(dir)) {
        if m.fs_type.starts_with("nfs") && m.source.trim_end_matches('/') == source.trim_end_matches('/') {
            return Ok(Reply::Done(DriverStatus::success()));
        }
        return Err(Error::State(format!(
            "{} is already mounted ({} {}), not {source}",
            dir.display(),
            m.fs_type,
            m.source
        )));
    }
    let mut created = Created::default();
    created.mkdir_all(dir)?;
    let target = dir.to_string_lossy();
    run_tool("mount", &["-t", "nfs", "-o", &opts.options(), &source, &target])?;
    created.keep();
    Ok(Reply::Done(DriverStatus::success()))
}

fn unmount(dir: &Path) -> Result<Reply> {
    let mounts = kvol_mount::read_mountinfo()?;
    if kvol_mount::find_by_mount_point(&mounts, &canonical(dir)).is_some() {
        run_tool("umount", &[&dir.to_string_lossy()])?;
    }
    Ok(Reply::Done(DriverStatus::success()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_are_parsed_and_the_source_is_built_as_the_seed_builds_it() {
        let o = NfsOptions::try_from(&map(&[
            ("server", "172.16.0.25"),
            ("share", "dws_nas_scratch"),
            ("kubernetes.io/readwrite", "ro"),
            ("mountOptions", "vers=4.1, soft"),
        ]))
        .unwrap();
        assert_eq!(o.source(), "172.16.0.25:/dws_nas_scratch");
        assert_eq!(o.options(), "ro,vers=4.1,soft");
        let o = NfsOptions::try_from(&map(&[("server", "fd00::1"), ("share", "/export")])).unwrap();
        assert_eq!(o.source(), "[fd00::1]:/export");
        assert_eq!(o.options(), "rw");
    }

    #[test]
    fn missing_and_bad_options_are_named() {
        let err = NfsOptions::try_from(&map(&[("share", "x")])).unwrap_err();
        assert_eq!(err.to_string(), "missing option \"server\"");
        let err = NfsOptions::try_from(&map(&[("server", "-oexec"), ("share", "x")])).unwrap_err();
        assert!(err.to_string().contains("\"server\""), "{err}");
        let err = NfsOptions::try_from(&map(&[("server", "s"), ("share", "x"), ("mountOptions", "a b")])).unwrap_err();
        assert!(err.to_string().contains("mountOptions"), "{err}");
    }
}
