//! Spreadsheets in and out: a CSV or XLSX file read as a header and rows of text cells (row
//! numbers as a spreadsheet shows them: the header is row 1), and rows written back as CSV or
//! XLSX.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use rust_xlsxwriter::Workbook;
use serde::Serialize;

use crate::error::{ApiError, ApiResult};

pub const CSV: &str = "text/csv";
pub const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    /// The format a request's Content-Type names.
    pub fn of_content_type(content_type: Option<&str>) -> ApiResult<Format> {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        match essence {
            CSV => Ok(Format::Csv),
            XLSX => Ok(Format::Xlsx),
            _ => Err(ApiError::field(
                "Content-Type",
                format!("send the file as {CSV} or {XLSX}"),
            )),
        }
    }
}

/// One line of an import report: where, what, and why.
#[derive(Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportLine {
    /// The row as a spreadsheet numbers it (the header is row 1).
    pub row: usize,
    /// The column, or empty for the row as a whole.
    pub field: String,
    /// Stable: invalid, missing_column, unknown_column, malformed_row, unknown_area,
    /// outside_areas, duplicate_in_file, duplicate_national_id, duplicate_id.
    pub code: String,
    pub message: String,
    /// For duplicate_national_id: the person who holds the national ID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<String>,
}

impl ReportLine {
    pub fn new(row: usize, field: &str, code: &str, message: impl Into<String>) -> ReportLine {
        ReportLine {
            row,
            field: field.into(),
            code: code.into(),
            message: message.into(),
            existing: None,
        }
    }
}

pub struct Row {
    pub number: usize,
    pub cells: Vec<String>,
}

pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Row>,
}

/// The file as a table, and the rows that could not be read at all.
pub fn read(format: Format, bytes: &[u8]) -> ApiResult<(Table, Vec<ReportLine>)> {
    match format {
        Format::Csv => read_csv(bytes),
        Format::Xlsx => read_xlsx(bytes),
    }
}

fn unreadable(message: String) -> ApiError {
    ApiError::field("file", message)
}

fn read_csv(bytes: &[u8]) -> ApiResult<(Table, Vec<ReportLine>)> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| unreadable(format!("the header row cannot be read: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // The line the record starts on (blank lines are skipped, quoted cells may span lines).
        let line = |position: Option<&csv::Position>| {
            position.map_or(i + 2, |p| usize::try_from(p.line()).unwrap_or(i + 2))
        };
        match record {
            Ok(record) => {
                let number = line(record.position());
                let cells: Vec<String> = record.iter().map(|c| c.trim().to_string()).collect();
                if cells.iter().any(|c| !c.is_empty()) {
                    rows.push(Row { number, cells });
                }
            }
            Err(error) => problems.push(ReportLine::new(
                line(error.position()),
                "",
                "malformed_row",
                match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => format!("has {len} cells, the header {expected_len}"),
                    _ => error.to_string(),
                },
            )),
        }
    }
    Ok((Table { header, rows }, problems))
}

