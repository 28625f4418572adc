//! Reconciliation: what a bank report means for each payment of a batch. Pure: takes the
//! parsed report and the batch's payments, returns the state changes (with the level, status,
//! reason and source of each), the notes for people, and the batch's resulting outcome. Never
//! reads the clock or the database.
//!
//! Rules: a transaction-level status wins over its payment-information block's, which wins
//! over the group's. A duplicate rejection (DU01–DU05, AM05, DUPL) is never applied: a resend
//! of the same MsgId after a crash must not undo an acceptance; it is recorded and shown.

use crate::bank::{Direction, Reason, Statement, Status, StatusReport};
use crate::model::{Currency, Outcome};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Where a payment stands with the bank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    /// Stored, not yet known to the bank.
    Pending,
    /// Sent; no word from the bank yet.
    Sent,
    /// The file was received or passed technical checks (RCVD, ACTC).
    Acknowledged,
    /// Accepted for execution (ACCP, ACWC, ACWP, ACSP).
    Accepted,
    /// The bank holds it (PDNG).
    OnHold,
    /// Booked: the money left (ACSC, ACCC, a booked debit entry).
    Settled,
    /// Rejected or cancelled (RJCT, CANC).
    Rejected,
    /// Came back after settlement (return information in a camt message).
    Returned,
}

impl PaymentState {
    pub const ALL: [PaymentState; 8] = [
        PaymentState::Pending,
        PaymentState::Sent,
        PaymentState::Acknowledged,
        PaymentState::Accepted,
        PaymentState::OnHold,
        PaymentState::Settled,
        PaymentState::Rejected,
        PaymentState::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentState::Pending => "pending",
            PaymentState::Sent => "sent",
            PaymentState::Acknowledged => "acknowledged",
            PaymentState::Accepted => "accepted",
            PaymentState::OnHold => "on_hold",
            PaymentState::Settled => "settled",
            PaymentState::Rejected => "rejected",
            PaymentState::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentState> {
        PaymentState::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// No further word from the bank is expected.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentState::Settled | PaymentState::Rejected | PaymentState::Returned
        )
    }

    fn rank(self) -> u8 {
        match self {
            PaymentState::Pending => 0,
            PaymentState::Sent => 1,
            PaymentState::Acknowledged => 2,
            PaymentState::OnHold => 3,
            PaymentState::Accepted => 4,
            PaymentState::Settled => 5,
            PaymentState::Rejected => 5,
            PaymentState::Returned => 6,
        }
    }

    /// The words shown to people.
    pub fn label(self, lang: crate::bank::reasons::Language) -> &'static str {
        use crate::bank::reasons::Language::*;
        match (self, lang) {
            (PaymentState::Pending, En) => "not sent",
            (PaymentState::Sent, En) => "sent, no answer yet",
            (PaymentState::Acknowledged, En) => "received by the bank",
            (PaymentState::Accepted, En) => "accepted",
            (PaymentState::OnHold, En) => "on hold at the bank",
            (PaymentState::Settled, En) => "paid",
            (PaymentState::Rejected, En) => "rejected",
            (PaymentState::Returned, En) => "returned",
            (PaymentState::Pending, Zh) => "未发送",
            (PaymentState::Sent, Zh) => "已发送，待银行回复",
            (PaymentState::Acknowledged, Zh) => "银行已接收",
            (PaymentState::Accepted, Zh) => "银行已受理",
            (PaymentState::OnHold, Zh) => "银行挂起",
            (PaymentState::Settled, Zh) => "已付款",
            (PaymentState::Rejected, Zh) => "已拒绝",
            (PaymentState::Returned, Zh) => "已退回",
        }
    }
}

/// A payment as reconciliation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentView {
    pub id: i64,
    pub end_to_end_id: String,
    pub account: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub execution_date: NaiveDate,
    pub state: PaymentState,
}

impl PaymentView {
    fn amount(&self) -> Decimal {
        Decimal::new(self.amount_minor, self.currency.minor_units())
    }
}

