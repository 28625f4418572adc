//! Character sets banks accept in names and remittance text, and the EPC transliteration into
//! the SEPA Latin set. Pure: the same function tells validation what would change and gives the
//! renderer the converted text, so the two can never disagree.

use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Charset {
    /// EPC basic Latin set: `a-z A-Z 0-9 / - ? : ( ) . , ' +` and space.
    #[default]
    SepaLatin,
    /// Any printable Unicode text (domestic Chinese banks, most non-SEPA banks).
    Utf8,
}

/// One character that is not sent as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharChange {
    /// Would be sent as `with` (a warning: the payee sees a slightly different text).
    Replaced { ch: char, with: &'static str },
    /// Cannot be represented at all (an error: we never drop characters).
    Unsupported { ch: char },
}

fn sepa_basic(c: char) -> bool {
    c.is_ascii_alphanumeric() || " /-?:().,'+".contains(c)
}

/// EPC-style transliteration of the Latin letters that European names use.
fn sepa_replacement(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'À' | 'Á' | 'Â' | 'Ã' | 'Ä' | 'Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'æ' => "ae",
        'Æ' => "AE",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'Ç' | 'Ć' | 'Č' | 'Ĉ' | 'Ċ' => "C",
        'ď' | 'đ' | 'ð' => "d",
        'Ď' | 'Đ' | 'Ð' => "D",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => "E",
        'ğ' | 'ģ' => "g",
        'Ğ' | 'Ģ' => "G",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'Į' | 'İ' => "I",
        'ķ' => "k",
        'Ķ' => "K",
        'ĺ' | 'ļ' | 'ľ' | 'ł' => "l",
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ł' => "L",
        'ñ' | 'ń' | 'ņ' | 'ň' => "n",
        'Ñ' | 'Ń' | 'Ņ' | 'Ň' => "N",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => "o",
        'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ö' | 'Ø' | 'Ō' | 'Ő' => "O",
        'œ' => "oe",
        'Œ' => "OE",
        'ŕ' | 'ř' => "r",
        'Ŕ' | 'Ř' => "R",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'Ś' | 'Š' | 'Ş' | 'Ș' => "S",
        'ß' => "ss",
        'ť' | 'ţ' | 'ț' => "t",
        'Ť' | 'Ţ' | 'Ț' => "T",
        'þ' => "th",
        'Þ' => "TH",
        'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'Ù' | 'Ú' | 'Û' | 'Ü' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => "U",
        'ý' | 'ÿ' => "y",
        'Ý' | 'Ÿ' => "Y",
        'ź' | 'ż' | 'ž' => "z",
        'Ź' | 'Ż' | 'Ž' => "Z",
        '&' => "+",
        '_' | '–' | '—' | '‐' => "-",
        '"' | '`' | '´' | '‘' | '’' | '“' | '”' | '„' => "'",
        '\u{a0}' | '\u{202f}' | '\t' => " ",
        _ => return None,
    })
}

/// Converts `text` for `charset`, reporting every character that changes or cannot be sent.
/// The converted text is returned even when there are unsupported characters (they are left in),
/// so that callers can show it; such text must not be sent.
pub fn convert(text: &str, charset: Charset) -> (Cow<'_, str>, Vec<CharChange>) {
    let mut changes = Vec::new();
    let fits = |c: char| match charset {
        Charset::SepaLatin => sepa_basic(c),
        Charset::Utf8 => !c.is_control(),
    };
    if text.chars().all(fits) {
        return (Cow::Borrowed(text), changes);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if fits(c) {
            out.push(c);
        } else if let Some(with) = (charset == Charset::SepaLatin)
            .then(|| sepa_replacement(c))
            .flatten()
        {
            if !changes
                .iter()
                .any(|x| matches!(x, CharChange::Replaced { ch, .. } if *ch == c))
            {
                changes.push(CharChange::Replaced { ch: c, with });
            }
            out.push_str(with);
        } else {
            if !changes
                .iter()
                .any(|x| matches!(x, CharChange::Unsupported { ch } if *ch == c))
            {
                changes.push(CharChange::Unsupported { ch: c });
            }
            out.push(c);
        }
    }
    (Cow::Owned(out), changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_latin_passes_untouched() {
        let (t, ch) = convert("ACME Trading Co. (Shanghai) 2026/11", Charset::SepaLatin);
        assert!(matches!(t, Cow::Borrowed(_)));
        assert!(ch.is_empty());
    }

    #[test]
    fn umlauts_accents_and_sharp_s_are_transliterated_and_reported() {
        let (t, ch) = convert(
            "Müller & Söhne Straße, Société Générale",
            Charset::SepaLatin,
        );
        assert_eq!(t, "Muller + Sohne Strasse, Societe Generale");
        assert_eq!(
            ch,
            vec![
                CharChange::Replaced {
                    ch: 'ü', with: "u"
                },
                CharChange::Replaced { ch: '&', with: "+" },
                CharChange::Replaced {
                    ch: 'ö', with: "o"
                },
                CharChange::Replaced {
                    ch: 'ß',
                    with: "ss"
                },
                CharChange::Replaced {
                    ch: 'é', with: "e"
                },
            ]
        );
    }

    #[test]
    fn chinese_in_sepa_is_unsupported_but_fine_in_utf8() {
        let (_, ch) = convert("北京贸易", Charset::SepaLatin);
        assert_eq!(ch.len(), 4);
        assert!(
            ch.iter()
                .all(|c| matches!(c, CharChange::Unsupported { .. }))
        );
        let (t, ch) = convert("北京贸易有限公司", Charset::Utf8);
        assert_eq!(t, "北京贸易有限公司");
        assert!(ch.is_empty());
    }

    #[test]
    fn control_characters_are_never_sent() {
        let (_, ch) = convert("a\u{7}b", Charset::Utf8);
        assert_eq!(ch, vec![CharChange::Unsupported { ch: '\u{7}' }]);
    }
}
