//! One bus message (an MQTT payload or a Kafka value) of JSON rows, decoded for scoring.
//!
//! A row is one JSON object, `{"id": "Wafer-1146", "Sensor-1": 3030.93, ..., "Sensor-590": null}`,
//! or its compact form `{"id": "Wafer-1146", "values": [3030.93, ..., null]}` with exactly one
//! entry per model feature, in model order. A message is one row or a JSON array of rows.
//!
//! - `id` is required: a string, trimmed of white space as CSV and label ids are, then non-empty
//!   and of at most [`MAX_ID_BYTES`] bytes; or a JSON integer (kept as its decimal string).
//! - A missing sensor key, or `null`, is a missing value (NaN), which the model's graph imputes.
//!   Numbers are read as f64 and rounded to f32 once, as the CSV path does; a number past the f32
//!   range, or a value of any other JSON type, rejects the row: faultline never guesses.
//! - `Good/Bad` (1, -1 or null) is carried as the row's label and never scored.
//! - Any other key is ignored but counted, so a producer that misspells a sensor shows up in the
//!   metrics instead of silently scoring on imputed values.
//! - A key given twice keeps its last value, as most JSON readers do; each value is checked,
//!   so one that would reject the row rejects it even when a later one is valid. (A CSV header
//!   naming a column twice is refused: a file has one header, a stream many producers.)
//!
//! A bad row rejects only itself: the other rows of the array are still scored, and each reject
//! carries its own JSON text for the dead-letter topic. Only a message that is not JSON at all (or
//! not UTF-8, or too large) is rejected whole.
//!
//! Speed: a well-formed message of flat rows is read by a byte scanner (`fast.rs`) that writes
//! each number straight into the row, finding its column by guessing the next feature in order
//! and otherwise by hash. Anything it does not handle (escapes, nested values, anything to
//! reject) is read again from the start by the full reader: a serde visitor that also writes
//! straight into the row buffer, with no `serde_json::Value` or map. Only when something is wrong
//! is an array read a third time, element by element, to find each element's own text (serde_json
//! does not tell a visitor where it is), so the cost of rejects is paid by the messages that have
//! them.

mod fast;
mod visit;
pub use visit::unknown_keys;

use super::csv::LABEL_COLUMN;
use super::{RowBatch, Schema};
use serde::de::{DeserializeSeed, IgnoredAny};
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use visit::*;

/// Most rows one message may hold; a larger array is refused whole, before its rows are decoded
/// past this count, so that one message cannot claim an unbounded share of memory.
pub const MAX_ROWS: usize = 100_000;

pub use super::MAX_ID_BYTES;

/// Shown values (an offending string) are cut to this many characters in messages.
const CLIP_CHARS: usize = 64;

/// What one message decoded to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Rows that decoded, in message order.
    pub rows: RowBatch,
    /// Rows (or the whole message) that could not be read, each with its reason and raw text.
    pub rejects: Vec<Reject>,
    /// Keys in the decoded rows that were neither id, label, values nor a model feature (ignored,
    /// counted so a producer's misspelt sensor name is visible).
    pub unknown_keys: u64,
}

/// A row, or a whole message, that cannot be scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// A sentence naming the row and field, e.g.
    /// `row 3: "Sensor-12" must be a number or null, not the string "abc"`. Rows of an array are
    /// numbered from 1; a message that is a single object has no row prefix.
    pub error: String,
    /// The rejected row's 1-based position in the message's array; `None` when the reject is
    /// the whole message (a single object, or a message that is not an array of rows).
    pub row: Option<usize>,
    /// Why, as a low-cardinality label for metrics.
    pub reason: RejectReason,
    /// The field the refusal is about, when it is one field: a sensor's name (also for an
    /// entry of `values`), `id`, `values` or `Good/Bad`.
    pub column: Option<String>,
    /// The offending value as sent, when the refusal is about one field's scalar value (a
    /// string where a number belongs, a number past f32's range): `abc`, `1e39`, `true`.
    pub value: Option<String>,
    /// The rejected text exactly as received, for the dead-letter topic: an array element's own
    /// JSON text, or the whole payload (lossily decoded when it is not UTF-8).
    pub payload: String,
}

/// Why a row or message was rejected: the `reason` label of the reject metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The message is not JSON (also: nested too deep to read).
    MalformedJson,
    /// The message is not UTF-8, so it cannot be JSON.
    NotUtf8,
    /// A field holds a JSON type it may not (a string for a sensor, a float for the id, ...).
    WrongType,
    /// The row has no id, or an empty or null one.
    MissingId,
    /// `values` does not have one entry per model feature.
    WrongLength,
    /// A number outside the f32 range.
    NotFinite,
    /// The row has both `values` and sensor keys.
    MixedForms,
    /// The message or array element is not a JSON object.
    NotAnObject,
    /// The array holds more than [`MAX_ROWS`] rows, or an id is longer than [`MAX_ID_BYTES`].
    TooLarge,
    /// With `format = "sparkplug"`: the message is not a Sparkplug B protobuf payload.
    NotSparkplug,
    /// The row names none of the model's sensors, only other keys (or metrics): misnamed, it
    /// would be scored on the training medians alone.
    NoSensor,
    /// With `format = "sparkplug"`: a metric alias no birth of its edge node or device bound.
    UnboundAlias,
    /// With `format = "sparkplug"`: a birth under a new name while the births of as many edge
    /// nodes and devices as faultline keeps are kept already.
    TooManyBirths,
}

