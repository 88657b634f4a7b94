//! Rows from an MQTT broker, at least once.
//!
//! The subscription uses QoS 1, a persistent session (clean session off, stable client id) and
//! manual acknowledgements: a row's PUBACK goes out only when the pipeline reports that the row's
//! verdict (or dead letter) is on the broker. If faultline dies first, the broker redelivers.
//!
//! The event loop is polled without pause, as rumqttc requires; the only waits inside it are for
//! room in the bounded pipeline (backpressure: the broker holds the rest) and the reconnect backoff.

use crate::bus::link::Link;
use crate::bus::{Ack, Backoff, Incoming, SourceOptions};
use crate::config::MqttSettings;
use crate::metrics::SOURCE_MQTT;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// A running MQTT source.
#[derive(Debug)]
pub struct MqttSource {
    /// For acknowledgements and the final disconnect.
    client: AsyncClient,
    /// Whether the connection is up.
    link: Link,
    /// The event loop task; ends after [`MqttSource::close`].
    task: tokio::task::JoinHandle<()>,
    /// Tells the event loop to stop forwarding messages (they stay unacknowledged).
    stop: watch::Sender<bool>,
}

impl MqttSource {
    /// Connects (retrying in the background), subscribes and forwards every message to `output`.
    pub fn start(
        settings: &MqttSettings,
        transport: rumqttc::Transport,
        options: SourceOptions,
        output: mpsc::Sender<Incoming>,
    ) -> MqttSource {
        let mut mqtt = super::mqtt_options(settings, settings.client_id.clone(), transport);
        mqtt.set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(
                options.max_payload_bytes + 1024,
                options.max_payload_bytes + 1024,
            )
            .set_request_channel_capacity(options.max_permits as usize + 16);
        let (client, mut eventloop) = AsyncClient::new(mqtt, options.max_permits as usize + 16);
        let link = Link::default();
        let (stop, mut stopped) = watch::channel(false);
        let flag = link.clone();
        let filter = settings.subscription();
        let qos = if settings.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let sub_client = client.clone();
        let target = format!("{}:{}", settings.host, settings.port);
        let task = tokio::spawn(async move {
            let mut backoff = Backoff::default();
            let mut output = Some(crate::bus::admit::Admitter::start(
                SOURCE_MQTT,
                crate::bus::admit::Decode::Offload,
                options.clone(),
                stopped.clone(),
                output,
            ));
            loop {
                let event = eventloop.poll().await;
                match event {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let Some(out) = output.as_ref() else { continue };
                        if *stopped.borrow_and_update() {
                            // Shutting down: leave it unacknowledged; the broker redelivers it.
                            output = None;
                            continue;
                        }
                        let topic = publish.topic.clone();
                        let payload = publish.payload.clone();
                        let ack = if publish.qos == QoS::AtMostOnce {
                            Ack::None
                        } else {
                            Ack::Mqtt(publish)
                        };
                        if !out.push(payload, topic, ack).await {
                            output = None;
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        flag.set_up(true);
                        options
                            .metrics
                            .source_connected
                            .with_label_values(&[SOURCE_MQTT])
                            .set(1);
                        backoff.reset();
                        info!(broker = %target, filter = %filter, session_present = ack.session_present, "Connected to the MQTT broker.");
                        // A broker that lost our session lost our subscription too.
                        if !ack.session_present {
                            if let Err(e) = sub_client.subscribe(filter.clone(), qos).await {
                                warn!(error = %e, "Could not request the subscription.");
                            }
                        }
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                        flag.set_up(false);
                        options
                            .metrics
                            .source_connected
                            .with_label_values(&[SOURCE_MQTT])
                            .set(0);
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        super::mqtt_failed(&flag, &e, &backoff, &target, "source");
                        options
                            .metrics
                            .source_connected
                            .with_label_values(&[SOURCE_MQTT])
                            .set(0);
                        backoff.wait().await;
                    }
                }
            }
        });
        MqttSource {
            client,
            link,
            task,
            stop,
        }
    }

    /// Whether the connection is up.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// A handle for acknowledgements.
    pub fn acker(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Stops forwarding messages; what arrives from now on stays unacknowledged.
    pub fn stop_reading(&self) {
        self.stop.send_replace(true);
    }

    /// Disconnects after the last acknowledgement was queued, and waits for the event loop.
    pub async fn close(self) {
        self.stop.send_replace(true);
        super::disconnect(&self.client, self.task).await;
    }
}
