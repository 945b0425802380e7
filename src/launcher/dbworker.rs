//! The one start-up of a per-database worker, whatever its kind: the launcher passes the
//! database and the slot; the worker marks itself as the extension's own (its calls are not
//! audited), takes its signals, connects, publishes itself in its slot, is counted, and, when
//! it is the probe, says whether booking_engine is installed there. A worker that must not run
//! (its database is being dropped, the slot is taken, nothing is installed) exits here.

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;

use super::kinds::{kind_of_slot, Need, WorkerKind};
use super::{found_absent, found_installed, parse_worker_arg, register_self, WORKER_STARTS};
use crate::pg::bgworker::{attach_signals, in_transaction, mark_bookkeeping};
use crate::pg::catalog::extension_installed;
use crate::telemetry::{self, Change};

/// A started worker: its database, kind and instance (1-based).
pub struct Started {
    pub db: u32,
    pub kind: &'static WorkerKind,
    pub instance: usize,
}

fn exit_now() -> ! {
    // SAFETY: a clean exit before any work; the launcher decides what runs.
    unsafe { pg_sys::proc_exit(0) }
}

/// Call first thing in a per-database worker's entry point with its argument.
pub fn start(arg: pg_sys::Datum) -> Started {
    mark_bookkeeping();
    attach_signals();
    let (db, slot) = parse_worker_arg(arg);
    let Some((kind, instance)) = kind_of_slot(slot) else {
        pgrx::warning!("booking_engine: no worker kind has slot {slot}");
        exit_now();
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    if !register_self(db, slot) {
        exit_now();
    }
    telemetry::now(&WORKER_STARTS, &[kind.label], Change::Add(1));
    if matches!(kind.need, Need::Probe) {
        if !in_transaction(extension_installed) {
            found_absent(db);
            exit_now();
        }
        found_installed(db);
    }
    Started { db, kind, instance }
}
