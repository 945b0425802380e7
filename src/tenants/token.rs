//! Secret tokens handed out once: invitations (shown to the member who invites) and holds
//! (shown to whoever reserved a slot during checkout). The database keeps only the SHA-256 of a
//! token's secret part, and compares a presented one with that hash in constant time.
//!
//! A prefix naming the kind (`bkinv_`, `bkhold_`) + base64url (no padding) of: the tenant id (16
//! bytes), the invitation's or hold's id (16 bytes), 32 random bytes. The ids let the lookup go
//! straight to the tenant's row (one shard on Citus); only the random part is secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

/// An invitation's token.
pub const INVITATION: &str = "bkinv_";
/// A hold's token.
pub const HOLD: &str = "bkhold_";
const SECRET_BYTES: usize = 32;
const BODY_BYTES: usize = 16 + 16 + SECRET_BYTES;

/// A token's parts: the tenant and the row it names, and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub tenant: Uuid,
    pub id: Uuid,
    pub secret_hash: Vec<u8>,
}

fn hash(secret: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret).as_ref().to_vec()
}

/// A token of the kind `prefix` names for row `id` of `tenant`, from the given random bytes,
/// and the hash to store.
pub fn make(prefix: &str, tenant: Uuid, id: Uuid, secret: [u8; SECRET_BYTES]) -> (String, Vec<u8>) {
    let mut body = Vec::with_capacity(BODY_BYTES);
    body.extend_from_slice(tenant.as_bytes());
    body.extend_from_slice(id.as_bytes());
    body.extend_from_slice(&secret);
    (format!("{prefix}{}", URL_SAFE_NO_PAD.encode(body)), hash(&secret))
}

/// A new token with a secret from the operating system's random source.
pub fn generate(prefix: &str, tenant: Uuid, id: Uuid) -> (String, Vec<u8>) {
    use ring::rand::SecureRandom;
    let mut secret = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new().fill(&mut secret).expect("the operating system's random source");
    make(prefix, tenant, id, secret)
}

/// The parts of a presented token of the kind `prefix` names, or None when it is not one
/// (another prefix, not base64url, not the right length): such a token names nothing.
pub fn parse(prefix: &str, token: &str) -> Option<Presented> {
    let body = URL_SAFE_NO_PAD.decode(token.trim().strip_prefix(prefix)?).ok()?;
    if body.len() != BODY_BYTES {
        return None;
    }
    Some(Presented {
        tenant: Uuid::from_slice(&body[..16]).ok()?,
        id: Uuid::from_slice(&body[16..32]).ok()?,
        secret_hash: hash(&body[32..]),
    })
}

/// Whether two hashes are equal, in time that does not depend on where they differ (the
/// lengths are not secret).
pub fn same_hash(stored: &[u8], presented: &[u8]) -> bool {
    if stored.len() != presented.len() {
        return false;
    }
    let diff = stored.iter().zip(presented).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_invitation_and_matches_only_its_hash() {
        let (t, i) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (token, stored) = make(INVITATION, t, i, [7; SECRET_BYTES]);
        assert!(token.starts_with(INVITATION));
        let p = parse(INVITATION, &token).expect("a token parses");
        assert_eq!((p.tenant, p.id), (t, i));
        assert!(same_hash(&stored, &p.secret_hash));
        // The same ids with another secret: the hash differs.
        let (other, _) = make(INVITATION, t, i, [8; SECRET_BYTES]);
        assert!(!same_hash(&stored, &parse(INVITATION, &other).unwrap().secret_hash));
        // A hold's token is no invitation's, and the other way round.
        let (hold, _) = make(HOLD, t, i, [7; SECRET_BYTES]);
        assert!(hold.starts_with(HOLD));
        assert_eq!(parse(INVITATION, &hold), None);
        assert_eq!(parse(HOLD, &token), None);
        assert_eq!(parse(HOLD, &hold).map(|p| p.id), Some(i));
    }

    #[test]
    fn the_secret_is_not_stored_and_each_token_is_new() {
        let (t, i) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let (a, hash_a) = generate(INVITATION, t, i);
        let (b, _) = generate(INVITATION, t, i);
        assert_ne!(a, b);
        assert_eq!(hash_a.len(), 32);
        let body = URL_SAFE_NO_PAD.decode(a.strip_prefix(INVITATION).unwrap()).unwrap();
        assert!(!body.windows(32).any(|w| w == hash_a.as_slice()), "the token does not carry its hash");
    }

    #[test]
    fn anything_else_is_no_token() {
        for bad in ["", "bkinv_", "bkinv_!!!", "whsec_abc", "bkinv_AAAA"] {
            assert_eq!(parse(INVITATION, bad), None, "{bad:?}");
        }
        let (token, _) = make(INVITATION, Uuid::from_u128(1), Uuid::from_u128(2), [1; SECRET_BYTES]);
        assert_eq!(parse(INVITATION, &token[..token.len() - 2]), None, "truncated");
        assert_eq!(parse(INVITATION, &format!("{token}AA")), None, "too long");
        assert!(!same_hash(&[1, 2], &[1, 2, 3]));
    }
}
