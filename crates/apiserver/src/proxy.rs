//! The Node `proxy` subresource: `/api/v1/nodes/<name>[:<port>]/proxy/<path>` forwards a GET or HEAD to the
//! kubelet endpoint the node reports (what `kubectl get --raw .../proxy/stats/summary` reads).
//!
//! Design decision: plain HTTP only, and the answer's body is streamed back as it arrives rather than
//! buffered, so large kubelet answers cost no memory here; the 30 s limit covers connecting and the
//! response head, as kube-apiserver's dial and response-header timeouts do.

use crate::auth::User;
use crate::authz::{authorize, Attributes, Verb};
use crate::status::ApiError;
use crate::ApiState;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Node;
use kvol_api::resources::by_kind;
use std::net::IpAddr;
use std::time::Duration;

/// How long the kubelet has to accept the connection and send its response head.
const KUBELET_TIMEOUT: Duration = Duration::from_secs(30);

/// Address types in the order kubeadm sets kube-apiserver's `--kubelet-preferred-address-types` (kube's own
/// default puts Hostname first, which needs the node's name to resolve).
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

/// Why a proxied request got no answer from the kubelet.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path's `<name>:<port>` has a port that is not a port number.
    #[error("invalid node request {0:?}")]
    BadName(String),
    /// The node lists none of the preferred address types.
    #[error("node {node:?} has no usable address: status.addresses has no InternalIP, ExternalIP or Hostname")]
    NoAddress {
        /// The node.
        node: String,
    },
    /// The node reports no kubelet port and the path named none.
    #[error("node {node:?} reports no kubelet port: status.daemonEndpoints.kubeletEndpoint.Port is 0 or missing")]
    NoPort {
        /// The node.
        node: String,
    },
    /// The kubelet endpoint could not be reached or answered with a broken response.
    #[error("error trying to reach service: {cause}")]
    Unreachable {
        /// The URL tried and the cause chain, as text (the client's errors nest several layers deep).
        cause: String,
    },
    /// The kubelet did not answer within [`KUBELET_TIMEOUT`].
    #[error("error trying to reach service: {url}: no response within {}s", KUBELET_TIMEOUT.as_secs())]
    TimedOut {
        /// The URL tried.
        url: String,
    },
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::BadName(_) => ApiError::bad_request(e.to_string()),
            Error::NoAddress { .. } | Error::NoPort { .. } | Error::Unreachable { .. } | Error::TimedOut { .. } => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

/// Where a proxy path points: the node, an optional port from `<name>:<port>`, and the kubelet path.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyTarget {
    /// The node's name.
    pub node: String,
    /// The port from `<name>:<port>`, overriding the node's kubelet port.
    pub port: Option<u16>,
    /// The path on the kubelet, starting with `/`, still percent-encoded as the client sent it.
    pub path: String,
}

impl ProxyTarget {
    /// The target of `nodes/<name>/proxy/<rest...>`; `trailing_slash` says whether the request path ended
    /// in `/` (kept, since `/metrics` and `/metrics/` may differ).
    pub fn parse(name: &str, rest: &[&str], trailing_slash: bool) -> Result<Self, Error> {
        let (node, port) = match name.rsplit_once(':') {
            Some((node, port)) => {
                let port = port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| Error::BadName(name.into()))?;
                (node, Some(port))
            }
            None => (name, None),
        };
        if node.is_empty() {
            return Err(Error::BadName(name.into()));
        }
        let mut path = format!("/{}", rest.join("/"));
        if trailing_slash && !rest.is_empty() {
            path.push('/');
        }
        Ok(ProxyTarget { node: node.to_string(), port, path })
    }
}

/// The kubelet's `host:port` for a node: the first address in [`PREFERRED_ADDRESS_TYPES`] order (IPv6 in
/// brackets), and `port` or else the node's `status.daemonEndpoints.kubeletEndpoint.Port`.
pub fn kubelet_authority(node: &Node, port: Option<u16>) -> Result<String, Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let addresses = status.and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let address = PREFERRED_ADDRESS_TYPES
        .iter()
        .find_map(|t| addresses.iter().find(|a| a.type_ == *t && !a.address.is_empty()))
        .map(|a| a.address.as_str())
        .ok_or_else(|| Error::NoAddress { node: name.clone() })?;
    let reported = status
        .and_then(|s| s.daemon_endpoints.as_ref())
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .and_then(|e| u16::try_from(e.port).ok())
        .filter(|p| *p > 0);
    let port = port.or(reported).ok_or(Error::NoPort { node: name })?;
    Ok(match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{address}:{port}"),
    })
}

/// Answer `nodes/<name>/proxy/<rest...>`: check the verb, authorize, find the node's kubelet and forward.
pub async fn node_proxy(
    state: &ApiState,
    user: &User,
    parts: &http::request::Parts,
    name: &str,
    rest: &[&str],
) -> Result<Response, ApiError> {
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(ApiError::method_not_allowed(parts.method.as_str(), parts.uri.path()));
    }
    let target = ProxyTarget::parse(name, rest, parts.uri.path().ends_with('/'))?;
    let nodes = by_kind("v1", "Node").expect("Node is served");
    authorize(
        state,
        user,
        &Attributes {
            verb: Verb::Get,
            resource: nodes,
            subresource: Some("proxy"),
            namespace: None,
            name: Some(&target.node),
        },
    )?;
    let kv = crate::read::get(state, nodes, None, &target.node)?;
    let node: Node = crate::registry::decode_stored(&kv)?;
    let authority = kubelet_authority(&node, target.port)?;
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{}?{q}", target.path),
        None => target.path.clone(),
    };
    let url = format!("http://{authority}{path_and_query}");
    Ok(forward(&parts.method, parts.headers.get(header::ACCEPT), &url).await?)
}

