//! One batch of records into rows: each cell parsed straight into its feature's place.

use super::plan::{Plan, Role};
use super::{CsvError, LABEL_COLUMN};
use crate::number::{decimal, short_number};
use crate::{parse_cell, parse_label, CellProblem};

/// Batches at least this long are parsed on two threads.
pub(super) const PARALLEL_ROWS: usize = 256;

/// One record of a batch.
#[derive(Debug, Clone, Copy)]
pub(super) enum Record {
    /// A plain line (no quotes, no carriage return) at `text[start..end]`, split as it is read.
    Line { start: usize, end: usize },
    /// Fields split by csv-core: `count` field ends from `ends[first]`, the text from `start`.
    Fields {
        first: usize,
        count: usize,
        start: usize,
    },
}

/// The records of one batch.
pub(super) struct Records<'a> {
    /// Their text.
    pub(super) text: &'a [u8],
    /// End offset of each csv-core field.
    pub(super) ends: &'a [usize],
    pub(super) records: &'a [Record],
    /// The file line each record starts on.
    pub(super) lines: &'a [usize],
}

impl<'a> Records<'a> {
    /// The fields of record `r`, in order.
    fn fields(&self, r: usize) -> Vec<&'a [u8]> {
        match self.records[r] {
            Record::Line { start, end } => self.text[start..end].split(|&b| b == b',').collect(),
            Record::Fields {
                first,
                count,
                start,
            } => {
                let mut from = start;
                self.ends[first..first + count]
                    .iter()
                    .map(|&end| {
                        let field = &self.text[from..end];
                        from = end;
                        field
                    })
                    .collect()
            }
        }
    }
}

/// What decoding a run of records needs to know, shared by the threads of a batch.
#[derive(Clone, Copy)]
pub(super) struct RowRef<'a> {
    pub(super) plan: &'a Plan,
    /// 1-based data row of the batch's first record.
    pub(super) first_row: usize,
}

/// The first problem met in a row's sensor cells, reported once its id is known.
struct CellFault<'a> {
    column: usize,
    cell: &'a [u8],
    problem: CellProblem,
}

