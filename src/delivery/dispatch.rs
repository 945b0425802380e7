//! The delivery worker's local queue between claiming and sending: claimed deliveries wait per
//! endpoint and go to the sending threads while the endpoint has fewer than its
//! `max_in_flight` in flight and a thread is free, endpoints taking turns. A slow endpoint
//! thereby holds at most its own limit of threads, and claims can run ahead of the network in
//! large batches.
//!
//! The circuit breaker holds per send, not only per claim: each lane counts its endpoint's
//! failures in a row (starting from the count the claim read), and the failure that reaches the
//! threshold trips the lane: what is still queued is handed back unsent, and so is anything
//! pushed for the endpoint until the worker has recorded the tripping attempt (after which the
//! endpoint's row says open, and the claim leaves it alone). A half-open endpoint (its count at
//! the threshold) is claimed one delivery at a time, and a probe that fails trips the lane again
//! at once. Pure: no Postgres, no threads.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use super::policy::Breaker;

struct Lane<T> {
    queued: VecDeque<T>,
    active: usize,
    limit: usize,
    /// Failures in a row, as far as this worker knows.
    fails: u32,
    /// The sequence number of the attempt that tripped the lane, until it is recorded.
    tripped: Option<u64>,
}

pub struct Dispatcher<T> {
    lanes: HashMap<Uuid, Lane<T>>,
    /// Endpoints with queued items, in turn order.
    turns: VecDeque<Uuid>,
    active: usize,
    threads: usize,
    /// Failures in a row that open an endpoint's circuit (0: never).
    threshold: u32,
    /// Finished attempts so far: each gets the next number, in the order they are reported.
    seq: u64,
    /// Items handed back unsent, until the worker takes them.
    held: Vec<T>,
}

impl<T> Dispatcher<T> {
    pub fn new(threads: usize, threshold: u32) -> Self {
        Dispatcher {
            lanes: HashMap::new(),
            turns: VecDeque::new(),
            active: 0,
            threads: threads.max(1),
            threshold,
            seq: 0,
            held: Vec::new(),
        }
    }

    /// A new breaker threshold (a reload): it applies to the next failures.
    pub fn set_threshold(&mut self, threshold: u32) {
        self.threshold = threshold;
    }

    fn over(&self, fails: u32) -> bool {
        self.threshold > 0 && fails >= self.threshold
    }

    /// Queues an item for `endpoint`, whose current in-flight limit is `limit` and whose
    /// failures in a row were `fails` when it was claimed. A tripped endpoint's item is held.
    pub fn push(&mut self, endpoint: Uuid, limit: usize, fails: u32, item: T) {
        let lane = self.lanes.entry(endpoint).or_insert_with(|| Lane {
            queued: VecDeque::new(),
            active: 0,
            limit,
            fails,
            tripped: None,
        });
        if lane.tripped.is_some() {
            self.held.push(item);
            return;
        }
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

    /// A send of `endpoint` finished with what it tells the breaker; returns the attempt's
    /// sequence number. A failure at or over the threshold trips the lane: its queued items
    /// are held.
    pub fn done(&mut self, endpoint: Uuid, effect: Breaker) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let threshold = self.threshold;
        let Some(lane) = self.lanes.get_mut(&endpoint) else { return seq };
        lane.active = lane.active.saturating_sub(1);
        self.active = self.active.saturating_sub(1);
        match effect {
            Breaker::Ok => lane.fails = 0,
            Breaker::Fail => lane.fails = lane.fails.saturating_add(1),
            Breaker::Neutral => {}
        }
        if effect == Breaker::Fail && threshold > 0 && lane.fails >= threshold && lane.tripped.is_none() {
            lane.tripped = Some(seq);
            self.held.extend(lane.queued.drain(..));
            self.turns.retain(|e| *e != endpoint);
        }
        if lane.active == 0 && lane.queued.is_empty() && lane.tripped.is_none() {
            self.lanes.remove(&endpoint);
        }
        seq
    }

    /// The attempts up to sequence number `upto` are recorded (the endpoints' rows say what
    /// they did to the breaker): the lanes they tripped take pushes again.
    pub fn recorded(&mut self, upto: u64) {
        for lane in self.lanes.values_mut() {
            if lane.tripped.is_some_and(|s| s <= upto) {
                lane.tripped = None;
            }
        }
        self.lanes.retain(|_, l| l.active > 0 || !l.queued.is_empty() || l.tripped.is_some());
    }

    /// The items handed back unsent since the last call.
    pub fn take_held(&mut self) -> Vec<T> {
        std::mem::take(&mut self.held)
    }

    /// Items queued or in flight, in all.
    pub fn backlog(&self) -> usize {
        self.lanes.values().map(|l| l.queued.len() + l.active).sum()
    }

