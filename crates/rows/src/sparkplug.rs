//! Sparkplug B rows: the protobuf payloads of industrial MQTT (Ignition, HiveMQ, Cirrus Link,
//! Eclipse Tahu) on `spBv1.0/<group>/<message type>/<edge node>[/<device>]`.
//!
//! One NDATA or DDATA message is one wafer. Its metrics named like the model's features are the
//! sensor readings; a metric may carry only its alias, which the last NBIRTH (edge node) or DBIRTH
//! (device) on that topic bound to a name. The metric named by the configured id metric holds the
//! wafer id. Metrics the model does not read are counted as unknown keys; sensors the message does
//! not carry are missing (Sparkplug reports by exception: send every sensor of a wafer together).
//! Births teach aliases and are not rows; deaths, commands and STATE are not rows either.
//!
//! The messages are declared below with prost's derive, field for field from Eclipse Tahu's
//! `sparkplug_b.proto` (fields faultline does not read — metadata, properties, datasets,
//! templates, extensions — are skipped as unknown fields, as protobuf allows).

use crate::json::{Decoded, Reject, RejectReason};
use crate::{Schema, MAX_ID_BYTES};
use std::collections::HashMap;

/// `org.eclipse.tahu.protobuf.Payload`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Payload {
    /// Milliseconds since the epoch.
    #[prost(uint64, optional, tag = "1")]
    pub timestamp: Option<u64>,
    /// The readings.
    #[prost(message, repeated, tag = "2")]
    pub metrics: Vec<Metric>,
    /// Sequence number (0–255).
    #[prost(uint64, optional, tag = "3")]
    pub seq: Option<u64>,
    /// Optional payload id.
    #[prost(string, optional, tag = "4")]
    pub uuid: Option<String>,
    /// Optional opaque body.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub body: Option<Vec<u8>>,
}

/// `Payload.Metric`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    /// Name (always in births; data messages may send the alias only).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Alias, bound to the name by a birth.
    #[prost(uint64, optional, tag = "2")]
    pub alias: Option<u64>,
    /// Milliseconds since the epoch.
    #[prost(uint64, optional, tag = "3")]
    pub timestamp: Option<u64>,
    /// Sparkplug data type ([`DataType`]).
    #[prost(uint32, optional, tag = "4")]
    pub datatype: Option<u32>,
    /// Historical data, not a live reading.
    #[prost(bool, optional, tag = "5")]
    pub is_historical: Option<bool>,
    /// Not to be stored.
    #[prost(bool, optional, tag = "6")]
    pub is_transient: Option<bool>,
    /// The value is null (missing).
    #[prost(bool, optional, tag = "7")]
    pub is_null: Option<bool>,
    /// The value.
    #[prost(oneof = "Value", tags = "10, 11, 12, 13, 14, 15, 16")]
    pub value: Option<Value>,
}

/// `Payload.Metric.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// Int8, Int16, Int32 (two's complement in the type's width), UInt8, UInt16, UInt32.
    #[prost(uint32, tag = "10")]
    Int(u32),
    /// Int64 (two's complement), UInt64, DateTime.
    #[prost(uint64, tag = "11")]
    Long(u64),
    /// Float.
    #[prost(float, tag = "12")]
    Float(f32),
    /// Double.
    #[prost(double, tag = "13")]
    Double(f64),
    /// Boolean.
    #[prost(bool, tag = "14")]
    Boolean(bool),
    /// String, Text, UUID.
    #[prost(string, tag = "15")]
    String(String),
    /// Bytes, File, arrays.
    #[prost(bytes = "vec", tag = "16")]
    Bytes(Vec<u8>),
}

/// Sparkplug B data types faultline reads as numbers.
mod datatype {
    pub const INT8: u32 = 1;
    pub const INT16: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const BOOLEAN: u32 = 11;
}

/// The metric of an NCMD that asks an edge node to send its births again.
pub const REBIRTH_METRIC: &str = "Node Control/Rebirth";

