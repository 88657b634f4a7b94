//! Retrying without hammering the broker: capped exponential backoff, shared by every client's
//! reconnects and by the Kafka publisher's resends of refused verdicts (with a shorter cap).

use std::time::Duration;

/// Capped exponential backoff: 100 ms doubling to 10 s, or to a shorter cap ([`Backoff::up_to`]).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The next wait.
    next: Duration,
    /// Waits since the last success.
    attempts: u32,
    /// The longest wait.
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::up_to(Backoff::MAX)
    }
}

impl Backoff {
    /// First wait after a failure.
    pub const MIN: Duration = Duration::from_millis(100);
    /// Longest wait.
    pub const MAX: Duration = Duration::from_secs(10);

    /// Backoff whose waits stop growing at `max` (at least [`Backoff::MIN`]).
    pub fn up_to(max: Duration) -> Backoff {
        Backoff {
            next: Backoff::MIN,
            attempts: 0,
            max: max.max(Backoff::MIN),
        }
    }

    /// True before the first wait since the last success: the moment to log a state change.
    pub fn is_first(&self) -> bool {
        self.attempts == 0
    }

    /// Sleeps for the current wait, then doubles it (up to the cap).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
        self.attempts += 1;
    }

    /// After a success.
    pub fn reset(&mut self) {
        *self = Backoff::up_to(self.max);
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
        let mut b = Backoff::up_to(Duration::from_secs(1));
        let mut waits = vec![];
        for _ in 0..3 {
            for _ in 0..6 {
                let t = tokio::time::Instant::now();
                b.wait().await;
                waits.push(t.elapsed().as_millis());
            }
            // A reset keeps the cap.
            b.reset();
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000].repeat(3));
    }
}
