//! Validation: turns raw rows into payments and reports every problem, located by spreadsheet
//! row and column. Pure: the caller reads the file (intake) and decides what to do with the
//! payments; the clock comes in as `Rules::today`. Never stops at the first error.

use crate::config::{AmountLimit, Config, DecimalSeparator, DomesticBankCode};
use crate::finding::{ColumnRef, Finding, Findings, Severity};
use crate::intake::columns::{self, Field, Mapping};
use crate::intake::{CellKind, IntakeError, RawRow, SourceFormat, Table};
use crate::model::charset::{self, CharChange, Charset};
use crate::model::{
    Account, AccountProblem, Address, AmountProblem, BankId, Bic, ChannelKind, Cnaps, Currency,
    DomesticAccount, Iban, Money, Payment, Written, parse_decimal, written_with,
};
use chrono::{Datelike, NaiveDate, Weekday};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;

/// How many rows from the top are searched for the header.
const HEADER_SEARCH_ROWS: usize = 30;

/// Everything validation needs to know, resolved from the config once per file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub channel: String,
    pub kind: ChannelKind,
    pub bank: String,
    pub charset: Charset,
    pub max_name_length: usize,
    pub max_remittance_length: usize,
    pub address_mode: crate::config::AddressMode,
    pub domestic_digits: (usize, usize),
    pub domestic_bank_code: DomesticBankCode,
    pub require_bic: bool,
    pub currencies: Vec<Currency>,
    pub default_currency: Currency,
    pub decimal: DecimalSeparator,
    pub date_format: Option<String>,
    pub today: NaiveDate,
    pub default_date: NaiveDate,
    pub max_days_ahead: u32,
    pub max_amount: Option<AmountLimit>,
    pub duplicate_rows: Severity,
    pub formula_values: Severity,
    pub holidays: Vec<NaiveDate>,
}

impl Rules {
    /// Rules for `channel` (which must exist in `cfg`) as of `today`.
    pub fn new(cfg: &Config, channel: &str, today: NaiveDate) -> Option<Rules> {
        let ch = cfg.channel(channel)?;
        let bank = cfg.banks.get(&ch.bank)?;
        let debtor = cfg.company.accounts.get(&ch.debtor_account)?;
        Some(Rules {
            channel: channel.to_string(),
            kind: ch.kind,
            bank: ch.bank.clone(),
            charset: bank.charset,
            max_name_length: bank.max_name_length,
            max_remittance_length: bank.max_remittance_length,
            address_mode: bank.address_mode,
            domestic_digits: (
                bank.domestic_account_digits[0],
                bank.domestic_account_digits[1],
            ),
            domestic_bank_code: bank.domestic_bank_code,
            require_bic: bank.require_bic,
            currencies: bank.currencies.clone(),
            default_currency: ch.currency.unwrap_or(debtor.currency),
            decimal: ch.decimal_separator(),
            date_format: ch.date_format.clone(),
            today,
            default_date: cfg.default_execution_date(ch, today),
            max_days_ahead: ch.limits.max_days_ahead,
            max_amount: ch.limits.max_amount.clone(),
            duplicate_rows: ch.duplicate_rows,
            formula_values: ch.formula_values,
            holidays: cfg.paygate.holidays.clone(),
        })
    }
}

/// The outcome of validating one file.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub file: PathBuf,
    pub channel: String,
    pub format: SourceFormat,
    pub header_row: Option<u64>,
    /// Columns used, as header -> field.
    pub columns: Vec<(ColumnRef, &'static str)>,
    /// Columns present in the file and not used.
    pub ignored_columns: Vec<ColumnRef>,
    /// Data rows read (blank rows and a totals row not counted).
    pub rows: u64,
    /// Rows that became valid payments.
    pub payments: u64,
    /// Sum of the valid payments per currency.
    pub totals: BTreeMap<Currency, Decimal>,
    /// In row order; kept in bounded memory (see `Findings`).
    pub findings: Findings,
}

impl Report {
    pub fn errors(&self) -> u64 {
        self.findings.errors()
    }

    pub fn warnings(&self) -> u64 {
        self.findings.warnings()
    }
}

/// Reads `table` to the end, validating every row; each valid payment goes to `sink`.
/// Only an unreadable file is an `Err`; problems in the content are findings in the report.
pub fn validate_table(
    table: &mut Table,
    rules: &Rules,
    channel: &crate::config::Channel,
    mut sink: impl FnMut(Payment),
) -> Result<Report, IntakeError> {
    let mut report = Report {
        file: table.path.clone(),
        channel: rules.channel.clone(),
        format: table.format.clone(),
        header_row: None,
        columns: vec![],
        ignored_columns: vec![],
        rows: 0,
        payments: 0,
        totals: BTreeMap::new(),
        findings: Findings::new(),
    };
    // The header is searched among the first non-blank rows; they are kept to be processed after.
    let mut top = top_rows(table)?;
    if top.is_empty() {
        report.findings.push(Finding::error(
            "file.empty",
            "the file is empty: it has no header and no payment rows",
        ));
        return Ok(report);
    }
    let (header_idx, mapping) = match columns::find_header(&top, channel, &rules.channel) {
        Ok(found) => found,
        Err(mut findings) => {
            // The encoding was a guess: the header found in another allowed one decides.
            let mut retried = None;
            for &enc in &table.other_encodings {
                let mut other = table.reopen_as(channel, enc)?;
                let other_top = top_rows(&mut other)?;
                if let Ok(found) = columns::find_header(&other_top, channel, &rules.channel) {
                    retried = Some((other, other_top, found));
                    break;
                }
            }
            match retried {
                Some((other, other_top, found)) => {
                    *table = other;
                    top = other_top;
                    report.format = table.format.clone();
                    found
                }
                None => {
                    if let SourceFormat::Csv { encoding, .. } = &report.format {
                        let hint = read_as_hint(encoding, &top[0], &rules.channel);
                        for f in findings.iter_mut().filter(|f| {
                            f.code == "header.missing" || f.code == "header.missing_column"
                        }) {
                            f.message.push_str(&hint);
                        }
                    }
                    report.findings.extend(findings);
                    return Ok(report);
                }
            }
        }
    };
    report.header_row = Some(mapping.header_row);
    report.columns = mapping
        .used()
        .into_iter()
        .map(|(c, f)| (c, f.key()))
        .collect();
    report.ignored_columns = mapping.ignored();
    let mut v = Validator::new(rules, mapping);
    for title in &top[..header_idx] {
        v.declared_in_title(title);
    }
    let max_rows = channel.limits.max_rows;
    let too_many = |table: &Table| IntakeError::TooManyRows {
        path: table.path.clone(),
        limit: max_rows,
    };
    for r in &top[header_idx + 1..] {
        if let Some(p) = v.row(r) {
            sink(p);
        }
        if v.rows > max_rows {
            return Err(too_many(table));
        }
    }
    let mut row = RawRow::default();
    while table.next_row(&mut row)? {
        if let Some(p) = v.row(&row) {
            sink(p);
        }
        if v.rows > max_rows {
            return Err(too_many(table));
        }
    }
    v.finish(&mut report);
    Ok(report)
}

