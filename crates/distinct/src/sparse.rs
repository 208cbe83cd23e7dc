//! The compact form of a sparse IPv4 set: its values sorted, in chunks of at most
//! [`CHUNK`] `u32`s, with the first value of each chunk in a vector of its own.
//!
//! Why: a Roaring bitmap pays about 48 bytes per /16 container (its 32-byte
//! container entry plus the smallest heap block of the container's array), so a
//! set with a handful of addresses per /16 costs 10 bytes or more per address. At
//! 10 M random devices each of a tracker partition's eleven error-code sets holds
//! about 4.6 addresses per /16, and at 200 k devices every set of a partition
//! holds less than one: Roaring spent most of their memory on headers. Here an
//! address costs 4 bytes plus about 0.2 bytes of chunk headers once shrunk, and
//! an insert is two binary searches over contiguous memory (the chunk firsts, then
//! one chunk of at most 1 KiB) and a move of at most 1 KiB. A set switches to
//! Roaring (see `v4`) when Roaring becomes the smaller form.

/// Values per chunk at most. A full chunk splits into two halves, so a chunk
/// moves at most 1 KiB on insert; an insert that splits moves the chunk headers
/// after it (24 + 4 bytes each, a set of n random values has about n / 180).
pub(crate) const CHUNK: usize = 256;
/// Values bound for one chunk from which [`Sparse::insert_sorted`] merges them in one pass
/// rather than inserting one by one.
const MERGE_AT_LEAST: usize = 4;

/// Sorted, deduplicated `u32`s in chunks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sparse {
    /// The first value of each chunk, strictly increasing.
    firsts: Vec<u32>,
    /// Never empty chunks, each sorted; every value of chunk `i` is below
    /// `firsts[i + 1]`.
    chunks: Vec<Vec<u32>>,
}

impl Sparse {
    /// Index of the chunk `value` belongs in (0 when it is below every chunk).
    fn chunk_of(&self, value: u32) -> usize {
        self.firsts
            .partition_point(|&first| first <= value)
            .saturating_sub(1)
    }

    /// Adds `value`; true if it was not present.
    pub(crate) fn insert(&mut self, value: u32) -> bool {
        if self.chunks.is_empty() {
            self.chunks.push(vec![value]);
            self.firsts.push(value);
            return true;
        }
        let mut index = self.chunk_of(value);
        let mut position = match self.search(index, value) {
            Ok(_) => return false,
            Err(position) => position,
        };
        if self.chunks[index].len() >= CHUNK {
            let tail = self.chunks[index].split_off(CHUNK / 2);
            self.firsts.insert(index + 1, tail[0]);
            self.chunks.insert(index + 1, tail);
            if position > CHUNK / 2 {
                index += 1;
                position -= CHUNK / 2;
            }
        }
        self.chunks[index].insert(position, value);
        if position == 0 {
            self.firsts[index] = value;
        }
        true
    }

    /// Adds strictly increasing `values`, pushing those not present before onto `new` (in
    /// increasing order).
    ///
    /// Why not [`Sparse::insert`] in a loop: a batch of device addresses, sorted, brings a
    /// chunk several values at once, and each insert on its own misses the cache on the
    /// chunk's line it lands on and moves half the chunk. A chunk that gets at least
    /// [`MERGE_AT_LEAST`] values is merged with them in one sequential pass instead.
    pub(crate) fn insert_sorted(&mut self, values: &[u32], new: &mut Vec<u32>) {
        debug_assert!(values.windows(2).all(|w| w[0] < w[1]));
        if self.chunks.is_empty() {
            new.extend_from_slice(values);
            *self = Sparse::from_sorted(values.iter().copied());
            return;
        }
        let mut rest = values;
        while let Some(&first) = rest.first() {
            let index = self.chunk_of(first);
            let run = match self.firsts.get(index + 1) {
                Some(&next) => rest.partition_point(|&v| v < next),
                None => rest.len(),
            };
            let (here, after) = rest.split_at(run);
            if here.len() < MERGE_AT_LEAST {
                new.extend(here.iter().copied().filter(|&v| self.insert(v)));
            } else {
                self.merge_into(index, here, new);
            }
            rest = after;
        }
    }

