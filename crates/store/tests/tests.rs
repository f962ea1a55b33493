//! The embedded store against its contract: preconditions, ranges, watches, compaction, durability, and a
//! property test against a plain map model.

use bytes::Bytes;
use kvol_store::{Error, EventType, Precondition, RangeOptions, SqliteOptions, SqliteStore, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("kvol.db"), SqliteOptions::default()).expect("open store")
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test]
async fn create_update_delete_follow_their_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    let a = s.put("/a".into(), b("1"), Precondition::MustNotExist).await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 1, 1));
    assert!(matches!(s.put("/a".into(), b("x"), Precondition::MustNotExist).await, Err(Error::AlreadyExists { .. })));
    let a2 = s.put("/a".into(), b("2"), Precondition::ModRevision(1)).await.unwrap();
    assert_eq!((a2.create_revision, a2.mod_revision, a2.version), (1, 2, 2));
    match s.put("/a".into(), b("3"), Precondition::ModRevision(1)).await {
        Err(Error::Conflict { expected: 1, actual: 2, .. }) => {}
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert!(matches!(s.put("/b".into(), b("x"), Precondition::ModRevision(1)).await, Err(Error::NotFound { .. })));
    assert!(matches!(s.delete("/b".into(), Precondition::None).await, Err(Error::NotFound { .. })));
    let gone = s.delete("/a".into(), Precondition::ModRevision(2)).await.unwrap();
    assert_eq!(gone.mod_revision, 3);
    assert_eq!(gone.value, b("2"));
    assert!(s.get("/a").unwrap().is_none());
    assert_eq!(s.current_revision(), 3, "failed writes consume no revision");
}

#[tokio::test]
async fn ranges_by_prefix_with_pagination() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for k in ["/p/a", "/p/b", "/p/c", "/q/a", "/pa"] {
        s.put(k.into(), b(k), Precondition::None).await.unwrap();
    }
    let all = s.range("/p/", &RangeOptions::default()).unwrap();
    assert_eq!(all.kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/p/a", "/p/b", "/p/c"]);
    assert_eq!(all.revision, 5);
    let page = s.range("/p/", &RangeOptions { limit: Some(2), start_after: None }).unwrap();
    assert_eq!((page.kvs.len(), page.remaining), (2, 1));
    let next = s.range("/p/", &RangeOptions { limit: Some(2), start_after: Some("/p/b".into()) }).unwrap();
    assert_eq!(next.kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["/p/c"]);
    assert_eq!(next.remaining, 0);
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    s.put("/w/a".into(), b("1"), Precondition::None).await.unwrap(); // rev 1
    s.put("/other".into(), b("x"), Precondition::None).await.unwrap(); // rev 2
    s.put("/w/a".into(), b("2"), Precondition::None).await.unwrap(); // rev 3
    let mut w = s.watch("/w/", 1).unwrap();
    s.delete("/w/a".into(), Precondition::None).await.unwrap(); // rev 4
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.event_type, e.revision(), e.kv.value.clone()), (EventType::Put, 3, b("2")));
    assert_eq!(e.prev.as_ref().map(|p| p.value.clone()), Some(b("1")));
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.event_type, e.revision()), (EventType::Delete, 4));
    assert_eq!(e.kv.value, b("2"), "a delete carries the last value");
    assert!(tokio::time::timeout(Duration::from_millis(50), w.next()).await.is_err(), "no event for other prefixes");
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    for i in 0..5 {
        s.put("/c".into(), b(&i.to_string()), Precondition::None).await.unwrap();
    }
    s.compact(3).await.unwrap();
    assert!(matches!(s.watch("/", 2), Err(Error::Compacted { requested: 2, compacted: 3 })));
    let mut w = s.watch("/", 3).unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 4);
    assert!(matches!(s.watch("/", 99), Err(Error::FutureRevision { .. })));
}

