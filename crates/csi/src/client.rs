//! Client side: a tonic [`Channel`] over a unix socket.
//!
//! tonic's transport speaks TCP; a custom connector (a tower service returning a tokio `UnixStream`)
//! makes it dial the socket instead. The URI given to the endpoint is a placeholder that is never
//! resolved; HTTP/2 `:authority` becomes `localhost`, as with grpc-go's unix dialer.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

use crate::{parse_endpoint, Error, Result};

fn endpoint() -> Endpoint {
    Endpoint::from_static("http://localhost")
}

fn connector(
    path: PathBuf,
) -> impl tower::Service<http::Uri, Response = TokioIo<UnixStream>, Error = std::io::Error, Future = impl Send> + Clone
{
    service_fn(move |_: http::Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    })
}

/// Connects to a CSI (or plugin-registration) endpoint now; fails if nothing listens there.
pub async fn connect(endpoint_str: &str) -> Result<Channel> {
    let path = parse_endpoint(endpoint_str)?;
    endpoint().connect_with_connector(connector(path.clone())).await.map_err(|source| Error::Connect { path, source })
}

/// A channel that connects on first use and reconnects after failures (the driver may restart).
pub fn connect_lazy(endpoint_str: &str) -> Result<Channel> {
    let path = parse_endpoint(endpoint_str)?;
    Ok(endpoint().connect_with_connector_lazy(connector(path)))
}
