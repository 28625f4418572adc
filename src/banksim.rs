//! The bank simulator (`paygate bank-sim`): the bank's side of a transport, for joint testing
//! with a bank (系统联调), the demo and our own tests. It watches the folder where the company
//! uploads (a folder transport's `upload_dir`, or the directory an SFTP server serves), takes
//! each complete file away, decrypts it with the bank key and verifies the company's signature,
//! checks what a bank checks (a pain.001, its counts and control sums, a MsgId seen before →
//! DU01), and answers with signed and encrypted files: a pain.002 with ACTC at once, then per
//! payment ACCP or RJCT by its rules (unknown account → AC01, amount over a limit → AM02, a
//! seeded share → AC04), then a camt.054 booking the accepted ones.
//!
//! Deterministic for a given configuration and seed. Every file received is logged in
//! `state_dir/received.log` (name, SHA-256 of the sealed and of the plain bytes, MsgId,
//! verdict), so that tests can count what the bank really got.

use crate::config::{BankPgp, CompanyPgp, Compression};
use crate::seal::Keyring;
use rust_decimal::Decimal;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Where the company's files arrive.
    pub inbox: PathBuf,
    /// Where the bank's answers go (the company's download folder).
    pub outbox: PathBuf,
    /// The simulator's own files: what it received, took away and will answer.
    pub state_dir: PathBuf,
    #[serde(default)]
    pub seed: u64,
    /// Between the acknowledgement, the payment statuses and the booking.
    #[serde(default = "default_delay")]
    pub delay_ms: u64,
    /// Absent: files are exchanged unencrypted (a bank profile with `encryption = "none"`).
    #[serde(default)]
    pub keys: Option<SimKeys>,
    #[serde(default)]
    pub rules: SimRules,
}

fn default_delay() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimKeys {
    pub bank_secret_key: PathBuf,
    pub bank_fingerprint: String,
    pub company_cert: PathBuf,
    pub company_fingerprint: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SimRules {
    /// Creditor accounts that do not exist at the bank: rejected with AC01.
    #[serde(default)]
    pub reject_accounts: Vec<String>,
    /// Payments above this amount are rejected with AM02.
    #[serde(default)]
    pub max_amount: Option<Decimal>,
    /// This many payments in a thousand (chosen by the seed) are rejected with AC04.
    #[serde(default)]
    pub reject_per_mille: u32,
    /// Skip the camt.054 bookings (payments stay accepted, not settled).
    #[serde(default)]
    pub no_booking: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}")]
    Keys(String),
    #[error("{0}: {1}")]
    Config(PathBuf, String),
}

fn io(p: &Path) -> impl FnOnce(std::io::Error) -> SimError + '_ {
    move |e| SimError::Io(p.to_path_buf(), e)
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut c: SimConfig =
            toml::from_str(&text).map_err(|e| SimError::Config(path.into(), e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut c.inbox);
        abs(&mut c.outbox);
        abs(&mut c.state_dir);
        if let Some(k) = &mut c.keys {
            abs(&mut k.bank_secret_key);
            abs(&mut k.company_cert);
        }
        Ok(c)
    }
}

/// One payment as the bank read it.
#[derive(Debug, Clone, Default)]
struct Tx {
    pmt_inf_id: String,
    end_to_end_id: String,
    amount: String,
    currency: String,
    account: String,
}

/// What the bank read from a pain.001.
#[derive(Debug, Clone, Default)]
struct Pain001 {
    namespace: String,
    msg_id: String,
    nb_of_txs: String,
    ctrl_sum: String,
    debtor_account: String,
    txs: Vec<Tx>,
}

/// One line of `received.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub name: String,
    pub sealed_sha256: String,
    pub plain_sha256: String,
    pub msg_id: String,
    pub verdict: String,
}

/// Reads `state_dir/received.log`.
pub fn received(state_dir: &Path) -> Vec<Received> {
    std::fs::read_to_string(state_dir.join("received.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let p: Vec<&str> = l.splitn(6, ' ').collect();
            (p.len() == 6).then(|| Received {
                name: p[1].into(),
                sealed_sha256: p[2].into(),
                plain_sha256: p[3].into(),
                msg_id: p[4].into(),
                verdict: p[5].into(),
            })
        })
        .collect()
}

