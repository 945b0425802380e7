//! Every `booking_engine.*` setting, registered once from `_PG_init`.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// A fixed "now" for the clock-based rules. Superuser-only, or a customer could book inside
/// the notice period by moving the clock.
pub static NOW_OVERRIDE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn register() {
    GucRegistry::define_string_guc(
        c"booking_engine.now",
        c"Fixed current time for the booking rules (empty: the transaction's now()).",
        c"Notice and advance-booking limits are measured from this instant when set. For tests and demos; superuser only.",
        &NOW_OVERRIDE,
        GucContext::Suset,
        GucFlags::default(),
    );
}
