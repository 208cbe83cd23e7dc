//! The device-event generator (`freshet generate`, `POST /api/v1/generator/jobs`, the
//! old generator's `GET /start`, see `docs/REFERENCE.md`).
//!
//! A run builds a pool of `num_devices` distinct addresses from a seed, then sends
//! `num_messages` events to `device-events`, each from a device picked at random (or in turn,
//! with `round_robin`), keyed by its address. It counts what the broker acknowledged, and how many distinct devices those
//! acknowledged events came from: the ground truth the tracker's count is checked against.
//!
//! - [`params`]: what a run is asked to do (including the codec its batches are compressed
//!   with, none by default), and its limits.
//! - [`jobs`]: runs in the background for the HTTP API, with progress and cancellation.

mod error;
mod format;
pub mod jobs;
pub mod params;
mod pool;
mod send;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, Producer};
use serde::Serialize;
use utoipa::ToSchema;

pub use error::GeneratorError;
pub use jobs::{GeneratorJobs, JobState, JobStatus};
pub use params::{random_seed, Compression, GeneratorParams, UnknownCompression};

use crate::kafka::{ensure_topic, TopicSpec};
use crate::KafkaConfig;
use format::{now_micros, EventBuffer, TimestampForm};
use pool::{DevicePool, SplitMix64};
use send::{create_producer, flush, queue_event, Deliveries, Pacer};

/// Partitions of the events topic when the generator creates it.
pub const DEFAULT_PARTITIONS: i32 = 3;
/// Events queued between two polls when nothing else makes the generator poll: often enough
/// to keep delivery reports (and progress) flowing, rarely enough to cost nothing.
const POLL_EVERY: u64 = 1024;
/// How long to wait for the topic's metadata before sending.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// A run's counters, readable from other threads while it runs, and its cancel switch.
#[derive(Debug, Default)]
pub struct JobProgress {
    /// Events handed to the producer.
    pub(crate) queued: AtomicU64,
    /// Events the broker acknowledged.
    pub(crate) sent: AtomicU64,
    /// Events that could not be delivered.
    pub(crate) failed: AtomicU64,
    /// Distinct devices among the acknowledged events.
    pub(crate) distinct_ips: AtomicU64,
    cancelled: AtomicBool,
    /// When the first event was about to be queued (after the topic and its metadata were
    /// ready): what the sending rate is measured from.
    sending_since: OnceLock<Instant>,
}

impl JobProgress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop: it queues nothing more, waits for what it queued, and returns
    /// its summary.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub fn distinct_ips(&self) -> u64 {
        self.distinct_ips.load(Ordering::Relaxed)
    }

    /// Notes that sending starts now; later calls change nothing.
    pub fn mark_sending(&self) {
        let _ = self.sending_since.set(Instant::now());
    }

    /// When sending started (`None` before the run got there).
    pub fn sending_since(&self) -> Option<Instant> {
        self.sending_since.get().copied()
    }
}

/// What a finished (or cancelled) run sent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GeneratorSummary {
    /// Events the broker acknowledged.
    pub sent: u64,
    /// Distinct device addresses among the acknowledged events (exact).
    pub distinct_ips: u64,
    /// Events that could not be delivered.
    pub failed: u64,
    /// Seed of the run: pass it again to send the same events (timestamps aside).
    pub seed: u64,
    /// Milliseconds from the first send until every event was acknowledged or failed.
    pub elapsed_ms: u64,
    /// Acknowledged events per second over `elapsed_ms`.
    pub events_per_sec: f64,
    /// Topic the events went to.
    pub topic: String,
}

