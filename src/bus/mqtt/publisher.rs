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
//!
//! When the broker comes back without the publisher's session (a restart without persistence),
//! the [`Driver`] sends again, in their first order, the publishes the broker had not
//! acknowledged, so the count stays true and no verdict is lost (some may repeat: at least once).
//! With `[source.mqtt] on_session_lost = "exit"` the publisher fails instead, as before.

use super::driver::{Driver, Role, Step};
use crate::bus::link::Link;
use crate::bus::mqtt::{MqttSettings, OnSessionLost};
use crate::bus::PublishError;
use rumqttc::{AsyncClient, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::error;

/// Publishes to one MQTT broker.
#[derive(Debug)]
pub struct MqttPublisher {
    /// Handle to the connection's event loop.
    client: AsyncClient,
    /// Publishes requested so far (the last sequence number handed out).
    sent: Arc<AtomicU64>,
    /// PUBACKs received so far, from the event loop task.
    acked: watch::Receiver<u64>,
    /// Whether the connection is up (for readiness).
    link: Link,
    /// The event loop task.
    task: JoinHandle<()>,
    /// Set when the publisher can no longer deliver (a lost session with `on_session_lost =
    /// "exit"`, or a failed connection of a fail-fast publisher).
    failure: watch::Receiver<Option<String>>,
}

impl MqttPublisher {
    /// Connects (in the background; publishes queue until connected) as `<client_id>-out`, with
    /// a persistent session, reconnecting for ever; counts lost sessions on `sessions_lost`.
    pub fn start(
        settings: &MqttSettings,
        transport: rumqttc::Transport,
        max_packet_bytes: usize,
        sessions_lost: Option<prometheus::IntCounter>,
    ) -> MqttPublisher {
        let mut options = crate::bus::mqtt::mqtt_options(
            settings,
            format!("{}-out", settings.client_id),
            transport,
        );
        // A persistent session: publishes the broker has not acknowledged are sent again after a
        // reconnect (and by the driver when the broker lost the session).
        options.set_clean_session(false);
        let role = Role {
            broker: format!("{}:{}", settings.host, settings.port),
            client: "publisher",
        };
        let mut driver = MqttPublisher::driver(options, max_packet_bytes, role);
        if let Some(counter) = sessions_lost {
            driver = driver.count_sessions_lost(counter);
        }
        MqttPublisher::run(driver, settings.on_session_lost)
    }

    /// A publisher for `faultline replay`: a clean session to `host:port` that reports the first
    /// connection failure (a wrong address should fail the command, not retry for ever).
    pub fn for_replay(host: &str, port: u16, max_packet_bytes: usize) -> MqttPublisher {
        let client_id = format!("faultline-replay-{}", std::process::id());
        let mut options = rumqttc::MqttOptions::new(client_id, host, port);
        options.set_keep_alive(std::time::Duration::from_secs(30));
        MqttPublisher::replaying(options, max_packet_bytes)
    }

    /// A publisher for `faultline replay` to the configured broker: as [`Self::for_replay`], with
    /// the configured login, TLS and keep-alive, as `<client_id>-replay-<pid>`.
    pub fn for_replay_as(
        settings: &MqttSettings,
        transport: rumqttc::Transport,
        max_packet_bytes: usize,
    ) -> MqttPublisher {
        let client_id = format!("{}-replay-{}", settings.client_id, std::process::id());
        let options = crate::bus::mqtt::mqtt_options(settings, client_id, transport);
        MqttPublisher::replaying(options, max_packet_bytes)
    }

    /// The replay publisher on `options`: fails on the first connection failure.
    fn replaying(options: rumqttc::MqttOptions, max_packet_bytes: usize) -> MqttPublisher {
        let (host, port) = options.broker_address();
        let role = Role {
            broker: format!("{host}:{port}"),
            client: "replay",
        };
        let driver = MqttPublisher::driver(options, max_packet_bytes, role).fail_fast();
        MqttPublisher::run(driver, OnSessionLost::Resume)
    }

    fn driver(mut options: rumqttc::MqttOptions, max_packet_bytes: usize, role: Role) -> Driver {
        options
            .set_max_packet_size(max_packet_bytes, max_packet_bytes)
            .set_inflight(1000)
            .set_request_channel_capacity(1000);
        Driver::new(options, 1000, role).0
    }

    /// Counts the broker's acknowledgements on the driver's task until the client disconnects.
    fn run(mut driver: Driver, on_session_lost: OnSessionLost) -> MqttPublisher {
        let client = driver.client();
        let link = driver.link();
        let (ack_tx, acked) = watch::channel(0u64);
        let sent = Arc::new(AtomicU64::new(0));
        let (failed, failure) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut count = 0u64;
            let mut connected_before = false;
            loop {
                match driver.next().await {
                    Step::PubAck => {
                        count += 1;
                        ack_tx.send_replace(count);
                    }
                    Step::Connected { resumed, unacked } => {
                        // A first connection loses no session: verdicts queued while the broker
                        // was still starting were never sent.
                        let was_connected = std::mem::replace(&mut connected_before, true);
                        // Only what the broker had: verdicts queued while it was away were never
                        // written, and go out on this connection (counting them stopped
                        // faultline when the broker had lost none).
                        let lost = unacked;
                        if resumed
                            || !was_connected
                            || on_session_lost != OnSessionLost::Exit
                            || lost == 0
                        {
                            continue;
                        }
                        // Fail-stop, for those who want a supervisor to decide: the rows behind
                        // these verdicts were not acknowledged, so they are read again after a
                        // restart (if the broker still has them).
                        let broker = &driver.role().broker;
                        error!(broker = %broker, unacknowledged = lost, "The MQTT broker lost the publisher's session; stopping, as [source.mqtt] on_session_lost = \"exit\" asks.");
                        let _ = failed.send(Some(format!(
                            "the MQTT broker at {broker} lost the publisher's session with {lost} verdicts unacknowledged \
                             ([source.mqtt] on_session_lost = \"exit\"; \"resume\" re-sends them and keeps serving)"
                        )));
                        return;
                    }
                    Step::Failed(e) => {
                        let _ = failed.send(Some(e));
                        return;
                    }
                    Step::Closed => return,
                    Step::Message(..) => {}
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

#[cfg(test)]
mod tests {
    use super::super::driver::tests::{accept_client, acknowledge_publish, played_client};
    use super::*;
    use std::time::Duration;

    /// A publisher with `on_session_lost = "exit"` for the broker played on the listener.
    async fn exiting_publisher() -> (MqttPublisher, tokio::net::TcpListener) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (role, options) = played_client(port, "publisher");
        let driver = MqttPublisher::driver(options, 1 << 20, role);
        (MqttPublisher::run(driver, OnSessionLost::Exit), listener)
    }

    /// Waits up to 10 s for `n` acknowledgements, and asserts that the publisher did not fail.
    async fn acknowledged_without_failure(publisher: &MqttPublisher, n: u64) {
        let mut acked = publisher.acked();
        let all = tokio::time::timeout(Duration::from_secs(10), acked.wait_for(|a| *a == n));
        let all = all.await.is_ok_and(|r| r.is_ok());
        assert!(all, "{:?}", *publisher.failure().borrow());
        assert_eq!(*publisher.failure().borrow(), None);
    }

    /// With `on_session_lost = "exit"`, verdicts queued before the first connection (the broker
    /// still starting) are sent on it, even though the broker has no session for the publisher:
    /// a first connection loses none. It used to stop faultline, saying they were lost.
    #[tokio::test]
    async fn verdicts_queued_before_the_first_connection_are_not_a_lost_session() {
        let (mut publisher, listener) = exiting_publisher().await;
        for verdict in ["a", "b"] {
            publisher
                .publish("faultline/faults", verdict.into())
                .await
                .unwrap();
        }
        // Only now does the broker answer: without a session (kept 0).
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 0).await;
            for want in [b'a', b'b'] {
                assert_eq!(acknowledge_publish(&mut s).await, want);
            }
            s
        });
        acknowledged_without_failure(&publisher, 2).await;
        let _socket = broker.await.unwrap();
    }

    /// With `on_session_lost = "exit"`, a broker that acknowledged every verdict it had and
    /// comes back without the session has lost none: the verdicts queued while it was away were
    /// never written, and go out on the new connection. Counting them as unacknowledged stopped
    /// faultline with status 1.
    #[tokio::test]
    async fn verdicts_queued_while_the_broker_was_away_are_not_lost_with_its_session() {
        let (mut publisher, listener) = exiting_publisher().await;
        let link = publisher.link();
        let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
        let broker = tokio::spawn(async move {
            // The first connection: 'a' acknowledged, then the broker goes.
            let mut s = accept_client(&listener, 0).await;
            assert_eq!(acknowledge_publish(&mut s).await, b'a');
            drop(s);
            gone.await.unwrap();
            // Back without the session (kept 0): 'b' arrives and is acknowledged.
            let mut s = accept_client(&listener, 0).await;
            assert_eq!(acknowledge_publish(&mut s).await, b'b');
            s
        });
        let mut acked = publisher.acked();
        publisher
            .publish("faultline/faults", "a".into())
            .await
            .unwrap();
        let one = tokio::time::timeout(Duration::from_secs(10), acked.wait_for(|a| *a == 1));
        assert!(one.await.is_ok_and(|r| r.is_ok()), "'a' unacknowledged");
        // Queued once the publisher knows the connection is gone: never written to it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while link.is_up() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the drop was not seen"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
            .publish("faultline/faults", "b".into())
            .await
            .unwrap();
        gone_tx.send(()).unwrap();
        acknowledged_without_failure(&publisher, 2).await;
        let _socket = broker.await.unwrap();
    }
}
