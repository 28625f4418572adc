//! Column mapping: finds the header row (title rows above it are allowed) and maps the headers
//! people really write, in English and Chinese, to payment fields. A channel's configured names
//! come first; unknown extra columns are kept in the row and ignored.

use super::RawRow;
use crate::config::Channel;
use crate::finding::{ColumnRef, Finding, column_letter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    Account,
    BankCode,
    BankName,
    Amount,
    Currency,
    Reference,
    EndToEndId,
    ExecutionDate,
    Street,
    BuildingNumber,
    Postcode,
    Town,
    Country,
    AddressLine1,
    AddressLine2,
}

impl Field {
    pub const ALL: [Field; 16] = [
        Field::Name,
        Field::Account,
        Field::BankCode,
        Field::BankName,
        Field::Amount,
        Field::Currency,
        Field::Reference,
        Field::EndToEndId,
        Field::ExecutionDate,
        Field::Street,
        Field::BuildingNumber,
        Field::Postcode,
        Field::Town,
        Field::Country,
        Field::AddressLine1,
        Field::AddressLine2,
    ];

    /// The key used in `[channels.NAME.columns]`.
    pub fn key(self) -> &'static str {
        crate::config::FIELDS[self as usize]
    }

    fn describe(self) -> &'static str {
        match self {
            Field::Name => {
                "the payee's name (a header such as Name, Beneficiary, Payee, 姓名, 户名, 收款人名称)"
            }
            Field::Account => {
                "the payee's account (a header such as Account, IBAN, Account Number, 账号, 卡号, 收款账号)"
            }
            Field::Amount => "the amount (a header such as Amount, Net Pay, 金额, 实发金额)",
            _ => "this field",
        }
    }

    /// Built-in header aliases, already normalized (see `normalize`), separated by spaces.
    fn aliases(self) -> &'static str {
        match self {
            Field::Name => {
                "name beneficiary beneficiaryname payee payeename creditor creditorname \
                accountname accountholder accountholdername employeename vendorname suppliername \
                姓名 户名 收款人 收款人名称 收款人姓名 收款户名 收款方 收款方名称 账户名称 账户名 员工姓名 \
                收款单位 empfänger empfaenger begünstigter zahlungsempfänger bénéficiaire"
            }
            Field::Account => {
                "account accountnumber accountno acctno iban bankaccount \
                bankaccountnumber beneficiaryaccount creditoraccount payeeaccount cardnumber cardno \
                账号 卡号 收款账号 收款人账号 银行账号 银行卡号 收款卡号 收款账户 账户 帐号 收款帐号 konto \
                kontonummer"
            }
            Field::BankCode => {
                "bankcode bic swift swiftcode swiftbic bicswift biccode cnaps cnapscode \
                联行号 开户行行号 行号 收款行行号 开户行联行号 支付系统行号 收款行联行号 大额行号"
            }
            Field::BankName => {
                "bankname bank beneficiarybank beneficiarybankname 开户行 开户银行 \
                收款银行 开户行名称 收款行名称 开户网点 收款行 开户行名 kreditinstitut"
            }
            Field::Amount => {
                "amount netpay netamount paymentamount payamount transferamount 金额 \
                实发金额 实发工资 付款金额 转账金额 支付金额 交易金额 收款金额 实发 betrag montant"
            }
            Field::Currency => "currency ccy cur currencycode 币种 币别 货币 währung devise",
            Field::Reference => {
                "reference remittance remittanceinformation remittanceinfo memo \
                purpose description details narrative paymentreference paymentdetails 用途 摘要 备注 \
                附言 付款用途 转账用途 verwendungszweck zahlungsreferenz référence libellé"
            }
            Field::EndToEndId => {
                "endtoendid e2eid e2e endtoendreference id paymentid transactionid \
                instructionid 流水号 交易流水号 业务编号 业务流水号"
            }
            Field::ExecutionDate => {
                "executiondate requestedexecutiondate paymentdate valuedate date \
                paydate 付款日期 支付日期 转账日期 日期 发放日期 ausführungsdatum zahlungsdatum"
            }
            Field::Street => "street streetname strasse straße rue calle via 街道",
            Field::BuildingNumber => {
                "buildingnumber building houseno housenumber hausnummer numero 门牌号"
            }
            Field::Postcode => {
                "postcode postalcode zip zipcode plz postleitzahl codepostal cp 邮编 邮政编码"
            }
            Field::Town => "town townname city ort stadt ville ciudad città 城市",
            Field::Country => "country countrycode land pays país 国家",
            Field::AddressLine1 => "address addressline addressline1 adresse 地址 收款人地址",
            Field::AddressLine2 => "addressline2 adresse2 地址2",
        }
    }
}