    /// Endpoints not worth claiming more for: with at least `n` items queued or in flight,
    /// tripped, or half-open with their probe not yet back.
    pub fn saturated(&self, n: usize) -> Vec<Uuid> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.queued.len() + l.active >= n || l.tripped.is_some() || self.over(l.fails))
            .map(|(e, _)| *e)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_gets_at_most_its_limit_and_the_others_go_on() {
        let (slow, fast) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut d = Dispatcher::new(8, 0);
        for i in 0..4 {
            d.push(slow, 2, 0, ("slow", i));
            d.push(fast, 4, 0, ("fast", i));
        }
        let sent: Vec<_> = std::iter::from_fn(|| d.next_ready()).collect();
        assert_eq!(sent.iter().filter(|(e, _)| *e == "slow").count(), 2);
        assert_eq!(sent.iter().filter(|(e, _)| *e == "fast").count(), 4);
        assert_eq!(d.backlog(), 8);
        // The slow endpoint's sends never finish; the fast one's do, and its queue drains.
        d.done(fast, Breaker::Ok);
        assert_eq!(d.next_ready(), None, "slow is at its limit, fast has nothing queued");
        assert!(!d.has_ready());
        assert_eq!(d.saturated(4), vec![slow]);
        d.done(slow, Breaker::Ok);
        assert!(d.has_ready());
        assert_eq!(d.next_ready(), Some(("slow", 2)));
    }

    #[test]
    fn threads_bound_the_total_and_endpoints_take_turns() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut d = Dispatcher::new(3, 0);
        for i in 0..3 {
            d.push(a, 10, 0, ('a', i));
        }
        d.push(b, 10, 0, ('b', 0));
        let sent: Vec<_> = std::iter::from_fn(|| d.next_ready()).collect();
        assert_eq!(sent, vec![('a', 0), ('b', 0), ('a', 1)]);
        d.done(a, Breaker::Ok);
        assert_eq!(d.next_ready(), Some(('a', 2)));
        assert_eq!(d.next_ready(), None);
    }

    #[test]
    fn the_failure_that_reaches_the_threshold_holds_what_is_queued() {
        let (bad, good) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut d = Dispatcher::new(4, 5);
        // Three failures already counted when these were claimed; one send at a time.
        for i in 0..10 {
            d.push(bad, 1, 3, i);
        }
        d.push(good, 1, 0, 100);
        assert_eq!(d.next_ready(), Some(0));
        d.done(bad, Breaker::Fail);
        assert_eq!(d.next_ready(), Some(100));
        assert_eq!(d.next_ready(), Some(1));
        let seq = d.done(bad, Breaker::Fail);
        assert_eq!(d.take_held(), (2..10).collect::<Vec<_>>(), "the fifth failure in a row holds the rest");
        assert_eq!(d.next_ready(), None, "nothing of the tripped endpoint is sent");
        // Claimed before the trip was recorded: held at once.
        d.push(bad, 1, 4, 10);
        assert_eq!(d.take_held(), vec![10]);
        assert!(d.saturated(256).contains(&bad));
        // Recorded: the endpoint's row says open, so the next claim of it is a half-open probe.
        d.recorded(seq);
        d.done(good, Breaker::Ok);
        assert!(!d.saturated(256).contains(&good));
        d.push(bad, 1, 5, 11);
        assert!(d.saturated(256).contains(&bad), "half-open: no more claims while the probe is out");
        assert_eq!(d.next_ready(), Some(11));
        d.push(bad, 1, 5, 12);
        d.done(bad, Breaker::Fail);
        assert_eq!(d.take_held(), vec![12], "a failed probe trips the lane again");
        assert_eq!(d.backlog(), 0);
    }

    #[test]
    fn a_success_or_an_unsendable_message_never_trips() {
        let e = Uuid::from_u128(1);
        let mut d = Dispatcher::new(1, 2);
        for i in 0..4 {
            d.push(e, 1, 1, i);
        }
        assert_eq!(d.next_ready(), Some(0));
        d.done(e, Breaker::Neutral);
        assert_eq!(d.next_ready(), Some(1));
        d.done(e, Breaker::Ok);
        assert_eq!(d.next_ready(), Some(2));
        d.done(e, Breaker::Fail);
        assert_eq!(d.next_ready(), Some(3), "one failure after a success: under the threshold");
        d.done(e, Breaker::Fail);
        assert!(d.take_held().is_empty());
        // Threshold 0: never open.
        let mut never = Dispatcher::new(1, 0);
        never.push(e, 1, 1000, 0);
        never.push(e, 1, 1000, 1);
        assert_eq!(never.next_ready(), Some(0));
        never.done(e, Breaker::Fail);
        assert_eq!(never.next_ready(), Some(1));
    }
}
