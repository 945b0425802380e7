//! booking_engine: an appointment-booking back end inside PostgreSQL.

use pgrx::prelude::*;

pub mod admin;
pub mod availability;
pub mod errors;
pub mod gucs;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!(
    "../sql/schema.sql",
    name = "schema",
    requires = [
        "bootstrap",
        availability::api::is_valid_timezone,
        availability::api::is_valid_opening_hours,
    ]
);
extension_sql_file!("../sql/events.sql", name = "events", requires = ["schema"]);
extension_sql_file!(
    "../sql/availability.sql",
    name = "availability",
    requires = ["schema", availability::api::get_available_slots]
);
extension_sql_file!(
    "../sql/admin.sql",
    name = "admin",
    requires = ["bootstrap", "schema", admin::tuner_api::is_valid_freeze_windows]
);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::register();
    admin::init();
}

/// Settings the `#[pg_test]` cluster starts with.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'booking_engine'"]
    }
}
