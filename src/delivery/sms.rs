//! The SMS channel's pure side: phone numbers in E.164, the request each provider adapter sends
//! (a Twilio-style form POST with basic auth, or a generic JSON POST), the provider's message
//! id in its answer, and what an inbound message or delivery receipt says (STOP and its kin).

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use regex::Regex;
use serde_json::{json, Value};

/// The longest text sent: what providers accept in one request (they split it into segments).
pub const MAX_TEXT: usize = 1600;

/// A phone number as stored: E.164 (`+`, a country code that does not start with 0, at most 15
/// digits in all). Spaces, dots, dashes and parentheses people write between the digits are
/// dropped first; anything else is refused with the reason.
pub fn normalize_phone(input: &str) -> Result<String, String> {
    static E164: OnceLock<Regex> = OnceLock::new();
    let e164 = E164.get_or_init(|| Regex::new(r"^\+[1-9][0-9]{6,14}$").expect("valid pattern"));
    let compact: String = input.trim().chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')')).collect();
    if e164.is_match(&compact) {
        Ok(compact)
    } else {
        Err(format!(
            "{input:?} is not a phone number in E.164 form: + and the country code, then the number, 7 to 15 digits in all (+41 44 668 18 00)"
        ))
    }
}

/// A sender: an E.164 number, or an alphanumeric sender id (1 to 11 letters, digits or spaces,
/// at least one letter), as carriers accept them.
pub fn normalize_sender(input: &str) -> Result<String, String> {
    static ALNUM: OnceLock<Regex> = OnceLock::new();
    let alnum = ALNUM.get_or_init(|| Regex::new(r"^[A-Za-z0-9 ]{1,11}$").expect("valid pattern"));
    let t = input.trim();
    if t.starts_with('+') || t.chars().all(|c| c.is_ascii_digit() || " .-()".contains(c)) {
        return normalize_phone(t);
    }
    if alnum.is_match(t) && t.chars().any(|c| c.is_ascii_alphabetic()) {
        Ok(t.to_string())
    } else {
        Err(format!("{input:?} is neither an E.164 number nor an alphanumeric sender id of 1 to 11 characters"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `To`, `From`, `Body` as a form, basic auth: Twilio's Messages API and those modelled on it.
    Twilio,
    /// `{"to", "from", "text", "reference"}` as JSON, bearer or basic auth.
    Json,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "twilio" => Some(Provider::Twilio),
            "json" => Some(Provider::Json),
            _ => None,
        }
    }
}

/// How the provider knows it is us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Basic { user: String, password: String },
    Bearer(String),
    None,
}

impl Auth {
    /// The `Authorization` header's value.
    pub fn header(&self) -> Option<String> {
        match self {
            Auth::Basic { user, password } => Some(format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))),
            Auth::Bearer(token) => Some(format!("Bearer {token}")),
            Auth::None => None,
        }
    }
}

/// One SMS request's body and content type.
pub fn request(provider: Provider, to: &str, from: &str, text: &str, reference: &str) -> (Vec<u8>, &'static str) {
    let text: String = text.chars().take(MAX_TEXT).collect();
    match provider {
        Provider::Twilio => {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("To", to)
                .append_pair("From", from)
                .append_pair("Body", &text)
                .finish();
            (form.into_bytes(), "application/x-www-form-urlencoded")
        }
        Provider::Json => (
            serde_json::to_vec(&json!({"to": to, "from": from, "text": text, "reference": reference}))
                .unwrap_or_default(),
            "application/json",
        ),
    }
}

/// The provider's id for the message it accepted, from its answer: Twilio's `sid`, else `id`
/// or `message_id` (a string or a number).
pub fn provider_message_id(answer: &str) -> Option<String> {
    let v: Value = serde_json::from_str(answer).ok()?;
    ["sid", "message_id", "id"].iter().find_map(|k| match v.get(k)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// What an inbound callback says, from the provider's fields (Twilio's names, or the generic
/// JSON adapter's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A delivery receipt: the provider's message id and its status (lower case).
    Receipt { message_id: String, status: String },
    /// A message from a phone: what it means for that number.
    Message { from: String, keyword: Keyword },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// STOP and its kin: no more SMS from this sender's tenant.
    Stop,
    /// START and its kin: SMS again.
    Start,
    /// Anything else: recorded as received, nothing changes.
    Other,
}

impl Keyword {
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "stop",
            Keyword::Start => "start",
            Keyword::Other => "other",
        }
    }
}

/// The carriers' and Twilio's opt-out and opt-in words, matched as the whole message (case,
/// spaces and a trailing full stop aside).
pub fn keyword(text: &str) -> Keyword {
    let word = text.trim().trim_end_matches(['.', '!']).trim().to_ascii_uppercase();
    match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "OPTOUT" | "REVOKE" | "ARRET" | "HALT" => {
            Keyword::Stop
        }
        "START" | "UNSTOP" | "YES" | "SUBSCRIBE" => Keyword::Start,
        _ => Keyword::Other,
    }
}

