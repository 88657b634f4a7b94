//! Rows from an MQTT broker, at least once.
//!
//! The subscription uses QoS 1, a persistent session (clean session off, stable client id) and
//! manual acknowledgements: a row's PUBACK goes out only when the pipeline reports that the row's
//! verdict (or dead letter) is on the broker. If faultline dies first, the broker redelivers.
//!
//! The event loop is polled without pause, as rumqttc requires; the only waits inside it are for
//! room in the bounded pipeline (backpressure: the broker holds the rest) and the reconnect backoff.

use super::driver::{DirectAcks, Driver, Role, Step};
use crate::bus::link::Link;
use crate::bus::mqtt::MqttSettings;
use crate::bus::{Ack, Incoming, SourceOptions};
use crate::metrics::SOURCE_MQTT;
use rumqttc::{AsyncClient, QoS};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::info;

/// How the source tells a message on a topic its subscription does not cover.
#[derive(Clone, Copy)]
enum Cover {
    /// A filter under `$` (`$SYS/...`): every message is taken.
    Unchecked,
    /// A topic without wildcards: it covers itself alone.
    Topic,
    /// A filter with `+` or `#`, matched as MQTT matches it.
    Filter,
}

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
    /// The number of the connection messages are read on (see [`Driver::connection`]).
    connection: Arc<AtomicU64>,
    /// PUBACKs the event loop's driver writes itself.
    direct: Arc<DirectAcks>,
    /// Set if the event loop's task ended on a panic.
    failure: watch::Receiver<Option<String>>,
}

/// Says, if dropped while its task unwinds from a panic, that the source stopped on one.
struct PanicGuard(watch::Sender<Option<String>>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.send_replace(Some(
                "the MQTT source stopped on an internal error (a panic; its message is in the log above)".into(),
            ));
        }
    }
}

