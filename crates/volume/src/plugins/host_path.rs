//! hostPath (`pkg/volume/hostpath/host_path.go`): a path on the host, checked against its `type` and
//! created for the `…OrCreate` types. Like kubelet, nothing is mounted: the container runtime binds the
//! host path itself, so the volume's path *is* the host path, and teardown does nothing.

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::names::HOST_PATH;
use crate::error::{Error, Result};
use crate::host::VolumeHost;
use crate::plugin::{Mounter, MounterArgs, PodRef, Unmounter, VolumePlugin};
use crate::spec::VolumeSpec;

/// The hostPath plugin.
pub struct HostPathPlugin;

fn source(spec: &VolumeSpec) -> Option<&k8s_openapi::api::core::v1::HostPathVolumeSource> {
    match spec {
        VolumeSpec::Inline(v) => v.host_path.as_ref(),
        VolumeSpec::Persistent { .. } => spec.pv_spec().and_then(|s| s.host_path.as_ref()),
    }
}

impl VolumePlugin for HostPathPlugin {
    fn name(&self) -> &str {
        HOST_PATH
    }

    fn can_support(&self, spec: &VolumeSpec) -> bool {
        source(spec).is_some()
    }

    fn volume_name(&self, spec: &VolumeSpec) -> Result<String> {
        Ok(source(spec).map(|s| s.path.clone()).unwrap_or_default())
    }

    fn new_mounter(&self, spec: &VolumeSpec, _pod: &PodRef, _host: &Arc<dyn VolumeHost>) -> Result<Box<dyn Mounter>> {
        let s = source(spec)
            .ok_or_else(|| Error::InvalidSpec { volume: spec.name().into(), reason: "not a hostPath volume".into() })?;
        Ok(Box::new(HostPath {
            path: s.path.clone(),
            kind: s.type_.clone().unwrap_or_default(),
            read_only: spec.claim_read_only(),
        }))
    }

    fn new_unmounter(
        &self,
        _spec_name: &str,
        _pod_uid: &str,
        _host: &Arc<dyn VolumeHost>,
    ) -> Result<Box<dyn Unmounter>> {
        Ok(Box::new(HostPath { path: String::new(), kind: String::new(), read_only: false }))
    }
}

struct HostPath {
    path: String,
    kind: String,
    read_only: bool,
}

/// kubelet's `ValidatePathNoBacksteps`: no `..` element.
pub fn validate_no_backsteps(path: &str) -> Result<()> {
    if path.split('/').any(|part| part == "..") {
        return Err(Error::Backsteps { path: path.to_string() });
    }
    Ok(())
}

/// kubelet's `checkType`: the path against a hostPath `type`, creating it for the `…OrCreate` types
/// (directories 0755 with parents, files 0644 with 0755 parents; existing ones are left untouched, so an
/// existing file keeps its inode).
pub fn check_type(path: &Path, kind: &str) -> Result<()> {
    let meta = std::fs::metadata(path).ok();
    let mismatch = |expected| Err(Error::HostPathType { path: path.to_path_buf(), expected });
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" | "Directory" => {
            if meta.is_none() && kind == "DirectoryOrCreate" {
                return std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|source| Error::CreateHostPath { path: path.to_path_buf(), source });
            }
            if meta.is_some_and(|m| m.is_dir()) {
                Ok(())
            } else {
                mismatch("directory")
            }
        }
        "FileOrCreate" | "File" => {
            if meta.is_none() && kind == "FileOrCreate" {
                let err = |source| Error::CreateHostPath { path: path.to_path_buf(), source };
                if let Some(parent) = path.parent() {
                    std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(err)?;
                }
                return std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(path)
                    .map(drop)
                    .map_err(|source| Error::CreateHostPath { path: path.to_path_buf(), source });
            }
            if meta.is_some_and(|m| m.is_file()) {
                Ok(())
            } else {
                mismatch("file")
            }
        }
        "Socket" => {
            if meta.is_some_and(|m| m.file_type().is_socket()) {
                Ok(())
            } else {
                mismatch("socket file")
            }
        }
        "CharDevice" => {
            if meta.is_some_and(|m| m.file_type().is_char_device()) {
                Ok(())
            } else {
                mismatch("character device")
            }
        }
        "BlockDevice" => {
            if meta.is_some_and(|m| m.file_type().is_block_device()) {
                Ok(())
            } else {
                mismatch("block device")
            }
        }
        other => Err(Error::HostPathInvalidType { kind: other.to_string() }),
    }
}

