//! Reading rows: turning one input record into the feature vector the model expects, or into an
//! error that names the row, the column and the value.
//!
//! - [`Schema`]: the model's feature names and where each lives in a row.
//! - [`RowBatch`]: rows decoded into one row-major `f32` matrix, ready to score.
//! - [`csv`]: the wafer CSV schema, streamed in batches straight into the feature matrix.
//! - [`json`]: one bus message (an MQTT payload or a Kafka value) → rows and dead letters.
//! - [`labels`]: late labels (a wafer's true outcome) from messages, JSON and CSV.
//!
//! These are faultline's readers of untrusted bytes, in a crate of their own so the fuzz targets
//! build only them; faultline re-exports this crate as `faultline::row` (and the labels as
//! `faultline::labels`).
//!
//! Missing values (an empty cell, `NA`, `NaN`, `nan`, `null`) become NaN, which the model's graph
//! imputes. Anything else that is not a finite number is an error: faultline never guesses.

pub mod csv;
pub mod json;
pub mod labels;
mod number;
pub mod sparkplug;

/// Longest row or label id accepted, in bytes, by every reader. Ids are keys in memory and on
/// disk, and travel into logs and result topics.
pub const MAX_ID_BYTES: usize = 256;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// FNV-1a: a feature name is a few bytes from the schema or a producer's key, looked up once per
/// cell; SipHash's protection against chosen collisions buys nothing for a fixed table of a few
/// hundred names, and costs most of a lookup.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The model's features by name, shared by every decoder.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Feature names in model order.
    features: Arc<[String]>,
    /// Name -> position in a row.
    index: HashMap<String, usize, BuildHasherDefault<Fnv>>,
    /// Each feature's JSON key as the bus writes it, for the JSON reader to match in place.
    keys: Arc<[JsonKey]>,
}

/// A feature's `"name":` as 16 bytes, for names of up to 13 bytes (longer names match otherwise).
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonKey {
    /// The text, little-endian, zero past its end.
    pub(crate) word: u128,
    /// Ones over the text's bytes; zero for a name too long to fit.
    pub(crate) mask: u128,
    /// The text's length.
    pub(crate) len: usize,
}

impl JsonKey {
    fn new(name: &str) -> JsonKey {
        let text = format!("\"{name}\":");
        let mut bytes = [0u8; 16];
        if text.len() > 16 || name.bytes().any(|c| c == b'"' || c == b'\\' || c < 0x20) {
            // Too long, or a name JSON must escape: never matched in place.
            return JsonKey {
                word: 0,
                mask: 0,
                len: 0,
            };
        }
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        JsonKey {
            word: u128::from_le_bytes(bytes),
            mask: u128::MAX >> (8 * (16 - text.len())),
            len: text.len(),
        }
    }
}

impl Schema {
    /// A schema over `features`, in the order the model reads them.
    pub fn new(features: &[String]) -> Schema {
        let index = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        Schema {
            features: features.into(),
            index,
            keys: features.iter().map(|f| JsonKey::new(f)).collect(),
        }
    }

    /// Number of features per row.
    pub fn width(&self) -> usize {
        self.features.len()
    }

    /// Feature names in model order.
    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Each feature's JSON key, in model order.
    pub(crate) fn json_keys(&self) -> &[JsonKey] {
        &self.keys
    }

    /// Position of a named feature.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// Rows decoded for scoring: ids, a row-major value matrix (NaN = missing), optional labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowBatch {
    /// Features per row.
    pub width: usize,
    /// Row ids, one per row.
    pub ids: Vec<String>,
    /// `ids.len() * width` values.
    pub values: Vec<f32>,
    /// The input's `Good/Bad` label per row when it had one (+1 faulty, -1 good); never scored.
    pub labels: Vec<Option<i8>>,
}

impl RowBatch {
    /// An empty batch of rows `width` wide.
    pub fn new(width: usize) -> RowBatch {
        RowBatch {
            width,
            ..RowBatch::default()
        }
    }

    /// An empty batch of rows `width` wide with room for `rows` rows.
    pub fn with_capacity(width: usize, rows: usize) -> RowBatch {
        RowBatch {
            width,
            ids: Vec::with_capacity(rows),
            values: Vec::with_capacity(rows * width),
            labels: Vec::with_capacity(rows),
        }
    }

    /// Removes every row, keeping the memory for the next ones.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.values.clear();
        self.labels.clear();
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The values of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    /// Appends a row; `values` must be `width` long.
    pub fn push(&mut self, id: String, values: &[f32], label: Option<i8>) {
        debug_assert_eq!(values.len(), self.width);
        self.ids.push(id);
        self.values.extend_from_slice(values);
        self.labels.push(label);
    }

    /// Appends all rows of `other` (same width).
    pub fn append(&mut self, other: RowBatch) {
        debug_assert_eq!(other.width, self.width);
        self.ids.extend(other.ids);
        self.values.extend(other.values);
        self.labels.extend(other.labels);
    }
}

/// Why one cell is not a usable sensor value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellProblem {
    /// Not a number at all.
    NotANumber,
    /// A number, but infinite or too large for float32.
    NotFinite,
}

