//! The messages faultline publishes: verdicts and dead letters (also the API's result rows).
//!
//! - Fault / score message: `{"id", "probability", "fault", "threshold", "rule", "model_version",
//!   "base", "contributions": [{"sensor", "value", "median", "contribution"}],
//!   "unusual_sensors": [{"sensor", "value", "z"}], "scored_at"}`. `base` and `contributions` are the
//!   model's own explanation in log-odds (present on faults, or on every verdict when configured).
//! - Dead letter: `{"error", "reason", "payload", "topic", "received_at"}`.

use crate::model::{Deviation, Explanation, Model, Rule, Verdict};
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

/// One sensor's contribution in a verdict message.
#[derive(Debug, Serialize)]
pub struct ContributionMessage<'a> {
    /// Sensor name.
    pub sensor: &'a str,
    /// The row's value; `null` when missing (the model then used the training median).
    pub value: Option<f32>,
    /// The sensor's training median, for context.
    pub median: Option<f64>,
    /// How far this sensor moved the log-odds from `base` (exact TreeSHAP).
    pub contribution: f32,
}

impl<'a> ContributionMessage<'a> {
    /// An explanation's contributions, named by `model`.
    pub fn list(model: &'a Model, e: Option<&Explanation>) -> Vec<ContributionMessage<'a>> {
        let Some(e) = e else {
            return Vec::new();
        };
        e.contributions
            .iter()
            .map(|c| ContributionMessage {
                sensor: &model.features()[c.index],
                value: (!c.value.is_nan()).then_some(c.value),
                median: model.card().sensors[c.index].median,
                contribution: c.contribution,
            })
            .collect()
    }
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
    /// The rule that made the verdict: `threshold`, `alarm_rate` or `warmup`.
    pub rule: Rule,
    /// Version of the model that scored the row (absent where an answer states it once for all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<&'a str>,
    /// Expected log-odds over the training rows (with `contributions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<f32>,
    /// The sensors that moved this verdict most, in log-odds (the model's own TreeSHAP).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<ContributionMessage<'a>>,
    /// Sensors furthest from their training medians (unusual values, not what the model used).
    pub unusual_sensors: Vec<SensorMessage<'a>>,
    /// When the verdict was made (RFC 3339; absent in `POST /api/score` results).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scored_at: Option<&'a str>,
}

impl<'a> VerdictMessage<'a> {
    /// The message for `v`, scored by `model` at `scored_at`.
    pub fn new(v: &'a Verdict, model: &'a Model, scored_at: &'a str) -> VerdictMessage<'a> {
        VerdictMessage {
            model_version: Some(model.version()),
            scored_at: Some(scored_at),
            ..VerdictMessage::result(v, model)
        }
    }

    /// The verdict without its model version and time, as one result of `POST /api/score` (whose
    /// answer states the version once).
    pub fn result(v: &'a Verdict, model: &'a Model) -> VerdictMessage<'a> {
        VerdictMessage {
            id: &v.id,
            probability: v.probability,
            fault: v.fault,
            threshold: v.threshold,
            rule: v.rule,
            model_version: None,
            base: v.explanation.as_ref().map(|e| e.base),
            contributions: ContributionMessage::list(model, v.explanation.as_ref()),
            unusual_sensors: SensorMessage::list(model, &v.unusual_sensors),
            scored_at: None,
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
    /// The field the error is about, when it is one: a sensor's name, `id`, `values`, `Good/Bad`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<&'a str>,
    /// The raw message (or array element) as received.
    pub payload: &'a str,
    /// Topic it arrived on.
    pub topic: &'a str,
    /// When it arrived (RFC 3339).
    pub received_at: &'a str,
}

/// The most of a refused message a dead letter carries, in bytes: enough to see what is wrong,
/// and small enough that the dead letter stays far below what a broker takes once JSON has
/// escaped it (a control byte becomes six, a byte that is not UTF-8 three: a 16 MiB message of
/// them would make a dead letter too large to publish, and its retries would stop the stream).
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 64 * 1024;

/// Room left for the note of a payload already clipped where it was read.
const NOTE_ROOM: usize = 64;

/// `payload` as a dead letter carries it: cut at a character boundary after
/// [`DEAD_LETTER_PAYLOAD_BYTES`], saying how long it was.
pub fn dead_letter_payload(payload: &str) -> std::borrow::Cow<'_, str> {
    if payload.len() <= DEAD_LETTER_PAYLOAD_BYTES + NOTE_ROOM {
        return payload.into();
    }
    clipped(payload, payload.len()).into()
}

/// The start of the message `bytes` as text for a dead letter: at most
/// [`DEAD_LETTER_PAYLOAD_BYTES`] of it, and when it is longer, a note of its length in bytes
/// (bytes that are not UTF-8 shown as U+FFFD).
pub fn dead_letter_text(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
    let text = String::from_utf8_lossy(head);
    if bytes.len() <= DEAD_LETTER_PAYLOAD_BYTES && text.len() <= DEAD_LETTER_PAYLOAD_BYTES {
        return text.into_owned();
    }
    clipped(&text, bytes.len())
}

/// `text` cut at a character boundary after [`DEAD_LETTER_PAYLOAD_BYTES`], with a note that the
/// whole was `total` bytes.
fn clipped(text: &str, total: usize) -> String {
    let mut end = DEAD_LETTER_PAYLOAD_BYTES.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(truncated: {total} bytes in all)", &text[..end])
}

/// Message timestamps (`scored_at`, `received_at`).
pub use crate::clock::now_rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_carries_at_most_64_kib_of_its_payload_cut_between_characters() {
        let short = "x".repeat(DEAD_LETTER_PAYLOAD_BYTES);
        assert_eq!(dead_letter_payload(&short), short);
        // A three-byte character across the limit is left out whole.
        let long = format!(
            "{}€{}",
            "x".repeat(DEAD_LETTER_PAYLOAD_BYTES - 1),
            "y".repeat(500)
        );
        let clipped = dead_letter_payload(&long);
        let kept = DEAD_LETTER_PAYLOAD_BYTES - 1;
        assert_eq!(&clipped[..kept], &long[..kept]);
        assert_eq!(
            &clipped[kept..],
            format!("…(truncated: {} bytes in all)", long.len())
        );
        // From bytes: the note gives the message's length in bytes, not its text's (a byte
        // that is not UTF-8 becomes three), and the text stays within the limit.
        let bytes = vec![0xff; 1 << 20];
        let text = dead_letter_text(&bytes);
        assert!(
            text.ends_with("…(truncated: 1048576 bytes in all)"),
            "{}",
            &text[text.len() - 40..]
        );
        assert!(text.len() <= DEAD_LETTER_PAYLOAD_BYTES + NOTE_ROOM);
        assert_eq!(dead_letter_payload(&text), text, "clipped once");
        assert_eq!(dead_letter_text(b"{not json"), "{not json");
    }
}
