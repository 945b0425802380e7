//! The audit flusher: a background worker per database, started on demand by the first entry
//! queued for it, that writes queued entries in its own transactions and stops once the queue
//! has stayed empty for a while (so it never holds a database open for long).

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::prelude::*;
use pgrx::JsonB;

use super::sandbox::caught_message;
use super::shmem::AUDIT_QUEUE;

const BATCH: usize = 64;
const POLL: Duration = Duration::from_millis(50);
/// Idle polls before stopping.
const LINGER: u32 = 40;

const WRITE_SQL: &str = "INSERT INTO booking_admin.security_audit_log
    SELECT * FROM jsonb_populate_recordset(NULL::booking_admin.security_audit_log, $1)
    ON CONFLICT (id) DO NOTHING";

#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn booking_engine_audit_flusher(arg: pg_sys::Datum) {
    let db = arg.value() as u32;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(db)), None);
    let mut idle = 0;
    loop {
        let batch = AUDIT_QUEUE.share().pending(db, BATCH);
        if batch.is_empty() {
            idle += 1;
            // Stop when idle long enough or asked to; the release happens under the queue's
            // lock, so an entry queued a moment later starts a new flusher.
            if (idle >= LINGER || BackgroundWorker::sigterm_received()) && AUDIT_QUEUE.exclusive().release_if_idle(db) {
                return;
            }
            BackgroundWorker::wait_latch(Some(POLL));
            continue;
        }
        idle = 0;
        let rows: Vec<serde_json::Value> = batch.iter().filter_map(|t| serde_json::from_slice(&t.row).ok()).collect();
        if let Err(e) = write(rows.clone()) {
            // One entry the table refuses must not hold back the others (nor crash-loop the
            // worker): write them one by one and leave the refused ones in the server log.
            pgrx::warning!("booking_engine audit flusher: batch refused ({e}); writing entries one by one");
            for row in rows {
                if let Err(e) = write(vec![row.clone()]) {
                    pgrx::warning!("booking_engine audit flusher: entry refused ({e}), not recorded: {row}");
                }
            }
        }
        AUDIT_QUEUE.exclusive().remove(&batch);
    }
}

/// Writes rows in a transaction of their own; Err with the message when it fails, after
/// aborting that transaction.
fn write(rows: Vec<serde_json::Value>) -> Result<(), String> {
    let n = rows.len();
    PgTryBuilder::new(move || {
        BackgroundWorker::transaction(move || {
            let installed = Spi::get_one::<bool>("SELECT to_regclass('booking_admin.security_audit_log') IS NOT NULL")
                .expect("catalog lookup")
                .unwrap_or(false);
            if installed {
                Spi::run_with_args(WRITE_SQL, &[JsonB(serde_json::Value::Array(rows)).into()]).expect("audit write");
            } else {
                pgrx::warning!(
                    "booking_engine audit flusher: booking_engine is not installed here; {n} entries dropped"
                );
            }
        });
        Ok(())
    })
    .catch_others(|e| {
        // SAFETY: the failed transaction is still open; abort it as the backend's own error
        // recovery would.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(caught_message(e))
    })
    .execute()
}
