//! Authentication: bearer tokens from a static token file in kube-apiserver's format
//! (`token,user,uid,"group1,group2"`), and the local unix socket, whose 0600 mode already limits it to root.
//! The admin token is generated on first start; anonymous requests are refused.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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

/// The token file, loaded in memory and reloaded when it changes (new node tokens need no restart).
pub struct Tokens {
    path: PathBuf,
    users: RwLock<HashMap<String, User>>,
    loaded: RwLock<Option<std::time::SystemTime>>,
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
        let loaded = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok((Tokens { path: path.to_path_buf(), users: RwLock::new(users), loaded: RwLock::new(loaded) }, admin))
    }

    /// The user a bearer token belongs to. An unknown token makes the file be re-read if it changed.
    pub fn authenticate(&self, token: &str) -> Option<User> {
        if let Some(user) = self.users.read().get(token).cloned() {
            return Some(user);
        }
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != *self.loaded.read() {
            match parse(&self.path) {
                Ok((users, _)) => {
                    *self.users.write() = users;
                    *self.loaded.write() = modified;
                }
                Err(e) => tracing::warn!(error = %e, "token file changed but does not parse; keeping the old tokens"),
            }
        }
        self.users.read().get(token).cloned()
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
}