/// One payment's move, with its cause.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    pub payment_id: i64,
    pub from: PaymentState,
    pub to: PaymentState,
    /// group, payment_information, transaction, entry
    pub level: &'static str,
    pub status: String,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
    pub bank_reference: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    pub changes: Vec<Change>,
    /// For people: ignored duplicate rejections, fallback matches, references matching nothing.
    pub notes: Vec<String>,
}

/// Any of the reasons says "duplicate".
fn is_duplicate(rs: &[Reason]) -> bool {
    rs.iter()
        .filter_map(|r| r.key())
        .any(|c| DUPLICATE_CODES.contains(&c))
}

fn reason_parts(rs: &[Reason]) -> (Option<String>, Option<String>) {
    let code = rs.iter().find_map(|r| r.key().map(str::to_string));
    let text: Vec<String> = rs.iter().flat_map(|r| r.info.iter().cloned()).collect();
    (code, (!text.is_empty()).then(|| text.join(" ")))
}

const DUPLICATE_CODES: &[&str] = &["DU01", "DU02", "DU03", "DU04", "DU05", "AM05", "DUPL"];

fn target(status: &Status) -> Option<PaymentState> {
    Some(match status {
        Status::Rcvd | Status::Actc => PaymentState::Acknowledged,
        Status::Accp | Status::Acwc | Status::Acwp | Status::Acsp => PaymentState::Accepted,
        Status::Pdng => PaymentState::OnHold,
        Status::Acsc | Status::Accc => PaymentState::Settled,
        Status::Rjct | Status::Canc => PaymentState::Rejected,
        Status::Part | Status::Other(_) => return None,
    })
}

/// Whether `to` may replace `from`: progress only, except that a rejection may follow an
/// acceptance and a return may follow settlement; the history keeps every earlier word.
fn allowed(from: PaymentState, to: PaymentState) -> bool {
    if from == to {
        return false;
    }
    match to {
        PaymentState::Rejected => from != PaymentState::Returned,
        PaymentState::Returned => true,
        _ => !from.is_final() && to.rank() >= from.rank(),
    }
}

/// The payment-information ids paygate gave the batch's blocks: `MSGID-N`, one per
/// (execution date, currency), in that order (see `render::pain001`).
pub fn block_ids(msg_id: &str, payments: &[PaymentView]) -> BTreeMap<String, Vec<i64>> {
    let mut keys: BTreeMap<(NaiveDate, Currency), Vec<i64>> = BTreeMap::new();
    for p in payments {
        keys.entry((p.execution_date, p.currency))
            .or_default()
            .push(p.id);
    }
    keys.into_values()
        .enumerate()
        .map(|(i, ids)| (format!("{msg_id}-{}", i + 1), ids))
        .collect()
}

struct Plan<'a> {
    payments: &'a [PaymentView],
    /// Payments covered, at any level of this report, by a duplicate rejection: no rejection
    /// in this report is applied to them.
    duplicate: std::collections::HashSet<i64>,
    /// Desired (state, level rank, change) per payment id; higher level rank wins.
    wanted: BTreeMap<i64, (u8, Change)>,
    notes: Vec<String>,
}

impl Plan<'_> {
    #[allow(clippy::too_many_arguments)]
    fn want(
        &mut self,
        pid: i64,
        status: &Status,
        reasons: &[Reason],
        level: &'static str,
        rank: u8,
        bank_ref: Option<String>,
    ) {
        let Some(p) = self.payments.iter().find(|p| p.id == pid) else {
            return;
        };
        let (code, text) = reason_parts(reasons);
        if matches!(status, Status::Rjct | Status::Canc) && self.duplicate.contains(&pid) {
            self.notes.push(format!(
                "payment {} ({}): a {} at {level} level comes with a duplicate rejection in this report: recorded, NOT applied — an earlier submission of this message may stand; check with the bank",
                p.end_to_end_id,
                p.state.as_str(),
                status.code()
            ));
            return;
        }
        let Some(to) = target(status) else { return };
        if self.wanted.get(&pid).is_some_and(|(r, _)| *r > rank) {
            return;
        }
        self.wanted.insert(
            pid,
            (
                rank,
                Change {
                    payment_id: pid,
                    from: p.state,
                    to,
                    level,
                    status: status.code().to_string(),
                    reason_code: code,
                    reason_text: text,
                    bank_reference: bank_ref,
                },
            ),
        );
    }

    fn finish(self) -> Reconciliation {
        let changes = self
            .wanted
            .into_values()
            .map(|(_, c)| c)
            .filter(|c| allowed(c.from, c.to))
            .collect();
        Reconciliation {
            changes,
            notes: self.notes,
        }
    }
}

