//! `freshet bench pipeline`: events per second through broker → tracker, and the tracker's
//! resident memory per distinct address.
//!
//! The broker (unless `--bootstrap-servers` is given) and every tracker node are child
//! processes of this binary; the events come from the real device-event generator, run in
//! this process. Each tracker run counts a topic of its own: checkpoints are kept per input
//! topic, so a second node on a topic already counted would resume from the first one's
//! checkpoints instead of reading the events.
//!
//! A count only counts when it is exact: the tracker must report every generated event and
//! exactly as many distinct addresses as the generator acknowledged, or the benchmark fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use freshet_services::generator::{
    self, Compression, GeneratorParams, GeneratorSummary, JobProgress,
};
use freshet_services::{GeneratorError, KafkaConfig};
use indicatif::ProgressBar;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::broker::{client, create_topics, progress};
use super::child::{http_get, ChildBroker, FreshetChild};

mod state_topic;

/// The end-to-end target: 1,000,000 events/s from generator to exact count, on a 2-core
/// machine (see docs/BENCHMARKS.md).
const TARGET_EVENTS_PER_S: f64 = 1_000_000.0;
/// The memory targets, bytes of tracker memory per distinct IPv4 address: with the overall
/// set alone, and with the views too (issue 13's).
const TARGET_BYTES_PER_ADDRESS: f64 = 4.0;
const TARGET_BYTES_PER_ADDRESS_WITH_VIEWS: f64 = 8.0;
/// The tracker, views on, must count a filled topic at least this fast relative to a consumer
/// on the same settings that does nothing.
const TARGET_TRACKER_VS_BARE: f64 = 0.8;
/// Fixed so every run sends the same devices and choices (timestamps aside).
const SEED: u64 = 42;
/// How often a tracker's count is read while waiting for it to become exact.
const POLL: Duration = Duration::from_millis(20);
/// How long an idle tracker runs after joining its group before its baseline is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// Once the checkpoints cover every event, resident memory is read every `SETTLE_STEP` until
/// `SETTLED_SAMPLES` readings in a row agree within 1%, at least `CHECKPOINT_SETTLE` and at
/// most `SETTLE_WAIT` after: the checkpointed deltas are freed by then, and the allocators
/// hand their pages back over a few seconds (mimalloc purges after 1 s, the heap trimmer runs
/// every 2 s, a snapshot due at the last checkpoint frees its buffers once acknowledged). A
/// fixed 3 s read the memory before the trimmer's pass in some runs and after it in others.
const CHECKPOINT_SETTLE: Duration = Duration::from_secs(3);
const SETTLE_STEP: Duration = Duration::from_secs(1);
const SETTLED_SAMPLES: usize = 3;
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for the checkpoints to cover every event once the count is exact.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(60);
/// Slowest counting rate still waited for, so a stuck tracker fails the run instead of
/// hanging it.
const SLOWEST_EVENTS_PER_S: u64 = 20_000;

#[derive(Debug, Clone, Args)]
pub struct PipelineBenchArgs {
    /// Events per throughput run.
    #[arg(long, env = "FRESHET_BENCH_EVENTS", default_value_t = 10_000_000)]
    pub events: u64,
    /// Devices the throughput runs' events come from (each event from one picked at random).
    #[arg(long, env = "FRESHET_BENCH_DEVICES", default_value_t = 1_000_000)]
    pub devices: u64,
    /// Random IPv4 devices of the memory run; each sends one event (round robin), so the
    /// tracker counts exactly this many distinct addresses.
    #[arg(long, env = "FRESHET_BENCH_DISTINCT", default_value_t = 10_000_000)]
    pub distinct: u64,
    /// Partitions of each benchmark topic.
    #[arg(long, env = "FRESHET_BENCH_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub partitions: i32,
    /// Use this Kafka-compatible cluster instead of starting a fresh Freshet broker.
    #[arg(long, env = "FRESHET_BENCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Print each result as a JSON line as well.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
    /// Skip the memory runs (they generate `--distinct` more events twice).
    #[arg(long, env = "FRESHET_BENCH_SKIP_MEMORY")]
    pub skip_memory: bool,
    /// Rounds of the state-topic run: each sends one event per device (`--devices`) in a new
    /// minute and hour, to a tracker keeping two of each.
    #[arg(long, env = "FRESHET_BENCH_STATE_ROUNDS", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub state_rounds: u32,
    /// Skip the state-topic run.
    #[arg(long, env = "FRESHET_BENCH_SKIP_STATE")]
    pub skip_state: bool,
    /// Skip the throughput and end-to-end runs (memory runs only).
    #[arg(
        long,
        env = "FRESHET_BENCH_SKIP_THROUGHPUT",
        conflicts_with = "skip_memory"
    )]
    pub skip_throughput: bool,
}

