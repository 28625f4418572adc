//! Account and bank identifiers: IBAN (ISO 13616), BIC (ISO 9362), CNAPS bank codes and domestic
//! account numbers. Values of these types are always well-formed; parsing says why not.

use std::fmt;

/// IBAN lengths per country (SWIFT IBAN registry, 2025).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// ISO 3166 alpha-2 codes, for the country part of a BIC.
const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL \
BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY \
HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC \
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE \
NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD \
SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA \
UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

pub fn is_country(code: &str) -> bool {
    // One flag per pair of upper-case letters, built once from the list.
    static TABLE: std::sync::OnceLock<[bool; 26 * 26]> = std::sync::OnceLock::new();
    let index = |b: &[u8]| usize::from(b[0] - b'A') * 26 + usize::from(b[1] - b'A');
    let table = TABLE.get_or_init(|| {
        let mut t = [false; 26 * 26];
        for c in COUNTRIES.split_ascii_whitespace() {
            t[index(c.as_bytes())] = true;
        }
        t
    });
    let b = code.as_bytes();
    b.len() == 2 && b.iter().all(u8::is_ascii_uppercase) && table[index(b)]
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountProblem {
    #[error("an IBAN starts with a two-letter country code and two check digits")]
    IbanShape,
    #[error("`{0}` is not a country that uses IBANs")]
    IbanCountry(String),
    #[error("an IBAN from {country} has {expected} characters, this one has {found}")]
    IbanLength {
        country: String,
        expected: usize,
        found: usize,
    },
    #[error("the IBAN check digits do not match: a character is mistyped or two are swapped")]
    IbanChecksum,
    #[error(
        "a BIC has 8 or 11 characters: 4 letters (bank), 2 letters (country), 2 letters or digits (location), optionally 3 more (branch)"
    )]
    BicShape,
    #[error("`{0}` in the BIC is not a country code")]
    BicCountry(String),
    #[error("a CNAPS bank code (联行号) has exactly 12 digits")]
    CnapsShape,
    #[error("an account number may contain only digits")]
    NotDigits,
    #[error("this account number has {found} digits; the bank expects {min} to {max}")]
    DomesticLength {
        found: usize,
        min: usize,
        max: usize,
    },
}

/// Removes the spaces (and hyphens, for domestic numbers) people use to make numbers readable,
/// and folds full-width forms (`６２２２`, typed with a Chinese or Japanese input method) to ASCII,
/// so that one account is always stored, and compared, the same way.
fn compact(raw: &str, drop_hyphens: bool) -> String {
    // The usual case, plain ASCII with nothing to drop, in one allocation.
    if raw
        .bytes()
        .all(|b| b.is_ascii_graphic() && !(drop_hyphens && b == b'-'))
    {
        return raw.to_ascii_uppercase();
    }
    raw.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFF01 + 0x21).unwrap_or(c),
            c => c,
        })
        .filter(|c| !(c.is_whitespace() || drop_hyphens && *c == '-'))
        .collect::<String>()
        .to_ascii_uppercase()
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct Iban(String);

