//! [`TaggedIps`]: an exact set of IP addresses with a `u32` tag beside each.
//!
//! Why it exists: a tracker partition keeps, besides the set of every address it has seen,
//! which per-window and per-error-code views each address belongs to. As separate sets
//! those views stored every address three more times (about 13 bytes per address at 10 M
//! random devices). Stored here, an address is kept once and its memberships are a tag
//! beside it (an id the caller interns): one byte while every tag of its /8 fits one, two up
//! to 65,534.
//!
//! # Layout
//!
//! IPv4 addresses are split per /8 into shards; a shard is a sorted vector of blocks, each
//! holding up to [`MAX_BLOCK`] addresses of one /16 as the low 16 bits of each, in order,
//! with their tags beside them. A block that grows past [`MAX_BLOCK`] splits in two, so an insert moves at most a few
//! kilobytes even in a /16 full of devices. The blocks of a shard share one vector of lows and
//! one of tags (see [`Shard`]). At 10 M random addresses over three sets a block holds about
//! 51 addresses: 3 bytes each with one-byte tags, plus the block's 12-byte header.
//!
//! A tag of [`WIDE`] or more does not fit 16 bits: the slot holds [`WIDE`] and the tag
//! sits in a side map keyed by the address. IPv6 addresses (rare in device fleets) sit in a
//! `BTreeMap`. IPv4-mapped IPv6 addresses count as IPv4, as in [`DistinctIps`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::ips::{key, Key};
use crate::DistinctIps;

/// Addresses a block holds before it splits: bounds an insert's memmove to 4 KiB.
const MAX_BLOCK: usize = 1024;
/// The inline tag that says "the tag is in the side map".
const WIDE: u32 = u16::MAX as u32;
const SHARDS: usize = 256;

fn prefix16(value: u32) -> u32 {
    value >> 16
}

/// Up to [`MAX_BLOCK`] addresses of one /16: a range of its shard's slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    /// The smallest address the block may hold; its top 16 bits are the block's /16.
    first: u32,
    /// Where its addresses start in the shard's slots.
    start: u32,
    len: u16,
    /// Slots reserved from `start`, so most inserts need not move the block.
    cap: u16,
}

impl Block {
    fn range(&self) -> Range<usize> {
        self.start as usize..self.start as usize + usize::from(self.len)
    }

    fn address(&self, low: u16) -> u32 {
        (prefix16(self.first) << 16) | u32::from(low)
    }
}

/// The inline tags of a shard: a byte each while every tag in the shard fits one, two bytes
/// from the first that does not. A node with a few dozen memberships pays one byte per
/// address for them.
#[derive(Debug, Clone)]
enum Tags {
    Narrow(Vec<u8>),
    Wide(Vec<u16>),
}

impl Default for Tags {
    fn default() -> Self {
        Tags::Narrow(Vec::new())
    }
}

impl Tags {
    fn get(&self, i: usize) -> u16 {
        match self {
            Tags::Narrow(tags) => u16::from(tags[i]),
            Tags::Wide(tags) => tags[i],
        }
    }

    fn set(&mut self, i: usize, tag: u16) {
        if let Tags::Narrow(tags) = self {
            match u8::try_from(tag) {
                Ok(narrow) => return tags[i] = narrow,
                Err(_) => *self = Tags::Wide(tags.iter().map(|&t| u16::from(t)).collect()),
            }
        }
        if let Tags::Wide(tags) = self {
            tags[i] = tag;
        }
    }

