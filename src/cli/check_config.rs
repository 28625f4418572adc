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
    }
    Exit::Ok
}