#[tokio::test]
async fn history_is_capped_automatically() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("db"), SqliteOptions { max_history: 10, ..Default::default() }).unwrap();
    for i in 0..40 {
        s.put(format!("/k{i}"), b("v"), Precondition::None).await.unwrap();
    }
    assert!(s.compacted_revision() >= 40 - 10 - 2, "compacted to {}", s.compacted_revision());
    assert!(s.watch("/", 1).is_err());
}

#[tokio::test]
async fn survives_reopen_with_state_history_and_revision() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(&dir);
        s.put("/a".into(), b("1"), Precondition::None).await.unwrap();
        s.put("/b".into(), b("2"), Precondition::None).await.unwrap();
        s.delete("/a".into(), Precondition::None).await.unwrap();
        s.compact(1).await.unwrap();
    }
    let s = open(&dir);
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.compacted_revision(), 1);
    assert!(s.get("/a").unwrap().is_none());
    assert_eq!(s.get("/b").unwrap().unwrap().value, b("2"));
    let mut w = s.watch("/", 1).unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().revision(), 2);
    let e = w.next().await.unwrap().unwrap();
    assert_eq!((e.event_type, e.revision()), (EventType::Delete, 3));
    let next = s.put("/c".into(), b("3"), Precondition::None).await.unwrap();
    assert_eq!(next.mod_revision, 4, "revisions continue after a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_all_land_with_distinct_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..200 {
                revs.push(s.put(format!("/c/{t}/{i}"), b("v"), Precondition::MustNotExist).await.unwrap().mod_revision);
            }
            revs
        }));
    }
    let mut revs: Vec<i64> = Vec::new();
    for t in tasks {
        revs.extend(t.await.unwrap());
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), 1600);
    assert_eq!(s.range("/c/", &RangeOptions::default()).unwrap().kvs.len(), 1600);
}

#[tokio::test]
async fn concurrent_updates_with_the_same_revision_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open(&dir));
    let base = s.put("/x".into(), b("0"), Precondition::None).await.unwrap();
    let futures: Vec<_> =
        (0..16).map(|i| s.put("/x".into(), b(&i.to_string()), Precondition::ModRevision(base.mod_revision))).collect();
    let results = futures::future::join_all(futures).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().filter(|r| r.is_err()).all(|r| matches!(r, Err(Error::Conflict { .. }))));
}

