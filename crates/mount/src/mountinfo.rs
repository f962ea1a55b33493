//! `/proc/self/mountinfo`: a parser that takes text, and the mount-point questions kubelet asks of it.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The mount table of this process's mount namespace.
pub const PROC_MOUNTINFO: &str = "/proc/self/mountinfo";

/// One line of `/proc/<pid>/mountinfo` (proc(5)), with the kernel's octal escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique id of the mount.
    pub id: u32,
    /// Id of the parent mount (itself for the namespace root).
    pub parent_id: u32,
    /// `st_dev` major of files on this mount.
    pub major: u32,
    /// `st_dev` minor of files on this mount.
    pub minor: u32,
    /// Path inside the file system that forms the root of this mount (not `/` for bind mounts of subdirs).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, …).
    pub mount_options: Vec<String>,
    /// Optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    pub optional_fields: Vec<String>,
    /// File system type (`ext4`, `fuse.bindfs`, …).
    pub fs_type: String,
    /// Mount source (`/dev/loop3`, `tmpfs`, `server:/export`).
    pub source: String,
    /// Per-superblock options (`size=16384k`, `errors=remount-ro`).
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// Whether the mount is read-only (per-mount `ro`).
    pub fn is_read_only(&self) -> bool {
        self.mount_options.iter().any(|o| o == "ro")
    }

    /// The propagation of this mount: `shared`, `slave`, `shared+slave`, `unbindable` or `private`.
    pub fn propagation(&self) -> &'static str {
        let has = |p: &str| self.optional_fields.iter().any(|f| f.starts_with(p));
        match (has("shared:"), has("master:"), has("unbindable")) {
            (_, _, true) => "unbindable",
            (true, true, _) => "shared+slave",
            (true, false, _) => "shared",
            (false, true, _) => "slave",
            _ => "private",
        }
    }

    /// A super option's value, e.g. `size` of a tmpfs.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options.iter().find_map(|o| match o.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if o == key => Some(""),
            _ => None,
        })
    }
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash, `#`) into raw bytes.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            if v <= 0xff {
                out.push(v as u8);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn unescape_path(field: &str) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn unescape_string(field: &str) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn split_options(field: &str) -> Vec<String> {
    if field.is_empty() {
        return Vec::new();
    }
    field.split(',').map(unescape_string).collect()
}

/// Parses the text of a mountinfo file (proc(5)). Empty lines are skipped; a malformed line is an error
/// naming its number (1-based).
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(parse_line(line).map_err(|reason| Error::ParseMountInfo {
            line: idx + 1,
            reason,
            text: line.to_string(),
        })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> std::result::Result<MountInfo, &'static str> {
    // Fields are separated by single spaces; a field may be empty (e.g. an empty mount source).
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-").ok_or("no ' - ' separator")?;
    if sep < 6 {
        return Err("fewer than 6 fields before the separator");
    }
    let post = &fields[sep + 1..];
    if post.len() < 2 {
        return Err("fewer than 2 fields after the separator");
    }
    let id = fields[0].parse().map_err(|_| "mount id is not a number")?;
    let parent_id = fields[1].parse().map_err(|_| "parent id is not a number")?;
    let (major, minor) = fields[2].split_once(':').ok_or("major:minor has no ':'")?;
    let major = major.parse().map_err(|_| "major is not a number")?;
    let minor = minor.parse().map_err(|_| "minor is not a number")?;
    Ok(MountInfo {
        id,
        parent_id,
        major,
        minor,
        root: unescape_path(fields[3]),
        mount_point: unescape_path(fields[4]),
        mount_options: split_options(fields[5]),
        optional_fields: fields[6..sep].iter().filter(|f| !f.is_empty()).map(|f| f.to_string()).collect(),
        fs_type: unescape_string(post[0]),
        source: unescape_string(post[1]),
        // Everything after the source belongs to the super options (they are comma-separated, and a
        // stray space would only come from a kernel bug, but keep it rather than fail).
        super_options: split_options(&post[2..].join(" ")),
    })
}

/// Reads and parses this process's mount table.
pub fn read_mountinfo() -> Result<Vec<MountInfo>> {
    read_mountinfo_from(Path::new(PROC_MOUNTINFO))
}

/// Reads and parses a mountinfo file (e.g. `/proc/<pid>/mountinfo` of another namespace).
pub fn read_mountinfo_from(path: &Path) -> Result<Vec<MountInfo>> {
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::ReadMountTable { path: path.to_path_buf(), source })?;
    parse_mountinfo(&text)
}

