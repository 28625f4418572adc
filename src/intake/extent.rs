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
        self.rows.map_or(0, |(a, b)| b - a + 1)
    }

    pub fn cols(&self) -> u64 {
        self.cols.map_or(0, |(a, b)| b - a + 1)
    }

    pub fn cells(&self) -> u64 {
        self.rows().saturating_mul(self.cols())
    }
}

/// The largest extent among the sheets of an .ods `content.xml`, counting repeated rows and
/// columns up to the last one that holds something (as calamine expands them).
pub fn ods_content(xml: impl BufRead) -> Result<Extent, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut largest = Extent::default();
    let mut sheet = Extent::default();
    let (mut row, mut row_repeat, mut col) = (0u64, 1u64, 0u64);
    // The cell being read: its first column, repeat count, and whether it has content.
    let mut cell: Option<(u64, u64, bool)> = None;
    let repeat = |e: &quick_xml::events::BytesStart, name: &str| {
        attr(e, name)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .max(1)
    };
    let close_cell = |cell: &mut Option<(u64, u64, bool)>, sheet: &mut Extent, row, rr: u64| {
        if let Some((c, n, true)) = cell.take() {
            // The whole block of repeated rows and columns holds this content.
            sheet.add(row, c, c + n - 1);
            sheet.add(row + rr - 1, c, c + n - 1);
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
                    sheet = Extent::default();
                    row = 0;
                }
                "table-row" => {
                    row_repeat = repeat(&e, "number-rows-repeated");
                    col = 0;
                    if empty {
                        row += row_repeat;
                    }
                }
                "table-cell" | "covered-table-cell" => {
                    let n = repeat(&e, "number-columns-repeated");
                    let valued = attr(&e, "value-type").is_some();
                    cell = Some((col, n, valued));
                    col += n;
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
                "table-row" => row += row_repeat,
                "table" if sheet.cells() > largest.cells() => largest = sheet,
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if sheet.cells() > largest.cells() {
        largest = sheet;
    }
    Ok(largest)
}

/// The largest extent among the sheets of an .xls (BIFF8 in an OLE compound file), from the
/// row and column of every cell record.
pub fn xls(bytes: &[u8]) -> Result<Extent, String> {
    let mut file =
        cfb::CompoundFile::open(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let stream = ["/Workbook", "/Book"]
        .into_iter()
        .find(|s| file.is_stream(s))
        .ok_or("no Workbook stream")?;
    let mut data = Vec::new();
    file.open_stream(stream)
        .map_err(|e| e.to_string())?
        .take(bytes.len() as u64)
        .read_to_end(&mut data)
        .map_err(|e| e.to_string())?;
    let u16_at = |b: &[u8], i: usize| {
        b.get(i..i + 2)
            .map(|s| u64::from(u16::from_le_bytes([s[0], s[1]])))
    };
    let mut largest = Extent::default();
    let mut sheet = Extent::default();
    let mut at = 0usize;
    while at + 4 <= data.len() {
        let kind = u16::from_le_bytes([data[at], data[at + 1]]);
        let len = usize::from(u16::from_le_bytes([data[at + 2], data[at + 3]]));
        let body = &data[at + 4..(at + 4 + len).min(data.len())];
        at += 4 + len;
        match kind {
            // BOF: a new substream (a sheet).
            0x0809 => {
                if sheet.cells() > largest.cells() {
                    largest = sheet;
                }
                sheet = Extent::default();
            }
            // FORMULA, NUMBER, LABEL, BLANK, BOOLERR, RK, LABELSST, RSTRING, and the BIFF2-4
            // forms calamine also reads.
            0x0006 | 0x0203 | 0x0204 | 0x0201 | 0x0205 | 0x027E | 0x00FD | 0x00D6 | 0x0001
            | 0x0002 | 0x0003 | 0x0004 | 0x0005 | 0x0206 | 0x0406 => {
                if let (Some(r), Some(c)) = (u16_at(body, 0), u16_at(body, 2)) {
                    sheet.add(r, c, c);
                }
            }
            // MULRK, MULBLANK: a row, a first column, and the last column at the end.
            0x00BD | 0x00BE => {
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
    if sheet.cells() > largest.cells() {
        largest = sheet;
    }
    Ok(largest)
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
        let e = ods_content(&xml[..]).unwrap();
        assert_eq!((e.rows(), e.cols()), (3, 1));
        let bomb = br#"<office:document-content xmlns:office="o" xmlns:table="t" xmlns:text="x"><table:table><table:table-row table:number-rows-repeated="1000000"><table:table-cell table:number-columns-repeated="1000" office:value-type="float"/></table:table-row></table:table></office:document-content>"#;
        let e = ods_content(&bomb[..]).unwrap();
        assert_eq!((e.rows(), e.cols()), (1_000_000, 1000));
    }
}
