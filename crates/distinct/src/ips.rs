//! [`DistinctIps`]: the exact set and its wire format.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use roaring::RoaringBitmap;

use crate::codec::Reader;
use crate::v4::V4Set;
use crate::v6::V6Set;
use crate::DistinctError;

/// First bytes of a [`DistinctIps`] encoding.
pub const SET_MAGIC: [u8; 4] = *b"FDIP";
/// Version byte of the [`DistinctIps`] encoding this build writes and reads.
pub const SET_VERSION: u8 = 1;
/// Roaring's cookie for its portable format without run containers (what
/// `RoaringBitmap::serialize_into` writes).
const ROARING_COOKIE_NO_RUN: u32 = 12346;
/// Header bytes before the IPv4 bitmap: magic, version, flags, bitmap length.
const HEADER_LEN: usize = 4 + 1 + 1 + 4;

/// An exact, compact, mergeable set of IP addresses.
///
/// IPv4 addresses live in sorted chunks of `u32`s while sparse and in Roaring
/// bitmaps once dense; IPv6 addresses in a sorted vector of `u128`s (see the
/// crate docs). IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) are stored as the IPv4 address `a.b.c.d`: a device is
/// counted once however its address was written. IPv4-compatible addresses
/// (`::a.b.c.d`, deprecated) stay IPv6.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistinctIps {
    v4: V4Set,
    v6: V6Set,
}

// Roaring's equality is a plain container comparison, reflexive for the
// canonical bitmaps this crate builds.
impl Eq for DistinctIps {}

/// Where an address is stored.
pub(crate) enum Key {
    V4(u32),
    V6(u128),
}

pub(crate) fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(v4) => Key::V4(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => Key::V4(u32::from(v4)),
            None => Key::V6(u128::from(v6)),
        },
    }
}

impl DistinctIps {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `ip`; true if it was not in the set.
    pub fn insert(&mut self, ip: IpAddr) -> bool {
        match key(ip) {
            Key::V4(v) => self.v4.insert(v),
            Key::V6(v) => self.v6.insert(v),
        }
    }

    /// Adds every address of `ips`, in any order, pushing those not in the set before onto
    /// `new` (once each). Faster than [`DistinctIps::insert`] one by one for a batch: the
    /// IPv4 addresses are sorted and merged into the set's chunks a chunk at a time.
    pub fn insert_all(&mut self, ips: &[IpAddr], new: &mut Vec<IpAddr>) {
        let mut v4 = Vec::with_capacity(ips.len());
        for &ip in ips {
            match key(ip) {
                Key::V4(v) => v4.push(v),
                Key::V6(v) => {
                    if self.v6.insert(v) {
                        new.push(ip);
                    }
                }
            }
        }
        // Already in order when the caller sorted the batch: then this is one pass.
        v4.sort_unstable();
        v4.dedup();
        let mut added = Vec::new();
        self.v4.insert_sorted(&v4, &mut added);
        new.extend(added.into_iter().map(|v| IpAddr::V4(Ipv4Addr::from(v))));
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match key(ip) {
            Key::V4(v) => self.v4.contains(v),
            Key::V6(v) => self.v6.contains(v),
        }
    }

    /// Exact number of distinct addresses.
    pub fn len(&self) -> u64 {
        self.len_v4() + self.len_v6()
    }

    /// Exact number of distinct IPv4 addresses (IPv4-mapped IPv6 included).
    pub fn len_v4(&self) -> u64 {
        self.v4.len()
    }

    /// Exact number of distinct IPv6 addresses (IPv4-mapped excluded).
    pub fn len_v6(&self) -> u64 {
        self.v6.len()
    }

    /// True if the set has no address.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds every address of `other`.
    pub fn union_with(&mut self, other: &DistinctIps) {
        self.v4.union_with(&other.v4);
        self.v6.union_with(&other.v6);
    }

    /// Exact number of distinct addresses in the union of `sets`, without
    /// changing them. Sets that share no address (per-partition sets of a
    /// topic keyed by device) are summed after a container-level disjointness
    /// check; otherwise the IPv4 union is built, which briefly needs memory
    /// for it.
    pub fn union_len(sets: &[&DistinctIps]) -> u64 {
        match sets {
            [] => 0,
            [one] => one.len(),
            _ => union_len_v4(sets) + union_len_v6(sets),
        }
    }

