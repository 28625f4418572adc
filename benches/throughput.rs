//! Throughput benchmark: `cargo bench --bench throughput [-- SIZES]`.
//!
//! Generates payroll files of 10k, 100k and 1M rows (CSV; XLSX up to 100k) under
//! target/bench-data/, runs the release `paygate validate` on each, and `paygate convert` of
//! the CSV to pain.001.001.09, each as a separate process, and prints wall time, rows per second
//! and the peak resident memory of that process (from wait4's rusage). Each measurement is the
//! best of 3 runs. Sizes can be given as arguments, e.g.
//! `cargo bench --bench throughput -- 10000 100000`.

mod common;

use common::{write_csv, write_xlsx};
use std::path::PathBuf;
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