pub fn run(args: PipelineBenchArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let broker = match &args.bootstrap_servers {
        Some(_) => None,
        // A new group waits 100 ms for more members instead of 3 s, which would otherwise
        // count as tracker time. Not 0: a node's workers join within about 10 ms of each
        // other, and at 0 the first forms the group alone, counts every partition until the
        // rebalance the second one starts, and the group forms again about 0.6 s later.
        // The cleaner runs every second instead of every 30, so the state-topic run sees
        // compaction within seconds.
        None => Some(ChildBroker::start(&[
            "--group-initial-rebalance-delay-ms",
            "100",
            "--log-cleanup-interval-ms",
            "1000",
        ])?),
    };
    let bootstrap = match (&args.bootstrap_servers, &broker) {
        (Some(servers), _) => servers.clone(),
        (None, Some(broker)) => broker.addr().to_string(),
        (None, None) => bail!("no broker to run against"),
    };
    let bench = Bench::new(&args, bootstrap);
    bench.print_header(broker.is_some());
    if !args.skip_throughput {
        bench.throughput_runs()?;
        bench.end_to_end_run()?;
    }
    if !args.skip_state {
        bench.state_topic_run()?;
    }
    if !args.skip_memory {
        bench.memory_runs()?;
    }
    Ok(())
}

fn check_args(args: &PipelineBenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.devices == 0 || args.distinct == 0 {
        bail!("--events, --devices and --distinct must be above 0");
    }
    for (name, devices) in [("--devices", args.devices), ("--distinct", args.distinct)] {
        if devices > generator::params::MAX_NUM_DEVICES {
            bail!(
                "{name} {devices} is more than the generator's {} devices",
                generator::params::MAX_NUM_DEVICES
            );
        }
    }
    Ok(())
}

/// Tracker settings compared in the runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Views {
    /// Per-minute, per-hour and per-error-code sets besides the overall one (the default).
    On,
    /// Only the overall set.
    Off,
}

impl Views {
    fn flag(self) -> &'static str {
        match self {
            Views::On => "true",
            Views::Off => "false",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Views::On => "views",
            Views::Off => "no views",
        }
    }

    /// The memory target, bytes per distinct address.
    fn bytes_per_address_target(self) -> f64 {
        match self {
            Views::On => TARGET_BYTES_PER_ADDRESS_WITH_VIEWS,
            Views::Off => TARGET_BYTES_PER_ADDRESS,
        }
    }
}

/// One benchmark run's settings and the names it gives its topics and groups.
#[derive(Debug)]
struct Bench<'a> {
    args: &'a PipelineBenchArgs,
    bootstrap: String,
    /// Distinguishes this run's topics and groups from earlier runs on the same cluster.
    run_id: String,
    next_name: std::cell::Cell<u32>,
}

/// What the generator acknowledged: the ground truth a tracker must report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Truth {
    events: u64,
    distinct: u64,
}

impl Truth {
    fn of(summary: &GeneratorSummary) -> Truth {
        Truth {
            events: summary.sent,
            distinct: summary.distinct_ips,
        }
    }
}

/// A tracker's counters as its HTTP API reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Counted {
    events: u64,
    rejected: u64,
    distinct: u64,
    partitions_owned: usize,
}

/// The bare consumers' times on a topic: one consumer alone, and one per tracker worker.
struct BareTimes {
    one: CountTime,
    per_worker: Option<CountTime>,
}

/// What bare consumers reading one topic together have seen.
#[derive(Default)]
struct BareRead {
    seen: AtomicU64,
    first: OnceLock<Instant>,
    last: OnceLock<Instant>,
}

impl BareRead {
    /// Records seen per addition to the shared count: an addition per record would make the
    /// consumers' threads contend on it, which the tracker's workers never do.
    const TALLY: u64 = 1024;

    /// Polls until the consumers together have seen `events` records, or `deadline`.
    fn read_all(
        &self,
        consumer: &BaseConsumer,
        events: u64,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let mut unseen = 0u64;
        while self.seen.load(Ordering::Relaxed) < events {
            match consumer.poll(Duration::from_millis(10)) {
                Some(Ok(_)) => {
                    self.first.get_or_init(Instant::now);
                    unseen += 1;
                    if unseen == Self::TALLY {
                        self.tally(&mut unseen, events);
                    }
                }
                Some(Err(e)) => bail!("{e}"),
                None if Instant::now() > deadline => {
                    bail!(
                        "read {} of {events} records in time",
                        self.seen.load(Ordering::Relaxed)
                    )
                }
                None => self.tally(&mut unseen, events),
            }
        }
        Ok(())
    }

    fn tally(&self, unseen: &mut u64, events: u64) {
        if *unseen == 0 {
            return;
        }
        let seen = self.seen.fetch_add(*unseen, Ordering::Relaxed) + *unseen;
        *unseen = 0;
        if seen >= events {
            self.last.get_or_init(Instant::now);
        }
    }
}