    /// Merges increasing `values`, which all belong in chunk `index`, into that chunk,
    /// splitting it if it overflows. The values already present are found first, in a pass
    /// that only reads, so a batch of known addresses writes nothing.
    fn merge_into(&mut self, index: usize, values: &[u32], new: &mut Vec<u32>) {
        let before = new.len();
        push_missing(&self.chunks[index], values, new);
        let added = &new[before..];
        if added.is_empty() {
            return;
        }
        let chunk = &mut self.chunks[index];
        let len = chunk.len();
        if len + added.len() <= CHUNK {
            merge_in_place(chunk, added);
            self.firsts[index] = chunk[0];
            return;
        }
        let merged: Vec<u32> = merge_sorted(chunk, added);
        // Pieces three quarters full at most, so the next values land without a split.
        let pieces = merged.len().div_ceil(CHUNK * 3 / 4);
        let size = merged.len().div_ceil(pieces);
        let mut parts = merged.chunks(size).map(<[u32]>::to_vec);
        self.chunks[index] = parts.next().expect("merged holds the chunk's values");
        self.firsts[index] = self.chunks[index][0];
        let tail: Vec<Vec<u32>> = parts.collect();
        let firsts: Vec<u32> = tail.iter().map(|part| part[0]).collect();
        self.firsts.splice(index + 1..index + 1, firsts);
        self.chunks.splice(index + 1..index + 1, tail);
    }

    pub(crate) fn contains(&self, value: u32) -> bool {
        !self.chunks.is_empty() && self.search(self.chunk_of(value), value).is_ok()
    }

    /// Where `value` is (`Ok`) or belongs (`Err`) in chunk `index`.
    ///
    /// Not a plain binary search: a chunk is a kilobyte of its own, rarely in cache, and a
    /// binary search over 256 values touches five of its cache lines before it narrows to
    /// one, each a miss; that was three quarters of the tracker's insert time. Device
    /// addresses spread evenly, so the position interpolated between the chunk's first
    /// value and the next chunk's lands on or beside the right line. A gallop from there
    /// keeps the search exact, and logarithmic however the values spread.
    fn search(&self, index: usize, value: u32) -> Result<usize, usize> {
        let chunk = &self.chunks[index];
        let first = self.firsts[index];
        if value <= first {
            return if value == first { Ok(0) } else { Err(0) };
        }
        // Past the last chunk nothing bounds it from above but its own last value.
        let end = match self.firsts.get(index + 1) {
            Some(&next) => u64::from(next),
            None => u64::from(chunk[chunk.len() - 1]) + 1,
        };
        let span = end.saturating_sub(u64::from(first)).max(1);
        let offset = u64::from(value - first) * chunk.len() as u64 / span;
        let guess = usize::try_from(offset).map_or(chunk.len() - 1, |g| g.min(chunk.len() - 1));
        let position = lower_bound_near(chunk, value, guess);
        match chunk.get(position) {
            Some(&found) if found == value => Ok(position),
            _ => Err(position),
        }
    }

