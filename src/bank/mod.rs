//! Bank return files: ISO 20022 pain.002 status reports, camt.053 statements and camt.054
//! debit/credit notifications, and template-defined result files of domestic banks. Parsing
//! only: values in, typed reports out; never touches the store. Real files are messy: unknown
//! elements are ignored, missing optional ones are `None`, and anything that cannot be
//! understood is an error that says why — never a panic.

mod camt;
pub mod describe;
pub mod layout;
mod pain002;
pub mod reasons;
pub mod xml;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

/// ISO 20022 payment status codes (ExternalPaymentTransactionStatus1Code and friends). In JSON
/// a status is its ISO code (`"ACTC"`), as the standard spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Rcvd,
    Actc,
    Accp,
    Acsp,
    Acsc,
    Accc,
    Acwc,
    Acwp,
    Pdng,
    Part,
    Rjct,
    Canc,
    Other(String),
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s.trim() {
            "RCVD" => Status::Rcvd,
            "ACTC" => Status::Actc,
            "ACCP" => Status::Accp,
            "ACSP" => Status::Acsp,
            "ACSC" => Status::Acsc,
            "ACCC" => Status::Accc,
            "ACWC" => Status::Acwc,
            "ACWP" => Status::Acwp,
            "PDNG" => Status::Pdng,
            "PART" => Status::Part,
            "RJCT" => Status::Rjct,
            "CANC" => Status::Canc,
            other => Status::Other(other.to_string()),
        }
    }

    pub fn code(&self) -> &str {
        match self {
            Status::Rcvd => "RCVD",
            Status::Actc => "ACTC",
            Status::Accp => "ACCP",
            Status::Acsp => "ACSP",
            Status::Acsc => "ACSC",
            Status::Accc => "ACCC",
            Status::Acwc => "ACWC",
            Status::Acwp => "ACWP",
            Status::Pdng => "PDNG",
            Status::Part => "PART",
            Status::Rjct => "RJCT",
            Status::Canc => "CANC",
            Status::Other(s) => s,
        }
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// A status reason: an ISO code, a proprietary code, and free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Reason {
    pub code: Option<String>,
    pub proprietary: Option<String>,
    pub info: Vec<String>,
}