    /// Drops spare capacity: Roaring array containers grow by doubling, so a
    /// dense set built by inserts holds ~4 bytes per random IPv4 address where
    /// its encoding (and a set restored from it) needs ~2.1, and a sparse set's
    /// chunks are half to completely full. Rebuilds the bitmaps from their own
    /// encoding and repacks the chunks, so it briefly needs that much more
    /// memory; call it after a bulk load or beside a checkpoint, not per insert.
    pub fn shrink_to_fit(&mut self) {
        self.v4.shrink_to_fit();
        self.v6.shrink_to_fit();
    }

    /// All addresses: IPv4 in increasing order, then IPv6 in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.iter().map(|v| IpAddr::V4(Ipv4Addr::from(v)));
        v4.chain(self.v6.iter().map(|v| IpAddr::V6(Ipv6Addr::from(v))))
    }

    /// Size in bytes of [`serialize`](Self::serialize)'s output; also a close
    /// proxy for the in-memory size.
    pub fn serialized_size(&self) -> usize {
        HEADER_LEN + self.v4.serialized_size() + 8 + 16 * self.v6.len() as usize
    }

    /// A bound on [`serialized_size`](Self::serialized_size) from the set's length alone,
    /// without walking it: each IPv4 address at most in a container of its own (2 bytes,
    /// plus 8 of container header), each IPv6 one 16 bytes.
    pub fn serialized_size_at_most(&self) -> usize {
        let v4 = self.v4.len() as usize;
        HEADER_LEN + 8 + 10 * v4 + 8 + 16 * self.v6.len() as usize
    }

    /// Appends the encoding described in the crate docs to `out`.
    pub fn serialize(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SET_MAGIC);
        out.extend_from_slice(&[SET_VERSION, 0]);
        // The bitmap's length goes before it: written once the bitmap is, rather than
        // measured by a walk of the set of its own.
        let length_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        self.v4.serialize_into(out);
        let v4_len = u32::try_from(out.len() - length_at - 4)
            .expect("a Roaring bitmap of u32 serialises to < 4 GiB (at most ~537 MB)");
        out[length_at..length_at + 4].copy_from_slice(&v4_len.to_le_bytes());
        out.extend_from_slice(&self.v6.len().to_le_bytes());
        for v in self.v6.iter() {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// Decodes [`serialize`](Self::serialize)'s output. Any truncated,
    /// corrupt or non-canonical input is an error; no input panics.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, DistinctError> {
        let mut reader = Reader::new(bytes);
        reader.header(SET_MAGIC, SET_VERSION)?;
        let v4_len = reader.u32_le("IPv4 bitmap length")? as usize;
        let v4 = decode_v4(reader.take(v4_len, "IPv4 bitmap")?)?;
        let v6 = decode_v6(&mut reader)?;
        reader.finish()?;
        Ok(Self { v4, v6 })
    }
}

/// The size [`DistinctIps::serialize`] would write for a set, counted from its addresses
/// without building it: for a set kept in another form (a tracker's view, which lives as tags
/// beside its partition's addresses).
#[derive(Debug, Clone, Default)]
pub struct EncodedSize {
    /// IPv4 containers closed so far, and their data bytes.
    containers: usize,
    data: usize,
    /// The open container: its key (the top 16 bits) and how many addresses it has.
    open: Option<(u16, usize)>,
    v6: usize,
}

impl EncodedSize {
    /// Counts the next address. Addresses must come in [`DistinctIps::iter`]'s order (IPv4
    /// increasing, then IPv6 increasing), each once.
    pub fn add(&mut self, ip: IpAddr) {
        match key(ip) {
            Key::V4(v) => {
                let container = (v >> 16) as u16;
                match &mut self.open {
                    Some((open, count)) if *open == container => *count += 1,
                    _ => {
                        self.close();
                        self.open = Some((container, 1));
                    }
                }
            }
            Key::V6(_) => self.v6 += 1,
        }
    }

    /// Whether no address was counted.
    pub fn is_empty(&self) -> bool {
        self.containers == 0 && self.open.is_none() && self.v6 == 0
    }

