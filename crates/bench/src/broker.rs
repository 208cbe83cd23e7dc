//! `freshet bench broker`.
//!
//! The client is librdkafka (rdkafka crate), as a real deployment's would be. Without
//! `--bootstrap-servers` a fresh `freshet broker` runs as a child process with durability on
//! (fsync before every acknowledgement), so broker and client are separate processes exactly
//! as when the same tool measures another broker.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::child::ChildBroker;
use super::median;

#[derive(Debug, Clone, Args)]
pub struct BrokerBenchArgs {
    /// Measure this broker instead of starting a fresh Freshet broker.
    #[arg(long, env = "FRESHET_BENCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Records of 100 B for the small-record produce run.
    #[arg(long, env = "FRESHET_BENCH_SMALL_RECORDS", default_value_t = 1_000_000)]
    pub small_records: u64,
    /// Records of 1 KiB for the large-record produce and consume runs.
    #[arg(long, env = "FRESHET_BENCH_LARGE_RECORDS", default_value_t = 200_000)]
    pub large_records: u64,
    /// Steady rate for the ack-latency run, records per second.
    #[arg(long, env = "FRESHET_BENCH_LATENCY_RATE", default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Length of the ack-latency run, seconds.
    #[arg(long, env = "FRESHET_BENCH_LATENCY_SECONDS", default_value_t = 10)]
    pub latency_seconds: u64,
    /// Partitions of each benchmark topic.
    #[arg(long, env = "FRESHET_BENCH_PARTITIONS", default_value_t = 3)]
    pub partitions: i32,
    /// Records per transaction in the transactional produce run (100 B each, as many records
    /// as the small-record run), which is compared with idempotent produce of the same records.
    #[arg(
        long,
        env = "FRESHET_BENCH_RECORDS_PER_TRANSACTION",
        default_value_t = 1_000
    )]
    pub records_per_transaction: u64,
    /// Producers writing at once in the transactional run and in the idempotent run it is
    /// compared with (each transactional one with its own transactional id, as the tasks of a
    /// stream processor have).
    #[arg(
        long,
        env = "FRESHET_BENCH_TRANSACTIONAL_PRODUCERS",
        default_value_t = 4
    )]
    pub transactional_producers: u64,
    /// Rounds of the idempotent-then-transactional comparison; the ratio reported is the
    /// median of the rounds' ratios (one round of a second or so per side is noisy on a
    /// shared machine).
    #[arg(long, env = "FRESHET_BENCH_TRANSACTION_ROUNDS", default_value_t = 5)]
    pub transaction_rounds: u64,
    /// Directory on the broker's disk for the disk anchors (sequential write and fdatasync
    /// latency measured in the same run).
    #[arg(long, env = "FRESHET_BENCH_ANCHOR_DIR", default_value = ".")]
    pub anchor_dir: std::path::PathBuf,
    /// Print results as JSON lines as well.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

