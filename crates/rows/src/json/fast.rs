//! The fast path for well-formed messages: a byte scanner for the flat rows the bus carries.
//!
//! A row message is one flat object (or an array of them) whose keys are plain strings and whose
//! values are numbers, nulls and short strings. This reader walks such text once, byte by byte,
//! and writes each number straight into the row at its feature's position:
//!
//! - a key is found by guessing that it is the feature after the previous one (producers write
//!   sensors in model order, so this is one comparison of a few bytes), else by the schema's hash
//!   table;
//! - a number is checked against JSON's grammar here and converted by the standard library's
//!   correctly rounded `f64` parser, then rounded once to `f32`: the value serde_json with
//!   `float_roundtrip` gives, bit for bit.
//!
//! It accepts a strict subset of what the full reader ([`super::decode`]'s serde visitor)
//! accepts, with the same result. Whenever it meets anything else (an escape, a nested value, a
//! value of the wrong type, a syntax error, a row to reject), it gives up and returns `None`, and
//! the full reader reads the message from the start, so every reject and message is the full
//! reader's own. The cost of the unusual is paid only by the messages that have it.

use super::super::Schema;
use super::{Decoded, LABEL_COLUMN, MAX_ID_BYTES};
use crate::number::{decimal, short_number};
use crate::JsonKey;

/// Decodes `text` if it is made only of what this reader handles; `None` otherwise.
///
/// The text need not be UTF-8: outside strings this reader accepts only ASCII, and it checks
/// every string it keeps or skips, so any text it decodes is valid UTF-8 (the full reader says
/// what is wrong with the rest).
pub(super) fn decode(text: &[u8], schema: &Schema, limit: usize) -> Option<Decoded> {
    let mut s = Scanner { b: text, p: 0 };
    let mut out = Decoded::empty(schema.width());
    s.ws();
    match s.peek()? {
        b'{' => s.row(schema, &mut out)?,
        b'[' => {
            s.p += 1;
            s.ws();
            if s.peek()? == b']' {
                return None; // an empty array: the full reader says what that is
            }
            loop {
                if out.rows.len() == limit {
                    return None;
                }
                s.row(schema, &mut out)?;
                s.ws();
                match s.next()? {
                    b',' => s.ws(),
                    b']' => break,
                    _ => return None,
                }
            }
        }
        _ => return None,
    }
    s.ws();
    (s.p == s.b.len()).then_some(out)
}

