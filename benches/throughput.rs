//! Throughput benchmark: `cargo bench --bench throughput [-- SIZES]`.
//!
//! Generates input files under target/bench-data/ and runs the release binary on each, one
//! process per measurement (best of 3), printing wall time, rows per second and that process's
//! peak resident memory (wait4's rusage):
//!
//! - `payroll`: CNY salaries to domestic card numbers (CSV, UTF-8 utf8 profile) — `validate`
//!   and `convert` to pain.001.001.09;
//! - `supplier`: EUR to IBAN/BIC under the SEPA charset profile, `;`-separated, with about 17%
//!   of the beneficiaries carrying a `&` that is transliterated (one warning each) — `validate`
//!   and `convert` to pain.001.001.03;
//! - `supplier-warn`: the same with a warning on every row (memory must not grow with findings);
//! - `payroll` as XLSX at 100k and 1M rows — `validate` (the streamed reader);
//! - python-sepaxml on the supplier file, at the largest size only: the same file read with
//!   Python's csv module and written as pain.001.001.03 by sepaxml (no validation), in a venv the
//!   bench makes under target/bench-data/venv (one run, not best of 3: it takes minutes); skipped
//!   with a notice when pip cannot install it.
//!
//! Sizes can be given as arguments, e.g. `cargo bench --bench throughput -- 10000 100000`
//! (default 10k, 100k and 1M).

mod common;

use common::{Warns, write_csv, write_supplier_csv, write_xlsx};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
[company.accounts.eur]
iban = "DE89370400440532013000"
bic = "COBADEFFXXX"
currency = "EUR"
[banks.cn]
name = "Bench bank"
currencies = ["CNY"]
charset = "utf8"
[banks.eu]
name = "Bench SEPA bank"
bic = "COBADEFFXXX"
service_level = "SEPA"
currencies = ["EUR"]
charset = "sepa-latin"
max_name_length = 70
max_remittance_length = 140
require_bic = true
[channels.payroll]
kind = "payroll"
bank = "cn"
debtor_account = "cny"
folder = "payroll"
limits = { max_file_bytes = 2_000_000_000, max_unpacked_bytes = 4_000_000_000, max_rows = 5_000_000 }
[channels.supplier]
kind = "supplier"
bank = "eu"
debtor_account = "eur"
folder = "supplier"
limits = { max_file_bytes = 2_000_000_000, max_rows = 5_000_000 }
"#;

/// The python-sepaxml side of the comparison: read the `;` CSV, add every row, export.
const SEPAXML: &str = r#"
import csv, sys, datetime
from sepaxml import SepaTransfer
config = {"name": "Bench Co.", "IBAN": "DE89370400440532013000", "BIC": "COBADEFFXXX",
          "batch": True, "currency": "EUR"}
sepa = SepaTransfer(config, schema="pain.001.001.03", clean=True)
with open(sys.argv[1], encoding="utf-8-sig", newline="") as f:
    r = csv.reader(f, delimiter=";")
    next(r)
    for row in r:
        euros, cents = row[4].split(".")
        sepa.add_payment({"name": row[1], "IBAN": row[2], "BIC": row[3],
                          "amount": int(euros) * 100 + int(cents),
                          "execution_date": datetime.date(2026, 12, 1),
                          "description": row[6], "endtoend_id": row[7]})
with open(sys.argv[2], "wb") as out:
    out.write(sepa.export(validate=False))
"#;

/// Runs a command once; returns wall time and the child's peak RSS in KiB.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which also gives its rusage"
)]
fn run_once(cmd: &mut Command) -> (Duration, i64) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(rc, pid, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with status {status}"
    );
    (elapsed, usage.ru_maxrss)
}

fn best_of_3(mut cmd: impl FnMut() -> Command) -> (f64, f64) {
    let (best, rss) = (0..3)
        .map(|_| run_once(&mut cmd()))
        .min_by_key(|(d, _)| *d)
        .unwrap();
    (best.as_secs_f64(), rss as f64 / 1024.0)
}

fn line(what: &str, shape: &str, fmt: &str, n: usize, file: &Path, (secs, mb): (f64, f64)) {
    let input = std::fs::metadata(file).unwrap().len() as f64 / 1e6;
    println!(
        "{what:<9} {shape:<14} {fmt:<5} {n:>9} {input:>9.1} {secs:>8.3} {:>10.0} {mb:>8.1}",
        n as f64 / secs
    );
}