impl Mounter for HostPath {
    fn path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    fn set_up(&self, _args: &MounterArgs) -> Result<()> {
        validate_no_backsteps(&self.path)?;
        check_type(Path::new(&self.path), &self.kind)
    }

    fn read_only(&self) -> bool {
        self.read_only
    }
}

impl Unmounter for HostPath {
    fn path(&self) -> PathBuf {
        PathBuf::from(&self.path)
    }

    fn tear_down(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct Case {
        kind: &'static str,
        path: &'static str,
        want: std::result::Result<(), &'static str>,
    }

    #[test]
    fn checks_all_eight_types_with_kubelets_messages() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("dir")).unwrap();
        std::fs::write(d.join("file"), "x").unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        let cases = [
            Case { kind: "", path: "missing", want: Ok(()) },
            Case { kind: "Directory", path: "dir", want: Ok(()) },
            Case { kind: "Directory", path: "file", want: Err("is not a directory") },
            Case { kind: "Directory", path: "missing", want: Err("is not a directory") },
            Case { kind: "DirectoryOrCreate", path: "new/dir", want: Ok(()) },
            Case { kind: "DirectoryOrCreate", path: "file", want: Err("is not a directory") },
            Case { kind: "File", path: "file", want: Ok(()) },
            Case { kind: "File", path: "dir", want: Err("is not a file") },
            Case { kind: "FileOrCreate", path: "newparent/f", want: Ok(()) },
            Case { kind: "FileOrCreate", path: "dir", want: Err("is not a file") },
            Case { kind: "Socket", path: "sock", want: Ok(()) },
            Case { kind: "Socket", path: "file", want: Err("is not a socket file") },
            Case { kind: "CharDevice", path: "/dev/null", want: Ok(()) },
            Case { kind: "CharDevice", path: "file", want: Err("is not a character device") },
            Case { kind: "BlockDevice", path: "file", want: Err("is not a block device") },
            Case { kind: "Bogus", path: "file", want: Err("Bogus is an invalid volume type") },
        ];
        for c in cases {
            let path = if c.path.starts_with('/') { PathBuf::from(c.path) } else { d.join(c.path) };
            let got = check_type(&path, c.kind);
            match (c.want, got) {
                (Ok(()), Ok(())) => {}
                (Err(want), Err(e)) => {
                    let text = e.to_string();
                    assert!(text.contains(want), "{} {}: {text}", c.kind, c.path);
                    if c.kind != "Bogus" {
                        assert_eq!(text, format!("hostPath type check failed: {} {want}", path.display()));
                    }
                }
                (want, got) => panic!("{} {}: want {want:?}, got {got:?}", c.kind, c.path),
            }
        }
        assert!(d.join("new/dir").is_dir());
        let f = std::fs::metadata(d.join("newparent/f")).unwrap();
        assert!(f.is_file());
        assert_eq!(f.permissions().mode() & 0o777, 0o644 & !umask());
    }

    fn umask() -> u32 {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        nix::sys::stat::umask(old);
        old.bits()
    }

    #[test]
    fn file_or_create_keeps_an_existing_file_and_its_inode() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
        let ino = std::fs::metadata(&hosts).unwrap().ino();
        check_type(&hosts, "FileOrCreate").unwrap();
        assert_eq!(std::fs::metadata(&hosts).unwrap().ino(), ino);
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), "127.0.0.1 localhost\n");
    }

    #[test]
    fn rejects_backsteps() {
        assert_eq!(
            validate_no_backsteps("/data/../etc").unwrap_err().to_string(),
            "invalid HostPath `/data/../etc`: must not contain '..'"
        );
        validate_no_backsteps("/data/..x/etc").unwrap();
    }
}
