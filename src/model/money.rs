//! Money: a decimal amount in one currency. Never a float; parsing is strict.

use super::Currency;
use rust_decimal::Decimal;
use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

/// Why a text is not a payable amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountProblem {
    #[error("is not a number")]
    NotANumber,
    #[error("has more decimals than {currency} allows ({allowed})")]
    TooManyDecimals { currency: Currency, allowed: u32 },
    #[error("must be greater than zero")]
    NotPositive,
    #[error("is larger than any payment can be (ISO 20022 amounts have at most 18 digits)")]
    TooLarge,
}

impl Money {
    /// A positive amount with no more decimals than the currency allows.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Money, AmountProblem> {
        if amount.normalize().scale() > currency.minor_units() {
            return Err(AmountProblem::TooManyDecimals {
                currency,
                allowed: currency.minor_units(),
            });
        }
        if amount <= Decimal::ZERO {
            return Err(AmountProblem::NotPositive);
        }
        // At most 18 digits in all (ISO 20022 totalDigits), which also keeps every amount and
        // any sum of a million of them exact in minor units.
        let limit = Decimal::from_i128_with_scale(10_i128.pow(18 - currency.minor_units()), 0);
        if amount >= limit {
            return Err(AmountProblem::TooLarge);
        }
        let mut amount = amount;
        amount.rescale(currency.minor_units());
        Ok(Money { amount, currency })
    }

    /// Parses what people type into a spreadsheet: `1234.5`, `1,234.50`, `¥1,234.50`, `1 234,50` when
    /// `decimal_comma` is set. Thousands separators must group by three; anything else is refused.
    pub fn parse(
        raw: &str,
        currency: Currency,
        decimal_comma: bool,
    ) -> Result<Money, AmountProblem> {
        Money::new(parse_decimal(raw, decimal_comma)?, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The amount in minor units (cents, fen): exact, because the scale was checked.
    pub fn minor_units(&self) -> i64 {
        let mut a = self.amount;
        a.rescale(self.currency.minor_units());
        i64::try_from(a.mantissa()).unwrap_or(i64::MAX)
    }

    pub fn from_minor_units(minor: i64, currency: Currency) -> Money {
        Money {
            amount: Decimal::new(minor, currency.minor_units()),
            currency,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Strict decimal parsing of a spreadsheet amount. A leading minus is kept so that the caller can
/// say "must be greater than zero" instead of "not a number".
pub fn parse_decimal(raw: &str, decimal_comma: bool) -> Result<Decimal, AmountProblem> {
    let mut s = raw.trim();
    for sym in ["¥", "￥", "€", "$", "£", "CNY", "RMB", "EUR", "USD"] {
        if let Some(rest) = s.strip_prefix(sym) {
            s = rest.trim_start();
        }
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (group, point) = if decimal_comma {
        ('.', ',')
    } else {
        (',', '.')
    };
    let (int_part, frac_part) = match body.split_once(point) {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let int_digits = strip_grouping(int_part, group).ok_or(AmountProblem::NotANumber)?;
    let mut text = String::with_capacity(body.len() + 1);
    if negative {
        text.push('-');
    }
    text.push_str(&int_digits);
    if let Some(f) = frac_part {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountProblem::NotANumber);
        }
        text.push('.');
        text.push_str(f);
    }
    if int_digits.is_empty() {
        return Err(AmountProblem::NotANumber);
    }
    text.parse::<Decimal>()
        .map_err(|_| AmountProblem::NotANumber)
}

/// How a text amount separates its decimals, as far as the text itself tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// No `.` or `,` at all (`1234`, `1 234`).
    Plain,
    /// Can only be read with a decimal point: `1,234.56`, `12.5`, `1,234,567`.
    Point,
    /// Can only be read with a decimal comma: `1.234,56`, `12,5`, `1.234.567`.
    Comma,
    /// Either way: `1,234` is 1234 with a point and 1.234 with a comma.
    Either,
}

/// Classifies a text amount by its separators (symbols, sign and spaces ignored).
pub fn written_with(raw: &str) -> Written {
    let (mut points, mut commas, mut last) = (0usize, 0usize, None);
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'.' => points += 1,
            b',' => commas += 1,
            _ => continue,
        }
        last = Some((i, b));
    }
    let Some((last_at, last)) = last else {
        return Written::Plain;
    };
    let decimal = |sep: u8| {
        if sep == b'.' {
            Written::Point
        } else {
            Written::Comma
        }
    };
    let grouping = |sep: u8| {
        if sep == b'.' {
            Written::Comma
        } else {
            Written::Point
        }
    };
    if points > 0 && commas > 0 {
        // Both kinds: the last one separates the decimals.
        return decimal(last);
    }
    if points + commas > 1 {
        // The same separator twice can only group thousands.
        return grouping(last);
    }
    let after = raw[last_at + 1..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    let before = raw[..last_at]
        .bytes()
        .rev()
        .take_while(u8::is_ascii_digit)
        .count();
    let leading_zero = raw.as_bytes().get(last_at - before) == Some(&b'0');
    let could_group = after == 3
        && raw[last_at + 1 + after..].trim().is_empty()
        && (1..=3).contains(&before)
        && !leading_zero;
    if could_group {
        Written::Either
    } else {
        decimal(last)
    }
}

/// `1,234,567` -> `1234567`; a space or narrow no-break space also groups. `12,34` -> None.
fn strip_grouping(int_part: &str, group: char) -> Option<String> {
    let seps = [group, ' ', '\u{a0}', '\u{202f}', '\''];
    if !int_part.contains(seps) {
        return int_part
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| int_part.to_string());
    }
    let groups: Vec<&str> = int_part.split(seps).collect();
    let first_ok = (1..=3).contains(&groups[0].len());
    let rest_ok = groups[1..].iter().all(|g| g.len() == 3);
    let digits = groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    (first_ok && rest_ok && digits).then(|| groups.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ccy(c: &str) -> Currency {
        c.parse().unwrap()
    }

    #[test]
    fn plain_grouped_and_symbol_amounts() {
        for (raw, want) in [
            ("1234.5", "1234.50"),
            ("1,234.50", "1234.50"),
            ("¥1,234.50", "1234.50"),
            (" 8800 ", "8800.00"),
            ("1 234 567.00", "1234567.00"),
            ("+12", "12.00"),
        ] {
            let m = Money::parse(raw, Currency::CNY, false).unwrap();
            assert_eq!(m.amount().to_string(), want, "{raw}");
        }
        let m = Money::parse("1.234,56", Currency::EUR, true).unwrap();
        assert_eq!(m.minor_units(), 123456);
    }

    #[test]
    fn separators_tell_how_an_amount_is_written() {
        for (raw, want) in [
            ("1234", Written::Plain),
            ("1 234", Written::Plain),
            ("1,234.56", Written::Point),
            ("12.5", Written::Point),
            ("1234.567", Written::Point),
            ("1,234,567", Written::Point),
            ("0.500", Written::Point),
            ("1.234,56", Written::Comma),
            ("12,5", Written::Comma),
            ("1.234.567", Written::Comma),
            ("1 234,56", Written::Comma),
            ("€ 0,999", Written::Comma),
            ("1,234", Written::Either),
            ("123.456", Written::Either),
            ("¥1,234", Written::Either),
            ("-1.234", Written::Either),
        ] {
            assert_eq!(written_with(raw), want, "{raw}");
        }
    }

    #[test]
    fn minor_units_per_currency() {
        assert_eq!(
            Money::parse("1000", ccy("JPY"), false)
                .unwrap()
                .minor_units(),
            1000
        );
        assert_eq!(
            Money::parse("1.5", ccy("BHD"), false)
                .unwrap()
                .minor_units(),
            1500
        );
        assert_eq!(
            Money::parse("0.01", Currency::EUR, false)
                .unwrap()
                .minor_units(),
            1
        );
        assert_eq!(
            Money::from_minor_units(123456, Currency::EUR).to_string(),
            "1234.56 EUR"
        );
    }

    #[test]
    fn refusals() {
        use AmountProblem::*;
        let cases = [
            ("abc", Currency::EUR, NotANumber),
            ("", Currency::EUR, NotANumber),
            ("12,34", Currency::EUR, NotANumber),
            ("1,2345.00", Currency::EUR, NotANumber),
            ("1.", Currency::EUR, NotANumber),
            ("1e5", Currency::EUR, NotANumber),
            ("-50.00", Currency::EUR, NotPositive),
            ("0", Currency::EUR, NotPositive),
            ("0.00", Currency::EUR, NotPositive),
        ];
        for (raw, c, want) in cases {
            assert_eq!(Money::parse(raw, c, false), Err(want), "{raw}");
        }
        assert!(matches!(
            Money::parse("12.345", Currency::EUR, false),
            Err(TooManyDecimals { allowed: 2, .. })
        ));
        assert_eq!(
            Money::parse("79228162514264337593543950335", Currency::EUR, false),
            Err(TooLarge)
        );
        assert_eq!(
            Money::parse("10000000000000000", Currency::EUR, false),
            Err(TooLarge)
        );
        assert!(Money::parse("9999999999999999.99", Currency::EUR, false).is_ok());
        assert!(matches!(
            Money::parse("1000.50", ccy("JPY"), false),
            Err(TooManyDecimals { allowed: 0, .. })
        ));
        // Trailing zeros beyond the minor unit are not extra precision.
        assert!(Money::parse("1000.00", ccy("JPY"), false).is_ok());
    }
}
