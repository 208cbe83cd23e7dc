//! [`TaggedIps`]: an exact set of IP addresses with a `u32` tag beside each.
//!
//! Why it exists: a tracker partition keeps, besides the set of every address it has seen,
//! which per-window and per-error-code views each address belongs to. As separate sets
//! those views stored every address three more times (about 13 bytes per address at 10 M
//! random devices). Stored here, an address is kept once and its memberships are a tag
//! beside it (an id the caller interns), 2 bytes for the first 65,535 tag values. The
//! tracker does not use it yet: docs/BENCHMARKS.md ("Shared view storage") has the plan.
//!
//! # Layout
//!
//! IPv4 addresses are split per /8 into shards; a shard is a sorted vector of blocks, each
//! holding up to [`MAX_BLOCK`] addresses of one /16 as packed `u32` entries, the low 16
//! bits of the address above a 16-bit tag. Sorting the entries sorts the addresses. A
//! block that grows past [`MAX_BLOCK`] splits in two, so an insert moves at most a few
//! kilobytes even in a /16 full of devices. The blocks of a shard share one vector (see
//! [`Shard`]). At 10 M random addresses over three sets a block holds about 51 addresses:
//! 4 bytes each plus the block's 12-byte header.
//!
//! A tag of [`WIDE`] or more does not fit 16 bits: the entry holds [`WIDE`] and the tag
//! sits in a side map keyed by the address. IPv6 addresses (rare in device fleets) sit in a
//! `BTreeMap`. IPv4-mapped IPv6 addresses count as IPv4, as in [`DistinctIps`].

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ips::{key, Key};
use crate::DistinctIps;

/// Addresses a block holds before it splits: bounds an insert's memmove to 4 KiB.
const MAX_BLOCK: usize = 1024;
/// The inline tag that says "the tag is in the side map".
const WIDE: u32 = u16::MAX as u32;
const SHARDS: usize = 256;

fn entry(low: u16, inline_tag: u16) -> u32 {
    (u32::from(low) << 16) | u32::from(inline_tag)
}

fn low_of(entry: u32) -> u16 {
    (entry >> 16) as u16
}

fn inline_tag_of(entry: u32) -> u16 {
    entry as u16
}

fn prefix16(value: u32) -> u32 {
    value >> 16
}

/// Up to [`MAX_BLOCK`] addresses of one /16: a range of its shard's `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    /// The smallest address the block may hold; its top 16 bits are the block's /16.
    first: u32,
    /// Where its entries start in the shard's `data`.
    start: u32,
    len: u16,
    /// Slots reserved from `start`, so most inserts need not move the block.
    cap: u16,
}

impl Block {
    fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.start as usize + usize::from(self.len)
    }

    fn address(&self, entry: u32) -> u32 {
        (prefix16(self.first) << 16) | u32::from(low_of(entry))
    }
}

