//! Protect and watch, end to end: the start refuses widened modes; a data-key rotation killed
//! mid-way leaves every row readable and finishes when run again; every alert kind reaches a
//! local webhook and a local SMTP server (STARTTLS) once, however often it is raised.

use crate::harness;
use crate::world::{Wire, World, sample};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn chmod(p: &std::path::Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `paygate run` as a process that is expected to stop at start: its exit code and output.
fn start_refused(w: &World) -> (i32, String) {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_paygate"));
    c.arg("--config").arg(&w.config).arg("run");
    let o = harness::output_within(c, 60, None);
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn a_widened_mode_on_a_key_file_or_the_store_stops_the_start() {
    // The world's set-up ran the daemon once: the store and the data key exist.
    let mut w = World::new("modes", Wire::Folder, "");
    let data = w.dir.join("data");
    let key = data.join("keys/data.key");
    assert!(key.is_file());
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(data.join("paygate.db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "paygate creates its store 0600"
    );
    for (path, mode, max) in [
        (key.clone(), 0o644, "0600"),
        (data.join("paygate.db"), 0o640, "0600"),
        (data.join("audit.anchor"), 0o604, "0600"),
        (data.join("spool"), 0o750, "0700"),
    ] {
        let before = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        chmod(&path, mode);
        let (code, out) = start_refused(&w);
        assert_eq!(code, 78, "{}: {out}", path.display());
        let said = format!(
            "{}: mode {mode:04o} is too open (at most {max})",
            path.display()
        );
        assert!(out.contains(&said), "expected `{said}` in: {out}");
        assert!(out.contains("chmod"), "{out}");
        // Refused before the store was opened: no journal file took the widened mode.
        for journal in ["paygate.db-wal", "paygate.db-shm"] {
            if let Ok(m) = std::fs::metadata(data.join(journal)) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{journal}");
            }
        }
        chmod(&path, before);
    }
    // Put right, it starts.
    w.start_daemon();
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
}

#[test]
fn a_data_key_rotation_killed_mid_way_leaves_every_row_readable_and_finishes_when_run_again() {
    let mut w = World::new("rotate", Wire::Folder, "");
    w.drop_file(
        "supplier",
        "supplier.csv",
        &std::fs::read(sample("supplier.csv")).unwrap(),
    );
    w.start_sim();
    w.start_daemon();
    let b = w.wait_batches("the supplier batch to be final", 60, |b| {
        b.len() == 1 && b[0].is_final()
    });
    let before = w.paygate(&["batch", "show", &b[0].id.to_string()]).1;
    assert!(
        before.contains("NL80RABO1119893879") || before.contains("NL80"),
        "{before}"
    );
    // Rotation refuses while the daemon runs: it holds the key in memory.
    let (code, out) = w.paygate(&["keys", "rotate-data-key"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("stop it first"), "{out}");
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
    // Killed (SIGKILL) right after the first chunk of 5 rows was committed.
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_paygate"));
    c.arg("--config")
        .arg(&w.config)
        .args(["keys", "rotate-data-key", "--chunk", "5"])
        .env("PAYGATE_CRASH_POINTS", "reencrypt-chunk")
        .env("PAYGATE_CRASH_PERCENT", "100");
    let o = harness::output_within(c, 60, None);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGKILL),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let keyfile = std::fs::read_to_string(w.dir.join("data/keys/data.key")).unwrap();
    assert!(keyfile.contains("current = 2"), "{keyfile}");
    assert!(
        keyfile.contains("1 = ") && keyfile.contains("2 = "),
        "both keys held: {keyfile}"
    );
    // Every row readable with the rows under both keys.
    let mid = w.paygate(&["batch", "show", &b[0].id.to_string()]).1;
    assert_eq!(mid, before);
    // Run again: it continues and ends; the old key is gone from the file.
    let (code, out) = w.paygate(&["keys", "rotate-data-key", "--chunk", "5"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("data_key.rotation_resumed"), "{out}");
    assert!(out.contains("data_key.rotated"), "{out}");
    let keyfile = std::fs::read_to_string(w.dir.join("data/keys/data.key")).unwrap();
    assert!(
        keyfile.contains("current = 2") && !keyfile.contains("1 = "),
        "{keyfile}"
    );
    let after = w.paygate(&["batch", "show", &b[0].id.to_string()]).1;
    assert_eq!(after, before);
    let (_, audit) = w.paygate(&["audit"]);
    for a in [
        "data_key.rotation_started",
        "data_key.rotation_resumed",
        "data_key.rotated",
    ] {
        assert!(audit.contains(a), "{a} not audited: {audit}");
    }
    // What an earlier version left in plaintext in a channel's archive is encrypted into the
    // archive at the next start, and the plaintext removed.
    let old = w.folder("supplier", "archive").join("batch1-old-run.csv");
    std::fs::write(&old, b"Vendor;IBAN\nOld GmbH;DE89370400440532013000\n").unwrap();
    // The daemon starts on the new key and the chain still verifies.
    w.start_daemon();
    assert!(!old.exists(), "the plaintext copy is gone");
    let enc = w
        .folder("supplier", "archive")
        .join("batch1-old-run.csv.pgp");
    let (plain, status) = crate::world::gpg_decrypt_as(&w.keys, "archive", &enc);
    assert!(status.contains("DECRYPTION_OKAY"), "{status}");
    assert!(String::from_utf8_lossy(&plain).contains("Old GmbH"));
    let (code, out) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
}

/// Counts per (kind, subject) of the alerts in webhook bodies.
fn by_subject(bodies: &[String]) -> std::collections::BTreeMap<(String, String), usize> {
    let mut m = std::collections::BTreeMap::new();
    for b in bodies {
        let v: serde_json::Value = serde_json::from_str(b).unwrap();
        let a = &v["alert"];
        *m.entry((
            a["kind"].as_str().unwrap().to_string(),
            a["subject"].as_str().unwrap().to_string(),
        ))
        .or_insert(0) += 1;
    }
    m
}

#[test]
fn every_alert_kind_reaches_the_webhook_and_the_mailbox_once() {
    let mut w = World::new(
        "alerts",
        Wire::Folder,
        "reject_accounts = [\"NL80RABO1119893879\"]\nno_booking = true",
    );
    let hook = harness::HttpSink::start(&[]);
    let smtp = harness::SmtpSink::start();
    let ca = w.dir.join("smtp-ca.pem");
    std::fs::write(&ca, &smtp.cert_pem).unwrap();
    let bfpr = format!("fingerprints = [\"{}\"]", w.fingerprints().1);
    let wrong = "0000000000000000000000000000000000000000";
    let d = w.dir.display().to_string();
    w.add_config(&format!(
        r#"
[banks.badkey]
name = "A bank whose pinned key is not its key file's"
format = "pain.001.001.09"
currencies = ["EUR", "USD", "GBP", "CHF", "JPY", "CNY"]
charset = "utf8"
poll_secs = 3600
[banks.badkey.pgp]
keys = ["keys/bank.pub.asc"]
fingerprints = ["{wrong}"]
[banks.badkey.transport]
type = "folder"
upload_dir = "{d}/badkey/in"
download_dir = "{d}/badkey/out"

[banks.down]
name = "A bank that is not there"
format = "pain.001.001.09"
currencies = ["EUR"]
poll_secs = 1
[banks.down.pgp]
keys = ["keys/bank.pub.asc"]
{bfpr}
[banks.down.transport]
type = "folder"
upload_dir = "{d}/nowhere/in"
download_dir = "{d}/nowhere/out"
attempts = 1

[banks.silent]
name = "A bank that takes files and never answers"
format = "pain.001.001.09"
currencies = ["EUR", "USD", "GBP", "CHF", "JPY", "CNY"]
charset = "utf8"
poll_secs = 1
[banks.silent.pgp]
keys = ["keys/bank.pub.asc"]
{bfpr}
[banks.silent.transport]
type = "folder"
upload_dir = "{d}/silent/in"
download_dir = "{d}/silent/out"

[channels.quiet]
kind = "supplier"
bank = "silent"
debtor_account = "eur"
folder = "channels/quiet"
scan_secs = 1
stable_secs = 1
submitter = "pg-files"
[channels.quiet.approval]
auto_below = {{ EUR = "1000000", USD = "1000000", GBP = "1000000", CHF = "1000000", JPY = "150000000" }}
[channels.quiet.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
outlier_factor = "0"

[channels.capped]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "channels/capped"
scan_secs = 1
stable_secs = 1
submitter = "pg-files"
[channels.capped.limits]
max_batch_total = "1.00"

[channels.keyed]
kind = "supplier"
bank = "badkey"
debtor_account = "eur"
folder = "channels/keyed"
scan_secs = 1
stable_secs = 1
submitter = "pg-files"
[channels.keyed.approval]
auto_below = {{ EUR = "1000000", USD = "1000000", GBP = "1000000", CHF = "1000000", JPY = "150000000" }}
[channels.keyed.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
outlier_factor = "0"

[channels.slow]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "channels/slow"
scan_secs = 1
stable_secs = 1
submitter = "pg-files"
[channels.slow.approval]
required = 1
expire_hours = 0.004
[channels.slow.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
outlier_factor = "0"

[alerts]
check_secs = 1
repeat_after_mins = 60
status_deadline_hours = 0
bank_unreachable_mins = 0
disk_free_min_mb = 100000000
key_expiry_days = 36500
refusals_per_hour = 1
[[alerts.webhooks]]
url = "http://127.0.0.1:{hook}/hook"
[alerts.email]
host = "127.0.0.1"
port = {smtp}
tls = "starttls"
ca_file = "{ca}"
from = "paygate@acme.example"
to = ["ops@acme.example"]
"#,
        hook = hook.port,
        smtp = smtp.port,
        ca = ca.display(),
    ));
    let supplier = std::fs::read(sample("supplier.csv")).unwrap();
    w.drop_file("supplier", "supplier.csv", &supplier);
    w.drop_file(
        "supplier",
        "broken.csv",
        &std::fs::read(sample("broken.csv")).unwrap(),
    );
    w.drop_file("capped", "supplier.csv", &supplier);
    w.drop_file("keyed", "supplier.csv", &supplier);
    w.drop_file("slow", "supplier.csv", &supplier);
    // Sent to a bank that never answers: its status is overdue.
    for d in ["silent/in", "silent/out"] {
        std::fs::create_dir_all(w.dir.join(d)).unwrap();
    }
    w.drop_file("quiet", "supplier.csv", &supplier);
    // Not a file from the bank: quarantined.
    std::fs::write(w.dir.join("bank/out/junk.xml.pgp"), b"not OpenPGP at all").unwrap();
    w.start_sim();
    w.start_daemon();
    // The slow batch waits; the admin (not an approver) tries to approve it: refused.
    let b = w.wait_batches("the slow batch to wait for approval", 60, |b| {
        b.iter()
            .any(|x| x.channel == "slow" && x.state == "awaiting_approval")
    });
    let slow = b.iter().find(|x| x.channel == "slow").unwrap().id;
    let (code, out) = w.paygate(&["approve", &slow.to_string()]);
    assert_ne!(code, 0, "{out}");
    // A broken audit chain is found at start: an anchor ahead of the database.
    w.wait_batches("the slow batch to expire", 60, |b| {
        b.iter()
            .any(|x| x.channel == "slow" && x.state == "expired")
    });
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
    let anchor = w.dir.join("data/audit.anchor");
    let mut a = std::fs::read_to_string(&anchor).unwrap();
    a.push_str(&format!("999999 {}\n", "ab".repeat(32)));
    std::fs::write(&anchor, a).unwrap();
    w.start_daemon();
    let all = |bodies: &[String]| {
        paygate::alerts::kind::ALL.iter().all(|k| {
            bodies
                .iter()
                .any(|b| b.contains(&format!("\"kind\":\"{k}\"")))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let fail_log = std::env::var("PAYGATE_TEST_FAIL_LOG").ok();
    while !(all(&hook.bodies())
        && paygate::alerts::kind::ALL.iter().all(|k| {
            smtp.messages()
                .iter()
                .any(|m| m.contains(&format!("] {k}: ")))
        }))
    {
        if Instant::now() >= deadline
            && let Some(f) = &fail_log
        {
            let _ = std::fs::write(f, format!("{:?}\n{}", w.batches(), w.log()));
        }
        assert!(
            Instant::now() < deadline,
            "missing kinds after 120 s; batches: {:?}\nwebhook: {:?}\nmail: {:?}\nlog: {}",
            w.batches(),
            by_subject(&hook.bodies()).keys().collect::<Vec<_>>(),
            smtp.messages()
                .iter()
                .map(|m| m
                    .lines()
                    .find(|l| l.starts_with("Subject"))
                    .unwrap_or("")
                    .to_string())
                .collect::<Vec<_>>(),
            w.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Checks run every second; within the repeat interval nothing is sent again.
    std::thread::sleep(Duration::from_secs(4));
    let counts = by_subject(&hook.bodies());
    for ((kind, subject), n) in &counts {
        assert_eq!(*n, 1, "{kind} about {subject} sent {n} times");
    }
    let mails = smtp.messages();
    assert_eq!(mails.len(), counts.len(), "one mail per alert");
    assert!(
        mails.iter().all(|m| m.contains("ops@acme.example")),
        "{mails:?}"
    );
    // What people see: the open alerts, the periodic ones counted.
    let (code, st) = w.paygate(&["status"]);
    assert_eq!(code, 0, "{st}");
    assert!(st.contains("disk.low") && st.contains("raised"), "{st}");
    assert!(st.contains("what to do:"), "{st}");
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
}
