//! The generator against a real broker, checked by reading the topic back with a real
//! rdkafka consumer.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use freshet_services::event::parse_event;
use freshet_services::generator::{
    run, GeneratorJobs, GeneratorParams, GeneratorSummary, JobProgress, JobState, JobStatus,
};
use freshet_services::{GeneratorError, KafkaConfig};
use freshet_testkit::TestBroker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A broker on its own threads, and the runtime that started it (kept alive with it).
struct Setup {
    _runtime: tokio::runtime::Runtime,
    broker: TestBroker,
}

fn broker() -> Setup {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let broker = runtime.block_on(TestBroker::start());
    Setup {
        _runtime: runtime,
        broker,
    }
}

impl Setup {
    fn kafka(&self) -> KafkaConfig {
        KafkaConfig::new(self.broker.bootstrap())
    }
}

fn unpaced(topic: &str, devices: u64, messages: u64, seed: u64) -> GeneratorParams {
    GeneratorParams {
        num_devices: devices,
        num_messages: messages,
        pause_ms: 0,
        seed: Some(seed),
        topic: topic.into(),
        ..GeneratorParams::default()
    }
}

/// One record as read back.
#[derive(Debug)]
struct Record {
    key: String,
    value: String,
}

/// Every record of every partition of `topic`, partition by partition, in offset order.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = freshet_testkit::client_config(bootstrap)
        .set("group.id", "generator-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut records = Vec::new();
    for partition in 0..partitions {
        records.extend(read_partition(&consumer, topic, partition));
    }
    records
}

fn read_partition(consumer: &BaseConsumer, topic: &str, partition: i32) -> Vec<Record> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(low))
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut records = Vec::new();
    let mut next = low;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < high {
        assert!(Instant::now() < deadline, "stalled at {next} of {high}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            let text = |bytes: Option<&[u8]>| {
                String::from_utf8(bytes.expect("present").to_vec()).expect("utf8")
            };
            records.push(Record {
                key: text(message.key()),
                value: text(message.payload()),
            });
            next = message.offset() + 1;
        }
    }
    records
}

/// The timestamp form of a generated value, told apart by shape.
fn timestamp_form(value: &serde_json::Value) -> &'static str {
    let text = value["timestamp"].as_str().expect("timestamps are strings");
    let digits_only = text.bytes().all(|b| b.is_ascii_digit());
    match (text.contains('T'), text.contains(' '), text.contains('.')) {
        _ if digits_only && text.len() == 13 => "unix ms",
        _ if digits_only && text.len() == 10 => "unix s",
        (true, _, true) if text.ends_with('Z') => "T micros Z",
        (true, _, true) if text.len() == 26 => "T micros",
        (true, _, false) if text.len() == 19 => "T seconds",
        (_, true, true) if text.len() == 26 => "space micros",
        (_, true, false) if text.len() == 19 => "space seconds",
        _ => panic!("unexpected timestamp form {text:?}"),
    }
}

#[test]
fn what_was_acknowledged_is_exactly_what_the_topic_holds() {
    let setup = broker();
    let params = GeneratorParams {
        ipv6_percent: 20,
        ..unpaced("events-a", 300, 5000, 17)
    };
    let summary = run(&setup.kafka(), &params, &JobProgress::new()).expect("run");
    assert_eq!((summary.sent, summary.failed, summary.seed), (5000, 0, 17));
    assert_eq!(summary.topic, "events-a");
    assert!(summary.events_per_sec > 0.0);

    let records = read_topic(&setup.broker.bootstrap(), "events-a");
    assert_eq!(records.len() as u64, summary.sent);
    let mut ips = HashSet::new();
    let mut forms = HashSet::new();
    for record in &records {
        let event = parse_event(Some(record.value.as_bytes()))
            .unwrap_or_else(|e| panic!("{}: {e}", record.value));
        let json: serde_json::Value = serde_json::from_str(&record.value).expect("json");
        assert_eq!(
            record.key, json["device_ip"],
            "records are keyed by device IP"
        );
        assert_eq!(record.key.parse::<IpAddr>(), Ok(event.ip));
        ips.insert(event.ip);
        forms.insert(timestamp_form(&json));
    }
    assert_eq!(ips.len() as u64, summary.distinct_ips);
    assert!(ips.len() <= 300);
    assert!(ips.iter().any(|ip| ip.is_ipv6()) && ips.iter().any(|ip| ip.is_ipv4()));
    assert_eq!(forms.len(), 7, "{forms:?}");
}

#[test]
fn round_robin_sends_from_every_device() {
    let setup = broker();
    let params = GeneratorParams {
        round_robin: true,
        ..unpaced("events-rr", 2000, 2500, 5)
    };
    let summary = run(&setup.kafka(), &params, &JobProgress::new()).expect("run");
    assert_eq!((summary.sent, summary.distinct_ips), (2500, 2000));

    let records = read_topic(&setup.broker.bootstrap(), "events-rr");
    let mut per_device: std::collections::HashMap<&str, u32> = Default::default();
    for record in &records {
        *per_device.entry(record.key.as_str()).or_default() += 1;
    }
    assert_eq!(per_device.len(), 2000);
    // 2500 turns over 2000 devices: the first 500 in pool order sent twice, the rest once.
    assert_eq!(per_device.values().filter(|&&n| n == 2).count(), 500);
    assert!(per_device.values().all(|&n| n == 1 || n == 2));
}