pub fn run(args: BrokerBenchArgs) -> anyhow::Result<()> {
    let (bootstrap, _broker) = match &args.bootstrap_servers {
        Some(servers) => (servers.clone(), None),
        None => {
            let broker = ChildBroker::start(&[])?;
            (broker.addr().to_string(), Some(broker))
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let run_id = std::process::id();
    let small_topic = format!("bench-small-{run_id}");
    let large_topic = format!("bench-large-{run_id}");
    let latency_topic = format!("bench-latency-{run_id}");
    let idempotent_topic = format!("bench-idempotent-{run_id}");
    let transactional_topic = format!("bench-transactional-{run_id}");
    runtime.block_on(create_topics(
        &bootstrap,
        &[
            &small_topic,
            &large_topic,
            &latency_topic,
            &idempotent_topic,
            &transactional_topic,
        ],
        args.partitions,
    ))?;

    eprintln!(
        "broker: {bootstrap}; acks=all; {} partitions per topic",
        args.partitions
    );
    let disk = disk_anchors(&args)?;
    println!(
        "{:<18} sequential write + fdatasync {:.0} MB/s; 100 B append + fdatasync p50 {:.2} ms, p99 {:.2} ms",
        "disk (anchor)", disk.write_mb_s, disk.fsync_p50_ms, disk.fsync_p99_ms
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": "disk anchor", "write_mb_per_s": disk.write_mb_s,
                "fsync_p50_ms": disk.fsync_p50_ms, "fsync_p99_ms": disk.fsync_p99_ms})
        );
    }
    let base = client(&bootstrap);
    let small = produce_throughput(
        &base,
        &small_topic,
        args.small_records,
        100,
        "produce 100 B",
    )?;
    report(&args, "produce 100 B", &small);
    compare_transactions(&args, &base, &idempotent_topic, &transactional_topic)?;
    let large = produce_throughput(
        &base,
        &large_topic,
        args.large_records,
        1024,
        "produce 1024 B",
    )?;
    report(&args, "produce 1 KiB", &large);
    let large_mb_s = large.bytes as f64 / large.elapsed.as_secs_f64() / 1e6;
    println!(
        "{:<18} {:.2} x the disk's sequential write + fdatasync rate",
        "  ratio",
        large_mb_s / disk.write_mb_s
    );
    let latency = ack_latency(
        &bootstrap,
        &latency_topic,
        args.latency_rate,
        args.latency_seconds,
    )?;
    println!(
        "{:<18} {:>10} records/s steady: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        "ack latency",
        args.latency_rate,
        latency.value_at_quantile(0.50) as f64 / 1000.0,
        latency.value_at_quantile(0.99) as f64 / 1000.0,
        latency.max() as f64 / 1000.0
    );
    println!(
        "{:<18} p99 {:.1} x the disk's own fdatasync p99",
        "  ratio",
        latency.value_at_quantile(0.99) as f64 / 1000.0 / disk.fsync_p99_ms
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": "ack latency", "rate": args.latency_rate,
                "p50_ms": latency.value_at_quantile(0.5) as f64 / 1000.0,
                "p99_ms": latency.value_at_quantile(0.99) as f64 / 1000.0})
        );
    }
    let consume = consume_throughput(
        &base,
        &large_topic,
        args.partitions,
        args.large_records,
        "consume 1 KiB",
    )?;
    report(&args, "consume 1 KiB", &consume);
    Ok(())
}

/// Settings of both sides of the transactional comparison: batches go out as soon as they
/// are made. A commit sends what lingers at once in every client (Java's commitTransaction
/// and librdkafka's flush both do), so the transactional producer does not linger, and
/// neither does the idempotent one it is compared with.
const TRANSACTION_COMPARISON: [(&str, &str); 1] = [("linger.ms", "0")];

/// Transactional produce against idempotent produce of the same records in the same run.
/// Both sides use the same client machinery ([`ThreadedProducer`] and
/// [`Deliveries::wait_for`]), so the ratio is the broker's.
fn compare_transactions(
    args: &BrokerBenchArgs,
    base: &ClientConfig,
    idempotent_topic: &str,
    transactional_topic: &str,
) -> anyhow::Result<()> {
    let producers = args.transactional_producers.max(1);
    let share = args.small_records / producers;
    let mut ratios = Vec::new();
    let (mut idempotent_rates, mut transactional_rates) = (Vec::new(), Vec::new());
    for round in 0..args.transaction_rounds.max(1) {
        let idempotent = in_parallel(producers, |_| {
            idempotent_throughput(base, idempotent_topic, share)
        })?;
        report(args, &format!("idempotent x{producers}"), &idempotent);
        let transactional = in_parallel(producers, |i| {
            let id = format!("bench-transactional-{}-{round}-{i}", std::process::id());
            transactional_throughput(
                base,
                transactional_topic,
                share,
                args.records_per_transaction,
                &id,
            )
        })?;
        report(args, &format!("transactional x{producers}"), &transactional);
        let ratio = transactional.records_per_s() / idempotent.records_per_s();
        println!(
            "{:<18} {ratio:.2} x idempotent produce (round {})",
            "  ratio",
            round + 1
        );
        ratios.push(ratio);
        idempotent_rates.push(idempotent.records_per_s());
        transactional_rates.push(transactional.records_per_s());
    }
    let ratio = median(ratios.iter().copied());
    println!(
        "{:<18} {ratio:.2} x idempotent produce, median of {} rounds ({producers} producers each, transactions of {} records of 100 B)",
        "  ratio",
        ratios.len(),
        args.records_per_transaction
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": "transactional vs idempotent produce",
                "producers": producers, "records_per_transaction": args.records_per_transaction,
                "idempotent_records_per_s": median(idempotent_rates.into_iter()),
                "transactional_records_per_s": median(transactional_rates.into_iter()),
                "ratios": ratios, "ratio": ratio})
        );
    }
    Ok(())
}

