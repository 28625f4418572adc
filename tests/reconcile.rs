//! Reconciliation end to end: a batch stored as the pipeline stores it, its pain.001 made by
//! the real `paygate convert`, and the bank's pain.002 / camt.054 answers imported with the real
//! `paygate reconcile`; statuses, history, batch states and result reports checked.

use chrono::{NaiveDate, TimeZone, Utc};
use paygate::config::Config;
use paygate::model::{BatchState, Event};
use paygate::store::Store;
use paygate::validate::{Rules, validate_table};
use std::path::{Path, PathBuf};
use std::process::Command;

const INPUT: &str = "Beneficiary,IBAN,BIC,Amount,Currency,Remittance,End to End ID\n\
Hartmann GmbH,DE74500400000751057110,COBADEFFXXX,1840.00,EUR,INV 1,E2E-1\n\
Girard SAS,FR1420041010050500013M02606,BNPAFRPP,2375.40,EUR,INV 2,E2E-2\n\
Van Dijk BV,NL91ABNA0417164300,ABNANL2A,99.99,EUR,INV 3,E2E-3\n\
Keller AG,CH9300762011623852957,UBSWCHZH80A,500.00,USD,INV 4,E2E-4\n";

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    config: PathBuf,
    batch: i64,
    pain001: String,
}

fn config_text(dir: &Path) -> String {
    // Result reports are archived encrypted to the archive key.
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (fpr, _, cert) = match std::fs::read_to_string(keys.join("archive.fpr")) {
        Ok(f) => (f, (), keys.join("archive.pub.asc")),
        Err(_) => {
            let (f, _, c) =
                paygate::seal::generate("Audit <audit@acme.example>", &keys, "archive", 1).unwrap();
            std::fs::write(keys.join("archive.fpr"), f.to_hex()).unwrap();
            (f.to_hex(), (), c)
        }
    };
    format!(
        r#"
[archive]
cert = "{}"
fingerprint = "{fpr}"
[paygate]
data_dir = "data"
[company]
name = "Acme"
country = "CN"
[company.accounts.eur]
iban = "DE89370400440532013000"
bic = "COBADEFFXXX"
currency = "EUR"
[banks.bank]
name = "Bank"
format = "pain.001.001.09"
currencies = ["EUR", "USD"]
require_bic = true
[channels.supplier]
kind = "supplier"
bank = "bank"
debtor_account = "eur"
folder = "{}"
report_language = "en"
"#,
        cert.display(),
        dir.join("supplier").display()
    )
}