/// A pain.002 (or a result file read as one) against the batch it answers.
pub fn status_report(
    report: &StatusReport,
    msg_id: &str,
    payments: &[PaymentView],
) -> Reconciliation {
    let blocks = block_ids(msg_id, payments);
    let rejecting = |st: &Option<Status>| matches!(st, Some(Status::Rjct | Status::Canc));
    let mut duplicate = std::collections::HashSet::new();
    if rejecting(&report.group_status) && is_duplicate(&report.group_reasons) {
        duplicate.extend(payments.iter().map(|p| p.id));
    }
    for pi in &report.payment_infos {
        let members: Vec<i64> = match pi.original_pmt_inf_id.as_deref() {
            Some(id) => blocks.get(id).cloned().unwrap_or_default(),
            None => payments.iter().map(|p| p.id).collect(),
        };
        if rejecting(&pi.status) && is_duplicate(&pi.reasons) {
            duplicate.extend(members);
        }
        for tx in &pi.transactions {
            if rejecting(&tx.status) && is_duplicate(&tx.reasons) {
                let e2e = tx.original_end_to_end_id.as_deref();
                duplicate.extend(
                    payments
                        .iter()
                        .filter(|p| Some(p.end_to_end_id.as_str()) == e2e)
                        .map(|p| p.id),
                );
            }
        }
    }
    let mut plan = Plan {
        payments,
        duplicate,
        wanted: BTreeMap::new(),
        notes: vec![],
    };
    if let Some(st) = &report.group_status {
        for p in payments {
            plan.want(p.id, st, &report.group_reasons, "group", 1, None);
        }
    }
    for pi in &report.payment_infos {
        let members: Vec<i64> = match pi.original_pmt_inf_id.as_deref() {
            Some(id) => match blocks.get(id) {
                Some(m) => m.clone(),
                None => {
                    if pi.status.is_some() {
                        plan.notes.push(format!("payment information `{id}` is not a block of this batch: its status is not applied"));
                    }
                    vec![]
                }
            },
            None => payments.iter().map(|p| p.id).collect(),
        };
        if let Some(st) = &pi.status {
            for id in &members {
                plan.want(*id, st, &pi.reasons, "payment_information", 2, None);
            }
        }
        for tx in &pi.transactions {
            let Some(st) = &tx.status else { continue };
            let by_e2e = tx
                .original_end_to_end_id
                .as_deref()
                .and_then(|e| payments.iter().find(|p| p.end_to_end_id == e));
            let by_instr = || {
                tx.original_instruction_id
                    .as_deref()
                    .and_then(|i| payments.iter().find(|p| p.end_to_end_id == i))
            };
            let by_values = || {
                let (amt, _) = tx.amount.as_ref()?;
                let acct = tx.creditor_account.as_deref()?;
                let mut hits = payments.iter().filter(|p| {
                    p.amount() == *amt
                        && p.account == acct
                        && tx.requested_date.is_none_or(|d| d == p.execution_date)
                });
                let first = hits.next()?;
                hits.next().is_none().then_some(first)
            };
            let found = match (by_e2e, by_instr()) {
                (Some(p), _) => Some(p),
                (None, Some(p)) => Some(p),
                (None, None) => {
                    let p = by_values();
                    if let Some(p) = p {
                        plan.notes.push(format!(
                            "matched a transaction without a known end-to-end id to payment {} by amount, account and date",
                            p.end_to_end_id
                        ));
                    }
                    p
                }
            };
            match found {
                Some(p) => plan.want(
                    p.id,
                    st,
                    &tx.reasons,
                    "transaction",
                    3,
                    tx.status_id.clone(),
                ),
                None => plan.notes.push(format!(
                    "transaction {} (instruction {}) matches no payment of this batch",
                    tx.original_end_to_end_id.as_deref().unwrap_or("-"),
                    tx.original_instruction_id.as_deref().unwrap_or("-")
                )),
            }
        }
    }
    plan.finish()
}

