//! The exact IPv4 set: one Roaring bitmap while small, one per /8 once large.
//!
//! Why not always one bitmap: Roaring keeps its containers (one per /16) in one
//! sorted vector, so each new /16 is inserted in the middle of a vector of up to
//! 65,536 40-byte entries, and every lookup binary-searches it. Random device
//! addresses touch every /16: building such a set by inserts moved tens of
//! gigabytes (it was most of the tracker's time) and each insert missed the cache
//! at every step of the search. Split per /8, a lookup indexes the shard directly
//! and searches at most 256 containers. (Per /20, at most 16, measured slower: the
//! 4,096 separate container vectors cost more cache misses than the shorter
//! searches saved.) Small sets stay one bitmap, so the many small per-window sets
//! carry no shard headers. The wire format is the same either way: one portable
//! Roaring bitmap.

use std::borrow::Cow;

use roaring::RoaringBitmap;

/// Shards of a large set: one per /8, so at most 256 containers each.
const SHARDS: usize = 1 << 8;
const SHARD_SHIFT: u32 = 32 - 8;
/// A set splits into shards when it grows past this many addresses. Early: growing
/// one bitmap to n random addresses moves about 10·n² bytes (n = 65,536 cost 40 GB),
/// while the 256 shard headers cost 6 KB.
const SPLIT_AT: u64 = 1 << 10;

/// Exact set of `u32` (IPv4 addresses).
#[derive(Debug, Clone, Default)]
pub(crate) struct V4Set {
    /// Empty (no address yet), one bitmap (small), or `SHARDS` bitmaps where shard
    /// `i` holds the values whose top 8 bits are `i`.
    shards: Vec<RoaringBitmap>,
    /// Number of values, kept because summing containers is O(containers).
    len: u64,
}

fn shard_of(value: u32) -> usize {
    (value >> SHARD_SHIFT) as usize
}

/// `bitmap` split per /8.
fn split(bitmap: &RoaringBitmap) -> Vec<RoaringBitmap> {
    (0..SHARDS as u32)
        .map(|i| {
            let first = i << SHARD_SHIFT;
            let range = first..=first | ((1 << SHARD_SHIFT) - 1);
            RoaringBitmap::from_sorted_iter(bitmap.range(range))
                .expect("a range iterates in increasing order")
        })
        .collect()
}

impl V4Set {
    fn is_sharded(&self) -> bool {
        self.shards.len() == SHARDS
    }

