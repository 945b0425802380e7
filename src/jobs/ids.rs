//! Job ids for a bulk enqueue: version 4 UUIDs cut from one buffer of random bytes, so a
//! hundred thousand ids cost one draw from the server's random source instead of one
//! `gen_random_uuid()` call each.

/// One UUID per 16 bytes of `random` (a trailing partial chunk is ignored), with the version
/// (4) and variant (RFC 4122) bits set as `gen_random_uuid()` sets them.
pub fn v4_from_random(random: &[u8]) -> Vec<uuid::Uuid> {
    random
        .chunks_exact(16)
        .map(|c| uuid::Builder::from_random_bytes(c.try_into().expect("chunks_exact(16)")).into_uuid())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_4_uuid_per_16_bytes() {
        let random: Vec<u8> = (0..=255u8).cycle().take(16 * 3 + 5).collect();
        let ids = v4_from_random(&random);
        assert_eq!(ids.len(), 3);
        for id in &ids {
            assert_eq!(id.get_version_num(), 4);
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        // The random bits are the input's: different bytes, different ids.
        assert_ne!(ids[0], ids[1]);
        assert_eq!(&ids[0].as_bytes()[..6], &random[..6]);
    }
}