/// A camt.053/054 against the batch: booked debits settle payments, return information marks
/// them returned. Entries for one whole block (batch booking) settle every payment of it.
pub fn statement(st: &Statement, msg_id: &str, payments: &[PaymentView]) -> Reconciliation {
    let mut plan = Plan {
        payments,
        duplicate: Default::default(),
        wanted: BTreeMap::new(),
        notes: vec![],
    };
    let blocks = block_ids(msg_id, payments);
    for report in &st.reports {
        for e in &report.entries {
            let booked = e.status.as_deref().is_none_or(|s| s == "BOOK");
            for d in &e.details {
                // A payment that came back: return information, or the reversal of our debit.
                let returned = d.return_reason.is_some() || (e.reversal && booked);
                let status = match (returned, booked, e.direction, e.reversal) {
                    (true, _, _, _) => Status::Other("RETURN".into()),
                    (false, true, Some(Direction::Debit), false) => Status::Acsc,
                    _ => continue,
                };
                let reasons: Vec<Reason> = d.return_reason.iter().cloned().collect();
                // The entry's currency limits a batch-level booking to the payments in it.
                let ccy = d
                    .amount
                    .as_ref()
                    .or(e.amount.as_ref())
                    .map(|(_, c)| c.as_str());
                let in_ccy =
                    |p: &&PaymentView| ccy.is_none_or(|c| c.is_empty() || p.currency.as_str() == c);
                let ids: Vec<i64> = if let Some(e2e) = &d.end_to_end_id {
                    payments
                        .iter()
                        .filter(|p| &p.end_to_end_id == e2e)
                        .map(|p| p.id)
                        .collect()
                } else if let Some(b) = d.pmt_inf_id.as_deref().and_then(|b| blocks.get(b)) {
                    b.clone()
                } else if d.msg_id.as_deref() == Some(msg_id) {
                    payments.iter().filter(in_ccy).map(|p| p.id).collect()
                } else {
                    vec![]
                };
                if ids.is_empty() {
                    if d.end_to_end_id.is_some() || d.pmt_inf_id.is_some() {
                        plan.notes.push(format!(
                            "entry detail {} matches no payment of this batch",
                            d.end_to_end_id
                                .as_deref()
                                .or(d.pmt_inf_id.as_deref())
                                .unwrap_or("-")
                        ));
                    }
                    continue;
                }
                for id in ids {
                    if returned {
                        let Some(p) = payments.iter().find(|p| p.id == id) else {
                            continue;
                        };
                        let (code, text) = reason_parts(&reasons);
                        plan.wanted.insert(
                            id,
                            (
                                4,
                                Change {
                                    payment_id: id,
                                    from: p.state,
                                    to: PaymentState::Returned,
                                    level: "entry",
                                    status: "RETURNED".into(),
                                    reason_code: code,
                                    reason_text: text,
                                    bank_reference: e.bank_reference.clone(),
                                },
                            ),
                        );
                    } else {
                        plan.want(id, &status, &reasons, "entry", 3, e.bank_reference.clone());
                    }
                }
            }
        }
    }
    plan.finish()
}

