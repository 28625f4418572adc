//! How far a workbook's sheets reach, measured before calamine reads them. calamine holds a
//! sheet as a dense grid from its first to its last used cell, so two cells far apart (`A1` and
//! `XFD1048576`) or one row repeated a million times (ODS) ask for gigabytes from a file of a
//! few kilobytes (fuzzing found a 10 KB .xls that took 24 GB). Each sheet's extent is read
//! here from the cell positions themselves, streaming, and a sheet larger than `MAX_CELLS` is
//! refused before anything is built. (.xlsx sheets are streamed a row at a time instead.)

use quick_xml::events::Event;
use std::io::{BufRead, Read};

/// Cells in the grid of one sheet read whole (.xls, .ods; about 32 bytes each in calamine):
/// 128 MB at most.
pub const MAX_CELLS: u64 = 4_000_000;

/// The smallest box holding every cell seen (0-based, inclusive).
#[derive(Debug, Default, Clone, Copy)]
pub struct Extent {
    rows: Option<(u64, u64)>,
    cols: Option<(u64, u64)>,
}

impl Extent {
    fn add(&mut self, row: u64, col_first: u64, col_last: u64) {
        let r = self.rows.get_or_insert((row, row));
        r.0 = r.0.min(row);
        r.1 = r.1.max(row);
        let c = self.cols.get_or_insert((col_first, col_last));
        c.0 = c.0.min(col_first);
        c.1 = c.1.max(col_last);
    }

    pub fn rows(&self) -> u64 {
        self.rows.map_or(0, |(a, b)| (b - a).saturating_add(1))
    }

    pub fn cols(&self) -> u64 {
        self.cols.map_or(0, |(a, b)| (b - a).saturating_add(1))
    }

    pub fn cells(&self) -> u64 {
        self.rows().saturating_mul(self.cols())
    }
}

