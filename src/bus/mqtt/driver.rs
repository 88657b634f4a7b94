//! The one MQTT connection driver: every faultline MQTT client (the source, the publisher, the
//! labels reader, `replay`) polls its rumqttc event loop through a [`Driver`], which connects and
//! reconnects with backoff, keeps the connection's [`Link`] current for `/readyz`, logs a failure
//! once (not every retry), renews the subscription when the broker kept no session, and counts a
//! session the broker lost. Callers see only the [`Step`]s they act on.
//!
//! The event loop must be polled without pause (rumqttc sends and receives only while it is):
//! nothing here waits except the reconnect backoff, and requests go out with `try_*` calls.

use crate::bus::link::Link;
use crate::bus::Backoff;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// PUBACKs released by the pipeline (QoS 1 messages whose outputs are on the broker), for the
/// driver to write onto its own connection.
///
/// Sent through the client instead, they fall far behind while messages keep arriving: rumqttc's
/// event loop returns the up to ten messages one read buffered before it looks at its request
/// channel again, and then serves either the network or one request (bytebeamio/rumqtt#1025), so
/// about one PUBACK went out per ten messages read, and after a crash the broker redelivered
/// nearly every row read since the stream began. The driver writes every queued PUBACK before
/// each poll, in one flush.
///
/// A driver waiting in its poll on an idle connection writes nothing until something arrives.
/// When its poll has waited [`DirectAcks::STALE`], the acknowledger hands the oldest PUBACK to the
/// client's channel, which wakes the event loop; once rumqttc has written it, the driver writes
/// the rest. PUBACKs leave in the order their messages arrived (MQTT 3.1.1, 4.6.0-2; rumqttd, the
/// embedded broker, drops a connection that acknowledges out of order and redelivers what it had
/// sent on it): while the one handed over is not written, the driver writes none. At most one is
/// in the channel, so the driver's own path never waits behind a backlog there. The hand-over
/// happens under this queue's lock and only while the driver polls a live connection; before
/// it reconnects, the driver takes the lock and empties the channel of PUBACKs, so none is ever
/// written on a connection its message did not arrive on.
#[derive(Debug, Default)]
pub struct DirectAcks {
    inner: Mutex<Queue>,
}

#[derive(Debug, Default)]
struct Queue {
    acks: VecDeque<(rumqttc::Publish, u64)>,
    /// Since when the driver has been in its poll of a live connection (None: it is not; a
    /// `next()` cancelled mid-poll, which only tests do, leaves it set).
    polling_since: Option<Instant>,
    /// A PUBACK is in the client's request channel, not yet written by the event loop.
    in_client: bool,
    /// The driver is gone: nothing will write what is queued.
    closed: bool,
}

impl DirectAcks {
    /// How long the driver's poll may wait before the client's channel takes a PUBACK.
    pub const STALE: Duration = Duration::from_millis(5);

    /// Queues the acknowledgement of `publish` (QoS 1, payload already dropped), which arrived on
    /// `connection` (see [`Driver::connection`]).
    pub fn push(&self, publish: rumqttc::Publish, connection: u64) {
        let mut queue = self.lock();
        if !queue.closed {
            queue.acks.push_back((publish, connection));
        }
    }

    /// Whether PUBACKs wait for a driver that is still there.
    pub fn has_waiting(&self) -> bool {
        let queue = self.lock();
        !queue.closed && !queue.acks.is_empty()
    }

    /// If the driver has been in its poll for [`DirectAcks::STALE`] or longer at `now` and no
    /// PUBACK is in `client`'s channel, hands it the oldest queued one of the driver's current
    /// `connection` (dropping older connections' ones: see [`Driver::connection`]), to wake the
    /// event loop. Never waits: a full channel leaves it queued. (A driver outside its poll,
    /// waiting for room in the pipeline, writes them as soon as the room its own PUBACKs make
    /// lets it go on.)
    pub fn hand_over(&self, now: Instant, connection: &AtomicU64, client: &rumqttc::AsyncClient) {
        let mut queue = self.lock();
        // Read under the lock: the driver numbers a new connection before it next polls, and it
        // takes this lock to say it polls.
        let current = connection.load(Ordering::Relaxed);
        let stale = queue
            .polling_since
            .is_some_and(|since| now.saturating_duration_since(since) >= Self::STALE);
        if !stale || queue.in_client {
            return;
        }
        while let Some((publish, connection)) = queue.acks.front() {
            if *connection != current {
                queue.acks.pop_front();
                continue;
            }
            // Full, or the event loop is gone (then the driver closes this queue).
            if client.try_ack(publish).is_ok() {
                queue.acks.pop_front();
                queue.in_client = true;
            }
            return;
        }
    }

    /// Every queued PUBACK, oldest first, unless the one handed to the client's channel is still
    /// to be written (it is older: these wait for it).
    fn take_all(&self) -> VecDeque<(rumqttc::Publish, u64)> {
        let mut queue = self.lock();
        if queue.in_client {
            return VecDeque::new();
        }
        std::mem::take(&mut queue.acks)
    }

    /// The event loop wrote a PUBACK from the client's channel.
    fn written_by_client(&self) {
        self.lock().in_client = false;
    }

    fn polling(&self, polling: bool) {
        self.lock().polling_since = polling.then(Instant::now);
    }

