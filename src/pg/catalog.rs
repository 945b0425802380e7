//! What the catalogs say about where we are: the databases, read from the shared catalog
//! without being connected to one (the launcher is not, so that it never stands in the way of
//! DROP DATABASE), the current database, and whether booking_engine is installed in it.

use pgrx::prelude::*;

/// A database worth serving: not a template, accepting connections.
pub struct DatabaseRow {
    pub oid: u32,
    pub name: String,
}

/// Every database that is not a template and allows connections, read from pg_database with
/// a catalog scan. Call inside a transaction.
pub fn connectable_databases() -> Vec<DatabaseRow> {
    let mut rows = Vec::new();
    // SAFETY: a heap scan of the shared catalog pg_database under AccessShareLock, inside the
    // caller's transaction, as Postgres's own launchers do (get_subscription_list); each tuple
    // is a FormData_pg_database, read before the next heap_getnext.
    unsafe {
        let rel = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        let scan = pg_sys::table_beginscan_catalog(rel, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if (*form).datistemplate || !(*form).datallowconn {
                continue;
            }
            let name = std::ffi::CStr::from_ptr((*form).datname.data.as_ptr()).to_string_lossy().into_owned();
            rows.push(DatabaseRow { oid: (*form).oid.to_u32(), name });
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(rel, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    rows
}

/// Whether booking_engine is installed in the current database: the one answer every worker,
/// the writer and the scrape act on (a worker leaves when it is gone, the writer drops what was
/// queued for it). Call inside a transaction.
pub fn extension_installed() -> bool {
    // SAFETY: a catalog lookup by name inside the caller's transaction; missing_ok = true makes
    // an absent extension InvalidOid instead of an error.
    unsafe { pg_sys::get_extension_oid(c"booking_engine".as_ptr(), true) != pg_sys::InvalidOid }
}

/// The oid of the database this process is connected to (0 when none).
pub fn my_database_oid() -> u32 {
    // SAFETY: a plain read of a backend-global set at connection.
    unsafe { pg_sys::MyDatabaseId.to_u32() }
}
