//! The delivery worker's local queue between claiming and sending: claimed deliveries wait per
//! endpoint and go to the sending threads while the endpoint has fewer than its
//! `max_in_flight` in flight and a thread is free, endpoints taking turns. A slow endpoint
//! thereby holds at most its own limit of threads, and claims can run ahead of the network in
//! large batches. Pure: no Postgres, no threads.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

struct Lane<T> {
    queued: VecDeque<T>,
    active: usize,
    limit: usize,
}

pub struct Dispatcher<T> {
    lanes: HashMap<Uuid, Lane<T>>,
    /// Endpoints with queued items, in turn order.
    turns: VecDeque<Uuid>,
    active: usize,
    threads: usize,
}

impl<T> Dispatcher<T> {
    pub fn new(threads: usize) -> Self {
        Dispatcher { lanes: HashMap::new(), turns: VecDeque::new(), active: 0, threads: threads.max(1) }
    }

    /// Queues an item for `endpoint`, whose current in-flight limit is `limit`.
    pub fn push(&mut self, endpoint: Uuid, limit: usize, item: T) {
        let lane = self.lanes.entry(endpoint).or_insert_with(|| Lane { queued: VecDeque::new(), active: 0, limit });
        lane.limit = limit.max(1);
        if lane.queued.is_empty() {
            self.turns.push_back(endpoint);
        }
        lane.queued.push_back(item);
    }

    /// The next item to send, endpoints taking turns; None when every thread is busy or every
    /// endpoint with queued items is at its limit.
    pub fn next_ready(&mut self) -> Option<T> {
        if self.active >= self.threads {
            return None;
        }
        for _ in 0..self.turns.len() {
            let endpoint = self.turns.pop_front()?;
            let lane = self.lanes.get_mut(&endpoint).expect("a turn has a lane");
            if lane.active >= lane.limit {
                self.turns.push_back(endpoint);
                continue;
            }
            let item = lane.queued.pop_front().expect("a turn has a queued item");
            lane.active += 1;
            self.active += 1;
            if !lane.queued.is_empty() {
                self.turns.push_back(endpoint);
            }
            return Some(item);
        }
        None
    }

    /// Whether `next_ready` would return an item.
    pub fn has_ready(&self) -> bool {
        self.active < self.threads && self.turns.iter().any(|e| self.lanes.get(e).is_some_and(|l| l.active < l.limit))
    }

    /// A send of `endpoint` finished.
    pub fn done(&mut self, endpoint: Uuid) {
        if let Some(lane) = self.lanes.get_mut(&endpoint) {
            lane.active = lane.active.saturating_sub(1);
            self.active = self.active.saturating_sub(1);
            if lane.active == 0 && lane.queued.is_empty() {
                self.lanes.remove(&endpoint);
            }
        }
    }

    /// Items queued or in flight, in all.
    pub fn backlog(&self) -> usize {
        self.lanes.values().map(|l| l.queued.len() + l.active).sum()
    }

    /// Endpoints with at least `n` items queued or in flight: not worth claiming more for.
    pub fn saturated(&self, n: usize) -> Vec<Uuid> {
        self.lanes.iter().filter(|(_, l)| l.queued.len() + l.active >= n).map(|(e, _)| *e).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_gets_at_most_its_limit_and_the_others_go_on() {
        let (slow, fast) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut d = Dispatcher::new(8);
        for i in 0..4 {
            d.push(slow, 2, ("slow", i));
            d.push(fast, 4, ("fast", i));
        }
        let sent: Vec<_> = std::iter::from_fn(|| d.next_ready()).collect();
        assert_eq!(sent.iter().filter(|(e, _)| *e == "slow").count(), 2);
        assert_eq!(sent.iter().filter(|(e, _)| *e == "fast").count(), 4);
        assert_eq!(d.backlog(), 8);
        // The slow endpoint's sends never finish; the fast one's do, and its queue drains.
        d.done(fast);
        assert_eq!(d.next_ready(), None, "slow is at its limit, fast has nothing queued");
        assert!(!d.has_ready());
        assert_eq!(d.saturated(4), vec![slow]);
        d.done(slow);
        assert!(d.has_ready());
        assert_eq!(d.next_ready(), Some(("slow", 2)));
    }

    #[test]
    fn threads_bound_the_total_and_endpoints_take_turns() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut d = Dispatcher::new(3);
        for i in 0..3 {
            d.push(a, 10, ('a', i));
        }
        d.push(b, 10, ('b', 0));
        let sent: Vec<_> = std::iter::from_fn(|| d.next_ready()).collect();
        assert_eq!(sent, vec![('a', 0), ('b', 0), ('a', 1)]);
        d.done(a);
        assert_eq!(d.next_ready(), Some(('a', 2)));
        assert_eq!(d.next_ready(), None);
    }
}
