//! pain.002 customer payment status report, versions .001.03 to .001.15 (structurally the same
//! where it matters): group, payment-information and transaction level.

use super::xml::Node;
use super::{
    PaymentInfoStatus, Status, StatusReport, TransactionStatus, amount_of, date_of, reasons_of,
};

pub(super) fn parse(body: &Node, version: String) -> StatusReport {
    let og = body.child("OrgnlGrpInfAndSts");
    StatusReport {
        version,
        msg_id: body.text_at(&["GrpHdr", "MsgId"]),
        created: body.text_at(&["GrpHdr", "CreDtTm"]),
        original_msg_id: og.and_then(|g| g.text_at(&["OrgnlMsgId"])),
        original_msg_type: og.and_then(|g| g.text_at(&["OrgnlMsgNmId"])),
        group_status: og
            .and_then(|g| g.text_at(&["GrpSts"]))
            .map(|s| Status::parse(&s)),
        group_reasons: og.map(reasons_of).unwrap_or_default(),
        counts_per_status: og
            .map(|g| {
                g.children_named("NbOfTxsPerSts")
                    .filter_map(|n| {
                        Some((
                            n.text_at(&["DtldNbOfTxs"])?,
                            Status::parse(&n.text_at(&["DtldSts"])?),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        // .03 puts payment-information blocks in OrgnlPmtInfAndSts; a few banks put them at the
        // top level of the report or misspell nothing else: look in both places.
        payment_infos: body
            .children_named("OrgnlPmtInfAndSts")
            .map(|p| PaymentInfoStatus {
                original_pmt_inf_id: p.text_at(&["OrgnlPmtInfId"]),
                status: p.text_at(&["PmtInfSts"]).map(|s| Status::parse(&s)),
                reasons: reasons_of(p),
                transactions: p.children_named("TxInfAndSts").map(transaction).collect(),
            })
            .collect(),
    }
}

fn transaction(t: &Node) -> TransactionStatus {
    let r = t.child("OrgnlTxRef");
    TransactionStatus {
        status_id: t.text_at(&["StsId"]),
        original_instruction_id: t.text_at(&["OrgnlInstrId"]),
        original_end_to_end_id: t.text_at(&["OrgnlEndToEndId"]),
        status: t.text_at(&["TxSts"]).map(|s| Status::parse(&s)),
        reasons: reasons_of(t),
        amount: r.and_then(|r| amount_of(r.at(&["Amt", "InstdAmt"]))),
        creditor_account: r.and_then(|r| {
            r.text_at(&["CdtrAcct", "Id", "IBAN"])
                .or_else(|| r.text_at(&["CdtrAcct", "Id", "Othr", "Id"]))
        }),
        requested_date: r.and_then(|r| date_of(r.child("ReqdExctnDt"))),
    }
}
