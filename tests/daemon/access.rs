//! Approvals and permissions end to end, with real OS users: the test creates them (it runs as
//! root), drops files owned by them, and runs the CLI under their uid, so that the daemon
//! knows each caller only from the kernel (`SO_PEERCRED`), as in production.

use crate::harness;
use crate::world::{Wire, World};
use std::path::{Path, PathBuf};
use std::process::Command;

/// OS users made for one test, removed again when it ends (however it ends).
struct OsUsers {
    users: Vec<(String, u32, u32)>,
}

impl OsUsers {
    /// Creates `pgtPID{role}` for each role. `None` (with a loud notice) where that is
    /// impossible outside CI; under CI it is a failure.
    fn create(roles: &[&str]) -> Option<OsUsers> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let useradd = Path::new("/usr/sbin/useradd");
        if !root || !useradd.exists() {
            let why = if root {
                "useradd (package passwd) is missing"
            } else {
                "the tests do not run as root, so they cannot create OS users"
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("approval tests need real OS users: {why}");
            }
            eprintln!(
                "\n!!! SKIPPED: the approval and permission tests with real OS users: {why}.\n!!! Run the README's test command as root (it does, in a container or CI) to run them.\n"
            );
            return None;
        }
        let tag = std::process::id() % 100_000;
        let mut made = OsUsers { users: Vec::new() };
        for r in roles {
            let name = format!("pgt{tag}{r}");
            let _ = Command::new("/usr/sbin/userdel").arg(&name).output();
            let o = harness::output_within(
                {
                    let mut c = Command::new(useradd);
                    c.args([
                        "--system",
                        "--no-create-home",
                        "--user-group",
                        "--shell",
                        "/usr/sbin/nologin",
                        &name,
                    ]);
                    c
                },
                60,
                None,
            );
            assert!(
                o.status.success(),
                "useradd {name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let id = |flag: &str| -> u32 {
                let o = Command::new("id").args([flag, &name]).output().unwrap();
                String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
            };
            let (uid, gid) = (id("-u"), id("-g"));
            made.users.push((name, uid, gid));
        }
        Some(made)
    }

    fn get(&self, role: &str) -> &(String, u32, u32) {
        self.users
            .iter()
            .find(|(n, _, _)| n.ends_with(role))
            .unwrap()
    }

    fn name(&self, role: &str) -> &str {
        &self.get(role).0
    }
}

impl Drop for OsUsers {
    fn drop(&mut self) {
        for (name, _, _) in &self.users {
            let _ = Command::new("/usr/sbin/userdel").arg(name).output();
        }
    }
}