/// An NCMD payload asking an edge node to send its NBIRTH and DBIRTHs again (`Node
/// Control/Rebirth` = true), as a Sparkplug B host application asks when data arrives from a node
/// whose birth it has not seen; `now_ms` is the time, in milliseconds since the epoch.
pub fn rebirth_request(now_ms: u64) -> Vec<u8> {
    let payload = Payload {
        timestamp: Some(now_ms),
        metrics: vec![Metric {
            name: Some(REBIRTH_METRIC.into()),
            alias: None,
            timestamp: Some(now_ms),
            datatype: Some(datatype::BOOLEAN),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: Some(Value::Boolean(true)),
        }],
        seq: None,
        uuid: None,
        body: None,
    };
    prost::Message::encode_to_vec(&payload)
}

/// The message types of the Sparkplug B topic namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Edge node birth: binds the node's aliases (and voids its devices' until they are born
    /// again after it).
    NBirth,
    /// Device birth: binds the device's aliases.
    DBirth,
    /// Edge node data: a row.
    NData,
    /// Device data: a row.
    DData,
    /// Edge node death: voids the node's and its devices' aliases when its `bdSeq` is its last
    /// birth's (as a connection's will it may come after the node's next birth).
    NDeath,
    /// Device death: the device's aliases are void until it is born again.
    DDeath,
    /// Commands, STATE: not rows.
    Other,
}

/// A topic in the Sparkplug B namespace: its message type and whose aliases apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The message type.
    pub kind: Kind,
    /// `group/edge node[/device]`: the births that bind this topic's aliases have the same.
    pub source: String,
}

impl Topic {
    /// `group/edge node`: the edge node behind this topic (a device's, or its own).
    pub fn node(&self) -> &str {
        let end = self
            .source
            .match_indices('/')
            .nth(1)
            .map_or(self.source.len(), |(i, _)| i);
        &self.source[..end]
    }

    /// The topic on which the edge node behind this topic takes commands (NCMD).
    pub fn command_topic(&self) -> String {
        let (group, node) = self.node().split_once('/').unwrap_or_default();
        format!("spBv1.0/{group}/NCMD/{node}")
    }
}

/// Whether the MQTT topic filter `filter` can match births (NBIRTH or DBIRTH): without them,
/// data that sends aliases alone cannot be read.
pub fn filter_takes_births(filter: &str) -> bool {
    // A birth's topic: spBv1.0 / group / NBIRTH|DBIRTH / node [/ device].
    let levels: Vec<&str> = filter.split('/').collect();
    let matches = |i: usize, word: &str| levels.get(i).is_some_and(|l| *l == "+" || *l == word);
    for (i, word) in ["spBv1.0", "", ""].iter().enumerate() {
        match levels.get(i) {
            Some(&"#") => return true,
            None => return false,
            Some(_) if i == 0 && !matches(0, word) => return false,
            Some(_) => {}
        }
    }
    let kind_takes_births = matches!(levels[2], "+" | "NBIRTH" | "DBIRTH");
    // And a node level: a birth has four or five.
    kind_takes_births && levels.len() >= 4 && (levels.len() <= 5 || levels[4] == "#")
}

/// Parses `spBv1.0/<group>/<type>/<edge node>[/<device>]`; `None` for any other topic.
pub fn topic(topic: &str) -> Option<Topic> {
    let mut parts = topic.split('/');
    if parts.next()? != "spBv1.0" {
        return None;
    }
    let group = parts.next()?;
    let kind = parts.next()?;
    let node = parts.next()?;
    let device = parts.next();
    if parts.next().is_some() || group.is_empty() || node.is_empty() {
        return None;
    }
    let kind = match kind {
        "NBIRTH" => Kind::NBirth,
        "DBIRTH" => Kind::DBirth,
        "NDATA" => Kind::NData,
        "DDATA" => Kind::DData,
        "NDEATH" => Kind::NDeath,
        // A device's only: one without a device level would be taken for its edge node's.
        "DDEATH" if device.is_some() => Kind::DDeath,
        _ => Kind::Other,
    };
    let source = match device {
        Some(d) => format!("{group}/{node}/{d}"),
        None => format!("{group}/{node}"),
    };
    Some(Topic { kind, source })
}

