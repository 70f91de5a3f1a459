//! Following a capped log: everything after a position, then each new entry as it is appended,
//! until a stop signal. Any number of followers poll one log with non-blocking range reads (no
//! blocking read: a replica's Redis connection is shared by every call it makes).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use super::{Store, StoreResult, StreamEntry};

/// How a follower polls.
#[derive(Clone, Copy, Debug)]
pub struct FollowOptions {
    /// How long an idle follower waits before it looks again.
    pub poll_interval: Duration,
    /// Entries read per look.
    pub batch: usize,
}

/// Whether `id` has the form of a log entry id, `<ms>-<seq>` (what a follower resumes after).
pub fn is_entry_id(id: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    id.split_once('-').is_some_and(|(ms, seq)| digits(ms) && digits(seq))
}

/// One follower of a log: where it is and what it has read but not yet handed out.
struct Follower {
    store: Store,
    key: String,
    after: Option<String>,
    opts: FollowOptions,
    pending: VecDeque<StreamEntry>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The entries of the log `key` after `after` (from its first entry when `None`), oldest first,
/// then every entry appended later, as a stream that ends when `stop` resolves (checked while
/// idle) or after the first store error (handed out as the last item). Dropping the stream is
/// all the cleanup there is: it has no task of its own.
pub fn follow(
    store: Store,
    key: String,
    after: Option<String>,
    opts: FollowOptions,
    stop: impl Future<Output = ()> + Send + 'static,
) -> impl Stream<Item = StoreResult<StreamEntry>> + Send + 'static {
    let follower = Follower { store, key, after, opts, pending: VecDeque::new(), stop: Box::pin(stop) };
    futures_util::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        match follower.next().await {
            Ok(Some(entry)) => Some((Ok(entry), Some(follower))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    })
}

// === impl Follower ===

impl Follower {
    async fn next(&mut self) -> StoreResult<Option<StreamEntry>> {
        let mut idle = false;
        loop {
            if let Some(entry) = self.pending.pop_front() {
                self.after = Some(entry.id.clone());
                return Ok(Some(entry));
            }
            if idle {
                tokio::select! {
                    () = &mut self.stop => return Ok(None),
                    () = tokio::time::sleep(self.opts.poll_interval) => {}
                }
            }
            let batch = self.opts.batch.max(1);
            let entries = self.store.log_after(&self.key, self.after.as_deref(), batch).await?;
            idle = entries.len() < batch;
            self.pending.extend(entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[test]
    fn entry_ids_are_ms_dash_seq() {
        assert!(is_entry_id("1700000000000-3"));
        for bad in ["", "+", "1-x", "-1", "1700000000000", "1-2-3", "123456789012345678901-0"] {
            assert!(!is_entry_id(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_follower_replays_after_its_position_follows_new_entries_and_stops() {
        let store = Store::memory();
        let bounds = crate::store::LogBounds { max_len: 10, max_bytes: 1000, ttl: Duration::from_secs(60) };
        let first = store.log_append("log", &[("n", "1")], bounds).await.unwrap();
        store.log_append("log", &[("n", "2")], bounds).await.unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let opts = FollowOptions { poll_interval: Duration::from_millis(5), batch: 1 };
        let stop = async move {
            let _ = stop_rx.await;
        };
        let mut entries = Box::pin(follow(store.clone(), "log".into(), Some(first), opts, stop));
        let n = |e: StreamEntry| e.field("n").unwrap().to_owned();
        assert_eq!(n(entries.next().await.unwrap().unwrap()), "2");
        store.log_append("log", &[("n", "3")], bounds).await.unwrap();
        assert_eq!(n(entries.next().await.unwrap().unwrap()), "3");
        stop_tx.send(()).unwrap();
        assert!(entries.next().await.is_none(), "stopped");
    }
}
