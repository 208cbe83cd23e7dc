//! The producer side: librdkafka settings for throughput, delivery accounting and pacing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::{Compression, GeneratorError, JobProgress};
use crate::kafka::CreateClient;
use crate::KafkaConfig;

/// How long librdkafka keeps retrying a record before reporting it failed.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Flushing waits for every queued record to be acknowledged or to time out, so it can take
/// up to one message timeout; the margin covers the last request's round trip.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(90);

/// The generator's producer: durable (acks=all, idempotent: retries neither duplicate nor
/// reorder, so `sent` is exact), built for throughput, and compressing its batches with
/// `compression`.
pub(crate) fn create_producer<'a>(
    kafka: &KafkaConfig,
    compression: Compression,
    deliveries: Deliveries<'a>,
) -> Result<BaseProducer<Deliveries<'a>>, GeneratorError> {
    let mut config = kafka.durable_producer_config("generator");
    config
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        // Wait up to 5 ms to fill large batches: a few hundred events per request instead of
        // one keeps the broker's per-request work (and fsyncs) from being the limit.
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        // The run's choice, `none` unless asked: events are repetitive JSON that lz4 would
        // shrink about 3x, but a consumer without that codec cannot read them at all
        // (kafka-python needs an optional package for lz4, snappy and zstd).
        .set("compression.type", compression.name())
        // Room for ~0.5 s at full speed, so sending never waits on a single slow fsync.
        .set("queue.buffering.max.messages", "500000")
        .set("queue.buffering.max.kbytes", "1048576");
    Ok(config.create_client_with(deliveries)?)
}

/// Counts delivery reports into the job's progress and marks which devices had an event
/// acknowledged. Reports are served on the sending thread, when it polls.
#[derive(Debug)]
pub(crate) struct Deliveries<'a> {
    progress: &'a JobProgress,
    /// One bit per device: set once an event of that device is acknowledged.
    acknowledged_devices: Vec<AtomicU64>,
    first_failure: Once,
}

impl<'a> Deliveries<'a> {
    pub(crate) fn new(progress: &'a JobProgress, devices: usize) -> Self {
        Deliveries {
            progress,
            acknowledged_devices: (0..devices.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            first_failure: Once::new(),
        }
    }

    fn acknowledge(&self, device: usize) {
        let word = &self.acknowledged_devices[device / 64];
        let bit = 1u64 << (device % 64);
        // A plain load first: most events come from devices already seen, and a load is much
        // cheaper than the locked read-modify-write.
        if word.load(Ordering::Relaxed) & bit == 0
            && word.fetch_or(bit, Ordering::Relaxed) & bit == 0
        {
            self.progress.distinct_ips.fetch_add(1, Ordering::Relaxed);
        }
        self.progress.sent.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, error: &KafkaError, topic: &str, partition: i32) {
        self.progress.failed.fetch_add(1, Ordering::Relaxed);
        // One line is enough to say why; a dead broker would otherwise log every record.
        self.first_failure.call_once(|| {
            tracing::warn!(%error, topic, partition, "generator: an event was not delivered");
        });
    }
}

impl ClientContext for Deliveries<'_> {}

impl ProducerContext for Deliveries<'_> {
    /// The device index of the event.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, device: usize) {
        match result {
            Ok(_) => self.acknowledge(device),
            Err((error, message)) => self.fail(error, message.topic(), message.partition()),
        }
    }
}

/// Queues one event, waiting for room when librdkafka's queue is full (serving delivery
/// reports frees it). Gives up only when the job is cancelled while waiting, or on an error
/// other than a full queue. Returns whether the event was queued.
pub(crate) fn queue_event(
    producer: &BaseProducer<Deliveries<'_>>,
    topic: &str,
    key: &[u8],
    value: &[u8],
    device: usize,
    progress: &JobProgress,
) -> Result<bool, GeneratorError> {
    let mut record = BaseRecord::with_opaque_to(topic, device)
        .key(key)
        .payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                if progress.is_cancelled() {
                    return Ok(false);
                }
                producer.poll(Duration::from_millis(1));
                record = returned;
            }
            Err((source, _)) => {
                return Err(GeneratorError::Queue {
                    topic: topic.to_string(),
                    source,
                })
            }
        }
    }
}

/// Waits until every queued event is acknowledged or failed and its report served. Unlike
/// rdkafka's `flush`, which polls in 100 ms steps, this notices the end within a millisecond,
/// so short runs report their real duration.
pub(crate) fn flush(producer: &BaseProducer<Deliveries<'_>>) -> Result<(), GeneratorError> {
    let deadline = Instant::now() + FLUSH_TIMEOUT;
    while producer.in_flight_count() > 0 {
        if Instant::now() >= deadline {
            return Err(GeneratorError::FlushTimeout {
                in_flight: producer.in_flight_count(),
                within: FLUSH_TIMEOUT,
            });
        }
        producer.poll(Duration::from_millis(1));
    }
    Ok(())
}

/// When each event is due: after the pause since the last send, and no sooner than the rate
/// allows. Either, both or neither may be set; with both, the slower one sets the pace.
#[derive(Debug)]
pub(crate) struct Pacer {
    pause: Option<Pause>,
    rate: Option<Rate>,
}

/// A fixed pause after each send, like the old generator's.
#[derive(Debug)]
struct Pause {
    pause: Duration,
    next: Instant,
}

/// A steady rate: event `n` after the anchor is due `n / rate` seconds after it. Falling
/// behind by more than [`MAX_LAG`] moves the anchor, so a stall (a full queue, a slow broker)
/// is not followed by an unbounded burst.
#[derive(Debug)]
struct Rate {
    per_second: f64,
    anchor: Instant,
    since_anchor: u64,
}

