//! Real-mount tests: run as root on temporary directories, skip with a message otherwise. Each test owns
//! its work dir, so they run in parallel; everything mounted or attached is undone even on failure.

mod util;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use kvol_mount::atomic_writer::{AtomicWriter, FileProjection};
use kvol_mount::{
    bind_subpath, clean_subpaths, cleanup_mount_point, loopdev, mkfs_if_unformatted, mount_tmpfs, safe_path, Error,
    ErrorClass, FormatOutcome, FsGroupChangePolicy, Mounter, RealMounter,
};
use util::{mount_at, mount_count, run, write_errno, Workdir};

fn opts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tmpfs_enforces_its_size_limit_and_cleanup_removes_it() {
    require_root!();
    let w = Workdir::new("tmpfs");
    let m = RealMounter::new();
    let t = w.mkdir("mem");
    w.track_mount(&t);
    mount_tmpfs(&m, &t, Some(1 << 20)).unwrap();
    mount_tmpfs(&m, &t, Some(1 << 20)).unwrap();
    assert_eq!(mount_count(&t), 1, "idempotent");
    let info = mount_at(&t).unwrap();
    assert_eq!(info.fs_type, "tmpfs");
    assert_eq!(info.super_option("size"), Some("1024k"));
    std::fs::write(t.join("small"), vec![0u8; 512 << 10]).unwrap();
    assert_eq!(write_errno(&t.join("big"), &vec![0u8; 1 << 20]), Some(libc::ENOSPC));
    assert!(m.is_mount_point(&t).unwrap());
    assert!(!m.is_likely_not_mount_point(&t).unwrap());
    cleanup_mount_point(&m, &t).unwrap();
    assert!(!t.exists());
    cleanup_mount_point(&m, &t).unwrap();
}

#[test]
fn read_only_bind_refuses_writes_while_the_source_stays_writable() {
    require_root!();
    let w = Workdir::new("robind");
    let m = RealMounter::new();
    let src = w.mkdir("src");
    let dst = w.mkdir("dst");
    std::fs::write(src.join("f"), b"before").unwrap();
    w.track_mount(&dst);
    m.mount(&src.to_string_lossy(), &dst, "", &opts(&["bind", "ro"])).unwrap();
    assert!(mount_at(&dst).unwrap().is_read_only());
    assert_eq!(write_errno(&dst.join("f"), b"x"), Some(libc::EROFS));
    assert_eq!(write_errno(&dst.join("new"), b"x"), Some(libc::EROFS));
    std::fs::write(src.join("f"), b"after").unwrap();
    assert_eq!(std::fs::read(dst.join("f")).unwrap(), b"after");
    // Same file system: the device heuristic cannot see this mount, mountinfo can.
    assert!(m.is_likely_not_mount_point(&dst).unwrap());
    assert!(m.is_mount_point(&dst).unwrap());
    assert!(kvol_mount::mountinfo::get_mount_refs(&src).unwrap().contains(&dst));
    m.unmount(&dst).unwrap();
    m.unmount(&dst).unwrap();
    assert!(!m.is_mount_point(&dst).unwrap());
    assert_eq!(std::fs::read(src.join("f")).unwrap(), b"after");
}

#[test]
fn bind_flags_are_applied_by_the_remount() {
    require_root!();
    let w = Workdir::new("bindflags");
    let m = RealMounter::new();
    let src = w.mkdir("src");
    let dst = w.mkdir("dst");
    w.track_mount(&dst);
    m.mount(&src.to_string_lossy(), &dst, "", &opts(&["bind", "nosuid", "nodev", "noexec"])).unwrap();
    let info = mount_at(&dst).unwrap();
    for o in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(info.mount_options.iter().any(|x| x == o), "{o} in {:?}", info.mount_options);
    }
    // A later read-only remount keeps them.
    m.mount("", &dst, "", &opts(&["remount", "bind", "ro"])).unwrap();
    let info = mount_at(&dst).unwrap();
    assert!(info.is_read_only() && info.mount_options.iter().any(|x| x == "noexec"), "{:?}", info.mount_options);
}

