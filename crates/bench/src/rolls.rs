//! `freshet bench rolls`: ack latency while a topic rolls segments every few megabytes.
//!
//! A segment roll is file work (index files, fsyncs, a producer snapshot, a directory fsync).
//! Where it runs matters on a small machine: on one of the broker's async worker threads it
//! stalls every connection scheduled there for as long as the disk takes. This bench makes
//! rolls frequent and measures what other producers feel:
//!
//! - a *load* producer writes 1 KiB records at a steady rate to a one-partition topic whose
//!   `segment.bytes` is small (4 MiB by default: about eight rolls a second at 30 MB/s);
//! - a *probe* producer sends 100 B records one at a time (linger 0) at a steady rate to a
//!   topic that never rolls during the run, and its ack latency is the result;
//! - the load's own ack latency (its batches wait for the rolls) is reported beside it.
//!
//! Both producers use acks=all against a broker that fsyncs before acknowledging, so the
//! numbers include the group commit. Comparing two builds means running this command with
//! each binary on the same machine, alternately.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::broker::{ack_latency, client, producer, Deliveries};
use super::child::ChildBroker;

#[derive(Debug, Clone, Args)]
pub struct RollsBenchArgs {
    /// Measure this broker instead of starting a fresh Freshet broker.
    #[arg(long, env = "FRESHET_BENCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// `segment.bytes` of the load topic: how often it rolls.
    #[arg(long, env = "FRESHET_BENCH_SEGMENT_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub segment_bytes: u64,
    /// Steady rate of the load producer, MB per second of 1 KiB records.
    #[arg(long, env = "FRESHET_BENCH_LOAD_MB_PER_S", default_value_t = 30)]
    pub load_mb_per_s: u64,
    /// Steady rate of the probe producer, records per second (100 B each, linger 0).
    #[arg(long, env = "FRESHET_BENCH_PROBE_RATE", default_value_t = 1_000)]
    pub probe_rate: u64,
    /// Length of the measured run, seconds.
    #[arg(long, env = "FRESHET_BENCH_SECONDS", default_value_t = 20)]
    pub seconds: u64,
    /// Print results as JSON lines as well.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

/// Size of a load record.
const LOAD_RECORD_BYTES: usize = 1024;

pub fn run(args: RollsBenchArgs) -> anyhow::Result<()> {
    let (bootstrap, _broker) = match &args.bootstrap_servers {
        Some(servers) => (servers.clone(), None),
        None => {
            let broker = ChildBroker::start(&[])?;
            (broker.addr().to_string(), Some(broker))
        }
    };
    let run_id = std::process::id();
    let load_topic = format!("bench-rolls-load-{run_id}");
    let probe_topic = format!("bench-rolls-probe-{run_id}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(create_topics(
            &bootstrap,
            &load_topic,
            &probe_topic,
            args.segment_bytes,
        ))?;
    eprintln!(
        "broker: {bootstrap}; acks=all; load {} MB/s into segments of {} bytes, probe {} records/s",
        args.load_mb_per_s, args.segment_bytes, args.probe_rate
    );

    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (bootstrap, topic, stop) = (bootstrap.clone(), load_topic.clone(), Arc::clone(&stop));
        let rate = args.load_mb_per_s * 1_000_000 / LOAD_RECORD_BYTES as u64;
        std::thread::spawn(move || produce_load(&bootstrap, &topic, rate, &stop))
    };
    let probe = ack_latency(&bootstrap, &probe_topic, args.probe_rate, args.seconds);
    stop.store(true, Ordering::SeqCst);
    let load = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load producer panicked"))??;
    let probe = probe?;
    report(&args, &probe, &load);
    Ok(())
}

async fn create_topics(
    bootstrap: &str,
    load: &str,
    probe: &str,
    segment_bytes: u64,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client(bootstrap).create()?;
    let segment_bytes = segment_bytes.to_string();
    let topics = [
        NewTopic::new(load, 1, TopicReplication::Fixed(1)).set("segment.bytes", &segment_bytes),
        NewTopic::new(probe, 1, TopicReplication::Fixed(1)),
    ];
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        if let Err((topic, code)) = result {
            bail!("creating {topic}: {code}");
        }
    }
    Ok(())
}

/// What the load producer did.
struct Load {
    bytes: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// Sends 1 KiB records at `rate` per second until `stop`, then waits for every ack.
fn produce_load(
    bootstrap: &str,
    topic: &str,
    rate: u64,
    stop: &AtomicBool,
) -> anyhow::Result<Load> {
    let context = Deliveries::with_latency()?;
    let producer: ThreadedProducer<Deliveries> =
        producer(&client(bootstrap), context, &[("linger.ms", "5")])?;
    let payload = [b'l'; LOAD_RECORD_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    // Records go out in 1 ms slices of the steady rate, so the client sleeps between slices
    // instead of spinning on the cores the broker needs.
    while !stop.load(Ordering::SeqCst) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let record = BaseRecord::<(), [u8], Box<Instant>>::with_opaque_to(
                topic,
                Box::new(Instant::now()),
            )
            .payload(&payload[..]);
            match producer.send(record) {
                Ok(()) => sent += 1,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                Err((e, _)) => bail!("load produce failed: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(60))?;
    producer.context().wait_for(sent)?;
    let elapsed = start.elapsed();
    let latency = producer
        .context()
        .latency
        .as_ref()
        .and_then(|h| h.lock().ok().map(|h| h.clone()))
        .context("load latency histogram")?;
    Ok(Load {
        bytes: sent * LOAD_RECORD_BYTES as u64,
        elapsed,
        latency,
    })
}

fn report(args: &RollsBenchArgs, probe: &Histogram<u64>, load: &Load) {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let load_mb_s = load.bytes as f64 / load.elapsed.as_secs_f64() / 1e6;
    let rolls = load.bytes / args.segment_bytes.max(1);
    println!(
        "{:<18} {load_mb_s:.1} MB/s for {:.1} s, about {rolls} segment rolls; ack p50 {:.2} ms, p99 {:.2} ms",
        "load (rolling)",
        load.elapsed.as_secs_f64(),
        ms(&load.latency, 0.5),
        ms(&load.latency, 0.99),
    );
    println!(
        "{:<18} {} records/s: ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        "probe",
        args.probe_rate,
        ms(probe, 0.5),
        ms(probe, 0.99),
        probe.max() as f64 / 1000.0,
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"bench": "ack latency beside segment rolls",
                "segment_bytes": args.segment_bytes, "load_mb_per_s": load_mb_s, "rolls": rolls,
                "load_p50_ms": ms(&load.latency, 0.5), "load_p99_ms": ms(&load.latency, 0.99),
                "probe_rate": args.probe_rate, "probe_p50_ms": ms(probe, 0.5),
                "probe_p99_ms": ms(probe, 0.99), "probe_max_ms": probe.max() as f64 / 1000.0})
        );
    }
}