    /// All values in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flatten().copied()
    }

    /// Builds the set from strictly increasing values, in full chunks of exactly
    /// their size (no spare capacity).
    pub(crate) fn from_sorted(values: impl Iterator<Item = u32>) -> Sparse {
        let mut set = Sparse::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        for value in values {
            debug_assert!(chunk.last().is_none_or(|&last| last < value));
            chunk.push(value);
            if chunk.len() == CHUNK {
                set.push_chunk(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
            }
        }
        if !chunk.is_empty() {
            chunk.shrink_to_fit();
            set.push_chunk(chunk);
        }
        set.firsts.shrink_to_fit();
        set.chunks.shrink_to_fit();
        set
    }

    fn push_chunk(&mut self, chunk: Vec<u32>) {
        self.firsts.push(chunk[0]);
        self.chunks.push(chunk);
    }

    /// Repacks the values into full chunks without spare capacity: a set grown by
    /// inserts keeps its chunks between half and completely full.
    pub(crate) fn shrink_to_fit(&mut self) {
        *self = Sparse::from_sorted(self.iter());
    }

    /// Number of distinct /16 prefixes (Roaring containers) among the values.
    pub(crate) fn prefixes(&self) -> u64 {
        count_prefixes(self.iter())
    }

    /// Size of the portable Roaring encoding of these values: a cookie and a
    /// count, then per container a key, a cardinality, an offset and its array
    /// (2 bytes a value, or an 8 KiB bitmap above 4,096 values).
    pub(crate) fn serialized_size(&self) -> usize {
        8 + self
            .containers()
            .map(|(_, count)| container_size(count))
            .sum::<usize>()
    }

    /// Appends the portable Roaring encoding of these values: byte for byte what
    /// `RoaringBitmap::serialize_into` writes for them, without building the bitmap
    /// (which cost a copy of the set and a walk of its own at every checkpoint).
    pub(crate) fn serialize_into(&self, out: &mut Vec<u8>) {
        let containers: Vec<(u16, usize)> = self.containers().collect();
        out.reserve(
            8 + containers
                .iter()
                .map(|&(_, n)| container_size(n))
                .sum::<usize>(),
        );
        out.extend_from_slice(&NO_RUN_CONTAINERS_COOKIE.to_le_bytes());
        out.extend_from_slice(&(containers.len() as u32).to_le_bytes());
        for &(key, count) in &containers {
            out.extend_from_slice(&key.to_le_bytes());
            // At most 65,536 values share a prefix, so the cardinality less one fits.
            out.extend_from_slice(&((count - 1) as u16).to_le_bytes());
        }
        let mut offset = 8 + 8 * containers.len();
        for &(_, count) in &containers {
            out.extend_from_slice(&(offset as u32).to_le_bytes());
            offset += container_size(count) - 8;
        }
        let mut values = self.iter();
        for &(_, count) in &containers {
            let container = values.by_ref().take(count);
            if count <= ARRAY_LIMIT {
                for value in container {
                    out.extend_from_slice(&(value as u16).to_le_bytes());
                }
            } else {
                let mut words = [0u64; 1024];
                for value in container {
                    let low = value & 0xffff;
                    words[(low >> 6) as usize] |= 1 << (low & 63);
                }
                for word in words {
                    out.extend_from_slice(&word.to_le_bytes());
                }
            }
        }
    }

    /// The Roaring containers the values fall in: each /16 prefix with its count, in order.
    fn containers(&self) -> impl Iterator<Item = (u16, usize)> + '_ {
        let mut values = self.chunks.iter().flat_map(|chunk| chunk.iter()).peekable();
        std::iter::from_fn(move || {
            let first = *values.next()?;
            let prefix = first >> 16;
            let mut count = 1;
            while values.next_if(|&&v| v >> 16 == prefix).is_some() {
                count += 1;
            }
            Some(((prefix) as u16, count))
        })
    }
}

/// The first word of a portable Roaring bitmap without run containers.
const NO_RUN_CONTAINERS_COOKIE: u32 = 12346;
/// Values a Roaring array container holds at most; above, a container is a bitmap.
const ARRAY_LIMIT: usize = 4096;

/// Pushes onto `missing` the values of increasing `values` that increasing `sorted` lacks.
/// A linear walk, not a search per value: the chunk is rarely in cache, and a binary
/// search's probes are dependent misses where a walk streams (measured: the searches were
/// half the tracker's set time).
fn push_missing(sorted: &[u32], values: &[u32], missing: &mut Vec<u32>) {
    let mut at = 0;
    for &value in values {
        while at < sorted.len() && sorted[at] < value {
            at += 1;
        }
        if sorted.get(at) != Some(&value) {
            missing.push(value);
        }
    }
}

/// Adds increasing `values`, none of them in increasing `sorted`, keeping it sorted: grown
/// once, then filled from the back, so each value moves once.
fn merge_in_place(sorted: &mut Vec<u32>, values: &[u32]) {
    let mut old = sorted.len();
    sorted.resize(old + values.len(), 0);
    let mut write = sorted.len();
    for &value in values.iter().rev() {
        while old > 0 && sorted[old - 1] > value {
            old -= 1;
            write -= 1;
            sorted[write] = sorted[old];
        }
        write -= 1;
        sorted[write] = value;
    }
}