fn paygate(cfg: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_paygate"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// A batch recorded, approved, sent — as the pipeline leaves it — with MsgId `msg`.
async fn setup(msg: &str) -> Env {
    setup_with(msg, INPUT).await
}

/// Like `setup`, with another input file.
async fn setup_with(msg: &str, input_text: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("supplier/inbox")).unwrap();
    let config = dir.join("paygate.toml");
    std::fs::write(&config, config_text(&dir)).unwrap();
    let input = dir.join("supplier/inbox/run-2026-11.csv");
    std::fs::write(&input, input_text).unwrap();
    let cfg = Config::load(&config).unwrap();
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let rules = Rules::new(&cfg, "supplier", today).unwrap();
    let ch = &cfg.channels["supplier"];
    let mut payments = vec![];
    let report = validate_table(
        &mut paygate::intake::open(&input, ch).unwrap(),
        &rules,
        ch,
        |p| payments.push(p),
    )
    .unwrap();
    assert_eq!(report.errors(), 0, "{:?}", report.findings);
    std::fs::create_dir_all(cfg.data_dir()).unwrap();
    let store = Store::open_configured(&cfg).await.unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 30, 9, 0, 0).unwrap();
    let f = store
        .record_file("supplier", "run-2026-11.csv", &"ab".repeat(32), 10, at)
        .await
        .unwrap();
    let batch = store
        .create_batch(f.id, "supplier", "bank", msg, &payments, "paygate", at)
        .await
        .unwrap();
    let mut s = BatchState::Received;
    for ev in [
        Event::Validated { errors: 0 },
        Event::Approved {
            policy_satisfied: true,
        },
        Event::Sealed,
        Event::UploadStarted,
        Event::Uploaded,
    ] {
        s = store.transition(batch, s, &ev, "test", at).await.unwrap();
    }
    store.mark_payments_sent(batch, at).await.unwrap();
    store.close().await;
    // The bank file, as paygate renders it for this batch.
    let out = dir.join("pain001.xml");
    let (code, text) = paygate(
        &config,
        &[
            "convert",
            input.to_str().unwrap(),
            "--channel",
            "supplier",
            "--msg-id",
            msg,
            "--as-of",
            "2026-11-30",
            "--created",
            "2026-11-30T09:00:00+01:00",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    let pain001 = std::fs::read_to_string(&out).unwrap();
    Env {
        _tmp: tmp,
        dir,
        config,
        batch,
        pain001,
    }
}

impl Env {
    fn reconcile(&self, name: &str, xml: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, xml).unwrap();
        let (code, out) = paygate(&self.config, &["reconcile", p.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}");
        out
    }

    fn show(&self) -> String {
        let (code, out) = paygate(&self.config, &["batch", "show", &self.batch.to_string()]);
        assert_eq!(code, 0, "{out}");
        out
    }

    fn state_of(&self, e2e: &str) -> String {
        let (_, out) = paygate(
            &self.config,
            &["batch", "show", &self.batch.to_string(), "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["payments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["end_to_end_id"] == e2e)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn batch_state(&self) -> String {
        let (_, out) = paygate(
            &self.config,
            &["batch", "show", &self.batch.to_string(), "--json"],
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["batch"]["state"].as_str().unwrap().to_string()
    }
}

fn pain002(orig: &str, id: &str, group: &str, blocks: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.03"><CstmrPmtStsRpt>
<GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-12-01T08:00:00</CreDtTm></GrpHdr>
<OrgnlGrpInfAndSts><OrgnlMsgId>{orig}</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>{group}</OrgnlGrpInfAndSts>
{blocks}</CstmrPmtStsRpt></Document>"#
    )
}

fn tx(e2e: &str, status: &str, reason: &str) -> String {
    let r = if reason.is_empty() {
        String::new()
    } else {
        format!(
            "<StsRsnInf><Rsn><Cd>{reason}</Cd></Rsn><AddtlInf>bank says {reason}</AddtlInf></StsRsnInf>"
        )
    };
    format!(
        "<TxInfAndSts><StsId>S-{e2e}</StsId><OrgnlEndToEndId>{e2e}</OrgnlEndToEndId><TxSts>{status}</TxSts>{r}</TxInfAndSts>"
    )
}

fn camt054(entries: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
<GrpHdr><MsgId>NTF-1</MsgId><CreDtTm>2026-12-01T18:00:00</CreDtTm></GrpHdr>
<Ntfctn><Id>N1</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>{entries}</Ntfctn>
</BkToCstmrDbtCdtNtfctn></Document>"#
    )
}

fn entry(e2e: &str, amount: &str, ccy: &str, ret: Option<&str>) -> String {
    let (ind, rtr) = match ret {
        Some(code) => (
            "CRDT",
            format!("<RtrInf><Rsn><Cd>{code}</Cd></Rsn></RtrInf>"),
        ),
        None => ("DBIT", String::new()),
    };
    format!(
        "<Ntry><Amt Ccy=\"{ccy}\">{amount}</Amt><CdtDbtInd>{ind}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-01</Dt></BookgDt><ValDt><Dt>2026-12-01</Dt></ValDt><AcctSvcrRef>REF-{e2e}</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy=\"{ccy}\">{amount}</Amt><CdtDbtInd>{ind}</CdtDbtInd>{rtr}</TxDtls></NtryDtls></Ntry>"
    )
}

#[tokio::test]
async fn full_acceptance_then_settlement_by_camt054_writes_the_result_report() {
    let env = setup("MSG-FULL").await;
    assert!(
        env.pain001.contains("<PmtInfId>MSG-FULL-1</PmtInfId>")
            && env.pain001.contains("<PmtInfId>MSG-FULL-2</PmtInfId>")
    );
    let out = env.reconcile(
        "p1.xml",
        &pain002("MSG-FULL", "R1", "<GrpSts>ACCP</GrpSts>", ""),
    );
    assert!(out.contains("now accepted"), "{out}");
    for e in ["E2E-1", "E2E-2", "E2E-3", "E2E-4"] {
        assert_eq!(env.state_of(e), "accepted");
    }
    let entries = [
        entry("E2E-1", "1840.00", "EUR", None),
        entry("E2E-2", "2375.40", "EUR", None),
        entry("E2E-3", "99.99", "EUR", None),
        entry("E2E-4", "500.00", "USD", None),
    ]
    .concat();
    let out = env.reconcile("n1.xml", &camt054(&entries));
    assert!(out.contains("now completed"), "{out}");
    assert!(
        out.contains("run-2026-11.batch1.result.csv")
            && out.contains("run-2026-11.batch1.result.xlsx"),
        "{out}"
    );
    let csv = std::fs::read_to_string(
        env.dir
            .join("supplier/results/run-2026-11.batch1.result.csv"),
    )
    .unwrap();
    assert!(
        csv.starts_with("\u{feff}Row,Payee,Account,Amount,Currency,Status"),
        "{csv}"
    );
    assert!(
        csv.contains("2,Hartmann GmbH,DE74**************7110,1840.00,EUR,paid,,,REF-E2E-1"),
        "{csv}"
    );
    assert!(
        csv.contains("paid: 3, 4315.39 EUR") && csv.contains("paid: 1, 500.00 USD"),
        "{csv}"
    );
    assert!(
        std::fs::metadata(
            env.dir
                .join("supplier/results/run-2026-11.batch1.result.xlsx")
        )
        .unwrap()
        .len()
            > 1000
    );
    // The same notification again changes nothing.
    let out = env.reconcile("n1-again.xml", &camt054(&entries));
    assert!(out.contains("seen before"), "{out}");
}

#[tokio::test]
async fn partial_rejection_at_transaction_level() {
    let env = setup("MSG-PART").await;
    let block = format!(
        "<OrgnlPmtInfAndSts><OrgnlPmtInfId>MSG-PART-1</OrgnlPmtInfId><PmtInfSts>PART</PmtInfSts>{}{}</OrgnlPmtInfAndSts>",
        tx("E2E-1", "ACCP", ""),
        tx("E2E-2", "RJCT", "AC01")
    );
    let out = env.reconcile(
        "p.xml",
        &pain002("MSG-PART", "R2", "<GrpSts>PART</GrpSts>", &block),
    );
    assert!(
        out.contains("E2E-2: sent → rejected (transaction RJCT AC01)"),
        "{out}"
    );
    assert_eq!(env.state_of("E2E-1"), "accepted");
    assert_eq!(env.state_of("E2E-2"), "rejected");
    assert_eq!(env.state_of("E2E-3"), "sent");
    assert_eq!(env.batch_state(), "partially_rejected");
    let show = env.show();
    assert!(show.contains("AC01 the account number is wrong"), "{show}");
}

#[tokio::test]
async fn a_rejected_payment_information_block_rejects_only_its_payments() {
    let env = setup("MSG-BLK").await;
    // Block 2 is the USD block (blocks are ordered by date, then currency).
    let block = "<OrgnlPmtInfAndSts><OrgnlPmtInfId>MSG-BLK-2</OrgnlPmtInfId><PmtInfSts>RJCT</PmtInfSts><StsRsnInf><Rsn><Cd>AM03</Cd></Rsn></StsRsnInf></OrgnlPmtInfAndSts>";
    env.reconcile("p.xml", &pain002("MSG-BLK", "R3", "", block));
    assert_eq!(env.state_of("E2E-4"), "rejected");
    for e in ["E2E-1", "E2E-2", "E2E-3"] {
        assert_eq!(env.state_of(e), "sent");
    }
    assert_eq!(env.batch_state(), "partially_rejected");
}

#[tokio::test]
async fn a_whole_file_rejection() {
    let env = setup("MSG-REJ").await;
    let out = env.reconcile(
        "p.xml",
        &pain002(
            "MSG-REJ",
            "R4",
            "<GrpSts>RJCT</GrpSts><StsRsnInf><Rsn><Cd>FF01</Cd></Rsn></StsRsnInf>",
            "",
        ),
    );
    assert!(out.contains("now rejected"), "{out}");
    assert_eq!(env.batch_state(), "rejected");
    let csv = std::fs::read_to_string(
        env.dir
            .join("supplier/results/run-2026-11.batch1.result.csv"),
    )
    .unwrap();
    assert!(
        csv.contains("rejected,FF01,the file format is invalid"),
        "{csv}"
    );
    assert!(csv.contains("not paid: 3, 4315.39 EUR"), "{csv}");
}

#[tokio::test]
async fn a_late_rejection_after_acceptance_and_a_duplicate_rejection_that_changes_nothing() {
    let env = setup("MSG-LATE").await;
    env.reconcile(
        "p1.xml",
        &pain002("MSG-LATE", "R5", "<GrpSts>ACCP</GrpSts>", ""),
    );
    // A resend after a crash: the bank rejects the duplicate MsgId. The acceptance stands.
    let out = env.reconcile(
        "p2.xml",
        &pain002(
            "MSG-LATE",
            "R6",
            "<GrpSts>RJCT</GrpSts><StsRsnInf><Rsn><Cd>DU01</Cd></Rsn></StsRsnInf>",
            "",
        ),
    );
    assert!(out.contains("NOT applied"), "{out}");
    for e in ["E2E-1", "E2E-2", "E2E-3", "E2E-4"] {
        assert_eq!(env.state_of(e), "accepted");
    }
    // Days later the bank rejects one payment after all (insufficient funds).
    let block = format!(
        "<OrgnlPmtInfAndSts><OrgnlPmtInfId>MSG-LATE-1</OrgnlPmtInfId>{}</OrgnlPmtInfAndSts>",
        tx("E2E-3", "RJCT", "AM04")
    );
    env.reconcile("p3.xml", &pain002("MSG-LATE", "R7", "", &block));
    assert_eq!(env.state_of("E2E-3"), "rejected");
    let show = env.show();
    // The history keeps both words.
    assert!(show.contains("sent → accepted by group ACCP"), "{show}");
    assert!(
        show.contains("accepted → rejected by transaction RJCT") && show.contains("(AM04)"),
        "{show}"
    );
}

#[tokio::test]
async fn a_return_after_settlement_and_an_unmatched_report() {
    let env = setup("MSG-RET").await;
    let entries = [
        entry("E2E-1", "1840.00", "EUR", None),
        entry("E2E-2", "2375.40", "EUR", None),
        entry("E2E-3", "99.99", "EUR", None),
        entry("E2E-4", "500.00", "USD", None),
    ]
    .concat();
    env.reconcile("n.xml", &camt054(&entries));
    assert_eq!(env.batch_state(), "completed");
    env.reconcile(
        "r.xml",
        &camt054(&entry("E2E-2", "2375.40", "EUR", Some("AC04"))),
    );
    assert_eq!(env.state_of("E2E-2"), "returned");
    assert_eq!(env.batch_state(), "partially_rejected");
    let csv = std::fs::read_to_string(
        env.dir
            .join("supplier/results/run-2026-11.batch1.result.csv"),
    )
    .unwrap();
    assert!(csv.contains("returned,AC04,the account is closed"), "{csv}");
    // A report for a batch paygate never sent is kept and shown.
    let out = env.reconcile(
        "x.xml",
        &pain002("SOMEONE-ELSE", "R9", "<GrpSts>ACCP</GrpSts>", ""),
    );
    assert!(out.contains("matches no batch"), "{out}");
    let (code, list) = paygate(&env.config, &["batches"]);
    assert_eq!(code, 0);
    assert!(
        list.contains("reports that match no batch")
            && list.contains("original message SOMEONE-ELSE"),
        "{list}"
    );
    assert!(
        list.contains("MSG-RET") && list.contains("partially_rejected"),
        "{list}"
    );
}

#[tokio::test]
async fn a_report_recorded_but_not_applied_before_a_crash_is_applied_next_time() {
    let env = setup("MSG-CRASH").await;
    let xml = pain002("MSG-CRASH", "R10", "<GrpSts>ACCP</GrpSts>", "");
    // The previous process recorded the report and died before applying it.
    let cfg = Config::load(&env.config).unwrap();
    let store = Store::open_configured(&cfg).await.unwrap();
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(xml.as_bytes()));
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
    let (_, applied) = store
        .record_report(
            "p.xml",
            &sha,
            "pain.002.001.03",
            Some("R10"),
            Some("MSG-CRASH"),
            Some(env.batch),
            "-",
            at,
        )
        .await
        .unwrap();
    assert!(!applied);
    store.close().await;
    let out = env.reconcile("p.xml", &xml);
    assert!(!out.contains("seen before"), "{out}");
    assert!(out.contains("now accepted"), "{out}");
    assert_eq!(env.state_of("E2E-1"), "accepted");
    // Applied now: a third time is a no-op.
    let out = env.reconcile("p-again.xml", &xml);
    assert!(out.contains("seen before"), "{out}");
}

#[tokio::test]
async fn payments_without_end_to_end_ids_are_matched_by_the_ids_paygate_gave_them() {
    // No End to End ID column: paygate generates the ids, in the bank file and in the store alike.
    let input: String = INPUT
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string() + "\n")
        .collect();
    let env = setup_with("MSG-NOID", &input).await;
    let ids: Vec<&str> = env
        .pain001
        .split("<EndToEndId>")
        .skip(1)
        .map(|s| s.split('<').next().unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "{}", env.pain001);
    assert!(ids.iter().all(|i| i.starts_with("MSG-NOID-")), "{ids:?}");
    let block = format!(
        "<OrgnlPmtInfAndSts><OrgnlPmtInfId>MSG-NOID-1</OrgnlPmtInfId>{}</OrgnlPmtInfAndSts>",
        tx(ids[1], "RJCT", "AC01")
    );
    let out = env.reconcile("p.xml", &pain002("MSG-NOID", "R11", "", &block));
    assert!(
        out.contains(&format!("{}: sent → rejected", ids[1])),
        "{out}"
    );
    assert_eq!(env.state_of(ids[1]), "rejected");
}