// The model spells out contains-then-insert on purpose: it mirrors the store's own precondition checks.
#[allow(clippy::map_entry)]
mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Create(u8, u8),
        Update(u8, u8),
        Delete(u8),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Create(k, v)),
            (0u8..6, any::<u8>()).prop_map(|(k, v)| Op::Update(k, v)),
            (0u8..6).prop_map(Op::Delete),
            Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn store_matches_a_map_model_across_reopens(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let mut s = open(&dir);
                let mut model: BTreeMap<String, (u8, i64)> = BTreeMap::new();
                let mut rev = 0i64;
                for op in ops {
                    match op {
                        Op::Create(k, v) => {
                            let key = format!("/m/{k}");
                            let r = s.put(key.clone(), Bytes::from(vec![v]), Precondition::MustNotExist).await;
                            if model.contains_key(&key) {
                                prop_assert!(matches!(r, Err(Error::AlreadyExists { .. })), "create of an existing key must fail");
                            } else {
                                rev += 1;
                                prop_assert_eq!(r.unwrap().mod_revision, rev);
                                model.insert(key, (v, rev));
                            }
                        }
                        Op::Update(k, v) => {
                            let key = format!("/m/{k}");
                            let expected = model.get(&key).map_or(1, |e| e.1);
                            let r = s.put(key.clone(), Bytes::from(vec![v]), Precondition::ModRevision(expected)).await;
                            if model.contains_key(&key) {
                                rev += 1;
                                prop_assert_eq!(r.unwrap().mod_revision, rev);
                                model.insert(key, (v, rev));
                            } else {
                                prop_assert!(r.is_err());
                            }
                        }
                        Op::Delete(k) => {
                            let key = format!("/m/{k}");
                            let r = s.delete(key.clone(), Precondition::None).await;
                            if model.remove(&key).is_some() {
                                rev += 1;
                                prop_assert_eq!(r.unwrap().mod_revision, rev);
                            } else {
                                prop_assert!(r.is_err());
                            }
                        }
                        Op::Reopen => {
                            drop(s);
                            s = open(&dir);
                        }
                    }
                    let got: BTreeMap<String, (u8, i64)> = s
                        .range("/m/", &RangeOptions::default())
                        .unwrap()
                        .kvs
                        .into_iter()
                        .map(|kv| (kv.key, (kv.value[0], kv.mod_revision)))
                        .collect();
                    prop_assert_eq!(&got, &model);
                    prop_assert_eq!(s.current_revision(), rev);
                }
                Ok(())
            })?;
        }
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `4m`) at `path`, or None (with the reason printed) where mounting is
    /// not allowed (not root, or in a container without the capability).
    fn mount(path: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path: path.to_path_buf() }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs at {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr)
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Issue 17, defect 8: a full disk answered `corrupt store: … database or disk is full`. The store is not
/// corrupt: the write is refused as `Error::Full`, nothing acknowledged is lost, and writes work again once
/// there is room.
#[tokio::test]
async fn a_full_disk_refuses_the_write_as_full_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "4m") else { return };
    // Room to free later: the disk is filled by the store itself, then this file goes.
    std::fs::write(mnt.join("ballast"), vec![0u8; 512 * 1024]).unwrap();
    let path = mnt.join("kvol.db");
    let s = SqliteStore::open(&path, SqliteOptions::default()).expect("open store");
    let value = Bytes::from(vec![b'x'; 64 * 1024]);
    let mut acknowledged = Vec::new();
    let refused = loop {
        assert!(acknowledged.len() < 200, "4 MiB held {} writes of 64 KiB", acknowledged.len());
        let key = format!("/k/{:03}", acknowledged.len());
        match s.put(key.clone(), value.clone(), Precondition::MustNotExist).await {
            Ok(kv) => acknowledged.push((key, kv.mod_revision)),
            Err(e) => break (key, e),
        }
    };
    let (refused_key, e) = refused;
    assert!(matches!(&e, Error::Full { key } if *key == refused_key), "a full disk is not {e:?}");
    let message = e.to_string();
    assert!(message.contains("store is full") && !message.contains("corrupt"), "{message}");
    assert!(s.get(&refused_key).unwrap().is_none(), "the refused write left nothing behind");
    assert_eq!(s.current_revision(), acknowledged.last().map_or(0, |(_, rev)| *rev), "no revision consumed");
    std::fs::remove_file(mnt.join("ballast")).unwrap();
    s.put(refused_key.clone(), b("small"), Precondition::MustNotExist).await.expect("a write once there is room");
    s.close();
    drop(s);
    let s = SqliteStore::open(&path, SqliteOptions::default()).expect("reopen");
    for (key, rev) in &acknowledged {
        let kv = s.get(key).unwrap().unwrap_or_else(|| panic!("acknowledged {key} lost"));
        assert_eq!((kv.mod_revision, kv.value.len()), (*rev, value.len()), "{key}");
    }
    assert_eq!(s.get(&refused_key).unwrap().unwrap().value, b("small"));
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Issue 17, defect 8: `kvol.db` and `kvol.db-wal` were 0644, readable by anyone the data directory let in.
#[tokio::test]
async fn the_database_files_are_private_and_an_older_store_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kvol.db");
    let wal = dir.path().join("kvol.db-wal");
    let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    s.put("/a".into(), b("1"), Precondition::None).await.unwrap();
    assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600), "the database and its WAL");
    drop(s);
    // As an older kvol left them.
    for file in [&path, &wal] {
        if file.exists() {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let s = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    s.put("/b".into(), b("2"), Precondition::None).await.unwrap();
    assert_eq!((mode(&path), mode(&wal)), (0o600, 0o600), "tightened on open");
    assert_eq!(s.get("/a").unwrap().unwrap().value, b("1"));
}
