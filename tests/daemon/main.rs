//! The daemon end to end, with real parts: `paygate run` and `paygate bank-sim` as processes,
//! an OpenSSH sshd started here on 127.0.0.1, OpenPGP on both sides and GnuPG reading what was
//! sent, a real SQLite store. Nothing skips: a missing `sshd` or `gpg` fails with the package
//! that installs it (the README's test command installs them). Every wait has a deadline.

mod access;
#[allow(dead_code)]
#[path = "../delivery/harness.rs"]
mod harness;
mod instances;
mod partition;
mod protect;
mod world;

use std::time::{Duration, Instant};
use world::{Db, Wire, World, sample};

fn read(p: &std::path::Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// CSV and XLSX dropped, one while the daemon was down; approval through the CLI by an OS user
/// other than the submitter (and refused for the submitter); sealed files that GnuPG opens;
/// result reports appearing beside the people's folders.
#[test]
fn files_dropped_reach_the_bank_over_sftp_and_results_come_back() {
    end_to_end(Db::Sqlite);
}

/// The same with the store in PostgreSQL.
#[test]
fn on_postgres_files_dropped_reach_the_bank_over_sftp_and_results_come_back() {
    end_to_end(Db::Postgres);
}

fn end_to_end(db: Db) {
    let Some(mut w) = World::on(
        "e2e",
        Wire::Sftp,
        "reject_accounts = [\"NL80RABO1119893879\"]",
        db,
    ) else {
        return;
    };
    // Dropped while paygate is down: picked up by the scan at start.
    w.drop_file(
        "supplier",
        "supplier.csv",
        &std::fs::read(sample("supplier.csv")).unwrap(),
    );
    // A webhook sink and the metrics endpoint, on loopback ports picked here.
    let hook = harness::HttpSink::start(&[500]);
    let metrics_port = harness::free_port();
    w.add_config(&format!(
        "\n[alerts]\ncheck_secs = 1\n[[alerts.webhooks]]\nurl = \"http://127.0.0.1:{}/hook\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        hook.port
    ));
    w.start_sim();
    w.start_daemon();
    let b = w.wait_batches("the supplier batch to be answered in full", 60, |b| {
        b.len() == 1 && b[0].is_final()
    });
    assert_eq!(b[0].state, "partially_rejected", "{b:?}");
    // The bank's rejection reaches a person: one webhook POST (after one 500 and a retry).
    let posts = hook.wait_for(60, |p| {
        p.iter().filter(|b| b.contains("payments.rejected")).count() >= 2
    });
    let rejected: Vec<_> = posts
        .iter()
        .filter(|b| b.contains("payments.rejected"))
        .collect();
    assert_eq!(
        rejected.len(),
        2,
        "one refused with 500, one delivered: {posts:?}"
    );
    assert!(rejected[1].contains("What to do"), "{}", rejected[1]);
    assert_eq!(b[0].payments, 30);
    assert!(
        b[0].by_state.contains(&("rejected".into(), 1))
            && b[0].by_state.contains(&("settled".into(), 29)),
        "{b:?}"
    );
    let result = w
        .folder("supplier", "results")
        .join("supplier.batch1.result.csv");
    w.wait_file(&result, 30);
    let report = read(&result);
    assert!(report.contains("AC01"), "{report}");
    let archived_source = w
        .folder("supplier", "archive")
        .join("batch1-supplier.csv.pgp");
    assert!(
        archived_source.is_file(),
        "the accepted source file is archived with its batch id, encrypted"
    );
    // The auditor's GnuPG opens it with the archive key: the very bytes that were dropped.
    let (plain, status) = world::gpg_decrypt_as(&w.keys, "archive", &archived_source);
    assert!(status.contains("DECRYPTION_OKAY"), "{status}");
    assert_eq!(plain, std::fs::read(sample("supplier.csv")).unwrap());

    // A payroll workbook: it needs an approval. The channel's configured submitter is
    // recorded as its submitter.
    w.drop_file(
        "payroll",
        "payroll.xlsx",
        &std::fs::read(sample("payroll.xlsx")).unwrap(),
    );
    let b = w.wait_batches("the payroll batch to wait for approval", 60, |b| {
        b.iter()
            .any(|x| x.channel == "payroll" && x.state == "awaiting_approval")
    });
    let payroll = b.iter().find(|x| x.channel == "payroll").unwrap().clone();
    // This test's user is the bootstrap admin: an admin approves only with the approver role.
    let (code, out) = w.paygate(&["approve", &payroll.id.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("`approver` role"), "{out}");
    // Another OS user may: nobody, through the socket, identified by the kernel.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(w.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
        std::fs::set_permissions(w.dir.join("data"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let setpriv = harness::require("setpriv", "util-linux");
    let mut c = std::process::Command::new(setpriv);
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_paygate"))
        .arg("--config")
        .arg(&w.config)
        .args(["approve", &payroll.id.to_string(), "--comment", "checked"]);
    let o = harness::output_within(c, 60, None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    assert!(text.contains("approved by nobody"), "{text}");
    let b = w.wait_batches("the payroll batch to be settled", 60, |b| {
        b.iter().all(|x| x.is_final()) && b.len() == 2
    });
    let payroll = b.iter().find(|x| x.channel == "payroll").unwrap();
    assert_eq!(payroll.state, "completed", "{b:?}");
    w.wait_file(
        &w.folder("payroll", "results")
            .join(format!("payroll.batch{}.result.xlsx", payroll.id)),
        30,
    );
    // What the bank got: GnuPG decrypts it and verifies the company's signature.
    let taken: Vec<_> = std::fs::read_dir(w.sim_state.join("taken"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(taken.len(), 2, "{taken:?}");
    for t in &taken {
        let (plain, status) = world::gpg_decrypt(&w.keys, t);
        assert!(status.contains("GOODSIG"), "{status}");
        assert!(status.contains("DECRYPTION_OKAY"), "{status}");
        let xml = String::from_utf8_lossy(&plain);
        assert!(xml.contains("pain.001.001.09"), "{xml}");
    }
    // At rest: no account number or payee name of either file in plaintext anywhere under
    // the archives, the spool or the store (database and journal).
    let supplier_csv = read(&sample("supplier.csv"));
    let mut secrets: Vec<String> = vec![];
    for line in supplier_csv.lines().skip(1).take(8) {
        let f: Vec<&str> = line.split(';').collect();
        secrets.push(f[1].to_string());
        secrets.push(f[2].replace(' ', ""));
    }
    let payroll_csv = read(&sample("payroll.csv"));
    for line in payroll_csv.lines().skip(1).take(8) {
        let f: Vec<&str> = line.split(',').collect();
        secrets.push(f[1].to_string());
        secrets.push(f[2].to_string());
    }
    assert!(secrets.len() >= 16, "{secrets:?}");
    let mut scanned = 0;
    let mut stack = vec![
        w.dir.join("data"),
        w.folder("supplier", "archive"),
        w.folder("payroll", "archive"),
    ];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
            continue;
        }
        // The socket and the quarantine (raw bank files, none here) are not payment data.
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        };
        scanned += bytes.len();
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "`{s}` in plaintext in {}",
                p.display()
            );
        }
    }
    match w.store_url() {
        // The SQLite file and its journal are among the files scanned.
        None => assert!(scanned > 100_000, "scanned only {scanned} bytes"),
        // PostgreSQL's files are the server's: no column of any row of the store holds them.
        Some(url) => {
            assert!(scanned > 30_000, "scanned only {scanned} bytes");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use sqlx::{Connection, Row};
                let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
                let tables: Vec<String> = sqlx::query(
                    "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = 'public'",
                )
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
                assert!(tables.len() > 15, "{tables:?}");
                for t in &tables {
                    for secret in &secrets {
                        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT COUNT(*) FROM {t} x WHERE strpos(CAST(x AS TEXT), $1) > 0"
                        )))
                        .bind(secret)
                        .fetch_one(&mut c)
                        .await
                        .unwrap()
                        .get(0);
                        assert_eq!(n, 0, "`{secret}` in plaintext in the table {t}");
                    }
                }
            });
        }
    }
    // Every archived file of the payroll batch comes back through `paygate export` (audited),
    // each checked against the digest recorded when it was archived.
    let out = w.dir.join("export");
    let (code, text) = w.paygate(&[
        "export",
        "--batch",
        &payroll.id.to_string(),
        "--to",
        out.to_str().unwrap(),
        "--key",
        w.keys.join("archive.sec.asc").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    for kind in ["source", "rendered", "sealed", "return", "result"] {
        assert!(out.join(kind).is_dir(), "no {kind} exported: {text}");
    }
    assert_eq!(
        std::fs::read(out.join("source/payroll.xlsx")).unwrap(),
        std::fs::read(sample("payroll.xlsx")).unwrap()
    );
    let (_, audit_log) = w.paygate(&["audit", "--batch", &payroll.id.to_string()]);
    assert!(audit_log.contains("export"), "{audit_log}");
    // The approvers were told the payroll waited, once.
    let posts = hook.bodies();
    assert_eq!(
        posts
            .iter()
            .filter(|b| b.contains("approval.waiting"))
            .count(),
        1,
        "{posts:?}"
    );
    // The metrics agree with the batches.
    let scrape = harness::http_get(metrics_port, "/metrics");
    assert!(
        scrape.contains("paygate_batches{state=\"completed\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("paygate_batches{state=\"partially_rejected\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("paygate_files_received_total{channel=\"supplier\"} 1"),
        "{scrape}"
    );
    assert!(
        scrape.contains("paygate_files_received_total{channel=\"payroll\"} 1"),
        "{scrape}"
    );
    let sent_payroll = format!(
        "paygate_payments_sent_total{{channel=\"payroll\",currency=\"CNY\"}} {}",
        payroll.payments
    );
    assert!(scrape.contains(&sent_payroll), "{sent_payroll} in {scrape}");
    assert!(
        scrape.contains("paygate_alerts_raised_total{kind=\"approval.waiting\"} 1"),
        "{scrape}"
    );
    assert!(scrape.contains("paygate_audit_chain_length "), "{scrape}");
    // Open alerts are listed, and acknowledged with an audit entry.
    let (code, st) = w.paygate(&["status"]);
    assert_eq!(code, 0, "{st}");
    assert!(st.contains("payments.rejected"), "{st}");
    let id = st
        .lines()
        .find(|l| l.contains("payments.rejected"))
        .and_then(|l| l.trim().strip_prefix('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, text) = w.paygate(&["alerts", "ack", &id]);
    assert_eq!(code, 0, "{text}");
    let (_, audit_log) = w.paygate(&["audit"]);
    assert!(audit_log.contains("alert.acknowledged"), "{audit_log}");
    // The approval is on the record with who gave it.
    let (code, audit) = w.paygate(&["batch", "show", &payroll.id.to_string()]);
    assert_eq!(code, 0, "{audit}");
    let (code, st) = w.paygate(&["status"]);
    assert_eq!(code, 0, "{st}");
    assert!(st.contains("completed"), "{st}");
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
}

/// A bad file, a duplicate, a symlink, a FIFO and a file still being written: each ends where
/// a person expects it, with a note, and nothing stops the daemon.
#[test]
fn bad_inputs_end_in_rejected_with_a_report_and_nothing_is_lost() {
    let mut w = World::new("bad", Wire::Folder, "");
    w.start_sim();
    w.start_daemon();
    // A file with errors.
    w.drop_file(
        "supplier",
        "broken.csv",
        &std::fs::read(sample("broken.csv")).unwrap(),
    );
    let rejected = w.folder("supplier", "rejected");
    w.wait_file(&rejected.join("broken.csv.errors.txt"), 30);
    w.wait_file(&rejected.join("broken.csv"), 30);
    let txt = read(&rejected.join("broken.csv.errors.txt"));
    assert!(txt.contains("not processed"), "{txt}");
    assert!(txt.contains("row "), "{txt}");
    let csv = read(&rejected.join("broken.csv.errors.csv"));
    assert!(csv.lines().count() > 2, "{csv}");
    assert!(csv.contains("iban"), "{csv}");

    // A good file, then the same content under another name: refused as a duplicate.
    let content = std::fs::read(sample("supplier.csv")).unwrap();
    w.drop_file("supplier", "run-1.csv", &content);
    w.wait_batches("run-1 to be sent", 30, |b| {
        b.iter()
            .any(|x| x.file == "run-1.csv" && x.state != "received")
    });
    w.drop_file("supplier", "run-1-again.csv", &content);
    let dup_note = rejected.join("run-1-again.csv.errors.txt");
    w.wait_file(&dup_note, 30);
    let note = read(&dup_note);
    assert!(
        note.contains("run-1.csv") && note.contains("paygate readmit"),
        "{note}"
    );
    // An admin re-admits it: processed once more, as a batch of its own.
    let again = rejected.join("run-1-again.csv");
    w.wait_file(&again, 10);
    let (code, out) = w.paygate(&[
        "readmit",
        again.to_str().unwrap(),
        "--reason",
        "bank lost it",
    ]);
    assert_eq!(code, 0, "{out}");
    w.wait_batches("the re-admitted file to become a batch", 30, |b| {
        b.iter().any(|x| x.file == "run-1-again.csv")
    });

    // A symlink and a FIFO: never followed or opened; moved aside with a note.
    let inbound = w.folder("supplier", "inbound");
    std::os::unix::fs::symlink("/etc/passwd", inbound.join("link.csv")).unwrap();
    let fifo = inbound.join("pipe.csv");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    w.wait_file(&rejected.join("link.csv.errors.txt"), 30);
    w.wait_file(&rejected.join("pipe.csv.errors.txt"), 30);
    assert!(read(&rejected.join("link.csv.errors.txt")).contains("symbolic link"));
    assert!(read(&rejected.join("pipe.csv.errors.txt")).contains("FIFO"));
    assert!(
        std::fs::symlink_metadata(rejected.join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A 1.5 GB (sparse) file: refused by its size before a byte is read or hashed, with a
    // note, and not recorded; a PDF named .csv: rejected with its report.
    let big = inbound.join("big.csv");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1536 * 1024 * 1024)
        .unwrap();
    w.wait_file(&rejected.join("big.csv.errors.txt"), 30);
    let note = read(&rejected.join("big.csv.errors.txt"));
    assert!(note.contains("limits.max_file_bytes"), "{note}");
    assert!(
        note.contains("Nothing from this file was recorded"),
        "{note}"
    );
    std::fs::remove_file(rejected.join("big.csv")).unwrap();
    w.drop_file(
        "supplier",
        "invoice.csv",
        b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n",
    );
    w.wait_file(&rejected.join("invoice.csv.errors.txt"), 30);
    let note = read(&rejected.join("invoice.csv.errors.txt"));
    assert!(note.contains("a PDF document"), "{note}");

    // A file still being written is not taken until it is complete.
    let full = std::fs::read(sample("supplier.csv")).unwrap();
    let mut changed = String::from_utf8(full).unwrap();
    changed = changed.replace("SUP-20261130-", "SLOW-20261130-");
    let bytes = changed.into_bytes();
    let slow = inbound.join("slow.csv");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&slow).unwrap();
        f.write_all(&bytes[..bytes.len() / 2]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(slow.exists(), "a file still open for writing was taken");
        f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    }
    let b = w.wait_batches("slow.csv to be read", 30, |b| {
        b.iter()
            .any(|x| x.file == "slow.csv" && x.state != "received")
    });
    let s = b.iter().find(|x| x.file == "slow.csv").unwrap();
    assert_eq!(s.payments, 30, "the whole file, not the half: {s:?}");
    // Nothing is left behind, and the daemon kept running throughout.
    w.wait_batches("every batch to be final", 60, |b| {
        b.iter().all(|x| x.is_final())
    });
    assert!(w.daemon_running());
    let all = w.wait_batches("the batch list", 10, |_| true);
    assert!(
        !all.iter().any(|x| x.file == "big.csv"),
        "a refused oversized file was recorded: {all:?}"
    );
    let left: Vec<_> = std::fs::read_dir(w.folder("supplier", "processing"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in processing/: {left:?}");
}

/// SIGHUP with a broken config keeps the running one; with a new channel, the channel works at
/// once. SIGTERM while batches are in flight exits 0, and the next start finishes them.
#[test]
fn reload_under_load_and_sigterm_in_flight() {
    let mut w = World::new("reload", Wire::Folder, "");
    w.start_sim();
    w.start_daemon();
    let base = String::from_utf8(std::fs::read(sample("supplier.csv")).unwrap()).unwrap();
    for i in 0..4 {
        let text = base.replace("SUP-20261130-", &format!("R{i}-20261130-"));
        w.drop_file("supplier", &format!("load-{i}.csv"), text.as_bytes());
    }
    // A broken config: refused, the running one stays.
    let good = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        good.replace("poll_secs = 1", "poll_secs = \"often\""),
    )
    .unwrap();
    w.signal_daemon(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.log().contains("config NOT reloaded") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", w.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(w.log().contains("banks.bank.poll_secs"), "{}", w.log());
    std::fs::write(&w.config, &good).unwrap();
    // A new channel, added while files are being processed.
    w.add_config(
        "\n[channels.bonus]\nkind = \"supplier\"\nbank = \"bank\"\ndebtor_account = \"eur\"\nfolder = \"channels/bonus\"\nscan_secs = 1\nsubmitter = \"pg-files\"\n[channels.bonus.approval]\nauto_below = { EUR = \"1000000\", USD = \"1000000\", GBP = \"1000000\", CHF = \"1000000\", JPY = \"150000000\" }\n[channels.bonus.approval.scrutiny]\nnew_beneficiary = false\nduplicate_days = 0\noutlier_factor = \"0\"\n",
    );
    let (code, out) = w.paygate(&["reload"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("added bonus"), "{out}");
    let text = base.replace("SUP-20261130-", "BONUS-20261130-");
    w.drop_file("bonus", "bonus.csv", text.as_bytes());
    w.wait_batches("the new channel's file to be picked up", 30, |b| {
        b.iter().any(|x| x.channel == "bonus")
    });
    // SIGTERM with work in flight: a clean exit, and the next start continues.
    for i in 0..3 {
        let text = base.replace("SUP-20261130-", &format!("T{i}-20261130-"));
        w.drop_file("supplier", &format!("term-{i}.csv"), text.as_bytes());
    }
    std::thread::sleep(Duration::from_millis(300));
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(40), 0, "{}", w.log());
    w.start_daemon();
    let b = w.wait_batches("every batch to be final after the restart", 90, |b| {
        b.len() == 8 && b.iter().all(|x| x.is_final())
    });
    assert!(b.iter().all(|x| x.state == "completed"), "{b:#?}");
}

/// A tiny deterministic generator for the kill timings (no dependency, same run every time).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// The daemon over many batches, killed with SIGKILL at random moments (at least 200 times,
/// across every stage) and restarted. At the end every batch is final, the bank received each
/// MsgId's content byte-identical however often it was resent, no file was lost or processed
/// twice, and no payment was counted twice.
#[test]
fn sigkill_at_random_moments_loses_nothing_and_sends_nothing_twice() {
    crash_test(Db::Sqlite);
}

/// The same on a PostgreSQL store: its transactions, not SQLite's file, are what a kill must
/// not split.
#[test]
fn sigkill_at_random_moments_on_postgres_loses_nothing_and_sends_nothing_twice() {
    crash_test(Db::Postgres);
}

fn crash_test(db: Db) {
    const FILES: usize = 40;
    const KILLS: u32 = 200;
    let Some(mut w) = World::on("crash", Wire::Folder, "reject_per_mille = 100", db) else {
        return;
    };
    w.start_sim();
    let sample_text = String::from_utf8(std::fs::read(sample("supplier.csv")).unwrap()).unwrap();
    let lines: Vec<&str> = sample_text.lines().collect();
    let make = |i: usize| -> (String, usize) {
        let mut out = String::from(lines[0]);
        out.push('\n');
        let rows = 3 + i % 4;
        for (r, l) in lines[1..=rows].iter().enumerate() {
            let mut cols: Vec<String> = l.split(';').map(str::to_string).collect();
            cols[7] = format!("C{i:03}-{r}");
            // Every fifth file is over the auto-approval limit: it waits for a person.
            if i.is_multiple_of(5) && r == 0 {
                cols[4] = "1500000.00".into();
                cols[5] = "EUR".into();
            }
            out.push_str(&cols.join(";"));
            out.push('\n');
        }
        (out, rows)
    };
    let mut rng = Lcg(20261203);
    let mut dropped = 0usize;
    let mut rows_total = 0usize;
    let mut seen_states: std::collections::BTreeMap<String, u32> = Default::default();
    let started = Instant::now();
    let mut kills = 0u32;
    let mut broken_files = 0usize;
    let approve_all = |w: &World| {
        for b in w.batches() {
            if b.state == "awaiting_approval" {
                // The test runs as root, the files' owner: approve as nobody.
                let mut c = std::process::Command::new(harness::require("setpriv", "util-linux"));
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(env!("CARGO_BIN_EXE_paygate"))
                    .arg("--config")
                    .arg(&w.config)
                    .args(["approve", &b.id.to_string()]);
                let _ = harness::output_within(c, 60, None);
            }
        }
    };
    let open_socket = |w: &World| {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(w.socket(), std::fs::Permissions::from_mode(0o666));
        let _ =
            std::fs::set_permissions(w.dir.join("data"), std::fs::Permissions::from_mode(0o755));
    };
    while kills < KILLS {
        if dropped < FILES && rng.next(3) > 0 {
            let (text, rows) = make(dropped);
            w.drop_file(
                "supplier",
                &format!("crash-{dropped:03}.csv"),
                text.as_bytes(),
            );
            dropped += 1;
            rows_total += rows;
        }
        if kills % 25 == 24 {
            // A calm moment: approvals come in through the socket.
            w.start_daemon();
            open_socket(&w);
            approve_all(&w);
        } else {
            w.spawn_daemon();
        }
        std::thread::sleep(Duration::from_millis(10 + rng.next(400)));
        w.kill_daemon();
        kills += 1;
        for b in w.batches() {
            if !b.is_final() {
                *seen_states.entry(b.state).or_default() += 1;
            }
        }
    }
    // Then every crash point in turn, each reached with fresh files until it fired.
    let broken = std::fs::read(sample("broken.csv")).unwrap();
    let mut crashes: std::collections::BTreeMap<&str, u32> = Default::default();
    for (k, point) in paygate::daemon::CRASH_POINTS.iter().enumerate() {
        let mut fired = 0;
        for attempt in 0..12 {
            if fired >= 2 {
                break;
            }
            // A fresh file for every attempt, so that every point is reached again.
            let (text, rows) = make(dropped);
            w.drop_file(
                "supplier",
                &format!("crash-{dropped:03}.csv"),
                text.as_bytes(),
            );
            dropped += 1;
            rows_total += rows;
            if *point == "rejection-written" {
                let mut b = broken.clone();
                b.extend_from_slice(format!("\n# {k}-{attempt}\n").as_bytes());
                w.drop_file("supplier", &format!("broken-{k}-{attempt}.csv"), &b);
                broken_files += 1;
            }
            w.spawn_daemon_env(&[
                ("PAYGATE_CRASH_POINTS", point),
                ("PAYGATE_CRASH_PERCENT", "50"),
            ]);
            if w.wait_for_crash(4) {
                fired += 1;
                kills += 1;
            }
        }
        assert!(
            fired > 0,
            "crash point {point} was never reached:\n{}",
            w.log()
        );
        crashes.insert(point, fired);
    }
    while dropped < FILES {
        let (text, rows) = make(dropped);
        w.drop_file(
            "supplier",
            &format!("crash-{dropped:03}.csv"),
            text.as_bytes(),
        );
        dropped += 1;
        rows_total += rows;
    }
    w.start_daemon();
    open_socket(&w);
    let deadline = Instant::now() + Duration::from_secs(240);
    let batches = loop {
        approve_all(&w);
        let b = w.batches();
        if b.len() == dropped + broken_files && b.iter().all(|x| x.is_final()) {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "not every batch is final after the kills: {b:#?}\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // No file lost, none processed twice.
    assert_eq!(batches.len(), dropped + broken_files);
    let invalid = batches.iter().filter(|b| b.state == "invalid").count();
    assert_eq!(invalid, broken_files, "every broken file refused once");
    let rejected_notes = std::fs::read_dir(w.folder("supplier", "rejected"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".errors.txt"))
        .count();
    assert_eq!(
        rejected_notes, broken_files,
        "a complete report beside every refused file"
    );
    let batches: Vec<_> = batches
        .into_iter()
        .filter(|b| b.state != "invalid")
        .collect();
    for sub in ["inbound", "processing"] {
        let left: Vec<_> = std::fs::read_dir(w.folder("supplier", sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "left in {sub}/: {left:?}");
    }
    let archived = std::fs::read_dir(w.folder("supplier", "archive"))
        .unwrap()
        .count();
    assert_eq!(archived, dropped, "every accepted file archived once");
    // No payment counted twice: every batch holds exactly its file's rows, each once, final.
    let payments: i64 = batches.iter().map(|b| b.payments).sum();
    assert_eq!(payments as usize, rows_total);
    for b in &batches {
        let n: i64 = b.by_state.iter().map(|(_, n)| n).sum();
        assert_eq!(n, b.payments, "{b:?}");
    }
    // The bank: every MsgId arrived, each with one content however often it was resent.
    let msg_ids: std::collections::BTreeSet<&str> =
        batches.iter().map(|b| b.msg_id.as_str()).collect();
    let received = world::assert_each_msg_id_arrived_with_one_content(&w, &msg_ids);
    let resends = received - msg_ids.len();
    // Result reports for every batch.
    let results = std::fs::read_dir(w.folder("supplier", "results"))
        .unwrap()
        .count();
    assert_eq!(
        results,
        dropped * 2,
        "a CSV and an XLSX result report per batch"
    );
    let (code, out) = w.paygate(&["check"]);
    assert!(out.contains("chain intact"), "{out}");
    let _ = code;
    println!(
        "crash test: {kills} SIGKILLs and {} starts in {:.0?}; {dropped} files and {broken_files} broken ones, {payments} payments; the bank received {} files for {} MsgIds ({resends} identical resends, answered DU01 and never applied); batches seen unfinished at random kills, by state: {seen_states:?}; crash points fired: {crashes:?}",
        w.starts,
        started.elapsed(),
        received,
        msg_ids.len(),
    );
    assert!(kills >= KILLS + paygate::daemon::CRASH_POINTS.len() as u32);
}

#[test]
fn a_sealed_file_changed_in_the_archive_is_never_sent() {
    let mut w = World::new("tamper", Wire::Folder, "");
    let sample_text = String::from_utf8(std::fs::read(sample("supplier.csv")).unwrap()).unwrap();
    let mut text = String::new();
    for (i, l) in sample_text.lines().take(4).enumerate() {
        let mut cols: Vec<String> = l.split(';').map(str::to_string).collect();
        if i > 0 {
            cols[7] = format!("TAMPER-{i}");
        }
        text.push_str(&cols.join(";"));
        text.push('\n');
    }
    w.drop_file("supplier", "tamper.csv", text.as_bytes());
    // The daemon stops right after the sealed file is recorded.
    w.spawn_daemon_env(&[
        ("PAYGATE_CRASH_POINTS", "sealed"),
        ("PAYGATE_CRASH_PERCENT", "100"),
    ]);
    assert!(w.wait_for_crash(60), "never sealed:\n{}", w.log());
    let b = w.wait_batches("a sealed batch", 10, |b| {
        b.iter().any(|b| b.state == "sealed")
    });
    let msg_id = &b.iter().find(|b| b.state == "sealed").unwrap().msg_id;
    let outbox = w.dir.join("data/outbox").join(msg_id);
    let sealed = std::fs::read_dir(&outbox)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "pgp"))
        .unwrap_or_else(|| panic!("no sealed file in {}", outbox.display()));
    let original = std::fs::read(&sealed).unwrap();
    // Someone changes the archived file before it is sent.
    let mut changed = original.clone();
    let mid = changed.len() / 2;
    changed[mid] ^= 0x01;
    std::fs::write(&sealed, &changed).unwrap();
    w.start_daemon();
    let bank_in = w.dir.join("bank/in");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !w.log().contains("is not the file that was recorded")
        && !w.log().contains("is not the one recorded at sealing")
    {
        assert!(
            Instant::now() < deadline,
            "the change was not noticed:\n{}",
            w.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let in_bank: Vec<_> = std::fs::read_dir(&bank_in).unwrap().flatten().collect();
    assert!(in_bank.is_empty(), "sent anyway: {in_bank:?}");
    let b = w.batches();
    assert!(
        b.iter().all(|b| b.state == "uploading"),
        "{b:#?}\n{}",
        w.log()
    );
    // The archive restored, the same bytes go out, once.
    std::fs::write(&sealed, &original).unwrap();
    w.wait_batches("the batch sent", 90, |b| {
        b.iter().all(|b| b.state == "sent")
    });
    let in_bank: Vec<std::path::PathBuf> = std::fs::read_dir(&bank_in)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(in_bank.len(), 1, "{in_bank:?}");
    assert!(std::fs::read(&in_bank[0]).unwrap() == original);
}

/// An embedded store moved to PostgreSQL with `paygate store migrate-to`: refused while the
/// daemon runs, copied and verified once it is stopped, refused into a database that is no
/// longer empty; the daemon then runs on PostgreSQL with every batch and the audit chain as
/// they were, and goes on processing files there.
#[test]
fn a_sqlite_store_moves_to_postgres_and_the_daemon_goes_on_there() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(pg) = rt.block_on(paygate::store::scratch::Scratch::create(
        "the migrate-to test",
    )) else {
        return;
    };
    let mut w = World::new("migrate", Wire::Folder, "");
    w.drop_file(
        "supplier",
        "supplier.csv",
        &std::fs::read(sample("supplier.csv")).unwrap(),
    );
    w.start_sim();
    w.start_daemon();
    let before = w.wait_batches("the supplier batch to be answered", 60, |b| {
        b.len() == 1 && b[0].is_final()
    });
    let (code, text) = w.paygate(&["store", "migrate-to", pg.url()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("stop the daemon first"), "{text}");
    w.kill_daemon();
    let (code, text) = w.paygate(&["store", "migrate-to", pg.url()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("verified on the target"), "{text}");
    assert!(text.contains("[store]"), "{text}");
    let (code, text) = w.paygate(&["store", "migrate-to", pg.url()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not empty"), "{text}");

    w.set_store_url(pg.url());
    w.start_daemon();
    let after = w.batches();
    assert_eq!(
        after
            .iter()
            .map(|b| (&b.msg_id, &b.state))
            .collect::<Vec<_>>(),
        before
            .iter()
            .map(|b| (&b.msg_id, &b.state))
            .collect::<Vec<_>>()
    );
    let text2 = std::fs::read_to_string(sample("supplier.csv"))
        .unwrap()
        .replace("INV-", "INV2-");
    w.drop_file("supplier", "supplier-2.csv", text2.as_bytes());
    w.wait_batches("the second batch to be answered on PostgreSQL", 60, |b| {
        b.len() == 2 && b.iter().all(|b| b.is_final())
    });
    let (code, text) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = w.paygate(&["audit", "--json"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("store.migrated"), "{text}");
    w.kill_daemon();
}