#[tokio::test]
async fn a_batch_booking_settles_its_block_and_a_reversal_returns_a_payment() {
    let env = setup("MSG-BTCH").await;
    // One booked debit for the whole EUR block, referenced by its payment-information id only.
    let batch_entry = "<Ntry><Amt Ccy=\"EUR\">4315.39</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-01</Dt></BookgDt><AcctSvcrRef>BOOK-1</AcctSvcrRef><NtryDtls><Btch><PmtInfId>MSG-BTCH-1</PmtInfId><NbOfTxs>3</NbOfTxs></Btch></NtryDtls></Ntry>";
    let out = env.reconcile("b.xml", &camt054(batch_entry));
    assert!(out.contains("batch "), "{out}");
    for e in ["E2E-1", "E2E-2", "E2E-3"] {
        assert_eq!(env.state_of(e), "settled");
    }
    assert_eq!(env.state_of("E2E-4"), "sent");
    // The bank reverses one debit: the payment is returned.
    let reversal = "<Ntry><Amt Ccy=\"EUR\">99.99</Amt><CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-12-02</Dt></BookgDt><AcctSvcrRef>REV-1</AcctSvcrRef><NtryDtls><TxDtls><Refs><EndToEndId>E2E-3</EndToEndId></Refs></TxDtls></NtryDtls></Ntry>";
    env.reconcile("r.xml", &camt054(reversal));
    assert_eq!(env.state_of("E2E-3"), "returned");
}
