//! `paygate inspect`, `reconcile`, `batches` and `batch show`: the bank's answers, for admins.

use super::{Exit, load_config};
use crate::bank::reasons::Language;
use crate::inbound;
use crate::reconcile::PaymentState;
use crate::store::Store;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A pain.002, camt.053/054 or template-defined result file (sealed, with --bank)
    file: PathBuf,
    /// Decrypt and verify with this bank's keys first; also enables its result-file layout
    #[arg(long)]
    bank: Option<String>,
    #[arg(long)]
    json: bool,
    /// Language of reason explanations: en or zh
    #[arg(long, default_value = "en")]
    lang: String,
}

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// A return file that arrived by other means (sealed, with --bank)
    file: PathBuf,
    #[arg(long)]
    bank: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct BatchesArgs {
    /// Only batches in this state (e.g. sent, accepted, completed, partially_rejected, rejected)
    #[arg(long)]
    state: Option<String>,
    /// Only the batches waiting for approval: what each needs, why, and who may approve it
    /// (asks the running daemon, as the user running this command)
    #[arg(long, conflicts_with = "state")]
    pending: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum BatchCommand {
    /// A batch's payments, their statuses and history
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
}

fn runtime() -> tokio::runtime::Runtime {
    super::current_thread_runtime()
}

/// Approvals a batch waiting for them still needs.
fn still_needed(b: &crate::store::BatchRow, given: usize) -> Option<i64> {
    (b.state == crate::model::BatchState::AwaitingApproval)
        .then(|| b.approvals_required.map(|r| (r - given as i64).max(0)))
        .flatten()
}

fn looks_sealed(b: &[u8]) -> bool {
    b.starts_with(b"-----BEGIN PGP") || b.first().is_some_and(|x| x & 0x80 != 0)
}

/// The file's bytes, opened with the bank's keys when it is sealed.
fn read(
    cfg: Option<&crate::config::Config>,
    bank: Option<&str>,
    file: &Path,
) -> Result<Vec<u8>, Exit> {
    // Refused by size before it is read: a sealed file is about as large as what it holds.
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if size > crate::bank::xml::MAX_BYTES as u64 {
        eprintln!(
            "paygate: {}: refused: {size} bytes, over the {}-byte limit for bank files; ask the bank for smaller files (per day or per account)",
            file.display(),
            crate::bank::xml::MAX_BYTES
        );
        return Err(Exit::InputErrors);
    }
    let bytes = std::fs::read(file).map_err(|e| {
        eprintln!("paygate: {}: {e}", file.display());
        Exit::Usage
    })?;
    match (cfg, bank) {
        (Some(cfg), Some(bank)) if looks_sealed(&bytes) => {
            let (kr, _) = crate::delivery::keyring(cfg, bank, std::time::SystemTime::now())
                .map_err(|e| {
                    eprintln!("paygate: {e}");
                    super::pgp::exit_for(&e)
                })?;
            let mut plain = Vec::new();
            match kr.open(&mut std::io::Cursor::new(bytes), &mut plain) {
                Ok(o) => {
                    eprintln!(
                        "(decrypted; signed by bank key {})",
                        o.signer.as_deref().unwrap_or("nobody")
                    );
                    Ok(plain)
                }
                Err(e) => {
                    eprintln!("paygate: {}: refused: {e}", file.display());
                    Err(Exit::InputErrors)
                }
            }
        }
        _ => Ok(bytes),
    }
}

pub fn inspect(args: InspectArgs, config_path: &Path) -> Exit {
    let lang = if args.lang == "zh" {
        Language::Zh
    } else {
        Language::En
    };
    let cfg = match &args.bank {
        Some(_) => match load_config(config_path) {
            Ok(c) => Some(c),
            Err(e) => return e,
        },
        None => None,
    };
    let bytes = match read(cfg.as_ref(), args.bank.as_deref(), &args.file) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let name = args.file.display().to_string();
    let parsed = match &cfg {
        Some(c) => inbound::parse(c, args.bank.as_deref(), &name, &bytes),
        None => crate::bank::parse(&bytes).map_err(inbound::InboundError::from),
    };
    match parsed {
        Ok(m) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&m).unwrap_or_default());
            } else {
                print!("{}", crate::bank::describe::describe(&m, lang));
            }
            Exit::Ok
        }
        Err(e) => {
            eprintln!("paygate: {name}: {e}");
            Exit::InputErrors
        }
    }
}

async fn store(cfg: &crate::config::Config) -> Result<Store, Exit> {
    std::fs::create_dir_all(cfg.data_dir()).map_err(|e| {
        eprintln!("paygate: {}: {e}", cfg.data_dir().display());
        Exit::Usage
    })?;
    Store::open_configured(cfg).await.map_err(|e| {
        eprintln!("paygate: {e}");
        Exit::Usage
    })
}