pub struct Simulator {
    cfg: SimConfig,
    keyring: Option<Keyring>,
    /// MsgId → SHA-256 of the plain file first received with it.
    seen: HashMap<String, String>,
    seq: u64,
}

/// What one round did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    Received {
        name: String,
        msg_id: String,
        payments: usize,
    },
    Duplicate {
        name: String,
        msg_id: String,
        identical: bool,
    },
    Refused {
        name: String,
        reason: String,
    },
    Answered {
        name: String,
    },
}

impl std::fmt::Display for SimEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimEvent::Received {
                name,
                msg_id,
                payments,
            } => {
                write!(
                    f,
                    "bank: received {name} (MsgId {msg_id}, {payments} payments)"
                )
            }
            SimEvent::Duplicate {
                name,
                msg_id,
                identical,
            } => write!(
                f,
                "bank: {name} repeats MsgId {msg_id} ({}): answered DU01",
                if *identical {
                    "same content"
                } else {
                    "DIFFERENT content"
                }
            ),
            SimEvent::Refused { name, reason } => write!(f, "bank: refused {name}: {reason}"),
            SimEvent::Answered { name } => write!(f, "bank: answered {name}"),
        }
    }
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Result<Simulator, SimError> {
        for d in [
            &cfg.inbox,
            &cfg.outbox,
            &cfg.state_dir,
            &cfg.state_dir.join("pending"),
            &cfg.state_dir.join("taken"),
        ] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        let keyring = match &cfg.keys {
            None => None,
            Some(k) => {
                let me = CompanyPgp {
                    secret_key: k.bank_secret_key.clone(),
                    fingerprint: k.bank_fingerprint.clone(),
                    passphrase_file: None,
                };
                let them = BankPgp {
                    keys: vec![k.company_cert.clone()],
                    fingerprints: vec![k.company_fingerprint.clone()],
                    armor: true,
                    compression: Compression::Zip,
                    encrypt_to_self: false,
                    require_signature: true,
                    expiry_warning_days: 30,
                };
                let (kr, _) = Keyring::load(
                    &me,
                    &k.bank_secret_key,
                    None,
                    &them,
                    std::slice::from_ref(&k.company_cert),
                    SystemTime::now(),
                )
                .map_err(|e| SimError::Keys(e.to_string()))?;
                Some(kr)
            }
        };
        let seen = received(&cfg.state_dir)
            .into_iter()
            .filter(|r| r.msg_id != "-")
            .map(|r| (r.msg_id, r.plain_sha256))
            .collect();
        Ok(Simulator {
            cfg,
            keyring,
            seen,
            seq: 0,
        })
    }

    /// One round: takes every complete file in the inbox, and releases the answers that are
    /// due.
    pub fn step(&mut self) -> Result<Vec<SimEvent>, SimError> {
        let mut events = Vec::new();
        let inbox = self.cfg.inbox.clone();
        let mut names: Vec<String> = std::fs::read_dir(&inbox)
            .map_err(io(&inbox))?
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.') && !n.ends_with(".part"))
            .collect();
        names.sort();
        for name in names {
            events.push(self.take(&name)?);
        }
        events.extend(self.release()?);
        Ok(events)
    }

    fn take(&mut self, name: &str) -> Result<SimEvent, SimError> {
        let path = self.cfg.inbox.join(name);
        let sealed = std::fs::read(&path).map_err(io(&path))?;
        // The bank takes the file away (as banks' servers do), keeping its copy.
        self.seq += 1;
        let taken =
            self.cfg
                .state_dir
                .join("taken")
                .join(format!("{name}.{}.{}", now_ms(), self.seq));
        std::fs::rename(&path, &taken).map_err(io(&path))?;
        let sealed_sha = hex::encode(Sha256::digest(&sealed));
        let plain = match &self.keyring {
            None => Ok(sealed.clone()),
            Some(kr) => {
                let mut out = Vec::new();
                kr.open(&mut sealed.as_slice(), &mut out)
                    .map(|_| out)
                    .map_err(|e| e.to_string())
            }
        };
        let plain = match plain {
            Ok(p) => p,
            Err(reason) => {
                self.log(name, &sealed_sha, "-", "-", &format!("refused: {reason}"))?;
                return Ok(SimEvent::Refused {
                    name: name.into(),
                    reason,
                });
            }
        };
        let plain_sha = hex::encode(Sha256::digest(&plain));
        let doc = match read_pain001(&plain) {
            Ok(d) => d,
            Err(reason) => {
                self.log(
                    name,
                    &sealed_sha,
                    &plain_sha,
                    "-",
                    &format!("refused: {reason}"),
                )?;
                self.answer_group(name, &Pain001::default(), "RJCT", Some("FF01"), 0)?;
                return Ok(SimEvent::Refused {
                    name: name.into(),
                    reason,
                });
            }
        };
        if let Some(first) = self.seen.get(&doc.msg_id) {
            let identical = *first == plain_sha;
            self.log(
                name,
                &sealed_sha,
                &plain_sha,
                &doc.msg_id,
                if identical {
                    "duplicate-identical"
                } else {
                    "duplicate-different"
                },
            )?;
            self.answer_group(name, &doc, "RJCT", Some("DU01"), 0)?;
            return Ok(SimEvent::Duplicate {
                name: name.into(),
                msg_id: doc.msg_id,
                identical,
            });
        }
        self.seen.insert(doc.msg_id.clone(), plain_sha.clone());
        // What a bank checks before it accepts a file.
        let count_ok = doc.nb_of_txs.parse::<usize>().ok() == Some(doc.txs.len());
        let sum: Decimal = doc
            .txs
            .iter()
            .filter_map(|t| t.amount.parse::<Decimal>().ok())
            .sum();
        let sum_ok = doc.ctrl_sum.is_empty() || doc.ctrl_sum.parse::<Decimal>().ok() == Some(sum);
        let verdict = if !count_ok {
            "rejected AM18"
        } else if !sum_ok {
            "rejected AM10"
        } else {
            "accepted"
        };
        self.log(name, &sealed_sha, &plain_sha, &doc.msg_id, verdict)?;
        if !count_ok || !sum_ok {
            let code = if count_ok { "AM10" } else { "AM18" };
            self.answer_group(name, &doc, "RJCT", Some(code), 0)?;
        } else {
            self.answer_group(name, &doc, "ACTC", None, 0)?;
            self.answer_payments(name, &doc)?;
        }
        Ok(SimEvent::Received {
            name: name.into(),
            msg_id: doc.msg_id,
            payments: doc.txs.len(),
        })
    }

    fn log(
        &self,
        name: &str,
        sealed: &str,
        plain: &str,
        msg_id: &str,
        verdict: &str,
    ) -> Result<(), SimError> {
        let p = self.cfg.state_dir.join("received.log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .map_err(io(&p))?;
        let name = name.replace(' ', "_");
        writeln!(f, "{} {name} {sealed} {plain} {msg_id} {verdict}", now_ms()).map_err(io(&p))?;
        f.sync_data().map_err(io(&p))
    }

    /// Decides each payment by the rules: deterministic for the seed.
    fn decide(&self, t: &Tx) -> Option<&'static str> {
        let account = t.account.replace(' ', "");
        if self
            .cfg
            .rules
            .reject_accounts
            .iter()
            .any(|a| a.replace(' ', "") == account)
        {
            return Some("AC01");
        }
        if let (Some(max), Ok(a)) = (self.cfg.rules.max_amount, t.amount.parse::<Decimal>())
            && a > max
        {
            return Some("AM02");
        }
        if self.cfg.rules.reject_per_mille > 0 {
            let h = Sha256::digest(format!("{}:{}", self.cfg.seed, t.end_to_end_id));
            let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 1000;
            if n < self.cfg.rules.reject_per_mille {
                return Some("AC04");
            }
        }
        None
    }

    fn answer_group(
        &mut self,
        name: &str,
        doc: &Pain001,
        status: &str,
        reason: Option<&str>,
        step: u32,
    ) -> Result<(), SimError> {
        let rsn = reason.map_or(String::new(), |r| {
            format!("<StsRsnInf><Rsn><Cd>{r}</Cd></Rsn></StsRsnInf>")
        });
        let xml = pain002(
            &format!("SIM{}-{}-{step}", self.cfg.seed, short(&doc.msg_id)),
            &doc.msg_id,
            &doc.namespace,
            &format!("<GrpSts>{status}</GrpSts>{rsn}"),
            "",
        );
        self.schedule(name, step, &format!("pain002-{step}"), xml.as_bytes())
    }

    fn answer_payments(&mut self, name: &str, doc: &Pain001) -> Result<(), SimError> {
        let mut blocks: BTreeMap<&str, String> = BTreeMap::new();
        let mut accepted = Vec::new();
        let mut rejected = 0usize;
        for t in &doc.txs {
            let (sts, rsn) = match self.decide(t) {
                Some(code) => {
                    rejected += 1;
                    (
                        "RJCT",
                        format!("<StsRsnInf><Rsn><Cd>{code}</Cd></Rsn></StsRsnInf>"),
                    )
                }
                None => {
                    accepted.push(t);
                    ("ACCP", String::new())
                }
            };
            blocks.entry(&t.pmt_inf_id).or_default().push_str(&format!(
                "<TxInfAndSts><OrgnlEndToEndId>{}</OrgnlEndToEndId><TxSts>{sts}</TxSts>{rsn}</TxInfAndSts>",
                esc(&t.end_to_end_id)
            ));
        }
        let group = if rejected == 0 {
            "ACCP"
        } else if accepted.is_empty() {
            "RJCT"
        } else {
            "PART"
        };
        let body: String = blocks
            .iter()
            .map(|(id, txs)| {
                format!(
                    "<OrgnlPmtInfAndSts><OrgnlPmtInfId>{}</OrgnlPmtInfId>{txs}</OrgnlPmtInfAndSts>",
                    esc(id)
                )
            })
            .collect();
        let xml = pain002(
            &format!("SIM{}-{}-1", self.cfg.seed, short(&doc.msg_id)),
            &doc.msg_id,
            &doc.namespace,
            &format!("<GrpSts>{group}</GrpSts>"),
            &body,
        );
        self.schedule(name, 1, "pain002-1", xml.as_bytes())?;
        if self.cfg.rules.no_booking || accepted.is_empty() {
            return Ok(());
        }
        let today = chrono::Utc::now().format("%Y-%m-%d");
        let entries: String = accepted
            .iter()
            .map(|t| {
                let e2e = esc(&t.end_to_end_id);
                format!(
                    "<Ntry><Amt Ccy=\"{ccy}\">{amt}</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>{today}</Dt></BookgDt><ValDt><Dt>{today}</Dt></ValDt><AcctSvcrRef>SIM-{e2e}</AcctSvcrRef><NtryDtls><TxDtls><Refs><MsgId>{msg}</MsgId><PmtInfId>{pmt}</PmtInfId><EndToEndId>{e2e}</EndToEndId></Refs><Amt Ccy=\"{ccy}\">{amt}</Amt><CdtDbtInd>DBIT</CdtDbtInd></TxDtls></NtryDtls></Ntry>",
                    ccy = esc(&t.currency),
                    amt = esc(&t.amount),
                    msg = esc(&doc.msg_id),
                    pmt = esc(&t.pmt_inf_id),
                )
            })
            .collect();
        let acct = if doc
            .debtor_account
            .chars()
            .take(2)
            .all(|c| c.is_ascii_uppercase())
            && doc.debtor_account.len() > 14
        {
            format!("<IBAN>{}</IBAN>", esc(&doc.debtor_account))
        } else {
            format!("<Othr><Id>{}</Id></Othr>", esc(&doc.debtor_account))
        };
        let xml = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>SIM{seed}-{m}-2</MsgId><CreDtTm>{now}</CreDtTm></GrpHdr><Ntfctn><Id>SIM{seed}-{m}-N</Id><CreDtTm>{now}</CreDtTm><Acct><Id>{acct}</Id></Acct>{entries}</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>
"#,
            seed = self.cfg.seed,
            m = short(&doc.msg_id),
            now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S"),
        );
        self.schedule(name, 2, "camt054", xml.as_bytes())
    }

    /// Seals an answer and keeps it in `pending/` until it is due.
    fn schedule(&mut self, name: &str, step: u32, kind: &str, xml: &[u8]) -> Result<(), SimError> {
        let bytes = match &self.keyring {
            None => xml.to_vec(),
            Some(kr) => {
                let mut out = Vec::new();
                kr.seal(&mut &xml[..], &mut out)
                    .map_err(|e| SimError::Keys(e.to_string()))?;
                out
            }
        };
        let due = now_ms() + u128::from(step) * u128::from(self.cfg.delay_ms);
        self.seq += 1;
        let stem = name
            .split('.')
            .next()
            .unwrap_or(name)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>();
        let ext = if self.keyring.is_some() {
            "xml.pgp"
        } else {
            "xml"
        };
        let out_name = format!("{kind}_{stem}_{}_{}.{ext}", now_ms(), self.seq);
        let pending = self.cfg.state_dir.join("pending");
        let p = pending.join(format!("{due:016}-{out_name}"));
        let tmp = pending.join(format!(".{out_name}.tmp"));
        std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))?;
        Ok(())
    }

    /// Moves the answers that are due to the outbox (through `NAME.part`, so that the company
    /// never reads half a file).
    fn release(&mut self) -> Result<Vec<SimEvent>, SimError> {
        let pending = self.cfg.state_dir.join("pending");
        let now = now_ms();
        let mut names: Vec<String> = std::fs::read_dir(&pending)
            .map_err(io(&pending))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        let mut out = Vec::new();
        for n in names {
            let Some((due, out_name)) = n.split_once('-') else {
                continue;
            };
            if due.parse::<u128>().map(|d| d > now).unwrap_or(false) {
                continue;
            }
            let from = pending.join(&n);
            let part = self.cfg.outbox.join(format!("{out_name}.part"));
            std::fs::copy(&from, &part).map_err(io(&part))?;
            std::fs::rename(&part, self.cfg.outbox.join(out_name)).map_err(io(&part))?;
            std::fs::remove_file(&from).map_err(io(&from))?;
            out.push(SimEvent::Answered {
                name: out_name.to_string(),
            });
        }
        Ok(out)
    }

    /// Runs rounds every `tick` until `stop` says so.
    pub fn run(
        &mut self,
        tick: Duration,
        stop: &dyn Fn() -> bool,
        on: &mut dyn FnMut(&SimEvent),
    ) -> Result<(), SimError> {
        while !stop() {
            for e in self.step()? {
                on(&e);
            }
            std::thread::sleep(tick);
        }
        Ok(())
    }
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn short(msg_id: &str) -> String {
    msg_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect::<String>()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn pain002(id: &str, orig: &str, pain001_ns: &str, group: &str, blocks: &str) -> String {
    let orig_name = pain001_ns
        .rsplit(':')
        .next()
        .filter(|n| n.starts_with("pain.001"))
        .unwrap_or("pain.001.001.09");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt><GrpHdr><MsgId>{id}</MsgId><CreDtTm>{now}</CreDtTm></GrpHdr><OrgnlGrpInfAndSts><OrgnlMsgId>{orig}</OrgnlMsgId><OrgnlMsgNmId>{orig_name}</OrgnlMsgNmId>{group}</OrgnlGrpInfAndSts>{blocks}</CstmrPmtStsRpt></Document>
"#,
        now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S"),
        orig = esc(if orig.is_empty() { "UNKNOWN" } else { orig }),
    )
}