/// Runs the generator on the calling thread until every event is acknowledged or failed, or
/// until `progress` is cancelled (then it waits for what it queued). Creates the topic first
/// if it is missing.
pub fn run(
    kafka: &KafkaConfig,
    params: &GeneratorParams,
    progress: &JobProgress,
) -> Result<GeneratorSummary, GeneratorError> {
    params.validate()?;
    let seed = params.seed.unwrap_or_else(random_seed);
    let mut rng = SplitMix64::new(seed);
    let pool = build_pool(params, &mut rng)?;
    // Created first so that connecting and obtaining a producer id overlap with creating the
    // topic; the metadata request then waits until the producer knows the new topic's
    // leaders, which would otherwise hold the first batch back for a refresh interval.
    let producer = create_producer(
        kafka,
        params.compression,
        Deliveries::new(progress, pool.len()),
    )?;
    ensure_topic_blocking(kafka, &params.topic)?;
    producer
        .client()
        .fetch_metadata(Some(&params.topic), METADATA_TIMEOUT)
        .map_err(|source| GeneratorError::Metadata {
            topic: params.topic.clone(),
            source,
        })?;
    let started = Instant::now();
    progress.mark_sending();
    send_events(&producer, params, &pool, &mut rng.fork(), progress)?;
    flush(&producer)?;
    let elapsed = started.elapsed();
    Ok(summarize(progress, seed, elapsed, &params.topic))
}

/// Creates the topic on a current-thread runtime of its own, on a thread of its own: the
/// caller may be a plain thread or a thread inside some other runtime, where blocking on a
/// new runtime would panic.
fn ensure_topic_blocking(kafka: &KafkaConfig, topic: &str) -> Result<(), GeneratorError> {
    let spec = TopicSpec {
        name: topic,
        partitions: DEFAULT_PARTITIONS,
        configs: &[],
    };
    std::thread::scope(|scope| {
        let setup = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| GeneratorError::Start {
                    what: "a runtime to create the topic",
                    source,
                })?;
            Ok(runtime.block_on(ensure_topic(kafka, &spec))?)
        });
        setup.join().unwrap_or_else(|_| {
            Err(GeneratorError::TopicPanicked {
                topic: topic.to_string(),
            })
        })
    })
}

fn build_pool(
    params: &GeneratorParams,
    rng: &mut SplitMix64,
) -> Result<DevicePool, GeneratorError> {
    let too_many = || GeneratorError::InvalidParams("num_devices does not fit in memory".into());
    let v6 = usize::try_from(params.ipv6_devices()).map_err(|_| too_many())?;
    let all = usize::try_from(params.num_devices).map_err(|_| too_many())?;
    Ok(DevicePool::generate(rng, all - v6, v6))
}