impl Iban {
    /// Accepts the electronic form and the grouped print form (`DE89 3704 …`).
    pub fn parse(raw: &str) -> Result<Iban, AccountProblem> {
        let s = compact(raw, false);
        let b = s.as_bytes();
        if b.len() < 5
            || !b[..2].iter().all(u8::is_ascii_uppercase)
            || !b[2..4].iter().all(u8::is_ascii_digit)
            || !b.iter().all(u8::is_ascii_alphanumeric)
        {
            return Err(AccountProblem::IbanShape);
        }
        let country = &s[..2];
        let expected = IBAN_LENGTHS
            .iter()
            .find(|(c, _)| *c == country)
            .map(|(_, l)| *l)
            .ok_or_else(|| AccountProblem::IbanCountry(country.to_string()))?;
        if b.len() != expected {
            return Err(AccountProblem::IbanLength {
                country: country.to_string(),
                expected,
                found: b.len(),
            });
        }
        if iban_mod97(&s) != 1 {
            return Err(AccountProblem::IbanChecksum);
        }
        Ok(Iban(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn country(&self) -> &str {
        &self.0[..2]
    }
}

/// ISO 7064 MOD 97-10 over the rearranged IBAN, computed piecewise (no big integers).
fn iban_mod97(s: &str) -> u32 {
    let rearranged = s[4..].bytes().chain(s[..4].bytes());
    // Digits are gathered in a u64 and reduced only when another two would not fit.
    let mut rem: u64 = 0;
    for b in rearranged {
        if rem >= 1_000_000_000_000_000 {
            rem %= 97;
        }
        rem = if b.is_ascii_digit() {
            rem * 10 + u64::from(b - b'0')
        } else {
            rem * 100 + u64::from(b - b'A') + 10
        };
    }
    (rem % 97) as u32
}

#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct Bic(String);

impl Bic {
    pub fn parse(raw: &str) -> Result<Bic, AccountProblem> {
        let s = compact(raw, false);
        let b = s.as_bytes();
        if !(b.len() == 8 || b.len() == 11)
            || !b[..6].iter().all(u8::is_ascii_uppercase)
            || !b[6..].iter().all(u8::is_ascii_alphanumeric)
        {
            return Err(AccountProblem::BicShape);
        }
        if !is_country(&s[4..6]) {
            return Err(AccountProblem::BicCountry(s[4..6].to_string()));
        }
        Ok(Bic(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn country(&self) -> &str {
        &self.0[4..6]
    }
}

/// China National Advanced Payment System bank code (大额支付系统行号 / 联行号): 12 digits.
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct Cnaps(String);

impl Cnaps {
    pub fn parse(raw: &str) -> Result<Cnaps, AccountProblem> {
        let s = compact(raw, true);
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Cnaps(s))
        } else {
            Err(AccountProblem::CnapsShape)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A domestic account or card number: digits only, length allowed by the bank profile.
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct DomesticAccount(String);

impl DomesticAccount {
    pub fn parse(raw: &str, min: usize, max: usize) -> Result<DomesticAccount, AccountProblem> {
        let s = compact(raw, true);
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AccountProblem::NotDigits);
        }
        if s.len() < min || s.len() > max {
            return Err(AccountProblem::DomesticLength {
                found: s.len(),
                min,
                max,
            });
        }
        Ok(DomesticAccount(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 16–19 digit number is most likely a bank card (UnionPay 62…), which carries a Luhn check
    /// digit. Returns `Some(false)` when it looks like a card and the digit does not match.
    pub fn card_luhn_ok(&self) -> Option<bool> {
        (16..=19)
            .contains(&self.0.len())
            .then(|| luhn_valid(&self.0))
    }
}

pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// Where the money goes.
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Account {
    Iban(Iban),
    Domestic(DomesticAccount),
}

impl Account {
    pub fn as_str(&self) -> &str {
        match self {
            Account::Iban(i) => i.as_str(),
            Account::Domestic(d) => d.as_str(),
        }
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The creditor's bank.
#[derive(Clone, PartialEq, Eq, Hash, Debug, serde::Serialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum BankId {
    Bic(Bic),
    Cnaps(Cnaps),
}

impl BankId {
    pub fn as_str(&self) -> &str {
        match self {
            BankId::Bic(b) => b.as_str(),
            BankId::Cnaps(c) => c.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_and_spaced_forms_are_one_account() {
        let a = Iban::parse("ＤＥ８９　３７０４　００４４　０５３２　０１３０　００").unwrap();
        let b = Iban::parse("de89 3704 0044 0532 0130 00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "DE89370400440532013000");
        let d = DomesticAccount::parse("６２２２－０２１２－３４５６－７８９０", 9, 25).unwrap();
        assert_eq!(d.as_str(), "6222021234567890");
    }

    #[test]
    fn iban_vectors_from_many_countries() {
        // Examples from the SWIFT IBAN registry and national banks.
        for ok in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB29NWBK60161331926819",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "CH9300762011623852957",
            "AT611904300234573201",
            "ES9121000418450200051332",
            "IT60X0542811101000000123456",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
            "SA0380000000608010167519",
            "BR1800360305000010009795493C1",
            "fr1420041010050500013m02606",
        ] {
            assert!(
                Iban::parse(ok).is_ok(),
                "{ok} refused: {:?}",
                Iban::parse(ok)
            );
        }
        assert_eq!(
            Iban::parse("DE89370400440532013001"),
            Err(AccountProblem::IbanChecksum)
        );
        assert_eq!(
            Iban::parse("DE8937040044053201300"),
            Err(AccountProblem::IbanLength {
                country: "DE".into(),
                expected: 22,
                found: 21
            })
        );
        assert_eq!(
            Iban::parse("US64SVBKUS6S3300958879"),
            Err(AccountProblem::IbanCountry("US".into()))
        );
        assert_eq!(
            Iban::parse("6228480402564890018"),
            Err(AccountProblem::IbanShape)
        );
        assert_eq!(Iban::parse("DE89-3704"), Err(AccountProblem::IbanShape));
    }

    #[test]
    fn transposed_digits_are_caught() {
        assert_eq!(
            Iban::parse("GB29NWBK60161331926891"),
            Err(AccountProblem::IbanChecksum)
        );
    }

    #[test]
    fn bic_shapes() {
        for ok in [
            "DEUTDEFF",
            "DEUTDEFF500",
            "BKCHCNBJ",
            "ICBKCNBJSHI",
            "UBSWCHZH80A",
            "deutdeff",
        ] {
            assert!(Bic::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Bic::parse("DEUT1234"), Err(AccountProblem::BicShape));
        assert_eq!(Bic::parse("DEUTDEF"), Err(AccountProblem::BicShape));
        assert_eq!(Bic::parse("DEUTDEFF5"), Err(AccountProblem::BicShape));
        assert_eq!(
            Bic::parse("DEUTQQFF"),
            Err(AccountProblem::BicCountry("QQ".into()))
        );
    }

    #[test]
    fn cnaps_codes() {
        assert!(Cnaps::parse("102290002916").is_ok());
        assert!(Cnaps::parse("1022 9000 2916").is_ok());
        assert_eq!(Cnaps::parse("10229000291"), Err(AccountProblem::CnapsShape));
        assert_eq!(
            Cnaps::parse("10229000291X"),
            Err(AccountProblem::CnapsShape)
        );
    }

    #[test]
    fn luhn_on_cards() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        let card = DomesticAccount::parse("6228 4804 0256 4890 018", 8, 32).unwrap();
        assert_eq!(card.as_str(), "6228480402564890018");
        assert_eq!(card.card_luhn_ok(), Some(true));
        let bad = DomesticAccount::parse("6228480402564890019", 8, 32).unwrap();
        assert_eq!(bad.card_luhn_ok(), Some(false));
        let short = DomesticAccount::parse("31001234567", 8, 32).unwrap();
        assert_eq!(short.card_luhn_ok(), None);
    }

    #[test]
    fn domestic_account_rules() {
        assert_eq!(
            DomesticAccount::parse("6.22848E+18", 8, 32),
            Err(AccountProblem::NotDigits)
        );
        assert_eq!(
            DomesticAccount::parse("1234", 8, 32),
            Err(AccountProblem::DomesticLength {
                found: 4,
                min: 8,
                max: 32
            })
        );
    }
}
