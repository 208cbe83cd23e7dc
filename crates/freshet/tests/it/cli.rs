//! The `freshet` binary as an operator uses it: graceful shutdown on SIGTERM, `log dump`,
//! `--help` and configuration through `FRESHET_*` environment variables.
//!
//! Every test runs the real binary (`CARGO_BIN_EXE_freshet`) and talks to it over TCP with
//! librdkafka, from plain `#[test]` functions (all client calls here are blocking).

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::common;
use common::{
    assert_fails_fast_without_a_broker, client_config, closed_port, freshet, read_all, run,
    BrokerProcess, TIMEOUT,
};

fn producer(addr: &str) -> BaseProducer {
    client_config(addr)
        .set("acks", "all")
        .set("linger.ms", "50")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer")
}

/// The JSON log lines with the given message.
fn log_events(lines: &[String], message: &str) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["fields"]["message"] == message)
        .collect()
}

#[test]
fn sigterm_shuts_down_cleanly_and_keeps_every_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json_logs = [("FRESHET_LOG_FORMAT", "json")];
    let broker = BrokerProcess::start(dir.path(), &json_logs);
    let producer = producer(&broker.addr);
    for i in 0..500 {
        let value = format!("record-{i}");
        producer
            .send(
                BaseRecord::to("graceful")
                    .key("k")
                    .payload(&value)
                    .partition(0),
            )
            .expect("queued");
    }
    producer.flush(TIMEOUT).expect("all 500 acknowledged");

    // The producer stays connected: open connections must not hold up the shutdown.
    let (status, took, lines) = broker.terminate(Duration::from_secs(10));
    drop(producer);
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}; log: {lines:#?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "shutdown took {took:?}, longer than draining idle connections should"
    );
    for message in ["SIGTERM received", "shutting down", "broker stopped"] {
        assert_eq!(
            log_events(&lines, message).len(),
            1,
            "the log says {message:?} once: {lines:#?}"
        );
    }
    let complaints: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#))
        .collect();
    assert!(
        complaints.is_empty(),
        "warnings or errors during a clean shutdown: {complaints:#?}"
    );
    let partition_dir = dir.path().join("topics/graceful/0");
    assert!(
        partition_dir.join("clean-shutdown").exists(),
        "the partition log was closed cleanly"
    );

    let broker = BrokerProcess::start(dir.path(), &json_logs);
    let records = read_all(&broker.addr, "graceful");
    let expected: Vec<(i64, String)> = (0..500).map(|i| (i, format!("record-{i}"))).collect();
    assert_eq!(records, expected, "every record is back after the restart");
    let lines = broker.lines.lock().expect("lock").clone();
    let opened: Vec<serde_json::Value> = log_events(&lines, "opened partition log")
        .into_iter()
        .filter(|event| {
            event["fields"]["dir"]
                .as_str()
                .is_some_and(|d| Path::new(d) == partition_dir)
        })
        .collect();
    assert_eq!(opened.len(), 1, "one open of graceful/0: {lines:#?}");
    assert_eq!(
        opened[0]["fields"]["clean"], true,
        "the restart saw a clean shutdown"
    );
    assert_eq!(opened[0]["fields"]["log_end_offset"], 500);
}

/// One `base_offset: .. last_offset: .. count: ..` line of `freshet log dump`, as
/// (base offset, last offset, count, max timestamp).
fn parse_batch(line: &str) -> (i64, i64, i64, i64) {
    let field = |name: &str| -> i64 {
        let mut words = line.split_whitespace();
        words
            .position(|w| w == name)
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("{name} in {line:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{name} in {line:?}: {e}"))
    };
    (
        field("base_offset:"),
        field("last_offset:"),
        field("count:"),
        field("max_timestamp:"),
    )
}

