//! Intake: opens what people drop (CSV in any of the encodings Excel writes, .xlsx/.xls/.ods) and
//! yields raw rows numbered as the spreadsheet shows them. Knows nothing about payments: the
//! column mapping is in `columns`, the rules in `validate`.
//!
//! Refuses, before reading, anything over the channel's limits, so that a runaway export or a zip
//! bomb disguised as .xlsx cannot exhaust memory.

pub mod columns;
mod csv_source;
mod sheet_source;

use crate::config::{Channel, InputEncoding};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a cell held, as far as intake can tell. Spreadsheets distinguish numbers from text; that
/// matters for account numbers that Excel has already rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CellKind {
    #[default]
    Empty,
    Text,
    /// A numeric spreadsheet cell; `text` holds the shortest exact decimal form of the double.
    Number,
    /// A date cell; `text` holds it as `YYYY-MM-DD`.
    Date,
    Bool,
    /// A formula error such as `#REF!`.
    Error,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub kind: CellKind,
}

impl Cell {
    pub fn text(s: &str) -> Cell {
        Cell {
            text: s.to_string(),
            kind: if s.trim().is_empty() {
                CellKind::Empty
            } else {
                CellKind::Text
            },
        }
    }

    pub fn is_blank(&self) -> bool {
        self.kind == CellKind::Empty || self.text.trim().is_empty()
    }
}

/// One row as read: numbered as the spreadsheet shows it. Buffers are reused between rows.
#[derive(Debug, Clone, Default)]
pub struct RawRow {
    pub number: u64,
    pub cells: Vec<Cell>,
}

impl RawRow {
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_blank)
    }

    pub fn get(&self, idx: usize) -> Option<&Cell> {
        self.cells.get(idx)
    }
}

/// The file cannot be read at all (exit code 2): nothing in it can be trusted or located.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{path}: file not found")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: is {size} bytes, over the channel's limit of {limit} bytes (limits.max_file_bytes); split the file or raise the limit"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}: unpacks to {size} bytes, over the channel's limit of {limit} bytes (limits.max_unpacked_bytes); this is not a normal spreadsheet"
    )]
    UnpackedTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}: has more than {limit} data rows (limits.max_rows); split the file or raise the limit"
    )]
    TooManyRows { path: PathBuf, limit: u64 },
    #[error("{path}: is not a spreadsheet or CSV file ({what})")]
    NotASpreadsheet { path: PathBuf, what: String },
    #[error(
        "{path}: the workbook is password-protected (encrypted); save a copy without a password"
    )]
    Encrypted { path: PathBuf },
    #[error("{path}: has no sheet named `{sheet}` (sheets: {available})")]
    NoSuchSheet {
        path: PathBuf,
        sheet: String,
        available: String,
    },
    #[error("{path}: the spreadsheet is damaged and cannot be read: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// Detected shape of the input, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceFormat {
    Csv { encoding: String, delimiter: String },
    Xlsx { sheet: String },
    Xls { sheet: String },
    Ods { sheet: String },
}

enum Rows {
    Csv(csv_source::CsvRows),
    Sheet(sheet_source::SheetRows),
}

/// An opened input file: its detected format and a row stream.
pub struct Table {
    pub path: PathBuf,
    pub format: SourceFormat,
    rows: Rows,
}

impl Table {
    /// Fills `row` with the next row (blank rows included, so numbering stays right).
    /// Returns `Ok(false)` at the end.
    pub fn next_row(&mut self, row: &mut RawRow) -> Result<bool, IntakeError> {
        let more = match &mut self.rows {
            Rows::Csv(c) => c.next_row(row).map_err(|e| self.io_error(e))?,
            Rows::Sheet(s) => s.next_row(row),
        };
        Ok(more)
    }

    fn io_error(&self, e: std::io::Error) -> IntakeError {
        IntakeError::Io {
            path: self.path.clone(),
            source: e,
        }
    }
}

/// Opens `path` with the channel's settings, detecting the format from the content (not the
/// file name): zip containers are .xlsx/.ods, OLE containers .xls, text is CSV.
pub fn open(path: &Path, channel: &Channel) -> Result<Table, IntakeError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            IntakeError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IntakeError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(IntakeError::NotASpreadsheet {
            path: path.to_path_buf(),
            what: "it is a directory".into(),
        });
    }
    let limit = channel.limits.max_file_bytes;
    if meta.len() > limit {
        return Err(IntakeError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut file)
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(io)?;
    let kind = sniff(&head);
    let rows = match kind {
        Sniffed::Zip | Sniffed::Ole => {
            let mut bytes = head;
            file.read_to_end(&mut bytes).map_err(io)?;
            let (rows, format) = sheet_source::open(path, bytes, kind == Sniffed::Zip, channel)?;
            return Ok(Table {
                path: path.to_path_buf(),
                format,
                rows: Rows::Sheet(rows),
            });
        }
        Sniffed::Binary(what) => {
            return Err(IntakeError::NotASpreadsheet {
                path: path.to_path_buf(),
                what: what.into(),
            });
        }
        Sniffed::Text => {
            let encoding = match channel.encoding {
                InputEncoding::Auto => csv_source::detect_encoding(&head),
                InputEncoding::Utf8 => encoding_rs::UTF_8,
                InputEncoding::Utf16 => csv_source::utf16_from_bom(&head),
                InputEncoding::Gbk => encoding_rs::GBK,
                InputEncoding::Gb18030 => encoding_rs::GB18030,
            };
            csv_source::CsvRows::new(file, head, encoding, channel.delimiter).map_err(io)?
        }
    };
    Ok(Table {
        path: path.to_path_buf(),
        format: SourceFormat::Csv {
            encoding: rows.encoding_name().to_string(),
            delimiter: match rows.delimiter() {
                b'\t' => "tab".to_string(),
                d => (d as char).to_string(),
            },
        },
        rows: Rows::Csv(rows),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Zip,
    Ole,
    Text,
    Binary(&'static str),
}

fn sniff(head: &[u8]) -> Sniffed {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"%PDF", "a PDF document"),
        (b"\x89PNG", "a PNG image"),
        (b"\xFF\xD8\xFF", "a JPEG image"),
        (b"GIF8", "a GIF image"),
        (b"\x1F\x8B", "a gzip archive"),
        (b"Rar!", "a RAR archive"),
        (b"7z\xBC\xAF", "a 7-Zip archive"),
        (b"-----BEGIN PGP", "an OpenPGP armored file"),
        (b"\x7FELF", "a program"),
    ];
    if head.starts_with(b"PK\x03\x04") {
        return Sniffed::Zip;
    }
    if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return Sniffed::Ole;
    }
    for (m, what) in MAGIC {
        if head.starts_with(m) {
            return Sniffed::Binary(what);
        }
    }
    let utf16 = head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]);
    if !utf16 && head.iter().take(8192).any(|&b| b == 0) {
        return Sniffed::Binary("binary data");
    }
    Sniffed::Text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_by_content() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Sniffed::Zip);
        assert_eq!(sniff(b"%PDF-1.7"), Sniffed::Binary("a PDF document"));
        assert_eq!(sniff(b"name,amount\n"), Sniffed::Text);
        assert_eq!(sniff(b"\xFF\xFEn\0a\0"), Sniffed::Text);
        assert_eq!(sniff(b"ab\0cd"), Sniffed::Binary("binary data"));
    }
}