impl RejectReason {
    /// Every reason, so metrics can be registered at zero before the first reject.
    pub const ALL: [RejectReason; 13] = [
        RejectReason::MalformedJson,
        RejectReason::NotUtf8,
        RejectReason::WrongType,
        RejectReason::MissingId,
        RejectReason::WrongLength,
        RejectReason::NotFinite,
        RejectReason::MixedForms,
        RejectReason::NotAnObject,
        RejectReason::TooLarge,
        RejectReason::NotSparkplug,
        RejectReason::NoSensor,
        RejectReason::UnboundAlias,
        RejectReason::TooManyBirths,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::WrongType => "wrong_type",
            RejectReason::MissingId => "missing_id",
            RejectReason::WrongLength => "wrong_length",
            RejectReason::NotFinite => "not_finite",
            RejectReason::MixedForms => "mixed_forms",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::TooLarge => "too_large",
            RejectReason::NotSparkplug => "not_sparkplug",
            RejectReason::NoSensor => "no_sensor",
            RejectReason::UnboundAlias => "unbound_alias",
            RejectReason::TooManyBirths => "too_many_births",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reject {
    /// Whether the whole message was refused for holding more than [`MAX_ROWS`] rows (an API
    /// answers that as too large, not as unreadable).
    pub fn is_too_many_rows(&self) -> bool {
        self.row.is_none() && self.error == JsonError::TooManyRows.to_string()
    }
}

/// Why a message or row is refused; the text becomes [`Reject::error`].
#[derive(Debug, thiserror::Error)]
enum JsonError {
    #[error("the message is not UTF-8")]
    NotUtf8,
    #[error("the {what} is not valid JSON: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("the message holds more than {MAX_ROWS} rows; send at most {MAX_ROWS} per message")]
    TooManyRows,
    #[error("the message must be a JSON object or an array of objects, not {0}")]
    MessageNotAnObject(Found),
    #[error("the row must be a JSON object, not {0}")]
    RowNotAnObject(Found),
    #[error("{field} must be {expected}, not {found}")]
    WrongType {
        field: Field,
        expected: String,
        found: Found,
    },
    #[error("{field} must be a finite float32 number, not {number}")]
    NotFinite { field: Field, number: String },
    #[error("\"id\" is missing")]
    MissingId,
    #[error("\"id\" is {0}")]
    BlankId(&'static str),
    #[error("\"id\" is {0} bytes long; at most {MAX_ID_BYTES} are allowed")]
    IdTooLong(usize),
    #[error("\"values\" has {found} entries; the model needs {width}")]
    WrongLength { found: usize, width: usize },
    #[error(
        "the row mixes \"values\" with sensor keys (such as {0:?}); send one form or the other"
    )]
    MixedForms(String),
    #[error(
        "the row names none of the model's sensors, only {0} other key(s): name them as the model \
         does (\"{1}\" ...) or send \"values\"; scored, it would be judged on training medians alone"
    )]
    NoSensor(u64, String),
}

impl JsonError {
    fn reason(&self) -> RejectReason {
        match self {
            JsonError::NotUtf8 => RejectReason::NotUtf8,
            JsonError::Malformed { .. } => RejectReason::MalformedJson,
            JsonError::TooManyRows | JsonError::IdTooLong(_) => RejectReason::TooLarge,
            JsonError::MessageNotAnObject(_) | JsonError::RowNotAnObject(_) => {
                RejectReason::NotAnObject
            }
            JsonError::WrongType { .. } => RejectReason::WrongType,
            JsonError::NotFinite { .. } => RejectReason::NotFinite,
            JsonError::MissingId | JsonError::BlankId(_) => RejectReason::MissingId,
            JsonError::WrongLength { .. } => RejectReason::WrongLength,
            JsonError::MixedForms(_) => RejectReason::MixedForms,
            JsonError::NoSensor(..) => RejectReason::NoSensor,
        }
    }

    /// The value this refusal is about, if it is one field's scalar ([`Reject::value`]).
    fn value(&self) -> Option<String> {
        match self {
            JsonError::WrongType { found, .. } => match found {
                Found::Str(s) => Some(s.clone()),
                Found::Bool(b) => Some(b.to_string()),
                Found::Number(n) => Some(n.clone()),
                Found::Null => Some("null".into()),
                Found::Object | Found::Array => None,
            },
            JsonError::NotFinite { number, .. } => Some(number.clone()),
            _ => None,
        }
    }

    /// The one field this refusal is about, if any ([`Reject::column`]).
    fn column(&self) -> Option<String> {
        match self {
            JsonError::WrongType { field, .. } | JsonError::NotFinite { field, .. } => {
                Some(match field {
                    Field::Sensor(name) | Field::Entry { name, .. } => name.clone(),
                    Field::Values => "values".into(),
                    Field::Id => "id".into(),
                    Field::Label => LABEL_COLUMN.into(),
                })
            }
            JsonError::MissingId | JsonError::BlankId(_) | JsonError::IdTooLong(_) => {
                Some("id".into())
            }
            JsonError::WrongLength { .. } => Some("values".into()),
            _ => None,
        }
    }
}

/// The field a message names. Built only when a row is refused.
#[derive(Debug)]
enum Field {
    Sensor(String),
    Entry { number: usize, name: String },
    Values,
    Id,
    Label,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Sensor(name) => write!(f, "{name:?}"),
            Field::Entry { number, name } => write!(f, "\"values\" entry {number} ({name})"),
            Field::Values => f.write_str("\"values\""),
            Field::Id => f.write_str("\"id\""),
            Field::Label => write!(f, "{LABEL_COLUMN:?}"),
        }
    }
}

impl Field {
    fn expected(&self, width: usize) -> String {
        match self {
            Field::Sensor(_) | Field::Entry { .. } => "a number or null".into(),
            Field::Values => format!("an array of {width} numbers or nulls"),
            Field::Id => "a non-empty string or an integer".into(),
            Field::Label => "1, -1 or null".into(),
        }
    }

