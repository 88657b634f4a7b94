//! The header: read it, and plan where each column goes (id, label, a feature, or unused).

use super::{CsvError, CsvOptions, LABEL_COLUMN};
use crate::Schema;
use std::io::{BufRead, Read};

/// Where each CSV column goes.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// Column of the row id.
    pub(super) id: usize,
    /// Column of the label, if any.
    pub(super) label: Option<usize>,
    /// (column, feature position) for every feature column.
    pub(super) features: Vec<(usize, usize)>,
    /// What each column holds, in column order.
    pub(super) roles: Vec<Role>,
    /// Header names, for error messages.
    pub(super) names: Vec<String>,
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Role {
    Id,
    Label,
    /// The feature at this position.
    Feature(usize),
    /// A column the model does not use (allowed by the options).
    Extra,
}

/// Longest header line accepted; a header past this is not a wafer CSV.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Where a CSV record stands after some of its bytes: quotes count only at a field's start (as
/// the csv crate reads them), so a name such as `Gap 5"` does not open one.
#[derive(Default)]
struct Quoting {
    /// Inside a quoted field.
    quoted: bool,
    /// At the start of a field.
    field_start: bool,
    /// Just after a quote inside a quoted field (the end of it, or the first of a doubled one).
    quote_seen: bool,
}

impl Quoting {
    fn new() -> Quoting {
        Quoting {
            field_start: true,
            ..Quoting::default()
        }
    }

    /// Reads `line` (ending with its newline); true when the record ends with it.
    fn ends_record(&mut self, line: &[u8]) -> bool {
        for &b in line {
            if self.quoted {
                if self.quote_seen {
                    self.quote_seen = false;
                    if b != b'"' {
                        // The closing quote: back to an unquoted field.
                        self.quoted = false;
                    } else {
                        continue;
                    }
                } else {
                    if b == b'"' {
                        self.quote_seen = true;
                    }
                    continue;
                }
            }
            match b {
                b'"' if self.field_start => {
                    self.quoted = true;
                    self.field_start = false;
                }
                b',' => self.field_start = true,
                b'\n' => return true,
                _ => self.field_start = false,
            }
        }
        // A quote at the very end of the text closes its field.
        self.quoted && self.quote_seen
    }
}

/// Reads the header record (honouring quotes) and returns its names and how many lines it took.
pub(super) fn read_header<R: BufRead>(input: &mut R) -> Result<(Vec<String>, usize), CsvError> {
    let mut raw = Vec::new();
    let mut lines = 0;
    let mut quoting = Quoting::new();
    loop {
        // `raw` never exceeds the limit here, so at least one more byte may be read.
        let room = (MAX_HEADER_BYTES + 1 - raw.len()) as u64;
        let start = raw.len();
        let n = input.by_ref().take(room).read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        lines += 1;
        // A carriage return followed by more text, and no newline: lines that end with CR alone
        // (as old Mac files do), which this reader does not split.
        let line = &raw[start..];
        if !line.ends_with(b"\n") && line.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') {
            return Err(CsvError::Syntax(
                "the file's lines end with a carriage return alone (CR, as old Mac files do); \
                 save it with LF or CRLF line ends"
                    .into(),
            ));
        }
        if raw.len() > MAX_HEADER_BYTES {
            return Err(CsvError::Syntax(format!(
                "the header line is longer than {MAX_HEADER_BYTES} bytes"
            )));
        }
        // A newline inside a quoted name: the record goes on. (A byte-order mark before the
        // first name is not part of it: a quote after it opens that name.)
        let line = &raw[start..];
        let line = if start == 0 {
            line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line)
        } else {
            line
        };
        // Blank lines before the header are skipped, as blank lines between rows are (they
        // still count as lines, so a row's line number stays the file's).
        if start == 0 && raw.ends_with(b"\n") && line.iter().all(|&b| b == b'\r' || b == b'\n') {
            raw.clear();
            continue;
        }
        if quoting.ends_record(line) || !raw.ends_with(b"\n") {
            break;
        }
    }
    let text = std::str::from_utf8(&raw)
        .map_err(|_| CsvError::Syntax("the header is not valid UTF-8".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.trim_end_matches(['\r', '\n']);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let names = match reader.records().next() {
        Some(Ok(rec)) => rec.iter().map(|s| s.trim().to_string()).collect(),
        Some(Err(e)) => {
            return Err(CsvError::Syntax(format!(
                "the header cannot be parsed: {e}"
            )))
        }
        None => vec![],
    };
    Ok((names, lines))
}

/// Maps header names to id, label and feature columns, or says what is wrong with them.
pub(super) fn plan(
    names: &[String],
    schema: &Schema,
    options: CsvOptions,
) -> Result<Plan, CsvError> {
    let mut seen = std::collections::HashMap::new();
    let mut dups = Vec::new();
    for n in names.iter().filter(|n| !n.is_empty()) {
        let count = seen.entry(n.as_str()).or_insert(0);
        *count += 1;
        if *count == 2 {
            dups.push(n.clone());
        }
    }
    if !dups.is_empty() {
        return Err(CsvError::DuplicateColumns(dups));
    }
    if let [only] = names {
        if schema.width() > 1 {
            if let Some(c) = [';', '\t', '|'].into_iter().find(|c| only.contains(*c)) {
                return Err(CsvError::WrongSeparator(c));
            }
        }
    }
    let is_id_name = |n: &str| n.eq_ignore_ascii_case("wafer") || n.eq_ignore_ascii_case("id");
    let id = match names.iter().position(|n| is_id_name(n)) {
        Some(i) => i,
        None if schema.position(&names[0]).is_none() && names[0] != LABEL_COLUMN => 0,
        None => return Err(CsvError::NoIdColumn),
    };
    let blanks: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(i, n)| n.is_empty() && *i != id)
        .map(|(i, _)| i)
        .collect();
    if blanks.first() == Some(&0) {
        return Err(CsvError::IndexColumn(names[id].clone()));
    }
    if !blanks.is_empty() {
        return Err(CsvError::BlankColumns(blanks));
    }
    let mut label = None;
    let mut features = Vec::new();
    let mut unknown = Vec::new();
    let mut present = vec![false; schema.width()];
    for (c, n) in names.iter().enumerate() {
        if c == id {
            continue;
        }
        if n == LABEL_COLUMN {
            label = Some(c);
        } else if let Some(f) = schema.position(n) {
            features.push((c, f));
            present[f] = true;
        } else {
            unknown.push(n.clone());
        }
    }
    let missing: Vec<String> = schema
        .features()
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(f, _)| f.clone())
        .collect();
    if !missing.is_empty() {
        return Err(CsvError::MissingColumns(missing));
    }
    if !unknown.is_empty() && !options.allow_extra_columns {
        return Err(CsvError::UnknownColumns(unknown));
    }
    let mut roles = vec![Role::Extra; names.len()];
    roles[id] = Role::Id;
    if let Some(l) = label {
        roles[l] = Role::Label;
    }
    for &(c, f) in &features {
        roles[c] = Role::Feature(f);
    }
    Ok(Plan {
        id,
        label,
        features,
        roles,
        names: names.to_vec(),
    })
}