/// The topmost mount whose mount point is exactly `path` (later entries overmount earlier ones).
pub fn find_by_mount_point<'a>(entries: &'a [MountInfo], path: &Path) -> Option<&'a MountInfo> {
    entries.iter().rev().find(|m| m.mount_point == path)
}

/// Whether `path` equals `base` or lies beneath it, comparing whole components (lexically, like
/// mount-utils' `PathWithinBase`; `/a/bc` is not within `/a/b`).
pub fn path_within_base(path: &Path, base: &Path) -> bool {
    path.starts_with(base)
}

/// Other mount points that show the same directory of the same file system as the mount at (or containing)
/// `path`: bind mounts of it and mounts it was bound from (kubelet's `GetMountRefs`/`SearchMountPoints`).
/// `path` must be canonical. `None` when no mount contains `path`.
pub fn mount_refs(entries: &[MountInfo], path: &Path) -> Option<Vec<PathBuf>> {
    let owner = entries.iter().rev().find(|m| path_within_base(path, &m.mount_point))?;
    let rel = path.strip_prefix(&owner.mount_point).ok()?;
    let root = if rel.as_os_str().is_empty() { owner.root.clone() } else { owner.root.join(rel) };
    Some(
        entries
            .iter()
            .filter(|m| m.id != owner.id && m.root == root && m.major == owner.major && m.minor == owner.minor)
            .map(|m| m.mount_point.clone())
            .collect(),
    )
}

/// [`mount_refs`] against this process's mount table, after resolving symlinks in `path`.
pub fn get_mount_refs(path: &Path) -> Result<Vec<PathBuf>> {
    let real = std::fs::canonicalize(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
    Ok(mount_refs(&read_mountinfo()?, &real).unwrap_or_default())
}

/// Kubelet's `IsLikelyNotMountPoint`: `true` when `path` is on the same device as its parent. Fast (two
/// stats) but blind to bind mounts within one file system; see [`is_mount_point`] for the exact answer.
/// A missing path is an error whose source is `NotFound`.
pub fn is_likely_not_mount_point(path: &Path) -> Result<bool> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
    let parent = parent_of(path);
    let pmeta = std::fs::metadata(&parent).map_err(|source| Error::Stat { path: parent.clone(), source })?;
    Ok(meta.dev() == pmeta.dev())
}

fn parent_of(path: &Path) -> PathBuf {
    let trimmed = path.components().collect::<PathBuf>();
    match trimmed.parent() {
        Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Some(p) => p.to_path_buf(),
        None => trimmed,
    }
}

/// Whether `path` is a mount point, exactly: a different device from its parent says yes at once; otherwise
/// the canonical path is looked up in this process's mount table (which also sees bind mounts).
pub fn is_mount_point(path: &Path) -> Result<bool> {
    if !is_likely_not_mount_point(path)? {
        return Ok(true);
    }
    let real = std::fs::canonicalize(path).map_err(|source| Error::Stat { path: path.to_path_buf(), source })?;
    if real.components().all(|c| matches!(c, Component::RootDir)) {
        return Ok(true);
    }
    Ok(find_by_mount_point(&read_mountinfo()?, &real).is_some())
}

/// errnos that stat returns on a mount whose backend is gone (kubelet's `IsCorruptedMnt`).
const CORRUPTED_ERRNOS: &[i32] = &[libc::ENOTCONN, libc::ESTALE, libc::EIO, libc::EACCES, libc::EHOSTDOWN];

/// Whether an I/O error says the mount at that path is corrupted (FUSE daemon gone, stale NFS handle…): such
/// a path must be unmounted without being stat'ed again.
pub fn is_corrupted_mount_error(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(|e| CORRUPTED_ERRNOS.contains(&e))
}

