//! The server under abuse: connections that never finish their headers, idle connections, floods of
//! unauthenticated connections, watchers that never read, and watches from `resourceVersion=0` over
//! collections larger than one store page. Each test talks raw TCP or TLS, as a hostile client would.

use crate::util::Server;
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The server's address, from the kubeconfig it wrote.
fn address(server: &Server) -> SocketAddr {
    let line = server.kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server: https://")).expect("server line");
    line.trim().parse().expect("server address")
}

fn tls_config(server: &Server) -> Arc<rustls::ClientConfig> {
    use base64::Engine;
    let ca = server
        .kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .expect("CA in the kubeconfig");
    let pem = base64::engine::general_purpose::STANDARD.decode(ca.trim()).expect("CA base64");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to the server (HTTP/1.1), with a small receive buffer when `small_buffer`.
async fn tls_connect(server: &Server, small_buffer: bool) -> TlsStream<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if small_buffer {
        socket.set_recv_buffer_size(32 * 1024).expect("SO_RCVBUF");
    }
    let tcp = socket.connect(address(server)).await.expect("connecting");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    tokio_rustls::TlsConnector::from(tls_config(server)).connect(name, tcp).await.expect("TLS handshake")
}

/// Whether the server closes `stream` within `limit` (end of stream or a reset; what it sent is discarded).
async fn closed_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut sink = vec![0u8; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Everything the server sends on `stream` until it closes it, within `limit`.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.expect("the server closes the connection in time");
    out
}

fn get(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: kvol\r\nAuthorization: Bearer {token}\r\n\r\n").into_bytes()
}

fn count(haystack: &[u8], needle: &str) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

