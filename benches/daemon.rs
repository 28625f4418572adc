//! Daemon benchmark: `cargo bench --bench daemon [-- ROWS [IDLE_SECS]]`.
//!
//! Runs the release `paygate run` against a folder transport (the bank's inbox is a local
//! folder) with OpenPGP on, and measures, each with a fresh daemon and store:
//!
//! 1. drop → sealed file in the bank's inbox for one payroll CSV of ROWS payments (default
//!    1,000,000; auto-approved), and the daemon's peak resident memory (VmHWM) over that run;
//! 2. drop → upload of a 50-row file, ten times (min / median / max);
//! 3. ten channels idle for IDLE_SECS seconds (default 600): the daemon's CPU use (user +
//!    system time over wall time, from /proc) and resident memory at the end.
//!
//! `PAYGATE_BENCH_STORE=postgres cargo bench --bench daemon -- instances [FILES]` instead drops
//! FILES (default 1,000) 50-row files at once and times them to the bank's inbox through one
//! instance, then through two.
//!
//! With `PAYGATE_BENCH_STORE=postgres` the store of each run is a throw-away database on the
//! PostgreSQL of `PAYGATE_TEST_POSTGRES` (default 127.0.0.1:5432) instead of the SQLite file.
//!
//! `PAYGATE_BENCH_LOG=info` logs each stage of the daemon (target/bench-data/daemon/*/daemon-data.log).
//!
//! Files go to target/bench-data/daemon/. Nothing but this machine is contacted.

mod common;

use common::write_csv;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn keys(dir: &Path) -> (String, String) {
    let mut out = Vec::new();
    for name in ["company", "bank"] {
        let _ = std::fs::remove_file(dir.join(format!("{name}.sec.asc")));
        let o = Command::new(env!("CARGO_BIN_EXE_paygate"))
            .args(["keys", "generate", "--userid", "Bench <b@example>", "--dir"])
            .arg(dir)
            .args(["--name", name])
            .output()
            .expect("paygate keys generate");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.push(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("fingerprint "))
                .unwrap()
                .to_string(),
        );
    }
    (out[0].clone(), out[1].clone())
}

fn config(dir: &Path, cfpr: &str, bfpr: &str, channels: usize, store: Option<&str>) -> PathBuf {
    let mut text = format!(
        r#"[paygate]
data_dir = "data"
workers = 2
admin = "{me}"
[company]
name = "Bench Co."
country = "CN"
short_name = "BENCH"
[company.pgp]
secret_key = "keys/company.sec.asc"
fingerprint = "{cfpr}"
[company.accounts.cny]
number = "1001244309300012345"
cnaps = "102290024433"
currency = "CNY"
[banks.cn]
name = "Bench bank"
format = "pain.001.001.09"
currencies = ["CNY"]
charset = "utf8"
poll_secs = 60
[banks.cn.pgp]
keys = ["keys/bank.pub.asc"]
fingerprints = ["{bfpr}"]
[banks.cn.transport]
type = "folder"
upload_dir = "bank/in"
download_dir = "bank/out"
remote_name = "{{company}}_{{msgid}}.xml.pgp"
"#,
        me =
            String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout).trim()
    );
    for i in 0..channels {
        text.push_str(&format!(
            r#"[channels.payroll{i}]
kind = "payroll"
bank = "cn"
debtor_account = "cny"
folder = "channels/payroll{i}"
limits = {{ max_file_bytes = 2_000_000_000, max_unpacked_bytes = 4_000_000_000, max_rows = 5_000_000 }}
submitter = "bench-files"
# Auto-approved; the unusual-amount check runs. A first batch has every payee new, and the
# latency runs drop the same payroll again and again: either would ask for a person.
approval = {{ auto_below = "100000000000", scrutiny = {{ new_beneficiary = false, duplicate_days = 0 }} }}
"#
        ));
    }
    if let Some(url) = store {
        text.push_str(&format!("[store]\nurl = \"{url}\"\n"));
    }
    let p = dir.join("paygate.toml");
    std::fs::write(&p, text).unwrap();
    p
}

struct Daemon(Child);

impl Daemon {
    fn start(config: &Path, dir: &Path) -> Daemon {
        Daemon::start_in(config, dir, "data")
    }

