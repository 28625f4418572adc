//! Intake and validation of whatever lands in an inbound folder: CSV in any encoding and
//! delimiter (quoted multi-line values included), .xlsx/.xls/.ods through calamine and the zip
//! checks. The bytes are written to a file (intake reads files, as the daemon does) and validated
//! for one of three channels: a CNY payroll, a decimal-comma SEPA supplier, a named-sheet payroll.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paygate::config::Config;
use paygate::validate::{Rules, validate_table};
use std::sync::OnceLock;

struct World {
    cfg: Config,
    dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let text = include_str!("../../tests/data/config.toml");
        let dir = tempfile::Builder::new()
            .prefix("paygate-fuzz-")
            .tempdir_in(if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" })
            .unwrap();
        let cfg = Config::parse(text, dir.path()).expect("tests/data/config.toml is valid");
        World { cfg, dir }
    })
}

const CHANNELS: [&str; 3] = ["payroll", "supplier-de", "payroll-sheet"];

fuzz_target!(|data: &[u8]| {
    let w = world();
    let name = CHANNELS[data.len() % CHANNELS.len()];
    let path = w.dir.path().join("input.csv");
    std::fs::write(&path, data).unwrap();
    let channel = &w.cfg.channels[name];
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let rules = Rules::new(&w.cfg, name, today).unwrap();
    let mut payments = 0u64;
    if let Ok(mut table) = paygate::intake::open(&path, channel) {
        if let Ok(report) = validate_table(&mut table, &rules, channel, |_| payments += 1) {
            assert_eq!(report.payments, payments, "the report counts what the sink got");
            for f in report.findings.iter() {
                // Every finding reads as a sentence for the person who dropped the file.
                assert!(!f.message.is_empty(), "{f:?}");
            }
        }
    }
});
