//! Spreadsheet rows (.xlsx, .xls, .ods) through calamine, with the sheet chosen by name or the
//! first one. Zip containers are measured before they are unpacked. An .xlsx sheet is streamed:
//! a reader thread turns calamine's cell reader into rows while validation works on the rows
//! before them, so memory holds a few rows, not the sheet. .xls and .ods are read whole (their
//! grids measured first, see `extent`).

use super::{CellKind, IntakeError, RawRow, SourceFormat};
use crate::config::Channel;
use calamine::{Data, DataRef, Range, Reader, Sheets, Xlsx};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// An .xlsx workbook held in memory (its sheets are read from it a row at a time).
type Workbook = Xlsx<Cursor<Vec<u8>>>;

/// Rows on their way from the reader thread to validation (a row is at most 16,384 cells).
const ROWS_IN_FLIGHT: usize = 32;
/// Excel's columns, A to XFD.
const MAX_COLUMNS: u32 = 16_384;
/// Cells a streamed sheet may hand on, each row counted from column A to its last cell: what
/// bounds the work of a sheet whose rows reach far to the right (memory holds a few rows);
/// a million rows of 32 columns.
const MAX_STREAMED_CELLS: u64 = 32_000_000;

pub(super) enum SheetRows {
    Grid(GridRows),
    Stream(StreamRows),
}

impl SheetRows {
    pub(super) fn next_row(&mut self, row: &mut RawRow) -> Result<bool, IntakeError> {
        match self {
            SheetRows::Grid(g) => Ok(g.next_row(row)),
            SheetRows::Stream(s) => s.next_row(row),
        }
    }
}

/// A sheet read whole by calamine (.xls, .ods).
pub(super) struct GridRows {
    range: Range<Data>,
    /// Absolute 0-based row and column of the range's first cell.
    first_row: u32,
    first_col: u32,
    next: usize,
}

/// An .xlsx sheet read by a thread of its own, a row at a time.
pub(super) struct StreamRows {
    rx: std::sync::mpsc::Receiver<Result<RawRow, String>>,
    path: PathBuf,
}

impl StreamRows {
    fn start(path: &Path, mut book: Workbook, sheet: String) -> Result<StreamRows, IntakeError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(ROWS_IN_FLIGHT);
        std::thread::Builder::new()
            .name("xlsx-reader".into())
            .spawn(move || {
                let detail = match quietly(|| send_rows(&mut book, &sheet, &tx)) {
                    Ok(Ok(())) => return,
                    Ok(Err(e)) => e,
                    Err(what) => {
                        format!("the spreadsheet reader gave up on its structure ({what})")
                    }
                };
                let _ = tx.send(Err(detail));
            })
            .map_err(|source| IntakeError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(StreamRows {
            rx,
            path: path.to_path_buf(),
        })
    }

    fn next_row(&mut self, row: &mut RawRow) -> Result<bool, IntakeError> {
        match self.rx.recv() {
            Ok(Ok(r)) => {
                *row = r;
                Ok(true)
            }
            Ok(Err(detail)) => Err(IntakeError::Corrupt {
                path: self.path.clone(),
                detail,
            }),
            // The reader is done (it drops its end after the last row).
            Err(_) => Ok(false),
        }
    }
}