/// The first non-blank rows, among which the header is searched.
fn top_rows(table: &mut Table) -> Result<Vec<RawRow>, IntakeError> {
    let mut top: Vec<RawRow> = Vec::new();
    let mut row = RawRow::default();
    while top.len() < HEADER_SEARCH_ROWS && table.next_row(&mut row)? {
        if !row.is_blank() {
            top.push(row.clone());
        }
    }
    Ok(top)
}

/// What a header problem in a CSV adds: the encoding the file was read in, what its first row
/// reads as in it, and how to name the right one (text in the wrong encoding reads garbled).
fn read_as_hint(encoding: &str, first: &RawRow, channel: &str) -> String {
    let mut shown: String = first
        .cells
        .iter()
        .filter(|c| !c.is_blank())
        .map(|c| c.text.trim())
        .collect::<Vec<_>>()
        .join(" | ");
    if let Some((cut, _)) = shown.char_indices().nth(80) {
        shown.truncate(cut);
        shown.push('…');
    }
    let unicode = encoding.starts_with("UTF-");
    if unicode && !shown.contains('\u{FFFD}') {
        // Valid Unicode is read right: the header itself is what is missing.
        return format!(". The first row reads `{shown}`");
    }
    format!(
        ". The file was read as {encoding}, in which its first row reads `{shown}`; if that looks garbled, the file is in another encoding: set channels.{channel}.encoding (e.g. \"windows-1252\" for Western European Excel, \"gb18030\" for Chinese Excel), or add it to channels.{channel}.encodings (every encoding listed there was tried)"
    )
}

/// Totals the file declares about itself (a "合计" trailer row or a total cell above the header).
#[derive(Debug, Default)]
struct Declared {
    /// The text of the total (read at the end, when the file's decimal separator is known),
    /// whether it was a number cell, its row, column and value as shown.
    total: Option<(String, bool, u64, ColumnRef, String)>,
    count: Option<(u64, u64, ColumnRef, String)>,
}

const TOTAL_LABELS: &[&str] = &[
    "合计",
    "总计",
    "合计金额",
    "总金额",
    "金额合计",
    "付款总额",
    "总额",
    "total",
    "totals",
    "totalamount",
    "grandtotal",
    "controlsum",
    "sum",
    "summe",
];
const COUNT_LABELS: &[&str] = &[
    "笔数",
    "总笔数",
    "合计笔数",
    "总人数",
    "人数",
    "count",
    "numberofpayments",
    "numberoftransactions",
    "nbofpayments",
    "transactions",
];

struct Validator<'a> {
    rules: &'a Rules,
    map: Mapping,
    findings: Findings,
    /// The current row's findings, put in column order before they join `findings`.
    row_findings: Vec<Finding>,
    /// First row of every (account, amount, reference) and every end-to-end id: the only state
    /// that grows with the row count (see `FirstSeen`).
    seen_rows: FirstSeen,
    seen_ids: FirstSeen,
    totals: BTreeMap<Currency, Decimal>,
    /// Sum of every parseable amount, for comparison with a declared total.
    all_amounts: Decimal,
    currencies_seen: Vec<Currency>,
    rows: u64,
    payments: u64,
    declared: Declared,
    /// The file has addresses, and the bank takes none: said once, at the end.
    address_not_sent: bool,
    /// Under `decimal_separator = "auto"`: how this file writes amounts, fixed by the first one
    /// that can be read only one way (its row and text, for the message when another differs).
    convention: Option<(Written, u64, String)>,
}

impl<'a> Validator<'a> {
    fn new(rules: &'a Rules, map: Mapping) -> Validator<'a> {
        Validator {
            rules,
            map,
            findings: Findings::new(),
            row_findings: Vec::new(),
            seen_rows: FirstSeen::default(),
            seen_ids: FirstSeen::default(),
            totals: BTreeMap::new(),
            all_amounts: Decimal::ZERO,
            currencies_seen: Vec::new(),
            rows: 0,
            payments: 0,
            declared: Declared::default(),
            address_not_sent: false,
            convention: None,
        }
    }

    /// The cell of `field` in `row`, when the field is mapped and the cell is not blank.
    /// A cell that is unreadable (bad encoding, formula error) is reported once, as such, and
    /// then treated as present-but-unusable: it yields `None` here and `broken` is true.
    fn cell<'r>(&self, row: &'r RawRow, field: Field) -> Option<(&'r crate::intake::Cell, usize)> {
        let idx = self.map.col(field)?;
        row.get(idx)
            .filter(|c| !c.is_blank() && !unreadable(c))
            .map(|c| (c, idx))
    }

    fn broken(&self, row: &RawRow, field: Field) -> bool {
        self.map
            .col(field)
            .and_then(|i| row.get(i))
            .is_some_and(unreadable)
    }

    fn at(&self, f: Finding, row: &RawRow, idx: usize, value: &str) -> Finding {
        f.at(row.number).col(&self.map.column_ref(idx)).value(value)
    }

    /// Labels like `合计: 12,345.00` or `Total | 12345.00` in a title row.
    fn declared_in_title(&mut self, row: &RawRow) {
        for (i, cell) in row.cells.iter().enumerate() {
            let (label, inline) = match cell.text.split_once([':', '：']) {
                Some((l, v)) => (columns::normalize(l), Some(v.trim())),
                None => (columns::normalize(&cell.text), None),
            };
            let value = inline
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .or_else(|| {
                    row.cells[i + 1..]
                        .iter()
                        .find(|c| !c.is_blank())
                        .map(|c| c.text.trim().to_string())
                });
            let Some(value) = value else { continue };
            // A title or totals cell: its own label names it, not the header above.
            let col = ColumnRef {
                name: cell.text.trim().to_string(),
                letter: crate::finding::column_letter(i),
            };
            if TOTAL_LABELS.contains(&label.as_str()) {
                self.declared.total = Some((value.clone(), false, row.number, col, value));
            } else if COUNT_LABELS.contains(&label.as_str())
                && let Ok(n) = value.replace([',', ' '], "").parse::<u64>()
            {
                self.declared.count = Some((n, row.number, col, value));
            }
        }
    }