    /// The error for a value of this field that is not what it should be.
    fn refuse(self, value: Scalar<'_>, width: usize) -> JsonError {
        match (&self, value) {
            (Field::Sensor(_) | Field::Entry { .. }, Scalar::F64(x)) => JsonError::NotFinite {
                field: self,
                number: short(x),
            },
            (_, value) => JsonError::WrongType {
                expected: self.expected(width),
                field: self,
                found: value.into(),
            },
        }
    }

    /// The error for a number serde_json could not read because it is past the f64 range.
    fn out_of_range(self, number: Option<&str>, width: usize) -> JsonError {
        let number = number
            .unwrap_or("a number beyond the float64 range")
            .to_string();
        match self {
            Field::Sensor(_) | Field::Entry { .. } => JsonError::NotFinite {
                field: self,
                number,
            },
            _ => JsonError::WrongType {
                expected: self.expected(width),
                field: self,
                found: Found::Number(number),
            },
        }
    }
}

/// A JSON value that was not what the field needs, as a message shows it.
#[derive(Debug)]
enum Found {
    Str(String),
    Bool(bool),
    Number(String),
    Null,
    Object,
    Array,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Str(s) => write!(f, "the string {s:?}"),
            Found::Bool(b) => write!(f, "{b}"),
            Found::Number(n) => f.write_str(n),
            Found::Null => f.write_str("null"),
            Found::Object => f.write_str("an object"),
            Found::Array => f.write_str("an array"),
        }
    }
}

impl From<Scalar<'_>> for Found {
    fn from(value: Scalar<'_>) -> Found {
        match value {
            Scalar::Null => Found::Null,
            Scalar::Bool(b) => Found::Bool(b),
            Scalar::U64(u) => Found::Number(u.to_string()),
            Scalar::I64(i) => Found::Number(i.to_string()),
            Scalar::F64(x) => Found::Number(short(x)),
            Scalar::Str(s) => Found::Str(clip(&s)),
            Scalar::Object => Found::Object,
            Scalar::Array => Found::Array,
        }
    }
}

/// Decodes one message into rows, rejects and a count of ignored keys. Never fails as a whole:
/// what cannot be read is in [`Decoded::rejects`].
pub fn decode(payload: &[u8], schema: &Schema) -> Decoded {
    decode_at_most(payload, schema, MAX_ROWS)
}

/// [`decode`], refusing an array of more than `limit` rows (at most [`MAX_ROWS`]) as it refuses
/// one past [`MAX_ROWS`], with the same reject ([`Reject::is_too_many_rows`]; its text names
/// [`MAX_ROWS`], so a caller with a lower limit says its own). At most `limit` rows are decoded
/// first: an array of sparse rows decodes to far more than its text.
pub fn decode_at_most(payload: &[u8], schema: &Schema, limit: usize) -> Decoded {
    let limit = limit.min(MAX_ROWS);
    let payload = without_bom(payload);
    // The fast path checks UTF-8 only inside strings (all else it accepts is ASCII), so a
    // well-formed row is not scanned twice.
    if let Some(out) = fast::decode(payload, schema, limit) {
        return out;
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        let mut out = Decoded::empty(schema.width());
        let payload = String::from_utf8_lossy(payload).into_owned();
        out.reject(None, JsonError::NotUtf8, payload);
        return out;
    };
    full(text, schema, limit)
}

/// [`decode`] by the full reader alone, without the fast path: the same result for every input,
/// slower. For differential tests, the fuzz targets and the decoding benchmark.
pub fn decode_full(payload: &[u8], schema: &Schema) -> Decoded {
    match std::str::from_utf8(without_bom(payload)) {
        Ok(text) => full(text, schema, MAX_ROWS),
        Err(_) => decode(payload, schema),
    }
}

/// `payload` without a leading UTF-8 byte-order mark: a file saved by some Windows editors starts
/// with one, which JSON's RFC lets a reader ignore and serde_json refuses (the CSV and label
/// readers skip it too).
fn without_bom(payload: &[u8]) -> &[u8] {
    payload.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(payload)
}

/// The full reader: any JSON, every reject with its reason (see the module docs).
fn full(text: &str, schema: &Schema, limit: usize) -> Decoded {
    let mut out = Decoded::empty(schema.width());
    match text.as_bytes().get(skip_ws(text.as_bytes(), 0)) {
        Some(b'[') => decode_array(text, schema, &mut out, limit),
        Some(b'{') => {
            if let Err(e) = decode_row(text, schema, &mut out, "message") {
                out.reject(None, e, text.to_string());
            }
        }
        _ => {
            let e = match serde_json::from_str::<Scalar>(text) {
                Ok(value) => JsonError::MessageNotAnObject(value.into()),
                Err(e) => JsonError::Malformed {
                    what: "message",
                    detail: e.to_string(),
                },
            };
            out.reject(None, e, text.to_string());
        }
    }
    out
}

/// Writes one row in the object form, as [`decode`] reads it: `{"id":…,"Sensor-1":…,…}`.
///
/// Each value is written in the shortest text that reads back as the same f32, so a replayed row
/// scores exactly as the original. JSON has no NaN or infinity: both are written as `null` (a
/// missing value); decoded rows never hold an infinity. `values` and `features` are the same
/// length, in the same order.
pub fn encode_row(id: &str, values: &[f32], features: &[String]) -> String {
    debug_assert_eq!(values.len(), features.len());
    let mut out = String::with_capacity(16 + id.len() + features.len() * 24);
    out.push_str("{\"id\":");
    push_json_string(&mut out, id);
    for (name, &value) in features.iter().zip(values) {
        out.push(',');
        push_json_string(&mut out, name);
        out.push(':');
        if value.is_finite() {
            let plain = value == 0.0 || (1e-5..1e16).contains(&value.abs());
            // Writing to a String cannot fail.
            let _ = if plain {
                write!(out, "{value}")
            } else {
                write!(out, "{value:e}")
            };
        } else {
            out.push_str("null");
        }
    }
    out.push('}');
    out
}

