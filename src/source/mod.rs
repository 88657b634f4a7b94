//! Rows from the bus. A source turns broker messages into [`Incoming`] items for the pipeline and
//! acknowledges them only when the pipeline says their verdicts are on the broker.

pub mod mqtt;

use crate::row::json::Decoded;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// One broker message, decoded, waiting to be scored.
#[derive(Debug)]
pub struct Incoming {
    /// Topic it arrived on.
    pub topic: String,
    /// Rows that decoded, rows that did not, and the count of unknown keys.
    pub decoded: Decoded,
    /// When it arrived (RFC 3339), for dead letters.
    pub received_at: String,
    /// When it arrived, for latency.
    pub received: std::time::Instant,
    /// How to acknowledge it to the broker once its outputs are published.
    pub ack: Ack,
    /// Its share of the in-flight bound; released when it is acknowledged.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl crate::batch::Rows for Incoming {
    fn rows(&self) -> usize {
        self.decoded.rows.len() + self.decoded.rejects.len()
    }
}

/// What acknowledging a message takes.
#[derive(Debug)]
pub enum Ack {
    /// An MQTT QoS 1 publish, acknowledged with PUBACK through the source's connection.
    Mqtt(rumqttc::Publish),
    /// Nothing to acknowledge (QoS 0, or a message that did not come from a broker).
    None,
}

/// Disconnects an MQTT client cleanly and waits up to 2 s for its event loop task to end.
pub async fn disconnect(client: &rumqttc::AsyncClient, mut task: tokio::task::JoinHandle<()>) {
    let _ = client.disconnect().await;
    if tokio::time::timeout(Duration::from_secs(2), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

/// Capped exponential backoff for reconnecting: 100 ms doubling to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next wait.
    next: Duration,
    /// Waits since the last success.
    attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: Backoff::MIN,
            attempts: 0,
        }
    }
}

impl Backoff {
    /// First wait after a failure.
    pub const MIN: Duration = Duration::from_millis(100);
    /// Longest wait.
    pub const MAX: Duration = Duration::from_secs(10);

    /// True before the first wait since the last success: the moment to log a state change.
    pub fn is_first(&self) -> bool {
        self.attempts == 0
    }

    /// Sleeps for the current wait, then doubles it (up to [`Backoff::MAX`]).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Backoff::MAX);
        self.attempts += 1;
    }

    /// After a success.
    pub fn reset(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        assert!(b.is_first());
        let mut waits = vec![];
        for _ in 0..9 {
            let t = tokio::time::Instant::now();
            b.wait().await;
            waits.push(t.elapsed().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]);
        assert!(!b.is_first());
        b.reset();
        assert!(b.is_first());
    }
}