/// Runs `run` on `producers` threads at once; the result counts every thread's records over
/// the longest thread's time.
fn in_parallel(
    producers: u64,
    run: impl Fn(u64) -> anyhow::Result<Throughput> + Sync,
) -> anyhow::Result<Throughput> {
    let results: Vec<anyhow::Result<Throughput>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..producers)
            .map(|i| {
                let run = &run;
                scope.spawn(move || run(i))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("producer thread panicked")))
            })
            .collect()
    });
    let mut total = Throughput {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
    };
    for result in results {
        let one = result?;
        total.records += one.records;
        total.bytes += one.bytes;
        total.elapsed = total.elapsed.max(one.elapsed);
    }
    Ok(total)
}

/// What the disk itself does, measured in the same run: the anchors the broker is compared to.
#[derive(Debug)]
struct DiskAnchors {
    write_mb_s: f64,
    fsync_p50_ms: f64,
    fsync_p99_ms: f64,
}

/// Like `dd bs=1M count=512 conv=fdatasync`, then 2,000 appends of 100 B each followed by
/// fdatasync, in a temporary directory under `--anchor-dir` (the broker's filesystem).
fn disk_anchors(args: &BrokerBenchArgs) -> anyhow::Result<DiskAnchors> {
    use std::io::Write;
    let dir = tempfile::tempdir_in(&args.anchor_dir)
        .with_context(|| format!("temporary file under {}", args.anchor_dir.display()))?;
    let path = dir.path().join("anchor");
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)?;
    for _ in 0..512 {
        file.write_all(&chunk)?;
    }
    file.sync_data()?;
    let write_mb_s = 512.0 * 1_048_576.0 / start.elapsed().as_secs_f64() / 1e6;
    drop(file);

    let mut file = std::fs::File::create(dir.path().join("appends"))?;
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..2000 {
        file.write_all(&chunk[..100])?;
        let start = Instant::now();
        file.sync_data()?;
        latency.record((start.elapsed().as_micros() as u64).max(1))?;
    }
    Ok(DiskAnchors {
        write_mb_s,
        fsync_p50_ms: latency.value_at_quantile(0.5) as f64 / 1000.0,
        fsync_p99_ms: latency.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// Records and bytes moved in a measured time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

fn report(args: &BrokerBenchArgs, name: &str, t: &Throughput) {
    let secs = t.elapsed.as_secs_f64();
    let rps = t.records as f64 / secs;
    let mbps = t.bytes as f64 / secs / 1e6;
    println!(
        "{name:<18} {:>10} records in {secs:>6.2} s: {rps:>12.0} records/s {mbps:>8.1} MB/s",
        t.records
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": name, "records": t.records, "seconds": secs,
                "records_per_s": rps, "mb_per_s": mbps})
        );
    }
}

pub(super) fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4");
    config
}

pub(super) async fn create_topics(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await? {
        if let Err((topic, code)) = result {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                bail!("creating {topic}: {code}");
            }
        }
    }
    Ok(())
}

/// Counts delivery reports and records ack latency when the message carries its send time.
pub(super) struct Deliveries {
    acked: AtomicU64,
    failed: AtomicU64,
    pub(super) latency: Option<Mutex<Histogram<u64>>>,
    /// Wakes [`Deliveries::wait_for`] once `wake_at` records are settled, so the waiting
    /// thread sleeps instead of polling (one wake-up per wait, not one per record).
    wake_at: AtomicU64,
    settled: (Mutex<()>, Condvar),
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            latency: None,
            wake_at: AtomicU64::new(u64::MAX),
            settled: (Mutex::new(()), Condvar::new()),
        }
    }
}

