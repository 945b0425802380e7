//! Waking the workers: each per-database worker publishes its latch in the launcher's registry,
//! and a backend that enqueued work sets the latches of its own database's workers once its
//! transaction commits (earlier, a worker could wake, find nothing visible yet, and sleep a
//! whole poll interval).

use crate::pg::preload::preloaded;

/// Wake the current database's workers when the current transaction commits. Without the
/// preloaded library there are no workers, and nothing to do.
pub fn wake_at_commit() {
    if preloaded() {
        crate::pg::xact::at_commit(crate::launcher::wake_my_database);
    }
}
