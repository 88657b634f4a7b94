//! The wafer CSV schema, streamed in batches via arrow-csv.
//!
//! Columns are matched by **name**, in any order. The id column is the one named `Wafer` or `id`, or
//! else the first column when it is not a sensor (the dataset's files leave its header blank). An
//! optional `Good/Bad` column is carried through and never scored. Every other column must be a
//! model feature; unknown columns are an error unless the caller allows them.
//!
//! The header line is read here (arrow needs to know the column count first); the rest of the
//! stream goes to arrow-csv as all-text columns, and every cell is parsed by [`super::parse_cell`]
//! so that an error can name the line, the column and the value. Memory is bounded by the batch
//! size, never by the file.

use super::{parse_cell, parse_label, summarize_names, RowBatch, Schema};
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{ArrowError, DataType, Field};
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

/// The label column's name in the wafer schema.
pub const LABEL_COLUMN: &str = "Good/Bad";

/// How strictly to read a CSV.
#[derive(Debug, Clone, Copy)]
pub struct CsvOptions {
    /// Ignore columns that are not model features instead of refusing the file.
    pub allow_extra_columns: bool,
    /// Rows per decoded batch (bounds memory).
    pub batch_rows: usize,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            allow_extra_columns: false,
            batch_rows: 1024,
        }
    }
}

/// Why a CSV cannot be scored. Messages are sentences a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// Nothing at all.
    #[error("the CSV is empty: expected a header row naming the sensor columns ({first}..{last})")]
    Empty {
        /// First feature name.
        first: String,
        /// Last feature name.
        last: String,
    },
    /// A header and no data.
    #[error("the CSV has a header but no rows")]
    NoRows,
    /// The same name twice.
    #[error("the header names {} more than once", .0.join(", "))]
    DuplicateColumns(Vec<String>),
    /// Blank header cells beyond the id column.
    #[error("header cells {} are blank; only the first (wafer id) column may have a blank name", list_positions(.0))]
    BlankColumns(Vec<usize>),
    /// Features the model needs are absent.
    #[error("the CSV lacks {} sensor column(s) the model needs: {}", .0.len(), summarize_names(.0))]
    MissingColumns(Vec<String>),
    /// Columns that are not features, id or label.
    #[error(
        "the CSV has {} column(s) the model does not know: {} (remove them, or allow extra columns)",
        .0.len(), summarize_names(.0)
    )]
    UnknownColumns(Vec<String>),
    /// No way to tell rows apart.
    #[error("the CSV has no wafer id column: name it 'Wafer' or 'id', or leave the first header cell blank")]
    NoIdColumn,
    /// A row with the wrong number of fields.
    #[error("line {line} has {found} fields but the header has {expected}")]
    Ragged {
        /// 1-based line in the file.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in that line (a lower bound when arrow stops counting).
        found: String,
    },
    /// A cell that is not a usable value.
    #[error("line {line} ({id}), column {column}: '{value}' {reason}")]
    BadCell {
        /// 1-based data row (the header is not counted).
        row: usize,
        /// 1-based line in the file.
        line: usize,
        /// The row's id.
        id: String,
        /// Column name.
        column: String,
        /// The cell as written (truncated to 64 characters).
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Any other CSV syntax problem (bad quoting, invalid UTF-8), as arrow-csv describes it.
    #[error("the CSV cannot be parsed: {0}")]
    Syntax(String),
    /// Reading the input failed.
    #[error("cannot read the CSV: {0}")]
    Io(#[from] std::io::Error),
}

/// 1-based positions, runs compressed: `2, 555..591 (38 cells)`.
fn list_positions(p: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let mut j = i;
        while j + 1 < p.len() && p[j + 1] == p[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}..{}", p[i] + 1, p[j] + 1)
        } else {
            (p[i] + 1).to_string()
        });
        i = j + 1;
    }
    format!(
        "{} ({} cell{})",
        parts.join(", "),
        p.len(),
        if p.len() == 1 { "" } else { "s" }
    )
}

impl CsvError {
    /// Row, column and value of a cell error, for APIs that report them as fields.
    pub fn cell(&self) -> Option<(usize, &str, &str, &'static str)> {
        match self {
            CsvError::BadCell {
                row,
                column,
                value,
                reason,
                ..
            } => Some((*row, column, value, reason)),
            _ => None,
        }
    }
}