    /// A totals row: its first non-blank cell (or its name cell) says 合计 / Total.
    fn is_totals_row(&self, row: &RawRow) -> bool {
        let first = row.cells.iter().find(|c| !c.is_blank());
        let name = self.cell(row, Field::Name).map(|(c, _)| c);
        [first, name]
            .into_iter()
            .flatten()
            .any(|c| columns::normalizes_to_any(&c.text, TOTAL_LABELS))
    }

    fn row(&mut self, row: &RawRow) -> Option<Payment> {
        if row.is_blank() {
            return None;
        }
        if self.is_totals_row(row) {
            if let Some((c, idx)) = self.cell(row, Field::Amount) {
                self.declared.total = Some((
                    c.text.clone(),
                    c.kind == CellKind::Number,
                    row.number,
                    self.map.column_ref(idx),
                    c.text.clone(),
                ));
            }
            self.declared_in_title(row);
            return None;
        }
        self.rows += 1;
        let mut out = std::mem::take(&mut self.row_findings);
        out.clear();

        for (idx, removed) in &row.invisible {
            let used = Field::ALL.iter().any(|&f| self.map.col(f) == Some(*idx));
            if used && let Some(cell) = row.get(*idx) {
                out.push(self.at(
                    Finding::warning(
                        "cell.invisible",
                        format!("removed characters Excel does not show: {removed}; check that the value is what was meant"),
                    ),
                    row,
                    *idx,
                    &cell.text,
                ));
            }
        }
        for (idx, cell) in row.cells.iter().enumerate() {
            if cell.kind != CellKind::Error && has_replacement(&cell.text) {
                out.push(self.at(Finding::error("encoding.invalid", "this cell has bytes that are not valid text in the file's encoding; save the file as \"CSV UTF-8\" or as .xlsx"), row, idx, &cell.text));
            } else if cell.kind == CellKind::Error {
                out.push(self.at(
                    Finding::error(
                        "cell.formula_error",
                        "the cell shows a formula error; fix the formula or type the value",
                    ),
                    row,
                    idx,
                    &cell.text,
                ));
            }
        }

        let name = self.text_field(row, Field::Name, &mut out);
        let account = self.account(row, &mut out);
        let agent = self.bank_code(row, account.as_ref(), &mut out);
        let currency = self.currency(row, &mut out);
        let amount = self.amount(row, currency, &mut out);
        let remittance = self.text_field(row, Field::Reference, &mut out);
        let address = self.address(row, &mut out);
        let e2e = self.end_to_end_id(row, &mut out);
        let date = self.execution_date(row, &mut out);
        let bank_name = self
            .cell(row, Field::BankName)
            .map(|(c, _)| c.text.trim().to_string());

        if let (Some(acct), Some(m)) = (&account, &amount) {
            let reference = remittance.as_deref().unwrap_or("");
            let key = (acct.as_str(), m.currency(), m.minor_units(), reference);
            if let Some(first) = self.seen_rows.first(&key, row.number) {
                let f = Finding {
                    severity: self.rules.duplicate_rows,
                    ..Finding::error(
                        "row.duplicate",
                        format!("pays the same amount to the same account with the same reference as row {first}; if both payments are intended, give them different references"),
                    )
                }
                .at(row.number)
                .value(format!("rows {first} and {}", row.number));
                out.push(f);
            }
        }
        let errors = out.iter().filter(|f| f.severity == Severity::Error).count();
        out.sort_by(|a, b| column_order(a).cmp(&column_order(b)));
        self.findings.extend(out.drain(..));
        self.row_findings = out;
        if errors > 0 {
            return None;
        }
        let (Some(name), Some(account), Some(amount), Some(execution_date)) =
            (name, account, amount, date)
        else {
            return None;
        };
        self.payments += 1;
        *self.totals.entry(amount.currency()).or_default() += amount.amount();
        Some(Payment {
            row: row.number,
            end_to_end_id: e2e,
            creditor_name: name,
            creditor_account: account,
            creditor_agent: agent,
            creditor_bank_name: bank_name,
            creditor_address: address.flatten(),
            amount,
            remittance,
            execution_date,
        })
    }

    /// Name and reference: required (name only), character set, length.
    fn text_field(&self, row: &RawRow, field: Field, out: &mut Vec<Finding>) -> Option<String> {
        let (what, max, required) = match field {
            Field::Name => ("name", self.rules.max_name_length, true),
            _ => ("reference", self.rules.max_remittance_length, false),
        };
        let Some((cell, idx)) = self.cell(row, field) else {
            if required && !self.broken(row, field) {
                let mut f =
                    Finding::error("name.missing", format!("the payee's {what} is missing"))
                        .at(row.number);
                if let Some(i) = self.map.col(field) {
                    f = f.col(&self.map.column_ref(i)).value("");
                }
                out.push(f);
            }
            return None;
        };
        let text = cell.text.trim();
        self.check_text(row, idx, text, what, what, max, out);
        // Checked on the cell as written: a leading tab or CR is trimmed away above, but a
        // spreadsheet would still read what follows as a formula.
        let raw = cell.text.trim_start_matches(' ');
        if crate::results::is_formula_like(raw) {
            let code = if field == Field::Name {
                "name.formula"
            } else {
                "reference.formula"
            };
            out.push(Finding {
                severity: self.rules.formula_values,
                ..Finding::error(
                    code,
                    format!(
                        "the payee's {what} starts with `{}`: a spreadsheet would run it as a formula (formula injection); remove the leading character",
                        raw.chars().next().unwrap_or('=').escape_default()
                    ),
                )
                .at(row.number)
                .col(&self.map.column_ref(idx))
                .value(text)
            });
        }
        Some(text.to_string())
    }

