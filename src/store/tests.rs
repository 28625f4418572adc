//! Store tests on a real SQLite file.

use super::*;
use crate::model::{Currency, DomesticAccount, Money, Outcome};
use chrono::{NaiveDate, TimeZone};

fn at(min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 9, min, 0).unwrap()
}

/// Which database a test runs on: every test of this module runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Sqlite,
    Postgres,
}

/// A test's database (a SQLite file in a temporary folder, or a throw-away PostgreSQL
/// database) and that folder, for the anchor and key files.
struct Db {
    dir: tempfile::TempDir,
    pg: Option<scratch::Scratch>,
}

impl Db {
    /// `None`: PostgreSQL cannot be reached outside CI (`Scratch::create` said so, loudly).
    async fn new(on: On) -> Option<Db> {
        let pg = match on {
            On::Sqlite => None,
            On::Postgres => Some(scratch::Scratch::create("a store test").await?),
        };
        Some(Db {
            dir: tempfile::tempdir().unwrap(),
            pg,
        })
    }

    fn url(&self) -> String {
        match &self.pg {
            Some(pg) => pg.url().to_string(),
            None => format!("sqlite://{}", self.dir.path().join("paygate.db").display()),
        }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

async fn fresh(on: On) -> Option<(Db, Store)> {
    let db = Db::new(on).await?;
    let store = Store::open(&db.url())
        .await
        .unwrap()
        .with_data_keys(std::sync::Arc::new(crate::vault::DataKeys::generate()));
    Some((db, store))
}

fn payment(row: u64, minor: i64) -> Payment {
    Payment {
        row,
        end_to_end_id: None,
        creditor_name: "张伟".into(),
        creditor_account: Account::Domestic(
            DomesticAccount::parse("6222021001123456789", 8, 32).unwrap(),
        ),
        creditor_agent: Some(BankId::Cnaps(
            crate::model::Cnaps::parse("102290002916").unwrap(),
        )),
        creditor_bank_name: Some("中国工商银行上海市分行营业部".into()),
        creditor_address: None,
        amount: Money::from_minor_units(minor, Currency::CNY),
        remittance: Some("Salary 2026-11".into()),
        execution_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
    }
}

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

async fn the_same_content_is_recorded_once_whatever_its_name(on: On) {
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let first = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    assert!(first.new);
    let again = store
        .record_file("payroll", "nov (copy).csv", SHA, 10, at(1))
        .await
        .unwrap();
    assert!(!again.new);
    assert_eq!(again.id, first.id);
    assert_eq!(again.first_name, "nov.csv");
    // Another channel may legitimately receive the same bytes.
    let other = store
        .record_file("supplier", "nov.csv", SHA, 10, at(2))
        .await
        .unwrap();
    assert!(other.new);
}

async fn batches_store_exact_minor_units_and_move_only_by_legal_guarded_transitions(on: On) {
    let Some((dir, store)) = fresh(on).await else {
        return;
    };
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let payments = vec![payment(2, 880_050), payment(3, 1_234_567)];
    let id = store
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-1",
            &payments,
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    assert_eq!(
        store.batch_totals(id).await.unwrap(),
        vec![("CNY".to_string(), 2_114_617, 2)]
    );

    let s = store
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(s, BatchState::AwaitingApproval);
    // A second process still believing the batch is `received` changes nothing.
    let stale = store
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(3),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "{stale:?}"
    );
    // Illegal moves are refused before touching the database.
    let illegal = store
        .transition(
            id,
            BatchState::AwaitingApproval,
            &Event::UploadStarted,
            "ops",
            at(3),
        )
        .await;
    assert!(
        matches!(illegal, Err(StoreError::Illegal(_))),
        "{illegal:?}"
    );
    assert_eq!(
        store.batch(id).await.unwrap().state,
        BatchState::AwaitingApproval
    );
    let s = store
        .transition(
            id,
            s,
            &Event::Approved {
                policy_satisfied: true,
            },
            "li.na",
            at(4),
        )
        .await
        .unwrap();
    assert_eq!(s, BatchState::Approved);
    assert_eq!(
        store.batch_history(id).await.unwrap(),
        vec![
            (None, "received".into(), "created".into()),
            (
                Some("received".into()),
                "awaiting_approval".into(),
                "validated".into()
            ),
            (
                Some("awaiting_approval".into()),
                "approved".into(),
                "approved".into()
            ),
        ]
    );
    // Durable: a new connection to the same database sees the same state.
    store.close().await;
    let reopened = Store::open(&dir.url())
        .await
        .unwrap()
        .with_data_keys(store.keys.clone().unwrap());
    assert_eq!(
        reopened.batch(id).await.unwrap().state,
        BatchState::Approved
    );
    let s = reopened
        .transition(id, BatchState::Approved, &Event::Sealed, "paygate", at(5))
        .await
        .unwrap();
    let s = reopened
        .transition(id, s, &Event::UploadStarted, "paygate", at(6))
        .await
        .unwrap();
    let s = reopened
        .transition(id, s, &Event::Outcome(Outcome::Accepted), "bank", at(7))
        .await
        .unwrap();
    assert_eq!(s, BatchState::Accepted);
}

async fn audit_trail_is_chained_append_only_and_tampering_is_detected(on: On) {
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let id = store
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-2",
            &[payment(2, 100)],
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    store
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
    let actions: Vec<String> = store
        .audit_entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        vec!["file.received", "batch.created", "batch.validated"]
    );

