//! The `paygate` binary as users run it: exit codes, messages, and no panic on any input.

#[allow(dead_code)]
#[path = "delivery/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn paygate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paygate"))
        .current_dir(root())
        .env_remove("PAYGATE_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .args(args)
        .output()
        .expect("run paygate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const CFG: &str = "samples/paygate.toml";

#[test]
fn valid_samples_exit_0_with_a_summary() {
    for (file, channel, summary) in [
        (
            "samples/payroll.xlsx",
            "payroll",
            "40 rows, 40 valid payments totalling 984,591.48 CNY; 0 errors, 0 warnings",
        ),
        (
            "samples/payroll.csv",
            "payroll",
            "40 rows, 40 valid payments totalling 984,591.48 CNY; 0 errors, 0 warnings",
        ),
        (
            "samples/payroll-gbk.csv",
            "payroll",
            "35 rows, 35 valid payments totalling 884,405.49 CNY; 0 errors, 0 warnings",
        ),
    ] {
        let o = paygate(&["--config", CFG, "validate", file, "--channel", channel]);
        assert_eq!(o.status.code(), Some(0), "{file}: {}", text(&o));
        assert!(text(&o).contains(summary), "{file}: {}", text(&o));
    }
    // Warnings alone do not fail a file.
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "samples/supplier.csv",
        "--channel",
        "supplier",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("0 errors, 5 warnings"), "{}", text(&o));
}

#[test]
fn errors_exit_1_and_json_has_every_finding() {
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "samples/broken.csv",
        "--channel",
        "supplier",
        "--json",
        "--as-of",
        "2026-11-30",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["errors"], 13);
    let findings = v["report"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 13);
    let iban = &findings[0];
    assert_eq!(iban["code"], "iban.checksum");
    assert_eq!(iban["row"], 3);
    assert_eq!(iban["column"]["name"], "IBAN");
    assert_eq!(iban["column"]["letter"], "C");
    assert_eq!(iban["value"], "FR7130004008288419740363803");
    // The human report says the same, with rows and columns.
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "samples/broken.csv",
        "--channel",
        "supplier",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o);
    assert!(out.contains("iban.checksum"), "{out}");
    assert!(
        out.contains("16 rows, 3 valid payments totalling 7,800.90 EUR; 13 errors, 0 warnings"),
        "{out}"
    );
}