/// Reads what a bank needs from a pain.001, streaming (a million payments stay small).
fn read_pain001(bytes: &[u8]) -> Result<Pain001, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().expand_empty_elements = true;
    let mut path: Vec<String> = Vec::new();
    let mut doc = Pain001::default();
    let mut tx = Tx::default();
    let mut pmt_inf_id = String::new();
    let mut text = String::new();
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("not well-formed XML: {e}"))?;
        match ev {
            Event::DocType(_) => return Err("a DTD is not accepted".into()),
            Event::Start(s) => {
                let name = s.local_name().as_ref().to_string();
                if path.is_empty() {
                    for a in s.attributes().with_checks(false).flatten() {
                        if a.key.as_ref() == "xmlns" {
                            doc.namespace = a.value.to_string();
                        }
                    }
                    if !doc.namespace.contains("pain.001") {
                        return Err(format!("not a pain.001 (namespace `{}`)", doc.namespace));
                    }
                }
                if name == "CdtTrfTxInf" {
                    tx = Tx {
                        pmt_inf_id: pmt_inf_id.clone(),
                        ..Tx::default()
                    };
                }
                if name == "InstdAmt" {
                    for a in s.attributes().with_checks(false).flatten() {
                        if a.key.as_ref() == "Ccy" {
                            tx.currency = a.value.to_string();
                        }
                    }
                }
                path.push(name);
                text.clear();
            }
            Event::Text(t) => text.push_str(t.as_ref()),
            Event::GeneralRef(r) if r.as_ref() == "amp" => text.push('&'),
            Event::End(_) => {
                let p: Vec<&str> = path.iter().map(String::as_str).collect();
                let t = text.trim().to_string();
                match p.as_slice() {
                    [.., "GrpHdr", "MsgId"] => doc.msg_id = t,
                    [.., "GrpHdr", "NbOfTxs"] => doc.nb_of_txs = t,
                    [.., "GrpHdr", "CtrlSum"] => doc.ctrl_sum = t,
                    [.., "PmtInf", "PmtInfId"] => pmt_inf_id = t,
                    [.., "PmtInf", "DbtrAcct", "Id", "IBAN"]
                    | [.., "PmtInf", "DbtrAcct", "Id", "Othr", "Id"] => doc.debtor_account = t,
                    [.., "CdtTrfTxInf", "PmtId", "EndToEndId"] => tx.end_to_end_id = t,
                    [.., "CdtTrfTxInf", "Amt", "InstdAmt"] => tx.amount = t,
                    [.., "CdtTrfTxInf", "CdtrAcct", "Id", "IBAN"]
                    | [.., "CdtTrfTxInf", "CdtrAcct", "Id", "Othr", "Id"] => tx.account = t,
                    [.., "CdtTrfTxInf"] => doc.txs.push(std::mem::take(&mut tx)),
                    _ => {}
                }
                path.pop();
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if doc.msg_id.is_empty() {
        return Err("no GrpHdr/MsgId".into());
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_bank_checks_from_a_pain001() {
        let xml = br#"<?xml version="1.0"?><Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"><CstmrCdtTrfInitn><GrpHdr><MsgId>M1</MsgId><NbOfTxs>2</NbOfTxs><CtrlSum>3.50</CtrlSum></GrpHdr><PmtInf><PmtInfId>M1-1</PmtInfId><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct><CdtTrfTxInf><PmtId><EndToEndId>E1</EndToEndId></PmtId><Amt><InstdAmt Ccy="EUR">1.25</InstdAmt></Amt><CdtrAcct><Id><IBAN>FR7630006000011234567890189</IBAN></Id></CdtrAcct></CdtTrfTxInf><CdtTrfTxInf><PmtId><EndToEndId>E2</EndToEndId></PmtId><Amt><InstdAmt Ccy="EUR">2.25</InstdAmt></Amt><CdtrAcct><Id><Othr><Id>12345678</Id></Othr></Id></CdtrAcct></CdtTrfTxInf></PmtInf></CstmrCdtTrfInitn></Document>"#;
        let d = read_pain001(xml).unwrap();
        assert_eq!(d.msg_id, "M1");
        assert_eq!(d.nb_of_txs, "2");
        assert_eq!(d.debtor_account, "DE89370400440532013000");
        assert_eq!(d.txs.len(), 2);
        assert_eq!(d.txs[1].account, "12345678");
        assert_eq!(d.txs[0].currency, "EUR");
        assert_eq!(d.txs[0].pmt_inf_id, "M1-1");
        assert!(
            read_pain001(b"<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.002.001.10\"/>")
                .is_err()
        );
    }
}
