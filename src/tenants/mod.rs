//! Tenants that run themselves: members with roles, invitations, and the self-administration
//! RPCs (sql/tenants.sql). Rust holds what SQL should not: the invitation tokens (random
//! secrets, their hashes, a constant-time comparison) and the operator's settings.

pub mod api;
pub mod token;
