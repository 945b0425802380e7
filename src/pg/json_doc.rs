//! A `jsonb` argument that is read without panicking. pgrx's `JsonB` parses the document's text
//! with serde_json, whose recursion limit (128 levels) then surfaces as a panic, i.e. XX000,
//! before the function body runs. `JsonDoc` keeps the parse error instead, so a function can
//! answer it: a validator with "not valid", anything else with 22023.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::nullable::Nullable;
use pgrx::{direct_function_call, pg_sys, FromDatum};
use serde_json::Value;

use crate::errors::DomainError;

/// The document, or why serde_json could not read it (nested deeper than 128 levels).
pub struct JsonDoc(pub Result<Value, String>);

impl JsonDoc {
    /// The document, or 22023 naming the argument.
    pub fn value(&self, name: &str) -> Result<&Value, DomainError> {
        self.0.as_ref().map_err(|e| DomainError::InvalidParameter(format!("{name}: {e}")))
    }
}

/// Reads a document's text; deeper than serde_json's limit is an error value, not a panic.
pub fn parse_text(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            "the document is nested deeper than 128 levels".to_string()
        } else {
            format!("unreadable JSON document: {e}")
        }
    })
}

impl FromDatum for JsonDoc {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<JsonDoc> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb value (the argument's declared type); jsonb_out detoasts
        // it and returns a palloc'd C string.
        let text = unsafe { direct_function_call::<&core::ffi::CStr>(pg_sys::jsonb_out, &[Some(datum)]) }?;
        let doc = match text.to_str() {
            Ok(t) => parse_text(t),
            Err(_) => Err("the document is not valid UTF-8".to_string()),
        };
        // SAFETY: allocated by jsonb_out above and no longer used.
        unsafe { pg_sys::pfree(text.as_ptr() as *mut std::ffi::c_void) };
        Some(JsonDoc(doc))
    }
}

// SAFETY: unboxed through FromDatum like pgrx's own JsonB argument.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonDoc {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller's contract (a jsonb argument of this call); functions taking a
        // non-Option JsonDoc are STRICT, so a NULL never reaches here.
        unsafe { arg.unbox_arg_using_from_datum() }.unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: as above; a NULL becomes Nullable::Null.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(JsonDoc, arg_only = "jsonb");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_documents_are_an_error_value() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(parse_text(&deep).unwrap_err(), "the document is nested deeper than 128 levels");
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_text(&ok).is_ok());
        assert!(parse_text("{\"a\": 1}").unwrap().is_object());
    }
}
