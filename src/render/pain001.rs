//! ISO 20022 pain.001 (customer credit transfer initiation), versions .001.03, .001.09 and
//! .001.12, written as a stream with quick-xml. Version differences handled here: `BIC` vs
//! `BICFI`, `ReqdExctnDt` as a date (.03) or `<Dt>` (.08 on), `LEI` in organisation ids (.08
//! on). NbOfTxs and CtrlSum are computed from the payments, never copied from input.

use super::{BankFile, BatchHeader, Counting, RenderError, Spill, Summary};
use crate::config::AddressMode;
use crate::model::charset::convert;
use crate::model::{Account, Address, BankId, Currency, Payment};
use chrono::NaiveDate;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::io::{self, Write};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V03,
    V09,
    V12,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V03, Version::V09, Version::V12];

    pub fn name(self) -> &'static str {
        match self {
            Version::V03 => "pain.001.001.03",
            Version::V09 => "pain.001.001.09",
            Version::V12 => "pain.001.001.12",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Version::V03 => {
                "ISO 20022 credit transfer initiation, 2009 version (still the most widely accepted)"
            }
            Version::V09 => {
                "ISO 20022 credit transfer initiation, 2019 version (SEPA since November 2023, CBPR+)"
            }
            Version::V12 => "ISO 20022 credit transfer initiation, 2023 version",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.name() == s)
    }

    fn bic_tag(self) -> &'static str {
        match self {
            Version::V03 => "BIC",
            _ => "BICFI",
        }
    }
}

/// A small pretty-printing layer over quick-xml's writer: quick-xml does the escaping.
struct Xml<'w> {
    w: quick_xml::Writer<&'w mut dyn Write>,
    depth: usize,
    pretty: bool,
}

impl<'w> Xml<'w> {
    fn new(out: &'w mut dyn Write, depth: usize, pretty: bool) -> Xml<'w> {
        Xml {
            w: quick_xml::Writer::new(out),
            depth,
            pretty,
        }
    }

    fn nl(&mut self) -> io::Result<()> {
        if self.pretty {
            const SPACES: &[u8; 64] = &[b' '; 64];
            let out = self.w.get_mut();
            out.write_all(b"\n")?;
            out.write_all(&SPACES[..(self.depth * 2).min(64)])?;
        }
        Ok(())
    }

    fn open(&mut self, tag: &str) -> io::Result<()> {
        self.nl()?;
        self.w.write_event(Event::Start(BytesStart::new(tag)))?;
        self.depth += 1;
        Ok(())
    }

    fn close(&mut self, tag: &str) -> io::Result<()> {
        self.depth -= 1;
        self.nl()?;
        self.w.write_event(Event::End(BytesEnd::new(tag)))?;
        Ok(())
    }

    fn leaf(&mut self, tag: &str, text: &str) -> io::Result<()> {
        self.nl()?;
        self.w.write_event(Event::Start(BytesStart::new(tag)))?;
        self.w.write_event(Event::Text(BytesText::new(text)))?;
        self.w.write_event(Event::End(BytesEnd::new(tag)))?;
        Ok(())
    }

    fn amount(&mut self, tag: &str, ccy: Currency, amount: Decimal) -> io::Result<()> {
        self.nl()?;
        let mut start = BytesStart::new(tag);
        start.push_attribute(("Ccy", ccy.as_str()));
        self.w.write_event(Event::Start(start))?;
        self.w
            .write_event(Event::Text(BytesText::new(&amount.to_string())))?;
        self.w.write_event(Event::End(BytesEnd::new(tag)))?;
        Ok(())
    }
}

struct Group {
    spill: Spill,
    count: u64,
    sum: Decimal,
}

pub struct Pain001 {
    version: Version,
    header: BatchHeader,
    /// Payment-information blocks by (requested execution date, currency); the debtor account
    /// and category purpose are the channel's, the same for the whole batch.
    groups: BTreeMap<(NaiveDate, Currency), Group>,
}

impl Pain001 {
    pub fn new(version: Version, header: BatchHeader) -> Pain001 {
        Pain001 {
            version,
            header,
            groups: BTreeMap::new(),
        }
    }

