//! The serde visitors that read a row object (or the compact `values` form) straight into the
//! row buffer, in model order, without building a map or a `Value`: each value is parsed as it
//! comes and written at its column; the first problem abandons the row with the reason.

use super::*;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Why the row being read was abandoned; set just before the visitor returns an error.
pub(super) enum Failure {
    /// A problem the visitor found.
    Row(JsonError),
    /// serde_json failed while reading this field's value (a number past the f64 range, or bad
    /// JSON, which [`explain`] tells apart).
    At(Field),
}

/// Records `error` as the reason and returns the serde error that abandons the row.
#[cold]
pub(super) fn fail<E: de::Error>(failure: &mut Option<Failure>, error: JsonError) -> E {
    failure.get_or_insert(Failure::Row(error));
    E::custom("the row was rejected")
}

/// Remembers which field serde_json failed in, unless a more precise reason is already known.
#[cold]
pub(super) fn failed_at<E>(failure: &mut Option<Failure>, field: Field, error: E) -> E {
    failure.get_or_insert(Failure::At(field));
    error
}

/// Reads a top-level array, each element with [`RowSeed`].
pub(super) struct BatchSeed<'a> {
    /// The most rows read (at most [`MAX_ROWS`]).
    pub(super) limit: usize,
    pub(super) schema: &'a Schema,
    pub(super) out: &'a mut Decoded,
    pub(super) failure: &'a mut Option<Failure>,
    /// Set when the array holds more than `limit` elements.
    pub(super) too_many: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.limit {
            let row = RowSeed {
                schema: self.schema,
                out: &mut *self.out,
                failure: &mut *self.failure,
            };
            if seq.next_element_seed(row)?.is_none() {
                return Ok(());
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            *self.too_many = true;
            return Err(de::Error::custom("too many rows"));
        }
        Ok(())
    }
}