/// A position in the message.
struct Scanner<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.p).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.p += 1;
        Some(c)
    }

    /// Skips JSON whitespace.
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.p += 1;
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string of valid UTF-8 without escapes or control characters, the quotes excluded.
    #[inline]
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let rest = &self.b[self.p..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        let text = &rest[..len];
        if rest[len] != b'"' || std::str::from_utf8(text).is_err() {
            return None;
        }
        self.p += len + 1;
        Some(text)
    }

    /// A number as JSON writes it; its text and whether it is an integer (no fraction, no
    /// exponent).
    #[inline]
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        let start = self.p;
        if self.peek() == Some(b'-') {
            self.p += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.p += 1;
            self.digit()?;
            self.digits();
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.p += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.p += 1;
            }
            self.digit()?;
            self.digits();
            integer = false;
        }
        Some((&self.b[start..self.p], integer))
    }

    #[inline]
    fn digit(&mut self) -> Option<()> {
        self.next().filter(u8::is_ascii_digit).map(|_| ())
    }

    #[inline]
    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.p += 1;
        }
    }

    /// `null`.
    #[inline]
    fn null(&mut self) -> Option<()> {
        (self.b.get(self.p..self.p + 4)? == b"null").then(|| self.p += 4)
    }

    /// A sensor value: a number within f32's range, or null (NaN).
    #[inline(always)]
    fn cell(&mut self) -> Option<f32> {
        if let Some(window) = self.b.get(self.p..self.p + 32) {
            if let Some((f, len)) = short_cell(window.try_into().unwrap_or(&[0; 32])) {
                self.p += len;
                return Some(f);
            }
        }
        if self.peek()? == b'n' {
            self.null()?;
            return Some(f32::NAN);
        }
        let x = self.float()?;
        let f = x as f32;
        f.is_finite().then_some(f)
    }

    /// A number, as [`decimal`] reads it.
    #[inline(always)]
    fn float(&mut self) -> Option<f64> {
        let (x, end) = decimal(self.b, self.p)?;
        self.p = end;
        Some(x)
    }

    /// One row object, appended to `out` only when all of it is read.
    fn row(&mut self, schema: &Schema, out: &mut Decoded) -> Option<()> {
        self.eat(b'{')?;
        let width = schema.width();
        let features = schema.features();
        let keys = schema.json_keys();
        let start = out.rows.values.len();
        out.rows.values.resize(start + width, f32::NAN);
        let row = &mut out.rows.values[start..start + width];
        let mut id: Option<&[u8]> = None;
        let mut label = None;
        let mut unknown = 0;
        let (mut sensors, mut values) = (false, false);
        // The feature the next key is guessed to be.
        let mut guess = 0;
        self.ws();
        if self.peek()? != b'}' {
            loop {
                // The common case first: sensors in model order, written compactly.
                if !values {
                    let (next, closed) = self.sensor_run(keys, row, guess)?;
                    sensors |= next > guess;
                    guess = next;
                    if closed {
                        break;
                    }
                }
                // Otherwise the guessed feature's name in quotes is matched in place, without
                // scanning the key first; any other key is scanned and looked up.
                let (key, at) = match self.guessed(features.get(guess)) {
                    Some(key) => (key, Some(guess)),
                    None => {
                        let key = self.plain_string()?;
                        (key, schema.position(as_str(key)))
                    }
                };
                self.colon()?;
                if let Some(i) = at {
                    if values {
                        return None;
                    }
                    sensors = true;
                    row[i] = self.cell()?;
                    guess = i + 1;
                } else {
                    match key {
                        b"values" if !sensors => {
                            values = true;
                            self.values(row)?;
                        }
                        b"id" => id = Some(self.id()?),
                        k if k == LABEL_COLUMN.as_bytes() => label = self.label()?,
                        b"values" => return None,
                        _ => {
                            self.scalar()?;
                            unknown += 1;
                        }
                    }
                }
                self.ws();
                match self.next()? {
                    b',' => self.ws(),
                    b'}' => break,
                    _ => return None,
                }
            }
        } else {
            self.p += 1;
        }
        // A row of other keys alone is refused by the general reader, which says why.
        if !sensors && !values && unknown > 0 {
            return None;
        }
        let id = id?;
        let rows = &mut out.rows;
        rows.ids.push(as_str(id).to_string());
        rows.labels.push(label);
        out.unknown_keys += unknown;
        Some(())
    }

    /// Reads members `"name":value,` for features `guess`, `guess + 1`, ... while each is the
    /// next feature's name (matched as one 16-byte word), written without whitespace, with a
    /// plain number ([`short_number`]) or `null`. Stops at the start of the first member that is
    /// anything else, or after the `}` that follows one; returns the next guess and whether the
    /// row's `}` was read. What it does not read, the general loop reads.
    #[inline(always)]
    fn sensor_run(
        &mut self,
        keys: &[JsonKey],
        row: &mut [f32],
        mut guess: usize,
    ) -> Option<(usize, bool)> {
        let b = self.b;
        let mut p = self.p;
        let row = &mut row[..keys.len()];
        // Room for a key's 16 bytes and a value's 32 without running off the text.
        while guess < keys.len() && p + 48 <= b.len() {
            let key = &keys[guess];
            let word = u128::from_le_bytes(b[p..p + 16].try_into().unwrap_or([0; 16]));
            if key.len == 0 || (word ^ key.word) & key.mask != 0 {
                break;
            }
            let q = p + key.len;
            let Some((value, len)) = short_cell(b[q..q + 32].try_into().unwrap_or(&[0; 32])) else {
                break;
            };
            row[guess] = value;
            guess += 1;
            p = q + len;
            match b[p] {
                b',' => p += 1,
                b'}' => {
                    self.p = p + 1;
                    return Some((guess, true));
                }
                _ => {
                    // Whitespace after the value, or not JSON.
                    self.p = p;
                    self.ws();
                    return match self.next()? {
                        b',' => {
                            self.ws();
                            Some((guess, false))
                        }
                        b'}' => Some((guess, true)),
                        _ => None,
                    };
                }
            }
        }
        self.p = p;
        Some((guess, false))
    }

    /// If the text here is `"name"` for the guessed feature's name, steps past it.
    #[inline]
    fn guessed(&mut self, feature: Option<&String>) -> Option<&'a [u8]> {
        let name = feature?.as_bytes();
        let end = self.p + 1 + name.len();
        let b = self.b;
        if b.get(end) == Some(&b'"') && b[self.p] == b'"' && same(&b[self.p + 1..end], name) {
            let key = &b[self.p + 1..end];
            self.p = end + 1;
            Some(key)
        } else {
            None
        }
    }

    /// `:` with any whitespace around it.
    #[inline]
    fn colon(&mut self) -> Option<()> {
        if self.peek() == Some(b':') {
            self.p += 1;
        } else {
            self.ws();
            self.eat(b':')?;
        }
        self.ws();
        Some(())
    }

    /// The compact form's array: exactly one cell per feature, in model order.
    fn values(&mut self, row: &mut [f32]) -> Option<()> {
        self.eat(b'[')?;
        for (i, slot) in row.iter_mut().enumerate() {
            self.ws();
            if i > 0 {
                self.eat(b',')?;
                self.ws();
            }
            *slot = self.cell()?;
        }
        self.ws();
        self.eat(b']')
    }

    /// An id: a plain string, without the white space around it, non-empty and of at most
    /// [`MAX_ID_BYTES`], or an integer that fits 64 bits, kept as written (JSON integers have one
    /// spelling, as serde_json prints them).
    fn id(&mut self) -> Option<&'a [u8]> {
        let id = if self.peek()? == b'"' {
            as_str(self.plain_string()?).trim().as_bytes()
        } else {
            let (text, integer) = self.number()?;
            let s = as_str(text);
            let fits = s.parse::<u64>().is_ok() || (s != "-0" && s.parse::<i64>().is_ok());
            if !(integer && fits) {
                return None;
            }
            text
        };
        (!id.is_empty() && id.len() <= MAX_ID_BYTES).then_some(id)
    }

    /// `Good/Bad`: 1 or -1 (in any spelling of those numbers), or null.
    fn label(&mut self) -> Option<Option<i8>> {
        if self.peek()? == b'n' {
            self.null()?;
            return Some(None);
        }
        match self.float()? {
            1.0 => Some(Some(1)),
            -1.0 => Some(Some(-1)),
            _ => None,
        }
    }

    /// An ignored key's value: any scalar (an object or an array goes to the full reader).
    fn scalar(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.plain_string().map(|_| ()),
            b'n' => self.null(),
            b't' => (self.b.get(self.p..self.p + 4)? == b"true").then(|| self.p += 4),
            b'f' => (self.b.get(self.p..self.p + 5)? == b"false").then(|| self.p += 5),
            // A number serde_json cannot hold is a syntax error there: let it say so.
            _ => self.float()?.is_finite().then_some(()),
        }
    }
}

