//! Why `faultline serve` could not start, or stopped: each reason names the setting to change.

use std::net::SocketAddr;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The embedded broker did not start.
    #[error(transparent)]
    Broker(#[from] crate::bus::mqtt::broker::BrokerError),
    /// The web address could not be bound.
    #[error("cannot listen for HTTP on {0}: {1}; set [web] listen (FAULTLINE_WEB__LISTEN) to a free address")]
    Web(SocketAddr, std::io::Error),
    /// A pipeline task failed.
    #[error("the pipeline stopped: {0}")]
    Pipeline(String),
    /// The MQTT TLS files are not usable.
    #[error("cannot set up TLS for MQTT: {0}")]
    Tls(#[from] crate::bus::mqtt::tls::TlsError),
    /// The shadow model cannot run.
    #[error(
        "cannot run the shadow model: {0}; fix or empty [shadow] model (FAULTLINE_SHADOW__MODEL)"
    )]
    Shadow(String),
    /// The Kafka client could not be created (a property librdkafka refuses, say).
    #[error(
        "cannot start the Kafka client: {0}; check [source.kafka] (FAULTLINE_SOURCE__KAFKA__*)"
    )]
    Kafka(String),
    /// Another daemon holds the store directory.
    #[error(transparent)]
    StoreInUse(#[from] crate::store::StoreInUse),
}