/// Both increasing, disjoint inputs as one increasing vector.
fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut merged = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] < b[j] {
            merged.push(a[i]);
            i += 1;
        } else {
            merged.push(b[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    merged
}

/// The first index of `sorted` whose value is at least `value` (its length if none),
/// searched from `guess` outwards in doubling steps, then by bisection between the last
/// two steps.
fn lower_bound_near(sorted: &[u32], value: u32, guess: usize) -> usize {
    // The answer lies in lo..=hi.
    let (lo, hi) = if sorted[guess] < value {
        let mut lo = guess + 1;
        let mut step = 1;
        loop {
            let probe = guess + step;
            if probe >= sorted.len() {
                break (lo, sorted.len());
            }
            if sorted[probe] >= value {
                break (lo, probe);
            }
            lo = probe + 1;
            step *= 2;
        }
    } else {
        let mut hi = guess;
        let mut step = 1;
        loop {
            let Some(probe) = guess.checked_sub(step) else {
                break (0, hi);
            };
            if sorted[probe] < value {
                break (probe + 1, hi);
            }
            hi = probe;
            step *= 2;
        }
    };
    lo + sorted[lo..hi].partition_point(|&v| v < value)
}

/// Encoded bytes of one container of `cardinality` values, header included.
fn container_size(cardinality: usize) -> usize {
    8 + if cardinality <= ARRAY_LIMIT {
        2 * cardinality
    } else {
        8192
    }
}

/// Number of distinct /16 prefixes among increasing values.
pub(crate) fn count_prefixes(values: impl Iterator<Item = u32>) -> u64 {
    let mut last = None;
    let mut count = 0;
    for value in values {
        let prefix = value >> 16;
        if last != Some(prefix) {
            count += 1;
            last = Some(prefix);
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// Checks the invariants the searches rely on.
    fn assert_well_formed(set: &Sparse) {
        assert_eq!(set.firsts.len(), set.chunks.len());
        for (first, chunk) in set.firsts.iter().zip(&set.chunks) {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK);
            assert_eq!(*first, chunk[0]);
            assert!(chunk.windows(2).all(|w| w[0] < w[1]));
        }
        assert!(set.iter().zip(set.iter().skip(1)).all(|(a, b)| a < b));
    }

    fn values() -> impl Strategy<Value = Vec<u32>> {
        proptest::collection::vec(
            prop_oneof![0u32..3000, any::<u32>(), (0u32..100).prop_map(|v| v << 16)],
            0..4000,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn inserts_behave_like_a_btree_set(values in values(), probes in values()) {
            let mut set = Sparse::default();
            let mut model = BTreeSet::new();
            for v in &values {
                prop_assert_eq!(set.insert(*v), model.insert(*v));
            }
            assert_well_formed(&set);
            prop_assert!(set.iter().eq(model.iter().copied()));
            for v in probes.iter().chain(&values) {
                prop_assert_eq!(set.contains(*v), model.contains(v));
            }
            let packed = Sparse::from_sorted(model.iter().copied());
            assert_well_formed(&packed);
            prop_assert!(packed.iter().eq(set.iter()));
            let mut shrunk = set.clone();
            shrunk.shrink_to_fit();
            assert_well_formed(&shrunk);
            prop_assert!(shrunk.iter().eq(set.iter()));
            // A packed set still takes inserts in the middle of full chunks.
            for v in &probes {
                prop_assert_eq!(shrunk.insert(*v), model.insert(*v));
            }
            assert_well_formed(&shrunk);
            prop_assert!(shrunk.iter().eq(model.iter().copied()));
        }

        #[test]
        fn sorted_batches_insert_like_a_btree_set(
            start in values(),
            batches in proptest::collection::vec(values(), 1..6),
        ) {
            let mut set = Sparse::default();
            let mut model = BTreeSet::new();
            for v in &start {
                set.insert(*v);
                model.insert(*v);
            }
            for batch in batches {
                let batch: Vec<u32> = batch.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
                let mut new = Vec::new();
                set.insert_sorted(&batch, &mut new);
                let expected: Vec<u32> = batch.iter().copied().filter(|v| model.insert(*v)).collect();
                prop_assert_eq!(new, expected);
                assert_well_formed(&set);
                prop_assert!(set.iter().eq(model.iter().copied()));
            }
        }

        #[test]
        fn serialized_size_is_roarings(values in values()) {
            let set: Sparse = Sparse::from_sorted(values.iter().copied().collect::<BTreeSet<_>>().into_iter());
            let bitmap = roaring::RoaringBitmap::from_iter(values.iter().copied());
            prop_assert_eq!(set.serialized_size(), bitmap.serialized_size());
            let (mut ours, mut roarings) = (Vec::new(), Vec::new());
            set.serialize_into(&mut ours);
            bitmap.serialize_into(&mut roarings).expect("to a Vec");
            prop_assert_eq!(ours, roarings);
            prop_assert_eq!(set.prefixes(), bitmap.iter().map(|v| v >> 16).collect::<BTreeSet<_>>().len() as u64);
        }
    }

    #[test]
    fn the_search_from_a_guess_finds_the_lower_bound_from_anywhere() {
        let sorted: Vec<u32> = (0..100).map(|v| 3 * v + 1).collect();
        for value in 0..310 {
            let expected = sorted.partition_point(|&v| v < value);
            for guess in 0..sorted.len() {
                assert_eq!(
                    lower_bound_near(&sorted, value, guess),
                    expected,
                    "{value} from {guess}"
                );
            }
        }
    }

    #[test]
    fn a_batch_bound_for_one_full_chunk_splits_it_into_pieces_with_room() {
        let mut set = Sparse::from_sorted((0..CHUNK as u32).map(|v| 10 * v));
        let batch: Vec<u32> = (0..CHUNK as u32).map(|v| 10 * v + 5).collect();
        let mut new = Vec::new();
        set.insert_sorted(&batch, &mut new);
        assert_eq!(new, batch);
        assert_well_formed(&set);
        assert_eq!(set.chunks.len(), 3);
        assert!(set.chunks.iter().all(|c| c.len() <= CHUNK * 3 / 4));
        // Known values write nothing and report nothing.
        let mut again = Vec::new();
        set.insert_sorted(&batch, &mut again);
        assert!(again.is_empty());
        assert_eq!(set.iter().count(), 2 * CHUNK);
    }

    #[test]
    fn a_full_chunk_splits_wherever_the_value_lands() {
        for at in [
            0,
            1,
            CHUNK / 2 - 1,
            CHUNK / 2,
            CHUNK / 2 + 1,
            CHUNK - 1,
            CHUNK,
        ] {
            let mut set = Sparse::from_sorted((0..CHUNK as u32).map(|v| 10 + 2 * v));
            assert_eq!(set.chunks.len(), 1);
            let value = 9 + 2 * at as u32;
            assert!(set.insert(value));
            assert!(!set.insert(value));
            assert_eq!(set.chunks.len(), 2);
            assert_well_formed(&set);
            assert!(set.contains(value));
            assert_eq!(set.iter().count(), CHUNK + 1);
        }
    }

    #[test]
    fn a_container_above_4096_values_is_a_bitmap_on_the_wire() {
        let set = Sparse::from_sorted(0..5000);
        assert_eq!(set.serialized_size(), 8 + 8 + 8192);
        let set = Sparse::from_sorted(0..4096);
        assert_eq!(set.serialized_size(), 8 + 8 + 2 * 4096);
        for values in [0..4096, 0..4097, 70_000..200_000] {
            let set = Sparse::from_sorted(values.clone());
            let mut ours = Vec::new();
            set.serialize_into(&mut ours);
            let mut roarings = Vec::new();
            roaring::RoaringBitmap::from_sorted_iter(values)
                .expect("sorted")
                .serialize_into(&mut roarings)
                .expect("to a Vec");
            assert_eq!(ours, roarings);
            assert_eq!(ours.len(), set.serialized_size());
        }
    }
}