impl RowRef<'_> {
    /// Decodes records `range` of a batch into rows.
    ///
    /// A plain line is split while it is parsed: each feature cell is read as a number where it
    /// starts ([`crate::number::decimal`]), and only a cell that is not a plain number (empty,
    /// `NA`, spaces, an error) is cut out at its comma and judged by [`parse_cell`]. Errors keep
    /// the order they always had within a row: the id, then the label, then the first bad sensor
    /// cell in column order.
    ///
    /// The rows' values go to `values` (`range.len()` rows of `width`, all NaN on entry), their
    /// ids and labels are pushed onto `ids` and `labels`.
    pub(super) fn decode<'t>(
        self,
        records: &Records<'t>,
        range: std::ops::Range<usize>,
        values: &mut [f32],
        ids: &mut Vec<String>,
        labels: &mut Vec<Option<i8>>,
    ) -> Result<(), CsvError> {
        let plan = self.plan;
        let columns = plan.roles.len();
        let text: &'t [u8] = records.text;
        let width = values.len() / range.len().max(1);
        let mut split = Vec::new();
        for (k, r) in range.enumerate() {
            let row_no = self.first_row + r;
            let line_no = records.lines[r];
            let ragged = |found: usize| CsvError::Ragged {
                row: row_no,
                line: line_no,
                expected: columns,
                found: found.to_string(),
            };
            let row = &mut values[k * width..(k + 1) * width];
            let (mut id, mut label): (&'t [u8], Option<&'t [u8]>) = (b"", None);
            let mut fault: Option<CellFault<'t>> = None;
            let mut other = |c: usize, cell: &'t [u8], row: &mut [f32]| {
                match plan.roles[c] {
                    Role::Id => id = cell,
                    Role::Label => label = Some(cell),
                    Role::Feature(f) => {
                        if fault.is_none() && !cell.is_empty() {
                            match std::str::from_utf8(cell).map(parse_cell) {
                                Ok(Ok(v)) => row[f] = v,
                                Ok(Err(problem)) => {
                                    fault = Some(CellFault {
                                        column: c,
                                        cell,
                                        problem,
                                    })
                                }
                                Err(_) => return Err(()),
                            }
                        }
                    }
                    Role::Extra => std::str::from_utf8(cell).map(|_| ()).map_err(|_| ())?,
                }
                Ok(())
            };
            let not_utf8 = || CsvError::Syntax(format!("line {line_no} is not valid UTF-8"));
            match records.records[r] {
                Record::Line { start, end } => {
                    let line = &text[start..end];
                    let mut p = 0;
                    for (c, role) in plan.roles.iter().enumerate() {
                        if c > 0 {
                            if p == line.len() {
                                return Err(ragged(c));
                            }
                            p += 1; // the comma
                        }
                        if let Role::Feature(f) = *role {
                            // A short number is read from a window of the line when 32 bytes
                            // remain in it (lines lie end to end in `text`), else by `decimal`.
                            let short = line.get(p..p + 32).and_then(|w| {
                                let (x, n) = short_number(w.try_into().ok()?)?;
                                Some((x, p + n))
                            });
                            if let Some((x, e)) = short.or_else(|| decimal(line, p)) {
                                let v = x as f32;
                                if (e == line.len() || line[e] == b',') && v.is_finite() {
                                    row[f] = v;
                                    p = e;
                                    continue;
                                }
                            }
                        }
                        let e = memchr::memchr(b',', &line[p..]).map_or(line.len(), |i| p + i);
                        other(c, &line[p..e], row).map_err(|()| not_utf8())?;
                        p = e;
                    }
                    if p != line.len() {
                        let more = line[p..].iter().filter(|&&b| b == b',').count();
                        return Err(ragged(columns + more));
                    }
                }
                Record::Fields { count, .. } => {
                    if count != columns {
                        return Err(ragged(count));
                    }
                    split.clear();
                    split.extend(records.fields(r));
                    for (c, cell) in split.iter().enumerate() {
                        other(c, cell, row).map_err(|()| not_utf8())?;
                    }
                }
            }
            let id = std::str::from_utf8(id).map_err(|_| not_utf8())?.trim();
            if id.is_empty() {
                return Err(CsvError::BadCell {
                    row: row_no,
                    line: line_no,
                    id: "no id".into(),
                    column: display_name(&plan.names, plan.id),
                    value: String::new(),
                    reason: "is empty: every row needs a wafer id",
                });
            }
            if id.len() > crate::MAX_ID_BYTES {
                return Err(CsvError::BadCell {
                    row: row_no,
                    line: line_no,
                    id: clip(id),
                    column: display_name(&plan.names, plan.id),
                    value: clip(id),
                    reason: "is longer than 256 bytes, the most an id may hold",
                });
            }
            let label = match label {
                Some(cell) => {
                    let cell = std::str::from_utf8(cell).map_err(|_| not_utf8())?;
                    parse_label(cell).map_err(|_| CsvError::BadCell {
                        row: row_no,
                        line: line_no,
                        id: id.to_string(),
                        column: LABEL_COLUMN.into(),
                        value: clip(cell),
                        reason: "is not a label: use 1 (faulty), -1 (good) or leave it empty",
                    })?
                }
                None => None,
            };
            if let Some(f) = fault {
                return Err(CsvError::BadCell {
                    row: row_no,
                    line: line_no,
                    id: id.to_string(),
                    column: plan.names[f.column].clone(),
                    value: clip(&String::from_utf8_lossy(f.cell)),
                    reason: f.problem.reason(),
                });
            }
            ids.push(id.to_string());
            labels.push(label);
        }
        Ok(())
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
