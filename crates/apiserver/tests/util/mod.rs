//! The harness of the API server's integration tests: a real `kvol server` per test, run in-process on its own
//! thread and runtime (so a failing test still stops it), reached over HTTPS with the kubeconfig it writes and
//! the `kube` client, or over its unix socket. Failures print the data directory and the server's outcome.

use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kvol_apiserver::{ServerConfig, ServerError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One running server and an admin client for it.
pub struct Server {
    dir: Option<TempDir>,
    /// The server's `--data-dir`.
    pub data_dir: PathBuf,
    /// The kubeconfig the server wrote, as text.
    pub kubeconfig: String,
    /// A client with the admin token.
    pub client: kube::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), ServerError>>>,
}

impl Server {
    /// A server on a fresh data directory with the default configuration.
    pub async fn start() -> Server {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh data directory, its configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::Builder::new().prefix("kvol-apiserver-test-").tempdir().expect("creating a temp dir");
        Self::start_in(dir, tweak).await
    }

    /// A server on the data directory inside `dir` (kept from an earlier server, for restarts). Listens on
    /// 127.0.0.1:0; the kubeconfig names the port the server bound.
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut ServerConfig)) -> Server {
        let data_dir = dir.path().join("data");
        let mut config = ServerConfig::new(data_dir.clone(), "127.0.0.1:0".parse().expect("literal address"));
        tweak(&mut config);
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kvol-test-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("server runtime");
                runtime.block_on(kvol_apiserver::run(config, async {
                    let _ = stop.await;
                }))
            })
            .expect("spawning the server thread");
        let kubeconfig_path = data_dir.join("kubeconfig");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig_path.exists() {
            if thread.is_finished() {
                let outcome = thread.join();
                panic!("server in {} stopped before it was ready: {outcome:?}", data_dir.display());
            }
            assert!(Instant::now() < deadline, "server in {} not ready after 30 s", data_dir.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let kubeconfig = std::fs::read_to_string(&kubeconfig_path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", kubeconfig_path.display()));
        let client = client_from_kubeconfig(&kubeconfig).await;
        Server { dir: Some(dir), data_dir, kubeconfig, client, shutdown: Some(shutdown), thread: Some(thread) }
    }

    /// Stop the server (as SIGTERM would), assert it stopped cleanly, and hand back its directory.
    pub fn stop(mut self) -> TempDir {
        let outcome = self.shutdown_and_join();
        match outcome {
            Some(Ok(Ok(()))) | None => {}
            other => panic!("server in {} did not stop cleanly: {other:?}", self.data_dir.display()),
        }
        self.dir.take().expect("the directory is kept until drop")
    }

    fn shutdown_and_join(&mut self) -> Option<std::thread::Result<Result<(), ServerError>>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.thread.take().map(|t| t.join())
    }

    /// The admin bearer token.
    pub fn token(&self) -> String {
        token_of(&self.kubeconfig)
    }

    /// Issue a token for node agent `node` (user `system:node:<node>`), as `kvol` does for a joining node.
    pub async fn node_token(&self, node: &str) -> String {
        // File times can be coarse: make sure the server's reload check sees the token file change.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let path = self.data_dir.join("tokens.csv");
        kvol_apiserver::auth::add_node_token(&path, node)
            .unwrap_or_else(|e| panic!("issuing a token for {node} in {}: {e}", path.display()))
    }

    /// A client with another token, or none.
    pub async fn client_with_token(&self, token: Option<&str>) -> kube::Client {
        let admin = self.token();
        let text = match token {
            Some(t) => self.kubeconfig.replace(&admin, t),
            None => {
                self.kubeconfig.lines().filter(|l| !l.trim_start().starts_with("token:")).collect::<Vec<_>>().join("\n")
            }
        };
        client_from_kubeconfig(&text).await
    }

    /// The unix socket.
    pub fn socket(&self) -> PathBuf {
        self.data_dir.join("kvol.sock")
    }

    /// A raw request with the admin client.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        send(&self.client, method, path, content_type, body.into()).await
    }

    /// A raw JSON request with the admin client.
    pub async fn json(&self, method: &str, path: &str, body: &Value) -> Answer {
        let ct = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        self.request(method, path, Some(ct), serde_json::to_vec(body).expect("JSON")).await
    }

    /// A GET with the admin client.
    pub async fn get(&self, path: &str) -> Answer {
        self.request("GET", path, None, Vec::new()).await
    }

    /// Assert the server still answers (after bad input).
    pub async fn assert_alive(&self) {
        let a = self.get("/version").await;
        assert_eq!(a.code, 200, "the server stopped answering: {a:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown_and_join();
    }
}

