//! Which views an address is in, interned: the tag a partition's [`TaggedIps`] keeps beside
//! each address.
//!
//! A view (a minute window, an hour window, an error code) gets a *slot*, a bit position,
//! for as long as some partition has addresses in it. An address's *membership* is the set
//! of slots of the views it is in, and every distinct membership gets a small id. Addresses
//! that share their views share an id: at 10 M random devices a node holds a few dozen
//! memberships (two minutes, an hour, eleven codes), so an address's views cost the 2 bytes
//! of its tag instead of three more copies of the address.
//!
//! Ids are immutable bit sets: the transitions an event makes (`id` plus its three views)
//! are remembered, so counting an event is one table lookup. Ids nothing uses any more are
//! dropped by [`Memberships::compact`], which renumbers the rest.
//!
//! [`TaggedIps`]: freshet_distinct::TaggedIps

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::state::SetKind;

/// A membership: bit `s` set when the address is in the view of slot `s`. Trailing zero
/// words are trimmed, so equal sets are equal slices.
type Bits = Box<[u64]>;

/// Transitions remembered before the tables are cleared: bounds their memory (about 2 MB)
/// when memberships are many (devices seen in scattered windows). A few dozen memberships
/// take a few hundred transitions.
const MAX_REMEMBERED: usize = 1 << 16;

/// The views an event puts its address in: its minute's, hour's and code's slots.
pub type EventSlots = [u32; 3];

/// A node's interned memberships and view slots. See the module docs.
#[derive(Debug)]
pub struct Memberships {
    /// Slot → its view; `None` once released.
    views: Vec<Option<SetKind>>,
    slots: HashMap<SetKind, u32>,
    /// Id → membership; id 0 is the empty one.
    sets: Vec<Bits>,
    ids: HashMap<Bits, u32>,
    /// `(id, event slots)` → the id with them, and which of the three were new (bit i for
    /// slot i).
    after_event: HashMap<(u32, EventSlots), (u32, u8), FastHash>,
    after_slot: HashMap<(u32, u32), u32, FastHash>,
    /// Ids at the last compaction: the next one is due when they have doubled.
    compacted_at: usize,
}

impl Default for Memberships {
    fn default() -> Self {
        let empty: Bits = Box::new([]);
        Memberships {
            views: Vec::new(),
            slots: HashMap::new(),
            sets: vec![empty.clone()],
            ids: HashMap::from([(empty, 0)]),
            after_event: HashMap::default(),
            after_slot: HashMap::default(),
            compacted_at: 1,
        }
    }
}

impl Memberships {
    /// The slot of `view`, given one if it has none.
    pub fn slot(&mut self, view: SetKind) -> u32 {
        if let Some(&slot) = self.slots.get(&view) {
            return slot;
        }
        let slot = match self.views.iter().position(Option::is_none) {
            Some(free) => {
                self.views[free] = Some(view);
                free
            }
            None => {
                self.views.push(Some(view));
                self.views.len() - 1
            }
        };
        let slot = u32::try_from(slot).expect("fewer than 2^32 views");
        self.slots.insert(view, slot);
        slot
    }

    /// The slot of `view`, if it has one.
    pub fn slot_of(&self, view: SetKind) -> Option<u32> {
        self.slots.get(&view).copied()
    }

    /// Frees `view`'s slot for another view. Only once no address is in it: the caller has
    /// removed it from every partition's memberships.
    pub fn release(&mut self, view: SetKind) {
        if let Some(slot) = self.slots.remove(&view) {
            self.views[slot as usize] = None;
        }
    }

    /// The membership `id` plus the event's views, and which of them it lacked (bit i for
    /// `slots[i]`).
    pub fn with_event(&mut self, id: u32, slots: EventSlots) -> (u32, u8) {
        // Most events repeat views their address is in already: three bit tests, no lookup.
        if slots.iter().all(|&slot| self.has(id, slot)) {
            return (id, 0);
        }
        if let Some(&after) = self.after_event.get(&(id, slots)) {
            return after;
        }
        let mut bits = self.sets[id as usize].to_vec();
        let mut added = 0;
        for (i, &slot) in slots.iter().enumerate() {
            if set_bit(&mut bits, slot) {
                added |= 1 << i;
            }
        }
        let after = (self.intern(bits), added);
        self.remember(|m| m.after_event.insert((id, slots), after));
        after
    }

    /// The membership `id` plus the view of `slot`.
    pub fn with_slot(&mut self, id: u32, slot: u32) -> u32 {
        if let Some(&after) = self.after_slot.get(&(id, slot)) {
            return after;
        }
        let mut bits = self.sets[id as usize].to_vec();
        set_bit(&mut bits, slot);
        let after = self.intern(bits);
        self.remember(|m| m.after_slot.insert((id, slot), after));
        after
    }

    /// The membership `id` without the views of `slots`.
    pub fn without(&mut self, id: u32, slots: &[u32]) -> u32 {
        let mut bits = self.sets[id as usize].to_vec();
        for &slot in slots {
            if let Some(word) = bits.get_mut(slot as usize / 64) {
                *word &= !(1 << (slot % 64));
            }
        }
        self.intern(bits)
    }

    pub fn has(&self, id: u32, slot: u32) -> bool {
        self.sets[id as usize]
            .get(slot as usize / 64)
            .is_some_and(|word| word & (1 << (slot % 64)) != 0)
    }

