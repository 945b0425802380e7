//! Signed links: a token that lets whoever holds it confirm, or cancel, one appointment, until
//! it expires. Stateless to check: HMAC-SHA256 with a key only the extension's owner can read
//! (booking_admin.link_keys), over what the token allows. Pure: no Postgres.
//!
//! `bklnk_` + base64url (no padding) of the body and its 32-byte MAC. The body: version (1),
//! action (1: confirm, 2: cancel), the key's id (4, big-endian), the tenant (16), the
//! appointment (16), the appointment's start the link was made for (8, Unix µs) and the expiry
//! (8, Unix seconds). The MAC covers a purpose label and the body, so the key signs nothing
//! else that could pass for a link; it is compared in constant time. A link made before the
//! appointment moved no longer matches its start: it acts on the time its message named, or
//! not at all.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use uuid::Uuid;

pub const PREFIX: &str = "bklnk_";
const VERSION: u8 = 1;
const PURPOSE: &[u8] = b"booking_engine appointment link v1\0";
const BODY: usize = 1 + 1 + 4 + 16 + 16 + 8 + 8;
const MAC: usize = 32;
/// Keys are 32 random bytes.
pub const KEY_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Confirm,
    Cancel,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "confirm" => Some(Action::Confirm),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Confirm => "confirm",
            Action::Cancel => "cancel",
        }
    }

    fn code(self) -> u8 {
        match self {
            Action::Confirm => 1,
            Action::Cancel => 2,
        }
    }
}

/// What a link allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub key_id: u32,
    pub action: Action,
    pub tenant: Uuid,
    pub appointment: Uuid,
    /// The appointment's start the link was made for, Unix µs.
    pub starts_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

fn body(link: &Link) -> Vec<u8> {
    let mut b = Vec::with_capacity(BODY);
    b.push(VERSION);
    b.push(link.action.code());
    b.extend_from_slice(&link.key_id.to_be_bytes());
    b.extend_from_slice(link.tenant.as_bytes());
    b.extend_from_slice(link.appointment.as_bytes());
    b.extend_from_slice(&link.starts_at.to_be_bytes());
    b.extend_from_slice(&link.expires_at.to_be_bytes());
    b
}

fn mac_key(key: &[u8]) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, key)
}

fn signed_part(body: &[u8]) -> Vec<u8> {
    [PURPOSE, body].concat()
}

/// The token for `link`, signed with `key`.
pub fn sign(key: &[u8], link: &Link) -> String {
    let b = body(link);
    let tag = hmac::sign(&mac_key(key), &signed_part(&b));
    let mut all = b;
    all.extend_from_slice(tag.as_ref());
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(all))
}

/// A token taken apart: what it claims to allow, and what its MAC must be checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub link: Link,
    body: Vec<u8>,
    mac: Vec<u8>,
}

/// The parts of a token, or None when it is not one (prefix, encoding, length, version, action).
pub fn parse(token: &str) -> Option<Presented> {
    let all = URL_SAFE_NO_PAD.decode(token.trim().strip_prefix(PREFIX)?).ok()?;
    if all.len() != BODY + MAC || all[0] != VERSION {
        return None;
    }
    let action = match all[1] {
        1 => Action::Confirm,
        2 => Action::Cancel,
        _ => return None,
    };
    let int8 = |at: usize| i64::from_be_bytes(all[at..at + 8].try_into().expect("8 bytes"));
    let link = Link {
        key_id: u32::from_be_bytes(all[2..6].try_into().expect("4 bytes")),
        action,
        tenant: Uuid::from_slice(&all[6..22]).ok()?,
        appointment: Uuid::from_slice(&all[22..38]).ok()?,
        starts_at: int8(38),
        expires_at: int8(46),
    };
    Some(Presented { link, body: all[..BODY].to_vec(), mac: all[BODY..].to_vec() })
}

/// Whether the token's MAC is the one `key` makes for its body (constant time).
pub fn authentic(key: &[u8], p: &Presented) -> bool {
    hmac::verify(&mac_key(key), &signed_part(&p.body), &p.mac).is_ok()
}

/// What the single-use record keeps of a token: the SHA-256 of its bytes, never the token.
pub fn digest(p: &Presented) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, &[p.body.as_slice(), p.mac.as_slice()].concat()).as_ref().to_vec()
}

/// A new key from the operating system's random source.
pub fn new_key() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut key = vec![0u8; KEY_BYTES];
    ring::rand::SystemRandom::new().fill(&mut key).expect("the operating system's random source");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(action: Action) -> Link {
        Link {
            key_id: 3,
            action,
            tenant: Uuid::from_u128(1),
            appointment: Uuid::from_u128(2),
            starts_at: 1_806_400_800_000_000,
            expires_at: 1_806_400_800,
        }
    }

    #[test]
    fn a_token_says_what_it_allows_and_only_its_key_made_it() {
        let key = [7u8; KEY_BYTES];
        let token = sign(&key, &link(Action::Cancel));
        assert!(token.starts_with(PREFIX) && token.len() < 130, "{token}");
        let p = parse(&token).expect("a token parses");
        assert_eq!(p.link, link(Action::Cancel));
        assert!(authentic(&key, &p));
        assert!(!authentic(&[8u8; KEY_BYTES], &p), "another installation's key did not make it");
    }

    #[test]
    fn every_altered_byte_is_noticed() {
        let key = [7u8; KEY_BYTES];
        let raw = URL_SAFE_NO_PAD.decode(sign(&key, &link(Action::Confirm)).strip_prefix(PREFIX).unwrap()).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&bad));
            // Either it no longer parses (version, action) or its MAC fails.
            assert!(parse(&token).is_none_or(|p| !authentic(&key, &p)), "byte {i} altered went unnoticed");
        }
    }

    #[test]
    fn a_confirm_token_is_not_a_cancel_token_and_digests_differ() {
        let key = [7u8; KEY_BYTES];
        let (c, x) = (sign(&key, &link(Action::Confirm)), sign(&key, &link(Action::Cancel)));
        let (pc, px) = (parse(&c).unwrap(), parse(&x).unwrap());
        assert_eq!((pc.link.action, px.link.action), (Action::Confirm, Action::Cancel));
        assert_ne!(digest(&pc), digest(&px));
        assert_eq!(digest(&pc), digest(&parse(&c).unwrap()));
    }

    #[test]
    fn what_is_not_a_token() {
        for bad in ["", "bklnk_", "bkinv_AAAA", "bklnk_!!!", "bklnk_AAAA"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Action::parse("cancel"), Some(Action::Cancel));
        assert_eq!(Action::parse("delete"), None);
        assert_eq!(new_key().len(), KEY_BYTES);
    }
}
