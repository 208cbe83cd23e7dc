//! The exact IPv4 set: sorted chunks while sparse, one Roaring bitmap per /8 once
//! dense.
//!
//! Why two forms: a Roaring bitmap costs about 48 bytes per /16 container beyond its
//! 2 bytes per value, which is most of its memory when a set holds a few addresses
//! per /16 (a tracker's error-code sets at 10 M random devices hold about 4.6, every
//! set of a partition at 200 k devices less than one). The sparse form (`sparse`)
//! costs about 4.2 bytes per value whatever the spread. A set starts sparse and
//! switches, for good, once Roaring is the smaller form: when it holds at least
//! [`DENSE_PER_PREFIX`] values per /16 prefix on average (checked each time the set
//! doubles, from [`FIRST_CHECK`] values on; counting prefixes walks the set).
//!
//! Why per /8 once dense: Roaring keeps its containers (one per /16) in one sorted
//! vector, so each new /16 is inserted in the middle of a vector of up to 65,536
//! 40-byte entries, and every lookup binary-searches it. Random device addresses
//! touch every /16: building such a set by inserts moved tens of gigabytes (it was
//! most of the tracker's time) and each insert missed the cache at every step of the
//! search. Split per /8, a lookup indexes the shard directly and searches at most
//! 256 containers. (Per /20, at most 16, measured slower: the 4,096 separate
//! container vectors cost more cache misses than the shorter searches saved.)
//!
//! The wire format is the same for both forms: one portable Roaring bitmap.

use std::borrow::Cow;

use roaring::RoaringBitmap;

use crate::sparse::{count_prefixes, Sparse};

/// Shards of a dense set: one per /8, so at most 256 containers each.
const SHARDS: usize = 1 << 8;
const SHARD_SHIFT: u32 = 32 - 8;
/// A set turns dense when it holds at least this many values per /16 prefix: then
/// Roaring's ~2 bytes per value plus ~48 bytes per container (2 + 48 / 20 = 4.4)
/// is below the sparse form's ~4.2 to 5.5 bytes per value (chunks are half to
/// completely full as they grow).
const DENSE_PER_PREFIX: u64 = 20;
/// Smallest set that may turn dense: below it the 256 shard headers (6 KiB) would
/// dominate.
const FIRST_CHECK: u64 = 1 << 12;

/// Whether a set of `len` values over `prefixes` /16 prefixes is smaller as Roaring.
fn prefer_dense(len: u64, prefixes: u64) -> bool {
    len >= FIRST_CHECK && len >= DENSE_PER_PREFIX * prefixes
}

#[derive(Debug, Clone)]
enum Form {
    Sparse {
        set: Sparse,
        /// Size at which to check again whether the set should turn dense.
        next_check: u64,
    },
    /// `SHARDS` bitmaps, shard `i` holding the values whose top 8 bits are `i`.
    Dense(Vec<RoaringBitmap>),
}

impl Default for Form {
    fn default() -> Self {
        Form::Sparse {
            set: Sparse::default(),
            next_check: FIRST_CHECK,
        }
    }
}

/// Exact set of `u32` (IPv4 addresses).
#[derive(Debug, Clone, Default)]
pub(crate) struct V4Set {
    form: Form,
    /// Number of values, kept because summing containers or chunks is O(them).
    len: u64,
}

fn shard_of(value: u32) -> usize {
    (value >> SHARD_SHIFT) as usize
}

/// Strictly increasing values split per /8.
fn split(values: impl Iterator<Item = u32>) -> Vec<RoaringBitmap> {
    let mut shards = vec![RoaringBitmap::new(); SHARDS];
    let mut values = values.peekable();
    while let Some(&first) = values.peek() {
        let shard = shard_of(first);
        let run = std::iter::from_fn(|| values.next_if(|v| shard_of(*v) == shard));
        shards[shard] = RoaringBitmap::from_sorted_iter(run).expect("values increase");
    }
    shards
}

impl V4Set {
    #[cfg(test)]
    fn is_dense(&self) -> bool {
        matches!(self.form, Form::Dense(_))
    }

