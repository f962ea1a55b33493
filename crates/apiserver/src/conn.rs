//! Connection hygiene, so that no client, with or without a token, can exhaust the server.
//!
//! kube-apiserver's secure server closes a connection whose request headers (TLS handshake included) have
//! not arrived within `ReadHeaderTimeout` (32 s), and one left idle for `IdleTimeout` (90 s). kvol does the
//! same, with one watchdog per connection that sleeps until the next deadline. On top of that it caps the
//! connections that have not yet sent an authenticated request: when the cap is reached the *oldest* such
//! connection is closed to make room, so a flood of idle or half-open connections can delay no client by
//! more than the flood's own turnover, and an authenticated connection is never touched. When `accept`
//! itself fails for lack of file descriptors, the accept loop closes the oldest unauthenticated connection,
//! backs off (5 ms doubling to 1 s, as Go's `http.Server`), and says so once per [`WARN_EVERY`].

use crate::watch::WatchBudget;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// What the server allows a client before it closes the connection or the watch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From accept to the first request's complete headers, TLS handshake included; also the limit for
    /// each later request's headers on an HTTP/1 connection (kube-apiserver's `ReadHeaderTimeout`).
    pub headers: Duration,
    /// How long a connection with no request in progress is kept (kube-apiserver's `IdleTimeout`).
    pub idle: Duration,
    /// How many connections may be open without having sent an authenticated request.
    pub max_unauthenticated: usize,
    /// Each watch's byte budget.
    pub watch: WatchBudget,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            headers: Duration::from_secs(32),
            idle: Duration::from_secs(90),
            max_unauthenticated: 1024,
            watch: WatchBudget::default(),
        }
    }
}

/// How often the accept loop may warn that it ran out of file descriptors.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// One connection, as its watchdog and the unauthenticated cap see it.
#[derive(Debug)]
pub struct Connection {
    accepted: Instant,
    /// Requests whose headers arrived.
    requests: AtomicU64,
    /// Requests whose response (body included) is not finished.
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// Still counted against [`Limits::max_unauthenticated`].
    unauthenticated: AtomicBool,
    /// Wakes the watchdog to recompute its deadline.
    changed: Notify,
    /// Tells the connection to close now.
    evict: Notify,
}

impl Connection {
    fn new() -> Arc<Connection> {
        let now = Instant::now();
        Arc::new(Connection {
            accepted: now,
            requests: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
            unauthenticated: AtomicBool::new(false),
            changed: Notify::new(),
            evict: Notify::new(),
        })
    }

    /// A connection from a client that needs no token (the local socket).
    pub fn trusted() -> Arc<Connection> {
        Connection::new()
    }

    /// Count a request as started until the returned guard (kept with its response body) is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the watchdog must act, if no request is in progress.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some(self.accepted + limits.headers);
        }
        Some(*self.idle_since.lock() + limits.idle)
    }

    /// Resolves when the connection was evicted to make room.
    pub async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Serve `connection` (a hyper connection over this client's stream) until it ends, the client stays
    /// silent or idle past `limits`, or the connection is evicted.
    pub async fn watch_over<C, E>(&self, connection: C, limits: &Limits)
    where
        C: std::future::Future<Output = Result<(), E>> + GracefulShutdown,
        E: std::fmt::Display,
    {
        tokio::pin!(connection);
        loop {
            let deadline = self.deadline(limits);
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(e) = ended {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.evict.notified() => {
                    tracing::debug!("closing an unauthenticated connection to make room for a new one");
                    return;
                }
                _ = self.changed.notified() => {}
                _ = sleep_until(deadline) => {
                    if self.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                        if self.requests.load(Ordering::Relaxed) == 0 {
                            tracing::debug!(after = ?limits.headers, "closing a connection that sent no request headers in time");
                            return;
                        }
                        tracing::debug!(after = ?limits.idle, "closing an idle connection");
                        connection.as_mut().shutdown_gracefully();
                        // A client that does not answer the goodbye is not waited for long.
                        let _ = tokio::time::timeout(Duration::from_secs(1), connection.as_mut()).await;
                        return;
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A hyper connection that can be asked to finish its requests and close.
pub trait GracefulShutdown {
    /// Start a graceful shutdown (HTTP/2 GOAWAY; HTTP/1 closes after the current request).
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E, B> GracefulShutdown for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A request in progress; dropping it (with the response body) marks the connection idle again.
#[derive(Debug)]
pub struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            *self.0.idle_since.lock() = Instant::now();
        }
        self.0.changed.notify_one();
    }
}

/// The connections that have not yet authenticated, oldest first, capped by [`Limits::max_unauthenticated`].
#[derive(Debug)]
pub struct Gate {
    max: usize,
    inner: Mutex<GateInner>,
}

#[derive(Debug, Default)]
struct GateInner {
    /// Oldest first; entries of connections that authenticated or closed are dropped lazily.
    queue: VecDeque<Weak<Connection>>,
    count: usize,
}

impl Gate {
    /// A gate letting `max` unauthenticated connections be open at once.
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate { max: max.max(1), inner: Mutex::new(GateInner::default()) })
    }

    /// A newly accepted connection, counted as unauthenticated until [`Gate::release`]; the oldest
    /// unauthenticated connections are evicted to keep the count within the cap. The guard releases the
    /// connection when dropped.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        let conn = Connection::new();
        conn.unauthenticated.store(true, Ordering::Release);
        let mut inner = self.inner.lock();
        inner.count += 1;
        inner.queue.push_back(Arc::downgrade(&conn));
        while inner.count > self.max {
            if !Self::evict_front(&mut inner) {
                break;
            }
        }
        // Connections that authenticated or closed leave stale entries; sweep them before they pile up.
        if inner.queue.len() > 2 * self.max + 64 {
            inner.queue.retain(|w| w.upgrade().is_some_and(|c| c.unauthenticated.load(Ordering::Acquire)));
        }
        drop(inner);
        Admitted { gate: self.clone(), conn }
    }

    /// The connection sent an authenticated request: it no longer counts against the cap.
    pub fn release(&self, conn: &Connection) {
        if conn.unauthenticated.swap(false, Ordering::AcqRel) {
            self.inner.lock().count -= 1;
        }
    }

    /// Close the oldest unauthenticated connection (to free its file descriptor). False when there is none.
    pub fn evict_oldest(&self) -> bool {
        Self::evict_front(&mut self.inner.lock())
    }

    fn evict_front(inner: &mut GateInner) -> bool {
        while let Some(weak) = inner.queue.pop_front() {
            let Some(conn) = weak.upgrade() else { continue };
            if conn.unauthenticated.swap(false, Ordering::AcqRel) {
                inner.count -= 1;
                conn.evict.notify_one();
                return true;
            }
        }
        false
    }

    /// Connections counted as unauthenticated now.
    pub fn unauthenticated(&self) -> usize {
        self.inner.lock().count
    }
}