    fn close(&self) {
        let mut queue = self.lock();
        queue.closed = true;
        queue.acks.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue half-changed.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a connection reports to its owner.
#[derive(Debug)]
pub enum Step {
    /// A message arrived on the subscription, on `connection` (see [`Driver::connection`]).
    Message(rumqttc::Publish, u64),
    /// The broker acknowledged one QoS 1 publish; brokers acknowledge them in the order they
    /// received them (MQTT 3.1.1, 4.6).
    PubAck,
    /// Connected. `resumed`: the broker kept this client's session; when it did not, everything
    /// rumqttc had queued or in flight for the old session is gone.
    Connected {
        /// The broker kept the session.
        resumed: bool,
        /// QoS 1 publishes written to the broker (on any connection before this one) and not
        /// acknowledged: what a broker that lost the session lost of this client's. (They go out
        /// again either way; publishes queued and never written are not counted. One buffered for
        /// a connection that died before flushing it counts as written.)
        unacked: u64,
    },
    /// The connection failed and this driver does not reconnect ([`Driver::fail_fast`]).
    Failed(String),
    /// The client disconnected ([`AsyncClient::disconnect`]): the loop is over.
    Closed,
}

/// Where and who, for logs and metrics.
#[derive(Debug, Clone)]
pub struct Role {
    /// `host:port` of the broker.
    pub broker: String,
    /// Which client: `source`, `publisher`, `labels`, `replay`.
    pub client: &'static str,
}

/// One MQTT connection's event loop.
pub struct Driver {
    eventloop: EventLoop,
    client: AsyncClient,
    link: Link,
    backoff: Backoff,
    role: Role,
    /// The filter and QoS to (re)subscribe to when the broker has no session for this client.
    subscription: Option<(String, QoS)>,
    /// A SUBSCRIBE went out on this connection and its SUBACK has not come: the link is not up
    /// until the broker confirms it (a row published before that would not reach faultline).
    subscribing: bool,
    /// The broker granted the subscription to this process, in the session it still keeps.
    confirmed: bool,
    /// 1 while connected, 0 otherwise (`faultline_source_connected`).
    connected_gauge: Option<prometheus::IntGauge>,
    /// Counts sessions the broker lost (`faultline_broker_session_lost_total{client}`).
    sessions_lost: Option<prometheus::IntCounter>,
    /// The number of the connection messages arrive on, bumped on every reconnect, so an
    /// acknowledgement for a message of an earlier connection is never sent on a later one. If the
    /// broker kept the session, it sends such a message again (MQTT 3.1.1, 4.4) and its new copy is
    /// acknowledged; a late PUBACK for the first copy would be a second one for that packet id,
    /// which the broker may have given to another message meanwhile. If the broker lost the
    /// session, the id names another message there. (rumqttc drops the PUBACKs in its own queue
    /// on a disconnect for the same reason.)
    connection: Arc<AtomicU64>,
    /// Whether this client has been connected before (a first connection loses no session).
    connected_before: bool,
    /// Report a failure instead of reconnecting (`replay`).
    fail_fast: bool,
    /// What rumqttc held for the broker when the connection dropped (publishes not yet
    /// acknowledged, requests not yet sent), in order, kept across the reconnect: rumqttc drops
    /// them when the broker comes back without the session, and they go out again either way.
    /// Once connected, they are handed to rumqttc as its in-flight window has room for them
    /// (see [`Driver::feed`]).
    held: std::collections::VecDeque<rumqttc::Request>,
    /// What the last (re)connect gave rumqttc to send again, in the order first sent, until it
    /// is all sent or the connection drops: see [`Driver::before_connecting`]. Holding these
    /// copies also keeps their payloads allocated, which is what tells one publish from another
    /// there.
    resending: std::collections::VecDeque<rumqttc::Request>,
    /// PUBACKs this driver writes itself ([`Driver::direct_acks`]).
    direct_acks: Option<Arc<DirectAcks>>,
    /// Messages rumqttc had read and not yet returned when their connection died, with that
    /// connection's number (their PUBACKs must not go out on the next one), until the next
    /// CONNACK: a broker that kept the session sends them again (MQTT 3.1.1, 4.4), so they are
    /// dropped; one that lost it has forgotten them, so they are returned.
    orphans: VecDeque<Step>,
    /// Orphans to return, once the broker said it lost the session.
    returned_orphans: VecDeque<Step>,
    /// When the current connection was accepted (its CONNACK), while it lasts.
    connected_at: Option<std::time::Instant>,
    /// Connections in a row that the broker closed within [`SHORT_LIVED`] of accepting them.
    short_lived: u32,
    /// What the broker has had of this client's QoS 1 publishes, for [`Step::Connected`].
    written: PublishCounts,
    /// When this client last wrote a PINGREQ (rumqttc or [`Driver::while_waiting`]), or last
    /// connected; on tokio's clock, which [`Driver::while_waiting`] sleeps on.
    pinged_at: tokio::time::Instant,
}

/// Counts of QoS 1 publishes written and acknowledged, across connections. rumqttc writes them in
/// the order they were handed to it, and after a drop sends again what was not acknowledged, from
/// the oldest: so the k-th publish written on a connection is the one after the `acked_at_connect`
/// acknowledged before it, plus k, and the publishes the broker has had at least once are a prefix
/// of that order, of length `high`.
#[derive(Debug, Default)]
struct PublishCounts {
    /// PUBACKs received, on every connection.
    acked: u64,
    /// `acked` when the current connection was accepted.
    acked_at_connect: u64,
    /// Publishes written on the current connection (sent again or new).
    on_connection: u64,
    /// How many publishes, from the first, have been written at least once.
    high: u64,
}

impl PublishCounts {
    fn publish(&mut self) {
        self.on_connection += 1;
        self.high = self.high.max(self.acked_at_connect + self.on_connection);
    }

    fn puback(&mut self) {
        self.acked += 1;
    }

    /// At a CONNACK: how many publishes the broker had and had not acknowledged, and a new
    /// connection begins.
    fn connected(&mut self) -> u64 {
        self.acked_at_connect = self.acked;
        self.on_connection = 0;
        self.high.saturating_sub(self.acked)
    }
}

/// A connection the broker closes sooner than this after accepting it counts as short-lived:
/// [`SHORT_LIVED_RUN`] of them in a row are what two clients with one client id look like (the
/// broker closes the older connection when the other connects, and each reconnects 100 ms later).
const SHORT_LIVED: Duration = Duration::from_secs(2);
/// See [`SHORT_LIVED`].
const SHORT_LIVED_RUN: u32 = 3;

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(acks) = &self.direct_acks {
            acks.close();
        }
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Driver {
    /// A connection with `options`, and its client (`capacity`: requests the client may queue).
    pub fn new(options: MqttOptions, capacity: usize, role: Role) -> (Driver, AsyncClient) {
        let (client, eventloop) = AsyncClient::new(options, capacity);
        let driver = Driver {
            eventloop,
            client: client.clone(),
            link: Link::default(),
            backoff: Backoff::default(),
            role,
            subscription: None,
            subscribing: false,
            confirmed: false,
            sessions_lost: None,
            connected_gauge: None,
            connection: Arc::new(AtomicU64::new(0)),
            connected_before: false,
            fail_fast: false,
            held: Default::default(),
            resending: Default::default(),
            written: PublishCounts::default(),
            direct_acks: None,
            orphans: VecDeque::new(),
            returned_orphans: VecDeque::new(),
            connected_at: None,
            short_lived: 0,
            pinged_at: tokio::time::Instant::now(),
        };
        (driver, client)
    }

    /// Subscribes to `filter` on every connection the broker kept no session for.
    pub fn subscribe(mut self, filter: String, qos: QoS) -> Driver {
        self.subscription = Some((filter, qos));
        self
    }

    /// Counts lost sessions on `counter`.
    pub fn count_sessions_lost(mut self, counter: prometheus::IntCounter) -> Driver {
        self.sessions_lost = Some(counter);
        self
    }

    /// Keeps `gauge` at 1 while connected and 0 otherwise.
    pub fn connected_gauge(mut self, gauge: prometheus::IntGauge) -> Driver {
        self.connected_gauge = Some(gauge);
        self
    }

    /// Writes the PUBACKs queued on `acks` onto this connection before each poll (see
    /// [`DirectAcks`]).
    pub fn direct_acks(mut self, acks: Arc<DirectAcks>) -> Driver {
        self.direct_acks = Some(acks);
        self
    }

    /// Reports the first connection failure as [`Step::Failed`] instead of reconnecting.
    pub fn fail_fast(mut self) -> Driver {
        self.fail_fast = true;
        self
    }

    /// A handle on the connection, for requests.
    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// The connection's state, for `/readyz`.
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// The current connection's number, shared: compare a message's connection with it before
    /// acknowledging the message.
    pub fn connection(&self) -> Arc<AtomicU64> {
        self.connection.clone()
    }

    /// Where and who.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// Polls until the next step worth acting on; handles failures (logged when they are news,
    /// then the backoff) and connections (link, subscription, lost sessions) itself.
    pub async fn next(&mut self) -> Step {
        loop {
            if let Some(step) = self.returned_orphans.pop_front() {
                if matches!(step, Step::PubAck) {
                    self.written.puback();
                }
                return step;
            }
            if self.eventloop.network.is_some() {
                self.feed();
            }
            if self.eventloop.network.is_none() {
                self.before_connecting();
                if !self.returned_orphans.is_empty() {
                    continue;
                }
            } else if let Err(e) = self.write_acks().await {
                // The connection is broken: rumqttc reconnects on the next poll. The PUBACKs of
                // the batch not written are lost with it (the broker redelivers their messages),
                // and those queued later belong to this connection and are dropped.
                self.eventloop.clean();
                if let Some(step) = self.failed(e).await {
                    return step;
                }
                continue;
            } else if let Err(e) = self.send_pending().await {
                // As rumqttc does on a failed write: what it had sent and not had acknowledged
                // goes back to its queue, for the next connection.
                self.eventloop.clean();
                if let Some(step) = self.failed(e).await {
                    return step;
                }
                continue;
            }
            // Only while connected: during a reconnect the acknowledger must not hand a PUBACK
            // to rumqttc, which would send it on the new connection (see `connection`).
            if let (Some(acks), Some(_)) = (&self.direct_acks, &self.eventloop.network) {
                acks.polling(true);
            }
            let event = self.eventloop.poll().await;
            if let Some(acks) = &self.direct_acks {
                acks.polling(false);
            }
            // Once rumqttc has sent again all it was given, its order after a drop is the
            // first-sent one (see `before_connecting`): the copies, and their payloads, go.
            if self.eventloop.pending.is_empty() && self.held.is_empty() {
                self.resending.clear();
            }
            match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    return Step::Message(p, self.connection.load(Ordering::Relaxed))
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    self.written.puback();
                    return Step::PubAck;
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) if pkid != 0 => {
                    self.written.publish();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::PingReq)) => {
                    self.pinged_at = tokio::time::Instant::now();
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::PubAck(_))) => {
                    if let Some(acks) = &self.direct_acks {
                        acks.written_by_client();
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) if self.subscribing => {
                    self.subscribing = false;
                    self.subscribed(&ack.return_codes);
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    let unacked = self.connected(ack.session_present);
                    return Step::Connected {
                        resumed: ack.session_present,
                        unacked,
                    };
                }
                Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => {
                    self.set_up(false);
                    return Step::Closed;
                }
                Ok(_) => {}
                Err(e) => {
                    if let Some(step) = self.failed(e).await {
                        return step;
                    }
                }
            }
        }
    }

    /// Awaits `wait` (room downstream for a message [`Driver::next`] returned: the pipeline's
    /// for rows, the store's for labels) and keeps the connection alive meanwhile.
    ///
    /// rumqttc pings only while it is polled, and a broker drops a client it has heard nothing
    /// from for 1.5 × the keep-alive: a pipeline full for longer (its output's broker not
    /// confirming, a slow disk) lost the source's connection, and with it the PUBACKs queued for
    /// it, so the broker delivered those rows again. While a wait lasts, the driver writes the
    /// queued PUBACKs and a PINGREQ itself a quarter of the keep-alive after the last PINGREQ
    /// (rumqttc's or its own, so that waits in a row cannot add up to a silence), and again
    /// every quarter. (PUBACKs queued behind one handed to the client's channel wait for it, as
    /// ever: see [`DirectAcks`].) A write that fails ends the connection as a failed poll does
    /// (logged, the link down); the next [`Driver::next`] reconnects, or returns
    /// [`Step::Failed`] for a [`Driver::fail_fast`] one.
    pub async fn while_waiting<F: std::future::Future>(&mut self, wait: F) -> F::Output {
        let mut wait = std::pin::pin!(wait);
        // Most waits are over at once: no timer for them.
        tokio::select! {
            biased;
            out = &mut wait => return out,
            () = std::future::ready(()) => {}
        }
        let every = self.eventloop.mqtt_options.keep_alive() / 4;
        if every.is_zero() {
            return wait.await;
        }
        loop {
            let due = self.pinged_at + every;
            tokio::select! {
                biased;
                out = &mut wait => return out,
                () = tokio::time::sleep_until(due) => self.keep_alive().await,
            }
        }
    }

    /// Writes the queued PUBACKs and a PINGREQ on the connection, if there is one (see
    /// [`Driver::while_waiting`]).
    async fn keep_alive(&mut self) {
        // Also when there is no connection or the write fails: the next try is a quarter of the
        // keep-alive away, not at once.
        self.pinged_at = tokio::time::Instant::now();
        if self.eventloop.network.is_none() {
            return;
        }
        let mut written = self.write_acks().await;
        if written.is_ok() {
            let timeout = Duration::from_secs(self.eventloop.network_options.connection_timeout());
            let network = self.eventloop.network.as_mut().expect("connected");
            written = within(timeout, async {
                network.write(Packet::PingReq).await?;
                network.flush().await
            })
            .await;
        }
        match written {
            // rumqttc's own PINGREQ may be unanswered yet: its PINGRESP can sit behind rows
            // unread in the socket, and at the end of a long wait rumqttc's keep-alive timer is
            // due at once. It would then take the missing answer for a dead broker and drop the
            // connection. This PINGREQ went out after it, so it waits for this one's answer
            // instead (a dead broker is found up to one keep-alive later).
            Ok(()) => self.eventloop.state.await_pingresp = false,
            Err(e) => {
                self.eventloop.clean();
                if let Some(step) = self.note_failure(&e) {
                    self.returned_orphans.push_back(step);
                }
            }
        }
    }

    /// Before a (re)connect: keeps what rumqttc holds for the broker (see `held`). A driver that
    /// writes PUBACKs ([`Driver::direct_acks`]; it publishes nothing) also empties rumqttc's
    /// request channel of PUBACKs under the acknowledger's lock (one handed over while the
    /// connection died would go out on the next one, and none can follow now), and takes the
    /// messages rumqttc had read but not returned, which belong to the connection that died, as
    /// orphans (see `orphans`); its other events are over (a PUBACK of that connection written).
    fn before_connecting(&mut self) {
        if let Some(acks) = self.direct_acks.clone() {
            let mut queue = acks.lock();
            self.eventloop.clean();
            queue.in_client = false;
            drop(queue);
            let connection = self.connection.load(Ordering::Relaxed);
            for event in std::mem::take(&mut self.eventloop.state.events) {
                if let Event::Incoming(Packet::Publish(p)) = event {
                    self.orphans.push_back(Step::Message(p, connection));
                }
            }
        }
        let mut pending = std::mem::take(&mut self.eventloop.pending);
        // A publish rumqttc set aside as a collision (a broker that acknowledged out of order)
        // stays set aside across its `clean`, which does not return it: after the reconnect
        // rumqttc would take nothing more, and `feed` would hand it nothing, until a PING found
        // the collision unresolved and dropped the connection, again and again. It was never
        // sent: it goes back with a new packet id, after every publish sent before it and ahead
        // of those still to be sent (which have no packet id yet).
        if let Some(mut publish) = self.eventloop.state.collision.take() {
            publish.pkid = 0;
            let after = pending
                .iter()
                .rposition(|r| matches!(r, rumqttc::Request::Publish(p) if p.pkid != 0));
            pending.insert(
                after.map_or(0, |i| i + 1),
                rumqttc::Request::Publish(publish),
            );
        }
        // A drop while rumqttc was still sending again what the last reconnect gave it leaves its
        // queue as [not yet sent again] ++ [sent again, not acknowledged] ++ [newer requests]:
        // the older publishes behind newer ones. The broker acknowledges in the order it
        // receives, and the publisher counts PUBACKs in the order it handed publishes out (see
        // `Step::PubAck`), so a count would then cover verdicts the broker never had, and the
        // rows behind them would be acknowledged. Put back in the order first sent, with what
        // was not handed to rumqttc yet (`held`: newer than all it was given, older than anything
        // it took from the client's channel, which it takes only once `held` is empty) between.
        let resending = std::mem::take(&mut self.resending);
        let not_given = std::mem::take(&mut self.held);
        if !resending.is_empty() || !not_given.is_empty() {
            let mut ordered = VecDeque::with_capacity(pending.len() + not_given.len());
            for first in &resending {
                if let Some(at) = pending.iter().position(|r| same_publish(r, first)) {
                    ordered.extend(pending.remove(at));
                }
            }
            ordered.extend(not_given);
            ordered.extend(pending);
            pending = ordered;
        }
        // PUBACKs rumqttc read before the connection died and had not returned yet: counted
        // before the next CONNACK, which is when the publisher asks what is unacknowledged.
        if self.direct_acks.is_none() {
            let events = std::mem::take(&mut self.eventloop.state.events);
            for event in events {
                match event {
                    Event::Incoming(Packet::PubAck(_)) => {
                        self.returned_orphans.push_back(Step::PubAck)
                    }
                    // Written on the connection that died (or about to be): counted with it, not
                    // with the next one.
                    Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) if pkid != 0 => {
                        self.written.publish()
                    }
                    other => self.eventloop.state.events.push_back(other),
                }
            }
        }
        self.held.extend(pending);
    }

    /// Hands rumqttc what is `held` (after a reconnect), in order: the QoS 1 publishes among it
    /// one at a time, each once the one before is sent and only while its in-flight window has
    /// room and no collision is set aside. rumqttc sends its own queue whatever its window and
    /// whatever collision, and a publish never written gets the next packet id, which may still
    /// be taken by one sent again and not yet acknowledged: rumqttc then sets it aside as a
    /// collision, and the next collision replaces it, so that verdict was never sent (and the
    /// publisher, which counts PUBACKs, waited for ever). With room in the window, the next id
    /// is free (brokers acknowledge in order, so the ids taken are the ones before it; a broker
    /// that acknowledges out of order can still cause a collision, which its next PUBACK
    /// resolves, and which `before_connecting` puts back if the connection drops first). rumqttc
    /// sends one request of its queue per poll anyway, so this costs no speed. While anything is
    /// held, rumqttc's queue is not empty, its window is full or a collision is set aside, and in
    /// each case it takes nothing newer from the client's channel. Call only while connected.
    fn feed(&mut self) {
        if self.held.is_empty() || self.eventloop.state.collision.is_some() {
            return;
        }
        let qos1 = |r: &rumqttc::Request| matches!(r, rumqttc::Request::Publish(p) if p.qos != QoS::AtMostOnce);
        let EventLoop {
            pending,
            state,
            mqtt_options,
            ..
        } = &mut self.eventloop;
        if pending.iter().any(qos1) {
            return;
        }
        let mut room = state.inflight() < mqtt_options.inflight();
        while let Some(request) = self.held.front() {
            if qos1(request) {
                if !room {
                    break;
                }
                room = false;
            }
            pending.extend(self.held.pop_front());
        }
    }

    /// Writes every PUBACK queued on [`Driver::direct_acks`] (of the current connection) and
    /// flushes once. Call only while connected.
    async fn write_acks(&mut self) -> Result<(), ConnectionError> {
        let (Some(acks), Some(network)) = (&self.direct_acks, self.eventloop.network.as_mut())
        else {
            return Ok(());
        };
        let batch = acks.take_all();
        if batch.is_empty() {
            return Ok(());
        }
        let current = self.connection.load(Ordering::Relaxed);
        let timeout = Duration::from_secs(self.eventloop.network_options.connection_timeout());
        let write = async {
            for (publish, connection) in batch {
                // A message of an earlier connection is acknowledged on this one only through
                // its copy that the broker sends again (see `connection`).
                if connection == current {
                    network
                        .write(Packet::PubAck(rumqttc::PubAck::new(publish.pkid)))
                        .await?;
                }
            }
            network.flush().await
        };
        within(timeout, write).await
    }

    /// Sends the requests at the head of rumqttc's queue that are not PUBLISHes (the SUBSCRIBE
    /// of a reconnect; see `connected`), as rumqttc would, one at a time. Call only while
    /// connected. rumqttc sends that queue on a branch of its poll that first sleeps
    /// (`pending_throttle`, which at 0 still waits for the timer's next tick), and a socket with
    /// bytes waiting to be read won every turn against it: while a kept session's backlog flowed
    /// in (up to the broker's in-flight window at a time, 1,000 in the tests), the SUBSCRIBE did
    /// not go out, the link stayed down and `/readyz` answered 503 for as long as the backlog
    /// lasted, 30 s and more after a `kill -9` mid-flood, while rows were scored.
    ///
    /// PUBLISHes stay for rumqttc, which reads the socket between them: sent here in one go, new
    /// ones behind a reconnect's resent ones would find every packet id still taken (no PUBACK
    /// read meanwhile) and rumqttc would drop all but the last as collisions. A SUBSCRIBE held
    /// behind PUBLISHes (the labels reader's dead letters) therefore waits for them, as before.
    async fn send_pending(&mut self) -> Result<(), ConnectionError> {
        let EventLoop {
            pending,
            state,
            network,
            network_options,
            ..
        } = &mut self.eventloop;
        let Some(network) = network.as_mut() else {
            return Ok(());
        };
        let due = |pending: &VecDeque<rumqttc::Request>| {
            pending
                .front()
                .is_some_and(|r| !matches!(r, rumqttc::Request::Publish(_)))
        };
        // Called before every poll: most of the time there is nothing to do.
        if !due(pending) {
            return Ok(());
        }
        let timeout = Duration::from_secs(network_options.connection_timeout());
        while due(pending) {
            let request = pending.pop_front().expect("a request at the front");
            let packet = state
                .handle_outgoing_packet(request)
                .map_err(ConnectionError::MqttState)?;
            if let Some(packet) = packet {
                within(timeout, network.write(packet)).await?;
            }
        }
        within(timeout, network.flush()).await
    }

    /// Takes in a CONNACK; returns how many publishes written on the connection before it were
    /// left unacknowledged ([`Step::Connected`]).
    fn connected(&mut self, session_present: bool) -> u64 {
        let unacked = self.written.connected();
        // Whether or not the broker kept the session, what it had not acknowledged goes out
        // again first, in the order it was first sent (so acknowledgements stay in order).
        let resent = self.held.len();
        self.resending.clone_from(&self.held);
        // The backoff is reset only once this connection has lasted (in `failed`): a broker that
        // accepts and drops each connection at once (a refused publish, a packet too large, two
        // clients with one id) would otherwise be retried every 100 ms for ever.
        let lost = self.connected_before && !session_present && self.persistent();
        let orphans = std::mem::take(&mut self.orphans);
        if !session_present {
            self.returned_orphans.extend(orphans);
        }
        if self.connected_before {
            self.connection.fetch_add(1, Ordering::Relaxed);
        }
        self.connected_before = true;
        self.connected_at = Some(std::time::Instant::now());
        self.pinged_at = tokio::time::Instant::now();
        info!(broker = %self.role.broker, client = self.role.client, session_present, "Connected to the MQTT broker.");
        if lost {
            if let Some(c) = &self.sessions_lost {
                c.inc();
            }
            self.link.note_session_lost(format!(
                "the broker at {} lost the {}'s session (restarted without persistence?); messages it had queued for faultline are gone",
                self.role.broker, self.role.client
            ));
            warn!(broker = %self.role.broker, client = self.role.client, resent, "The MQTT broker lost this client's session (did it restart without persistence?). faultline resumes: it re-sends what the broker had not acknowledged and subscribes again, but messages the broker had queued for it are gone (see the README on broker persistence).");
        }
        self.subscribing = false;
        if !session_present {
            self.confirmed = false;
        }
        // A session the broker kept holds the subscription only if the broker granted it to this
        // process: one kept from before it started may not hold it (a refused or unconfirmed
        // SUBSCRIBE, another topic configured then), nor may one whose SUBACK a dropped
        // connection lost. Otherwise faultline subscribes (again).
        if !self.confirmed {
            if let Some((filter, qos)) = &self.subscription {
                // After what is held, on this connection, once (a SUBSCRIBE held from a
                // connection that dropped before sending it is replaced); not through the
                // client's request queue, which could be full.
                let held = &mut self.held;
                held.retain(|r| !matches!(r, rumqttc::Request::Subscribe(_)));
                held.push_back(rumqttc::Request::Subscribe(rumqttc::Subscribe::new(
                    filter.clone(),
                    *qos,
                )));
                self.subscribing = true;
            }
        }
        if let Some(g) = &self.connected_gauge {
            g.set(1);
        }
        if !self.subscribing {
            self.link.set_up(true);
        }
        unacked
    }

    /// The broker's answer to the subscription: up if it granted it; if it refused it (an ACL,
    /// a filter it does not allow), not up, with the reason on `/readyz` and one log line.
    fn subscribed(&mut self, codes: &[rumqttc::SubscribeReasonCode]) {
        let filter = self.subscription.as_ref().map_or("", |(f, _)| f.as_str());
        if codes
            .iter()
            .all(|c| matches!(c, rumqttc::SubscribeReasonCode::Success(_)))
        {
            self.confirmed = true;
            self.link.set_up(true);
            return;
        }
        let reason = format!(
            "the broker at {} refused the subscription to '{filter}' (is this client allowed to \
             read it? faultline subscribes again when it reconnects)",
            self.role.broker
        );
        if self.link.refuse_subscription(reason) {
            warn!(broker = %self.role.broker, client = self.role.client, filter = %filter, "The MQTT broker refused the subscription: no rows will arrive. Let this client read the topic (the broker's ACL); faultline subscribes again when it reconnects.");
        }
    }

    fn set_up(&self, up: bool) {
        self.link.set_up(up);
        if let Some(g) = &self.connected_gauge {
            g.set(up as i64);
        }
    }

    /// Whether the client asked for a persistent session (only then can a broker lose one).
    fn persistent(&self) -> bool {
        !self.eventloop.mqtt_options.clean_session()
    }

    async fn failed(&mut self, e: ConnectionError) -> Option<Step> {
        let step = self.note_failure(&e);
        if step.is_none() {
            self.backoff.wait().await;
        }
        step
    }

    /// A failed connection, before the backoff: the gauge, the link, the log, and
    /// [`Step::Failed`] for a driver that does not reconnect.
    fn note_failure(&mut self, e: &ConnectionError) -> Option<Step> {
        if let Some(g) = &self.connected_gauge {
            g.set(0);
        }
        if let Some(at) = self.connected_at.take() {
            self.short_lived = if at.elapsed() < SHORT_LIVED {
                self.short_lived + 1
            } else {
                self.backoff.reset();
                0
            };
            if self.short_lived == SHORT_LIVED_RUN {
                warn!(broker = %self.role.broker, client = self.role.client, client_id = %self.eventloop.mqtt_options.client_id(), "The MQTT broker closed this connection {SHORT_LIVED_RUN} times in a row within {} s of accepting it. A broker keeps one connection a client id, and closes the older one when another client connects with the same id: is another faultline (or any client) connected as this client_id? Give each instance its own [source.mqtt] client_id. (Otherwise the broker's log says why it closes the connection.)", SHORT_LIVED.as_secs());
            }
        }
        if self.fail_fast {
            self.set_up(false);
            return Some(Step::Failed(format!("{}: {e}", self.role.broker)));
        }
        mqtt_failed(
            &self.link,
            e,
            &self.backoff,
            &self.role.broker,
            self.role.client,
        );
        None
    }
}