/// A sensor value at the start of `w` in its common forms: `null` (NaN) or a short plain number
/// within f32's range ([`short_number`]); its value and length. `None` for anything else, which
/// [`Scanner::cell`] reads the long way.
#[inline(always)]
fn short_cell(w: &[u8; 32]) -> Option<(f32, usize)> {
    if w[0] == b'n' {
        return (w[..4] == *b"null").then_some((f32::NAN, 4));
    }
    let (x, len) = short_number(w)?;
    let f = x as f32;
    f.is_finite().then_some((f, len))
}

/// `a == b` for slices of one length; names of 8 to 16 bytes (`Sensor-1` to `Sensor-590`) are
/// compared as two overlapping words instead of by a call to memcmp.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word =
            |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else {
        a == b
    }
}

/// Text the scanner has checked is ASCII (digits, signs) or cut at ASCII quotes from valid UTF-8.
#[inline]
fn as_str(b: &[u8]) -> &str {
    // Cut at ASCII bytes from a `str`, so always valid; the check is a cheap guard.
    std::str::from_utf8(b).unwrap_or("\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::MAX_ROWS;

    /// The fast path on a text's bytes.
    fn decode(text: &str, schema: &Schema) -> Option<Decoded> {
        super::decode(text.as_bytes(), schema, MAX_ROWS)
    }

    #[test]
    fn strings_are_checked_for_utf8_and_the_rest_must_be_ascii() {
        let s = schema();
        let d = super::decode(
            "{\"id\":\"Wäfer-1\",\"x\":\"µ\",\"Sensor-1\":1}".as_bytes(),
            &s,
            MAX_ROWS,
        )
        .unwrap();
        assert_eq!((d.rows.ids[0].as_str(), d.unknown_keys), ("Wäfer-1", 1));
        for bad in [
            &b"{\"id\":\"W\xff\",\"Sensor-1\":1}"[..], // in the id
            b"{\"id\":\"W\",\"x\":\"\xc3\",\"Sensor-1\":1}", // in a skipped value
            b"{\"id\":\"W\",\"\xe2\x82\":1}",          // in an unknown key
            b"{\"id\":\"W\",\"Sensor-1\":1}\xff",      // after the row
        ] {
            assert!(super::decode(bad, &s, MAX_ROWS).is_none(), "{bad:?}");
            let full = super::super::decode(bad, &s);
            assert_eq!(full.rejects.len(), 1, "{bad:?}");
            assert_eq!(full.rejects[0].reason, super::super::RejectReason::NotUtf8);
        }
    }

    fn schema() -> Schema {
        Schema::new(&[
            "Sensor-1".to_string(),
            "Sensor-2".to_string(),
            "Sensor-3".to_string(),
        ])
    }

    #[test]
    fn plain_rows_are_read_here_and_anything_else_is_left_to_the_full_reader() {
        let s = schema();
        let d = decode(r#" {"id":"W-1","Sensor-1":1.5,"Sensor-3":null,"Sensor-2":-2e3,"x":"y","Good/Bad":-1} "#, &s).unwrap();
        assert_eq!(d.rows.ids, ["W-1"]);
        assert_eq!(d.rows.row(0)[..2], [1.5, -2000.0]);
        assert!(d.rows.row(0)[2].is_nan());
        assert_eq!((d.rows.labels.clone(), d.unknown_keys), (vec![Some(-1)], 1));
        let d = decode(
            r#"[{"id":7,"values":[1,2,3]},{"values":[null,0.25,1E2],"id":"b"}]"#,
            &s,
        )
        .unwrap();
        assert_eq!(d.rows.ids, ["7", "b"]);
        assert_eq!(d.rows.row(1)[1..], [0.25, 100.0]);
        for other in [
            r#"{"id":"W\u002d1","Sensor-1":1}"#,           // an escape
            r#"{"id":"W-1","Sensor-1":"1"}"#,              // a string for a sensor
            r#"{"id":"W-1","Sensor-1":01}"#,               // not JSON
            r#"{"id":"W-1","Sensor-1":1e39}"#,             // past f32
            r#"{"id":-0,"Sensor-1":1}"#,                   // serde_json reads the id as "0"
            r#"{"Sensor-1":1}"#,                           // no id
            r#"{"id":"","Sensor-1":1}"#,                   // empty id
            r#"{"id":1.5,"Sensor-1":1}"#,                  // a float id
            r#"{"id":"W","values":[1,2]}"#,                // short values
            r#"{"id":"W","values":[1,2,3],"Sensor-1":1}"#, // mixed forms
            r#"{"id":"W","x":{"nested":1}}"#,              // a nested unknown value
            r#"{"id":"W","Good/Bad":0}"#,                  // a bad label
            r#"[]"#,
            r#"{"id":"W"} x"#,
            r#"[{"id":"W"},]"#,
        ] {
            assert!(decode(other, &s).is_none(), "{other}");
        }
    }

    /// Rows as the fast reader and the full reader see them, bit for bit.
    fn same(a: &Decoded, b: &Decoded) -> bool {
        let bits = |d: &Decoded| {
            d.rows
                .values
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        a.rows.ids == b.rows.ids
            && a.rows.labels == b.rows.labels
            && bits(a) == bits(b)
            && a.rejects == b.rejects
            && a.unknown_keys == b.unknown_keys
    }

    #[test]
    fn whatever_it_reads_the_full_reader_reads_the_same() {
        let s = schema();
        let pieces = [
            "1",
            "-1",
            "0",
            "-0",
            "0.5",
            "-0.0",
            "1e3",
            "1E-3",
            "2.5e+2",
            "1e39",
            "1e400",
            "3.4028235e38",
            "123456789012345678901234",
            "-9223372036854775808",
            "18446744073709551615",
            "0.1",
            "null",
            "nul",
            "true",
            "\"x\"",
            "\"1\"",
            "\"\"",
            "{}",
            "[]",
            "[1,2,3]",
            "[null,1,2]",
            "01",
            "1.",
            ".5",
            "+1",
            "- 1",
            "NaN",
        ];
        let keys = [
            "\"id\"",
            "\"Sensor-1\"",
            "\"Sensor-2\"",
            "\"Sensor-3\"",
            "\"values\"",
            "\"Good/Bad\"",
            "\"other\"",
            "\"Sensor\\u002d1\"",
            "\"i\\\"d\"",
        ];
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut rand = |n: usize| (next() % n as u64) as usize;
        let (mut fast, mut total) = (0, 0);
        for _ in 0..20_000 {
            let mut rows = Vec::new();
            for _ in 0..1 + rand(3) {
                let mut members = Vec::new();
                if rand(8) != 0 {
                    members.push(format!(
                        "\"id\":{}",
                        ["\"W-1\"", "7", "-3", "\"\"", "1.5", "null"][rand(6)]
                    ));
                }
                for _ in 0..rand(5) {
                    let ws = [" ", "", "\n\t", ""][rand(4)];
                    members.push(format!(
                        "{ws}{}{ws}:{ws}{}{ws}",
                        keys[rand(keys.len())],
                        pieces[rand(pieces.len())]
                    ));
                }
                // Most rows name a sensor or `values`: one of other keys alone is refused, by
                // the full reader only, and would rarely reach the fast path.
                let form = |m: &String| ["\"Sensor", "\"values\""].iter().any(|k| m.contains(k));
                if !members.iter().any(form) && rand(8) != 0 {
                    members.push(format!("\"Sensor-{}\":2", 1 + rand(3)));
                }
                let k = rand(members.len() + 1).min(members.len());
                members.rotate_left(k);
                rows.push(format!("{{{}}}", members.join(",")));
            }
            let text = if rows.len() == 1 && rand(2) == 0 {
                rows.pop().unwrap()
            } else {
                format!("[{}]", rows.join(", "))
            };
            total += 1;
            if let Some(d) = decode(&text, &s) {
                fast += 1;
                let full = super::super::decode_full(text.as_bytes(), &s);
                assert!(same(&d, &full), "{text}\nfast: {d:?}\nfull: {full:?}");
            }
        }
        // The generator must reach the fast path often, or this test proves nothing: 1,016 of
        // 20,000 messages before rows of other keys alone went to the full reader, 911 since.
        assert!(
            fast > total / 25,
            "only {fast} of {total} messages took the fast path"
        );
    }

    #[test]
    fn long_rows_in_model_order_read_as_the_full_reader_reads_them() {
        // Wide enough rows that the in-order run (which needs 48 bytes ahead) does most of the work.
        let names: Vec<String> = (1..=60).map(|i| format!("S{i}")).collect();
        let s = Schema::new(&names);
        let values = [
            "1",
            "-1",
            "0",
            "-0",
            "3030.93",
            "-0.0259",
            "1e3",
            "2.5E-2",
            "null",
            "01",
            "1.",
            "-",
            "\"1\"",
            "true",
            "1e39",
            "123456789012345678901",
            "0.1234567890123456789",
            "[1]",
        ];
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let mut rand = |n: usize| (next() % n as u64) as usize;
        let (mut fast, mut total) = (0, 0);
        for _ in 0..4_000 {
            let mut members = vec!["\"id\":\"W\"".to_string()];
            for name in &names {
                match rand(40) {
                    0 => continue,                                 // a sensor left out
                    1 => members.push("\"other\":2".to_string()),  // an unknown key
                    2 => members.push(format!("\"{name}\" : 1 ")), // whitespace
                    _ => {}
                }
                // Mostly plain numbers, as the bus writes them.
                let v = if rand(300) == 0 {
                    values[rand(values.len())]
                } else {
                    values[rand(6)]
                };
                members.push(format!("\"{name}\":{v}"));
            }
            if rand(4) == 0 {
                let k = rand(members.len());
                members.swap(0, k); // the id elsewhere
            }
            let mut text = format!("{{{}}}", members.join(",")).into_bytes();
            match rand(6) {
                0 => {
                    let at = rand(text.len());
                    text[at] = b"\",} x\xff:"[rand(7)];
                }
                1 => text.truncate(rand(text.len())),
                _ => {}
            }
            total += 1;
            if let Some(d) = super::decode(&text, &s, MAX_ROWS) {
                fast += 1;
                let full = super::super::decode_full(&text, &s);
                assert!(
                    same(&d, &full),
                    "{}\nfast: {d:?}\nfull: {full:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        assert!(
            fast > total / 4,
            "only {fast} of {total} rows took the fast path"
        );
    }

    #[test]
    fn numbers_read_to_the_same_bits_as_serde_json() {
        let s = schema();
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d_u64);
        for _ in 0..30_000 {
            let bits = next();
            let x = f64::from_bits(bits >> 2 | 0x3000_0000_0000_0000)
                * [1.0, 1e-9, 1e9, -3.0][(bits % 4) as usize];
            let digits = (next() % 20) as usize;
            let texts = [
                format!("{x}"),
                format!("{x:e}"),
                format!("{x:.digits$}"),
                format!("{}", x as f32),
                format!("{}", next() % 100_000_000_000),
                format!("{}e{}", next() % 10_000_000, (next() % 60) as i64 - 30),
            ];
            let msg = format!(
                r#"{{"id":"W","values":[{},{},{}]}}"#,
                texts[0], texts[2], texts[5]
            );
            let msg2 = format!(
                r#"{{"id":"W","values":[{},{},{}]}}"#,
                texts[1], texts[3], texts[4]
            );
            for m in [msg, msg2] {
                let full = super::super::decode_full(m.as_bytes(), &s);
                match decode(&m, &s) {
                    Some(d) => assert!(same(&d, &full), "{m}\nfast: {d:?}\nfull: {full:?}"),
                    None => assert!(
                        !full.rejects.is_empty(),
                        "the fast path left a good row: {m}"
                    ),
                }
            }
        }
    }

    #[test]
    fn floats_are_the_nearest_f64_as_the_standard_library_reads_them() {
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..200_000 {
            let m = next() % [10, 1_000, 1_000_000, 1 << 53, u64::MAX][(next() % 5) as usize];
            let e = (next() % 70) as i64 - 35;
            let frac = (next() % 12) as usize;
            let texts = [
                format!("{m}e{e}"),
                format!("-{m}E{e}"),
                format!("{}", m as f64 / 10f64.powi(frac as i32)),
                format!("{:.frac$}", m as f64 * 1e-7),
            ];
            for t in texts {
                let mut sc = Scanner {
                    b: t.as_bytes(),
                    p: 0,
                };
                let want: f64 = t.parse().unwrap();
                let got = sc.float().unwrap();
                assert_eq!(got.to_bits(), want.to_bits(), "{t}");
                assert_eq!(sc.p, t.len(), "{t}");
            }
        }
    }
}