#[test]
fn propagation_reaches_an_rslave_copy_of_an_rshared_subtree() {
    require_root!();
    let w = Workdir::new("propagation");
    let m = RealMounter::new();
    let shared = w.mkdir("shared");
    let copy = w.mkdir("copy");
    w.track_mount(&shared);
    w.track_mount(&copy);
    m.mount(&shared.to_string_lossy(), &shared, "", &opts(&["bind", "rshared"])).unwrap();
    assert_eq!(mount_at(&shared).unwrap().propagation(), "shared");
    m.mount(&shared.to_string_lossy(), &copy, "", &opts(&["rbind", "rslave"])).unwrap();
    assert_eq!(mount_at(&copy).unwrap().propagation(), "slave");

    let sub = w.mkdir("shared/sub");
    w.track_mount(&copy.join("sub"));
    w.track_mount(&sub);
    mount_tmpfs(&m, &sub, Some(1 << 20)).unwrap();
    std::fs::write(sub.join("hello"), b"from shared").unwrap();
    let seen = copy.join("sub");
    assert!(m.is_mount_point(&seen).unwrap(), "the new submount propagated to the slave");
    assert_eq!(std::fs::read(seen.join("hello")).unwrap(), b"from shared");

    // Slave: mounts made in the copy do not go back.
    let back = w.mkdir("shared/back");
    let back_in_copy = copy.join("back");
    w.track_mount(&back);
    w.track_mount(&back_in_copy);
    mount_tmpfs(&m, &back_in_copy, None).unwrap();
    assert!(!m.is_mount_point(&back).unwrap());

    m.unmount(&sub).unwrap();
    assert!(!m.is_mount_point(&seen).unwrap(), "the unmount propagated too");
}

#[test]
fn a_failed_mount_leaves_nothing_mounted() {
    require_root!();
    let w = Workdir::new("failmount");
    let m = RealMounter::new();
    let dst = w.mkdir("dst");
    w.track_mount(&dst);
    let err = m.mount(&w.path().join("missing").to_string_lossy(), &dst, "", &opts(&["bind", "ro"])).unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err}");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(err.class(), ErrorClass::Transient);
    let err = m.mount("tmpfs", &dst, "nosuchfs", &[]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENODEV), "{err}");
    assert_eq!(err.class(), ErrorClass::Final);
    assert_eq!(mount_count(&dst), 0);
}

#[test]
fn nfs_goes_through_mount8_and_its_output_is_in_the_error() {
    require_root!();
    require_tools!("mount");
    let w = Workdir::new("nfs");
    let m = RealMounter { helper_timeout: std::time::Duration::from_secs(30), ..RealMounter::new() };
    let dst = w.mkdir("nfs");
    w.track_mount(&dst);
    match m.mount("127.0.0.1:/export", &dst, "nfs", &opts(&["ro", "vers=4"])) {
        Err(Error::MountHelper { output, status, .. }) => {
            assert!(!output.is_empty(), "mount(8) said nothing ({status})");
            eprintln!("mount -t nfs failed as expected here: {output}");
        }
        // A machine with an NFS client and nothing on 127.0.0.1 also fails, maybe by timeout.
        Err(e @ Error::CommandTimedOut { .. }) => assert_eq!(e.class(), ErrorClass::Uncertain),
        other => panic!("expected a helper failure, got {other:?}"),
    }
    assert_eq!(mount_count(&dst), 0);
    cleanup_mount_point(&m, &dst).unwrap();
    assert!(!dst.exists());
}

#[test]
fn cleanup_unmounts_stacked_mounts() {
    require_root!();
    let w = Workdir::new("stacked");
    let m = RealMounter::new();
    let t = w.mkdir("t");
    w.track_mount(&t);
    mount_tmpfs(&m, &t, Some(1 << 20)).unwrap();
    m.mount("tmpfs", &t, "tmpfs", &opts(&["size=1m"])).unwrap();
    assert_eq!(mount_count(&t), 2);
    cleanup_mount_point(&m, &t).unwrap();
    assert_eq!(mount_count(&t), 0);
    assert!(!t.exists());
}

fn subpath_volume(w: &Workdir) -> std::path::PathBuf {
    let v = w.mkdir("pods/u1/volumes/kubernetes.io~empty-dir/data");
    std::fs::create_dir_all(v.join("app/conf")).unwrap();
    std::fs::write(v.join("app/conf/settings"), b"inside the volume").unwrap();
    v
}

