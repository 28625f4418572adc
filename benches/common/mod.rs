//! Shared by the benchmarks: deterministic payroll files of any size.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

const SURNAMES: &[&str] = &[
    "张", "王", "李", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军", "杰", "涛", "明", "超",
];
const BANKS: &[(&str, &str)] = &[
    ("102290002916", "中国工商银行上海市分行营业部"),
    ("103290019449", "中国农业银行上海静安支行"),
    ("104290003627", "中国银行上海市分行"),
    ("105290006431", "中国建设银行上海浦东分行"),
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A 19-digit UnionPay card number with a correct Luhn digit.
fn card(rng: &mut Rng) -> String {
    let mut digits: Vec<u8> = b"622848".iter().map(|b| b - b'0').collect();
    while digits.len() < 18 {
        digits.push((rng.next() % 10) as u8);
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits.iter().map(|d| (b'0' + d) as char).collect()
}

struct Row {
    name: String,
    account: String,
    bank: (&'static str, &'static str),
    cents: u64,
    id: String,
}

fn rows(n: usize) -> impl Iterator<Item = Row> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n).map(move |i| Row {
        name: format!(
            "{}{}{}",
            SURNAMES[(rng.next() % SURNAMES.len() as u64) as usize],
            GIVEN[(rng.next() % GIVEN.len() as u64) as usize],
            GIVEN[(rng.next() % GIVEN.len() as u64) as usize]
        ),
        account: card(&mut rng),
        bank: BANKS[(rng.next() % BANKS.len() as u64) as usize],
        cents: 300_000 + rng.next() % 4_500_000,
        id: format!("PAY{i:09}"),
    })
}

const HEADER: [&str; 8] = [
    "Employee ID",
    "Name",
    "Account",
    "Bank Code",
    "Bank Name",
    "Net Pay",
    "Currency",
    "Reference",
];

pub fn write_csv(path: &Path, n: usize) {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(w, "{}", HEADER.join(",")).unwrap();
    for r in rows(n) {
        writeln!(
            w,
            "{},{},{},{},{},{}.{:02},CNY,Salary 2026-11",
            r.id,
            r.name,
            r.account,
            r.bank.0,
            r.bank.1,
            r.cents / 100,
            r.cents % 100
        )
        .unwrap();
    }
    w.flush().unwrap();
}

pub fn write_xlsx(path: &Path, n: usize) {
    use rust_xlsxwriter::{Format, Workbook};
    let mut wb = Workbook::new();
    let text = Format::new().set_num_format("@");
    let money = Format::new().set_num_format("#,##0.00");
    let ws = wb.add_worksheet_with_constant_memory().unwrap();
    ws.set_name("Payroll").unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        ws.write_string(0, c as u16, *h).unwrap();
    }
    for (i, r) in rows(n).enumerate() {
        let row = i as u32 + 1;
        ws.write_string_with_format(row, 0, &r.id, &text).unwrap();
        ws.write_string(row, 1, &r.name).unwrap();
        ws.write_string_with_format(row, 2, &r.account, &text)
            .unwrap();
        ws.write_string_with_format(row, 3, r.bank.0, &text)
            .unwrap();
        ws.write_string(row, 4, r.bank.1).unwrap();
        ws.write_number_with_format(row, 5, r.cents as f64 / 100.0, &money)
            .unwrap();
        ws.write_string(row, 6, "CNY").unwrap();
        ws.write_string(row, 7, "Salary 2026-11").unwrap();
    }
    wb.save(path).unwrap();
}

/// Beneficiaries of the supplier shape: plain SEPA names (Latin letters without accents,
/// which the SEPA profile sends unchanged).
const SUPPLIERS: &[&str] = &[
    "Mueller Logistik GmbH",
    "Societe Generale Fournitures SARL",
    "Van Dijk Handelsonderneming B.V.",
    "Distribuciones Garcia S.L.",
    "Rossi Componenti S.p.A.",
    "Nordic Timber AB",
    "Kowalski Transport Sp. z o.o.",
    "Dubois Emballages SAS",
    "Schmidt Maschinenbau AG",
    "OConnor Office Supplies Ltd",
    "Janssen Techniek BV",
    "Novak Elektro s.r.o.",
];
/// Names that need transliteration: `&` is sent as `+` under the SEPA profile (a warning).
const SUPPLIERS_AMP: &[&str] = &[
    "Weber & Soehne KG",
    "Martin & Fils SARL",
    "Smith & Partners LLP",
    "Bakker & Co B.V.",
];
const BICS: &[(&str, &str)] = &[
    ("DE", "COBADEFFXXX"),
    ("FR", "BNPAFRPPXXX"),
    ("NL", "RABONL2UXXX"),
    ("ES", "BSCHESMMXXX"),
    ("IT", "UNCRITMMXXX"),
    ("DE", "DEUTDEFFXXX"),
];

/// An IBAN of `country` with a random BBAN of the country's length and correct check digits.
fn iban(rng: &mut Rng, country: &str) -> String {
    let len = match country {
        "DE" => 18,
        "FR" => 23,
        "NL" => 14,
        "ES" => 20,
        _ => 23,
    };
    let bban: String = if country == "NL" {
        "RABO"
            .chars()
            .chain((0..10).map(|_| (b'0' + (rng.next() % 10) as u8) as char))
            .collect()
    } else if country == "IT" {
        std::iter::once('X')
            .chain((0..22).map(|_| (b'0' + (rng.next() % 10) as u8) as char))
            .collect()
    } else {
        (0..len)
            .map(|_| (b'0' + (rng.next() % 10) as u8) as char)
            .collect()
    };
    // ISO 13616: BBAN + country + "00", letters as 10..35, mod 97; check = 98 - rem.
    let mut rem = 0u32;
    for c in bban.chars().chain(country.chars()).chain("00".chars()) {
        let v = c.to_digit(36).unwrap();
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

/// Which rows of the supplier shape need transliteration.
#[derive(Clone, Copy)]
pub enum Warns {
    /// About 17% of the rows (a `&` in the beneficiary).
    Some,
    /// Every row.
    Every,
}

/// A supplier payment run as an ERP exports it: `;`-separated UTF-8, EUR to IBAN/BIC, a
/// remittance line and an end-to-end id per row.
pub fn write_supplier_csv(path: &Path, n: usize, warns: Warns) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(
        w,
        "Vendor ID;Beneficiary;IBAN;BIC;Amount;Currency;Remittance Information;End to End ID"
    )
    .unwrap();
    for i in 0..n {
        let amp = match warns {
            Warns::Every => true,
            Warns::Some => rng.next() % 100 < 17,
        };
        let name = if amp {
            SUPPLIERS_AMP[(rng.next() % SUPPLIERS_AMP.len() as u64) as usize]
        } else {
            SUPPLIERS[(rng.next() % SUPPLIERS.len() as u64) as usize]
        };
        let (country, bic) = BICS[(rng.next() % BICS.len() as u64) as usize];
        let iban = iban(&mut rng, country);
        let cents = 1_000 + rng.next() % 5_000_000;
        writeln!(
            w,
            "V{:05};{name};{iban};{bic};{}.{:02};EUR;INV-2026-{:05} / PO {};SUP-20261130-{i:07}",
            10_000 + rng.next() % 90_000,
            cents / 100,
            cents % 100,
            rng.next() % 100_000,
            1_000 + rng.next() % 9_000,
        )
        .unwrap();
    }
    w.flush().unwrap();
}