impl Deliveries {
    /// Deliveries that also record each acknowledged record's latency from its send time.
    pub(super) fn with_latency() -> anyhow::Result<Deliveries> {
        Ok(Deliveries {
            latency: Some(Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?)),
            ..Deliveries::default()
        })
    }

    pub(super) fn settled_count(&self) -> u64 {
        self.acked.load(Ordering::SeqCst) + self.failed.load(Ordering::SeqCst)
    }

    /// Waits until `total` records have delivery reports (served by a [`ThreadedProducer`]'s
    /// thread); fails if any record failed.
    pub(super) fn wait_for(&self, total: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        self.wake_at.store(total, Ordering::SeqCst);
        let (lock, condvar) = &self.settled;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        while self.settled_count() < total {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("records still unacknowledged after 60 s");
            }
            guard = condvar
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let failed = self.failed.load(Ordering::SeqCst);
        if failed > 0 {
            bail!("{failed} records were not acknowledged");
        }
        Ok(())
    }

    fn wake_waiter(&self) {
        if self.settled_count() >= self.wake_at.load(Ordering::SeqCst) {
            let _guard = self.settled.0.lock().unwrap_or_else(|e| e.into_inner());
            self.settled.1.notify_all();
        }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: Self::DeliveryOpaque) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::SeqCst);
                if let Some(latency) = &self.latency {
                    let micros = sent_at.elapsed().as_micros() as u64;
                    if let Ok(mut histogram) = latency.lock() {
                        let _ = histogram.record(micros.max(1));
                    }
                }
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        self.wake_waiter();
    }
}

pub(super) fn producer<P: FromClientConfigAndContext<Deliveries>>(
    base: &ClientConfig,
    context: Deliveries,
    extra: &[(&str, &str)],
) -> anyhow::Result<P> {
    let mut config = base.clone();
    config
        .set("acks", "all")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    Ok(config.create_with_context(context)?)
}

/// A progress bar on stderr; none for an empty `what` (runs on several threads at once).
pub(super) fn progress(total: u64, what: &str) -> ProgressBar {
    if what.is_empty() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:<18} [{bar:30}] {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Settings of every throughput producer: batches of up to 1 MB, 5 ms linger, no compression.
const THROUGHPUT_PRODUCER: [(&str, &str); 3] = [
    ("linger.ms", "5"),
    ("batch.size", "1000000"),
    ("compression.type", "none"),
];

/// Produces `records` records of `size` bytes as fast as the broker acknowledges them
/// (acks=all), with the client settings of `base` (where the broker is, how to sign in).
pub(super) fn produce_throughput(
    base: &ClientConfig,
    topic: &str,
    records: u64,
    size: usize,
    label: &str,
) -> anyhow::Result<Throughput> {
    let producer: BaseProducer<Deliveries> =
        producer(base, Deliveries::default(), &THROUGHPUT_PRODUCER)?;
    let payload = vec![b'x'; size];
    let bar = progress(records, label);
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        let key = (sent % 1024).to_be_bytes();
        let record = BaseRecord::with_opaque_to(topic, Box::new(start))
            .key(&key[..])
            .payload(&payload[..]);
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("produce failed: {e}"),
        }
        if sent % 10_000 == 0 {
            producer.poll(Duration::ZERO);
            bar.set_position(producer.context().acked.load(Ordering::Relaxed));
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} records were not acknowledged");
    }
    Ok(Throughput {
        records,
        bytes: records * size as u64,
        elapsed,
    })
}

/// The settings of one side of the transactional comparison: the throughput producer's,
/// [`TRANSACTION_COMPARISON`], and what makes the side (`mode`).
fn comparison_settings<'a>(mode: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    THROUGHPUT_PRODUCER
        .iter()
        .chain(&TRANSACTION_COMPARISON)
        .copied()
        .chain([mode])
        .collect()
}

/// Produces `records` records of 100 B with an idempotent producer and waits for every
/// acknowledgement.
fn idempotent_throughput(
    base: &ClientConfig,
    topic: &str,
    records: u64,
) -> anyhow::Result<Throughput> {
    let producer: ThreadedProducer<Deliveries> = producer(
        base,
        Deliveries::default(),
        &comparison_settings(("enable.idempotence", "true")),
    )?;
    let payload = [b'x'; 100];
    // One acknowledged record first: librdkafka gets the idempotent producer's id before it
    // sends anything (measured: about a second from creation here), and the transactional
    // side does the same in init_transactions, before its clock starts too.
    send_records(&producer, topic, 0..1, &payload, Instant::now())?;
    producer.context().wait_for(1)?;
    let start = Instant::now();
    send_records(&producer, topic, 1..records + 1, &payload, start)?;
    producer.context().wait_for(records + 1)?;
    Ok(Throughput {
        records,
        bytes: records * 100,
        elapsed: start.elapsed(),
    })
}