fn token_of(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("token:"))
        .map(|t| t.trim().to_string())
        .expect("the kubeconfig carries a token")
}

/// A kube client from kubeconfig text, as `kubectl --kubeconfig` would build it, minus retries.
pub async fn client_from_kubeconfig(text: &str) -> kube::Client {
    let kc = Kubeconfig::from_yaml(text).unwrap_or_else(|e| panic!("kubeconfig does not parse: {e}\n{text}"));
    let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kube cannot use the kubeconfig: {e}\n{text}"));
    // The tests check what the server answers: a 503 must reach them, not be retried with backoff.
    config.default_retry = false;
    kube::Client::try_from(config).expect("kube client")
}

/// A raw HTTP answer.
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// Response headers.
    pub headers: http::HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, String::from_utf8_lossy(&self.body[..self.body.len().min(2000)]))
    }
}

impl Answer {
    /// The body as JSON (panics, printing the body, if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {self:?}"))
    }

    /// The body as a `metav1.Status` failure with this answer's code; panics otherwise.
    pub fn status(&self) -> Value {
        let v = self.json();
        assert_eq!(v["kind"], "Status", "not a Status: {self:?}");
        assert_eq!(v["apiVersion"], "v1", "not a Status: {self:?}");
        assert_eq!(v["status"], "Failure", "not a failure: {self:?}");
        assert_eq!(v["code"], self.code, "Status code differs from the HTTP code: {self:?}");
        v
    }

    /// The `Warning` headers.
    pub fn warnings(&self) -> Vec<String> {
        self.headers.get_all(http::header::WARNING).iter().map(|v| v.to_str().unwrap_or("").to_string()).collect()
    }

    /// Assert a 4xx Status whose message contains `needle`; returns the Status.
    #[track_caller]
    pub fn assert_failure(&self, code: u16, needle: &str) -> Value {
        assert_eq!(self.code, code, "unexpected code: {self:?}");
        let s = self.status();
        let message = s["message"].as_str().unwrap_or("");
        assert!(message.contains(needle), "message {message:?} does not contain {needle:?}");
        s
    }
}

/// Send a raw request through a kube client (which adds the server address and the credentials).
pub async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        builder = builder.header(http::header::CONTENT_TYPE, ct);
    }
    let request = builder.body(kube::client::Body::from(body)).expect("request");
    let response = client.send(request).await.unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"));
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap_or_else(|e| panic!("{method} {path}: body: {e}")).to_bytes().to_vec();
    Answer { code: parts.status.as_u16(), headers: parts.headers, body }
}

/// One HTTP/1.1 request over the unix socket, without credentials: the status code and the body.
pub async fn unix_request(socket: &Path, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::UnixStream::connect(socket)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", socket.display()));
    let request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("writing to the socket");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the socket answers within 10 s")
        .expect("reading the socket");
    let text = String::from_utf8_lossy(&out).to_string();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// The status of a failed kube call (panics if the call succeeded or failed otherwise).
#[track_caller]
pub fn api_status<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Poll `check` until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped (also when the test fails). Declare it before
/// the server using it, so the server stops first.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (e.g. `4m`) at `path`, or None (with the reason printed) where mounting is
    /// not allowed (not root, or a container without the capability).
    pub fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("creating the mount point");
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
