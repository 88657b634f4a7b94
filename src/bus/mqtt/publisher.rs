//! Publishes verdicts and dead letters to an MQTT broker at QoS 1, and tells the pipeline when the
//! broker has acknowledged them.
//!
//! rumqttc gives no handle per publish, but MQTT requires a broker to acknowledge QoS 1 publishes
//! in the order it received them (MQTT 3.1.1, 4.6). So each publish gets a sequence number, the
//! event loop counts PUBACKs, and "everything up to sequence n is on the broker" is
//! `acked >= n`. The pipeline acknowledges input rows only past that point: a crash before it
//! repeats rows, never loses them.
//!
//! The publisher has its own connection, so publishing never waits behind the source's reads.

use crate::bus::link::Link;
use crate::bus::Backoff;
use crate::bus::PublishError;
use crate::config::MqttSettings;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

/// Publishes to one MQTT broker.
#[derive(Debug)]
pub struct MqttPublisher {
    /// Handle to the connection's event loop.
    client: AsyncClient,
    /// Publishes requested so far (the last sequence number handed out); shared with the event
    /// loop, which compares it with the PUBACK count when it reconnects.
    sent: Arc<AtomicU64>,
    /// PUBACKs received so far, from the event loop task.
    acked: watch::Receiver<u64>,
    /// Whether the connection is up (for readiness).
    link: Link,
    /// The event loop task.
    task: JoinHandle<()>,
    /// Set when the publisher can no longer deliver (the broker lost its session).
    failure: watch::Receiver<Option<String>>,
}

impl MqttPublisher {
    /// Connects (in the background; publishes queue until connected) as `<client_id>-out`.
    pub fn start(
        settings: &MqttSettings,
        transport: rumqttc::Transport,
        max_packet_bytes: usize,
    ) -> MqttPublisher {
        let mut options = crate::bus::mqtt::mqtt_options(
            settings,
            format!("{}-out", settings.client_id),
            transport,
        );
        options
            // A persistent session: publishes the broker has not acknowledged are sent again
            // after a reconnect.
            .set_clean_session(false)
            .set_max_packet_size(max_packet_bytes, max_packet_bytes)
            .set_inflight(1000)
            .set_request_channel_capacity(1000);
        let (client, mut eventloop) = AsyncClient::new(options, 1000);
        let (ack_tx, acked) = watch::channel(0u64);
        let link = Link::default();
        let flag = link.clone();
        let target = format!("{}:{}", settings.host, settings.port);
        let sent = Arc::new(AtomicU64::new(0));
        let sent_counter = sent.clone();
        let (failed, failure) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut backoff = Backoff::default();
            let mut count = 0u64;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        count += 1;
                        ack_tx.send_replace(count);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        // A broker that forgot our session (restarted without persistence) also
                        // made rumqttc drop every publish it had not acknowledged: those verdicts
                        // are gone and the PUBACK count can no longer be trusted. Stop loudly so a
                        // supervisor restarts faultline; the rows behind them were not acknowledged.
                        if !ack.session_present && sent_counter.load(Ordering::Relaxed) > count {
                            let lost = sent_counter.load(Ordering::Relaxed) - count;
                            error!(broker = %target, unacknowledged = lost, "The MQTT broker lost the publisher's session (did it restart without persistence?); stopping, since up to this many verdicts were not delivered.");
                            let _ = failed.send(Some(format!(
                                "the MQTT broker at {target} lost the publisher's session with {lost} verdicts unacknowledged; \
                                 enable persistence on the broker so sessions survive its restarts"
                            )));
                            flag.set_up(false);
                            return;
                        }
                        flag.set_up(true);
                        backoff.reset();
                        info!(broker = %target, "Connected the publisher to the MQTT broker.");
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        flag.set_up(false);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        crate::bus::mqtt::mqtt_failed(&flag, &e, &backoff, &target, "publisher");
                        if ack_tx.is_closed() {
                            return;
                        }
                        backoff.wait().await;
                    }
                }
            }
        });
        MqttPublisher {
            client,
            sent,
            acked,
            link,
            task,
            failure,
        }
    }

    /// Queues a QoS 1 publish and returns its sequence number.
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<u64, PublishError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| PublishError(e.to_string()))?;
        Ok(self.sent.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The last sequence number handed out.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Resolves with the reason if the publisher fails for good.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Watches how many publishes the broker has acknowledged.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.acked.clone()
    }

    /// Whether the connection is up.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Disconnects cleanly and waits (briefly) for the event loop to end.
    pub async fn close(self) {
        crate::bus::mqtt::disconnect(&self.client, self.task).await;
    }
}