    /// What [`DistinctIps::serialized_size`] says for the addresses counted.
    pub fn bytes(&self) -> usize {
        let mut all = self.clone();
        all.close();
        // Roaring: cookie and count, then a descriptor and an offset per container.
        let v4 = 8 + 8 * all.containers + all.data;
        HEADER_LEN + v4 + 8 + 16 * all.v6
    }

    fn close(&mut self) {
        if let Some((_, count)) = self.open.take() {
            self.containers += 1;
            self.data += container_bytes(count);
        }
    }
}

impl FromIterator<IpAddr> for DistinctIps {
    /// Sorts the IPv4 addresses first, so building a large set costs a sort, not
    /// one insert per address.
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        let mut v4 = Vec::new();
        let mut set = Self::new();
        for ip in iter {
            match key(ip) {
                Key::V4(v) => v4.push(v),
                Key::V6(v) => {
                    set.v6.insert(v);
                }
            }
        }
        set.v4 = v4.into_iter().collect();
        set
    }
}

impl Extend<IpAddr> for DistinctIps {
    fn extend<I: IntoIterator<Item = IpAddr>>(&mut self, iter: I) {
        for ip in iter {
            self.insert(ip);
        }
    }
}

/// Decodes a portable Roaring bitmap (into per-/8 shards, then into the form
/// inserts would have settled on) and insists on the
/// canonical form `serialize` writes: strictly increasing container keys, roaring's
/// own checks (sorted arrays, bitmap cardinalities) and a byte-identical
/// re-encoding, so a decoded set always has the invariants roaring relies on.
///
/// The shards are contiguous runs of containers in the input; each run
/// is re-framed as a bitmap of its own and decoded by roaring, so no combined
/// bitmap is ever built (restoring a 10M-address set would otherwise need it
/// twice over).
fn decode_v4(bytes: &[u8]) -> Result<V4Set, DistinctError> {
    let descriptors = container_descriptors(bytes)?;
    let count = descriptors.len();
    let len: u64 = descriptors.iter().map(|d| d.1 as u64).sum();
    let shard_of = V4Set::decoded_shard_of_key;
    let mut data_offset = 8 + 8 * count;
    let mut shards = Vec::new();
    let mut start = 0;
    while start < count {
        let shard = shard_of(descriptors[start].0);
        let end = start
            + descriptors[start..]
                .iter()
                .take_while(|d| shard_of(d.0) == shard)
                .count();
        let run = &descriptors[start..end];
        let data_len: usize = run.iter().map(|d| container_bytes(d.1)).sum();
        let data = bytes
            .get(data_offset..data_offset + data_len)
            .ok_or_else(|| invalid_v4("container data is truncated"))?;
        let framed = frame_run(run, data);
        let bitmap = RoaringBitmap::deserialize_from(framed.as_slice())
            .map_err(|e| DistinctError::InvalidV4Bitmap(e.to_string()))?;
        let mut again = Vec::with_capacity(framed.len());
        bitmap
            .serialize_into(&mut again)
            .expect("writing to a Vec<u8> cannot fail");
        if again != framed {
            return Err(invalid_v4("not in canonical form"));
        }
        shards.push((shard, bitmap));
        data_offset += data_len;
        start = end;
    }
    check_offsets(bytes, &descriptors)?;
    if data_offset != bytes.len() {
        return Err(invalid_v4("bytes after the last container"));
    }
    Ok(V4Set::from_decoded(len, count as u64, shards))
}

fn invalid_v4(reason: &str) -> DistinctError {
    DistinctError::InvalidV4Bitmap(reason.into())
}

/// Bytes of a container's data: an array of u16 up to 4096 values, else a bitmap.
fn container_bytes(cardinality: usize) -> usize {
    if cardinality <= 4096 {
        2 * cardinality
    } else {
        8192
    }
}