    /// A daemon whose config names `data_dir = DATA` (a second instance beside the first).
    fn start_in(config: &Path, dir: &Path, data: &str) -> Daemon {
        let log = std::fs::File::create(dir.join(format!("daemon-{data}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_paygate"))
            .arg("--config")
            .arg(config)
            .arg("run")
            // PAYGATE_BENCH_LOG=info shows each stage's time in the daemon's log.
            .env(
                "PAYGATE_LOG",
                std::env::var("PAYGATE_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("paygate run");
        let sock = dir.join(data).join("paygate.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        for args in [
            &[
                "users",
                "add",
                "bench-files",
                "--system",
                "--reason",
                "bench",
            ][..],
            &[
                "users",
                "grant",
                "bench-files",
                "submitter",
                "--channel",
                "*",
                "--reason",
                "bench",
            ],
        ] {
            let o = Command::new(env!("CARGO_BIN_EXE_paygate"))
                .arg("--config")
                .arg(config)
                .args(args)
                .output()
                .unwrap();
            // Added once per store; a restart finds the user there.
            let text = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() || text.contains("already"), "{text}");
        }
        Daemon(child)
    }

    fn status_kb(&self, key: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        s.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// User + system CPU time so far.
    fn cpu(&self) -> Duration {
        let s = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        let after = &s[s.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
        let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

fn on_postgres() -> bool {
    std::env::var("PAYGATE_BENCH_STORE").is_ok_and(|v| v == "postgres")
}

/// The store of one run: a fresh PostgreSQL database when `PAYGATE_BENCH_STORE=postgres`
/// (dropped with the returned guard), else the SQLite file in the run's data folder.
struct Store(Option<paygate::store::scratch::Scratch>);

impl Store {
    fn new() -> Store {
        if on_postgres() {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let s = rt
                .block_on(paygate::store::scratch::Scratch::create("the benchmark"))
                .expect("PAYGATE_BENCH_STORE=postgres but PostgreSQL cannot be reached");
            Store(Some(s))
        } else {
            Store(None)
        }
    }

    fn url(&self) -> Option<&str> {
        self.0.as_ref().map(|s| s.url())
    }
}

fn fresh(dir: &Path, channels: usize, store: &Store) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    for d in ["keys", "bank/in", "bank/out"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let (c, b) = keys(&dir.join("keys"));
    config(dir, &c, &b, channels, store.url())
}

/// Files complete in the bank's inbox (not the `.part` of an upload in progress).
fn uploaded(bank_in: &Path) -> usize {
    std::fs::read_dir(bank_in)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".part"))
        .count()
}

/// Drops `file` (by rename) and waits for a sealed file in the bank's inbox; returns the time.
fn drop_and_wait(src: &Path, dir: &Path, channel: &str, name: &str, before: usize) -> Duration {
    let inbound = dir.join("channels").join(channel).join("inbound");
    let staged = dir.join(format!("{name}.staged"));
    std::fs::copy(src, &staged).unwrap();
    let bank_in = dir.join("bank/in");
    let start = Instant::now();
    std::fs::rename(&staged, inbound.join(name)).unwrap();
    let deadline = start + Duration::from_secs(600);
    loop {
        if uploaded(&bank_in) > before {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "no upload within 600 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Part 4 (PostgreSQL): `files` 50-row files dropped at once, through one instance and then
/// through two (separate processes and data folders, one database, the same channel folder).
fn instances(base: &Path, files: usize) {
    let csv = base.join("payroll-50.csv");
    write_csv(&csv, 50);
    let text = std::fs::read_to_string(&csv).unwrap();
    for n in [1usize, 2] {
        let dir = base.join(format!("instances-{n}"));
        let store = Store::new();
        let cfg = fresh(&dir, 1, &store);
        let staged = dir.join("staged");
        std::fs::create_dir_all(&staged).unwrap();
        for i in 0..files {
            std::fs::write(
                staged.join(format!("f{i:04}.csv")),
                text.replace("Salary 2026-11", &format!("Salary 2026-11 run {i}")),
            )
            .unwrap();
        }
        let mut daemons = vec![Daemon::start(&cfg, &dir)];
        if n == 2 {
            let text = std::fs::read_to_string(&cfg)
                .unwrap()
                .replace("data_dir = \"data\"", "data_dir = \"data-b\"");
            let cfg_b = dir.join("paygate-b.toml");
            std::fs::write(&cfg_b, text).unwrap();
            // The same data key on every instance.
            let keys = dir.join("data-b/keys");
            paygate::durable::create_private_dir(&keys).unwrap();
            std::fs::copy(dir.join("data/keys/data.key"), keys.join("data.key")).unwrap();
            daemons.push(Daemon::start_in(&cfg_b, &dir, "data-b"));
        }
        let inbound = dir.join("channels/payroll0/inbound");
        let bank_in = dir.join("bank/in");
        let start = Instant::now();
        for i in 0..files {
            let name = format!("f{i:04}.csv");
            std::fs::rename(staged.join(&name), inbound.join(&name)).unwrap();
        }
        let deadline = start + Duration::from_secs(1800);
        loop {
            let sent = uploaded(&bank_in);
            if sent >= files {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{sent} of {files} uploaded after 1800 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = start.elapsed();
        drop(daemons);
        println!(
            "{files} files of 50 payments through {n} instance(s): drop -> all uploaded {:.1} s ({:.1} files/s)",
            t.as_secs_f64(),
            files as f64 / t.as_secs_f64()
        );
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(1_000_000) as usize;
    let idle = args.get(1).copied().unwrap_or(600);
    if std::env::args().any(|a| a == "instances") {
        assert!(
            on_postgres(),
            "several instances share a PostgreSQL store: set PAYGATE_BENCH_STORE=postgres"
        );
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/daemon");
        std::fs::create_dir_all(&base).unwrap();
        instances(&base, args.first().copied().unwrap_or(1000) as usize);
        return;
    }
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/daemon");
    std::fs::create_dir_all(&base).unwrap();
    let backend = if on_postgres() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "paygate daemon benchmark (release build, folder transport, OpenPGP on, store: {backend})"
    );

    // 1. A big payroll file, drop to sealed file in the bank's inbox.
    let big = base.join(format!("payroll-{rows}.csv"));
    if !big.exists() {
        write_csv(&big, rows);
    }
    let dir = base.join("big");
    let store = Store::new();
    let cfg = fresh(&dir, 1, &store);
    let d = Daemon::start(&cfg, &dir);
    let t = drop_and_wait(&big, &dir, "payroll0", "payroll.csv", 0);
    let hwm = d.status_kb("VmHWM:");
    drop(d);
    let sealed: u64 = std::fs::read_dir(dir.join("bank/in"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!(
        "{rows} payments: drop -> sealed file in the bank's inbox {:.2} s ({:.0} payments/s); daemon peak RSS {:.1} MB; sealed file {:.1} MB",
        t.as_secs_f64(),
        rows as f64 / t.as_secs_f64(),
        hwm as f64 / 1024.0,
        sealed as f64 / 1e6
    );

    // 2. Small files: latency.
    let small = base.join("payroll-50.csv");
    write_csv(&small, 50);
    let dir = base.join("small");
    let store = Store::new();
    let cfg = fresh(&dir, 1, &store);
    let d = Daemon::start(&cfg, &dir);
    let mut times = Vec::new();
    for i in 0..10 {
        // Distinct content each time (a duplicate would be refused).
        let f = base.join(format!("payroll-50-{i}.csv"));
        let text = std::fs::read_to_string(&small)
            .unwrap()
            .replace("Salary 2026-11", &format!("Salary 2026-11 run {i}"));
        std::fs::write(&f, text).unwrap();
        times.push(drop_and_wait(&f, &dir, "payroll0", &format!("p{i}.csv"), i));
    }
    drop(d);
    times.sort();
    println!(
        "50 payments: drop -> upload min {:.0} ms, median {:.0} ms, max {:.0} ms (10 files)",
        times[0].as_secs_f64() * 1e3,
        times[5].as_secs_f64() * 1e3,
        times[9].as_secs_f64() * 1e3
    );

    // 3. Idle.
    let dir = base.join("idle");
    let store = Store::new();
    let cfg = fresh(&dir, 10, &store);
    let d = Daemon::start(&cfg, &dir);
    std::thread::sleep(Duration::from_secs(2));
    let (cpu0, t0) = (d.cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(idle));
    let (cpu1, wall) = (d.cpu(), t0.elapsed());
    let rss = d.status_kb("VmRSS:");
    drop(d);
    println!(
        "10 channels idle for {} s: CPU {:.3} % of one core ({} ms), RSS {:.1} MB",
        wall.as_secs(),
        (cpu1 - cpu0).as_secs_f64() * 100.0 / wall.as_secs_f64(),
        (cpu1 - cpu0).as_millis(),
        rss as f64 / 1024.0
    );
}