    // The triggers refuse edits through SQL...
    let edit = sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        .execute(&store.pool)
        .await;
    assert!(edit.unwrap_err().to_string().contains("append-only"));
    let del = sqlx::query("DELETE FROM audit WHERE seq = 3")
        .execute(&store.pool)
        .await;
    assert!(del.is_err());
    // ...and someone who drops them is still caught by the hash chain.
    sqlx::query(match on {
        On::Sqlite => "DROP TRIGGER audit_no_update",
        On::Postgres => "DROP TRIGGER audit_no_update ON audit",
    })
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE audit SET actor = 'mallory' WHERE seq = 2")
        .execute(&store.pool)
        .await
        .unwrap();
    let broken = store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 2);
    assert!(broken.why.contains("changed"), "{broken}");
}

async fn amounts_are_never_stored_as_floating_point(on: On) {
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    store
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-3",
            &[payment(2, 10)],
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    let kind: String = sqlx::query(match on {
        On::Sqlite => "SELECT typeof(amount_minor) FROM payments",
        On::Postgres => "SELECT CAST(pg_typeof(amount_minor) AS TEXT) FROM payments",
    })
    .fetch_one(&store.pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(
        kind,
        match on {
            On::Sqlite => "integer",
            On::Postgres => "bigint",
        }
    );
}

async fn the_anchor_file_catches_removed_and_rewritten_entries(on: On) {
    let Some(db) = Db::new(on).await else {
        return;
    };
    let anchor = db.path().join("audit.anchor");
    let store = Store::open(&db.url())
        .await
        .unwrap()
        .with_data_keys(std::sync::Arc::new(crate::vault::DataKeys::generate()))
        .with_audit_anchor(anchor.clone());
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let id = store
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-9",
            &[payment(2, 100)],
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    store
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(2),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&anchor).unwrap().lines().count(), 3);
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
    // A line cut short by a SIGKILL while it was appended, glued to the next one, is no
    // evidence of tampering: only whole lines count.
    let text = std::fs::read_to_string(&anchor).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let last = lines.pop().unwrap().to_string();
    let glued = format!("{}\n2 {last}\n", lines.join("\n"));
    std::fs::write(&anchor, glued).unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(3));
    std::fs::write(&anchor, &text).unwrap();
    // Someone with the database removes the last entry: the chain alone would still verify.
    sqlx::query(match on {
        On::Sqlite => "DROP TRIGGER audit_no_delete",
        On::Postgres => "DROP TRIGGER audit_no_delete ON audit",
    })
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query("DELETE FROM audit WHERE seq = 3")
        .execute(&store.pool)
        .await
        .unwrap();
    let broken = store.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3);
    assert!(broken.why.contains("no longer in the database"), "{broken}");
}