/// Like [`is_corrupted_mount_error`] for this crate's errors (looks through the source chain).
pub fn is_corrupted_mount(err: &Error) -> bool {
    err.raw_os_error().is_some_and(|e| CORRUPTED_ERRNOS.contains(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kvol-csi's case, from when it had its own parser.
    #[test]
    fn unescapes_octal_sequences_only() {
        assert_eq!(unescape_string("a\\040b\\134c"), "a b\\c");
        assert_eq!(unescape_string("a\\x"), "a\\x");
    }

    /// kvol-flex's sample, from when it had its own parser: loop devices, an escaped space, optional fields,
    /// a bind of a subdirectory, an NFS source.
    #[test]
    fn parses_fields_and_unescapes_paths_of_kvol_flex_mounts() {
        const SAMPLE: &str = "\
22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw,lowerdir=/a
36 22 7:3 / /var/lib/kvol/plugins/kubernetes.io/flexvolume/kvol/loop/mounts/pv1 rw,relatime - ext4 /dev/loop3 rw
37 22 7:3 / /tmp/pod\\040dir rw,relatime shared:5 master:2 - ext4 /dev/loop3 rw
38 22 0:50 /sub /mnt/b rw - tmpfs tmpfs rw
39 22 0:51 / /mnt/nfs rw - nfs4 127.0.0.1:/export rw,vers=4.2
";
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 5);
        assert_eq!((mounts[1].major, mounts[1].minor), (7, 3));
        assert_eq!(mounts[1].source, "/dev/loop3");
        assert_eq!(mounts[2].mount_point, Path::new("/tmp/pod dir"), "optional fields skipped");
        assert_eq!(mounts[3].root, Path::new("/sub"));
        assert_eq!(mounts[4].fs_type, "nfs4");
        assert_eq!(mounts[4].source, "127.0.0.1:/export");
        assert_eq!(find_by_mount_point(&mounts, Path::new("/mnt/b")).unwrap().fs_type, "tmpfs");
        assert!(find_by_mount_point(&mounts, Path::new("/mnt")).is_none());
        let err = parse_mountinfo(&format!("{SAMPLE}bad line\n")).unwrap_err();
        assert!(matches!(err, Error::ParseMountInfo { line: 6, .. }), "{err}");
    }

    // Lines taken from real machines (this one, a kubelet node, the proc(5) example).
    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
412 27 0:55 / /var/lib/kubelet/pods/9a1f/volumes/kubernetes.io~empty-dir/cache rw,relatime shared:210 - tmpfs tmpfs rw,size=16384k
413 27 254:0 /srv/data\\040dir /mnt/with\\040space\\011tab rw,relatime shared:1 master:7 - ext4 /dev/vda rw
414 27 0:60 / /mnt/back\\134slash rw,nosuid,nodev - fuse.bindfs bindfs rw,user_id=0,group_id=0
415 27 0:61 / /mnt/nosrc rw - tmpfs  rw
";

    #[test]
    fn parses_every_field_of_a_plain_line() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m.len(), 7);
        let proc_ = &m[0];
        assert_eq!((proc_.id, proc_.parent_id, proc_.major, proc_.minor), (22, 27, 0, 21));
        assert_eq!(proc_.root, Path::new("/"));
        assert_eq!(proc_.mount_point, Path::new("/proc"));
        assert_eq!(proc_.mount_options, vec!["rw", "relatime"]);
        assert!(proc_.optional_fields.is_empty());
        assert_eq!((proc_.fs_type.as_str(), proc_.source.as_str()), ("proc", "proc"));
        assert_eq!(proc_.super_options, vec!["rw"]);
        assert_eq!(m[1].super_option("resuid"), Some("65534"));
        assert_eq!(m[1].super_option("discard"), Some(""));
    }

    #[test]
    fn keeps_optional_fields_and_reads_propagation() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m[2].optional_fields, vec!["master:1"]);
        assert_eq!(m[2].propagation(), "slave");
        assert_eq!(m[3].propagation(), "shared");
        assert_eq!(m[4].optional_fields, vec!["shared:1", "master:7"]);
        assert_eq!(m[4].propagation(), "shared+slave");
        assert_eq!(m[0].propagation(), "private");
        assert_eq!(m[3].super_option("size"), Some("16384k"));
    }

    #[test]
    fn decodes_octal_escapes_in_paths() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m[4].root, Path::new("/srv/data dir"));
        assert_eq!(m[4].mount_point, Path::new("/mnt/with space\ttab"));
        assert_eq!(m[5].mount_point, Path::new("/mnt/back\\slash"));
        assert_eq!(m[5].fs_type, "fuse.bindfs");
    }

    #[test]
    fn accepts_an_empty_source() {
        let m = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(m[6].source, "");
        assert_eq!(m[6].super_options, vec!["rw"]);
    }

    #[test]
    fn decodes_non_utf8_bytes_into_the_path() {
        let m = parse_mountinfo("1 0 0:1 / /mnt/\\377x rw - tmpfs t rw\n").unwrap();
        assert_eq!(m[0].mount_point.as_os_str().as_encoded_bytes(), b"/mnt/\xffx");
    }

    #[test]
    fn leaves_a_backslash_without_three_octal_digits_alone() {
        assert_eq!(unescape("a\\0b\\"), b"a\\0b\\".to_vec());
        assert_eq!(unescape("\\040"), b" ".to_vec());
        assert_eq!(unescape("x\\0401"), b"x 1".to_vec());
    }

    #[test]
    fn rejects_malformed_lines_naming_the_line() {
        struct Case {
            text: &'static str,
            reason: &'static str,
        }
        let cases = [
            Case { text: "22 27 0:21 / /proc rw proc proc rw", reason: "no ' - ' separator" },
            Case { text: "x 27 0:21 / /proc rw - proc proc rw", reason: "mount id is not a number" },
            Case { text: "22 27 021 / /proc rw - proc proc rw", reason: "major:minor has no ':'" },
            Case { text: "22 27 0:21 / /proc - proc proc rw", reason: "fewer than 6 fields before the separator" },
            Case { text: "22 27 0:21 / /proc rw - proc", reason: "fewer than 2 fields after the separator" },
        ];
        for c in cases {
            let text = format!("22 27 0:21 / /proc rw - proc proc rw\n{}\n", c.text);
            match parse_mountinfo(&text) {
                Err(Error::ParseMountInfo { line, reason, .. }) => {
                    assert_eq!((line, reason), (2, c.reason), "{}", c.text)
                }
                other => panic!("{}: {other:?}", c.text),
            }
        }
    }

    #[test]
    fn finds_the_topmost_mount_at_a_path() {
        let text =
            "1 0 0:1 / / rw - ext4 /dev/a rw\n2 1 0:2 / /m rw - tmpfs first rw\n3 2 0:3 / /m rw - tmpfs second rw\n";
        let m = parse_mountinfo(text).unwrap();
        assert_eq!(find_by_mount_point(&m, Path::new("/m")).unwrap().source, "second");
        assert!(find_by_mount_point(&m, Path::new("/m/x")).is_none());
    }

    #[test]
    fn mount_refs_finds_bind_mounts_of_the_same_directory() {
        let text = "\
1 0 8:1 / / rw - ext4 /dev/sda1 rw
2 1 8:16 / /var/lib/kubelet/plugins/pd/mounts/vol1 rw - ext4 /dev/sdb rw
3 1 8:16 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~gce-pd/vol1 rw - ext4 /dev/sdb rw
4 1 8:16 /sub /var/lib/kubelet/pods/u2/volumes/kubernetes.io~gce-pd/other rw - ext4 /dev/sdb rw
5 1 8:1 /srv /mnt/srv rw - ext4 /dev/sda1 rw
";
        let m = parse_mountinfo(text).unwrap();
        let refs = mount_refs(&m, Path::new("/var/lib/kubelet/plugins/pd/mounts/vol1")).unwrap();
        assert_eq!(refs, vec![PathBuf::from("/var/lib/kubelet/pods/u1/volumes/kubernetes.io~gce-pd/vol1")]);
        // A directory below a mount: /srv on the root file system is bound at /mnt/srv.
        let refs = mount_refs(&m, Path::new("/srv")).unwrap();
        assert_eq!(refs, vec![PathBuf::from("/mnt/srv")]);
    }

    #[test]
    fn path_within_base_compares_whole_components() {
        assert!(path_within_base(Path::new("/a/b/c"), Path::new("/a/b")));
        assert!(path_within_base(Path::new("/a/b"), Path::new("/a/b")));
        assert!(!path_within_base(Path::new("/a/bc"), Path::new("/a/b")));
    }

    #[test]
    fn classifies_corrupted_mount_errnos() {
        for e in [libc::ENOTCONN, libc::ESTALE, libc::EIO, libc::EACCES, libc::EHOSTDOWN] {
            assert!(is_corrupted_mount_error(&io::Error::from_raw_os_error(e)));
        }
        assert!(!is_corrupted_mount_error(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(!is_corrupted_mount_error(&io::Error::other("x")));
    }

    #[test]
    fn the_real_mount_table_parses_and_root_is_a_mount_point() {
        let m = read_mountinfo().unwrap();
        assert!(m.iter().any(|e| e.mount_point == Path::new("/")));
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_likely_not_mount_point(Path::new("/proc")).unwrap());
    }
}