    /// An empty vector of the same width with room for `capacity`.
    fn empty_like(&self, capacity: usize) -> Tags {
        match self {
            Tags::Narrow(_) => Tags::Narrow(Vec::with_capacity(capacity)),
            Tags::Wide(_) => Tags::Wide(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `other[range]` (of the same width or narrower) and pads to `to` slots.
    fn extend_padded(&mut self, other: &Tags, range: Range<usize>, to: usize) {
        match (self, other) {
            (Tags::Narrow(tags), Tags::Narrow(from)) => {
                tags.extend_from_slice(&from[range]);
                tags.resize(to, 0);
            }
            (Tags::Wide(tags), Tags::Wide(from)) => {
                tags.extend_from_slice(&from[range]);
                tags.resize(to, 0);
            }
            (Tags::Wide(tags), Tags::Narrow(from)) => {
                tags.extend(from[range].iter().map(|&t| u16::from(t)));
                tags.resize(to, 0);
            }
            (narrow @ Tags::Narrow(_), wide @ Tags::Wide(_)) => {
                narrow.widen();
                narrow.extend_padded(wide, range, to);
            }
        }
    }

    fn widen(&mut self) {
        if let Tags::Narrow(tags) = self {
            *self = Tags::Wide(tags.iter().map(|&t| u16::from(t)).collect());
        }
    }

    fn copy_within(&mut self, src: Range<usize>, dest: usize) {
        match self {
            Tags::Narrow(tags) => tags.copy_within(src, dest),
            Tags::Wide(tags) => tags.copy_within(src, dest),
        }
    }

    fn reserve_exact(&mut self, more: usize) {
        match self {
            Tags::Narrow(tags) => tags.reserve_exact(more),
            Tags::Wide(tags) => tags.reserve_exact(more),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Tags::Narrow(tags) => tags.capacity(),
            Tags::Wide(tags) => 2 * tags.capacity(),
        }
    }
}

/// A shard's slots: the low 16 bits of each address, and its inline tag.
#[derive(Debug, Clone, Default)]
struct Slots {
    lows: Vec<u16>,
    tags: Tags,
}

impl Slots {
    fn len(&self) -> usize {
        self.lows.len()
    }

    fn with_capacity_like(&self, capacity: usize) -> Slots {
        Slots {
            lows: Vec::with_capacity(capacity),
            tags: self.tags.empty_like(capacity),
        }
    }

    /// Appends `from[range]` and pads with free slots to `cap` in all.
    fn extend_padded(&mut self, from: &Slots, range: Range<usize>, cap: usize) {
        let to = self.len() + cap;
        self.lows.extend_from_slice(&from.lows[range.clone()]);
        self.lows.resize(to, 0);
        self.tags.extend_padded(&from.tags, range, to);
    }

    /// Moves `src` to start at `dest`.
    fn copy_within(&mut self, src: Range<usize>, dest: usize) {
        self.lows.copy_within(src.clone(), dest);
        self.tags.copy_within(src, dest);
    }

    fn set(&mut self, i: usize, low: u16, tag: u16) {
        self.lows[i] = low;
        self.tags.set(i, tag);
    }

    /// Room for `more` slots, growing by a quarter at a time: doubling left up to half of a
    /// large shard's vectors unused.
    fn reserve(&mut self, more: usize) {
        if self.lows.capacity() - self.lows.len() < more {
            let more = more.max(self.len() / 4);
            self.lows.reserve_exact(more);
            self.tags.reserve_exact(more);
        }
    }

    fn heap_bytes(&self) -> usize {
        2 * self.lows.capacity() + self.tags.heap_bytes()
    }
}

/// The IPv4 addresses of one /8. All its blocks share one pair of vectors, so a block costs
/// 12 bytes of header and no allocation of its own: per-block vectors cost 24 bytes each and,
/// grown one insert at a time, left the allocator's pages half empty (measured: 7.0 bytes per
/// address resident for 4.6 in use, with mimalloc).
#[derive(Debug, Clone, Default)]
struct Shard {
    /// In address order.
    blocks: Vec<Block>,
    /// Strictly increasing lows within a block; blocks that outgrew their slots moved to the
    /// end and left holes.
    slots: Slots,
    /// Slots no block uses: compacted away once they are a quarter of them.
    unused: usize,
}

impl Shard {
    /// The block that holds or would hold `value`, if its /16 has one.
    fn home(&self, value: u32) -> Option<usize> {
        let at_or_after = self.blocks.partition_point(|b| b.first <= value);
        let same_prefix = |b: &Block| prefix16(b.first) == prefix16(value);
        match at_or_after.checked_sub(1) {
            Some(before) if same_prefix(&self.blocks[before]) => Some(before),
            _ if self.blocks.get(at_or_after).is_some_and(same_prefix) => Some(at_or_after),
            _ => None,
        }
    }

    fn find(&self, block: usize, low: u16) -> Result<usize, usize> {
        self.slots.lows[self.blocks[block].range()].binary_search(&low)
    }

    fn get(&self, value: u32) -> Option<u16> {
        let home = self.home(value)?;
        let at = self.find(home, value as u16).ok()?;
        Some(self.slots.tags.get(self.blocks[home].start as usize + at))
    }

    /// Sets the inline tag of `value` to `tag_of(the one it has)`, adding it if missing;
    /// returns the inline tag it had.
    fn upsert(&mut self, value: u32, tag_of: impl FnOnce(Option<u16>) -> u16) -> Option<u16> {
        let low = value as u16;
        let Some(home) = self.home(value) else {
            let at = self.blocks.partition_point(|b| b.first <= value);
            self.add_block(at, value, tag_of(None));
            return None;
        };
        match self.find(home, low) {
            Ok(at) => {
                let slot = self.blocks[home].start as usize + at;
                let before = self.slots.tags.get(slot);
                self.slots.tags.set(slot, tag_of(Some(before)));
                Some(before)
            }
            Err(at) => {
                let block = &mut self.blocks[home];
                block.first = block.first.min(value);
                self.insert_at(home, at, low, tag_of(None));
                None
            }
        }
    }

    fn add_block(&mut self, at: usize, first: u32, tag: u16) {
        self.slots.reserve(1);
        let start = self.slots.len();
        let empty = self.slots.with_capacity_like(0);
        self.slots.extend_padded(&empty, 0..0, 1);
        self.slots.set(start, first as u16, tag);
        let block = Block {
            first,
            start: slot_index(start),
            len: 1,
            cap: 1,
        };
        self.blocks.insert(at, block);
    }

    /// Inserts `(low, tag)` at position `at` of block `index`.
    fn insert_at(&mut self, index: usize, at: usize, low: u16, tag: u16) {
        if self.blocks[index].len == self.blocks[index].cap {
            self.make_room(index);
        }
        let block = &mut self.blocks[index];
        let range = block.range();
        self.slots
            .copy_within(range.start + at..range.end, range.start + at + 1);
        self.slots.set(range.start + at, low, tag);
        block.len += 1;
        if usize::from(block.len) > MAX_BLOCK {
            self.split(index);
        }
    }

    /// Gives a full block a quarter more slots: in place if it ends the slots, else at their
    /// end, leaving its old slots unused.
    fn make_room(&mut self, index: usize) {
        let block = self.blocks[index];
        let cap = usize::from(block.cap);
        let new_cap = (cap + cap / 4 + 1).min(MAX_BLOCK + 1);
        let start = block.start as usize;
        if start + cap == self.slots.len() {
            self.slots.reserve(new_cap - cap);
            let empty = self.slots.with_capacity_like(0);
            self.slots.extend_padded(&empty, 0..0, new_cap - cap);
        } else {
            if (self.unused + cap) * 4 > self.slots.len() {
                // Every block, this one included, then has a free slot.
                self.compact(|len| len / 8 + 1);
                return;
            }
            self.slots.reserve(new_cap);
            let moved_to = self.slots.len();
            let from = self.slots.clone_range(block.range());
            self.slots.extend_padded(&from, 0..from.len(), new_cap);
            self.blocks[index].start = slot_index(moved_to);
            self.unused += cap;
        }
        self.blocks[index].cap = new_cap as u16;
    }

    /// Splits a block that outgrew [`MAX_BLOCK`] in two, each keeping its slots.
    fn split(&mut self, index: usize) {
        let block = self.blocks[index];
        let half = block.len / 2;
        let upper_start = block.start + u32::from(half);
        let upper = Block {
            first: block.address(self.slots.lows[upper_start as usize]),
            start: upper_start,
            len: block.len - half,
            cap: block.cap - half,
        };
        self.blocks[index].len = half;
        self.blocks[index].cap = half;
        self.blocks.insert(index + 1, upper);
    }

    /// Rewrites the slots with the blocks in order, each with `spare(len)` free slots.
    fn compact(&mut self, spare: impl Fn(usize) -> usize) {
        let room = |b: &Block| (usize::from(b.len) + spare(usize::from(b.len))).min(MAX_BLOCK + 1);
        let mut slots = self
            .slots
            .with_capacity_like(self.blocks.iter().map(room).sum());
        for block in &mut self.blocks {
            let cap = room(block);
            let start = slots.len();
            slots.extend_padded(&self.slots, block.range(), cap);
            block.start = slot_index(start);
            block.cap = cap as u16;
        }
        self.slots = slots;
        self.unused = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.blocks.iter().flat_map(move |block| {
            block
                .range()
                .map(move |i| (block.address(self.slots.lows[i]), self.slots.tags.get(i)))
        })
    }

    /// Replaces each address's inline tag with `retag(address, inline tag)`.
    fn retag(&mut self, mut retag: impl FnMut(u32, u16) -> u16) {
        for block in &self.blocks {
            for i in block.range() {
                let address = block.address(self.slots.lows[i]);
                let tag = retag(address, self.slots.tags.get(i));
                self.slots.tags.set(i, tag);
            }
        }
    }

    fn shrink_to_fit(&mut self) {
        self.compact(|_| 0);
        // Copies, not `shrink_to_fit`: allocators shrink in place and keep the larger size.
        self.blocks = self.blocks.as_slice().to_vec();
    }

    fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>() + self.slots.heap_bytes()
    }
}

impl Slots {
    /// A copy of `range`, for moving a block within the same vectors.
    fn clone_range(&self, range: Range<usize>) -> Slots {
        let mut copy = self.with_capacity_like(range.len());
        copy.extend_padded(self, range.clone(), range.len());
        copy
    }
}

fn slot_index(index: usize) -> u32 {
    u32::try_from(index).expect("a /8 holds at most 2^24 addresses")
}

/// An exact set of IP addresses, each with a `u32` tag. See the module docs.
#[derive(Debug, Clone, Default)]
pub struct TaggedIps {
    /// One per /8, all empty until the first IPv4 address.
    shards: Vec<Shard>,
    /// Tags of [`WIDE`] and above, by IPv4 address.
    wide: HashMap<u32, u32>,
    v6: BTreeMap<u128, u32>,
    len_v4: u64,
}

impl PartialEq for TaggedIps {
    /// Same addresses with the same tags, however their blocks are laid out.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for TaggedIps {}

impl TaggedIps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Exact number of distinct addresses.
    pub fn len(&self) -> u64 {
        self.len_v4 + self.v6.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tag of `ip`, if the set holds it.
    pub fn get(&self, ip: IpAddr) -> Option<u32> {
        match key(ip) {
            Key::V4(v) => {
                let inline = self.shards.get(shard_of(v))?.get(v)?;
                Some(self.full_tag(v, inline))
            }
            Key::V6(v) => self.v6.get(&v).copied(),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.get(ip).is_some()
    }

    /// Sets the tag of `ip` to `tag_of(its tag now)`, adding it if missing (`tag_of(None)`);
    /// returns the tag it had, `None` if it is new.
    pub fn upsert(&mut self, ip: IpAddr, tag_of: impl FnOnce(Option<u32>) -> u32) -> Option<u32> {
        match key(ip) {
            Key::V4(v) => self.upsert_v4(v, tag_of),
            Key::V6(v) => {
                let before = self.v6.get(&v).copied();
                self.v6.insert(v, tag_of(before));
                before
            }
        }
    }

    /// Adds `ip` with tag 0 if missing; true if it was.
    pub fn insert(&mut self, ip: IpAddr) -> bool {
        self.upsert(ip, |tag| tag.unwrap_or(0)).is_none()
    }

    /// Every address with its tag: IPv4 in increasing order, then IPv6 in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u32)> + '_ {
        let v4 = self
            .iter_v4()
            .map(|(v, tag)| (IpAddr::V4(Ipv4Addr::from(v)), tag));
        v4.chain(
            self.v6
                .iter()
                .map(|(&v, &tag)| (IpAddr::V6(Ipv6Addr::from(v)), tag)),
        )
    }

    /// Replaces every tag `t` with `retag(t)` (after the caller renumbered its tags).
    pub fn retag(&mut self, mut retag: impl FnMut(u32) -> u32) {
        let before = std::mem::take(&mut self.wide);
        let Self { shards, wide, .. } = self;
        for shard in shards.iter_mut() {
            shard.retag(|address, inline| {
                let tag = match u32::from(inline) {
                    WIDE => before[&address],
                    inline => inline,
                };
                let after = retag(tag);
                if after >= WIDE {
                    wide.insert(address, after);
                }
                inline_of(after)
            });
        }
        for tag in self.v6.values_mut() {
            *tag = retag(*tag);
        }
    }

    /// The addresses whose tag passes `keep`, as a plain set.
    pub fn select(&self, mut keep: impl FnMut(u32) -> bool) -> DistinctIps {
        self.iter()
            .filter(|&(_, tag)| keep(tag))
            .map(|(ip, _)| ip)
            .collect()
    }

    /// Every address without its tag, as a plain set.
    pub fn to_distinct(&self) -> DistinctIps {
        self.select(|_| true)
    }

    /// Bytes the set's vectors hold (allocator overhead not included).
    pub fn heap_bytes(&self) -> u64 {
        let shards: usize = self.shards.iter().map(Shard::heap_bytes).sum();
        (shards + self.shards.capacity() * std::mem::size_of::<Shard>()) as u64
            + self.wide.capacity() as u64 * 8
            + self.v6.len() as u64 * 20
    }

    /// Drops spare slots, rewriting each shard into vectors of exactly its size.
    pub fn shrink_to_fit(&mut self) {
        for shard in &mut self.shards {
            shard.shrink_to_fit();
        }
        self.wide.shrink_to_fit();
    }

    /// Exact number of distinct addresses in the union of `sets` whose tag, in at least one
    /// of the sets that holds them, passes `keep`.
    pub fn union_len(sets: &[&TaggedIps], mut keep: impl FnMut(u32) -> bool) -> u64 {
        let v4 = merged_distinct(sets.iter().map(|s| s.iter_v4()), &mut keep);
        let v6 = merged_distinct(
            sets.iter().map(|s| s.v6.iter().map(|(&v, &tag)| (v, tag))),
            &mut keep,
        );
        v4 + v6
    }

    fn full_tag(&self, address: u32, inline: u16) -> u32 {
        match u32::from(inline) {
            WIDE => self.wide[&address],
            inline => inline,
        }
    }

    fn iter_v4(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.shards
            .iter()
            .flat_map(Shard::iter)
            .map(|(address, inline)| (address, self.full_tag(address, inline)))
    }

    fn upsert_v4(&mut self, value: u32, tag_of: impl FnOnce(Option<u32>) -> u32) -> Option<u32> {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, Shard::default);
        }
        let Self { shards, wide, .. } = self;
        let mut tags = None;
        let inline_before = shards[shard_of(value)].upsert(value, |inline| {
            let before = inline.map(|inline| match u32::from(inline) {
                WIDE => wide[&value],
                inline => inline,
            });
            let after = tag_of(before);
            tags = Some((before, after));
            inline_of(after)
        });
        let (before, after) = tags.expect("upsert calls tag_of once");
        if after >= WIDE {
            wide.insert(value, after);
        } else if inline_before.is_some_and(|t| u32::from(t) == WIDE) {
            wide.remove(&value);
        }
        if before.is_none() {
            self.len_v4 += 1;
        }
        before
    }
}

fn shard_of(value: u32) -> usize {
    (value >> 24) as usize
}

fn inline_of(tag: u32) -> u16 {
    tag.min(WIDE) as u16
}

/// Distinct values across sorted `(value, tag)` streams, counting a value if any stream's
/// tag for it passes `keep`.
fn merged_distinct<V: Ord + Copy, I: Iterator<Item = (V, u32)>>(
    streams: impl Iterator<Item = I>,
    keep: &mut impl FnMut(u32) -> bool,
) -> u64 {
    let mut streams: Vec<I> = streams.collect();
    let mut heads = BinaryHeap::new();
    for (index, stream) in streams.iter_mut().enumerate() {
        if let Some((value, tag)) = stream.next() {
            heads.push(Reverse((value, index, tag)));
        }
    }
    let mut count = 0;
    let mut last: Option<(V, bool)> = None;
    while let Some(Reverse((value, index, tag))) = heads.pop() {
        let passes = keep(tag);
        match &mut last {
            Some((seen, counted)) if *seen == value => {
                if passes && !*counted {
                    *counted = true;
                    count += 1;
                }
            }
            _ => {
                last = Some((value, passes));
                count += u64::from(passes);
            }
        }
        if let Some((value, tag)) = streams[index].next() {
            heads.push(Reverse((value, index, tag)));
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn v4(value: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(value))
    }

    /// Applies `(address, tag)` upserts to a `TaggedIps` and a `BTreeMap`, checking each
    /// answer against the map's.
    fn apply(ops: &[(u32, u32)]) -> (TaggedIps, BTreeMap<u32, u32>) {
        let mut set = TaggedIps::new();
        let mut model = BTreeMap::new();
        for &(address, tag) in ops {
            let before = set.upsert(v4(address), |_| tag);
            assert_eq!(before, model.insert(address, tag));
        }
        (set, model)
    }

    #[test]
    fn a_dense_slash16_splits_into_blocks_and_stays_sorted() {
        let ops: Vec<(u32, u32)> = (0..5000u32)
            .map(|i| (0x0A01_0000 | (i.wrapping_mul(7919) % 65536), i))
            .collect();
        let (set, model) = apply(&ops);
        assert!(
            set.shards[10].blocks.len() > 1,
            "more than one block for the /16"
        );
        let listed: Vec<(u32, u32)> = set.iter_v4().collect();
        let expected: Vec<(u32, u32)> = model.into_iter().collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn a_shard_keeps_a_byte_per_tag_until_one_needs_two() {
        let ops: Vec<(u32, u32)> = (0..3000u32).map(|i| (i * 977, i % 256)).collect();
        let (mut set, mut model) = apply(&ops);
        assert!(matches!(set.shards[0].slots.tags, Tags::Narrow(_)));
        set.upsert(v4(5), |_| 300);
        model.insert(5, 300);
        assert!(matches!(set.shards[0].slots.tags, Tags::Wide(_)));
        set.shrink_to_fit();
        let expected: Vec<(u32, u32)> = model.into_iter().collect();
        assert_eq!(set.iter_v4().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn wide_tags_sit_beside_and_leave_when_narrowed() {
        let mut set = TaggedIps::new();
        set.upsert(v4(1), |_| 70_000);
        set.upsert(v4(2), |_| WIDE);
        assert_eq!(set.get(v4(1)), Some(70_000));
        assert_eq!(set.get(v4(2)), Some(WIDE));
        assert_eq!(set.upsert(v4(1), |_| 5), Some(70_000));
        assert_eq!(set.get(v4(1)), Some(5));
        assert_eq!(set.wide.len(), 1);
        set.retag(|t| t + 100_000);
        assert_eq!(set.get(v4(1)), Some(100_005));
        assert_eq!(set.get(v4(2)), Some(WIDE + 100_000));
        set.retag(|t| t - 100_000);
        assert!(set.wide.len() == 1 && set.get(v4(1)) == Some(5));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let mut set = TaggedIps::new();
        let mapped: IpAddr = "::ffff:1.2.3.4".parse().expect("ip");
        let plain: IpAddr = "1.2.3.4".parse().expect("ip");
        let six: IpAddr = "2001:db8::1".parse().expect("ip");
        assert!(set.insert(mapped));
        assert!(!set.insert(plain), "the mapped form is the same device");
        set.upsert(six, |_| 9);
        assert_eq!(set.len(), 2);
        let listed: Vec<(IpAddr, u32)> = set.iter().collect();
        assert_eq!(listed, vec![(plain, 0), (six, 9)]);
        assert_eq!(set.select(|t| t == 9).len(), 1);
    }

    #[test]
    fn union_len_counts_an_address_once_if_any_set_tags_it_so() {
        let (a, _) = apply(&[(1, 1), (2, 2), (3, 1)]);
        let (b, _) = apply(&[(2, 1), (3, 2), (4, 2)]);
        assert_eq!(TaggedIps::union_len(&[&a, &b], |_| true), 4);
        assert_eq!(TaggedIps::union_len(&[&a, &b], |t| t == 1), 3);
        assert_eq!(TaggedIps::union_len(&[&a, &b], |t| t == 2), 3);
        assert_eq!(TaggedIps::union_len(&[], |_| true), 0);
    }

    proptest! {
        #[test]
        fn behaves_as_a_map(ops in prop::collection::vec(
            (prop_oneof![0u32..3000, any::<u32>()], prop_oneof![0u32..4, any::<u32>()]),
            0..3000,
        )) {
            let (mut set, model) = apply(&ops);
            prop_assert_eq!(set.len(), model.len() as u64);
            for (&address, &tag) in &model {
                prop_assert_eq!(set.get(v4(address)), Some(tag));
            }
            let listed: Vec<(u32, u32)> = set.iter_v4().collect();
            let expected: Vec<(u32, u32)> = model.iter().map(|(&a, &t)| (a, t)).collect();
            prop_assert_eq!(&listed, &expected);
            let even: DistinctIps = model.iter().filter(|(_, &t)| t % 2 == 0)
                .map(|(&a, _)| v4(a)).collect();
            prop_assert_eq!(set.select(|t| t % 2 == 0), even);
            set.shrink_to_fit();
            prop_assert_eq!(set.iter_v4().collect::<Vec<_>>(), expected);
            // Full blocks after the shrink: the next inserts move them.
            let (mut grown, mut model) = (set.clone(), model);
            for &(address, tag) in ops.iter().rev() {
                let address = address ^ 0x0000_0101;
                prop_assert_eq!(grown.upsert(v4(address), |_| tag), model.insert(address, tag));
            }
            let expected: Vec<(u32, u32)> = model.iter().map(|(&a, &t)| (a, t)).collect();
            prop_assert_eq!(grown.iter_v4().collect::<Vec<_>>(), expected);
        }
    }
}
