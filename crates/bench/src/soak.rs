//! `freshet bench soak`: many connections held for a long time, to show that the broker's
//! memory and latency stay flat under steady load rather than to measure its peak.
//!
//! Each of `--connections` TCP connections is a producer (acks=all, a small batch every
//! `--produce-interval-ms`) or a consumer (back-to-back long-poll fetches following one
//! partition), speaking the Kafka protocol directly (kafka-protocol's codec) so that a thousand
//! connections cost the client a thousand sockets and tasks, not a thousand librdkafka
//! instances with their threads. Every `--report-every` seconds a row gives the broker's
//! resident memory (when it is the child this command started), the ack latency percentiles
//! of that window, the requests done and the errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use clap::Args;
use hdrhistogram::Histogram;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::child::ChildBroker;

const TOPIC: &str = "freshet-soak";
const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
/// Kafka's TOPIC_ALREADY_EXISTS: a rerun against the same broker reuses the topic.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// A request not answered in this time counts as an error and its connection is reopened.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Args)]
pub struct SoakBenchArgs {
    /// Soak this broker instead of starting a fresh Freshet broker.
    #[arg(long, env = "FRESHET_BENCH_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    /// Connections held open for the whole run.
    #[arg(long, env = "FRESHET_BENCH_CONNECTIONS", default_value_t = 1000)]
    pub connections: usize,
    /// Percentage of the connections that consume; the others produce.
    #[arg(long, env = "FRESHET_BENCH_CONSUMER_PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub consumer_percent: u8,
    /// Length of the run, seconds.
    #[arg(long, env = "FRESHET_BENCH_SECONDS", default_value_t = 300)]
    pub seconds: u64,
    /// Seconds between two report rows.
    #[arg(long, env = "FRESHET_BENCH_REPORT_EVERY", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub report_every: u64,
    /// Time between two produce requests of one producer connection, ms.
    #[arg(long, env = "FRESHET_BENCH_PRODUCE_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub produce_interval_ms: u64,
    /// Records (100 B each) in one produce request.
    #[arg(long, env = "FRESHET_BENCH_RECORDS_PER_REQUEST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub records_per_request: u32,
    /// Partitions of the soak topic.
    #[arg(long, env = "FRESHET_BENCH_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub partitions: i32,
    /// Print results as JSON lines as well.
    #[arg(long, env = "FRESHET_BENCH_JSON")]
    pub json: bool,
}

/// What all connections add to during one report window.
#[derive(Debug)]
struct Window {
    ack_latency_us: Mutex<Histogram<u64>>,
    produced: AtomicU64,
    fetched_bytes: AtomicU64,
    fetches: AtomicU64,
    errors: AtomicU64,
    reconnects: AtomicU64,
}

impl Window {
    fn new() -> anyhow::Result<Self> {
        Ok(Window {
            ack_latency_us: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
            produced: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        })
    }

    fn record_ack(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.ack_latency_us.lock() {
            let highest = histogram.high();
            let _ = histogram.record(micros.min(highest));
        }
    }

    /// Takes this window's numbers and starts the next one from zero.
    fn take(&self) -> WindowReport {
        let (p50, p99, max, acks) = match self.ack_latency_us.lock() {
            Ok(mut histogram) => {
                let numbers = (
                    histogram.value_at_quantile(0.5),
                    histogram.value_at_quantile(0.99),
                    histogram.max(),
                    histogram.len(),
                );
                histogram.reset();
                numbers
            }
            Err(_) => (0, 0, 0, 0),
        };
        WindowReport {
            acks,
            p50_ms: p50 as f64 / 1000.0,
            p99_ms: p99 as f64 / 1000.0,
            max_ms: max as f64 / 1000.0,
            records: self.produced.swap(0, Ordering::Relaxed),
            fetches: self.fetches.swap(0, Ordering::Relaxed),
            fetched_bytes: self.fetched_bytes.swap(0, Ordering::Relaxed),
            errors: self.errors.swap(0, Ordering::Relaxed),
            reconnects: self.reconnects.swap(0, Ordering::Relaxed),
        }
    }
}

#[derive(Debug)]
struct WindowReport {
    acks: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    records: u64,
    fetches: u64,
    fetched_bytes: u64,
    errors: u64,
    reconnects: u64,
}

pub fn run(args: SoakBenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the soak client's runtime")?;
    runtime.block_on(soak(args))
}

