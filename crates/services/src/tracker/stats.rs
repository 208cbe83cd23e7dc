//! What a node counts about its own work, for monitoring (`/metrics`): events counted and
//! rejected, partition checkpoints written, and the event rate of the last few seconds.
//!
//! These are process-local tallies, unlike the per-partition counters of the state (which
//! come from checkpoints, so they survive crashes and move between nodes): they start at 0
//! with the process, and events a node replays after a failed checkpoint count again. The
//! worker adds a batch's tally in one go, so the ~500k events/s path pays a few relaxed
//! atomic adds per batch, not per event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::event::InvalidKind;

/// How far back the event rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How often the rate's samples are taken.
const RATE_SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A node's numbers for monitoring, read by [`TrackerHandle::metrics`](super::TrackerHandle::metrics).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerMetrics {
    pub node_id: String,
    pub group: String,
    /// Whether the node's consumer is running.
    pub running: bool,
    /// Valid events this node counted since it started.
    pub events_counted: u64,
    /// Events this node sent to the dead-letter topic since it started, by kind of problem.
    pub events_rejected: Vec<(InvalidKind, u64)>,
    /// Events (valid or not) consumed per second over the last few seconds.
    pub events_per_second: f64,
    /// Partition checkpoints this node wrote and the cluster acknowledged since it started.
    pub checkpoints_written: u64,
    /// Records not yet consumed in the owned partitions; `None` while unknown.
    pub consumer_lag: Option<i64>,
    /// Exact distinct IPs in the partitions this node owns.
    pub distinct_ips_node: u64,
    /// Exact distinct IPs across all partitions.
    pub distinct_ips_global: u64,
    pub partitions_owned: u64,
}

/// Events of one batch, added to [`WorkCounters`] at once.
#[derive(Debug, Default)]
pub(super) struct BatchTally {
    pub(super) counted: u64,
    pub(super) rejected: [u64; InvalidKind::ALL.len()],
}

impl BatchTally {
    pub(super) fn reject(&mut self, kind: InvalidKind) {
        self.rejected[kind.index()] += 1;
    }
}

/// The node's running tallies. Relaxed atomics: each is read on its own, for reporting.
#[derive(Debug, Default)]
pub(super) struct WorkCounters {
    counted: AtomicU64,
    rejected: [AtomicU64; InvalidKind::ALL.len()],
    checkpoints: AtomicU64,
    rate: Mutex<RateWindow>,
}

impl WorkCounters {
    pub(super) fn add(&self, tally: &BatchTally) {
        if tally.counted > 0 {
            self.counted.fetch_add(tally.counted, Ordering::Relaxed);
        }
        for (counter, &rejected) in self.rejected.iter().zip(&tally.rejected) {
            if rejected > 0 {
                counter.fetch_add(rejected, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn checkpoints_written(&self, partitions: usize) {
        self.checkpoints
            .fetch_add(partitions as u64, Ordering::Relaxed);
    }

    pub(super) fn counted(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }

    pub(super) fn rejected(&self) -> Vec<(InvalidKind, u64)> {
        InvalidKind::ALL
            .into_iter()
            .zip(&self.rejected)
            .map(|(kind, counter)| (kind, counter.load(Ordering::Relaxed)))
            .collect()
    }

    pub(super) fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }

    /// Events consumed, valid or not.
    fn consumed(&self) -> u64 {
        self.counted()
            + self
                .rejected
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    /// Takes a sample for the rate if the last one is old enough. The worker calls this every
    /// turn of its loop (at least every ~100 ms while it runs).
    pub(super) fn sample_rate(&self, now: Instant) {
        let consumed = self.consumed();
        self.rate().sample(now, consumed);
    }

    pub(super) fn events_per_second(&self, now: Instant) -> f64 {
        let consumed = self.consumed();
        self.rate().per_second(now, consumed)
    }

    fn rate(&self) -> std::sync::MutexGuard<'_, RateWindow> {
        // Samples are plain numbers: a panic elsewhere cannot leave them half-written.
        self.rate.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Samples of a running total, about one per [`RATE_SAMPLE_EVERY`], going back a little more
/// than [`RATE_WINDOW`].
#[derive(Debug, Default)]
struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    fn sample(&mut self, now: Instant, total: u64) {
        let due = self
            .samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= RATE_SAMPLE_EVERY);
        if !due {
            return;
        }
        self.samples.push_back((now, total));
        // Keep one sample at least a window old (the base of the rate), none older.
        while self
            .samples
            .get(1)
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// The rate from the oldest sample to `total` now: over the last window once the node
    /// has run that long, over its whole run before.
    fn per_second(&self, now: Instant, total: u64) -> f64 {
        let Some((at, base)) = self.samples.front() else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        if elapsed <= 0.0 {
            return 0.0;
        }
        total.saturating_sub(*base) as f64 / elapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_covers_the_last_window_of_samples() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        // 1,000 events per second for 10 s, then 5,000 per second for 10 s.
        let mut total = 0;
        for second in 0..=20u64 {
            window.sample(start + Duration::from_secs(second), total);
            total += if second < 10 { 1_000 } else { 5_000 };
        }
        let now = start + Duration::from_secs(20);
        let rate = window.per_second(now, total - 5_000);
        assert!((rate - 5_000.0).abs() < 1e-9, "{rate}");
        assert!(
            window.samples.len() <= 7,
            "{} samples",
            window.samples.len()
        );
    }

    #[test]
    fn the_rate_before_a_full_window_is_over_the_run_so_far() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        assert_eq!(window.per_second(start, 100), 0.0, "no sample yet");
        window.sample(start, 0);
        window.sample(start + Duration::from_millis(300), 10);
        assert_eq!(window.samples.len(), 1, "samples are a second apart");
        let rate = window.per_second(start + Duration::from_secs(2), 600);
        assert!((rate - 300.0).abs() < 1e-9, "{rate}");
    }

    #[test]
    fn batch_tallies_add_up_per_kind() {
        let counters = WorkCounters::default();
        let mut tally = BatchTally {
            counted: 7,
            ..BatchTally::default()
        };
        tally.reject(InvalidKind::Json);
        tally.reject(InvalidKind::Json);
        tally.reject(InvalidKind::Timestamp);
        counters.add(&tally);
        counters.add(&tally);
        assert_eq!(counters.counted(), 14);
        let rejected = counters.rejected();
        assert!(rejected.contains(&(InvalidKind::Json, 4)), "{rejected:?}");
        assert!(
            rejected.contains(&(InvalidKind::Timestamp, 2)),
            "{rejected:?}"
        );
        assert!(
            rejected.contains(&(InvalidKind::NoValue, 0)),
            "{rejected:?}"
        );
        assert_eq!(counters.consumed(), 20);
    }
}