impl Reason {
    /// The code to show and to look up: the ISO code, else the proprietary one.
    pub fn key(&self) -> Option<&str> {
        self.code.as_deref().or(self.proprietary.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// e.g. `pain.002.001.03`, `pain.002.001.03.ch.02`, or `pain.002 (no namespace)`.
    pub version: String,
    pub msg_id: Option<String>,
    pub created: Option<String>,
    pub original_msg_id: Option<String>,
    pub original_msg_type: Option<String>,
    pub group_status: Option<Status>,
    pub group_reasons: Vec<Reason>,
    /// (count, status) from NbOfTxsPerSts.
    pub counts_per_status: Vec<(String, Status)>,
    pub payment_infos: Vec<PaymentInfoStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentInfoStatus {
    pub original_pmt_inf_id: Option<String>,
    pub status: Option<Status>,
    pub reasons: Vec<Reason>,
    pub transactions: Vec<TransactionStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TransactionStatus {
    pub status_id: Option<String>,
    pub original_instruction_id: Option<String>,
    pub original_end_to_end_id: Option<String>,
    pub status: Option<Status>,
    pub reasons: Vec<Reason>,
    /// From OrgnlTxRef, when the bank repeats it: amount, currency, creditor account, date.
    pub amount: Option<(Decimal, String)>,
    pub creditor_account: Option<String>,
    pub requested_date: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StatementKind {
    /// camt.053: account statement.
    Statement,
    /// camt.054: debit/credit notification.
    Notification,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub kind: StatementKind,
    pub version: String,
    pub msg_id: Option<String>,
    pub created: Option<String>,
    pub reports: Vec<AccountReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountReport {
    pub id: Option<String>,
    pub account: Option<String>,
    pub currency: Option<String>,
    pub entries: Vec<Entry>,
}

/// Credit or debit, as ISO 20022 codes them (`CdtDbtInd`): `"CRDT"`, `"DBIT"` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Direction {
    #[serde(rename = "CRDT")]
    Credit,
    #[serde(rename = "DBIT")]
    Debit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub amount: Option<(Decimal, String)>,
    pub direction: Option<Direction>,
    pub reversal: bool,
    /// BOOK, PDNG, INFO (v02–v04 as text, v08 as a code).
    pub status: Option<String>,
    pub booking_date: Option<NaiveDate>,
    pub value_date: Option<NaiveDate>,
    pub bank_reference: Option<String>,
    pub details: Vec<EntryDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDetail {
    pub msg_id: Option<String>,
    pub pmt_inf_id: Option<String>,
    pub instruction_id: Option<String>,
    pub end_to_end_id: Option<String>,
    pub amount: Option<(Decimal, String)>,
    pub direction: Option<Direction>,
    /// Return information: a payment that came back, with why.
    pub return_reason: Option<Reason>,
    pub counterparty: Option<String>,
}

/// What a return file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    StatusReport(StatusReport),
    Statement(Statement),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file {0}")]
    Xml(#[from] xml::XmlError),
    #[error("unknown message: namespace `{0}` is not a pain.002, camt.053 or camt.054 message")]
    UnknownNamespace(String),
    #[error(
        "unknown message: no pain.002, camt.053 or camt.054 content found (root element <{0}>)"
    )]
    UnknownMessage(String),
    #[error("the namespace says {said}, but the message inside is <{found}>")]
    Mismatch { said: String, found: String },
}

/// `urn:iso:std:iso:20022:tech:xsd:pain.002.001.03` -> `pain.002.001.03`; SIX Swiss namespaces
/// `http://www.six-interbank-clearing.com/de/pain.002.001.03.ch.02.xsd` -> `pain.002.001.03.ch.02`.
fn message_id_of(ns: &str) -> Option<String> {
    let m = if let Some(rest) = ns.strip_prefix("urn:iso:std:iso:20022:tech:xsd:") {
        rest.to_string()
    } else if ns.contains("six-interbank-clearing.com") {
        ns.rsplit('/').next()?.strip_suffix(".xsd")?.to_string()
    } else {
        return None;
    };
    let parts: Vec<&str> = m.split('.').collect();
    let shape =
        parts.len() >= 4 && parts[0].len() == 4 && parts[0].bytes().all(|b| b.is_ascii_lowercase());
    shape.then_some(m)
}

const ROOTS: &[(&str, &str)] = &[
    ("pain.002", "CstmrPmtStsRpt"),
    ("camt.053", "BkToCstmrStmt"),
    ("camt.054", "BkToCstmrDbtCdtNtfctn"),
];

/// Parses a return file (its bytes, decrypted already).
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let root = xml::parse(bytes)?;
    // The message is the first <Document>; it may be wrapped (AppHdr + Document envelopes).
    let doc = root.find("Document");
    let (version, body): (String, &xml::Node) = match doc
        .and_then(|d| d.ns.as_deref().map(|ns| (d, ns.to_string())))
    {
        Some((d, ns)) => {
            let id = message_id_of(&ns).ok_or_else(|| ParseError::UnknownNamespace(ns.clone()))?;
            let family = id.get(..8).unwrap_or_default().to_string();
            let (_, want) = ROOTS
                .iter()
                .find(|(f, _)| *f == family)
                .ok_or_else(|| ParseError::UnknownNamespace(ns.clone()))?;
            let body = d.child(want).ok_or_else(|| ParseError::Mismatch {
                said: id.clone(),
                found: d
                    .children
                    .first()
                    .map_or("nothing".into(), |c| c.name.to_string()),
            })?;
            (id, body)
        }
        // No namespace (or no Document at all): recognise the message by its root element.
        None => {
            let start = doc.unwrap_or(&root);
            let (family, body) = ROOTS
                .iter()
                .find_map(|(f, name)| start.find(name).map(|b| (*f, b)))
                .ok_or_else(|| ParseError::UnknownMessage(root.name.to_string()))?;
            (format!("{family} (no namespace)"), body)
        }
    };
    Ok(match &*body.name {
        "CstmrPmtStsRpt" => Message::StatusReport(pain002::parse(body, version)),
        "BkToCstmrStmt" => Message::Statement(camt::parse(body, version, StatementKind::Statement)),
        _ => Message::Statement(camt::parse(body, version, StatementKind::Notification)),
    })
}

/// `<Dt>2026-11-30</Dt>` or `<DtTm>2026-11-30T10:00:00</DtTm>` (or a bare date in old versions).
pub(crate) fn date_of(n: Option<&xml::Node>) -> Option<NaiveDate> {
    let n = n?;
    let text = n
        .text_at(&["Dt"])
        .or_else(|| n.text_at(&["DtTm"]))
        .or_else(|| Some(n.text.trim().to_string()).filter(|t| !t.is_empty()))?;
    NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok()
}

/// An amount element with its `Ccy` attribute.
pub(crate) fn amount_of(n: Option<&xml::Node>) -> Option<(Decimal, String)> {
    let n = n?;
    let v: Decimal = n.text.trim().parse().ok()?;
    Some((v, n.attr("Ccy").unwrap_or_default().to_string()))
}

pub(crate) fn reasons_of(parent: &xml::Node) -> Vec<Reason> {
    parent
        .children_named("StsRsnInf")
        .map(|r| Reason {
            code: r.text_at(&["Rsn", "Cd"]),
            proprietary: r.text_at(&["Rsn", "Prtry"]),
            info: r
                .children_named("AddtlInf")
                .map(|a| a.text.trim().to_string())
                .filter(|t| !t.is_empty())
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_to_messages() {
        assert_eq!(
            message_id_of("urn:iso:std:iso:20022:tech:xsd:pain.002.001.10").as_deref(),
            Some("pain.002.001.10")
        );
        assert_eq!(
            message_id_of("http://www.six-interbank-clearing.com/de/pain.002.001.03.ch.02.xsd")
                .as_deref(),
            Some("pain.002.001.03.ch.02")
        );
        assert_eq!(message_id_of("urn:example:other"), None);
    }

    #[test]
    fn wrong_or_missing_messages_are_refused() {
        let e = parse(
            br#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:other.002.001.03"><X/></Document>"#,
        )
        .unwrap_err();
        assert!(matches!(e, ParseError::UnknownNamespace(_)), "{e}");
        let e = parse(br#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><BkToCstmrStmt/></Document>"#).unwrap_err();
        assert!(matches!(e, ParseError::Mismatch { .. }), "{e}");
        let e = parse(b"<html><body>502 Bad Gateway</body></html>").unwrap_err();
        assert!(matches!(e, ParseError::UnknownMessage(r) if r == "html"));
    }
}
