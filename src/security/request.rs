//! The current request's context, read from Postgres without running SQL (so it is safe in
//! hooks): PostgREST's `request.jwt.claims` and `request.headers`, else the session.

use std::ffi::CStr;

use pgrx::pg_sys;

use super::context::{self, RequestContext, Session};

fn guc(name: &CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns NULL for an unknown option when missing_ok, else a
    // NUL-terminated string owned by the GUC machinery, copied at once.
    unsafe {
        let p = pg_sys::GetConfigOption(name.as_ptr(), true, false);
        (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
    }
}

fn client_addr() -> Option<String> {
    // SAFETY: inet_client_addr takes no arguments and returns NULL for Unix sockets.
    let datum = unsafe { pgrx::direct_function_call_as_datum(pg_sys::inet_client_addr, &[]) }?;
    // SAFETY: inet_out turns an inet datum into a cstring.
    let text = unsafe { pgrx::direct_function_call::<&CStr>(pg_sys::inet_out, &[Some(datum)]) }?;
    Some(text.to_string_lossy().into_owned())
}

/// The request's context as `context::from_request` reads it; no SQL, so it is safe in hooks.
pub fn current_context() -> RequestContext {
    // SAFETY: GetOuterUserId is the role the session acts as outside any SECURITY DEFINER
    // function; GetUserNameFromId with noerr returns NULL for a dropped role.
    let db_user = unsafe {
        let p = pg_sys::GetUserNameFromId(pg_sys::GetOuterUserId(), true);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    let session = Session { db_user, client_addr: client_addr(), application_name: guc(c"application_name") };
    let trusted_proxies = crate::gucs::trusted_proxies();
    context::from_request(
        guc(c"request.jwt.claims").as_deref(),
        guc(c"request.headers").as_deref(),
        &session,
        trusted_proxies,
    )
}