    /// Character set and length of a text the bank receives. `code` prefixes the finding codes
    /// (`name.charset`, `address.too_long` …).
    #[allow(clippy::too_many_arguments)]
    fn check_text(
        &self,
        row: &RawRow,
        idx: usize,
        text: &str,
        code: &'static str,
        what: &str,
        max: usize,
        out: &mut Vec<Finding>,
    ) {
        let codes: [&'static str; 3] = match code {
            "name" => ["name.transliterated", "name.charset", "name.too_long"],
            "reference" => [
                "reference.transliterated",
                "reference.charset",
                "reference.too_long",
            ],
            _ => [
                "address.transliterated",
                "address.charset",
                "address.too_long",
            ],
        };
        let (converted, changes) = charset::convert(text, self.rules.charset);
        let set = match self.rules.charset {
            Charset::SepaLatin => "the SEPA Latin character set",
            Charset::Utf8 => "printable text",
        };
        let mut replaced = Vec::new();
        let mut unsupported = Vec::new();
        for c in &changes {
            match c {
                CharChange::Replaced { ch, with } => replaced.push(format!("`{ch}` as `{with}`")),
                CharChange::Unsupported { ch } => {
                    unsupported.push(format!("`{}` (U+{:04X})", ch.escape_debug(), *ch as u32))
                }
            }
        }
        let bank = &self.rules.bank;
        if !replaced.is_empty() {
            let msg = format!(
                "will be sent with {}: bank `{bank}` accepts only {set}",
                replaced.join(", ")
            );
            out.push(self.at(Finding::warning(codes[0], msg), row, idx, text));
        }
        if !unsupported.is_empty() {
            let them = if unsupported.len() == 1 { "it" } else { "them" };
            let msg = format!(
                "{} cannot be sent: bank `{bank}` accepts only {set}; write the {what} without {them}",
                unsupported.join(", ")
            );
            out.push(self.at(Finding::error(codes[1], msg), row, idx, text));
        }
        let len = converted.chars().count();
        if len > max {
            let msg = format!(
                "the {what} is {len} characters long; bank `{bank}` accepts at most {max} — shorten it (it is never cut off silently)"
            );
            out.push(self.at(Finding::error(codes[2], msg), row, idx, text));
        }
    }

