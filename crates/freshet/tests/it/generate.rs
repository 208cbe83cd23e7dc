//! `freshet generate` as a user runs it: the real binary against a real `freshet broker`
//! process, its JSON summary checked against the topic read back with librdkafka.

use std::collections::HashSet;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use freshet_testkit::raw::{assert_compressed_with, RawClient};

use crate::common;
use common::{
    assert_fails_fast_without_a_broker, client_config, closed_port, freshet, run, BrokerProcess,
    TIMEOUT,
};

/// The generator creates its topic with this many partitions.
const PARTITIONS: i32 = 3;

fn generate(args: &[&str]) -> Command {
    let mut command = freshet();
    command.arg("generate").args(args);
    command
}

/// The last stdout line as JSON.
fn json_summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("stdout has a line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line {last:?}: {e}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Device IPs of every record in the topic, over all partitions.
fn device_ips(addr: &str, topic: &str) -> Vec<String> {
    let consumer: BaseConsumer = client_config(addr)
        .set("group.id", "generate-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    (0..PARTITIONS)
        .flat_map(|partition| read_partition(&consumer, topic, partition))
        .map(|value| {
            let event: serde_json::Value = serde_json::from_str(&value).expect("json value");
            event["device_ip"].as_str().expect("device_ip").to_string()
        })
        .collect()
}

fn read_partition(consumer: &BaseConsumer, topic: &str, partition: i32) -> Vec<String> {
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, TIMEOUT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(low))
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut values = Vec::new();
    let mut next = low;
    let deadline = Instant::now() + Duration::from_secs(30);
    while next < high {
        assert!(Instant::now() < deadline, "stalled at {next} of {high}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("no consumer error");
            let value = message.payload().expect("value");
            values.push(String::from_utf8(value.to_vec()).expect("utf8"));
            next = message.offset() + 1;
        }
    }
    values
}

/// Records in the topic so far (0 while it does not exist yet).
fn records_in(addr: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = client_config(addr).create().expect("consumer");
    (0..PARTITIONS)
        .filter_map(|p| consumer.fetch_watermarks(topic, p, TIMEOUT).ok())
        .map(|(low, high)| high - low)
        .sum()
}

/// Waits for a child whose output fits in the pipe buffers, killing it after `limit`.
fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("freshet did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut output = Output {
        status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut output.stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_end(&mut output.stderr)
        .expect("read stderr");
    output
}

#[test]
fn json_summary_is_what_the_topic_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let mut command = generate(&[
        "--num-devices",
        "40",
        "--pause-ms",
        "0",
        "--seed",
        "12345",
        "--ipv6-percent",
        "25",
        "--topic",
        "cli-events",
        "--json",
    ]);
    // Flags and environment variables mix.
    command
        .env("FRESHET_BOOTSTRAP_SERVERS", &broker.addr)
        .env("FRESHET_GENERATE_NUM_MESSAGES", "800");
    let output = run(command, Duration::from_secs(30));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = json_summary(&output);
    assert_eq!(summary["sent"], 800, "{summary}");
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["seed"], 12345);
    assert_eq!(summary["topic"], "cli-events");
    assert!(summary["elapsed_ms"].is_u64() && summary["events_per_sec"].is_f64());
    // With --json, stdout is nothing but the JSON line; the human summary went to stderr.
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert!(stderr(&output).contains("distinct device IPs among them"));

    let ips = device_ips(&broker.addr, "cli-events");
    assert_eq!(ips.len(), 800);
    let distinct: HashSet<&String> = ips.iter().collect();
    assert_eq!(summary["distinct_ips"], distinct.len() as u64);
    assert!(
        distinct.iter().any(|ip| ip.contains(':')),
        "some IPv6 devices"
    );
}

#[test]
fn rate_alone_paces_and_the_human_summary_goes_to_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let command = generate(&[
        "--bootstrap-servers",
        &broker.addr,
        "--num-messages",
        "50",
        "--rate",
        "500",
    ]);
    let started = Instant::now();
    let output = run(command, Duration::from_secs(30));
    assert!(output.status.success(), "{}", stderr(&output));
    // Event 49 is due 49 / 500 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(98));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("sent 50 events to device-events (0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("(pool of 100 devices), seed "), "{stdout}");
    assert_eq!(records_in(&broker.addr, "device-events"), 50);
}

/// Checks, with raw Fetch requests (the broker keeps batches as the producer sent them), that
/// `topic`'s batches hold `events` records in all, compressed with `codec`.
fn assert_codec(addr: &str, topic: &str, events: i64, codec: u8) {
    let addr: std::net::SocketAddr = addr.parse().expect("broker address");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let batches = runtime.block_on(async {
        let mut client = RawClient::connect(addr).await.expect("connect");
        let mut batches = Vec::new();
        for partition in 0..PARTITIONS {
            batches.extend(client.batches(topic, partition).await.expect("fetch"));
        }
        batches
    });
    let records: i64 = batches.iter().map(|batch| i64::from(batch.records)).sum();
    assert_eq!(records, events, "{batches:?}");
    assert_compressed_with(&batches, codec);
}

