//! PII discovery without guessing: a value counts only when it passes a real check (email
//! syntax, phone number shape, Luhn for payment cards, mod-97 for IBANs), and a column counts
//! when its name says so or when enough of its sampled values pass.

/// A column is PII by value when at least this share of its sampled non-empty values pass
/// one check (the most frequent one names its kind).
pub const VALUE_THRESHOLD: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    Name,
    BirthDate,
    Address,
    NationalId,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::PaymentCard => "payment_card",
            Kind::Iban => "iban",
            Kind::Name => "name",
            Kind::BirthDate => "birth_date",
            Kind::Address => "address",
            Kind::NationalId => "national_id",
        }
    }

    /// The registry's default compliance level for a newly found column of this kind.
    pub fn compliance_level(self) -> &'static str {
        match self {
            Kind::PaymentCard | Kind::Iban | Kind::NationalId => "restricted",
            Kind::Email | Kind::Phone | Kind::BirthDate | Kind::Address => "confidential",
            Kind::Name => "internal",
        }
    }
}

pub fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.rsplit_once('@') else { return false };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels.last().is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// Digits of `v` when it is only digits and the separators `allowed` (none leading or doubled).
fn digits_with(v: &str, allowed: &[u8]) -> Option<Vec<u8>> {
    let b = v.as_bytes();
    if b.is_empty() || !b[0].is_ascii_digit() || !b[b.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            out.push(c - b'0');
        } else if !allowed.contains(&c) || !b[i - 1].is_ascii_digit() {
            return None;
        }
    }
    Some(out)
}

pub fn luhn_ok(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = d as u32;
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// 13 to 19 digits, optionally grouped by spaces or dashes, with a valid Luhn checksum.
pub fn is_payment_card(v: &str) -> bool {
    digits_with(v, b" -").is_some_and(|d| (13..=19).contains(&d.len()) && luhn_ok(&d) && d.iter().any(|&x| x != 0))
}

/// An international number (+ and 8..15 digits, E.164) or a national one starting with 0 or a
/// parenthesised area code (9..12 digits); separators: space, dash, dot, parentheses. A value
/// that reads as an ISO date is not a phone number.
pub fn is_phone(v: &str) -> bool {
    let v = v.trim();
    if v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-' {
        return false;
    }
    let (international, rest) = match v.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, v),
    };
    let national_prefix = rest.starts_with('0') || rest.starts_with('(');
    let stripped: String = rest.chars().filter(|c| *c != '(' && *c != ')').collect();
    let parens_ok = rest.matches('(').count() == rest.matches(')').count() && rest.matches('(').count() <= 1;
    let Some(digits) = digits_with(stripped.trim(), b" -.") else { return false };
    parens_ok
        && if international {
            (8..=15).contains(&digits.len()) && digits[0] != 0
        } else {
            national_prefix && (9..=12).contains(&digits.len())
        }
}

/// Two letters, two check digits, up to 30 alphanumerics (spaces allowed every 4), and the
/// ISO 13616 mod-97 check.
pub fn is_iban(v: &str) -> bool {
    let compact: String = v.chars().filter(|c| *c != ' ').collect::<String>().to_ascii_uppercase();
    let b = compact.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_alphabetic)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b.iter().all(u8::is_ascii_alphanumeric)
    {
        return false;
    }
    let rearranged = compact[4..].bytes().chain(compact[..4].bytes());
    let mut rem: u32 = 0;
    for c in rearranged {
        let value = if c.is_ascii_digit() { (c - b'0') as u32 } else { (c - b'A') as u32 + 10 };
        rem = if value >= 10 { (rem * 100 + value) % 97 } else { (rem * 10 + value) % 97 };
    }
    rem == 1
}

/// The kind of one value, or None when no check passes. Cards come before phones: a Luhn-valid
/// 13..15 digit run is more likely a card than a phone number written without a prefix.
pub fn classify_value(v: &str) -> Option<Kind> {
    let v = v.trim();
    if v.is_empty() || v.len() > 100 {
        return None;
    }
    if is_email(v) {
        Some(Kind::Email)
    } else if is_iban(v) {
        Some(Kind::Iban)
    } else if is_payment_card(v) {
        Some(Kind::PaymentCard)
    } else if is_phone(v) {
        Some(Kind::Phone)
    } else {
        None
    }
}

/// What a column's name says. Bare `name` is only a weak hint (services and tenants have
/// names too): see `classify_column`.
pub fn name_hint(column: &str) -> Option<Kind> {
    let c = column.to_ascii_lowercase();
    let words: Vec<&str> = c.split(|ch: char| !ch.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let has = |w: &str| words.contains(&w);
    let has_any = |ws: &[&str]| ws.iter().any(|w| has(w));
    if has_any(&["email", "mail", "e_mail"]) || c.contains("email") {
        Some(Kind::Email)
    } else if has_any(&["phone", "mobile", "tel", "telephone", "fax"]) || c.contains("phone") {
        Some(Kind::Phone)
    } else if has_any(&["card", "cc", "pan", "ccnum"]) || c.contains("card_number") || c.contains("creditcard") {
        Some(Kind::PaymentCard)
    } else if has_any(&["iban"]) {
        Some(Kind::Iban)
    } else if has_any(&["birth", "dob", "birthday", "birthdate"]) {
        Some(Kind::BirthDate)
    } else if has_any(&["address", "street", "zip", "postcode", "postal", "city"]) {
        Some(Kind::Address)
    } else if has_any(&["ssn", "passport", "national", "ahv"]) {
        Some(Kind::NationalId)
    } else if has_any(&["firstname", "lastname", "surname", "fullname", "given", "family", "maiden"])
        || (has("name") && has_any(&["first", "last", "full", "customer", "user", "contact", "person"]))
    {
        Some(Kind::Name)
    } else {
        None
    }
}

/// How a column's sampled values came out.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub non_empty: usize,
    pub hits: Vec<(Kind, usize)>,
}

