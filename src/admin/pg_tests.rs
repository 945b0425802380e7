//! In-database tests of the admin area.