/// The reader thread: cells in document order, gathered into rows and sent one by one. Ends
/// quietly when validation stops listening.
fn send_rows(
    book: &mut Workbook,
    sheet: &str,
    tx: &std::sync::mpsc::SyncSender<Result<RawRow, String>>,
) -> Result<(), String> {
    let mut reader = book
        .worksheet_cells_reader(sheet)
        .map_err(|e| format!("sheet `{sheet}`: {e}"))?;
    let mut row = RawRow::default();
    // Cells handed on so far, counting the empty ones each row is padded with up to its last.
    let mut handed: u64 = 0;
    while let Some(cell) = reader
        .next_cell()
        .map_err(|e| format!("sheet `{sheet}`: {e}"))?
    {
        let (r, c) = cell.get_position();
        if c >= MAX_COLUMNS {
            // calamine reads whatever column a reference names (or counts up to, for cells
            // without one); Excel stops at XFD.
            return Err(format!(
                "sheet `{sheet}` has a cell in column {}, beyond Excel's last column (XFD)",
                u64::from(c) + 1
            ));
        }
        let number = u64::from(r) + 1;
        if row.number != number {
            if row.number != 0 {
                match send(tx, &mut row) {
                    Some(n) => handed += n,
                    None => return Ok(()),
                }
                if handed > MAX_STREAMED_CELLS {
                    return Err(format!(
                        "sheet `{sheet}` reaches over {MAX_STREAMED_CELLS} cells, counting each row from its first column to its last cell; delete what lies outside the payments, or save the sheet as CSV"
                    ));
                }
            }
            row.number = number;
        }
        let c = c as usize;
        if row.cells.len() <= c {
            row.cells.resize_with(c + 1, Default::default);
        }
        let out = &mut row.cells[c];
        out.text.clear();
        out.kind = match cell.get_value() {
            // Most text is shared: no owned copy on the way.
            DataRef::SharedString(s) => {
                out.text.push_str(s);
                if s.trim().is_empty() {
                    CellKind::Empty
                } else {
                    CellKind::Text
                }
            }
            other => fill(&mut out.text, &Data::from(other.clone())),
        };
    }
    if row.number != 0 {
        send(tx, &mut row);
    }
    Ok(())
}

/// Sends the row (trailing empty cells dropped) and starts a new one; returns the cells sent,
/// or `None` when nobody listens.
fn send(tx: &std::sync::mpsc::SyncSender<Result<RawRow, String>>, row: &mut RawRow) -> Option<u64> {
    while row.cells.last().is_some_and(|c| c.kind == CellKind::Empty) {
        row.cells.pop();
    }
    let n = row.cells.len() as u64;
    tx.send(Ok(std::mem::take(row))).ok().map(|()| n)
}

impl GridRows {
    fn next_row(&mut self, row: &mut RawRow) -> bool {
        let (height, width) = self.range.get_size();
        if self.next >= height {
            return false;
        }
        // Columns left of the range are empty; keep them so that indexes are spreadsheet columns.
        let offset = self.first_col as usize;
        row.number = u64::from(self.first_row) + self.next as u64 + 1;
        row.cells.resize_with(offset + width, Default::default);
        for cell in &mut row.cells[..offset] {
            cell.text.clear();
            cell.kind = CellKind::Empty;
        }
        for (c, cell) in row.cells[offset..].iter_mut().enumerate() {
            cell.text.clear();
            // Indexed access: O(1) per cell (iterating `rows().nth(i)` would be quadratic).
            cell.kind = match self.range.get((self.next, c)) {
                Some(data) => fill(&mut cell.text, data),
                None => CellKind::Empty,
            };
        }
        self.next += 1;
        while row.cells.last().is_some_and(|c| c.kind == CellKind::Empty) {
            row.cells.pop();
        }
        true
    }
}

fn fill(text: &mut String, data: &Data) -> CellKind {
    use std::fmt::Write;
    match data {
        Data::Empty => CellKind::Empty,
        Data::String(s) => {
            text.push_str(s);
            if s.trim().is_empty() {
                CellKind::Empty
            } else {
                CellKind::Text
            }
        }
        Data::Int(i) => {
            let _ = write!(text, "{i}");
            CellKind::Number
        }
        // Rust prints the shortest decimal that reads back as the same double: 8800.5 stays
        // "8800.5", and a formula result like 1234.5650000001 keeps its tell-tale digits.
        Data::Float(f) => {
            let _ = write!(text, "{f}");
            CellKind::Number
        }
        Data::Bool(b) => {
            text.push_str(if *b { "TRUE" } else { "FALSE" });
            CellKind::Bool
        }
        Data::DateTime(dt) if dt.is_datetime() => match dt.as_datetime() {
            Some(d) => {
                let _ = write!(text, "{}", d.date().format("%Y-%m-%d"));
                CellKind::Date
            }
            None => {
                let _ = write!(text, "{}", dt.as_f64());
                CellKind::Number
            }
        },
        Data::DateTime(dt) => {
            let _ = write!(text, "{}", dt.as_f64());
            CellKind::Number
        }
        Data::DateTimeIso(s) => {
            text.push_str(s.get(..10).unwrap_or(s));
            CellKind::Date
        }
        Data::DurationIso(s) => {
            text.push_str(s);
            CellKind::Text
        }
        Data::Error(e) => {
            let _ = write!(text, "{e}");
            CellKind::Error
        }
    }
}