/// Produces `records` records of 100 B in transactions of `per_transaction` records: begin,
/// send, wait for the acknowledgements, commit (which writes the markers), acks=all.
fn transactional_throughput(
    base: &ClientConfig,
    topic: &str,
    records: u64,
    per_transaction: u64,
    id: &str,
) -> anyhow::Result<Throughput> {
    let producer: ThreadedProducer<Deliveries> = producer(
        base,
        Deliveries::default(),
        &comparison_settings(("transactional.id", id)),
    )?;
    producer.init_transactions(Duration::from_secs(30))?;
    let payload = [b'x'; 100];
    let start = Instant::now();
    let mut sent = 0;
    while sent < records {
        producer.begin_transaction()?;
        let end = (sent + per_transaction.max(1)).min(records);
        send_records(&producer, topic, sent..end, &payload, start)?;
        sent = end;
        // commit_transaction flushes too, but the rdkafka crate's flush serves delivery
        // reports in 100 ms steps when any is left; waiting for them here (and for the last
        // report's event to be released, right after its callback) keeps that out of the
        // measurement.
        producer.context().wait_for(sent)?;
        while producer.in_flight_count() > 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
        producer.commit_transaction(Duration::from_secs(60))?;
    }
    Ok(Throughput {
        records,
        bytes: records * 100,
        elapsed: start.elapsed(),
    })
}

/// Sends records numbered `range` to `topic`, waiting for room when the queue is full.
fn send_records(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    range: std::ops::Range<u64>,
    payload: &[u8],
    start: Instant,
) -> anyhow::Result<()> {
    for n in range {
        let key = (n % 1024).to_be_bytes();
        loop {
            let record = BaseRecord::with_opaque_to(topic, Box::new(start))
                .key(&key[..])
                .payload(payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    Ok(())
}

pub(super) fn ack_latency(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Histogram<u64>> {
    let context = Deliveries::with_latency()?;
    // linger 0: each record is sent as soon as it is produced, so latency is the broker's.
    // A threaded producer serves delivery reports from its own thread the moment they arrive,
    // and the sending loop sleeps between records, so the client does not compete with the
    // broker for the two cores by spinning.
    let producer: ThreadedProducer<Deliveries> =
        producer(&client(bootstrap), context, &[("linger.ms", "0")])?;
    let payload = [b'x'; 100];
    let total = rate * seconds;
    let bar = progress(total, "ack latency");
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let record =
            BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(topic, Box::new(Instant::now()))
                .payload(&payload[..]);
        if let Err((e, _)) = producer.send(record) {
            bail!("produce failed: {e}");
        }
        if i % 1000 == 0 {
            bar.set_position(i);
        }
    }
    producer.flush(Duration::from_secs(60))?;
    bar.finish_and_clear();
    let histogram = producer
        .context()
        .latency
        .as_ref()
        .and_then(|h| h.lock().ok().map(|h| h.clone()))
        .context("latency histogram")?;
    Ok(histogram)
}

/// Reads `records` records of `topic` from the beginning of its `partitions`, with the
/// client settings of `base`; the clock starts at the first record.
pub(super) fn consume_throughput(
    base: &ClientConfig,
    topic: &str,
    partitions: i32,
    records: u64,
    label: &str,
) -> anyhow::Result<Throughput> {
    consume_throughput_from(base, topic, partitions, records, label, || {})
}

/// [`consume_throughput`], calling `on_first_record` when the clock starts.
pub(super) fn consume_throughput_from(
    base: &ClientConfig,
    topic: &str,
    partitions: i32,
    records: u64,
    label: &str,
    mut on_first_record: impl FnMut(),
) -> anyhow::Result<Throughput> {
    let consumer: BaseConsumer = base
        .clone()
        .set("group.id", format!("bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", "104857600")
        .set("max.partition.fetch.bytes", "10485760")
        .set("queued.min.messages", "1000000")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let bar = progress(records, label);
    // The clock starts at the first record, so connection setup is not counted as reading.
    let mut start = Instant::now();
    let (mut count, mut bytes) = (0u64, 0u64);
    let deadline = start + Duration::from_secs(300);
    while count < records {
        if Instant::now() > deadline {
            bail!("consumed only {count} of {records} records");
        }
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message?;
            if count == 0 {
                on_first_record();
                start = Instant::now();
            }
            bytes += message.payload_len() as u64;
            count += 1;
            if count % 10_000 == 0 {
                bar.set_position(count);
            }
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    Ok(Throughput {
        records: count,
        bytes,
        elapsed,
    })
}