/// Aliases bound by a birth: alias → metric name.
pub type Aliases = HashMap<u64, String>;

/// The metric of an NBIRTH and its NDEATH that pairs them: the node's birth-death sequence number.
pub const BD_SEQ_METRIC: &str = "bdSeq";

/// What a birth tells: the aliases it binds and, in an edge node's, its `bdSeq`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Birth {
    /// Alias → metric name.
    pub aliases: Aliases,
    /// The `bdSeq` metric's value, when the birth carries one as an integer. An edge node sets
    /// the same number in the NDEATH it leaves as its connection's will, so a death can be told
    /// to be of this birth's session or of an earlier one.
    pub bd_seq: Option<u64>,
}

/// The aliases a birth payload binds, and its `bdSeq`; an error sentence when it is not a
/// Sparkplug B payload.
pub fn birth(payload: &[u8]) -> Result<Birth, String> {
    let p = <Payload as prost::Message>::decode(payload).map_err(not_sparkplug)?;
    let bd_seq = bd_seq(&p.metrics);
    let aliases = p
        .metrics
        .into_iter()
        .filter_map(|m| Some((m.alias?, m.name?)))
        .collect();
    Ok(Birth { aliases, bd_seq })
}

/// The `bdSeq` an NDEATH payload carries; `None` when it carries none as an integer (or is not a
/// Sparkplug B payload).
pub fn death_bd_seq(payload: &[u8]) -> Option<u64> {
    let p = <Payload as prost::Message>::decode(payload).ok()?;
    bd_seq(&p.metrics)
}

/// The value of the metric named `bdSeq`, sent as any integer type (the specification says
/// UInt64; some edge nodes send Int32 or Int64).
fn bd_seq(metrics: &[Metric]) -> Option<u64> {
    let m = metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(BD_SEQ_METRIC))?;
    match m.value {
        Some(Value::Long(v)) => Some(v),
        Some(Value::Int(v)) => Some(u64::from(v)),
        _ => None,
    }
}

fn not_sparkplug(e: prost::DecodeError) -> String {
    format!("the message is not a Sparkplug B payload: {e}")
}

/// Decodes a data message (NDATA or DDATA) into one row: sensors by metric name (or by alias,
/// from `aliases`), the wafer id from the metric named `id_metric`.
pub fn decode_data(
    payload: &[u8],
    schema: &Schema,
    id_metric: &str,
    aliases: Option<&Aliases>,
) -> Decoded {
    read_data(payload, schema, id_metric, aliases, &mut false)
}

/// A data message as [`decode_data`] reads it, and whether it was refused for an alias that
/// `aliases` does not bind (a reader that has not seen the sender's birth should ask for it).
pub struct Data {
    /// The row, or why the message was refused.
    pub decoded: Decoded,
    /// A metric carried an alias no birth bound.
    pub unbound_alias: bool,
}

/// [`decode_data`], saying whether an alias was unbound.
pub fn decode_data_noting_aliases(
    payload: &[u8],
    schema: &Schema,
    id_metric: &str,
    aliases: Option<&Aliases>,
) -> Data {
    let mut unbound_alias = false;
    let decoded = read_data(payload, schema, id_metric, aliases, &mut unbound_alias);
    Data {
        decoded,
        unbound_alias,
    }
}

