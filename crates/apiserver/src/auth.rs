//! Authentication: bearer tokens from a static token file in kube-apiserver's format
//! (`token,user,uid,"group1,group2"`), and the local unix socket, whose 0600 mode already limits it to root.
//! The admin token is generated on first start; anonymous requests are refused.
//!
//! The file is the only place a token can be revoked, so it is checked for changes (a `stat`) at most once a
//! second on the request path, and at once when an unknown token arrives: a removed line stops working within
//! about a second, with no watcher thread to keep alive.

use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a request may make the token file be checked for changes.
const RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name, e.g. `admin` or `system:node:n1`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

impl User {
    /// The identity of the local unix socket.
    pub fn local_admin() -> User {
        User { name: "system:admin".into(), groups: vec!["system:masters".into()] }
    }
}

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP: a bearer token is required.
    Tls,
    /// The local unix socket (mode 0600).
    Unix,
}

/// The token file, loaded in memory and reloaded when it changes (new node tokens need no restart, removed
/// ones stop working).
pub struct Tokens {
    path: PathBuf,
    users: RwLock<HashMap<String, User>>,
    /// What the file looked like when it was last read, and when it was last checked.
    checked: Mutex<Checked>,
}

struct Checked {
    loaded: Option<FileStamp>,
    at: Instant,
}

/// What identifies one version of the token file without reading it. Modification times can be coarse (a
/// rewrite within the same tick keeps the time), so the size, inode and change time are compared too, and a
/// file changed within [`RECHECK_INTERVAL`] of being read is read again on the next check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// Whether the file changed so recently that another change in the same clock tick could go unseen.
    fn is_recent(&self) -> bool {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let changed = Duration::new(self.mtime.0.max(self.ctime.0).max(0) as u64, 0);
        now.saturating_sub(changed) <= RECHECK_INTERVAL + Duration::from_secs(1)
    }
}

/// Errors reading or writing the token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read or written.
    #[error("token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("token file {path} line {line}: {why}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

fn random_token() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..40).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

impl Tokens {
    /// Load `path`, creating it with an admin token when missing. Returns the tokens and the admin token.
    pub fn load_or_create(path: &Path) -> Result<(Tokens, String), TokenError> {
        let io = |source| TokenError::Io { path: path.to_path_buf(), source };
        if !path.exists() {
            let token = random_token();
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io)?;
            writeln!(f, "{token},admin,admin,\"system:masters\"").map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let (users, admin) = parse(path)?;
        let admin = admin.ok_or_else(|| TokenError::Malformed {
            path: path.to_path_buf(),
            line: 0,
            why: "no token in group system:masters".into(),
        })?;
        let checked = Mutex::new(Checked { loaded: FileStamp::of(path), at: Instant::now() });
        Ok((Tokens { path: path.to_path_buf(), users: RwLock::new(users), checked }, admin))
    }

    /// The user a bearer token belongs to. The file is re-read if it changed: checked at most once a second,
    /// and at once for an unknown token (a token issued a moment ago works on its first use).
    pub fn authenticate(&self, token: &str) -> Option<User> {
        self.reload_if_changed(false);
        if let Some(user) = self.users.read().get(token).cloned() {
            return Some(user);
        }
        if self.reload_if_changed(true) {
            return self.users.read().get(token).cloned();
        }
        None
    }

    /// Re-read the file if it changed since it was read; `now` skips the once-a-second limit. Returns whether
    /// the tokens were reloaded. A file that does not parse (or is gone) keeps the old tokens, with a warning.
    fn reload_if_changed(&self, now: bool) -> bool {
        let mut checked = if now {
            self.checked.lock()
        } else {
            // Another request is checking already: its answer is as fresh as this one's would be.
            let Some(checked) = self.checked.try_lock() else { return false };
            checked
        };
        if !now && checked.at.elapsed() < RECHECK_INTERVAL {
            return false;
        }
        checked.at = Instant::now();
        let stamp = FileStamp::of(&self.path);
        let racy = checked.loaded.is_some_and(|l| l.is_recent());
        if stamp.is_none() || (stamp == checked.loaded && !racy) {
            return false;
        }
        match parse(&self.path) {
            Ok((users, _)) => {
                let changed = *self.users.read() != users;
                if changed {
                    tracing::info!(path = %self.path.display(), tokens = users.len(), "token file reloaded");
                    *self.users.write() = users;
                }
                checked.loaded = stamp;
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "token file changed but does not parse; keeping the old tokens");
                checked.loaded = stamp;
                false
            }
        }
    }

    /// The file the tokens come from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Issue a token for node agent `node` (user `system:node:<node>`, group `system:nodes`), appended to the