/// The cells of every sheet of an .ods `content.xml`, added up (calamine builds them all),
/// counting repeated rows and columns up to the last one that holds something, as calamine
/// expands them; repeats are capped at a spreadsheet's size (1,048,576 rows, 16,384 columns).
pub fn ods_content(xml: impl BufRead) -> Result<u64, String> {
    const MAX_ROWS: u64 = 1 << 20;
    const MAX_COLS: u64 = 1 << 14;
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let mut sheet = Extent::default();
    let (mut row, mut row_repeat, mut col) = (0u64, 1u64, 0u64);
    // The cell being read: its first column, repeat count, and whether it has content.
    let mut cell: Option<(u64, u64, bool)> = None;
    let repeat = |e: &quick_xml::events::BytesStart, name: &str, max: u64| {
        attr(e, name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, max)
    };
    let close_cell =
        |cell: &mut Option<(u64, u64, bool)>, sheet: &mut Extent, row: u64, rr: u64| {
            if let Some((c, n, true)) = cell.take() {
                // The whole block of repeated rows and columns holds this content.
                let last_col = c.saturating_add(n - 1);
                sheet.add(row, c, last_col);
                sheet.add(row.saturating_add(rr - 1), c, last_col);
            }
        };
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| e.to_string())?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                "table" => {
                    total = total.saturating_add(sheet.cells());
                    sheet = Extent::default();
                    row = 0;
                }
                "table-row" => {
                    row_repeat = repeat(&e, "number-rows-repeated", MAX_ROWS);
                    col = 0;
                    if empty {
                        row = row.saturating_add(row_repeat);
                    }
                }
                "table-cell" | "covered-table-cell" => {
                    let n = repeat(&e, "number-columns-repeated", MAX_COLS);
                    let valued = attr(&e, "value-type").is_some();
                    cell = Some((col, n, valued));
                    col = col.saturating_add(n);
                    if empty {
                        close_cell(&mut cell, &mut sheet, row, row_repeat);
                    }
                }
                "p" | "a" | "span" | "s" => {
                    if let Some(c) = cell.as_mut() {
                        c.2 = true;
                    }
                }
                _ => {}
            },
            Event::Text(t) if !t.as_ref().trim().is_empty() => {
                if let Some(c) = cell.as_mut() {
                    c.2 = true;
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "table-cell" | "covered-table-cell" => {
                    close_cell(&mut cell, &mut sheet, row, row_repeat);
                }
                "table-row" => row = row.saturating_add(row_repeat),
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(total.saturating_add(sheet.cells()))
}

/// Why an .xls could not be measured.
#[derive(Debug)]
pub enum XlsProblem {
    /// A FILEPASS record: the workbook is password-protected (its cells are encrypted).
    Encrypted,
    Damaged(String),
}

/// The cells of every sheet of an .xls (BIFF in an OLE compound file), added up, sheet by sheet
/// as calamine builds them: each BoundSheet's substream from its offset to its EOF (embedded
/// chart substreams skipped), its DIMENSIONS and every cell record calamine keeps (blanks it
/// drops are not counted). A sheet listed twice counts twice, as it is built twice.
pub fn xls(bytes: &[u8]) -> Result<u64, XlsProblem> {
    let damaged = |e: String| XlsProblem::Damaged(e);
    let mut file =
        cfb::CompoundFile::open(std::io::Cursor::new(bytes)).map_err(|e| damaged(e.to_string()))?;
    let stream = ["/Workbook", "/Book"]
        .into_iter()
        .find(|s| file.is_stream(s))
        .ok_or_else(|| damaged("no Workbook stream".into()))?;
    let mut data = Vec::new();
    file.open_stream(stream)
        .map_err(|e| damaged(e.to_string()))?
        .take(bytes.len() as u64)
        .read_to_end(&mut data)
        .map_err(|e| damaged(e.to_string()))?;
    // The workbook globals: where each sheet's substream starts.
    let mut sheets = Vec::new();
    for (kind, body) in records(&data, 0) {
        match kind {
            0x002F => return Err(XlsProblem::Encrypted),
            0x0085 => {
                if let Some(pos) = u32_at(body, 0) {
                    sheets.push(pos as usize);
                }
            }
            0x000A => break,
            _ => {}
        }
    }
    let mut total: u64 = 0;
    for pos in sheets {
        let mut sheet = Extent::default();
        let (mut seen_bof, mut nested) = (false, 0usize);
        for (kind, body) in records(&data, pos) {
            if nested > 0 {
                match kind {
                    0x0809 => nested += 1,
                    0x000A => nested -= 1,
                    _ => {}
                }
                continue;
            }
            match kind {
                0x0809 if seen_bof => nested += 1,
                0x0809 => seen_bof = true,
                0x000A => break,
                // DIMENSIONS: calamine reserves room for the box it declares.
                0x0200 => {
                    let (rf, rl, cf, cl) = match body.len() {
                        10 => (
                            u16_at(body, 0),
                            u16_at(body, 2),
                            u16_at(body, 4),
                            u16_at(body, 6),
                        ),
                        14 | 16 => (
                            u32_at(body, 0).map(u64::from),
                            u32_at(body, 4).map(u64::from),
                            u16_at(body, 8),
                            u16_at(body, 10),
                        ),
                        _ => (None, None, None, None),
                    };
                    if let (Some(rf), Some(rl), Some(cf), Some(cl)) = (rf, rl, cf, cl)
                        && rl > rf
                        && cl > 0
                    {
                        let cf = if cf > 0xFF || cl < cf { 0 } else { cf };
                        sheet.add(rf, cf, cl - 1);
                        sheet.add(rl - 1, cf, cl - 1);
                    }
                }
                // FORMULA, NUMBER, LABEL, RSTRING, BOOLERR, RK, LABELSST, and the BIFF2-4
                // forms (blanks are not kept by calamine).
                0x0006 | 0x0203 | 0x0204 | 0x00D6 | 0x0205 | 0x027E | 0x00FD | 0x0002 | 0x0003
                | 0x0004 | 0x0005 | 0x0206 | 0x0406 => {
                    if let (Some(r), Some(c)) = (u16_at(body, 0), u16_at(body, 2)) {
                        sheet.add(r, c, c);
                    }
                }
                // MULRK: a row, a first column, and the last column at the end.
                0x00BD => {
                    if let (Some(r), Some(c), Some(last)) = (
                        u16_at(body, 0),
                        u16_at(body, 2),
                        body.len().checked_sub(2).and_then(|i| u16_at(body, i)),
                    ) {
                        sheet.add(r, c.min(last), c.max(last));
                    }
                }
                _ => {}
            }
        }
        total = total.saturating_add(sheet.cells());
    }
    Ok(total)
}

/// BIFF records from `at`: (type, body), ending at the data's end or at a damaged header.
fn records(data: &[u8], at: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = at;
    std::iter::from_fn(move || {
        let head = data.get(at..at.checked_add(4)?)?;
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_le_bytes([head[2], head[3]]));
        let body = data.get(at + 4..(at + 4 + len).min(data.len()))?;
        at += 4 + len;
        Some((kind, body))
    })
}

