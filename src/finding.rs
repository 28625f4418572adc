//! A finding: one problem in an input file, located the way the user sees it in Excel.

use serde::Serialize;
use std::fmt;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// Where a column is: its header text as it appears in the file, and its spreadsheet letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnRef {
    pub name: String,
    pub letter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `iban.checksum`.
    pub code: &'static str,
    /// Row number as the spreadsheet shows it; `None` for whole-file findings.
    pub row: Option<u64>,
    pub column: Option<ColumnRef>,
    /// The offending value, as found.
    pub value: Option<String>,
    /// What is wrong and what to do, for the person who made the file.
    pub message: String,
}

impl Finding {
    pub fn error(code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Error,
            code,
            row: None,
            column: None,
            value: None,
            message: message.into(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(code, message)
        }
    }

    pub fn at(mut self, row: u64) -> Finding {
        self.row = Some(row);
        self
    }

    pub fn col(mut self, column: &ColumnRef) -> Finding {
        self.column = Some(column.clone());
        self
    }

    pub fn value(mut self, value: impl Into<String>) -> Finding {
        self.value = Some(value.into());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.severity, self.code)?;
        if let Some(r) = self.row {
            write!(f, " row {r}")?;
        }
        if let Some(c) = &self.column {
            write!(f, " column {} `{}`", c.letter, c.name)?;
        }
        if let Some(v) = &self.value {
            write!(f, " value {v:?}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// How many findings are kept in memory before all of them go to a temporary file.
const IN_MEMORY: usize = 2_000;
/// How many findings of each code are kept apart for a short report (`Findings::sample`).
pub const SAMPLE_PER_CODE: usize = 20;
/// Spilled findings are written to the file in pieces of about this size.
const SPILL_CHUNK: usize = 256 * 1024;

/// How many findings of one code a file has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeCount {
    pub code: &'static str,
    pub severity: Severity,
    pub count: u64,
}

/// The findings of one file, in row order, in memory that does not grow with their number:
/// the counts per code and the first `SAMPLE_PER_CODE` of each code are kept; the findings
/// themselves stay in memory up to a few thousand, after which every one is written to an
/// anonymous temporary file (deleted when this is dropped) and read back by `iter`.
///
/// Findings arrive in row order while a file is read; one that arrives behind the rows already
/// seen (a whole-file finding, a declared total checked at the end) is kept apart and merged
/// in row order when read, after the streamed findings of the same row.
#[derive(Debug, Default)]
pub struct Findings {
    head: Vec<Finding>,
    spill: Option<Spill>,
    late: Vec<Finding>,
    last_row: u64,
    sample: Vec<Finding>,
    counts: Vec<CodeCount>,
    errors: u64,
    warnings: u64,
    /// Findings made elsewhere in row order (by the renderer), merged when read.
    others: Vec<Findings>,
}

/// The temporary file of findings and the pieces not yet written to it.
#[derive(Debug)]
struct Spill {
    file: Option<std::fs::File>,
    written: u64,
    pending: Vec<u8>,
    codes: Vec<&'static str>,
    columns: Vec<ColumnRef>,
    last_column: Option<usize>,
    /// Why findings could not be kept (the temporary file could not be made or written), and
    /// how many were lost; said by `iter` as a last finding.
    lost: Option<(String, u64)>,
}

/// A finding as it is spilled: the code and column as indexes into the spill's tables.
#[derive(Serialize, serde::Deserialize)]
struct Spilled {
    s: Severity,
    c: u16,
    r: Option<u64>,
    k: Option<u32>,
    v: Option<String>,
    m: String,
}

impl Spill {
    fn with(file: std::io::Result<std::fs::File>) -> Spill {
        let (file, lost) = match file {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some((e.to_string(), 0))),
        };
        Spill {
            file,
            written: 0,
            pending: Vec::with_capacity(SPILL_CHUNK + 4096),
            codes: Vec::new(),
            columns: Vec::new(),
            last_column: None,
            lost,
        }
    }

    fn push(&mut self, f: Finding) {
        if let Some((_, n)) = &mut self.lost {
            *n += 1;
            return;
        }
        let c = match self
            .codes
            .iter()
            .position(|c| std::ptr::eq(*c, f.code) || *c == f.code)
        {
            Some(i) => i,
            None => {
                self.codes.push(f.code);
                self.codes.len() - 1
            }
        };
        let k = f.column.map(|col| {
            // Most findings are in the column of the one before.
            let found = match self.last_column {
                Some(i) if self.columns[i] == col => Some(i),
                _ => self.columns.iter().position(|c| *c == col),
            };
            let i = found.unwrap_or_else(|| {
                self.columns.push(col);
                self.columns.len() - 1
            });
            self.last_column = Some(i);
            i
        });
        let s = Spilled {
            s: f.severity,
            c: c as u16,
            r: f.row,
            k: k.map(|k| k as u32),
            v: f.value,
            m: f.message,
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.pending, &s);
        self.pending.push(b'\n');
        if self.pending.len() >= SPILL_CHUNK {
            self.write_pending();
        }
    }

    fn write_pending(&mut self) {
        use std::io::Write;
        let Some(file) = self.file.as_mut().filter(|_| self.lost.is_none()) else {
            return;
        };
        match file.write_all(&self.pending) {
            Ok(()) => self.written += self.pending.len() as u64,
            Err(e) => {
                let in_piece = self.pending.iter().filter(|&&b| b == b'\n').count() as u64;
                // What was written before stays readable; nothing more is written.
                self.lost = Some((e.to_string(), in_piece));
            }
        }
        self.pending.clear();
    }

    fn finding(&self, s: Spilled) -> Finding {
        Finding {
            severity: s.s,
            code: self.codes.get(s.c as usize).copied().unwrap_or("finding"),
            row: s.r,
            column: s.k.and_then(|k| self.columns.get(k as usize).cloned()),
            value: s.v,
            message: s.m,
        }
    }
}

/// Reads a file from an offset of its own (the file's shared cursor is left alone), up to `end`.
struct ReadAt<'a> {
    file: Option<&'a std::fs::File>,
    pos: u64,
    end: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = buf.len().min((self.end - self.pos) as usize);
        let Some(file) = self.file.filter(|_| want > 0) else {
            return Ok(0);
        };
        let n = file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Findings {
    pub fn new() -> Findings {
        Findings::default()
    }

    /// Adds a finding (see the type's note on order).
    pub fn push(&mut self, f: Finding) {
        match f.severity {
            Severity::Error => self.errors += 1,
            Severity::Warning => self.warnings += 1,
        }
        match self
            .counts
            .iter_mut()
            .find(|c| std::ptr::eq(c.code, f.code) || c.code == f.code)
        {
            Some(c) => {
                c.count += 1;
                if c.count <= SAMPLE_PER_CODE as u64 {
                    self.sample.push(f.clone());
                }
            }
            None => {
                self.counts.push(CodeCount {
                    code: f.code,
                    severity: f.severity,
                    count: 1,
                });
                self.sample.push(f.clone());
            }
        }
        let row = f.row.unwrap_or(0);
        if row < self.last_row {
            self.late.push(f);
            return;
        }
        self.last_row = row;
        match &mut self.spill {
            Some(spill) => spill.push(f),
            None if self.head.len() < IN_MEMORY => self.head.push(f),
            None => self.start_spill(Spill::with(tempfile::tempfile()), f),
        }
    }

    /// Takes in the findings of another pass over the same rows (the renderer's); when read,
    /// they come after these at the same row.
    pub fn absorb(&mut self, other: Findings) {
        if other.is_empty() {
            return;
        }
        self.errors += other.errors;
        self.warnings += other.warnings;
        for c in &other.counts {
            let shown = match self.counts.iter_mut().find(|x| x.code == c.code) {
                Some(x) => {
                    x.count += c.count;
                    (x.count - c.count) as usize
                }
                None => {
                    self.counts.push(c.clone());
                    0
                }
            };
            let room = SAMPLE_PER_CODE.saturating_sub(shown);
            self.sample.extend(
                other
                    .sample
                    .iter()
                    .filter(|f| f.code == c.code)
                    .take(room)
                    .cloned(),
            );
        }
        self.others.push(other);
    }

    /// Moves the findings in memory to `spill`, then `f`. Without a temporary file, the
    /// findings in memory stay there; only those after them are counted as lost.
    fn start_spill(&mut self, mut spill: Spill, f: Finding) {
        if spill.file.is_some() {
            for h in self.head.drain(..) {
                spill.push(h);
            }
        }
        spill.push(f);
        self.spill = Some(spill);
    }

    pub fn extend(&mut self, fs: impl IntoIterator<Item = Finding>) {
        for f in fs {
            self.push(f);
        }
    }

    pub fn len(&self) -> u64 {
        self.errors + self.warnings
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn warnings(&self) -> u64 {
        self.warnings
    }

    /// How many findings of each code, in the order the codes first appeared.
    pub fn counts(&self) -> &[CodeCount] {
        &self.counts
    }

    /// The first `SAMPLE_PER_CODE` findings of each code, in row order.
    pub fn sample(&self) -> Vec<&Finding> {
        let mut s: Vec<&Finding> = self.sample.iter().collect();
        s.sort_by_key(|f| f.row.unwrap_or(0));
        s
    }

    /// Every finding, in row order (whole-file findings first), read back from the temporary
    /// file where they were spilled. If findings could not be kept, a last finding says so.
    pub fn iter(&self) -> impl Iterator<Item = Finding> + '_ {
        let mut late: Vec<&Finding> = self.late.iter().collect();
        late.sort_by_key(|f| f.row.unwrap_or(0));
        let mut lost = None;
        // Set when the temporary file cannot be read back: said as a last finding.
        let unread = std::rc::Rc::new(std::cell::Cell::new(None::<String>));
        let head = self.head.iter().cloned();
        let streamed: Box<dyn Iterator<Item = Finding> + '_> = match &self.spill {
            None => Box::new(head),
            Some(spill) => {
                lost = spill.lost.clone();
                let file = ReadAt {
                    file: spill.file.as_ref(),
                    pos: 0,
                    end: spill.written,
                };
                let reader = std::io::BufReader::with_capacity(
                    SPILL_CHUNK,
                    std::io::Read::chain(file, &spill.pending[..]),
                );
                let read = serde_json::Deserializer::from_reader(reader).into_iter::<Spilled>();
                let unread = unread.clone();
                Box::new(head.chain(read.map_while(move |s| match s {
                    Ok(s) => Some(spill.finding(s)),
                    Err(e) => {
                        unread.set(Some(e.to_string()));
                        None
                    }
                })))
            }
        };
        let tail = std::iter::once_with(move || {
            let incomplete = |what: String| Finding::error("findings.incomplete", what);
            match (lost, unread.take()) {
                (_, Some(e)) => Some(incomplete(format!("the findings after this point could not be read back from their temporary file ({e}); read the file again to see them"))),
                (Some((why, n)), None) => Some(incomplete(format!("{n} more findings could not be kept: their temporary file failed ({why}); fix the findings shown and read the file again to see the rest"))),
                (None, None) => None,
            }
        })
        .flatten();
        let mut sources: Vec<Box<dyn Iterator<Item = Finding> + '_>> =
            vec![streamed, Box::new(late.into_iter().cloned())];
        sources.extend(
            self.others
                .iter()
                .map(|o| Box::new(o.iter()) as Box<dyn Iterator<Item = Finding> + '_>),
        );
        Merge {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        }
        .chain(tail)
    }
}

/// Sources each in row order merged by row; at the same row, the earlier source first.
struct Merge<'a> {
    sources: Vec<std::iter::Peekable<Box<dyn Iterator<Item = Finding> + 'a>>>,
}