/// A connection admitted through the [`Gate`]; released from its count when dropped.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<Gate>,
    conn: Arc<Connection>,
}

impl Admitted {
    /// The connection's shared state.
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// The gate it was admitted through.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.release(&self.conn);
    }
}

/// The accept loop's answer to an accept error: whether to pause, and a warning at most once per
/// [`WARN_EVERY`] with how many failures it did not report.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    delay: Option<Duration>,
    last_warning: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    /// An accept succeeded: no more pausing.
    pub fn reset(&mut self) {
        self.delay = None;
    }

    /// An accept failed with `error`: how long to pause before accepting again (None: go on at once).
    pub fn failed(&mut self, error: &std::io::Error, gate: &Gate) -> Option<Duration> {
        let exhausted =
            matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
        if !exhausted {
            // ECONNABORTED and the like concern one connection, not the listener.
            tracing::debug!(%error, "accept failed");
            return None;
        }
        let delay = self.delay.map_or(Duration::from_millis(5), |d| (d * 2).min(Duration::from_secs(1)));
        self.delay = Some(delay);
        let evicted = gate.evict_oldest();
        let now = Instant::now();
        if self.last_warning.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
            tracing::warn!(%error, pause = ?delay, closed_an_unauthenticated_connection = evicted,
                failures_not_reported = self.suppressed, "accept failed: out of file descriptors, backing off");
            self.last_warning = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_evicts_the_oldest_unauthenticated_connection_and_never_an_authenticated_one() {
        let gate = Gate::new(2);
        let first = gate.admit();
        let second = gate.admit();
        gate.release(second.connection());
        let third = gate.admit();
        assert_eq!(gate.unauthenticated(), 2);
        let fourth = gate.admit();
        // The cap is 2: the oldest unauthenticated one (first) made room; second had authenticated.
        assert_eq!(gate.unauthenticated(), 2);
        assert!(!first.connection().unauthenticated.load(Ordering::Acquire));
        assert!(third.connection().unauthenticated.load(Ordering::Acquire));
        assert!(fourth.connection().unauthenticated.load(Ordering::Acquire));
        drop(third);
        assert_eq!(gate.unauthenticated(), 1);
        assert!(gate.evict_oldest(), "fourth is left to evict");
        assert!(!gate.evict_oldest(), "nothing unauthenticated is left");
        assert_eq!(gate.unauthenticated(), 0);
    }

    #[test]
    fn out_of_file_descriptors_backs_off_doubling_to_a_second_and_other_errors_do_not() {
        let gate = Gate::new(4);
        let mut backoff = AcceptBackoff::default();
        let aborted = std::io::Error::from_raw_os_error(103);
        assert_eq!(backoff.failed(&aborted, &gate), None);
        let emfile = std::io::Error::from_raw_os_error(libc::EMFILE);
        let delays: Vec<_> = (0..10).map(|_| backoff.failed(&emfile, &gate).unwrap()).collect();
        assert_eq!(delays[0], Duration::from_millis(5));
        assert_eq!(delays[1], Duration::from_millis(10));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(1));
        assert_eq!(backoff.suppressed, 9, "one warning for ten failures");
        backoff.reset();
        assert_eq!(backoff.failed(&emfile, &gate), Some(Duration::from_millis(5)));
    }
}