pub(super) fn open(
    path: &Path,
    bytes: Vec<u8>,
    is_zip: bool,
    channel: &Channel,
) -> Result<(SheetRows, SourceFormat), IntakeError> {
    let corrupt = |detail: String| IntakeError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    if is_zip {
        if check_zip(path, &bytes, channel.limits.max_unpacked_bytes)? == ZipKind::Xlsx {
            let (book, sheet) = match quietly(|| open_xlsx(path, bytes, channel)) {
                Ok(r) => r?,
                Err(what) => {
                    return Err(corrupt(format!(
                        "the spreadsheet reader gave up on its structure ({what})"
                    )));
                }
            };
            let rows = StreamRows::start(path, book, sheet.clone())?;
            return Ok((SheetRows::Stream(rows), SourceFormat::Xlsx { sheet }));
        }
    } else if looks_encrypted_ole(&bytes) {
        return Err(IntakeError::Encrypted {
            path: path.to_path_buf(),
        });
    } else {
        match super::extent::xls(&bytes) {
            Ok(cells) => too_big(path, "its sheets", cells)?,
            Err(super::extent::XlsProblem::Encrypted) => {
                return Err(IntakeError::Encrypted {
                    path: path.to_path_buf(),
                });
            }
            Err(super::extent::XlsProblem::Damaged(detail)) => {
                return Err(corrupt(format!("not a readable .xls workbook: {detail}")));
            }
        }
    }
    // calamine has been seen to panic on damaged files (found by tests/cli.rs and by fuzzing):
    // a panic in the parser is a damaged file, never a crash of paygate, nor a stack trace in
    // the log.
    let (range, sheet, kind) = match quietly(|| read_sheet(path, bytes, channel)) {
        Ok(r) => r?,
        Err(what) => {
            return Err(corrupt(format!(
                "the spreadsheet reader gave up on its structure ({what})"
            )));
        }
    };
    let (first_row, first_col) = range.start().unwrap_or((0, 0));
    if range.height() as u64 > channel.limits.max_rows.saturating_add(50) {
        return Err(IntakeError::TooManyRows {
            path: path.to_path_buf(),
            limit: channel.limits.max_rows,
        });
    }
    let format = match kind {
        Kind::Xlsx => SourceFormat::Xlsx { sheet },
        Kind::Xls => SourceFormat::Xls { sheet },
        Kind::Ods => SourceFormat::Ods { sheet },
    };
    Ok((
        SheetRows::Grid(GridRows {
            range,
            first_row,
            first_col,
            next: 0,
        }),
        format,
    ))
}