/// Lower case, without spaces, punctuation or a parenthesised unit: `Net Pay (CNY)` -> `netpay`,
/// `实发金额（元）` -> `实发金额`, `End-to-End ID` -> `endtoendid`.
pub fn normalize(header: &str) -> String {
    normalized(header).collect()
}

/// The characters of `normalize(header)`, without building the string.
fn normalized(header: &str) -> impl Iterator<Item = char> + '_ {
    let mut depth = 0u32;
    header
        .trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(move |&c| match c {
            '(' | '（' | '[' | '【' => {
                depth += 1;
                false
            }
            ')' | '）' | ']' | '】' => {
                depth = depth.saturating_sub(1);
                false
            }
            _ if depth > 0 => false,
            c => !(c.is_whitespace() || "_-.*:：#/\\'\"".contains(c)),
        })
        .flat_map(char::to_lowercase)
}

/// Whether `normalize(text)` is one of `labels` (already normalized); stops at the first
/// character that differs, so a cell of ordinary text costs a character or two.
pub fn normalizes_to_any(text: &str, labels: &[&str]) -> bool {
    let Some(first) = normalized(text).next() else {
        return labels.contains(&"");
    };
    labels
        .iter()
        .any(|l| l.starts_with(first) && l.chars().eq(normalized(text)))
}

/// Which spreadsheet column holds each field.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Column index per field (indexed by `Field as usize`).
    cols: [Option<usize>; Field::ALL.len()],
    /// Every non-empty header, by column index.
    pub headers: Vec<Option<ColumnRef>>,
    /// Spreadsheet row number of the header.
    pub header_row: u64,
}

impl Mapping {
    pub fn col(&self, f: Field) -> Option<usize> {
        self.cols[f as usize]
    }

    pub fn column_ref(&self, idx: usize) -> ColumnRef {
        self.headers
            .get(idx)
            .cloned()
            .flatten()
            .unwrap_or_else(|| ColumnRef {
                name: String::new(),
                letter: column_letter(idx),
            })
    }

    /// Columns that are used, as `header -> field`.
    pub fn used(&self) -> Vec<(ColumnRef, Field)> {
        let mut v: Vec<(ColumnRef, Field)> = Field::ALL
            .iter()
            .filter_map(|f| self.col(*f).map(|c| (self.column_ref(c), *f)))
            .collect();
        v.sort_by_key(|(c, _)| (c.letter.len(), c.letter.clone()));
        v
    }

    /// Columns with a header that no field uses: kept in the row, ignored for payment.
    pub fn ignored(&self) -> Vec<ColumnRef> {
        self.headers
            .iter()
            .enumerate()
            .filter(|(i, h)| h.is_some() && !self.cols.contains(&Some(*i)))
            .filter_map(|(_, h)| h.clone())
            .collect()
    }
}

/// How well `row` looks like a header: the number of distinct fields it names.
fn score(row: &RawRow, channel: &Channel) -> usize {
    Field::ALL
        .iter()
        .filter(|f| {
            row.cells
                .iter()
                .any(|c| matches(&normalize(&c.text), **f, channel).is_some())
        })
        .count()
}

