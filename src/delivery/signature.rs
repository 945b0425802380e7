//! Standard Webhooks signatures (https://www.standardwebhooks.com): secrets are `whsec_` and
//! the base64 of 24 to 64 random bytes; a message is signed as HMAC-SHA256 of
//! `"{webhook-id}.{webhook-timestamp}.{body}"` and the `webhook-signature` header carries one
//! `v1,<base64>` per secret, space-separated, so a receiver accepts the message while secrets
//! rotate. Pure: no Postgres.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;

const PREFIX: &str = "whsec_";
/// The spec allows 24 to 64 bytes; we generate 32.
const MIN_KEY: usize = 24;
const MAX_KEY: usize = 64;
const GENERATED_KEY: usize = 32;

/// Why a secret is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct BadSecret(pub String);

/// The key bytes of a `whsec_...` secret.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let b64 = secret
        .strip_prefix(PREFIX)
        .ok_or_else(|| BadSecret(format!("a secret starts with \"{PREFIX}\" followed by base64")))?;
    let key = STANDARD.decode(b64).map_err(|e| BadSecret(format!("the part after \"{PREFIX}\" is not base64: {e}")))?;
    if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
        return Err(BadSecret(format!("a secret's key has {MIN_KEY} to {MAX_KEY} bytes, this one has {}", key.len())));
    }
    Ok(key)
}

/// A new random secret in the `whsec_` format.
pub fn generate_secret() -> String {
    use ring::rand::SecureRandom;
    let mut key = [0u8; GENERATED_KEY];
    ring::rand::SystemRandom::new().fill(&mut key).expect("the operating system's random source");
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// `v1,<base64 HMAC-SHA256>` of one message with one key.
pub fn sign_one(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The `webhook-signature` header: one signature per key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter().map(|k| sign_one(k, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why a signature does not verify.
#[derive(Debug, PartialEq, Eq)]
pub enum Unverified {
    Secret(BadSecret),
    Timestamp(String),
    NoMatch,
}

/// Verifies a received message as a receiver must: the timestamp within `tolerance_s` of
/// `now_s` (replays of old messages are refused), and some `v1` signature of the header equal
/// (in constant time) to the one computed with `secret`.
pub fn verify(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), Unverified> {
    let key = parse_secret(secret).map_err(Unverified::Secret)?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Unverified::Timestamp(format!("webhook-timestamp is not Unix seconds: {timestamp:?}")))?;
    if (now_s - ts).abs() > tolerance_s {
        return Err(Unverified::Timestamp(format!(
            "webhook-timestamp {ts} is more than {tolerance_s} s from now ({now_s})"
        )));
    }
    let k = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let mut signed = Vec::with_capacity(msg_id.len() + body.len() + 24);
    signed.extend_from_slice(format!("{msg_id}.{ts}.").as_bytes());
    signed.extend_from_slice(body);
    let matches = header
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|sig| STANDARD.decode(sig).is_ok_and(|tag| hmac::verify(&k, &signed, &tag).is_ok()));
    if matches {
        Ok(())
    } else {
        Err(Unverified::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification's reference libraries.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_as_the_specification_example() {
        let key = parse_secret(SPEC_SECRET).unwrap();
        assert_eq!(sign_one(&key, SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn verifies_within_tolerance_and_refuses_tampering_and_old_messages() {
        let h = format!("v1,bm90IHRoaXMgb25l {SPEC_SIG}");
        assert_eq!(verify(SPEC_SECRET, SPEC_ID, "1614265330", SPEC_BODY, &h, SPEC_TS + 10, 300), Ok(()));
        assert_eq!(verify(SPEC_SECRET, SPEC_ID, "1614265330", b"{}", &h, SPEC_TS, 300), Err(Unverified::NoMatch));
        assert!(matches!(
            verify(SPEC_SECRET, SPEC_ID, "1614265330", SPEC_BODY, &h, SPEC_TS + 301, 300),
            Err(Unverified::Timestamp(_))
        ));
        assert!(matches!(verify("nope", SPEC_ID, "1", SPEC_BODY, &h, 1, 300), Err(Unverified::Secret(_))));
    }

    #[test]
    fn one_signature_per_key_so_rotation_keeps_old_receivers_working() {
        let old = parse_secret(SPEC_SECRET).unwrap();
        let new_secret = generate_secret();
        let new = parse_secret(&new_secret).unwrap();
        let header = signature_header(&[new, old], SPEC_ID, SPEC_TS, SPEC_BODY);
        assert_eq!(header.split(' ').count(), 2);
        for s in [SPEC_SECRET, new_secret.as_str()] {
            assert_eq!(verify(s, SPEC_ID, &SPEC_TS.to_string(), SPEC_BODY, &header, SPEC_TS, 5), Ok(()));
        }
    }

    #[test]
    fn secrets_must_have_the_prefix_base64_and_a_sane_length() {
        assert!(parse_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(parse_secret("whsec_***").is_err());
        assert!(parse_secret("whsec_c2hvcnQ=").is_err());
        assert_eq!(parse_secret(&generate_secret()).unwrap().len(), 32);
        assert_ne!(generate_secret(), generate_secret());
    }
}