    /// The payee's postal address, in the bank's address mode. `None` when it has errors;
    /// `Some(None)` when there is no address (or the bank takes none).
    fn address(&mut self, row: &RawRow, out: &mut Vec<Finding>) -> Option<Option<Address>> {
        use crate::config::AddressMode;
        // (field, what, ISO 20022 maximum length in pain.001.001.03/.09)
        const PARTS: [(Field, &str, usize); 7] = [
            (Field::Street, "street", 70),
            (Field::BuildingNumber, "building number", 16),
            (Field::Postcode, "postcode", 16),
            (Field::Town, "town", 35),
            (Field::Country, "country", 2),
            (Field::AddressLine1, "address line", 70),
            (Field::AddressLine2, "address line", 70),
        ];
        let mut values: [Option<(String, usize)>; 7] = Default::default();
        for (i, (field, _, _)) in PARTS.iter().enumerate() {
            if self.broken(row, *field) {
                return None;
            }
            values[i] = self
                .cell(row, *field)
                .map(|(c, idx)| (c.text.trim().to_string(), idx));
        }
        if values.iter().all(Option::is_none) {
            return Some(None);
        }
        let mode = self.rules.address_mode;
        if mode == AddressMode::None {
            self.address_not_sent = true;
            return Some(None);
        }
        let before = out.len();
        for (i, (_, what, max)) in PARTS.iter().enumerate() {
            let Some((text, idx)) = &values[i] else {
                continue;
            };
            if *what == "country" {
                let up = text.to_ascii_uppercase();
                if !crate::model::is_country(&up) {
                    out.push(self.at(
                        Finding::error(
                            "address.country",
                            "not an ISO 3166 country code (two letters, e.g. DE, CN, GB)",
                        ),
                        row,
                        *idx,
                        text,
                    ));
                }
            } else {
                self.check_text(row, *idx, text, "address", what, *max, out);
            }
        }
        let get = |i: usize| values[i].as_ref().map(|(t, _)| t.clone());
        let address = Address {
            street: get(0),
            building_number: get(1),
            postcode: get(2),
            town: get(3),
            country: get(4).map(|c| c.to_ascii_uppercase()),
            lines: [get(5), get(6)].into_iter().flatten().collect(),
        };
        let where_ = |field: Field| self.map.col(field).map(|i| self.map.column_ref(i));
        let mut need = |field: Field, code: &'static str, msg: String| {
            let mut f = Finding::error(code, msg).at(row.number);
            if let Some(c) = where_(field) {
                let found = PARTS
                    .iter()
                    .position(|(f, _, _)| *f == field)
                    .and_then(|i| values[i].as_ref())
                    .map_or("", |(t, _)| t.as_str());
                f = f.col(&c).value(found);
            }
            out.push(f);
        };
        let bank = &self.rules.bank;
        match mode {
            AddressMode::Structured | AddressMode::Hybrid => {
                if address.town.is_none() {
                    need(
                        Field::Town,
                        "address.town_missing",
                        format!("bank `{bank}` needs the town of every address it receives"),
                    );
                }
                if address.country.is_none() {
                    need(
                        Field::Country,
                        "address.country_missing",
                        format!("bank `{bank}` needs the country of every address it receives"),
                    );
                }
                if mode == AddressMode::Structured && !address.lines.is_empty() {
                    need(
                        Field::AddressLine1,
                        "address.lines_not_allowed",
                        format!(
                            "bank `{bank}` takes structured addresses only (street, postcode, town, country): put the address line's parts in those columns"
                        ),
                    );
                }
            }
            AddressMode::Unstructured => {
                if address.lines.is_empty() {
                    need(
                        Field::AddressLine1,
                        "address.lines_required",
                        format!(
                            "bank `{bank}` takes addresses as address lines only: give an Address column"
                        ),
                    );
                } else if address.has_structured_parts() || address.town.is_some() {
                    need(
                        Field::AddressLine1,
                        "address.parts_not_sent",
                        format!(
                            "bank `{bank}` takes address lines only: street, building number, postcode and town are not sent; put them in the address lines"
                        ),
                    );
                }
            }
            AddressMode::None => {}
        }
        if out[before..].iter().any(|f| f.severity == Severity::Error) {
            None
        } else {
            Some(Some(address))
        }
    }

    fn account(&self, row: &RawRow, out: &mut Vec<Finding>) -> Option<Account> {
        let Some((cell, idx)) = self.cell(row, Field::Account) else {
            if self.broken(row, Field::Account) {
                return None;
            }
            let i = self.map.col(Field::Account).unwrap_or(0);
            out.push(self.at(
                Finding::error("account.missing", "the payee's account number is missing"),
                row,
                i,
                "",
            ));
            return None;
        };
        let raw = cell.text.trim();
        if cell.kind == CellKind::Number {
            out.push(self.at(Finding::error("account.numeric_cell", format!("the account number is stored as a number, so Excel has rounded it or dropped leading zeros (Excel shows it as {}); format the column as Text and type the numbers again", excel_general(raw))), row, idx, raw));
            return None;
        }
        if looks_scientific(raw) {
            out.push(self.at(Finding::error("account.scientific", "the account number was damaged by Excel (scientific notation: digits are lost); in the original spreadsheet format the column as Text, type the numbers again and re-export"), row, idx, raw));
            return None;
        }
        let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        let b = compact.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1].is_ascii_alphabetic() {
            return match Iban::parse(raw) {
                Ok(i) => Some(Account::Iban(i)),
                Err(e) => {
                    let code = match e {
                        AccountProblem::IbanChecksum => "iban.checksum",
                        AccountProblem::IbanLength { .. } => "iban.length",
                        AccountProblem::IbanCountry(_) => "iban.country",
                        _ => "iban.format",
                    };
                    out.push(self.at(
                        Finding::error(code, format!("the IBAN is not valid: {e}")),
                        row,
                        idx,
                        raw,
                    ));
                    None
                }
            };
        }
        let (lo, hi) = self.rules.domestic_digits;
        match DomesticAccount::parse(raw, lo, hi) {
            Ok(d) => {
                if d.card_luhn_ok() == Some(false) {
                    out.push(self.at(Finding::warning("account.luhn", "this looks like a bank card number, but its last (check) digit does not match: please double-check the number with the employee"), row, idx, raw));
                }
                Some(Account::Domestic(d))
            }
            Err(e) => {
                let code = match e {
                    AccountProblem::DomesticLength { .. } => "account.length",
                    _ => "account.format",
                };
                let msg = match e {
                    AccountProblem::NotDigits => {
                        "the account is neither an IBAN nor a domestic account number (digits only)"
                            .to_string()
                    }
                    e => format!("{e}"),
                };
                out.push(self.at(Finding::error(code, msg), row, idx, raw));
                None
            }
        }
    }

    fn bank_code(
        &self,
        row: &RawRow,
        account: Option<&Account>,
        out: &mut Vec<Finding>,
    ) -> Option<BankId> {
        if self.broken(row, Field::BankCode) {
            return None;
        }
        let found = self.cell(row, Field::BankCode);
        let id = match found {
            None => None,
            Some((cell, idx)) => {
                let raw = cell.text.trim();
                let digits: String = raw
                    .chars()
                    .filter(|c| !c.is_whitespace() && *c != '-')
                    .collect();
                if digits.bytes().all(|b| b.is_ascii_digit()) {
                    match Cnaps::parse(&digits) {
                        Ok(c) => {
                            if cell.kind == CellKind::Number {
                                out.push(self.at(Finding::warning("bank_code.numeric_cell", "the bank code is stored as a number; format the column as Text so that leading zeros are kept"), row, idx, raw));
                            }
                            Some(BankId::Cnaps(c))
                        }
                        Err(_) => {
                            out.push(self.at(Finding::error("bank_code.format", "a CNAPS bank code (联行号) has exactly 12 digits; a BIC has 8 or 11 letters and digits"), row, idx, raw));
                            return None;
                        }
                    }
                } else {
                    match Bic::parse(raw) {
                        Ok(b) => Some(BankId::Bic(b)),
                        Err(e) => {
                            let code = if matches!(e, AccountProblem::BicCountry(_)) {
                                "bic.country"
                            } else {
                                "bic.format"
                            };
                            out.push(self.at(
                                Finding::error(code, format!("the BIC is not valid: {e}")),
                                row,
                                idx,
                                raw,
                            ));
                            return None;
                        }
                    }
                }
            }
        };
        let at_col = |f: Finding| match self.map.col(Field::BankCode) {
            Some(i) => f
                .at(row.number)
                .col(&self.map.column_ref(i))
                .value(found.map(|(c, _)| c.text.trim()).unwrap_or("")),
            None => f.at(row.number),
        };
        match (account, &id) {
            (Some(Account::Domestic(_)), _) => match (self.rules.domestic_bank_code, &id) {
                (DomesticBankCode::Cnaps, None) => out.push(at_col(Finding::error(
                        "bank_code.missing",
                        "a domestic account needs the 12-digit CNAPS code (联行号) of the payee's bank branch",
                    )),
                ),
                (DomesticBankCode::Cnaps, Some(BankId::Bic(_))) => out.push(at_col(Finding::error(
                        "bank_code.not_cnaps",
                        format!(
                            "bank `{}` needs the 12-digit CNAPS code (联行号) for domestic accounts, not a BIC",
                            self.rules.bank
                        ),
                    )),
                ),
                (DomesticBankCode::Bic, None) => out.push(at_col(Finding::error(
                        "bic.missing",
                        "a domestic account needs the BIC of the payee's bank",
                    )),
                ),
                (DomesticBankCode::Bic, Some(BankId::Cnaps(_))) => out.push(at_col(Finding::error(
                        "bank_code.not_bic",
                        format!(
                            "bank `{}` identifies banks by BIC, not by a CNAPS code",
                            self.rules.bank
                        ),
                    )),
                ),
                _ => {}
            },
            (Some(Account::Iban(_)), None) if self.rules.require_bic => out.push(at_col(Finding::error(
                    "bic.missing",
                    format!(
                        "bank `{}` needs the payee bank's BIC for IBAN payments",
                        self.rules.bank
                    ),
                )),
            ),
            (Some(Account::Iban(_)), Some(BankId::Cnaps(_))) => out.push(at_col(Finding::error(
                    "bank_code.not_bic",
                    "an IBAN payment needs a BIC, not a CNAPS code",
                )),
            ),
            _ => {}
        }
        id
    }

    fn currency(&mut self, row: &RawRow, out: &mut Vec<Finding>) -> Option<Currency> {
        if self.broken(row, Field::Currency) {
            return None;
        }
        let ccy = match self.cell(row, Field::Currency) {
            None => self.rules.default_currency,
            Some((cell, idx)) => {
                let raw = cell.text.trim();
                let c = match raw {
                    "人民币" | "RMB" | "rmb" | "元" => Ok(Currency::CNY),
                    "美元" => Ok(Currency::USD),
                    "欧元" => Ok(Currency::EUR),
                    _ => raw.parse::<Currency>(),
                };
                match c {
                    Ok(c) if self.rules.currencies.contains(&c) => c,
                    Ok(c) => {
                        out.push(self.at(
                            Finding::error(
                                "currency.not_allowed",
                                format!(
                                        "bank `{}` does not pay {c} from this channel (it pays {})",
                                        self.rules.bank,
                                        self.rules
                                            .currencies
                                            .iter()
                                            .map(|c| c.as_str())
                                            .collect::<Vec<_>>()
                                            .join(", ")
                                    ),
                            ),
                            row,
                            idx,
                            raw,
                        ));
                        return None;
                    }
                    Err(_) => {
                        out.push(self.at(Finding::error("currency.unknown", "not an ISO 4217 currency code (use three letters such as CNY, EUR, USD)"), row, idx, raw));
                        return None;
                    }
                }
            }
        };
        if !self.currencies_seen.contains(&ccy) {
            self.currencies_seen.push(ccy);
        }
        Some(ccy)
    }

    fn amount(
        &mut self,
        row: &RawRow,
        currency: Option<Currency>,
        out: &mut Vec<Finding>,
    ) -> Option<Money> {
        let Some((cell, idx)) = self.cell(row, Field::Amount) else {
            if self.broken(row, Field::Amount) {
                return None;
            }
            let i = self.map.col(Field::Amount).unwrap_or(0);
            out.push(self.at(
                Finding::error("amount.missing", "the amount is missing"),
                row,
                i,
                "",
            ));
            return None;
        };
        let raw = cell.text.trim();
        let decimal_comma = if cell.kind == CellKind::Number {
            false
        } else {
            match self.separator(raw, row.number, currency) {
                Ok(comma) => comma,
                Err((code, msg)) => {
                    out.push(self.at(Finding::error(code, msg), row, idx, raw));
                    return None;
                }
            }
        };
        let problem = |p: AmountProblem| -> (&'static str, String) {
            match p {
                AmountProblem::NotANumber => (
                    "amount.not_a_number",
                    "the amount is not a number (write it like 1234.56)".into(),
                ),
                AmountProblem::NotPositive => (
                    "amount.not_positive",
                    "the amount must be greater than zero".into(),
                ),
                AmountProblem::TooLarge => (
                    "amount.too_large",
                    "the amount is too large to be a payment (at most 18 digits)".into(),
                ),
                AmountProblem::TooManyDecimals {
                    currency,
                    allowed: 0,
                } => (
                    "amount.too_many_decimals",
                    format!("{currency} has no decimals: the amount must be a whole number"),
                ),
                AmountProblem::TooManyDecimals { currency, allowed } => (
                    "amount.too_many_decimals",
                    format!("{currency} allows at most {allowed} decimals"),
                ),
            }
        };
        let checked = parse_decimal(raw, decimal_comma)
            .map_err(problem)
            .map(|value| {
                // A sum that no longer fits is not a total anyone declared: stop checking it.
                self.all_amounts = self.all_amounts.checked_add(value).unwrap_or(Decimal::MAX);
                currency.map(|c| Money::new(value, c).map_err(problem))
            });
        let money = match checked {
            Ok(Some(Ok(m))) => m,
            // No valid currency: already reported; the amount was still checked to be a number.
            Ok(None) => return None,
            Ok(Some(Err((code, msg)))) | Err((code, msg)) => {
                out.push(self.at(Finding::error(code, msg), row, idx, raw));
                return None;
            }
        };
        let currency = money.currency();
        if let Some(max) = self
            .rules
            .max_amount
            .as_ref()
            .and_then(|l| l.for_currency(currency))
            && money.amount() > max
        {
            out.push(self.at(Finding::error("amount.over_limit", format!("the amount is over this channel's limit of {max} {currency} per payment; such a payment must be approved and made separately")), row, idx, raw));
            return None;
        }
        Some(money)
    }

    /// Whether the text amount `raw` (in row `row`) has a decimal comma, by the channel's
    /// `decimal_separator`; under `auto` the first amount that can be read only one way fixes
    /// the file's convention, and amounts that disagree with it, or could be read both ways
    /// before it is known, are refused.
    fn separator(
        &mut self,
        raw: &str,
        row: u64,
        currency: Option<Currency>,
    ) -> Result<bool, (&'static str, String)> {
        let written = written_with(raw);
        let ch = &self.rules.channel;
        let set = |sep: &str| format!("channels.{ch}.decimal_separator = \"{sep}\"");
        let either = format!("channels.{ch}.decimal_separator (\".\" or \",\")");
        match (self.rules.decimal, written) {
            (DecimalSeparator::Point, Written::Comma) => Err((
                "amount.decimal_separator",
                format!(
                    "the amount is written with a decimal comma (like 1.234,56), but this channel's amounts have a decimal point (1,234.56); write it that way, or set {}",
                    set(",")
                ),
            )),
            (DecimalSeparator::Comma, Written::Point) => Err((
                "amount.decimal_separator",
                format!(
                    "the amount is written with a decimal point (like 1,234.56), but this channel's amounts have a decimal comma (1.234,56); write it that way, or set {}",
                    set(".")
                ),
            )),
            (DecimalSeparator::Point, _) => Ok(false),
            (DecimalSeparator::Comma, _) => Ok(true),
            (DecimalSeparator::Auto, Written::Plain) => Ok(false),
            (DecimalSeparator::Auto, Written::Either) => match &self.convention {
                Some((c, _, _)) => Ok(*c == Written::Comma),
                // `1,234` read with a decimal comma has three decimals: only a currency that has
                // three (BHD, KWD…) makes that a question. For the others the separator groups
                // thousands, which says how the file writes amounts.
                None if currency
                    .unwrap_or(self.rules.default_currency)
                    .minor_units()
                    < 3 =>
                {
                    let comma = raw.contains('.');
                    let w = if comma {
                        Written::Comma
                    } else {
                        Written::Point
                    };
                    self.convention = Some((w, row, raw.to_string()));
                    Ok(comma)
                }
                None => {
                    let read = |comma| {
                        parse_decimal(raw, comma).map_or("?".to_string(), |d| d.to_string())
                    };
                    Err((
                        "amount.ambiguous",
                        format!(
                            "`{raw}` could be {} (a thousands separator) or {} (a decimal separator), and no amount above it tells which; write it without the thousands separator or with its decimals, or set {either}",
                            read(false),
                            read(true)
                        ),
                    ))
                }
            },
            (DecimalSeparator::Auto, w) => match &self.convention {
                None => {
                    // Only an amount that reads fixes the convention (not a typo like 1.234.56).
                    if parse_decimal(raw, w == Written::Comma).is_ok() {
                        self.convention = Some((w, row, raw.to_string()));
                    }
                    Ok(w == Written::Comma)
                }
                Some((c, _, _)) if *c == w => Ok(w == Written::Comma),
                Some((_, first_row, first)) => {
                    let name = |w: Written| {
                        if w == Written::Comma {
                            "a decimal comma (1.234,56)"
                        } else {
                            "a decimal point (1,234.56)"
                        }
                    };
                    Err((
                        "amount.separator_mixed",
                        format!(
                            "the amount is written with {}, but row {first_row} writes `{first}` with {}; one file writes its amounts one way: correct the rows that differ, or set {either}",
                            name(w),
                            name(if w == Written::Comma {
                                Written::Point
                            } else {
                                Written::Comma
                            })
                        ),
                    ))
                }
            },
        }
    }

    /// Whether `raw` has a decimal comma, without judging it: the channel's setting, else the
    /// file's convention once known, else what the text shows (a decimal point if either).
    fn comma_when_known(&self, raw: &str) -> bool {
        match self.rules.decimal {
            DecimalSeparator::Point => false,
            DecimalSeparator::Comma => true,
            DecimalSeparator::Auto => match (&self.convention, written_with(raw)) {
                (Some((c, _, _)), _) => *c == Written::Comma,
                (None, w) => w == Written::Comma,
            },
        }
    }

    fn end_to_end_id(&mut self, row: &RawRow, out: &mut Vec<Finding>) -> Option<String> {
        let (cell, idx) = self.cell(row, Field::EndToEndId)?;
        let raw = cell.text.trim();
        if raw.chars().count() > 35 {
            out.push(self.at(
                Finding::error(
                    "end_to_end_id.too_long",
                    "an end-to-end id has at most 35 characters",
                ),
                row,
                idx,
                raw,
            ));
        }
        let bad = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "/-?:().,'+ ".contains(*c)));
        if let Some(c) = bad {
            out.push(self.at(Finding::error("end_to_end_id.charset", format!("`{c}` is not allowed in an end-to-end id (letters, digits and / - ? : ( ) . , ' + only)")), row, idx, raw));
        } else if raw.starts_with('/') || raw.ends_with('/') || raw.contains("//") {
            out.push(self.at(
                Finding::error(
                    "end_to_end_id.charset",
                    "an end-to-end id must not start or end with `/` or contain `//`",
                ),
                row,
                idx,
                raw,
            ));
        }
        if let Some(first) = self.seen_ids.first(&raw, row.number) {
            out.push(self.at(Finding::error("end_to_end_id.duplicate", format!("this end-to-end id is already used in row {first}; each payment needs its own")), row, idx, raw));
        }
        Some(raw.to_string())
    }

    fn execution_date(&self, row: &RawRow, out: &mut Vec<Finding>) -> Option<NaiveDate> {
        let Some((cell, idx)) = self.cell(row, Field::ExecutionDate) else {
            return (!self.broken(row, Field::ExecutionDate)).then_some(self.rules.default_date);
        };
        let raw = cell.text.trim();
        let date = match parse_date(raw, self.rules.date_format.as_deref()) {
            Ok(d) => d,
            Err(DateProblem::Ambiguous) => {
                out.push(self.at(Finding::error("date.ambiguous", "the date could be day/month or month/day; write it as 2026-12-31, or set the channel's date_format"), row, idx, raw));
                return None;
            }
            Err(DateProblem::Invalid) => {
                out.push(self.at(
                    Finding::error("date.invalid", "not a date (write it as 2026-12-31)"),
                    row,
                    idx,
                    raw,
                ));
                return None;
            }
        };
        let r = self.rules;
        if date < r.today {
            out.push(self.at(
                Finding::error(
                    "date.past",
                    format!("the execution date is in the past (today is {})", r.today),
                ),
                row,
                idx,
                raw,
            ));
            return None;
        }
        let last = r.today + chrono::Days::new(u64::from(r.max_days_ahead));
        if date > last {
            out.push(self.at(
                Finding::error(
                    "date.too_far",
                    format!(
                        "the execution date is more than {} days ahead (latest {last})",
                        r.max_days_ahead
                    ),
                ),
                row,
                idx,
                raw,
            ));
            return None;
        }
        if matches!(date.weekday(), Weekday::Sat | Weekday::Sun) || r.holidays.contains(&date) {
            out.push(self.at(Finding::warning("date.not_business_day", "the execution date is not a business day; the bank will execute the payment on the next business day"), row, idx, raw));
        }
        Some(date)
    }

    fn finish(mut self, report: &mut Report) {
        let mut findings = Vec::new();
        if self.rows == 0 {
            findings.push(
                Finding::error(
                    "file.no_payments",
                    "the file has a header but no payment rows",
                )
                .at(self.map.header_row),
            );
        }
        let declared_total =
            self.declared
                .total
                .as_ref()
                .and_then(|(raw, number, row, col, value)| {
                    let comma = !number && self.comma_when_known(raw.trim());
                    parse_decimal(raw, comma).ok().map(|d| (d, row, col, value))
                });
        if let Some((declared, row, col, value)) = declared_total {
            if self.currencies_seen.len() > 1 {
                findings.push(Finding::warning("total.unchecked", "the file declares a total, but it has payments in several currencies, so the total cannot be checked").at(*row).col(col).value(value.clone()));
            } else if declared != self.all_amounts {
                findings.push(Finding::error("total.mismatch", format!("the file declares a total of {declared}, but its rows add up to {}; a row is missing, extra or changed", self.all_amounts)).at(*row).col(col).value(value.clone()));
            }
        }
        if self.address_not_sent {
            findings.push(Finding::warning("address.not_sent", format!("the file has payee addresses, but bank `{}` takes none (address_mode = \"none\"): they are not sent", self.rules.bank)));
        }
        if let Some((declared, row, col, value)) = &self.declared.count
            && *declared != self.rows
        {
            findings.push(
                Finding::error(
                    "count.mismatch",
                    format!(
                        "the file declares {declared} payments, but it has {} payment rows",
                        self.rows
                    ),
                )
                .at(*row)
                .col(col)
                .value(value.clone()),
            );
        }
        findings.sort_by(|a, b| {
            (a.row.unwrap_or(0), column_order(a)).cmp(&(b.row.unwrap_or(0), column_order(b)))
        });
        self.findings.extend(findings);
        report.findings = std::mem::take(&mut self.findings);
        report.rows = self.rows;
        report.payments = self.payments;
        report.totals = self.totals;
    }
}