async fn soak(args: SoakBenchArgs) -> anyhow::Result<()> {
    // The client needs a descriptor per connection too.
    let limit = freshet_broker::limits::descriptor_limit().unwrap_or(0);
    if limit < args.connections as u64 + 64 {
        bail!(
            "{} connections need more open files than this process may have ({limit}); raise `ulimit -n`",
            args.connections
        );
    }
    let (addr, child) = match &args.bootstrap_servers {
        Some(servers) => (
            servers.split(',').next().unwrap_or_default().to_string(),
            None,
        ),
        None => {
            let child = ChildBroker::start(&[]).context("starting a freshet broker")?;
            (child.addr().to_string(), Some(child))
        }
    };
    create_topic(&addr, args.partitions).await?;

    let window = Arc::new(Window::new()?);
    let consumers = args.connections * usize::from(args.consumer_percent) / 100;
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let connection = SoakConnection {
            addr: addr.clone(),
            partition: i32::try_from(i).unwrap_or(0) % args.partitions,
            window: window.clone(),
            stop,
        };
        if i < consumers {
            tasks.spawn(connection.consume());
        } else {
            let interval = Duration::from_millis(args.produce_interval_ms);
            // Spread the producers over the interval so requests do not come in waves.
            let offset = interval.mul_f64(i as f64 / args.connections as f64);
            tasks.spawn(connection.produce(interval, offset, args.records_per_request));
        }
    }
    println!(
        "soaking {addr}: {} producers, {consumers} consumers, {} s",
        args.connections - consumers,
        args.seconds
    );
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>10} {:>7}",
        "t_s", "rss_mb", "acks", "p50_ms", "p99_ms", "max_ms", "fetches", "fetched_mb", "errors"
    );
    let started = Instant::now();
    let mut peak_rss = 0u64;
    let mut worst_p99 = 0f64;
    let mut total_errors = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs(args.report_every));
    ticker.tick().await;
    while Instant::now() < stop {
        ticker.tick().await;
        let report = window.take();
        let rss = child.as_ref().and_then(|c| c.resident_bytes().ok());
        peak_rss = peak_rss.max(rss.unwrap_or(0));
        worst_p99 = worst_p99.max(report.p99_ms);
        total_errors += report.errors;
        print_row(started.elapsed(), rss, &report, args.json);
    }
    while tasks.join_next().await.is_some() {}
    let summary = serde_json::json!({
        "bench": "soak",
        "connections": args.connections,
        "consumers": consumers,
        "seconds": args.seconds,
        "peak_rss_mb": peak_rss as f64 / 1e6,
        "worst_window_p99_ms": worst_p99,
        "errors": total_errors,
    });
    println!(
        "peak broker RSS {:.1} MB, worst window p99 {worst_p99:.2} ms, {total_errors} errors",
        peak_rss as f64 / 1e6
    );
    if args.json {
        println!("{summary}");
    }
    Ok(())
}

fn print_row(elapsed: Duration, rss: Option<u64>, report: &WindowReport, json: bool) {
    let rss_mb = rss.map(|bytes| bytes as f64 / 1e6);
    println!(
        "{:>6} {:>9} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>8} {:>10.1} {:>7}",
        elapsed.as_secs(),
        rss_mb.map_or("-".to_string(), |mb| format!("{mb:.1}")),
        report.acks,
        report.p50_ms,
        report.p99_ms,
        report.max_ms,
        report.fetches,
        report.fetched_bytes as f64 / 1e6,
        report.errors,
    );
    if json {
        let row = serde_json::json!({
            "bench": "soak-window",
            "t_s": elapsed.as_secs(),
            "rss_mb": rss_mb,
            "acks": report.acks,
            "records": report.records,
            "p50_ms": report.p50_ms,
            "p99_ms": report.p99_ms,
            "max_ms": report.max_ms,
            "fetches": report.fetches,
            "fetched_bytes": report.fetched_bytes,
            "errors": report.errors,
            "reconnects": report.reconnects,
        });
        println!("{row}");
    }
}

/// One held connection and what it does until `stop`.
#[derive(Debug)]
struct SoakConnection {
    addr: String,
    partition: i32,
    window: Arc<Window>,
    stop: Instant,
}