/// The batch's outcome from its payments' states (after the changes), if the bank has said
/// anything at all.
pub fn outcome(states: &[PaymentState]) -> Option<Outcome> {
    if states.is_empty()
        || states
            .iter()
            .all(|s| matches!(s, PaymentState::Pending | PaymentState::Sent))
    {
        return None;
    }
    let bad = states
        .iter()
        .filter(|s| matches!(s, PaymentState::Rejected | PaymentState::Returned))
        .count();
    let all_final = states.iter().all(|s| s.is_final());
    Some(if bad == states.len() {
        Outcome::Rejected
    } else if bad > 0 {
        Outcome::PartiallyRejected
    } else if all_final {
        Outcome::Completed
    } else {
        Outcome::Accepted
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bank::{PaymentInfoStatus, TransactionStatus};

    fn pay(id: i64, e2e: &str, day: u32, state: PaymentState) -> PaymentView {
        PaymentView {
            id,
            end_to_end_id: e2e.into(),
            account: format!("ACCT{id}"),
            amount_minor: 100 * id,
            currency: Currency::EUR,
            execution_date: NaiveDate::from_ymd_opt(2026, 12, day).unwrap(),
            state,
        }
    }

    fn report(group: Option<Status>, infos: Vec<PaymentInfoStatus>) -> StatusReport {
        StatusReport {
            version: "pain.002.001.03".into(),
            msg_id: Some("R1".into()),
            created: None,
            original_msg_id: Some("M".into()),
            original_msg_type: None,
            group_status: group,
            group_reasons: vec![],
            counts_per_status: vec![],
            payment_infos: infos,
        }
    }

    fn tx(e2e: &str, st: Status, code: Option<&str>) -> TransactionStatus {
        TransactionStatus {
            status_id: None,
            original_instruction_id: None,
            original_end_to_end_id: Some(e2e.into()),
            status: Some(st),
            reasons: code
                .map(|c| {
                    vec![Reason {
                        code: Some(c.into()),
                        proprietary: None,
                        info: vec![],
                    }]
                })
                .unwrap_or_default(),
            amount: None,
            creditor_account: None,
            requested_date: None,
        }
    }

    #[test]
    fn transaction_level_wins_over_block_and_group() {
        let ps = vec![
            pay(1, "E1", 1, PaymentState::Sent),
            pay(2, "E2", 1, PaymentState::Sent),
            pay(3, "E3", 2, PaymentState::Sent),
        ];
        let r = report(
            Some(Status::Accp),
            vec![PaymentInfoStatus {
                original_pmt_inf_id: Some("M-1".into()),
                status: Some(Status::Part),
                reasons: vec![],
                transactions: vec![tx("E2", Status::Rjct, Some("AC01"))],
            }],
        );
        let rec = status_report(&r, "M", &ps);
        let by: BTreeMap<i64, PaymentState> =
            rec.changes.iter().map(|c| (c.payment_id, c.to)).collect();
        assert_eq!(by[&1], PaymentState::Accepted);
        assert_eq!(by[&2], PaymentState::Rejected);
        assert_eq!(by[&3], PaymentState::Accepted);
        let c2 = rec.changes.iter().find(|c| c.payment_id == 2).unwrap();
        assert_eq!(
            (c2.level, c2.reason_code.as_deref()),
            ("transaction", Some("AC01"))
        );
        let states: Vec<PaymentState> = rec.changes.iter().map(|c| c.to).collect();
        assert_eq!(outcome(&states), Some(Outcome::PartiallyRejected));
    }

    #[test]
    fn a_block_rejection_hits_only_its_block() {
        let ps = vec![
            pay(1, "E1", 1, PaymentState::Sent),
            pay(2, "E2", 2, PaymentState::Sent),
        ];
        let r = report(
            None,
            vec![PaymentInfoStatus {
                original_pmt_inf_id: Some("M-2".into()),
                status: Some(Status::Rjct),
                reasons: vec![],
                transactions: vec![],
            }],
        );
        let rec = status_report(&r, "M", &ps);
        assert_eq!(rec.changes.len(), 1);
        assert_eq!(
            (rec.changes[0].payment_id, rec.changes[0].to),
            (2, PaymentState::Rejected)
        );
    }

    #[test]
    fn duplicate_rejections_are_never_applied() {
        let ps = vec![pay(1, "E1", 1, PaymentState::Accepted)];
        let mut r = report(Some(Status::Rjct), vec![]);
        r.group_reasons = vec![Reason {
            code: Some("DU01".into()),
            proprietary: None,
            info: vec![],
        }];
        let rec = status_report(&r, "M", &ps);
        assert!(rec.changes.is_empty());
        assert!(rec.notes[0].contains("NOT applied"), "{:?}", rec.notes);
    }

    #[test]
    fn a_duplicate_rejection_at_one_level_blocks_rejections_at_every_level() {
        let ps = vec![
            pay(1, "E1", 1, PaymentState::Accepted),
            pay(2, "E2", 1, PaymentState::Accepted),
        ];
        let dup = |c: &str| {
            vec![Reason {
                code: Some(c.into()),
                proprietary: None,
                info: vec![],
            }]
        };
        // Group RJCT without a reason, block RJCT with DU02.
        let r = report(
            Some(Status::Rjct),
            vec![PaymentInfoStatus {
                original_pmt_inf_id: Some("M-1".into()),
                status: Some(Status::Rjct),
                reasons: dup("DU02"),
                transactions: vec![],
            }],
        );
        assert!(status_report(&r, "M", &ps).changes.is_empty());
        // Group RJCT with DU01, transactions RJCT without a reason.
        let mut r = report(
            Some(Status::Rjct),
            vec![PaymentInfoStatus {
                original_pmt_inf_id: None,
                status: None,
                reasons: vec![],
                transactions: vec![tx("E1", Status::Rjct, None)],
            }],
        );
        r.group_reasons = dup("DU01");
        assert!(status_report(&r, "M", &ps).changes.is_empty());
        // The duplicate code as the second of two reasons.
        let mut r = report(Some(Status::Rjct), vec![]);
        r.group_reasons = [dup("NARR"), dup("AM05")].concat();
        let rec = status_report(&r, "M", &ps);
        assert!(rec.changes.is_empty());
        assert_eq!(rec.notes.len(), 2);
        // A duplicate rejection of one transaction does not protect the others.
        let r = report(
            None,
            vec![PaymentInfoStatus {
                original_pmt_inf_id: None,
                status: None,
                reasons: vec![],
                transactions: vec![
                    tx("E1", Status::Rjct, Some("DU03")),
                    tx("E2", Status::Rjct, Some("AC01")),
                ],
            }],
        );
        let rec = status_report(&r, "M", &ps);
        assert_eq!(rec.changes.len(), 1);
        assert_eq!(
            (rec.changes[0].payment_id, rec.changes[0].to),
            (2, PaymentState::Rejected)
        );
    }

    #[test]
    fn late_rejection_after_acceptance_and_no_downgrades() {
        assert!(allowed(PaymentState::Accepted, PaymentState::Rejected));
        assert!(allowed(PaymentState::Settled, PaymentState::Returned));
        assert!(!allowed(PaymentState::Settled, PaymentState::Accepted));
        assert!(!allowed(PaymentState::Accepted, PaymentState::Acknowledged));
        assert!(allowed(PaymentState::Acknowledged, PaymentState::Settled));
    }

    #[test]
    fn outcomes() {
        use PaymentState::*;
        assert_eq!(outcome(&[Sent, Sent]), None);
        assert_eq!(outcome(&[Settled, Settled]), Some(Outcome::Completed));
        assert_eq!(outcome(&[Rejected, Returned]), Some(Outcome::Rejected));
        assert_eq!(
            outcome(&[Settled, Rejected]),
            Some(Outcome::PartiallyRejected)
        );
        assert_eq!(outcome(&[Accepted, Settled]), Some(Outcome::Accepted));
    }
}