/// The first row of each key, by a random-keyed 64-bit SipHash of the key: 12 bytes a slot
/// (plus hashbrown's control byte), so a million distinct keys take about 27 MB. Two different
/// keys are taken for the same one with a probability of about n²/2⁶⁵ per file (3 in 10⁸ at a
/// million rows); such a false duplicate is a finding that names the other row, which a person
/// can check, never a payment dropped or sent twice.
///
/// The table lives in the system allocator: when it doubles, the outgrown table (a large
/// mapping there) goes back to the kernel at once instead of staying resident in the process
/// allocator's arenas.
struct FirstSeen {
    table: hashbrown::HashTable<[u32; 3], allocator_api2::alloc::System>,
    hasher: RandomState,
}

impl Default for FirstSeen {
    fn default() -> FirstSeen {
        FirstSeen {
            table: hashbrown::HashTable::new_in(allocator_api2::alloc::System),
            hasher: RandomState::new(),
        }
    }
}

impl std::fmt::Debug for FirstSeen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FirstSeen({} keys)", self.table.len())
    }
}

impl FirstSeen {
    /// The first row that had `key`, or `None` after noting `row` as the first.
    fn first(&mut self, key: &impl std::hash::Hash, row: u64) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        let (lo, hi) = (h as u32, (h >> 32) as u32);
        let whole = |e: &[u32; 3]| u64::from(e[0]) | (u64::from(e[1]) << 32);
        match self.table.entry(h, |e| e[0] == lo && e[1] == hi, whole) {
            hashbrown::hash_table::Entry::Occupied(e) => Some(e.get()[2]),
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert([lo, hi, u32::try_from(row).unwrap_or(u32::MAX)]);
                None
            }
        }
    }
}