impl Sample {
    pub fn of<'a>(values: impl IntoIterator<Item = &'a str>) -> Sample {
        let mut s = Sample::default();
        for v in values {
            if v.trim().is_empty() {
                continue;
            }
            s.non_empty += 1;
            if let Some(k) = classify_value(v) {
                match s.hits.iter_mut().find(|(kind, _)| *kind == k) {
                    Some((_, n)) => *n += 1,
                    None => s.hits.push((k, 1)),
                }
            }
        }
        s
    }

    /// The kind most sampled values pass, when they reach `VALUE_THRESHOLD`.
    pub fn verdict(&self) -> Option<Kind> {
        let (kind, n) = self.hits.iter().max_by_key(|(k, n)| (*n, std::cmp::Reverse(*k)))?;
        (self.non_empty > 0 && *n as f64 >= VALUE_THRESHOLD * self.non_empty as f64).then_some(*kind)
    }
}

/// A column's PII kind: its values decide when they are conclusive, else its name; a bare
/// `name` column counts only in a table where another column holds PII by its values.
pub fn classify_column(column: &str, sample: &Sample, table_has_value_pii: bool) -> Option<Kind> {
    sample
        .verdict()
        .or_else(|| name_hint(column))
        .or_else(|| (column.eq_ignore_ascii_case("name") && table_has_value_pii).then_some(Kind::Name))
}

/// Whether stored text looks like ciphertext: PGP armour as pgcrypto's `armor()` writes it, or
/// the hex/base64 text of `pgp_sym_encrypt`/`encrypt()` output (`\x` bytea text, or long runs
/// of base64 with no spaces).
pub fn looks_encrypted(v: &str) -> bool {
    let v = v.trim();
    if v.starts_with("-----BEGIN PGP MESSAGE-----") {
        return true;
    }
    if let Some(hex) = v.strip_prefix("\\x") {
        return hex.len() >= 32 && hex.len().is_multiple_of(2) && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    v.len() >= 32
        && v.len().is_multiple_of(4)
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_uppercase())
        && v.bytes().any(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.ch", "first.last+tag@mail.example.com", "x_y@sub-domain.io"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["a@b", "@b.ch", "a@.ch", "a..b@c.ch", "a b@c.ch", "a@b.c", "a@-b.ch", "see me @ noon.", "a@b.c0m"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn cards_need_the_luhn_checksum() {
        for ok in ["4111111111111111", "4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005"] {
            assert!(is_payment_card(ok), "{ok}");
        }
        for bad in ["4111111111111112", "411111111111", "0000000000000000", "4111--1111111111111"] {
            assert!(!is_payment_card(bad), "{bad}");
        }
    }

    #[test]
    fn ibans_need_mod_97() {
        for ok in ["CH9300762011623852957", "DE89 3704 0044 0532 0130 00", "gb82west12345698765432"] {
            assert!(is_iban(ok), "{ok}");
        }
        for bad in ["CH9300762011623852958", "DE89370400440532013001", "XX00", "CH93-0076-2011"] {
            assert!(!is_iban(bad), "{bad}");
        }
    }

    #[test]
    fn phones() {
        for ok in ["+41 79 123 45 67", "+1 (415) 555-0100", "044 668 18 00", "(044) 668 1800", "+4915112345678"] {
            assert!(is_phone(ok), "{ok}");
        }
        for bad in
            ["2026-03-01", "12345", "+0 12 345 678", "1234567890", "call 044 668 18 00", "+41 79 123 45 67 89 01 23"]
        {
            assert!(!is_phone(bad), "{bad}");
        }
    }

    #[test]
    fn values_and_columns() {
        assert_eq!(classify_value(" anna@example.com "), Some(Kind::Email));
        assert_eq!(classify_value("4111111111111111"), Some(Kind::PaymentCard));
        assert_eq!(classify_value("Customer asked for a 10:00 slot"), None);
        let s = Sample::of(["a@b.ch", "c@d.ch", "not one", ""]);
        assert_eq!((s.non_empty, s.verdict()), (3, Some(Kind::Email)));
        assert_eq!(Sample::of(["a@b.ch", "x", "y"]).verdict(), None, "one in three is below the threshold");
        assert_eq!(classify_column("notes", &Sample::of(["hello", "world"]), true), None);
        assert_eq!(classify_column("contact_email", &Sample::default(), false), Some(Kind::Email));
        assert_eq!(classify_column("last_name", &Sample::of(["Muster"]), false), Some(Kind::Name));
        assert_eq!(classify_column("name", &Sample::of(["Cut"]), false), None);
        assert_eq!(classify_column("name", &Sample::of(["Anna"]), true), Some(Kind::Name));
        assert_eq!(name_hint("date_of_birth"), Some(Kind::BirthDate));
        assert_eq!(name_hint("staff_id"), None);
        assert_eq!(name_hint("description"), None);
    }

    #[test]
    fn ciphertext() {
        assert!(looks_encrypted("-----BEGIN PGP MESSAGE-----\n\nww0EBwMC..."));
        assert!(looks_encrypted("\\xc30d04070302a1b2c3d4e5f60718293a4b5c6d7e8f"));
        assert!(looks_encrypted("BwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYn"));
        assert!(!looks_encrypted("anna@example.com"));
        assert!(!looks_encrypted("A perfectly ordinary sentence of text"));
    }
}
