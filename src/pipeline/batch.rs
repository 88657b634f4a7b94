//! The size-or-age micro-batcher.
//!
//! Rows arrive in messages of one or more rows. A batch starts with the first message after the
//! previous flush; it is flushed when it holds at least `max_rows` rows or when `linger` has passed
//! since that first message, whichever comes first, and whatever is left is flushed when the input
//! ends. A message is never split: a batch may exceed `max_rows` by the last message's rows.

pub use crate::config::BatchPolicy;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

/// Something that carries a number of rows.
pub trait Rows {
    /// Rows in this item.
    fn rows(&self) -> usize;
}

impl Rows for crate::bus::Incoming {
    fn rows(&self) -> usize {
        crate::bus::Incoming::rows(self)
    }
}

/// Reads items from `input` and sends batches to `output` until `input` closes (then flushes the
/// rest) or `output` is dropped. Waiting on a full `output` is backpressure: nothing is dropped.
///
/// When `stop` turns true the input is closed to new items, and what is already queued is still
/// batched and sent: shutdown scores everything it has accepted.
pub async fn run<T: Rows>(
    mut input: mpsc::Receiver<T>,
    output: mpsc::Sender<Vec<T>>,
    policy: BatchPolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut stopping = false;
    loop {
        let first = tokio::select! {
            biased;
            item = input.recv() => item,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                input.close();
                continue;
            }
        };
        let Some(first) = first else { return };
        let deadline = Instant::now() + policy.linger;
        let mut rows = first.rows();
        let mut batch = vec![first];
        let mut closed = false;
        while rows < policy.max_rows.get() {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    input.close();
                }
                item = input.recv() => match item {
                    Some(item) => {
                        rows += item.rows();
                        batch.push(item);
                    }
                    None => {
                        closed = true;
                        break;
                    }
                },
                _ = sleep_until(deadline) => break,
            }
        }
        if output.send(batch).await.is_err() || closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;
    use std::time::Duration;

    impl Rows for usize {
        fn rows(&self) -> usize {
            *self
        }
    }

    fn policy(max_rows: usize, linger_ms: u64) -> BatchPolicy {
        BatchPolicy {
            max_rows: NonZeroUsize::new(max_rows).unwrap(),
            linger: Duration::from_millis(linger_ms),
        }
    }

    fn start(p: BatchPolicy) -> (mpsc::Sender<usize>, mpsc::Receiver<Vec<usize>>) {
        let (tx, rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            run(rx, out_tx, p, stop).await;
            drop(stop_tx);
        });
        (tx, out_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn stop_flushes_what_was_queued_at_once_and_refuses_more() {
        let (tx, rx) = mpsc::channel(64);
        let (out_tx, mut out) = mpsc::channel(64);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(run(rx, out_tx, policy(100, 60_000), stop));
        tx.send(1).await.unwrap();
        tx.send(2).await.unwrap();
        tokio::task::yield_now().await;
        let t0 = Instant::now();
        stop_tx.send_replace(true);
        assert_eq!(out.recv().await.unwrap(), [1, 2]);
        assert_eq!(Instant::now(), t0, "stopping does not wait for the linger");
        assert!(
            tx.send(3).await.is_err(),
            "a stopped batcher takes no more rows"
        );
        task.await.unwrap();
        assert!(out.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_when_full_without_waiting_for_the_linger() {
        let (tx, mut out) = start(policy(4, 1_000));
        let t0 = Instant::now();
        for _ in 0..4 {
            tx.send(1).await.unwrap();
        }
        assert_eq!(out.recv().await.unwrap(), [1, 1, 1, 1]);
        assert_eq!(
            Instant::now(),
            t0,
            "a full batch must not wait for the timer"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_a_partial_batch_when_the_linger_expires_after_its_first_row() {
        let (tx, mut out) = start(policy(100, 5));
        let t0 = Instant::now();
        tx.send(1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(3)).await;
        tx.send(2).await.unwrap();
        assert_eq!(out.recv().await.unwrap(), [1, 2]);
        assert_eq!(
            Instant::now() - t0,
            Duration::from_millis(5),
            "the timer starts with the first row"
        );
        // The next batch's timer starts with its own first row, not before.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t1 = Instant::now();
        tx.send(3).await.unwrap();
        assert_eq!(out.recv().await.unwrap(), [3]);
        assert_eq!(Instant::now() - t1, Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_batcher_never_flushes_empty_batches() {
        let (_tx, mut out) = start(policy(10, 5));
        let waited = tokio::time::timeout(Duration::from_secs(60), out.recv()).await;
        assert!(waited.is_err(), "no input, no batch");
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_the_rest_when_input_ends() {
        let (tx, mut out) = start(policy(100, 60_000));
        tx.send(2).await.unwrap();
        tx.send(3).await.unwrap();
        drop(tx);
        let t0 = Instant::now();
        assert_eq!(out.recv().await.unwrap(), [2, 3]);
        assert_eq!(Instant::now(), t0, "closing input flushes at once");
        assert!(out.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_never_split_and_counts_by_rows() {
        let (tx, mut out) = start(policy(4, 1_000));
        tx.send(3).await.unwrap();
        tx.send(3).await.unwrap();
        tx.send(1).await.unwrap();
        assert_eq!(out.recv().await.unwrap(), [3, 3]);
        assert_eq!(out.recv().await.unwrap(), [1]);
    }
}
