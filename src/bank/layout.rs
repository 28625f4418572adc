//! Result files of domestic banks, defined by the `[returns]` table of a template in
//! `templates/`: CSV (columns by header name or 1-based number) or fixed-width (columns as
//! `start-end` byte positions, 1-based, inclusive), in the template's encoding, with the bank's
//! status words mapped to ISO 20022 status codes. Parsed into a `StatusReport`.

use super::{PaymentInfoStatus, Reason, Status, StatusReport, TransactionStatus};
use rust_decimal::Decimal;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnLayout {
    pub layout: Layout,
    #[serde(default = "utf8")]
    pub encoding: String,
    #[serde(default = "comma")]
    pub delimiter: char,
    /// CSV: the first row after `skip_rows` names the columns.
    #[serde(default)]
    pub header_row: bool,
    /// Lines to skip at the top (titles, a summary line).
    #[serde(default)]
    pub skip_rows: usize,
    /// Column of our end-to-end id (required), the bank's status (required), and optional ones.
    pub reference: String,
    pub status: String,
    #[serde(default)]
    pub reason_code: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub bank_reference: Option<String>,
    /// The batch's message id, if the bank repeats it.
    #[serde(default)]
    pub batch_reference: Option<String>,
    /// Bank status text -> ISO status code (`成功` = "ACSC", `失败` = "RJCT").
    pub statuses: BTreeMap<String, String>,
}

/// How a bank file lays out its lines: CSV, or fixed-width columns. Shared by the templates
/// paygate writes (`render::template`) and the result files it reads here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    Csv,
    FixedWidth,
}

fn utf8() -> String {
    "utf-8".into()
}
fn comma() -> char {
    ','
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot be decoded as {0}")]
    Encoding(String),
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
    #[error("the header has no column `{0}`")]
    NoColumn(String),
}

enum Col {
    Index(usize),
    Bytes(usize, usize),
}