fn read_data(
    payload: &[u8],
    schema: &Schema,
    id_metric: &str,
    aliases: Option<&Aliases>,
    unbound_alias: &mut bool,
) -> Decoded {
    let mut decoded = Decoded::empty(schema.width());
    // `column`: the metric the refusal is about, where it is about one.
    let reject = |error: String, reason: RejectReason, column: Option<&str>| Reject {
        error,
        row: None,
        reason,
        column: column.map(str::to_string),
        value: None,
        payload: describe(payload),
    };
    let p = match <Payload as prost::Message>::decode(payload) {
        Ok(p) => p,
        Err(e) => {
            decoded
                .rejects
                .push(reject(not_sparkplug(e), RejectReason::NotSparkplug, None));
            return decoded;
        }
    };
    let mut values = vec![f32::NAN; schema.width()];
    let mut id = None;
    // Whether a metric named a model sensor, and the first that named none.
    let mut sensor = false;
    let mut other: Option<&str> = None;
    for m in &p.metrics {
        let name = match (&m.name, m.alias) {
            (Some(n), _) => n.as_str(),
            (None, Some(a)) => match aliases.and_then(|x| x.get(&a)) {
                Some(n) => n.as_str(),
                None => {
                    *unbound_alias = true;
                    decoded.rejects.push(reject(
                        format!(
                            "metric alias {a} was not bound by a birth of this edge node or \
                             device (publish its NBIRTH/DBIRTH first, or send metric names)"
                        ),
                        RejectReason::UnboundAlias,
                        None,
                    ));
                    return decoded;
                }
            },
            (None, None) => {
                decoded.rejects.push(reject(
                    "a metric has neither a name nor an alias, which Sparkplug B requires".into(),
                    RejectReason::NotSparkplug,
                    None,
                ));
                return decoded;
            }
        };
        if name == id_metric {
            id = Some(match &m.value {
                // Trimmed, as every reader takes its ids, so that it joins its label.
                Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
                Some(Value::Int(v)) => v.to_string(),
                Some(Value::Long(v)) => v.to_string(),
                _ => {
                    decoded.rejects.push(reject(
                        format!("the id metric \"{id_metric}\" must be a non-empty string or an integer"),
                        RejectReason::MissingId,
                        Some(id_metric),
                    ));
                    return decoded;
                }
            });
            continue;
        }
        let Some(j) = schema.position(name) else {
            decoded.unknown_keys += 1;
            other.get_or_insert(name);
            continue;
        };
        sensor = true;
        match reading(m) {
            Ok(v) => values[j] = v,
            Err((why, reason)) => {
                decoded.rejects.push(reject(
                    format!("metric \"{name}\" {why}"),
                    reason,
                    Some(name),
                ));
                return decoded;
            }
        }
    }
    // Metrics named otherwise than the model's sensors (an edge node that names them by tag
    // path, "Chamber2/Sensor-1") would be scored as a wafer with every reading missing.
    if let (false, Some(first)) = (sensor, other) {
        decoded.rejects.push(reject(
            format!(
                "none of the message's metrics is one of the model's sensors ({} other metric(s), \
                 such as \"{first}\"): name them as the model does (\"{}\" ...)",
                decoded.unknown_keys,
                schema
                    .features()
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            ),
            RejectReason::NoSensor,
            None,
        ));
        return decoded;
    }
    let Some(id) = id else {
        decoded.rejects.push(reject(
            format!("the message has no \"{id_metric}\" metric with the wafer id ([source.mqtt] sparkplug_id_metric)"),
            RejectReason::MissingId,
            Some(id_metric),
        ));
        return decoded;
    };
    if id.len() > MAX_ID_BYTES {
        decoded.rejects.push(reject(
            format!(
                "the wafer id is {} bytes long; at most {MAX_ID_BYTES}",
                id.len()
            ),
            RejectReason::TooLarge,
            Some(id_metric),
        ));
        return decoded;
    }
    decoded.rows.push(id, &values, None);
    decoded
}