impl Iterator for Merge<'_> {
    type Item = Finding;
    fn next(&mut self) -> Option<Finding> {
        let mut best: Option<(usize, u64)> = None;
        for (i, s) in self.sources.iter_mut().enumerate() {
            if let Some(f) = s.peek() {
                let row = f.row.unwrap_or(0);
                if best.is_none_or(|(_, b)| row < b) {
                    best = Some((i, row));
                }
            }
        }
        self.sources[best?.0].next()
    }
}

impl Serialize for Findings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// Spreadsheet column letter for a 0-based index: 0 -> A, 25 -> Z, 26 -> AA.
pub fn column_letter(index: usize) -> String {
    let mut n = index + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(b'A' + rem as u8);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(code: &'static str, row: u64, col: &str) -> Finding {
        Finding::warning(code, format!("{code} at {row}"))
            .at(row)
            .col(&ColumnRef {
                name: format!("Column {col}"),
                letter: col.to_string(),
            })
            .value(format!("value \"{row}\"\nwith a line break"))
    }

    #[test]
    fn thousands_of_findings_spill_and_read_back_in_row_order() {
        let mut fs = Findings::new();
        fs.push(Finding::error(
            "file.first",
            "a whole-file finding at the start",
        ));
        for row in 2..10_002u64 {
            fs.push(warning("name.transliterated", row, "B"));
            if row % 1000 == 0 {
                fs.push(Finding::error("iban.checksum", "bad").at(row));
            }
        }
        // Findings made at the end: a whole-file one and one at an earlier row.
        fs.push(Finding::warning("address.not_sent", "not sent"));
        fs.push(Finding::error("total.mismatch", "total").at(7));
        assert!(
            fs.spill.is_some(),
            "10,000 findings are not all kept in memory"
        );
        assert_eq!((fs.errors(), fs.warnings(), fs.len()), (12, 10_001, 10_013));
        let all: Vec<Finding> = fs.iter().collect();
        assert_eq!(all.len(), 10_013);
        let rows: Vec<u64> = all.iter().map(|f| f.row.unwrap_or(0)).collect();
        assert!(rows.windows(2).all(|w| w[0] <= w[1]), "row order");
        assert_eq!(all[0].code, "file.first");
        assert_eq!(all[1].code, "address.not_sent");
        // At row 7: the streamed finding first, then the late one.
        let at7: Vec<&str> = all
            .iter()
            .filter(|f| f.row == Some(7))
            .map(|f| f.code)
            .collect();
        assert_eq!(at7, ["name.transliterated", "total.mismatch"]);
        // Read back exactly as pushed.
        assert_eq!(
            all.iter().find(|f| f.row == Some(9_999)),
            Some(&warning("name.transliterated", 9_999, "B"))
        );
        let counts: Vec<(&str, u64)> = fs.counts().iter().map(|c| (c.code, c.count)).collect();
        assert_eq!(
            counts,
            [
                ("file.first", 1),
                ("name.transliterated", 10_000),
                ("iban.checksum", 10),
                ("address.not_sent", 1),
                ("total.mismatch", 1)
            ]
        );
        let sample = fs.sample();
        assert_eq!(sample.len(), 1 + SAMPLE_PER_CODE + 10 + 1 + 1);
        assert!(sample.windows(2).all(|w| w[0].row <= w[1].row));
        // Read twice: the same.
        assert_eq!(fs.iter().count(), 10_013);
        let json = serde_json::to_value(&fs).unwrap();
        assert_eq!(json.as_array().map(Vec::len), Some(10_013));
    }

    #[test]
    fn absorbed_findings_merge_after_the_same_row() {
        let mut a = Findings::new();
        let mut b = Findings::new();
        for row in [2, 4, 6] {
            a.push(warning("a", row, "A"));
        }
        for row in [3, 4, 9] {
            b.push(Finding::error("layout.value", "too long").at(row));
        }
        a.absorb(b);
        let seq: Vec<(u64, &str)> = a.iter().map(|f| (f.row.unwrap(), f.code)).collect();
        assert_eq!(
            seq,
            [
                (2, "a"),
                (3, "layout.value"),
                (4, "a"),
                (4, "layout.value"),
                (6, "a"),
                (9, "layout.value")
            ]
        );
        assert_eq!((a.errors(), a.warnings()), (3, 3));
        assert_eq!(a.sample().len(), 6);
    }

    #[test]
    fn findings_that_could_not_be_kept_are_said_not_dropped() {
        let mut fs = Findings::new();
        for row in 1..=(IN_MEMORY as u64 + 10) {
            fs.push(warning("w", row, "A"));
        }
        // As if the temporary file had failed after what was written so far.
        let spill = fs.spill.as_mut().unwrap();
        spill.write_pending();
        spill.lost = Some(("No space left on device".into(), 0));
        for row in 5_000..5_005 {
            fs.push(warning("w", row, "A"));
        }
        let all: Vec<Finding> = fs.iter().collect();
        assert_eq!(all.len(), IN_MEMORY + 10 + 1);
        let last = all.last().unwrap();
        assert_eq!(last.code, "findings.incomplete");
        assert!(
            last.message
                .starts_with("5 more findings could not be kept"),
            "{last}"
        );
        assert!(last.message.contains("No space left on device"), "{last}");
    }

    #[test]
    fn without_a_temporary_file_the_findings_in_memory_are_kept() {
        let mut fs = Findings::new();
        for row in 1..=IN_MEMORY as u64 {
            fs.push(warning("w", row, "A"));
        }
        let no_tmp = Spill::with(Err(std::io::Error::other("TMPDIR is not writable")));
        fs.start_spill(no_tmp, warning("w", 3_000, "A"));
        fs.push(warning("w", 3_001, "A"));
        let all: Vec<Finding> = fs.iter().collect();
        assert_eq!(all.len(), IN_MEMORY + 1);
        assert_eq!(all[IN_MEMORY - 1].row, Some(IN_MEMORY as u64));
        let last = all.last().unwrap();
        assert_eq!(last.code, "findings.incomplete");
        assert!(
            last.message
                .starts_with("2 more findings could not be kept"),
            "{last}"
        );
        assert!(last.message.contains("TMPDIR is not writable"), "{last}");
    }

    #[test]
    fn a_spill_that_cannot_be_read_back_ends_with_a_finding_saying_so() {
        let mut fs = Findings::new();
        for row in 1..=(IN_MEMORY as u64 + 5) {
            fs.push(warning("w", row, "A"));
        }
        fs.spill
            .as_mut()
            .unwrap()
            .pending
            .extend_from_slice(b"{not json");
        let all: Vec<Finding> = fs.iter().collect();
        assert_eq!(all.len(), IN_MEMORY + 5 + 1);
        let last = all.last().unwrap();
        assert_eq!(last.code, "findings.incomplete");
        assert!(last.message.contains("could not be read back"), "{last}");
    }

    #[test]
    fn letters() {
        assert_eq!(column_letter(0), "A");
        assert_eq!(column_letter(25), "Z");
        assert_eq!(column_letter(26), "AA");
        assert_eq!(column_letter(701), "ZZ");
        assert_eq!(column_letter(702), "AAA");
    }
}