impl ReturnLayout {
    fn col(&self, spec: &str, header: Option<&[String]>) -> Result<Col, LayoutError> {
        if let Some((a, b)) = spec.split_once('-')
            && let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>())
            && a >= 1
            && b >= a
        {
            return Ok(Col::Bytes(a - 1, b));
        }
        if let Ok(n) = spec.trim().parse::<usize>()
            && n >= 1
        {
            return Ok(Col::Index(n - 1));
        }
        header
            .and_then(|h| h.iter().position(|c| c.trim() == spec.trim()))
            .map(Col::Index)
            .ok_or_else(|| LayoutError::NoColumn(spec.to_string()))
    }

    /// Reads a result file into a status report (one transaction per line).
    pub fn parse(&self, name: &str, bytes: &[u8]) -> Result<StatusReport, LayoutError> {
        let enc = encoding_rs::Encoding::for_label(self.encoding.as_bytes())
            .unwrap_or(encoding_rs::UTF_8);
        let (text, _, bad) = enc.decode(bytes);
        if bad {
            return Err(LayoutError::Encoding(enc.name().to_string()));
        }
        let fixed = self.layout == Layout::FixedWidth;
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .skip(self.skip_rows)
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| (i + 1, l))
            .collect();
        let split = |l: &str| -> Vec<String> {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .delimiter(self.delimiter as u8)
                .from_reader(l.as_bytes());
            r.records()
                .next()
                .and_then(Result::ok)
                .map(|rec| rec.iter().map(str::to_string).collect())
                .unwrap_or_default()
        };
        let (header, body) = match (fixed, self.header_row, lines.split_first()) {
            (false, true, Some((h, rest))) => (Some(split(h.1)), rest),
            _ => (None, &lines[..]),
        };
        let h = header.as_deref();
        let reference = self.col(&self.reference, h)?;
        let status = self.col(&self.status, h)?;
        // Optional columns a result file does not have are simply absent.
        let opt = |s: &Option<String>| -> Result<Option<Col>, LayoutError> {
            match s.as_ref().map(|s| self.col(s, h)) {
                Some(Ok(c)) => Ok(Some(c)),
                Some(Err(LayoutError::NoColumn(_))) | None => Ok(None),
                Some(Err(e)) => Err(e),
            }
        };
        let (reason_code, reason, amount, bank_ref, batch_ref) = (
            opt(&self.reason_code)?,
            opt(&self.reason)?,
            opt(&self.amount)?,
            opt(&self.bank_reference)?,
            opt(&self.batch_reference)?,
        );
        let mut txs = Vec::new();
        let mut batch = None;
        for (line_no, line) in body {
            let fields = if fixed { vec![] } else { split(line) };
            let get = |c: &Col| -> Option<String> {
                let v = match c {
                    Col::Index(i) => fields.get(*i).cloned(),
                    Col::Bytes(a, b) => {
                        let (raw, _, _) = enc.encode(line);
                        raw.get(*a..(*b).min(raw.len()))
                            .map(|s| enc.decode(s).0.into_owned())
                    }
                };
                v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
            };
            let Some(r) = get(&reference) else {
                return Err(LayoutError::Line {
                    line: *line_no,
                    problem: format!("no reference in column `{}`", self.reference),
                });
            };
            let word = get(&status).unwrap_or_default();
            let iso = self.statuses.get(&word).ok_or_else(|| LayoutError::Line {
                line: *line_no,
                problem: format!("status `{word}` is not in the template's [returns.statuses]"),
            })?;
            if batch.is_none() {
                batch = batch_ref.as_ref().and_then(get);
            }
            let reasons = match (
                reason_code.as_ref().and_then(get),
                reason.as_ref().and_then(get),
            ) {
                (None, None) => vec![],
                (code, text) => vec![Reason {
                    code: None,
                    proprietary: code,
                    info: text.into_iter().collect(),
                }],
            };
            txs.push(TransactionStatus {
                status_id: bank_ref.as_ref().and_then(get),
                original_instruction_id: None,
                original_end_to_end_id: Some(r),
                status: Some(Status::parse(iso)),
                reasons,
                amount: amount
                    .as_ref()
                    .and_then(get)
                    .and_then(|a| a.replace(',', "").parse::<Decimal>().ok())
                    .map(|a| (a, String::new())),
                creditor_account: None,
                requested_date: None,
            });
        }
        Ok(StatusReport {
            version: format!("result file ({name})"),
            msg_id: None,
            created: None,
            original_msg_id: batch,
            original_msg_type: None,
            group_status: None,
            group_reasons: vec![],
            counts_per_status: vec![],
            payment_infos: vec![PaymentInfoStatus {
                original_pmt_inf_id: None,
                status: None,
                reasons: vec![],
                transactions: txs,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::bank::Status;

    #[test]
    fn the_shipped_gbk_payroll_result_layout() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        // The [returns] table alone: the bank module reads templates' result layouts, never
        // the templates themselves (render sits above bank).
        let text = std::fs::read_to_string(dir.join("cn-payroll-gbk.toml")).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let returns = table["returns"].clone();
        let layout: super::ReturnLayout = returns.try_into().expect("a valid [returns] layout");
        let text = "序号,业务参考号,收款户名,金额,处理结果,失败原因,银行流水号\r\n\
                    1,PG1-2,张伟,\"37,940.60\",成功,,B0001\r\n\
                    2,PG1-3,王芳,23825.00,失败,账号户名不符,B0002\r\n";
        let (bytes, _, _) = encoding_rs::GBK.encode(text);
        let r = layout.parse("result.csv", &bytes).unwrap();
        let txs = &r.payment_infos[0].transactions;
        assert_eq!(txs.len(), 2);
        assert_eq!(txs[0].original_end_to_end_id.as_deref(), Some("PG1-2"));
        assert_eq!(txs[0].status, Some(Status::Acsc));
        assert_eq!(
            txs[0].amount.as_ref().map(|a| a.0.to_string()).as_deref(),
            Some("37940.60")
        );
        assert_eq!(txs[1].status, Some(Status::Rjct));
        assert_eq!(txs[1].reasons[0].info, vec!["账号户名不符".to_string()]);
        assert_eq!(txs[1].status_id.as_deref(), Some("B0002"));
        // A status word the template does not know is an error naming the line.
        let (bad, _, _) = encoding_rs::GBK.encode("业务参考号,处理结果\r\nPG1-2,退票\r\n");
        let e = layout.parse("r.csv", &bad).unwrap_err();
        assert!(
            e.to_string().contains("line 2") && e.to_string().contains("退票"),
            "{e}"
        );
    }
}
