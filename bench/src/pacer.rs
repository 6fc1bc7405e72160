//! Precise start times for open-loop clients.
//!
//! An open-loop client starts each transfer at a scheduled time and its latency is counted
//! from that time, so a late start is charged to the transfer. tokio's timer works in whole
//! milliseconds: it rounds a deadline up to the next millisecond tick and the driver sleeps in
//! whole milliseconds, so `tokio::time::sleep_until` wakes 0.6-2 ms late (1.1 ms on the median,
//! measured idle on the 2-core machine). That lag is the benchmark's own, not the cluster's.
//!
//! A [`Pacer`] keeps every client's next start time in one heap, served by a thread of its own
//! that sleeps on a condition variable until the earliest one (the kernel's timers, tens of
//! microseconds) and then wakes that client's task. The clients still record how late they
//! actually started (`send_lag` in the report), so whatever lag is left stays visible.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;
use tokio::sync::oneshot;

/// One sleeping task: its start time, a sequence number for a stable order, its wake-up.
struct Sleeper {
    due: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    sleepers: BinaryHeap<Reverse<Sleeper>>,
    next_seq: u64,
    closed: bool,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still a valid heap.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pacer thread: wakes each sleeper at its time, until the [`Pacer`] is dropped.
    fn serve(&self) {
        let mut queue = self.lock();
        loop {
            if queue.closed {
                return;
            }
            let now = Instant::now();
            let wait = match queue.sleepers.peek() {
                None => None,
                Some(Reverse(first)) if first.due <= now => {
                    if let Some(Reverse(due)) = queue.sleepers.pop() {
                        // The task may have given up waiting; nothing to wake then.
                        let _ = due.wake.send(());
                    }
                    continue;
                }
                Some(Reverse(first)) => Some(first.due - now),
            };
            queue = match wait {
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
                Some(wait) => {
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Wakes tasks at given instants, more precisely than tokio's millisecond timer (see the
/// module docs). Dropping it stops its thread; tasks still sleeping then wake at once.
pub struct Pacer {
    inner: Arc<Inner>,
}

/// What a client task holds to sleep on a [`Pacer`].
#[derive(Clone)]
pub struct PacerHandle {
    inner: Arc<Inner>,
}

impl Pacer {
    /// Starts the pacer's thread.
    pub fn start() -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        let served = inner.clone();
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || served.serve())?;
        Ok(Self { inner })
    }

    /// A handle for a task that sleeps on this pacer.
    pub fn handle(&self) -> PacerHandle {
        PacerHandle {
            inner: self.inner.clone(),
        }
    }
}

impl PacerHandle {
    /// Returns at `due` or shortly after, never before (or at once if the pacer is gone).
    pub async fn sleep_until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        let (wake, woken) = oneshot::channel();
        {
            let mut queue = self.inner.lock();
            if queue.closed {
                return;
            }
            let seq = queue.next_seq;
            queue.next_seq += 1;
            let earliest = queue
                .sleepers
                .peek()
                .is_none_or(|Reverse(first)| due < first.due);
            queue.sleepers.push(Reverse(Sleeper { due, seq, wake }));
            if earliest {
                self.inner.changed.notify_one();
            }
        }
        // An error means the pacer was dropped: return rather than sleep forever.
        let _ = woken.await;
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        let mut queue = self.inner.lock();
        queue.closed = true;
        // Dropping the senders wakes every task still waiting.
        queue.sleepers.clear();
        self.inner.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn sleepers_never_wake_before_their_time() {
        let pacer = Pacer::start().expect("pacer thread");
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        // Out of order on purpose: the heap must serve the earliest first.
        for ms in [30u64, 5, 20, 1, 10, 15, 25, 0] {
            let pacer = pacer.handle();
            let due = start + Duration::from_millis(ms);
            set.spawn(async move {
                pacer.sleep_until(due).await;
                (due, Instant::now())
            });
        }
        let mut woken = 0;
        while let Some(joined) = set.join_next().await {
            let (due, at) = joined.expect("sleeper task");
            assert!(at >= due, "woke {:?} early", due - at);
            woken += 1;
        }
        assert_eq!(woken, 8);
    }

    #[tokio::test]
    async fn the_earliest_sleeper_is_served_first() {
        let pacer = Pacer::start().expect("pacer thread");
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut set = tokio::task::JoinSet::new();
        // A late sleeper registers first; an earlier one must not wait behind it.
        for (i, ms) in [(0usize, 400u64), (1, 20)] {
            let (pacer, order) = (pacer.handle(), order.clone());
            set.spawn(async move {
                pacer.sleep_until(start + Duration::from_millis(ms)).await;
                order.lock().expect("order").push(i);
            });
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        while set.join_next().await.is_some() {}
        assert_eq!(*order.lock().expect("order"), vec![1, 0]);
    }

    #[tokio::test]
    async fn dropping_the_pacer_releases_its_sleepers() {
        let pacer = Pacer::start().expect("pacer thread");
        let waiting = {
            let pacer = pacer.handle();
            tokio::spawn(async move {
                pacer
                    .sleep_until(Instant::now() + Duration::from_secs(3600))
                    .await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(pacer);
        tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("a dropped pacer released its sleeper")
            .expect("sleeper task");
    }
}