/// Where each CSV column goes.
#[derive(Debug, Clone)]
struct Plan {
    /// Column of the row id.
    id: usize,
    /// Column of the label, if any.
    label: Option<usize>,
    /// (column, feature position) for every feature column.
    features: Vec<(usize, usize)>,
    /// Header names, for error messages.
    names: Vec<String>,
}

/// A streaming reader of wafer CSV rows.
pub struct CsvRows<R: Read> {
    /// Decodes the data lines (the header has been consumed).
    batches: arrow_csv::reader::BufReader<BufReader<R>>,
    /// Column mapping.
    plan: Plan,
    /// Model schema.
    schema: Schema,
    /// Data rows returned so far.
    rows_read: usize,
    /// Physical lines the header took (to turn arrow's record numbers into file lines).
    header_lines: usize,
}

impl<R: Read> std::fmt::Debug for CsvRows<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows")
            .field("rows_read", &self.rows_read)
            .finish_non_exhaustive()
    }
}

impl<R: Read> CsvRows<R> {
    /// Reads and checks the header; rows follow from [`CsvRows::next_batch`].
    pub fn new(input: R, schema: &Schema, options: CsvOptions) -> Result<CsvRows<R>, CsvError> {
        let mut input = BufReader::with_capacity(256 * 1024, input);
        let (names, header_lines) = read_header(&mut input)?;
        if names.iter().all(|n| n.is_empty()) {
            let f = schema.features();
            return Err(CsvError::Empty {
                first: f.first().cloned().unwrap_or_default(),
                last: f.last().cloned().unwrap_or_default(),
            });
        }
        let plan = plan(&names, schema, options)?;
        let fields: Vec<Field> = (0..names.len())
            .map(|i| Field::new(format!("c{i}"), DataType::Utf8, true))
            .collect();
        let batches = arrow_csv::ReaderBuilder::new(Arc::new(arrow_schema::Schema::new(fields)))
            .with_header(false)
            .with_batch_size(options.batch_rows.max(1))
            .build_buffered(input)
            .map_err(|e| CsvError::Syntax(e.to_string()))?;
        Ok(CsvRows {
            batches,
            plan,
            schema: schema.clone(),
            rows_read: 0,
            header_lines,
        })
    }

    /// Whether the file has a `Good/Bad` column.
    pub fn has_labels(&self) -> bool {
        self.plan.label.is_some()
    }

    /// The next batch of rows, `None` at the end. A file with a header but no rows is an error.
    pub fn next_batch(&mut self) -> Result<Option<RowBatch>, CsvError> {
        match self.batches.next() {
            None if self.rows_read == 0 => Err(CsvError::NoRows),
            None => Ok(None),
            Some(Err(e)) => Err(self.arrow_error(e)),
            Some(Ok(batch)) => self.decode(&batch).map(Some),
        }
    }

    /// Reads every remaining row into one batch (for inputs already bounded in size).
    pub fn read_all(mut self) -> Result<RowBatch, CsvError> {
        let mut all = RowBatch::new(self.schema.width());
        while let Some(b) = self.next_batch()? {
            all.append(b);
        }
        Ok(all)
    }

    fn arrow_error(&self, e: ArrowError) -> CsvError {
        let text = match &e {
            ArrowError::CsvError(t) => t.clone(),
            other => other.to_string(),
        };
        // "incorrect number of fields for line L, expected E got G" (arrow counts data records from 1).
        if let Some(rest) = text.strip_prefix("incorrect number of fields for line ") {
            let mut parts = rest.splitn(2, ", expected ");
            let line = parts.next().and_then(|l| l.trim().parse::<usize>().ok());
            let tail = parts.next().unwrap_or_default();
            let mut tail = tail.splitn(2, " got ");
            let expected = tail.next().and_then(|e| e.trim().parse::<usize>().ok());
            let found = tail.next().unwrap_or("?").to_string();
            if let (Some(line), Some(expected)) = (line, expected) {
                return CsvError::Ragged {
                    line: line + self.header_lines,
                    expected,
                    found,
                };
            }
        }
        CsvError::Syntax(text)
    }