fn u16_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i + 2)
        .map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    b.get(i..i + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn attr(e: &quick_xml::events::BytesStart, local: &str) -> Option<String> {
    e.attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ods_repeats_count_up_to_the_last_content() {
        let xml = br#"<office:document-content xmlns:office="o" xmlns:table="t" xmlns:text="x"><table:table><table:table-row table:number-rows-repeated="3"><table:table-cell office:value-type="string"><text:p>a</text:p></table:table-cell><table:table-cell table:number-columns-repeated="1000"/></table:table-row><table:table-row table:number-rows-repeated="1048000"><table:table-cell table:number-columns-repeated="1024"/></table:table-row></table:table></office:document-content>"#;
        assert_eq!(ods_content(&xml[..]).unwrap(), 3);
        let bomb = br#"<office:document-content xmlns:office="o" xmlns:table="t" xmlns:text="x"><table:table><table:table-row table:number-rows-repeated="1000000"><table:table-cell table:number-columns-repeated="1000" office:value-type="float"/></table:table-row></table:table></office:document-content>"#;
        assert_eq!(ods_content(&bomb[..]).unwrap(), 1_000_000_000);
    }

    /// A compound file holding `stream` as its Workbook stream.
    fn xls_with(stream: &[u8]) -> Vec<u8> {
        let mut cfb = cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).unwrap();
        std::io::Write::write_all(&mut cfb.create_stream("/Workbook").unwrap(), stream).unwrap();
        cfb.flush().unwrap();
        cfb.into_inner().into_inner()
    }

    fn record(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut r = kind.to_le_bytes().to_vec();
        r.extend((body.len() as u16).to_le_bytes());
        r.extend(body);
        r
    }

    fn number(row: u16, col: u16) -> Vec<u8> {
        let mut b = row.to_le_bytes().to_vec();
        b.extend(col.to_le_bytes());
        b.extend([0u8; 10]);
        record(0x0203, &b)
    }

    #[test]
    fn xls_sheets_are_measured_as_calamine_builds_them() {
        let bof = record(0x0809, &[0u8; 16]);
        let eof = record(0x000A, &[]);
        // The sheet: A1 and D11, a chart between them whose cells are not the sheet's, a blank
        // far away (calamine drops blanks).
        let mut sheet = bof.clone();
        sheet.extend(number(0, 0));
        sheet.extend(&bof);
        sheet.extend(number(60_000, 200));
        sheet.extend(&eof);
        sheet.extend(number(10, 3));
        sheet.extend(record(0x0201, &[0xFF, 0xFF, 0xFF, 0x00, 0, 0]));
        sheet.extend(&eof);
        let globals_len = bof.len() + 2 * (4 + 8) + eof.len();
        let pos = (globals_len as u32).to_le_bytes();
        let mut bound = pos.to_vec();
        bound.extend([0, 0, 0, 0]);
        let mut stream = bof.clone();
        // The same sheet listed twice is built twice.
        stream.extend(record(0x0085, &bound));
        stream.extend(record(0x0085, &bound));
        stream.extend(&eof);
        assert_eq!(stream.len(), globals_len);
        stream.extend(&sheet);
        let cells = xls(&xls_with(&stream)).unwrap();
        assert_eq!(cells, 2 * 11 * 4);
        // A DIMENSIONS record declaring a million rows by 65,535 columns counts as such.
        let mut dims = 0u32.to_le_bytes().to_vec();
        dims.extend(1_000_000u32.to_le_bytes());
        dims.extend(0u16.to_le_bytes());
        dims.extend(0xFFFFu16.to_le_bytes());
        dims.extend([0, 0]);
        let mut big = stream[..globals_len].to_vec();
        big.extend(&bof);
        big.extend(record(0x0200, &dims));
        big.extend(&eof);
        assert!(xls(&xls_with(&big)).unwrap() > MAX_CELLS);
        // A password-protected workbook says so.
        let mut locked = bof.clone();
        locked.extend(record(0x002F, &[0u8; 6]));
        locked.extend(&eof);
        assert!(matches!(
            xls(&xls_with(&locked)),
            Err(XlsProblem::Encrypted)
        ));
    }

    #[test]
    fn ods_sheets_add_up_and_huge_repeats_are_capped() {
        let table = r#"<table:table><table:table-row table:number-rows-repeated="3900"><table:table-cell table:number-columns-repeated="1000" office:value-type="float"/></table:table-row></table:table>"#;
        let xml = format!(
            r#"<office:document-content xmlns:office="o" xmlns:table="t">{}</office:document-content>"#,
            table.repeat(100)
        );
        assert_eq!(ods_content(xml.as_bytes()).unwrap(), 390_000_000);
        let huge = br#"<office:document-content xmlns:office="o" xmlns:table="t"><table:table><table:table-row><table:table-cell office:value-type="float"/></table:table-row><table:table-row table:number-rows-repeated="18446744073709551615"><table:table-cell table:number-columns-repeated="18446744073709551615" office:value-type="float"/></table:table-row></table:table></office:document-content>"#;
        // Row 0, then 2^20 repeated rows (capped), each 2^14 columns (capped): no overflow.
        assert_eq!(ods_content(&huge[..]).unwrap(), ((1 << 20) + 1) * (1 << 14));
    }
}
