//! CSV rows: encoding (BOM, UTF-8, UTF-16, GBK/GB18030) and delimiter detection, streaming.
//! Rows are numbered as Excel numbers them: a quoted value spanning several lines is one row.

use super::{CellKind, RawRow};
use crate::config::CsvEncoding;
use encoding_rs::Encoding;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Cursor, Read};
use std::sync::{Arc, Mutex};

/// Records where the line breaks are in the stream the CSV parser reads, so that rows can be
/// numbered by counting lines (csv's own line numbers skip blank lines). Only the breaks not yet
/// passed by the parser are kept: at most one read buffer's worth.
struct LineBreaks<R> {
    inner: R,
    offset: u64,
    breaks: Arc<Mutex<VecDeque<u64>>>,
    /// Where the current line starts, and how many lines ended before it.
    line_start: u64,
    lines: u64,
    /// The file ends its lines with a lone CR (Excel for Mac before 2016).
    cr_only: bool,
    /// Where the row being parsed starts, and its line: set by `CsvRows` after each row, so that
    /// a row growing past `MAX_ROW_BYTES` (a quote left open) is refused while it is read.
    row: Arc<RowStart>,
}

#[derive(Default)]
struct RowStart {
    offset: std::sync::atomic::AtomicU64,
    line: std::sync::atomic::AtomicU64,
}

/// No payment file has a line this long (10,000 columns of 100 characters); a longer one (a
/// 100 MB cell, a file with no line breaks) is refused before it is held in memory.
pub(super) const MAX_LINE_BYTES: u64 = 1024 * 1024;
/// Nor a row (a quoted value may span lines) this long. Small, also because the line breaks
/// inside the row being read are remembered until it ends (8 bytes each).
const MAX_ROW_BYTES: usize = 2 * 1024 * 1024;

impl<R: Read> Read for LineBreaks<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.cr_only {
            // Classic Mac line ends: each CR ends a line.
            for b in &mut buf[..n] {
                if *b == b'\r' {
                    *b = b'\n';
                }
            }
        }
        let mut q = self.breaks.lock().unwrap_or_else(|e| e.into_inner());
        let mut line_start = self.line_start;
        for (i, _) in buf[..n].iter().enumerate().filter(|(_, b)| **b == b'\n') {
            let at = self.offset + i as u64;
            if at - line_start > MAX_LINE_BYTES {
                break;
            }
            q.push_back(at);
            self.lines += 1;
            line_start = at + 1;
        }
        self.line_start = line_start;
        self.offset += n as u64;
        if self.offset - self.line_start > MAX_LINE_BYTES {
            return Err(too_long(format!(
                "line {} is over {} MB long; no payment file has such a line (is this a CSV file?)",
                self.lines + 1,
                MAX_LINE_BYTES / (1024 * 1024)
            )));
        }
        let start = self.row.offset.load(std::sync::atomic::Ordering::Relaxed);
        // The parser buffers ahead of the row it is in: allow one buffer more.
        if self.offset.saturating_sub(start) > (MAX_ROW_BYTES + BUFFER_BYTES) as u64 {
            return Err(too_long(format!(
                "the row starting near line {} is over {} MB long; no payment file has such a row (is a quote left open?)",
                self.row.line.load(std::sync::atomic::Ordering::Relaxed) + 1,
                MAX_ROW_BYTES / (1024 * 1024)
            )));
        }
        Ok(n)
    }
}

