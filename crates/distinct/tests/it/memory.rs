//! Memory per distinct IPv4 at 10,000,000 random addresses (target: at most 4 bytes, see
//! `docs/BENCHMARKS.md`). A measurement, not a timed test: run it in release with
//! `cargo test --release -p freshet-distinct --test it -- --ignored --nocapture memory::`.

use std::net::{IpAddr, Ipv4Addr};

use freshet_distinct::{DistinctIps, HyperLogLog};

use crate::common;
use common::SplitMix64;

/// Resident set size in bytes, from `VmRSS` in /proc/self/status (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn per_address(bytes: u64, n: u64) -> f64 {
    bytes as f64 / n as f64
}

#[test]
#[ignore = "measurement: run in release with --ignored --nocapture"]
fn bytes_per_distinct_ipv4_at_10m() {
    const TARGET: u64 = 10_000_000;
    let mut rng = SplitMix64(0x00f7_e54e_7000_0003);
    let before = rss_bytes();
    let mut set = DistinctIps::new();
    let (mut inserted, mut distinct) = (0u64, 0u64);
    while distinct < TARGET {
        distinct += u64::from(set.insert(IpAddr::V4(Ipv4Addr::from(rng.next() as u32))));
        inserted += 1;
    }
    let after = rss_bytes();
    let n = set.len();
    let serialized = set.serialized_size() as u64;
    eprintln!("inserted {inserted} random IPv4 addresses, {n} distinct");
    eprintln!(
        "serialized: {serialized} bytes = {:.3} bytes/address",
        per_address(serialized, n)
    );
    if let (Some(before), Some(after)) = (before, after) {
        let delta = after.saturating_sub(before);
        eprintln!(
            "RSS delta while building: {delta} bytes = {:.3} bytes/address",
            per_address(delta, n)
        );
    }
    let mut bytes = Vec::new();
    set.serialize(&mut bytes);
    // Measured while `set` is alive, so the allocator cannot reuse its memory.
    let before_restore = rss_bytes();
    let restored = DistinctIps::deserialize(&bytes).expect("own encoding decodes");
    let after_restore = rss_bytes();
    if let (Some(before), Some(after)) = (before_restore, after_restore) {
        let delta = after.saturating_sub(before);
        eprintln!(
            "RSS delta restoring from a checkpoint: {delta} bytes = {:.3} bytes/address",
            per_address(delta, n)
        );
    }
    assert_eq!(restored, set);
    drop(set);
    let mut shrunk = restored.clone();
    shrunk.shrink_to_fit();
    assert_eq!(shrunk, restored);
    let mut hll = HyperLogLog::new();
    restored.iter().for_each(|ip| hll.insert(ip));
    let error = (hll.estimate() as f64 - n as f64) / n as f64;
    eprintln!(
        "HyperLogLog (p=14, 16 KiB): estimate {} ({:+.2}%)",
        hll.estimate(),
        error * 100.0
    );
    assert_eq!(restored.len(), n);
    assert!(
        serialized <= 4 * n,
        "serialized size above 4 bytes per address"
    );
}

