//! Throughput benchmark: `cargo bench --bench throughput [-- SIZES]`.
//!
//! Generates payroll files of 10k, 100k and 1M rows (CSV; XLSX up to 100k) under
//! target/bench-data/, runs the release `paygate validate` on each, and `paygate convert` of
//! the CSV to pain.001.001.09, each as a separate process, and prints wall time, rows per second
//! and the peak resident memory of that process (from wait4's rusage). Each measurement is the
//! best of 3 runs. Sizes can be given as arguments, e.g.
//! `cargo bench --bench throughput -- 10000 100000`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SURNAMES: &[&str] = &[
    "张", "王", "李", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "涛", "明", "超",
];
const BANKS: &[(&str, &str)] = &[
    ("102290002916", "中国工商银行上海市分行营业部"),
    ("103290019449", "中国农业银行上海静安支行"),
    ("104290003627", "中国银行上海市分行"),
    ("105290006431", "中国建设银行上海浦东分行"),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A 19-digit UnionPay card number with a correct Luhn digit.
fn card(rng: &mut Rng) -> String {
    let mut digits: Vec<u8> = b"622848".iter().map(|b| b - b'0').collect();
    while digits.len() < 18 {
        digits.push((rng.next() % 10) as u8);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| (b'0' + d) as char).collect()
}

struct Row {
    name: String,
    account: String,
    bank: (&'static str, &'static str),
    cents: u64,
    id: String,
}

fn rows(n: usize) -> impl Iterator<Item = Row> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n).map(move |i| Row {
        name: format!(
            "{}{}{}",
            SURNAMES[(rng.next() % SURNAMES.len() as u64) as usize],
            GIVEN[(rng.next() % GIVEN.len() as u64) as usize],
            GIVEN[(rng.next() % GIVEN.len() as u64) as usize]
        ),
        account: card(&mut rng),
        bank: BANKS[(rng.next() % BANKS.len() as u64) as usize],
        cents: 300_000 + rng.next() % 4_500_000,
        id: format!("PAY{i:09}"),
    })
}

const HEADER: [&str; 8] = [
    "Employee ID",
    "Name",
    "Account",
    "Bank Code",
    "Bank Name",
    "Net Pay",
    "Currency",
    "Reference",
];

fn write_csv(path: &Path, n: usize) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(w, "{}", HEADER.join(",")).unwrap();
    for r in rows(n) {
        writeln!(
            w,
            "{},{},{},{},{},{}.{:02},CNY,Salary 2026-11",
            r.id,
            r.name,
            r.account,
            r.bank.0,
            r.bank.1,
            r.cents / 100,
            r.cents % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

fn write_xlsx(path: &Path, n: usize) {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let text = Format::new().set_num_format("@");
    let money = Format::new().set_num_format("#,##0.00");
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    ws.set_name("Payroll").unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (i, r) in rows(n).enumerate() {
        let row = i as u32 + 1;
        ws.write_string_with_format(row, 0, &r.id, &text).unwrap();
        ws.write_string(row, 1, &r.name).unwrap();
        ws.write_string_with_format(row, 2, &r.account, &text)
            .unwrap();
        ws.write_string_with_format(row, 3, r.bank.0, &text)
            .unwrap();
        ws.write_string(row, 4, r.bank.1).unwrap();
        ws.write_number_with_format(row, 5, r.cents as f64 / 100.0, &money)
            .unwrap();
        ws.write_string(row, 6, "CNY").unwrap();
        ws.write_string(row, 7, "Salary 2026-11").unwrap();
    }
    wb.save(path).unwrap();
}

const CONFIG: &str = r#"
[paygate]
data_dir = "data"
[company]
name = "Bench Co."
country = "CN"
[company.accounts.cny]
number = "1001244309300012345"
cnaps = "102290024433"
currency = "CNY"
[banks.cn]
name = "Bench bank"
currencies = ["CNY"]
charset = "utf8"
[channels.payroll]
kind = "payroll"
bank = "cn"
debtor_account = "cny"
folder = "payroll"
limits = { max_file_bytes = 2_000_000_000, max_unpacked_bytes = 4_000_000_000, max_rows = 5_000_000 }
"#;

/// Runs paygate once; returns wall time and the child's peak RSS in KiB.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives its rusage"
)]
fn run_once(args: &[&str]) -> (Duration, i64) {
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn paygate");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(rc, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "paygate {args:?} failed with status {status}"
    );
    (elapsed, usage.ru_maxrss)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.to_str().unwrap().to_string();
    let out = dir.join("out.xml").to_str().unwrap().to_string();
    println!("paygate throughput (best of 3; peak RSS of the paygate process)");
    println!(
        "{:<9} {:<5} {:>9} {:>9} {:>8} {:>10} {:>8}",
        "command", "input", "rows", "input MB", "seconds", "rows/s", "peak MB"
    );
    for &n in &sizes {
        for fmt in ["csv", "xlsx"] {
            if fmt == "xlsx" && n > 100_000 {
                continue;
            }
            let file = dir.join(format!("payroll-{n}.{fmt}"));
            if !file.exists() {
                if fmt == "csv" {
                    write_csv(&file, n)
                } else {
                    write_xlsx(&file, n)
                }
            }
            let mb = std::fs::metadata(&file).unwrap().len() as f64 / 1e6;
            let file = file.to_str().unwrap();
            let validate = ["--config", &cfg, "validate", file, "--as-of", "2026-11-30"];
            let convert = [
                "--config",
                &cfg,
                "convert",
                file,
                "--as-of",
                "2026-11-30",
                "--format",
                "pain.001.001.09",
                "--created",
                "2026-11-30T09:00:00+08:00",
                "-o",
                &out,
            ];
            let mut runs: Vec<(&str, &[&str])> = vec![("validate", &validate)];
            if fmt == "csv" {
                runs.push(("convert", &convert));
            }
            for (command, args) in runs {
                let (best, rss) = (0..3)
                    .map(|_| run_once(args))
                    .min_by_key(|(d, _)| *d)
                    .unwrap();
                let secs = best.as_secs_f64();
                println!(
                    "{command:<9} {fmt:<5} {n:>9} {mb:>9.1} {secs:>8.3} {:>10.0} {:>8.1}",
                    n as f64 / secs,
                    rss as f64 / 1024.0
                );
            }
        }
    }
    if let Ok(m) = std::fs::metadata(&out) {
        println!(
            "(last pain.001.001.09 written: {:.1} MB)",
            m.len() as f64 / 1e6
        );
    }
    let _ = std::fs::remove_file(&out);
}