impl SoakConnection {
    async fn produce(self, interval: Duration, offset: Duration, records: u32) {
        let batch = record_batch(records);
        let mut client = None;
        tokio::time::sleep(offset).await;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while Instant::now() < self.stop {
            tick.tick().await;
            let request = produce_request(self.partition, batch.clone());
            let sent = Instant::now();
            match self
                .call::<_, ProduceResponse>(&mut client, ApiKey::Produce, PRODUCE_VERSION, &request)
                .await
            {
                Ok(response) if produce_succeeded(&response) => {
                    self.window.record_ack(sent.elapsed());
                    self.window
                        .produced
                        .fetch_add(u64::from(records), Ordering::Relaxed);
                }
                _ => {
                    self.window.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    async fn consume(self) {
        let mut client = None;
        let mut offset = 0i64;
        while Instant::now() < self.stop {
            let request = fetch_request(self.partition, offset);
            match self
                .call::<_, FetchResponse>(&mut client, ApiKey::Fetch, FETCH_VERSION, &request)
                .await
            {
                Ok(response) => match fetched(&response) {
                    Ok((next, bytes)) => {
                        offset = next.unwrap_or(offset);
                        self.window.fetches.fetch_add(1, Ordering::Relaxed);
                        self.window
                            .fetched_bytes
                            .fetch_add(bytes, Ordering::Relaxed);
                    }
                    Err(_) => {
                        self.window.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Err(_) => {
                    self.window.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Sends one request and reads its response, (re)connecting first when needed; a failed
    /// call drops the connection so the next one starts clean.
    async fn call<Q: Encodable, R: Decodable>(
        &self,
        client: &mut Option<TcpStream>,
        api: ApiKey,
        version: i16,
        request: &Q,
    ) -> anyhow::Result<R> {
        if client.is_none() {
            *client = Some(TcpStream::connect(&self.addr).await?);
            self.window.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let stream = client.as_mut().context("connected")?;
        let result =
            tokio::time::timeout(REQUEST_TIMEOUT, exchange(stream, api, version, request)).await;
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                *client = None;
                Err(e)
            }
            Err(_) => {
                *client = None;
                bail!("no response within {REQUEST_TIMEOUT:?}")
            }
        }
    }
}

async fn create_topic(addr: &str, partitions: i32) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    let response: CreateTopicsResponse = exchange(
        &mut stream,
        ApiKey::CreateTopics,
        CREATE_TOPICS_VERSION,
        &request,
    )
    .await?;
    for topic in response.topics {
        if topic.error_code != 0 && topic.error_code != TOPIC_ALREADY_EXISTS {
            bail!("creating {TOPIC}: Kafka error {}", topic.error_code);
        }
    }
    Ok(())
}

/// Writes one framed request and reads the one response (this client never pipelines).
async fn exchange<Q: Encodable, R: Decodable>(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    request: &Q,
) -> anyhow::Result<R> {
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0; 4]);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("freshet-bench-soak")))
        .encode(&mut frame, api.request_header_version(version))?;
    request.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    stream.write_all(&frame).await?;
    let size = stream.read_i32().await?;
    let mut body = vec![0u8; usize::try_from(size)?];
    stream.read_exact(&mut body).await?;
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, api.response_header_version(version))?;
    R::decode(&mut body, version)
}

/// One uncompressed batch of `count` records of 100 bytes.
fn record_batch(count: u32) -> Bytes {
    let now = jiff::Timestamp::now().as_millisecond();
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: -1,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(vec![b'x'; 100])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    // Encoding plain records into memory cannot fail.
    let _ = RecordBatchEncoder::encode(&mut buf, records.iter(), &options);
    buf.freeze()
}

fn produce_request(partition: i32, batch: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

fn produce_succeeded(response: &ProduceResponse) -> bool {
    response
        .responses
        .iter()
        .flat_map(|topic| &topic.partition_responses)
        .all(|partition| partition.error_code == 0)
}

fn fetch_request(partition: i32, offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id((-1).into())
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

/// The offset after the last batch fetched (if any) and the bytes fetched, or the error code.
fn fetched(response: &FetchResponse) -> Result<(Option<i64>, u64), i16> {
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    let mut next = None;
    let mut bytes = 0;
    for partition in response
        .responses
        .iter()
        .flat_map(|topic| &topic.partitions)
    {
        if partition.error_code != 0 {
            return Err(partition.error_code);
        }
        if let Some(records) = &partition.records {
            bytes += records.len() as u64;
            next = next_offset_after(records.clone()).or(next);
        }
    }
    Ok((next, bytes))
}

/// The offset after the last whole batch in fetched record bytes, from the batch headers
/// (base offset at 0, batch length at 8, last offset delta at 23).
fn next_offset_after(mut records: Bytes) -> Option<i64> {
    let mut next = None;
    while records.len() >= 27 {
        let base_offset = i64::from_be_bytes(records[0..8].try_into().ok()?);
        let length = usize::try_from(i32::from_be_bytes(records[8..12].try_into().ok()?)).ok()?;
        if records.len() < 12 + length {
            break;
        }
        let last_delta = i32::from_be_bytes(records[23..27].try_into().ok()?);
        next = Some(base_offset + i64::from(last_delta) + 1);
        records.advance(12 + length);
    }
    next
}
