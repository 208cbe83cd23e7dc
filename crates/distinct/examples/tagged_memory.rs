//! Resident memory per address of [`TaggedIps`] against [`DistinctIps`]: 10 M random IPv4
//! addresses spread over three sets (a tracker's three partitions), under mimalloc as in the
//! `freshet` binary, read after the sets shrank and the freed pages went back to the kernel.
//!
//! `cargo run --release -p freshet-distinct --example tagged_memory -- [tagged|plain] [addresses]`

// A measurement tool: its report is its output.
#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use freshet_distinct::{DistinctIps, TaggedIps};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SETS: usize = 3;
/// Sets are filled the way a tracker fills them: in sorted batches.
const BATCH: usize = 50_000;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm's resident field");
    pages * 4096
}

/// xorshift64: reproducible addresses without a dependency.
fn addresses(count: u64) -> impl Iterator<Item = IpAddr> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count).map(move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        IpAddr::V4(Ipv4Addr::from(x as u32))
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let form = args.next().unwrap_or_else(|| "tagged".into());
    let count: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    freshet_os::heap::spawn_trimmer();
    let before = resident_bytes();
    let started = Instant::now();
    let (len, heap) = match form.as_str() {
        "tagged" => {
            let mut sets: Vec<TaggedIps> = (0..SETS).map(|_| TaggedIps::new()).collect();
            let mut batches = (0..SETS)
                .map(|_| Vec::with_capacity(BATCH))
                .collect::<Vec<_>>();
            for (i, ip) in addresses(count).enumerate() {
                let batch = &mut batches[i % SETS];
                // 33 tags: two minutes times one hour times eleven error codes.
                batch.push((ip, (i % 33) as u32));
                if batch.len() == BATCH || i as u64 + 1 == count {
                    batch.sort_unstable();
                    for &(ip, tag) in batch.iter() {
                        sets[i % SETS].upsert(ip, |_| tag);
                    }
                    batch.clear();
                }
            }
            drop(batches);
            sets.iter_mut().for_each(TaggedIps::shrink_to_fit);
            let heap = sets.iter().map(TaggedIps::heap_bytes).sum::<u64>();
            let len = sets.iter().map(TaggedIps::len).sum::<u64>();
            std::mem::forget(sets);
            (len, Some(heap))
        }
        "plain" => {
            let mut sets: Vec<DistinctIps> = (0..SETS).map(|_| DistinctIps::new()).collect();
            let mut batches = (0..SETS)
                .map(|_| Vec::with_capacity(BATCH))
                .collect::<Vec<_>>();
            for (i, ip) in addresses(count).enumerate() {
                let batch = &mut batches[i % SETS];
                batch.push(ip);
                if batch.len() == BATCH || i as u64 + 1 == count {
                    batch.sort_unstable();
                    sets[i % SETS].insert_all(batch, &mut Vec::new());
                    batch.clear();
                }
            }
            drop(batches);
            sets.iter_mut().for_each(DistinctIps::shrink_to_fit);
            let len = sets.iter().map(DistinctIps::len).sum::<u64>();
            std::mem::forget(sets);
            (len, None)
        }
        other => panic!("unknown form {other:?}: tagged or plain"),
    };
    let filled = started.elapsed();
    freshet_os::heap::release_this_threads_free_pages();
    // The trimmer runs every 2 s; mimalloc purges after its delay.
    std::thread::sleep(Duration::from_secs(5));
    let per_address = |bytes: u64| bytes as f64 / len as f64;
    print!(
        "{form}: {len} distinct addresses in {SETS} sets, filled in {:.2} s: {:.2} B per address resident",
        filled.as_secs_f64(),
        per_address(resident_bytes().saturating_sub(before))
    );
    match heap {
        Some(heap) => println!(", {:.2} in its vectors", per_address(heap)),
        None => println!(),
    }
}