#[test]
fn subpath_binds_a_directory_and_a_file_idempotently() {
    require_root!();
    let w = Workdir::new("subpath");
    let m = RealMounter::new();
    let v = subpath_volume(&w);
    let root = w.path();
    let t_dir = kvol_mount::paths::pod_volume_subpath_dir(root, "u1", "data", "app", 0);
    let t_file = kvol_mount::paths::pod_volume_subpath_dir(root, "u1", "data", "app", 1);
    w.track_mount(&t_dir);
    w.track_mount(&t_file);
    bind_subpath(&m, &v, "app/conf", &t_dir).unwrap();
    bind_subpath(&m, &v, "app/conf", &t_dir).unwrap();
    bind_subpath(&m, &v, "app/conf/settings", &t_file).unwrap();
    bind_subpath(&m, &v, "app/conf/settings", &t_file).unwrap();
    assert_eq!(mount_count(&t_dir), 1);
    assert_eq!(mount_count(&t_file), 1);
    assert_eq!(std::fs::read(t_dir.join("settings")).unwrap(), b"inside the volume");
    assert_eq!(std::fs::read(&t_file).unwrap(), b"inside the volume");
    let info = mount_at(&t_dir).unwrap();
    assert!(info.root.ends_with("app/conf"), "{info:?}");

    // Another subPath for the same target replaces the old bind.
    bind_subpath(&m, &v, "app", &t_dir).unwrap();
    assert_eq!(mount_count(&t_dir), 1);
    assert!(t_dir.join("conf").is_dir());

    clean_subpaths(&m, &root.join("pods/u1"), "data").unwrap();
    assert!(!root.join("pods/u1/volume-subpaths").exists());
    assert_eq!(std::fs::read(v.join("app/conf/settings")).unwrap(), b"inside the volume", "data untouched");
    clean_subpaths(&m, &root.join("pods/u1"), "data").unwrap();
}

