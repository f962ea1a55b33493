//! `kvol server`'s listening side: the data directory, the store, TLS on TCP and a unix socket, the
//! bootstrap namespaces, the kubeconfig written once the server is ready, and a clean shutdown.

use crate::auth::{Tokens, Transport};
use crate::conn::{AcceptBackoff, Connection, Gate, Limits};
use crate::routes::{authenticate, handle};
use crate::ApiState;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use kvol_store::{Precondition, SqliteOptions, SqliteStore, Store};
use serde_json::json;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinSet;

/// How `kvol server` is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the store, PKI, tokens, socket and kubeconfig live.
    pub data_dir: PathBuf,
    /// The TLS listen address.
    pub listen: SocketAddr,
    /// The local socket; default `<data-dir>/kvol.sock`.
    pub unix_socket: Option<PathBuf>,
    /// Bookmark interval for watches.
    pub bookmark_interval: Duration,
    /// Default watch duration.
    pub watch_timeout: Duration,
    /// Store tuning.
    pub store: SqliteOptions,
    /// Connection timeouts, the unauthenticated-connection cap and each watch's byte budget.
    pub limits: Limits,
}

impl ServerConfig {
    /// Defaults for a data dir and listen address.
    pub fn new(data_dir: PathBuf, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir,
            listen,
            unix_socket: None,
            bookmark_interval: Duration::from_secs(10),
            watch_timeout: Duration::from_secs(1800),
            store: SqliteOptions::default(),
            limits: Limits::default(),
        }
    }

    /// The kubeconfig path.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// The unix socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.unix_socket.clone().unwrap_or_else(|| self.data_dir.join("kvol.sock"))
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("opening the store")]
    Store(#[from] kvol_store::Error),
    /// The token file is unusable.
    #[error(transparent)]
    Tokens(#[from] crate::auth::TokenError),
    /// The PKI could not be made.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A listener could not be bound.
    #[error("listening on {what}: {source}")]
    Listen {
        /// The address or socket.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the kubeconfig failed.
    #[error("writing {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating a bootstrap object failed.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

fn hosts_for(listen: &SocketAddr) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string(), "kubernetes".to_string()];
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        hosts.push(name.trim().to_string());
    }
    if !listen.ip().is_unspecified() {
        hosts.push(listen.ip().to_string());
    }
    hosts
}

/// The address clients on this machine should use.
fn client_address(listen: &SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() { "127.0.0.1".parse().expect("literal") } else { listen.ip() };
    SocketAddr::new(ip, listen.port()).to_string()
}

fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, token: &str) -> Result<(), ServerError> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kvol\n  cluster:\n    server: https://{server}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: kvol\n  context:\n    cluster: kvol\n    user: admin\n    namespace: default\ncurrent-context: kvol\n"
    );
    let err = |source| ServerError::Kubeconfig { path: path.to_path_buf(), source };
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Create the namespaces every cluster has, if missing.
async fn bootstrap(store: &dyn Store) -> Result<(), ServerError> {
    let ns = kvol_api::resources::by_kind("v1", "Namespace").expect("Namespace is served");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let key = ns.key(None, name);
        if store.get(&key)?.is_some() {
            continue;
        }
        let secs = jiff::Timestamp::now().as_second();
        let created = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string();
        let obj = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": name, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": created,
                          "labels": { "kubernetes.io/metadata.name": name } },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        });
        let bytes = serde_json::to_vec(&obj).map_err(|e| ServerError::Bootstrap(e.to_string()))?;
        match store.put(key, bytes.into(), Precondition::MustNotExist).await {
            Ok(_) | Err(kvol_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A bound, ready API server: listeners accept, the kubeconfig is written. [`Server::serve`] answers requests.
pub struct Server {
    state: ApiState,
    store: Arc<SqliteStore>,
    tls: tokio_rustls::TlsAcceptor,
    tcp: TcpListener,
    unix: UnixListener,
    local_addr: SocketAddr,
    socket: PathBuf,
    kubeconfig: PathBuf,
}

impl Server {
    /// Open the store, make the PKI and tokens, bootstrap, bind both listeners and write the kubeconfig.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let dir = &config.data_dir;
        let dir_err = |source| ServerError::DataDir { path: dir.clone(), source };
        std::fs::create_dir_all(dir).map_err(dir_err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
        // The store first: its lock keeps a second server on this directory from touching anything below.
        let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(dir.join("kvol.db"), config.store.clone())?);
        let kubeconfig = config.kubeconfig_path();
        // Not ready yet: a kubeconfig left by an earlier run must not announce this one.
        let _ = std::fs::remove_file(&kubeconfig);
        let (tokens, admin_token) = Tokens::load_or_create(&dir.join("tokens.csv"))?;
        let pki = crate::tls::load_or_create(&dir.join("pki"), &hosts_for(&config.listen))?;
        let tls = tokio_rustls::TlsAcceptor::from(crate::tls::server_config(&pki)?);
        bootstrap(store.as_ref()).await?;
        let state = ApiState {
            store: store.clone(),
            tokens: Arc::new(tokens),
            advertise_address: client_address(&config.listen),
            bookmark_interval: config.bookmark_interval,
            watch_timeout: config.watch_timeout,
            limits: config.limits,
        };
        let listen_err = |source| ServerError::Listen { what: config.listen.to_string(), source };
        let tcp = TcpListener::bind(config.listen).await.map_err(listen_err)?;
        let local_addr = tcp.local_addr().map_err(listen_err)?;
        let socket = config.socket_path();
        let socket_err = |source| ServerError::Listen { what: socket.display().to_string(), source };
        let _ = std::fs::remove_file(&socket);
        let unix = UnixListener::bind(&socket).map_err(socket_err)?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(socket_err)?;
        write_kubeconfig(&kubeconfig, &client_address(&local_addr), &pki.ca_pem, &admin_token)?;
        tracing::info!(listen = %local_addr, socket = %socket.display(), kubeconfig = %kubeconfig.display(), "kvol API server ready");
        Ok(Server { state, store, tls, tcp, unix, local_addr, socket, kubeconfig })
    }

    /// The address the TLS listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The admin kubeconfig this server wrote.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Answer requests until `shutdown` resolves, then stop cleanly: the kubeconfig and socket are removed,
    /// open connections get half a second, and the store commits what is pending.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server { state, store, tls, tcp, unix, socket, kubeconfig, .. } = self;
        let (stop_controllers, controllers_stopped) = tokio::sync::watch::channel(false);
        let namespace_controller = tokio::spawn(crate::namespaces::run_controller(state.clone(), async move {
            let mut stopped = controllers_stopped;
            let _ = stopped.wait_for(|s| *s).await;
        }));
        let mut connections = JoinSet::new();
        let limits = state.limits;
        let gate = Gate::new(limits.max_unauthenticated);
        let mut backoff = AcceptBackoff::default();
        let mut paused: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = async { paused.as_mut().expect("guarded").await }, if paused.is_some() => paused = None,
                accepted = tcp.accept(), if paused.is_none() => match accepted {
                    Ok((stream, peer)) => {
                        backoff.reset();
                        let admitted = gate.admit();
                        let (tls, state) = (tls.clone(), state.clone());
                        connections.spawn(async move {
                            let _ = stream.set_nodelay(true);
                            let conn = admitted.connection().clone();
                            let handshake = tokio::time::timeout(limits.headers, tls.accept(stream));
                            let stream = tokio::select! {
                                done = handshake => match done {
                                    Ok(Ok(stream)) => stream,
                                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                                },
                                _ = conn.evicted() => return tracing::debug!(%peer, "closing an unauthenticated connection to make room"),
                            };
                            serve_connection(TokioIo::new(stream), state, Transport::Tls, conn, Some(admitted)).await
                        });
                    }
                    Err(e) => paused = backoff.failed(&e, &gate).map(|d| Box::pin(tokio::time::sleep(d))),
                },
                accepted = unix.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        connections.spawn(serve_connection(TokioIo::new(stream), state, Transport::Unix, Connection::trusted(), None));
                    }
                    Err(e) => tracing::warn!(error = %e, "accept on unix socket failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        tracing::info!("shutting down");
        let _ = stop_controllers.send(true);
        let _ = namespace_controller.await;
        let _ = std::fs::remove_file(&kubeconfig);
        drop(tcp);
        drop(unix);
        let _ = std::fs::remove_file(&socket);
        // Requests finish in milliseconds; only watches stay open, and clients re-establish those.
        let drain = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_millis(500), drain).await.is_err() {
            connections.abort_all();
        }
        drop(state);
        store.close();
        Ok(())
    }
}

/// Run the API server until `shutdown` resolves: [`Server::bind`], then [`Server::serve`].
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    Server::bind(config).await?.serve(shutdown).await
}

/// Serve one connection under its watchdog ([`Connection::watch_over`]). A TLS connection comes `admitted`
/// through the unauthenticated-connection gate and leaves its count with its first authenticated request.
async fn serve_connection<I>(
    io: TokioIo<I>,
    state: ApiState,
    transport: Transport,
    conn: Arc<Connection>,
    admitted: Option<crate::conn::Admitted>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::BodyExt;
    let limits = state.limits;
    let gate = admitted.as_ref().map(|a| a.gate().clone());
    let watched = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let (state, conn, gate) = (state.clone(), conn.clone(), gate.clone());
        async move {
            let in_flight = conn.start_request();
            let user = authenticate(&state, transport, req.headers());
            if let (Some(_), Some(gate)) = (&user, &gate) {
                gate.release(&conn);
            }
            let response = handle(state, user, req.map(axum::body::Body::new)).await;
            // The request stays in flight until its body is sent: a watch is not an idle connection.
            let response = response.map(|body| {
                axum::body::Body::new(body.map_frame(move |frame| {
                    let _in_flight = &in_flight;
                    frame
                }))
            });
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    // No hyper timer: its HTTP/1 header timeout would also start on every idle keep-alive connection and cut
    // it at 32 s instead of 90. The watchdog applies Go's rules instead.
    let builder = auto::Builder::new(TokioExecutor::new());
    watched.watch_over(builder.serve_connection(io, service), &limits).await;
    drop(admitted);
}
