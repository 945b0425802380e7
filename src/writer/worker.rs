//! The writer: one background worker per database, started on demand by the first record
//! queued for it, woken through its latch (never polling), writing what is queued in
//! transactions of its own. It leaves after `LINGER` without work, so it does not hold a
//! database open for long; the next record starts it again.

use std::time::{Duration, Instant};

use pgrx::bgworkers::BackgroundWorker;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::Value;

use super::queue::Taken;
use super::{builder, set_latch, sink_of, sinks, Sink, QUEUE};
use crate::pg::bgworker::{attach_signals, try_in_transaction, wait};
use crate::pg::catalog::extension_installed;
use crate::pg::subxact::Subxact;

const BATCH: usize = 64;
const LINGER: Duration = Duration::from_secs(5);

/// Starts a writer for `db`; false when no background worker slot is free.
pub fn launch(db: u32) -> bool {
    builder(db).load_dynamic().is_ok()
}

/// However the writer leaves (idle, SIGTERM, an error): what it had taken goes back to the
/// queue for the next writer, and its entry is cleared.
#[pg_guard]
unsafe extern "C-unwind" fn writer_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is this process's pid; LWLockReleaseAll first, so that an error raised
    // while the queue lock was held cannot deadlock the exit.
    unsafe {
        pg_sys::LWLockReleaseAll();
        QUEUE.exclusive().writer_exited(pg_sys::MyProcPid);
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn booking_engine_writer_main(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    attach_signals();
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    // SAFETY: registers a plain callback, run however the process exits; MyLatch and MyProcPid
    // are this process's.
    let (latch, pid) = unsafe {
        pg_sys::before_shmem_exit(Some(writer_exit), arg);
        (pg_sys::MyLatch as usize, pg_sys::MyProcPid)
    };
    if !QUEUE.exclusive().register(db, latch, pid) {
        // Another writer serves this database already, or nobody asked any more.
        return;
    }
    let mut idle_since = Instant::now();
    loop {
        let (batch, dropped) = {
            let mut q = QUEUE.exclusive();
            q.take(super::arena(), db, pid, BATCH)
        };
        for (record, waiter) in dropped {
            pgrx::warning!(
                "booking_engine writer: record dropped after its writer failed {} times: {}",
                super::queue::MAX_ATTEMPTS,
                String::from_utf8_lossy(&record.bytes)
            );
            set_latch(waiter);
        }
        if batch.is_empty() {
            let idle = idle_since.elapsed();
            if idle >= LINGER && QUEUE.exclusive().retire_if_idle(db, pid) {
                return;
            }
            wait(LINGER.saturating_sub(idle).as_millis() as i64);
            continue;
        }
        idle_since = Instant::now();
        let written = write(&batch);
        let waiters: Vec<usize> = {
            let mut q = QUEUE.exclusive();
            batch.iter().zip(written).map(|(t, ok)| q.finish(t.ticket, ok)).collect()
        };
        waiters.into_iter().for_each(set_latch);
    }
}

/// A record as its sink's statement reads it, or None for one that cannot be read (refused).
fn decode(t: &Taken) -> Option<(&'static Sink, Value)> {
    sink_of(t.sink).zip(serde_json::from_slice(&t.bytes).ok())
}

fn apply(sink: &Sink, rows: Vec<Value>) -> Result<(), pgrx::spi::Error> {
    Spi::run_with_args(sink.statement(), &[JsonB(Value::Array(rows)).into()])
}

/// Writes a batch, sink by sink in registration order, in one transaction. When that fails
/// (one record the table refuses must not hold back the others, nor crash-loop the writer),
/// every record is written on its own in a subtransaction, and the refused ones are left in
/// the server log. Returns per record whether it is committed. Records queued before the
/// extension was dropped from the database are dropped with a warning.
fn write(batch: &[Taken]) -> Vec<bool> {
    let docs: Vec<Option<(&'static Sink, Value)>> = batch.iter().map(decode).collect();
    let together = try_in_transaction(|| {
        if !extension_installed() {
            return Err("booking_engine is not installed here (dropped since the records were queued)".to_string());
        }
        for sink in sinks() {
            let rows: Vec<Value> =
                docs.iter().flatten().filter(|(s, _)| std::ptr::eq(*s, sink)).map(|(_, v)| v.clone()).collect();
            if !rows.is_empty() {
                apply(sink, rows).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    });
    let failure = match together {
        Ok(Ok(())) => return docs.iter().map(Option::is_some).collect(),
        Ok(Err(message)) => message,
        Err(caught) => caught.message,
    };
    pgrx::warning!("booking_engine writer: batch refused ({failure}); writing records one by one");
    let one_by_one = try_in_transaction(|| {
        docs.iter()
            .zip(batch)
            .map(|(doc, t)| {
                let Some((sink, row)) = doc else {
                    pgrx::warning!(
                        "booking_engine writer: unreadable record dropped: {}",
                        String::from_utf8_lossy(&t.bytes)
                    );
                    return false;
                };
                let ran = Subxact::kept().run(|| extension_installed() && apply(sink, vec![row.clone()]).is_ok());
                let ok = matches!(ran, Ok(true));
                if !ok {
                    pgrx::warning!("booking_engine writer: record refused, not recorded: {row}");
                }
                ok
            })
            .collect::<Vec<bool>>()
    });
    one_by_one.unwrap_or_else(|caught| {
        pgrx::warning!("booking_engine writer: records not recorded: {caught}");
        vec![false; batch.len()]
    })
}
