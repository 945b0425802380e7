//! SQL functions behind sql/tenants.sql and sql/resources.sql, in schema booking_internal (not
//! exposed, not for PUBLIC): invitation and hold tokens, and the operator's settings for
//! self-service tenants.

#[pgrx::pg_schema]
pub mod booking_internal {
    use pgrx::prelude::*;
    use pgrx::{JsonB, Uuid as PgUuid};
    use serde_json::json;

    use crate::gucs;
    use crate::pg::convert::{to_pg_uuid, to_uuid};
    use crate::tenants::token;

    /// A new invitation token for (tenant, invitation) and the hash of its secret, which is all
    /// the database keeps.
    #[pg_extern(volatile, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn new_invitation_token(
        p_tenant_id: PgUuid,
        p_invitation_id: PgUuid,
    ) -> TableIterator<'static, (name!(token, String), name!(token_hash, Vec<u8>))> {
        TableIterator::once(token::generate(token::INVITATION, to_uuid(p_tenant_id), to_uuid(p_invitation_id)))
    }

    /// The tenant, invitation and secret hash a presented token names; no row when it is not a
    /// token at all.
    #[pg_extern(immutable, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn parse_invitation_token(
        p_token: &str,
    ) -> TableIterator<'static, (name!(tenant_id, PgUuid), name!(invitation_id, PgUuid), name!(secret_hash, Vec<u8>))>
    {
        TableIterator::new(
            token::parse(token::INVITATION, p_token).map(|p| (to_pg_uuid(p.tenant), to_pg_uuid(p.id), p.secret_hash)),
        )
    }

    /// A new hold token for (tenant, hold) and the hash of its secret, which is all the database
    /// keeps (sql/resources.sql).
    #[pg_extern(volatile, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn new_hold_token(
        p_tenant_id: PgUuid,
        p_hold_id: PgUuid,
    ) -> TableIterator<'static, (name!(token, String), name!(token_hash, Vec<u8>))> {
        TableIterator::once(token::generate(token::HOLD, to_uuid(p_tenant_id), to_uuid(p_hold_id)))
    }

    /// The tenant, hold and secret hash a presented hold token names; no row when it is not
    /// one.
    #[pg_extern(immutable, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn parse_hold_token(
        p_token: &str,
    ) -> TableIterator<'static, (name!(tenant_id, PgUuid), name!(hold_id, PgUuid), name!(secret_hash, Vec<u8>))> {
        TableIterator::new(
            token::parse(token::HOLD, p_token).map(|p| (to_pg_uuid(p.tenant), to_pg_uuid(p.id), p.secret_hash)),
        )
    }

    /// Whether a presented secret's hash is the stored one, compared in constant time.
    #[pg_extern(immutable, strict, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn same_token_hash(p_stored: &[u8], p_presented: &[u8]) -> bool {
        token::same_hash(p_stored, p_presented)
    }

    /// The operator's settings for self-service tenants and their booking pages, read here so
    /// that their defaults live in one place (src/gucs.rs): `{"self_serve": bool,
    /// "endpoint_quota": int, "hold_rate_limit": int}`.
    #[pg_extern(stable, parallel_safe)]
    #[search_path(pg_catalog, pg_temp)]
    pub fn tenant_limits() -> JsonB {
        JsonB(json!({
            "self_serve": gucs::self_serve_tenants(),
            "endpoint_quota": gucs::tenant_endpoint_quota(),
            "hold_rate_limit": gucs::hold_rate_limit(),
        }))
    }
}