/// Opens an .xlsx (its workbook, shared strings and styles; no sheet yet) and picks the sheet.
fn open_xlsx(
    path: &Path,
    bytes: Vec<u8>,
    channel: &Channel,
) -> Result<(Workbook, String), IntakeError> {
    let book = Xlsx::new(Cursor::new(bytes)).map_err(|e| IntakeError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let sheet = choose_sheet(path, &book.sheet_names(), channel)?;
    Ok((book, sheet))
}

/// The channel's sheet (by name, ignoring case and spaces around it), else the first.
fn choose_sheet(path: &Path, names: &[String], channel: &Channel) -> Result<String, IntakeError> {
    match &channel.sheet {
        Some(want) => names
            .iter()
            .find(|n| n.as_str() == want || n.trim().eq_ignore_ascii_case(want.trim()))
            .cloned()
            .ok_or_else(|| IntakeError::NoSuchSheet {
                path: path.to_path_buf(),
                sheet: want.clone(),
                available: names.join(", "),
            }),
        None => names.first().cloned().ok_or_else(|| IntakeError::Corrupt {
            path: path.to_path_buf(),
            detail: "it has no sheets".into(),
        }),
    }
}

thread_local! {
    /// Set while this thread runs the spreadsheet reader under `quietly`; holds the message of
    /// a panic caught there.
    static QUIET: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into `Err` with where it happened, without the panic hook's
/// message and backtrace on standard error; panics anywhere else still reach the previous hook.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = QUIET.with(|q| {
                let mut q = q.borrow_mut();
                match q.as_mut() {
                    Some(slot) => {
                        *slot = match info.location() {
                            Some(l) => format!("{}:{}", l.file(), l.line()),
                            None => "a panic".into(),
                        };
                        true
                    }
                    None => false,
                }
            });
            if !caught {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| *q.borrow_mut() = Some(String::new()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let what = QUIET.with(|q| q.borrow_mut().take()).unwrap_or_default();
    r.map_err(|_| {
        // Only where in the reader: the panic's own message may quote the file's bytes.
        let at = what.rsplit_once("src/").map_or(what.as_str(), |(_, f)| f);
        format!("calamine, at {at}")
    })
}

enum Kind {
    Xlsx,
    Xls,
    Ods,
}

fn read_sheet(
    path: &Path,
    bytes: Vec<u8>,
    channel: &Channel,
) -> Result<(Range<Data>, String, Kind), IntakeError> {
    let corrupt = |detail: String| IntakeError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let mut book: Sheets<Cursor<Vec<u8>>> =
        calamine::open_workbook_auto_from_rs(Cursor::new(bytes)).map_err(|e| match e {
            calamine::Error::Xls(calamine::XlsError::Password) => IntakeError::Encrypted {
                path: path.to_path_buf(),
            },
            e => corrupt(e.to_string()),
        })?;
    let sheet = choose_sheet(path, &book.sheet_names(), channel)?;
    let range = book.worksheet_range(&sheet).map_err(|e| match e {
        calamine::Error::Xls(calamine::XlsError::Password) => IntakeError::Encrypted {
            path: path.to_path_buf(),
        },
        e => corrupt(format!("sheet `{sheet}`: {e}")),
    })?;
    let kind = match book {
        Sheets::Xlsx(_) | Sheets::Xlsb(_) => Kind::Xlsx,
        Sheets::Xls(_) => Kind::Xls,
        Sheets::Ods(_) => Kind::Ods,
    };
    Ok((range, sheet, kind))
}

/// No part of a workbook but its sheets is this large unpacked (shared strings, styles,
/// drawings…): a bigger one is an attack on memory, not a payroll.
const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;

/// Refuses a zip whose content is larger than the limit, or any part but a sheet over
/// `MAX_PART_BYTES`, or an entry that unpacks to more than it declares (a zip bomb with a lying
/// directory), before calamine unpacks anything for keeps: each entry is inflated once into
/// nothing, counting bytes, and stopped at its limit.
/// What a zip container holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZipKind {
    Xlsx,
    Ods,
}