async fn the_policy_decides_once_and_approvals_follow_roles_as_they_are_now(on: On) {
    use crate::approval::{Decision, Role};
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let id = store
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-1",
            &[payment(2, 880_050), payment(3, 1_234_567)],
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    store
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(2),
        )
        .await
        .unwrap();
    store
        .ensure_bootstrap_admin("root", Some(0), at(3))
        .await
        .unwrap();
    for u in ["a1", "a2"] {
        store
            .add_user("root", u, None, false, "test", at(3))
            .await
            .unwrap();
        store
            .grant("root", u, Role::Approver, "payroll", None, "test", at(3))
            .await
            .unwrap();
    }
    // An account deleted and made again under the same name is somebody else.
    store
        .add_user("root", "u9", Some(4242), false, "test", at(3))
        .await
        .unwrap();
    assert_eq!(store.same_account("u9", 4242).await.unwrap(), Ok(()));
    assert!(store.same_account("u9", 4243).await.unwrap().is_err());
    assert_eq!(store.same_account("never-added", 7).await.unwrap(), Ok(()));
    // Not decided yet: nobody can approve.
    let early = store
        .approve(id, "a1", None, chrono::Duration::hours(72), at(4))
        .await;
    assert!(
        matches!(early, Err(AccessError::NotAwaiting { .. })),
        "{early:?}"
    );
    let q = IntakeQuery {
        channel: "payroll".into(),
        debtor_account: "cny".into(),
        channel_day: Some(at(0)),
        account_day: None,
        new_beneficiary: true,
        duplicates_since: Some(at(0)),
        outlier_factor: None,
    };
    let d = store
        .decide_intake(
            id,
            &q,
            |facts| {
                assert_eq!(facts.scrutiny.new_payee_count, 1, "one account, two rows");
                assert_eq!(facts.totals.len(), 1);
                Decision::Awaiting {
                    required: 2,
                    reasons: vec!["two".into()],
                }
            },
            at(4),
        )
        .await
        .unwrap();
    assert!(d.is_some());
    // A second decision (a recovery racing a pickup) does nothing.
    let again = store
        .decide_intake(id, &q, |_| unreachable!("decided already"), at(5))
        .await
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(store.batch(id).await.unwrap().approvals_required, Some(2));
    let one = store
        .approve(id, "a1", Some("ok"), chrono::Duration::hours(72), at(6))
        .await
        .unwrap();
    assert_eq!(
        (one.approvals, one.state),
        (1, BatchState::AwaitingApproval)
    );
    // Disabled: every role inert at once; enabled again: back.
    store
        .set_user_enabled("root", "a2", false, "leave", Some("root"), at(7))
        .await
        .unwrap();
    let refused = store
        .approve(id, "a2", None, chrono::Duration::hours(72), at(8))
        .await;
    assert!(
        matches!(
            refused,
            Err(AccessError::Refused(
                crate::approval::Refusal::Disabled { .. }
            ))
        ),
        "{refused:?}"
    );
    store
        .set_user_enabled("root", "a2", true, "back", Some("root"), at(9))
        .await
        .unwrap();
    let two = store
        .approve(id, "a2", None, chrono::Duration::hours(72), at(10))
        .await
        .unwrap();
    assert_eq!((two.approvals, two.state), (2, BatchState::Approved));
    // The bootstrap admin cannot be disabled or lose admin on `*` through paygate.
    assert!(matches!(
        store
            .set_user_enabled("root", "root", false, "x", Some("root"), at(11))
            .await,
        Err(AccessError::Bootstrap(_))
    ));
    assert!(store.verify_audit().await.unwrap().is_ok());
}

