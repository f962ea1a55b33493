//! A `/proc/self/mountinfo` reader, enough for idempotency checks.
//!
//! kvol's shared `kvol-mount` crate will own this; until then the driver keeps its own small
//! parser (text in, entries out) so it stays a standalone binary.

use std::path::{Path, PathBuf};

/// One mount, as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    /// `major:minor` of the mounted file system's device.
    pub major: u64,
    /// See `major`.
    pub minor: u64,
    /// The directory of the file system mounted here (`/` unless a bind of a subdirectory).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type (`ext4`, `nfs4`...).
    pub fs_type: String,
    /// Mount source (`/dev/loop3`, `server:/export`).
    pub source: String,
}

/// Parses mountinfo text. Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut l = left.split(' ');
    let _id = l.next()?;
    let _parent = l.next()?;
    let (major, minor) = l.next()?.split_once(':')?;
    let root = unescape(l.next()?);
    let mount_point = unescape(l.next()?);
    let mut r = right.split(' ');
    let fs_type = unescape(r.next()?);
    let source = unescape(r.next()?);
    Some(MountInfo {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root: PathBuf::from(root),
        mount_point: PathBuf::from(mount_point),
        fs_type,
        source,
    })
}

/// Undoes the kernel's octal escapes (`\040` for space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current mount table.
pub fn read() -> std::io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The topmost mount at exactly `path` (the last listed wins, as in the kernel's view).
pub fn mount_at<'a>(mounts: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    mounts.iter().rev().find(|m| m.mount_point == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
36 22 7:3 / /var/lib/kvol/plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1 rw,relatime - ext4 /dev/loop3 rw
37 22 7:3 / /tmp/pod\\040dir rw,relatime shared:5 master:2 - ext4 /dev/loop3 rw
38 22 0:50 /sub /mnt/b rw - tmpfs tmpfs rw
39 22 0:51 / /mnt/nfs rw - nfs4 127.0.0.1:/export rw,vers=4.2
bad line
";

    #[test]
    fn parses_fields_and_unescapes_paths() {
        let mounts = parse(SAMPLE);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[1].major, 7);
        assert_eq!(mounts[1].minor, 3);
        assert_eq!(mounts[1].source, "/dev/loop3");
        assert_eq!(mounts[2].mount_point, Path::new("/tmp/pod dir"), "optional fields skipped");
        assert_eq!(mounts[3].root, Path::new("/sub"));
        assert_eq!(mounts[4].fs_type, "nfs4");
        assert_eq!(mounts[4].source, "127.0.0.1:/export");
        assert_eq!(mount_at(&mounts, Path::new("/mnt/b")).unwrap().fs_type, "tmpfs");
        assert!(mount_at(&mounts, Path::new("/mnt")).is_none());
    }
}