impl Decoded {
    /// No row, no reject: a message that holds none (a Sparkplug birth, say).
    pub fn empty(width: usize) -> Decoded {
        Decoded {
            rows: RowBatch::new(width),
            rejects: Vec::new(),
            unknown_keys: 0,
        }
    }

    /// Records a reject; `row` is the 1-based array position, `None` for the whole message.
    #[cold]
    fn reject(&mut self, row: Option<usize>, error: JsonError, payload: String) {
        let message = match row {
            Some(n) => format!("row {n}: {error}"),
            None => error.to_string(),
        };
        self.rejects.push(Reject {
            error: message,
            row,
            reason: error.reason(),
            column: error.column(),
            value: error.value(),
            payload,
        });
    }

    /// Drops rows past the first `rows` (those of a row whose message turned out broken).
    fn truncate(&mut self, rows: usize, unknown_keys: u64) {
        let b = &mut self.rows;
        b.ids.truncate(rows);
        b.labels.truncate(rows);
        b.values.truncate(rows * b.width);
        self.unknown_keys = unknown_keys;
    }
}

/// Decodes an array message: one pass when every row is good; otherwise element by element.
fn decode_array(text: &str, schema: &Schema, out: &mut Decoded, limit: usize) {
    let mut failure = None;
    let mut too_many = false;
    let mut de = serde_json::Deserializer::from_str(text);
    let batch = BatchSeed {
        limit,
        schema,
        out: &mut *out,
        failure: &mut failure,
        too_many: &mut too_many,
    };
    if batch.deserialize(&mut de).and_then(|()| de.end()).is_ok() {
        return;
    }
    *out = Decoded::empty(schema.width());
    if too_many {
        out.reject(None, JsonError::TooManyRows, text.to_string());
        return;
    }
    let spans = match split_array(text, limit) {
        Ok(spans) => spans,
        Err(e) => {
            out.reject(None, e, text.to_string());
            return;
        }
    };
    for (i, &(start, end)) in spans.iter().enumerate() {
        let row = &text[start..end];
        if let Err(e) = decode_row(row, schema, out, "row") {
            out.reject(Some(i + 1), e, row.to_string());
        }
    }
}

/// Decodes `text`, which is one row and nothing else; on failure nothing is added to `out`.
/// `what` names `text` in a syntax error ("message" or "row").
fn decode_row(
    text: &str,
    schema: &Schema,
    out: &mut Decoded,
    what: &'static str,
) -> Result<(), JsonError> {
    let (rows, unknown_keys) = (out.rows.len(), out.unknown_keys);
    let mut failure = None;
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = RowSeed {
        schema,
        out: &mut *out,
        failure: &mut failure,
    };
    match seed.deserialize(&mut de).and_then(|()| de.end()) {
        Ok(()) => Ok(()),
        Err(e) => {
            out.truncate(rows, unknown_keys);
            Err(explain(text, &e, failure, schema.width(), what))
        }
    }
}

/// Turns a failed read of `text` into the reason a user should see. Syntax errors come first: a
/// row whose JSON is broken is malformed, whatever its first field said.
#[cold]
fn explain(
    text: &str,
    error: &serde_json::Error,
    failure: Option<Failure>,
    width: usize,
    what: &'static str,
) -> JsonError {
    if let Err(syntax) = serde_json::from_str::<IgnoredAny>(text) {
        return JsonError::Malformed {
            what,
            detail: syntax.to_string(),
        };
    }
    match failure {
        Some(Failure::Row(e)) => e,
        // serde_json's only error on JSON that skips cleanly, apart from exotic escapes.
        Some(Failure::At(field)) if error.to_string().starts_with("number out of range") => {
            field.out_of_range(number_at(text, error.line(), error.column()), width)
        }
        _ => JsonError::Malformed {
            what,
            detail: error.to_string(),
        },
    }
}

/// The number around the place serde_json reported a range error (1-based line, byte column of
/// the last character read), if it is one that overflows.
fn number_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let line_start = match line {
        0 | 1 => 0,
        n => text.match_indices('\n').nth(n - 2)?.0 + 1,
    };
    let bytes = text.as_bytes();
    let at = (line_start + column).min(bytes.len());
    let in_number = |b: &u8| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E');
    let start = bytes[..at]
        .iter()
        .rposition(|b| !in_number(b))
        .map_or(0, |p| p + 1);
    let end = bytes[at..]
        .iter()
        .position(|b| !in_number(b))
        .map_or(bytes.len(), |p| at + p);
    let number = text.get(start..end)?;
    number
        .parse::<f64>()
        .is_ok_and(f64::is_infinite)
        .then_some(number)
}

