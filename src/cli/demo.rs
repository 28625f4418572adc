//! `paygate demo`: the whole product on embedded defaults, with no setup and no server. Makes a
//! working folder, company and bank keys and a config; runs the daemon and a simulated bank
//! per bank (folder transport) in this process; drops the sample payroll (XLSX and GBK CSV),
//! supplier and broken files; approves what needs approval through the real control socket;
//! and prints each batch's journey until every batch is final.
//!
//! Same code paths as production (`daemon::prepare`/`start`, the control socket, the
//! transport, OpenPGP on both sides); nothing is faked but the bank.

use super::Exit;
use crate::approval::Role;
use crate::banksim::{SimConfig, Simulator};
use crate::daemon::{self, control};
use crate::model::BatchState;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Working folder (kept afterwards) [default: a new folder under the system's temp dir]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Give up when the batches are not final after this many seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

const PAYROLL_XLSX: &[u8] = include_bytes!("../../samples/payroll.xlsx");
const PAYROLL_GBK: &[u8] = include_bytes!("../../samples/payroll-gbk.csv");
const SUPPLIER: &[u8] = include_bytes!("../../samples/supplier.csv");
const BROKEN: &[u8] = include_bytes!("../../samples/broken.csv");

/// Templates shipped with paygate (the demo's banks speak pain.001; the templates are there
/// for `paygate formats`).
fn templates_dir() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    if repo.is_dir() {
        repo
    } else {
        PathBuf::from("/usr/share/paygate/templates")
    }
}

fn fail(what: &str, e: impl std::fmt::Display) -> Exit {
    eprintln!("paygate demo: {what}: {e}");
    Exit::Usage
}

pub fn run(args: Args) -> Exit {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "paygate-demo-{}",
            chrono::Local::now().format("%Y%m%d-%H%M%S")
        )),
    };
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    {
        eprintln!(
            "paygate demo: {} is not empty; give an empty or new folder with --dir",
            dir.display()
        );
        return Exit::Usage;
    }
    let dir = match std::fs::create_dir_all(&dir).and_then(|_| std::fs::canonicalize(&dir)) {
        Ok(d) => d,
        Err(e) => return fail(&dir.display().to_string(), e),
    };
    println!("paygate demo in {}\n", dir.display());
    let config = match setup(&dir) {
        Ok(c) => c,
        Err(e) => return fail("setting up", e),
    };
    println!("  config     {}", config.display());
    println!(
        "  keys       {}/keys (company and bank, made just now)",
        dir.display()
    );
    println!(
        "  bank       simulated: it reads what arrives, checks it, and answers pain.002 and camt.054\n"
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail("runtime", e),
    };
    let exit = rt.block_on(demo(&dir, &config, Duration::from_secs(args.timeout)));
    rt.shutdown_timeout(Duration::from_secs(1));
    exit
}