/// How long a tracker took to count a topic exactly.
#[derive(Debug)]
struct CountTime {
    /// From the instant the clock started (spawn or generator start) until exact.
    total: Duration,
    /// From the first poll that saw a nonzero count until exact, with the events counted in
    /// that span; `None` when everything appeared in one poll.
    from_first: Option<(Duration, u64)>,
}

impl<'a> Bench<'a> {
    fn new(args: &'a PipelineBenchArgs, bootstrap: String) -> Bench<'a> {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Bench {
            args,
            bootstrap,
            run_id: format!("{}-{:x}", std::process::id(), millis),
            next_name: std::cell::Cell::new(0),
        }
    }

    fn fresh_name(&self, what: &str) -> String {
        let n = self.next_name.get() + 1;
        self.next_name.set(n);
        format!("bench-{what}-{}-{n}", self.run_id)
    }

    fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(&self.bootstrap)
    }

    fn print_header(&self, child_broker: bool) {
        let broker = if child_broker {
            "a fresh freshet broker child process"
        } else {
            "the given cluster"
        };
        println!(
            "pipeline: broker {} ({broker}), {} partitions, generator seed {SEED}",
            self.bootstrap, self.args.partitions
        );
        println!(
            "{:<34} {:>10} {:>8} {:>12} {:>9}",
            "run", "events", "seconds", "events/s", "x target"
        );
    }

    /// Generate, then count with and without views; each tracker gets a topic of its own
    /// with the same events (same seed), and runs one worker per partition. With views, the
    /// same topic is also read by bare consumers (the anchor) and counted with one
    /// and with two workers.
    fn throughput_runs(&self) -> anyhow::Result<()> {
        for views in [Views::On, Views::Off] {
            let topic = self.fresh_topic("events")?;
            let summary = self.generate(&topic, self.args.events, self.args.devices, false)?;
            self.report_generate(
                &format!("generate (for {})", views.label()),
                self.args.devices,
                &summary,
            );
            let truth = Truth::of(&summary);
            let bare = match views {
                Views::On => Some(self.bare_consumer_runs(&topic, truth.events)?),
                Views::Off => None,
            };
            let workers = self.workers_per_partition();
            let time = self.workers_time(&topic, truth, views, workers)?;
            let tracker = format!("tracker ({})", views.label());
            self.report_count(&tracker, Some("spawn"), truth, &time);
            if let Some(bare) = bare {
                self.report_count("bare consumer", Some("creation"), truth, &bare.one);
                if let Some(per_worker) = &bare.per_worker {
                    let name = format!("{workers} bare consumers");
                    self.report_count(&name, Some("creation"), truth, per_worker);
                }
                self.report_tracker_vs_bare(truth.events, &time, &bare);
                let one = self.workers_time(&topic, truth, views, 1)?;
                self.report_count("tracker (views, 1 worker)", Some("spawn"), truth, &one);
                let two = self.workers_time(&topic, truth, views, 2)?;
                self.report_count("tracker (views, 2 workers)", Some("spawn"), truth, &two);
                self.report_workers(truth.events, &one, &two, (workers, &time));
            }
            self.delete_topic(&topic);
        }
        Ok(())
    }

    /// Worker threads of the main tracker runs: one per partition, the most that helps (each
    /// worker is a group member, and members beyond the partitions get none). Fewer leave
    /// one worker with more partitions than the others, counting alone at the end. A node
    /// runs at most 64.
    fn workers_per_partition(&self) -> u32 {
        u32::try_from(self.args.partitions.clamp(1, 64)).unwrap_or(1)
    }

    /// A tracker that already joined its group on an empty topic; then the generator starts,
    /// and the clock runs from its start until the tracker's count is exact.
    fn end_to_end_run(&self) -> anyhow::Result<()> {
        let topic = self.fresh_topic("e2e")?;
        let workers = self.workers_per_partition().to_string();
        let extra = ["--tracker-workers", workers.as_str()];
        let mut tracker = self.start_tracker(&topic, Views::On, &extra)?;
        self.wait_joined(&mut tracker)?;
        let params = generator_params(&topic, self.args.events, self.args.devices);
        let started = Instant::now();
        let job = Arc::new(JobProgress::new());
        let mut worker = Some(start_generator(self.kafka(), params, job)?);
        let mut summary = None;
        let mut truth_when_done = || -> anyhow::Result<Option<Truth>> {
            if worker.as_ref().is_some_and(JoinHandle::is_finished) {
                if let Some(handle) = worker.take() {
                    let finished = join_generator(handle, self.args.events)?;
                    summary = Some(finished);
                }
            }
            Ok(summary.as_ref().map(Truth::of))
        };
        let time = wait_exact(&mut tracker, started, &mut truth_when_done, "end to end")?;
        drop(tracker);
        let summary = summary.context("the generator's summary")?;
        self.report_generate("generate (beside the tracker)", self.args.devices, &summary);
        self.report_count("end to end (views)", None, Truth::of(&summary), &time);
        self.delete_topic(&topic);
        Ok(())
    }

