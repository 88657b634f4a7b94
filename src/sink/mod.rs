//! Verdicts to the bus: the messages faultline publishes, and the MQTT publisher.
//!
//! - Fault / score message: `{"id", "probability", "fault", "threshold", "model_version",
//!   "top_sensors": [{"sensor", "value", "z"}], "scored_at"}`.
//! - Dead letter: `{"error", "reason", "payload", "topic", "received_at"}`.

pub mod mqtt;

use crate::model::{Deviation, Model, Verdict};
use serde::Serialize;

/// One sensor in a verdict message.
#[derive(Debug, Serialize)]
pub struct SensorMessage<'a> {
    /// Sensor name.
    pub sensor: &'a str,
    /// The row's value.
    pub value: f32,
    /// Robust z-score against the training distribution.
    pub z: f32,
}

impl<'a> SensorMessage<'a> {
    /// A verdict's top sensors, named by `model`.
    pub fn list(model: &'a Model, top: &[Deviation]) -> Vec<SensorMessage<'a>> {
        top.iter()
            .map(|d| SensorMessage {
                sensor: &model.features()[d.index],
                value: d.value,
                z: d.z,
            })
            .collect()
    }
}

/// A verdict as published on the faults and scores topics.
#[derive(Debug, Serialize)]
pub struct VerdictMessage<'a> {
    /// Row id as received.
    pub id: &'a str,
    /// P(fault).
    pub probability: f32,
    /// `probability >= threshold`.
    pub fault: bool,
    /// The threshold applied.
    pub threshold: f32,
    /// Version of the model that scored the row.
    pub model_version: &'a str,
    /// Sensors furthest from their training medians.
    pub top_sensors: Vec<SensorMessage<'a>>,
    /// When the verdict was made (RFC 3339).
    pub scored_at: &'a str,
}

impl<'a> VerdictMessage<'a> {
    /// The message for `v`, scored by `model` at `scored_at`.
    pub fn new(v: &'a Verdict, model: &'a Model, scored_at: &'a str) -> VerdictMessage<'a> {
        VerdictMessage {
            id: &v.id,
            probability: v.probability,
            fault: v.fault,
            threshold: model.threshold(),
            model_version: model.version(),
            top_sensors: SensorMessage::list(model, &v.top_sensors),
            scored_at,
        }
    }
}

/// A row (or message) that could not be read, as published on the dead-letter topic.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// What is wrong, naming the field.
    pub error: &'a str,
    /// Low-cardinality reason (also the metrics label).
    pub reason: &'a str,
    /// The raw message (or array element) as received.
    pub payload: &'a str,
    /// Topic it arrived on.
    pub topic: &'a str,
    /// When it arrived (RFC 3339).
    pub received_at: &'a str,
}

/// Now, as RFC 3339 with milliseconds in UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