/// A write to the broker's connection, given `timeout` (rumqttc's connection timeout) to finish.
async fn within(
    timeout: Duration,
    write: impl std::future::Future<Output = Result<(), rumqttc::StateError>>,
) -> Result<(), ConnectionError> {
    match tokio::time::timeout(timeout, write).await {
        Ok(result) => result.map_err(ConnectionError::MqttState),
        Err(_) => Err(ConnectionError::FlushTimeout),
    }
}

/// Records a failed MQTT connection attempt of `client` on `link`, and logs it if it is news
/// (the first failure after being up, or a refusal not yet on record; not every retry).
fn mqtt_failed(
    link: &crate::bus::link::Link,
    error: &rumqttc::ConnectionError,
    backoff: &Backoff,
    broker: &str,
    client: &str,
) {
    if !mqtt_failure_is_news(link, error, backoff) {
        return;
    }
    match link.refused() {
        Some(reason) => {
            tracing::warn!(broker, client, %reason, "The MQTT broker refuses this client; retrying with backoff until it is let in.")
        }
        None => {
            tracing::warn!(broker, client, %error, "Lost the MQTT broker; reconnecting with backoff.")
        }
    }
}

fn mqtt_failure_is_news(
    link: &crate::bus::link::Link,
    error: &rumqttc::ConnectionError,
    backoff: &Backoff,
) -> bool {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError as E};
    let refused = match error {
        E::ConnectionRefused(Code::BadUserNamePassword) => {
            "the broker refused the user name or password (source.mqtt.username, password)".into()
        }
        // Mosquitto answers a wrong password this way too (MQTT 3.1.1 return code 5).
        E::ConnectionRefused(Code::NotAuthorized) => {
            "the broker refused this client: not authorized (a wrong or missing login? see source.mqtt.username, password)".into()
        }
        E::ConnectionRefused(code) => format!("the broker refused the connection: {code:?}"),
        E::Tls(e) => format!("TLS: {e}"),
        _ => {
            let was_up = link.set_up(false);
            return was_up || backoff.is_first();
        }
    };
    link.refuse(refused)
}

