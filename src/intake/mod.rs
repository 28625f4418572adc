//! Intake: opens what people drop (CSV in any of the encodings Excel writes, .xlsx/.xls/.ods) and
//! yields raw rows numbered as the spreadsheet shows them. Knows nothing about payments: the
//! column mapping is in `columns`, the rules in `validate`.
//!
//! Refuses, before reading, anything over the channel's limits, so that a runaway export or a zip
//! bomb disguised as .xlsx cannot exhaust memory.

pub mod columns;
mod csv_source;
pub mod extent;
mod sheet_source;

use crate::config::{Channel, CsvEncoding, InputEncoding};
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
    /// Invisible characters removed from this row's cells: the column and what they were
    /// (`zero-width space (U+200B)`), for a warning where the row is validated.
    pub invisible: Vec<(usize, String)>,
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
    #[error("{path}: refused: {detail}")]
    Refused { path: PathBuf, detail: String },
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
    /// A CSV whose encoding was a guess among several: the other encodings it may be in, to be
    /// tried (with `reopen_as`) when no header is found in this one.
    pub other_encodings: Vec<&'static encoding_rs::Encoding>,
}

impl Table {
    /// Fills `row` with the next row (blank rows included, so numbering stays right).
    /// Returns `Ok(false)` at the end.
    pub fn next_row(&mut self, row: &mut RawRow) -> Result<bool, IntakeError> {
        let more = match &mut self.rows {
            Rows::Csv(c) => c.next_row(row).map_err(|e| self.io_error(e))?,
            Rows::Sheet(s) => s.next_row(row)?,
        };
        row.invisible.clear();
        for (i, cell) in row.cells.iter_mut().enumerate() {
            if let Some(removed) = clean_invisible(&mut cell.text) {
                row.invisible.push((i, removed));
                if cell.text.trim().is_empty() {
                    cell.kind = CellKind::Empty;
                }
            }
        }
        Ok(more)
    }

    fn io_error(&self, e: std::io::Error) -> IntakeError {
        if e.kind() == std::io::ErrorKind::InvalidData {
            // Refused by a limit of the reader (a line or row no payment file has).
            return IntakeError::Refused {
                path: self.path.clone(),
                detail: e.to_string(),
            };
        }
        IntakeError::Io {
            path: self.path.clone(),
            source: e,
        }
    }
}