    fn text<'a>(&self, s: &'a str) -> std::borrow::Cow<'a, str> {
        convert(s, self.header.profile.charset).0
    }

    fn service_level(&self, ccy: Currency) -> Option<&str> {
        match self.header.profile.service_level.as_deref() {
            Some("SEPA") if ccy != Currency::EUR => None,
            other => other,
        }
    }

    fn address(&self, x: &mut Xml, a: &Address) -> io::Result<()> {
        let mode = self.header.profile.address_mode;
        if mode == AddressMode::None || a.is_empty() {
            return Ok(());
        }
        x.open("PstlAdr")?;
        if mode != AddressMode::Unstructured {
            for (tag, v) in [
                ("StrtNm", &a.street),
                ("BldgNb", &a.building_number),
                ("PstCd", &a.postcode),
                ("TwnNm", &a.town),
            ] {
                if let Some(v) = v {
                    x.leaf(tag, &self.text(v))?;
                }
            }
        }
        if let Some(c) = &a.country {
            x.leaf("Ctry", c)?;
        }
        match mode {
            AddressMode::Hybrid => {
                for line in a.lines.iter().take(2) {
                    x.leaf("AdrLine", &self.text(line))?;
                }
            }
            // Validation keeps payees' addresses to lines in this mode; an address given in
            // parts (the company's) is written as "street number" / "postcode town".
            AddressMode::Unstructured => {
                let join = |a: &Option<String>, b: &Option<String>| {
                    [a.as_deref(), b.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let composed = [
                    join(&a.street, &a.building_number),
                    join(&a.postcode, &a.town),
                ];
                let lines: Vec<&str> = if a.has_structured_parts() || a.town.is_some() {
                    composed
                        .iter()
                        .map(String::as_str)
                        .filter(|l| !l.is_empty())
                        .collect()
                } else {
                    a.lines.iter().map(String::as_str).collect()
                };
                for line in lines.into_iter().take(2) {
                    x.leaf("AdrLine", &self.text(line))?;
                }
            }
            _ => {}
        }
        x.close("PstlAdr")
    }

    fn org_id(&self, x: &mut Xml) -> io::Result<()> {
        let ids = &self.header.company_ids;
        if ids.is_empty() {
            return Ok(());
        }
        x.open("Id")?;
        x.open("OrgId")?;
        if self.version != Version::V03 {
            for (_, id) in ids.iter().filter(|(s, _)| s == "LEI") {
                x.leaf("LEI", id)?;
            }
        }
        for (scheme, id) in ids {
            if scheme == "LEI" && self.version != Version::V03 {
                continue;
            }
            x.open("Othr")?;
            x.leaf("Id", id)?;
            x.open("SchmeNm")?;
            // ExternalOrganisationIdentification1Code; anything else is proprietary.
            const CODES: &[&str] = &[
                "BANK", "CBID", "CHID", "CINC", "COID", "CUST", "DUNS", "EMPL", "GS1G", "SREN",
                "SRET", "TXID", "BDID", "BOID",
            ];
            if CODES.contains(&scheme.as_str()) {
                x.leaf("Cd", scheme)?;
            } else {
                x.leaf("Prtry", scheme)?;
            }
            x.close("SchmeNm")?;
            x.close("Othr")?;
        }
        x.close("OrgId")?;
        x.close("Id")
    }

    fn agent(&self, x: &mut Xml, tag: &str, agent: Option<&BankId>) -> io::Result<()> {
        x.open(tag)?;
        x.open("FinInstnId")?;
        match agent {
            Some(BankId::Bic(b)) => x.leaf(self.version.bic_tag(), b.as_str())?,
            Some(BankId::Cnaps(c)) => {
                x.open("ClrSysMmbId")?;
                x.open("ClrSysId")?;
                x.leaf("Cd", "CNAPS")?;
                x.close("ClrSysId")?;
                x.leaf("MmbId", c.as_str())?;
                x.close("ClrSysMmbId")?;
            }
            None => {
                x.open("Othr")?;
                x.leaf("Id", "NOTPROVIDED")?;
                x.close("Othr")?;
            }
        }
        x.close("FinInstnId")?;
        x.close(tag)
    }

    fn account(
        &self,
        x: &mut Xml,
        tag: &str,
        acct: &Account,
        ccy: Option<Currency>,
    ) -> io::Result<()> {
        x.open(tag)?;
        x.open("Id")?;
        match acct {
            Account::Iban(i) => x.leaf("IBAN", i.as_str())?,
            Account::Domestic(d) => {
                x.open("Othr")?;
                x.leaf("Id", d.as_str())?;
                x.close("Othr")?;
            }
        }
        x.close("Id")?;
        if let Some(c) = ccy {
            x.leaf("Ccy", c.as_str())?;
        }
        x.close(tag)
    }

    fn transaction(&self, x: &mut Xml, p: &Payment, e2e: &str) -> io::Result<()> {
        x.open("CdtTrfTxInf")?;
        x.open("PmtId")?;
        x.leaf("EndToEndId", e2e)?;
        x.close("PmtId")?;
        x.open("Amt")?;
        x.amount("InstdAmt", p.amount.currency(), p.amount.amount())?;
        x.close("Amt")?;
        if let Some(agent) = &p.creditor_agent {
            self.agent(x, "CdtrAgt", Some(agent))?;
        }
        x.open("Cdtr")?;
        x.leaf("Nm", &self.text(&p.creditor_name))?;
        if let Some(a) = &p.creditor_address {
            self.address(x, a)?;
        }
        x.close("Cdtr")?;
        self.account(x, "CdtrAcct", &p.creditor_account, None)?;
        if let Some(r) = &p.remittance {
            x.open("RmtInf")?;
            x.leaf("Ustrd", &self.text(r))?;
            x.close("RmtInf")?;
        }
        x.close("CdtTrfTxInf")
    }
}

impl BankFile for Pain001 {
    fn add(&mut self, p: &Payment, e2e: &str) -> Result<(), RenderError> {
        if e2e.is_empty() || e2e.chars().count() > 35 {
            return Err(RenderError::Value {
                row: p.row,
                field: "EndToEndId".into(),
                value: e2e.into(),
                problem: "an end-to-end id has 1 to 35 characters".into(),
            });
        }
        let key = (p.execution_date, p.amount.currency());
        let mut group = self.groups.remove(&key).unwrap_or_else(|| Group {
            spill: Spill::new(),
            count: 0,
            sum: Decimal::ZERO,
        });
        let pretty = self.header.profile.pretty;
        self.transaction(&mut Xml::new(&mut group.spill, 3, pretty), p, e2e)?;
        group.count += 1;
        group.sum += p.amount.amount();
        self.groups.insert(key, group);
        Ok(())
    }

    fn finish(self: Box<Self>, out: &mut dyn Write) -> Result<Summary, RenderError> {
        let mut this = *self;
        let groups = std::mem::take(&mut this.groups);
        let this = this;
        let mut counting = Counting {
            inner: out,
            bytes: 0,
        };
        let h = &this.header;
        let count: u64 = groups.values().map(|g| g.count).sum();
        let control_sum: Decimal = groups.values().map(|g| g.sum).sum();
        let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
        for ((_, ccy), g) in &groups {
            *totals.entry(*ccy).or_default() += g.sum;
        }
        let pretty = h.profile.pretty;
        {
            let mut x = Xml::new(&mut counting, 0, pretty);
            x.w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
            x.nl()?;
            let mut doc = BytesStart::new("Document");
            let ns = format!("urn:iso:std:iso:20022:tech:xsd:{}", this.version.name());
            doc.push_attribute(("xmlns", ns.as_str()));
            x.w.write_event(Event::Start(doc))?;
            x.depth = 1;
            x.open("CstmrCdtTrfInitn")?;
            x.open("GrpHdr")?;
            x.leaf("MsgId", &h.msg_id)?;
            x.leaf(
                "CreDtTm",
                &h.created.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            )?;
            x.leaf("NbOfTxs", &count.to_string())?;
            x.leaf("CtrlSum", &control_sum.to_string())?;
            x.open("InitgPty")?;
            x.leaf("Nm", &this.text(&h.company_name))?;
            this.org_id(&mut x)?;
            x.close("InitgPty")?;
            x.close("GrpHdr")?;
        }
        for (n, ((date, ccy), group)) in groups.into_iter().enumerate() {
            {
                let mut x = Xml::new(&mut counting, 2, pretty);
                x.open("PmtInf")?;
                x.leaf("PmtInfId", &format!("{}-{}", h.msg_id, n + 1))?;
                x.leaf("PmtMtd", "TRF")?;
                x.leaf(
                    "BtchBookg",
                    if h.profile.batch_booking {
                        "true"
                    } else {
                        "false"
                    },
                )?;
                x.leaf("NbOfTxs", &group.count.to_string())?;
                x.leaf("CtrlSum", &group.sum.to_string())?;
                x.open("PmtTpInf")?;
                let svc = this.service_level(ccy);
                if let Some(s) = svc {
                    x.open("SvcLvl")?;
                    x.leaf("Cd", s)?;
                    x.close("SvcLvl")?;
                }
                x.open("CtgyPurp")?;
                x.leaf("Cd", &h.category_purpose)?;
                x.close("CtgyPurp")?;
                x.close("PmtTpInf")?;
                let day = date.format("%Y-%m-%d").to_string();
                if this.version == Version::V03 {
                    x.leaf("ReqdExctnDt", &day)?;
                } else {
                    x.open("ReqdExctnDt")?;
                    x.leaf("Dt", &day)?;
                    x.close("ReqdExctnDt")?;
                }
                x.open("Dbtr")?;
                x.leaf("Nm", &this.text(&h.company_name))?;
                if let Some(a) = &h.company_address {
                    this.address(&mut x, a)?;
                }
                this.org_id(&mut x)?;
                x.close("Dbtr")?;
                this.account(
                    &mut x,
                    "DbtrAcct",
                    &h.debtor_account,
                    Some(h.debtor_currency),
                )?;
                this.agent(&mut x, "DbtrAgt", h.debtor_agent.as_ref())?;
                let bearer = match (&h.profile.charge_bearer, svc) {
                    (Some(b), _) => b.as_str(),
                    (None, Some("SEPA")) => "SLEV",
                    (None, _) => "SHAR",
                };
                x.leaf("ChrgBr", bearer)?;
            }
            group.spill.drain_into(&mut counting)?;
            let mut x = Xml::new(&mut counting, 3, pretty);
            x.close("PmtInf")?;
        }
        {
            let mut x = Xml::new(&mut counting, 2, pretty);
            x.close("CstmrCdtTrfInitn")?;
            x.close("Document")?;
            if pretty {
                x.w.get_mut().write_all(b"\n")?;
            }
        }
        counting.flush()?;
        Ok(Summary {
            payments: count,
            totals,
            control_sum,
            bytes: counting.bytes,
        })
    }
}