fn check_zip(path: &Path, bytes: &[u8], limit: u64) -> Result<ZipKind, IntakeError> {
    let corrupt = |e: zip::result::ZipError| IntakeError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("not a valid zip container: {e}"),
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut declared: u64 = 0;
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        // Sizes from the central directory; nothing is decompressed here.
        let entry = archive.by_index_raw(i).map_err(corrupt)?;
        declared = declared.saturating_add(entry.size());
        names.push(entry.name().map(|n| n.to_string()).unwrap_or_default());
    }
    if declared > limit {
        return Err(IntakeError::UnpackedTooLarge {
            path: path.to_path_buf(),
            size: declared,
            limit,
        });
    }
    let is_xlsx = names.iter().any(|n| n.starts_with("xl/"));
    let is_ods = names.iter().any(|n| n == "content.xml");
    if !is_xlsx && !is_ods {
        let what = if names.iter().any(|n| n.starts_with("word/")) {
            "a Word document"
        } else if names.iter().any(|n| n.starts_with("ppt/")) {
            "a PowerPoint presentation"
        } else {
            "a zip archive"
        };
        return Err(IntakeError::NotASpreadsheet {
            path: path.to_path_buf(),
            what: what.into(),
        });
    }
    let mut total: u64 = 0;
    for (i, name) in names.iter().enumerate() {
        let sheet = name.starts_with("xl/worksheets/") || name == "content.xml";
        let mut entry = match archive.by_index(i) {
            Ok(e) => e,
            // Encrypted or exotic entries: calamine reports what it cannot read.
            Err(zip::result::ZipError::UnsupportedArchive(_)) => continue,
            Err(e) => return Err(corrupt(e)),
        };
        let size = entry.size();
        if !sheet && size > MAX_PART_BYTES {
            return Err(IntakeError::Refused {
                path: path.to_path_buf(),
                detail: format!(
                    "its part `{name}` unpacks to {size} bytes, over {MAX_PART_BYTES}; this is not a normal spreadsheet"
                ),
            });
        }
        if name.starts_with("xl/worksheets/") && name.ends_with(".bin") {
            return Err(IntakeError::NotASpreadsheet {
                path: path.to_path_buf(),
                what: "an Excel binary workbook (.xlsb); save it as .xlsx or CSV".into(),
            });
        }
        let cap = if sheet { limit - total } else { MAX_PART_BYTES }.min(size);
        let mut counted = Counted {
            inner: std::io::Read::take(&mut entry, cap + 1),
            n: 0,
        };
        let unpack_error = |e: std::io::Error| IntakeError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("its part `{name}` cannot be unpacked: {e}"),
        };
        if name == "content.xml" {
            // How far the ODS sheets reach, from their cells' positions, while inflated (an
            // .xlsx sheet is streamed instead, and bounds its own work).
            let reader = std::io::BufReader::new(&mut counted);
            match super::extent::ods_content(reader) {
                Ok(cells) => too_big(path, "its sheets", cells)?,
                Err(detail) => {
                    return Err(IntakeError::Corrupt {
                        path: path.to_path_buf(),
                        detail: format!("its part `{name}` is not well-formed: {detail}"),
                    });
                }
            }
        }
        std::io::copy(&mut counted, &mut std::io::sink()).map_err(unpack_error)?;
        let read = counted.n;
        if read > size {
            return Err(IntakeError::Refused {
                path: path.to_path_buf(),
                detail: format!(
                    "its part `{name}` unpacks to more than the {size} bytes it declares (a zip bomb)"
                ),
            });
        }
        total += read;
    }
    Ok(if is_xlsx { ZipKind::Xlsx } else { ZipKind::Ods })
}

/// Counts the bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Refuses a workbook whose sheets' grids would be larger than calamine should hold.
fn too_big(path: &Path, what: &str, cells: u64) -> Result<(), IntakeError> {
    let max = super::extent::MAX_CELLS;
    if cells > max {
        return Err(IntakeError::Refused {
            path: path.to_path_buf(),
            detail: format!(
                "{what} span {cells} cells from each one's first used cell to its last, more than the {max} paygate reads from an .xls or .ods workbook; delete what lies outside the payments, or save the sheet as .xlsx or CSV"
            ),
        });
    }
    Ok(())
}

/// Office encrypts .xlsx files by wrapping them in an OLE container with an `EncryptionInfo`
/// stream; the stream name is stored in UTF-16.
fn looks_encrypted_ole(bytes: &[u8]) -> bool {
    let needle: Vec<u8> = "EncryptionInfo"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    bytes.windows(needle.len()).any(|w| w == needle.as_slice())
}

#[cfg(test)]
mod tests {
    use super::quietly;

    #[test]
    fn a_panic_in_the_reader_becomes_an_error_saying_where() {
        assert_eq!(quietly(|| 7), Ok(7));
        let err = quietly(|| -> u8 { panic!("the reader's own words, maybe quoting the file") })
            .unwrap_err();
        assert!(
            err.starts_with("calamine, at intake/sheet_source.rs:"),
            "{err}"
        );
        assert!(!err.contains("own words"), "{err}");
        // The thread is not left quiet: the next call starts afresh.
        assert_eq!(quietly(|| "again"), Ok("again"));
    }
}