/// A sensor reading as f32 (NaN when null); why not, with the reject reason.
fn reading(m: &Metric) -> Result<f32, (String, RejectReason)> {
    if m.is_null == Some(true) {
        return Ok(f32::NAN);
    }
    let dt = m.datatype.unwrap_or(0);
    let v: f64 = match &m.value {
        None => return Ok(f32::NAN),
        Some(Value::Float(v)) => *v as f64,
        Some(Value::Double(v)) => *v,
        Some(Value::Int(v)) => match dt {
            datatype::INT8 => (*v as u8 as i8) as f64,
            datatype::INT16 => (*v as u16 as i16) as f64,
            datatype::INT32 => (*v as i32) as f64,
            _ => *v as f64,
        },
        Some(Value::Long(v)) if dt == datatype::INT64 => (*v as i64) as f64,
        Some(Value::Long(v)) => *v as f64,
        Some(Value::Boolean(_)) => {
            return Err((
                "must be a number, not a boolean".into(),
                RejectReason::WrongType,
            ))
        }
        Some(Value::String(s)) => {
            return Err((
                format!("must be a number, not the string {s:?}"),
                RejectReason::WrongType,
            ))
        }
        Some(Value::Bytes(_)) => {
            return Err((
                "must be a number, not bytes".into(),
                RejectReason::WrongType,
            ))
        }
    };
    let f = v as f32;
    if f.is_finite() || v.is_nan() {
        Ok(f)
    } else {
        Err((
            format!("is {v}, outside the float32 range"),
            RejectReason::NotFinite,
        ))
    }
}