    /// Resident memory per distinct address, with and without views.
    fn memory_runs(&self) -> anyhow::Result<()> {
        let workers = memory_run_workers().to_string();
        let extra = ["--tracker-workers", workers.as_str()];
        for views in [Views::On, Views::Off] {
            let idle = self.idle_resident_bytes(views, &extra)?;
            let topic = self.fresh_topic("memory")?;
            let summary = self.generate(&topic, self.args.distinct, self.args.distinct, true)?;
            let label = format!("memory ({})", views.label());
            self.report_generate(
                &format!("generate (memory, {})", views.label()),
                self.args.distinct,
                &summary,
            );
            let truth = Truth::of(&summary);
            let mut tracker = self.start_tracker(&topic, views, &extra)?;
            let spawned = tracker.spawned;
            wait_exact(&mut tracker, spawned, &mut || Ok(Some(truth)), &label)?;
            let counted = tracker.resident_bytes()?;
            // Until a checkpoint covers the last events their deltas are still held, and a
            // fixed wait after the count would read memory sometimes before and sometimes
            // after they are freed.
            wait_checkpointed(&mut tracker, truth.events, &label)?;
            let settled = wait_settled(&mut tracker)?;
            drop(tracker);
            let target = views.bytes_per_address_target();
            self.report_memory(
                &label,
                target,
                truth.distinct,
                idle,
                (counted, settled),
                &workers,
            );
            self.delete_topic(&topic);
        }
        Ok(())
    }

    /// A tracker's resident memory after joining its group on an empty topic and idling.
    fn idle_resident_bytes(&self, views: Views, extra: &[&str]) -> anyhow::Result<u64> {
        let topic = self.fresh_topic("idle")?;
        let mut tracker = self.start_tracker(&topic, views, extra)?;
        self.wait_joined(&mut tracker)?;
        std::thread::sleep(IDLE_SETTLE);
        tracker.check_running()?;
        let idle = tracker.resident_bytes()?;
        drop(tracker);
        self.delete_topic(&topic);
        Ok(idle)
    }

    fn fresh_topic(&self, what: &str) -> anyhow::Result<String> {
        let topic = self.fresh_name(what);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(create_topics(
            &self.bootstrap,
            &[&topic],
            self.args.partitions,
        ))?;
        Ok(topic)
    }

    /// Deletes a run's input topic and the tracker's topics for it, so a long benchmark does
    /// not keep gigabytes it no longer reads. Best effort: a failure is only reported.
    fn delete_topic(&self, topic: &str) {
        let dlq = format!("{topic}.dlq");
        // The tracker names its checkpoint topic after its group and input topic.
        let checkpoints = format!("freshet.tracker.{}.{topic}", tracker_group(topic));
        self.delete_topics_best_effort(&[topic, dlq.as_str(), checkpoints.as_str()]);
    }

