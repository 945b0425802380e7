//! In-database tests of the job queue and scheduler SQL API.