    fn decode(&mut self, batch: &RecordBatch) -> Result<RowBatch, CsvError> {
        let width = self.schema.width();
        let n = batch.num_rows();
        let col = |i: usize| -> &StringArray {
            batch
                .column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("every column is declared Utf8")
        };
        let mut out = RowBatch::new(width);
        out.ids.reserve(n);
        out.labels.reserve(n);
        out.values.resize(n * width, f32::NAN);
        let ids = col(self.plan.id);
        let labels = self.plan.label.map(col);
        for r in 0..n {
            let row_no = self.rows_read + r + 1;
            let line = row_no + self.header_lines;
            let id = text(ids, r).trim();
            if id.is_empty() {
                return Err(CsvError::BadCell {
                    row: row_no,
                    line,
                    id: "no id".into(),
                    column: display_name(&self.plan.names, self.plan.id),
                    value: String::new(),
                    reason: "is empty: every row needs a wafer id",
                });
            }
            out.ids.push(id.to_string());
            let label = match labels {
                Some(a) => parse_label(text(a, r)).map_err(|_| CsvError::BadCell {
                    row: row_no,
                    line,
                    id: id.to_string(),
                    column: LABEL_COLUMN.into(),
                    value: clip(text(a, r)),
                    reason: "is not a label: use 1 (faulty), -1 (good) or leave it empty",
                })?,
                None => None,
            };
            out.labels.push(label);
        }
        for &(c, f) in &self.plan.features {
            let a = col(c);
            for r in 0..n {
                let cell = text(a, r);
                let v = if cell.is_empty() {
                    f32::NAN
                } else {
                    parse_cell(cell).map_err(|problem| {
                        let row_no = self.rows_read + r + 1;
                        CsvError::BadCell {
                            row: row_no,
                            line: row_no + self.header_lines,
                            id: out.ids[r].clone(),
                            column: self.plan.names[c].clone(),
                            value: clip(cell),
                            reason: problem.reason(),
                        }
                    })?
                };
                out.values[r * width + f] = v;
            }
        }
        self.rows_read += n;
        Ok(out)
    }
}