/// A line or row over its limit: `InvalidData`, which intake reports as a refusal.
fn too_long(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// The CSV parser's read buffer.
const BUFFER_BYTES: usize = 256 * 1024;

pub(super) struct CsvRows {
    reader: csv::Reader<Box<dyn Read + Send>>,
    record: csv::ByteRecord,
    encoding: &'static Encoding,
    delimiter: u8,
    /// Line breaks inside quoted values seen so far: Excel shows those as one row.
    embedded_newlines: u64,
    breaks: Arc<Mutex<VecDeque<u64>>>,
    lines_before: u64,
    row_start: Arc<RowStart>,
}

/// The encodings a CSV file may be in, best first, among `allowed` (the channel's
/// `encodings`, in order of preference). A BOM decides; so does valid UTF-8. Otherwise the
/// legacy encodings allowed, led by the one `chardetng` (the detector from encoding_rs's author)
/// finds: the rest are what intake tries next when the header is not found in the first.
pub(super) fn detect_encodings(head: &[u8], allowed: &[CsvEncoding]) -> Vec<&'static Encoding> {
    if let Some((enc, _)) = Encoding::for_bom(head) {
        return vec![enc];
    }
    let utf8 = match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut by the end of the sample is not evidence against UTF-8.
        Err(e) => e.error_len().is_none(),
    };
    if utf8 && allowed.iter().any(|e| e.0 == encoding_rs::UTF_8) {
        return vec![encoding_rs::UTF_8];
    }
    let mut legacy: Vec<&'static Encoding> = allowed
        .iter()
        .map(|e| e.0)
        .filter(|&e| {
            e != encoding_rs::UTF_8 && e != encoding_rs::UTF_16LE && e != encoding_rs::UTF_16BE
        })
        .collect();
    if legacy.len() > 1 {
        let mut detector = chardetng::EncodingDetector::new();
        detector.feed(head, true);
        let guess = detector.guess(None, false);
        // encoding_rs decodes GBK as GB18030: they are one family.
        let family = |e: &'static Encoding| {
            if e == encoding_rs::GBK {
                encoding_rs::GB18030
            } else {
                e
            }
        };
        if let Some(i) = legacy.iter().position(|&e| family(e) == family(guess)) {
            let found = legacy.remove(i);
            legacy.insert(0, found);
        }
    }
    if legacy.is_empty() {
        // Only UTF-8 allowed: invalid bytes are reported where they are.
        legacy.push(encoding_rs::UTF_8);
    }
    legacy
}

/// The encoding a CSV file is read in first (see `detect_encodings`).
#[cfg(test)]
fn detect_encoding(head: &[u8], allowed: &[CsvEncoding]) -> &'static Encoding {
    detect_encodings(head, allowed)[0]
}

pub(super) fn utf16_from_bom(head: &[u8]) -> &'static Encoding {
    match Encoding::for_bom(head) {
        Some((enc, _)) if enc == encoding_rs::UTF_16BE => enc,
        _ => encoding_rs::UTF_16LE,
    }
}