#[test]
fn subpath_escapes_through_symlinks_dotdot_and_absolute_paths_are_refused() {
    require_root!();
    let w = Workdir::new("escape");
    let m = RealMounter::new();
    let v = subpath_volume(&w);
    std::os::unix::fs::symlink("/etc", v.join("etc-link")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../../../../etc", v.join("app/up")).unwrap();
    let t = w.path().join("pods/u1/volume-subpaths/data/c/0");
    w.track_mount(&t);
    struct Case {
        sub: &'static str,
        invalid: bool,
    }
    let cases = [
        Case { sub: "etc-link", invalid: false },
        Case { sub: "etc-link/passwd", invalid: false },
        Case { sub: "app/up/passwd", invalid: false },
        Case { sub: "../../../../etc", invalid: true },
        Case { sub: "app/../../etc", invalid: true },
        Case { sub: "/etc", invalid: true },
    ];
    for c in cases {
        let err = bind_subpath(&m, &v, c.sub, &t).unwrap_err();
        if c.invalid {
            assert!(matches!(err, Error::InvalidPath { .. }), "{}: {err}", c.sub);
        } else {
            assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{}: {err}", c.sub);
        }
        assert_eq!(err.class(), ErrorClass::Final, "{}", c.sub);
        assert_eq!(mount_count(&t), 0, "{}", c.sub);
        assert!(!t.exists(), "{}", c.sub);
    }
    // safe_make_dir refuses to create through the link.
    assert!(safe_path::safe_make_dir(&v, "etc-link/kvol-should-not-exist", 0o755).is_err());
    assert!(!Path::new("/etc/kvol-should-not-exist").exists());
}

#[test]
fn a_symlink_swapped_in_after_validation_does_not_redirect_the_bind() {
    require_root!();
    let w = Workdir::new("swap");
    let m = RealMounter::new();
    let v = subpath_volume(&w);
    let verified = safe_path::VerifiedPath::open(&v, "app/conf").unwrap();
    // The attacker (who controls the volume's content) swaps the directory for a symlink to /etc.
    std::fs::rename(v.join("app/conf"), v.join("app/conf-moved")).unwrap();
    std::os::unix::fs::symlink("/etc", v.join("app/conf")).unwrap();
    let t = w.path().join("pods/u1/volume-subpaths/data/c/0");
    w.track_mount(&t);
    safe_path::bind_verified(&m, &verified, &t).unwrap();
    assert_eq!(std::fs::read(t.join("settings")).unwrap(), b"inside the volume");
    assert!(!t.join("passwd").exists(), "bound /etc");
    // A fresh open of the swapped path is refused.
    assert!(safe_path::VerifiedPath::open(&v, "app/conf").is_err());
    cleanup_mount_point(&m, &t).unwrap();
}

#[test]
fn safe_make_dir_creates_missing_components_with_the_mode() {
    require_root!();
    let w = Workdir::new("mkdir");
    let v = subpath_volume(&w);
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    safe_path::safe_make_dir(&v, "app/x/y/z", 0o777).unwrap();
    nix::sys::stat::umask(old);
    for p in ["app/x", "app/x/y", "app/x/y/z"] {
        assert_eq!(std::fs::metadata(v.join(p)).unwrap().mode() & 0o7777, 0o777, "{p}");
    }
}

#[test]
fn atomic_writer_readers_never_see_a_mix() {
    require_root!();
    let w = Workdir::new("atomic");
    let dir = w.mkdir("cm");
    let writer = AtomicWriter::new(&dir, "atomicity test").unwrap();
    // Large files, so a partially written one would show.
    let payload = |v: u8| -> BTreeMap<String, FileProjection> {
        ["a", "b", "nested/c"]
            .iter()
            .map(|k| (k.to_string(), FileProjection::new(vec![b'0' + v; 64 << 10], 0o644)))
            .collect()
    };
    writer.write(&payload(1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let consistent = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, consistent, dir) = (stop.clone(), consistent.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut mixes = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                // Resolve ..data once, then read the whole set through that directory, as a consumer that
                // wants a consistent set must.
                let Ok(ts) = std::fs::read_link(dir.join("..data")) else { continue };
                let base = dir.join(ts);
                let files: Result<Vec<Vec<u8>>, _> =
                    ["a", "b", "nested/c"].iter().map(|k| std::fs::read(base.join(k))).collect();
                let Ok(files) = files else { continue }; // the old set was removed under us: retry
                let firsts: Vec<u8> = files.iter().map(|f| f[0]).collect();
                let whole = files.iter().all(|f| f.len() == 64 << 10 && f.iter().all(|b| *b == f[0]));
                if !whole || firsts.iter().any(|b| *b != firsts[0]) {
                    mixes.push(firsts);
                } else {
                    consistent.fetch_add(1, Ordering::Relaxed);
                }
                // Each visible file on its own is always whole.
                if let Ok(a) = std::fs::read(dir.join("a")) {
                    if a.len() != 64 << 10 || a.iter().any(|b| *b != a[0]) {
                        mixes.push(vec![0xff]);
                    }
                }
            }
            mixes
        })
    };
    for i in 0..300 {
        writer.write(&payload(1 + (i % 2) as u8)).unwrap();
    }
    // Let the reader get a few reads in even on a slow machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while consistent.load(Ordering::Relaxed) < 50 && std::time::Instant::now() < deadline {
        writer.write(&payload(1)).unwrap();
        writer.write(&payload(2)).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mixes = reader.join().unwrap();
    assert!(consistent.load(Ordering::Relaxed) >= 50, "the reader got too few whole reads");
    assert!(mixes.is_empty(), "reader saw mixed sets: {mixes:?}");
    // Only the current data remains.
    let hidden: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
}

#[test]
fn atomic_writer_applies_fs_group_and_fs_user() {
    require_root!();
    let w = Workdir::new("atomicgid");
    let dir = w.mkdir("secret");
    let writer = AtomicWriter::new(&dir, "fsgroup").unwrap().with_fs_group(Some(4321));
    let mut p = BTreeMap::new();
    p.insert("token".to_string(), FileProjection { data: b"t".to_vec(), mode: 0o600, fs_user: Some(1001) });
    p.insert("d/ca.crt".to_string(), FileProjection::new(b"c".to_vec(), 0o400));
    writer.write(&p).unwrap();
    let token = std::fs::metadata(dir.join("token")).unwrap();
    assert_eq!((token.uid(), token.gid()), (1001, 4321));
    assert_eq!(token.mode() & 0o7777, 0o640);
    let d = std::fs::metadata(dir.join("d")).unwrap();
    assert_eq!(d.gid(), 4321);
    assert_eq!(d.mode() & 0o2000, 0o2000, "setgid dir");
    assert_eq!(writer.write(&p).unwrap(), kvol_mount::WriteOutcome::Unchanged);
}