/// A run of containers as a portable bitmap of its own: cookie, count, descriptors,
/// offsets from the start of the framed bytes, data.
fn frame_run(run: &[(u16, usize)], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 8 * run.len() + data.len());
    out.extend_from_slice(&ROARING_COOKIE_NO_RUN.to_le_bytes());
    out.extend_from_slice(&(run.len() as u32).to_le_bytes());
    for (key, cardinality) in run {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&((cardinality - 1) as u16).to_le_bytes());
    }
    let mut offset = 8 + 8 * run.len();
    for (_, cardinality) in run {
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += container_bytes(*cardinality);
    }
    out.extend_from_slice(data);
    out
}

/// The offsets section must point at each container's data in order.
fn check_offsets(bytes: &[u8], descriptors: &[(u16, usize)]) -> Result<(), DistinctError> {
    let mut reader = Reader::new(&bytes[8 + 4 * descriptors.len()..]);
    let mut expected = 8 + 8 * descriptors.len();
    for (_, cardinality) in descriptors {
        let offset = reader.u32_le("Roaring container offset")? as usize;
        if offset != expected {
            return Err(invalid_v4("not in canonical form"));
        }
        expected += container_bytes(*cardinality);
    }
    Ok(())
}

/// Checks the cookie and that container keys strictly increase; returns each
/// container's key and cardinality.
fn container_descriptors(bytes: &[u8]) -> Result<Vec<(u16, usize)>, DistinctError> {
    let mut reader = Reader::new(bytes);
    let cookie = reader.u32_le("Roaring cookie")?;
    if cookie != ROARING_COOKIE_NO_RUN {
        return Err(DistinctError::InvalidV4Bitmap(format!(
            "unexpected Roaring cookie {cookie}"
        )));
    }
    let containers = reader.u32_le("Roaring container count")?;
    if containers > 1 << 16 {
        return Err(DistinctError::InvalidV4Bitmap(format!(
            "{containers} containers (max 65536)"
        )));
    }
    // Both the descriptors and the offsets must fit before any allocation.
    if (containers as usize) * 8 > reader.remaining() {
        return Err(invalid_v4("container headers are truncated"));
    }
    let mut descriptors: Vec<(u16, usize)> = Vec::with_capacity(containers as usize);
    for _ in 0..containers {
        let key = u16::from_le_bytes(reader.array("Roaring container key")?);
        let cardinality = usize::from(u16::from_le_bytes(
            reader.array("Roaring container cardinality")?,
        )) + 1;
        if descriptors
            .last()
            .is_some_and(|&(previous, _)| previous >= key)
        {
            return Err(DistinctError::InvalidV4Bitmap(format!(
                "container key {key} out of order"
            )));
        }
        descriptors.push((key, cardinality));
    }
    Ok(descriptors)
}

/// Reads the IPv6 count and the sorted big-endian addresses.
fn decode_v6(reader: &mut Reader<'_>) -> Result<V6Set, DistinctError> {
    let count = reader.u64_le("IPv6 count")?;
    let available = reader.remaining();
    if count.checked_mul(16) != Some(available as u64) {
        return Err(DistinctError::V6LengthMismatch { count, available });
    }
    let mut sorted = Vec::with_capacity(available / 16);
    for index in 0..count {
        let value = u128::from_be_bytes(reader.array("IPv6 address")?);
        if sorted.last().is_some_and(|&last| last >= value) {
            return Err(DistinctError::V6NotSorted { index });
        }
        sorted.push(value);
    }
    Ok(V6Set::from_sorted(sorted))
}

fn union_len_v4(sets: &[&DistinctIps]) -> u64 {
    let pairwise_disjoint = sets
        .iter()
        .enumerate()
        .all(|(i, a)| sets[i + 1..].iter().all(|b| a.v4.is_disjoint(&b.v4)));
    if pairwise_disjoint {
        sets.iter().map(|s| s.v4.len()).sum()
    } else {
        let v4: Vec<&V4Set> = sets.iter().map(|s| &s.v4).collect();
        V4Set::union_len(&v4)
    }
}

fn union_len_v6(sets: &[&DistinctIps]) -> u64 {
    if sets.iter().filter(|s| s.v6.len() > 0).count() <= 1 {
        return sets.iter().map(|s| s.v6.len()).sum();
    }
    let mut all: Vec<u128> = sets.iter().flat_map(|s| s.v6.iter()).collect();
    all.sort_unstable();
    all.dedup();
    all.len() as u64
}