/// Prints what applying a report did.
pub(crate) fn print_applied(
    a: &inbound::Applied,
    payments: &dyn Fn(i64) -> Vec<crate::store::StoredPayment>,
) {
    println!(
        "report {} ({}){}",
        a.report_id,
        a.kind,
        if a.new { "" } else { ": seen before" }
    );
    for b in &a.batches {
        let ps = payments(b.batch);
        println!("  batch {} (MsgId {}): now {}", b.batch, b.msg_id, b.state);
        for c in &b.changes {
            let p = ps.iter().find(|p| p.id == c.payment_id);
            println!(
                "    row {} {}: {} → {} ({} {}{})",
                p.map_or(0, |p| p.row_no),
                p.map_or("", |p| p.end_to_end_id.as_str()),
                c.from.as_str(),
                c.to.as_str(),
                c.level,
                c.status,
                c.reason_code
                    .as_ref()
                    .map_or(String::new(), |r| format!(" {r}"))
            );
        }
        for r in &b.results {
            println!("  result report: {}", r.display());
        }
    }
    for n in &a.notes {
        println!("  note: {n}");
    }
}

pub fn reconcile(args: ReconcileArgs, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let bytes = match read(Some(&cfg), args.bank.as_deref(), &args.file) {
        Ok(b) => b,
        Err(e) => return e,
    };
    runtime().block_on(async {
        let store = match store(&cfg).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let name = args
            .file
            .file_name()
            .map_or("-".into(), |n| n.to_string_lossy().into_owned());
        match inbound::apply(&cfg, &store, args.bank.as_deref(), &name, &bytes).await {
            Ok(a) => {
                let mut all = std::collections::HashMap::new();
                for b in &a.batches {
                    all.insert(b.batch, store.payments(b.batch).await.unwrap_or_default());
                }
                print_applied(&a, &|id| all.get(&id).cloned().unwrap_or_default());
                Exit::Ok
            }
            Err(e) => {
                eprintln!("paygate: {}: {e}", args.file.display());
                match e {
                    inbound::InboundError::Store(_) | inbound::InboundError::Results(..) => {
                        Exit::Usage
                    }
                    _ => Exit::InputErrors,
                }
            }
        }
    })
}

pub fn batches(args: BatchesArgs, config_path: &Path) -> Exit {
    if args.pending {
        return pending(args.json, config_path);
    }
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let filter = match args
        .state
        .as_deref()
        .map(|s| (s, crate::model::BatchState::parse(s)))
    {
        Some((s, None)) => {
            let all: Vec<&str> = crate::model::BatchState::ALL
                .iter()
                .map(|b| b.as_str())
                .collect();
            eprintln!("paygate: `{s}` is not a batch state ({})", all.join(", "));
            return Exit::Usage;
        }
        Some((_, st)) => st,
        None => None,
    };
    runtime().block_on(async {
        let store = match store(&cfg).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let (list, unmatched) = match (store.batches(filter).await, store.reports(true).await) {
            (Ok(l), Ok(u)) => (l, u),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("paygate: {e}");
                return Exit::Usage;
            }
        };
        // Payments still open long after the batch last moved.
        let now = chrono::Utc::now();
        let mut overdue = Vec::new();
        for b in &list {
            let days = cfg.channel(&b.channel).map_or(5, |c| c.final_status_days);
            let last = chrono::DateTime::parse_from_rfc3339(&b.updated_at).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or(now);
            let open: i64 = b
                .by_state
                .iter()
                .filter(|(s, _)| PaymentState::parse(s).is_some_and(|p| !p.is_final() && p != PaymentState::Pending))
                .map(|(_, n)| n)
                .sum();
            if open > 0 && now - last > chrono::Duration::days(i64::from(days)) {
                overdue.push((b.id, open, days));
            }
        }
        if args.json {
            let v = serde_json::json!({"batches": list, "unmatched_reports": unmatched, "overdue": overdue.iter().map(|(b, n, d)| serde_json::json!({"batch": b, "open_payments": n, "days": d})).collect::<Vec<_>>()});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            return Exit::Ok;
        }
        if list.is_empty() {
            println!("no batches");
        }
        for b in &list {
            let counts: Vec<String> = b.by_state.iter().map(|(s, n)| format!("{n} {s}")).collect();
            println!(
                "{:>5}  {:<18}  {:<10} {:<32} {:<30} {}",
                b.id,
                b.state,
                b.channel,
                b.msg_id.as_deref().unwrap_or("-"),
                b.file_name,
                counts.join(", ")
            );
        }
        for (b, n, d) in &overdue {
            println!("FLAG   batch {b}: {n} payment(s) without a final status for more than {d} days: ask the bank");
        }
        if !unmatched.is_empty() {
            println!("\nreports that match no batch (kept; check them with the bank):");
            for r in &unmatched {
                println!(
                    "  report {} {} from {} at {}: original message {}",
                    r.id,
                    r.kind,
                    r.source,
                    r.received_at,
                    r.original_msg_id.as_deref().unwrap_or("-")
                );
            }
        }
        Exit::Ok
    })
}