/// `Some(true)` when the channel's configuration names this header for the field, `Some(false)`
/// for a built-in alias.
fn matches(norm: &str, field: Field, channel: &Channel) -> Option<bool> {
    if norm.is_empty() {
        return None;
    }
    if let Some(names) = channel.columns.get(field.key())
        && names.names().iter().any(|n| normalize(n) == norm)
    {
        return Some(true);
    }
    field
        .aliases()
        .split_whitespace()
        .any(|a| a == norm)
        .then_some(false)
}

/// Finds the header among the first rows (`candidates`, in file order) and maps its columns.
/// Returns the header's index in `candidates` and the mapping, or the findings that explain why
/// there is no usable header.
pub fn find_header(
    candidates: &[RawRow],
    channel: &Channel,
    channel_name: &str,
) -> Result<(usize, Mapping), Vec<Finding>> {
    let best = candidates
        .iter()
        .enumerate()
        .map(|(i, r)| (score(r, channel), i))
        .max_by_key(|&(s, i)| (s, std::cmp::Reverse(i)));
    let Some((s, idx)) = best.filter(|&(s, _)| s >= 2) else {
        return Err(vec![Finding::error(
            "header.missing",
            format!(
                "no header row found in the first {} rows; the file needs a row of column headers naming at least the payee, the account and the amount (e.g. Name, Account, Amount or 姓名, 账号, 金额)",
                candidates.len()
            ),
        )]);
    };
    let _ = s;
    let row = &candidates[idx];
    let mut findings = Vec::new();
    let headers: Vec<Option<ColumnRef>> = row
        .cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (!c.is_blank()).then(|| ColumnRef {
                name: c.text.trim().to_string(),
                letter: column_letter(i),
            })
        })
        .collect();
    let mut cols = [None; Field::ALL.len()];
    for field in Field::ALL {
        let hits: Vec<(usize, bool)> = row
            .cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| matches(&normalize(&c.text), field, channel).map(|cfg| (i, cfg)))
            .collect();
        // Configured names win over aliases.
        let configured: Vec<usize> = hits.iter().filter(|h| h.1).map(|h| h.0).collect();
        let chosen: Vec<usize> = if configured.is_empty() {
            hits.iter().map(|h| h.0).collect()
        } else {
            configured
        };
        match chosen.as_slice() {
            [] => {
                if let Some(names) = channel.columns.get(field.key()) {
                    findings.push(
                        Finding::error(
                            "header.configured_column_missing",
                            format!(
                                "channels.{channel_name}.columns.{} names the column {:?}, but the header has no such column",
                                field.key(),
                                names.names()
                            ),
                        )
                        .at(row.number),
                    );
                }
            }
            [one] => cols[field as usize] = Some(*one),
            [first, rest @ ..] => {
                let all: Vec<String> = std::iter::once(first)
                    .chain(rest)
                    .map(|&i| {
                        let h = headers[i].clone().unwrap_or(ColumnRef {
                            name: String::new(),
                            letter: column_letter(i),
                        });
                        format!("{} `{}`", h.letter, h.name)
                    })
                    .collect();
                findings.push(
                    Finding::error(
                        "header.ambiguous",
                        format!(
                            "columns {} could all be the {} column; say which one to use with channels.{channel_name}.columns.{} = \"…\"",
                            all.join(" and "),
                            field.key(),
                            field.key()
                        ),
                    )
                    .at(row.number),
                );
            }
        }
    }
    for field in [Field::Name, Field::Account, Field::Amount] {
        if cols[field as usize].is_none()
            && !findings.iter().any(|f| {
                f.code == "header.ambiguous"
                    && f.message.contains(&format!("the {} column", field.key()))
            })
        {
            findings.push(
                Finding::error(
                    "header.missing_column",
                    format!("the header has no column for {}", field.describe()),
                )
                .at(row.number),
            );
        }
    }
    if findings.is_empty() {
        Ok((
            idx,
            Mapping {
                cols,
                headers,
                header_row: row.number,
            },
        ))
    } else {
        Err(findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::Cell;

    fn row(n: u64, cells: &[&str]) -> RawRow {
        RawRow {
            number: n,
            cells: cells.iter().map(|c| Cell::text(c)).collect(),
            ..Default::default()
        }
    }

    fn channel(extra: &str) -> Channel {
        let text = format!(
            "kind = \"payroll\"\nbank = \"b\"\ndebtor_account = \"a\"\nfolder = \"f\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize(" Net Pay (CNY) "), "netpay");
        assert_eq!(normalize("实发金额（元）"), "实发金额");
        assert_eq!(normalize("End-to-End ID"), "endtoendid");
        assert_eq!(normalize("\u{feff}Name*"), "name");
    }

    #[test]
    fn english_and_chinese_headers_below_a_title() {
        let rows = vec![
            row(1, &["代发工资清单 2026年11月"]),
            row(2, &[]),
            row(
                3,
                &[
                    "序号",
                    "姓名",
                    "收款账号",
                    "开户行",
                    "联行号",
                    "实发金额",
                    "币种",
                    "用途",
                ],
            ),
        ];
        let (idx, m) = find_header(&rows, &channel(""), "payroll").unwrap();
        assert_eq!(idx, 2);
        assert_eq!(m.header_row, 3);
        assert_eq!(m.col(Field::Name), Some(1));
        assert_eq!(m.col(Field::Account), Some(2));
        assert_eq!(m.col(Field::BankName), Some(3));
        assert_eq!(m.col(Field::BankCode), Some(4));
        assert_eq!(m.col(Field::Amount), Some(5));
        assert_eq!(m.col(Field::Currency), Some(6));
        assert_eq!(m.col(Field::Reference), Some(7));
        assert_eq!(
            m.ignored()
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            vec!["序号"]
        );
    }

    #[test]
    fn ambiguous_headers_are_errors_until_configured() {
        let rows = vec![row(1, &["Name", "账号", "卡号", "Amount"])];
        let err = find_header(&rows, &channel(""), "payroll").unwrap_err();
        assert_eq!(err[0].code, "header.ambiguous");
        assert!(
            err[0].message.contains("B `账号` and C `卡号`"),
            "{}",
            err[0].message
        );
        assert!(err[0].message.contains("channels.payroll.columns.account"));
        assert_eq!(err.len(), 1, "{err:#?}");
        let ch = channel("[columns]\naccount = \"卡号\"\n");
        let (_, m) = find_header(&rows, &ch, "payroll").unwrap();
        assert_eq!(m.col(Field::Account), Some(2));
    }

    #[test]
    fn missing_header_and_missing_columns() {
        let rows = vec![row(1, &["foo", "bar"]), row(2, &["1", "2"])];
        let err = find_header(&rows, &channel(""), "p").unwrap_err();
        assert_eq!(err[0].code, "header.missing");
        let rows = vec![row(1, &["Name", "Currency", "Reference"])];
        let err = find_header(&rows, &channel(""), "p").unwrap_err();
        let codes: Vec<&str> = err.iter().map(|f| f.code).collect();
        assert_eq!(
            codes,
            vec!["header.missing_column", "header.missing_column"]
        );
        assert!(err[0].message.contains("account"));
        assert!(err[1].message.contains("amount"));
    }

    #[test]
    fn configured_names_for_unusual_headers() {
        let ch = channel(
            "[columns]\nname = \"Mitarbeiter\"\naccount = [\"Konto\", \"IBAN\"]\namount = \"Betrag\"\n",
        );
        let rows = vec![row(1, &["Mitarbeiter", "Konto", "Betrag"])];
        let (_, m) = find_header(&rows, &ch, "p").unwrap();
        assert_eq!(m.col(Field::Amount), Some(2));
    }
}