/// Finds each element of a top-level array as a byte range of `text`, checking the JSON as it
/// goes. Only used once the one-pass read has failed.
fn split_array(text: &str, limit: usize) -> Result<Vec<(usize, usize)>, JsonError> {
    let bytes = text.as_bytes();
    let malformed = || JsonError::Malformed {
        what: "message",
        detail: match serde_json::from_str::<IgnoredAny>(text) {
            Err(e) => e.to_string(),
            Ok(_) => "its array elements cannot be told apart".into(),
        },
    };
    let mut spans = Vec::new();
    let mut p = skip_ws(bytes, 0) + 1; // past the '[' the caller saw
    p = skip_ws(bytes, p);
    if bytes.get(p) == Some(&b']') {
        if skip_ws(bytes, p + 1) != bytes.len() {
            return Err(malformed());
        }
        return Ok(spans);
    }
    loop {
        if spans.len() == limit {
            return Err(JsonError::TooManyRows);
        }
        let mut element = serde_json::Deserializer::from_str(&text[p..]).into_iter::<IgnoredAny>();
        if !matches!(element.next(), Some(Ok(_))) {
            return Err(malformed());
        }
        let end = p + element.byte_offset();
        spans.push((p, end));
        p = skip_ws(bytes, end);
        match bytes.get(p) {
            Some(b',') => p = skip_ws(bytes, p + 1),
            Some(b']') if skip_ws(bytes, p + 1) == bytes.len() => return Ok(spans),
            _ => return Err(malformed()),
        }
    }
}