async fn payment_data_is_stored_encrypted_and_survives_a_key_rotation(on: On) {
    let Some(db) = Db::new(on).await else {
        return;
    };
    let url = db.url();
    let kpath = db.path().join("keys/data.key");
    let mut keys = crate::vault::DataKeys::generate();
    keys.save(&kpath).unwrap();
    let open = || async {
        Store::open(&url)
            .await
            .unwrap()
            .with_data_keys(std::sync::Arc::new(
                crate::vault::DataKeys::load(&kpath).unwrap(),
            ))
    };
    let store = open().await;
    let file = store
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let mut p = payment(2, 12_345);
    p.remittance = Some("SALARY NOV REF-778812".into());
    let id = store
        .create_batch(
            file.id,
            "payroll",
            "cnbank",
            "MSG-AT-REST",
            &[p.clone(), payment(3, 500)],
            "test",
            at(1),
        )
        .await
        .unwrap();
    let account = match &p.creditor_account {
        Account::Domestic(d) => d.as_str().to_string(),
        Account::Iban(i) => i.as_str().to_string(),
    };
    store.close().await;
    let needles = [account.as_str(), p.creditor_name.as_str(), "REF-778812"];
    match on {
        On::Sqlite => {
            let file = std::fs::read(db.path().join("paygate.db")).unwrap();
            let wal = std::fs::read(db.path().join("paygate.db-wal")).unwrap_or_default();
            for needle in needles {
                for (what, bytes) in [("database", &file), ("WAL", &wal)] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                        "`{needle}` in plaintext in the {what}"
                    );
                }
            }
        }
        On::Postgres => {
            // The server's files are not ours to read: no column of any row holds it.
            let store = open().await;
            for needle in needles {
                for table in ["payments", "batches", "audit", "files"] {
                    let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT COUNT(*) FROM {table} t WHERE strpos(CAST(t AS TEXT), $1) > 0"
                    )))
                    .bind(needle)
                    .fetch_one(&store.pool)
                    .await
                    .unwrap()
                    .get(0);
                    assert_eq!(n, 0, "`{needle}` in plaintext in {table}");
                }
            }
            store.close().await;
        }
    }
    // Rotation: a new key current, the old one still held; rows re-encrypted a chunk at a time.
    keys.add_key();
    keys.save(&kpath).unwrap();
    let store = open().await;
    assert_eq!(store.rows_off_current_key().await.unwrap(), 2);
    let mut chunks = 0;
    let done = store.reencrypt(1, |_| chunks += 1).await.unwrap();
    assert_eq!((done.rows, chunks), (2, 2));
    assert_eq!(store.rows_off_current_key().await.unwrap(), 0);
    assert_eq!(store.keys_in_use().await.unwrap(), vec![(2, 2)]);
    store.close().await;
    assert_eq!(keys.retire_old_keys(), vec![1]);
    keys.save(&kpath).unwrap();
    let store = open().await;
    let back = store.payments(id).await.unwrap();
    assert_eq!(back[0].account, account);
    assert_eq!(back[0].creditor_name, p.creditor_name);
    let rendered = store.payments_to_render(id).await.unwrap();
    assert_eq!(
        rendered[0].remittance.as_deref(),
        Some("SALARY NOV REF-778812")
    );
    // A value moved into another row does not decrypt: the row is part of what is sealed.
    sqlx::query("UPDATE payments SET sealed = (SELECT sealed FROM payments WHERE row_no = 3) WHERE row_no = 2")
        .execute(&store.pool)
        .await
        .unwrap();
    let e = store.payments(id).await.unwrap_err().to_string();
    assert!(e.contains("does not decrypt"), "{e}");
}