#[test]
fn log_dump_prints_every_batch_and_the_indexes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let producer = producer(&broker.addr);
    // Five produce requests of 1..=5 records; each record is 5000 bytes, so every batch is
    // larger than the 4096-byte index interval and gets its own index entries.
    let payload = "x".repeat(5000);
    let mut offset = 0i64;
    for size in 1..=5i64 {
        for _ in 0..size {
            producer
                .send(
                    BaseRecord::to("dumped")
                        .key("k")
                        .payload(&payload)
                        .partition(0)
                        .timestamp(1_000_000 + offset * 10),
                )
                .expect("queued");
            offset += 1;
        }
        producer.flush(TIMEOUT).expect("batch acknowledged");
    }
    drop(producer);
    // A clean stop writes the active segment's index files.
    let (status, _, _) = broker.terminate(Duration::from_secs(10));
    assert!(status.success(), "broker exit status {status}");

    let segment = dir.path().join("topics/dumped/0/00000000000000000000.log");
    let mut command = freshet();
    command.args(["log", "dump"]).arg(&segment);
    let output = run(command, Duration::from_secs(30));
    let stdout = String::from_utf8(output.stdout).expect("utf8 stdout");
    assert!(
        output.status.success(),
        "log dump failed: {}; stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let batches: Vec<(i64, i64, i64, i64)> = stdout
        .lines()
        .filter(|line| line.starts_with("base_offset:"))
        .map(parse_batch)
        .collect();
    assert_eq!(
        batches,
        [
            (0, 0, 1, 1_000_000),
            (1, 2, 2, 1_000_020),
            (3, 5, 3, 1_000_050),
            (6, 9, 4, 1_000_090),
            (10, 14, 5, 1_000_140),
        ],
        "one line per batch with its offsets, record count and max timestamp:\n{stdout}"
    );
    assert!(
        stdout.lines().any(|line| line == "5 batches"),
        "the batch total is printed:\n{stdout}"
    );
    for line in stdout.lines().filter(|l| l.starts_with("base_offset:")) {
        assert!(line.contains("crc_ok: true"), "valid CRC: {line}");
        assert!(line.contains("compression: none"), "uncompressed: {line}");
    }
    assert!(!stdout.contains("INVALID"), "no damage reported:\n{stdout}");

    let section = |title: &str| -> Vec<String> {
        let mut lines = stdout.lines().skip_while(|l| !l.starts_with(title));
        let header = lines
            .next()
            .unwrap_or_else(|| panic!("a {title} section:\n{stdout}"));
        let entries: Vec<String> = lines
            .take_while(|l| l.starts_with("  "))
            .map(|l| l.trim().to_string())
            .collect();
        assert!(
            header.ends_with(&format!(": {} entries", entries.len())),
            "{header} matches its {} listed entries",
            entries.len()
        );
        entries
    };
    let offset_entries = section("Offset index");
    let indexed: Vec<String> = offset_entries
        .iter()
        .map(|e| e.split(" position:").next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        indexed,
        [
            "offset: 0",
            "offset: 1",
            "offset: 3",
            "offset: 6",
            "offset: 10"
        ],
        "an offset index entry for every batch:\n{stdout}"
    );
    assert!(
        offset_entries[0].ends_with("position: 0"),
        "the first batch is at position 0:\n{stdout}"
    );
    let time_entries = section("Time index");
    assert!(
        !time_entries.is_empty(),
        "the time index has entries:\n{stdout}"
    );
    for entry in &time_entries {
        let known = batches
            .iter()
            .any(|(base, _, _, max_ts)| *entry == format!("timestamp: {max_ts} offset: {base}"));
        assert!(
            known,
            "time index entry {entry:?} names a batch's max timestamp and offset:\n{stdout}"
        );
    }

    // A path that does not exist: an error on stderr, nothing pretending to be a dump.
    let missing = dir.path().join("topics/dumped/0/no-such-segment.log");
    let mut command = freshet();
    command.args(["log", "dump"]).arg(&missing);
    let output = run(command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "dumping a missing file must fail");
    assert!(
        stderr.contains("no-such-segment.log") && stderr.contains("No such file"),
        "stderr names the file and the problem: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("batches"),
        "no dump is printed"
    );
}

/// The `--flag` names in a help text and each one's block of lines.
fn flag_blocks(help: &str) -> Vec<(String, String)> {
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with('-') && indent <= 6 {
            let flag = trimmed
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap_or_else(|| panic!("a long flag in {line:?}"))
                .trim_end_matches(',')
                .to_string();
            blocks.push((flag, String::new()));
        } else if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    blocks
}

