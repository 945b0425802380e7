//! What a recomputation changes in the store: the stored rows of the recomputed staff-days
//! against the fresh ones, by key. Pure; the writer applies the result with one delete and one
//! upsert, so that an unchanged slot costs nothing and the work grows with the rows, not their
//! square.

use std::collections::HashMap;

use chrono::NaiveDate;
use uuid::Uuid;

use crate::availability::facade::Micros;

/// A slot's key within one tenant: staff member, date, service, start.
pub type Key = (Uuid, NaiveDate, Uuid, Micros);

/// A slot's stored values: end, free, confidence, density, boost, fit, day open.
pub type Values = (Micros, bool, i32, i32, i32, i32, i32);

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Stored slots the recomputation no longer has.
    pub delete: Vec<Key>,
    /// New slots and slots whose values changed.
    pub upsert: Vec<(Key, Values)>,
}

pub fn diff(stored: Vec<(Key, Values)>, fresh: Vec<(Key, Values)>) -> Diff {
    let mut old: HashMap<Key, Values> = stored.into_iter().collect();
    let mut out = Diff::default();
    for (key, values) in fresh {
        if old.remove(&key) != Some(values) {
            out.upsert.push((key, values));
        }
    }
    out.delete = old.into_keys().collect();
    out.delete.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(start: Micros) -> Key {
        (Uuid::from_u128(1), NaiveDate::from_ymd_opt(2026, 3, 23).unwrap(), Uuid::from_u128(2), start)
    }

    fn values(free: bool, confidence: i32) -> Values {
        (100, free, confidence, 0, 0, 0, 0)
    }

    #[test]
    fn only_new_changed_and_gone_slots_are_written() {
        let stored = vec![(key(1), values(true, 10)), (key(2), values(true, 10)), (key(3), values(true, 10))];
        let fresh = vec![(key(1), values(true, 10)), (key(2), values(false, 0)), (key(4), values(true, 5))];
        let d = diff(stored, fresh);
        assert_eq!(d.upsert, vec![(key(2), values(false, 0)), (key(4), values(true, 5))]);
        assert_eq!(d.delete, vec![key(3)]);
    }

    #[test]
    fn an_unchanged_day_writes_nothing() {
        let rows = vec![(key(1), values(true, 10)), (key(2), values(false, 0))];
        assert_eq!(diff(rows.clone(), rows), Diff::default());
    }
}