/// Reads one row into the next row of `out.rows`, or leaves `out` as it was and says why.
pub(super) struct RowSeed<'a> {
    pub(super) schema: &'a Schema,
    pub(super) out: &'a mut Decoded,
    pub(super) failure: &'a mut Option<Failure>,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl RowSeed<'_> {
    #[cold]
    fn not_an_object<E: de::Error>(self, found: Found) -> Result<(), E> {
        Err(fail(self.failure, JsonError::RowNotAnObject(found)))
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with an id and sensor values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let rows = &mut self.out.rows;
        let start = rows.values.len();
        rows.values.resize(start + self.schema.width(), f32::NAN);
        let row = &mut rows.values[start..];
        match read_row(&mut map, self.schema, row, self.failure) {
            Ok(read) => {
                rows.ids.push(read.id);
                rows.labels.push(read.label);
                self.out.unknown_keys += read.unknown_keys;
                Ok(())
            }
            Err(e) => {
                rows.values.truncate(start);
                Err(e)
            }
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_object(Found::Array)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.not_an_object(Found::Str(clip(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.not_an_object(Found::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_an_object(Found::Number(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_an_object(Found::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.not_an_object(Found::Number(short(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object(Found::Null)
    }
}

/// What a row object holds besides its values.
pub(super) struct RowFields {
    id: String,
    label: Option<i8>,
    unknown_keys: u64,
}

/// Which form a row object has shown so far.
#[derive(Clone, Copy)]
pub(super) enum Form {
    Unknown,
    /// Sensor keys, the first of them at this feature position.
    Sensors(usize),
    Values,
}

/// Walks a row object, writing values into `row` (pre-filled with NaN) as they come.
pub(super) fn read_row<'de, A: MapAccess<'de>>(
    map: &mut A,
    schema: &Schema,
    row: &mut [f32],
    failure: &mut Option<Failure>,
) -> Result<RowFields, A::Error> {
    let features = schema.features();
    let width = features.len();
    let mut id = None;
    let mut label = None;
    let mut unknown_keys = 0;
    let mut form = Form::Unknown;
    while let Some(key) = map.next_key_seed(KeySeed(schema))? {
        match key {
            Key::Feature(i) => {
                match form {
                    Form::Unknown => form = Form::Sensors(i),
                    Form::Sensors(_) => {}
                    Form::Values => {
                        return Err(fail(failure, JsonError::MixedForms(features[i].clone())))
                    }
                }
                let field = || Field::Sensor(features[i].clone());
                let Cell(value) = map
                    .next_value()
                    .map_err(|e| failed_at(failure, field(), e))?;
                row[i] = value.map_err(|v| fail(failure, field().refuse(v, width)))?;
            }
            Key::Values => {
                if let Form::Sensors(first) = form {
                    return Err(fail(
                        failure,
                        JsonError::MixedForms(features[first].clone()),
                    ));
                }
                form = Form::Values;
                let seed = ValuesSeed {
                    schema,
                    row: &mut *row,
                    failure: &mut *failure,
                };
                if let Err(e) = map.next_value_seed(seed) {
                    return Err(failed_at(failure, Field::Values, e));
                }
            }
            Key::Id => {
                let value = map
                    .next_value::<Scalar>()
                    .map_err(|e| failed_at(failure, Field::Id, e))?;
                id = Some(parse_id(value, width).map_err(|e| fail(failure, e))?);
            }
            Key::Label => {
                let value = map
                    .next_value::<Scalar>()
                    .map_err(|e| failed_at(failure, Field::Label, e))?;
                label =
                    parse_label(value).map_err(|v| fail(failure, Field::Label.refuse(v, width)))?;
            }
            Key::Unknown => {
                map.next_value::<IgnoredAny>()?;
                unknown_keys += 1;
            }
        }
    }
    if matches!(form, Form::Unknown) && unknown_keys > 0 {
        let first = features.first().cloned().unwrap_or_default();
        return Err(fail(failure, JsonError::NoSensor(unknown_keys, first)));
    }
    match id {
        Some(id) => Ok(RowFields {
            id,
            label,
            unknown_keys,
        }),
        None => Err(fail(failure, JsonError::MissingId)),
    }
}

/// A row id: a string, without the white space around it (as the CSV and labels readers take
/// theirs, so that `" W-1"` joins its label `W-1`), non-empty and of at most [`MAX_ID_BYTES`]; or
/// an integer.
pub(super) fn parse_id(value: Scalar<'_>, width: usize) -> Result<String, JsonError> {
    match value {
        Scalar::Str(s) => match s.trim() {
            "" if s.is_empty() => Err(JsonError::BlankId("empty")),
            "" => Err(JsonError::BlankId("blank")),
            t if t.len() > MAX_ID_BYTES => Err(JsonError::IdTooLong(t.len())),
            t => Ok(t.to_string()),
        },
        Scalar::U64(u) => Ok(u.to_string()),
        Scalar::I64(i) => Ok(i.to_string()),
        Scalar::Null => Err(JsonError::BlankId("null")),
        other => Err(Field::Id.refuse(other, width)),
    }
}

/// A `Good/Bad` label: +1 faulty, -1 good, null unknown; anything else is handed back.
pub(super) fn parse_label(value: Scalar<'_>) -> Result<Option<i8>, Scalar<'_>> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::U64(1) => Ok(Some(1)),
        Scalar::I64(-1) => Ok(Some(-1)),
        Scalar::F64(1.0) => Ok(Some(1)),
        Scalar::F64(-1.0) => Ok(Some(-1)),
        other => Err(other),
    }
}

/// One sensor value: a finite f32, or NaN for null; any other value is handed back as read.
pub(super) struct Cell<'de>(Result<f32, Scalar<'de>>);

impl<'de> de::Deserialize<'de> for Cell<'de> {
    #[inline]
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Cell<'de>, D::Error> {
        d.deserialize_any(CellVisitor).map(Cell)
    }
}

/// Reads a number straight to f32 (the hot path); anything else via [`ScalarVisitor`].
pub(super) struct CellVisitor;

impl CellVisitor {
    /// Rounds once to f32, as the CSV path does.
    #[inline]
    fn number<'de>(x: f64) -> Result<f32, Scalar<'de>> {
        let f = x as f32;
        if f.is_finite() {
            Ok(f)
        } else {
            Err(Scalar::F64(x))
        }
    }
}

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Result<f32, Scalar<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or null")
    }

    #[inline]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(CellVisitor::number(v))
    }

    #[inline]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(CellVisitor::number(v as f64))
    }

    #[inline]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(CellVisitor::number(v as f64))
    }

    #[inline]
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(f32::NAN))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        ScalarVisitor.visit_bool(v).map(Err)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        ScalarVisitor.visit_borrowed_str(v).map(Err)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        ScalarVisitor.visit_str(v).map(Err)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(Err)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_map(map).map(Err)
    }
}

/// Reads the compact form's `values` array into `row`.
pub(super) struct ValuesSeed<'a> {
    schema: &'a Schema,
    row: &'a mut [f32],
    failure: &'a mut Option<Failure>,
}

impl<'de> DeserializeSeed<'de> for ValuesSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl ValuesSeed<'_> {
    #[cold]
    fn not_an_array<E: de::Error>(self, found: Scalar<'_>) -> Result<(), E> {
        let width = self.schema.width();
        Err(fail(self.failure, Field::Values.refuse(found, width)))
    }
}

