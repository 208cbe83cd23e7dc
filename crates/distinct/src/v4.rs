//! The exact IPv4 set: 256 Roaring bitmaps, one per first octet.
//!
//! Why not one bitmap: Roaring keeps its containers (one per /16) in one sorted
//! vector, so each new /16 is inserted in the middle of a vector of up to 65,536
//! 40-byte entries. Random device addresses touch every /16, and building such a
//! set by inserts moved tens of gigabytes (it was most of the tracker's time), and
//! every lookup binary-searched 65,536 entries. With one bitmap per /8 each
//! vector holds at most 256 containers. The wire format is unchanged: one portable
//! Roaring bitmap, assembled from the shards in order.

use roaring::RoaringBitmap;

const SHARDS: usize = 256;

/// Exact set of `u32` (IPv4 addresses).
#[derive(Debug, Clone, Default)]
pub(crate) struct V4Set {
    /// Empty until the first insert, then `SHARDS` bitmaps; shard `i` holds the
    /// values whose top byte is `i`.
    shards: Vec<RoaringBitmap>,
}

fn shard_of(value: u32) -> usize {
    (value >> 24) as usize
}

impl V4Set {
    fn shards_mut(&mut self) -> &mut [RoaringBitmap] {
        if self.shards.is_empty() {
            self.shards = vec![RoaringBitmap::new(); SHARDS];
        }
        &mut self.shards
    }

    /// Adds `value`; true if it was not present.
    pub(crate) fn insert(&mut self, value: u32) -> bool {
        self.shards_mut()[shard_of(value)].insert(value)
    }

    pub(crate) fn contains(&self, value: u32) -> bool {
        self.shards
            .get(shard_of(value))
            .is_some_and(|shard| shard.contains(value))
    }

    pub(crate) fn len(&self) -> u64 {
        self.shards.iter().map(RoaringBitmap::len).sum()
    }

    pub(crate) fn union_with(&mut self, other: &V4Set) {
        if other.shards.is_empty() {
            return;
        }
        for (mine, theirs) in self.shards_mut().iter_mut().zip(&other.shards) {
            *mine |= theirs;
        }
    }

    /// Whether no value is in both sets.
    pub(crate) fn is_disjoint(&self, other: &V4Set) -> bool {
        self.shards
            .iter()
            .zip(&other.shards)
            .all(|(a, b)| a.is_disjoint(b))
    }

    /// Size of the union of `sets`, building one shard's union at a time.
    pub(crate) fn union_len(sets: &[&V4Set]) -> u64 {
        use roaring::MultiOps;
        (0..SHARDS)
            .map(|i| {
                let shards: Vec<&RoaringBitmap> =
                    sets.iter().filter_map(|s| s.shards.get(i)).collect();
                match shards.as_slice() {
                    [] => 0,
                    [one] => one.len(),
                    many => many.iter().copied().union().len(),
                }
            })
            .sum()
    }

    /// Rebuilds each shard from its encoding, which drops the spare capacity of arrays
    /// grown by doubling.
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
    pub(crate) fn to_bitmap(&self) -> RoaringBitmap {
        // Values come in increasing order, so this only appends containers.
        RoaringBitmap::from_sorted_iter(self.iter()).expect("shards iterate in increasing order")
    }

    /// Builds a set from decoded shards, given by their top byte.
    pub(crate) fn from_shards(shards: Vec<(u8, RoaringBitmap)>) -> V4Set {
        let mut set = V4Set::default();
        for (top, shard) in shards {
            set.shards_mut()[usize::from(top)] = shard;
        }
        set
    }
}

impl PartialEq for V4Set {
    fn eq(&self, other: &Self) -> bool {
        match (self.shards.is_empty(), other.shards.is_empty()) {
            (false, false) => self.shards == other.shards,
            (true, true) => true,
            (true, false) => other.len() == 0,
            (false, true) => self.len() == 0,
        }
    }
}

impl FromIterator<u32> for V4Set {
    /// Sorts first, so the bitmaps are built by appending.
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut values: Vec<u32> = iter.into_iter().collect();
        values.sort_unstable();
        values.dedup();
        let mut set = V4Set::default();
        if values.is_empty() {
            return set;
        }
        let shards = set.shards_mut();
        for run in values.chunk_by(|a, b| shard_of(*a) == shard_of(*b)) {
            shards[shard_of(run[0])] = RoaringBitmap::from_sorted_iter(run.iter().copied())
                .expect("sorted and deduplicated");
        }
        set
    }
}
