//! Bank layouts defined as data: a TOML file in `templates/` describes header, detail and
//! trailer records, CSV or fixed-width, the output encoding (fixed widths count bytes in it, so
//! a Chinese character takes two in GBK), number and date formats, computed fields and
//! constants. Adding a bank's format needs no rebuild. A value that does not fit its field is an
//! error naming the row, the field and the value; it is cut only where the template allows it
//! for that (text) field.

use super::{BankFile, BatchHeader, Counting, FormatError, RenderError, Spill, Summary};
use crate::model::charset::convert;
use crate::model::{Currency, Payment};
use encoding_rs::Encoding;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// One line for `paygate formats`.
    pub description: String,
    pub layout: Layout,
    /// `utf-8`, `gbk`, `gb18030` (any WHATWG label encoding_rs knows).
    #[serde(default = "utf8")]
    pub encoding: String,
    #[serde(default)]
    pub line_ending: LineEnding,
    /// CSV: field separator.
    #[serde(default = "comma")]
    pub delimiter: char,
    /// CSV: when to quote values.
    #[serde(default)]
    pub quote: Quote,
    /// CSV: write the detail fields' names as a column header line (after any header records).
    #[serde(default)]
    pub header_row: bool,
    #[serde(default)]
    pub header: Vec<Record>,
    pub detail: Record,
    #[serde(default)]
    pub trailer: Vec<Record>,
    /// How the bank's result files for this layout look (domestic banks answer in kind).
    #[serde(default)]
    pub returns: Option<crate::bank::layout::ReturnLayout>,
}

fn utf8() -> String {
    "utf-8".into()
}
fn comma() -> char {
    ','
}