/// Whether the subscription `filter` covers `topic`, as MQTT matches them: `+` is one level, `#`
/// the rest (its parent level included), and a topic under `$` is not covered by a filter that
/// begins with a wildcard. (rumqttc's `matches` slices the topic's first byte and panics on a
/// topic that begins with a character of several bytes.)
fn covers(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(t) if f == "+" || f == t => {}
            _ => return false,
        }
    }
    levels.next().is_none()
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
            // Incoming: anything MQTT can carry (see MAX_PACKET_BYTES).
            .set_max_packet_size(super::MAX_PACKET_BYTES, options.max_payload_bytes + 1024)
            .set_request_channel_capacity(options.max_permits as usize + 16);
        let qos = if settings.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        let role = Role {
            broker: format!("{}:{}", settings.host, settings.port),
            client: "source",
        };
        let sessions_lost = options
            .metrics
            .broker_session_lost
            .with_label_values(&["source"]);
        let (driver, client) = Driver::new(mqtt, options.max_permits as usize + 16, role);
        if let crate::bus::admit::Reader::Sparkplug(reader) = &options.reader {
            if !crate::row::sparkplug::filter_takes_births(&settings.topic) {
                tracing::warn!(
                    topic = %settings.topic,
                    "This Sparkplug subscription takes no births (NBIRTH/DBIRTH), so data that \
                     sends metric aliases alone cannot be read; subscribe to spBv1.0/<group>/#."
                );
            }
            // A birth reaches one instance of a shared subscription: there, asking would not end.
            if settings.shared_group.is_none() {
                reader.ask_for_births_on(client.clone());
            }
        }
        let connected = options
            .metrics
            .source_connected
            .with_label_values(&[SOURCE_MQTT]);
        let direct = Arc::new(DirectAcks::default());
        let mut driver = driver
            .direct_acks(direct.clone())
            .subscribe(settings.subscription(), qos)
            .count_sessions_lost(sessions_lost)
            .connected_gauge(connected);
        let link = driver.link();
        let connection = driver.connection();
        let (stop, stopped) = watch::channel(false);
        let filter = settings.subscription();
        // The topics the subscription covers: a message on another comes from a subscription
        // the broker's session kept from an earlier configuration (another topic, a filter that
        // covers faultline's own outputs), and is acknowledged unread.
        let covered = settings.topic.clone();
        // Decided once, not per message: a filter under `$` is not checked, and one without
        // wildcards covers its own topic alone.
        let check = if covered.starts_with('$') {
            Cover::Unchecked
        } else if covered.contains(['+', '#']) {
            Cover::Filter
        } else {
            Cover::Topic
        };
        let client_id = settings.client_id.clone();
        let width = options.schema.width();
        let mut strays = 0u64;
        // Sparkplug data is QoS 0 by its specification: nothing to tell there.
        let mut qos0_told = matches!(options.reader, crate::bus::admit::Reader::Sparkplug(_));
        let (failed, failure) = watch::channel(None);
        let task = tokio::spawn(async move {
            // A bug that ends this task (a panic) must stop the daemon, not leave it ready with
            // nothing read.
            let _guard = PanicGuard(failed);
            let mut output = Some(crate::bus::admit::Admitter::start(
                SOURCE_MQTT,
                options.clone(),
                stopped.clone(),
                output,
            ));
            let mut stopped = stopped;
            loop {
                match driver.next().await {
                    Step::Message(mut publish, connection) => {
                        let Some(out) = output.as_ref() else { continue };
                        if *stopped.borrow_and_update() {
                            // Shutting down: leave it unacknowledged; the broker redelivers it.
                            output = None;
                            continue;
                        }
                        // The acknowledgement needs only the packet id. A payload kept for it
                        // would hold its share of rumqttc's read buffer until the verdicts are
                        // acknowledged, so the buffer could never be reused and grew by a fresh
                        // allocation (and fresh pages) for every packet.
                        let topic = std::mem::take(&mut publish.topic);
                        let payload = std::mem::take(&mut publish.payload);
                        let ack = if publish.qos == QoS::AtMostOnce {
                            // The lower of the publisher's QoS and the subscription's: sent at
                            // QoS 0, a row is neither kept by the broker while faultline is down
                            // nor redelivered after a crash. Said once.
                            if !qos0_told {
                                qos0_told = true;
                                tracing::warn!(%covered, "A row arrived at QoS 0: its publisher sent it at most once, so the broker neither keeps such rows while faultline is down nor delivers them again after a crash. Publish rows at QoS 1 for at-least-once delivery.");
                            }
                            Ack::None
                        } else {
                            Ack::Mqtt {
                                publish,
                                connection,
                            }
                        };
                        let stray = match check {
                            Cover::Unchecked => false,
                            Cover::Topic => topic != covered,
                            Cover::Filter => !covers(&covered, &topic),
                        };
                        let queued = if stray {
                            strays += 1;
                            if strays.is_power_of_two() {
                                tracing::warn!(
                                    %topic,
                                    subscription = %covered,
                                    strays,
                                    "A message arrived on a topic faultline's subscription does not cover: the broker's session for client_id {client_id:?} keeps a subscription from an earlier configuration. It is acknowledged and not read. Give faultline a new [source.mqtt] client_id, or clear the old session (connect once with that client_id and a clean session)."
                                );
                            }
                            let empty = crate::row::json::Decoded::empty(width);
                            driver.while_waiting(out.queue(topic, empty, ack)).await
                        } else {
                            driver.while_waiting(out.push(payload, topic, ack)).await
                        };
                        if !queued {
                            output = None;
                        }
                    }
                    Step::Connected { resumed, .. } => {
                        info!(filter = %filter, session_present = resumed, "Reading rows.");
                    }
                    Step::Closed | Step::Failed(_) => return,
                    Step::PubAck => {}
                }
            }
        });
        MqttSource {
            client,
            link,
            task,
            stop,
            connection,
            direct,
            failure,
        }
    }

    /// Whether the connection is up.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Resolves with the reason if the source stops on an internal error (it reconnects for as
    /// long as it runs otherwise).
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// A handle for acknowledgements, the current connection's number (an acknowledgement for a
    /// message of an earlier connection is dropped) and the queue of PUBACKs the driver writes
    /// itself.
    pub fn acker(&self) -> (AsyncClient, Arc<AtomicU64>, Arc<DirectAcks>) {
        (
            self.client.clone(),
            self.connection.clone(),
            self.direct.clone(),
        )
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

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn filters_cover_topics_as_mqtt_matches_them() {
        for (filter, topic, covered) in [
            ("+/rows", "a/rows", true),
            // rumqttc's `matches` panicked on a topic beginning with a character of two bytes.
            ("+/rows", "Ätzen/rows", true),
            ("#", "é", true),
            ("+/rows", "a/b/rows", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/+", "a/b/c", false),
            ("a/+", "a/", true),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("+", "", true),
            ("#", "$SYS/broker", false),
            ("+/broker", "$SYS/broker", false),
            ("$SYS/#", "$SYS/broker", true),
            ("fab/+/rows", "fab/7/rows", true),
            ("fab/+/rows", "fab/7/rows/x", false),
        ] {
            assert_eq!(covers(filter, topic), covered, "{filter} over {topic}");
        }
    }
}
