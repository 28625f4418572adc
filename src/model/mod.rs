//! The typed domain model: money, identifiers, payments and the batch state machine.
//! No IO here, and no value of these types can be malformed.

mod account;
pub mod charset;
mod currency;
mod money;

pub use account::{
    Account, AccountProblem, BankId, Bic, Cnaps, DomesticAccount, Iban, is_country, luhn_valid,
};
pub use currency::{Currency, UnknownCurrency};
pub use money::{AmountProblem, Money, Written, parse_decimal, written_with};

/// Whether `f` is a chrono format that can write a date (`with_time`: a date and time). A bad
/// one (`%Q`, a lone `%`) or one asking a date for its time (`%c`, `%H`) makes chrono's
/// `to_string` panic, so every format from a config or a template is tried here first, on a
/// probe, where the failure is an error.
pub fn date_format_ok(f: &str, with_time: bool) -> bool {
    use std::fmt::Write;
    let date = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap_or_default();
    let mut out = String::new();
    if with_time {
        // With its offset, as a batch's creation time is kept (`%z`, `%:z` need one).
        let Some(offset) = chrono::FixedOffset::east_opt(8 * 3600) else {
            return false;
        };
        let at = date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .with_timezone(&offset);
        write!(out, "{}", at.format(f)).is_ok()
    } else {
        write!(out, "{}", date.format(f)).is_ok()
    }
}

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a channel pays; decides the ISO 20022 category purpose (SALA / SUPP) among other things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Payroll,
    Supplier,
}

/// A postal address as ISO 20022 knows it: structured parts and/or free address lines.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[serde(default)]
    pub street: Option<String>,
    #[serde(default)]
    pub building_number: Option<String>,
    #[serde(default)]
    pub postcode: Option<String>,
    #[serde(default)]
    pub town: Option<String>,
    /// ISO 3166 alpha-2.
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub lines: Vec<String>,
}

impl Address {
    pub fn is_empty(&self) -> bool {
        self.street.is_none()
            && self.building_number.is_none()
            && self.postcode.is_none()
            && self.town.is_none()
            && self.country.is_none()
            && self.lines.is_empty()
    }

    pub fn has_structured_parts(&self) -> bool {
        self.street.is_some() || self.building_number.is_some() || self.postcode.is_some()
    }
}

/// One credit transfer, as validated from one row of an input file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Payment {
    /// The row number the user sees in the spreadsheet.
    pub row: u64,
    pub end_to_end_id: Option<String>,
    pub creditor_name: String,
    pub creditor_account: Account,
    pub creditor_agent: Option<BankId>,
    pub creditor_bank_name: Option<String>,
    pub creditor_address: Option<Address>,
    pub amount: Money,
    pub remittance: Option<String>,
    pub execution_date: NaiveDate,
}

/// The life of a batch (one input file) from intake to the bank's final answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Recorded with its SHA-256; nothing decided yet.
    Received,
    /// Validation found errors; the file is in `rejected/` with its report.
    Invalid,
    AwaitingApproval,
    /// An approver refused the batch.
    Declined,
    /// Nobody approved the batch in time; it is never sent.
    Expired,
    Approved,
    /// The bank file was rendered, signed and encrypted; the sealed bytes are archived.
    Sealed,
    /// Saved before the first upload attempt; the remote name is fixed from here on.
    Uploading,
    /// The complete file is on the bank's server.
    Sent,
    /// The bank accepted the file; no final status for every payment yet.
    Accepted,
    Completed,
    PartiallyRejected,
    Rejected,
}