/// CSV or fixed-width: defined beside the bank's result-file layouts, which share it.
pub use crate::bank::layout::Layout;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LineEnding {
    #[default]
    Crlf,
    Lf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quote {
    /// Only values that contain the delimiter, a quote or a line break.
    #[default]
    Needed,
    Always,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Column name (CSV header line) and the name used in error messages.
    pub name: String,
    /// Where the value comes from (see `Source`); exactly one of `value` and `text`.
    #[serde(default)]
    pub value: Option<String>,
    /// A constant.
    #[serde(default)]
    pub text: Option<String>,
    /// Fixed width: the field's size in bytes of the output encoding. CSV: a maximum.
    #[serde(default)]
    pub width: Option<usize>,
    #[serde(default)]
    pub align: Option<Align>,
    /// Padding character for fixed widths: `" "` or `"0"`.
    #[serde(default)]
    pub pad: Option<char>,
    /// Amounts: `decimal` (1234.50, the currency's decimals) or `minor` (123450: implied
    /// decimals, in minor units).
    #[serde(default)]
    pub amount: Option<AmountFormat>,
    /// Dates: a chrono format, default `%Y-%m-%d`.
    #[serde(default)]
    pub date_format: Option<String>,
    /// `error` (default) or `truncate`; truncation is refused for ids, accounts and amounts.
    #[serde(default)]
    pub overflow: Overflow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AmountFormat {
    #[default]
    Decimal,
    Minor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    #[default]
    Error,
    Truncate,
}

/// The values a field can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Account,
    Name,
    BankCode,
    BankName,
    Amount,
    Currency,
    Reference,
    EndToEndId,
    ExecutionDate,
    Row,
    Sequence,
    DebtorAccount,
    DebtorBankCode,
    DebtorCurrency,
    CompanyName,
    MsgId,
    Count,
    Total,
    Created,
}

const SOURCES: &[(&str, Source)] = &[
    ("payment.account", Source::Account),
    ("payment.name", Source::Name),
    ("payment.bank_code", Source::BankCode),
    ("payment.bank_name", Source::BankName),
    ("payment.amount", Source::Amount),
    ("payment.currency", Source::Currency),
    ("payment.reference", Source::Reference),
    ("payment.end_to_end_id", Source::EndToEndId),
    ("payment.execution_date", Source::ExecutionDate),
    ("payment.row", Source::Row),
    ("record.sequence", Source::Sequence),
    ("debtor.account", Source::DebtorAccount),
    ("debtor.bank_code", Source::DebtorBankCode),
    ("debtor.currency", Source::DebtorCurrency),
    ("company.name", Source::CompanyName),
    ("batch.msg_id", Source::MsgId),
    ("batch.count", Source::Count),
    ("batch.total", Source::Total),
    ("batch.created", Source::Created),
];

impl Source {
    fn parse(s: &str) -> Option<Source> {
        SOURCES.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    fn per_payment(self) -> bool {
        matches!(
            self,
            Source::Account
                | Source::Name
                | Source::BankCode
                | Source::BankName
                | Source::Amount
                | Source::Currency
                | Source::Reference
                | Source::EndToEndId
                | Source::ExecutionDate
                | Source::Row
                | Source::Sequence
        )
    }

    fn numeric(self) -> bool {
        matches!(
            self,
            Source::Amount | Source::Total | Source::Count | Source::Row | Source::Sequence
        )
    }

    /// Values that must never be cut: a cut id, account or amount is a different one.
    fn exact(self) -> bool {
        !matches!(
            self,
            Source::Name | Source::BankName | Source::Reference | Source::CompanyName
        )
    }
}

impl Template {
    /// Parses and checks a template; every problem is reported, each with its key.
    pub fn parse(text: &str) -> Result<Template, Vec<String>> {
        let t: Template = toml::from_str::<toml::Value>(text)
            .map_err(|e| vec![e.to_string().trim().to_string()])
            .and_then(|v| {
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let msg = e.inner().to_string();
                    vec![format!(
                        "{}: {}",
                        e.path(),
                        msg.lines().next().unwrap_or_default()
                    )]
                })
            })?;
        let mut problems = Vec::new();
        if Encoding::for_label(t.encoding.as_bytes()).is_none() {
            problems.push(format!(
                "encoding: `{}` is not an encoding (use utf-8, gbk or gb18030)",
                t.encoding
            ));
        }
        if t.layout == Layout::Csv && (t.delimiter == '"' || t.delimiter == '\n') {
            problems.push("delimiter: must not be a quote or a line break".into());
        }
        let records = t
            .header
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("header[{i}]"), r, false))
            .chain(std::iter::once(("detail".to_string(), &t.detail, true)))
            .chain(
                t.trailer
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("trailer[{i}]"), r, false)),
            );
        for (rk, rec, is_detail) in records {
            if rec.fields.is_empty() {
                problems.push(format!("{rk}.fields: a record needs at least one field"));
            }
            for (i, f) in rec.fields.iter().enumerate() {
                let key = format!("{rk}.fields[{i}] ({})", f.name);
                match (&f.value, &f.text) {
                    (Some(v), None) => match Source::parse(v) {
                        None => problems.push(format!(
                            "{key}.value: unknown value `{v}`; the values are: {}",
                            SOURCES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                        )),
                        Some(s) if s.per_payment() && !is_detail => problems.push(format!(
                            "{key}.value: `{v}` exists only in detail records; header and trailer records can use batch.*, debtor.* and company.*"
                        )),
                        Some(s) if s.exact() && f.overflow == Overflow::Truncate => problems.push(format!(
                            "{key}.overflow: `{v}` must never be cut off (a cut id, account or amount is a different one); remove `overflow = \"truncate\"`"
                        )),
                        Some(_) => {}
                    },
                    (None, Some(_)) => {}
                    _ => problems.push(format!("{key}: give exactly one of `value` and `text`")),
                }
                if t.layout == Layout::FixedWidth && f.width.is_none() {
                    problems.push(format!(
                        "{key}.width: every field of a fixed-width layout needs a width (bytes)"
                    ));
                }
                let with_time = f.value.as_deref() == Some("batch.created");
                if let Some(d) = &f.date_format
                    && !crate::model::date_format_ok(d, with_time)
                {
                    problems.push(format!(
                        "{key}.date_format: `{d}` is not a date format (chrono's strftime: %d %m %Y …)"
                    ));
                }
                if let Some(p) = f.pad
                    && !p.is_ascii()
                {
                    problems.push(format!(
                        "{key}.pad: the padding character must be ASCII, e.g. \" \" or \"0\""
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    /// Loads `NAME.toml` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Template, FormatError> {
        let path = dir.join(format!("{name}.toml"));
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        let text = match std::fs::read_to_string(&path) {
            Ok(t) if valid_name => t,
            _ => {
                return Err(FormatError::Unknown {
                    name: name.to_string(),
                    path: path.display().to_string(),
                });
            }
        };
        Template::parse(&text).map_err(|p| FormatError::BadTemplate {
            path: path.display().to_string(),
            problems: p.join("; "),
        })
    }

    /// Every `*.toml` in `dir`, by name, loaded or with its problem.
    pub fn load_all(dir: &Path) -> Vec<(String, Result<Template, String>)> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| {
                let t = Template::load(dir, &n).map_err(|e| e.to_string());
                (n, t)
            })
            .collect()
    }
}

/// A template-defined file being written.
pub struct TemplateFile {
    t: Template,
    header: BatchHeader,
    encoding: &'static Encoding,
    details: Spill,
    count: u64,
    totals: BTreeMap<Currency, Decimal>,
    /// Minor units of the batch total, for `batch.total` with `amount = "minor"`.
    total_minor: i128,
}

impl TemplateFile {
    pub fn new(t: Template, header: BatchHeader) -> TemplateFile {
        let encoding = Encoding::for_label(t.encoding.as_bytes()).unwrap_or(encoding_rs::UTF_8);
        TemplateFile {
            t,
            header,
            encoding,
            details: Spill::new(),
            count: 0,
            totals: BTreeMap::new(),
            total_minor: 0,
        }
    }

    fn eol(&self) -> &'static [u8] {
        match self.t.line_ending {
            LineEnding::Crlf => b"\r\n",
            LineEnding::Lf => b"\n",
        }
    }

    /// The text of one field, before encoding and padding.
    fn value(&self, f: &Field, p: Option<&Payment>, e2e: &str, seq: u64) -> String {
        let Some(src) = f.value.as_deref().and_then(Source::parse) else {
            return f.text.clone().unwrap_or_default();
        };
        let text = |s: &str| convert(s, self.header.profile.charset).0.into_owned();
        let amount = |minor: i128, scale: u32| match f.amount.unwrap_or_default() {
            AmountFormat::Minor => minor.to_string(),
            AmountFormat::Decimal => Decimal::from_i128_with_scale(minor, scale).to_string(),
        };
        let date_fmt = f.date_format.as_deref().unwrap_or("%Y-%m-%d");
        let h = &self.header;
        match (src, p) {
            (Source::Account, Some(p)) => p.creditor_account.as_str().to_string(),
            (Source::Name, Some(p)) => text(&p.creditor_name),
            (Source::BankCode, Some(p)) => p
                .creditor_agent
                .as_ref()
                .map_or(String::new(), |a| a.as_str().to_string()),
            (Source::BankName, Some(p)) => {
                p.creditor_bank_name.as_deref().map_or(String::new(), text)
            }
            (Source::Amount, Some(p)) => amount(
                i128::from(p.amount.minor_units()),
                p.amount.currency().minor_units(),
            ),
            (Source::Currency, Some(p)) => p.amount.currency().to_string(),
            (Source::Reference, Some(p)) => p.remittance.as_deref().map_or(String::new(), text),
            (Source::EndToEndId, Some(_)) => e2e.to_string(),
            (Source::ExecutionDate, Some(p)) => p.execution_date.format(date_fmt).to_string(),
            (Source::Row, Some(p)) => p.row.to_string(),
            (Source::Sequence, _) => seq.to_string(),
            (Source::DebtorAccount, _) => h.debtor_account.as_str().to_string(),
            (Source::DebtorBankCode, _) => h
                .debtor_agent
                .as_ref()
                .map_or(String::new(), |a| a.as_str().to_string()),
            (Source::DebtorCurrency, _) => h.debtor_currency.to_string(),
            (Source::CompanyName, _) => text(&h.company_name),
            (Source::MsgId, _) => h.msg_id.clone(),
            (Source::Count, _) => self.count.to_string(),
            // One currency per file (checked in `finish`).
            (Source::Total, _) => {
                let scale = self.totals.keys().next().map_or(2, |c| c.minor_units());
                amount(self.total_minor, scale)
            }
            (Source::Created, _) => h
                .created
                .format(f.date_format.as_deref().unwrap_or("%Y%m%d%H%M%S"))
                .to_string(),
            (_, None) => String::new(),
        }
    }

    /// Encodes and fits one field; errors name the row and field.
    fn field_bytes(
        &self,
        f: &Field,
        value: &str,
        row: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        let err = |problem: String| RenderError::Value {
            row,
            field: f.name.clone(),
            value: value.to_string(),
            problem,
        };
        let (bytes, _, unmappable) = self.encoding.encode(value);
        if unmappable {
            return Err(err(format!(
                "cannot be written in {}; the bank's layout needs another spelling",
                self.encoding.name()
            )));
        }
        let src = f.value.as_deref().and_then(Source::parse);
        let numeric = src.is_some_and(Source::numeric);
        match (self.t.layout, f.width) {
            (Layout::FixedWidth, Some(width)) | (Layout::Csv, Some(width))
                if bytes.len() > width =>
            {
                if f.overflow == Overflow::Truncate {
                    let mut cut = String::new();
                    for c in value.chars() {
                        let mut next = cut.clone();
                        next.push(c);
                        if self.encoding.encode(&next).0.len() > width {
                            break;
                        }
                        cut = next;
                    }
                    return self.field_bytes(
                        &Field {
                            overflow: Overflow::Error,
                            ..f.clone()
                        },
                        &cut,
                        row,
                        out,
                    );
                }
                return Err(err(format!(
                    "is {} bytes in {}; the field holds {width}",
                    bytes.len(),
                    self.encoding.name()
                )));
            }
            (Layout::FixedWidth, Some(width)) => {
                let pad = f.pad.unwrap_or(if numeric { '0' } else { ' ' }) as u8;
                let fill = width - bytes.len();
                let right = f.align.map_or(numeric, |a| a == Align::Right);
                if right {
                    out.extend(std::iter::repeat_n(pad, fill));
                    out.extend_from_slice(&bytes);
                } else {
                    out.extend_from_slice(&bytes);
                    out.extend(std::iter::repeat_n(pad, fill));
                }
            }
            _ => out.extend_from_slice(&csv_quote(&bytes, self.t.delimiter, self.t.quote)),
        }
        Ok(())
    }

    fn record(
        &self,
        rec: &Record,
        p: Option<&Payment>,
        e2e: &str,
        seq: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), RenderError> {
        let row = p.map_or(0, |p| p.row);
        let mut delim = [0u8; 4];
        let delim = self.t.delimiter.encode_utf8(&mut delim).as_bytes().to_vec();
        for (i, f) in rec.fields.iter().enumerate() {
            if i > 0 && self.t.layout == Layout::Csv {
                out.extend_from_slice(&delim);
            }
            let v = self.value(f, p, e2e, seq);
            self.field_bytes(f, &v, row, out)?;
        }
        out.extend_from_slice(self.eol());
        Ok(())
    }
}