/// How far a rate-paced run may fall behind before it stops trying to catch up.
const MAX_LAG: Duration = Duration::from_millis(100);
/// Shortest wait worth sleeping for. At high rates the gap between two events is a few
/// microseconds; instead of spinning per event, the pacer sleeps at least this long and then
/// sends every event that fell due meanwhile back to back.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// When event `n` after `anchor` is due at `per_second`; `None` when that is too far away
/// to represent. Validation keeps rates where this never happens, but a panic in the pacer
/// would take the whole job down, so it is not left to validation alone.
fn due_at(anchor: Instant, n: u64, per_second: f64) -> Option<Instant> {
    if n == 0 {
        return Some(anchor);
    }
    let seconds = Duration::try_from_secs_f64(n as f64 / per_second).ok()?;
    anchor.checked_add(seconds)
}

impl Pacer {
    pub(crate) fn new(pause_ms: u64, rate: Option<f64>) -> Self {
        let now = Instant::now();
        Pacer {
            pause: (pause_ms > 0).then(|| Pause {
                pause: Duration::from_millis(pause_ms),
                next: now,
            }),
            rate: rate.map(|per_second| Rate {
                per_second,
                anchor: now,
                since_anchor: 0,
            }),
        }
    }

    /// How long to wait before the next event may go; zero when it is due.
    pub(crate) fn wait(&mut self, now: Instant) -> Duration {
        let pause = self.pause.as_ref().map_or(Duration::ZERO, |pause| {
            pause.next.saturating_duration_since(now)
        });
        let rate = self
            .rate
            .as_mut()
            .map_or(Duration::ZERO, |rate| rate.wait(now));
        pause.max(rate)
    }

    /// Records that an event went out at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        if let Some(pause) = &mut self.pause {
            pause.next = now + pause.pause;
        }
        if let Some(rate) = &mut self.rate {
            rate.since_anchor += 1;
        }
    }
}

impl Rate {
    fn wait(&mut self, now: Instant) -> Duration {
        let Some(due) = due_at(self.anchor, self.since_anchor, self.per_second) else {
            // Further away than a clock can count: never, for any run.
            return Duration::MAX;
        };
        if now.saturating_duration_since(due) > MAX_LAG {
            self.anchor = now;
            self.since_anchor = 0;
            return Duration::ZERO;
        }
        let wait = due.saturating_duration_since(now);
        if wait.is_zero() {
            wait
        } else {
            wait.max(MIN_WAIT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_waits_after_each_send() {
        let mut pacer = Pacer::new(100, None);
        let start = Instant::now();
        assert_eq!(pacer.wait(start), Duration::ZERO);
        pacer.sent(start);
        assert_eq!(
            pacer.wait(start + Duration::from_millis(30)),
            Duration::from_millis(70)
        );
        assert_eq!(
            pacer.wait(start + Duration::from_millis(100)),
            Duration::ZERO
        );
    }

    #[test]
    fn rate_releases_due_events_in_bursts_and_never_spins() {
        let mut pacer = Pacer::new(0, Some(100_000.0));
        let start = pacer.rate.as_ref().expect("paced by rate").anchor;
        // 1 ms in, events 0..100 are due (10 µs apart) and go without waiting.
        let later = start + Duration::from_millis(1);
        for _ in 0..=100 {
            assert_eq!(pacer.wait(later), Duration::ZERO);
            pacer.sent(later);
        }
        // The next is due 10 µs later, but the pacer sleeps at least a millisecond.
        assert_eq!(pacer.wait(later), MIN_WAIT);
    }

    #[test]
    fn rate_does_not_burst_after_a_stall() {
        let mut pacer = Pacer::new(0, Some(1000.0));
        let start = Instant::now();
        let stalled = start + Duration::from_secs(5);
        assert_eq!(pacer.wait(stalled), Duration::ZERO);
        pacer.sent(stalled);
        // Re-anchored at the stall: the next event is due 1 ms later, not at once.
        assert_eq!(pacer.wait(stalled), MIN_WAIT);
    }

    #[test]
    fn rates_too_slow_for_any_clock_wait_instead_of_panicking() {
        for rate in [1e-300, f64::MIN_POSITIVE, 0.0, -1.0, f64::NAN] {
            let mut pacer = Pacer::new(0, Some(rate));
            let start = Instant::now();
            assert_eq!(
                pacer.wait(start),
                Duration::ZERO,
                "the first event is due at once"
            );
            pacer.sent(start);
            let wait = pacer.wait(start);
            assert!(wait > Duration::from_secs(3600), "rate {rate}: {wait:?}");
        }
    }

    #[test]
    fn no_pause_no_rate_is_unpaced() {
        let mut pacer = Pacer::new(0, None);
        assert!(pacer.pause.is_none() && pacer.rate.is_none());
        let now = Instant::now();
        assert_eq!(pacer.wait(now), Duration::ZERO);
        pacer.sent(now);
        assert_eq!(pacer.wait(now), Duration::ZERO);
    }

    #[test]
    fn with_a_pause_and_a_rate_the_slower_sets_the_pace() {
        // 10 ms pause but at most 20 events a second: 50 ms apart.
        let mut slow_rate = Pacer::new(10, Some(20.0));
        let start = slow_rate.rate.as_ref().expect("rate").anchor;
        assert_eq!(slow_rate.wait(start), Duration::ZERO);
        slow_rate.sent(start);
        assert_eq!(slow_rate.wait(start), Duration::from_millis(50));
        // 200 ms pause and up to 1000 a second: 200 ms apart.
        let mut slow_pause = Pacer::new(200, Some(1000.0));
        let start = slow_pause.rate.as_ref().expect("rate").anchor;
        slow_pause.sent(start);
        assert_eq!(slow_pause.wait(start), Duration::from_millis(200));
    }
}