#[test]
fn ownership_sets_group_setgid_and_permissions_and_skips_symlinks() {
    require_root!();
    let w = Workdir::new("owner");
    let vol = w.mkdir("vol");
    let outside = w.path().join("outside");
    std::fs::write(&outside, b"not ours").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir_all(vol.join("sub")).unwrap();
    std::fs::write(vol.join("sub/file"), b"x").unwrap();
    std::fs::set_permissions(vol.join("sub/file"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(vol.join("run.sh"), b"#!/bin/sh").unwrap();
    std::fs::set_permissions(vol.join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&outside, vol.join("link")).unwrap();

    kvol_mount::set_volume_ownership(&vol, 2345, FsGroupChangePolicy::Always, false).unwrap();
    let md = |p: &str| std::fs::symlink_metadata(vol.join(p)).unwrap();
    assert_eq!(md("sub/file").gid(), 2345);
    assert_eq!(md("sub/file").mode() & 0o7777, 0o660);
    assert_eq!(md("run.sh").mode() & 0o7777, 0o770);
    assert_eq!(md("sub").mode() & 0o2070, 0o2070, "setgid + group rwx");
    assert_eq!(std::fs::metadata(&vol).unwrap().gid(), 2345);
    assert_eq!(md("link").gid(), 2345, "the link itself is chowned");
    let o = std::fs::metadata(&outside).unwrap();
    assert_eq!((o.gid(), o.mode() & 0o7777), (0, 0o600), "the symlink's target is untouched");

    // OnRootMismatch: the root matches, so a drifted child is left alone; Always fixes it.
    std::os::unix::fs::lchown(vol.join("sub/file"), None, Some(0)).unwrap();
    kvol_mount::set_volume_ownership(&vol, 2345, FsGroupChangePolicy::OnRootMismatch, false).unwrap();
    assert_eq!(md("sub/file").gid(), 0);
    kvol_mount::set_volume_ownership(&vol, 2345, FsGroupChangePolicy::Always, false).unwrap();
    assert_eq!(md("sub/file").gid(), 2345);
    // A different group is a root mismatch.
    kvol_mount::set_volume_ownership(&vol, 3456, FsGroupChangePolicy::OnRootMismatch, true).unwrap();
    assert_eq!(md("sub/file").gid(), 3456);
}

fn sparse_file(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

#[test]
fn loop_device_with_ext4_attaches_formats_mounts_and_detaches() {
    require_root!();
    require_tools!("blkid", "mkfs.ext4");
    let w = Workdir::new("loopext4");
    let m = RealMounter::new();
    let img = w.path().join("disk.img");
    sparse_file(&img, 64 << 20);
    let dev = loopdev::attach(&img).unwrap();
    w.track_loop(&dev);
    assert_eq!(loopdev::attach(&img).unwrap(), dev, "idempotent");
    assert_eq!(loopdev::find_by_backing_file(&img).unwrap(), Some(dev.clone()));
    assert_eq!(loopdev::backing_file(&dev).unwrap().unwrap(), img);

    assert_eq!(mkfs_if_unformatted(&dev, "ext4").unwrap(), FormatOutcome::Formatted);
    assert_eq!(mkfs_if_unformatted(&dev, "ext4").unwrap(), FormatOutcome::AlreadyFormatted);
    let err = mkfs_if_unformatted(&dev, "xfs").unwrap_err();
    assert!(matches!(err, Error::FormatMismatch { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Final);

    let mnt = w.mkdir("mnt");
    w.track_mount(&mnt);
    m.mount(&dev.to_string_lossy(), &mnt, "ext4", &opts(&["nosuid"])).unwrap();
    assert!(!m.is_likely_not_mount_point(&mnt).unwrap());
    std::fs::write(mnt.join("data"), b"persisted").unwrap();
    // Mounted: detaching must not lose it (the kernel refuses or defers; the data stays).
    cleanup_mount_point(&m, &mnt).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    m.mount(&dev.to_string_lossy(), &mnt, "ext4", &[]).unwrap();
    assert_eq!(std::fs::read(mnt.join("data")).unwrap(), b"persisted");
    m.unmount(&mnt).unwrap();

    loopdev::detach(&dev).unwrap();
    loopdev::detach(&dev).unwrap();
    // The kernel clears the device asynchronously after LOOP_CLR_FD.
    for _ in 0..100 {
        if loopdev::find_by_backing_file(&img).unwrap().is_none() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(loopdev::find_by_backing_file(&img).unwrap(), None);
}

/// Regression (issue 11, "a detach that says Success while /dev/loopN stays bound"): `LOOP_CLR_FD` on a
/// device someone holds open only marks it, and the kernel releases it when the holder closes it. `detach`
/// returned `Ok` at once with the device still bound; it now waits for the release and fails clearly if it
/// does not come, and an attach of the file does not take a second device meanwhile.
#[test]
fn a_loop_detach_never_reports_success_while_the_device_stays_bound() {
    require_root!();
    let w = Workdir::new("loopheld");
    let img = w.path().join("disk.img");
    sparse_file(&img, 1 << 20);
    let dev = loopdev::attach(&img).unwrap();
    w.track_loop(&dev);
    let holder = std::fs::File::open(&dev).unwrap();

    let result = loopdev::detach(&dev);
    let bound = loopdev::devices_of(&img).unwrap();
    assert!(result.is_err() || bound.is_empty(), "detach answered Ok with {bound:?} still bound");
    let err = result.unwrap_err();
    assert!(matches!(err, Error::LoopBusy { .. }), "{err}");
    assert!(err.to_string().contains("is still bound to") && err.to_string().contains("held open"), "{err}");
    assert_eq!(bound.len(), 1, "the detach is pending: {bound:?}");
    assert!(bound[0].autoclear, "{bound:?}");
    assert_eq!(loopdev::find_by_backing_file(&img).unwrap(), None, "a pending detach is not a usable device");
    // An attach waits for the pending release rather than binding a second device to the file.
    let err = loopdev::attach(&img).unwrap_err();
    assert!(matches!(err, Error::LoopBusy { .. }), "{err}");
    assert_eq!(loopdev::devices_of(&img).unwrap().len(), 1);

    // A holder that lets go during the wait: the detach succeeds, and nothing is bound when it returns.
    let closer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(holder);
    });
    loopdev::detach(&dev).unwrap();
    assert_eq!(loopdev::devices_of(&img).unwrap(), []);
    closer.join().unwrap();
}

#[test]
fn loop_device_with_xfs_grows_online() {
    require_root!();
    require_tools!("blkid", "mkfs.xfs", "xfs_growfs");
    let w = Workdir::new("loopxfs");
    let m = RealMounter::new();
    let img = w.path().join("disk.img");
    sparse_file(&img, 320 << 20);
    let dev = loopdev::attach(&img).unwrap();
    w.track_loop(&dev);
    assert_eq!(mkfs_if_unformatted(&dev, "xfs").unwrap(), FormatOutcome::Formatted);
    assert_eq!(mkfs_if_unformatted(&dev, "xfs").unwrap(), FormatOutcome::AlreadyFormatted);
    let mnt = w.mkdir("mnt");
    w.track_mount(&mnt);
    m.mount(&dev.to_string_lossy(), &mnt, "xfs", &[]).unwrap();
    assert_eq!(mount_at(&mnt).unwrap().fs_type, "xfs");
    let before = nix::sys::statvfs::statvfs(&mnt).unwrap();
    sparse_file_grow(&img, 640 << 20);
    loopdev::refresh_capacity(&dev).unwrap();
    run("xfs_growfs", &[&mnt.to_string_lossy()]);
    let after = nix::sys::statvfs::statvfs(&mnt).unwrap();
    assert!(
        after.blocks() * after.fragment_size() > before.blocks() * before.fragment_size() + (200 << 20),
        "grew from {} to {} blocks",
        before.blocks(),
        after.blocks()
    );
    cleanup_mount_point(&m, &mnt).unwrap();
    loopdev::detach(&dev).unwrap();
}

fn sparse_file_grow(path: &Path, size: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(size).unwrap();
}

#[test]
fn loop_devices_beyond_eight_are_created_and_distinct() {
    require_root!();
    let w = Workdir::new("loopmany");
    let imgs: Vec<_> = (0..10)
        .map(|i| {
            let p = w.path().join(format!("d{i}.img"));
            sparse_file(&p, 1 << 20);
            p
        })
        .collect();
    // Attach in parallel to exercise the GET_FREE/SET_FD race handling.
    let devs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = imgs.iter().map(|p| s.spawn(move || loopdev::attach(p))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ok = Vec::new();
    for d in devs {
        let d = d.unwrap();
        w.track_loop(&d);
        ok.push(d);
    }
    let mut unique = ok.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{ok:?}");
    for (img, dev) in imgs.iter().zip(&ok) {
        assert_eq!(loopdev::find_by_backing_file(img).unwrap().as_ref(), Some(dev));
        assert!(dev.exists());
    }
    for d in &ok {
        loopdev::detach(d).unwrap();
    }
}