/// token file; a running server picks it up on first use. Returns the token.
pub fn add_node_token(path: &Path, node: &str) -> Result<String, TokenError> {
    let io = |source| TokenError::Io { path: path.to_path_buf(), source };
    if node.is_empty() || node.contains([',', '"', '\n']) {
        return Err(TokenError::Malformed {
            path: path.to_path_buf(),
            line: 0,
            why: format!("invalid node name {node:?}"),
        });
    }
    let token = random_token();
    let mut f = std::fs::OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(io)?;
    writeln!(f, "{token},system:node:{node},system:node:{node},\"system:nodes\"").map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(token)
}

type Parsed = (HashMap<String, User>, Option<String>);

fn parse(path: &Path) -> Result<Parsed, TokenError> {
    let io = |source| TokenError::Io { path: path.to_path_buf(), source };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut users = HashMap::new();
    let mut admin = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user_part, groups) = match line.split_once(",\"") {
            Some((head, tail)) => (head, tail.trim_end_matches('"').split(',').map(str::to_string).collect()),
            None => (line, Vec::new()),
        };
        let fields: Vec<&str> = user_part.split(',').collect();
        if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
            return Err(TokenError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                why: "expected token,user,uid[,\"groups\"]".into(),
            });
        }
        let user = User { name: fields[1].to_string(), groups };
        if admin.is_none() && user.groups.iter().any(|g| g == "system:masters") {
            admin = Some(fields[0].to_string());
        }
        users.insert(fields[0].to_string(), user);
    }
    Ok((users, admin))
}

/// The user of an `Authorization` header value, if it carries a known bearer token.
pub fn bearer(tokens: &Tokens, header: Option<&str>) -> Option<User> {
    let value = header?.trim();
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?;
    tokens.authenticate(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_token_issued_while_serving_authenticates_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        let (tokens, admin) = Tokens::load_or_create(&path).unwrap();
        assert_eq!(tokens.authenticate(&admin).unwrap().groups, vec!["system:masters".to_string()]);
        assert!(tokens.authenticate("not-a-token").is_none());
        // File times can be coarse: make sure the file looks changed to the reload check.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let token = add_node_token(&path, "n1").unwrap();
        let user = tokens.authenticate(&token).expect("the new token is picked up");
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, vec!["system:nodes".to_string()]);
        assert!(add_node_token(&path, "bad,name").is_err());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    /// Issue 17, defect 5: a token removed from the file kept working until an unknown token came along.
    #[test]
    fn a_token_removed_from_the_file_stops_working_within_seconds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        let (tokens, admin) = Tokens::load_or_create(&path).unwrap();
        let node = add_node_token(&path, "n1").unwrap();
        assert!(tokens.authenticate(&node).is_some(), "the issued token works");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(&node))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
        // Only known tokens are presented from now on, so nothing but the periodic check can notice.
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokens.authenticate(&node).is_some() {
            assert!(Instant::now() < deadline, "the removed token still works after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(tokens.authenticate(&admin).is_some(), "the remaining token still works");
    }

    #[test]
    fn a_rewrite_in_the_same_clock_tick_with_the_same_size_is_still_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        let (tokens, admin) = Tokens::load_or_create(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // The same length and, likely, the same modification time: only the content differs.
        let swapped = text.replacen(&admin, &"x".repeat(admin.len()), 1);
        std::fs::write(&path, swapped).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokens.authenticate(&admin).is_some() {
            assert!(Instant::now() < deadline, "the replaced token still works after 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(tokens.authenticate(&"x".repeat(admin.len())).is_some());
    }
}