/// The channel's `limits.max_file_bytes`, on a file's size before a byte of it is read: by
/// `open`, and by `convert` and the daemon before they hash the file.
pub fn check_size(path: &Path, size: u64, channel: &Channel) -> Result<(), IntakeError> {
    let limit = channel.limits.max_file_bytes;
    if size > limit {
        return Err(IntakeError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    Ok(())
}

/// Opens `path` with the channel's settings, detecting the format from the content (not the
/// file name): zip containers are .xlsx/.ods, OLE containers .xls, text is CSV.
pub fn open(path: &Path, channel: &Channel) -> Result<Table, IntakeError> {
    open_as(path, channel, None)
}

impl Table {
    /// The same CSV file read again from the start, in `encoding`.
    pub fn reopen_as(
        &self,
        channel: &Channel,
        encoding: &'static encoding_rs::Encoding,
    ) -> Result<Table, IntakeError> {
        let mut t = open_as(&self.path, channel, Some(encoding))?;
        t.other_encodings = self
            .other_encodings
            .iter()
            .copied()
            .filter(|&e| e != encoding)
            .collect();
        Ok(t)
    }
}

fn open_as(
    path: &Path,
    channel: &Channel,
    encoding: Option<&'static encoding_rs::Encoding>,
) -> Result<Table, IntakeError> {
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
    check_size(path, meta.len(), channel)?;
    let mut head = Vec::with_capacity(64 * 1024);
    (&mut file)
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(io)?;
    let kind = sniff(&head);
    let other_encodings;
    let rows = match kind {
        Sniffed::Zip | Sniffed::Ole => {
            let mut bytes = head;
            file.read_to_end(&mut bytes).map_err(io)?;
            let (rows, format) = sheet_source::open(path, bytes, kind == Sniffed::Zip, channel)?;
            return Ok(Table {
                path: path.to_path_buf(),
                format,
                rows: Rows::Sheet(rows),
                other_encodings: vec![],
            });
        }
        Sniffed::Binary(what) => {
            return Err(IntakeError::NotASpreadsheet {
                path: path.to_path_buf(),
                what: what.into(),
            });
        }
        Sniffed::Text => {
            let encodings = match (encoding, channel.encoding) {
                (Some(e), _) => vec![e],
                (None, InputEncoding::Auto) => {
                    csv_source::detect_encodings(&head, &channel.encodings)
                }
                (None, InputEncoding::Fixed(e)) if e == CsvEncoding::UTF_16 => {
                    vec![csv_source::utf16_from_bom(&head)]
                }
                (None, InputEncoding::Fixed(e)) => vec![e.0],
            };
            other_encodings = encodings[1..].to_vec();
            csv_source::CsvRows::new(file, head, encodings[0], channel.delimiter).map_err(io)?
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
        other_encodings,
    })
}

/// Characters Excel does not show that would still reach the bank: zero-width spaces and
/// joiners, a BOM inside a cell, soft hyphens, direction marks and overrides (which can make a
/// value read differently from what it is).
const INVISIBLE: &[(char, &str)] = &[
    ('\u{200B}', "zero-width space"),
    ('\u{200C}', "zero-width non-joiner"),
    ('\u{200D}', "zero-width joiner"),
    ('\u{2060}', "word joiner"),
    ('\u{FEFF}', "byte order mark"),
    ('\u{00AD}', "soft hyphen"),
    ('\u{180E}', "Mongolian vowel separator"),
    ('\u{200E}', "left-to-right mark"),
    ('\u{200F}', "right-to-left mark"),
    ('\u{061C}', "Arabic letter mark"),
    ('\u{202A}', "left-to-right embedding"),
    ('\u{202B}', "right-to-left embedding"),
    ('\u{202C}', "pop directional formatting"),
    ('\u{202D}', "left-to-right override"),
    ('\u{202E}', "right-to-left override"),
    ('\u{2066}', "left-to-right isolate"),
    ('\u{2067}', "right-to-left isolate"),
    ('\u{2068}', "first strong isolate"),
    ('\u{2069}', "pop directional isolate"),
];

/// Spaces that look like a space and are one: no-break, figure and narrow no-break spaces.
const SPACES: &[char] = &['\u{00A0}', '\u{2007}', '\u{202F}'];

/// Removes invisible characters from `text` and makes look-alike spaces plain spaces. Returns
/// what was removed, named (`zero-width space (U+200B) ×2`), when anything was; a space
/// replaced is not worth a word.
pub fn clean_invisible(text: &mut String) -> Option<String> {
    if text.is_ascii() {
        return None;
    }
    let invisible = |c: char| INVISIBLE.iter().any(|(i, _)| *i == c);
    if !text.chars().any(|c| invisible(c) || SPACES.contains(&c)) {
        return None;
    }
    let mut counts: Vec<(char, usize)> = Vec::new();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if invisible(c) {
            match counts.iter_mut().find(|(k, _)| *k == c) {
                Some((_, n)) => *n += 1,
                None => counts.push((c, 1)),
            }
        } else if SPACES.contains(&c) {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    *text = out;
    if counts.is_empty() {
        return None;
    }
    let names: Vec<String> = counts
        .iter()
        .map(|&(c, n)| {
            let name = INVISIBLE.iter().find(|(i, _)| *i == c).map_or("?", |x| x.1);
            let times = if n > 1 {
                format!(" ×{n}")
            } else {
                String::new()
            };
            format!("{name} (U+{:04X}){times}", c as u32)
        })
        .collect();
    Some(names.join(", "))
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
    fn invisible_characters_are_removed_and_named() {
        let mut s = "张\u{200B}伟\u{200B}".to_string();
        assert_eq!(
            clean_invisible(&mut s).as_deref(),
            Some("zero-width space (U+200B) ×2")
        );
        assert_eq!(s, "张伟");
        let mut s = "\u{FEFF}6222\u{00AD}0202\u{202E}".to_string();
        assert_eq!(
            clean_invisible(&mut s).as_deref(),
            Some("byte order mark (U+FEFF), soft hyphen (U+00AD), right-to-left override (U+202E)")
        );
        assert_eq!(s, "62220202");
        // A no-break space is a space, and not worth a warning.
        let mut s = "Müller\u{00A0}GmbH".to_string();
        assert_eq!(clean_invisible(&mut s), None);
        assert_eq!(s, "Müller GmbH");
        let mut s = "plain".to_string();
        assert_eq!(clean_invisible(&mut s), None);
        assert_eq!(s, "plain");
    }

    #[test]
    fn sniffing_by_content() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Sniffed::Zip);
        assert_eq!(sniff(b"%PDF-1.7"), Sniffed::Binary("a PDF document"));
        assert_eq!(sniff(b"name,amount\n"), Sniffed::Text);
        assert_eq!(sniff(b"\xFF\xFEn\0a\0"), Sniffed::Text);
        assert_eq!(sniff(b"ab\0cd"), Sniffed::Binary("binary data"));
    }
}
