//! Statements prepared once per backend and kept, for SQL a hot path runs on every call, where
//! parsing and planning cost as much as running. A kept plan is revalidated by Postgres's plan
//! cache, so it follows schema changes.

use std::cell::RefCell;
use std::thread::LocalKey;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiError, SpiResult, SpiTupleTable};
use pgrx::PgOid;

/// Where a statement is kept: `thread_local! { static X: Kept = const { RefCell::new(None) }; }`.
pub type Kept = RefCell<Option<OwnedPreparedStatement>>;

/// Runs the writing statement `sql` (argument types `types`) with `args`, preparing it on its
/// first run in this backend.
pub fn run(kept: &'static LocalKey<Kept>, sql: &str, types: &[PgOid], args: &[DatumWithOid]) -> SpiResult<()> {
    query(kept, sql, types, args, |_| Ok(()))
}

/// `run`, handing the statement's rows to `read`.
pub fn query<R, E: From<SpiError>>(
    kept: &'static LocalKey<Kept>,
    sql: &str,
    types: &[PgOid],
    args: &[DatumWithOid],
    read: impl FnOnce(SpiTupleTable) -> Result<R, E>,
) -> Result<R, E> {
    Spi::connect_mut(|client| {
        kept.with_borrow_mut(|plan| {
            if plan.is_none() {
                *plan = Some(client.prepare_mut(sql, types)?.keep());
            }
            read(client.update(plan.as_ref().expect("prepared above"), None, args)?)
        })
    })
}