#[tokio::test]
async fn connections_that_send_no_complete_request_headers_in_time_are_closed() {
    let server = Server::start_with(|c| c.limits.headers = Duration::from_secs(1)).await;
    // No TLS handshake at all.
    let mut silent = TcpStream::connect(address(&server)).await.expect("connecting");
    // TLS done, the request headers half-sent.
    let mut half = tls_connect(&server, false).await;
    half.write_all(b"GET /api HTTP/1.1\r\nHost: kvol\r\n").await.expect("writing half a request");
    assert!(closed_within(&mut silent, Duration::from_secs(30)).await, "a silent TCP connection stays open");
    assert!(closed_within(&mut half, Duration::from_secs(30)).await, "half-sent headers keep the connection open");
    server.assert_alive().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_long_watch_on_one_is_not() {
    let server = Server::start_with(|c| c.limits.idle = Duration::from_secs(1)).await;
    let token = server.token();
    let mut idle = tls_connect(&server, false).await;
    idle.write_all(&get("/version", &token)).await.expect("request");
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut idle, Duration::from_secs(30)).await, "an idle connection stays open");

    let mut watching = tls_connect(&server, false).await;
    watching.write_all(&get("/api/v1/namespaces/default/configmaps?watch=1", &token)).await.expect("watch");
    // Three idle periods pass with the watch open and nothing to send.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let created = server
        .json(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "after-the-wait" } }),
        )
        .await;
    assert_eq!(created.code, 201, "{created:?}");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(30), async {
        while count(&seen, "after-the-wait") == 0 {
            let n = watching.read(&mut buf).await.expect("the watch is still open");
            assert!(n > 0, "the watch was closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the watch event arrives");
}

#[tokio::test]
async fn a_flood_of_unauthenticated_connections_evicts_the_oldest_and_clients_keep_working() {
    let server = Server::start_with(|c| c.limits.max_unauthenticated = 20).await;
    let mut hostile = Vec::new();
    for _ in 0..200 {
        hostile.push(TcpStream::connect(address(&server)).await.expect("connecting"));
    }
    // An authenticated client still gets in, on a new connection, at once.
    let listed = tokio::time::timeout(Duration::from_secs(20), server.get("/api/v1/namespaces")).await;
    assert_eq!(listed.expect("an answer within 20 s").code, 200);
    // All but the newest 20 hostile connections were closed to make room.
    let closed =
        futures::future::join_all(hostile.iter_mut().map(|stream| closed_within(stream, Duration::from_secs(10))))
            .await;
    let closed = closed.iter().filter(|c| **c).count();
    assert!(closed >= 180, "only {closed} of 200 unauthenticated connections were closed");
    // Authenticated connections are never evicted: a client holding one keeps it through a second flood.
    let token = server.token();
    let mut trusted = tls_connect(&server, false).await;
    trusted.write_all(&get("/version", &token)).await.expect("request");
    let mut head = [0u8; 12];
    trusted.read_exact(&mut head).await.expect("an answer");
    for _ in 0..100 {
        hostile.push(TcpStream::connect(address(&server)).await.expect("connecting"));
    }
    let answer = read_after(&mut trusted, &get("/version", &token)).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

/// Send `request` on an open connection and read the start of its answer.
async fn read_after<S: AsyncRead + tokio::io::AsyncWrite + Unpin>(stream: &mut S, request: &[u8]) -> Vec<u8> {
    // Whatever the previous answer left unread.
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    stream.write_all(request).await.expect("request on the kept connection");
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
        .await
        .expect("an answer within 20 s")
        .expect("reading the answer");
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn a_watcher_that_stops_reading_is_closed_once_its_byte_budget_stays_full() {
    let server = Server::start_with(|c| {
        c.limits.watch.bytes = 1 << 20;
        c.limits.watch.stall = Duration::from_secs(1);
        c.limits.idle = Duration::from_secs(2);
    })
    .await;
    let token = server.token();
    let mut stalled = tls_connect(&server, true).await;
    stalled.write_all(&get("/api/v1/namespaces/default/configmaps?watch=1", &token)).await.expect("watch");
    // A reading watcher with the same budget gets everything.
    let reader = server.client.clone();
    let follow = tokio::spawn(async move {
        use futures::StreamExt;
        let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(reader, "default");
        let stream = api.watch(&kube::api::WatchParams::default(), "0").await.expect("watch");
        futures::pin_mut!(stream);
        let mut added = 0;
        while added < 40 {
            match stream.next().await {
                Some(Ok(kube::api::WatchEvent::Added(_))) => added += 1,
                Some(Ok(_)) => {}
                other => panic!("the reading watcher ended early: {other:?}"),
            }
        }
        added
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 40 objects of 512 KiB: 20 MiB, far more than the budget plus the socket buffers.
    let value = "x".repeat(512 * 1024);
    for i in 0..40 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("big-{i}") },
                         "data": { "v": value } });
        let a = server.json("POST", "/api/v1/namespaces/default/configmaps", &cm).await;
        assert_eq!(a.code, 201, "{a:?}");
    }
    let added = tokio::time::timeout(Duration::from_secs(60), follow).await.expect("the reader is done").unwrap();
    assert_eq!(added, 40);
    // The stalled watcher's stream was ended by the server: what it finally reads stops short.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = read_until_closed(&mut stalled, Duration::from_secs(60)).await;
    let events = count(&got, "\"type\":\"ADDED\"");
    assert!(events < 40, "the stalled watcher was sent all {events} events: it was never closed");
    // It is told why, as a watch that fell behind the store is: 410, relist.
    assert_eq!(count(&got, "\"type\":\"ERROR\""), 1, "no ERROR event ends the stalled watch");
    assert_eq!(count(&got, "\"code\":410"), 1);
    server.assert_alive().await;
}

#[tokio::test]
async fn a_watch_from_zero_streams_a_collection_of_many_pages_once_at_one_revision() {
    let server = Server::start_with(|c| c.limits.watch.bytes = 16 * 1024).await;
    for i in 0..1200 {
        let cm = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": format!("cm-{i:04}") } });
        let a = server.json("POST", "/api/v1/namespaces/default/configmaps", &cm).await;
        assert_eq!(a.code, 201, "{a:?}");
    }
    let token = server.token();
    let mut watch = tls_connect(&server, true).await;
    watch.write_all(&get("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=0", &token)).await.unwrap();
    // Read a little, then change the collection while the initial state is still being streamed.
    let mut got = vec![0u8; 8 * 1024];
    watch.read_exact(&mut got).await.expect("the first events");
    for i in (0..1200).step_by(100) {
        let a = server.request("DELETE", &format!("/api/v1/namespaces/default/configmaps/cm-{i:04}"), None, "").await;
        assert_eq!(a.code, 200, "{a:?}");
    }
    let late = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "late" } });
    assert_eq!(server.json("POST", "/api/v1/namespaces/default/configmaps", &late).await.code, 201);
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(60), async {
        while count(&got, "\"name\":\"late\"") == 0 {
            let n = watch.read(&mut buf).await.expect("reading the watch");
            assert!(n > 0, "the watch ended early");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the whole watch arrives");
    let text = String::from_utf8_lossy(&got);
    let mut added = BTreeSet::new();
    let mut deleted = BTreeSet::new();
    for line in text.lines().filter(|l| l.contains("\"type\":")) {
        let start = line.find('{').unwrap_or(0);
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line[start..]) else { continue };
        let name = event["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
        match event["type"].as_str() {
            Some("ADDED") => assert!(added.insert(name.clone()), "{name} added twice"),
            Some("DELETED") => assert!(deleted.insert(name.clone()), "{name} deleted twice"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    // Every object of the initial revision once (the deleted ones too: they were there), then the changes.
    let expected: BTreeSet<String> = (0..1200).map(|i| format!("cm-{i:04}")).chain(["late".to_string()]).collect();
    assert_eq!(added, expected);
    assert_eq!(deleted, (0..1200).step_by(100).map(|i| format!("cm-{i:04}")).collect());
}
