//! Audit entries and the bounded queue that carries the ones that must outlive the caller's
//! transaction (failures) to a flusher process, which writes them in a transaction of its own.
//!
//! The queue is a fixed array in shared memory: entries are small JSON rows (at most
//! `ENTRY_BYTES`), tagged with their database and a sequence number. A flusher copies its
//! database's entries, commits them, and only then frees them, so a crash in between writes an
//! entry twice at worst, and the row's primary key (its id) turns the second write into nothing.

use serde_json::{json, Value};
use uuid::Uuid;

use super::context::RequestContext;

pub const ENTRY_BYTES: usize = 1024;
pub const CAPACITY: usize = 512;
/// How many databases can have a flusher at once.
pub const MAX_FLUSHERS: usize = 8;

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: Uuid,
    pub context: RequestContext,
    pub tenant_id: Option<Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub success: bool,
    pub failure_reason: Option<String>,
    pub sensitive_data_accessed: bool,
    /// Microseconds since the Unix epoch.
    pub at: i64,
}

fn clip(s: &Option<String>, chars: usize) -> Option<String> {
    s.as_ref().map(|s| s.chars().take(chars).collect())
}

impl AuditEntry {
    /// The row as `jsonb_populate_record` reads it, long texts cut to `max_text` characters.
    fn row(&self, max_text: usize) -> Value {
        let at = chrono::DateTime::from_timestamp_micros(self.at).map(|t| t.to_rfc3339());
        let c = &self.context;
        json!({
            "id": self.id,
            "tenant_id": self.tenant_id.or(c.tenant_id),
            "user_id": c.user_id,
            "db_user": clip(&Some(c.db_user.clone()), max_text),
            "action": clip(&Some(self.action.clone()), max_text),
            "resource_type": clip(&Some(self.resource_type.clone()), max_text),
            "resource_id": clip(&self.resource_id, max_text),
            "ip_address": c.ip_address.map(|a| a.to_string()),
            "user_agent": clip(&c.user_agent, max_text),
            "request_id": clip(&c.request_id, max_text),
            "success": self.success,
            "failure_reason": clip(&self.failure_reason, max_text),
            "sensitive_data_accessed": self.sensitive_data_accessed,
            "mfa": c.mfa,
            "created_at": at,
        })
    }

    /// The full row, for a write in the caller's own transaction.
    pub fn to_row(&self) -> Value {
        self.row(usize::MAX)
    }

