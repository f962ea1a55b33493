//! The watcher handed to callers: a stream of events, whatever the backend.

use crate::{Event, Result};
use futures::stream::BoxStream;
use futures::StreamExt;
use std::sync::Arc;

/// A stream of changes under a prefix, in revision order. It ends with an error when the watcher fell
/// behind ([`crate::Error::WatcherLagged`]) or the store closed.
pub struct Watcher {
    inner: BoxStream<'static, Result<Arc<Event>>>,
}

impl Watcher {
    /// Wrap a backend's event stream.
    pub fn new(inner: BoxStream<'static, Result<Arc<Event>>>) -> Self {
        Watcher { inner }
    }

    /// The next event; `None` once the stream is over.
    pub async fn next(&mut self) -> Option<Result<Arc<Event>>> {
        self.inner.next().await
    }

    /// The watcher as a `Stream`.
    pub fn into_stream(self) -> BoxStream<'static, Result<Arc<Event>>> {
        self.inner
    }
}
