//! The embedded MQTT broker (rumqttd), so `faultline serve` needs nothing else on a new machine.
//!
//! rumqttd's `start()` blocks forever, so it runs on its own thread for the life of the process;
//! it cannot bind port 0 and report the port, so the address is checked before it starts (a taken
//! port is an error that says what to change, unless the address is the default and an MQTT
//! broker answers there: [`speaks_mqtt`] lets `serve` use that one) and faultline waits until it
//! accepts connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Something already listens there.
    #[error(
        "cannot start the embedded MQTT broker: {0} is already in use (another MQTT broker?). Set [broker] listen \
         to a free address (e.g. FAULTLINE_BROKER__LISTEN=127.0.0.1:1884), or use that broker with \
         [source] kind = \"mqtt\""
    )]
    PortTaken(SocketAddr),
    /// Any other bind or start failure.
    #[error("cannot start the embedded MQTT broker on {0}: {1}")]
    Start(SocketAddr, String),
}

/// Starts the embedded broker on `listen`; when the address is taken and `use_existing` (the
/// address is the default, not chosen) and an MQTT broker answers there, uses that one instead,
/// saying so. True when it started its own (what it holds is lost when faultline stops).
pub fn start_or_use(
    listen: SocketAddr,
    max_payload_bytes: usize,
    use_existing: bool,
) -> Result<bool, BrokerError> {
    match start(listen, max_payload_bytes).map(|()| true) {
        Err(BrokerError::PortTaken(addr)) if use_existing && speaks_mqtt(addr) => {
            tracing::info!(
                broker = %addr,
                "An MQTT broker already listens on {addr}: faultline serves on it instead of starting its own \
                 (set [broker] listen, e.g. FAULTLINE_BROKER__LISTEN=127.0.0.1:1884, to start the embedded broker there)."
            );
            Ok(false)
        }
        other => other,
    }
}

/// Whether an MQTT broker that takes anonymous clients answers at `addr`: an MQTT 3.1.1 CONNECT
/// (clean session, a client id of its own) must get a CONNACK that accepts it within 3 s.
pub fn speaks_mqtt(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let target = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let timeout = Duration::from_secs(3);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&target, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let id = format!("faultline-probe-{}", std::process::id());
    // Variable header: protocol name "MQTT", level 4, flags: clean session, keep alive 10 s.
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    let mut connack = [0u8; 4];
    let accepted = stream.write_all(&packet).is_ok()
        && stream.read_exact(&mut connack).is_ok()
        && connack[0] == 0x20
        && connack[1] == 2
        && connack[3] == 0;
    if accepted {
        let _ = stream.write_all(&[0xE0, 0]); // DISCONNECT
    }
    accepted
}

/// The size of one segment of a topic's in-memory log in the embedded broker.
pub const EMBEDDED_SEGMENT_BYTES: usize = 32 * 1024 * 1024;
/// Segments a topic's log keeps, the one being written among them (rumqttd drops the oldest once
/// it holds this many and the newest is full): 64 to 96 MiB a topic.
pub const EMBEDDED_SEGMENTS: usize = 3;

/// Starts rumqttd on `listen` and returns once it accepts TCP connections.
pub fn start(listen: SocketAddr, max_payload_bytes: usize) -> Result<(), BrokerError> {
    match std::net::TcpListener::bind(listen) {
        Ok(probe) => drop(probe),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(BrokerError::PortTaken(listen))
        }
        Err(e) => return Err(BrokerError::Start(listen, e.to_string())),
    }
    // rumqttd 0.20's RouterConfig::default() is all zeros, which drops every client: set it all.
    // Each topic's log is kept in memory up to `max_segment_count` segments, read or not (the
    // count includes the one being written, whatever rumqttd's own comment says: see its
    // `apply_retention`): at 10 segments of 100 MiB the rows topic alone held about 1.1 GiB after
    // 100,000 rows (`serve` at 1.6 GB RSS). The segments hold a message of
    // `max_payload_bytes`; what a publisher gets further ahead of faultline than they hold is
    // dropped, as a Mosquitto's `max_queued_messages` drops it (README, "Delivery").
    let router = rumqttd::RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: 200,
        max_segment_size: EMBEDDED_SEGMENT_BYTES.max(max_payload_bytes),
        max_segment_count: EMBEDDED_SEGMENTS,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let server = rumqttd::ServerSettings {
        name: "faultline-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_payload_bytes,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "The embedded MQTT broker stopped.");
            }
        })
        .map_err(|e| BrokerError::Start(listen, e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let target = if listen.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], listen.port()))
    } else {
        listen
    };
    while std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            return Err(BrokerError::Start(
                listen,
                "it did not accept connections within 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::info!(
        listen = %listen,
        "The embedded MQTT broker is listening. It keeps what it holds in faultline's memory: rows it \
         took from publishers and had not delivered are lost when faultline stops; for delivery across \
         restarts use an external broker with persistence ([source] kind = \"mqtt\")."
    );
    Ok(())
}
