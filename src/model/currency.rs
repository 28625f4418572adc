//! ISO 4217 currencies and their minor units. Owns the table; never does IO.

use std::fmt;
use std::str::FromStr;

/// An active ISO 4217 alphabetic code, stored as three ASCII upper-case bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

/// Every active ISO 4217 code (list 1, 2025), fund codes included.
const CODES: &str = "AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL \
BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP \
ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD \
JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP \
MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON \
RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY \
TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG";

/// Codes whose minor unit is not 2.
const MINOR_UNITS: &[(&str, u32)] = &[
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    ("CLF", 4),
    ("UYW", 4),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an ISO 4217 currency code")]
pub struct UnknownCurrency(pub String);

impl Currency {
    pub const CNY: Currency = Currency(*b"CNY");
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");

    pub fn as_str(&self) -> &str {
        // The bytes were checked to be ASCII upper-case letters on construction.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Number of decimals the currency allows (JPY 0, EUR 2, BHD 3).
    pub fn minor_units(&self) -> u32 {
        MINOR_UNITS
            .iter()
            .find(|(c, _)| c.as_bytes() == self.0)
            .map_or(2, |(_, u)| *u)
    }
}

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            let up = [
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ];
            static SORTED: std::sync::OnceLock<Vec<[u8; 3]>> = std::sync::OnceLock::new();
            let codes = SORTED.get_or_init(|| {
                let mut v: Vec<[u8; 3]> = CODES
                    .split_ascii_whitespace()
                    .filter_map(|c| c.as_bytes().try_into().ok())
                    .collect();
                v.sort_unstable();
                v
            });
            if codes.binary_search(&up).is_ok() {
                return Ok(Currency(up));
            }
        }
        Err(UnknownCurrency(t.to_string()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217() {
        for (code, units) in [
            ("CNY", 2),
            ("EUR", 2),
            ("USD", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("CLF", 4),
        ] {
            assert_eq!(
                code.parse::<Currency>().unwrap().minor_units(),
                units,
                "{code}"
            );
        }
    }

    #[test]
    fn parsing_is_case_insensitive_and_trims() {
        assert_eq!(" eur ".parse::<Currency>().unwrap(), Currency::EUR);
        assert_eq!("cny".parse::<Currency>().unwrap().as_str(), "CNY");
    }

    #[test]
    fn unknown_and_malformed_codes_are_refused() {
        for bad in ["XYZ", "EU", "EURO", "", "RMB", "E1R", "€"] {
            assert!(bad.parse::<Currency>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn table_has_no_duplicates_and_exceptions_exist() {
        let codes: Vec<&str> = CODES.split_ascii_whitespace().collect();
        let mut sorted = codes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        for (c, _) in MINOR_UNITS {
            assert!(codes.contains(c), "{c} missing from CODES");
        }
    }
}