/// `paygate ARGS` as the OS user `u` (uid and gid; no supplementary groups).
fn as_user(w: &World, u: &(String, u32, u32), args: &[&str]) -> (i32, String) {
    let mut c = Command::new(harness::require("setpriv", "util-linux"));
    c.arg(format!("--reuid={}", u.1))
        .arg(format!("--regid={}", u.2))
        .arg("--clear-groups")
        .arg(env!("CARGO_BIN_EXE_paygate"))
        .arg("--config")
        .arg(&w.config)
        .args(args)
        .env("RUST_BACKTRACE", "0");
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

/// Drops a file owned by `u` (written beside, owned, then moved in).
fn drop_as(w: &World, u: &(String, u32, u32), channel: &str, name: &str, text: &str) {
    let inbound = w.folder(channel, "inbound");
    std::fs::create_dir_all(&inbound).unwrap();
    let tmp = inbound.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::os::unix::fs::chown(&tmp, Some(u.1), Some(u.2)).unwrap();
    std::fs::rename(&tmp, inbound.join(name)).unwrap();
}

/// A supplier file of the sample's first payees with these amounts (EUR).
fn supplier_file(tag: &str, amounts: &[&str]) -> String {
    crate::world::supplier_csv(amounts.len(), |i, cols| {
        cols[4] = amounts[i].into();
        cols[5] = "EUR".into();
        cols[6] = format!("{tag} invoice {i}");
        cols[7] = format!("{tag}-{i}");
    })
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn wait_state(w: &World, file: &str, secs: u64, ok: impl Fn(&str) -> bool) -> i64 {
    let b = w.wait_batches(&format!("{file} to move on"), secs, |b| {
        b.iter().any(|x| x.file == file && ok(&x.state))
    });
    b.iter().find(|x| x.file == file).unwrap().id
}

fn state_of(w: &World, id: i64) -> String {
    w.batches()
        .into_iter()
        .find(|b| b.id == id)
        .map(|b| b.state)
        .unwrap()
}

const CHANNELS: &str = r#"
[channels.treasury]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "channels/treasury"
scan_secs = 1

[channels.treasury.limits]
max_batch_total = "200000"

[channels.treasury.approval]
required = 1
tiers = [{ above = "100000", required = 2 }]

[channels.treasury.approval.scrutiny]
new_beneficiary = true
duplicate_days = 0
outlier_factor = "0"

[channels.quick]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "channels/quick"
scan_secs = 1

[channels.quick.approval]
expire_hours = 0.001

[channels.quick.approval.scrutiny]
new_beneficiary = false
duplicate_days = 0
"#;

fn open_socket(w: &World) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(w.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(w.dir.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Maker-checker, roles, limits, scrutiny, expiry and revocation, each through the CLI as the
/// OS user it is about.
#[test]
fn who_may_do_what_is_enforced_for_real_os_users() {
    let Some(u) = OsUsers::create(&["sub", "ap1", "ap2", "ap3", "aud", "none"]) else {
        return;
    };
    let mut w = World::new("access", Wire::Folder, "");
    w.add_config(CHANNELS);
    w.start_sim();
    w.start_daemon();
    open_socket(&w);
    let me = World::me();
    let admin = |args: &[&str]| {
        let (code, out) = w.paygate(args);
        assert_eq!(code, 0, "paygate {args:?}: {out}");
        out
    };
    for r in ["sub", "ap1", "ap2", "ap3", "aud", "none"] {
        admin(&["users", "add", u.name(r), "--reason", "joined treasury"]);
    }
    for (r, role, ch, limit) in [
        ("sub", "submitter", "treasury", None),
        // The submitter also approves (others' batches): never their own.
        ("sub", "approver", "treasury", None),
        ("sub", "submitter", "quick", None),
        ("ap1", "approver", "treasury", None),
        ("ap2", "approver", "*", None),
        ("ap3", "approver", "treasury", Some("1000")),
        ("ap1", "approver", "quick", None),
        ("aud", "auditor", "*", None),
    ] {
        let mut args = vec!["users", "grant", u.name(r), role, "--channel", ch];
        if let Some(l) = limit {
            args.extend(["--limit", l]);
        }
        args.extend(["--reason", "treasury roles 2026"]);
        admin(&args);
    }
    // Nobody grants themselves a role, not even the bootstrap admin.
    let (code, out) = w.paygate(&[
        "users",
        "grant",
        &me,
        "approver",
        "--channel",
        "treasury",
        "--reason",
        "me",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nobody grants themselves"), "{out}");
    // An approver is no admin.
    let (code, out) = as_user(
        &w,
        u.get("ap1"),
        &[
            "users",
            "grant",
            u.name("none"),
            "approver",
            "--channel",
            "treasury",
            "--reason",
            "x",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("`admin` role"), "{out}");

    // A file from someone without the submitter role: refused with a note, nothing recorded.
    drop_as(
        &w,
        u.get("none"),
        "treasury",
        "stranger.csv",
        &supplier_file("S", &["10.00"]),
    );
    let note = w
        .folder("treasury", "rejected")
        .join("stranger.csv.errors.txt");
    w.wait_file(&note, 30);
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(
        text.contains("submitter role") && text.contains(u.name("none")),
        "{text}"
    );
    assert!(w.batches().iter().all(|b| b.file != "stranger.csv"));

    // B1, 500 EUR: one approval by the channel's rule, plus one for the new beneficiaries.
    drop_as(
        &w,
        u.get("sub"),
        "treasury",
        "b1.csv",
        &supplier_file("B1", &["200.00", "300.00"]),
    );
    let b1 = wait_state(&w, "b1.csv", 60, |s| s == "awaiting_approval");
    let (code, out) = as_user(&w, u.get("ap1"), &["batches", "--pending", "--json"]);
    assert_eq!(code, 0, "{out}");
    let pending = json(&out);
    let p = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["batch"] == b1)
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(p["required"], 2, "{p}");
    assert!(p["reasons"].to_string().contains("new beneficiary"), "{p}");
    assert_eq!(p["you_may_approve"], true, "{p}");
    let who = p["who_may_approve"].to_string();
    assert!(
        who.contains(u.name("ap1")) && who.contains(u.name("ap2")),
        "{p}"
    );
    assert!(
        !who.contains(u.name("sub")),
        "the submitter is not offered: {p}"
    );
    let id = b1.to_string();
    // The submitter cannot approve their own batch, though they hold the approver role.
    let (code, out) = as_user(&w, u.get("sub"), &["approve", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("cannot approve it (maker-checker)"), "{out}");
    // A user without the role is told which role is needed.
    let (code, out) = as_user(&w, u.get("none"), &["approve", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`approver` role on channel `treasury`"),
        "{out}"
    );
    let (code, out) = as_user(&w, u.get("ap1"), &["approve", &id, "--comment", "ok"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 of 2"), "{out}");
    // One person counts once.
    let (code, out) = as_user(&w, u.get("ap1"), &["approve", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("already approved"), "{out}");
    assert_eq!(state_of(&w, b1), "awaiting_approval");
    let (code, out) = as_user(&w, u.get("ap2"), &["approve", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 of 2"), "{out}");
    wait_state(&w, "b1.csv", 60, |s| {
        matches!(s, "sent" | "accepted" | "completed" | "partially_rejected")
    });

    // B2, 150,000 EUR to the same (now known) payees: two approvals by the tier alone.
    drop_as(
        &w,
        u.get("sub"),
        "treasury",
        "b2.csv",
        &supplier_file("B2", &["70000.00", "80000.00"]),
    );
    let b2 = wait_state(&w, "b2.csv", 60, |s| s == "awaiting_approval");
    let id = b2.to_string();
    let (code, out) = w.paygate(&["batch", "show", &id, "--json"]);
    assert_eq!(code, 0, "{out}");
    let shown = json(&out);
    assert_eq!(shown["approval"]["required"], 2, "{shown}");
    let reasons = shown["approval"]["reasons"].to_string();
    assert!(
        reasons.contains("above") && !reasons.contains("new beneficiary"),
        "{reasons}"
    );
    // An approver's personal limit holds.
    let (code, out) = as_user(&w, u.get("ap3"), &["approve", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("approval limit"), "{out}");
    let (code, out) = as_user(&w, u.get("ap1"), &["approve", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 of 2"), "{out}");
    // Revoking a role takes effect at once.
    admin(&[
        "users",
        "revoke",
        u.name("ap2"),
        "approver",
        "--channel",
        "*",
        "--reason",
        "left the company",
    ]);
    let (code, out) = as_user(&w, u.get("ap2"), &["approve", &id]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("`approver` role"), "{out}");
    assert_eq!(state_of(&w, b2), "awaiting_approval");
    let (code, out) = as_user(
        &w,
        u.get("ap1"),
        &["reject", &id, "--reason", "not this month"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(state_of(&w, b2), "declined");
    let note = w
        .folder("treasury", "rejected")
        .join(format!("b2.csv.batch{b2}.declined.txt"));
    w.wait_file(&note, 10);
    assert!(
        std::fs::read_to_string(&note)
            .unwrap()
            .contains("not this month")
    );

    // B3, 250,000 EUR: over the channel's hard limit, declined whatever the approvals.
    drop_as(
        &w,
        u.get("sub"),
        "treasury",
        "b3.csv",
        &supplier_file("B3", &["120000.00", "130000.00"]),
    );
    let b3 = wait_state(&w, "b3.csv", 60, |s| s == "declined");
    let note = w
        .folder("treasury", "rejected")
        .join(format!("b3.csv.batch{b3}.declined.txt"));
    w.wait_file(&note, 10);
    let text = std::fs::read_to_string(&note).unwrap();
    assert!(
        text.contains("channels.treasury.limits.max_batch_total"),
        "{text}"
    );
    let (code, out) = as_user(&w, u.get("ap1"), &["approve", &b3.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("`declined`, not waiting for approval"),
        "{out}"
    );

    // An expired batch is never sent.
    drop_as(
        &w,
        u.get("sub"),
        "quick",
        "q.csv",
        &supplier_file("Q", &["10.00"]),
    );
    let q = wait_state(&w, "q.csv", 60, |s| s == "expired");
    let note = w
        .folder("quick", "rejected")
        .join(format!("q.csv.batch{q}.expired.txt"));
    w.wait_file(&note, 10);
    // ap1 may approve on `quick`: the refusal is the expiry's.
    let (code, out) = as_user(&w, u.get("ap1"), &["approve", &q.to_string()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("`expired`, not waiting for approval"), "{out}");
    let (_, out) = w.paygate(&["batch", "show", &q.to_string(), "--json"]);
    let history = json(&out)["history"].to_string();
    assert!(
        !history.contains("sealed") && !history.contains("sent"),
        "{history}"
    );
    let msg_id = w.batches().into_iter().find(|b| b.id == q).unwrap().msg_id;
    let sent_anywhere = [w.dir.join("bank/in"), w.sim_state.join("taken")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .any(|e| e.file_name().to_string_lossy().contains(&msg_id));
    assert!(
        !sent_anywhere,
        "the expired batch {msg_id} reached the bank"
    );

    // The auditor reads; others do not; nobody reviews without a role.
    let (code, out) = as_user(
        &w,
        u.get("aud"),
        &["audit", "--batch", &b1.to_string(), "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let entries = json(&out);
    let approvers: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "batch.approved")
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, [u.name("ap1"), u.name("ap2")], "{out}");
    let (code, out) = as_user(&w, u.get("none"), &["audit"]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = as_user(&w, u.get("aud"), &["users", "list", "--json"]);
    assert_eq!(code, 0, "{out}");
    let users = json(&out);
    let ap2 = users
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == u.name("ap2"))
        .unwrap();
    assert_eq!(ap2["roles"].as_array().unwrap().len(), 0, "revoked: {ap2}");
    let (code, out) = as_user(
        &w,
        u.get("aud"),
        &["users", "review", "--unused-days", "30"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("review by {} recorded", u.name("aud"))),
        "{out}"
    );
    let (code, out) = as_user(
        &w,
        u.get("aud"),
        &["users", "disable", u.name("ap1"), "--reason", "x"],
    );
    assert_eq!(code, 1, "{out}");
    // The record of it all: grants and revocations with who and why, the review.
    let (code, out) = w.paygate(&["audit", "--json"]);
    assert_eq!(code, 0, "{out}");
    let all = json(&out);
    let actions: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} {} {}", e["actor"], e["action"], e["details"]))
        .collect();
    let has = |a: &str, who: &str, what: &str| {
        actions
            .iter()
            .any(|l| l.contains(a) && l.contains(who) && l.contains(what))
    };
    assert!(has("role.revoked", &me, "left the company"), "{actions:#?}");
    assert!(
        has("role.granted", &me, "treasury roles 2026"),
        "{actions:#?}"
    );
    assert!(
        has("users.reviewed", u.name("aud"), "flagged"),
        "{actions:#?}"
    );
    assert!(
        has("approval.refused", u.name("sub"), "maker-checker"),
        "{actions:#?}"
    );
    assert!(
        has("file.refused", u.name("none"), "stranger.csv"),
        "{actions:#?}"
    );
    // The export is a chain an auditor can check outside paygate.
    let (code, out) = as_user(&w, u.get("aud"), &["audit", "export"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out.lines().map(json).collect();
    assert_eq!(lines.len(), all.as_array().unwrap().len());
    for pair in lines.windows(2) {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "{pair:?}");
    }
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());
}

/// Editing or deleting one audit row makes `paygate audit verify` name that row.
#[test]
fn audit_verify_names_the_row_that_was_changed_or_removed() {
    let mut w = World::new("audit", Wire::Folder, "");
    w.start_daemon();
    for i in 0..4 {
        let (code, out) = w.paygate(&[
            "users",
            "add",
            &format!("pg-sys{i}"),
            "--system",
            "--reason",
            "rows for the chain",
        ]);
        assert_eq!(code, 0, "{out}");
    }
    let (code, out) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    w.signal_daemon(libc::SIGTERM);
    assert_eq!(w.wait_daemon(30), 0, "{}", w.log());

    let db: PathBuf = w.dir.join("data/paygate.db");
    let sql = |stmts: &[&str]| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::ConnectOptions;
            let mut c = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&db)
                .connect()
                .await
                .unwrap();
            for s in stmts {
                sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap();
            }
        })
    };
    // An edited row.
    sql(&[
        "DROP TRIGGER audit_no_update",
        "UPDATE audit SET details = details || ' ' WHERE seq = 3",
    ]);
    let (code, out) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 3:") && out.contains("changed"), "{out}");
    sql(&["UPDATE audit SET details = rtrim(details) WHERE seq = 3"]);
    let (code, out) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 0, "restored: {out}");
    // A deleted row.
    sql(&[
        "DROP TRIGGER audit_no_delete",
        "DELETE FROM audit WHERE seq = 4",
    ]);
    let (code, out) = w.paygate(&["audit", "verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("entry 4 is missing"), "{out}");
}