impl CsvRows {
    pub(super) fn new(
        file: File,
        head: Vec<u8>,
        encoding: &'static Encoding,
        delimiter: Option<char>,
    ) -> std::io::Result<CsvRows> {
        let bom_len = match Encoding::for_bom(&head) {
            Some((enc, len)) if enc == encoding => len,
            _ => 0,
        };
        let (sample, _) = encoding.decode_without_bom_handling(&head[bom_len..]);
        let cr_only = sample.contains('\r') && !sample.contains('\n');
        let delimiter = delimiter.map_or_else(
            || detect_delimiter(&sample.replace('\r', "\n")),
            |d| d as u8,
        );
        let raw: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(file));
        let source: Box<dyn Read + Send> = if encoding == encoding_rs::UTF_8 {
            let mut r = raw;
            let mut skip = vec![0u8; bom_len];
            r.read_exact(&mut skip)?;
            r
        } else {
            Box::new(
                encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding))
                    .bom_override(true)
                    .strip_bom(true)
                    .build(raw),
            )
        };
        let breaks = Arc::new(Mutex::new(VecDeque::new()));
        let row_start = Arc::new(RowStart::default());
        let source: Box<dyn Read + Send> = Box::new(LineBreaks {
            inner: source,
            offset: 0,
            breaks: breaks.clone(),
            line_start: 0,
            lines: 0,
            cr_only,
            row: row_start.clone(),
        });
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            // Line ends on `\n` only: csv's CRLF mode miscounts line numbers; a trailing `\r` is
            // removed from the last field below.
            .terminator(csv::Terminator::Any(b'\n'))
            .buffer_capacity(BUFFER_BYTES)
            .from_reader(source);
        Ok(CsvRows {
            reader,
            record: csv::ByteRecord::new(),
            encoding,
            delimiter,
            embedded_newlines: 0,
            breaks,
            lines_before: 0,
            row_start,
        })
    }

    pub(super) fn encoding_name(&self) -> &'static str {
        self.encoding.name()
    }

    pub(super) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    pub(super) fn next_row(&mut self, row: &mut RawRow) -> std::io::Result<bool> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => return Ok(false),
            Ok(true) => {}
            Err(e) => {
                return match e.into_kind() {
                    csv::ErrorKind::Io(io) => Err(io),
                    other => Err(std::io::Error::other(format!("{other:?}"))),
                };
            }
        }
        if self.record.as_slice().len() > MAX_ROW_BYTES {
            return Err(too_long(format!(
                "a row near line {} is over {} MB long; no payment file has such a row",
                self.lines_before + 1,
                MAX_ROW_BYTES / (1024 * 1024)
            )));
        }
        let start = self.record.position().map_or(0, |p| p.byte());
        {
            let mut q = self.breaks.lock().unwrap_or_else(|e| e.into_inner());
            while q.front().is_some_and(|&b| b < start) {
                q.pop_front();
                self.lines_before += 1;
            }
            // csv reports a record after blank lines as starting at the first blank line.
            let mut at = start;
            while q.front() == Some(&at) {
                q.pop_front();
                self.lines_before += 1;
                at += 1;
            }
        }
        row.number = (self.lines_before + 1).saturating_sub(self.embedded_newlines);
        // The next row starts where the parser now stands.
        let next = self.reader.position();
        self.row_start
            .offset
            .store(next.byte(), std::sync::atomic::Ordering::Relaxed);
        self.row_start.line.store(
            next.line().saturating_sub(1),
            std::sync::atomic::Ordering::Relaxed,
        );
        let fields = self.record.len();
        row.cells.resize_with(fields, Default::default);
        for (i, (cell, mut field)) in row.cells.iter_mut().zip(self.record.iter()).enumerate() {
            if i + 1 == fields {
                field = field.strip_suffix(b"\r").unwrap_or(field);
            }
            cell.text.clear();
            match std::str::from_utf8(field) {
                Ok(s) => cell.text.push_str(s),
                // Invalid bytes become U+FFFD, which validation reports at this row and column.
                Err(_) => cell.text.push_str(&String::from_utf8_lossy(field)),
            }
            let newlines = field.iter().filter(|&&b| b == b'\n').count() as u64;
            self.embedded_newlines += newlines;
            cell.kind = if cell.text.trim().is_empty() {
                CellKind::Empty
            } else {
                CellKind::Text
            };
        }
        // Excel leaves trailing empty columns; they carry nothing.
        while row.cells.last().is_some_and(|c| c.kind == CellKind::Empty) {
            row.cells.pop();
        }
        Ok(true)
    }
}

/// The candidate that splits the first lines most consistently, ignoring quoted text.
fn detect_delimiter(sample: &str) -> u8 {
    let lines: Vec<&str> = sample
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(30)
        .collect();
    let mut best = (0usize, 0usize, b',');
    for cand in [b',', b';', b'\t', b'|'] {
        let counts: Vec<usize> = lines.iter().map(|l| count_unquoted(l, cand)).collect();
        let mut freq = std::collections::HashMap::new();
        for &c in counts.iter().filter(|&&c| c > 0) {
            *freq.entry(c).or_insert(0usize) += 1;
        }
        if let Some((&mode, &n)) = freq.iter().max_by_key(|&(c, n)| (*n, *c))
            && (n, mode) > (best.0, best.1)
        {
            best = (n, mode, cand);
        }
    }
    best.2
}

