//! Kafka, both directions: the source (a consumer group; offsets stored only after the outputs
//! are on the broker) and the publisher (delivery reports counted in order), through librdkafka
//! (the `kafka` cargo feature). The settings are checked in every build, so a configuration that
//! names Kafka is refused with a clear reason by a build without it.

#[cfg(feature = "kafka")]
pub mod client;
#[cfg(feature = "kafka")]
pub mod publisher;
pub mod settings;
#[cfg(feature = "kafka")]
pub mod source;

pub use settings::{kafka_topic_problem, property_name, KafkaSection, KafkaSettings};