    fn delete_topics_best_effort(&self, names: &[&str]) {
        let deleted = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|runtime| runtime.block_on(delete_topics(&self.bootstrap, names)));
        if let Err(e) = deleted {
            eprintln!("pipeline: could not delete {names:?}: {e:#}");
        }
    }

    /// Runs the generator to completion with a progress bar.
    fn generate(
        &self,
        topic: &str,
        events: u64,
        devices: u64,
        round_robin: bool,
    ) -> anyhow::Result<GeneratorSummary> {
        let job = Arc::new(JobProgress::new());
        let params = GeneratorParams {
            round_robin,
            ..generator_params(topic, events, devices)
        };
        let worker = start_generator(self.kafka(), params, Arc::clone(&job))?;
        let bar = progress(events, "generate");
        while !worker.is_finished() {
            bar.set_position(job.sent());
            std::thread::sleep(Duration::from_millis(100));
        }
        bar.finish_and_clear();
        join_generator(worker, events)
    }

    /// The rates the tracker is compared with: one bare consumer reading the whole topic,
    /// then (with more than one partition) one per tracker worker reading it together.
    fn bare_consumer_runs(&self, topic: &str, events: u64) -> anyhow::Result<BareTimes> {
        let one = self.bare_consumers_time(topic, events, 1)?;
        let workers = self.workers_per_partition();
        let per_worker = match workers {
            1 => None,
            n => Some(self.bare_consumers_time(topic, events, n)?),
        };
        Ok(BareTimes { one, per_worker })
    }

    /// How long `consumers` consumers with the tracker worker's settings
    /// ([`freshet_services::tracker::input_consumer_config`]), each on a thread of its own,
    /// take to read `events` records of `topic` together, doing nothing with them: from
    /// their creation, and from the first record, until the last. They join a group of their
    /// own, so the trackers still read everything afterwards.
    fn bare_consumers_time(
        &self,
        topic: &str,
        events: u64,
        consumers: u32,
    ) -> anyhow::Result<CountTime> {
        let group = format!("{}-bare-{consumers}", tracker_group(topic));
        let started = Instant::now();
        let read = BareRead::default();
        let bar = progress(events, "bare consumers");
        let limit = Duration::from_secs(60 + events / SLOWEST_EVENTS_PER_S);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let readers: Vec<_> = (0..consumers)
                .map(|_| {
                    let consumer: BaseConsumer = freshet_services::tracker::input_consumer_config(
                        &self.kafka(),
                        &group,
                        Duration::from_secs(10),
                        consumers as usize,
                    )
                    .create()
                    .context("creating a bare consumer")?;
                    consumer.subscribe(&[topic])?;
                    let read = &read;
                    Ok(scope.spawn(move || read.read_all(&consumer, events, started + limit)))
                })
                .collect::<anyhow::Result<_>>()?;
            while !readers.iter().all(|r| r.is_finished()) {
                bar.set_position(read.seen.load(Ordering::Relaxed));
                std::thread::sleep(POLL);
            }
            for reader in readers {
                reader
                    .join()
                    .map_err(|_| anyhow!("a bare consumer thread panicked"))?
                    .with_context(|| format!("bare consumers on {topic}"))?;
            }
            Ok(())
        })?;
        bar.finish_and_clear();
        let last = *read.last.get().context("the bare consumers' last record")?;
        let from_first = read
            .first
            .get()
            .map(|first| (last - *first, events.saturating_sub(1)));
        Ok(CountTime {
            total: last - started,
            from_first,
        })
    }

    /// The time for `workers` worker threads (views on) to count `topic` exactly, in a group
    /// of their own so they read everything again.
    fn workers_time(
        &self,
        topic: &str,
        truth: Truth,
        views: Views,
        workers: u32,
    ) -> anyhow::Result<CountTime> {
        let group = format!("{}-{workers}w", tracker_group(topic));
        let workers_arg = workers.to_string();
        let extra = ["--tracker-workers", workers_arg.as_str()];
        let mut tracker = self.start_tracker_in(topic, &group, views, &extra)?;
        let spawned = tracker.spawned;
        let what = format!("tracker (workers: {workers})");
        let time = wait_exact(&mut tracker, spawned, &mut || Ok(Some(truth)), &what)?;
        drop(tracker);
        self.delete_topics_best_effort(&[&format!("freshet.tracker.{group}.{topic}")]);
        Ok(time)
    }

    /// The rates with one, two and one worker per partition (views on, from spawn to exact).
    fn report_workers(
        &self,
        events: u64,
        one: &CountTime,
        two: &CountTime,
        all: (u32, &CountTime),
    ) {
        let (workers, all) = all;
        let rate = |time: &CountTime| per_second(events, time.total);
        let (one, two, all) = (rate(one), rate(two), rate(all));
        let ratio = two / one.max(1.0);
        let all_ratio = all / one.max(1.0);
        println!("{:<34} {ratio:.2}", "2 workers / 1 worker");
        println!(
            "{:<34} {all_ratio:.2}",
            format!("{workers} workers / 1 worker")
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": "pipeline tracker worker threads", "events": events,
                    "one_worker_events_per_s": one, "two_workers_events_per_s": two,
                    "ratio": ratio, "workers_per_partition": workers,
                    "workers_per_partition_events_per_s": all,
                    "workers_per_partition_ratio": all_ratio})
            );
        }
    }

    /// The tracker's rate (views on, from spawn to exact) against one bare consumer's (from
    /// creation to the last record), both including their start and group join; the same
    /// from each one's first record (the tracker's first nonzero count) to its last, which
    /// leaves out the tracker's process start and both group joins; and against as many bare
    /// consumers as the tracker has workers, the stricter anchor.
    fn report_tracker_vs_bare(&self, events: u64, tracker: &CountTime, bare: &BareTimes) {
        let tracker_rate = per_second(events, tracker.total);
        let bare_rate = per_second(events, bare.one.total);
        let ratio = tracker_rate / bare_rate.max(1.0);
        let steady_rate = |time: &CountTime| time.from_first.map(|(span, n)| per_second(n, span));
        let (tracker_steady, bare_steady) = (steady_rate(tracker), steady_rate(&bare.one));
        let steady_ratio = tracker_steady
            .zip(bare_steady)
            .map(|(tracker, bare)| tracker / bare.max(1.0));
        let per_worker_rate = bare
            .per_worker
            .as_ref()
            .map(|t| per_second(events, t.total));
        let per_worker_ratio = per_worker_rate.map(|rate| tracker_rate / rate.max(1.0));
        let shown = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
        println!(
            "{:<34} {ratio:.2} (target at least {TARGET_TRACKER_VS_BARE}); from first records {}; \
             against one bare consumer per worker {}",
            "tracker / bare consumer",
            shown(steady_ratio),
            shown(per_worker_ratio),
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": "pipeline tracker vs bare consumer",
                    "events": events, "tracker_events_per_s": tracker_rate,
                    "bare_consumer_events_per_s": bare_rate, "ratio": ratio,
                    "target": TARGET_TRACKER_VS_BARE,
                    "tracker_workers": self.workers_per_partition(),
                    "tracker_from_first_events_per_s": tracker_steady,
                    "bare_consumer_from_first_events_per_s": bare_steady,
                    "ratio_from_first": steady_ratio,
                    "bare_consumers_one_per_worker_events_per_s": per_worker_rate,
                    "ratio_one_bare_consumer_per_worker": per_worker_ratio})
            );
        }
    }

    fn start_tracker(
        &self,
        topic: &str,
        views: Views,
        extra: &[&str],
    ) -> anyhow::Result<FreshetChild> {
        self.start_tracker_in(topic, &tracker_group(topic), views, extra)
    }

    /// A tracker node counting `topic` in consumer group `group` (state is kept per group).
    fn start_tracker_in(
        &self,
        topic: &str,
        group: &str,
        views: Views,
        extra: &[&str],
    ) -> anyhow::Result<FreshetChild> {
        let partitions = self.args.partitions.to_string();
        let dlq = format!("{topic}.dlq");
        let args = [
            "tracker",
            "--bootstrap-servers",
            &self.bootstrap,
            "--http-listen",
            "127.0.0.1:0",
            "--tracker-input-topic",
            topic,
            "--tracker-dlq-topic",
            &dlq,
            "--tracker-group",
            group,
            "--tracker-partitions",
            &partitions,
            "--tracker-views",
            views.flag(),
            "--node-id",
            "bench",
        ];
        FreshetChild::start(args.iter().chain(extra.iter()), "HTTP API on http://")
    }

    /// Waits until the tracker owns every partition of its topic (the group has formed).
    fn wait_joined(&self, tracker: &mut FreshetChild) -> anyhow::Result<()> {
        let wanted = usize::try_from(self.args.partitions).unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            tracker.check_running()?;
            if poll_counted(tracker).is_some_and(|c| c.partitions_owned >= wanted) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the tracker did not own all {wanted} partitions within 60 s");
            }
            std::thread::sleep(POLL);
        }
    }

    fn report_rate(&self, name: &str, events: u64, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let rate = per_second(events, elapsed);
        println!(
            "{name:<34} {events:>10} {seconds:>8.2} {rate:>12.0} {:>9.2}",
            rate / TARGET_EVENTS_PER_S
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": format!("pipeline {name}"), "events": events,
                    "seconds": seconds, "events_per_s": rate,
                    "ratio_to_target": rate / TARGET_EVENTS_PER_S})
            );
        }
    }

    /// The generator's rate, and the ground truth its events carry.
    fn report_generate(&self, name: &str, devices: u64, summary: &GeneratorSummary) {
        self.report_rate(
            name,
            summary.sent,
            Duration::from_millis(summary.elapsed_ms),
        );
        println!(
            "{:<34} {} devices sent, {} distinct IPs among them (exact)",
            "  ground truth", devices, summary.distinct_ips
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": format!("pipeline {name} ground truth"),
                    "events": summary.sent, "distinct_ips": summary.distinct_ips,
                    "seed": summary.seed})
            );
        }
    }

    /// Reports `what`'s count from its clock's start (named `since`, when it has a name) and
    /// from its first count.
    fn report_count(&self, what: &str, since: Option<&str>, truth: Truth, time: &CountTime) {
        let name = since.map_or_else(|| what.to_string(), |since| format!("{what} from {since}"));
        self.report_rate(&name, truth.events, time.total);
        if let Some((span, events)) = time.from_first {
            self.report_rate(&format!("{what} from 1st count"), events, span);
        }
    }

    /// Reports resident memory per distinct address against `target`: `rss` when the count
    /// was exact and after it settled, less the `idle` tracker's.
    fn report_memory(
        &self,
        name: &str,
        target: f64,
        distinct: u64,
        idle: u64,
        rss: (u64, Settled),
        workers: &str,
    ) {
        let (
            counted,
            Settled {
                rss: settled,
                after,
            },
        ) = rss;
        let per_address = |rss: u64| rss.saturating_sub(idle) as f64 / distinct.max(1) as f64;
        let mb = |bytes: u64| bytes as f64 / 1e6;
        println!(
            "{name:<34} {distinct} distinct IPv4, {workers} workers: RSS {:.1} MB when exact, \
             {:.1} MB settled {:.0} s after the checkpoints covered it, idle {:.1} MB => {:.2} / \
             {:.2} B per address ({:.2} x the {target} B target, settled)",
            mb(counted),
            mb(settled),
            after.as_secs_f64(),
            mb(idle),
            per_address(counted),
            per_address(settled),
            per_address(settled) / target
        );
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"bench": format!("pipeline {name}"), "distinct_ips": distinct,
                    "tracker_workers": workers.parse::<u64>().ok(),
                    "idle_rss_bytes": idle, "rss_bytes_exact": counted,
                    "rss_bytes_settled": settled,
                    "settled_after_s": after.as_secs_f64(),
                    "bytes_per_address_exact": per_address(counted),
                    "bytes_per_address_settled": per_address(settled),
                    "target_bytes_per_address": target,
                    "ratio_to_target": per_address(settled) / target})
            );
        }
    }
}