/// Send the request to the kubelet and hand back its status, Content-Type and (streamed) body.
async fn forward(method: &Method, accept: Option<&http::HeaderValue>, url: &str) -> Result<Response, Error> {
    let uri: Uri = url.parse().map_err(|e| Error::Unreachable { cause: format!("{url}: {e}") })?;
    let mut request = Request::builder().method(method.clone()).uri(uri);
    if let Some(accept) = accept {
        request = request.header(header::ACCEPT, accept);
    }
    let request = request
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| Error::Unreachable { cause: format!("{url}: {e}") })?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(KUBELET_TIMEOUT));
    // A client per request: proxying is for people debugging and for `kubectl top`, rare enough that
    // keeping a pool of kubelet connections is not worth a field in every handler's state.
    let client = Client::builder(TokioExecutor::new()).build::<_, http_body_util::Empty<Bytes>>(connector);
    let answer = tokio::time::timeout(KUBELET_TIMEOUT, client.request(request))
        .await
        .map_err(|_| Error::TimedOut { url: url.to_string() })?
        .map_err(|e| Error::Unreachable { cause: format!("{url}: {}", cause_chain(&e)) })?;
    let (head, body) = answer.into_parts();
    let mut response = Response::new(Body::new(body));
    *response.status_mut() = head.status;
    if let Some(content_type) = head.headers.get(header::CONTENT_TYPE) {
        response.headers_mut().insert(header::CONTENT_TYPE, content_type.clone());
    }
    Ok(response)
}

/// An error and its sources, joined with `: ` as Go's wrapped errors print.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{DaemonEndpoint, NodeAddress, NodeDaemonEndpoints, NodeStatus};

    fn node(addresses: &[(&str, &str)], port: i32) -> Node {
        Node {
            metadata: meta("n1"),
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress { type_: t.to_string(), address: a.to_string() })
                        .collect(),
                ),
                daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port }) }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn meta(name: &str) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta { name: Some(name.into()), ..Default::default() }
    }

    #[test]
    fn the_kubelet_address_follows_the_preferred_types_and_the_path_port_wins() {
        struct Case {
            name: &'static str,
            node: Node,
            port: Option<u16>,
            want: Result<&'static str, &'static str>,
        }
        let cases = [
            Case {
                name: "InternalIP before Hostname, whatever the order listed",
                node: node(&[("Hostname", "h"), ("ExternalIP", "1.2.3.4"), ("InternalIP", "10.0.0.1")], 10250),
                port: None,
                want: Ok("10.0.0.1:10250"),
            },
            Case {
                name: "ExternalIP before Hostname",
                node: node(&[("Hostname", "h"), ("ExternalIP", "1.2.3.4")], 10250),
                port: None,
                want: Ok("1.2.3.4:10250"),
            },
            Case {
                name: "Hostname last",
                node: node(&[("InternalDNS", "d"), ("Hostname", "h")], 10255),
                port: None,
                want: Ok("h:10255"),
            },
            Case {
                name: "IPv6 in brackets",
                node: node(&[("InternalIP", "fd00::1")], 10250),
                port: None,
                want: Ok("[fd00::1]:10250"),
            },
            Case {
                name: "the path's port overrides the node's",
                node: node(&[("InternalIP", "10.0.0.1")], 10250),
                port: Some(4194),
                want: Ok("10.0.0.1:4194"),
            },
            Case {
                name: "the path's port stands in for a missing one",
                node: node(&[("InternalIP", "10.0.0.1")], 0),
                port: Some(4194),
                want: Ok("10.0.0.1:4194"),
            },
            Case {
                name: "no preferred address",
                node: node(&[("InternalDNS", "d")], 10250),
                port: None,
                want: Err("no usable address"),
            },
            Case {
                name: "port 0",
                node: node(&[("InternalIP", "10.0.0.1")], 0),
                port: None,
                want: Err("no kubelet port"),
            },
            Case { name: "no status", node: Node::default(), port: None, want: Err("no usable address") },
        ];
        for c in cases {
            let got = kubelet_authority(&c.node, c.port).map_err(|e| e.to_string());
            match c.want {
                Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{}", c.name),
                Err(want) => assert!(got.as_ref().is_err_and(|e| e.contains(want)), "{}: {got:?}", c.name),
            }
        }
    }

    #[test]
    fn proxy_paths_name_the_node_the_port_and_the_kubelet_path() {
        let t = |name, rest: &[&str], slash| ProxyTarget::parse(name, rest, slash).map_err(|e| e.to_string());
        let target = |node: &str, port, path: &str| Ok(ProxyTarget { node: node.into(), port, path: path.into() });
        assert_eq!(t("n1", &[], false), target("n1", None, "/"));
        assert_eq!(t("n1", &[], true), target("n1", None, "/"));
        assert_eq!(t("n1", &["stats", "summary"], false), target("n1", None, "/stats/summary"));
        assert_eq!(t("n1", &["metrics"], true), target("n1", None, "/metrics/"));
        assert_eq!(t("n1:10255", &["healthz"], false), target("n1", Some(10255), "/healthz"));
        assert_eq!(t("n1:http", &[], false), Err(r#"invalid node request "n1:http""#.to_string()));
        assert_eq!(t(":10255", &[], false), Err(r#"invalid node request ":10255""#.to_string()));
    }
}