impl CellProblem {
    /// The reason, as a phrase.
    pub fn reason(self) -> &'static str {
        match self {
            CellProblem::NotANumber => {
                "is not a number (use an empty cell, NA or null for a missing value)"
            }
            CellProblem::NotFinite => "is not a finite float32 number",
        }
    }
}

/// Spellings of a missing value.
pub(crate) const MISSING: [&str; 6] = ["", "NA", "NaN", "nan", "null", "NULL"];

/// Parses one sensor cell. Missing spellings give NaN; the number is parsed as f64 and rounded to
/// f32 once, exactly as training's numpy `astype(float32)` does.
#[inline]
pub fn parse_cell(cell: &str) -> Result<f32, CellProblem> {
    // Most cells are a plain decimal with no spaces around it: read it in one pass.
    if let Some((x, end)) = number::decimal(cell.as_bytes(), 0) {
        let f = x as f32;
        if end == cell.len() && f.is_finite() {
            return Ok(f);
        }
    }
    let cell = cell.trim();
    match cell.parse::<f64>() {
        Ok(v) if v.is_finite() => {
            let f = v as f32;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(CellProblem::NotFinite)
            }
        }
        Ok(v) if v.is_nan() => {
            if MISSING.contains(&cell) {
                Ok(f32::NAN)
            } else {
                Err(CellProblem::NotANumber)
            }
        }
        Ok(_) => Err(CellProblem::NotFinite),
        Err(_) if MISSING.contains(&cell) => Ok(f32::NAN),
        Err(_) => Err(CellProblem::NotANumber),
    }
}

/// A `Good/Bad` cell that is neither 1, -1 nor empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLabel;

/// Parses a `Good/Bad` label: +1 faulty, -1 good, empty = unknown.
pub fn parse_label(cell: &str) -> Result<Option<i8>, BadLabel> {
    let cell = cell.trim();
    if MISSING.contains(&cell) {
        return Ok(None);
    }
    match cell.parse::<f64>() {
        Ok(1.0) => Ok(Some(1)),
        Ok(-1.0) => Ok(Some(-1)),
        _ => Err(BadLabel),
    }
}

/// Lists column names compactly: runs of `Sensor-N` become `Sensor-A..Sensor-B`.
pub fn summarize_names(names: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    let number = |s: &str| {
        s.strip_prefix("Sensor-")
            .and_then(|n| n.parse::<u32>().ok())
    };
    while i < names.len() {
        let mut j = i;
        if let Some(mut n) = number(&names[i]) {
            while j + 1 < names.len() && number(&names[j + 1]) == Some(n + 1) {
                j += 1;
                n += 1;
            }
        }
        if j > i + 1 {
            parts.push(format!("{}..{}", names[i], names[j]));
        } else {
            parts.extend(names[i..=j].iter().cloned());
        }
        i = j + 1;
    }
    let shown = 20;
    if parts.len() > shown {
        let more = parts.len() - shown;
        parts.truncate(shown);
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

/// A small deterministic generator (xorshift64) for the tests' random inputs.
#[cfg(test)]
pub(crate) fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse_as_numbers_missing_or_errors() {
        assert_eq!(parse_cell("3030.93"), Ok(3030.93f64 as f32));
        assert_eq!(parse_cell(" -0.0259 "), Ok(-0.0259f64 as f32));
        assert_eq!(parse_cell("1e3"), Ok(1000.0));
        for missing in ["", "NA", "NaN", "nan", "null", "NULL", "  "] {
            assert!(parse_cell(missing).unwrap().is_nan(), "{missing:?}");
        }
        assert_eq!(parse_cell("abc"), Err(CellProblem::NotANumber));
        assert_eq!(parse_cell("07-01-2020"), Err(CellProblem::NotANumber));
        assert_eq!(parse_cell("inf"), Err(CellProblem::NotFinite));
        assert_eq!(parse_cell("-Infinity"), Err(CellProblem::NotFinite));
        assert_eq!(parse_cell("1e300"), Err(CellProblem::NotFinite));
        assert_eq!(parse_cell("NAN"), Err(CellProblem::NotANumber));
    }

    #[test]
    fn labels_are_plus_or_minus_one() {
        assert_eq!(parse_label("1"), Ok(Some(1)));
        assert_eq!(parse_label("+1"), Ok(Some(1)));
        assert_eq!(parse_label("-1"), Ok(Some(-1)));
        assert_eq!(parse_label(""), Ok(None));
        assert_eq!(parse_label("0"), Err(BadLabel));
        assert_eq!(parse_label("bad"), Err(BadLabel));
    }

    #[test]
    fn names_are_summarized_as_ranges() {
        let names: Vec<String> = [
            "Sensor-1",
            "Sensor-2",
            "Sensor-3",
            "Sensor-7",
            "Sensor-9",
            "Sensor-10",
            "Foo",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            summarize_names(&names),
            "Sensor-1..Sensor-3, Sensor-7, Sensor-9, Sensor-10, Foo"
        );
    }
}