/// A tracker's resident memory once it has stopped falling (see [`SETTLE_STEP`]).
struct Settled {
    rss: u64,
    /// Time from the checkpoints covering every event to the reading.
    after: Duration,
}

fn wait_settled(tracker: &mut FreshetChild) -> anyhow::Result<Settled> {
    let started = Instant::now();
    std::thread::sleep(CHECKPOINT_SETTLE - SETTLE_STEP * (SETTLED_SAMPLES as u32 - 1));
    let mut recent: Vec<u64> = Vec::new();
    loop {
        tracker.check_running()?;
        recent.push(tracker.resident_bytes()?);
        let last = recent[recent.len().saturating_sub(SETTLED_SAMPLES)..].to_vec();
        let (low, high) = (last.iter().min(), last.iter().max());
        let agree = matches!((low, high), (Some(&l), Some(&h)) if h - l <= h / 100);
        if (last.len() == SETTLED_SAMPLES && agree) || started.elapsed() >= SETTLE_WAIT {
            let rss = *recent.last().unwrap_or(&0);
            return Ok(Settled {
                rss,
                after: started.elapsed(),
            });
        }
        std::thread::sleep(SETTLE_STEP);
    }
}

/// The worker count a memory run's tracker gets: what `FRESHET_TRACKER_WORKERS` says, as the
/// tracker itself would read it, else the tracker's default for this machine. Passed
/// explicitly so the record can say it.
fn memory_run_workers() -> usize {
    std::env::var("FRESHET_TRACKER_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(freshet_services::tracker::default_workers)
}

fn per_second(events: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        events as f64 / seconds
    } else {
        0.0
    }
}