/// Whether two requests are one publish: the same payload allocation (a publish keeps its
/// payload's bytes while rumqttc moves it between its queue and its state, and assigns its packet
/// id only when it first sends it), on the same topic.
fn same_publish(a: &rumqttc::Request, b: &rumqttc::Request) -> bool {
    match (a, b) {
        (rumqttc::Request::Publish(a), rumqttc::Request::Publish(b)) => {
            !a.payload.is_empty()
                && a.payload.as_ptr() == b.payload.as_ptr()
                && a.payload.len() == b.payload.len()
                && a.topic == b.topic
        }
        _ => false,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bus::link::Refused;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one MQTT packet: its type (the fixed header's high nibble) and its body.
    pub(in crate::bus::mqtt) async fn packet(s: &mut (impl AsyncReadExt + Unpin)) -> (u8, Vec<u8>) {
        let kind = s.read_u8().await.unwrap();
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await.unwrap();
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.unwrap();
        (kind >> 4, body)
    }

    /// Plays a broker's side of a connection: accepts the next client on `listener`, reads its
    /// CONNECT and answers CONNACK (`kept`: 1 if the broker kept a session, else 0).
    pub(in crate::bus::mqtt) async fn accept_client(listener: &TcpListener, kept: u8) -> TcpStream {
        let (mut s, _) = listener.accept().await.unwrap();
        assert_eq!(packet(&mut s).await.0, 1, "CONNECT");
        s.write_all(&[0x20, 2, kept, 0]).await.unwrap();
        s
    }

    /// What a broker that lost the session lost: publishes written at least once and not
    /// acknowledged, across connections, and never those queued but not written.
    #[test]
    fn publishes_the_broker_had_are_counted_across_connections() {
        let mut c = PublishCounts::default();
        // Connection 1: a and b written, a acknowledged; it drops.
        c.publish();
        c.publish();
        c.puback();
        // Connection 2 resumes the session and drops before b is written again.
        assert_eq!(c.connected(), 1);
        // Connection 3: the session is lost; the broker had b.
        assert_eq!(c.connected(), 1);
        // b written again and acknowledged, c written and acknowledged; d queued, never
        // written; the connection drops and the next one has no session: nothing lost.
        c.publish();
        c.puback();
        c.publish();
        c.puback();
        assert_eq!(c.connected(), 0);
    }

    /// A client of the broker played on `port`: its role and options, with a session kept and
    /// no PINGREQ within a test (the played brokers answer only what each test expects).
    pub(in crate::bus::mqtt) fn played_client(
        port: u16,
        client: &'static str,
    ) -> (Role, MqttOptions) {
        let role = Role {
            broker: format!("127.0.0.1:{port}"),
            client,
        };
        let mut options = MqttOptions::new(client, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(600));
        (role, options)
    }

    /// Reads a client's QoS 1 PUBLISH with a one-byte payload, answers its PUBACK, and returns
    /// the payload.
    pub(in crate::bus::mqtt) async fn acknowledge_publish(s: &mut TcpStream) -> u8 {
        let (kind, body) = packet(s).await;
        assert_eq!(kind, 3, "PUBLISH");
        // The topic's length and name, the packet id, then the payload.
        let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
        s.write_all(&[0x40, 2, body[at], body[at + 1]])
            .await
            .unwrap();
        body[at + 2]
    }

    /// A QoS 1 PUBLISH on `faultline/rows` with packet id `pkid` and a one-byte payload, as a
    /// broker sends it.
    fn publish(pkid: u16, payload: u8) -> Vec<u8> {
        let topic = b"faultline/rows";
        let mut packet = vec![0x32, (2 + topic.len() + 2 + 1) as u8, 0];
        packet.push(topic.len() as u8);
        packet.extend_from_slice(topic);
        packet.extend_from_slice(&pkid.to_be_bytes());
        packet.push(payload);
        packet
    }

    /// A driver subscribing to `faultline/rows` on the broker at `port`, polled in a task.
    struct Subscriber {
        link: Link,
        gauge: prometheus::IntGauge,
        connection: Arc<std::sync::atomic::AtomicU64>,
        polling: tokio::task::JoinHandle<()>,
    }

    fn subscriber(port: u16, clean_session: bool) -> Subscriber {
        let role = Role {
            broker: format!("127.0.0.1:{port}"),
            client: "source",
        };
        let gauge = prometheus::IntGauge::new("connected", "connected").unwrap();
        let mut options = MqttOptions::new("subscriber", "127.0.0.1", port);
        options.set_clean_session(clean_session);
        let (driver, _client) = Driver::new(options, 10, role);
        let mut driver = driver
            .subscribe("faultline/rows".into(), QoS::AtLeastOnce)
            .connected_gauge(gauge.clone());
        let (link, connection) = (driver.link(), driver.connection());
        let polling = tokio::spawn(async move {
            loop {
                driver.next().await;
            }
        });
        Subscriber {
            link,
            gauge,
            connection,
            polling,
        }
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Mosquitto grants every subscription (it drops what an ACL forbids), so a broker that
    /// answers SUBACK with a failure code, as EMQX, HiveMQ or AWS IoT do for a topic the client
    /// may not read, is played here on a real socket: CONNACK, then the SUBACK once the test has
    /// looked at the link in between.
    ///
    /// The third case is a broker that kept a session from before this process started: it may
    /// not hold this subscription (refused, never confirmed, another topic then), so the first
    /// connection subscribes anyway.
    #[tokio::test]
    async fn the_link_is_up_only_once_the_broker_grants_the_subscription() {
        for (code, granted, kept) in [(0x01u8, true, 0u8), (0x80, false, 0), (0x01, true, 1)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (answer, answer_now) = tokio::sync::oneshot::channel::<()>();
            let broker = tokio::spawn(async move {
                let mut s = accept_client(&listener, kept).await;
                let (kind, body) = packet(&mut s).await;
                assert_eq!(kind, 8, "SUBSCRIBE");
                answer_now.await.unwrap();
                s.write_all(&[0x90, 3, body[0], body[1], code])
                    .await
                    .unwrap();
                // Hold the connection until the client goes.
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest).await;
            });
            let Subscriber {
                link,
                gauge,
                polling,
                ..
            } = subscriber(port, kept == 0);
            until("connected", || gauge.get() == 1).await;
            assert!(
                !link.is_up(),
                "connected, but the subscription is not confirmed yet"
            );
            answer.send(()).unwrap();
            if granted {
                until("up", || link.is_up()).await;
                assert_eq!(link.refusal(), None);
            } else {
                until("refused", || link.refusal().is_some()).await;
                let (what, why) = link.refusal().unwrap();
                assert_eq!(what, Refused::Subscription);
                assert!(
                    why.contains("refused the subscription to 'faultline/rows'"),
                    "{why}"
                );
                assert!(!link.is_up());
                assert_eq!(gauge.get(), 1, "still connected");
            }
            polling.abort();
            let _ = polling.await;
            broker.await.unwrap();
        }
    }

    /// A broker that kept the session sends what it queued for faultline as soon as it accepts
    /// the connection, and a restarted faultline subscribes again (the link is up at the
    /// SUBACK). The SUBSCRIBE must not wait behind that backlog: rumqttc sends its queued
    /// requests on a branch that first sleeps a timer tick, and a socket with bytes waiting won
    /// every turn against it. After a `kill -9` mid-flood on Mosquitto (1,000 messages in
    /// flight) `/readyz` stayed 503 for 30 s and more while the rows were scored. Played here: a
    /// broker that sends the backlog with its CONNACK and then floods; the driver is polled
    /// until it has returned ten messages and then no more. The SUBSCRIBE must have gone out
    /// by then (before the change, rumqttc sent it only on some later poll).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_subscription_goes_out_before_a_kept_sessions_backlog_is_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (subscribed, at_subscribe) = tokio::sync::oneshot::channel::<()>();
        let broker = tokio::spawn(async move {
            // QoS 0 PUBLISHes on faultline/rows, 64 to a write.
            let topic = b"faultline/rows";
            let mut one = vec![0x30, (2 + topic.len() + 1) as u8, 0, topic.len() as u8];
            one.extend_from_slice(topic);
            one.push(b'x');
            let burst = one.repeat(64);
            let (mut s, _) = listener.accept().await.unwrap();
            assert_eq!(packet(&mut s).await.0, 1, "CONNECT");
            let mut first = vec![0x20, 2, 1, 0];
            first.extend_from_slice(&burst);
            s.write_all(&first).await.unwrap();
            let (mut read, mut write) = s.into_split();
            tokio::spawn(async move {
                let (kind, _) = packet(&mut read).await;
                assert_eq!(kind, 8, "SUBSCRIBE");
                let _ = subscribed.send(());
                let mut rest = Vec::new();
                let _ = read.read_to_end(&mut rest).await;
            });
            while write.write_all(&burst).await.is_ok() {}
        });
        let (role, options) = played_client(port, "source");
        let (driver, _client) = Driver::new(options, 10, role);
        let mut driver = driver.subscribe("faultline/rows".into(), QoS::AtLeastOnce);
        let mut returned = 0;
        while returned < 10 {
            if let Step::Message(..) = driver.next().await {
                returned += 1;
            }
        }
        let came = tokio::time::timeout(Duration::from_secs(5), at_subscribe).await;
        assert!(
            matches!(came, Ok(Ok(()))),
            "no SUBSCRIBE reached the broker: the driver returned ten messages of the backlog first"
        );
        broker.abort();
        drop(driver);
    }

    /// PUBACKs go out in the order their messages came, whichever path each takes: one handed
    /// to the client's channel while the connection was idle (the acknowledger's stale path) is
    /// written before the next one the driver writes itself. rumqttd drops a connection that
    /// acknowledges out of order. Each round: message a; the idle driver's acknowledgement goes
    /// to the channel; message b comes, and rumqttc may return it before it serves the channel
    /// (it picks a ready branch at random); b is acknowledged directly. The broker played here
    /// records the order.
    #[tokio::test]
    async fn pubacks_leave_in_order_across_both_paths() {
        const ROUNDS: u16 = 12;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (send, mut to_send) = tokio::sync::mpsc::unbounded_channel::<u16>();
        let acked = Arc::new(Mutex::new(Vec::<u16>::new()));
        let seen = acked.clone();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 0).await;
            let (kind, body) = packet(&mut s).await;
            assert_eq!(kind, 8, "SUBSCRIBE");
            s.write_all(&[0x90, 3, body[0], body[1], 0x01])
                .await
                .unwrap();
            let (mut read, mut write) = s.into_split();
            let reading = tokio::spawn(async move {
                loop {
                    let mut head = [0u8; 4];
                    if read.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    assert_eq!(head[0] >> 4, 4, "only PUBACKs come: {head:?}");
                    seen.lock()
                        .unwrap()
                        .push(u16::from_be_bytes([head[2], head[3]]));
                }
            });
            while let Some(pkid) = to_send.recv().await {
                write.write_all(&publish(pkid, b'x')).await.unwrap();
            }
            // The reader ends when the driver goes (its panic, if any, fails the test).
            reading.await.unwrap();
        });
        let role = Role {
            broker: format!("127.0.0.1:{port}"),
            client: "source",
        };
        let mut options = MqttOptions::new("subscriber", "127.0.0.1", port);
        options.set_clean_session(false).set_manual_acks(true);
        let (driver, client) = Driver::new(options, 10, role);
        let direct = Arc::new(DirectAcks::default());
        let mut driver = driver
            .subscribe("faultline/rows".into(), QoS::AtLeastOnce)
            .direct_acks(direct.clone());
        let mut acker = crate::bus::MqttAcker::new(client, driver.connection(), direct);
        async fn message(driver: &mut Driver, pkid: u16) -> (rumqttc::Publish, u64) {
            loop {
                if let Step::Message(p, connection) = driver.next().await {
                    assert_eq!(p.pkid, pkid);
                    return (p, connection);
                }
            }
        }
        /// Polls until the connection has been idle for 20 ms.
        async fn idle(driver: &mut Driver) {
            while let Ok(step) =
                tokio::time::timeout(Duration::from_millis(20), driver.next()).await
            {
                assert!(!matches!(step, Step::Message(..)), "no message was sent");
            }
        }
        for round in 0..ROUNDS {
            let (a, b) = (2 * round + 1, 2 * round + 2);
            send.send(a).unwrap();
            let (p, connection) = message(&mut driver, a).await;
            idle(&mut driver).await;
            // The last poll, cancelled, left the driver polling: stale after STALE, whatever
            // the scheduler did meanwhile.
            tokio::time::sleep(2 * DirectAcks::STALE).await;
            acker.ack(p, connection);
            acker.flush();
            assert!(
                !acker.has_waiting(),
                "the idle driver's PUBACK went to the channel"
            );
            send.send(b).unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (p, connection) = message(&mut driver, b).await;
            acker.ack(p, connection);
            idle(&mut driver).await;
        }
        until("every PUBACK", || {
            acked.lock().unwrap().len() == 2 * ROUNDS as usize
        })
        .await;
        let order = acked.lock().unwrap().clone();
        assert_eq!(order, (1..=2 * ROUNDS).collect::<Vec<_>>());
        drop(send);
        drop(driver);
        broker.await.unwrap();
        let mut late = rumqttc::Publish::new("faultline/rows", QoS::AtLeastOnce, vec![]);
        late.pkid = 99;
        acker.ack(late, 0);
        assert!(
            !acker.has_waiting(),
            "nothing waits for a driver that is gone"
        );
    }

    /// A broker that accepts each connection and drops it at once is retried with a growing
    /// wait, not every 100 ms: the backoff starts afresh only after a connection that lasted.
    #[tokio::test]
    async fn connections_dropped_at_once_are_retried_with_a_growing_wait() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (role, options) = played_client(port, "source");
        let (driver, _client) = Driver::new(options, 10, role);
        let mut driver = driver.subscribe("faultline/rows".into(), QoS::AtLeastOnce);
        let driving = tokio::spawn(async move {
            loop {
                driver.next().await;
            }
        });
        let mut accepted = Vec::new();
        for _ in 0..5 {
            let s = tokio::time::timeout(Duration::from_secs(30), accept_client(&listener, 0))
                .await
                .expect("the driver reconnects");
            accepted.push(std::time::Instant::now());
            drop(s);
        }
        driving.abort();
        // The waits between connections are at least 100, 200, 400 and 800 ms (sleeps are lower
        // bounds, so a slow machine only lengthens them); dropped at once every time, the old
        // driver reconnected after 100 ms each time.
        let last = accepted[4] - accepted[3];
        assert!(
            last >= Duration::from_millis(800),
            "{:?}",
            accepted.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        );
    }

    /// Messages rumqttc had read but not yet returned when their connection died (orphans) are
    /// returned once the broker comes back without the session, which has forgotten them, and
    /// dropped when it kept the session, which sends them again. A returned orphan keeps its old
    /// connection's number, so its PUBACK never goes out on the new connection, where its packet
    /// id names nothing or another message. Played on a real socket: the orphans are put in
    /// rumqttc's queue of read events before the driver's first poll, as a drop leaves them (the
    /// played broker does not send them again; only that they are not returned is checked).
    #[tokio::test]
    async fn messages_read_before_a_drop_come_back_only_if_the_broker_lost_the_session() {
        for kept in [0u8, 1] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (pubacks, mut puback) = tokio::sync::mpsc::unbounded_channel::<u16>();
            let broker = tokio::spawn(async move {
                let mut s = accept_client(&listener, kept).await;
                let (kind, body) = packet(&mut s).await;
                assert_eq!(kind, 8, "SUBSCRIBE");
                s.write_all(&[0x90, 3, body[0], body[1], 0x01])
                    .await
                    .unwrap();
                // A message of this connection, packet id 1 as the first orphan's.
                s.write_all(&publish(1, b'n')).await.unwrap();
                loop {
                    let (kind, body) = packet(&mut s).await;
                    assert_eq!(kind, 4, "only PUBACKs come");
                    if pubacks
                        .send(u16::from_be_bytes([body[0], body[1]]))
                        .is_err()
                    {
                        return;
                    }
                }
            });
            // The played broker takes only PUBACKs.
            let (role, mut options) = played_client(port, "source");
            options.set_manual_acks(true);
            let (driver, client) = Driver::new(options, 10, role);
            let direct = Arc::new(DirectAcks::default());
            let mut driver = driver
                .subscribe("faultline/rows".into(), QoS::AtLeastOnce)
                .direct_acks(direct.clone());
            // As a connection that died leaves it: connected before (the old connection, number
            // 0, is only pretended: this is the driver's first socket), two messages read.
            driver.connected_before = true;
            for (pkid, text) in [(1, "a"), (2, "b")] {
                let mut p = rumqttc::Publish::new("faultline/rows", QoS::AtLeastOnce, text);
                p.pkid = pkid;
                driver
                    .eventloop
                    .state
                    .events
                    .push_back(Event::Incoming(Packet::Publish(p)));
            }
            let mut acker = crate::bus::MqttAcker::new(client, driver.connection(), direct);
            let mut messages = Vec::new();
            while messages.len() < if kept == 0 { 3 } else { 1 } {
                match tokio::time::timeout(Duration::from_secs(10), driver.next()).await {
                    Ok(Step::Message(p, connection)) => messages.push((p, connection)),
                    Ok(Step::Connected { resumed, .. }) => assert_eq!(resumed, kept == 1),
                    Ok(_) => {}
                    Err(_) => panic!("no message came: {messages:?}"),
                }
            }
            let seen: Vec<(Vec<u8>, u16, u64)> = messages
                .iter()
                .map(|(p, c)| (p.payload.to_vec(), p.pkid, *c))
                .collect();
            let fresh = (b"n".to_vec(), 1, 1);
            if kept == 0 {
                let orphans = [(b"a".to_vec(), 1, 0), (b"b".to_vec(), 2, 0)];
                assert_eq!(
                    seen[..2],
                    orphans,
                    "the orphans first, of the old connection"
                );
                assert_eq!(seen[2], fresh);
            } else {
                assert_eq!(
                    seen,
                    [fresh],
                    "not returned: such a broker sends them again"
                );
            }
            // Every message acknowledged, orphans first, then one more of the new connection
            // (packet id 9): only the new connection's PUBACKs go out.
            for (p, connection) in messages {
                acker.ack(p, connection);
            }
            let mut late = rumqttc::Publish::new("faultline/rows", QoS::AtLeastOnce, "z");
            late.pkid = 9;
            acker.ack(late, 1);
            let mut written = Vec::new();
            while written.last() != Some(&9) {
                tokio::select! {
                    pkid = puback.recv() => match pkid {
                        Some(pkid) => written.push(pkid),
                        None => break,
                    },
                    step = driver.next() => {
                        assert!(!matches!(step, Step::Message(..)), "nothing more was sent: {step:?}");
                    }
                }
            }
            if broker.is_finished() {
                // The played broker failed an assertion: say which.
                if let Err(e) = broker.await {
                    std::panic::resume_unwind(e.into_panic());
                }
                panic!("the played broker ended");
            }
            assert_eq!(
                written,
                [1, 9],
                "an orphan's PUBACK went out on the new connection"
            );
            assert!(
                driver.orphans.is_empty() && driver.returned_orphans.is_empty(),
                "no orphan left behind"
            );
            // The played broker waits for the next PUBACK: stopped there, not by a read
            // that fails.
            broker.abort();
            assert!(broker.await.unwrap_err().is_cancelled());
        }
    }

    /// A QoS 1 verdict with a one-byte payload, as the publisher hands it to rumqttc.
    fn verdict(c: u8) -> rumqttc::Request {
        let p = rumqttc::Publish::new("faultline/faults", QoS::AtLeastOnce, vec![c]);
        rumqttc::Request::Publish(p)
    }

    /// A publisher's driver for the broker played on `port`, with an in-flight window of
    /// `window`, connected before (so its next connection finds the session kept or lost).
    fn publisher_reconnecting(port: u16, window: u16) -> Driver {
        let (role, mut options) = played_client(port, "publisher");
        options.set_inflight(window);
        let (mut driver, _client) = Driver::new(options, 10, role);
        driver.connected_before = true;
        driver
    }

    /// The next `n` steps of `driver`: PUBACKs and a CONNACK that resumed the session, 10 s at
    /// most for each; panics on anything else or after the wait, saying `lost` and the steps.
    async fn steps(driver: &mut Driver, n: usize, lost: &str) -> Vec<&'static str> {
        let mut steps = vec![];
        while steps.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), driver.next()).await {
                Ok(Step::PubAck) => steps.push("puback"),
                Ok(Step::Connected { resumed: true, .. }) => steps.push("connected"),
                Ok(other) => panic!("{other:?}"),
                Err(_) => panic!("after {steps:?}, nothing: {lost}"),
            }
        }
        steps
    }

    /// A connection that drops while rumqttc is still sending again what the reconnect before
    /// it gave it: rumqttc's queue then holds the publishes not yet sent again ahead of those it
    /// had (and of their PUBACKs it had read but not returned). The publisher counts PUBACKs
    /// against the order it handed publishes out, so they must go out again in the order first
    /// sent, and PUBACKs read before the drop must count before the next CONNACK.
    #[tokio::test]
    async fn publishes_go_out_again_in_the_order_first_sent_after_a_drop_mid_resend() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 1).await;
            let mut order = vec![];
            while order.len() < 5 {
                order.push(acknowledge_publish(&mut s).await);
            }
            (order, s)
        });
        // Six verdicts unacknowledged when a connection dropped. The next connection (played
        // without a socket, through rumqttc's own state) sends four of them again, reads the
        // broker's PUBACK of the first, and drops too.
        let mut driver = publisher_reconnecting(port, 100);
        driver.held = (b'1'..=b'6').map(verdict).collect();
        driver.connected(true);
        for _ in 0..4 {
            driver.feed();
            let request = driver.eventloop.pending.pop_front().unwrap();
            driver
                .eventloop
                .state
                .handle_outgoing_packet(request)
                .unwrap();
        }
        // The fifth handed over, not sent yet: rumqttc's queue is then [5] ++ [2, 3, 4] after
        // its `clean`, and only the reorder puts 5 back behind 4.
        driver.feed();
        let puback = rumqttc::Incoming::PubAck(rumqttc::PubAck::new(1));
        driver
            .eventloop
            .state
            .handle_incoming_packet(puback)
            .unwrap();
        driver.eventloop.clean();
        assert_eq!(
            steps(&mut driver, 7, "a verdict was not sent again").await,
            [
                "puback",
                "connected",
                "puback",
                "puback",
                "puback",
                "puback",
                "puback"
            ]
        );
        assert!(
            driver.resending.is_empty(),
            "the copies are let go once all is sent again"
        );
        let (order, _socket) = broker.await.unwrap();
        assert_eq!(
            order,
            b"23456",
            "sent again out of order: {:?}",
            String::from_utf8_lossy(&order)
        );
    }

    /// A reconnect that finds more verdicts to send than the in-flight window holds: those the
    /// broker had not acknowledged go out again with their packet ids, and the ones never
    /// written get new ids. rumqttc sends its queue whatever its window, so a new one got the id
    /// of one sent again and not yet acknowledged: it was set aside as a collision, and the next
    /// collision replaced it. That verdict was never sent, the PUBACK count never caught up with
    /// the publishes, and the publisher stalled until a restart. Played with a window of 3: three
    /// sent again, two new. The broker takes its time to acknowledge the three (long enough for
    /// rumqttc to have sent the two new ones, were it going to), then expects the two in order.
    #[tokio::test]
    async fn verdicts_never_written_wait_for_room_in_the_window_after_a_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 1).await;
            let mut first = vec![];
            for _ in 0..3 {
                let (kind, body) = packet(&mut s).await;
                assert_eq!(kind >> 1, 1, "PUBLISH sent again (DUP set)");
                let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
                first.push((body[at], body[at + 1], body[at + 2]));
            }
            // What a slow broker does; a driver that would send the two new verdicts regardless
            // of its window has done so by now (one timer tick each).
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut order = vec![];
            for (high, low, payload) in first {
                s.write_all(&[0x40, 2, high, low]).await.unwrap();
                order.push(payload);
            }
            while order.len() < 5 {
                order.push(acknowledge_publish(&mut s).await);
            }
            (order, s)
        });
        // The connection before: three verdicts written (packet ids 1 to 3, the whole window)
        // and not acknowledged when it dropped; two more never written.
        let mut driver = publisher_reconnecting(port, 3);
        for c in b'1'..=b'3' {
            let state = &mut driver.eventloop.state;
            state.handle_outgoing_packet(verdict(c)).unwrap();
        }
        driver.held = driver.eventloop.state.clean().into();
        driver.held.extend([verdict(b'4'), verdict(b'5')]);
        steps(&mut driver, 6, "a verdict was dropped").await;
        let (order, _socket) = broker.await.unwrap();
        assert_eq!(order, b"12345", "{:?}", String::from_utf8_lossy(&order));
    }

    /// A broker that acknowledged out of order made rumqttc set a publish aside as a collision
    /// (its packet id still taken), and the connection dropped before the acknowledgement that
    /// would release it. rumqttc's `clean` keeps the collision set and does not return the
    /// publish, and with a collision set rumqttc takes no request and `feed` hands it none: the
    /// publisher stalled, reconnecting at every second PING. Played with a window of 3: a, b, c
    /// written, b acknowledged, d set aside on a's id; the next connection must carry c, a and d.
    #[tokio::test]
    async fn a_publish_set_aside_as_a_collision_goes_out_after_a_drop() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 1).await;
            let mut got = vec![];
            while got.len() < 3 {
                got.push(acknowledge_publish(&mut s).await);
            }
            (got, s)
        });
        let mut driver = publisher_reconnecting(port, 3);
        let state = &mut driver.eventloop.state;
        for c in *b"abc" {
            state.handle_outgoing_packet(verdict(c)).unwrap();
        }
        let puback = rumqttc::Incoming::PubAck(rumqttc::PubAck::new(2));
        state.handle_incoming_packet(puback).unwrap();
        assert!(state
            .handle_outgoing_packet(verdict(b'd'))
            .unwrap()
            .is_none());
        assert!(state.collision.is_some(), "d set aside");
        driver.eventloop.clean();
        // b's PUBACK (read before the drop, counted before the CONNACK), then the three.
        assert_eq!(
            steps(&mut driver, 5, "the publish set aside never went out").await,
            ["puback", "connected", "puback", "puback", "puback"]
        );
        let (got, _socket) = broker.await.unwrap();
        // c before a is rumqttc's own order of what it had in flight (from the last id
        // acknowledged on); d, never sent, comes after both.
        assert_eq!(got, b"cad", "{:?}", String::from_utf8_lossy(&got));
    }

    /// A wait for room longer than the keep-alive. The driver pings the broker itself meanwhile;
    /// and rumqttc's own PINGREQ, sent just before the wait with its answer not read yet (it may
    /// sit behind rows in the socket), must not make rumqttc take the broker for dead when its
    /// keep-alive timer, long due, fires at the first poll after the wait. Played: a broker
    /// that answers no PINGREQ (keep-alive 1 s, a wait of 2.5 s).
    #[tokio::test]
    async fn a_wait_past_the_keep_alive_pings_and_keeps_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (pinged, mut pings) = tokio::sync::mpsc::unbounded_channel();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 0).await;
            loop {
                let mut kind = [0u8; 2];
                if s.read_exact(&mut kind).await.is_err() {
                    return;
                }
                assert_eq!(kind, [0xc0, 0], "PINGREQ, nothing else");
                let _ = pinged.send(());
            }
        });
        let (role, mut options) = played_client(port, "source");
        options.set_keep_alive(Duration::from_secs(1));
        let (mut driver, _client) = Driver::new(options, 10, role);
        let link = driver.link();
        match tokio::time::timeout(Duration::from_secs(10), driver.next()).await {
            Ok(Step::Connected { .. }) => {}
            other => panic!("{other:?}"),
        }
        driver.eventloop.state.await_pingresp = true;
        driver
            .while_waiting(tokio::time::sleep(Duration::from_millis(2500)))
            .await;
        let mut during = 0;
        while pings.try_recv().is_ok() {
            during += 1;
        }
        // One every 250 ms from the CONNACK: about ten. At least 3 tells them from one per
        // keep-alive (2 at most) and leaves room for a loaded machine's late timers.
        assert!(
            during >= 3,
            "{during} PINGREQs in 2.5 s at a keep-alive of 1 s"
        );
        // Nothing to return: polled until the timeout, with the connection up throughout.
        let polled = tokio::time::timeout(Duration::from_millis(500), driver.next()).await;
        assert!(polled.is_err(), "{polled:?}");
        assert!(
            link.is_up(),
            "rumqttc dropped the connection after the wait"
        );
        broker.abort();
    }

    /// The connection drops after the SUBSCRIBE went out and before its SUBACK; the broker then
    /// keeps the session. Whether it holds the subscription, faultline cannot know: it subscribes
    /// again, and is up only once that is granted.
    #[tokio::test]
    async fn a_subscription_whose_suback_was_lost_is_asked_for_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (answer, answer_now) = tokio::sync::oneshot::channel::<()>();
        let broker = tokio::spawn(async move {
            let mut s = accept_client(&listener, 0).await;
            assert_eq!(packet(&mut s).await.0, 8, "SUBSCRIBE");
            drop(s);
            let mut s = accept_client(&listener, 1).await;
            let (kind, body) = packet(&mut s).await;
            assert_eq!(kind, 8, "SUBSCRIBE again, on the kept session");
            answer_now.await.unwrap();
            s.write_all(&[0x90, 3, body[0], body[1], 0x01])
                .await
                .unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        let Subscriber {
            link,
            gauge,
            connection,
            polling,
        } = subscriber(port, false);
        until("reconnected", || {
            connection.load(Ordering::Relaxed) >= 1 && gauge.get() == 1
        })
        .await;
        assert!(
            !link.is_up(),
            "up on a kept session whose subscription was never confirmed"
        );
        answer.send(()).unwrap();
        until("up", || link.is_up()).await;
        polling.abort();
        let _ = polling.await;
        broker.await.unwrap();
    }
}