/// The sending loop: one event per turn, paced, until all are queued or the run is cancelled.
fn send_events(
    producer: &BaseProducer<Deliveries<'_>>,
    params: &GeneratorParams,
    pool: &DevicePool,
    rng: &mut SplitMix64,
    progress: &JobProgress,
) -> Result<(), GeneratorError> {
    let devices = pool.len() as u64;
    let mut pacer = Pacer::new(params.pause_ms, params.rate);
    let mut event = EventBuffer::default();
    for queued in 1..=params.num_messages {
        if !wait_for_turn(producer, &mut pacer, progress) {
            break;
        }
        let device = if params.round_robin {
            ((queued - 1) % devices) as usize
        } else {
            rng.below(devices) as usize
        };
        let form = TimestampForm::ALL[rng.below(TimestampForm::ALL.len() as u64) as usize];
        let error_code = rng.below(u64::from(crate::event::MAX_ERROR_CODE) + 1) as u8;
        event.render(form, now_micros(), pool.get(device), error_code);
        let topic = &params.topic;
        if !queue_event(
            producer,
            topic,
            event.key(),
            event.value(),
            device,
            progress,
        )? {
            break;
        }
        progress.queued.store(queued, Ordering::Relaxed);
        pacer.sent(Instant::now());
        if queued % POLL_EVERY == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    Ok(())
}

/// Waits until the pacer lets the next event go, serving delivery reports meanwhile. Returns
/// false when the run was cancelled.
fn wait_for_turn(
    producer: &BaseProducer<Deliveries<'_>>,
    pacer: &mut Pacer,
    progress: &JobProgress,
) -> bool {
    loop {
        if progress.is_cancelled() {
            return false;
        }
        let wait = pacer.wait(Instant::now());
        if wait.is_zero() {
            return true;
        }
        // Bounded so a cancel during a long pause is noticed quickly.
        producer.poll(wait.min(Duration::from_millis(100)));
    }
}

fn summarize(
    progress: &JobProgress,
    seed: u64,
    elapsed: Duration,
    topic: &str,
) -> GeneratorSummary {
    let sent = progress.sent();
    let seconds = elapsed.as_secs_f64();
    GeneratorSummary {
        sent,
        distinct_ips: progress.distinct_ips(),
        failed: progress.failed(),
        seed,
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        events_per_sec: if seconds > 0.0 {
            sent as f64 / seconds
        } else {
            0.0
        },
        topic: topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_event;

    /// Renders events exactly as the sending loop does, without a broker.
    fn render_events(seed: u64, params: &GeneratorParams, count: usize) -> Vec<(Vec<u8>, usize)> {
        let mut rng = SplitMix64::new(seed);
        let pool = build_pool(params, &mut rng).expect("pool");
        let mut rng = rng.fork();
        let mut event = EventBuffer::default();
        (0..count)
            .map(|_| {
                let device = rng.below(pool.len() as u64) as usize;
                let form = TimestampForm::ALL[rng.below(7) as usize];
                let code = rng.below(11) as u8;
                event.render(form, now_micros(), pool.get(device), code);
                assert_eq!(event.key(), pool.get(device).to_ip().to_string().as_bytes());
                (event.value().to_vec(), device)
            })
            .collect()
    }

    #[test]
    fn hundred_thousand_generated_events_all_parse_back() {
        let params = GeneratorParams {
            num_devices: 5000,
            ipv6_percent: 30,
            ..GeneratorParams::default()
        };
        let mut rng = SplitMix64::new(99);
        let pool = build_pool(&params, &mut rng).expect("pool");
        let mut rng = rng.fork();
        let mut event = EventBuffer::default();
        let mut codes_seen = [false; 11];
        let mut v6_events = 0;
        for _ in 0..100_000 {
            let device = rng.below(pool.len() as u64) as usize;
            let form = TimestampForm::ALL[rng.below(7) as usize];
            let code = rng.below(11) as u8;
            let micros = now_micros();
            event.render(form, micros, pool.get(device), code);
            let parsed = parse_event(Some(event.value()))
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(event.value())));
            assert_eq!(parsed.ip, pool.get(device).to_ip());
            assert_eq!(parsed.error_code, code);
            // Every form carries at least whole seconds of the generation time.
            assert_eq!(parsed.time_ms / 1000, (micros / 1_000_000) as i64);
            codes_seen[usize::from(code)] = true;
            v6_events += usize::from(parsed.ip.is_ipv6());
        }
        assert!(codes_seen.iter().all(|&seen| seen));
        assert!((25_000..35_000).contains(&v6_events), "{v6_events}");
    }

    #[test]
    fn same_seed_same_events_apart_from_time() {
        let params = GeneratorParams::default();
        let strip = |events: Vec<(Vec<u8>, usize)>| -> Vec<(String, usize)> {
            events
                .into_iter()
                .map(|(value, device)| {
                    let text = String::from_utf8(value).expect("utf8");
                    let rest = text.split("\", \"device_ip\"").nth(1).expect("shape");
                    (rest.to_string(), device)
                })
                .collect()
        };
        let first = strip(render_events(1, &params, 1000));
        assert_eq!(first, strip(render_events(1, &params, 1000)));
        assert_ne!(first, strip(render_events(2, &params, 1000)));
    }

    #[test]
    fn invalid_params_are_refused_before_connecting() {
        let params = GeneratorParams {
            ipv6_percent: 200,
            ..GeneratorParams::default()
        };
        // Nothing listens on port 1: reaching the broker would fail differently.
        let kafka = KafkaConfig::new("127.0.0.1:1");
        match run(&kafka, &params, &JobProgress::new()) {
            Err(GeneratorError::InvalidParams(reason)) => assert!(reason.contains("ipv6_percent")),
            other => panic!("{other:?}"),
        }
    }
}
