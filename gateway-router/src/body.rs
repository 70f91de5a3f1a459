//! The client's request body, bounded in size and in time, and whose failures are the client's.
//!
//! A body that stops arriving is the commonest way for one client to hold a router's
//! resources: hyper bounds the head, not the body. [`ClientBody`] fails a body that makes no
//! progress for `body_idle_timeout` or takes longer than `body_total_timeout` in all, and one
//! larger than `max_body_bytes`. Its errors are [`ClientBodyError`], so wherever one surfaces
//! (collecting a kept body, or inside the upstream client's error while a body streams) it is
//! recognised as the client's doing and never counted against a gateway.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// How a client's body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    #[error("the request body stopped arriving")]
    TimedOut,
    #[error("the request body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the request body could not be read: {0}")]
    Broken(String),
}

impl ClientBodyError {
    /// The client-body failure somewhere in `error`'s cause chain, if there is one.
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a ClientBodyError> {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(found) = e.downcast_ref::<ClientBodyError>() {
                return Some(found);
            }
            cause = e.source();
        }
        None
    }
}

/// A request body read under the client limits.
pub struct ClientBody {
    inner: Incoming,
    max_bytes: u64,
    read: u64,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    total: Pin<Box<Sleep>>,
    /// Set once the body has ended: an answer that came before it is judged with the client's
    /// slowness in mind.
    complete: Arc<AtomicBool>,
    failed: bool,
    /// The last poll returned a frame: the time until the next poll was the reader's, not the
    /// client's, so the idle deadline starts again when it comes.
    handed: bool,
}

impl ClientBody {
    pub fn new(inner: Incoming, max_bytes: u64, idle_timeout: Duration, total_timeout: Duration) -> Self {
        let complete = Arc::new(AtomicBool::new(inner.is_end_stream()));
        Self {
            inner,
            max_bytes,
            read: 0,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            total: Box::pin(tokio::time::sleep(total_timeout)),
            complete,
            failed: false,
            handed: false,
        }
    }

    /// Whether the whole body has been read, at any later time.
    pub fn completion(&self) -> Arc<AtomicBool> {
        self.complete.clone()
    }

    fn fail(&mut self, error: ClientBodyError) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        self.failed = true;
        metrics::counter!("router_client_body_failures_total", "reason" => match &error {
            ClientBodyError::TimedOut => "timeout",
            ClientBodyError::TooLarge(_) => "too_large",
            ClientBodyError::Broken(_) => "broken",
        })
        .increment(1);
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        if std::mem::take(&mut this.handed) {
            let next = Instant::now() + this.idle_timeout;
            this.idle.as_mut().reset(next);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.max_bytes {
                        return this.fail(ClientBodyError::TooLarge(this.max_bytes));
                    }
                }
                if this.total.as_mut().poll(cx).is_ready() {
                    return this.fail(ClientBodyError::TimedOut);
                }
                // A sized body's reader (hyper's client) stops polling once the body says it
                // has ended, so the end is noted here, not only at `Ready(None)`.
                if this.inner.is_end_stream() {
                    this.complete.store(true, Ordering::Release);
                }
                this.handed = true;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(ClientBodyError::Broken(e.to_string())),
            Poll::Ready(None) => {
                this.complete.store(true, Ordering::Release);
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.idle.as_mut().poll(cx).is_ready() || this.total.as_mut().poll(cx).is_ready() {
                    return this.fail(ClientBodyError::TimedOut);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A body that holds `guard` until it is dropped (a pool slot, an in-flight count), and says
/// everything else about itself as `inner` does. `map_frame` would do the holding but hides the
/// size hint, turning every sized answer into a chunked one.
pub struct Guarded<B, G> {
    inner: B,
    _guard: G,
}

impl<B, G> Guarded<B, G> {
    pub fn new(inner: B, guard: G) -> Self {
        Self { inner, _guard: guard }
    }
}

impl<B: Body + Unpin, G: Unpin> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] ClientBodyError);

    #[test]
    fn a_client_body_error_is_found_through_its_wrappers() {
        let wrapped = Outer(ClientBodyError::TimedOut);
        assert_eq!(ClientBodyError::find(&wrapped), Some(&ClientBodyError::TimedOut));
        let other = std::io::Error::other("connection refused");
        assert_eq!(ClientBodyError::find(&other), None);
    }
}