/// Reads an inbound callback's fields: a receipt when it names a message and a status, else a
/// message when it names its sender; an error otherwise.
pub fn inbound(doc: &Value) -> Result<Inbound, String> {
    let field = |names: &[&str]| names.iter().find_map(|n| doc.get(n).and_then(Value::as_str)).map(str::to_string);
    let message_id = field(&["MessageSid", "SmsSid", "message_id", "id"]);
    let status = field(&["MessageStatus", "SmsStatus", "status"]);
    let kind = field(&["type"]);
    if kind.as_deref() != Some("inbound") {
        if let (Some(message_id), Some(status)) = (message_id, status) {
            return Ok(Inbound::Receipt { message_id, status: status.to_ascii_lowercase() });
        }
    }
    match (field(&["From", "from"]), field(&["Body", "text", "body"])) {
        (Some(from), Some(text)) => Ok(Inbound::Message { from: normalize_phone(&from)?, keyword: keyword(&text) }),
        _ => Err("an inbound callback is a receipt (message_id and status) or a message (from and text)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers_are_kept_in_e164() {
        assert_eq!(normalize_phone("+41 44 668 18 00").unwrap(), "+41446681800");
        assert_eq!(normalize_phone(" +1 (415) 555-2671 ").unwrap(), "+14155552671");
        for bad in ["0446681800", "+0446681800", "+41 44 668 18 00 99 999", "+41abc", "", "+123456", "41446681800"] {
            assert!(normalize_phone(bad).is_err(), "{bad:?}");
        }
        assert_eq!(normalize_sender("Salon Nova").unwrap(), "Salon Nova");
        assert_eq!(normalize_sender("+41 44 668 18 00").unwrap(), "+41446681800");
        assert!(normalize_sender("A very long sender").is_err());
        assert!(normalize_sender("12345").is_err(), "digits only must be a number");
    }

    #[test]
    fn the_twilio_adapter_posts_a_form_with_basic_auth() {
        let (body, ct) = request(Provider::Twilio, "+41791234567", "+41446681800", "Cut & dry, 10:00?", "msg_1");
        assert_eq!(ct, "application/x-www-form-urlencoded");
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "To=%2B41791234567&From=%2B41446681800&Body=Cut+%26+dry%2C+10%3A00%3F"
        );
        let auth = Auth::Basic { user: "AC1".into(), password: "tok".into() };
        assert_eq!(auth.header().unwrap(), format!("Basic {}", STANDARD.encode("AC1:tok")));
        assert_eq!(Auth::Bearer("k".into()).header().unwrap(), "Bearer k");
    }

    #[test]
    fn the_json_adapter_posts_json_and_long_texts_are_cut() {
        let long = "x".repeat(MAX_TEXT + 10);
        let (body, ct) = request(Provider::Json, "+41791234567", "Salon", &long, "msg_2");
        assert_eq!(ct, "application/json");
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["to"].as_str(), v["from"].as_str(), v["reference"].as_str()),
            (Some("+41791234567"), Some("Salon"), Some("msg_2"))
        );
        assert_eq!(v["text"].as_str().unwrap().len(), MAX_TEXT);
    }

    #[test]
    fn the_providers_message_id_is_read_from_the_answer() {
        assert_eq!(provider_message_id(r#"{"sid": "SM123", "status": "queued"}"#).as_deref(), Some("SM123"));
        assert_eq!(provider_message_id(r#"{"id": 42}"#).as_deref(), Some("42"));
        assert_eq!(provider_message_id("ok"), None);
    }

    #[test]
    fn receipts_stops_and_starts_are_told_apart() {
        let r = inbound(&json!({"MessageSid": "SM1", "MessageStatus": "Delivered"})).unwrap();
        assert_eq!(r, Inbound::Receipt { message_id: "SM1".into(), status: "delivered".into() });
        let s = inbound(&json!({"From": "+41 79 123 45 67", "Body": " stop. "})).unwrap();
        assert_eq!(s, Inbound::Message { from: "+41791234567".into(), keyword: Keyword::Stop });
        let g = inbound(
            &json!({"type": "inbound", "from": "+41791234567", "text": "Unstop", "id": "x", "status": "received"}),
        )
        .unwrap();
        assert_eq!(g, Inbound::Message { from: "+41791234567".into(), keyword: Keyword::Start });
        assert_eq!(keyword("See you then"), Keyword::Other);
        assert!(inbound(&json!({"from": "nobody", "text": "STOP"})).is_err());
        assert!(inbound(&json!({"hello": 1})).is_err());
    }
}