impl<'de> Visitor<'de> for ValuesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of numbers or nulls")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let features = self.schema.features();
        let width = self.row.len();
        let field = |n: usize| Field::Entry {
            number: n + 1,
            name: features[n].clone(),
        };
        let mut n = 0;
        loop {
            if n < width {
                let value = match seq.next_element::<Cell>() {
                    Ok(Some(Cell(value))) => value,
                    Ok(None) => break,
                    Err(e) => return Err(failed_at(self.failure, field(n), e)),
                };
                self.row[n] = value.map_err(|v| fail(self.failure, field(n).refuse(v, width)))?;
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            n += 1;
        }
        if n != width {
            return Err(fail(
                self.failure,
                JsonError::WrongLength { found: n, width },
            ));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_an_array(Scalar::Object)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.not_an_array(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.not_an_array(Scalar::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_an_array(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_an_array(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.not_an_array(Scalar::F64(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_array(Scalar::Null)
    }
}

/// What a key of a row object means.
pub(super) enum Key {
    Id,
    Label,
    Values,
    Feature(usize),
    Unknown,
}

/// What `key` means in a row object of `schema`.
#[inline]
fn classify(schema: &Schema, key: &str) -> Key {
    let features = schema.features();
    // Fast path: `Sensor-N` is usually feature N-1; confirm by comparing, skip the hash.
    if let Some(i) = key.strip_prefix("Sensor-").and_then(sensor_index) {
        if features.get(i).is_some_and(|f| same_short(f, key)) {
            return Key::Feature(i);
        }
    }
    match key {
        "id" => Key::Id,
        LABEL_COLUMN => Key::Label,
        "values" => Key::Values,
        _ => schema.position(key).map_or(Key::Unknown, Key::Feature),
    }
}

/// The keys of a message's row objects that the model does not read: the distinct names in
/// order of appearance (at most `max_names`), and how many row objects hold any. For a caller
/// that refuses such rows and names the keys (the decoder only counts them: the bus ignores them).
/// One pass over the text, no map or `Value`, no copy of a known key.
pub fn unknown_keys(text: &[u8], schema: &Schema, max_names: usize) -> (Vec<String>, usize) {
    struct Found<'s> {
        schema: &'s Schema,
        max_names: usize,
        names: Vec<String>,
        rows: usize,
    }
    /// A row object, or an array of them.
    struct Walk<'f, 's>(&'f mut Found<'s>);
    /// A key: the key when the model does not read it.
    struct Name<'s>(&'s Schema);

    impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a row object or an array of them")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(Walk(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let found = self.0;
            let mut any = false;
            while let Some(unknown) = map.next_key_seed(Name(found.schema))? {
                map.next_value::<IgnoredAny>()?;
                if let Some(name) = unknown {
                    any = true;
                    if found.names.len() < found.max_names && !found.names.contains(&name) {
                        found.names.push(name);
                    }
                }
            }
            found.rows += usize::from(any);
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Name<'_> {
        type Value = Option<String>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Name<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<String>, E> {
            Ok(matches!(classify(self.0, key), Key::Unknown).then(|| key.to_string()))
        }
    }

    let mut found = Found {
        schema,
        max_names,
        names: vec![],
        rows: 0,
    };
    // On text that is not JSON, the names found before the error are what there is to say.
    let _ = Walk(&mut found).deserialize(&mut serde_json::Deserializer::from_slice(text));
    (found.names, found.rows)
}

/// Classifies a key without copying it.
pub(super) struct KeySeed<'a>(&'a Schema);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    #[inline]
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(classify(self.0, key))
    }
}

/// `a == b`, inlined for the 8..=16 byte keys of the fast path (two overlapping word compares
/// instead of a call to `memcmp`, which took 6-8% of the decoding time).
#[inline]
pub(super) fn same_short(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if !(8..=16).contains(&n) {
        return a == b;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_ne_bytes(w)
    };
    word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
}

/// `N - 1` for the digits `N` of `Sensor-N` (N >= 1, at most 6 digits).
#[inline]
pub(super) fn sensor_index(digits: &str) -> Option<usize> {
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    let mut n = 0usize;
    for &b in digits.as_bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(b - b'0');
    }
    n.checked_sub(1)
}

/// Any one JSON value, with arrays and objects skipped (iteratively, so depth is no danger):
/// the visitor's view of a field before it checks the type.
pub(super) enum Scalar<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Object,
    Array,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Scalar<'de>, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

pub(super) struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    #[inline]
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::F64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::I64(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar<'de>, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar<'de>, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Scalar::Object)
    }
}

/// A number as a message shows it: plain when that is short, else in exponent form (`1e39`).
pub(super) fn short(x: f64) -> String {
    if x == 0.0 || (1e-5..1e16).contains(&x.abs()) {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}

/// At most [`CLIP_CHARS`] characters of `s`, marked when cut.
pub(super) fn clip(s: &str) -> String {
    match s.char_indices().nth(CLIP_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// Appends `s` as a JSON string literal.
pub(super) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