/// A venv with sepaxml under `dir`, or why there is none.
fn sepaxml_python(dir: &Path) -> Result<PathBuf, String> {
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let has = |p: &Path| {
        Command::new(p)
            .args(["-c", "import sepaxml"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has(&python) {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !made.status.success() {
        return Err(format!(
            "python3 -m venv failed: {}",
            String::from_utf8_lossy(&made.stderr).trim()
        ));
    }
    let pip = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "sepaxml"])
        .output()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.status.success() || !has(&python) {
        return Err(format!(
            "pip install sepaxml failed: {}",
            String::from_utf8_lossy(&pip.stderr).trim()
        ));
    }
    Ok(python)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bench.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = dir.join("out.xml");
    let bin = env!("CARGO_BIN_EXE_paygate");
    let paygate = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.arg("--config").arg(&cfg).args(args);
        c
    };
    println!("paygate throughput (best of 3; peak RSS of the measured process)");
    println!(
        "{:<9} {:<14} {:<5} {:>9} {:>9} {:>8} {:>10} {:>8}",
        "command", "shape", "input", "rows", "input MB", "seconds", "rows/s", "peak MB"
    );
    let generate = |name: &str, n: usize, write: &dyn Fn(&Path)| {
        let (stem, ext) = name.split_once('.').unwrap();
        let file = dir.join(format!("{stem}-{n}.{ext}"));
        if !file.exists() {
            let tmp = dir.join(format!(".{stem}-{n}.tmp.{ext}"));
            write(&tmp);
            std::fs::rename(&tmp, &file).unwrap();
        }
        file
    };
    for &n in &sizes {
        let shapes: [(&str, &str, PathBuf, &str); 3] = [
            (
                "payroll",
                "csv",
                generate("payroll.csv", n, &|p| write_csv(p, n)),
                "pain.001.001.09",
            ),
            (
                "supplier",
                "csv",
                generate("supplier.csv", n, &|p| {
                    write_supplier_csv(p, n, Warns::Some)
                }),
                "pain.001.001.03",
            ),
            (
                "supplier-warn",
                "csv",
                generate("supplier-warn.csv", n, &|p| {
                    write_supplier_csv(p, n, Warns::Every)
                }),
                "pain.001.001.03",
            ),
        ];
        for (shape, fmt, file, format) in &shapes {
            let channel = shape.split('-').next().unwrap();
            let f = file.to_str().unwrap();
            let o = out.to_str().unwrap();
            let validate = ["validate", f, "--channel", channel, "--as-of", "2026-11-30"];
            let convert = [
                "convert",
                f,
                "--channel",
                channel,
                "--as-of",
                "2026-11-30",
                "--format",
                format,
                "--created",
                "2026-11-30T09:00:00+01:00",
                "-o",
                o,
            ];
            line(
                "validate",
                shape,
                fmt,
                n,
                file,
                best_of_3(|| paygate(&validate)),
            );
            line(
                "convert",
                shape,
                fmt,
                n,
                file,
                best_of_3(|| paygate(&convert)),
            );
        }
        if n >= 100_000 {
            let file = generate("payroll.xlsx", n, &|p| write_xlsx(p, n));
            let f = file.to_str().unwrap();
            let validate = [
                "validate",
                f,
                "--channel",
                "payroll",
                "--as-of",
                "2026-11-30",
            ];
            line(
                "validate",
                "payroll",
                "xlsx",
                n,
                &file,
                best_of_3(|| paygate(&validate)),
            );
        }
    }
    let n = *sizes.iter().max().unwrap();
    let supplier = dir.join(format!("supplier-{n}.csv"));
    match sepaxml_python(&dir) {
        Ok(python) => {
            let script = dir.join("sepaxml_bench.py");
            std::fs::write(&script, SEPAXML).unwrap();
            // One run: it takes minutes at 1M rows.
            let (t, rss) = run_once(Command::new(&python).arg(&script).arg(&supplier).arg(&out));
            let measured = (t.as_secs_f64(), rss as f64 / 1024.0);
            line("sepaxml", "supplier", "csv", n, &supplier, measured);
            println!("(python-sepaxml: no validation; `clean=True` rewrites names silently)");
        }
        Err(why) => println!(
            "NOTICE: python-sepaxml comparison skipped: {why}. It needs python3 with venv and pip \
             reaching PyPI."
        ),
    }
    let _ = std::fs::remove_file(&out);
}