fn count_unquoted(line: &str, delim: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for &b in line.as_bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delim && !quoted {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_detected() {
        let all = crate::config::default_encodings();
        let detect = |head: &[u8]| detect_encoding(head, &all);
        assert_eq!(detect(b"\xEF\xBB\xBFname"), encoding_rs::UTF_8);
        assert_eq!(detect(b"\xFF\xFEn\x00"), encoding_rs::UTF_16LE);
        assert_eq!(detect(b"\xFE\xFF\x00n"), encoding_rs::UTF_16BE);
        assert_eq!(detect("姓名,金额".as_bytes()), encoding_rs::UTF_8);
        // A UTF-8 character cut at the end of the sample.
        let mut cut = "名".as_bytes().to_vec();
        cut.pop();
        assert_eq!(detect(&cut), encoding_rs::UTF_8);
        // Chinese Excel's ANSI and Western European Excel's ANSI, told apart.
        let payroll = "姓名,账号,金额,备注\n张伟,6222020200112233445,8500.00,十一月工资\n王芳,6222020200112233446,9200.00,十一月工资\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(payroll);
        assert_eq!(detect(&gbk), encoding_rs::GB18030);
        let supplier = "Empfänger;IBAN;Betrag;Verwendungszweck\nMüller & Söhne GmbH;DE89370400440532013000;1.234,56;Rechnung März\nCafé Crème SARL;FR1420041010050500013M02606;99,90;Facture créée\n";
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode(supplier);
        assert_eq!(detect(&latin), encoding_rs::WINDOWS_1252);
    }

    #[test]
    fn a_channel_restricts_the_candidates() {
        let cn = [
            CsvEncoding(encoding_rs::UTF_8),
            CsvEncoding(encoding_rs::GB18030),
        ];
        let eu = [
            CsvEncoding(encoding_rs::UTF_8),
            CsvEncoding(encoding_rs::WINDOWS_1252),
        ];
        let (latin, _, _) = encoding_rs::WINDOWS_1252.encode("Empfänger;Betrag\nMüller;1,50\n");
        assert_eq!(detect_encoding(&latin, &cn), encoding_rs::GB18030);
        assert_eq!(detect_encoding(&latin, &eu), encoding_rs::WINDOWS_1252);
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名,金额\n张伟,1.50\n");
        assert_eq!(detect_encoding(&gbk, &cn), encoding_rs::GB18030);
        assert_eq!(detect_encoding(&gbk, &eu), encoding_rs::WINDOWS_1252);
        // Valid UTF-8 in a channel that does not allow it is read as the legacy encoding.
        assert_eq!(
            detect_encoding("Müller".as_bytes(), &eu[1..]),
            encoding_rs::WINDOWS_1252
        );
    }

    #[test]
    fn delimiters_are_detected() {
        assert_eq!(detect_delimiter("a,b,c\n1,2,3\n"), b',');
        assert_eq!(detect_delimiter("a;b;c\n1,5;2;3\n"), b';');
        assert_eq!(detect_delimiter("a\tb\tc\n1\t2\t3\n"), b'\t');
        assert_eq!(detect_delimiter("a|b|c\n\"x,y,z\"|2|3\n"), b'|');
        assert_eq!(detect_delimiter("title only\n"), b',');
    }
}

#[cfg(test)]
mod numbering {
    use super::*;

    fn numbers(text: &str) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, text).unwrap();
        let file = File::open(&p).unwrap();
        let mut rows = CsvRows::new(file, Vec::new(), encoding_rs::UTF_8, Some(',')).unwrap();
        let mut row = RawRow::default();
        let mut out = vec![];
        while rows.next_row(&mut row).unwrap() {
            out.push(row.number);
        }
        out
    }

    #[test]
    fn rows_are_numbered_as_excel_shows_them() {
        assert_eq!(numbers("a\nb\nc\n"), vec![1, 2, 3]);
        assert_eq!(numbers("a\n\nb\n\n\nc"), vec![1, 3, 6]);
        assert_eq!(numbers("a\r\n\r\nb\r\n"), vec![1, 2, 3]);
        assert_eq!(numbers("\"x\ny\",1\nb\n\nc\n"), vec![1, 2, 4]);
    }
}