/// An unpaced, all-IPv4, lz4-compressed generator run with the fixed seed.
fn generator_params(topic: &str, events: u64, devices: u64) -> GeneratorParams {
    GeneratorParams {
        num_devices: devices,
        num_messages: events,
        pause_ms: 0,
        rate: None,
        seed: Some(SEED),
        ipv6_percent: 0,
        topic: topic.to_string(),
        round_robin: false,
        // lz4, set explicitly: the generator compressed with lz4 when the numbers in
        // docs/BENCHMARKS.md were measured, and its default is now none. Keeping lz4 keeps
        // this benchmark's bytes on the wire and on disk, and so its numbers, comparable
        // with the earlier runs.
        compression: Compression::Lz4,
    }
}

type Generator = JoinHandle<Result<GeneratorSummary, GeneratorError>>;

fn start_generator(
    kafka: KafkaConfig,
    params: GeneratorParams,
    progress: Arc<JobProgress>,
) -> anyhow::Result<Generator> {
    std::thread::Builder::new()
        .name("generator".into())
        .spawn(move || generator::run(&kafka, &params, &progress))
        .context("starting the generator thread")
}

/// The finished run's summary; fails unless every event was acknowledged.
fn join_generator(worker: Generator, events: u64) -> anyhow::Result<GeneratorSummary> {
    let summary = worker
        .join()
        .map_err(|_| anyhow!("the generator thread panicked"))??;
    if summary.failed > 0 || summary.sent != events {
        bail!(
            "the generator had {} of {events} events acknowledged ({} failed)",
            summary.sent,
            summary.failed
        );
    }
    Ok(summary)
}

/// The tracker's counters, or `None` while its API does not answer.
fn poll_counted(tracker: &FreshetChild) -> Option<Counted> {
    let json = tracker_json(tracker, "/api/v1/unique-ips")?;
    Some(Counted {
        events: json["events_counted"].as_u64()?,
        rejected: json["events_rejected"].as_u64()?,
        distinct: json["global_count"].as_u64()?,
        partitions_owned: json["partitions_owned"].as_array()?.len(),
    })
}

