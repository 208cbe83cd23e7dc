//! What append costs per codec, to measure what opening compressed batches at produce adds
//! (see "Decompression limits" in `docs/SECURITY.md`). Ignored by default; run in release,
//! on tmpfs, without fsync:
//!
//! ```sh
//! cargo test --release -p freshet-log --test it -- --ignored --nocapture append_cost::
//! ```
//!
//! The file uses only APIs that predate bounded decompression, so the same file measures the
//! log before and after it.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use freshet_log::{Durability, LogConfig};

/// Records per batch: about 1 MB of records per batch (librdkafka's default `batch.size`).
const RECORDS_PER_BATCH: usize = 8_000;
/// Appends per round; the fastest of the rounds is reported, which is what the code costs
/// on a machine that is also busy with other work.
const APPENDS: usize = 50;
const ROUNDS: usize = 7;

/// Device events like the generator's: JSON with a few varying fields.
fn device_events() -> Vec<Rec> {
    (0..RECORDS_PER_BATCH)
        .map(|i| {
            let value = format!(
                r#"{{"device_id":"dev-{:06}","ip":"10.{}.{}.{}","ts":"2024-09-18T13:59:02.{:03}Z","event":"login","ok":{}}}"#,
                i * 7919 % 100_000,
                i % 256,
                (i * 31) % 256,
                (i * 17) % 256,
                i % 1000,
                i % 3 == 0
            );
            Rec::new(Some(&format!("dev-{}", i % 500)), Some(&value), 1_700_000_000_000)
        })
        .collect()
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir")
}

#[test]
#[ignore = "a measurement; run in release with --ignored --nocapture"]
fn append_cost_per_codec() {
    let records = device_events();
    let uncompressed_len = encode(&records, ALL_COMPRESSIONS[0], None).len();
    for codec in ALL_COMPRESSIONS {
        let batch = encode(&records, codec, None);
        let dir = scratch();
        let config = LogConfig {
            max_message_bytes: 4 << 20,
            durability: Durability::Interval(Duration::from_secs(3600)),
            ..LogConfig::default()
        };
        let log = open(dir.path(), config);
        let fastest = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..APPENDS {
                    log.append(&batch).expect("append");
                }
                started.elapsed()
            })
            .min()
            .unwrap_or_default();
        let per_batch = fastest / APPENDS as u32;
        let mb_per_s = (uncompressed_len * APPENDS) as f64 / fastest.as_secs_f64() / 1e6;
        eprintln!(
            "{codec:?}: batch {} B on the wire ({uncompressed_len} B of records); \
             {per_batch:?} per append, {mb_per_s:.0} MB/s of records",
            batch.len()
        );
    }
}