/// Index of the first byte at or after `p` that is not JSON whitespace.
fn skip_ws(bytes: &[u8], mut p: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(p) {
        p += 1;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(&names(3))
    }

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("Sensor-{i}")).collect()
    }

    fn read(text: &str) -> Decoded {
        decode(text.as_bytes(), &schema())
    }

    /// The single reject of a message, as (reason, message).
    fn only_reject(text: &str) -> (&'static str, String) {
        let d = read(text);
        assert_eq!(d.rejects.len(), 1, "{text}: {d:?}");
        (d.rejects[0].reason.as_str(), d.rejects[0].error.clone())
    }

    #[test]
    fn a_byte_order_mark_before_the_message_is_skipped() {
        let text = "\u{FEFF}[{\"id\": \"W-1\", \"Sensor-1\": 1.5}]";
        for d in [read(text), decode_full(text.as_bytes(), &schema())] {
            assert!(d.rejects.is_empty(), "{:?}", d.rejects);
            assert_eq!(d.rows.ids, ["W-1"]);
            assert_eq!(d.rows.row(0)[0], 1.5);
        }
        // Only at the start: a mark inside is not JSON.
        assert_eq!(
            only_reject("[\u{FEFF}{\"id\": \"W-1\"}]").0,
            "malformed_json"
        );
    }

    #[test]
    fn an_object_is_read_by_sensor_name_in_any_order() {
        let d = read(
            r#"{"Sensor-3": 3, "id": "Wafer-1146", "Sensor-1": 3030.93, "Sensor-2": -0.0259}"#,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.ids, ["Wafer-1146"]);
        assert_eq!(d.rows.row(0), &[3030.93f64 as f32, -0.0259f64 as f32, 3.0]);
        assert_eq!(d.rows.labels, [None]);
        assert_eq!(d.unknown_keys, 0);
    }

    #[test]
    fn missing_keys_and_nulls_are_nan() {
        let d = read(r#"{"id": "W", "Sensor-2": null, "Sensor-3": 1e3}"#);
        let row = d.rows.row(0);
        assert!(row[0].is_nan() && row[1].is_nan());
        assert_eq!(row[2], 1000.0);
        let d = read(r#"{"id": "W"}"#);
        assert!(d.rows.row(0).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn the_compact_form_is_read_in_model_order() {
        let d = read(r#"{"id": "W", "values": [1.5, null, -2], "Good/Bad": -1}"#);
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        let row = d.rows.row(0);
        assert_eq!((row[0], row[2]), (1.5, -2.0));
        assert!(row[1].is_nan());
        assert_eq!(d.rows.labels, [Some(-1)]);
    }

    #[test]
    fn an_array_is_a_batch_in_message_order() {
        let d = read(
            r#" [ {"id": "A", "Sensor-1": 1}, {"id": "B", "values": [2, 3, 4]},
                  {"id": "C", "Sensor-3": 5} ] "#,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.ids, ["A", "B", "C"]);
        assert_eq!(d.rows.row(1), &[2.0, 3.0, 4.0]);
        assert_eq!(d.rows.row(2)[2], 5.0);
        assert!(read("[]").rows.is_empty() && read("[]").rejects.is_empty());
    }

    #[test]
    fn unknown_keys_are_ignored_and_counted() {
        let d = read(
            r#"[{"id": "A", "Sensor-01": "x", "sensor-1": {"a": [1]}, "Sensor-4": 1, "Sensor-1": 7},
                {"id": "B", "Wafer": "B", "Sensor-0": null, "Sensor-2": null}]"#,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.row(0)[0], 7.0);
        assert_eq!(d.unknown_keys, 5);
    }

    /// A row of other keys alone (sensors misnamed) is refused, not scored on the training
    /// medians as a wafer with every reading missing; in an array, the rows beside it are read.
    #[test]
    fn a_row_naming_no_sensor_but_other_keys_is_refused() {
        for text in [
            r#"{"id": "A", "sensor_1": 1.5, "sensor_2": 2}"#,
            r#"{"sensor_1":1.5,"id":"A"}"#,
        ] {
            let (reason, error) = only_reject(text);
            assert_eq!(reason, "no_sensor", "{text}");
            assert!(
                error.contains("none of the model's sensors") && error.contains("\"Sensor-1\""),
                "{error}"
            );
        }
        let d = read(r#"[{"id": "A", "Sensor-1": 1}, {"id": "B", "note": "x"}]"#);
        assert_eq!((d.rows.len(), d.rejects.len()), (1, 1));
        assert_eq!(d.rejects[0].reason, RejectReason::NoSensor);
        // An id alone, or sensors sent as null, are rows with every reading missing, as before.
        assert!(read(r#"{"id": "C"}"#).rejects.is_empty());
        assert!(read(r#"{"id": "D", "Sensor-1": null, "note": 1}"#)
            .rejects
            .is_empty());
    }

    #[test]
    fn keys_are_matched_by_name_when_sensors_are_not_in_numeric_order() {
        let s = Schema::new(&["Sensor-7".to_string(), "Sensor-1".to_string()]);
        let d = decode(
            br#"{"id": "W", "Sensor-1": 1, "Sensor-7": 7, "Sensor\u002d1": 2}"#,
            &s,
        );
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.row(0), &[7.0, 2.0]);
    }

    #[test]
    fn good_bad_is_carried_as_the_label() {
        let d = read(
            r#"[{"id": "A", "Good/Bad": 1}, {"id": "B", "Good/Bad": -1},
                {"id": "C", "Good/Bad": null}, {"id": "D", "Good/Bad": 1.0}, {"id": "E"}]"#,
        );
        assert_eq!(d.rows.labels, [Some(1), Some(-1), None, Some(1), None]);
        assert_eq!(d.unknown_keys, 0);
        assert_eq!(
            only_reject(r#"{"id": "A", "Good/Bad": 0}"#),
            (
                "wrong_type",
                r#""Good/Bad" must be 1, -1 or null, not 0"#.into()
            )
        );
    }

    #[test]
    fn a_string_id_is_trimmed_as_csv_and_label_ids_are() {
        // White space written as itself (no escape): the fast reader reads it, as the full does.
        let plain = "[{\"id\": \" W-1 \"}, {\"id\": \"W-2\u{2003}\"}]";
        let fast = super::fast::decode(plain.as_bytes(), &schema(), MAX_ROWS)
            .expect("the fast reader reads it");
        let full = decode_full(plain.as_bytes(), &schema());
        assert_eq!(fast.rows.ids, ["W-1", "W-2"]);
        assert_eq!(full.rows.ids, fast.rows.ids);
        // Escaped white space goes to the full reader; an escape elsewhere in the row too.
        for tail in ["", r#", "Sensor-1": 1, "note": "a\u0041""#] {
            let d = read(&format!(
                r#"[{{"id": " W-1\t"{tail}}}, {{"id": "W-2 "{tail}}}, {{"id": "\u00a0W-3"{tail}}}]"#
            ));
            assert_eq!(d.rows.ids, ["W-1", "W-2", "W-3"], "{tail}");
            assert_eq!(
                only_reject(&format!(r#"{{"id": "  "{tail}}}"#)),
                ("missing_id", r#""id" is blank"#.into())
            );
            // The limit is on the id kept.
            let padded = format!(" {} ", "x".repeat(MAX_ID_BYTES));
            let d = read(&format!(r#"{{"id": "{padded}"{tail}}}"#));
            assert_eq!(d.rows.ids, ["x".repeat(MAX_ID_BYTES)], "{tail}");
        }
    }

    #[test]
    fn an_integer_id_becomes_its_decimal_string() {
        let d = read(r#"[{"id": 1146}, {"id": -7}, {"id": 18446744073709551615}]"#);
        assert_eq!(d.rows.ids, ["1146", "-7", "18446744073709551615"]);
    }

    #[test]
    fn ids_must_be_present_non_empty_and_short() {
        assert_eq!(
            only_reject(r#"{"Sensor-1": 1}"#),
            ("missing_id", r#""id" is missing"#.into())
        );
        assert_eq!(
            only_reject(r#"{"id": "", "Sensor-1": 1}"#),
            ("missing_id", r#""id" is empty"#.into())
        );
        assert_eq!(
            only_reject(r#"{"id": null}"#),
            ("missing_id", r#""id" is null"#.into())
        );
        assert_eq!(
            only_reject(r#"{"id": 1.5}"#),
            (
                "wrong_type",
                r#""id" must be a non-empty string or an integer, not 1.5"#.into()
            )
        );
        let longest = "x".repeat(MAX_ID_BYTES);
        assert_eq!(
            read(&format!(r#"{{"id": "{longest}"}}"#)).rows.ids,
            [longest]
        );
        let long = format!(r#"{{"id": "{}"}}"#, "x".repeat(MAX_ID_BYTES + 1));
        assert_eq!(
            only_reject(&long),
            (
                "too_large",
                r#""id" is 257 bytes long; at most 256 are allowed"#.into()
            )
        );
        // Too large, but not for its rows.
        assert!(!read(&long).rejects[0].is_too_many_rows());
    }

    #[test]
    fn a_reject_about_one_field_names_it() {
        for (text, column) in [
            (r#"{"id": "A", "Sensor-2": true}"#, Some("Sensor-2")),
            (r#"{"id": "A", "values": [1, "2", 3]}"#, Some("Sensor-2")),
            (
                r#"{"id": "A", "values": [1, null, -1e39]}"#,
                Some("Sensor-3"),
            ),
            (r#"{"id": "A", "values": [1, 2]}"#, Some("values")),
            (r#"{"id": "A", "values": {"Sensor-1": 1}}"#, Some("values")),
            (r#"{"Sensor-1": 1}"#, Some("id")),
            (r#"{"id": "", "Sensor-1": 1}"#, Some("id")),
            (r#"{"id": 1.5, "Sensor-1": 1}"#, Some("id")),
            (r#"{"id": "A", "Good/Bad": 2}"#, Some("Good/Bad")),
            (r#"{"id": x}"#, None),
            (r#""Wafer-1""#, None),
        ] {
            let d = read(text);
            assert_eq!(d.rejects[0].column.as_deref(), column, "{text}");
        }
    }

    #[test]
    fn every_reject_reason_has_its_message() {
        let cases = [
            (
                r#"{"id": x}"#,
                "malformed_json",
                "the message is not valid JSON: expected value at line 1 column 8",
            ),
            (
                r#"{"id": "A", "Sensor-2": true}"#,
                "wrong_type",
                r#""Sensor-2" must be a number or null, not true"#,
            ),
            (
                r#"{"id": "A", "Sensor-2": [1, {"a": 2}]}"#,
                "wrong_type",
                r#""Sensor-2" must be a number or null, not an array"#,
            ),
            (
                r#"{"id": "A", "values": {"Sensor-1": 1}}"#,
                "wrong_type",
                r#""values" must be an array of 3 numbers or nulls, not an object"#,
            ),
            (
                r#"{"id": "A", "values": [1, "2", 3]}"#,
                "wrong_type",
                r#""values" entry 2 (Sensor-2) must be a number or null, not the string "2""#,
            ),
            (r#"{"Sensor-1": 1}"#, "missing_id", r#""id" is missing"#),
            (
                r#"{"id": "A", "values": [1, 2, 3, "x"]}"#,
                "wrong_length",
                r#""values" has 4 entries; the model needs 3"#,
            ),
            (
                r#"{"id": "A", "values": []}"#,
                "wrong_length",
                r#""values" has 0 entries; the model needs 3"#,
            ),
            (
                r#"{"id": "A", "Sensor-1": 1e39}"#,
                "not_finite",
                r#""Sensor-1" must be a finite float32 number, not 1e39"#,
            ),
            (
                r#"{"id": "A", "values": [1, null, -1e39]}"#,
                "not_finite",
                r#""values" entry 3 (Sensor-3) must be a finite float32 number, not -1e39"#,
            ),
            (
                r#"{"id": "A", "Sensor-2": 1, "values": [1, 2, 3]}"#,
                "mixed_forms",
                r#"the row mixes "values" with sensor keys (such as "Sensor-2"); send one form or the other"#,
            ),
            (
                r#"{"id": "A", "values": [1, 2, 3], "Sensor-3": 1}"#,
                "mixed_forms",
                r#"the row mixes "values" with sensor keys (such as "Sensor-3"); send one form or the other"#,
            ),
            (
                r#""Wafer-1""#,
                "not_an_object",
                r#"the message must be a JSON object or an array of objects, not the string "Wafer-1""#,
            ),
            (
                "",
                "malformed_json",
                "the message is not valid JSON: EOF while parsing a value at line 1 column 0",
            ),
        ];
        for (text, reason, message) in cases {
            assert_eq!(only_reject(text), (reason, message.to_string()), "{text}");
            assert_eq!(read(text).rejects[0].payload, text);
            assert!(read(text).rows.is_empty());
        }
        let d = read(
            r#"[{"id": "A"}, 7, {"id": "B"}, {"id": "C", "Sensor-12": 1, "Sensor-3": "abc"}]"#,
        );
        let errors: Vec<_> = d
            .rejects
            .iter()
            .map(|r| (r.reason.as_str(), r.error.as_str()))
            .collect();
        assert_eq!(
            errors,
            [
                (
                    "not_an_object",
                    "row 2: the row must be a JSON object, not 7"
                ),
                (
                    "wrong_type",
                    r#"row 4: "Sensor-3" must be a number or null, not the string "abc""#
                )
            ]
        );
        assert_eq!(d.rows.ids, ["A", "B"]);
        assert_eq!(d.unknown_keys, 0);
    }

    #[test]
    fn a_bad_row_in_the_middle_rejects_only_itself() {
        let bad = "{\"id\": \"B\",\n  \"Sensor-2\": \"n/a\", \"x\": [\"]\", \"\\\"{\"]}";
        let text = format!(
            r#"[{{"id": "A", "Sensor-1": 1, "x": 0}}, {bad} ,{{"id": "C", "Sensor-1": 3}}]"#
        );
        let d = read(&text);
        assert_eq!(d.rows.ids, ["A", "C"]);
        assert_eq!(d.rows.row(1)[0], 3.0);
        assert_eq!(d.unknown_keys, 1);
        assert_eq!(d.rejects.len(), 1);
        let r = &d.rejects[0];
        assert_eq!(r.payload, bad);
        assert_eq!(r.reason, RejectReason::WrongType);
        assert_eq!(
            r.error,
            r#"row 2: "Sensor-2" must be a number or null, not the string "n/a""#
        );
    }

    #[test]
    fn broken_json_rejects_the_whole_message() {
        let text = r#"[{"id": "A"}, {"id": "B", "Sensor-1": "x"}, {"id": "C"} {"id": "D"}]"#;
        let d = read(text);
        assert!(d.rows.is_empty());
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, RejectReason::MalformedJson);
        assert_eq!(
            d.rejects[0].error,
            "the message is not valid JSON: expected `,` or `]` at line 1 column 57"
        );
        assert_eq!(d.rejects[0].payload, text);
        for broken in [
            r#"[{"id": "A"},]"#,
            r#"[{"id": "A"}"#,
            r#"[{"id": "A"}] x"#,
            r#"{"id": "A"} {"id": "B"}"#,
            r#"{"id": "A", "Sensor-1": "x""#,
        ] {
            assert_eq!(only_reject(broken).0, "malformed_json", "{broken}");
        }
    }

    #[test]
    fn numbers_past_float32_are_not_finite() {
        let d = read(
            r#"[{"id": "A", "Sensor-1": 3.4e38}, {"id": "B", "Sensor-2": 1e39}, {"id": "C"}]"#,
        );
        assert_eq!(d.rows.ids, ["A", "C"]);
        assert_eq!(d.rows.row(0)[0], 3.4e38f64 as f32);
        assert_eq!(d.rejects[0].reason, RejectReason::NotFinite);
        assert_eq!(
            d.rejects[0].error,
            r#"row 2: "Sensor-2" must be a finite float32 number, not 1e39"#
        );
        // Past f64, serde_json itself refuses the number; only that row is rejected.
        let d =
            read("[{\"id\": \"A\"},\n {\"id\": \"B\",\n \"Sensor-3\": -1E400}, {\"id\": \"C\"}]");
        assert_eq!(d.rows.ids, ["A", "C"]);
        assert_eq!(d.rejects[0].reason, RejectReason::NotFinite);
        assert_eq!(
            d.rejects[0].error,
            r#"row 2: "Sensor-3" must be a finite float32 number, not -1E400"#
        );
        assert_eq!(
            only_reject(r#"{"id": 1e400}"#).1,
            r#""id" must be a non-empty string or an integer, not 1e400"#
        );
    }

    #[test]
    fn a_string_serde_json_skips_but_cannot_read_rejects_only_its_row() {
        // A lone surrogate escape is skipped by serde_json's validator but refused when read.
        let d = read(r#"[{"id": "A"}, {"id": "B", "\ud800": 1}, {"id": "C"}]"#);
        assert_eq!(d.rows.ids, ["A", "C"]);
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, RejectReason::MalformedJson);
        assert_eq!(
            d.rejects[0].error,
            "row 2: the row is not valid JSON: unexpected end of hex escape at line 1 column 20"
        );
        assert_eq!(d.rejects[0].payload, r#"{"id": "B", "\ud800": 1}"#);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let open = "[".repeat(10_000);
        assert_eq!(only_reject(&open).0, "malformed_json");
        let closed = format!("{open}{}", "]".repeat(10_000));
        assert_eq!(
            only_reject(&closed),
            (
                "not_an_object",
                "row 1: the row must be a JSON object, not an array".into()
            )
        );
        let deep_value = format!(r#"{{"id": "A", "Sensor-1": {closed}}}"#);
        assert_eq!(only_reject(&deep_value).0, "wrong_type");
        let deep_unknown = format!(r#"{{"id": "A", "Sensor-1": 1, "note": {closed}}}"#);
        assert_eq!(read(&deep_unknown).unknown_keys, 1);
        assert_eq!(
            only_reject(&format!(r#"{{"id": "A", "x": {open}}}"#)).0,
            "malformed_json"
        );
    }

    #[test]
    fn invalid_utf8_is_not_utf8() {
        let d = decode(b"{\"id\": \"W\xff\"}", &schema());
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, RejectReason::NotUtf8);
        assert_eq!(d.rejects[0].error, "the message is not UTF-8");
        assert_eq!(d.rejects[0].payload, "{\"id\": \"W\u{fffd}\"}");
    }

    #[test]
    fn an_array_of_more_than_max_rows_is_too_large() {
        let rows = |n: usize| format!("[{}]", vec![r#"{"id":1}"#; n].join(","));
        assert_eq!(read(&rows(MAX_ROWS)).rows.len(), MAX_ROWS);
        let text = rows(MAX_ROWS + 1);
        let d = read(&text);
        assert!(d.rows.is_empty());
        assert_eq!(d.rejects.len(), 1);
        assert_eq!(d.rejects[0].reason, RejectReason::TooLarge);
        assert!(d.rejects[0].is_too_many_rows());
        assert_eq!(
            d.rejects[0].error,
            "the message holds more than 100000 rows; send at most 100000 per message"
        );
        assert_eq!(d.rejects[0].payload, text);
        // Also when a bad row sends the message down the element-by-element path.
        let text = format!("[7,{}", &rows(MAX_ROWS)[1..]);
        assert_eq!(only_reject(&text).0, "too_large");
    }

    /// A caller's lower limit is held as MAX_ROWS is, on both paths, before more is decoded.
    #[test]
    fn an_array_past_a_lower_limit_is_refused_as_too_large() {
        let rows = |n: usize| format!("[{}]", vec![r#"{"id":1,"Sensor-1":2}"#; n].join(","));
        let s = schema();
        assert_eq!(decode_at_most(rows(10).as_bytes(), &s, 10).rows.len(), 10);
        // Past MAX_ROWS the limit is MAX_ROWS.
        assert_eq!(
            decode_at_most(rows(10).as_bytes(), &s, usize::MAX)
                .rows
                .len(),
            10
        );
        for text in [rows(11), format!("[7,{}", &rows(11)[1..])] {
            let d = decode_at_most(text.as_bytes(), &s, 10);
            assert!(d.rows.is_empty(), "{text}");
            assert_eq!(d.rejects.len(), 1, "{text}");
            assert!(d.rejects[0].is_too_many_rows(), "{text}");
        }
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let labels: std::collections::HashSet<_> =
            RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), RejectReason::ALL.len());
    }

    #[test]
    fn encoded_rows_of_590_sensors_decode_bit_exactly() {
        let features = names(590);
        let schema = Schema::new(&features);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut values: Vec<f32> = (0..590)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                f32::from_bits((state >> 32) as u32)
            })
            .map(|v| if v.is_finite() { v } else { 1.0 })
            .collect();
        let special = [
            f32::NAN,
            -0.0,
            0.0,
            f32::MAX,
            f32::MIN,
            f32::MIN_POSITIVE,
            1e-45,
            3030.93,
            -0.0259,
            16777217.0,
            1e16,
            9.999999e15,
        ];
        values[..special.len()].copy_from_slice(&special);
        let id = "Wafer \"1146\"\\\n\u{1}é";
        let text = encode_row(id, &values, &features);
        assert!(
            text.starts_with(r#"{"id":"Wafer \"1146\"\\\n\u0001é","Sensor-1":null,"Sensor-2":-0,"#)
        );
        let d = decode(text.as_bytes(), &schema);
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert_eq!(d.rows.ids, [id]);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(d.rows.row(0)), bits(&values));
    }
}
