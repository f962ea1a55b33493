//! Server side: serve a tonic router on a unix socket until shutdown.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Router;

use crate::{Error, Result};

/// Serves `router` on the unix socket at `path` until `shutdown` resolves, then removes the socket.
///
/// A stale socket left by a previous run is removed first (kubelet's plugin watcher expects plugins to
/// do this); any other kind of file at `path` is refused rather than deleted. The socket gets mode 0660:
/// only root and the socket's group may talk to the driver.
pub async fn serve_unix<F>(path: &Path, router: Router, shutdown: F) -> Result<()>
where
    F: Future<Output = ()> + Send,
{
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|source| Error::RemoveStale { path: path.to_owned(), source })?;
        }
        Ok(_) => return Err(Error::NotASocket { path: path.to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(Error::RemoveStale { path: path.to_owned(), source }),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| Error::Bind { path: path.to_owned(), source })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| Error::Bind { path: path.to_owned(), source })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|source| Error::Bind { path: path.to_owned(), source })?;
    tracing::info!(socket = %path.display(), "serving gRPC");
    let result = router
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .map_err(|source| Error::Serve { path: path.to_owned(), source });
    let _ = std::fs::remove_file(path);
    result
}
