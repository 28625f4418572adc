//! camt.053 (statement) and camt.054 (debit/credit notification), versions .02 to .10: entries
//! and their transaction details, with return information.

use super::xml::Node;
use super::{
    AccountReport, Direction, Entry, EntryDetail, Reason, Statement, StatementKind, amount_of,
    date_of,
};

pub(super) fn parse(body: &Node, version: String, kind: StatementKind) -> Statement {
    let report_name = match kind {
        StatementKind::Statement => "Stmt",
        StatementKind::Notification => "Ntfctn",
    };
    Statement {
        kind,
        version,
        msg_id: body.text_at(&["GrpHdr", "MsgId"]),
        created: body.text_at(&["GrpHdr", "CreDtTm"]),
        reports: body
            .children_named(report_name)
            .map(|r| AccountReport {
                id: r.text_at(&["Id"]),
                account: r
                    .text_at(&["Acct", "Id", "IBAN"])
                    .or_else(|| r.text_at(&["Acct", "Id", "Othr", "Id"])),
                currency: r.text_at(&["Acct", "Ccy"]),
                entries: r.children_named("Ntry").map(entry).collect(),
            })
            .collect(),
    }
}

fn direction(n: &Node) -> Option<Direction> {
    match n.text_at(&["CdtDbtInd"]).as_deref() {
        Some("CRDT") => Some(Direction::Credit),
        Some("DBIT") => Some(Direction::Debit),
        _ => None,
    }
}

fn entry(e: &Node) -> Entry {
    Entry {
        amount: amount_of(e.child("Amt")),
        direction: direction(e),
        reversal: e.text_at(&["RvslInd"]).is_some_and(|v| v == "true"),
        // v02–v04: <Sts>BOOK</Sts>; v08 on: <Sts><Cd>BOOK</Cd></Sts>.
        status: e
            .text_at(&["Sts", "Cd"])
            .or_else(|| e.text_at(&["Sts", "Prtry"]))
            .or_else(|| e.text_at(&["Sts"])),
        booking_date: date_of(e.child("BookgDt")),
        value_date: date_of(e.child("ValDt")),
        bank_reference: e
            .text_at(&["AcctSvcrRef"])
            .or_else(|| e.text_at(&["NtryRef"])),
        details: entry_details(e),
    }
}

/// Transaction details; for a batch booking without them, the batch reference (`Btch`).
fn entry_details(e: &Node) -> Vec<EntryDetail> {
    let mut out: Vec<EntryDetail> = e
        .children_named("NtryDtls")
        .flat_map(|d| d.children_named("TxDtls"))
        .map(detail)
        .collect();
    if out.iter().all(|d| d.end_to_end_id.is_none()) {
        for b in e.children_named("NtryDtls").filter_map(|d| d.child("Btch")) {
            out.push(EntryDetail {
                msg_id: b.text_at(&["MsgId"]),
                pmt_inf_id: b.text_at(&["PmtInfId"]),
                instruction_id: None,
                end_to_end_id: None,
                amount: amount_of(b.child("TtlAmt")),
                direction: direction(b),
                return_reason: None,
                counterparty: None,
            });
        }
    }
    out
}

fn detail(t: &Node) -> EntryDetail {
    let refs = t.child("Refs");
    let r = |name: &str| {
        refs.and_then(|x| x.text_at(&[name]))
            .filter(|v| v != "NOTPROVIDED")
    };
    let rtr = t.child("RtrInf");
    EntryDetail {
        msg_id: r("MsgId"),
        pmt_inf_id: r("PmtInfId"),
        instruction_id: r("InstrId"),
        end_to_end_id: r("EndToEndId"),
        amount: amount_of(t.child("Amt")).or_else(|| amount_of(t.at(&["AmtDtls", "TxAmt", "Amt"]))),
        direction: direction(t),
        return_reason: rtr.map(|x| Reason {
            code: x.text_at(&["Rsn", "Cd"]),
            proprietary: x.text_at(&["Rsn", "Prtry"]),
            info: x
                .children_named("AddtlInf")
                .map(|a| a.text.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        }),
        counterparty: t
            .text_at(&["RltdPties", "Cdtr", "Nm"])
            .or_else(|| t.text_at(&["RltdPties", "Cdtr", "Pty", "Nm"]))
            .or_else(|| t.text_at(&["RltdPties", "Dbtr", "Nm"]))
            .or_else(|| t.text_at(&["RltdPties", "Dbtr", "Pty", "Nm"])),
    }
}
