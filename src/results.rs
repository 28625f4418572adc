//! Result reports for the people who dropped the file: one row per original row (row number,
//! payee, masked account, amount, status, reason and its explanation, bank reference) and a
//! summary, written to the channel's `results/` folder as CSV (in the channel's encoding; UTF-8
//! with a BOM so that Excel opens it right) and as XLSX. Written atomically.

use crate::bank::reasons::{Language, explain};
use crate::config::Channel;
use crate::reconcile::PaymentState;
use crate::store::StoredPayment;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::model::mask;

struct Line {
    row: String,
    payee: String,
    account: String,
    amount: String,
    currency: String,
    status: String,
    code: String,
    explanation: String,
    reference: String,
}

impl Line {
    /// Every column after the row number, in the reports' order (the row is a number in XLSX).
    fn after_row(&self) -> [&String; 8] {
        [
            &self.payee,
            &self.account,
            &self.amount,
            &self.currency,
            &self.status,
            &self.code,
            &self.explanation,
            &self.reference,
        ]
    }
}

fn headers(lang: Language) -> [&'static str; 9] {
    match lang {
        Language::En => [
            "Row",
            "Payee",
            "Account",
            "Amount",
            "Currency",
            "Status",
            "Reason code",
            "Explanation",
            "Bank reference",
        ],
        Language::Zh => [
            "行号",
            "收款人",
            "账号",
            "金额",
            "币种",
            "状态",
            "原因代码",
            "说明",
            "银行流水号",
        ],
    }
}