    /// The set as `SHARDS` bitmaps (borrowed when it already is).
    fn sharded(&self) -> Cow<'_, [RoaringBitmap]> {
        match self.shards.as_slice() {
            [] => Cow::Owned(vec![RoaringBitmap::new(); SHARDS]),
            [one] => Cow::Owned(split(one)),
            all => Cow::Borrowed(all),
        }
    }

    fn split_if_large(&mut self) {
        if self.len > SPLIT_AT && self.shards.len() == 1 {
            self.shards = split(&self.shards[0]);
        }
    }

    /// Adds `value`; true if it was not present.
    pub(crate) fn insert(&mut self, value: u32) -> bool {
        let index = match self.shards.len() {
            0 => {
                self.shards.push(RoaringBitmap::new());
                0
            }
            1 => 0,
            _ => shard_of(value),
        };
        let new = self.shards[index].insert(value);
        if new {
            self.len += 1;
            self.split_if_large();
        }
        new
    }

    pub(crate) fn contains(&self, value: u32) -> bool {
        match self.shards.as_slice() {
            [] => false,
            [one] => one.contains(value),
            all => all[shard_of(value)].contains(value),
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
        if !self.is_sharded() && !other.is_sharded() {
            self.shards[0] |= &other.shards[0];
            self.len = self.shards[0].len();
            self.split_if_large();
            return;
        }
        if !self.is_sharded() {
            self.shards = split(&self.shards[0]);
        }
        for (mine, theirs) in self.shards.iter_mut().zip(other.sharded().iter()) {
            *mine |= theirs;
        }
        self.len = self.shards.iter().map(RoaringBitmap::len).sum();
    }

    /// Whether no value is in both sets.
    pub(crate) fn is_disjoint(&self, other: &V4Set) -> bool {
        match (self.shards.as_slice(), other.shards.as_slice()) {
            ([], _) | (_, []) => true,
            ([a], [b]) => a.is_disjoint(b),
            _ => self
                .sharded()
                .iter()
                .zip(other.sharded().iter())
                .all(|(a, b)| a.is_disjoint(b)),
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

    /// Rebuilds each bitmap from its encoding, which drops the spare capacity of
    /// arrays grown by doubling.
    pub(crate) fn shrink_to_fit(&mut self) {
        for shard in self.shards.iter_mut().filter(|s| !s.is_empty()) {
            let mut bytes = Vec::with_capacity(shard.serialized_size());
            shard
                .serialize_into(&mut bytes)
                .expect("writing to a Vec<u8> cannot fail");
            *shard = RoaringBitmap::deserialize_unchecked_from(bytes.as_slice())
                .expect("roaring reads back its own encoding");
        }
    }

    /// All values in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.shards.iter().flat_map(RoaringBitmap::iter)
    }

    /// Size of the single portable Roaring bitmap [`to_bitmap`](Self::to_bitmap)
    /// gives: one 8-byte header, then each shard's containers (an empty bitmap
    /// encodes to its 8-byte header alone).
    pub(crate) fn serialized_size(&self) -> usize {
        8 + self
            .shards
            .iter()
            .map(|s| s.serialized_size() - 8)
            .sum::<usize>()
    }

    /// The set as one Roaring bitmap (for the wire format).
    pub(crate) fn to_bitmap(&self) -> Cow<'_, RoaringBitmap> {
        match self.shards.as_slice() {
            [] => Cow::Owned(RoaringBitmap::new()),
            [one] => Cow::Borrowed(one),
            // Values come in increasing order, so this only appends containers.
            _ => Cow::Owned(
                RoaringBitmap::from_sorted_iter(self.iter())
                    .expect("shards iterate in increasing order"),
            ),
        }
    }

    /// Whether a decoded set of `len` values is kept in shards, and which shard a
    /// container key (the top 16 bits) belongs to then.
    pub(crate) fn decoded_shard_of_key(len: u64, key: u16) -> usize {
        if len > SPLIT_AT {
            usize::from(key) >> (16 - (32 - SHARD_SHIFT))
        } else {
            0
        }
    }

    /// Builds a set of `len` values from decoded bitmaps, each given with the shard
    /// [`decoded_shard_of_key`](Self::decoded_shard_of_key) chose for it.
    pub(crate) fn from_decoded(len: u64, parts: Vec<(usize, RoaringBitmap)>) -> V4Set {
        if len == 0 {
            return V4Set::default();
        }
        let count = if len > SPLIT_AT { SHARDS } else { 1 };
        let mut shards = vec![RoaringBitmap::new(); count];
        for (index, bitmap) in parts {
            shards[index] = bitmap;
        }
        V4Set { shards, len }
    }
}

impl PartialEq for V4Set {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl FromIterator<u32> for V4Set {
    /// Sorts first, so the bitmaps are built by appending.
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut values: Vec<u32> = iter.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        let len = values.len() as u64;
        let bitmap = RoaringBitmap::from_sorted_iter(values).expect("sorted and deduplicated");
        let mut set = V4Set {
            shards: vec![bitmap],
            len,
        };
        if len == 0 {
            set.shards.clear();
        }
        set.split_if_large();
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_set_splits_and_keeps_every_value() {
        let mut set = V4Set::default();
        let values: Vec<u32> = (0..SPLIT_AT as u32 + 10)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        for v in &values {
            assert!(set.insert(*v));
        }
        assert!(set.is_sharded());
        assert_eq!(set.len(), values.len() as u64);
        assert!(values.iter().all(|v| set.contains(*v)));
        let collected: V4Set = values.iter().copied().collect();
        assert_eq!(collected, set);
        let mut small = V4Set::default();
        small.insert(7);
        assert!(!small.is_sharded());
        small.union_with(&set);
        assert_eq!(small, {
            let mut both = set.clone();
            both.insert(7);
            both
        });
    }
}