#[test]
fn unreadable_files_exit_2_with_the_reason() {
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "no/such/file.csv",
        "--channel",
        "payroll",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("file not found"), "{}", text(&o));
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "tests/data/xlsx_encrypted/input.xlsx",
        "--channel",
        "payroll",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("password-protected"), "{}", text(&o));
    let o = paygate(&[
        "--config",
        CFG,
        "validate",
        "Cargo.lock",
        "--channel",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("no channel `nope`"), "{}", text(&o));
    // Two channels and a file outside both folders: the user must say which.
    let o = paygate(&["--config", CFG, "validate", "samples/payroll.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--channel"), "{}", text(&o));
    let o = paygate(&["--config", CFG, "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_channel_is_found_from_the_files_folder() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(root().join(CFG)).unwrap().replace(
        "../target/paygate-demo/payroll",
        &dir.path().join("payroll").display().to_string(),
    );
    let cfg_path = dir.path().join("paygate.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    std::fs::create_dir_all(dir.path().join("payroll/inbox")).unwrap();
    let file = dir.path().join("payroll/inbox/nov.csv");
    std::fs::copy(root().join("samples/payroll.csv"), &file).unwrap();
    let o = paygate(&[
        "--config",
        cfg_path.to_str().unwrap(),
        "validate",
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("channel payroll"), "{}", text(&o));
}

#[test]
fn config_problems_exit_78_naming_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(root().join(CFG))
        .unwrap()
        .replace("charset = \"utf8\"", "charset = \"utf-8\"")
        .replace("max_rows = 50_000", "max_rows = \"lots\"\nmax_row = 3");
    let p: PathBuf = dir.path().join("bad.toml");
    std::fs::write(&p, bad).unwrap();
    let o = paygate(&["--config", p.to_str().unwrap(), "check-config"]);
    assert_eq!(o.status.code(), Some(78));
    let out = text(&o);
    for key in [
        "banks.icbc-sh.charset",
        "channels.payroll.limits.max_row",
        "channels.payroll.limits.max_rows",
    ] {
        assert!(out.contains(key), "{key} not named in: {out}");
    }
    assert!(out.contains("3 problems"), "{out}");
    // validate refuses to run on a bad config, with the same exit code.
    let o = paygate(&[
        "--config",
        p.to_str().unwrap(),
        "validate",
        "samples/payroll.csv",
    ]);
    assert_eq!(o.status.code(), Some(78));
    // A missing config file says where to give one.
    let o = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .env("PAYGATE_CONFIG", dir.path().join("absent.toml"))
        .args(["check-config"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78));
    assert!(text(&o).contains("absent.toml"), "{}", text(&o));
    let o = paygate(&["--config", CFG, "check-config"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Deterministic xorshift, so a failure can be reproduced.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_inputs_never_panic() {
    use paygate::config::Config;
    use paygate::validate::{Rules, validate_table};
    let cfg = Config::load(&root().join(CFG)).unwrap();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut outcomes = [0usize; 3];
    for (sample, channel) in [
        ("samples/payroll.csv", "payroll"),
        ("samples/payroll-gbk.csv", "payroll"),
        ("samples/supplier.csv", "supplier"),
        ("samples/payroll.xlsx", "payroll"),
        ("tests/data/ods_calc/input.ods", "payroll"),
        ("tests/data/xls_legacy/input.xls", "payroll"),
    ] {
        let original = std::fs::read(root().join(sample)).unwrap();
        let rules = Rules::new(&cfg, channel, today).unwrap();
        let ch = &cfg.channels[channel];
        for i in 0..60 {
            let mut bytes = original.clone();
            let edits = 1 + (rng.next() % 8) as usize;
            for _ in 0..edits {
                let pos = (rng.next() as usize) % bytes.len().max(1);
                match rng.next() % 4 {
                    0 => bytes[pos] = rng.next() as u8,
                    1 => bytes.truncate(pos),
                    2 => bytes.insert(
                        pos.min(bytes.len()),
                        b"\",;\n\r\t\0\xff"[(rng.next() % 8) as usize],
                    ),
                    _ => {
                        let end = (pos + (rng.next() % 64) as usize).min(bytes.len());
                        bytes.drain(pos..end);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            let p = dir.path().join(format!(
                "m{i}-{}",
                Path::new(sample).file_name().unwrap().to_string_lossy()
            ));
            std::fs::write(&p, &bytes).unwrap();
            let result = paygate::intake::open(&p, ch)
                .and_then(|mut t| validate_table(&mut t, &rules, ch, |_| {}));
            match result {
                Ok(r) if r.errors() == 0 => outcomes[0] += 1,
                Ok(_) => outcomes[1] += 1,
                Err(_) => outcomes[2] += 1,
            }
        }
    }
    // Every mutated file got an answer without a crash (a panic fails this test); the
    // mutations are real: most files were found faulty or refused, some of each kind.
    assert!(outcomes[1] + outcomes[2] > 180, "{outcomes:?}");
    assert!(outcomes[1] > 0 && outcomes[2] > 0, "{outcomes:?}");
}

#[test]
fn formats_lists_pain001_versions_and_templates() {
    formats_listed(&["--config", CFG, "formats"]);
    // Without a config file: the built-in versions and the shipped templates.
    let out = formats_listed(&["--config", "/nonexistent/paygate.toml", "formats"]);
    assert!(out.contains("no config at"), "{out}");
}

fn formats_listed(args: &[&str]) -> String {
    let o = paygate(args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    for name in [
        "pain.001.001.03",
        "pain.001.001.09",
        "pain.001.001.12",
        "cn-payroll-gbk",
        "fixed-width-gbk",
        "generic-csv",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(name)),
            "{name} not listed:\n{out}"
        );
    }
    out
}

#[test]
fn convert_to_stdout_keeps_the_report_on_stderr() {
    let o = paygate(&[
        "--config",
        CFG,
        "convert",
        "samples/payroll.csv",
        "--channel",
        "payroll",
        "--format",
        "generic-csv",
        "--as-of",
        "2026-11-30",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let csv = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        csv.starts_with("End to End ID,Beneficiary,Account,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 41);
    assert!(String::from_utf8_lossy(&o.stderr).contains("40 payments"));
    // Devices are written to, never replaced.
    let o = paygate(&[
        "--config",
        CFG,
        "convert",
        "samples/payroll.csv",
        "--channel",
        "payroll",
        "-o",
        "/dev/null",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device_like()
    );
}

trait CharDevice {
    fn is_char_device_like(&self) -> bool;
}

impl CharDevice for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

#[test]
fn the_same_file_converts_to_the_same_msg_id() {
    let run = || {
        let o = paygate(&[
            "--config",
            CFG,
            "convert",
            "samples/supplier.csv",
            "--channel",
            "supplier",
            "--created",
            "2026-11-30T09:00:00+01:00",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        o.stdout
    };
    let (a, b) = (run(), run());
    assert_eq!(
        a, b,
        "same file, same config, same creation time: same bytes"
    );
    let xml = String::from_utf8(a).unwrap();
    assert!(xml.contains("<MsgId>PG"), "{xml}");
}

/// A supplier file of `rows` rows made from the sample's EUR payees: every other beneficiary
/// has a `&` (a transliteration warning each); `bad_iban_at`, if given, breaks one IBAN.
fn many_rows(dir: &Path, rows: usize, bad_iban_at: Option<usize>) -> PathBuf {
    let sample = std::fs::read_to_string(root().join("samples/supplier.csv")).unwrap();
    let eur: Vec<Vec<&str>> = sample
        .lines()
        .skip(1)
        .map(|l| l.split(';').collect::<Vec<_>>())
        .filter(|f| f[5] == "EUR")
        .collect();
    let mut out = String::from(
        "Vendor ID;Beneficiary;IBAN;BIC;Amount;Currency;Remittance Information;End to End ID\n",
    );
    for i in 0..rows {
        let f = &eur[i % eur.len()];
        let name = if i % 2 == 0 {
            "Weber & Soehne KG"
        } else {
            "Plain Supplier GmbH"
        };
        let iban = if Some(i) == bad_iban_at {
            "DE00700202702934883507"
        } else {
            f[2]
        };
        out.push_str(&format!(
            "V{i};{name};{iban};{};{}.{:02};EUR;INV {i};E2E-{i}\n",
            f[3],
            10 + i,
            i % 100
        ));
    }
    let path = dir.join(format!("many-{rows}-{}.csv", bad_iban_at.is_some()));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn thousands_of_findings_stream_in_row_order_and_one_or_two_threads_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = many_rows(dir.path(), 6_000, None);
    let run = |threads: &str, out: &str, findings: &str| {
        let o = paygate(&[
            "--config",
            CFG,
            "convert",
            file.to_str().unwrap(),
            "--channel",
            "supplier",
            "--as-of",
            "2026-11-30",
            "--created",
            "2026-11-30T09:00:00+01:00",
            "--threads",
            threads,
            "--findings",
            dir.path().join(findings).to_str().unwrap(),
            "-o",
            dir.path().join(out).to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        text(&o)
    };
    let one = run("1", "one.xml", "one.csv");
    let two = run("2", "two.xml", "two.csv");
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    let xml = read("two.xml");
    assert!(xml.len() > 6_000 * 300, "{} bytes", xml.len());
    assert!(
        read("one.xml") == xml,
        "the bank file differs by thread count"
    );
    assert_eq!(read("one.csv"), read("two.csv"));
    assert_eq!(
        one.replace("one.csv", "X").replace("one.xml", "Y"),
        two.replace("two.csv", "X").replace("two.xml", "Y")
    );
    // Every finding is in the CSV, in row order; the report shows 20 and says where the rest are.
    let csv = String::from_utf8(read("two.csv")).unwrap();
    let rows: Vec<u64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows.len(), 3_000);
    assert_eq!(rows.first(), Some(&2));
    assert_eq!(rows.last(), Some(&6_000));
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "not in row order");
    assert!(
        two.contains("… 2,980 more name.transliterated warnings not shown (3,000 in all)"),
        "{two}"
    );
    assert!(two.contains("every finding is in"), "{two}");
    assert_eq!(two.matches("name.transliterated").count(), 21, "{two}");
}

#[test]
fn json_streams_every_finding_and_an_error_after_thousands_of_warnings_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let file = many_rows(dir.path(), 6_000, Some(5_000));
    let validate = |extra: &[&str]| {
        let mut args = vec![
            "--config",
            CFG,
            "validate",
            file.to_str().unwrap(),
            "--channel",
            "supplier",
            "--as-of",
            "2026-11-30",
        ];
        args.extend_from_slice(extra);
        paygate(&args)
    };
    let o = validate(&["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["errors"], 1);
    assert_eq!(v["warnings"], 3_000);
    let findings = v["report"]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 3_001);
    let rows: Vec<u64> = findings
        .iter()
        .map(|f| f["row"].as_u64().unwrap())
        .collect();
    assert!(rows.windows(2).all(|w| w[0] <= w[1]), "not in row order");
    let bad = findings.iter().find(|f| f["severity"] == "error").unwrap();
    assert_eq!(bad["row"], 5_002);
    assert_eq!(bad["column"]["letter"], "C");
    // The terminal report shows the error among the first of its kind.
    let out = text(&validate(&[]));
    assert!(out.contains("5002"), "{out}");
    assert!(out.contains("add --findings FILE.csv (or --json)"), "{out}");
    assert!(out.contains("6000 rows, 5999 valid payments"), "{out}");
}

/// `paygate demo` end to end: every batch final, and the metrics it scrapes from its own
/// `/metrics` endpoint agree with the batches `paygate status` shows. The Grafana dashboard
/// asks only for metrics the endpoint serves.
#[test]
fn the_demo_runs_end_to_end_and_its_metrics_match_its_batches() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("demo");
    let mut c = Command::new(env!("CARGO_BIN_EXE_paygate"));
    c.args(["demo", "--timeout", "120", "--dir"]).arg(&work);
    let o = harness::output_within(c, 240, None);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("every batch is final"), "{out}");
    // The status section: "  STATE   N" lines under "batches".
    let status: Vec<(String, String)> = out
        .split("\nbatches\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap().to_string(), w.next().unwrap().to_string())
        })
        .collect();
    assert!(!status.is_empty(), "{out}");
    let metrics = out
        .split("/metrics | grep")
        .nth(1)
        .expect("the demo scraped its metrics");
    for (state, n) in &status {
        let line = format!("paygate_batches{{state=\"{state}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing from: {metrics}");
    }
    let batches: u64 = status.iter().map(|(_, n)| n.parse::<u64>().unwrap()).sum();
    let files: u64 = metrics
        .lines()
        .filter(|l| l.trim().starts_with("paygate_files_received_total"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(files, batches, "{metrics}");
    // 40 + 35 payroll payments went out (the demo's two payroll files).
    assert!(
        metrics.contains("paygate_payments_sent_total{channel=\"payroll\",currency=\"CNY\"} 75"),
        "{metrics}"
    );
    // Every archived file is encrypted: nothing under archive/ is a spreadsheet or XML.
    let archive = work.join("data/archive");
    let mut seen = 0;
    let mut stack = vec![archive, work.join("channels/payroll/archive")];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        } else {
            seen += 1;
            let b = std::fs::read(&p).unwrap();
            assert!(
                !b.windows(5)
                    .any(|w| w == b"<?xml" || w == b"PK\x03\x04\x14"),
                "{} is not encrypted",
                p.display()
            );
        }
    }
    assert!(seen >= 10, "only {seen} archived files");
    // The dashboard's metrics are the endpoint's.
    let dash = std::fs::read_to_string(root().join("systemd/paygate-grafana.json")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let served = std::fs::read_to_string(root().join("src/daemon/metrics.rs")).unwrap();
    let mut names: Vec<&str> = dash
        .match_indices("paygate_")
        .map(|(i, _)| {
            let rest = &dash[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        let family = n.strip_suffix("_total").unwrap_or(n);
        assert!(
            served.contains(&format!("\"{family}\"")),
            "the dashboard asks for {n}, which /metrics does not serve"
        );
    }
}