    /// The slots of membership `id`.
    pub fn slots_in(&self, id: u32) -> impl Iterator<Item = u32> + '_ {
        self.sets[id as usize]
            .iter()
            .enumerate()
            .flat_map(|(w, &word)| {
                (0..64u32)
                    .filter(move |b| word & (1 << b) != 0)
                    .map(move |b| w as u32 * 64 + b)
            })
    }

    /// Slots in `after` and in none of `others`.
    pub fn new_slots(&self, after: u32, others: &[u32]) -> Vec<u32> {
        self.slots_in(after)
            .filter(|&slot| !others.iter().any(|&other| self.has(other, slot)))
            .collect()
    }

    /// The view of `slot`.
    pub fn view(&self, slot: u32) -> Option<SetKind> {
        self.views.get(slot as usize).copied().flatten()
    }

    /// Number of slots, free ones included: every slot is below it.
    pub fn slots(&self) -> usize {
        self.views.len()
    }

    /// Number of ids, used or not since the last compaction.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Whether enough ids went unused since the last [`compact`](Self::compact) to do one.
    pub fn compaction_due(&self) -> bool {
        self.sets.len() >= 2 * self.compacted_at + 1024
    }

    /// Renumbers the ids `used` reports in use (as `used(visit)` calls `visit` with each
    /// id held) and forgets the others; returns old id → new id, for the caller to retag
    /// its addresses with.
    pub fn compact(&mut self, used: impl FnOnce(&mut dyn FnMut(u32))) -> Vec<u32> {
        let mut in_use = vec![false; self.sets.len()];
        in_use[0] = true;
        used(&mut |id| in_use[id as usize] = true);
        let mut renumbered = vec![0; self.sets.len()];
        let old = std::mem::take(&mut self.sets);
        self.ids.clear();
        for (id, bits) in old.into_iter().enumerate() {
            if in_use[id] {
                renumbered[id] = self.sets.len() as u32;
                self.ids.insert(bits.clone(), self.sets.len() as u32);
                self.sets.push(bits);
            }
        }
        self.after_event.clear();
        self.after_slot.clear();
        self.compacted_at = self.sets.len();
        renumbered
    }

    fn intern(&mut self, mut bits: Vec<u64>) -> u32 {
        while bits.last() == Some(&0) {
            bits.pop();
        }
        let bits: Bits = bits.into_boxed_slice();
        if let Some(&id) = self.ids.get(&bits) {
            return id;
        }
        let id = u32::try_from(self.sets.len()).expect("fewer than 2^32 memberships");
        self.sets.push(bits.clone());
        self.ids.insert(bits, id);
        id
    }

    fn remember<T>(&mut self, insert: impl FnOnce(&mut Self) -> T) {
        if self.after_event.len() + self.after_slot.len() >= MAX_REMEMBERED {
            self.after_event.clear();
            self.after_slot.clear();
        }
        insert(self);
    }
}

/// The transition tables' hash. Their keys are a few small integers the node assigns itself
/// (ids and slots), so SipHash's resistance to chosen keys, which the default pays for on
/// every lookup, buys nothing here.
type FastHash = BuildHasherDefault<MultiplyRotate>;

/// Each word mixed in by a rotate, xor and multiply (the Fx hash of rustc).
#[derive(Default)]
struct MultiplyRotate(u64);

impl Hasher for MultiplyRotate {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Sets bit `slot`; true if it was clear.
fn set_bit(bits: &mut Vec<u64>, slot: u32) -> bool {
    let word = slot as usize / 64;
    if bits.len() <= word {
        bits.resize(word + 1, 0);
    }
    let mask = 1 << (slot % 64);
    let was_clear = bits[word] & mask == 0;
    bits[word] |= mask;
    was_clear
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_memberships_share_an_id_and_events_say_what_is_new() {
        let mut m = Memberships::default();
        let slots = [
            m.slot(SetKind::Minute(0)),
            m.slot(SetKind::Hour(0)),
            m.slot(SetKind::Code(3)),
        ];
        let (a, added) = m.with_event(0, slots);
        assert_eq!(added, 0b111);
        assert_eq!(m.with_event(a, slots), (a, 0));
        let minute = m.slot(SetKind::Minute(60_000));
        let (b, added) = m.with_event(a, [minute, slots[1], slots[2]]);
        assert_eq!(added, 0b001, "only the second minute is new");
        let with_minute = m.with_slot(a, minute);
        assert_eq!(m.with_slot(with_minute, slots[0]), b);
        assert_eq!(m.without(b, &[minute]), a);
        assert_eq!(m.new_slots(b, &[a]), vec![minute]);
        assert!(m.has(b, minute) && !m.has(a, minute));
    }

    #[test]
    fn a_released_slot_is_given_to_the_next_view() {
        let mut m = Memberships::default();
        let first = m.slot(SetKind::Minute(0));
        m.slot(SetKind::Minute(60_000));
        m.release(SetKind::Minute(0));
        assert_eq!(m.slot_of(SetKind::Minute(0)), None);
        assert_eq!(m.slot(SetKind::Minute(120_000)), first);
        assert_eq!(m.view(first), Some(SetKind::Minute(120_000)));
    }

    #[test]
    fn compaction_keeps_the_used_ids_and_renumbers_them() {
        let mut m = Memberships::default();
        let slots: Vec<u32> = (0..70)
            .map(|i| m.slot(SetKind::Minute(i * 60_000)))
            .collect();
        let ids: Vec<u32> = slots.iter().map(|&s| m.with_slot(0, s)).collect();
        // Keep the membership of slot 69 (in the second word) only.
        let renumbered = m.compact(|visit| visit(ids[69]));
        let kept = renumbered[ids[69] as usize];
        assert_eq!(kept, 1);
        assert!(m.has(kept, slots[69]));
        assert_eq!(m.slots_in(kept).collect::<Vec<_>>(), vec![slots[69]]);
        assert_eq!(
            m.with_slot(0, slots[69]),
            kept,
            "interned again after compaction"
        );
    }
}
