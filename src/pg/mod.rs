//! The shared Postgres layer: each mechanism that reaches into Postgres's internals exists once
//! here, and every feature builds on it rather than on another feature.
//!
//! `subxact` runs work in a subtransaction (kept or rolled back, read-only, as a role, under a
//! deadline) with one policy for errors that must not be swallowed; `deadline` is the statement
//! timer guard; `error` turns a caught error into text or raises it again; `parser` is the one
//! entry to Postgres's raw parser; `preload` says whether the library was preloaded; `convert`
//! holds the small conversions (uuids, instants, required arguments); `bgworker` the latch wait,
//! signals and transactions every background worker uses; `catalog` reads pg_database without a
//! database connection; `utility` is the one ProcessUtility hook (observers per feature);
//! `xact` defers actions to the commit of the current transaction; `kept` runs statements
//! prepared once per backend; `sandbox` checks and runs an operator's SELECT read-only, under a
//! deadline, always rolled back; `role` acts as another role for a moment; `shmem` holds the
//! zero-initialised shared-memory arenas; `json_doc` reads a jsonb argument without panicking;
//! `guc` sets `search_path` for a piece of work or for the rest of the transaction.

pub mod bgworker;
pub mod catalog;
pub mod convert;
pub mod deadline;
pub mod error;
pub mod guc;
pub mod json_doc;
pub mod kept;
pub mod parser;
pub mod preload;
pub mod role;
pub mod sandbox;
pub mod shmem;
pub mod subxact;
pub mod utility;
pub mod xact;

#[cfg(feature = "pg_test")]
mod pg_tests;