/// Waits until the tracker's checkpoints cover `events` input records (its partitions'
/// checkpoint offsets add up to them: every record of the memory runs' topics is an event).
fn wait_checkpointed(tracker: &mut FreshetChild, events: u64, label: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    loop {
        tracker.check_running()?;
        let checkpointed = checkpointed_offsets(tracker);
        if checkpointed.is_some_and(|offsets| offsets >= events) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{label}: {} s after the count was exact the tracker's checkpoints cover {} of \
                 {events} events",
                CHECKPOINT_WAIT.as_secs(),
                checkpointed.map_or_else(|| "an unknown number".to_string(), |n| n.to_string())
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The sum of the tracker's partitions' checkpoint offsets, or `None` while its API does not
/// answer.
fn checkpointed_offsets(tracker: &FreshetChild) -> Option<u64> {
    let json = tracker_json(tracker, "/api/v1/tracker/partitions")?;
    let partitions = json["partitions"].as_array()?;
    Some(
        partitions
            .iter()
            .map(|p| p["checkpoint_offset"].as_u64().unwrap_or(0))
            .sum(),
    )
}

/// The JSON body of a GET of the tracker's API at `path`, or `None` unless it answered 200.
fn tracker_json(tracker: &FreshetChild, path: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(&tracker.addr, path).ok()?;
    if status != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// Polls the tracker until it reports exactly the truth, which `truth` yields once known
/// (at once for a filled topic, when the generator finishes for the end-to-end run). Fails
/// as soon as a count goes past the truth, when the tracker exits, or when it is too slow.
fn wait_exact(
    tracker: &mut FreshetChild,
    clock_start: Instant,
    truth: &mut dyn FnMut() -> anyhow::Result<Option<Truth>>,
    label: &str,
) -> anyhow::Result<CountTime> {
    let bar = progress(0, label);
    let mut first: Option<(Instant, u64)> = None;
    let mut last = Counted::default();
    loop {
        tracker.check_running()?;
        let known = truth()?;
        if let Some(counted) = poll_counted(tracker) {
            let now = Instant::now();
            if first.is_none() && counted.events > 0 {
                first = Some((now, counted.events));
            }
            show(&bar, &counted, known);
            if let Some(known) = known {
                check_not_past(&counted, known, label)?;
                if is_exact(&counted, known) {
                    bar.finish_and_clear();
                    return Ok(CountTime {
                        total: now - clock_start,
                        from_first: first
                            .filter(|(at, _)| *at < now)
                            .map(|(at, count)| (now - at, known.events - count)),
                    });
                }
            }
            last = counted;
        }
        if let Some(known) = known {
            let limit = Duration::from_secs(60 + known.events / SLOWEST_EVENTS_PER_S);
            if clock_start.elapsed() > limit {
                bar.abandon();
                bail!(
                    "{label}: after {} s the tracker reports {} events counted, {} rejected and \
                     {} distinct IPs; the generator acknowledged {} events from {} distinct IPs",
                    limit.as_secs(),
                    last.events,
                    last.rejected,
                    last.distinct,
                    known.events,
                    known.distinct
                );
            }
        }
        std::thread::sleep(POLL);
    }
}

fn show(bar: &ProgressBar, counted: &Counted, truth: Option<Truth>) {
    if let Some(truth) = truth {
        bar.set_length(truth.events);
    }
    bar.set_position(counted.events);
}

fn is_exact(counted: &Counted, truth: Truth) -> bool {
    counted.events == truth.events && counted.rejected == 0 && counted.distinct == truth.distinct
}

/// Counts only grow, so one past the truth can never become exact: a tracker bug.
fn check_not_past(counted: &Counted, truth: Truth, label: &str) -> anyhow::Result<()> {
    if counted.events + counted.rejected > truth.events || counted.distinct > truth.distinct {
        bail!(
            "{label}: the tracker reports {} events counted, {} rejected and {} distinct IPs, \
             more than the {} events from {} distinct IPs the generator acknowledged",
            counted.events,
            counted.rejected,
            counted.distinct,
            truth.events,
            truth.distinct
        );
    }
    if counted.rejected > 0 {
        bail!(
            "{label}: the tracker rejected {} of the generator's {} events, which are all valid",
            counted.rejected,
            truth.events
        );
    }
    Ok(())
}

/// Each run's topic is fresh, so a group named after it is too.
fn tracker_group(topic: &str) -> String {
    format!("{topic}-tracker")
}

pub(super) async fn delete_topics(bootstrap: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    for result in admin.delete_topics(topics, &AdminOptions::new()).await? {
        if let Err((topic, code)) = result {
            // The tracker creates its topics lazily; one that never came to be is fine.
            if code != rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition {
                bail!("deleting {topic}: {code}");
            }
        }
    }
    Ok(())
}
