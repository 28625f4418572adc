//! Data-driven golden tests: every folder in tests/data/ is a case with an input file, a
//! `case.toml` (channel, optional input path and date) and `expected.txt`, the findings as the
//! user gets them. `UPDATE_EXPECT=1 cargo test --test golden` rewrites the expectations for
//! review in the diff.

use chrono::NaiveDate;
use paygate::config::Config;
use paygate::validate::{Report, Rules, validate_table};
use std::fmt::Write;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    channel: String,
    /// Input file relative to the case folder; default: the folder's `input.*`.
    input: Option<PathBuf>,
    /// "Today" for date rules; default 2026-11-30 (a Monday).
    as_of: Option<NaiveDate>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Runs one case and renders what a user would be told, in a stable text form.
fn check(cfg: &Config, dir: &Path) -> String {
    let case: Case = toml::from_str(&std::fs::read_to_string(dir.join("case.toml")).unwrap())
        .unwrap_or_else(|e| panic!("{}: case.toml: {e}", dir.display()));
    let input = match &case.input {
        Some(p) => dir.join(p),
        None => std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_stem().is_some_and(|s| s == "input"))
            .unwrap_or_else(|| panic!("{}: no input.* file", dir.display())),
    };
    let today = case
        .as_of
        .unwrap_or(NaiveDate::from_ymd_opt(2026, 11, 30).unwrap());
    let rules =
        Rules::new(cfg, &case.channel, today).expect("channel exists in tests/data/config.toml");
    let channel = &cfg.channels[&case.channel];
    let mut payments = Vec::new();
    let result = paygate::intake::open(&input, channel)
        .and_then(|mut t| validate_table(&mut t, &rules, channel, |p| payments.push(p)));
    match result {
        Err(e) => {
            // Only the file name: the message must not depend on where the repository lives.
            let msg = e.to_string().replace(&input.display().to_string(), "INPUT");
            format!("refused: {msg}\n")
        }
        Ok(report) => {
            assert_eq!(
                payments.len() as u64,
                report.payments,
                "sink and report disagree"
            );
            render(&report, &payments)
        }
    }
}

fn render(r: &Report, payments: &[paygate::model::Payment]) -> String {
    let mut s = String::new();
    writeln!(s, "format: {}", serde_json::to_string(&r.format).unwrap()).unwrap();
    if let Some(h) = r.header_row {
        writeln!(s, "header: row {h}").unwrap();
    }
    for (c, f) in &r.columns {
        writeln!(s, "column: {} `{}` -> {f}", c.letter, c.name).unwrap();
    }
    for c in &r.ignored_columns {
        writeln!(s, "ignored: {} `{}`", c.letter, c.name).unwrap();
    }
    let totals: Vec<String> = r.totals.iter().map(|(c, a)| format!("{a} {c}")).collect();
    writeln!(
        s,
        "rows: {}, payments: {}, totals: [{}], errors: {}, warnings: {}",
        r.rows,
        r.payments,
        totals.join(", "),
        r.errors(),
        r.warnings()
    )
    .unwrap();
    for f in r.findings.iter() {
        writeln!(s, "{f}").unwrap();
    }
    for p in payments {
        writeln!(
            s,
            "payment: row {} | {} | {} | {} | {} | {} | {} | {}",
            p.row,
            p.creditor_name,
            p.creditor_account.as_str(),
            p.creditor_agent.as_ref().map_or("-", |a| a.as_str()),
            p.amount,
            p.execution_date,
            p.end_to_end_id.as_deref().unwrap_or("-"),
            p.remittance.as_deref().unwrap_or("-"),
        )
        .unwrap();
    }
    s
}

#[test]
fn golden_cases() {
    let cfg = Config::load(&data_dir().join("config.toml")).expect("tests/data/config.toml loads");
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.toml").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 20,
        "expected the golden cases in tests/data, found {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let got = check(&cfg, dir);
        let path = dir.join("expected.txt");
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "--- {} (run UPDATE_EXPECT=1 cargo test --test golden and review the diff)\n--- expected\n{want}--- got\n{got}",
                dir.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