#[test]
fn help_lists_every_broker_flag_with_its_environment_variable() {
    let mut command = freshet();
    command.arg("--help");
    let output = run(command, Duration::from_secs(30));
    assert!(output.status.success(), "freshet --help: {}", output.status);
    let help = String::from_utf8(output.stdout).expect("utf8");
    for subcommand in ["up", "broker", "log", "bench"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{subcommand} "))),
            "freshet --help lists {subcommand}:\n{help}"
        );
    }

    let mut command = freshet();
    command.args(["broker", "--help"]);
    let output = run(command, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "freshet broker --help: {}",
        output.status
    );
    let help = String::from_utf8(output.stdout).expect("utf8");
    let blocks = flag_blocks(&help);
    let flags: Vec<&str> = blocks.iter().map(|(flag, _)| flag.as_str()).collect();
    for expected in [
        "--kafka-listen",
        "--advertised-addr",
        "--data-dir",
        "--auto-create-topics",
        "--default-partitions",
        "--max-request-bytes",
        "--flush-interval-ms",
        "--segment-bytes",
        "--retention-ms",
        "--log-cleanup-interval-ms",
        "--group-initial-rebalance-delay-ms",
        "--metrics-listen",
        "--log",
        "--log-format",
    ] {
        assert!(
            flags.contains(&expected),
            "broker --help shows {expected}: {flags:?}"
        );
    }
    for (flag, block) in &blocks {
        if flag == "--help" || flag == "--version" {
            continue;
        }
        let var = format!(
            "FRESHET_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(
            block.contains(&format!("[env: {var}=")) || block.contains(&format!("[env: {var}]")),
            "{flag} shows its environment variable {var}:\n{block}"
        );
    }
}

/// The help of `freshet <args> --help`.
fn help_of(args: &[&str]) -> String {
    let mut command = freshet();
    command.args(args).arg("--help");
    let output = run(command, Duration::from_secs(30));
    assert!(
        output.status.success(),
        "freshet {args:?} --help: {}",
        output.status
    );
    String::from_utf8(output.stdout).expect("utf8")
}

#[test]
fn every_flag_of_the_commands_that_run_something_has_an_environment_variable() {
    // `users` and `acls` are left out on purpose: a variable left in the environment must
    // never add a user or an ACL (see OPERATIONS.md, "Configuration").
    let commands: [&[&str]; 14] = [
        &["up"],
        &["broker"],
        &["tracker"],
        &["guard"],
        &["generate"],
        &["ts"],
        &["log", "dump"],
        &["bench", "broker"],
        &["bench", "pipeline"],
        &["bench", "guard"],
        &["bench", "soak"],
        &["bench", "rolls"],
        &["bench", "security"],
        &["bench", "timestamp"],
    ];
    for args in commands {
        let help = help_of(args);
        for (flag, block) in flag_blocks(&help) {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            assert!(
                block.contains("[env: FRESHET_"),
                "freshet {args:?}: {flag} has no FRESHET_* variable:\n{block}"
            );
        }
    }
}

#[test]
fn up_help_is_grouped_by_component_with_logging_last() {
    let help = help_of(&["up"]);
    let headings: Vec<&str> = help
        .lines()
        .filter(|line| !line.starts_with(' ') && line.ends_with(':'))
        .collect();
    assert_eq!(
        headings,
        [
            "Options:",
            "Broker: listeners and security:",
            "Broker: storage:",
            "Broker: limits and timeouts:",
            "Broker: consumer groups and transactions:",
            "HTTP API:",
            "Kafka cluster of the services:",
            "Tracker:",
            "Login guard:",
            "Logging:",
        ],
        "{help}"
    );
    let logging = help.find("\nLogging:").expect("a Logging heading");
    let after: Vec<String> = flag_blocks(&help[logging..])
        .into_iter()
        .map(|(flag, _)| flag)
        .collect();
    assert_eq!(after, ["--log", "--log-format"]);
}

