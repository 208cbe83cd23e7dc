//! Helpers shared by Freshet's fuzz targets (`fuzz_targets/`); see `docs/TESTING.md`.

use std::ops::Range;
use std::path::PathBuf;

use freshet_log::{BatchHeader, BATCH_HEADER_LEN};

/// A fresh temporary directory under `FRESHET_FUZZ_TMPDIR` if set (`.ci/fuzz.sh` sets it and
/// removes it afterwards: a crashing input leaves its directory behind), else on tmpfs when
/// there is one: the targets create, fsync and delete files on every input, which costs next to
/// nothing there.
pub fn scratch_dir() -> tempfile::TempDir {
    let builder = {
        let mut builder = tempfile::Builder::new();
        builder.prefix("freshet-fuzz-");
        builder
    };
    let parent = std::env::var_os("FRESHET_FUZZ_TMPDIR").map(PathBuf::from);
    let parent = parent.or_else(|| Some(PathBuf::from("/dev/shm")).filter(|shm| shm.is_dir()));
    if let Some(parent) = parent {
        if let Ok(dir) = builder.tempdir_in(&parent) {
            return dir;
        }
    }
    builder.tempdir().expect("a temporary directory")
}

/// The batches of a record set as the log frames them: each batch's header and where it lies.
/// `None` if the set is not a sequence of whole batches (the log refuses such a set).
pub fn split_batches(records: &[u8]) -> Option<Vec<(BatchHeader, Range<usize>)>> {
    let mut batches = Vec::new();
    let mut position = 0;
    while position < records.len() {
        let header = BatchHeader::parse(&records[position..]).ok()?;
        let end = position.checked_add(header.total_size())?;
        if end > records.len() || end - position < BATCH_HEADER_LEN {
            return None;
        }
        batches.push((header, position..end));
        position = end;
    }
    Some(batches)
}

/// Topics the seed corpus (`fuzz/seeds/request_frame`, captured from real clients by
/// `crates/broker/tests/it/fuzz_seeds.rs`) talks to: `(name, partitions, cleanup.policy)`. The
/// `request_frame` target creates them up front, so the captured Produce and Fetch frames reach
/// the logs whatever the broker's auto-creation rules are. Keep in step with `fuzz_seeds.rs`.
pub const SEED_TOPICS: &[(&str, i32, &str)] = &[
    ("seeds-none", 2, "delete"),
    ("seeds-gzip", 2, "delete"),
    ("seeds-snappy", 2, "delete"),
    ("seeds-lz4", 2, "delete"),
    ("seeds-zstd", 2, "delete"),
    ("seeds-idempotent", 2, "delete"),
    ("seeds-compacted", 1, "compact"),
];