/// A cell's text; arrow reads an empty field as null.
fn text(a: &StringArray, r: usize) -> &str {
    if a.is_null(r) {
        ""
    } else {
        a.value(r)
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 64 {
        format!("{}…", s.chars().take(64).collect::<String>())
    } else {
        s.to_string()
    }
}

fn display_name(names: &[String], i: usize) -> String {
    if names[i].is_empty() {
        format!("{} (the id column)", i + 1)
    } else {
        names[i].clone()
    }
}

/// Longest header line accepted; a header past this is not a wafer CSV.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Reads the header record (honouring quotes) and returns its names and how many lines it took.
fn read_header<R: BufRead>(input: &mut R) -> Result<(Vec<String>, usize), CsvError> {
    let mut raw = Vec::new();
    let mut lines = 0;
    loop {
        // `raw` never exceeds the limit here, so at least one more byte may be read.
        let room = (MAX_HEADER_BYTES + 1 - raw.len()) as u64;
        let n = input.by_ref().take(room).read_until(b'\n', &mut raw)?;
        if n == 0 {
            break;
        }
        lines += 1;
        if raw.len() > MAX_HEADER_BYTES {
            return Err(CsvError::Syntax(format!(
                "the header line is longer than {MAX_HEADER_BYTES} bytes"
            )));
        }
        // An odd number of quotes means a newline inside a quoted name: the record goes on.
        if raw.iter().filter(|&&b| b == b'"').count() % 2 == 0 {
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
fn plan(names: &[String], schema: &Schema, options: CsvOptions) -> Result<Plan, CsvError> {
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
    Ok(Plan {
        id,
        label,
        features,
        names: names.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(&[
            "Sensor-1".to_string(),
            "Sensor-2".to_string(),
            "Sensor-3".to_string(),
        ])
    }

    fn read(text: &str) -> Result<RowBatch, CsvError> {
        CsvRows::new(text.as_bytes(), &schema(), CsvOptions::default())?.read_all()
    }

    #[test]
    fn columns_are_matched_by_name_in_any_order() {
        let b =
            read(",Sensor-3,Sensor-1,Sensor-2,Good/Bad\nW-1,3,1,2,1\nW-2,,NA,5.5,-1\n").unwrap();
        assert_eq!(b.ids, ["W-1", "W-2"]);
        assert_eq!(b.row(0), &[1.0, 2.0, 3.0]);
        assert!(b.row(1)[0].is_nan() && b.row(1)[2].is_nan());
        assert_eq!(b.row(1)[1], 5.5);
        assert_eq!(b.labels, [Some(1), Some(-1)]);
    }

    #[test]
    fn an_id_column_can_be_named_and_placed_anywhere() {
        let b = read("Sensor-1,Sensor-2,Wafer,Sensor-3\r\n1,2,A,3\r\n").unwrap();
        assert_eq!(b.ids, ["A"]);
        assert_eq!(b.row(0), &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_bad_cell_names_line_row_column_and_value() {
        let e = read(",Sensor-1,Sensor-2,Sensor-3\nW-1,1,2,3\nW-2,1,07-01-2020,3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 3 (W-2), column Sensor-2: '07-01-2020' is not a number (use an empty cell, NA or null for a missing value)"
        );
        assert_eq!(
            e.cell(),
            Some((2, "Sensor-2", "07-01-2020", CellProblemText::NOT_A_NUMBER))
        );
    }

    struct CellProblemText;
    impl CellProblemText {
        const NOT_A_NUMBER: &'static str =
            "is not a number (use an empty cell, NA or null for a missing value)";
    }

    #[test]
    fn structural_problems_have_their_own_errors() {
        assert!(matches!(read(""), Err(CsvError::Empty { .. })));
        assert!(matches!(read("\n\n"), Err(CsvError::Empty { .. })));
        assert!(matches!(
            read(",Sensor-1,Sensor-2,Sensor-3\n"),
            Err(CsvError::NoRows)
        ));
        assert_eq!(
            read(",Sensor-1,Sensor-2\nW,1,2\n").unwrap_err().to_string(),
            "the CSV lacks 1 sensor column(s) the model needs: Sensor-3"
        );
        assert_eq!(
            read(",Sensor-1,Sensor-2,Sensor-3,Extra\nW,1,2,3,4\n").unwrap_err().to_string(),
            "the CSV has 1 column(s) the model does not know: Extra (remove them, or allow extra columns)"
        );
        assert!(
            matches!(read(",Sensor-1,Sensor-1,Sensor-2,Sensor-3\n"), Err(CsvError::DuplicateColumns(d)) if d == ["Sensor-1"])
        );
        assert!(
            matches!(read(",Sensor-1,,Sensor-2,Sensor-3\n"), Err(CsvError::BlankColumns(b)) if b == [2])
        );
        assert!(matches!(
            read("Sensor-1,Sensor-2,Sensor-3\n1,2,3\n"),
            Err(CsvError::NoIdColumn)
        ));
        assert_eq!(
            read(",Sensor-1,Sensor-2,Sensor-3\nW-1,1,2,3\nW-2,1,2\n")
                .unwrap_err()
                .to_string(),
            "line 3 has 3 fields but the header has 4"
        );
        assert!(matches!(
            read(",Sensor-1,Sensor-2,Sensor-3\n,1,2,3\n"),
            Err(CsvError::BadCell { line: 2, .. })
        ));
        assert!(matches!(
            read(",Sensor-1,Sensor-2,Sensor-3,Good/Bad\nW,1,2,3,0\n"),
            Err(CsvError::BadCell { .. })
        ));
    }

    #[test]
    fn extra_columns_can_be_allowed() {
        let opts = CsvOptions {
            allow_extra_columns: true,
            ..CsvOptions::default()
        };
        let b = CsvRows::new(
            ",Sensor-1,Sensor-2,Sensor-3,Note\nW,1,2,3,hi\n".as_bytes(),
            &schema(),
            opts,
        )
        .unwrap()
        .read_all()
        .unwrap();
        assert_eq!(b.row(0), &[1.0, 2.0, 3.0]);
    }

    #[test]
    fn batches_are_bounded_and_line_numbers_continue_across_them() {
        let mut text = String::from(",Sensor-1,Sensor-2,Sensor-3\n");
        for i in 0..10 {
            text.push_str(&format!("W-{i},{i},1,2\n"));
        }
        text.push_str("W-x,1,oops,2\n");
        let opts = CsvOptions {
            batch_rows: 4,
            ..CsvOptions::default()
        };
        let mut rows = CsvRows::new(text.as_bytes(), &schema(), opts).unwrap();
        let mut sizes = vec![];
        let err = loop {
            match rows.next_batch() {
                Ok(Some(b)) => sizes.push(b.len()),
                Ok(None) => panic!("the bad row was not reported"),
                Err(e) => break e,
            }
        };
        assert_eq!(sizes, [4, 4]);
        assert!(
            matches!(
                err,
                CsvError::BadCell {
                    line: 12,
                    row: 11,
                    ..
                }
            ),
            "{err}"
        );
    }
}