/// The IPv4 addresses of one /8. All its blocks' entries share one vector, so a block costs
/// 12 bytes of header and no allocation of its own: per-block vectors cost 24 bytes each and,
/// grown one insert at a time, left the allocator's pages half empty (measured: 7.0 bytes per
/// address resident for 4.6 in use, with mimalloc).
#[derive(Debug, Clone, Default)]
struct Shard {
    /// In address order.
    blocks: Vec<Block>,
    /// `low 16 bits of the address << 16 | inline tag` for every block, strictly increasing
    /// within a block; blocks that outgrew their slots moved to the end and left holes.
    data: Vec<u32>,
    /// Slots of `data` no block uses: compacted away once they are a quarter of it.
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
        self.data[self.blocks[block].range()].binary_search_by_key(&low, |&e| low_of(e))
    }

    fn get(&self, value: u32) -> Option<u16> {
        let home = self.home(value)?;
        let at = self.find(home, value as u16).ok()?;
        Some(inline_tag_of(
            self.data[self.blocks[home].start as usize + at],
        ))
    }

    /// Sets the inline tag of `value` to `tag_of(the one it has)`, adding it if missing;
    /// returns the inline tag it had.
    fn upsert(&mut self, value: u32, tag_of: impl FnOnce(Option<u16>) -> u16) -> Option<u16> {
        let low = value as u16;
        let Some(home) = self.home(value) else {
            let at = self.blocks.partition_point(|b| b.first <= value);
            self.add_block(at, value, entry(low, tag_of(None)));
            return None;
        };
        match self.find(home, low) {
            Ok(at) => {
                let slot = &mut self.data[self.blocks[home].start as usize + at];
                let before = inline_tag_of(*slot);
                *slot = entry(low, tag_of(Some(before)));
                Some(before)
            }
            Err(at) => {
                let block = &mut self.blocks[home];
                block.first = block.first.min(value);
                self.insert_at(home, at, entry(low, tag_of(None)));
                None
            }
        }
    }

    fn add_block(&mut self, at: usize, first: u32, packed: u32) {
        let start = self.append(&[packed], 1);
        let block = Block {
            first,
            start,
            len: 1,
            cap: 1,
        };
        self.blocks.insert(at, block);
    }

    /// Inserts `packed` at position `at` of block `index`.
    fn insert_at(&mut self, index: usize, at: usize, packed: u32) {
        if self.blocks[index].len == self.blocks[index].cap {
            self.make_room(index);
        }
        let block = &mut self.blocks[index];
        let range = block.range();
        self.data
            .copy_within(range.start + at..range.end, range.start + at + 1);
        self.data[range.start + at] = packed;
        block.len += 1;
        if usize::from(block.len) > MAX_BLOCK {
            self.split(index);
        }
    }

    /// Gives a full block a quarter more slots: in place if it ends `data`, else at the end
    /// of `data`, leaving its old slots unused.
    fn make_room(&mut self, index: usize) {
        let block = self.blocks[index];
        let cap = usize::from(block.cap);
        let new_cap = (cap + cap / 4 + 1).min(MAX_BLOCK + 1);
        let start = block.start as usize;
        if start + cap == self.data.len() {
            self.grow_data(new_cap - cap);
            self.data.resize(start + new_cap, 0);
        } else {
            if (self.unused + cap) * 4 > self.data.len() {
                // Every block, this one included, then has a free slot.
                self.compact(|len| len / 8 + 1);
                return;
            }
            let entries = self.data[block.range()].to_vec();
            self.blocks[index].start = self.append(&entries, new_cap);
            self.unused += cap;
        }
        self.blocks[index].cap = new_cap as u16;
    }

    /// Appends `entries` with room for `cap` in all; where they start.
    fn append(&mut self, entries: &[u32], cap: usize) -> u32 {
        self.grow_data(cap);
        let start = self.data.len();
        self.data.extend_from_slice(entries);
        self.data.resize(start + cap, 0);
        u32::try_from(start).expect("a /8 holds at most 2^24 addresses")
    }

    /// Reserves room for `more` slots, growing by a quarter at a time: doubling left up to
    /// half of a large shard's vector unused.
    fn grow_data(&mut self, more: usize) {
        if self.data.capacity() - self.data.len() < more {
            self.data.reserve_exact(more.max(self.data.len() / 4));
        }
    }

    /// Splits a block that outgrew [`MAX_BLOCK`] in two, each keeping its slots.
    fn split(&mut self, index: usize) {
        let block = self.blocks[index];
        let half = block.len / 2;
        let upper_start = block.start + u32::from(half);
        let upper = Block {
            first: block.address(self.data[upper_start as usize]),
            start: upper_start,
            len: block.len - half,
            cap: block.cap - half,
        };
        self.blocks[index].len = half;
        self.blocks[index].cap = half;
        self.blocks.insert(index + 1, upper);
    }

    /// Rewrites `data` with the blocks in order, each with `spare(len)` free slots.
    fn compact(&mut self, spare: impl Fn(usize) -> usize) {
        let room = |b: &Block| (usize::from(b.len) + spare(usize::from(b.len))).min(MAX_BLOCK + 1);
        let mut data = Vec::with_capacity(self.blocks.iter().map(room).sum());
        for block in &mut self.blocks {
            let cap = room(block);
            let start = data.len();
            data.extend_from_slice(&self.data[block.range()]);
            data.resize(start + cap, 0);
            block.start = start as u32;
            block.cap = cap as u16;
        }
        self.data = data;
        self.unused = 0;
    }

    fn iter(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        self.blocks.iter().flat_map(move |block| {
            self.data[block.range()]
                .iter()
                .map(move |&e| (block.address(e), inline_tag_of(e)))
        })
    }

    /// Every entry's address and a mutable reference to the entry.
    fn for_each_mut(&mut self, mut visit: impl FnMut(u32, &mut u32)) {
        for block in &self.blocks {
            for slot in &mut self.data[block.range()] {
                visit(block.address(*slot), slot);
            }
        }
    }

    fn shrink_to_fit(&mut self) {
        self.compact(|_| 0);
        // Copies, not `shrink_to_fit`: allocators shrink in place and keep the larger size.
        self.blocks = self.blocks.as_slice().to_vec();
    }

    fn heap_bytes(&self) -> usize {
        self.blocks.capacity() * std::mem::size_of::<Block>() + self.data.capacity() * 4
    }
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
            shard.for_each_mut(|address, slot| {
                let tag = match u32::from(inline_tag_of(*slot)) {
                    WIDE => before[&address],
                    inline => inline,
                };
                let after = retag(tag);
                *slot = entry(low_of(*slot), inline_of(after));
                if after >= WIDE {
                    wide.insert(address, after);
                }
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
