//! The acknowledger: releases each batch's messages to their broker (MQTT PUBACK, Kafka offset
//! store) once the broker has acknowledged every output the batch produced, in order, and frees
//! their share of the in-flight bound. A row is therefore acknowledged only after its verdict is
//! safe: kill -9 at any point loses nothing (the broker redelivers what was not acknowledged).

use crate::bus::{Ack, Acker};
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// A batch scored and published, waiting for the broker's acknowledgements.
pub struct Pending {
    /// The publisher's sequence number of the batch's last output.
    pub seq_end: u64,
    /// What to acknowledge, and the in-flight permits to release, once `seq_end` is acknowledged.
    /// Each with when its message arrived and how many rows it held (for latency).
    pub acks: Vec<(Ack, Option<OwnedSemaphorePermit>, Instant, usize)>,
}

/// The acknowledger of `faultline serve`.
pub struct Acknowledger {
    /// Acknowledges to the source's broker.
    pub acker: Acker,
    /// How many outputs the publisher's broker has acknowledged.
    pub acked: watch::Receiver<u64>,
    /// The in-flight bound, and its size (for the queue gauge).
    pub in_flight: Arc<Semaphore>,
    /// Total permits of `in_flight`.
    pub permits: u32,
    /// Where counts go.
    pub metrics: Arc<Metrics>,
}

impl Acknowledger {
    /// Acknowledges each batch from `pending` once its outputs are on the broker; ends when the
    /// scoring stage ends, after handing over (for up to 2 s) what the source's driver has not
    /// written yet.
    pub async fn run(mut self, mut pending: mpsc::Receiver<Pending>) {
        let mut retry = tokio::time::interval(Duration::from_millis(5));
        loop {
            let p = tokio::select! {
                p = pending.recv() => match p {
                    Some(p) => p,
                    None => break,
                },
                _ = retry.tick(), if self.acker.has_waiting() => {
                    self.acker.flush();
                    continue;
                }
            };
            if self.acked.wait_for(|a| *a >= p.seq_end).await.is_err() {
                return;
            }
            for (ack, permit, received, rows) in p.acks {
                self.acker.ack(ack);
                drop(permit);
                let latency = received.elapsed().as_secs_f64();
                for _ in 0..rows {
                    self.metrics.row_latency.observe(latency);
                }
            }
            self.metrics
                .queue_rows
                .set(self.permits as i64 - self.in_flight.available_permits() as i64);
        }
        // Shutting down: hand over what still waits (the source disconnects after this).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.acker.has_waiting() && tokio::time::Instant::now() < deadline {
            self.acker.flush();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