/// A dead letter's payload text for a binary message: its length and first bytes in hex.
pub fn describe(payload: &[u8]) -> String {
    let head: String = payload
        .iter()
        .take(64)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "Sparkplug B payload, {} bytes: {head}{}",
        payload.len(),
        if payload.len() > 64 { "…" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    fn schema() -> Schema {
        Schema::new(&["Sensor-1".into(), "Sensor-2".into(), "Sensor-3".into()])
    }

    fn metric(
        name: Option<&str>,
        alias: Option<u64>,
        datatype: u32,
        value: Option<Value>,
    ) -> Metric {
        Metric {
            name: name.map(String::from),
            alias,
            datatype: Some(datatype),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn topics_name_their_type_and_source() {
        assert_eq!(
            topic("spBv1.0/fab/DDATA/etch-7/chamber-2"),
            Some(Topic {
                kind: Kind::DData,
                source: "fab/etch-7/chamber-2".into()
            })
        );
        assert_eq!(
            topic("spBv1.0/fab/NBIRTH/etch-7").unwrap().kind,
            Kind::NBirth
        );
        assert_eq!(
            topic("spBv1.0/fab/NDEATH/etch-7").unwrap().kind,
            Kind::NDeath
        );
        assert_eq!(topic("spBv1.0/fab/NCMD/etch-7").unwrap().kind, Kind::Other);
        assert_eq!(
            topic("spBv1.0/fab/DDEATH/etch-7/chamber-2").unwrap().kind,
            Kind::DDeath
        );
        assert_eq!(
            topic("spBv1.0/fab/DDEATH/etch-7").unwrap().kind,
            Kind::Other
        );
        assert_eq!(topic("faultline/rows"), None);
        assert_eq!(topic("spBv1.0/fab/DDATA/n/d/extra"), None);
        // Commands go to the edge node, for a device's data as for the node's own.
        for t in [
            "spBv1.0/fab/DDATA/etch-7/chamber-2",
            "spBv1.0/fab/NDATA/etch-7",
        ] {
            let t = topic(t).unwrap();
            assert_eq!(t.node(), "fab/etch-7");
            assert_eq!(t.command_topic(), "spBv1.0/fab/NCMD/etch-7");
        }
    }

    #[test]
    fn filters_that_take_births_are_told_apart() {
        for f in [
            "#",
            "+/#",
            "spBv1.0/#",
            "spBv1.0/fab/#",
            "spBv1.0/+/+/etch-7/#",
            "spBv1.0/fab/DBIRTH/#",
            "spBv1.0/fab/NBIRTH/etch-7",
            "spBv1.0/fab/+/+",
            "spBv1.0/fab/+/+/+",
        ] {
            assert!(filter_takes_births(f), "{f}");
        }
        for f in [
            "spBv1.0/fab/DDATA/#",
            "spBv1.0/fab/NDATA/+",
            "spBv1.0/fab",
            "spBv1.0/fab/+",
            "spBv1.0/fab/+/+/+/+",
            "other/fab/#",
        ] {
            assert!(!filter_takes_births(f), "{f}");
        }
    }

    #[test]
    fn a_rebirth_request_is_a_boolean_node_control_metric() {
        let p =
            <Payload as prost::Message>::decode(&rebirth_request(1_700_000_000_000)[..]).unwrap();
        assert_eq!(p.timestamp, Some(1_700_000_000_000));
        assert_eq!(p.metrics.len(), 1);
        let m = &p.metrics[0];
        assert_eq!(m.name.as_deref(), Some("Node Control/Rebirth"));
        assert_eq!(m.datatype, Some(11)); // Sparkplug B's Boolean
        assert_eq!(m.value, Some(Value::Boolean(true)));
    }

    #[test]
    fn a_data_message_is_one_row_by_name_or_alias() {
        let birth = Payload {
            metrics: vec![
                metric(Some("Sensor-2"), Some(7), 10, Some(Value::Double(0.0))),
                metric(Some("Sensor-3"), Some(8), 1, Some(Value::Int(0))),
            ],
            ..Default::default()
        };
        let Birth { aliases, bd_seq } = super::birth(&birth.encode_to_vec()).unwrap();
        assert_eq!(aliases.get(&7).map(String::as_str), Some("Sensor-2"));
        assert_eq!(bd_seq, None, "a device's birth carries none");
        let data = Payload {
            metrics: vec![
                metric(
                    Some("wafer_id"),
                    None,
                    12,
                    Some(Value::String(" W-1 ".into())),
                ),
                metric(Some("Sensor-1"), None, 9, Some(Value::Float(1.5))),
                metric(None, Some(7), 10, Some(Value::Double(-2.25))),
                metric(None, Some(8), 1, Some(Value::Int(0xFF))), // Int8 -1
                metric(Some("Chamber-Temp"), None, 9, Some(Value::Float(3.0))),
            ],
            ..Default::default()
        };
        let d = decode_data(&data.encode_to_vec(), &schema(), "wafer_id", Some(&aliases));
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.ids, ["W-1"]);
        assert_eq!(d.rows.row(0), [1.5, -2.25, -1.0]);
        assert_eq!(d.unknown_keys, 1);
    }

    #[test]
    fn unusable_messages_are_refused_with_their_reason() {
        let s = schema();
        let d = decode_data(b"{\"id\": 1}", &s, "wafer_id", None);
        assert_eq!(d.rejects[0].reason, RejectReason::NotSparkplug);
        assert!(d.rejects[0]
            .payload
            .starts_with("Sparkplug B payload, 9 bytes: 7b22"));

        let no_id = Payload {
            metrics: vec![metric(Some("Sensor-1"), None, 9, Some(Value::Float(1.0)))],
            ..Default::default()
        };
        let d = decode_data(&no_id.encode_to_vec(), &s, "wafer_id", None);
        assert_eq!(d.rejects[0].reason, RejectReason::MissingId);
        assert!(
            d.rejects[0].error.contains("\"wafer_id\""),
            "{}",
            d.rejects[0].error
        );

        let text = Payload {
            metrics: vec![
                metric(Some("wafer_id"), None, 12, Some(Value::String("W".into()))),
                metric(
                    Some("Sensor-1"),
                    None,
                    12,
                    Some(Value::String("hot".into())),
                ),
            ],
            ..Default::default()
        };
        let d = decode_data(&text.encode_to_vec(), &s, "wafer_id", None);
        assert_eq!(d.rejects[0].reason, RejectReason::WrongType);
        assert!(d.rejects[0].error.contains("\"Sensor-1\""));
        // The refusal names the metric it is about, as a JSON row's names its field.
        assert_eq!(d.rejects[0].column.as_deref(), Some("Sensor-1"));
        assert_eq!(
            decode_data(&no_id.encode_to_vec(), &s, "wafer_id", None).rejects[0]
                .column
                .as_deref(),
            Some("wafer_id")
        );

        let unbound = Payload {
            metrics: vec![metric(None, Some(99), 9, Some(Value::Float(1.0)))],
            ..Default::default()
        };
        let d = decode_data(&unbound.encode_to_vec(), &s, "wafer_id", None);
        assert!(
            decode_data_noting_aliases(&unbound.encode_to_vec(), &s, "wafer_id", None)
                .unbound_alias
        );
        assert!(
            !decode_data_noting_aliases(&no_id.encode_to_vec(), &s, "wafer_id", None).unbound_alias
        );
        assert!(
            d.rejects[0].error.contains("alias 99"),
            "{}",
            d.rejects[0].error
        );
        // Its own reason: it was counted as a sensor of the wrong type.
        assert_eq!(d.rejects[0].reason, RejectReason::UnboundAlias);
        let nameless = Payload {
            metrics: vec![metric(None, None, 9, Some(Value::Float(1.0)))],
            ..Default::default()
        };
        let d = decode_data(&nameless.encode_to_vec(), &s, "wafer_id", None);
        assert_eq!(d.rejects[0].reason, RejectReason::NotSparkplug);

        // Metrics named by tag path, none of them a model sensor: refused, not scored as a
        // wafer with every reading missing.
        let tag_paths = Payload {
            metrics: vec![
                metric(Some("wafer_id"), None, 12, Some(Value::String("W".into()))),
                metric(Some("Chamber2/Sensor-1"), None, 9, Some(Value::Float(1.0))),
                metric(Some("Chamber2/Sensor-2"), None, 9, Some(Value::Float(2.0))),
            ],
            ..Default::default()
        };
        let d = decode_data(&tag_paths.encode_to_vec(), &s, "wafer_id", None);
        assert!(d.rows.is_empty());
        assert_eq!(d.rejects[0].reason, RejectReason::NoSensor);
        assert!(
            d.rejects[0]
                .error
                .contains("2 other metric(s), such as \"Chamber2/Sensor-1\""),
            "{}",
            d.rejects[0].error
        );

        let null = Payload {
            metrics: vec![
                metric(Some("wafer_id"), None, 4, Some(Value::Long(42))),
                Metric {
                    is_null: Some(true),
                    ..metric(Some("Sensor-1"), None, 9, None)
                },
            ],
            ..Default::default()
        };
        let d = decode_data(&null.encode_to_vec(), &s, "wafer_id", None);
        assert_eq!(d.rows.ids, ["42"]);
        assert!(d.rows.row(0).iter().all(|v| v.is_nan()));
    }

    /// An NBIRTH's `bdSeq` and its NDEATH's are read as whatever integer type they come in; any
    /// other value, or none, gives none.
    #[test]
    fn births_and_deaths_give_their_bd_seq() {
        let with = |value: Option<Value>| {
            Payload {
                metrics: vec![
                    metric(Some("bdSeq"), None, 8, value),
                    metric(Some("Sensor-1"), Some(1), 10, Some(Value::Double(0.0))),
                ],
                ..Default::default()
            }
            .encode_to_vec()
        };
        let b = birth(&with(Some(Value::Long(3)))).unwrap();
        assert_eq!((b.bd_seq, b.aliases.len()), (Some(3), 1));
        assert_eq!(death_bd_seq(&with(Some(Value::Long(3)))), Some(3));
        assert_eq!(death_bd_seq(&with(Some(Value::Int(255)))), Some(255));
        assert_eq!(death_bd_seq(&with(Some(Value::String("3".into())))), None);
        assert_eq!(death_bd_seq(&with(None)), None);
        assert_eq!(death_bd_seq(&Payload::default().encode_to_vec()), None);
        assert_eq!(death_bd_seq(b"\xff\xff not protobuf"), None);
    }
}
