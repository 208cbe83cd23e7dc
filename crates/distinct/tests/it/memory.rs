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