#[test]
fn batches_are_uncompressed_by_default_and_compressed_as_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let send = |topic: &str, extra: &[&str], env: Option<&str>| {
        let mut args = vec![
            "--bootstrap-servers",
            &broker.addr,
            "--num-messages",
            "500",
            "--pause-ms",
            "0",
            "--topic",
            topic,
        ];
        args.extend_from_slice(extra);
        let mut command = generate(&args);
        if let Some(codec) = env {
            command.env("FRESHET_GENERATE_COMPRESSION", codec);
        }
        let output = run(command, Duration::from_secs(30));
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };

    let plain = send("plain", &[], None);
    assert!(
        stderr(&plain).contains("(none compression, seed "),
        "{}",
        stderr(&plain)
    );
    assert_codec(&broker.addr, "plain", 500, 0);
    send("gzip-flag", &["--compression", "gzip"], None);
    assert_codec(&broker.addr, "gzip-flag", 500, 1);
    send("gzip-env", &[], Some("gzip"));
    assert_codec(&broker.addr, "gzip-env", 500, 1);
    // The flag wins over the environment.
    send("zstd", &["--compression", "zstd"], Some("gzip"));
    assert_codec(&broker.addr, "zstd", 500, 4);
    // What every consumer reads: the events themselves, whatever the codec.
    assert_eq!(device_ips(&broker.addr, "zstd").len(), 500);
}

#[test]
fn an_unknown_compression_is_refused_with_the_codecs_listed() {
    for (args, env) in [
        (&["--compression", "lz5"][..], None),
        (&[][..], Some("LZ4")),
    ] {
        let mut command = generate(args);
        command.args(["--bootstrap-servers", "127.0.0.1:1"]);
        if let Some(codec) = env {
            command.env("FRESHET_GENERATE_COMPRESSION", codec);
        }
        let output = run(command, Duration::from_secs(10));
        assert_eq!(
            output.status.code(),
            Some(2),
            "a usage error: {args:?} {env:?}"
        );
        let stderr = stderr(&output);
        let value = env.unwrap_or("lz5");
        assert!(
            stderr.contains(&format!(
                "invalid value '{value}' for '--compression <COMPRESSION>'"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("[possible values: none, gzip, snappy, lz4, zstd]"),
            "{stderr}"
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn no_broker_at_the_address_fails_within_seconds_naming_it() {
    let address = closed_port();
    let command = generate(&["--bootstrap-servers", &address, "--num-messages", "10"]);
    let stderr = assert_fails_fast_without_a_broker(command, &address);
    assert!(stderr.contains("Connection refused"), "{stderr}");

    let mut from_env = generate(&["--num-messages", "10"]);
    from_env.env("FRESHET_BOOTSTRAP_SERVERS", &address);
    assert_fails_fast_without_a_broker(from_env, &address);
}

#[test]
fn invalid_parameters_fail_with_one_error_line() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--ipv6-percent", "101"],
            "error: ipv6_percent 101 is not a percentage from 0 to 100",
        ),
        (
            &["--rate", "1e-300"],
            "error: rate 1e-300 must be a number of events per second from 0.01 to 10000000",
        ),
        (
            &["--num-devices", "0"],
            "error: num_devices is 0: events need at least one device",
        ),
    ];
    for (args, expected) in cases {
        // Nothing listens on port 1: the parameters are refused before connecting.
        let mut command = generate(args);
        command.args(["--bootstrap-servers", "127.0.0.1:1"]);
        let output = run(command, Duration::from_secs(10));
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = stderr(&output);
        assert!(stderr.contains(expected), "{stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error:")).count(),
            1
        );
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn ctrl_c_stops_sending_and_reports_what_was_delivered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let child = generate(&[
        "--bootstrap-servers",
        &broker.addr,
        "--num-messages",
        "100000",
        "--pause-ms",
        "5",
        "--topic",
        "interrupted",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start freshet generate");
    let deadline = Instant::now() + Duration::from_secs(20);
    while records_in(&broker.addr, "interrupted") < 10 {
        assert!(Instant::now() < deadline, "no events arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    let output = wait_with_limit(child, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let summary = json_summary(&output);
    let sent = summary["sent"].as_i64().expect("sent");
    assert!((10..100_000).contains(&sent), "{summary}");
    assert!(
        stderr(&output).contains(&format!("error: interrupted: {sent} of 100000 events sent")),
        "{}",
        stderr(&output)
    );
    // Everything queued before the interrupt was delivered, and nothing after it was sent.
    assert_eq!(records_in(&broker.addr, "interrupted"), sent);
}
