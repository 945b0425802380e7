//! Half-open intervals of instants and set operations on sorted, disjoint lists of them.

use super::zone::Micros;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: Micros,
    pub end: Micros,
}

impl Interval {
    pub fn new(start: Micros, end: Micros) -> Interval {
        Interval { start, end }
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Sorts and merges overlapping or touching intervals; drops empty ones.
pub fn normalize(mut list: Vec<Interval>) -> Vec<Interval> {
    list.retain(|i| !i.is_empty());
    list.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(list.len());
    for i in list {
        match out.last_mut() {
            Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
            _ => out.push(i),
        }
    }
    out
}

/// Intersection of two normalized lists.
pub fn intersect(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < a.len() && j < b.len() {
        let start = a[i].start.max(b[j].start);
        let end = a[i].end.min(b[j].end);
        if start < end {
            out.push(Interval::new(start, end));
        }
        if a[i].end < b[j].end {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// `a` minus `b`, both normalized.
pub fn subtract(a: &[Interval], b: &[Interval]) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut j = 0;
    for &x in a {
        let mut cur = x.start;
        while j < b.len() && b[j].end <= cur {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].start < x.end {
            if b[k].start > cur {
                out.push(Interval::new(cur, b[k].start));
            }
            cur = cur.max(b[k].end);
            k += 1;
        }
        if cur < x.end {
            out.push(Interval::new(cur, x.end));
        }
    }
    out
}

/// Whether `[start, end)` lies inside one interval of a normalized list.
pub fn contains(list: &[Interval], start: Micros, end: Micros) -> bool {
    let idx = list.partition_point(|i| i.end < end);
    idx < list.len() && list[idx].start <= start
}

/// The index of the first interval of a sorted list (by start, possibly overlapping ends are
/// fine only when normalized) that overlaps `[start, end)`.
pub fn first_overlap(list: &[Interval], start: Micros, end: Micros) -> Option<usize> {
    let idx = list.partition_point(|i| i.end <= start);
    (idx < list.len() && list[idx].start < end).then_some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(list: &[(i64, i64)]) -> Vec<Interval> {
        list.iter().map(|&(s, e)| Interval::new(s, e)).collect()
    }

    #[test]
    fn normalize_merges_overlapping_and_touching() {
        assert_eq!(normalize(iv(&[(5, 7), (1, 3), (3, 4), (6, 9), (10, 10)])), iv(&[(1, 4), (5, 9)]));
    }

    #[test]
    fn intersect_keeps_common_parts() {
        let a = iv(&[(0, 10), (20, 30)]);
        let b = iv(&[(5, 25), (28, 40)]);
        assert_eq!(intersect(&a, &b), iv(&[(5, 10), (20, 25), (28, 30)]));
    }

    #[test]
    fn subtract_cuts_holes() {
        let a = iv(&[(0, 10), (20, 30)]);
        let b = iv(&[(2, 3), (8, 22), (29, 35)]);
        assert_eq!(subtract(&a, &b), iv(&[(0, 2), (3, 8), (22, 29)]));
        assert_eq!(subtract(&a, &[]), a);
    }

    #[test]
    fn contains_and_overlap_are_half_open() {
        let a = iv(&[(0, 10), (20, 30)]);
        assert!(contains(&a, 0, 10));
        assert!(!contains(&a, 5, 21));
        assert!(!contains(&a, 10, 12));
        assert_eq!(first_overlap(&a, 10, 20), None);
        assert_eq!(first_overlap(&a, 9, 20), Some(0));
        assert_eq!(first_overlap(&a, 10, 21), Some(1));
    }
}
