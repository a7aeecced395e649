//! The work queue: which model to reconcile next, one worker per model at a time.
//!
//! Triggers for a model that is being reconciled coalesce into one follow-up run; a failed
//! reconcile is retried after a per-model exponential backoff (1 s doubling to 5 min,
//! reset on success). Periodic resyncs do not cut a backoff short; real changes do.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// First retry delay after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// How long to wait before retrying after `failures` consecutive failures (1-based).
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_CAP)
}

/// How a reconcile ended, as the queue needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Converged (or nothing to do): forget past failures.
    Done,
    /// Failed: retry after the backoff.
    Retry,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    queued: HashSet<String>,
    running: HashSet<String>,
    dirty: HashSet<String>,
    delayed: BTreeSet<(Instant, String)>,
    failures: HashMap<String, u32>,
    closed: bool,
}

impl State {
    fn enqueue(&mut self, key: &str) {
        if self.running.contains(key) {
            self.dirty.insert(key.to_string());
        } else if self.queued.insert(key.to_string()) {
            self.ready.push_back(key.to_string());
        }
    }

    fn promote_due(&mut self, now: Instant) {
        while let Some((due, key)) = self.delayed.first().cloned() {
            if due > now {
                break;
            }
            self.delayed.pop_first();
            self.enqueue(&key);
        }
    }

    fn in_backoff(&self, key: &str) -> bool {
        self.delayed.iter().any(|(_, k)| k == key)
    }
}

/// A de-duplicating, per-key serialised work queue with delayed retries.
#[derive(Default)]
pub struct WorkQueue {
    state: Mutex<State>,
    wake: Notify,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves only plain collections behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Asks for `key` to be reconciled soon (a real change: cuts any backoff short).
    pub fn add(&self, key: &str) {
        self.lock().enqueue(key);
        self.wake.notify_one();
    }

    /// Asks for `key` to be reconciled as part of a periodic resync: a key waiting out a
    /// failure backoff keeps waiting.
    pub fn add_resync(&self, key: &str) {
        let mut state = self.lock();
        if state.in_backoff(key) {
            return;
        }
        state.enqueue(key);
        drop(state);
        self.wake.notify_one();
    }

    /// Waits for the next key to reconcile; `None` once the queue is closed.
    pub async fn next(&self) -> Option<String> {
        loop {
            let notified = self.wake.notified();
            let wait_until = {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                state.promote_due(Instant::now());
                if let Some(key) = state.ready.pop_front() {
                    state.queued.remove(&key);
                    state.running.insert(key.clone());
                    return Some(key);
                }
                state.delayed.first().map(|(due, _)| *due)
            };
            match wait_until {
                Some(due) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Reports that the reconcile of `key` ended.
    pub fn done(&self, key: &str, outcome: Outcome) {
        let mut state = self.lock();
        state.running.remove(key);
        match outcome {
            Outcome::Done => {
                state.failures.remove(key);
                state.delayed.retain(|(_, k)| k != key);
            }
            Outcome::Retry => {
                let failures = state.failures.entry(key.to_string()).or_insert(0);
                *failures += 1;
                let due = Instant::now() + backoff(*failures);
                state.delayed.retain(|(_, k)| k != key);
                state.delayed.insert((due, key.to_string()));
            }
        }
        if state.dirty.remove(key) {
            state.enqueue(key);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Consecutive failures of `key` so far.
    pub fn failures(&self, key: &str) -> u32 {
        self.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// Keys waiting to run now (not counting delayed retries or running ones).
    pub fn depth(&self) -> usize {
        self.lock().ready.len()
    }

    /// Stops handing out work: every `next` returns `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn backoff_doubles_from_one_second_to_a_five_minute_cap() {
        let delays: Vec<u64> = (1..=11).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_handed_out_once_in_order() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        queue.add("a");
        assert_eq!(queue.next().await.as_deref(), Some("a"));
        assert_eq!(queue.next().await.as_deref(), Some("b"));
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn triggers_for_a_busy_key_coalesce_into_one_follow_up() {
        let queue = WorkQueue::new();
        queue.add("a");
        assert_eq!(queue.next().await.as_deref(), Some("a"));
        queue.add("a");
        queue.add("a");
        queue.add("a");
        assert_eq!(
            queue.depth(),
            0,
            "a busy key is not handed to a second worker"
        );
        queue.done("a", Outcome::Done);
        assert_eq!(queue.depth(), 1);
        assert_eq!(queue.next().await.as_deref(), Some("a"));
        queue.done("a", Outcome::Done);
        assert_eq!(queue.depth(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_retried_after_a_growing_backoff_and_reset_on_success() {
        let queue = Arc::new(WorkQueue::new());
        queue.add("a");
        let start = Instant::now();
        for expected in [0, 1, 3, 7] {
            assert_eq!(queue.next().await.as_deref(), Some("a"));
            assert_eq!(start.elapsed().as_secs(), expected);
            queue.done("a", Outcome::Retry);
        }
        assert_eq!(queue.failures("a"), 4);
        assert_eq!(queue.next().await.as_deref(), Some("a"));
        assert_eq!(start.elapsed().as_secs(), 15);
        queue.done("a", Outcome::Done);
        assert_eq!(queue.failures("a"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_resync_does_not_cut_a_backoff_short_but_a_change_does() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.next().await;
        queue.done("a", Outcome::Retry);
        queue.done("a", Outcome::Retry);
        queue.add_resync("a");
        assert_eq!(queue.depth(), 0, "resync respects the backoff");
        queue.add("a");
        assert_eq!(queue.depth(), 1, "a real change goes straight in");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_wakes_when_work_arrives() {
        let queue = Arc::new(WorkQueue::new());
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.add("late");
        assert_eq!(worker.await.unwrap().as_deref(), Some("late"));
    }

    #[tokio::test(start_paused = true)]
    async fn closing_releases_waiting_workers() {
        let queue = Arc::new(WorkQueue::new());
        let worker = tokio::spawn({
            let queue = queue.clone();
            async move { queue.next().await }
        });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(worker.await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn different_keys_run_concurrently() {
        let queue = WorkQueue::new();
        queue.add("a");
        queue.add("b");
        let first = queue.next().await;
        let second = queue.next().await;
        assert_eq!(
            (first.as_deref(), second.as_deref()),
            (Some("a"), Some("b"))
        );
    }
}