#[test]
fn default_partitions_come_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[("FRESHET_DEFAULT_PARTITIONS", "5")]);
    let producer = producer(&broker.addr);
    // Producing to an unknown topic: the producer asks Metadata for it, which auto-creates it.
    producer
        .send(BaseRecord::to("auto-five").key("k").payload("hello"))
        .expect("queued");
    producer.flush(TIMEOUT).expect("acknowledged");
    drop(producer);
    let consumer: BaseConsumer = client_config(&broker.addr).create().expect("client");
    // Metadata for all topics never auto-creates anything itself.
    let metadata = consumer.fetch_metadata(None, TIMEOUT).expect("Metadata");
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == "auto-five")
        .expect("the topic was auto-created");
    assert_eq!(
        topic.partitions().len(),
        5,
        "FRESHET_DEFAULT_PARTITIONS=5 sets the partitions of an auto-created topic"
    );
    drop(consumer);
    drop(broker);

    // An out-of-range value is refused at startup, naming the variable's flag.
    let mut command = freshet();
    command
        .args(["broker", "--kafka-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("FRESHET_DEFAULT_PARTITIONS", "0");
    let output = run(command, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a broker with 0 default partitions must not start"
    );
    assert!(
        stderr.contains("default-partitions"),
        "the error names the setting: {stderr}"
    );
}

#[test]
fn ts_prints_one_line_per_value_and_fails_if_any_value_fails() {
    let mut command = freshet();
    command.args([
        "ts",
        "2021-12-03T16:15:30.235+02:00",
        "1726668850124",
        "\"1726667942\"",
        "1726667942.5",
        "2023-02-30T00:00:00Z",
        "true",
        "2011-12-03 10:15:30",
    ]);
    let output = run(command, Duration::from_secs(30));
    let stdout = String::from_utf8(output.stdout).expect("utf8 stdout");
    let stderr = String::from_utf8(output.stderr).expect("utf8 stderr");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "2021-12-03T14:15:30.235Z",
            "2024-09-18T14:14:10.124Z",
            "2024-09-18T13:59:02.000Z",
            "2024-09-18T13:59:02.500Z",
            "2011-12-03T10:15:30.000Z",
        ]
    );
    assert!(
        stderr
            .contains("error: 2023-02-30T00:00:00Z: February 30 does not exist in 2023 at byte 8"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: true: unsupported type boolean"),
        "{stderr}"
    );
    assert!(!output.status.success());

    let mut command = freshet();
    command.args(["ts", "-1"]);
    let output = run(command, Duration::from_secs(30));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "1969-12-31T23:59:59.000Z\n"
    );
}

/// The HTTP limits are flags (with their variables) of every command that has an HTTP
/// listener, and they take effect: `broker --metrics-listen` with a 300 ms header timeout
/// closes a connection that stops halfway through its headers.
#[test]
fn http_limits_are_flags_of_every_http_listener_and_take_effect() {
    use std::io::{Read, Write};

    for subcommand in ["up", "tracker", "guard", "broker"] {
        let mut command = freshet();
        command.args([subcommand, "--help"]);
        let output = run(command, Duration::from_secs(30));
        assert!(output.status.success(), "{subcommand} --help");
        let help = String::from_utf8(output.stdout).expect("utf8");
        let blocks = flag_blocks(&help);
        for (flag, var) in [
            ("--http-header-timeout-ms", "FRESHET_HTTP_HEADER_TIMEOUT_MS"),
            ("--http-body-timeout-ms", "FRESHET_HTTP_BODY_TIMEOUT_MS"),
            ("--http-idle-timeout-ms", "FRESHET_HTTP_IDLE_TIMEOUT_MS"),
            ("--http-max-connections", "FRESHET_HTTP_MAX_CONNECTIONS"),
        ] {
            let block = blocks
                .iter()
                .find(|(name, _)| name == flag)
                .map(|(_, block)| block)
                .unwrap_or_else(|| panic!("{subcommand} --help has no {flag}:\n{help}"));
            assert!(
                block.contains(&format!("[env: {var}=")),
                "{subcommand} {flag}"
            );
        }
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = freshet();
    command
        .args(["broker", "--kafka-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--metrics-listen", "127.0.0.1:0"])
        .env("FRESHET_LOG", "info")
        .env("FRESHET_HTTP_HEADER_TIMEOUT_MS", "300");
    let broker = common::daemon::Daemon::start(command, "broker", "Prometheus metrics on http://");
    let mut stream = std::net::TcpStream::connect(&broker.addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHo")
        .expect("write");
    // Far longer than the timeout: a connection still open then was not closed by it.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer)),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
    }
    broker.terminate();
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = BrokerProcess::start(dir.path(), &[]);
    let (_, _, lines) = broker.terminate(TIMEOUT);
    assert!(lines.iter().any(|l| l.contains("INFO")), "{lines:#?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "escape codes in logs that go to a pipe: {lines:#?}"
    );
}

/// `freshet guard`, and `freshet up` with `--bootstrap-servers`, fail within seconds when no
/// broker answers there, before they touch the data directory.
#[test]
fn guard_and_up_without_a_broker_fail_within_seconds_naming_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let address = closed_port();
    for subcommand in ["guard", "up"] {
        let mut command = freshet();
        command
            .args([subcommand, "--bootstrap-servers", &address])
            .args(["--http-listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir);
        assert_fails_fast_without_a_broker(command, &address);
    }
    assert!(!data_dir.exists(), "nothing was written");
}
