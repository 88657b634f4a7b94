//! The wafer CSV schema, streamed in batches straight from the bytes into the feature matrix.
//!
//! Columns are matched by **name**, in any order. The id column is the one named `Wafer` or `id`, or
//! else the first column when it is not a sensor (the dataset's files leave its header blank). An
//! optional `Good/Bad` column is carried through and never scored. Every other column must be a
//! model feature; unknown columns are an error unless the caller allows them.
//!
//! The header line is read first, to plan where each column goes. The data records are split by
//! csv-core (the splitter the csv crate and arrow-csv use: RFC 4180 quoting, CRLF or LF, blank
//! lines skipped), and every cell is parsed by [`super::parse_cell`] from the split text into its
//! feature's place in the batch, so that an error can name the line, the column and the value.
//! Memory is bounded by the batch (rows and bytes), never by the file.

mod decode;
mod plan;

use super::{summarize_names, RowBatch, Schema};
use decode::{Record, Records, RowRef, PARALLEL_ROWS};
use plan::{plan, read_header, Plan};
use std::io::{BufRead, BufReader, Read};

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
    /// A first column without a name beside an id column found by name: a pandas index.
    #[error("the first column has no name, and the wafer ids are in the column named {0:?}: remove the first column (an index pandas wrote; save with index=False)")]
    IndexColumn(String),
    /// Blank header cells beyond the id column.
    #[error("header cells {} are blank; only the first (wafer id) column may have a blank name", list_positions(.0))]
    BlankColumns(Vec<usize>),
    /// Features the model needs are absent.
    #[error("the CSV lacks {} sensor column(s) the model needs: {}", .0.len(), summarize_names(.0))]
    MissingColumns(Vec<String>),
    /// Columns that are not features, id or label.
    #[error(
        "the CSV has {} column(s) the model does not know: {} (remove them, or set [input] allow_extra_columns)",
        .0.len(), summarize_names(.0)
    )]
    UnknownColumns(Vec<String>),
    /// A header of one cell holding another separator: a file saved with `;` or tabs (a
    /// spreadsheet set to a decimal comma writes `;`). Told as such, not as 590 missing columns.
    #[error(
        "the header is one column holding {}: faultline reads comma-separated files; save the file \
         as CSV with commas (a spreadsheet set to a decimal comma writes ';')",
        match .0 { '\t' => "tabs".to_string(), c => format!("'{c}'") }
    )]
    WrongSeparator(char),
    /// No way to tell rows apart.
    #[error("the CSV has no wafer id column: name it 'Wafer' or 'id', or leave the first header cell blank")]
    NoIdColumn,
    /// A row with the wrong number of fields.
    #[error("line {line} has {found} fields but the header has {expected}")]
    Ragged {
        /// 1-based data row (the header is not counted).
        row: usize,
        /// 1-based line in the file.
        line: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in that line.
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
    /// Any other CSV syntax problem: invalid UTF-8, a header or record too long.
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

/// Longest data record accepted, in bytes. A wafer row is about 12 KB; a record past this is not
/// a wafer row (an unclosed quote swallowing the file, say) and would otherwise grow without bound.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// A batch stops growing past this many bytes of cell text, whatever its row count.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// A streaming reader of wafer CSV rows.
pub struct CsvRows<R: Read> {
    /// The data lines (the header has been consumed).
    input: BufReader<R>,
    /// Splits records into fields (quotes, CRLF, blank lines), as arrow-csv and the csv crate do.
    splitter: csv_core::Reader,
    /// Column mapping.
    plan: Plan,
    /// Model schema.
    schema: Schema,
    /// Rows per batch.
    batch_rows: usize,
    /// Data rows returned so far.
    rows_read: usize,
    /// Physical lines the header took.
    header_lines: usize,
    /// Newlines read after the header (blank lines and newlines inside quoted cells included),
    /// so that every error names the file's own line.
    lines: usize,
    /// The file line each record of the batch starts on, in order.
    starts: Vec<usize>,
    /// The records of the batch being read, fields unquoted and laid end to end; the first
    /// `text_len` bytes are in use, the rest is room.
    text: Vec<u8>,
    text_len: usize,
    /// End offset in `text` of each field of those records; the first `ends_len` are in use.
    ends: Vec<usize>,
    ends_len: usize,
    /// The records of the batch, in order.
    records: Vec<Record>,
    /// End of the input reached.
    done: bool,
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
        Ok(CsvRows {
            input,
            splitter: csv_core::Reader::new(),
            plan,
            schema: schema.clone(),
            batch_rows: options.batch_rows.max(1),
            rows_read: 0,
            header_lines,
            lines: 0,
            starts: Vec::new(),
            text: vec![0; 1 << 16],
            text_len: 0,
            ends: vec![0; 1 << 12],
            ends_len: 0,
            records: Vec::new(),
            done: false,
        })
    }

    /// Whether the file has a `Good/Bad` column.
    pub fn has_labels(&self) -> bool {
        self.plan.label.is_some()
    }

    /// The next batch of rows, `None` at the end. A file with a header but no rows is an error.
    pub fn next_batch(&mut self) -> Result<Option<RowBatch>, CsvError> {
        let mut batch = RowBatch::new(self.schema.width());
        Ok((self.read_into(&mut batch)? > 0).then_some(batch))
    }

    /// Appends the next batch of up to `batch_rows` rows to `out` and returns how many; 0 at the
    /// end. A file with a header but no rows is an error. On an error `out` is left as it was.
    ///
    /// The fields of the batch's records are split into one buffer, then each cell is parsed
    /// from it straight into `out`'s matrix at its feature's position: no per-column strings, no
    /// copies of the text, and no batch of its own to copy (a caller that clears and reuses one
    /// `out` allocates nothing per batch). A large batch is parsed on two threads, each a
    /// contiguous run of rows, so rows come out in input order and the first bad cell is
    /// reported.
    pub fn read_into(&mut self, out: &mut RowBatch) -> Result<usize, CsvError> {
        self.text_len = 0;
        self.ends_len = 0;
        self.records.clear();
        self.starts.clear();
        let mut rows = 0;
        while rows < self.batch_rows && self.text_len < MAX_BATCH_BYTES && self.read_record()? {
            rows += 1;
        }
        if rows == 0 {
            return if self.rows_read == 0 {
                Err(CsvError::NoRows)
            } else {
                Ok(0)
            };
        }
        let records = Records {
            text: &self.text[..self.text_len],
            ends: &self.ends[..self.ends_len],
            records: &self.records,
            lines: &self.starts,
        };
        let first = RowRef {
            plan: &self.plan,
            first_row: self.rows_read + 1,
        };
        let width = self.schema.width();
        debug_assert_eq!(out.width, width);
        let before = out.len();
        out.values.resize((before + rows) * width, f32::NAN);
        let RowBatch {
            ids,
            values,
            labels,
            ..
        } = out;
        let values = &mut values[before * width..];
        let result = if rows >= PARALLEL_ROWS && self.plan.features.len() >= 64 {
            let half = rows / 2;
            let (front, back) = values.split_at_mut(half * width);
            let (mut back_ids, mut back_labels) = (Vec::new(), Vec::new());
            let (a, b) = std::thread::scope(|s| {
                let b = s.spawn(|| {
                    first.decode(&records, half..rows, back, &mut back_ids, &mut back_labels)
                });
                let a = first.decode(&records, 0..half, front, ids, labels);
                (a, b.join())
            });
            // A panic in the helper thread is a bug; surface it as one.
            a.and_then(|()| b.unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .map(|()| {
                    ids.append(&mut back_ids);
                    labels.append(&mut back_labels);
                })
        } else {
            first.decode(&records, 0..rows, values, ids, labels)
        };
        if let Err(e) = result {
            out.ids.truncate(before);
            out.labels.truncate(before);
            out.values.truncate(before * width);
            return Err(e);
        }
        self.rows_read += rows;
        Ok(rows)
    }

    /// Reads every remaining row into one batch (for inputs already bounded in size).
    pub fn read_all(mut self) -> Result<RowBatch, CsvError> {
        let mut all = RowBatch::new(self.schema.width());
        while self.read_into(&mut all)? > 0 {}
        Ok(all)
    }

    /// Appends the next record to `text` and `records`; false at the end of the input.
    ///
    /// A record that is one whole line in the read buffer, with no quote and no carriage return
    /// inside it, is copied as it is, to be split while its cells are parsed. Any other record
    /// (quoted fields, a line across the buffer's end, the last line without a newline) is split
    /// by csv-core's state machine, byte by byte, into unquoted fields.
    fn read_record(&mut self) -> Result<bool, CsvError> {
        if self.done {
            return Ok(false);
        }
        loop {
            let buf = self.input.fill_buf()?;
            let Some(nl) = memchr::memchr(b'\n', buf) else {
                break;
            };
            let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
            if line.is_empty() {
                self.input.consume(nl + 1); // a blank line, which csv-core skips too
                self.lines += 1;
                continue;
            }
            if memchr::memchr2(b'"', b'\r', line).is_some() {
                break;
            }
            let need = self.text_len + line.len();
            if self.text.len() < need {
                self.text.resize(need.max(self.text.len() * 2), 0);
            }
            let base = self.text_len;
            self.text[base..need].copy_from_slice(line);
            self.text_len = need;
            self.records.push(Record::Line {
                start: base,
                end: need,
            });
            self.starts.push(self.header_lines + self.lines + 1);
            self.lines += 1;
            self.input.consume(nl + 1);
            return Ok(true);
        }
        self.read_record_core()
    }

    /// [`Self::read_record`] by csv-core.
    fn read_record_core(&mut self) -> Result<bool, CsvError> {
        let (record_start, first_end) = (self.text_len, self.ends_len);
        // The record's line: the newlines read before its first byte (blank lines csv-core
        // skips, the rest of a CRLF) count.
        let mut start: Option<usize> = None;
        let mut before = self.lines;
        loop {
            let input = self.input.fill_buf()?;
            let at_end = input.is_empty();
            let (result, read, wrote, ended) = self.splitter.read_record(
                input,
                &mut self.text[self.text_len..],
                &mut self.ends[self.ends_len..],
            );
            let consumed = &input[..read];
            if start.is_none() {
                for &b in consumed {
                    match b {
                        b'\n' => before += 1,
                        b'\r' => {}
                        _ => {
                            start = Some(self.header_lines + before + 1);
                            break;
                        }
                    }
                }
            }
            self.lines += memchr::memchr_iter(b'\n', consumed).count();
            self.input.consume(read);
            self.text_len += wrote;
            self.ends_len += ended;
            if self.text_len - record_start > MAX_RECORD_BYTES {
                return Err(CsvError::Syntax(format!(
                    "line {} is longer than {MAX_RECORD_BYTES} bytes (a quote that is never closed?)",
                    start.unwrap_or(self.header_lines + before + 1)
                )));
            }
            match result {
                csv_core::ReadRecordResult::Record => {
                    // csv_core counts field ends from the record's start; each field starts
                    // where the one before it ended.
                    for e in &mut self.ends[first_end..self.ends_len] {
                        *e += record_start;
                    }
                    self.records.push(Record::Fields {
                        first: first_end,
                        count: self.ends_len - first_end,
                        start: record_start,
                    });
                    self.starts
                        .push(start.unwrap_or(self.header_lines + before + 1));
                    return Ok(true);
                }
                csv_core::ReadRecordResult::End => {
                    self.done = true;
                    return Ok(false);
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let grown = self.text.len() * 2;
                    self.text.resize(grown, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                csv_core::ReadRecordResult::InputEmpty if at_end => {
                    // Told the input ended, csv_core must finish the record: never spin.
                    self.done = true;
                    return Ok(false);
                }
                csv_core::ReadRecordResult::InputEmpty => {}
            }
        }
    }
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
        // Blank lines before the header are skipped, as between rows; the lines keep their
        // numbers.
        let d = read("\n\r\n,Sensor-1,Sensor-2,Sensor-3\nW,1,2,3\n").unwrap();
        assert_eq!(d.ids, ["W"]);
        let bad = read("\n,Sensor-1,Sensor-2,Sensor-3\nW,1,x,3\n").unwrap_err();
        assert!(bad.to_string().contains("line 3"), "{bad}");
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
            "the CSV has 1 column(s) the model does not know: Extra (remove them, or set [input] allow_extra_columns)"
        );
        assert!(
            matches!(read(",Sensor-1,Sensor-1,Sensor-2,Sensor-3\n"), Err(CsvError::DuplicateColumns(d)) if d == ["Sensor-1"])
        );
        assert!(
            matches!(read(",Sensor-1,,Sensor-2,Sensor-3\n"), Err(CsvError::BlankColumns(b)) if b == [2])
        );
        // pandas' to_csv with its index: a blank first column beside the named id column.
        assert!(
            matches!(read(",Wafer,Sensor-1,Sensor-2,Sensor-3\n0,W,1,2,3\n"), Err(CsvError::IndexColumn(n)) if n == "Wafer")
        );
        assert!(matches!(
            read("Sensor-1,Sensor-2,Sensor-3\n1,2,3\n"),
            Err(CsvError::NoIdColumn)
        ));
        // Another separator: one header cell, told as such rather than as missing columns.
        assert_eq!(
            read(";Sensor-1;Sensor-2;Sensor-3\nW;1,5;2;3\n")
                .unwrap_err()
                .to_string(),
            "the header is one column holding ';': faultline reads comma-separated files; save the \
             file as CSV with commas (a spreadsheet set to a decimal comma writes ';')"
        );
        assert!(matches!(
            read("\tSensor-1\tSensor-2\tSensor-3\nW\t1\t2\t3\n"),
            Err(CsvError::WrongSeparator('\t'))
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
        // A quote inside a name (not at its start) opens nothing: every row after it is read.
        let b = CsvRows::new(
            ",Sensor-1,Sensor-2,Sensor-3,Gap 5\"\nW-1,1,2,3,x\nW-2,4,5,6,y\nW-3,7,8,9,\"z\"\n"
                .as_bytes(),
            &schema(),
            opts,
        )
        .unwrap()
        .read_all()
        .unwrap();
        assert_eq!(b.ids, ["W-1", "W-2", "W-3"]);
        assert_eq!(b.row(2), &[7.0, 8.0, 9.0]);
    }

    #[test]
    fn a_header_spans_lines_only_inside_quotes() {
        // The quoted name holds a newline: the header is read whole (two lines, four names), and
        // that name is no sensor of the model.
        let e = read("\"\",\"Sensor\n-1\",Sensor-2,Sensor-3\nW,1,2,3\n").unwrap_err();
        assert!(e.to_string().ends_with("needs: Sensor-1"), "{e}");
        // After a byte-order mark (Excel's "CSV UTF-8"), a quote still opens the first name.
        let b = read("\u{feff}\"id\nx\",Sensor-1,Sensor-2,Sensor-3\nW,1,2,3\n").unwrap();
        assert_eq!(b.ids, ["W"]);
        assert_eq!(b.row(0), &[1.0, 2.0, 3.0]);
        // A doubled quote inside a quoted name is a quote in the name.
        let e = read("\"\",\"Sensor-1\",\"Sensor-2\"\"\",Sensor-3\nW,1,2,3\n").unwrap_err();
        assert!(e.to_string().ends_with("needs: Sensor-2"), "{e}");
    }

    #[test]
    fn an_id_longer_than_every_reader_takes_is_refused_and_clipped() {
        let longest = "w".repeat(crate::MAX_ID_BYTES);
        let b = read(&format!(",Sensor-1,Sensor-2,Sensor-3\n{longest},1,2,3\n")).unwrap();
        assert_eq!(b.ids, std::slice::from_ref(&longest));
        let e = read(&format!(",Sensor-1,Sensor-2,Sensor-3\n{longest}w,1,2,3\n")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!("longer than {} bytes", crate::MAX_ID_BYTES)),
            "{text}"
        );
        // The message carries the start of the id, not all of it.
        assert!(text.len() < 400, "{text}");
    }

    #[test]
    fn errors_name_the_files_own_line_past_blank_lines_and_quoted_newlines() {
        let line = |text: &str| match read(text).unwrap_err() {
            CsvError::BadCell { line, row, .. } => (line, row),
            e => panic!("{e}"),
        };
        // Header 1, blank 2, W-1 3, "W\n2" 4-5, W-3 6.
        assert_eq!(
            line(",Sensor-1,Sensor-2,Sensor-3\n\nW-1,1,2,3\n\"W\n2\",1,2,3\nW-3,abc,2,3\n"),
            (6, 3)
        );
        // The same with CRLF, blank lines read by either splitter.
        assert_eq!(
            line(",Sensor-1,Sensor-2,Sensor-3\r\n\r\nW-1,1,2,3\r\n\r\nW-2,abc,2,3\r\n"),
            (5, 2)
        );
        // A bad row right after a quoted one, and a record that spans lines itself.
        assert_eq!(
            line(",Sensor-1,Sensor-2,Sensor-3\n\"W\n1\",1,2,3\n\n\"W\n2\",x,2,3\n"),
            (5, 2)
        );
    }

    #[test]
    fn lines_ended_by_a_carriage_return_alone_are_named() {
        let e = read(",Sensor-1,Sensor-2,Sensor-3\rW-1,1,2,3\rW-2,4,5,6\r").unwrap_err();
        assert!(e.to_string().contains("carriage return alone"), "{e}");
        // CRLF is fine.
        let b = read(",Sensor-1,Sensor-2,Sensor-3\r\nW-1,1,2,3\r\n").unwrap();
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

    #[test]
    fn quotes_crlf_and_blank_lines_are_read_as_rfc_4180_says() {
        let b = read(
            "\"\",\"Sensor-1\",Sensor-2,Sensor-3\r\n\r\n\"W,1\",\" 1.5\",\"2\"\"\",3\r\n\n\"W\n2\",,NA,\"\"\r\n",
        );
        // `2"` is not a number: the quote is unescaped before the cell is judged.
        let e = b.unwrap_err();
        assert_eq!(
            e.cell().map(|(r, c, v, _)| (r, c, v)),
            Some((1, "Sensor-2", "2\""))
        );
        let b = read("\"\",Sensor-1,Sensor-2,Sensor-3\r\n\r\n\"W,1\",\" 1.5\",2,3\r\n\n\"W\n2\",,NA,\"\"\r\n")
            .unwrap();
        assert_eq!(b.ids, ["W,1", "W\n2"]);
        assert_eq!(b.row(0), &[1.5, 2.0, 3.0]);
        assert!(b.row(1).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn invalid_utf8_names_its_line() {
        let mut bytes = b",Sensor-1,Sensor-2,Sensor-3\nW-1,1,2,3\nW-2,1,".to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(b",3\n");
        let e = CsvRows::new(&bytes[..], &schema(), CsvOptions::default())
            .unwrap()
            .read_all()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CSV cannot be parsed: line 3 is not valid UTF-8"
        );
    }

    #[test]
    fn a_ragged_line_after_a_quoted_field_is_counted_exactly() {
        let e = read(",Sensor-1,Sensor-2,Sensor-3\nW-1,1,2,3\nW-2,\"1,2\",3,4,5\n").unwrap_err();
        assert_eq!(e.to_string(), "line 3 has 5 fields but the header has 4");
    }

    #[test]
    fn a_record_that_never_ends_is_refused_not_buffered() {
        let mut text = String::from(",Sensor-1,Sensor-2,Sensor-3\nW-1,\"");
        text.push_str(&"x".repeat(MAX_RECORD_BYTES + 10));
        let e = read(&text).unwrap_err();
        assert!(e.to_string().contains("line 2 is longer than"), "{e}");
    }

    /// A schema wide enough for a large batch to be parsed on two threads.
    fn wide() -> (Schema, Vec<String>) {
        let names: Vec<String> = (1..=100).map(|i| format!("Sensor-{i}")).collect();
        (Schema::new(&names), names)
    }

    /// The same text read by the csv crate, cell by cell, as the reference.
    fn reference(text: &str, schema: &Schema) -> RowBatch {
        let mut r = ::csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let mut out = RowBatch::new(schema.width());
        for rec in r.records() {
            let rec = rec.unwrap();
            let mut row = vec![f32::NAN; schema.width()];
            for (c, name) in header.iter().enumerate().skip(1) {
                // The standard library's parser, not parse_cell's fast path.
                let cell = rec[c].trim();
                row[schema.position(name).unwrap()] = match cell {
                    "" | "NA" => f32::NAN,
                    _ => cell.parse::<f64>().unwrap() as f32,
                };
            }
            out.push(rec[0].to_string(), &row, None);
        }
        out
    }

    #[test]
    fn a_batch_that_fails_leaves_the_rows_read_before_it_untouched() {
        let (schema, names) = wide();
        let mut text = format!(",{}\n", names.join(","));
        let row = |id: usize, v: &str| format!("W-{id},{}\n", vec![v; names.len()].join(","));
        for i in 0..600 {
            text.push_str(&row(i, "1.5"));
        }
        // The second batch (on two threads) fails in its second half, then in its first.
        for (i, bad) in [(900, "x"), (700, "y")] {
            let mut t = text.clone();
            for j in 600..1200 {
                t.push_str(&row(j, if j == i { bad } else { "2" }));
            }
            let options = CsvOptions {
                batch_rows: 600,
                ..CsvOptions::default()
            };
            let mut rows = CsvRows::new(t.as_bytes(), &schema, options).unwrap();
            let mut out = RowBatch::new(schema.width());
            assert_eq!(rows.read_into(&mut out).unwrap(), 600);
            let before = out.clone();
            let e = rows.read_into(&mut out).unwrap_err();
            assert!(e.to_string().contains(&format!("W-{i}")), "{e}");
            assert_eq!(out, before);
        }
        // A cleared batch is refilled from its start.
        let mut rows = CsvRows::new(text.as_bytes(), &schema, CsvOptions::default()).unwrap();
        let mut out = RowBatch::new(schema.width());
        rows.read_into(&mut out).unwrap();
        out.clear();
        assert_eq!(rows.read_into(&mut out).unwrap(), 0);
        assert!(out.is_empty());
    }

    #[test]
    fn large_batches_on_two_threads_match_the_csv_crate_bit_for_bit() {
        let (schema, names) = wide();
        // Columns in reverse model order, so every cell lands away from its column position.
        let mut text = format!(
            ",{}\n",
            names.iter().rev().cloned().collect::<Vec<_>>().join(",")
        );
        let mut state = 0x2545_f491_u64;
        for r in 0..1500 {
            text.push_str(&format!("W-{r}"));
            for _ in 0..names.len() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let cell = match state % 7 {
                    0 => String::new(),
                    1 => "NA".into(),
                    2 => format!("{}", (state >> 11) as f64 / 3.0e6),
                    3 => format!("-{}e-3", state % 100_000),
                    4 => format!("\"{}\"", state % 1000),
                    _ => format!("{}.{}", state % 10_000, state % 997),
                };
                text.push(',');
                text.push_str(&cell);
            }
            text.push('\n');
        }
        let want = reference(&text, &schema);
        for batch_rows in [1, 7, 256, 1024, 5000] {
            let got = CsvRows::new(
                text.as_bytes(),
                &schema,
                CsvOptions {
                    batch_rows,
                    ..CsvOptions::default()
                },
            )
            .unwrap()
            .read_all()
            .unwrap();
            assert_eq!(got.ids, want.ids, "batch {batch_rows}");
            let bits = |b: &RowBatch| b.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want), "batch {batch_rows}");
        }
    }

    #[test]
    fn with_two_threads_the_first_bad_cell_in_the_file_is_the_one_reported() {
        let (schema, names) = wide();
        let mut text = format!(",{}\n", names.join(","));
        for r in 0..600 {
            let bad = r == 100 || r == 500;
            let cells: Vec<String> = (0..names.len())
                .map(|c| {
                    if bad && c == 3 {
                        format!("x{r}")
                    } else {
                        "1".into()
                    }
                })
                .collect();
            text.push_str(&format!("W-{r},{}\n", cells.join(",")));
        }
        let e = CsvRows::new(
            text.as_bytes(),
            &schema,
            CsvOptions {
                batch_rows: 600,
                ..CsvOptions::default()
            },
        )
        .unwrap()
        .read_all()
        .unwrap_err();
        assert_eq!(
            e.cell().map(|(r, c, v, _)| (r, c, v)),
            Some((101, "Sensor-4", "x100"))
        );
    }

    #[test]
    fn errors_in_a_row_come_id_first_then_label_then_the_first_bad_sensor() {
        // The bad sensor comes before the id column, and the message still names the id.
        let e = read("Sensor-1,Sensor-2,Wafer,Sensor-3\nx,y,W-7,3\n").unwrap_err();
        assert_eq!(
            e.cell().map(|(r, c, v, _)| (r, c, v)),
            Some((1, "Sensor-1", "x"))
        );
        assert!(
            e.to_string().starts_with("line 2 (W-7), column Sensor-1"),
            "{e}"
        );
        let e = read("Sensor-1,Sensor-2,Wafer,Sensor-3,Good/Bad\nx,1,W-7,3,2\n").unwrap_err();
        assert_eq!(
            e.cell().map(|(_, c, v, _)| (c, v)),
            Some((LABEL_COLUMN, "2"))
        );
        let e = read("Sensor-1,Sensor-2,Wafer,Sensor-3,Good/Bad\nx,1, ,3,2\n").unwrap_err();
        assert!(e.to_string().contains("every row needs a wafer id"), "{e}");
        // Too many fields on a plain line, counted exactly.
        let e = read(",Sensor-1,Sensor-2,Sensor-3\nW,1,2,3,4,5\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2 has 6 fields but the header has 4");
        // Invalid UTF-8 in a column the model does not use is still refused.
        let mut bytes = b",Sensor-1,Sensor-2,Sensor-3,Note\nW,1,2,3,".to_vec();
        bytes.extend_from_slice(&[0xc3, 0x28, b'\n']);
        let opts = CsvOptions {
            allow_extra_columns: true,
            ..CsvOptions::default()
        };
        let e = CsvRows::new(&bytes[..], &schema(), opts)
            .unwrap()
            .read_all()
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the CSV cannot be parsed: line 2 is not valid UTF-8"
        );
    }
}