fn lines(payments: &[StoredPayment], lang: Language) -> (Vec<Line>, Vec<String>) {
    let mut totals: BTreeMap<(&'static str, String), (u64, Decimal)> = BTreeMap::new();
    let mut out = Vec::new();
    for p in payments {
        let state = PaymentState::parse(&p.state).unwrap_or(PaymentState::Pending);
        let scale = p
            .currency
            .parse::<crate::model::Currency>()
            .map_or(2, |c| c.minor_units());
        let amount = Decimal::new(p.amount_minor, scale);
        let group = match state {
            PaymentState::Settled => "paid",
            PaymentState::Rejected | PaymentState::Returned => "not paid",
            _ => "open",
        };
        let t = totals.entry((group, p.currency.clone())).or_default();
        t.0 += 1;
        t.1 += amount;
        let code = p.reason_code.clone().unwrap_or_default();
        let mut explanation = explain(&code, lang).unwrap_or_default().to_string();
        if let Some(text) = &p.reason_text {
            if !explanation.is_empty() {
                explanation.push_str(" — ");
            }
            explanation.push_str(text);
        }
        out.push(Line {
            row: p.row_no.to_string(),
            payee: p.creditor_name.clone(),
            account: mask(&p.account),
            amount: amount.to_string(),
            currency: p.currency.clone(),
            status: state.label(lang).to_string(),
            code,
            explanation,
            reference: p.bank_reference.clone().unwrap_or_default(),
        });
    }
    let summary = totals
        .iter()
        .map(|((g, ccy), (n, sum))| {
            let word = match (lang, *g) {
                (Language::En, g) => g.to_string(),
                (Language::Zh, "paid") => "已付款".into(),
                (Language::Zh, "not paid") => "未付款".into(),
                (Language::Zh, _) => "处理中".into(),
            };
            format!("{word}: {n}, {sum} {ccy}")
        })
        .collect();
    (out, summary)
}

/// Whether a spreadsheet would read `v` as a formula: it starts with `=`, `+`, `-`, `@`, a
/// tab or a carriage return (OWASP's list for CSV injection).
pub fn is_formula_like(v: &str) -> bool {
    v.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A value that a spreadsheet would run as a formula gets a leading `'` (OWASP). Every CSV
/// paygate writes for people goes through here; XLSX cells are written as text.
pub fn neutralize(v: &str) -> String {
    if is_formula_like(v) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

/// Every finding of a file as CSV (UTF-8 with a BOM, for Excel), streamed from `findings` into
/// `path` (durably): the `NAME.errors.csv` beside a refused file and `--findings FILE`.
pub fn write_findings_csv(
    path: &Path,
    findings: &crate::finding::Findings,
    lang: Language,
) -> std::io::Result<()> {
    crate::durable::write(path, |w| {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        findings_csv(&mut w, findings, lang)?;
        std::io::Write::flush(&mut w)
    })
}

fn findings_csv(
    w: &mut dyn std::io::Write,
    findings: &crate::finding::Findings,
    lang: Language,
) -> std::io::Result<()> {
    w.write_all(b"\xEF\xBB\xBF")?;
    let mut w = csv::WriterBuilder::new().from_writer(w);
    w.write_record(if lang == Language::Zh {
        ["行", "列", "表头", "严重程度", "代码", "值", "问题"]
    } else {
        [
            "row", "column", "header", "severity", "code", "value", "problem",
        ]
    })?;
    for f in findings.iter() {
        w.write_record([
            f.row.map_or(String::new(), |r| r.to_string()),
            f.column
                .as_ref()
                .map_or(String::new(), |c| c.letter.clone()),
            neutralize(f.column.as_ref().map_or("", |c| c.name.as_str())),
            f.severity.to_string(),
            f.code.to_string(),
            neutralize(f.value.as_deref().unwrap_or("")),
            neutralize(&f.message),
        ])?;
    }
    w.flush()
}

fn csv_bytes(lines: &[Line], summary: &[String], lang: Language) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let _ = w.write_record(headers(lang));
    for l in lines {
        let _ = w.write_record(
            std::iter::once(&l.row)
                .chain(l.after_row())
                .map(|v| neutralize(v)),
        );
    }
    let _ = w.write_record([""; 9]);
    for s in summary {
        let _ = w.write_record([neutralize(s).as_str(), "", "", "", "", "", "", "", ""]);
    }
    w.into_inner().unwrap_or_default()
}

/// Writes `<results>/<file stem>.batch<ID>.result.csv` and `.xlsx` (the batch id keeps next
/// month's `payroll.xlsx` from replacing this month's report); returns their paths.
pub fn write(
    results_dir: &Path,
    original_file: &str,
    batch: i64,
    channel: &Channel,
    payments: &[StoredPayment],
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(results_dir)?;
    let lang = channel.report_language;
    let stem = Path::new(original_file)
        .file_stem()
        .map_or("batch".into(), |s| s.to_string_lossy().into_owned());
    let (lines, summary) = lines(payments, lang);
    let text = csv_bytes(&lines, &summary, lang);
    // Back in GB18030 for a channel fixed to Chinese Excel's encoding; otherwise UTF-8 with
    // the BOM by which Excel recognises it (Windows-1252 could not hold every name).
    let bytes = if channel.encoding.is_gb() {
        encoding_rs::GB18030
            .encode(&String::from_utf8_lossy(&text))
            .0
            .into_owned()
    } else {
        [b"\xEF\xBB\xBF".as_slice(), &text].concat()
    };
    let csv_path = results_dir.join(format!("{stem}.batch{batch}.result.csv"));
    crate::durable::write_bytes(&csv_path, &bytes)?;

    let mut wb = rust_xlsxwriter::Workbook::new();
    let xl = |e: rust_xlsxwriter::XlsxError| std::io::Error::other(e.to_string());
    let ws = wb.add_worksheet();
    ws.set_name(match lang {
        Language::En => "Results",
        Language::Zh => "结果",
    })
    .map_err(xl)?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, h) in headers(lang).iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, &bold)
            .map_err(xl)?;
    }
    for (i, l) in lines.iter().enumerate() {
        let r = i as u32 + 1;
        let row_no: f64 = l.row.parse().unwrap_or(0.0);
        ws.write_number(r, 0, row_no).map_err(xl)?;
        for (c, v) in l.after_row().iter().enumerate() {
            // Amounts stay text: exact, never a binary float in the report either.
            ws.write_string(r, c as u16 + 1, v.as_str()).map_err(xl)?;
        }
    }
    let base = lines.len() as u32 + 2;
    for (i, s) in summary.iter().enumerate() {
        ws.write_string_with_format(base + i as u32, 0, s, &bold)
            .map_err(xl)?;
    }
    let xlsx = wb.save_to_buffer().map_err(xl)?;
    let xlsx_path = results_dir.join(format!("{stem}.batch{batch}.result.xlsx"));
    crate::durable::write_bytes(&xlsx_path, &xlsx)?;
    Ok(vec![csv_path, xlsx_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payee name or bank reference that a spreadsheet would run lands in the result
    /// reports as text: a leading `'` in the CSV, a string cell in the XLSX, no formula.
    #[test]
    fn result_reports_hold_no_formula() {
        let dir = tempfile::tempdir().unwrap();
        let channel: Channel = toml::from_str(
            "kind = \"payroll\"\nbank = \"cn\"\ndebtor_account = \"cny\"\nfolder = \"x\"\n",
        )
        .unwrap();
        let evil = "=HYPERLINK(\"http://evil.example\",\"点我\")";
        let p = StoredPayment {
            id: 1,
            row_no: 2,
            end_to_end_id: "E1".into(),
            creditor_name: evil.into(),
            account: "6228455325504006000".into(),
            agent: None,
            amount_minor: 10_000,
            currency: "CNY".into(),
            execution_date: "2026-12-01".into(),
            state: "settled".into(),
            status_code: None,
            reason_code: None,
            reason_text: None,
            bank_reference: Some("@SUM(A1:A9)".into()),
            updated_at: None,
        };
        let written = write(dir.path(), "payroll.csv", 7, &channel, &[p]).unwrap();
        let csv_path = written
            .iter()
            .find(|p| p.extension().unwrap() == "csv")
            .unwrap();
        let text = String::from_utf8(std::fs::read(csv_path).unwrap()).unwrap();
        let mut r = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        for rec in r.records() {
            for cell in rec.unwrap().iter() {
                assert!(!is_formula_like(cell), "a formula in the CSV: {cell:?}");
            }
        }
        assert!(
            text.contains(&format!("\"'{}\"", evil.replace('"', "\"\""))),
            "{text}"
        );
        let xlsx = written
            .iter()
            .find(|p| p.extension().unwrap() == "xlsx")
            .unwrap();
        use calamine::Reader;
        let mut wb: calamine::Xlsx<_> = calamine::open_workbook(xlsx).unwrap();
        let sheet = wb.sheet_names()[0].clone();
        let formulas = wb.worksheet_formula(&sheet).unwrap();
        assert!(
            formulas.used_cells().all(|(_, _, f)| f.is_empty()),
            "a formula in the XLSX"
        );
        let cells = wb.worksheet_range(&sheet).unwrap();
        assert!(
            cells
                .used_cells()
                .any(|(_, _, c)| matches!(c, calamine::Data::String(s) if s == evil)),
            "the name is kept as text"
        );
    }

    #[test]
    fn masking_keeps_the_ends() {
        assert_eq!(mask("6222021001123456789"), "6222***********6789");
        assert_eq!(mask("DE89370400440532013000"), "DE89**************3000");
        assert_eq!(mask("12345"), "*2345");
    }
}