/// IPs and error codes in send order, taken from records of one partition at a time; a key
/// always maps to the same partition, so per-device order is what a same-seed run must repeat.
fn ips_and_codes(records: &[Record]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|record| {
            let json: serde_json::Value = serde_json::from_str(&record.value).expect("json");
            let code = json["error_code"].as_u64().expect("code");
            (record.key.clone(), code)
        })
        .collect()
}

#[test]
fn same_seed_sends_the_same_events() {
    let setup = broker();
    let kafka = setup.kafka();
    let bootstrap = setup.broker.bootstrap();
    let first = run(
        &kafka,
        &unpaced("seeded-1", 50, 1000, 4242),
        &JobProgress::new(),
    )
    .expect("first run");
    let second = run(
        &kafka,
        &unpaced("seeded-2", 50, 1000, 4242),
        &JobProgress::new(),
    )
    .expect("second run");
    assert_eq!(first.distinct_ips, second.distinct_ips);
    let first_events = ips_and_codes(&read_topic(&bootstrap, "seeded-1"));
    assert_eq!(first_events.len(), 1000);
    assert_eq!(
        first_events,
        ips_and_codes(&read_topic(&bootstrap, "seeded-2"))
    );
    // Error codes vary, so equal sequences are not a coincidence of constant values.
    let codes: HashSet<u64> = first_events.iter().map(|(_, code)| *code).collect();
    assert_eq!(codes.len(), 11);
}

#[test]
fn pause_and_rate_pace_the_sends() {
    let setup = broker();
    let kafka = setup.kafka();
    let paused = GeneratorParams {
        pause_ms: 20,
        ..unpaced("paced", 5, 6, 1)
    };
    let started = Instant::now();
    let summary = run(&kafka, &paused, &JobProgress::new()).expect("paused run");
    assert_eq!(summary.sent, 6);
    // Five pauses of 20 ms lie between six sends.
    assert!(started.elapsed() >= Duration::from_millis(100));

    let rated = GeneratorParams {
        rate: Some(500.0),
        ..unpaced("paced", 5, 101, 1)
    };
    let started = Instant::now();
    let summary = run(&kafka, &rated, &JobProgress::new()).expect("rated run");
    assert_eq!(summary.sent, 101);
    // Event 100 is due 100 / 500 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(200));
}

fn wait_until_done(jobs: &GeneratorJobs, id: u64) -> JobStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = jobs.get(id).expect("job is kept");
        if status.state != JobState::Running {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} still running: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn jobs_run_in_the_background_and_can_be_cancelled() {
    let setup = broker();
    let jobs = GeneratorJobs::new(setup.kafka());
    let quick = jobs
        .start(unpaced("jobs", 20, 300, 9))
        .expect("quick job starts");
    assert_eq!(quick.id, 1);
    let slow = jobs
        .start(GeneratorParams {
            pause_ms: 10,
            seed: None,
            ..unpaced("jobs", 20, 100_000, 0)
        })
        .expect("slow job starts");
    assert_eq!(slow.id, 2);
    assert_eq!(slow.state, JobState::Running);
    let seed = slow.params.seed.expect("the seed is chosen at start");

    let quick = wait_until_done(&jobs, 1);
    assert_eq!(quick.state, JobState::Completed);
    assert_eq!((quick.sent, quick.queued, quick.progress), (300, 300, 1.0));
    let summary: &GeneratorSummary = quick.summary.as_ref().expect("summary");
    assert_eq!(summary.distinct_ips, quick.distinct_ips);
    assert!(quick.finished_at.is_some() && quick.error.is_none());

    while jobs.get(2).expect("slow job").sent < 5 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(jobs.cancel(2).map(|s| s.id), Some(2));
    let cancelled = wait_until_done(&jobs, 2);
    assert_eq!(cancelled.state, JobState::Cancelled);
    let summary = cancelled.summary.expect("a cancelled job has a summary");
    assert_eq!(summary.seed, seed);
    assert!(cancelled.sent >= 5 && cancelled.sent < 100_000);
    assert_eq!(
        cancelled.sent, cancelled.queued,
        "what was queued was flushed"
    );
    assert!(cancelled.progress < 1.0);

    let listed: Vec<u64> = jobs.list().iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![2, 1]);
    let on_topic = read_topic(&setup.broker.bootstrap(), "jobs").len() as u64;
    assert_eq!(on_topic, 300 + cancelled.sent);
}

#[test]
fn a_failed_job_reports_its_error() {
    // A setting librdkafka refuses fails the run at once, without waiting for a timeout.
    let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:9092\0"));
    let status = jobs.start(unpaced("t", 5, 5, 1)).expect("starts");
    let done = wait_until_done(&jobs, status.id);
    assert_eq!(done.state, JobState::Failed, "{done:?}");
    assert!(
        done.error.as_deref().is_some_and(|e| e.contains("kafka")),
        "{done:?}"
    );
    assert!(done.summary.is_none() && done.finished_at.is_some());
}

#[test]
fn invalid_params_are_refused_with_the_reason() {
    let jobs = GeneratorJobs::new(KafkaConfig::new("127.0.0.1:1"));
    let error = jobs
        .start(GeneratorParams {
            pause_ms: 70_000,
            ..GeneratorParams::default()
        })
        .expect_err("refused");
    assert!(matches!(&error, GeneratorError::InvalidParams(r) if r.contains("pause_ms 70000")));
    assert!(jobs.list().is_empty());
}