impl BatchState {
    pub const ALL: [BatchState; 13] = [
        BatchState::Received,
        BatchState::Invalid,
        BatchState::AwaitingApproval,
        BatchState::Declined,
        BatchState::Expired,
        BatchState::Approved,
        BatchState::Sealed,
        BatchState::Uploading,
        BatchState::Sent,
        BatchState::Accepted,
        BatchState::Completed,
        BatchState::PartiallyRejected,
        BatchState::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Received => "received",
            BatchState::Invalid => "invalid",
            BatchState::AwaitingApproval => "awaiting_approval",
            BatchState::Declined => "declined",
            BatchState::Expired => "expired",
            BatchState::Approved => "approved",
            BatchState::Sealed => "sealed",
            BatchState::Uploading => "uploading",
            BatchState::Sent => "sent",
            BatchState::Accepted => "accepted",
            BatchState::Completed => "completed",
            BatchState::PartiallyRejected => "partially_rejected",
            BatchState::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<BatchState> {
        BatchState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Nothing more will happen to the batch by itself: refused, or answered in full by the
    /// bank. (A later bank report may still change an answered batch.)
    pub fn is_final(self) -> bool {
        use BatchState::*;
        matches!(
            self,
            Invalid | Declined | Expired | Completed | PartiallyRejected | Rejected
        )
    }

    /// The one place that says which moves are legal. The CLI and the daemon both go through it,
    /// and the store applies the result guarded by the state it was computed from.
    pub fn on(self, ev: &Event) -> Result<BatchState, IllegalTransition> {
        use BatchState::*;
        let next = match (self, ev) {
            (Received, Event::Validated { errors: 0 }) => AwaitingApproval,
            (Received, Event::Validated { .. }) => Invalid,
            (
                AwaitingApproval,
                Event::Approved {
                    policy_satisfied: true,
                },
            ) => Approved,
            (
                AwaitingApproval,
                Event::Approved {
                    policy_satisfied: false,
                },
            ) => AwaitingApproval,
            (AwaitingApproval, Event::Declined) => Declined,
            (AwaitingApproval, Event::Expired) => Expired,
            (Approved, Event::Sealed) => Sealed,
            (Sealed, Event::UploadStarted) => Uploading,
            // A restart resends the very same sealed bytes under the same remote name.
            (Uploading, Event::UploadStarted) => Uploading,
            (Uploading, Event::Uploaded) => Sent,
            // The bank may answer before a crashed daemon recorded `Sent`; and a later report may
            // change an earlier outcome (a rejection after an acceptance).
            (
                Uploading | Sent | Accepted | Completed | PartiallyRejected | Rejected,
                Event::Outcome(o),
            ) => o.state(),
            (from, ev) => {
                return Err(IllegalTransition {
                    from,
                    event: ev.name(),
                });
            }
        };
        Ok(next)
    }
}

impl fmt::Display for BatchState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the bank's reports, taken over all payments, say about a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Completed,
    PartiallyRejected,
    Rejected,
}

impl Outcome {
    fn state(self) -> BatchState {
        match self {
            Outcome::Accepted => BatchState::Accepted,
            Outcome::Completed => BatchState::Completed,
            Outcome::PartiallyRejected => BatchState::PartiallyRejected,
            Outcome::Rejected => BatchState::Rejected,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Validated { errors: usize },
    Approved { policy_satisfied: bool },
    Declined,
    Expired,
    Sealed,
    UploadStarted,
    Uploaded,
    Outcome(Outcome),
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Validated { .. } => "validated",
            Event::Approved { .. } => "approved",
            Event::Declined => "declined",
            Event::Expired => "expired",
            Event::Sealed => "sealed",
            Event::UploadStarted => "upload_started",
            Event::Uploaded => "uploaded",
            Event::Outcome(_) => "outcome",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a batch in state `{from}` cannot take the event `{event}`")]
pub struct IllegalTransition {
    pub from: BatchState,
    pub event: &'static str,
}

/// `6222021001123456789` -> `6222***********6789`; short numbers keep only their last 4.
pub fn mask(account: &str) -> String {
    let chars: Vec<char> = account.chars().collect();
    if chars.len() <= 8 {
        let keep = chars.len().min(4);
        return format!(
            "{}{}",
            "*".repeat(chars.len() - keep),
            chars[chars.len() - keep..].iter().collect::<String>()
        );
    }
    format!(
        "{}{}{}",
        chars[..4].iter().collect::<String>(),
        "*".repeat(chars.len() - 8),
        chars[chars.len() - 4..].iter().collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn date_formats_are_checked_before_use() {
        use super::date_format_ok;
        assert!(date_format_ok("%d/%m/%Y", false));
        assert!(date_format_ok("%Y%m%d%H%M%S", true));
        assert!(date_format_ok("%Y-%m-%dT%H:%M:%S%:z", true));
        assert!(!date_format_ok("%Y%m%d%H%M%S", false));
        assert!(!date_format_ok("%Q", false));
        assert!(!date_format_ok("%d/%m/%", false));
        // Found by fuzzing the config loader: `%c` asks a date for its time.
        assert!(!date_format_ok("%d/%m/%company.accouY", false));
    }

    use super::*;
    use BatchState::*;

    #[test]
    fn happy_path() {
        let mut s = Received;
        for ev in [
            Event::Validated { errors: 0 },
            Event::Approved {
                policy_satisfied: false,
            },
            Event::Approved {
                policy_satisfied: true,
            },
            Event::Sealed,
            Event::UploadStarted,
            Event::UploadStarted,
            Event::Uploaded,
            Event::Outcome(Outcome::Accepted),
            Event::Outcome(Outcome::Completed),
        ] {
            s = s.on(&ev).unwrap();
        }
        assert_eq!(s, Completed);
    }

    #[test]
    fn invalid_files_stop_and_unapproved_batches_never_upload() {
        assert_eq!(Received.on(&Event::Validated { errors: 3 }), Ok(Invalid));
        for st in [
            Received,
            Invalid,
            AwaitingApproval,
            Declined,
            Expired,
            Approved,
        ] {
            assert!(st.on(&Event::UploadStarted).is_err(), "{st} could upload");
        }
        assert!(
            Invalid
                .on(&Event::Approved {
                    policy_satisfied: true
                })
                .is_err()
        );
        assert!(Sent.on(&Event::Sealed).is_err());
        assert_eq!(AwaitingApproval.on(&Event::Expired), Ok(Expired));
        assert!(
            Approved.on(&Event::Expired).is_err(),
            "an approved batch cannot expire"
        );
    }

    #[test]
    fn a_late_rejection_changes_an_acceptance() {
        assert_eq!(
            Accepted.on(&Event::Outcome(Outcome::Rejected)),
            Ok(Rejected)
        );
        assert_eq!(
            Uploading.on(&Event::Outcome(Outcome::Accepted)),
            Ok(Accepted)
        );
    }

    #[test]
    fn state_names_round_trip() {
        for st in BatchState::ALL {
            assert_eq!(BatchState::parse(st.as_str()), Some(st));
        }
        assert_eq!(BatchState::parse("nope"), None);
    }
}