async fn rows_and_payees_written_before_encryption_are_encrypted_when_the_store_opens_with_its_key(
    on: On,
) {
    let Some((dir, store)) = fresh(on).await else {
        return;
    };
    let file = store
        .record_file("supplier", "old.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let id = store
        .create_batch(
            file.id,
            "supplier",
            "bank",
            "MSG-OLD",
            &[payment(2, 700)],
            "test",
            at(1),
        )
        .await
        .unwrap();
    // As an earlier version stored it: the payee in the plaintext columns, and a payee row.
    sqlx::query(
        "UPDATE payments SET enc_key = NULL, sealed = NULL, account_hmac = NULL,
             creditor_name = 'Old Style GmbH', account = 'DE89370400440532013000', remittance = 'INV-OLD-1'",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payees (channel, account, currency, max_amount_minor, first_batch, first_paid_at, last_paid_at)
         VALUES ('supplier', 'DE89370400440532013000', 'EUR', 700, $1, 'x', 'x')",
    )
    .bind(id)
    .execute(&store.pool)
    .await
    .unwrap();
    assert_eq!(
        store.payments(id).await.unwrap()[0].creditor_name,
        "Old Style GmbH"
    );
    assert_eq!(store.rows_off_current_key().await.unwrap(), 1);
    let done = store.reencrypt(1000, |_| {}).await.unwrap();
    assert_eq!((done.rows, done.payees), (1, 1));
    let p = &store.payments(id).await.unwrap()[0];
    assert_eq!(
        (p.creditor_name.as_str(), p.account.as_str()),
        ("Old Style GmbH", "DE89370400440532013000")
    );
    let left: i64 = sqlx::query(
        "SELECT COUNT(*) FROM payments WHERE creditor_name <> '' OR account <> '' OR remittance IS NOT NULL",
    )
    .fetch_one(&store.pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(left, 0, "plaintext columns emptied");
    let hashed: i64 = sqlx::query("SELECT COUNT(*) FROM payee_lookup WHERE account_hmac = $1")
        .bind(store.keys().unwrap().lookup("DE89370400440532013000"))
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(hashed, 1);
    let old: i64 = sqlx::query("SELECT COUNT(*) FROM payees")
        .fetch_one(&store.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(old, 0);
    drop(dir);
}

async fn a_key_file_other_than_the_stores_own_is_refused(on: On) {
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let mine = store.keys.clone().unwrap();
    store.check_data_key(&mine).await.unwrap();
    store.check_data_key(&mine).await.unwrap();
    let other = crate::vault::DataKeys::generate();
    let e = store.check_data_key(&other).await.unwrap_err();
    assert!(matches!(e, StoreError::KeyMismatch(_)), "{e}");
    assert!(e.to_string().contains("not the one"), "{e}");
}

/// The daemon's other queries — claims, sending, returns, reports, alerts, the archive
/// register, metrics, status — give the same answers on both databases.
async fn the_daemons_queries_answer_the_same(on: On) {
    let Some((_dir, store)) = fresh(on).await else {
        return;
    };
    let claim = store
        .record_claim("payroll", "nov.csv", "c-1-nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let Claim::New(file) = claim else {
        panic!("{claim:?}")
    };
    assert!(matches!(
        store
            .record_claim("payroll", "nov.csv", "c-1-nov.csv", SHA, 10, at(0))
            .await
            .unwrap(),
        Claim::Recovered(..)
    ));
    assert!(matches!(
        store
            .record_claim("payroll", "again.csv", "c-2-again.csv", SHA, 10, at(0))
            .await
            .unwrap(),
        Claim::Duplicate { .. }
    ));
    let id = store
        .create_batch(file.id, "payroll", "icbc", "MSG-D", &[], "paygate", at(1))
        .await
        .unwrap();
    store
        .add_payments(id, "MSG-D", &[payment(2, 700), payment(3, 300)])
        .await
        .unwrap();
    assert_eq!(
        store.finish_validation(id, 2, 0, at(2)).await.unwrap(),
        BatchState::AwaitingApproval
    );
    store
        .transition(
            id,
            BatchState::AwaitingApproval,
            &Event::Approved {
                policy_satisfied: true,
            },
            "li.na",
            at(3),
        )
        .await
        .unwrap();
    store
        .mark_sealed(
            id,
            "/a/s.pgp",
            SHA,
            "ACME_MSG-D.xml.pgp",
            Some(b"sealed bytes"),
            at(4),
        )
        .await
        .unwrap();
    assert_eq!(
        store.sealed_bytes(id).await.unwrap().as_deref(),
        Some(&b"sealed bytes"[..])
    );
    // Several instances: a claim is exclusive while its lease runs, and the upload start is
    // fenced by it.
    let lease = 60_000;
    for (i, h) in [("i-a", "host-a"), ("i-b", "host-b")] {
        store
            .register_instance(i, h, "test", lease, at(5))
            .await
            .unwrap();
    }
    let claim = |who: &'static str, state| {
        let store = store.clone();
        async move { store.claim_batch(id, state, who, lease).await.unwrap() }
    };
    assert!(claim("i-a", BatchState::Sealed).await);
    assert!(!claim("i-b", BatchState::Sealed).await);
    let fenced = store
        .start_upload(id, BatchState::Sealed, "i-b", true, at(5))
        .await;
    assert!(
        matches!(fenced, Err(StoreError::LeaseLost { .. })),
        "{fenced:?}"
    );
    assert!(store.heartbeat("i-a", lease).await.unwrap());
    assert!(store.take_poller("icbc", "i-a", lease).await.unwrap());
    assert!(!store.take_poller("icbc", "i-b", lease).await.unwrap());
    let listed = store.instances(1).await.unwrap();
    let a = listed.iter().find(|i| i.id == "i-a").unwrap();
    assert!(a.alive && a.batches == vec![id], "{a:?}");
    assert_eq!(a.polls, vec!["icbc".to_string()]);
    store
        .start_upload(id, BatchState::Sealed, "i-a", true, at(5))
        .await
        .unwrap();
    // A renewal with a negative lease stands for the time passing: i-a's lease runs out, which
    // frees the batch and the poller for another instance and fences i-a.
    assert!(store.heartbeat("i-a", -1).await.unwrap());
    assert!(!store.instance_alive("i-a").await.unwrap());
    assert_eq!(
        store.heartbeat("i-a", lease).await.unwrap(),
        on == On::Sqlite
    );
    if on == On::Postgres {
        let fenced = store
            .start_upload(id, BatchState::Uploading, "i-a", true, at(5))
            .await;
        assert!(
            matches!(fenced, Err(StoreError::LeaseLost { .. })),
            "{fenced:?}"
        );
        assert!(store.take_poller("icbc", "i-b", lease).await.unwrap());
        assert!(claim("i-b", BatchState::Uploading).await);
        store
            .start_upload(id, BatchState::Uploading, "i-b", true, at(5))
            .await
            .unwrap();
        store.release_batch(id, "i-b").await.unwrap();
    }
    store.instance_stopped("i-a", at(5)).await.unwrap();
    store.instance_stopped("i-b", at(5)).await.unwrap();
    assert!(store.instances(1).await.unwrap().iter().all(|i| !i.alive));
    let history = store.audit_records(Some(id), None, None).await.unwrap();
    assert!(
        history
            .iter()
            .any(|r| r.action == "batch.upload_started" && r.details.ends_with("instance=i-a"))
    );
    store
        .mark_sent(id, "icbc", "uploaded", 1234, at(6))
        .await
        .unwrap();
    assert_eq!(store.payments(id).await.unwrap()[0].state, "sent");
    assert_eq!(
        store.last_contact("icbc").await.unwrap().as_deref(),
        Some("2026-11-30T09:06:00.000000Z")
    );
    assert_eq!(
        store.batches_in(&[BatchState::Sent]).await.unwrap().len(),
        1
    );
    // A return file and its report.
    let (rf, new, state) = store
        .record_return("icbc", "r1.xml.pgp", 99, SHA, "/s/r1", at(7))
        .await
        .unwrap();
    assert!(new && state == "received");
    store
        .set_return_state(
            rf,
            "opened",
            Some("BANKFPR"),
            None,
            Some("/s/r1.xml"),
            at(7),
        )
        .await
        .unwrap();
    let (rep, applied) = store
        .record_report(
            "r1",
            SHA,
            "pain.002",
            Some("R1"),
            Some("MSG-D"),
            Some(id),
            "ok",
            at(8),
        )
        .await
        .unwrap();
    assert!(!applied);
    let s = store
        .transition(
            id,
            BatchState::Sent,
            &Event::Outcome(Outcome::Completed),
            "bank",
            at(9),
        )
        .await
        .unwrap();
    assert_eq!(s, BatchState::Completed);
    store.mark_report_applied(rep, at(9)).await.unwrap();
    // The archive register.
    for (path, batch) in [("/a/1", Some(id)), ("/a/1", Some(id)), ("/a/2", None)] {
        store
            .record_archived(batch, Some("icbc"), "return", "r1.xml", path, SHA, at(9))
            .await
            .unwrap();
    }
    assert_eq!(store.archived_of(id).await.unwrap().len(), 1);
    assert!(store.is_archived("/a/2").await.unwrap());
    // Alerts: raised, repeated (counted), delivered, acknowledged.
    let alert = NewAlert {
        kind: "upload.failing".into(),
        subject: "icbc".into(),
        batch: None,
        severity: "warning".into(),
        summary: "uploads fail".into(),
        action: "check the link".into(),
        recipients: vec!["ops".into()],
    };
    let hour = chrono::Duration::hours(1);
    let a = store
        .raise_alert(&alert, &["webhook:1".into()], hour, at(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .raise_alert(&alert, &["webhook:1".into()], hour, at(11))
            .await
            .unwrap(),
        None
    );
    let due = store.due_deliveries(at(12), 10).await.unwrap();
    assert_eq!((due.len(), due[0].alert.times), (1, 2));
    store
        .delivery_failed(due[0].id, "refused", at(20))
        .await
        .unwrap();
    assert!(store.due_deliveries(at(12), 10).await.unwrap().is_empty());
    store.delivery_done(due[0].id, at(21)).await.unwrap();
    assert_eq!(store.open_alerts().await.unwrap().len(), 1);
    assert!(store.ack_alert(a, "ops", at(22)).await.unwrap());
    assert_eq!(
        store.alert_counts().await.unwrap(),
        vec![("upload.failing".to_string(), 1, 0)]
    );
    // Metrics.
    let m = store.metrics_snapshot().await.unwrap();
    assert_eq!(m.files_received, vec![("payroll".to_string(), 1)]);
    assert_eq!(
        m.sent,
        vec![("payroll".to_string(), "CNY".to_string(), 2, 1000)]
    );
    // Seconds from the upload (minute 6) to the first and the final status (minute 9).
    let [(bank, Some(first), Some(last))] = m.round_trips.as_slice() else {
        panic!("{:?}", m.round_trips)
    };
    assert_eq!(bank, "icbc");
    assert!(
        (first - 180.0).abs() < 0.01 && (last - 180.0).abs() < 0.01,
        "{first} {last}"
    );
    assert_eq!(
        m.audit_length,
        store.verify_audit().await.unwrap().unwrap() as i64
    );
    assert_eq!(
        store.batch_counts().await.unwrap(),
        vec![("completed".to_string(), 1)]
    );
}

/// `paygate store migrate-to`: a SQLite store with batches, payments (sealed), approvals and
/// its audit chain copied into PostgreSQL reads back the same there, verifies to the same head,
/// takes new rows after the copied ids, and a second copy into it is refused.
#[tokio::test]
async fn a_sqlite_store_copied_into_postgres_reads_and_verifies_the_same() {
    let Some((_dir, source)) = fresh(On::Sqlite).await else {
        return;
    };
    let Some(pg) = Db::new(On::Postgres).await else {
        return;
    };
    let keys = source.keys.clone().unwrap();
    let file = source
        .record_file("payroll", "nov.csv", SHA, 10, at(0))
        .await
        .unwrap();
    let payments: Vec<Payment> = (2..1300).map(|r| payment(r, 100 + r as i64)).collect();
    let id = source
        .create_batch(
            file.id,
            "payroll",
            "icbc",
            "MSG-MIG",
            &payments,
            "paygate",
            at(1),
        )
        .await
        .unwrap();
    source
        .transition(
            id,
            BatchState::Received,
            &Event::Validated { errors: 0 },
            "paygate",
            at(2),
        )
        .await
        .unwrap();
    let before = source.batch(id).await.unwrap();
    let before_payments = source.payments(id).await.unwrap();
    let entries = source.verify_audit().await.unwrap().unwrap();

    let target = Store::open(&pg.url())
        .await
        .unwrap()
        .with_data_keys(keys.clone());
    let mut seen = Vec::new();
    let copied = source
        .copy_to(&target, |t, n| seen.push((t.to_string(), n)))
        .await
        .unwrap();
    assert_eq!(copied.audit_entries, entries);
    assert!(
        copied.rows.contains(&("payments", 1298)),
        "{:?}",
        copied.rows
    );
    assert!(seen.iter().any(|(t, _)| t == "audit"));
    assert_eq!(target.verify_audit().await.unwrap(), Ok(entries));
    assert_eq!(target.batch(id).await.unwrap(), before);
    assert_eq!(target.payments(id).await.unwrap(), before_payments);
    // The same key file reads the sealed records there, and is recognised as the store's own.
    target.check_data_key(&keys).await.unwrap();
    // New rows continue after the copied ids; the chain continues from the copied head.
    let f2 = target
        .record_file("payroll", "dec.csv", &SHA.replace('9', "8"), 10, at(3))
        .await
        .unwrap();
    assert!(f2.new && f2.id > file.id);
    let id2 = target
        .create_batch(
            f2.id,
            "payroll",
            "icbc",
            "MSG-MIG-2",
            &[payment(2, 5)],
            "paygate",
            at(4),
        )
        .await
        .unwrap();
    assert!(id2 > id);
    assert_eq!(target.verify_audit().await.unwrap(), Ok(entries + 2));
    // A target that holds anything is refused, and left as it was.
    let again = source.copy_to(&target, |_, _| {}).await.unwrap_err();
    assert!(matches!(again, StoreError::TargetNotEmpty(..)), "{again}");
    assert!(again.to_string().contains("not empty"), "{again}");
    assert_eq!(target.verify_audit().await.unwrap(), Ok(entries + 2));
}

/// Each test above, once on SQLite and once on PostgreSQL.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::On::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::On::Postgres).await
            })*
        }
    };
}

on_both!(
    the_daemons_queries_answer_the_same,
    the_same_content_is_recorded_once_whatever_its_name,
    batches_store_exact_minor_units_and_move_only_by_legal_guarded_transitions,
    audit_trail_is_chained_append_only_and_tampering_is_detected,
    amounts_are_never_stored_as_floating_point,
    the_anchor_file_catches_removed_and_rewritten_entries,
    the_policy_decides_once_and_approvals_follow_roles_as_they_are_now,
    payment_data_is_stored_encrypted_and_survives_a_key_rotation,
    rows_and_payees_written_before_encryption_are_encrypted_when_the_store_opens_with_its_key,
    a_key_file_other_than_the_stores_own_is_refused,
);
