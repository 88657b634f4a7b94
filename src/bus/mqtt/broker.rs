//! The embedded MQTT broker (rumqttd), so `faultline serve` needs nothing else on a new machine.
//!
//! rumqttd's `start()` blocks forever, so it runs on its own thread for the life of the process;
//! it cannot bind port 0 and report the port, so the address is checked before it starts (a taken
//! port is an error that says what to change) and faultline waits until it accepts connections.

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
    let router = rumqttd::RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: 200,
        max_segment_size: 100 * 1024 * 1024,
        max_segment_count: 10,
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
    tracing::info!(listen = %listen, "The embedded MQTT broker is listening.");
    Ok(())
}
