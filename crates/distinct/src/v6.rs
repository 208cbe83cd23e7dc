//! The exact IPv6 set: a sorted `Vec<u128>` plus a small sorted insert buffer.
//!
//! Why not `BTreeSet<u128>` alone: B-tree nodes hold at most 11 keys plus
//! headers and are typically 2/3 full, so each address costs ~25-30 bytes;
//! a sorted vector costs exactly 16, serialises as-is (the wire format is
//! the same sorted list), and unions are linear merges. Inserting into the
//! middle of a vector is O(n), so new addresses go to a `BTreeSet` buffer
//! that is merged into the vector when it reaches `max(1024, n / 8)` entries:
//! amortised O(log n + 8) per insert, at most ~1/8 of extra memory. IPv6
//! device counts are expected to be small, so this is simplicity first.

use std::collections::BTreeSet;
use std::iter::Peekable;

/// Smallest buffer size before a merge.
const MIN_BUFFER: usize = 1024;

/// Exact set of `u128` (IPv6 addresses as big-endian integers).
#[derive(Debug, Clone, Default)]
pub(crate) struct V6Set {
    /// Strictly increasing, disjoint from `buffer`.
    sorted: Vec<u128>,
    /// Recent inserts not yet merged.
    buffer: BTreeSet<u128>,
}

impl V6Set {
    /// Builds from strictly increasing values (checked by the caller).
    pub(crate) fn from_sorted(sorted: Vec<u128>) -> Self {
        Self {
            sorted,
            buffer: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        (self.sorted.len() + self.buffer.len()) as u64
    }

    pub(crate) fn contains(&self, value: u128) -> bool {
        self.sorted.binary_search(&value).is_ok() || self.buffer.contains(&value)
    }

    /// Adds `value`; true if it was not present.
    pub(crate) fn insert(&mut self, value: u128) -> bool {
        if self.sorted.binary_search(&value).is_ok() || !self.buffer.insert(value) {
            return false;
        }
        if self.buffer.len() >= MIN_BUFFER.max(self.sorted.len() / 8) {
            self.flush();
        }
        true
    }

    /// Merges the buffer into the sorted vector.
    fn flush(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let buffer = std::mem::take(&mut self.buffer);
        let sorted = std::mem::take(&mut self.sorted);
        self.sorted = merge_sorted(sorted.into_iter(), buffer.into_iter(), 0);
    }

    /// Merges the buffer and drops spare capacity.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.flush();
        self.sorted.shrink_to_fit();
    }

    /// In-place union.
    pub(crate) fn union_with(&mut self, other: &V6Set) {
        if other.len() == 0 {
            return;
        }
        let capacity =
            self.sorted.len() + self.buffer.len() + other.sorted.len() + other.buffer.len();
        let mine: Vec<u128> = self.iter().collect();
        self.buffer.clear();
        self.sorted = merge_sorted(mine.into_iter(), other.iter(), capacity);
    }

    /// All values in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u128> + '_ {
        Union::new(self.sorted.iter().copied(), self.buffer.iter().copied())
    }
}

impl PartialEq for V6Set {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for V6Set {}

/// Union of two increasing sequences into a vector.
fn merge_sorted(
    a: impl Iterator<Item = u128>,
    b: impl Iterator<Item = u128>,
    capacity: usize,
) -> Vec<u128> {
    let mut out = Vec::with_capacity(capacity);
    out.extend(Union::new(a, b));
    out.shrink_to_fit();
    out
}

/// Increasing, deduplicated union of two increasing iterators.
struct Union<A: Iterator<Item = u128>, B: Iterator<Item = u128>> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<A: Iterator<Item = u128>, B: Iterator<Item = u128>> Union<A, B> {
    fn new(a: A, b: B) -> Self {
        Self {
            a: a.peekable(),
            b: b.peekable(),
        }
    }
}

impl<A: Iterator<Item = u128>, B: Iterator<Item = u128>> Iterator for Union<A, B> {
    type Item = u128;

    fn next(&mut self) -> Option<u128> {
        match (self.a.peek().copied(), self.b.peek().copied()) {
            (Some(x), Some(y)) if x < y => self.a.next(),
            (Some(x), Some(y)) if y < x => self.b.next(),
            (Some(_), Some(_)) => {
                self.b.next();
                self.a.next()
            }
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_flushes_and_stays_exact() {
        let mut set = V6Set::default();
        for i in (0..5000u128).rev() {
            assert!(set.insert(i * 7));
            assert!(!set.insert(i * 7));
        }
        assert_eq!(set.len(), 5000);
        assert!(!set.sorted.is_empty(), "buffer was merged at least once");
        assert!(set.iter().eq((0..5000u128).map(|i| i * 7)));
        assert!(set.contains(7 * 4999) && !set.contains(1));
    }

    #[test]
    fn union_dedups() {
        let mut a = V6Set::default();
        let mut b = V6Set::default();
        for i in 0..10u128 {
            a.insert(i);
            b.insert(i + 5);
        }
        a.union_with(&b);
        assert!(a.iter().eq(0..15u128));
    }
}
