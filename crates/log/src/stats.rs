//! What a log counts about itself since it was opened: appends, reads and fsyncs, with the
//! fsync latencies in a fixed-bucket histogram.
//!
//! `Counters` are relaxed atomics the appender, group commit and readers bump;
//! [`LogStats`] is a plain copy of them for whoever reports (the broker's metrics). The
//! histogram's buckets are the same for every log, so the broker can add up its partitions'
//! histograms into one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the fsync latency buckets, in nanoseconds: 50 µs to 2.5 s, about three
/// per decade, from a fast NVMe `fdatasync` to a disk in trouble. An fsync slower than the
/// last bound lands in one more, open-ended bucket.
pub const FSYNC_BUCKET_BOUNDS_NANOS: [u64; 15] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
];

/// Buckets of [`FsyncHistogram`]: one per bound, and the open-ended last one.
pub const FSYNC_BUCKETS: usize = FSYNC_BUCKET_BOUNDS_NANOS.len() + 1;

/// The bucket an fsync of `nanos` falls in: the first whose bound it does not exceed.
pub fn fsync_bucket(nanos: u64) -> usize {
    FSYNC_BUCKET_BOUNDS_NANOS.partition_point(|&bound| bound < nanos)
}

/// fsyncs counted per latency bucket (not cumulative): `counts()[i]` took more than bound
/// `i - 1` and at most bound `i` of [`FSYNC_BUCKET_BOUNDS_NANOS`]; the last, more than every
/// bound.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsyncHistogram {
    counts: [u64; FSYNC_BUCKETS],
}

impl FsyncHistogram {
    pub fn counts(&self) -> &[u64; FSYNC_BUCKETS] {
        &self.counts
    }

    /// fsyncs in all buckets.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket's upper bound in seconds (`f64::INFINITY` for the last) with its count.
    pub fn buckets_seconds(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = FSYNC_BUCKET_BOUNDS_NANOS
            .iter()
            .map(|&nanos| nanos as f64 / 1e9)
            .chain(std::iter::once(f64::INFINITY));
        bounds.zip(self.counts.iter().copied())
    }

    /// Adds `other`'s counts to these (the histograms of several logs into one).
    pub fn add(&mut self, other: &FsyncHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
    }
}

/// Counters since the log was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Bytes written by appends (duplicates excluded).
    pub bytes_appended: u64,
    /// Records written by appends.
    pub records_appended: u64,
    /// Batches written by appends.
    pub batches_appended: u64,
    /// fsyncs of segment log files (group commits, flushes and rolls).
    pub fsyncs: u64,
    /// Time spent in those fsyncs.
    pub fsync_nanos_total: u64,
    /// The slowest of those fsyncs.
    pub fsync_nanos_max: u64,
    /// How long those fsyncs took, bucketed.
    pub fsync_histogram: FsyncHistogram,
    /// Bytes returned by reads.
    pub bytes_read: u64,
}

/// The live counters behind [`LogStats`]. Relaxed: each is a tally read for reporting, and no
/// decision depends on two of them agreeing.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    bytes_appended: AtomicU64,
    records_appended: AtomicU64,
    batches_appended: AtomicU64,
    fsyncs: AtomicU64,
    fsync_nanos_total: AtomicU64,
    fsync_nanos_max: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS],
    bytes_read: AtomicU64,
}

impl Counters {
    pub(crate) fn record_append(&self, bytes: u64, records: u64, batches: u64) {
        self.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
        self.records_appended.fetch_add(records, Ordering::Relaxed);
        self.batches_appended.fetch_add(batches, Ordering::Relaxed);
    }

    pub(crate) fn record_fsync(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.fsync_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        self.fsync_nanos_max.fetch_max(nanos, Ordering::Relaxed);
        self.fsync_buckets[fsync_bucket(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_read(&self, bytes: u64) {
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LogStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LogStats {
            bytes_appended: load(&self.bytes_appended),
            records_appended: load(&self.records_appended),
            batches_appended: load(&self.batches_appended),
            fsyncs: load(&self.fsyncs),
            fsync_nanos_total: load(&self.fsync_nanos_total),
            fsync_nanos_max: load(&self.fsync_nanos_max),
            fsync_histogram: FsyncHistogram {
                counts: self.fsync_buckets.each_ref().map(load),
            },
            bytes_read: load(&self.bytes_read),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fsync_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
        assert_eq!(fsync_bucket(0), 0);
        assert_eq!(fsync_bucket(50_000), 0, "a bound is inclusive");
        assert_eq!(fsync_bucket(50_001), 1);
        assert_eq!(fsync_bucket(999_999), 4);
        assert_eq!(fsync_bucket(1_000_000), 4);
        assert_eq!(fsync_bucket(2_500_000_000), FSYNC_BUCKETS - 2);
        assert_eq!(fsync_bucket(2_500_000_001), FSYNC_BUCKETS - 1);
        assert_eq!(fsync_bucket(u64::MAX), FSYNC_BUCKETS - 1);
    }

    #[test]
    fn recorded_fsyncs_fill_their_buckets_and_the_totals() {
        let counters = Counters::default();
        for micros in [10, 40, 700, 700, 3_000, 4_000_000] {
            counters.record_fsync(Duration::from_micros(micros));
        }
        let stats = counters.snapshot();
        let mut expected = [0; FSYNC_BUCKETS];
        expected[0] = 2; // 10 µs, 40 µs: at most 50 µs
        expected[4] = 2; // 700 µs: over 500 µs, at most 1 ms
        expected[6] = 1; // 3 ms: over 2.5 ms, at most 5 ms
        expected[FSYNC_BUCKETS - 1] = 1; // 4 s: over every bound
        assert_eq!(stats.fsync_histogram.counts(), &expected);
        assert_eq!(stats.fsync_histogram.count(), stats.fsyncs);
        assert_eq!(stats.fsyncs, 6);
        assert_eq!(stats.fsync_nanos_total, 4_004_450_000);
        assert_eq!(stats.fsync_nanos_max, 4_000_000_000);
    }

    #[test]
    fn buckets_are_reported_in_seconds_and_histograms_add_up() {
        let counters = Counters::default();
        counters.record_fsync(Duration::from_micros(80));
        let one = counters.snapshot().fsync_histogram;
        let mut total = FsyncHistogram::default();
        total.add(&one);
        total.add(&one);
        let buckets: Vec<(f64, u64)> = total.buckets_seconds().collect();
        assert_eq!(buckets.len(), FSYNC_BUCKETS);
        assert_eq!(buckets[0], (0.00005, 0));
        assert_eq!(buckets[1], (0.0001, 2));
        assert_eq!(buckets[FSYNC_BUCKETS - 1], (f64::INFINITY, 0));
        assert_eq!(total.count(), 2);
    }
}