fn csv_quote(bytes: &[u8], delimiter: char, quote: Quote) -> Vec<u8> {
    let needs = bytes.iter().any(|&b| b == b'"' || b == b'\n' || b == b'\r')
        || (delimiter.is_ascii() && bytes.contains(&(delimiter as u8)));
    if quote == Quote::Always || (quote == Quote::Needed && needs) {
        let mut q = Vec::with_capacity(bytes.len() + 2);
        q.push(b'"');
        for &b in bytes {
            if b == b'"' {
                q.push(b'"');
            }
            q.push(b);
        }
        q.push(b'"');
        q
    } else {
        bytes.to_vec()
    }
}

impl BankFile for TemplateFile {
    fn add(&mut self, p: &Payment, e2e: &str) -> Result<(), RenderError> {
        let mut line = Vec::with_capacity(256);
        self.record(&self.t.detail, Some(p), e2e, self.count + 1, &mut line)?;
        self.details.write_all(&line)?;
        self.count += 1;
        *self.totals.entry(p.amount.currency()).or_default() += p.amount.amount();
        self.total_minor += i128::from(p.amount.minor_units());
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut dyn Write) -> Result<Summary, RenderError> {
        let mut this = *self;
        // A control total over several currencies means nothing: refuse rather than add them.
        let uses_total = this
            .t
            .header
            .iter()
            .chain(&this.t.trailer)
            .flat_map(|r| &r.fields)
            .find(|f| f.value.as_deref() == Some("batch.total"));
        if let Some(f) = uses_total
            && this.totals.len() > 1
        {
            return Err(RenderError::Value {
                row: 0,
                field: f.name.clone(),
                value: this.totals.keys().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
                problem: "is a total over several currencies; this layout needs one file per currency (split the input by currency)".into(),
            });
        }
        let details = std::mem::replace(&mut this.details, Spill::new());
        let mut counting = Counting {
            inner: out,
            bytes: 0,
        };
        let mut buf = Vec::new();
        for rec in &this.t.header {
            this.record(rec, None, "", 0, &mut buf)?;
        }
        if this.t.layout == Layout::Csv && this.t.header_row {
            let names = Record {
                fields: this
                    .t
                    .detail
                    .fields
                    .iter()
                    .map(|f| Field {
                        text: Some(f.name.clone()),
                        value: None,
                        width: None,
                        ..f.clone()
                    })
                    .collect(),
            };
            this.record(&names, None, "", 0, &mut buf)?;
        }
        counting.write_all(&buf)?;
        details.drain_into(&mut counting)?;
        buf.clear();
        for rec in &this.t.trailer {
            this.record(rec, None, "", 0, &mut buf)?;
        }
        counting.write_all(&buf)?;
        counting.flush()?;
        Ok(Summary {
            payments: this.count,
            control_sum: this.totals.values().copied().sum(),
            totals: this.totals,
            bytes: counting.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_problems_are_all_reported() {
        let text = r#"
description = "x"
layout = "fixed-width"
encoding = "latin-9000"
[[header]]
fields = [{ name = "n", value = "payment.amount", width = 5 }]
[detail]
fields = [
  { name = "acct", value = "payment.account", width = 10, overflow = "truncate" },
  { name = "nm", value = "payment.name" },
  { name = "x", value = "payment.nothing", width = 1 },
  { name = "y", width = 1 },
  { name = "d", value = "payment.execution_date", width = 8, date_format = "%Y%}" },
]
"#;
        let p = Template::parse(text).unwrap_err();
        let all = p.join("\n");
        for want in [
            "encoding: `latin-9000`",
            "header[0].fields[0] (n).value: `payment.amount` exists only in detail records",
            "detail.fields[0] (acct).overflow",
            "detail.fields[1] (nm).width",
            "detail.fields[2] (x).value: unknown value `payment.nothing`",
            "detail.fields[3] (y): give exactly one of `value` and `text`",
            "detail.fields[4] (d).date_format: `%Y%}` is not a date format",
        ] {
            assert!(all.contains(want), "missing {want:?} in:\n{all}");
        }
        assert_eq!(p.len(), 7, "{all}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let p = Template::parse(
            "description = \"x\"\nlayout = \"csv\"\ncolour = 1\n[detail]\nfields = []\n",
        )
        .unwrap_err();
        assert!(p[0].contains("colour"), "{p:?}");
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(csv_quote(b"plain", ',', Quote::Needed), b"plain");
        assert_eq!(csv_quote(b"a,b", ',', Quote::Needed), b"\"a,b\"");
        assert_eq!(
            csv_quote(b"say \"hi\"", ',', Quote::Needed),
            b"\"say \"\"hi\"\"\""
        );
        assert_eq!(csv_quote(b"x", ',', Quote::Always), b"\"x\"");
        assert_eq!(csv_quote(b"a;b", ',', Quote::Needed), b"a;b");
    }
}