/// Findings of one row: the row's own first, then by column as the spreadsheet orders them.
fn column_order(f: &Finding) -> Option<(usize, &str)> {
    f.column
        .as_ref()
        .map(|c| (c.letter.len(), c.letter.as_str()))
}

fn unreadable(c: &crate::intake::Cell) -> bool {
    c.kind == CellKind::Error || has_replacement(&c.text)
}

/// Whether text holds U+FFFD (bytes the file's encoding could not read); its first byte, 0xEF,
/// is looked for first, which most cells do not have.
fn has_replacement(s: &str) -> bool {
    s.as_bytes().contains(&0xEF) && s.contains('\u{fffd}')
}

/// How Excel's General format shows a long number: `6228480402564890000` -> `6.22848E+18`.
fn excel_general(raw: &str) -> String {
    match raw.parse::<f64>() {
        Ok(v) if v.abs() >= 1e11 => {
            let s = format!("{v:.5E}");
            let (m, e) = s.split_once('E').unwrap_or((&s, "0"));
            let m = m.trim_end_matches('0').trim_end_matches('.');
            let e: i32 = e.parse().unwrap_or(0);
            format!("{m}E{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        _ => raw.to_string(),
    }
}

/// `6.22848E+18`: what Excel writes for a long number it has already rounded.
fn looks_scientific(s: &str) -> bool {
    let Some((mantissa, exp)) = s.split_once(['E', 'e']) else {
        return false;
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    !mantissa.is_empty()
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && mantissa.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && !exp.is_empty()
        && exp.bytes().all(|b| b.is_ascii_digit())
}

#[derive(Debug, PartialEq, Eq)]
enum DateProblem {
    Invalid,
    Ambiguous,
}

/// Dates as people write them. Day-first and month-first slashes are refused as ambiguous
/// unless the channel names its format.
fn parse_date(raw: &str, format: Option<&str>) -> Result<NaiveDate, DateProblem> {
    if let Some(f) = format
        && let Ok(d) = NaiveDate::parse_from_str(raw, f)
    {
        return Ok(d);
    }
    for f in [
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y.%m.%d",
        "%Y年%m月%d日",
        "%d.%m.%Y",
    ] {
        if let Ok(d) = NaiveDate::parse_from_str(raw, f) {
            return Ok(d);
        }
    }
    if raw.len() == 8
        && raw.bytes().all(|b| b.is_ascii_digit())
        && let Ok(d) = NaiveDate::parse_from_str(raw, "%Y%m%d")
    {
        return Ok(d);
    }
    // 2026-12-15 00:00:00 from a datetime cell exported as text.
    if let Some(d) = raw
        .get(..10)
        .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
        && raw[10..].starts_with([' ', 'T'])
    {
        return Ok(d);
    }
    let parts: Vec<&str> = raw.split('/').collect();
    if parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let (a, b) = (
            parts[0].parse::<u32>().unwrap_or(0),
            parts[1].parse::<u32>().unwrap_or(0),
        );
        if a > 12 && b <= 12 {
            return NaiveDate::parse_from_str(raw, "%d/%m/%Y").map_err(|_| DateProblem::Invalid);
        }
        if b > 12 && a <= 12 {
            return NaiveDate::parse_from_str(raw, "%m/%d/%Y").map_err(|_| DateProblem::Invalid);
        }
        return Err(DateProblem::Ambiguous);
    }
    Err(DateProblem::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn dates_people_write() {
        assert_eq!(parse_date("2026-12-15", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("2026/12/15", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("20261215", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("15.12.2026", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("2026年12月15日", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("2026-12-15 00:00:00", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("15/12/2026", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("12/15/2026", None), Ok(d(2026, 12, 15)));
        assert_eq!(parse_date("03/04/2026", None), Err(DateProblem::Ambiguous));
        assert_eq!(
            parse_date("03/04/2026", Some("%d/%m/%Y")),
            Ok(d(2026, 4, 3))
        );
        assert_eq!(parse_date("2026-02-30", None), Err(DateProblem::Invalid));
        assert_eq!(parse_date("next friday", None), Err(DateProblem::Invalid));
    }

    #[test]
    fn excel_general_format_of_long_numbers() {
        assert_eq!(excel_general("6228480402564890000"), "6.22848E+18");
        assert_eq!(excel_general("6217002900135730000"), "6.217E+18");
        assert_eq!(excel_general("12345"), "12345");
    }

    #[test]
    fn scientific_notation_is_recognised() {
        assert!(looks_scientific("6.22848E+18"));
        assert!(looks_scientific("6.22848e18"));
        assert!(!looks_scientific("6228480402564890018"));
        assert!(!looks_scientific("DE89370400440532013000"));
        assert!(!looks_scientific("E+18"));
    }
}