    /// The row in at most `ENTRY_BYTES`, shortening texts until it fits.
    pub fn encode(&self) -> Vec<u8> {
        [usize::MAX, 200, 60, 16]
            .iter()
            .map(|&max| self.row(max).to_string().into_bytes())
            .find(|b| b.len() <= ENTRY_BYTES)
            .expect("16 characters per text always fit")
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Slot {
    /// 0: free.
    pub db: u32,
    pub len: u16,
    pub seq: u64,
    pub bytes: [u8; ENTRY_BYTES],
}

const FREE: Slot = Slot { db: 0, len: 0, seq: 0, bytes: [0; ENTRY_BYTES] };

#[derive(Clone, Copy)]
#[repr(C)]
pub struct Queue {
    pub next_seq: u64,
    pub slots: [Slot; CAPACITY],
    /// Databases that have a flusher running or starting; 0: free.
    pub flushers: [u32; MAX_FLUSHERS],
}

impl Default for Queue {
    fn default() -> Self {
        Queue { next_seq: 1, slots: [FREE; CAPACITY], flushers: [0; MAX_FLUSHERS] }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// Queued; a flusher for the database is already there.
    Queued,
    /// Queued; the caller must start a flusher for the database.
    StartFlusher,
    /// Queued, but every flusher slot is taken by other databases: it waits for one.
    Waiting,
}

/// Every slot of the queue is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull;

/// One entry taken for writing: where it sits and which version of the slot it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub index: usize,
    pub seq: u64,
    pub row: Vec<u8>,
}

impl Queue {
    pub fn push(&mut self, db: u32, row: &[u8]) -> Result<Push, QueueFull> {
        assert!(db != 0 && row.len() <= ENTRY_BYTES);
        let slot = self.slots.iter_mut().find(|s| s.db == 0).ok_or(QueueFull)?;
        slot.db = db;
        slot.len = row.len() as u16;
        slot.seq = self.next_seq;
        slot.bytes[..row.len()].copy_from_slice(row);
        self.next_seq += 1;
        Ok(if self.flushers.contains(&db) {
            Push::Queued
        } else if let Some(f) = self.flushers.iter_mut().find(|f| **f == 0) {
            *f = db;
            Push::StartFlusher
        } else {
            Push::Waiting
        })
    }

    /// Up to `max` of `db`'s entries, oldest first.
    pub fn pending(&self, db: u32, max: usize) -> Vec<Taken> {
        let mut out: Vec<Taken> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.db == db)
            .map(|(index, s)| Taken { index, seq: s.seq, row: s.bytes[..s.len as usize].to_vec() })
            .collect();
        out.sort_by_key(|t| t.seq);
        out.truncate(max);
        out
    }

    /// Frees written entries (a slot reused since it was taken is left alone).
    pub fn remove(&mut self, taken: &[Taken]) {
        for t in taken {
            let s = &mut self.slots[t.index];
            if s.seq == t.seq {
                s.db = 0;
            }
        }
    }

    /// A flusher with nothing left to do gives up its slot and may stop; while entries for its
    /// database remain it keeps the slot.
    pub fn release_if_idle(&mut self, db: u32) -> bool {
        if self.slots.iter().any(|s| s.db == db) {
            return false;
        }
        self.release(db);
        true
    }

    /// Forgets `db`'s flusher (it stopped, or could not be started).
    pub fn release(&mut self, db: u32) {
        for f in self.flushers.iter_mut().filter(|f| **f == db) {
            *f = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reason: &str) -> AuditEntry {
        AuditEntry {
            id: Uuid::nil(),
            context: RequestContext { db_user: "app".into(), ..Default::default() },
            tenant_id: None,
            action: "login".into(),
            resource_type: "auth".into(),
            resource_id: None,
            success: false,
            failure_reason: Some(reason.into()),
            sensitive_data_accessed: false,
            at: 1_772_319_600_000_000,
        }
    }

    #[test]
    fn rows_fit_their_slot() {
        let short = entry("wrong password");
        let v: Value = serde_json::from_slice(&short.encode()).unwrap();
        assert_eq!(v["failure_reason"], "wrong password");
        assert_eq!(v["created_at"], "2026-02-28T23:00:00+00:00");
        let long = entry(&"x".repeat(5000));
        let bytes = long.encode();
        assert!(bytes.len() <= ENTRY_BYTES);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["failure_reason"].as_str().unwrap().len(), 200);
        assert_eq!(long.to_row()["failure_reason"].as_str().unwrap().len(), 5000);
    }

    #[test]
    fn one_flusher_per_database_and_nothing_freed_before_it_is_written() {
        let mut q = Box::<Queue>::default();
        assert_eq!(q.push(5, b"a"), Ok(Push::StartFlusher));
        assert_eq!(q.push(5, b"b"), Ok(Push::Queued));
        assert_eq!(q.push(6, b"c"), Ok(Push::StartFlusher));
        let taken = q.pending(5, 10);
        assert_eq!(taken.iter().map(|t| t.row.clone()).collect::<Vec<_>>(), [b"a".to_vec(), b"b".to_vec()]);
        assert!(!q.release_if_idle(5), "entries are still there until written");
        q.remove(&taken);
        assert!(q.pending(5, 10).is_empty());
        assert_eq!(q.pending(6, 10).len(), 1);
        assert!(q.release_if_idle(5));
        assert_eq!(q.push(5, b"d"), Ok(Push::StartFlusher), "a stopped flusher is started again");
    }

    #[test]
    fn a_full_queue_refuses_and_reused_slots_survive_a_late_remove() {
        let mut q = Box::<Queue>::default();
        for _ in 0..CAPACITY {
            q.push(1, b"x").unwrap();
        }
        assert_eq!(q.push(1, b"y"), Err(QueueFull));
        let old = q.pending(1, 1);
        q.remove(&old);
        q.push(1, b"new").unwrap();
        q.remove(&old);
        assert!(q.pending(1, CAPACITY).iter().any(|t| t.row == b"new"));
        for db in 2..(MAX_FLUSHERS as u32 + 1) {
            q.remove(&q.pending(1, 1));
            assert_eq!(q.push(db, b"z"), Ok(Push::StartFlusher));
        }
        q.remove(&q.pending(1, 1));
        assert_eq!(q.push(99, b"z"), Ok(Push::Waiting));
    }
}