    /// The set as `SHARDS` bitmaps (borrowed when it is dense).
    fn sharded(&self) -> Cow<'_, [RoaringBitmap]> {
        match &self.form {
            Form::Sparse { set, .. } => Cow::Owned(split(set.iter())),
            Form::Dense(shards) => Cow::Borrowed(shards),
        }
    }

    fn make_dense(&mut self) {
        if let Form::Sparse { set, .. } = &self.form {
            self.form = Form::Dense(split(set.iter()));
        }
    }

    /// At each doubling, turns dense if Roaring is now the smaller form.
    fn check_form(&mut self) {
        if let Form::Sparse { set, next_check } = &mut self.form {
            if self.len >= *next_check {
                *next_check = self.len.saturating_mul(2);
                if prefer_dense(self.len, set.prefixes()) {
                    self.make_dense();
                }
            }
        }
    }

    /// Adds `value`; true if it was not present.
    pub(crate) fn insert(&mut self, value: u32) -> bool {
        let new = match &mut self.form {
            Form::Sparse { set, .. } => set.insert(value),
            Form::Dense(shards) => shards[shard_of(value)].insert(value),
        };
        if new {
            self.len += 1;
            self.check_form();
        }
        new
    }

    /// Adds strictly increasing `values`, pushing those not present before onto `new`.
    pub(crate) fn insert_sorted(&mut self, values: &[u32], new: &mut Vec<u32>) {
        let before = new.len();
        match &mut self.form {
            Form::Sparse { set, .. } => set.insert_sorted(values, new),
            Form::Dense(shards) => {
                new.extend(
                    values
                        .iter()
                        .copied()
                        .filter(|&v| shards[shard_of(v)].insert(v)),
                );
            }
        }
        self.len += (new.len() - before) as u64;
        self.check_form();
    }

    pub(crate) fn contains(&self, value: u32) -> bool {
        match &self.form {
            Form::Sparse { set, .. } => set.contains(value),
            Form::Dense(shards) => shards[shard_of(value)].contains(value),
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn union_with(&mut self, other: &V4Set) {
        if other.len == 0 {
            return;
        }
        if self.len == 0 {
            *self = other.clone();
            return;
        }
        match (&mut self.form, &other.form) {
            (Form::Sparse { set: mine, .. }, Form::Sparse { set: theirs, .. }) => {
                let merged: Vec<u32> = merge(mine.iter(), theirs.iter()).collect();
                *self = merged.iter().copied().collect_sorted();
            }
            (Form::Dense(shards), Form::Sparse { set: theirs, .. }) => {
                for value in theirs.iter() {
                    if shards[shard_of(value)].insert(value) {
                        self.len += 1;
                    }
                }
            }
            (_, Form::Dense(theirs)) => {
                self.make_dense();
                let Form::Dense(shards) = &mut self.form else {
                    unreachable!("made dense above")
                };
                for (mine, theirs) in shards.iter_mut().zip(theirs) {
                    *mine |= theirs;
                }
                self.len = shards.iter().map(RoaringBitmap::len).sum();
            }
        }
    }

    /// Whether no value is in both sets.
    pub(crate) fn is_disjoint(&self, other: &V4Set) -> bool {
        match (&self.form, &other.form) {
            (Form::Dense(a), Form::Dense(b)) => a.iter().zip(b).all(|(a, b)| a.is_disjoint(b)),
            _ => {
                let (small, large) = if self.len <= other.len {
                    (self, other)
                } else {
                    (other, self)
                };
                !small.iter().any(|v| large.contains(v))
            }
        }
    }

    /// Size of the union of `sets`, building one shard's union at a time.
    pub(crate) fn union_len(sets: &[&V4Set]) -> u64 {
        use roaring::MultiOps;
        let sharded: Vec<Cow<'_, [RoaringBitmap]>> = sets
            .iter()
            .filter(|s| s.len > 0)
            .map(|s| s.sharded())
            .collect();
        (0..SHARDS)
            .map(|i| sharded.iter().map(|s| &s[i]).union().len())
            .sum()
    }

    /// Drops spare capacity: sparse chunks are repacked full, and each bitmap is
    /// rebuilt from its encoding (arrays grown by doubling keep up to half spare).
    pub(crate) fn shrink_to_fit(&mut self) {
        match &mut self.form {
            Form::Sparse { set, .. } => set.shrink_to_fit(),
            Form::Dense(shards) => {
                for shard in shards.iter_mut().filter(|s| !s.is_empty()) {
                    let mut bytes = Vec::with_capacity(shard.serialized_size());
                    shard
                        .serialize_into(&mut bytes)
                        .expect("writing to a Vec<u8> cannot fail");
                    *shard = RoaringBitmap::deserialize_unchecked_from(bytes.as_slice())
                        .expect("roaring reads back its own encoding");
                }
            }
        }
    }

    /// All values in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (sparse, dense) = match &self.form {
            Form::Sparse { set, .. } => (Some(set), &[][..]),
            Form::Dense(shards) => (None, shards.as_slice()),
        };
        let sparse = sparse.into_iter().flat_map(Sparse::iter);
        sparse.chain(dense.iter().flat_map(RoaringBitmap::iter))
    }

    /// Size of the single portable Roaring bitmap [`to_bitmap`](Self::to_bitmap)
    /// gives: one 8-byte header, then each container.
    pub(crate) fn serialized_size(&self) -> usize {
        match &self.form {
            Form::Sparse { set, .. } => set.serialized_size(),
            Form::Dense(shards) => {
                8 + shards
                    .iter()
                    .map(|s| s.serialized_size() - 8)
                    .sum::<usize>()
            }
        }
    }

    /// Appends the set's portable Roaring encoding (the wire format).
    pub(crate) fn serialize_into(&self, out: &mut Vec<u8>) {
        match &self.form {
            Form::Sparse { set, .. } => set.serialize_into(out),
            Form::Dense(_) => self
                .to_bitmap()
                .serialize_into(out)
                .expect("writing to a Vec<u8> cannot fail"),
        }
    }

    /// The set as one Roaring bitmap.
    pub(crate) fn to_bitmap(&self) -> RoaringBitmap {
        // Values come in increasing order, so this only appends containers.
        RoaringBitmap::from_sorted_iter(self.iter()).expect("the set iterates in increasing order")
    }

    /// Which shard a decoded container key (the top 16 bits) belongs to.
    pub(crate) fn decoded_shard_of_key(key: u16) -> usize {
        usize::from(key) >> (16 - (32 - SHARD_SHIFT))
    }

    /// Builds a set of `len` values in `containers` Roaring containers from decoded
    /// bitmaps, each given with the shard
    /// [`decoded_shard_of_key`](Self::decoded_shard_of_key) chose for it, in
    /// increasing order. The form is the one inserts would settle on.
    pub(crate) fn from_decoded(
        len: u64,
        containers: u64,
        parts: Vec<(usize, RoaringBitmap)>,
    ) -> V4Set {
        if !prefer_dense(len, containers) {
            let set = Sparse::from_sorted(parts.iter().flat_map(|(_, bitmap)| bitmap.iter()));
            return V4Set {
                form: Form::Sparse {
                    set,
                    next_check: next_check_after(len),
                },
                len,
            };
        }
        let mut shards = vec![RoaringBitmap::new(); SHARDS];
        for (index, bitmap) in parts {
            shards[index] = bitmap;
        }
        V4Set {
            form: Form::Dense(shards),
            len,
        }
    }
}