/// Keys, config, simulator settings.
fn setup(dir: &Path) -> Result<PathBuf, String> {
    let keys = dir.join("keys");
    for d in [
        keys.clone(),
        dir.join("bank/cnbank/in"),
        dir.join("bank/cnbank/out"),
        dir.join("bank/eurobank/in"),
        dir.join("bank/eurobank/out"),
    ]
    .iter()
    {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let (co_fpr, co_sec, co_pub) = crate::seal::generate(
        "Acme Treasury (demo) <treasury@acme.example>",
        &keys,
        "company",
        2,
    )
    .map_err(|e| e.to_string())?;
    let (bank_fpr, bank_sec, bank_pub) =
        crate::seal::generate("Demo Bank H2H <h2h@bank.example>", &keys, "bank", 2)
            .map_err(|e| e.to_string())?;
    let (ar_fpr, _, ar_pub) = crate::seal::generate(
        "Acme Audit Archive (demo) <audit@acme.example>",
        &keys,
        "archive",
        2,
    )
    .map_err(|e| e.to_string())?;
    let d = dir.display();
    let templates = templates_dir();
    let text = format!(
        r#"# Written by `paygate demo`. Everything lives under {d}.
[paygate]
data_dir = "{d}/data"
templates_dir = "{templates}"
workers = 2
# The bootstrap admin: you. The demo grants the other roles it needs (see `paygate users list`).
admin = "{me}"

[company]
name = "Acme (Shanghai) Trading Co., Ltd."
country = "CN"
identifiers = [{{ scheme = "USCC", id = "91310115MA1K4L8X2Q" }}]
address = {{ street = "Yincheng Middle Road", building_number = "501", postcode = "200120", town = "Shanghai", country = "CN" }}
short_name = "ACME"

[company.pgp]
secret_key = "{co_sec}"
fingerprint = "{co_fpr}"

# Archived files (sources, bank files, returns, report copies) are stored only encrypted to
# this key; an auditor holds its secret half (keys/archive.sec.asc).
[archive]
cert = "{ar_pub}"
fingerprint = "{ar_fpr}"

# Prometheus metrics on a free loopback port (the demo prints it and scrapes it at the end).
[metrics]
listen = "127.0.0.1:0"

[company.accounts.payroll-cny]
number = "1001244309300012345"
cnaps = "102290024433"
currency = "CNY"

[company.accounts.supplier-eur]
iban = "DE89370400440532013000"
bic = "COBADEFFXXX"
currency = "EUR"

[banks.cnbank]
name = "Demo Bank (CNY payroll)"
bic = "ICBKCNBJSHI"
format = "pain.001.001.09"
currencies = ["CNY"]
charset = "utf8"
domestic_account_digits = [9, 25]
domestic_bank_code = "cnaps"
poll_secs = 1

[banks.cnbank.pgp]
keys = ["{bank_pub}"]
fingerprints = ["{bank_fpr}"]

[banks.cnbank.transport]
type = "folder"
upload_dir = "{d}/bank/cnbank/in"
download_dir = "{d}/bank/cnbank/out"
remote_name = "{{company}}_{{msgid}}.xml.pgp"
attempts = 3
backoff_ms = 200

[banks.eurobank]
name = "Demo Bank (EUR suppliers)"
bic = "COBADEFFXXX"
format = "pain.001.001.09"
service_level = "SEPA"
currencies = ["EUR", "USD", "GBP", "CHF", "JPY", "SEK", "DKK", "PLN", "CZK", "CNY"]
charset = "sepa-latin"
require_bic = true
address_mode = "hybrid"
poll_secs = 1

[banks.eurobank.pgp]
keys = ["{bank_pub}"]
fingerprints = ["{bank_fpr}"]

[banks.eurobank.transport]
type = "folder"
upload_dir = "{d}/bank/eurobank/in"
download_dir = "{d}/bank/eurobank/out"
remote_name = "{{company}}_{{msgid}}.xml.pgp"
attempts = 3
backoff_ms = 200

[channels.payroll]
kind = "payroll"
bank = "cnbank"
debtor_account = "payroll-cny"
folder = "{d}/channels/payroll"
sheet = "Payroll"
report_language = "zh"
# HR's files are recorded as submitted by this user; approvals come from someone else.
submitter = "hr-demo"

[channels.payroll.approval]
required = 1
tiers = [{{ above = "5000000.00", required = 2 }}]

# A first run: every payee is new, and the same payroll comes in two formats. In production
# keep these checks on; each finding asks for one more approver.
[channels.payroll.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0

[channels.payroll.limits]
max_amount = "200000.00"

[channels.supplier]
kind = "supplier"
bank = "eurobank"
debtor_account = "supplier-eur"
folder = "{d}/channels/supplier"
submitter = "erp-demo"

[channels.supplier.approval]
# Supplier runs below these totals go out without a person.
auto_below = {{ EUR = "1000000.00", USD = "1000000.00", GBP = "1000000.00", CHF = "1000000.00", JPY = "150000000" }}

[channels.supplier.approval.scrutiny]
new_beneficiary = false
"#,
        templates = templates.display(),
        me = crate::daemon::folders::current_user(),
        co_sec = co_sec.display(),
        bank_pub = bank_pub.display(),
        ar_pub = ar_pub.display(),
    );
    let config = dir.join("paygate.toml");
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    for (bank, rules) in [
        (
            "cnbank",
            // One employee's account does not exist at the bank: rejected with AC01.
            "reject_accounts = [\"6214834946791937\"]\n",
        ),
        ("eurobank", "reject_accounts = [\"NL80RABO1119893879\"]\n"),
    ] {
        let sim = format!(
            "inbox = \"{d}/bank/{bank}/in\"\noutbox = \"{d}/bank/{bank}/out\"\nstate_dir = \"{d}/bank/{bank}/state\"\nseed = 7\ndelay_ms = 700\n\n[keys]\nbank_secret_key = \"{}\"\nbank_fingerprint = \"{bank_fpr}\"\ncompany_cert = \"{}\"\ncompany_fingerprint = \"{co_fpr}\"\n\n[rules]\n{rules}",
            bank_sec.display(),
            co_pub.display(),
        );
        let p = dir.join("bank").join(format!("{bank}.sim.toml"));
        std::fs::write(&p, sim).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(config)
}

/// Nothing more will happen: refused, or every payment has the bank's final word.
fn done(b: &crate::store::BatchSummary) -> bool {
    BatchState::parse(&b.state).is_some_and(|s| s.is_final())
        && b.by_state
            .iter()
            .all(|(s, _)| matches!(s.as_str(), "settled" | "rejected" | "returned"))
}

async fn demo(dir: &Path, config: &Path, timeout: Duration) -> Exit {
    let prepared = match daemon::prepare(config).await {
        Ok(p) => p,
        Err(e) => return fail("starting the daemon", e),
    };
    let ctx = prepared.ctx.clone();
    let metrics = prepared.metrics_addr();
    // The roles the demo needs: HR's and the ERP's system identities submit; you approve.
    // Whoever drops a file never approves it: as root the demo drops its files as `nobody`
    // and you approve through the control socket; otherwise it plays a second person,
    // `paygate-demo`, who approves in the store (on the record under that name).
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let me = daemon::folders::current_user();
    let approver = if root {
        me.clone()
    } else {
        "paygate-demo".to_string()
    };
    for (name, system, role, channel) in [
        ("hr-demo", true, Role::Submitter, "payroll"),
        ("erp-demo", true, Role::Submitter, "supplier"),
        (approver.as_str(), false, Role::Approver, "*"),
    ] {
        if let Err(e) = ctx
            .store
            .grant_for_demo(name, system, role, channel, chrono::Utc::now())
            .await
        {
            return fail("store", e);
        }
    }
    println!("roles      hr-demo and erp-demo submit; {approver} approves (paygate users list)");
    daemon::start(prepared).await;
    println!(
        "daemon     running (control socket {})",
        ctx.cfg().control_socket().display()
    );
    if let Some(a) = metrics {
        println!("metrics    http://{a}/metrics");
    }
    // One simulated bank per bank, each on its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let mut sims = Vec::new();
    for bank in ["cnbank", "eurobank"] {
        let cfg = match SimConfig::load(&dir.join("bank").join(format!("{bank}.sim.toml"))) {
            Ok(c) => c,
            Err(e) => return fail("bank simulator", e),
        };
        let mut sim = match Simulator::new(cfg) {
            Ok(s) => s,
            Err(e) => return fail("bank simulator", e),
        };
        let stop = stop.clone();
        sims.push(tokio::task::spawn_blocking(move || {
            sim.run(
                Duration::from_millis(100),
                &|| stop.load(Ordering::Relaxed),
                &mut |e| println!("           {e}"),
            )
        }));
    }
    let cfg = ctx.cfg();
    let drops: [(&str, &str, &[u8]); 4] = [
        ("payroll", "payroll-2026-12.xlsx", PAYROLL_XLSX),
        ("payroll", "payroll-gbk-2026-12.csv", PAYROLL_GBK),
        ("supplier", "supplier-run-2026-12.csv", SUPPLIER),
        ("supplier", "supplier-broken.csv", BROKEN),
    ];
    for (channel, name, bytes) in drops {
        let f = daemon::folders::Folders::of(&cfg, &cfg.channels[channel]);
        // Written beside, then moved in: how a careful ERP drops a file.
        let tmp = f.inbound.join(format!(".{name}.tmp"));
        if let Err(e) = std::fs::write(&tmp, bytes)
            .and_then(|_| {
                if root {
                    std::os::unix::fs::chown(&tmp, Some(65534), Some(65534))
                } else {
                    Ok(())
                }
            })
            .and_then(|_| std::fs::rename(&tmp, f.inbound.join(name)))
        {
            return fail(&f.inbound.display().to_string(), e);
        }
        println!("dropped    {name} into {}", f.inbound.display());
    }
    println!();
    let socket = cfg.control_socket();
    let started = Instant::now();
    let mut shown: BTreeMap<i64, usize> = BTreeMap::new();
    let mut approved: Vec<i64> = Vec::new();
    let exit = loop {
        let batches = match ctx.store.batches(None).await {
            Ok(b) => b,
            Err(e) => break fail("store", e),
        };
        for b in &batches {
            let history = ctx.store.batch_history(b.id).await.unwrap_or_default();
            let from = shown.get(&b.id).copied().unwrap_or(0);
            for (_, to, event) in history.iter().skip(from) {
                println!(
                    "batch {:>2}  {:<9} {:<26} {:<18} ({event})",
                    b.id, b.channel, b.file_name, to
                );
            }
            shown.insert(b.id, history.len());
            if b.state == BatchState::AwaitingApproval.as_str() && !approved.contains(&b.id) {
                approved.push(b.id);
                let (sock, id) = (socket.clone(), b.id);
                let comment = "checked against the HR sheet (demo)";
                if root {
                    let req = control::Request::Approve {
                        batch: id,
                        comment: Some(comment.into()),
                    };
                    match tokio::task::spawn_blocking(move || control::request(&sock, &req)).await {
                        Ok(Ok(r)) => println!("approve    paygate approve {id}  →  {}", r.message),
                        Ok(Err(e)) => println!("approve    batch {id}: {e}"),
                        Err(e) => println!("approve    batch {id}: {e}"),
                    }
                } else {
                    let expire = cfg.channels[&b.channel].approval.expire_after();
                    match ctx
                        .store
                        .approve(id, &approver, Some(comment), expire, chrono::Utc::now())
                        .await
                    {
                        Ok(a) => {
                            ctx.kick.notify_one();
                            println!(
                                "approve    batch {id} approved by {approver} ({} of {})",
                                a.approvals, a.required
                            )
                        }
                        Err(e) => println!("approve    batch {id}: {e}"),
                    }
                }
            }
        }
        let all_final =
            !batches.is_empty() && batches.len() >= drops.len() && batches.iter().all(done);
        if all_final {
            break Exit::Ok;
        }
        if started.elapsed() > timeout {
            let mut stuck: Vec<String> = batches
                .iter()
                .filter(|b| !done(b))
                .map(|b| format!("batch {} ({}) is still {}", b.id, b.file_name, b.state))
                .collect();
            if batches.len() < drops.len() {
                stuck.push(format!(
                    "{} of the {} files dropped became batches (see the log above)",
                    batches.len(),
                    drops.len()
                ));
            }
            eprintln!(
                "paygate demo: not finished after {timeout:?}: {}",
                stuck.join("; ")
            );
            break Exit::InputErrors;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    stop.store(true, Ordering::Relaxed);
    for s in sims {
        let _ = s.await;
    }
    if let Ok(s) = daemon::status(&ctx).await {
        println!("\n$ paygate status\n{}", super::daemon::render_status(&s));
    }
    println!("what the people who dropped the files get back:");
    for (name, ch) in &cfg.channels {
        let f = daemon::folders::Folders::of(&cfg, ch);
        for (what, d) in [("result", &f.results), ("rejected", &f.rejected)] {
            let mut files: Vec<_> = std::fs::read_dir(d)
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            files.sort();
            for p in files {
                println!("  {name:<9} {what:<9} {}", p.display());
            }
        }
    }
    if let Some(a) = metrics {
        match scrape(a).await {
            Ok(text) => {
                println!(
                    "\n$ curl -s http://{a}/metrics | grep -v '^#'   (the lines that are not zero)"
                );
                for l in text
                    .lines()
                    .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.ends_with(" 0.0"))
                {
                    println!("  {l}");
                }
            }
            Err(e) => println!("\nmetrics: {e}"),
        }
    }
    let verdict = ctx.store.verify_audit().await;
    match verdict {
        Ok(Ok(n)) => println!("\naudit trail: {n} entries, hash chain intact"),
        Ok(Err(b)) => println!("\naudit trail: {b}"),
        Err(e) => println!("\naudit trail: {e}"),
    }
    daemon::stop(&ctx).await;
    if exit == Exit::Ok {
        println!("\nevery batch is final. Look around in {}", dir.display());
    }
    exit
}

/// `GET /metrics` from the daemon's own endpoint, as Prometheus would.
async fn scrape(addr: std::net::SocketAddr) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let work = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let text = tokio::time::timeout(Duration::from_secs(30), work)
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
        .map_err(|e| e.to_string())?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!(
            "unexpected answer: {}",
            text.lines().next().unwrap_or("")
        )),
    }
}