fn cell_text(cell: &Data) -> Result<String, String> {
    Ok(match cell {
        Data::Empty => String::new(),
        Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => {
            text.trim().to_string()
        }
        Data::Int(n) => n.to_string(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(date) => {
            let (y, m, d, ..) = date.to_ymd_hms_milli();
            format!("{y:04}-{m:02}-{d:02}")
        }
        Data::Error(error) => return Err(format!("the cell holds the error {error}")),
    })
}

fn read_xlsx(bytes: &[u8]) -> ApiResult<(Table, Vec<ReportLine>)> {
    let mut workbook: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes))
        .map_err(|e| unreadable(format!("not an XLSX workbook: {e}")))?;
    let range = workbook
        .worksheet_range_at(0)
        .ok_or_else(|| unreadable("the workbook has no sheet".into()))?
        .map_err(|e| unreadable(format!("the first sheet cannot be read: {e}")))?;
    let first_row = range.start().map(|(row, _)| row as usize).unwrap_or(0);
    let first_column = range.start().map(|(_, col)| col as usize).unwrap_or(0);
    let mut header: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (i, cells) in range.rows().enumerate() {
        let number = first_row + i + 1;
        // Columns left of the used range are empty cells.
        let mut texts = vec![String::new(); first_column];
        for (j, cell) in cells.iter().enumerate() {
            match cell_text(cell) {
                Ok(text) => texts.push(text),
                Err(message) => {
                    let column = header.get(first_column + j).cloned().unwrap_or_default();
                    problems.push(ReportLine::new(number, &column, "invalid", message));
                    texts.push(String::new());
                }
            }
        }
        if i == 0 {
            header = texts;
        } else if texts.iter().any(|c| !c.is_empty()) {
            rows.push(Row {
                number,
                cells: texts,
            });
        }
    }
    if header.is_empty() {
        return Err(unreadable("the first sheet is empty".into()));
    }
    Ok((Table { header, rows }, problems))
}

/// A header and rows of text as a file of `format`.
pub fn write(format: Format, header: &[&str], rows: &[Vec<String>]) -> ApiResult<Vec<u8>> {
    match format {
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let internal = |e: csv::Error| ApiError::Internal(e.to_string());
            writer.write_record(header).map_err(internal)?;
            for row in rows {
                writer.write_record(row).map_err(internal)?;
            }
            writer
                .into_inner()
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
        Format::Xlsx => {
            let internal = |e: rust_xlsxwriter::XlsxError| ApiError::Internal(e.to_string());
            let mut workbook = Workbook::new();
            let sheet = workbook.add_worksheet();
            for (col, name) in header.iter().enumerate() {
                sheet.write_string(0, col as u16, *name).map_err(internal)?;
            }
            for (i, row) in rows.iter().enumerate() {
                for (col, text) in row.iter().enumerate() {
                    if !text.is_empty() {
                        sheet
                            .write_string(i as u32 + 1, col as u16, text)
                            .map_err(internal)?;
                    }
                }
            }
            workbook.save_to_buffer().map_err(internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Read = (Vec<String>, Vec<(usize, Vec<String>)>, Vec<ReportLine>);

    fn table(format: Format, bytes: &[u8]) -> Read {
        match read(format, bytes) {
            Ok((table, problems)) => (
                table.header,
                table
                    .rows
                    .into_iter()
                    .map(|r| (r.number, r.cells))
                    .collect(),
                problems,
            ),
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn csv_and_xlsx_read_alike_and_round_trip() {
        let header = ["a", "b"];
        let rows = vec![
            vec!["1".to_string(), "x, \"quoted\"".to_string()],
            vec![String::new(), "2026-01-31".to_string()],
        ];
        for format in [Format::Csv, Format::Xlsx] {
            let bytes = write(format, &header, &rows).unwrap_or_default();
            let (read_header, read_rows, problems) = table(format, &bytes);
            assert_eq!(read_header, ["a", "b"], "{format:?}");
            assert_eq!(
                read_rows,
                vec![(2, rows[0].clone()), (3, rows[1].clone())],
                "{format:?}"
            );
            assert!(problems.is_empty());
        }
    }

    #[test]
    fn a_csv_row_of_the_wrong_width_is_a_report_line_and_blank_rows_are_skipped() {
        let (_, rows, problems) = table(Format::Csv, b"\xef\xbb\xbfa,b\n1,2\n\n,\n3\n4,5\n");
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 6]);
        assert_eq!(problems.len(), 1);
        assert_eq!(
            (problems[0].row, problems[0].code.as_str()),
            (5, "malformed_row")
        );
        assert!(read(Format::Xlsx, b"not a zip").is_err());
        assert!(Format::of_content_type(Some("text/csv; charset=utf-8")).is_ok());
        assert!(Format::of_content_type(Some("application/json")).is_err());
    }
}
