//! What a return file says, for people: `paygate inspect` and the logs.

use super::reasons::{Language, explain};
use super::{Direction, Message, Reason, StatementKind};
use std::fmt::Write;

fn reasons(rs: &[Reason], lang: Language) -> String {
    rs.iter()
        .map(|r| {
            let mut s = r.key().unwrap_or("(no code)").to_string();
            if let Some(e) = r.key().and_then(|k| explain(k, lang)) {
                let _ = write!(s, " ({e})");
            }
            for i in &r.info {
                let _ = write!(s, " \"{i}\"");
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn opt(o: &Option<String>) -> &str {
    o.as_deref().unwrap_or("-")
}

/// A readable account of a message.
pub fn describe(m: &Message, lang: Language) -> String {
    let mut s = String::new();
    match m {
        Message::StatusReport(r) => {
            let _ = writeln!(
                s,
                "{} payment status report {} created {}",
                r.version,
                opt(&r.msg_id),
                opt(&r.created)
            );
            let _ = writeln!(
                s,
                "  original message {} ({})",
                opt(&r.original_msg_id),
                opt(&r.original_msg_type)
            );
            let _ = write!(
                s,
                "  group status {}",
                r.group_status.as_ref().map_or("-", |x| x.code())
            );
            if !r.group_reasons.is_empty() {
                let _ = write!(s, ": {}", reasons(&r.group_reasons, lang));
            }
            s.push('\n');
            if !r.counts_per_status.is_empty() {
                let c: Vec<String> = r
                    .counts_per_status
                    .iter()
                    .map(|(n, st)| format!("{n} {}", st.code()))
                    .collect();
                let _ = writeln!(s, "  transactions per status: {}", c.join(", "));
            }
            for p in &r.payment_infos {
                let _ = write!(
                    s,
                    "  payment information {}: {}",
                    opt(&p.original_pmt_inf_id),
                    p.status.as_ref().map_or("-", |x| x.code())
                );
                if !p.reasons.is_empty() {
                    let _ = write!(s, ": {}", reasons(&p.reasons, lang));
                }
                s.push('\n');
                for t in &p.transactions {
                    let _ = write!(
                        s,
                        "    transaction e2e {} instr {}: {}",
                        opt(&t.original_end_to_end_id),
                        opt(&t.original_instruction_id),
                        t.status.as_ref().map_or("-", |x| x.code())
                    );
                    if let Some((a, c)) = &t.amount {
                        let _ = write!(s, " {a} {c}");
                    }
                    if !t.reasons.is_empty() {
                        let _ = write!(s, ": {}", reasons(&t.reasons, lang));
                    }
                    s.push('\n');
                }
            }
        }
        Message::Statement(st) => {
            let what = match st.kind {
                StatementKind::Statement => "account statement",
                StatementKind::Notification => "debit/credit notification",
            };
            let _ = writeln!(
                s,
                "{} {what} {} created {}",
                st.version,
                opt(&st.msg_id),
                opt(&st.created)
            );
            for r in &st.reports {
                let _ = writeln!(
                    s,
                    "  account {} {} (report {}): {} entries",
                    opt(&r.account),
                    opt(&r.currency),
                    opt(&r.id),
                    r.entries.len()
                );
                for e in &r.entries {
                    let dir = match e.direction {
                        Some(Direction::Credit) => "CRDT",
                        Some(Direction::Debit) => "DBIT",
                        None => "?",
                    };
                    let amt = e
                        .amount
                        .as_ref()
                        .map_or("-".to_string(), |(a, c)| format!("{a} {c}"));
                    let _ = writeln!(
                        s,
                        "    {dir} {amt} {}{} booked {} value {} ref {}",
                        opt(&e.status),
                        if e.reversal { " REVERSAL" } else { "" },
                        e.booking_date.map_or("-".into(), |d| d.to_string()),
                        e.value_date.map_or("-".into(), |d| d.to_string()),
                        opt(&e.bank_reference)
                    );
                    for d in &e.details {
                        let _ = write!(
                            s,
                            "      e2e {} msg {} pmtinf {}",
                            opt(&d.end_to_end_id),
                            opt(&d.msg_id),
                            opt(&d.pmt_inf_id)
                        );
                        if let Some((a, c)) = &d.amount {
                            let _ = write!(s, " {a} {c}");
                        }
                        if let Some(r) = &d.return_reason {
                            let _ =
                                write!(s, " RETURNED: {}", reasons(std::slice::from_ref(r), lang));
                        }
                        s.push('\n');
                    }
                }
            }
        }
    }
    s
}
