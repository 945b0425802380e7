//! Recording: changes wait in the backend until its transaction commits, then go into the
//! shared-memory table; an abort (or a rolled-back subtransaction) forgets them.

use std::cell::RefCell;

use pgrx::pg_sys;

use super::defs::{declared, Metric, Source};
use super::table::{encode_labels, size_of_table, Change, Series, Table};
use crate::pg::preload::preloaded;
use crate::pg::shmem::Arena;
use crate::pg::xact;

/// Series the table holds (all metrics together): room for the 10,000 of the benchmark and
/// more. About 240 bytes each.
pub const SLOTS: usize = 16_384;

static ARENA: Arena = Arena::new(c"booking_engine_metrics", size_of_table(SLOTS));

struct Pending {
    metric: &'static Metric,
    labels: Vec<u8>,
    change: Change,
    subxact: pg_sys::SubTransactionId,
}

thread_local! {
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// Called from `_PG_init` while preloading.
pub fn init() {
    ARENA.request();
}

/// The table, when the library was preloaded (otherwise nothing is recorded, and the SQL
/// readers say why).
fn table() -> Option<Table<'static>> {
    let base = ARENA.base();
    if !preloaded() || base.is_null() {
        return None;
    }
    // SAFETY: the arena is `size_of_table(SLOTS)` bytes, zeroed at startup, mapped for the
    // life of the process and used only through Table.
    Some(unsafe { Table::from_raw(base, SLOTS) })
}

fn apply_now(metric: &'static Metric, labels: &[u8], change: Change) {
    if let (Some(t), Some(i)) = (table(), metric.index()) {
        t.apply(i, metric, labels, metric.cap(), change);
    }
}

fn flush() {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    for p in pending {
        apply_now(p.metric, &p.labels, p.change);
    }
}

fn discard() {
    PENDING.with(|p| p.borrow_mut().clear());
}

fn forget_from(subxact: pg_sys::SubTransactionId) {
    PENDING.with(|p| p.borrow_mut().retain(|e| e.subxact < subxact));
}

/// Records `change` for the series of `metric` with `labels` (in the declared order) when the
/// current transaction commits.
pub fn at_commit(metric: &'static Metric, labels: &[&str], change: Change) {
    if !preloaded() {
        return;
    }
    let entry = Pending { metric, labels: encode_labels(labels), change, subxact: xact::current_subxact_id() };
    let first = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.push(entry);
        p.len() == 1
    });
    if first {
        xact::at_commit(flush);
        xact::at_end(discard);
        xact::at_subxact_abort(forget_from);
    }
}

/// Records `change` at once, whatever becomes of the transaction (for things that happened
/// regardless: a worker started, a request refused).
pub fn now(metric: &'static Metric, labels: &[&str], change: Change) {
    apply_now(metric, &encode_labels(labels), change);
}

/// A counted metric by name with its labels checked, for the SQL entry point.
pub fn resolve(name: &str, labels: usize) -> Result<&'static Metric, String> {
    let m = declared()
        .into_iter()
        .find(|d| d.name == name && d.source == Source::Counted)
        .ok_or_else(|| format!("no counted metric named \"{name}\""))?;
    if m.labels.len() != labels {
        return Err(format!("{name} takes {} label values ({}), not {labels}", m.labels.len(), m.labels.join(", ")));
    }
    Ok(m)
}

/// Everything counted so far, and the drops per declared metric.
pub fn snapshot() -> Option<(Vec<Series>, Vec<u64>)> {
    let defs = declared();
    table().map(|t| (t.read(&defs), t.dropped(defs.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_checks_names_and_label_counts() {
        crate::register_features();
        assert_eq!(resolve("booking_events", 1).map(|m| m.name), Ok("booking_events"));
        assert!(resolve("booking_events", 2).unwrap_err().contains("takes 1 label"));
        assert!(resolve("booking_jobs", 1).unwrap_err().contains("no counted metric"), "SQL gauges are not counted");
        assert!(resolve("nope", 0).is_err());
    }
}