fn pending(json: bool, config_path: &Path) -> Exit {
    use crate::daemon::control::Request;
    let resp = match super::daemon::ask(config_path, &Request::Pending) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !resp.ok {
        return super::daemon::answer(resp);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp.data).unwrap_or_default()
        );
        return Exit::Ok;
    }
    match serde_json::from_value::<Vec<crate::daemon::PendingApproval>>(resp.data) {
        Ok(p) => {
            println!("waiting for approval");
            print!("{}", super::daemon::render_pending(&p));
            Exit::Ok
        }
        Err(e) => {
            eprintln!("paygate: the daemon's answer could not be read: {e}");
            Exit::Usage
        }
    }
}

pub fn batch(cmd: BatchCommand, config_path: &Path) -> Exit {
    let BatchCommand::Show { id, json } = cmd;
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    runtime().block_on(async {
        let store = match store(&cfg).await {
            Ok(s) => s,
            Err(e) => return e,
        };
        let data = async {
            Ok::<_, crate::store::StoreError>((
                store.batch(id).await?,
                store.batch_history(id).await?,
                store.payments(id).await?,
                store.payment_history(id).await?,
                store.file_name_of_batch(id).await?,
                store.approvals(id).await?,
            ))
        }
        .await;
        let (b, history, payments, events, file, approvals) = match data {
            Ok(d) => d,
            Err(e) => {
                eprintln!("paygate: {e}");
                return Exit::Usage;
            }
        };
        let lang = cfg.channel(&b.channel).map_or(Language::En, |c| c.report_language);
        if json {
            let v = serde_json::json!({
                "batch": {"id": b.id, "channel": b.channel, "bank": b.bank, "state": b.state.as_str(), "msg_id": b.msg_id, "file": file, "submitter": b.submitter},
                "approval": {
                    "required": b.approvals_required,
                    "given": approvals,
                    "still_needed": still_needed(&b, approvals.len()),
                    "reasons": b.approval_reasons,
                },
                "history": history.iter().map(|(f, t, e)| serde_json::json!({"from": f, "to": t, "event": e})).collect::<Vec<_>>(),
                "payments": payments,
                "payment_history": events,
            });
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            return Exit::Ok;
        }
        println!("batch {} · {} · channel {} · bank {} · MsgId {} · from {}", b.id, b.state, b.channel, b.bank, b.msg_id.as_deref().unwrap_or("-"), file);
        let h: Vec<String> = history.iter().map(|(_, to, ev)| format!("{to} ({ev})")).collect();
        println!("  history: {}", h.join(" → "));
        println!(
            "  submitted by {} · approvals required {} · given {}{}",
            b.submitter.as_deref().unwrap_or("?"),
            b.approvals_required.map_or("not decided yet".into(), |r| r.to_string()),
            approvals.len(),
            match still_needed(&b, approvals.len()) {
                Some(n) if n > 0 => format!(" · {n} still needed"),
                _ => String::new(),
            }
        );
        for r in &b.approval_reasons {
            println!("    why: {r}");
        }
        for a in &approvals {
            println!(
                "    approved by {} at {}{}",
                a.approver,
                a.at,
                a.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
            );
        }
        for p in &payments {
            let state = PaymentState::parse(&p.state).unwrap_or(PaymentState::Pending);
            let scale = p.currency.parse::<crate::model::Currency>().map_or(2, |c| c.minor_units());
            let reason = p.reason_code.as_deref().map_or(String::new(), |c| {
                format!(" {c} {}", crate::bank::reasons::explain(c, lang).unwrap_or(""))
            });
            println!(
                "  row {:>4}  {:<24} {:<22} {:>14} {}  {}{}",
                p.row_no,
                p.end_to_end_id,
                crate::results::mask(&p.account),
                rust_decimal::Decimal::new(p.amount_minor, scale),
                p.currency,
                state.label(lang),
                reason
            );
            for e in events.iter().filter(|e| e.payment_id == p.id) {
                println!(
                    "             {} → {} by {} at {}{}",
                    e.from.as_deref().unwrap_or("-"),
                    e.to,
                    e.event,
                    e.at,
                    e.reason_code.as_deref().map_or(String::new(), |c| format!(" ({c})"))
                );
            }
        }
        Exit::Ok
    })
}