/// How a tracker's sets split memory at 10 M random addresses with views: three
/// partitions, each with its overall set, one hour set, one minute set and eleven
/// error-code sets (every address in one of each, as in the memory run of
/// `freshet bench pipeline`; the hour and minute sets are then the overall set again).
/// One kind of set in one form per process, restored from its encoding (the settled,
/// shrunk form), with everything else kept alive so that no freed memory is reused:
///
/// ```sh
/// for kind in overall codes; do for form in sets roaring; do
///   FRESHET_SPLIT=$kind-$form cargo test --release -p freshet-distinct --test it -- \
///     --ignored --nocapture memory::bytes_per_address_of_one_view_kind_at_10m
/// done; done
/// ```
///
/// `sets` is this crate's `DistinctIps`, `roaring` one Roaring bitmap per set (what the
/// sets were before they had a sparse form; the per-/8 split adds 6 KiB per set). RSS
/// deltas with the test's allocator (glibc), not the tracker's (mimalloc).
#[test]
#[ignore = "measurement: run in release with --ignored --nocapture and FRESHET_SPLIT"]
fn bytes_per_address_of_one_view_kind_at_10m() {
    use roaring::RoaringBitmap;
    const N: usize = 10_000_000;
    const PARTITIONS: usize = 3;
    const CODES: usize = 11;
    let Ok(split) = std::env::var("FRESHET_SPLIT") else {
        eprintln!(
            "set FRESHET_SPLIT to overall-sets, overall-roaring, codes-sets or codes-roaring"
        );
        return;
    };
    let by_code = split.starts_with("codes");
    let sets_per_partition = if by_code { CODES } else { 1 };
    // The draws of `bytes_per_distinct_ipv4_at_10m` (10 M distinct), sorted and deduplicated
    // in place, and every allocation below sized exactly: nothing is freed before the
    // measurement, so the restored sets cannot reuse freed memory and look smaller.
    let mut rng = SplitMix64(0x00f7_e54e_7000_0003);
    let mut all: Vec<u32> = Vec::with_capacity(10_011_652);
    all.extend((0..10_011_652).map(|_| rng.next() as u32));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), N);
    let set_of = |ip: u32| {
        let h = u64::from(ip).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let code = if by_code {
            (h >> 8) as usize % CODES
        } else {
            0
        };
        h as usize % PARTITIONS * sets_per_partition + code
    };
    let mut sizes = vec![0usize; PARTITIONS * sets_per_partition];
    all.iter().for_each(|&ip| sizes[set_of(ip)] += 1);
    let mut values: Vec<Vec<u32>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    all.iter().for_each(|&ip| values[set_of(ip)].push(ip));
    let encodings: Vec<Vec<u8>> = values.iter().map(|v| encode_sorted(v)).collect();
    let serialized: usize = encodings.iter().map(Vec::len).sum();
    let before = rss_bytes();
    let (sets, bitmaps): (Vec<DistinctIps>, Vec<RoaringBitmap>) = if split.ends_with("roaring") {
        let bitmaps = encodings
            .iter()
            .map(|b| {
                RoaringBitmap::deserialize_from(&b[10..b.len() - 8]).expect("portable Roaring")
            })
            .collect();
        (Vec::new(), bitmaps)
    } else {
        let sets = encodings
            .iter()
            .map(|b| DistinctIps::deserialize(b).expect("own encoding"))
            .collect();
        (sets, Vec::new())
    };
    let after = rss_bytes();
    let len: u64 = sets.iter().map(DistinctIps::len).sum::<u64>()
        + bitmaps.iter().map(RoaringBitmap::len).sum::<u64>();
    assert_eq!(len, N as u64);
    let containers: usize = values
        .iter()
        .map(|v| {
            let mut prefixes: Vec<u32> = v.iter().map(|ip| ip >> 16).collect();
            prefixes.sort_unstable();
            prefixes.dedup();
            prefixes.len()
        })
        .sum();
    if let (Some(before), Some(after)) = (before, after) {
        eprintln!(
            "{split}: {} sets, {containers} Roaring containers ({:.1} addresses each); \
             serialised {:.2} B/address; in memory {:.2} B/address",
            values.len(),
            N as f64 / containers as f64,
            per_address(serialized as u64, N as u64),
            per_address(after.saturating_sub(before), N as u64),
        );
    }
}

/// The `DistinctIps` encoding of increasing IPv4 values (no IPv6), written directly into
/// a vector of exactly its size.
fn encode_sorted(values: &[u32]) -> Vec<u8> {
    let mut containers: Vec<(u16, usize)> = Vec::new();
    for &v in values {
        match containers.last_mut() {
            Some((key, n)) if u32::from(*key) == v >> 16 => *n += 1,
            _ => containers.push(((v >> 16) as u16, 1)),
        }
    }
    let data = |n: usize| if n <= 4096 { 2 * n } else { 8192 };
    let bitmap_len = 8 + 8 * containers.len() + containers.iter().map(|c| data(c.1)).sum::<usize>();
    let mut out = Vec::with_capacity(10 + bitmap_len + 8);
    out.extend_from_slice(b"FDIP\x01\x00");
    out.extend_from_slice(&(bitmap_len as u32).to_le_bytes());
    out.extend_from_slice(&12346u32.to_le_bytes());
    out.extend_from_slice(&(containers.len() as u32).to_le_bytes());
    for (key, n) in &containers {
        out.extend_from_slice(&key.to_le_bytes());
        out.extend_from_slice(&((n - 1) as u16).to_le_bytes());
    }
    let mut offset = 8 + 8 * containers.len();
    for (_, n) in &containers {
        out.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += data(*n);
    }
    let mut rest = values;
    for (_, n) in &containers {
        let (mine, later) = rest.split_at(*n);
        if *n <= 4096 {
            mine.iter()
                .for_each(|v| out.extend_from_slice(&(*v as u16).to_le_bytes()));
        } else {
            let mut words = [0u64; 1024];
            mine.iter()
                .for_each(|v| words[(v & 0xffff) as usize / 64] |= 1 << (v % 64));
            words
                .iter()
                .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        }
        rest = later;
    }
    out.extend_from_slice(&0u64.to_le_bytes());
    assert_eq!(out.len(), out.capacity());
    out
}