/// The first doubling check a sparse set of `len` values has not passed yet.
fn next_check_after(len: u64) -> u64 {
    let mut check = FIRST_CHECK;
    while check <= len {
        check *= 2;
    }
    check
}

/// Two increasing sequences merged, without duplicates.
fn merge(a: impl Iterator<Item = u32>, b: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(x), Some(y)) if x > y => b.next(),
        (Some(_), Some(_)) => {
            b.next();
            a.next()
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// Building a set from values already strictly increasing.
trait CollectSorted {
    fn collect_sorted(self) -> V4Set;
}

impl<I: Iterator<Item = u32> + Clone> CollectSorted for I {
    fn collect_sorted(self) -> V4Set {
        let len = self.clone().count() as u64;
        if prefer_dense(len, count_prefixes(self.clone())) {
            return V4Set {
                form: Form::Dense(split(self)),
                len,
            };
        }
        V4Set {
            form: Form::Sparse {
                set: Sparse::from_sorted(self),
                next_check: next_check_after(len),
            },
            len,
        }
    }
}

impl PartialEq for V4Set {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl FromIterator<u32> for V4Set {
    /// Sorts first, so the set is built by appending.
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut values: Vec<u32> = iter.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        values.iter().copied().collect_sorted()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// `n` random values spread over every /16 (few per prefix: stays sparse).
    fn spread(n: u32, seed: u32) -> Vec<u32> {
        (0..n)
            .map(|i| (i ^ seed).wrapping_mul(2_654_435_761).rotate_left(7))
            .collect()
    }

    fn assert_same(set: &V4Set, model: &BTreeSet<u32>) {
        assert_eq!(set.len(), model.len() as u64);
        assert!(set.iter().eq(model.iter().copied()));
        assert_eq!(set.serialized_size(), set.to_bitmap().serialized_size());
    }

    #[test]
    fn a_set_dense_per_prefix_turns_dense_and_keeps_every_value() {
        // 40 values in each of 256 /16s: dense at the first check.
        let values: Vec<u32> = (0..256u32)
            .flat_map(|p| (0..40u32).map(move |i| (p << 20) | (i * 7)))
            .collect();
        let mut set = V4Set::default();
        let mut model = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            assert_eq!(set.insert(*v), model.insert(*v));
            assert_eq!(set.is_dense(), i + 1 >= FIRST_CHECK as usize, "after {i}");
        }
        assert_same(&set, &model);
        assert!(values.iter().all(|v| set.contains(*v)));
        let collected: V4Set = values.iter().copied().collect();
        assert!(collected.is_dense());
        assert_eq!(collected, set);
    }

    #[test]
    fn a_spread_set_stays_sparse_until_roaring_is_smaller() {
        let values = spread(3 * FIRST_CHECK as u32, 1);
        let mut set = V4Set::default();
        for v in &values {
            set.insert(*v);
        }
        assert!(!set.is_dense(), "{} values over as many /16s", values.len());
        let model: BTreeSet<u32> = values.iter().copied().collect();
        assert_same(&set, &model);
        // The same count packed into 64 /16s is dense at the next check.
        let mut packed = V4Set::default();
        for i in 0..4 * FIRST_CHECK as u32 {
            packed.insert(((i % 64) << 16) | (i / 64));
        }
        assert!(packed.is_dense());
    }

    #[test]
    fn decoding_picks_the_form_inserts_settle_on() {
        let sparse: V4Set = spread(10_000, 3).into_iter().collect();
        assert!(!sparse.is_dense());
        let dense: V4Set = (0..10_000u32).collect();
        assert!(dense.is_dense());
        for set in [sparse, dense] {
            let bitmap = set.to_bitmap();
            let containers = bitmap
                .iter()
                .map(|v| v >> 16)
                .collect::<BTreeSet<_>>()
                .len();
            let mut parts: Vec<(usize, RoaringBitmap)> = Vec::new();
            for v in bitmap.iter() {
                let shard = V4Set::decoded_shard_of_key((v >> 16) as u16);
                match parts.last_mut() {
                    Some((s, b)) if *s == shard => {
                        b.insert(v);
                    }
                    _ => parts.push((shard, RoaringBitmap::from_iter([v]))),
                }
            }
            let decoded = V4Set::from_decoded(set.len(), containers as u64, parts);
            assert_eq!(decoded.is_dense(), set.is_dense());
            assert_eq!(decoded, set);
        }
    }

    fn values() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(
            prop_oneof![
                0u32..5000,
                any::<u32>(),
                (0u32..8, 0u32..3000).prop_map(|(p, v)| p << 16 | v),
            ],
            0..6000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn inserts_unions_and_checks_behave_like_btree_sets(a in values(), b in values()) {
            let (mut x, mut y) = (V4Set::default(), V4Set::default());
            let (mut mx, mut my) = (BTreeSet::new(), BTreeSet::new());
            for v in &a {
                prop_assert_eq!(x.insert(*v), mx.insert(*v));
            }
            for v in &b {
                prop_assert_eq!(y.insert(*v), my.insert(*v));
            }
            assert_same(&x, &mx);
            assert_same(&y, &my);
            for v in a.iter().chain(&b) {
                prop_assert_eq!(x.contains(*v), mx.contains(v));
            }
            prop_assert_eq!(x.is_disjoint(&y), mx.is_disjoint(&my));
            prop_assert_eq!(V4Set::union_len(&[&x, &y]), mx.union(&my).count() as u64);
            // Every pairing of forms: as inserted, and each side forced dense.
            let mut dense_y = y.clone();
            dense_y.make_dense();
            let mut dense_x = x.clone();
            dense_x.make_dense();
            let all: BTreeSet<u32> = mx.union(&my).copied().collect();
            for (left, right) in [(&x, &y), (&x, &dense_y), (&dense_x, &y), (&dense_x, &dense_y)] {
                let mut union = left.clone();
                union.union_with(right);
                assert_same(&union, &all);
                prop_assert_eq!(left.is_disjoint(right), mx.is_disjoint(&my));
                let mut shrunk = union.clone();
                shrunk.shrink_to_fit();
                prop_assert_eq!(&shrunk, &union);
                prop_assert_eq!(shrunk.insert(u32::MAX), !all.contains(&u32::MAX));
            }
        }
    }
}
