//! `paygate check-config`: every configuration problem at once, each with its key.

use super::{Exit, load_config};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    println!("{}: ok", config_path.display());
    println!("  company {} ({})", cfg.company.name, cfg.company.country);
    println!("  data directory {}", cfg.data_dir().display());
    for (name, bank) in &cfg.banks {
        let ccys: Vec<&str> = bank.currencies.iter().map(|c| c.as_str()).collect();
        println!("  bank {name}: {} · pays {}", bank.name, ccys.join(", "));
    }
    for (name, ch) in &cfg.channels {
        let folder = cfg.resolve(&ch.folder);
        let note = if folder.is_dir() {
            ""
        } else {
            " (does not exist yet)"
        };
        println!(
            "  channel {name}: {} via bank {} from account {} · folder {}{note}",
            serde_json::to_value(ch.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            ch.bank,
            ch.debtor_account,
            folder.display()
        );
        println!("    approval: {}", policy_line(ch));
    }
    if let Some(a) = &cfg.paygate.admin {
        println!("  bootstrap admin {a} (every other role: paygate users grant)");
    }
    Exit::Ok
}

/// The channel's approval policy in one line, as an approver would want it explained.
fn policy_line(ch: &crate::config::Channel) -> String {
    let a = &ch.approval;
    let mut parts = Vec::new();
    if let Some(l) = &a.auto_below {
        parts.push(format!("automatic below {l}"));
    }
    parts.push(format!(
        "{} approver{}",
        a.required,
        if a.required == 1 { "" } else { "s" }
    ));
    for t in &a.tiers {
        parts.push(format!("{} above {}", t.required, t.above));
    }
    let s = &a.scrutiny;
    let mut extra = Vec::new();
    if s.new_beneficiary {
        extra.push("new beneficiary".to_string());
    }
    if s.duplicate_days > 0 {
        extra.push(format!("duplicates within {} days", s.duplicate_days));
    }
    if s.outlier_factor > rust_decimal::Decimal::ZERO {
        extra.push(format!(
            "amounts over {}x the payee's largest",
            s.outlier_factor
        ));
    }
    if !extra.is_empty() {
        parts.push(format!("+1 each for {}", extra.join(", ")));
    }
    parts.push(format!("expires after {} h", a.expire_hours));
    let l = &ch.limits;
    let mut hard = Vec::new();
    if let Some(m) = &l.max_batch_total {
        hard.push(format!("batch {m}"));
    }
    if let Some(m) = &l.max_daily_total {
        hard.push(format!("day {m}"));
    }
    if !hard.is_empty() {
        parts.push(format!("hard limits: {}", hard.join(", ")));
    }
    parts.join(" · ")
}
